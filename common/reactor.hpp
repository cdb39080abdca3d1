// Reactor: a single-threaded event loop over zmq::poll with timers.
//
// A Reactor and the sockets registered with it belong to the thread that calls run(). Handlers
// run on that thread; an exception escaping a handler is logged and the loop keeps serving
// (ipyparallel wraps its on_recv callbacks in @log_errors for the same reason).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"

namespace ipp {

class Reactor {
 public:
  using Clock = std::chrono::steady_clock;
  using Handler = std::function<void()>;
  using TimerId = uint64_t;

  explicit Reactor(Logger log) : log_(std::move(log)) {}

  // Calls `on_readable` whenever `socket` has a message; the handler should drain what it can.
  // "socket" must outlive the Reactor or be removed first.
  void add(zmq::socket_ref socket, Handler on_readable);
  void remove(zmq::socket_ref socket);
  TimerId every(std::chrono::milliseconds period, Handler fn);
  TimerId after(std::chrono::milliseconds delay, Handler fn);
  void cancel(TimerId id);

  // Runs until stop() is called from a handler (or the context is terminated).
  void run();
  // Polls once for at most `timeout`, runs ready handlers and due timers.
  void run_once(std::chrono::milliseconds timeout);
  void stop() { stopped_ = true; }

  // run(), for sockets that other threads also use, each under `lock`: the loop holds it while
  // handlers and timers run and releases it while it waits, on the sockets' ZMQ_FD (waiting on
  // a socket itself would be using it). Another thread that used a socket may have taken its
  // ZMQ_FD's signal with a message still waiting: it must then make `wake_fd` (an eventfd)
  // readable; the loop reads it and calls `on_wake`, then handles what is waiting.
  // While `defer()` holds (another thread is reading the sockets, and waits on them itself), the
  // loop leaves the sockets to it: it waits on `wake_fd` and timers only, and looks again after
  // kDeferCheck at most (two threads woken for each message would race for it).
  void run_shared(std::mutex& lock, int wake_fd, Handler on_wake, std::function<bool()> defer);
  static constexpr std::chrono::milliseconds kDeferCheck{2};
  // Runs the handler of every socket that has a message waiting; true if any ran. Any thread
  // holding run_shared's lock (or the reactor's own thread).
  bool dispatch_ready();
  // Appends a ZMQ_FD poll item for each socket (for a thread that waits under run_shared's rules).
  void append_fd_items(std::vector<zmq::pollitem_t>& out) const;
  bool stopped() const { return stopped_; }

 private:
  struct Timer {
    Clock::time_point due;
    std::chrono::milliseconds period;  // zero: one-shot
    Handler fn;
  };
  void invoke(const Handler& fn, const char* what);
  void run_timers();
  void dispatch(const std::vector<void*>& ready);
  std::chrono::milliseconds until_next_timer(std::chrono::milliseconds at_most) const;

  Logger log_;
  std::vector<zmq::pollitem_t> items_;
  std::vector<std::shared_ptr<Handler>> handlers_;  // shared: a handler may remove itself
  std::map<TimerId, Timer> timers_;
  TimerId next_timer_ = 1;
  bool stopped_ = false;
};

}  // namespace ipp

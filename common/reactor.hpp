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
  // The same for a file descriptor (level-triggered: the handler must read what makes it
  // readable, or stop the loop). Lets another thread or a signal handler wake the loop through
  // an eventfd instead of the loop polling a flag on a timer.
  void add_fd(int fd, Handler on_readable);
  void remove(zmq::socket_ref socket);
  TimerId every(std::chrono::milliseconds period, Handler fn);
  TimerId after(std::chrono::milliseconds delay, Handler fn);
  void cancel(TimerId id);

  // Runs until stop() is called from a handler (or the context is terminated).
  void run();
  // Polls once for at most `timeout`, runs ready handlers and due timers.
  void run_once(std::chrono::milliseconds timeout);
  void stop() { stopped_ = true; }
  bool stopped() const { return stopped_; }

 private:
  struct Timer {
    Clock::time_point due;
    std::chrono::milliseconds period;  // zero: one-shot
    Handler fn;
  };
  void invoke(const Handler& fn, const char* what);
  void run_timers();

  Logger log_;
  std::vector<zmq::pollitem_t> items_;
  std::vector<std::shared_ptr<Handler>> handlers_;  // shared: a handler may remove itself
  std::map<TimerId, Timer> timers_;
  TimerId next_timer_ = 1;
  bool stopped_ = false;
};

}  // namespace ipp

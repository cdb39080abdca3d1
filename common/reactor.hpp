// Reactor: a single-threaded event loop over ZeroMQ sockets, file descriptors and timers.
//
// A Reactor and the sockets registered with it belong to the thread that calls run(). Handlers
// run on that thread; an exception escaping a handler is logged and the loop keeps serving
// (ipyparallel wraps its on_recv callbacks in @log_errors for the same reason).
//
// It waits with poll(2) on each socket's ZMQ_FD instead of zmq::poll: asking a socket whether it
// has input (ZMQ_EVENTS) costs two system calls when it has none (libzmq's fork check and a poll
// of its mailbox), and zmq::poll asks every socket twice per wake-up, so a thread with eight
// sockets made ~30 system calls for each message. ZMQ_FD only says "look again": any use of a
// socket may take in the signal of a message that then waits with the descriptor quiet. So a
// socket is asked when its descriptor fires, and again before the loop sleeps if its handler ran
// or a handler or timer used it (NoteUse, which protocol::Send and TryRecv call); all of them
// after a wait that timed out, and at least every kAskAllEvery.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include <poll.h>

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

  // Says that code running in this thread used `socket` (sent, received, read an option): if a
  // handler or timer of a Reactor round on this thread is running, the round asks that socket
  // for input before it sleeps. Elsewhere, nothing. protocol::Send, TryRecv and
  // TryRecvSubscription call it; other code that uses a registered socket outside that socket's
  // own handler must call it too.
  static void NoteUse(void* socket);
  // Says that a receive on `socket` just found nothing (EAGAIN): libzmq took in every signal
  // first, so its descriptor fires for the next message and asking it again before the wait
  // (two system calls) would learn nothing. A later NoteUse (a send) makes it asked again.
  static void NoteDrained(void* socket);
  static constexpr std::chrono::milliseconds kAskAllEvery{100};

 private:
  struct Timer {
    Clock::time_point due;
    std::chrono::milliseconds period;  // zero: one-shot
    Handler fn;
  };
  struct Item {
    void* socket;  // null: a plain file descriptor
    int fd;        // the socket's ZMQ_FD, or the descriptor
  };
  void invoke(const Handler& fn, const char* what);
  void run_timers();
  // One round of run(): a wait for a descriptor, a timer or at most `timeout`, then handlers.
  void step(std::chrono::milliseconds timeout);
  std::chrono::milliseconds until_next_timer(std::chrono::milliseconds at_most) const;
  // Whether `socket` has a message waiting (ZMQ_EVENTS). A terminated context stops the loop.
  bool has_input(void* socket);
  void add_item(Item item, Handler on_readable);
  void remove_item(Item item);
  void dispatch(const std::vector<Item>& ready);

  Logger log_;
  std::vector<Item> items_;
  std::vector<pollfd> pollfds_;  // one per item, in the same order
  std::vector<std::shared_ptr<Handler>> handlers_;  // shared: a handler may remove itself
  // Sockets to ask for input before the next wait (see NoteUse); all of them after a wait that
  // timed out, on run_once, and when sockets were added.
  std::vector<void*> ask_;
  bool ask_all_ = true;
  Clock::time_point asked_all_at_{};
  std::map<TimerId, Timer> timers_;
  TimerId next_timer_ = 1;
  bool stopped_ = false;
};

}  // namespace ipp

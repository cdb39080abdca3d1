// StopFlag: a request to stop that wakes the threads waiting for it.
//
// raise() may be called from any thread and from a signal handler (it only stores an atomic and
// writes to an eventfd). Reactors watch it with watch(): the eventfd stays readable once raised,
// so every Reactor watching it stops, and none of them has to poll a flag on a timer (hundreds
// of idle engines each waking a few times a second add up to thousands of wake-ups).
#pragma once

#include <atomic>

#include "common/reactor.hpp"

namespace ipp {

class StopFlag {
 public:
  StopFlag();
  ~StopFlag();
  StopFlag(const StopFlag&) = delete;
  StopFlag& operator=(const StopFlag&) = delete;

  void raise();  // async-signal-safe
  bool raised() const { return raised_.load(); }
  // Calls `on_stop` on the reactor's thread once raised (and on each later pass while the
  // reactor runs): it should stop the reactor.
  void watch(Reactor& reactor, Reactor::Handler on_stop);

 private:
  std::atomic<bool> raised_{false};
  int fd_ = -1;
};

}  // namespace ipp

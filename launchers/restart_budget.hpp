// RestartBudget: whether, and when, a supervised process that ended is started again. One budget
// per slot (an engine's place in its set, the controller): at most `max_restarts` restarts within
// a sliding `window`, each after a backoff that doubles from `initial_backoff` up to
// `max_backoff` and starts over once the slot has stayed up for a whole window.
//
// Plain data and arithmetic: the caller passes the time, so tests need no clock. Owned by the
// thread that supervises (ipcluster's main thread).
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <string>

namespace ipp::launchers {

struct RestartLimits {
  bool enabled = true;  // --no-restart
  int max_restarts = 5;  // --max-restarts, per slot within the window
  std::chrono::milliseconds window{std::chrono::minutes(10)};  // --restart-window
  std::chrono::milliseconds initial_backoff{std::chrono::seconds(1)};
  std::chrono::milliseconds max_backoff{std::chrono::minutes(1)};
};

class RestartBudget {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RestartBudget(RestartLimits limits = {}) : limits_(limits) {}

  // The slot's process ended at `now`: when to start it again, or nullopt when restarts are off or
  // the limit is reached (then `Refusal()` says why, for the log).
  std::optional<Clock::time_point> OnExit(Clock::time_point now);
  // "restarted 5 times within 600 s (--max-restarts 5, --restart-window 600); not restarting"
  std::string Refusal() const;
  // Restarts counted within the window as of the last OnExit.
  int recent() const { return static_cast<int>(restarts_.size()); }

 private:
  RestartLimits limits_;
  std::deque<Clock::time_point> restarts_;  // when each counted restart was granted
};

}  // namespace ipp::launchers

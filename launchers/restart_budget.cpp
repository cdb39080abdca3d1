#include "launchers/restart_budget.hpp"

#include <algorithm>

namespace ipp::launchers {

std::optional<RestartBudget::Clock::time_point> RestartBudget::OnExit(Clock::time_point now) {
  if (!limits_.enabled) return std::nullopt;
  while (!restarts_.empty() && now - restarts_.front() >= limits_.window) restarts_.pop_front();
  if (static_cast<int>(restarts_.size()) >= limits_.max_restarts) return std::nullopt;
  // Backoff doubles with each restart still within the window: a process that crashes at once
  // is not restarted in a tight loop, one that ran for a while comes back after the initial wait.
  auto backoff = limits_.initial_backoff;
  for (size_t i = 0; i < restarts_.size() && backoff < limits_.max_backoff; ++i) backoff *= 2;
  backoff = std::min(backoff, limits_.max_backoff);
  restarts_.push_back(now + backoff);
  return now + backoff;
}

std::string RestartBudget::Refusal() const {
  if (!limits_.enabled) return "restarts are off (--no-restart)";
  auto seconds = [](std::chrono::milliseconds d) { return std::to_string(d.count() / 1000); };
  return "restarted " + std::to_string(restarts_.size()) + " times within " + seconds(limits_.window) +
         " s (--max-restarts " + std::to_string(limits_.max_restarts) + ", --restart-window " +
         seconds(limits_.window) + "); not restarting";
}

}  // namespace ipp::launchers

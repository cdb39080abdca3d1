#include "launchers/restart_budget.hpp"

#include <gtest/gtest.h>

namespace ipp::launchers {
namespace {

using namespace std::chrono_literals;
using Clock = RestartBudget::Clock;

TEST(RestartBudgetTest, BackoffDoublesUpToItsMaximum) {
  RestartBudget budget({.enabled = true, .max_restarts = 10, .window = 1h, .initial_backoff = 1s, .max_backoff = 5s});
  Clock::time_point t{};
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 5; ++i) {
    auto at = budget.OnExit(t);
    ASSERT_TRUE(at.has_value());
    waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(*at - t));
  }
  EXPECT_EQ(waits, (std::vector<std::chrono::milliseconds>{1s, 2s, 4s, 5s, 5s}));
}

TEST(RestartBudgetTest, RefusesPastTheLimitWithinTheWindowAndAllowsAgainAfterIt) {
  RestartBudget budget({.enabled = true, .max_restarts = 2, .window = 60s, .initial_backoff = 1s, .max_backoff = 1s});
  Clock::time_point t{};
  EXPECT_TRUE(budget.OnExit(t).has_value());
  EXPECT_TRUE(budget.OnExit(t + 5s).has_value());
  EXPECT_FALSE(budget.OnExit(t + 10s).has_value());
  EXPECT_EQ(budget.Refusal(), "restarted 2 times within 60 s (--max-restarts 2, --restart-window 60); not restarting");
  // Both granted restarts have left the window: the slot has earned its budget back.
  auto again = budget.OnExit(t + 2min);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, t + 2min + 1s);
}

TEST(RestartBudgetTest, OffMeansNever) {
  RestartBudget budget({.enabled = false});
  EXPECT_FALSE(budget.OnExit(Clock::time_point{}).has_value());
  EXPECT_EQ(budget.Refusal(), "restarts are off (--no-restart)");
}

}  // namespace
}  // namespace ipp::launchers

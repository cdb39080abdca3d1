#include "schedulers/policies.hpp"

#include <gtest/gtest.h>

#include <map>

namespace ipp::schedulers {
namespace {

class PolicyTest : public ::testing::Test {
 protected:
  std::map<size_t, int> Histogram(const std::string& name, const std::vector<int>& loads, int draws = 4000) {
    auto policy = MakePolicy(name);
    EXPECT_NE(policy, nullptr);
    std::map<size_t, int> counts;
    for (int i = 0; i < draws; ++i) {
      size_t pick = policy->Pick(loads, rng_);
      EXPECT_LT(pick, loads.size());
      ++counts[pick];
    }
    return counts;
  }
  std::mt19937 rng_{12345};
};

TEST_F(PolicyTest, LruAlwaysPicksFrontOfLine) {
  auto h = Histogram("lru", {5, 0, 0});
  EXPECT_EQ(h[0], 4000);
}

TEST_F(PolicyTest, LeastLoadPrefersIdleEngineAndBreaksTiesByAge) {
  EXPECT_EQ(Histogram("leastload", {3, 1, 0, 0})[2], 4000);
  EXPECT_EQ(Histogram("leastload", {1, 1, 1})[0], 4000);
}

TEST_F(PolicyTest, PlainRandomUsesEveryEngine) {
  auto h = Histogram("plainrandom", {0, 0, 0, 0});
  for (size_t i = 0; i < 4; ++i) EXPECT_GT(h[i], 800) << i;
}

TEST_F(PolicyTest, TwoBinFavoursLeastRecentlyUsed) {
  auto h = Histogram("twobin", {0, 0, 0, 0});
  // min of two uniform draws: P(0) = 7/16, P(3) = 1/16
  EXPECT_GT(h[0], h[1]);
  EXPECT_GT(h[1], h[3]);
  EXPECT_GT(h[3], 0);
}

TEST_F(PolicyTest, WeightedAvoidsLoadedEngines) {
  auto h = Histogram("weighted", {10, 0, 10});
  EXPECT_GT(h[1], 3900);
}

TEST_F(PolicyTest, UnknownNameIsRejected) {
  EXPECT_EQ(MakePolicy("pure"), nullptr);
  EXPECT_EQ(PolicyNames().size(), 5u);
}

}  // namespace
}  // namespace ipp::schedulers

#include "schedulers/policies.hpp"

#include <gtest/gtest.h>

#include <algorithm>
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

// The index of engines with room picks as the policy does from the same engines in LRU order:
// engines given (slot, load, last use), listed to the policy oldest first.
class EngineIndexTest : public ::testing::TestWithParam<std::string> {
 protected:
  struct Engine {
    uint32_t slot;
    int load;
    int64_t last_use;
  };
  std::map<uint32_t, int> IndexHistogram(const std::vector<Engine>& engines, int draws = 8000) {
    auto index = MakeEngineIndex(GetParam());
    EXPECT_NE(index, nullptr);
    for (const Engine& e : engines) index->Insert(e.slot, e.load, e.last_use);
    std::map<uint32_t, int> counts;
    for (int i = 0; i < draws; ++i) ++counts[index->Pick(rng_)];
    return counts;
  }
  std::map<uint32_t, int> PolicyHistogram(std::vector<Engine> engines, int draws = 8000) {
    std::sort(engines.begin(), engines.end(), [](auto& a, auto& b) { return a.last_use < b.last_use; });
    std::vector<int> loads;
    for (const Engine& e : engines) loads.push_back(e.load);
    auto policy = MakePolicy(GetParam());
    std::map<uint32_t, int> counts;
    for (int i = 0; i < draws; ++i) ++counts[engines[policy->Pick(loads, rng_)].slot];
    return counts;
  }
  std::mt19937 rng_{777};
};

TEST_P(EngineIndexTest, PicksAsThePolicyDoes) {
  // Slots out of LRU order, a gap (slot 3 left), mixed loads.
  std::vector<Engine> engines = {{0, 2, 5}, {1, 0, 9}, {2, 0, -1}, {4, 1, 3}, {5, 0, 7}, {6, 3, -4}};
  auto index = IndexHistogram(engines), policy = PolicyHistogram(engines);
  for (const Engine& e : engines) {
    // Within 3 % of the draws (exact for lru and leastload, which draw nothing).
    EXPECT_NEAR(index[e.slot], policy[e.slot], 240) << GetParam() << " slot " << e.slot;
  }
  EXPECT_EQ(index.count(3), 0u);
}

TEST_P(EngineIndexTest, ErasedEnginesAreNeverPickedAndSlotsAreReused) {
  auto index = MakeEngineIndex(GetParam());
  for (uint32_t slot = 0; slot < 100; ++slot) index->Insert(slot, static_cast<int>(slot % 3), slot);
  for (uint32_t slot = 0; slot < 100; ++slot) {
    if (slot != 42) index->Erase(slot);
  }
  EXPECT_FALSE(index->empty());
  for (int i = 0; i < 200; ++i) EXPECT_EQ(index->Pick(rng_), 42u);
  index->Erase(42);
  EXPECT_TRUE(index->empty());
  index->Insert(7, 0, 1000);
  EXPECT_EQ(index->Pick(rng_), 7u);
}

INSTANTIATE_TEST_SUITE_P(Schemes, EngineIndexTest, ::testing::ValuesIn(PolicyNames()));

TEST_F(PolicyTest, LeastloadFillsTheMostLoadedEngineUnderTheLimitAndOthersDoNot) {
  auto index = MakeEngineIndex("leastload");
  // slot: load, last use
  index->Insert(0, 0, 5);
  index->Insert(1, 2, 9);
  index->Insert(2, 2, 4);
  index->Insert(3, 5, 1);
  index->Insert(4, 0, 8);
  EXPECT_EQ(index->PickFilling(3), std::optional<uint32_t>(1));  // load 2, the more recently used
  EXPECT_EQ(index->PickFilling(2), std::optional<uint32_t>(4));  // load 0, the more recently used
  EXPECT_EQ(index->PickFilling(9), std::optional<uint32_t>(3));
  index->Erase(0);
  index->Erase(4);
  EXPECT_EQ(index->PickFilling(2), std::nullopt);  // none under 2
  EXPECT_EQ(index->Pick(rng_), 2u);                // plain leastload is unchanged
  for (const char* other : {"lru", "weighted", "twobin", "plainrandom"}) {
    auto o = MakeEngineIndex(other);
    o->Insert(0, 1, 1);
    EXPECT_EQ(o->PickFilling(3), std::nullopt) << other;
  }
}

TEST_F(PolicyTest, UnknownNameIsRejected) {
  EXPECT_EQ(MakePolicy("pure"), nullptr);
  EXPECT_EQ(MakeEngineIndex("pure"), nullptr);
  EXPECT_EQ(PolicyNames().size(), 5u);
}

}  // namespace
}  // namespace ipp::schedulers

#include "common/flat_hash_map.hpp"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>

namespace ipp {
namespace {

TEST(FlatHashMap64Test, AgreesWithUnorderedMapThroughManyGrowths) {
  FlatHashMap64<uint32_t> flat;
  std::unordered_map<uint64_t, uint32_t> reference;
  std::mt19937_64 rng(7);
  for (uint32_t i = 0; i < 50000; ++i) {
    uint64_t key = 2 + rng() % 40000;  // repeats: assignments overwrite
    flat[key] = i;
    reference[key] = i;
  }
  EXPECT_EQ(flat.size(), reference.size());
  for (const auto& [key, value] : reference) {
    const uint32_t* found = flat.find(key);
    ASSERT_NE(found, nullptr) << key;
    EXPECT_EQ(*found, value);
  }
  int absent = 0;
  for (uint64_t key = 40002; key < 41002; ++key) absent += flat.contains(key) ? 0 : 1;
  EXPECT_EQ(absent, 1000);
}

TEST(FlatHashMap64Test, ZeroIsAKeyLikeAnyOther) {
  FlatHashMap64<int> flat;
  EXPECT_FALSE(flat.contains(0));
  flat[0] = 5;
  ASSERT_TRUE(flat.contains(0));
  EXPECT_EQ(*flat.find(0), 5);
  EXPECT_EQ(flat.size(), 1u);
}

}  // namespace
}  // namespace ipp

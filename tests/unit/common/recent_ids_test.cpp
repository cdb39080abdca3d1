#include "common/recent_ids.hpp"

#include <gtest/gtest.h>

namespace ipp {
namespace {

TEST(RecentIdsTest, RemembersUntilTakenOnce) {
  RecentIds ids(4);
  ids.insert("a");
  EXPECT_TRUE(ids.contains("a"));
  EXPECT_TRUE(ids.take("a"));
  EXPECT_FALSE(ids.take("a"));
  EXPECT_FALSE(ids.take("never"));
}

TEST(RecentIdsTest, ForgetsTheOldestPastItsCapacity) {
  RecentIds ids(3);
  for (const char* id : {"a", "b", "c", "d", "e"}) ids.insert(id);
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_FALSE(ids.contains("a"));
  EXPECT_FALSE(ids.contains("b"));
  EXPECT_TRUE(ids.take("c"));
  EXPECT_TRUE(ids.take("e"));
  for (int i = 0; i < 1000; ++i) ids.insert("x" + std::to_string(i));
  EXPECT_EQ(ids.size(), 3u);  // bounded however many come
}

}  // namespace
}  // namespace ipp

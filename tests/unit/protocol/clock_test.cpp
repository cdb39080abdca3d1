#include "protocol/clock.hpp"

#include <gtest/gtest.h>

namespace ipp::protocol {
namespace {

TEST(ClockTest, FormatsUtcWithMicrosecondsAndZ) {
  auto t = WallClock::time_point(std::chrono::seconds(1764091598)) + std::chrono::microseconds(123456);
  EXPECT_EQ(Iso8601(t), "2025-11-25T17:26:38.123456Z");
}

TEST(ClockTest, ParsesWhatItWritesAndOffsets) {
  auto t = WallClock::time_point(std::chrono::seconds(1764091598)) + std::chrono::microseconds(5);
  EXPECT_EQ(ParseIso8601(Iso8601(t)), t);
  EXPECT_EQ(ParseIso8601("2025-11-25T18:26:38.000005+01:00"), t);
  EXPECT_EQ(ParseIso8601("2025-11-25T17:26:38"), WallClock::time_point(std::chrono::seconds(1764091598)));
  EXPECT_FALSE(ParseIso8601("yesterday").has_value());
  EXPECT_FALSE(ParseIso8601("2025-11-25T17:26:38.1Q").has_value());
  // Found by wire_fuzzer: fields out of range overflowed the nanosecond time_point.
  EXPECT_FALSE(ParseIso8601("4053-11-25T17:26:38Z").has_value());
  EXPECT_FALSE(ParseIso8601("2025-99-99T99:99:99Z").has_value());
  EXPECT_FALSE(ParseIso8601("2025-11-25T17:26:38+99:00").has_value());
}

}  // namespace
}  // namespace ipp::protocol

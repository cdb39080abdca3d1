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

TEST(ClockTest, FixedLayoutAndLooseLayoutAgreeAndRoundTripAcrossSeconds) {
  EXPECT_EQ(ParseIso8601("2025-1-5T1:2:3Z"), ParseIso8601("2025-01-05T01:02:03Z"));  // sscanf path
  EXPECT_EQ(ParseIso8601("2025-02-30T00:00:00Z"), ParseIso8601("2025-03-02T00:00:00Z"));  // as timegm
  EXPECT_EQ(ParseIso8601("2024-02-29T12:00:00Z"),
            WallClock::time_point(std::chrono::seconds(1709208000)));  // leap day
  // Many instants, before and after 1970, each formatted (the seconds part is cached between
  // calls) and parsed back.
  for (long long s = -2000000000LL; s < 4000000000LL; s += 86399 * 997 + 1) {
    for (long us : {0L, 1L, 999999L}) {
      auto t = WallClock::time_point(std::chrono::seconds(s)) + std::chrono::microseconds(us);
      EXPECT_EQ(ParseIso8601(Iso8601(t)), t) << Iso8601(t);
    }
  }
}

}  // namespace
}  // namespace ipp::protocol

#include "common/logging.hpp"

#include <gtest/gtest.h>

namespace ipp {
namespace {

TEST(LoggingTest, ParsesIpyparallelNumbersAndNames) {
  EXPECT_EQ(*ParseLogLevel("10"), spdlog::level::debug);
  EXPECT_EQ(*ParseLogLevel("info"), spdlog::level::info);
  EXPECT_EQ(*ParseLogLevel("WARNING"), spdlog::level::warn);
  EXPECT_EQ(*ParseLogLevel("40"), spdlog::level::err);
  EXPECT_EQ(*ParseLogLevel("CRITICAL"), spdlog::level::critical);
  Result<spdlog::level::level_enum> bad = ParseLogLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("loud"), std::string::npos);
}

}  // namespace
}  // namespace ipp

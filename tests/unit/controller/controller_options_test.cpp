#include "controller/controller_options.hpp"

#include <fstream>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.hpp"

namespace ipp::controller {
namespace {

TEST(ControllerOptionsTest, ParsesPortRanges) {
  EXPECT_EQ(*ParsePortList("10101-10103,10108"), (std::vector<int>{10101, 10102, 10103, 10108}));
  EXPECT_FALSE(ParsePortList("10-5").ok());
  EXPECT_FALSE(ParsePortList("abc").ok());
  EXPECT_FALSE(ParsePortList("1,,2").ok());
}

TEST(ControllerOptionsTest, AppliesKnownTraitsAndReportsOthers) {
  ControllerOptions o;
  EXPECT_TRUE(ApplyTrait(o, "HeartMonitor.period", "200").ok());
  EXPECT_EQ(o.ping.count(), 200);
  EXPECT_TRUE(ApplyTrait(o, "TaskScheduler.scheme_name", "'lru'").ok());
  EXPECT_EQ(o.scheme, "lru");
  EXPECT_FALSE(o.hwm.has_value());  // not given: the adaptive prefetch
  EXPECT_TRUE(ApplyTrait(o, "TaskScheduler.hwm", "0").ok());
  EXPECT_EQ(o.hwm, 0);
  EXPECT_TRUE(ApplyTrait(o, "IPController.restore_engines", "True").ok());
  EXPECT_TRUE(o.restore && o.reuse);
  EXPECT_TRUE(ApplyTrait(o, "Session.key", "b'0123-abcd'").ok());
  EXPECT_EQ(o.session_key, "0123-abcd");
  EXPECT_EQ(ApplyTrait(o, "Session.debug", "True").code(), Status::Code::kNotFound);
  EXPECT_EQ(ApplyTrait(o, "TaskScheduler.scheme_name", "pure").code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(ApplyTrait(o, "HeartMonitor.period", "soon").code(), Status::Code::kInvalidArgument);
}

TEST(ControllerOptionsTest, HonoursSimpleLinesOfPythonConfig) {
  testutil::TempDir dir;
  auto path = dir.path() / "ipcontroller_config.py";
  std::ofstream(path) << "c = get_config()  # noqa\n"
                         "# a comment\n"
                         "c.HeartMonitor.period = 250\n"
                         "c.TaskScheduler.hwm = 4  # inline comment\n"
                         "c.Session.debug = True\n"
                         "import os\n";
  ControllerOptions o;
  auto warnings = ApplyPythonConfig(o, path.string());
  EXPECT_EQ(o.ping.count(), 250);
  EXPECT_EQ(o.hwm, 4);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find(":5:"), std::string::npos);
  EXPECT_NE(warnings[1].find("not a simple"), std::string::npos);
  EXPECT_TRUE(ApplyPythonConfig(o, (dir.path() / "missing.py").string()).empty());
}

}  // namespace
}  // namespace ipp::controller

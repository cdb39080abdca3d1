#include "launchers/launcher.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.hpp"

namespace ipp::launchers {
namespace {

using namespace std::chrono_literals;

int WaitStatusOf(const std::string& script, const std::filesystem::path& log) {
  Result<pid_t> pid = Spawn({"/bin/sh", "-c", script}, log);
  EXPECT_TRUE(pid.ok());
  int status = 0;
  waitpid(*pid, &status, 0);
  return status;
}

TEST(LauncherTest, WaitStatusesAreSaidInWords) {
  testutil::TempDir dir;
  EXPECT_EQ(DescribeWaitStatus(WaitStatusOf("exit 3", dir.path() / "a.log")), "exited with status 3");
  EXPECT_EQ(DescribeWaitStatus(WaitStatusOf("kill -KILL $$", dir.path() / "b.log")), "killed by SIGKILL");
  EXPECT_EQ(DescribeWaitStatus(WaitStatusOf("kill -TERM $$", dir.path() / "c.log")), "killed by SIGTERM");
}

TEST(LauncherTest, LocalEnginesThatCannotStartAreReportedWithHowTheyEnded) {
  testutil::TempDir dir;
  LaunchContext context;
  context.profile_dir = dir.path();
  context.log_dir = dir.path();
  context.config = {{"engine_command", "/nonexistent/ipengine"}};
  auto engines = MakeEngineLauncher("Local", context);
  ASSERT_TRUE(engines.ok());
  ASSERT_TRUE((*engines)->Start(2).ok());
  ASSERT_TRUE(testutil::WaitFor([&] { return (*engines)->Alive() == 0; }, 10s));
  auto exits = (*engines)->Exits();
  ASSERT_EQ(exits.size(), 2u);
  for (const auto& e : exits) {
    EXPECT_EQ(e.how, "exited with status 127");
    EXPECT_NE(testutil::ReadFile(e.log).find("cannot run /nonexistent/ipengine"), std::string::npos);
  }
  Json state = (*engines)->State();
  EXPECT_EQ(state["processes"][0]["exit"], "exited with status 127");
  // A launcher restored from the cluster file keeps what the one that reaped them recorded.
  auto restored = MakeEngineLauncher("Local", context, state);
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ((*restored)->Exits().at(1).how, "exited with status 127");
  std::string logs = (*engines)->LogLocation();
  EXPECT_EQ(logs.rfind((dir.path() / "ipengine-").string(), 0), 0u) << logs;
  EXPECT_NE(logs.find("*.log (2 files)"), std::string::npos) << logs;
}

TEST(LauncherTest, StopGroupsEndsEveryMemberOfEachGroup) {
  testutil::TempDir dir;
  // A leader with a child in its group, as mpiexec has its ranks.
  auto member_file = dir.path() / "member.pid";
  Result<pid_t> leader = Spawn({"/bin/sh", "-c", "sleep 30 & echo $! > " + member_file.string() + "; wait"}, dir.path() / "group.log");
  Result<pid_t> single = Spawn({"sleep", "30"}, dir.path() / "single.log");
  ASSERT_TRUE(leader.ok() && single.ok());
  ASSERT_TRUE(testutil::WaitFor([&] { return testutil::ReadFile(member_file).find('\n') != std::string::npos; }, 10s));
  pid_t member = std::stoi(testutil::ReadFile(member_file));
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(StopGroups({*leader, *single}, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_FALSE(ProcessAlive(*leader));
  EXPECT_FALSE(ProcessAlive(member));  // gone, or a zombie waiting for init
  EXPECT_FALSE(ProcessAlive(*single));
}

}  // namespace
}  // namespace ipp::launchers

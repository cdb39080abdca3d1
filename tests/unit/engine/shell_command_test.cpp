#include "engine/shell_command.hpp"

#include <signal.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.hpp"

namespace ipp::engine {
namespace {

TEST(ShellCommandTest, CapturesAndStreamsOutputAndExitCode) {
  std::string streamed;
  CommandResult r = RunCommand("echo out; echo err >&2; exit 4", std::chrono::milliseconds(0),
                               [&](const char* stream, std::string_view text) {
                                 streamed += std::string(stream) + ":" + std::string(text);
                               }, nullptr);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.stdout_text, "out\n");
  EXPECT_EQ(r.stderr_text, "err\n");
  EXPECT_NE(streamed.find("stdout:out"), std::string::npos);
  EXPECT_NE(streamed.find("stderr:err"), std::string::npos);
  EXPECT_NE(r.describe("x").find("exit status 4"), std::string::npos);
}

TEST(ShellCommandTest, TimeoutKillsTheWholeProcessGroup) {
  testutil::TempDir dir;
  auto pidfile = dir.path() / "grandchild.pid";
  auto start = std::chrono::steady_clock::now();
  // The grandchild ignores nothing special but would outlive a kill of the shell alone.
  CommandResult r = RunCommand("sleep 30 & echo $! > " + pidfile.string() + "; wait",
                               std::chrono::milliseconds(300), nullptr, nullptr);
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  int grandchild = 0;
  std::ifstream(pidfile) >> grandchild;
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(testutil::WaitFor([&] { return kill(grandchild, 0) != 0; }, std::chrono::seconds(5)))
      << "grandchild " << grandchild << " survived";
}

TEST(ShellCommandTest, InterruptStopsACommandAndStubbornOnesGetKilled) {
  CommandControl control;
  std::thread interrupter([&] {
    testutil::WaitFor([&] { return control.process_group.load() != 0; }, std::chrono::seconds(5));
    control.interrupt.store(true);
  });
  auto start = std::chrono::steady_clock::now();
  CommandResult r = RunCommand("trap '' TERM; sleep 30", std::chrono::milliseconds(0), nullptr, &control);
  interrupter.join();
  EXPECT_TRUE(r.interrupted);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(control.process_group.load(), 0);
}

TEST(ShellCommandTest, MissingCommandReportsStatus127) {
  CommandResult r = RunCommand("no-such-command-ipp", std::chrono::milliseconds(0), nullptr, nullptr);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.stderr_text.find("not found"), std::string::npos);
}

}  // namespace
}  // namespace ipp::engine

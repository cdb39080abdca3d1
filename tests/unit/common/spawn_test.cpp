#include "common/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

namespace ipp {
namespace {

// What a spawned command printed and how it ended.
struct Outcome {
  std::string out, err;
  int status = -1;
};

class SpawnTest : public ::testing::Test {
 protected:
  // Runs argv with stdout and stderr captured through O_CLOEXEC pipes, and reaps it.
  Outcome Capture(const std::vector<std::string>& argv, SpawnOptions options = {}) {
    int out[2], err[2];
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(err, O_CLOEXEC), 0);
    options.stdout_fd = out[1];
    options.stderr_fd = err[1];
    Result<pid_t> pid = Spawn(argv, options);
    close(out[1]);
    close(err[1]);
    Outcome run;
    run.out = ReadAll(out[0]);
    run.err = ReadAll(err[0]);
    EXPECT_TRUE(pid.ok()) << pid.status().message();
    if (pid.ok()) {
      EXPECT_EQ(waitpid(*pid, &run.status, 0), *pid);
    }
    return run;
  }

  // The child's pid and field `field` of its /proc/<pid>/stat (5: process group, 6: session).
  std::pair<std::string, std::string> PidAndStat(const SpawnOptions& options, int field) {
    Outcome run = Capture({"sh", "-c", "echo $$; cut -d' ' -f" + std::to_string(field) + " /proc/$$/stat"}, options);
    std::istringstream lines(run.out);
    std::string pid, value;
    lines >> pid >> value;
    return {pid, value};
  }

  static std::string ReadAll(int fd) {
    std::string text;
    char buffer[4096];
    for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      text.append(buffer, static_cast<size_t>(n));
    }
    close(fd);
    return text;
  }
};

TEST_F(SpawnTest, RunsTheCommandWithItsOutputWhereAsked) {
  Outcome run = Capture({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(run.out, "out\n");
  EXPECT_EQ(run.err, "err\n");
  ASSERT_TRUE(WIFEXITED(run.status));
  EXPECT_EQ(WEXITSTATUS(run.status), 3);
}

TEST_F(SpawnTest, StdinIsDevNullByDefault) {
  Outcome run = Capture({"sh", "-c", "cat; echo done"});  // would block on an inherited terminal or pipe
  EXPECT_EQ(run.out, "done\n");
}

TEST_F(SpawnTest, ProgramCanDifferFromArgvZero) {
  SpawnOptions options;
  options.program = "/bin/sh";
  Outcome run = Capture({"my-shell", "-c", "echo $0"}, options);
  EXPECT_EQ(run.out, "my-shell\n");
}

TEST_F(SpawnTest, AProgramThatCannotRunExits127WithTheReason) {
  Outcome run = Capture({"/nonexistent/ipp-no-such-program", "x"});
  ASSERT_TRUE(WIFEXITED(run.status));
  EXPECT_EQ(WEXITSTATUS(run.status), 127);
  EXPECT_EQ(run.err, "cannot run /nonexistent/ipp-no-such-program: No such file or directory\n");
}

TEST_F(SpawnTest, EmptyCommandIsAnError) {
  Result<pid_t> pid = Spawn({});
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), Status::Code::kInvalidArgument);
}

TEST_F(SpawnTest, NewGroupMakesTheChildAGroupLeader) {
  auto [pid, pgid] = PidAndStat({}, 5);  // kNewGroup is the default
  EXPECT_EQ(pgid, pid);
}

TEST_F(SpawnTest, NewSessionMakesTheChildASessionLeader) {
  SpawnOptions options;
  options.group = SpawnOptions::Group::kNewSession;
  auto [pid, sid] = PidAndStat(options, 6);
  EXPECT_EQ(sid, pid);
}

TEST_F(SpawnTest, InheritKeepsOurGroup) {
  SpawnOptions options;
  options.group = SpawnOptions::Group::kInherit;
  auto [pid, pgid] = PidAndStat(options, 5);
  EXPECT_NE(pid, std::to_string(getpid()));
  EXPECT_EQ(pgid, std::to_string(getpgrp()));
}

TEST_F(SpawnTest, DefaultSignalsUndoAnInheritedIgnore) {
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old);
  Outcome ignored = Capture({"sh", "-c", "kill -PIPE $$; echo survived"});
  SpawnOptions options;
  options.default_signals = {SIGPIPE};
  Outcome restored = Capture({"sh", "-c", "kill -PIPE $$; echo survived"}, options);
  sigaction(SIGPIPE, &old, nullptr);
  EXPECT_EQ(ignored.out, "survived\n");
  ASSERT_TRUE(WIFSIGNALED(restored.status));
  EXPECT_EQ(WTERMSIG(restored.status), SIGPIPE);
}

TEST_F(SpawnTest, TheChildGetsOnlyItsStdinFromDevNull) {
  // The /dev/null Spawn opens for stdin is not left open in the child beside fd 0. Descriptors
  // on /dev/null that this test inherited without O_CLOEXEC are the child's too.
  std::set<std::string> expected = {"0"};
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    int fd = std::stoi(entry.path().filename().string());
    if (std::filesystem::read_symlink(entry.path(), ec) == "/dev/null" && fd > 2 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC)) {
      expected.insert(std::to_string(fd));
    }
  }
  Outcome run = Capture({"sh", "-c", "cd /proc/self/fd && exec find . -lname /dev/null -printf '%f\\n'"});
  std::set<std::string> got;
  std::istringstream lines(run.out);
  for (std::string fd; lines >> fd;) got.insert(fd);
  EXPECT_EQ(got, expected) << run.out << run.err;
}

}  // namespace
}  // namespace ipp

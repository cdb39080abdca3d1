#include "launchers/engine_supervisor.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

namespace ipp::launchers {
namespace {

using namespace std::chrono_literals;
using Clock = EngineSupervisor::Clock;

// A set whose processes end when the test says; Restart hands out new pids.
class FakeSet : public Launcher {
 public:
  explicit FakeSet(std::string kind = "Local") : kind_(std::move(kind)) {}
  Status Start(int) override { return Status::OK(); }
  Status Stop() override { return Status::OK(); }
  int Alive() override { return 0; }
  std::string FailureLog() override { return ""; }
  std::vector<ProcessExit> Exits() override { return exits; }
  std::string LogLocation() const override { return ""; }
  Json State() const override { return Json::object(); }
  std::string kind() const override { return kind_; }
  std::string host() const override { return "node1"; }
  Result<pid_t> Restart(pid_t ended) override {
    restarted.push_back(ended);
    return next_pid++;
  }
  void End(pid_t pid, int slot, std::string how, bool requested = false, bool refused = false) {
    exits.push_back({pid, std::move(how), "/no/such.log", slot, requested, refused});
  }

  std::vector<ProcessExit> exits;
  std::vector<pid_t> restarted;
  pid_t next_pid = 1000;

 private:
  std::string kind_;
};

struct Fixture {
  std::ostringstream text;
  Logger log = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
  std::vector<std::unique_ptr<Launcher>> sets;
  FakeSet* set = nullptr;
  Fixture(std::string kind = "Local") {
    auto s = std::make_unique<FakeSet>(std::move(kind));
    set = s.get();
    sets.push_back(std::move(s));
  }
};

RestartLimits Limits(int max_restarts) {
  return {.enabled = true, .max_restarts = max_restarts, .window = 60s, .initial_backoff = 1s, .max_backoff = 4s};
}

TEST(EngineSupervisorTest, AKilledEngineIsRestartedInItsSlotAfterTheBackoff) {
  Fixture f;
  EngineSupervisor sup(Limits(5), f.log);
  Clock::time_point t{};
  bool changed = false;
  EXPECT_TRUE(sup.Tick(f.sets, t, &changed).empty());
  EXPECT_FALSE(changed);
  f.set->End(11, 0, "killed (SIGKILL; possibly out of memory)");
  auto ends = sup.Tick(f.sets, t, &changed);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].pid, 11);
  EXPECT_EQ(ends[0].host, "node1");
  EXPECT_FALSE(ends[0].requested);
  EXPECT_TRUE(changed);
  EXPECT_TRUE(f.set->restarted.empty());  // not before the backoff
  changed = false;
  EXPECT_TRUE(sup.Tick(f.sets, t + 500ms, &changed).empty());  // seen once only
  EXPECT_TRUE(f.set->restarted.empty());
  sup.Tick(f.sets, t + 1s, &changed);
  EXPECT_EQ(f.set->restarted, std::vector<pid_t>{11});
  EXPECT_EQ(sup.restarts(), 1);
  EXPECT_TRUE(changed);
  EXPECT_NE(f.text.str().find("Local engine process pid 11 killed (SIGKILL; possibly out of memory); restarting it in 1.0 s"),
            std::string::npos) << f.text.str();
  EXPECT_NE(f.text.str().find("slot 0 (pid 11) restarted as pid 1000"), std::string::npos) << f.text.str();
}

TEST(EngineSupervisorTest, ARequestedEndIsNotRestarted) {
  Fixture f;
  EngineSupervisor sup(Limits(5), f.log);
  bool changed = false;
  f.set->End(11, 0, "exited with status 0", /*requested=*/true);
  auto ends = sup.Tick(f.sets, Clock::time_point{}, &changed);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_TRUE(ends[0].requested);
  sup.Tick(f.sets, Clock::time_point{} + 1h, &changed);
  EXPECT_TRUE(f.set->restarted.empty());
  EXPECT_EQ(sup.pending(), 0u);
  EXPECT_NE(f.text.str().find("not restarted: it was asked to stop"), std::string::npos) << f.text.str();
}

TEST(EngineSupervisorTest, AnEngineTheControllerRefusedIsNotRestarted) {
  Fixture f;
  EngineSupervisor sup(Limits(5), f.log);
  bool changed = false;
  f.set->End(11, 0, "exited with status 69 (the controller refused its registration)", false, /*refused=*/true);
  auto ends = sup.Tick(f.sets, Clock::time_point{}, &changed);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_FALSE(ends[0].requested);  // reported as an unexpected end
  sup.Tick(f.sets, Clock::time_point{} + 1h, &changed);
  EXPECT_TRUE(f.set->restarted.empty());
  EXPECT_EQ(sup.pending(), 0u);
  EXPECT_NE(f.text.str().find("not restarted: the controller would refuse it again"), std::string::npos) << f.text.str();
}

TEST(EngineSupervisorTest, RefusedIsExitStatus69) {
  EXPECT_TRUE(RefusedByTheController(69 << 8));
  EXPECT_FALSE(RefusedByTheController(1 << 8));
  EXPECT_FALSE(RefusedByTheController(SIGKILL));
  EXPECT_EQ(DescribeEnd(69 << 8, false), "exited with status 69 (the controller refused its registration)");
}

TEST(EngineSupervisorTest, NoRestartLeavesItDeadAndSaysWhy) {
  Fixture f;
  RestartLimits off = Limits(5);
  off.enabled = false;
  EngineSupervisor sup(off, f.log);
  bool changed = false;
  f.set->End(11, 0, "exited with status 1");
  sup.Tick(f.sets, Clock::time_point{}, &changed);
  sup.Tick(f.sets, Clock::time_point{} + 1h, &changed);
  EXPECT_TRUE(f.set->restarted.empty());
  EXPECT_NE(f.text.str().find("restarts are off (--no-restart)"), std::string::npos) << f.text.str();
}

TEST(EngineSupervisorTest, ACrashLoopStopsAtTheLimitPerSlot) {
  Fixture f;
  EngineSupervisor sup(Limits(2), f.log);
  Clock::time_point t{};
  bool changed = false;
  // Slot 0 crashes at once, again and again; slot 1 dies once.
  pid_t pid = 11;
  for (int i = 0; i < 4; ++i) {
    f.set->End(pid, 0, "exited with status 3");
    sup.Tick(f.sets, t, &changed);
    t += 10s;  // past any backoff
    sup.Tick(f.sets, t, &changed);
    pid = f.set->next_pid - 1;
  }
  EXPECT_EQ(f.set->restarted.size(), 2u);
  f.set->End(12, 1, "exited with status 3");
  sup.Tick(f.sets, t, &changed);
  sup.Tick(f.sets, t + 10s, &changed);
  EXPECT_EQ(f.set->restarted.size(), 3u);  // slot 1 has its own budget
  EXPECT_NE(f.text.str().find("restarted 2 times within 60 s (--max-restarts 2, --restart-window 60); not restarting"),
            std::string::npos) << f.text.str();
  EXPECT_EQ(sup.given_up(), 1);  // slot 0, at its third end (the loop's fourth End repeats that pid)
}

TEST(EngineSupervisorTest, AnMpiSetIsOneSlotAndTheLogSaysSo) {
  Fixture f("MPI");
  EngineSupervisor sup(Limits(1), f.log);
  bool changed = false;
  f.set->End(20, 0, "exited with status 137");
  sup.Tick(f.sets, Clock::time_point{}, &changed);
  sup.Tick(f.sets, Clock::time_point{} + 1s, &changed);
  EXPECT_EQ(f.set->restarted, std::vector<pid_t>{20});
  EXPECT_NE(f.text.str().find("one rank's end ends mpiexec's whole job: all its ranks are one slot"), std::string::npos)
      << f.text.str();
}

TEST(EngineSupervisorTest, ASigkillSaysPossiblyOutOfMemoryUnlessWeSentIt) {
  int killed = 0;
  pid_t pid = fork();
  if (pid == 0) {
    raise(SIGKILL);
    _exit(0);
  }
  waitpid(pid, &killed, 0);
  EXPECT_EQ(DescribeEnd(killed, false), "killed (SIGKILL; possibly out of memory)");
  EXPECT_EQ(DescribeEnd(killed, true), "killed by SIGKILL");
  EXPECT_EQ(DescribeEnd(3 << 8, false), "exited with status 3");
}

}  // namespace
}  // namespace ipp::launchers

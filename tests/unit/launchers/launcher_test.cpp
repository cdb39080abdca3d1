#include "launchers/launcher.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

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

TEST(LauncherTest, LocalProcessesGetTheEnvironmentOverOurs) {
  testutil::TempDir dir;
  auto seen = dir.path() / "seen.txt";
  auto engine = dir.path() / "engine.sh";
  {
    std::ofstream out(engine);
    out << "#!/bin/sh\nprintf '%s|%s|%s\\n' \"$IPP_ENV_GLOBAL\" \"$IPP_ENV_QUOTED\" \"$IPP_ENV_OURS\" > " << seen.string() << ".tmp\n"
        << "mv " << seen.string() << ".tmp " << seen.string() << "\n";
  }
  std::filesystem::permissions(engine, std::filesystem::perms::owner_all);
  ASSERT_EQ(setenv("IPP_ENV_OURS", "ours", 1), 0);
  LaunchContext context;
  context.profile_dir = dir.path();
  context.log_dir = dir.path();
  context.config = {{"engine_command", engine.string()}, {"mpi", {{"environment", {{"IPP_ENV_GLOBAL", "mpi only"}}}}}};
  context.environment = {{"IPP_ENV_GLOBAL", "g"}, {"IPP_ENV_QUOTED", "it's \"x\" $HOME"}, {"IPP_ENV_OURS", "theirs"}};
  auto engines = MakeEngineLauncher("Local", context);
  ASSERT_TRUE(engines.ok());
  ASSERT_TRUE((*engines)->Start(1).ok());
  ASSERT_TRUE(testutil::WaitFor([&] { return std::filesystem::exists(seen); }, 10s));
  EXPECT_EQ(testutil::ReadFile(seen), "g|it's \"x\" $HOME|theirs\n");
  unsetenv("IPP_ENV_OURS");
  EXPECT_TRUE((*engines)->Stop().ok());
  // A section's own environment goes over the global one, for its launcher only.
  EXPECT_EQ(EnvironmentFor(context, "mpi").at("IPP_ENV_GLOBAL"), "mpi only");
  EXPECT_EQ(EnvironmentFor(context, "ssh").at("IPP_ENV_GLOBAL"), "g");
  EXPECT_EQ(EnvironmentFor(context, "").size(), 3u);
  EXPECT_TRUE(IsEnvironmentName("_A1"));
  for (const char* bad : {"", "1A", "A-B", "A B", "A=B"}) EXPECT_FALSE(IsEnvironmentName(bad)) << bad;
}

// A batch system's submit command faked on PATH: it keeps the script it was given and prints a
// job id as the real one does.
class FakeSubmit {
 public:
  FakeSubmit(const testutil::TempDir& dir, const std::string& command, const std::string& prints)
      : script_(dir.path() / "submitted"), old_path_(getenv("PATH") ? getenv("PATH") : "") {
    auto bin = dir.path() / "bin";
    std::filesystem::create_directories(bin);
    std::ofstream out(bin / command);
    out << "#!/bin/sh\nfor a; do last=$a; done\ncp \"$last\" " << script_.string() << "\necho '" << prints << "'\n";
    out.close();
    std::filesystem::permissions(bin / command, std::filesystem::perms::owner_all);
    setenv("PATH", (bin.string() + ":" + old_path_).c_str(), 1);
  }
  ~FakeSubmit() { setenv("PATH", old_path_.c_str(), 1); }
  std::string Script() const { return testutil::ReadFile(script_); }

 private:
  std::filesystem::path script_;
  std::string old_path_;
};

TEST(LauncherTest, BatchScriptsExportTheEnvironmentAndNameEachJobsOutput) {
  testutil::TempDir dir;
  LaunchContext context;
  context.profile_dir = dir.path();
  context.log_dir = dir.path() / "log";
  std::filesystem::create_directories(context.log_dir);
  context.environment = {{"GLOBAL", "g"}, {"OVER", "global"}};
  context.config = {{"slurm", {{"environment", {{"OVER", "it's slurm's"}}}}}};
  {
    FakeSubmit sbatch(dir, "sbatch", "Submitted batch job 4242");
    auto engines = MakeEngineLauncher("Slurm", context);
    ASSERT_TRUE(engines.ok());
    ASSERT_TRUE((*engines)->Start(2).ok());
    std::string script = sbatch.Script();
    size_t exports = script.find("export GLOBAL='g'\nexport OVER='it'\\''s slurm'\\''s'\n");
    EXPECT_NE(exports, std::string::npos) << script;
    EXPECT_LT(exports, script.find("srun ")) << script;
    std::string output = (context.log_dir / "slurm-engine-4242.log").string();
    EXPECT_EQ((*engines)->LogLocation(), output);
    EXPECT_EQ((*engines)->State()["output"], output);
    {
      std::ofstream job_output(output);
      job_output << "ipengine: cannot reach the controller\n";
    }
    std::string failure = (*engines)->FailureLog();
    EXPECT_NE(failure.find("job 4242"), std::string::npos) << failure;
    EXPECT_NE(failure.find(output), std::string::npos) << failure;
    EXPECT_NE(failure.find("cannot reach the controller"), std::string::npos) << failure;
    // Restored from the cluster file (ipcluster list, stop): still named.
    auto restored = MakeEngineLauncher("Slurm", context, (*engines)->State());
    EXPECT_EQ((*restored)->LogLocation(), output);
  }
  {
    FakeSubmit condor(dir, "condor_submit", "1 job(s) submitted to cluster 55.");
    auto engines = MakeEngineLauncher("HTCondor", context);
    ASSERT_TRUE((*engines)->Start(1).ok());
    EXPECT_NE(condor.Script().find("environment = \"GLOBAL='g' OVER='global'\"\n"), std::string::npos) << condor.Script();
    EXPECT_EQ((*engines)->LogLocation(), (context.log_dir / "condor-engine-55.*.out").string());
  }
  // A template of one's own without the field would drop the environment: refused, named.
  auto custom = dir.path() / "mine.sh";
  std::ofstream(custom) << "#!/bin/sh\n{command}\n";
  context.config["slurm"]["engine_template"] = custom.string();
  auto engines = MakeEngineLauncher("Slurm", context);
  Status s = (*engines)->Start(1);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(custom.string()), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("{environment}"), std::string::npos) << s.ToString();
}

// PBS (no server here): qsub, qstat and qdel are scripts that play a Torque server's part, so
// the launcher's rendering, submission, polling and cancelling run as they would against one.
TEST(LauncherTest, PbsJobsAreSubmittedPolledAndCancelled) {
  testutil::TempDir dir;
  const auto bin = dir.path() / "bin";
  std::filesystem::create_directories(bin);
  auto script = [&](const std::string& name, const std::string& body) {
    std::ofstream(bin / name) << "#!/bin/sh\n" << body;
    std::filesystem::permissions(bin / name, std::filesystem::perms::owner_all);
  };
  const std::string d = dir.path().string();
  script("qsub", "n=$(cat " + d + "/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > " + d + "/n\n"
                 "cp \"$1\" " + d + "/script-$n; echo \"$((1233+n))[].torque-server\"\n");
  script("qstat", "cat " + d + "/qstat.out\n");
  script("qdel", "echo \"$1\" >> " + d + "/qdel.log\n");
  std::string path = bin.string() + ":" + (getenv("PATH") ? getenv("PATH") : "");
  std::string old_path = getenv("PATH") ? getenv("PATH") : "";
  setenv("PATH", path.c_str(), 1);
  LaunchContext context;
  context.profile_dir = dir.path();
  context.log_dir = dir.path();
  context.config = {{"pbs", {{"queue", "batch"}, {"walltime", "01:00:00"}}}};
  auto pbs = MakeEngineLauncher("PBS", context);
  ASSERT_TRUE(pbs.ok());
  auto first = (*pbs)->Submit(8), second = (*pbs)->Submit(3);
  ASSERT_TRUE(first.ok() && second.ok()) << first.status().message() << second.status().message();
  EXPECT_EQ(*first, "1234[].torque-server");
  EXPECT_EQ(*second, "1235[].torque-server");
  std::string rendered = testutil::ReadFile(dir.path() / "script-1");
  for (const char* line : {"#PBS -t 1-8\n", "#PBS -q batch\n", "#PBS -l walltime=01:00:00\n", "#PBS -V\n"}) {
    EXPECT_NE(rendered.find(line), std::string::npos) << line << " in " << rendered;
  }
  EXPECT_NE(testutil::ReadFile(dir.path() / "script-2").find("#PBS -t 1-3\n"), std::string::npos);
  const std::string header =
      "Job ID                    Name             User            Time Use S Queue\n"
      "------------------------- ---------------- --------------- -------- - -----\n";
  std::ofstream(dir.path() / "qstat.out") << header << "1234[].torque-server       ipp-engine       alice                  0 R batch\n"
                                          << "1235[].torque-server       ipp-engine       alice                  0 Q batch\n";
  auto jobs = (*pbs)->Jobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status().message();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].state, JobState::kRunning);
  EXPECT_EQ((*jobs)[1].state, JobState::kQueued);
  // The first ended by its walltime (Torque lists it as C a while); each end is reported once.
  std::ofstream(dir.path() / "qstat.out") << header << "1234[].torque-server       ipp-engine       alice           01:00:00 C batch\n"
                                          << "1235[].torque-server       ipp-engine       alice                  0 Q batch\n";
  jobs = (*pbs)->Jobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ((*jobs)[0].state, JobState::kEnded);
  EXPECT_EQ((*jobs)[0].output, "C");
  jobs = (*pbs)->Jobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].id, "1235[].torque-server");
  EXPECT_EQ((*pbs)->State()["jobs"], Json({"1235[].torque-server"}));
  // Stop cancels what is left.
  ASSERT_TRUE((*pbs)->Stop().ok());
  EXPECT_EQ(testutil::ReadFile(dir.path() / "qdel.log"), "1234[].torque-server\n1235[].torque-server\n");
  setenv("PATH", old_path.c_str(), 1);
}

}  // namespace
}  // namespace ipp::launchers

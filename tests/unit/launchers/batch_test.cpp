#include "launchers/batch.hpp"

#include <gtest/gtest.h>

#include <tuple>

namespace ipp::launchers {
namespace {

TEST(BatchTest, EverySystemIsKnownByItsUsualNames) {
  for (const char* name : {"slurm", "Slurm", "SlurmEngineSetLauncher", "pbs", "torque", "SGE", "lsf", "htcondor", "condor"}) {
    std::string canonical = CanonicalKind(name);
    ASSERT_FALSE(canonical.empty()) << name;
    EXPECT_NE(FindBatchSystem(canonical), nullptr) << name;
  }
  EXPECT_EQ(CanonicalKind("LocalEngineSetLauncher"), "Local");
  EXPECT_EQ(CanonicalKind("mpiexec"), "MPI");
  EXPECT_EQ(CanonicalKind("kubernetes"), "");
}

TEST(BatchTest, JobIdsAreFoundInWhatEachSubmitCommandPrints) {
  EXPECT_EQ(*ParseJobId(*FindBatchSystem("Slurm"), "Submitted batch job 4242\n"), "4242");
  EXPECT_EQ(*ParseJobId(*FindBatchSystem("Slurm"), "4243\n"), "4243");  // --parsable
  EXPECT_EQ(*ParseJobId(*FindBatchSystem("PBS"), "123.server.example\n"), "123.server.example");
  EXPECT_EQ(*ParseJobId(*FindBatchSystem("SGE"), "77.1-4:1\n"), "77");
  EXPECT_EQ(*ParseJobId(*FindBatchSystem("LSF"), "Job <991> is submitted to queue <normal>.\n"), "991");
  EXPECT_EQ(*ParseJobId(*FindBatchSystem("HTCondor"), "1 job(s) submitted to cluster 55.\n"), "55");
  auto bad = ParseJobId(*FindBatchSystem("Slurm"), "sbatch: error: invalid partition\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("invalid partition"), std::string::npos);
}

TEST(BatchTest, TemplatesFillEveryFieldAndNameUnknownOnes) {
  Json fields = {{"n", 4}, {"cluster_id", "c1"}, {"profile_dir", "/p"}, {"log_dir", "/p/log"},
                 {"command", "'ipengine' '--profile-dir=/p'"}, {"extra", "#SBATCH --mem=1G\n"},
                 {"queue", "debug"}, {"account", ""}, {"walltime", ""}, {"queue_line", "#SBATCH --partition=debug\n"},
                 {"account_line", ""}, {"walltime_line", ""}, {"environment", ""}};
  auto script = FillTemplate(FindBatchSystem("Slurm")->engine_template, fields);
  ASSERT_TRUE(script.ok()) << script.status().ToString();
  EXPECT_NE(script->find("#SBATCH --ntasks=4"), std::string::npos);
  EXPECT_NE(script->find("#SBATCH --partition=debug"), std::string::npos);
  EXPECT_NE(script->find("srun --kill-on-bad-exit=0 'ipengine' '--profile-dir=/p'"), std::string::npos);
  EXPECT_NE(script->find("#SBATCH --mem=1G"), std::string::npos);
  for (const char* system : {"PBS", "SGE", "LSF", "HTCondor"}) {
    EXPECT_TRUE(FillTemplate(FindBatchSystem(system)->engine_template, fields).ok()) << system;
    EXPECT_TRUE(FillTemplate(FindBatchSystem(system)->controller_template, fields).ok()) << system;
  }
  auto unknown = FillTemplate("#!/bin/sh\n{nodes}\n", fields);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("{nodes}"), std::string::npos);
}

TEST(BatchTest, EachSystemsRowSaysHowItsScriptsNameQueueAccountAndWalltime) {
  Json section = {{"queue", "debug"}, {"account", "proj"}, {"walltime", "01:00:00"}};
  EXPECT_EQ(DirectiveLines(*FindBatchSystem("Slurm"), section),
            (Json{{"queue_line", "#SBATCH --partition=debug\n"}, {"account_line", "#SBATCH --account=proj\n"},
                  {"walltime_line", "#SBATCH --time=01:00:00\n"}}));
  EXPECT_EQ(DirectiveLines(*FindBatchSystem("PBS"), section),
            (Json{{"queue_line", "#PBS -q debug\n"}, {"account_line", "#PBS -A proj\n"},
                  {"walltime_line", "#PBS -l walltime=01:00:00\n"}}));
  EXPECT_EQ(DirectiveLines(*FindBatchSystem("SGE"), section)["walltime_line"], "#$ -l walltime=01:00:00\n");
  EXPECT_EQ(DirectiveLines(*FindBatchSystem("LSF"), section),
            (Json{{"queue_line", "#BSUB -q debug\n"}, {"account_line", "#BSUB -P proj\n"},
                  {"walltime_line", "#BSUB -W 01:00:00\n"}}));
  // HTCondor's submit file has no directives; unset settings give no line.
  EXPECT_EQ(DirectiveLines(*FindBatchSystem("HTCondor"), section),
            (Json{{"queue_line", ""}, {"account_line", ""}, {"walltime_line", ""}}));
  EXPECT_EQ(DirectiveLines(*FindBatchSystem("Slurm"), Json{{"queue", "debug"}}),
            (Json{{"queue_line", "#SBATCH --partition=debug\n"}, {"account_line", ""}, {"walltime_line", ""}}));
}

TEST(BatchTest, EachJobsOutputIsAFileOfItsOwnNamedByItsJobId) {
  EXPECT_EQ(JobOutput(*FindBatchSystem("Slurm"), false, "/p/log", "42"), "/p/log/slurm-engine-42.log");
  EXPECT_EQ(JobOutput(*FindBatchSystem("Slurm"), true, "/p/log", "43"), "/p/log/slurm-controller-43.log");
  EXPECT_EQ(JobOutput(*FindBatchSystem("SGE"), false, "/p/log", "7"), "/p/log/ipp-engine.o7.*");
  EXPECT_EQ(JobOutput(*FindBatchSystem("PBS"), true, "/p/log", "8.srv"), "/p/log/ipp-controller.o8.srv");
  EXPECT_EQ(JobOutput(*FindBatchSystem("LSF"), false, "/p/log", "9"), "/p/log/lsf-engine-9.log");
  EXPECT_EQ(JobOutput(*FindBatchSystem("HTCondor"), false, "/p/log", "5"), "/p/log/condor-engine-5.*.out");
  // The templates write there: by job id, never one file for every job.
  Json fields = {{"n", 2}, {"cluster_id", ""}, {"profile_dir", "/p"}, {"log_dir", "/p/log"}, {"command", "x"},
                 {"extra", ""}, {"queue", ""}, {"account", ""}, {"walltime", ""}, {"queue_line", ""},
                 {"account_line", ""}, {"walltime_line", ""}, {"environment", ""}};
  EXPECT_NE(FillTemplate(FindBatchSystem("Slurm")->engine_template, fields)->find("--output=/p/log/slurm-engine-%j.log"),
            std::string::npos);
  EXPECT_NE(FillTemplate(FindBatchSystem("HTCondor")->engine_template, fields)->find("output = /p/log/condor-engine-$(Cluster).$(Process).out"),
            std::string::npos);
  EXPECT_NE(FillTemplate(FindBatchSystem("HTCondor")->controller_template, fields)->find("condor-controller-$(Cluster).out"),
            std::string::npos);
  EXPECT_NE(FillTemplate(FindBatchSystem("PBS")->engine_template, fields)->find("#PBS -o /p/log/\n"), std::string::npos);
}

// The state of each job of ours, as {id, state, output}, for comparing.
std::vector<std::tuple<std::string, JobState::State, std::string>> States(const char* system, const std::string& output,
                                                                          std::vector<std::string> jobs) {
  std::vector<std::tuple<std::string, JobState::State, std::string>> out;
  for (const auto& j : ParseJobStates(*FindBatchSystem(system), output, jobs)) out.emplace_back(j.id, j.state, j.output);
  return out;
}

TEST(BatchTest, SlurmJobStatesFromSqueue) {
  // squeue -h -t all -o "%i %T" (Slurm 22.05); ended jobs stay listed for MinJobAge.
  const std::string out = "41 CANCELLED\n42 RUNNING\n43 PENDING\n44 COMPLETED\n45 TIMEOUT\n46 COMPLETING\n47 CONFIGURING\n";
  EXPECT_EQ(States("Slurm", out, {"42", "43", "44", "45", "46", "47", "99"}),
            (std::vector<std::tuple<std::string, JobState::State, std::string>>{
                {"42", JobState::kRunning, "RUNNING"}, {"43", JobState::kQueued, "PENDING"},
                {"44", JobState::kEnded, "COMPLETED"}, {"45", JobState::kEnded, "TIMEOUT"},
                {"46", JobState::kEnded, "COMPLETING"}, {"47", JobState::kRunning, "CONFIGURING"},
                {"99", JobState::kEnded, "no longer in the queue"}}));
}

TEST(BatchTest, SgeJobStatesFromQstatWithArrayTasks) {
  // qstat (Son of Grid Engine 8.1.9): an array job has a line per running task and one for its
  // waiting tasks.
  const std::string out =
      "job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID \n"
      "-----------------------------------------------------------------------------------------------------------------\n"
      "     12 0.55500 ipp-engine root         r     11/30/2026 21:20:01 all.q@localhost                    1 1\n"
      "     12 0.55500 ipp-engine root         qw    11/30/2026 21:20:01                                    1 2-4:1\n"
      "     13 0.00000 ipp-engine root         qw    11/30/2026 21:20:05                                    1 1-8:1\n"
      "     14 0.00000 ipp-engine root         Eqw   11/30/2026 21:20:06                                    1 1-8:1\n"
      "     15 0.00000 ipp-engine root         hqw   11/30/2026 21:20:07                                    1 1-8:1\n";
  EXPECT_EQ(States("SGE", out, {"12", "13", "14", "15", "16"}),
            (std::vector<std::tuple<std::string, JobState::State, std::string>>{
                {"12", JobState::kRunning, "r"}, {"13", JobState::kQueued, "qw"}, {"14", JobState::kEnded, "Eqw"},
                {"15", JobState::kQueued, "hqw"}, {"16", JobState::kEnded, "no longer in the queue"}}));
}

TEST(BatchTest, PbsJobStatesFromQstatOfTorqueAndPbsPro) {
  // qstat of Torque (array jobs as 1234[].server) and of PBS Pro (B: an array job that began).
  const std::string out =
      "Job ID                    Name             User            Time Use S Queue\n"
      "------------------------- ---------------- --------------- -------- - -----\n"
      "1234[].server              ipp-engine       alice                  0 R batch          \n"
      "1235.server                ipp-engine       alice                  0 Q batch\n"
      "1236.server                ipp-engine       alice           00:00:01 C batch\n"
      "1237[].pbs                 ipp-engine       alice                  0 B workq\n";
  EXPECT_EQ(States("PBS", out, {"1234[].server", "1235.server", "1236.server", "1237[].pbs", "1238.server"}),
            (std::vector<std::tuple<std::string, JobState::State, std::string>>{
                {"1234[].server", JobState::kRunning, "R"}, {"1235.server", JobState::kQueued, "Q"},
                {"1236.server", JobState::kEnded, "C"}, {"1237[].pbs", JobState::kRunning, "B"},
                {"1238.server", JobState::kEnded, "no longer in the queue"}}));
}

TEST(BatchTest, JobStatesFromOutputCapturedOnTheRealSlurmAndSge) {
  // Printed by Slurm 22.05 and Son of Grid Engine 8.1.9 on this machine's test daemons.
  EXPECT_EQ(States("Slurm", "2 CANCELLED\n3 PENDING\n1 RUNNING\n\n", {"1", "2", "3"}),
            (std::vector<std::tuple<std::string, JobState::State, std::string>>{
                {"1", JobState::kRunning, "RUNNING"}, {"2", JobState::kEnded, "CANCELLED"}, {"3", JobState::kQueued, "PENDING"}}));
  const std::string qstat =
      "job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID \n"
      "-----------------------------------------------------------------------------------------------------------------\n"
      "     21 0.00000 sleep      root         qw    11/30/2026 21:49:34                                    1 1-10:1\n"
      "     22 0.00000 sleep      root         hqw   11/30/2026 21:49:35                                    1        \n";
  EXPECT_EQ(States("SGE", qstat, {"21.1-10:1", "22"}),
            (std::vector<std::tuple<std::string, JobState::State, std::string>>{
                {"21.1-10:1", JobState::kQueued, "qw"}, {"22", JobState::kQueued, "hqw"}}));
}

TEST(BatchTest, JobIdsAreComparedByTheirNumber) {
  EXPECT_EQ(NormalizeJobId("1234[].server"), "1234");
  EXPECT_EQ(NormalizeJobId("1234[3].server"), "1234");  // PBS_JOBID of an array task
  EXPECT_EQ(NormalizeJobId("77.1-4:1"), "77");
  EXPECT_EQ(NormalizeJobId("4242"), "4242");
  EXPECT_EQ(NormalizeJobId("local-99-1"), "local-99-1");
}

TEST(BatchTest, SystemsWithoutAStatusCommandCannotBePolled) {
  EXPECT_TRUE(FindBatchSystem("LSF")->status.empty());
  EXPECT_FALSE(FindBatchSystem("Slurm")->status.empty());
  EXPECT_FALSE(FindBatchSystem("SGE")->status.empty());
  EXPECT_FALSE(FindBatchSystem("PBS")->status.empty());
}

}  // namespace
}  // namespace ipp::launchers

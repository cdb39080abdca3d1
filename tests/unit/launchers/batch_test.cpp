#include "launchers/batch.hpp"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ipp::launchers

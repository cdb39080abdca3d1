#include "launchers/config.hpp"

#include <gtest/gtest.h>

namespace ipp::launchers {
namespace {

std::string ErrorOf(const std::string& text) {
  auto config = ParseClusterConfig(text, "/p/ipcluster_config.json");
  EXPECT_FALSE(config.ok()) << text;
  return config.ok() ? "" : config.status().message();
}

TEST(ClusterConfigTest, AcceptsEverySettingTheLaunchersRead) {
  auto config = ParseClusterConfig(R"({"n": 8, "engines": "MPI", "controller": "Local", "engine_command": "/x/ipengine",
      "engine_args": ["--load=/x.so"], "controller_args": ["--hwm=2"],
      "mpi": {"mpiexec": "mpirun", "args": ["--oversubscribe"]},
      "ssh": {"engines": {"node1": 4, "node2": 4}, "controller": "head", "ssh": "ssh", "ssh_args": ["-p", "22"],
              "remote_ipengine": "/opt/ipengine", "remote_ipcontroller": "/opt/ipcontroller"},
      "slurm": {"queue": "debug", "account": "proj", "walltime": "01:00:00", "extra_directives": ["#SBATCH --mem=1G"],
                "submit_args": [], "engine_template": "/t", "controller_template": "/c"},
      "pbs": {}, "sge": {}, "lsf": {}, "htcondor": {}})", "/p/ipcluster_config.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ((*config)["mpi"]["mpiexec"], "mpirun");
  EXPECT_TRUE(ParseClusterConfig("{}", "/p/c.json").ok());
}

TEST(ClusterConfigTest, EnvironmentsAreObjectsOfNamesAndStringsAtTopAndPerLauncher) {
  auto config = ParseClusterConfig(R"({"environment": {"OMP_NUM_THREADS": "1"}, "mpi": {"environment": {"A": "b"}},
      "ssh": {"environment": {}}, "slurm": {"environment": {"_X1": ""}}})", "/p/c.json");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  for (const char* bad : {R"({"environment": {"1X": "a"}})", R"({"environment": {"A": 1}})",
                          R"({"environment": ["A=b"]})", R"({"slurm": {"environment": {"A-B": "c"}}})"}) {
    std::string e = ErrorOf(bad);
    EXPECT_NE(e.find("\"environment\""), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find("\"NAME\": \"value\""), std::string::npos) << bad << ": " << e;
  }
}

TEST(ClusterConfigTest, RestartSettingsAreCheckedLikeTheOthers) {
  EXPECT_TRUE(ParseClusterConfig(R"({"max_restarts": 3, "restart_window": 60, "restart_backoff": 0.5, "no_restart": false})",
                                 "/p/c.json").ok());
  EXPECT_NE(ErrorOf(R"({"max_restarts": -1})").find("a whole number >= 0"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"restart_window": "10m"})").find("a number of seconds >= 0"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"no_restart": "yes"})").find("true or false"), std::string::npos);
}

TEST(ClusterConfigTest, SyntaxErrorsNameFileLineAndColumnAndShowTheLine) {
  std::string e = ErrorOf("{\n  \"n\": 2,\n  \"engines\": \"MPI\",\n}\n");
  EXPECT_EQ(e.rfind("/p/ipcluster_config.json:4:1: ", 0), 0u) << e;
  EXPECT_NE(e.find("trailing comma"), std::string::npos) << e;
  EXPECT_NE(e.find("\n    }\n    ^"), std::string::npos) << e;
  EXPECT_EQ(e.find("json.exception"), std::string::npos) << e;
  e = ErrorOf("{\"n\": 2 \"engines\": \"MPI\"}");
  EXPECT_EQ(e.rfind("/p/ipcluster_config.json:1:17: ", 0), 0u) << e;  // where the unexpected token ends
  EXPECT_NE(e.find("\n    {\"n\": 2 \"engines\": \"MPI\"}\n                    ^"), std::string::npos) << e;
  e = ErrorOf("{\"n\": 2,\n");
  EXPECT_EQ(e.rfind("/p/ipcluster_config.json:2:1: ", 0), 0u) << e;
  EXPECT_NE(ErrorOf("[1, 2]").find("must hold a JSON object"), std::string::npos);
}

TEST(ClusterConfigTest, UnknownKeysAtEveryLevelNameTheNearestKnownOne) {
  EXPECT_EQ(ErrorOf(R"({"enignes": "MPI"})"),
            "unknown key \"enignes\" in /p/ipcluster_config.json; did you mean \"engines\"?");
  EXPECT_EQ(ErrorOf(R"({"mpi": {"mpiexe": "mpirun"}})"),
            "unknown key \"mpiexe\" in section \"mpi\" of /p/ipcluster_config.json; did you mean \"mpiexec\"?");
  EXPECT_EQ(ErrorOf(R"({"ssh": {"remote_ipengin": "x"}})"),
            "unknown key \"remote_ipengin\" in section \"ssh\" of /p/ipcluster_config.json; did you mean \"remote_ipengine\"?");
  EXPECT_EQ(ErrorOf(R"({"slurm": {"wall_time": "1:00"}})"),
            "unknown key \"wall_time\" in section \"slurm\" of /p/ipcluster_config.json; did you mean \"walltime\"?");
  std::string far = ErrorOf(R"({"kubernetes": {}})");
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
  EXPECT_NE(far.find("known keys: n, engines, controller"), std::string::npos) << far;
}

TEST(ClusterConfigTest, WrongTypesNameTheKeyAndTheTypeWanted) {
  EXPECT_EQ(ErrorOf(R"({"n": "4"})"), "\"n\" in /p/ipcluster_config.json must be a whole number >= 0, not \"4\"");
  EXPECT_NE(ErrorOf(R"({"n": -1})").find("\"n\""), std::string::npos);
  EXPECT_EQ(ErrorOf(R"({"engine_args": "--load=/x.so"})"),
            "\"engine_args\" in /p/ipcluster_config.json must be an array of strings, not \"--load=/x.so\"");
  EXPECT_EQ(ErrorOf(R"({"mpi": {"args": [1]}})"),
            "\"args\" in section \"mpi\" of /p/ipcluster_config.json must be an array of strings, not [1]");
  EXPECT_NE(ErrorOf(R"({"ssh": {"engines": {"node1": "4"}}})").find("\"engines\" in section \"ssh\""), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"mpi": ["--oversubscribe"]})").find("\"mpi\" in /p/ipcluster_config.json must be an object"),
            std::string::npos);
}

TEST(ClusterConfigTest, AnAbsentFileIsAnEmptyConfiguration) {
  auto config = LoadClusterConfig("/nonexistent/ipcluster_config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->empty());
}

TEST(ClusterConfigTest, EditDistanceCountsSingleCharacterEdits) {
  EXPECT_EQ(EditDistance("enignes", "engines"), 2u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("same", "same"), 0u);
}

}  // namespace
}  // namespace ipp::launchers

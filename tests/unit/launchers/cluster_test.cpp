#include "launchers/cluster.hpp"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "protocol/connection_file.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp::launchers {
namespace {

class ClusterTest : public ::testing::Test {
 protected:
  ClusterTest() : profile_(protocol::ProfileDir::Resolve("", dir_.path().string())) {
    EXPECT_TRUE(profile_.Ensure().ok());
  }

  // A cluster file whose controller is the process `pid`, launched locally.
  void Record(pid_t pid) {
    Json file = {{"cluster", {{"profile_dir", profile_.root().string()}, {"cluster_id", "c1"}, {"n", 2}}},
                 {"controller", {{"class", "Local"}, {"state", {{"processes", {{{"pid", pid}, {"log", "/x.log"}}}}}}, {"logs", "/x.log"}}},
                 {"engines", {{"sets", Json::array()}}},
                 {"ipcluster_pid", 0}};
    ASSERT_TRUE(protocol::WritePrivateFile(profile_.security_dir() / "cluster-c1.json", file.dump()).ok());
  }

  testutil::TempDir dir_;
  protocol::ProfileDir profile_;
  std::atomic<bool> stop_{false};
};

TEST_F(ClusterTest, ContextComesFromTheProfileAndItsConfig) {
  LaunchContext context = ContextFor(profile_, "c1", {{"controller_args", {"--ping=500"}}, {"engine_args", {"--load=x.so"}}});
  EXPECT_EQ(context.profile_dir, profile_.root());
  EXPECT_EQ(context.log_dir, profile_.log_dir());
  EXPECT_EQ(context.cluster_id, "c1");
  EXPECT_EQ(context.controller_args, std::vector<std::string>{"--ping=500"});
  EXPECT_EQ(context.engine_args, std::vector<std::string>{"--load=x.so"});
  EXPECT_FALSE(context.bin_dir.empty());
}

TEST_F(ClusterTest, TheConfigsEnvironmentIsTheContexts) {
  LaunchContext context = ContextFor(profile_, "", {{"environment", {{"A", "1"}, {"B", "two words"}}}});
  EXPECT_EQ(context.environment, (std::map<std::string, std::string>{{"A", "1"}, {"B", "two words"}}));
}

TEST_F(ClusterTest, LoadNamesTheMissingFile) {
  Cluster cluster(ContextFor(profile_, "c1", Json::object()), stop_);
  Status s = cluster.Load();
  EXPECT_EQ(s.code(), Status::Code::kNotFound);
  EXPECT_NE(s.message().find("cluster-c1.json"), std::string::npos) << s.message();
}

TEST_F(ClusterTest, ARunningClusterIsNotStartedTwice) {
  Record(getpid());  // alive, as a controller another ipcluster started would be
  Cluster cluster(ContextFor(profile_, "c1", Json::object()), stop_);
  Status s = cluster.ClaimFiles();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("already running"), std::string::npos) << s.message();
  EXPECT_TRUE(std::filesystem::exists(cluster.file()));
}

TEST_F(ClusterTest, AStoppedClustersFilesAreClaimed) {
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  int status = 0;
  waitpid(gone, &status, 0);
  Record(gone);
  std::ofstream(profile_.security_dir() / protocol::ConnectionFileName("client", "c1")) << "{}";
  Cluster cluster(ContextFor(profile_, "c1", Json::object()), stop_);
  EXPECT_TRUE(cluster.ClaimFiles().ok());
  EXPECT_FALSE(std::filesystem::exists(cluster.file()));
  EXPECT_FALSE(std::filesystem::exists(profile_.security_dir() / protocol::ConnectionFileName("client", "c1")));
}

TEST_F(ClusterTest, TheFileRoundTripsThroughLoadAndDescribe) {
  Record(getpid());
  Cluster cluster(ContextFor(profile_, "c1", Json::object()), stop_);
  ASSERT_TRUE(cluster.Load().ok());
  EXPECT_EQ(cluster.recorded()["cluster"]["n"], 2);
  Json described = cluster.Describe(3);
  EXPECT_EQ(described["cluster"]["n"], 3);
  EXPECT_EQ(described["controller"]["class"], "Local");
  EXPECT_EQ(described["controller"]["state"]["processes"][0]["pid"], getpid());
  EXPECT_EQ(described["ipcluster_pid"], getpid());
  EXPECT_EQ(LogLine(LogsOf(described)), "logs: controller /x.log");
}

}  // namespace
}  // namespace ipp::launchers

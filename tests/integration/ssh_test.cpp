// SSH against a real sshd that the test starts on 127.0.0.1 with its own host and user keys:
// the client's --ssh tunnel, and ipcluster's SSH engine launcher.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "ipp/client.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

int FreePort() {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::router);
  std::string ep = testutil::BindLoopback(s);
  return std::stoi(ep.substr(ep.rfind(':') + 1));
}

class SshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/sbin/sshd", X_OK) != 0) GTEST_SKIP() << "sshd not installed (openssh-server)";
    ASSERT_TRUE(cluster_.ok());
    std::string out;
    for (const char* name : {"host_key", "user_key"}) {
      ASSERT_EQ(testutil::RunCommand({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir_.path() / name).string()}, &out), 0) << out;
    }
    fs::copy_file(dir_.path() / "user_key.pub", dir_.path() / "authorized_keys");
    port_ = FreePort();
    std::ofstream(dir_.path() / "sshd_config")
        << "Port " << port_ << "\nListenAddress 127.0.0.1\nHostKey " << (dir_.path() / "host_key").string()
        << "\nAuthorizedKeysFile " << (dir_.path() / "authorized_keys").string()
        << "\nPidFile " << (dir_.path() / "sshd.pid").string()
        << "\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
           "PermitRootLogin yes\nSubsystem sftp internal-sftp\nMaxStartups 100\nAllowTcpForwarding yes\n";
    fs::create_directories("/run/sshd");
    sshd_ = std::make_unique<testutil::Process>(
        std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", (dir_.path() / "sshd_config").string()},
        dir_.path() / "sshd.log");
    ASSERT_TRUE(testutil::WaitFor([&] {
      std::string o;
      return testutil::RunCommand(Ssh({"true"}), &o, 5s) == 0;
    }, 20s)) << testutil::ReadFile(dir_.path() / "sshd.log");
  }
  std::vector<std::string> SshOptions() const {
    return {"-i", (dir_.path() / "user_key").string(), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"};
  }
  std::vector<std::string> Ssh(std::vector<std::string> command) const {
    std::vector<std::string> argv = {"ssh", "-p", std::to_string(port_)};
    for (auto& o : SshOptions()) argv.push_back(o);
    argv.push_back("root@127.0.0.1");
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }
  void TearDown() override {
    if (sshd_) sshd_->kill_group();
  }
  testutil::TempDir dir_;
  testutil::LocalCluster cluster_{2};
  std::unique_ptr<testutil::Process> sshd_;
  int port_ = 0;
};

TEST_F(SshTest, ClientReachesTheControllerThroughATunnel) {
  ClientOptions o = ClientOptions::File(cluster_.client_file().string());
  o.ssh_server = "root@127.0.0.1:" + std::to_string(port_);
  o.ssh_args = SshOptions();
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE((*client)->wait_for_engines(2, 30s).ok());
  auto out = (*client)->load_balanced_view().map("ipp.echo", {1, 2, 3}).get(20s);
  EXPECT_EQ(out, (std::vector<Json>{1, 2, 3}));
  ClientOptions bad = o;
  bad.ssh_server = "root@127.0.0.1:" + std::to_string(FreePort());  // nobody listens there
  auto refused = Client::Connect(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("ssh"), std::string::npos);
}

TEST_F(SshTest, IpclusterStartsEnginesOverSsh) {
  testutil::TempDir ipython;
  fs::path profile = ipython.path() / "profile_default";
  fs::create_directories(profile);
  std::vector<std::string> ssh_args = {"-p", std::to_string(port_)};
  for (auto& a : SshOptions()) ssh_args.push_back(a);
  nlohmann::json cfg = {{"ssh", {{"engines", {{"root@127.0.0.1", 2}}}, {"controller", "root@127.0.0.1"},
                                 {"ssh_args", ssh_args},
                                 {"remote_ipengine", std::string(IPP_BIN_DIR) + "/ipengine"},
                                 {"remote_ipcontroller", std::string(IPP_BIN_DIR) + "/ipcontroller"}}}};
  std::ofstream(profile / "ipcluster_config.json") << cfg.dump();
  std::string ipcluster = std::string(IPP_BIN_DIR) + "/ipcluster";
  std::string env = "IPYTHONDIR=" + ipython.path().string();
  std::string out;
  ASSERT_EQ(testutil::RunCommand({"env", env, ipcluster, "start", "-n", "2", "--engines", "SSH", "--controller", "ssh",
                                  "--daemonize", "--timeout=60"}, &out, 90s), 0) << out;
  auto state = nlohmann::json::parse(testutil::ReadFile(profile / "security" / "cluster-.json"));
  EXPECT_EQ(state["controller"]["class"], "SSH");
  auto client = Client::Connect(ClientOptions::ProfileDir(profile.string()));
  ASSERT_TRUE(client.ok());
  auto infos = (*client)->direct_view().apply("ipp.info").get(20s);
  ASSERT_EQ(infos.size(), 2u);
  std::vector<int> pids = {infos[0]["pid"].get<int>(), infos[1]["pid"].get<int>()};
  client->reset();
  ASSERT_EQ(testutil::RunCommand({"env", env, ipcluster, "stop"}, &out, 60s), 0) << out;
  for (int pid : pids) {
    EXPECT_TRUE(testutil::WaitFor([&] { return kill(pid, 0) != 0 || testutil::ReadFile("/proc/" + std::to_string(pid) + "/stat").find(") Z") != std::string::npos; }, 20s))
        << "remote engine " << pid << " survived ipcluster stop";
  }
}

TEST_F(SshTest, IpclusterRestartsAnSshEngineThatDies) {
  testutil::TempDir ipython;
  fs::path profile = ipython.path() / "profile_default";
  fs::create_directories(profile);
  std::vector<std::string> ssh_args = {"-p", std::to_string(port_)};
  for (auto& a : SshOptions()) ssh_args.push_back(a);
  nlohmann::json cfg = {{"ssh", {{"engines", {{"root@127.0.0.1", 1}}}, {"ssh_args", ssh_args},
                                 {"remote_ipengine", std::string(IPP_BIN_DIR) + "/ipengine"}}},
                        {"restart_backoff", 0.1}};
  std::ofstream(profile / "ipcluster_config.json") << cfg.dump();
  std::string ipcluster = std::string(IPP_BIN_DIR) + "/ipcluster";
  std::string env = "IPYTHONDIR=" + ipython.path().string();
  std::string out;
  ASSERT_EQ(testutil::RunCommand({"env", env, ipcluster, "start", "-n", "1", "--engines", "SSH", "--daemonize",
                                  "--timeout=60"}, &out, 90s), 0) << out;
  auto client = Client::Connect(ClientOptions::ProfileDir(profile.string()));
  ASSERT_TRUE(client.ok());
  auto info = (*client)->direct_view({0}).apply("ipp.info").get(20s);
  ASSERT_EQ(info.size(), 1u);
  ASSERT_EQ(kill(info[0]["pid"].get<int>(), SIGKILL), 0);
  // The remote engine's end ends its ssh session; ipcluster starts the session again: engine 1.
  EXPECT_TRUE(testutil::WaitFor([&] {
    auto ids = (*client)->ids();
    return ids == std::vector<int>{1};
  }, 30s)) << testutil::ReadFile(nlohmann::json::parse(testutil::ReadFile(profile / "security" / "cluster-.json"))["ipcluster_log"].get<std::string>());
  auto state = nlohmann::json::parse(testutil::ReadFile(profile / "security" / "cluster-.json"));
  EXPECT_EQ(state.value("restarts", 0), 1) << state.dump();
  client->reset();
  ASSERT_EQ(testutil::RunCommand({"env", env, ipcluster, "stop"}, &out, 60s), 0) << out;
}

}  // namespace
}  // namespace ipp

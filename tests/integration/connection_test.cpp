// What a client, an engine and the controller say when a connection file is wrong or stale, and
// what the hub tells (and logs) about clients and engines that come and go. Real processes.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ipp/client.hpp"
#include "protocol/session.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A copy of `file` in `dir` with `field` set to `value`.
fs::path EditedCopy(const fs::path& file, const fs::path& dir, const std::string& field, const Json& value,
                    const std::string& name = "ipcontroller-client.json") {
  Json j = Json::parse(testutil::ReadFile(file));
  j[field] = value;
  fs::create_directories(dir);
  std::ofstream(dir / name) << j.dump(2);
  return dir / name;
}

std::string ConnectError(const fs::path& file, Millis timeout = 1000ms) {
  ClientOptions o = ClientOptions::File(file.string());
  o.timeout = timeout;
  auto c = Client::Connect(o);
  EXPECT_FALSE(c.ok()) << "connected with " << file;
  return c.ok() ? std::string() : c.status().message();
}

// What ipengine said, started on `file`; it must fail.
std::string FailingEngineOutput(const fs::path& file, const std::string& timeout_seconds) {
  std::string output;
  int rc = testutil::RunCommand(
      {std::string(IPP_BIN_DIR) + "/ipengine", "--file=" + file.string(), "--timeout=" + timeout_seconds}, &output, 20s);
  EXPECT_NE(rc, 0) << output;
  return output;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class ConnectionFileTest : public ::testing::Test {
 protected:
  // A controller with no engines, whose connection files the test copies with a field changed.
  void StartController() {
    cluster_.emplace(0);
    ASSERT_TRUE(cluster_->ok()) << cluster_->Log("controller.log");
  }
  // A copy of the controller's client connection file, in `subdir` of dir_, with `field` = `value`.
  fs::path EditedClientFile(const std::string& field, const Json& value, const std::string& subdir = "") {
    return EditedCopy(cluster_->client_file(), dir_.path() / subdir, field, value);
  }
  // The same for its engine connection file.
  fs::path EditedEngineFile(const std::string& field, const Json& value) {
    return EditedCopy(cluster_->profile_dir() / "security" / "ipcontroller-engine.json", dir_.path(), field, value,
                      "engine.json");
  }

  std::optional<testutil::LocalCluster> cluster_;
  testutil::TempDir dir_;
};

// An unknown signature_scheme is refused by name before anything is sent, by the client, the
// engine and the controller; a scheme jupyter_client also knows (hmac-sha512) is not refused.
TEST_F(ConnectionFileTest, UnknownSignatureSchemeIsRefusedEverywhere) {
  ASSERT_NO_FATAL_FAILURE(StartController());
  fs::path bad = EditedClientFile("signature_scheme", "hmac-md999");
  std::string error = ConnectError(bad);
  EXPECT_NE(error.find(bad.string()), std::string::npos) << error;
  EXPECT_NE(error.find("unsupported signature_scheme 'hmac-md999'"), std::string::npos) << error;

  fs::path bad_engine = EditedEngineFile("signature_scheme", "hmac-md999");
  std::string output = FailingEngineOutput(bad_engine, "5");
  EXPECT_NE(output.find(bad_engine.string() + ": unsupported signature_scheme 'hmac-md999'"), std::string::npos) << output;
  EXPECT_EQ(output.find("registering"), std::string::npos) << "the engine sent something: " << output;

  int rc = testutil::RunCommand({std::string(IPP_BIN_DIR) + "/ipcontroller", "--profile-dir=" + (dir_.path() / "p").string(),
                             "--Session.signature_scheme=hmac-md999"},
                            &output, 20s);
  EXPECT_EQ(rc, 2);
  EXPECT_NE(output.find("unsupported signature_scheme 'hmac-md999'"), std::string::npos) << output;

  // A known scheme the controller does not sign with reaches it, and is then a mismatch like a wrong key.
  fs::path sha512 = EditedClientFile("signature_scheme", "hmac-sha512", "sha512");
  error = ConnectError(sha512);
  EXPECT_NE(error.find("is reachable but did not answer"), std::string::npos) << error;
}

TEST_F(ConnectionFileTest, EmptyFileNamesTheMissingField) {
  fs::path file = dir_.path() / "ipcontroller-client.json";
  std::ofstream(file) << "{}";
  EXPECT_EQ(ConnectError(file), "connection file " + file.string() + " has no 'interface' field");
}

// A wrong key: the controller drops the request ("invalid signature") and must not answer it,
// so the client and the engine say the controller is there but ignored them, naming the file.
TEST_F(ConnectionFileTest, WrongKeyIsNamedAsTheLikelyCause) {
  ASSERT_NO_FATAL_FAILURE(StartController());
  fs::path wrong = EditedClientFile("key", "not-the-key");
  std::string error = ConnectError(wrong);
  EXPECT_NE(error.find("is reachable but did not answer: the key or signature_scheme in " + wrong.string() +
                       " may not match the running controller's"),
            std::string::npos)
      << error;
  EXPECT_TRUE(testutil::WaitFor([&] { return cluster_->Log("controller.log").find("invalid signature") != std::string::npos; }, 10s));

  fs::path wrong_engine = EditedEngineFile("key", "not-the-key");
  std::string output = FailingEngineOutput(wrong_engine, "1");
  EXPECT_NE(output.find("is reachable but did not answer: the key or signature_scheme in " + wrong_engine.string()),
            std::string::npos)
      << output;
}

// A stale file (controller gone): nothing listens at its address, and ipcluster's record beside
// the file says whether the controller process it started still runs.
TEST_F(ConnectionFileTest, StaleFileSaysNothingListensAndWhetherTheControllerRuns) {
  fs::path security = dir_.path() / "security";
  fs::path stale, stale_engine;
  pid_t dead_pid = 0;
  {
    testutil::LocalCluster cluster(0);
    ASSERT_TRUE(cluster.ok()) << cluster.Log("controller.log");
    stale = EditedCopy(cluster.client_file(), security, "location", "127.0.0.1");
    stale_engine = EditedCopy(cluster.profile_dir() / "security" / "ipcontroller-engine.json", security, "location",
                              "127.0.0.1", "ipcontroller-engine.json");
    dead_pid = cluster.controller().pid();
    cluster.controller().signal(SIGKILL);
    ASSERT_GE(cluster.controller().wait(10s), 0);
  }
  std::string error = ConnectError(stale);
  EXPECT_NE(error.find("nothing is listening there: the controller is not running (is " + stale.string() + " stale?)"),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find("ipcluster's record"), std::string::npos) << error;  // there is none

  auto record = [&](pid_t pid) {
    Json j;  // the part of ipcluster's record that names the controller's process
    j["controller"]["class"] = "Local";
    j["controller"]["state"]["processes"] = Json::array({{{"pid", pid}, {"log", "controller.log"}}});
    std::ofstream(security / "cluster-.json") << j.dump();
  };
  record(dead_pid);
  error = ConnectError(stale);
  EXPECT_NE(error.find("ipcluster's record " + (security / "cluster-.json").string() + " lists the controller as pid " +
                       std::to_string(dead_pid) + ", which is not running"),
            std::string::npos)
      << error;
  record(getpid());
  error = ConnectError(stale);
  EXPECT_NE(error.find(", which is still running"), std::string::npos) << error;

  std::string output = FailingEngineOutput(stale_engine, "1");
  EXPECT_NE(output.find("nothing is listening there"), std::string::npos) << output;
  EXPECT_NE(output.find(", which is still running"), std::string::npos) << output;
}

// On the controller's host, clients and engines connect over ipc:// in its private directory:
// with the file's TCP interface made unreachable they still work, and not when the file names
// another host. The directory goes with the controller; --no-ipc serves TCP only.
TEST_F(ConnectionFileTest, PeersOnTheControllersHostConnectOverIpc) {
  StartController();
  Json file = Json::parse(testutil::ReadFile(cluster_->client_file()));
  ASSERT_TRUE(file.contains("ipp_local")) << file.dump();
  std::string interface = file["ipp_local"]["interface"].get<std::string>();
  ASSERT_EQ(interface.rfind("ipc://", 0), 0u) << interface;
  fs::path dir = fs::path(interface.substr(6)).parent_path();
  EXPECT_TRUE(fs::is_socket(dir / ("ipp-" + std::to_string(file["mux"].get<int>()))));

  const Json unreachable = "tcp://192.0.2.1";  // TEST-NET-1: nothing answers there
  fs::path engine_file = EditedEngineFile("interface", unreachable);
  testutil::Process engine({std::string(IPP_BIN_DIR) + "/ipengine", "--file=" + engine_file.string(), "--timeout=10"},
                           dir_.path() / "engine.log");
  ClientOptions options = ClientOptions::File(EditedClientFile("interface", unreachable).string());
  options.timeout = 10s;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE((*client)->wait_for_engines(1, 20s).ok()) << testutil::ReadFile(dir_.path() / "engine.log");
  auto echoed = (*client)->direct_view().apply("ipp.echo", {{"x", 1}}).result(10s);
  ASSERT_TRUE(echoed.ok()) << echoed.status().ToString();

  Json elsewhere = file["ipp_local"];
  elsewhere["host"] = "not-" + elsewhere["host"].get<std::string>();
  fs::path remote = EditedCopy(EditedClientFile("interface", unreachable, "remote"), dir_.path() / "remote",
                               "ipp_local", elsewhere);
  EXPECT_FALSE(ConnectError(remote).empty()) << "another host's peers go over TCP";

  client->reset();
  cluster_->controller().signal(SIGINT);
  ASSERT_GE(cluster_->controller().wait(10s), 0);
  EXPECT_FALSE(fs::exists(dir)) << "left behind by a controller that stopped";

  testutil::LocalCluster tcp_only(0, {"--no-ipc"});
  ASSERT_TRUE(tcp_only.ok()) << tcp_only.Log("controller.log");
  EXPECT_FALSE(Json::parse(testutil::ReadFile(tcp_only.client_file())).contains("ipp_local"));
}

// An engine interrupted (Ctrl-C, SIGTERM) while it still waits for a controller that does not
// answer exits as a process ended by that signal would (128 + signal), saying why; it does not
// abort on the interrupted poll.
TEST_F(ConnectionFileTest, EngineInterruptedWhileRegisteringExitsCleanly) {
  fs::path stale_engine;
  {
    testutil::LocalCluster cluster(0);
    ASSERT_TRUE(cluster.ok()) << cluster.Log("controller.log");
    stale_engine = EditedCopy(cluster.profile_dir() / "security" / "ipcontroller-engine.json", dir_.path(), "location",
                              "127.0.0.1", "engine.json");
    cluster.controller().signal(SIGKILL);
    ASSERT_GE(cluster.controller().wait(10s), 0);
  }
  for (int sig : {SIGINT, SIGTERM}) {
    fs::path log = dir_.path() / ("engine-" + std::to_string(sig) + ".log");
    testutil::Process engine({std::string(IPP_BIN_DIR) + "/ipengine", "--file=" + stale_engine.string(), "--timeout=30"},
                             log);
    ASSERT_TRUE(testutil::WaitFor([&] { return testutil::ReadFile(log).find("registering with") != std::string::npos; },
                                  10s))
        << testutil::ReadFile(log);
    engine.signal(sig);
    EXPECT_EQ(engine.wait(10s), 128 + sig) << testutil::ReadFile(log);
    EXPECT_NE(testutil::ReadFile(log).find("interrupted while registering (signal " + std::to_string(sig) + ")"),
              std::string::npos)
        << testutil::ReadFile(log);
  }
}

// Our client repeats connection_request every 2 s (to re-read the engine list): the hub logs a
// client once at info level, by a readable name.
TEST(HubLogTest, EachClientIsLoggedOnceAndReadably) {
  testutil::LocalCluster cluster(0);
  ASSERT_TRUE(cluster.ok()) << cluster.Log("controller.log");
  Json info = Json::parse(testutil::ReadFile(cluster.client_file()));
  protocol::Session session(info["key"].get<std::string>());
  zmq::context_t context;
  // One socket per identity, kept open as a client keeps its own: a second socket with the same
  // identity would be refused by the hub's ROUTER while the first one's disconnection is still
  // on its way, and its request lost.
  std::map<std::string, zmq::socket_t> dealers;
  auto requests = [&](const std::string& identity, int n) {
    auto [it, fresh] = dealers.try_emplace(identity, context, zmq::socket_type::dealer);
    zmq::socket_t& dealer = it->second;
    if (fresh) {
      dealer.set(zmq::sockopt::linger, 0);
      dealer.set(zmq::sockopt::routing_id, identity);
      dealer.connect(info["interface"].get<std::string>() + ":" + std::to_string(info["registration"].get<int>()));
    }
    for (int i = 0; i < n; ++i) {
      protocol::Send(dealer, session.serialize(session.make("connection_request")));
      zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
      ASSERT_EQ(zmq::poll(&item, 1, 10s), 1) << "request " << i << " of " << n << " unanswered\n"
                                             << cluster.Log("controller.log");
      ASSERT_TRUE(protocol::TryRecv(dealer));
    }
  };
  requests(std::string("\x01Q_\0\xff", 5), 4);
  requests("printable-client", 3);
  requests(std::string("\x01Q_\0\xff", 5), 2);  // its socket again: still known, not logged again
  auto client = Client::Connect(ClientOptions::File(cluster.client_file().string()));  // its own identity
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  // The hub logs before it replies; the log file may still lag a little behind.
  std::string log;
  testutil::WaitFor([&] { return Count(log = cluster.Log("controller.log"), " connected\n") >= 3; }, 5s);
  EXPECT_EQ(Count(log, "client 0x01515f00ff connected\n"), 1u) << log;
  EXPECT_EQ(Count(log, "client printable-client connected\n"), 1u) << log;
  EXPECT_EQ(Count(log, " connected\n"), 3u) << log;  // and one for the real client
  EXPECT_EQ(Count(log, std::string("\x01Q_", 3)), 0u) << "raw identity bytes in the log";
}

// An engine killed while running a load-balanced task: the task's EngineError names the engine
// by id (not -1) and says why the hub let it go; the controller's log has the cause.
TEST(EngineDeathTest, StrandedTaskNamesTheEngineAndTheCause) {
  testutil::LocalCluster cluster(1, {"--HeartMonitor.max_heartmonitor_misses=3"});
  ASSERT_TRUE(cluster.ok()) << cluster.Log("controller.log");
  auto client = Client::Connect(ClientOptions::File(cluster.client_file().string()));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE((*client)->wait_for_engines(1, 30s).ok()) << cluster.Log("engine-0.log");
  auto lb = (*client)->load_balanced_view().apply("ipp.sleep", {{"seconds", 30.0}});
  auto direct = (*client)->direct_view({0}).apply("ipp.sleep", {{"seconds", 30.0}});
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        auto s = (*client)->queue_status();
        return s.ok() && (*s)["0"].value("tasks", 0) == 1;
      },
      10s));
  cluster.engines()[0]->signal(SIGKILL);
  for (AsyncResult* r : {&lb, &direct}) {
    try {
      r->get(30s);
      ADD_FAILURE() << "a task on a killed engine succeeded";
    } catch (const RemoteError& e) {
      EXPECT_EQ(e.ename(), "EngineError");
      EXPECT_EQ(e.engine_id(), 0) << e.what();
      EXPECT_TRUE(std::regex_search(e.evalue(), std::regex("^Engine 0 \\(uuid [0-9a-f-]+\\) died while running task '.+': "
                                                           "it stopped answering heartbeats \\(3 missed, every 300 ms\\)$")))
          << e.evalue();
    }
  }
  EXPECT_TRUE(std::regex_search(cluster.Log("controller.log"),
                                std::regex("engine 0 \\(uuid [0-9a-f-]+\\) unregistered: it stopped answering heartbeats")))
      << cluster.Log("controller.log");
}

}  // namespace
}  // namespace ipp

// Scale limits with real processes: a controller out of file descriptors refuses the next
// engine's registration with a clear error, and the engines already in keep working; engines
// that come in through the gateway cost it two descriptors and are served on every channel.
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/cli.hpp"
#include "controller/hub.hpp"
#include "ipp/client.hpp"
#include "protocol/gateway.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

long OpenFds(pid_t pid) {
  long n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

std::unique_ptr<Client> ConnectTo(const fs::path& profile, testutil::Process& controller) {
  const fs::path client_file = profile / "security" / "ipcontroller-client.json";
  if (!testutil::WaitFor([&] { return fs::exists(client_file) || !controller.running(); }, 20s)) return nullptr;
  auto connected = Client::Connect(ClientOptions::File(client_file.string()));
  if (!connected.ok()) {
    ADD_FAILURE() << connected.status().ToString();
    return nullptr;
  }
  return std::move(connected).value();
}

std::unique_ptr<testutil::Process> StartEngine(const fs::path& profile, const fs::path& log) {
  return std::make_unique<testutil::Process>(
      std::vector<std::string>{std::string(IPP_BIN_DIR) + "/ipengine", "--profile-dir=" + profile.string(), "--log-level=DEBUG"},
      log);
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(FdLimitTest, RegistrationsPastTheDescriptorLimitAreRefusedAndEnginesInKeepWorking) {
  testutil::TempDir dir;
  const fs::path profile = dir.path() / "profile";
  // Every engine with all its connections (the gateway would let more in: tested below).
  testutil::Process controller({std::string(IPP_BIN_DIR) + "/ipcontroller", "--profile-dir=" + profile.string(),
                                "--log-level=DEBUG", "--engine-gateway=never"},
                               dir.path() / "controller.log");
  std::unique_ptr<Client> client = ConnectTo(profile, controller);
  ASSERT_TRUE(client);

  // Room for exactly two engines beside what the controller holds now (its client included).
  constexpr int kFit = 2;
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max =
      static_cast<rlim_t>(OpenFds(controller.pid()) + controller::Hub::kFdReserve + kFit * controller::Hub::kFdsPerEngine + 4);
  ASSERT_EQ(prlimit(controller.pid(), RLIMIT_NOFILE, &limit, nullptr), 0);

  std::vector<std::unique_ptr<testutil::Process>> engines;
  for (int i = 0; i <= kFit; ++i) {
    engines.push_back(StartEngine(profile, dir.path() / ("engine-" + std::to_string(i) + ".log")));
    ASSERT_TRUE(testutil::WaitFor([&] { return client->ids().size() > static_cast<size_t>(i) || !engines.back()->running(); }, 40s))
        << client->ids().size() << " engines registered\n"
        << testutil::ReadFile(dir.path() / "controller.log") << "\nengine " << i << ":\n"
        << testutil::ReadFile(dir.path() / ("engine-" + std::to_string(i) + ".log"));
    if (i < kFit) {
      ASSERT_EQ(client->ids().size(), static_cast<size_t>(i + 1)) << testutil::ReadFile(dir.path() / "controller.log");
    }
  }
  // The one past the limit: refused, it asks again a few times (a start storm's count is on the
  // safe side), says why and exits with the status ipcluster does not restart.
  EXPECT_EQ(engines.back()->wait(30s), cli::kExitRegistrationRefused);
  std::string refused = testutil::ReadFile(dir.path() / ("engine-" + std::to_string(kFit) + ".log"));
  EXPECT_NE(refused.find("registration refused: RuntimeError: the controller is out of file descriptors"), std::string::npos)
      << refused;
  EXPECT_NE(refused.find("asking again in 4 s"), std::string::npos) << refused;
  EXPECT_NE(testutil::ReadFile(dir.path() / "controller.log").find("out of file descriptors"), std::string::npos);
  // Those in keep working.
  EXPECT_EQ(client->ids().size(), static_cast<size_t>(kFit));
  std::vector<Json> echoed = client->direct_view().apply("ipp.echo", 7).get(30s);
  EXPECT_EQ(echoed, std::vector<Json>(kFit, Json(7)));
}

// Through the gateway, an engine's requests, replies, output, control messages and heartbeats
// all pass; it costs the controller two descriptors; and when it dies, the heartbeat says so.
void EveryChannelThroughTheGateway() {
  testutil::TempDir dir;
  const fs::path profile = dir.path() / "profile";
  const fs::path controller_log = dir.path() / "controller.log";
  testutil::Process controller({std::string(IPP_BIN_DIR) + "/ipcontroller", "--profile-dir=" + profile.string(),
                                "--log-level=DEBUG", "--engine-gateway=always", "--ping=500"},
                               controller_log);
  std::unique_ptr<Client> client = ConnectTo(profile, controller);
  ASSERT_TRUE(client);
  const long fds_before = OpenFds(controller.pid());

  constexpr int kEngines = 4;
  std::vector<std::unique_ptr<testutil::Process>> engines;
  for (int i = 0; i < kEngines; ++i) engines.push_back(StartEngine(profile, dir.path() / ("engine-" + std::to_string(i) + ".log")));
  ASSERT_TRUE(client->wait_for_engines(kEngines, 30s).ok()) << testutil::ReadFile(controller_log);
  EXPECT_EQ(Count(testutil::ReadFile(controller_log), "through the gateway"), static_cast<size_t>(kEngines));
  if (getenv("IPP_ENABLE_CURVE")) {
    EXPECT_NE(testutil::ReadFile(controller_log).find("CURVE encryption enabled"), std::string::npos);
  }
  for (int i = 0; i < kEngines; ++i) {
    std::string log = testutil::ReadFile(dir.path() / ("engine-" + std::to_string(i) + ".log"));
    EXPECT_NE(log.find("channels go through the controller's gateway"), std::string::npos) << log;
  }
  // Registration and the gateway connection each (the client's connections were open before),
  // and a few for files the hub may have open just then (it saves the engine list): 36 without.
  EXPECT_LE(OpenFds(controller.pid()) - fds_before, kEngines * controller::Hub::kFdsPerGatewayEngine + 4);

  // MUX, with replies.
  EXPECT_EQ(client->direct_view().apply("ipp.echo", 7).get(30s), std::vector<Json>(kEngines, Json(7)));
  // Load-balanced.
  std::vector<Json> items;
  for (int i = 0; i < 40; ++i) items.push_back(i);
  EXPECT_EQ(client->load_balanced_view().map("ipp.echo", items).get(30s), items);
  // Broadcast.
  EXPECT_EQ(client->broadcast_view().apply("ipp.echo", 3).get(30s), std::vector<Json>(kEngines, Json(3)));
  // IOPub: each engine's output reaches the client.
  AsyncResult executed = client->direct_view().execute("echo out-$$");
  executed.get(30s);
  std::set<std::string> outputs;
  for (const TaskInfo& info : executed.info()) {
    EXPECT_EQ(info.stdout_text.rfind("out-", 0), 0u) << info.stdout_text;
    outputs.insert(info.stdout_text);
  }
  EXPECT_EQ(outputs.size(), static_cast<size_t>(kEngines));
  // Control.
  EXPECT_EQ(client->direct_view().kernel_info().get(30s).size(), static_cast<size_t>(kEngines));

  // A peer the hub did not let in gets no channels, however it says hello.
  if (!getenv("IPP_ENABLE_CURVE")) {  // (with CURVE it cannot even connect without the key)
    Json info = Json::parse(testutil::ReadFile(profile / "security" / "ipcontroller-engine.json"));
    zmq::context_t context;
    zmq::socket_t intruder(context, zmq::socket_type::dealer);
    intruder.set(zmq::sockopt::linger, 0);
    intruder.set(zmq::sockopt::routing_id, "intruder");
    intruder.connect("tcp://127.0.0.1:" + std::to_string(info.at(protocol::gateway::kPortKey).get<int>()));
    intruder.send(zmq::str_buffer("hello"));
    intruder.send(zmq::str_buffer("mux"), zmq::send_flags::sndmore);
    intruder.send(zmq::str_buffer("junk"));
    EXPECT_TRUE(testutil::WaitFor(
        [&] { return testutil::ReadFile(controller_log).find("from intruder, which the hub did not let in") != std::string::npos; }, 10s));
    EXPECT_EQ(testutil::ReadFile(controller_log).find("gateway: engine intruder opened"), std::string::npos);
  }

  // Heartbeats: a killed engine is noticed and dropped; the others keep working.
  engines[0]->signal(SIGKILL);
  ASSERT_TRUE(testutil::WaitFor([&] { return client->ids().size() == kEngines - 1; }, 20s))
      << client->ids().size() << " engines\n" << testutil::ReadFile(controller_log);
  EXPECT_EQ(client->direct_view().apply("ipp.echo", 8).get(30s), std::vector<Json>(kEngines - 1, Json(8)));
  // And a new one comes in.
  engines.push_back(StartEngine(profile, dir.path() / "engine-late.log"));
  ASSERT_TRUE(client->wait_for_engines(kEngines, 30s).ok()) << testutil::ReadFile(controller_log);
  EXPECT_EQ(client->load_balanced_view().map("ipp.echo", items).get(30s), items);
}

TEST(GatewayTest, EnginesThroughTheGatewayServeEveryChannel) { EveryChannelThroughTheGateway(); }

TEST(GatewayTest, EnginesThroughTheGatewayServeEveryChannelWithCurve) {
  setenv("IPP_ENABLE_CURVE", "1", 1);  // the controller and engines the test starts inherit it
  EveryChannelThroughTheGateway();
  unsetenv("IPP_ENABLE_CURVE");
}

// With the default (--engine-gateway=auto), engines past half of the descriptors come in through
// the gateway: where two engines fit with all their connections, four fit.
TEST(GatewayTest, PastHalfTheDescriptorsEnginesComeInThroughTheGateway) {
  testutil::TempDir dir;
  const fs::path profile = dir.path() / "profile";
  const fs::path controller_log = dir.path() / "controller.log";
  testutil::Process controller({std::string(IPP_BIN_DIR) + "/ipcontroller", "--profile-dir=" + profile.string(),
                                "--log-level=DEBUG"},
                               controller_log);
  std::unique_ptr<Client> client = ConnectTo(profile, controller);
  ASSERT_TRUE(client);
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max =
      static_cast<rlim_t>(OpenFds(controller.pid()) + controller::Hub::kFdReserve + 2 * controller::Hub::kFdsPerEngine + 4);
  ASSERT_EQ(prlimit(controller.pid(), RLIMIT_NOFILE, &limit, nullptr), 0);

  constexpr int kEngines = 4;
  std::vector<std::unique_ptr<testutil::Process>> engines;
  for (int i = 0; i < kEngines; ++i) engines.push_back(StartEngine(profile, dir.path() / ("engine-" + std::to_string(i) + ".log")));
  ASSERT_TRUE(client->wait_for_engines(kEngines, 40s).ok()) << testutil::ReadFile(controller_log);
  EXPECT_EQ(Count(testutil::ReadFile(controller_log), "through the gateway"), static_cast<size_t>(kEngines));
  EXPECT_EQ(client->direct_view().apply("ipp.echo", 7).get(30s), std::vector<Json>(kEngines, Json(7)));
}

}  // namespace
}  // namespace ipp

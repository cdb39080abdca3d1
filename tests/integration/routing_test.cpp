// Load-balanced work goes only to engines that can run it, with real ipcontroller and ipengine
// processes: work no connected engine can run waits (and `ipp status` says why), runs when such
// an engine registers, ends with a clear error at its timeout; tagged work runs only on tagged
// engines; work stranded on a killed engine is retried on another engine with its function; a
// burst of long tasks queued on one engine is taken back for idle ones.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "ipp/client.hpp"
#include "tests/testutil/connected_cluster.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;

const std::string kIpengine = std::string(IPP_BIN_DIR) + "/ipengine";
const std::string kIpp = std::string(IPP_BIN_DIR) + "/ipp";
const std::string kPiWaits = "an engine with function pi.sample";

class RoutingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.ok()) << cluster_.Log("controller.log"); }
  // A native engine without the pi plugin (the cluster's own engines load it).
  void StartPlainEngine() {
    plain_.push_back(std::make_unique<testutil::Process>(
        std::vector<std::string>{kIpengine, "--profile-dir=" + cluster_.profile_dir().string(), "--log-level=DEBUG"},
        dir_.path() / ("plain-" + std::to_string(plain_.size()) + ".log")));
  }
  // Connects once `engines` have registered.
  bool Connect(size_t engines) {
    auto c = Client::Connect(ClientOptions::File(cluster_.client_file().string()));
    if (!c.ok()) {
      ADD_FAILURE() << c.status().ToString();
      return false;
    }
    client_ = std::move(c).value();
    return WaitForEngines(engines);
  }
  bool WaitForEngines(size_t engines) {
    Status s = client_->wait_for_engines(engines, 30s);
    EXPECT_TRUE(s.ok()) << s.ToString() << cluster_.Log("controller.log");
    return s.ok();
  }
  // queue_status' "waiting" ({} when absent).
  Json Waiting() {
    Result<Json> status = client_->queue_status();
    return status.ok() ? status->value("waiting", Json::object()) : Json();
  }
  // The id of the engine with the given tag, or the one without any (tag "").
  int EngineWithTag(const std::string& tag) {
    Result<std::vector<EngineInfo>> engines = client_->engines();
    EXPECT_TRUE(engines.ok());
    for (const EngineInfo& e : engines.ok() ? *engines : std::vector<EngineInfo>{}) {
      if (tag.empty() ? e.tags.empty() : std::find(e.tags.begin(), e.tags.end(), tag) != e.tags.end()) return e.id;
    }
    return -1;
  }

  testutil::LocalCluster cluster_{0, {"--HeartMonitor.max_heartmonitor_misses=3"}};
  testutil::TempDir dir_;
  std::vector<std::unique_ptr<testutil::Process>> plain_;
  std::unique_ptr<Client> client_;
};

TEST_F(RoutingTest, NativeWorkWaitsForAnEngineWithItsFunctionAndRunsWhenOneRegisters) {
  StartPlainEngine();
  ASSERT_TRUE(Connect(1));
  auto view = client_->load_balanced_view();
  std::vector<AsyncResult> results;
  for (int i = 0; i < 4; ++i) results.push_back(view.apply("pi.sample", 1000 + i));
  Json waiting;
  EXPECT_TRUE(testutil::WaitFor([&] { return (waiting = Waiting()) == Json{{kPiWaits, 4}}; }, 10s)) << waiting.dump();
  std::string out;
  EXPECT_EQ(testutil::RunCommand({kIpp, "status", "-f", cluster_.client_file().string()}, &out, 20s), 0) << out;
  EXPECT_NE(out.find("4 tasks waiting for an engine with function pi.sample"), std::string::npos) << out;
  EXPECT_EQ(testutil::RunCommand({kIpp, "status", "--json", "-f", cluster_.client_file().string()}, &out, 20s), 0);
  EXPECT_EQ(Json::parse(out, nullptr, false).value("waiting", Json()), (Json{{kPiWaits, 4}})) << out;
  EXPECT_FALSE(results[0].ready());

  cluster_.AddEngine();  // with the pi plugin
  ASSERT_TRUE(WaitForEngines(2));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(results[i].get_one(30s).value("samples", -1), 1000 + i);
    EXPECT_EQ(results[i].info()[0].engine_id, 1);  // the engine that registered second
  }
  EXPECT_TRUE(testutil::WaitFor([&] { return (waiting = Waiting()).empty(); }, 10s)) << waiting.dump();
}

TEST_F(RoutingTest, NativeWorkNoEngineCanRunEndsAtItsTimeoutSayingWhatItNeeds) {
  StartPlainEngine();
  ASSERT_TRUE(Connect(1));
  TaskOptions options;
  options.timeout = 500ms;
  AsyncResult r = client_->load_balanced_view(options).apply("pi.sample", 1000);
  try {
    r.get(30s);
    FAIL() << "a task no engine can run succeeded";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.ename(), "TaskTimeout");
    EXPECT_EQ(e.evalue(), "no engine that can run it connected within its timeout (needs " + kPiWaits + ")");
  }
}

TEST_F(RoutingTest, TaggedWorkRunsOnlyOnTaggedEngines) {
  cluster_.AddEngine({"--tag", "gpu"});
  cluster_.AddEngine();
  ASSERT_TRUE(Connect(2));
  int tagged = EngineWithTag("gpu"), plain = EngineWithTag("");
  ASSERT_GE(tagged, 0);
  ASSERT_GE(plain, 0);
  TaskOptions options;
  options.requirements = {"gpu"};
  auto gpu_view = client_->load_balanced_view(options);
  auto any_view = client_->load_balanced_view();
  std::vector<AsyncResult> gpu_work, any_work;
  for (int i = 0; i < 20; ++i) {
    gpu_work.push_back(gpu_view.apply("pi.sample", 100000));
    any_work.push_back(any_view.apply("pi.sample", 100000));
  }
  std::set<int> any_engines;
  for (int i = 0; i < 20; ++i) {
    gpu_work[i].get(30s);
    any_work[i].get(30s);
    EXPECT_EQ(gpu_work[i].info()[0].engine_id, tagged);
    any_engines.insert(any_work[i].info()[0].engine_id);
  }
  EXPECT_TRUE(any_engines.count(plain)) << "untagged work never went to the untagged engine";

  // The same from the command line.
  std::string input = (dir_.path() / "items").string(), out;
  std::ofstream(input) << "1\n2\n3\n4\n5\n6\n";
  ASSERT_EQ(testutil::RunCommand({kIpp, "map", "ipp.echo", input, "--requires", "gpu", "--json", "-f",
                                  cluster_.client_file().string()}, &out, 60s), 0) << out;
  size_t lines = 0;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    Json item = Json::parse(line, nullptr, false);
    if (!item.is_object() || !item.contains("engine")) continue;
    ++lines;
    EXPECT_EQ(item["engine"], tagged) << line;
  }
  EXPECT_EQ(lines, 6u) << out;

  // Shell commands from ipp farm too: each result records its engine.
  std::string commands = (dir_.path() / "commands").string();
  std::ofstream(commands) << "true\ntrue\ntrue\ntrue\n";
  ASSERT_EQ(testutil::RunCommand({kIpp, "farm", commands, "--requires", "gpu", "-f", cluster_.client_file().string()},
                                 &out, 60s), 0) << out;
  std::ifstream records(commands + ".results.jsonl");
  lines = 0;
  for (std::string line; std::getline(records, line); ++lines) {
    EXPECT_EQ(Json::parse(line, nullptr, false).value("engine", -1), tagged) << line;
  }
  EXPECT_EQ(lines, 4u);
}

TEST_F(RoutingTest, WorkStrandedOnAKilledEngineIsRetriedOnAnotherEngineWithItsFunction) {
  cluster_.AddEngine();  // the only engine with pi.sample, for now: engine 0
  ASSERT_TRUE(Connect(1));
  StartPlainEngine();
  ASSERT_TRUE(WaitForEngines(2));
  TaskOptions options;
  options.retries = 1;
  auto view = client_->load_balanced_view(options);
  // The first runs on engine 0 for a while (hwm 1), the others wait for it: the plain engine
  // cannot run them.
  std::vector<long> samples = {100'000'000, 1001, 1002};
  std::vector<AsyncResult> results;
  for (long n : samples) results.push_back(view.apply("pi.sample", n));
  ASSERT_TRUE(testutil::WaitFor([&] {
    Result<Json> s = client_->queue_status();
    return s.ok() && (*s)["0"].value("tasks", 0) == 1;
  }, 10s));
  cluster_.engines()[0]->signal(SIGKILL);
  // All three now wait for an engine with the function: none went to the plain engine.
  Json waiting;
  EXPECT_TRUE(testutil::WaitFor([&] { return (waiting = Waiting()) == Json{{kPiWaits, 3}}; }, 20s)) << waiting.dump();
  for (auto& r : results) EXPECT_FALSE(r.ready());

  cluster_.AddEngine();  // another engine with pi.sample
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(results[i].get_one(120s).value("samples", -1L), samples[i]);
    EXPECT_EQ(results[i].info()[0].engine_id, 2);
  }
}

// Priorities and labels with two real engines: a high-priority task sent after a flood of
// low-priority ones waits only for the tasks already running (one per engine), and `ipp farm` /
// `ipp map` send their --label and --priority. The flood's tasks are long next to any round trip
// (even under a sanitizer), so the default prefetch holds one task per engine, as hwm 1 does:
// with short ones it would queue a second behind each running one.
class PriorityTest : public testutil::ConnectedClusterTest<2> {};

TEST_F(PriorityTest, AHighPriorityTaskOvertakesALowPriorityFlood) {
  constexpr int kFlood = 20;
  TaskOptions low;
  low.priority = -1;
  auto flood_view = client_->load_balanced_view(low);
  std::vector<AsyncResult> flood;
  for (int i = 0; i < kFlood; ++i) flood.push_back(flood_view.shell("sleep 0.2"));
  TaskOptions high;
  high.priority = 5;
  AsyncResult urgent = client_->load_balanced_view(high).shell("true");
  // Flood tasks that had ended when it was sent: they, and the one running on each engine, may
  // start before it; no other may.
  int done_then = static_cast<int>(std::count_if(flood.begin(), flood.end(), [](AsyncResult& r) { return r.ready(); }));
  ASSERT_TRUE(urgent.wait(60s));
  ASSERT_EQ(urgent.info()[0].status, TaskStatus::kOk);
  std::string started = urgent.info()[0].started;
  int before = 0;
  for (auto& r : flood) {
    ASSERT_TRUE(r.wait(60s));
    if (r.info()[0].started < started) ++before;
  }
  EXPECT_LE(before, done_then + 2 * 2) << "flood tasks that started before the urgent one (" << done_then
                                       << " had ended when it was sent)";
}

TEST_F(PriorityTest, FarmAndMapSendTheirLabelAndPriority) {
  testutil::TempDir dir;
  auto commands = dir.path() / "commands.txt";
  std::ofstream(commands) << "true\ntrue\ntrue\n";
  std::string out;
  std::string profile = "--profile-dir=" + cluster_.profile_dir().string();
  ASSERT_EQ(testutil::RunCommand({kIpp, "farm", commands.string(), profile, "--label", "farm-7", "--priority", "3"}, &out), 0) << out;
  ASSERT_EQ(testutil::RunCommand({"/bin/sh", "-c", "printf '1000\\n2000\\n' | " + kIpp + " map ipp.echo " + profile +
                                                     " --label map-7 --priority -2"}, &out), 0) << out;
  Result<Json> farmed = client_->db_query({{"label", "farm-7"}}, {"msg_id", "label", "metadata"});
  ASSERT_TRUE(farmed.ok()) << farmed.status().ToString();
  ASSERT_EQ(farmed->size(), 3u) << farmed->dump();
  for (const Json& r : *farmed) EXPECT_EQ(r["metadata"]["priority"], 3) << r.dump();
  Result<Json> mapped = client_->db_query({{"label", {{"$glob", "map-*"}}}}, {"label", "metadata"});
  ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
  ASSERT_EQ(mapped->size(), 2u) << mapped->dump();
  EXPECT_EQ((*mapped)[0]["label"], "map-7");
  EXPECT_EQ((*mapped)[0]["metadata"]["priority"], -2);
  std::string bad_out;
  EXPECT_NE(testutil::RunCommand({kIpp, "farm", commands.string(), profile, "--priority", "high"}, &bad_out), 0);
}

// Work stealing with four real engines: after many no-op tasks the default prefetch queues
// several tasks on one engine (a no-op runs well within a round trip); a burst of long tasks
// then lands on few engines, and the scheduler takes back those that have not started
// (ipp_release_request) for the idle ones. Without that, one engine ran most of the burst.
class StealingTest : public testutil::ConnectedClusterTest<4> {};

TEST_F(StealingTest, ALongBurstAfterNoOpTasksSpreadsOverTheIdleEngines) {
  auto view = client_->load_balanced_view();
  ASSERT_TRUE(view.map("ipp.echo", std::vector<Json>(2000, 0), 1).result().ok());
  constexpr int kBurst = 8;
  constexpr double kSeconds = 0.5;
  auto start = std::chrono::steady_clock::now();
  std::vector<AsyncResult> burst;
  for (int i = 0; i < kBurst; ++i) burst.push_back(view.apply("ipp.sleep", kSeconds));
  std::set<int> engines;
  for (auto& r : burst) {
    ASSERT_TRUE(r.wait(60s));
    ASSERT_EQ(r.info()[0].status, TaskStatus::kOk) << r.info()[0].error->what();
    engines.insert(r.info()[0].engine_id);
  }
  double makespan = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Two rounds of four would be 1 s; one engine running half the burst, 2 s.
  EXPECT_GE(engines.size(), 3u);
  EXPECT_LT(makespan, 4 * kSeconds) << cluster_.Log("controller.log");
}

}  // namespace
}  // namespace ipp

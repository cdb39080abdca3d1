// Faults under load: engines SIGKILLed mid-run, engines that stop answering heartbeats, clients
// that stop reading. Real controller, real engines, the real C++ client.
#include <signal.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ipp/client.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;

// Heartbeats every 300 ms, three misses: a dead engine is noticed in about a second.
const std::vector<std::string> kFastHeartbeat = {"--HeartMonitor.max_heartmonitor_misses=3"};

std::unique_ptr<Client> Connect(testutil::LocalCluster& cluster, size_t engines) {
  auto c = Client::Connect(ClientOptions::File(cluster.client_file().string()));
  if (!c.ok()) {
    ADD_FAILURE() << c.status().ToString();
    return nullptr;
  }
  if (!(*c)->wait_for_engines(engines, 30s).ok()) ADD_FAILURE() << cluster.Log("engine-0.log");
  return std::move(c).value();
}

// The process of the engine the hub calls `id` (ids follow registration order, not start order).
testutil::Process* EngineProcess(testutil::LocalCluster& cluster, Client& client, int id) {
  int pid = client.direct_view({id}).apply("ipp.info").get_one(10s)["pid"].get<int>();
  for (auto& e : cluster.engines()) {
    if (e->pid() == pid) return e.get();
  }
  return nullptr;
}

// A cluster of `n` engines with fast heartbeats, a client that sees them all, and the process
// of engine 0: the set-up of the tests that stop or kill one engine. Start() reports what did
// not come up.
struct OneVictimCluster {
  explicit OneVictimCluster(size_t n) : cluster(n, kFastHeartbeat), n(n) {}
  bool Start() {
    if (!cluster.ok()) {
      ADD_FAILURE() << cluster.Log("controller.log");
      return false;
    }
    client = Connect(cluster, n);
    if (!client) return false;
    victim = EngineProcess(cluster, *client, 0);
    if (!victim) ADD_FAILURE() << "no process for engine 0";
    return victim != nullptr;
  }
  testutil::LocalCluster cluster;
  size_t n;
  std::unique_ptr<Client> client;
  testutil::Process* victim = nullptr;
};

// Waits for `r`, which must fail with EngineError.
void ExpectEngineError(AsyncResult& r, std::chrono::seconds timeout) {
  try {
    r.get(timeout);
    FAIL() << "a request to a stopped engine succeeded";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.ename(), "EngineError") << e.what();
  }
}

// Every task ends exactly once at the client — its result, or EngineError once its one retry is
// spent — while engines are killed one at a time and replaced. hwm=0 queues thousands of tasks
// on each engine, so every kill strands a large batch at once.
TEST(EngineFaultsTest, TenThousandTasksWhileEnginesAreKilledAndReplaced) {
  std::vector<std::string> args = kFastHeartbeat;
  args.push_back("--hwm=0");
  args.push_back("--DictDB.record_limit=20000");  // keep every record (the default keeps 1024)
  testutil::LocalCluster cluster(4, args);
  ASSERT_TRUE(cluster.ok()) << cluster.Log("controller.log");
  auto client = Connect(cluster, 4);
  ASSERT_TRUE(client);

  // Sanitizer builds run fewer (scripts/test-sanitizers): TSan slows every process down many times.
  const int kTasks = std::getenv("IPP_FAULT_TASKS") ? std::atoi(std::getenv("IPP_FAULT_TASKS")) : 10000;
  TaskOptions retry;
  retry.retries = 1;
  auto view = client->load_balanced_view(retry);
  std::vector<AsyncResult> results;
  results.reserve(kTasks);
  const double seconds = 0.002 * 10000 / kTasks;  // ~5 s of work on 4 engines, whatever kTasks
  for (int i = 0; i < kTasks; ++i) results.push_back(view.apply("ipp.sleep", {{"seconds", seconds}, {"result", i}}));

  // Kill the oldest engine still running while work is queued, start a replacement, four times.
  // (Not by asking an engine its pid: with hwm=0 that request waits behind thousands of tasks.)
  int kills = 0;
  for (int round = 0; round < 8 && kills < 4; ++round) {
    std::this_thread::sleep_for(600ms);
    auto status = client->queue_status();
    if (!status.ok()) {  // a hub slowed down by a sanitizer may miss the client's 10 s timeout
      std::cout << "[ faults   ] queue_status: " << status.status().ToString() << "\n";
      continue;
    }
    int queued = 0;
    for (auto& [id, s] : status->items()) {
      if (s.is_object()) queued += s.value("tasks", 0);
    }
    if (queued == 0) break;  // everything already done
    cluster.engines()[static_cast<size_t>(kills)]->kill_group();  // the oldest still running
    cluster.AddEngine();
    ++kills;
  }
  EXPECT_GE(kills, 2) << "the run ended before engines could be killed; make the tasks longer";

  int ok = 0, engine_errors = 0;
  for (int i = 0; i < kTasks; ++i) {
    try {
      Json r = results[i].get_one(120s);  // never hangs: a lost task would time out here
      EXPECT_EQ(r, i);
      ++ok;
    } catch (const RemoteError& e) {
      EXPECT_EQ(e.ename(), "EngineError") << "task " << i << ": " << e.what();
      ++engine_errors;
    }
  }
  EXPECT_EQ(ok + engine_errors, kTasks);
  EXPECT_GT(ok, kTasks / 2);
  Client::Counters c = client->counters();
  EXPECT_EQ(c.unmatched_replies, 0u) << "some tasks were answered twice";
  EXPECT_EQ(c.dropped_messages, 0u);
  std::cout << "[ faults   ] " << kills << " engines killed: " << ok << " results, " << engine_errors
            << " EngineErrors, " << c.replies << " replies\n";

  // The hub agrees: every task has a completed record. The hub hears of a result at the same
  // moment as the client (the scheduler tells both), so the last records may land a moment after
  // the client's last reply: ask again for a while before calling one missing.
  size_t completed = 0;
  for (int attempt = 0; attempt < 40 && completed < static_cast<size_t>(kTasks); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(250ms);
    auto done = client->db_query({{"completed", {{"$ne", nullptr}}}}, {"msg_id"});
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    completed = done->size();
  }
  EXPECT_GE(completed, static_cast<size_t>(kTasks));

  // Everything ran at DEBUG level: still, the key never reaches a log.
  std::string key = Json::parse(testutil::ReadFile(cluster.client_file()))["key"];
  ASSERT_FALSE(key.empty());
  EXPECT_EQ(cluster.Log("controller.log").find(key), std::string::npos);
  for (size_t i = 0; i < cluster.engines().size(); ++i) {
    EXPECT_EQ(cluster.Log("engine-" + std::to_string(i) + ".log").find(key), std::string::npos);
  }
}

// An engine that stops answering heartbeats but keeps its sockets open (SIGSTOP) is declared dead;
// a request waiting on it ends with EngineError and the rest of the cluster keeps serving.
TEST(StuckPeersTest, StoppedEngineIsDeclaredDeadAndOthersKeepServing) {
  OneVictimCluster c(2);
  ASSERT_TRUE(c.Start());
  c.victim->signal(SIGSTOP);
  auto direct = c.client->direct_view({0}).apply("ipp.echo", 2);
  ASSERT_TRUE(testutil::WaitFor([&] { return c.client->ids() == std::vector<int>{1}; }, 20s))
      << "the stopped engine was never declared dead";
  ExpectEngineError(direct, 20s);
  auto lb = c.client->load_balanced_view().map("ipp.echo", std::vector<Json>(200, 7));
  EXPECT_EQ(lb.get(30s), std::vector<Json>(200, 7));
  c.victim->signal(SIGCONT);
  c.victim->kill_group();
}

// An engine stopped by SIGTERM mid-task answers that task itself, as the hub would for an engine
// that died (EngineError), not as if a user had interrupted it (KeyboardInterrupt).
TEST(EngineFaultsTest, WorkOfAnEngineStoppedBySigtermEndsAsEngineError) {
  OneVictimCluster c(1);
  ASSERT_TRUE(c.Start());
  auto r = c.client->direct_view({0}).apply("ipp.sleep", {{"seconds", 20.0}});
  std::this_thread::sleep_for(300ms);
  c.victim->signal(SIGTERM);
  ExpectEngineError(r, 30s);
}

// A broadcast to an engine that dies mid-run ends with EngineError for that engine's part and the
// survivor's result; it does not wait forever.
TEST(EngineFaultsTest, BroadcastToAnEngineThatDiesEnds) {
  OneVictimCluster c(2);
  ASSERT_TRUE(c.Start());
  auto r = c.client->broadcast_view().apply("ipp.sleep", {{"seconds", 2.0}, {"result", 1}});
  std::this_thread::sleep_for(300ms);
  c.victim->kill_group();
  EXPECT_THROW(r.get(30s), RemoteError);
  ASSERT_TRUE(r.ready());
  auto info = r.info();
  ASSERT_EQ(info.size(), 2u);
  EXPECT_EQ(info[0].status, TaskStatus::kError);
  EXPECT_EQ(info[0].error->ename(), "EngineError");
  EXPECT_EQ(info[1].status, TaskStatus::kOk);
  EXPECT_EQ(info[1].result, 1);
}

}  // namespace
}  // namespace ipp

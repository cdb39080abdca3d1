// The C++ client against a real ipcontroller and real ipengines.
#include "ipp/client.hpp"

#include <signal.h>

#include <fstream>
#include <future>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <zmq_addon.hpp>

#include "protocol/connection_file.hpp"
#include "protocol/session.hpp"
#include "tests/testutil/connected_cluster.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

using ClientTest = testutil::ConnectedClusterTest<2>;

// The sum over every engine of queue_status's `keys`.
int QueueStatusSum(Client& client, std::initializer_list<const char*> keys) {
  auto status = client.queue_status();
  EXPECT_TRUE(status.ok());
  int sum = 0;
  for (auto& [id, s] : status->items()) {
    for (const char* key : keys) sum += s.is_object() ? s.value(key, 0) : 0;
  }
  return sum;
}

TEST_F(ClientTest, DirectApplyRunsOnEveryEngine) {
  auto r = client_->direct_view().apply("ipp.info");
  std::vector<Json> infos = r.get(10s);
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_NE(infos[0]["pid"], infos[1]["pid"]);
  auto tasks = r.info();
  EXPECT_EQ(tasks[0].engine_id, 0);
  EXPECT_EQ(tasks[1].engine_id, 1);
  EXPECT_FALSE(tasks[0].started.empty());
  EXPECT_EQ(client_->direct_view({1}).apply("ipp.echo", {{"x", 1}}).get_one(10s)["x"], 1);
}

TEST_F(ClientTest, RemoteErrorsAreRethrownWithEngineAndName) {
  auto r = client_->direct_view({1}).apply("fail.always");
  try {
    r.get(10s);
    FAIL() << "no exception";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.engine_id(), 1);
    EXPECT_EQ(e.ename(), "std::domain_error");  // the C++ exception's own class
    EXPECT_EQ(e.evalue(), "this function always fails");
    EXPECT_FALSE(e.traceback().empty());
  }
  EXPECT_FALSE(r.successful());
  EXPECT_THROW(client_->direct_view({0}).apply("no.such").get(10s), RemoteError);
  EXPECT_THROW(client_->direct_view({7}).apply("ipp.echo").get(10s), RemoteError);  // no engine 7
}

// What a function printed is in its TaskInfo as soon as the result is: it comes in the reply
// (its IOPub copy may arrive later, and is then not added a second time).
TEST_F(ClientTest, PrintedOutputComesWithTheResult) {
  auto lb = client_->load_balanced_view();
  for (int i = 0; i < 20; ++i) {
    auto r = lb.apply("demo.total", Json::array({1, 2}));
    EXPECT_EQ(r.get_one(10s), 3.0);
    EXPECT_EQ(r.info()[0].stdout_text, "summed 2 numbers\n");
  }
  auto failed = lb.apply("demo.total", "x");
  ASSERT_TRUE(failed.wait(10s));
  EXPECT_EQ(failed.info()[0].error->ename(), "std::domain_error");
}

TEST_F(ClientTest, DirectMapScattersInOrder) {
  std::vector<Json> items;
  for (int i = 0; i < 11; ++i) items.push_back({{"samples", 10}, {"seed", i}});
  auto r = client_->direct_view().map("pi.sample", items);
  EXPECT_EQ(r.size(), 2u);  // one message per engine
  auto out = r.get(10s);
  ASSERT_EQ(out.size(), 11u);
  for (auto& v : out) EXPECT_EQ(v["samples"], 10);
}

TEST_F(ClientTest, LoadBalancedMapKeepsOrderWithChunks) {
  auto lb = client_->load_balanced_view();
  std::vector<Json> items;
  for (int i = 0; i < 50; ++i) items.push_back(i);
  auto r = lb.map("ipp.echo", items, 7);
  EXPECT_EQ(r.size(), 8u);  // ceil(50 / 7) tasks
  auto out = r.get(20s);
  ASSERT_EQ(out.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(out[i], i);
  std::set<int> engines;
  for (auto& t : r.info()) engines.insert(t.engine_id);
  EXPECT_EQ(engines.size(), 2u);
  auto unordered = lb.map("ipp.echo", items, 5, false).get(20s);
  std::multiset<int> got;
  for (auto& v : unordered) got.insert(v.get<int>());
  EXPECT_EQ(got.size(), 50u);
  EXPECT_EQ(*got.begin(), 0);
}

TEST_F(ClientTest, DependenciesAndTimeouts) {
  auto lb = client_->load_balanced_view();
  auto first = lb.apply("ipp.sleep", 0.3);
  TaskOptions after;
  after.after = first.msg_ids();
  auto second = client_->load_balanced_view(after).apply("ipp.info");
  second.get(10s);
  EXPECT_GE(second.info()[0].started, first.info()[0].completed);
  TaskOptions follow;
  follow.follow = first.msg_ids();
  auto followed = client_->load_balanced_view(follow).apply("ipp.info");
  EXPECT_EQ(followed.get_one(10s)["id"], first.info()[0].engine_id);

  auto failing = lb.apply("fail.always");
  EXPECT_THROW(failing.get(10s), RemoteError);
  TaskOptions impossible;
  impossible.after = failing.msg_ids();
  try {
    client_->load_balanced_view(impossible).apply("ipp.echo").get(10s);
    FAIL();
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.ename(), "ImpossibleDependency");
  }
  auto blocker = lb.apply("ipp.sleep", 1.5);
  TaskOptions timeout;
  timeout.after = blocker.msg_ids();
  timeout.timeout = 200ms;
  try {
    client_->load_balanced_view(timeout).apply("ipp.echo").get(10s);
    FAIL();
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.ename(), "TaskTimeout");
  }
  EXPECT_THROW(client_->direct_view({0}).apply("ipp.sleep", 5).get(100ms), TimeoutError);
}

TEST_F(ClientTest, ExecuteCollectsOutputPerEngine) {
  auto r = client_->direct_view().execute("echo out-$$; echo err >&2");
  r.get(10s);
  auto info = r.info();
  ASSERT_EQ(info.size(), 2u);
  EXPECT_EQ(info[0].stdout_text.rfind("out-", 0), 0u);
  EXPECT_NE(info[0].stdout_text, info[1].stdout_text);
  EXPECT_EQ(info[1].stderr_text, "err\n");
  EXPECT_FALSE(info[0].output_incomplete);
  EXPECT_EQ(info[0].result["status"], "ok");  // not a native call: the reply's content
  EXPECT_THROW(client_->direct_view({0}).execute("exit 2").get(10s), RemoteError);
}

// An execute whose IOPub "idle" never comes (PUB/SUB drops what it cannot deliver) completes
// soon after its reply, marked as possibly missing output, instead of waiting forever. Here the
// client's IOPub port leads to a publisher that only welcomes it, as our controller does.
TEST_F(ClientTest, ExecuteCompletesWhenItsIdleIsLost) {
  zmq::context_t context;
  zmq::socket_t silent(context, zmq::socket_type::xpub);
  silent.set(zmq::sockopt::linger, 0);
  silent.set(zmq::sockopt::rcvtimeo, 20000);
  std::string endpoint = testutil::BindLoopback(silent);
  Json info = Json::parse(testutil::ReadFile(cluster_.client_file()));
  info["iopub"] = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  info.erase("ipp_local");  // the fake IOPub is on TCP only: the client must not take ipc://
  testutil::TempDir dir;
  auto file = dir.path() / "client.json";
  std::ofstream(file) << info.dump();
  ClientOptions options = ClientOptions::File(file.string());
  options.output_grace = 300ms;
  auto connecting = std::async(std::launch::async, [&] { return Client::Connect(options); });
  zmq::message_t subscription;
  ASSERT_TRUE(silent.recv(subscription));  // Connect waits for a welcome: give it one
  protocol::Session session(info["key"].get<std::string>());
  protocol::Send(silent, session.serialize(session.make("iopub_welcome", {{"subscription", ""}})));
  auto client = connecting.get();
  ASSERT_TRUE(client.ok()) << client.status().ToString();

  auto r = (*client)->direct_view({0}).execute("echo lost");
  ASSERT_TRUE(r.wait(20s)) << "waited for an idle that cannot come";
  TaskInfo t = r.info()[0];
  EXPECT_EQ(t.status, TaskStatus::kOk);
  EXPECT_TRUE(t.output_incomplete);
  EXPECT_EQ(t.stdout_text, "");
}

TEST_F(ClientTest, EngineKindsFromKernelInfo) {
  auto kinds = client_->engine_kinds();
  ASSERT_EQ(kinds.size(), 2u);
  EXPECT_EQ(kinds[0], EngineKind::kNative);
  EXPECT_EQ(kinds[1], EngineKind::kNative);
  EXPECT_STREQ(EngineKindName(kinds[0]), "native");
  auto info = client_->direct_view({1}).kernel_info().get_one(10s);
  EXPECT_EQ(info["implementation"], "ipp");
  EXPECT_EQ(client_->engine_kinds({7})[7], EngineKind::kUnknown);  // no such engine
}

TEST_F(ClientTest, PushPullScatterGatherAndBuffers) {
  auto dv = client_->direct_view();
  ASSERT_TRUE(dv.push({{"a", 5}, {"b", "text"}}, 10s).ok());
  auto pulled = dv.pull({"a", "b"}, 10s);
  ASSERT_TRUE(pulled.ok()) << pulled.status().ToString();
  EXPECT_EQ((*pulled)[1]["a"], 5);
  std::vector<Json> items;
  for (int i = 0; i < 9; ++i) items.push_back(i * i);
  ASSERT_TRUE(dv.scatter("xs", items, 10s).ok());
  auto gathered = dv.gather("xs", 10s);
  ASSERT_TRUE(gathered.ok());
  EXPECT_EQ(*gathered, items);
  std::string blob(1 << 20, 'z');
  blob[7] = 'q';
  ASSERT_TRUE(client_->direct_view({0}).push_buffer("blob", Buffer(blob), 10s).ok());
  auto echo = client_->direct_view({0}).apply("ipp.pull", {{"names", {"blob"}}});
  echo.get(10s);
  ASSERT_EQ(echo.info()[0].buffers.size(), 1u);
  EXPECT_EQ(echo.info()[0].buffers[0].view(), blob);
  EXPECT_FALSE(dv.pull({"missing"}, 10s).ok());
}

TEST_F(ClientTest, BroadcastAndCallbacks) {
  auto r = client_->broadcast_view().apply("ipp.info");
  auto out = r.get(10s);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_NE(out[0]["id"], out[1]["id"]);
  std::atomic<int> seen{0};
  auto lb = client_->load_balanced_view();
  std::vector<Json> items(20, 1);
  auto m = lb.map("ipp.echo", items);
  m.on_each([&](size_t, const TaskInfo& t) { seen += t.status == TaskStatus::kOk; });
  m.get(10s);
  EXPECT_TRUE(testutil::WaitFor([&] { return seen.load() == 20; }, 5s));
}

TEST_F(ClientTest, HubQueriesAndResultsFromAnotherClient) {
  const double in[] = {1.5, 2.5}, doubled[] = {3.0, 5.0};
  std::string expected(reinterpret_cast<const char*>(doubled), sizeof doubled);
  auto r = client_->load_balanced_view().apply("vec.sum_and_double", nullptr,
                                               {Buffer(std::string(reinterpret_cast<const char*>(in), sizeof in))});
  EXPECT_EQ(r.get_one(10s), 4.0);
  // The function's own buffer, not the pickle for stock clients that comes before it.
  ASSERT_EQ(r.info()[0].buffers.size(), 1u);
  EXPECT_EQ(r.info()[0].buffers[0].view(), expected);
  auto other = Client::Connect(ClientOptions::File(cluster_.client_file().string()));
  ASSERT_TRUE(other.ok());
  auto again = (*other)->get_result(r.msg_ids());
  EXPECT_EQ(again.get_one(10s), 4.0);
  ASSERT_EQ(again.info()[0].buffers.size(), 1u);
  EXPECT_EQ(again.info()[0].buffers[0].view(), expected);
  auto records = (*other)->db_query({{"msg_id", {{"$in", r.msg_ids()}}}}, {"msg_id", "engine_uuid"});
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  auto status = client_->queue_status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["unassigned"], 0);
  auto history = client_->hub_history();
  ASSERT_TRUE(history.ok());
  EXPECT_NE(std::find(history->begin(), history->end(), r.msg_ids()[0]), history->end());
  ASSERT_TRUE(client_->purge_results({"all"}).ok());
  EXPECT_THROW((*other)->get_result(r.msg_ids()).get(10s), RemoteError);
}

TEST_F(ClientTest, GetResultOnAPendingIdCompletesWhenItEnds) {
  auto r = client_->load_balanced_view().apply("ipp.sleep", {{"seconds", 1.0}, {"result", 7}});
  auto other = Client::Connect(ClientOptions::File(cluster_.client_file().string()));
  ASSERT_TRUE(other.ok());
  // The hub knows the task once its record exists; ask only then, while it still runs.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto records = (*other)->db_query({{"msg_id", {{"$in", r.msg_ids()}}}}, {"msg_id"});
    ASSERT_TRUE(records.ok()) << records.status().ToString();
    if (!records->empty()) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the hub never recorded the task";
  }
  auto again = (*other)->get_result(r.msg_ids());
  ASSERT_FALSE(again.ready());
  EXPECT_EQ(again.info()[0].status, TaskStatus::kPending);
  EXPECT_EQ(again.get_one(10s), 7);
  EXPECT_EQ(again.info()[0].status, TaskStatus::kOk);
  EXPECT_EQ(r.get_one(10s), 7);
}

TEST_F(ClientTest, AnUnknownEngineIdIsTheSameErrorEverywhere) {
  const std::vector<int> unknown = {99};
  auto dv = client_->direct_view(unknown);
  auto expect_not_found = [](const AsyncResult& r, const char* what) {
    ASSERT_TRUE(r.wait(10s)) << what;
    Result<std::vector<Json>> values = r.result();
    EXPECT_EQ(values.status().code(), Status::Code::kNotFound) << what << ": " << values.status().ToString();
    try {
      r.get();
      ADD_FAILURE() << what << ": get() did not throw";
    } catch (const RemoteError& e) {
      EXPECT_EQ(e.ename(), "IndexError") << what;
      EXPECT_EQ(e.engine_id(), -1) << what;
    }
  };
  expect_not_found(dv.apply("ipp.echo", 1), "apply");
  expect_not_found(dv.map("ipp.echo", {1, 2}), "map");
  expect_not_found(dv.execute("true"), "execute");
  expect_not_found(dv.kernel_info(), "kernel_info");
  expect_not_found(dv.abort(), "DirectView::abort");
  expect_not_found(client_->broadcast_view(unknown).apply("ipp.echo", 1), "broadcast apply");
  EXPECT_EQ(dv.push({{"a", 1}}, 10s).code(), Status::Code::kNotFound);
  EXPECT_EQ(dv.pull({"a"}, 10s).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(dv.scatter("xs", {1, 2}, 10s).code(), Status::Code::kNotFound);
  EXPECT_EQ(dv.gather("xs", 10s).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(client_->abort({}, unknown).code(), Status::Code::kNotFound);
  EXPECT_EQ(client_->send_signal(SIGINT, unknown).code(), Status::Code::kNotFound);
  EXPECT_EQ(client_->shutdown(unknown).code(), Status::Code::kNotFound);
  EXPECT_EQ(client_->ids().size(), 2u);  // nothing was shut down
}

TEST_F(ClientTest, ATimeoutIsTheSameCodeEverywhere) {
  auto busy = client_->direct_view({0});
  AsyncResult sleeping = busy.apply("ipp.sleep", 1.5);
  EXPECT_EQ(sleeping.result(50ms).status().code(), Status::Code::kTimeout);
  EXPECT_THROW(sleeping.get(1ms), TimeoutError);
  // Queued behind the sleep on engine 0, so not done in time.
  EXPECT_EQ(busy.push({{"a", 1}}, 50ms).code(), Status::Code::kTimeout);
  EXPECT_EQ(busy.pull({"a"}, 50ms).status().code(), Status::Code::kTimeout);
  EXPECT_EQ(busy.scatter("xs", {1}, 50ms).code(), Status::Code::kTimeout);
  EXPECT_EQ(busy.gather("xs", 50ms).status().code(), Status::Code::kTimeout);
  EXPECT_EQ(client_->wait_for_engines(3, 50ms).code(), Status::Code::kTimeout);
  // A task's own timeouts: waiting for a dependency, and a shell command's run.
  AsyncResult blocker = client_->load_balanced_view().apply("ipp.sleep", 1.5);
  TaskOptions after_sleep;
  after_sleep.after = blocker.msg_ids();
  after_sleep.timeout = 100ms;
  EXPECT_EQ(client_->load_balanced_view(after_sleep).apply("ipp.echo").result(10s).status().code(),
            Status::Code::kTimeout);
  EXPECT_EQ(client_->load_balanced_view().shell("sleep 5", 100ms).result(10s).status().code(),
            Status::Code::kTimeout);
  ASSERT_TRUE(sleeping.wait(10s));
}

TEST_F(ClientTest, HubAnswersReflectEveryResultAlreadyReceived) {
  // The hub reads its copies of forwarded messages in paced batches; a query must still see
  // every result its client already holds, direct (MUX) or load-balanced.
  auto completed = [&] { return QueueStatusSum(*client_, {"completed"}); };
  auto direct = client_->direct_view({client_->ids().front()});
  auto balanced = client_->load_balanced_view();
  for (int round = 0; round < 20; ++round) {
    int before = completed();
    auto r = (round % 2 ? balanced.apply("ipp.echo", Json::array({round}))
                        : direct.apply("ipp.echo", Json::array({round})));
    ASSERT_EQ(r.get_one(10s), Json::array({round}));
    EXPECT_EQ(completed(), before + 1) << "round " << round;
    auto records = client_->db_query({{"msg_id", {{"$in", r.msg_ids()}}}}, {"msg_id", "completed"});
    ASSERT_TRUE(records.ok());
    ASSERT_EQ(records->size(), 1u);
    EXPECT_FALSE((*records)[0]["completed"].is_null()) << "round " << round;
  }
}

TEST_F(ClientTest, RetriesAfterEngineKilledAndEngineErrorWithout) {
  // Engine ids follow registration order, not start order: map ids to pids first.
  std::map<int, int> pids;
  for (int id : {0, 1}) pids[id] = client_->direct_view({id}).apply("ipp.info").get_one(10s)["pid"].get<int>();
  TaskOptions retry;
  retry.retries = 1;
  auto task = client_->load_balanced_view(retry).apply("ipp.sleep", 2.0);
  ASSERT_TRUE(testutil::WaitFor([&] {
    auto s = client_->queue_status();
    return s.ok() && ((*s)["0"]["tasks"] == 1 || (*s)["1"]["tasks"] == 1);
  }, 10s));
  auto s = *client_->queue_status();
  int victim = s["0"]["tasks"] == 1 ? 0 : 1;
  auto direct = client_->direct_view({victim}).apply("ipp.sleep", 10);
  for (auto& e : cluster_.engines()) {
    if (e->pid() == pids[victim]) e->kill_group();  // heartbeats stop: the controller must notice
  }
  EXPECT_NO_THROW(task.get(30s));
  EXPECT_EQ(task.info()[0].engine_id, 1 - victim);  // retried on the survivor
  try {
    direct.get(30s);
    FAIL() << "direct request on a dead engine succeeded";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.ename(), "EngineError");
  }
}

// A task retried after it failed leaves no count behind in queue_status on the engines that
// failed it: neither when another engine's reply ends it, nor when the scheduler fails it
// itself because every engine it may run on has failed it.
TEST_F(ClientTest, RetriedTasksLeaveNoCountInQueueStatus) {
  auto tasks_left = [&] { return QueueStatusSum(*client_, {"tasks", "queue"}); };
  TaskOptions anywhere;
  anywhere.retries = 1;
  TaskOptions only_engine_0;
  only_engine_0.retries = 2;
  only_engine_0.targets = {0};
  for (const TaskOptions& options : {anywhere, only_engine_0}) {
    auto r = client_->load_balanced_view(options).shell("exit 3");
    ASSERT_TRUE(r.wait(20s));
    EXPECT_FALSE(r.successful());
    EXPECT_TRUE(testutil::WaitFor([&] { return tasks_left() == 0; }, 5s)) << client_->queue_status()->dump();
  }
}

TEST(ClientDependencyMemoryTest, DependenciesOnForgottenTasksFailAsInvalid) {
  // Remember at least 4 tasks: after 10 more, the first is forgotten, the latest are not.
  testutil::LocalCluster cluster(1, {"--remembered-tasks", "4"});
  ASSERT_TRUE(cluster.ok()) << cluster.Log("controller.log");
  auto c = Client::Connect(ClientOptions::File(cluster.client_file().string()));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE((*c)->wait_for_engines(1, 30s).ok());
  auto lb = (*c)->load_balanced_view();
  auto first = lb.apply("ipp.echo", 1);
  first.get(10s);
  AsyncResult last = first;
  for (int i = 0; i < 10; ++i) (last = lb.apply("ipp.echo", i)).get(10s);
  TaskOptions recent;
  recent.after = last.msg_ids();
  recent.follow = last.msg_ids();
  EXPECT_EQ((*c)->load_balanced_view(recent).apply("ipp.echo", 5).get_one(10s), 5);
  TaskOptions old;
  old.after = first.msg_ids();
  try {
    (*c)->load_balanced_view(old).apply("ipp.echo", 6).get(10s);
    FAIL() << "a dependency on a forgotten task ran";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.ename(), "InvalidDependency");
    EXPECT_NE(std::string(e.what()).find("remembered-tasks"), std::string::npos) << e.what();
  }

  auto flood = [&] {
    std::vector<AsyncResult> tasks;
    for (int i = 0; i < 10; ++i) tasks.push_back(lb.apply("ipp.echo", i));
    return tasks;
  };
  // Waiting on a running task and on a finished one that is forgotten meanwhile: fails, never
  // waits forever.
  auto done = lb.apply("ipp.echo", 0);
  done.get(10s);
  auto running = lb.apply("ipp.sleep", 1.0);
  TaskOptions both;
  both.after = {done.msg_ids()[0], running.msg_ids()[0]};
  auto waiting = (*c)->load_balanced_view(both).apply("ipp.echo", 7);
  auto tasks = flood();
  try {
    waiting.get(10s);
    FAIL() << "a task whose dependency was forgotten ran";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.ename(), "InvalidDependency") << e.what();
  }
  for (auto& t : tasks) t.get(10s);
  // A dependency met at submission stays met while the task waits for a free engine.
  auto met_first = lb.apply("ipp.echo", 0);
  met_first.get(10s);
  auto busy = lb.apply("ipp.sleep", 1.0);
  TaskOptions met;
  met.after = met_first.msg_ids();
  auto queued = (*c)->load_balanced_view(met).apply("ipp.echo", 8);
  tasks = flood();
  EXPECT_EQ(queued.get_one(10s), 8);
  for (auto& t : tasks) t.get(10s);
}

TEST(ClientConnectTest, ClearErrorsWithoutACluster) {
  testutil::TempDir dir;
  auto c = Client::Connect(ClientOptions::ProfileDir(dir.path().string()));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("no cluster running"), std::string::npos);
  auto file = dir.path() / "bad.json";
  std::ofstream(file) << "{not json";
  auto bad = Client::Connect(ClientOptions::File(file.string()));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.json"), std::string::npos);
}

// Signed requests that a scheduler channel does not carry (an unknown msg_type, a hub query sent
// to the task or MUX port) and a task whose content is not an object are answered with an error
// and never stall anyone's load-balanced work.
TEST_F(ClientTest, RequestsAChannelDoesNotCarryAreRefusedWhileAMapRuns) {
  auto info = protocol::ReadConnectionFile(cluster_.client_file());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  zmq::context_t ctx;
  std::string engine_uuid = client_->direct_view({0}).apply("ipp.info").get_one(10s)["uuid"];
  protocol::Session session(info->key);
  std::map<std::string, zmq::socket_t> sockets;
  for (const char* channel : {"task", "mux", "broadcast"}) {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.connect(*info->url(channel));
    sockets.emplace(channel, std::move(s));
  }

  std::vector<Json> items;
  for (int i = 0; i < 2000; ++i) items.push_back(i);
  AsyncResult map = client_->load_balanced_view().map("ipp.echo", items);

  // msg_id -> what was sent, for the error each must get back.
  std::map<std::string, std::string> sent;
  const char* types[] = {"bogus_request", "db_request", "queue_request", "not a request"};
  for (int i = 0; i < 300; ++i) {
    std::string channel = i % 3 == 0 ? "task" : i % 3 == 1 ? "mux" : "broadcast";
    std::string type = types[i % 4];
    json metadata = json::object();
    if (channel == "broadcast") metadata = {{"targets", json::array({json::array({engine_uuid, 0})})}, {"is_broadcast", true}};
    protocol::Message m = session.make(type, {{"keys", {"msg_id"}}}, json::object(), metadata);
    if (channel == "mux") m.identities.emplace_back(engine_uuid.data(), engine_uuid.size());
    sent[m.msg_id()] = channel + " " + type;
    protocol::Send(sockets.at(channel), session.serialize(std::move(m)));
  }
  // A task whose content is not an object: the engine must answer it, or its slot is lost.
  for (int i = 0; i < 4; ++i) {
    std::string header = session.header_text("apply_request");
    std::string msg_id = json::parse(header)["msg_id"];
    sent[msg_id] = "task apply_request with bad content";
    protocol::Send(sockets.at("task"),
                   session.serialize_parts({}, header, "{}", "{}", "\"not an object\"", {}));
  }

  std::map<std::string, json> replies;  // msg_id -> content
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (replies.size() < sent.size() && std::chrono::steady_clock::now() < deadline) {
    std::vector<zmq::pollitem_t> items;
    for (auto& [name, s] : sockets) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
    zmq::poll(items, 100ms);
    for (auto& [name, s] : sockets) {
      protocol::Frames frames;
      while (zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        Result<protocol::Message> m = session.parse(std::move(frames));
        frames.clear();
        ASSERT_TRUE(m.ok()) << m.status().ToString();
        EXPECT_EQ(m->msg_type(), "apply_reply");
        replies[m->parent_header.value("msg_id", "")] = m->content;
      }
    }
  }
  EXPECT_EQ(replies.size(), sent.size());
  for (const auto& [msg_id, what] : sent) {
    auto it = replies.find(msg_id);
    if (it == replies.end()) {
      ADD_FAILURE() << "no reply to " << what;
      continue;
    }
    EXPECT_EQ(it->second.value("status", ""), "error") << what;
    EXPECT_EQ(it->second.value("ename", ""), "InvalidRequest") << what << ": " << it->second.dump();
    std::string expected = what.find("bad content") == std::string::npos ? "does not carry" : "content";
    EXPECT_NE(it->second.value("evalue", "").find(expected), std::string::npos) << what << ": " << it->second.dump();
  }

  std::vector<Json> out = map.get(120s);
  ASSERT_EQ(out.size(), 2000u);
  EXPECT_EQ(out[1999], 1999);
  // Still serving, on every channel.
  EXPECT_EQ(client_->load_balanced_view().apply("ipp.echo", 7).get_one(10s), 7);
  EXPECT_EQ(client_->direct_view({1}).apply("ipp.echo", 8).get_one(10s), 8);
  EXPECT_EQ(client_->broadcast_view().apply("ipp.echo", 9).get(10s).size(), 2u);
  EXPECT_TRUE(client_->queue_status().ok());
}

}  // namespace
}  // namespace ipp

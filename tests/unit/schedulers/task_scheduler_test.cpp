#include "schedulers/task_scheduler.hpp"

#include <functional>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "protocol/clock.hpp"
#include "protocol/errors.hpp"
#include "tests/testutil/fake_peer.hpp"

namespace ipp::schedulers {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testutil::FakePeer;

constexpr const char* kKey = "task-test-key";

// The scheduler on the test's thread, its hub side (notification PUB, monitor PULL, abort PUSH)
// and a client, all over inproc; engines are added per test.
class TaskSchedulerTest : public ::testing::Test {
 protected:
  // `control`: with a control relay (a ROUTER here that never answers), as the controller wires
  // it for work stealing.
  void Start(TaskSchedulerOptions options = {}, bool control = false) {
    options.seed = 7;
    scheduler_ = std::make_unique<TaskScheduler>(context_, kKey, options, MakeLogger("test.task"));
    scheduler_->client_socket().bind("inproc://task-clients");
    scheduler_->engine_socket().bind("inproc://task-engines");
    hub_.socket().bind("inproc://task-notifications");
    monitor_.socket().bind("inproc://task-monitor");
    scheduler_->Connect("inproc://task-notifications", "inproc://task-monitor");
    scheduler_->ListenForAborts("inproc://task-aborts");
    aborts_.connect("inproc://task-aborts");
    if (control) {
      control_relay_.bind("inproc://task-control");
      scheduler_->ConnectControl("inproc://task-control");
    }
    scheduler_->Attach(reactor_);
    client_.socket().connect("inproc://task-clients");
  }
  // An engine whose task socket is connected, known to the scheduler as already registered
  // (a Python engine unless `caps` says otherwise).
  FakePeer& AddEngine(const std::string& uuid, protocol::Capabilities caps = {}) {
    engines_.push_back(std::make_unique<FakePeer>(context_, zmq::socket_type::dealer, kKey, uuid));
    engines_.back()->socket().connect("inproc://task-engines");
    scheduler_->AddEngine(uuid, std::move(caps));
    return *engines_.back();
  }
  // An engine that connects now and registers later (RegisterLater).
  FakePeer& ConnectEngine(const std::string& uuid) {
    engines_.push_back(std::make_unique<FakePeer>(context_, zmq::socket_type::dealer, kKey, uuid));
    engines_.back()->socket().connect("inproc://task-engines");
    return *engines_.back();
  }
  static protocol::Capabilities Native(std::vector<std::string> functions, std::set<std::string> tags = {}) {
    protocol::Capabilities caps;
    caps.kind = protocol::EngineKind::kNative;
    caps.functions.insert(functions.begin(), functions.end());
    caps.tags = std::move(tags);
    return caps;
  }
  static protocol::Capabilities Python(std::set<std::string> tags, std::map<std::string, double> resources = {}) {
    protocol::Capabilities caps;
    caps.tags = std::move(tags);
    caps.resources = std::move(resources);
    return caps;
  }
  // Pickled Python work, as the stock client sends it (no ipp_call).
  json Submit(json metadata = json::object()) {
    return client_.Send("apply_request", json::object(), std::move(metadata))["msg_id"];
  }
  // A native function call, as our clients send it.
  std::string SubmitCall(const std::string& function, json metadata = json::object(), json args = nullptr) {
    json content = {{"ipp_call", {{"args", std::move(args)}, {"function", function}}}};
    return client_.Send("apply_request", std::move(content), std::move(metadata))["msg_id"];
  }
  std::string SubmitExecute(json metadata = json::object()) {
    return client_.Send("execute_request", {{"code", "hostname"}}, std::move(metadata))["msg_id"];
  }
  // Turns the reactor until `count` tasks have reached the engines (hwm 0: none is answered);
  // returns which engine got each.
  std::map<std::string, std::string> Collect(size_t count) {
    std::map<std::string, std::string> where;  // msg_id -> engine
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (where.size() < count && std::chrono::steady_clock::now() < deadline) {
      reactor_.run_once(1ms);
      for (auto& e : engines_) {
        while (auto frames = protocol::TryRecv(e->socket())) {
          where[e->session().parse(std::move(*frames))->msg_id()] =
              std::string(e->socket().get(zmq::sockopt::routing_id));
        }
      }
    }
    EXPECT_EQ(where.size(), count) << "tasks that reached an engine";
    return where;
  }
  // The next "waiting" report on the monitor channel: [msg_id, reason]; other reports skipped.
  std::optional<std::pair<std::string, std::string>> NextWaiting(std::chrono::milliseconds timeout = 5s) {
    while (auto frames = monitor_.NextFrames(reactor_, timeout)) {
      if (protocol::view(frames->front()) == "waiting") {
        return std::make_pair(std::string(protocol::view((*frames)[1])), std::string(protocol::view((*frames)[2])));
      }
    }
    return std::nullopt;
  }
  // The first task any of `engines` gets, and which one got it (nullptr: none within 5 s).
  std::pair<FakePeer*, protocol::Message> FirstTask(std::initializer_list<FakePeer*> engines) {
    std::pair<FakePeer*, protocol::Message> out;
    out.first = nullptr;
    for (int i = 0; i < 5000 && !out.first; ++i) {
      reactor_.run_once(1ms);
      for (FakePeer* e : engines) {
        if (auto frames = protocol::TryRecv(e->socket())) {
          out.second = std::move(e->session().parse(std::move(*frames))).value();
          out.first = e;
          break;
        }
      }
    }
    return out;
  }
  // The client's next reply in full.
  protocol::Message NextReplyMessage() {
    std::optional<protocol::Message> reply = client_.Next(reactor_);
    EXPECT_TRUE(reply.has_value()) << "the client got no reply";
    return reply ? std::move(*reply) : protocol::Message{};
  }
  // The next task `engine` is sent; fails the test if none comes.
  protocol::Message NextTask(FakePeer& engine) {
    std::optional<protocol::Message> task = engine.Next(reactor_);
    EXPECT_TRUE(task.has_value()) << "no task reached the engine";
    return task ? std::move(*task) : protocol::Message{};
  }
  void Answer(FakePeer& engine, const protocol::Message& task, const std::string& status) {
    json content = status == "ok" ? json{{"status", "ok"}} : protocol::ErrorContent("RuntimeError", "boom");
    engine.Reply(task, "apply_reply", content, {{"status", status}, {"dependencies_met", true}});
  }
  // The client's next reply: [msg_id it answers, status, ename or ""].
  std::tuple<std::string, std::string, std::string> NextReply() {
    std::optional<protocol::Message> reply = client_.Next(reactor_);
    EXPECT_TRUE(reply.has_value()) << "the client got no reply";
    if (!reply) return {};
    return {reply->parent_id(), reply->metadata.value("status", ""), reply->content.value("ename", "")};
  }
  // What the control relay passes on of an abort_request.
  void SendAbort(const json& content) {
    protocol::Frames frames;
    frames.emplace_back(content.dump());
    protocol::Send(aborts_, std::move(frames));
  }
  // Publishes the hub's notification until `done` holds: a SUB hears a PUB only once its
  // subscription has arrived there.
  bool Notify(const std::string& msg_type, json content, const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      hub_.Send(msg_type, content);
      for (int i = 0; i < 20; ++i) {
        reactor_.run_once(1ms);
        if (done()) return true;
      }
    }
    return false;
  }

  zmq::context_t context_;
  Reactor reactor_{MakeLogger("test.reactor")};
  FakePeer hub_{context_, zmq::socket_type::pub, kKey};
  FakePeer monitor_{context_, zmq::socket_type::pull, kKey};
  zmq::socket_t aborts_{context_, zmq::socket_type::push};
  zmq::socket_t control_relay_{context_, zmq::socket_type::router};
  std::unique_ptr<TaskScheduler> scheduler_;
  FakePeer client_{context_, zmq::socket_type::dealer, kKey};
  std::vector<std::unique_ptr<FakePeer>> engines_;
};

TEST_F(TaskSchedulerTest, RoutesATaskToAnEngineAndItsResultBackReportingEachStep) {
  Start();
  FakePeer& engine = AddEngine("engine-a");
  std::string id = Submit();
  protocol::Message task = NextTask(engine);
  EXPECT_EQ(task.msg_id(), id);
  Answer(engine, task, "ok");
  EXPECT_EQ(NextReply(), std::make_tuple(id, std::string("ok"), std::string("")));

  // The hub hears of the request, where it went, and the result (before the client does).
  std::vector<std::string> topics;
  while (auto frames = monitor_.NextFrames(reactor_, topics.size() < 3 ? 5s : 0ms)) {
    topics.emplace_back(protocol::view(frames->front()));
    if (topics.back() == "tracktask") {
      EXPECT_EQ(protocol::view((*frames)[1]), id);
      EXPECT_EQ(protocol::view((*frames)[2]), "engine-a");
    }
  }
  EXPECT_EQ(topics, (std::vector<std::string>{"intask", "tracktask", "outtask"}));
}

TEST_F(TaskSchedulerTest, SendsATaskOnlyToItsTargets) {
  Start({.hwm = 0});
  FakePeer& a = AddEngine("engine-a");
  FakePeer& b = AddEngine("engine-b");
  for (int i = 0; i < 3; ++i) Submit({{"targets", {"engine-b"}}});
  std::string untargeted = Submit();
  for (int i = 0; i < 3; ++i) NextTask(b);
  // Least-loaded: the free engine gets the untargeted task, the targeted ones never reach it.
  EXPECT_EQ(NextTask(a).msg_id(), untargeted);
}

TEST_F(TaskSchedulerTest, RetriesAFailedTaskOnAnotherEngine) {
  Start();
  FakePeer& a = AddEngine("engine-a");
  FakePeer& b = AddEngine("engine-b");
  std::string id = Submit({{"retries", 1}});
  // Which engine gets it first is the policy's choice; the other must get the retry.
  auto [tried, first] = FirstTask({&a, &b});
  ASSERT_NE(tried, nullptr);
  Answer(*tried, first, "error");
  FakePeer& other = tried == &a ? b : a;
  protocol::Message retry = NextTask(other);
  EXPECT_EQ(retry.msg_id(), id);
  Answer(other, retry, "ok");
  EXPECT_EQ(NextReply(), std::make_tuple(id, std::string("ok"), std::string("")));
}

TEST_F(TaskSchedulerTest, ForwardsTheErrorOfAFailedTaskWithoutRetries) {
  Start();
  FakePeer& engine = AddEngine("engine-a");
  std::string id = Submit();
  Answer(engine, NextTask(engine), "error");
  EXPECT_EQ(NextReply(), std::make_tuple(id, std::string("error"), std::string("RuntimeError")));
}

TEST_F(TaskSchedulerTest, HoldsATaskUntilItsAfterDependencyEnds) {
  Start({.hwm = 0});
  FakePeer& engine = AddEngine("engine-a");
  std::string first = Submit();
  std::string dependent = Submit({{"after", {first}}});
  std::string independent = Submit();
  protocol::Message task = NextTask(engine);
  EXPECT_EQ(task.msg_id(), first);
  // Queued in submission order: the dependent task would have come before this one.
  EXPECT_EQ(NextTask(engine).msg_id(), independent);
  Answer(engine, task, "ok");
  EXPECT_EQ(NextTask(engine).msg_id(), dependent);
}

TEST_F(TaskSchedulerTest, FailsDependentsOfAFailedTaskAsImpossible) {
  Start({.hwm = 0});
  FakePeer& engine = AddEngine("engine-a");
  std::string first = Submit();
  std::string waiting = Submit({{"after", {first}}});
  Answer(engine, NextTask(engine), "error");
  EXPECT_EQ(NextReply(), std::make_tuple(first, std::string("error"), std::string("RuntimeError")));
  EXPECT_EQ(NextReply(), std::make_tuple(waiting, std::string("error"), std::string("ImpossibleDependency")));
  // Submitted after the failure: refused at once.
  std::string late = Submit({{"after", {first}}});
  EXPECT_EQ(NextReply(), std::make_tuple(late, std::string("error"), std::string("ImpossibleDependency")));
  // Depending on failure instead is met.
  std::string on_failure = Submit({{"after", {{"dependencies", {first}}, {"success", false}, {"failure", true}}}});
  EXPECT_EQ(NextTask(engine).msg_id(), on_failure);
}

TEST_F(TaskSchedulerTest, RefusesDependenciesItCannotUse) {
  Start();
  AddEngine("engine-a");
  std::string unknown = Submit({{"after", {"never-submitted"}}});
  EXPECT_EQ(NextReply(), std::make_tuple(unknown, std::string("error"), std::string("InvalidDependency")));
  std::string malformed = Submit({{"follow", 5}});
  EXPECT_EQ(NextReply(), std::make_tuple(malformed, std::string("error"), std::string("InvalidDependency")));
}

TEST_F(TaskSchedulerTest, FailsTargetsThatAreAllGoneAsImpossible) {
  Start();
  AddEngine("engine-a");
  std::string id = Submit({{"targets", {"engine-z"}}});
  EXPECT_EQ(NextReply(), std::make_tuple(id, std::string("error"), std::string("ImpossibleDependency")));
}

TEST_F(TaskSchedulerTest, FailsTheTasksOfAnEngineThatIsGoneWithEngineError) {
  Start({.stranded_grace = 10ms});
  FakePeer& engine = AddEngine("engine-a");
  std::string id = Submit();
  NextTask(engine);
  std::optional<protocol::Message> reply;
  ASSERT_TRUE(Notify("unregistration_notification", {{"uuid", "engine-a"}, {"id", 0}, {"reason", "test"}},
                     [&] { return (reply = client_.Next(reactor_, 0ms)).has_value(); }));
  EXPECT_EQ(reply->parent_id(), id);
  EXPECT_EQ(reply->content.value("ename", ""), "EngineError");
  EXPECT_NE(reply->content.value("evalue", "").find("engine-a"), std::string::npos);
}

TEST_F(TaskSchedulerTest, RetriesTheTasksOfAnEngineThatIsGoneElsewhere) {
  Start({.stranded_grace = 10ms});
  FakePeer& a = AddEngine("engine-a");
  std::string id = Submit({{"retries", 1}, {"targets", {"engine-a", "engine-b"}}});
  NextTask(a);
  FakePeer& b = AddEngine("engine-b");
  std::optional<protocol::Frames> retried;
  ASSERT_TRUE(Notify("unregistration_notification", {{"uuid", "engine-a"}},
                     [&] { return (retried = protocol::TryRecv(b.socket())).has_value(); }));
  EXPECT_EQ(b.session().parse(std::move(*retried))->msg_id(), id);
}

TEST_F(TaskSchedulerTest, RunsWaitingTasksOnAnEngineRegisteredLater) {
  Start();
  std::string id = Submit();
  FakePeer engine(context_, zmq::socket_type::dealer, kKey, "engine-late");
  engine.socket().connect("inproc://task-engines");
  std::optional<protocol::Frames> task;
  ASSERT_TRUE(Notify("registration_notification", {{"uuid", "engine-late"}, {"id", 3}},
                     [&] { return (task = protocol::TryRecv(engine.socket())).has_value(); }));
  EXPECT_EQ(engine.session().parse(std::move(*task))->msg_id(), id);
}

TEST_F(TaskSchedulerTest, RetriesElsewhereWhenAnEngineNeverConnects) {
  Start({.hwm = 0, .delivery_patience = 20ms});
  FakePeer& real = AddEngine("engine-real");
  scheduler_->AddEngine("engine-ghost");  // registered, socket never connected
  // Whichever engine each task goes to first, all of them reach the real one.
  std::set<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.insert(Submit());
  std::set<std::string> seen;
  while (seen.size() < ids.size()) {
    std::optional<protocol::Message> task = real.Next(reactor_);
    ASSERT_TRUE(task.has_value()) << seen.size() << " of " << ids.size() << " tasks arrived";
    seen.insert(task->msg_id());
  }
  EXPECT_EQ(seen, ids);
}

TEST_F(TaskSchedulerTest, TimesOutATaskThatWaitsTooLong) {
  Start();
  std::string id = Submit({{"timeout", 0.02}});
  EXPECT_EQ(NextReply(), std::make_tuple(id, std::string("error"), std::string("TaskTimeout")));
}

TEST_F(TaskSchedulerTest, AnswersAbortedWaitingTasksAsAborted) {
  Start();
  std::string waiting = Submit();
  // The refusal of a later request on the same socket shows the task has been taken in.
  std::string query = client_.Send("db_request")["msg_id"];
  EXPECT_EQ(std::get<0>(NextReply()), query);
  SendAbort({{"msg_ids", {waiting}}});
  EXPECT_EQ(NextReply(), std::make_tuple(waiting, std::string("aborted"), std::string("")));
  // Aborted before it arrives (the abort overtook it): answered when it does.
  protocol::Message early = client_.session().make("apply_request");
  std::string id = early.msg_id();
  SendAbort({{"msg_ids", id}});
  ASSERT_FALSE(client_.Next(reactor_, 0ms).has_value());
  client_.Send(std::move(early));
  EXPECT_EQ(NextReply(), std::make_tuple(id, std::string("aborted"), std::string("")));
}

TEST_F(TaskSchedulerTest, DropsUnsignedTasksAndRefusesOtherRequests) {
  Start();
  FakePeer& engine = AddEngine("engine-a");
  FakePeer stranger(context_, zmq::socket_type::dealer, "wrong-key");
  stranger.socket().connect("inproc://task-clients");
  stranger.Send("apply_request");
  std::string query = client_.Send("db_request", {{"query", json::object()}})["msg_id"];
  EXPECT_EQ(NextReply(), std::make_tuple(query, std::string("error"), std::string("InvalidRequest")));
  std::string id = Submit();
  EXPECT_EQ(NextTask(engine).msg_id(), id);  // the forged task never reached it
  EXPECT_FALSE(stranger.Next(reactor_, 0ms).has_value());
}

// ---------------------------------------------------------------------------------------------
// Routing by what engines can run (protocol/capabilities.hpp)

TEST_F(TaskSchedulerTest, SendsNativeWorkOnlyToNativeEnginesAndPythonWorkOnlyToPythonEngines) {
  Start({.hwm = 0});
  AddEngine("py-1");
  AddEngine("native-1", Native({"ipp.map", "ipp.shell", "pi.sample"}));
  AddEngine("py-2");
  AddEngine("native-2", Native({"ipp.map", "ipp.shell", "pi.sample"}));
  std::set<std::string> native, python;
  for (int i = 0; i < 10; ++i) {
    native.insert(SubmitCall("pi.sample"));
    python.insert(Submit());
    python.insert(SubmitExecute());                               // Python code
    native.insert(SubmitExecute({{"ipp_kind", "native"}}));       // a shell command
    python.insert(SubmitCall("pi.sample", {{"ipp_kind", "python"}}));  // the override wins
  }
  std::map<std::string, std::string> where = Collect(native.size() + python.size());
  std::set<std::string> native_engines, python_engines;
  for (const auto& [id, engine] : where) {
    if (native.count(id)) {
      EXPECT_EQ(engine.rfind("native-", 0), 0u) << "native task " << id << " went to " << engine;
      native_engines.insert(engine);
    } else {
      EXPECT_EQ(engine.rfind("py-", 0), 0u) << "Python task " << id << " went to " << engine;
      python_engines.insert(engine);
    }
  }
  // Each kind is still balanced over all of its engines.
  EXPECT_EQ(native_engines.size(), 2u);
  EXPECT_EQ(python_engines.size(), 2u);
}

TEST_F(TaskSchedulerTest, SendsACallOnlyToEnginesWithItsFunction) {
  Start({.hwm = 0});
  AddEngine("has-f", Native({"ipp.map", "f"}));
  AddEngine("has-g", Native({"ipp.map", "g"}));
  std::set<std::string> f, g;
  // In runs of one function, which the policy alone would spread over both engines.
  for (int i = 0; i < 6; ++i) f.insert(SubmitCall("f"));
  for (int i = 0; i < 6; ++i) g.insert(SubmitCall("g"));
  // ipp.map goes where the function it maps is.
  for (int i = 0; i < 6; ++i) f.insert(SubmitCall("ipp.map", json::object(), {{"function", "f"}, {"items", {1, 2}}}));
  for (int i = 0; i < 6; ++i) {
    g.insert(SubmitCall("ipp.map", json::object(), {{"function", "g"}, {"items", {"a \"quoted\" item"}}}));
  }
  for (const auto& [id, engine] : Collect(f.size() + g.size())) {
    EXPECT_EQ(engine, f.count(id) ? "has-f" : "has-g") << id;
  }
  // A function no engine has: the task waits, and the hub is told why.
  std::string missing = SubmitCall("h");
  EXPECT_EQ(NextWaiting(), std::make_pair(missing, std::string("an engine with function h")));
  EXPECT_FALSE(client_.Next(reactor_, 20ms).has_value());
}

class TaskRoutingBySchemeTest : public TaskSchedulerTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(TaskRoutingBySchemeTest, SendsRequiringTasksOnlyToEnginesThatMeetThemEvenWhenOthersAreFree) {
  Start({.scheme = GetParam(), .hwm = 1});
  FakePeer& plain = AddEngine("plain", Python({"cpu"}));
  FakePeer& gpu = AddEngine("gpu", Python({"gpu"}, {{"gpus", 2}}));
  AddEngine("one-gpu", Python({"gpu"}, {{"gpus", 1}}));
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Submit({{"requires", {"gpu", "gpus>=2"}}}));
  std::string anywhere = Submit({{"requires", "cpu"}});
  // One at a time (hwm 1) on the only engine that meets them, while the others stay free.
  for (const std::string& id : ids) {
    protocol::Message task = NextTask(gpu);
    EXPECT_EQ(task.msg_id(), id);
    if (task.msg_id() == anywhere) break;
    Answer(gpu, task, "ok");
    EXPECT_EQ(std::get<0>(NextReply()), id);
  }
  EXPECT_EQ(NextTask(plain).msg_id(), anywhere);
  EXPECT_FALSE(engines_[2]->Next(reactor_, 20ms).has_value()) << "a task went to the engine with 1 gpu";
}

INSTANTIATE_TEST_SUITE_P(EveryScheme, TaskRoutingBySchemeTest, ::testing::ValuesIn(PolicyNames()));

TEST_F(TaskSchedulerTest, RefusesBadRequirementsAndKindsWithValueError) {
  Start();
  AddEngine("engine-a");
  for (json bad : {json(5), json("gpu!"), json({"gpu", 2}), json("gpus>=many")}) {
    std::string id = Submit({{"requires", bad}});
    protocol::Message reply = NextReplyMessage();
    EXPECT_EQ(reply.parent_id(), id);
    EXPECT_EQ(reply.content.value("ename", ""), "ValueError") << bad.dump();
    EXPECT_NE(reply.content.value("evalue", "").find("require"), std::string::npos) << reply.content.dump();
  }
  std::string id = Submit({{"ipp_kind", "fortran"}});
  EXPECT_EQ(NextReply(), std::make_tuple(id, std::string("error"), std::string("ValueError")));
}

// One engine, one task at a time: a queue of waiting tasks, then the order they reach it.
TEST_F(TaskSchedulerTest, RunsWaitingTasksByPriorityThenInSubmissionOrder) {
  Start({.hwm = 1});
  FakePeer& engine = AddEngine("engine-a");
  std::string busy = Submit();
  protocol::Message running = NextTask(engine);
  ASSERT_EQ(running.msg_id(), busy);
  // A flood of default-priority work, then a low, two high and one more default task.
  std::vector<std::string> flood;
  for (int i = 0; i < 5; ++i) flood.push_back(Submit());
  std::string low = Submit({{"priority", -1}});
  std::string high1 = Submit({{"priority", 10}});
  std::string high2 = Submit({{"priority", 10}});
  std::string urgent = Submit({{"priority", 20}});
  std::string last = Submit({{"priority", 0}});
  std::vector<std::string> expected = {urgent, high1, high2};
  expected.insert(expected.end(), flood.begin(), flood.end());
  expected.push_back(last);
  expected.push_back(low);
  std::vector<std::string> order;
  for (size_t i = 0; i < expected.size(); ++i) {
    Answer(engine, running, "ok");
    running = NextTask(engine);
    order.push_back(running.msg_id());
  }
  EXPECT_EQ(order, expected);
}

TEST_F(TaskSchedulerTest, KeepsSubmissionOrderWithoutPriorities) {
  Start({.hwm = 1});
  FakePeer& engine = AddEngine("engine-a");
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(Submit());
  std::vector<std::string> order;
  for (size_t i = 0; i < ids.size(); ++i) {
    protocol::Message task = NextTask(engine);
    order.push_back(task.msg_id());
    Answer(engine, task, "ok");
  }
  EXPECT_EQ(order, ids);
}

// Parked work (no engine can run it yet) keeps its priority when an engine that can joins.
TEST_F(TaskSchedulerTest, UnparkedTasksRunByPriority) {
  Start({.hwm = 1});
  std::string low = SubmitCall("f");
  std::string high = SubmitCall("f", {{"priority", 3}});
  ASSERT_TRUE(NextWaiting().has_value());
  ASSERT_TRUE(NextWaiting().has_value());  // both parked
  FakePeer& engine = AddEngine("engine-n", Native({"f"}));
  protocol::Message first = NextTask(engine);
  EXPECT_EQ(first.msg_id(), high);
  Answer(engine, first, "ok");
  EXPECT_EQ(NextTask(engine).msg_id(), low);
}

TEST_F(TaskSchedulerTest, RefusesABadPriorityWithValueError) {
  Start();
  AddEngine("engine-a");
  for (json bad : {json("high"), json(1.5), json(true), json(1LL << 40)}) {
    std::string id = Submit({{"priority", bad}});
    protocol::Message reply = NextReplyMessage();
    EXPECT_EQ(reply.parent_id(), id);
    EXPECT_EQ(reply.content.value("ename", ""), "ValueError") << bad.dump();
    EXPECT_NE(reply.content.value("evalue", "").find("priority"), std::string::npos) << reply.content.dump();
  }
}

TEST_F(TaskSchedulerTest, RunsWaitingNativeWorkWhenANativeEngineRegisters) {
  Start();
  std::string id = SubmitCall("pi.sample");
  EXPECT_EQ(NextWaiting(), std::make_pair(id, std::string("an engine with function pi.sample")));
  // A Python engine registering is no help, nor a native one without the function: each gets
  // only the probe task submitted for it, which shows that it has registered.
  FakePeer& python = ConnectEngine("py-late");
  FakePeer& other = ConnectEngine("native-other");
  FakePeer& native = ConnectEngine("native-late");
  auto registers = [&](FakePeer& engine, json content, const std::string& probe) {
    std::optional<protocol::Frames> task;
    EXPECT_TRUE(Notify("registration_notification", std::move(content),
                       [&] { return (task = protocol::TryRecv(engine.socket())).has_value(); }));
    if (task) {
      EXPECT_EQ(engine.session().parse(std::move(*task))->msg_id(), probe);
    }
  };
  std::string probe = Submit();
  registers(python, {{"uuid", "py-late"}, {"id", 4}}, probe);
  probe = SubmitCall("ipp.map");
  registers(other, {{"uuid", "native-other"}, {"id", 5}, {"ipp", Native({"ipp.map"}).ToJson()}}, probe);
  registers(native, {{"uuid", "native-late"}, {"id", 6}, {"ipp", Native({"pi.sample"}).ToJson()}}, id);
  // The hub hears it no longer waits for a missing engine.
  std::vector<std::pair<std::string, std::string>> reports;
  while (auto report = NextWaiting(0ms)) reports.push_back(*report);
  EXPECT_NE(std::find(reports.begin(), reports.end(), std::make_pair(id, std::string())), reports.end());
  EXPECT_FALSE(protocol::TryRecv(python.socket()).has_value());
  EXPECT_FALSE(protocol::TryRecv(other.socket()).has_value());
}

TEST_F(TaskSchedulerTest, RunsWaitingWorkWhenAnEngineGainsTheFunction) {
  Start();
  FakePeer& engine = AddEngine("native", Native({"ipp.map"}));
  std::string id = SubmitCall("pi.sample", {{"requires", "gpu"}});
  EXPECT_EQ(NextWaiting(), std::make_pair(id, std::string("an engine with function pi.sample and tag gpu")));
  std::optional<protocol::Frames> task;
  // A plugin loaded at run time (ipp.load), on an engine with the tag.
  ASSERT_TRUE(Notify("ipp_engine_update",
                     {{"uuid", "native"}, {"id", 0}, {"ipp", Native({"ipp.map", "pi.sample"}, {"gpu"}).ToJson()}},
                     [&] { return (task = protocol::TryRecv(engine.socket())).has_value(); }));
  EXPECT_EQ(engine.session().parse(std::move(*task))->msg_id(), id);
}

TEST_F(TaskSchedulerTest, TimesOutWorkNoEngineCanRunSayingWhatItNeeds) {
  Start();
  AddEngine("py");
  std::string id = SubmitCall("pi.sample", {{"timeout", 0.02}});
  protocol::Message reply = NextReplyMessage();
  EXPECT_EQ(reply.parent_id(), id);
  EXPECT_EQ(reply.content.value("ename", ""), "TaskTimeout");
  EXPECT_EQ(reply.content.value("evalue", ""),
            "no engine that can run it connected within its timeout (needs an engine with function pi.sample)");
}

TEST_F(TaskSchedulerTest, RetriesAFailedTaskOnlyOnAnotherCapableEngine) {
  Start({.hwm = 0});
  AddEngine("py-1");
  FakePeer& a = AddEngine("native-a", Native({"f"}));
  AddEngine("py-2");
  FakePeer& b = AddEngine("native-b", Native({"f"}));
  std::string id = SubmitCall("f", {{"retries", 1}});
  auto [tried, first] = FirstTask({&a, &b});
  ASSERT_NE(tried, nullptr);
  Answer(*tried, first, "error");
  // The Python engines are free and first in line (least loaded, least recently used).
  FakePeer& other = tried == &a ? b : a;
  EXPECT_EQ(NextTask(other).msg_id(), id);
  EXPECT_FALSE(protocol::TryRecv(engines_[0]->socket()).has_value());
  EXPECT_FALSE(protocol::TryRecv(engines_[2]->socket()).has_value());
}

TEST_F(TaskSchedulerTest, AStrandedTaskWaitsForAnotherEngineWithItsFunction) {
  Start({.stranded_grace = 10ms});
  AddEngine("py");
  FakePeer& a = AddEngine("native-a", Native({"f"}));
  std::string id = SubmitCall("f", {{"retries", 1}});
  NextTask(a);
  // Its engine dies; the Python engine cannot take the retry: it waits.
  std::optional<std::pair<std::string, std::string>> waiting;
  ASSERT_TRUE(Notify("unregistration_notification", {{"uuid", "native-a"}, {"id", 1}},
                     [&] { return (waiting = NextWaiting(0ms)).has_value(); }));
  EXPECT_EQ(*waiting, std::make_pair(id, std::string("an engine with function f")));
  FakePeer& b = ConnectEngine("native-b");
  std::optional<protocol::Frames> task;
  ASSERT_TRUE(Notify("registration_notification", {{"uuid", "native-b"}, {"id", 2}, {"ipp", Native({"f"}).ToJson()}},
                     [&] { return (task = protocol::TryRecv(b.socket())).has_value(); }));
  EXPECT_EQ(b.session().parse(std::move(*task))->msg_id(), id);
  EXPECT_FALSE(protocol::TryRecv(engines_[0]->socket()).has_value()) << "the retry went to the Python engine";
}

}  // namespace
}  // namespace ipp::schedulers

namespace ipp::schedulers {
namespace {

// Adaptive prefetch (no hwm given): one task per engine until short tasks have been seen (their
// replies' "started" and date), then several; one long task brings it back to one.
class PrefetchSchedulerTest : public TaskSchedulerTest {
 protected:
  // Answers `task` as having run for `run`.
  void AnswerAfter(FakePeer& engine, const protocol::Message& task, std::chrono::microseconds run) {
    std::string started = protocol::Iso8601(protocol::WallClock::now() - run);
    engine.Reply(task, "apply_reply", {{"status", "ok"}}, {{"status", "ok"}, {"dependencies_met", true}, {"started", started}});
  }
  // Two native engines: engine-a has run 12 no-op tasks one by one, engine-b has just joined.
  std::pair<FakePeer&, FakePeer&> NativePair() {
    native_ = true;
    FakePeer& a = AddEngine("engine-a", Native({"ipp.echo"}));
    RunOneByOne(a, 12, 10us);
    return {a, AddEngine("engine-b", Native({"ipp.echo"}))};
  }
  // A task for a native engine (`native_`) or a Python one.
  std::string SubmitTask() { return native_ ? SubmitCall("ipp.echo") : Submit().get<std::string>(); }
  // Submits `n` tasks and returns how many reach `engine` while none is answered.
  size_t Outstanding(FakePeer& engine, int n) {
    for (int i = 0; i < n; ++i) held_.push_back(SubmitTask());
    size_t got = 0;
    for (int turn = 0; turn < 200; ++turn) {
      reactor_.run_once(1ms);
      while (auto frames = protocol::TryRecv(engine.socket())) {
        tasks_.push_back(std::move(engine.session().parse(std::move(*frames))).value());
        ++got;
      }
    }
    return got;
  }
  // Runs `n` tasks one after the other, each answered as having run for `run`, 20 ms after it
  // was sent: a round trip long enough that a loaded machine's scheduling stalls (a few ms under
  // the sanitizers) do not look like a task running long.
  void RunOneByOne(FakePeer& engine, int n, std::chrono::microseconds run) {
    for (int i = 0; i < n; ++i) {
      std::string id = SubmitTask();
      protocol::Message task = NextTask(engine);
      ASSERT_EQ(task.msg_id(), id);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      AnswerAfter(engine, task, run);
      ASSERT_EQ(std::get<1>(NextReply()), "ok");
    }
  }
  // Starts with one engine and runs `runs` ({count, run time} in turn) one by one; then how
  // many of 4 more tasks reach it while none is answered.
  size_t OutstandingAfter(TaskSchedulerOptions options, std::vector<std::pair<int, std::chrono::microseconds>> runs) {
    Start(options);
    FakePeer& engine = AddEngine("engine-a");
    for (auto [n, run] : runs) RunOneByOne(engine, n, run);
    return Outstanding(engine, 4);
  }
  std::vector<std::string> held_;
  std::vector<protocol::Message> tasks_;
  bool native_ = false;
};

TEST_F(PrefetchSchedulerTest, ShortTasksSeenLetAnEngineHoldSeveral) {
  Start();
  FakePeer& engine = AddEngine("engine-a");
  EXPECT_EQ(Outstanding(engine, 4), 1u);  // nothing seen yet: as hwm 1
  AnswerAfter(engine, tasks_.back(), 10us);
  for (int i = 0; i < 3; ++i) {  // the others follow one by one
    protocol::Message task = NextTask(engine);
    AnswerAfter(engine, task, 10us);
  }
  for (int i = 0; i < 4; ++i) NextReply();
  RunOneByOne(engine, 8, 10us);
  EXPECT_GT(Outstanding(engine, 6), 1u);
}

TEST_F(PrefetchSchedulerTest, LongTasksKeepOneTaskPerEngine) {
  EXPECT_EQ(OutstandingAfter({}, {{12, 100ms}}), 1u);
}

TEST_F(PrefetchSchedulerTest, AGivenHwmOfOneIsKeptWhateverTheTasks) {
  EXPECT_EQ(OutstandingAfter({.hwm = 1}, {{12, 10us}}), 1u);
}

TEST_F(PrefetchSchedulerTest, OneLongTaskBringsTheDepthBackToOne) {
  EXPECT_EQ(OutstandingAfter({}, {{12, 10us}, {1, 2s}}), 1u);
}

// Tasks far shorter than the round trip go to an engine already awake with room, not one task
// to each idle engine (plain leastload would give engine-b one).
TEST_F(PrefetchSchedulerTest, ShortTasksFillAnEngineBeforeWakingAnother) {
  Start({}, /*control=*/true);
  auto [a, b] = NativePair();
  EXPECT_EQ(Outstanding(a, 6), 6u);
  EXPECT_FALSE(protocol::TryRecv(b.socket()).has_value());
}

// Work stealing takes queued tasks back only from our engines: with stock (Python) engines, or
// without a control relay, short tasks are spread as plain leastload does, so a
// burst of long ones never queues behind another where it could not be taken back.
TEST_F(PrefetchSchedulerTest, WithStockEnginesShortTasksAreSpread) {
  Start({}, /*control=*/true);
  FakePeer& a = AddEngine("python-a");
  RunOneByOne(a, 12, 10us);
  FakePeer& b = AddEngine("python-b");
  // Engine-b, new, holds one (the adaptive depth of an engine that answered none).
  EXPECT_EQ(Outstanding(a, 6), 5u);
  EXPECT_TRUE(protocol::TryRecv(b.socket()).has_value());
}

TEST_F(PrefetchSchedulerTest, WithoutAControlRelayShortTasksAreSpread) {
  Start();
  auto [a, b] = NativePair();
  EXPECT_EQ(Outstanding(a, 6), 5u);
  EXPECT_TRUE(protocol::TryRecv(b.socket()).has_value());
}

TEST_F(PrefetchSchedulerTest, AGivenHwmSpreadsAsLeastloadDoes) {
  Start({.hwm = 0});
  FakePeer& a = AddEngine("engine-a");
  RunOneByOne(a, 12, 10us);
  FakePeer& b = AddEngine("engine-b");
  EXPECT_EQ(Outstanding(a, 6), 3u);
  size_t on_b = 0;
  for (int turn = 0; turn < 50 && on_b < 3; ++turn) {
    reactor_.run_once(1ms);
    while (protocol::TryRecv(b.socket())) ++on_b;
  }
  EXPECT_EQ(on_b, 3u);
}

// Only the first task sent to an engine can have started there: the others it held only waited,
// and when it dies they run elsewhere instead of failing with it.
TEST_F(PrefetchSchedulerTest, TasksQueuedOnAnEngineThatDiesRunElsewhere) {
  Start({.stranded_grace = 10ms});
  FakePeer& a = AddEngine("engine-a");
  RunOneByOne(a, 12, 10us);
  size_t held = Outstanding(a, 5);
  ASSERT_GT(held, 1u);
  FakePeer& b = AddEngine("engine-b");
  std::optional<protocol::Message> failed;
  ASSERT_TRUE(Notify("unregistration_notification", {{"uuid", "engine-a"}, {"id", 0}, {"reason", "test"}},
                     [&] { return (failed = client_.Next(reactor_, 0ms)).has_value(); }));
  EXPECT_EQ(failed->parent_id(), tasks_[0].msg_id());  // the one that may have started
  EXPECT_EQ(failed->content.value("ename", ""), "EngineError");
  std::set<std::string> rerun;
  for (int turn = 0; turn < 500 && rerun.size() < held - 1; ++turn) {
    reactor_.run_once(1ms);
    while (auto frames = protocol::TryRecv(b.socket())) {
      protocol::Message task = std::move(b.session().parse(std::move(*frames))).value();
      rerun.insert(task.msg_id());
      AnswerAfter(b, task, 10us);  // engine-b is new: it holds one task at a time
    }
  }
  for (size_t i = 1; i < held; ++i) EXPECT_EQ(rerun.count(tasks_[i].msg_id()), 1u) << i;
}

}  // namespace
}  // namespace ipp::schedulers

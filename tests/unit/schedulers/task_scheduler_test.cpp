#include "schedulers/task_scheduler.hpp"

#include <functional>
#include <set>
#include <tuple>

#include <gtest/gtest.h>

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
  void Start(TaskSchedulerOptions options = {}) {
    options.seed = 7;
    scheduler_ = std::make_unique<TaskScheduler>(context_, kKey, options, MakeLogger("test.task"));
    scheduler_->client_socket().bind("inproc://task-clients");
    scheduler_->engine_socket().bind("inproc://task-engines");
    hub_.socket().bind("inproc://task-notifications");
    monitor_.socket().bind("inproc://task-monitor");
    scheduler_->Connect("inproc://task-notifications", "inproc://task-monitor");
    scheduler_->ListenForAborts("inproc://task-aborts");
    aborts_.connect("inproc://task-aborts");
    scheduler_->Attach(reactor_);
    client_.socket().connect("inproc://task-clients");
  }
  // An engine whose task socket is connected, known to the scheduler as already registered.
  FakePeer& AddEngine(const std::string& uuid) {
    engines_.push_back(std::make_unique<FakePeer>(context_, zmq::socket_type::dealer, kKey, uuid));
    engines_.back()->socket().connect("inproc://task-engines");
    scheduler_->AddEngine(uuid);
    return *engines_.back();
  }
  json Submit(json metadata = json::object()) {
    return client_.Send("apply_request", json::object(), std::move(metadata))["msg_id"];
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
  protocol::Message first;
  FakePeer* tried = nullptr;
  for (int i = 0; i < 5000 && !tried; ++i) {
    reactor_.run_once(1ms);
    for (FakePeer* e : {&a, &b}) {
      if (auto frames = protocol::TryRecv(e->socket())) {
        first = e->session().parse(std::move(*frames)).value();
        tried = e;
      }
    }
  }
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

}  // namespace
}  // namespace ipp::schedulers

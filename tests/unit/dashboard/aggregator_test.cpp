// The dashboard's Aggregator: engine states, task accounting, bounded rings, p99, and the API
// documents built from its snapshots.
#include "dashboard/aggregator.hpp"

#include <gtest/gtest.h>

#include "dashboard/api.hpp"
#include "protocol/clock.hpp"
#include "protocol/session.hpp"

namespace ipp::dashboard {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class AggregatorTest : public ::testing::Test {
 protected:
  protocol::RawMessage Raw(protocol::Message m) {
    Result<protocol::RawMessage> raw = protocol::RawMessage::FromFrames(session_.serialize(std::move(m)));
    EXPECT_TRUE(raw.ok());
    return std::move(raw).value();
  }
  // Submits a native call of `function`; returns its msg_id.
  std::string Submit(Aggregator& a, const std::string& function, const std::string& queue = "task",
                     const std::string& engine = "", json metadata = json::object()) {
    protocol::Message m = session_.make("apply_request", {{"ipp_call", {{"function", function}, {"args", json::array()}}}});
    m.metadata = std::move(metadata);
    std::string id = m.msg_id();
    protocol::RawMessage raw = Raw(std::move(m));
    a.TaskSubmitted(raw, queue, engine);
    return id;
  }
  void Reply(Aggregator& a, const std::string& msg_id, const std::string& engine, const std::string& status = "ok",
             std::chrono::milliseconds took = 10ms) {
    json content = {{"status", status}};
    if (status == "error") content.update({{"ename", "ValueError"}, {"evalue", "bad"}, {"traceback", {"line 1", "line 2"}}});
    auto done = protocol::WallClock::now();
    const std::string text = content.dump();
    a.TaskReplied({msg_id, status, engine, done - took, done, text});
  }
  static protocol::Capabilities Native(const std::string& host, long pid) {
    protocol::Capabilities c;
    c.kind = protocol::EngineKind::kNative;
    c.functions = {"pi.sample", "ipp.info"};
    c.tags = {"gpu"};
    c.hostname = host;
    c.pid = pid;
    return c;
  }
  // Publishes whatever changed: each call a period later than the previous one.
  std::shared_ptr<const Snapshot> Publish(Aggregator& a) {
    later_ += 1s;
    a.Publish(later_);
    return a.snapshot();
  }
  Clock::time_point later_ = Clock::now();

  protocol::Session session_{"key"};
};

TEST_F(AggregatorTest, EnginesGoIdleBusyIdleThenDeadOrGoneAndStayListed) {
  Aggregator a;
  a.EngineRegistered(0, "u0", Native("h0", 42));
  a.EngineRegistered(1, "u1", std::nullopt);
  json engines = EnginesJson(*Publish(a), Clock::now());
  ASSERT_EQ(engines.size(), 2u);
  EXPECT_EQ(engines[0]["kind"], "native");
  EXPECT_EQ(engines[0]["host"], "h0");
  EXPECT_EQ(engines[0]["pid"], 42);
  EXPECT_EQ(engines[0]["functions"], 2);
  EXPECT_EQ(engines[0]["tags"], json({"gpu"}));
  EXPECT_EQ(engines[1]["kind"], "python");
  EXPECT_TRUE(engines[1]["host"].is_null());
  EXPECT_TRUE(engines[1]["pid"].is_null());
  EXPECT_EQ(engines[0]["state"], "idle");

  std::string t = Submit(a, "pi.sample");
  EXPECT_EQ(Publish(a)->counters.queued_lb, 1u);
  a.TaskAssigned(t, "u0");
  std::shared_ptr<const Snapshot> s = Publish(a);
  engines = EnginesJson(*s, Clock::now());
  EXPECT_EQ(engines[0]["state"], "busy");
  EXPECT_EQ(engines[0]["task"]["msg_id"], t);
  EXPECT_EQ(engines[0]["task"]["function"], "pi.sample");
  EXPECT_EQ(engines[0]["queue"], 1);
  EXPECT_EQ(s->counters.running, 1u);
  EXPECT_EQ(s->counters.queued_lb, 0u);

  Reply(a, t, "u0");
  s = Publish(a);
  engines = EnginesJson(*s, Clock::now());
  EXPECT_EQ(engines[0]["state"], "idle");
  EXPECT_TRUE(engines[0]["task"].is_null());
  EXPECT_EQ(engines[0]["done"], 1);
  EXPECT_EQ(s->counters.done, 1u);
  EXPECT_EQ(s->counters.running, 0u);

  a.EngineLeft("u0", true, "it stopped answering heartbeats (3 missed)");
  a.EngineLeft("u1", false, "it asked to leave");
  engines = EnginesJson(*Publish(a), Clock::now());
  ASSERT_EQ(engines.size(), 2u);
  EXPECT_EQ(engines[0]["state"], "dead");
  EXPECT_EQ(engines[0]["death"], "it stopped answering heartbeats (3 missed)");
  EXPECT_TRUE(engines[0]["death_log"].is_null());
  EXPECT_EQ(engines[1]["state"], "gone");
  // Its launcher tells how its process ended, after the heartbeats had stopped.
  a.EngineDeath("u0", "its process killed (SIGKILL; possibly out of memory)", "allocating\n");
  a.EngineDeath("u-unknown", "its process exited with status 1", "");
  engines = EnginesJson(*Publish(a), Clock::now());
  ASSERT_EQ(engines.size(), 2u);
  EXPECT_EQ(engines[0]["death"], "its process killed (SIGKILL; possibly out of memory)");
  EXPECT_EQ(engines[0]["death_log"], "allocating\n");
}

TEST_F(AggregatorTest, TasksOfADeadEngineStopRunningAndCountWhereTheyFinish) {
  Aggregator a;
  a.EngineRegistered(0, "u0", std::nullopt);
  a.EngineRegistered(1, "u1", std::nullopt);
  std::string t = Submit(a, "pi.sample");
  a.TaskAssigned(t, "u0");
  EXPECT_EQ(Publish(a)->counters.running, 1u);
  a.EngineLeft("u0", true, "it stopped answering heartbeats");
  EXPECT_EQ(Publish(a)->counters.running, 0u);
  a.TaskAssigned(t, "u1");  // resubmitted by the scheduler
  EXPECT_EQ(Publish(a)->counters.running, 1u);
  Reply(a, t, "u1");
  std::shared_ptr<const Snapshot> s = Publish(a);
  EXPECT_EQ(s->counters.running, 0u);
  EXPECT_EQ(s->counters.done, 1u);
  EXPECT_EQ(s->engines[1].done, 1u);
  EXPECT_EQ(s->engines[0].done, 0u);
}

TEST_F(AggregatorTest, ATaskGivenBackIsQueuedAgainUntilItsNextEngine) {
  Aggregator a;
  a.EngineRegistered(0, "u0", std::nullopt);
  a.EngineRegistered(1, "u1", std::nullopt);
  std::string t = Submit(a, "pi.sample");
  a.TaskAssigned(t, "u0");
  a.TaskAssigned(t, "");  // work stealing: the scheduler took it back
  std::shared_ptr<const Snapshot> s = Publish(a);
  EXPECT_EQ(s->counters.running, 0u);
  EXPECT_EQ(s->counters.queued_lb, 1u);
  EXPECT_EQ(EnginesJson(*s, Clock::now())[0]["state"], "idle");
  a.TaskAssigned(t, "u1");
  s = Publish(a);
  EXPECT_EQ(s->counters.running, 1u);
  EXPECT_EQ(s->counters.queued_lb, 0u);
  Reply(a, t, "u1");
  s = Publish(a);
  EXPECT_EQ(s->counters.running, 0u);
  EXPECT_EQ(s->counters.done, 1u);
}

TEST_F(AggregatorTest, FailuresAreCountedAndListedWithTheirTraceback) {
  Aggregator a;
  a.EngineRegistered(3, "u3", Native("h", 1));
  std::string t = Submit(a, "fail.always", "mux", "u3");
  Reply(a, t, "u3", "error");
  std::shared_ptr<const Snapshot> s = Publish(a);
  json stats = StatsJson(*s, Clock::now());
  EXPECT_EQ(stats["counters"]["failed"], 1);
  EXPECT_EQ(stats["counters"]["done"], 1);
  ASSERT_EQ(stats["failures"].size(), 1u);
  EXPECT_EQ(stats["failures"][0]["engine"], 3);
  EXPECT_EQ(stats["failures"][0]["function"], "fail.always");
  EXPECT_EQ(stats["failures"][0]["ename"], "ValueError");
  EXPECT_EQ(stats["failures"][0]["evalue"], "bad");
  EXPECT_EQ(stats["failures"][0]["traceback"], json({"line 1", "line 2"}));
  EXPECT_EQ(EnginesJson(*s, Clock::now())[0]["failed"], 1);
  json tasks = TasksJson(*s, 0, Clock::now());
  ASSERT_EQ(tasks["tasks"].size(), 1u);
  EXPECT_EQ(tasks["tasks"][0]["status"], "error");
  EXPECT_EQ(tasks["tasks"][0]["engine"], 3);
}

TEST_F(AggregatorTest, ATaskLostWithItsEngineIsAFailureOfThatEngine) {
  Aggregator a;
  a.EngineRegistered(0, "u0", Native("h", 1));
  a.EngineRegistered(4, "u4", Native("h", 2));
  std::string t = Submit(a, "pi.sample", "mux", "u4");
  a.TaskAssigned(t, "u4");
  a.EngineLeft("u4", true, "it stopped answering heartbeats");
  a.TaskLost(t, "EngineError", "Engine 4 died while running task");
  json stats = StatsJson(*Publish(a), Clock::now());
  ASSERT_EQ(stats["failures"].size(), 1u);
  EXPECT_EQ(stats["failures"][0]["engine"], 4) << stats["failures"];
  EXPECT_EQ(stats["failures"][0]["ename"], "EngineError");
  // Never assigned: no engine to name.
  std::string waiting = Submit(a, "pi.sample");
  a.TaskLost(waiting, "ImpossibleDependency", "no engine");
  stats = StatsJson(*Publish(a), Clock::now());
  ASSERT_EQ(stats["failures"].size(), 2u);
  EXPECT_TRUE(stats["failures"][1]["engine"].is_null()) << stats["failures"];
}

TEST_F(AggregatorTest, AnEngineUpdateChangesItsFunctionsAndTagsOnly) {
  Aggregator a;
  a.EngineRegistered(2, "u2", Native("h", 7));
  std::string t = Submit(a, "pi.sample", "mux", "u2");
  a.TaskAssigned(t, "u2");
  protocol::Capabilities more = Native("h", 7);
  more.functions.insert("vec.sum");
  more.tags = {"gpu", "big"};
  a.EngineUpdated("u2", more);
  json engine = EnginesJson(*Publish(a), Clock::now())[0];
  EXPECT_EQ(engine["functions"], 3) << engine;
  EXPECT_EQ(engine["tags"].size(), 2u) << engine;
  EXPECT_EQ(engine["state"], "busy") << engine;
  a.EngineUpdated("nobody", more);  // an engine it does not know: nothing happens
}

TEST_F(AggregatorTest, AbortedTasksAreCountedApartFromDoneOnes) {
  Aggregator a;
  a.EngineRegistered(0, "u0", Native("h", 1));
  std::string done = Submit(a, "pi.sample");
  a.TaskAssigned(done, "u0");
  Reply(a, done, "u0");
  std::string aborted = Submit(a, "pi.sample");
  Reply(a, aborted, "", "aborted");
  json counters = StatsJson(*Publish(a), Clock::now())["counters"];
  EXPECT_EQ(counters["submitted"], 2) << counters;
  EXPECT_EQ(counters["done"], 1) << counters;
  EXPECT_EQ(counters["aborted"], 1) << counters;
}

TEST_F(AggregatorTest, RingsStayBounded) {
  Limits limits;
  limits.tasks = 512;
  limits.failures = 5;
  limits.engines = 3;
  limits.functions = 2;
  limits.durations = 8;
  Aggregator a(limits);
  for (int i = 0; i < 6; ++i) {
    a.EngineRegistered(i, "u" + std::to_string(i), std::nullopt);
    if (i >= 1) a.EngineLeft("u" + std::to_string(i - 1), true, "dead");
  }
  for (int i = 0; i < 2000; ++i) {
    std::string t = Submit(a, "f" + std::to_string(i % 4), "mux", "u5");
    Reply(a, t, "u5", i % 2 ? "error" : "ok");
  }
  std::shared_ptr<const Snapshot> s = Publish(a);
  EXPECT_EQ(s->engines.size(), 3u);             // the live one and the two latest dead
  EXPECT_EQ(s->engines.back().id, 5);
  EXPECT_EQ(s->engines.front().id, 3);
  json tasks = TasksJson(*s, 0, Clock::now())["tasks"];
  EXPECT_LE(tasks.size(), 512u + 256u);  // the frozen ring plus the chunk being filled
  EXPECT_GE(tasks.size(), 512u);
  EXPECT_EQ(tasks.back()["seq"], 2000);
  EXPECT_EQ(s->last_seq, 2000u);
  EXPECT_EQ(s->failures.size(), 5u);
  EXPECT_EQ(s->functions.size(), 3u);  // f0, f1 and "other"
  EXPECT_EQ(s->counters.done, 2000u);
  EXPECT_EQ(s->counters.failed, 1000u);
  // Only what came after `since`.
  EXPECT_EQ(TasksJson(*s, 1990, Clock::now())["tasks"].size(), 10u);
}

TEST_F(AggregatorTest, PercentileIsTheNearestRank) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 99), 99);
  EXPECT_EQ(Percentile(v, 50), 50);
  std::vector<double> one = {7};
  EXPECT_EQ(Percentile(one, 99), 7);
  std::vector<double> none;
  EXPECT_EQ(Percentile(none, 99), 0);
}

TEST_F(AggregatorTest, FunctionStatisticsHaveMeanAndP99) {
  Aggregator a;
  a.EngineRegistered(0, "u0", std::nullopt);
  for (int i = 1; i <= 100; ++i) Reply(a, Submit(a, "pi.sample", "mux", "u0"), "u0", "ok", std::chrono::milliseconds(i));
  json functions = StatsJson(*Publish(a), Clock::now())["functions"];
  ASSERT_EQ(functions.size(), 1u);
  EXPECT_EQ(functions[0]["name"], "pi.sample");
  EXPECT_EQ(functions[0]["count"], 100);
  EXPECT_NEAR(functions[0]["mean_ms"].get<double>(), 50.5, 0.5);
  EXPECT_NEAR(functions[0]["p99_ms"].get<double>(), 99, 0.5);
}

TEST_F(AggregatorTest, DependentTasksWaitAndClientsAreCounted) {
  Aggregator a;
  a.EngineRegistered(0, "u0", std::nullopt);
  std::string waiting = Submit(a, "pi.sample", "task", "", {{"after", {"some-id"}}});
  Submit(a, "pi.sample");
  std::shared_ptr<const Snapshot> s = Publish(a);
  EXPECT_EQ(s->counters.waiting_deps, 1u);
  EXPECT_EQ(s->counters.queued_lb, 1u);
  EXPECT_EQ(s->counters.submitted, 2u);
  ASSERT_EQ(s->clients.size(), 1u);
  EXPECT_EQ(s->clients[0].second, 2u);
  a.TaskAssigned(waiting, "u0");
  EXPECT_EQ(Publish(a)->counters.waiting_deps, 0u);
}

TEST_F(AggregatorTest, PublishesAtMostOncePerPeriod) {
  Clock::time_point start = Clock::now();
  Aggregator a(Limits{}, start);
  std::shared_ptr<const Snapshot> first = a.snapshot();
  a.EngineRegistered(0, "u0", std::nullopt);
  a.Publish(start + 100ms);
  EXPECT_EQ(a.snapshot(), first);  // too soon
  a.Publish(start + 300ms);
  EXPECT_NE(a.snapshot(), first);
  EXPECT_EQ(a.snapshot()->engines.size(), 1u);
}

}  // namespace
}  // namespace ipp::dashboard

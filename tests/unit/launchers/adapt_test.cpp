#include "launchers/adapt.hpp"

#include <gtest/gtest.h>

namespace ipp::launchers {
namespace {

using namespace std::chrono_literals;
using Clock = AdaptSnapshot::Clock;

const Clock::time_point kNow = Clock::time_point{} + 1h;

AdaptLimits Limits() {
  return {.min_engines = 0, .max_engines = 64, .engines_per_job = 8, .idle_timeout = 300s, .max_queued_jobs = 2, .max_failed_jobs = 3};
}

AdaptSnapshot::Engine Busy(const std::string& job) { return {job, std::nullopt}; }
AdaptSnapshot::Engine Idle(const std::string& job, std::chrono::seconds for_) { return {job, kNow - for_}; }
AdaptSnapshot::Job Running(const std::string& id, int engines = 8) { return {id, JobState::kRunning, engines, kNow - 1h}; }
AdaptSnapshot::Job Queued(const std::string& id, std::chrono::seconds for_ = 10s, int engines = 8) {
  return {id, JobState::kQueued, engines, kNow - for_};
}

AdaptSnapshot Snapshot(int waiting, std::vector<AdaptSnapshot::Engine> engines = {}, std::vector<AdaptSnapshot::Job> jobs = {}) {
  AdaptSnapshot s;
  s.now = kNow;
  s.waiting_tasks = waiting;
  s.engines = std::move(engines);
  s.jobs = std::move(jobs);
  return s;
}

TEST(AdaptPolicyTest, NothingWaitingAndNoMinimumSubmitsNothing) {
  AdaptDecision d = AdaptPolicy(Limits()).Decide(Snapshot(0));
  EXPECT_TRUE(d.submit.empty());
  EXPECT_TRUE(d.cancel.empty());
  EXPECT_TRUE(d.stopped.empty());
}

TEST(AdaptPolicyTest, WaitingTasksSubmitJobsOfEnginesPerJobUpToTheQueuedJobLimit) {
  // 200 tasks want 200 engines: capped by the backlog of 2 queued jobs of 8, not one job per
  // engine and not one giant job.
  EXPECT_EQ(AdaptPolicy(Limits()).Decide(Snapshot(200)).submit, (std::vector<int>{8, 8}));
  // A few tasks: one job is enough.
  EXPECT_EQ(AdaptPolicy(Limits()).Decide(Snapshot(3)).submit, (std::vector<int>{8}));
}

TEST(AdaptPolicyTest, QueuedJobsCountAgainstTheBacklogAndTheirEnginesAgainstTheDemand) {
  // Two jobs already wait in the queue: no more, however many tasks wait.
  auto s = Snapshot(200, {}, {Queued("1"), Queued("2")});
  EXPECT_TRUE(AdaptPolicy(Limits()).Decide(s).submit.empty());
  // One queued job of 8 covers 5 waiting tasks.
  EXPECT_TRUE(AdaptPolicy(Limits()).Decide(Snapshot(5, {}, {Queued("1")})).submit.empty());
  // Running jobs do not use the backlog: 2 more while their engines are all busy.
  std::vector<AdaptSnapshot::Engine> busy(8, Busy("1"));
  EXPECT_EQ(AdaptPolicy(Limits()).Decide(Snapshot(200, busy, {Running("1")})).submit, (std::vector<int>{8, 8}));
}

TEST(AdaptPolicyTest, IdleEnginesTakeWaitingTasksBeforeNewJobs) {
  std::vector<AdaptSnapshot::Engine> engines(8, Idle("1", 1s));
  EXPECT_TRUE(AdaptPolicy(Limits()).Decide(Snapshot(8, engines, {Running("1")})).submit.empty());
  EXPECT_EQ(AdaptPolicy(Limits()).Decide(Snapshot(9, engines, {Running("1")})).submit, (std::vector<int>{8}));
}

TEST(AdaptPolicyTest, NeverAboveTheMaximumAndTheLastJobIsSmaller) {
  AdaptLimits l = Limits();
  l.max_engines = 20;
  l.max_queued_jobs = 10;
  EXPECT_EQ(AdaptPolicy(l).Decide(Snapshot(1000)).submit, (std::vector<int>{8, 8, 4}));
  // Engines started outside our jobs count too.
  std::vector<AdaptSnapshot::Engine> engines(18, Busy(""));
  EXPECT_EQ(AdaptPolicy(l).Decide(Snapshot(1000, engines)).submit, (std::vector<int>{2}));
  engines.resize(20, Busy(""));
  EXPECT_TRUE(AdaptPolicy(l).Decide(Snapshot(1000, engines)).submit.empty());
}

TEST(AdaptPolicyTest, TheMinimumIsSubmittedWithoutWorkAndKept) {
  AdaptLimits l = Limits();
  l.min_engines = 10;
  EXPECT_EQ(AdaptPolicy(l).Decide(Snapshot(0)).submit, (std::vector<int>{8, 8}));
  // Idle for long: only the job above the minimum goes.
  l.min_engines = 8;
  std::vector<AdaptSnapshot::Engine> engines(8, Idle("1", 1000s));
  engines.resize(16, Idle("2", 1000s));
  AdaptDecision d = AdaptPolicy(l).Decide(Snapshot(0, engines, {Running("1"), Running("2")}));
  EXPECT_EQ(d.cancel, (std::vector<std::string>{"1"}));
  EXPECT_TRUE(d.submit.empty());
}

TEST(AdaptPolicyTest, CancelsAJobOnlyWhenAllItsEnginesHaveBeenIdlePastTheTimeout) {
  std::vector<AdaptSnapshot::Engine> engines(7, Idle("1", 400s));
  engines.push_back(Idle("1", 200s));
  engines.resize(16, Idle("2", 301s));
  AdaptDecision d = AdaptPolicy(Limits()).Decide(Snapshot(0, engines, {Running("1"), Running("2")}));
  EXPECT_EQ(d.cancel, (std::vector<std::string>{"2"}));
  // One busy engine keeps its job.
  engines[15] = Busy("2");
  EXPECT_TRUE(AdaptPolicy(Limits()).Decide(Snapshot(0, engines, {Running("1"), Running("2")})).cancel.empty());
}

TEST(AdaptPolicyTest, NoCancellationWhileTasksWait) {
  std::vector<AdaptSnapshot::Engine> engines(8, Idle("1", 1000s));
  EXPECT_TRUE(AdaptPolicy(Limits()).Decide(Snapshot(1, engines, {Running("1")})).cancel.empty());
}

TEST(AdaptPolicyTest, ARunningJobWhoseEnginesHaveNotRegisteredIsKept) {
  EXPECT_TRUE(AdaptPolicy(Limits()).Decide(Snapshot(0, {}, {Running("1")})).cancel.empty());
}

TEST(AdaptPolicyTest, AQueuedJobNothingWaitedForSinceTheTimeoutIsCancelled) {
  EXPECT_TRUE(AdaptPolicy(Limits()).Decide(Snapshot(0, {}, {Queued("1", 100s)})).cancel.empty());
  EXPECT_EQ(AdaptPolicy(Limits()).Decide(Snapshot(0, {}, {Queued("1", 300s)})).cancel, (std::vector<std::string>{"1"}));
}

TEST(AdaptPolicyTest, AJobThatEndedWhileWorkRemainsIsReplaced) {
  // Job "2" ended (walltime, scancel): its engines are gone from the snapshot, its tasks wait.
  std::vector<AdaptSnapshot::Engine> engines(8, Busy("1"));
  EXPECT_EQ(AdaptPolicy(Limits()).Decide(Snapshot(30, engines, {Running("1")})).submit, (std::vector<int>{8, 8}));
}

TEST(AdaptPolicyTest, StopsSubmittingAfterFailuresInARowAndSaysWhy) {
  AdaptSnapshot s = Snapshot(200);
  s.failures_in_a_row = 2;
  EXPECT_FALSE(AdaptPolicy(Limits()).Decide(s).submit.empty());
  s.failures_in_a_row = 3;
  AdaptDecision d = AdaptPolicy(Limits()).Decide(s);
  EXPECT_TRUE(d.submit.empty());
  EXPECT_EQ(d.stopped, "3 job submissions in a row failed or ended before any engine registered (--max-failed-jobs 3); not submitting more jobs");
  // Idle jobs are still cancelled.
  std::vector<AdaptSnapshot::Engine> engines(8, Idle("1", 1000s));
  AdaptSnapshot idle = Snapshot(0, engines, {Running("1")});
  idle.failures_in_a_row = 3;
  EXPECT_EQ(AdaptPolicy(Limits()).Decide(idle).cancel, (std::vector<std::string>{"1"}));
}

}  // namespace
}  // namespace ipp::launchers

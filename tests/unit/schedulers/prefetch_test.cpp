#include "schedulers/prefetch.hpp"

#include <gtest/gtest.h>

namespace ipp::schedulers {
namespace {

using namespace std::chrono_literals;

// `n` tasks of `run` each, every one sent to an idle engine, with a round trip of `round_trip`.
TaskTimings Seen(int n, Micros run, Micros round_trip) {
  TaskTimings t;
  for (int i = 0; i < n; ++i) t.Observe(run, round_trip);
  return t;
}

TEST(PrefetchTest, AGivenHwmIsAFixedDepthAndZeroIsUnlimited) {
  TaskTimings short_tasks = Seen(100, 10us, 200us);
  EXPECT_EQ(MakePrefetch(1)->Depth(short_tasks, 50, 0us), 1);
  EXPECT_EQ(MakePrefetch(3)->Depth(TaskTimings{}, 0, 10s), 3);
  EXPECT_EQ(MakePrefetch(0)->Depth(short_tasks, 50, 0us), Prefetch::kUnlimited);
}

TEST(PrefetchTest, WithoutEvidenceOfShortTasksAnEngineHoldsOneTask) {
  auto adaptive = MakePrefetch(std::nullopt);
  EXPECT_EQ(adaptive->Depth(TaskTimings{}, 0, 0us), 1);
  EXPECT_EQ(adaptive->Depth(Seen(3, 10us, 200us), 3, 0us), 1);     // too few tasks seen
  EXPECT_EQ(adaptive->Depth(Seen(100, 10us, 200us), 0, 0us), 1);   // this engine answered none yet
  TaskTimings no_round_trip;
  for (int i = 0; i < 100; ++i) no_round_trip.Observe(10us, std::nullopt);
  EXPECT_EQ(adaptive->Depth(no_round_trip, 50, 0us), 1);
  EXPECT_EQ(adaptive->Depth(Seen(100, 1s, 200us), 50, 0us), 1);    // long tasks
  EXPECT_EQ(adaptive->Depth(Seen(100, 50ms, 200us), 50, 0us), 1);
}

TEST(PrefetchTest, ShortTasksFillTheRoundTripAndNoMore) {
  auto adaptive = MakePrefetch(std::nullopt);
  // 200 us round trip, 50 us tasks: four queued behind the running one cover it.
  EXPECT_EQ(adaptive->Depth(Seen(100, 50us, 200us), 50, 0us), 5);
  // 1 ms tasks: one queued covers a 200 us round trip.
  EXPECT_EQ(adaptive->Depth(Seen(100, 1ms, 200us), 50, 0us), 2);
  // No-op tasks: bounded.
  int noop = adaptive->Depth(Seen(100, 1us, 200us), 50, 0us);
  EXPECT_GT(noop, 8);
  EXPECT_LE(noop, 129);
}

TEST(PrefetchTest, EnginesAreFilledWithWhatTheyRunWithinARoundTrip) {
  auto adaptive = MakePrefetch(std::nullopt);
  EXPECT_EQ(adaptive->FillBelow(Seen(100, 10us, 200us)), 20);
  EXPECT_EQ(adaptive->FillBelow(Seen(100, 1ms, 200us)), 0);     // longer than a round trip: spread
  EXPECT_EQ(adaptive->FillBelow(Seen(100, 1us, 10ms)), 128);    // at most the deepest queue
  EXPECT_EQ(adaptive->FillBelow(Seen(3, 10us, 200us)), 0);      // too few seen
  EXPECT_EQ(MakePrefetch(1)->FillBelow(Seen(100, 10us, 200us)), 0);  // a given hwm: plain scheme
  EXPECT_EQ(MakePrefetch(0)->FillBelow(Seen(100, 10us, 200us)), 0);
}

TEST(PrefetchTest, AnEngineSilentForLongerThanItsTasksTakeHoldsOne) {
  auto adaptive = MakePrefetch(std::nullopt);
  TaskTimings t = Seen(100, 50us, 200us);
  EXPECT_EQ(adaptive->Depth(t, 50, 300us), 5);
  EXPECT_EQ(adaptive->Depth(t, 50, 100ms), 1);
}

TEST(PrefetchTest, AQueueBehindATaskFarLongerThanThoseSeenIsOverdue) {
  auto adaptive = MakePrefetch(std::nullopt);
  TaskTimings t = Seen(100, 10us, 200us);
  // 2 x (200 us + 4 x 10 us) + 20 ms of slack.
  EXPECT_FALSE(adaptive->Overdue(t, 20ms));
  EXPECT_TRUE(adaptive->Overdue(t, 21ms));
  EXPECT_FALSE(adaptive->Overdue(Seen(100, 100ms, 200us), 500ms));  // tasks that long take that long
  EXPECT_FALSE(adaptive->Overdue(Seen(3, 10us, 200us), 10s));       // too few seen
  EXPECT_FALSE(MakePrefetch(1)->Overdue(t, 10s));  // a given hwm: nothing is taken back
  EXPECT_FALSE(MakePrefetch(0)->Overdue(t, 10s));
}

TEST(PrefetchTest, ATaskStillRunningLongStopsFillingAtOnce) {
  auto adaptive = MakePrefetch(std::nullopt);
  TaskTimings t = Seen(100, 10us, 200us);
  EXPECT_EQ(adaptive->FillBelow(t), 20);
  t.RunningFor(40ms);
  EXPECT_EQ(t.run(), 40ms);
  EXPECT_EQ(adaptive->FillBelow(t), 0);
  EXPECT_EQ(adaptive->Depth(t, 50, 0us), 1);
  EXPECT_EQ(t.samples(), 100);  // not a finished task
  t.RunningFor(1ms);             // shorter than the typical run: no news
  EXPECT_EQ(t.run(), 40ms);
}

TEST(PrefetchTest, OneLongTaskStopsPrefetchAtOnceAndShortOnesBringItBackSlowly) {
  auto adaptive = MakePrefetch(std::nullopt);
  TaskTimings t = Seen(100, 50us, 200us);
  t.Observe(1s, std::nullopt);
  EXPECT_EQ(adaptive->Depth(t, 50, 0us), 1);
  for (int i = 0; i < 10; ++i) t.Observe(50us, 200us);
  EXPECT_EQ(adaptive->Depth(t, 50, 0us), 1);
  for (int i = 0; i < 200; ++i) t.Observe(50us, 200us);
  EXPECT_EQ(adaptive->Depth(t, 50, 0us), 5);
}

TEST(PrefetchTest, TheRoundTripIsASmoothedAverageOfIdleSends) {
  TaskTimings t;
  t.Observe(10us, 100us);
  EXPECT_EQ(t.round_trip(), 100us);
  t.Observe(10us, std::nullopt);  // sent behind another task: no round trip sample
  EXPECT_EQ(t.round_trip(), 100us);
  t.Observe(10us, 900us);
  EXPECT_EQ(t.round_trip(), 200us);
  t.Observe(10us, -50us);  // clock granularity: never below zero
  EXPECT_GE(t.round_trip().count(), 0);
  EXPECT_EQ(t.samples(), 4);
}

}  // namespace
}  // namespace ipp::schedulers

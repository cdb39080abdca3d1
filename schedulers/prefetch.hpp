// Prefetch: how many load-balanced tasks an engine may hold at once (ipyparallel's
// TaskScheduler.hwm). With `--hwm N` that is N (0: no limit), as in ipyparallel. Without it
// the depth adapts: an engine holds one task, as with hwm 1, until the scheduler has seen
// that tasks are short next to the round trip (a reply, the scheduler's next send, its
// arrival); then it holds enough to cover that round trip — so the engine never waits for
// work — and no more than a few milliseconds of queued work, so that a long task never has
// much short work stuck behind it while other engines idle.
//
// Plain values and a pure strategy: the scheduler (single-threaded) owns its TaskTimings and
// passes them in with the time an engine's work has gone unanswered.
#pragma once

#include <chrono>
#include <limits>
#include <memory>
#include <optional>

namespace ipp::schedulers {

using Micros = std::chrono::microseconds;

// What the scheduler has observed of the tasks that ran, cluster-wide.
class TaskTimings {
 public:
  // A task ran for `run` on its engine (the engine's own clock: the reply's date minus its
  // "started"); `round_trip`: the time from its send to its reply less `run`, known when the
  // engine had no other task then (otherwise that time includes waiting in the engine's queue).
  void Observe(Micros run, std::optional<Micros> round_trip);
  // A task has run at least `run` so far, unanswered: the typical run time is at least that
  // long too (before it ends, when its queue is taken back: what was queued behind it, and
  // what comes next, is then spread one task per engine instead of filling one again).
  void RunningFor(Micros run);

  int samples() const { return samples_; }
  // A typical run time: rises to a longer sample at once, decays towards shorter ones.
  Micros run() const { return run_; }
  // A typical round trip (zero until one was observed).
  Micros round_trip() const { return round_trip_; }
  bool round_trip_known() const { return round_trip_samples_ > 0; }

 private:
  int samples_ = 0, round_trip_samples_ = 0;
  Micros run_{0}, round_trip_{0};
};

class Prefetch {
 public:
  static constexpr int kUnlimited = std::numeric_limits<int>::max();
  virtual ~Prefetch() = default;
  // The most tasks an engine may have outstanding now (>= 1). `answered`: the tasks it has
  // answered so far; `waited`: how long it has had work without answering any (zero when it
  // has none).
  virtual int Depth(const TaskTimings& observed, int answered, Micros waited) const = 0;
  // Engines holding fewer tasks than this are filled first, the most loaded of them first
  // (leastload; 0 or 1: plain leastload). The adaptive depth fills an engine with what it runs
  // within one round trip: a task queued there starts about as soon as one sent to an idle
  // engine would arrive, and one engine awake does the work of many asleep (waking hundreds of
  // engines on a few cores for a task each costs more than the tasks).
  virtual int FillBelow(const TaskTimings& observed) const {
    (void)observed;
    return 0;
  }
  // Whether an engine that has held work for `waited` without answering any is running a task
  // far longer than those seen (or is stuck), so that what is queued behind it had better run on
  // an idle engine. Never with a fixed depth: `--hwm N` keeps ipyparallel's meaning.
  virtual bool Overdue(const TaskTimings& observed, Micros waited) const {
    (void)observed;
    (void)waited;
    return false;
  }
};

// `hwm` given: that fixed depth (0: kUnlimited); nullopt: the adaptive depth.
std::unique_ptr<Prefetch> MakePrefetch(std::optional<int> hwm);

}  // namespace ipp::schedulers

#include "schedulers/prefetch.hpp"

#include <algorithm>

namespace ipp::schedulers {

void TaskTimings::Observe(Micros run, std::optional<Micros> round_trip) {
  run = std::max(run, Micros(0));
  // A longer task counts at once (holding back is the safe side); shorter ones must keep
  // coming for a while before the depth grows again.
  run_ = samples_ == 0 || run > run_ ? run : run_ - (run_ - run + Micros(7)) / 8;
  ++samples_;
  if (!round_trip) return;
  Micros rt = std::max(*round_trip, Micros(0));
  round_trip_ = round_trip_samples_ == 0 ? rt : round_trip_ + (rt - round_trip_) / 8;
  ++round_trip_samples_;
}

void TaskTimings::RunningFor(Micros run) {
  if (samples_ > 0) run_ = std::max(run_, run);
}

namespace {

struct Fixed : Prefetch {
  explicit Fixed(int hwm) : depth(hwm <= 0 ? kUnlimited : hwm) {}
  int Depth(const TaskTimings&, int, Micros) const override { return depth; }
  int depth;
};

struct Adaptive : Prefetch {
  // Evidence needed before an engine holds more than one task.
  static constexpr int kMinSamples = 8;
  // Queued work an engine may hold behind its running task, at least (in time)...
  static constexpr Micros kMinBudget{5000};
  // ...and at most this many tasks.
  static constexpr int kMaxQueued = 128;
  // Tolerance on top of the expected time before an engine counts as busy with a long task.
  static constexpr Micros kSlack{5000};

  int Depth(const TaskTimings& observed, int answered, Micros waited) const override {
    if (answered == 0 || observed.samples() < kMinSamples || !observed.round_trip_known()) return 1;
    Micros run = std::max(observed.run(), Micros(1));
    Micros round_trip = observed.round_trip();
    // No answer for much longer than the tasks seen take: this one is long (or the engine is
    // stuck); whatever is queued behind it would wait.
    if (waited > round_trip + 4 * run + kSlack) return 1;
    Micros budget = std::max(2 * round_trip, kMinBudget);
    auto cover = (round_trip.count() + run.count() - 1) / run.count();  // ceil(round trip / run)
    auto fits = budget.count() / run.count();
    return 1 + static_cast<int>(std::min<long long>({cover, fits, kMaxQueued}));
  }
  // How long past the expected time an engine's queue counts as stuck: a release costs a
  // control round trip and a resend, so only a clearly long task is worth one.
  static constexpr Micros kStealSlack{20000};
  bool Overdue(const TaskTimings& observed, Micros waited) const override {
    if (observed.samples() < kMinSamples || !observed.round_trip_known()) return false;
    return waited > 2 * (observed.round_trip() + 4 * observed.run()) + kStealSlack;
  }
  int FillBelow(const TaskTimings& observed) const override {
    if (observed.samples() < kMinSamples || !observed.round_trip_known()) return 0;
    auto within = observed.round_trip().count() / std::max(observed.run(), Micros(1)).count();
    return static_cast<int>(std::min<long long>(within, kMaxQueued));
  }
};

}  // namespace

std::unique_ptr<Prefetch> MakePrefetch(std::optional<int> hwm) {
  if (hwm) return std::make_unique<Fixed>(*hwm);
  return std::make_unique<Adaptive>();
}

}  // namespace ipp::schedulers

// TaskFates: what the load-balanced scheduler remembers of each task it has seen, so that a
// later task's `after`/`follow` dependency can name it: pending, succeeded or failed, and the
// engine it ran on.
//
// The stock scheduler remembers every task forever (Python sets of ids), which is a leak in a
// controller that runs for weeks. Here memory is bounded: entries live in two generations of at
// most `generation` tasks each; when the newer one is full, the older is dropped. So at least the
// last `generation` tasks are always remembered and at most twice that (16 bytes a slot, tables
// at most half full). A task older than that is "unknown": a dependency naming it fails with
// InvalidDependency, as a dependency on a msg_id the scheduler never saw does. generation = 0
// keeps everything (the stock behaviour).
#pragma once

#include <cstdint>
#include <string_view>

#include "common/flat_hash_map.hpp"

namespace ipp::schedulers {

class TaskFates {
 public:
  enum class Outcome : uint8_t { kUnknown, kPending, kSucceeded, kFailed };
  static constexpr uint32_t kNoEngine = (1u << 30) - 1;
  struct Fate {
    Outcome outcome = Outcome::kUnknown;
    uint32_t engine = kNoEngine;  // index the scheduler gave the engine; kNoEngine if none
    bool ended() const { return outcome == Outcome::kSucceeded || outcome == Outcome::kFailed; }
  };

  explicit TaskFates(size_t generation = 0) : generation_(generation) {}

  void Submitted(std::string_view msg_id) { Record(msg_id, {Outcome::kPending, kNoEngine}); }
  void Finished(std::string_view msg_id, bool success, uint32_t engine) {
    Record(msg_id, {success ? Outcome::kSucceeded : Outcome::kFailed, engine});
  }
  Fate find(std::string_view msg_id) const;
  // Tasks remembered now (an id recorded in both generations counts twice).
  size_t size() const { return current_.size() + previous_.size(); }

 private:
  static uint64_t Hash(std::string_view msg_id);
  void Record(std::string_view msg_id, Fate fate);

  size_t generation_;
  // Packed fates: engine << 2 | outcome. Keys are 64-bit hashes of msg_ids: 8 bytes where the
  // id costs ~90; a collision needs billions of ids to become likely.
  FlatHashMap64<uint32_t> current_, previous_;
};

}  // namespace ipp::schedulers

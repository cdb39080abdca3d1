// Task dependencies as ipyparallel's Dependency: a set of msg_ids with all/any and
// success/failure flags. check() says whether it is met now; unreachable() whether it can
// never be met — the "retry later" / "can never run" split the scheduler depends on.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "ipp/status.hpp"
#include "schedulers/task_fates.hpp"

namespace ipp::schedulers {

using IdSet = std::unordered_set<std::string>;

struct Dependency {
  static constexpr uint32_t kAnyEngine = ~0u;
  IdSet ids;
  bool all = true;
  bool success = true;
  bool failure = false;

  // Accepts null, a list of msg_ids, or {"dependencies": [...], "all", "success", "failure"}.
  static Result<Dependency> FromJson(const nlohmann::json& value);
  bool empty() const { return ids.empty(); }
  // Whether a task that ended so counts towards this dependency (met by it) or against it.
  bool MetBy(const TaskFates::Fate& fate) const {
    return fate.ended() && (fate.outcome == TaskFates::Outcome::kSucceeded ? success : failure);
  }
  bool RefusedBy(const TaskFates::Fate& fate) const { return fate.ended() && !MetBy(fate); }
  // Met now by the tasks' fates; with `engine`, only by tasks that ran there (`follow`).
  bool Check(const TaskFates& fates, uint32_t engine = kAnyEngine) const;
  // Can never be met: enough of the tasks ended the other way.
  bool Unreachable(const TaskFates& fates) const;
};

}  // namespace ipp::schedulers

// Task dependencies as ipyparallel's Dependency: a set of msg_ids with all/any and
// success/failure flags. check() says whether it is met now; unreachable() whether it can
// never be met — the "retry later" / "can never run" split the scheduler depends on.
#pragma once

#include <string>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "ipp/status.hpp"

namespace ipp::schedulers {

using IdSet = std::unordered_set<std::string>;

struct Dependency {
  IdSet ids;
  bool all = true;
  bool success = true;
  bool failure = false;

  // Accepts null, a list of msg_ids, or {"dependencies": [...], "all", "success", "failure"}.
  static Result<Dependency> FromJson(const nlohmann::json& value);
  bool empty() const { return ids.empty(); }
  bool Check(const IdSet& completed, const IdSet& failed) const;
  bool Unreachable(const IdSet& completed, const IdSet& failed) const;
};

}  // namespace ipp::schedulers

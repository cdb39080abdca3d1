// Task dependencies as ipyparallel's Dependency: a set of msg_ids with all/any and
// success/failure flags. check() says whether it is met now; unreachable() whether it can
// never be met — the "retry later" / "can never run" split the scheduler depends on.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "common/flat_hash_map.hpp"
#include "ipp/status.hpp"

namespace ipp::schedulers {

using IdSet = std::unordered_set<std::string>;

// A set of msg_ids kept as 64-bit hashes. The scheduler remembers every finished task (for
// dependencies that name it later): 8 bytes a hash where the id itself costs ~90. A collision
// needs billions of ids to become likely.
class MsgIdSet {
 public:
  MsgIdSet() = default;
  MsgIdSet(std::initializer_list<std::string> ids) {
    for (const auto& id : ids) insert(id);
  }
  static uint64_t Hash(std::string_view id) { return std::hash<std::string_view>{}(id); }
  void insert(std::string_view id) { hashes_.insert(Hash(id)); }
  bool count(std::string_view id) const { return hashes_.contains(Hash(id)); }
  size_t size() const { return hashes_.size(); }

 private:
  FlatHashSet64 hashes_;
};

struct Dependency {
  IdSet ids;
  bool all = true;
  bool success = true;
  bool failure = false;

  // Accepts null, a list of msg_ids, or {"dependencies": [...], "all", "success", "failure"}.
  static Result<Dependency> FromJson(const nlohmann::json& value);
  bool empty() const { return ids.empty(); }
  bool Check(const MsgIdSet& completed, const MsgIdSet& failed) const;
  bool Unreachable(const MsgIdSet& completed, const MsgIdSet& failed) const;
};

}  // namespace ipp::schedulers

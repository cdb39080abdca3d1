// Routing policies of the load-balanced scheduler, like ipyparallel's five schemes: each picks
// an index into a list of engine loads kept in least-recently-used order (oldest first). Each
// also has an EngineIndex, which makes the same choice among every engine with room for a task
// at a cost that does not grow with the number of engines (the path of a task without
// targets, dependencies or needs that only some engines meet).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace ipp::schedulers {

class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;
  // `loads` is non-empty; returns an index into it.
  virtual size_t Pick(const std::vector<int>& loads, std::mt19937& rng) const = 0;
};

// The engines with room for a task, by slot (a small integer the caller gives each engine),
// with their outstanding task counts and when they last got work (`last_use`: smaller is
// longer ago; distinct per engine). Insert and Erase cost O(log n) at most, Pick O(log n).
class EngineIndex {
 public:
  virtual ~EngineIndex() = default;
  // `slot` must not be in the index.
  virtual void Insert(uint32_t slot, int load, int64_t last_use) = 0;
  // `slot` must be in the index.
  virtual void Erase(uint32_t slot) = 0;
  virtual bool empty() const = 0;
  // Not empty: the slot the policy picks, as RoutingPolicy::Pick would from the same engines.
  virtual uint32_t Pick(std::mt19937& rng) const = 0;
  // leastload only (others: nullopt): the most loaded engine whose load is under `load` (the
  // most recently used among equals); nullopt when every engine's load is `load` or more. Many
  // short tasks then wake few engines instead of all of them (see Prefetch::FillBelow).
  virtual std::optional<uint32_t> PickFilling(int load) const {
    (void)load;
    return std::nullopt;
  }
};

// lru, leastload, weighted, twobin, plainrandom; nullptr for an unknown name.
std::unique_ptr<RoutingPolicy> MakePolicy(const std::string& name);
std::unique_ptr<EngineIndex> MakeEngineIndex(const std::string& name);
const std::vector<std::string>& PolicyNames();
// "leastload, lru, ...": the names for help texts and error messages.
std::string PolicyNameList();

}  // namespace ipp::schedulers

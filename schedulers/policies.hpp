// Routing policies of the load-balanced scheduler: each picks an index into a list of engine
// loads kept in least-recently-used order (oldest first), like ipyparallel's five schemes.
#pragma once

#include <memory>
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

// lru, leastload, weighted, twobin, plainrandom; nullptr for an unknown name.
std::unique_ptr<RoutingPolicy> MakePolicy(const std::string& name);
const std::vector<std::string>& PolicyNames();
// "leastload, lru, ...": the names for help texts and error messages.
std::string PolicyNameList();

}  // namespace ipp::schedulers

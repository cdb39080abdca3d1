#include "schedulers/policies.hpp"

#include <algorithm>

namespace ipp::schedulers {

namespace {

size_t RandomIndex(size_t n, std::mt19937& rng) {
  return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
}

struct Lru : RoutingPolicy {  // always the front of the line
  size_t Pick(const std::vector<int>&, std::mt19937&) const override { return 0; }
};

struct LeastLoad : RoutingPolicy {  // lowest load; ties go to the least recently used
  size_t Pick(const std::vector<int>& loads, std::mt19937&) const override {
    return static_cast<size_t>(std::min_element(loads.begin(), loads.end()) - loads.begin());
  }
};

struct PlainRandom : RoutingPolicy {
  size_t Pick(const std::vector<int>& loads, std::mt19937& rng) const override {
    return RandomIndex(loads.size(), rng);
  }
};

struct TwoBin : RoutingPolicy {  // two at random, the less recently used of them
  size_t Pick(const std::vector<int>& loads, std::mt19937& rng) const override {
    return std::min(RandomIndex(loads.size(), rng), RandomIndex(loads.size(), rng));
  }
};

struct Weighted : RoutingPolicy {  // two at random weighted by inverse load; the less loaded
  size_t Pick(const std::vector<int>& loads, std::mt19937& rng) const override {
    std::vector<double> sums(loads.size());
    double total = 0;
    for (size_t i = 0; i < loads.size(); ++i) {
      total += 1.0 / (1e-6 + loads[i]);
      sums[i] = total;
    }
    std::uniform_real_distribution<double> u(0, total);
    auto draw = [&] {
      size_t i = static_cast<size_t>(std::lower_bound(sums.begin(), sums.end(), u(rng)) - sums.begin());
      return std::min(i, loads.size() - 1);
    };
    size_t x = draw(), y = draw();
    return loads[y] < loads[x] ? y : x;
  }
};

}  // namespace

std::unique_ptr<RoutingPolicy> MakePolicy(const std::string& name) {
  if (name == "lru") return std::make_unique<Lru>();
  if (name == "leastload") return std::make_unique<LeastLoad>();
  if (name == "plainrandom") return std::make_unique<PlainRandom>();
  if (name == "twobin") return std::make_unique<TwoBin>();
  if (name == "weighted") return std::make_unique<Weighted>();
  return nullptr;
}

const std::vector<std::string>& PolicyNames() {
  static const std::vector<std::string> names = {"leastload", "lru", "weighted", "twobin",
                                                 "plainrandom"};
  return names;
}

std::string PolicyNameList() {
  std::string list;
  for (const std::string& name : PolicyNames()) list += (list.empty() ? "" : ", ") + name;
  return list;
}

}  // namespace ipp::schedulers

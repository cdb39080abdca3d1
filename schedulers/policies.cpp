#include "schedulers/policies.hpp"

#include <algorithm>
#include <iterator>
#include <limits>
#include <set>
#include <tuple>
#include <type_traits>

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

// Slot-indexed storage that grows with the highest slot seen.
template <typename T>
T& At(std::vector<T>& v, uint32_t slot) {
  if (slot >= v.size()) v.resize(slot + 1);
  return v[slot];
}

using ByAge = std::tuple<int64_t, uint32_t>;
ByAge AgeKey(uint32_t slot, int, int64_t last_use) { return {last_use, slot}; }
using ByLoad = std::tuple<int, int64_t, uint32_t>;
ByLoad LoadKey(uint32_t slot, int load, int64_t last_use) { return {load, last_use, slot}; }

// lru and leastload: the first of the engines ordered by a key.
template <typename Key, Key (*MakeKey)(uint32_t, int, int64_t)>
struct OrderedIndex : EngineIndex {
  void Insert(uint32_t slot, int load, int64_t last_use) override {
    At(keys, slot) = MakeKey(slot, load, last_use);
    order.insert(keys[slot]);
  }
  void Erase(uint32_t slot) override { order.erase(keys.at(slot)); }
  bool empty() const override { return order.empty(); }
  uint32_t Pick(std::mt19937&) const override { return std::get<uint32_t>(*order.begin()); }
  std::optional<uint32_t> PickFilling(int load) const override {
    if constexpr (!std::is_same_v<Key, ByLoad>) {
      return EngineIndex::PickFilling(load);
    } else {
      auto under = order.lower_bound(Key{load, std::numeric_limits<int64_t>::min(), 0});
      if (under == order.begin()) return std::nullopt;
      return std::get<uint32_t>(*std::prev(under));
    }
  }
  std::set<Key> order;
  std::vector<Key> keys;
};

// plainrandom and twobin: uniform draws from an array of the members.
struct UniformIndex : EngineIndex {
  explicit UniformIndex(bool two) : two_bins(two) {}
  void Insert(uint32_t slot, int, int64_t last_use) override {
    At(position, slot) = members.size();
    At(last_used, slot) = last_use;
    members.push_back(slot);
  }
  void Erase(uint32_t slot) override {
    size_t at = position.at(slot);
    members[at] = members.back();
    position[members[at]] = at;
    members.pop_back();
  }
  bool empty() const override { return members.empty(); }
  uint32_t Pick(std::mt19937& rng) const override {
    uint32_t x = members[RandomIndex(members.size(), rng)];
    if (!two_bins) return x;
    uint32_t y = members[RandomIndex(members.size(), rng)];
    return last_used[y] < last_used[x] ? y : x;  // the less recently used of two
  }
  bool two_bins;
  std::vector<uint32_t> members;
  std::vector<size_t> position;
  std::vector<int64_t> last_used;
};

// weighted: draws by inverse load from a sum tree over the slots (a slot not in the index
// weighs nothing); sums are recomputed from their two children, so they never drift.
struct WeightedIndex : EngineIndex {
  void Insert(uint32_t slot, int load, int64_t) override {
    At(loads, slot) = load;
    Set(slot, 1.0 / (1e-6 + std::max(load, 0)));
    ++count;
  }
  void Erase(uint32_t slot) override {
    Set(slot, 0);
    --count;
  }
  bool empty() const override { return count == 0; }
  uint32_t Pick(std::mt19937& rng) const override {
    uint32_t x = Draw(rng), y = Draw(rng);
    return loads[y] < loads[x] ? y : x;
  }
  void Set(uint32_t slot, double weight) {
    if (slot >= leaves) {
      size_t grown = std::max<size_t>(leaves * 2, 16);
      while (grown <= slot) grown *= 2;
      std::vector<double> old(tree.begin() + static_cast<long>(leaves), tree.end());
      tree.assign(2 * grown, 0.0);
      leaves = grown;
      std::copy(old.begin(), old.end(), tree.begin() + static_cast<long>(leaves));
      for (size_t i = leaves - 1; i >= 1; --i) tree[i] = tree[2 * i] + tree[2 * i + 1];
    }
    size_t i = leaves + slot;
    tree[i] = weight;
    for (i /= 2; i >= 1; i /= 2) tree[i] = tree[2 * i] + tree[2 * i + 1];
  }
  uint32_t Draw(std::mt19937& rng) const {
    double u = std::uniform_real_distribution<double>(0, tree[1])(rng);
    size_t i = 1;
    while (i < leaves) {
      double left = tree[2 * i];
      // Rounding may put u past the last weight of a side: never step into a side weighing nothing.
      bool go_left = left > 0 && (u < left || tree[2 * i + 1] <= 0);
      if (!go_left) u -= left;
      i = 2 * i + (go_left ? 0 : 1);
    }
    return static_cast<uint32_t>(i - leaves);
  }
  size_t leaves = 0, count = 0;
  std::vector<double> tree;  // [1] is the root; leaves from [leaves]
  std::vector<int> loads;
};

}  // namespace

std::unique_ptr<EngineIndex> MakeEngineIndex(const std::string& name) {
  if (name == "lru") return std::make_unique<OrderedIndex<ByAge, AgeKey>>();
  if (name == "leastload") return std::make_unique<OrderedIndex<ByLoad, LoadKey>>();
  if (name == "plainrandom") return std::make_unique<UniformIndex>(false);
  if (name == "twobin") return std::make_unique<UniformIndex>(true);
  if (name == "weighted") return std::make_unique<WeightedIndex>();
  return nullptr;
}

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

// FlatHashMap64: a map from 64-bit hashes to small values in one open-addressed array.
//
// The task scheduler remembers every task it has seen (dependencies may name any of them later),
// hundreds of thousands in a long-lived controller. In node-based containers each entry is its
// own small allocation, scattered among the message buffers of the moment, and those scattered
// survivors keep whole pages of freed messages from being returned to the system. One array
// holds the same entries in ~16 bytes each and leaves nothing behind.
//
// Insert and look up only. Keys are hashes: 0 is stored as 1 (the two are one key).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace ipp {

template <typename Value>
class FlatHashMap64 {
 public:
  // The value for `key`, inserted (value-initialized) if absent.
  Value& operator[](uint64_t key) {
    if ((size_ + 1) * 2 > slots_.size()) Grow();
    Slot& s = Probe(slots_, Normal(key));
    if (s.key == 0) {
      s.key = Normal(key);
      ++size_;
    }
    return s.value;
  }
  void insert(uint64_t key) { (void)(*this)[key]; }
  const Value* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    const Slot& s = Probe(slots_, Normal(key));
    return s.key ? &s.value : nullptr;
  }
  bool contains(uint64_t key) const { return find(key) != nullptr; }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t key = 0;  // 0: empty
    [[no_unique_address]] Value value{};
  };
  static uint64_t Normal(uint64_t key) { return key ? key : 1; }
  // The slot holding `key`, or the empty slot where it would go (linear probing).
  template <typename Slots>  // std::vector<Slot>, const or not
  static auto& Probe(Slots& slots, uint64_t key) {
    size_t mask = slots.size() - 1;
    for (size_t i = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask;; i = (i + 1) & mask) {
      if (slots[i].key == key || slots[i].key == 0) return slots[i];
    }
  }
  void Grow() {
    std::vector<Slot> bigger(slots_.empty() ? 64 : slots_.size() * 2);
    for (Slot& s : slots_) {
      if (s.key) Probe(bigger, s.key) = std::move(s);
    }
    slots_.swap(bigger);
  }

  std::vector<Slot> slots_;  // size: a power of two, at most half full
  size_t size_ = 0;
};

namespace detail {
struct NoValue {};
}  // namespace detail
// A set of 64-bit hashes (msg_ids, signatures): the map with nothing stored per key.
using FlatHashSet64 = FlatHashMap64<detail::NoValue>;

}  // namespace ipp

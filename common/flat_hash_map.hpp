// FlatHashMap64 / FlatHashSet64: maps and sets keyed by 64-bit hashes (of msg_ids, signatures),
// held in one open-addressed array each: absl::flat_hash_map / flat_hash_set.
//
// The task scheduler remembers every task it has seen (dependencies may name any of them later),
// hundreds of thousands in a long-lived controller. In node-based containers each entry is its
// own small allocation, scattered among the message buffers of the moment, and those scattered
// survivors keep whole pages of freed messages from being returned to the system. One array
// holds the same entries in ~20 bytes each (Abseil's tables fill up to 7/8) and leaves nothing
// behind. This header keeps the small interface its users need (insert and look up only).
#pragma once

#include <cstddef>
#include <cstdint>

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

namespace ipp {

template <typename Value>
class FlatHashMap64 {
 public:
  // The value for `key`, inserted (value-initialized) if absent.
  Value& operator[](uint64_t key) { return map_[key]; }
  const Value* find(uint64_t key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second;
  }
  bool contains(uint64_t key) const { return map_.contains(key); }
  size_t size() const { return map_.size(); }

 private:
  absl::flat_hash_map<uint64_t, Value> map_;
};

// A set of 64-bit hashes (msg_ids, signatures).
class FlatHashSet64 {
 public:
  void insert(uint64_t key) { set_.insert(key); }
  bool contains(uint64_t key) const { return set_.contains(key); }
  size_t size() const { return set_.size(); }

 private:
  absl::flat_hash_set<uint64_t> set_;
};

}  // namespace ipp

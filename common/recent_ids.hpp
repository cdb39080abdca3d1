// RecentIds: a set of msg_ids that forgets its oldest entries past a capacity.
//
// For ids remembered in case a message arrives later (an abort that overtook its task): the
// message may never come (it was aborted elsewhere, or never sent), so an unbounded set would
// grow for as long as the process runs. Not thread-safe: owned by one thread.
#pragma once

#include <deque>
#include <string>
#include <unordered_set>

namespace ipp {

class RecentIds {
 public:
  explicit RecentIds(size_t capacity) : capacity_(capacity) {}

  void insert(const std::string& id) {
    if (capacity_ == 0 || !ids_.insert(id).second) return;
    order_.push_back(id);
    while (order_.size() > capacity_) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }
  // True (and forgets it) if `id` was remembered. Its place in order_ stays until it ages out,
  // so erase is O(1); a re-insert meanwhile is then forgotten a little early.
  bool take(const std::string& id) { return ids_.erase(id) > 0; }
  bool contains(const std::string& id) const { return ids_.count(id) > 0; }
  size_t size() const { return ids_.size(); }

 private:
  size_t capacity_;
  std::unordered_set<std::string> ids_;
  std::deque<std::string> order_;
};

}  // namespace ipp

#include "engine/released_requests.hpp"

#include <algorithm>
#include <functional>

namespace ipp::engine {

namespace {
uint64_t Hash(const std::string& id) { return std::hash<std::string>{}(id); }
}  // namespace

std::vector<std::string> ReleasedRequests::Release(const std::vector<std::string>& ids) {
  std::vector<std::string> released;
  std::lock_guard lock(mutex_);
  for (const std::string& id : ids) {
    if (std::find(started_.begin(), started_.end(), Hash(id)) != started_.end()) continue;
    Pending& pending = released_[id];
    if (pending.copies++ == 0) {
      pending.generation = ++generation_;
      release_order_.emplace_back(id, pending.generation);
    }
    released.push_back(id);
  }
  while (release_order_.size() > kMaxReleased) {
    auto& [id, generation] = release_order_.front();
    auto it = released_.find(id);
    if (it != released_.end() && it->second.generation == generation) released_.erase(it);
    release_order_.pop_front();
  }
  return released;
}

bool ReleasedRequests::Start(const std::string& msg_id) {
  std::lock_guard lock(mutex_);
  auto it = released_.find(msg_id);
  if (it != released_.end()) {
    if (--it->second.copies == 0) released_.erase(it);  // its place in release_order_ ages out
    return false;
  }
  if (started_.empty()) started_.resize(kStarted);
  started_[next_started_] = Hash(msg_id);
  next_started_ = (next_started_ + 1) % kStarted;
  return true;
}

}  // namespace ipp::engine

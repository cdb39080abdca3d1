#include "engine/released_requests.hpp"

namespace ipp::engine {

std::vector<std::string> ReleasedRequests::Release(const std::vector<std::string>& ids) {
  std::vector<std::string> released;
  std::lock_guard lock(mutex_);
  for (const std::string& id : ids) {
    if (started_.contains(id)) continue;
    if (released_[id]++ == 0) release_order_.push_back(id);
    released.push_back(id);
  }
  while (release_order_.size() > kMaxReleased) {
    released_.erase(release_order_.front());
    release_order_.pop_front();
  }
  return released;
}

bool ReleasedRequests::Start(const std::string& msg_id) {
  std::lock_guard lock(mutex_);
  auto it = released_.find(msg_id);
  if (it != released_.end()) {
    if (--it->second == 0) released_.erase(it);  // its place in release_order_ ages out
    return false;
  }
  started_.insert(msg_id);
  return true;
}

}  // namespace ipp::engine

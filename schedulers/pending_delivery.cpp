#include "schedulers/pending_delivery.hpp"

namespace ipp::schedulers {

// A ROUTER_MANDATORY send to an unknown peer fails on the routing frame, before anything is
// consumed: the frames are intact and can be kept.
bool PendingDelivery::TrySend(protocol::Frames& frames) {
  return protocol::Send(socket_, std::move(frames), true);
}

void PendingDelivery::Send(protocol::Frames&& frames) {
  std::string peer(protocol::view(frames[0]));
  auto it = held_.find(peer);
  if (it == held_.end()) {  // nothing kept for this peer: sending now keeps the order
    if (TrySend(frames)) return;
    held_[peer].push_back({std::move(frames), Clock::now() + patience_});
    return;
  }
  it->second.push_back({std::move(frames), Clock::now() + patience_});
}

void PendingDelivery::Retry(const Expired& expired) {
  auto now = Clock::now();
  for (auto it = held_.begin(); it != held_.end();) {
    auto& queue = it->second;
    while (!queue.empty() && TrySend(queue.front().frames)) queue.pop_front();
    while (!queue.empty() && queue.front().deadline <= now) {
      protocol::Frames frames = std::move(queue.front().frames);
      queue.pop_front();
      expired(std::move(frames));
    }
    it = queue.empty() ? held_.erase(it) : std::next(it);
  }
}

}  // namespace ipp::schedulers

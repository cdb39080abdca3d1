#include "schedulers/pending_delivery.hpp"

#include <exception>
#include <vector>

namespace ipp::schedulers {

// A ROUTER_MANDATORY send to an unknown peer fails on the routing frame, before anything is
// consumed: the frames are intact and can be kept.
bool PendingDelivery::TrySend(protocol::Frames& frames) {
  return protocol::Send(socket_, std::move(frames), true);
}

void PendingDelivery::Attach(Reactor& reactor, Expired expired) {
  reactor_ = &reactor;
  expired_ = std::move(expired);
  if (!held_.empty()) ArmRetry();
}

void PendingDelivery::Send(protocol::Frames&& frames) {
  std::string peer(protocol::view(frames[0]));
  auto it = held_.find(peer);
  if (it == held_.end()) {  // nothing kept for this peer: sending now keeps the order
    if (TrySend(frames)) return;
    held_[peer].push_back({std::move(frames), Clock::now() + patience_});
    ArmRetry();
    return;
  }
  it->second.push_back({std::move(frames), Clock::now() + patience_});
}

void PendingDelivery::ArmRetry() {
  if (retry_armed_ || !reactor_) return;
  retry_armed_ = true;
  reactor_->after(kRetryPeriod, [this] {
    retry_armed_ = false;
    std::vector<protocol::Frames> expired;
    std::exception_ptr error;
    try {
      Retry(&expired);
    } catch (...) {
      error = std::current_exception();
    }
    // Armed before any callback runs: one that throws, or that sends again and has to hold,
    // must not leave anything held without a timer.
    if (!held_.empty()) ArmRetry();
    for (protocol::Frames& frames : expired) {
      try {
        expired_(std::move(frames));
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);  // the reactor logs it and keeps serving
  });
}

// Makes no callback: `expired` may send again (a task retried elsewhere), which would change
// held_ while this walks it.
void PendingDelivery::Retry(std::vector<protocol::Frames>* expired) {
  auto now = Clock::now();
  for (auto it = held_.begin(); it != held_.end();) {
    auto& queue = it->second;
    while (!queue.empty() && TrySend(queue.front().frames)) queue.pop_front();
    while (!queue.empty() && queue.front().deadline <= now) {
      expired->push_back(std::move(queue.front().frames));
      queue.pop_front();
    }
    it = queue.empty() ? held_.erase(it) : std::next(it);
  }
}

}  // namespace ipp::schedulers

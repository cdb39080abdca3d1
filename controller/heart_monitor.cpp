#include "controller/heart_monitor.hpp"

#include <cstdio>

#include "common/endpoint.hpp"
#include "protocol/message.hpp"

namespace ipp::controller {

HeartMonitor::HeartMonitor(zmq::context_t& context, std::chrono::milliseconds period,
                           int max_misses, Callbacks callbacks, Logger log)
    : ping_(context, zmq::socket_type::pub),
      pong_(context, zmq::socket_type::router),
      period_(period),
      max_misses_(max_misses),
      callbacks_(std::move(callbacks)),
      log_(std::move(log)) {
  ping_.set(zmq::sockopt::linger, 0);
  pong_.set(zmq::sockopt::linger, 0);
  pong_.set(zmq::sockopt::rcvhwm, 0);
}

std::pair<int, int> HeartMonitor::Bind(const std::string& ping_url, const std::string& pong_url,
                                       const std::function<void(zmq::socket_t&)>& secure) {
  secure(ping_);
  secure(pong_);
  ping_.bind(ping_url);
  pong_.bind(pong_url);
  return {BoundPort(ping_), BoundPort(pong_)};
}

void HeartMonitor::Attach(Reactor& reactor) {
  reactor.add(pong_, [this] { HandlePongs(); });
  reactor.every(period_, [this] { Beat(); });
  log_->info("heartbeat every {} ms; an engine is dead after {} missed beats", period_.count(),
             max_misses_);
}

void HeartMonitor::Forget(const std::string& heart) {
  hearts_.erase(heart);
  on_probation_.erase(heart);
  responses_.erase(heart);
}

void HeartMonitor::HandlePongs() {
  // A heart's first answer is reported at once, not at the next beat: registration completes
  // on it, and waiting a whole period would slow every engine's start.
  std::vector<std::string> fresh;
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(pong_);
    if (!frames) break;
    if (frames->size() != 2) continue;  // not a heartbeat echo; ignore
    std::string heart(protocol::view((*frames)[0]));
    std::string_view beat = protocol::view((*frames)[1]);
    if (beat == current_ping_) {
      if (callbacks_.on_beat) callbacks_.on_beat(heart);
      if (!hearts_.count(heart)) fresh.push_back(heart);
      responses_.insert(std::move(heart));
    } else if (!last_ping_.empty() && beat == last_ping_) {
      log_->warn("heart {} answered the previous beat late", heart);
      if (callbacks_.on_beat) callbacks_.on_beat(heart);
      responses_.insert(std::move(heart));
    } else {
      SPDLOG_LOGGER_DEBUG(log_, "stale heartbeat from {}", heart);
    }
  }
  for (const std::string& heart : fresh) hearts_.insert(heart);
  if (!fresh.empty() && callbacks_.on_new_hearts) callbacks_.on_new_hearts(fresh);
}

void HeartMonitor::PingNow() {
  if (current_ping_.empty()) NextPing();
  ping_.send(zmq::buffer(current_ping_), zmq::send_flags::dontwait);
}

void HeartMonitor::NextPing() {
  last_ping_ = current_ping_;
  double lifetime = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  char text[32];
  std::snprintf(text, sizeof text, "%.6f", lifetime);
  current_ping_ = text;
}

void HeartMonitor::Beat() {
  std::vector<std::string> new_hearts, stopped;
  for (const std::string& heart : responses_) {
    if (hearts_.insert(heart).second) new_hearts.push_back(heart);
  }
  for (auto it = hearts_.begin(); it != hearts_.end();) {
    if (responses_.count(*it)) {
      on_probation_.erase(*it);
      ++it;
      continue;
    }
    int misses = ++on_probation_[*it];
    if (misses > max_misses_) {
      stopped.push_back(*it);
      on_probation_.erase(*it);
      it = hearts_.erase(it);
    } else {
      log_->info("heart {} missed {} beat(s)", *it, misses);
      ++it;
    }
  }
  responses_.clear();
  if (!new_hearts.empty() && callbacks_.on_new_hearts) callbacks_.on_new_hearts(new_hearts);
  if (!stopped.empty() && callbacks_.on_stopped_hearts) callbacks_.on_stopped_hearts(stopped);

  NextPing();
  ping_.send(zmq::buffer(current_ping_), zmq::send_flags::dontwait);
}

}  // namespace ipp::controller

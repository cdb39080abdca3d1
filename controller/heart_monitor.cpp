#include "controller/heart_monitor.hpp"

#include <algorithm>
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

void HeartMonitor::BindAlso(const std::string& ping_url, const std::string& pong_url) {
  ping_.bind(ping_url);
  pong_.bind(pong_url);
}

void HeartMonitor::Attach(Reactor& reactor) {
  reactor.add(pong_, [this] { HandlePongs(protocol::kBatch); });
  reactor.every(period_, [this] { Beat(); });
  log_->info("heartbeat every {} ms; an engine is dead after {} missed beats", period_.count(),
             max_misses_);
}

void HeartMonitor::Forget(const std::string& heart) {
  hearts_.erase(heart);
  responses_.erase(heart);
}

void HeartMonitor::HandlePongs(size_t max) {
  // A heart's first answer is reported at once, not at the next beat: registration completes
  // on it, and waiting a whole period would slow every engine's start.
  std::vector<std::string> fresh;
  auto now = Clock::now();
  for (size_t n = 0; n < max; ++n) {
    auto frames = protocol::TryRecv(pong_);
    if (!frames) break;
    if (frames->size() != 2) continue;  // not a heartbeat echo; ignore
    std::string heart(protocol::view((*frames)[0]));
    std::string_view beat = protocol::view((*frames)[1]);
    bool current = beat == current_ping_;
    if (!current && (last_ping_.empty() || beat != last_ping_)) {
      SPDLOG_LOGGER_DEBUG(log_, "stale heartbeat from {}", heart);
      continue;
    }
    if (callbacks_.on_beat) callbacks_.on_beat(heart);
    if (current && !hearts_.count(heart)) fresh.push_back(heart);
    // Counted once per heart: a registering engine is pinged again, and answers each copy.
    if (responses_.insert(std::move(heart)).second && !current) ++late_answers_;
  }
  for (const std::string& heart : fresh) hearts_.try_emplace(heart, Heart{0, now});
  if (!fresh.empty() && callbacks_.on_new_hearts) callbacks_.on_new_hearts(fresh);
}

void HeartMonitor::PingNow() {
  auto now = Clock::now();
  auto spacing = std::min<Clock::duration>(kEchoCost * static_cast<long>(hearts_.size()), period_);
  if (!current_ping_.empty() && now - last_reping_ < spacing) return;
  last_reping_ = now;
  if (current_ping_.empty()) NextPing();
  ping_.send(zmq::buffer(current_ping_), zmq::send_flags::dontwait);
}

void HeartMonitor::NextPing() {
  last_ping_ = current_ping_;
  double lifetime = std::chrono::duration<double>(Clock::now() - start_).count();
  char text[32];
  std::snprintf(text, sizeof text, "%.6f", lifetime);
  current_ping_ = text;
}

void HeartMonitor::Beat() {
  auto now = Clock::now();
  // The hub's own lateness: how long its loop was busy past this beat's time.
  auto hub_late = last_beat_ == Clock::time_point{} ? Clock::duration::zero() : now - last_beat_ - period_;
  last_beat_ = now;
  // Echoes that arrived while the loop was busy count: the hub was late to read them, not the
  // engines to send them. Bounded, in case of a flood that is not echoes.
  HandlePongs(4 * hearts_.size() + protocol::kBatch);

  std::vector<std::string> new_hearts, stopped;
  for (const std::string& heart : responses_) {
    if (hearts_.try_emplace(heart, Heart{0, now}).second) new_hearts.push_back(heart);
  }
  size_t silent = hearts_.size() > responses_.size() ? hearts_.size() - responses_.size() : 0;
  bool hub_overloaded = hub_late > period_ / 2;
  bool mass_silence = silent >= kMassSilence && 2 * silent > hearts_.size();
  // Late answers say the machine is slow: the silence is load. Without them it is excused only
  // for a few periods, then hearts that stay silent are judged as usual.
  mass_silent_periods_ = mass_silence && late_answers_ == 0 ? mass_silent_periods_ + 1 : 0;
  if (mass_silent_periods_ > kMassSilenceGrace) mass_silence = false;
  bool judged = !hub_overloaded && !mass_silence;
  const auto patience = kOverloadPatience * (max_misses_ + 1) * period_;
  size_t missed = 0;
  for (auto it = hearts_.begin(); it != hearts_.end();) {
    Heart& h = it->second;
    if (responses_.count(it->first)) {
      h.misses = 0;
      h.last_seen = now;
      ++it;
      continue;
    }
    ++missed;
    if (judged) ++h.misses;
    if (h.misses > max_misses_ || now - h.last_seen > patience) {
      stopped.push_back(it->first);
      it = hearts_.erase(it);
    } else {
      ++it;
    }
  }
  if (missed || late_answers_ || !stopped.empty()) {
    std::string why;
    if (hub_overloaded) {
      why = "; the hub was " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(hub_late).count()) +
            " ms late: misses not counted";
    } else if (mass_silence) {
      why = "; most hearts silent at once (machine overloaded?): misses not counted";
    }
    log_->log(stopped.empty() && judged ? spdlog::level::info : spdlog::level::warn,
              "heartbeat: {} hearts, {} answered the previous beat late, {} missed this beat, {} stopped{}",
              hearts_.size() + stopped.size(), late_answers_, missed, stopped.size(), why);
  }
  late_answers_ = 0;
  responses_.clear();
  if (!new_hearts.empty() && callbacks_.on_new_hearts) callbacks_.on_new_hearts(new_hearts);
  if (!stopped.empty() && callbacks_.on_stopped_hearts) callbacks_.on_stopped_hearts(stopped);

  NextPing();
  ping_.send(zmq::buffer(current_ping_), zmq::send_flags::dontwait);
}

}  // namespace ipp::controller

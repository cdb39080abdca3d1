#include "controller/engine_gateway.hpp"

#include <algorithm>

#include "protocol/gateway.hpp"
#include "protocol/message.hpp"

namespace ipp::controller {

namespace gw = protocol::gateway;
using protocol::Frames;

namespace {
zmq::message_t Frame(std::string_view text) { return zmq::message_t(text.data(), text.size()); }
// The gateway's name for an engine's pipe of one channel (its ZMQ_CONNECT_ROUTING_ID).
std::string PipeName(std::string_view channel, const std::string& uuid) { return std::string(channel) + ":" + uuid; }
}  // namespace

EngineGateway::EngineGateway(zmq::context_t& context, std::chrono::milliseconds patience, Logger log,
                             size_t generation_size)
    : log_(std::move(log)),
      context_(context),
      generation_size_(std::max<size_t>(1, generation_size)),
      engines_(context, zmq::socket_type::router),
      iopub_(context, zmq::socket_type::pub),
      ping_(context, zmq::socket_type::sub),
      allow_(context, zmq::socket_type::pull),
      to_engines_(engines_, patience) {
  for (zmq::socket_t* s : {&engines_, &iopub_, &ping_, &allow_}) protocol::ConfigureUnbounded(*s);
  allow_.bind(gw::kAllowUrl);  // before the hub connects to it
  // Unknown destinations fail loudly instead of vanishing: a connection that is down is
  // waited for (PendingDelivery), and a ping to it is not repeated.
  engines_.set(zmq::sockopt::router_mandatory, 1);
  ping_.set(zmq::sockopt::subscribe, "");
}

void EngineGateway::Connect() {
  iopub_.connect(gw::InternalUrl(gw::kIopub));
  ping_.connect(gw::InternalUrl(gw::kPing));
}

void EngineGateway::Attach(Reactor& reactor) {
  to_engines_.Attach(reactor, [this](Frames&& frames) {
    log_->warn("dropped a message for engine {}: its connection to the gateway is gone",
               frames.empty() ? std::string("?") : std::string(protocol::view(frames[0])));
  });
  reactor_ = &reactor;
  reactor.add(engines_, [this] { FromEngines(); });
  reactor.add(ping_, [this] { OnPing(); });
  reactor.add(allow_, [this] { OnAllow(); });
}

void EngineGateway::OnAllow() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    std::optional<Frames> frames = protocol::TryRecv(allow_);
    if (!frames) return;
    if (frames->size() == 1) allowed_.emplace(protocol::view((*frames)[0]));
    if (frames->size() == 2 && protocol::view((*frames)[1]) == gw::kGone) Gone(std::string(protocol::view((*frames)[0])));
  }
}

void EngineGateway::Gone(const std::string& uuid) {
  allowed_.erase(uuid);
  auto peer = peers_.find(uuid);
  if (peer == peers_.end() || !peer->second.live) return;
  peer->second.live = false;
  uint64_t number = peer->second.generation;
  --generations_.at(number).live;
  CloseIfDone(number);
}

void EngineGateway::CloseIfDone(uint64_t number) {
  auto it = generations_.find(number);
  if (it == generations_.end() || it->second.opened < generation_size_ || it->second.live > 0) return;
  // Full, and every engine in it gone: closing its socket frees all of their pipes at once.
  reactor_->remove(it->second.inside);
  it->second.inside.set(zmq::sockopt::linger, 0);
  it->second.inside.close();
  generations_.erase(it);
  std::erase_if(peers_, [number](const auto& kv) { return kv.second.generation == number; });
  log_->debug("gateway: closed generation {} of {} engines, all gone", number, generation_size_);
}

zmq::socket_t* EngineGateway::Open(const std::string& uuid) {
  if (auto peer = peers_.find(uuid); peer != peers_.end()) {
    Generation& g = generations_.at(peer->second.generation);
    if (!peer->second.live) {  // back: its pipes are still there
      peer->second.live = true;
      ++g.live;
    }
    return &g.inside;
  }
  // Not let in by the hub (yet: a restarted controller's hub names its restored engines as it
  // starts; an engine says hello again until it is pinged).
  if (!allowed_.count(uuid)) OnAllow();  // the hub's word may be waiting behind the hello
  if (!allowed_.count(uuid)) {
    log_->debug("gateway: dropped a message from {}, which the hub did not let in through the gateway", uuid);
    return nullptr;
  }
  if (generations_.empty() || generations_.rbegin()->second.opened >= generation_size_) {
    uint64_t number = next_generation_++;
    Generation& fresh = generations_[number];
    fresh.inside = zmq::socket_t(context_, zmq::socket_type::router);
    protocol::ConfigureUnbounded(fresh.inside);
    fresh.inside.set(zmq::sockopt::router_mandatory, 1);
    zmq::socket_t* inside = &fresh.inside;
    reactor_->add(fresh.inside, [this, inside] { FromInside(*inside); });
  }
  uint64_t number = generations_.rbegin()->first;
  Generation& g = generations_.rbegin()->second;
  // The hub let it in, so its uuid was a valid routing id for the registration socket; these
  // cannot throw short of a broken libzmq.
  g.inside.set(zmq::sockopt::routing_id, uuid);
  for (std::string_view channel : gw::kRouted) {
    g.inside.set(zmq::sockopt::connect_routing_id, PipeName(channel, uuid));
    g.inside.connect(gw::InternalUrl(channel));
  }
  Reactor::NoteUse(g.inside.handle());  // connect() may have taken in the signal of a message
  ++g.opened;
  ++g.live;
  peers_.emplace(uuid, Peer{number});
  log_->debug("gateway: engine {} opened its channels (generation {})", uuid, number);
  return &g.inside;
}

void EngineGateway::FromEngines() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    std::optional<Frames> frames = protocol::TryRecv(engines_);
    if (!frames) return;
    if (frames->size() < 2) {
      log_->warn("gateway: dropped a message without a channel");
      continue;
    }
    std::string uuid(protocol::view((*frames)[0]));
    std::string_view channel = protocol::view((*frames)[1]);
    if (auto peer = peers_.find(uuid); peer != peers_.end()) peer->second.pinged = true;
    if (channel == gw::kIopub) {
      frames->erase(frames->begin(), frames->begin() + 2);
      protocol::Send(iopub_, std::move(*frames));
      continue;
    }
    bool routed = gw::IsRouted(channel);
    if (!routed && channel != gw::kHello) {
      log_->warn("gateway: dropped a message from {} on unknown channel '{}'", uuid, channel);
      continue;
    }
    zmq::socket_t* inside = Open(uuid);
    if (!inside || !routed) continue;
    // The routing id of the engine's pipe for this channel replaces the engine's own.
    (*frames)[0] = Frame(PipeName(channel, uuid));
    frames->erase(frames->begin() + 1);
    protocol::Send(*inside, std::move(*frames));
  }
}

void EngineGateway::FromInside(zmq::socket_t& inside) {
  for (int n = 0; n < protocol::kBatch; ++n) {
    std::optional<Frames> frames = protocol::TryRecv(inside);
    if (!frames || frames->empty()) return;
    std::string_view key = protocol::view((*frames)[0]);
    size_t colon = key.find(':');
    if (colon == std::string_view::npos) continue;  // cannot happen: every pipe has a PipeName
    zmq::message_t channel = Frame(key.substr(0, colon));
    (*frames)[0] = Frame(key.substr(colon + 1));
    frames->insert(frames->begin() + 1, std::move(channel));
    to_engines_.Send(std::move(*frames));
  }
}

void EngineGateway::OnPing() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    std::optional<Frames> ping = protocol::TryRecv(ping_);
    if (!ping) return;
    for (auto& [uuid, peer] : peers_) {
      if (!peer.pinged || !peer.live) continue;
      Frames frames;
      frames.reserve(ping->size() + 2);
      frames.push_back(Frame(uuid));
      frames.push_back(Frame(gw::kPing));
      for (zmq::message_t& part : protocol::ShareFrames(*ping)) frames.push_back(std::move(part));
      // A connection that is gone gets no more pings until the engine speaks again.
      if (!protocol::Send(engines_, std::move(frames), true)) peer.pinged = false;
    }
  }
}

}  // namespace ipp::controller

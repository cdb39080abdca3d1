#include "engine/gateway_link.hpp"

#include <climits>

#include "protocol/curve.hpp"
#include "protocol/gateway.hpp"
#include "protocol/message.hpp"

namespace ipp::engine {

namespace gw = protocol::gateway;

void ConfigureEngineSocket(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, 1000);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
}

GatewayLink::GatewayLink(zmq::context_t& context, Logger log)
    : context_(context),
      log_(std::move(log)),
      gateway_(context, zmq::socket_type::dealer),
      iopub_(context, zmq::socket_type::sub),
      ping_(context, zmq::socket_type::pub) {
  for (std::string_view channel : gw::kRouted) {
    zmq::socket_t& s = routed_.emplace(std::string(channel), zmq::socket_t(context, zmq::socket_type::dealer)).first->second;
    // The engine's ROUTER sockets (shell, control) see this as the peer's name.
    s.set(zmq::sockopt::routing_id, channel);
  }
}

std::string GatewayLink::Url(std::string_view channel) { return "inproc://ipp-link-" + std::string(channel); }

Status GatewayLink::Open(const std::string& url, const std::string& uuid, const std::optional<std::string>& curve_serverkey) {
  for (auto& [channel, socket] : routed_) {
    ConfigureEngineSocket(socket);
    socket.bind(Url(channel));
  }
  ConfigureEngineSocket(iopub_);
  iopub_.set(zmq::sockopt::subscribe, "");
  iopub_.bind(Url(gw::kIopub));
  ConfigureEngineSocket(ping_);
  ping_.bind(Url(gw::kPing));
  ConfigureEngineSocket(gateway_);
  gateway_.set(zmq::sockopt::routing_id, uuid);
  if (curve_serverkey) {
    if (Status s = protocol::SetUpCurveClient(gateway_, *curve_serverkey); !s.ok()) return s;
  }
  watch_.emplace(context_, gateway_);
  gateway_.connect(url);
  Hello();
  log_->info("channels go through the controller's gateway at {}", url);
  return Status::OK();
}

void GatewayLink::Hello() {
  protocol::Frames hello;
  hello.emplace_back(gw::kHello.data(), gw::kHello.size());
  protocol::Send(gateway_, std::move(hello));
}

void GatewayLink::Attach(Reactor& reactor) {
  reactor.add(gateway_, [this] { FromGateway(); });
  reactor.add(watch_->events(), [this] {
    size_t handshakes = watch_->handshakes();
    if (handshakes > 1 && handshakes > handshakes_seen_) Hello();  // the first went with Open's
    handshakes_seen_ = handshakes;
  });
  for (auto& [channel, socket] : routed_) {
    reactor.add(socket, [this, &socket = socket, channel = std::string_view(channel)] { ToGateway(socket, channel); });
  }
  reactor.add(iopub_, [this] { ToGateway(iopub_, gw::kIopub); });
}

void GatewayLink::FromGateway() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    std::optional<protocol::Frames> frames = protocol::TryRecv(gateway_);
    if (!frames) return;
    if (frames->empty()) continue;
    std::string_view channel = protocol::view(frames->front());
    zmq::socket_t* to = nullptr;
    if (channel == gw::kPing) {
      to = &ping_;
    } else if (auto it = routed_.find(channel); it != routed_.end()) {
      to = &it->second;
    } else {
      log_->warn("dropped a message from the gateway on unknown channel '{}'", channel);
      continue;
    }
    frames->erase(frames->begin());
    if (!protocol::Send(*to, std::move(*frames), true)) log_->warn("dropped a message from the gateway: no one reads its channel yet");
  }
}

void GatewayLink::ToGateway(zmq::socket_t& socket, std::string_view channel, int most) {
  for (int n = 0; n < most; ++n) {
    std::optional<protocol::Frames> frames = protocol::TryRecv(socket);
    if (!frames) return;
    frames->emplace(frames->begin(), channel.data(), channel.size());
    protocol::Send(gateway_, std::move(*frames));
  }
}

void GatewayLink::Drain() {
  for (auto& [channel, socket] : routed_) ToGateway(socket, channel, INT_MAX);
  ToGateway(iopub_, gw::kIopub, INT_MAX);
}

}  // namespace ipp::engine

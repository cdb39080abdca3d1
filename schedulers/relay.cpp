#include "schedulers/relay.hpp"

#include "protocol/errors.hpp"
#include "protocol/json_fields.hpp"

namespace ipp::schedulers {

using protocol::Frames;
using protocol::RawMessage;
namespace monitor = protocol::monitor;

RouterRelay::RouterRelay(zmq::context_t& context, const std::string& key, std::optional<monitor::Topic> in_topic,
                         std::optional<monitor::Topic> out_topic, std::chrono::milliseconds patience, Logger log,
                         std::optional<RequestChannel> carries)
    : session_(key),
      in_topic_(in_topic),
      out_topic_(out_topic),
      log_(std::move(log)),
      carries_(carries),
      client_(context, zmq::socket_type::router),
      engine_(context, zmq::socket_type::router),
      monitor_(context, zmq::socket_type::push),
      abort_tap_(context, zmq::socket_type::push),
      to_engines_(engine_, patience) {
  for (zmq::socket_t* s : {&client_, &engine_, &monitor_, &abort_tap_}) protocol::ConfigureUnbounded(*s);
  // Unknown destinations fail loudly (EHOSTUNREACH) instead of vanishing, so we can answer.
  client_.set(zmq::sockopt::router_mandatory, 1);
  engine_.set(zmq::sockopt::router_mandatory, 1);
}

void RouterRelay::TapAborts(const std::string& url) {
  abort_tap_.connect(url);
  tap_aborts_ = true;
}

void RouterRelay::TapAbort(const RawMessage& raw) {
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  if (!header.ok() || header->string("msg_type") != "abort_request") return;
  std::string_view content = raw.part(RawMessage::kContent);
  Frames tap;
  tap.emplace_back(content.data(), content.size());
  protocol::Send(abort_tap_, std::move(tap));
}

void RouterRelay::Attach(Reactor& reactor) {
  // Bounded batches so one busy direction cannot starve the other; the reactor asks a socket
  // whose handler ran again before it sleeps, and comes straight back for what is left.
  reactor.add(client_, [this] {
    for (int i = 0; i < protocol::kBatch && Forward(client_, engine_, in_topic_, true); ++i) {
    }
  });
  reactor.add(engine_, [this] {
    for (int i = 0; i < protocol::kBatch && Forward(engine_, client_, out_topic_, false); ++i) {
    }
  });
  to_engines_.Attach(reactor, [this](Frames&& frames) {
    Result<RawMessage> raw = RawMessage::FromFrames(std::move(frames));
    if (raw.ok()) ReplyUnroutable(*raw);
  });
}

bool RouterRelay::Forward(zmq::socket_t& from, zmq::socket_t& to, std::optional<monitor::Topic> topic,
                          bool to_engine) {
  auto frames = protocol::TryRecv(from);
  if (!frames) return false;
  Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
  if (!raw.ok()) {
    log_->warn("dropped malformed message: {}", raw.status().ToString());
    return true;
  }
  if (raw->identity_count() < 2) {
    log_->warn("dropped message without a destination id");
    return true;
  }
  if (Status s = session_.verify(*raw); !s.ok()) {
    log_->warn("dropped message from {:?}: {}", raw->identity(0), s.ToString());
    return true;
  }
  if (to_engine && carries_ && !Carried(*raw)) return true;
  raw->swap_first_identities();
  if (to_engine) {
    // A request: on its way before the hub hears of it.
    Frames report = topic ? monitor::Report(*topic, raw->frames()) : Frames{};
    if (tap_aborts_) TapAbort(*raw);
    to_engines_.Send(std::move(*raw).release());  // waits for an engine still connecting
    if (!report.empty()) protocol::Send(monitor_, std::move(report));
    return true;
  }
  // A reply: the hub hears of it first, so that a client holding it finds it in any query.
  if (topic) monitor::Send(monitor_, *topic, raw->frames());
  if (!protocol::Send(to, std::move(*raw).release(), true)) {
    SPDLOG_LOGGER_DEBUG(log_, "client gone; reply dropped");
  }
  return true;
}

bool RouterRelay::Carried(RawMessage& raw) {
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  std::optional<std::string> type = header.ok() ? header->string("msg_type") : std::nullopt;
  if (!type) {
    log_->warn("dropped message from {:?} without a msg_type", raw.identity(0));
    return false;
  }
  if (Carries(*carries_, *type)) return true;
  log_->warn("refused a {} from {:?}: not a request this channel carries", *type, raw.identity(0));
  protocol::Send(client_, Refusal(session_, *carries_, raw, *type), true);
  return false;
}

void RouterRelay::ReplyUnroutable(RawMessage& raw) {
  // raw is [engine, client, ...] after the swap: the engine is not connected.
  std::string engine(raw.identity(0));
  Result<nlohmann::json> header = raw.parse_object(RawMessage::kHeader);
  if (!header.ok()) return;
  // Fields of any type: a signed message with a number for its msg_id still gets its reply.
  std::string type = protocol::StringField(*header, "msg_type");
  if (type.empty()) type = "apply_request";
  log_->warn("no engine {:?} connected for {} {}", engine, type, protocol::StringField(*header, "msg_id"));
  protocol::Message reply = session_.make(
      ReplyType(type), protocol::ErrorContent("EngineError", "engine '" + engine + "' is not connected"),
      *header, {{"status", "error"}, {"engine", engine}});
  reply.identities.emplace_back(raw.identity(1).data(), raw.identity(1).size());
  reply.identities.emplace_back(engine.data(), engine.size());
  protocol::Send(client_, session_.serialize(std::move(reply)), true);
}

IopubRelay::IopubRelay(zmq::context_t& context, const std::string& key, int subscriber_backlog, Logger log)
    : session_(key),
      log_(std::move(log)),
      engine_(context, zmq::socket_type::sub),
      client_(context, zmq::socket_type::xpub),
      monitor_(context, zmq::socket_type::push) {
  for (zmq::socket_t* s : {&engine_, &client_, &monitor_}) protocol::ConfigureUnbounded(*s);
  // Every subscription, also a repeated one (each new client subscribes to ""), is passed up.
  client_.set(zmq::sockopt::xpub_verbose, 1);
  // Unbounded by default, as in the stock relay: clients wait for each request's IOPub "idle"
  // (the stock AsyncResult does), so a slow subscriber must not miss one. A bound protects the
  // controller from subscribers that stop reading for good; past it they miss output.
  client_.set(zmq::sockopt::sndhwm, subscriber_backlog);
  engine_.set(zmq::sockopt::subscribe, "");
}

void IopubRelay::Attach(Reactor& reactor) {
  reactor.add(engine_, [this] {
    for (int i = 0; i < protocol::kBatch; ++i) {
      auto frames = protocol::TryRecv(engine_);
      if (!frames) return;
      Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
      if (!raw.ok()) {
        log_->warn("dropped malformed iopub message: {}", raw.status().ToString());
        continue;
      }
      if (Status s = session_.verify(*raw); !s.ok()) {
        log_->warn("dropped iopub message: {}", s.ToString());
        continue;
      }
      // The hub records output, never an engine's busy/idle: those (two per request) stay off
      // the monitor channel.
      if (!IsStatus(*raw)) monitor::Send(monitor_, monitor::Topic::kIopub, raw->frames());  // first, as for replies
      protocol::Send(client_, std::move(*raw).release());
    }
  });
  reactor.add(client_, [this] { OnSubscriptions(); });
}

bool IopubRelay::IsStatus(const RawMessage& raw) {
  // Most output is not a status: a header without the word needs no scan.
  if (raw.part(RawMessage::kHeader).find("\"status\"") == std::string_view::npos) return false;
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  return header.ok() && header->string("msg_type") == "status";
}

void IopubRelay::OnSubscriptions() {
  for (int i = 0; i < protocol::kBatch; ++i) {
    std::optional<protocol::Subscription> subscription = protocol::TryRecvSubscription(client_);
    if (!subscription) return;
    if (!subscription->subscribe) continue;
    const std::string& topic = subscription->topic;
    protocol::Message welcome = session_.make("iopub_welcome", {{"subscription", topic}});
    // The topic as the first frame, so that a prefix subscription matches it too.
    if (!topic.empty()) welcome.identities.emplace_back(topic.data(), topic.size());
    SPDLOG_LOGGER_DEBUG(log_, "welcomed an IOPub subscriber");
    protocol::Send(client_, session_.serialize(std::move(welcome)));
  }
}

}  // namespace ipp::schedulers

// Hub: construction, sockets, the query dispatch, notifications, connection and shutdown.
// The rest of the Hub is in hub_engines.cpp, hub_queries.cpp and hub_monitor.cpp.
#include "controller/hub.hpp"

#include <algorithm>
#include <fstream>

#include "common/endpoint.hpp"
#include "protocol/clock.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/curve.hpp"
#include "protocol/errors.hpp"
#include "protocol/gateway.hpp"
#include "protocol/json_fields.hpp"

namespace ipp::controller {

using nlohmann::json;
using protocol::Frames;
using protocol::Message;
using protocol::RawMessage;


Hub::Hub(zmq::context_t& context, const std::string& key, HubOptions options,
         std::unique_ptr<TaskStore> store, Logger log, ShutdownCallback on_shutdown)
    : session_(key),
      options_(std::move(options)),
      store_(std::move(store)),
      log_(std::move(log)),
      on_shutdown_(std::move(on_shutdown)),
      query_(context, zmq::socket_type::router),
      notifier_(context, zmq::socket_type::xpub),
      internal_notifier_(context, zmq::socket_type::xpub),
      monitor_(context, zmq::socket_type::pull),
      resubmit_(context, zmq::socket_type::dealer),
      gateway_allow_(context, zmq::socket_type::push),
      heart_(context, options_.ping_period, options_.max_heartbeat_misses,
             {[this](const std::vector<std::string>& hearts) {
                for (const auto& h : hearts) {
                  if (incoming_.count(h)) FinishRegistration(h);
                }
              },
              [this](const std::vector<std::string>& hearts) {
                for (const auto& h : hearts) {
                  auto it = by_uuid_.find(h);
                  if (it != by_uuid_.end()) {
                    UnregisterEngine(it->second, "it stopped answering heartbeats (" +
                                                     std::to_string(options_.max_heartbeat_misses) + " missed, every " +
                                                     std::to_string(options_.ping_period.count()) + " ms)",
                                     true);
                  }
                }
              },
              [this](const std::string& heart) {
                if (dashboard_) dashboard_->Heartbeat(heart);
              }},
             log_) {
  query_handlers_ = {
      {"connection_request", {&Hub::ConnectionRequest, false}},
      {"registration_request", {&Hub::RegistrationRequest, false}},
      {"unregistration_request", {&Hub::UnregistrationRequest, false}},  // catches up itself
      {"ipp_engine_update", {&Hub::EngineUpdate, false}},
      {"ipp_engine_exit_request", {&Hub::EngineExit, false}},  // catches up itself
      {"ipp_plugins_request", {&Hub::PluginsRequest, false}},
      {"queue_request", {&Hub::QueueRequest, true}},
      {"load_request", {&Hub::LoadRequest, true}},
      {"result_request", {&Hub::ResultRequest, true}},
      {"history_request", {&Hub::HistoryRequest, true}},
      {"db_request", {&Hub::DbRequest, true}},
      {"purge_request", {&Hub::PurgeRequest, true}},
      {"resubmit_request", {&Hub::ResubmitRequest, true}},
      {"shutdown_request", {&Hub::ShutdownRequest, false}},
  };
  for (zmq::socket_t* s : {&query_, &notifier_, &internal_notifier_, &monitor_, &resubmit_}) {
    s->set(zmq::sockopt::linger, 0);
  }
  query_.set(zmq::sockopt::sndhwm, 0);
  query_.set(zmq::sockopt::rcvhwm, 0);
  for (zmq::socket_t* s : {&notifier_, &internal_notifier_}) {
    s->set(zmq::sockopt::sndhwm, 0);
    s->set(zmq::sockopt::xpub_verbose, 1);  // every subscription, also a repeated one
  }
  monitor_.set(zmq::sockopt::rcvhwm, 0);
  // The task scheduler answers a request sent with this id and a client's to that client.
  resubmit_.set(zmq::sockopt::routing_id, protocol::monitor::kHubRoutingId);
}

Hub::BoundPorts Hub::Bind() {
  options_.secure(query_);
  options_.secure(notifier_);
  BoundPorts ports{};
  query_.bind(options_.query_url);
  ports.registration = BoundPort(query_);
  internal_notifier_.bind(options_.internal_notification_url);
  notifier_.bind(options_.notification_url);
  ports.notification = BoundPort(notifier_);
  monitor_.bind(options_.monitor_url);
  auto [ping, pong] = heart_.Bind(options_.ping_url, options_.pong_url, options_.secure);
  ports.hb_ping = ping;
  ports.hb_pong = pong;
  if (!options_.local_interface.empty()) {
    query_.bind(protocol::ChannelUrl(options_.local_interface, ports.registration));
    notifier_.bind(protocol::ChannelUrl(options_.local_interface, ports.notification));
    heart_.BindAlso(protocol::ChannelUrl(options_.local_interface, ping), protocol::ChannelUrl(options_.local_interface, pong));
  }
  if (options_.gateway != GatewayUse::kNever) {
    heart_.BindAlso(protocol::gateway::InternalUrl(protocol::gateway::kPing), protocol::gateway::InternalUrl("hb_pong"));
  }
  return ports;
}

void Hub::Attach(Reactor& reactor) {
  reactor_ = &reactor;
  if (!options_.curve_serverkey.empty()) {
    // The controller checked CURVE support before it built the hub, so this cannot fail short of
    // a broken libzmq; resubmitted tasks would then wait in the unconnected socket.
    if (Status s = protocol::SetUpCurveClient(resubmit_, options_.curve_serverkey); !s.ok()) {
      log_->error("resubmit_request cannot reach the task scheduler: {}", s.ToString());
    }
  }
  resubmit_.connect(options_.resubmit_url);
  if (options_.gateway != GatewayUse::kNever) {
    protocol::ConfigureUnbounded(gateway_allow_);
    gateway_allow_.connect(protocol::gateway::kAllowUrl);
  }
  reactor.add(query_, [this] { OnQuery(); });
  reactor.add(notifier_, [this] { OnNotificationSubscriptions(notifier_); });
  reactor.add(internal_notifier_, [this] { OnNotificationSubscriptions(internal_notifier_); });
  reactor.add(monitor_, [this] { OnMonitor(); });
  reactor.add(resubmit_, [this] {
    while (protocol::TryRecv(resubmit_)) {
    }  // replies to resubmitted tasks live in the DB; nobody waits on this socket
  });
  heart_.Attach(reactor);
  if (store_->flushes() || journal_) {  // DictDB without a journal has nothing to flush
    reactor.every(TaskStore::kFlushPeriod, [this] {
      store_->Flush();
      if (journal_) journal_->Flush();
    });
  }
  if (options_.restore) LoadEngineState();
  if (options_.restore && journal_) RestoreTasks();
  log_->info("hub ready, task database: {}", store_->name());
}

// ---------------------------------------------------------------------------------------------
// Query channel

void Hub::OnQuery() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(query_);
    if (!frames) break;
    Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
    if (!raw.ok()) {
      log_->warn("dropped query: {}", raw.status().ToString());
      continue;
    }
    if (raw->identity_count() == 0) {
      log_->warn("dropped query without a routing id");
      continue;
    }
    std::string client(raw->identity(0));
    Result<Message> parsed = session_.parse(std::move(raw).value());
    if (!parsed.ok()) {
      // Unsigned or forged: log and drop. Answering would let anyone probe the hub.
      log_->warn("dropped query from {}: {}", protocol::PeerName(client), parsed.status().ToString());
      continue;
    }
    Message& m = *parsed;
    auto handler = query_handlers_.find(m.msg_type());
    SPDLOG_LOGGER_DEBUG(log_, "client {} requested {} ({})", protocol::PeerName(client), m.msg_type(), m.msg_id());
    if (handler == query_handlers_.end()) {
      log_->error("unknown query type {:?} from {}", m.msg_type(), protocol::PeerName(client));
      Reply(m, "hub_error", protocol::ErrorContent("KeyError", "Bad Message Type: '" + m.msg_type() + "'"));
      continue;
    }
    // Before each such query, not once per batch: a query read later in the batch may come from
    // a client that has since been given a result whose report reached the monitor channel after
    // the last catch-up (the hub thread may lose its core between two reads). With nothing
    // waiting there this costs one non-blocking read.
    if (handler->second.needs_monitor) CatchUpMonitor();
    try {
      (this->*(handler->second.handler))(m);
    } catch (const json::exception& e) {
      log_->error("malformed {} from {}: {}", m.msg_type(), protocol::PeerName(client), e.what());
      Reply(m, "hub_error", protocol::ErrorContent("ValueError", std::string("malformed ") + m.msg_type() + ": " + e.what()));
    }
  }
}

void Hub::Reply(Message& request, std::string_view msg_type, json content, Frames buffers) {
  Message reply = session_.make(msg_type, std::move(content), request.header);
  reply.identities = std::move(request.identities);
  reply.buffers = std::move(buffers);
  protocol::Send(query_, session_.serialize(std::move(reply)));
}

void Hub::Notify(std::string_view msg_type, json content) {
  // One signed message, sent on both sockets.
  protocol::Frames frames = session_.serialize(session_.make(msg_type, std::move(content)));
  protocol::Frames copy;
  for (const zmq::message_t& f : frames) copy.emplace_back(f.data(), f.size());
  protocol::Send(internal_notifier_, std::move(copy));
  protocol::Send(notifier_, std::move(frames));
}

void Hub::NotifyInternal(std::string_view msg_type, json content) {
  protocol::Send(internal_notifier_, session_.serialize(session_.make(msg_type, std::move(content))));
}

json Hub::RegistrationNotice(int id, const Engine& engine) const {
  json content = {{"id", id}, {"uuid", engine.uuid}};
  if (engine.capabilities) content["ipp"] = engine.capabilities->ToJson();
  return content;
}

void Hub::OnNotificationSubscriptions(zmq::socket_t& notifier) {
  for (int n = 0; n < protocol::kBatch; ++n) {
    std::optional<protocol::Subscription> subscription = protocol::TryRecvSubscription(notifier);
    if (!subscription) return;
    if (!subscription->subscribe) continue;
    // Clients subscribe after their connection_reply listed the engines: an engine registered
    // in between would be announced before the subscription took effect, and never be known.
    // So every live engine is announced again to each new subscriber (clients take a repeated
    // registration_notification as the same engine), on the socket it subscribed to.
    for (const auto& [id, e] : engines_) {
      protocol::Send(notifier, session_.serialize(session_.make("registration_notification", RegistrationNotice(id, e))));
    }
  }
}

void Hub::ConnectionRequest(Message& m) {
  json engines = json::object();
  for (const auto& [id, e] : engines_) engines[std::to_string(id)] = e.uuid;
  std::string client(protocol::view(m.identities[0]));
  if (FirstConnection(client)) {
    log_->info("client {} connected", protocol::PeerName(client));
  } else {
    SPDLOG_LOGGER_DEBUG(log_, "client {} connected again", protocol::PeerName(client));
  }
  // iopub_welcome: our IOPub relay greets each subscriber (see IopubRelay), so a client can wait
  // until its subscription is in place. Stock clients ignore the extra field.
  // ipp_controller: this controller process; our client, seeing it change, knows the controller
  // was restarted and recovers its unanswered tasks (PROTOCOL.md).
  Reply(m, "connection_reply",
        {{"status", "ok"}, {"engines", engines}, {"iopub_welcome", true}, {"ipp_controller", instance_}});
}

bool Hub::FirstConnection(const std::string& client) {
  if (clients_newer_.count(client)) return false;
  bool known = clients_older_.erase(client) > 0;
  if (clients_newer_.size() >= kKnownClients / 2) {
    clients_older_ = std::move(clients_newer_);
    clients_newer_ = {};
  }
  clients_newer_.insert(client);
  return !known;
}


void Hub::ShutdownRequest(Message& m) {
  log_->info("shutdown requested by client {}", protocol::PeerName(protocol::view(m.identities[0])));
  json parent = m.header;
  Reply(m, "shutdown_reply", {{"status", "ok"}});
  protocol::Send(notifier_, session_.serialize(session_.make("shutdown_notification", {{"status", "ok"}}, parent)));
  if (shutting_down_) return;
  shutting_down_ = true;
  // Give the replies time to leave before the process goes, as the stock hub does.
  reactor_->after(std::chrono::milliseconds(1000), [this] {
    if (on_shutdown_) on_shutdown_();
  });
}


}  // namespace ipp::controller

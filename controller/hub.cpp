#include "controller/hub.hpp"

#include <algorithm>
#include <fstream>

#include "common/endpoint.hpp"
#include "protocol/clock.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/errors.hpp"
#include "protocol/json_fields.hpp"

namespace ipp::controller {

using nlohmann::json;
using protocol::Frames;
using protocol::Message;
using protocol::RawMessage;

namespace {

std::string Text(const RawMessage& raw, RawMessage::Part part) {
  std::string_view v = raw.part(part);
  return (v == "{}" || v == "null") && part != RawMessage::kHeader ? std::string() : std::string(v);
}

std::string StringField(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The same for message parts read without building a tree (the monitor channel's hot path).
std::string StringField(const protocol::PartFields& fields, const char* key) {
  return fields.string(key).value_or("");
}

std::optional<TimePoint> DateField(const protocol::PartFields& fields, const char* key) {
  auto text = fields.string(key);
  return text ? protocol::ParseIso8601(*text) : std::nullopt;
}

template <typename C>
void EraseValue(C& container, const std::string& value) {
  auto it = std::find(container.begin(), container.end(), value);
  if (it != container.end()) container.erase(it);
}

}  // namespace

Hub::Hub(zmq::context_t& context, const std::string& key, HubOptions options,
         std::unique_ptr<TaskStore> store, Logger log, ShutdownCallback on_shutdown)
    : session_(key),
      options_(std::move(options)),
      store_(std::move(store)),
      log_(std::move(log)),
      on_shutdown_(std::move(on_shutdown)),
      query_(context, zmq::socket_type::router),
      notifier_(context, zmq::socket_type::xpub),
      monitor_(context, zmq::socket_type::pull),
      resubmit_(context, zmq::socket_type::dealer),
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
                                                     std::to_string(options_.ping_period.count()) + " ms)");
                  }
                }
              }},
             log_) {
  query_handlers_ = {
      {"connection_request", &Hub::ConnectionRequest},
      {"registration_request", &Hub::RegistrationRequest},
      {"unregistration_request", &Hub::UnregistrationRequest},
      {"queue_request", &Hub::QueueRequest},
      {"load_request", &Hub::LoadRequest},
      {"result_request", &Hub::ResultRequest},
      {"history_request", &Hub::HistoryRequest},
      {"db_request", &Hub::DbRequest},
      {"purge_request", &Hub::PurgeRequest},
      {"resubmit_request", &Hub::ResubmitRequest},
      {"shutdown_request", &Hub::ShutdownRequest},
  };
  for (zmq::socket_t* s : {&query_, &notifier_, &monitor_, &resubmit_}) {
    s->set(zmq::sockopt::linger, 0);
  }
  query_.set(zmq::sockopt::sndhwm, 0);
  query_.set(zmq::sockopt::rcvhwm, 0);
  notifier_.set(zmq::sockopt::sndhwm, 0);
  notifier_.set(zmq::sockopt::xpub_verbose, 1);  // every subscription, also a repeated one
  monitor_.set(zmq::sockopt::rcvhwm, 0);
}

Hub::BoundPorts Hub::Bind() {
  options_.secure(query_);
  options_.secure(notifier_);
  BoundPorts ports{};
  query_.bind(options_.query_url);
  ports.registration = BoundPort(query_);
  notifier_.bind(options_.internal_notification_url);
  notifier_.bind(options_.notification_url);
  ports.notification = BoundPort(notifier_);
  monitor_.bind(options_.monitor_url);
  auto [ping, pong] = heart_.Bind(options_.ping_url, options_.pong_url, options_.secure);
  ports.hb_ping = ping;
  ports.hb_pong = pong;
  return ports;
}

void Hub::Attach(Reactor& reactor) {
  reactor_ = &reactor;
  if (!options_.curve_serverkey.empty()) {
    char public_key[41], secret_key[41];
    zmq_curve_keypair(public_key, secret_key);  // encryption only; we authenticate by HMAC
    resubmit_.set(zmq::sockopt::curve_serverkey, options_.curve_serverkey);
    resubmit_.set(zmq::sockopt::curve_publickey, std::string(public_key));
    resubmit_.set(zmq::sockopt::curve_secretkey, std::string(secret_key));
  }
  resubmit_.connect(options_.resubmit_url);
  reactor.add(query_, [this] { OnQuery(); });
  reactor.add(notifier_, [this] { OnNotificationSubscriptions(); });
  reactor.add(monitor_, [this] { OnMonitor(); });
  reactor.add(resubmit_, [this] {
    while (protocol::TryRecv(resubmit_)) {
    }  // replies to resubmitted tasks live in the DB; nobody waits on this socket
  });
  heart_.Attach(reactor);
  reactor.every(std::chrono::milliseconds(20), [this] { store_->Flush(); });
  if (options_.restore) LoadEngineState();
  log_->info("hub ready, task database: {}", store_->name());
}

// ---------------------------------------------------------------------------------------------
// Query channel

void Hub::OnQuery() {
  CatchUpMonitor();
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
    try {
      (this->*(handler->second))(m);
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
  protocol::Send(notifier_, session_.serialize(session_.make(msg_type, std::move(content))));
}

void Hub::OnNotificationSubscriptions() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    zmq::message_t frame;
    if (!notifier_.recv(frame, zmq::recv_flags::dontwait)) return;
    // 1 + topic subscribes; 0 + topic unsubscribes.
    if (frame.size() == 0 || frame.data<char>()[0] != 1) continue;
    // Clients subscribe after their connection_reply listed the engines: an engine registered
    // in between would be announced before the subscription took effect, and never be known.
    // So every live engine is announced again to each new subscriber (clients take a repeated
    // registration_notification as the same engine).
    for (const auto& [id, e] : engines_) Notify("registration_notification", {{"id", id}, {"uuid", e.uuid}});
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
  Reply(m, "connection_reply", {{"status", "ok"}, {"engines", engines}, {"iopub_welcome", true}});
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

int Hub::NewEngineId(const json& requested) {
  if (requested.is_number_integer()) {
    int want = requested.get<int>();
    bool pending = std::any_of(incoming_.begin(), incoming_.end(),
                               [&](const auto& kv) { return kv.second.id == want; });
    if (want >= 0 && !engines_.count(want) && !pending) {
      next_id_ = std::max(next_id_, want + 1);
      return want;
    }
    log_->warn("engine id {} requested but in use; assigning another", want);
  }
  return next_id_++;
}

void Hub::RegistrationRequest(Message& m) {
  const json& uuid_value = m.content.at("uuid");
  if (!uuid_value.is_string() || uuid_value.get_ref<const std::string&>().empty()) {
    Reply(m, "registration_reply", protocol::ErrorContent("ValueError", "registration needs a uuid string"));
    return;
  }
  std::string uuid = uuid_value.get<std::string>();
  if (by_uuid_.count(uuid) || incoming_.count(uuid)) {
    log_->error("registration refused: uuid {} in use", uuid);
    Reply(m, "registration_reply", protocol::ErrorContent("KeyError", "uuid '" + uuid + "' in use"));
    return;
  }
  int id = NewEngineId(m.content.value("id", json()));
  Reply(m, "registration_reply",
        {{"status", "ok"},
         {"id", id},
         {"hb_period", options_.ping_period.count()},
         {"connection_info", options_.engine_info}});
  auto stall = reactor_->after(options_.registration_timeout, [this, uuid] {
    auto it = incoming_.find(uuid);
    if (it == incoming_.end()) return;
    log_->warn("purging stalled registration {}:{} (no heartbeat within {} ms)", it->second.id,
               uuid, options_.registration_timeout.count());
    incoming_.erase(it);
  });
  incoming_[uuid] = Incoming{id, uuid, stall};
  log_->info("accepting registration {}:{}", id, uuid);
  // Beat again soon, so the new engine's first echo does not wait for the next period.
  if (!reping_timer_) {
    reping_timer_ = reactor_->every(std::chrono::milliseconds(100), [this] {
      if (incoming_.empty()) {
        reactor_->cancel(reping_timer_);
        reping_timer_ = 0;
        return;
      }
      heart_.PingNow();
    });
  }
}

void Hub::FinishRegistration(const std::string& uuid) {
  auto it = incoming_.find(uuid);
  if (it == incoming_.end()) return;
  Incoming reg = it->second;
  incoming_.erase(it);
  if (reg.stall_timer) reactor_->cancel(reg.stall_timer);
  engines_[reg.id] = Engine{reg.id, uuid, {}, {}, 0, {}};
  by_uuid_[uuid] = reg.id;
  Notify("registration_notification", {{"id", reg.id}, {"uuid", uuid}});
  log_->info("engine {} connected ({})", reg.id, uuid);
  SaveEngineState();
}

void Hub::UnregistrationRequest(Message& m) {
  int id = m.content.at("id").get<int>();
  if (!engines_.count(id)) {
    // An engine that leaves before its first heartbeat: cancel its registration (as 9.1's hub
    // does), so that a heartbeat still in flight cannot complete it.
    auto pending = std::find_if(incoming_.begin(), incoming_.end(), [id](const auto& kv) { return kv.second.id == id; });
    if (pending != incoming_.end()) {
      if (pending->second.stall_timer) reactor_->cancel(pending->second.stall_timer);
      log_->info("registration of engine {} cancelled: it asked to leave", id);
      incoming_.erase(pending);
      return;
    }
    log_->info("unregistration of engine {}: already gone", id);
    return;
  }
  UnregisterEngine(id, "it asked to leave (unregistration_request)");
}

void Hub::UnregisterEngine(int id, const std::string& why) {
  CatchUpMonitor();  // the engine's queue must list what was last sent to it
  auto it = engines_.find(id);
  if (it == engines_.end()) return;
  Engine engine = std::move(it->second);
  engines_.erase(it);
  by_uuid_.erase(engine.uuid);
  heart_.Forget(engine.uuid);
  log_->warn("engine {} (uuid {}) unregistered: {}", id, engine.uuid, why);
  Notify("unregistration_notification", {{"id", id}, {"uuid", engine.uuid}, {"reason", why}});
  SaveEngineState();
  // MUX requests still on the engine fail with EngineError; the schedulers answer clients for
  // load-balanced ones. Wait a moment: a result may still be on its way.
  std::vector<std::string> stranded(engine.queue.begin(), engine.queue.end());
  if (!stranded.empty()) {
    reactor_->after(options_.ping_period, [this, id, uuid = engine.uuid, why, stranded] {
      HandleStranded(id, uuid, why, stranded);
    });
  }
}

void Hub::HandleStranded(int id, const std::string& uuid, const std::string& why, std::vector<std::string> msg_ids) {
  CatchUpMonitor();  // a result that came in the meantime must count
  for (const std::string& msg_id : msg_ids) {
    if (!pending_.erase(msg_id)) continue;  // its result arrived after all
    json content = protocol::ErrorContent("EngineError", protocol::EngineDiedText(id, uuid, msg_id, why));
    auto now = protocol::WallClock::now();
    json header = {{"engine", uuid}, {"date", protocol::Iso8601(now)}};
    (void)store_->Update(msg_id, [&](TaskRecord& r) {
      r.result_content = content.dump();
      r.result_header = header.dump();
      r.completed = now;
      r.engine_uuid = uuid;
    });
  }
}

Result<std::vector<int>> Hub::ValidateTargets(const json& targets) const {
  std::vector<int> ids;
  if (targets.is_null()) {
    for (const auto& [id, e] : engines_) ids.push_back(id);
    return ids;
  }
  json list = targets.is_array() ? targets : json::array({targets});
  for (const json& t : list) {
    if (t.is_number_integer()) {
      ids.push_back(t.get<int>());
    } else if (t.is_string()) {
      auto it = by_uuid_.find(t.get<std::string>());
      if (it == by_uuid_.end()) return Status::NotFound("No Such Engine: " + t.dump());
      ids.push_back(it->second);
    } else {
      return Status::InvalidArgument("invalid target " + t.dump());
    }
  }
  for (int id : ids) {
    if (!engines_.count(id)) return Status::NotFound("No Such Engine: [" + std::to_string(id) + "]");
  }
  if (ids.empty()) return Status::NotFound("No Engines Registered");
  return ids;
}

void Hub::QueueRequest(Message& m) {
  Result<std::vector<int>> targets = ValidateTargets(m.content.value("targets", json()));
  if (!targets.ok()) {
    Reply(m, "hub_error", protocol::ErrorContent("IndexError", targets.status().message()));
    return;
  }
  bool verbose = m.content.value("verbose", false);
  json content = {{"status", "ok"}};
  for (int id : *targets) {
    const Engine& e = engines_.at(id);
    if (verbose) {
      content[std::to_string(id)] = {{"queue", e.queue}, {"completed", e.recent_completed}, {"tasks", e.tasks}};
    } else {
      content[std::to_string(id)] = {
          {"queue", e.queue.size()}, {"completed", e.completed_count}, {"tasks", e.tasks.size()}};
    }
  }
  if (verbose) {
    content["unassigned"] = std::vector<std::string>(unassigned_.begin(), unassigned_.end());
  } else {
    content["unassigned"] = unassigned_.size();
  }
  Reply(m, "queue_reply", std::move(content));
}

void Hub::LoadRequest(Message& m) {
  Result<std::vector<int>> targets = ValidateTargets(m.content.value("targets", json()));
  if (!targets.ok()) {
    Reply(m, "hub_error", protocol::ErrorContent("IndexError", targets.status().message()));
    return;
  }
  json content = {{"status", "ok"}};
  for (int id : *targets) {
    const Engine& e = engines_.at(id);
    content[std::to_string(id)] = e.queue.size() + e.tasks.size();
  }
  Reply(m, "load_reply", std::move(content));
}

namespace {

// The part of a record that result_reply carries (hub.py _extract_record).
json ExtractRecord(const TaskRecord& r) {
  return {{"header", FieldValue(r, "header")},
          {"metadata", FieldValue(r, "metadata")},
          {"result_metadata", FieldValue(r, "result_metadata")},
          {"result_header", FieldValue(r, "result_header")},
          {"result_content", FieldValue(r, "result_content")},
          {"received", FieldValue(r, "received")},
          {"io",
           {{"execute_input", FieldValue(r, "execute_input")},
            {"execute_result", FieldValue(r, "execute_result")},
            {"error", FieldValue(r, "error")},
            {"stdout", r.stdout_text},
            {"stderr", r.stderr_text}}}};
}

void AppendShared(Frames& out, std::vector<zmq::message_t>& from) {
  for (auto& b : from) out.push_back(std::move(b));
}

}  // namespace

void Hub::ResultRequest(Message& m) {
  std::vector<std::string> ids = m.content.at("msg_ids").get<std::vector<std::string>>();
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  bool status_only = m.content.value("status_only", false);
  std::unordered_map<std::string, TaskRecord> records;
  if (!status_only) {
    Result<std::vector<TaskRecord>> found = store_->FindIds(ids);
    if (!found.ok()) {
      Reply(m, "result_reply", protocol::ErrorContent("KeyError", found.status().message()));
      return;
    }
    for (TaskRecord& r : *found) records.emplace(r.msg_id, std::move(r));
  }
  json pending = json::array(), completed = json::array();
  json content = {{"status", "ok"}};
  Frames buffers;
  for (const std::string& id : ids) {
    if (pending_.count(id)) {
      pending.push_back(id);
      continue;
    }
    auto it = records.find(id);
    bool known = it != records.end() || (status_only && store_->Contains(id));
    if (!known) {
      Reply(m, "result_reply", protocol::ErrorContent("KeyError", "No such message: " + id));
      return;
    }
    if (status_only) {
      completed.push_back(id);
      continue;
    }
    if (!it->second.completed) {
      pending.push_back(id);
      continue;
    }
    completed.push_back(id);
    content[id] = ExtractRecord(it->second);
    AppendShared(buffers, it->second.result_buffers);
  }
  content["pending"] = pending;
  content["completed"] = completed;
  Reply(m, "result_reply", std::move(content), std::move(buffers));
}

void Hub::HistoryRequest(Message& m) {
  Result<std::vector<std::string>> history = store_->History();
  if (!history.ok()) {
    Reply(m, "history_reply", protocol::ErrorContent("NoData", history.status().message()));
    return;
  }
  Reply(m, "history_reply", {{"status", "ok"}, {"history", *history}});
}

void Hub::DbRequest(Message& m) {
  Result<RecordQuery> query = RecordQuery::Parse(m.content.value("query", json::object()));
  if (!query.ok()) {
    Reply(m, "db_reply", protocol::ErrorContent("ValueError", query.status().message()));
    return;
  }
  std::optional<std::vector<std::string>> keys;
  if (m.content.contains("keys") && !m.content["keys"].is_null()) {
    keys = m.content["keys"].get<std::vector<std::string>>();
  }
  Result<std::vector<TaskRecord>> found = store_->Find(*query);
  if (!found.ok()) {
    Reply(m, "db_reply", protocol::ErrorContent("NoData", found.status().message()));
    return;
  }
  auto wants = [&](const char* key) {
    return keys && std::find(keys->begin(), keys->end(), key) != keys->end();
  };
  bool want_buffers = wants("buffers"), want_results = wants("result_buffers");
  json records = json::array(), buffer_lens = json::array(), result_buffer_lens = json::array();
  Frames buffers;
  for (TaskRecord& r : *found) {
    records.push_back(ToJson(r, keys ? &*keys : nullptr));
    if (want_buffers) {
      buffer_lens.push_back(r.buffers.size());
      AppendShared(buffers, r.buffers);
    }
    if (want_results) {
      result_buffer_lens.push_back(r.result_buffers.size());
      AppendShared(buffers, r.result_buffers);
    }
  }
  Reply(m, "db_reply",
        {{"status", "ok"},
         {"records", std::move(records)},
         {"buffer_lens", want_buffers ? buffer_lens : json(nullptr)},
         {"result_buffer_lens", want_results ? result_buffer_lens : json(nullptr)}},
        std::move(buffers));
}

void Hub::PurgeRequest(Message& m) {
  const json& msg_ids = m.content.value("msg_ids", json::array());
  json reply = {{"status", "ok"}};
  if (msg_ids.is_string() && msg_ids.get<std::string>() == "all") {
    (void)store_->Drop(*RecordQuery::Parse({{"completed", {{"$ne", nullptr}}}}));
  } else {
    std::vector<std::string> ids = msg_ids.get<std::vector<std::string>>();
    for (const std::string& id : ids) {
      if (pending_.count(id)) {
        Reply(m, "purge_reply", protocol::ErrorContent("IndexError", "msg pending: '" + id + "'"));
        return;
      }
    }
    if (!ids.empty()) (void)store_->Drop(*RecordQuery::Parse({{"msg_id", {{"$in", ids}}}}));
    const json engine_ids = m.content.value("engine_ids", json::array());
    for (const json& eid : engine_ids) {
      auto it = engines_.find(eid.get<int>());
      if (it == engines_.end()) {
        reply = protocol::ErrorContent("IndexError", "No such engine: " + eid.dump());
        break;
      }
      (void)store_->Drop(*RecordQuery::Parse(
          {{"engine_uuid", it->second.uuid}, {"completed", {{"$ne", nullptr}}}}));
    }
  }
  Reply(m, "purge_reply", std::move(reply));
}

void Hub::ResubmitRequest(Message& m) {
  std::vector<std::string> ids = m.content.at("msg_ids").get<std::vector<std::string>>();
  Result<std::vector<TaskRecord>> found = store_->FindIds(ids);
  if (!found.ok()) {
    Reply(m, "resubmit_reply", protocol::ErrorContent("KeyError", found.status().message()));
    return;
  }
  if (found->size() < ids.size()) {
    std::string missing;
    for (const auto& id : ids) {
      bool have = std::any_of(found->begin(), found->end(), [&](auto& r) { return r.msg_id == id; });
      if (!have) missing += (missing.empty() ? "'" : ", '") + id + "'";
    }
    Reply(m, "resubmit_reply", protocol::ErrorContent("KeyError", "No such msg(s): [" + missing + "]"));
    return;
  }
  json resubmitted = json::object();
  for (TaskRecord& old : *found) {
    json header = json::parse(old.header);
    json fresh = session_.make_header(header.value("msg_type", "apply_request"));
    json parent = header;
    header["msg_id"] = fresh["msg_id"];
    header["date"] = fresh["date"];
    std::string new_id = fresh["msg_id"];
    // Keep the original JSON text of metadata and content: the task must run unchanged.
    Frames frames = session_.serialize_parts({}, header.dump(), parent.dump(),
                                             old.metadata.empty() ? "{}" : old.metadata,
                                             old.content.empty() ? "{}" : old.content,
                                             TaskRecord(old.Clone()).buffers);
    protocol::Send(resubmit_, std::move(frames));
    TaskRecord record;
    record.msg_id = new_id;
    record.header = header.dump();
    record.metadata = old.metadata;
    record.content = old.content;
    record.buffers = std::move(old.buffers);
    record.client_uuid = old.client_uuid;
    record.queue = "task";
    record.submitted = protocol::WallClock::now();
    pending_.insert(new_id);
    (void)store_->Add(std::move(record));
    (void)store_->Update(old.msg_id, [&](TaskRecord& r) { r.resubmitted = new_id; });
    resubmitted[old.msg_id] = new_id;
  }
  Reply(m, "resubmit_reply", {{"status", "ok"}, {"resubmitted", resubmitted}});
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

// ---------------------------------------------------------------------------------------------
// Engine state (for --restore)

void Hub::SaveEngineState() const {
  if (options_.engine_state_file.empty()) return;
  json engines = json::object();
  for (const auto& [id, e] : engines_) engines[std::to_string(id)] = e.uuid;
  json state = {{"engines", engines}, {"next_id", next_id_}};
  Status s = protocol::WritePrivateFile(options_.engine_state_file, state.dump());
  if (!s.ok()) log_->error("cannot save engine state: {}", s.ToString());
}

void Hub::LoadEngineState() {
  std::ifstream in(options_.engine_state_file);
  if (!in) return;
  json state = json::parse(in, nullptr, false);
  if (state.is_discarded() || !state.is_object()) {
    log_->error("ignoring unreadable engine state {}", options_.engine_state_file.string());
    return;
  }
  const json engines = state.value("engines", json::object());
  for (auto& [id_text, uuid] : engines.items()) {
    int id = std::stoi(id_text);
    std::string u = uuid.get<std::string>();
    engines_[id] = Engine{id, u, {}, {}, 0, {}};
    by_uuid_[u] = id;
    heart_.Adopt(u);  // dropped after max misses if it does not beat any more
  }
  next_id_ = state.value("next_id", static_cast<int>(engines_.size()));
  log_->info("restored {} engine(s) from {}", engines_.size(), options_.engine_state_file.string());
}

// ---------------------------------------------------------------------------------------------
// Monitor channel (internal, from our schedulers; already verified there)

void Hub::OnMonitor() {
  // A full batch means the channel may hold more: no pause while the hub is behind.
  if (ReadMonitor(protocol::kBatch) == protocol::kBatch) return;
  reactor_->remove(monitor_);
  reactor_->after(kMonitorPause, [this] { reactor_->add(monitor_, [this] { OnMonitor(); }); });
}

void Hub::CatchUpMonitor() {
  // Bounded: producers faster than the hub must not keep a query waiting for ever.
  for (int n = 0; n < 16 && ReadMonitor(protocol::kBatch) == protocol::kBatch; ++n) {
  }
}

size_t Hub::ReadMonitor(size_t max) {
  size_t n = 0;
  for (; n < max; ++n) {
    auto frames = protocol::TryRecv(monitor_);
    if (!frames) break;
    if (frames->size() < 2) continue;
    std::string topic(protocol::view((*frames)[0]));
    if (topic == monitor::kTaskDestination) {
      if (frames->size() == 3) {
        SaveTaskDestination(std::string(protocol::view((*frames)[1])),
                            std::string(protocol::view((*frames)[2])));
      }
      continue;
    }
    // Engine hint: the routing id naming the engine, where the topic has one.
    std::string engine;
    if (topic == monitor::kMuxRequest || topic == monitor::kTaskReply) {
      engine = protocol::view((*frames)[1]);
    } else if (topic == monitor::kMuxReply && frames->size() > 2) {
      engine = protocol::view((*frames)[2]);
    }
    frames->erase(frames->begin());
    Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
    if (!raw.ok()) {
      log_->error("bad monitor message on {}: {}", topic, raw.status().ToString());
      continue;
    }
    try {
      if (topic == monitor::kMuxRequest) {
        SaveRequest(*raw, "mux", engine);
      } else if (topic == monitor::kTaskRequest) {
        SaveRequest(*raw, "task", "");
      } else if (topic == monitor::kBroadcastRequest) {
        SaveRequest(*raw, "broadcast", "");
      } else if (topic == monitor::kMuxReply || topic == monitor::kTaskReply ||
                 topic == monitor::kBroadcastReply) {
        SaveResult(*raw, topic, engine);
      } else if (topic == monitor::kIopub) {
        SaveIopub(*raw);
      }
    } catch (const json::exception& e) {
      log_->error("monitor {} message not understood: {}", topic, e.what());
    }
  }
  return n;
}

void Hub::SaveRequest(RawMessage& raw, const std::string& queue, const std::string& engine_uuid) {
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  if (!header.ok()) return;
  TaskRecord r;
  r.msg_id = StringField(*header, "msg_id");
  r.header = std::string(raw.part(RawMessage::kHeader));
  r.metadata = Text(raw, RawMessage::kMetadata);
  r.content = Text(raw, RawMessage::kContent);
  r.client_uuid = StringField(*header, "session");
  r.engine_uuid = engine_uuid;
  r.queue = queue;
  r.submitted = DateField(*header, "date");
  if (!r.submitted) r.submitted = protocol::WallClock::now();
  Frames& frames = raw.frames();
  for (size_t i = raw.delimiter_index() + 6; i < frames.size(); ++i) r.buffers.push_back(std::move(frames[i]));
  std::string msg_id = r.msg_id;
  pending_.insert(msg_id);
  if (queue == "task") unassigned_.insert(msg_id);
  if (queue == "mux") {
    auto it = by_uuid_.find(engine_uuid);
    if (it != by_uuid_.end()) engines_[it->second].queue.push_back(msg_id);
  }
  if (store_->Contains(msg_id)) {
    // Added by a resubmit (or iopub arrived first): fill what is missing, keep the rest.
    (void)store_->Update(msg_id, [&](TaskRecord& old) {
      if (!old.header.empty()) {
        if (old.engine_uuid.empty()) old.engine_uuid = r.engine_uuid;
        if (old.queue.empty()) old.queue = r.queue;
        return;
      }
      // A placeholder made by early iopub output: take the request, keep that output.
      r.stdout_text = std::move(old.stdout_text);
      r.stderr_text = std::move(old.stderr_text);
      r.error = std::move(old.error);
      r.execute_input = std::move(old.execute_input);
      r.execute_result = std::move(old.execute_result);
      old = std::move(r);
    });
  } else {
    (void)store_->Add(std::move(r));
  }
}

void Hub::SaveResult(RawMessage& raw, std::string_view topic, const std::string& engine_hint) {
  Result<protocol::PartFields> parent = protocol::PartFields::Of(raw.part(RawMessage::kParent));
  if (!parent.ok()) return;
  std::string msg_id = StringField(*parent, "msg_id");
  if (msg_id.empty()) return;
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  Result<protocol::PartFields> md = protocol::PartFields::Of(raw.part(RawMessage::kMetadata));
  if (!header.ok() || !md.ok()) return;
  std::string engine_uuid = StringField(*md, "engine");
  if (engine_uuid.empty()) engine_uuid = engine_hint;
  bool was_pending = pending_.erase(msg_id) > 0;
  unassigned_.erase(msg_id);
  if (was_pending) {
    auto it = by_uuid_.find(engine_uuid);
    if (it != by_uuid_.end()) {
      Engine& e = engines_[it->second];
      if (topic == monitor::kMuxReply) EraseValue(e.queue, msg_id);
      if (topic == monitor::kTaskReply) EraseValue(e.tasks, msg_id);
      if (StringField(*md, "status") != "aborted") {
        ++e.completed_count;
        e.recent_completed.push_back(msg_id);
        if (e.recent_completed.size() > kRecentCompleted) e.recent_completed.pop_front();
      }
    }
  }
  auto completed = DateField(*header, "date");
  auto started = DateField(*md, "started");
  auto now = protocol::WallClock::now();
  std::string header_text(raw.part(RawMessage::kHeader));
  std::string md_text(raw.part(RawMessage::kMetadata));
  std::string content_text(raw.part(RawMessage::kContent));
  Frames& frames = raw.frames();
  std::vector<zmq::message_t> buffers;
  for (size_t i = raw.delimiter_index() + 6; i < frames.size(); ++i) buffers.push_back(std::move(frames[i]));
  Status s = store_->Update(msg_id, [&](TaskRecord& r) {
    r.result_header = std::move(header_text);
    r.result_metadata = std::move(md_text);
    r.result_content = std::move(content_text);
    r.result_buffers = std::move(buffers);
    r.completed = completed ? completed : now;
    if (started) r.started = started;
    r.received = now;
    if (!engine_uuid.empty()) r.engine_uuid = engine_uuid;
  });
  if (!s.ok() && was_pending) SPDLOG_LOGGER_DEBUG(log_, "result for {} has no record", msg_id);
}

void Hub::SaveTaskDestination(const std::string& msg_id, const std::string& engine_uuid) {
  unassigned_.erase(msg_id);
  auto it = by_uuid_.find(engine_uuid);
  if (it != by_uuid_.end()) engines_[it->second].tasks.push_back(msg_id);
  (void)store_->Update(msg_id, [&](TaskRecord& r) { r.engine_uuid = engine_uuid; });
}

void Hub::SaveIopub(RawMessage& raw) {
  Result<json> header = raw.parse_object(RawMessage::kHeader);
  if (!header.ok()) return;
  std::string msg_type = StringField(*header, "msg_type");
  if (msg_type == "status" || msg_type == "shutdown_reply") return;
  Result<json> parent = raw.parse_object(RawMessage::kParent);
  if (!parent.ok()) return;
  std::string msg_id = StringField(*parent, "msg_id");
  if (msg_id.empty()) return;
  Result<json> content = raw.parse_object(RawMessage::kContent);
  if (!content.ok()) return;
  auto apply = [&](TaskRecord& r) {
    if (msg_type == "stream") {
      std::string name = StringField(*content, "name");
      std::string text = StringField(*content, "text");
      (name == "stderr" ? r.stderr_text : r.stdout_text) += text;
    } else if (msg_type == "error") {
      r.error = content->dump();
    } else if (msg_type == "execute_input") {
      r.execute_input = StringField(*content, "code");
    } else if (msg_type == "execute_result" || msg_type == "display_data") {
      r.execute_result = content->dump();
    }
  };
  if (store_->Contains(msg_id)) {
    (void)store_->Update(msg_id, apply);
  } else {
    TaskRecord r;
    r.msg_id = msg_id;
    apply(r);
    (void)store_->Add(std::move(r));
  }
}

}  // namespace ipp::controller

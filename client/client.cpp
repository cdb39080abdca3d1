// Client: connecting, the engine list, hub queries and the control requests; the I/O work is
// ClientImpl's (io_thread.cpp), the views' requests are in views.cpp.
#include "ipp/client.hpp"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <unordered_map>

#include "client/io_thread.hpp"
#include "protocol/capabilities.hpp"
#include "protocol/profile_dir.hpp"

namespace ipp {

using detail::Channel;
using detail::Outgoing;
using detail::StringField;
using protocol::Message;

Client::Client(std::unique_ptr<detail::ClientImpl> impl) : impl_(std::move(impl)) {}
Client::~Client() { impl_->Close(); }

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  std::filesystem::path file = options.connection_file;
  if (file.empty()) {
    auto profile = protocol::ProfileDir::Resolve(options.profile, options.profile_dir);
    file = profile.security_dir() / protocol::ConnectionFileName("client", options.cluster_id);
  }
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    return Status::NotFound("no cluster running: connection file " + file.string() +
                            " not found (start one with ipcluster start, or name the file)" +
                            protocol::OtherClustersHint(file.parent_path(), options.cluster_id));
  }
  Result<protocol::ConnectionInfo> info = protocol::ReadConnectionFile(file);
  if (!info.ok()) return info.status();
  protocol::ConnectionInfo connection = *info;
  std::unique_ptr<detail::SshTunnel> tunnel;
  if (options.ssh_server.empty()) {
    protocol::PreferLocalTransport(connection);
  } else {
    tunnel = std::make_unique<detail::SshTunnel>();
    if (Status s = tunnel->Open(options.ssh_server, options.ssh_args, connection, options.timeout); !s.ok()) return s;
  }
  auto impl = std::make_unique<detail::ClientImpl>(options, connection);
  impl->tunnel = std::move(tunnel);
  impl->connection_file = file;
  if (Status s = impl->Open(); !s.ok()) return s;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

std::vector<int> Client::ids() const {
  std::lock_guard lock(impl_->engines_mutex);
  std::vector<int> out;
  for (auto& [id, uuid] : impl_->engines) out.push_back(id);
  return out;
}

Status Client::wait_for_engines(size_t n, Millis timeout) {
  std::unique_lock lock(impl_->engines_mutex);
  if (impl_->engines_changed.wait_for(lock, timeout, [&] { return impl_->engines.size() >= n; })) return Status::OK();
  return Status::Timeout(std::to_string(impl_->engines.size()) + " of " + std::to_string(n) +
                         " engines registered within " + std::to_string(timeout.count()) + " ms");
}

const char* EngineKindName(EngineKind kind) {
  switch (kind) {
    case EngineKind::kNative: return "native";
    case EngineKind::kPython: return "python";
    case EngineKind::kUnknown: break;
  }
  return "unknown";
}

namespace {
// Our hub's queue_status says each engine's kind; the stock hub does not (kUnknown).
EngineKind KindFromHub(const Json& engine_status) {
  std::string kind = engine_status.is_object() ? StringField(engine_status, "kind") : "";
  if (kind == "native") return EngineKind::kNative;
  if (kind == "python") return EngineKind::kPython;
  return EngineKind::kUnknown;
}
int IntField(const Json& j, const char* key, int otherwise) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int>() : otherwise;
}

// Our engine answers kernel_info with implementation "ipp"; ipykernel (the stock engine's
// kernel) with "ipython" and language_info.name "python".
EngineKind KindOf(const TaskInfo& t) {
  if (t.status != TaskStatus::kOk || !t.result.is_object()) return EngineKind::kUnknown;
  std::string implementation = StringField(t.result, "implementation");
  if (implementation == "ipp") return EngineKind::kNative;
  auto language = t.result.find("language_info");
  if (implementation == "ipython" || (language != t.result.end() && language->is_object() &&
                                      StringField(*language, "name") == "python")) {
    return EngineKind::kPython;
  }
  return EngineKind::kUnknown;
}
}  // namespace

std::map<int, EngineKind> Client::engine_kinds(std::vector<int> targets, Millis timeout) {
  if (targets.empty()) targets = ids();
  std::map<int, EngineKind> out;
  std::vector<int> ask;
  std::vector<std::string> uuids;
  {
    std::lock_guard lock(impl_->engines_mutex);
    for (int id : targets) {
      out[id] = EngineKind::kUnknown;
      auto engine = impl_->engines.find(id);
      if (engine == impl_->engines.end()) continue;
      if (auto known = impl_->kinds.find(engine->second); known != impl_->kinds.end()) {
        out[id] = known->second;
      } else {
        ask.push_back(id);
        uuids.push_back(engine->second);
      }
    }
  }
  if (ask.empty()) return out;
  // One question to the hub rather than one to each engine, when it is ours.
  if (Result<Json> status = queue_status(); status.ok()) {
    std::lock_guard lock(impl_->engines_mutex);
    std::vector<int> still;
    std::vector<std::string> still_uuids;
    for (size_t i = 0; i < ask.size(); ++i) {
      EngineKind kind = KindFromHub(status->value(std::to_string(ask[i]), Json()));
      if (kind == EngineKind::kUnknown) {
        still.push_back(ask[i]);
        still_uuids.push_back(uuids[i]);
        continue;
      }
      out[ask[i]] = kind;
      impl_->kinds[uuids[i]] = kind;
    }
    ask = std::move(still);
    uuids = std::move(still_uuids);
  }
  if (ask.empty()) return out;
  AsyncResult r = direct_view(ask).kernel_info();
  r.wait(timeout);
  std::vector<TaskInfo> replies = r.info();
  if (replies.size() != ask.size()) return out;  // an engine went away meanwhile
  std::lock_guard lock(impl_->engines_mutex);
  for (size_t i = 0; i < ask.size(); ++i) {
    EngineKind kind = KindOf(replies[i]);
    out[ask[i]] = kind;
    if (kind != EngineKind::kUnknown) impl_->kinds[uuids[i]] = kind;
  }
  return out;
}

Result<std::vector<EngineInfo>> Client::engines(Millis timeout) {
  Result<Json> status = queue_status();
  if (!status.ok()) return status.status();
  std::vector<EngineInfo> out;
  std::vector<int> unknown;
  {
    std::lock_guard lock(impl_->engines_mutex);
    for (const auto& [key, q] : status->items()) {
      // The engines' entries are the keys that are ids ("unassigned", "status" and the like are not).
      if (!q.is_object() || key.empty() || key.find_first_not_of("0123456789") != std::string::npos) continue;
      EngineInfo e;
      e.id = std::stoi(key);
      if (auto known = impl_->engines.find(e.id); known != impl_->engines.end()) e.uuid = known->second;
      e.kind = KindFromHub(q);
      if (e.kind == EngineKind::kUnknown) unknown.push_back(e.id);
      e.functions = IntField(q, "functions", -1);
      if (auto tags = q.find("tags"); tags != q.end() && tags->is_array()) {
        for (const Json& t : *tags) {
          if (t.is_string()) e.tags.push_back(t.get<std::string>());
        }
      }
      if (auto resources = q.find("resources"); resources != q.end() && resources->is_object()) {
        for (const auto& [name, value] : resources->items()) {
          if (value.is_number()) e.resources[name] = value.get<double>();
        }
      }
      e.plugin_errors = protocol::PluginErrorsIn(q);
      e.queue = IntField(q, "queue", 0) + IntField(q, "tasks", 0);
      e.done = IntField(q, "completed", 0);
      out.push_back(std::move(e));
    }
  }
  std::sort(out.begin(), out.end(), [](const EngineInfo& a, const EngineInfo& b) { return a.id < b.id; });
  if (!unknown.empty()) {
    std::map<int, EngineKind> kinds = engine_kinds(unknown, timeout);
    for (EngineInfo& e : out) {
      if (e.kind == EngineKind::kUnknown) e.kind = kinds[e.id];
    }
  }
  return out;
}

DirectView Client::direct_view(std::vector<int> targets) {
  if (targets.empty()) targets = ids();
  return DirectView(this, std::move(targets));
}

LoadBalancedView Client::load_balanced_view(TaskOptions options) { return LoadBalancedView(this, std::move(options)); }

BroadcastView Client::broadcast_view(std::vector<int> targets) {
  if (targets.empty()) targets = ids();
  return BroadcastView(this, std::move(targets));
}

Client::Counters Client::counters() const {
  return {impl_->replies.load(), impl_->unmatched_replies.load(), impl_->dropped_messages.load()};
}

Result<Json> Client::queue_status(std::vector<int> targets, bool verbose) {
  Json t = targets.empty() ? Json(nullptr) : Json(targets);
  Result<Message> m = impl_->Query("queue_request", {{"targets", t}, {"verbose", verbose}});
  if (!m.ok()) return m.status();
  return m->content;
}

Result<Json> Client::db_query(const Json& query, std::vector<std::string> keys) {
  Json content = {{"query", query}, {"keys", keys.empty() ? Json(nullptr) : Json(keys)}};
  Result<Message> m = impl_->Query("db_request", content);
  if (!m.ok()) return m.status();
  return m->content.value("records", Json::array());
}

Result<std::vector<std::string>> Client::hub_history() {
  Result<Message> m = impl_->Query("history_request", Json::object());
  if (!m.ok()) return m.status();
  return m->content.value("history", std::vector<std::string>{});
}

Status Client::purge_results(const std::vector<std::string>& msg_ids) {
  Json ids = msg_ids.size() == 1 && msg_ids[0] == "all" ? Json("all") : Json(msg_ids);
  Result<Message> m = impl_->Query("purge_request", {{"msg_ids", ids}});
  return m.ok() ? Status::OK() : m.status();
}

Result<std::optional<int>> Client::report_engine_exit(const std::string& hostname, long pid, const std::string& how,
                                                      const std::string& log_tail) {
  Result<Message> m = impl_->Query("ipp_engine_exit_request",
                                   {{"hostname", hostname}, {"pid", pid}, {"how", how}, {"log_tail", log_tail}});
  if (!m.ok()) return m.status();
  const Json& id = m->content.value("engine_id", Json());
  if (id.is_number_integer()) return std::optional<int>(id.get<int>());
  return std::optional<int>();
}

namespace {

// ipp_plugins_request (see PROTOCOL.md); our controller only: the stock hub would log "Bad Query
// Type".
Result<Message> PluginsQuery(detail::ClientImpl& impl, Json content) {
  if (!impl.our_controller) {
    return Status::Infeasible("the stock controller keeps no plugins for engines that register later");
  }
  return impl.Query("ipp_plugins_request", std::move(content));
}

}  // namespace

std::string detail::PluginPath(const std::string& path) {
  std::error_code ec;
  return std::filesystem::absolute(path, ec).lexically_normal().string();
}

Result<std::vector<int>> Client::register_plugin(const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("register_plugin needs the path of a plugin library");
  Result<Message> m = PluginsQuery(*impl_, {{"add", detail::PluginPath(path)}});
  if (!m.ok()) return m.status();
  std::vector<int> before;
  for (const Json& id : m->content.value("registered_before", Json::array())) {
    if (id.is_number_integer()) before.push_back(id.get<int>());
  }
  return before;
}

Status Client::forget_plugin(const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("forget_plugin needs the path of a plugin library");
  Result<Message> m = PluginsQuery(*impl_, {{"remove", detail::PluginPath(path)}});
  if (!m.ok()) return m.status();
  if (!protocol::FlagSet(m->content, "removed")) {
    return Status::NotFound("no plugin " + detail::PluginPath(path) + " is kept for engines that register later");
  }
  return Status::OK();
}

Result<std::vector<std::string>> Client::registered_plugins() {
  Result<Message> m = PluginsQuery(*impl_, Json::object());
  if (!m.ok()) return m.status();
  std::vector<std::string> out;
  for (const Json& path : m->content.value("plugins", Json::array())) {
    if (path.is_string()) out.push_back(path.get<std::string>());
  }
  return out;
}

AsyncResult Client::get_result(const std::vector<std::string>& msg_ids) {
  auto state = std::make_shared<detail::ResultState>(msg_ids);
  Result<Message> m = impl_->Ask("result_request", {{"msg_ids", msg_ids}, {"status_only", false}});
  if (!m.ok()) {  // no answer from the hub in time
    std::unique_lock lock(state->mutex);
    for (size_t i = 0; i < msg_ids.size(); ++i) {
      state->tasks[i].status = TaskStatus::kError;
      state->tasks[i].error = RemoteError("TimeoutError", m.status().message(), {}, -1);
      state->got_reply[i] = 1;
      state->MaybeComplete(i, lock);
    }
    return detail::ResultAccess::Make(state);
  }
  if (!impl_->ApplyResultReply(*state, *m)) {
    auto* cmd = new detail::Command();
    cmd->kind = detail::Command::Kind::kWatch;
    cmd->state = state;
    impl_->Post(cmd);
  }
  return detail::ResultAccess::Make(state);
}

namespace {
// Sends the control request `type` to `targets` (empty: every engine registered now) and waits
// up to the client's timeout for every reply. `extra(id)`: more contents of the same type for
// engine `id`, sent right after its first (so that they reach it together).
Status ControlRequest(detail::ClientImpl& impl, const std::string& type, const Json& content,
                      const std::vector<int>& targets,
                      const std::function<std::vector<Json>(int)>& extra = nullptr) {
  std::vector<std::pair<int, std::string>> to;
  if (targets.empty()) {
    std::lock_guard lock(impl.engines_mutex);
    for (auto& [id, uuid] : impl.engines) to.emplace_back(id, uuid);
  } else {
    for (int id : targets) {
      std::string uuid = impl.UuidOf(id);
      if (uuid.empty()) return impl.NoEngine(id).result().status();
      to.emplace_back(id, uuid);
    }
  }
  std::vector<Outgoing> out;
  for (const auto& [id, uuid] : to) {
    out.push_back(impl.Request(Channel::kControl, type, content, uuid));
    if (!extra) continue;
    for (const Json& more : extra(id)) out.push_back(impl.Request(Channel::kControl, type, more, uuid));
  }
  if (out.empty()) return Status::OK();
  return impl.Submit(std::move(out)).result(impl.options.timeout).status();
}
}  // namespace

Status Client::abort(const std::vector<std::string>& msg_ids, std::vector<int> targets) {
  // No ids (every request waiting) is an empty list, not null: the stock engines iterate it.
  Json content = {{"msg_ids", Json(msg_ids)}};
  if (!msg_ids.empty()) return ControlRequest(*impl_, "abort_request", content, targets);
  // A stock Python engine told to abort without ids aborts only the execute requests waiting
  // (ipykernel): every engine also gets, in the same breath, an abort naming the requests the hub
  // lists as its own, so that a stock engine reads both before its next request starts. (Not by
  // kind: against the stock controller that takes a kernel_info, which a busy engine answers
  // only after its request, and starts the next one before the abort is sent.)
  std::map<int, std::vector<std::string>> waiting;
  if (Result<Json> queues = queue_status(targets, true); queues.ok()) {
    for (int id : targets.empty() ? ids() : targets) {
      Json engine = queues->value(std::to_string(id), Json::object());
      if (!engine.is_object()) continue;
      for (const char* list : {"queue", "tasks"}) {
        for (const Json& m : engine.value(list, Json::array())) {
          if (m.is_string()) waiting[id].push_back(m.get<std::string>());
        }
      }
    }
  }
  return ControlRequest(*impl_, "abort_request", content, targets, [&](int id) {
    auto it = waiting.find(id);
    return it == waiting.end() ? std::vector<Json>{} : std::vector<Json>{Json{{"msg_ids", it->second}}};
  });
}

Status Client::send_signal(int sig, std::vector<int> targets) {
  return ControlRequest(*impl_, "signal_request", {{"sig", sig}}, targets);
}

Status Client::shutdown(std::vector<int> targets, bool hub) {
  Status engines = ControlRequest(*impl_, "shutdown_request", {{"restart", false}}, targets);
  // An engine may exit before its reply leaves: only an unknown engine is the caller's error.
  if (engines.code() == Status::Code::kNotFound) return engines;
  if (hub) {
    Result<Message> m = impl_->Query("shutdown_request", Json::object());
    if (!m.ok()) return m.status();
  }
  return Status::OK();
}

}  // namespace ipp

// Client: connecting, the engine list, hub queries and the control requests; the I/O work is
// ClientImpl's (io_thread.cpp), the views' requests are in views.cpp.
#include "ipp/client.hpp"

#include <filesystem>
#include <unordered_map>

#include "client/io_thread.hpp"
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
                            " not found (start one with ipcluster start, or name the file)");
  }
  Result<protocol::ConnectionInfo> info = protocol::ReadConnectionFile(file);
  if (!info.ok()) return info.status();
  protocol::ConnectionInfo connection = *info;
  std::unique_ptr<detail::SshTunnel> tunnel;
  if (!options.ssh_server.empty()) {
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

bool Client::wait_for_engines(size_t n, Millis timeout) {
  std::unique_lock lock(impl_->engines_mutex);
  return impl_->engines_changed.wait_for(lock, timeout, [&] { return impl_->engines.size() >= n; });
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
// Our engine answers kernel_info with implementation "ipp"; ipykernel (the stock engine's
// kernel) with "ipython" and language_info.name "python".
EngineKind KindOf(const TaskInfo& t) {
  if (t.status != "ok" || !t.result.is_object()) return EngineKind::kUnknown;
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

AsyncResult Client::get_result(const std::vector<std::string>& msg_ids) {
  auto state = std::make_shared<detail::ResultState>(msg_ids);
  Result<Message> m = impl_->Query("result_request", {{"msg_ids", msg_ids}, {"status_only", false}});
  std::unique_lock lock(state->mutex);
  if (!m.ok()) {
    for (size_t i = 0; i < msg_ids.size(); ++i) {
      state->tasks[i].status = "error";
      state->tasks[i].error = RemoteError("KeyError", m.status().message(), {}, -1);
      state->got_reply[i] = 1;
      state->MaybeComplete(i, lock);
    }
    return detail::ResultAccess::Make(state);
  }
  // The hub sends the buffers of every completed record back to back, in completed order.
  size_t next_buffer = 0;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < msg_ids.size(); ++i) index[msg_ids[i]] = i;
  for (const auto& id : m->content.value("completed", Json::array())) {
    std::string msg_id = id.get<std::string>();
    const Json& record = m->content[msg_id];
    const Json& rc = record.value("result_content", Json::object());
    size_t i = index[msg_id];
    TaskInfo& t = state->tasks[i];
    t.status = StringField(rc, "status");
    const Json& rmd = record.value("result_metadata", Json::object());
    t.engine_uuid = rmd.is_object() ? StringField(rmd, "engine") : "";
    t.engine_id = impl_->IdOf(t.engine_uuid);
    t.started = rmd.is_object() ? StringField(rmd, "started") : "";
    const Json& io = record.value("io", Json::object());
    t.stdout_text = io.is_object() ? StringField(io, "stdout") : "";
    t.stderr_text = io.is_object() ? StringField(io, "stderr") : "";
    t.result = rc.value("ipp_result", Json());
    size_t count = rc.value("ipp_buffers", 0);
    if (rc.value("ipp_pickled", false)) ++next_buffer;  // the pickle for stock clients
    t.buffers = protocol::FramesToBuffers(m->buffers, next_buffer, count);
    next_buffer += count;
    if (t.status == "error") {
      t.error = RemoteError(StringField(rc, "ename"), StringField(rc, "evalue"), {}, t.engine_id);
    }
    state->got_reply[i] = 1;
    state->MaybeComplete(i, lock);
  }
  for (const auto& id : m->content.value("pending", Json::array())) {
    // Still running: wait for its result from the hub by polling is left to the caller.
    size_t i = index[id.get<std::string>()];
    state->tasks[i].status = "pending";
  }
  return detail::ResultAccess::Make(state);
}

Status Client::abort(const std::vector<std::string>& msg_ids, std::vector<int> targets) {
  AsyncResult r = direct_view(std::move(targets)).abort(msg_ids);
  if (!r.wait(impl_->options.timeout)) return Status::Timeout("abort not acknowledged in time");
  return Status::OK();
}

Status Client::send_signal(int sig, std::vector<int> targets) {
  if (targets.empty()) targets = ids();
  std::vector<Outgoing> out;
  for (int id : targets) {
    Outgoing o = impl_->Request(Channel::kControl, "signal_request", {{"sig", sig}}, impl_->UuidOf(id));
    if (!o.engine_uuid.empty()) out.push_back(std::move(o));
  }
  if (out.empty()) return Status::OK();
  if (!impl_->Submit(std::move(out)).wait(impl_->options.timeout)) return Status::Timeout("signal not acknowledged in time");
  return Status::OK();
}

Status Client::shutdown(std::vector<int> targets, bool hub) {
  if (targets.empty()) targets = ids();
  std::vector<Outgoing> out;
  for (int id : targets) {
    Outgoing o = impl_->Request(Channel::kControl, "shutdown_request", {{"restart", false}}, impl_->UuidOf(id));
    if (!o.engine_uuid.empty()) out.push_back(std::move(o));
  }
  if (!out.empty()) impl_->Submit(std::move(out)).wait(impl_->options.timeout);
  if (hub) {
    Result<Message> m = impl_->Query("shutdown_request", Json::object());
    if (!m.ok()) return m.status();
  }
  return Status::OK();
}

}  // namespace ipp

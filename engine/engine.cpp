#include "engine/engine.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstring>

#include <zmq_addon.hpp>

#include "protocol/clock.hpp"
#include "protocol/errors.hpp"
#include "protocol/json_fields.hpp"

namespace ipp::engine {

using nlohmann::json;
using protocol::Frames;
using protocol::Message;

namespace {
constexpr const char* kWorkerEndpoint = "inproc://ipp-engine-worker";

}  // namespace

Engine::Engine(EngineOptions options, Logger log)
    : options_(std::move(options)),
      log_(std::move(log)),
      uuid_(protocol::NewId()),
      session_(options_.connection.key, "username", options_.connection.signature_scheme),
      worker_socket_(context_, zmq::socket_type::pair),
      registration_(context_, zmq::socket_type::dealer),
      shell_(context_, zmq::socket_type::router),
      control_(context_, zmq::socket_type::router),
      iopub_(context_, zmq::socket_type::pub),
      ping_(context_, zmq::socket_type::sub),
      pong_(context_, zmq::socket_type::dealer),
      reactor_(log_) {}

Engine::~Engine() {
  if (worker_) {
    try {
      protocol::Frames stop;
      stop.emplace_back(std::string_view("stop"));
      protocol::Send(worker_socket_, std::move(stop), true);
    } catch (const zmq::error_t&) {
    }
    worker_->control().interrupt.store(true);
    worker_->Join();
  }
}

void Engine::Configure(zmq::socket_t& socket, bool identity) {
  socket.set(zmq::sockopt::linger, 1000);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  if (identity) socket.set(zmq::sockopt::routing_id, uuid_);
  if (options_.connection.curve_serverkey) {
    char public_key[41], secret_key[41];
    zmq_curve_keypair(public_key, secret_key);
    socket.set(zmq::sockopt::curve_serverkey, *options_.connection.curve_serverkey);
    socket.set(zmq::sockopt::curve_publickey, std::string(public_key));
    socket.set(zmq::sockopt::curve_secretkey, std::string(secret_key));
  }
}

Status Engine::Start() {
  if (!session_.status().ok()) return session_.status();
  if (Status s = StartWorker(); !s.ok()) return s;
  return Register();
}

Status Engine::StartWorker() {
  worker_socket_.set(zmq::sockopt::linger, 0);
  worker_socket_.bind(kWorkerEndpoint);
  worker_ = std::make_unique<Worker>(context_, kWorkerEndpoint, log_);
  worker_->Start(WorkerInfo{-1, uuid_, options_.mpi}, options_.plugins);
  Frames ready;
  (void)zmq::recv_multipart(worker_socket_, std::back_inserter(ready));
  if (ready.size() != 4 || protocol::view(ready[0]) != "ready") return Status::Internal("worker failed to start");
  std::memcpy(&mpi_rank_, ready[1].data(), sizeof mpi_rank_);
  std::memcpy(&mpi_size_, ready[2].data(), sizeof mpi_size_);
  if (ready[3].size()) return Status::InvalidArgument(std::string(protocol::view(ready[3])));
  return Status::OK();
}

Status Engine::Register() {
  Result<std::string> url = options_.connection.url("registration");
  if (!url.ok()) return url.status();
  Configure(registration_, true);
  registration_.connect(*url);
  json content = {{"uuid", uuid_}};
  if (options_.requested_id) content["id"] = *options_.requested_id;
  log_->info("registering with the controller at {}", *url);
  protocol::Send(registration_, session_.serialize(session_.make("registration_request", content)));
  zmq::pollitem_t item{registration_.handle(), 0, ZMQ_POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + options_.registration_timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Status::Timeout("no answer from the controller at " + *url + " within " +
                             std::to_string(options_.registration_timeout.count() / 1000) +
                             " s (is it running? does the connection file belong to it?)");
    }
    if (zmq::poll(&item, 1, std::min(left, std::chrono::milliseconds(200))) == 0) {
      if (stop_requested_.load()) return Status::Unavailable("interrupted while registering");
      continue;
    }
    auto frames = protocol::TryRecv(registration_);
    if (!frames) continue;
    Result<Message> reply = session_.parse(std::move(*frames));
    if (!reply.ok()) {
      log_->warn("ignored a bad registration reply: {}", reply.status().ToString());
      continue;
    }
    if (reply->content.value("status", "") != "ok") {
      return Status::Unavailable("registration refused: " + reply->content.value("ename", std::string("error")) +
                                 ": " + reply->content.value("evalue", std::string("")));
    }
    id_ = reply->content.at("id").get<int>();
    hb_period_ = std::chrono::milliseconds(reply->content.value("hb_period", 3000));
    Connect(reply->content.value("connection_info", json::object()));
    return Status::OK();
  }
}

void Engine::Connect(const json& reply_info) {
  // Ports from the connection file; the hub's reply carries the same (used if the file lacks one).
  protocol::ConnectionInfo info = options_.connection;
  for (auto& [k, v] : reply_info.items()) {
    if (!info.channels.contains(k) && (v.is_number() || v.is_array())) info.channels[k] = v;
  }
  Configure(shell_, true);
  Configure(control_, true);
  Configure(iopub_, true);
  Configure(ping_, false);
  Configure(pong_, true);
  ping_.set(zmq::sockopt::subscribe, "");
  for (const char* channel : {"mux", "task"}) shell_.connect(*info.url(channel));
  size_t broadcasts = info.channels.value("broadcast", json::array()).size();
  if (broadcasts) shell_.connect(*info.url("broadcast", static_cast<size_t>(id_) % broadcasts));
  control_.connect(*info.url("control"));
  iopub_.connect(*info.url("iopub"));
  ping_.connect(*info.url("hb_ping"));
  pong_.connect(*info.url("hb_pong"));

  Frames id_frame;
  id_frame.emplace_back(std::string_view("engine_id"));
  id_frame.emplace_back(&id_, sizeof id_);
  protocol::Send(worker_socket_, std::move(id_frame));

  reactor_.add(shell_, [this] { OnShell(shell_); });
  reactor_.add(control_, [this] { OnControl(); });
  reactor_.add(worker_socket_, [this] { OnWorker(); });
  reactor_.add(ping_, [this] { OnPing(); });
  reactor_.add(registration_, [this] {
    while (protocol::TryRecv(registration_)) {
    }  // late or duplicate replies: nothing to do
  });
  reactor_.every(hb_period_ + std::chrono::milliseconds(500), [this] { CheckHeartbeat(); });
  // Signals only set a flag; checking it 5 times a second keeps hundreds of idle engines from
  // waking the machine thousands of times a second.
  reactor_.every(std::chrono::milliseconds(200), [this] {
    if (stop_requested_.load()) {
      log_->info("engine {} stopping on a signal", id_);
      Unregister();
      reactor_.stop();
    }
  });
  log_->info("engine {} registered (uuid {}, pid {}{})", id_, uuid_, getpid(),
             options_.mpi ? ", MPI rank " + std::to_string(mpi_rank_) + "/" + std::to_string(mpi_size_) : "");
}

int Engine::Run() {
  reactor_.run();
  return exit_code_;
}

void Engine::OnPing() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(ping_);
    if (!frames) break;
    pinged_ = true;
    protocol::Send(pong_, std::move(*frames), true);  // echo: the DEALER adds our identity
  }
}

void Engine::CheckHeartbeat() {
  if (pinged_) {
    pinged_ = false;
    missed_checks_ = 0;
    return;
  }
  if (++missed_checks_ < options_.max_heartbeat_misses) return;
  log_->error("no heartbeat from the controller for {} ms ({} checks in a row); exiting",
              (hb_period_.count() + 500) * missed_checks_, missed_checks_);
  exit_code_ = 1;
  Unregister();
  reactor_.stop();
}

void Engine::Unregister() {
  protocol::Send(registration_, session_.serialize(session_.make("unregistration_request", {{"id", id_}})), true);
}

// ---------------------------------------------------------------------------------------------
// Requests

void Engine::OnShell(zmq::socket_t& socket) {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(socket);
    if (!frames) break;
    Result<Request> request = ParseRequest(&socket, std::move(*frames));
    if (!request.ok()) {
      log_->warn("dropped shell message: {}", request.status().ToString());
      continue;
    }
    queue_.push_back(std::move(*request));
  }
  Pump();
}

Result<Engine::Request> Engine::ParseRequest(zmq::socket_t* socket, Frames&& frames) {
  Result<protocol::RawMessage> raw = protocol::RawMessage::FromFrames(std::move(frames));
  if (!raw.ok()) return raw.status();
  if (Status s = session_.verify(*raw); !s.ok()) return s;
  // The engine reads the header's msg_id and msg_type, a few metadata fields and the content;
  // the parent it never reads. The header text itself is the parent of every reply.
  std::string header_text(raw->part(protocol::RawMessage::kHeader));
  Result<protocol::PartFields> metadata = protocol::PartFields::Of(raw->part(protocol::RawMessage::kMetadata));
  if (!metadata.ok()) return metadata.status();
  Request request;
  request.socket = socket;
  request.header_text = std::move(header_text);
  request.is_broadcast = metadata->boolean("is_broadcast").value_or(false);
  request.is_coalescing = metadata->boolean("is_coalescing").value_or(false);
  request.original_msg_id = metadata->string("original_msg_id").value_or("");
  Result<Message> m = protocol::ParseTrustedPart(std::move(raw).value(), protocol::kParseContent);
  if (!m.ok()) return m.status();
  request.message = std::move(*m);
  return request;
}

std::string Engine::ReplyMetadata(const Request& request, bool task, const std::string& status) const {
  // Written directly (keys in nlohmann's order): it is in every reply.
  auto flag = [](bool b) { return b ? "true" : "false"; };
  std::string m = "{";
  if (task) {
    m += "\"dependencies_met\":true,\"engine\":" + protocol::JsonString(uuid_) + ",";
  }
  if (status == "error") {
    m += "\"engine_info\":{\"engine_id\":" + std::to_string(id_) + ",\"engine_uuid\":" + protocol::JsonString(uuid_) + "},";
  }
  if (task) {
    m += std::string("\"is_broadcast\":") + flag(request.is_broadcast) + ",\"is_coalescing\":" + flag(request.is_coalescing) +
         ",\"original_msg_id\":" + protocol::JsonString(request.original_msg_id) + ",\"started\":\"" +
         (request.started.empty() ? protocol::Iso8601Now() : request.started) + "\",";
  }
  return m + "\"status\":" + protocol::JsonString(status) + "}";
}

void Engine::Reply(Request& request, std::string_view msg_type, const json& content, bool task_metadata, Frames buffers) {
  std::string status = "ok";
  if (auto it = content.find("status"); it != content.end() && it->is_string()) status = it->get<std::string>();
  protocol::Send(*request.socket,
                 session_.serialize_parts(std::move(request.message.identities), session_.header_text(msg_type),
                                          request.header_text, ReplyMetadata(request, task_metadata, status),
                                          content.dump(), std::move(buffers)),
                 true);
}

void Engine::ReplyError(Request& request, const std::string& ename, const std::string& evalue) {
  json content = protocol::ErrorContent(
      ename, evalue, {{"engine_uuid", uuid_}, {"engine_id", id_}, {"method", "apply"}});
  Publish("error", content, request.header_text);
  std::string type = request.message.msg_type();
  std::string reply_type = type.size() > 8 ? type.substr(0, type.size() - 8) + "_reply" : "error";
  Reply(request, reply_type, std::move(content), true);
}

void Engine::ReplyAborted(Request& request) {
  log_->info("aborting {}", request.message.msg_id());
  std::string type = request.message.msg_type();
  std::string reply_type = type.size() > 8 ? type.substr(0, type.size() - 8) + "_reply" : "error";
  Reply(request, reply_type, {{"status", "aborted"}}, true);
}

void Engine::Publish(std::string_view msg_type, const json& content, const std::string& parent_text) {
  std::string topic = "engine." + std::to_string(id_) + "." + std::string(msg_type);
  Frames identities;
  identities.emplace_back(topic.data(), topic.size());
  protocol::Send(iopub_,
                 session_.serialize_parts(std::move(identities), session_.header_text(msg_type), parent_text, "{}",
                                          content.dump(), {}),
                 true);
}

void Engine::Pump() {
  while (running_.size() < kInFlight && !queue_.empty()) {
    Request request = std::move(queue_.front());
    queue_.pop_front();
    if (aborted_.erase(request.message.msg_id())) {
      ReplyAborted(request);
      continue;
    }
    Dispatch(std::move(request));
  }
}

void Engine::Dispatch(Request request) {
  const std::string& type = request.message.msg_type();
  request.started = protocol::Iso8601Now();
  auto item = std::make_unique<WorkItem>();
  item->id = next_item_++;
  if (type == "execute_request") {
    item->kind = WorkItem::Kind::kShell;
    item->command = request.message.content.value("code", "");
    ++execution_count_;
    Publish("status", {{"execution_state", "busy"}}, request.header_text);
    Publish("execute_input", {{"code", item->command}, {"execution_count", execution_count_}}, request.header_text);
  } else if (type == "apply_request") {
    auto call = request.message.content.find("ipp_call");
    if (call == request.message.content.end() || !call->is_object()) {
      ReplyError(request, "UnsupportedRequest",
                 "this is a native C++ engine (ipp ipengine): it runs registered C++ functions and "
                 "shell commands, not pickled Python functions; use the Python ipengine for Python "
                 "work, or call a native function");
      return;
    }
    item->kind = WorkItem::Kind::kCall;
    item->function = call->value("function", "");
    item->args = call->value("args", json());
    item->buffers = protocol::FramesToBuffers(request.message.buffers);
    // No busy/idle IOPub status for native calls: nothing waits on it (clients wait for idle
    // only after execute_request), and it tripled the messages per task.
  } else if (type == "clear_request") {
    item->kind = WorkItem::Kind::kClearNamespace;
  } else if (type == "kernel_info_request") {
    Reply(request, "kernel_info_reply",
          {{"status", "ok"}, {"protocol_version", protocol::kProtocolVersion},
           {"implementation", "ipp"}, {"implementation_version", "0.1.0"},
           {"language_info", {{"name", "c++"}}}, {"banner", "ipp native engine"}},
          true);
    return;
  } else {
    ReplyError(request, "KeyError", "unsupported request type '" + type + "'");
    return;
  }
  Frames work;
  work.emplace_back(std::string_view("work"));
  running_.push_back(Running{std::move(request), item.get()});
  work.push_back(PointerFrame(item.release()));
  protocol::Send(worker_socket_, std::move(work));
}

void Engine::OnWorker() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(worker_socket_);
    if (!frames) break;
    std::string_view kind = protocol::view((*frames)[0]);
    if (kind == "out" && frames->size() == 4 && !running_.empty()) {
      Publish("stream", {{"name", std::string(protocol::view((*frames)[2]))}, {"text", std::string(protocol::view((*frames)[3]))}},
              running_.front().request.header_text);
    } else if (kind == "done" && frames->size() == 2) {
      Finish(FromPointerFrame<WorkItem>((*frames)[1]));
    }
  }
}

void Engine::Finish(WorkItem* raw_item) {
  std::unique_ptr<WorkItem> item(raw_item);
  // The worker runs items in the order it got them: this is the oldest running.
  if (running_.empty() || running_.front().item != raw_item) {
    log_->error("worker finished an item the engine was not waiting for; dropped");
    return;
  }
  Request request = std::move(running_.front().request);
  running_.pop_front();
  const std::string type = request.message.msg_type();
  if (item->state.load() == WorkItem::kCancelled) {
    // answered when it was aborted
  } else if (type == "clear_request") {
    Reply(request, "clear_reply", {{"status", "ok"}}, true);
  } else if (!item->ok) {
    json content = protocol::ErrorContent(item->ename, item->evalue,
                                          {{"engine_uuid", uuid_}, {"engine_id", id_}, {"method", type == "apply_request" ? "apply" : "execute"}});
    content["traceback"] = item->traceback;
    if (!item->result.is_null()) content["ipp_result"] = item->result;
    if (type == "execute_request") content["execution_count"] = execution_count_;
    Publish("error", content, request.header_text);
    Reply(request, type == "execute_request" ? "execute_reply" : "apply_reply", std::move(content),
          true);
  } else if (type == "execute_request") {
    Reply(request, "execute_reply",
          {{"status", "ok"}, {"execution_count", execution_count_}, {"user_expressions", json::object()}, {"payload", json::array()}},
          true);
  } else {
    // ipp_buffers: how many buffers are this result's, so results fetched later from the hub
    // (which concatenates the buffers of many records) can be split again.
    Reply(request, "apply_reply",
          {{"status", "ok"}, {"ipp_result", std::move(item->result)}, {"ipp_buffers", item->out_buffers.size()}},
          true, protocol::BuffersToFrames(item->out_buffers));
  }
  if (type == "execute_request") Publish("status", {{"execution_state", "idle"}}, request.header_text);
  Pump();
}

// ---------------------------------------------------------------------------------------------
// Control

void Engine::OnControl() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(control_);
    if (!frames) break;
    Result<Request> parsed = ParseRequest(&control_, std::move(*frames));
    if (!parsed.ok()) {
      log_->warn("dropped control message: {}", parsed.status().ToString());
      continue;
    }
    Request request = std::move(*parsed);
    request.started = protocol::Iso8601Now();
    const std::string type = request.message.msg_type();
    const json& content = request.message.content;
    if (type == "abort_request") {
      json ids = content.value("msg_ids", json());
      if (ids.is_string()) ids = json::array({ids});
      auto named = [&](const Request& r) {
        return ids.is_null() || ids.empty() || std::find(ids.begin(), ids.end(), r.message.msg_id()) != ids.end();
      };
      std::deque<Request> kept;
      for (Request& queued : queue_) {
        if (named(queued)) {
          ReplyAborted(queued);
        } else {
          kept.push_back(std::move(queued));
        }
      }
      queue_.swap(kept);
      for (Running& running : running_) {  // handed to the worker: aborted unless started
        int queued = WorkItem::kQueued;
        if (named(running.request) && running.item->state.compare_exchange_strong(queued, WorkItem::kCancelled)) {
          ReplyAborted(running.request);
        }
      }
      if (ids.is_array()) {  // ones not here yet are aborted when they arrive
        for (const auto& id : ids) {
          if (id.is_string()) aborted_.insert(id.get<std::string>());
        }
      }
      Reply(request, "abort_reply", {{"status", "ok"}}, false);
    } else if (type == "clear_request") {
      queue_.push_front(std::move(request));  // next, after what the worker has now
      Pump();
    } else if (type == "shutdown_request") {
      json reply = {{"status", "ok"}, {"restart", content.value("restart", false)}};
      Publish("shutdown_reply", reply, request.header_text);
      Reply(request, "shutdown_reply", reply, false);
      log_->info("engine {} shutting down at a client's request", id_);
      worker_->control().interrupt.store(true);
      Unregister();
      reactor_.stop();
      return;
    } else if (type == "signal_request" || type == "interrupt_request") {
      // SIGINT (or any signal asked for) interrupts the current work: a command's whole process
      // group gets it, a native function sees CallContext::interrupted().
      int sig = SIGINT;
      json s = content.value("sig", json(SIGINT));
      if (s.is_number_integer()) sig = s.get<int>();
      if (s.is_string() && s.get<std::string>() == "SIGTERM") sig = SIGTERM;
      if (s.is_string() && s.get<std::string>() == "SIGKILL") sig = SIGKILL;
      worker_->control().interrupt.store(true);
      pid_t group = worker_->control().process_group.load();
      if (group > 0) kill(-group, sig);
      Reply(request, type == "signal_request" ? "signal_reply" : "interrupt_reply", {{"status", "ok"}}, false);
    } else if (type == "kernel_info_request") {
      Dispatch(std::move(request));
    } else {
      ReplyError(request, "KeyError", "unsupported control request '" + type + "'");
    }
  }
}

}  // namespace ipp::engine

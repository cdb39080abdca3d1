#include "engine/engine.hpp"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <system_error>
#include <thread>

#include "common/host.hpp"
#include "protocol/clock.hpp"
#include "protocol/curve.hpp"
#include "protocol/errors.hpp"
#include "protocol/gateway.hpp"
#include "protocol/heartbeat.hpp"
#include "protocol/json_fields.hpp"
#include "protocol/no_answer.hpp"
#include "protocol/pickle.hpp"

namespace ipp::engine {

using nlohmann::json;
using protocol::Frames;
using protocol::Message;

namespace {
constexpr const char* kCommandEndpoint = "inproc://ipp-engine-control";
constexpr const char* kNewsEndpoint = "inproc://ipp-engine-shell";

std::string ReplyType(const std::string& request_type) {
  return request_type.size() > 8 ? request_type.substr(0, request_type.size() - 8) + "_reply" : "error";
}
// ,"key":"text" when there is text: what a function printed, in its reply.
std::string Printed(const char* key, const std::string& text) {
  return text.empty() ? std::string() : std::string(",\"") + key + "\":" + protocol::JsonString(text);
}
// A signal_request's "sig": a number, or a name as Python's signal module spells it (9.1's
// engine looks the name up there). nullopt: not a signal.
std::optional<int> SignalNumber(const json& sig) {
  static const std::pair<const char*, int> kNames[] = {
      {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}, {"SIGKILL", SIGKILL},
      {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
      {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP}};
  if (sig.is_number_integer()) {
    int n = sig.get<int>();
    return n > 0 && n < NSIG ? std::optional<int>(n) : std::nullopt;
  }
  if (!sig.is_string()) return std::nullopt;
  for (auto [name, number] : kNames) {
    if (sig.get<std::string>() == name) return number;
  }
  return std::nullopt;
}
json KernelInfo() {
  return {{"status", "ok"}, {"protocol_version", protocol::kProtocolVersion},
          {"implementation", "ipp"}, {"implementation_version", IPP_VERSION},
          {"language_info", {{"name", "c++"}}}, {"banner", "ipp native engine"},
          // For `ipp engines`: asked on the control channel, which the hub does not count as work.
          {"ipp_engine", {{"hostname", HostName()}, {"pid", getpid()}}}};
}
}  // namespace

Engine::Engine(EngineOptions options, Logger log)
    : options_(std::move(options)),
      log_(std::move(log)),
      uuid_(protocol::NewId()),
      executor_(log_),
      shell_(context_, zmq::socket_type::router),
      iopub_(context_, zmq::socket_type::pub),
      from_control_(context_, zmq::socket_type::pair),
      to_control_(context_, zmq::socket_type::pair),
      shell_out_{protocol::Session(options_.connection.key, "username", options_.connection.signature_scheme),
                 &shell_, &iopub_},
      registration_(context_, zmq::socket_type::dealer),
      control_(context_, zmq::socket_type::router),
      control_iopub_(context_, zmq::socket_type::pub),
      ping_(context_, zmq::socket_type::sub),
      pong_(context_, zmq::socket_type::dealer),
      to_shell_(context_, zmq::socket_type::pair),
      from_shell_(context_, zmq::socket_type::pair),
      control_out_{protocol::Session(options_.connection.key, "username", options_.connection.signature_scheme),
                   &control_, &control_iopub_},
      reactor_(log_) {}

Engine::~Engine() {
  if (control_thread_.joinable()) {
    // Run() was not called: the control thread leaves as on a signal.
    stop_.raise();
    control_thread_.join();
  }
}

Status Engine::Configure(zmq::socket_t& socket, bool identity, bool curve) {
  ConfigureEngineSocket(socket);
  if (identity) socket.set(zmq::sockopt::routing_id, uuid_);
  if (!curve || !options_.connection.curve_serverkey) return Status::OK();
  return protocol::SetUpCurveClient(socket, *options_.connection.curve_serverkey);
}

Status Engine::Start() {
  if (!control_out_.session.status().ok()) return control_out_.session.status();
  if (Status s = executor_.Start(ExecutorInfo{-1, uuid_, options_.mpi}, options_.plugins); !s.ok()) return s;
  return Register();
}

protocol::Capabilities Engine::Capabilities() const {
  protocol::Capabilities out;
  out.kind = protocol::EngineKind::kNative;
  for (std::string& name : executor_.functions().Names()) out.functions.insert(std::move(name));
  out.tags = options_.tags;
  out.resources = options_.resources;
  out.hostname = HostName();
  out.pid = getpid();
  out.job = protocol::BatchJobFromEnvironment();
  out.plugin_errors = plugin_errors_;
  return out;
}

Status Engine::Register() {
  if (protocol::PreferLocalTransport(options_.connection)) {
    log_->debug("connecting over {} (this is the controller's host)", options_.connection.interface);
  }
  Result<std::string> url = options_.connection.url("registration");
  if (!url.ok()) return url.status();
  if (Status s = Configure(registration_, true); !s.ok()) return s;
  protocol::ConnectionWatch watch(context_, registration_);  // says why, if the controller does not answer
  registration_.connect(*url);
  json content = {{"uuid", uuid_}};
  if (options_.requested_id) content["id"] = *options_.requested_id;
  content["ipp"] = Capabilities().ToJson();  // the stock controller ignores it
  content[protocol::gateway::kPortKey] = true;  // may come in through our controller's gateway
  announced_loads_ = executor_.functions().loads();
  log_->info("registering with the controller at {}", *url);
  auto ask = [&] {
    protocol::Send(registration_, control_out_.session.serialize(control_out_.session.make("registration_request", content)));
  };
  ask();
  zmq::pollitem_t item{registration_.handle(), 0, ZMQ_POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + options_.registration_timeout;
  // A refusal for want of descriptors is asked again after 1, 2 and 4 s (protocol::kOutOfFdsText).
  std::chrono::seconds again(1);
  constexpr std::chrono::seconds kLastAgain(4);
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Status::Timeout(
          protocol::NoAnswerMessage(*url, options_.registration_timeout, watch, options_.connection_file));
    }
    int ready = 0;
    try {
      ready = zmq::poll(&item, 1, std::min(left, std::chrono::milliseconds(200)));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // a signal: Stop() set the flag checked below
    }
    if (stop_.raised()) return Status::Unavailable("interrupted while registering");
    if (ready == 0) continue;
    auto frames = protocol::TryRecv(registration_);
    if (!frames) continue;
    Result<Message> reply = control_out_.session.parse(std::move(*frames));
    if (!reply.ok()) {
      log_->warn("ignored a bad registration reply: {}", reply.status().ToString());
      continue;
    }
    if (reply->content.value("status", "") != "ok") {
      const std::string ename = reply->content.value("ename", std::string("error"));
      const std::string evalue = reply->content.value("evalue", std::string(""));
      if (ename == "RuntimeError" && evalue.rfind(protocol::kOutOfFdsText, 0) == 0 && again <= kLastAgain) {
        log_->warn("registration refused: {}; asking again in {} s", evalue, again.count());
        for (auto until = std::chrono::steady_clock::now() + again; std::chrono::steady_clock::now() < until;) {
          if (stop_.raised()) return Status::Unavailable("interrupted while registering");
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        again *= 2;
        ask();
        deadline = std::chrono::steady_clock::now() + options_.registration_timeout;
        continue;
      }
      // Infeasible: the hub said no, and the same registration would be refused again (ipengine
      // exits with cli::kExitRegistrationRefused, which ipcluster does not restart).
      return Status::Infeasible("registration refused: " + ename + ": " + evalue);
    }
    id_ = reply->content.at("id").get<int>();
    ipp_hub_ = protocol::FlagSet(reply->content, "ipp_hub");
    hb_period_ = std::chrono::milliseconds(reply->content.value("hb_period", 3000));
    // Loaded once connected: a slow plugin must not hold up the heartbeats that complete the
    // registration.
    for (const json& path : reply->content.value("ipp_plugins", json::array())) {
      if (path.is_string()) cluster_plugins_.push_back(path.get<std::string>());
    }
    return Connect(reply->content.value("connection_info", json::object()),
                   protocol::FlagSet(reply->content, protocol::gateway::kPortKey));
  }
}

Status Engine::Connect(const json& reply_info, bool via_gateway) {
  // Ports from the connection file; the hub's reply carries the same (used if the file lacks one).
  protocol::ConnectionInfo info = options_.connection;
  for (auto& [k, v] : reply_info.items()) {
    if (!info.channels.contains(k) && (v.is_number() || v.is_array())) info.channels[k] = v;
  }
  executor_.set_engine_id(id_);
  if (via_gateway) {
    Result<std::string> gateway = info.url(protocol::gateway::kPortKey);
    if (!gateway.ok()) return Status::Unavailable("the controller asked this engine to use its gateway, but named no port for it");
    link_ = std::make_unique<GatewayLink>(context_, log_);
    if (Status s = link_->Open(*gateway, uuid_, options_.connection.curve_serverkey); !s.ok()) return s;
  }
  // Through the gateway, every channel is an inproc endpoint of the link (no CURVE there).
  auto url = [&](const char* channel, size_t index = 0) {
    return link_ ? GatewayLink::Url(channel) : *info.url(channel, index);
  };
  for (zmq::socket_t* s : {&shell_, &control_, &iopub_, &control_iopub_, &pong_}) {
    if (Status status = Configure(*s, true, !link_); !status.ok()) return status;
  }
  if (Status status = Configure(ping_, false, !link_); !status.ok()) return status;
  ping_.set(zmq::sockopt::subscribe, "");
  for (const char* channel : {"mux", "task"}) shell_.connect(url(channel));
  size_t broadcasts = info.channels.value("broadcast", json::array()).size();
  if (broadcasts) shell_.connect(url("broadcast", static_cast<size_t>(id_) % broadcasts));
  control_.connect(url("control"));
  for (zmq::socket_t* s : {&iopub_, &control_iopub_}) s->connect(url("iopub"));
  ping_.connect(url("hb_ping"));
  pong_.connect(url("hb_pong"));
  for (zmq::socket_t* s : {&from_control_, &to_shell_, &to_control_, &from_shell_}) {
    s->set(zmq::sockopt::linger, 0);
    s->set(zmq::sockopt::sndhwm, 0);
    s->set(zmq::sockopt::rcvhwm, 0);
  }
  from_control_.bind(kCommandEndpoint);
  to_shell_.connect(kCommandEndpoint);
  from_shell_.bind(kNewsEndpoint);
  to_control_.connect(kNewsEndpoint);

  if (link_) link_->Attach(reactor_);
  reactor_.add(control_, [this] { OnControl(); });
  reactor_.add(ping_, [this] { OnPing(); });
  reactor_.add(registration_, [this] { OnRegistrationReply(); });
  reactor_.add(from_shell_, [this] { OnShellNews(); });
  last_pinged_ = std::chrono::steady_clock::now();
  reactor_.every(hb_period_ + std::chrono::milliseconds(500), [this] { CheckHeartbeat(); });
  stop_.watch(reactor_, [this] {
    log_->info("engine {} stopping on a signal", id_);
    Leave(0);
  });
  // The control sockets move to their thread here (thread creation orders the hand-over).
  control_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "ipe-control");
    reactor_.run();
  });
  log_->info("engine {} registered (uuid {}, pid {}{})", id_, uuid_, getpid(),
             options_.mpi ? ", MPI rank " + std::to_string(executor_.mpi_rank()) + "/" +
                                std::to_string(executor_.mpi_size())
                          : "");
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Shell thread

int Engine::Run() {
  if (!control_thread_.joinable()) return 1;  // not started
  // Waits on the sockets' ZMQ_FD with poll(2): both have just been read to EAGAIN, which leaves
  // each descriptor to signal its next message. (zmq::poll would ask both sockets twice more
  // whether they have one, two system calls each, on every request.)
  pollfd fds[] = {{from_control_.get(zmq::sockopt::fd), POLLIN, 0}, {shell_.get(zmq::sockopt::fd), POLLIN, 0}};
  LoadClusterPlugins();
  AnnounceIfFunctionsChanged();  // with the plugins loaded since the registration request
  while (true) {
    // Commands first, one request at a time: an abort or clear that came while the last
    // request ran applies to every request after it.
    HandleCommands();
    ReplyTakenAborts();
    if (stopping_) break;
    auto frames = protocol::TryRecv(shell_);
    if (!frames) {
      // EINTR: a signal, whose flag is the control thread's to act on.
      if (poll(fds, 2, -1) < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
      continue;
    }
    Result<Request> request = ParseRequest(shell_out_, std::move(*frames));
    if (!request.ok()) {
      log_->warn("dropped shell message: {}", request.status().ToString());
      continue;
    }
    if (!released_.Start(request->message.msg_id())) {
      // Given back to the task scheduler, which runs it elsewhere: nothing from here, not even
      // an error or an abort's reply.
      SPDLOG_LOGGER_DEBUG(log_, "request {} was released; dropped", request->message.msg_id());
      aborted_.take(request->message.msg_id());
      continue;
    }
    if (!request->invalid.empty()) {
      ReplyError(shell_out_, *request, "InvalidRequest", "malformed " + request->message.msg_type() + ": " + request->invalid);
      continue;
    }
    if (aborted_.take(request->message.msg_id())) {
      ReplyAborted(shell_out_, *request);
      continue;
    }
    Serve(std::move(*request));
  }
  control_thread_.join();
  if (link_) link_->Drain();  // the last replies of both threads
  return exit_code_.load();
}

void Engine::HandleCommands() {
  while (!stopping_) {
    auto frames = protocol::TryRecv(from_control_);
    if (!frames) return;
    if (frames->empty()) continue;
    std::string_view kind = protocol::view((*frames)[0]);
    if (kind == "stop") stopping_ = true;
    if (kind == "clear") {
      WorkItem clear;
      clear.kind = WorkItem::Kind::kClearNamespace;
      executor_.Execute(clear, [](const char*, std::string_view) {});
    } else if (kind == "abort" && frames->size() == 1) {
      AbortWaiting();
    } else if (kind == "abort") {
      for (size_t i = 1; i < frames->size(); ++i) aborted_.insert(std::string(protocol::view((*frames)[i])));
    }
  }
}

void Engine::LoadClusterPlugins() {
  for (const std::string& path : cluster_plugins_) {
    if (executor_.functions().Loaded(path)) continue;  // given with --load too
    // Not fatal: the other engines have it; this host may lack the file, or it may not load
    // here. The functions it would add are then missing here, which ipp functions shows.
    // Said first: a plugin that crashes the process as it loads is then named in the log.
    log_->info("loading the cluster's plugin {}", path);
    auto added = executor_.Load(path);
    if (!added.ok()) {
      log_->warn("cannot load the cluster's plugin {}: {}", path, added.status().message());
      plugin_errors_[path] = added.status().message();
      plugin_errors_announced_ = false;
    }
  }
  cluster_plugins_.clear();
}

void Engine::AnnounceIfFunctionsChanged() {
  size_t loads = executor_.functions().loads();
  // A plugin that did not load as the engine registered may have been loaded since (ipp load).
  if (std::erase_if(plugin_errors_, [&](const auto& e) { return executor_.functions().Loaded(e.first); }) > 0) {
    plugin_errors_announced_ = false;
  }
  if (loads == announced_loads_ && plugin_errors_announced_) return;
  announced_loads_ = loads;
  plugin_errors_announced_ = true;
  if (!ipp_hub_) return;  // a stock controller: it would log "Bad Query Type"
  std::string ipp = Capabilities().ToJson().dump();
  protocol::Frames frames;
  frames.emplace_back(ipp.data(), ipp.size());
  protocol::Send(to_control_, std::move(frames), true);
}

void Engine::AbortWaiting() {
  // abort_request without msg_ids: every request already here is answered as aborted.
  while (auto frames = protocol::TryRecv(shell_)) taken_aborts_.push_back(std::move(*frames));
}

void Engine::ReplyTakenAborts() {
  for (auto& frames : taken_aborts_) {
    Result<Request> request = ParseRequest(shell_out_, std::move(frames));
    if (request.ok() && released_.Start(request->message.msg_id())) ReplyAborted(shell_out_, *request);
  }
  taken_aborts_.clear();
}

void Engine::Serve(Request request) {
  const std::string& type = request.message.msg_type();
  request.started = protocol::Iso8601Now();
  WorkItem item;
  if (type == "execute_request") {
    item.kind = WorkItem::Kind::kShell;
    item.command = request.message.content.value("code", "");
    ++execution_count_;
    Publish(shell_out_, "status", {{"execution_state", "busy"}}, request.header_text);
    Publish(shell_out_, "execute_input", {{"code", item.command}, {"execution_count", execution_count_}},
            request.header_text);
  } else if (type == "apply_request") {
    auto call = request.message.content.find("ipp_call");
    if (call == request.message.content.end() || !call->is_object()) {
      ReplyError(shell_out_, request, "UnsupportedRequest",
                 "this is a native C++ engine (ipp ipengine): it runs registered C++ functions and "
                 "shell commands, not pickled Python functions; use the Python ipengine for Python "
                 "work, or call a native function");
      return;
    }
    item.kind = WorkItem::Kind::kCall;
    item.function = call->value("function", "");
    item.args = call->value("args", json());
    item.buffers = protocol::FramesToBuffers(request.message.buffers);
    // No busy/idle IOPub status for native calls: nothing waits on it (clients wait for idle
    // only after execute_request), and it tripled the messages per task.
  } else if (type == "clear_request") {
    item.kind = WorkItem::Kind::kClearNamespace;
  } else if (type == "kernel_info_request") {
    Reply(shell_out_, request, "kernel_info_reply", KernelInfo(), true);
    return;
  } else {
    ReplyError(shell_out_, request, "KeyError", "unsupported request type '" + type + "'");
    return;
  }

  executor_.Execute(item, [&](const char* stream, std::string_view text) {
    Publish(shell_out_, "stream", {{"name", stream}, {"text", text}}, request.header_text);
  });
  // An abort or clear that came while this ran applies before its reply leaves: a client that
  // sends more work after seeing the reply must not have it swept up by an older abort.
  HandleCommands();
  // Before the reply: a client that saw ipp.load succeed finds the new functions at the hub as
  // soon as the hub has read this engine's update.
  if (item.kind == WorkItem::Kind::kCall) AnnounceIfFunctionsChanged();

  if (!item.ok && item.ename == "KeyboardInterrupt" && leaving_.load()) {
    // The same error the hub gives for work stranded on an engine that went away: whether
    // this reply or the hub's comes first, the client sees one outcome.
    item.ename = "EngineError";
    item.evalue = "Engine " + std::to_string(id_) + " stopped while running this task";
  }
  if (type == "clear_request") {
    Reply(shell_out_, request, "clear_reply", {{"status", "ok"}}, true);
  } else if (!item.ok) {
    json content = protocol::ErrorContent(
        item.ename, item.evalue,
        {{"engine_uuid", uuid_}, {"engine_id", id_}, {"method", type == "apply_request" ? "apply" : "execute"}});
    content["traceback"] = item.traceback;
    if (!item.result.is_null()) content["ipp_result"] = item.result;
    if (!item.printed_stdout.empty()) content["ipp_stdout"] = item.printed_stdout;
    if (!item.printed_stderr.empty()) content["ipp_stderr"] = item.printed_stderr;
    if (type == "execute_request") content["execution_count"] = execution_count_;
    Publish(shell_out_, "error", content, request.header_text);
    Reply(shell_out_, request, type == "execute_request" ? "execute_reply" : "apply_reply", std::move(content), true);
  } else if (type == "execute_request") {
    Reply(shell_out_, request, "execute_reply",
          {{"status", "ok"}, {"execution_count", execution_count_}, {"user_expressions", json::object()},
           {"payload", json::array()}},
          true);
  } else {
    // ipp_buffers: how many buffers the function added, so results fetched later from the hub
    // (which concatenates the buffers of many records) can be split again. ipp_pickled: a
    // pickle of the result comes before them, the buffer a stock client unpickles (it fails on
    // a reply without one); our client skips it.
    // Written directly (keys in nlohmann's order): it is every task's reply.
    std::string pickled = protocol::PickleNativeResult(item.result, item.out_buffers.size());
    Frames buffers;
    buffers.reserve(item.out_buffers.size() + 1);
    buffers.emplace_back(pickled.data(), pickled.size());
    for (auto& frame : protocol::BuffersToFrames(item.out_buffers)) buffers.push_back(std::move(frame));
    ReplyText(shell_out_, request, "apply_reply", "ok",
              "{\"ipp_buffers\":" + std::to_string(item.out_buffers.size()) +
                  ",\"ipp_pickled\":true,\"ipp_result\":" + item.result.dump() +
                  Printed("ipp_stderr", item.printed_stderr) + Printed("ipp_stdout", item.printed_stdout) +
                  ",\"status\":\"ok\"}",
              true, std::move(buffers));
  }
  if (type == "execute_request") Publish(shell_out_, "status", {{"execution_state", "idle"}}, request.header_text);
}

// ---------------------------------------------------------------------------------------------
// Control thread

void Engine::OnPing() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(ping_);
    if (!frames) break;
    pinged_ = true;
    protocol::Send(pong_, std::move(*frames), true);  // echo: the DEALER adds our identity
  }
}

void Engine::CheckHeartbeat() {
  OnPing();  // a ping that came while this thread was busy counts
  auto now = std::chrono::steady_clock::now();
  auto interval = hb_period_ + std::chrono::milliseconds(500);
  // A check that ran half an interval late means this process was starved of CPU (thousands
  // of engines starting on a few cores): pings it could not see are not the controller's
  // fault, so the check does not count, up to 10 times the usual tolerance of silence.
  bool starved = last_heartbeat_check_ != std::chrono::steady_clock::time_point{} &&
                 now - last_heartbeat_check_ > interval * 3 / 2;
  last_heartbeat_check_ = now;
  if (pinged_) {
    pinged_ = false;
    missed_checks_ = 0;
    last_pinged_ = now;
    return;
  }
  if (!starved) ++missed_checks_;
  // The gateway pings only engines it knows: after a controller restart, or a ping sent while
  // this engine's connection was down, it learns of this one again from a hello.
  if (link_) link_->Hello();
  if (missed_checks_ < options_.max_heartbeat_misses &&
      now - last_pinged_ < protocol::kHeartbeatOverloadPatience * options_.max_heartbeat_misses * interval) {
    return;
  }
  log_->error("no heartbeat from the controller for {} ms ({} checks in a row); exiting",
              std::chrono::duration_cast<std::chrono::milliseconds>(now - last_pinged_).count(), missed_checks_);
  Leave(1);
}

void Engine::Leave(int exit_code) {
  // Once: a signal and a lost heartbeat in the same pass must not unregister twice, nor turn
  // the first reason's exit code into the second's.
  if (leaving_.exchange(true)) return;
  exit_code_.store(exit_code);
  executor_.control().interrupt.store(true);  // the running work, if any, should end now
  if (link_) link_->Drain();  // replies already given go before the unregistration
  Unregister();
  TellShell({"stop"});
  reactor_.stop();
}

void Engine::TellShell(std::vector<std::string> frames) {
  Frames out;
  for (auto& f : frames) out.emplace_back(f.data(), f.size());
  protocol::Send(to_shell_, std::move(out), true);
}

void Engine::OnShellNews() {
  // The shell thread's new capabilities (JSON text), for our hub.
  while (auto frames = protocol::TryRecv(from_shell_)) {
    if (frames->empty()) continue;
    json ipp = json::parse(protocol::view((*frames)[0]));
    log_->info("engine {}: functions changed ({} now); telling the hub", id_, ipp["functions"].size());
    protocol::Send(registration_,
                   control_out_.session.serialize(
                       control_out_.session.make("ipp_engine_update", {{"id", id_}, {"ipp", std::move(ipp)}})),
                   true);
  }
}

void Engine::OnRegistrationReply() {
  // Late or duplicate registration replies need nothing; a refused update is worth a line.
  while (auto frames = protocol::TryRecv(registration_)) {
    Result<Message> reply = control_out_.session.parse(std::move(*frames));
    if (!reply.ok() || reply->msg_type() != "ipp_engine_update_reply") continue;
    if (reply->content.value("status", "") != "ok") {
      log_->warn("the hub refused this engine's update of its functions: {}: {}",
                 reply->content.value("ename", std::string("error")), reply->content.value("evalue", std::string()));
    }
  }
}

void Engine::Unregister() {
  protocol::Send(registration_,
                 control_out_.session.serialize(control_out_.session.make("unregistration_request", {{"id", id_}})),
                 true);
}

void Engine::OnControl() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(control_);
    if (!frames) break;
    Result<Request> parsed = ParseRequest(control_out_, std::move(*frames));
    if (!parsed.ok() || !parsed->invalid.empty()) {
      log_->warn("dropped control message: {}", parsed.ok() ? parsed->invalid : parsed.status().ToString());
      continue;
    }
    Request request = std::move(*parsed);
    request.started = protocol::Iso8601Now();
    const std::string type = request.message.msg_type();
    const json& content = request.message.content;
    if (type == "abort_request") {
      // As ipykernel: requests named here are answered "aborted" when their turn comes (or at
      // once if none is running); with no msg_ids, every request waiting now.
      json ids = content.value("msg_ids", json());
      if (ids.is_string()) ids = json::array({ids});
      std::vector<std::string> command = {"abort"};
      if (ids.is_array()) {
        for (const auto& id : ids) {
          if (id.is_string()) command.push_back(id.get<std::string>());
        }
      }
      TellShell(std::move(command));
      Reply(control_out_, request, "abort_reply", {{"status", "ok"}}, false);
    } else if (type == "clear_request") {
      TellShell({"clear"});  // before any request that comes after this reply
      Reply(control_out_, request, "clear_reply", {{"status", "ok"}}, true);
    } else if (type == "shutdown_request") {
      json reply = {{"status", "ok"}, {"restart", content.value("restart", false)}};
      Publish(control_out_, "shutdown_reply", reply, request.header_text);
      Reply(control_out_, request, "shutdown_reply", reply, false);
      log_->info("engine {} shutting down at a client's request", id_);
      Leave(0);
      return;
    } else if (type == "signal_request" || type == "interrupt_request") {
      // A command's whole process group gets the signal asked for, as Python's kernel gets it.
      // Only SIGINT also interrupts: a native function sees CallContext::interrupted() and a
      // command that ignores it is ended. Any other signal is the command's to handle (a trap).
      std::optional<int> sig = SignalNumber(content.value("sig", json(SIGINT)));
      if (!sig) {
        ReplyError(control_out_, request, "ValueError", "unknown signal " + content.value("sig", json()).dump());
        continue;
      }
      if (*sig == SIGINT) executor_.control().interrupt.store(true);
      pid_t group = executor_.control().process_group.load();
      if (group > 0) kill(-group, *sig);
      Reply(control_out_, request, type == "signal_request" ? "signal_reply" : "interrupt_reply", {{"status", "ok"}},
            false);
    } else if (type == "kernel_info_request") {
      Reply(control_out_, request, "kernel_info_reply", KernelInfo(), true);
    } else if (type == "ipp_release_request") {
      // Our task scheduler wants back the tasks it queued here behind a long one (see
      // ReleasedRequests): those that have not started are dropped when they come off the
      // shell socket, and run elsewhere.
      std::vector<std::string> ids;
      json named = content.value("msg_ids", json::array());
      if (named.is_array()) {
        for (const auto& id : named) {
          if (id.is_string()) ids.push_back(id.get<std::string>());
        }
      }
      std::vector<std::string> released = released_.Release(ids);
      if (!released.empty()) log_->info("gave back {} of {} queued task(s) to the scheduler", released.size(), ids.size());
      Reply(control_out_, request, "ipp_release_reply", {{"status", "ok"}, {"released", released}}, false);
    } else {
      ReplyError(control_out_, request, "KeyError", "unsupported control request '" + type + "'");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Messages (either thread, each with its own Outbox)

Result<Engine::Request> Engine::ParseRequest(Outbox& out, Frames&& frames) {
  Result<protocol::RawMessage> raw = protocol::RawMessage::FromFrames(std::move(frames));
  if (!raw.ok()) return raw.status();
  if (Status s = out.session.verify(*raw); !s.ok()) return s;
  // The engine reads the header's msg_id and msg_type, a few metadata fields and the content;
  // the parent it never reads. The header text itself is the parent of every reply.
  std::string header_text(raw->part(protocol::RawMessage::kHeader));
  Result<protocol::PartFields> metadata = protocol::PartFields::Of(raw->part(protocol::RawMessage::kMetadata));
  Request request;
  request.header_text = std::move(header_text);
  if (metadata.ok()) {
    request.is_broadcast = metadata->boolean("is_broadcast").value_or(false);
    request.is_coalescing = metadata->boolean("is_coalescing").value_or(false);
    request.original_msg_id = metadata->string("original_msg_id").value_or("");
    if (std::optional<json> label = metadata->value("label")) request.label = label->dump();
  } else {
    request.invalid = "metadata: " + metadata.status().message();
  }
  Result<Message> m = protocol::ParseTrustedPart(std::move(raw).value(), request.invalid.empty() ? unsigned{protocol::kParseContent} : 0u);
  if (m.ok()) {
    request.message = std::move(*m);
    return request;
  }
  // ParseTrustedPart left `raw` whole: read just its header, to answer it.
  request.invalid = "content: " + m.status().message();
  Result<Message> bare = protocol::ParseTrustedPart(std::move(raw).value(), 0);
  if (!bare.ok()) return bare.status();
  request.message = std::move(*bare);
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
         ",\"label\":" + request.label + ",\"original_msg_id\":" + protocol::JsonString(request.original_msg_id) + ",\"started\":\"" +
         (request.started.empty() ? protocol::Iso8601Now() : request.started) + "\",";
  }
  return m + "\"status\":" + protocol::JsonString(status) + "}";
}

void Engine::Reply(Outbox& out, Request& request, std::string_view msg_type, const json& content,
                   bool task_metadata, Frames buffers) {
  std::string status = "ok";
  if (auto it = content.find("status"); it != content.end() && it->is_string()) status = it->get<std::string>();
  ReplyText(out, request, msg_type, status, content.dump(), task_metadata, std::move(buffers));
}

void Engine::ReplyText(Outbox& out, Request& request, std::string_view msg_type, const std::string& status,
                       std::string content, bool task_metadata, Frames buffers) {
  protocol::Send(*out.replies,
                 out.session.serialize_parts(std::move(request.message.identities), out.session.header_text(msg_type),
                                             request.header_text, ReplyMetadata(request, task_metadata, status),
                                             std::move(content), std::move(buffers)),
                 true);
}

void Engine::ReplyError(Outbox& out, Request& request, const std::string& ename, const std::string& evalue) {
  json content = protocol::ErrorContent(
      ename, evalue, {{"engine_uuid", uuid_}, {"engine_id", id_}, {"method", "apply"}});
  Publish(out, "error", content, request.header_text);
  Reply(out, request, ReplyType(request.message.msg_type()), std::move(content), true);
}

void Engine::ReplyAborted(Outbox& out, Request& request) {
  log_->info("aborting {}", request.message.msg_id());
  Reply(out, request, ReplyType(request.message.msg_type()), {{"status", "aborted"}}, true);
}

void Engine::Publish(Outbox& out, std::string_view msg_type, const json& content, const std::string& parent_text) {
  std::string topic = "engine." + std::to_string(id_) + "." + std::string(msg_type);
  Frames identities;
  identities.emplace_back(topic.data(), topic.size());
  protocol::Send(*out.iopub,
                 out.session.serialize_parts(std::move(identities), out.session.header_text(msg_type), parent_text,
                                             "{}", content.dump(), {}),
                 true);
}

}  // namespace ipp::engine

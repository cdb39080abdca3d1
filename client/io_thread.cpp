// ClientImpl: the client's I/O thread and the user-side helpers that feed it.
#include "client/io_thread.hpp"

#include <unistd.h>

#include "common/pointer_frame.hpp"
#include "protocol/clock.hpp"
#include "protocol/curve.hpp"
#include "protocol/errors.hpp"
#include "protocol/json_fields.hpp"
#include "protocol/no_answer.hpp"

namespace ipp::detail {

ClientImpl::ClientImpl(ClientOptions o, protocol::ConnectionInfo i)
    : options(std::move(o)), info(std::move(i)), session(info.key, "username", info.signature_scheme) {
  id_prefix = protocol::NewId() + "_" + std::to_string(getpid()) + "_";
}

Status ClientImpl::Configure(zmq::socket_t& s) {
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  if (info.curve_serverkey) return protocol::SetUpCurveClient(s, *info.curve_serverkey);
  return Status::OK();
}

Status ClientImpl::Open() {
  if (!session.status().ok()) return session.status();
  for (zmq::socket_t* s : {&query, &mux, &task, &control, &broadcast, &iopub, &notification}) {
    if (Status configured = Configure(*s); !configured.ok()) return configured;
  }
  iopub.set(zmq::sockopt::subscribe, "");
  notification.set(zmq::sockopt::subscribe, "");
  // A controller restored after a crash answers the load-balanced tasks it had accepted to
  // their client's routing id: ours stays the same across the reconnection (ZeroMQ would
  // otherwise give the new connection another one).
  task.set(zmq::sockopt::routing_id, session.id());
  std::string endpoint = "inproc://ipp-client-" + id_prefix;
  commands.bind(endpoint);
  submit.set(zmq::sockopt::sndhwm, 0);
  submit.connect(endpoint);
  auto url = [&](const char* ch) { return info.url(ch); };
  protocol::ConnectionWatch watch(context, query);  // says why, if the controller does not answer
  for (auto [socket, channel] : std::initializer_list<std::pair<zmq::socket_t*, const char*>>{
           {&query, "registration"}, {&mux, "mux"}, {&task, "task"}, {&control, "control"},
           {&broadcast, "broadcast"}, {&iopub, "iopub"}, {&notification, "notification"}}) {
    Result<std::string> u = url(channel);
    if (!u.ok()) return Status::InvalidArgument("connection file: " + u.status().message());
    socket->connect(*u);
  }
  // connection_request, synchronously, before the I/O thread takes the sockets.
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  protocol::Send(query, session.serialize(session.make("connection_request")));
  zmq::pollitem_t item{query.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, options.timeout) == 0) {
    return Status::Timeout(protocol::NoAnswerMessage(*url("registration"), options.timeout, watch, connection_file));
  }
  auto frames = protocol::TryRecv(query);
  Result<Message> reply = frames ? session.parse(std::move(*frames)) : Result<Message>(Status::ProtocolError("empty reply"));
  if (!reply.ok()) return Status::ProtocolError("bad connection reply: " + reply.status().message());
  if (reply->content.value("status", "") != "ok") {
    return Status::Unavailable("the controller refused the connection: " + reply->content.dump());
  }
  {
    std::lock_guard lock(engines_mutex);
    const Json listed = reply->content.value("engines", Json::object());  // .items() needs a live object
    for (auto& [id, uuid] : listed.items()) {
      engines[std::stoi(id)] = uuid.get<std::string>();
      ids_by_uuid[uuid.get<std::string>()] = std::stoi(id);
    }
  }
  controller_instance = StringField(reply->content, "ipp_controller");
  our_controller = !controller_instance.empty();
  if (auto welcome = reply->content.find("iopub_welcome"); welcome != reply->content.end() && *welcome == true) {
    // Our controller greets each IOPub subscriber: once anything has arrived, our subscription
    // is in place and no output of our requests can be dropped for want of it. (The message
    // stays queued; the I/O thread reads it and ignores it.)
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    zmq::pollitem_t sub{iopub.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&sub, 1, std::max(left, Millis(0))) == 0) {
      log->warn("the controller's IOPub welcome did not arrive within {} ms; output of the first requests may "
                "be incomplete", options.timeout.count());
    }
  }
  reactor.add(commands, [this] { OnCommands(); });
  reactor.add(mux, [this] { OnReplies(mux); });
  reactor.add(task, [this] { OnReplies(task); });
  reactor.add(control, [this] { OnReplies(control); });
  reactor.add(broadcast, [this] { OnReplies(broadcast); });
  reactor.add(query, [this] { OnQueryReply(); });
  reactor.add(iopub, [this] { OnIopub(); });
  reactor.add(notification, [this] { OnNotification(); });
  // A registration published before our SUB socket was connected is lost (PUB/SUB), so the
  // engine list is re-read from the hub soon after connecting, and then now and then.
  reactor.after(std::chrono::milliseconds(300), [this] { SyncEngines(); });
  reactor.every(std::chrono::seconds(2), [this] { SyncEngines(); });
  io = std::thread([this] {
    pthread_setname_np(pthread_self(), "ipp-client-io");
    reactor.run();
  });
  return Status::OK();
}

void ClientImpl::Close() {
  auto* cmd = new Command();
  cmd->kind = Command::Kind::kStop;
  Post(cmd);
  if (io.joinable()) io.join();
}

void ClientImpl::Post(Command* cmd) {
  std::lock_guard lock(submit_mutex);
  submit.send(PointerFrame(cmd), zmq::send_flags::none);
}

std::string ClientImpl::UuidOf(int id) const {
  std::lock_guard lock(engines_mutex);
  auto it = engines.find(id);
  return it == engines.end() ? std::string() : it->second;
}

int ClientImpl::IdOf(const std::string& uuid) const {
  std::lock_guard lock(engines_mutex);
  auto it = ids_by_uuid.find(uuid);
  return it == ids_by_uuid.end() ? -1 : it->second;
}

zmq::socket_t& ClientImpl::SocketFor(Channel c) {
  switch (c) {
    case Channel::kMux: return mux;
    case Channel::kTask: return task;
    case Channel::kControl: return control;
    case Channel::kBroadcast: return broadcast;
    case Channel::kQuery: return query;
  }
  return mux;
}

void ClientImpl::OnCommands() {
  while (true) {
    zmq::message_t frame;
    if (!commands.recv(frame, zmq::recv_flags::dontwait)) return;
    std::unique_ptr<Command> cmd(FromPointerFrame<Command>(frame));
    if (!cmd) continue;
    if (cmd->kind == Command::Kind::kStop) {
      reactor.stop();
      return;
    }
    if (cmd->kind == Command::Kind::kWatch) {
      PollResults(cmd->state);
      continue;
    }
    if (cmd->kind == Command::Kind::kQuery) {
      Message m;
      m.header = session.make_header(cmd->query_type, NewMessageId());
      m.content = std::move(cmd->query_content);
      queries.emplace(m.header["msg_id"].get<std::string>(), std::move(cmd->query_reply));
      protocol::Send(query, session.serialize(std::move(m)));
      continue;
    }
    for (Outgoing& out : cmd->messages) Send(cmd->state, out);
  }
}

void ClientImpl::Send(const std::shared_ptr<ResultState>& state, Outgoing& out) {
  std::string date = protocol::Iso8601Now();
  std::string header = session.header_text(out.msg_type, out.msg_id, date);
  Frames identities;
  if (!out.engine_uuid.empty()) identities.emplace_back(out.engine_uuid.data(), out.engine_uuid.size());
  {
    std::lock_guard lock(state->mutex);
    for (size_t k = 0; k < out.reply_ids.size(); ++k) {
      state->tasks[out.index + k].submitted = date;
      state->needs_idle[out.index + k] = out.needs_idle;
    }
  }
  for (size_t k = 0; k < out.reply_ids.size(); ++k) {
    pending[out.reply_ids[k]] = Slot{state, out.index + k};
    outputs[out.reply_ids[k]] = OutputSlot{state, out.index + k};
  }
  if ((out.channel == Channel::kMux || out.channel == Channel::kControl) && !out.engine_uuid.empty()) {
    on_engine[out.engine_uuid].insert(out.msg_id);
    direct_engine[out.msg_id] = out.engine_uuid;
  }
  if (out.channel == Channel::kBroadcast) {  // reply ids are "<msg_id>_<engine uuid>"
    for (const std::string& reply_id : out.reply_ids) {
      std::string uuid = reply_id.substr(out.msg_id.size() + 1);
      on_engine[uuid].insert(reply_id);
      direct_engine[reply_id] = uuid;
    }
  }
  if (out.channel == Channel::kTask) unanswered_tasks.emplace(out.msg_id, out);
  if (outputs.size() >= prune_outputs_at) {
    PruneOutputs();
    // Next time at twice what is left: pruning costs a walk over the whole table, and while
    // one big map's results are all still alive nothing goes (every 4096 inserts, as before,
    // walked a 60,000-task map 15 times: 6% of the client's CPU).
    prune_outputs_at = std::max<size_t>(kPruneOutputsAt, 2 * outputs.size());
  }
  protocol::Send(SocketFor(out.channel),
                 session.serialize_parts(std::move(identities), std::move(header), "{}",
                                         out.metadata ? *out.metadata : std::string("{}"), std::move(out.content),
                                         protocol::BuffersToFrames(out.buffers)));
}

void ClientImpl::PruneOutputs() {
  for (auto it = outputs.begin(); it != outputs.end();) {
    if (it->second.state.expired()) {
      it = outputs.erase(it);
    } else {
      ++it;
    }
  }
}

void ClientImpl::Complete(const std::string& reply_id, const std::function<void(TaskInfo&)>& fill, bool is_reply) {
  auto it = pending.find(reply_id);
  if (it == pending.end()) {  // late duplicate (e.g. after an engine was declared dead)
    if (is_reply) unmatched_replies.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (is_reply) replies.fetch_add(1, std::memory_order_relaxed);
  Slot slot = it->second;
  if (is_reply) {
    pending.erase(it);
    unanswered_tasks.erase(reply_id);
  }
  std::unique_lock lock(slot.state->mutex);
  TaskInfo& task = slot.state->tasks[slot.index];
  fill(task);
  if (is_reply && task.engine_id < 0 && !task.engine_uuid.empty()) {
    if (unnamed_count >= kMaxUnnamed) {  // engines a hub never announces (e.g. gone for good)
      unnamed_by_uuid.clear();
      unnamed_count = 0;
    }
    unnamed_by_uuid[task.engine_uuid].push_back({slot.state, slot.index});
    ++unnamed_count;
  }
  if (is_reply) {
    slot.state->got_reply[slot.index] = 1;
    if (slot.state->needs_idle[slot.index] && !slot.state->got_idle[slot.index]) {
      awaiting_idle.push_back({slot.state, slot.index, Reactor::Clock::now()});
      ArmIdleCheck();
    }
  }
  slot.state->MaybeComplete(slot.index, lock);
}

void ClientImpl::NameEngine(const std::string& uuid, int id) {
  auto it = unnamed_by_uuid.find(uuid);
  if (it == unnamed_by_uuid.end()) return;
  for (const Unnamed& u : it->second) {
    std::shared_ptr<ResultState> state = u.state.lock();
    if (!state) continue;
    std::lock_guard lock(state->mutex);
    TaskInfo& t = state->tasks[u.index];
    t.engine_id = id;
    if (t.error && t.error->engine_id() < 0) t.error = RemoteError(t.error->ename(), t.error->evalue(), t.error->traceback(), id);
  }
  unnamed_count -= it->second.size();
  unnamed_by_uuid.erase(it);
}

void ClientImpl::ArmIdleCheck() {
  if (idle_check_armed) return;
  idle_check_armed = true;
  reactor.after(std::max(Millis(10), options.output_grace / 4), [this] { CheckAwaitingIdle(); });
}

void ClientImpl::CheckAwaitingIdle() {
  idle_check_armed = false;
  auto now = Reactor::Clock::now();
  std::erase_if(awaiting_idle, [&](const AwaitingIdle& a) {
    auto state = a.state.lock();
    if (!state) return true;
    std::unique_lock lock(state->mutex);
    if (state->got_idle[a.index]) return true;
    if (now - std::max(a.replied, last_iopub) < options.output_grace && now - a.replied < 10 * options.output_grace) {
      return false;
    }
    log->warn("no end of output (IOPub idle) for {} within {} ms of its reply: its output may be incomplete",
              state->msg_ids[a.index], options.output_grace.count());
    state->tasks[a.index].output_incomplete = true;
    state->got_idle[a.index] = 1;
    state->MaybeComplete(a.index, lock);
    return true;
  });
  if (!awaiting_idle.empty()) ArmIdleCheck();
}

Result<ClientImpl::ReplyBody> ClientImpl::ParseReply(Frames&& frames, std::string* msg_id, std::string* engine_uuid,
                             std::string* started, std::string* completed) {
  Result<protocol::RawMessage> raw = protocol::RawMessage::FromFrames(std::move(frames));
  if (!raw.ok()) return raw.status();
  if (Status s = session.verify(*raw); !s.ok()) return s;
  using Raw = protocol::RawMessage;
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw->part(Raw::kHeader));
  Result<protocol::PartFields> parent = protocol::PartFields::Of(raw->part(Raw::kParent));
  Result<protocol::PartFields> metadata = protocol::PartFields::Of(raw->part(Raw::kMetadata));
  for (const auto* part : {&header, &parent, &metadata}) {
    if (!part->ok()) return part->status();
  }
  // Copied out now: the views point into frames that move below.
  *msg_id = parent->string("msg_id").value_or("");
  *engine_uuid = metadata->string("engine").value_or("");
  *started = metadata->string("started").value_or("");
  *completed = header->string("date").value_or("");
  ReplyBody body;
  bool pickled = false;
  Result<protocol::PartFields> fields = protocol::PartFields::Of(raw->part(Raw::kContent));
  if (!fields.ok()) return fields.status();
  if (fields->string("status") == "ok") {
    body.status = "ok";
    std::optional<Json> result = fields->value("ipp_result");
    if (result) {
      body.result = std::move(*result);
    } else {  // not a native call: the content is the result
      Result<Json> content = raw->parse_object(Raw::kContent);
      if (!content.ok()) return content.status();
      body.result = std::move(content).value();
    }
    body.printed_stdout = fields->string("ipp_stdout");
    body.printed_stderr = fields->string("ipp_stderr");
    pickled = fields->boolean("ipp_pickled").value_or(false);
  } else {
    Result<Json> content = raw->parse_object(Raw::kContent);
    if (!content.ok()) return content.status();
    body.content = std::move(content).value();
    body.status = StringField(body.content, "status");
    if (auto it = body.content.find("ipp_result"); it != body.content.end()) body.result = std::move(*it);
    for (auto [key, printed] : {std::pair{"ipp_stdout", &body.printed_stdout}, std::pair{"ipp_stderr", &body.printed_stderr}}) {
      if (auto it = body.content.find(key); it != body.content.end() && it->is_string()) *printed = it->get<std::string>();
    }
  }
  body.buffers = raw->take_buffers();
  if (pickled && !body.buffers.empty()) body.buffers.erase(body.buffers.begin());
  return body;
}

void ClientImpl::OnReplies(zmq::socket_t& socket) {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(socket);
    if (!frames) return;
    std::string msg_id, engine_uuid, started, completed;
    Result<ReplyBody> m = ParseReply(std::move(*frames), &msg_id, &engine_uuid, &started, &completed);
    if (!m.ok()) {
      dropped_messages.fetch_add(1, std::memory_order_relaxed);
      log->warn("dropped a reply: {}", m.status().ToString());
      continue;
    }
    if (auto d = direct_engine.find(msg_id); d != direct_engine.end()) {
      on_engine[d->second].erase(msg_id);
      direct_engine.erase(d);
    }
    int engine_id = IdOf(engine_uuid);
    if (engine_id < 0) {
      // A reply from an engine that registered a moment ago can be readable before the hub's
      // notification of it, which takes another path: read the notifications that are in, so
      // that the reply names the engine by its id. (Not before every reply: looking costs two
      // system calls.)
      OnNotification();
      engine_id = IdOf(engine_uuid);
    }
    const std::string& status = m->status;
    bool printed = m->printed_stdout || m->printed_stderr;
    if (printed) outputs.erase(msg_id);  // the reply has it all: a late IOPub copy would double it
    Complete(msg_id, [&](TaskInfo& t) {
      if (printed) {
        t.stdout_text = m->printed_stdout.value_or("");
        t.stderr_text = m->printed_stderr.value_or("");
      }
      t.status = status == "ok" ? TaskStatus::kOk : status == "aborted" ? TaskStatus::kAborted : TaskStatus::kError;
      t.engine_uuid = engine_uuid;
      t.engine_id = engine_id;
      t.started = std::move(started);
      t.completed = std::move(completed);
      t.result = std::move(m->result);
      t.buffers = protocol::FramesToBuffers(m->buffers);
      if (t.status == TaskStatus::kError) {
        std::vector<std::string> tb;
        auto it = m->content.find("traceback");
        if (it != m->content.end() && it->is_array()) {
          for (const auto& line : *it) {
            if (line.is_string()) tb.push_back(line.get<std::string>());
          }
        }
        t.error = RemoteError(StringField(m->content, "ename"), StringField(m->content, "evalue"), tb, engine_id);
      } else if (t.status == TaskStatus::kAborted) {
        t.error = RemoteError("TaskAborted", "Task aborted", {}, engine_id);
      }
    }, true);
  }
}

void ClientImpl::OnIopub() {
  last_iopub = Reactor::Clock::now();
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(iopub);
    if (!frames) return;
    Result<Message> m = session.parse(std::move(*frames));
    if (!m.ok()) continue;
    std::string parent = StringField(m->parent_header, "msg_id");
    auto out = outputs.find(parent);
    if (out == outputs.end()) continue;
    auto state = out->second.state.lock();
    if (!state) continue;
    size_t index = out->second.index;
    const std::string& type = m->msg_type();
    std::unique_lock lock(state->mutex);
    if (type == "stream") {
      std::string text = StringField(m->content, "text");
      (StringField(m->content, "name") == "stderr" ? state->tasks[index].stderr_text : state->tasks[index].stdout_text) += text;
    } else if (type == "status" && StringField(m->content, "execution_state") == "idle") {
      state->got_idle[index] = 1;
      state->MaybeComplete(index, lock);
    }
  }
}

void ClientImpl::OnNotification() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(notification);
    if (!frames) break;
    Result<Message> m = session.parse(std::move(*frames));
    if (!m.ok()) continue;
    int id = m->content.value("id", -1);
    std::string uuid = StringField(m->content, "uuid");
    if (m->msg_type() == "registration_notification") {
      {
        std::lock_guard lock(engines_mutex);
        engines[id] = uuid;
        ids_by_uuid[uuid] = id;
      }
      NameEngine(uuid, id);
    } else if (m->msg_type() == "unregistration_notification") {
      {
        std::lock_guard lock(engines_mutex);
        engines.erase(id);
        gone[id] = uuid;
        ids_by_uuid[uuid] = id;
      }
      // Direct and broadcast requests still on that engine will never be answered.
      auto stranded = on_engine.find(uuid);
      if (stranded != on_engine.end()) {
        for (const std::string& msg_id : stranded->second) {
          direct_engine.erase(msg_id);
          Complete(msg_id, [&](TaskInfo& t) {
            t.status = TaskStatus::kError;
            t.engine_uuid = uuid;
            t.engine_id = id;
            t.error = RemoteError("EngineError",
                                  protocol::EngineDiedText(id, uuid, msg_id, StringField(m->content, "reason")), {}, id);
          }, true);
          auto out = outputs.find(msg_id);
          if (out != outputs.end()) {
            if (auto s = out->second.state.lock()) {
              std::unique_lock lock(s->mutex);
              s->got_idle[out->second.index] = 1;
              s->MaybeComplete(out->second.index, lock);
            }
          }
        }
        on_engine.erase(stranded);
      }
    }
    engines_changed.notify_all();
  }
}

void ClientImpl::SyncEngines() {
  Message m;
  m.header = session.make_header("connection_request", NewMessageId());
  engine_syncs.insert(m.header["msg_id"].get<std::string>());
  protocol::Send(query, session.serialize(std::move(m)));
}

void ClientImpl::Recover() {
  if (unanswered_tasks.empty()) return;
  std::vector<std::string> ids;
  for (const auto& [id, out] : unanswered_tasks) ids.push_back(id);
  log->warn("the controller was restarted; checking {} load-balanced task(s) with no reply yet", ids.size());
  Message m;
  m.header = session.make_header("db_request", NewMessageId());
  m.content = {{"query", {{"msg_id", {{"$in", ids}}}}}, {"keys", {"msg_id", "completed"}}};
  recovery_lookups[m.header["msg_id"].get<std::string>()] = std::move(ids);
  protocol::Send(query, session.serialize(std::move(m)));
}

void ClientImpl::OnRecoveryLookup(const std::vector<std::string>& asked, Message& reply) {
  if (reply.content.value("status", "ok") != "ok") {
    // NoDB: the hub cannot tell what it has. Those its journal restored get their replies;
    // sending them again would run them twice.
    log->error("cannot recover tasks after the controller's restart: {}", reply.content.dump());
    return;
  }
  std::unordered_map<std::string, bool> known;  // msg_id -> finished
  for (const Json& r : reply.content.value("records", Json::array())) {
    if (r.is_object()) known[StringField(r, "msg_id")] = r.contains("completed") && !r["completed"].is_null();
  }
  Json finished = Json::array();
  size_t resent = 0;
  for (const std::string& id : asked) {
    auto out = unanswered_tasks.find(id);
    if (out == unanswered_tasks.end()) continue;  // answered meanwhile
    auto k = known.find(id);
    if (k == known.end()) {
      SendTask(out->second);
      ++resent;
    } else if (k->second) {
      finished.push_back(id);
    }
  }
  log->warn("after the controller's restart: {} task(s) sent again, {} finished while we reconnected", resent,
            finished.size());
  if (finished.empty()) return;
  Message m;
  m.header = session.make_header("result_request", NewMessageId());
  m.content = {{"msg_ids", std::move(finished)}, {"status_only", false}};
  recovery_fetches.insert(m.header["msg_id"].get<std::string>());
  protocol::Send(query, session.serialize(std::move(m)));
}

void ClientImpl::OnRecoveryFetch(Message& reply) {
  if (reply.content.value("status", "ok") != "ok") {
    log->error("cannot fetch results after the controller's restart: {}", reply.content.dump());
    return;
  }
  std::vector<std::shared_ptr<ResultState>> states;
  for (const Json& id : reply.content.value("completed", Json::array())) {
    auto it = id.is_string() ? pending.find(id.get<std::string>()) : pending.end();
    if (it != pending.end() && std::find(states.begin(), states.end(), it->second.state) == states.end()) {
      states.push_back(it->second.state);
    }
  }
  for (const auto& state : states) ApplyResultReply(*state, reply);
  // What now has its result is answered: a reply that still comes is a duplicate.
  for (const Json& id : reply.content.value("completed", Json::array())) {
    auto it = id.is_string() ? pending.find(id.get<std::string>()) : pending.end();
    if (it == pending.end()) continue;
    bool got = false;
    {
      std::lock_guard lock(it->second.state->mutex);
      got = it->second.state->got_reply[it->second.index];
    }
    if (got) {
      unanswered_tasks.erase(it->first);
      pending.erase(it);
    }
  }
}

void ClientImpl::SendTask(const Outgoing& out) {
  std::string header = session.header_text(out.msg_type, out.msg_id, protocol::Iso8601Now());
  protocol::Send(task, session.serialize_parts({}, std::move(header), "{}",
                                               out.metadata ? *out.metadata : std::string("{}"), out.content,
                                               protocol::BuffersToFrames(out.buffers)));
}

void ClientImpl::OnQueryReply() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(query);
    if (!frames) break;
    Result<Message> m = session.parse(std::move(*frames));
    if (!m.ok()) continue;
    std::string parent = StringField(m->parent_header, "msg_id");
    if (engine_syncs.erase(parent)) {
      // Add what we missed; never remove on a snapshot: it may be older than an
      // unregistration notification already applied.
      const Json listed = m->content.value("engines", Json::object());
      {
        std::lock_guard lock(engines_mutex);
        for (auto& [id, uuid] : listed.items()) {
          int eid = std::stoi(id);
          if (uuid.is_string() && !gone.count(eid) && engines.emplace(eid, uuid.get<std::string>()).second) {
            ids_by_uuid[uuid.get<std::string>()] = eid;
          }
        }
      }
      engines_changed.notify_all();
      std::string instance = StringField(m->content, "ipp_controller");
      if (!instance.empty() && instance != controller_instance) {
        bool restarted = !controller_instance.empty();
        controller_instance = instance;
        our_controller = true;
        if (restarted) Recover();
      }
      continue;
    }
    if (auto lookup = recovery_lookups.find(parent); lookup != recovery_lookups.end()) {
      std::vector<std::string> asked = std::move(lookup->second);
      recovery_lookups.erase(lookup);
      OnRecoveryLookup(asked, *m);
      continue;
    }
    if (recovery_fetches.erase(parent)) {
      OnRecoveryFetch(*m);
      continue;
    }
    if (auto poll = result_polls.find(parent); poll != result_polls.end()) {
      std::weak_ptr<ResultState> watched = poll->second;
      result_polls.erase(poll);
      if (auto state = watched.lock(); state && !ApplyResultReply(*state, *m)) {
        reactor.after(kResultPollInterval, [this, watched] {
          if (auto s = watched.lock()) PollResults(s);
        });
      }
      continue;
    }
    auto it = queries.find(parent);
    if (it == queries.end()) continue;
    it->second.set_value(std::move(*m));
    queries.erase(it);
  }
}

Result<Message> ClientImpl::Ask(const std::string& type, Json content) {
  auto* cmd = new Command();
  cmd->kind = Command::Kind::kQuery;
  cmd->query_type = type;
  cmd->query_content = std::move(content);
  std::future<Result<Message>> reply = cmd->query_reply.get_future();
  Post(cmd);
  if (reply.wait_for(options.timeout) != std::future_status::ready) {
    return Status::Timeout("the hub did not answer " + type + " within " + std::to_string(options.timeout.count()) + " ms");
  }
  return reply.get();
}

Result<Message> ClientImpl::Query(const std::string& type, Json content) {
  Result<Message> m = Ask(type, std::move(content));
  if (m.ok() && m->content.value("status", "ok") != "ok") {
    return Status::Unavailable(StringField(m->content, "ename") + ": " + StringField(m->content, "evalue"));
  }
  return m;
}

AsyncResult ClientImpl::Submit(std::vector<Outgoing> messages, bool flatten, bool unordered) {
  std::vector<std::string> ids;
  for (Outgoing& out : messages) {
    out.index = ids.size();
    if (out.reply_ids.empty()) out.reply_ids = {out.msg_id};
    ids.insert(ids.end(), out.reply_ids.begin(), out.reply_ids.end());
  }
  auto state = std::make_shared<ResultState>(std::move(ids));
  state->flatten = flatten;
  state->unordered = unordered;
  auto* cmd = new Command();
  cmd->state = state;
  cmd->messages = std::move(messages);
  Post(cmd);
  return ResultAccess::Make(state);
}

Outgoing ClientImpl::RequestText(Channel channel, std::string msg_type, std::string content, std::string engine_uuid) {
  Outgoing out;
  out.channel = channel;
  out.msg_type = std::move(msg_type);
  out.msg_id = NewMessageId();
  out.content = std::move(content);
  out.engine_uuid = std::move(engine_uuid);
  return out;
}

Outgoing ClientImpl::Request(Channel channel, std::string msg_type, const Json& content, std::string engine_uuid) {
  return RequestText(channel, std::move(msg_type), content.dump(), std::move(engine_uuid));
}

Outgoing ClientImpl::CallText(Channel channel, const std::string& function, const std::string& args_text,
                  std::vector<Buffer> buffers) {
  Outgoing out = RequestText(
      channel, "apply_request",
      "{\"ipp_call\":{\"args\":" + args_text + ",\"function\":" + protocol::JsonString(function) + "}}", "");
  out.buffers = std::move(buffers);
  return out;
}

Outgoing ClientImpl::Call(Channel channel, const std::string& function, const Json& args, std::vector<Buffer> buffers) {
  return CallText(channel, function, args.dump(), std::move(buffers));
}

AsyncResult ClientImpl::NoEngine(int id) { return Failed("IndexError", "no engine with id " + std::to_string(id)); }

void ClientImpl::PollResults(const std::shared_ptr<ResultState>& state) {
  Json ids = Json::array();
  {
    std::lock_guard lock(state->mutex);
    for (size_t i = 0; i < state->msg_ids.size(); ++i) {
      if (!state->got_reply[i]) ids.push_back(state->msg_ids[i]);
    }
  }
  if (ids.empty()) return;
  Message m;
  m.header = session.make_header("result_request", NewMessageId());
  m.content = {{"msg_ids", std::move(ids)}, {"status_only", false}};
  result_polls[m.header["msg_id"].get<std::string>()] = state;
  protocol::Send(query, session.serialize(std::move(m)));
}

bool ClientImpl::ApplyResultReply(ResultState& state, Message& m) {
  std::unique_lock lock(state.mutex);
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < state.msg_ids.size(); ++i) {
    if (!state.got_reply[i]) index[state.msg_ids[i]] = i;
  }
  if (m.content.value("status", "ok") != "ok") {  // e.g. KeyError: a msg_id the hub does not know
    for (auto& [msg_id, i] : index) {
      state.tasks[i].status = TaskStatus::kError;
      state.tasks[i].error =
          RemoteError(StringField(m.content, "ename"), StringField(m.content, "evalue"), {}, -1);
      state.got_reply[i] = 1;
      state.MaybeComplete(i, lock);
    }
    return true;
  }
  // The hub sends the buffers of every completed record back to back, in completed order.
  size_t next_buffer = 0;
  size_t still_pending = index.size();
  for (const auto& id : m.content.value("completed", Json::array())) {
    std::string msg_id = id.get<std::string>();
    const Json& record = m.content.value(msg_id, Json::object());
    const Json& rc = record.value("result_content", Json::object());
    size_t count = rc.value("ipp_buffers", 0);
    if (rc.value("ipp_pickled", false)) ++next_buffer;  // the pickle for stock clients
    size_t first_buffer = next_buffer;
    next_buffer += count;
    auto slot = index.find(msg_id);
    if (slot == index.end()) continue;
    size_t i = slot->second;
    TaskInfo& t = state.tasks[i];
    std::string status = StringField(rc, "status");
    t.status = status == "ok" ? TaskStatus::kOk : status == "aborted" ? TaskStatus::kAborted : TaskStatus::kError;
    const Json& rmd = record.value("result_metadata", Json::object());
    t.engine_uuid = rmd.is_object() ? StringField(rmd, "engine") : "";
    t.engine_id = IdOf(t.engine_uuid);
    t.started = rmd.is_object() ? StringField(rmd, "started") : "";
    const Json& io = record.value("io", Json::object());
    t.stdout_text = io.is_object() ? StringField(io, "stdout") : "";
    t.stderr_text = io.is_object() ? StringField(io, "stderr") : "";
    t.result = rc.value("ipp_result", Json());
    t.buffers = protocol::FramesToBuffers(m.buffers, first_buffer, count);
    if (t.status == TaskStatus::kError) {
      t.error = RemoteError(StringField(rc, "ename"), StringField(rc, "evalue"), {}, t.engine_id);
    } else if (t.status == TaskStatus::kAborted) {
      t.error = RemoteError("TaskAborted", "Task aborted", {}, t.engine_id);
    }
    state.got_reply[i] = 1;
    --still_pending;
    state.MaybeComplete(i, lock);
  }
  return still_pending == 0;
}

AsyncResult ClientImpl::Failed(const std::string& ename, const std::string& evalue) {
  auto state = std::make_shared<ResultState>(std::vector<std::string>{NewMessageId()});
  std::unique_lock lock(state->mutex);
  state->tasks[0].status = TaskStatus::kError;
  state->tasks[0].error = RemoteError(ename, evalue, {}, -1);
  state->got_reply[0] = 1;
  state->MaybeComplete(0, lock);
  return ResultAccess::Make(state);
}

}  // namespace ipp::detail

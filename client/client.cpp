// The client's core: an I/O thread that owns every socket, fed by user threads through an
// inproc PUSH/PULL pair carrying Command pointers (ownership travels with the pointer). Result
// state shared with users (AsyncResult::State) is the one place with a lock: users block on it.
#include "ipp/client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/pointer_frame.hpp"
#include "common/reactor.hpp"
#include "protocol/clock.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/errors.hpp"
#include "protocol/json_fields.hpp"
#include "protocol/no_answer.hpp"
#include "protocol/profile_dir.hpp"
#include "protocol/session.hpp"

namespace ipp {

using protocol::Frames;
using protocol::Message;

// ---------------------------------------------------------------------------------------------
// AsyncResult

struct AsyncResult::State {
  // Written by the I/O thread, read by users: everything below is guarded by `mutex`.
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::vector<std::string> msg_ids;
  std::vector<TaskInfo> tasks;
  std::vector<char> got_reply, needs_idle, got_idle, done;
  size_t done_count = 0;
  bool flatten = false;    // each message's result is a list of items (map)
  bool unordered = false;  // get() in completion order
  std::vector<size_t> completion_order;
  std::vector<std::function<void(size_t, const TaskInfo&)>> callbacks;

  explicit State(std::vector<std::string> ids) : msg_ids(std::move(ids)) {
    size_t n = msg_ids.size();
    tasks.resize(n);
    got_reply.assign(n, 0);
    needs_idle.assign(n, 0);
    got_idle.assign(n, 0);
    done.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      tasks[i].msg_id = msg_ids[i];
      tasks[i].status = "pending";
    }
  }

  // Called with the lock held. Runs the callbacks (without the lock), then counts the message
  // as done and wakes waiters: wait() returning means every callback of every message has run.
  // A callback added by on_each meanwhile is run here too (on_each replays only messages
  // already counted), so none is missed and none runs twice.
  void MaybeComplete(size_t i, std::unique_lock<std::mutex>& lock) {
    if (done[i] || !got_reply[i] || (needs_idle[i] && !got_idle[i])) return;
    done[i] = 1;
    TaskInfo snapshot;
    if (!callbacks.empty()) snapshot = tasks[i];  // callbacks see it without the lock held
    size_t ran = 0;
    while (ran < callbacks.size()) {
      std::vector<std::function<void(size_t, const TaskInfo&)>> batch(callbacks.begin() + static_cast<long>(ran),
                                                                       callbacks.end());
      ran = callbacks.size();
      lock.unlock();
      for (auto& cb : batch) cb(i, snapshot);
      lock.lock();
    }
    ++done_count;
    completion_order.push_back(i);
    // Waiters wait for all (wait()): waking them for each of 100,000 messages cost the client a
    // context switch per task.
    if (done_count == msg_ids.size()) changed.notify_all();
  }
};

const std::vector<std::string>& AsyncResult::msg_ids() const {
  static const std::vector<std::string> kNone;
  return state_ ? state_->msg_ids : kNone;
}

bool AsyncResult::ready() const {
  if (!state_) return true;
  std::lock_guard lock(state_->mutex);
  return state_->done_count == state_->msg_ids.size();
}

bool AsyncResult::wait(Millis timeout) const {
  if (!state_) return true;
  std::unique_lock lock(state_->mutex);
  auto all_done = [&] { return state_->done_count == state_->msg_ids.size(); };
  if (timeout == kForever) {
    state_->changed.wait(lock, all_done);
    return true;
  }
  return state_->changed.wait_for(lock, timeout, all_done);
}

std::vector<Json> AsyncResult::get(Millis timeout) const {
  if (!wait(timeout)) {
    throw TimeoutError("result not ready within " + std::to_string(timeout.count()) + " ms (" +
                       std::to_string(progress()) + "/" + std::to_string(size()) + " done)");
  }
  std::vector<Json> out;
  if (!state_) return out;
  std::lock_guard lock(state_->mutex);
  std::vector<size_t> order;
  if (state_->unordered) {
    order = state_->completion_order;
  } else {
    for (size_t i = 0; i < state_->tasks.size(); ++i) order.push_back(i);
  }
  for (size_t i : order) {
    const TaskInfo& t = state_->tasks[i];
    if (t.error) throw *t.error;
  }
  for (size_t i : order) {
    const TaskInfo& t = state_->tasks[i];
    if (state_->flatten && t.result.is_array()) {
      for (const Json& item : t.result) out.push_back(item);
    } else {
      out.push_back(t.result);
    }
  }
  return out;
}

Json AsyncResult::get_one(Millis timeout) const {
  std::vector<Json> all = get(timeout);
  if (all.size() != 1) throw std::logic_error("get_one() on a result of " + std::to_string(all.size()) + " values");
  return all.front();
}

bool AsyncResult::successful() const {
  if (!ready()) throw std::logic_error("AsyncResult::successful() before it is ready");
  if (!state_) return true;
  std::lock_guard lock(state_->mutex);
  for (const TaskInfo& t : state_->tasks) {
    if (t.error) return false;
  }
  return true;
}

size_t AsyncResult::progress() const {
  if (!state_) return 0;
  std::lock_guard lock(state_->mutex);
  return state_->done_count;
}

size_t AsyncResult::size() const { return state_ ? state_->msg_ids.size() : 0; }

std::vector<TaskInfo> AsyncResult::info() const {
  if (!state_) return {};
  std::lock_guard lock(state_->mutex);
  return state_->tasks;
}

void AsyncResult::on_each(std::function<void(size_t, const TaskInfo&)> callback) const {
  if (!state_) return;
  std::vector<std::pair<size_t, TaskInfo>> already;
  {
    std::lock_guard lock(state_->mutex);
    state_->callbacks.push_back(callback);
    for (size_t i : state_->completion_order) already.emplace_back(i, state_->tasks[i]);
  }
  for (auto& [i, t] : already) callback(i, t);
}

// ---------------------------------------------------------------------------------------------
// Commands from user threads to the I/O thread

namespace {

enum class Channel { kMux, kTask, kControl, kBroadcast, kQuery };

struct Outgoing {
  Channel channel;
  std::string msg_type;
  std::string msg_id;
  std::string content;  // JSON text, written on the caller's thread
  // JSON text, shared by the messages of one map (dumped once, not once per task); null: {}.
  std::shared_ptr<const std::string> metadata;
  std::vector<Buffer> buffers;
  std::string engine_uuid;                 // routing id for mux/control
  std::vector<std::string> reply_ids;      // ids replies will name (broadcast: one per engine)
  size_t index = 0;                        // first slot in the state
  bool needs_idle = false;
};

struct Command {
  enum class Kind { kSend, kQuery, kStop } kind = Kind::kSend;
  std::shared_ptr<AsyncResult::State> state;
  std::vector<Outgoing> messages;
  // kQuery
  std::string query_type;
  Json query_content;
  std::promise<Result<Message>> query_reply;
};

std::string StringField(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A free local TCP port (bound and released at once; ssh binds it right after).
int FreeLocalPort() {
  zmq::context_t ctx;
  zmq::socket_t probe(ctx, zmq::socket_type::router);
  probe.set(zmq::sockopt::linger, 0);
  probe.bind("tcp://127.0.0.1:*");
  std::string ep = probe.get(zmq::sockopt::last_endpoint);
  return std::stoi(ep.substr(ep.rfind(':') + 1));
}

bool PortAccepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

// Forwards every channel of a connection file through one `ssh -N -L ...` process and rewrites
// the connection info to the local ends.
class SshTunnel {
 public:
  ~SshTunnel() {
    if (pid_ > 0) {
      kill(-pid_, SIGTERM);
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }

  Status Open(const std::string& server, const std::vector<std::string>& extra, protocol::ConnectionInfo& info,
              Millis timeout) {
    std::string host = server, port;
    size_t colon = server.rfind(':');
    if (colon != std::string::npos && server.find(']') == std::string::npos) {
      host = server.substr(0, colon);
      port = server.substr(colon + 1);
    }
    std::string remote_ip = info.interface.substr(info.interface.find("://") + 3);
    if (remote_ip == "*" || remote_ip == "0.0.0.0") remote_ip = "127.0.0.1";  // as seen from the ssh server
    std::vector<std::string> argv = {"ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes"};
    if (!port.empty()) argv.insert(argv.end(), {"-p", port});
    argv.insert(argv.end(), extra.begin(), extra.end());
    int first_local = 0;
    for (auto& [channel, value] : info.channels.items()) {
      if (!value.is_number_integer()) continue;
      int local = FreeLocalPort();
      if (!first_local) first_local = local;
      argv.push_back("-L");
      argv.push_back("127.0.0.1:" + std::to_string(local) + ":" + remote_ip + ":" + std::to_string(value.get<int>()));
      value = local;
    }
    argv.push_back(host);
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      int devnull = ::open("/dev/null", O_RDWR);
      if (devnull >= 0) dup2(devnull, 0);
      execvp("ssh", args.data());
      _exit(127);
    }
    if (pid_ < 0) return Status::Unavailable("cannot start ssh");
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!PortAccepts(first_local)) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return Status::Unavailable("ssh to " + server + " failed (exit " + std::to_string(WEXITSTATUS(status)) +
                                   "); check the host, your key and that the controller's ports are reachable from it");
      }
      if (std::chrono::steady_clock::now() > deadline) return Status::Timeout("ssh tunnel to " + server + " did not come up");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    info.interface = "tcp://127.0.0.1";
    return Status::OK();
  }

 private:
  pid_t pid_ = -1;
};

// ---------------------------------------------------------------------------------------------
// Client::Impl

struct Client::Impl {
  ClientOptions options;
  protocol::ConnectionInfo info;
  zmq::context_t context;
  std::string id_prefix;
  std::atomic<uint64_t> next_id{0};
  Logger log = MakeLogger("client");

  // User side of the command channel. Guarded by submit_mutex (several user threads may submit).
  std::mutex submit_mutex;
  zmq::socket_t submit{context, zmq::socket_type::push};

  // Engines, written by the I/O thread, read by users. Guarded by engines_mutex.
  mutable std::mutex engines_mutex;
  std::condition_variable engines_changed;
  std::map<int, std::string> engines;
  // Unregistered ids and their uuids: the hub never reuses an id, so never re-add one; a failure
  // reported after the unregistration still names its engine by id.
  std::map<int, std::string> gone;
  std::unordered_map<std::string, EngineKind> kinds;  // by uuid, as learnt by engine_kinds()

  // Written by the I/O thread, read by anyone.
  std::atomic<uint64_t> replies{0}, unmatched_replies{0}, dropped_messages{0};

  // I/O thread only from here on.
  protocol::Session session;
  zmq::socket_t commands{context, zmq::socket_type::pull};
  zmq::socket_t query{context, zmq::socket_type::dealer}, mux{context, zmq::socket_type::dealer},
      task{context, zmq::socket_type::dealer}, control{context, zmq::socket_type::dealer},
      broadcast{context, zmq::socket_type::dealer}, iopub{context, zmq::socket_type::sub},
      notification{context, zmq::socket_type::sub};
  struct Slot {
    std::shared_ptr<AsyncResult::State> state;
    size_t index;
  };
  std::unordered_map<std::string, Slot> pending;                        // awaiting a reply
  struct OutputSlot {
    std::weak_ptr<AsyncResult::State> state;
    size_t index;
  };
  std::unordered_map<std::string, OutputSlot> outputs;  // for IOPub, also after the reply
  static constexpr size_t kPruneOutputsAt = 4096;
  size_t prune_outputs_at = kPruneOutputsAt;  // size at which expired entries are next dropped
  std::unordered_map<std::string, std::set<std::string>> on_engine;     // direct msgs per engine uuid
  std::unordered_map<std::string, std::string> direct_engine;            // direct msg -> engine uuid
  std::unordered_map<std::string, std::promise<Result<Message>>> queries;
  std::unordered_set<std::string> engine_syncs;  // our own connection_requests (see SyncEngines)
  // Requests whose reply has come but not their IOPub idle (see ClientOptions::output_grace).
  struct AwaitingIdle {
    std::weak_ptr<AsyncResult::State> state;
    size_t index;
    Reactor::Clock::time_point replied;
  };
  std::vector<AwaitingIdle> awaiting_idle;
  Reactor::Clock::time_point last_iopub;  // when an IOPub message last arrived
  bool idle_check_armed = false;
  Reactor reactor{MakeLogger("client.io")};
  std::thread io;
  std::unique_ptr<SshTunnel> tunnel;  // ended with the client, after Close() stopped the I/O thread
  std::filesystem::path connection_file;  // for error messages

  explicit Impl(ClientOptions o, protocol::ConnectionInfo i)
      : options(std::move(o)), info(std::move(i)), session(info.key, "username", info.signature_scheme) {
    id_prefix = protocol::NewId() + "_" + std::to_string(getpid()) + "_";
  }

  std::string NewMessageId() { return id_prefix + std::to_string(next_id.fetch_add(1)); }

  void Configure(zmq::socket_t& s) {
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::sndhwm, 0);
    s.set(zmq::sockopt::rcvhwm, 0);
    if (info.curve_serverkey) {
      char pub[41], sec[41];
      zmq_curve_keypair(pub, sec);
      s.set(zmq::sockopt::curve_serverkey, *info.curve_serverkey);
      s.set(zmq::sockopt::curve_publickey, std::string(pub));
      s.set(zmq::sockopt::curve_secretkey, std::string(sec));
    }
  }

  Status Open() {
    if (!session.status().ok()) return session.status();
    for (zmq::socket_t* s : {&query, &mux, &task, &control, &broadcast, &iopub, &notification}) Configure(*s);
    iopub.set(zmq::sockopt::subscribe, "");
    notification.set(zmq::sockopt::subscribe, "");
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
      }
    }
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

  void Close() {
    auto* cmd = new Command();
    cmd->kind = Command::Kind::kStop;
    Post(cmd);
    if (io.joinable()) io.join();
  }

  void Post(Command* cmd) {
    std::lock_guard lock(submit_mutex);
    submit.send(PointerFrame(cmd), zmq::send_flags::none);
  }

  std::string UuidOf(int id) const {
    std::lock_guard lock(engines_mutex);
    auto it = engines.find(id);
    return it == engines.end() ? std::string() : it->second;
  }
  int IdOf(const std::string& uuid) const {
    std::lock_guard lock(engines_mutex);
    for (const auto* known : {&engines, &gone}) {
      for (auto& [id, u] : *known) {
        if (u == uuid) return id;
      }
    }
    return -1;
  }

  // --- I/O thread -------------------------------------------------------------------------

  zmq::socket_t& SocketFor(Channel c) {
    switch (c) {
      case Channel::kMux: return mux;
      case Channel::kTask: return task;
      case Channel::kControl: return control;
      case Channel::kBroadcast: return broadcast;
      case Channel::kQuery: return query;
    }
    return mux;
  }

  void OnCommands() {
    while (true) {
      zmq::message_t frame;
      if (!commands.recv(frame, zmq::recv_flags::dontwait)) return;
      std::unique_ptr<Command> cmd(FromPointerFrame<Command>(frame));
      if (!cmd) continue;
      if (cmd->kind == Command::Kind::kStop) {
        reactor.stop();
        return;
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

  void Send(const std::shared_ptr<AsyncResult::State>& state, Outgoing& out) {
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

  void PruneOutputs() {
    for (auto it = outputs.begin(); it != outputs.end();) {
      if (it->second.state.expired()) {
        it = outputs.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Complete(const std::string& reply_id, const std::function<void(TaskInfo&)>& fill, bool is_reply) {
    auto it = pending.find(reply_id);
    if (it == pending.end()) {  // late duplicate (e.g. after an engine was declared dead)
      if (is_reply) unmatched_replies.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (is_reply) replies.fetch_add(1, std::memory_order_relaxed);
    Slot slot = it->second;
    if (is_reply) pending.erase(it);
    std::unique_lock lock(slot.state->mutex);
    fill(slot.state->tasks[slot.index]);
    if (is_reply) {
      slot.state->got_reply[slot.index] = 1;
      if (slot.state->needs_idle[slot.index] && !slot.state->got_idle[slot.index]) {
        awaiting_idle.push_back({slot.state, slot.index, Reactor::Clock::now()});
        ArmIdleCheck();
      }
    }
    slot.state->MaybeComplete(slot.index, lock);
  }

  void ArmIdleCheck() {
    if (idle_check_armed) return;
    idle_check_armed = true;
    reactor.after(std::max(Millis(10), options.output_grace / 4), [this] { CheckAwaitingIdle(); });
  }

  // Completes the requests whose idle is overdue: none has come for output_grace since their
  // reply and since the last IOPub message (output still flowing may be a backlog that holds
  // it), or for 10 x output_grace in any case.
  void CheckAwaitingIdle() {
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

  // What a reply carries for its result. A native call's successful reply's content is only
  // scanned for its status and result (a full parse of the small content cost more than the
  // rest of the reply's handling); another successful reply's content is parsed whole, as its
  // result; a failed one's whole, into `content`.
  struct ReplyBody {
    std::string status;
    Json result;
    Json content;
    Frames buffers;  // the function's own: the pickle for stock clients is left out
    // What a native function printed, when its reply carries it (then IOPub's copy is not needed).
    std::optional<std::string> printed_stdout, printed_stderr;
  };
  // Verifies a reply and reads the few header, parent and metadata fields a result needs with
  // the scanner; only the content (the result itself) is parsed into a tree.
  Result<ReplyBody> ParseReply(Frames&& frames, std::string* msg_id, std::string* engine_uuid,
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

  void OnReplies(zmq::socket_t& socket) {
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
      const std::string& status = m->status;
      bool printed = m->printed_stdout || m->printed_stderr;
      if (printed) outputs.erase(msg_id);  // the reply has it all: a late IOPub copy would double it
      Complete(msg_id, [&](TaskInfo& t) {
        if (printed) {
          t.stdout_text = m->printed_stdout.value_or("");
          t.stderr_text = m->printed_stderr.value_or("");
        }
        t.status = status;
        t.engine_uuid = engine_uuid;
        t.engine_id = engine_id;
        t.started = std::move(started);
        t.completed = std::move(completed);
        t.result = std::move(m->result);
        t.buffers = protocol::FramesToBuffers(m->buffers);
        if (status == "error") {
          std::vector<std::string> tb;
          auto it = m->content.find("traceback");
          if (it != m->content.end() && it->is_array()) {
            for (const auto& line : *it) {
              if (line.is_string()) tb.push_back(line.get<std::string>());
            }
          }
          t.error = RemoteError(StringField(m->content, "ename"), StringField(m->content, "evalue"), tb, engine_id);
        } else if (status == "aborted") {
          t.error = RemoteError("TaskAborted", "Task aborted", {}, engine_id);
        }
      }, true);
    }
  }

  void OnIopub() {
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

  void OnNotification() {
    for (int n = 0; n < protocol::kBatch; ++n) {
      auto frames = protocol::TryRecv(notification);
      if (!frames) break;
      Result<Message> m = session.parse(std::move(*frames));
      if (!m.ok()) continue;
      int id = m->content.value("id", -1);
      std::string uuid = StringField(m->content, "uuid");
      if (m->msg_type() == "registration_notification") {
        std::lock_guard lock(engines_mutex);
        engines[id] = uuid;
      } else if (m->msg_type() == "unregistration_notification") {
        {
          std::lock_guard lock(engines_mutex);
          engines.erase(id);
          gone[id] = uuid;
        }
        // Direct and broadcast requests still on that engine will never be answered.
        auto stranded = on_engine.find(uuid);
        if (stranded != on_engine.end()) {
          for (const std::string& msg_id : stranded->second) {
            direct_engine.erase(msg_id);
            Complete(msg_id, [&](TaskInfo& t) {
              t.status = "error";
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

  void SyncEngines() {
    Message m;
    m.header = session.make_header("connection_request", NewMessageId());
    engine_syncs.insert(m.header["msg_id"].get<std::string>());
    protocol::Send(query, session.serialize(std::move(m)));
  }

  void OnQueryReply() {
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
            if (uuid.is_string() && !gone.count(eid)) engines.emplace(eid, uuid.get<std::string>());
          }
        }
        engines_changed.notify_all();
        continue;
      }
      auto it = queries.find(parent);
      if (it == queries.end()) continue;
      it->second.set_value(std::move(*m));
      queries.erase(it);
    }
  }

  // --- user side helpers ---------------------------------------------------------------------

  Result<Message> Query(const std::string& type, Json content) {
    auto* cmd = new Command();
    cmd->kind = Command::Kind::kQuery;
    cmd->query_type = type;
    cmd->query_content = std::move(content);
    std::future<Result<Message>> reply = cmd->query_reply.get_future();
    Post(cmd);
    if (reply.wait_for(options.timeout) != std::future_status::ready) {
      return Status::Timeout("the hub did not answer " + type + " within " + std::to_string(options.timeout.count()) + " ms");
    }
    Result<Message> m = reply.get();
    if (m.ok() && m->content.value("status", "ok") != "ok") {
      return Status::Unavailable(StringField(m->content, "ename") + ": " + StringField(m->content, "evalue"));
    }
    return m;
  }

  AsyncResult Submit(std::vector<Outgoing> messages, bool flatten = false, bool unordered = false) {
    std::vector<std::string> ids;
    for (Outgoing& out : messages) {
      out.index = ids.size();
      if (out.reply_ids.empty()) out.reply_ids = {out.msg_id};
      ids.insert(ids.end(), out.reply_ids.begin(), out.reply_ids.end());
    }
    auto state = std::make_shared<AsyncResult::State>(std::move(ids));
    state->flatten = flatten;
    state->unordered = unordered;
    auto* cmd = new Command();
    cmd->state = state;
    cmd->messages = std::move(messages);
    Post(cmd);
    return AsyncResult(state);
  }

  // A request to one engine on the mux or control channel; `content` is JSON text.
  Outgoing RequestText(Channel channel, std::string msg_type, std::string content, std::string engine_uuid) {
    Outgoing out;
    out.channel = channel;
    out.msg_type = std::move(msg_type);
    out.msg_id = NewMessageId();
    out.content = std::move(content);
    out.engine_uuid = std::move(engine_uuid);
    return out;
  }
  Outgoing Request(Channel channel, std::string msg_type, const Json& content, std::string engine_uuid) {
    return RequestText(channel, std::move(msg_type), content.dump(), std::move(engine_uuid));
  }

  // A native call; `args_text` is the arguments' JSON text. The content is written directly
  // (keys in the order nlohmann writes them): it is in every task.
  Outgoing CallText(Channel channel, const std::string& function, const std::string& args_text,
                    std::vector<Buffer> buffers) {
    Outgoing out = RequestText(
        channel, "apply_request",
        "{\"ipp_call\":{\"args\":" + args_text + ",\"function\":" + protocol::JsonString(function) + "}}", "");
    out.buffers = std::move(buffers);
    return out;
  }
  Outgoing Call(Channel channel, const std::string& function, const Json& args, std::vector<Buffer> buffers) {
    return CallText(channel, function, args.dump(), std::move(buffers));
  }

  // A failed AsyncResult for requests that cannot even be sent (e.g. unknown engine id).
  AsyncResult Failed(const std::string& ename, const std::string& evalue) {
    auto state = std::make_shared<AsyncResult::State>(std::vector<std::string>{NewMessageId()});
    std::unique_lock lock(state->mutex);
    state->tasks[0].status = "error";
    state->tasks[0].error = RemoteError(ename, evalue, {}, -1);
    state->got_reply[0] = 1;
    state->MaybeComplete(0, lock);
    return AsyncResult(state);
  }
};

// ---------------------------------------------------------------------------------------------
// Client

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
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
  std::unique_ptr<SshTunnel> tunnel;
  if (!options.ssh_server.empty()) {
    tunnel = std::make_unique<SshTunnel>();
    if (Status s = tunnel->Open(options.ssh_server, options.ssh_args, connection, options.timeout); !s.ok()) return s;
  }
  auto impl = std::make_unique<Impl>(options, connection);
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
  auto state = std::make_shared<AsyncResult::State>(msg_ids);
  Result<Message> m = impl_->Query("result_request", {{"msg_ids", msg_ids}, {"status_only", false}});
  std::unique_lock lock(state->mutex);
  if (!m.ok()) {
    for (size_t i = 0; i < msg_ids.size(); ++i) {
      state->tasks[i].status = "error";
      state->tasks[i].error = RemoteError("KeyError", m.status().message(), {}, -1);
      state->got_reply[i] = 1;
      state->MaybeComplete(i, lock);
    }
    return AsyncResult(state);
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
  return AsyncResult(state);
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

// ---------------------------------------------------------------------------------------------
// Views

namespace {
// items[begin, end) as a JSON array.
Json Slice(const std::vector<Json>& items, size_t begin, size_t end) {
  return Json(std::vector<Json>(items.begin() + static_cast<long>(begin), items.begin() + static_cast<long>(end)));
}

// The arguments of ipp.map for items[begin, end), as JSON text. (The chunk is dumped in one
// call: dumping item by item cost a serializer and a string per item, a third of a 1000-item
// chunk's time.)
std::string MapArgs(const std::string& function, const std::vector<Json>& items, size_t begin, size_t end) {
  return "{\"function\":" + protocol::JsonString(function) + ",\"items\":" + Slice(items, begin, end).dump() + "}";
}

// Splits n items into k contiguous parts as even as possible (ipyparallel's Map partition).
std::vector<std::pair<size_t, size_t>> Partition(size_t n, size_t k) {
  std::vector<std::pair<size_t, size_t>> parts;
  size_t start = 0;
  for (size_t i = 0; i < k; ++i) {
    size_t len = n / k + (i < n % k ? 1 : 0);
    parts.emplace_back(start, start + len);
    start += len;
  }
  return parts;
}
}  // namespace

AsyncResult DirectView::apply(const std::string& function, Json args, std::vector<Buffer> buffers) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    std::string uuid = impl.UuidOf(id);
    if (uuid.empty()) return impl.Failed("IndexError", "no engine with id " + std::to_string(id));
    Outgoing o = impl.Call(Channel::kMux, function, args, buffers);
    o.engine_uuid = uuid;
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

AsyncResult DirectView::map(const std::string& function, const std::vector<Json>& items) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  auto parts = Partition(items.size(), targets_.size());
  for (size_t i = 0; i < targets_.size(); ++i) {
    std::string uuid = impl.UuidOf(targets_[i]);
    if (uuid.empty()) return impl.Failed("IndexError", "no engine with id " + std::to_string(targets_[i]));
    Outgoing o = impl.CallText(Channel::kMux, "ipp.map", MapArgs(function, items, parts[i].first, parts[i].second), {});
    o.engine_uuid = uuid;
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out), /*flatten=*/true);
}

AsyncResult DirectView::execute(const std::string& command, const Json& user_expressions, bool silent) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    Outgoing o = impl.Request(Channel::kMux, "execute_request",
                              {{"code", command}, {"silent", silent}, {"store_history", false},
                               {"user_expressions", user_expressions}, {"allow_stdin", false}, {"stop_on_error", false}},
                              impl.UuidOf(id));
    if (o.engine_uuid.empty()) return impl.Failed("IndexError", "no engine with id " + std::to_string(id));
    o.needs_idle = true;  // complete once all its output has arrived
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

namespace {
Status Wait(const AsyncResult& r, Millis timeout) {
  try {
    r.get(timeout);
    return Status::OK();
  } catch (const RemoteError& e) {
    return Status::Unavailable(e.what());
  } catch (const TimeoutError& e) {
    return Status::Timeout(e.what());
  }
}
}  // namespace

Status DirectView::push(const std::map<std::string, Json>& values, Millis timeout) {
  Json v = Json::object();
  for (auto& [k, val] : values) v[k] = val;
  return Wait(apply("ipp.push", {{"values", v}}), timeout);
}

Status DirectView::push_buffer(const std::string& name, Buffer buffer, Millis timeout) {
  return Wait(apply("ipp.push", {{"values", {{name, nullptr}}}, {"buffer_names", {name}}}, {std::move(buffer)}), timeout);
}

Result<std::vector<Json>> DirectView::pull(const std::vector<std::string>& names, Millis timeout) {
  AsyncResult r = apply("ipp.pull", {{"names", names}});
  try {
    std::vector<Json> out;
    for (Json& v : r.get(timeout)) out.push_back(v.value("values", Json::object()));
    return out;
  } catch (const std::exception& e) {
    return Status::Unavailable(e.what());
  }
}

Status DirectView::scatter(const std::string& name, const std::vector<Json>& items, Millis timeout) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  auto parts = Partition(items.size(), targets_.size());
  for (size_t i = 0; i < targets_.size(); ++i) {
    Json chunk = Slice(items, parts[i].first, parts[i].second);
    Outgoing o = impl.Call(Channel::kMux, "ipp.push", {{"values", {{name, chunk}}}}, {});
    o.engine_uuid = impl.UuidOf(targets_[i]);
    if (o.engine_uuid.empty()) return Status::NotFound("no engine with id " + std::to_string(targets_[i]));
    out.push_back(std::move(o));
  }
  return Wait(impl.Submit(std::move(out)), timeout);
}

Result<std::vector<Json>> DirectView::gather(const std::string& name, Millis timeout) {
  Result<std::vector<Json>> parts = pull({name}, timeout);
  if (!parts.ok()) return parts.status();
  std::vector<Json> out;
  for (Json& p : *parts) {
    Json& v = p[name];
    if (v.is_array()) {
      for (auto& item : v) out.push_back(item);
    } else {
      out.push_back(v);
    }
  }
  return out;
}

AsyncResult DirectView::load_plugin(const std::string& path) {
  std::error_code ec;
  return apply("ipp.load", {{"path", std::filesystem::absolute(path, ec).string()}});
}

AsyncResult DirectView::kernel_info() {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    Outgoing o = impl.Request(Channel::kControl, "kernel_info_request", Json::object(), impl.UuidOf(id));
    if (o.engine_uuid.empty()) return impl.Failed("IndexError", "no engine with id " + std::to_string(id));
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

AsyncResult DirectView::abort(const std::vector<std::string>& msg_ids) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    Outgoing o = impl.Request(Channel::kControl, "abort_request",
                              {{"msg_ids", msg_ids.empty() ? Json(nullptr) : Json(msg_ids)}}, impl.UuidOf(id));
    if (!o.engine_uuid.empty()) out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

namespace {
Json DependencyJson(const std::vector<std::string>& ids, bool all, bool success, bool failure) {
  return {{"dependencies", ids}, {"all", all}, {"success", success}, {"failure", failure}};
}
}  // namespace

static Json TaskMetadata(Client::Impl& impl, const TaskOptions& o) {
  Json targets = Json::array();
  for (int id : o.targets) targets.push_back(impl.UuidOf(id));
  Json md = {{"targets", targets}, {"retries", o.retries}};
  if (!o.after.empty()) md["after"] = DependencyJson(o.after, o.after_all, o.success, o.failure);
  if (!o.follow.empty()) md["follow"] = DependencyJson(o.follow, o.follow_all, o.success, o.failure);
  if (o.timeout > 0) md["timeout"] = o.timeout;
  return md;
}

AsyncResult LoadBalancedView::apply(const std::string& function, Json args, std::vector<Buffer> buffers) {
  auto& impl = *client_->impl_;
  Outgoing o = impl.Call(Channel::kTask, function, std::move(args), std::move(buffers));
  o.metadata = std::make_shared<const std::string>(TaskMetadata(impl, options_).dump());
  std::vector<Outgoing> out;
  out.push_back(std::move(o));
  return impl.Submit(std::move(out));
}

AsyncResult LoadBalancedView::map(const std::string& function, const std::vector<Json>& items, size_t chunksize,
                                  bool ordered) {
  auto& impl = *client_->impl_;
  if (chunksize == 0) chunksize = 1;
  auto md = std::make_shared<const std::string>(TaskMetadata(impl, options_).dump());
  std::vector<Outgoing> out;
  out.reserve(items.size() / chunksize + 1);
  for (size_t start = 0; start < items.size(); start += chunksize) {
    size_t end = std::min(items.size(), start + chunksize);
    Outgoing o = impl.CallText(Channel::kTask, "ipp.map", MapArgs(function, items, start, end), {});
    o.metadata = md;
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out), /*flatten=*/true, /*unordered=*/!ordered);
}

AsyncResult LoadBalancedView::shell(const std::string& command, double timeout, bool check) {
  return apply("ipp.shell", {{"command", command}, {"timeout", timeout}, {"check", check}});
}

AsyncResult BroadcastView::apply(const std::string& function, Json args, std::vector<Buffer> buffers) {
  auto& impl = *client_->impl_;
  Outgoing o = impl.Call(Channel::kBroadcast, function, std::move(args), std::move(buffers));
  Json targets = Json::array();
  for (int id : targets_) {
    std::string uuid = impl.UuidOf(id);
    if (uuid.empty()) return impl.Failed("IndexError", "no engine with id " + std::to_string(id));
    targets.push_back({uuid, id});
    o.reply_ids.push_back(o.msg_id + "_" + uuid);  // each engine answers under its own id
  }
  o.metadata = std::make_shared<const std::string>(
      Json{{"targets", targets}, {"is_broadcast", true}, {"is_coalescing", false}}.dump());
  std::vector<Outgoing> out;
  out.push_back(std::move(o));
  return impl.Submit(std::move(out));
}

}  // namespace ipp

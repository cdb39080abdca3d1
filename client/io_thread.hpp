// ClientImpl: the client's core, an I/O thread that owns every socket, fed by user threads
// through an inproc PUSH/PULL pair carrying Command pointers (ownership travels with the
// pointer). Private to the client library (not installed).
//
// Threads: members are grouped by who touches them, and each group says so. Result state shared
// with users (ResultState) has its own lock: users block on it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <zmq.hpp>

#include "client/result_state.hpp"
#include "client/ssh_tunnel.hpp"
#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/session.hpp"

namespace ipp::detail {

using protocol::Frames;
using protocol::Message;

enum class Channel { kMux, kTask, kControl, kBroadcast, kQuery };

// A plugin's path as engines are given it (load_plugin, register_plugin): absolute from the
// client's directory, normalized, so that the hub keeps each library once.
std::string PluginPath(const std::string& path);

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
  // kWatch: ask the hub for `state`'s messages until none is pending (see PollResults).
  enum class Kind { kSend, kQuery, kWatch, kStop } kind = Kind::kSend;
  std::shared_ptr<ResultState> state;
  std::vector<Outgoing> messages;
  // kQuery
  std::string query_type;
  Json query_content;
  std::promise<Result<Message>> query_reply;
};

using protocol::StringField;

struct ClientImpl {
  ClientImpl(ClientOptions o, protocol::ConnectionInfo i);

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
  // Every uuid in engines or gone, to its id: each reply names its engine by uuid, and a walk of
  // the engine list per reply cost O(engines) (O(engines^2) for an apply to all).
  std::unordered_map<std::string, int> ids_by_uuid;
  std::unordered_map<std::string, EngineKind> kinds;  // by uuid, as learnt by engine_kinds()

  // Written by the I/O thread, read by anyone.
  std::atomic<uint64_t> replies{0}, unmatched_replies{0}, dropped_messages{0};
  std::atomic<bool> our_controller{false};  // controller_instance is not empty

  // I/O thread only from here on.
  protocol::Session session;
  zmq::socket_t commands{context, zmq::socket_type::pull};
  zmq::socket_t query{context, zmq::socket_type::dealer}, mux{context, zmq::socket_type::dealer},
      task{context, zmq::socket_type::dealer}, control{context, zmq::socket_type::dealer},
      broadcast{context, zmq::socket_type::dealer}, iopub{context, zmq::socket_type::sub},
      notification{context, zmq::socket_type::sub};
  struct Slot {
    std::shared_ptr<ResultState> state;
    size_t index;
  };
  std::unordered_map<std::string, Slot> pending;                        // awaiting a reply
  struct OutputSlot {
    std::weak_ptr<ResultState> state;
    size_t index;
  };
  std::unordered_map<std::string, OutputSlot> outputs;  // for IOPub, also after the reply
  static constexpr size_t kPruneOutputsAt = 4096;
  size_t prune_outputs_at = kPruneOutputsAt;  // size at which expired entries are next dropped
  std::unordered_map<std::string, std::set<std::string>> on_engine;     // direct msgs per engine uuid
  std::unordered_map<std::string, std::string> direct_engine;            // direct msg -> engine uuid
  std::unordered_map<std::string, std::promise<Result<Message>>> queries;
  // Our result_requests for get_result's pending messages, by request msg_id.
  std::unordered_map<std::string, std::weak_ptr<ResultState>> result_polls;
  static constexpr Millis kResultPollInterval{100};
  std::unordered_set<std::string> engine_syncs;  // our own connection_requests (see SyncEngines)
  // Recovery from a controller restart. Load-balanced requests with no reply yet, as sent (a
  // restored controller may not know them); the controller's instance (connection_reply's
  // "ipp_controller", empty from a stock one); our recovery queries by msg_id: the db_request
  // asking which of these ids the hub knows, then result_requests for those it has finished.
  std::unordered_map<std::string, Outgoing> unanswered_tasks;
  std::string controller_instance;
  std::unordered_map<std::string, std::vector<std::string>> recovery_lookups;
  std::unordered_set<std::string> recovery_fetches;
  // Requests whose reply has come but not their IOPub idle (see ClientOptions::output_grace).
  struct AwaitingIdle {
    std::weak_ptr<ResultState> state;
    size_t index;
    Reactor::Clock::time_point replied;
  };
  std::vector<AwaitingIdle> awaiting_idle;
  // Replies from an engine whose registration_notification had not come yet (it takes another
  // path than the reply): named by id when it comes. Bounded by kMaxUnnamed.
  struct Unnamed {
    std::weak_ptr<ResultState> state;
    size_t index;
  };
  std::unordered_map<std::string, std::vector<Unnamed>> unnamed_by_uuid;
  size_t unnamed_count = 0;
  static constexpr size_t kMaxUnnamed = 4096;
  void NameEngine(const std::string& uuid, int id);
  Reactor::Clock::time_point last_iopub;  // when an IOPub message last arrived
  bool idle_check_armed = false;
  Reactor reactor{MakeLogger("client.io")};
  std::thread io;
  std::unique_ptr<SshTunnel> tunnel;  // ended with the client, after Close() stopped the I/O thread
  std::filesystem::path connection_file;  // for error messages

  std::string NewMessageId() { return id_prefix + std::to_string(next_id.fetch_add(1)); }
  Status Configure(zmq::socket_t& s);
  // Connects, asks the hub for the engines, then starts the I/O thread.
  Status Open();
  // Stops the I/O thread and waits for it.
  void Close();
  void Post(Command* cmd);
  std::string UuidOf(int id) const;
  int IdOf(const std::string& uuid) const;

  // --- I/O thread -------------------------------------------------------------------------

  zmq::socket_t& SocketFor(Channel c);
  void OnCommands();
  void Send(const std::shared_ptr<ResultState>& state, Outgoing& out);
  void PruneOutputs();
  void Complete(const std::string& reply_id, const std::function<void(TaskInfo&)>& fill, bool is_reply);
  void ArmIdleCheck();
  // Completes the requests whose idle is overdue: none has come for output_grace since their
  // reply and since the last IOPub message (output still flowing may be a backlog that holds
  // it), or for 10 x output_grace in any case.
  void CheckAwaitingIdle();

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
                               std::string* started, std::string* completed);
  void OnReplies(zmq::socket_t& socket);
  void OnIopub();
  void OnNotification();
  void SyncEngines();
  // The controller came back (its instance changed): asks which unanswered tasks it knows.
  void Recover();
  // Its answer: tasks it does not know are sent again under the same msg_id; the results of
  // those it finished (whose replies may have gone to us before we reconnected) are fetched.
  void OnRecoveryLookup(const std::vector<std::string>& asked, Message& reply);
  void OnRecoveryFetch(Message& reply);
  // Serializes and sends `out` (its content is copied, not moved: it may be sent again).
  void SendTask(const Outgoing& out);
  void OnQueryReply();
  // Asks the hub for the results of `state`'s messages that have none yet.
  void PollResults(const std::shared_ptr<ResultState>& state);

  // --- user side helpers ---------------------------------------------------------------------

  // A hub query and its answer; kTimeout if none within options.timeout.
  Result<Message> Ask(const std::string& type, Json content);
  // Ask, and kUnavailable for an answer with an error status.
  Result<Message> Query(const std::string& type, Json content);
  // Fills `state`'s messages that have no reply yet from a result_reply (failing them all if
  // it is an error); true when none is left pending. Any thread; takes the state's lock.
  bool ApplyResultReply(ResultState& state, Message& m);
  AsyncResult Submit(std::vector<Outgoing> messages, bool flatten = false, bool unordered = false);
  // A request to one engine on the mux or control channel; `content` is JSON text.
  Outgoing RequestText(Channel channel, std::string msg_type, std::string content, std::string engine_uuid);
  Outgoing Request(Channel channel, std::string msg_type, const Json& content, std::string engine_uuid);
  // A native call; `args_text` is the arguments' JSON text. The content is written directly
  // (keys in the order nlohmann writes them): it is in every task.
  Outgoing CallText(Channel channel, const std::string& function, const std::string& args_text,
                    std::vector<Buffer> buffers);
  Outgoing Call(Channel channel, const std::string& function, const Json& args, std::vector<Buffer> buffers);
  // A failed AsyncResult for requests that cannot even be sent (e.g. unknown engine id).
  AsyncResult Failed(const std::string& ename, const std::string& evalue);
  AsyncResult NoEngine(int id);  // Failed: IndexError, as Python's client raises
};

}  // namespace ipp::detail

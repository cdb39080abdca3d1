// Hub: engine registration and the client query service (ipyparallel controller/hub.py).
//
// Owns the registration/query ROUTER, the notification PUBs (one for clients, one inproc for our
// schedulers: both get registrations, only the inproc one our own ipp_engine_update), the
// monitor PULL on which schedulers report traffic (protocol/monitor.hpp), the resubmit DEALER,
// the HeartMonitor and the TaskStore. Everything runs on the thread that runs
// its Reactor. The implementation is in four files: hub.cpp (sockets, query dispatch,
// notifications), hub_engines.cpp, hub_queries.cpp and hub_monitor.cpp.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <sys/resource.h>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "controller/controller_options.hpp"
#include "controller/heart_monitor.hpp"
#include "controller/task_journal.hpp"
#include "controller/task_store.hpp"
#include "dashboard/aggregator.hpp"
#include "protocol/capabilities.hpp"
#include "protocol/monitor.hpp"
#include "protocol/session.hpp"

namespace ipp::controller {

struct HubOptions {
  // tcp endpoints may use port "*": the hub binds them and reports the ports (BoundPorts).
  std::string query_url;           // registration + client queries
  std::string notification_url;    // for clients
  std::string internal_notification_url;  // inproc, for our schedulers
  std::string monitor_url;         // bind (inproc)
  std::string resubmit_url;        // connect: the task scheduler's client side
  std::string ping_url, pong_url;  // bind
  // Not empty: the query, notification and heartbeat sockets also bind there, at the port
  // each got over TCP (protocol::ChannelUrl).
  std::string local_interface;
  nlohmann::json engine_info;  // connection_info handed to engines; set after Bind()
  std::chrono::milliseconds ping_period{3000};
  int max_heartbeat_misses = 3;
  std::chrono::milliseconds registration_timeout{30000};
  std::filesystem::path engine_state_file;  // empty: not saved
  bool restore = false;                     // reload engines from engine_state_file
  // With a journal: how long a restore waits before running the tasks it recorded again, so
  // that clients and engines have reconnected (a reply to a client not yet connected is lost).
  std::chrono::milliseconds restore_tasks_after{1000};
  std::function<void(zmq::socket_t&)> secure = [](zmq::socket_t&) {};  // CURVE server setup
  std::string curve_serverkey;  // Z85: set, the resubmit socket connects as a CURVE client
  // Not kNever: the controller runs the gateway, and the heart monitor listens for it too.
  GatewayUse gateway = GatewayUse::kNever;
};

class Hub {
 public:
  // File descriptors: each engine holds up to this many connections to the controller
  // (registration, control, mux, task, broadcast, two on iopub, heartbeat ping and pong), one
  // descriptor each; kFdReserve are kept for clients, files and the dashboard. A registration
  // that would leave less is refused: past the limit accept() fails and libzmq retries it in
  // a busy loop, and a socket that cannot get its descriptor aborts the process.
  static constexpr long kFdsPerEngine = 9;
  // Through the gateway: registration and the gateway connection.
  static constexpr long kFdsPerGatewayEngine = 2;
  static constexpr long kFdReserve = 128;
  // "limit N (hard limit M)" for the log and the refusal: M may be "unlimited".
  static std::string FdLimitText(rlim_t soft, rlim_t hard);
  // Called once, on the hub thread, after a client asked the hub to shut down.
  using ShutdownCallback = std::function<void()>;

  Hub(zmq::context_t& context, const std::string& key, HubOptions options,
      std::unique_ptr<TaskStore> store, Logger log, ShutdownCallback on_shutdown);
  // Saves the engine list if a save is still pending.
  ~Hub();
  struct BoundPorts {
    int registration, notification, hb_ping, hb_pong;
  };
  // Binds every socket; throws zmq::error_t if an address is taken.
  BoundPorts Bind();
  // What registering engines are told (channels, interface); needs the ports Bind() chose.
  void SetEngineInfo(nlohmann::json info) { options_.engine_info = std::move(info); }
  // "reactor" must outlive the Hub.
  void Attach(Reactor& reactor);
  // Fed on the hub thread from then on (nullptr: none); must outlive the Hub. Before Attach().
  void SetDashboard(dashboard::Aggregator* aggregator) { dashboard_ = aggregator; }
  // Records accepted load-balanced requests (nullptr: none); with HubOptions::restore, those it
  // holds are run again. Before Attach().
  void SetJournal(std::unique_ptr<TaskJournal> journal) { journal_ = std::move(journal); }

  std::vector<std::string> engine_uuids() const {
    std::vector<std::string> out;
    for (const auto& [id, e] : engines_) out.push_back(e.uuid);
    return out;
  }
  // What each registered engine can run (a Python engine's when it said nothing), for a task
  // scheduler that starts after engines were restored.
  std::vector<std::pair<std::string /*uuid*/, protocol::Capabilities>> engine_capabilities() const;

 private:
  struct Engine {
    int id;
    std::string uuid;
    std::deque<std::string> queue;      // pending MUX msg_ids
    std::deque<std::string> tasks;      // pending load-balanced msg_ids
    // Finished msg_ids: a count, and the most recent ones for queue_status(verbose=True).
    // (The stock hub keeps every id forever; a long-lived controller must not.)
    size_t completed_count = 0;
    std::deque<std::string> recent_completed;
    // As the engine announced them ("ipp" at registration, then ipp_engine_update); nullopt when
    // it said nothing (a stock Python engine): its notifications then carry no "ipp".
    std::optional<protocol::Capabilities> capabilities;
  };
  static constexpr size_t kRecentCompleted = 1000;
  struct Incoming {
    int id;
    std::string uuid;
    std::chrono::steady_clock::time_point deadline;  // purged if no heartbeat by then
    std::optional<protocol::Capabilities> capabilities;
    long fds;  // descriptors it may hold: kFdsPerEngine, or kFdsPerGatewayEngine
  };
  // Refreshes fds_counted_ when it is stale, for an engine that would cost `cost` more; returns the
  // soft limit, or -1 when there is none (or it cannot be read).
  long RecountFds(long cost);
  // Empty when there is room for one more engine that costs `cost`; else why not, for the refusal.
  std::string FdShortage(long cost);
  // Whether the engine registering with `m` comes in through the gateway (GatewayUse).
  bool UseGateway(const protocol::Message& m);
  // Tells the gateway to open `uuid`'s channels when it says hello.
  void LetInThroughGateway(const std::string& uuid);
  void GoneFromGateway(const std::string& uuid);  // if it came in through it
  using IncomingMap = std::unordered_map<std::string, Incoming>;
  // Forgets a registration that will not complete (and tells the gateway); the next entry.
  IncomingMap::iterator CancelRegistration(IncomingMap::iterator it);
  using QueryHandler = void (Hub::*)(protocol::Message&);

  // Query channel.
  void OnQuery();
  void Reply(protocol::Message& request, std::string_view msg_type, nlohmann::json content,
             protocol::Frames buffers = {});
  void ConnectionRequest(protocol::Message& m);
  void RegistrationRequest(protocol::Message& m);
  void UnregistrationRequest(protocol::Message& m);
  void EngineUpdate(protocol::Message& m);  // ipp_engine_update: an engine's functions changed
  // ipp_engine_exit_request: ipcluster says how an engine process it launched ended.
  void EngineExit(protocol::Message& m);
  // ipp_plugins_request: lists, and with "add" extends, the plugins engines load as they register.
  void PluginsRequest(protocol::Message& m);
  void QueueRequest(protocol::Message& m);
  void LoadRequest(protocol::Message& m);
  void ResultRequest(protocol::Message& m);
  void HistoryRequest(protocol::Message& m);
  void DbRequest(protocol::Message& m);
  void PurgeRequest(protocol::Message& m);
  void ResubmitRequest(protocol::Message& m);
  void ShutdownRequest(protocol::Message& m);

  // Engines.
  int NewEngineId(const nlohmann::json& requested);
  void FinishRegistration(const std::string& uuid);
  // `why` completes "engine N (uuid U) unregistered: "; it goes to the log, to the
  // unregistration_notification ("reason", which stock clients ignore) and into the EngineError
  // of each task stranded on the engine.
  // dead: dropped for missed heartbeats (else it asked to leave).
  void UnregisterEngine(int id, const std::string& why, bool dead = false);
  void HandleStranded(int id, const std::string& uuid, const std::string& why, std::vector<std::string> msg_ids);
  Result<std::vector<int>> ValidateTargets(const nlohmann::json& targets) const;
  // Saves the engine list: at once for the first kSavesAtOnce changes in a second while they
  // took less than kSaveBudget together, then once a second and after at least 50 times what the
  // last save took (at most kSaveDelayMax after the change). A save writes every engine and
  // fsyncs: once per registration in a storm of thousands would be quadratic and would block the
  // hub on the disk thousands of times.
  static constexpr int kSavesAtOnce = 20;
  static constexpr std::chrono::milliseconds kSaveBudget{50};
  static constexpr std::chrono::seconds kSaveDelayMax{5};
  void EngineStateChanged();
  void SaveEngineState();
  // Registrations that got no heartbeat by their deadline.
  void PurgeStalledRegistrations();
  void LoadEngineState();
  // --restore with a journal: the recorded requests become pending again at once (queries see
  // them), and go to the task scheduler after restore_tasks_after, under their own msg_ids and
  // on behalf of their clients' routing ids.
  void RestoreTasks();
  // To clients and our schedulers; NotifyInternal: to our schedulers only (a message type the
  // stock client does not know would raise in it).
  void Notify(std::string_view msg_type, nlohmann::json content);
  void NotifyInternal(std::string_view msg_type, nlohmann::json content);
  nlohmann::json RegistrationNotice(int id, const Engine& engine) const;
  void OnNotificationSubscriptions(zmq::socket_t& notifier);

  // Monitor channel. Read in paced batches: after a batch that emptied the channel, the hub
  // stops watching it for kMonitorPause, because every hub wake-up takes a core some message
  // needs. The records lag by at most the pause; a query, an engine's departure and the
  // handling of its stranded work read the channel to the end first, so no answer sees the lag.
  static constexpr std::chrono::milliseconds kMonitorPause{10};
  void OnMonitor();
  size_t ReadMonitor(size_t max);
  void CatchUpMonitor();
  void SaveRequest(protocol::RawMessage& raw, const std::string& queue, const std::string& engine_uuid);
  void SaveResult(protocol::RawMessage& raw, protocol::monitor::Topic topic, const std::string& engine_hint);
  void SaveTaskDestination(const std::string& msg_id, const std::string& engine_uuid);
  // A load-balanced task waits for an engine that can run it ("" reason: no longer).
  void SaveTaskWaiting(const std::string& msg_id, const std::string& reason);
  void StopWaiting(const std::string& msg_id);
  void SaveIopub(protocol::RawMessage& raw);
  // Logs a TaskStore write that failed: a missing record (culled by the store's limits, or never
  // made) at debug level, anything else (a database error) as an error. The hub keeps serving.
  void LogStoreFailure(const Status& s, std::string_view what, const std::string& msg_id) const;

  protocol::Session session_;
  HubOptions options_;
  std::unique_ptr<TaskStore> store_;
  std::unique_ptr<TaskJournal> journal_;
  Logger log_;
  ShutdownCallback on_shutdown_;
  zmq::socket_t query_, notifier_, internal_notifier_, monitor_, resubmit_;
  zmq::socket_t gateway_allow_;  // PUSH: engines let in through the gateway, and gone
  std::unordered_set<std::string> through_gateway_;  // uuids let in and not gone (gateway::kMaxEngines)
  HeartMonitor heart_;
  dashboard::Aggregator* dashboard_ = nullptr;
  Reactor* reactor_ = nullptr;
  Reactor::TimerId reping_timer_ = 0;
  Reactor::TimerId save_timer_ = 0;
  std::chrono::steady_clock::time_point last_save_{}, save_window_start_{};
  int saves_in_window_ = 0;
  std::chrono::steady_clock::duration last_save_cost_{}, saved_for_in_window_{};
  // Open descriptors as last counted (counting reads /proc/self/fd: O(descriptors)), and when.
  long fds_counted_ = 0;
  std::chrono::steady_clock::time_point fds_counted_at_{};
  bool shutting_down_ = false;
  const std::string instance_ = protocol::NewId();  // connection_reply's "ipp_controller"

  // Queries that read what the monitor channel feeds (task records, engine queues) are answered
  // after the channel is read to the end (CatchUpMonitor); the others (connection, registration,
  // shutdown) do not wait for it, so a flooded channel cannot delay registrations.
  struct QueryRoute {
    QueryHandler handler;
    bool needs_monitor;
  };
  std::unordered_map<std::string, QueryRoute> query_handlers_;
  std::map<int, Engine> engines_;
  // Engines that died (missed heartbeats, or their process ended), newest last, at most kDeadKept:
  // queue_status' "dead". `how` is why the hub dropped it until ipcluster says how it ended.
  struct DeadEngine {
    int id;
    std::string uuid, hostname;
    std::optional<long> pid;
    std::string how, log_tail;
    std::string when;  // ISO 8601
  };
  static constexpr size_t kDeadKept = 100;
  static constexpr size_t kLogTailKept = 4096;  // bytes of an ended process's log kept
  std::deque<DeadEngine> dead_;
  DeadEngine* FindDead(const std::string& hostname, long pid);
  std::unordered_map<std::string, int> by_uuid_;
  IncomingMap incoming_;  // by uuid, awaiting the first heartbeat
  // Plugin libraries (absolute paths, in the order added) that every native engine loads when it
  // registers, so that engines started or restarted later have what `ipp load` gave the others.
  // The registration reply names them ("ipp_plugins"; stock engines ignore it); saved with the
  // engine state.
  std::vector<std::string> plugins_;
  int next_id_ = 0;
  std::unordered_set<std::string> pending_;     // submitted, no result yet
  // Pending load-balanced msg_id -> the engine the scheduler last sent it to (kept here: the task
  // store may keep no records, with --nodb).
  std::unordered_map<std::string, std::string> task_engine_;
  std::unordered_set<std::string> unassigned_;  // load-balanced, not yet on an engine
  // Unassigned tasks that no connected engine can run, by what they wait for (queue_status'
  // "waiting"): each reason text is kept once, with how many tasks wait for it; a task is
  // forgotten when the scheduler says it no longer waits, it gets an engine, or it gets a reply.
  std::map<std::string, size_t> waiting_reasons_;
  std::unordered_map<std::string, std::map<std::string, size_t>::iterator> waiting_tasks_;
  // Clients whose connection was logged at info level: our client repeats connection_request every
  // 2 s to re-read the engine list, and those repeats log at debug. Two generations bound the
  // memory: when the newer holds kKnownClients / 2 ids it becomes the older, so a client not heard
  // from for a whole generation is forgotten (and logged again if it comes back).
  static constexpr size_t kKnownClients = 4096;
  std::unordered_set<std::string> clients_newer_, clients_older_;
  bool FirstConnection(const std::string& client);
};

}  // namespace ipp::controller

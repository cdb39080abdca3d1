// Hub: engine registration and the client query service (ipyparallel controller/hub.py).
//
// Owns the registration/query ROUTER, the notification PUB (clients and our schedulers both
// subscribe), the monitor PULL on which schedulers report traffic, the resubmit DEALER, the
// HeartMonitor and the TaskStore. Everything runs on the thread that runs its Reactor.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "controller/heart_monitor.hpp"
#include "controller/task_store.hpp"
#include "protocol/session.hpp"

namespace ipp::controller {

// Topics of the internal monitor channel (first frame), as in ipyparallel's monitored queues.
namespace monitor {
inline constexpr std::string_view kMuxRequest = "in";        // [in, engine, client, <msg>]
inline constexpr std::string_view kMuxReply = "out";         // [out, client, engine, <msg>]
inline constexpr std::string_view kTaskRequest = "intask";   // [intask, client, <msg>]
inline constexpr std::string_view kTaskReply = "outtask";    // [outtask, engine|"", client, <msg>]
inline constexpr std::string_view kTaskDestination = "tracktask";  // [tracktask, msg_id, engine]
inline constexpr std::string_view kBroadcastRequest = "inbcast";   // [inbcast, client, <msg>]
inline constexpr std::string_view kBroadcastReply = "outbcast";    // [outbcast, client, <msg>]
inline constexpr std::string_view kIopub = "iopub";                // [iopub, topic, <msg>]
}  // namespace monitor

struct HubOptions {
  // tcp endpoints may use port "*": the hub binds them and reports the ports (BoundPorts).
  std::string query_url;           // registration + client queries
  std::string notification_url;    // for clients
  std::string internal_notification_url;  // inproc, for our schedulers
  std::string monitor_url;         // bind (inproc)
  std::string resubmit_url;        // connect: the task scheduler's client side
  std::string ping_url, pong_url;  // bind
  nlohmann::json engine_info;  // connection_info handed to engines; set after Bind()
  std::chrono::milliseconds ping_period{3000};
  int max_heartbeat_misses = 3;
  std::chrono::milliseconds registration_timeout{30000};
  std::filesystem::path engine_state_file;  // empty: not saved
  bool restore = false;                     // reload engines from engine_state_file
  std::function<void(zmq::socket_t&)> secure = [](zmq::socket_t&) {};  // CURVE server setup
  std::string curve_serverkey;  // Z85: set, the resubmit socket connects as a CURVE client
};

class Hub {
 public:
  // Called once, on the hub thread, after a client asked the hub to shut down.
  using ShutdownCallback = std::function<void()>;

  Hub(zmq::context_t& context, const std::string& key, HubOptions options,
      std::unique_ptr<TaskStore> store, Logger log, ShutdownCallback on_shutdown);
  struct BoundPorts {
    int registration, notification, hb_ping, hb_pong;
  };
  // Binds every socket; throws zmq::error_t if an address is taken.
  BoundPorts Bind();
  // What registering engines are told (channels, interface); needs the ports Bind() chose.
  void SetEngineInfo(nlohmann::json info) { options_.engine_info = std::move(info); }
  // "reactor" must outlive the Hub.
  void Attach(Reactor& reactor);

  size_t engine_count() const { return engines_.size(); }
  std::vector<std::string> engine_uuids() const {
    std::vector<std::string> out;
    for (const auto& [id, e] : engines_) out.push_back(e.uuid);
    return out;
  }

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
  };
  static constexpr size_t kRecentCompleted = 1000;
  struct Incoming {
    int id;
    std::string uuid;
    Reactor::TimerId stall_timer;
  };
  using QueryHandler = void (Hub::*)(protocol::Message&);

  // Query channel.
  void OnQuery();
  void Reply(protocol::Message& request, std::string_view msg_type, nlohmann::json content,
             protocol::Frames buffers = {});
  void ConnectionRequest(protocol::Message& m);
  void RegistrationRequest(protocol::Message& m);
  void UnregistrationRequest(protocol::Message& m);
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
  void UnregisterEngine(int id, const std::string& why);
  void HandleStranded(int id, const std::string& uuid, const std::string& why, std::vector<std::string> msg_ids);
  Result<std::vector<int>> ValidateTargets(const nlohmann::json& targets) const;
  void SaveEngineState() const;
  void LoadEngineState();
  void Notify(std::string_view msg_type, nlohmann::json content);
  void OnNotificationSubscriptions();

  // Monitor channel. Read in paced batches: after a batch that emptied the channel, the hub
  // stops watching it for kMonitorPause. Every hub wake-up lands on a core some message needs
  // (2 per direct round trip cost it 0.1x raw ZeroMQ; paced by 1 ms, 0.05x; by 10 ms, ~0.01x);
  // the records lag by at most the pause, and a query, an engine's departure and the handling
  // of its stranded work read the channel to the end first, so no answer ever sees the lag.
  static constexpr std::chrono::milliseconds kMonitorPause{10};
  void OnMonitor();
  size_t ReadMonitor(size_t max);
  void CatchUpMonitor();
  void SaveRequest(protocol::RawMessage& raw, const std::string& queue, const std::string& engine_uuid);
  void SaveResult(protocol::RawMessage& raw, std::string_view topic, const std::string& engine_hint);
  void SaveTaskDestination(const std::string& msg_id, const std::string& engine_uuid);
  void SaveIopub(protocol::RawMessage& raw);

  protocol::Session session_;
  HubOptions options_;
  std::unique_ptr<TaskStore> store_;
  Logger log_;
  ShutdownCallback on_shutdown_;
  zmq::socket_t query_, notifier_, monitor_, resubmit_;
  HeartMonitor heart_;
  Reactor* reactor_ = nullptr;
  Reactor::TimerId reping_timer_ = 0;
  bool shutting_down_ = false;

  std::unordered_map<std::string, QueryHandler> query_handlers_;
  std::map<int, Engine> engines_;
  std::unordered_map<std::string, int> by_uuid_;
  std::unordered_map<std::string, Incoming> incoming_;  // by uuid, awaiting the first heartbeat
  int next_id_ = 0;
  std::unordered_set<std::string> pending_;     // submitted, no result yet
  std::unordered_set<std::string> unassigned_;  // load-balanced, not yet on an engine
  // Clients whose connection was logged at info level: our client repeats connection_request every
  // 2 s to re-read the engine list, and those repeats log at debug. Two generations bound the
  // memory: when the newer holds kKnownClients / 2 ids it becomes the older, so a client not heard
  // from for a whole generation is forgotten (and logged again if it comes back).
  static constexpr size_t kKnownClients = 4096;
  std::unordered_set<std::string> clients_newer_, clients_older_;
  bool FirstConnection(const std::string& client);
};

}  // namespace ipp::controller

// Aggregator: what the dashboard shows, gathered from what the hub already sees (registrations,
// unregistrations, heartbeats, the monitor channel's requests, destinations and replies), in
// bounded memory.
//
// Threads: every method but snapshot() runs on the hub thread (the hub calls them; nothing here
// blocks or does I/O beyond reading /proc/self once a second). Publish() builds an immutable
// Snapshot at most every `publish_period` and swaps it in under a mutex; snapshot() may be called
// from any thread (the HTTP server's) and never waits for the hub for longer than that swap.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/capabilities.hpp"
#include "protocol/clock.hpp"
#include "protocol/message.hpp"

namespace ipp::dashboard {

using Clock = std::chrono::steady_clock;

struct Limits {
  size_t engines = 1024;           // engines remembered; the oldest dead/gone ones go first
  size_t tasks = 4096;             // recently finished tasks (GET /api/tasks)
  size_t in_flight = 1u << 17;     // submitted tasks followed until their reply
  size_t failures = 100;
  size_t functions = 256;          // names with their own statistics; the rest count as "other"
  size_t durations = 1024;         // per function, for p99
  size_t clients = 1024;
  size_t history = 300;            // 1 s samples
  std::chrono::milliseconds publish_period{250};
};

struct EngineView {
  int id = 0;
  std::string uuid, kind, host;
  std::optional<long> pid;
  std::string state;  // idle, busy, dead, gone
  std::string death;  // why it is dead or gone; "" while alive
  std::string death_log;  // the end of its log, when its launcher said how it ended
  std::vector<std::string> tags;
  size_t functions = 0;
  std::string task_msg_id, task_function;  // the oldest task it has; "" when none
  Clock::time_point task_since{};
  size_t queue = 0, done = 0, failed = 0;
  Clock::time_point last_heartbeat{};
};

struct TaskView {
  uint64_t seq = 0;
  std::string msg_id, function, status;
  int engine = -1;
  double started = 0, completed = 0;  // seconds since the aggregator started
};

struct FailureView {
  double t = 0;
  int engine = -1;
  std::string function, ename, evalue;
  std::vector<std::string> traceback;
};

struct FunctionView {
  std::string name;
  uint64_t count = 0;
  double mean_ms = 0, p99_ms = 0;
};

struct Sample {
  double t = 0, done_per_s = 0;
  size_t queued_lb = 0, waiting_deps = 0;
};

struct Counters {
  uint64_t submitted = 0, done = 0, failed = 0, aborted = 0;  // done includes failed, not aborted
  size_t running = 0, queued_lb = 0, waiting_deps = 0;
};

// Immutable once published. Finished tasks are shared between snapshots in frozen chunks, so a
// publication copies at most one chunk of them.
struct Snapshot {
  Clock::time_point start{}, taken{};
  std::vector<EngineView> engines;
  using TaskChunk = std::vector<TaskView>;
  std::vector<std::shared_ptr<const TaskChunk>> tasks;  // oldest first, seq ascending
  uint64_t last_seq = 0;
  Counters counters;
  double rate_done_per_s = 0;
  std::vector<Sample> history;
  std::vector<FailureView> failures;  // oldest first
  std::vector<FunctionView> functions;
  std::vector<std::pair<std::string, uint64_t>> clients;  // client session, tasks submitted
  // Load-balanced tasks no connected engine can run, by what they wait for ("a Python engine").
  std::map<std::string, size_t> waiting_for;
  double cpu_percent = 0;
  uint64_t rss_bytes = 0;

  double Seconds(Clock::time_point t) const { return std::chrono::duration<double>(t - start).count(); }
};

class Aggregator {
 public:
  explicit Aggregator(Limits limits = {}, Clock::time_point start = Clock::now());

  // --- Hub thread ---
  // `capabilities`: nullopt for an engine that announced none (a stock Python engine).
  void EngineRegistered(int id, const std::string& uuid, const std::optional<protocol::Capabilities>& capabilities);
  // An engine's new capabilities (ipp_engine_update: a plugin loaded); its state and counts stay.
  void EngineUpdated(const std::string& uuid, const protocol::Capabilities& capabilities);
  // dead: dropped for missed heartbeats; otherwise it asked to leave (gone).
  void EngineLeft(const std::string& uuid, bool dead, const std::string& why);
  // How a dead engine's process ended, as its launcher (ipcluster) told the hub, possibly after
  // the hub had dropped it for missed heartbeats.
  void EngineDeath(const std::string& uuid, const std::string& how, const std::string& log_tail);
  void Heartbeat(const std::string& uuid);
  // A request seen on the monitor channel: queue "mux" (with the engine's uuid) or "task".
  void TaskSubmitted(protocol::RawMessage& raw, const std::string& queue, const std::string& engine_uuid);
  void TaskAssigned(const std::string& msg_id, const std::string& engine_uuid);
  // A reply seen on the monitor channel, as the hub read it (its fields are read once, for both).
  struct Reply {
    std::string msg_id;  // of the request
    std::string status;  // the metadata's; "" reads as "ok"
    std::string engine;  // uuid; "" when unknown (then the engine it was assigned to)
    std::optional<protocol::WallClock::time_point> started, completed;
    std::string_view content;  // read only for an error's ename, evalue and traceback
  };
  void TaskReplied(const Reply& reply);
  // The load-balanced tasks no connected engine can run, by what they wait for (the hub's
  // counts, after each change).
  void WaitingFor(const std::map<std::string, size_t>& tasks_by_reason);
  // A task that will get no reply from an engine (the controller failed it itself).
  void TaskLost(const std::string& msg_id, const std::string& ename, const std::string& evalue);
  // Publishes a new snapshot when the last one is older than the publish period; samples the
  // history and the controller's CPU and memory once a second. Call it every publish period.
  void Publish(Clock::time_point now = Clock::now());

  // --- Any thread ---
  std::shared_ptr<const Snapshot> snapshot() const;

 private:
  struct InFlight {
    std::string function, client;
    std::string engine;  // uuid; "" while unassigned
    std::string left_with;  // uuid of the engine it was on when that engine left, if any
    Clock::time_point submitted{}, assigned{};
    bool load_balanced = false, has_deps = false;
  };
  struct Engine {
    EngineView view;
    std::deque<std::string> tasks;  // msg_ids assigned, oldest first
    uint64_t order = 0;             // registration order, to drop the oldest departed first
  };
  struct FunctionStats {
    uint64_t count = 0;
    double total_ms = 0;
    std::vector<double> recent_ms;  // ring of Limits::durations
    size_t next = 0;
  };
  Engine* FindEngine(const std::string& uuid);
  Engine* EngineEverSeen(const std::string& uuid);  // FindEngine, or a departed one still listed
  void Finish(const std::string& msg_id, InFlight& task, const std::string& engine_uuid, const std::string& status,
              std::optional<double> duration_ms, Clock::time_point now);
  void RecordFailure(int engine, const std::string& function, std::string ename, std::string evalue,
                     std::vector<std::string> traceback, Clock::time_point now);
  void Unassign(const std::string& msg_id, const std::string& engine_uuid);
  void Forget(std::unordered_map<std::string, InFlight>::iterator it);
  void Sample(Clock::time_point now);
  void BuildSnapshot(Clock::time_point now);

  Limits limits_;
  Clock::time_point start_;
  std::map<int, Engine> engines_;
  std::unordered_map<std::string, int> by_uuid_;
  uint64_t next_order_ = 0;
  std::unordered_map<std::string, InFlight> in_flight_;
  Counters counters_;
  uint64_t seq_ = 0;
  std::deque<std::shared_ptr<const Snapshot::TaskChunk>> frozen_tasks_;
  Snapshot::TaskChunk current_tasks_;
  std::deque<FailureView> failures_;
  std::map<std::string, FunctionStats> functions_;
  std::unordered_map<std::string, uint64_t> clients_;
  std::map<std::string, size_t> waiting_for_;
  std::deque<dashboard::Sample> history_;
  uint64_t done_at_last_sample_ = 0;
  Clock::time_point last_sample_{}, last_publish_{};
  double cpu_at_last_sample_ = -1;
  double cpu_percent_ = 0;
  uint64_t rss_bytes_ = 0;
  bool dirty_ = true;

  mutable std::mutex mutex_;  // guards published_ only
  std::shared_ptr<const Snapshot> published_;
};

// p-th percentile (0..100) of `values` (nearest rank); 0 for none. Reorders `values`.
double Percentile(std::vector<double>& values, double p);

}  // namespace ipp::dashboard

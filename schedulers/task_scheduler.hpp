// TaskScheduler: the load-balanced queue (ipyparallel controller/task_scheduler.py).
//
// Clients submit on a ROUTER; engines are reached through another ROUTER by their uuid.
// Jobs wait until their time dependencies (`after`) are met and an engine satisfying `targets`,
// `follow`, the engine's prefetch depth (prefetch.hpp) and the job's needs (TaskNeeds: kind, function, requires, checked
// against each engine's Capabilities) is free; the routing policy picks among those. Waiting jobs
// get their turn by metadata "priority" (higher first), in arrival order within one priority. A job that
// no connected engine can run is parked until an engine registers or its capabilities change;
// the hub is told what it waits for (monitor topic "waiting"). A failed job
// with retries left, or one whose engine died, is resubmitted elsewhere; otherwise its client
// gets a reply — a result or an error (EngineError, ImpossibleDependency, TaskTimeout...).
//
// Work stealing (task_scheduler_stealing.cpp): with the adaptive prefetch, tasks queued on an
// engine behind one far longer than those seen go back to the queue while another engine idles;
// the scheduler asks our engines for them over the control relay, as a client asks for an abort.
//
// Single-threaded: runs on the Reactor it is attached to and owns its sockets (the control
// relay's DEALER too). It is wired (sockets bound, Connect, ListenForAborts, ConnectControl,
// Attach, AddEngine) before that reactor runs; from
// then on only the reactor's thread touches it — no method is safe to call from another thread.
// The unit tests drive it over inproc:// on the test's own thread (tests/unit/schedulers).
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/recent_ids.hpp"
#include "common/reactor.hpp"
#include "protocol/capabilities.hpp"
#include "protocol/json_fields.hpp"
#include "protocol/session.hpp"
#include "schedulers/dependency.hpp"
#include "schedulers/pending_delivery.hpp"
#include "schedulers/policies.hpp"
#include "schedulers/prefetch.hpp"
#include "schedulers/task_metadata.hpp"

namespace ipp::schedulers {

struct TaskSchedulerOptions {
  std::string scheme = "leastload";
  // Outstanding tasks per engine (TaskScheduler.hwm): N, 0 = unlimited; nullopt = adaptive
  // (see prefetch.hpp).
  std::optional<int> hwm = std::nullopt;
  // How long to wait for results from an engine that has gone before failing or retrying its
  // tasks (the stock scheduler waits 5 s).
  std::chrono::milliseconds stranded_grace{5000};
  // How long a task waits for its engine's socket to connect before it is retried elsewhere or
  // fails with EngineError.
  std::chrono::milliseconds delivery_patience{10000};
  uint32_t seed = std::random_device{}();
  // Tasks remembered for later dependencies: at least this many of the latest, at most twice
  // (see TaskFates); 0 = all of them, forever, as the stock scheduler does.
  size_t remembered_tasks = 1u << 18;
};

class TaskScheduler {
 public:
  TaskScheduler(zmq::context_t& context, const std::string& key, TaskSchedulerOptions options,
                Logger log);
  zmq::socket_t& client_socket() { return client_; }
  zmq::socket_t& engine_socket() { return engine_; }
  // The hub's notification PUB (registration/unregistration) and monitor PULL.
  void Connect(const std::string& notification_url, const std::string& monitor_url);
  // Binds the PULL the control relay passes abort_request contents to (RouterRelay::TapAborts).
  void ListenForAborts(const std::string& url);
  // Connects to the control relay's client side: the scheduler asks our engines there for tasks
  // queued behind a long one (ipp_release_request), as a client asks for an abort. Without it
  // (or with a fixed --hwm) no task is ever taken back.
  void ConnectControl(const std::string& url);
  // Engines already registered before we started (or restored); {} is a Python engine.
  void AddEngine(const std::string& uuid, protocol::Capabilities caps = {});
  void Attach(Reactor& reactor);

 private:
  struct Job {
    std::string msg_id;
    uint64_t seq = 0;
    protocol::Frames frames;  // [client ids..., delimiter, ...] as received
    std::string client;       // first routing id
    std::string header;  // the request's header text: the parent of a reply we make up
    IdSet targets;            // allowed engine uuids; empty = any
    IdSet blacklist;          // engines that refused it (unmet dependency or failure)
    Dependency after, follow;
    int retries = 0;
    int priority = 0;
    std::optional<std::chrono::steady_clock::time_point> deadline;
    Reactor::TimerId timeout_timer = 0;
    TaskNeeds needs;
    bool parked = false;    // in parked_: no connected engine can run it
    bool reported = false;  // the hub was told it waits for needs.Reason()
    std::chrono::steady_clock::time_point sent;  // to its engine
    bool sent_alone = false;  // its engine had no other task then
  };
  using Caps = std::shared_ptr<const protocol::Capabilities>;
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  struct EngineState {
    uint32_t slot = kNoSlot;  // in slots_ while connected
    uint32_t index = 0;  // names the engine in fates_ (kept for its uuid across reconnections)
    std::unordered_map<std::string, std::unique_ptr<Job>> running;
    bool alive = true;
    // From the hub's notifications, for the EngineError of tasks stranded on it: its integer id
    // (-1 for an engine restored before any notification) and why the hub let it go.
    int id = -1;
    std::string gone_reason;
    Caps caps;
  };

  void OnSubmission();
  void OnResult();
  void OnNotification();
  // Answers a request the task channel does not carry (see request_types.hpp) with an error.
  void Refuse(protocol::RawMessage& raw, const std::string& msg_type);
  void Submit(std::unique_ptr<Job> job);
  // Where a job whose `after` is met can go now: to an engine, nowhere yet (it waits for one
  // to free up or join), or nowhere ever (no allowed engine is left, or `follow` ran on several).
  struct Placement {
    enum Kind { kEngine, kWait, kNever } kind;
    uint32_t engine = 0;  // kEngine: a slot
    std::string why;    // kNever: the ImpossibleDependency's text
    static Placement On(uint32_t engine) { return {kEngine, engine, {}}; }
    static Placement Wait() { return {kWait, 0, {}}; }
    static Placement Never(std::string why) { return {kNever, 0, std::move(why)}; }
  };
  Placement Place(const Job& job);
  // Acts on Place(job): sends it, fails it, or hands it to `wait` (Wait for a new or retried
  // job, KeepWaiting for one taken from waiting_).
  void Dispatch(std::unique_ptr<Job> job, void (TaskScheduler::*wait)(std::unique_ptr<Job>));
  void RunOn(std::unique_ptr<Job> job, uint32_t slot);
  // Starts waiting: enters the job in queue_ (when `queued`), graph_ and waiting_, with its timeout.
  void Wait(std::unique_ptr<Job> job) { Enter(std::move(job), true); }
  // A job's place in queue_ (or parked_): ordered by priority, then arrival; an entry whose job
  // has left waiting_, or is parked, or has another seq (a later submission) is stale.
  struct Queued {
    int priority;
    uint64_t seq;
    std::string msg_id;
    bool operator<(const Queued& other) const { return RunsBefore(priority, seq, other.priority, other.seq); }
  };
  // Whose turn comes first among runnable jobs: the higher priority, then the earlier submission.
  static bool RunsBefore(int priority, uint64_t seq, int other_priority, uint64_t other_seq) {
    return priority != other_priority ? priority > other_priority : seq < other_seq;
  }
  static Queued EntryOf(const Job& job) { return {job.priority, job.seq, job.msg_id}; }
  // Adds an entry to queue_ behind every entry of its priority or higher.
  void Enqueue(Queued entry);
  void Enter(std::unique_ptr<Job> job, bool queued);
  // Puts a job taken from waiting_ back (its queue_ and graph_ entries stayed).
  void KeepWaiting(std::unique_ptr<Job> job);
  // Answers the client with an error reply; `engine` is the engine it ran on, or "".
  void Fail(std::unique_ptr<Job> job, const std::string& ename, const std::string& evalue,
            const std::string& engine);
  // Sends `reply`, made for `job`, to the hub and then to the job's client; `engine` as in Fail.
  void Answer(const Job& job, protocol::Message reply, const std::string& engine);
  // abort_request contents from the control relay: the jobs named (or, with no ids, every job)
  // still waiting here are answered as aborted; ids not seen yet are refused when they come.
  void OnAbort();
  // Answers a job as an engine answers an aborted request (status "aborted"); it never runs.
  void Abort(std::unique_ptr<Job> job);
  void HandleResult(protocol::RawMessage&& raw, const std::string& engine);
  void Retry(std::unique_ptr<Job> job, const std::string& engine);
  void Finished(const std::string& msg_id, const std::string& engine, bool success);
  // A task ended: the jobs waiting on it get their turn (by priority, then submission order).
  void RunDependents(const std::string& finished_id);
  // An engine joined or became free: waiting jobs get their turn (by priority, then submission
  // order) until engines run out.
  void RunQueued();
  void RegisterEngine(const std::string& uuid, Caps caps);
  void UnregisterEngine(const std::string& uuid);
  void HandleStranded(const std::string& uuid);
  // Work stealing: while some engine is idle, an engine that holds tasks queued behind one that
  // has run far longer than tasks here take (Prefetch::Overdue) is asked to give back those that
  // have not started; they then run elsewhere. Runs on a timer while any engine holds a queue.
  void ArmStealing();
  void Steal();
  void AskRelease(uint32_t slot);
  // ipp_release_reply (or the relay's error for an engine gone): the released jobs go back to
  // the queue, in their turn, without counting as a retry.
  void OnReleaseReply();
  // Changes a released job's metadata ("ipp_resent") and signs it again.
  void Resign(Job& job);
  // A connected engine's slot, or nullptr.
  struct Slot;
  Slot* SlotOf(const std::string& uuid);
  // Whether the scheduler could take queued tasks back from this engine.
  bool Stealable(const Slot& slot) const;
  // Adds (+1) or removes (-1) a connected slot in unstealable_.
  void CountStealable(const Slot& slot, int sign);
  // Whether the engine can take one more task now (its prefetch depth).
  bool HasRoom(const Slot& slot, std::chrono::steady_clock::time_point now) const;
  // Puts the slot in index_ or takes it out, after its load (or anything its depth rests on)
  // changed.
  void Reindex(uint32_t slot, std::chrono::steady_clock::time_point now);
  // The policy's pick among every engine with room, or nullopt: engines whose depth fell since
  // they were indexed (time passed, or longer tasks were seen) leave index_ here.
  std::optional<uint32_t> PickIndexed();
  // The reply's run time on its engine (its header's date less its metadata's "started").
  static std::optional<Micros> RunTime(const protocol::RawMessage& reply, const protocol::PartFields& metadata);
  // `caps`: also check the job's needs against the engine's capabilities (not its room).
  bool CanRunOn(const Job& job, const Slot& slot, bool caps) const;
  // Whether every connected engine can run what `needs` asks for (cached per capability change).
  bool EverywhereCanRun(const TaskNeeds& needs);
  bool AnyConnectedCanRun(const TaskNeeds& needs) const;
  // The same among the engines with room.
  bool AnyAvailableCanRun(const TaskNeeds& needs);
  // Puts a job no connected engine can run in parked_ and tells the hub why it waits; `fresh`:
  // as Wait (a new or retried job), otherwise as KeepWaiting.
  void Park(std::unique_ptr<Job> job, bool fresh);
  // After an engine joined or its capabilities grew: jobs some engine can run now go back to
  // queue_ (in submission order); the hub hears they no longer wait for a missing engine.
  void Unpark();
  // After an engine left or its capabilities shrank: queued jobs no engine can run now are parked.
  void ParkUnrunnable();
  // Registration notification or ipp_engine_update: (re)sets an engine's capabilities.
  void SetCapabilities(const std::string& uuid, Caps caps);
  std::unique_ptr<Job> TakeWaiting(const std::string& msg_id);
  bool Known(const std::string& msg_id) const;
  // Whether the job's `after` is met now; once met it is cleared.
  bool AfterMet(Job& job) const;
  // A dependency of `job` finished and was then forgotten: it can never be met nor refused.
  bool LostDependency(const Job& job) const;
  // A waiting job's turn (taken from waiting_): fails it (a dependency lost or never to be
  // met), dispatches it once its `after` is met, or puts it back.
  void Advance(std::unique_ptr<Job> job);
  void SendToClient(protocol::Frames&& frames);
  void Undeliverable(protocol::Frames&& frames);

  protocol::Session session_;
  TaskSchedulerOptions options_;
  std::unique_ptr<RoutingPolicy> policy_;
  std::mt19937 rng_;
  Logger log_;
  zmq::socket_t client_, engine_, notifications_, monitor_, aborts_, control_;
  bool control_connected_ = false;
  // Connected engines that cannot give back queued tasks (stock ones, or answered KeyError):
  // while there are any, short tasks are spread as plain leastload does instead of filling an
  // awake engine first, since a burst of long ones could not be taken back from them.
  size_t unstealable_ = 0;
  Reactor::TimerId steal_timer_ = 0;
  PendingDelivery to_engines_;
  Reactor* reactor_ = nullptr;

  // Connected engines by slot (a freed slot is reused), and an index of those with room for a
  // task (policy order), so that routing a task costs no pass over every engine.
  struct Slot {
    std::string uuid;
    int load = 0;          // outstanding tasks
    int64_t last_use = 0;  // when it last got work: smaller is longer ago; a new engine comes first
    Caps caps;
    int answered = 0;
    std::chrono::steady_clock::time_point waiting_since;  // of its oldest unanswered task (load > 0)
    bool indexed = false;  // in index_
    bool connected = false;
    // Asked to give back its queued tasks, no answer yet; gave_back: holds one task (its depth
    // is 1) until it answers one, so that what it gave back is not sent to it again.
    bool releasing = false, gave_back = false;
    bool cannot_release = false;  // answered the request with KeyError (not our engine, or an old one)
    std::chrono::steady_clock::time_point release_sent;
  };
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  size_t connected_ = 0;
  int64_t use_clock_ = 0, join_clock_ = 0;
  std::unique_ptr<EngineIndex> index_;
  std::unique_ptr<Prefetch> prefetch_;
  TaskTimings timings_;  // observed only for the adaptive depth
  // Which needs every connected engine meets: most jobs ask what all engines have, and then the
  // policy picks among all of them without a check per engine. Valid for one caps_generation_.
  struct Everywhere {
    TaskNeeds needs;
    uint64_t generation;
    bool all;
  };
  std::vector<Everywhere> everywhere_;
  size_t everywhere_next_ = 0;  // the entry replaced next once it is full
  uint64_t caps_generation_ = 0;
  std::unordered_map<std::string, EngineState> engines_;

  uint64_t next_seq_ = 0;
  std::unordered_map<std::string, std::unique_ptr<Job>> waiting_;  // msg_id -> job
  std::deque<Queued> queue_;   // waiting jobs in turn order (lazy deletion)
  std::deque<Queued> parked_;  // parked jobs (lazy deletion)
  std::unordered_map<std::string, std::vector<std::string>> graph_;  // dep id -> waiting ids
  TaskFates fates_;
  std::unordered_map<std::string, uint32_t> engine_index_;  // uuid -> index, every engine seen
  RecentIds aborted_{1u << 16};  // aborted before they arrived here (the abort overtook them)
};

}  // namespace ipp::schedulers

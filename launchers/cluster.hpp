// A cluster as ipcluster runs it: a controller launcher, engine sets, and the cluster file
// (<profile>/security/cluster-<id>.json) through which a later `ipcluster stop`, `list` or
// `engines` finds what an earlier `ipcluster start` launched, even from another shell.
//
// One thread owns a Cluster (the launchers reap their children on it).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/logging.hpp"
#include "launchers/adapt.hpp"
#include "launchers/engine_supervisor.hpp"
#include "launchers/launcher.hpp"
#include "launchers/restart_budget.hpp"
#include "protocol/profile_dir.hpp"

namespace ipp::launchers {

class Cluster {
 public:
  // `*stop` (set by a signal handler, say) ends the waits and Supervise early; it must outlive
  // the Cluster.
  Cluster(LaunchContext context, const std::atomic<bool>& stop);

  const LaunchContext& context() const { return context_; }
  std::filesystem::path file() const;
  // The cluster file as Load read it (null before).
  const Json& recorded() const { return recorded_; }

  // Restores the launchers the cluster file records (their processes or jobs are not ours).
  Status Load();
  // Before a start: fails if the cluster file names a controller still running, else removes
  // the cluster file and the old client connection file.
  Status ClaimFiles();

  // Starts the controller and waits up to `timeout` for its connection files (the engines read
  // them). On failure, what it started is stopped.
  Status StartController(const std::string& kind, std::chrono::milliseconds timeout);
  // Starts `n` engines as a new engine set.
  Status StartEngines(const std::string& kind, int n);
  // --adapt: a new engine set, without engines yet, whose jobs Supervise submits and cancels
  // (launchers/cluster_adapt.cpp). Fails for launchers without jobs to poll.
  Status StartAdaptive(const std::string& kind, const AdaptLimits& limits);

  // The cluster file's content: its launchers' classes, states and logs, `n` engines, our pid.
  Json Describe(int n) const;
  static Json DescribeSet(const Launcher& set);
  // The cluster file is written by the supervising ipcluster and by `ipcluster engines` and
  // `stop` runs beside it: each write holds a lock on the security directory, and Update()
  // re-reads the file under it, so that no writer's change is lost to another's stale copy.
  Status Save(const Json& description) const;
  // Applies `change` to the file as it is now; NotFound once the cluster was stopped (the file
  // is not brought back).
  Status Update(const std::function<void(Json&)>& change) const;
  void RemoveFile() const;

  // Waits for `total` engines to register, watching the engine sets from `first_set` on. Fails
  // as soon as no more can come: every launcher process has exited (an mpiexec refusing its
  // ranks exits at once), or each one still running has registered and the rest have exited.
  // Batch jobs cannot be watched: then only the timeout ends it.
  // Engines the controller refused (out of file descriptors) do not fail it when some registered:
  // the cluster goes on with those, and `*refused` says how many and why.
  struct Refused {
    size_t registered = 0;
    std::string why;  // empty: none refused
  };
  Status WaitForEngines(size_t total, std::chrono::milliseconds timeout, size_t first_set = 0,
                        Refused* refused = nullptr);
  // Writes our engine sets' states and logs, --adapt's state and the restart count into the
  // cluster file, keeping the sets `ipcluster engines` added after ours.
  void SaveEngineSets(const Logger& log);

  // Until `stop` or the controller's end: reaps the engines, logs how each that ends did,
  // restarts them as context().restart allows (SuperviseEngines) and records it in the cluster
  // file for `ipcluster list`. A controller that dies is started again with --restore
  // (SuperviseController), within context().restart; a controller that is not leaves no
  // connection files behind.
  void Supervise(const Logger& log);

  // The ipcluster that started the cluster (the daemon, or one in the foreground) stops it
  // fastest: the processes are its children, reaped the moment they end. Asks it to (SIGTERM)
  // and waits for it to end, up to `timeout`. Call after Load.
  void StopOwner(std::chrono::milliseconds timeout);
  // Stops our launchers (errors are printed: stopping goes on).
  void Stop();
  // Stops ours and whatever the cluster file adds (engines `ipcluster engines` added), and
  // removes the cluster file.
  void StopAll();

  size_t engine_sets() const { return engine_sets_.size(); }
  const Launcher& engine_set(size_t i) const { return *engine_sets_[i]; }
  Status StopEngineSet(size_t i) { return engine_sets_[i]->Stop(); }

 private:
  // Removes the connection files unless the user asked the controller to keep them (--reuse,
  // --restore); logs each removal when `log` is given.
  void RemoveStaleConnectionFiles(const Logger* log) const;
  // The arguments the controller is started with: the user's, and when it may be restarted,
  // --reuse (same ports and key: engines and clients reconnect by themselves) and
  // --task-journal (what a restore runs again).
  LaunchContext ControllerContext(const std::string& kind, bool restore) const;
  // One tick of Supervise for the controller (launchers/controller_supervisor.cpp): false when
  // it has ended for good (asked to, or not restarted), so that the cluster stops.
  bool SuperviseController(const Logger& log);
  // One step of --adapt; saves the cluster file when the jobs changed.
  void Adapt(const Logger& log);
  // Batch engine sets started without --adapt: a job that ends (walltime, scancel) is submitted
  // again, within a RestartBudget (launchers/cluster_adapt.cpp).
  void ReplaceEndedJobs(const Logger& log);
  // One tick of engine supervision (engine_supervisor.cpp): ends logged and told to the
  // controller (ipp_engine_exit_request), restarts started, the cluster file brought up to date.
  void SuperviseEngines(const Logger& log, EngineSupervisor::Clock::time_point now);
  // The controller learns how engine processes ended; logged when it cannot be told.
  void ReportEnds(const Logger& log, const std::vector<EngineEnd>& ends) const;

  LaunchContext context_;
  const std::atomic<bool>& stop_;
  Json recorded_;
  std::unique_ptr<Launcher> controller_;
  RestartBudget controller_budget_;
  std::optional<std::chrono::steady_clock::time_point> controller_restart_at_;
  std::vector<std::unique_ptr<Launcher>> engine_sets_;
  std::unique_ptr<Adapter> adapter_;  // --adapt: drives engine_sets_[adaptive_set_]
  size_t adaptive_set_ = 0;
  struct BatchWatch {
    size_t set;
    int engines;  // per job
    RestartBudget budget;
    std::chrono::steady_clock::time_point next_poll{};
    std::vector<std::chrono::steady_clock::time_point> due;  // replacements waiting for their backoff
  };
  std::vector<BatchWatch> batch_watches_;
  std::unique_ptr<EngineSupervisor> engine_supervisor_;  // made by the first SuperviseEngines
};

// What launches in `profile` need: the profile's ipcluster_config.json (`config`) with its
// controller_args and engine_args, and the directory of the running executable (ipcontroller and
// ipengine are beside ipcluster).
LaunchContext ContextFor(const protocol::ProfileDir& profile, const std::string& cluster_id, const Json& config);

// Where a cluster file says the cluster's processes log: {"controller", "engines": [...],
// "ipcluster" (when daemonized)}.
Json LogsOf(const Json& cluster_file);
// "logs: controller X; engines Y; ipcluster Z", as start and list print them.
std::string LogLine(const Json& logs);

}  // namespace ipp::launchers

// Launchers start and stop the controller and sets of engines: as local processes, under
// mpiexec, or as batch jobs (Slurm, PBS, SGE, LSF, HTCondor). A launcher's state (pids, job
// ids) round-trips through JSON so `ipcluster stop` can stop what another `ipcluster start`
// launched, even from another shell.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/spawn.hpp"
#include "ipp/status.hpp"
#include "launchers/restart_budget.hpp"

namespace ipp::launchers {

using Json = nlohmann::json;

// What every launch needs to know.
struct LaunchContext {
  std::filesystem::path profile_dir;
  std::string cluster_id;
  std::filesystem::path bin_dir;  // where ipcontroller and ipengine are
  std::filesystem::path log_dir;
  std::vector<std::string> controller_args;  // e.g. --ip, --ping, --hwm
  std::vector<std::string> engine_args;      // e.g. --load plugins
  Json config = Json::object();              // ipcluster_config.json, with CLI overrides
  // Set for every process launched: config "environment", then `ipcluster start --env`; a
  // launcher's own config section may add or override ("slurm": {"environment": {...}}).
  std::map<std::string, std::string> environment;
  RestartLimits restart;                     // --max-restarts, --restart-window, --no-restart
  // Raised by ipcluster's SIGINT/SIGTERM handler (null: never): a launcher starting many
  // processes stops starting more, so that a long start storm can be interrupted.
  const std::atomic<bool>* stop = nullptr;
};

// Whether `name` can be an environment variable's name in a shell: [A-Za-z_][A-Za-z0-9_]*.
bool IsEnvironmentName(const std::string& name);
// context.environment with the "environment" of its config section `section` ("mpi", "ssh",
// "slurm"...; "" for none) over it.
std::map<std::string, std::string> EnvironmentFor(const LaunchContext& context, const std::string& section);

// A launched process that has ended, and how.
struct ProcessExit {
  pid_t pid = 0;
  // "exited with status 1", "killed (SIGKILL; possibly out of memory)"; "exited" if not our child
  std::string how;
  std::filesystem::path log;
  int slot = -1;  // its place in its set: a replacement takes the same slot
  // Ended as asked: status 0 (ipp shutdown, an engine's shutdown_request) or stopped by us.
  bool requested = false;
  // An engine that exited with cli::kExitRegistrationRefused: the controller said no.
  bool refused = false;
};

// A batch job of engines (for the Local launcher, a set of engine processes) as its launcher
// last saw it; `output` is the batch system's own word for its state ("PENDING", "qw") or how
// it ended.
struct JobState {
  std::string id;
  enum State { kQueued, kRunning, kEnded } state = kQueued;
  std::string output;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts `n` engines (or the controller, n ignored).
  virtual Status Start(int n) = 0;
  // Stops everything it started: process groups, or cancels its jobs.
  virtual Status Stop() = 0;
  // How many of its processes are still alive; -1 when it cannot tell (batch jobs).
  virtual int Alive() = 0;
  // The end of a failing process's log, for error messages ("" if none).
  virtual std::string FailureLog() = 0;
  // Its processes that have ended (none for batch jobs). Our own children are reaped here, which
  // is how their exit status or signal is known; the caller thread owns the launcher.
  virtual std::vector<ProcessExit> Exits() = 0;
  // Where its processes log: a file, a pattern such as /log/ipengine-12-*.log, or a directory.
  virtual std::string LogLocation() const = 0;
  virtual Json State() const = 0;
  virtual std::string kind() const = 0;

  // Elastic allocation (--adapt): one more job of `engines` engines, returning its id; cancelling
  // one; the states of its jobs that have not been reported ended yet (each ended job is
  // reported once, then forgotten). InvalidArgument for launchers without jobs to poll
  // (MPI, SSH, LSF, HTCondor).
  virtual Result<std::string> Submit(int engines);
  // Whether Submit and Jobs serve this launcher (Local engines; Slurm, SGE, PBS): asked without
  // running anything, as a start decides whether it can adapt or watch its jobs.
  virtual Status CanSubmitJobs() const;
  virtual Status Cancel(const std::string& id);
  virtual Result<std::vector<JobState>> Jobs();
  // Starts one replacement for `ended`, a process of this set that has ended, in its slot and
  // with its command (Local, SSH; an MPI set is one slot: its whole mpiexec). Returns the new pid.
  // Batch launchers: kInfeasible.
  virtual Result<pid_t> Restart(pid_t /*ended*/) { return Status::Infeasible(kind() + " launchers cannot restart a process"); }
  // The host its processes run on, as their engines name it at registration ("" if unknown).
  virtual std::string host() const { return ""; }
  // The host and pid the engine of `ended` announced (how the hub knows it): ours, or what the
  // remote shell said in its log (SSH).
  virtual std::pair<std::string, long> EngineProcess(const ProcessExit& ended) const { return {host(), ended.pid}; }
};

// Kinds: Local, MPI, SSH, Slurm, PBS, SGE, LSF, HTCondor (case-insensitive, as ipyparallel
// accepts them). `state` restores a launcher from a cluster file.
Result<std::unique_ptr<Launcher>> MakeEngineLauncher(const std::string& kind, const LaunchContext& context,
                                                     const Json& state = nullptr);
Result<std::unique_ptr<Launcher>> MakeControllerLauncher(const std::string& kind, const LaunchContext& context,
                                                         const Json& state = nullptr);
// "slurm" -> "Slurm"; empty if unknown.
std::string CanonicalKind(const std::string& kind);

// The commands a launcher runs.
std::vector<std::string> ControllerCommand(const LaunchContext& context);
std::vector<std::string> EngineCommand(const LaunchContext& context, bool mpi = false);

// Spawns argv in a new session (so it outlives us and can be stopped as a group), output
// appended to `log`, with `environment` over ours. Returns the pid. kNewGroup: its own process
// group in our session (see ProcessSetLauncher::group()).
Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log,
                    const std::map<std::string, std::string>& environment = {},
                    SpawnOptions::Group group = SpawnOptions::Group::kNewSession);
// SIGTERM to each process group, then SIGKILL to those left after `grace`; true once every
// member of every group is gone (or a zombie). Our own children among the leaders are reaped.
bool StopGroups(const std::vector<pid_t>& groups, std::chrono::milliseconds grace = std::chrono::seconds(5));
bool ProcessAlive(pid_t pid);
// /proc/<pid>/<name> as text; empty when the process is gone (also while reading).
std::string ReadProcFile(pid_t pid, const char* name);
// "exited with status 1", "killed by SIGKILL (core dumped)": a waitpid status in words.
std::string DescribeWaitStatus(int status);
// Whether a wait status is an engine's exit for a registration the controller refused.
bool RefusedByTheController(int status);
// As DescribeWaitStatus, but a SIGKILL we did not send is "killed (SIGKILL; possibly out of
// memory)": the kernel's OOM killer sends it, and that is all a parent can know.
std::string DescribeEnd(int status, bool killed_by_us);
// The last `lines` lines of `file`, each prefixed with `indent`.
std::string Tail(const std::filesystem::path& file, size_t lines = 15, const std::string& indent = "    ");

}  // namespace ipp::launchers

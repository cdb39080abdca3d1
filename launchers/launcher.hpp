// Launchers start and stop the controller and sets of engines: as local processes, under
// mpiexec, or as batch jobs (Slurm, PBS, SGE, LSF, HTCondor). A launcher's state (pids, job
// ids) round-trips through JSON so `ipcluster stop` can stop what another `ipcluster start`
// launched, even from another shell.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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
  RestartLimits restart;
};

// A launched process that has ended, and how.
struct ProcessExit {
  pid_t pid = 0;
  std::string how;  // "exited with status 1", "killed by SIGKILL"; "exited" if not our child
  std::filesystem::path log;
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
// appended to `log`. Returns the pid.
Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log);
// SIGTERM to each process group, then SIGKILL to those left after `grace`; true once every
// member of every group is gone (or a zombie). Our own children among the leaders are reaped.
bool StopGroups(const std::vector<pid_t>& groups, std::chrono::milliseconds grace = std::chrono::seconds(5));
bool ProcessAlive(pid_t pid);
// "exited with status 1", "killed by SIGKILL (core dumped)": a waitpid status in words.
std::string DescribeWaitStatus(int status);
std::string Tail(const std::filesystem::path& file, size_t lines = 15);

}  // namespace ipp::launchers

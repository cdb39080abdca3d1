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
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts `n` engines (or the controller, n ignored).
  virtual Status Start(int n) = 0;
  // Stops everything it started: process groups, or cancels its jobs.
  virtual Status Stop() = 0;
  // How many of its processes are still alive; -1 when it cannot tell (batch jobs).
  virtual int Alive() const = 0;
  // The end of a failing process's log, for error messages ("" if none).
  virtual std::string FailureLog() const = 0;
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
// SIGTERM to the group, then SIGKILL after `grace`; true once it is gone.
bool StopGroup(pid_t pid, std::chrono::milliseconds grace = std::chrono::seconds(5));
bool ProcessAlive(pid_t pid);
std::string Tail(const std::filesystem::path& file, size_t lines = 15);

}  // namespace ipp::launchers

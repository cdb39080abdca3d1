// Elastic allocation (`ipcluster start --adapt`): jobs of engines are submitted while tasks wait
// and cancelled once their engines have all been idle past a timeout.
//
// AdaptPolicy decides, from one snapshot, which jobs to submit and which to cancel: plain data
// and arithmetic, the time passed in, so tests need neither processes nor a clock. Adapter runs
// it against a live cluster: it asks the hub for queue_status and the launcher for its jobs'
// states, keeps what the snapshots need across ticks (since when each engine is idle, which jobs
// ever had an engine register, failures in a row), and submits and cancels. Both are owned by the
// thread that supervises (ipcluster's main thread).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/logging.hpp"
#include "ipp/client.hpp"
#include "launchers/launcher.hpp"

namespace ipp::launchers {

struct AdaptLimits {
  int min_engines = 0;       // --min-engines: kept even when idle
  int max_engines = 1;       // --max-engines (default: -n)
  int engines_per_job = 1;   // --engines-per-job (default 1 for Local, 8 for batch systems)
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(300)};  // --idle-timeout
  int max_queued_jobs = 2;   // --max-queued-jobs: jobs submitted and not yet running, at most
  int max_failed_jobs = 3;   // --max-failed-jobs: failures in a row that stop submissions
};

struct AdaptSnapshot {
  using Clock = std::chrono::steady_clock;
  Clock::time_point now;
  // Tasks that wait for an engine: the hub's unassigned ones plus those queued on an engine
  // behind the one it runs.
  int waiting_tasks = 0;
  struct Engine {
    std::string job;  // normalised job id ("" for an engine none of our jobs started)
    std::optional<Clock::time_point> idle_since;  // nullopt while it has work
  };
  std::vector<Engine> engines;
  struct Job {
    std::string id;
    JobState::State state = JobState::kQueued;
    int engines = 0;  // how many it was submitted for
    Clock::time_point submitted;
  };
  std::vector<Job> jobs;  // ours that have not ended
  int failures_in_a_row = 0;  // failed submissions and jobs that ended before any engine registered
};

struct AdaptDecision {
  std::vector<int> submit;          // one job per entry, of that many engines
  std::vector<std::string> cancel;  // job ids
  std::string stopped;              // why submissions stopped ("" while they go on)
};

class AdaptPolicy {
 public:
  explicit AdaptPolicy(AdaptLimits limits) : limits_(limits) {}
  AdaptDecision Decide(const AdaptSnapshot& snapshot) const;
  const AdaptLimits& limits() const { return limits_; }

 private:
  AdaptLimits limits_;
};

class Adapter {
 public:
  using Clock = std::chrono::steady_clock;
  // `launcher` (an engine set of the cluster, which outlives us) submits and cancels the jobs.
  Adapter(AdaptLimits limits, Launcher& launcher, ClientOptions client_options, Logger log,
          std::chrono::milliseconds period = std::chrono::seconds(1));
  ~Adapter();

  // One step when `period` has passed since the last: true when our jobs changed (the cluster
  // file should be saved again).
  bool Tick(Clock::time_point now);
  // For the cluster file and `ipcluster list`: limits, jobs, failures, why submissions stopped.
  Json Describe() const;

 private:
  void Connect();

  AdaptPolicy policy_;
  Launcher& launcher_;
  ClientOptions client_options_;
  Logger log_;
  std::chrono::milliseconds period_;
  std::unique_ptr<Client> client_;
  std::optional<Clock::time_point> last_;
  struct Job {
    int engines;
    Clock::time_point submitted;
  };
  std::map<std::string, Job> jobs_;          // live jobs we submitted, by the launcher's id
  std::set<std::string> started_;            // jobs an engine of which registered
  std::map<int, Clock::time_point> idle_since_;  // engine id -> since when it has had no work
  int failures_in_a_row_ = 0;
  std::string stopped_;
  std::vector<std::string> recent_failures_;  // the last few, for `ipcluster list`
};

}  // namespace ipp::launchers

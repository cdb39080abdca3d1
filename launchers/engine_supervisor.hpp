// EngineSupervisor: what ipcluster does when an engine process it launched ends. Each end is
// logged with how it came (exit status, signal, "possibly out of memory") and the end of the
// process's log; one that was not asked to end (status 0, or stopped by us) is started again in
// its slot when that slot's RestartBudget allows, after the budget's backoff. An MPI set is one
// slot: one rank's end ends mpiexec's whole job, so the whole set comes back (or stays down).
//
// Owned by the thread that supervises the cluster (ipcluster's main thread), which owns the
// launchers too. It takes the time from its caller, so tests need no clock.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/logging.hpp"
#include "launchers/launcher.hpp"
#include "launchers/restart_budget.hpp"

namespace ipp::launchers {

// An engine process that ended, as ipcluster's log, the cluster file and the controller learn it.
struct EngineEnd {
  std::string kind;  // Local, MPI, SSH
  pid_t pid = 0;
  // Its engine's host and pid, as the engine announced them (for SSH, the remote ones; "" and 0
  // when not known).
  std::string host;
  long engine_pid = 0;
  std::string how;
  std::string log_tail;  // the last lines of its log
  bool requested = false;
  bool refused = false;  // the controller refused its registration: it never was an engine there
};

class EngineSupervisor {
 public:
  using Clock = RestartBudget::Clock;
  EngineSupervisor(RestartLimits limits, Logger log) : limits_(limits), log_(std::move(log)) {}

  // One look at `sets` at `now`: the processes that ended since the last look (logged; their
  // restart scheduled or refused) and the replacements now due (started). Returns the ends;
  // `*changed` is set when a set's state changed (the cluster file is to be written again).
  // `adaptive_set`: the set --adapt drives (SIZE_MAX: none); its ends are reported, not restarted,
  // since the adapter submits new jobs while work waits.
  std::vector<EngineEnd> Tick(std::vector<std::unique_ptr<Launcher>>& sets, Clock::time_point now, bool* changed,
                              size_t adaptive_set = SIZE_MAX);

  int restarts() const { return restarts_; }  // replacements started so far
  int given_up() const { return given_up_; }  // slots left dead: past their restart limit
  size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    size_t set;
    pid_t ended;
    int slot;
    Clock::time_point due;
  };
  RestartLimits limits_;
  Logger log_;
  std::set<std::pair<size_t, pid_t>> seen_;
  std::map<std::pair<size_t, int>, RestartBudget> budgets_;  // by (set, slot)
  std::vector<Pending> pending_;
  int restarts_ = 0;
  int given_up_ = 0;
};

}  // namespace ipp::launchers

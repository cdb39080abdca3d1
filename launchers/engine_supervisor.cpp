#include "launchers/engine_supervisor.hpp"

#include <algorithm>
#include <cstdio>

#include "ipp/client.hpp"
#include "launchers/cluster.hpp"

namespace ipp::launchers {

namespace {
std::string SecondsText(RestartBudget::Clock::duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", std::chrono::duration<double>(d).count());
  return text;
}
}  // namespace

std::vector<EngineEnd> EngineSupervisor::Tick(std::vector<std::unique_ptr<Launcher>>& sets, Clock::time_point now,
                                              bool* changed, size_t adaptive_set) {
  std::vector<EngineEnd> ends;
  for (size_t i = 0; i < sets.size(); ++i) {
    Launcher& set = *sets[i];
    for (const ProcessExit& e : set.Exits()) {
      if (!seen_.insert({i, e.pid}).second) continue;
      *changed = true;
      auto [host, engine_pid] = set.EngineProcess(e);
      EngineEnd end{set.kind(), e.pid, host, engine_pid, e.how, Tail(e.log, 10, ""), e.requested, e.refused};
      const std::string what = set.kind() + " engine process pid " + std::to_string(e.pid) + " " + e.how;
      // mpiexec ends its whole job when one rank ends: its ranks are one slot.
      const std::string mpi = set.kind() == "MPI" ? " (one rank's end ends mpiexec's whole job: all its ranks are one slot)" : "";
      if (e.requested) {
        log_->info("{}; not restarted: it was asked to stop; its log: {}", what, e.log.string());
      } else if (e.refused) {
        log_->warn("{}; not restarted: the controller would refuse it again; the end of its log {}:\n{}", what,
                   e.log.string(), Tail(e.log, 10));
      } else if (i == adaptive_set) {
        log_->warn("{}; not restarted: --adapt submits new jobs while work waits; the end of its log {}:\n{}", what,
                   e.log.string(), Tail(e.log, 10));
      } else {
        auto budget = budgets_.try_emplace({i, e.slot}, limits_).first;
        std::optional<Clock::time_point> when = budget->second.OnExit(now);
        if (when) {
          pending_.push_back({i, e.pid, e.slot, *when});
          log_->warn("{}{}; restarting it in {} s (restart {} of at most {} within {} s); the end of its log {}:\n{}", what,
                     mpi, SecondsText(*when - now), budget->second.recent(), limits_.max_restarts,
                     std::chrono::duration_cast<std::chrono::seconds>(limits_.window).count(), e.log.string(),
                     Tail(e.log, 10));
        } else {
          if (limits_.enabled) ++given_up_;  // (with --no-restart none is restarted: nothing to say)
          log_->error("{}{}; {}; the end of its log {}:\n{}", what, mpi, budget->second.Refusal(), e.log.string(),
                      Tail(e.log, 10));
        }
      }
      ends.push_back(std::move(end));
    }
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->due > now || it->set >= sets.size()) {
      ++it;
      continue;
    }
    Launcher& set = *sets[it->set];
    Result<pid_t> pid = set.Restart(it->ended);
    if (pid.ok()) {
      ++restarts_;
      *changed = true;
      log_->info("{} engine slot {} (pid {}) restarted as pid {}", set.kind(), it->slot, it->ended, *pid);
    } else {
      log_->error("{} engine slot {} (pid {}) could not be restarted: {}", set.kind(), it->slot, it->ended,
                  pid.status().message());
    }
    it = pending_.erase(it);
  }
  return ends;
}

// ---------------------------------------------------------------------------------------------
// Cluster's part: one tick of engine supervision.

void Cluster::SuperviseEngines(const Logger& log, EngineSupervisor::Clock::time_point now) {
  if (!engine_supervisor_) engine_supervisor_ = std::make_unique<EngineSupervisor>(context_.restart, log);
  bool changed = false;
  std::vector<EngineEnd> ends = engine_supervisor_->Tick(engine_sets_, now, &changed, adapter_ ? adaptive_set_ : SIZE_MAX);
  if (changed) SaveEngineSets(log);
  std::vector<EngineEnd> unexpected;
  for (EngineEnd& e : ends) {
    if (!e.requested) unexpected.push_back(std::move(e));
  }
  if (!unexpected.empty()) ReportEnds(log, unexpected);
}

void Cluster::ReportEnds(const Logger& log, const std::vector<EngineEnd>& ends) const {
  ClientOptions o = ClientOptions::ProfileDir(context_.profile_dir.string(), context_.cluster_id);
  o.timeout = std::chrono::seconds(2);  // the supervision waits meanwhile
  auto client = Client::Connect(o);
  if (!client.ok()) {
    log->warn("could not tell the controller how {} engine process(es) ended: {}", ends.size(), client.status().message());
    return;
  }
  for (const EngineEnd& e : ends) {
    if (e.host.empty() || e.engine_pid <= 0 || e.refused) continue;  // no engine the hub knows
    auto id = (*client)->report_engine_exit(e.host, e.engine_pid, e.how, e.log_tail);
    if (!id.ok()) {
      log->warn("could not tell the controller how engine process pid {} ended: {}", e.pid, id.status().message());
    } else if (*id) {
      log->info("engine process pid {} was engine {}", e.pid, **id);
    }
  }
}

}  // namespace ipp::launchers

// Cluster: the controller's supervision — a controller that dies is started again with
// --restore, within the restart limits (context().restart, as for engines).
#include <algorithm>

#include "launchers/cluster.hpp"

namespace ipp::launchers {

LaunchContext Cluster::ControllerContext(const std::string& kind, bool restore) const {
  LaunchContext c = context_;
  // Only a controller we can watch (our child) is ever restarted: a batch job's is not, so it
  // pays for no journal and removes its connection files itself when stopped.
  if (!c.restart.enabled || CanonicalKind(kind) != "Local") return c;
  auto has = [&](const std::string& flag) {
    return std::find(c.controller_args.begin(), c.controller_args.end(), flag) != c.controller_args.end();
  };
  for (const char* flag : {"--reuse", "--task-journal"}) {
    if (!has(flag)) c.controller_args.push_back(flag);
  }
  if (restore && !has("--restore")) c.controller_args.push_back("--restore");
  return c;
}

bool Cluster::SuperviseController(const Logger& log) {
  auto now = std::chrono::steady_clock::now();
  if (controller_restart_at_) {
    if (now < *controller_restart_at_) return true;
    controller_restart_at_.reset();
    auto restarted = MakeControllerLauncher(controller_->kind(), ControllerContext(controller_->kind(), true));
    Status s = restarted.ok() ? (*restarted)->Start(1) : restarted.status();
    if (!s.ok()) {
      log->error("the controller could not be restarted: {}; stopping the engines", s.message());
      return false;
    }
    controller_ = std::move(restarted).value();
    log->warn("controller restarted with --restore ({} restart(s) within the window); its log: {}",
              controller_budget_.recent(), controller_->LogLocation());
    // `ipcluster list` and `stop` find the new controller (engines sets are left as recorded).
    Status saved = Update([this](Json& recorded) {
      recorded["controller"]["state"] = controller_->State();
      recorded["controller"]["logs"] = controller_->LogLocation();
    });
    if (!saved.ok()) log->error("{}", saved.message());
    return true;
  }
  if (controller_->Alive() != 0) return true;
  auto exits = controller_->Exits();
  if (!exits.empty() && exits[0].how == DescribeWaitStatus(0)) {
    // A requested shutdown (ipp shutdown, a client's shutdown_request): nothing went wrong.
    log->info("the controller (pid {}) exited with status 0 (shut down on request); stopping the engines", exits[0].pid);
    return false;
  }
  std::string how = exits.empty() ? "ended" : "(pid " + std::to_string(exits[0].pid) + ") " + exits[0].how;
  std::string tail = exits.empty() ? "" : "; the end of its log " + exits[0].log.string() + ":\n" + Tail(exits[0].log, 10);
  std::optional<std::chrono::steady_clock::time_point> when = controller_budget_.OnExit(now);
  if (!when) {
    log->error("the controller {}; {}; stopping the engines{}", how, controller_budget_.Refusal(), tail);
    return false;
  }
  log->error("the controller {}; restarting it in {} ms{}", how,
             std::chrono::duration_cast<std::chrono::milliseconds>(*when - now).count(), tail);
  controller_restart_at_ = when;
  return true;
}

}  // namespace ipp::launchers

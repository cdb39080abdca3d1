// Cluster's part of --adapt: the adaptive engine set and saving its jobs in the cluster file.

#include "launchers/cluster.hpp"

namespace ipp::launchers {

Status Cluster::StartAdaptive(const std::string& kind, const AdaptLimits& limits) {
  auto engines = MakeEngineLauncher(kind, context_);
  if (!engines.ok()) return engines.status();
  // A launcher without jobs to submit and poll cannot adapt, which fails the start.
  if (Status s = (*engines)->CanSubmitJobs(); !s.ok()) return Status::InvalidArgument("--adapt: " + s.message());
  engine_sets_.push_back(std::move(engines).value());
  adaptive_set_ = engine_sets_.size() - 1;
  adapter_ = std::make_unique<Adapter>(limits, *engine_sets_.back(),
                                       ClientOptions::ProfileDir(context_.profile_dir.string(), context_.cluster_id),
                                       MakeLogger("ipcluster"));
  return Status::OK();
}

void Cluster::Adapt(const Logger& log) {
  if (adapter_->Tick(std::chrono::steady_clock::now())) SaveEngineSets(log);
}

void Cluster::ReplaceEndedJobs(const Logger& log) {
  const auto now = std::chrono::steady_clock::now();
  bool changed = false;
  for (auto& w : batch_watches_) {
    Launcher& set = *engine_sets_[w.set];
    for (auto it = w.due.begin(); it != w.due.end();) {
      if (*it > now) {
        ++it;
        continue;
      }
      it = w.due.erase(it);
      Result<std::string> job = set.Submit(w.engines);
      if (job.ok()) {
        log->info("{} job {} of {} engine(s) submitted to replace one that ended", set.kind(), *job, w.engines);
      } else {
        log->error("{} could not submit a replacement job: {}", set.kind(), job.status().message());
      }
      changed = true;
    }
    if (now < w.next_poll) continue;
    w.next_poll = now + std::chrono::seconds(2);
    Result<std::vector<JobState>> jobs = set.Jobs();
    if (!jobs.ok()) {
      log->warn("cannot read the {} jobs' states: {}", set.kind(), jobs.status().message());
      continue;
    }
    for (const JobState& j : *jobs) {
      if (j.state != JobState::kEnded) continue;
      changed = true;
      // Its engines all exited with status 0 (shut down on request): not replaced, as an engine
      // process that exits 0 is not restarted. Other systems do not say how a job ended.
      if (j.output == "COMPLETED") {
        log->info("{} job {} completed (its engines were shut down); not replaced", set.kind(), j.id);
        continue;
      }
      std::optional<std::chrono::steady_clock::time_point> at = w.budget.OnExit(now);
      if (!at) {
        log->error("{} job {} ended ({}); {}", set.kind(), j.id, j.output, w.budget.Refusal());
        continue;
      }
      log->warn("{} job {} ended ({}); submitting a replacement in {} ms", set.kind(), j.id, j.output,
                std::chrono::duration_cast<std::chrono::milliseconds>(*at - now).count());
      w.due.push_back(*at);
    }
  }
  if (changed) SaveEngineSets(log);
}

}  // namespace ipp::launchers

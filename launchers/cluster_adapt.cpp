// Cluster's part of --adapt: the adaptive engine set and saving its jobs in the cluster file.
#include <fstream>

#include "launchers/cluster.hpp"

namespace ipp::launchers {

Status Cluster::StartAdaptive(const std::string& kind, const AdaptLimits& limits) {
  auto engines = MakeEngineLauncher(kind, context_);
  if (!engines.ok()) return engines.status();
  // Ask once now: a launcher without job states cannot adapt, which should fail the start.
  if (auto jobs = (*engines)->Jobs(); !jobs.ok()) return Status::InvalidArgument("--adapt: " + jobs.status().message());
  engine_sets_.push_back(std::move(engines).value());
  adaptive_set_ = engine_sets_.size() - 1;
  adapter_ = std::make_unique<Adapter>(limits, *engine_sets_.back(),
                                       ClientOptions::ProfileDir(context_.profile_dir.string(), context_.cluster_id),
                                       MakeLogger("ipcluster"));
  return Status::OK();
}

void Cluster::Adapt(const Logger& log) {
  if (!adapter_->Tick(std::chrono::steady_clock::now())) return;
  // Re-read: `ipcluster engines` may have added sets since we wrote the file.
  std::ifstream in(file());
  Json recorded = Json::parse(in, nullptr, false);
  if (!recorded.is_object()) return;
  Json& sets = recorded["engines"]["sets"];
  if (sets.is_array() && adaptive_set_ < sets.size()) sets[adaptive_set_]["state"] = engine_sets_[adaptive_set_]->State();
  recorded["adapt"] = adapter_->Describe();
  if (auto st = Save(recorded); !st.ok()) log->error("{}", st.message());
}

}  // namespace ipp::launchers

#include "launchers/adapt.hpp"

#include <algorithm>
#include <cctype>

#include "launchers/batch.hpp"

namespace ipp::launchers {

namespace {
long Seconds(std::chrono::milliseconds d) { return static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(d).count()); }
}  // namespace

AdaptDecision AdaptPolicy::Decide(const AdaptSnapshot& s) const {
  const AdaptLimits& L = limits_;
  AdaptDecision d;
  // Engines each live job holds or will hold; engines outside our jobs count towards the size.
  std::map<std::string, int> registered, idle_past_timeout;
  int capacity = 0, idle = 0, queued = 0;
  for (const auto& j : s.jobs) {
    capacity += j.engines;
    queued += j.state == JobState::kQueued;
  }
  for (const auto& e : s.engines) {
    bool ours = std::any_of(s.jobs.begin(), s.jobs.end(), [&](const auto& j) { return j.id == e.job; });
    if (!ours) ++capacity;
    if (e.idle_since) ++idle;
    if (!ours) continue;
    ++registered[e.job];
    if (e.idle_since && s.now - *e.idle_since >= L.idle_timeout) ++idle_past_timeout[e.job];
  }
  int pending = 0;  // engines submitted that have not registered yet
  for (const auto& j : s.jobs) pending += std::max(0, j.engines - registered[j.id]);

  auto submit = [&](int wanted) {
    int room = L.max_queued_jobs - queued;
    while (wanted > 0 && room > 0 && capacity < L.max_engines) {
      int n = std::min({L.engines_per_job, L.max_engines - capacity});
      d.submit.push_back(n);
      capacity += n;
      wanted -= n;
      --room;
      ++queued;
    }
  };
  if (s.failures_in_a_row >= L.max_failed_jobs) {
    d.stopped = std::to_string(s.failures_in_a_row) +
                " job submissions in a row failed or ended before any engine registered (--max-failed-jobs " +
                std::to_string(L.max_failed_jobs) + "); not submitting more jobs";
  } else {
    // Tasks an idle or coming engine will take do not call for more.
    if (s.waiting_tasks > 0) submit(s.waiting_tasks - idle - pending);
    submit(L.min_engines - capacity);
  }

  if (s.waiting_tasks > 0) return d;
  for (const auto& j : s.jobs) {
    bool drop = false;
    if (j.state == JobState::kQueued) {
      // Nothing has waited for it since a whole idle timeout.
      drop = s.now - j.submitted >= L.idle_timeout;
    } else {
      drop = registered[j.id] > 0 && idle_past_timeout[j.id] == registered[j.id];
    }
    if (drop && capacity - j.engines >= L.min_engines) {
      d.cancel.push_back(j.id);
      capacity -= j.engines;
    }
  }
  return d;
}

// ---------------------------------------------------------------------------------------------

Adapter::Adapter(AdaptLimits limits, Launcher& launcher, ClientOptions client_options, Logger log,
                 std::chrono::milliseconds period)
    : policy_(limits), launcher_(launcher), client_options_(std::move(client_options)), log_(std::move(log)), period_(period) {
  client_options_.timeout = std::min(client_options_.timeout, std::chrono::milliseconds(5000));
}

Adapter::~Adapter() = default;

void Adapter::Connect() {
  auto connected = Client::Connect(client_options_);
  if (connected.ok()) {
    client_ = std::move(connected).value();
  } else {
    log_->debug("adapt: cannot reach the controller yet: {}", connected.status().message());
  }
}

bool Adapter::Tick(Clock::time_point now) {
  if (last_ && now - *last_ < period_) return false;
  last_ = now;
  if (!client_) Connect();
  if (!client_) return false;
  Result<Json> status = client_->queue_status();
  if (!status.ok()) {
    log_->warn("adapt: queue_status: {}", status.status().message());
    client_.reset();  // a restarted controller: connect again
    return false;
  }
  Result<std::vector<JobState>> states = launcher_.Jobs();
  if (!states.ok()) {
    log_->warn("adapt: cannot read the jobs' states: {}", states.status().message());
    return false;
  }
  bool changed = false;
  const AdaptLimits& limits = policy_.limits();

  AdaptSnapshot s;
  s.now = now;
  const Json& unassigned = (*status)["unassigned"];
  s.waiting_tasks = unassigned.is_number() ? unassigned.get<int>() : static_cast<int>(unassigned.size());
  std::map<std::string, std::string> by_normal;  // normalised id -> ours
  for (const auto& [id, job] : jobs_) by_normal[NormalizeJobId(id)] = id;
  std::set<int> present;
  for (const auto& [key, e] : status->items()) {
    if (!e.is_object() || key.empty() || !std::isdigit(static_cast<unsigned char>(key[0]))) continue;
    int id = std::stoi(key);
    present.insert(id);
    auto count = [&](const char* k) {
      const Json& v = e.value(k, Json(0));
      return v.is_number() ? v.get<int>() : static_cast<int>(v.size());
    };
    int load = count("queue") + count("tasks");
    s.waiting_tasks += std::max(0, load - 1);
    if (load == 0) {
      idle_since_.emplace(id, now);
    } else {
      idle_since_.erase(id);
    }
    AdaptSnapshot::Engine engine;
    auto ours = by_normal.find(NormalizeJobId(e.value("job", std::string())));
    if (ours != by_normal.end()) {
      engine.job = ours->second;
      if (started_.insert(ours->second).second) failures_in_a_row_ = 0;
    }
    if (auto it = idle_since_.find(id); it != idle_since_.end()) engine.idle_since = it->second;
    s.engines.push_back(std::move(engine));
  }
  std::erase_if(idle_since_, [&](const auto& entry) { return !present.count(entry.first); });

  std::map<std::string, JobState> by_id;
  for (auto& j : *states) by_id[j.id] = j;
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    auto state = by_id.find(it->first);
    JobState::State st = state == by_id.end() ? JobState::kQueued : state->second.state;
    if (st != JobState::kEnded) {
      s.jobs.push_back({it->first, st, it->second.engines, it->second.submitted});
      ++it;
      continue;
    }
    std::string how = state->second.output;
    if (started_.count(it->first)) {
      log_->info("adapt: job {} ended ({})", it->first, how);
    } else {
      ++failures_in_a_row_;
      recent_failures_.push_back("job " + it->first + " ended before any engine registered (" + how + ")");
      log_->warn("adapt: {}", recent_failures_.back());
    }
    started_.erase(it->first);
    it = jobs_.erase(it);
    changed = true;
  }
  s.failures_in_a_row = failures_in_a_row_;

  AdaptDecision d = policy_.Decide(s);
  for (const std::string& id : d.cancel) {
    log_->info("adapt: cancelling job {}: {}", id,
               started_.count(id) ? "its engines have been idle for " + std::to_string(Seconds(limits.idle_timeout)) + " s"
                                  : "no task waited for it for " + std::to_string(Seconds(limits.idle_timeout)) + " s");
    if (Status st = launcher_.Cancel(id); !st.ok()) {
      // Kept: the next tick decides again (and Stop cancels what is left), so a job whose
      // cancel failed is not forgotten while it holds its allocation.
      log_->warn("adapt: {}; trying again", st.message());
      continue;
    }
    jobs_.erase(id);
    started_.erase(id);
    changed = true;
  }
  for (int n : d.submit) {
    Result<std::string> id = launcher_.Submit(n);
    changed = true;
    if (!id.ok()) {
      ++failures_in_a_row_;
      recent_failures_.push_back("submission failed: " + id.status().message());
      log_->error("adapt: {}", recent_failures_.back());
      break;  // one failure per tick: the next tick decides again
    }
    jobs_[*id] = {n, now};
    log_->info("adapt: submitted job {} of {} engine(s) ({} task(s) waiting, {} engine(s) registered)", *id, n,
               s.waiting_tasks, s.engines.size());
  }
  if (recent_failures_.size() > 5) recent_failures_.erase(recent_failures_.begin(), recent_failures_.end() - 5);
  if (d.stopped != stopped_) {
    stopped_ = d.stopped;
    if (!stopped_.empty()) log_->error("adapt: {}", stopped_);
    changed = true;
  }
  return changed;
}

Json Adapter::Describe() const {
  const AdaptLimits& l = policy_.limits();
  Json jobs = Json::array();
  for (const auto& [id, job] : jobs_) jobs.push_back({{"id", id}, {"engines", job.engines}, {"started", started_.count(id) > 0}});
  Json out = {{"min_engines", l.min_engines}, {"max_engines", l.max_engines}, {"engines_per_job", l.engines_per_job},
              {"idle_timeout", Seconds(l.idle_timeout)}, {"max_queued_jobs", l.max_queued_jobs},
              {"max_failed_jobs", l.max_failed_jobs}, {"jobs", jobs}, {"failures_in_a_row", failures_in_a_row_},
              {"recent_failures", recent_failures_}};
  if (!stopped_.empty()) out["stopped"] = stopped_;
  return out;
}

}  // namespace ipp::launchers

#include "dashboard/aggregator.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <tuple>

#include "protocol/clock.hpp"
#include "protocol/json_fields.hpp"
#include "schedulers/task_metadata.hpp"

namespace ipp::dashboard {

using nlohmann::json;
using protocol::RawMessage;

namespace {

constexpr size_t kChunk = 256;
constexpr const char* kOtherFunctions = "other";

std::string Field(const Result<protocol::PartFields>& fields, const char* key) {
  return fields.ok() ? fields->string(key).value_or("") : std::string();
}

// The process's CPU time (user + system) in seconds and its resident set size in bytes.
std::pair<double, uint64_t> ProcessUsage() {
  double cpu = 0;
  uint64_t rss = 0;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    // Fields after the command name, which is in parentheses and may hold spaces.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoul(field);
      if (i == 15) stime = std::stoul(field);
    }
    cpu = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (statm >> size >> resident) rss = resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return {cpu, rss};
}

}  // namespace

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  rank = std::clamp<size_t>(rank, 1, values.size());
  std::nth_element(values.begin(), values.begin() + static_cast<long>(rank - 1), values.end());
  return values[rank - 1];
}

Aggregator::Aggregator(Limits limits, Clock::time_point start) : limits_(limits), start_(start) {
  last_sample_ = last_publish_ = start;
  std::tie(cpu_at_last_sample_, rss_bytes_) = ProcessUsage();
  BuildSnapshot(start);
}

Aggregator::Engine* Aggregator::FindEngine(const std::string& uuid) {
  auto it = by_uuid_.find(uuid);
  if (it == by_uuid_.end()) return nullptr;
  auto e = engines_.find(it->second);
  return e == engines_.end() ? nullptr : &e->second;
}

Aggregator::Engine* Aggregator::EngineEverSeen(const std::string& uuid) {
  if (Engine* e = FindEngine(uuid)) return e;
  // Departed engines stay listed: their late replies, and the tasks lost with them, count for them.
  for (auto& [id, candidate] : engines_) {
    if (!uuid.empty() && candidate.view.uuid == uuid) return &candidate;
  }
  return nullptr;
}

void Aggregator::EngineRegistered(int id, const std::string& uuid, const std::optional<protocol::Capabilities>& c) {
  if (auto old = engines_.find(id); old != engines_.end()) by_uuid_.erase(old->second.view.uuid);
  Engine& e = engines_[id] = Engine{};
  e.order = next_order_++;
  EngineView& v = e.view;
  v.id = id;
  v.uuid = uuid;
  v.kind = c ? protocol::EngineKindName(c->kind) : "python";
  if (c) {
    v.host = c->hostname;
    v.pid = c->pid;
    v.tags.assign(c->tags.begin(), c->tags.end());
    v.functions = c->functions.size();
  }
  v.state = "idle";
  v.last_heartbeat = Clock::now();
  by_uuid_[uuid] = id;
  // Bounded: the engine that departed first is forgotten first; live engines are all kept.
  while (engines_.size() > limits_.engines) {
    auto oldest = engines_.end();
    for (auto it = engines_.begin(); it != engines_.end(); ++it) {
      bool departed = it->second.view.state == "dead" || it->second.view.state == "gone";
      if (departed && (oldest == engines_.end() || it->second.order < oldest->second.order)) oldest = it;
    }
    if (oldest == engines_.end()) break;
    by_uuid_.erase(oldest->second.view.uuid);
    engines_.erase(oldest);
  }
  dirty_ = true;
}

void Aggregator::EngineUpdated(const std::string& uuid, const protocol::Capabilities& capabilities) {
  Engine* e = FindEngine(uuid);
  if (!e) return;
  e->view.tags.assign(capabilities.tags.begin(), capabilities.tags.end());
  e->view.functions = capabilities.functions.size();
  dirty_ = true;
}

void Aggregator::EngineLeft(const std::string& uuid, bool dead, const std::string& why) {
  Engine* e = FindEngine(uuid);
  if (!e) return;
  e->view.state = dead ? "dead" : "gone";
  e->view.death = why;
  // Its tasks get their replies (or a failure) from the schedulers; it runs none of them now.
  for (const std::string& msg_id : e->tasks) {
    auto it = in_flight_.find(msg_id);
    if (it == in_flight_.end() || it->second.engine != uuid) continue;
    it->second.left_with = uuid;
    it->second.engine.clear();
  }
  counters_.running -= e->tasks.size();
  e->tasks.clear();
  e->view.queue = 0;
  e->view.task_msg_id.clear();
  e->view.task_function.clear();
  by_uuid_.erase(uuid);
  dirty_ = true;
}

void Aggregator::WaitingFor(const std::map<std::string, size_t>& tasks_by_reason) {
  waiting_for_ = tasks_by_reason;
  dirty_ = true;
}

void Aggregator::EngineDeath(const std::string& uuid, const std::string& how, const std::string& log_tail) {
  // Departed engines are no longer in by_uuid_: look through the (bounded) list.
  for (auto& [id, e] : engines_) {
    if (e.view.uuid != uuid || (e.view.state != "dead" && e.view.state != "gone")) continue;
    e.view.state = "dead";
    e.view.death = how;
    e.view.death_log = log_tail;
    dirty_ = true;
  }
}

void Aggregator::Heartbeat(const std::string& uuid) {
  if (Engine* e = FindEngine(uuid)) e->view.last_heartbeat = Clock::now();
}

void Aggregator::TaskSubmitted(RawMessage& raw, const std::string& queue, const std::string& engine_uuid) {
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  std::string msg_id = Field(header, "msg_id");
  if (msg_id.empty() || in_flight_.count(msg_id)) return;  // a resubmission's copy: counted once
  ++counters_.submitted;
  InFlight task;
  task.function = schedulers::TaskFunctionName(Field(header, "msg_type"), raw.part(RawMessage::kContent));
  task.client = Field(header, "session");
  task.submitted = Clock::now();
  task.load_balanced = queue == "task";
  if (task.load_balanced) {
    Result<protocol::PartFields> md = protocol::PartFields::Of(raw.part(RawMessage::kMetadata));
    task.has_deps = md.ok() && (!md->empty_or_absent("after") || !md->empty_or_absent("follow"));
    ++(task.has_deps ? counters_.waiting_deps : counters_.queued_lb);
  }
  if (!task.client.empty()) {
    auto c = clients_.find(task.client);
    if (c != clients_.end()) {
      ++c->second;
    } else if (clients_.size() < limits_.clients) {
      clients_.emplace(task.client, 1);
    }
  }
  if (in_flight_.size() >= limits_.in_flight) return;  // counted, not followed
  in_flight_.emplace(msg_id, std::move(task));
  if (queue == "mux" && !engine_uuid.empty()) TaskAssigned(msg_id, engine_uuid);
  dirty_ = true;
}

void Aggregator::TaskAssigned(const std::string& msg_id, const std::string& engine_uuid) {
  auto it = in_flight_.find(msg_id);
  if (it == in_flight_.end()) return;
  InFlight& task = it->second;
  if (task.engine == engine_uuid) return;
  if (!task.engine.empty()) {
    Unassign(msg_id, task.engine);  // a retry on another engine
  } else if (task.load_balanced && task.assigned == Clock::time_point{}) {
    --(task.has_deps ? counters_.waiting_deps : counters_.queued_lb);
  }
  task.engine = engine_uuid;
  if (engine_uuid.empty()) {  // given back to the queue (work stealing): queued again
    task.assigned = Clock::time_point{};
    ++(task.has_deps ? counters_.waiting_deps : counters_.queued_lb);
    return;
  }
  task.assigned = Clock::now();
  if (Engine* e = FindEngine(engine_uuid)) {
    e->tasks.push_back(msg_id);
    ++counters_.running;
    e->view.queue = e->tasks.size();
    if (e->tasks.size() == 1) {
      e->view.task_msg_id = msg_id;
      e->view.task_function = task.function;
      e->view.task_since = task.assigned;
      e->view.state = "busy";
    }
  }
  dirty_ = true;
}

void Aggregator::Unassign(const std::string& msg_id, const std::string& engine_uuid) {
  Engine* e = FindEngine(engine_uuid);
  if (!e) return;
  auto pos = std::find(e->tasks.begin(), e->tasks.end(), msg_id);
  if (pos == e->tasks.end()) return;
  e->tasks.erase(pos);
  --counters_.running;
  e->view.queue = e->tasks.size();
  if (e->tasks.empty()) {
    e->view.state = "idle";
    e->view.task_msg_id.clear();
    e->view.task_function.clear();
    return;
  }
  const std::string& next = e->tasks.front();
  if (e->view.task_msg_id == next) return;
  e->view.task_msg_id = next;
  auto t = in_flight_.find(next);
  e->view.task_function = t != in_flight_.end() ? t->second.function : "";
  e->view.task_since = Clock::now();  // it starts when the one before it ends
}

void Aggregator::Forget(std::unordered_map<std::string, InFlight>::iterator it) {
  InFlight& task = it->second;
  if (!task.engine.empty()) {
    Unassign(it->first, task.engine);
  } else if (task.load_balanced && task.assigned == Clock::time_point{}) {
    --(task.has_deps ? counters_.waiting_deps : counters_.queued_lb);
  }
  in_flight_.erase(it);
}

void Aggregator::TaskReplied(const Reply& reply) {
  const std::string& msg_id = reply.msg_id;
  auto it = in_flight_.find(msg_id);
  if (it == in_flight_.end()) return;
  std::string status = reply.status.empty() ? "ok" : reply.status;
  std::string engine = reply.engine.empty() ? it->second.engine : reply.engine;
  std::optional<double> duration_ms;
  if (reply.started && reply.completed && *reply.completed >= *reply.started) {
    duration_ms = std::chrono::duration<double, std::milli>(*reply.completed - *reply.started).count();
  }
  Clock::time_point now = Clock::now();
  InFlight task = it->second;  // Forget() reads the engine it is on
  Forget(it);
  if (status == "error") {
    json content = json::parse(reply.content, nullptr, false);
    std::vector<std::string> traceback;
    std::string ename, evalue;
    if (content.is_object()) {
      ename = content.value("ename", json("")).is_string() ? content["ename"].get<std::string>() : "";
      evalue = content.value("evalue", json("")).is_string() ? content["evalue"].get<std::string>() : "";
      if (auto tb = content.find("traceback"); tb != content.end() && tb->is_array()) {
        for (const json& line : *tb) {
          if (line.is_string()) traceback.push_back(line.get<std::string>());
        }
      }
    }
    Engine* e = EngineEverSeen(engine);
    RecordFailure(e ? e->view.id : -1, task.function, std::move(ename), std::move(evalue), std::move(traceback), now);
  }
  Finish(msg_id, task, engine, status, duration_ms, now);
}

void Aggregator::TaskLost(const std::string& msg_id, const std::string& ename, const std::string& evalue) {
  auto it = in_flight_.find(msg_id);
  if (it == in_flight_.end()) return;
  InFlight task = it->second;  // Forget() reads the engine it is on
  Forget(it);
  Clock::time_point now = Clock::now();
  // The engine it was lost with: the one it is on, or the one that left with it.
  Engine* e = EngineEverSeen(task.engine.empty() ? task.left_with : task.engine);
  RecordFailure(e ? e->view.id : -1, task.function, ename, evalue, {}, now);
  Finish(msg_id, task, task.engine, "error", std::nullopt, now);
}

void Aggregator::RecordFailure(int engine, const std::string& function, std::string ename, std::string evalue,
                               std::vector<std::string> traceback, Clock::time_point now) {
  FailureView f;
  f.t = std::chrono::duration<double>(now - start_).count();
  f.engine = engine;
  f.function = function;
  f.ename = std::move(ename);
  f.evalue = std::move(evalue);
  f.traceback = std::move(traceback);
  failures_.push_back(std::move(f));
  while (failures_.size() > limits_.failures) failures_.pop_front();
}

void Aggregator::Finish(const std::string& msg_id, InFlight& task, const std::string& engine_uuid,
                        const std::string& status, std::optional<double> duration_ms, Clock::time_point now) {
  Engine* e = EngineEverSeen(engine_uuid);
  if (status != "aborted") {
    ++counters_.done;
    if (e) ++e->view.done;
    if (status == "error") {
      ++counters_.failed;
      if (e) ++e->view.failed;
    }
    if (!duration_ms) {
      Clock::time_point from = task.assigned != Clock::time_point{} ? task.assigned : task.submitted;
      duration_ms = std::chrono::duration<double, std::milli>(now - from).count();
    }
    auto stats = functions_.find(task.function);
    if (stats == functions_.end()) {
      const std::string& name = functions_.size() < limits_.functions ? task.function : kOtherFunctions;
      stats = functions_.try_emplace(name).first;
    }
    FunctionStats& f = stats->second;
    ++f.count;
    f.total_ms += *duration_ms;
    if (f.recent_ms.size() < limits_.durations) {
      f.recent_ms.push_back(*duration_ms);
    } else {
      f.recent_ms[f.next] = *duration_ms;
      f.next = (f.next + 1) % limits_.durations;
    }
  } else {
    ++counters_.aborted;
  }
  TaskView t;
  t.seq = ++seq_;
  t.msg_id = msg_id;
  t.function = task.function;
  t.status = status;
  t.engine = e ? e->view.id : -1;
  t.completed = std::chrono::duration<double>(now - start_).count();
  t.started = std::max(0.0, t.completed - duration_ms.value_or(0) / 1000.0);
  current_tasks_.push_back(std::move(t));
  if (current_tasks_.size() == kChunk) {
    frozen_tasks_.push_back(std::make_shared<const Snapshot::TaskChunk>(std::move(current_tasks_)));
    current_tasks_.clear();
    current_tasks_.reserve(kChunk);
    while (frozen_tasks_.size() * kChunk > limits_.tasks) frozen_tasks_.pop_front();
  }
  dirty_ = true;
}

void Aggregator::Sample(Clock::time_point now) {
  double elapsed = std::chrono::duration<double>(now - last_sample_).count();
  if (elapsed <= 0) return;
  dashboard::Sample s;
  s.t = std::chrono::duration<double>(now - start_).count();
  s.done_per_s = static_cast<double>(counters_.done - done_at_last_sample_) / elapsed;
  s.queued_lb = counters_.queued_lb;
  s.waiting_deps = counters_.waiting_deps;
  history_.push_back(s);
  while (history_.size() > limits_.history) history_.pop_front();
  done_at_last_sample_ = counters_.done;
  auto [cpu, rss] = ProcessUsage();
  if (cpu_at_last_sample_ >= 0) cpu_percent_ = 100.0 * (cpu - cpu_at_last_sample_) / elapsed;
  cpu_at_last_sample_ = cpu;
  rss_bytes_ = rss;
  last_sample_ = now;
  dirty_ = true;
}

void Aggregator::Publish(Clock::time_point now) {
  if (now - last_sample_ >= std::chrono::seconds(1)) Sample(now);
  if (!dirty_ || now - last_publish_ < limits_.publish_period) return;
  BuildSnapshot(now);
}

void Aggregator::BuildSnapshot(Clock::time_point now) {
  auto s = std::make_shared<Snapshot>();
  s->start = start_;
  s->taken = now;
  s->engines.reserve(engines_.size());
  for (const auto& [id, e] : engines_) s->engines.push_back(e.view);
  s->tasks.assign(frozen_tasks_.begin(), frozen_tasks_.end());
  if (!current_tasks_.empty()) s->tasks.push_back(std::make_shared<const Snapshot::TaskChunk>(current_tasks_));
  s->last_seq = seq_;
  s->counters = counters_;
  s->history.assign(history_.begin(), history_.end());
  s->rate_done_per_s = history_.empty() ? 0 : history_.back().done_per_s;
  s->failures.assign(failures_.begin(), failures_.end());
  for (auto& [name, f] : functions_) {
    std::vector<double> recent = f.recent_ms;
    s->functions.push_back({name, f.count, f.count ? f.total_ms / static_cast<double>(f.count) : 0, Percentile(recent, 99)});
  }
  s->clients.assign(clients_.begin(), clients_.end());
  std::sort(s->clients.begin(), s->clients.end());
  s->waiting_for = waiting_for_;
  s->cpu_percent = cpu_percent_;
  s->rss_bytes = rss_bytes_;
  std::shared_ptr<const Snapshot> published = std::move(s);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    published_.swap(published);
  }
  // The previous snapshot, if no reader holds it any more, is freed here, outside the lock.
  last_publish_ = now;
  dirty_ = false;
}

std::shared_ptr<const Snapshot> Aggregator::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return published_;
}

}  // namespace ipp::dashboard

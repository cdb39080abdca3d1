#include "dashboard/api.hpp"

#include <algorithm>

namespace ipp::dashboard {

using nlohmann::json;

namespace {
double Age(Clock::time_point now, Clock::time_point then) {
  return std::max(0.0, std::chrono::duration<double>(now - then).count());
}
json NullIfEmpty(const std::string& s) { return s.empty() ? json() : json(s); }
}  // namespace

json EnginesJson(const Snapshot& s, Clock::time_point now) {
  json out = json::array();
  for (const EngineView& e : s.engines) {
    json task;
    if (!e.task_msg_id.empty()) {
      task = {{"msg_id", e.task_msg_id}, {"function", e.task_function}, {"running_s", Age(now, e.task_since)}};
    }
    out.push_back({{"id", e.id},
                   {"uuid", e.uuid},
                   {"kind", e.kind},
                   {"host", NullIfEmpty(e.host)},
                   {"pid", e.pid ? json(*e.pid) : json()},
                   {"state", e.state},
                   {"death", NullIfEmpty(e.death)},
                   {"death_log", NullIfEmpty(e.death_log)},
                   {"task", task},
                   {"queue", e.queue},
                   {"done", e.done},
                   {"failed", e.failed},
                   {"heartbeat_age_s", Age(now, e.last_heartbeat)},
                   {"tags", e.tags},
                   {"functions", e.functions}});
  }
  return out;
}

json TasksJson(const Snapshot& s, uint64_t since, Clock::time_point now) {
  json tasks = json::array();
  for (const auto& chunk : s.tasks) {
    if (chunk->empty() || chunk->back().seq <= since) continue;
    for (const TaskView& t : *chunk) {
      if (t.seq <= since) continue;
      tasks.push_back({{"seq", t.seq},
                       {"msg_id", t.msg_id},
                       {"engine", t.engine},
                       {"function", t.function},
                       {"status", t.status},
                       {"started", t.started},
                       {"completed", t.completed}});
    }
  }
  return {{"seq", s.last_seq}, {"now", s.Seconds(now)}, {"tasks", std::move(tasks)}};
}

json StatsJson(const Snapshot& s, Clock::time_point now) {
  json history = json::array();
  for (const Sample& h : s.history) {
    history.push_back({{"t", h.t}, {"done_per_s", h.done_per_s}, {"queued_lb", h.queued_lb}, {"waiting_deps", h.waiting_deps}});
  }
  json failures = json::array();
  for (const FailureView& f : s.failures) {
    failures.push_back({{"t", f.t},
                        {"engine", f.engine < 0 ? json() : json(f.engine)},
                        {"function", f.function},
                        {"ename", f.ename},
                        {"evalue", f.evalue},
                        {"traceback", f.traceback}});
  }
  json functions = json::array();
  for (const FunctionView& f : s.functions) {
    functions.push_back({{"name", f.name}, {"count", f.count}, {"mean_ms", f.mean_ms}, {"p99_ms", f.p99_ms}});
  }
  json clients = json::array();
  for (const auto& [id, tasks] : s.clients) clients.push_back({{"id", id}, {"tasks", tasks}});
  json waiting_for = json::array();
  for (const auto& [reason, tasks] : s.waiting_for) waiting_for.push_back({{"reason", reason}, {"tasks", tasks}});
  const Counters& c = s.counters;
  return {{"now", s.Seconds(now)},
          {"uptime_s", s.Seconds(now)},
          {"counters",
           {{"submitted", c.submitted},
            {"done", c.done},
            {"failed", c.failed},
            {"aborted", c.aborted},
            {"running", c.running},
            {"queued_lb", c.queued_lb},
            {"waiting_deps", c.waiting_deps}}},
          {"rate_done_per_s", s.rate_done_per_s},
          {"history", std::move(history)},
          {"failures", std::move(failures)},
          {"functions", std::move(functions)},
          {"clients", std::move(clients)},
          {"waiting_for", std::move(waiting_for)},
          {"controller", {{"cpu_percent", s.cpu_percent}, {"rss_bytes", s.rss_bytes}}}};
}

}  // namespace ipp::dashboard

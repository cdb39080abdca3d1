#include "client/ipp_cmd/top_view.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace ipp_cmd {

namespace {

using nlohmann::json;

// The API is another process's output: a field may be missing or of another type, and then it
// shows as "-" instead of throwing.
const json* Field(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

bool Number(const json& object, const char* name, double* out) {
  const json* f = Field(object, name);
  if (!f || !f->is_number()) return false;
  *out = f->get<double>();
  return true;
}

std::string Text(const json& object, const char* name, const std::string& fallback = "-") {
  const json* f = Field(object, name);
  if (!f) return fallback;
  if (f->is_string()) return f->get<std::string>();
  if (f->is_number_integer()) return std::to_string(f->get<long long>());
  return fallback;
}

std::string Count(const json& object, const char* name) {
  double v;
  if (!Number(object, name, &v)) return "-";
  return std::to_string(std::llround(v));
}

std::string Printf(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// "0.4s", "12s", "3m05s", "2h07m": short enough for a table column.
std::string Duration(double s) {
  if (!std::isfinite(s) || s < 0) return "-";
  if (s < 10) return Printf("%.1fs", s);
  long n = std::lround(s);
  char buf[32];
  if (n < 60) std::snprintf(buf, sizeof buf, "%lds", n);
  else if (n < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", n / 60, n % 60);
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", n / 3600, n / 60 % 60);
  return buf;
}

std::string Bytes(double b) {
  if (b >= 1 << 30) return Printf("%.1f GiB", b / (1 << 30));
  if (b >= 1 << 20) return Printf("%.1f MiB", b / (1 << 20));
  return Printf("%.0f KiB", b / 1024);
}

// `s` cut or padded to exactly `width` columns (ASCII: the API's names are).
std::string Column(const std::string& s, size_t width, bool right = false) {
  if (s.size() >= width) return s.substr(0, width);
  std::string pad(width - s.size(), ' ');
  return right ? pad + s : s + pad;
}

// Names and error messages come from engines: control bytes could drive the terminal and
// multi-byte characters would break the column arithmetic, so both show as '?'.
void Add(std::vector<TopLine>& lines, std::string text, TopLine::Style style = TopLine::Style::kNormal) {
  for (char& c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = '?';
  }
  lines.push_back({std::move(text), style});
}

std::string EngineRow(const json& e) {
  std::string state = Text(e, "state");
  std::string task = "", since = "", death = "";
  // How it died is too long for the task column: it goes last, where nothing is cut.
  if (state == "dead" || state == "gone") {
    death = "  " + Text(e, "death", state == "gone" ? "left" : "-");
  } else if (const json* t = Field(e, "task"); t && t->is_object()) {
    task = Text(*t, "function", "?");
    double running;
    if (Number(*t, "running_s", &running)) since = Duration(running);
  }
  double hb;
  std::string heartbeat = Number(e, "heartbeat_age_s", &hb) ? Duration(hb) : "-";
  return Column(Text(e, "id"), 4, true) + "  " + Column(Text(e, "kind"), 6) + "  " + Column(Text(e, "host"), 14) +
         "  " + Column(state, 5) + "  " + Column(task, 24) + "  " + Column(since, 6, true) + "  " +
         Column(Count(e, "queue"), 5, true) + "  " + Column(Count(e, "done"), 7, true) + "  " +
         Column(Count(e, "failed"), 6, true) + "  " + Column(heartbeat, 6, true) + death;
}

}  // namespace

std::vector<TopLine> RenderTop(const TopInput& in, int width) {
  std::vector<TopLine> lines;
  const json& stats = in.stats;
  const json counters = Field(stats, "counters") ? stats["counters"] : json::object();

  std::string title = "ipp top - " + in.source;
  double uptime;
  if (Number(stats, "uptime_s", &uptime)) title += "   controller up " + Duration(uptime);
  title += "   every " + Duration(in.interval_s) + "   q: quit";
  Add(lines, title, TopLine::Style::kTitle);
  if (!in.problem.empty()) Add(lines, "!! " + in.problem, TopLine::Style::kProblem);
  if (in.engines.is_null() && in.stats.is_null()) {
    Add(lines, "waiting for the first answer...", TopLine::Style::kDim);
  }

  std::map<std::string, int> by_state;
  size_t engine_count = in.engines.is_array() ? in.engines.size() : 0;
  if (in.engines.is_array()) {
    for (const json& e : in.engines) by_state[Text(e, "state")]++;
  }
  std::string summary = "engines " + std::to_string(engine_count) + ":";
  for (const char* s : {"busy", "idle", "dead", "gone"}) summary += " " + std::to_string(by_state[s]) + " " + s + ",";
  summary.pop_back();
  double rate;
  summary += "   tasks/s " + (Number(stats, "rate_done_per_s", &rate) ? Printf("%.1f", rate) : std::string("-"));
  Add(lines, summary);
  Add(lines, "tasks: running " + Count(counters, "running") + "   queued " + Count(counters, "queued_lb") +
                 "   waiting on deps " + Count(counters, "waiting_deps") + "   done " + Count(counters, "done") +
                 "   failed " + Count(counters, "failed") + "   aborted " + Count(counters, "aborted") + "   submitted " +
                 Count(counters, "submitted"));
  if (const json* waiting = Field(stats, "waiting_for"); waiting && waiting->is_array()) {
    for (const json& w : *waiting) {
      Add(lines, "!! " + Count(w, "tasks") + " task(s) wait for " + Text(w, "reason", "?") + ": no connected engine can run them",
          TopLine::Style::kProblem);
    }
  }
  if (const json* c = Field(stats, "controller")) {
    double cpu, rss;
    std::string text = "controller: cpu " + (Number(*c, "cpu_percent", &cpu) ? Printf("%.1f%%", cpu) : "-");
    text += "   memory " + (Number(*c, "rss_bytes", &rss) ? Bytes(rss) : std::string("-"));
    Add(lines, text);
  }

  Add(lines, "");
  Add(lines, Column("ID", 4, true) + "  " + Column("KIND", 6) + "  " + Column("HOST", 14) + "  " + Column("STATE", 5) +
                 "  " + Column("TASK", 24) + "  " + Column("FOR", 6, true) + "  " + Column("QUEUE", 5, true) + "  " +
                 Column("DONE", 7, true) + "  " + Column("FAILED", 6, true) + "  " + Column("HB", 6, true),
      TopLine::Style::kHeading);
  if (in.engines.is_array()) {
    if (in.engines.empty()) Add(lines, "  (no engines yet)", TopLine::Style::kDim);
    for (const json& e : in.engines) {
      std::string state = Text(e, "state");
      Add(lines, EngineRow(e), state == "dead" || state == "gone" ? TopLine::Style::kDim : TopLine::Style::kNormal);
    }
  }

  // Newest first: the list is for noticing what just broke.
  const json* failures = Field(stats, "failures");
  if (failures && failures->is_array() && !failures->empty()) {
    Add(lines, "");
    Add(lines, "RECENT FAILURES", TopLine::Style::kHeading);
    double now = 0;
    bool have_now = Number(stats, "now", &now);
    for (auto it = failures->rbegin(); it != failures->rend(); ++it) {
      const json& f = *it;
      double t;
      std::string when = have_now && Number(f, "t", &t) ? Duration(now - t) + " ago" : "-";
      std::string error = Text(f, "ename", "?");
      if (std::string value = Text(f, "evalue", ""); !value.empty()) error += ": " + value;
      std::replace(error.begin(), error.end(), '\n', ' ');
      Add(lines, Column(when, 10, true) + "  engine " + Column(Text(f, "engine"), 4) + Column(Text(f, "function"), 20) +
                     "  " + error);
    }
  }

  size_t cut = static_cast<size_t>(std::max(width, 1));
  for (TopLine& line : lines) {
    if (line.text.size() > cut) line.text.resize(cut);
  }
  return lines;
}

}  // namespace ipp_cmd

// ipp farm: a resumable, load-balanced shell task farm.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>

#include "client/ipp_cmd/commands.hpp"
#include "client/ipp_cmd/wind_down.hpp"

namespace ipp_cmd {

namespace {

// The farm's results file: one JSON record per command, keyed by its line and text. Records
// are appended as commands finish (nothing is lost to a kill), and the file is rewritten with
// the latest record of each command at the end of a run (so a rerun's records replace, not
// add to, an earlier run's).
class FarmResults {
 public:
  using Key = std::pair<int, std::string>;
  explicit FarmResults(std::string path) : path_(std::move(path)) {}

  // Reads what earlier runs recorded; the last record of a command wins. A line cut by a kill
  // is skipped.
  void Load() {
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);) {
      Json r = Json::parse(line, nullptr, false);
      if (!r.is_object()) continue;
      Key key{r.value("line", 0), r.value("command", "")};
      records_[key] = std::move(r);
    }
  }
  bool Succeeded(const Key& key) const {
    auto it = records_.find(key);
    return it != records_.end() && it->second.value("exit_code", -1) == 0;
  }
  bool OpenForAppend() {
    out_.open(path_, std::ios::app);
    return static_cast<bool>(out_);
  }
  void Add(Json record) {
    out_ << record.dump() << "\n";
    out_.flush();
    Key key{record.value("line", 0), record.value("command", "")};
    records_[key] = std::move(record);
  }
  // One line per command, in line order, replacing the file in one rename.
  bool Rewrite() {
    out_.close();
    std::string tmp = path_ + ".tmp" + std::to_string(getpid());
    {
      std::ofstream out(tmp, std::ios::trunc);
      for (const auto& [key, record] : records_) out << record.dump() << "\n";
      if (!out.flush()) return false;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path_, ec);
    return !ec;
  }

 private:
  std::string path_;
  std::ofstream out_;
  std::map<Key, Json> records_;
};

// What --help says beyond the usage line.
constexpr const char* kFarmHelp = R"(Run every command of FILE (one per line) on the engines. The results file holds
the latest result of each command; a rerun skips commands that already succeeded.
Ctrl-C aborts what has not started, gives running commands a few seconds (then
interrupts them), records what finished and exits 130; a second Ctrl-C exits at once.
Exits non-zero if any command failed or was aborted. --json: a summary object on stdout.)";

}  // namespace

// A task farm: one shell command per line, load-balanced, resumable via the results file.
int Farm(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  std::string input, results_path;
  int retries = 0;
  double timeout = 0;
  std::vector<std::string> requirements;
  std::string label;
  int priority = 0;
  cl.options.add_options()("commands", po::value(&input), "file with one shell command per line")
      ("results,o", po::value(&results_path), "results file, JSON lines (default: COMMANDS.results.jsonl)")
      ("retries", po::value(&retries)->default_value(0), "retries of a failed command on other engines")
      ("timeout", po::value(&timeout)->default_value(0), "seconds a command may run (0: no limit)")
      ("requires", po::value(&requirements)->composing(),
       "run only on engines with this tag or resource (repeatable), e.g. --requires gpu --requires gpus>=2")
      ("label", po::value(&label), "label the tasks carry into the task database (db_query finds them by it)")
      ("priority", po::value(&priority)->default_value(0),
       "higher runs first among load-balanced tasks waiting for an engine (default 0)");
  cl.positional.add("commands", 1);
  if (int rc = cl.Parse(argc, argv, Usage("farm FILE [options]", kFarmHelp)); rc >= 0) return rc;
  if (input.empty()) return Fail("farm needs a file of commands");
  if (retries < 0) return Fail("--retries must be 0 or more");
  if (timeout < 0) return Fail("--timeout must be 0 (no limit) or more");
  std::ifstream in(input);
  if (!in) return Fail("cannot read " + input);
  if (results_path.empty()) results_path = input + ".results.jsonl";
  std::vector<std::pair<int, std::string>> commands;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[line.find_first_not_of(" \t")] == '#') continue;
    commands.emplace_back(n, line);
  }
  // Resume: a command already recorded with exit code 0 (same line, same text) is done.
  FarmResults file(results_path);
  file.Load();
  std::vector<std::pair<int, std::string>> todo;
  for (auto& cmd : commands) {
    if (!file.Succeeded(cmd)) todo.push_back(cmd);
  }
  // Declared before the client: its I/O thread runs the callbacks that use them until it ends.
  size_t finished = 0, failures = 0, aborted = 0, skipped = commands.size() - todo.size();
  bool closed = false;  // set once the file is rewritten: results after that are not recorded
  std::mutex mutex;     // the results file and counters, written from the client's I/O thread
  std::string error;
  auto client = ConnectInterruptible(c, &error);
  if (!client) return Fail(error);
  // No engine yet (an --adapt cluster starts with none): the commands wait in the queue for one.
  if (client->ids().empty()) std::fprintf(stderr, "ipp: no engines registered yet: the commands wait for one\n");
  bool tty = isatty(2) && !c.json;
  auto start = std::chrono::steady_clock::now();
  if (!file.OpenForAppend()) return Fail("cannot write " + results_path);
  ipp::TaskOptions options;
  options.retries = retries;
  options.requirements = requirements;
  options.label = label;
  options.priority = priority;
  auto view = client->load_balanced_view(options);
  std::vector<ipp::AsyncResult> results;
  results.reserve(todo.size());
  for (size_t i = 0; i < todo.size() && !Interrupted(); ++i) {
    results.push_back(view.shell(todo[i].second, Seconds(timeout), /*check=*/true));
    results.back().on_each([&, i](size_t, const ipp::TaskInfo& t) {
      std::lock_guard lock(mutex);
      if (closed) return;
      if (t.status == ipp::TaskStatus::kAborted) {  // never ran: nothing to record
        ++aborted;
        return;
      }
      Json r = t.result.is_object() ? t.result : Json::object();
      Json record = {{"line", todo[i].first}, {"command", todo[i].second}, {"engine", t.engine_id},
                     {"exit_code", r.value("exit_code", t.status == ipp::TaskStatus::kOk ? 0 : -1)},
                     {"stdout", r.value("stdout", "")}, {"stderr", r.value("stderr", "")},
                     {"timed_out", r.value("timed_out", false)}, {"msg_id", t.msg_id},
                     {"started", t.started}, {"completed", t.completed}};
      if (t.error) record["error"] = std::string(t.error->ename()) + ": " + t.error->evalue();
      ++finished;
      failures += record["exit_code"] != 0;
      file.Add(std::move(record));
    });
  }
  auto progress = [&](bool final) {
    std::lock_guard lock(mutex);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double rate = secs > 0 ? finished / secs : 0;
    double eta = rate > 0 ? (todo.size() - finished) / rate : 0;
    std::fprintf(stderr, "%s[%zu/%zu] %.1f/s ETA %.0fs failures %zu%s%s", tty ? "\r" : "", finished, todo.size(), rate, eta,
                 failures, skipped ? (" skipped " + std::to_string(skipped)).c_str() : "", final || !tty ? "\n" : "");
  };
  for (auto& r : results) {
    while (!Interrupted() && !r.wait(ipp::Millis(200))) {
      if (tty) progress(false);
    }
  }
  std::vector<std::string> unanswered;
  if (Interrupted()) unanswered = WindDown(*client, results, kWindDownGrace, kWindDownGrace);
  bool rewritten;
  {
    std::lock_guard lock(mutex);
    closed = true;
    rewritten = file.Rewrite();
  }
  bool interrupted = Interrupted();
  size_t not_started = todo.size() - results.size();
  if (c.json) {
    std::cout << Json{{"commands", commands.size()}, {"skipped", skipped}, {"finished", finished}, {"failures", failures},
                      {"aborted", aborted + not_started}, {"unanswered", unanswered}, {"interrupted", interrupted},
                      {"results", results_path}}.dump()
              << std::endl;
  } else {
    progress(true);
    if (interrupted) {
      std::fprintf(stderr, "ipp: interrupted: %zu finished, %zu aborted before they started%s; rerun to finish\n",
                   finished, aborted + not_started,
                   unanswered.empty() ? "" : (", " + std::to_string(unanswered.size()) + " still running (not recorded)").c_str());
    }
  }
  if (!rewritten) return Fail("cannot rewrite " + results_path + " (its records are appended, not compacted)");
  if (interrupted) return 130;
  // An aborted command (ipp abort, or by another client) never ran: the farm is not done.
  if (aborted && !c.json) {
    std::fprintf(stderr, "ipp: %zu command(s) were aborted before they ran (not recorded); rerun to run them\n", aborted);
  }
  return failures || aborted ? 1 : 0;
}

}  // namespace ipp_cmd

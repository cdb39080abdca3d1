// ipp map: a native function over JSON lines, load-balanced.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "client/ipp_cmd/commands.hpp"
#include "client/ipp_cmd/wind_down.hpp"

namespace ipp_cmd {

namespace {

// Whether some native engine has `function` (ipp.functions); Python engines are not asked.
bool EnginesHave(ipp::Client& client, const std::string& function, ipp::Millis timeout) {
  std::vector<int> native;
  for (auto [id, kind] : client.engine_kinds(client.ids(), timeout)) {
    if (kind == ipp::EngineKind::kNative) native.push_back(id);
  }
  if (native.empty()) return false;
  auto lists = client.direct_view(native).apply("ipp.functions");
  lists.wait(timeout);
  for (const auto& t : lists.info()) {
    if (t.status != ipp::TaskStatus::kOk || !t.result.is_array()) continue;
    for (const auto& f : t.result) {
      if (f.is_object() && f.value("name", "") == function) return true;
    }
  }
  return false;
}

// What --help says beyond the usage line.
constexpr const char* kMapHelp = R"(One JSON value per line in, load-balanced. Each good result is printed on stdout, in
input order; each failed item on stderr with its input line number (exit 1 if any
failed). What the function printed goes to stderr. --json: one object per item on
stdout, in order: {"line", "ok", "result" | "ename", "evalue", "engine"},
the first item of each task also with its "stdout"/"stderr" when not empty.
The input is read whole before the first task is sent. Ctrl-C aborts what has not
started and exits 130 after printing what finished; --timeout S does the same S seconds
after the tasks were sent and exits 1. With --json an item that never ran is
{"line", "ok": false, "ename": "TaskAborted"}.)";

}  // namespace

int Map(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  std::string function, input = "-";
  long long chunksize = 1;
  std::vector<std::string> requirements;
  std::string label;
  int priority = 0, retries = 0;
  double timeout_s = 0;
  cl.options.add_options()("function", po::value(&function), "native function to call on each item")
      ("input", po::value(&input)->default_value("-"), "file with one JSON value per line, or - for stdin")
      ("chunksize", po::value(&chunksize)->default_value(1), "items per task (1 or more)")
      ("requires", po::value(&requirements)->composing(),
       "run only on engines with this tag or resource (repeatable), e.g. --requires gpu --requires gpus>=2")
      ("label", po::value(&label), "label the tasks carry into the task database (db_query finds them by it)")
      ("priority", po::value(&priority)->default_value(0),
       "higher runs first among load-balanced tasks waiting for an engine (default 0)")
      ("retries", po::value(&retries)->default_value(0),
       "run a failed task again on another engine, at most this many times (an engine that dies, or an item's "
       "error: a task of --chunksize items is run again whole)")
      ("timeout", po::value(&timeout_s)->default_value(0),
       "seconds to wait for the map once its input is read; then what has not started is aborted, what runs is "
       "interrupted at once, and what finished is printed (0: no limit)");
  cl.positional.add("function", 1).add("input", 1);
  if (int rc = cl.Parse(argc, argv, Usage("map FUNCTION [FILE|-]", kMapHelp)); rc >= 0) return rc;
  if (function.empty()) return Fail("map needs a function name");
  if (chunksize < 1) return Fail("--chunksize must be 1 or more (got " + std::to_string(chunksize) + ")");
  if (retries < 0) return Fail("--retries must be 0 or more (got " + std::to_string(retries) + ")");
  if (!std::isfinite(timeout_s) || timeout_s < 0) return Fail("--timeout must be a number of seconds, or 0 for no limit");
  std::ifstream file;
  if (input != "-") {
    file.open(input);
    if (!file) return Fail("cannot read " + input + ": " + std::strerror(errno));
  }
  std::istream& in = input == "-" ? std::cin : file;
  std::vector<Json> items;
  std::vector<int> lines;  // input line of each item
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json v = Json::parse(line, nullptr, false);
    if (v.is_discarded()) return Fail("line " + std::to_string(n) + " is not JSON: " + line);
    items.push_back(std::move(v));
    lines.push_back(n);
  }
  std::string error;
  auto client = ConnectInterruptible(c, &error);
  if (!client) return Fail(error);
  ipp::Millis timeout(static_cast<long>(c.timeout * 1000));
  // No engine yet (an --adapt cluster starts with none; engines may still be starting): the
  // tasks wait in the load-balanced queue for one.
  const bool no_engines = client->ids().empty();
  if (no_engines) std::fprintf(stderr, "ipp: no engines registered yet: the tasks wait for one\n");
  // Checked first: work for a function no engine has would wait for an engine that has it (our
  // controller) or fail on every item (the stock one), and with no items no task names it.
  if (!no_engines && !EnginesHave(*client, function, timeout)) {
    return Fail("NameError: no function '" + function + "' on the engines (ipp functions lists them)");
  }
  // One ipp.map task per chunk, each item tried (keep_going): a bad item costs only its result.
  ipp::TaskOptions options;
  options.requirements = requirements;
  options.label = label;
  options.priority = priority;
  options.retries = retries;
  auto view = client->load_balanced_view(options);
  size_t chunk = static_cast<size_t>(chunksize);
  std::vector<ipp::AsyncResult> tasks;
  for (size_t begin = 0; begin < items.size() && !Interrupted(); begin += chunk) {
    size_t end = std::min(items.size(), begin + chunk);
    Json slice(std::vector<Json>(items.begin() + static_cast<long>(begin), items.begin() + static_cast<long>(end)));
    tasks.push_back(view.apply("ipp.map", {{"function", function}, {"items", std::move(slice)}, {"keep_going", true}}));
  }
  size_t failed = 0, unfinished = items.size() - std::min(items.size(), tasks.size() * chunk);
  bool timed_out_now = false;  // set once --timeout has passed: says why items were interrupted
  // Prints task k's items (results on stdout, errors on stderr); one that did not finish counts
  // as unfinished.
  auto print = [&](size_t k) {
    ipp::TaskInfo t = tasks[k].info()[0];
    size_t begin = k * chunk, end = std::min(items.size(), begin + chunk);
    if (!tasks[k].ready() || t.status == ipp::TaskStatus::kAborted) {
      unfinished += end - begin;
      for (size_t i = begin; c.json && i < end; ++i) {
        std::cout << Json{{"line", lines[i]}, {"ok", false}, {"ename", "TaskAborted"},
                          {"evalue", "not run: the map was stopped (Ctrl-C or --timeout) before it started"}}.dump()
                  << "\n";
      }
      return;
    }
    // Per item: a result, an item's own error, or the task's error for all of its items.
    const Json* results = t.status == ipp::TaskStatus::kOk ? &t.result : nullptr;
    std::map<size_t, std::pair<std::string, std::string>> errors;
    if (t.status != ipp::TaskStatus::kOk && t.result.is_object() && t.result.contains("results")) {
      results = &t.result["results"];
      for (const auto& e : t.result.value("errors", Json::array())) {
        errors[e.value("index", size_t{0})] = {e.value("ename", ""), e.value("evalue", "")};
      }
    }
    if (!c.json) {
      if (!t.stdout_text.empty()) std::cerr << t.stdout_text << (t.stdout_text.back() == '\n' ? "" : "\n");
      if (!t.stderr_text.empty()) std::cerr << t.stderr_text << (t.stderr_text.back() == '\n' ? "" : "\n");
    }
    for (size_t i = begin; i < end; ++i) {
      bool ok = results && results->is_array() && i - begin < results->size() && !errors.count(i - begin);
      std::string ename, evalue;
      if (!ok) {
        ++failed;
        auto e = errors.find(i - begin);
        ename = e != errors.end() ? e->second.first : (t.error ? t.error->ename() : "Error");
        evalue = e != errors.end() ? e->second.second : (t.error ? t.error->evalue() : "no result");
        // Interrupted by us: the engine reports the SIGINT it was sent.
        if (timed_out_now && ename == "KeyboardInterrupt") evalue += " (stopped by --timeout)";
      }
      if (c.json) {
        Json j = {{"line", lines[i]}, {"ok", ok}, {"engine", t.engine_id}};
        if (ok) {
          j["result"] = (*results)[i - begin];
        } else {
          j["ename"] = ename;
          j["evalue"] = evalue;
        }
        if (i == begin && !t.stdout_text.empty()) j["stdout"] = t.stdout_text;
        if (i == begin && !t.stderr_text.empty()) j["stderr"] = t.stderr_text;
        std::cout << j.dump() << "\n";
      } else if (ok) {
        std::cout << (*results)[i - begin].dump() << "\n";
      } else {
        std::cout.flush();  // keep stdout and stderr in input order on a terminal
        std::cerr << "ipp: line " << lines[i] << ": [engine " << t.engine_id << "] " << ename << ": " << evalue << std::endl;
      }
    }
    std::cout.flush();  // as each comes: a long map shows its progress
  };
  // Work no connected engine can run waits for one (an engine may still connect, or --adapt
  // start one); say so once per reason, as the hub tells it (our controller only), instead of
  // waiting without a word.
  std::set<std::string> told;
  auto checked = std::chrono::steady_clock::now();
  auto tell_waiting = [&] {
    auto now = std::chrono::steady_clock::now();
    if (now - checked < std::chrono::seconds(3)) return;
    checked = now;
    auto status = client->queue_status();
    if (!status.ok() || !status->is_object()) return;
    Json waiting = status->value("waiting", Json::object());
    for (const auto& [reason, count] : waiting.items()) {
      if (!count.is_number_integer() || !told.insert(reason).second) continue;
      std::fprintf(stderr, "ipp: %ld task(s) wait for %s: no connected engine can run them (Ctrl-C to stop)\n",
                   count.get<long>(), reason.c_str());
    }
  };
  // The deadline counts from the submission: reading the input and connecting are not the map.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                               std::chrono::duration<double>(timeout_s));
  auto timed_out = [&] { return timeout_s > 0 && std::chrono::steady_clock::now() >= deadline; };
  auto stopping = [&] { return Interrupted() || timed_out(); };
  // In input order, each as soon as it and those before it are done.
  size_t next = 0;
  for (; next < tasks.size(); ++next) {
    while (!stopping() && !tasks[next].wait(ipp::Millis(200))) tell_waiting();
    if (!tasks[next].ready() && stopping()) break;
    print(next);
  }
  const bool interrupted = Interrupted(), stopped = next < tasks.size();
  if (stopped) {
    timed_out_now = !interrupted;
    std::cerr << (interrupted ? "ipp: stopping: what has not started is aborted; what runs gets 3 s, then SIGINT "
                                "(Ctrl-C again exits at once)"
                              : "ipp: --timeout passed: what has not started is aborted, what runs is interrupted")
              << std::endl;
    // Past --timeout what runs is interrupted at once, as by `ipp px --timeout`.
    WindDown(*client, tasks, interrupted ? kWindDownGrace : ipp::Millis(0), kWindDownGrace);
    for (; next < tasks.size(); ++next) print(next);
  }
  std::cout.flush();
  if (interrupted) {
    std::cerr << "ipp: interrupted: " << unfinished << " of " << items.size() << " item(s) not done" << std::endl;
    return 130;
  }
  if (stopped) {
    std::cerr << "ipp: TimeoutError: stopped after --timeout " << timeout_s << " s: " << unfinished << " of " << items.size()
              << " item(s) not run" << (failed ? ", " + std::to_string(failed) + " interrupted or failed" : "") << std::endl;
    return 1;
  }
  if (failed) std::cerr << "ipp: " << failed << " of " << items.size() << " item(s) failed" << std::endl;
  return failed ? 1 : 0;
}

}  // namespace ipp_cmd

// ipp map: a native function over JSON lines, load-balanced.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <deque>
#include <optional>
#include <iostream>
#include <map>
#include <set>

#include "client/ipp_cmd/commands.hpp"
#include "client/ipp_cmd/line_input.hpp"
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

// Tasks sent (and lines that are not JSON) not printed yet, at most: a long input is read as the
// map goes, not all at once, and results wait in order behind a slow early task only this far.
constexpr size_t kMapTasksInFlight = 10000;

// A --json row: bytes that are not UTF-8 (a line in Latin-1, a function's raw output) are
// replaced rather than ending the map.
std::string Row(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

Json NotRun(int line) {
  return {{"line", line}, {"ok", false}, {"ename", "TaskAborted"},
          {"evalue", "not run: the map was stopped (Ctrl-C or --timeout) before it started"}};
}

// A line that is not JSON, as an error message shows it: cut to a readable length.
std::string Excerpt(const std::string& line) {
  constexpr size_t kShown = 200;
  return line.size() <= kShown ? line : line.substr(0, kShown) + "... (" + std::to_string(line.size()) + " bytes)";
}

// What --help says beyond the usage line.
constexpr const char* kMapHelp = R"(One JSON value per line in, load-balanced. Each good result is printed on stdout, in
input order; each failed item on stderr with its input line number (exit 1 if any
failed). What the function printed goes to stderr. --json: one object per item on
stdout, in order: {"line", "ok", "result" | "ename", "evalue", "engine"},
the first item of each task also with its "stdout"/"stderr" when not empty.
The input is read as it comes (a pipe from a program that is still writing works): each
chunk is sent once full, or when the input pauses; at most 10,000 tasks are out before
their results are printed. A line that is not JSON is a failed item. Ctrl-C stops
reading, aborts what has not started and exits 130 after printing what finished;
--timeout S does the same S seconds after connecting and exits 1. With --json an item
that never ran is {"line", "ok": false, "ename": "TaskAborted"}, a line that is not
JSON {"line", "ok": false, "ename": "ValueError"}; lines not read yet get none.)";

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
       "seconds the map may take once connected; then reading stops, what has not started is aborted, what runs "
       "is interrupted at once, and what finished is printed (0: no limit)");
  cl.positional.add("function", 1).add("input", 1);
  if (int rc = cl.Parse(argc, argv, Usage("map FUNCTION [FILE|-]", kMapHelp)); rc >= 0) return rc;
  if (function.empty()) return Fail("map needs a function name");
  if (chunksize < 1) return Fail("--chunksize must be 1 or more (got " + std::to_string(chunksize) + ")");
  if (retries < 0) return Fail("--retries must be 0 or more (got " + std::to_string(retries) + ")");
  if (!std::isfinite(timeout_s) || timeout_s < 0) return Fail("--timeout must be a number of seconds, or 0 for no limit");
  std::string error;
  std::unique_ptr<LineInput> in = LineInput::Open(input, &error);  // a missing file fails before connecting
  if (!in) return Fail(error);
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
  const size_t chunk = static_cast<size_t>(chunksize);

  // What was read, in input order, each until it is printed: a task of up to `chunk` items, or a
  // line that is not JSON (a failed item of its own).
  struct Entry {
    std::optional<ipp::AsyncResult> task;
    std::vector<int> lines;  // input line of each item
    std::string not_json;    // the line (Excerpt), when it is not JSON
    bool ready() const { return !task || task->ready(); }
  };
  std::deque<Entry> entries;
  Entry next_chunk;
  std::vector<Json> chunk_items;
  auto send_chunk = [&] {
    if (chunk_items.empty()) return;
    next_chunk.task = view.apply("ipp.map", {{"function", function}, {"items", Json(std::move(chunk_items))}, {"keep_going", true}});
    chunk_items.clear();
    entries.push_back(std::move(next_chunk));
    next_chunk = Entry{};
  };
  size_t items = 0, failed = 0, unfinished = 0;
  int line_number = 0;
  auto take = [&](const std::string& line) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) return;
    ++items;
    Json v = Json::parse(line, nullptr, false);
    if (v.is_discarded()) {
      send_chunk();  // what came before it goes first
      entries.push_back(Entry{std::nullopt, {line_number}, Excerpt(line)});
      return;
    }
    chunk_items.push_back(std::move(v));
    next_chunk.lines.push_back(line_number);
    if (chunk_items.size() == chunk) send_chunk();
  };

  bool timed_out_now = false;  // set once --timeout has passed: says why items were interrupted
  // Items the stop left unrun: counted, and with --json a row each.
  auto print_not_run = [&](const std::vector<int>& lines) {
    unfinished += lines.size();
    for (size_t i = 0; c.json && i < lines.size(); ++i) std::cout << Row(NotRun(lines[i])) << "\n";
  };
  // Prints an entry's items (results on stdout, errors on stderr); a task that did not finish
  // counts as unfinished.
  auto print = [&](const Entry& e) {
    if (!e.task) {
      ++failed;
      if (c.json) {
        std::cout << Row(Json{{"line", e.lines[0]}, {"ok", false}, {"ename", "ValueError"}, {"evalue", "not JSON: " + e.not_json}})
                  << "\n";
      } else {
        std::cout.flush();
        std::cerr << "ipp: line " << e.lines[0] << " is not JSON: " << e.not_json << std::endl;
      }
      return;
    }
    ipp::TaskInfo t = e.task->info()[0];
    if (!e.task->ready() || t.status == ipp::TaskStatus::kAborted) return print_not_run(e.lines);
    // Per item: a result, an item's own error, or the task's error for all of its items.
    const Json* results = t.status == ipp::TaskStatus::kOk ? &t.result : nullptr;
    std::map<size_t, std::pair<std::string, std::string>> errors;
    if (t.status != ipp::TaskStatus::kOk && t.result.is_object() && t.result.contains("results")) {
      results = &t.result["results"];
      for (const auto& err : t.result.value("errors", Json::array())) {
        errors[err.value("index", size_t{0})] = {err.value("ename", ""), err.value("evalue", "")};
      }
    }
    if (!c.json) {
      if (!t.stdout_text.empty()) std::cerr << t.stdout_text << (t.stdout_text.back() == '\n' ? "" : "\n");
      if (!t.stderr_text.empty()) std::cerr << t.stderr_text << (t.stderr_text.back() == '\n' ? "" : "\n");
    }
    for (size_t i = 0; i < e.lines.size(); ++i) {
      bool ok = results && results->is_array() && i < results->size() && !errors.count(i);
      std::string ename, evalue;
      if (!ok) {
        ++failed;
        auto err = errors.find(i);
        ename = err != errors.end() ? err->second.first : (t.error ? t.error->ename() : "Error");
        evalue = err != errors.end() ? err->second.second : (t.error ? t.error->evalue() : "no result");
        // Interrupted by us: the engine reports the SIGINT it was sent.
        if (timed_out_now && ename == "KeyboardInterrupt") evalue += " (stopped by --timeout)";
      }
      if (c.json) {
        Json j = {{"line", e.lines[i]}, {"ok", ok}, {"engine", t.engine_id}};
        if (ok) {
          j["result"] = (*results)[i];
        } else {
          j["ename"] = ename;
          j["evalue"] = evalue;
        }
        if (i == 0 && !t.stdout_text.empty()) j["stdout"] = t.stdout_text;
        if (i == 0 && !t.stderr_text.empty()) j["stderr"] = t.stderr_text;
        std::cout << Row(j) << "\n";
      } else if (ok) {
        std::cout << Row((*results)[i]) << "\n";
      } else {
        std::cout.flush();  // keep stdout and stderr in input order on a terminal
        std::cerr << "ipp: line " << e.lines[i] << ": [engine " << t.engine_id << "] " << ename << ": " << evalue << std::endl;
      }
    }
    std::cout.flush();  // as each comes: a long map shows its progress
  };
  auto print_front = [&] {
    print(entries.front());
    entries.pop_front();
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
  // The deadline counts from here: connecting is not the map.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                               std::chrono::duration<double>(timeout_s));
  auto timed_out = [&] { return timeout_s > 0 && std::chrono::steady_clock::now() >= deadline; };
  auto stopping = [&] { return Interrupted() || timed_out(); };
  // Input is read as it comes and sent a chunk at a time, while results are printed in input
  // order, each as soon as it and those before it are done. At most kMapTasksInFlight entries are
  // not printed yet: past that, reading waits for the oldest.
  bool reading = true;
  std::vector<std::string> lines;
  while (!stopping()) {
    while (!entries.empty() && entries.front().ready()) print_front();
    if (!reading && entries.empty()) break;
    if (reading && entries.size() < kMapTasksInFlight) {
      lines.clear();
      // Each line adds at most one entry (a chunk holds at least one line).
      reading = in->Read(lines, kMapTasksInFlight - entries.size(), entries.empty() ? ipp::Millis(200) : ipp::Millis(20));
      for (const std::string& line : lines) take(line);
      // At the end, or while the input is idle, a chunk not full yet goes as it is: a slow
      // producer's lines do not wait for the next ones.
      if (!reading || lines.empty()) send_chunk();
    } else {
      entries.front().task->wait(ipp::Millis(200));
    }
    if (!entries.empty() && !entries.front().ready()) tell_waiting();
  }
  const bool interrupted = Interrupted(), stopped = !entries.empty() || reading;
  if (stopped) {
    timed_out_now = !interrupted;
    std::cerr << (interrupted ? "ipp: stopping: what has not started is aborted; what runs gets 3 s, then SIGINT "
                                "(Ctrl-C again exits at once)"
                              : "ipp: --timeout passed: what has not started is aborted, what runs is interrupted")
              << std::endl;
    // Past --timeout what runs is interrupted at once, as by `ipp px --timeout`.
    std::vector<ipp::AsyncResult> sent;
    for (const Entry& e : entries) {
      if (e.task) sent.push_back(*e.task);
    }
    WindDown(*client, sent, interrupted ? kWindDownGrace : ipp::Millis(0), kWindDownGrace);
    while (!entries.empty()) print_front();
    print_not_run(next_chunk.lines);  // read, not in a task yet
  }
  std::cout.flush();
  const bool unread = !in->error().empty();
  if (unread) std::cerr << "ipp: " << in->error() << " (the lines before the error were mapped)" << std::endl;
  if (interrupted) {
    std::cerr << "ipp: interrupted: " << unfinished << " of " << items << " item(s) not done" << std::endl;
    return 130;
  }
  if (stopped) {
    std::cerr << "ipp: TimeoutError: stopped after --timeout " << timeout_s << " s: " << unfinished << " of " << items
              << " item(s) not run" << (failed ? ", " + std::to_string(failed) + " interrupted or failed" : "") << std::endl;
    return 1;
  }
  if (failed) std::cerr << "ipp: " << failed << " of " << items << " item(s) failed" << std::endl;
  return failed || unread ? 1 : 0;
}

}  // namespace ipp_cmd

// ipp map: a native function over JSON lines, load-balanced.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <set>

#include "client/ipp_cmd/commands.hpp"
#include "client/ipp_cmd/line_input.hpp"
#include "client/ipp_cmd/map_stream.hpp"
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

// Work no connected engine can run waits for one (an engine may still connect, or --adapt start
// one); says so once per reason, as the hub tells it (our controller only), instead of waiting
// without a word. `client` must outlive it.
class WaitingNotice {
 public:
  explicit WaitingNotice(ipp::Client& client) : client_(client) {}
  // Asks the hub at most every 3 s.
  void Tell() {
    auto now = std::chrono::steady_clock::now();
    if (now - checked_ < std::chrono::seconds(3)) return;
    checked_ = now;
    auto status = client_.queue_status();
    if (!status.ok() || !status->is_object()) return;
    Json waiting = status->value("waiting", Json::object());
    for (const auto& [reason, count] : waiting.items()) {
      if (!count.is_number_integer() || !told_.insert(reason).second) continue;
      std::fprintf(stderr, "ipp: %ld task(s) wait for %s: no connected engine can run them (Ctrl-C to stop)\n",
                   count.get<long>(), reason.c_str());
    }
  }

 private:
  ipp::Client& client_;
  std::set<std::string> told_;
  std::chrono::steady_clock::time_point checked_ = std::chrono::steady_clock::now();
};

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
  ipp::TaskOptions options;
  options.requirements = requirements;
  options.label = label;
  options.priority = priority;
  options.retries = retries;
  MapStream stream(client->load_balanced_view(options), function, static_cast<size_t>(chunksize), c.json);
  WaitingNotice waiting(*client);
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
    stream.PrintReady();
    if (!reading && stream.unprinted() == 0) break;
    if (reading && stream.unprinted() < kMapTasksInFlight) {
      lines.clear();
      // Each line adds at most one entry (a chunk holds at least one line).
      reading = in->Read(lines, kMapTasksInFlight - stream.unprinted(),
                         stream.unprinted() == 0 ? ipp::Millis(200) : ipp::Millis(20));
      for (const std::string& line : lines) stream.Take(line);
      // At the end, or while the input is idle, a chunk not full yet goes as it is: a slow
      // producer's lines do not wait for the next ones.
      if (!reading || lines.empty()) stream.SendChunk();
    } else {
      stream.WaitFront(ipp::Millis(200));
    }
    if (stream.FrontWaits()) waiting.Tell();
  }
  const bool interrupted = Interrupted(), stopped = stream.unprinted() > 0 || reading;
  if (stopped) {
    std::cerr << (interrupted ? "ipp: stopping: what has not started is aborted; what runs gets 3 s, then SIGINT "
                                "(Ctrl-C again exits at once)"
                              : "ipp: --timeout passed: what has not started is aborted, what runs is interrupted")
              << std::endl;
    // Past --timeout what runs is interrupted at once, as by `ipp px --timeout`.
    WindDown(*client, stream.UnprintedTasks(), interrupted ? kWindDownGrace : ipp::Millis(0), kWindDownGrace);
    stream.PrintAll(!interrupted);
  }
  std::cout.flush();
  const bool unread = !in->error().empty();
  if (unread) std::cerr << "ipp: " << in->error() << " (the lines before the error were mapped)" << std::endl;
  if (interrupted) {
    std::cerr << "ipp: interrupted: " << stream.not_run() << " of " << stream.items() << " item(s) not done" << std::endl;
    return 130;
  }
  if (stopped) {
    std::cerr << "ipp: TimeoutError: stopped after --timeout " << timeout_s << " s: " << stream.not_run() << " of "
              << stream.items() << " item(s) not run"
              << (stream.failed() ? ", " + std::to_string(stream.failed()) + " interrupted or failed" : "") << std::endl;
    return 1;
  }
  if (stream.failed()) std::cerr << "ipp: " << stream.failed() << " of " << stream.items() << " item(s) failed" << std::endl;
  return stream.failed() || unread ? 1 : 0;
}

}  // namespace ipp_cmd

// ipp: use a running cluster from the shell. One subcommand per job; --help on each.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "common/cli.hpp"
#include "ipp/client.hpp"

namespace po = boost::program_options;
using ipp::Json;

namespace {

struct Common {
  std::string profile = "default", profile_dir, cluster_id, file;
  double timeout = 10;
  bool json = false;
  std::string ssh;
  std::vector<std::string> ssh_args;
};

void AddCommon(po::options_description& o, Common& c) {
  o.add_options()
      ("profile", po::value(&c.profile)->default_value("default"), "profile name")
      ("profile-dir", po::value(&c.profile_dir), "explicit profile directory")
      ("cluster-id", po::value(&c.cluster_id), "cluster id")
      ("file,f", po::value(&c.file), "client connection file (overrides the profile)")
      ("connect-timeout", po::value(&c.timeout)->default_value(10), "seconds to wait for the controller")
      ("json", po::bool_switch(&c.json), "machine-readable JSON output")
      ("ssh", po::value(&c.ssh), "reach the controller through SSH: user@host[:port]")
      ("ssh-arg", po::value(&c.ssh_args)->composing(), "extra ssh option (repeatable), e.g. --ssh-arg=-i --ssh-arg=key");
}

int Fail(const std::string& message) {
  std::cerr << "ipp: " << message << std::endl;
  return 1;
}

std::unique_ptr<ipp::Client> Connect(const Common& c, std::string* error) {
  ipp::ClientOptions o;
  o.profile = c.profile;
  o.profile_dir = c.profile_dir;
  o.cluster_id = c.cluster_id;
  o.connection_file = c.file;
  o.timeout = ipp::Millis(static_cast<long>(c.timeout * 1000));
  o.ssh_server = c.ssh;
  o.ssh_args = c.ssh_args;
  auto client = ipp::Client::Connect(o);
  if (!client.ok()) {
    *error = client.status().message();
    return nullptr;
  }
  return std::move(client).value();
}

// Ctrl-C in map and farm: the first asks the command to wind down (it polls Interrupted()),
// the second exits at once.
std::atomic<int> g_interrupts{0};

extern "C" void OnInterrupt(int) {
  if (g_interrupts.fetch_add(1) >= 1) _exit(130);
}

bool Interrupted() { return g_interrupts.load() > 0; }

// Connect() with SIGINT caught: the client's I/O thread starts with SIGINT blocked, so the
// signal always reaches this (the main) thread, whose waits poll Interrupted().
std::unique_ptr<ipp::Client> ConnectInterruptible(const Common& c, std::string* error) {
  sigset_t sigint;
  sigemptyset(&sigint);
  sigaddset(&sigint, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigint, nullptr);
  auto client = Connect(c, error);
  struct sigaction action {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  pthread_sigmask(SIG_UNBLOCK, &sigint, nullptr);
  return client;
}

// Waits for every result until `deadline`; false if some are still out.
bool WaitAll(const std::vector<ipp::AsyncResult>& results, std::chrono::steady_clock::time_point deadline) {
  for (const auto& r : results) {
    auto left = std::chrono::duration_cast<ipp::Millis>(deadline - std::chrono::steady_clock::now());
    if (!r.wait(std::max(left, ipp::Millis(0)))) return false;
  }
  return true;
}

// After a first Ctrl-C: every request of `results` still queued (in the scheduler or on an
// engine) is aborted; what runs gets `grace` to end, then the engines running it get SIGINT
// and as long again. Returns the msg_ids still unanswered after that.
std::vector<std::string> WindDown(ipp::Client& client, const std::vector<ipp::AsyncResult>& results, ipp::Millis grace) {
  std::set<std::string> pending;
  for (const auto& r : results) {
    if (!r.ready()) pending.insert(r.msg_ids().begin(), r.msg_ids().end());
  }
  if (pending.empty()) return {};
  // Not waiting for the engines' acknowledgements: a stock engine gives them only once its
  // running task is done.
  client.direct_view().abort({pending.begin(), pending.end()});
  if (WaitAll(results, std::chrono::steady_clock::now() + grace)) return {};
  // The engines running what is left, from the hub's view of their queues.
  std::vector<int> busy;
  if (auto status = client.queue_status({}, /*verbose=*/true); status.ok()) {
    for (int id : client.ids()) {
      const ipp::Json& q = (*status)[std::to_string(id)];
      if (!q.is_object()) continue;
      bool runs_ours = false;
      for (const char* list : {"queue", "tasks"}) {
        for (const auto& msg_id : q.value(list, ipp::Json::array())) {
          runs_ours = runs_ours || (msg_id.is_string() && pending.count(msg_id.get<std::string>()));
        }
      }
      if (runs_ours) busy.push_back(id);
    }
  }
  if (!busy.empty()) (void)client.send_signal(SIGINT, busy);
  WaitAll(results, std::chrono::steady_clock::now() + grace);
  std::vector<std::string> left;
  for (const auto& r : results) {
    if (!r.ready()) left.insert(left.end(), r.msg_ids().begin(), r.msg_ids().end());
  }
  return left;
}

constexpr ipp::Millis kWindDownGrace{3000};

// "all", "0,2,5", "1-3", "0,4-6"
bool ParseTargets(const std::string& spec, const std::vector<int>& all, std::vector<int>* out) {
  if (spec.empty() || spec == "all") {
    *out = all;
    return true;
  }
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t dash = part.find('-');
      int a = std::stoi(part.substr(0, dash));
      int b = dash == std::string::npos ? a : std::stoi(part.substr(dash + 1));
      for (int i = a; i <= b; ++i) out->push_back(i);
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

std::string Usage(const std::string& command, const std::string& what) {
  return "usage: ipp " + command + "\n\n" + what;
}

// Parses a subcommand's options; returns >=0 to exit with, -1 to go on.
int ParseSub(int argc, char** argv, const std::string& usage, po::options_description& options,
             po::variables_map& vm, const po::positional_options_description* positional = nullptr) {
  return ipp::cli::Parse(argc, argv, usage, options, vm, nullptr, positional);
}

ipp::Millis Seconds(double s) { return ipp::Millis(static_cast<long>(s * 1000)); }

// "0-3,5"
std::string FormatIds(std::vector<int> ids) {
  std::sort(ids.begin(), ids.end());
  std::string out;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(ids[i]) + (j > i ? "-" + std::to_string(ids[j]) : "");
    i = j + 1;
  }
  return out;
}

// The engines a native command (px, functions, load) runs on. With "all", Python engines are
// left out, with a note: they run Python, not shell commands or native functions (named
// explicitly, they get the request).
bool NativeTargets(ipp::Client& client, const std::string& spec, double timeout, std::vector<int>* out,
                   std::string* error) {
  std::vector<int> all = client.ids();
  if (!ParseTargets(spec, all, out)) {
    *error = "bad --targets '" + spec + "'";
    return false;
  }
  if (out->empty()) {
    *error = "no engines registered yet";
    return false;
  }
  if (!spec.empty() && spec != "all") return true;
  std::vector<int> python;
  for (auto [id, kind] : client.engine_kinds(*out, Seconds(timeout))) {
    if (kind == ipp::EngineKind::kPython) python.push_back(id);
  }
  if (python.empty()) return true;
  std::erase_if(*out, [&](int id) { return std::count(python.begin(), python.end(), id) > 0; });
  std::cerr << "ipp: note: skipping Python engine" << (python.size() > 1 ? "s " : " ") << FormatIds(python)
            << " (Python engines run Python code, not native functions or shell commands)" << std::endl;
  if (out->empty()) {
    *error = "no native engines (only Python ones)";
    return false;
  }
  return true;
}

// Connects and picks the targets of a native command (see NativeTargets); null on error.
std::unique_ptr<ipp::Client> ConnectForNative(const Common& c, const std::string& spec, std::vector<int>* targets,
                                              std::string* error) {
  auto client = Connect(c, error);
  if (client && !NativeTargets(*client, spec, c.timeout, targets, error)) client.reset();
  return client;
}

// Waits for `r`, whose messages go one to each of `targets`. Once that takes a while, shows on
// stderr which engines it still waits for: a live line on a terminal, a line every 30 s
// otherwise. `timeout` > 0 bounds the wait (seconds); false if it passed.
bool WaitShowingProgress(const ipp::AsyncResult& r, const std::vector<int>& targets, double timeout) {
  using Clock = std::chrono::steady_clock;
  bool tty = isatty(2);
  auto start = Clock::now();
  auto next_line = start + std::chrono::seconds(tty ? 2 : 30);
  bool shown = false;
  bool done = true;
  while (!r.wait(ipp::Millis(200))) {
    auto now = Clock::now();
    double waited = std::chrono::duration<double>(now - start).count();
    if (timeout > 0 && waited >= timeout) {
      done = false;
      break;
    }
    if (now < next_line) continue;
    std::vector<int> pending;
    auto tasks = r.info();
    for (size_t i = 0; i < tasks.size() && i < targets.size(); ++i) {
      if (tasks[i].status == ipp::TaskStatus::kPending) pending.push_back(targets[i]);
    }
    // (none pending: every reply is in, the end of some output is not yet)
    std::string what = pending.empty() ? "the rest of the output"
                                       : (pending.size() == 1 ? "engine " : "engines ") + FormatIds(pending);
    std::fprintf(stderr, "%swaiting for %s: %.0f s%s", tty ? "\r" : "", what.c_str(), waited, tty ? "\033[K" : "\n");
    shown = true;
    next_line = now + std::chrono::seconds(tty ? 1 : 30);
  }
  if (shown && tty) std::fprintf(stderr, "\r\033[K");
  return done;
}

// ---------------------------------------------------------------------------------------------

int Engines(int argc, char** argv) {
  Common c;
  po::options_description o("Options");
  AddCommon(o, c);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("engines [options]", "List the engines: id, kind (native or python), host, pid, queue length, tasks done."), o, vm); rc >= 0) return rc;
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  auto deadline = std::chrono::steady_clock::now() + Seconds(c.timeout);
  std::vector<int> ids = client->ids();
  auto status = client->queue_status();
  if (!status.ok()) return Fail(status.status().message());
  Json rows = Json::array();
  if (!ids.empty()) {
    std::map<int, ipp::EngineKind> kinds = client->engine_kinds(ids, Seconds(c.timeout));
    // Host and pid: ipp.info from a native engine; a Python engine evaluates two expressions
    // (never a native call: a Python engine cannot unpack one and logs a traceback).
    std::vector<int> native, python;
    for (int id : ids) {
      if (kinds[id] == ipp::EngineKind::kNative) native.push_back(id);
      if (kinds[id] == ipp::EngineKind::kPython) python.push_back(id);
    }
    std::map<int, std::pair<Json, Json>> where;  // id -> (host, pid)
    ipp::AsyncResult native_info, python_info;
    if (!native.empty()) native_info = client->direct_view(native).apply("ipp.info");
    if (!python.empty()) {
      python_info = client->direct_view(python).execute(
          "", {{"host", "__import__('socket').gethostname()"}, {"pid", "__import__('os').getpid()"}}, /*silent=*/true);
    }
    for (const ipp::AsyncResult* r : {&native_info, &python_info}) {
      r->wait(std::max(ipp::Millis(0), std::chrono::duration_cast<ipp::Millis>(deadline - std::chrono::steady_clock::now())));
    }
    auto native_tasks = native_info.info();
    for (size_t i = 0; i < native_tasks.size() && i < native.size(); ++i) {
      const ipp::TaskInfo& t = native_tasks[i];
      if (t.status == ipp::TaskStatus::kOk && t.result.is_object()) where[native[i]] = {t.result.value("hostname", Json()), t.result.value("pid", Json())};
    }
    auto python_tasks = python_info.info();
    for (size_t i = 0; i < python_tasks.size() && i < python.size(); ++i) {
      const ipp::TaskInfo& t = python_tasks[i];
      if (t.status != ipp::TaskStatus::kOk || !t.result.is_object()) continue;
      // {"host": {"status": "ok", "data": {"text/plain": "'name'"}}, "pid": {... "1234"}}
      auto text = [&](const char* name) {
        Json e = t.result.value("user_expressions", Json::object()).value(name, Json::object());
        return e.is_object() && e.value("status", "") == "ok" ? e.value("data", Json::object()).value("text/plain", "") : "";
      };
      std::string host = text("host"), pid = text("pid");
      if (host.size() >= 2 && (host.front() == '\'' || host.front() == '"')) host = host.substr(1, host.size() - 2);
      Json pid_json = Json::parse(pid, nullptr, false);
      where[python[i]] = {host.empty() ? Json() : Json(host), pid_json.is_number_integer() ? pid_json : Json()};
    }
    for (int id : ids) {
      Json q = (*status)[std::to_string(id)];
      Json row = {{"id", id}, {"kind", ipp::EngineKindName(kinds[id])}, {"queue", q.value("queue", 0) + q.value("tasks", 0)},
                  {"done", q.value("completed", 0)}, {"host", nullptr}, {"pid", nullptr}};
      if (auto w = where.find(id); w != where.end()) {
        row["host"] = w->second.first;
        row["pid"] = w->second.second;
      }
      rows.push_back(row);
    }
  }
  if (c.json) {
    std::cout << rows.dump() << std::endl;
    return 0;
  }
  std::printf("%4s  %-7s %-24s %8s %6s %8s\n", "id", "kind", "host", "pid", "queue", "done");
  for (const Json& r : rows) {
    std::printf("%4d  %-7s %-24s %8s %6d %8d\n", r["id"].get<int>(), r["kind"].get<std::string>().c_str(),
                r["host"].is_string() ? r["host"].get<std::string>().c_str() : "?",
                r["pid"].is_number() ? std::to_string(r["pid"].get<int>()).c_str() : "?", r["queue"].get<int>(), r["done"].get<int>());
  }
  if (rows.empty()) std::printf("(no engines registered yet)\n");
  return 0;
}

int Px(int argc, char** argv) {
  Common c;
  std::string targets_spec;
  double timeout = 0;
  std::vector<std::string> command;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("targets,t", po::value(&targets_spec)->default_value("all"), "engines: all (native ones), 0,2 or 1-3")
      ("timeout", po::value(&timeout)->default_value(0), "seconds to wait for the command (0: as long as it runs)")
      ("command", po::value(&command)->multitoken(), "the command (after --)");
  po::positional_options_description pos;
  pos.add("command", -1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("px [--targets SPEC] -- CMD ...", "Run a shell command on engines; print each engine's output under its id."), o, vm, &pos); rc >= 0) return rc;
  if (command.empty()) return Fail("px needs a command: ipp px -- hostname");
  if (timeout < 0) return Fail("--timeout must be >= 0");
  std::string cmd;
  for (const auto& w : command) cmd += (cmd.empty() ? "" : " ") + w;
  std::string error;
  std::vector<int> targets;
  auto client = ConnectForNative(c, targets_spec, &targets, &error);
  if (!client) return Fail(error);
  auto r = client->direct_view(targets).execute(cmd);
  bool finished = WaitShowingProgress(r, targets, timeout);
  auto tasks = r.info();
  bool failed = !finished;
  Json out = Json::array();
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& t = tasks[i];
    bool pending = t.status == ipp::TaskStatus::kPending;
    failed = failed || t.error.has_value();
    if (t.output_incomplete) {
      std::cerr << "ipp: warning: engine " << targets[i]
                << ": output may be incomplete (its end-of-output message did not arrive)" << std::endl;
    }
    if (c.json) {
      Json error_json = t.error ? Json(t.error->what()) : pending ? Json("TimeoutError: still running") : Json(nullptr);
      out.push_back({{"engine", targets[i]}, {"stdout", t.stdout_text}, {"stderr", t.stderr_text},
                     {"status", ipp::TaskStatusName(t.status)}, {"error", error_json}, {"output_incomplete", t.output_incomplete}});
      continue;
    }
    if (!t.stdout_text.empty()) std::cout << "[stdout:" << targets[i] << "] " << t.stdout_text << (t.stdout_text.back() == '\n' ? "" : "\n");
    if (!t.stderr_text.empty()) std::cout << "[stderr:" << targets[i] << "] " << t.stderr_text << (t.stderr_text.back() == '\n' ? "" : "\n");
    if (t.error) std::cout << "[error:" << targets[i] << "] " << t.error->ename() << ": " << t.error->evalue() << "\n";
    if (pending) std::cout << "[error:" << targets[i] << "] TimeoutError: still running after " << timeout << " s\n";
  }
  if (c.json) std::cout << out.dump() << std::endl;
  return failed ? 1 : 0;
}

// Every function the engines can run, with its doc and the engines that have it.
int Functions(int argc, char** argv) {
  Common c;
  std::string targets_spec;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("targets,t", po::value(&targets_spec)->default_value("all"), "engines: all (native ones), 0,2 or 1-3");
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("functions [--targets SPEC]", "List the native functions on the engines: name, engines that have it, doc, origin."), o, vm); rc >= 0) return rc;
  std::string error;
  std::vector<int> targets;
  auto client = ConnectForNative(c, targets_spec, &targets, &error);
  if (!client) return Fail(error);
  auto r = client->direct_view(targets).apply("ipp.functions");
  bool finished = WaitShowingProgress(r, targets, c.timeout);
  auto tasks = r.info();
  int rc = finished ? 0 : 1;
  std::map<std::string, Json> functions;  // by name, in name order
  for (size_t i = 0; i < tasks.size() && i < targets.size(); ++i) {
    const ipp::TaskInfo& t = tasks[i];
    if (t.status != ipp::TaskStatus::kOk || !t.result.is_array()) {
      std::cerr << "ipp: engine " << targets[i] << ": "
                << (t.error ? t.error->ename() + ": " + t.error->evalue()
                            : "no answer within " + std::to_string(static_cast<int>(c.timeout)) + " s (busy?)")
                << std::endl;
      rc = 1;
      continue;
    }
    for (const Json& f : t.result) {
      if (!f.is_object() || !f.contains("name")) continue;
      Json& entry = functions[f.value("name", "")];
      if (entry.is_null()) entry = {{"name", f["name"]}, {"doc", f.value("doc", "")}, {"origin", f.value("origin", "")}, {"engines", Json::array()}};
      entry["engines"].push_back(targets[i]);
    }
  }
  if (c.json) {
    Json out = Json::array();
    for (auto& [name, f] : functions) out.push_back(f);
    std::cout << out.dump() << std::endl;
    return rc;
  }
  size_t width = 8;
  for (auto& [name, f] : functions) width = std::max(width, name.size());
  std::printf("%-*s  %-10s %s\n", static_cast<int>(width), "function", "engines", "doc [origin]");
  for (auto& [name, f] : functions) {
    std::vector<int> on = f["engines"].get<std::vector<int>>();
    std::string engines = on.size() == targets.size() ? "all" : FormatIds(on);
    std::string origin = f["origin"].get<std::string>();
    origin = origin.substr(origin.rfind('/') + 1);  // a plugin's file name; "builtin"
    std::printf("%-*s  %-10s %s [%s]\n", static_cast<int>(width), name.c_str(), engines.c_str(),
                f["doc"].get<std::string>().c_str(), origin.c_str());
  }
  return rc;
}

// Loads a plugin library on the engines (ipp.load) and says what each added.
int Load(int argc, char** argv) {
  Common c;
  std::string targets_spec, path;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("targets,t", po::value(&targets_spec)->default_value("all"), "engines: all (native ones), 0,2 or 1-3")
      ("path", po::value(&path), "the plugin library (.so), as the engines' hosts see it");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("load PATH [--targets SPEC]", "Load a plugin library on the engines; print the functions each engine added."), o, vm, &pos); rc >= 0) return rc;
  if (path.empty()) return Fail("load needs the path of a plugin library: ipp load ./libmyfuncs.so");
  std::string error;
  std::vector<int> targets;
  auto client = ConnectForNative(c, targets_spec, &targets, &error);
  if (!client) return Fail(error);
  // No bound: a busy engine loads the plugin when its current work ends (it is queued there).
  auto r = client->direct_view(targets).load_plugin(path);
  WaitShowingProgress(r, targets, 0);
  auto tasks = r.info();
  int rc = 0;
  Json out = Json::array();
  for (size_t i = 0; i < tasks.size() && i < targets.size(); ++i) {
    const ipp::TaskInfo& t = tasks[i];
    Json row = {{"engine", targets[i]}, {"status", ipp::TaskStatusName(t.status)}};
    if (t.status == ipp::TaskStatus::kOk) {
      row["added"] = t.result;
    } else {
      row["error"] = t.error ? t.error->ename() + ": " + t.error->evalue() : std::string("no answer");
      rc = 1;
    }
    if (c.json) {
      out.push_back(row);
    } else if (t.status == ipp::TaskStatus::kOk) {
      std::string names;
      for (const Json& n : t.result) names += (names.empty() ? "" : ", ") + (n.is_string() ? n.get<std::string>() : n.dump());
      std::cout << "[engine " << targets[i] << "] added " << t.result.size() << ": " << names << "\n";
    } else {
      std::cout << "[error:" << targets[i] << "] " << row["error"].get<std::string>() << "\n";
    }
  }
  if (c.json) std::cout << out.dump() << std::endl;
  return rc;
}

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

int Map(int argc, char** argv) {
  Common c;
  std::string function, input = "-";
  long long chunksize = 1;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("function", po::value(&function), "native function to call on each item")
      ("input", po::value(&input)->default_value("-"), "file with one JSON value per line, or - for stdin")
      ("chunksize", po::value(&chunksize)->default_value(1), "items per task (1 or more)");
  po::positional_options_description pos;
  pos.add("function", 1).add("input", 1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("map FUNCTION [FILE|-]",
                        "One JSON value per line in, load-balanced. Each good result is printed on stdout, in\n"
                        "input order; each failed item on stderr with its input line number (exit 1 if any\n"
                        "failed). What the function printed goes to stderr. --json: one object per item on\n"
                        "stdout, in order: {\"line\", \"ok\", \"result\" | \"ename\", \"evalue\", \"engine\"},\n"
                        "the first item of each task also with its \"stdout\"/\"stderr\" when not empty.\n"
                        "Ctrl-C aborts what has not started and exits 130 after printing what finished."),
                        o, vm, &pos); rc >= 0) return rc;
  if (function.empty()) return Fail("map needs a function name");
  if (chunksize < 1) return Fail("--chunksize must be 1 or more (got " + std::to_string(chunksize) + ")");
  std::ifstream file;
  if (input != "-") {
    file.open(input);
    if (!file) return Fail("cannot read " + input);
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
  if (client->ids().empty()) return Fail("no engines registered yet");
  ipp::Millis timeout(static_cast<long>(c.timeout * 1000));
  // With no items no task would name the function: check it on the engines instead.
  if (items.empty() && !EnginesHave(*client, function, timeout)) {
    return Fail("no function '" + function + "' on the engines (ipp functions lists them)");
  }
  // One ipp.map task per chunk, each item tried (keep_going): a bad item costs only its result.
  auto view = client->load_balanced_view();
  size_t chunk = static_cast<size_t>(chunksize);
  std::vector<ipp::AsyncResult> tasks;
  for (size_t begin = 0; begin < items.size() && !Interrupted(); begin += chunk) {
    size_t end = std::min(items.size(), begin + chunk);
    Json slice(std::vector<Json>(items.begin() + static_cast<long>(begin), items.begin() + static_cast<long>(end)));
    tasks.push_back(view.apply("ipp.map", {{"function", function}, {"items", std::move(slice)}, {"keep_going", true}}));
  }
  for (auto& t : tasks) {
    while (!Interrupted() && !t.wait(ipp::Millis(200))) {
    }
  }
  if (Interrupted()) WindDown(*client, tasks, kWindDownGrace);
  size_t failed = 0, unfinished = items.size() - std::min(items.size(), tasks.size() * chunk);
  for (size_t k = 0; k < tasks.size(); ++k) {
    ipp::TaskInfo t = tasks[k].info()[0];
    size_t begin = k * chunk, end = std::min(items.size(), begin + chunk);
    if (!tasks[k].ready() || t.status == ipp::TaskStatus::kAborted) {
      unfinished += end - begin;
      continue;
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
  }
  std::cout.flush();
  if (Interrupted()) {
    std::cerr << "ipp: interrupted: " << unfinished << " of " << items.size() << " item(s) not done" << std::endl;
    return 130;
  }
  if (failed) std::cerr << "ipp: " << failed << " of " << items.size() << " item(s) failed" << std::endl;
  return failed ? 1 : 0;
}

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

// A task farm: one shell command per line, load-balanced, resumable via the results file.
int Farm(int argc, char** argv) {
  Common c;
  std::string input, results_path;
  int retries = 0;
  double timeout = 0;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("commands", po::value(&input), "file with one shell command per line")
      ("results,o", po::value(&results_path), "results file, JSON lines (default: COMMANDS.results.jsonl)")
      ("retries", po::value(&retries)->default_value(0), "retries of a failed command on other engines")
      ("timeout", po::value(&timeout)->default_value(0), "seconds a command may run (0: no limit)");
  po::positional_options_description pos;
  pos.add("commands", 1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("farm FILE [options]",
                        "Run every command of FILE (one per line) on the engines. The results file holds\n"
                        "the latest result of each command; a rerun skips commands that already succeeded.\n"
                        "Ctrl-C aborts what has not started, gives running commands a few seconds (then\n"
                        "interrupts them), records what finished and exits 130; a second Ctrl-C exits at once.\n"
                        "Exits non-zero if any command failed. --json: a summary object on stdout."), o, vm, &pos); rc >= 0) return rc;
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
  if (client->ids().empty()) return Fail("no engines registered yet");
  bool tty = isatty(2) && !c.json;
  auto start = std::chrono::steady_clock::now();
  if (!file.OpenForAppend()) return Fail("cannot write " + results_path);
  ipp::TaskOptions options;
  options.retries = retries;
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
  if (Interrupted()) unanswered = WindDown(*client, results, kWindDownGrace);
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
  return failures ? 1 : 0;
}

int Status(int argc, char** argv) {
  Common c;
  po::options_description o("Options");
  AddCommon(o, c);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("status [options]", "Queue status of the cluster."), o, vm); rc >= 0) return rc;
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  auto s = client->queue_status();
  if (!s.ok()) return Fail(s.status().message());
  if (c.json) {
    std::cout << s->dump() << std::endl;
    return 0;
  }
  size_t queued = 0, done = 0;
  for (int id : client->ids()) {
    Json q = (*s)[std::to_string(id)];
    queued += q.value("queue", 0) + q.value("tasks", 0);
    done += q.value("completed", 0);
  }
  std::printf("engines: %zu\nqueued on engines: %zu\nunassigned tasks: %d\ncompleted: %zu\n", client->ids().size(), queued,
              s->value("unassigned", 0), done);
  return 0;
}

int ResultCmd(int argc, char** argv) {
  Common c;
  std::vector<std::string> ids;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("msg-id", po::value(&ids)->multitoken(), "message ids");
  po::positional_options_description pos;
  pos.add("msg-id", -1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("result MSG_ID ...", "Fetch results from the hub's database (any client's)."), o, vm, &pos); rc >= 0) return rc;
  if (ids.empty()) return Fail("result needs at least one msg_id");
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  auto r = client->get_result(ids);
  int code = 0;
  for (const auto& t : r.info()) {
    Json j = {{"msg_id", t.msg_id}, {"status", ipp::TaskStatusName(t.status)}, {"engine", t.engine_id}, {"result", t.result},
              {"stdout", t.stdout_text}, {"stderr", t.stderr_text}};
    if (t.error) {
      j["error"] = std::string(t.error->ename()) + ": " + t.error->evalue();
      code = 1;
    }
    std::cout << j.dump() << "\n";
  }
  return code;
}

int Abort(int argc, char** argv) {
  Common c;
  std::vector<std::string> ids;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("msg-id", po::value(&ids)->multitoken(), "message ids (none: everything queued)");
  po::positional_options_description pos;
  pos.add("msg-id", -1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("abort [MSG_ID ...]",
                        "Abort requests that have not started: those named, or with no ids every request of\n"
                        "any client still queued, on the engines and in the load-balanced scheduler. They\n"
                        "are answered 'aborted' and never run; running work goes on (interrupt it with\n"
                        "Ctrl-C in its client). --json: {\"msg_ids\": [...], \"engines\": [...]}."), o, vm, &pos); rc >= 0) return rc;
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  std::vector<int> engines = client->ids();
  // The abort travels to the scheduler beside the engines' copies: with no engine, nothing carries it.
  if (engines.empty()) return Fail("no engines registered: nothing to send the abort to");
  auto s = client->abort(ids);
  if (!s.ok()) return Fail(s.message());
  if (c.json) {
    std::cout << Json{{"msg_ids", ids}, {"engines", engines}}.dump() << std::endl;
  } else {
    std::cout << "aborted " << (ids.empty() ? std::string("everything queued") : std::to_string(ids.size()) + " request(s)")
              << " (" << engines.size() << " engine(s) and the task scheduler)" << std::endl;
  }
  return 0;
}

int Shutdown(int argc, char** argv) {
  Common c;
  bool engines_only = false;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("engines-only", po::bool_switch(&engines_only), "stop the engines, keep the controller");
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("shutdown [--engines-only]",
                        "Stop the engines and the controller. --json: {\"engines\": [...], \"controller\": bool}."), o, vm); rc >= 0) return rc;
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  std::vector<int> engines = client->ids();
  auto s = client->shutdown({}, !engines_only);
  if (!s.ok()) return Fail(s.message());
  if (c.json) {
    std::cout << Json{{"engines", engines}, {"controller", !engines_only}}.dump() << std::endl;
  } else {
    std::cout << "stopped " << engines.size() << " engine(s)" << (engines_only ? "" : " and the controller") << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ipp::cli::RunSubcommand(argc, argv, "ipp", {
      {"engines", {Engines, "list the engines"}},
      {"px", {Px, "run a shell command on engines"}},
      {"functions", {Functions, "list the native functions on the engines"}},
      {"load", {Load, "load a plugin library on the engines"}},
      {"map", {Map, "map a native function over JSON lines"}},
      {"farm", {Farm, "a resumable, load-balanced shell task farm"}},
      {"status", {Status, "queue status"}},
      {"result", {ResultCmd, "fetch results by msg_id"}},
      {"abort", {Abort, "abort queued requests"}},
      {"shutdown", {Shutdown, "stop the engines and the controller"}},
  });
}

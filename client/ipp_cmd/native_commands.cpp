// ipp px, functions, load: one request to each native engine, each engine's answer shown.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "client/ipp_cmd/commands.hpp"
#include "client/ipp_cmd/targets.hpp"
#include "client/ipp_cmd/wind_down.hpp"

namespace ipp_cmd {

int Px(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  std::string targets_spec;
  double timeout = 0;
  std::vector<std::string> command;
  cl.options.add_options()("targets,t", po::value(&targets_spec)->default_value("all"), "engines: all (native ones), 0,2 or 1-3")
      ("timeout", po::value(&timeout)->default_value(0), "seconds to wait for the command, then interrupt it (0: as long as it runs)")
      ("command", po::value(&command)->multitoken(), "the command (after --)");
  cl.positional.add("command", -1);
  if (int rc = cl.Parse(argc, argv, Usage("px [--targets SPEC] -- CMD ...", "Run a shell command on engines; print each engine's output under its id.\n"
                                                       "Ctrl-C (or --timeout) interrupts the command on the engines still running it.")); rc >= 0) return rc;
  if (command.empty()) return Fail("px needs a command: ipp px -- hostname");
  if (timeout < 0) return Fail("--timeout must be >= 0");
  std::string cmd;
  for (const auto& w : command) cmd += (cmd.empty() ? "" : " ") + w;
  std::string error;
  std::vector<int> targets;
  auto client = ConnectInterruptible(c, &error);
  if (!client || !NativeTargets(*client, targets_spec, c.timeout, &targets, &error)) return Fail(error);
  if (Interrupted()) return 130;  // Ctrl-C while connecting: nothing sent yet
  auto r = client->direct_view(targets).execute(cmd);
  bool finished = WaitShowingProgress(r, targets, timeout);
  // Timed out or Ctrl-C: the engines still running the command are interrupted (as map and
  // farm do), so that it does not hold them for the next request.
  std::vector<bool> stopped(targets.size(), false);
  if (!finished) {
    std::vector<int> running;
    auto now = r.info();
    for (size_t i = 0; i < now.size() && i < targets.size(); ++i) {
      if (now[i].status != ipp::TaskStatus::kPending) continue;
      stopped[i] = true;
      running.push_back(targets[i]);
    }
    if (!running.empty()) {
      if (auto s = client->send_signal(SIGINT, running); !s.ok()) std::cerr << "ipp: cannot interrupt: " << s.message() << std::endl;
      r.wait(kWindDownGrace);
    }
  }
  std::ostringstream why_stopped;
  if (Interrupted()) {
    why_stopped << "KeyboardInterrupt: interrupted by Ctrl-C";
  } else {
    why_stopped << "TimeoutError: still running after " << timeout << " s";
  }
  auto tasks = r.info();
  bool failed = !finished;
  Json out = Json::array();
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& t = tasks[i];
    bool pending = t.status == ipp::TaskStatus::kPending;
    failed = failed || t.error.has_value();
    // What the engine said of a command we interrupted is only the echo of that interrupt.
    std::string stop_note = !stopped[i] ? "" : why_stopped.str() + (pending ? " (sent SIGINT; still no reply)" : " (sent SIGINT)");
    if (t.output_incomplete) {
      std::cerr << "ipp: warning: engine " << targets[i]
                << ": output may be incomplete (its end-of-output message did not arrive)" << std::endl;
    }
    if (c.json) {
      Json error_json = stopped[i] ? Json(stop_note) : t.error ? Json(t.error->what()) : Json(nullptr);
      out.push_back({{"engine", targets[i]}, {"stdout", t.stdout_text}, {"stderr", t.stderr_text},
                     {"status", ipp::TaskStatusName(t.status)}, {"error", error_json}, {"output_incomplete", t.output_incomplete}});
      continue;
    }
    if (!t.stdout_text.empty()) std::cout << "[stdout:" << targets[i] << "] " << t.stdout_text << (t.stdout_text.back() == '\n' ? "" : "\n");
    if (!t.stderr_text.empty()) std::cout << "[stderr:" << targets[i] << "] " << t.stderr_text << (t.stderr_text.back() == '\n' ? "" : "\n");
    if (stopped[i]) {
      std::cout << "[error:" << targets[i] << "] " << stop_note << "\n";
    } else if (t.error) {
      std::cout << "[error:" << targets[i] << "] " << t.error->ename() << ": " << t.error->evalue() << "\n";
    }
  }
  if (c.json) std::cout << out.dump() << std::endl;
  if (Interrupted()) return 130;
  return failed ? 1 : 0;
}

// Every function the engines can run, with its doc and the engines that have it.
int Functions(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  std::string targets_spec;
  cl.options.add_options()("targets,t", po::value(&targets_spec)->default_value("all"), "engines: all (native ones), 0,2 or 1-3");
  if (int rc = cl.Parse(argc, argv, Usage("functions [--targets SPEC]", "List the native functions on the engines: name, engines that have it, doc, origin.")); rc >= 0) return rc;
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

namespace {

struct LoadOutcome {
  bool all_ok = true, any_ok = false;  // every engine loaded it; some engine did
};

// Loads `path` into `targets` (native engines) and prints, or adds to `out` with --json, what
// each added.
LoadOutcome LoadInto(ipp::Client& client, const std::vector<int>& targets, const std::string& path, const Common& c,
                     Json& out) {
  LoadOutcome outcome;
  // No bound: a busy engine loads the plugin when its current work ends (it is queued there).
  auto r = client.direct_view(targets).load_plugin(path);
  WaitShowingProgress(r, targets, 0);
  auto tasks = r.info();
  for (size_t i = 0; i < tasks.size() && i < targets.size(); ++i) {
    const ipp::TaskInfo& t = tasks[i];
    const int engine = t.engine_id >= 0 ? t.engine_id : targets[i];
    Json row = {{"engine", engine}, {"status", ipp::TaskStatusName(t.status)}};
    if (t.status == ipp::TaskStatus::kOk) {
      row["added"] = t.result;
      outcome.any_ok = true;
    } else {
      row["error"] = t.error ? t.error->ename() + ": " + t.error->evalue() : std::string("no answer");
      outcome.all_ok = false;
    }
    if (c.json) {
      out.push_back(row);
    } else if (t.status == ipp::TaskStatus::kOk) {
      std::string names;
      for (const Json& n : t.result) names += (names.empty() ? "" : ", ") + (n.is_string() ? n.get<std::string>() : n.dump());
      std::cout << "[engine " << engine << "] added " << t.result.size() << ": " << names << "\n";
    } else {
      std::cout << "[error:" << engine << "] " << row["error"].get<std::string>() << "\n";
    }
  }
  return outcome;
}

// `ids` without the Python engines, which have no plugins (load_plugin skips them too; left out
// here so that the progress line names only engines that are asked).
std::vector<int> NativeOnly(ipp::Client& client, std::vector<int> ids) {
  if (ids.empty()) return ids;
  std::map<int, ipp::EngineKind> kinds = client.engine_kinds(ids);
  std::erase_if(ids, [&](int id) { return kinds[id] == ipp::EngineKind::kPython; });
  return ids;
}

// Keeps `path` for engines that register later and loads it into those that registered while it
// was loading into `loaded` (their registration reply went out before the hub kept it).
void KeepForLater(ipp::Client& client, const std::string& path, const std::vector<int>& loaded, const Common& c,
                  LoadOutcome& outcome, Json& out) {
  ipp::Result<std::vector<int>> before = client.register_plugin(path);
  if (!before.ok()) {
    std::cerr << "ipp: note: engines that register later will not load it: " << before.status().message() << "\n";
    return;
  }
  std::vector<int> late;
  for (int id : *before) {
    if (std::find(loaded.begin(), loaded.end(), id) == loaded.end()) late.push_back(id);
  }
  // Some may still be registering: the client learns of them within a heartbeat or two.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(std::max(c.timeout, 1.0));
  auto unknown = [&] {
    std::vector<int> ids = client.ids();
    return std::count_if(late.begin(), late.end(), [&](int id) { return std::find(ids.begin(), ids.end(), id) == ids.end(); });
  };
  while (unknown() > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::vector<int> ids = client.ids();
  std::erase_if(late, [&](int id) { return std::find(ids.begin(), ids.end(), id) == ids.end(); });  // never finished
  late = NativeOnly(client, std::move(late));
  if (!late.empty()) {
    LoadOutcome more = LoadInto(client, late, path, c, out);
    outcome.all_ok = outcome.all_ok && more.all_ok;
  }
  if (!c.json) std::cerr << "ipp: engines that register later load it too (ipp load --list; --forget PATH stops that)\n";
}

int ListPlugins(const Common& c, const std::string& forget) {
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  if (!forget.empty()) {
    if (ipp::Status s = client->forget_plugin(forget); !s.ok()) return Fail(s.message());
  }
  ipp::Result<std::vector<std::string>> plugins = client->registered_plugins();
  if (!plugins.ok()) return Fail(plugins.status().message());
  if (c.json) {
    std::cout << Json(*plugins).dump() << std::endl;
  } else if (plugins->empty()) {
    std::cout << "no plugins: engines that register load only their own --load plugins\n";
  } else {
    for (const std::string& p : *plugins) std::cout << p << "\n";
  }
  return 0;
}

}  // namespace

// Loads a plugin library on the engines (ipp.load) and says what each added; into all engines,
// also keeps it for engines that register later.
int Load(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  std::string targets_spec, path, forget;
  bool now_only = false, list = false;
  cl.options.add_options()("targets,t", po::value(&targets_spec)->default_value("all"),
                           "engines: all (native ones, and those that register later), 0,2 or 1-3 (those only)")
      ("now-only", po::bool_switch(&now_only), "with all engines: not into engines that register later")
      ("list", po::bool_switch(&list), "list the plugins engines load as they register, and exit")
      ("forget", po::value(&forget), "engines that register later no longer load this plugin (then --list)")
      ("path", po::value(&path), "the plugin library (.so), as the engines' hosts see it");
  cl.positional.add("path", 1);
  if (int rc = cl.Parse(argc, argv, Usage("load PATH [--targets SPEC] [--now-only] | load --list | load --forget PATH",
                                          "Load a plugin library on the engines; print the functions each engine added.\n"
                                          "Into all engines (the default), engines started or restarted later load it too\n"
                                          "(our controller keeps the list: `ipp load --list`).")); rc >= 0) {
    return rc;
  }
  if (list || !forget.empty()) {
    if (!path.empty() || targets_spec != "all" || now_only) return Fail("--list and --forget take no plugin, --targets or --now-only");
    return ListPlugins(c, forget);
  }
  if (path.empty()) return Fail("load needs the path of a plugin library: ipp load ./libmyfuncs.so");
  std::string error;
  std::vector<int> targets;
  auto client = ConnectForNative(c, targets_spec, &targets, &error);
  if (!client) return Fail(error);
  std::vector<int> named = targets;
  targets = NativeOnly(*client, std::move(targets));
  if (targets.empty()) return Fail("no native engines among the targets (Python engines have no plugins)");
  if (targets_spec != "all") {  // (with all, ConnectForNative has said which it skips)
    for (int id : named) {
      if (std::find(targets.begin(), targets.end(), id) == targets.end()) {
        std::cerr << "ipp: note: skipping Python engine " << id << " (Python engines have no plugins)\n";
      }
    }
  }
  Json out = Json::array();
  LoadOutcome outcome = LoadInto(*client, targets, path, c, out);
  // Kept for later engines only once it loads somewhere: a mistyped path is not kept.
  if (targets_spec == "all" && !now_only && outcome.any_ok) KeepForLater(*client, path, targets, c, outcome, out);
  if (c.json) std::cout << out.dump() << std::endl;
  return outcome.all_ok ? 0 : 1;
}

}  // namespace ipp_cmd

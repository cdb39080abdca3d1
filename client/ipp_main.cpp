// ipp: use a running cluster from the shell. One subcommand per job; --help on each.
#include <unistd.h>

#include <chrono>
#include <cstdio>
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

// ---------------------------------------------------------------------------------------------

int Engines(int argc, char** argv) {
  Common c;
  po::options_description o("Options");
  AddCommon(o, c);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("engines [options]", "List the engines: id, host, pid, queue length, tasks done."), o, vm); rc >= 0) return rc;
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  std::vector<int> ids = client->ids();
  auto status = client->queue_status();
  if (!status.ok()) return Fail(status.status().message());
  Json rows = Json::array();
  if (!ids.empty()) {
    auto infos = client->direct_view(ids).apply("ipp.info");
    infos.wait(ipp::Millis(static_cast<long>(c.timeout * 1000)));
    auto tasks = infos.info();
    for (size_t i = 0; i < ids.size(); ++i) {
      Json q = (*status)[std::to_string(ids[i])];
      Json row = {{"id", ids[i]}, {"queue", q.value("queue", 0) + q.value("tasks", 0)}, {"done", q.value("completed", 0)}};
      if (i < tasks.size() && tasks[i].status == "ok") {
        row["host"] = tasks[i].result["hostname"];
        row["pid"] = tasks[i].result["pid"];
      } else {
        row["host"] = nullptr;  // e.g. a Python engine: no native info
        row["pid"] = nullptr;
      }
      rows.push_back(row);
    }
  }
  if (c.json) {
    std::cout << rows.dump() << std::endl;
    return 0;
  }
  std::printf("%4s  %-24s %8s %6s %8s\n", "id", "host", "pid", "queue", "done");
  for (const Json& r : rows) {
    std::printf("%4d  %-24s %8s %6d %8d\n", r["id"].get<int>(), r["host"].is_string() ? r["host"].get<std::string>().c_str() : "?",
                r["pid"].is_number() ? std::to_string(r["pid"].get<int>()).c_str() : "?", r["queue"].get<int>(), r["done"].get<int>());
  }
  if (rows.empty()) std::printf("(no engines registered yet)\n");
  return 0;
}

int Px(int argc, char** argv) {
  Common c;
  std::string targets_spec;
  std::vector<std::string> command;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("targets,t", po::value(&targets_spec)->default_value("all"), "engines: all, 0,2 or 1-3")
      ("command", po::value(&command)->multitoken(), "the command (after --)");
  po::positional_options_description pos;
  pos.add("command", -1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("px [--targets SPEC] -- CMD ...", "Run a shell command on engines; print each engine's output under its id."), o, vm, &pos); rc >= 0) return rc;
  if (command.empty()) return Fail("px needs a command: ipp px -- hostname");
  std::string cmd;
  for (const auto& w : command) cmd += (cmd.empty() ? "" : " ") + w;
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  std::vector<int> targets;
  if (!ParseTargets(targets_spec, client->ids(), &targets)) return Fail("bad --targets '" + targets_spec + "'");
  if (targets.empty()) return Fail("no engines registered yet");
  auto r = client->direct_view(targets).execute(cmd);
  r.wait();
  auto tasks = r.info();
  bool failed = false;
  Json out = Json::array();
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& t = tasks[i];
    failed = failed || t.error.has_value();
    if (c.json) {
      out.push_back({{"engine", targets[i]}, {"stdout", t.stdout_text}, {"stderr", t.stderr_text},
                     {"status", t.status}, {"error", t.error ? Json(t.error->what()) : Json(nullptr)}});
      continue;
    }
    if (!t.stdout_text.empty()) std::cout << "[stdout:" << targets[i] << "] " << t.stdout_text << (t.stdout_text.back() == '\n' ? "" : "\n");
    if (!t.stderr_text.empty()) std::cout << "[stderr:" << targets[i] << "] " << t.stderr_text << (t.stderr_text.back() == '\n' ? "" : "\n");
    if (t.error) std::cout << "[error:" << targets[i] << "] " << t.error->ename() << ": " << t.error->evalue() << "\n";
  }
  if (c.json) std::cout << out.dump() << std::endl;
  return failed ? 1 : 0;
}

int Map(int argc, char** argv) {
  Common c;
  std::string function, input = "-";
  size_t chunksize = 1;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("function", po::value(&function), "native function to call on each item")
      ("input", po::value(&input)->default_value("-"), "file with one JSON value per line, or - for stdin")
      ("chunksize", po::value(&chunksize)->default_value(1), "items per task");
  po::positional_options_description pos;
  pos.add("function", 1).add("input", 1);
  po::variables_map vm;
  if (int rc = ParseSub(argc, argv, Usage("map FUNCTION [FILE|-]", "One JSON value per line in, one result per line out, in order, load-balanced."), o, vm, &pos); rc >= 0) return rc;
  if (function.empty()) return Fail("map needs a function name");
  std::ifstream file;
  if (input != "-") {
    file.open(input);
    if (!file) return Fail("cannot read " + input);
  }
  std::istream& in = input == "-" ? std::cin : file;
  std::vector<Json> items;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json v = Json::parse(line, nullptr, false);
    if (v.is_discarded()) return Fail("line " + std::to_string(n) + " is not JSON: " + line);
    items.push_back(std::move(v));
  }
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  if (client->ids().empty()) return Fail("no engines registered yet");
  try {
    for (const Json& r : client->load_balanced_view().map(function, items, chunksize).get()) std::cout << r.dump() << "\n";
  } catch (const ipp::RemoteError& e) {
    return Fail(e.what());
  }
  return 0;
}

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
                        "Run every command of FILE (one per line) on the engines. Each finished command is\n"
                        "appended to the results file; a rerun skips commands that already succeeded.\n"
                        "Exits non-zero if any command failed."), o, vm, &pos); rc >= 0) return rc;
  if (input.empty()) return Fail("farm needs a file of commands");
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
  std::set<std::pair<int, std::string>> done;
  {
    std::ifstream previous(results_path);
    while (std::getline(previous, line)) {
      Json r = Json::parse(line, nullptr, false);
      if (r.is_object() && r.value("exit_code", -1) == 0) done.insert({r.value("line", 0), r.value("command", "")});
    }
  }
  std::vector<std::pair<int, std::string>> todo;
  for (auto& cmd : commands) {
    if (!done.count(cmd)) todo.push_back(cmd);
  }
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  if (client->ids().empty()) return Fail("no engines registered yet");
  std::ofstream out(results_path, std::ios::app);
  if (!out) return Fail("cannot write " + results_path);
  ipp::TaskOptions options;
  options.retries = retries;
  auto view = client->load_balanced_view(options);
  std::vector<ipp::AsyncResult> results;
  results.reserve(todo.size());
  for (auto& [n, cmd] : todo) results.push_back(view.shell(cmd, timeout, /*check=*/true));
  bool tty = isatty(2);
  auto start = std::chrono::steady_clock::now();
  size_t finished = 0, failures = 0, skipped = commands.size() - todo.size();
  std::mutex mutex;  // the results file and counters, written from the client's I/O thread
  for (size_t i = 0; i < todo.size(); ++i) {
    results[i].on_each([&, i](size_t, const ipp::TaskInfo& t) {
      Json r = t.result.is_object() ? t.result : Json::object();
      Json record = {{"line", todo[i].first}, {"command", todo[i].second}, {"engine", t.engine_id},
                     {"exit_code", r.value("exit_code", t.status == "ok" ? 0 : -1)},
                     {"stdout", r.value("stdout", "")}, {"stderr", r.value("stderr", "")},
                     {"timed_out", r.value("timed_out", false)}, {"msg_id", t.msg_id},
                     {"started", t.started}, {"completed", t.completed}};
      if (t.error) record["error"] = std::string(t.error->ename()) + ": " + t.error->evalue();
      std::lock_guard lock(mutex);
      out << record.dump() << "\n";
      out.flush();
      ++finished;
      failures += record["exit_code"] != 0;
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
    while (!r.wait(ipp::Millis(200))) {
      if (tty) progress(false);
    }
  }
  progress(true);
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
    Json j = {{"msg_id", t.msg_id}, {"status", t.status}, {"engine", t.engine_id}, {"result", t.result},
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
  if (int rc = ParseSub(argc, argv, Usage("shutdown [--engines-only]", "Stop the engines and the controller."), o, vm); rc >= 0) return rc;
  std::string error;
  auto client = Connect(c, &error);
  if (!client) return Fail(error);
  auto s = client->shutdown({}, !engines_only);
  return s.ok() ? 0 : Fail(s.message());
}

}  // namespace

int main(int argc, char** argv) {
  return ipp::cli::RunSubcommand(argc, argv, "ipp", {
      {"engines", {Engines, "list the engines"}},
      {"px", {Px, "run a shell command on engines"}},
      {"map", {Map, "map a native function over JSON lines"}},
      {"farm", {Farm, "a resumable, load-balanced shell task farm"}},
      {"status", {Status, "queue status"}},
      {"result", {ResultCmd, "fetch results by msg_id"}},
      {"abort", {Abort, "abort queued requests"}},
      {"shutdown", {Shutdown, "stop the engines and the controller"}},
  });
}

// ipp engines, status, result, abort, shutdown: the cluster as a whole, through the hub.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>

#include "client/ipp_cmd/commands.hpp"
#include "client/ipp_cmd/options.hpp"

namespace ipp_cmd {

namespace {

// The msg_ids a command takes as its arguments.
void AddMsgIdArguments(CommandLine& cl, std::vector<std::string>* ids, const char* description) {
  cl.options.add_options()("msg-id", po::value(ids)->multitoken(), description);
  cl.positional.add("msg-id", -1);
}

// The engines our controller saw die (queue_status' "dead"), oldest first: id, host, pid, when,
// how, log_tail. None from the stock controller.
Json DeadRows(ipp::Client& client) {
  Json rows = Json::array();
  auto status = client.queue_status();
  if (!status.ok()) return rows;
  Json dead = status->value("dead", Json::object());
  if (!dead.is_object()) return rows;
  for (const auto& [id, d] : dead.items()) {
    if (!d.is_object()) continue;
    rows.push_back({{"id", std::atoi(id.c_str())}, {"host", d.value("hostname", Json())}, {"pid", d.value("pid", Json())},
                    {"when", d.value("when", "")}, {"how", d.value("how", "")}, {"log_tail", d.value("log_tail", "")}});
  }
  std::sort(rows.begin(), rows.end(), [](const Json& a, const Json& b) { return a["when"] < b["when"]; });
  return rows;
}

void PrintDead(const Json& rows, bool with_logs) {
  std::printf("%4s  %-24s %8s %-26s %s\n", "id", "host", "pid", "when", "how");
  for (const Json& r : rows) {
    std::printf("%4d  %-24s %8s %-26s %s\n", r["id"].get<int>(), r["host"].is_string() ? r["host"].get<std::string>().c_str() : "?",
                r["pid"].is_number() ? std::to_string(r["pid"].get<long>()).c_str() : "?", r["when"].get<std::string>().c_str(),
                r["how"].get<std::string>().c_str());
    if (!with_logs || r["log_tail"].get<std::string>().empty()) continue;
    std::string tail = r["log_tail"].get<std::string>();
    for (size_t start = 0; start < tail.size();) {
      size_t end = tail.find('\n', start);
      if (end == std::string::npos) end = tail.size();
      std::printf("        | %s\n", tail.substr(start, end - start).c_str());
      start = end + 1;
    }
  }
}

int DeadEngines(ipp::Client& client, bool json) {
  Json rows = DeadRows(client);
  if (json) {
    std::cout << rows.dump() << std::endl;
    return 0;
  }
  if (rows.empty()) {
    std::printf("(no dead engines)\n");
    return 0;
  }
  PrintDead(rows, /*with_logs=*/true);
  return 0;
}

}  // namespace

int Engines(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  bool dead_only = false;
  cl.options.add_options()("dead", po::bool_switch(&dead_only),
                           "list the engines that died instead (the last 100): how, when, the end of their log");
  auto client = cl.ParseAndConnect(argc, argv, Usage("engines [options]", "List the engines: id, kind (native or python), host, pid, functions (how many),\n"
                                                                              "tags, queue length, tasks done (--json: also resources); the cluster's\n"
                                                                              "plugins (ipp load) an engine could not load; then the\n"
                                                                              "engines that died and how (--dead: those only, with their logs' ends)."));
  if (!client) return cl.exit_code();
  if (dead_only) return DeadEngines(*client, c.json);
  auto deadline = std::chrono::steady_clock::now() + Seconds(c.timeout);
  auto engines = client->engines(Seconds(c.timeout));
  if (!engines.ok()) return Fail(engines.status().message());
  Json rows = Json::array();
  if (!engines->empty()) {
    // Host and pid: a native engine's kernel_info (control channel: not counted as a task done);
    // a Python engine evaluates two expressions, which its done count includes (never a native
    // call: a Python engine cannot unpack one and logs a traceback).
    std::vector<int> native, python;
    for (const ipp::EngineInfo& e : *engines) {
      if (e.kind == ipp::EngineKind::kNative) native.push_back(e.id);
      if (e.kind == ipp::EngineKind::kPython) python.push_back(e.id);
    }
    std::map<int, std::pair<Json, Json>> where;  // id -> (host, pid)
    ipp::AsyncResult native_info, python_info;
    if (!native.empty()) native_info = client->direct_view(native).kernel_info();
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
      Json e = t.status == ipp::TaskStatus::kOk && t.result.is_object() ? t.result.value("ipp_engine", Json()) : Json();
      if (e.is_object()) where[native[i]] = {e.value("hostname", Json()), e.value("pid", Json())};
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
    for (const ipp::EngineInfo& e : *engines) {
      // functions: null when the controller does not say (the stock one).
      Json row = {{"id", e.id}, {"kind", ipp::EngineKindName(e.kind)}, {"queue", e.queue}, {"done", e.done},
                  {"host", nullptr}, {"pid", nullptr}, {"functions", e.functions < 0 ? Json() : Json(e.functions)},
                  {"tags", e.tags}, {"resources", e.resources}};
      if (!e.plugin_errors.empty()) row["plugin_errors"] = e.plugin_errors;
      if (auto w = where.find(e.id); w != where.end()) {
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
  std::printf("%4s  %-7s %-24s %8s %9s %6s %8s  %s\n", "id", "kind", "host", "pid", "functions", "queue", "done", "tags");
  for (const Json& r : rows) {
    std::string tags;
    for (const Json& t : r["tags"]) tags += (tags.empty() ? "" : ",") + t.get<std::string>();
    std::printf("%4d  %-7s %-24s %8s %9s %6d %8d  %s\n", r["id"].get<int>(), r["kind"].get<std::string>().c_str(),
                r["host"].is_string() ? r["host"].get<std::string>().c_str() : "?",
                r["pid"].is_number() ? std::to_string(r["pid"].get<int>()).c_str() : "?",
                r["functions"].is_number() ? std::to_string(r["functions"].get<int>()).c_str() : "-", r["queue"].get<int>(),
                r["done"].get<int>(), tags.empty() ? "-" : tags.c_str());
  }
  if (rows.empty()) std::printf("(no engines registered yet)\n");
  for (const Json& r : rows) {
    const Json errors = r.value("plugin_errors", Json::object());
    for (const auto& [path, why] : errors.items()) {
      std::printf("engine %d could not load the cluster's plugin %s: %s\n", r["id"].get<int>(), path.c_str(),
                  why.get<std::string>().c_str());
    }
  }
  if (Json dead = DeadRows(*client); !dead.empty()) {
    std::printf("\ndead engines (ipp engines --dead: with the end of their logs):\n");
    PrintDead(dead, /*with_logs=*/false);
  }
  return 0;
}

int Status(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  auto client = cl.ParseAndConnect(argc, argv, Usage("status [options]", "Queue status of the cluster."));
  if (!client) return cl.exit_code();
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
  // Load-balanced work no connected engine can run, by what it waits for (our controller only).
  Json waiting = s->value("waiting", Json::object());
  for (const auto& [reason, count] : waiting.items()) {
    if (!waiting.is_object() || !count.is_number_integer()) continue;
    long n = count.get<long>();
    std::printf("%ld task%s waiting for %s\n", n, n == 1 ? "" : "s", reason.c_str());
  }
  return 0;
}

int ResultCmd(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  std::vector<std::string> ids;
  AddMsgIdArguments(cl, &ids, "message ids");
  if (int rc = cl.Parse(argc, argv, Usage("result MSG_ID ...", "Fetch results from the hub's database (any client's).")); rc >= 0) return rc;
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
  CommandLine cl;
  const Common& c = cl.common;
  std::vector<std::string> ids;
  AddMsgIdArguments(cl, &ids, "message ids (none: everything queued)");
  auto client = cl.ParseAndConnect(argc, argv, Usage("abort [MSG_ID ...]",
                        "Abort requests that have not started: those named, or with no ids every request of\n"
                        "any client still queued, on the engines and in the load-balanced scheduler. They\n"
                        "are answered 'aborted' and never run; running work goes on (interrupt it with\n"
                        "Ctrl-C in its client). An id the hub has no record of is an error. --json: {\"msg_ids\": [...], \"engines\": [...]}."));
  if (!client) return cl.exit_code();
  std::vector<int> engines = client->ids();
  // The abort travels to the scheduler beside the engines' copies: with no engine, nothing carries it.
  if (engines.empty()) return Fail("no engines registered: nothing to send the abort to");
  if (!ids.empty()) {
    // The hub records every request it has seen: an id it lacks is a typo, not a success.
    auto known = client->db_query({{"msg_id", {{"$in", ids}}}}, {"msg_id"});
    if (!known.ok()) return Fail(known.status().message());
    std::string unknown;
    for (const std::string& id : ids) {
      bool found = std::any_of(known->begin(), known->end(), [&](const Json& r) { return r.value("msg_id", "") == id; });
      if (!found) unknown += (unknown.empty() ? "" : ", ") + id;
    }
    if (!unknown.empty()) return Fail("unknown message id(s): " + unknown + " (the hub has no record of them)");
  }
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
  CommandLine cl;
  const Common& c = cl.common;
  bool engines_only = false;
  cl.options.add_options()("engines-only", po::bool_switch(&engines_only), "stop the engines, keep the controller");
  auto client = cl.ParseAndConnect(argc, argv, Usage("shutdown [--engines-only]",
                        "Stop the engines and the controller. --json: {\"engines\": [...], \"controller\": bool}."));
  if (!client) return cl.exit_code();
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

}  // namespace ipp_cmd

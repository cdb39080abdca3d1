// ipcontroller: parses options, builds the Controller, runs it.
#include <iostream>

#include "common/cli.hpp"
#include "common/logging.hpp"
#include "controller/controller.hpp"
#include "schedulers/policies.hpp"

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  ipp::controller::ControllerOptions o;
  ipp::cli::ProcessOptions process("ipcontroller",
                                    "usage: ipcontroller [options] [--Class.trait=value ...]\n\n"
                                    "Start the controller (hub and schedulers) of an IPython Parallel cluster.\n"
                                    "Clients and engines find it through the connection files it writes to\n"
                                    "<profile>/security/.");
  ipp::cli::DefaultsFromEnvironment(&process.profile_dir, &process.cluster_id, &o.session_key);
  std::string ports, ping, hwm, gateway = "auto";
  const std::string scheme_help = "load-balancing scheme: " + ipp::schedulers::PolicyNameList();
  process.AddProfile("cluster id: connection files become ipcontroller-<id>-{client,engine}.json");
  process.options.add_options()
      ("ip", po::value(&o.ip)->default_value("127.0.0.1"), "interface to listen on (use '*' or 0.0.0.0 for all)")
      ("location", po::value(&o.location), "this host's address as clients and engines should see it (default: hostname)")
      ("port", po::value(&o.registration_port), "registration port (default: random free port)")
      ("ports", po::value(&ports), "pool of ports to use, e.g. 10101-10120 (default: random free ports)")
      ("ping", po::value(&ping), "heartbeat period in ms (default 3000)")
      ("hb-misses", po::value(&o.max_heartbeat_misses)->default_value(3), "missed heartbeats before an engine is dead")
      ("dictdb", "keep task records in memory (default)")
      ("sqlitedb", "keep task records in SQLite: <profile>/tasks.db (survives restarts)")
      ("nodb", "keep no task records")
      ("scheme", po::value(&o.scheme)->default_value("leastload"), scheme_help.c_str())
      ("hwm", po::value(&hwm), "max outstanding load-balanced tasks per engine (0: no limit; as TaskScheduler.hwm).\n"
                               "Default: adaptive -- one, as with 1, until tasks are seen to be short next to the\n"
                               "round trip; then enough to cover it (a few ms of queued work at most)")
      ("remembered-tasks", po::value(&o.remembered_tasks)->default_value(o.remembered_tasks),
       "finished load-balanced tasks remembered for later after/follow dependencies: at least this "
       "many of the latest, at most twice (0: all, forever)")
      ("reuse", "reuse existing connection files (same ports and key)")
      ("restore", "restore engines from the previous run's state (implies --reuse); with --task-journal also the\n"
                  "load-balanced tasks it had accepted and not answered")
      ("task-journal", "record accepted load-balanced tasks on disk, for a --restore after a crash")
      ("max-message-size", po::value(&o.max_message_size)->default_value(0),
       "bytes: peers sending a bigger frame are disconnected (0: no limit)")
      ("iopub-backlog", po::value(&o.iopub_backlog)->default_value(0),
       "IOPub messages queued per subscriber before it misses some (0: no limit)")
      ("engine-gateway", po::value(&gateway)->default_value("auto"),
       "auto|always|never: our engines connect all channels but registration through one connection\n"
       "(2 descriptors each instead of 9); auto: once half of the descriptors are in use")
      ("dashboard-ip", po::value(&o.dashboard_ip)->default_value("127.0.0.1"), "interface the dashboard's HTTP server listens on")
      ("dashboard-port", po::value(&o.dashboard_port)->default_value(0), "the dashboard's port (default: any free port)")
      ("no-dashboard", "serve no dashboard")
      ("no-ipc", "clients and engines on this host connect over TCP, as remote ones do (default: over "
                 "ipc://, in a private directory in $TMPDIR or /tmp)");
  process.AddProcess();
  if (int rc = process.Parse(argc, argv); rc >= 0) return rc;
  const po::variables_map& vm = process.vm;

  auto fail = [&process](const std::string& message) { return process.Fail(message); };
  o.profile = process.profile;
  o.profile_dir = process.profile_dir;
  o.cluster_id = process.cluster_id;
  o.work_dir = process.work_dir;
  if (!ports.empty()) {
    auto parsed = ipp::controller::ParsePortList(ports);
    if (!parsed.ok()) return fail(parsed.status().message());
    o.ports = *parsed;
  }
  if (!ping.empty()) {
    if (auto s = ipp::controller::ApplyTrait(o, "HeartMonitor.period", ping); !s.ok()) return fail(s.message());
  }
  if (vm.count("dictdb") + vm.count("sqlitedb") + vm.count("nodb") > 1) return fail("choose one of --dictdb, --sqlitedb, --nodb");
  if (vm.count("sqlitedb")) o.db = ipp::controller::DbBackend::kSqlite;
  if (vm.count("nodb")) o.db = ipp::controller::DbBackend::kNone;
  o.reuse = vm.count("reuse") > 0;
  o.restore = vm.count("restore") > 0;
  o.task_journal = vm.count("task-journal") > 0;
  o.dashboard = vm.count("no-dashboard") == 0;
  o.local_ipc = vm.count("no-ipc") == 0;
  if (auto g = ipp::controller::ParseGatewayUse(gateway); g.ok()) {
    o.gateway = *g;
  } else {
    return fail(g.status().message());
  }
  if (o.dashboard_port < 0 || o.dashboard_port > 65535) return fail("--dashboard-port must be 0..65535");
  if (auto s = ipp::controller::ApplyTrait(o, "TaskScheduler.scheme_name", o.scheme); !s.ok()) return fail(s.message());

  auto profile = ipp::protocol::ProfileDir::Resolve(o.profile, o.profile_dir);
  if (process.log_to_file) (void)profile.Ensure();
  if (auto e = process.SetUpLogging(profile.log_dir().string()); !e.empty()) return fail(e);
  auto log = ipp::MakeLogger("ipcontroller");

  // Profile config first, then --Class.trait=value arguments (the command line wins).
  for (const auto& w : ipp::controller::ApplyPythonConfig(o, (profile.root() / "ipcontroller_config.py").string())) {
    log->warn("{}", w);
  }
  for (const std::string& arg : process.traitlets) {
    size_t eq = arg.find('=');
    std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (eq == std::string::npos || name.find('.') == std::string::npos) {
      return fail("unrecognised argument '" + arg + "' (see --help)");
    }
    auto s = ipp::controller::ApplyTrait(o, name, arg.substr(eq + 1));
    if (s.code() == ipp::Status::Code::kNotFound) {
      log->warn("{}", s.message());
    } else if (!s.ok()) {
      return fail(s.message());
    }
  }

  if (vm.count("hwm")) {  // after the profile config and traits: the flag wins
    if (auto s = ipp::controller::ApplyTrait(o, "TaskScheduler.hwm", hwm); !s.ok()) return fail(s.message());
  }

  ipp::controller::Controller controller(o);
  // Before Start(), which writes the connection and dashboard files: a SIGTERM from then on
  // only sets the flag Run() checks, and Run() removes them (the default action left them).
  ipp::cli::StopOnSignals(&controller);
  if (auto s = controller.Start(); !s.ok()) {
    ipp::cli::StopOnSignals<ipp::controller::Controller>(nullptr);
    return fail(s.message());
  }
  int code = controller.Run();
  ipp::cli::StopOnSignals<ipp::controller::Controller>(nullptr);
  return code;
}

// ipcluster: start, stop, list, grow and clean clusters (controller + engines).
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "common/cli.hpp"
#include "common/logging.hpp"
#include "ipp/client.hpp"
#include "launchers/cluster.hpp"
#include "launchers/config.hpp"
#include "launchers/launcher.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/profile_dir.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using ipp::launchers::Json;

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_stop_signal{0};
void OnSignal(int signal) {
  g_stop_signal.store(signal);
  g_stop.store(true);
}

int Fail(const std::string& message) {
  std::cerr << "ipcluster: " << message << std::endl;
  return 1;
}

// What every command parses: the profile and cluster id, beside its own options.
struct Common {
  std::string profile = "default", profile_dir, cluster_id;
  po::options_description options{"Options"};
  po::variables_map vm;

  Common() {
    options.add_options()("profile", po::value(&profile)->default_value("default"), "profile name")
        ("profile-dir", po::value(&profile_dir), "explicit profile directory")
        ("cluster-id", po::value(&cluster_id)->default_value(""), "cluster id (several clusters per profile)");
  }
  // As ipp::cli::Parse: -1 to go on, else the exit code.
  int Parse(int argc, char** argv, const std::string& usage, std::vector<std::string>* traitlets = nullptr) {
    return ipp::cli::Parse(argc, argv, usage, options, vm, traitlets);
  }
  ipp::protocol::ProfileDir Profile() const { return ipp::protocol::ProfileDir::Resolve(profile, profile_dir); }
};

// Of the arguments `ipcluster start` did not recognize, ipyparallel's `--Class.trait=value`
// settings and its other ipcluster options are ignored with a warning, so that a command written
// for the stock ipcluster still starts a cluster; anything else is a typo and an error (exit 2),
// as in our other programs. Returns -1 to go on.
int JudgeUnrecognized(const std::vector<std::string>& args) {
  static const std::set<std::string> kStockOptions = {
      "all", "clean-logs", "config", "debug", "delay", "force", "init", "ipython-dir", "location", "log-level",
      "log-to-file", "log-url", "quiet", "show-config", "show-config-json", "signal", "work-dir"};
  std::vector<std::string> ignored;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string name = arg.substr(0, arg.find('='));
    bool trait = name.rfind("--", 0) == 0 && name.find('.') != std::string::npos;
    bool stock = name.rfind("--", 0) == 0 && kStockOptions.count(name.substr(2));
    if (!trait && !stock) {
      std::cerr << "ipcluster: unrecognised option '" << arg << "'\n(see ipcluster start --help)" << std::endl;
      return 2;
    }
    ignored.push_back(arg);
    // Traitlets also takes "--log-level DEBUG": the value is the next word.
    if (name == arg && i + 1 < args.size() && args[i + 1].rfind("-", 0) != 0) ignored.back() += " " + args[++i];
  }
  for (const auto& arg : ignored) std::cerr << "ipcluster: " << arg << " is not supported; ignored" << std::endl;
  return -1;
}

Json LoadConfig(const ipp::protocol::ProfileDir& p, std::string* error) {
  auto config = ipp::launchers::LoadClusterConfig(p.root() / "ipcluster_config.json");
  if (config.ok()) return *config;
  *error = config.status().message();
  return Json::object();
}

// Where a daemonized ipcluster (the process that supervises the cluster) logs.
fs::path OwnLog(const ipp::protocol::ProfileDir& p, const std::string& cluster_id) {
  return p.log_dir() / ("ipcluster-" + (cluster_id.empty() ? "" : cluster_id + "-") + std::to_string(getpid()) + ".log");
}

std::chrono::milliseconds Seconds(double seconds) { return std::chrono::milliseconds(static_cast<long>(seconds * 1000)); }

// --daemonize: the cluster runs under a daemon, our child, which reaps its processes and so
// knows how any of them ends. We relay its start-up: it writes to our stdout and stderr until
// the cluster is up, then one byte on `ready`, and detaches. Its exit status is ours otherwise.
int AwaitDaemon(pid_t daemon, int ready) {
  std::signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the daemon too (same group): it cleans up and tells us
  char byte = 0;
  ssize_t n;
  do n = read(ready, &byte, 1); while (n < 0 && errno == EINTR);
  if (n == 1) return 0;
  int status = 0;
  while (waitpid(daemon, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

// In the daemon once the cluster is up: leave the terminal's session, log to `own_log`, release
// the waiting `ipcluster start`.
void Detach(const fs::path& own_log, int ready) {
  setsid();
  int fd = ::open(own_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) dup2(devnull, 0);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    ::close(fd);
  } else if (devnull >= 0) {
    dup2(devnull, 1);
    dup2(devnull, 2);
  }
  if (devnull >= 0) ::close(devnull);
  char byte = 1;
  if (write(ready, &byte, 1) != 1) {}  // the front may be gone: nothing to tell then
  ::close(ready);
}

// ---------------------------------------------------------------------------------------------

// The URL (with its token) in the dashboard file a running controller wrote; "" when none.
std::string DashboardUrl(const fs::path& security_dir, const std::string& cluster_id) {
  std::ifstream in(security_dir / ipp::protocol::ConnectionFileName("dashboard", cluster_id));
  Json j = Json::parse(in, nullptr, false);
  return j.is_object() && j.value("url", Json()).is_string() ? j["url"].get<std::string>() : "";
}

// --env NAME=VALUE (repeatable) over `environment` (what the config file set).
std::string AddEnvironment(const std::vector<std::string>& assignments, std::map<std::string, std::string>& environment) {
  for (const auto& a : assignments) {
    size_t eq = a.find('=');
    std::string name = a.substr(0, eq);
    if (eq == std::string::npos || !ipp::launchers::IsEnvironmentName(name)) {
      return "--env wants NAME=VALUE with NAME of letters, digits and _ (not starting with a digit), not '" + a + "'";
    }
    environment[name] = a.substr(eq + 1);
  }
  return "";
}

int Start(int argc, char** argv) {
  Common c;
  int n = 0;
  double timeout = 60;
  std::string engines_kind, controller_kind, ip;
  std::vector<std::string> engine_args, controller_args, env;
  ipp::launchers::AdaptLimits adapt;
  double idle_timeout = 300;
  int max_restarts = 5;
  double restart_window = 600, restart_backoff = 1;
  c.options.add_options()("n,n", po::value(&n), "number of engines (default: the number of CPUs; with --adapt the default --max-engines)")
      ("adapt", "elastic: submit jobs of engines while tasks wait, cancel them once idle (Local, Slurm, SGE, PBS)")
      ("min-engines", po::value(&adapt.min_engines), "--adapt: engines kept even when idle (default 0)")
      ("max-engines", po::value(&adapt.max_engines), "--adapt: at most this many engines (default: -n)")
      ("engines-per-job", po::value(&adapt.engines_per_job), "--adapt: engines per job (default 1 for Local, 8 for batch)")
      ("idle-timeout", po::value(&idle_timeout), "--adapt: seconds a job's engines stay idle before it is cancelled (default 300)")
      ("max-queued-jobs", po::value(&adapt.max_queued_jobs), "--adapt: jobs waiting in the batch queue at once, at most (default 2)")
      ("max-failed-jobs", po::value(&adapt.max_failed_jobs), "--adapt: failed submissions or jobs that never start, in a row, before submitting stops (default 3)")
      ("engines", po::value(&engines_kind), "engine launcher: Local (default), MPI, SSH, Slurm, PBS, SGE, LSF, HTCondor")
      ("controller", po::value(&controller_kind), "controller launcher: Local (default), Slurm, PBS, SGE, LSF, HTCondor")
      ("ip", po::value(&ip), "interface the controller listens on (default 127.0.0.1)")
      ("daemonize", "return once the cluster is up, leaving it running")
      ("timeout", po::value(&timeout)->default_value(60), "seconds to wait for the engines to register")
      ("engine-arg", po::value(&engine_args)->composing(), "extra ipengine argument (repeatable), e.g. --engine-arg=--load=/x.so")
      ("controller-arg", po::value(&controller_args)->composing(), "extra ipcontroller argument (repeatable)")
      ("env", po::value(&env)->composing(), "NAME=VALUE set for every process launched (repeatable; over config \"environment\")")
      ("max-restarts", po::value(&max_restarts)->default_value(5),
       "an engine process (Local, SSH; an MPI set as a whole) or the controller that exits or is killed is started "
       "again, at most this many times per engine (or controller) within --restart-window (then it is left dead and "
       "the refusal is logged)")
      ("restart-window", po::value(&restart_window)->default_value(600), "seconds: the window of --max-restarts")
      ("restart-backoff", po::value(&restart_backoff)->default_value(1),
       "seconds before the first restart; doubled for each further restart within the window (at most 60)")
      ("no-restart", "leave engines that exit or are killed, and a controller that dies, dead");
  std::vector<std::string> traitlets;
  int rc = c.Parse(argc, argv,
                   "usage: ipcluster start [-n N] [--engines KIND] [--controller KIND] [--daemonize] [--adapt ...]\n\n"
                   "Start a controller and N engines; return (--daemonize) or stay in the foreground\n"
                   "once all N engines have registered. Ctrl-C in the foreground stops the cluster.\n"
                   "--adapt: no engines at first; jobs of --engines-per-job engines are submitted\n"
                   "while tasks wait (up to --max-engines) and cancelled once idle for --idle-timeout.\n"
                   "Launcher settings (mpiexec, SSH hosts, batch queue/account/walltime, job templates)\n"
                   "come from <profile>/ipcluster_config.json; options here override it.\n\n"
                   "Engines that exit or are killed are replaced (a new engine to the controller), with a\n"
                   "backoff and a limit; not those that exit with status 0 (ipp shutdown) nor those\n"
                   "stopped by ipcluster stop or Ctrl-C. Under mpiexec one dead rank ends the whole MPI\n"
                   "job: the whole set is restarted, as one engine slot. How each engine process ended\n"
                   "is in ipcluster's log, ipcluster list, ipp engines and the dashboard.",
                   &traitlets);
  if (rc >= 0) return rc;
  if (int bad = JudgeUnrecognized(traitlets); bad >= 0) return bad;
  auto profile = c.Profile();
  if (auto s = profile.Ensure(); !s.ok()) return Fail(s.message());
  std::string error;
  Json cfg = LoadConfig(profile, &error);
  if (!error.empty()) return Fail(error);
  if (!c.vm.count("n")) n = cfg.value("n", static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (n < 1) return Fail("-n must be at least 1 (a cluster without engines: run ipcontroller)");
  if (engines_kind.empty()) engines_kind = cfg.value("engines", std::string("Local"));
  const bool adaptive = c.vm.count("adapt") > 0 || cfg.value("adapt", false);
  if (adaptive) {
    // The command line wins over ipcluster_config.json, which uses the names with '_'.
    auto setting = [&](const char* flag, const char* key, auto* value) {
      if (!c.vm.count(flag) && cfg.contains(key)) *value = cfg[key].get<std::remove_pointer_t<decltype(value)>>();
    };
    setting("min-engines", "min_engines", &adapt.min_engines);
    setting("engines-per-job", "engines_per_job", &adapt.engines_per_job);
    setting("idle-timeout", "idle_timeout", &idle_timeout);
    setting("max-queued-jobs", "max_queued_jobs", &adapt.max_queued_jobs);
    setting("max-failed-jobs", "max_failed_jobs", &adapt.max_failed_jobs);
    if (!c.vm.count("max-engines")) adapt.max_engines = cfg.value("max_engines", n);
    if (!c.vm.count("engines-per-job") && !cfg.contains("engines_per_job")) {
      adapt.engines_per_job = ipp::launchers::CanonicalKind(engines_kind) == "Local" ? 1 : 8;
    }
    adapt.idle_timeout = Seconds(idle_timeout);
    if (adapt.min_engines < 0 || adapt.max_engines < 1 || adapt.min_engines > adapt.max_engines || adapt.engines_per_job < 1 ||
        adapt.max_queued_jobs < 1 || adapt.max_failed_jobs < 1 || idle_timeout < 0) {
      return Fail("--adapt needs 0 <= --min-engines <= --max-engines, --max-engines, --engines-per-job, --max-queued-jobs and --max-failed-jobs at least 1, --idle-timeout >= 0");
    }
  }
  if (controller_kind.empty()) controller_kind = cfg.value("controller", std::string("Local"));
  auto ctx = ipp::launchers::ContextFor(profile, c.cluster_id, cfg);
  if (!ip.empty()) ctx.controller_args.push_back("--ip=" + ip);
  ctx.controller_args.insert(ctx.controller_args.end(), controller_args.begin(), controller_args.end());
  ctx.engine_args.insert(ctx.engine_args.end(), engine_args.begin(), engine_args.end());
  if (std::string bad = AddEnvironment(env, ctx.environment); !bad.empty()) return Fail(bad);
  // Restart limits: the command line, else the config file, else the defaults.
  if (c.vm["max-restarts"].defaulted()) max_restarts = cfg.value("max_restarts", max_restarts);
  if (c.vm["restart-window"].defaulted()) restart_window = cfg.value("restart_window", restart_window);
  if (c.vm["restart-backoff"].defaulted()) restart_backoff = cfg.value("restart_backoff", restart_backoff);
  if (max_restarts < 0 || restart_window < 0 || restart_backoff < 0) return Fail("--max-restarts, --restart-window and --restart-backoff must be >= 0");
  ctx.restart.enabled = !c.vm.count("no-restart") && !cfg.value("no_restart", false);
  ctx.restart.max_restarts = max_restarts;
  ctx.restart.window = Seconds(restart_window);
  ctx.restart.initial_backoff = Seconds(restart_backoff);

  ipp::launchers::Cluster cluster(ctx, g_stop);
  if (auto s = cluster.ClaimFiles(); !s.ok()) return Fail(s.message());

  bool daemonize = c.vm.count("daemonize") > 0;
  int ready[2] = {-1, -1};
  if (daemonize) {
    if (pipe2(ready, O_CLOEXEC) != 0) return Fail("cannot create a pipe");
    pid_t daemon = fork();
    if (daemon < 0) return Fail("cannot fork");
    if (daemon > 0) {
      ::close(ready[1]);
      return AwaitDaemon(daemon, ready[0]);
    }
    ::close(ready[0]);
  }

  if (adaptive) {  // refused before anything starts
    auto probe = ipp::launchers::MakeEngineLauncher(engines_kind, ctx);
    if (!probe.ok()) return Fail(probe.status().message());
    if (auto s = (*probe)->CanSubmitJobs(); !s.ok()) return Fail("--adapt: " + s.message());
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const auto started = std::chrono::steady_clock::now();  // "started with N engines in T s"
  if (auto s = cluster.StartController(controller_kind, Seconds(timeout)); !s.ok()) return Fail(s.message());
  if (auto s = adaptive ? cluster.StartAdaptive(engines_kind, adapt) : cluster.StartEngines(engines_kind, n); !s.ok()) {
    cluster.StopAll();  // the controller kept its connection files for a restart: not now
    if (!g_stop_signal.load()) return Fail(s.message());
    Fail(s.message() + ": what had started is stopped");
    return 128 + g_stop_signal.load();
  }
  if (adaptive) n = 0;  // none launched yet: the adapter submits them from Supervise
  Json description = cluster.Describe(n);
  description["engine_args"] = engine_args;  // for the engines `ipcluster engines` adds later
  description["env"] = env;
  fs::path own_log = OwnLog(profile, c.cluster_id);
  if (daemonize) description["ipcluster_log"] = own_log.string();
  if (auto s = cluster.Save(description); !s.ok()) std::cerr << "ipcluster: " << s.message() << std::endl;
  ipp::launchers::Cluster::Refused refused;
  if (auto s = cluster.WaitForEngines(static_cast<size_t>(n), Seconds(timeout), 0, &refused); !s.ok()) {
    cluster.StopAll();
    description.erase("ipcluster_log");  // the daemon never got to write it
    return Fail(s.message() + "\n" + ipp::launchers::LogLine(ipp::launchers::LogsOf(description)));
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!refused.why.empty()) {
    std::cerr << "ipcluster: warning: " << refused.why << std::endl;
    // In the cluster file before we return: `ipcluster list` right after says how they ended.
    cluster.SaveEngineSets(ipp::MakeLogger("ipcluster"));
    n = static_cast<int>(refused.registered);
  }
  std::cout << "ipcluster: cluster" << (c.cluster_id.empty() ? "" : " " + c.cluster_id) << " started with "
            << (adaptive ? std::to_string(adapt.min_engines) + " to " + std::to_string(adapt.max_engines) + " engine(s) on demand, " +
                               std::to_string(adapt.engines_per_job) + " per " + engines_kind + " job (--adapt)"
                         : std::to_string(n) + " engine(s) (" + std::to_string(cluster.engine_sets()) + " " + engines_kind + " set)")
            << " in " << std::fixed << std::setprecision(secs < 10 ? 2 : 1) << secs << std::defaultfloat
            << " s; profile " << profile.root().string() << "\nipcluster: "
            << ipp::launchers::LogLine(ipp::launchers::LogsOf(description)) << std::endl;
  if (std::string url = DashboardUrl(profile.security_dir(), c.cluster_id); !url.empty()) {
    std::cout << "dashboard: " << url << std::endl;
  }
  if (daemonize) {
    Detach(own_log, ready[1]);
  } else {
    std::cout << "ipcluster: running in the foreground; Ctrl-C stops the cluster" << std::endl;
  }
  cluster.Supervise(ipp::MakeLogger("ipcluster"));
  std::cout << "ipcluster: stopping the cluster" << std::endl;
  cluster.StopAll();
  // Stopped by Ctrl-C or SIGTERM: the shell's convention for a process ended by that signal.
  return g_stop_signal.load() ? 128 + g_stop_signal.load() : 0;
}

int Stop(int argc, char** argv) {
  Common c;
  if (int rc = c.Parse(argc, argv, "usage: ipcluster stop [--profile NAME] [--cluster-id ID]\n\nStop everything the cluster's ipcluster start launched."); rc >= 0) return rc;
  auto profile = c.Profile();
  std::string error;
  ipp::launchers::Cluster cluster(ipp::launchers::ContextFor(profile, c.cluster_id, LoadConfig(profile, &error)), g_stop);
  if (auto s = cluster.Load(); !s.ok()) return Fail(s.message());
  cluster.StopOwner(std::chrono::seconds(15));
  // Whatever it left, or all of it when it is gone.
  cluster.Stop();
  cluster.RemoveFile();
  std::cout << "ipcluster: stopped" << (c.cluster_id.empty() ? "" : " cluster " + c.cluster_id) << std::endl;
  return 0;
}

// What `ipcluster list` says about one cluster file: the controller's state, the engines the
// controller has registered (asked with a short timeout), the engine processes launched and
// how those that ended did.
Json DescribeCluster(const fs::path& profile_dir, const Json& j) {
  auto processes = j["controller"]["state"].value("processes", Json::array());
  bool running = !processes.empty() && ipp::launchers::ProcessAlive(processes[0].value("pid", 0));
  std::string cluster_id = j["cluster"].value("cluster_id", "");
  Json exited = Json::array();
  for (const auto& set : j["engines"].value("sets", Json::array())) {
    for (const auto& proc : set["state"].value("processes", Json::array())) {
      pid_t pid = proc.value("pid", 0);
      if (proc.contains("exit")) {
        exited.push_back({{"pid", pid}, {"how", proc["exit"]}});
      } else if (!ipp::launchers::ProcessAlive(pid)) {
        exited.push_back({{"pid", pid}, {"how", "exited"}});
      }
    }
  }
  Json registered = nullptr;
  if (running) {
    ipp::ClientOptions o = ipp::ClientOptions::ProfileDir(profile_dir.string(), cluster_id);
    o.timeout = std::chrono::milliseconds(1500);
    auto client = ipp::Client::Connect(o);
    if (client.ok()) registered = (*client)->ids().size();
  }
  // A profile in $IPYTHONDIR is profile_<name>; one given by --profile-dir is named by its path.
  std::string name = profile_dir.filename().string();
  std::string profile = name.rfind("profile_", 0) == 0 ? name.substr(8) : profile_dir.string();
  Json row = {{"profile", profile}, {"cluster_id", cluster_id},
          {"engines", j["cluster"].value("n", 0)}, {"running", running},
          {"controller", j["controller"].value("class", "")}, {"registered", registered}, {"exited", exited},
          {"logs", ipp::launchers::LogsOf(j)},
          {"dashboard", running ? Json(DashboardUrl(profile_dir / "security", cluster_id)) : Json()}};
  if (j.contains("adapt")) row["adapt"] = j["adapt"];  // --adapt: its jobs and why submitting stopped
  // The ipcluster process that restarts what dies (and adapts): a running cluster whose
  // supervisor was killed goes on, but nothing is restarted any more.
  if (pid_t supervisor = j.value("ipcluster_pid", 0); running && supervisor > 0) {
    row["supervisor_pid"] = supervisor;
    row["supervised"] = ipp::launchers::ProcessAlive(supervisor);
  }
  // Engine processes ipcluster started again: only when there were any.
  if (int restarts = j.value("restarts", 0); restarts > 0) row["restarts"] = restarts;
  if (int given_up = j.value("given_up", 0); given_up > 0) row["given_up"] = given_up;
  return row;
}

int List(int argc, char** argv) {
  po::options_description o("Options");
  bool json = false;
  std::string profile_dir;
  o.add_options()("json", po::bool_switch(&json), "JSON output")
      ("profile-dir", po::value(&profile_dir), "list this profile directory's clusters only");
  po::variables_map vm;
  if (int rc = ipp::cli::Parse(argc, argv,
                               "usage: ipcluster list [--profile-dir DIR]\n\nList the clusters of every profile in $IPYTHONDIR (or of the profile directory\n"
                               "given): for each, the engines its controller has registered beside those\n"
                               "launched, how any engine process ended, how many were restarted, and where\n"
                               "the logs are.",
                               o, vm);
      rc >= 0) {
    return rc;
  }
  std::vector<fs::path> profiles;
  std::error_code ec;
  if (!profile_dir.empty()) {
    if (!fs::is_directory(profile_dir)) return Fail("no profile directory " + profile_dir);
    profiles.push_back(fs::absolute(profile_dir));
  } else {
    for (const auto& entry : fs::directory_iterator(ipp::protocol::IpythonDir(), ec)) {
      if (entry.path().filename().string().rfind("profile_", 0) == 0) profiles.push_back(entry.path());
    }
  }
  Json rows = Json::array();
  for (const auto& dir : profiles) {
    for (const auto& f : fs::directory_iterator(dir / "security", ec)) {
      std::string name = f.path().filename().string();
      if (name.rfind("cluster-", 0) != 0 || f.path().extension() != ".json") continue;
      std::ifstream in(f.path());
      Json j = Json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      rows.push_back(DescribeCluster(dir, j));
    }
  }
  if (json) {
    std::cout << rows.dump() << std::endl;
    return 0;
  }
  std::printf("%-16s %-16s %-8s  %s\n", "PROFILE", "CLUSTER ID", "STATE", "ENGINES");
  for (const auto& r : rows) {
    std::string engines;
    if (!r["running"].get<bool>()) {
      engines = std::to_string(r["engines"].get<int>()) + " launched";
    } else if (r["registered"].is_null()) {
      engines = "? registered (controller not answering) / " + std::to_string(r["engines"].get<int>()) + " launched";
    } else {
      engines = std::to_string(r["registered"].get<size_t>()) + " registered / " + std::to_string(r["engines"].get<int>()) + " launched";
    }
    if (!r["exited"].empty()) {
      // Grouped by how they ended, a few pids each: a thousand engines the controller refused
      // are one entry, not a thousand.
      std::vector<std::pair<std::string, std::vector<pid_t>>> by_how;
      for (const auto& e : r["exited"]) {
        const std::string how = e["how"].get<std::string>();
        auto group = std::find_if(by_how.begin(), by_how.end(), [&](const auto& g) { return g.first == how; });
        if (group == by_how.end()) group = by_how.insert(by_how.end(), {how, {}});
        group->second.push_back(e["pid"].get<pid_t>());
      }
      engines += " (" + std::to_string(r["exited"].size()) + " exited:";
      for (size_t i = 0; i < by_how.size(); ++i) {
        const auto& [how, pids] = by_how[i];
        engines += std::string(i ? ";" : "") + (pids.size() == 1 ? " pid " : " pids ");
        for (size_t k = 0; k < std::min<size_t>(pids.size(), 3); ++k) engines += (k ? ", " : "") + std::to_string(pids[k]);
        if (pids.size() > 3) engines += " and " + std::to_string(pids.size() - 3) + " more";
        engines += " " + how;
      }
      engines += ")";
    }
    if (int restarts = r.value("restarts", 0); restarts > 0) {
      engines += ", " + std::to_string(restarts) + " restarted";
    }
    if (int given_up = r.value("given_up", 0); given_up > 0) {
      engines += ", " + std::to_string(given_up) + " given up after the restart limit (ipcluster's log says why)";
    }
    std::printf("%-16s %-16s %-8s  %s\n", r["profile"].get<std::string>().c_str(), r["cluster_id"].get<std::string>().c_str(),
                r["running"].get<bool>() ? "running" : "stopped", engines.c_str());
    std::printf("  %s\n", ipp::launchers::LogLine(r["logs"]).c_str());
    if (r.contains("supervised") && !r["supervised"].get<bool>()) {
      std::printf("  UNSUPERVISED: its ipcluster (pid %d) is gone, so nothing that dies is restarted; "
                  "ipcluster stop still stops the cluster\n", r["supervisor_pid"].get<int>());
    }
    if (const Json& a = r.value("adapt", Json()); a.is_object()) {
      std::printf("  adapt: %d to %d engines, %d per job, %zu job(s) now, idle timeout %d s\n", a.value("min_engines", 0),
                  a.value("max_engines", 0), a.value("engines_per_job", 0), a.value("jobs", Json::array()).size(),
                  a.value("idle_timeout", 0));
      if (a.contains("stopped")) std::printf("  adapt STOPPED SUBMITTING: %s\n", a["stopped"].get<std::string>().c_str());
      for (const auto& f : a.value("recent_failures", Json::array())) std::printf("    %s\n", f.get<std::string>().c_str());
    }
    if (r["dashboard"].is_string() && !r["dashboard"].get<std::string>().empty()) {
      std::printf("  dashboard: %s\n", r["dashboard"].get<std::string>().c_str());
    }
  }
  return 0;
}

int Engines(int argc, char** argv) {
  Common c;
  int n = 1;
  double timeout = 60;
  std::string kind;
  std::vector<std::string> engine_args;
  c.options.add_options()("n,n", po::value(&n)->default_value(1), "engines to add")
      ("engines", po::value(&kind), "engine launcher (default: as configured, else Local)")
      ("timeout", po::value(&timeout)->default_value(60), "seconds to wait for them to register")
      ("engine-arg", po::value(&engine_args)->composing(), "extra ipengine argument (repeatable)");
  if (int rc = c.Parse(argc, argv, "usage: ipcluster engines -n N\n\nAdd engines to a running cluster, with the --engine-arg of its start and these."); rc >= 0) return rc;
  auto profile = c.Profile();
  std::string error;
  Json cfg = LoadConfig(profile, &error);
  if (!error.empty()) return Fail(error);
  auto ctx = ipp::launchers::ContextFor(profile, c.cluster_id, cfg);
  std::vector<std::string> start_args, start_env;
  {
    ipp::launchers::Cluster recorded(ctx, g_stop);
    if (auto s = recorded.Load(); !s.ok()) return Fail(s.message());
    start_args = recorded.recorded().value("engine_args", std::vector<std::string>{});
    start_env = recorded.recorded().value("env", std::vector<std::string>{});
  }
  AddEnvironment(start_env, ctx.environment);  // checked when the cluster started
  // The added engines are like the first ones: the start's --engine-arg, then ours.
  ctx.engine_args.insert(ctx.engine_args.end(), start_args.begin(), start_args.end());
  ctx.engine_args.insert(ctx.engine_args.end(), engine_args.begin(), engine_args.end());
  ipp::launchers::Cluster cluster(ctx, g_stop);
  if (auto s = cluster.Load(); !s.ok()) return Fail(s.message());
  if (kind.empty()) kind = cfg.value("engines", std::string("Local"));
  size_t before = 0;
  {
    auto client = ipp::Client::Connect(ipp::ClientOptions::ProfileDir(profile.root().string(), c.cluster_id));
    if (!client.ok()) return Fail(client.status().message());
    before = (*client)->ids().size();
  }
  const size_t new_set = cluster.engine_sets();
  if (auto s = cluster.StartEngines(kind, n); !s.ok()) return Fail(s.message());
  // Appended to the file as it is now (the supervisor may have changed it since we read it),
  // at a place that stays ours: sets are only ever appended.
  const ipp::launchers::Launcher& added = cluster.engine_set(new_set);
  size_t at = 0;
  ipp::Status recorded = cluster.Update([&](Json& j) {
    Json& sets = j["engines"]["sets"];
    if (!sets.is_array()) sets = Json::array();
    sets.push_back(ipp::launchers::Cluster::DescribeSet(added));
    at = sets.size() - 1;
    j["cluster"]["n"] = j["cluster"].value("n", 0) + n;
  });
  if (!recorded.ok()) {
    if (auto s = cluster.StopEngineSet(new_set); !s.ok()) std::cerr << "ipcluster: " << s.message() << std::endl;
    return Fail(recorded.message());
  }
  ipp::launchers::Cluster::Refused refused;
  ipp::Status waited = cluster.WaitForEngines(before + static_cast<size_t>(n), Seconds(timeout), new_set, &refused);
  // How the added engines that ended did: they are not the supervising ipcluster's children,
  // so it (and `ipcluster list`) could only see them gone.
  ipp::Status ended = cluster.Update([&](Json& j) {
    Json& sets = j["engines"]["sets"];
    if (sets.is_array() && at < sets.size()) sets[at] = ipp::launchers::Cluster::DescribeSet(added);
  });
  if (!ended.ok() && ended.code() != ipp::Status::Code::kNotFound) std::cerr << "ipcluster: " << ended.message() << std::endl;
  if (!waited.ok()) return Fail(waited.message());
  if (!refused.why.empty()) {
    if (refused.registered <= before) return Fail(refused.why);
    std::cerr << "ipcluster: warning: " << refused.why << std::endl;
    n = static_cast<int>(refused.registered - before);
  }
  std::cout << "ipcluster: added " << n << " engine(s); logs: " << cluster.engine_set(new_set).LogLocation() << std::endl;
  return 0;
}

// Whether a TCP connection to the url's host and port is accepted within a second; true for
// any other transport and for a host that does not resolve here (not ours to judge).
bool SomethingListens(const std::string& url) {
  if (url.rfind("tcp://", 0) != 0) return true;
  size_t colon = url.rfind(':');
  std::string host = url.substr(6, colon - 6), port = url.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "*" || host == "0.0.0.0") host = "127.0.0.1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return true;
  bool listens = false;
  for (addrinfo* a = found; a && !listens; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      listens = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int error = 0;
      socklen_t len = sizeof error;
      listens = poll(&p, 1, 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0;
    }
    ::close(fd);
  }
  freeaddrinfo(found);
  return listens;
}

// Connection files no cluster file accounts for (a controller run by hand, or one killed under
// an ipcluster that could not remove them) whose controller no longer listens: removed, so that
// clients and engines fail at once instead of waiting for it. Returns how many.
int RemoveStaleConnectionFiles(const ipp::protocol::ProfileDir& profile) {
  int removed = 0;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(profile.security_dir(), ec)) {
    std::string name = f.path().filename().string();
    if (name.rfind("ipcontroller-", 0) != 0 || f.path().extension() != ".json") continue;
    std::string rest = name.substr(13, name.size() - 13 - 5);  // "[<id>-]client" or "[<id>-]engine"
    size_t dash = rest.rfind('-');
    std::string role = dash == std::string::npos ? rest : rest.substr(dash + 1);
    std::string id = dash == std::string::npos ? "" : rest.substr(0, dash);
    if (role != "client" || fs::exists(profile.security_dir() / ("cluster-" + id + ".json"))) continue;
    auto info = ipp::protocol::ReadConnectionFile(f.path());
    auto url = info.ok() ? info->url("registration") : ipp::Result<std::string>(info.status());
    if (url.ok() && SomethingListens(*url)) continue;
    for (const char* r : {"client", "engine", "dashboard"}) {
      removed += fs::remove(profile.security_dir() / ipp::protocol::ConnectionFileName(r, id), ec) ? 1 : 0;
    }
  }
  return removed;
}

int Clean(int argc, char** argv) {
  Common c;
  if (int rc = c.Parse(argc, argv, "usage: ipcluster clean\n\nRemove the files of stopped clusters (cluster and connection files), connection\n"
                                   "files whose controller no longer listens, and old logs."); rc >= 0) return rc;
  auto profile = c.Profile();
  std::error_code ec;
  int removed = 0;
  for (const auto& f : fs::directory_iterator(profile.security_dir(), ec)) {
    std::string name = f.path().filename().string();
    if (name.rfind("cluster-", 0) != 0) continue;
    std::ifstream in(f.path());
    Json j = Json::parse(in, nullptr, false);
    auto processes = j.is_discarded() ? Json::array() : j["controller"]["state"].value("processes", Json::array());
    if (!processes.empty() && ipp::launchers::ProcessAlive(processes[0].value("pid", 0))) continue;
    std::string id = j.is_discarded() ? "" : j["cluster"].value("cluster_id", "");
    fs::remove(f.path(), ec);
    for (const char* role : {"client", "engine", "dashboard"}) fs::remove(profile.security_dir() / ipp::protocol::ConnectionFileName(role, id), ec);
    ++removed;
  }
  int stale = RemoveStaleConnectionFiles(profile);
  for (const auto& f : fs::directory_iterator(profile.log_dir(), ec)) {
    if (f.path().extension() == ".log") fs::remove(f.path(), ec);
  }
  std::cout << "ipcluster: removed the files of " << removed << " stopped cluster(s), " << stale
            << " stale connection file(s) and the logs in " << profile.log_dir().string() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return ipp::cli::RunSubcommand(argc, argv, "ipcluster", {
      {"start", {Start, "start a controller and engines"}},
      {"stop", {Stop, "stop a cluster"}},
      {"list", {List, "list clusters"}},
      {"engines", {Engines, "add engines to a running cluster"}},
      {"clean", {Clean, "remove files of stopped clusters"}},
  });
}

// ipcluster: start, stop, list, grow and clean clusters (controller + engines).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "common/cli.hpp"
#include "common/logging.hpp"
#include "ipp/client.hpp"
#include "launchers/config.hpp"
#include "launchers/launcher.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/profile_dir.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using ipp::launchers::Json;

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

int Fail(const std::string& message) {
  std::cerr << "ipcluster: " << message << std::endl;
  return 1;
}

struct Common {
  std::string profile = "default", profile_dir, cluster_id;
};

void AddCommon(po::options_description& o, Common& c) {
  o.add_options()("profile", po::value(&c.profile)->default_value("default"), "profile name")
      ("profile-dir", po::value(&c.profile_dir), "explicit profile directory")
      ("cluster-id", po::value(&c.cluster_id)->default_value(""), "cluster id (several clusters per profile)");
}

fs::path ClusterFile(const ipp::protocol::ProfileDir& p, const std::string& id) {
  return p.security_dir() / ("cluster-" + id + ".json");
}

fs::path BinDir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : self.parent_path();
}

Json LoadConfig(const ipp::protocol::ProfileDir& p, std::string* error) {
  auto config = ipp::launchers::LoadClusterConfig(p.root() / "ipcluster_config.json");
  if (config.ok()) return *config;
  *error = config.status().message();
  return Json::object();
}

ipp::launchers::LaunchContext Context(const ipp::protocol::ProfileDir& p, const std::string& cluster_id, const Json& cfg) {
  ipp::launchers::LaunchContext c;
  c.profile_dir = p.root();
  c.cluster_id = cluster_id;
  c.bin_dir = BinDir();
  c.log_dir = p.log_dir();
  c.config = cfg;
  for (const auto& a : cfg.value("controller_args", Json::array())) c.controller_args.push_back(a.get<std::string>());
  for (const auto& a : cfg.value("engine_args", Json::array())) c.engine_args.push_back(a.get<std::string>());
  return c;
}

struct Cluster {
  Json file;  // as saved
  std::unique_ptr<ipp::launchers::Launcher> controller;
  std::vector<std::unique_ptr<ipp::launchers::Launcher>> engine_sets;
};

Json Describe(const Cluster& c, const ipp::launchers::LaunchContext& ctx, int n) {
  Json sets = Json::array();
  for (const auto& s : c.engine_sets) {
    sets.push_back({{"class", s->kind()}, {"state", s->State()}, {"logs", s->LogLocation()}});
  }
  Json controller = {{"class", c.controller ? c.controller->kind() : ""}, {"state", c.controller ? c.controller->State() : Json()}};
  if (c.controller) controller["logs"] = c.controller->LogLocation();
  return {{"cluster", {{"profile_dir", ctx.profile_dir.string()}, {"cluster_id", ctx.cluster_id}, {"n", n}}},
          {"controller", controller},
          {"engines", {{"sets", sets}}},
          {"ipcluster_pid", getpid()}};
}

// Where a daemonized ipcluster (the process that supervises the cluster) logs.
fs::path OwnLog(const ipp::protocol::ProfileDir& p, const std::string& cluster_id) {
  return p.log_dir() / ("ipcluster-" + (cluster_id.empty() ? "" : cluster_id + "-") + std::to_string(getpid()) + ".log");
}

// Where a cluster's processes log, from its cluster file.
Json LogsOf(const Json& file) {
  Json logs = {{"controller", file["controller"].value("logs", "")}, {"engines", Json::array()}};
  for (const auto& set : file["engines"].value("sets", Json::array())) logs["engines"].push_back(set.value("logs", ""));
  if (file.contains("ipcluster_log")) logs["ipcluster"] = file["ipcluster_log"];
  return logs;
}

// "logs: controller X; engines Y; ipcluster Z", as start and list print them.
std::string LogLine(const Json& logs) {
  std::string out = "logs: controller " + logs["controller"].get<std::string>();
  for (const auto& e : logs["engines"]) out += "; engines " + e.get<std::string>();
  if (logs.contains("ipcluster")) out += "; ipcluster " + logs["ipcluster"].get<std::string>();
  return out;
}

ipp::Status Save(const fs::path& path, const Json& j) { return ipp::protocol::WritePrivateFile(path, j.dump(2)); }

ipp::Result<Cluster> Load(const fs::path& path, const ipp::launchers::LaunchContext& ctx) {
  std::ifstream in(path);
  if (!in) return ipp::Status::NotFound("no cluster file " + path.string() + " (is a cluster running with this profile and cluster id?)");
  Json j = Json::parse(in, nullptr, false);
  if (j.is_discarded()) return ipp::Status::InvalidArgument(path.string() + " is not valid JSON");
  Cluster c;
  c.file = j;
  Json controller = j.value("controller", Json::object());
  if (!controller.value("class", std::string()).empty()) {
    auto l = ipp::launchers::MakeControllerLauncher(controller["class"], ctx, controller["state"]);
    if (!l.ok()) return l.status();
    c.controller = std::move(l).value();
  }
  for (const auto& s : j["engines"].value("sets", Json::array())) {
    auto l = ipp::launchers::MakeEngineLauncher(s["class"], ctx, s["state"]);
    if (!l.ok()) return l.status();
    c.engine_sets.push_back(std::move(l).value());
  }
  return c;
}

void StopAll(Cluster& c) {
  for (auto& s : c.engine_sets) {
    if (auto st = s->Stop(); !st.ok()) std::cerr << "ipcluster: " << st.message() << std::endl;
  }
  if (c.controller) {
    if (auto st = c.controller->Stop(); !st.ok()) std::cerr << "ipcluster: " << st.message() << std::endl;
  }
}

// Whether `pid` is an ipcluster other than us (a recorded pid may have been reused since).
bool IsOtherIpcluster(pid_t pid) {
  if (pid <= 0 || pid == getpid() || !ipp::launchers::ProcessAlive(pid)) return false;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name == "ipcluster";
}

// How launched processes ended, with the end of each one's log (the first few).
std::string DescribeExits(const std::vector<ipp::launchers::ProcessExit>& exits) {
  std::string out;
  const size_t shown = 3;
  for (size_t i = 0; i < exits.size() && i < shown; ++i) {
    const auto& e = exits[i];
    out += "\n  pid " + std::to_string(e.pid) + " " + e.how + "; the end of its log " + e.log.string() + ":\n" +
           ipp::launchers::Tail(e.log, exits.size() == 1 ? 25 : 10);  // mpiexec explains itself at length
  }
  if (exits.size() > shown) out += "  (and " + std::to_string(exits.size() - shown) + " more)\n";
  return out;
}

// Waits for `total` engines. Fails as soon as no more can come: every launcher process has
// exited (an mpiexec refusing its ranks exits at once), or each one still running has
// registered and the rest have exited. Batch jobs cannot be watched: then only the timeout ends it.
ipp::Status WaitForEngines(const ipp::protocol::ProfileDir& p, const std::string& cluster_id, Cluster& c, size_t total,
                           double timeout) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(timeout * 1000));
  ipp::ClientOptions o = ipp::ClientOptions::ProfileDir(p.root().string(), cluster_id);
  o.timeout = std::chrono::seconds(10);
  std::unique_ptr<ipp::Client> client;
  while (!client) {
    auto connected = ipp::Client::Connect(o);
    if (connected.ok()) {
      client = std::move(connected).value();
    } else if (std::chrono::steady_clock::now() > deadline || g_stop || (c.controller && c.controller->Alive() == 0)) {
      return ipp::Status::Timeout("the controller did not come up: " + connected.status().message() +
                                  (c.controller ? "\n" + c.controller->FailureLog() : ""));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  while (client->ids().size() < total) {
    if (g_stop) return ipp::Status::Unavailable("interrupted");
    int alive = 0;
    bool watched = !c.engine_sets.empty();
    std::vector<ipp::launchers::ProcessExit> exits;
    for (auto& s : c.engine_sets) {
      int a = s->Alive();
      if (a < 0) watched = false;  // batch jobs: cannot tell
      alive += std::max(a, 0);
      auto e = s->Exits();
      exits.insert(exits.end(), e.begin(), e.end());
    }
    size_t registered = client->ids().size();
    bool no_more = watched && !exits.empty() && static_cast<size_t>(alive) <= registered &&
                   (alive == 0 || registered + exits.size() >= total);
    if (no_more) {
      return ipp::Status::Unavailable("only " + std::to_string(registered) + " of " + std::to_string(total) +
                                      " engines registered (" + std::to_string(exits.size()) + " exited" +
                                      (alive == 0 ? ": every engine launcher process has ended" : "") + "):" +
                                      DescribeExits(exits));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::string log;
      for (auto& s : c.engine_sets) {
        log = s->FailureLog();
        if (!log.empty()) break;
      }
      return ipp::Status::Timeout("only " + std::to_string(registered) + " of " + std::to_string(total) +
                                  " engines registered in " + std::to_string(static_cast<int>(timeout)) +
                                  " s (--timeout); an engine's log: " + log);
    }
    client->wait_for_engines(total, std::chrono::milliseconds(100));
  }
  return ipp::Status::OK();
}

// Until a signal or the controller's end: reaps the engines, logs how each that ends did and
// records it in the cluster file for `ipcluster list`. Engines `ipcluster engines` added later
// are not our children: the file only tells list which of them are gone.
void Supervise(Cluster& cluster, const fs::path& cluster_file) {
  auto log = ipp::MakeLogger("ipcluster");
  std::set<pid_t> reported;
  while (!g_stop) {
    if (cluster.controller->Alive() == 0) {
      auto exits = cluster.controller->Exits();
      log->error("the controller {}; stopping the engines{}", exits.empty() ? "ended" : "(pid " + std::to_string(exits[0].pid) + ") " + exits[0].how,
                 exits.empty() ? "" : "; the end of its log " + exits[0].log.string() + ":\n" + ipp::launchers::Tail(exits[0].log, 10));
      return;
    }
    std::map<pid_t, std::string> ended;
    for (auto& s : cluster.engine_sets) {
      for (const auto& e : s->Exits()) {
        if (!reported.insert(e.pid).second) continue;
        ended[e.pid] = e.how;
        log->warn("{} engine process pid {} {}; its log: {}", s->kind(), e.pid, e.how, e.log.string());
      }
    }
    if (!ended.empty()) {
      // Re-read: `ipcluster engines` may have added sets since we wrote the file (a write of
      // its own in the few microseconds between our read and our rename would be lost).
      std::ifstream in(cluster_file);
      Json file = Json::parse(in, nullptr, false);
      if (file.is_object()) {
        for (auto& set : file["engines"]["sets"]) {
          for (auto& proc : set["state"]["processes"]) {
            auto it = ended.find(proc.value("pid", 0));
            if (it != ended.end()) proc["exit"] = it->second;
          }
        }
        if (auto st = Save(cluster_file, file); !st.ok()) log->error("{}", st.message());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Stops our cluster and whatever the cluster file adds to it (engines `ipcluster engines` added).
void StopCluster(Cluster& cluster, const fs::path& cluster_file, const ipp::launchers::LaunchContext& ctx) {
  StopAll(cluster);
  auto recorded = Load(cluster_file, ctx);
  if (recorded.ok()) {
    recorded->controller.reset();
    StopAll(*recorded);
  }
  std::error_code ec;
  fs::remove(cluster_file, ec);
}

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

int Start(int argc, char** argv) {
  Common c;
  int n = 0;
  double timeout = 60;
  std::string engines_kind, controller_kind, ip;
  std::vector<std::string> engine_args, controller_args;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("n,n", po::value(&n), "number of engines (default: the number of CPUs)")
      ("engines", po::value(&engines_kind), "engine launcher: Local (default), MPI, SSH, Slurm, PBS, SGE, LSF, HTCondor")
      ("controller", po::value(&controller_kind), "controller launcher: Local (default), Slurm, PBS, SGE, LSF, HTCondor")
      ("ip", po::value(&ip), "interface the controller listens on (default 127.0.0.1)")
      ("daemonize", "return once the cluster is up, leaving it running")
      ("timeout", po::value(&timeout)->default_value(60), "seconds to wait for the engines to register")
      ("engine-arg", po::value(&engine_args)->composing(), "extra ipengine argument (repeatable), e.g. --engine-arg=--load=/x.so")
      ("controller-arg", po::value(&controller_args)->composing(), "extra ipcontroller argument (repeatable)");
  po::variables_map vm;
  std::vector<std::string> traitlets;
  int rc = ipp::cli::Parse(argc, argv,
                           "usage: ipcluster start [-n N] [--engines KIND] [--controller KIND] [--daemonize]\n\n"
                           "Start a controller and N engines; return (--daemonize) or stay in the foreground\n"
                           "once all N engines have registered. Ctrl-C in the foreground stops the cluster.\n"
                           "Launcher settings (mpiexec, SSH hosts, batch queue/account/walltime, job templates)\n"
                           "come from <profile>/ipcluster_config.json; options here override it.",
                           o, vm, &traitlets);
  if (rc >= 0) return rc;
  auto profile = ipp::protocol::ProfileDir::Resolve(c.profile, c.profile_dir);
  if (auto s = profile.Ensure(); !s.ok()) return Fail(s.message());
  std::string error;
  Json cfg = LoadConfig(profile, &error);
  if (!error.empty()) return Fail(error);
  for (const auto& t : traitlets) std::cerr << "ipcluster: " << t << " is not supported; ignored" << std::endl;
  if (!vm.count("n")) n = cfg.value("n", static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (n < 0) return Fail("-n must be at least 0");
  if (engines_kind.empty()) engines_kind = cfg.value("engines", std::string("Local"));
  if (controller_kind.empty()) controller_kind = cfg.value("controller", std::string("Local"));
  auto ctx = Context(profile, c.cluster_id, cfg);
  if (!ip.empty()) ctx.controller_args.push_back("--ip=" + ip);
  ctx.controller_args.insert(ctx.controller_args.end(), controller_args.begin(), controller_args.end());
  ctx.engine_args.insert(ctx.engine_args.end(), engine_args.begin(), engine_args.end());

  fs::path cluster_file = ClusterFile(profile, c.cluster_id);
  if (fs::exists(cluster_file)) {
    auto existing = Load(cluster_file, ctx);
    if (existing.ok() && existing->controller && existing->controller->Alive() != 0) {
      return Fail("a cluster is already running for profile " + profile.root().string() +
                  (c.cluster_id.empty() ? "" : " with cluster id " + c.cluster_id) + " (ipcluster stop first)");
    }
    fs::remove(cluster_file);
  }
  std::error_code ec;
  fs::remove(profile.security_dir() / ipp::protocol::ConnectionFileName("client", c.cluster_id), ec);

  bool daemonize = vm.count("daemonize") > 0;
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

  Cluster cluster;
  auto controller = ipp::launchers::MakeControllerLauncher(controller_kind, ctx);
  if (!controller.ok()) return Fail(controller.status().message());
  cluster.controller = std::move(controller).value();
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  if (auto s = cluster.controller->Start(1); !s.ok()) return Fail("controller: " + s.message());
  // Engines read the engine connection file: wait for the controller to write it.
  fs::path engine_file = profile.security_dir() / ipp::protocol::ConnectionFileName("engine", c.cluster_id);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(timeout * 1000));
  fs::path client_file = profile.security_dir() / ipp::protocol::ConnectionFileName("client", c.cluster_id);
  while (!fs::exists(client_file) || !fs::exists(engine_file)) {
    if (g_stop || std::chrono::steady_clock::now() > deadline || cluster.controller->Alive() == 0) {
      std::string why = cluster.controller->Alive() == 0 ? "the controller exited" : "timed out";
      std::string log = cluster.controller->FailureLog();
      StopAll(cluster);
      return Fail(why + " before writing its connection files:\n" + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (n > 0) {
    auto engines = ipp::launchers::MakeEngineLauncher(engines_kind, ctx);
    if (!engines.ok()) {
      StopAll(cluster);
      return Fail(engines.status().message());
    }
    cluster.engine_sets.push_back(std::move(engines).value());
    if (auto s = cluster.engine_sets.back()->Start(n); !s.ok()) {
      StopAll(cluster);
      return Fail("engines: " + s.message());
    }
  }
  Json description = Describe(cluster, ctx, n);
  fs::path own_log = OwnLog(profile, c.cluster_id);
  if (daemonize) description["ipcluster_log"] = own_log.string();
  if (auto s = Save(cluster_file, description); !s.ok()) std::cerr << "ipcluster: " << s.message() << std::endl;
  auto started = std::chrono::steady_clock::now();
  if (auto s = WaitForEngines(profile, c.cluster_id, cluster, static_cast<size_t>(n), timeout); !s.ok()) {
    StopCluster(cluster, cluster_file, ctx);
    description.erase("ipcluster_log");  // the daemon never got to write it
    return Fail(s.message() + "\n" + LogLine(LogsOf(description)));
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "ipcluster: cluster" << (c.cluster_id.empty() ? "" : " " + c.cluster_id) << " started with " << n
            << " engine(s) (" << cluster.engine_sets.size() << " " << engines_kind << " set) in " << secs
            << " s; profile " << profile.root().string() << "\nipcluster: " << LogLine(LogsOf(description)) << std::endl;
  if (daemonize) {
    Detach(own_log, ready[1]);
  } else {
    std::cout << "ipcluster: running in the foreground; Ctrl-C stops the cluster" << std::endl;
  }
  Supervise(cluster, cluster_file);
  std::cout << "ipcluster: stopping the cluster" << std::endl;
  StopCluster(cluster, cluster_file, ctx);
  return 0;
}

int Stop(int argc, char** argv) {
  Common c;
  po::options_description o("Options");
  AddCommon(o, c);
  po::variables_map vm;
  if (int rc = ipp::cli::Parse(argc, argv, "usage: ipcluster stop [--profile NAME] [--cluster-id ID]\n\nStop everything the cluster's ipcluster start launched.", o, vm); rc >= 0) return rc;
  auto profile = ipp::protocol::ProfileDir::Resolve(c.profile, c.profile_dir);
  std::string error;
  auto ctx = Context(profile, c.cluster_id, LoadConfig(profile, &error));
  fs::path file = ClusterFile(profile, c.cluster_id);
  auto cluster = Load(file, ctx);
  if (!cluster.ok()) return Fail(cluster.status().message());
  // The ipcluster that started the cluster (the daemon, or one in the foreground) stops it
  // fastest: the processes are its children, reaped the moment they end.
  pid_t owner = cluster->file.value("ipcluster_pid", 0);
  if (IsOtherIpcluster(owner)) {
    kill(owner, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (ipp::launchers::ProcessAlive(owner) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // Whatever it left, or all of it when it is gone.
  StopAll(*cluster);
  std::error_code ec;
  fs::remove(file, ec);
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
  return {{"profile", profile_dir.filename().string().substr(8)}, {"cluster_id", cluster_id},
          {"engines", j["cluster"].value("n", 0)}, {"running", running},
          {"controller", j["controller"].value("class", "")}, {"registered", registered}, {"exited", exited},
          {"logs", LogsOf(j)}};
}

int List(int argc, char** argv) {
  po::options_description o("Options");
  bool json = false;
  o.add_options()("json", po::bool_switch(&json), "JSON output");
  po::variables_map vm;
  if (int rc = ipp::cli::Parse(argc, argv,
                               "usage: ipcluster list\n\nList the clusters of every profile in $IPYTHONDIR: for each, the engines\n"
                               "its controller has registered beside those launched, how any engine process\n"
                               "ended, and where the logs are.",
                               o, vm);
      rc >= 0) {
    return rc;
  }
  Json rows = Json::array();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(ipp::protocol::IpythonDir(), ec)) {
    if (entry.path().filename().string().rfind("profile_", 0) != 0) continue;
    for (const auto& f : fs::directory_iterator(entry.path() / "security", ec)) {
      std::string name = f.path().filename().string();
      if (name.rfind("cluster-", 0) != 0 || f.path().extension() != ".json") continue;
      std::ifstream in(f.path());
      Json j = Json::parse(in, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      rows.push_back(DescribeCluster(entry.path(), j));
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
      engines += " (" + std::to_string(r["exited"].size()) + " exited:";
      for (size_t i = 0; i < r["exited"].size(); ++i) {
        const auto& e = r["exited"][i];
        engines += std::string(i ? "," : "") + " pid " + std::to_string(e["pid"].get<pid_t>()) + " " + e["how"].get<std::string>();
      }
      engines += ")";
    }
    std::printf("%-16s %-16s %-8s  %s\n", r["profile"].get<std::string>().c_str(), r["cluster_id"].get<std::string>().c_str(),
                r["running"].get<bool>() ? "running" : "stopped", engines.c_str());
    std::printf("  %s\n", LogLine(r["logs"]).c_str());
  }
  return 0;
}

int Engines(int argc, char** argv) {
  Common c;
  int n = 1;
  double timeout = 60;
  std::string kind;
  std::vector<std::string> engine_args;
  po::options_description o("Options");
  AddCommon(o, c);
  o.add_options()("n,n", po::value(&n)->default_value(1), "engines to add")
      ("engines", po::value(&kind), "engine launcher (default: as configured, else Local)")
      ("timeout", po::value(&timeout)->default_value(60), "seconds to wait for them to register")
      ("engine-arg", po::value(&engine_args)->composing(), "extra ipengine argument (repeatable)");
  po::variables_map vm;
  if (int rc = ipp::cli::Parse(argc, argv, "usage: ipcluster engines -n N\n\nAdd engines to a running cluster.", o, vm); rc >= 0) return rc;
  auto profile = ipp::protocol::ProfileDir::Resolve(c.profile, c.profile_dir);
  std::string error;
  Json cfg = LoadConfig(profile, &error);
  if (!error.empty()) return Fail(error);
  auto ctx = Context(profile, c.cluster_id, cfg);
  ctx.engine_args.insert(ctx.engine_args.end(), engine_args.begin(), engine_args.end());
  fs::path file = ClusterFile(profile, c.cluster_id);
  auto cluster = Load(file, ctx);
  if (!cluster.ok()) return Fail(cluster.status().message());
  if (kind.empty()) kind = cfg.value("engines", std::string("Local"));
  auto engines = ipp::launchers::MakeEngineLauncher(kind, ctx);
  if (!engines.ok()) return Fail(engines.status().message());
  size_t before = 0;
  {
    auto client = ipp::Client::Connect(ipp::ClientOptions::ProfileDir(profile.root().string(), c.cluster_id));
    if (!client.ok()) return Fail(client.status().message());
    before = (*client)->ids().size();
  }
  if (auto s = (*engines)->Start(n); !s.ok()) return Fail(s.message());
  cluster->engine_sets.push_back(std::move(engines).value());
  int total = cluster->file["cluster"].value("n", 0) + n;
  Json saved = Describe(*cluster, ctx, total);
  saved["ipcluster_pid"] = cluster->file.value("ipcluster_pid", 0);
  if (cluster->file.contains("ipcluster_log")) saved["ipcluster_log"] = cluster->file["ipcluster_log"];
  if (auto s = Save(file, saved); !s.ok()) return Fail(s.message());
  Cluster only_new;
  only_new.engine_sets.push_back(std::move(cluster->engine_sets.back()));
  if (auto s = WaitForEngines(profile, c.cluster_id, only_new, before + static_cast<size_t>(n), timeout); !s.ok()) return Fail(s.message());
  std::cout << "ipcluster: added " << n << " engine(s); logs: " << only_new.engine_sets.back()->LogLocation() << std::endl;
  return 0;
}

int Clean(int argc, char** argv) {
  Common c;
  po::options_description o("Options");
  AddCommon(o, c);
  po::variables_map vm;
  if (int rc = ipp::cli::Parse(argc, argv, "usage: ipcluster clean\n\nRemove the files of stopped clusters (cluster and connection files) and old logs.", o, vm); rc >= 0) return rc;
  auto profile = ipp::protocol::ProfileDir::Resolve(c.profile, c.profile_dir);
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
    for (const char* role : {"client", "engine"}) fs::remove(profile.security_dir() / ipp::protocol::ConnectionFileName(role, id), ec);
    ++removed;
  }
  for (const auto& f : fs::directory_iterator(profile.log_dir(), ec)) {
    if (f.path().extension() == ".log") fs::remove(f.path(), ec);
  }
  std::cout << "ipcluster: removed the files of " << removed << " stopped cluster(s) and the logs in " << profile.log_dir().string() << std::endl;
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

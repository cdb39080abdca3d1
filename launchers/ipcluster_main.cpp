// ipcluster: start, stop, list, grow and clean clusters (controller + engines).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/cli.hpp"
#include "ipp/client.hpp"
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
  fs::path file = p.root() / "ipcluster_config.json";
  std::ifstream in(file);
  if (!in) return Json::object();
  Json cfg = Json::parse(in, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) {
    *error = file.string() + " is not a JSON object";
    return Json::object();
  }
  return cfg;
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
  for (const auto& s : c.engine_sets) sets.push_back({{"class", s->kind()}, {"state", s->State()}});
  return {{"cluster", {{"profile_dir", ctx.profile_dir.string()}, {"cluster_id", ctx.cluster_id}, {"n", n}}},
          {"controller", {{"class", c.controller ? c.controller->kind() : ""}, {"state", c.controller ? c.controller->State() : Json()}}},
          {"engines", {{"sets", sets}}},
          {"ipcluster_pid", getpid()}};
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

// Waits for `total` engines; fails early when local engine processes die.
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
    } else if (std::chrono::steady_clock::now() > deadline || g_stop) {
      return ipp::Status::Timeout("the controller did not come up: " + connected.status().message() +
                                  (c.controller ? "\n" + c.controller->FailureLog() : ""));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  while (client->ids().size() < total) {
    int dead = 0, started = 0;
    for (auto& s : c.engine_sets) {
      int alive = s->Alive();
      if (alive < 0) continue;  // batch jobs: cannot tell
      started += static_cast<int>(s->State().value("processes", Json::array()).size());
      dead += static_cast<int>(s->State().value("processes", Json::array()).size()) - alive;
    }
    if (g_stop) return ipp::Status::Unavailable("interrupted");
    bool local_all_dead = started > 0 && dead > 0 && dead >= started - static_cast<int>(client->ids().size());
    if (std::chrono::steady_clock::now() > deadline || (local_all_dead && dead > 0 &&
                                                          client->ids().size() + dead >= total)) {
      std::string log;
      for (auto& s : c.engine_sets) {
        log = s->FailureLog();
        if (!log.empty()) break;
      }
      return ipp::Status::Unavailable("only " + std::to_string(client->ids().size()) + " of " + std::to_string(total) +
                                      " engines registered" + (dead ? " (" + std::to_string(dead) + " exited)" : "") +
                                      "; a failing engine's log: " + log);
    }
    client->wait_for_engines(total, std::chrono::milliseconds(200));
  }
  return ipp::Status::OK();
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
  if (auto s = Save(cluster_file, Describe(cluster, ctx, n)); !s.ok()) std::cerr << "ipcluster: " << s.message() << std::endl;
  auto started = std::chrono::steady_clock::now();
  if (auto s = WaitForEngines(profile, c.cluster_id, cluster, static_cast<size_t>(n), timeout); !s.ok()) {
    StopAll(cluster);
    fs::remove(cluster_file, ec);
    return Fail(s.message());
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "ipcluster: cluster" << (c.cluster_id.empty() ? "" : " " + c.cluster_id) << " started with " << n
            << " engine(s) (" << cluster.engine_sets.size() << " " << engines_kind << " set) in " << secs
            << " s; profile " << profile.root().string() << std::endl;
  if (vm.count("daemonize")) return 0;

  std::cout << "ipcluster: running in the foreground; Ctrl-C stops the cluster" << std::endl;
  while (!g_stop && cluster.controller->Alive() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::cout << "ipcluster: stopping the cluster" << std::endl;
  StopAll(cluster);
  fs::remove(cluster_file, ec);
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
  StopAll(*cluster);
  std::error_code ec;
  fs::remove(file, ec);
  // A foreground ipcluster start waiting for the cluster should end too.
  pid_t owner = cluster->file.value("ipcluster_pid", 0);
  if (owner > 0 && owner != getpid() && ipp::launchers::ProcessAlive(owner)) kill(owner, SIGTERM);
  std::cout << "ipcluster: stopped" << (c.cluster_id.empty() ? "" : " cluster " + c.cluster_id) << std::endl;
  return 0;
}

int List(int argc, char** argv) {
  po::options_description o("Options");
  bool json = false;
  o.add_options()("json", po::bool_switch(&json), "JSON output");
  po::variables_map vm;
  if (int rc = ipp::cli::Parse(argc, argv, "usage: ipcluster list\n\nList the clusters of every profile in $IPYTHONDIR.", o, vm); rc >= 0) return rc;
  Json rows = Json::array();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(ipp::protocol::IpythonDir(), ec)) {
    if (entry.path().filename().string().rfind("profile_", 0) != 0) continue;
    for (const auto& f : fs::directory_iterator(entry.path() / "security", ec)) {
      std::string name = f.path().filename().string();
      if (name.rfind("cluster-", 0) != 0 || f.path().extension() != ".json") continue;
      std::ifstream in(f.path());
      Json j = Json::parse(in, nullptr, false);
      if (j.is_discarded()) continue;
      auto processes = j["controller"]["state"].value("processes", Json::array());
      bool running = !processes.empty() && ipp::launchers::ProcessAlive(processes[0].value("pid", 0));
      rows.push_back({{"profile", entry.path().filename().string().substr(8)},
                      {"cluster_id", j["cluster"].value("cluster_id", "")},
                      {"engines", j["cluster"].value("n", 0)}, {"running", running},
                      {"controller", j["controller"].value("class", "")}});
    }
  }
  if (json) {
    std::cout << rows.dump() << std::endl;
    return 0;
  }
  std::printf("%-16s %-16s %8s  %s\n", "PROFILE", "CLUSTER ID", "ENGINES", "STATE");
  for (const auto& r : rows) {
    std::printf("%-16s %-16s %8d  %s\n", r["profile"].get<std::string>().c_str(), r["cluster_id"].get<std::string>().c_str(),
                r["engines"].get<int>(), r["running"].get<bool>() ? "running" : "stopped");
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
  if (auto s = Save(file, saved); !s.ok()) return Fail(s.message());
  Cluster only_new;
  only_new.engine_sets.push_back(std::move(cluster->engine_sets.back()));
  if (auto s = WaitForEngines(profile, c.cluster_id, only_new, before + static_cast<size_t>(n), timeout); !s.ok()) return Fail(s.message());
  std::cout << "ipcluster: added " << n << " engine(s)" << std::endl;
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

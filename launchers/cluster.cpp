#include "launchers/cluster.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "ipp/client.hpp"
#include "protocol/connection_file.hpp"

namespace ipp::launchers {

namespace fs = std::filesystem;

namespace {

fs::path SecurityDir(const LaunchContext& context) { return context.profile_dir / "security"; }

// How launched processes ended, with the end of each one's log (the first few).
std::string DescribeExits(const std::vector<ProcessExit>& exits) {
  std::string out;
  const size_t shown = 3;
  for (size_t i = 0; i < exits.size() && i < shown; ++i) {
    const auto& e = exits[i];
    out += "\n  pid " + std::to_string(e.pid) + " " + e.how + "; the end of its log " + e.log.string() + ":\n" +
           Tail(e.log, exits.size() == 1 ? 25 : 10);  // mpiexec explains itself at length
  }
  if (exits.size() > shown) out += "  (and " + std::to_string(exits.size() - shown) + " more)\n";
  return out;
}

void PrintError(const Status& status) {
  if (!status.ok()) std::cerr << "ipcluster: " << status.message() << std::endl;
}

}  // namespace

Cluster::Cluster(LaunchContext context, const std::atomic<bool>& stop)
    : context_(std::move(context)), stop_(stop), controller_budget_(context_.restart) {
  context_.stop = &stop_;
}

fs::path Cluster::file() const { return SecurityDir(context_) / ("cluster-" + context_.cluster_id + ".json"); }

Status Cluster::Load() {
  const fs::path path = file();
  std::ifstream in(path);
  if (!in) {
    return Status::NotFound("no cluster file " + path.string() + " (is a cluster running with this profile and cluster id?)" +
                            protocol::OtherClustersHint(path.parent_path(), context_.cluster_id));
  }
  Json j = Json::parse(in, nullptr, false);
  if (j.is_discarded()) return Status::InvalidArgument(path.string() + " is not valid JSON");
  recorded_ = j;
  Json controller = j.value("controller", Json::object());
  if (!controller.value("class", std::string()).empty()) {
    auto l = MakeControllerLauncher(controller["class"], context_, controller["state"]);
    if (!l.ok()) return l.status();
    controller_ = std::move(l).value();
  }
  for (const auto& s : j["engines"].value("sets", Json::array())) {
    auto l = MakeEngineLauncher(s["class"], context_, s["state"]);
    if (!l.ok()) return l.status();
    engine_sets_.push_back(std::move(l).value());
  }
  return Status::OK();
}

Status Cluster::ClaimFiles() {
  const fs::path path = file();
  if (fs::exists(path)) {
    Cluster existing(context_, stop_);
    if (existing.Load().ok() && existing.controller_ && existing.controller_->Alive() != 0) {
      return Status::InvalidArgument("a cluster is already running for profile " + context_.profile_dir.string() +
                                   (context_.cluster_id.empty() ? "" : " with cluster id " + context_.cluster_id) +
                                   " (ipcluster stop first)");
    }
    fs::remove(path);
  }
  std::error_code ec;
  fs::remove(SecurityDir(context_) / protocol::ConnectionFileName("client", context_.cluster_id), ec);
  return Status::OK();
}

Status Cluster::StartController(const std::string& kind, std::chrono::milliseconds timeout) {
  auto controller = MakeControllerLauncher(kind, ControllerContext(kind, false));
  if (!controller.ok()) return controller.status();
  controller_ = std::move(controller).value();
  if (Status s = controller_->Start(1); !s.ok()) return Status::Unavailable("controller: " + s.message());
  // Engines read the engine connection file: wait for the controller to write it.
  fs::path engine_file = SecurityDir(context_) / protocol::ConnectionFileName("engine", context_.cluster_id);
  fs::path client_file = SecurityDir(context_) / protocol::ConnectionFileName("client", context_.cluster_id);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(client_file) || !fs::exists(engine_file)) {
    if (stop_ || std::chrono::steady_clock::now() > deadline || controller_->Alive() == 0) {
      bool exited = controller_->Alive() == 0;
      std::string log = controller_->FailureLog();
      Stop();
      return exited ? Status::Unavailable("the controller exited before writing its connection files:\n" + log)
                    : Status::Timeout("timed out before writing its connection files:\n" + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::OK();
}

Status Cluster::StartEngines(const std::string& kind, int n) {
  auto engines = MakeEngineLauncher(kind, context_);
  if (!engines.ok()) return engines.status();
  engine_sets_.push_back(std::move(engines).value());
  if (Status s = engine_sets_.back()->Start(n); !s.ok()) return Status::Unavailable("engines: " + s.message());
  if (engine_sets_.back()->kind() != "Local" && engine_sets_.back()->CanSubmitJobs().ok()) {
    batch_watches_.push_back({engine_sets_.size() - 1, n, RestartBudget(context_.restart), {}, {}});
  }
  return Status::OK();
}

Json Cluster::DescribeSet(const Launcher& set) {
  return {{"class", set.kind()}, {"state", set.State()}, {"logs", set.LogLocation()}};
}

Json Cluster::Describe(int n) const {
  Json sets = Json::array();
  for (const auto& s : engine_sets_) sets.push_back(DescribeSet(*s));
  Json controller = {{"class", controller_ ? controller_->kind() : ""}, {"state", controller_ ? controller_->State() : Json()}};
  if (controller_) controller["logs"] = controller_->LogLocation();
  Json out = {{"cluster", {{"profile_dir", context_.profile_dir.string()}, {"cluster_id", context_.cluster_id}, {"n", n}}},
          {"controller", controller},
          {"engines", {{"sets", sets}}},
          {"ipcluster_pid", getpid()}};
  if (adapter_) out["adapt"] = adapter_->Describe();
  return out;
}

namespace {

// An exclusive flock on a directory, held while it lives (no lock file is left behind).
class DirectoryLock {
 public:
  explicit DirectoryLock(const fs::path& dir) : fd_(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    while (fd_ >= 0 && flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~DirectoryLock() {
    if (fd_ >= 0) close(fd_);  // releases the lock
  }
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_;
};

}  // namespace

Status Cluster::Save(const Json& description) const {
  DirectoryLock lock(SecurityDir(context_));
  return protocol::WritePrivateFile(file(), description.dump(2));
}

Status Cluster::Update(const std::function<void(Json&)>& change) const {
  DirectoryLock lock(SecurityDir(context_));
  std::ifstream in(file());
  if (!in) return Status::NotFound("no cluster file " + file().string() + ": the cluster was stopped");
  Json recorded = Json::parse(in, nullptr, false);
  if (!recorded.is_object()) return Status::InvalidArgument(file().string() + " is not valid JSON");
  change(recorded);
  return protocol::WritePrivateFile(file(), recorded.dump(2));
}

void Cluster::RemoveFile() const {
  DirectoryLock lock(SecurityDir(context_));
  std::error_code ec;
  fs::remove(file(), ec);
}

Status Cluster::WaitForEngines(size_t total, std::chrono::milliseconds timeout, size_t first_set, Refused* refused) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  ClientOptions o = ClientOptions::ProfileDir(context_.profile_dir.string(), context_.cluster_id);
  o.timeout = std::chrono::seconds(10);
  std::unique_ptr<Client> client;
  while (!client) {
    auto connected = Client::Connect(o);
    if (connected.ok()) {
      client = std::move(connected).value();
    } else if (std::chrono::steady_clock::now() > deadline || stop_ || (controller_ && controller_->Alive() == 0)) {
      return Status::Timeout("the controller did not come up: " + connected.status().message() +
                             (controller_ ? "\n" + controller_->FailureLog() : ""));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  const size_t sets = engine_sets_.size() - std::min(first_set, engine_sets_.size());
  // Refusals do not end the wait early for MPI: mpiexec ends the whole job, the ranks that
  // registered too, when one is refused.
  const bool mpi = std::any_of(engine_sets_.end() - static_cast<long>(sets), engine_sets_.end(),
                               [](const auto& set) { return set->kind() == "MPI"; });
  while (client->ids().size() < total) {
    if (stop_) return Status::Unavailable("interrupted");
    int alive = 0;
    bool watched = sets > 0;
    std::vector<ProcessExit> exits;
    for (size_t i = first_set; i < engine_sets_.size(); ++i) {
      int a = engine_sets_[i]->Alive();
      if (a < 0) watched = false;  // batch jobs: cannot tell
      alive += std::max(a, 0);
      auto e = engine_sets_[i]->Exits();
      exits.insert(exits.end(), e.begin(), e.end());
    }
    size_t registered = client->ids().size();
    bool no_more = watched && !exits.empty() && static_cast<size_t>(alive) <= registered &&
                   (alive == 0 || registered + exits.size() >= total);
    if (no_more && refused && registered > 0 && !mpi &&
        std::all_of(exits.begin(), exits.end(), [](const ProcessExit& e) { return e.refused; })) {
      refused->registered = registered;
      refused->why = std::to_string(registered) + " of " + std::to_string(total) + " engines registered; the controller refused " +
                     std::to_string(exits.size()) + " (they are not restarted):" + DescribeExits(exits);
      return Status::OK();
    }
    if (no_more) {
      return Status::Unavailable("only " + std::to_string(registered) + " of " + std::to_string(total) +
                                 " engines registered (" + std::to_string(exits.size()) + " exited" +
                                 (alive == 0 ? ": every engine launcher process has ended" : "") + "):" +
                                 DescribeExits(exits));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::string log;
      for (size_t i = first_set; i < engine_sets_.size() && log.empty(); ++i) log = engine_sets_[i]->FailureLog();
      return Status::Timeout("only " + std::to_string(registered) + " of " + std::to_string(total) +
                             " engines registered in " +
                             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                             " s (--timeout); an engine's log: " + log);
    }
    (void)client->wait_for_engines(total, std::chrono::milliseconds(100));  // a paced poll: the loop rechecks
  }
  return Status::OK();
}

void Cluster::SaveEngineSets(const Logger& log) {
  // Ours are the first sets; those `ipcluster engines` added follow and are theirs to write.
  Status s = Update([this](Json& recorded) {
    Json& sets = recorded["engines"]["sets"];
    for (size_t i = 0; sets.is_array() && i < sets.size() && i < engine_sets_.size(); ++i) {
      sets[i] = DescribeSet(*engine_sets_[i]);
    }
    if (adapter_) recorded["adapt"] = adapter_->Describe();
    if (engine_supervisor_) {
      recorded["restarts"] = engine_supervisor_->restarts();
      recorded["given_up"] = engine_supervisor_->given_up();
    }
  });
  if (!s.ok() && s.code() != Status::Code::kNotFound) log->error("{}", s.message());
}

// Engines `ipcluster engines` added later are not our children: the cluster file only tells
// list which of them are gone.
void Cluster::Supervise(const Logger& log) {
  while (!stop_) {
    if (!SuperviseController(log)) {
      RemoveStaleConnectionFiles(&log);
      return;
    }
    if (adapter_) Adapt(log);
    if (!batch_watches_.empty()) ReplaceEndedJobs(log);
    SuperviseEngines(log, std::chrono::steady_clock::now());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A controller that died (a kill, a crash) could not remove its connection files: clients and
// engines reading them would wait for it until their timeouts. Kept when it was told to reuse
// them (--reuse, --restore): then the next controller is meant to take them over.
void Cluster::RemoveStaleConnectionFiles(const Logger* log) const {
  for (const std::string& arg : context_.controller_args) {
    for (const char* keep : {"--reuse", "--restore", "--IPController.reuse_files", "--IPController.restore_engines"}) {
      if (arg.rfind(keep, 0) == 0) return;
    }
  }
  std::error_code ec;
  for (const char* role : {"client", "engine", "dashboard"}) {
    fs::path f = SecurityDir(context_) / protocol::ConnectionFileName(role, context_.cluster_id);
    if (fs::remove(f, ec) && log) (*log)->info("removed its connection file {}", f.string());
  }
}

void Cluster::StopOwner(std::chrono::milliseconds timeout) {
  pid_t owner = recorded_.is_object() ? recorded_.value("ipcluster_pid", 0) : 0;
  // A recorded pid may have been reused since: only an ipcluster other than us is asked.
  if (owner <= 0 || owner == getpid() || !ProcessAlive(owner)) return;
  if (ReadProcFile(owner, "comm") != "ipcluster\n") return;
  kill(owner, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ProcessAlive(owner) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Cluster::Stop() {
  for (auto& s : engine_sets_) PrintError(s->Stop());
  if (controller_) PrintError(controller_->Stop());
}

void Cluster::StopAll() {
  Stop();
  // A controller kept them for its restart (--reuse, added by ControllerContext): the cluster
  // is gone now.
  if (controller_) RemoveStaleConnectionFiles(nullptr);
  Cluster recorded(context_, stop_);
  if (recorded.Load().ok()) {
    recorded.controller_.reset();
    recorded.Stop();
  }
  RemoveFile();
}

LaunchContext ContextFor(const protocol::ProfileDir& profile, const std::string& cluster_id, const Json& config) {
  LaunchContext c;
  c.profile_dir = profile.root();
  c.cluster_id = cluster_id;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  c.bin_dir = ec ? fs::path() : self.parent_path();
  c.log_dir = profile.log_dir();
  c.config = config;
  for (const auto& a : config.value("controller_args", Json::array())) c.controller_args.push_back(a.get<std::string>());
  for (const auto& a : config.value("engine_args", Json::array())) c.engine_args.push_back(a.get<std::string>());
  Json environment = config.value("environment", Json::object());  // items() must not outlive it
  for (const auto& [name, value] : environment.items()) c.environment[name] = value.get<std::string>();
  return c;
}

Json LogsOf(const Json& file) {
  Json logs = {{"controller", file["controller"].value("logs", "")}, {"engines", Json::array()}};
  for (const auto& set : file["engines"].value("sets", Json::array())) logs["engines"].push_back(set.value("logs", ""));
  if (file.contains("ipcluster_log")) logs["ipcluster"] = file["ipcluster_log"];
  return logs;
}

std::string LogLine(const Json& logs) {
  std::string out = "logs: controller " + logs["controller"].get<std::string>();
  for (const auto& e : logs["engines"]) out += "; engines " + e.get<std::string>();
  if (logs.contains("ipcluster")) out += "; ipcluster " + logs["ipcluster"].get<std::string>();
  return out;
}

}  // namespace ipp::launchers

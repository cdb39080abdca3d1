#include "launchers/launcher.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cctype>
#include <deque>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/cli.hpp"
#include "common/host.hpp"
#include "common/spawn.hpp"
#include "launchers/batch.hpp"
#include "protocol/connection_file.hpp"

namespace ipp::launchers {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Processes

Result<pid_t> Spawn(const std::vector<std::string>& argv, const fs::path& log,
                    const std::map<std::string, std::string>& environment, SpawnOptions::Group group) {
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot open log file " + log.string());
  SpawnOptions options;
  for (const auto& [name, value] : environment) options.environment.push_back(name + "=" + value);
  options.group = group;
  options.stdout_fd = options.stderr_fd = fd;
  options.default_signals = {SIGINT, SIGTERM, SIGPIPE};
  Result<pid_t> pid = ipp::Spawn(argv, options);
  ::close(fd);
  return pid;
}

std::string ReadProcFile(pid_t pid, const char* name) {
  // The process may vanish while we read, which libstdc++ reports by throwing.
  try {
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  } catch (const std::exception&) {
    return "";
  }
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) == pid) return false;  // our child, now reaped
  if (kill(pid, 0) != 0) return false;
  // A zombie (not our child) still answers kill(0): read its state.
  std::string text = ReadProcFile(pid, "stat");
  if (text.empty()) return false;  // gone while we read
  size_t paren = text.rfind(')');
  return !(paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z');
}

namespace {
// Those of `groups` that still have a member that is not a zombie. A group of zombies is done:
// they wait only for whoever reaps them (init may take seconds), and they hold nothing.
std::set<pid_t> LiveGroups(const std::vector<pid_t>& groups) {
  std::set<pid_t> candidates;
  for (pid_t g : groups) {
    if (g > 0 && (kill(-g, 0) == 0 || errno == EPERM)) candidates.insert(g);
  }
  std::set<pid_t> live;
  if (candidates.empty()) return live;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    size_t paren = text.rfind(')');
    if (paren == std::string::npos) continue;  // gone while we read
    std::istringstream fields(text.substr(paren + 1));
    char state = 0;
    pid_t parent = 0, group = 0;
    if (fields >> state >> parent >> group && state != 'Z' && candidates.count(group)) live.insert(group);
  }
  return live;
}
}  // namespace

bool StopGroups(const std::vector<pid_t>& groups, std::chrono::milliseconds grace) {
  for (pid_t g : groups) {
    if (g <= 0) continue;
    kill(-g, SIGTERM);
    kill(g, SIGTERM);
  }
  auto deadline = std::chrono::steady_clock::now() + grace;
  for (bool killed = false;;) {
    for (pid_t g : groups) {
      if (g > 0) waitpid(g, nullptr, WNOHANG);  // our own children: reap them, stopping on purpose
    }
    std::set<pid_t> live = LiveGroups(groups);
    if (live.empty()) return true;
    if (std::chrono::steady_clock::now() > deadline) {
      if (killed) return false;
      for (pid_t g : live) {
        kill(-g, SIGKILL);
        kill(g, SIGKILL);
      }
      killed = true;
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool RefusedByTheController(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == cli::kExitRegistrationRefused;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("killed by ") + (name ? "SIG" + std::string(name) : "signal " + std::to_string(WTERMSIG(status))) +
           (WCOREDUMP(status) ? " (core dumped)" : "");
  }
  return "ended (wait status " + std::to_string(status) + ")";
}

std::string DescribeEnd(int status, bool killed_by_us) {
  if (RefusedByTheController(status)) return DescribeWaitStatus(status) + " (the controller refused its registration)";
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !killed_by_us) {
    return std::string("killed (SIGKILL; possibly out of memory)") + (WCOREDUMP(status) ? " (core dumped)" : "");
  }
  return DescribeWaitStatus(status);
}

std::string Tail(const fs::path& file, size_t lines, const std::string& indent) {
  std::ifstream in(file);
  std::deque<std::string> last;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // ssh -tt output
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += indent + l + "\n";
  return out;
}

bool IsEnvironmentName(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char ch) { return std::isalnum(ch) || ch == '_'; });
}

std::map<std::string, std::string> EnvironmentFor(const LaunchContext& context, const std::string& section) {
  std::map<std::string, std::string> out = context.environment;
  if (section.empty()) return out;
  Json own = context.config.value(section, Json::object()).value("environment", Json::object());
  for (const auto& [name, value] : own.items()) {
    if (value.is_string()) out[name] = value.get<std::string>();
  }
  return out;
}

Result<std::string> Launcher::Submit(int) { return Status::InvalidArgument(kind() + " engines cannot be submitted as jobs (--adapt)"); }
Status Launcher::CanSubmitJobs() const {
  return Status::InvalidArgument(kind() + " engines cannot be submitted as jobs (--adapt: Local, Slurm, SGE, PBS)");
}
Status Launcher::Cancel(const std::string&) { return Status::InvalidArgument(kind() + " engines have no jobs to cancel"); }
Result<std::vector<JobState>> Launcher::Jobs() { return Status::InvalidArgument(kind() + " engines have no job states to read"); }

// ---------------------------------------------------------------------------------------------
// Commands

namespace {
std::vector<std::string> Common(const LaunchContext& c) {
  std::vector<std::string> args = {"--profile-dir=" + c.profile_dir.string()};
  if (!c.cluster_id.empty()) args.push_back("--cluster-id=" + c.cluster_id);
  return args;
}
std::string ShellQuote(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    std::string q = "'";
    for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    out += (out.empty() ? "" : " ") + q + "'";
  }
  return out;
}
// "NAME='value' NAME2='value2' " for a command line run by a shell ("" for none).
std::string ShellAssignments(const std::map<std::string, std::string>& environment) {
  std::string out;
  for (const auto& [name, value] : environment) out += name + "=" + ShellQuote({value}) + " ";
  return out;
}
// The job script's {environment}: "export NAME='value'" lines; for HTCondor, whose submit file
// is not a script, its "environment" command (values quoted in its own way).
std::string EnvironmentLines(const BatchSystem& system, const std::map<std::string, std::string>& environment) {
  if (environment.empty()) return "";
  if (system.name != "HTCondor") {
    std::string out;
    for (const auto& [name, value] : environment) out += "export " + name + "=" + ShellQuote({value}) + "\n";
    return out;
  }
  std::string out = "environment = \"";
  for (const auto& [name, value] : environment) {
    out += (out.size() > 15 ? " " : "") + name + "='";
    for (char ch : value) out += ch == '\'' ? std::string("''") : ch == '"' ? std::string("\"\"") : std::string(1, ch);
    out += "'";
  }
  return out + "\"\n";
}
std::string Binary(const LaunchContext& c, const std::string& name) {
  fs::path p = c.bin_dir / name;
  return fs::exists(p) ? p.string() : name;
}
}  // namespace

std::vector<std::string> ControllerCommand(const LaunchContext& c) {
  std::vector<std::string> argv = {Binary(c, "ipcontroller")};
  auto common = Common(c);
  argv.insert(argv.end(), common.begin(), common.end());
  argv.insert(argv.end(), c.controller_args.begin(), c.controller_args.end());
  return argv;
}

std::vector<std::string> EngineCommand(const LaunchContext& c, bool mpi) {
  std::vector<std::string> argv = {c.config.value("engine_command", Binary(c, "ipengine"))};
  auto common = Common(c);
  argv.insert(argv.end(), common.begin(), common.end());
  if (mpi) argv.push_back("--mpi");
  argv.insert(argv.end(), c.engine_args.begin(), c.engine_args.end());
  return argv;
}

std::string CanonicalKind(const std::string& kind) {
  std::string lower = kind;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
  // ipyparallel also accepts full class-name-like spellings such as "SlurmEngineSetLauncher".
  for (const char* suffix : {"enginesetlauncher", "controllerlauncher", "launcher"}) {
    size_t n = std::strlen(suffix);
    if (lower.size() > n && lower.compare(lower.size() - n, n, suffix) == 0) lower.resize(lower.size() - n);
  }
  static const std::pair<const char*, const char*> kNames[] = {
      {"local", "Local"}, {"mpi", "MPI"}, {"mpiexec", "MPI"}, {"ssh", "SSH"}, {"slurm", "Slurm"},
      {"pbs", "PBS"}, {"torque", "PBS"}, {"sge", "SGE"}, {"lsf", "LSF"}, {"htcondor", "HTCondor"},
      {"condor", "HTCondor"}};
  for (auto& [k, v] : kNames) {
    if (lower == k) return v;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Local processes (controller, engines) and mpiexec

namespace {

// What the Local, MPI and SSH launchers share: a set of spawned process groups, each with its
// log, and how each ended once it has.
class ProcessSetLauncher : public Launcher {
 public:
  Status Stop() override {
    stopping_ = true;  // what ends from now on was asked to
    // Ended leaders too: an MPI rank may outlive its mpiexec in the group.
    std::vector<pid_t> groups;
    for (const auto& p : procs_) groups.push_back(p.pid);
    return StopGroups(groups) ? Status::OK() : Status::Unavailable("some " + kind() + " processes did not stop");
  }

  int Alive() override {
    int n = 0;
    for (auto& p : procs_) n += Poll(p);
    return n;
  }

  std::vector<ProcessExit> Exits() override {
    std::vector<ProcessExit> exits;
    for (auto& p : procs_) {
      if (!Poll(p)) exits.push_back({p.pid, p.how, p.log, p.slot, p.requested, p.refused});
    }
    return exits;
  }

  std::string FailureLog() override {
    for (auto& p : procs_) {
      if (!Poll(p)) return p.log.string() + ":\n" + Tail(p.log);
    }
    return procs_.empty() ? "" : procs_.front().log.string() + ":\n" + Tail(procs_.front().log);
  }

  std::string LogLocation() const override {
    if (procs_.empty()) return context_.log_dir.string();
    // One pattern for many engines' logs: their common prefix and suffix around a *.
    std::string prefix = procs_.front().log.string(), suffix = prefix;
    for (const auto& p : procs_) {
      std::string log = p.log.string();
      size_t i = 0;
      while (i < prefix.size() && i < log.size() && prefix[i] == log[i]) ++i;
      prefix.resize(i);
      size_t j = 0;
      while (j < suffix.size() && j < log.size() && suffix[suffix.size() - 1 - j] == log[log.size() - 1 - j]) ++j;
      suffix.erase(0, suffix.size() - j);
    }
    if (procs_.size() == 1) return prefix;
    return prefix + "*" + suffix + " (" + std::to_string(procs_.size()) + " files)";
  }

  Json State() const override {
    Json procs = Json::array();
    for (const auto& p : procs_) {
      Json j = {{"pid", p.pid}, {"log", p.log.string()}, {"slot", p.slot}};
      if (p.restart > 0) j["restart"] = p.restart;
      if (p.ended) j["exit"] = p.how;
      if (!p.job.empty()) j["job"] = p.job;
      procs.push_back(std::move(j));
    }
    return {{"processes", procs}};
  }

  void Restore(const Json& state) {
    for (const auto& p : state.value("processes", Json::array())) {
      Proc proc;
      proc.pid = p.at("pid").get<pid_t>();
      proc.log = p.value("log", std::string());
      proc.slot = p.value("slot", static_cast<int>(procs_.size()));
      proc.restart = p.value("restart", 0);
      proc.ended = p.contains("exit");
      proc.how = p.value("exit", std::string());
      next_slot_ = std::max(next_slot_, proc.slot + 1);
      proc.job = p.value("job", std::string());
      procs_.push_back(std::move(proc));
    }
  }

  Result<pid_t> Restart(pid_t ended) override {
    auto it = std::find_if(procs_.begin(), procs_.end(), [&](const Proc& p) { return p.pid == ended; });
    if (it == procs_.end() || !it->ended) return Status::InvalidArgument("pid " + std::to_string(ended) + " is not an ended " + kind() + " process");
    if (it->argv.empty()) return Status::Infeasible("pid " + std::to_string(ended) + " was started by another ipcluster");
    Proc next;
    next.argv = it->argv;
    next.slot = it->slot;
    // The first process's log name, numbered by restart: ipengine-12-3.log, ipengine-12-3.1.log, ...
    int restart = 0;
    fs::path first;
    for (const auto& p : procs_) {
      if (p.slot != next.slot) continue;
      restart = std::max(restart, p.restart + 1);
      if (p.restart == 0) first = p.log;
    }
    if (first.empty()) first = it->log;
    next.restart = restart;
    next.log = first.parent_path() / (first.stem().string() + "." + std::to_string(restart) + first.extension().string());
    next.environment = it->environment;
    next.job = it->job;
    // What the ended process left in its group (an mpiexec's ranks, an engine's children) would
    // otherwise run on beside the replacement.
    StopGroups({ended}, std::chrono::seconds(2));
    Result<pid_t> pid = Spawn(next.argv, next.log, next.environment, group());
    if (!pid.ok()) return pid.status();
    next.pid = *pid;
    procs_.push_back(std::move(next));
    return *pid;
  }

 protected:
  explicit ProcessSetLauncher(LaunchContext context) : context_(std::move(context)) {}
  // With the kernel's autogroup scheduling (the default on desktop and many server kernels)
  // every session shares the CPU equally: thousands of local engines each in a session of
  // their own would leave the controller 1/N of the machine while they start, and it could
  // not register them. Local engines share ipcluster's session (one group of sessions for
  // all of them); the controller keeps its own.
  virtual SpawnOptions::Group group() const { return SpawnOptions::Group::kNewSession; }

  // `job`: the Local job (--adapt) the process belongs to, "" for none.
  Status Launch(const std::vector<std::string>& argv, const fs::path& log,
                const std::map<std::string, std::string>& environment = {}, const std::string& job = "") {
    if (context_.stop && context_.stop->load()) {
      return Status::Unavailable("interrupted while starting " + kind() + " processes, after " +
                                 std::to_string(procs_.size()));
    }
    Result<pid_t> pid = Spawn(argv, log, environment, group());
    if (!pid.ok()) return pid.status();
    Proc p;
    p.pid = *pid;
    p.log = log;
    p.argv = argv;
    p.slot = next_slot_++;
    p.job = job;
    p.environment = environment;
    procs_.push_back(std::move(p));
    return Status::OK();
  }

 public:
  // A Local job is running while any of its processes is.
  Result<std::vector<JobState>> Jobs() override {
    std::map<std::string, JobState> jobs;
    for (auto& p : procs_) {
      if (p.job.empty() || reported_.count(p.job)) continue;
      auto [it, fresh] = jobs.try_emplace(p.job, JobState{p.job, JobState::kEnded, ""});
      if (Poll(p)) {
        it->second.state = JobState::kRunning;
      } else {
        it->second.output += (it->second.output.empty() ? "pid " : ", pid ") + std::to_string(p.pid) + " " + p.how;
      }
    }
    std::vector<JobState> out;
    for (auto& [id, job] : jobs) {
      if (job.state == JobState::kEnded) reported_.insert(id);
      out.push_back(std::move(job));
    }
    return out;
  }

  Status Cancel(const std::string& id) override {
    std::vector<pid_t> groups;
    for (const auto& p : procs_) {
      if (p.job == id) groups.push_back(p.pid);
    }
    if (groups.empty()) return Status::NotFound("no Local job " + id);
    reported_.insert(id);
    if (!StopGroups(groups)) return Status::Unavailable("some processes of job " + id + " did not stop");
    // Stopped on purpose: not ended processes for `ipcluster list` to report.
    std::erase_if(procs_, [&](const Proc& p) { return p.job == id; });
    return Status::OK();
  }

 protected:

  LaunchContext context_;

 private:
  struct Proc {
    pid_t pid = 0;
    fs::path log;
    std::vector<std::string> argv;  // empty when restored from a cluster file
    int slot = 0;
    int restart = 0;  // 0: the slot's first process; n: its n-th replacement
    bool ended = false;
    bool requested = false;  // ended with status 0, or while we stopped it
    bool refused = false;    // see ProcessExit::refused
    std::string how;
    std::string job;                                  // the --adapt Local job it belongs to
    std::map<std::string, std::string> environment;  // what it was started with (restarts too)
  };
  // Alive? Reaps our own children, recording how they ended; a process another ipcluster
  // started (restored from a cluster file) can only be seen to be gone.
  bool Poll(Proc& p) const {
    if (p.ended) return false;
    int status = 0;
    pid_t r = waitpid(p.pid, &status, WNOHANG);
    if (r == p.pid) {
      p.ended = true;
      p.how = DescribeEnd(status, stopping_);
      p.requested = stopping_ || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
      p.refused = RefusedByTheController(status);
      return false;
    }
    if (r == 0 || ProcessAlive(p.pid)) return true;
    p.ended = true;
    p.how = "exited";
    p.requested = stopping_;
    return false;
  }

  std::vector<Proc> procs_;
  std::set<std::string> reported_;  // jobs reported ended or cancelled
  int next_slot_ = 0;
  bool stopping_ = false;
};

// Local engines and the local controller, or engines under mpiexec.
class ProcessLauncher : public ProcessSetLauncher {
 public:
  ProcessLauncher(std::string kind, LaunchContext context, bool controller)
      : ProcessSetLauncher(std::move(context)), kind_(std::move(kind)), controller_(controller) {}

  SpawnOptions::Group group() const override {
    return controller_ || kind_ != "Local" ? SpawnOptions::Group::kNewSession : SpawnOptions::Group::kNewGroup;
  }

  Status Start(int n) override {
    if (controller_) return StartOne(ControllerCommand(context_), "ipcontroller");
    if (kind_ == "MPI") {
      Json mpi = context_.config.value("mpi", Json::object());
      std::vector<std::string> argv = {mpi.value("mpiexec", std::string("mpiexec")), "-n", std::to_string(n)};
      // mpiexec gets them too, but only -x passes them to ranks on other hosts (Open MPI).
      for (const auto& [name, value] : EnvironmentFor(context_, "mpi")) {
        argv.push_back("-x");
        argv.push_back(name + "=" + value);
      }
      for (const auto& a : mpi.value("args", Json::array())) argv.push_back(a.get<std::string>());
      auto engine = EngineCommand(context_, /*mpi=*/true);
      argv.insert(argv.end(), engine.begin(), engine.end());
      return StartOne(argv, "mpiexec");
    }
    for (int i = 0; i < n; ++i) {
      if (Status s = StartOne(EngineCommand(context_), "ipengine"); !s.ok()) return s;
    }
    return Status::OK();
  }
  std::string kind() const override { return kind_; }
  std::string host() const override { return HostName(); }

  // A Local "job": `engines` engine processes that know it by IPP_JOB_ID, as batch engines know
  // theirs by SLURM_JOB_ID and the like.
  Status CanSubmitJobs() const override {
    return controller_ || kind_ != "Local" ? Launcher::CanSubmitJobs() : Status::OK();
  }
  Result<std::string> Submit(int engines) override {
    if (controller_ || kind_ != "Local") return Launcher::Submit(engines);
    static int jobs = 0;
    std::string id = "local-" + std::to_string(getpid()) + "-" + std::to_string(++jobs);
    const std::vector<std::string> argv = EngineCommand(context_);
    for (int i = 0; i < engines; ++i) {
      if (Status s = StartOne(argv, "ipengine", id); !s.ok()) return s;
    }
    return id;
  }

 private:
  Status StartOne(const std::vector<std::string>& argv, const std::string& name, const std::string& job = "") {
    static int counter = 0;
    std::map<std::string, std::string> environment = EnvironmentFor(context_, kind_ == "MPI" ? "mpi" : "");
    // A Local job's engines know it by IPP_JOB_ID, as batch engines know theirs by SLURM_JOB_ID.
    if (!job.empty()) environment["IPP_JOB_ID"] = job;
    return Launch(argv, context_.log_dir / (name + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".log"),
                  environment, job);
  }

  std::string kind_;
  bool controller_;
};

// ---------------------------------------------------------------------------------------------
// SSH: engines on other hosts; the connection info travels in IPP_CONNECTION_INFO.

class SshLauncher : public ProcessSetLauncher {
 public:
  static constexpr const char* kRemoteEngine = "ipp-remote-engine:";
  SshLauncher(LaunchContext context, bool controller) : ProcessSetLauncher(std::move(context)), controller_(controller) {}

  Status Start(int n) override {
    if (controller_) return StartController();
    Json ssh = context_.config.value("ssh", Json::object());
    Json hosts = ssh.value("engines", Json::object());  // {"host": count}
    if (hosts.empty()) return Status::InvalidArgument("SSH engines need \"ssh\": {\"engines\": {\"host\": n}} in ipcluster_config.json");
    auto engine_file = context_.profile_dir / "security" / protocol::ConnectionFileName("engine", context_.cluster_id);
    std::ifstream in(engine_file);
    std::string info((std::istreambuf_iterator<char>(in)), {});
    if (info.empty()) return Status::NotFound("cannot read " + engine_file.string());
    std::string remote = ssh.value("remote_ipengine", std::string("ipengine"));
    int started = 0;
    for (auto& [host, count_json] : hosts.items()) {
      int count = count_json.get<int>();
      for (int i = 0; i < count && (n <= 0 || started < n); ++i, ++started) {
        std::vector<std::string> engine = {remote};
        engine.insert(engine.end(), context_.engine_args.begin(), context_.engine_args.end());
        // The remote shell names its pid and host first: exec keeps the pid, so ipcluster can tell
        // the hub which engine ended when the session does.
        auto argv = SshCommand(ssh, host, "echo \"" + std::string(kRemoteEngine) + " $$ $(uname -n)\"; " +
                                              ShellAssignments(EnvironmentFor(context_, "ssh")) + "IPP_CONNECTION_INFO=" +
                                              ShellQuote({info}) + " exec " + ShellQuote(engine));
        fs::path log = context_.log_dir / ("ssh-engine-" + host + "-" + std::to_string(getpid()) + "-" + std::to_string(started) + ".log");
        if (Status s = Launch(argv, log); !s.ok()) return s;  // ssh ends the remote engine when stopped
      }
    }
    return Status::OK();
  }
  std::string kind() const override { return "SSH"; }
  std::pair<std::string, long> EngineProcess(const ProcessExit& ended) const override {
    std::ifstream in(ended.log);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(kRemoteEngine, 0) != 0) continue;
      std::istringstream words(line.substr(std::strlen(kRemoteEngine)));
      long pid = 0;
      std::string host;
      if (words >> pid >> host) return {host, pid};
    }
    return {"", 0};
  }

 private:
  // The controller on "ssh": {"controller": "host"}, started with the same profile directory
  // path: its connection files appear here when that directory is shared (as on a cluster's
  // shared filesystem), as with a controller submitted as a batch job.
  Status StartController() {
    Json ssh = context_.config.value("ssh", Json::object());
    std::string host = ssh.value("controller", std::string());
    if (host.empty()) return Status::InvalidArgument("an SSH controller needs \"ssh\": {\"controller\": \"host\"} in ipcluster_config.json");
    std::vector<std::string> command = ControllerCommand(context_);
    command[0] = ssh.value("remote_ipcontroller", std::string("ipcontroller"));
    return Launch(SshCommand(ssh, host, ShellAssignments(EnvironmentFor(context_, "ssh")) + "exec " + ShellQuote(command)), context_.log_dir / ("ssh-controller-" + host + "-" + std::to_string(getpid()) + ".log"));
  }

  // ssh to `host` running `remote` (a shell command line) there, as the "ssh" section says.
  // -tt: the remote process gets a terminal, so it is hung up when we end the session.
  static std::vector<std::string> SshCommand(const Json& ssh, const std::string& host, const std::string& remote) {
    std::vector<std::string> argv = {ssh.value("ssh", std::string("ssh")), "-tt"};
    for (const auto& a : ssh.value("ssh_args", Json::array())) argv.push_back(a.get<std::string>());
    argv.push_back(host);
    argv.push_back(remote);
    return argv;
  }

  bool controller_;
};

// ---------------------------------------------------------------------------------------------
// Batch systems

// Runs a submit or cancel command, its output appended to `log`; its exit status (-1 if a
// signal ended it).
Result<int> RunToEnd(const std::vector<std::string>& argv, const fs::path& log) {
  Result<pid_t> pid = Spawn(argv, log);
  if (!pid.ok()) return pid.status();
  int status = 0;
  while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class BatchLauncher : public Launcher {
 public:
  BatchLauncher(const BatchSystem& system, LaunchContext context, bool controller)
      : system_(system), context_(std::move(context)), controller_(controller) {}

  Status Start(int n) override { return Submit(n).status(); }

  Status CanSubmitJobs() const override {
    if (controller_) return Launcher::CanSubmitJobs();
    if (system_.status.empty()) {
      return Status::InvalidArgument(system_.name + " has no job-status command here (--adapt: Local, Slurm, SGE, PBS)");
    }
    return Status::OK();
  }
  Result<std::string> Submit(int n) override {
    std::string lower = system_.name;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    Json cfg = context_.config.value(lower, Json::object());
    std::string tmpl = controller_ ? system_.controller_template : system_.engine_template;
    std::string custom = cfg.value(controller_ ? "controller_template" : "engine_template", std::string());
    if (!custom.empty()) {
      std::ifstream in(custom);
      if (!in) return Status::NotFound("cannot read job template " + custom);
      tmpl.assign((std::istreambuf_iterator<char>(in)), {});
    }
    std::map<std::string, std::string> environment = EnvironmentFor(context_, lower);
    if (!environment.empty() && tmpl.find("{environment}") == std::string::npos) {
      return Status::InvalidArgument("job template " + (custom.empty() ? system_.name : custom) +
                                     " has no {environment} field for the environment to set");
    }
    std::string extra;
    for (const auto& d : cfg.value("extra_directives", Json::array())) extra += d.get<std::string>() + "\n";
    std::vector<std::string> command = controller_ ? ControllerCommand(context_) : EngineCommand(context_);
    Json fields = {{"n", n}, {"cluster_id", context_.cluster_id}, {"profile_dir", context_.profile_dir.string()},
                   {"log_dir", context_.log_dir.string()}, {"command", ShellQuote(command)}, {"extra", extra},
                   {"queue", cfg.value("queue", "")}, {"account", cfg.value("account", "")},
                   {"walltime", cfg.value("walltime", "")},
                   {"environment", EnvironmentLines(system_, environment)}};
    fields.update(DirectiveLines(system_, cfg));
    Result<std::string> script = FillTemplate(tmpl, fields);
    if (!script.ok()) return script.status();
    script_ = context_.profile_dir / ((controller_ ? "ipcontroller-" : "ipengine-") + lower + "-" + std::to_string(getpid()) +
                                      (submissions_ > 0 ? "-" + std::to_string(submissions_ + 1) : "") + ".job");
    {
      std::ofstream out(script_);
      out << *script;
      if (!out) return Status::IOError("cannot write job script " + script_.string());
    }
    std::vector<std::string> argv = system_.submit;
    for (const auto& a : cfg.value("submit_args", Json::array())) argv.push_back(a.get<std::string>());
    argv.push_back(script_.string());
    // One output file per submission: the job id is parsed from it.
    fs::path log = context_.log_dir / (lower + (controller_ ? "-submit-controller-" : "-submit-engines-") +
                                       std::to_string(getpid()) + "-" + std::to_string(++submissions_) + ".log");
    Result<int> status = RunToEnd(argv, log);
    if (!status.ok()) return status.status();
    std::ifstream in(log);
    std::string output((std::istreambuf_iterator<char>(in)), {});
    if (*status != 0) {
      return Status::Unavailable(system_.name + " submission failed (" + argv[0] + "): " + output);
    }
    Result<std::string> job = ParseJobId(system_, output);
    if (!job.ok()) return job.status();
    if (job_id_.empty()) {
      job_id_ = *job;
      output_ = custom.empty() ? JobOutput(system_, controller_, context_.log_dir.string(), job_id_)
                               : "as the job template " + custom + " says";
    }
    jobs_.push_back(*job);
    return *job;
  }

  Status Stop() override {
    Status result = Status::OK();
    for (const std::string& id : std::vector<std::string>(jobs_)) {
      if (Status s = Cancel(id); !s.ok()) result = s;
    }
    return result;
  }

  Status Cancel(const std::string& id) override {
    std::vector<std::string> argv = system_.cancel;
    argv.push_back(id);
    Result<int> status = RunToEnd(argv, context_.log_dir / "batch-cancel.log");
    if (!status.ok()) return status.status();
    if (*status != 0) {
      // Kept: a later Cancel or Stop tries again; a job that has ended anyway leaves jobs_ when
      // Jobs() no longer finds it in the queue.
      return Status::Unavailable(system_.name + " could not cancel job " + id + " (see " +
                                 (context_.log_dir / "batch-cancel.log").string() + ")");
    }
    std::erase(jobs_, id);
    return Status::OK();
  }

  Result<std::vector<JobState>> Jobs() override {
    if (system_.status.empty()) return Launcher::Jobs();
    if (jobs_.empty()) return std::vector<JobState>{};
    fs::path log = context_.log_dir / ("batch-status-" + std::to_string(getpid()) + ".log");
    std::error_code ec;
    fs::remove(log, ec);
    Result<int> status = RunToEnd(system_.status, log);
    std::ifstream in(log);
    std::string output((std::istreambuf_iterator<char>(in)), {});
    if (!status.ok()) return status.status();
    if (*status != 0) return Status::Unavailable(system_.status[0] + " failed: " + output);
    std::vector<JobState> states = ParseJobStates(system_, output, jobs_);
    for (const auto& j : states) {
      if (j.state != JobState::kEnded) continue;
      std::erase(jobs_, j.id);
      // Listed in an end state that keeps it in the queue (SGE's Eqw): removed from there too.
      if (j.output != "no longer in the queue") {
        std::vector<std::string> argv = system_.cancel;
        argv.push_back(j.id);
        (void)RunToEnd(argv, context_.log_dir / "batch-cancel.log");
      }
    }
    return states;
  }
  int Alive() override { return -1; }
  std::string FailureLog() override {
    std::string out = "job " + job_id_ + " (script " + script_.string() + "), output " + output_;
    if (!output_.empty() && output_.find('*') == std::string::npos && fs::exists(output_)) out += ":\n" + Tail(output_);
    return out;
  }
  std::vector<ProcessExit> Exits() override { return {}; }
  std::string LogLocation() const override {
    return output_.empty() ? context_.log_dir.string() + " (the job's output)" : output_;
  }
  Json State() const override {
    return {{"job_id", job_id_}, {"jobs", jobs_}, {"script", script_.string()}, {"output", output_}};
  }
  std::string kind() const override { return system_.name; }
  void Restore(const Json& state) {
    job_id_ = state.value("job_id", "");
    script_ = state.value("script", "");
    output_ = state.value("output", "");
    jobs_ = state.value("jobs", std::vector<std::string>{});
    if (jobs_.empty() && !job_id_.empty() && !state.contains("jobs")) jobs_.push_back(job_id_);
  }

 private:
  const BatchSystem& system_;
  LaunchContext context_;
  bool controller_;
  int submissions_ = 0;
  std::string job_id_;             // the first job (what a plain start submitted)
  std::vector<std::string> jobs_;  // every job not yet seen to end or cancelled
  fs::path script_;
  std::string output_;  // the job's output file (or pattern), once submitted
};

template <typename L>
std::unique_ptr<Launcher> Restored(std::unique_ptr<L> launcher, const Json& state) {
  if (state.is_object()) launcher->Restore(state);
  return launcher;
}

}  // namespace

Result<std::unique_ptr<Launcher>> MakeEngineLauncher(const std::string& kind, const LaunchContext& context,
                                                     const Json& state) {
  std::string k = CanonicalKind(kind);
  if (k == "Local" || k == "MPI") return Restored(std::make_unique<ProcessLauncher>(k, context, false), state);
  if (k == "SSH") return Restored(std::make_unique<SshLauncher>(context, false), state);
  if (const BatchSystem* b = FindBatchSystem(k)) return Restored(std::make_unique<BatchLauncher>(*b, context, false), state);
  return Status::InvalidArgument("unknown engine launcher '" + kind + "' (use Local, MPI, SSH, Slurm, PBS, SGE, LSF or HTCondor)");
}

Result<std::unique_ptr<Launcher>> MakeControllerLauncher(const std::string& kind, const LaunchContext& context,
                                                         const Json& state) {
  std::string k = CanonicalKind(kind);
  if (k == "Local") return Restored(std::make_unique<ProcessLauncher>(k, context, true), state);
  if (k == "SSH") return Restored(std::make_unique<SshLauncher>(context, true), state);
  if (const BatchSystem* b = FindBatchSystem(k)) return Restored(std::make_unique<BatchLauncher>(*b, context, true), state);
  return Status::InvalidArgument("unknown controller launcher '" + kind + "' (use Local, SSH, Slurm, PBS, SGE, LSF or HTCondor)");
}

}  // namespace ipp::launchers

#include "launchers/launcher.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <deque>
#include <fstream>
#include <thread>

#include "launchers/batch.hpp"
#include "protocol/connection_file.hpp"

namespace ipp::launchers {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Processes

Result<pid_t> Spawn(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot open log file " + log.string());
  pid_t pid = fork();
  if (pid < 0) {
    ::close(fd);
    return Status::Unavailable("fork failed");
  }
  if (pid == 0) {
    setsid();
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    execvp(args[0], args.data());
    dprintf(2, "cannot run %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  ::close(fd);
  return pid;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) == pid) return false;  // our child, now reaped
  if (kill(pid, 0) != 0) return false;
  // A zombie (not our child) still answers kill(0): read its state. It may vanish while we
  // read, which libstdc++ reports by throwing: then it is gone.
  std::string text;
  try {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    text.assign(std::istreambuf_iterator<char>(stat), {});
  } catch (const std::exception&) {
    return false;
  }
  size_t paren = text.rfind(')');
  return !(paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z');
}

bool StopGroup(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return true;
  kill(-pid, SIGTERM);
  kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    // Done when the leader and every other member of its group (e.g. MPI ranks) are gone.
    if (!ProcessAlive(pid) && (kill(-pid, 0) != 0 && errno == ESRCH)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return !ProcessAlive(pid);
}

std::string Tail(const fs::path& file, size_t lines) {
  std::ifstream in(file);
  std::deque<std::string> last;
  for (std::string line; std::getline(in, line);) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += "    " + l + "\n";
  return out;
}

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

class ProcessLauncher : public Launcher {
 public:
  ProcessLauncher(std::string kind, LaunchContext context, bool controller)
      : kind_(std::move(kind)), context_(std::move(context)), controller_(controller) {}

  Status Start(int n) override {
    if (controller_) return StartOne(ControllerCommand(context_), "ipcontroller");
    if (kind_ == "MPI") {
      Json mpi = context_.config.value("mpi", Json::object());
      std::vector<std::string> argv = {mpi.value("mpiexec", std::string("mpiexec")), "-n", std::to_string(n)};
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

  Status Stop() override {
    // Signal every group first, then wait: stopping 256 engines one by one would take long.
    for (const auto& p : procs_) {
      kill(-p.pid, SIGTERM);
      kill(p.pid, SIGTERM);
    }
    bool all = true;
    for (const auto& p : procs_) all = StopGroup(p.pid) && all;
    return all ? Status::OK() : Status::Unavailable("some processes did not stop");
  }

  int Alive() const override {
    int n = 0;
    for (const auto& p : procs_) n += ProcessAlive(p.pid);
    return n;
  }

  std::string FailureLog() const override {
    for (const auto& p : procs_) {
      if (!ProcessAlive(p.pid)) return p.log.string() + ":\n" + Tail(p.log);
    }
    return procs_.empty() ? "" : procs_.front().log.string() + ":\n" + Tail(procs_.front().log);
  }

  Json State() const override {
    Json procs = Json::array();
    for (const auto& p : procs_) procs.push_back({{"pid", p.pid}, {"log", p.log.string()}});
    return {{"processes", procs}};
  }
  std::string kind() const override { return kind_; }

  void Restore(const Json& state) {
    for (const auto& p : state.value("processes", Json::array())) {
      procs_.push_back({p.at("pid").get<pid_t>(), p.value("log", std::string())});
    }
  }

 private:
  struct Proc {
    pid_t pid;
    fs::path log;
  };
  Status StartOne(const std::vector<std::string>& argv, const std::string& name) {
    static int counter = 0;
    fs::path log = context_.log_dir / (name + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".log");
    Result<pid_t> pid = Spawn(argv, log);
    if (!pid.ok()) return pid.status();
    procs_.push_back({*pid, log});
    return Status::OK();
  }

  std::string kind_;
  LaunchContext context_;
  bool controller_;
  std::vector<Proc> procs_;
};

// ---------------------------------------------------------------------------------------------
// SSH: engines on other hosts; the connection info travels in IPP_CONNECTION_INFO.

class SshLauncher : public Launcher {
 public:
  SshLauncher(LaunchContext context, bool controller) : context_(std::move(context)), controller_(controller) {}

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
        // -tt: the remote engine gets a terminal, so it is hung up when we end the session.
        std::vector<std::string> argv = {ssh.value("ssh", std::string("ssh")), "-tt"};
        for (const auto& a : ssh.value("ssh_args", Json::array())) argv.push_back(a.get<std::string>());
        std::vector<std::string> engine = {remote};
        engine.insert(engine.end(), context_.engine_args.begin(), context_.engine_args.end());
        argv.push_back(host);
        argv.push_back("IPP_CONNECTION_INFO=" + ShellQuote({info}) + " exec " + ShellQuote(engine));
        fs::path log = context_.log_dir / ("ssh-engine-" + host + "-" + std::to_string(getpid()) + "-" + std::to_string(started) + ".log");
        Result<pid_t> pid = Spawn(argv, log);
        if (!pid.ok()) return pid.status();
        procs_.push_back({*pid, log});
      }
    }
    return Status::OK();
  }
  Status Stop() override {
    bool all = true;
    for (const auto& p : procs_) all = StopGroup(p.first) && all;  // ssh ends the remote engine
    return all ? Status::OK() : Status::Unavailable("some ssh sessions did not stop");
  }
  int Alive() const override {
    int n = 0;
    for (const auto& p : procs_) n += ProcessAlive(p.first);
    return n;
  }
  std::string FailureLog() const override {
    for (const auto& p : procs_) {
      if (!ProcessAlive(p.first)) return p.second.string() + ":\n" + Tail(p.second);
    }
    return "";
  }
  Json State() const override {
    Json procs = Json::array();
    for (const auto& p : procs_) procs.push_back({{"pid", p.first}, {"log", p.second.string()}});
    return {{"processes", procs}};
  }
  std::string kind() const override { return "SSH"; }
  void Restore(const Json& state) {
    for (const auto& p : state.value("processes", Json::array())) procs_.emplace_back(p.at("pid").get<pid_t>(), p.value("log", ""));
  }

 private:
  // The controller on "ssh": {"controller": "host"}, started with the same profile directory
  // path: its connection files appear here when that directory is shared (as on a cluster's
  // shared filesystem), as with a controller submitted as a batch job.
  Status StartController() {
    Json ssh = context_.config.value("ssh", Json::object());
    std::string host = ssh.value("controller", std::string());
    if (host.empty()) return Status::InvalidArgument("an SSH controller needs \"ssh\": {\"controller\": \"host\"} in ipcluster_config.json");
    std::vector<std::string> argv = {ssh.value("ssh", std::string("ssh")), "-tt"};
    for (const auto& a : ssh.value("ssh_args", Json::array())) argv.push_back(a.get<std::string>());
    std::vector<std::string> command = ControllerCommand(context_);
    command[0] = ssh.value("remote_ipcontroller", std::string("ipcontroller"));
    argv.push_back(host);
    argv.push_back("exec " + ShellQuote(command));
    fs::path log = context_.log_dir / ("ssh-controller-" + host + "-" + std::to_string(getpid()) + ".log");
    Result<pid_t> pid = Spawn(argv, log);
    if (!pid.ok()) return pid.status();
    procs_.push_back({*pid, log});
    return Status::OK();
  }

  LaunchContext context_;
  bool controller_;
  std::vector<std::pair<pid_t, fs::path>> procs_;
};

// ---------------------------------------------------------------------------------------------
// Batch systems

class BatchLauncher : public Launcher {
 public:
  BatchLauncher(const BatchSystem& system, LaunchContext context, bool controller)
      : system_(system), context_(std::move(context)), controller_(controller) {}

  Status Start(int n) override {
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
    auto line = [&](const char* key, const char* directive) {
      std::string v = cfg.value(key, std::string());
      return v.empty() ? std::string() : std::string(directive) + v + "\n";
    };
    std::string prefix = system_.name == "Slurm" ? "#SBATCH " : system_.name == "PBS" ? "#PBS " :
                         system_.name == "SGE" ? "#$ " : system_.name == "LSF" ? "#BSUB " : "";
    std::string extra;
    for (const auto& d : cfg.value("extra_directives", Json::array())) extra += d.get<std::string>() + "\n";
    std::vector<std::string> command = controller_ ? ControllerCommand(context_) : EngineCommand(context_);
    Json fields = {{"n", n}, {"cluster_id", context_.cluster_id}, {"profile_dir", context_.profile_dir.string()},
                   {"log_dir", context_.log_dir.string()}, {"command", ShellQuote(command)}, {"extra", extra},
                   {"queue", cfg.value("queue", "")}, {"account", cfg.value("account", "")},
                   {"walltime", cfg.value("walltime", "")},
                   {"queue_line", prefix.empty() ? "" : line("queue", (prefix + (system_.name == "Slurm" ? "--partition=" : system_.name == "LSF" ? "-q " : "-q ")).c_str())},
                   {"account_line", prefix.empty() ? "" : line("account", (prefix + (system_.name == "Slurm" ? "--account=" : system_.name == "LSF" ? "-P " : "-A ")).c_str())},
                   {"walltime_line", prefix.empty() ? "" : line("walltime", (prefix + (system_.name == "Slurm" ? "--time=" : system_.name == "LSF" ? "-W " : "-l walltime=")).c_str())}};
    Result<std::string> script = FillTemplate(tmpl, fields);
    if (!script.ok()) return script.status();
    script_ = context_.profile_dir / ((controller_ ? "ipcontroller-" : "ipengine-") + lower + "-" + std::to_string(getpid()) + ".job");
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
    Result<pid_t> pid = Spawn(argv, log);
    if (!pid.ok()) return pid.status();
    int status = 0;
    waitpid(*pid, &status, 0);
    std::ifstream in(log);
    std::string output((std::istreambuf_iterator<char>(in)), {});
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return Status::Unavailable(system_.name + " submission failed (" + argv[0] + "): " + output);
    }
    Result<std::string> job = ParseJobId(system_, output);
    if (!job.ok()) return job.status();
    job_id_ = *job;
    return Status::OK();
  }

  Status Stop() override {
    if (job_id_.empty()) return Status::OK();
    std::vector<std::string> argv = system_.cancel;
    argv.push_back(job_id_);
    Result<pid_t> pid = Spawn(argv, context_.log_dir / "batch-cancel.log");
    if (!pid.ok()) return pid.status();
    int status = 0;
    waitpid(*pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0
               ? Status::OK()
               : Status::Unavailable(system_.name + " could not cancel job " + job_id_);
  }
  int Alive() const override { return -1; }
  std::string FailureLog() const override { return "job " + job_id_ + " (script " + script_.string() + ")"; }
  Json State() const override { return {{"job_id", job_id_}, {"script", script_.string()}}; }
  std::string kind() const override { return system_.name; }
  void Restore(const Json& state) {
    job_id_ = state.value("job_id", "");
    script_ = state.value("script", "");
  }

 private:
  const BatchSystem& system_;
  LaunchContext context_;
  bool controller_;
  int submissions_ = 0;
  std::string job_id_;
  fs::path script_;
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

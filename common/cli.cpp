#include "common/cli.hpp"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "common/logging.hpp"

namespace ipp::cli {

int Parse(int argc, char** argv, const std::string& usage, const po::options_description& options,
          po::variables_map& vm, std::vector<std::string>* traitlets,
          const po::positional_options_description* positional) {
  po::options_description all(options);
  all.add_options()("help,h", "show this help and exit");
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(all);
    if (positional) parser.positional(*positional);
    if (traitlets) parser.allow_unregistered();
    po::parsed_options parsed = parser.run();
    if (traitlets) {
      for (const std::string& arg : po::collect_unrecognized(parsed.options, po::include_positional)) {
        if (positional && arg.rfind("--", 0) != 0) continue;
        traitlets->push_back(arg);
      }
    }
    po::store(parsed, vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << all << std::endl;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << argv[0] << ": " << e.what() << "\n(see " << argv[0] << " --help)" << std::endl;
    return 2;
  }
  return -1;
}

void DefaultsFromEnvironment(std::string* profile_dir, std::string* cluster_id, std::string* session_key) {
  auto take = [](const char* name, std::string* out) {
    const char* value = std::getenv(name);
    if (out && value) *out = value;
  };
  take("IPP_PROFILE_DIR", profile_dir);
  take("IPP_CLUSTER_ID", cluster_id);
  take("IPP_SESSION_KEY", session_key);
}

std::string SetUpLogging(const std::string& level, bool to_file, const std::string& log_dir,
                         const std::string& program) {
  auto parsed = ParseLogLevel(level);
  if (!parsed.ok()) return parsed.status().message();
  SetLogLevel(*parsed);
  if (!to_file) return "";
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  auto path = std::filesystem::path(log_dir) / (program + "-" + std::to_string(getpid()) + ".log");
  Status s = SetLogFile(path.string());
  return s.ok() ? "" : s.message();
}

void ProcessOptions::AddProfile(const std::string& cluster_id_help) {
  options.add_options()
      ("profile", po::value(&profile)->default_value("default"), "profile name: $IPYTHONDIR/profile_<name>")
      ("profile-dir", po::value(&profile_dir), "explicit profile directory (overrides --profile; default: $IPP_PROFILE_DIR)")
      ("cluster-id", po::value(&cluster_id), (cluster_id_help + " (default: $IPP_CLUSTER_ID)").c_str());
}

void ProcessOptions::AddProcess() {
  options.add_options()
      ("log-level", po::value(&log_level)->default_value("INFO"), "10/20/30/40/50 or DEBUG/INFO/WARN/ERROR/CRITICAL")
      ("log-to-file", po::bool_switch(&log_to_file), ("log to <profile>/log/" + program + "-<pid>.log instead of stderr").c_str())
      ("work-dir", po::value(&work_dir), "change to this directory first");
}

int ProcessOptions::Parse(int argc, char** argv) {
  if (int rc = cli::Parse(argc, argv, usage, options, vm, &traitlets); rc >= 0) return rc;
  if (!work_dir.empty() && chdir(work_dir.c_str()) != 0) return Fail("cannot change to " + work_dir);
  return -1;
}

std::string ProcessOptions::SetUpLogging(const std::string& log_dir) const {
  return cli::SetUpLogging(log_level, log_to_file, log_dir, program);
}

int ProcessOptions::Fail(const std::string& message) const {
  std::cerr << program << ": " << message << std::endl;
  return 2;
}

namespace {
std::atomic<void (*)(void*)> g_stop{nullptr};
std::atomic<void*> g_stop_target{nullptr};
std::atomic<int> g_stop_signal{0};
void OnStopSignal(int signal) {
  g_stop_signal.store(signal);
  void* target = g_stop_target.load();
  auto stop = g_stop.load();
  if (target && stop) stop(target);
}
}  // namespace

int StopSignal() { return g_stop_signal.load(); }

void SetStopHandler(void (*stop)(void*), void* target) {
  g_stop_target.store(nullptr);
  g_stop.store(stop);
  g_stop_target.store(target);
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  std::signal(SIGHUP, OnStopSignal);
  std::signal(SIGPIPE, SIG_IGN);
}

int RunSubcommand(int argc, char** argv, const std::string& program,
                  const std::map<std::string, Subcommand>& commands) {
  auto usage = [&](std::ostream& out) {
    out << "usage: " << program << " COMMAND [options]   (" << program << " COMMAND --help for its options)\n\ncommands:\n";
    for (const auto& [name, cmd] : commands) {
      out << "  " << name << std::string(name.size() < 10 ? 10 - name.size() : 1, ' ') << cmd.summary << "\n";
    }
  };
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(std::cout);
    return argc < 2 ? 2 : 0;
  }
  auto it = commands.find(argv[1]);
  if (it == commands.end()) {
    std::cerr << program << ": unknown command '" << argv[1] << "'\n";
    usage(std::cerr);
    return 2;
  }
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace ipp::cli

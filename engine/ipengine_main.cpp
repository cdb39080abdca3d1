// ipengine: parses options, finds the connection file, builds the Engine, runs it.
#include <csignal>
#include <cstdlib>
#include <iostream>

#include "common/cli.hpp"
#include "common/logging.hpp"
#include "engine/engine.hpp"
#include "protocol/profile_dir.hpp"

namespace {
ipp::engine::Engine* g_engine = nullptr;
void OnSignal(int) {
  if (g_engine) g_engine->Stop();
}
}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string profile = "default", profile_dir, cluster_id, file, log_level = "INFO", work_dir;
  std::vector<std::string> plugins;
  int id = -1, hb_misses = 10;
  double timeout = 30;
  ipp::cli::DefaultsFromEnvironment(&profile_dir, &cluster_id, nullptr);
  po::options_description options("Options");
  options.add_options()
      ("profile", po::value(&profile)->default_value("default"), "profile name: $IPYTHONDIR/profile_<name>")
      ("profile-dir", po::value(&profile_dir), "explicit profile directory (overrides --profile; default: $IPP_PROFILE_DIR)")
      ("cluster-id", po::value(&cluster_id), "read ipcontroller-<id>-engine.json (default: $IPP_CLUSTER_ID)")
      ("file,f", po::value(&file), "the engine connection file (default: <profile>/security/ipcontroller[-<id>]-engine.json;"
                                   " or the JSON in $IPP_CONNECTION_INFO)")
      ("load,l", po::value(&plugins)->composing(), "a plugin library of native functions to load (repeatable)")
      ("mpi", "initialise MPI (run under mpiexec): functions see the rank, size and communicator")
      ("id", po::value(&id), "request this engine id")
      ("timeout", po::value(&timeout)->default_value(30), "seconds to wait for the controller to answer registration")
      ("hb-misses", po::value(&hb_misses)->default_value(10), "exit after this many heartbeat periods without a ping")
      ("log-level", po::value(&log_level)->default_value("INFO"), "10/20/30/40/50 or DEBUG/INFO/WARN/ERROR/CRITICAL")
      ("log-to-file", "log to <profile>/log/ipengine-<pid>.log instead of stderr")
      ("work-dir", po::value(&work_dir), "change to this directory first");
  po::variables_map vm;
  std::vector<std::string> traitlets;
  int rc = ipp::cli::Parse(argc, argv,
                           "usage: ipengine [options]\n\n"
                           "Start a native C++ engine of an IPython Parallel cluster. It registers with the\n"
                           "controller named in the engine connection file and runs native functions from\n"
                           "plugin libraries and shell commands for clients.",
                           options, vm, &traitlets);
  if (rc >= 0) return rc;
  auto fail = [](const std::string& message) {
    std::cerr << "ipengine: " << message << std::endl;
    return 2;
  };
  if (!work_dir.empty() && chdir(work_dir.c_str()) != 0) return fail("cannot change to " + work_dir);
  auto profile_path = ipp::protocol::ProfileDir::Resolve(profile, profile_dir);
  if (auto e = ipp::cli::SetUpLogging(log_level, vm.count("log-to-file"), profile_path.log_dir().string(), "ipengine");
      !e.empty()) {
    return fail(e);
  }
  auto log = ipp::MakeLogger("engine");
  for (const auto& t : traitlets) {
    if (t.rfind("--", 0) == 0 && t.find('.') != std::string::npos && t.find('=') != std::string::npos) {
      log->warn("{} is not supported by this engine; ignored", t);
    } else {
      return fail("unrecognised argument '" + t + "' (see --help)");
    }
  }

  ipp::engine::EngineOptions o;
  const char* env = std::getenv("IPP_CONNECTION_INFO");
  if (file.empty() && env && *env) {
    auto info = ipp::protocol::ParseConnectionInfo(env, "$IPP_CONNECTION_INFO");
    if (!info.ok()) return fail(info.status().message());
    o.connection = *info;
  } else {
    if (file.empty()) {
      file = (profile_path.security_dir() / ipp::protocol::ConnectionFileName("engine", cluster_id)).string();
    }
    auto info = ipp::protocol::ReadConnectionFile(file);
    if (!info.ok()) {
      bool missing = info.status().code() == ipp::Status::Code::kNotFound;
      return fail(info.status().message() + (missing ? " (is the controller running with this profile?)" : ""));
    }
    o.connection = *info;
    o.connection_file = file;
  }
  if (id >= 0) o.requested_id = id;
  o.mpi = vm.count("mpi") > 0;
  o.plugins = plugins;
  o.max_heartbeat_misses = hb_misses;
  o.registration_timeout = std::chrono::milliseconds(static_cast<long>(timeout * 1000));

  ipp::engine::Engine engine(o, log);
  g_engine = &engine;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGHUP, OnSignal);  // e.g. the ssh session of an SSH launcher ended
  std::signal(SIGPIPE, SIG_IGN);
  if (auto s = engine.Start(); !s.ok()) {
    g_engine = nullptr;
    log->error("{}", s.message());
    return 1;
  }
  int code = engine.Run();
  g_engine = nullptr;
  return code;
}

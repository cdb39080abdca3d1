// ipengine: parses options, finds the connection file, builds the Engine, runs it.
#include <cstdlib>
#include <iostream>

#include "common/cli.hpp"
#include "common/logging.hpp"
#include "engine/engine.hpp"
#include "protocol/profile_dir.hpp"

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  ipp::cli::ProcessOptions process("ipengine",
                                    "usage: ipengine [options]\n\n"
                                    "Start a native C++ engine of an IPython Parallel cluster. It registers with the\n"
                                    "controller named in the engine connection file and runs native functions from\n"
                                    "plugin libraries and shell commands for clients.");
  std::string file;
  std::vector<std::string> plugins, tags, resources;
  int id = -1, hb_misses = 10;
  double timeout = 30;
  ipp::cli::DefaultsFromEnvironment(&process.profile_dir, &process.cluster_id, nullptr);
  process.AddProfile("read ipcontroller-<id>-engine.json");
  process.options.add_options()
      ("file,f", po::value(&file), "the engine connection file (default: <profile>/security/ipcontroller[-<id>]-engine.json;"
                                   " or the JSON in $IPP_CONNECTION_INFO)")
      ("load,l", po::value(&plugins)->composing(), "a plugin library of native functions to load (repeatable)")
      ("tag", po::value(&tags)->composing(), "a tag this engine announces (repeatable); tasks that require it run only on engines with it")
      ("resources", po::value(&resources)->composing(),
       "resources this engine announces, NAME=NUMBER[,NAME=NUMBER...] (repeatable), e.g. gpus=2,mem=64; a task may require gpus>=2")
      ("mpi", "initialise MPI (run under mpiexec): functions see the rank, size and communicator; loads "
              "libipp_engine_mpi.so, installed beside ipengine (a plain engine does not load MPI)")
      ("id", po::value(&id), "request this engine id")
      ("timeout", po::value(&timeout)->default_value(30), "seconds to wait for the controller to answer registration")
      ("hb-misses", po::value(&hb_misses)->default_value(10), "exit after this many heartbeat periods without a ping");
  process.AddProcess();
  if (int rc = process.Parse(argc, argv); rc >= 0) return rc;
  auto fail = [&process](const std::string& message) { return process.Fail(message); };
  auto profile_path = ipp::protocol::ProfileDir::Resolve(process.profile, process.profile_dir);
  if (auto e = process.SetUpLogging(profile_path.log_dir().string()); !e.empty()) return fail(e);
  auto log = ipp::MakeLogger("engine");
  for (const auto& t : process.traitlets) {
    if (t.rfind("--", 0) == 0 && t.find('.') != std::string::npos && t.find('=') != std::string::npos) {
      log->warn("{} is not supported by this engine; ignored", t);
    } else {
      return fail("unrecognised argument '" + t + "' (see --help)");
    }
  }

  ipp::engine::EngineOptions o;
  for (const std::string& tag : tags) {
    // A tag is what a task names in "requires": the same parser says whether it can be.
    auto parsed = ipp::protocol::ParseRequirements(tag);
    if (!parsed.ok()) return fail("--tag: " + parsed.status().message());
    if (parsed->size() != 1 || parsed->front().at_least) return fail("--tag '" + tag + "' is not a tag name (letters, digits, _-.:/)");
    o.tags.insert(tag);
  }
  for (const std::string& text : resources) {
    if (auto s = ipp::protocol::ParseResources(text, &o.resources); !s.ok()) return fail("--resources: " + s.message());
  }

  const char* env = std::getenv("IPP_CONNECTION_INFO");
  if (file.empty() && env && *env) {
    auto info = ipp::protocol::ParseConnectionInfo(env, "$IPP_CONNECTION_INFO");
    if (!info.ok()) return fail(info.status().message());
    o.connection = *info;
  } else {
    if (file.empty()) {
      file = (profile_path.security_dir() / ipp::protocol::ConnectionFileName("engine", process.cluster_id)).string();
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
  o.mpi = process.vm.count("mpi") > 0;
  o.plugins = plugins;
  o.max_heartbeat_misses = hb_misses;
  o.registration_timeout = std::chrono::milliseconds(static_cast<long>(timeout * 1000));

  ipp::engine::Engine engine(o, log);
  ipp::cli::StopOnSignals(&engine);
  if (auto s = engine.Start(); !s.ok()) {
    ipp::cli::StopOnSignals<ipp::engine::Engine>(nullptr);
    if (int signal = ipp::cli::StopSignal(); signal != 0) {
      log->info("{} (signal {}); exiting", s.message(), signal);
      return 128 + signal;  // the shell's convention for a process ended by a signal
    }
    log->error("{}", s.message());
    return s.code() == ipp::Status::Code::kInfeasible ? ipp::cli::kExitRegistrationRefused : 1;
  }
  int code = engine.Run();
  ipp::cli::StopOnSignals<ipp::engine::Engine>(nullptr);
  return code;
}

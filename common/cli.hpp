// Helpers shared by the executables' option parsing (Boost.Program_options).
#pragma once

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace ipp::cli {

namespace po = boost::program_options;

// ipengine's exit status when the controller refused its registration (out of file descriptors,
// its uuid in use, ...): sysexits' EX_UNAVAILABLE. ipcluster does not restart such an engine,
// since the same registration would be refused again.
constexpr int kExitRegistrationRefused = 69;

// Parses argv against `options`. Prints usage and returns 0 for --help, prints a one-line error
// and returns 2 for bad arguments, returns -1 to go on. Unknown `--Class.trait=value` arguments
// (ipyparallel's traitlets config) are collected into `*traitlets` when it is given, else rejected.
int Parse(int argc, char** argv, const std::string& usage, const po::options_description& options,
          po::variables_map& vm, std::vector<std::string>* traitlets = nullptr,
          const po::positional_options_description* positional = nullptr);

// ipyparallel 8+ launchers (ipp.Cluster, ipcluster) pass the profile directory, cluster id and
// session key through the environment ($IPP_PROFILE_DIR, $IPP_CLUSTER_ID, $IPP_SESSION_KEY)
// instead of arguments. Copies each one that is set into the given default (a null pointer skips
// it); call before Parse so that arguments still win, as in ipyparallel.
void DefaultsFromEnvironment(std::string* profile_dir, std::string* cluster_id, std::string* session_key);

// Applies --log-level (ipyparallel numbers or names) and --log-to-file
// (<log_dir>/<program>-<pid>.log). Returns an error message, or "" when all is well.
std::string SetUpLogging(const std::string& level, bool to_file, const std::string& log_dir,
                         const std::string& program);

// What the long-running processes (ipcontroller, ipengine) share on their command line:
// --profile, --profile-dir, --cluster-id (AddProfile), --log-level, --log-to-file, --work-dir
// (AddProcess), and what they do with them first.
struct ProcessOptions {
  // `usage` opens --help.
  ProcessOptions(std::string program_name, std::string usage_text)
      : program(std::move(program_name)), usage(std::move(usage_text)) {}

  std::string program, usage;
  std::string profile = "default", profile_dir, cluster_id, log_level = "INFO", work_dir;
  bool log_to_file = false;
  // The program's own options go here too, between AddProfile and AddProcess (--help lists
  // them in that order).
  po::options_description options{"Options"};
  po::variables_map vm;
  std::vector<std::string> traitlets;  // --Class.trait=value arguments, for the program to judge

  // `cluster_id_help` says what the cluster id names for this program.
  void AddProfile(const std::string& cluster_id_help);
  void AddProcess();
  // cli::Parse, then changes to --work-dir (before the profile is resolved: a relative
  // --profile-dir is taken from there). -1 to go on, else the exit code.
  int Parse(int argc, char** argv);
  // SetUpLogging as --log-level and --log-to-file say.
  std::string SetUpLogging(const std::string& log_dir) const;
  // Prints "<program>: <message>" to stderr; returns 2, the exit code for a bad start.
  int Fail(const std::string& message) const;
};

// Until it is given nullptr, SIGINT, SIGTERM and SIGHUP (e.g. the ssh session of an SSH
// launcher ended) call target->Stop(), which must be async-signal-safe (Controller's and
// Engine's are); SIGPIPE is ignored (a peer that went away is an error value, not our end).
template <typename T>
void StopOnSignals(T* target) {
  SetStopHandler([](void* t) { static_cast<T*>(t)->Stop(); }, target);
}
void SetStopHandler(void (*stop)(void*), void* target);
// The last signal that reached the stop handler, 0 if none.
int StopSignal();

// `program COMMAND [options]`: runs the named subcommand with argv shifted so its argv[0] is
// the command name; prints the list of commands for --help or an unknown command.
struct Subcommand {
  int (*run)(int argc, char** argv);
  const char* summary;
};
int RunSubcommand(int argc, char** argv, const std::string& program,
                  const std::map<std::string, Subcommand>& commands);

}  // namespace ipp::cli

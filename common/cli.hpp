// Helpers shared by the executables' option parsing (Boost.Program_options).
#pragma once

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace ipp::cli {

namespace po = boost::program_options;

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
  std::string profile = "default", profile_dir, cluster_id, log_level = "INFO", work_dir;
  bool log_to_file = false;

  // `cluster_id_help` says what the cluster id names for this program.
  void AddProfile(po::options_description& options, const std::string& cluster_id_help);
  void AddProcess(po::options_description& options, const std::string& program);
  // After Parse, before resolving the profile (a relative --profile-dir is taken from the
  // work dir): changes to --work-dir. Returns an error message, or "".
  std::string EnterWorkDir() const;
  // SetUpLogging as --log-level and --log-to-file say.
  std::string SetUpLogging(const std::string& log_dir, const std::string& program) const;
};

// SIGINT, SIGTERM and SIGHUP (e.g. the ssh session of an SSH launcher ended) call `stop`;
// SIGPIPE is ignored (a peer that went away is an error value, not our end).
void HandleStopSignals(void (*stop)(int));

// `program COMMAND [options]`: runs the named subcommand with argv shifted so its argv[0] is
// the command name; prints the list of commands for --help or an unknown command.
struct Subcommand {
  int (*run)(int argc, char** argv);
  const char* summary;
};
int RunSubcommand(int argc, char** argv, const std::string& program,
                  const std::map<std::string, Subcommand>& commands);

}  // namespace ipp::cli

// The options every ipp subcommand takes, parsing them, and connecting with them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "ipp/client.hpp"

namespace ipp_cmd {

namespace po = boost::program_options;
using ipp::Json;

// The options every subcommand takes.
struct Common {
  std::string profile = "default", profile_dir, cluster_id, file;
  double timeout = 10;
  bool json = false;
  std::string ssh;
  std::vector<std::string> ssh_args;
};

// Prints "ipp: message" on stderr; returns the exit code 1.
int Fail(const std::string& message);

// The client, or null with `*error` set.
std::unique_ptr<ipp::Client> Connect(const Common& c, std::string* error);

std::string Usage(const std::string& command, const std::string& what);

// A subcommand's command line: the options every subcommand takes (into `common`), then its own,
// which it adds to `options` (and `positional`) before parsing.
class CommandLine {
 public:
  CommandLine();
  CommandLine(const CommandLine&) = delete;  // `options` points into `common`
  CommandLine& operator=(const CommandLine&) = delete;
  // Returns >= 0 to exit with (after --help or a bad argument), -1 to go on.
  int Parse(int argc, char** argv, const std::string& usage);
  // Parse, then Connect: the client, or null (with what went wrong printed) and exit_code() set.
  std::unique_ptr<ipp::Client> ParseAndConnect(int argc, char** argv, const std::string& usage);
  int exit_code() const { return exit_code_; }

  Common common;
  po::options_description options{"Options"};
  po::positional_options_description positional;

 private:
  int exit_code_ = 0;
};

ipp::Millis Seconds(double s);

}  // namespace ipp_cmd

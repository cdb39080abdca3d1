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

struct Common {
  std::string profile = "default", profile_dir, cluster_id, file;
  double timeout = 10;
  bool json = false;
  std::string ssh;
  std::vector<std::string> ssh_args;
};

void AddCommon(po::options_description& o, Common& c);

// Prints "ipp: message" on stderr; returns the exit code 1.
int Fail(const std::string& message);

// The client, or null with `*error` set.
std::unique_ptr<ipp::Client> Connect(const Common& c, std::string* error);

std::string Usage(const std::string& command, const std::string& what);

// Parses a subcommand's options; returns >=0 to exit with, -1 to go on.
int ParseSub(int argc, char** argv, const std::string& usage, po::options_description& options,
             po::variables_map& vm, const po::positional_options_description* positional = nullptr);

ipp::Millis Seconds(double s);

}  // namespace ipp_cmd

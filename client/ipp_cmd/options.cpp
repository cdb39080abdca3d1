#include "client/ipp_cmd/options.hpp"

#include <filesystem>
#include <iostream>

#include "common/cli.hpp"

namespace ipp_cmd {

namespace {

void AddCommon(po::options_description& o, Common& c) {
  o.add_options()
      ("profile", po::value(&c.profile)->default_value("default"), "profile name")
      ("profile-dir", po::value(&c.profile_dir), "explicit profile directory")
      ("cluster-id", po::value(&c.cluster_id), "cluster id")
      ("file,f", po::value(&c.file), "client connection file (overrides the profile)")
      ("connect-timeout", po::value(&c.timeout)->default_value(10), "seconds to wait for the controller")
      ("json", po::bool_switch(&c.json), "machine-readable JSON output")
      ("ssh", po::value(&c.ssh), "reach the controller through SSH: user@host[:port]")
      ("ssh-arg", po::value(&c.ssh_args)->composing(), "extra ssh option (repeatable), e.g. --ssh-arg=-i --ssh-arg=key");
}

}  // namespace

int Fail(const std::string& message) {
  std::cerr << "ipp: " << message << std::endl;
  return 1;
}

std::unique_ptr<ipp::Client> Connect(const Common& c, std::string* error) {
  std::error_code ec;
  if (!c.file.empty() && !std::filesystem::exists(c.file, ec)) {
    // Named by the user: a typo in the path, not a missing cluster.
    *error = "no connection file " + c.file + " (--file)";
    return nullptr;
  }
  ipp::ClientOptions o;
  o.profile = c.profile;
  o.profile_dir = c.profile_dir;
  o.cluster_id = c.cluster_id;
  o.connection_file = c.file;
  o.timeout = ipp::Millis(static_cast<long>(c.timeout * 1000));
  o.ssh_server = c.ssh;
  o.ssh_args = c.ssh_args;
  auto client = ipp::Client::Connect(o);
  if (!client.ok()) {
    *error = client.status().message();
    return nullptr;
  }
  return std::move(client).value();
}

std::string Usage(const std::string& command, const std::string& what) {
  return "usage: ipp " + command + "\n\n" + what;
}

CommandLine::CommandLine() { AddCommon(options, common); }

int CommandLine::Parse(int argc, char** argv, const std::string& usage) {
  po::variables_map vm;
  return ipp::cli::Parse(argc, argv, usage, options, vm, nullptr, positional.max_total_count() ? &positional : nullptr);
}

std::unique_ptr<ipp::Client> CommandLine::ParseAndConnect(int argc, char** argv, const std::string& usage) {
  if (int rc = Parse(argc, argv, usage); rc >= 0) {
    exit_code_ = rc;
    return nullptr;
  }
  std::string error;
  auto client = Connect(common, &error);
  if (!client) exit_code_ = Fail(error);
  return client;
}

ipp::Millis Seconds(double s) { return ipp::Millis(static_cast<long>(s * 1000)); }

}  // namespace ipp_cmd

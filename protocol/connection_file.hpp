// Connection files in ipyparallel 7.1's format: <profile>/security/ipcontroller[-ID]-{client,engine}.json.
//
//   {"ssh": "", "interface": "tcp://127.0.0.1", "registration": 51701, "control": ..., "mux": ...,
//    "task": ..., "iopub": ..., <role-specific channels>, "key": "...", "curve_serverkey": null,
//    "location": "host", "pack": "json", "unpack": "json", "signature_scheme": "hmac-sha256"}
//
// Engine files add hb_ping, hb_pong and a list of broadcast ports; client files add
// notification, task_scheme and a single broadcast port. Our controller adds
// "ipp_local": {"host": "name", "interface": "ipc:///tmp/ipp-4049c22c-1234-aB3dE9/ipp"}: every
// channel is served there too, for peers on that host (stock peers ignore the key).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ipp/status.hpp"

namespace ipp::protocol {

struct ConnectionInfo {
  std::string interface = "tcp://127.0.0.1";  // transport://ip
  std::string key;
  std::string signature_scheme = "hmac-sha256";
  std::string location;  // the controller's host, for clients that tunnel
  std::string ssh;
  std::string pack = "json";
  std::string unpack = "json";
  std::optional<std::string> curve_serverkey;
  std::string task_scheme;  // client files only
  // Channel name -> port number, or (engine "broadcast") a list of ports.
  nlohmann::json channels = nlohmann::json::object();
  // "ipp_local": the same channels over ipc:// for peers on local_host; empty if not served.
  std::string local_interface;
  std::string local_host;

  // The port of a channel; index picks from a list. Fails if absent or not a port.
  Result<int> port(std::string_view channel, size_t index = 0) const;
  // "tcp://127.0.0.1:51701"; "ipc://path-51701" for ipc like ipyparallel's construct_url.
  Result<std::string> url(std::string_view channel, size_t index = 0) const;
};

// interface + ":" + port, or interface + "-" + port for ipc:// (as ipyparallel's construct_url).
std::string ChannelUrl(std::string_view interface, int port);

// Switches `info.interface` to its local one when this process runs on the controller's host
// and can reach the registration socket there: ipc:// skips the TCP stack (a shorter round
// trip and less kernel work in every process). Returns whether it switched.
bool PreferLocalTransport(ConnectionInfo& info);

void to_json(nlohmann::json& j, const ConnectionInfo& info);
// Throws nlohmann::json::exception on missing or mistyped fields; use ReadConnectionFile.
void from_json(const nlohmann::json& j, ConnectionInfo& info);

Result<ConnectionInfo> ParseConnectionInfo(std::string_view text, const std::string& origin);
Result<ConnectionInfo> ReadConnectionFile(const std::filesystem::path& path);
// Atomic (write to a temporary file in the same directory, then rename) with mode 0600.
Status WriteConnectionFile(const std::filesystem::path& path, const ConnectionInfo& info);
// Same guarantees for any private file (cluster state, engine state).
Status WritePrivateFile(const std::filesystem::path& path, std::string_view contents);

// "ipcontroller-client.json" or, with a cluster id, "ipcontroller-ID-client.json".
std::string ConnectionFileName(std::string_view role, std::string_view cluster_id);

// For "not found" errors: " (this profile has clusters with --cluster-id a, b)" naming the other
// cluster ids whose client connection file is in `security_dir` (the default cluster as ""), or
// "" when there are none.
std::string OtherClustersHint(const std::filesystem::path& security_dir, std::string_view cluster_id);

}  // namespace ipp::protocol

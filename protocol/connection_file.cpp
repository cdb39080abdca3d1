#include "protocol/connection_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "protocol/signer.hpp"

namespace ipp::protocol {

namespace {
const char* const kCommonFields[] = {"interface", "key", "signature_scheme", "location", "ssh",
                                     "pack", "unpack", "curve_serverkey", "task_scheme", "ipp_local"};
}

Result<int> ConnectionInfo::port(std::string_view channel, size_t index) const {
  auto it = channels.find(channel);
  if (it == channels.end()) {
    return Status::NotFound("connection info has no '" + std::string(channel) + "' channel");
  }
  const nlohmann::json* value = &*it;
  if (value->is_array()) {
    if (index >= value->size()) {
      return Status::NotFound("connection info '" + std::string(channel) + "' has no entry " +
                              std::to_string(index));
    }
    value = &(*value)[index];
  }
  if (!value->is_number_integer() || value->get<int>() <= 0 || value->get<int>() > 65535) {
    return Status::InvalidArgument("connection info '" + std::string(channel) +
                                   "' is not a port number");
  }
  return value->get<int>();
}

Result<std::string> ConnectionInfo::url(std::string_view channel, size_t index) const {
  Result<int> p = port(channel, index);
  if (!p.ok()) return p.status();
  return ChannelUrl(interface, *p);
}

std::string ChannelUrl(std::string_view interface, int port) {
  bool ipc = interface.rfind("ipc://", 0) == 0;
  return std::string(interface) + (ipc ? "-" : ":") + std::to_string(port);
}

bool PreferLocalTransport(ConnectionInfo& info) {
  constexpr std::string_view kIpc = "ipc://";
  if (info.local_interface.rfind(kIpc, 0) != 0 || info.local_host != HostName()) return false;
  Result<int> registration = info.port("registration");
  if (!registration.ok()) return false;
  // Another machine with the same name, or a container with its own /tmp, has no such socket; a
  // peer of another user cannot enter the controller's private directory; a killed controller's
  // socket has nobody listening. Those go on over TCP and get its errors.
  if (ProbeUnixSocket(ChannelUrl(info.local_interface, *registration).substr(kIpc.size())) != 0) return false;
  info.interface = info.local_interface;
  return true;
}

void to_json(nlohmann::json& j, const ConnectionInfo& info) {
  j = nlohmann::json::object();
  j["ssh"] = info.ssh;
  j["interface"] = info.interface;
  for (auto& [name, value] : info.channels.items()) j[name] = value;
  if (!info.task_scheme.empty()) j["task_scheme"] = info.task_scheme;
  j["key"] = info.key;
  j["curve_serverkey"] = info.curve_serverkey ? nlohmann::json(*info.curve_serverkey) : nullptr;
  j["location"] = info.location;
  j["pack"] = info.pack;
  j["unpack"] = info.unpack;
  j["signature_scheme"] = info.signature_scheme;
  if (!info.local_interface.empty()) {
    j["ipp_local"] = {{"host", info.local_host}, {"interface", info.local_interface}};
  }
}

namespace {

// A string field that may be absent or null (then `fallback`).
std::string OptionalString(const nlohmann::json& j, const char* name, const char* fallback) {
  auto it = j.find(name);
  return it == j.end() || it->is_null() ? fallback : it->get<std::string>();
}

// What from_json would otherwise report as a bare nlohmann exception, said with the field's name.
Status CheckFields(const nlohmann::json& j) {
  for (const char* name : {"interface", "key"}) {
    auto it = j.find(name);
    if (it == j.end()) return Status::InvalidArgument(std::string("has no '") + name + "' field");
    if (!it->is_string()) {
      return Status::InvalidArgument(std::string("'") + name + "' is a " + it->type_name() + ", not a string");
    }
  }
  for (const char* name : {"signature_scheme", "location", "pack", "unpack", "task_scheme"}) {
    auto it = j.find(name);
    if (it != j.end() && !it->is_null() && !it->is_string()) {
      return Status::InvalidArgument(std::string("'") + name + "' is a " + it->type_name() + ", not a string");
    }
  }
  auto registration = j.find("registration");
  if (registration == j.end()) return Status::InvalidArgument("has no 'registration' port");
  if (!registration->is_number_integer() || registration->get<int64_t>() <= 0 ||
      registration->get<int64_t>() > 65535) {
    return Status::InvalidArgument("'registration' is " + registration->dump() + ", not a port number");
  }
  // Refused even with an empty key, as jupyter_client refuses an unknown scheme whatever the key.
  return CheckSignatureScheme(OptionalString(j, "signature_scheme", "hmac-sha256"));
}

}  // namespace

void from_json(const nlohmann::json& j, ConnectionInfo& info) {
  info.interface = j.at("interface").get<std::string>();
  info.key = j.at("key").get<std::string>();
  info.signature_scheme = OptionalString(j, "signature_scheme", "hmac-sha256");
  info.location = OptionalString(j, "location", "");
  info.ssh = j.contains("ssh") && j["ssh"].is_string() ? j["ssh"].get<std::string>() : "";
  info.pack = OptionalString(j, "pack", "json");
  info.unpack = OptionalString(j, "unpack", "json");
  info.task_scheme = OptionalString(j, "task_scheme", "");
  auto curve = j.find("curve_serverkey");
  if (curve != j.end() && curve->is_string()) info.curve_serverkey = curve->get<std::string>();
  // Ours, so not checked as the stock fields are: a malformed one is ignored, as stock peers do.
  if (auto local = j.find("ipp_local"); local != j.end() && local->is_object()) {
    auto interface = local->find("interface"), host = local->find("host");
    if (interface != local->end() && interface->is_string() && host != local->end() && host->is_string()) {
      info.local_interface = interface->get<std::string>();
      info.local_host = host->get<std::string>();
    }
  }
  info.channels = nlohmann::json::object();
  for (auto& [name, value] : j.items()) {
    bool common = false;
    for (const char* field : kCommonFields) common = common || name == field;
    if (!common) info.channels[name] = value;
  }
  if (!info.channels.contains("registration")) {
    throw nlohmann::json::other_error::create(501, "no 'registration' port", &j);
  }
}

Result<ConnectionInfo> ParseConnectionInfo(std::string_view text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    std::string what = e.what();
    size_t detail = what.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] "
    return Status::InvalidArgument(origin + " is not valid JSON: " +
                                   (detail == std::string::npos ? what : what.substr(detail + 2)));
  }
  if (!j.is_object()) return Status::InvalidArgument(origin + " is a JSON " + j.type_name() + ", not an object");
  if (Status s = CheckFields(j); !s.ok()) {
    std::string message = s.message();
    return Status::InvalidArgument(origin + (message.rfind("has ", 0) == 0 ? " " : ": ") + message);
  }
  try {
    return j.get<ConnectionInfo>();
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(origin + " is not a valid connection file: " + e.what());
  }
}

Result<ConnectionInfo> ReadConnectionFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    return Status::NotFound("cannot read connection file " + path.string() + ": " +
                            std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseConnectionInfo(text.str(), "connection file " + path.string());
}

Status WritePrivateFile(const std::filesystem::path& path, std::string_view contents) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  std::string tmp = path.string() + ".tmp." + std::to_string(getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot create " + tmp + ": " + std::strerror(errno));
  ::fchmod(fd, 0600);  // the umask or an older file must not widen it
  size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::IOError("cannot write " + tmp + ": " + std::strerror(err));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return Status::IOError("cannot flush " + tmp + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::IOError("cannot rename " + tmp + " to " + path.string() + ": " +
                           std::strerror(err));
  }
  return Status::OK();
}

Status WriteConnectionFile(const std::filesystem::path& path, const ConnectionInfo& info) {
  return WritePrivateFile(path, nlohmann::json(info).dump(2));
}

std::string ConnectionFileName(std::string_view role, std::string_view cluster_id) {
  std::string name = "ipcontroller-";
  if (!cluster_id.empty()) name.append(cluster_id).append("-");
  return name.append(role).append(".json");
}

std::string OtherClustersHint(const std::filesystem::path& security_dir, std::string_view cluster_id) {
  constexpr std::string_view kPrefix = "ipcontroller-", kSuffix = "client.json";
  std::set<std::string> ids;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(security_dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() < kPrefix.size() + kSuffix.size() || !name.starts_with(kPrefix) || !name.ends_with(kSuffix)) continue;
    std::string id = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
    if (!id.empty() && id.back() != '-') continue;  // not a client connection file
    if (!id.empty()) id.pop_back();
    if (id != cluster_id) ids.insert(id.empty() ? "\"\"" : id);
  }
  if (ids.empty()) return "";
  std::string hint = " (this profile has ";
  hint += ids.size() == 1 ? "a cluster" : "clusters";
  hint += " with --cluster-id ";
  for (auto it = ids.begin(); it != ids.end(); ++it) hint += (it == ids.begin() ? "" : ", ") + *it;
  return hint + ")";
}

}  // namespace ipp::protocol

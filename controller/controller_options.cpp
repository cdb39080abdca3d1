#include "controller/controller_options.hpp"

#include <algorithm>
#include <fstream>
#include <regex>

#include "protocol/signer.hpp"
#include "schedulers/policies.hpp"

namespace ipp::controller {

Result<GatewayUse> ParseGatewayUse(const std::string& text) {
  if (text == "auto") return GatewayUse::kAuto;
  if (text == "always") return GatewayUse::kAlways;
  if (text == "never") return GatewayUse::kNever;
  return Status::InvalidArgument("--engine-gateway must be auto, always or never, not '" + text + "'");
}

Result<std::vector<int>> ParsePortList(const std::string& text) {
  std::vector<int> ports;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string range = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (range.empty()) return Status::InvalidArgument("empty port range in '" + text + "'");
    try {
      size_t dash = range.find('-');
      int first = std::stoi(range.substr(0, dash));
      int last = dash == std::string::npos ? first : std::stoi(range.substr(dash + 1));
      if (first < 1 || last > 65535 || last < first) throw std::out_of_range("range");
      for (int p = first; p <= last; ++p) ports.push_back(p);
    } catch (const std::exception&) {
      return Status::InvalidArgument("bad port range '" + range + "' (use e.g. 10101-10120,10130)");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ports;
}

namespace {

std::string Unquote(std::string v) {
  v.erase(0, v.find_first_not_of(" \t"));
  v.erase(v.find_last_not_of(" \t\r") + 1);
  if (v.size() >= 2 && (v.front() == '\'' || v.front() == '"') && v.back() == v.front()) {
    return v.substr(1, v.size() - 2);
  }
  return v;
}

Result<bool> ParseBool(const std::string& v) {
  std::string t = v;
  std::transform(t.begin(), t.end(), t.begin(), ::tolower);
  if (t == "true" || t == "1" || t == "yes") return true;
  if (t == "false" || t == "0" || t == "no") return false;
  return Status::InvalidArgument("'" + v + "' is not a boolean");
}

template <typename T>
Status ParseNumber(const std::string& name, const std::string& v, T& out) {
  try {
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used != v.size() || d < 0) throw std::invalid_argument(v);
    out = static_cast<T>(d);
    return Status::OK();
  } catch (const std::exception&) {
    return Status::InvalidArgument(name + " needs a non-negative number, not '" + v + "'");
  }
}

}  // namespace

Status ApplyTrait(ControllerOptions& o, const std::string& name, const std::string& raw_value) {
  std::string v = Unquote(raw_value);
  if (name == "HeartMonitor.period") {
    long ms = 0;
    if (Status s = ParseNumber(name, v, ms); !s.ok()) return s;
    if (ms < 10) return Status::InvalidArgument("HeartMonitor.period must be at least 10 ms");
    o.ping = std::chrono::milliseconds(ms);
    return Status::OK();
  }
  if (name == "HeartMonitor.max_heartmonitor_misses") return ParseNumber(name, v, o.max_heartbeat_misses);
  if (name == "TaskScheduler.hwm") {
    int hwm = 0;
    if (Status s = ParseNumber(name, v, hwm); !s.ok()) return s;
    o.hwm = hwm;
    return Status::OK();
  }
  if (name == "TaskScheduler.remembered_tasks") return ParseNumber(name, v, o.remembered_tasks);
  if (name == "TaskScheduler.scheme_name") {
    const std::vector<std::string>& names = schedulers::PolicyNames();
    if (std::find(names.begin(), names.end(), v) == names.end()) {
      return Status::InvalidArgument("unknown scheme '" + v + "' (use one of " + schedulers::PolicyNameList() + ")");
    }
    o.scheme = v;
    return Status::OK();
  }
  if (name == "DictDB.record_limit") return ParseNumber(name, v, o.db_record_limit);
  if (name == "DictDB.size_limit") return ParseNumber(name, v, o.db_size_limit);
  if (name == "DictDB.cull_fraction") return ParseNumber(name, v, o.db_cull_fraction);
  if (name == "IPController.ip") return (o.ip = v, Status::OK());
  if (name == "IPController.location") return (o.location = v, Status::OK());
  if (name == "IPController.cluster_id" || name == "BaseParallelApplication.cluster_id") {
    return (o.cluster_id = v, Status::OK());
  }
  if (name == "Session.key") {
    // ipyparallel writes bytes (b'...'); the key is ASCII either way.
    if (v.size() >= 3 && v[0] == 'b' && (v[1] == '\'' || v[1] == '"')) v = Unquote(v.substr(1));
    return (o.session_key = v, Status::OK());
  }
  if (name == "IPController.registration_timeout") {
    double seconds = 0;
    if (Status s = ParseNumber(name, v, seconds); !s.ok()) return s;
    o.registration_timeout = std::chrono::milliseconds(static_cast<long>(seconds * 1000));
    return Status::OK();
  }
  if (name == "IPController.ports") {
    Result<std::vector<int>> ports = ParsePortList(v);
    if (!ports.ok()) return ports.status();
    o.ports = *ports;
    return Status::OK();
  }
  if (name == "IPController.reuse_files" || name == "IPController.restore_engines" ||
      name == "IPController.enable_curve") {
    Result<bool> b = ParseBool(v);
    if (!b.ok()) return b.status();
    if (name == "IPController.reuse_files") o.reuse = *b;
    if (name == "IPController.restore_engines") o.restore = o.reuse = *b;
    if (name == "IPController.enable_curve") o.enable_curve = *b;
    return Status::OK();
  }
  if (name == "IPController.db_class") {
    std::string lower = v;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower.find("sqlite") != std::string::npos) o.db = DbBackend::kSqlite;
    else if (lower.find("nodb") != std::string::npos) o.db = DbBackend::kNone;
    else if (lower.find("dictdb") != std::string::npos) o.db = DbBackend::kDict;
    else return Status::InvalidArgument("unsupported db_class '" + v + "'");
    return Status::OK();
  }
  if (name == "Session.signature_scheme") {
    if (Status s = protocol::CheckSignatureScheme(v); !s.ok()) return Status::InvalidArgument(name + ": " + s.message());
    if (v != "hmac-sha256") {
      return Status::InvalidArgument(name + ": this controller signs with hmac-sha256 only, not '" + v + "'");
    }
    return Status::OK();
  }
  return Status::NotFound(name + " is not supported by this controller; ignored");
}

std::vector<std::string> ApplyPythonConfig(ControllerOptions& options, const std::string& path) {
  std::vector<std::string> warnings;
  std::ifstream in(path);
  if (!in) return warnings;
  static const std::regex kAssignment(R"(^\s*c\.([A-Za-z_]\w*\.[A-Za-z_]\w*)\s*=\s*(.+?)\s*(#.*)?$)");
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string stripped = line.substr(0, line.find_last_not_of(" \t\r") + 1);
    size_t first = stripped.find_first_not_of(" \t");
    if (first == std::string::npos || stripped[first] == '#') continue;
    if (stripped.compare(first, 4, "c = ") == 0 || stripped.find("get_config()") != std::string::npos) continue;
    std::smatch m;
    std::string where = path + ":" + std::to_string(number);
    if (!std::regex_match(stripped, m, kAssignment)) {
      warnings.push_back(where + ": not a simple 'c.Class.trait = value' line; ignored");
      continue;
    }
    Status s = ApplyTrait(options, m[1], m[2]);
    if (!s.ok()) warnings.push_back(where + ": " + s.message());
  }
  return warnings;
}

}  // namespace ipp::controller

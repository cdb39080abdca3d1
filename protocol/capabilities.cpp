#include "protocol/capabilities.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace ipp::protocol {

using nlohmann::json;

const char* EngineKindName(EngineKind kind) { return kind == EngineKind::kNative ? "native" : "python"; }

namespace {
// A whole number as an integer ("gpus": 2, "gpus>=2"), as people wrote it.
json Number(double value) {
  if (std::floor(value) == value && std::fabs(value) < 1e15) return static_cast<long long>(value);
  return value;
}
}  // namespace

json Capabilities::ToJson() const {
  std::vector<std::string> sorted(functions.begin(), functions.end());
  std::sort(sorted.begin(), sorted.end());
  json out = {{"kind", EngineKindName(kind)}, {"functions", sorted}, {"tags", tags}, {"resources", ResourcesJson()}};
  if (!hostname.empty()) out["hostname"] = hostname;
  if (pid) out["pid"] = *pid;
  if (!job.empty()) out["job"] = job;
  if (!plugin_errors.empty()) out["plugin_errors"] = plugin_errors;
  return out;
}

json Capabilities::ResourcesJson() const {
  json out = json::object();
  for (const auto& [name, value] : resources) out[name] = Number(value);
  return out;
}

Result<Capabilities> Capabilities::FromContent(const json& content) {
  if (!content.is_object()) return Status::InvalidArgument("registration content is not an object");
  auto ipp = content.find("ipp");
  if (ipp == content.end()) return Capabilities{};
  return FromJson(*ipp);
}

Result<Capabilities> Capabilities::FromJson(const json& ipp) {
  if (!ipp.is_object()) return Status::InvalidArgument("\"ipp\" is not an object");
  Capabilities out;
  std::string kind = ipp.value("kind", "");
  if (kind == "native") {
    out.kind = EngineKind::kNative;
  } else if (kind != "python") {
    return Status::InvalidArgument("\"ipp.kind\" is neither \"native\" nor \"python\"");
  }
  auto strings = [&](const char* key, auto insert) -> Status {
    auto it = ipp.find(key);
    if (it == ipp.end() || it->is_null()) return Status::OK();
    if (!it->is_array()) return Status::InvalidArgument(std::string("\"ipp.") + key + "\" is not a list");
    for (const auto& v : *it) {
      if (!v.is_string()) return Status::InvalidArgument(std::string("\"ipp.") + key + "\" holds a non-string");
      insert(v.get<std::string>());
    }
    return Status::OK();
  };
  if (Status s = strings("functions", [&](std::string f) { out.functions.insert(std::move(f)); }); !s.ok()) return s;
  if (Status s = strings("tags", [&](std::string t) { out.tags.insert(std::move(t)); }); !s.ok()) return s;
  if (auto r = ipp.find("resources"); r != ipp.end() && !r->is_null()) {
    if (!r->is_object()) return Status::InvalidArgument("\"ipp.resources\" is not an object");
    for (const auto& [name, value] : r->items()) {
      if (!value.is_number()) return Status::InvalidArgument("resource \"" + name + "\" is not a number");
      out.resources[name] = value.get<double>();
    }
  }
  // Descriptive only: a value of the wrong type is ignored rather than refusing the engine.
  if (auto h = ipp.find("hostname"); h != ipp.end() && h->is_string()) out.hostname = h->get<std::string>();
  if (auto p = ipp.find("pid"); p != ipp.end() && p->is_number_integer()) out.pid = p->get<long>();
  if (auto j = ipp.find("job"); j != ipp.end() && j->is_string()) out.job = j->get<std::string>();
  out.plugin_errors = PluginErrorsIn(ipp);
  return out;
}

std::map<std::string, std::string> PluginErrorsIn(const nlohmann::json& object) {
  std::map<std::string, std::string> out;
  auto e = object.find("plugin_errors");
  if (e == object.end() || !e->is_object()) return out;
  for (const auto& [path, why] : e->items()) {
    if (why.is_string()) out[path] = why.get<std::string>();
  }
  return out;
}

std::string BatchJobFromEnvironment() {
  for (const char* name : {"IPP_JOB_ID", "SLURM_JOB_ID", "JOB_ID", "PBS_JOBID", "LSB_JOBID"}) {
    const char* value = std::getenv(name);
    if (value && *value) return value;
  }
  return "";
}

std::string Requirement::ToString() const {
  if (!at_least) return name;
  return name + ">=" + Number(*at_least).dump();
}

namespace {

bool ValidName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == ':' || c == '/')) return false;
  }
  return true;
}

std::optional<double> ParseNumber(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

Result<Requirement> ParseRequirement(const std::string& text) {
  Requirement out;
  size_t op = text.find(">=");
  out.name = text.substr(0, op);
  if (!ValidName(out.name)) {
    return Status::InvalidArgument("requirement \"" + text +
                                   "\" is not a tag or resource name (letters, digits, _-.:/), optionally with >=N");
  }
  if (op != std::string::npos) {
    out.at_least = ParseNumber(std::string_view(text).substr(op + 2));
    if (!out.at_least) return Status::InvalidArgument("requirement \"" + text + "\": what follows >= is not a number");
  }
  return out;
}

}  // namespace

Result<std::vector<Requirement>> ParseRequirements(const json& value) {
  std::vector<Requirement> out;
  if (value.is_null()) return out;
  json list = value.is_string() ? json::array({value}) : value;
  if (!list.is_array()) return Status::InvalidArgument("\"requires\" must be a string or a list of strings");
  for (const auto& item : list) {
    if (!item.is_string()) return Status::InvalidArgument("\"requires\" must be a string or a list of strings");
    Result<Requirement> r = ParseRequirement(item.get<std::string>());
    if (!r.ok()) return r.status();
    out.push_back(std::move(*r));
  }
  return out;
}

Status ParseResources(const std::string& text, std::map<std::string, double>* out) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t eq = item.find('=');
    std::string name = item.substr(0, eq);
    std::optional<double> value = eq == std::string::npos ? std::nullopt : ParseNumber(std::string_view(item).substr(eq + 1));
    if (!ValidName(name) || !value) {
      return Status::InvalidArgument("resource \"" + item + "\" is not NAME=NUMBER (e.g. gpus=2)");
    }
    (*out)[name] = *value;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return Status::OK();
}

bool Meets(const Capabilities& engine, const Requirement& requirement) {
  auto resource = engine.resources.find(requirement.name);
  if (requirement.at_least) return resource != engine.resources.end() && resource->second >= *requirement.at_least;
  return engine.tags.count(requirement.name) > 0 || (resource != engine.resources.end() && resource->second > 0);
}

bool MeetsAll(const Capabilities& engine, const std::vector<Requirement>& requirements) {
  for (const auto& r : requirements) {
    if (!Meets(engine, r)) return false;
  }
  return true;
}

}  // namespace ipp::protocol

#include "schedulers/task_metadata.hpp"

#include <cstdint>
#include <limits>

namespace ipp::schedulers {

using nlohmann::json;

namespace {

Result<Dependency> ParseDependency(const protocol::PartFields& md, const char* key) {
  return Dependency::FromJson(md.empty_or_absent(key) ? json() : md.value(key).value_or(json()));
}

constexpr std::string_view kMap = "ipp.map";

// The function an `ipp_call` object names — for ipp.map, the function it maps; "" when it names
// none. From the tree, when the scanner declined the content.
std::string CalledFunction(const json& call) {
  if (!call.is_object()) return "";
  std::string name = call.value("function", json()).is_string() ? call["function"].get<std::string>() : "";
  auto args = call.find("args");
  if (name == kMap && args != call.end() && args->is_object() && (*args)["function"].is_string()) {
    return (*args)["function"].get<std::string>();
  }
  return name;
}

// The same from the object's text, without building a tree of its arguments.
std::string CalledFunction(std::string_view call) {
  std::optional<protocol::JsonFields> fields = protocol::JsonFields::Scan(call);
  if (!fields) return CalledFunction(json::parse(call, nullptr, false));
  std::optional<std::string_view> name = fields->string("function");
  if (!name) return fields->raw("function") ? CalledFunction(json::parse(call, nullptr, false)) : "";
  if (*name == kMap) {
    if (auto args = fields->raw("args")) {
      Result<protocol::PartFields> inner = protocol::PartFields::Of(*args);
      if (inner.ok()) {
        if (auto mapped = inner->string("function")) return *mapped;
      }
    }
  }
  return std::string(*name);
}

// The called function when the content of an apply_request has an `ipp_call`; nullopt otherwise.
std::optional<std::string> IppCall(std::string_view content) {
  // Pickled Python work never names it: no scan at all for it.
  if (content.find("\"ipp_call\"") == std::string_view::npos) return std::nullopt;
  if (std::optional<protocol::JsonFields> top = protocol::JsonFields::Scan(content)) {
    std::optional<std::string_view> call = top->raw("ipp_call");
    if (!call) return std::nullopt;
    return CalledFunction(*call);
  }
  json tree = json::parse(content, nullptr, false);
  if (!tree.is_object() || !tree.contains("ipp_call")) return std::nullopt;
  return CalledFunction(tree["ipp_call"]);
}

}  // namespace

std::string TaskFunctionName(std::string_view msg_type, std::string_view content) {
  if (msg_type == "apply_request") {
    std::optional<std::string> call = IppCall(content);
    return call && !call->empty() ? *call : "python";
  }
  constexpr std::string_view kSuffix = "_request";
  if (msg_type.size() > kSuffix.size() && msg_type.substr(msg_type.size() - kSuffix.size()) == kSuffix) {
    msg_type.remove_suffix(kSuffix.size());
  }
  return std::string(msg_type);
}

bool TaskNeeds::CanRunOn(const protocol::Capabilities& engine) const {
  if (engine.kind != kind) return false;
  if (!function.empty() && !engine.functions.count(function)) return false;
  return requirements.empty() || protocol::MeetsAll(engine, requirements);
}

bool TaskNeeds::operator==(const TaskNeeds& other) const {
  if (kind != other.kind || function != other.function || requirements.size() != other.requirements.size()) return false;
  for (size_t i = 0; i < requirements.size(); ++i) {
    if (requirements[i].name != other.requirements[i].name || requirements[i].at_least != other.requirements[i].at_least) return false;
  }
  return true;
}

std::string TaskNeeds::Reason() const {
  std::string out = kind == protocol::EngineKind::kPython ? "a Python engine"
                    : function.empty()                    ? "a native engine"
                                                          : "an engine with function " + function;
  bool has_with = !function.empty();
  for (const auto& r : requirements) {
    out += has_with ? " and " : " with ";
    out += r.at_least ? r.ToString() : "tag " + r.name;
    has_with = true;
  }
  return out;
}

TaskNeeds NeedsOf(std::string_view msg_type, std::string_view content, const TaskMetadata& metadata) {
  TaskNeeds out;
  if (msg_type == "apply_request") {
    if (std::optional<std::string> function = IppCall(content)) {
      out.kind = protocol::EngineKind::kNative;
      out.function = std::move(*function);
    }
  }
  if (metadata.kind) out.kind = *metadata.kind;
  if (out.kind == protocol::EngineKind::kPython) out.function.clear();
  out.requirements = metadata.requirements;
  return out;
}

Result<TaskMetadata> ParseTaskMetadata(const protocol::PartFields& md) {
  TaskMetadata out;
  try {
    if (!md.empty_or_absent("targets")) {
      for (const auto& t : md.value("targets").value_or(json::array())) {
        if (t.is_string()) out.targets.insert(t.get<std::string>());
      }
    }
    if (auto retries = md.value("retries"); retries && retries->is_number_integer()) {
      out.retries = retries->get<int>();
    }
    if (auto timeout = md.value("timeout"); timeout && timeout->is_number() && timeout->get<double>() > 0) {
      out.timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(timeout->get<double>()));
    }
    Result<Dependency> after = ParseDependency(md, "after");
    if (!after.ok()) return after.status();
    Result<Dependency> follow = ParseDependency(md, "follow");
    if (!follow.ok()) return follow.status();
    out.after = std::move(*after);
    out.follow = std::move(*follow);
    if (!md.empty_or_absent("requires")) {
      Result<std::vector<protocol::Requirement>> requirements = protocol::ParseRequirements(md.value("requires").value_or(json()));
      if (!requirements.ok()) return Status::ProtocolError(requirements.status().message());
      out.requirements = std::move(*requirements);
    }
    if (auto priority = md.value("priority"); priority && !priority->is_null()) {
      constexpr int64_t kLow = std::numeric_limits<int>::min(), kHigh = std::numeric_limits<int>::max();
      bool integral = priority->is_number_integer() &&
                      (priority->is_number_unsigned() ? priority->get<uint64_t>() <= static_cast<uint64_t>(kHigh)
                                                      : priority->get<int64_t>() >= kLow && priority->get<int64_t>() <= kHigh);
      if (!integral) {
        return Status::ProtocolError("\"priority\" must be an integer from " + std::to_string(kLow) + " to " +
                                     std::to_string(kHigh) + ", not " + priority->dump());
      }
      out.priority = priority->get<int>();
    }
    if (auto kind = md.value("ipp_kind"); kind && !kind->is_null()) {
      if (*kind == "native") {
        out.kind = protocol::EngineKind::kNative;
      } else if (*kind == "python") {
        out.kind = protocol::EngineKind::kPython;
      } else {
        return Status::ProtocolError("\"ipp_kind\" must be \"native\" or \"python\", not " + kind->dump());
      }
    }
  } catch (const json::exception& e) {
    return Status::ProtocolError(std::string("invalid task metadata: ") + e.what());
  }
  return out;
}

const char* TaskMetadataErrorName(const Status& status) {
  return status.code() == Status::Code::kInvalidArgument ? "InvalidDependency" : "ValueError";
}

}  // namespace ipp::schedulers

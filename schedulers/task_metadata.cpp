#include "schedulers/task_metadata.hpp"

namespace ipp::schedulers {

using nlohmann::json;

namespace {
Result<Dependency> ParseDependency(const protocol::PartFields& md, const char* key) {
  return Dependency::FromJson(md.empty_or_absent(key) ? json() : md.value(key).value_or(json()));
}
}  // namespace

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
  } catch (const json::exception& e) {
    return Status::ProtocolError(std::string("invalid task metadata: ") + e.what());
  }
  return out;
}

const char* TaskMetadataErrorName(const Status& status) {
  return status.code() == Status::Code::kInvalidArgument ? "InvalidDependency" : "ValueError";
}

}  // namespace ipp::schedulers

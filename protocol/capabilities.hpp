// Capabilities: what an engine can run, as it says at registration, and what a task requires of
// the engine it runs on. Shared by the engine (which announces them), the hub (which keeps and
// shows them) and the task scheduler (which routes by them).
//
// On the wire, our engine adds to its registration_request content (and to the hub's
// registration_notification) one key the stock controller and clients ignore:
//   "ipp": {"kind": "native", "functions": ["pi.sample", ...], "tags": ["gpu"], "resources": {"gpus": 2},
//           "hostname": "node1", "pid": 1234, "job": "4242"}
// An engine that sends no "ipp" key is a Python engine (the stock ipyparallel engine).
//
// A task's requirements (metadata "requires": a string or a list of strings) are each either a
// name, met by an engine with that tag or with that resource above zero, or "name>=N", met by an
// engine whose resource `name` is at least N. Resources are not consumed by the tasks that require
// them: they describe the engine, as tags do.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipp/status.hpp"

namespace ipp::protocol {

enum class EngineKind { kPython, kNative };
const char* EngineKindName(EngineKind kind);  // "python", "native"

struct Capabilities {
  EngineKind kind = EngineKind::kPython;
  std::unordered_set<std::string> functions;  // native engines: every function name, built-ins too
  std::set<std::string> tags;
  std::map<std::string, double> resources;
  // Where the engine runs, for people (the dashboard); our engines send them, others do not.
  std::string hostname;
  std::optional<long> pid;
  // The batch job it runs in (SLURM_JOB_ID, JOB_ID, PBS_JOBID, LSB_JOBID or ipcluster's
  // IPP_JOB_ID): how `ipcluster start --adapt` tells whose engines are idle.
  std::string job;
  // Plugins the cluster keeps (ipp load) that did not load on this engine: path -> why. Their
  // functions are missing here; the hub logs it and `ipp engines` shows it.
  std::map<std::string, std::string> plugin_errors;

  // The "ipp" value described above ("hostname", "pid" and "job" only when set).
  nlohmann::json ToJson() const;
  // Its "resources" member: whole numbers as integers ({"gpus": 2}).
  nlohmann::json ResourcesJson() const;
  // From a registration_request or registration_notification content: a Python engine when it
  // has no "ipp" key; InvalidArgument when that key is malformed.
  static Result<Capabilities> FromContent(const nlohmann::json& content);
  // From the "ipp" value itself.
  static Result<Capabilities> FromJson(const nlohmann::json& ipp);
};

// The "plugin_errors" member of `object` (an engine's "ipp" value, or the hub's queue_status
// entry for it): path -> why. Descriptive, so a malformed value or entry is left out, not refused.
std::map<std::string, std::string> PluginErrorsIn(const nlohmann::json& object);

struct Requirement {
  std::string name;
  std::optional<double> at_least;  // set for "name>=N"
  std::string ToString() const;    // "gpu", "gpus>=2"
};

// A string or an array of strings (null or absent: none). InvalidArgument names what is wrong.
Result<std::vector<Requirement>> ParseRequirements(const nlohmann::json& value);
// Parses "--resources gpus=2,mem=64" (also one name=value per call); InvalidArgument on bad text.
Status ParseResources(const std::string& text, std::map<std::string, double>* out);

// The batch job this process runs in, from its environment: IPP_JOB_ID (set by ipcluster for
// its Local jobs), SLURM_JOB_ID, JOB_ID (SGE), PBS_JOBID, LSB_JOBID; "" outside any job.
std::string BatchJobFromEnvironment();

bool Meets(const Capabilities& engine, const Requirement& requirement);
bool MeetsAll(const Capabilities& engine, const std::vector<Requirement>& requirements);

}  // namespace ipp::protocol

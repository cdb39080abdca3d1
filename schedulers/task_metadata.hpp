// TaskMetadata: what the task scheduler reads from a task's metadata dict — allowed targets,
// retries, timeout, priority and the `after`/`follow` dependencies (ipyparallel's
// TaskScheduler.dispatch_submission) — parsed in one step, apart from the routing.
// TaskNeeds: what kind of engine a task needs (protocol/capabilities.hpp), from its type, its
// content's `ipp_call` and its metadata's `ipp_kind` and `requires`.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipp/status.hpp"
#include "protocol/capabilities.hpp"
#include "protocol/json_fields.hpp"
#include "schedulers/dependency.hpp"

namespace ipp::schedulers {

struct TaskNeeds {
  protocol::EngineKind kind = protocol::EngineKind::kPython;
  std::string function;  // native: the function the engine must have; "": any native engine
  std::vector<protocol::Requirement> requirements;  // metadata "requires"

  bool CanRunOn(const protocol::Capabilities& engine) const;
  bool operator==(const TaskNeeds& other) const;
  // What the task waits for, for people: "an engine with function pi.sample", "a Python engine
  // and an engine with tag gpu".
  std::string Reason() const;
};

struct TaskMetadata {
  IdSet targets;  // allowed engine uuids; empty = any
  int retries = 0;
  std::optional<std::chrono::steady_clock::duration> timeout;  // unset: none (0 or negative too)
  Dependency after, follow;
  std::optional<protocol::EngineKind> kind;  // "ipp_kind"
  std::vector<protocol::Requirement> requirements;  // metadata "requires"
  int priority = 0;  // metadata "priority": higher runs first among waiting load-balanced tasks
};

// Ignores what it does not know, and values of the wrong type for targets/retries/timeout, as
// the stock scheduler does. Errors: InvalidArgument for a dependency that is not one (the client
// gets an InvalidDependency), ProtocolError for a value that cannot be read, a bad "requires",
// "ipp_kind" or "priority" (not a 32-bit integer) (a ValueError).
Result<TaskMetadata> ParseTaskMetadata(const protocol::PartFields& metadata);

// What a request needs: an apply_request whose content has an `ipp_call` is native, for that
// function (for `ipp.map`, the function it maps); other requests are Python; metadata "ipp_kind"
// overrides the kind. Reads the content only for an apply_request, with the scanner (no tree of
// the arguments is built).
TaskNeeds NeedsOf(std::string_view msg_type, std::string_view content, const TaskMetadata& metadata);

// What a request runs, for people: the native function an apply_request's `ipp_call` names
// (for `ipp.map`, the function it maps), "python" for other apply_requests, else the message
// type without "_request" ("execute").
std::string TaskFunctionName(std::string_view msg_type, std::string_view content);

// The Python exception name a client is sent for an error from ParseTaskMetadata.
const char* TaskMetadataErrorName(const Status& status);

}  // namespace ipp::schedulers

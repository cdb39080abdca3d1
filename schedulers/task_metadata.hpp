// TaskMetadata: what the task scheduler reads from a task's metadata dict — allowed targets,
// retries, timeout and the `after`/`follow` dependencies (ipyparallel's
// TaskScheduler.dispatch_submission) — parsed in one step, apart from the routing.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "ipp/status.hpp"
#include "protocol/json_fields.hpp"
#include "schedulers/dependency.hpp"

namespace ipp::schedulers {

struct TaskMetadata {
  IdSet targets;  // allowed engine uuids; empty = any
  int retries = 0;
  std::optional<std::chrono::steady_clock::duration> timeout;  // unset: none (0 or negative too)
  Dependency after, follow;
};

// Ignores what it does not know, and values of the wrong type for targets/retries/timeout, as
// the stock scheduler does. Errors: InvalidArgument for a dependency that is not one (the client
// gets an InvalidDependency), ProtocolError for a value that cannot be read (a ValueError).
Result<TaskMetadata> ParseTaskMetadata(const protocol::PartFields& metadata);

// The Python exception name a client is sent for an error from ParseTaskMetadata.
const char* TaskMetadataErrorName(const Status& status);

}  // namespace ipp::schedulers

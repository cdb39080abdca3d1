// Everything ipcontroller can be told, from the command line, `--Class.trait=value` arguments
// and the simple `c.Class.trait = literal` lines of a profile's ipcontroller_config.py.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "ipp/status.hpp"

namespace ipp::controller {

enum class DbBackend { kDict, kSqlite, kNone };
// Whether our engines come in through the gateway (controller/engine_gateway.hpp): kAuto once
// half of the controller's descriptors are in use, so that engines past that still fit.
enum class GatewayUse { kAuto, kAlways, kNever };

struct ControllerOptions {
  std::string profile = "default";
  std::string profile_dir;  // overrides profile
  std::string cluster_id;
  std::string session_key;  // empty: a new random key (a reused connection file's key wins)
  std::string ip = "127.0.0.1";
  std::string location;  // default: this host's name
  std::vector<int> ports;  // pool consumed in ipyparallel's order; empty: random free ports
  int registration_port = 0;  // --port (deprecated in ipyparallel 7, still honoured)
  std::chrono::milliseconds ping{3000};
  int max_heartbeat_misses = 3;
  std::chrono::milliseconds registration_timeout{30000};
  DbBackend db = DbBackend::kDict;
  size_t db_record_limit = 1024;
  size_t db_size_limit = 1024ull << 20;
  double db_cull_fraction = 0.1;
  std::string scheme = "leastload";
  std::optional<int> hwm = std::nullopt;  // TaskScheduler.hwm; unset: adaptive prefetch (schedulers/prefetch.hpp)
  size_t remembered_tasks = 1u << 18;  // TaskSchedulerOptions::remembered_tasks
  bool reuse = false;
  bool restore = false;
  // Accepted load-balanced requests are recorded in <profile>/log/tasks<cluster_id>.journal, and
  // a --restore runs those not answered again (controller/task_journal.hpp).
  bool task_journal = false;
  std::string log_level = "INFO";
  bool log_to_file = false;
  std::string work_dir;
  bool enable_curve = false;
  // ZMQ_MAXMSGSIZE on every socket peers connect to: a peer sending a bigger frame is
  // disconnected before the frame is buffered (it is not yet authenticated then). 0: no limit,
  // as in ipyparallel.
  int64_t max_message_size = 0;
  // Messages the IOPub relay queues for one subscriber before that subscriber misses some.
  // 0: no limit, as in ipyparallel (clients wait for every request's "idle" status).
  int iopub_backlog = 0;
  // The dashboard's HTTP server (README "Dashboard"); port 0: any free port.
  bool dashboard = true;
  std::string dashboard_ip = "127.0.0.1";
  int dashboard_port = 0;
  GatewayUse gateway = GatewayUse::kAuto;
  // Every channel is also served over ipc:// in a private directory, for peers on this host
  // (controller/ipc_dir.hpp); --no-ipc: TCP only.
  bool local_ipc = true;
};

// "auto", "always" or "never".
Result<GatewayUse> ParseGatewayUse(const std::string& text);

// Parses ipyparallel's port-range syntax: "10101-10105,10108".
Result<std::vector<int>> ParsePortList(const std::string& text);

// Applies one traitlets setting ("HeartMonitor.period", "200"). Returns:
//   OK                  applied;
//   NotFound            a setting we do not support (the caller warns and goes on);
//   InvalidArgument     a supported setting with a value we cannot use.
Status ApplyTrait(ControllerOptions& options, const std::string& name, const std::string& value);

// Reads the `c.Class.trait = literal` lines of an ipcontroller_config.py and applies them.
// Returns one warning per line it could not honour; a missing file is not an error.
std::vector<std::string> ApplyPythonConfig(ControllerOptions& options, const std::string& path);

}  // namespace ipp::controller

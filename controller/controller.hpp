// Controller: one process, three threads — the hub (the thread that calls Run()), one for the
// direct/control/iopub relays and the broadcast scheduler, and one for the load-balanced task
// scheduler. They share only the zmq context and
// talk over inproc sockets: schedulers report to the hub's monitor channel and learn about
// engines from the hub's notifications.
#pragma once

#include <map>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/stop_flag.hpp"
#include "dashboard/aggregator.hpp"
#include "dashboard/server.hpp"
#include "controller/controller_options.hpp"
#include "controller/ipc_dir.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/profile_dir.hpp"

namespace ipp::controller {

struct HubOptions;
class TaskStore;

class Controller {
 public:
  explicit Controller(ControllerOptions options);
  ~Controller();

  // Binds every socket and writes the connection files. A bind failure (port in use) or an
  // unwritable profile is an error with a message for the user.
  Status Start();
  // Serves until Stop() (from a signal handler too) or a client's shutdown request; then stops
  // the scheduler threads and removes the connection files unless --reuse.
  int Run();
  // Async-signal-safe.
  void Stop() { stop_.raise(); }

  const protocol::ConnectionInfo& client_info() const { return client_info_; }
  const protocol::ConnectionInfo& engine_info() const { return engine_info_; }

 private:
  struct Parts;
  struct Ports {  // per channel name; 0: any free port
    std::map<std::string, int> engine, client;
  };
  struct Channels {  // the ports bound, as the connection files list them
    nlohmann::json engine = nlohmann::json::object(), client = nlohmann::json::object();
  };
  // Build() in steps, in this order.
  Status Build();
  Result<Ports> ChoosePorts();
  void MakeSchedulers(Parts& parts);
  Channels BindSchedulers(Parts& parts, Ports& ports);
  HubOptions MakeHubOptions(const Ports& ports) const;
  Result<std::unique_ptr<TaskStore>> MakeTaskStore() const;
  void SetConnectionInfo(const Channels& channels);
  void Connect(Parts& parts);  // the internal channels, then each part to its reactor
  std::string Interface() const { return "tcp://" + options_.ip; }
  // The ipc:// interface every channel is also bound on; "" without one.
  std::string LocalInterface() const;
  // Binds `socket` on the interface at `port` (0: any free port), and on the local interface at
  // the same number; returns the port bound.
  int BindPort(zmq::socket_t& socket, int port) const;
  Status SetUpCurve();
  // Applies the limits every peer-facing socket gets: the maximum message size, and CURVE
  // (server side) when it is enabled.
  void Secure(zmq::socket_t& socket) const;
  Status WriteConnectionFiles();
  void RemoveConnectionFiles();
  // The dashboard: its server, its file (<security>/ipcontroller<-id>-dashboard.json, 0600).
  Status StartDashboard();
  std::filesystem::path DashboardFile() const;
  void RemoveDashboardFile();  // also with --reuse: the token dies with this controller

  ControllerOptions options_;
  protocol::ProfileDir profile_;
  std::string key_;
  zmq::context_t context_;
  Logger log_;
  std::string reused_local_;  // the local interface of reused connection files
  std::unique_ptr<IpcDir> ipc_dir_;  // removed after parts_ has closed its sockets
  std::unique_ptr<Parts> parts_;
  // Fed on the hub thread; the server's threads read its snapshots. Declared before parts_'s
  // users are destroyed: the server stops (in ~Controller/Run) before the aggregator goes.
  std::unique_ptr<dashboard::Aggregator> dashboard_;
  std::unique_ptr<dashboard::Server> dashboard_server_;
  std::vector<std::thread> threads_;
  StopFlag stop_;
  protocol::ConnectionInfo client_info_, engine_info_;
  std::string curve_public_, curve_secret_;  // Z85; empty unless CURVE is enabled
};

}  // namespace ipp::controller

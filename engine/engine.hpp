// Engine: registers with a controller (ours or the stock one), answers heartbeats, and serves
// requests from clients — apply_request (native functions), execute_request (shell commands),
// and the control messages — in ipyparallel 7.1's protocol.
//
// Runs its reactor on the calling thread; user work runs on the Worker thread.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "engine/worker.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/session.hpp"

namespace ipp::engine {

struct EngineOptions {
  protocol::ConnectionInfo connection;
  std::optional<int> requested_id;
  bool mpi = false;
  std::vector<std::string> plugins;
  int max_heartbeat_misses = 10;  // exit after this many checks without a ping
  std::chrono::milliseconds registration_timeout{30000};
};

class Engine {
 public:
  Engine(EngineOptions options, Logger log);
  ~Engine();

  // Starts the worker (MPI_Init, plugins), registers and connects. Errors explain themselves.
  Status Start();
  // Serves until shutdown_request, a signal (Stop) or lost heartbeats. Returns the exit code.
  int Run();
  void Stop() { stop_requested_.store(true); }  // async-signal-safe

  int id() const { return id_; }
  const std::string& uuid() const { return uuid_; }

 private:
  struct Request {
    zmq::socket_t* socket = nullptr;
    protocol::Message message;
    std::string started;
    std::string header_text;  // as it arrived: the parent of every reply and output
    // What the reply's metadata repeats from the request's.
    bool is_broadcast = false, is_coalescing = false;
    std::string original_msg_id;
  };
  // Verifies and parses a shell or control message.
  Result<Request> ParseRequest(zmq::socket_t* socket, protocol::Frames&& frames);

  Status StartWorker();
  Status Register();
  void Connect(const nlohmann::json& reply);
  void Configure(zmq::socket_t& socket, bool identity);

  void OnShell(zmq::socket_t& socket);
  void OnControl();
  void OnWorker();
  void OnPing();
  void CheckHeartbeat();
  void Pump();
  void Dispatch(Request request);
  void Finish(WorkItem* item);

  // The reply's metadata: status (with engine_info for errors), and for a task (`task`) what
  // ipyparallel's engines report: started, engine, dependencies_met and the broadcast fields.
  std::string ReplyMetadata(const Request& request, bool task, const std::string& status) const;
  void Reply(Request& request, std::string_view msg_type, const nlohmann::json& content, bool task_metadata,
             protocol::Frames buffers = {});
  void ReplyError(Request& request, const std::string& ename, const std::string& evalue);
  void ReplyAborted(Request& request);
  void Publish(std::string_view msg_type, const nlohmann::json& content, const std::string& parent_text);
  void Unregister();

  EngineOptions options_;
  Logger log_;
  std::string uuid_;
  int id_ = -1;
  int mpi_rank_ = 0, mpi_size_ = 1;
  std::chrono::milliseconds hb_period_{3000};
  zmq::context_t context_;
  protocol::Session session_;
  std::unique_ptr<Worker> worker_;
  zmq::socket_t worker_socket_, registration_, shell_, control_, iopub_, ping_, pong_;
  Reactor reactor_;

  // Requests wait in queue_ until the worker takes them, up to kInFlight at a time: with several
  // handed over, the worker goes from one to the next without waiting for this thread to wake
  // (one wake-up per task each way was most of an engine's cost for short tasks). Those handed
  // over stay abortable until they start (WorkItem::state).
  static constexpr size_t kInFlight = 16;
  struct Running {
    Request request;
    WorkItem* item;  // owned by the worker until it comes back in a "done" event
  };
  std::deque<Request> queue_;
  std::deque<Running> running_;  // in the order the worker runs them
  uint64_t next_item_ = 1;
  int execution_count_ = 0;
  std::unordered_set<std::string> aborted_;
  bool pinged_ = false;
  int missed_checks_ = 0;
  int exit_code_ = 0;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace ipp::engine

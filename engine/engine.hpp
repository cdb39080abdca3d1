// Engine: registers with a controller (ours or the stock one), answers heartbeats, and serves
// requests from clients — apply_request (native functions), execute_request (shell commands),
// and the control messages — in ipyparallel 7.1's protocol.
//
// Two threads, as in ipykernel: the thread calling Run() serves the shell socket and runs each
// request itself (socket -> function -> reply, no hand-off: a hand-off to another thread and
// back would add two thread wake-ups to every request's round trip). The control
// thread answers heartbeats and the control channel (abort, interrupt, clear, shutdown) while
// work runs, and passes on what the shell thread must act on — aborted msg_ids, a cleared
// namespace, stop — over an inproc PAIR. A second PAIR goes the other way: when a request changed
// the function table (ipp.load), the shell thread hands the engine's new capabilities to the
// control thread, which owns the registration socket and tells our hub (ipp_engine_update; never
// a stock controller, which would log an unknown query type). Each thread owns its sockets and
// its Session. The one state both touch beyond atomics is ReleasedRequests (with its own mutex):
// the control thread gives queued load-balanced requests back to our task scheduler
// (ipp_release_request) while the shell thread runs a long one.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/recent_ids.hpp"
#include "common/reactor.hpp"
#include "common/stop_flag.hpp"
#include "engine/executor.hpp"
#include "engine/gateway_link.hpp"
#include "engine/released_requests.hpp"
#include "protocol/capabilities.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/session.hpp"

namespace ipp::engine {

struct EngineOptions {
  protocol::ConnectionInfo connection;
  std::filesystem::path connection_file;  // where `connection` came from (empty: elsewhere), for errors
  std::optional<int> requested_id;
  bool mpi = false;
  std::vector<std::string> plugins;
  // Announced at registration (protocol/capabilities.hpp), for tasks that require them.
  std::set<std::string> tags;
  std::map<std::string, double> resources;
  int max_heartbeat_misses = 10;  // exit after this many checks without a ping
  std::chrono::milliseconds registration_timeout{30000};
};

class Engine {
 public:
  Engine(EngineOptions options, Logger log);
  ~Engine();

  // Starts the executor (MPI_Init, plugins), registers, connects and starts the control thread.
  // Errors explain themselves.
  Status Start();
  // Serves shell requests on this thread until shutdown_request, a signal (Stop) or lost
  // heartbeats. Returns the exit code.
  int Run();
  void Stop() { stop_.raise(); }  // async-signal-safe

  int id() const { return id_; }
  const std::string& uuid() const { return uuid_; }

 private:
  struct Request {
    protocol::Message message;  // identities, header fields, content, buffers
    std::string started;
    std::string header_text;  // as it arrived: the parent of every reply and output
    // What the reply's metadata repeats from the request's.
    bool is_broadcast = false, is_coalescing = false;
    std::string original_msg_id;
    // Non-empty: its metadata or content is not a JSON object (the header is fine), and this
    // says why. Such a request is answered with an error, not dropped: a load-balanced task
    // holds its engine's slot in the scheduler until its reply.
    std::string invalid;
    std::string label = "null";  // JSON text: ipyparallel 9.1 clients read it back from replies
  };
  // One thread's way to answer: its session (signing, replay history) and its sockets.
  struct Outbox {
    protocol::Session session;
    zmq::socket_t* replies;  // shell_ or control_
    zmq::socket_t* iopub;
  };

  Status Register();
  // via_gateway: the hub asked for all channels over one connection to its gateway.
  Status Connect(const nlohmann::json& reply, bool via_gateway);
  Status Configure(zmq::socket_t& socket, bool identity, bool curve = true);
  // What this engine can run now: its function table, tags and resources. Before the control
  // thread starts, or on the shell thread (the table's owner).
  protocol::Capabilities Capabilities() const;

  // Shell thread.
  void Serve(Request request);
  // Applies the control thread's commands (abort, clear, stop); sets stopping_ on "stop".
  void HandleCommands();
  // Answers "aborted" to what AbortWaiting() took off the shell socket.
  void ReplyTakenAborts();
  void AbortWaiting();
  void AnnounceIfFunctionsChanged();
  // The plugins our hub has every engine load as it registers (after `ipp load`), kept from the
  // registration reply and loaded by the shell thread before it serves.
  void LoadClusterPlugins();

  // Control thread.
  void OnControl();
  void OnPing();
  void CheckHeartbeat();
  void Leave(int exit_code);
  void TellShell(std::vector<std::string> frames);
  void OnShellNews();
  void OnRegistrationReply();

  // Verifies and parses a shell or control message.
  Result<Request> ParseRequest(Outbox& out, protocol::Frames&& frames);
  // The reply's metadata: status (with engine_info for errors), and for a task (`task`) what
  // ipyparallel's engines report: started, engine, dependencies_met and the broadcast fields.
  std::string ReplyMetadata(const Request& request, bool task, const std::string& status) const;
  void Reply(Outbox& out, Request& request, std::string_view msg_type, const nlohmann::json& content,
             bool task_metadata, protocol::Frames buffers = {});
  // The same with the content as JSON text and its status.
  void ReplyText(Outbox& out, Request& request, std::string_view msg_type, const std::string& status,
                 std::string content, bool task_metadata, protocol::Frames buffers);
  void ReplyError(Outbox& out, Request& request, const std::string& ename, const std::string& evalue);
  void ReplyAborted(Outbox& out, Request& request);
  void Publish(Outbox& out, std::string_view msg_type, const nlohmann::json& content,
               const std::string& parent_text);
  void Unregister();

  EngineOptions options_;
  Logger log_;
  std::string uuid_;
  int id_ = -1;
  std::chrono::milliseconds hb_period_{3000};
  // The registration_reply said "ipp_hub": our controller, which takes ipp_engine_update. Set
  // by Register() before the control thread starts; read-only afterwards (both threads read it).
  bool ipp_hub_ = false;
  zmq::context_t context_;
  Executor executor_;

  // Shell thread (the caller of Run).
  zmq::socket_t shell_, iopub_, from_control_, to_control_;
  Outbox shell_out_;
  size_t announced_loads_ = 0;  // the function table's loads() last announced to the hub
  std::vector<std::string> cluster_plugins_;
  std::map<std::string, std::string> plugin_errors_;  // the cluster's plugins that did not load here
  bool plugin_errors_announced_ = true;  // they change without the function table's loads()
  int execution_count_ = 0;
  // msg_ids to refuse when they arrive. Bounded: most named ids never come here (the scheduler
  // dropped them, or they went to another engine).
  RecentIds aborted_{1u << 16};
  // An abort without ids takes every waiting request off the socket when it is applied: before
  // the running request's reply leaves, so nothing sent after that reply is swept up. They are
  // answered after that reply, in arrival order.
  std::vector<protocol::Frames> taken_aborts_;
  bool stopping_ = false;

  // Control thread.
  zmq::socket_t registration_, control_, control_iopub_, ping_, pong_, to_shell_, from_shell_;
  Outbox control_out_;
  Reactor reactor_;
  // Set when the hub asked this engine in through its gateway; its sockets belong to the control
  // thread (Drain: to the shell thread once that has joined it).
  std::unique_ptr<GatewayLink> link_;
  std::thread control_thread_;
  bool pinged_ = false;
  int missed_checks_ = 0;
  std::chrono::steady_clock::time_point last_heartbeat_check_{}, last_pinged_ = std::chrono::steady_clock::now();

  // Both threads (its own mutex): queued requests given back to the task scheduler.
  ReleasedRequests released_;

  std::atomic<int> exit_code_{0};
  // Set when the engine starts to leave (a signal, a shutdown request): what that interrupts
  // ends as EngineError, as when an engine dies, not as a user's KeyboardInterrupt.
  std::atomic<bool> leaving_{false};
  StopFlag stop_;
};

}  // namespace ipp::engine

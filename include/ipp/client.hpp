// The C++ client of an ipp / IPython Parallel cluster, modelled on ipyparallel's Python API.
//
//   auto client = ipp::Client::Connect(ipp::ClientOptions::Profile("default"));  // Result<unique_ptr<Client>>
//   (*client)->wait_for_engines(4, std::chrono::seconds(30));
//   auto all = (*client)->direct_view();                         // every engine
//   ipp::AsyncResult r = all.apply("pi.sample", 1000000);          // a native function
//   for (const ipp::Json& v : r.get()) ...;                         // one result per engine
//   auto lb = (*client)->load_balanced_view();
//   std::vector<ipp::Json> squares = lb.map("my.square", items).get();
//
// Functions are the engines' native functions (plugins, see engine_plugin.hpp) and built-ins.
//
// Errors, one rule for the whole API:
//  - A call that returns an AsyncResult never throws and never fails by itself: every failure,
//    also one found before anything was sent (an engine id that is not registered), is in the
//    result. AsyncResult::get() throws it, as Python's AsyncResult.get() raises: RemoteError
//    (with engine id, ename, evalue, traceback) or TimeoutError. AsyncResult::result() gives the
//    same outcome without throwing, as a Result whose Status is ToStatus() of the error.
//  - Every other call blocks and returns a Status, or a Result<T> when it has a value.
//  - The codes are the same everywhere (ToStatus() is the one mapping from errors to codes):
//      kTimeout     a deadline passed: the caller's timeout, the client's timeout for hub
//                   queries, or a task's own timeout (TaskOptions::timeout, shell's timeout)
//      kNotFound    an engine id that is not registered (in any view, and in abort, send_signal
//                   and shutdown), or a msg_id the hub does not know
//      kRemoteError the request failed where it went: the function's exception, an abort, the
//                   scheduler's refusal (ImpossibleDependency) or its engine's death
//                   (EngineError); the message names the engine, ename and evalue
//      kUnavailable the controller refused a request or answered it with an error
//    and Connect's own (kNotFound: no cluster; kIOError, kInvalidArgument: bad connection file;
//    kTimeout: no answer; kProtocolError, kUnavailable: a bad or refusing controller).
//  - In an AsyncResult, a failure found by the client or the hub (not by an engine) has engine
//    id -1 and ename "IndexError" (unknown engine), "KeyError" (unknown msg_id) or "TimeoutError".
//
// Threads: a Client runs one I/O thread that owns all its sockets. Its methods, the views and
// AsyncResults may be used from any thread. An on_each callback runs on the I/O thread for a
// message that completes after it was added (it must not block), and at once on the calling
// thread for each message already done.
//
// Lifetimes: a view holds a pointer to its Client: the Client must outlive its views. An
// AsyncResult may outlive the Client; what was not done when the Client was destroyed then
// never completes.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ipp/engine_plugin.hpp"
#include "ipp/status.hpp"

namespace ipp {

namespace detail {  // the library's own types, not part of the API
struct ResultState;
struct ResultAccess;
struct ClientImpl;
}  // namespace detail

using Millis = std::chrono::milliseconds;
inline constexpr Millis kForever = Millis::max();

class RemoteError : public std::runtime_error {
 public:
  RemoteError(std::string ename, std::string evalue, std::vector<std::string> traceback, int engine_id)
      : std::runtime_error("[engine " + std::to_string(engine_id) + "] " + ename + ": " + evalue),
        ename_(std::move(ename)), evalue_(std::move(evalue)), traceback_(std::move(traceback)),
        engine_id_(engine_id) {}
  // Copies own their message: std::runtime_error's copies share one reference-counted string,
  // and a result's error is copied out to the caller's thread while the client's I/O thread may
  // free the original (safe, but not visibly ordered to ThreadSanitizer).
  RemoteError(const RemoteError& other)
      : std::runtime_error(std::string(other.what())), ename_(other.ename_), evalue_(other.evalue_),
        traceback_(other.traceback_), engine_id_(other.engine_id_) {}
  RemoteError& operator=(const RemoteError& other) {
    if (this != &other) *this = RemoteError(other);
    return *this;
  }
  RemoteError(RemoteError&&) = default;
  RemoteError& operator=(RemoteError&&) = default;
  const std::string& ename() const { return ename_; }
  const std::string& evalue() const { return evalue_; }
  const std::vector<std::string>& traceback() const { return traceback_; }
  int engine_id() const { return engine_id_; }  // -1 when no engine ran it

 private:
  std::string ename_, evalue_;
  std::vector<std::string> traceback_;
  int engine_id_;
};

class TimeoutError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The Status of a failed request (see "Errors" above): the one place errors become codes.
Status ToStatus(const RemoteError& error);
Status ToStatus(const TimeoutError& error);

// Where a submitted message stands.
enum class TaskStatus { kPending, kOk, kError, kAborted };
const char* TaskStatusName(TaskStatus status);  // "pending", "ok", "error", "aborted"

// What is known about one submitted message.
struct TaskInfo {
  std::string msg_id;
  TaskStatus status = TaskStatus::kPending;  // kError and kAborted come with `error`
  int engine_id = -1;
  std::string engine_uuid;
  std::string submitted, started, completed;  // ISO 8601
  std::string stdout_text, stderr_text;       // from IOPub
  // The reply came but the end of its output (IOPub `idle`) did not, within
  // ClientOptions::output_grace: stdout_text/stderr_text may lack some output.
  bool output_incomplete = false;
  // The function's value (ipp_result); for a request that is not a native call (execute,
  // kernel_info, ...) the reply's whole content.
  Json result;
  std::vector<Buffer> buffers;                 // the function's buffers
  std::optional<RemoteError> error;
};

class AsyncResult {
 public:
  AsyncResult() = default;
  const std::vector<std::string>& msg_ids() const;
  bool ready() const;
  // Waits until every message is done or `timeout` passes; true if done.
  bool wait(Millis timeout = kForever) const;
  // The results in order (a map's items flattened). Throws RemoteError for the first failed
  // message, TimeoutError if not done in time.
  std::vector<Json> get(Millis timeout = kForever) const;
  // get() without exceptions: the results, or ToStatus() of what get() would throw.
  Result<std::vector<Json>> result(Millis timeout = kForever) const;
  // The single result of a one-message request.
  Json get_one(Millis timeout = kForever) const;
  // Throws std::logic_error if not ready.
  bool successful() const;
  size_t progress() const;  // messages done
  size_t size() const;      // messages
  std::vector<TaskInfo> info() const;  // a snapshot, per message
  // Calls `callback` for each message as it completes: on the I/O thread for those completing
  // later, and before on_each returns, on the caller's thread, for those done already.
  void on_each(std::function<void(size_t index, const TaskInfo&)> callback) const;


 private:
  friend struct detail::ResultAccess;
  explicit AsyncResult(std::shared_ptr<detail::ResultState> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::ResultState> state_;
};

struct ClientOptions {
  std::string profile = "default";
  std::string profile_dir;      // overrides profile
  std::string cluster_id;
  std::string connection_file;  // overrides profile/cluster_id
  Millis timeout{10000};        // for the connection and hub queries
  // How long a request whose reply has arrived waits for the end of its output (the IOPub
  // `idle` after an execute) while no IOPub message arrives; then it completes with
  // TaskInfo::output_incomplete (an `idle` can be lost: PUB/SUB drops what it cannot deliver).
  Millis output_grace{2000};
  // Reach a controller on another machine through SSH, as ipyparallel's --ssh does:
  // "user@host" or "user@host:port". One ssh process forwards every channel to local ports.
  std::string ssh_server;
  std::vector<std::string> ssh_args;  // extra ssh options, e.g. {"-i", "key", "-o", "..."}

  static ClientOptions File(std::string path) {
    ClientOptions o;
    o.connection_file = std::move(path);
    return o;
  }
  static ClientOptions Profile(std::string name, std::string cluster_id = "") {
    ClientOptions o;
    o.profile = std::move(name);
    o.cluster_id = std::move(cluster_id);
    return o;
  }
  static ClientOptions ProfileDir(std::string dir, std::string cluster_id = "") {
    ClientOptions o;
    o.profile_dir = std::move(dir);
    o.cluster_id = std::move(cluster_id);
    return o;
  }
};

// Options of a load-balanced submission (LoadBalancedView::set / temp flags in Python).
struct TaskOptions {
  int retries = 0;
  std::vector<std::string> after, follow;  // msg_ids
  bool after_all = true, follow_all = true;
  bool success = true, failure = false;
  Millis timeout{0};  // how long a task may wait for its dependencies; 0 = no limit
  std::vector<int> targets;  // engines it may run on; empty = any
  // Tags or resources the engine must have ("gpu", "gpus>=2"), sent as metadata "requires"
  // (`requires` itself is a C++20 keyword). Our controller waits for such an engine; the stock
  // one ignores it.
  std::vector<std::string> requirements;
  // Sent as metadata "label": kept in the task database, where db_query finds it (ipyparallel 9.1).
  std::string label;
  // Sent as metadata "priority" when not 0: among load-balanced tasks waiting for an engine, a
  // higher one runs first (our controller; the stock one ignores it).
  int priority = 0;
};

class Client;

// What an engine is: our C++ ipengine (native functions and shell commands) or a Python kernel
// (the stock ipyparallel engine: pickled Python functions and Python code).
enum class EngineKind { kUnknown, kNative, kPython };
const char* EngineKindName(EngineKind kind);  // "unknown", "native", "python"

// One engine as Client::engines() lists it: what it is and can run, as it told our controller at
// registration (and again when it loaded a plugin), and its load.
struct EngineInfo {
  int id = -1;
  std::string uuid;
  EngineKind kind = EngineKind::kUnknown;
  int functions = -1;  // how many functions it can run (0 for a Python engine); -1: not known (the stock controller)
  std::vector<std::string> tags;             // ipengine --tag
  std::map<std::string, double> resources;   // ipengine --resources
  // The cluster's plugins (ipp load) that did not load on it: path -> why (its functions are missing).
  std::map<std::string, std::string> plugin_errors;
  int queue = 0;  // requests waiting or running on it, direct and load-balanced
  int done = 0;   // requests it finished
};

class DirectView {
 public:
  // apply: one call per target engine.
  AsyncResult apply(const std::string& function, Json args = nullptr, std::vector<Buffer> buffers = {});
  // map with scatter semantics: items are split into one contiguous chunk per engine.
  AsyncResult map(const std::string& function, const std::vector<Json>& items);
  // execute: a shell command on each engine (output in TaskInfo::stdout_text); on a Python
  // engine, Python code. user_expressions and silent as in Jupyter's execute_request (Python
  // engines evaluate the expressions after the code; the reply, each TaskInfo::result, has them).
  AsyncResult execute(const std::string& command, const Json& user_expressions = Json::object(), bool silent = false);
  Status push(const std::map<std::string, Json>& values, Millis timeout = kForever);
  Status push_buffer(const std::string& name, Buffer buffer, Millis timeout = kForever);
  // One Json per target: {name: value, ...}.
  Result<std::vector<Json>> pull(const std::vector<std::string>& names, Millis timeout = kForever);
  Status scatter(const std::string& name, const std::vector<Json>& items, Millis timeout = kForever);
  Result<std::vector<Json>> gather(const std::string& name, Millis timeout = kForever);
  // Loads the plugin into the view's native engines (one result each); Python engines in the view
  // are skipped, as by `ipp load`. A view of Python engines only gets a ValueError.
  AsyncResult load_plugin(const std::string& path);
  // Each engine's kernel_info_reply content (implementation, language_info...), asked on the
  // control channel: answered at once, also by a busy engine, and by every kind of engine.
  AsyncResult kernel_info();
  AsyncResult abort(const std::vector<std::string>& msg_ids = {});
  const std::vector<int>& targets() const { return targets_; }

 private:
  friend class Client;

  DirectView(Client* client, std::vector<int> targets) : client_(client), targets_(std::move(targets)) {}
  Client* client_;
  std::vector<int> targets_;
};

class LoadBalancedView {
 public:
  AsyncResult apply(const std::string& function, Json args = nullptr, std::vector<Buffer> buffers = {});
  // chunksize items per task; ordered=false returns results in completion order.
  AsyncResult map(const std::string& function, const std::vector<Json>& items, size_t chunksize = 1,
                  bool ordered = true);
  // A shell command as a task: its result is {exit_code, stdout, stderr, ...}; with check, a
  // non-zero exit is a failure (and so retried when retries remain).
  // `timeout` bounds the command's run (0: no limit).
  AsyncResult shell(const std::string& command, Millis timeout = Millis(0), bool check = true);
  TaskOptions& options() { return options_; }

 private:
  friend class Client;

  LoadBalancedView(Client* client, TaskOptions options) : client_(client), options_(std::move(options)) {}
  Client* client_;
  TaskOptions options_;
};

class BroadcastView {
 public:
  AsyncResult apply(const std::string& function, Json args = nullptr, std::vector<Buffer> buffers = {});

 private:
  friend class Client;

  BroadcastView(Client* client, std::vector<int> targets) : client_(client), targets_(std::move(targets)) {}
  Client* client_;
  std::vector<int> targets_;
};

class Client {
 public:
  // Reads the connection file, asks the hub for the engines. Errors: no cluster running,
  // unreadable file, no answer within options.timeout.
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  std::vector<int> ids() const;  // registered engines, kept current by notifications
  // OK once at least n engines are registered; kTimeout if not within `timeout`.
  Status wait_for_engines(size_t n, Millis timeout);
  // The kind of each engine in `targets` (empty: all): from the hub's queue_status, which our
  // controller answers with each engine's kind; for engines it does not name (the stock
  // controller), from their kernel_info (asked once per engine; kUnknown for one that did not
  // answer within `timeout`).
  std::map<int, EngineKind> engine_kinds(std::vector<int> targets = {}, Millis timeout = Millis(5000));
  // Every engine the hub knows, by id, from one queue_status (blocking up to the client's
  // timeout). Against the stock controller, which tells only the load, the kind comes from
  // kernel_info as in engine_kinds (up to `timeout`), functions is -1 and tags and resources are
  // empty.
  Result<std::vector<EngineInfo>> engines(Millis timeout = Millis(5000));

  DirectView direct_view(std::vector<int> targets = {});  // empty: all engines now
  LoadBalancedView load_balanced_view(TaskOptions options = {});
  BroadcastView broadcast_view(std::vector<int> targets = {});

  // Hub queries (block up to the client's timeout).
  Result<Json> queue_status(std::vector<int> targets = {}, bool verbose = false);
  Result<Json> db_query(const Json& query, std::vector<std::string> keys = {});
  Result<std::vector<std::string>> hub_history();
  Status purge_results(const std::vector<std::string>& msg_ids);  // {"all"} purges everything done
  // Tells our controller that an engine process ended (ipp_engine_exit_request; ipcluster does
  // for the engines it launched): its host and pid as its engine announced them, how it ended,
  // the end of its log. The id of the engine it was, or nullopt when the hub knew none; the hub
  // drops that engine at once. The stock controller does not know the request (an error).
  Result<std::optional<int>> report_engine_exit(const std::string& hostname, long pid, const std::string& how,
                                                const std::string& log_tail);
  // Plugin libraries that every native engine loads as it registers, from now on: engines started
  // or restarted later get what load_plugin gave those running now. register_plugin does not
  // load it anywhere; it returns the native engines that registered before it (load_plugin into
  // them; some may still be registering, and appear in ids() shortly). `path` is made absolute
  // from this process's directory. forget_plugin: engines registering later no longer load it
  // (kNotFound if none did).
  // Our controller only: the stock one keeps no such list (kInfeasible, nothing sent).
  Result<std::vector<int>> register_plugin(const std::string& path);
  Status forget_plugin(const std::string& path);
  Result<std::vector<std::string>> registered_plugins();
  // Results of earlier messages, also those submitted by other clients. Asks the hub (blocking
  // up to the client's timeout); a message still pending then completes when it ends (the I/O
  // thread asks the hub again until it has, as Python's AsyncHubResult polls).
  AsyncResult get_result(const std::vector<std::string>& msg_ids);
  // Requests named (none: every request waiting) are answered "aborted" and never run, whether
  // they wait on `targets` (empty: every engine) or in the load-balanced scheduler.
  // For abort, send_signal and shutdown, empty `targets` means the engines registered now; a
  // named engine that is not registered is kNotFound.
  Status abort(const std::vector<std::string>& msg_ids, std::vector<int> targets = {});
  // Sends signal `sig` to the work running on `targets` (empty: every engine), as ipyparallel's
  // Client.send_signal: a shell command's process group gets it, a native function sees
  // CallContext::interrupted().
  Status send_signal(int sig, std::vector<int> targets = {});
  Status shutdown(std::vector<int> targets = {}, bool hub = false);

  // What the client's I/O thread has seen so far: for diagnosing lost or doubled replies.
  struct Counters {
    uint64_t replies = 0;          // replies that completed a pending request
    uint64_t unmatched_replies = 0;  // replies for nothing pending (late duplicates, other clients)
    uint64_t dropped_messages = 0;   // unsigned, forged or malformed messages
  };
  Counters counters() const;


 private:
  friend class DirectView;
  friend class LoadBalancedView;
  friend class BroadcastView;
  explicit Client(std::unique_ptr<detail::ClientImpl> impl);
  std::unique_ptr<detail::ClientImpl> impl_;
};

}  // namespace ipp

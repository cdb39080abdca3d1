// Worker: the engine's one thread for user work. Native functions, shell commands and
// namespace changes all run here, one at a time, so the engine's reactor stays free to answer
// heartbeats and control messages (abort, interrupt, shutdown) while work runs.
//
// The engine hands a WorkItem to the worker by pointer over an inproc PAIR socket and gets it
// back the same way when it is done (ownership travels with the pointer; nothing is shared but
// the atomics in `control`). Output produced while it runs comes back as "out" events.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/pointer_frame.hpp"
#include "engine/function_table.hpp"
#include "engine/shell_command.hpp"
#include "ipp/engine_plugin.hpp"

namespace ipp::engine {

struct WorkItem {
  enum class Kind { kCall, kShell, kClearNamespace };
  Kind kind = Kind::kCall;
  uint64_t id = 0;
  // kCall
  std::string function;
  Json args;
  std::vector<Buffer> buffers;
  // kShell
  std::string command;
  std::chrono::milliseconds timeout{0};
  // Who gets the item first: the worker starting it (kQueued -> kStarted) or the engine
  // aborting it (kQueued -> kCancelled; the worker then passes it back untouched).
  enum State : int { kQueued, kStarted, kCancelled };
  std::atomic<int> state{kQueued};
  // Results, filled by the worker.
  bool ok = true;
  Json result;
  std::vector<Buffer> out_buffers;
  std::string ename, evalue;
  std::vector<std::string> traceback;
};

struct WorkerInfo {
  int engine_id = -1;
  std::string uuid;
  bool mpi = false;
};

class Worker {
 public:
  // `endpoint`: the inproc address of the engine's PAIR socket (bound before Start()).
  Worker(zmq::context_t& context, std::string endpoint, Logger log);
  ~Worker();

  // Starts the thread; with info.mpi it calls MPI_Init there. Then loads `plugins`.
  void Start(WorkerInfo info, std::vector<std::string> plugins);
  void Join();
  // Set by the engine (any thread): stops the running command or asks the function to stop.
  CommandControl& control() { return control_; }

  // Events sent to the engine: ["ready", rank, size, error] once at start; ["out", id, stream,
  // text] while an item runs; ["done", pointer] when it finishes. Items: ["work", pointer];
  // ["engine_id", id] after registration; ["stop"].

 private:
  void Run(WorkerInfo info, std::vector<std::string> plugins);
  void Execute(WorkItem& item, zmq::socket_t& socket, const WorkerInfo& info);
  void RegisterBuiltins(const WorkerInfo& info);

  zmq::context_t& context_;
  std::string endpoint_;
  Logger log_;
  std::thread thread_;
  CommandControl control_;
  FunctionTable functions_;
  Namespace namespace_;
  int mpi_rank_ = 0, mpi_size_ = 1;
  const void* mpi_comm_ = nullptr;
};

}  // namespace ipp::engine

// Executor: runs the engine's user work — native functions, shell commands, namespace changes —
// one at a time on the thread that serves the shell socket (the engine's main thread), so a
// request goes from socket to function to reply without crossing threads. The engine's control
// thread stays free meanwhile: it answers heartbeats and control messages and interrupts the
// running work through `control()` (atomics: the only state the two threads share).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/logging.hpp"
#include "engine/function_table.hpp"
#include "engine/mpi_world.hpp"
#include "engine/shell_command.hpp"
#include "ipp/engine_plugin.hpp"
#include "ipp/status.hpp"

namespace ipp::engine {

struct WorkItem {
  enum class Kind { kCall, kShell, kClearNamespace };
  Kind kind = Kind::kCall;
  // kCall
  std::string function;
  Json args;
  std::vector<Buffer> buffers;
  // kShell
  std::string command;
  std::chrono::milliseconds timeout{0};
  // Results.
  bool ok = true;
  Json result;
  std::vector<Buffer> out_buffers;
  std::string ename, evalue;
  std::vector<std::string> traceback;
  // What a function wrote with ctx.print / print_error: it goes out on IOPub as it is written,
  // and again in the reply, which (unlike IOPub) a client cannot receive before the result.
  std::string printed_stdout, printed_stderr;
};

struct ExecutorInfo {
  int engine_id = -1;
  std::string uuid;
  bool mpi = false;
};

class Executor {
 public:
  explicit Executor(Logger log);
  ~Executor();

  // With info.mpi starts MPI (MpiWorld: MPI calls then belong to this thread); loads `plugins`.
  Status Start(ExecutorInfo info, const std::vector<std::string>& plugins);
  // Loads a plugin library into the function table (this thread only); the names it added.
  Result<std::vector<std::string>> Load(const std::string& path);
  void set_engine_id(int id) { info_.engine_id = id; }
  int mpi_rank() const { return mpi_ ? mpi_->rank() : 0; }
  int mpi_size() const { return mpi_ ? mpi_->size() : 1; }

  // Runs `item`, filling its results; output is passed to `on_output` as it comes.
  void Execute(WorkItem& item, const OutputCallback& on_output);
  // The function table (this thread only): every name, and how many plugin loads changed it.
  const FunctionTable& functions() const { return functions_; }
  // Set from any thread: stops the running command or asks the function to stop.
  CommandControl& control() { return control_; }

 private:
  void RegisterBuiltins();

  Logger log_;
  ExecutorInfo info_;
  CommandControl control_;
  FunctionTable functions_;
  Namespace namespace_;
  std::unique_ptr<MpiWorld> mpi_;  // --mpi only: MPI_Finalize when it goes
};

}  // namespace ipp::engine

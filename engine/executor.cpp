#include "engine/executor.hpp"

#include <cxxabi.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <thread>
#include <typeinfo>

#include "common/host.hpp"

namespace ipp::engine {

namespace {

// The CallContext a function sees; lives for one call.
class Context : public CallContext {
 public:
  Context(const ExecutorInfo& info, int rank, int size, const void* comm, WorkItem& item,
          Namespace& ns, const OutputCallback& on_output, CommandControl& control)
      : info_(info), rank_(rank), size_(size), comm_(comm), item_(item), ns_(ns), on_output_(on_output),
        control_(control) {}
  int engine_id() const override { return info_.engine_id; }
  int mpi_rank() const override { return rank_; }
  int mpi_size() const override { return size_; }
  const void* mpi_comm() const override { return comm_; }
  const std::vector<Buffer>& buffers() const override { return item_.buffers; }
  void add_buffer(Buffer buffer) override { item_.out_buffers.push_back(std::move(buffer)); }
  Namespace& ns() override { return ns_; }
  void print(std::string_view text) override {
    item_.printed_stdout += text;
    Emit("stdout", text);
  }
  void print_error(std::string_view text) override {
    item_.printed_stderr += text;
    Emit("stderr", text);
  }
  bool interrupted() const override { return control_.interrupt.load(); }

  void Emit(const char* stream, std::string_view text) {
    if (!text.empty()) on_output_(stream, text);
  }

 private:
  const ExecutorInfo& info_;
  int rank_, size_;
  const void* comm_;
  WorkItem& item_;
  Namespace& ns_;
  const OutputCallback& on_output_;
  CommandControl& control_;
};

Json CommandJson(const CommandResult& r) {
  return {{"exit_code", r.exit_code}, {"signal", r.term_signal}, {"timed_out", r.timed_out},
          {"interrupted", r.interrupted}, {"stdout", r.stdout_text}, {"stderr", r.stderr_text}};
}

// Thrown by builtins for errors with a specific name.
struct NamedError : std::runtime_error {
  NamedError(std::string name, const std::string& what, Json detail = nullptr)
      : std::runtime_error(what), ename(std::move(name)), detail(std::move(detail)) {}
  std::string ename;
  Json detail;
};

// A type's name as written in C++ ("std::domain_error"), for the ename of what a function threw.
std::string Demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

struct CallError {
  std::string ename, evalue;
  Json detail;
};

// Inside a catch block: what the exception being handled says about the call of `function`.
// A C++ exception keeps its own class as the ename and its what() as the evalue.
CallError CurrentError(const std::string& function) {
  try {
    throw;
  } catch (const NamedError& e) {
    return {e.ename, e.what(), e.detail};
  } catch (const Json::exception& e) {
    return {"TypeError", "bad arguments for " + function + ": " + e.what(), nullptr};
  } catch (const std::exception& e) {
    return {Demangle(typeid(e).name()), e.what(), nullptr};
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return {type ? Demangle(type->name()) : "UnknownException", function + " threw a non-standard exception", nullptr};
  }
}

}  // namespace

Executor::Executor(Logger log) : log_(std::move(log)) {}

Executor::~Executor() = default;

void Executor::RegisterBuiltins() {
  auto& f = functions_;
  f.add("ipp.push", [](const Json& args, CallContext& ctx) {
    const Json values = args.value("values", Json::object());  // named: .items() must not outlive it
    for (auto& [name, data] : values.items()) ctx.ns().set(name, Value{data, {}});
    const Json names = args.value("buffer_names", Json::array());
    if (names.size() != ctx.buffers().size()) {
      throw NamedError("ValueError", "push: " + std::to_string(ctx.buffers().size()) + " buffers but " +
                                         std::to_string(names.size()) + " buffer names");
    }
    for (size_t i = 0; i < names.size(); ++i) {
      std::string name = names[i].get<std::string>();
      const Value* old = ctx.ns().get(name);
      Value v = old ? *old : Value{nullptr, {}};
      v.buffers.push_back(ctx.buffers()[i]);
      ctx.ns().set(name, std::move(v));
    }
    return Json(nullptr);
  }, "store values (and buffers) in the namespace");
  f.add("ipp.pull", [](const Json& args, CallContext& ctx) {
    Json values = Json::object(), buffer_names = Json::array();
    for (const auto& n : args.at("names")) {
      std::string name = n.get<std::string>();
      const Value* v = ctx.ns().get(name);
      if (!v) throw NamedError("NameError", "name '" + name + "' is not defined");
      values[name] = v->data;
      for (const Buffer& b : v->buffers) {
        buffer_names.push_back(name);
        ctx.add_buffer(b);
      }
    }
    return Json{{"values", values}, {"buffer_names", buffer_names}};
  }, "read values (and buffers) from the namespace");
  f.add("ipp.delete", [](const Json& args, CallContext& ctx) {
    for (const auto& n : args.at("names")) ctx.ns().erase(n.get<std::string>());
    return Json(nullptr);
  }, "remove names from the namespace");
  f.add("ipp.names", [](const Json&, CallContext& ctx) { return Json(ctx.ns().names()); },
        "the names in the namespace");
  f.add("ipp.load", [this](const Json& args, CallContext&) {
    auto added = Load(args.at("path").get<std::string>());
    if (!added.ok()) throw NamedError("ImportError", added.status().message());
    return Json(*added);
  }, "load a plugin library: {\"path\": ...}");
  f.add("ipp.functions", [this](const Json&, CallContext&) { return functions_.List(); },
        "the functions this engine can run");
  f.add("ipp.shell", [this](const Json& args, CallContext& ctx) {
    std::string command = args.at("command").get<std::string>();
    double timeout = args.value("timeout", 0.0);
    auto* context = static_cast<Context*>(&ctx);
    CommandResult r = RunCommand(
        command, std::chrono::milliseconds(static_cast<long>(timeout * 1000)),
        [&](const char* stream, std::string_view text) { context->Emit(stream, text); }, &control_);
    if (args.value("check", false) && !r.ok()) {
      throw NamedError(r.timed_out ? "TimeoutError" : "CalledProcessError", r.describe(command), CommandJson(r));
    }
    return CommandJson(r);
  }, "run a shell command: {\"command\", \"timeout\" (s), \"check\"}");
  f.add("ipp.info", [this](const Json&, CallContext& ctx) {
    return Json{{"id", ctx.engine_id()}, {"uuid", info_.uuid}, {"hostname", HostName()},
                {"pid", getpid()}, {"mpi_rank", mpi_rank()}, {"mpi_size", mpi_size()}};
  }, "engine id, uuid, hostname, pid and MPI rank/size");
  f.add("ipp.map", [this](const Json& args, CallContext& ctx) {
    std::string name = args.at("function").get<std::string>();
    const FunctionTable::Entry* entry = functions_.find(name);
    if (!entry) throw NamedError("NameError", "no function named '" + name + "' on this engine (load its plugin first)");
    // keep_going: every item is tried; if any failed, the task fails with
    // {"results": [...], "errors": [{"index", "ename", "evalue"}...]} (null results for those).
    bool keep_going = args.value("keep_going", false);
    Json out = Json::array(), errors = Json::array();
    for (const Json& item : args.at("items")) {
      try {
        out.push_back(entry->function(item, ctx));
      } catch (...) {
        CallError e = CurrentError(name);
        if (!keep_going) throw NamedError(e.ename, e.evalue, e.detail);
        errors.push_back({{"index", out.size()}, {"ename", e.ename}, {"evalue", e.evalue}});
        out.push_back(nullptr);
      }
    }
    if (!errors.empty()) {
      std::string first = errors[0]["evalue"].get<std::string>();
      std::string more = errors.size() > 1 ? " (and " + std::to_string(errors.size() - 1) + " more)" : "";
      throw NamedError(errors[0]["ename"].get<std::string>(),
                       "item " + std::to_string(errors[0]["index"].get<size_t>()) + ": " + first + more,
                       {{"results", out}, {"errors", errors}});
    }
    return out;
  }, "call a function on each of a list of items: {\"function\", \"items\", \"keep_going\"}");
  f.add("ipp.echo", [](const Json& args, CallContext& ctx) {
    for (const Buffer& b : ctx.buffers()) ctx.add_buffer(b);
    return args;
  }, "return the arguments and buffers unchanged");
  f.add("ipp.sleep", [](const Json& args, CallContext& ctx) {
    double seconds = args.is_object() ? args.at("seconds").get<double>() : args.get<double>();
    auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<long>(seconds * 1e6));
    for (auto now = std::chrono::steady_clock::now(); now < end; now = std::chrono::steady_clock::now()) {
      if (ctx.interrupted()) throw NamedError("KeyboardInterrupt", "interrupted");
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(end - now, std::chrono::milliseconds(5)));
    }
    return args.is_object() ? args.value("result", Json(nullptr)) : Json(nullptr);
  }, "sleep for the given seconds (or {seconds, result}: then return result); interruptible");
}

Status Executor::Start(ExecutorInfo info, const std::vector<std::string>& plugins) {
  info_ = std::move(info);
  if (info_.mpi) {
    auto world = MpiWorld::Start();
    if (!world.ok()) return world.status();
    mpi_ = std::move(world).value();
  }
  RegisterBuiltins();
  for (const std::string& path : plugins) {
    auto added = Load(path);
    if (!added.ok()) return Status::InvalidArgument(added.status().message());
  }
  return Status::OK();
}

Result<std::vector<std::string>> Executor::Load(const std::string& path) {
  auto added = functions_.Load(path);
  if (added.ok()) log_->info("loaded {} function(s) from {}", added->size(), path);
  return added;
}

void Executor::Execute(WorkItem& item, const OutputCallback& on_output) {
  control_.interrupt.store(false);  // an interrupt is for the work running when it came
  Context context(info_, mpi_rank(), mpi_size(), mpi_ ? mpi_->comm() : nullptr, item, namespace_, on_output, control_);
  auto fail = [&](std::string ename, std::string evalue) {
    item.ok = false;
    item.ename = std::move(ename);
    item.evalue = std::move(evalue);
    item.traceback = {item.ename + ": " + item.evalue};
  };
  switch (item.kind) {
    case WorkItem::Kind::kClearNamespace:
      namespace_.clear();
      return;
    case WorkItem::Kind::kShell: {
      CommandResult r = RunCommand(
          item.command, item.timeout,
          [&](const char* stream, std::string_view text) { context.Emit(stream, text); }, &control_);
      item.result = CommandJson(r);
      if (!r.ok()) fail(r.timed_out ? "TimeoutError" : (r.interrupted ? "KeyboardInterrupt" : "CalledProcessError"), r.describe(item.command));
      return;
    }
    case WorkItem::Kind::kCall: {
      const FunctionTable::Entry* entry = functions_.find(item.function);
      if (!entry) {
        fail("NameError", "no function named '" + item.function + "' on this engine (load its plugin first)");
        return;
      }
      try {
        item.result = entry->function(item.args, context);
      } catch (...) {
        CallError e = CurrentError(item.function);
        fail(std::move(e.ename), std::move(e.evalue));
        item.result = std::move(e.detail);
      }
      return;
    }
  }
}

}  // namespace ipp::engine

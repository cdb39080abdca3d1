// The API for native functions that ipengine runs.
//
// A plugin is a shared library with one entry point, written with IPP_PLUGIN:
//
//   #include <ipp/engine_plugin.hpp>
//
//   IPP_PLUGIN(registry) {
//     registry.add("add", [](const ipp::Json& args, ipp::CallContext&) {
//       return ipp::Json(args.at(0).get<double>() + args.at(1).get<double>());
//     }, "add two numbers");
//   }
//
// Load it with `ipengine --load ./libmyplugin.so` (repeatable) or at run time from a client
// (DirectView::load_plugin). A function takes JSON arguments and returns a JSON value; binary
// buffers travel beside them without copies (CallContext::buffers / add_buffer). An exception
// thrown by a function becomes an error reply (ename, evalue, traceback) and the engine keeps
// serving.
//
// Threads: functions run one at a time on the engine's main thread (the one that reads the
// shell socket, and called MPI_Init in --mpi mode), never concurrently with each other.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ipp {

using Json = nlohmann::json;

// Immutable bytes with shared ownership: copying a Buffer never copies the bytes. Buffers that
// arrive in a message point into the message itself.
class Buffer {
 public:
  Buffer() = default;
  // Takes ownership of `bytes`. (Inline: plugins do not link against our libraries.)
  explicit Buffer(std::string bytes) {
    auto owned = std::make_shared<const std::string>(std::move(bytes));
    data_ = owned->data();
    size_ = owned->size();
    owner_ = std::move(owned);
  }
  explicit Buffer(std::vector<char> bytes) {
    auto owned = std::make_shared<const std::vector<char>>(std::move(bytes));
    data_ = owned->data();
    size_ = owned->size();
    owner_ = std::move(owned);
  }
  // Shares ownership of memory kept alive by `owner`.
  Buffer(std::shared_ptr<const void> owner, const void* data, size_t size)
      : owner_(std::move(owner)), data_(static_cast<const char*>(data)), size_(size) {}

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {data_, size_}; }
  // Reinterprets the bytes as an array of T (e.g. doubles); size()/sizeof(T) elements.
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data_); }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  std::shared_ptr<const void> owner_;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// A named value in an engine's namespace: JSON plus any number of binary buffers.
struct Value {
  Json data;
  std::vector<Buffer> buffers;
};

// The engine's namespace, filled by clients' push/scatter and read by pull/gather. Functions
// may read and write it.
class Namespace {
 public:
  void set(const std::string& name, Value value) { values_[name] = std::move(value); }
  // nullptr when there is no such name.
  const Value* get(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? nullptr : &it->second;
  }
  bool erase(const std::string& name) { return values_.erase(name) > 0; }
  void clear() { values_.clear(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : values_) out.push_back(kv.first);
    return out;
  }

 private:
  std::map<std::string, Value> values_;
};

// What a running function can see and do besides its arguments.
class CallContext {
 public:
  virtual ~CallContext() = default;
  virtual int engine_id() const = 0;
  // MPI rank and size with `ipengine --mpi`; 0 and 1 otherwise.
  virtual int mpi_rank() const = 0;
  virtual int mpi_size() const = 0;
  // The MPI communicator (MPI_COMM_WORLD) as an opaque pointer to an MPI_Comm:
  //   MPI_Comm comm = *static_cast<const MPI_Comm*>(ctx.mpi_comm());
  // nullptr without --mpi.
  virtual const void* mpi_comm() const = 0;
  // Binary buffers sent with the call.
  virtual const std::vector<Buffer>& buffers() const = 0;
  // Binary buffers to send back with the result.
  virtual void add_buffer(Buffer buffer) = 0;
  virtual Namespace& ns() = 0;
  // Text for the client's stdout/stderr of this call (streamed while the function runs).
  virtual void print(std::string_view text) = 0;
  virtual void print_error(std::string_view text) = 0;
  // True once a client asked to interrupt this call; long functions should check it.
  virtual bool interrupted() const = 0;
};

using Function = std::function<Json(const Json& args, CallContext& context)>;

// Where plugins register their functions.
class FunctionRegistry {
 public:
  virtual ~FunctionRegistry() = default;
  // Replaces an existing function of the same name.
  virtual void add(const std::string& name, Function function, std::string doc = "") = 0;
};

}  // namespace ipp

// The single entry point of a plugin library.
#define IPP_PLUGIN(registry) \
  extern "C" void ipp_register_plugin(::ipp::FunctionRegistry& registry)

// Status and Result<T>: expected failures are values, not exceptions.
//
// Modelled on leveldb's Status. `kUnavailable` means "retry later" and `kInfeasible` means "can
// never succeed": the task scheduler's dependency logic relies on keeping the two apart.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace ipp {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // the caller's input is wrong (bad option, malformed request)
    kNotFound,         // a file, engine, task or function that does not exist
    kIOError,          // the operating system refused (open, write, rename)
    kProtocolError,    // a peer sent frames that are not a valid message
    kUnauthorized,     // a missing, wrong or replayed signature
    kTimeout,          // a deadline passed
    kUnavailable,      // cannot be done now; may succeed if retried later
    kInfeasible,       // can never be done (e.g. an impossible dependency)
    kInternal,         // a library we call failed unexpectedly
    kRemoteError,      // the remote side ran the request and reports its failure
  };

  Status() = default;
  static Status OK() { return {}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status ProtocolError(std::string m) { return {Code::kProtocolError, std::move(m)}; }
  static Status Unauthorized(std::string m) { return {Code::kUnauthorized, std::move(m)}; }
  static Status Timeout(std::string m) { return {Code::kTimeout, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Infeasible(std::string m) { return {Code::kInfeasible, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Status RemoteError(std::string m) { return {Code::kRemoteError, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

const char* ToString(Status::Code code);

inline std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(ipp::ToString(code_)) + ": " + message_;
}

inline const char* ToString(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kInvalidArgument: return "invalid argument";
    case Status::Code::kNotFound: return "not found";
    case Status::Code::kIOError: return "I/O error";
    case Status::Code::kProtocolError: return "protocol error";
    case Status::Code::kUnauthorized: return "unauthorized";
    case Status::Code::kTimeout: return "timeout";
    case Status::Code::kUnavailable: return "unavailable";
    case Status::Code::kInfeasible: return "infeasible";
    case Status::Code::kInternal: return "internal error";
    case Status::Code::kRemoteError: return "remote error";
  }
  return "unknown";
}

// A value or the Status that explains why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(data_).ok() && "a Result holding a Status must hold an error");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace ipp

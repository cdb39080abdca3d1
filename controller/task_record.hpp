// TaskRecord: what the hub keeps per task, with the fields of ipyparallel's hub.py records.
//
// JSON parts are kept as the text that arrived (not parsed trees): cheaper to store and to
// return, and parsed only when a query needs a field inside them. Buffers are zmq messages
// shared by reference count with the messages they came in, never copied.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "ipp/status.hpp"
#include "protocol/clock.hpp"
#include "protocol/message.hpp"

namespace ipp::controller {

using json = nlohmann::json;
using TimePoint = protocol::WallClock::time_point;

// Buffers of a record: a copy holds new references to the same frames (zmq reference counts),
// never a copy of their payload.
class SharedFrames : public std::vector<zmq::message_t> {
 public:
  SharedFrames() = default;
  SharedFrames(std::vector<zmq::message_t>&& frames) : vector(std::move(frames)) {}  // NOLINT: implicit on purpose
  SharedFrames(const SharedFrames& other);
  SharedFrames(SharedFrames&&) = default;
  SharedFrames& operator=(const SharedFrames& other) { return *this = SharedFrames(other); }
  SharedFrames& operator=(SharedFrames&&) = default;
};

struct TaskRecord {
  std::string msg_id;
  std::string header, metadata, content;  // request parts, JSON text ("" = null)
  SharedFrames buffers;
  std::string client_uuid, engine_uuid, queue;
  std::optional<TimePoint> submitted, started, completed, received;
  std::string resubmitted;
  std::string result_header, result_metadata, result_content;  // JSON text ("" = null)
  SharedFrames result_buffers;
  std::string execute_input;
  std::string execute_result, error;  // JSON text ("" = null)
  std::string stdout_text, stderr_text;

  TaskRecord() = default;
  TaskRecord(TaskRecord&&) = default;
  TaskRecord& operator=(TaskRecord&&) = default;
  TaskRecord Clone() const { return TaskRecord(*this); }  // shares buffers, copies the rest

  // Bytes held by this record, for the store's size limit.
  size_t ApproximateBytes() const;

 private:
  // Private: a record is copied only on purpose, with Clone().
  TaskRecord(const TaskRecord&) = default;
};

// Every record key a client can name in db_query `keys`, in hub.py's order.
const std::vector<std::string>& RecordKeys();
bool IsBufferKey(const std::string& key);
// The value of one key as JSON (dates as ISO 8601 strings, JSON parts parsed); buffers excluded.
json FieldValue(const TaskRecord& record, const std::string& key);
// Record as the JSON object db_reply carries (without buffers), restricted to `keys` when given.
json ToJson(const TaskRecord& record, const std::vector<std::string>* keys);

// One mongodb-style query as DictDB evaluates it: {key: value | {"$op": value, ...}, ...}.
class RecordQuery {
 public:
  // Fails on an operator DictDB does not know.
  static Result<RecordQuery> Parse(const json& query);
  bool Matches(const TaskRecord& record) const;

 private:
  struct Test {
    std::string key;
    std::string op;  // "$eq" for a plain value
    json operand;
  };
  std::vector<Test> tests_;
};

}  // namespace ipp::controller

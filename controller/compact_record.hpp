// CompactRecord: how DictDB keeps a finished task record, in a fraction of a TaskRecord's memory.
//
// A controller that keeps every record (the default DictDB keeps up to record_limit of them)
// holds mostly repetition: each task's header differs from the last only in its msg_id and date,
// its metadata and content are often identical for a whole map, and the same few client and
// engine uuids recur. So each JSON part is split into a *skeleton* (the text with the values of
// "msg_id", "date" and "started" cut out) shared through a reference-counted TextPool, and the
// cut-out values ("holes"), which stay with the record. Expand() splices them back: the texts a
// query returns are byte for byte the ones that arrived.
#pragma once

#include <climits>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <unordered_map>

#include "controller/task_record.hpp"

namespace ipp::controller {

// Interned strings with reference counts: equal texts are stored once, and freed when the last
// record holding them goes. Pointers stay valid while referenced (unordered_map nodes do not move).
// It also interns record *shapes*: the texts a record shares with others (its skeletons, uuids
// and queue), which a whole map's records have in common, so each record holds one pointer.
class TextPool {
 public:
  struct Shape {
    static constexpr size_t kParts = 6;  // header, metadata, content and the three result_ ones
    // Per part: its skeleton (nullptr = the part is null).
    const std::string* skeletons[kParts] = {};
    // nullptr when empty.
    const std::string* client_uuid = nullptr;
    const std::string* engine_uuid = nullptr;
    const std::string* queue = nullptr;
    uint8_t whole = 0;  // bit i: skeletons[i] is the part's text itself, without holes
    bool operator==(const Shape&) const = default;
  };

  // A text to build a Shape from: interned, but held only once a shape holding it is acquired.
  const std::string* Intern(std::string_view text);
  // The interned shape equal to `shape` (whose texts come from Intern), one more holder counted.
  const Shape* AcquireShape(const Shape& shape);
  void ReleaseShape(const Shape* shape);
  size_t size() const { return texts_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct ShapeHash {
    size_t operator()(const Shape& s) const;
  };
  void Release(const std::string* text);

  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> texts_;  // text -> shapes holding it
  std::unordered_map<Shape, uint32_t, ShapeHash> shapes_;                    // shape -> records holding it
};

class CompactRecord {
 public:
  static constexpr size_t kParts = TextPool::Shape::kParts;

  CompactRecord() = default;
  CompactRecord(CompactRecord&& other) noexcept { *this = std::move(other); }
  CompactRecord& operator=(CompactRecord&& other) noexcept;
  ~CompactRecord();  // frees its own bytes; pooled texts are given back only by Release()

  // Takes the record apart, interning what repeats in `pool`; its own bytes (msg_id and holes,
  // one block) come from `memory`, which must outlive it.
  static CompactRecord From(TaskRecord&& record, TextPool& pool, std::pmr::memory_resource* memory);
  // The record as it was given to From().
  TaskRecord Expand() const;
  // Gives the interned texts back to the pool and frees the record's bytes: it is empty after.
  void Release(TextPool& pool);

  std::string_view msg_id() const { return {data_, msg_id_size_}; }
  std::optional<TimePoint> submitted() const { return Time(submitted_); }
  bool completed() const { return completed_ != kNoTime; }
  // Bytes this record holds by itself (its share of pooled texts not counted).
  size_t ApproximateBytes() const;

 private:
  // What few records have: buffers, output, resubmission. Absent for a plain finished task.
  struct Rare {
    std::vector<zmq::message_t> buffers, result_buffers;
    std::string resubmitted, execute_input, execute_result, error, stdout_text, stderr_text;
  };

  std::string_view holes() const { return {data_ + msg_id_size_, data_size_ - msg_id_size_ - SmallResultSize()}; }
  size_t SmallResultSize() const { return small_result_ ? small_result_ - 1u : 0u; }
  void FreeData();

  // Times as nanoseconds since the epoch (kNoTime: none): half an optional<TimePoint>'s size.
  static constexpr int64_t kNoTime = INT64_MIN;
  static int64_t Nanos(const std::optional<TimePoint>& t) { return t ? t->time_since_epoch().count() : kNoTime; }
  static std::optional<TimePoint> Time(int64_t nanos) {
    if (nanos == kNoTime) return std::nullopt;
    return TimePoint(TimePoint::duration(nanos));
  }

  // One block: the msg_id, then the holes of the parts in order, each ended by a marker. A hole
  // that repeats the msg_id or one of the record's times as text is a one-byte code instead.
  std::pmr::memory_resource* memory_ = nullptr;
  char* data_ = nullptr;
  uint32_t msg_id_size_ = 0, data_size_ = 0;
  const TextPool::Shape* shape_ = nullptr;  // nullptr only when empty (moved from, released)
  // 1 + the size of the record's one result buffer, kept at the end of data_ when it is its
  // only rare field and small (the pickled result most apply_replies carry); 0: none there.
  uint16_t small_result_ = 0;
  int64_t submitted_ = kNoTime, started_ = kNoTime, completed_ = kNoTime, received_ = kNoTime;
  std::unique_ptr<Rare> rare_;
};

}  // namespace ipp::controller

// TaskStore: the hub's task database. MemoryTaskStore is DictDB (with its record and size limits
// and culling of the oldest completed records); NullTaskStore is NoDB.
// Single-threaded: owned and used by the hub's thread only.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory_resource>
#include <string_view>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "controller/compact_record.hpp"
#include "controller/task_record.hpp"
#include "ipp/status.hpp"

namespace ipp::controller {

class TaskStore {
 public:
  virtual ~TaskStore() = default;
  virtual Status Add(TaskRecord&& record) = 0;
  // Applies `change` to the stored record; NotFound if there is none.
  virtual Status Update(const std::string& msg_id, const std::function<void(TaskRecord&)>& change) = 0;
  virtual bool Contains(const std::string& msg_id) const = 0;
  // Copies (buffers shared) of matching records, in submission order.
  virtual Result<std::vector<TaskRecord>> Find(const RecordQuery& query) const = 0;
  virtual Result<std::vector<TaskRecord>> FindIds(const std::vector<std::string>& msg_ids) const = 0;
  virtual Status Drop(const RecordQuery& query) = 0;
  virtual Result<std::vector<std::string>> History() const = 0;  // msg_ids by submission time
  virtual size_t size() const = 0;
  virtual const char* name() const = 0;
  // Makes what was written durable; the hub calls it every kFlushPeriod, which bounds what a
  // crash can lose. In-memory stores: nothing.
  virtual void Flush() {}
  virtual bool flushes() const { return false; }  // whether Flush() does anything
  static constexpr std::chrono::milliseconds kFlushPeriod{20};
};

struct MemoryStoreLimits {
  size_t record_limit = 1024;             // DictDB.record_limit
  size_t size_limit = 1024ull << 20;      // DictDB.size_limit (bytes)
  double cull_fraction = 0.1;             // DictDB.cull_fraction
};

class MemoryTaskStore : public TaskStore {
 public:
  explicit MemoryTaskStore(MemoryStoreLimits limits = {}) : limits_(limits) {}
  Status Add(TaskRecord&& record) override;
  Status Update(const std::string& msg_id, const std::function<void(TaskRecord&)>& change) override;
  bool Contains(const std::string& msg_id) const override { return index_.count(msg_id) > 0; }
  Result<std::vector<TaskRecord>> Find(const RecordQuery& query) const override;
  Result<std::vector<TaskRecord>> FindIds(const std::vector<std::string>& msg_ids) const override;
  Status Drop(const RecordQuery& query) override;
  Result<std::vector<std::string>> History() const override;
  size_t size() const override { return records_.size(); }
  size_t bytes() const { return bytes_; }
  const char* name() const override { return "DictDB"; }

 private:
  // A record is kept whole while pending (the hub changes it several times) and compacted once
  // it completes: finished records are what a long-lived DictDB holds by the hundred thousand.
  struct Slot {
    std::unique_ptr<TaskRecord> pending;
    CompactRecord done;
    std::string_view msg_id() const { return pending ? std::string_view(pending->msg_id) : done.msg_id(); }
    size_t bytes() const { return pending ? pending->ApproximateBytes() : done.ApproximateBytes(); }
    TaskRecord Copy() const { return pending ? pending->Clone() : done.Expand(); }
  };
  static bool Matches(const RecordQuery& query, const Slot& slot);
  void CullIfNeeded();
  void Erase(uint64_t seq);

  MemoryStoreLimits limits_;
  TextPool pool_;  // what compacted records share
  // What records keep for long (map and index nodes, compacted records' bytes) comes from its
  // own pools, not from the heap where messages come and go: else each survivor pins a page of
  // freed message memory, and a DictDB of finished records costs twice its size in RSS.
  // Given back whole when the store empties (purge).
  std::pmr::unsynchronized_pool_resource memory_;
  // Records in insertion order, and an index by msg_id whose keys point into the records
  // (map nodes do not move; a record re-indexes when it is compacted): each msg_id is stored
  // once.
  std::pmr::map<uint64_t, Slot> records_{&memory_};
  std::pmr::unordered_map<std::string_view, uint64_t> index_{&memory_};
  uint64_t next_seq_ = 0;
  // Completed records in completion order: culling takes from the front, never scanning past
  // pending records (which would make every update O(n) with a large backlog).
  std::deque<uint64_t> completed_order_;
  size_t bytes_ = 0;
};

// NoDB: stores nothing; queries fail with a clear message, as ipyparallel's NoData does.
class NullTaskStore : public TaskStore {
 public:
  Status Add(TaskRecord&&) override { return Status::OK(); }
  Status Update(const std::string&, const std::function<void(TaskRecord&)>&) override {
    return Status::OK();
  }
  bool Contains(const std::string&) const override { return false; }
  Result<std::vector<TaskRecord>> Find(const RecordQuery&) const override { return NoData(); }
  Result<std::vector<TaskRecord>> FindIds(const std::vector<std::string>&) const override {
    return NoData();
  }
  Status Drop(const RecordQuery&) override { return Status::OK(); }
  Result<std::vector<std::string>> History() const override { return NoData(); }
  size_t size() const override { return 0; }
  const char* name() const override { return "NoDB"; }

 private:
  static Status NoData() {
    return Status::NotFound("NoDB backend doesn't store any data. Start the controller with "
                            "a DB backend (--dictdb or --sqlitedb) to use the task database.");
  }
};

}  // namespace ipp::controller

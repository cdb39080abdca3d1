// SqliteTaskStore: SQLiteDB — task records in <profile>/tasks.db, so results survive a
// controller crash and `--restore` can serve them again.
//
// Writes are grouped into transactions committed by Flush(), which the hub calls every
// TaskStore::kFlushPeriod, so the hot path costs a statement, not an fsync. A crash loses at
// most the records of the last period.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>

#include "controller/task_store.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace ipp::controller {

class SqliteTaskStore : public TaskStore {
 public:
  static Result<std::unique_ptr<SqliteTaskStore>> Open(const std::filesystem::path& file,
                                                       const std::string& table = "ipython-tasks");
  ~SqliteTaskStore() override;

  Status Add(TaskRecord&& record) override;
  Status Update(const std::string& msg_id, const std::function<void(TaskRecord&)>& change) override;
  bool Contains(const std::string& msg_id) const override;
  Result<std::vector<TaskRecord>> Find(const RecordQuery& query) const override;
  Result<std::vector<TaskRecord>> FindIds(const std::vector<std::string>& msg_ids) const override;
  Status Drop(const RecordQuery& query) override;
  Result<std::vector<std::string>> History() const override;
  size_t size() const override;
  const char* name() const override { return "SQLiteDB"; }
  void Flush() override;
  bool flushes() const override { return true; }

 private:
  SqliteTaskStore() = default;
  Status Exec(const std::string& sql) const;
  // Files written before task labels lack the column: adds it, filled from the metadata.
  Status AddLabelColumnIfMissing();
  Status Write(const TaskRecord& record, bool insert);
  void BeginIfNeeded();
  Result<std::vector<TaskRecord>> Select(const std::string& where,
                                         const std::vector<std::string>& args) const;

  sqlite3* db_ = nullptr;
  std::string table_;
  bool in_transaction_ = false;
};

}  // namespace ipp::controller

#include "controller/sqlite_task_store.hpp"

#include <sqlite3.h>

#include <cstring>
#include <variant>

namespace ipp::controller {

namespace {

// A record field and how its column holds it: text ("" as NULL), a time (microseconds since the
// epoch, or NULL), or buffers (one blob of [u64 length][bytes]... per buffer).
using Field = std::variant<std::string TaskRecord::*, std::optional<TimePoint> TaskRecord::*,
                           SharedFrames TaskRecord::*>;
struct Column {
  const char* name;
  Field field;
};

// The table's columns in order, all but the last, "label": a copy of the metadata's label
// for SQL queries, written with each record and never read back (FieldValue reads the metadata).
using R = TaskRecord;
const Column kColumns[] = {
    {"msg_id", &R::msg_id}, {"header", &R::header}, {"metadata", &R::metadata}, {"content", &R::content},
    {"buffers", &R::buffers}, {"submitted", &R::submitted}, {"client_uuid", &R::client_uuid},
    {"engine_uuid", &R::engine_uuid}, {"started", &R::started}, {"completed", &R::completed},
    {"resubmitted", &R::resubmitted}, {"received", &R::received}, {"result_header", &R::result_header},
    {"result_metadata", &R::result_metadata}, {"result_content", &R::result_content},
    {"result_buffers", &R::result_buffers}, {"queue", &R::queue}, {"execute_input", &R::execute_input},
    {"execute_result", &R::execute_result}, {"error", &R::error}, {"stdout", &R::stdout_text},
    {"stderr", &R::stderr_text}};
constexpr int kFieldColumnCount = sizeof(kColumns) / sizeof(kColumns[0]);
// The column type of each kind of Field, in the variant's order.
const char* const kSqlTypes[] = {"TEXT", "INTEGER", "BLOB"};

template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;

std::string PackBuffers(const std::vector<zmq::message_t>& buffers) {
  std::string blob;
  for (const auto& b : buffers) {
    uint64_t n = b.size();
    blob.append(reinterpret_cast<const char*>(&n), sizeof n);
    blob.append(static_cast<const char*>(b.data()), b.size());
  }
  return blob;
}

std::vector<zmq::message_t> UnpackBuffers(const void* data, int size) {
  std::vector<zmq::message_t> out;
  const char* p = static_cast<const char*>(data);
  const char* end = p + size;
  while (p + sizeof(uint64_t) <= end) {
    uint64_t n;
    std::memcpy(&n, p, sizeof n);
    p += sizeof n;
    if (n > static_cast<uint64_t>(end - p)) break;  // truncated blob: keep what is whole
    out.emplace_back(p, n);
    p += n;
  }
  return out;
}

int64_t Micros(const std::optional<TimePoint>& t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t->time_since_epoch()).count();
}

std::string Quoted(const std::string& table) { return "\"" + table + "\""; }

class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) { sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  sqlite3_stmt* get() const { return stmt_; }
  explicit operator bool() const { return stmt_ != nullptr; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  if (v.empty()) {
    sqlite3_bind_null(s, i);
  } else {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
}

void BindTime(sqlite3_stmt* s, int i, const std::optional<TimePoint>& t) {
  if (t) {
    sqlite3_bind_int64(s, i, Micros(t));
  } else {
    sqlite3_bind_null(s, i);
  }
}

std::string ColumnText(sqlite3_stmt* s, int i) {
  const unsigned char* text = sqlite3_column_text(s, i);
  return text ? std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(sqlite3_column_bytes(s, i)))
              : std::string();
}

std::optional<TimePoint> ColumnTime(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return TimePoint(std::chrono::microseconds(sqlite3_column_int64(s, i)));
}

TaskRecord FromRow(sqlite3_stmt* s) {
  TaskRecord r;
  for (int i = 0; i < kFieldColumnCount; ++i) {
    std::visit(Overloaded{
                   [&](std::string TaskRecord::*text) { r.*text = ColumnText(s, i); },
                   [&](std::optional<TimePoint> TaskRecord::*time) { r.*time = ColumnTime(s, i); },
                   [&](SharedFrames TaskRecord::*frames) {
                     r.*frames = UnpackBuffers(sqlite3_column_blob(s, i), sqlite3_column_bytes(s, i));
                   },
               },
               kColumns[i].field);
  }
  return r;
}

}  // namespace

Result<std::unique_ptr<SqliteTaskStore>> SqliteTaskStore::Open(const std::filesystem::path& file,
                                                               const std::string& table) {
  std::unique_ptr<SqliteTaskStore> store(new SqliteTaskStore());
  store->table_ = table;
  if (sqlite3_open(file.c_str(), &store->db_) != SQLITE_OK) {
    return Status::IOError("cannot open task database " + file.string() + ": " +
                           (store->db_ ? sqlite3_errmsg(store->db_) : "out of memory"));
  }
  std::string create = "CREATE TABLE IF NOT EXISTS " + Quoted(table) + " (";
  for (const Column& c : kColumns) {  // the first, msg_id, is the key
    create += std::string(c.name) + " " + kSqlTypes[c.field.index()] + (&c == kColumns ? " PRIMARY KEY, " : ", ");
  }
  create += "label TEXT)";
  for (const std::string& sql : {std::string("PRAGMA journal_mode=WAL"),
                                 std::string("PRAGMA synchronous=NORMAL"), create}) {
    if (Status s = store->Exec(sql); !s.ok()) return Status::IOError("task database " + file.string() + ": " + s.message());
  }
  if (Status s = store->AddLabelColumnIfMissing(); !s.ok()) {
    return Status::IOError("task database " + file.string() + ": " + s.message());
  }
  return store;
}

Status SqliteTaskStore::AddLabelColumnIfMissing() {
  Statement columns(db_, "PRAGMA table_info(" + Quoted(table_) + ")");
  while (sqlite3_step(columns.get()) == SQLITE_ROW) {
    if (ColumnText(columns.get(), 1) == "label") return Status::OK();
  }
  // A file of a version before labels (ipyparallel 9.1). The column goes last, where FromRow
  // does not read it: a record's label is read from its metadata (see FieldValue).
  if (Status s = Exec("ALTER TABLE " + Quoted(table_) + " ADD COLUMN label TEXT"); !s.ok()) return s;
  return Exec("UPDATE " + Quoted(table_) + " SET label = json_extract(metadata, '$.label') WHERE json_valid(metadata)");
}

SqliteTaskStore::~SqliteTaskStore() {
  Flush();
  sqlite3_close(db_);
}

Status SqliteTaskStore::Exec(const std::string& sql) const {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error ? error : "unknown error";
    sqlite3_free(error);
    return Status::IOError(message);
  }
  return Status::OK();
}

void SqliteTaskStore::BeginIfNeeded() {
  if (!in_transaction_ && Exec("BEGIN").ok()) in_transaction_ = true;
}

void SqliteTaskStore::Flush() {
  if (in_transaction_) {
    (void)Exec("COMMIT");
    in_transaction_ = false;
  }
}

Status SqliteTaskStore::Write(const TaskRecord& r, bool insert) {
  BeginIfNeeded();
  // Columns named, so that the binding order below never depends on the table's column order.
  std::string sql = std::string(insert ? "INSERT" : "REPLACE") + " INTO " + Quoted(table_) + " (";
  for (const Column& c : kColumns) sql += std::string(c.name) + ",";
  sql += "label) VALUES (";
  for (int i = 0; i < kFieldColumnCount; ++i) sql += "?,";
  sql += "?)";
  Statement stmt(db_, sql);
  if (!stmt) return Status::IOError(sqlite3_errmsg(db_));
  sqlite3_stmt* s = stmt.get();
  for (int i = 0; i < kFieldColumnCount; ++i) {
    std::visit(Overloaded{
                   [&](std::string TaskRecord::*text) { BindText(s, i + 1, r.*text); },
                   [&](std::optional<TimePoint> TaskRecord::*time) { BindTime(s, i + 1, r.*time); },
                   [&](SharedFrames TaskRecord::*frames) {
                     std::string blob = PackBuffers(r.*frames);
                     sqlite3_bind_blob(s, i + 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
                   },
               },
               kColumns[i].field);
  }
  json label = FieldValue(r, "label");
  BindText(s, kFieldColumnCount + 1, label.is_null() ? std::string() : label.is_string() ? label.get<std::string>() : label.dump());
  int rc = sqlite3_step(s);
  if (rc == SQLITE_CONSTRAINT) return Status::InvalidArgument("a record for " + r.msg_id + " already exists");
  if (rc != SQLITE_DONE) return Status::IOError(std::string("task database write failed: ") + sqlite3_errmsg(db_));
  return Status::OK();
}

Status SqliteTaskStore::Add(TaskRecord&& record) { return Write(record, true); }

Status SqliteTaskStore::Update(const std::string& msg_id, const std::function<void(TaskRecord&)>& change) {
  Result<std::vector<TaskRecord>> found = FindIds({msg_id});
  if (!found.ok()) return found.status();
  if (found->empty()) return Status::NotFound("no task record " + msg_id);
  change(found->front());
  found->front().msg_id = msg_id;  // a record's id never changes (as in MemoryTaskStore)
  return Write(found->front(), false);
}

Result<std::vector<TaskRecord>> SqliteTaskStore::Select(const std::string& where,
                                                        const std::vector<std::string>& args) const {
  Statement stmt(db_, "SELECT * FROM " + Quoted(table_) + where + " ORDER BY submitted, rowid");
  if (!stmt) return Status::IOError(sqlite3_errmsg(db_));
  for (size_t i = 0; i < args.size(); ++i) BindText(stmt.get(), static_cast<int>(i + 1), args[i]);
  std::vector<TaskRecord> out;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) out.push_back(FromRow(stmt.get()));
  if (rc != SQLITE_DONE) return Status::IOError(std::string("task database read failed: ") + sqlite3_errmsg(db_));
  return out;
}

bool SqliteTaskStore::Contains(const std::string& msg_id) const {
  Statement stmt(db_, "SELECT 1 FROM " + Quoted(table_) + " WHERE msg_id = ?");
  BindText(stmt.get(), 1, msg_id);
  return sqlite3_step(stmt.get()) == SQLITE_ROW;
}

Result<std::vector<TaskRecord>> SqliteTaskStore::Find(const RecordQuery& query) const {
  Result<std::vector<TaskRecord>> all = Select("", {});
  if (!all.ok()) return all;
  std::vector<TaskRecord> out;
  for (TaskRecord& r : *all) {
    if (query.Matches(r)) out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<TaskRecord>> SqliteTaskStore::FindIds(const std::vector<std::string>& msg_ids) const {
  if (msg_ids.empty()) return std::vector<TaskRecord>{};
  std::string where = " WHERE msg_id IN (";
  for (size_t i = 0; i < msg_ids.size(); ++i) where += i ? ",?" : "?";
  return Select(where + ")", msg_ids);
}

Status SqliteTaskStore::Drop(const RecordQuery& query) {
  Result<std::vector<TaskRecord>> doomed = Find(query);
  if (!doomed.ok()) return doomed.status();
  BeginIfNeeded();
  Statement stmt(db_, "DELETE FROM " + Quoted(table_) + " WHERE msg_id = ?");
  for (const TaskRecord& r : *doomed) {
    sqlite3_reset(stmt.get());
    BindText(stmt.get(), 1, r.msg_id);
    if (sqlite3_step(stmt.get()) != SQLITE_DONE) return Status::IOError(sqlite3_errmsg(db_));
  }
  return Status::OK();
}

Result<std::vector<std::string>> SqliteTaskStore::History() const {
  Statement stmt(db_, "SELECT msg_id FROM " + Quoted(table_) + " WHERE submitted IS NOT NULL ORDER BY submitted, rowid");
  std::vector<std::string> ids;
  while (sqlite3_step(stmt.get()) == SQLITE_ROW) ids.push_back(ColumnText(stmt.get(), 0));
  return ids;
}

size_t SqliteTaskStore::size() const {
  Statement stmt(db_, "SELECT COUNT(*) FROM " + Quoted(table_));
  return sqlite3_step(stmt.get()) == SQLITE_ROW ? static_cast<size_t>(sqlite3_column_int64(stmt.get(), 0)) : 0;
}

}  // namespace ipp::controller

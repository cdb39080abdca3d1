#include "controller/task_store.hpp"
#include "controller/sqlite_task_store.hpp"
#include "tests/testutil/testutil.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "protocol/message.hpp"

namespace ipp::controller {
namespace {

using nlohmann::json;

TaskRecord Record(const std::string& id, int second, bool completed, const std::string& engine = "e0") {
  TaskRecord r;
  r.msg_id = id;
  r.header = json{{"msg_id", id}, {"msg_type", "apply_request"}}.dump();
  r.submitted = TimePoint(std::chrono::seconds(1700000000 + second));
  if (completed) r.completed = *r.submitted + std::chrono::seconds(1);
  r.engine_uuid = engine;
  r.buffers.emplace_back(std::string_view("payload"));
  return r;
}

RecordQuery Query(const json& q) {
  auto parsed = RecordQuery::Parse(q);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return *parsed;
}

std::vector<std::string> Ids(const Result<std::vector<TaskRecord>>& records) {
  std::vector<std::string> ids;
  for (const auto& r : *records) ids.push_back(r.msg_id);
  return ids;
}

// The same behaviour from every backend: DictDB in memory and SQLiteDB on disk.
class TaskStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      auto opened = SqliteTaskStore::Open(dir_.path() / "tasks.db");
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      store_ = std::move(opened).value();
    } else {
      store_ = std::make_unique<MemoryTaskStore>();
    }
    ASSERT_TRUE(store_->Add(Record("a", 1, true, "e0")).ok());
    ASSERT_TRUE(store_->Add(Record("b", 2, true, "e1")).ok());
    ASSERT_TRUE(store_->Add(Record("c", 3, false, "e1")).ok());
  }
  testutil::TempDir dir_;
  std::unique_ptr<TaskStore> store_;
};

TEST_P(TaskStoreTest, LongIdsStayFindableAfterManyUpdates) {
  std::string id(60, 'x');
  ASSERT_TRUE(store_->Add(Record(id, 9, false)).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->Update(id, [](TaskRecord& r) { r.stdout_text += "more"; }).ok());
  ASSERT_TRUE(store_->Contains(id));
  EXPECT_EQ(store_->FindIds({id})->at(0).stdout_text, "moremoremore");
  ASSERT_TRUE(store_->Update(id, [](TaskRecord& r) { r.msg_id = "renamed"; }).ok());  // undone
  EXPECT_TRUE(store_->Contains(id));
  EXPECT_FALSE(store_->Contains("renamed"));
}

TEST_P(TaskStoreTest, RejectsDuplicatesAndUpdatesInPlace) {
  EXPECT_FALSE(store_->Add(Record("a", 9, true)).ok());
  ASSERT_TRUE(store_->Update("c", [](TaskRecord& r) { r.stdout_text = "hi"; }).ok());
  EXPECT_EQ(store_->FindIds({"c"})->at(0).stdout_text, "hi");
  EXPECT_EQ(store_->Update("zz", [](TaskRecord&) {}).code(), Status::Code::kNotFound);
}

TEST_P(TaskStoreTest, QueryOperatorsMatchDictDb) {
  EXPECT_EQ(Ids(store_->Find(Query({{"msg_id", {{"$in", {"a", "c"}}}}}))), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(Ids(store_->Find(Query({{"completed", {{"$ne", nullptr}}}}))), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Ids(store_->Find(Query({{"engine_uuid", "e1"}}))), (std::vector<std::string>{"b", "c"}));
  std::string t2 = protocol::Iso8601(TimePoint(std::chrono::seconds(1700000002)));
  EXPECT_EQ(Ids(store_->Find(Query({{"submitted", {{"$gt", t2}}}}))), (std::vector<std::string>{"c"}));
  EXPECT_EQ(Ids(store_->Find(Query({{"submitted", {{"$lte", t2}}}}))), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Ids(store_->Find(Query({{"msg_id", {{"$nin", {"a"}}}}, {"engine_uuid", "e1"}}))),
            (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(Ids(store_->Find(Query({{"completed", {{"$exists", false}}}}))), (std::vector<std::string>{"c"}));
  EXPECT_FALSE(RecordQuery::Parse({{"msg_id", {{"$regex", "a"}}}}).ok());
}

TEST_P(TaskStoreTest, HistoryIsInSubmissionOrderAndDropWorks) {
  EXPECT_EQ(*store_->History(), (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_TRUE(store_->Drop(Query({{"completed", {{"$ne", nullptr}}}})).ok());
  EXPECT_EQ(*store_->History(), (std::vector<std::string>{"c"}));
}

TEST_P(TaskStoreTest, ToJsonRestrictsKeysAndParsesParts) {
  auto found = store_->FindIds({"a"});
  const TaskRecord& r = found->at(0);
  std::vector<std::string> keys = {"header", "completed"};
  json j = ToJson(r, &keys);
  EXPECT_EQ(j["header"]["msg_id"], "a");
  EXPECT_EQ(j["msg_id"], "a");
  EXPECT_FALSE(j.contains("engine_uuid"));
  EXPECT_TRUE(j["completed"].is_string());
  EXPECT_EQ(protocol::view(r.buffers.at(0)), "payload");  // shared, not lost by the copy
}

TEST_P(TaskStoreTest, LabelsAreKeptQueriedAndReturned) {
  TaskRecord labelled = Record("l1", 4, false);
  labelled.metadata = R"({"after": [], "label": "run-7"})";
  ASSERT_TRUE(store_->Add(std::move(labelled)).ok());
  // Completing it makes DictDB compact the record: the label must survive that.
  ASSERT_TRUE(store_->Update("l1", [](TaskRecord& r) { r.completed = r.submitted; }).ok());
  TaskRecord unlabelled = Record("l2", 5, true);
  unlabelled.metadata = R"({"label": null})";
  ASSERT_TRUE(store_->Add(std::move(unlabelled)).ok());
  EXPECT_EQ(Ids(store_->Find(Query({{"label", "run-7"}}))), (std::vector<std::string>{"l1"}));
  EXPECT_EQ(Ids(store_->Find(Query({{"label", {{"$ne", nullptr}}}}))), (std::vector<std::string>{"l1"}));
  json all = ToJson(store_->FindIds({"l1"})->at(0), nullptr);
  EXPECT_EQ(all["label"], "run-7");
  EXPECT_TRUE(ToJson(store_->FindIds({"a"})->at(0), nullptr)["label"].is_null());  // no metadata at all
}

TEST_P(TaskStoreTest, GlobQueriesMatchAndMissingValuesNever) {
  EXPECT_EQ(Ids(store_->Find(Query({{"msg_id", {{"$glob", "[ab]"}}}}))), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Ids(store_->Find(Query({{"engine_uuid", {{"$glob", "e*"}}}, {"msg_id", {{"$glob", "?"}}}}))),
            (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(store_->Find(Query({{"resubmitted", {{"$glob", "*"}}}}))->empty());  // null everywhere
}

INSTANTIATE_TEST_SUITE_P(Backends, TaskStoreTest, ::testing::Values("memory", "sqlite"));

TEST(RecordQueryTest, GlobIsPythonsFnmatchcase) {
  // Expectations from Python 3.11's fnmatch.fnmatchcase, which 9.1's DictDB uses.
  const std::tuple<const char*, const char*, bool> cases[] = {
      {"run-7", "run-*", true},   {"run-7", "run-?", true},   {"run-17", "run-?", false},
      {"abc", "[a-c]bc", true},   {"dbc", "[!a-c]bc", true},  {"]x", "[]]x", true},
      {"[x", "[x", true},         {"a-", "a[a-]", true},      {"a^", "a[^]", true},
      {"", "*", true},            {"x", "[]", false},         {"\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5?", true},
      {"abc", "*c*", true},       {"ab", "a*b*c", false},     {"a/b", "a*b", true},
      {"abc", "ABC", false},      {"aXb", "a[!]]b", true},    {"a]b", "a[!]]b", false}};
  for (const auto& [name, pattern, expected] : cases) {
    TaskRecord r;
    r.metadata = json{{"label", name}}.dump();
    EXPECT_EQ(Query({{"label", {{"$glob", pattern}}}}).Matches(r), expected) << name << " ~ " << pattern;
  }
  TaskRecord unlabelled;
  EXPECT_FALSE(Query({{"label", {{"$glob", "*"}}}}).Matches(unlabelled));
  EXPECT_FALSE(RecordQuery::Parse({{"label", {{"$glob", 5}}}}).ok());
}

TEST(SqliteTaskStoreTest, RecordsAndBuffersSurviveReopening) {
  testutil::TempDir dir;
  auto file = dir.path() / "tasks.db";
  {
    auto store = SqliteTaskStore::Open(file);
    ASSERT_TRUE(store.ok());
    TaskRecord r = Record("kept", 5, true);
    r.result_buffers.emplace_back(std::string_view("\0result\xff", 8));
    r.result_buffers.emplace_back();
    r.result_content = R"({"status": "ok"})";
    ASSERT_TRUE((*store)->Add(std::move(r)).ok());
    (*store)->Flush();
  }
  auto store = SqliteTaskStore::Open(file);
  ASSERT_TRUE(store.ok());
  auto found = (*store)->FindIds({"kept"});
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 1u);
  const TaskRecord& r = found->front();
  EXPECT_EQ(FieldValue(r, "result_content")["status"], "ok");
  ASSERT_EQ(r.result_buffers.size(), 2u);
  EXPECT_EQ(protocol::view(r.result_buffers[0]), std::string_view("\0result\xff", 8));
  EXPECT_EQ(r.result_buffers[1].size(), 0u);
  EXPECT_EQ(protocol::view(r.buffers.at(0)), "payload");
  EXPECT_EQ(r.completed, TimePoint(std::chrono::seconds(1700000006)));
}

TEST(SqliteTaskStoreTest, FileWithoutLabelColumnIsMigrated) {
  testutil::TempDir dir;
  auto file = dir.path() / "tasks.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  // The table as versions before task labels created it.
  const char* old_schema =
      "CREATE TABLE tasks (msg_id TEXT PRIMARY KEY, header TEXT, metadata TEXT, content TEXT, "
      "buffers BLOB, submitted INTEGER, client_uuid TEXT, engine_uuid TEXT, started INTEGER, "
      "completed INTEGER, resubmitted TEXT, received INTEGER, result_header TEXT, "
      "result_metadata TEXT, result_content TEXT, result_buffers BLOB, queue TEXT, "
      "execute_input TEXT, execute_result TEXT, error TEXT, stdout TEXT, stderr TEXT);"
      "INSERT INTO tasks (msg_id, metadata, submitted) VALUES ('old', '{\"label\": \"L\"}', 1)";
  ASSERT_EQ(sqlite3_exec(db, old_schema, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto store = SqliteTaskStore::Open(file, "tasks");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(Ids((*store)->Find(Query({{"label", "L"}}))), (std::vector<std::string>{"old"}));
  TaskRecord added = Record("new", 2, true);
  added.metadata = R"({"label": "M"})";
  ASSERT_TRUE((*store)->Add(std::move(added)).ok());
  (*store)->Flush();

  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT label FROM tasks ORDER BY submitted", -1, &stmt, nullptr), SQLITE_OK);
  std::vector<std::string> labels;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    labels.emplace_back(text ? reinterpret_cast<const char*>(text) : "NULL");
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  EXPECT_EQ(labels, (std::vector<std::string>{"L", "M"}));
}

TEST(SqliteTaskStoreTest, UnwritableLocationIsAClearError) {
  auto store = SqliteTaskStore::Open("/nonexistent-dir/tasks.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/tasks.db"), std::string::npos);
}

TEST(MemoryTaskStoreLimitsTest, CullsOldestCompletedNeverPending) {
  MemoryTaskStore store(MemoryStoreLimits{10, 1ull << 30, 0.1});
  ASSERT_TRUE(store.Add(Record("pending-0", 0, false)).ok());
  for (int i = 1; i <= 30; ++i) ASSERT_TRUE(store.Add(Record("done-" + std::to_string(i), i, true)).ok());
  EXPECT_LE(store.size(), 11u);
  EXPECT_TRUE(store.Contains("pending-0"));
  EXPECT_TRUE(store.Contains("done-30"));
  EXPECT_FALSE(store.Contains("done-1"));
}

std::string TaskId(int i) { return std::string("t").append(std::to_string(i)); }

TEST(MemoryTaskStoreLimitsTest, BacklogOfPendingRecordsIsCulledOnceTheyComplete) {
  MemoryTaskStore store(MemoryStoreLimits{10, 1ull << 30, 0.1});
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(store.Add(Record(TaskId(i), i, false)).ok());
  EXPECT_EQ(store.size(), 500u);  // pending records are never culled
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(store.Update(TaskId(i), [](TaskRecord& r) { r.completed = r.submitted; }).ok());
  }
  EXPECT_LE(store.size(), 10u);
  EXPECT_TRUE(store.Contains("t499"));
  EXPECT_FALSE(store.Contains("t0"));
}

TEST(MemoryTaskStoreLimitsTest, SizeLimitCountsBuffers) {
  MemoryTaskStore store(MemoryStoreLimits{1000, 64 * 1024, 0.1});
  for (int i = 0; i < 20; ++i) {
    TaskRecord r = Record("big-" + std::to_string(i), i, true);
    r.result_buffers.emplace_back(16 * 1024);
    ASSERT_TRUE(store.Add(std::move(r)).ok());
  }
  EXPECT_LE(store.bytes(), 64u * 1024);
  EXPECT_TRUE(store.Contains("big-19"));
}

TEST(NullTaskStoreTest, QueriesExplainThereIsNoData) {
  NullTaskStore store;
  EXPECT_TRUE(store.Add(Record("a", 1, true)).ok());
  auto r = store.Find(Query(json::object()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("NoDB"), std::string::npos);
}

}  // namespace
}  // namespace ipp::controller

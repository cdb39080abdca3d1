#include "controller/compact_record.hpp"
#include "controller/task_store.hpp"

#include <gtest/gtest.h>

namespace ipp::controller {
namespace {

using nlohmann::json;

TaskRecord Finished(int i) {
  TaskRecord r;
  r.msg_id = "client-session_42_" + std::to_string(i);
  r.header = R"({"msg_id":")" + r.msg_id +
             R"(","msg_type":"apply_request","username":"u","session":"s","date":"2026-11-25T23:24:00.)" +
             std::to_string(100000 + i) + R"(Z","version":"5.3"})";
  r.metadata = R"({"after":[],"follow":[],"retries":0})";
  r.content = R"({"ipp_call":{"args":)" + std::to_string(i % 3) + R"(,"function":"ipp.echo"}})";
  r.result_header = R"({ "date" : "2026-11-25T23:24:01Z", "msg_id" : "reply-)" + std::to_string(i) +
                    R"(", "msg_type": "apply_reply"})";
  r.result_metadata = R"({"started":"2026-11-25T23:24:00.5Z","engine":"e-uuid","status":"ok"})";
  r.result_content = R"({"status":"ok","ipp_result":null})";
  r.client_uuid = "client-uuid";
  r.engine_uuid = "e-uuid";
  r.queue = "task";
  r.submitted = TimePoint(std::chrono::seconds(1700000000 + i));
  r.completed = *r.submitted + std::chrono::seconds(1);
  return r;
}

void ExpectSame(const TaskRecord& a, const TaskRecord& b) {
  EXPECT_EQ(a.msg_id, b.msg_id);
  EXPECT_EQ(a.header, b.header);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.content, b.content);
  EXPECT_EQ(a.result_header, b.result_header);
  EXPECT_EQ(a.result_metadata, b.result_metadata);
  EXPECT_EQ(a.result_content, b.result_content);
  EXPECT_EQ(a.client_uuid, b.client_uuid);
  EXPECT_EQ(a.engine_uuid, b.engine_uuid);
  EXPECT_EQ(a.queue, b.queue);
  EXPECT_EQ(a.submitted, b.submitted);
  EXPECT_EQ(a.completed, b.completed);
  EXPECT_EQ(a.started, b.started);
  EXPECT_EQ(a.stdout_text, b.stdout_text);
  EXPECT_EQ(a.error, b.error);
  ASSERT_EQ(a.buffers.size(), b.buffers.size());
  for (size_t i = 0; i < a.buffers.size(); ++i) EXPECT_EQ(a.buffers[i].to_string(), b.buffers[i].to_string());
  ASSERT_EQ(a.result_buffers.size(), b.result_buffers.size());
  for (size_t i = 0; i < a.result_buffers.size(); ++i) {
    EXPECT_EQ(a.result_buffers[i].to_string(), b.result_buffers[i].to_string());
  }
}

TEST(CompactRecordTest, OneSmallResultBufferIsKeptInTheRecordsOwnBlock) {
  TextPool pool;
  TaskRecord plain = Finished(1);
  size_t plain_bytes = CompactRecord::From(plain.Clone(), pool, std::pmr::get_default_resource()).ApproximateBytes();
  std::string pickle("\x80\x03X\x01\x00\x00\x00\x01.", 10);  // holds the hole marker
  for (std::string buffer : {pickle, std::string(), std::string(256, 'x')}) {
    TaskRecord r = Finished(1);
    r.result_buffers.emplace_back(buffer.data(), buffer.size());
    CompactRecord c = CompactRecord::From(r.Clone(), pool, std::pmr::get_default_resource());
    ExpectSame(c.Expand(), r);
    EXPECT_EQ(c.ApproximateBytes(), plain_bytes + buffer.size());  // no Rare for it
  }
  // Bigger, more than one, or beside other rare fields: kept as before.
  TaskRecord big = Finished(2);
  big.result_buffers.emplace_back(std::string(257, 'y'));
  TaskRecord two = Finished(3);
  two.result_buffers.emplace_back(pickle.data(), pickle.size());
  two.result_buffers.emplace_back(std::string_view("raw"));
  TaskRecord with_output = Finished(4);
  with_output.result_buffers.emplace_back(pickle.data(), pickle.size());
  with_output.stdout_text = "out\n";
  for (TaskRecord* r : {&big, &two, &with_output}) {
    CompactRecord c = CompactRecord::From(r->Clone(), pool, std::pmr::get_default_resource());
    ExpectSame(c.Expand(), *r);
  }
}

TEST(CompactRecordTest, ExpandGivesBackEveryTextByteForByte) {
  TextPool pool;
  for (int i = 0; i < 5; ++i) {
    TaskRecord original = Finished(i);
    CompactRecord c = CompactRecord::From(original.Clone(), pool, std::pmr::get_default_resource());
    ExpectSame(c.Expand(), original);
  }
}

TEST(CompactRecordTest, RareFieldsAndOddTextsSurvive) {
  TextPool pool;
  TaskRecord r = Finished(7);
  r.stdout_text = "hello\n";
  r.error = R"({"ename":"E"})";
  r.buffers.emplace_back(std::string_view("payload"));
  r.content = "not json at all";                         // kept whole
  r.metadata = std::string("{\"a\":\"") + '\x01' + "\"}";  // holds the hole marker: kept whole
  r.result_content = "";                                  // null part
  r.header = R"({"msg_id":"x\"y","date":"d"})";           // escaped value: still a hole
  CompactRecord c = CompactRecord::From(r.Clone(), pool, std::pmr::get_default_resource());
  ExpectSame(c.Expand(), r);
}

TEST(CompactRecordTest, RepeatedTextsAreStoredOnceAndFreedWithTheLastRecord) {
  TextPool pool;
  std::vector<CompactRecord> records;
  for (int i = 0; i < 300; ++i) records.push_back(CompactRecord::From(Finished(i), pool, std::pmr::get_default_resource()));
  // Skeletons: one header, one metadata, three contents (args 0,1,2), one of each result part,
  // and client uuid, engine uuid, queue.
  EXPECT_EQ(pool.size(), 1u + 1 + 3 + 1 + 1 + 1 + 3);
  EXPECT_LE(sizeof(CompactRecord), 256u);
  for (auto& r : records) r.Release(pool);
  EXPECT_EQ(pool.size(), 0u);
}

TEST(CompactRecordTest, StoreCompactsOnCompletionAndStillAnswersQueriesAndUpdates) {
  MemoryTaskStore store;
  TaskRecord pending = Finished(1);
  pending.completed.reset();
  pending.result_header.clear();
  ASSERT_TRUE(store.Add(pending.Clone()).ok());
  ASSERT_TRUE(store.Update(pending.msg_id, [](TaskRecord& r) {
    TaskRecord done = Finished(1);
    r.completed = done.completed;
    r.result_header = done.result_header;
  }).ok());
  // Output arriving after the result: the compacted record is expanded, changed, compacted.
  ASSERT_TRUE(store.Update(pending.msg_id, [](TaskRecord& r) { r.stdout_text += "late"; }).ok());
  TaskRecord expected = Finished(1);
  expected.stdout_text = "late";
  auto found = store.FindIds({expected.msg_id});
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 1u);
  ExpectSame((*found)[0], expected);
  auto q = RecordQuery::Parse({{"engine_uuid", "e-uuid"}, {"completed", {{"$ne", nullptr}}}});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(store.Find(*q)->size(), 1u);
  EXPECT_EQ(*store.History(), std::vector<std::string>{expected.msg_id});
  ASSERT_TRUE(store.Drop(*q).ok());
  EXPECT_EQ(store.size(), 0u);
  EXPECT_FALSE(store.Contains(expected.msg_id));
}

TEST(CompactRecordTest, HolesThatRepeatTheMsgIdOrATimeCostOneByte) {
  // As the hub makes them: the request header names the record's msg_id, and the dates the hub
  // read its times from are in the texts.
  TaskRecord r = Finished(5);
  r.submitted = protocol::ParseIso8601("2026-11-25T23:24:00.100005Z");
  r.started = protocol::ParseIso8601("2026-11-25T23:24:00.500000Z");
  r.completed = protocol::ParseIso8601("2026-11-25T23:24:01.000001Z");
  r.received = *r.completed + std::chrono::microseconds(3);
  r.header = R"({"msg_id": ")" + r.msg_id + R"(", "date": "2026-11-25T23:24:00.100005Z"})";
  r.result_header = R"({"msg_id": "reply-5", "date": "2026-11-25T23:24:01.000001Z"})";
  r.result_metadata = R"({"started": "2026-11-25T23:24:00.500000Z", "status": "ok"})";
  TextPool pool;
  CompactRecord c = CompactRecord::From(r.Clone(), pool, std::pmr::get_default_resource());
  ExpectSame(c.Expand(), r);
  // Holes: msg_id, date | msg_id "reply-5", date | started: two bytes each but the one real value.
  size_t own = c.ApproximateBytes() - sizeof(CompactRecord);
  size_t skeletons = 0;
  for (const std::string* part : {&r.header, &r.metadata, &r.content, &r.result_header, &r.result_metadata,
                                  &r.result_content}) {
    skeletons += part->size();
  }
  skeletons -= r.msg_id.size() + 2 + 3 * 29 + std::string_view("\"reply-5\"").size();  // less the holes
  skeletons += 5;                                                                     // a marker per hole
  // The msg_id, then per hole its code or value and an end marker.
  EXPECT_EQ(own - skeletons, r.msg_id.size() + 4 + std::string_view("\"reply-5\"").size() + 5);
  c.Release(pool);
}

TEST(CompactRecordTest, RecordsOfOneMapShareOneShape) {
  TextPool pool;
  std::vector<CompactRecord> records;
  for (int i = 0; i < 30; ++i) records.push_back(CompactRecord::From(Finished(3 * i), pool, std::pmr::get_default_resource()));
  EXPECT_LE(sizeof(CompactRecord), 96u);  // one pointer for every text it shares
  for (int i = 0; i < 30; ++i) ExpectSame(records[i].Expand(), Finished(3 * i));
  for (auto& r : records) r.Release(pool);
  EXPECT_EQ(pool.size(), 0u);
}

}  // namespace
}  // namespace ipp::controller

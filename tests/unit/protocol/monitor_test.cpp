#include "protocol/monitor.hpp"

#include <gtest/gtest.h>

#include "protocol/session.hpp"

namespace ipp::protocol::monitor {
namespace {

Frames ToFrames(const std::vector<std::string>& parts) {
  Frames f;
  for (const auto& p : parts) f.emplace_back(p.data(), p.size());
  return f;
}

class MonitorCodecTest : public ::testing::Test {
 protected:
  // A signed request with the given routing ids and one buffer.
  Frames Request(std::vector<std::string> ids) {
    Message m = session_.make("apply_request", {{"x", 1}});
    for (const auto& id : ids) m.identities.emplace_back(id.data(), id.size());
    m.buffers.emplace_back(std::string_view("payload"));
    return session_.serialize(std::move(m));
  }
  Session session_{"secret-key"};
};

TEST_F(MonitorCodecTest, EveryTopicRoundTripsWithItsEngine) {
  struct Case {
    Topic topic;
    std::vector<std::string> ids;
    std::string engine;
  };
  const Case cases[] = {
      {Topic::kMuxRequest, {"engine-1", "client-1"}, "engine-1"},
      {Topic::kMuxReply, {"client-1", "engine-1"}, "engine-1"},
      {Topic::kTaskRequest, {"client-1"}, ""},
      {Topic::kTaskReply, {"engine-1", "client-1"}, "engine-1"},
      {Topic::kBroadcastRequest, {"client-1"}, ""},
      {Topic::kBroadcastReply, {"engine-1", "client-1"}, ""},
      {Topic::kIopub, {}, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(TopicName(c.topic)));
    Frames original = Request(c.ids);
    Result<Event> event = Decode(Report(c.topic, original));
    ASSERT_TRUE(event.ok()) << event.status().ToString();
    EXPECT_EQ(event->topic, c.topic);
    EXPECT_EQ(event->engine, c.engine);
    ASSERT_TRUE(event->message.has_value());
    EXPECT_EQ(event->message->identity_count(), c.ids.size());
    EXPECT_TRUE(session_.verify(*event->message).ok());  // the message passes unchanged
    Frames buffers = event->message->take_buffers();
    ASSERT_EQ(buffers.size(), 1u);
    EXPECT_EQ(view(buffers[0]), "payload");
    // The report shares the original's frames: the producer still holds a whole message.
    EXPECT_EQ(original.size(), c.ids.size() + 7);
    EXPECT_EQ(view(original.back()), "payload");
  }
}

TEST_F(MonitorCodecTest, ReportWithIdsPrependsThem) {
  Message m = session_.make("apply_reply", {{"status", "ok"}});
  Result<Event> event = Decode(Report(Topic::kTaskReply, {"", "client-1"}, session_.serialize(std::move(m))));
  ASSERT_TRUE(event.ok()) << event.status().ToString();
  EXPECT_EQ(event->topic, Topic::kTaskReply);
  EXPECT_EQ(event->engine, "");  // failed before any engine
  EXPECT_EQ(event->message->identity(1), "client-1");
}

TEST_F(MonitorCodecTest, TaskDestinationRoundTrips) {
  Result<Event> event = Decode(TaskDestination("msg-1", "engine-1"));
  ASSERT_TRUE(event.ok()) << event.status().ToString();
  EXPECT_EQ(event->topic, Topic::kTaskDestination);
  EXPECT_EQ(event->msg_id, "msg-1");
  EXPECT_EQ(event->engine, "engine-1");
  EXPECT_FALSE(event->message.has_value());
}

TEST_F(MonitorCodecTest, TaskWaitingRoundTripsItsReasonAndItsEnd) {
  Result<Event> event = Decode(TaskWaiting("msg-1", "an engine with function pi.sample"));
  ASSERT_TRUE(event.ok()) << event.status().ToString();
  EXPECT_EQ(event->topic, Topic::kTaskWaiting);
  EXPECT_EQ(event->msg_id, "msg-1");
  EXPECT_EQ(event->reason, "an engine with function pi.sample");
  EXPECT_EQ(event->engine, "");
  EXPECT_FALSE(event->message.has_value());
  Result<Event> ended = Decode(TaskWaiting("msg-1", ""));
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(ended->reason, "");
  EXPECT_EQ(TopicName(Topic::kTaskWaiting), "waiting");
}

TEST_F(MonitorCodecTest, MalformedReportsFailWithAReason) {
  auto error = [](Frames frames) {
    Result<Event> event = Decode(std::move(frames));
    EXPECT_FALSE(event.ok());
    return event.ok() ? std::string() : event.status().message();
  };
  EXPECT_NE(error({}).find("empty"), std::string::npos);
  EXPECT_NE(error(ToFrames({"incontrol", "x"})).find("unknown monitor topic 'incontrol'"), std::string::npos);
  EXPECT_NE(error(ToFrames({"tracktask", "msg-1"})).find("3 expected"), std::string::npos);
  EXPECT_NE(error(ToFrames({"waiting", "msg-1"})).find("waiting report has 2 frames, 3 expected"), std::string::npos);
  EXPECT_NE(error(ToFrames({"intask", "client", "not a message"})).find("delimiter"), std::string::npos);
  // A direct request must name its engine and client.
  Frames one_id = Report(Topic::kMuxRequest, Request({"engine-1"}));
  EXPECT_NE(error(std::move(one_id)).find("routing ids"), std::string::npos);
  // Truncated after the delimiter.
  EXPECT_NE(error(ToFrames({"outtask", "e", "c", "<IDS|MSG>", "sig", "{}"})).find("truncated"), std::string::npos);
}

}  // namespace
}  // namespace ipp::protocol::monitor

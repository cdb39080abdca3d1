#include "schedulers/request_types.hpp"

#include <gtest/gtest.h>

namespace ipp::schedulers {
namespace {

TEST(RequestTypesTest, TaskChannelsCarryOnlyWhatEnginesAnswerAsTasks) {
  for (RequestChannel c : {RequestChannel::kTask, RequestChannel::kBroadcast}) {
    EXPECT_TRUE(Carries(c, "apply_request"));
    EXPECT_TRUE(Carries(c, "execute_request"));
    EXPECT_FALSE(Carries(c, "kernel_info_request"));
    EXPECT_FALSE(Carries(c, "db_request"));
    EXPECT_FALSE(Carries(c, ""));
  }
}

TEST(RequestTypesTest, MuxCarriesShellRequestsButNotHubQueries) {
  for (const char* t : {"apply_request", "execute_request", "kernel_info_request", "clear_request",
                        "complete_request", "comm_open"}) {
    EXPECT_TRUE(Carries(RequestChannel::kMux, t)) << t;
  }
  for (const char* t : {"db_request", "queue_request", "abort_request", "bogus", "apply_reply"}) {
    EXPECT_FALSE(Carries(RequestChannel::kMux, t)) << t;
  }
}

TEST(RequestTypesTest, RefusalIsASignedApplyReplyToTheSenderNamingTheRequest) {
  protocol::Session session("key");
  protocol::Message request = session.make("db_request", {{"query", nullptr}});
  request.identities.emplace_back(std::string_view("client-id"));
  std::string msg_id = request.msg_id();
  Result<protocol::RawMessage> raw = protocol::RawMessage::FromFrames(session.serialize(std::move(request)));
  ASSERT_TRUE(raw.ok());
  protocol::Frames reply = Refusal(session, RequestChannel::kTask, *raw, "db_request");
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(protocol::view(reply[0]), "client-id");
  protocol::Session reader("key");
  Result<protocol::Message> m = reader.parse(std::move(reply));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->msg_type(), "apply_reply");
  EXPECT_EQ(m->parent_header.value("msg_id", ""), msg_id);
  EXPECT_EQ(m->content.value("status", ""), "error");
  EXPECT_EQ(m->content.value("ename", ""), "InvalidRequest");
  std::string evalue = m->content.value("evalue", "");
  EXPECT_NE(evalue.find("task channel does not carry 'db_request'"), std::string::npos) << evalue;
  EXPECT_NE(evalue.find("hub's query channel"), std::string::npos) << evalue;
  EXPECT_TRUE(m->content["traceback"].is_array());
}

TEST(RequestTypesTest, AMadeUpReplyIsNamedAfterItsRequest) {
  EXPECT_EQ(ReplyType("execute_request"), "execute_reply");
  EXPECT_EQ(ReplyType("kernel_info_request"), "kernel_info_reply");
  EXPECT_EQ(ReplyType("_request"), "apply_reply");  // nothing before the suffix
  EXPECT_EQ(ReplyType("comm_msg"), "apply_reply");
  EXPECT_EQ(ReplyType(""), "apply_reply");
}

}  // namespace
}  // namespace ipp::schedulers

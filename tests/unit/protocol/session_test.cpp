#include "protocol/session.hpp"

#include <gtest/gtest.h>

#include "protocol/clock.hpp"

namespace ipp::protocol {
namespace {

Frames ToFrames(const std::vector<std::string>& parts) {
  Frames f;
  for (const auto& p : parts) f.emplace_back(p.data(), p.size());
  return f;
}

std::vector<std::string> ToStrings(const Frames& frames) {
  std::vector<std::string> out;
  for (const auto& f : frames) out.emplace_back(view(f));
  return out;
}

class SessionTest : public ::testing::Test {
 protected:
  // A correctly signed message as a list of strings, so tests can corrupt single frames.
  std::vector<std::string> Signed(const std::string& header, const std::string& content = "{}") {
    std::string_view parts[] = {header, "{}", "{}", content};
    return {"client-id", std::string(kDelimiter), sender_.signer().sign(parts, 4), header, "{}",
            "{}", content};
  }
  std::string Header() {
    return sender_.make_header("apply_request").dump();
  }
  // Why receiver_ refused `parts`; it must refuse them.
  Status Refusal(const std::vector<std::string>& parts) {
    Result<Message> r = receiver_.parse(ToFrames(parts));
    EXPECT_FALSE(r.ok());
    return r.ok() ? Status::OK() : r.status();
  }
  // receiver_ must refuse `parts` with `code`, saying `says`.
  void ExpectRefused(const std::vector<std::string>& parts, Status::Code code, const std::string& says) {
    Status refusal = Refusal(parts);
    EXPECT_EQ(refusal.code(), code);
    EXPECT_NE(refusal.message().find(says), std::string::npos);
  }
  // The same for a signed message whose frame `index` is replaced by `frame`.
  void ExpectRefusedWithFrame(size_t index, const std::string& frame, Status::Code code, const std::string& says) {
    auto parts = Signed(Header());
    parts[index] = frame;
    ExpectRefused(parts, code, says);
  }
  Session sender_{"secret-key"};
  Session receiver_{"secret-key"};
};

TEST_F(SessionTest, RoundTripKeepsPartsIdentitiesAndBuffers) {
  Message m = sender_.make("apply_request", {{"x", 1}}, {{"msg_id", "parent-1"}}, {{"retries", 2}});
  m.identities.emplace_back(std::string_view("engine-uuid"));
  m.buffers.emplace_back(std::string_view("\x00\x01binary", 8));
  std::string msg_id = m.msg_id();

  Result<Message> parsed = receiver_.parse(sender_.serialize(std::move(m)));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->msg_type(), "apply_request");
  EXPECT_EQ(parsed->msg_id(), msg_id);
  EXPECT_EQ(parsed->parent_id(), "parent-1");
  EXPECT_EQ(parsed->content["x"], 1);
  EXPECT_EQ(parsed->metadata["retries"], 2);
  ASSERT_EQ(parsed->identities.size(), 1u);
  EXPECT_EQ(view(parsed->identities[0]), "engine-uuid");
  ASSERT_EQ(parsed->buffers.size(), 1u);
  EXPECT_EQ(view(parsed->buffers[0]), std::string_view("\x00\x01binary", 8));
}

TEST_F(SessionTest, HeaderHasJupyterFields) {
  json h = sender_.make_header("status");
  EXPECT_EQ(h["version"], "5.3");
  EXPECT_EQ(h["session"], sender_.id());
  EXPECT_EQ(h["username"], "username");
  EXPECT_TRUE(ParseIso8601(h["date"].get<std::string>()).has_value());
  EXPECT_EQ(h["msg_id"].get<std::string>().rfind(sender_.id() + "_", 0), 0u);
  EXPECT_NE(sender_.make_header("status")["msg_id"], h["msg_id"]);
}

TEST_F(SessionTest, HeaderTextIsTheSameHeaderWrittenDirectly) {
  Session odd("key", "a \"quoted\" user\n");
  json tree = odd.make_header("apply_reply", "id-1");
  json text = json::parse(odd.header_text("apply_reply", "id-1"));
  EXPECT_TRUE(ParseIso8601(text["date"].get<std::string>()).has_value());
  text["date"] = tree["date"];
  EXPECT_EQ(text, tree);
  EXPECT_EQ(text.dump(), tree.dump());  // same key order too
  json numbered = json::parse(odd.header_text("status"));
  EXPECT_EQ(numbered["msg_id"].get<std::string>().rfind(odd.id() + "_", 0), 0u);
}

TEST_F(SessionTest, PartialParseReadsTheHeaderFieldsAndOnlyTheAskedParts) {
  for (std::string msg_id : {"plain-id", "escaped\\\"id"}) {  // the second takes the full parse
    Message m = sender_.make("apply_request", {{"x", 1}}, {{"msg_id", "parent-1"}}, {{"retries", 2}});
    m.header["msg_id"] = msg_id;
    m.identities.emplace_back(std::string_view("client"));
    m.buffers.emplace_back(std::string_view("buffer"));
    auto raw = RawMessage::FromFrames(sender_.serialize(std::move(m)));
    ASSERT_TRUE(raw.ok());
    Result<Message> parsed = ParseTrustedPart(std::move(*raw), kParseContent);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->msg_id(), msg_id);
    EXPECT_EQ(parsed->msg_type(), "apply_request");
    EXPECT_EQ(parsed->content, (json{{"x", 1}}));
    EXPECT_EQ(parsed->metadata, json::object());       // not asked for
    EXPECT_EQ(parsed->parent_header, json::object());  // not asked for
    ASSERT_EQ(parsed->identities.size(), 1u);
    ASSERT_EQ(parsed->buffers.size(), 1u);
    EXPECT_EQ(parsed->buffers[0].to_string(), "buffer");
  }
  // A header without a msg_type is an error either way.
  auto parts = Signed(R"({"msg_id":"x"})");
  auto raw = RawMessage::FromFrames(ToFrames(parts));
  ASSERT_TRUE(raw.ok());
  EXPECT_FALSE(ParseTrustedPart(std::move(*raw), kParseContent).ok());
}

TEST_F(SessionTest, RejectsMissingSignature) {
  ExpectRefusedWithFrame(2, "", Status::Code::kUnauthorized, "unsigned");
}

TEST_F(SessionTest, RejectsWrongSignatureAndTamperedContent) {
  auto parts = Signed(Header());
  parts[6] = R"({"evil": true})";
  EXPECT_EQ(Refusal(parts).code(), Status::Code::kUnauthorized);
  Session other("another-key");
  auto good = Signed(Header());
  EXPECT_EQ(other.parse(ToFrames(good)).status().code(), Status::Code::kUnauthorized);
}

TEST_F(SessionTest, RejectsReplayedMessage) {
  auto parts = Signed(Header());
  ASSERT_TRUE(receiver_.parse(ToFrames(parts)).ok());
  EXPECT_NE(Refusal(parts).message().find("replay"), std::string::npos);
}

TEST_F(SessionTest, ReplayHistoryKeepsTheRecentSignaturesAndForgetsOldOnes) {
  receiver_.set_digest_history_size(8);
  std::vector<std::vector<std::string>> sent;
  for (int i = 0; i < 40; ++i) {
    json h = json::parse(Header());
    h["msg_id"] = "m" + std::to_string(i);
    sent.push_back(Signed(h.dump()));
    ASSERT_TRUE(receiver_.parse(ToFrames(sent.back())).ok()) << i;
  }
  // The last half of the history size is always remembered...
  for (int i = 36; i < 40; ++i) EXPECT_FALSE(receiver_.parse(ToFrames(sent[i])).ok()) << i;
  // ...and what is far older is forgotten (the history is bounded).
  EXPECT_TRUE(receiver_.parse(ToFrames(sent[0])).ok());
}

TEST_F(SessionTest, RejectsMissingDelimiter) {
  ExpectRefusedWithFrame(1, "<IDS|MSX>", Status::Code::kProtocolError, "delimiter");
}

TEST_F(SessionTest, RejectsTruncatedFrames) {
  auto parts = Signed(Header());
  for (size_t keep = 0; keep < parts.size(); ++keep) {
    std::vector<std::string> cut(parts.begin(), parts.begin() + static_cast<long>(keep));
    EXPECT_EQ(Refusal(cut).code(), Status::Code::kProtocolError) << "kept " << keep;
  }
}

TEST_F(SessionTest, RejectsInvalidJsonNamingThePart) {
  ExpectRefused(Signed(Header(), "{not json"), Status::Code::kProtocolError, "content");
}

TEST_F(SessionTest, RejectsWrongJsonTypes) {
  EXPECT_NE(Refusal(Signed(Header(), "[1,2]")).message().find("content is a JSON array"), std::string::npos);
  EXPECT_NE(Refusal(Signed(R"({"msg_id": "a", "msg_type": 7})")).message().find("header.msg_type"), std::string::npos);
  EXPECT_NE(Refusal(Signed(R"({"msg_type": "x"})")).message().find("msg_id"), std::string::npos);
}

TEST_F(SessionTest, SerializedLayoutMatchesJupyter) {
  Message m = sender_.make("x");
  m.identities.emplace_back(std::string_view("a"));
  m.identities.emplace_back(std::string_view("b"));
  auto strings = ToStrings(sender_.serialize(std::move(m)));
  ASSERT_EQ(strings.size(), 8u);
  EXPECT_EQ(strings[0], "a");
  EXPECT_EQ(strings[1], "b");
  EXPECT_EQ(strings[2], "<IDS|MSG>");
  EXPECT_EQ(strings[3].size(), 64u);  // hex HMAC-SHA256
  EXPECT_EQ(json::parse(strings[5]), json::object());
}

TEST_F(SessionTest, RawMessageForwardingSwapsRouters) {
  auto parts = Signed(Header());
  parts.insert(parts.begin(), "outer");
  Result<RawMessage> raw = RawMessage::FromFrames(ToFrames(parts));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->identity_count(), 2u);
  raw->swap_first_identities();
  EXPECT_EQ(raw->identity(0), "client-id");
  EXPECT_EQ(raw->identity(1), "outer");
  EXPECT_TRUE(receiver_.verify(*raw).ok());  // routing changes do not touch the signature
}

TEST(NewIdTest, HasJupyterShapeAndIsUnique) {
  std::string a = NewId(), b = NewId();
  EXPECT_EQ(a.size(), 33u);
  EXPECT_EQ(a[8], '-');
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace ipp::protocol

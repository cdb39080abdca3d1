#include "schedulers/broadcast.hpp"

#include <set>

#include <gtest/gtest.h>

#include "tests/testutil/fake_peer.hpp"

namespace ipp::schedulers {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testutil::FakePeer;

constexpr const char* kBroadcastKey = "broadcast-test-key";

// [[uuid, id], ...] as a client sends them (braces alone would make an object).
json Targets() { return json::array({json::array({"engine-a", 0}), json::array({"engine-b", 1})}); }

class BroadcastSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scheduler_ = std::make_unique<BroadcastScheduler>(context_, kBroadcastKey, 20ms, MakeLogger("test.broadcast"));
    scheduler_->client_socket().bind("inproc://bcast-clients");
    scheduler_->engine_socket().bind("inproc://bcast-engines");
    monitor_.bind("inproc://bcast-monitor");
    scheduler_->ConnectMonitor("inproc://bcast-monitor");
    scheduler_->Attach(reactor_);
    client_.socket().connect("inproc://bcast-clients");
    for (auto* e : {&a_, &b_}) e->socket().connect("inproc://bcast-engines");
  }
  std::string Broadcast(bool coalescing, std::string_view msg_type = "apply_request") {
    return client_.Send(msg_type, json::object(), {{"targets", Targets()}, {"is_coalescing", coalescing}})["msg_id"];
  }
  // The engine's answer to `request`, with one buffer holding its name, metadata as an engine
  // echoes it.
  void Answer(FakePeer& engine, const protocol::Message& request, const std::string& name) {
    json md = request.metadata;
    md["status"] = "ok";
    protocol::Message reply = engine.session().make("apply_reply", {{"status", "ok"}}, request.header, md);
    for (const auto& id : request.identities) reply.identities.emplace_back(id.data(), id.size());
    reply.buffers.emplace_back(name.data(), name.size());
    engine.Send(std::move(reply));
  }

  zmq::context_t context_;
  Reactor reactor_{MakeLogger("test.reactor")};
  std::unique_ptr<BroadcastScheduler> scheduler_;
  zmq::socket_t monitor_{context_, zmq::socket_type::pull};
  FakePeer client_{context_, zmq::socket_type::dealer, kBroadcastKey};
  FakePeer a_{context_, zmq::socket_type::dealer, kBroadcastKey, "engine-a"};
  FakePeer b_{context_, zmq::socket_type::dealer, kBroadcastKey, "engine-b"};
};

TEST_F(BroadcastSchedulerTest, SendsToEveryTargetAndReturnsEachReply) {
  std::string id = Broadcast(false);
  std::set<std::string> replies;
  for (auto* e : {&a_, &b_}) {
    std::optional<protocol::Message> request = e->Next(reactor_);
    ASSERT_TRUE(request.has_value());
    std::string uuid = e == &a_ ? "engine-a" : "engine-b";
    EXPECT_EQ(request->msg_id(), id + "_" + uuid);  // one msg_id per engine
    EXPECT_EQ(request->metadata["original_msg_id"], id);
    // Not the whole target list: each engine's copy would grow with the number of engines.
    EXPECT_FALSE(request->metadata.contains("targets")) << request->metadata.dump();
    EXPECT_EQ(request->metadata["is_coalescing"], false);
    Answer(*e, *request, uuid);
  }
  for (int n = 0; n < 2; ++n) {
    std::optional<protocol::Message> reply = client_.Next(reactor_);
    ASSERT_TRUE(reply.has_value());
    replies.insert(reply->parent_id());
  }
  EXPECT_EQ(replies, (std::set<std::string>{id + "_engine-a", id + "_engine-b"}));
}

TEST_F(BroadcastSchedulerTest, CoalescesRepliesIntoOneWithEveryBufferInTargetOrder) {
  std::string id = Broadcast(true);
  std::optional<protocol::Message> to_a = a_.Next(reactor_);
  std::optional<protocol::Message> to_b = b_.Next(reactor_);
  ASSERT_TRUE(to_a && to_b);
  Answer(b_, *to_b, "from-b");  // the later target answers first
  EXPECT_FALSE(client_.Next(reactor_, 20ms).has_value()) << "replied before every engine did";
  Answer(a_, *to_a, "from-a");
  std::optional<protocol::Message> reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  ASSERT_EQ(reply->buffers.size(), 2u);
  EXPECT_EQ(protocol::view(reply->buffers[0]), "from-a");
  EXPECT_EQ(protocol::view(reply->buffers[1]), "from-b");
  EXPECT_EQ(reply->metadata["broadcast_targets"], Targets());
}

TEST_F(BroadcastSchedulerTest, RefusesRequestsItDoesNotCarry) {
  std::string id = Broadcast(false, "kernel_info_request");
  std::optional<protocol::Message> reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->parent_id(), id);
  EXPECT_EQ(reply->content.value("ename", ""), "InvalidRequest");
  EXPECT_FALSE(protocol::TryRecv(a_.socket()).has_value());
}

}  // namespace
}  // namespace ipp::schedulers

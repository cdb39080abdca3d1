#include <gtest/gtest.h>

#include "schedulers/relay.hpp"
#include "tests/testutil/fake_peer.hpp"

namespace ipp::schedulers {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testutil::FakePeer;

constexpr const char* kRelayKey = "relay-test-key";

// A MUX relay over inproc with a client, an engine and the hub's monitor PULL.
class RouterRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    relay_ = std::make_unique<RouterRelay>(context_, kRelayKey, protocol::monitor::Topic::kMuxRequest,
                                           protocol::monitor::Topic::kMuxReply, 20ms, MakeLogger("test.mux"),
                                           RequestChannel::kMux);
    relay_->client_socket().bind("inproc://mux-clients");
    relay_->engine_socket().bind("inproc://mux-engines");
    monitor_.socket().bind("inproc://mux-monitor");
    relay_->ConnectMonitor("inproc://mux-monitor");
    relay_->Attach(reactor_);
    client_.socket().connect("inproc://mux-clients");
    engine_.socket().connect("inproc://mux-engines");
  }
  // A request from the client to the engine named `to`.
  std::string Request(const std::string& to, std::string_view msg_type = "apply_request") {
    protocol::Message m = client_.session().make(msg_type);
    m.identities.emplace_back(to.data(), to.size());
    return client_.Send(std::move(m))["msg_id"];
  }
  std::string NextTopic() {
    std::optional<protocol::Frames> report = monitor_.NextFrames(reactor_);
    return report ? std::string(protocol::view(report->front())) : "(none)";
  }

  zmq::context_t context_;
  Reactor reactor_{MakeLogger("test.reactor")};
  std::unique_ptr<RouterRelay> relay_;
  FakePeer monitor_{context_, zmq::socket_type::pull, kRelayKey};
  FakePeer client_{context_, zmq::socket_type::dealer, kRelayKey};
  FakePeer engine_{context_, zmq::socket_type::dealer, kRelayKey, "engine-a"};
};

TEST_F(RouterRelayTest, ForwardsARequestToTheNamedEngineAndTheReplyBack) {
  std::string id = Request("engine-a");
  std::optional<protocol::Message> request = engine_.Next(reactor_);
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->msg_id(), id);
  EXPECT_EQ(NextTopic(), "in");
  engine_.Reply(*request, "apply_reply", {{"status", "ok"}}, {{"status", "ok"}});
  std::optional<protocol::Message> reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->parent_id(), id);
  ASSERT_EQ(reply->identities.size(), 1u);  // the engine it came from, as a ROUTER pair gives it
  EXPECT_EQ(protocol::view(reply->identities[0]), "engine-a");
  EXPECT_EQ(NextTopic(), "out");
}

TEST_F(RouterRelayTest, AnswersARequestForAnEngineThatNeverConnectsWithEngineError) {
  std::string id = Request("engine-gone");
  std::optional<protocol::Message> reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->parent_id(), id);
  EXPECT_EQ(reply->msg_type(), "apply_reply");
  EXPECT_EQ(reply->content.value("ename", ""), "EngineError");
  // Any request gets the reply its client waits for.
  Request("engine-gone", "kernel_info_request");
  reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->msg_type(), "kernel_info_reply");
}

TEST_F(RouterRelayTest, AnswersARequestWithANumberForItsMsgIdForAnEngineThatNeverConnects) {
  // Its reply is made when the held request expires: a throw there once left every request
  // held after it without a retry.
  protocol::Message m = client_.session().make("apply_request");
  m.header["msg_id"] = 42;
  m.identities.emplace_back("engine-gone", 11);
  client_.Send(std::move(m));
  std::string id = Request("engine-gone");
  std::optional<protocol::Message> reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->content.value("ename", ""), "EngineError");
  if (reply->parent_header.value("msg_id", json()) == json(42)) reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->parent_id(), id);
}

TEST_F(RouterRelayTest, DeliversARequestHeldForAnEngineThatConnectsLate) {
  std::string id = Request("engine-late");
  reactor_.run_once(0ms);  // forwarded while nobody is connected as engine-late: held
  FakePeer late{context_, zmq::socket_type::dealer, kRelayKey, "engine-late"};
  late.socket().connect("inproc://mux-engines");
  std::optional<protocol::Message> request = late.Next(reactor_);
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->msg_id(), id);
}

TEST_F(RouterRelayTest, RefusesRequestsItDoesNotCarry) {
  std::string id = Request("engine-a", "db_request");
  std::optional<protocol::Message> reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->parent_id(), id);
  EXPECT_EQ(reply->content.value("ename", ""), "InvalidRequest");
  EXPECT_FALSE(protocol::TryRecv(engine_.socket()).has_value());
}

TEST_F(RouterRelayTest, DropsForgedMessagesEitherWay) {
  FakePeer forger(context_, zmq::socket_type::dealer, "wrong-key");
  forger.socket().connect("inproc://mux-clients");
  protocol::Message forged = forger.session().make("apply_request");
  forged.identities.emplace_back("engine-a", 8);
  forger.Send(std::move(forged));
  std::string id = Request("engine-a");
  std::optional<protocol::Message> request = engine_.Next(reactor_);
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->msg_id(), id);  // the forged one, sent first, never arrived

  FakePeer impostor(context_, zmq::socket_type::dealer, "wrong-key", "engine-b");
  impostor.socket().connect("inproc://mux-engines");
  impostor.Reply(*request, "apply_reply", {{"status", "ok"}});
  engine_.Reply(*request, "apply_reply", {{"status", "ok"}});
  std::optional<protocol::Message> reply = client_.Next(reactor_);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(protocol::view(reply->identities[0]), "engine-a");
  EXPECT_FALSE(client_.Next(reactor_, 20ms).has_value());
}

TEST(ControlRelayTest, PassesAbortRequestsToTheTaskSchedulersTap) {
  zmq::context_t context;
  Reactor reactor(MakeLogger("test.reactor"));
  RouterRelay control(context, kRelayKey, std::nullopt, std::nullopt, 20ms, MakeLogger("test.control"));
  control.client_socket().bind("inproc://control-clients");
  control.engine_socket().bind("inproc://control-engines");
  FakePeer tap(context, zmq::socket_type::pull, kRelayKey);
  tap.socket().bind("inproc://control-aborts");
  control.TapAborts("inproc://control-aborts");
  control.Attach(reactor);
  FakePeer client(context, zmq::socket_type::dealer, kRelayKey);
  client.socket().connect("inproc://control-clients");
  FakePeer engine(context, zmq::socket_type::dealer, kRelayKey, "engine-a");
  engine.socket().connect("inproc://control-engines");

  for (std::string type : {"clear_request", "abort_request"}) {
    protocol::Message m = client.session().make(type, {{"msg_ids", {"task-1"}}});
    m.identities.emplace_back("engine-a", 8);
    client.Send(std::move(m));
    std::optional<protocol::Message> passed = engine.Next(reactor);
    ASSERT_TRUE(passed.has_value());
    EXPECT_EQ(passed->msg_type(), type);
  }
  // Only the abort (the clear_request, sent first, would come first), and only its content.
  std::optional<protocol::Frames> tapped = tap.NextFrames(reactor);
  ASSERT_TRUE(tapped.has_value());
  EXPECT_EQ(json::parse(protocol::view(tapped->at(0))), (json{{"msg_ids", {"task-1"}}}));
}

}  // namespace
}  // namespace ipp::schedulers

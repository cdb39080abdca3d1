#include "schedulers/relay.hpp"

#include <gtest/gtest.h>

#include "protocol/monitor.hpp"

namespace ipp::schedulers {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// Runs the relay's reactor until `sub` has a message or `patience` passes; returns it.
std::optional<protocol::Message> NextMessage(Reactor& reactor, zmq::socket_t& sub, protocol::Session& session,
                                             std::chrono::milliseconds patience = 5s) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < deadline) {
    reactor.run_once(10ms);
    if (auto frames = protocol::TryRecv(sub)) {
      Result<protocol::Message> m = session.parse(std::move(*frames));
      EXPECT_TRUE(m.ok()) << m.status().ToString();
      if (m.ok()) return std::move(m).value();
    }
  }
  return std::nullopt;
}

// The relay over inproc, its monitor channel read here, and its reactor run by the test.
class IopubRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    relay_.engine_socket().bind("inproc://iopub-engines");
    relay_.client_socket().bind("inproc://iopub-clients");
    relay_.ConnectMonitor("inproc://iopub-monitor");
    monitor_.bind("inproc://iopub-monitor");
    relay_.Attach(reactor_);
  }
  zmq::socket_t Subscriber(const std::string& topic) {
    zmq::socket_t sub(context_, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::subscribe, topic);
    sub.connect("inproc://iopub-clients");
    return sub;
  }

  zmq::context_t context_;
  IopubRelay relay_{context_, "secret", 0, MakeLogger("test.iopub")};
  zmq::socket_t monitor_{context_, zmq::socket_type::pull};
  Reactor reactor_{MakeLogger("test.reactor")};
  protocol::Session session_{"secret"};
};

TEST_F(IopubRelayTest, WelcomesEachSubscriberWithASignedMessage) {
  // Without the welcome, a subscriber could not tell when output would start reaching it.
  for (int n = 0; n < 2; ++n) {
    zmq::socket_t sub = Subscriber("");
    std::optional<protocol::Message> welcome = NextMessage(reactor_, sub, session_);
    ASSERT_TRUE(welcome.has_value()) << "subscriber " << n << " was not welcomed";
    EXPECT_EQ(welcome->msg_type(), "iopub_welcome");
    EXPECT_TRUE(welcome->parent_header.empty());  // stock clients ignore parentless IOPub
    EXPECT_EQ(welcome->content["subscription"], "");
  }

  // A prefix subscriber gets its topic as the first frame, so the welcome matches it.
  zmq::socket_t topical = Subscriber("engine.1");
  std::optional<protocol::Message> welcome = NextMessage(reactor_, topical, session_);
  ASSERT_TRUE(welcome.has_value());
  EXPECT_EQ(welcome->content["subscription"], "engine.1");
}

// Clients get every output; the hub hears of all of it but the engines' busy/idle (it records
// output, and two status messages per request were most of what it parsed from this channel).
TEST_F(IopubRelayTest, ForwardsEveryOutputAndReportsAllButStatusToTheHub) {
  zmq::socket_t sub = Subscriber("");
  ASSERT_TRUE(NextMessage(reactor_, sub, session_).has_value());  // the welcome
  zmq::socket_t engine(context_, zmq::socket_type::pub);
  engine.set(zmq::sockopt::linger, 0);
  engine.connect("inproc://iopub-engines");
  json parent = {{"msg_id", "request-1"}};
  auto publish = [&](const std::string& type, json content) {
    protocol::Message m = session_.make(type, std::move(content), parent);
    protocol::Send(engine, session_.serialize(std::move(m)));
  };
  // A subscription reaches a publisher asynchronously: publish until the first output arrives.
  std::optional<protocol::Message> first;
  for (int n = 0; n < 50 && !first; ++n) {
    publish("stream", {{"name", "stdout"}, {"text", "probe\n"}});
    first = NextMessage(reactor_, sub, session_, 100ms);
  }
  ASSERT_TRUE(first.has_value()) << "no output reached the subscriber";
  for (int n = 0; n < 20; ++n) reactor_.run_once(5ms);
  while (protocol::TryRecv(sub)) {
  }
  while (protocol::TryRecv(monitor_)) {
  }

  publish("status", {{"execution_state", "busy"}});
  publish("stream", {{"name", "stdout"}, {"text", "out\n"}});
  publish("status", {{"execution_state", "idle"}});
  std::vector<std::string> forwarded;
  for (int n = 0; n < 3; ++n) {
    std::optional<protocol::Message> m = NextMessage(reactor_, sub, session_);
    ASSERT_TRUE(m.has_value()) << "output " << n << " not forwarded";
    forwarded.push_back(m->msg_type());
  }
  EXPECT_EQ(forwarded, (std::vector<std::string>{"status", "stream", "status"}));
  std::vector<std::string> reported;
  for (int n = 0; n < 20; ++n) reactor_.run_once(5ms);
  while (auto frames = protocol::TryRecv(monitor_)) {
    Result<protocol::monitor::Event> event = protocol::monitor::Decode(std::move(*frames));
    ASSERT_TRUE(event.ok()) << event.status().ToString();
    EXPECT_EQ(event->topic, protocol::monitor::Topic::kIopub);
    Result<json> header = event->message->parse_object(protocol::RawMessage::kHeader);
    ASSERT_TRUE(header.ok());
    reported.push_back((*header)["msg_type"]);
  }
  EXPECT_EQ(reported, (std::vector<std::string>{"stream"}));
}

}  // namespace
}  // namespace ipp::schedulers

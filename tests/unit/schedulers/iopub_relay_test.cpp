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

TEST(IopubRelayTest, WelcomesEachSubscriberWithASignedMessage) {
  zmq::context_t context;
  IopubRelay relay(context, "secret", 0, MakeLogger("test.iopub"));
  relay.client_socket().bind("inproc://iopub-clients");
  relay.ConnectMonitor("inproc://iopub-monitor");
  zmq::socket_t monitor(context, zmq::socket_type::pull);
  monitor.bind("inproc://iopub-monitor");
  Reactor reactor(MakeLogger("test.reactor"));
  relay.Attach(reactor);
  protocol::Session session("secret");

  // Without the welcome, a subscriber could not tell when output would start reaching it.
  for (int n = 0; n < 2; ++n) {
    zmq::socket_t sub(context, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::subscribe, "");
    sub.connect("inproc://iopub-clients");
    std::optional<protocol::Message> welcome = NextMessage(reactor, sub, session);
    ASSERT_TRUE(welcome.has_value()) << "subscriber " << n << " was not welcomed";
    EXPECT_EQ(welcome->msg_type(), "iopub_welcome");
    EXPECT_TRUE(welcome->parent_header.empty());  // stock clients ignore parentless IOPub
    EXPECT_EQ(welcome->content["subscription"], "");
  }

  // A prefix subscriber gets its topic as the first frame, so the welcome matches it.
  zmq::socket_t topical(context, zmq::socket_type::sub);
  topical.set(zmq::sockopt::linger, 0);
  topical.set(zmq::sockopt::subscribe, "engine.1");
  topical.connect("inproc://iopub-clients");
  std::optional<protocol::Message> welcome = NextMessage(reactor, topical, session);
  ASSERT_TRUE(welcome.has_value());
  EXPECT_EQ(welcome->content["subscription"], "engine.1");
}

// Clients get every output; the hub hears of all of it but the engines' busy/idle (it records
// output, and two status messages per request were most of what it parsed from this channel).
TEST(IopubRelayTest, ForwardsEveryOutputAndReportsAllButStatusToTheHub) {
  zmq::context_t context;
  IopubRelay relay(context, "secret", 0, MakeLogger("test.iopub"));
  relay.engine_socket().bind("inproc://iopub-engines");
  relay.client_socket().bind("inproc://iopub-clients2");
  relay.ConnectMonitor("inproc://iopub-monitor2");
  zmq::socket_t monitor(context, zmq::socket_type::pull);
  monitor.bind("inproc://iopub-monitor2");
  Reactor reactor(MakeLogger("test.reactor"));
  relay.Attach(reactor);
  protocol::Session session("secret");
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect("inproc://iopub-clients2");
  ASSERT_TRUE(NextMessage(reactor, sub, session).has_value());  // the welcome
  zmq::socket_t engine(context, zmq::socket_type::pub);
  engine.set(zmq::sockopt::linger, 0);
  engine.connect("inproc://iopub-engines");
  json parent = {{"msg_id", "request-1"}};
  auto publish = [&](const std::string& type, json content) {
    protocol::Message m = session.make(type, std::move(content), parent);
    protocol::Send(engine, session.serialize(std::move(m)));
  };
  // A subscription reaches a publisher asynchronously: publish until the first output arrives.
  std::optional<protocol::Message> first;
  for (int n = 0; n < 50 && !first; ++n) {
    publish("stream", {{"name", "stdout"}, {"text", "probe\n"}});
    first = NextMessage(reactor, sub, session, 100ms);
  }
  ASSERT_TRUE(first.has_value()) << "no output reached the subscriber";
  for (int n = 0; n < 20; ++n) reactor.run_once(5ms);
  while (protocol::TryRecv(sub)) {
  }
  while (protocol::TryRecv(monitor)) {
  }

  publish("status", {{"execution_state", "busy"}});
  publish("stream", {{"name", "stdout"}, {"text", "out\n"}});
  publish("status", {{"execution_state", "idle"}});
  std::vector<std::string> forwarded;
  for (int n = 0; n < 3; ++n) {
    std::optional<protocol::Message> m = NextMessage(reactor, sub, session);
    ASSERT_TRUE(m.has_value()) << "output " << n << " not forwarded";
    forwarded.push_back(m->msg_type());
  }
  EXPECT_EQ(forwarded, (std::vector<std::string>{"status", "stream", "status"}));
  std::vector<std::string> reported;
  for (int n = 0; n < 20; ++n) reactor.run_once(5ms);
  while (auto frames = protocol::TryRecv(monitor)) {
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

#include "schedulers/relay.hpp"

#include <gtest/gtest.h>

namespace ipp::schedulers {
namespace {

using namespace std::chrono_literals;

// Runs the relay's reactor until `sub` has a message or 5 s pass; returns it.
std::optional<protocol::Message> NextMessage(Reactor& reactor, zmq::socket_t& sub, protocol::Session& session) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
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

}  // namespace
}  // namespace ipp::schedulers

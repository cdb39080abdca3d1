#include "controller/engine_gateway.hpp"

#include <gtest/gtest.h>

#include <list>
#include <memory>

#include "protocol/gateway.hpp"
#include "protocol/message.hpp"

namespace ipp::controller {
namespace {

namespace gw = protocol::gateway;
using namespace std::chrono_literals;

// The gateway on the test's thread (its Reactor turned by hand), between fake engines (DEALERs
// over TCP to its engine socket) and fake schedulers (a ROUTER bound at each internal endpoint,
// as the controller's are), told by a fake hub which engines are in and which are gone.
class EngineGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (std::string_view channel : gw::kRouted) {
      zmq::socket_t& s = schedulers_.emplace_back(context_, zmq::socket_type::router);
      s.set(zmq::sockopt::linger, 0);
      s.set(zmq::sockopt::router_mandatory, 1);  // a send to a pipe that is gone fails
      s.bind(gw::InternalUrl(channel));
    }
    gateway_ = std::make_unique<EngineGateway>(context_, 200ms, MakeLogger("gateway"), kGenerationSize);
    gateway_->engine_socket().bind("tcp://127.0.0.1:*");
    endpoint_ = gateway_->engine_socket().get(zmq::sockopt::last_endpoint);
    gateway_->Connect();
    gateway_->Attach(reactor_);
    hub_.set(zmq::sockopt::linger, 0);
    hub_.connect(gw::kAllowUrl);
  }
  void TearDown() override {
    for (zmq::socket_t& s : schedulers_) s.close();
    for (zmq::socket_t& s : engines_) s.close();
    hub_.close();
    gateway_.reset();
  }

  void Turn(int n = 5) {
    for (int i = 0; i < n; ++i) reactor_.run_once(5ms);
  }
  void Hub(const std::string& uuid, bool gone = false) {
    protocol::Frames frames;
    frames.emplace_back(uuid.data(), uuid.size());
    if (gone) frames.emplace_back(gw::kGone.data(), gw::kGone.size());
    protocol::Send(hub_, std::move(frames));
  }
  // An engine the hub let in, which says hello on its gateway connection.
  void Arrive(const std::string& uuid) {
    Hub(uuid);
    zmq::socket_t& e = engines_.emplace_back(context_, zmq::socket_type::dealer);
    e.set(zmq::sockopt::linger, 0);
    e.set(zmq::sockopt::routing_id, uuid);
    e.connect(endpoint_);
    e.send(zmq::str_buffer("hello"));
  }
  // Whether the fake MUX scheduler can send to `uuid` now, turning the gateway meanwhile.
  bool Reachable(const std::string& uuid) {
    zmq::socket_t& mux = schedulers_.front();
    try {
      mux.send(zmq::buffer(uuid), zmq::send_flags::sndmore);
      mux.send(zmq::str_buffer("ping"));
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() != EHOSTUNREACH) throw;
      return false;
    }
  }
  bool BecomesReachable(const std::string& uuid, bool want) {
    for (int i = 0; i < 200; ++i) {
      Turn(1);
      if (Reachable(uuid) == want) return true;
    }
    return false;
  }

  static constexpr size_t kGenerationSize = 2;
  zmq::context_t context_;
  std::list<zmq::socket_t> schedulers_, engines_;
  zmq::socket_t hub_{context_, zmq::socket_type::push};
  std::unique_ptr<EngineGateway> gateway_;
  Reactor reactor_{MakeLogger("reactor")};
  std::string endpoint_;
};

TEST_F(EngineGatewayTest, AGenerationsPipesAreFreedOnceAllOfItsEnginesAreGone) {
  // a and b fill the first generation; c opens the second. One at a time: generations fill in
  // the order the hellos come, and three TCP connections may deliver theirs in any order.
  for (const char* uuid : {"a", "b", "c"}) {
    Arrive(uuid);
    ASSERT_TRUE(BecomesReachable(uuid, true)) << uuid;
  }
  // One engine of a generation gone: its pipes stay while the other is in.
  Hub("a", true);
  Turn(20);
  EXPECT_TRUE(Reachable("a"));
  EXPECT_TRUE(Reachable("b"));
  // Both gone: the generation's socket closes and every pipe of it goes.
  Hub("b", true);
  EXPECT_TRUE(BecomesReachable("a", false));
  EXPECT_TRUE(BecomesReachable("b", false));
  EXPECT_TRUE(Reachable("c"));
  // The open generation is not closed when its engines leave: it still takes new ones.
  Hub("c", true);
  Turn(20);
  EXPECT_TRUE(Reachable("c"));
  Arrive("d");
  ASSERT_TRUE(BecomesReachable("d", true));
  // Now full and both gone.
  Hub("d", true);
  EXPECT_TRUE(BecomesReachable("c", false));
  EXPECT_TRUE(BecomesReachable("d", false));
}

TEST_F(EngineGatewayTest, AnEngineThatComesBackBeforeItsGenerationClosesKeepsItsPipes) {
  for (const char* uuid : {"a", "b"}) {  // in this order (see above)
    Arrive(uuid);
    ASSERT_TRUE(BecomesReachable(uuid, true)) << uuid;
  }
  Hub("a", true);
  Turn(20);
  Hub("a");  // let in again (a controller that lost and found it), and it speaks
  engines_.front().send(zmq::str_buffer("hello"));
  Turn(20);
  Hub("b", true);
  Turn(20);
  // a is in again: its generation stays.
  EXPECT_TRUE(Reachable("a"));
  // Its messages reach the schedulers under its uuid.
  engines_.front().send(zmq::str_buffer("mux"), zmq::send_flags::sndmore);
  engines_.front().send(zmq::str_buffer("request"));
  zmq::socket_t& mux = schedulers_.front();
  std::optional<protocol::Frames> got;
  for (int i = 0; i < 200 && !got; ++i) {
    Turn(1);
    got = protocol::TryRecv(mux);
  }
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ(protocol::view((*got)[0]), "a");
  EXPECT_EQ(protocol::view((*got)[1]), "request");
}

}  // namespace
}  // namespace ipp::controller

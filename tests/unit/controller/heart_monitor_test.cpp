#include "controller/heart_monitor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>

#include "protocol/message.hpp"

namespace ipp::controller {
namespace {

using namespace std::chrono_literals;

// The monitor on the test's thread over inproc, with hearts that echo every ping between turns
// of its loop, and a loop kept busy by other work (a hub in a registration storm).
class HeartMonitorTest : public ::testing::Test {
 protected:
  struct FakeHeart {
    FakeHeart(zmq::context_t& context, const std::string& id)
        : id(id), ping(context, zmq::socket_type::sub), pong(context, zmq::socket_type::dealer) {
      ping.set(zmq::sockopt::subscribe, "");
      ping.set(zmq::sockopt::linger, 0);
      pong.set(zmq::sockopt::routing_id, id);
      pong.set(zmq::sockopt::linger, 0);
      ping.connect("inproc://hm-ping");
      pong.connect("inproc://hm-pong");
    }
    std::string id;
    zmq::socket_t ping, pong;
    bool beating = true;
  };

  void SetUp() override {
    monitor_ = std::make_unique<HeartMonitor>(
        context_, kPeriod, kMaxMisses,
        HeartMonitor::Callbacks{[this](const std::vector<std::string>& h) { fresh_.insert(h.begin(), h.end()); },
                                [this](const std::vector<std::string>& h) { stopped_.insert(h.begin(), h.end()); },
                                nullptr},
        MakeLogger("test.heart"));
    monitor_->Bind("inproc://hm-ping", "inproc://hm-pong", [](zmq::socket_t&) {});
    monitor_->Attach(reactor_);
    for (int i = 0; i < kHearts; ++i) hearts_.push_back(std::make_unique<FakeHeart>(context_, "heart-" + std::to_string(i)));
  }

  // Every turn of the loop does `busy` of other work; the hearts answer between turns.
  bool Until(const std::function<bool()>& done, std::chrono::milliseconds busy, std::chrono::milliseconds limit) {
    Reactor::TimerId work = reactor_.every(1ms, [busy] {
      auto end = std::chrono::steady_clock::now() + busy;
      while (std::chrono::steady_clock::now() < end) {
      }
    });
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) break;
      reactor_.run_once(1ms);
      for (auto& h : hearts_) {
        while (auto beat = protocol::TryRecv(h->ping)) {
          if (h->beating) h->pong.send(std::move((*beat)[0]), zmq::send_flags::none);
        }
      }
    }
    reactor_.cancel(work);
    return done();
  }

  static constexpr std::chrono::milliseconds kPeriod{20};
  static constexpr int kMaxMisses = 1;
  // More echoes per period than the monitor reads in one turn of the loop (protocol::kBatch).
  static constexpr int kHearts = 300;
  zmq::context_t context_;
  Reactor reactor_{MakeLogger("test.reactor")};
  std::unique_ptr<HeartMonitor> monitor_;
  std::vector<std::unique_ptr<FakeHeart>> hearts_;
  std::set<std::string> fresh_, stopped_;
};

TEST_F(HeartMonitorTest, ABusyHubKeepsEveryHeartThatAnswers) {
  // The loop is busy for longer than a period on every turn: the echoes pile up unread between
  // beats, and are the hub's lateness, not the hearts'.
  EXPECT_TRUE(Until([&] { return fresh_.size() == kHearts; }, 30ms, 5s)) << fresh_.size() << " hearts seen";
  Until([] { return false; }, 30ms, 50 * kPeriod);
  EXPECT_TRUE(stopped_.empty()) << stopped_.size() << " hearts stopped, e.g. " << *stopped_.begin();
}

TEST_F(HeartMonitorTest, ABusyHubStillStopsASilentHeart) {
  ASSERT_TRUE(Until([&] { return fresh_.size() == kHearts; }, 30ms, 5s)) << fresh_.size() << " hearts seen";
  hearts_[7]->beating = false;
  EXPECT_TRUE(Until([&] { return !stopped_.empty(); }, 30ms, 10s));
  EXPECT_EQ(stopped_, std::set<std::string>{"heart-7"});
}

// Most hearts going silent at once and never answering again, late or not, is not load: they
// (a node's engines, killed together) are dropped after a few periods, long before the patience
// that bounds an overloaded hub's excuses (kOverloadPatience periods).
TEST_F(HeartMonitorTest, HeartsThatAllStopAtOnceAreDroppedSoon) {
  ASSERT_TRUE(Until([&] { return fresh_.size() == kHearts; }, 0ms, 5s)) << fresh_.size() << " hearts seen";
  for (int i = 0; i < 200; ++i) hearts_[i]->beating = false;
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(Until([&] { return stopped_.size() == 200; }, 0ms, 5s)) << stopped_.size();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, HeartMonitor::kOverloadPatience * (kMaxMisses + 1) * kPeriod * 3 / 4)
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  EXPECT_EQ(stopped_.count("heart-250"), 0u);
}

}  // namespace
}  // namespace ipp::controller

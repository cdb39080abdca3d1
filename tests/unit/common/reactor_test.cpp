#include "common/reactor.hpp"

#include <gtest/gtest.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace ipp {
namespace {

using namespace std::chrono_literals;

// Polls `condition` until it holds or `timeout` passes.
bool PollUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class ReactorTest : public ::testing::Test {
 protected:
  zmq::context_t ctx_;
  Reactor reactor_{MakeLogger("test.reactor")};
};

TEST_F(ReactorTest, DispatchesReadableSocketAndSurvivesThrowingHandler) {
  zmq::socket_t pull(ctx_, zmq::socket_type::pull), push(ctx_, zmq::socket_type::push);
  pull.bind("inproc://r");
  push.connect("inproc://r");
  std::vector<std::string> got;
  reactor_.add(pull, [&] {
    zmq::message_t m;
    while (pull.recv(m, zmq::recv_flags::dontwait)) {
      got.emplace_back(m.to_string());
      if (got.back() == "boom") throw std::runtime_error("handler failure");
      if (got.back() == "stop") reactor_.stop();
    }
  });
  push.send(zmq::str_buffer("boom"));
  push.send(zmq::str_buffer("stop"));
  for (int i = 0; i < 100 && !reactor_.stopped(); ++i) reactor_.run_once(std::chrono::milliseconds(50));
  EXPECT_EQ(got, (std::vector<std::string>{"boom", "stop"}));
}

TEST_F(ReactorTest, TimersFireAndCanBeCancelled) {
  int periodic = 0, once = 0, cancelled = 0;
  reactor_.every(std::chrono::milliseconds(5), [&] { ++periodic; });
  reactor_.after(std::chrono::milliseconds(1), [&] { ++once; });
  auto id = reactor_.after(std::chrono::milliseconds(2), [&] { ++cancelled; });
  reactor_.cancel(id);
  reactor_.after(std::chrono::milliseconds(40), [&] { reactor_.stop(); });
  reactor_.run();
  EXPECT_EQ(once, 1);
  EXPECT_EQ(cancelled, 0);
  EXPECT_GE(periodic, 3);
}

TEST_F(ReactorTest, WaitsForATimerWithoutSpinning) {
  // Each wait must last until the timer is due: a wait rounded down to 0 ms polls again and
  // again for the last fraction of a millisecond (hundreds of wake-ups per firing).
  int fired = 0, waits = 0;
  reactor_.every(std::chrono::milliseconds(7), [&] { ++fired; });
  while (fired < 5) {
    reactor_.run_once(std::chrono::milliseconds(1000));
    ++waits;
  }
  EXPECT_LE(waits, 10) << "the reactor woke " << waits << " times for 5 timer firings";
}

// run_shared: the loop waits with the lock released, so another thread can use a socket under
// it; when that thread took the socket's signal and left a message, the wake fd brings the loop
// to it.
TEST_F(ReactorTest, SharedLoopHandlesMessagesAnotherThreadLeftAfterAWake) {
  zmq::socket_t pull(ctx_, zmq::socket_type::pull), push(ctx_, zmq::socket_type::push);
  pull.bind("inproc://shared");
  push.connect("inproc://shared");
  std::mutex lock;
  int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(wake, 0);
  std::vector<std::string> got;  // guarded by `lock`
  std::atomic<int> wakes{0};
  reactor_.add(pull, [&] {
    zmq::message_t m;
    while (pull.recv(m, zmq::recv_flags::dontwait)) {
      got.emplace_back(m.to_string());
      if (got.back() == "stop") reactor_.stop();
    }
  });
  std::thread loop([&] { reactor_.run_shared(lock, wake, [&] { ++wakes; }, nullptr); });
  auto has = [&](const std::string& what) {
    std::lock_guard held(lock);
    return std::find(got.begin(), got.end(), what) != got.end();
  };
  push.send(zmq::str_buffer("a"));
  EXPECT_TRUE(PollUntil([&] { return has("a"); }, 5s));
  {
    std::lock_guard held(lock);
    EXPECT_FALSE(reactor_.dispatch_ready());  // nothing waiting
    push.send(zmq::str_buffer("b"));
    // Wait for "b" to reach the socket, taking in its commands (as a send would): its ZMQ_FD
    // no longer announces it.
    ASSERT_TRUE(PollUntil([&] { return (pull.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0; }, 5s));
  }
  uint64_t one = 1;
  ASSERT_EQ(write(wake, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  EXPECT_TRUE(PollUntil([&] { return has("b"); }, 5s));
  EXPECT_GE(wakes.load(), 1);
  push.send(zmq::str_buffer("stop"));
  loop.join();
  close(wake);
}

// While deferring, the loop leaves the sockets alone, but a wake still brings it to them; when
// deferring ends it handles them again without a wake.
TEST_F(ReactorTest, SharedLoopDefersToAnotherReaderUntilWokenOrDone) {
  zmq::socket_t pull(ctx_, zmq::socket_type::pull), push(ctx_, zmq::socket_type::push);
  pull.bind("inproc://deferred");
  push.connect("inproc://deferred");
  std::mutex lock;
  int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(wake, 0);
  std::atomic<bool> defer{true};
  std::atomic<int> handled{0};
  reactor_.add(pull, [&] {
    zmq::message_t m;
    while (pull.recv(m, zmq::recv_flags::dontwait)) {
      ++handled;
      if (m.to_string() == "stop") reactor_.stop();
    }
  });
  std::thread loop([&] { reactor_.run_shared(lock, wake, [] {}, [&] { return defer.load(); }); });
  push.send(zmq::str_buffer("x"));
  uint64_t one = 1;
  ASSERT_EQ(write(wake, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  EXPECT_TRUE(PollUntil([&] { return handled.load() == 1; }, 5s));
  defer = false;
  push.send(zmq::str_buffer("stop"));
  EXPECT_TRUE(PollUntil([&] { return handled.load() == 2; }, 5s));
  loop.join();
  close(wake);
}

}  // namespace
}  // namespace ipp

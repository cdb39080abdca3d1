#include "common/reactor.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "common/stop_flag.hpp"

namespace ipp {
namespace {

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

TEST_F(ReactorTest, DispatchesAReadableFileDescriptor) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string got;
  reactor_.add_fd(fds[0], [&] {
    char c;
    while (got.size() < 2 && read(fds[0], &c, 1) == 1) got += c;
  });
  ASSERT_EQ(write(fds[1], "ab", 2), 2);
  for (int i = 0; i < 100 && got.size() < 2; ++i) reactor_.run_once(std::chrono::milliseconds(50));
  EXPECT_EQ(got, "ab");
  close(fds[0]);
  close(fds[1]);
}

TEST_F(ReactorTest, AStopFlagRaisedElsewhereWakesEveryReactorWatchingIt) {
  // No timer anywhere: only the flag's descriptor can end these waits early.
  StopFlag flag;
  Reactor other{MakeLogger("test.reactor2")};
  flag.watch(reactor_, [this] { reactor_.stop(); });
  flag.watch(other, [&] { other.stop(); });
  std::thread second([&] { other.run(); });
  auto t0 = std::chrono::steady_clock::now();
  std::thread raiser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    flag.raise();
  });
  reactor_.run();  // polls for up to a second at a time
  second.join();
  raiser.join();
  EXPECT_TRUE(flag.raised());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
}

class SwallowedSignalTest : public ReactorTest {
 protected:
  // Two socket pairs on the reactor. At the first message to `other`, its handler sends "x" to
  // `mine` and then uses `mine` itself (a send), which may take in the signal of "x" and leave
  // it waiting with the descriptor quiet; with `note` it says so (NoteUse). `pokes` messages go
  // to `other`, 5 ms apart, from 20 ms on. Returns how long "x" waited to be handled (zero: not
  // within 3 s).
  std::chrono::steady_clock::duration LatencyOfX(bool note, int pokes) {
    zmq::socket_t mine(ctx_, zmq::socket_type::pair), peer(ctx_, zmq::socket_type::pair);
    zmq::socket_t other(ctx_, zmq::socket_type::pair), other_peer(ctx_, zmq::socket_type::pair);
    mine.bind("inproc://mine");
    peer.connect("inproc://mine");
    other.bind("inproc://other");
    other_peer.connect("inproc://other");
    std::chrono::steady_clock::time_point sent;
    std::chrono::steady_clock::duration latency{};
    bool swallowed = false;
    reactor_.add(mine, [&] {
      zmq::message_t m;
      while (mine.recv(m, zmq::recv_flags::dontwait)) {
        if (m.to_string() != "x") continue;
        latency = std::chrono::steady_clock::now() - sent;
        reactor_.stop();
      }
    });
    reactor_.add(other, [&] {
      zmq::message_t m;
      while (other.recv(m, zmq::recv_flags::dontwait)) {
      }
      if (swallowed) return;
      swallowed = true;
      sent = std::chrono::steady_clock::now();
      peer.send(zmq::str_buffer("x"));
      // libzmq takes in a socket's pending signals on a send at most once a millisecond.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      mine.send(zmq::str_buffer("ping"));
      if (note) Reactor::NoteUse(mine.handle());
    });
    std::atomic<bool> done{false};
    std::thread poke([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      for (int i = 0; i < pokes && !done; ++i) {
        other_peer.send(zmq::str_buffer("busy"));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    reactor_.after(std::chrono::milliseconds(3000), [&] { reactor_.stop(); });
    reactor_.run();
    done = true;
    poke.join();
    return latency;
  }
};

// With NoteUse (protocol::Send calls it) the loop hands the message over at once, not at its
// next timeout.
TEST_F(SwallowedSignalTest, AMessageWhoseSignalAHandlerTookInIsHandledAtOnce) {
  auto latency = LatencyOfX(/*note=*/true, /*pokes=*/1);
  ASSERT_GT(latency.count(), 0) << "the message was never handled";
  EXPECT_LT(latency, std::chrono::milliseconds(300));
}

// Without NoteUse, while another socket keeps the loop busy (no wait ever times out): the loop
// asks every socket at least every kAskAllEvery, so the message still gets through.
TEST_F(SwallowedSignalTest, AMessageWhoseSignalWentUnnotedWaitsAtMostAFewRounds) {
  auto latency = LatencyOfX(/*note=*/false, /*pokes=*/300);
  ASSERT_GT(latency.count(), 0) << "the message was never handled";
  EXPECT_LT(latency, Reactor::kAskAllEvery * 5);
}

// A socket whose receive found nothing is not asked again before the wait (NoteDrained, as
// protocol::TryRecv says): its descriptor alone must wake the loop for the next message, well
// before the wait's timeout (1 s) would make the loop ask every socket.
TEST_F(ReactorTest, ADrainedSocketsNextMessageWakesTheLoopAtOnce) {
  using Clock = std::chrono::steady_clock;
  zmq::socket_t mine(ctx_, zmq::socket_type::pair), peer(ctx_, zmq::socket_type::pair);
  mine.bind("inproc://drained");
  peer.connect("inproc://drained");
  std::atomic<int> handled{0};
  std::atomic<Clock::rep> sent{0};
  std::vector<Clock::duration> latencies;
  reactor_.add(mine, [&] {
    zmq::message_t m;
    while (mine.recv(m, zmq::recv_flags::dontwait)) {
      latencies.push_back(Clock::now().time_since_epoch() - Clock::duration(sent.load()));
      if (++handled == 3) reactor_.stop();
    }
    Reactor::NoteDrained(mine.handle());
  });
  std::thread sender([&] {
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the loop is waiting again
      sent = Clock::now().time_since_epoch().count();
      peer.send(zmq::str_buffer("x"));
      while (handled <= i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  reactor_.after(std::chrono::milliseconds(10000), [&] { reactor_.stop(); });
  reactor_.run();
  sender.join();
  ASSERT_EQ(handled.load(), 3);
  for (auto latency : latencies) EXPECT_LT(latency, std::chrono::milliseconds(300));
}

// A descriptor closed while registered is dropped with an error instead of making every wait
// return at once.
TEST_F(ReactorTest, ADescriptorClosedWhileRegisteredIsDropped) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  int calls = 0;
  reactor_.add_fd(fds[0], [&] { ++calls; });
  close(fds[0]);
  reactor_.run_once(std::chrono::milliseconds(0));  // sees it closed
  auto t0 = std::chrono::steady_clock::now();
  reactor_.run_once(std::chrono::milliseconds(50));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40)) << "the wait returned at once";
  EXPECT_EQ(calls, 0);
  close(fds[1]);
}

}  // namespace
}  // namespace ipp

// PendingDelivery: sends to ROUTER peers that may not be connected yet.
//
// An engine that registered (or was restored after a controller restart) may not have
// (re)connected its sockets when the first message for it arrives. A ROUTER would drop that
// message silently and its client would wait forever; with ZMQ_ROUTER_MANDATORY the send fails
// instead, and this class keeps the message — in order per peer — and retries until a deadline,
// after which it hands the message back as undeliverable.
//
// Threads: used only on the thread that runs the reactor it is attached to (the socket's).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "common/reactor.hpp"
#include "protocol/message.hpp"

namespace ipp::schedulers {

class PendingDelivery {
 public:
  using Clock = std::chrono::steady_clock;
  using Expired = std::function<void(protocol::Frames&&)>;

  // How often what is held is retried. An engine connects within milliseconds of registering,
  // so a short period keeps its first messages' delay small; the timer runs only while
  // something is held (an idle controller is not woken 50 times a second).
  static constexpr std::chrono::milliseconds kRetryPeriod{20};

  // "socket" must be a ROUTER with router_mandatory set, and outlive this object.
  PendingDelivery(zmq::socket_t& socket, std::chrono::milliseconds patience)
      : socket_(socket), patience_(patience) {}

  // Retries on `reactor` (the socket's) every kRetryPeriod while something is held; what has
  // waited longer than `patience` goes to `expired`. Call once, before the first Send().
  void Attach(Reactor& reactor, Expired expired);
  // Sends frames (frames[0] is the peer's routing id) now, or keeps them to retry.
  void Send(protocol::Frames&& frames);

 private:
  void Retry(std::vector<protocol::Frames>* expired);
  void ArmRetry();

  struct Held {
    protocol::Frames frames;
    Clock::time_point deadline;
  };
  bool TrySend(protocol::Frames& frames);

  zmq::socket_t& socket_;
  std::chrono::milliseconds patience_;
  std::unordered_map<std::string, std::deque<Held>> held_;  // by peer id
  Reactor* reactor_ = nullptr;
  Expired expired_;
  bool retry_armed_ = false;
};

}  // namespace ipp::schedulers

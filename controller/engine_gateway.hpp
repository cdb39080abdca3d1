// EngineGateway: one connection per engine for all of its channels except registration
// (protocol/gateway.hpp), so that an engine costs the controller two descriptors instead of nine.
//
// For each engine that says hello, the gateway's inside socket connects once to each of the
// controller's internal endpoints for the routed channels (MUX, task, broadcast, control,
// heartbeat pong), with the engine's uuid as its routing id: the schedulers and the heart monitor
// see the engine as if it had connected to them itself, and route to it by the same uuid. Those
// inproc pipes hold no descriptor. IOPub goes out through one PUB for all engines, and each ping
// of the heart monitor is sent to every engine the gateway knows.
//
// Only engines the hub let in through the gateway (gateway::kAllowUrl) get channels: libzmq cannot
// close one of several inproc pipes to the same endpoint, so an engine's pipes stay after it
// leaves (~10 KiB each, reused if it comes back), and the hub lets at most gateway::kMaxEngines
// through in one controller's life (PROTOCOL.md). The gateway runs on the thread of the Reactor it
// is attached to, which owns its sockets.
#pragma once

#include <chrono>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "schedulers/pending_delivery.hpp"

namespace ipp::controller {

class EngineGateway {
 public:
  // `patience`: how long a message for an engine whose connection is down waits for it.
  EngineGateway(zmq::context_t& context, std::chrono::milliseconds patience, Logger log);
  zmq::socket_t& engine_socket() { return engines_; }  // bound by the controller
  // Connects to the internal endpoints (gateway::InternalUrl), which must be bound.
  void Connect();
  void Attach(Reactor& reactor);

 private:
  void FromEngines();
  void OnAllow();
  void FromInside();
  void OnPing();
  // Opens `uuid`'s channels unless they are; false when the hub did not let it in.
  bool Open(const std::string& uuid);

  struct Peer {
    bool pinged = true;  // false after a ping found its connection gone, until it speaks again
  };

  Logger log_;
  zmq::socket_t engines_;  // ROUTER: the engines' connections
  zmq::socket_t inside_;   // ROUTER: a pipe per engine and routed channel
  zmq::socket_t iopub_;    // PUB to the IOPub relay
  zmq::socket_t ping_;     // SUB to the heart monitor's pings
  zmq::socket_t allow_;    // PULL: uuids the hub let in
  schedulers::PendingDelivery to_engines_;
  std::unordered_map<std::string, Peer> peers_;  // by uuid
  std::unordered_set<std::string> allowed_;
};

}  // namespace ipp::controller

// EngineGateway: one connection per engine for all of its channels except registration
// (protocol/gateway.hpp), so that an engine costs the controller two descriptors instead of nine.
//
// For each engine that says hello, the gateway connects an inside socket once to each of the
// controller's internal endpoints for the routed channels (MUX, task, broadcast, control,
// heartbeat pong), with the engine's uuid as its routing id: the schedulers and the heart monitor
// see the engine as if it had connected to them itself, and route to it by the same uuid. Those
// inproc pipes hold no descriptor. IOPub goes out through one PUB for all engines, and each ping
// of the heart monitor is sent to every engine the gateway knows.
//
// Only engines the hub let in through the gateway (gateway::kAllowUrl) get channels. libzmq closes
// a socket's inproc pipes to one endpoint only all at once, so engines share inside sockets in
// generations of kGenerationSize: a generation's socket is closed, freeing its engines' pipes, once
// it is full and the hub has said each of its engines is gone. Until then a departed engine's
// pipes stay (and serve it again if the same uuid comes back). The gateway runs on the thread of
// the Reactor it is attached to, which owns its sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "protocol/gateway.hpp"
#include "schedulers/pending_delivery.hpp"

namespace ipp::controller {

class EngineGateway {
 public:
  // `patience`: how long a message for an engine whose connection is down waits for it.
  // `generation_size`: engines per inside socket (gateway::kGenerationSize; smaller in tests).
  EngineGateway(zmq::context_t& context, std::chrono::milliseconds patience, Logger log,
                size_t generation_size = protocol::gateway::kGenerationSize);
  zmq::socket_t& engine_socket() { return engines_; }  // bound by the controller
  // Connects to the internal endpoints (gateway::InternalUrl), which must be bound.
  void Connect();
  void Attach(Reactor& reactor);

 private:
  void FromEngines();
  void OnAllow();
  void OnPing();
  void FromInside(zmq::socket_t& inside);
  // Opens `uuid`'s channels unless they are; null when the hub did not let it in. Else the
  // socket its channels are on.
  zmq::socket_t* Open(const std::string& uuid);
  // The hub said `uuid` is gone: its generation is closed once it is full and all its engines are.
  void Gone(const std::string& uuid);

  struct Generation {
    zmq::socket_t inside;  // ROUTER: a pipe per engine and routed channel
    size_t opened = 0;     // engines whose pipes it has (at most kGenerationSize)
    size_t live = 0;       // of those, the ones the hub has not said are gone
  };
  struct Peer {
    uint64_t generation = 0;
    bool live = true;
    bool pinged = true;  // false after a ping found its connection gone, until it speaks again
  };
  void CloseIfDone(uint64_t number);

  Logger log_;
  zmq::context_t& context_;
  size_t generation_size_;
  Reactor* reactor_ = nullptr;
  zmq::socket_t engines_;  // ROUTER: the engines' connections
  zmq::socket_t iopub_;    // PUB to the IOPub relay
  zmq::socket_t ping_;     // SUB to the heart monitor's pings
  zmq::socket_t allow_;    // PULL: uuids the hub let in, or said are gone
  schedulers::PendingDelivery to_engines_;
  std::map<uint64_t, Generation> generations_;  // by number; the last one takes new engines
  uint64_t next_generation_ = 0;
  std::unordered_map<std::string, Peer> peers_;  // by uuid
  std::unordered_set<std::string> allowed_;
};

}  // namespace ipp::controller

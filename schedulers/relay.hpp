// Relays: the direct (MUX) and control queues, ROUTER to ROUTER, and the IOPub forwarder,
// SUB to PUB — ipyparallel's MonitoredQueue devices, with every message's signature checked
// before it passes (the stock devices check nothing).
//
// Each relay reports what passes to the hub's monitor channel (protocol/monitor.hpp). A request
// is reported after it has been forwarded, so that the hub's work does not stand in its way; a
// reply or output before, so that a client that holds it finds it in any query to the hub
// (which reads the channel to the end before it answers). A relay runs on the thread of the
// Reactor it is attached to and owns its sockets.
#pragma once

#include <optional>
#include <string>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "protocol/monitor.hpp"
#include "protocol/session.hpp"
#include "schedulers/pending_delivery.hpp"
#include "schedulers/request_types.hpp"

namespace ipp::schedulers {

class RouterRelay {
 public:
  // in_topic/out_topic: monitor topics for client->engine and engine->client traffic
  // (kMuxRequest/kMuxReply for the MUX; nullopt: not reported, as for control).
  // `patience`: how long a message waits for its engine to connect before the client gets an
  // EngineError reply. `carries`: the requests it forwards (others get an InvalidRequest
  // reply); nullopt: every request.
  RouterRelay(zmq::context_t& context, const std::string& key, std::optional<protocol::monitor::Topic> in_topic,
              std::optional<protocol::monitor::Topic> out_topic, std::chrono::milliseconds patience, Logger log,
              std::optional<RequestChannel> carries = std::nullopt);
  zmq::socket_t& client_socket() { return client_; }
  zmq::socket_t& engine_socket() { return engine_; }
  void ConnectMonitor(const std::string& monitor_url) { monitor_.connect(monitor_url); }
  // Passes the content of each abort_request on its way to an engine to `url` (a PULL the task
  // scheduler binds): the tasks it still holds are aborted there, not only on the engines.
  void TapAborts(const std::string& url);
  void Attach(Reactor& reactor);

 private:
  void TapAbort(const protocol::RawMessage& raw);
  // Moves one message from `from` to `to`, swapping the first two routing ids.
  // Returns false when `from` had nothing to read.
  bool Forward(zmq::socket_t& from, zmq::socket_t& to, std::optional<protocol::monitor::Topic> topic, bool to_engine);
  void ReplyUnroutable(protocol::RawMessage& raw);
  // Whether `raw` (from a client) is a request this relay carries; answers it if not.
  bool Carried(protocol::RawMessage& raw);

  protocol::Session session_;
  std::optional<protocol::monitor::Topic> in_topic_, out_topic_;
  Logger log_;
  std::optional<RequestChannel> carries_;
  zmq::socket_t client_, engine_, monitor_, abort_tap_;
  bool tap_aborts_ = false;
  PendingDelivery to_engines_;
};

// The client side is an XPUB: on every subscription it publishes a signed `iopub_welcome`
// (empty parent header, content {"subscription": topic}; Jupyter's JEP 65). PUB/SUB drops what
// is published before a subscription has reached the publisher, so a client that sent a request
// right after connecting could miss its output and its `idle`; a client that has seen any
// message on its SUB socket knows its subscription is in place.
class IopubRelay {
 public:
  // subscriber_backlog: messages queued for one subscriber before it misses some (0: no limit).
  IopubRelay(zmq::context_t& context, const std::string& key, int subscriber_backlog, Logger log);
  zmq::socket_t& engine_socket() { return engine_; }  // SUB, subscribed to everything
  zmq::socket_t& client_socket() { return client_; }  // XPUB
  void ConnectMonitor(const std::string& monitor_url) { monitor_.connect(monitor_url); }
  void Attach(Reactor& reactor);

 private:
  void OnSubscriptions();
  static bool IsStatus(const protocol::RawMessage& raw);

  protocol::Session session_;
  Logger log_;
  zmq::socket_t engine_, client_, monitor_;
};

}  // namespace ipp::schedulers

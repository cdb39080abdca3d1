// GatewayLink: an engine's one connection to the controller's gateway (protocol/gateway.hpp),
// standing in for the controller's channel sockets. The engine connects its sockets to Url(channel)
// as it would to the controller's ports; the link forwards between them and the connection.
//
// Its sockets belong to the thread that runs the Reactor it is attached to (the engine's control
// thread), and after that thread ends, to the one that joined it (for Drain).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "protocol/message.hpp"
#include "protocol/no_answer.hpp"
#include "ipp/status.hpp"

namespace ipp::engine {

// Options of every socket of an engine, its link's too: never drop, never block, and a second
// to deliver what is queued at exit.
void ConfigureEngineSocket(zmq::socket_t& socket);

class GatewayLink {
 public:
  GatewayLink(zmq::context_t& context, Logger log);

  // Binds the inproc endpoints, connects to the gateway at `url` as `uuid` and says hello.
  Status Open(const std::string& url, const std::string& uuid, const std::optional<std::string>& curve_serverkey);
  // Where the engine connects its socket for `channel` (mux, task, broadcast, control, hb_pong,
  // iopub, hb_ping).
  static std::string Url(std::string_view channel);

  void Attach(Reactor& reactor);
  // Tells the gateway again that this engine is there (Open says it first).
  void Hello();
  // Forwards what the engine's sockets still hold to the gateway: its last replies at exit.
  void Drain();

 private:
  void FromGateway();
  // Forwards up to `most` messages from `socket` (the engine's side of `channel`) to the gateway.
  void ToGateway(zmq::socket_t& socket, std::string_view channel, int most = protocol::kBatch);

  zmq::context_t& context_;
  Logger log_;
  zmq::socket_t gateway_;
  // Each (re)connection to the gateway: hello again (a restarted controller's gateway knows no
  // engine until it hears from it, and the heartbeat only answers pings).
  std::optional<protocol::ConnectionWatch> watch_;
  size_t handshakes_seen_ = 0;
  std::map<std::string, zmq::socket_t, std::less<>> routed_;  // by channel
  zmq::socket_t iopub_;  // SUB: the engine's PUBs connect to it
  zmq::socket_t ping_;   // PUB: the engine's heartbeat SUB connects to it
};

}  // namespace ipp::engine

// Why a controller did not answer: the messages a client or engine gives when its first request
// (connection_request, registration_request) gets no reply in time. A socket monitor tells
// "nothing is listening at that address" (controller gone, stale file) apart from "it is there
// but ignores us" (a wrong key or signature_scheme: the controller drops what it cannot verify,
// and must not answer an unverified message).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include <zmq.hpp>

namespace ipp::protocol {

// Watches one socket's connections through a ZMQ socket monitor. Create it before the socket
// connects. Not thread-safe: the thread that owns the socket owns this; the socket and its
// context must outlive it (the destructor stops the monitor).
class ConnectionWatch {
 public:
  ConnectionWatch(zmq::context_t& context, zmq::socket_ref socket);
  ~ConnectionWatch();
  ConnectionWatch(const ConnectionWatch&) = delete;
  ConnectionWatch& operator=(const ConnectionWatch&) = delete;

  // Whether a TCP (or ipc) connection was made, and whether a ZeroMQ peer completed the handshake
  // on it; both read the events that arrived so far.
  bool connected();
  bool handshaken();
  // How many handshakes completed so far (a reconnection makes another).
  size_t handshakes();
  // Readable when an event arrived, for a Reactor on the owning thread.
  zmq::socket_t& events() { return events_; }

 private:
  void Drain();

  zmq::socket_ref socket_;
  zmq::socket_t events_;
  bool active_ = false, connected_ = false;
  size_t handshakes_ = 0;
};

// "no answer from the controller at URL within N ms: <why>", where <why> says what the watch saw
// and what it likely means for `connection_file` (may be empty when the connection info came from
// elsewhere, e.g. an environment variable), and, when ipcluster recorded the controller's process
// beside that file, whether that process is still running.
std::string NoAnswerMessage(const std::string& url, std::chrono::milliseconds waited, ConnectionWatch& watch,
                            const std::filesystem::path& connection_file);

}  // namespace ipp::protocol

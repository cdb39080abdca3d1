// FakePeer: a client or engine played by a test, as one ZeroMQ socket with its own Session, for
// unit tests that drive a controller object over inproc:// on the test's thread (no processes).
//
// The object under test is attached to `reactor`; Next() turns that reactor until this peer has
// a message, so the test and the object share one thread and no sleeps are needed.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "common/reactor.hpp"
#include "protocol/session.hpp"

namespace ipp::testutil {

class FakePeer {
 public:
  // `routing_id`: the socket's identity (an engine's uuid); empty: ZeroMQ picks one.
  FakePeer(zmq::context_t& context, zmq::socket_type type, const std::string& key,
           const std::string& routing_id = "")
      : socket_(context, type), session_(key) {
    socket_.set(zmq::sockopt::linger, 0);
    if (!routing_id.empty()) socket_.set(zmq::sockopt::routing_id, routing_id);
    if (type == zmq::socket_type::sub) socket_.set(zmq::sockopt::subscribe, "");
  }
  zmq::socket_t& socket() { return socket_; }
  protocol::Session& session() { return session_; }

  // Signs and sends `message` (with its identities); returns its header.
  nlohmann::json Send(protocol::Message message) {
    nlohmann::json header = message.header;
    protocol::Send(socket_, session_.serialize(std::move(message)));
    return header;
  }
  // A new signed message, sent.
  nlohmann::json Send(std::string_view msg_type, nlohmann::json content = nlohmann::json::object(),
                      nlohmann::json metadata = nlohmann::json::object()) {
    return Send(session_.make(msg_type, std::move(content), nlohmann::json::object(), std::move(metadata)));
  }
  // A reply to `request` with the same routing ids, sent.
  void Reply(const protocol::Message& request, std::string_view msg_type, nlohmann::json content,
             nlohmann::json metadata = nlohmann::json::object()) {
    protocol::Message reply = session_.make(msg_type, std::move(content), request.header, std::move(metadata));
    for (const auto& id : request.identities) reply.identities.emplace_back(id.data(), id.size());
    Send(std::move(reply));
  }

  // Turns `reactor` until a whole message arrives here (nullopt after `timeout`); checks its
  // signature.
  std::optional<protocol::Message> Next(Reactor& reactor,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::optional<protocol::Frames> frames = NextFrames(reactor, timeout);
    if (!frames) return std::nullopt;
    Result<protocol::Message> m = session_.parse(std::move(*frames));
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok()) return std::nullopt;
    return std::move(m).value();
  }
  // The same, unparsed (for the monitor channel's topic frames).
  std::optional<protocol::Frames> NextFrames(Reactor& reactor,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    do {
      if (auto frames = protocol::TryRecv(socket_)) return frames;
      reactor.run_once(std::chrono::milliseconds(1));
    } while (std::chrono::steady_clock::now() < deadline);
    return protocol::TryRecv(socket_);
  }

 private:
  zmq::socket_t socket_;
  protocol::Session session_;
};

}  // namespace ipp::testutil

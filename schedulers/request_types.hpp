// Which requests each client-facing scheduler channel carries to engines, and the reply to a
// request it does not carry.
//
// A channel forwards only requests that engines answer, so that every request it takes gets a
// reply: a load-balanced task holds a slot of its engine (the high-water mark) until the
// engine's reply, and a request no engine answers — an unknown msg_type, or a db_request sent
// to the wrong port — would hold that slot forever and stall the queue. What a channel does
// not carry is answered at once with an error and never reaches an engine.
#pragma once

#include <string>
#include <string_view>

#include "protocol/message.hpp"
#include "protocol/session.hpp"

namespace ipp::schedulers {

enum class RequestChannel {
  kTask,       // load-balanced: apply_request, execute_request
  kBroadcast,  // the same, to every target
  kMux,        // direct: those and the other shell requests of ipykernel and our engines
};

bool Carries(RequestChannel channel, std::string_view msg_type);

// The msg_type of the reply to `request_type` that the scheduler makes up for an engine that
// never answers (an abort, an engine not connected): x_request -> x_reply, else apply_reply.
std::string ReplyType(std::string_view request_type);

// The error reply to a signed request (`raw`, as the channel's client ROUTER received it: the
// sender's routing id first) that `channel` does not carry: an apply_reply with status error
// and ename InvalidRequest, its parent the request's header. An apply_reply because it is the
// only reply type a stock client handles on every one of these channels (any other type makes
// its reply handler raise). Routed to the sender.
protocol::Frames Refusal(protocol::Session& session, RequestChannel channel, protocol::RawMessage& raw,
                         std::string_view msg_type);

}  // namespace ipp::schedulers

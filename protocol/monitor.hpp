// The controller's internal monitor channel: every relay and scheduler PUSHes a copy of what
// passes through it to the hub's PULL, which keeps the task records (ipyparallel's monitored
// queues). Producers and the hub both encode and decode it here, and nowhere else.
//
// Each report is one topic frame, then:
//   in         [in, engine, client, <msg>]            a direct request on its way to an engine
//   out        [out, client, engine, <msg>]           a direct reply on its way to a client
//   intask     [intask, client, <msg>]                a load-balanced request
//   outtask    [outtask, engine | "", client, <msg>]  its result ("": failed before any engine)
//   tracktask  [tracktask, msg_id, engine]            the engine a task was sent to
//   waiting    [waiting, msg_id, reason]              a task no connected engine can run waits
//                                                     for "reason" ("": no longer, yet queued)
//   inbcast    [inbcast, client..., <msg>]            a broadcast request
//   outbcast   [outbcast, (engine,) client..., <msg>] a broadcast reply (one engine or coalesced)
//   iopub      [iopub, topic..., <msg>]               engine output (not busy/idle status)
// <msg> is a whole wire message from its delimiter on, signed by its sender. The producers
// verify it before reporting it, so the hub does not verify it again; the channel is inproc.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/message.hpp"

namespace ipp::protocol::monitor {

enum class Topic {
  kMuxRequest,
  kMuxReply,
  kTaskRequest,
  kTaskReply,
  kTaskDestination,
  kTaskWaiting,
  kBroadcastRequest,
  kBroadcastReply,
  kIopub,
};

// The topic's first frame on the channel ("in", "outtask", ...).
std::string_view TopicName(Topic topic);

// The routing id of the hub's socket to the task scheduler's client side (resubmissions). A
// request from it that carries a second routing id is a client's, restored from the task
// journal: the scheduler takes it as that client's own, and answers that client.
inline constexpr const char* kHubRoutingId = "ipp-hub";

// --- Encoding (the producers) ---
// [topic] + a shared copy (no payload copy) of `frames`: a wire message with its routing ids,
// in the layout the topic's line above gives.
Frames Report(Topic topic, const Frames& frames);
// [topic] + `ids` + `message`, a message serialized without routing ids (moved in).
Frames Report(Topic topic, std::initializer_list<std::string_view> ids, Frames&& message);
Frames TaskDestination(std::string_view msg_id, std::string_view engine);
// `reason` as TaskNeeds::Reason() words it ("an engine with function pi.sample"); "" to say the
// task no longer waits for it (an engine that can run it is connected now).
Frames TaskWaiting(std::string_view msg_id, std::string_view reason);
// Sends Report(topic, frames) on `monitor` now.
void Send(zmq::socket_ref monitor, Topic topic, const Frames& frames);

// --- Decoding (the hub) ---
struct Event {
  Topic topic;
  // The engine's routing id where the topic's layout names one (in, out, outtask, tracktask).
  std::string engine;
  std::string msg_id;                 // tracktask and waiting only
  std::string reason;                 // waiting only
  std::optional<RawMessage> message;  // every topic but tracktask and waiting
};
// Fails with a Status saying what is wrong (unknown topic, missing frames, no message).
Result<Event> Decode(Frames&& frames);

}  // namespace ipp::protocol::monitor

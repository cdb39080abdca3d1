#include "protocol/monitor.hpp"

#include <array>
#include <utility>

namespace ipp::protocol::monitor {

namespace {

constexpr std::array<std::pair<Topic, std::string_view>, 9> kTopics{{
    {Topic::kMuxRequest, "in"},
    {Topic::kMuxReply, "out"},
    {Topic::kTaskRequest, "intask"},
    {Topic::kTaskReply, "outtask"},
    {Topic::kTaskDestination, "tracktask"},
    {Topic::kTaskWaiting, "waiting"},
    {Topic::kBroadcastRequest, "inbcast"},
    {Topic::kBroadcastReply, "outbcast"},
    {Topic::kIopub, "iopub"},
}};

std::optional<Topic> ParseTopic(std::string_view name) {
  for (const auto& [topic, text] : kTopics) {
    if (text == name) return topic;
  }
  return std::nullopt;
}

zmq::message_t Frame(std::string_view text) { return zmq::message_t(text.data(), text.size()); }

}  // namespace

std::string_view TopicName(Topic topic) {
  for (const auto& [t, text] : kTopics) {
    if (t == topic) return text;
  }
  return "?";
}

Frames Report(Topic topic, const Frames& frames) {
  Frames out;
  out.reserve(frames.size() + 1);
  out.push_back(Frame(TopicName(topic)));
  for (zmq::message_t& f : ShareFrames(frames)) out.push_back(std::move(f));
  return out;
}

Frames Report(Topic topic, std::initializer_list<std::string_view> ids, Frames&& message) {
  Frames out;
  out.reserve(1 + ids.size() + message.size());
  out.push_back(Frame(TopicName(topic)));
  for (std::string_view id : ids) out.push_back(Frame(id));
  for (zmq::message_t& f : message) out.push_back(std::move(f));
  return out;
}

namespace {
// [topic, msg_id, text]: the two reports about a task that carry no message.
Frames AboutTask(Topic topic, std::string_view msg_id, std::string_view text) {
  Frames out;
  out.push_back(Frame(TopicName(topic)));
  out.push_back(Frame(msg_id));
  out.push_back(Frame(text));
  return out;
}
}  // namespace

Frames TaskDestination(std::string_view msg_id, std::string_view engine) {
  return AboutTask(Topic::kTaskDestination, msg_id, engine);
}

Frames TaskWaiting(std::string_view msg_id, std::string_view reason) {
  return AboutTask(Topic::kTaskWaiting, msg_id, reason);
}

void Send(zmq::socket_ref monitor, Topic topic, const Frames& frames) {
  protocol::Send(monitor, Report(topic, frames));
}

Result<Event> Decode(Frames&& frames) {
  if (frames.empty()) return Status::ProtocolError("empty monitor report");
  std::string_view name = view(frames[0]);
  std::optional<Topic> topic = ParseTopic(name);
  if (!topic) return Status::ProtocolError("unknown monitor topic '" + PeerName(name) + "'");
  Event event{*topic, {}, {}, {}, std::nullopt};
  if (*topic == Topic::kTaskDestination || *topic == Topic::kTaskWaiting) {
    if (frames.size() != 3) {
      return Status::ProtocolError(std::string(name) + " report has " + std::to_string(frames.size()) +
                                   " frames, 3 expected");
    }
    event.msg_id = view(frames[1]);
    (*topic == Topic::kTaskWaiting ? event.reason : event.engine) = view(frames[2]);
    return event;
  }
  frames.erase(frames.begin());
  Result<RawMessage> raw = RawMessage::FromFrames(std::move(frames));
  if (!raw.ok()) return Status::ProtocolError(std::string(name) + " report: " + raw.status().message());
  // Where the layout names the engine: the first routing id, or for a direct reply the second.
  size_t engine_at = SIZE_MAX;
  if (*topic == Topic::kMuxRequest || *topic == Topic::kTaskReply) engine_at = 0;
  if (*topic == Topic::kMuxReply) engine_at = 1;
  if (engine_at != SIZE_MAX) {
    if (raw->identity_count() < 2) {
      return Status::ProtocolError(std::string(name) + " report has " + std::to_string(raw->identity_count()) +
                                   " routing ids, 2 expected");
    }
    event.engine = raw->identity(engine_at);
  }
  event.message = std::move(raw).value();
  return event;
}

}  // namespace ipp::protocol::monitor

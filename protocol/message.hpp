// The Jupyter wire message as ipyparallel 7.1 sends it (jupyter_client session.py):
//
//   [routing ids..., "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]
//
// RawMessage keeps the frames exactly as received, split at the delimiter and not parsed, so the
// schedulers can route and forward them without copying payloads. Message is the parsed form.
// Outside protocol/, code reads frames only through these types (and the monitor channel's
// codec, protocol/monitor.hpp). Routing code may add or drop routing-id frames in front of a
// message it forwards; the frames from the delimiter on are never edited outside protocol/.
#pragma once

#include <string>
#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "ipp/engine_plugin.hpp"
#include "ipp/status.hpp"

namespace ipp::protocol {

inline constexpr std::string_view kDelimiter = "<IDS|MSG>";
using Frames = std::vector<zmq::message_t>;
using json = nlohmann::json;

inline std::string_view view(const zmq::message_t& frame) {
  return {static_cast<const char*>(frame.data()), frame.size()};
}

// object[key] when it is a string, else "" (absent, or of another type: peers send what they send).
std::string StringField(const json& object, const char* key);

// A routing id for logs: as it is when printable ASCII (the stock client's session id), else
// "0x" and hex (ZeroMQ's generated ids start with a zero byte).
std::string PeerName(std::string_view identity);

// Whether `object` has `key` set to true: absent, or any other type, is false (json::value would
// throw on a peer's non-boolean).
inline bool FlagSet(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

// Parsed wire message. Buffers stay zmq messages end to end (zero copy).
struct Message {
  Frames identities;
  json header = json::object();
  json parent_header = json::object();
  json metadata = json::object();
  json content = json::object();
  Frames buffers;

  // Valid for any Message produced by Session::parse (the header is checked there).
  const std::string& msg_type() const { return header["msg_type"].get_ref<const std::string&>(); }
  const std::string& msg_id() const { return header["msg_id"].get_ref<const std::string&>(); }
  // The parent's msg_id, or "" when there is no parent.
  std::string parent_id() const;
};

class RawMessage {
 public:
  enum Part { kSignature = 0, kHeader, kParent, kMetadata, kContent };
  static constexpr size_t kJsonParts = 4;

  // Splits at the delimiter. Fails on a missing delimiter or fewer than five frames after it.
  static Result<RawMessage> FromFrames(Frames&& frames);

  size_t identity_count() const { return delimiter_; }
  std::string_view identity(size_t i) const { return view(frames_[i]); }
  std::string_view part(Part p) const { return view(frames_[delimiter_ + 1 + p]); }
  size_t buffer_count() const { return frames_.size() - delimiter_ - 6; }
  // Moves the buffer frames (those after the JSON parts) out; they are left empty here.
  Frames take_buffers();
  // Shared copies of the buffer frames (no payload copy); this message keeps its own.
  Frames share_buffers() const;
  // Parses one JSON part; fails with a Status naming the part if it is not a JSON object.
  Result<json> parse_object(Part p) const;

  // Forwarding: edit routing identities in place, then take the frames back.
  Frames& frames() { return frames_; }
  void swap_first_identities();  // ROUTER<->ROUTER relay, as zmq's MonitoredQueue does
  Frames release() && { return std::move(frames_); }

 private:
  RawMessage(Frames&& frames, size_t delimiter) : frames_(std::move(frames)), delimiter_(delimiter) {}
  Frames frames_;
  size_t delimiter_;
};

const char* PartName(RawMessage::Part p);

}  // namespace ipp::protocol

namespace ipp::protocol {
// Receives one whole multipart message without blocking; nullopt when none is waiting.
std::optional<Frames> TryRecv(zmq::socket_ref socket);
// A reference-counted copy of each frame (payloads are shared, not copied).
Frames ShareFrames(const Frames& frames);
// What an XPUB socket passes up: a subscription or an unsubscription to a topic.
struct Subscription {
  bool subscribe;
  std::string topic;
};
// The next one waiting on `xpub`, without blocking; nullopt when none is.
std::optional<Subscription> TryRecvSubscription(zmq::socket_ref xpub);
// The most messages a reactor handler takes from one socket per wake-up: one busy socket must not
// starve the others on the same thread (a hub flooded with task notifications still answers
// queries); the reactor calls the handler again while the socket stays readable.
inline constexpr int kBatch = 256;
// Sends all frames; returns false if the socket would block (e.g. HWM reached, peer gone on
// a ROUTER with ZMQ_ROUTER_MANDATORY) — the caller decides whether that loses anything.
bool Send(zmq::socket_ref socket, Frames&& frames, bool dontwait = false);
}  // namespace ipp::protocol

namespace ipp::protocol {
// Buffers that arrived in frames, sharing the frames' memory (no copy); the frames are consumed.
std::vector<Buffer> FramesToBuffers(Frames& frames, size_t begin = 0, size_t count = SIZE_MAX);
// Frames that send the buffers without copying; each keeps its Buffer's owner alive until zmq
// is done with it.
Frames BuffersToFrames(const std::vector<Buffer>& buffers);
// Socket options of our relays and schedulers: no linger, no high-water marks (the controller
// must never drop or block on a message it accepted).
void ConfigureUnbounded(zmq::socket_t& socket);
}  // namespace ipp::protocol

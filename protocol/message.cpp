#include "protocol/message.hpp"

#include <algorithm>

#include "common/reactor.hpp"
#include "common/tsan.hpp"

namespace ipp::protocol {

std::string StringField(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string Message::parent_id() const { return StringField(parent_header, "msg_id"); }

std::string PeerName(std::string_view identity) {
  bool printable = !identity.empty() &&
                   std::all_of(identity.begin(), identity.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
  if (printable) return std::string(identity);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex = "0x";
  for (unsigned char c : identity) {
    hex += kHex[c >> 4];
    hex += kHex[c & 0xf];
  }
  return hex;
}

const char* PartName(RawMessage::Part p) {
  switch (p) {
    case RawMessage::kSignature: return "signature";
    case RawMessage::kHeader: return "header";
    case RawMessage::kParent: return "parent_header";
    case RawMessage::kMetadata: return "metadata";
    case RawMessage::kContent: return "content";
  }
  return "?";
}

Result<RawMessage> RawMessage::FromFrames(Frames&& frames) {
  size_t delimiter = frames.size();
  for (size_t i = 0; i < frames.size(); ++i) {
    if (view(frames[i]) == kDelimiter) {
      delimiter = i;
      break;
    }
  }
  if (delimiter == frames.size()) {
    return Status::ProtocolError("no <IDS|MSG> delimiter among " + std::to_string(frames.size()) +
                                 " frames");
  }
  size_t after = frames.size() - delimiter - 1;
  if (after < 5) {
    return Status::ProtocolError("truncated message: " + std::to_string(after) +
                                 " frames after the delimiter, at least 5 needed");
  }
  return RawMessage(std::move(frames), delimiter);
}

Result<json> RawMessage::parse_object(Part p) const {
  std::string_view text = part(p);
  json value = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Status::ProtocolError(std::string("invalid JSON in ") + PartName(p));
  if (!value.is_object()) {
    return Status::ProtocolError(std::string(PartName(p)) + " is a JSON " + value.type_name() +
                                 ", not an object");
  }
  return value;
}

Frames RawMessage::take_buffers() {
  Frames buffers;
  buffers.reserve(buffer_count());
  for (size_t i = delimiter_ + 6; i < frames_.size(); ++i) buffers.push_back(std::move(frames_[i]));
  return buffers;
}

namespace {
// zmq_msg_copy shares the payload (reference-counted); it only bumps the source's count.
zmq::message_t Share(const zmq::message_t& frame) {
  zmq::message_t out;
  out.copy(const_cast<zmq::message_t&>(frame));
  return out;
}
}  // namespace

Frames RawMessage::share_buffers() const {
  Frames buffers;
  buffers.reserve(buffer_count());
  for (size_t i = delimiter_ + 6; i < frames_.size(); ++i) buffers.push_back(Share(frames_[i]));
  return buffers;
}

Frames ShareFrames(const Frames& frames) {
  Frames out;
  out.reserve(frames.size());
  for (const zmq::message_t& f : frames) out.push_back(Share(f));
  return out;
}

void RawMessage::swap_first_identities() {
  if (delimiter_ >= 2) std::swap(frames_[0], frames_[1]);
}

}  // namespace ipp::protocol

namespace ipp::protocol {

std::optional<Subscription> TryRecvSubscription(zmq::socket_ref xpub) {
  Reactor::NoteUse(xpub.handle());
  while (true) {
    zmq::message_t frame;
    if (!xpub.recv(frame, zmq::recv_flags::dontwait)) return std::nullopt;
    // 1 + topic subscribes, 0 + topic unsubscribes; nothing else comes up an XPUB.
    if (frame.size() == 0) continue;
    return Subscription{frame.data<char>()[0] == 1, std::string(frame.data<char>() + 1, frame.size() - 1)};
  }
}

std::optional<Frames> TryRecv(zmq::socket_ref socket) {
  Reactor::NoteUse(socket.handle());
  Frames frames;
  zmq::message_t first;
  if (!socket.recv(first, zmq::recv_flags::dontwait)) {
    Reactor::NoteDrained(socket.handle());
    return std::nullopt;
  }
  bool more = first.more();
  frames.push_back(std::move(first));
  while (more) {
    zmq::message_t part;
    (void)socket.recv(part, zmq::recv_flags::none);  // rest of an atomic multipart message
    more = part.more();
    frames.push_back(std::move(part));
  }
  for (const auto& f : frames) TsanAcquire(f.data());  // frames from another thread (inproc)
  return frames;
}

bool Send(zmq::socket_ref socket, Frames&& frames, bool dontwait) {
  Reactor::NoteUse(socket.handle());
  for (const auto& f : frames) TsanRelease(f.data());  // see TryRecv
  for (size_t i = 0; i < frames.size(); ++i) {
    zmq::send_flags flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (dontwait) flags = flags | zmq::send_flags::dontwait;
    try {
      if (!socket.send(frames[i], flags)) return false;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return false;  // ROUTER_MANDATORY: peer unknown or gone
      throw;
    }
  }
  return true;
}

}  // namespace ipp::protocol

namespace ipp::protocol {

std::vector<Buffer> FramesToBuffers(Frames& frames, size_t begin, size_t count) {
  std::vector<Buffer> out;
  for (size_t i = begin; i < frames.size() && i - begin < count; ++i) {
    auto owner = std::make_shared<zmq::message_t>(std::move(frames[i]));
    out.emplace_back(owner, owner->data(), owner->size());
  }
  return out;
}

Frames BuffersToFrames(const std::vector<Buffer>& buffers) {
  Frames out;
  for (const Buffer& b : buffers) {
    auto* keep = new std::shared_ptr<const void>(b.owner());
    out.emplace_back(const_cast<char*>(b.data()), b.size(),
                     [](void*, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); }, keep);
  }
  return out;
}

void ConfigureUnbounded(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
}

}  // namespace ipp::protocol

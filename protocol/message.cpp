#include "protocol/message.hpp"

namespace ipp::protocol {

std::string Message::parent_id() const {
  auto it = parent_header.find("msg_id");
  return it != parent_header.end() && it->is_string() ? it->get<std::string>() : std::string();
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

void RawMessage::swap_first_identities() {
  if (delimiter_ >= 2) std::swap(frames_[0], frames_[1]);
}

}  // namespace ipp::protocol

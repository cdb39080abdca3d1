#include "protocol/session.hpp"

#include <unistd.h>

#include <random>

#include "protocol/clock.hpp"
#include "protocol/json_fields.hpp"

namespace ipp::protocol {

std::string NewId() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(), static_cast<unsigned>(getpid())};
    return std::mt19937_64(seed);
  }()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(33, '-');
  uint64_t a = rng(), b = rng();
  for (size_t i = 0; i < 33; ++i) {
    if (i == 8) continue;
    uint64_t& src = i < 17 ? a : b;
    id[i] = kHex[src & 0xf];
    src >>= 4;
  }
  return id;
}

Status ValidateHeader(const json& header) {
  for (const char* field : {"msg_id", "msg_type"}) {
    auto it = header.find(field);
    if (it == header.end()) return Status::ProtocolError(std::string("header has no ") + field);
    if (!it->is_string()) {
      return Status::ProtocolError(std::string("header.") + field + " is a " + it->type_name() +
                                   ", not a string");
    }
  }
  return Status::OK();
}

Session::Session(std::string_view key, std::string username, std::string_view signature_scheme)
    : signer_(key, signature_scheme),
      username_(std::move(username)),
      session_id_(NewId()),
      msg_id_prefix_(session_id_ + "_" + std::to_string(getpid()) + "_"),
      header_tail_(",\"session\":" + JsonString(session_id_) + ",\"username\":" + JsonString(username_) +
                   ",\"version\":" + JsonString(kProtocolVersion) + "}") {}

std::string Session::header_text(std::string_view msg_type) {
  return header_text(msg_type, msg_id_prefix_ + std::to_string(message_count_++));
}

std::string Session::header_text(std::string_view msg_type, std::string_view msg_id) const {
  return header_text(msg_type, msg_id, Iso8601Now());
}

std::string Session::header_text(std::string_view msg_type, std::string_view msg_id, std::string_view date) const {
  std::string text = "{\"date\":\"";
  text.reserve(200);
  text += date;
  text += "\",\"msg_id\":";
  text += JsonString(msg_id);
  text += ",\"msg_type\":";
  text += JsonString(msg_type);
  text += header_tail_;
  return text;
}

json Session::make_header(std::string_view msg_type) {
  return json{{"msg_id", msg_id_prefix_ + std::to_string(message_count_++)},
              {"msg_type", msg_type},
              {"username", username_},
              {"session", session_id_},
              {"date", Iso8601Now()},
              {"version", kProtocolVersion}};
}

json Session::make_header(std::string_view msg_type, std::string msg_id) const {
  return json{{"msg_id", std::move(msg_id)},
              {"msg_type", msg_type},
              {"username", username_},
              {"session", session_id_},
              {"date", Iso8601Now()},
              {"version", kProtocolVersion}};
}

Message Session::make(std::string_view msg_type, json content, const json& parent_header,
                      json metadata) {
  Message m;
  m.header = make_header(msg_type);
  m.parent_header = parent_header.is_object() ? parent_header : json::object();
  m.metadata = std::move(metadata);
  m.content = std::move(content);
  return m;
}

Frames Session::serialize(Message&& m) const {
  return serialize_parts(std::move(m.identities), m.header.dump(), m.parent_header.dump(),
                         m.metadata.dump(), m.content.dump(), std::move(m.buffers));
}

Frames Session::serialize_parts(Frames&& identities, std::string header, std::string parent,
                                std::string metadata, std::string content,
                                Frames&& buffers) const {
  std::string_view parts[] = {header, parent, metadata, content};
  std::string signature = signer_.sign(parts, 4);
  Frames frames = std::move(identities);
  frames.reserve(frames.size() + 6 + buffers.size());
  frames.emplace_back(kDelimiter.data(), kDelimiter.size());
  frames.emplace_back(signature.data(), signature.size());
  for (const std::string_view& p : parts) frames.emplace_back(p.data(), p.size());
  for (auto& b : buffers) frames.push_back(std::move(b));
  return frames;
}

void Session::remember(std::string_view signature) {
  if (digest_history_size_ == 0) return;
  if (digests_newer_.size() >= (digest_history_size_ + 1) / 2) {
    digests_older_ = std::move(digests_newer_);
    digests_newer_ = {};
  }
  digests_newer_.insert(std::hash<std::string_view>{}(signature));
}

Status Session::verify(const RawMessage& raw) {
  if (!signer_.enabled()) return Status::OK();
  std::string_view signature = raw.part(RawMessage::kSignature);
  if (signature.empty()) return Status::Unauthorized("unsigned message");
  std::string_view parts[] = {raw.part(RawMessage::kHeader), raw.part(RawMessage::kParent),
                              raw.part(RawMessage::kMetadata), raw.part(RawMessage::kContent)};
  if (!signer_.verify(signature, parts, 4)) return Status::Unauthorized("invalid signature");
  uint64_t digest = std::hash<std::string_view>{}(signature);
  if (digests_newer_.contains(digest) || digests_older_.contains(digest)) {
    return Status::Unauthorized("duplicate signature (replayed message)");
  }
  remember(signature);
  return Status::OK();
}

Result<Message> Session::parse(RawMessage&& raw) {
  if (Status s = verify(raw); !s.ok()) return s;
  return ParseTrusted(std::move(raw));
}

namespace {

// Moves the identities and buffers of `raw` into `m`.
void TakeFrames(RawMessage&& raw, Message& m) {
  m.buffers = raw.take_buffers();
  size_t delimiter = raw.identity_count();
  Frames frames = std::move(raw).release();
  m.identities.reserve(delimiter);
  for (size_t i = 0; i < delimiter; ++i) m.identities.push_back(std::move(frames[i]));
}

}  // namespace

Result<Message> ParseTrusted(RawMessage&& raw) {
  Message m;
  static constexpr RawMessage::Part kParts[] = {RawMessage::kHeader, RawMessage::kParent,
                                                RawMessage::kMetadata, RawMessage::kContent};
  json* targets[] = {&m.header, &m.parent_header, &m.metadata, &m.content};
  for (size_t i = 0; i < 4; ++i) {
    Result<json> value = raw.parse_object(kParts[i]);
    if (!value.ok()) return value.status();
    *targets[i] = std::move(value).value();
  }
  if (Status s = ValidateHeader(m.header); !s.ok()) return s;
  TakeFrames(std::move(raw), m);
  return m;
}

Result<Message> ParseTrustedPart(RawMessage&& raw, unsigned parse) {
  Message m;
  std::optional<JsonFields> header = JsonFields::Scan(raw.part(RawMessage::kHeader));
  std::optional<std::string_view> msg_id, msg_type;
  if (header) {
    msg_id = header->string("msg_id");
    msg_type = header->string("msg_type");
  }
  if (msg_id && msg_type) {
    m.header = json{{"msg_id", *msg_id}, {"msg_type", *msg_type}};
  } else {  // escapes, odd types or no such fields: the full parse says what is wrong
    Result<json> value = raw.parse_object(RawMessage::kHeader);
    if (!value.ok()) return value.status();
    if (Status s = ValidateHeader(*value); !s.ok()) return s;
    m.header = json{{"msg_id", (*value)["msg_id"]}, {"msg_type", (*value)["msg_type"]}};
  }
  static constexpr std::pair<unsigned, RawMessage::Part> kParts[] = {
      {kParseParent, RawMessage::kParent}, {kParseMetadata, RawMessage::kMetadata}, {kParseContent, RawMessage::kContent}};
  json* targets[] = {&m.parent_header, &m.metadata, &m.content};
  for (size_t i = 0; i < 3; ++i) {
    if (!(parse & kParts[i].first)) {
      *targets[i] = json::object();
      continue;
    }
    Result<json> value = raw.parse_object(kParts[i].second);
    if (!value.ok()) return value.status();
    *targets[i] = std::move(value).value();
  }
  TakeFrames(std::move(raw), m);
  return m;
}

Result<Message> Session::parse(Frames&& frames) {
  Result<RawMessage> raw = RawMessage::FromFrames(std::move(frames));
  if (!raw.ok()) return raw.status();
  return parse(std::move(raw).value());
}

}  // namespace ipp::protocol

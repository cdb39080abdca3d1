// Session: what jupyter_client's Session does for ipyparallel — builds headers, signs and
// serializes outgoing messages, verifies and parses incoming ones, and refuses replays.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/flat_hash_map.hpp"
#include "protocol/message.hpp"
#include "protocol/signer.hpp"

namespace ipp::protocol {

inline constexpr const char* kProtocolVersion = "5.3";

// Not thread-safe: one Session per reactor thread (it owns a Signer and a replay history).
class Session {
 public:
  explicit Session(std::string_view key, std::string username = "username",
                   std::string_view signature_scheme = "hmac-sha256");

  const Status& status() const { return signer_.status(); }
  const std::string& id() const { return session_id_; }
  const std::string& username() const { return username_; }
  const Signer& signer() const { return signer_; }

  // A header as Session.msg_header builds it; msg_id is "<session>_<pid>_<n>" like jupyter_client.
  json make_header(std::string_view msg_type);
  // A header with a msg_id chosen by the caller (unique across the cluster, e.g. from
  // NewMessageId()).
  json make_header(std::string_view msg_type, std::string msg_id) const;
  // The same headers as JSON text, written directly (the message paths' way: no tree to build
  // and dump), keys in the order nlohmann dumps them.
  std::string header_text(std::string_view msg_type);
  std::string header_text(std::string_view msg_type, std::string_view msg_id) const;
  // ...with the date given (ISO 8601, as Iso8601 writes it).
  std::string header_text(std::string_view msg_type, std::string_view msg_id, std::string_view date) const;
  Message make(std::string_view msg_type, json content = json::object(),
               const json& parent_header = json::object(), json metadata = json::object());

  // Signs and lays out the frames: identities, delimiter, signature, four JSON parts, buffers.
  Frames serialize(Message&& message) const;
  // Serializes pre-dumped JSON parts; the fast path for replies built without a json tree.
  Frames serialize_parts(Frames&& identities, std::string header, std::string parent,
                         std::string metadata, std::string content, Frames&& buffers) const;

  // Checks the signature (and that it has not been seen before) without parsing anything.
  Status verify(const RawMessage& raw);
  // verify() then parse all four JSON parts and check the header's types.
  Result<Message> parse(RawMessage&& raw);
  Result<Message> parse(Frames&& frames);

  // Replay protection as in jupyter_client: remember up to this many signatures.
  void set_digest_history_size(size_t n) { digest_history_size_ = n; }

 private:
  void remember(std::string_view signature);

  Signer signer_;
  std::string username_;
  std::string session_id_;
  std::string msg_id_prefix_;
  std::string header_tail_;  // ,"session":...,"username":...,"version":...}
  uint64_t message_count_ = 0;
  // The signatures seen, as 64-bit hashes in two generations of flat tables: when the newer
  // holds half the history size it becomes the older and the oldest half is forgotten. (The
  // string set this replaces scattered a small allocation per message across the heap, and
  // those kept whole pages of freed messages from going back to the system.) A false "replay"
  // needs a 64-bit collision among the last 65536 signatures.
  size_t digest_history_size_ = 1 << 16;
  FlatHashSet64 digests_newer_, digests_older_;
};

// A random id in jupyter_client's new_id() form: 8 hex digits, '-', 24 hex digits.
std::string NewId();

// Checks that a parsed header has the fields every peer relies on, with the right types.
Status ValidateHeader(const json& header);

}  // namespace ipp::protocol

namespace ipp::protocol {
// Parses a message that a trusted thread of this process already verified (internal inproc
// traffic): no signature check, same structural checks as Session::parse.
Result<Message> ParseTrusted(RawMessage&& raw);

// Which parts ParseTrustedPart parses into trees.
enum PartMask : unsigned {
  kParseParent = 1u << 0,
  kParseMetadata = 1u << 1,
  kParseContent = 1u << 2,
};
// ParseTrusted for a reader that needs only some parts: the header yields just msg_id and
// msg_type (found without a full parse where the scanner can), the parts in `parse` are parsed
// and checked, the others are left empty objects, unread.
Result<Message> ParseTrustedPart(RawMessage&& raw, unsigned parse);
}  // namespace ipp::protocol

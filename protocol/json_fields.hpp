// JsonFields: the top-level fields of a JSON object's text, found without building a tree.
//
// The message paths of the controller need two or three fields of a header or metadata dict per
// message (msg_id, status, engine...); building a full nlohmann tree for each would cost far
// more than the routing itself. This scanner finds the fields and leaves every value
// as its raw text. It is deliberately partial: what it is not sure about (escaped keys or
// values, more than kMaxFields fields, malformed structure) makes it fail, and the caller parses
// the text fully. It checks less than a full parser inside values it does not read (UTF-8,
// number syntax): use it only on signed messages, where whoever reads those values parses them.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ipp/status.hpp"

namespace ipp::protocol {

class JsonFields {
 public:
  static constexpr size_t kMaxFields = 32;

  // nullopt unless `text` is one JSON object this scanner fully understands. The fields are
  // views into `text`: it must outlive them.
  static std::optional<JsonFields> Scan(std::string_view text);

  // The raw text of a top-level value ("\"abc\"", "12", "[1, 2]", "null"); nullopt if absent.
  std::optional<std::string_view> raw(std::string_view key) const;
  // A string value's characters; nullopt if absent, not a string, or containing escapes.
  std::optional<std::string_view> string(std::string_view key) const;
  // true/false; nullopt if absent or not a boolean.
  std::optional<bool> boolean(std::string_view key) const;
  // True when the key is absent, or its value is null, [] or {}.
  bool empty_or_absent(std::string_view key) const;

 private:
  std::array<std::string_view, kMaxFields> keys_{}, values_{};
  size_t count_ = 0;
};

// The fields of one message part, read the fast way (JsonFields) or, where the scanner declines,
// by parsing the text: callers get the same answers either way. `text` must outlive it.
class PartFields {
 public:
  // An error when the text is not a JSON object.
  static Result<PartFields> Of(std::string_view text);

  std::optional<std::string> string(std::string_view key) const;
  std::optional<bool> boolean(std::string_view key) const;
  bool empty_or_absent(std::string_view key) const;
  // The value as a tree (parsing only that value); nullopt if absent.
  std::optional<nlohmann::json> value(std::string_view key) const;

 private:
  std::optional<JsonFields> scanned_;
  nlohmann::json parsed_;  // when not scanned
};

// A JSON string literal (quoted, escaped) for `s`: for JSON written without a tree.
std::string JsonString(std::string_view s);

}  // namespace ipp::protocol

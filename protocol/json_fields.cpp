#include "protocol/json_fields.hpp"

namespace ipp::protocol {

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

void SkipSpace(std::string_view s, size_t& i) {
  while (i < s.size() && IsSpace(s[i])) ++i;
}

// Characters that end a run of plain string content: the quote, the backslash and the control
// characters (not allowed in JSON strings). A table lookup per byte: strings (ids, dates) are
// most of what the scanner reads, on every message of every process.
struct StringStops {
  bool stop[256] = {};
  constexpr StringStops() {
    for (int c = 0; c < 0x20; ++c) stop[c] = true;
    stop[static_cast<unsigned char>('"')] = true;
    stop[static_cast<unsigned char>('\\')] = true;
  }
};
constexpr StringStops kStringStops;

// A string starting at s[i] == '"'; moves i past the closing quote. *escaped: it had escapes.
bool SkipString(std::string_view s, size_t& i, bool* escaped) {
  const char* p = s.data();
  const size_t n = s.size();
  for (++i; i < n; ++i) {
    while (i < n && !kStringStops.stop[static_cast<unsigned char>(p[i])]) ++i;
    if (i >= n) break;
    if (p[i] == '\\') {
      *escaped = true;
      ++i;
    } else if (p[i] == '"') {
      ++i;
      return true;
    } else {
      return false;  // a control character
    }
  }
  return false;
}

// Any value starting at s[i]; moves i past it. Nested values are only bracket-matched: their
// contents are checked by whoever parses them.
bool SkipValue(std::string_view s, size_t& i) {
  if (i >= s.size()) return false;
  bool escaped = false;
  if (s[i] == '"') return SkipString(s, i, &escaped);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        if (!SkipString(s, i, &escaped)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) {
          ++i;
          return true;
        }
      }
      ++i;
    }
    return false;
  }
  size_t start = i;  // number, true, false, null
  while (i < s.size() && s[i] != ',' && s[i] != '}' && !IsSpace(s[i])) {
    char c = s[i];
    bool ok = (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' ||
              (c >= 'a' && c <= 'z');
    if (!ok) return false;
    ++i;
  }
  std::string_view token = s.substr(start, i - start);
  if (token.empty()) return false;
  if (token[0] >= 'a' && token[0] <= 'z') return token == "true" || token == "false" || token == "null";
  return true;
}

}  // namespace

std::optional<JsonFields> JsonFields::Scan(std::string_view s) {
  JsonFields f;
  size_t i = 0;
  SkipSpace(s, i);
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  ++i;
  SkipSpace(s, i);
  if (i < s.size() && s[i] == '}') {
    ++i;
  } else {
    while (true) {
      if (i >= s.size() || s[i] != '"' || f.count_ == kMaxFields) return std::nullopt;
      size_t key_start = i + 1;
      bool escaped = false;
      if (!SkipString(s, i, &escaped) || escaped) return std::nullopt;
      std::string_view key = s.substr(key_start, i - 1 - key_start);
      for (size_t k = 0; k < f.count_; ++k) {
        if (f.keys_[k] == key) return std::nullopt;  // duplicate keys: let nlohmann decide
      }
      SkipSpace(s, i);
      if (i >= s.size() || s[i] != ':') return std::nullopt;
      ++i;
      SkipSpace(s, i);
      size_t value_start = i;
      if (!SkipValue(s, i)) return std::nullopt;
      f.keys_[f.count_] = key;
      f.values_[f.count_] = s.substr(value_start, i - value_start);
      ++f.count_;
      SkipSpace(s, i);
      if (i < s.size() && s[i] == ',') {
        ++i;
        SkipSpace(s, i);
        continue;
      }
      if (i < s.size() && s[i] == '}') {
        ++i;
        break;
      }
      return std::nullopt;
    }
  }
  SkipSpace(s, i);
  if (i != s.size()) return std::nullopt;
  return f;
}

std::optional<std::string_view> JsonFields::raw(std::string_view key) const {
  for (size_t k = 0; k < count_; ++k) {
    if (keys_[k] == key) return values_[k];
  }
  return std::nullopt;
}

std::optional<std::string_view> JsonFields::string(std::string_view key) const {
  auto v = raw(key);
  if (!v || v->size() < 2 || v->front() != '"' || v->find('\\') != std::string_view::npos) return std::nullopt;
  return v->substr(1, v->size() - 2);
}

std::optional<bool> JsonFields::boolean(std::string_view key) const {
  auto v = raw(key);
  if (v == "true") return true;
  if (v == "false") return false;
  return std::nullopt;
}

bool JsonFields::empty_or_absent(std::string_view key) const {
  auto v = raw(key);
  if (!v || *v == "null") return true;
  if (v->size() < 2 || (v->front() != '[' && v->front() != '{')) return false;
  for (size_t i = 1; i + 1 < v->size(); ++i) {
    if (!IsSpace((*v)[i])) return false;
  }
  return true;
}

Result<PartFields> PartFields::Of(std::string_view text) {
  PartFields f;
  f.scanned_ = JsonFields::Scan(text);
  if (f.scanned_) return f;
  f.parsed_ = nlohmann::json::parse(text, nullptr, false);
  if (f.parsed_.is_discarded() || !f.parsed_.is_object()) {
    return Status::ProtocolError("not a JSON object");
  }
  return f;
}

std::optional<nlohmann::json> PartFields::value(std::string_view key) const {
  if (scanned_) {
    auto raw = scanned_->raw(key);
    if (!raw) return std::nullopt;
    if (*raw == "null") return nlohmann::json();  // common (a no-op's result): no parser set-up
    nlohmann::json v = nlohmann::json::parse(*raw, nullptr, false);
    if (v.is_discarded()) return std::nullopt;
    return v;
  }
  auto it = parsed_.find(key);
  if (it == parsed_.end()) return std::nullopt;
  return *it;
}

std::optional<std::string> PartFields::string(std::string_view key) const {
  if (scanned_) {
    if (auto s = scanned_->string(key)) return std::string(*s);
    if (!scanned_->raw(key)) return std::nullopt;
  }
  auto v = value(key);  // escaped, or not scanned
  if (!v || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

std::optional<bool> PartFields::boolean(std::string_view key) const {
  if (scanned_) return scanned_->boolean(key);
  auto v = value(key);
  if (!v || !v->is_boolean()) return std::nullopt;
  return v->get<bool>();
}

bool PartFields::empty_or_absent(std::string_view key) const {
  if (scanned_) return scanned_->empty_or_absent(key);
  auto v = value(key);
  return !v || v->is_null() || ((v->is_array() || v->is_object()) && v->empty());
}

std::string JsonString(std::string_view s) {
  for (char c : s) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return nlohmann::json(s).dump();
  }
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

}  // namespace ipp::protocol

#include "controller/task_record.hpp"

#include <cmath>

#include "protocol/json_fields.hpp"

namespace ipp::controller {

namespace {

json ParsedOrNull(const std::string& text) {
  if (text.empty()) return nullptr;
  json value = json::parse(text, nullptr, false);
  return value.is_discarded() ? json(nullptr) : value;
}

json DateOrNull(const std::optional<TimePoint>& t) {
  return t ? json(protocol::Iso8601(*t)) : json(nullptr);
}

json StringOrNull(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// ipyparallel 9.1's hub copies the request metadata's "label" into a record field of its own;
// ours reads it from the stored metadata, so every store keeps it (DictDB's compact records keep
// the metadata byte for byte) and a resubmitted task keeps its label, as in 9.1.
json LabelOf(const std::string& metadata) {
  if (metadata.empty()) return nullptr;
  Result<protocol::PartFields> fields = protocol::PartFields::Of(metadata);
  if (!fields.ok()) return nullptr;
  std::optional<json> label = fields->value("label");
  return label ? std::move(*label) : json(nullptr);
}

}  // namespace

SharedFrames::SharedFrames(const SharedFrames& other) : vector(protocol::ShareFrames(other)) {}

size_t TaskRecord::ApproximateBytes() const {
  size_t n = sizeof(TaskRecord);
  for (const std::string* s : {&msg_id, &header, &metadata, &content, &client_uuid, &engine_uuid,
                               &queue, &resubmitted, &result_header, &result_metadata,
                               &result_content, &execute_input, &execute_result, &error,
                               &stdout_text, &stderr_text}) {
    if (s->capacity() > 15) n += s->capacity();  // beyond the small-string buffer
  }
  for (const auto& b : buffers) n += b.size() + sizeof(zmq::message_t);
  for (const auto& b : result_buffers) n += b.size() + sizeof(zmq::message_t);
  return n;
}

const std::vector<std::string>& RecordKeys() {
  static const std::vector<std::string> keys = {
      "msg_id", "header", "metadata", "content", "buffers", "submitted", "client_uuid",
      "engine_uuid", "started", "completed", "resubmitted", "received", "result_header",
      "result_metadata", "result_content", "result_buffers", "queue", "execute_input",
      "execute_result", "error", "stdout", "stderr", "label"};
  return keys;
}

bool IsBufferKey(const std::string& key) { return key == "buffers" || key == "result_buffers"; }

json FieldValue(const TaskRecord& r, const std::string& key) {
  if (key == "msg_id") return r.msg_id;
  if (key == "header") return ParsedOrNull(r.header);
  if (key == "metadata") return ParsedOrNull(r.metadata);
  if (key == "content") return ParsedOrNull(r.content);
  if (key == "submitted") return DateOrNull(r.submitted);
  if (key == "started") return DateOrNull(r.started);
  if (key == "completed") return DateOrNull(r.completed);
  if (key == "received") return DateOrNull(r.received);
  if (key == "client_uuid") return StringOrNull(r.client_uuid);
  if (key == "engine_uuid") return StringOrNull(r.engine_uuid);
  if (key == "queue") return StringOrNull(r.queue);
  if (key == "resubmitted") return StringOrNull(r.resubmitted);
  if (key == "result_header") return ParsedOrNull(r.result_header);
  if (key == "result_metadata") return ParsedOrNull(r.result_metadata);
  if (key == "result_content") return ParsedOrNull(r.result_content);
  if (key == "execute_input") return StringOrNull(r.execute_input);
  if (key == "execute_result") return ParsedOrNull(r.execute_result);
  if (key == "error") return ParsedOrNull(r.error);
  if (key == "stdout") return r.stdout_text;
  if (key == "stderr") return r.stderr_text;
  if (key == "label") return LabelOf(r.metadata);
  return nullptr;
}

json ToJson(const TaskRecord& record, const std::vector<std::string>* keys) {
  json out = json::object();
  const std::vector<std::string>& wanted = keys ? *keys : RecordKeys();
  for (const std::string& key : wanted) {
    if (IsBufferKey(key)) continue;
    out[key] = FieldValue(record, key);
  }
  out["msg_id"] = record.msg_id;  // always included, as DictDB does
  return out;
}

namespace {

bool IsDateKey(const std::string& key) {
  return key == "submitted" || key == "started" || key == "completed" || key == "received";
}

// Orders two JSON values the way Python would compare them for $lt/$gt: numbers numerically,
// dates (ISO strings) as instants, strings lexicographically. Returns nullopt if incomparable.
std::optional<int> Compare(const std::string& key, const json& a, const json& b) {
  if (a.is_null() || b.is_null()) return std::nullopt;
  if (a.is_number() && b.is_number()) {
    double x = a.get<double>(), y = b.get<double>();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    if (IsDateKey(key)) {
      auto x = protocol::ParseIso8601(a.get_ref<const std::string&>());
      auto y = protocol::ParseIso8601(b.get_ref<const std::string&>());
      if (x && y) return *x < *y ? -1 : (*x > *y ? 1 : 0);
    }
    int c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  return std::nullopt;
}

bool Equal(const std::string& key, const json& a, const json& b) {
  if (IsDateKey(key) && a.is_string() && b.is_string()) {
    auto c = Compare(key, a, b);
    return c && *c == 0;
  }
  return a == b;
}

bool Contains(const std::string& key, const json& list, const json& value) {
  if (!list.is_array()) return false;
  for (const json& item : list) {
    if (Equal(key, value, item)) return true;
  }
  return false;
}

const char* const kOperators[] = {"$lt", "$gt", "$eq", "$ne", "$lte", "$gte",
                                  "$in", "$nin", "$all", "$mod", "$exists", "$glob"};

std::u32string CodePoints(const std::string& utf8) {
  std::u32string out;
  for (size_t i = 0; i < utf8.size();) {
    unsigned char c = static_cast<unsigned char>(utf8[i]);
    int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    char32_t cp = extra ? c & (0x3F >> extra) : c;
    ++i;
    for (int k = 0; k < extra && i < utf8.size(); ++k, ++i) cp = (cp << 6) | (static_cast<unsigned char>(utf8[i]) & 0x3F);
    out.push_back(cp);
  }
  return out;
}

// Python's fnmatch.fnmatchcase (what 9.1's DictDB uses for $glob; case-sensitive on POSIX):
// '*' any run of characters, '?' one character, '[seq]' / '[!seq]' a set with ranges, where a
// ']' right after '[' or '[!' is a member and a '[' without its ']' is literal; nothing escapes.
bool GlobMatch(const std::u32string& name, const std::u32string& pattern) {
  // Where the set at pattern[p] ('[') ends (one past ']'), or npos when '[' is literal.
  auto set_end = [&](size_t p) {
    size_t j = p + 1;
    if (j < pattern.size() && pattern[j] == U'!') ++j;
    if (j < pattern.size() && pattern[j] == U']') ++j;
    while (j < pattern.size() && pattern[j] != U']') ++j;
    return j < pattern.size() ? j + 1 : std::u32string::npos;
  };
  auto in_set = [&](size_t p, size_t end, char32_t c) {
    size_t i = p + 1, last = end - 1;  // pattern[last] == ']'
    bool negate = i < last && pattern[i] == U'!';
    if (negate) ++i;
    bool found = false;
    while (i < last) {
      char32_t lo = pattern[i];
      if (i + 2 < last && pattern[i + 1] == U'-') {
        found = found || (lo <= c && c <= pattern[i + 2]);
        i += 3;
      } else {
        found = found || lo == c;
        ++i;
      }
    }
    return found != negate;
  };
  size_t n = 0, p = 0, star_p = std::u32string::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == U'*') {
      star_p = ++p;
      star_n = n;
      continue;
    }
    if (p < pattern.size()) {
      if (pattern[p] == U'?') {
        ++p, ++n;
        continue;
      }
      if (pattern[p] == U'[') {
        size_t end = set_end(p);
        if (end != std::u32string::npos) {
          if (in_set(p, end, name[n])) {
            p = end, ++n;
            continue;
          }
        } else if (name[n] == U'[') {
          ++p, ++n;
          continue;
        }
      } else if (pattern[p] == name[n]) {
        ++p, ++n;
        continue;
      }
    }
    if (star_p == std::u32string::npos) return false;
    p = star_p;  // let the last '*' take one more character
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == U'*') ++p;
  return p == pattern.size();
}

}  // namespace

Result<RecordQuery> RecordQuery::Parse(const json& query) {
  if (!query.is_object()) return Status::InvalidArgument("db query must be a JSON object");
  RecordQuery q;
  for (auto& [key, value] : query.items()) {
    if (value.is_object() && !value.empty() && value.begin().key().rfind("$", 0) == 0) {
      for (auto& [op, operand] : value.items()) {
        bool known = false;
        for (const char* k : kOperators) known = known || op == k;
        if (!known) return Status::InvalidArgument("unknown query operator '" + op + "'");
        if (op == "$glob" && !operand.is_string()) {
          return Status::InvalidArgument("$glob needs a string pattern, not " + operand.dump());
        }
        q.tests_.push_back({key, op, operand});
      }
    } else {
      q.tests_.push_back({key, "$eq", value});
    }
  }
  return q;
}

bool RecordQuery::Matches(const TaskRecord& record) const {
  for (const Test& t : tests_) {
    json value = FieldValue(record, t.key);
    bool ok = false;
    if (t.op == "$eq") {
      ok = Equal(t.key, value, t.operand);
    } else if (t.op == "$ne") {
      ok = !Equal(t.key, value, t.operand);
    } else if (t.op == "$in") {
      ok = Contains(t.key, t.operand, value);
    } else if (t.op == "$nin") {
      ok = !Contains(t.key, t.operand, value);
    } else if (t.op == "$glob") {
      // A missing (null) or non-string value never matches, as in 9.1.
      ok = value.is_string() && GlobMatch(CodePoints(value.get_ref<const std::string&>()),
                                          CodePoints(t.operand.get_ref<const std::string&>()));
    } else if (t.op == "$exists") {
      ok = t.operand.is_boolean() && (t.operand.get<bool>() == !value.is_null());
    } else if (t.op == "$all") {
      ok = t.operand.is_array() && value.is_array();
      for (const json& needle : t.operand) ok = ok && Contains(t.key, value, needle);
    } else if (t.op == "$mod") {
      ok = value.is_number_integer() && t.operand.is_array() && t.operand.size() == 2 &&
           t.operand[0].is_number_integer() && t.operand[0].get<long>() != 0 &&
           value.get<long>() % t.operand[0].get<long>() == t.operand[1].get<long>();
    } else {
      auto c = Compare(t.key, value, t.operand);
      if (c) {
        if (t.op == "$lt") ok = *c < 0;
        if (t.op == "$gt") ok = *c > 0;
        if (t.op == "$lte") ok = *c <= 0;
        if (t.op == "$gte") ok = *c >= 0;
      }
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace ipp::controller

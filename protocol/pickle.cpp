#include "protocol/pickle.hpp"

#include <cstdint>
#include <cstring>
#include <string_view>

namespace ipp::protocol {
namespace {

using nlohmann::json;

// Opcodes of pickle protocols 2 and 3 (Python's Lib/pickle.py has the same names), by what they
// make.
enum Opcode : char {
  kProto = '\x80', kStop = '.', kMark = '(',  // framing
  kNone = 'N', kNewTrue = '\x88', kNewFalse = '\x89',
  // Integers: 4-byte signed, 1- and 2-byte unsigned, n-byte two's complement; an 8-byte
  // big-endian double.
  kBinInt = 'J', kBinInt1 = 'K', kBinInt2 = 'M', kLong1 = '\x8a', kBinFloat = 'G',
  kBinUnicode = 'X', kBinBytes = 'B',
  kEmptyList = ']', kAppend = 'a', kAppends = 'e', kEmptyDict = '}', kSetItems = 'u', kEmptyTuple = ')', kTuple = 't',
  kGlobal = 'c', kNewObj = '\x81', kBuild = 'b',  // an object of a class
};

void PutLittleEndian(std::string& out, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutSigned(std::string& out, int64_t v) {
  if (v >= 0 && v < 0x100) {
    out.push_back(kBinInt1);
    PutLittleEndian(out, static_cast<uint64_t>(v), 1);
  } else if (v >= 0 && v < 0x10000) {
    out.push_back(kBinInt2);
    PutLittleEndian(out, static_cast<uint64_t>(v), 2);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    out.push_back(kBinInt);
    PutLittleEndian(out, static_cast<uint64_t>(v), 4);
  } else {
    out.push_back(kLong1);
    out.push_back('\x08');
    PutLittleEndian(out, static_cast<uint64_t>(v), 8);  // two's complement, as LONG1 wants
  }
}

void PutUnsigned(std::string& out, uint64_t v) {
  if (v <= static_cast<uint64_t>(INT64_MAX)) {
    PutSigned(out, static_cast<int64_t>(v));
    return;
  }
  out.push_back(kLong1);
  out.push_back('\x09');  // a zero ninth byte keeps it positive
  PutLittleEndian(out, v, 8);
  out.push_back('\0');
}

void PutFloat(std::string& out, double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  out.push_back(kBinFloat);
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

// Length of the valid UTF-8 sequence at the start of `s`, or 0 if it is not one.
size_t Utf8SequenceLength(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto continuation = [&](size_t i, unsigned lo = 0x80, unsigned hi = 0xbf) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  unsigned c = byte(0);
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return continuation(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    // No overlong forms (E0 80..9F) and no surrogates (ED A0..BF).
    unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    return continuation(1, lo, hi) && continuation(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    // No overlong forms (F0 80..8F) and nothing past U+10FFFF (F4 90..).
    unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    return continuation(1, lo, hi) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

void PutString(std::string& out, std::string_view s) {
  out.push_back(kBinUnicode);
  size_t length_at = out.size();
  PutLittleEndian(out, 0, 4);
  size_t start = out.size();
  while (!s.empty()) {
    size_t n = Utf8SequenceLength(s);
    if (n == 0) {
      out.append("\xef\xbf\xbd");  // U+FFFD for the bad byte
      n = 1;
    } else {
      out.append(s.data(), n);
    }
    s.remove_prefix(n);
  }
  uint64_t length = out.size() - start;
  for (size_t i = 0; i < 4; ++i) out[length_at + i] = static_cast<char>((length >> (8 * i)) & 0xff);
}

void PutValue(std::string& out, const json& value) {
  switch (value.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      out.push_back(kNone);
      return;
    case json::value_t::boolean:
      out.push_back(value.get<bool>() ? kNewTrue : kNewFalse);
      return;
    case json::value_t::number_integer:
      PutSigned(out, value.get<int64_t>());
      return;
    case json::value_t::number_unsigned:
      PutUnsigned(out, value.get<uint64_t>());
      return;
    case json::value_t::number_float:
      PutFloat(out, value.get<double>());
      return;
    case json::value_t::string:
      PutString(out, value.get_ref<const std::string&>());
      return;
    case json::value_t::binary: {
      const auto& bytes = value.get_binary();
      out.push_back(kBinBytes);
      PutLittleEndian(out, bytes.size(), 4);
      out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      return;
    }
    case json::value_t::array:
      out.push_back(kEmptyList);
      if (value.empty()) return;
      out.push_back(kMark);
      for (const auto& item : value) PutValue(out, item);
      out.push_back(kAppends);
      return;
    case json::value_t::object:
      out.push_back(kEmptyDict);
      if (value.empty()) return;
      out.push_back(kMark);
      for (const auto& [key, item] : value.items()) {
        PutString(out, key);
        PutValue(out, item);
      }
      out.push_back(kSetItems);
      return;
  }
}

// An instance of ipyparallel.serialize.canning.`cls` made without __init__, whose __dict__
// gets `buffers` = [None] * buffer_count plus what `more_state` adds (keys in sorted order).
template <typename MoreState>
void PutCanned(std::string& out, std::string_view cls, size_t buffer_count, MoreState more_state) {
  out.push_back(kGlobal);
  out.append("ipyparallel.serialize.canning\n");
  out.append(cls);
  out.push_back('\n');
  out.push_back(kEmptyTuple);
  out.push_back(kNewObj);
  out.push_back(kEmptyDict);
  out.push_back(kMark);
  PutString(out, "buffers");
  out.push_back(kEmptyList);
  for (size_t i = 0; i < buffer_count; ++i) {
    out.push_back(kNone);
    out.push_back(kAppend);
  }
  more_state(out);
  out.push_back(kSetItems);
  out.push_back(kBuild);
}

std::string Begin() { return std::string{kProto, '\x03'}; }

}  // namespace

std::string PickleJson(const json& value) {
  std::string out = Begin();
  PutValue(out, value);
  out.push_back(kStop);
  return out;
}

std::string PickleNativeResult(const json& result, size_t buffer_count) {
  if (buffer_count == 0) return PickleJson(result);
  std::string out = Begin();
  if (buffer_count <= kMaxPickledBuffers) {
    out.push_back(kMark);
    PutValue(out, result);
    for (size_t i = 0; i < buffer_count; ++i) PutCanned(out, "CannedBytes", 1, [](std::string&) {});
    out.push_back(kTuple);
  } else {
    // CannedObject.get_object() gives back `obj` untouched: the result.
    PutCanned(out, "CannedObject", buffer_count, [&](std::string& o) {
      PutString(o, "hook");
      o.push_back(kNone);
      PutString(o, "keys");
      o.push_back(kEmptyList);
      PutString(o, "obj");
      PutValue(o, result);
    });
  }
  out.push_back(kStop);
  return out;
}

}  // namespace ipp::protocol

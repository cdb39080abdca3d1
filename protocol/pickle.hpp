// Pickle: JSON values written as Python pickles, for stock ipyparallel clients.
//
// A stock client reads an apply_reply's result by unpickling its first buffer
// (ipyparallel.serialize.deserialize_object); our engines answer native calls with JSON. These
// functions write the JSON as the plain Python objects it stands for — None, bool, int, float,
// str, list, dict — with pickle protocol 2 opcodes, which every Python 3 reads. No memo is
// written: the output is a tree, never shared or recursive.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace ipp::protocol {

// The pickle of `value` as plain Python objects. Strings that are not valid UTF-8 get U+FFFD
// for each bad byte (Python would refuse to load them); NaN and infinities stay floats.
std::string PickleJson(const nlohmann::json& value);

// Stock clients read at most 63 top-level items that each take buffers (serialize.MAX_ITEMS).
inline constexpr size_t kMaxPickledBuffers = 62;

// The first buffer of a native apply_reply, for stock clients. It accounts for exactly the
// `buffer_count` buffers that follow it, so clients that split concatenated replies by
// unpickling (coalesced broadcasts, results fetched from the hub) stay in step:
//   no buffers:            the result itself;
//   1..kMaxPickledBuffers: the tuple (result, bytes, ...), each bytes one buffer, in order
//                          (ipyparallel's CannedBytes stands in for each until it is filled);
//   more:                  the result, the buffers consumed but not shown to Python.
std::string PickleNativeResult(const nlohmann::json& result, size_t buffer_count);

}  // namespace ipp::protocol

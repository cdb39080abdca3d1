// ipp_lib_bench: our hand-written hot-path pieces against the libraries made for the job, in one
// run on the same inputs (Google Benchmark).
//
// - JSON: protocol::JsonFields / PartFields (a one-pass scanner of top-level fields) against
//   simdjson On-Demand and a full nlohmann parse, on the header and metadata parts the
//   controller reads for every task: apply requests and replies as the stock Python client and
//   engines write them (", " / ": " separators) and as ours write them (compact).
// - Hash map: the hand-written FlatHashMap64 common/flat_hash_map.hpp had against absl::flat_hash_map, keyed by the 64-bit hashes of msg_ids,
//   in the pattern the scheduler and Session use (insert each task once, look it up about twice,
//   plus lookups of ids never seen).
#include <benchmark/benchmark.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "protocol/json_fields.hpp"

namespace {

using ipp::protocol::JsonFields;
using ipp::protocol::PartFields;

std::string MsgId(int i) {
  return "1c3b8f5e-7a6a2f0e9b3f4c1d8e2a6b7c_" + std::to_string(4000 + i % 7) + "_" + std::to_string(i);
}

// The parts the controller reads per task: the request's header and metadata (scheduler, hub),
// the reply's header, parent header and metadata (scheduler, hub).
std::vector<std::string> Parts(bool python) {
  nlohmann::json request_header = {{"msg_id", MsgId(12345)},
                                   {"msg_type", "apply_request"},
                                   {"username", "root"},
                                   {"session", "1c3b8f5e-7a6a2f0e9b3f4c1d8e2a6b7c"},
                                   {"date", "2026-12-01T00:05:44.123456Z"},
                                   {"version", "8.5"}};
  nlohmann::json request_md = {{"after", nlohmann::json::array()},
                               {"follow", nlohmann::json::array()},
                               {"timeout", nullptr},
                               {"targets", nlohmann::json::array()},
                               {"retries", 0}};
  nlohmann::json reply_header = request_header;
  reply_header["msg_id"] = "5e0d2c1a-99aa4b3c2d1e0f9a8b7c6d5e_2222_7";
  reply_header["msg_type"] = "apply_reply";
  nlohmann::json reply_md = {{"started", "2026-12-01T00:05:44.125001Z"},
                             {"dependencies_met", true},
                             {"engine", "5e0d2c1a-99aa4b3c2d1e0f9a8b7c6d5e"},
                             {"is_broadcast", false},
                             {"is_coalescing", false},
                             {"original_msg_id", ""},
                             {"status", "ok"}};
  std::vector<std::string> parts;
  for (const auto* j : {&request_header, &request_md, &reply_header, &request_header, &reply_md}) {
    // Python's json.dumps writes ", " and ": "; ours writes nlohmann's compact form.
    parts.push_back(j->dump());
    if (python) {
      std::string spaced;
      bool in_string = false;
      for (char c : parts.back()) {
        spaced += c;
        if (c == '"' && (spaced.size() < 2 || spaced[spaced.size() - 2] != '\\')) in_string = !in_string;
        if (!in_string && (c == ',' || c == ':')) spaced += ' ';
      }
      parts.back() = spaced;
    }
  }
  return parts;
}

// The fields read from each part, in the order of Parts().
const std::vector<std::vector<const char*>> kReads = {
    {"msg_id", "msg_type", "date"}, {"after", "follow", "targets", "retries", "timeout"},
    {"msg_id", "date"},             {"msg_id"},
    {"status", "engine", "started", "dependencies_met"}};

// simdjson On-Demand, the way a swap behind JsonFields would use it: one padded copy of the
// part, every top-level field found, each value's raw text.
struct SimdFields {
  std::string_view keys[32], values[32];
  size_t count = 0;
  std::string_view raw(std::string_view key) const {
    for (size_t k = 0; k < count; ++k) {
      if (keys[k] == key) return values[k];
    }
    return {};
  }
};

// A value's raw text: On-Demand 3.0 has raw_json() on objects and arrays only; a scalar's token
// may carry the whitespace after it.
bool RawValue(simdjson::ondemand::value& v, std::string_view& raw) {
  simdjson::ondemand::json_type type;
  if (v.type().get(type)) return true;
  if (type == simdjson::ondemand::json_type::object) {
    simdjson::ondemand::object o;
    return v.get_object().get(o) || o.raw_json().get(raw);
  }
  if (type == simdjson::ondemand::json_type::array) {
    simdjson::ondemand::array a;
    return v.get_array().get(a) || a.raw_json().get(raw);
  }
  raw = v.raw_json_token();
  while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' || raw.back() == '\t')) {
    raw.remove_suffix(1);
  }
  return false;
}

bool SimdScan(simdjson::ondemand::parser& parser, std::string& buffer, std::string_view text, SimdFields& out) {
  buffer.assign(text);
  buffer.resize(text.size() + simdjson::SIMDJSON_PADDING);
  simdjson::ondemand::document doc;
  if (parser.iterate(buffer.data(), text.size(), buffer.size()).get(doc)) return false;
  simdjson::ondemand::object object;
  if (doc.get_object().get(object)) return false;
  out.count = 0;
  for (auto field : object) {
    std::string_view key, value;
    if (field.unescaped_key().get(key)) return false;
    simdjson::ondemand::value v = field.value();
    if (RawValue(v, value)) return false;
    if (out.count == 32) return false;
    out.keys[out.count] = key;
    out.values[out.count++] = value;
  }
  return true;
}

void BM_Json_Ours_JsonFields(benchmark::State& state) {
  const std::vector<std::string> parts = Parts(state.range(0));
  for (auto _ : state) {
    for (size_t p = 0; p < parts.size(); ++p) {
      std::optional<JsonFields> f = JsonFields::Scan(parts[p]);
      for (const char* key : kReads[p]) benchmark::DoNotOptimize(f->raw(key));
    }
  }
  state.SetItemsProcessed(state.iterations() * parts.size());
}

void BM_Json_Ours_PartFields(benchmark::State& state) {
  const std::vector<std::string> parts = Parts(state.range(0));
  for (auto _ : state) {
    for (size_t p = 0; p < parts.size(); ++p) {
      auto f = PartFields::Of(parts[p]);
      for (const char* key : kReads[p]) benchmark::DoNotOptimize(f->string(key));
    }
  }
  state.SetItemsProcessed(state.iterations() * parts.size());
}

void BM_Json_Simdjson_AllFields(benchmark::State& state) {
  const std::vector<std::string> parts = Parts(state.range(0));
  simdjson::ondemand::parser parser;
  std::string buffer;
  SimdFields f;
  for (auto _ : state) {
    for (size_t p = 0; p < parts.size(); ++p) {
      if (!SimdScan(parser, buffer, parts[p], f)) state.SkipWithError("simdjson failed");
      for (const char* key : kReads[p]) benchmark::DoNotOptimize(f.raw(key));
    }
  }
  state.SetItemsProcessed(state.iterations() * parts.size());
}

// simdjson the way it is fastest: only the fields read, found by name, in a buffer already
// padded (no copy) — what it costs when the caller need not keep raw views of every field.
void BM_Json_Simdjson_FieldsReadOnly(benchmark::State& state) {
  std::vector<std::string> parts = Parts(state.range(0));
  std::vector<size_t> sizes;
  for (std::string& p : parts) {
    sizes.push_back(p.size());
    p.resize(p.size() + simdjson::SIMDJSON_PADDING);
  }
  simdjson::ondemand::parser parser;
  for (auto _ : state) {
    for (size_t p = 0; p < parts.size(); ++p) {
      simdjson::ondemand::document doc;
      if (parser.iterate(parts[p].data(), sizes[p], parts[p].size()).get(doc)) state.SkipWithError("iterate");
      simdjson::ondemand::object object;
      if (doc.get_object().get(object)) state.SkipWithError("object");
      for (const char* key : kReads[p]) {
        std::string_view raw;
        simdjson::ondemand::value v;
        if (object.find_field_unordered(key).get(v) || RawValue(v, raw)) state.SkipWithError("field");
        benchmark::DoNotOptimize(raw);
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * parts.size());
}

void BM_Json_Nlohmann_Parse(benchmark::State& state) {
  const std::vector<std::string> parts = Parts(state.range(0));
  for (auto _ : state) {
    for (size_t p = 0; p < parts.size(); ++p) {
      nlohmann::json j = nlohmann::json::parse(parts[p]);
      for (const char* key : kReads[p]) benchmark::DoNotOptimize(j.find(key));
    }
  }
  state.SetItemsProcessed(state.iterations() * parts.size());
}

// range(0): 1 = the stock Python stack's text, 0 = ours.
BENCHMARK(BM_Json_Ours_JsonFields)->Arg(1)->Arg(0);
BENCHMARK(BM_Json_Simdjson_AllFields)->Arg(1)->Arg(0);
BENCHMARK(BM_Json_Simdjson_FieldsReadOnly)->Arg(1)->Arg(0);
BENCHMARK(BM_Json_Ours_PartFields)->Arg(1)->Arg(0);
BENCHMARK(BM_Json_Nlohmann_Parse)->Arg(1)->Arg(0);

// The hand-written map common/flat_hash_map.hpp had before it became Abseil's: linear probing,
// at most half full.
template <typename Value>
class HandWrittenMap64 {
 public:
  // The value for `key`, inserted (value-initialized) if absent.
  Value& operator[](uint64_t key) {
    if ((size_ + 1) * 2 > slots_.size()) Grow();
    Slot& s = Probe(slots_, Normal(key));
    if (s.key == 0) {
      s.key = Normal(key);
      ++size_;
    }
    return s.value;
  }
  void insert(uint64_t key) { (void)(*this)[key]; }
  const Value* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    const Slot& s = Probe(slots_, Normal(key));
    return s.key ? &s.value : nullptr;
  }
  bool contains(uint64_t key) const { return find(key) != nullptr; }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t key = 0;  // 0: empty
    [[no_unique_address]] Value value{};
  };
  static uint64_t Normal(uint64_t key) { return key ? key : 1; }
  // The slot holding `key`, or the empty slot where it would go (linear probing).
  template <typename Slots>  // std::vector<Slot>, const or not
  static auto& Probe(Slots& slots, uint64_t key) {
    size_t mask = slots.size() - 1;
    for (size_t i = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask;; i = (i + 1) & mask) {
      if (slots[i].key == key || slots[i].key == 0) return slots[i];
    }
  }
  void Grow() {
    std::vector<Slot> bigger(slots_.empty() ? 64 : slots_.size() * 2);
    for (Slot& s : slots_) {
      if (s.key) Probe(bigger, s.key) = std::move(s);
    }
    slots_.swap(bigger);
  }

  std::vector<Slot> slots_;  // size: a power of two, at most half full
  size_t size_ = 0;
};

// The key mix: `live` tasks known at once; each round inserts a new task, looks up a recent
// one twice (its reply, its result query) and one never seen (a dependency on an unknown id).
std::vector<uint64_t> Keys(size_t n) {
  std::vector<uint64_t> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) keys.push_back(std::hash<std::string>{}(MsgId(static_cast<int>(i))));
  return keys;
}

template <typename Map>
void RunMapMix(benchmark::State& state, Map& map, const std::vector<uint64_t>& keys, const std::vector<uint64_t>& absent) {
  size_t i = 0;
  for (auto _ : state) {
    const size_t k = i % keys.size();
    map[keys[k]] = static_cast<uint32_t>(i);
    const size_t recent = (k * 7919) % (k + 1);
    if constexpr (std::is_same_v<Map, HandWrittenMap64<uint32_t>>) {
      benchmark::DoNotOptimize(map.find(keys[recent]));
      benchmark::DoNotOptimize(map.find(keys[k]));
      benchmark::DoNotOptimize(map.find(absent[k]));
    } else {
      benchmark::DoNotOptimize(map.find(keys[recent]) != map.end());
      benchmark::DoNotOptimize(map.find(keys[k]) != map.end());
      benchmark::DoNotOptimize(map.find(absent[k]) != map.end());
    }
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Map_Ours_FlatHashMap64(benchmark::State& state) {
  const std::vector<uint64_t> keys = Keys(state.range(0)), absent = Keys(2 * state.range(0));
  std::vector<uint64_t> missing(absent.begin() + state.range(0), absent.end());
  HandWrittenMap64<uint32_t> map;
  RunMapMix(state, map, keys, missing);
}

void BM_Map_Absl_FlatHashMap(benchmark::State& state) {
  const std::vector<uint64_t> keys = Keys(state.range(0)), absent = Keys(2 * state.range(0));
  std::vector<uint64_t> missing(absent.begin() + state.range(0), absent.end());
  absl::flat_hash_map<uint64_t, uint32_t> map;
  RunMapMix(state, map, keys, missing);
}

// Sizes: a short run, and a long-lived controller's history.
BENCHMARK(BM_Map_Ours_FlatHashMap64)->Arg(10000)->Arg(1000000);
BENCHMARK(BM_Map_Absl_FlatHashMap)->Arg(10000)->Arg(1000000);

// Memory per entry after n inserts (reported as a counter, bytes per key).
void BM_Map_Ours_BytesPerKey(benchmark::State& state) {
  const std::vector<uint64_t> keys = Keys(state.range(0));
  for (auto _ : state) {
    HandWrittenMap64<uint32_t> map;
    for (uint64_t k : keys) map[k] = 1;
    // Slots are 16 bytes; the array doubles when half full.
    size_t slots = 64;
    while (slots < 2 * keys.size()) slots *= 2;
    state.counters["bytes_per_key"] = 16.0 * slots / keys.size();
  }
}
void BM_Map_Absl_BytesPerKey(benchmark::State& state) {
  const std::vector<uint64_t> keys = Keys(state.range(0));
  for (auto _ : state) {
    absl::flat_hash_map<uint64_t, uint32_t> map;
    for (uint64_t k : keys) map[k] = 1;
    state.counters["bytes_per_key"] = (16.0 + 1.0) * map.bucket_count() / keys.size();
  }
}
BENCHMARK(BM_Map_Ours_BytesPerKey)->Arg(100000)->Iterations(1);
BENCHMARK(BM_Map_Absl_BytesPerKey)->Arg(100000)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();

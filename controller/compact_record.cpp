#include "controller/compact_record.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "protocol/clock.hpp"
#include "protocol/json_fields.hpp"

namespace ipp::controller {

namespace {

// Marks a hole in a skeleton and ends each hole in holes_. JSON text never holds a raw 0x01
// (control characters must be escaped inside strings); a text that does is kept whole.
constexpr char kHole = '\x01';
// The values that differ from one message to the next while everything around them repeats.
constexpr std::array<std::string_view, 3> kVaryingKeys = {"msg_id", "date", "started"};
// A record's one result buffer up to this size is kept in its own block, not in a Rare.
constexpr size_t kMaxSmallResult = 256;

// Hole codes: a hole that is exactly one of these bytes stands for the record's msg_id or one of
// its times, as the quoted JSON string they were read from. A real hole is JSON text, which
// never starts with a control character.
enum HoleCode : char { kSameMsgId = '\x02', kSubmitted, kStarted, kCompleted, kReceived };

// What a record's holes most often repeat: its msg_id and its times, quoted as in the messages.
struct Repeats {
  std::string msg_id;
  std::string times[4];  // submitted, started, completed, received ("" if none)
};

// Appends the holes of `text` to `holes` and returns its skeleton; *whole: the text is kept as
// it is (no holes: it holds the marker, or it is not a JSON object the scanner reads).
std::string Split(std::string_view text, const Repeats& repeats, std::string& holes, bool* whole) {
  std::optional<protocol::JsonFields> fields;
  if (text.find(kHole) == std::string_view::npos) fields = protocol::JsonFields::Scan(text);
  *whole = !fields;
  if (!fields) return std::string(text);
  std::array<std::string_view, kVaryingKeys.size()> cuts;
  size_t n = 0;
  for (std::string_view key : kVaryingKeys) {
    if (std::optional<std::string_view> value = fields->raw(key)) cuts[n++] = *value;
  }
  for (size_t i = 1; i < n; ++i) {  // into text order (insertion sort: n <= 3)
    for (size_t j = i; j > 0 && cuts[j].data() < cuts[j - 1].data(); --j) std::swap(cuts[j], cuts[j - 1]);
  }
  std::string skeleton;
  skeleton.reserve(text.size());
  const char* at = text.data();
  for (size_t i = 0; i < n; ++i) {
    skeleton.append(at, cuts[i].data());
    skeleton += kHole;
    if (cuts[i] == repeats.msg_id) {
      holes += kSameMsgId;
    } else {
      size_t t = 0;
      while (t < 4 && cuts[i] != repeats.times[t]) ++t;
      if (t < 4) {
        holes += static_cast<char>(kSubmitted + t);
      } else {
        holes.append(cuts[i]);
      }
    }
    holes += kHole;
    at = cuts[i].data() + cuts[i].size();
  }
  skeleton.append(at, text.data() + text.size());
  return skeleton;
}

// Splices holes (from holes[*cursor] on) into a skeleton; `repeats` gives what codes stand for.
std::string Join(const std::string& skeleton, std::string_view holes, const Repeats& repeats, size_t* cursor) {
  std::string text;
  text.reserve(skeleton.size() + 64);
  for (char c : skeleton) {
    if (c != kHole) {
      text += c;
      continue;
    }
    size_t end = holes.find(kHole, *cursor);
    std::string_view hole = holes.substr(*cursor, end - *cursor);
    if (hole.size() == 1 && hole[0] == kSameMsgId) {
      text += repeats.msg_id;
    } else if (hole.size() == 1 && hole[0] >= kSubmitted && hole[0] <= kReceived) {
      text += repeats.times[hole[0] - kSubmitted];
    } else {
      text.append(hole);
    }
    *cursor = end + 1;
  }
  return text;
}

const std::string* InternOrNull(TextPool& pool, const std::string& text) {
  return text.empty() ? nullptr : pool.Intern(text);
}

std::string TextOf(const std::string* interned) { return interned ? *interned : std::string(); }

}  // namespace

// ---------------------------------------------------------------------------------------------

const std::string* TextPool::Intern(std::string_view text) {
  auto it = texts_.find(text);
  if (it == texts_.end()) it = texts_.emplace(std::string(text), 0).first;
  return &it->first;
}

void TextPool::Release(const std::string* text) {
  if (!text) return;
  auto it = texts_.find(std::string_view(*text));
  if (it != texts_.end() && --it->second == 0) texts_.erase(it);
}

size_t TextPool::ShapeHash::operator()(const Shape& s) const {
  // Texts are interned: equal texts are the same pointer, so the pointers identify the shape.
  size_t h = s.whole;
  for (const std::string* p : s.skeletons) h = h * 0x9E3779B97F4A7C15ull + reinterpret_cast<uintptr_t>(p);
  for (const std::string* p : {s.client_uuid, s.engine_uuid, s.queue}) {
    h = h * 0x9E3779B97F4A7C15ull + reinterpret_cast<uintptr_t>(p);
  }
  return h ^ (h >> 29);
}

const TextPool::Shape* TextPool::AcquireShape(const Shape& shape) {
  auto [it, added] = shapes_.try_emplace(shape, 0);
  if (added) {
    // A new shape holds its texts; Intern() made them with no holder.
    for (const std::string* p : shape.skeletons) {
      if (p) ++texts_.find(std::string_view(*p))->second;
    }
    for (const std::string* p : {shape.client_uuid, shape.engine_uuid, shape.queue}) {
      if (p) ++texts_.find(std::string_view(*p))->second;
    }
  }
  ++it->second;
  return &it->first;
}

void TextPool::ReleaseShape(const Shape* shape) {
  if (!shape) return;
  auto it = shapes_.find(*shape);
  if (it == shapes_.end() || --it->second > 0) return;
  Shape gone = it->first;
  shapes_.erase(it);
  for (const std::string* p : gone.skeletons) Release(p);
  for (const std::string* p : {gone.client_uuid, gone.engine_uuid, gone.queue}) Release(p);
}

// ---------------------------------------------------------------------------------------------

CompactRecord& CompactRecord::operator=(CompactRecord&& other) noexcept {
  if (this == &other) return *this;
  FreeData();
  memory_ = other.memory_;
  data_ = std::exchange(other.data_, nullptr);
  msg_id_size_ = std::exchange(other.msg_id_size_, 0);
  data_size_ = std::exchange(other.data_size_, 0);
  shape_ = std::exchange(other.shape_, nullptr);
  small_result_ = std::exchange(other.small_result_, 0);
  submitted_ = other.submitted_;
  started_ = other.started_;
  completed_ = other.completed_;
  received_ = other.received_;
  rare_ = std::move(other.rare_);
  return *this;
}

CompactRecord::~CompactRecord() { FreeData(); }

void CompactRecord::FreeData() {
  if (data_) memory_->deallocate(data_, std::max<uint32_t>(1, data_size_), 1);
  data_ = nullptr;
  msg_id_size_ = data_size_ = 0;
}

namespace {

Repeats RepeatsOf(std::string_view msg_id, const std::optional<TimePoint> (&times)[4]) {
  Repeats r;
  r.msg_id = protocol::JsonString(msg_id);
  for (size_t t = 0; t < 4; ++t) {
    if (times[t]) r.times[t] = protocol::JsonString(protocol::Iso8601(*times[t]));
  }
  return r;
}

}  // namespace

CompactRecord CompactRecord::From(TaskRecord&& r, TextPool& pool, std::pmr::memory_resource* memory) {
  CompactRecord c;
  const Repeats repeats = RepeatsOf(r.msg_id, {r.submitted, r.started, r.completed, r.received});
  std::string data = std::move(r.msg_id);
  c.msg_id_size_ = static_cast<uint32_t>(data.size());
  const std::string* parts[kParts] = {&r.header,        &r.metadata,        &r.content,
                                      &r.result_header, &r.result_metadata, &r.result_content};
  TextPool::Shape shape;
  for (size_t i = 0; i < kParts; ++i) {
    if (parts[i]->empty()) continue;
    bool whole = false;
    shape.skeletons[i] = pool.Intern(Split(*parts[i], repeats, data, &whole));
    if (whole) shape.whole |= 1u << i;
  }
  shape.client_uuid = InternOrNull(pool, r.client_uuid);
  shape.engine_uuid = InternOrNull(pool, r.engine_uuid);
  shape.queue = InternOrNull(pool, r.queue);
  c.shape_ = pool.AcquireShape(shape);
  bool only_rare_is_one_result_buffer =
      r.result_buffers.size() == 1 && r.buffers.empty() && r.resubmitted.empty() && r.execute_input.empty() &&
      r.execute_result.empty() && r.error.empty() && r.stdout_text.empty() && r.stderr_text.empty();
  if (only_rare_is_one_result_buffer && r.result_buffers[0].size() <= kMaxSmallResult) {
    // Every apply_reply carries one (the pickled result): a Rare for it would double the record.
    data.append(static_cast<const char*>(r.result_buffers[0].data()), r.result_buffers[0].size());
    c.small_result_ = static_cast<uint16_t>(1 + r.result_buffers[0].size());
    r.result_buffers.clear();
  }
  c.memory_ = memory;
  c.data_size_ = static_cast<uint32_t>(data.size());
  c.data_ = static_cast<char*>(memory->allocate(std::max<size_t>(1, data.size()), 1));
  std::memcpy(c.data_, data.data(), data.size());
  c.submitted_ = Nanos(r.submitted);
  c.started_ = Nanos(r.started);
  c.completed_ = Nanos(r.completed);
  c.received_ = Nanos(r.received);
  bool rare = !r.buffers.empty() || !r.result_buffers.empty() || !r.resubmitted.empty() ||
              !r.execute_input.empty() || !r.execute_result.empty() || !r.error.empty() ||
              !r.stdout_text.empty() || !r.stderr_text.empty();
  if (rare) {
    c.rare_ = std::make_unique<Rare>(Rare{std::move(r.buffers), std::move(r.result_buffers),
                                          std::move(r.resubmitted), std::move(r.execute_input),
                                          std::move(r.execute_result), std::move(r.error),
                                          std::move(r.stdout_text), std::move(r.stderr_text)});
  }
  return c;
}

TaskRecord CompactRecord::Expand() const {
  TaskRecord r;
  r.msg_id = msg_id();
  r.submitted = Time(submitted_);
  r.started = Time(started_);
  r.completed = Time(completed_);
  r.received = Time(received_);
  if (shape_) {
    const Repeats repeats = RepeatsOf(r.msg_id, {r.submitted, r.started, r.completed, r.received});
    std::string* parts[kParts] = {&r.header,        &r.metadata,        &r.content,
                                  &r.result_header, &r.result_metadata, &r.result_content};
    size_t cursor = 0;
    for (size_t i = 0; i < kParts; ++i) {
      const std::string* skeleton = shape_->skeletons[i];
      if (!skeleton) continue;
      *parts[i] = (shape_->whole >> i) & 1 ? *skeleton : Join(*skeleton, holes(), repeats, &cursor);
    }
    r.client_uuid = TextOf(shape_->client_uuid);
    r.engine_uuid = TextOf(shape_->engine_uuid);
    r.queue = TextOf(shape_->queue);
  }
  if (rare_) {
    r.buffers = protocol::ShareFrames(rare_->buffers);
    r.result_buffers = protocol::ShareFrames(rare_->result_buffers);
    r.resubmitted = rare_->resubmitted;
    r.execute_input = rare_->execute_input;
    r.execute_result = rare_->execute_result;
    r.error = rare_->error;
    r.stdout_text = rare_->stdout_text;
    r.stderr_text = rare_->stderr_text;
  }
  if (small_result_) r.result_buffers.emplace_back(data_ + data_size_ - SmallResultSize(), SmallResultSize());
  return r;
}

void CompactRecord::Release(TextPool& pool) {
  pool.ReleaseShape(std::exchange(shape_, nullptr));
  FreeData();
  rare_.reset();
}

size_t CompactRecord::ApproximateBytes() const {
  // Pooled texts are counted in full by every holder: the store's size limit errs on the side
  // of culling early.
  size_t n = sizeof(CompactRecord) + data_size_;
  if (shape_) {
    for (const std::string* s : shape_->skeletons) n += s ? s->size() : 0;
  }
  if (rare_) {
    n += sizeof(Rare);
    for (const auto* frames : {&rare_->buffers, &rare_->result_buffers}) {
      for (const auto& b : *frames) n += b.size() + sizeof(zmq::message_t);
    }
    for (const std::string* s : {&rare_->resubmitted, &rare_->execute_input, &rare_->execute_result,
                                 &rare_->error, &rare_->stdout_text, &rare_->stderr_text}) {
      n += s->capacity();
    }
  }
  return n;
}

}  // namespace ipp::controller

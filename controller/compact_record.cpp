#include "controller/compact_record.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

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

// Appends the holes of `text` to `holes` and returns its skeleton; *whole: the text is kept as
// it is (no holes: it holds the marker, or it is not a JSON object the scanner reads).
std::string Split(std::string_view text, std::string& holes, bool* whole) {
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
    holes.append(cuts[i]);
    holes += kHole;
    at = cuts[i].data() + cuts[i].size();
  }
  skeleton.append(at, text.data() + text.size());
  return skeleton;
}

// Splices holes (from holes[*cursor] on) into a skeleton.
std::string Join(const std::string& skeleton, std::string_view holes, size_t* cursor) {
  std::string text;
  text.reserve(skeleton.size() + 64);
  for (char c : skeleton) {
    if (c != kHole) {
      text += c;
      continue;
    }
    size_t end = holes.find(kHole, *cursor);
    text.append(holes.substr(*cursor, end - *cursor));
    *cursor = end + 1;
  }
  return text;
}

const std::string* AcquireOrNull(TextPool& pool, const std::string& text) {
  return text.empty() ? nullptr : pool.Acquire(text);
}

std::string TextOf(const std::string* interned) { return interned ? *interned : std::string(); }

}  // namespace

// ---------------------------------------------------------------------------------------------

const std::string* TextPool::Acquire(std::string_view text) {
  auto it = texts_.find(text);
  if (it == texts_.end()) it = texts_.emplace(std::string(text), 0).first;
  ++it->second;
  return &it->first;
}

void TextPool::Release(const std::string* text) {
  if (!text) return;
  auto it = texts_.find(std::string_view(*text));
  if (it != texts_.end() && --it->second == 0) texts_.erase(it);
}

// ---------------------------------------------------------------------------------------------

CompactRecord& CompactRecord::operator=(CompactRecord&& other) noexcept {
  if (this == &other) return *this;
  FreeData();
  memory_ = other.memory_;
  data_ = std::exchange(other.data_, nullptr);
  msg_id_size_ = std::exchange(other.msg_id_size_, 0);
  data_size_ = std::exchange(other.data_size_, 0);
  whole_ = other.whole_;
  small_result_ = std::exchange(other.small_result_, 0);
  for (size_t i = 0; i < kParts; ++i) skeletons_[i] = std::exchange(other.skeletons_[i], nullptr);
  client_uuid_ = std::exchange(other.client_uuid_, nullptr);
  engine_uuid_ = std::exchange(other.engine_uuid_, nullptr);
  queue_ = std::exchange(other.queue_, nullptr);
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

CompactRecord CompactRecord::From(TaskRecord&& r, TextPool& pool, std::pmr::memory_resource* memory) {
  CompactRecord c;
  std::string data = std::move(r.msg_id);
  c.msg_id_size_ = static_cast<uint32_t>(data.size());
  const std::string* parts[kParts] = {&r.header,        &r.metadata,        &r.content,
                                      &r.result_header, &r.result_metadata, &r.result_content};
  for (size_t i = 0; i < kParts; ++i) {
    if (parts[i]->empty()) continue;
    bool whole = false;
    c.skeletons_[i] = pool.Acquire(Split(*parts[i], data, &whole));
    if (whole) c.whole_ |= 1u << i;
  }
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
  c.client_uuid_ = AcquireOrNull(pool, r.client_uuid);
  c.engine_uuid_ = AcquireOrNull(pool, r.engine_uuid);
  c.queue_ = AcquireOrNull(pool, r.queue);
  c.submitted_ = r.submitted;
  c.started_ = r.started;
  c.completed_ = r.completed;
  c.received_ = r.received;
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
  std::string* parts[kParts] = {&r.header,        &r.metadata,        &r.content,
                                &r.result_header, &r.result_metadata, &r.result_content};
  size_t cursor = 0;
  for (size_t i = 0; i < kParts; ++i) {
    if (!skeletons_[i]) continue;
    *parts[i] = (whole_ >> i) & 1 ? *skeletons_[i] : Join(*skeletons_[i], holes(), &cursor);
  }
  r.client_uuid = TextOf(client_uuid_);
  r.engine_uuid = TextOf(engine_uuid_);
  r.queue = TextOf(queue_);
  r.submitted = submitted_;
  r.started = started_;
  r.completed = completed_;
  r.received = received_;
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
  for (const std::string*& s : skeletons_) {
    pool.Release(s);
    s = nullptr;
  }
  for (const std::string** s : {&client_uuid_, &engine_uuid_, &queue_}) {
    pool.Release(*s);
    *s = nullptr;
  }
  FreeData();
  rare_.reset();
}

size_t CompactRecord::ApproximateBytes() const {
  // Pooled texts are counted in full by every holder: the store's size limit errs on the side
  // of culling early.
  size_t n = sizeof(CompactRecord) + data_size_;
  for (const std::string* s : skeletons_) n += s ? s->size() : 0;
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

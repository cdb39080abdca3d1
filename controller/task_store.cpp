#include "controller/task_store.hpp"

#include <algorithm>

namespace ipp::controller {

Status MemoryTaskStore::Add(TaskRecord&& record) {
  if (index_.count(record.msg_id)) {
    return Status::InvalidArgument("a record for " + record.msg_id + " already exists");
  }
  uint64_t seq = next_seq_++;
  bool completed = record.completed.has_value();
  Slot slot;
  if (completed) {
    slot.done = CompactRecord::From(std::move(record), pool_, &memory_);
  } else {
    slot.pending = std::make_unique<TaskRecord>(std::move(record));
  }
  auto [it, added] = records_.emplace(seq, std::move(slot));
  bytes_ += it->second.bytes();
  index_.emplace(std::string_view(it->second.msg_id()), seq);
  if (completed) completed_order_.push_back(seq);
  CullIfNeeded();
  return Status::OK();
}

Status MemoryTaskStore::Update(const std::string& msg_id,
                               const std::function<void(TaskRecord&)>& change) {
  auto found = index_.find(msg_id);
  if (found == index_.end()) return Status::NotFound("no task record " + msg_id);
  uint64_t seq = found->second;
  Slot& slot = records_.at(seq);
  bytes_ -= slot.bytes();
  // The index's key points into the record's msg_id, which changes place when the record is
  // compacted or expanded: then it is indexed again (most updates leave it where it was).
  const char* key_at = found->first.data();
  bool was_completed = !slot.pending;
  if (was_completed) {  // rare: output that arrives after the result
    slot.pending = std::make_unique<TaskRecord>(slot.done.Expand());
    slot.done.Release(pool_);
    slot.done = CompactRecord();
  }
  TaskRecord& r = *slot.pending;
  change(r);
  if (r.msg_id != msg_id) r.msg_id = msg_id;  // the key cannot change
  if (r.completed) {
    slot.done = CompactRecord::From(std::move(r), pool_, &memory_);
    slot.pending.reset();
  }
  bytes_ += slot.bytes();
  if (slot.msg_id().data() != key_at) {
    index_.erase(found);  // nothing was inserted since it was found: still valid
    index_.emplace(slot.msg_id(), seq);
  }
  if (!was_completed && !slot.pending) completed_order_.push_back(seq);
  CullIfNeeded();
  return Status::OK();
}

Result<std::vector<TaskRecord>> MemoryTaskStore::Find(const RecordQuery& query) const {
  std::vector<TaskRecord> out;
  for (const auto& [seq, slot] : records_) {
    if (Matches(query, slot)) out.push_back(slot.Copy());
  }
  return out;
}

Result<std::vector<TaskRecord>> MemoryTaskStore::FindIds(const std::vector<std::string>& ids) const {
  std::vector<TaskRecord> out;
  for (const std::string& id : ids) {
    auto it = index_.find(id);
    if (it != index_.end()) out.push_back(records_.at(it->second).Copy());
  }
  return out;
}

bool MemoryTaskStore::Matches(const RecordQuery& query, const Slot& slot) {
  return slot.pending ? query.Matches(*slot.pending) : query.Matches(slot.done.Expand());
}

void MemoryTaskStore::Erase(uint64_t seq) {
  auto it = records_.find(seq);
  if (it == records_.end()) return;
  bytes_ -= it->second.bytes();
  index_.erase(it->second.msg_id());
  it->second.done.Release(pool_);
  records_.erase(it);
  if (records_.empty()) {
    index_ = decltype(index_)(&memory_);  // its bucket array too
    completed_order_.clear();
    memory_.release();
  }
}

Status MemoryTaskStore::Drop(const RecordQuery& query) {
  std::vector<uint64_t> doomed;
  for (const auto& [seq, slot] : records_) {
    if (Matches(query, slot)) doomed.push_back(seq);
  }
  for (uint64_t seq : doomed) Erase(seq);
  if (completed_order_.size() > 2 * records_.size() + 64) {  // drop stale entries now and then
    std::deque<uint64_t> kept;
    for (uint64_t seq : completed_order_) {
      if (records_.count(seq)) kept.push_back(seq);
    }
    completed_order_.swap(kept);
  }
  return Status::OK();
}

Result<std::vector<std::string>> MemoryTaskStore::History() const {
  std::vector<std::pair<TimePoint, std::string_view>> submitted;
  for (const auto& [seq, slot] : records_) {
    const std::optional<TimePoint>& t = slot.pending ? slot.pending->submitted : slot.done.submitted();
    if (t) submitted.emplace_back(*t, slot.msg_id());
  }
  std::stable_sort(submitted.begin(), submitted.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> ids;
  ids.reserve(submitted.size());
  for (const auto& s : submitted) ids.emplace_back(s.second);
  return ids;
}

void MemoryTaskStore::CullIfNeeded() {
  if (records_.size() <= limits_.record_limit && bytes_ <= limits_.size_limit) return;
  // Like DictDB: drop a fraction of the oldest *completed* records; pending ones are never lost.
  size_t target = std::max<size_t>(1, static_cast<size_t>(records_.size() * limits_.cull_fraction));
  if (records_.size() > limits_.record_limit) {
    target = std::max(target, records_.size() - limits_.record_limit);
  }
  size_t culled = 0;
  while (!completed_order_.empty() && (culled < target || bytes_ > limits_.size_limit)) {
    uint64_t seq = completed_order_.front();
    completed_order_.pop_front();
    auto it = records_.find(seq);
    if (it == records_.end() || it->second.pending) continue;  // already dropped
    Erase(seq);
    ++culled;
  }
}

}  // namespace ipp::controller

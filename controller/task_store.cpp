#include "controller/task_store.hpp"

#include <algorithm>

namespace ipp::controller {

Status MemoryTaskStore::Add(TaskRecord&& record) {
  if (index_.count(record.msg_id)) {
    return Status::InvalidArgument("a record for " + record.msg_id + " already exists");
  }
  uint64_t seq = next_seq_++;
  bytes_ += record.ApproximateBytes();
  bool completed = record.completed.has_value();
  auto [it, added] = records_.emplace(seq, std::move(record));
  index_.emplace(std::string_view(it->second.msg_id), seq);
  if (completed) completed_order_.push_back(seq);
  CullIfNeeded();
  return Status::OK();
}

Status MemoryTaskStore::Update(const std::string& msg_id,
                               const std::function<void(TaskRecord&)>& change) {
  auto found = index_.find(msg_id);
  if (found == index_.end()) return Status::NotFound("no task record " + msg_id);
  uint64_t seq = found->second;
  TaskRecord& r = records_.at(seq);
  bytes_ -= r.ApproximateBytes();
  bool was_completed = r.completed.has_value();
  change(r);
  if (r.msg_id != msg_id) {
    // The index's key points into r.msg_id: a change to it must be undone and re-indexed.
    index_.erase(msg_id);
    r.msg_id = msg_id;
    index_.emplace(std::string_view(r.msg_id), seq);
  }
  bytes_ += r.ApproximateBytes();
  if (!was_completed && r.completed) completed_order_.push_back(seq);
  CullIfNeeded();
  return Status::OK();
}

Result<std::vector<TaskRecord>> MemoryTaskStore::Find(const RecordQuery& query) const {
  std::vector<TaskRecord> out;
  for (const auto& [seq, record] : records_) {
    if (query.Matches(record)) out.push_back(record.Clone());
  }
  return out;
}

Result<std::vector<TaskRecord>> MemoryTaskStore::FindIds(const std::vector<std::string>& ids) const {
  std::vector<TaskRecord> out;
  for (const std::string& id : ids) {
    auto it = index_.find(id);
    if (it != index_.end()) out.push_back(records_.at(it->second).Clone());
  }
  return out;
}

void MemoryTaskStore::Erase(uint64_t seq) {
  auto it = records_.find(seq);
  if (it == records_.end()) return;
  bytes_ -= it->second.ApproximateBytes();
  index_.erase(std::string_view(it->second.msg_id));
  records_.erase(it);
}

Status MemoryTaskStore::Drop(const RecordQuery& query) {
  std::vector<uint64_t> doomed;
  for (const auto& [seq, record] : records_) {
    if (query.Matches(record)) doomed.push_back(seq);
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
  std::vector<const TaskRecord*> submitted;
  for (const auto& [seq, record] : records_) {
    if (record.submitted) submitted.push_back(&record);
  }
  std::stable_sort(submitted.begin(), submitted.end(),
                   [](const TaskRecord* a, const TaskRecord* b) { return *a->submitted < *b->submitted; });
  std::vector<std::string> ids;
  ids.reserve(submitted.size());
  for (const TaskRecord* r : submitted) ids.push_back(r->msg_id);
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
    if (it == records_.end() || !it->second.completed) continue;  // already dropped
    Erase(seq);
    ++culled;
  }
}

}  // namespace ipp::controller

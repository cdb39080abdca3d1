#include "controller/task_store.hpp"

#include <algorithm>

namespace ipp::controller {

Status MemoryTaskStore::Add(TaskRecord&& record) {
  if (records_.count(record.msg_id)) {
    return Status::InvalidArgument("a record for " + record.msg_id + " already exists");
  }
  std::string id = record.msg_id;
  bytes_ += record.ApproximateBytes();
  if (record.completed) completed_order_.push_back(id);
  records_.emplace(id, std::move(record));
  order_.push_back(std::move(id));
  CullIfNeeded();
  return Status::OK();
}

Status MemoryTaskStore::Update(const std::string& msg_id,
                               const std::function<void(TaskRecord&)>& change) {
  auto it = records_.find(msg_id);
  if (it == records_.end()) return Status::NotFound("no task record " + msg_id);
  bytes_ -= it->second.ApproximateBytes();
  bool was_completed = it->second.completed.has_value();
  change(it->second);
  bytes_ += it->second.ApproximateBytes();
  if (!was_completed && it->second.completed) completed_order_.push_back(msg_id);
  CullIfNeeded();
  return Status::OK();
}

Result<std::vector<TaskRecord>> MemoryTaskStore::Find(const RecordQuery& query) const {
  std::vector<TaskRecord> out;
  for (const std::string& id : order_) {
    auto it = records_.find(id);
    if (it != records_.end() && query.Matches(it->second)) out.push_back(it->second.Clone());
  }
  return out;
}

Result<std::vector<TaskRecord>> MemoryTaskStore::FindIds(const std::vector<std::string>& ids) const {
  std::vector<TaskRecord> out;
  for (const std::string& id : ids) {
    auto it = records_.find(id);
    if (it != records_.end()) out.push_back(it->second.Clone());
  }
  return out;
}

void MemoryTaskStore::Erase(const std::string& msg_id) {
  auto it = records_.find(msg_id);
  if (it == records_.end()) return;
  bytes_ -= it->second.ApproximateBytes();
  records_.erase(it);
}

Status MemoryTaskStore::Drop(const RecordQuery& query) {
  std::vector<std::string> doomed;
  for (auto& [id, record] : records_) {
    if (query.Matches(record)) doomed.push_back(id);
  }
  for (const std::string& id : doomed) Erase(id);
  // Compact the order lists now and then so dropped ids do not accumulate.
  if (order_.size() > 2 * records_.size() + 64) CompactOrder();
  if (completed_order_.size() > 2 * records_.size() + 64) {
    std::deque<std::string> kept;
    for (std::string& id : completed_order_) {
      if (records_.count(id)) kept.push_back(std::move(id));
    }
    completed_order_.swap(kept);
  }
  return Status::OK();
}

Result<std::vector<std::string>> MemoryTaskStore::History() const {
  std::vector<const TaskRecord*> submitted;
  for (const std::string& id : order_) {
    auto it = records_.find(id);
    if (it != records_.end() && it->second.submitted) submitted.push_back(&it->second);
  }
  std::stable_sort(submitted.begin(), submitted.end(),
                   [](const TaskRecord* a, const TaskRecord* b) { return *a->submitted < *b->submitted; });
  std::vector<std::string> ids;
  ids.reserve(submitted.size());
  for (const TaskRecord* r : submitted) ids.push_back(r->msg_id);
  return ids;
}

void MemoryTaskStore::CompactOrder() {
  std::deque<std::string> kept;
  for (std::string& id : order_) {
    if (records_.count(id)) kept.push_back(std::move(id));
  }
  order_.swap(kept);
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
    std::string id = std::move(completed_order_.front());
    completed_order_.pop_front();
    auto it = records_.find(id);
    if (it == records_.end() || !it->second.completed) continue;  // already dropped
    Erase(id);
    ++culled;
  }
  if (order_.size() > 2 * records_.size() + 1024) CompactOrder();
}

}  // namespace ipp::controller

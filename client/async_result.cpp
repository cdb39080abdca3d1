// AsyncResult: the user's side of a batch of messages, read under the ResultState's lock.
#include "client/result_state.hpp"

namespace ipp {

namespace detail {

ResultState::ResultState(std::vector<std::string> ids) : msg_ids(std::move(ids)) {
  size_t n = msg_ids.size();
  tasks.resize(n);
  got_reply.assign(n, 0);
  needs_idle.assign(n, 0);
  got_idle.assign(n, 0);
  done.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    tasks[i].msg_id = msg_ids[i];
    tasks[i].status = "pending";
  }
}

void ResultState::MaybeComplete(size_t i, std::unique_lock<std::mutex>& lock) {
  if (done[i] || !got_reply[i] || (needs_idle[i] && !got_idle[i])) return;
  done[i] = 1;
  TaskInfo snapshot;
  if (!callbacks.empty()) snapshot = tasks[i];  // callbacks see it without the lock held
  size_t ran = 0;
  while (ran < callbacks.size()) {
    std::vector<std::function<void(size_t, const TaskInfo&)>> batch(callbacks.begin() + static_cast<long>(ran),
                                                                     callbacks.end());
    ran = callbacks.size();
    lock.unlock();
    for (auto& cb : batch) cb(i, snapshot);
    lock.lock();
  }
  ++done_count;
  completion_order.push_back(i);
  // Waiters wait for all (wait()): waking them for each of 100,000 messages cost the client a
  // context switch per task.
  if (done_count == msg_ids.size()) changed.notify_all();
}

}  // namespace detail

const std::vector<std::string>& AsyncResult::msg_ids() const {
  static const std::vector<std::string> kNone;
  return state_ ? state_->msg_ids : kNone;
}

bool AsyncResult::ready() const {
  if (!state_) return true;
  std::lock_guard lock(state_->mutex);
  return state_->done_count == state_->msg_ids.size();
}

bool AsyncResult::wait(Millis timeout) const {
  if (!state_) return true;
  std::unique_lock lock(state_->mutex);
  auto all_done = [&] { return state_->done_count == state_->msg_ids.size(); };
  if (timeout == kForever) {
    state_->changed.wait(lock, all_done);
    return true;
  }
  return state_->changed.wait_for(lock, timeout, all_done);
}

std::vector<Json> AsyncResult::get(Millis timeout) const {
  if (!wait(timeout)) {
    throw TimeoutError("result not ready within " + std::to_string(timeout.count()) + " ms (" +
                       std::to_string(progress()) + "/" + std::to_string(size()) + " done)");
  }
  std::vector<Json> out;
  if (!state_) return out;
  std::lock_guard lock(state_->mutex);
  std::vector<size_t> order;
  if (state_->unordered) {
    order = state_->completion_order;
  } else {
    for (size_t i = 0; i < state_->tasks.size(); ++i) order.push_back(i);
  }
  for (size_t i : order) {
    const TaskInfo& t = state_->tasks[i];
    if (t.error) throw *t.error;
  }
  for (size_t i : order) {
    const TaskInfo& t = state_->tasks[i];
    if (state_->flatten && t.result.is_array()) {
      for (const Json& item : t.result) out.push_back(item);
    } else {
      out.push_back(t.result);
    }
  }
  return out;
}

Json AsyncResult::get_one(Millis timeout) const {
  std::vector<Json> all = get(timeout);
  if (all.size() != 1) throw std::logic_error("get_one() on a result of " + std::to_string(all.size()) + " values");
  return all.front();
}

bool AsyncResult::successful() const {
  if (!ready()) throw std::logic_error("AsyncResult::successful() before it is ready");
  if (!state_) return true;
  std::lock_guard lock(state_->mutex);
  for (const TaskInfo& t : state_->tasks) {
    if (t.error) return false;
  }
  return true;
}

size_t AsyncResult::progress() const {
  if (!state_) return 0;
  std::lock_guard lock(state_->mutex);
  return state_->done_count;
}

size_t AsyncResult::size() const { return state_ ? state_->msg_ids.size() : 0; }

std::vector<TaskInfo> AsyncResult::info() const {
  if (!state_) return {};
  std::lock_guard lock(state_->mutex);
  return state_->tasks;
}

void AsyncResult::on_each(std::function<void(size_t, const TaskInfo&)> callback) const {
  if (!state_) return;
  std::vector<std::pair<size_t, TaskInfo>> already;
  {
    std::lock_guard lock(state_->mutex);
    state_->callbacks.push_back(callback);
    for (size_t i : state_->completion_order) already.emplace_back(i, state_->tasks[i]);
  }
  for (auto& [i, t] : already) callback(i, t);
}
}  // namespace ipp

// AsyncResult: the user's side of a batch of messages, read under the ResultState's lock.
#include "client/result_state.hpp"

#include <optional>

namespace ipp {

const char* TaskStatusName(TaskStatus status) {
  switch (status) {
    case TaskStatus::kPending: return "pending";
    case TaskStatus::kOk: return "ok";
    case TaskStatus::kError: return "error";
    case TaskStatus::kAborted: return "aborted";
  }
  return "unknown";
}

// Failures the client or the hub found carry engine id -1 and one of these enames (see the
// header's "Errors"); every other error comes from an engine that ran (or aborted) the request.
Status ToStatus(const RemoteError& error) {
  const std::string& ename = error.ename();
  if (ename == "TimeoutError" || ename == "TaskTimeout") return Status::Timeout(error.what());
  if (error.engine_id() < 0 && (ename == "IndexError" || ename == "KeyError")) return Status::NotFound(error.what());
  return Status::RemoteError(error.what());
}

Status ToStatus(const TimeoutError& error) { return Status::Timeout(error.what()); }

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

namespace {

// What get() finds: the values, or the error it throws.
struct Outcome {
  std::vector<Json> values;
  std::optional<RemoteError> error;
  std::optional<TimeoutError> timeout;
};

Outcome Collect(const AsyncResult& r, const std::shared_ptr<detail::ResultState>& state, Millis timeout) {
  Outcome out;
  if (!r.wait(timeout)) {
    out.timeout.emplace("result not ready within " + std::to_string(timeout.count()) + " ms (" +
                        std::to_string(r.progress()) + "/" + std::to_string(r.size()) + " done)");
    return out;
  }
  if (!state) return out;
  std::lock_guard lock(state->mutex);
  std::vector<size_t> order;
  if (state->unordered) {
    order = state->completion_order;
  } else {
    for (size_t i = 0; i < state->tasks.size(); ++i) order.push_back(i);
  }
  for (size_t i : order) {
    const TaskInfo& t = state->tasks[i];
    if (t.error) {
      out.error = *t.error;
      return out;
    }
  }
  for (size_t i : order) {
    const TaskInfo& t = state->tasks[i];
    if (state->flatten && t.result.is_array()) {
      for (const Json& item : t.result) out.values.push_back(item);
    } else {
      out.values.push_back(t.result);
    }
  }
  return out;
}

}  // namespace

std::vector<Json> AsyncResult::get(Millis timeout) const {
  Outcome out = Collect(*this, state_, timeout);
  if (out.timeout) throw *out.timeout;
  if (out.error) throw *out.error;
  return std::move(out.values);
}

Result<std::vector<Json>> AsyncResult::result(Millis timeout) const {
  Outcome out = Collect(*this, state_, timeout);
  if (out.timeout) return ToStatus(*out.timeout);
  if (out.error) return ToStatus(*out.error);
  return std::move(out.values);
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

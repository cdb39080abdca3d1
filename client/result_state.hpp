// What an AsyncResult shares with the client's I/O thread: the state of a batch of messages.
// Private to the client library (not installed): users see only AsyncResult.
//
// Threads: the I/O thread writes a ResultState as replies and output arrive; user threads read
// it through AsyncResult and block on it. Everything in it is guarded by `mutex`.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ipp/client.hpp"

namespace ipp::detail {

struct ResultState {
  // Guards everything below.
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::vector<std::string> msg_ids;
  std::vector<TaskInfo> tasks;
  std::vector<char> got_reply, needs_idle, got_idle, done;
  size_t done_count = 0;
  bool flatten = false;    // each message's result is a list of items (map)
  bool unordered = false;  // get() in completion order
  std::vector<size_t> completion_order;
  std::vector<std::function<void(size_t, const TaskInfo&)>> callbacks;

  explicit ResultState(std::vector<std::string> ids);

  // Called with the lock held. Runs the callbacks (without the lock), then counts the message
  // as done and wakes waiters: wait() returning means every callback of every message has run.
  // A callback added by on_each meanwhile is run here too (on_each replays only messages
  // already counted), so none is missed and none runs twice.
  void MaybeComplete(size_t i, std::unique_lock<std::mutex>& lock);
};

// The library's way to make an AsyncResult from its state (the constructor is private).
struct ResultAccess {
  static AsyncResult Make(std::shared_ptr<ResultState> state) { return AsyncResult(std::move(state)); }
};

}  // namespace ipp::detail

// What an AsyncResult shares with the client's I/O thread: the state of a batch of messages.
// Private to the client library (not installed): users see only AsyncResult.
//
// Threads: the I/O work (done by the I/O thread, or by a user thread waiting for a result: see
// ClientImpl::WaitHere) writes a ResultState as replies and output arrive; user threads read it
// through AsyncResult and block on it. Everything in it is guarded by `mutex`.
#pragma once

#include <condition_variable>
#include <functional>
#include <utility>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ipp/client.hpp"

namespace ipp::detail {

struct ResultState;

// The client a state's waiters may do the I/O work for (ClientImpl::WaitHere): shared by the
// client and its states, as a state may outlive its client. Guarded by `mutex`.
struct IoLink {
  std::mutex mutex;
  std::condition_variable idle;
  ClientImpl* impl = nullptr;  // null once the client is closing
  int waiting = 0;             // threads in WaitHere, which Close() waits out
};

// Set by a user thread while it does the I/O work: callbacks are the I/O thread's (see
// on_each), so a message with callbacks is left to it, listed here, not completed.
inline thread_local std::vector<std::pair<std::shared_ptr<ResultState>, size_t>>* defer_callbacks = nullptr;

struct ResultState : std::enable_shared_from_this<ResultState> {
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
  // Eventfds of the threads waiting in WaitHere, written when the last message is done.
  std::vector<int> wake_fds;
  std::shared_ptr<IoLink> link;  // set for the messages a client sent; null for a failed request

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

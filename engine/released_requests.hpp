// ReleasedRequests: queued requests this engine gave back to the task scheduler while it ran
// another (ipp_release_request), so that an idle engine can run them instead of their waiting
// behind a long task here.
//
// Shared by the engine's two threads, under one mutex: the control thread releases ids (it
// answers control messages while a request runs), the shell thread asks before it starts each
// request. So each named id is either started here or released, never both: the scheduler
// runs a released task elsewhere knowing this engine never will, and this engine drops it,
// unanswered, when its turn comes.
#pragma once

#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/recent_ids.hpp"

namespace ipp::engine {

class ReleasedRequests {
 public:
  // Control thread: those of `ids` that have not started here; they never will.
  std::vector<std::string> Release(const std::vector<std::string>& ids);
  // Shell thread, before a request starts: false if it was released (it is then forgotten).
  bool Start(const std::string& msg_id);

 private:
  std::mutex mutex_;
  // The scheduler names only tasks whose replies it has not had yet: started ids are needed
  // only until a reply reaches it, and an engine holds at most a few hundred tasks at once.
  RecentIds started_{1024};
  // Released ids that have not come off the shell socket yet (they may already be on it), with
  // how many copies to drop: the scheduler may send a released task here again (re-signed),
  // behind the copy it released. Bounded: a copy may never come (its engine lost it).
  std::unordered_map<std::string, int> released_;
  std::deque<std::string> release_order_;
  static constexpr size_t kMaxReleased = 1u << 14;
};

}  // namespace ipp::engine

// ReleasedRequests: queued requests this engine gave back to the task scheduler while it ran
// another (ipp_release_request), so that an idle engine can run them instead of their waiting
// behind a long task here.
//
// Shared by the engine's two threads, under one mutex: the control thread releases ids (it
// answers control messages while a request runs), the shell thread asks before it does anything
// with a request that came off its socket. So each named id is either started here or released,
// never both: the scheduler runs a released task elsewhere knowing this engine never will, and
// this engine drops it, unanswered, when it comes.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace ipp::engine {

class ReleasedRequests {
 public:
  // Control thread: those of `ids` that have not started here; they never will.
  std::vector<std::string> Release(const std::vector<std::string>& ids);
  // Shell thread, for each request as it comes off the socket: false if it was released (that
  // copy is then forgotten; a later copy starts).
  bool Start(const std::string& msg_id);

 private:
  std::mutex mutex_;
  // Hashes of the latest started ids, in a ring: the scheduler names only tasks whose replies it
  // has not read yet. Hashes keep it small; a collision only makes a task look started, and a
  // started task is never released. Allocated at the first request: an idle engine stays lean.
  static constexpr size_t kStarted = 1u << 14;
  std::vector<uint64_t> started_;
  size_t next_started_ = 0;
  // Released ids whose copies have not come off the shell socket yet, with how many copies to
  // drop (the scheduler may send a released task here again, behind the copy it released).
  // Bounded (a copy may never come: its engine lost it); a generation tells an entry's place in
  // the order from an older one of the same id.
  struct Pending {
    int copies = 0;
    uint64_t generation = 0;
  };
  std::unordered_map<std::string, Pending> released_;
  std::deque<std::pair<std::string, uint64_t>> release_order_;
  uint64_t generation_ = 0;
  static constexpr size_t kMaxReleased = 1u << 14;
};

}  // namespace ipp::engine

// TaskJournal: the durable record of accepted load-balanced requests that a restored controller
// runs again (ipcontroller --task-journal; ipcluster starts supervised controllers with it).
//
// An append-only file of entries: "accepted" (msg_id, the client's routing id, and the wire
// message from its delimiter on, buffers included) and "finished" (msg_id). Appends collect in
// memory and reach the file in one write() per Flush(), which the hub calls every
// TaskStore::kFlushPeriod: a killed controller loses at most the last period's entries (the page
// cache keeps what was written); fdatasync runs at most once per kSyncPeriod, bounding what a
// machine crash loses. When the file holds much more than what is still pending it is rewritten
// with the pending entries only. Single-threaded: owned and used by the hub's thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ipp/status.hpp"
#include "protocol/message.hpp"

namespace ipp::controller {

class TaskJournal {
 public:
  // An accepted request with no finished entry.
  struct Pending {
    std::string msg_id;
    protocol::Frames frames;  // [client routing id, delimiter, signature, header, ...buffers]
  };
  static constexpr std::chrono::milliseconds kSyncPeriod{1000};

  // Opens `file`: `restore` reads what it holds first (Pending()), otherwise it starts empty.
  static Result<std::unique_ptr<TaskJournal>> Open(const std::filesystem::path& file, bool restore);
  ~TaskJournal();

  // A request the scheduler accepted: `raw` with its client's routing id first. Ignored when
  // the msg_id is already pending (a restored request accepted again).
  void Accepted(const std::string& msg_id, const protocol::RawMessage& raw);
  // Its final reply was sent; ignored for msg_ids not pending.
  void Finished(const std::string& msg_id);
  // Writes the entries appended since the last call (and compacts the file when due).
  void Flush();
  // The pending requests in the order they were accepted (each with a copy of its frames).
  std::vector<Pending> PendingRequests() const;
  size_t pending() const { return by_id_.size(); }

 private:
  explicit TaskJournal(std::filesystem::path file) : file_(std::move(file)) {}
  Status Load();
  Status Compact();  // rewrites the file with the pending entries only

  std::filesystem::path file_;
  int fd_ = -1;
  std::string unwritten_;
  uint64_t file_bytes_ = 0, pending_bytes_ = 0;
  std::chrono::steady_clock::time_point last_sync_{};
  // Pending entries, encoded as in the file, by acceptance order; and their order by msg_id.
  std::map<uint64_t, std::string> entries_;
  std::unordered_map<std::string, uint64_t> by_id_;
  uint64_t next_seq_ = 0;
};

}  // namespace ipp::controller

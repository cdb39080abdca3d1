// MapStream: ipp map's items between reading and printing. Lines go in as they are read; each
// chunk of them goes out as one ipp.map task; results come out in input order, each as soon as it
// and those before it are done. Used from the main thread only; the Client behind the view
// must outlive it.
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "ipp/client.hpp"

namespace ipp_cmd {

class MapStream {
 public:
  // Tasks of up to `chunk` items calling `function` through `view`; rows as --json when `json`.
  MapStream(ipp::LoadBalancedView view, std::string function, size_t chunk, bool json);

  // One input line: an item of the next chunk (sent once full), or a failed item of its own when
  // it is not JSON; a blank line is skipped.
  void Take(const std::string& line);
  // Sends the chunk being filled, if it holds any item.
  void SendChunk();
  // Prints every entry at the front that is done.
  void PrintReady();
  // Entries (tasks sent, lines that are not JSON) not printed yet.
  size_t unprinted() const { return entries_.size(); }
  // Whether the oldest unprinted entry is a task still running or queued.
  bool FrontWaits() const { return !entries_.empty() && !entries_.front().ready(); }
  // Waits up to `wait` for the oldest unprinted entry.
  void WaitFront(ipp::Millis wait);
  // The tasks not printed yet, for winding them down.
  std::vector<ipp::AsyncResult> UnprintedTasks() const;
  // After a stop: prints every entry as it stands (a task that did not finish, and the chunk not
  // sent yet, as items not run). `timed_out` marks items interrupted by --timeout.
  void PrintAll(bool timed_out);

  size_t items() const { return items_; }
  size_t failed() const { return failed_; }
  size_t not_run() const { return not_run_; }

 private:
  // A task of up to `chunk` items, or a line that is not JSON (a failed item of its own).
  struct Entry {
    std::optional<ipp::AsyncResult> task;
    std::vector<int> lines;  // input line of each item
    std::string not_json;    // the line (cut to a readable length), when it is not JSON
    bool ready() const { return !task || task->ready(); }
  };
  void Print(const Entry& e);
  void PrintNotJson(const Entry& e);
  void PrintNotRun(const std::vector<int>& lines);

  ipp::LoadBalancedView view_;
  const std::string function_;
  const size_t chunk_;
  const bool json_;
  std::deque<Entry> entries_;
  Entry next_chunk_;
  std::vector<nlohmann::json> chunk_items_;
  int line_number_ = 0;
  size_t items_ = 0, failed_ = 0, not_run_ = 0;
  bool timed_out_ = false;
};

}  // namespace ipp_cmd

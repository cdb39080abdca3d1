// Lines of a file or of stdin, taken as they arrive without blocking the caller for longer than
// it asks: ipp map sends work while its input is still being written (a pipe from a slow
// producer, a terminal) and prints results in between. Owned and used by one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace ipp_cmd {

class LineInput {
 public:
  // `path` "-" is stdin. Null, and `*error` says why, when the file cannot be opened.
  static std::unique_ptr<LineInput> Open(const std::string& path, std::string* error);
  ~LineInput();
  LineInput(const LineInput&) = delete;
  LineInput& operator=(const LineInput&) = delete;

  // Appends at most `max` complete lines (without their '\n') to `lines`: those already read,
  // else what one read brings after waiting at most `wait` for input (a signal ends the wait
  // early); the rest stay for the next call. False once the input has ended and every line was
  // given (a last line without '\n' included); error() then says whether a read error ended it.
  bool Read(std::vector<std::string>& lines, size_t max, std::chrono::milliseconds wait);
  const std::string& error() const { return error_; }

 private:
  LineInput(int fd, bool owned, std::string name) : fd_(fd), owned_(owned), name_(std::move(name)) {}
  void End(const std::string& error);
  int fd_;
  bool owned_;
  std::string name_;
  std::deque<std::string> ready_;  // complete lines not given yet
  std::string partial_;            // a line not ended yet
  bool ended_ = false;
  std::string error_;
};

}  // namespace ipp_cmd

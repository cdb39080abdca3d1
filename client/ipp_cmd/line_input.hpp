// Lines of a file or of stdin, taken as they arrive without blocking the caller for longer than
// it asks: ipp map sends work while its input is still being written (a pipe from a slow
// producer, a terminal) and prints results in between. Owned and used by one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ipp/client.hpp"

namespace ipp_cmd {

class LineInput {
 public:
  // `path` "-" is stdin. Null, and `*error` says why, when the file cannot be opened.
  static std::unique_ptr<LineInput> Open(const std::string& path, std::string* error);
  ~LineInput();
  LineInput(const LineInput&) = delete;
  LineInput& operator=(const LineInput&) = delete;

  // Waits at most `wait` for input, then appends the complete lines read (without their '\n') to
  // `lines`; a signal ends the wait early. False once the input has ended (the call that finds
  // the end may still append a last line without '\n'); error() then says whether a read error
  // ended it.
  bool Read(std::vector<std::string>& lines, ipp::Millis wait);
  const std::string& error() const { return error_; }

 private:
  LineInput(int fd, bool owned, std::string name) : fd_(fd), owned_(owned), name_(std::move(name)) {}
  int fd_;
  bool owned_;
  std::string name_;
  std::string partial_;  // a line not ended yet
  bool ended_ = false;
  std::string error_;
};

}  // namespace ipp_cmd

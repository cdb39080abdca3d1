#include "client/ipp_cmd/line_input.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ipp_cmd {

std::unique_ptr<LineInput> LineInput::Open(const std::string& path, std::string* error) {
  if (path == "-") return std::unique_ptr<LineInput>(new LineInput(STDIN_FILENO, false, "stdin"));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  return std::unique_ptr<LineInput>(new LineInput(fd, true, path));
}

LineInput::~LineInput() {
  if (owned_) ::close(fd_);
}

bool LineInput::Read(std::vector<std::string>& lines, ipp::Millis wait) {
  if (ended_) return false;
  // poll, then one read: that read cannot block, and stdin stays as it is (O_NONBLOCK on a
  // shared terminal or pipe would change it for the other processes using it too).
  pollfd item{fd_, POLLIN, 0};
  int ready = ::poll(&item, 1, static_cast<int>(wait.count()));
  if (ready <= 0) {
    if (ready < 0 && errno != EINTR) {
      error_ = "cannot read " + name_ + ": " + std::strerror(errno);
      ended_ = true;
    }
    return !ended_;
  }
  char buffer[1 << 16];
  ssize_t n = ::read(fd_, buffer, sizeof buffer);
  if (n < 0 && errno == EINTR) return true;
  if (n < 0) error_ = "cannot read " + name_ + ": " + std::strerror(errno);
  if (n <= 0) {
    ended_ = true;
    if (!partial_.empty()) lines.push_back(std::move(partial_));  // a last line without '\n'
    partial_.clear();
    return false;
  }
  std::string_view data(buffer, static_cast<size_t>(n));
  for (size_t newline; (newline = data.find('\n')) != std::string_view::npos; data.remove_prefix(newline + 1)) {
    partial_.append(data.substr(0, newline));
    lines.push_back(std::move(partial_));
    partial_.clear();
  }
  partial_.append(data);
  return true;
}

}  // namespace ipp_cmd

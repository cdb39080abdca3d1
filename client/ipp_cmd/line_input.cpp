#include "client/ipp_cmd/line_input.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

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

void LineInput::End(const std::string& error) {
  ended_ = true;
  error_ = error;
  if (!partial_.empty()) ready_.push_back(std::move(partial_));  // a last line without '\n'
  partial_.clear();
}

bool LineInput::Read(std::vector<std::string>& lines, size_t max, std::chrono::milliseconds wait) {
  if (ready_.empty() && !ended_) {
    // poll, then one read: that read cannot block, and stdin stays as it is (O_NONBLOCK on a
    // shared terminal or pipe would change it for the other processes using it too).
    pollfd item{fd_, POLLIN, 0};
    int ready = ::poll(&item, 1, static_cast<int>(wait.count()));
    if (ready < 0 && errno != EINTR) End("cannot read " + name_ + ": " + std::strerror(errno));
    if (ready > 0) {
      char buffer[1 << 16];
      ssize_t n = ::read(fd_, buffer, sizeof buffer);
      if (n == 0) {
        End("");
      } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
        End("cannot read " + name_ + ": " + std::strerror(errno));
      } else if (n > 0) {
        std::string_view data(buffer, static_cast<size_t>(n));
        for (size_t newline; (newline = data.find('\n')) != std::string_view::npos; data.remove_prefix(newline + 1)) {
          partial_.append(data.substr(0, newline));
          ready_.push_back(std::move(partial_));
          partial_.clear();
        }
        partial_.append(data);
      }
    }
  }
  for (; max > 0 && !ready_.empty(); --max) {
    lines.push_back(std::move(ready_.front()));
    ready_.pop_front();
  }
  return !(ended_ && ready_.empty());
}

}  // namespace ipp_cmd

#include "common/stop_flag.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ipp {

StopFlag::StopFlag() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

StopFlag::~StopFlag() { close(fd_); }

void StopFlag::raise() {
  raised_.store(true);
  uint64_t one = 1;
  // Only fails when the counter would overflow: it is readable then anyway.
  [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);
}

void StopFlag::watch(Reactor& reactor, Reactor::Handler on_stop) { reactor.add_fd(fd_, std::move(on_stop)); }

}  // namespace ipp

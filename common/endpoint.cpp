#include "common/endpoint.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ipp {

int BoundPort(zmq::socket_ref socket) {
  std::string endpoint = socket.get(zmq::sockopt::last_endpoint);
  if (endpoint.rfind("tcp://", 0) != 0) return 0;
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

std::optional<sockaddr_un> UnixSocketAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) return std::nullopt;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

int ProbeUnixSocket(const std::string& path) {
  std::optional<sockaddr_un> address = UnixSocketAddress(path);
  if (!address) return ENAMETOOLONG;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno;
  int result = ::connect(fd, reinterpret_cast<sockaddr*>(&*address), sizeof *address) == 0 ? 0 : errno;
  ::close(fd);
  return result;
}

}  // namespace ipp

#include "common/endpoint.hpp"

#include <string>

namespace ipp {

int BoundPort(zmq::socket_ref socket) {
  std::string endpoint = socket.get(zmq::sockopt::last_endpoint);
  if (endpoint.rfind("tcp://", 0) != 0) return 0;
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

}  // namespace ipp

// The port a socket's last bind() got, for endpoints that ask ZeroMQ for any free port ("*").
#pragma once

#include <zmq.hpp>

namespace ipp {

// The TCP port of the socket's last bound endpoint; 0 for a transport without ports
// (inproc://, ipc://), so objects that bind can also be driven over inproc:// in tests.
int BoundPort(zmq::socket_ref socket);

}  // namespace ipp

// The port a socket's last bind() got, for endpoints that ask ZeroMQ for any free port ("*").
#pragma once

#include <sys/un.h>

#include <optional>
#include <string>

#include <zmq.hpp>

namespace ipp {

// The TCP port of the socket's last bound endpoint; 0 for a transport without ports
// (inproc://, ipc://), so objects that bind can also be driven over inproc:// in tests.
int BoundPort(zmq::socket_ref socket);

// Connects to the Unix stream socket at `path` (an ipc:// endpoint's file) and hangs up at once,
// without waiting: 0 if a process listens there, else the errno of connect() (ECONNREFUSED:
// nobody does; EAGAIN: its backlog is full, e.g. a stopped or overloaded listener).
int ProbeUnixSocket(const std::string& path);
// The address of the Unix socket at `path`; nullopt if the path is too long for one.
std::optional<sockaddr_un> UnixSocketAddress(const std::string& path);

}  // namespace ipp

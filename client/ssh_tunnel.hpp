// SshTunnel: reaches a controller on another machine through one `ssh -N -L ...` process, as
// ipyparallel's --ssh does. Private to the client library.
//
// Threads: used by the thread that connects the Client; the tunnel lives as long as the Client
// (its destructor ends the ssh process, after the client's I/O thread has stopped).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "ipp/client.hpp"
#include "protocol/connection_file.hpp"

namespace ipp::detail {

class SshTunnel {
 public:
  SshTunnel() = default;
  SshTunnel(const SshTunnel&) = delete;
  SshTunnel& operator=(const SshTunnel&) = delete;
  ~SshTunnel();

  // Forwards every channel of `info` from a free local port to the controller as seen from
  // `server` ("user@host" or "user@host:port"), and rewrites `info` to the local ends. Returns
  // once the first forward accepts connections, or the ssh failed, or `timeout` passed.
  Status Open(const std::string& server, const std::vector<std::string>& extra, protocol::ConnectionInfo& info,
              Millis timeout);

 private:
  pid_t pid_ = -1;
};

}  // namespace ipp::detail

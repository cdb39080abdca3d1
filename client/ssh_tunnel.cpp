// SshTunnel: one ssh process forwarding every channel of a connection file.
#include "client/ssh_tunnel.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <zmq.hpp>

#include "common/endpoint.hpp"
#include "common/spawn.hpp"

namespace ipp::detail {

namespace {

// A free local TCP port (bound and released at once; ssh binds it right after).
int FreeLocalPort() {
  zmq::context_t ctx;
  zmq::socket_t probe(ctx, zmq::socket_type::router);
  probe.set(zmq::sockopt::linger, 0);
  probe.bind("tcp://127.0.0.1:*");
  return BoundPort(probe);
}

bool PortAccepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

SshTunnel::~SshTunnel() {
  if (pid_ > 0) {
    kill(-pid_, SIGTERM);
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
}

Status SshTunnel::Open(const std::string& server, const std::vector<std::string>& extra, protocol::ConnectionInfo& info,
                         Millis timeout) {
  std::string host = server, port;
  size_t colon = server.rfind(':');
  if (colon != std::string::npos && server.find(']') == std::string::npos) {
    host = server.substr(0, colon);
    port = server.substr(colon + 1);
  }
  std::string remote_ip = info.interface.substr(info.interface.find("://") + 3);
  if (remote_ip == "*" || remote_ip == "0.0.0.0") remote_ip = "127.0.0.1";  // as seen from the ssh server
  std::vector<std::string> argv = {"ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes"};
  if (!port.empty()) argv.insert(argv.end(), {"-p", port});
  argv.insert(argv.end(), extra.begin(), extra.end());
  int first_local = 0;
  for (auto& [channel, value] : info.channels.items()) {
    if (!value.is_number_integer()) continue;
    int local = FreeLocalPort();
    if (!first_local) first_local = local;
    argv.push_back("-L");
    argv.push_back("127.0.0.1:" + std::to_string(local) + ":" + remote_ip + ":" + std::to_string(value.get<int>()));
    value = local;
  }
  argv.push_back(host);
  Result<pid_t> started = Spawn(argv);  // its own process group, stdin from /dev/null
  if (!started.ok()) return Status::Unavailable("cannot start ssh: " + started.status().message());
  pid_ = *started;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!PortAccepts(first_local)) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::Unavailable("ssh to " + server + " failed (exit " + std::to_string(WEXITSTATUS(status)) +
                                 "); check the host, your key and that the controller's ports are reachable from it");
    }
    if (std::chrono::steady_clock::now() > deadline) return Status::Timeout("ssh tunnel to " + server + " did not come up");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  info.interface = "tcp://127.0.0.1";
  return Status::OK();
}

}  // namespace ipp::detail

#include "tests/testutil/testutil.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/endpoint.hpp"
#include "common/spawn.hpp"

namespace ipp::testutil {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "ipp-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) std::abort();
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

bool MakeStaleUnixSocket(const fs::path& path) {
  std::optional<sockaddr_un> address = UnixSocketAddress(path.string());
  if (!address) return false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return false;
  bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&*address), sizeof *address) == 0;
  ::close(fd);  // the file stays: only unlink() removes it
  return bound;
}

std::string BindLoopback(zmq::socket_t& socket) {
  socket.bind("tcp://127.0.0.1:*");
  return socket.get(zmq::sockopt::last_endpoint);
}

Process::Process(const std::vector<std::string>& argv, const fs::path& log_file,
                 const std::vector<std::string>& extra_env) {
  // Through Spawn, which prepares everything before fork: the test process has other threads
  // (a connected client's I/O thread), and a child that allocated between fork and exec could
  // wait for ever on a lock one of them held (seen as a command that never started).
  SpawnOptions options;
  options.environment = extra_env;
  // If the test process dies without running destructors (a timeout's SIGKILL), its
  // controllers and engines must not outlive it.
  options.die_with_parent = true;
  int fd = log_file.empty() ? -1 : open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  options.stdout_fd = options.stderr_fd = fd;
  Result<pid_t> pid = Spawn(argv, options);
  if (fd >= 0) close(fd);
  pid_ = pid.ok() ? *pid : -1;
  EXPECT_TRUE(pid.ok()) << pid.status().ToString();
}

Process::~Process() { kill_group(); }

bool Process::running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = status;
    return false;
  }
  return true;
}

int Process::wait(std::chrono::milliseconds timeout) {
  if (!WaitFor([&] { return !running(); }, timeout)) return -1;
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return -1;
}

void Process::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

void Process::kill_group() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGTERM);
  if (wait(std::chrono::seconds(5)) < 0) {
    ::kill(-pid_, SIGKILL);
    wait(std::chrono::seconds(5));
  }
  ::kill(-pid_, SIGKILL);  // stragglers in the group
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int RunCommand(const std::vector<std::string>& argv, std::string* output,
               std::chrono::milliseconds timeout) {
  TempDir dir;
  fs::path log = dir.path() / "out";
  int rc;
  {
    Process p(argv, log);
    rc = p.wait(timeout);
  }
  if (output) *output = ReadFile(log);
  return rc;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace ipp::testutil

namespace ipp::testutil {

std::string PiPlugin() { return std::string(IPP_BIN_DIR) + "/../lib/libipp_example_pi.so"; }

LocalCluster::LocalCluster(int engines, std::vector<std::string> controller_args) {
  profile_ = dir_.path() / "profile";
  std::vector<std::string> argv = {std::string(IPP_BIN_DIR) + "/ipcontroller", "--profile-dir=" + profile_.string(),
                                   "--ping=300", "--log-level=DEBUG"};
  argv.insert(argv.end(), controller_args.begin(), controller_args.end());
  controller_ = std::make_unique<Process>(argv, dir_.path() / "controller.log");
  if (!WaitFor([&] { return fs::exists(client_file()) || !controller_->running(); }, std::chrono::seconds(20))) return;
  if (!controller_->running()) return;
  for (int i = 0; i < engines; ++i) AddEngine();
  ok_ = true;
}

size_t LocalCluster::AddEngine(std::vector<std::string> extra) {
  std::vector<std::string> argv = {std::string(IPP_BIN_DIR) + "/ipengine", "--profile-dir=" + profile_.string(),
                                   "--load=" + PiPlugin(), "--log-level=DEBUG"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  size_t index = engines_.size();
  engines_.push_back(std::make_unique<Process>(argv, dir_.path() / ("engine-" + std::to_string(index) + ".log")));
  return index;
}

LocalCluster::~LocalCluster() {
  for (auto& e : engines_) e->kill_group();
  controller_.reset();
}

}  // namespace ipp::testutil

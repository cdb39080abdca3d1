// Helpers for tests that start real processes and talk over real sockets.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

namespace ipp::testutil {

// The interpreter that has Debian's ipyparallel and jupyter_client.
inline constexpr const char* kSystemPython = "/usr/bin/python3";

// A fresh private directory removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Binds `socket` to tcp://127.0.0.1 on a free port and returns the endpoint actually bound
// (cppzmq tests/testutil.hpp bind_ip4_loopback).
std::string BindLoopback(zmq::socket_t& socket);

// A child process in its own process group, killed (whole group) at destruction.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::filesystem::path& log_file = {},
          const std::vector<std::string>& extra_env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Waits for exit; returns the exit code, 128+signal, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  void signal(int sig);
  void kill_group();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// Runs `argv` to completion, capturing stdout+stderr into *output; returns its exit code.
int RunCommand(const std::vector<std::string>& argv, std::string* output,
               std::chrono::milliseconds timeout = std::chrono::seconds(60));

std::string ReadFile(const std::filesystem::path& path);

// Leaves a Unix socket file at `path` that nobody listens on, as a killed process leaves its
// ipc:// endpoints. Returns false if it could not.
bool MakeStaleUnixSocket(const std::filesystem::path& path);

}  // namespace ipp::testutil

namespace ipp::testutil {

// A real ipcontroller and `engines` real ipengines (with the example pi plugin loaded) in a
// private profile dir; everything is stopped at destruction.
class LocalCluster {
 public:
  explicit LocalCluster(int engines, std::vector<std::string> controller_args = {});
  ~LocalCluster();
  const std::filesystem::path& profile_dir() const { return profile_; }
  std::filesystem::path client_file() const { return profile_ / "security" / "ipcontroller-client.json"; }
  // Starts one more engine; returns its index in engines().
  size_t AddEngine(std::vector<std::string> extra = {});
  std::vector<std::unique_ptr<Process>>& engines() { return engines_; }
  Process& controller() { return *controller_; }
  std::string Log(const std::string& name) const { return ReadFile(dir_.path() / name); }
  bool ok() const { return ok_; }

 private:
  TempDir dir_;
  std::filesystem::path profile_;
  std::unique_ptr<Process> controller_;
  std::vector<std::unique_ptr<Process>> engines_;
  bool ok_ = false;
};

std::string PiPlugin();

}  // namespace ipp::testutil

// Helpers for tests that start real processes and talk over real sockets.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
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

}  // namespace ipp::testutil

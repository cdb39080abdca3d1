// Runs a shell command for the engine: /bin/sh -c CMD in its own process group, its output
// captured and streamed as it comes, with a timeout. Interrupting or timing out kills the whole
// group (first SIGTERM, then SIGKILL), so no stray grandchildren are left behind.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

namespace ipp::engine {

struct CommandResult {
  int exit_code = -1;      // when it exited
  int term_signal = 0;     // when a signal ended it
  bool timed_out = false;
  bool interrupted = false;
  std::string stdout_text, stderr_text;
  bool ok() const { return exit_code == 0 && term_signal == 0 && !timed_out && !interrupted; }
  std::string describe(const std::string& command) const;
};

struct CommandControl {
  std::atomic<pid_t> process_group{0};  // set while the command runs
  std::atomic<bool> interrupt{false};   // set by another thread to stop it
};

using OutputCallback = std::function<void(const char* stream, std::string_view text)>;

// zero timeout: none. `control` may be nullptr.
CommandResult RunCommand(const std::string& command, std::chrono::milliseconds timeout,
                         const OutputCallback& on_output, CommandControl* control);

}  // namespace ipp::engine

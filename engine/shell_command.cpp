#include "engine/shell_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/spawn.hpp"

namespace ipp::engine {

std::string CommandResult::describe(const std::string& command) const {
  if (timed_out) return "Command '" + command + "' timed out";
  if (interrupted) return "Command '" + command + "' was interrupted";
  if (term_signal) return "Command '" + command + "' died with signal " + std::to_string(term_signal);
  return "Command '" + command + "' returned non-zero exit status " + std::to_string(exit_code);
}

CommandResult RunCommand(const std::string& command, std::chrono::milliseconds timeout,
                         const OutputCallback& on_output, CommandControl* control) {
  CommandResult result;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.stderr_text = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    result.stderr_text = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  SpawnOptions options;
  options.group = SpawnOptions::Group::kNewGroup;
  options.stdout_fd = out_pipe[1];
  options.stderr_fd = err_pipe[1];
  options.default_signals = {SIGPIPE};
  options.program = "/bin/sh";
  Result<pid_t> spawned = Spawn({"sh", "-c", command}, options);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (!spawned.ok()) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.stderr_text = spawned.status().message();
    return result;
  }
  const pid_t pid = *spawned;
  if (control) control->process_group.store(pid);

  auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point kill_at{};
  bool term_sent = false;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buffer[65536];
  while (open_fds > 0) {
    int n = poll(fds, 2, 50);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2 && n > 0; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) {
        std::string_view text(buffer, static_cast<size_t>(got));
        (i == 0 ? result.stdout_text : result.stderr_text).append(text);
        if (on_output) on_output(i == 0 ? "stdout" : "stderr", text);
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
    auto now = std::chrono::steady_clock::now();
    bool stop = false;
    if (timeout.count() > 0 && now - start > timeout && !result.interrupted) {
      result.timed_out = true;
      stop = true;
    }
    if (control && control->interrupt.load() && !result.timed_out) {
      result.interrupted = true;
      stop = true;
    }
    if (stop && !term_sent) {
      kill(-pid, SIGTERM);
      term_sent = true;
      kill_at = now + std::chrono::seconds(2);
    } else if (term_sent && now >= kill_at) {
      kill(-pid, SIGKILL);  // it did not go quietly; a group member may still hold the pipes
      kill_at = now + std::chrono::hours(1);
    }
  }
  for (auto& fd : fds) {
    if (fd.fd >= 0) close(fd.fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (term_sent) kill(-pid, SIGKILL);  // leave no member of the group behind
  if (control) control->process_group.store(0);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

}  // namespace ipp::engine

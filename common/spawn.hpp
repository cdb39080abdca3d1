// Starting a child process: the one place that forks and execs (launchers' ipcontroller,
// ipengine, ssh, mpiexec and batch submit commands; the engine's shell commands).
//
// Between fork and exec the child makes only async-signal-safe calls (the parent may have other
// threads holding malloc's or the logger's locks): everything it needs is prepared before fork.
// Spawn is thread-safe. Descriptors the caller opens for the child should be O_CLOEXEC: the
// child's copies on 0/1/2 are made by dup2, which clears that flag on them only.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "ipp/status.hpp"

namespace ipp {

struct SpawnOptions {
  enum class Group {
    kInherit,     // stays in our process group
    kNewGroup,    // its own process group (pgid = pid), so kill(-pid) reaches it and its children
    kNewSession,  // its own session and group: also outlives our terminal (launched daemons)
  };
  Group group = Group::kNewGroup;
  // The child's stdio: a descriptor of ours, or -1 for stdin from /dev/null and for stdout and
  // stderr inherited from us.
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  // Signals put back to their default action in the child (an ignored signal stays ignored
  // across exec, and we ignore SIGPIPE).
  std::vector<int> default_signals;
  // The program to run when it is not argv[0] (which is then only the name it sees itself as).
  std::string program;
  // "NAME=VALUE" entries set in the child's environment (ours otherwise; a name here replaces ours).
  std::vector<std::string> environment;
  // The child is killed (SIGKILL) when the thread that spawned it ends (PR_SET_PDEATHSIG), and
  // does not start if we are already gone: test harnesses whose children must not outlive them.
  bool die_with_parent = false;
  // The program (a name without '/' is looked up in $PATH) is exec'd; when that fails the
  // child writes "cannot run <program>: <reason>" to its stderr and exits with 127, as a shell does.
};

// Starts argv (not empty) and returns its pid; the caller reaps it. An error only when the
// process could not be created (fork failed): a program that cannot be run is the child's exit 127.
Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

}  // namespace ipp

#include "common/spawn.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace ipp {

namespace {
void WriteAll(int fd, const char* text, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, text, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text += n;
    size -= static_cast<size_t>(n);
  }
}
}  // namespace

Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) return Status::InvalidArgument("nothing to run: empty command");
  // Everything the child needs, prepared here: it may not allocate.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string& program = options.program.empty() ? argv[0] : options.program;
  const std::string failure = "cannot run " + program + ": ";
  int devnull = -1;
  if (options.stdin_fd < 0) {
    devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) return Status::IOError(std::string("cannot open /dev/null: ") + std::strerror(errno));
  }
  const int in = options.stdin_fd >= 0 ? options.stdin_fd : devnull;
  std::vector<char*> env;
  if (!options.environment.empty()) {
    for (char** e = environ; *e; ++e) {
      std::string_view entry(*e);
      bool replaced = std::any_of(options.environment.begin(), options.environment.end(), [&](const std::string& mine) {
        size_t eq = mine.find('=');
        return eq != std::string::npos && entry.size() > eq && entry.compare(0, eq + 1, mine, 0, eq + 1) == 0;
      });
      if (!replaced) env.push_back(*e);
    }
    for (const auto& e : options.environment) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
  }

  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec. glibc's execvp searches $PATH in stack
    // buffers, without allocating.
    if (options.group == SpawnOptions::Group::kNewSession) setsid();
    if (options.group == SpawnOptions::Group::kNewGroup) setpgid(0, 0);
    if (options.die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // it died before prctl took effect
    }
    dup2(in, 0);
    if (options.stdout_fd >= 0) dup2(options.stdout_fd, 1);
    if (options.stderr_fd >= 0) dup2(options.stderr_fd, 2);
    for (int sig : options.default_signals) signal(sig, SIG_DFL);
    if (env.empty()) {
      execvp(program.c_str(), args.data());
    } else {
      execvpe(program.c_str(), args.data(), env.data());
    }
    const char* reason = strerrordesc_np(errno);
    WriteAll(2, failure.data(), failure.size());
    if (reason) WriteAll(2, reason, std::strlen(reason));
    WriteAll(2, "\n", 1);
    _exit(127);
  }
  int fork_errno = errno;
  if (devnull >= 0) ::close(devnull);
  if (pid < 0) return Status::Unavailable(std::string("cannot start ") + program + ": fork: " + std::strerror(fork_errno));
  // Also here, so that the group exists before anyone signals it (the child may not have run yet).
  if (options.group == SpawnOptions::Group::kNewGroup) setpgid(pid, pid);
  return pid;
}

}  // namespace ipp

#include "controller/ipc_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>

#include "common/endpoint.hpp"
#include "common/host.hpp"

namespace ipp::controller {

namespace fs = std::filesystem;

namespace {

// sun_path holds 108 bytes with the terminating NUL; the longest endpoint is "<dir>/ipp-65535".
constexpr size_t kMaxDirLength = sizeof(sockaddr_un::sun_path) - 1 - std::char_traits<char>::length("/ipp-65535");

std::vector<fs::path> Bases() {
  std::vector<fs::path> bases;
  if (const char* value = std::getenv("TMPDIR"); value && *value == '/') bases.emplace_back(value);
  bases.emplace_back("/tmp");
  return bases;
}

// One of the sockets a controller binds in its directory: "ipp-<port>", a socket, not a link.
bool IsEndpointSocket(const fs::path& path) {
  static const std::regex kSocketName("ipp-[0-9]+");
  struct stat st {};
  return std::regex_match(path.filename().string(), kSocketName) && ::lstat(path.c_str(), &st) == 0 &&
         S_ISSOCK(st.st_mode);
}

// A directory this user's controllers on this host make: not a symlink, this user's, private,
// and named as Create names them.
bool IsOurDir(const fs::path& dir) {
  static const std::regex kDirName(IpcDirPrefix() + "[0-9]+-[A-Za-z0-9]{6}");
  struct stat st {};
  return std::regex_match(dir.filename().string(), kDirName) && ::lstat(dir.c_str(), &st) == 0 &&
         S_ISDIR(st.st_mode) && st.st_uid == ::getuid() && (st.st_mode & 077) == 0;
}

// What `dir` holds: whether anything but endpoint sockets, and whether anyone serves one of
// those (a probe that cannot tell counts as served).
struct Contents {
  bool foreign = false;
  bool served = false;
};

Contents Inspect(const fs::path& dir) {
  Contents contents;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (!IsEndpointSocket(entry.path())) {
      contents.foreign = true;
    } else if (ProbeUnixSocket(entry.path().string()) != ECONNREFUSED) {
      contents.served = true;
    }
  }
  if (ec) contents.foreign = true;
  return contents;
}

// Unlinks the endpoint sockets in `dir`, then the directory if that left it empty.
bool RemoveOurDir(const fs::path& dir) {
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (IsEndpointSocket(entry.path())) ::unlink(entry.path().c_str());
  }
  return ::rmdir(dir.c_str()) == 0;
}

}  // namespace

std::string IpcDirPrefix() {
  uint32_t hash = 2166136261u;  // FNV-1a
  for (unsigned char c : HostName()) hash = (hash ^ c) * 16777619u;
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", hash);
  return "ipp-" + std::string(hex) + "-";
}

Result<std::unique_ptr<IpcDir>> IpcDir::Create(const std::string& reuse_interface) {
  constexpr std::string_view kIpc = "ipc://";
  if (reuse_interface.rfind(kIpc, 0) == 0) {
    fs::path dir = fs::path(reuse_interface.substr(kIpc.size())).parent_path();
    if (dir.string().size() <= kMaxDirLength) {
      // Gone (a reboot, or a sweep): made again under the same name, so that its sockets are
      // where the engines still running look for them. Served by a controller still running,
      // someone else's, or not a name we make: a new one instead.
      bool made = ::mkdir(dir.c_str(), 0700) == 0;
      Contents contents = made ? Contents{} : Inspect(dir);
      if (IsOurDir(dir) && !contents.served && !contents.foreign) {
        ::utimensat(AT_FDCWD, dir.c_str(), nullptr, 0);  // not stale: see RemoveStaleIpcDirs
        return std::unique_ptr<IpcDir>(new IpcDir(dir));
      }
      if (made) ::rmdir(dir.c_str());
    }
  }
  std::string last_error = "no directory to make it in";
  for (const fs::path& base : Bases()) {
    std::string pattern = (base / (IpcDirPrefix() + std::to_string(::getpid()) + "-XXXXXX")).string();
    if (pattern.size() > kMaxDirLength) {
      last_error = base.string() + " is too long a path for a socket";
      continue;
    }
    RemoveStaleIpcDirs(base, std::chrono::seconds(60));
    if (::mkdtemp(pattern.data()) != nullptr) return std::unique_ptr<IpcDir>(new IpcDir(pattern));
    last_error = "cannot make a directory in " + base.string() + ": " + std::strerror(errno);
  }
  return Status::Unavailable(last_error);
}

IpcDir::~IpcDir() { RemoveOurDir(path_); }

int RemoveStaleIpcDirs(const fs::path& base, std::chrono::seconds min_age) {
  int removed = 0;
  std::error_code ec;
  auto now = fs::file_time_type::clock::now();
  for (const fs::directory_entry& entry : fs::directory_iterator(base, ec)) {
    if (!IsOurDir(entry.path())) continue;
    std::error_code time_error;
    auto changed = fs::last_write_time(entry.path(), time_error);
    if (time_error || now - changed < min_age) continue;
    Contents contents = Inspect(entry.path());
    if (contents.foreign || contents.served) continue;
    if (RemoveOurDir(entry.path())) ++removed;
  }
  return removed;
}

}  // namespace ipp::controller

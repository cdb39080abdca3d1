#include "controller/ipc_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <thread>

#include "common/endpoint.hpp"

namespace ipp::controller {

namespace fs = std::filesystem;

namespace {

// sun_path holds 108 bytes with the terminating NUL; the longest endpoint is "<dir>/ipp-65535".
constexpr size_t kMaxDirLength = sizeof(sockaddr_un::sun_path) - 1 - std::char_traits<char>::length("/ipp-65535");

// Where to make the directory: the per-user runtime directory first (private and cleared at
// log-out), then the temporary one.
std::vector<fs::path> Bases() {
  std::vector<fs::path> bases;
  for (const char* name : {"XDG_RUNTIME_DIR", "TMPDIR"}) {
    if (const char* value = std::getenv(name); value && *value == '/') bases.emplace_back(value);
  }
  bases.emplace_back("/tmp");
  return bases;
}

}  // namespace

Result<std::unique_ptr<IpcDir>> IpcDir::Create(const std::string& reuse_interface) {
  constexpr std::string_view kIpc = "ipc://";
  if (reuse_interface.rfind(kIpc, 0) == 0) {
    fs::path dir = fs::path(reuse_interface.substr(kIpc.size())).parent_path();
    struct stat st {};
    bool ours = ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::getuid() &&
                (st.st_mode & 077) == 0;
    if (ours || ::mkdir(dir.c_str(), 0700) == 0) {
      ::utimensat(AT_FDCWD, dir.c_str(), nullptr, 0);  // not stale: see RemoveStaleIpcDirs
      return std::unique_ptr<IpcDir>(new IpcDir(dir));
    }
  }
  std::string last_error = "no directory to make it in";
  for (const fs::path& base : Bases()) {
    std::string pattern = (base / ("ipp-" + std::to_string(::getpid()) + "-XXXXXX")).string();
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

IpcDir::~IpcDir() {
  // libzmq's I/O thread unlinks each socket as it closes the listener: a file may go while
  // remove_all lists the directory, which makes that attempt fail.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::error_code ec;
    fs::remove_all(path_, ec);
    if (!ec) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int RemoveStaleIpcDirs(const fs::path& base, std::chrono::seconds min_age) {
  static const std::regex kDirName("ipp-[0-9]+-[A-Za-z0-9]{6}"), kSocketName("ipp-[0-9]+");
  int removed = 0;
  std::error_code ec;
  auto now = fs::file_time_type::clock::now();
  for (const fs::directory_entry& entry : fs::directory_iterator(base, ec)) {
    if (!std::regex_match(entry.path().filename().string(), kDirName)) continue;
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::getuid()) continue;
    std::error_code time_error;
    auto changed = fs::last_write_time(entry.path(), time_error);
    if (time_error || now - changed < min_age) continue;
    // Only what a controller leaves: its sockets, none of them served.
    bool keep = false;
    std::error_code list_error;
    for (const fs::directory_entry& file : fs::directory_iterator(entry.path(), list_error)) {
      keep = keep || !file.is_socket() || !std::regex_match(file.path().filename().string(), kSocketName) ||
             ProbeUnixSocket(file.path()) != ECONNREFUSED;
    }
    if (keep || list_error) continue;
    std::error_code remove_error;
    if (fs::remove_all(entry.path(), remove_error) > 0 && !remove_error) ++removed;
  }
  return removed;
}

}  // namespace ipp::controller

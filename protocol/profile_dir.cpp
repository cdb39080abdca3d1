#include "protocol/profile_dir.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace ipp::protocol {

namespace fs = std::filesystem;

fs::path IpythonDir() {
  if (const char* dir = std::getenv("IPYTHONDIR"); dir && *dir) return fs::path(dir);
  const char* home = std::getenv("HOME");
  if (!home || !*home) {
    const passwd* pw = getpwuid(getuid());
    home = pw ? pw->pw_dir : "/tmp";
  }
  return fs::path(home) / ".ipython";
}

ProfileDir ProfileDir::Resolve(const std::string& profile_name, const std::string& explicit_dir) {
  if (!explicit_dir.empty()) return ProfileDir(fs::absolute(explicit_dir));
  return ProfileDir(IpythonDir() / ("profile_" + (profile_name.empty() ? "default" : profile_name)));
}

Status ProfileDir::Ensure() const {
  std::error_code ec;
  for (const fs::path& dir : {root_, log_dir(), pid_dir(), security_dir()}) {
    fs::create_directories(dir, ec);
    if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  }
  ::chmod(security_dir().c_str(), 0700);
  return Status::OK();
}

}  // namespace ipp::protocol

// Profile directories resolved as IPython does: $IPYTHONDIR (default ~/.ipython), then
// profile_<name> inside it, or an explicit --profile-dir.
#pragma once

#include <filesystem>
#include <string>

#include "ipp/status.hpp"

namespace ipp::protocol {

std::filesystem::path IpythonDir();

class ProfileDir {
 public:
  // Explicit dir wins; otherwise IpythonDir()/profile_<name> ("default" when name is empty).
  static ProfileDir Resolve(const std::string& profile_name, const std::string& explicit_dir);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path security_dir() const { return root_ / "security"; }
  std::filesystem::path log_dir() const { return root_ / "log"; }
  std::filesystem::path pid_dir() const { return root_ / "pid"; }
  // Creates root, log, pid and security (mode 0700, as IPython does).
  Status Ensure() const;

 private:
  explicit ProfileDir(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path root_;
};

}  // namespace ipp::protocol

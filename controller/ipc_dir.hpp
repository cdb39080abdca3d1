// IpcDir: the private directory (mode 0700) that holds the controller's ipc:// endpoints, so
// that clients and engines on its host skip the TCP stack (protocol::PreferLocalTransport).
//
// It is made in $TMPDIR, else /tmp, as IpcDirPrefix() + "<pid>-XXXXXX", and its sockets and the
// directory are removed when the IpcDir goes. A controller that was killed leaves its directory
// behind: the next one to start on this host removes those whose sockets nobody listens on.
// Not $XDG_RUNTIME_DIR: logind removes it when the user's last session ends, and a cluster
// started with --daemonize outlives the login that started it.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "ipp/status.hpp"

namespace ipp::controller {

class IpcDir {
 public:
  // A new directory, or, given the local interface a reused connection file names, that one
  // again (engines still running from the last run reconnect there) if it is one of ours that
  // nobody serves any more. Fails if no directory short enough for a socket path can be made.
  static Result<std::unique_ptr<IpcDir>> Create(const std::string& reuse_interface);
  ~IpcDir();
  IpcDir(const IpcDir&) = delete;
  IpcDir& operator=(const IpcDir&) = delete;

  // "ipc://<dir>/ipp": channel endpoints are this + "-<port>" (protocol::ChannelUrl).
  std::string interface() const { return "ipc://" + (path_ / "ipp").string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit IpcDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// "ipp-<8 hex digits of this host's name>-": where $TMPDIR is shared by several hosts, each
// sweeps only its own.
std::string IpcDirPrefix();

// Removes the directories in `base` that IpcDir::Create made on this host (this user's, named
// IpcDirPrefix() + "<pid>-XXXXXX"), last changed more than `min_age` ago and holding only
// endpoint sockets nobody listens on. Returns how many it removed.
int RemoveStaleIpcDirs(const std::filesystem::path& base, std::chrono::seconds min_age);

}  // namespace ipp::controller

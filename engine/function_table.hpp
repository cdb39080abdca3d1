// FunctionTable: the engine's named native functions, and the loader of plugin libraries.
// Used only on the engine's main (shell) thread.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ipp/engine_plugin.hpp"
#include "ipp/status.hpp"

namespace ipp::engine {

class FunctionTable : public FunctionRegistry {
 public:
  struct Entry {
    Function function;
    std::string doc;
    std::string origin;  // the library it came from, or "builtin"
  };

  ~FunctionTable() override;
  void add(const std::string& name, Function function, std::string doc = "") override;
  const Entry* find(const std::string& name) const;
  // dlopen()s `path` and calls its IPP_PLUGIN entry point. Returns the names it added. Loading
  // the same unchanged file again returns its names and does nothing else; a file that changed
  // since is refused (a running process cannot swap a library's code), as is a plugin that would
  // replace a function another library or the engine itself defines.
  Result<std::vector<std::string>> Load(const std::string& path);
  // Whether Load(path) succeeded before (paths compared made absolute and normalized).
  bool Loaded(const std::string& path) const { return loaded_paths_.count(Resolve(path)) > 0; }
  Json List() const;  // [{"name", "doc", "origin"}...]
  std::vector<std::string> Names() const;
  // Counts the loads that registered functions: the engine compares it before and after a
  // request to know when to tell the hub its functions changed.
  size_t loads() const { return loads_; }

 private:
  std::map<std::string, Entry> entries_;
  // What identifies a library file's version: a rebuilt plugin differs in one or the other.
  struct FileStamp {
    std::filesystem::file_time_type modified;
    uintmax_t size = 0;
    bool operator==(const FileStamp&) const = default;
  };
  static std::string Resolve(const std::string& path);
  static FileStamp StampOf(const std::string& path);
  std::vector<void*> libraries_;  // kept open: their functions stay registered
  std::map<std::string, FileStamp> loaded_paths_;
  std::vector<std::string> clashes_;  // names the library being loaded tried to take over
  std::string loading_ = "builtin";
  size_t loads_ = 0;
};

}  // namespace ipp::engine

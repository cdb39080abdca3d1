// FunctionTable: the engine's named native functions, and the loader of plugin libraries.
// Used only on the engine's main (shell) thread.
#pragma once

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
  // the same file twice is harmless (it registers again, replacing its functions).
  Result<std::vector<std::string>> Load(const std::string& path);
  Json List() const;  // [{"name", "doc", "origin"}...]
  std::vector<std::string> Names() const;
  // Counts the loads that registered functions: the engine compares it before and after a
  // request to know when to tell the hub its functions changed.
  size_t loads() const { return loads_; }

 private:
  std::map<std::string, Entry> entries_;
  std::vector<void*> libraries_;  // kept open: their functions stay registered
  std::string loading_ = "builtin";
  size_t loads_ = 0;
};

}  // namespace ipp::engine

#include "engine/function_table.hpp"

#include <dlfcn.h>

#include <filesystem>

namespace ipp::engine {

FunctionTable::~FunctionTable() {
  entries_.clear();  // functions may live in the libraries: drop them first
  // Libraries stay loaded until exit: static destructors of plugins may still reference them.
}

void FunctionTable::add(const std::string& name, Function function, std::string doc) {
  entries_[name] = Entry{std::move(function), std::move(doc), loading_};
}

const FunctionTable::Entry* FunctionTable::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

Result<std::vector<std::string>> FunctionTable::Load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::NotFound("plugin library " + path + " does not exist");
  std::string resolved = std::filesystem::absolute(path, ec).string();
  void* handle = dlopen(resolved.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return Status::InvalidArgument("cannot load plugin " + path + ": " + dlerror());
  using Entry = void (*)(FunctionRegistry&);
  auto entry = reinterpret_cast<Entry>(dlsym(handle, "ipp_register_plugin"));
  if (!entry) {
    dlclose(handle);
    return Status::InvalidArgument("plugin " + path + " has no IPP_PLUGIN entry point (ipp_register_plugin)");
  }
  auto before = entries_;
  loading_ = resolved;
  try {
    entry(*this);
  } catch (const std::exception& e) {
    loading_ = "builtin";
    entries_ = std::move(before);
    return Status::InvalidArgument("plugin " + path + " failed to register: " + e.what());
  }
  loading_ = "builtin";
  libraries_.push_back(handle);
  ++loads_;
  std::vector<std::string> added;
  for (const auto& [name, e] : entries_) {
    if (e.origin == resolved) added.push_back(name);
  }
  return added;
}

Json FunctionTable::List() const {
  Json out = Json::array();
  for (const auto& [name, e] : entries_) out.push_back({{"name", name}, {"doc", e.doc}, {"origin", e.origin}});
  return out;
}

std::vector<std::string> FunctionTable::Names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

}  // namespace ipp::engine

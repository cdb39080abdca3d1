#include "engine/function_table.hpp"

#include <dlfcn.h>

#include <filesystem>

namespace ipp::engine {

FunctionTable::~FunctionTable() {
  entries_.clear();  // functions may live in the libraries: drop them first
  // Libraries stay loaded until exit: static destructors of plugins may still reference them.
}

void FunctionTable::add(const std::string& name, Function function, std::string doc) {
  auto it = entries_.find(name);
  if (it != entries_.end() && it->second.origin != loading_) {
    clashes_.push_back(name + "' (from " + it->second.origin + ")");
    return;
  }
  entries_[name] = Entry{std::move(function), std::move(doc), loading_};
}

const FunctionTable::Entry* FunctionTable::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

std::string FunctionTable::Resolve(const std::string& path) {
  std::error_code ec;
  return std::filesystem::absolute(path, ec).lexically_normal().string();
}

FunctionTable::FileStamp FunctionTable::StampOf(const std::string& path) {
  std::error_code ec;
  FileStamp stamp;
  stamp.modified = std::filesystem::last_write_time(path, ec);
  stamp.size = std::filesystem::file_size(path, ec);
  return stamp;
}

Result<std::vector<std::string>> FunctionTable::Load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::NotFound("plugin library " + path + " does not exist");
  std::string resolved = Resolve(path);
  std::vector<std::string> added;
  auto collect = [&] {
    for (const auto& [name, e] : entries_) {
      if (e.origin == resolved) added.push_back(name);
    }
  };
  if (auto loaded = loaded_paths_.find(resolved); loaded != loaded_paths_.end()) {
    // dlopen would hand back the library already loaded: its old code, whatever the file holds now.
    if (!(loaded->second == StampOf(resolved))) {
      return Status::InvalidArgument("plugin " + path + " changed since this engine loaded it, and a running engine "
                                     "cannot replace a library's code: restart the engine to run the new version");
    }
    collect();
    return added;
  }
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
  clashes_.clear();
  std::string failed;
  try {
    entry(*this);
  } catch (const std::exception& e) {
    failed = std::string("failed to register: ") + e.what();
  }
  loading_ = "builtin";
  if (failed.empty() && !clashes_.empty()) {
    failed = "would replace '" + clashes_.front() + (clashes_.size() > 1 ? " and " + std::to_string(clashes_.size() - 1) + " more" : "") +
             ": function names must be unique on an engine (rename them in the plugin)";
  }
  if (!failed.empty()) {
    entries_ = std::move(before);
    return Status::InvalidArgument("plugin " + path + " " + failed);
  }
  libraries_.push_back(handle);
  loaded_paths_[resolved] = StampOf(resolved);
  ++loads_;
  collect();
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

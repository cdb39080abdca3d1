#include "schedulers/dependency.hpp"

namespace ipp::schedulers {

Result<Dependency> Dependency::FromJson(const nlohmann::json& value) {
  Dependency d;
  if (value.is_null()) return d;
  const nlohmann::json* list = &value;
  if (value.is_object()) {
    d.all = value.value("all", true);
    d.success = value.value("success", true);
    d.failure = value.value("failure", false);
    auto it = value.find("dependencies");
    if (it == value.end()) return d;
    list = &*it;
  }
  if (list->is_string()) {
    d.ids.insert(list->get<std::string>());
  } else if (list->is_array()) {
    for (const auto& id : *list) {
      if (!id.is_string()) return Status::InvalidArgument("dependency ids must be strings");
      d.ids.insert(id.get<std::string>());
    }
  } else {
    return Status::InvalidArgument("invalid dependency: " + value.dump());
  }
  if (!d.success && !d.failure) {
    return Status::InvalidArgument("Must depend on at least one of successes or failures!");
  }
  return d;
}

namespace {
// Counts how many of `ids` are in either set selected by the flags.
size_t CountIn(const IdSet& ids, const MsgIdSet* a, const MsgIdSet* b) {
  size_t n = 0;
  for (const auto& id : ids) n += (a && a->count(id)) || (b && b->count(id));
  return n;
}
}  // namespace

bool Dependency::Check(const MsgIdSet& completed, const MsgIdSet& failed) const {
  if (ids.empty()) return true;
  size_t hits = CountIn(ids, success ? &completed : nullptr, failure ? &failed : nullptr);
  return all ? hits == ids.size() : hits > 0;
}

bool Dependency::Unreachable(const MsgIdSet& completed, const MsgIdSet& failed) const {
  if (ids.empty()) return false;
  size_t hits = CountIn(ids, success ? nullptr : &completed, failure ? nullptr : &failed);
  return all ? hits > 0 : hits == ids.size();
}

}  // namespace ipp::schedulers

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
// How many of `ids` have a fate that `counts`.
template <typename Counts>
size_t CountFates(const IdSet& ids, const TaskFates& fates, Counts counts) {
  size_t n = 0;
  for (const auto& id : ids) n += counts(fates.find(id));
  return n;
}
}  // namespace

bool Dependency::Check(const TaskFates& fates, uint32_t engine) const {
  if (ids.empty()) return true;
  size_t hits = CountFates(ids, fates, [&](const TaskFates::Fate& f) {
    return MetBy(f) && (engine == kAnyEngine || f.engine == engine);
  });
  return all ? hits == ids.size() : hits > 0;
}

bool Dependency::Unreachable(const TaskFates& fates) const {
  if (ids.empty()) return false;
  size_t hits = CountFates(ids, fates, [&](const TaskFates::Fate& f) { return RefusedBy(f); });
  return all ? hits > 0 : hits == ids.size();
}

}  // namespace ipp::schedulers

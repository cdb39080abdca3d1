#include "schedulers/task_fates.hpp"

#include <functional>
#include <utility>

namespace ipp::schedulers {

uint64_t TaskFates::Hash(std::string_view msg_id) { return std::hash<std::string_view>{}(msg_id); }

void TaskFates::Record(std::string_view msg_id, Fate fate) {
  uint64_t key = Hash(msg_id);
  // A task recorded again (finished after being submitted) is usually still in the current
  // generation; if not, its newer fate goes to the current one, which find() reads first.
  if (generation_ > 0 && current_.size() >= generation_ && !current_.contains(key)) {
    previous_ = std::move(current_);  // the older generation's array is freed here
    current_ = FlatHashMap64<uint32_t>();
  }
  current_[key] = fate.engine << 2 | static_cast<uint32_t>(fate.outcome);
}

TaskFates::Fate TaskFates::find(std::string_view msg_id) const {
  uint64_t key = Hash(msg_id);
  const uint32_t* packed = current_.find(key);
  if (!packed) packed = previous_.find(key);
  if (!packed) return {};
  return {static_cast<Outcome>(*packed & 3), *packed >> 2};
}

}  // namespace ipp::schedulers

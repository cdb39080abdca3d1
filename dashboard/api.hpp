// The dashboard's JSON API documents (README "Dashboard"), built from a published Snapshot on
// whichever thread serves the request; `now` gives ages and "now" (seconds since the controller
// started).
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "dashboard/aggregator.hpp"

namespace ipp::dashboard {

nlohmann::json EnginesJson(const Snapshot& s, Clock::time_point now);
// Finished tasks with seq > since, oldest first.
nlohmann::json TasksJson(const Snapshot& s, uint64_t since, Clock::time_point now);
nlohmann::json StatsJson(const Snapshot& s, Clock::time_point now);

}  // namespace ipp::dashboard

// One named spdlog logger per component, created in main and passed in.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "ipp/status.hpp"

namespace ipp {

using Logger = std::shared_ptr<spdlog::logger>;

// Accepts ipyparallel's numbers (10, 20, 30, 40, 50) and names (DEBUG, INFO, WARN, WARNING,
// ERROR, CRITICAL), case-insensitive.
Result<spdlog::level::level_enum> ParseLogLevel(const std::string& text);

// Sets where every logger made afterwards writes: stderr (default) or a file (appended).
Status SetLogFile(const std::string& path);
void SetLogLevel(spdlog::level::level_enum level);
// A logger named `name` (e.g. "hub", "sched.task") at the level set by SetLogLevel.
Logger MakeLogger(const std::string& name);

}  // namespace ipp

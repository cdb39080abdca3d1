// Timestamps as jupyter_client writes them: ISO 8601, UTC, microseconds, "Z" suffix.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ipp::protocol {

using WallClock = std::chrono::system_clock;

std::string Iso8601(WallClock::time_point t);
inline std::string Iso8601Now() { return Iso8601(WallClock::now()); }
// Accepts what jupyter_client and dateutil produce: "2026-11-25T17:26:39.325123Z",
// "...+00:00", with or without fractional seconds, or no zone (taken as UTC).
std::optional<WallClock::time_point> ParseIso8601(std::string_view text);

}  // namespace ipp::protocol

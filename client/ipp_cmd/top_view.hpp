// What `ipp top` shows, as plain lines computed from the dashboard API's JSON: no terminal here,
// so the whole layout is testable (top_command.cpp only paints these lines with ncurses).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ipp_cmd {

struct TopInput {
  nlohmann::json engines;  // GET /api/engines (an array), null before the first answer
  nlohmann::json stats;    // GET /api/stats (an object), null before the first answer
  std::string source;      // where the data comes from, e.g. "http://127.0.0.1:8123" (no token)
  // Why the data above is not fresh ("controller unreachable: ..."), "" when it is. The last
  // good data stays on screen under this line.
  std::string problem;
  double interval_s = 1;
};

struct TopLine {
  enum class Style { kNormal, kTitle, kHeading, kProblem, kDim };
  std::string text;
  Style style = Style::kNormal;
};

// The screen, top to bottom: title, problem (if any), summary, controller, engine table, recent
// failures. Lines are cut to `width` columns. Fields missing or of the wrong type show as "-".
std::vector<TopLine> RenderTop(const TopInput& input, int width);

}  // namespace ipp_cmd

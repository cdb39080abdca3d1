// Error reply content in ipyparallel's format (error.wrap_exception):
//   {"status": "error", "ename": ..., "evalue": ..., "traceback": [...], "engine_info": {...}}
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace ipp::protocol {

inline nlohmann::json ErrorContent(const std::string& ename, const std::string& evalue,
                                   nlohmann::json engine_info = nlohmann::json::object()) {
  return {{"status", "error"},
          {"ename", ename},
          {"evalue", evalue},
          {"traceback", {ename + ": " + evalue}},
          {"engine_info", std::move(engine_info)}};
}

// The evalue of the EngineError a task gets when its engine goes away while running it: the
// stock hub's words ("Engine 3 died while running task 'M'"), the engine's uuid, and why the
// hub let it go when known ("...: it stopped answering heartbeats (...)"). id < 0: not known.
inline std::string EngineDiedText(int id, const std::string& uuid, const std::string& msg_id,
                                  const std::string& why) {
  std::string text = id >= 0 ? "Engine " + std::to_string(id) + (uuid.empty() ? "" : " (uuid " + uuid + ")")
                             : "Engine '" + uuid + "'";
  text += " died while running task '" + msg_id + "'";
  return why.empty() ? text : text + ": " + why;
}

// How our hub's refusal of a registration for want of file descriptors begins (a RuntimeError).
// Its count of the descriptors engines still connecting will need is on the safe side, so in a
// start storm an engine refused now may fit a little later: our engines ask again a few times.
inline constexpr const char* kOutOfFdsText = "the controller is out of file descriptors";

}  // namespace ipp::protocol

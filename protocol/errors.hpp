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

}  // namespace ipp::protocol

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

}  // namespace ipp::protocol

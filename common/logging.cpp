#include "common/logging.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace ipp {

namespace {
// Configured once in main before reactor threads start, read afterwards: guarded anyway because
// MakeLogger may be called from several threads while they start.
std::mutex g_mutex;
spdlog::sink_ptr g_sink;
spdlog::level::level_enum g_level = spdlog::level::info;
}  // namespace

Result<spdlog::level::level_enum> ParseLogLevel(const std::string& text) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::toupper(c); });
  if (t == "0" || t == "NOTSET" || t == "TRACE") return spdlog::level::trace;
  if (t == "10" || t == "DEBUG") return spdlog::level::debug;
  if (t == "20" || t == "INFO") return spdlog::level::info;
  if (t == "30" || t == "WARN" || t == "WARNING") return spdlog::level::warn;
  if (t == "40" || t == "ERROR") return spdlog::level::err;
  if (t == "50" || t == "CRITICAL" || t == "FATAL") return spdlog::level::critical;
  return Status::InvalidArgument("unknown log level '" + text +
                                 "' (use 10/20/30/40/50 or DEBUG/INFO/WARN/ERROR/CRITICAL)");
}

Status SetLogFile(const std::string& path) {
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
    std::lock_guard lock(g_mutex);
    g_sink = sink;
    return Status::OK();
  } catch (const spdlog::spdlog_ex& e) {
    return Status::IOError("cannot open log file " + path + ": " + e.what());
  }
}

void SetLogLevel(spdlog::level::level_enum level) {
  std::lock_guard lock(g_mutex);
  g_level = level;
}

Logger MakeLogger(const std::string& name) {
  std::lock_guard lock(g_mutex);
  if (!g_sink) g_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(name, g_sink);
  logger->set_level(g_level);
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e [%n] %^%l%$ %v");
  logger->flush_on(spdlog::level::info);
  return logger;
}

}  // namespace ipp

#include "launchers/config.hpp"

#include <algorithm>
#include <fstream>
#include <regex>
#include <vector>

namespace ipp::launchers {

namespace fs = std::filesystem;

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

namespace {

// What ipcluster reads from the file; launcher.cpp and ipcluster_main.cpp are its readers.
enum class Type { kCount, kSeconds, kFlag, kString, kStrings, kHostCounts, kEnvironment, kSection };

struct Setting {
  const char* key;
  Type type;
  const std::vector<Setting>* section = nullptr;  // the settings inside a kSection
};

const std::vector<Setting> kMpi = {{"mpiexec", Type::kString}, {"args", Type::kStrings}, {"environment", Type::kEnvironment}};
const std::vector<Setting> kSsh = {{"engines", Type::kHostCounts}, {"controller", Type::kString},
                                   {"ssh", Type::kString}, {"ssh_args", Type::kStrings},
                                   {"remote_ipengine", Type::kString}, {"remote_ipcontroller", Type::kString},
                                   {"environment", Type::kEnvironment}};
const std::vector<Setting> kBatch = {{"queue", Type::kString}, {"account", Type::kString},
                                     {"walltime", Type::kString}, {"extra_directives", Type::kStrings},
                                     {"submit_args", Type::kStrings}, {"engine_template", Type::kString},
                                     {"controller_template", Type::kString}, {"environment", Type::kEnvironment}};
// Batch sections are named by the batch system's name in lower case (BatchLauncher reads them).
const std::vector<Setting> kTop = {
    {"n", Type::kCount}, {"engines", Type::kString}, {"controller", Type::kString},
    {"engine_command", Type::kString}, {"engine_args", Type::kStrings}, {"controller_args", Type::kStrings},
    {"environment", Type::kEnvironment},
    {"max_restarts", Type::kCount}, {"restart_window", Type::kSeconds}, {"restart_backoff", Type::kSeconds}, {"no_restart", Type::kFlag},
    {"mpi", Type::kSection, &kMpi}, {"ssh", Type::kSection, &kSsh},
    {"slurm", Type::kSection, &kBatch}, {"pbs", Type::kSection, &kBatch}, {"sge", Type::kSection, &kBatch},
    {"lsf", Type::kSection, &kBatch}, {"htcondor", Type::kSection, &kBatch},
    // --adapt and its limits
    {"adapt", Type::kFlag}, {"min_engines", Type::kCount}, {"max_engines", Type::kCount}, {"engines_per_job", Type::kCount},
    {"idle_timeout", Type::kSeconds}, {"max_queued_jobs", Type::kCount}, {"max_failed_jobs", Type::kCount}};

const char* Wanted(Type type) {
  switch (type) {
    case Type::kCount: return "a whole number >= 0";
    case Type::kSeconds: return "a number of seconds >= 0";
    case Type::kFlag: return "true or false";
    case Type::kString: return "a string";
    case Type::kStrings: return "an array of strings";
    case Type::kHostCounts: return "an object of \"host\": engine count";
    case Type::kEnvironment: return "an object of \"NAME\": \"value\" (NAME: letters, digits, _)";
    case Type::kSection: return "an object";
  }
  return "";
}

bool IsCount(const Json& v) { return v.is_number_unsigned() || (v.is_number_integer() && v.get<long long>() >= 0); }

bool HasType(const Json& v, Type type) {
  switch (type) {
    case Type::kCount: return IsCount(v);
    case Type::kSeconds: return v.is_number() && v.get<double>() >= 0;
    case Type::kFlag: return v.is_boolean();
    case Type::kString: return v.is_string();
    case Type::kStrings:
      return v.is_array() && std::all_of(v.begin(), v.end(), [](const Json& e) { return e.is_string(); });
    case Type::kHostCounts:
      return v.is_object() && std::all_of(v.begin(), v.end(), IsCount);
    case Type::kEnvironment:
      return v.is_object() && std::all_of(v.items().begin(), v.items().end(), [](const auto& e) {
               return IsEnvironmentName(e.key()) && e.value().is_string();
             });
    case Type::kSection: return v.is_object();
  }
  return false;
}

std::string Where(const std::string& section, const fs::path& file) {
  return (section.empty() ? "" : "section \"" + section + "\" of ") + file.string();
}

Status CheckSection(const Json& object, const std::vector<Setting>& settings, const std::string& section,
                    const fs::path& file) {
  for (const auto& [key, value] : object.items()) {
    auto known = std::find_if(settings.begin(), settings.end(), [&](const Setting& s) { return key == s.key; });
    if (known == settings.end()) {
      const Setting* nearest = nullptr;
      size_t best = 0;
      for (const auto& s : settings) {
        size_t d = EditDistance(key, s.key);
        if (!nearest || d < best) nearest = &s, best = d;
      }
      std::string message = "unknown key \"" + key + "\" in " + Where(section, file);
      if (nearest && best <= std::max<size_t>(2, key.size() / 3)) return Status::InvalidArgument(message + "; did you mean \"" + nearest->key + "\"?");
      std::string names;
      for (const auto& s : settings) names += (names.empty() ? "" : ", ") + std::string(s.key);
      return Status::InvalidArgument(message + " (known keys: " + names + ")");
    }
    if (!HasType(value, known->type)) {
      return Status::InvalidArgument("\"" + key + "\" in " + Where(section, file) + " must be " + Wanted(known->type) +
                                     ", not " + value.dump());
    }
    if (known->section) {
      if (Status s = CheckSection(value, *known->section, section.empty() ? key : section + "." + key, file); !s.ok()) return s;
    }
  }
  return Status::OK();
}

// "file:line:column: what" plus the line itself with a caret under the column.
std::string SyntaxError(const std::string& text, const fs::path& file, size_t byte, const std::string& what) {
  size_t offset = std::min(byte > 0 ? byte - 1 : 0, text.size());  // nlohmann counts bytes from 1
  size_t newline = offset == 0 ? std::string::npos : text.rfind('\n', offset - 1);
  size_t line_start = newline == std::string::npos ? 0 : newline + 1;
  size_t line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(line_start), '\n');
  size_t column = offset - line_start + 1;
  size_t line_end = text.find('\n', line_start);
  std::string shown = text.substr(line_start, line_end == std::string::npos ? std::string::npos : line_end - line_start);
  // nlohmann's own message starts with its exception id and a position of its own.
  std::string reason = std::regex_replace(what, std::regex(R"(^\[json\.exception\.[^\]]*\] parse error( at line \d+, column \d+)?: )"), "");
  size_t before = text.find_last_not_of(" \t\r\n", offset == 0 ? 0 : offset - 1);
  bool trailing_comma = offset < text.size() && (text[offset] == '}' || text[offset] == ']') &&
                        before != std::string::npos && before < offset && text[before] == ',';
  return file.string() + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + reason +
         (trailing_comma ? " (a trailing comma? JSON allows none)" : "") + "\n    " + shown + "\n    " +
         std::string(column - 1, ' ') + "^";
}

}  // namespace

Result<Json> ParseClusterConfig(const std::string& text, const fs::path& file) {
  Json config;
  try {
    config = Json::parse(text);
  } catch (const Json::parse_error& e) {
    return Status::InvalidArgument(SyntaxError(text, file, e.byte, e.what()));
  }
  if (!config.is_object()) {
    return Status::InvalidArgument(file.string() + " must hold a JSON object ({\"n\": 4, ...}), not " +
                                   std::string(config.type_name()));
  }
  if (Status s = CheckSection(config, kTop, "", file); !s.ok()) return s;
  return config;
}

Result<Json> LoadClusterConfig(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return Json::object();
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return ParseClusterConfig(text, file);
}

}  // namespace ipp::launchers

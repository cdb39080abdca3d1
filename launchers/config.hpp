// ipcluster_config.json: reading it and checking it against the settings ipcluster knows, so a
// typo or a wrong type is an error naming the file, the key and the nearest known key instead of
// a setting silently ignored.
#pragma once

#include <filesystem>
#include <string>

#include "launchers/launcher.hpp"

namespace ipp::launchers {

// The settings in `text` (read from `file`, which messages name). A syntax error names the line
// and column and shows the line; an unknown key at any level names the nearest known key; a value
// of the wrong type names its key and the type wanted.
Result<Json> ParseClusterConfig(const std::string& text, const std::filesystem::path& file);
// As ParseClusterConfig on the file's contents; an absent file is an empty configuration.
Result<Json> LoadClusterConfig(const std::filesystem::path& file);

// Levenshtein distance: how many single-character edits turn `a` into `b`.
size_t EditDistance(const std::string& a, const std::string& b);

}  // namespace ipp::launchers

#include "client/ipp_cmd/targets.hpp"

#include "client/ipp_cmd/wind_down.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

namespace ipp_cmd {

// "all", "0,2,5", "1-3", "0,4-6"
std::string ParseTargets(const std::string& spec, const std::vector<int>& all, std::vector<int>* out) {
  if (spec.empty() || spec == "all") {
    *out = all;
    return "";
  }
  auto number = [](const std::string& text, int* value) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return false;
    try {
      *value = std::stoi(text);
    } catch (const std::exception&) {
      return false;
    }
    return true;
  };
  std::stringstream ss(spec);
  std::vector<int> missing;
  for (std::string part; std::getline(ss, part, ',');) {
    size_t dash = part.find('-');
    int a = 0, b = 0;
    if (!number(part.substr(0, dash), &a) || !number(dash == std::string::npos ? part : part.substr(dash + 1), &b)) {
      return "bad --targets '" + spec + "' (engine ids: 0,2,5 or 1-3 or all)";
    }
    if (b < a) return "bad --targets '" + spec + "': the range " + part + " is empty (write the lower id first)";
    for (int i = a; i <= b; ++i) {
      (std::count(all.begin(), all.end(), i) ? *out : missing).push_back(i);
    }
  }
  if (!missing.empty()) {
    return std::string(missing.size() == 1 ? "no engine " : "no engines ") + FormatIds(missing) +
           (all.empty() ? " (no engines registered yet)" : " (registered: " + FormatIds(all) + ")");
  }
  return "";
}

// "0-3,5"
std::string FormatIds(std::vector<int> ids) {
  std::sort(ids.begin(), ids.end());
  std::string out;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(ids[i]) + (j > i ? "-" + std::to_string(ids[j]) : "");
    i = j + 1;
  }
  return out;
}

// The engines a native command (px, functions, load) runs on. With "all", Python engines are
// left out, with a note: they run Python, not shell commands or native functions (named
// explicitly, they get the request).
bool NativeTargets(ipp::Client& client, const std::string& spec, double timeout, std::vector<int>* out,
                   std::string* error) {
  std::vector<int> all = client.ids();
  if (*error = ParseTargets(spec, all, out); !error->empty()) return false;
  if (out->empty()) {
    *error = "no engines registered yet";
    return false;
  }
  if (!spec.empty() && spec != "all") return true;
  std::vector<int> python;
  for (auto [id, kind] : client.engine_kinds(*out, Seconds(timeout))) {
    if (kind == ipp::EngineKind::kPython) python.push_back(id);
  }
  if (python.empty()) return true;
  std::erase_if(*out, [&](int id) { return std::count(python.begin(), python.end(), id) > 0; });
  std::cerr << "ipp: note: skipping Python engine" << (python.size() > 1 ? "s " : " ") << FormatIds(python)
            << " (Python engines run Python code, not native functions or shell commands)" << std::endl;
  if (out->empty()) {
    *error = "no native engines (only Python ones)";
    return false;
  }
  return true;
}

// Connects and picks the targets of a native command (see NativeTargets); null on error.
std::unique_ptr<ipp::Client> ConnectForNative(const Common& c, const std::string& spec, std::vector<int>* targets,
                                              std::string* error) {
  auto client = Connect(c, error);
  if (client && !NativeTargets(*client, spec, c.timeout, targets, error)) client.reset();
  return client;
}

// Waits for `r`, whose messages go one to each of `targets`. Once that takes a while, shows on
// stderr which engines it still waits for: a live line on a terminal, a line every 30 s
// otherwise. `timeout` > 0 bounds the wait (seconds); false if it passed.
bool WaitShowingProgress(const ipp::AsyncResult& r, const std::vector<int>& targets, double timeout) {
  using Clock = std::chrono::steady_clock;
  bool tty = isatty(2);
  auto start = Clock::now();
  auto next_line = start + std::chrono::seconds(tty ? 2 : 30);
  bool shown = false;
  bool done = true;
  while (!r.wait(ipp::Millis(200))) {
    if (Interrupted()) {
      done = false;
      break;
    }
    auto now = Clock::now();
    double waited = std::chrono::duration<double>(now - start).count();
    if (timeout > 0 && waited >= timeout) {
      done = false;
      break;
    }
    if (now < next_line) continue;
    std::vector<int> pending;
    auto tasks = r.info();
    for (size_t i = 0; i < tasks.size() && i < targets.size(); ++i) {
      if (tasks[i].status == ipp::TaskStatus::kPending) pending.push_back(targets[i]);
    }
    // (none pending: every reply is in, the end of some output is not yet)
    std::string what = pending.empty() ? "the rest of the output"
                                       : (pending.size() == 1 ? "engine " : "engines ") + FormatIds(pending);
    std::fprintf(stderr, "%swaiting for %s: %.0f s%s", tty ? "\r" : "", what.c_str(), waited, tty ? "\033[K" : "\n");
    shown = true;
    next_line = now + std::chrono::seconds(tty ? 1 : 30);
  }
  if (shown && tty) std::fprintf(stderr, "\r\033[K");
  return done;
}

}  // namespace ipp_cmd

#include "client/ipp_cmd/map_stream.hpp"

#include <iostream>
#include <map>

namespace ipp_cmd {

namespace {

using Json = nlohmann::json;

// A --json row: bytes that are not UTF-8 (a line in Latin-1, a function's raw output) are
// replaced rather than ending the map.
std::string Row(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// A line that is not JSON, as an error message shows it: cut to a readable length.
std::string Excerpt(const std::string& line) {
  constexpr size_t kShown = 200;
  return line.size() <= kShown ? line : line.substr(0, kShown) + "... (" + std::to_string(line.size()) + " bytes)";
}

}  // namespace

MapStream::MapStream(ipp::LoadBalancedView view, std::string function, size_t chunk, bool json)
    : view_(std::move(view)), function_(std::move(function)), chunk_(chunk), json_(json) {}

void MapStream::Take(const std::string& line) {
  ++line_number_;
  if (line.find_first_not_of(" \t\r") == std::string::npos) return;
  ++items_;
  Json v = Json::parse(line, nullptr, false);
  if (v.is_discarded()) {
    SendChunk();  // what came before it goes first
    entries_.push_back(Entry{std::nullopt, {line_number_}, Excerpt(line)});
    return;
  }
  chunk_items_.push_back(std::move(v));
  next_chunk_.lines.push_back(line_number_);
  if (chunk_items_.size() == chunk_) SendChunk();
}

void MapStream::SendChunk() {
  if (chunk_items_.empty()) return;
  // Each item tried (keep_going): a bad item costs only its result.
  next_chunk_.task = view_.apply("ipp.map", {{"function", function_}, {"items", Json(std::move(chunk_items_))}, {"keep_going", true}});
  chunk_items_.clear();
  entries_.push_back(std::move(next_chunk_));
  next_chunk_ = Entry{};
}

void MapStream::PrintReady() {
  while (!entries_.empty() && entries_.front().ready()) {
    Print(entries_.front());
    entries_.pop_front();
  }
}

void MapStream::WaitFront(ipp::Millis wait) {
  if (FrontWaits()) entries_.front().task->wait(wait);
}

std::vector<ipp::AsyncResult> MapStream::UnprintedTasks() const {
  std::vector<ipp::AsyncResult> out;
  for (const Entry& e : entries_) {
    if (e.task) out.push_back(*e.task);
  }
  return out;
}

void MapStream::PrintAll(bool timed_out) {
  timed_out_ = timed_out;
  for (; !entries_.empty(); entries_.pop_front()) Print(entries_.front());
  PrintNotRun(next_chunk_.lines);  // read, not in a task yet
  next_chunk_ = Entry{};
  chunk_items_.clear();
  std::cout.flush();
}

void MapStream::PrintNotRun(const std::vector<int>& lines) {
  not_run_ += lines.size();
  for (size_t i = 0; json_ && i < lines.size(); ++i) {
    std::cout << Row({{"line", lines[i]}, {"ok", false}, {"ename", "TaskAborted"},
                      {"evalue", "not run: the map was stopped (Ctrl-C or --timeout) before it started"}})
              << "\n";
  }
}

void MapStream::PrintNotJson(const Entry& e) {
  ++failed_;
  if (json_) {
    std::cout << Row({{"line", e.lines[0]}, {"ok", false}, {"ename", "ValueError"}, {"evalue", "not JSON: " + e.not_json}})
              << "\n";
  } else {
    std::cout.flush();
    std::cerr << "ipp: line " << e.lines[0] << " is not JSON: " << e.not_json << std::endl;
  }
}

// Results on stdout, errors on stderr; a task that did not finish counts as not run.
void MapStream::Print(const Entry& e) {
  if (!e.task) return PrintNotJson(e);
  ipp::TaskInfo t = e.task->info()[0];
  if (!e.task->ready() || t.status == ipp::TaskStatus::kAborted) return PrintNotRun(e.lines);
  // Per item: a result, an item's own error, or the task's error for all of its items.
  const Json* results = t.status == ipp::TaskStatus::kOk ? &t.result : nullptr;
  std::map<size_t, std::pair<std::string, std::string>> errors;
  if (t.status != ipp::TaskStatus::kOk && t.result.is_object() && t.result.contains("results")) {
    results = &t.result["results"];
    for (const auto& err : t.result.value("errors", Json::array())) {
      errors[err.value("index", size_t{0})] = {err.value("ename", ""), err.value("evalue", "")};
    }
  }
  if (!json_) {
    if (!t.stdout_text.empty()) std::cerr << t.stdout_text << (t.stdout_text.back() == '\n' ? "" : "\n");
    if (!t.stderr_text.empty()) std::cerr << t.stderr_text << (t.stderr_text.back() == '\n' ? "" : "\n");
  }
  for (size_t i = 0; i < e.lines.size(); ++i) {
    bool ok = results && results->is_array() && i < results->size() && !errors.count(i);
    std::string ename, evalue;
    if (!ok) {
      ++failed_;
      auto err = errors.find(i);
      ename = err != errors.end() ? err->second.first : (t.error ? t.error->ename() : "Error");
      evalue = err != errors.end() ? err->second.second : (t.error ? t.error->evalue() : "no result");
      // Interrupted by us: the engine reports the SIGINT it was sent.
      if (timed_out_ && ename == "KeyboardInterrupt") evalue += " (stopped by --timeout)";
    }
    if (json_) {
      Json j = {{"line", e.lines[i]}, {"ok", ok}, {"engine", t.engine_id}};
      if (ok) {
        j["result"] = (*results)[i];
      } else {
        j["ename"] = ename;
        j["evalue"] = evalue;
      }
      if (i == 0 && !t.stdout_text.empty()) j["stdout"] = t.stdout_text;
      if (i == 0 && !t.stderr_text.empty()) j["stderr"] = t.stderr_text;
      std::cout << Row(j) << "\n";
    } else if (ok) {
      std::cout << Row((*results)[i]) << "\n";
    } else {
      std::cout.flush();  // keep stdout and stderr in input order on a terminal
      std::cerr << "ipp: line " << e.lines[i] << ": [engine " << t.engine_id << "] " << ename << ": " << evalue << std::endl;
    }
  }
  std::cout.flush();  // as each comes: a long map shows its progress
}

}  // namespace ipp_cmd

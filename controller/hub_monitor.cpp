// Hub: the monitor channel's intake — what the relays and schedulers report becomes task
// records in the TaskStore and the per-engine queues that queue_status reads.
#include <algorithm>
#include <utility>

#include "controller/hub.hpp"
#include "protocol/clock.hpp"
#include "protocol/json_fields.hpp"
#include "protocol/monitor.hpp"

namespace ipp::controller {

using nlohmann::json;
using protocol::Frames;
using protocol::RawMessage;
namespace monitor = protocol::monitor;
using monitor::Topic;

namespace {

std::string Text(const RawMessage& raw, RawMessage::Part part) {
  std::string_view v = raw.part(part);
  return (v == "{}" || v == "null") && part != RawMessage::kHeader ? std::string() : std::string(v);
}

using protocol::StringField;

// The same for message parts read without building a tree (the monitor channel's hot path).
std::string StringField(const protocol::PartFields& fields, const char* key) {
  return fields.string(key).value_or("");
}

std::optional<TimePoint> DateField(const protocol::PartFields& fields, const char* key) {
  auto text = fields.string(key);
  return text ? protocol::ParseIso8601(*text) : std::nullopt;
}

template <typename C>
void EraseValue(C& container, const std::string& value) {
  auto it = std::find(container.begin(), container.end(), value);
  if (it != container.end()) container.erase(it);
}

}  // namespace

void Hub::OnMonitor() {
  // A full batch means the channel may hold more: no pause while the hub is behind.
  if (ReadMonitor(protocol::kBatch) == protocol::kBatch) return;
  reactor_->remove(monitor_);
  reactor_->after(kMonitorPause, [this] { reactor_->add(monitor_, [this] { OnMonitor(); }); });
}

void Hub::CatchUpMonitor() {
  // Bounded: producers faster than the hub must not keep a query waiting for ever.
  for (int n = 0; n < 16 && ReadMonitor(protocol::kBatch) == protocol::kBatch; ++n) {
  }
}

size_t Hub::ReadMonitor(size_t max) {
  size_t n = 0;
  for (; n < max; ++n) {
    auto frames = protocol::TryRecv(monitor_);
    if (!frames) break;
    Result<monitor::Event> event = monitor::Decode(std::move(*frames));
    if (!event.ok()) {
      log_->error("dropped monitor report: {}", event.status().ToString());
      continue;
    }
    try {
      switch (event->topic) {
        case Topic::kTaskDestination: SaveTaskDestination(event->msg_id, event->engine); break;
        case Topic::kTaskWaiting: SaveTaskWaiting(event->msg_id, event->reason); break;
        case Topic::kMuxRequest: SaveRequest(*event->message, "mux", event->engine); break;
        case Topic::kTaskRequest: SaveRequest(*event->message, "task", ""); break;
        case Topic::kBroadcastRequest: SaveRequest(*event->message, "broadcast", ""); break;
        case Topic::kMuxReply:
        case Topic::kTaskReply:
        case Topic::kBroadcastReply: SaveResult(*event->message, event->topic, event->engine); break;
        case Topic::kIopub: SaveIopub(*event->message); break;
      }
    } catch (const json::exception& e) {
      log_->error("monitor {} report not understood: {}", monitor::TopicName(event->topic), e.what());
    }
  }
  return n;
}

void Hub::SaveRequest(RawMessage& raw, const std::string& queue, const std::string& engine_uuid) {
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  if (!header.ok()) return;
  TaskRecord r;
  r.msg_id = StringField(*header, "msg_id");
  r.header = std::string(raw.part(RawMessage::kHeader));
  r.metadata = Text(raw, RawMessage::kMetadata);
  r.content = Text(raw, RawMessage::kContent);
  r.client_uuid = StringField(*header, "session");
  r.engine_uuid = engine_uuid;
  r.queue = queue;
  r.submitted = DateField(*header, "date");
  if (!r.submitted) r.submitted = protocol::WallClock::now();
  if (dashboard_ && queue != "broadcast") dashboard_->TaskSubmitted(raw, queue, engine_uuid);
  if (journal_ && queue == "task") journal_->Accepted(r.msg_id, raw);
  r.buffers = raw.take_buffers();
  std::string msg_id = r.msg_id;
  pending_.insert(msg_id);
  if (queue == "task") unassigned_.insert(msg_id);
  if (queue == "mux") {
    auto it = by_uuid_.find(engine_uuid);
    if (it != by_uuid_.end()) engines_[it->second].queue.push_back(msg_id);
  }
  if (store_->Contains(msg_id)) {
    // Added by a resubmit (or iopub arrived first): fill what is missing, keep the rest.
    Status s = store_->Update(msg_id, [&](TaskRecord& old) {
      if (!old.header.empty()) {
        if (old.engine_uuid.empty()) old.engine_uuid = r.engine_uuid;
        if (old.queue.empty()) old.queue = r.queue;
        return;
      }
      // A placeholder made by early iopub output: take the request, keep that output.
      r.stdout_text = std::move(old.stdout_text);
      r.stderr_text = std::move(old.stderr_text);
      r.error = std::move(old.error);
      r.execute_input = std::move(old.execute_input);
      r.execute_result = std::move(old.execute_result);
      old = std::move(r);
    });
    LogStoreFailure(s, "request", msg_id);
  } else {
    LogStoreFailure(store_->Add(std::move(r)), "request", msg_id);
  }
}

void Hub::SaveResult(RawMessage& raw, Topic topic, const std::string& engine_hint) {
  Result<protocol::PartFields> parent = protocol::PartFields::Of(raw.part(RawMessage::kParent));
  if (!parent.ok()) return;
  std::string msg_id = StringField(*parent, "msg_id");
  if (msg_id.empty()) return;
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  Result<protocol::PartFields> md = protocol::PartFields::Of(raw.part(RawMessage::kMetadata));
  if (!header.ok() || !md.ok()) return;
  std::string engine_uuid = StringField(*md, "engine");
  if (engine_uuid.empty()) engine_uuid = engine_hint;
  const std::string status = StringField(*md, "status");
  const auto completed = DateField(*header, "date");
  const auto started = DateField(*md, "started");
  if (dashboard_ && topic != Topic::kBroadcastReply) {
    dashboard_->TaskReplied({msg_id, status, engine_uuid, started, completed, raw.part(RawMessage::kContent)});
  }
  bool was_pending = pending_.erase(msg_id) > 0;
  if (journal_ && topic == Topic::kTaskReply) journal_->Finished(msg_id);
  unassigned_.erase(msg_id);
  StopWaiting(msg_id);
  std::string sent_to;  // load-balanced: the engine the hub last saw it sent to
  if (auto where = task_engine_.find(msg_id); where != task_engine_.end()) {
    sent_to = std::move(where->second);
    task_engine_.erase(where);
  }
  if (was_pending && engine_uuid.empty() && topic == Topic::kTaskReply) {
    // Failed by the scheduler itself (e.g. every allowed engine failed it): on the engine the
    // hub last saw it sent to.
    auto it = by_uuid_.find(sent_to);
    if (it != by_uuid_.end()) EraseValue(engines_[it->second].tasks, msg_id);
  }
  if (was_pending) {
    auto it = by_uuid_.find(engine_uuid);
    if (it != by_uuid_.end()) {
      Engine& e = engines_[it->second];
      if (topic == Topic::kMuxReply) EraseValue(e.queue, msg_id);
      if (topic == Topic::kTaskReply) EraseValue(e.tasks, msg_id);
      if (status != "aborted") {
        ++e.completed_count;
        e.recent_completed.push_back(msg_id);
        if (e.recent_completed.size() > kRecentCompleted) e.recent_completed.pop_front();
      }
    }
  }
  auto now = protocol::WallClock::now();
  std::string header_text(raw.part(RawMessage::kHeader));
  std::string md_text(raw.part(RawMessage::kMetadata));
  std::string content_text(raw.part(RawMessage::kContent));
  Frames buffers = raw.take_buffers();
  Status s = store_->Update(msg_id, [&](TaskRecord& r) {
    r.result_header = std::move(header_text);
    r.result_metadata = std::move(md_text);
    r.result_content = std::move(content_text);
    r.result_buffers = std::move(buffers);
    r.completed = completed ? completed : now;
    if (started) r.started = started;
    r.received = now;
    if (!engine_uuid.empty()) r.engine_uuid = engine_uuid;
  });
  LogStoreFailure(s, "result", msg_id);
}

void Hub::RestoreTasks() {
  std::vector<TaskJournal::Pending> restored = journal_->PendingRequests();
  if (restored.empty()) return;
  auto to_send = std::make_shared<std::vector<Frames>>();
  for (TaskJournal::Pending& p : restored) {
    Result<RawMessage> raw = RawMessage::FromFrames(protocol::ShareFrames(p.frames));
    if (!raw.ok() || raw->identity_count() != 1) {
      log_->error("task journal: dropped unreadable request {}", p.msg_id);
      continue;
    }
    SaveRequest(*raw, "task", "");
    to_send->push_back(std::move(p.frames));
  }
  log_->info("restored {} accepted task(s) with no reply from the task journal; running them again in {} ms",
             to_send->size(), options_.restore_tasks_after.count());
  reactor_->after(options_.restore_tasks_after, [this, to_send] {
    for (Frames& frames : *to_send) {
      Result<RawMessage> raw = RawMessage::FromFrames(std::move(frames));
      if (!raw.ok()) continue;
      Result<json> header = raw->parse_object(RawMessage::kHeader);
      if (!header.ok() || !pending_.count(StringField(*header, "msg_id"))) continue;  // answered meanwhile
      // Signed anew (a new date): an engine that got the request before the crash has its
      // signature, and would drop it as a replay.
      (*header)["date"] = protocol::Iso8601(protocol::WallClock::now());
      Frames client;
      client.emplace_back(raw->identity(0).data(), raw->identity(0).size());
      protocol::Send(resubmit_, session_.serialize_parts(std::move(client), header->dump(),
                                                         std::string(raw->part(RawMessage::kParent)),
                                                         std::string(raw->part(RawMessage::kMetadata)),
                                                         std::string(raw->part(RawMessage::kContent)),
                                                         raw->take_buffers()));
    }
  });
}

void Hub::LogStoreFailure(const Status& s, std::string_view what, const std::string& msg_id) const {
  if (s.ok()) return;
  if (s.code() == Status::Code::kNotFound) {
    SPDLOG_LOGGER_DEBUG(log_, "{} of {} not recorded: {}", what, msg_id, s.ToString());
    return;
  }
  log_->error("task database: {} of {} not recorded: {}", what, msg_id, s.ToString());
}

void Hub::SaveTaskDestination(const std::string& msg_id, const std::string& engine_uuid) {
  // No engine: the scheduler took it back from its engine (work stealing) to run elsewhere.
  if (engine_uuid.empty()) {
    unassigned_.insert(msg_id);
  } else {
    unassigned_.erase(msg_id);
  }
  StopWaiting(msg_id);
  if (dashboard_) dashboard_->TaskAssigned(msg_id, engine_uuid);
  // A retry or a task given back: only this tells the hub that the task left the engine it was
  // on (the scheduler kept a failed attempt's reply; a given-back task never had one).
  std::string previous;
  if (auto where = task_engine_.find(msg_id); where != task_engine_.end()) {
    previous = std::move(where->second);
    task_engine_.erase(where);
  }
  if (!engine_uuid.empty()) task_engine_[msg_id] = engine_uuid;
  if (previous != engine_uuid) {
    if (auto old = by_uuid_.find(previous); old != by_uuid_.end()) EraseValue(engines_[old->second].tasks, msg_id);
    if (auto it = by_uuid_.find(engine_uuid); it != by_uuid_.end()) engines_[it->second].tasks.push_back(msg_id);
  }
  LogStoreFailure(store_->Update(msg_id, [&](TaskRecord& r) { r.engine_uuid = engine_uuid; }), "engine", msg_id);
}

void Hub::SaveTaskWaiting(const std::string& msg_id, const std::string& reason) {
  // Reported again for the same reason (the scheduler parked it anew): nothing changes.
  if (auto same = waiting_tasks_.find(msg_id); same != waiting_tasks_.end() && same->second->first == reason) return;
  StopWaiting(msg_id);
  // The scheduler reports a wait before the task's destination or reply, on the same channel:
  // every entry made here is cleared by one of those.
  if (reason.empty()) return;
  auto [counted, first] = waiting_reasons_.try_emplace(reason, 0);
  if (first) {
    log_->warn("load-balanced tasks wait for {}: no connected engine can run them (ipp status, ipp top, the dashboard)",
               reason);
  }
  ++counted->second;
  waiting_tasks_.emplace(msg_id, counted);
  if (dashboard_) dashboard_->WaitingFor(waiting_reasons_);
}

void Hub::StopWaiting(const std::string& msg_id) {
  if (waiting_tasks_.empty()) return;
  auto it = waiting_tasks_.find(msg_id);
  if (it == waiting_tasks_.end()) return;
  if (--it->second->second == 0) waiting_reasons_.erase(it->second);
  waiting_tasks_.erase(it);
  if (dashboard_) dashboard_->WaitingFor(waiting_reasons_);
}

void Hub::SaveIopub(RawMessage& raw) {
  Result<protocol::PartFields> header = protocol::PartFields::Of(raw.part(RawMessage::kHeader));
  if (!header.ok()) return;
  std::string msg_type = StringField(*header, "msg_type");
  if (msg_type == "status" || msg_type == "shutdown_reply") return;
  Result<protocol::PartFields> parent = protocol::PartFields::Of(raw.part(RawMessage::kParent));
  if (!parent.ok()) return;
  std::string msg_id = StringField(*parent, "msg_id");
  if (msg_id.empty()) return;
  Result<json> content = raw.parse_object(RawMessage::kContent);
  if (!content.ok()) return;
  auto apply = [&](TaskRecord& r) {
    if (msg_type == "stream") {
      std::string name = StringField(*content, "name");
      std::string text = StringField(*content, "text");
      (name == "stderr" ? r.stderr_text : r.stdout_text) += text;
    } else if (msg_type == "error") {
      r.error = content->dump();
    } else if (msg_type == "execute_input") {
      r.execute_input = StringField(*content, "code");
    } else if (msg_type == "execute_result" || msg_type == "display_data") {
      r.execute_result = content->dump();
    }
  };
  if (store_->Contains(msg_id)) {
    LogStoreFailure(store_->Update(msg_id, apply), "output", msg_id);
  } else {
    TaskRecord r;
    r.msg_id = msg_id;
    apply(r);
    LogStoreFailure(store_->Add(std::move(r)), "output", msg_id);
  }
}


}  // namespace ipp::controller

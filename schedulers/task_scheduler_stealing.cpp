// Work stealing: the TaskScheduler's part that takes back tasks queued behind a long one (see
// task_scheduler.hpp; the reactor's thread, as all of the scheduler).
#include <algorithm>

#include "protocol/monitor.hpp"
#include "schedulers/task_scheduler.hpp"

namespace ipp::schedulers {

using nlohmann::json;
using protocol::RawMessage;

bool TaskScheduler::Stealable(const Slot& slot) const {
  return slot.caps && slot.caps->kind == protocol::EngineKind::kNative && !slot.cannot_release;
}

void TaskScheduler::CountStealable(const Slot& slot, int sign) {
  if (!Stealable(slot)) unstealable_ = static_cast<size_t>(static_cast<long>(unstealable_) + sign);
}

void TaskScheduler::ArmStealing() {
  if (steal_timer_ || !control_connected_ || options_.hwm) return;
  // Often enough that a stuck queue moves within a few of Overdue's slack, rarely enough that
  // the pass over the engines costs nothing next to the tasks.
  constexpr std::chrono::milliseconds kStealCheck{10};
  steal_timer_ = reactor_->after(kStealCheck, [this] {
    steal_timer_ = 0;
    Steal();
  });
}

void TaskScheduler::Steal() {
  constexpr std::chrono::seconds kReleasePatience{5};
  auto now = std::chrono::steady_clock::now();
  size_t idle = 0;
  bool queues = false;
  std::vector<uint32_t> overdue;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (!s.connected) continue;
    if (s.load == 0) ++idle;
    if (s.load < 2) continue;
    queues = true;
    // An answer lost (the engine went and came back): ask again later.
    if (s.releasing && now - s.release_sent > kReleasePatience) s.releasing = false;
    if (s.releasing || !Stealable(s)) continue;
    if (prefetch_->Overdue(timings_, std::chrono::duration_cast<Micros>(now - s.waiting_since))) overdue.push_back(i);
  }
  if (idle > 0) {
    for (uint32_t slot : overdue) AskRelease(slot);
  }
  if (queues) ArmStealing();
}

void TaskScheduler::AskRelease(uint32_t slot) {
  Slot& s = slots_[slot];
  const auto& running = engines_[s.uuid].running;
  json ids = json::array();
  for (const auto& [id, job] : running) {
    // Only what another engine may run: this one will drop its copy unanswered.
    if (job->targets.empty() && job->follow.empty() && EverywhereCanRun(job->needs)) ids.push_back(id);
  }
  if (ids.size() < 2) return;  // the first is running, or about to
  protocol::Message request = session_.make("ipp_release_request", {{"msg_ids", std::move(ids)}});
  request.identities.emplace_back(s.uuid.data(), s.uuid.size());
  auto held = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - s.waiting_since);
  log_->info("engine {} has held {} task(s) for {} ms without an answer while others idle: asking for those "
             "not started back", s.uuid, s.load, held.count());
  protocol::Send(control_, session_.serialize(std::move(request)));
  timings_.RunningFor(std::chrono::duration_cast<Micros>(held));
  s.releasing = true;
  s.release_sent = std::chrono::steady_clock::now();
  s.gave_back = true;  // nothing more for it until it answers
  Reindex(slot, std::chrono::steady_clock::now());
}

void TaskScheduler::Resign(Job& job) {
  // The engine that gave it back drops the copy it holds when that comes off its socket, and
  // would take the same signed message again for a replay: a second copy differs in metadata.
  auto delimiter = std::find_if(job.frames.begin(), job.frames.end(),
                                [](const zmq::message_t& f) { return protocol::view(f) == protocol::kDelimiter; });
  if (std::distance(delimiter, job.frames.end()) < 6) return;
  auto part = [&](RawMessage::Part p) -> zmq::message_t& { return *(delimiter + 1 + p); };
  json metadata = json::parse(protocol::view(part(RawMessage::kMetadata)), nullptr, false);
  if (!metadata.is_object()) return;
  json& resent = metadata["ipp_resent"];
  resent = resent.is_number_integer() ? resent.get<int64_t>() + 1 : 1;
  std::string text = metadata.dump();
  part(RawMessage::kMetadata) = zmq::message_t(text.data(), text.size());
  std::string_view parts[] = {protocol::view(part(RawMessage::kHeader)), protocol::view(part(RawMessage::kParent)),
                              protocol::view(part(RawMessage::kMetadata)), protocol::view(part(RawMessage::kContent))};
  std::string signature = session_.signer().sign(parts, 4);
  part(RawMessage::kSignature) = zmq::message_t(signature.data(), signature.size());
}

void TaskScheduler::OnReleaseReply() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(control_);
    if (!frames) return;
    Result<protocol::Message> reply = session_.parse(std::move(*frames));
    if (!reply.ok() || reply->identities.empty()) {
      log_->warn("dropped a reply on the control channel: {}", reply.ok() ? "no engine id" : reply.status().ToString());
      continue;
    }
    std::string engine(protocol::view(reply->identities[0]));
    Slot* slot = SlotOf(engine);
    if (slot) slot->releasing = false;
    std::vector<std::string> released;
    const json& content = reply->content;
    if (reply->msg_type() == "ipp_release_reply" && protocol::StringField(content, "status") == "ok" &&
        content.contains("released") && content["released"].is_array()) {
      for (const auto& id : content["released"]) {
        if (id.is_string()) released.push_back(id.get<std::string>());
      }
    } else {
      // An engine that does not know the request (not ours, or an older build) answers KeyError:
      // never again. Anything else (the relay's EngineError for an engine reconnecting) passes.
      bool unknown = protocol::StringField(content, "ename") == "KeyError";
      if (slot && unknown && !slot->cannot_release) {
        CountStealable(*slot, -1);
        slot->cannot_release = true;
        CountStealable(*slot, +1);
      }
      log_->info("engine {} did not give back queued tasks ({}: {})", engine, protocol::StringField(content, "ename"),
                 protocol::StringField(content, "evalue"));
    }
    auto state = engines_.find(engine);
    std::vector<std::unique_ptr<Job>> jobs;
    for (const auto& id : released) {
      if (state == engines_.end()) break;
      auto it = state->second.running.find(id);
      if (it == state->second.running.end()) continue;  // answered meanwhile (it was not released)
      Resign(*it->second);
      // It was sent in time: its timeout is for waiting to run, and it waited on an engine.
      it->second->deadline.reset();
      jobs.push_back(std::move(it->second));
      state->second.running.erase(it);
      if (slot) --slot->load;
    }
    if (slot) Reindex(state->second.slot, std::chrono::steady_clock::now());
    if (jobs.empty()) continue;
    log_->info("engine {} gave back {} queued task(s); they run elsewhere", engine, jobs.size());
    std::sort(jobs.begin(), jobs.end(),
              [](auto& a, auto& b) { return RunsBefore(a->priority, a->seq, b->priority, b->seq); });
    // In their turn: before what was submitted after them.
    for (auto& job : jobs) {
      // Off that engine: the hub and dashboard count it as queued until its next destination.
      protocol::Send(monitor_, protocol::monitor::TaskDestination(job->msg_id, ""));
      Dispatch(std::move(job), &TaskScheduler::Wait);
    }
    std::stable_sort(queue_.begin(), queue_.end());
  }
}

}  // namespace ipp::schedulers

#include "schedulers/task_scheduler.hpp"

#include <algorithm>

#include "protocol/clock.hpp"
#include "protocol/errors.hpp"
#include "protocol/json_fields.hpp"
#include "protocol/monitor.hpp"
#include "schedulers/request_types.hpp"
#include "schedulers/task_metadata.hpp"

namespace ipp::schedulers {

using nlohmann::json;
using protocol::Frames;
using protocol::RawMessage;

TaskScheduler::TaskScheduler(zmq::context_t& context, const std::string& key,
                             TaskSchedulerOptions options, Logger log)
    : session_(key),
      options_(std::move(options)),
      policy_(MakePolicy(options_.scheme)),
      rng_(options_.seed),
      log_(std::move(log)),
      client_(context, zmq::socket_type::router),
      engine_(context, zmq::socket_type::router),
      notifications_(context, zmq::socket_type::sub),
      monitor_(context, zmq::socket_type::push),
      aborts_(context, zmq::socket_type::pull),
      control_(context, zmq::socket_type::dealer),
      to_engines_(engine_, options_.delivery_patience),
      fates_(options_.remembered_tasks) {
  if (!policy_) {
    log_->error("unknown scheme '{}', using leastload", options_.scheme);
    options_.scheme = "leastload";
    policy_ = MakePolicy(options_.scheme);
  }
  index_ = MakeEngineIndex(options_.scheme);
  prefetch_ = MakePrefetch(options_.hwm);
  for (zmq::socket_t* s : {&client_, &engine_, &notifications_, &monitor_, &aborts_, &control_}) {
    protocol::ConfigureUnbounded(*s);
  }
  notifications_.set(zmq::sockopt::subscribe, "");
  engine_.set(zmq::sockopt::router_mandatory, 1);
}

void TaskScheduler::Connect(const std::string& notification_url, const std::string& monitor_url) {
  notifications_.connect(notification_url);
  monitor_.connect(monitor_url);
}

void TaskScheduler::ListenForAborts(const std::string& url) { aborts_.bind(url); }

void TaskScheduler::ConnectControl(const std::string& url) {
  control_.connect(url);
  control_connected_ = true;
}

void TaskScheduler::AddEngine(const std::string& uuid, protocol::Capabilities caps) {
  RegisterEngine(uuid, std::make_shared<const protocol::Capabilities>(std::move(caps)));
}

void TaskScheduler::Attach(Reactor& reactor) {
  reactor_ = &reactor;
  reactor.add(notifications_, [this] { OnNotification(); });
  reactor.add(client_, [this] { OnSubmission(); });
  reactor.add(engine_, [this] { OnResult(); });
  reactor.add(aborts_, [this] { OnAbort(); });
  if (control_connected_) reactor.add(control_, [this] { OnReleaseReply(); });
  to_engines_.Attach(reactor, [this](Frames&& f) { Undeliverable(std::move(f)); });
  log_->info("task scheduler started: scheme {}, hwm {}", options_.scheme,
             options_.hwm ? std::to_string(*options_.hwm) : std::string("adaptive"));
}

// ---------------------------------------------------------------------------------------------
// Engines

void TaskScheduler::OnNotification() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(notifications_);
    if (!frames) break;
    Result<protocol::Message> m = session_.parse(std::move(*frames));
    if (!m.ok()) {
      log_->warn("dropped notification: {}", m.status().ToString());
      continue;
    }
    auto uuid = m->content.find("uuid");
    if (uuid == m->content.end() || !uuid->is_string()) continue;
    const std::string& engine = uuid->get_ref<const std::string&>();
    if (m->msg_type() == "registration_notification" || m->msg_type() == "ipp_engine_update") {
      Result<protocol::Capabilities> caps = protocol::Capabilities::FromContent(m->content);
      if (!caps.ok()) {
        log_->warn("engine {}: {}; taken for a Python engine", engine, caps.status().message());
        caps = protocol::Capabilities{};
      }
      auto shared = std::make_shared<const protocol::Capabilities>(std::move(*caps));
      if (m->msg_type() == "ipp_engine_update") {
        SetCapabilities(engine, std::move(shared));
        continue;
      }
      engines_[engine].id = m->content.value("id", -1);
      RegisterEngine(engine, std::move(shared));
    }
    if (m->msg_type() == "unregistration_notification") {
      auto state = engines_.find(engine);
      if (state != engines_.end()) state->second.gone_reason = m->content.value("reason", "");
      UnregisterEngine(engine);
    }
  }
}

void TaskScheduler::RegisterEngine(const std::string& uuid, Caps caps) {
  if (SlotOf(uuid)) {
    SetCapabilities(uuid, std::move(caps));  // announced again (restored, then notified)
    return;
  }
  uint32_t slot;
  if (free_slots_.empty()) {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  Slot& s = slots_[slot];
  s = Slot{};
  s.uuid = uuid;
  s.last_use = --join_clock_;  // head of the line
  s.caps = caps;
  s.connected = true;
  ++connected_;
  CountStealable(s, +1);
  auto& state = engines_[uuid];
  state.slot = slot;
  state.alive = true;
  state.caps = std::move(caps);
  state.index = engine_index_.emplace(uuid, static_cast<uint32_t>(engine_index_.size())).first->second;
  ++caps_generation_;
  Reindex(slot, std::chrono::steady_clock::now());
  log_->info("engine {} available ({} engines, {})", uuid, connected_, protocol::EngineKindName(state.caps->kind));
  Unpark();
  RunQueued();
}

void TaskScheduler::SetCapabilities(const std::string& uuid, Caps caps) {
  Slot* slot = SlotOf(uuid);
  if (!slot) {
    log_->warn("capabilities of engine {} dropped: not a connected engine", uuid);
    return;
  }
  CountStealable(*slot, -1);
  slot->caps = caps;
  CountStealable(*slot, +1);
  engines_[uuid].caps = std::move(caps);
  ++caps_generation_;
  log_->info("engine {}: capabilities updated", uuid);
  ParkUnrunnable();
  Unpark();
  RunQueued();
}

void TaskScheduler::UnregisterEngine(const std::string& uuid) {
  auto state = engines_.find(uuid);
  if (state == engines_.end() || state->second.slot == kNoSlot) return;
  uint32_t slot = state->second.slot;
  if (slots_[slot].indexed) index_->Erase(slot);
  CountStealable(slots_[slot], -1);
  slots_[slot] = Slot{};
  free_slots_.push_back(slot);
  --connected_;
  state->second.slot = kNoSlot;
  ++caps_generation_;
  ParkUnrunnable();
  state->second.alive = false;
  log_->warn("engine {} gone with {} task(s) outstanding", uuid, state->second.running.size());
  if (state->second.running.empty()) {
    engines_.erase(state);
    return;
  }
  // Results may still be in flight: give them a moment before failing or retrying the rest.
  reactor_->after(options_.stranded_grace, [this, uuid] { HandleStranded(uuid); });
}

void TaskScheduler::HandleStranded(const std::string& uuid) {
  auto state = engines_.find(uuid);
  if (state == engines_.end() || state->second.alive) return;  // it came back
  std::vector<std::unique_ptr<Job>> lost;
  for (auto& [id, job] : state->second.running) lost.push_back(std::move(job));
  int engine_id = state->second.id;
  std::string why = std::move(state->second.gone_reason);
  engines_.erase(state);
  // An engine runs one request at a time, in the order they arrived: only the first one sent
  // can have started. With the adaptive prefetch (our default) the others only waited there,
  // so they go back to the queue as they are, as they would have stayed queued here with hwm 1.
  // With --hwm N every outstanding task counts, as in ipyparallel.
  if (!options_.hwm && lost.size() > 1) {
    auto first = std::min_element(lost.begin(), lost.end(), [](auto& a, auto& b) { return a->sent < b->sent; });
    std::iter_swap(lost.begin(), first);
    for (size_t i = 1; i < lost.size(); ++i) {
      log_->info("task {} was queued on dead engine {} and never started; resubmitting", lost[i]->msg_id, uuid);
      Retry(std::move(lost[i]), uuid);
    }
    lost.resize(1);
  }
  std::sort(lost.begin(), lost.end(),
            [](auto& a, auto& b) { return RunsBefore(a->priority, a->seq, b->priority, b->seq); });
  for (auto& job : lost) {
    if (job->retries > 0) {
      --job->retries;
      log_->info("task {} was on dead engine {}; resubmitting ({} retries left)", job->msg_id,
                 uuid, job->retries);
      Retry(std::move(job), uuid);
    } else {
      std::string evalue = protocol::EngineDiedText(engine_id, uuid, job->msg_id, why);
      Fail(std::move(job), "EngineError", evalue, uuid);
    }
  }
}

TaskScheduler::Slot* TaskScheduler::SlotOf(const std::string& uuid) {
  auto state = engines_.find(uuid);
  if (state == engines_.end() || state->second.slot == kNoSlot) return nullptr;
  return &slots_[state->second.slot];
}

bool TaskScheduler::HasRoom(const Slot& slot, std::chrono::steady_clock::time_point now) const {
  if (slot.gave_back) return slot.load < 1;
  auto waited = slot.load > 0 ? std::chrono::duration_cast<Micros>(now - slot.waiting_since) : Micros(0);
  return slot.load < prefetch_->Depth(timings_, slot.answered, waited);
}

void TaskScheduler::Reindex(uint32_t slot, std::chrono::steady_clock::time_point now) {
  Slot& s = slots_[slot];
  if (s.indexed) index_->Erase(slot);
  s.indexed = s.connected && HasRoom(s, now);
  if (s.indexed) index_->Insert(slot, s.load, s.last_use);
}

std::optional<uint32_t> TaskScheduler::PickIndexed() {
  auto now = std::chrono::steady_clock::now();
  const int fill = unstealable_ == 0 && control_connected_ ? prefetch_->FillBelow(timings_) : 0;
  while (!index_->empty()) {
    std::optional<uint32_t> filling = fill > 1 ? index_->PickFilling(fill) : std::nullopt;
    uint32_t slot = filling ? *filling : index_->Pick(rng_);
    if (HasRoom(slots_[slot], now)) return slot;
    index_->Erase(slot);
    slots_[slot].indexed = false;
  }
  return std::nullopt;
}

bool TaskScheduler::CanRunOn(const Job& job, const Slot& slot, bool caps) const {
  if (caps && !job.needs.CanRunOn(*slot.caps)) return false;
  const std::string& target = slot.uuid;
  if (job.blacklist.count(target)) return false;
  if (!job.targets.empty() && !job.targets.count(target)) return false;
  if (job.follow.empty()) return true;
  return job.follow.Check(fates_, engines_.at(target).index);
}

bool TaskScheduler::EverywhereCanRun(const TaskNeeds& needs) {
  for (const Everywhere& e : everywhere_) {
    if (e.generation == caps_generation_ && e.needs == needs) return e.all;
  }
  bool all = std::all_of(slots_.begin(), slots_.end(),
                         [&](const Slot& s) { return !s.connected || needs.CanRunOn(*s.caps); });
  constexpr size_t kEntries = 8;  // distinct needs in use at once are few
  Everywhere entry{needs, caps_generation_, all};
  if (everywhere_.size() < kEntries) {
    everywhere_.push_back(std::move(entry));
  } else {
    everywhere_[everywhere_next_] = std::move(entry);
    everywhere_next_ = (everywhere_next_ + 1) % kEntries;
  }
  return all;
}

bool TaskScheduler::AnyAvailableCanRun(const TaskNeeds& needs) {
  if (EverywhereCanRun(needs)) return PickIndexed().has_value();
  auto now = std::chrono::steady_clock::now();
  return std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) {
    return s.connected && needs.CanRunOn(*s.caps) && HasRoom(s, now);
  });
}

bool TaskScheduler::AnyConnectedCanRun(const TaskNeeds& needs) const {
  return std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.connected && needs.CanRunOn(*s.caps); });
}

void TaskScheduler::Park(std::unique_ptr<Job> job, bool fresh) {
  job->parked = true;
  if (!job->reported) {
    job->reported = true;
    std::string reason = job->needs.Reason();
    log_->info("task {} waits for {}", job->msg_id, reason);
    protocol::Send(monitor_, protocol::monitor::TaskWaiting(job->msg_id, reason));
  }
  parked_.push_back(EntryOf(*job));
  if (fresh) {
    Enter(std::move(job), false);
  } else {
    KeepWaiting(std::move(job));
  }
  if (parked_.size() > 2 * waiting_.size() + 1024) {  // drop stale entries now and then
    std::deque<Queued> live;
    for (auto& entry : parked_) {
      auto it = waiting_.find(entry.msg_id);
      if (it != waiting_.end() && it->second->parked && it->second->seq == entry.seq) live.push_back(std::move(entry));
    }
    parked_.swap(live);
  }
}

void TaskScheduler::Unpark() {
  if (parked_.empty()) return;
  std::deque<Queued> still;
  bool moved = false;
  for (auto& entry : parked_) {
    auto it = waiting_.find(entry.msg_id);
    if (it == waiting_.end() || !it->second->parked || it->second->seq != entry.seq) continue;  // stale
    Job& job = *it->second;
    if (!AnyConnectedCanRun(job.needs)) {
      still.push_back(std::move(entry));
      continue;
    }
    job.parked = false;
    if (job.reported) {
      job.reported = false;
      protocol::Send(monitor_, protocol::monitor::TaskWaiting(job.msg_id, ""));
    }
    queue_.push_back(std::move(entry));
    moved = true;
  }
  parked_.swap(still);
  if (moved) {
    std::stable_sort(queue_.begin(), queue_.end());
  }
}

void TaskScheduler::ParkUnrunnable() {
  std::vector<std::string> unrunnable;
  std::vector<std::pair<TaskNeeds, bool>> seen;  // needs -> some connected engine meets them
  for (const Queued& entry : queue_) {
    const std::string& id = entry.msg_id;
    auto it = waiting_.find(id);
    if (it == waiting_.end() || it->second->parked || it->second->seq != entry.seq) continue;
    const TaskNeeds& needs = it->second->needs;
    auto known = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == needs; });
    if (known == seen.end()) known = seen.insert(seen.end(), {needs, AnyConnectedCanRun(needs)});
    if (!known->second) unrunnable.push_back(id);
  }
  // Their queue_ entries stay, to be dropped when RunQueued reaches them.
  for (const auto& id : unrunnable) {
    if (auto job = TakeWaiting(id)) Park(std::move(job), false);
  }
}

// ---------------------------------------------------------------------------------------------
// Submission

void TaskScheduler::OnSubmission() {
  OnNotification();  // know about every engine the hub has told clients about
  for (int batch = 0; batch < protocol::kBatch; ++batch) {
    auto frames = protocol::TryRecv(client_);
    if (!frames) return;
    // A client's request the hub restored from its journal: it is that client's (and so is
    // the reply).
    if (frames->size() > 2 && protocol::view((*frames)[0]) == protocol::monitor::kHubRoutingId &&
        protocol::view((*frames)[1]) != protocol::kDelimiter) {
      frames->erase(frames->begin());
    }
    Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
    if (!raw.ok() || raw->identity_count() == 0) {
      log_->warn("dropped malformed task: {}", raw.ok() ? "no routing id" : raw.status().ToString());
      continue;
    }
    if (Status s = session_.verify(*raw); !s.ok()) {
      log_->warn("dropped task from {:?}: {}", raw->identity(0), s.ToString());
      continue;
    }
    // Only a few fields of header and metadata matter here: read them without building trees
    // (this was the scheduler's largest cost), before the frames move into the job.
    Result<protocol::PartFields> header = protocol::PartFields::Of(raw->part(RawMessage::kHeader));
    Result<protocol::PartFields> md = protocol::PartFields::Of(raw->part(RawMessage::kMetadata));
    std::optional<std::string> msg_id = header.ok() ? header->string("msg_id") : std::nullopt;
    if (!msg_id || !header->string("msg_type") || !md.ok()) {
      log_->warn("dropped task with a bad header or metadata");
      continue;
    }
    std::string type = *header->string("msg_type");
    if (!Carries(RequestChannel::kTask, type)) {
      Refuse(*raw, type);
      continue;
    }
    // A second copy of a task still waiting or running (a client resending what it could not
    // tell the controller had, after a restart): one run, one reply.
    if (fates_.find(*msg_id).outcome == TaskFates::Outcome::kPending) {
      log_->warn("dropped task {}: a task with that msg_id is already waiting or running", *msg_id);
      continue;
    }
    // No engine could read it (which kind it needs cannot be told either): answered here, as an
    // engine answers a malformed request.
    std::string_view content = raw->part(RawMessage::kContent);
    size_t opening = content.find_first_not_of(" \t\r\n");
    bool object_content = opening != std::string_view::npos && content[opening] == '{';
    protocol::monitor::Send(monitor_, protocol::monitor::Topic::kTaskRequest, raw->frames());
    auto job = std::make_unique<Job>();
    job->msg_id = std::move(*msg_id);
    job->seq = next_seq_++;
    job->client = std::string(raw->identity(0));
    job->header = std::string(raw->part(RawMessage::kHeader));
    fates_.Submitted(job->msg_id);
    Result<TaskMetadata> metadata = ParseTaskMetadata(*md);
    if (metadata.ok()) {
      job->needs = NeedsOf(type, content, *metadata);
      job->targets = std::move(metadata->targets);
      job->retries = metadata->retries;
      job->priority = metadata->priority;
      if (metadata->timeout) job->deadline = std::chrono::steady_clock::now() + *metadata->timeout;
      job->after = std::move(metadata->after);
      job->follow = std::move(metadata->follow);
    }
    job->frames = std::move(*raw).release();
    if (aborted_.take(job->msg_id)) {
      Abort(std::move(job));
      continue;
    }
    if (!metadata.ok()) {
      Fail(std::move(job), TaskMetadataErrorName(metadata.status()), metadata.status().message(), "");
      continue;
    }
    if (!object_content) {
      Fail(std::move(job), "InvalidRequest", "malformed " + type + ": its content is not a JSON object", "");
      continue;
    }
    Submit(std::move(job));
  }
}

void TaskScheduler::Refuse(RawMessage& raw, const std::string& msg_type) {
  // Not a task: no engine would answer it, and its slot would never come back.
  log_->warn("refused a {} from {:?} on the task channel", msg_type, raw.identity(0));
  SendToClient(Refusal(session_, RequestChannel::kTask, raw, msg_type));
}

void TaskScheduler::Submit(std::unique_ptr<Job> job) {
  for (const Dependency* dep : {&job->after, &job->follow}) {
    if (dep->empty()) continue;
    bool invalid = dep->ids.count(job->msg_id) > 0;
    for (const auto& id : dep->ids) invalid = invalid || !Known(id);
    if (invalid) {
      Fail(std::move(job), "InvalidDependency",
           "dependency on its own msg_id, or one never seen or long forgotten (see --remembered-tasks)", "");
      return;
    }
    if (dep->Unreachable(fates_)) {
      Fail(std::move(job), "ImpossibleDependency", "dependency can never be met", "");
      return;
    }
  }
  if (!AfterMet(*job)) return Wait(std::move(job));
  Dispatch(std::move(job), &TaskScheduler::Wait);
}

TaskScheduler::Placement TaskScheduler::Place(const Job& job) {
  bool everywhere = EverywhereCanRun(job.needs);
  if (everywhere && job.follow.empty() && job.targets.empty() && job.blacklist.empty()) {
    std::optional<uint32_t> slot = PickIndexed();
    return slot ? Placement::On(*slot) : Placement::Wait();
  }
  // Only some engines may run it: the policy picks among those with room, in LRU order.
  auto now = std::chrono::steady_clock::now();
  std::vector<uint32_t> indices;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].connected && HasRoom(slots_[i], now) && CanRunOn(job, slots_[i], !everywhere)) indices.push_back(i);
  }
  std::sort(indices.begin(), indices.end(),
            [&](uint32_t a, uint32_t b) { return slots_[a].last_use < slots_[b].last_use; });
  if (indices.empty()) {
    if (job.follow.all && !job.follow.empty()) {
      // Followed tasks ran on different engines: no single engine can satisfy `follow`.
      std::unordered_set<uint32_t> dests;
      for (const auto& id : job.follow.ids) {
        TaskFates::Fate fate = fates_.find(id);
        if (job.follow.MetBy(fate) && fate.engine != TaskFates::kNoEngine) dests.insert(fate.engine);
      }
      if (dests.size() > 1) return Placement::Never("follow dependencies ran on different engines");
    }
    if (!job.targets.empty()) {
      bool any_alive = std::any_of(job.targets.begin(), job.targets.end(), [&](const std::string& t) {
        auto state = engines_.find(t);
        return !job.blacklist.count(t) && state != engines_.end() && state->second.slot != kNoSlot;
      });
      if (!any_alive) return Placement::Never("no allowed target engine is available");
    }
    return Placement::Wait();
  }
  std::vector<int> loads;
  loads.reserve(indices.size());
  for (uint32_t i : indices) loads.push_back(slots_[i].load);
  return Placement::On(indices[policy_->Pick(loads, rng_)]);
}

void TaskScheduler::Dispatch(std::unique_ptr<Job> job, void (TaskScheduler::*wait)(std::unique_ptr<Job>)) {
  Placement where = Place(*job);
  switch (where.kind) {
    case Placement::kEngine: return RunOn(std::move(job), where.engine);
    case Placement::kNever: return Fail(std::move(job), "ImpossibleDependency", where.why, "");
    case Placement::kWait:
      if (!(connected_ > 0 && EverywhereCanRun(job->needs)) && !AnyConnectedCanRun(job->needs)) {
        return Park(std::move(job), wait == &TaskScheduler::Wait);
      }
      return (this->*wait)(std::move(job));
  }
}

void TaskScheduler::RunOn(std::unique_ptr<Job> job, uint32_t slot) {
  Slot& s = slots_[slot];
  const std::string& target = s.uuid;
  Frames out;
  out.reserve(job->frames.size() + 1);
  out.emplace_back(target.data(), target.size());
  for (auto& f : job->frames) {
    out.emplace_back();
    out.back().copy(f);  // keep the job's frames for a retry; payloads are shared
  }
  to_engines_.Send(std::move(out));
  job->sent = std::chrono::steady_clock::now();
  job->sent_alone = s.load == 0;
  if (s.load == 0) s.waiting_since = job->sent;
  ++s.load;
  s.last_use = ++use_clock_;  // the engine that just got work goes to the back of the line
  Reindex(slot, job->sent);
  if (s.load > 1) ArmStealing();
  protocol::Send(monitor_, protocol::monitor::TaskDestination(job->msg_id, target));
  SPDLOG_LOGGER_DEBUG(log_, "task {} -> engine {}", job->msg_id, target);
  engines_[target].running[job->msg_id] = std::move(job);
}

void TaskScheduler::Undeliverable(Frames&& frames) {
  // [engine, client, <msg>]: the engine never connected its task socket.
  std::string engine(protocol::view(frames[0]));
  Result<RawMessage> raw = RawMessage::FromFrames(std::move(frames));
  if (!raw.ok()) return;
  Result<json> header = raw->parse_object(RawMessage::kHeader);
  if (!header.ok()) return;
  std::string msg_id = header->value("msg_id", "");
  auto state = engines_.find(engine);
  if (state == engines_.end() || !state->second.running.count(msg_id)) return;
  std::unique_ptr<Job> job = std::move(state->second.running[msg_id]);
  state->second.running.erase(msg_id);
  if (state->second.slot != kNoSlot) {
    --slots_[state->second.slot].load;
    Reindex(state->second.slot, std::chrono::steady_clock::now());
  }
  log_->warn("task {}: engine {} never connected; trying elsewhere", msg_id, engine);
  Retry(std::move(job), engine);
}

void TaskScheduler::Enter(std::unique_ptr<Job> job, bool queued) {
  const std::string id = job->msg_id;
  IdSet deps = job->after.ids;
  deps.insert(job->follow.ids.begin(), job->follow.ids.end());
  for (const auto& dep : deps) {
    if (!fates_.find(dep).ended()) graph_[dep].push_back(id);
  }
  if (job->deadline) {
    if (job->timeout_timer) reactor_->cancel(job->timeout_timer);
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        *job->deadline - std::chrono::steady_clock::now());
    job->timeout_timer = reactor_->after(std::max(remaining, std::chrono::milliseconds(0)), [this, id] {
      auto job = TakeWaiting(id);
      if (!job) return;  // already running or done
      job->timeout_timer = 0;
      log_->info("task {} timed out waiting to run", id);
      std::string why = job->parked ? "no engine that can run it connected within its timeout (needs " +
                                          job->needs.Reason() + ")"
                                    : "Task timed out before it could run";
      Fail(std::move(job), "TaskTimeout", why, "");
    });
  }
  if (queued) Enqueue(EntryOf(*job));
  waiting_[id] = std::move(job);
  if (queue_.size() > 2 * waiting_.size() + 1024) {  // drop stale entries now and then
    std::deque<Queued> live;
    for (auto& entry : queue_) {
      if (waiting_.count(entry.msg_id)) live.push_back(std::move(entry));
    }
    queue_.swap(live);
  }
}

void TaskScheduler::Enqueue(Queued entry) {
  // queue_ runs from the highest priority down. Nearly always every task has the default one:
  // then this is a push_back, as a queue without priorities does.
  if (queue_.empty() || queue_.back().priority >= entry.priority) {
    queue_.push_back(std::move(entry));
    return;
  }
  auto behind = std::upper_bound(queue_.begin(), queue_.end(), entry.priority,
                                 [](int priority, const Queued& e) { return priority > e.priority; });
  queue_.insert(behind, std::move(entry));
}

bool TaskScheduler::Known(const std::string& msg_id) const {
  if (fates_.find(msg_id).outcome != TaskFates::Outcome::kUnknown) return true;
  // Forgotten by fates_ but not done yet (a long wait or a long run).
  if (waiting_.count(msg_id)) return true;
  return std::any_of(engines_.begin(), engines_.end(),
                     [&](const auto& e) { return e.second.running.count(msg_id) > 0; });
}

bool TaskScheduler::AfterMet(Job& job) const {
  if (!job.after.Check(fates_)) return false;
  // Met for good (an outcome never changes): forget the ids, so that a job then waiting for an
  // engine does not depend on fates_ still remembering them.
  job.after = Dependency();
  return true;
}

bool TaskScheduler::LostDependency(const Job& job) const {
  // A task finished long ago, forgotten by fates_ while this job waited for its other
  // dependencies: its outcome can never be known again, so without this the job would wait
  // forever.
  for (const Dependency* dep : {&job.after, &job.follow}) {
    for (const auto& id : dep->ids) {
      if (!Known(id)) return true;
    }
  }
  return false;
}

void TaskScheduler::Advance(std::unique_ptr<Job> job) {
  if (LostDependency(*job)) {
    Fail(std::move(job), "InvalidDependency",
         "a dependency was forgotten while this task waited (more tasks than --remembered-tasks passed)", "");
  } else if (job->after.Unreachable(fates_) || job->follow.Unreachable(fates_)) {
    Fail(std::move(job), "ImpossibleDependency", "dependency can never be met", "");
  } else if (AfterMet(*job)) {
    Dispatch(std::move(job), &TaskScheduler::KeepWaiting);
  } else {
    KeepWaiting(std::move(job));
  }
}

void TaskScheduler::KeepWaiting(std::unique_ptr<Job> job) {
  const std::string id = job->msg_id;
  waiting_[id] = std::move(job);  // its queue_ and graph_ entries are still there
}

std::unique_ptr<TaskScheduler::Job> TaskScheduler::TakeWaiting(const std::string& msg_id) {
  auto it = waiting_.find(msg_id);
  if (it == waiting_.end()) return nullptr;
  auto job = std::move(it->second);
  waiting_.erase(it);
  return job;
}

void TaskScheduler::Fail(std::unique_ptr<Job> job, const std::string& ename,
                         const std::string& evalue, const std::string& engine) {
  if (job->timeout_timer) reactor_->cancel(job->timeout_timer);
  // engine_info stays empty, as the stock scheduler sends it: the client maps an engine_uuid
  // there to an engine id and fails on one it has already seen unregister.
  protocol::Message reply = session_.make(
      "apply_reply", protocol::ErrorContent(ename, evalue), json::parse(job->header, nullptr, false),
      {{"status", "error"},
       {"engine", engine},
       {"dependencies_met", ename != "ImpossibleDependency"},
       {"date", protocol::Iso8601Now()}});
  log_->info("task {} failed: {}: {}", job->msg_id, ename, evalue);
  Answer(*job, std::move(reply), engine);
  Finished(job->msg_id, engine, false);
}

void TaskScheduler::Answer(const Job& job, protocol::Message reply, const std::string& engine) {
  // Monitor first ([outtask, engine, client, msg]), then the client ([client, msg]).
  Frames to_monitor = session_.serialize(std::move(reply));
  Frames to_client = protocol::ShareFrames(to_monitor);
  protocol::Send(monitor_, protocol::monitor::Report(protocol::monitor::Topic::kTaskReply, {engine, job.client},
                                                     std::move(to_monitor)));
  to_client.insert(to_client.begin(), zmq::message_t(job.client.data(), job.client.size()));
  SendToClient(std::move(to_client));
}

// ---------------------------------------------------------------------------------------------
// Aborts

void TaskScheduler::OnAbort() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(aborts_);
    if (!frames) return;
    if (frames->empty()) continue;
    json content = json::parse(protocol::view((*frames)[0]), nullptr, false);
    json ids = content.is_object() ? content.value("msg_ids", json()) : json();
    if (ids.is_string()) ids = json::array({ids});
    std::vector<std::string> named;
    if (ids.is_array()) {
      for (const auto& id : ids) {
        if (id.is_string()) named.push_back(id.get<std::string>());
      }
    }
    if (named.empty()) {
      // No ids: everything still waiting here, in submission order (as an engine answers
      // what waits in its queue).
      std::vector<std::pair<uint64_t, std::string>> all;
      for (const auto& [id, job] : waiting_) all.emplace_back(job->seq, id);
      std::sort(all.begin(), all.end());
      for (const auto& entry : all) named.push_back(entry.second);
    }
    for (const auto& id : named) {
      if (auto job = TakeWaiting(id)) {
        Abort(std::move(job));
      } else if (!Known(id)) {
        aborted_.insert(id);
      }
      // Otherwise it is on an engine (which got the same abort) or done.
    }
  }
}

void TaskScheduler::Abort(std::unique_ptr<Job> job) {
  if (job->timeout_timer) reactor_->cancel(job->timeout_timer);
  json header = json::parse(job->header, nullptr, false);
  std::string reply_type = ReplyType(header.is_object() ? header.value("msg_type", "") : "");
  // What the stock engine answers for an aborted request (ipykernel's _send_abort_reply).
  protocol::Message reply = session_.make(reply_type, {{"status", "aborted"}}, header,
                                          {{"status", "aborted"}, {"engine", ""}, {"dependencies_met", true},
                                           {"is_broadcast", false}, {"is_coalescing", false},
                                           {"original_msg_id", ""}});
  log_->info("task {} aborted before it ran", job->msg_id);
  Answer(*job, std::move(reply), "");
  Finished(job->msg_id, "", false);
}

// ---------------------------------------------------------------------------------------------
// Results

void TaskScheduler::OnResult() {
  for (int batch = 0; batch < protocol::kBatch; ++batch) {
    auto frames = protocol::TryRecv(engine_);
    if (!frames) return;
    Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
    if (!raw.ok() || raw->identity_count() < 2) {
      log_->warn("dropped malformed result");
      continue;
    }
    if (Status s = session_.verify(*raw); !s.ok()) {
      log_->warn("dropped result from {:?}: {}", raw->identity(0), s.ToString());
      continue;
    }
    std::string engine(raw->identity(0));
    HandleResult(std::move(*raw), engine);
  }
}

void TaskScheduler::HandleResult(RawMessage&& raw, const std::string& engine) {
  auto now = std::chrono::steady_clock::now();
  auto state = engines_.find(engine);
  Result<protocol::PartFields> parent = protocol::PartFields::Of(raw.part(RawMessage::kParent));
  Result<protocol::PartFields> md = protocol::PartFields::Of(raw.part(RawMessage::kMetadata));
  if (!parent.ok() || !md.ok()) {
    log_->warn("dropped result from {} with bad parent or metadata", engine);
    return;
  }
  std::string msg_id = parent->string("msg_id").value_or("");
  if (state == engines_.end() || !state->second.running.count(msg_id)) {
    // Already answered (e.g. failed as stranded, or given back): never report a task twice, and
    // the engine's load counts only what it holds.
    log_->warn("dropped result for {} from {}: not outstanding there", msg_id, engine);
    return;
  }
  if (uint32_t slot = state->second.slot; slot != kNoSlot) {
    Slot& s = slots_[slot];
    --s.load;
    ++s.answered;
    s.gave_back = false;
    s.waiting_since = now;  // what it holds next started waiting (at most) now
    Reindex(slot, now);
  }
  std::unique_ptr<Job> job = std::move(state->second.running[msg_id]);
  state->second.running.erase(msg_id);
  bool freed = !options_.hwm || *options_.hwm > 0;
  if (!options_.hwm) {
    if (std::optional<Micros> run = RunTime(raw, *md)) {
      std::optional<Micros> round_trip;
      if (job->sent_alone) round_trip = std::chrono::duration_cast<Micros>(now - job->sent) - *run;
      timings_.Observe(*run, round_trip);
    }
  }

  bool dependencies_met = md->boolean("dependencies_met").value_or(true);
  bool success = md->string("status") == "ok";
  bool aborted = md->string("status") == "aborted";  // by the client: not a failure to retry
  if (!dependencies_met || (!success && !aborted && job->retries > 0)) {
    if (dependencies_met) --job->retries;
    Retry(std::move(job), engine);
    if (freed) RunQueued();
    return;
  }
  if (job->timeout_timer) reactor_->cancel(job->timeout_timer);
  // The hub hears of a result before its client does: a client holding it finds it in any query.
  protocol::monitor::Send(monitor_, protocol::monitor::Topic::kTaskReply, raw.frames());
  raw.swap_first_identities();  // [client, engine, ...] for the ROUTER<->ROUTER mirror
  SendToClient(std::move(raw).release());
  Finished(msg_id, engine, success);
  if (freed) RunQueued();
}

std::optional<Micros> TaskScheduler::RunTime(const RawMessage& reply, const protocol::PartFields& metadata) {
  std::optional<std::string> started = metadata.string("started");
  if (!started) return std::nullopt;
  Result<protocol::PartFields> header = protocol::PartFields::Of(reply.part(RawMessage::kHeader));
  std::optional<std::string> date = header.ok() ? header->string("date") : std::nullopt;
  if (!date) return std::nullopt;
  auto begin = protocol::ParseIso8601(*started), end = protocol::ParseIso8601(*date);
  if (!begin || !end) return std::nullopt;
  return std::chrono::duration_cast<Micros>(*end - *begin);
}

void TaskScheduler::Retry(std::unique_ptr<Job> job, const std::string& engine) {
  job->blacklist.insert(engine);
  if (!job->targets.empty()) {
    bool all_blacklisted = std::all_of(job->targets.begin(), job->targets.end(),
                                       [&](const std::string& t) { return job->blacklist.count(t) > 0; });
    if (all_blacklisted) {
      Fail(std::move(job), "ImpossibleDependency", "every allowed engine refused or failed the task", "");
      return;
    }
  }
  Dispatch(std::move(job), &TaskScheduler::Wait);
}

void TaskScheduler::Finished(const std::string& msg_id, const std::string& engine, bool success) {
  auto index = engine.empty() ? engine_index_.end() : engine_index_.find(engine);
  fates_.Finished(msg_id, success, index == engine_index_.end() ? TaskFates::kNoEngine : index->second);
  RunDependents(msg_id);
}

void TaskScheduler::SendToClient(Frames&& frames) {
  if (!protocol::Send(client_, std::move(frames), true)) {
    log_->warn("could not deliver a reply: client gone");
  }
}

void TaskScheduler::RunDependents(const std::string& finished_id) {
  auto node = graph_.find(finished_id);
  if (node == graph_.end()) return;
  std::vector<std::string> ids = std::move(node->second);
  graph_.erase(node);
  std::vector<Queued> ordered;
  for (auto& id : ids) {
    auto it = waiting_.find(id);
    if (it != waiting_.end()) ordered.push_back(EntryOf(*it->second));
  }
  std::sort(ordered.begin(), ordered.end());
  for (const Queued& entry : ordered) {
    if (auto job = TakeWaiting(entry.msg_id)) Advance(std::move(job));
  }
}

void TaskScheduler::RunQueued() {
  std::vector<Queued> kept;
  // Needs no free engine meets, found in this pass: engines only fill up during it, so the later
  // jobs with the same needs are kept without a look at each engine (in a mixed cluster, a long
  // line of one kind's work waits while the other kind's engines free up).
  std::vector<TaskNeeds> blocked;
  while (!queue_.empty() && !waiting_.empty()) {
    if (!PickIndexed()) break;
    auto entry = std::move(queue_.front());
    queue_.pop_front();
    auto it = waiting_.find(entry.msg_id);
    if (it == waiting_.end() || it->second->seq != entry.seq || it->second->parked) continue;  // stale
    const TaskNeeds& needs = it->second->needs;
    bool known_blocked = std::find(blocked.begin(), blocked.end(), needs) != blocked.end();
    if (!known_blocked && !AnyAvailableCanRun(needs)) {
      blocked.push_back(needs);
      known_blocked = true;
    }
    if (known_blocked) {
      kept.push_back(std::move(entry));
      continue;
    }
    auto job = std::move(it->second);
    waiting_.erase(it);
    Advance(std::move(job));
    auto still = waiting_.find(entry.msg_id);
    if (still != waiting_.end() && !still->second->parked) kept.push_back(std::move(entry));
  }
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) queue_.push_front(std::move(*it));
}

}  // namespace ipp::schedulers

// Hub: engines — registration, heartbeats, unregistration and the work they strand, and the
// engine list saved for --restore.
#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <fstream>

#include "controller/hub.hpp"
#include "protocol/clock.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/errors.hpp"
#include "protocol/gateway.hpp"

namespace ipp::controller {

using nlohmann::json;
using protocol::Message;

namespace {
// For the log: "native, 14 functions, tags gpu" / "python".
std::string Describe(const std::optional<protocol::Capabilities>& c) {
  if (!c) return "python";
  std::string out = protocol::EngineKindName(c->kind);
  if (c->kind == protocol::EngineKind::kNative) out += ", " + std::to_string(c->functions.size()) + " functions";
  if (!c->tags.empty()) {
    out += ", tags";
    for (const std::string& t : c->tags) out += " " + t;
  }
  if (!c->resources.empty()) out += ", resources " + c->ResourcesJson().dump();
  return out;
}

// Open file descriptors of this process; -1 if /proc cannot tell.
long CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  long n = 0;
  while (readdir(dir)) ++n;
  closedir(dir);
  return n - 3;  // ".", ".." and the directory's own descriptor
}
}  // namespace

std::string Hub::FdLimitText(rlim_t soft, rlim_t hard) {
  auto text = [](rlim_t n) { return n == RLIM_INFINITY ? std::string("unlimited") : std::to_string(n); };
  return "limit " + text(soft) + " (hard limit " + text(hard) + ")";
}

long Hub::RecountFds(long cost) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return -1;
  const long soft = static_cast<long>(limit.rlim_cur);
  auto now = std::chrono::steady_clock::now();
  // Recounted once a second, and before a refusal (at most every 100 ms: refusals can come in
  // storms too); in between, each accepted engine counts as what it may hold. Engines accepted
  // but not beating yet may still be opening their connections: counted in full.
  if (now - fds_counted_at_ > std::chrono::seconds(1) ||
      (fds_counted_ + cost + kFdReserve > soft && now - fds_counted_at_ > std::chrono::milliseconds(100))) {
    long counted = CountOpenFds();
    if (counted < 0) return -1;
    for (const auto& [uuid, incoming] : incoming_) counted += incoming.fds;
    fds_counted_ = counted;
    fds_counted_at_ = now;
  }
  return soft;
}

std::string Hub::FdShortage(long cost) {
  long soft = RecountFds(cost);
  if (soft < 0 || fds_counted_ + cost + kFdReserve <= soft) return "";
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  return std::string(protocol::kOutOfFdsText) + ": about " + std::to_string(fds_counted_) +
         " in use (engines still connecting included), RLIMIT_NOFILE " + FdLimitText(limit.rlim_cur, limit.rlim_max) +
         "; each engine needs up to " + std::to_string(cost) +
         " and " + std::to_string(kFdReserve) + " are kept for clients. " + std::to_string(engines_.size()) +
         " engines are registered and keep working; for more, start the controller with a higher limit (ulimit -n)";
}

void Hub::LetInThroughGateway(const std::string& uuid) {
  through_gateway_.insert(uuid);
  protocol::Frames frames;
  frames.emplace_back(uuid.data(), uuid.size());
  protocol::Send(gateway_allow_, std::move(frames));
}

void Hub::GoneFromGateway(const std::string& uuid) {
  // The gateway frees an engine's pipes once it knows it is gone (controller/engine_gateway.hpp).
  if (!through_gateway_.erase(uuid)) return;
  protocol::Frames frames;
  frames.emplace_back(uuid.data(), uuid.size());
  frames.emplace_back(protocol::gateway::kGone.data(), protocol::gateway::kGone.size());
  protocol::Send(gateway_allow_, std::move(frames));
}

Hub::IncomingMap::iterator Hub::CancelRegistration(IncomingMap::iterator it) {
  GoneFromGateway(it->first);
  return incoming_.erase(it);
}

bool Hub::UseGateway(const Message& m) {
  if (options_.gateway == GatewayUse::kNever || through_gateway_.size() >= protocol::gateway::kMaxEngines) return false;
  if (!protocol::FlagSet(m.content, protocol::gateway::kPortKey)) return false;  // Python engines
  if (options_.gateway == GatewayUse::kAlways) return true;
  long soft = RecountFds(kFdsPerEngine);
  return soft >= 0 && 2 * (fds_counted_ + kFdsPerEngine + kFdReserve) > soft;
}

int Hub::NewEngineId(const json& requested) {
  if (requested.is_number_integer()) {
    int want = requested.get<int>();
    bool pending = std::any_of(incoming_.begin(), incoming_.end(),
                               [&](const auto& kv) { return kv.second.id == want; });
    if (want >= 0 && !engines_.count(want) && !pending) {
      next_id_ = std::max(next_id_, want + 1);
      return want;
    }
    log_->warn("engine id {} requested but in use; assigning another", want);
  }
  return next_id_++;
}

void Hub::RegistrationRequest(Message& m) {
  const json& uuid_value = m.content.at("uuid");
  if (!uuid_value.is_string() || uuid_value.get_ref<const std::string&>().empty()) {
    Reply(m, "registration_reply", protocol::ErrorContent("ValueError", "registration needs a uuid string"));
    return;
  }
  std::string uuid = uuid_value.get<std::string>();
  if (by_uuid_.count(uuid) || incoming_.count(uuid)) {
    log_->error("registration refused: uuid {} in use", uuid);
    Reply(m, "registration_reply", protocol::ErrorContent("KeyError", "uuid '" + uuid + "' in use"));
    return;
  }
  // What it can run: refused when malformed, rather than routing work to it on a guess.
  std::optional<protocol::Capabilities> capabilities;
  if (m.content.contains("ipp")) {
    Result<protocol::Capabilities> parsed = protocol::Capabilities::FromJson(m.content["ipp"]);
    if (!parsed.ok()) {
      log_->error("registration of {} refused: malformed \"ipp\" field: {}", uuid, parsed.status().message());
      Reply(m, "registration_reply",
            protocol::ErrorContent("ValueError", "registration refused: malformed \"ipp\" field: " + parsed.status().message()));
      return;
    }
    capabilities = std::move(*parsed);
  }
  const bool via_gateway = UseGateway(m);
  const long fds = via_gateway ? kFdsPerGatewayEngine : kFdsPerEngine;
  if (std::string shortage = FdShortage(fds); !shortage.empty()) {
    log_->error("registration of {} refused: {}", uuid, shortage);
    Reply(m, "registration_reply", protocol::ErrorContent("RuntimeError", shortage));
    return;
  }
  fds_counted_ += fds;
  int id = NewEngineId(m.content.value("id", json()));
  // ipp_hub: our engines send ipp_engine_update only to a hub that says it takes them.
  json reply = {{"status", "ok"},
                {"id", id},
                {"hb_period", options_.ping_period.count()},
                {"connection_info", options_.engine_info},
                {"ipp_hub", true}};
  if (!plugins_.empty()) reply["ipp_plugins"] = plugins_;
  if (via_gateway) {
    LetInThroughGateway(uuid);  // before the reply: the engine's hello follows it
    reply[protocol::gateway::kPortKey] = true;
  }
  Reply(m, "registration_reply", reply);
  log_->info("accepting registration {}:{} ({}{})", id, uuid, Describe(capabilities), via_gateway ? ", through the gateway" : "");
  incoming_[uuid] = Incoming{id, uuid, std::chrono::steady_clock::now() + options_.registration_timeout,
                             std::move(capabilities), fds};
  // Beat again soon, so the new engine's first echo does not wait for the next period. One
  // timer for all registrations (not one each: thousands of timers would slow every turn of
  // the loop), which also purges the stalled ones.
  if (!reping_timer_) {
    reping_timer_ = reactor_->every(std::chrono::milliseconds(100), [this] {
      PurgeStalledRegistrations();
      if (incoming_.empty()) {
        reactor_->cancel(reping_timer_);
        reping_timer_ = 0;
        return;
      }
      heart_.PingNow();
    });
  }
}

void Hub::PurgeStalledRegistrations() {
  auto now = std::chrono::steady_clock::now();
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    log_->warn("purging stalled registration {}:{} (no heartbeat within {} ms)", it->second.id,
               it->first, options_.registration_timeout.count());
    it = CancelRegistration(it);
  }
}

void Hub::FinishRegistration(const std::string& uuid) {
  auto it = incoming_.find(uuid);
  if (it == incoming_.end()) return;
  Incoming reg = it->second;
  incoming_.erase(it);
  Engine& engine = engines_[reg.id] = Engine{reg.id, uuid, {}, {}, 0, {}, std::move(reg.capabilities)};
  by_uuid_[uuid] = reg.id;
  Notify("registration_notification", RegistrationNotice(reg.id, engine));
  if (dashboard_) dashboard_->EngineRegistered(reg.id, uuid, engine.capabilities);
  log_->info("engine {} connected ({})", reg.id, uuid);
  EngineStateChanged();
}

void Hub::EngineUpdate(Message& m) {
  const json& id_value = m.content.at("id");
  auto refuse = [&](const char* ename, const std::string& why) {
    log_->error("ipp_engine_update refused: {}", why);
    Reply(m, "ipp_engine_update_reply", protocol::ErrorContent(ename, why));
  };
  if (!id_value.is_number_integer()) return refuse("ValueError", "\"id\" is not an engine id: " + id_value.dump());
  int id = id_value.get<int>();
  // An engine updates only itself: the update must come from its own registration socket,
  // whose routing id is its uuid.
  std::string sender(protocol::view(m.identities[0]));
  auto live = engines_.find(id);
  std::optional<protocol::Capabilities>* stored = nullptr;
  std::string uuid;
  if (live != engines_.end()) {
    stored = &live->second.capabilities;
    uuid = live->second.uuid;
  } else {
    // Registered, first heartbeat still to come: its registration_notification will say it.
    auto pending = std::find_if(incoming_.begin(), incoming_.end(), [id](const auto& kv) { return kv.second.id == id; });
    if (pending == incoming_.end()) return refuse("KeyError", "no engine " + std::to_string(id));
    stored = &pending->second.capabilities;
    uuid = pending->second.uuid;
  }
  if (sender != uuid) {
    return refuse("KeyError", "engine " + std::to_string(id) + " is not " + protocol::PeerName(sender));
  }
  Result<protocol::Capabilities> parsed = protocol::Capabilities::FromJson(m.content.value("ipp", json()));
  if (!parsed.ok()) return refuse("ValueError", "engine " + std::to_string(id) + ": malformed \"ipp\" field: " + parsed.status().message());
  for (const auto& [path, why] : parsed->plugin_errors) {
    if (*stored && (*stored)->plugin_errors.count(path)) continue;
    // Not fatal for the engine (the others have the plugin), but its functions are missing there.
    log_->warn("engine {}{}: the cluster's plugin {} did not load: {} (its functions are missing there; ipp engines)", id,
               parsed->hostname.empty() ? "" : " on " + parsed->hostname, path, why);
  }
  *stored = std::move(*parsed);
  // An engine still registering gets its capabilities to the dashboard with its registration.
  if (dashboard_ && live != engines_.end()) dashboard_->EngineUpdated(uuid, **stored);
  Reply(m, "ipp_engine_update_reply", {{"status", "ok"}});
  log_->info("engine {} updated: {}", id, Describe(*stored));
  if (live == engines_.end()) return;
  NotifyInternal("ipp_engine_update", {{"id", id}, {"uuid", uuid}, {"ipp", (*stored)->ToJson()}});
  EngineStateChanged();
}

void Hub::PluginsRequest(Message& m) {
  // Absolute: the path is read by engines started later, in directories of their own.
  auto path_in = [&](const char* key) -> std::optional<std::string> {
    const json& v = m.content[key];
    if (!v.is_string() || v.get_ref<const std::string&>().empty() || v.get_ref<const std::string&>()[0] != '/') {
      Reply(m, "ipp_plugins_reply",
            protocol::ErrorContent("ValueError", "\"" + std::string(key) + "\" must be an absolute path, not " + v.dump()));
      return std::nullopt;
    }
    return v.get<std::string>();
  };
  json reply = {{"status", "ok"}};
  if (m.content.contains("add")) {
    std::optional<std::string> path = path_in("add");
    if (!path) return;
    if (std::find(plugins_.begin(), plugins_.end(), *path) == plugins_.end()) {
      plugins_.push_back(*path);
      log_->info("engines that register from now on load the plugin {}", *path);
      EngineStateChanged();
    }
    // The native engines whose registration reply went out without it: those the client does
    // not know yet (still registering, or their notification still on its way) need it too.
    json before = json::array();
    auto native = [](const std::optional<protocol::Capabilities>& c) { return c && c->kind == protocol::EngineKind::kNative; };
    for (const auto& [id, e] : engines_) {
      if (native(e.capabilities)) before.push_back(id);
    }
    for (const auto& [uuid, e] : incoming_) {
      if (native(e.capabilities)) before.push_back(e.id);
    }
    reply["registered_before"] = std::move(before);
  } else if (m.content.contains("remove")) {
    std::optional<std::string> path = path_in("remove");
    if (!path) return;
    const bool removed = std::erase(plugins_, *path) > 0;
    if (removed) {
      log_->info("engines that register from now on no longer load the plugin {}", *path);
      EngineStateChanged();
    }
    reply["removed"] = removed;
  }
  reply["plugins"] = plugins_;
  Reply(m, "ipp_plugins_reply", reply);
}

std::vector<std::pair<std::string, protocol::Capabilities>> Hub::engine_capabilities() const {
  std::vector<std::pair<std::string, protocol::Capabilities>> out;
  for (const auto& [id, e] : engines_) out.emplace_back(e.uuid, e.capabilities.value_or(protocol::Capabilities{}));
  return out;
}

void Hub::UnregistrationRequest(Message& m) {
  int id = m.content.at("id").get<int>();
  if (!engines_.count(id)) {
    // An engine that leaves before its first heartbeat: cancel its registration (as 9.1's hub
    // does), so that a heartbeat still in flight cannot complete it.
    auto pending = std::find_if(incoming_.begin(), incoming_.end(), [id](const auto& kv) { return kv.second.id == id; });
    if (pending != incoming_.end()) {
      log_->info("registration of engine {} cancelled: it asked to leave", id);
      CancelRegistration(pending);
      return;
    }
    log_->info("unregistration of engine {}: already gone", id);
    return;
  }
  UnregisterEngine(id, "it asked to leave (unregistration_request)");
}

void Hub::UnregisterEngine(int id, const std::string& why, bool dead) {
  CatchUpMonitor();  // the engine's queue must list what was last sent to it
  auto it = engines_.find(id);
  if (it == engines_.end()) return;
  Engine engine = std::move(it->second);
  engines_.erase(it);
  by_uuid_.erase(engine.uuid);
  heart_.Forget(engine.uuid);
  GoneFromGateway(engine.uuid);
  // An engine that asked to leave is a normal stop; one that died is worth a warning.
  log_->log(dead ? spdlog::level::warn : spdlog::level::info, "engine {} (uuid {}) unregistered: {}", id, engine.uuid,
            why);
  if (dead) {
    DeadEngine d{id, engine.uuid, "", std::nullopt, why, "", protocol::Iso8601(protocol::WallClock::now())};
    if (engine.capabilities) {
      d.hostname = engine.capabilities->hostname;
      d.pid = engine.capabilities->pid;
    }
    dead_.push_back(std::move(d));
    if (dead_.size() > kDeadKept) dead_.pop_front();
  }
  Notify("unregistration_notification", {{"id", id}, {"uuid", engine.uuid}, {"reason", why}});
  if (dashboard_) dashboard_->EngineLeft(engine.uuid, dead, why);
  EngineStateChanged();
  // MUX requests still on the engine fail with EngineError; the schedulers answer clients for
  // load-balanced ones. Wait a moment: a result may still be on its way.
  std::vector<std::string> stranded(engine.queue.begin(), engine.queue.end());
  if (!stranded.empty()) {
    reactor_->after(options_.ping_period, [this, id, uuid = engine.uuid, why, stranded] {
      HandleStranded(id, uuid, why, stranded);
    });
  }
}

Hub::DeadEngine* Hub::FindDead(const std::string& hostname, long pid) {
  for (auto it = dead_.rbegin(); it != dead_.rend(); ++it) {
    if (it->pid == pid && it->hostname == hostname) return &*it;
  }
  return nullptr;
}

void Hub::EngineExit(Message& m) {
  const json& c = m.content;
  auto string_field = [&](const char* name) { return c.contains(name) && c[name].is_string(); };
  if (!c.contains("pid") || !c["pid"].is_number_integer() || !string_field("hostname") || !string_field("how") ||
      (c.contains("log_tail") && !c["log_tail"].is_string())) {
    log_->error("ipp_engine_exit_request refused: it needs \"hostname\", \"how\" (strings) and \"pid\" (an integer)");
    Reply(m, "ipp_engine_exit_reply",
          protocol::ErrorContent("ValueError", "ipp_engine_exit_request needs \"hostname\", \"how\" (strings) and \"pid\" (an integer)"));
    return;
  }
  const std::string hostname = c["hostname"].get<std::string>();
  const long pid = c["pid"].get<long>();
  // Bounded: what a person reads, not a whole log.
  std::string how = c["how"].get<std::string>().substr(0, 200);
  std::string tail = c.value("log_tail", std::string());
  if (tail.size() > kLogTailKept) tail.erase(0, tail.size() - kLogTailKept);
  auto matches = [&](const std::optional<protocol::Capabilities>& can) {
    return can && can->pid == pid && can->hostname == hostname && !hostname.empty();
  };
  json engine_id = nullptr;
  auto live = std::find_if(engines_.begin(), engines_.end(), [&](const auto& kv) { return matches(kv.second.capabilities); });
  if (live != engines_.end()) {
    // Its launcher saw it end: no need to wait for its heartbeats to stop.
    engine_id = live->first;
    UnregisterEngine(live->first, "its process " + how, true);
  } else if (auto pending = std::find_if(incoming_.begin(), incoming_.end(),
                                         [&](const auto& kv) { return matches(kv.second.capabilities); });
             pending != incoming_.end()) {
    engine_id = pending->second.id;
    log_->warn("registration of engine {} cancelled: its process {}", pending->second.id, how);
    dead_.push_back({pending->second.id, pending->second.uuid, hostname, pid, how, "", protocol::Iso8601(protocol::WallClock::now())});
    if (dead_.size() > kDeadKept) dead_.pop_front();
    CancelRegistration(pending);
  }
  if (DeadEngine* d = FindDead(hostname, pid)) {
    engine_id = d->id;
    d->how = how;
    d->log_tail = tail;
    if (dashboard_) dashboard_->EngineDeath(d->uuid, "its process " + how, tail);
    log_->info("engine {} (pid {} on {}): its process {}", d->id, pid, hostname, how);
  } else {
    log_->info("an engine process (pid {} on {}) {}: no engine of it is known", pid, hostname, how);
  }
  Reply(m, "ipp_engine_exit_reply", {{"status", "ok"}, {"engine_id", engine_id}});
}

void Hub::HandleStranded(int id, const std::string& uuid, const std::string& why, std::vector<std::string> msg_ids) {
  CatchUpMonitor();  // a result that came in the meantime must count
  for (const std::string& msg_id : msg_ids) {
    if (!pending_.erase(msg_id)) continue;  // its result arrived after all
    json content = protocol::ErrorContent("EngineError", protocol::EngineDiedText(id, uuid, msg_id, why));
    if (dashboard_) dashboard_->TaskLost(msg_id, "EngineError", content.value("evalue", ""));
    auto now = protocol::WallClock::now();
    json header = {{"engine", uuid}, {"date", protocol::Iso8601(now)}};
    Status s = store_->Update(msg_id, [&](TaskRecord& r) {
      r.result_content = content.dump();
      r.result_header = header.dump();
      r.completed = now;
      r.engine_uuid = uuid;
    });
    LogStoreFailure(s, "EngineError result", msg_id);
  }
}

Result<std::vector<int>> Hub::ValidateTargets(const json& targets) const {
  std::vector<int> ids;
  if (targets.is_null()) {
    for (const auto& [id, e] : engines_) ids.push_back(id);
    return ids;
  }
  json list = targets.is_array() ? targets : json::array({targets});
  for (const json& t : list) {
    if (t.is_number_integer()) {
      ids.push_back(t.get<int>());
    } else if (t.is_string()) {
      auto it = by_uuid_.find(t.get<std::string>());
      if (it == by_uuid_.end()) return Status::NotFound("No Such Engine: " + t.dump());
      ids.push_back(it->second);
    } else {
      return Status::InvalidArgument("invalid target " + t.dump());
    }
  }
  for (int id : ids) {
    if (!engines_.count(id)) return Status::NotFound("No Such Engine: [" + std::to_string(id) + "]");
  }
  if (ids.empty()) return Status::NotFound("No Engines Registered");
  return ids;
}


// ---------------------------------------------------------------------------------------------
// Engine state (for --restore)

Hub::~Hub() {
  if (save_timer_) SaveEngineState();
}

void Hub::EngineStateChanged() {
  if (options_.engine_state_file.empty() || save_timer_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - save_window_start_ > std::chrono::seconds(1)) {
    save_window_start_ = now;
    saves_in_window_ = 0;
    saved_for_in_window_ = {};
  }
  // At once while this second's saves took less than kSaveBudget: with thousands of engines one
  // save takes tens of ms, and twenty of them a second starved the hub's heartbeats.
  if (!reactor_ || (saves_in_window_ < kSavesAtOnce && saved_for_in_window_ < kSaveBudget)) {
    ++saves_in_window_;
    SaveEngineState();
    saved_for_in_window_ += last_save_cost_;
    return;
  }
  // At most kSaveDelayMax later, even after a save that stalled on the disk.
  auto at = std::max(save_window_start_ + std::chrono::seconds(1),
                     std::min(last_save_ + 50 * last_save_cost_, now + kSaveDelayMax));
  save_timer_ = reactor_->after(std::chrono::ceil<std::chrono::milliseconds>(at - now), [this] {
    save_timer_ = 0;
    save_window_start_ = std::chrono::steady_clock::now();
    saves_in_window_ = 1;
    SaveEngineState();
    saved_for_in_window_ = last_save_cost_;
  });
}

void Hub::SaveEngineState() {
  if (options_.engine_state_file.empty()) return;
  auto started = std::chrono::steady_clock::now();
  json engines = json::object(), capabilities = json::object();
  for (const auto& [id, e] : engines_) {
    engines[std::to_string(id)] = e.uuid;
    if (e.capabilities) capabilities[std::to_string(id)] = e.capabilities->ToJson();
  }
  // "capabilities": only engines that announced theirs (a missing key reads as a Python engine,
  // as in files written before there were any).
  json state = {{"engines", engines}, {"capabilities", capabilities}, {"next_id", next_id_}, {"plugins", plugins_}};
  Status s = protocol::WritePrivateFile(options_.engine_state_file, state.dump());
  if (!s.ok()) log_->error("cannot save engine state: {}", s.ToString());
  last_save_ = std::chrono::steady_clock::now();
  last_save_cost_ = last_save_ - started;
}

void Hub::LoadEngineState() {
  std::ifstream in(options_.engine_state_file);
  if (!in) return;
  json state = json::parse(in, nullptr, false);
  if (state.is_discarded() || !state.is_object()) {
    log_->error("ignoring unreadable engine state {}", options_.engine_state_file.string());
    return;
  }
  const json engines = state.value("engines", json::object());
  const json capabilities = state.value("capabilities", json::object());
  for (auto& [id_text, uuid] : engines.items()) {
    int id = std::stoi(id_text);
    std::string u = uuid.get<std::string>();
    std::optional<protocol::Capabilities> announced;
    if (auto c = capabilities.find(id_text); c != capabilities.end()) {
      Result<protocol::Capabilities> parsed = protocol::Capabilities::FromJson(*c);
      if (parsed.ok()) {
        announced = std::move(*parsed);
      } else {
        log_->error("engine {} in {}: ignoring malformed capabilities: {}", id, options_.engine_state_file.string(),
                    parsed.status().message());
      }
    }
    engines_[id] = Engine{id, u, {}, {}, 0, {}, std::move(announced)};
    by_uuid_[u] = id;
    heart_.Adopt(u);  // dropped after max misses if it does not beat any more
    // It may have come in through the gateway: the restarted gateway must know it.
    if (options_.gateway != GatewayUse::kNever) LetInThroughGateway(u);
    if (dashboard_) dashboard_->EngineRegistered(id, u, engines_[id].capabilities);
  }
  next_id_ = state.value("next_id", static_cast<int>(engines_.size()));
  for (const json& path : state.value("plugins", json::array())) {
    if (path.is_string()) plugins_.push_back(path.get<std::string>());
  }
  log_->info("restored {} engine(s) from {}", engines_.size(), options_.engine_state_file.string());
}

}  // namespace ipp::controller

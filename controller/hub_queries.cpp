// Hub: the client queries that read engine queues and task records (queue_status, load,
// result, history, db, purge, resubmit).
#include <algorithm>

#include "controller/hub.hpp"
#include "protocol/clock.hpp"
#include "protocol/errors.hpp"

namespace ipp::controller {

using nlohmann::json;
using protocol::Frames;
using protocol::Message;

void Hub::QueueRequest(Message& m) {
  Result<std::vector<int>> targets = ValidateTargets(m.content.value("targets", json()));
  if (!targets.ok()) {
    Reply(m, "hub_error", protocol::ErrorContent("IndexError", targets.status().message()));
    return;
  }
  bool verbose = m.content.value("verbose", false);
  json content = {{"status", "ok"}};
  for (int id : *targets) {
    const Engine& e = engines_.at(id);
    json& engine = content[std::to_string(id)];
    if (verbose) {
      engine = {{"queue", e.queue}, {"completed", e.recent_completed}, {"tasks", e.tasks}};
    } else {
      engine = {{"queue", e.queue.size()}, {"completed", e.completed_count}, {"tasks", e.tasks.size()}};
    }
    // What it can run (stock clients ignore the extra keys); a Python engine announces nothing.
    static const protocol::Capabilities kSaidNothing;
    const protocol::Capabilities& can = e.capabilities ? *e.capabilities : kSaidNothing;
    engine["kind"] = protocol::EngineKindName(can.kind);
    engine["functions"] = can.functions.size();
    engine["tags"] = can.tags;
    engine["resources"] = can.ResourcesJson();
    if (!can.job.empty()) engine["job"] = can.job;  // the batch job it runs in
    if (!can.plugin_errors.empty()) engine["plugin_errors"] = can.plugin_errors;
  }
  if (verbose) {
    content["unassigned"] = std::vector<std::string>(unassigned_.begin(), unassigned_.end());
  } else {
    content["unassigned"] = unassigned_.size();
  }
  // Extra keys are ignored by the stock client; none at all when nothing waits.
  if (!waiting_reasons_.empty()) content["waiting"] = waiting_reasons_;
  if (!dead_.empty()) {
    json dead = json::object();
    for (const DeadEngine& d : dead_) {
      dead[std::to_string(d.id)] = {{"how", d.how}, {"log_tail", d.log_tail}, {"when", d.when},
                                    {"hostname", d.hostname.empty() ? json() : json(d.hostname)},
                                    {"pid", d.pid ? json(*d.pid) : json()}};
    }
    content["dead"] = std::move(dead);
  }
  Reply(m, "queue_reply", std::move(content));
}

void Hub::LoadRequest(Message& m) {
  Result<std::vector<int>> targets = ValidateTargets(m.content.value("targets", json()));
  if (!targets.ok()) {
    Reply(m, "hub_error", protocol::ErrorContent("IndexError", targets.status().message()));
    return;
  }
  json content = {{"status", "ok"}};
  for (int id : *targets) {
    const Engine& e = engines_.at(id);
    content[std::to_string(id)] = e.queue.size() + e.tasks.size();
  }
  Reply(m, "load_reply", std::move(content));
}

namespace {

// The part of a record that result_reply carries (hub.py _extract_record).
json ExtractRecord(const TaskRecord& r) {
  return {{"header", FieldValue(r, "header")},
          {"metadata", FieldValue(r, "metadata")},
          {"result_metadata", FieldValue(r, "result_metadata")},
          {"result_header", FieldValue(r, "result_header")},
          {"result_content", FieldValue(r, "result_content")},
          {"received", FieldValue(r, "received")},
          {"io",
           {{"execute_input", FieldValue(r, "execute_input")},
            {"execute_result", FieldValue(r, "execute_result")},
            {"error", FieldValue(r, "error")},
            {"stdout", r.stdout_text},
            {"stderr", r.stderr_text}}}};
}

void AppendShared(Frames& out, std::vector<zmq::message_t>& from) {
  for (auto& b : from) out.push_back(std::move(b));
}

}  // namespace

void Hub::ResultRequest(Message& m) {
  std::vector<std::string> ids = m.content.at("msg_ids").get<std::vector<std::string>>();
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  bool status_only = m.content.value("status_only", false);
  std::unordered_map<std::string, TaskRecord> records;
  if (!status_only) {
    Result<std::vector<TaskRecord>> found = store_->FindIds(ids);
    if (!found.ok()) {
      Reply(m, "result_reply", protocol::ErrorContent("KeyError", found.status().message()));
      return;
    }
    for (TaskRecord& r : *found) records.emplace(r.msg_id, std::move(r));
  }
  json pending = json::array(), completed = json::array();
  json content = {{"status", "ok"}};
  Frames buffers;
  for (const std::string& id : ids) {
    if (pending_.count(id)) {
      pending.push_back(id);
      continue;
    }
    auto it = records.find(id);
    bool known = it != records.end() || (status_only && store_->Contains(id));
    if (!known) {
      Reply(m, "result_reply", protocol::ErrorContent("KeyError", "No such message: " + id));
      return;
    }
    if (status_only) {
      completed.push_back(id);
      continue;
    }
    if (!it->second.completed) {
      pending.push_back(id);
      continue;
    }
    completed.push_back(id);
    content[id] = ExtractRecord(it->second);
    AppendShared(buffers, it->second.result_buffers);
  }
  content["pending"] = pending;
  content["completed"] = completed;
  Reply(m, "result_reply", std::move(content), std::move(buffers));
}

void Hub::HistoryRequest(Message& m) {
  Result<std::vector<std::string>> history = store_->History();
  if (!history.ok()) {
    Reply(m, "history_reply", protocol::ErrorContent("NoData", history.status().message()));
    return;
  }
  Reply(m, "history_reply", {{"status", "ok"}, {"history", *history}});
}

void Hub::DbRequest(Message& m) {
  Result<RecordQuery> query = RecordQuery::Parse(m.content.value("query", json::object()));
  if (!query.ok()) {
    Reply(m, "db_reply", protocol::ErrorContent("ValueError", query.status().message()));
    return;
  }
  std::optional<std::vector<std::string>> keys;
  if (m.content.contains("keys") && !m.content["keys"].is_null()) {
    keys = m.content["keys"].get<std::vector<std::string>>();
  }
  Result<std::vector<TaskRecord>> found = store_->Find(*query);
  if (!found.ok()) {
    Reply(m, "db_reply", protocol::ErrorContent("NoData", found.status().message()));
    return;
  }
  auto wants = [&](const char* key) {
    return keys && std::find(keys->begin(), keys->end(), key) != keys->end();
  };
  bool want_buffers = wants("buffers"), want_results = wants("result_buffers");
  json records = json::array(), buffer_lens = json::array(), result_buffer_lens = json::array();
  Frames buffers;
  for (TaskRecord& r : *found) {
    records.push_back(ToJson(r, keys ? &*keys : nullptr));
    if (want_buffers) {
      buffer_lens.push_back(r.buffers.size());
      AppendShared(buffers, r.buffers);
    }
    if (want_results) {
      result_buffer_lens.push_back(r.result_buffers.size());
      AppendShared(buffers, r.result_buffers);
    }
  }
  Reply(m, "db_reply",
        {{"status", "ok"},
         {"records", std::move(records)},
         {"buffer_lens", want_buffers ? buffer_lens : json(nullptr)},
         {"result_buffer_lens", want_results ? result_buffer_lens : json(nullptr)}},
        std::move(buffers));
}

void Hub::PurgeRequest(Message& m) {
  const json& msg_ids = m.content.value("msg_ids", json::array());
  json reply = {{"status", "ok"}};
  // A database that cannot delete fails the request (the stock hub answers with the exception).
  auto drop = [&](const json& query) {
    Status s = store_->Drop(*RecordQuery::Parse(query));
    if (s.ok()) return true;
    log_->error("purge of {} failed: {}", query.dump(), s.ToString());
    reply = protocol::ErrorContent("RuntimeError", "purge failed: " + s.ToString());
    return false;
  };
  if (msg_ids.is_string() && msg_ids.get<std::string>() == "all") {
    drop({{"completed", {{"$ne", nullptr}}}});
  } else {
    std::vector<std::string> ids = msg_ids.get<std::vector<std::string>>();
    for (const std::string& id : ids) {
      if (pending_.count(id)) {
        Reply(m, "purge_reply", protocol::ErrorContent("IndexError", "msg pending: '" + id + "'"));
        return;
      }
    }
    bool ok = ids.empty() || drop({{"msg_id", {{"$in", ids}}}});
    const json engine_ids = m.content.value("engine_ids", json::array());
    for (const json& eid : engine_ids) {
      if (!ok) break;
      auto it = engines_.find(eid.get<int>());
      if (it == engines_.end()) {
        reply = protocol::ErrorContent("IndexError", "No such engine: " + eid.dump());
        break;
      }
      ok = drop({{"engine_uuid", it->second.uuid}, {"completed", {{"$ne", nullptr}}}});
    }
  }
  Reply(m, "purge_reply", std::move(reply));
}

void Hub::ResubmitRequest(Message& m) {
  std::vector<std::string> ids = m.content.at("msg_ids").get<std::vector<std::string>>();
  Result<std::vector<TaskRecord>> found = store_->FindIds(ids);
  if (!found.ok()) {
    Reply(m, "resubmit_reply", protocol::ErrorContent("KeyError", found.status().message()));
    return;
  }
  if (found->size() < ids.size()) {
    std::string missing;
    for (const auto& id : ids) {
      bool have = std::any_of(found->begin(), found->end(), [&](auto& r) { return r.msg_id == id; });
      if (!have) missing += (missing.empty() ? "'" : ", '") + id + "'";
    }
    Reply(m, "resubmit_reply", protocol::ErrorContent("KeyError", "No such msg(s): [" + missing + "]"));
    return;
  }
  json resubmitted = json::object();
  for (TaskRecord& old : *found) {
    json header = json::parse(old.header);
    json fresh = session_.make_header(header.value("msg_type", "apply_request"));
    json parent = header;
    header["msg_id"] = fresh["msg_id"];
    header["date"] = fresh["date"];
    std::string new_id = fresh["msg_id"];
    // Keep the original JSON text of metadata and content: the task must run unchanged.
    Frames frames = session_.serialize_parts({}, header.dump(), parent.dump(),
                                             old.metadata.empty() ? "{}" : old.metadata,
                                             old.content.empty() ? "{}" : old.content,
                                             TaskRecord(old.Clone()).buffers);
    protocol::Send(resubmit_, std::move(frames));
    TaskRecord record;
    record.msg_id = new_id;
    record.header = header.dump();
    record.metadata = old.metadata;
    record.content = old.content;
    record.buffers = std::move(old.buffers);
    record.client_uuid = old.client_uuid;
    record.queue = "task";
    record.submitted = protocol::WallClock::now();
    pending_.insert(new_id);
    LogStoreFailure(store_->Add(std::move(record)), "record of the resubmission", new_id);
    LogStoreFailure(store_->Update(old.msg_id, [&](TaskRecord& r) { r.resubmitted = new_id; }),
                    "resubmitted mark", old.msg_id);
    resubmitted[old.msg_id] = new_id;
  }
  Reply(m, "resubmit_reply", {{"status", "ok"}, {"resubmitted", resubmitted}});
}


}  // namespace ipp::controller

#include "schedulers/broadcast.hpp"

#include "protocol/errors.hpp"
#include "protocol/monitor.hpp"
#include "schedulers/request_types.hpp"

namespace ipp::schedulers {

using nlohmann::json;
using protocol::Frames;
using protocol::RawMessage;
namespace monitor = protocol::monitor;

BroadcastScheduler::BroadcastScheduler(zmq::context_t& context, const std::string& key,
                                       std::chrono::milliseconds patience, Logger log)
    : session_(key),
      log_(std::move(log)),
      client_(context, zmq::socket_type::router),
      engine_(context, zmq::socket_type::router),
      monitor_(context, zmq::socket_type::push),
      to_engines_(engine_, patience) {
  for (zmq::socket_t* s : {&client_, &engine_, &monitor_}) protocol::ConfigureUnbounded(*s);
  engine_.set(zmq::sockopt::router_mandatory, 1);
}

void BroadcastScheduler::Attach(Reactor& reactor) {
  reactor.add(client_, [this] { OnSubmission(); });
  reactor.add(engine_, [this] { OnReply(); });
  to_engines_.Attach(reactor, [this](Frames&& frames) {
    log_->warn("broadcast to engine {:?} dropped: it never connected", protocol::view(frames[0]));
  });
}

void BroadcastScheduler::OnSubmission() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(client_);
    if (!frames) break;
    Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
    if (!raw.ok() || raw->identity_count() == 0) {
      log_->warn("dropped malformed broadcast request");
      continue;
    }
    if (Status s = session_.verify(*raw); !s.ok()) {
      log_->warn("dropped broadcast request: {}", s.ToString());
      continue;
    }
    Result<json> header = raw->parse_object(RawMessage::kHeader);
    Result<json> md = raw->parse_object(RawMessage::kMetadata);
    if (!header.ok() || !md.ok() || !(*md)["targets"].is_array()) {
      log_->warn("dropped broadcast request without targets");
      continue;
    }
    auto type = header->find("msg_type");
    if (type == header->end() || !type->is_string() || !Carries(RequestChannel::kBroadcast, type->get<std::string>())) {
      std::string name = type != header->end() && type->is_string() ? type->get<std::string>() : "";
      log_->warn("refused a {} from {:?} on the broadcast channel", name, raw->identity(0));
      protocol::Send(client_, Refusal(session_, RequestChannel::kBroadcast, *raw, name), true);
      continue;
    }
    monitor::Send(monitor_, monitor::Topic::kBroadcastRequest, raw->frames());
    std::string original = (*header)["msg_id"].get<std::string>();
    if (!md->contains("original_msg_id")) (*md)["original_msg_id"] = original;
    bool coalescing = md->value("is_coalescing", false);
    std::vector<std::string> client_ids;
    for (size_t i = 0; i < raw->identity_count(); ++i) client_ids.emplace_back(raw->identity(i));
    std::string content(raw->part(RawMessage::kContent));
    std::string parent(raw->part(RawMessage::kParent));
    Pending pending{client_ids, std::move((*md)["targets"]), {}, {}};
    // Engines are not sent the target list (no engine reads it): with it, every engine's copy
    // grew with the number of targets, and a broadcast to n engines cost O(n^2) bytes.
    md->erase("targets");
    const std::string to_engine_md = md->dump();
    for (const json& target : pending.targets) {
      std::string uuid = target.is_array() && !target.empty() ? target[0].get<std::string>() : "";
      if (uuid.empty()) continue;
      json h = *header;
      h["msg_id"] = original + "_" + uuid;
      Frames ids;
      ids.emplace_back(uuid.data(), uuid.size());
      for (const auto& c : client_ids) ids.emplace_back(c.data(), c.size());
      Frames out = session_.serialize_parts(std::move(ids), h.dump(), parent, to_engine_md, content,
                                            raw->share_buffers());
      to_engines_.Send(std::move(out));
      pending.order.push_back(uuid);
    }
    if (coalescing && !pending.order.empty()) coalescing_[original] = std::move(pending);
  }
}

void BroadcastScheduler::OnReply() {
  for (int n = 0; n < protocol::kBatch; ++n) {
    auto frames = protocol::TryRecv(engine_);
    if (!frames) break;
    Result<RawMessage> raw = RawMessage::FromFrames(std::move(*frames));
    if (!raw.ok() || raw->identity_count() < 2) continue;
    if (Status s = session_.verify(*raw); !s.ok()) {
      log_->warn("dropped broadcast reply: {}", s.ToString());
      continue;
    }
    Result<json> md = raw->parse_object(RawMessage::kMetadata);
    if (!md.ok()) continue;
    std::string engine(raw->identity(0));
    if (!md->value("is_coalescing", false)) {
      monitor::Send(monitor_, monitor::Topic::kBroadcastReply, raw->frames());
      Frames& f = raw->frames();
      f.erase(f.begin());  // drop the engine id: [client ids..., msg]
      protocol::Send(client_, std::move(*raw).release(), true);
      continue;
    }
    std::string original = md->value("original_msg_id", "");
    auto it = coalescing_.find(original);
    if (it == coalescing_.end()) continue;
    Pending& p = it->second;
    p.buffers[engine] = raw->take_buffers();
    if (p.buffers.size() < p.order.size()) continue;
    // Every engine answered: one reply with all their buffers, in target order.
    (*md)["broadcast_targets"] = p.targets;
    Frames ids, all_buffers;
    for (const auto& c : p.client_ids) ids.emplace_back(c.data(), c.size());
    for (const auto& uuid : p.order) {
      for (auto& b : p.buffers[uuid]) all_buffers.push_back(std::move(b));
    }
    Frames out = session_.serialize_parts(
        std::move(ids), std::string(raw->part(RawMessage::kHeader)),
        std::string(raw->part(RawMessage::kParent)), md->dump(),
        std::string(raw->part(RawMessage::kContent)), std::move(all_buffers));
    monitor::Send(monitor_, monitor::Topic::kBroadcastReply, out);
    protocol::Send(client_, std::move(out), true);
    coalescing_.erase(it);
  }
}

}  // namespace ipp::schedulers

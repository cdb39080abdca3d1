// BroadcastScheduler: sends one request to many engines and returns their replies, either one
// by one (msg_id "<original>_<engine uuid>") or coalesced into a single reply carrying every
// engine's buffers (ipyparallel controller/broadcast_scheduler.py). The stock controller builds
// a tree of these; one flat scheduler serves the same protocol — engines connect to the single
// port listed under "broadcast".
//
// Single-threaded: runs on the Reactor it is attached to and owns its sockets.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "protocol/session.hpp"
#include "schedulers/pending_delivery.hpp"

namespace ipp::schedulers {

class BroadcastScheduler {
 public:
  BroadcastScheduler(zmq::context_t& context, const std::string& key,
                     std::chrono::milliseconds patience, Logger log);
  zmq::socket_t& client_socket() { return client_; }
  zmq::socket_t& engine_socket() { return engine_; }
  void ConnectMonitor(const std::string& monitor_url) { monitor_.connect(monitor_url); }
  void Attach(Reactor& reactor);

 private:
  struct Pending {
    std::vector<std::string> client_ids;
    nlohmann::json targets;  // [[uuid, id], ...] as the client sent them
    std::vector<std::string> order;  // engine uuids, in target order
    std::unordered_map<std::string, protocol::Frames> buffers;  // uuid -> reply buffers
  };

  void OnSubmission();
  void OnReply();

  protocol::Session session_;
  Logger log_;
  zmq::socket_t client_, engine_, monitor_;
  PendingDelivery to_engines_;
  std::unordered_map<std::string, Pending> coalescing_;  // original msg_id -> replies so far
};

}  // namespace ipp::schedulers

// libFuzzer target: the wire-message parser and every handler's content validation, in a real
// controller (hub, relays, task scheduler) running in this process on 127.0.0.1.
//
// Input layout: byte 0 chooses the mode and the channel; the rest is split on "\n--\n".
//   mode 0  raw frames sent as they are (unsigned, malformed: the parser's job)
//   mode 1  a correctly signed message: [msg type index, content]  (handlers' validation)
//   mode 2  a correctly signed message: [header, parent, metadata, content, buffers...]
// Modes 1 and 2 sign what they send, so the fuzzer gets past the HMAC into the JSON parsing,
// the type checks and every handler. After each input a queue_request must be answered within
// 5 s: a crash, a hang or a dead reactor is a finding.
//
//   build-fuzz/bin/wire_fuzzer -max_total_time=60 fuzz/seeds      (scripts/fuzz does this)
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "controller/controller.hpp"
#include "protocol/session.hpp"

namespace {

using ipp::protocol::Frames;

// Request types the controller handles, by index (mode 1). shutdown_request is left out: it
// stops the controller, which is its job, not a finding.
const char* const kTypes[] = {
    "queue_request", "result_request", "db_request", "purge_request", "resubmit_request",
    "history_request", "load_request", "connection_request", "registration_request",
    "unregistration_request", "apply_request", "execute_request", "abort_request",
    "clear_request", "kernel_info_request", "no_such_request"};

struct Harness {
  std::filesystem::path dir;
  std::unique_ptr<ipp::controller::Controller> controller;
  std::thread thread;
  zmq::context_t context;
  std::unique_ptr<ipp::protocol::Session> session;
  std::vector<zmq::socket_t> channels;  // query, task, mux, control, registration, broadcast
  zmq::socket_t* query = nullptr;

  Harness() {
    char tmpl[] = "/tmp/ipp-fuzz-XXXXXX";
    dir = mkdtemp(tmpl);
    ipp::SetLogLevel(spdlog::level::off);  // millions of "dropped ..." lines help no one here
    ipp::controller::ControllerOptions o;
    o.profile_dir = (dir / "profile").string();
    o.log_level = "CRITICAL";
    o.db_record_limit = 200;
    controller = std::make_unique<ipp::controller::Controller>(o);
    if (auto s = controller->Start(); !s.ok()) {
      std::cerr << "wire_fuzzer: controller failed to start: " << s.ToString() << "\n";
      std::abort();
    }
    thread = std::thread([this] { controller->Run(); });
    const auto& client = controller->client_info();
    const auto& engine = controller->engine_info();
    session = std::make_unique<ipp::protocol::Session>(client.key);
    for (auto [info, name] : {std::pair{&client, "registration"}, {&client, "task"}, {&client, "mux"},
                              {&client, "control"}, {&engine, "registration"}, {&client, "broadcast"}}) {
      zmq::socket_t s(context, zmq::socket_type::dealer);
      s.set(zmq::sockopt::linger, 0);
      s.connect(*info->url(name));
      channels.push_back(std::move(s));
    }
    query = &channels[0];
  }

  ~Harness() {
    controller->Stop();
    if (thread.joinable()) thread.join();
    std::filesystem::remove_all(dir);
  }

  void Send(size_t channel, Frames frames) {
    zmq::socket_t& s = channels[channel % channels.size()];
    for (size_t i = 0; i < frames.size(); ++i) {
      s.send(frames[i], i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  // Every channel's replies are read and thrown away; the hub must answer a queue_request.
  void CheckAlive() {
    auto ping = session->make("queue_request", {{"targets", nullptr}, {"verbose", false}});
    std::string id = ping.msg_id();
    Send(0, session->serialize(std::move(ping)));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      std::vector<zmq::pollitem_t> items;
      for (auto& s : channels) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
      try {
        zmq::poll(items, std::chrono::milliseconds(100));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;  // libFuzzer's -timeout alarm interrupts the poll
      }
      for (size_t i = 0; i < channels.size(); ++i) {
        while (auto frames = ipp::protocol::TryRecv(channels[i])) {
          if (i != 0) continue;
          auto m = session->parse(std::move(*frames));
          if (m.ok() && m->parent_header.value("msg_id", "") == id) return;
        }
      }
    }
    std::cerr << "wire_fuzzer: the hub stopped answering\n";
    std::abort();
  }
};

std::vector<std::string_view> Split(std::string_view data) {
  std::vector<std::string_view> parts;
  for (size_t at; (at = data.find("\n--\n")) != std::string_view::npos; data.remove_prefix(at + 4)) {
    parts.push_back(data.substr(0, at));
  }
  parts.push_back(data);
  return parts;
}

Frames Identity() {
  Frames ids;
  return ids;  // DEALER: the controller's ROUTER adds ours
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness harness;
  if (size < 1) return 0;
  int mode = data[0] % 3;
  size_t channel = data[0] / 3;
  std::vector<std::string_view> parts = Split({reinterpret_cast<const char*>(data) + 1, size - 1});
  Frames frames;
  if (mode == 0) {
    for (auto p : parts) frames.emplace_back(p.data(), p.size());
  } else if (mode == 1) {
    uint8_t type = parts[0].empty() ? 0 : static_cast<uint8_t>(parts[0][0]);
    std::string content(parts.size() > 1 ? parts[1] : "{}");
    nlohmann::json header = harness.session->make_header(kTypes[type % std::size(kTypes)]);
    frames = harness.session->serialize_parts(Identity(), header.dump(), "{}", "{}", content, {});
  } else {
    std::string header(parts[0]);
    // A fresh msg_id keeps replay protection from rejecting every input after the first.
    nlohmann::json h = nlohmann::json::parse(header, nullptr, false);
    if (h.is_object()) {
      auto type = h.find("msg_type");
      if (type != h.end() && type->is_string() && type->get<std::string>().find("shutdown") != std::string::npos) {
        return 0;  // see kTypes
      }
      h["msg_id"] = ipp::protocol::NewId();
      header = h.dump();
    }
    auto part = [&](size_t i) { return std::string(parts.size() > i ? parts[i] : "{}"); };
    Frames buffers;
    for (size_t i = 4; i < parts.size(); ++i) buffers.emplace_back(parts[i].data(), parts[i].size());
    frames = harness.session->serialize_parts(Identity(), header, part(1), part(2), part(3), std::move(buffers));
  }
  if (frames.empty()) frames.emplace_back();
  harness.Send(channel, std::move(frames));
  harness.CheckAlive();
  return 0;
}

// The engine gateway's wire format (PROTOCOL.md, "One connection per engine: the gateway").
//
// An engine that comes in through the gateway holds one DEALER connection (its routing id is the
// engine's uuid) for all of its channels except registration. Every message on it is the
// channel's name as one frame, followed by the frames the engine would have sent or received on
// that channel's own socket.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace ipp::protocol::gateway {

// The connection file's and registration_reply's key for the gateway's port.
inline constexpr const char* kPortKey = "ipp_gateway";
// The first message an engine sends: the controller opens its channels on it.
inline constexpr std::string_view kHello = "hello";
// Channels that are addressed to one engine, in both directions.
inline constexpr std::array<std::string_view, 5> kRouted = {"mux", "task", "broadcast", "control", "hb_pong"};
// Engine to controller only.
inline constexpr std::string_view kIopub = "iopub";
// Controller to engine only: every ping goes to every engine on the gateway.
inline constexpr std::string_view kPing = "hb_ping";

inline bool IsRouted(std::string_view channel) {
  for (std::string_view c : kRouted) {
    if (c == channel) return true;
  }
  return false;
}

// Inside the controller: the hub names each engine it let in through the gateway (its uuid, one
// frame) here, and each engine that is gone (its uuid and kGone); the gateway opens channels for
// no other.
inline constexpr const char* kAllowUrl = "inproc://ipp-gateway-allow";
inline constexpr std::string_view kGone = "gone";
// The most engines the hub lets through the gateway at once.
inline constexpr size_t kMaxEngines = 65536;
// Engines that share one of the gateway's inside sockets; their pipes are freed together, once
// all of them are gone (controller/engine_gateway.hpp).
inline constexpr size_t kGenerationSize = 64;

// Where the controller's engine-facing socket for `channel` also listens, for the gateway.
inline std::string InternalUrl(std::string_view channel) { return "inproc://ipp-engine-" + std::string(channel); }

}  // namespace ipp::protocol::gateway

// What both ends of a heartbeat agree on, beyond the wire format (PROTOCOL.md, "Heartbeats").
#pragma once

namespace ipp::protocol {

// Under overload (a start storm of thousands of engines, a starved machine) beats that cannot
// be judged count no misses, on the hub's side and the engine's. A peer silent for this many
// times its normal tolerance is given up all the same: the overload excuses lateness, not death.
constexpr int kHeartbeatOverloadPatience = 10;

}  // namespace ipp::protocol

// HeartMonitor: pings engines over PUB and collects their echoes on a ROUTER, as
// ipyparallel's heartmonitor.py does. The ping payload is the monitor's lifetime in seconds as
// text; an engine's Heart echoes it back with its heart id (the engine uuid) as routing id.
// A heart that answers for the first time is "new"; one that misses more than `max_misses`
// consecutive beats has "stopped".
//
// Overload degrades instead of killing everyone: a beat is judged only after every echo that
// has arrived is read, and a period in which the hub itself was late (its loop busy for more
// than half a period) or in which most hearts were silent at once (the machine, not the
// engines, is the likely cause: a start storm of thousands of processes) counts no misses. A
// heart silent for kOverloadPatience times the normal tolerance is stopped all the same. One
// summary line per period replaces a line per late or missing heart.
//
// Runs on the hub's reactor thread; the sockets belong to that thread.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <zmq.hpp>

#include "common/logging.hpp"
#include "common/reactor.hpp"
#include "protocol/heartbeat.hpp"

namespace ipp::controller {

class HeartMonitor {
 public:
  using Clock = std::chrono::steady_clock;
  struct Callbacks {
    std::function<void(const std::vector<std::string>& hearts)> on_new_hearts;
    std::function<void(const std::vector<std::string>& hearts)> on_stopped_hearts;
    // Every accepted echo (for the dashboard's heartbeat ages); may be empty.
    std::function<void(const std::string& heart)> on_beat;
  };
  // A silent heart is stopped after this many times (max_misses + 1) periods even when no
  // period could be judged (the hub or the machine overloaded throughout).
  static constexpr int kOverloadPatience = protocol::kHeartbeatOverloadPatience;
  // Most hearts silent in one period (and at least this many): the load, not the engines.
  static constexpr size_t kMassSilence = 8;
  // Periods of mass silence excused in a row while no heart answers late: engines that were
  // all killed at once (a node lost) answer nothing, late or not, and must still be dropped.
  static constexpr int kMassSilenceGrace = 2;
  // Re-pings for registering engines are spaced by this per heart (at most a period): every
  // heart answers each one, and on a machine busy starting thousands of engines their echoes
  // (an engine wake-up, both I/O threads, the hub) must stay a small part of the load.
  static constexpr std::chrono::microseconds kEchoCost{500};

  HeartMonitor(zmq::context_t& context, std::chrono::milliseconds period, int max_misses,
               Callbacks callbacks, Logger log);
  // Returns the ports bound (the urls may ask for any free port with "*").
  std::pair<int, int> Bind(const std::string& ping_url, const std::string& pong_url,
                           const std::function<void(zmq::socket_t&)>& secure);
  // Also listens on these endpoints (the engine gateway's inproc ones, the local ipc:// ones).
  void BindAlso(const std::string& ping_url, const std::string& pong_url);
  void Attach(Reactor& reactor);
  // An engine left on purpose: stop tracking it without reporting it as stopped.
  void Forget(const std::string& heart);
  // Hearts we trust without waiting for a beat (restored from a previous run).
  void Adopt(const std::string& heart) { hearts_.try_emplace(heart, Heart{0, Clock::now()}); }
  std::chrono::milliseconds period() const { return period_; }
  // Re-sends the current beat so engines that just connected can answer it now; every heart
  // answers a re-ping, so they are spaced by kEchoCost per heart (at most a period).
  void PingNow();

 private:
  struct Heart {
    int misses;
    Clock::time_point last_seen;
  };
  void Beat();
  // Reads at most `max` echoes.
  void HandlePongs(size_t max);
  void NextPing();

  zmq::socket_t ping_;
  zmq::socket_t pong_;
  std::chrono::milliseconds period_;
  int max_misses_;
  Callbacks callbacks_;
  Logger log_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_beat_{}, last_reping_{};
  std::string current_ping_, last_ping_;
  std::unordered_map<std::string, Heart> hearts_;
  std::unordered_set<std::string> responses_;
  int mass_silent_periods_ = 0;  // in a row, with no late answers
  size_t late_answers_ = 0;  // this period's hearts that echoed the previous beat, for the summary
};

}  // namespace ipp::controller

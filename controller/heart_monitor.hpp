// HeartMonitor: pings engines over PUB and collects their echoes on a ROUTER, as
// ipyparallel's heartmonitor.py does. The ping payload is the monitor's lifetime in seconds as
// text; an engine's Heart echoes it back with its heart id (the engine uuid) as routing id.
// A heart that answers for the first time is "new"; one that misses more than `max_misses`
// consecutive beats has "stopped".
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

namespace ipp::controller {

class HeartMonitor {
 public:
  struct Callbacks {
    std::function<void(const std::vector<std::string>& hearts)> on_new_hearts;
    std::function<void(const std::vector<std::string>& hearts)> on_stopped_hearts;
    // Every accepted echo (for the dashboard's heartbeat ages); may be empty.
    std::function<void(const std::string& heart)> on_beat;
  };

  HeartMonitor(zmq::context_t& context, std::chrono::milliseconds period, int max_misses,
               Callbacks callbacks, Logger log);
  // Returns the ports bound (the urls may ask for any free port with "*").
  std::pair<int, int> Bind(const std::string& ping_url, const std::string& pong_url,
                           const std::function<void(zmq::socket_t&)>& secure);
  void Attach(Reactor& reactor);
  // An engine left on purpose: stop tracking it without reporting it as stopped.
  void Forget(const std::string& heart);
  // Hearts we trust without waiting for a beat (restored from a previous run).
  void Adopt(const std::string& heart) { hearts_.insert(heart); }
  std::chrono::milliseconds period() const { return period_; }
  // Re-sends the current beat so engines that just connected can answer it now.
  void PingNow();

 private:
  void Beat();
  void HandlePongs();
  void NextPing();

  zmq::socket_t ping_;
  zmq::socket_t pong_;
  std::chrono::milliseconds period_;
  int max_misses_;
  Callbacks callbacks_;
  Logger log_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::string current_ping_, last_ping_;
  std::unordered_set<std::string> hearts_, responses_;
  std::unordered_map<std::string, int> on_probation_;
};

}  // namespace ipp::controller

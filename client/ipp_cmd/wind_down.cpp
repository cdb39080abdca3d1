#include "client/ipp_cmd/wind_down.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>

namespace ipp_cmd {

namespace {

// Ctrl-C in map and farm: the first asks the command to wind down (it polls Interrupted()),
// the second exits at once.
std::atomic<int> g_interrupts{0};

extern "C" void OnInterrupt(int) {
  if (g_interrupts.fetch_add(1) >= 1) {
    static const char kSaid[] = "\nipp: second Ctrl-C: exiting now; what was sent may still wait or run (ipp status, ipp abort)\n";
    ssize_t ignored = write(2, kSaid, sizeof kSaid - 1);  // async-signal-safe, unlike iostreams
    (void)ignored;
    _exit(130);
  }
}

}  // namespace

bool Interrupted() { return g_interrupts.load() > 0; }

// Connect() with SIGINT caught: the client's I/O thread starts with SIGINT blocked, so the
// signal always reaches this (the main) thread, whose waits poll Interrupted().
std::unique_ptr<ipp::Client> ConnectInterruptible(const Common& c, std::string* error) {
  sigset_t sigint;
  sigemptyset(&sigint);
  sigaddset(&sigint, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigint, nullptr);
  auto client = Connect(c, error);
  struct sigaction action {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  pthread_sigmask(SIG_UNBLOCK, &sigint, nullptr);
  return client;
}

namespace {

// Waits for every result until `deadline`; false if some are still out.
bool WaitAll(const std::vector<ipp::AsyncResult>& results, std::chrono::steady_clock::time_point deadline) {
  for (const auto& r : results) {
    auto left = std::chrono::duration_cast<ipp::Millis>(deadline - std::chrono::steady_clock::now());
    if (!r.wait(std::max(left, ipp::Millis(0)))) return false;
  }
  return true;
}

}  // namespace

// Every request of `results` still queued (in the scheduler or on an engine) is aborted; what
// runs gets `before_signal` to end, then the engines running it get SIGINT and `after_signal` to
// answer.
std::vector<std::string> WindDown(ipp::Client& client, const std::vector<ipp::AsyncResult>& results,
                                  ipp::Millis before_signal, ipp::Millis after_signal) {
  std::set<std::string> pending;
  for (const auto& r : results) {
    if (!r.ready()) pending.insert(r.msg_ids().begin(), r.msg_ids().end());
  }
  if (pending.empty()) return {};
  // Not waiting for the engines' acknowledgements: a stock engine gives them only once its
  // running task is done.
  client.direct_view().abort({pending.begin(), pending.end()});
  if (WaitAll(results, std::chrono::steady_clock::now() + before_signal)) return {};
  // The engines running what is left, from the hub's view of their queues.
  std::vector<int> busy;
  if (auto status = client.queue_status({}, /*verbose=*/true); status.ok()) {
    for (int id : client.ids()) {
      const ipp::Json& q = (*status)[std::to_string(id)];
      if (!q.is_object()) continue;
      bool runs_ours = false;
      for (const char* list : {"queue", "tasks"}) {
        for (const auto& msg_id : q.value(list, ipp::Json::array())) {
          runs_ours = runs_ours || (msg_id.is_string() && pending.count(msg_id.get<std::string>()));
        }
      }
      if (runs_ours) busy.push_back(id);
    }
  }
  if (!busy.empty()) (void)client.send_signal(SIGINT, busy);
  WaitAll(results, std::chrono::steady_clock::now() + after_signal);
  std::vector<std::string> left;
  for (const auto& r : results) {
    if (!r.ready()) left.insert(left.end(), r.msg_ids().begin(), r.msg_ids().end());
  }
  return left;
}

}  // namespace ipp_cmd

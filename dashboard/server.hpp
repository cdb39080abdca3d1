// The dashboard's HTTP server (cpp-httplib): the page and its static files, Chart.js, and the
// read-only JSON API (README "Dashboard"), every path behind the controller's token.
//
// Threads: Start() binds on the caller's thread; then a listener thread and cpp-httplib's worker
// pool serve requests, and a broadcaster thread builds the SSE events. They only read the
// Aggregator's published snapshots, so the hub never waits for them. Stop() (any thread but a
// worker) ends the SSE streams and joins.
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/logging.hpp"
#include "dashboard/aggregator.hpp"
#include "ipp/status.hpp"

namespace httplib {
class Server;
struct Request;
}

namespace ipp::dashboard {

struct ServerOptions {
  std::string ip = "127.0.0.1";
  int port = 0;  // 0: any free port
  std::string token;  // required on every request
  std::filesystem::path static_dir;  // empty: found with StaticDir()
  std::chrono::milliseconds stream_period{1000};  // between two SSE "update" events
  int max_streams = 16;  // concurrent /api/stream viewers; more get 503
};

// Where the page's files are: $IPP_DASHBOARD_STATIC, else <prefix>/share/ipp/dashboard/static
// beside the running executable's bin/, else this source tree's dashboard/static.
std::filesystem::path StaticDir();
// Debian's Chart.js (UMD build); empty when not installed.
std::filesystem::path ChartJs();
// 32 random hex characters (128 bits from the OS's CSPRNG).
std::string NewToken();

class Server {
 public:
  Server(const Aggregator& aggregator, ServerOptions options, Logger log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving. Unavailable when the address cannot be bound.
  Status Start();
  void Stop();
  int port() const { return port_; }
  // http://IP:PORT/?token=TOKEN
  std::string url() const;

 private:
  bool Authorized(const httplib::Request& req) const;
  void Routes();
  // The SSE events: built once per period on the broadcaster thread, the same bytes for every
  // viewer, so viewers cost a write each and not a serialization each.
  void Broadcast();
  static constexpr uint64_t kMaxEventTasks = 500;

  const Aggregator& aggregator_;
  ServerOptions options_;
  Logger log_;
  std::unique_ptr<httplib::Server> http_;
  std::map<std::string, std::filesystem::path> files_;  // /static/<name> -> file
  std::thread thread_;
  int port_ = 0;
  std::thread broadcaster_;
  std::atomic<int> streams_{0};
  std::mutex mutex_;  // guards the three below
  std::condition_variable cv_;  // a new event, or stopping
  bool stopping_ = false;
  std::shared_ptr<const std::string> event_;
  uint64_t generation_ = 0;
};

}  // namespace ipp::dashboard

#include "dashboard/server.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <httplib.h>

#include "dashboard/api.hpp"

namespace ipp::dashboard {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kCookie = "ipp_token";

std::string ContentType(const fs::path& file) {
  std::string ext = file.extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  return "application/octet-stream";
}

bool SameToken(const std::string& given, const std::string& token) {
  return !token.empty() && given.size() == token.size() && CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

// The value of cookie `name` in a Cookie header ("a=1; ipp_token=T").
std::string CookieValue(const std::string& header, const std::string& name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string pair = header.substr(pos, end - pos);
    pair.erase(0, pair.find_first_not_of(' '));
    if (pair.compare(0, name.size() + 1, name + "=") == 0) return pair.substr(name.size() + 1);
    pos = end + 1;
  }
  return "";
}

void SendJson(httplib::Response& res, const json& body) {
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

}  // namespace

fs::path StaticDir() {
  if (const char* env = std::getenv("IPP_DASHBOARD_STATIC"); env && *env) return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path installed = exe.parent_path().parent_path() / "share" / "ipp" / "dashboard" / "static";
    if (fs::is_directory(installed, ec)) return installed;
  }
  return IPP_DASHBOARD_SOURCE_STATIC;
}

fs::path ChartJs() {
  std::error_code ec;
  for (const char* candidate : {"/usr/share/javascript/chart.js/chart.umd.js", "/usr/share/javascript/chart.js/chart.min.js",
                                "/usr/share/javascript/chart.js/Chart.min.js"}) {
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  return {};
}

std::string NewToken() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) std::abort();  // no randomness: no safe token to make
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Server::Server(const Aggregator& aggregator, ServerOptions options, Logger log)
    : aggregator_(aggregator), options_(std::move(options)), log_(std::move(log)), http_(std::make_unique<httplib::Server>()) {
  if (options_.static_dir.empty()) options_.static_dir = StaticDir();
}

Server::~Server() { Stop(); }

std::string Server::url() const {
  return "http://" + options_.ip + ":" + std::to_string(port_) + "/?token=" + options_.token;
}

bool Server::Authorized(const httplib::Request& req) const {
  if (req.has_param("token") && SameToken(req.get_param_value("token"), options_.token)) return true;
  std::string auth = req.get_header_value("Authorization");
  if (auth.rfind("token ", 0) == 0 && SameToken(auth.substr(6), options_.token)) return true;
  return SameToken(CookieValue(req.get_header_value("Cookie"), kCookie), options_.token);
}

void Server::Routes() {
  httplib::Server& http = *http_;
  // Our files, by exact name: a request names one of them or gets a 404, so no path can leave
  // the directory.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.static_dir, ec)) {
    if (entry.is_regular_file(ec)) files_[entry.path().filename().string()] = entry.path();
  }
  if (fs::path chart = ChartJs(); !chart.empty()) files_["chart.js"] = chart;
  if (!files_.count("index.html")) log_->warn("dashboard: no index.html in {}", options_.static_dir.string());

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (Authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    res.status = 403;
    res.set_content("403 Forbidden: this dashboard needs its token (the URL ipcontroller logs, with ?token=...)\n",
                    "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  auto serve = [this](const std::string& name, httplib::Response& res) {
    auto it = files_.find(name);
    std::ifstream in(it == files_.end() ? fs::path() : it->second, std::ios::binary);
    if (!in) {
      res.status = 404;
      res.set_content("404 Not Found\n", "text/plain");
      return;
    }
    std::ostringstream body;
    body << in.rdbuf();
    res.set_content(body.str(), ContentType(it->second));
  };
  http.Get("/", [this, serve](const httplib::Request&, httplib::Response& res) {
    // The page's own requests (fetch, EventSource, script src) carry the token as a cookie.
    res.set_header("Set-Cookie", std::string(kCookie) + "=" + options_.token + "; Path=/; HttpOnly; SameSite=Strict");
    res.set_header("Cache-Control", "no-store");
    serve("index.html", res);
  });
  http.Get(R"(/static/([A-Za-z0-9_.-]+))", [serve](const httplib::Request& req, httplib::Response& res) {
    serve(req.matches[1].str(), res);
  });
  http.Get("/api/engines", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, EnginesJson(*aggregator_.snapshot(), Clock::now()));
  });
  http.Get("/api/stats", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, StatsJson(*aggregator_.snapshot(), Clock::now()));
  });
  http.Get("/api/tasks", [this](const httplib::Request& req, httplib::Response& res) {
    uint64_t since = 0;
    if (req.has_param("since")) {
      const std::string text = req.get_param_value("since");
      char* end = nullptr;
      errno = 0;
      since = std::strtoull(text.c_str(), &end, 10);
      if (text.empty() || *end || errno || text[0] == '-') {
        res.status = 400;
        res.set_content("400 Bad Request: since must be a task sequence number\n", "text/plain");
        return;
      }
    }
    SendJson(res, TasksJson(*aggregator_.snapshot(), since, Clock::now()));
  });
  http.Get("/api/stream", [this](const httplib::Request&, httplib::Response& res) {
    if (streams_.fetch_add(1) >= options_.max_streams) {
      streams_.fetch_sub(1);
      res.status = 503;
      res.set_content("503 Service Unavailable: too many dashboard streams\n", "text/plain");
      return;
    }
    res.set_header("Cache-Control", "no-store");
    auto seen = std::make_shared<uint64_t>(0);  // the last event generation this viewer got
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, seen](size_t, httplib::DataSink& sink) {
          std::shared_ptr<const std::string> event;
          {
            std::unique_lock<std::mutex> lock(mutex_);
            cv_.wait(lock, [&] { return stopping_ || generation_ != *seen; });
            if (stopping_) return false;
            event = event_;
            *seen = generation_;
          }
          return sink.is_writable() && sink.write(event->data(), event->size());
        },
        [this](bool) { streams_.fetch_sub(1); });
  });
}

Status Server::Start() {
  Routes();
  httplib::Server& http = *http_;
  int workers = options_.max_streams + 8;  // every stream holds a worker; the rest serve requests
  http.new_task_queue = [workers] { return new httplib::ThreadPool(static_cast<size_t>(workers)); };
  http.set_keep_alive_timeout(5);
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  if (options_.port == 0) {
    port_ = http.bind_to_any_port(options_.ip);
  } else {
    port_ = http.bind_to_port(options_.ip, options_.port) ? options_.port : -1;
  }
  if (port_ <= 0) {
    return Status::Unavailable("cannot serve the dashboard on " + options_.ip + ":" + std::to_string(options_.port) +
                               " (address in use or not this host's?)");
  }
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "ipc-dashboard");
    http_->listen_after_bind();
  });
  broadcaster_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "ipc-dash-sse");
    Broadcast();
  });
  return Status::OK();
}

void Server::Broadcast() {
  uint64_t since = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (generation_ != 0) cv_.wait_for(lock, options_.stream_period, [this] { return stopping_; });
      if (stopping_) return;
    }
    std::shared_ptr<const Snapshot> s = aggregator_.snapshot();
    if (streams_.load() == 0 && generation_ != 0) {
      since = s->last_seq;  // nobody to send the tasks to
      continue;
    }
    Clock::time_point now = Clock::now();
    // A viewer draws recent tasks: at most kMaxEventTasks of them per event.
    json tasks = TasksJson(*s, std::max(since, s->last_seq > kMaxEventTasks ? s->last_seq - kMaxEventTasks : 0), now);
    since = s->last_seq;
    json data = {{"engines", EnginesJson(*s, now)}, {"stats", StatsJson(*s, now)}, {"tasks", std::move(tasks)}};
    auto event = std::make_shared<const std::string>(
        "event: update\ndata: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      event_ = std::move(event);
      ++generation_;
    }
    cv_.notify_all();
  }
}

void Server::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (broadcaster_.joinable()) broadcaster_.join();
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace ipp::dashboard

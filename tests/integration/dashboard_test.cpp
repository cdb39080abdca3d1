// The dashboard's HTTP server against a real ipcontroller with real ipengines: the JSON API in a
// known state, the token, bad requests, SSE, and the dashboard file.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include "ipp/client.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// Sends `request` as is over a fresh TCP connection and returns what comes back until the
// response's headers are complete, the server closes the connection or `timeout` passes.
std::string RawExchange(int port, const std::string& request, std::chrono::milliseconds timeout = 5s) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close early on a request it refuses
    sent += static_cast<size_t>(n);
  }
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.find("\r\n\r\n") != std::string::npos) break;  // the status is all the tests read
  }
  close(fd);
  return out;
}

int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return -1;
  return std::stoi(response.substr(9, 3));
}

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok()) << cluster_.Log("controller.log");
    ASSERT_TRUE(testutil::WaitFor([&] { return fs::exists(DashboardFile()); }, 10s)) << cluster_.Log("controller.log");
    json file = json::parse(testutil::ReadFile(DashboardFile()));
    token_ = file.at("token").get<std::string>();
    url_ = file.at("url").get<std::string>();
    EXPECT_EQ(file.at("pid").get<int>(), cluster_.controller().pid());
    size_t colon = url_.rfind(':');
    port_ = std::stoi(url_.substr(colon + 1));
    auto c = Client::Connect(ClientOptions::File(cluster_.client_file().string()));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    ASSERT_TRUE(client_->wait_for_engines(2, 30s).ok()) << cluster_.Log("engine-0.log");
  }
  fs::path DashboardFile() const { return cluster_.profile_dir() / "security" / "ipcontroller-dashboard.json"; }
  httplib::Result Get(const std::string& path, bool with_token = true) {
    httplib::Client http("127.0.0.1", port_);
    http.set_read_timeout(5, 0);
    std::string sep = path.find('?') == std::string::npos ? "?" : "&";
    return http.Get(with_token ? path + sep + "token=" + token_ : path);
  }
  json GetJson(const std::string& path) {
    httplib::Result r = Get(path);
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }
  // Polls `path` until `ok` holds for its JSON; returns the last document.
  json PollJson(const std::string& path, const std::function<bool(const json&)>& ok, std::chrono::milliseconds timeout = 15s) {
    json last;
    testutil::WaitFor([&] {
      last = GetJson(path);
      return !last.is_null() && !last.is_discarded() && ok(last);
    }, timeout);
    return last;
  }
  // A task still runs through the controller.
  void ExpectServing() {
    Result<std::vector<Json>> task = client_->load_balanced_view().apply("pi.sample", 1000).result(20s);
    EXPECT_TRUE(task.ok()) << task.status().ToString();
    httplib::Result r = Get("/api/stats");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }

  testutil::LocalCluster cluster_{2};
  std::unique_ptr<Client> client_;
  std::string token_, url_;
  int port_ = 0;
};

TEST_F(DashboardTest, FileIsPrivateAndNamesTheUrl) {
  struct stat st{};
  ASSERT_EQ(stat(DashboardFile().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_GE(token_.size(), 32u);
  EXPECT_EQ(url_, "http://127.0.0.1:" + std::to_string(port_) + "/?token=" + token_);
  EXPECT_NE(cluster_.Log("controller.log").find("dashboard: " + url_), std::string::npos);
}

TEST_F(DashboardTest, ApiShowsEnginesTasksStatsAndFailures) {
  constexpr int kTasks = 20;
  LoadBalancedView lb = client_->load_balanced_view();
  std::vector<AsyncResult> results;
  for (int i = 0; i < kTasks; ++i) results.push_back(lb.apply("pi.sample", 1000));
  for (auto& r : results) ASSERT_TRUE(r.wait(20s));
  AsyncResult failing = lb.apply("fail.always");
  ASSERT_TRUE(failing.wait(20s));

  json stats = PollJson("/api/stats", [](const json& s) { return s["counters"]["done"] == kTasks + 1; });
  ASSERT_TRUE(stats.is_object()) << cluster_.Log("controller.log");
  EXPECT_EQ(stats["counters"]["done"], kTasks + 1);
  EXPECT_EQ(stats["counters"]["failed"], 1);
  EXPECT_EQ(stats["counters"]["submitted"], kTasks + 1);
  EXPECT_EQ(stats["counters"]["running"], 0);
  EXPECT_EQ(stats["counters"]["queued_lb"], 0);
  ASSERT_EQ(stats["failures"].size(), 1u);
  EXPECT_EQ(stats["failures"][0]["function"], "fail.always");
  EXPECT_FALSE(stats["failures"][0]["ename"].get<std::string>().empty());
  EXPECT_NE(stats["failures"][0]["evalue"].get<std::string>().find("always fails"), std::string::npos);
  bool pi_listed = false;
  for (const json& f : stats["functions"]) {
    if (f["name"] == "pi.sample") {
      pi_listed = true;
      EXPECT_EQ(f["count"], kTasks);
      EXPECT_GE(f["p99_ms"].get<double>(), f["mean_ms"].get<double>() * 0.0);
    }
  }
  EXPECT_TRUE(pi_listed) << stats["functions"].dump();
  ASSERT_EQ(stats["clients"].size(), 1u);
  EXPECT_EQ(stats["clients"][0]["tasks"], kTasks + 1);
  EXPECT_GT(stats["controller"]["rss_bytes"].get<double>(), 0);
  EXPECT_GT(stats["uptime_s"].get<double>(), 0);

  json engines = GetJson("/api/engines");
  ASSERT_TRUE(engines.is_array());
  ASSERT_EQ(engines.size(), 2u);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::set<int> pids;
  int done = 0, failed = 0;
  for (const json& e : engines) {
    EXPECT_EQ(e["kind"], "native");
    EXPECT_EQ(e["state"], "idle");
    EXPECT_EQ(e["host"], host);
    EXPECT_TRUE(e["death"].is_null());
    EXPECT_LT(e["heartbeat_age_s"].get<double>(), 5.0);
    EXPECT_GT(e["functions"].get<int>(), 5);
    pids.insert(e["pid"].get<int>());
    done += e["done"].get<int>();
    failed += e["failed"].get<int>();
  }
  EXPECT_EQ(pids, (std::set<int>{cluster_.engines()[0]->pid(), cluster_.engines()[1]->pid()}));
  EXPECT_EQ(done, kTasks + 1);
  EXPECT_EQ(failed, 1);

  json tasks = GetJson("/api/tasks");
  ASSERT_TRUE(tasks.is_object());
  ASSERT_EQ(tasks["tasks"].size(), static_cast<size_t>(kTasks + 1));
  EXPECT_EQ(tasks["seq"], kTasks + 1);
  const json& last = tasks["tasks"].back();
  EXPECT_EQ(last["function"], "fail.always");
  EXPECT_EQ(last["status"], "error");
  EXPECT_LE(last["started"].get<double>(), last["completed"].get<double>());
  EXPECT_EQ(GetJson("/api/tasks?since=" + std::to_string(kTasks))["tasks"].size(), 1u);
  httplib::Result bad = Get("/api/tasks?since=abc");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

TEST_F(DashboardTest, KilledEngineTurnsDeadWithItsReason) {
  int victim = cluster_.engines()[0]->pid();
  cluster_.engines()[0]->signal(SIGKILL);
  json engines = PollJson("/api/engines", [&](const json& list) {
    for (const json& e : list) {
      if (e["pid"] == victim) return e["state"] == "dead";
    }
    return false;
  });
  ASSERT_TRUE(engines.is_array()) << cluster_.Log("controller.log");
  bool seen = false;
  for (const json& e : engines) {
    if (e["pid"] != victim) {
      EXPECT_EQ(e["state"], "idle");
      continue;
    }
    seen = true;
    EXPECT_EQ(e["state"], "dead");
    EXPECT_NE(e["death"].get<std::string>().find("heartbeat"), std::string::npos) << e.dump();
  }
  EXPECT_TRUE(seen) << engines.dump();
}

TEST_F(DashboardTest, APluginLoadShowsInTheEnginesFunctions) {
  // The cluster's engines start with the pi plugin: one more engine without it.
  testutil::TempDir dir;
  testutil::Process plain({std::string(IPP_BIN_DIR) + "/ipengine", "--profile-dir=" + cluster_.profile_dir().string()},
                          dir.path() / "plain-engine.log");
  ASSERT_TRUE(client_->wait_for_engines(3, 30s).ok()) << testutil::ReadFile(dir.path() / "plain-engine.log");
  json before = PollJson("/api/engines", [](const json& list) { return list.size() == 3; });
  ASSERT_TRUE(before.is_array() && before.size() == 3) << before;
  json fewest = before[0];
  for (const json& e : before) {
    if (e["functions"] < fewest["functions"]) fewest = e;
  }
  int id = fewest["id"], functions = fewest["functions"];
  client_->direct_view({id}).load_plugin(testutil::PiPlugin()).get(20s);
  json after = PollJson("/api/engines", [&](const json& list) {
    for (const json& e : list) {
      if (e["id"] == id) return e["functions"] > functions;
    }
    return false;
  });
  bool grew = false;
  for (const json& e : after) grew = grew || (e["id"] == id && e["functions"] > functions);
  EXPECT_TRUE(grew) << after;
}

// Work no connected engine can run is said on the dashboard (and in ipp top, which reads the
// same stats), not only in queue_status; it goes away once the work is no longer waiting.
TEST_F(DashboardTest, WorkNoEngineCanRunIsShownUntilItStopsWaiting) {
  TaskOptions options;
  options.requirements = {"tpu"};
  AsyncResult waiting = client_->load_balanced_view(options).apply("pi.sample", 10);
  json stats = PollJson("/api/stats", [](const json& s) { return !s["waiting_for"].empty(); });
  ASSERT_TRUE(stats.is_object() && stats["waiting_for"].size() == 1) << stats;
  EXPECT_EQ(stats["waiting_for"][0]["tasks"], 1);
  EXPECT_NE(stats["waiting_for"][0]["reason"].get<std::string>().find("tag tpu"), std::string::npos) << stats;
  ASSERT_TRUE(client_->abort(waiting.msg_ids()).ok());
  ASSERT_TRUE(waiting.wait(20s));
  stats = PollJson("/api/stats", [](const json& s) { return s["waiting_for"].empty(); });
  EXPECT_EQ(stats["waiting_for"], json::array()) << stats;
}

TEST_F(DashboardTest, ATaskLostWithAKilledEngineNamesThatEngine) {
  int id = client_->ids()[0];
  AsyncResult running = client_->direct_view({id}).apply("ipp.sleep", 60);
  ASSERT_TRUE(testutil::WaitFor([&] {
    Result<Json> status = client_->queue_status({id});
    return status.ok() && (*status)[std::to_string(id)].value("queue", 0) == 1;
  }, 20s));
  int victim = -1;
  for (const json& e : PollJson("/api/engines", [](const json& list) { return list.size() == 2; })) {
    if (e["id"] == id) victim = e["pid"];
  }
  bool killed = false;
  for (auto& engine : cluster_.engines()) {
    if (engine->pid() != victim) continue;
    engine->signal(SIGKILL);
    killed = true;
  }
  ASSERT_TRUE(killed) << "no engine process with pid " << victim;
  json stats = PollJson("/api/stats", [](const json& s) { return !s["failures"].empty(); }, 30s);
  ASSERT_TRUE(stats.is_object() && !stats["failures"].empty()) << stats << cluster_.Log("controller.log");
  EXPECT_EQ(stats["failures"][0]["engine"], id) << stats["failures"];
}

TEST_F(DashboardTest, EveryPathNeedsTheToken) {
  for (const std::string path : {"/", "/api/engines", "/api/tasks", "/api/stats", "/api/stream", "/static/chart.js", "/nope"}) {
    httplib::Result none = Get(path, false);
    ASSERT_TRUE(none) << path;
    EXPECT_EQ(none->status, 403) << path;
    httplib::Result wrong = Get(path + "?token=" + std::string(token_.size(), '0'), false);
    ASSERT_TRUE(wrong) << path;
    EXPECT_EQ(wrong->status, 403) << path;
  }
  httplib::Client http("127.0.0.1", port_);
  httplib::Result header = http.Get("/api/engines", {{"Authorization", "token " + token_}});
  ASSERT_TRUE(header);
  EXPECT_EQ(header->status, 200);
  httplib::Result cookie = http.Get("/api/engines", {{"Cookie", "other=1; ipp_token=" + token_}});
  ASSERT_TRUE(cookie);
  EXPECT_EQ(cookie->status, 200);
  httplib::Result wrong_header = http.Get("/api/engines", {{"Authorization", "token x" + token_}});
  ASSERT_TRUE(wrong_header);
  EXPECT_EQ(wrong_header->status, 403);

  httplib::Result page = Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<html"), std::string::npos);
  std::string set_cookie = page->get_header_value("Set-Cookie");
  EXPECT_NE(set_cookie.find("ipp_token=" + token_), std::string::npos);
  EXPECT_NE(set_cookie.find("HttpOnly"), std::string::npos);
  EXPECT_NE(set_cookie.find("SameSite=Strict"), std::string::npos);
  httplib::Result chart = Get("/static/chart.js");
  ASSERT_TRUE(chart);
  EXPECT_EQ(chart->status, 200);
  EXPECT_NE(chart->body.find("Chart"), std::string::npos);
}

TEST_F(DashboardTest, BadRequestsGet4xxAndTheControllerKeepsServing) {
  const std::string t = "token=" + token_;
  auto raw_get = [&](const std::string& target) {
    return StatusOf(RawExchange(port_, "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  };
  auto is_4xx = [](int status) { return status >= 400 && status < 500; };
  EXPECT_TRUE(is_4xx(StatusOf(RawExchange(port_, "GARBAGE\r\n\r\n"))));
  EXPECT_TRUE(is_4xx(StatusOf(RawExchange(port_, "GET / HTTP/1.1\r\nno colon here\r\n\r\n"))));
  std::string huge = "GET /api/engines?" + t + " HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(1 << 20, 'a') + "\r\n\r\n";
  EXPECT_TRUE(is_4xx(StatusOf(RawExchange(port_, huge))));
  EXPECT_TRUE(is_4xx(raw_get("/" + std::string(100000, 'a') + "?" + t)));
  for (const std::string target :
       {"/../../etc/passwd", "/static/../../etc/passwd", "/static/..%2F..%2Fetc%2Fpasswd", "/%2e%2e/%2e%2e/etc/passwd",
        "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/....//....//etc/passwd", "/static//etc/passwd",
        "/static/index.html%00.js", "/nope", "/api/nope", "/static/nope.js", "/static/"}) {
    std::string response = RawExchange(port_, "GET " + target + "?" + t + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(is_4xx(StatusOf(response))) << target << ": " << response.substr(0, 200);
  }
  EXPECT_EQ(raw_get("/api/engines?" + t), 200);
  ExpectServing();
}

TEST_F(DashboardTest, StreamSendsUpdates) {
  httplib::Client http("127.0.0.1", port_);
  http.set_read_timeout(10, 0);
  std::string buffer;
  std::vector<json> events;
  std::atomic<bool> enough{false};
  std::thread reader([&] {
    http.Get("/api/stream?token=" + token_, [&](const char* data, size_t n) {
      buffer.append(data, n);
      size_t end;
      while ((end = buffer.find("\n\n")) != std::string::npos) {
        std::string event = buffer.substr(0, end);
        buffer.erase(0, end + 2);
        size_t at = event.find("data: ");
        if (event.rfind("event: update\n", 0) == 0 && at != std::string::npos) {
          events.push_back(json::parse(event.substr(at + 6), nullptr, false));
        }
        if (!events.empty() && events.back().is_object() && events.back()["stats"]["counters"]["done"] == 3) {
          enough = true;
        }
      }
      return !enough.load();
    });
  });
  LoadBalancedView lb = client_->load_balanced_view();
  for (int i = 0; i < 3; ++i) lb.apply("pi.sample", 1000).get_one(20s);
  bool got = testutil::WaitFor([&] { return enough.load(); }, 15s);
  enough = true;
  reader.join();
  ASSERT_TRUE(got) << cluster_.Log("controller.log");
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back()["engines"].size(), 2u);
  size_t tasks = 0;
  for (const json& e : events) tasks += e["tasks"]["tasks"].size();
  EXPECT_EQ(tasks, 3u);  // each finished task in exactly one event
}

TEST(DashboardLifecycle, NoDashboardMeansNoServerAndNoFile) {
  testutil::LocalCluster cluster(0, {"--no-dashboard"});
  ASSERT_TRUE(cluster.ok());
  EXPECT_FALSE(fs::exists(cluster.profile_dir() / "security" / "ipcontroller-dashboard.json"));
  EXPECT_EQ(cluster.Log("controller.log").find("dashboard:"), std::string::npos);
}

TEST(DashboardLifecycle, FileGoesAwayWhenTheControllerStops) {
  testutil::LocalCluster cluster(0, {"--dashboard-port=0"});
  ASSERT_TRUE(cluster.ok());
  fs::path file = cluster.profile_dir() / "security" / "ipcontroller-dashboard.json";
  ASSERT_TRUE(testutil::WaitFor([&] { return fs::exists(file); }, 10s));
  cluster.controller().signal(SIGTERM);
  EXPECT_GE(cluster.controller().wait(20s), 0);
  EXPECT_FALSE(fs::exists(file));
}

}  // namespace
}  // namespace ipp

namespace ipp {
namespace {

TEST(DashboardLifecycle, IpclusterStartAndListPrintTheUrl) {
  testutil::TempDir dir;
  const std::string ipcluster = std::string(IPP_BIN_DIR) + "/ipcluster";
  const std::string profile = "--profile-dir=" + (dir.path() / "profile").string();
  std::string out;
  int rc = testutil::RunCommand({ipcluster, "start", "-n", "1", "--daemonize", profile,
                                 "--engine-arg=--load=" + testutil::PiPlugin()}, &out, 60s);
  std::string list;
  int list_rc = testutil::RunCommand({ipcluster, "list", profile}, &list, 30s);
  std::string stop;
  testutil::RunCommand({ipcluster, "stop", profile}, &stop, 60s);
  ASSERT_EQ(rc, 0) << out;
  fs::path file = dir.path() / "profile" / "security" / "ipcontroller-dashboard.json";
  EXPECT_FALSE(fs::exists(file)) << stop;  // removed by the stopped controller
  size_t at = out.find("dashboard: http://127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << out;
  std::string url = out.substr(at + 11, out.find('\n', at) - at - 11);
  EXPECT_NE(url.find("/?token="), std::string::npos) << url;
  EXPECT_EQ(list_rc, 0) << list;
  EXPECT_NE(list.find("dashboard: " + url), std::string::npos) << list;
}

}  // namespace
}  // namespace ipp

// ipp top: the controller's dashboard API (see controller/dashboard) drawn in the terminal with
// ncurses, refreshed in place.
//
// Threads: the main thread owns the terminal (ncurses is not thread-safe) and reads keys; one
// poller thread does the HTTP requests, so a slow or lost controller never freezes the keyboard.
// They share only `Shared` below, under its mutex.
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "client/ipp_cmd/commands.hpp"
#include "client/ipp_cmd/options.hpp"
#include "client/ipp_cmd/top_view.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/profile_dir.hpp"

// Last, and as functions rather than macros: curses defines OK, ERR, erase(), refresh(), ...
#define NCURSES_NOMACROS
#include <curses.h>

namespace ipp_cmd {

namespace {

// Where the API is: "http://host:port" and the token. From --url, or else from the dashboard
// file, which is read again on every poll so that a restarted controller (new port, new token)
// is found again.
struct Endpoint {
  std::string base, token;
};

// "http://127.0.0.1:8123/?token=abc" -> {"http://127.0.0.1:8123", "abc"}.
bool ParseUrl(const std::string& url, Endpoint* out, std::string* error) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos || url.compare(0, scheme, "http") != 0) {
    *error = "not an http:// URL: " + url;
    return false;
  }
  auto path = url.find_first_of("/?#", scheme + 3);
  out->base = url.substr(0, path);
  if (out->base.size() == scheme + 3) {
    *error = "no host in URL: " + url;
    return false;
  }
  out->token.clear();
  if (auto query = url.find('?'); query != std::string::npos) {
    std::string q = url.substr(query + 1, url.find('#', query) - query - 1);
    std::istringstream parts(q);
    for (std::string part; std::getline(parts, part, '&');) {
      if (part.rfind("token=", 0) == 0) out->token = part.substr(6);
    }
  }
  return true;
}

// The dashboard file that belongs with the connection file the other subcommands would use:
// ipcontroller[-ID]-dashboard.json in the same security directory.
std::filesystem::path DashboardFile(const Common& c) {
  if (!c.file.empty()) {
    std::filesystem::path file(c.file);
    std::string name = file.filename().string();
    const std::string client = "-client.json";
    if (name.size() > client.size() && name.compare(name.size() - client.size(), client.size(), client) == 0) {
      return file.parent_path() / (name.substr(0, name.size() - client.size()) + "-dashboard.json");
    }
    return file.parent_path() / ipp::protocol::ConnectionFileName("dashboard", c.cluster_id);
  }
  return ipp::protocol::ProfileDir::Resolve(c.profile, c.profile_dir).security_dir() /
         ipp::protocol::ConnectionFileName("dashboard", c.cluster_id);
}

bool ReadDashboardFile(const std::filesystem::path& path, Endpoint* out, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "no dashboard file " + path.string() +
             " (is the controller running, and without --no-dashboard? --url names a dashboard directly)";
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  Json j = Json::parse(text.str(), nullptr, false);
  if (!j.is_object() || !j.contains("url") || !j["url"].is_string()) {
    *error = "dashboard file " + path.string() + " has no \"url\"";
    return false;
  }
  if (!ParseUrl(j["url"].get<std::string>(), out, error)) return false;
  if (j.contains("token") && j["token"].is_string()) out->token = j["token"].get<std::string>();
  return true;
}

// One poll: both endpoints, or what went wrong ("" when nothing did).
struct Poll {
  Json engines, stats;
  std::string problem;
};

Json GetJson(const Endpoint& at, const std::string& path, std::string* problem) {
  httplib::Client http(at.base);
  http.set_connection_timeout(1, 0);
  http.set_read_timeout(3, 0);
  http.set_write_timeout(3, 0);
  auto res = http.Get(path, {{"Authorization", "token " + at.token}});
  if (!res) {
    httplib::Error e = res.error();
    std::string why = e == httplib::Error::Connection          ? "cannot connect"
                      : e == httplib::Error::ConnectionTimeout ? "connecting timed out"
                      : e == httplib::Error::Read              ? "no answer"
                                                               : httplib::to_string(e);
    *problem = "controller unreachable at " + at.base + " (" + why + ")";
    return nullptr;
  }
  if (res->status == 403) {
    *problem = "the dashboard at " + at.base + " refused the token (403)";
    return nullptr;
  }
  if (res->status != 200) {
    *problem = "GET " + path + " from " + at.base + ": HTTP " + std::to_string(res->status);
    return nullptr;
  }
  Json j = Json::parse(res->body, nullptr, false);
  if (j.is_discarded()) *problem = "GET " + path + " from " + at.base + ": not JSON";
  return j.is_discarded() ? Json() : j;
}

Poll Fetch(const Endpoint& at) {
  Poll p;
  p.engines = GetJson(at, "/api/engines", &p.problem);
  if (p.problem.empty()) p.stats = GetJson(at, "/api/stats", &p.problem);
  if (p.problem.empty() && !p.engines.is_array()) p.problem = "GET /api/engines from " + at.base + ": not a JSON array";
  return p;
}

// Set by the signal handlers, read by the main loop (getch returns every 100 ms).
volatile std::sig_atomic_t g_signal = 0;
extern "C" void OnSignal(int sig) { g_signal = sig; }

// What the poller hands the main thread. State below is protected by `mutex`.
struct Shared {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  TopInput view;
  bool changed = true;
};

// Owns the terminal: set up in the constructor, restored in the destructor (so also when an
// exception leaves the loop).
class Screen {
 public:
  Screen() {
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout(100);
    if (has_colors()) {
      start_color();
      use_default_colors();
      init_pair(1, COLOR_RED, -1);
    }
  }
  ~Screen() { endwin(); }
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;

  void Draw(const std::vector<TopLine>& lines) {
    erase();
    for (int i = 0; i < static_cast<int>(lines.size()) && i < LINES; ++i) {
      attr_t a = A_NORMAL;
      switch (lines[i].style) {
        case TopLine::Style::kTitle: a = A_REVERSE; break;
        case TopLine::Style::kHeading: a = A_BOLD; break;
        case TopLine::Style::kProblem: a = A_BOLD | (has_colors() ? COLOR_PAIR(1) : A_NORMAL); break;
        case TopLine::Style::kDim: a = A_DIM; break;
        case TopLine::Style::kNormal: break;
      }
      attrset(a);
      mvaddnstr(i, 0, lines[i].text.c_str(), COLS);
    }
    attrset(A_NORMAL);
    refresh();
  }
};

}  // namespace

int Top(int argc, char** argv) {
  CommandLine cl;
  const Common& c = cl.common;
  std::string url;
  double interval = 1;
  bool once = false;
  cl.options.add_options()
      ("url", po::value(&url), "the dashboard URL with its token (http://HOST:PORT/?token=T), instead of the profile's dashboard file")
      ("interval", po::value(&interval)->default_value(1), "seconds between refreshes")
      ("once", po::bool_switch(&once), "print the view once as text (--json: the API's JSON) and exit; no terminal needed");
  if (int rc = cl.Parse(argc, argv, Usage("top [options]",
          "A live view of the cluster in the terminal, refreshed in place: engines with their state and\n"
          "current task, tasks/s, queued and waiting tasks, recent failures. Reads the controller's\n"
          "dashboard API (the dashboard file next to the connection file, or --url).\n"
          "q or Ctrl-C quits.")); rc >= 0) {
    return rc;
  }
  if (!c.ssh.empty()) return Fail("top does not tunnel (--ssh): forward the dashboard's port with ssh -L and pass --url");
  if (!(interval >= 0.1 && interval <= 3600)) return Fail("--interval must be between 0.1 and 3600 seconds");

  std::filesystem::path file;
  std::string error;
  Endpoint at;
  if (!url.empty()) {
    if (!ParseUrl(url, &at, &error)) return Fail(error);
    if (at.token.empty()) return Fail("--url has no ?token=...: the dashboard refuses requests without it");
  } else {
    file = DashboardFile(c);
    if (!ReadDashboardFile(file, &at, &error)) return Fail(error);
  }
  // Errors at the start end the command (a typo, a stopped cluster); later they show in the
  // view, which keeps retrying.
  Poll first = Fetch(at);
  if (!first.problem.empty()) return Fail(first.problem);

  Shared shared;
  shared.view = {first.engines, first.stats, at.base, "", interval};
  if (once) {
    if (c.json) {
      std::cout << Json{{"engines", first.engines}, {"stats", first.stats}}.dump() << std::endl;
    } else {
      for (const TopLine& line : RenderTop(shared.view, 1 << 16)) std::cout << line.text << "\n";
    }
    return 0;
  }
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) return Fail("top needs a terminal (--once prints the view as text)");

  // Ours before initscr: ncurses then leaves SIGINT and SIGTERM alone, and the loop below
  // restores the terminal itself. No SA_RESTART, so a waiting getch returns at once.
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  // A controller that closes the connection mid-request is a failed poll, not the end.
  signal(SIGPIPE, SIG_IGN);

  std::thread poller([&shared, at, file, interval]() mutable {
    std::unique_lock lock(shared.mutex);
    while (!shared.wake.wait_for(lock, std::chrono::duration<double>(interval), [&] { return shared.stop; })) {
      lock.unlock();
      std::string problem;
      if (!file.empty() && !ReadDashboardFile(file, &at, &problem)) problem = "controller gone? " + problem;
      Poll p = problem.empty() ? Fetch(at) : Poll{nullptr, nullptr, problem};
      lock.lock();
      if (p.problem.empty()) {
        shared.view.engines = std::move(p.engines);
        shared.view.stats = std::move(p.stats);
        shared.view.source = at.base;
      }
      shared.view.problem = p.problem.empty() ? "" : p.problem + " - retrying";
      shared.changed = true;
    }
  });
  auto stop_poller = [&] {
    {
      std::lock_guard lock(shared.mutex);
      shared.stop = true;
    }
    shared.wake.notify_all();
    if (poller.joinable()) poller.join();
  };

  int rc = 0;
  try {
    Screen screen;
    while (true) {
      if (g_signal) {
        rc = g_signal == SIGINT ? 0 : 128 + g_signal;
        break;
      }
      int key = getch();
      if (key == 'q' || key == 'Q' || key == 3 /* Ctrl-C, should the terminal deliver it as a key */) break;
      std::vector<TopLine> lines;
      {
        std::lock_guard lock(shared.mutex);
        if (!shared.changed && key != KEY_RESIZE) continue;
        shared.changed = false;
        lines = RenderTop(shared.view, COLS);
      }
      screen.Draw(lines);
    }
  } catch (const std::exception& e) {
    stop_poller();
    return Fail(std::string("top: ") + e.what());
  }
  stop_poller();
  return rc;
}

}  // namespace ipp_cmd

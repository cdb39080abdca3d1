// ipp top against a real controller and two engines: plain runs for its errors, and the live view
// in a real terminal (tmux: send-keys to type, capture-pane to read the screen).
#include <unistd.h>

#include <filesystem>
#include <regex>

#include <gtest/gtest.h>

#include "tests/testutil/connected_cluster.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;

const std::string kIpp = std::string(IPP_BIN_DIR) + "/ipp";

class TopTest : public testutil::ConnectedClusterTest<2> {
 protected:
  void SetUp() override {
    ConnectedClusterTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(testutil::WaitFor([&] { return std::filesystem::exists(DashboardFile()); }, 10s))
        << "no " << DashboardFile() << "\n" << cluster_.Log("controller.log");
  }
  void TearDown() override {
    if (tmux_started_) Tmux({"kill-server"});
  }
  std::filesystem::path DashboardFile() const {
    return cluster_.profile_dir() / "security" / "ipcontroller-dashboard.json";
  }
  std::string Profile() const { return "--profile-dir=" + cluster_.profile_dir().string(); }

  // tmux on a server of our own (-L), so that nothing else the user runs is touched.
  int Tmux(std::vector<std::string> args, std::string* out = nullptr) {
    std::vector<std::string> argv = {"tmux", "-L", socket_, "-f", "/dev/null"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string ignored;
    return testutil::RunCommand(argv, out ? out : &ignored, 10s);
  }
  // A 120x40 terminal running a shell with a known prompt.
  bool StartTerminal() {
    if (Tmux({"new-session", "-d", "-x", "120", "-y", "40", "-s", "top",
              "env PS1='top-test$ ' TERM=xterm-256color /bin/sh -i"}) != 0) {
      return false;
    }
    tmux_started_ = true;
    return WaitForScreen([](const std::string& s) { return s.find("top-test$") != std::string::npos; }, 10s);
  }
  void Type(const std::string& text, bool enter = true) {
    std::vector<std::string> args = {"send-keys", "-t", "top", "-l", text};
    ASSERT_EQ(Tmux(args), 0);
    if (enter) {
      ASSERT_EQ(Tmux({"send-keys", "-t", "top", "Enter"}), 0);
    }
  }
  std::string Screen() {
    std::string out;
    Tmux({"capture-pane", "-p", "-t", "top"}, &out);
    return out;
  }
  bool AlternateScreen() {
    std::string out;
    Tmux({"display-message", "-p", "-t", "top", "#{alternate_on}"}, &out);
    return out.find('1') != std::string::npos;
  }
  bool WaitForScreen(const std::function<bool(const std::string&)>& condition, std::chrono::milliseconds timeout) {
    return testutil::WaitFor([&] { return condition(Screen()); }, timeout);
  }
  // The "done N" of the view's tasks line, or -1.
  static long Done(const std::string& screen) {
    std::smatch m;
    static const std::regex done("tasks: .* done ([0-9]+)");
    return std::regex_search(screen, m, done) ? std::stol(m[1]) : -1;
  }
  static bool ShowsTwoEngines(const std::string& screen) {
    static const std::regex row("\n +[01]  native ");
    return std::distance(std::sregex_iterator(screen.begin(), screen.end(), row), std::sregex_iterator()) == 2 &&
           screen.find("engines 2:") != std::string::npos;
  }
  bool HaveTmux() {
    std::string out;
    return testutil::RunCommand({"sh", "-c", "command -v tmux"}, &out) == 0;
  }

  std::string socket_ = "ipp-top-test-" + std::to_string(getpid());
  bool tmux_started_ = false;
};

TEST_F(TopTest, OncePrintsTheEnginesAndTheCounters) {
  // The dashboard publishes what the hub saw a moment later than the client sees it.
  std::string out;
  EXPECT_TRUE(testutil::WaitFor([&] {
    return testutil::RunCommand({kIpp, "top", Profile(), "--once"}, &out) == 0 && ShowsTwoEngines("\n" + out);
  }, 10s)) << out;
  EXPECT_GE(Done(out), 0) << out;
}

TEST_F(TopTest, NoDashboardFileIsAClearError) {
  testutil::TempDir empty;
  std::string out;
  EXPECT_EQ(testutil::RunCommand({kIpp, "top", "--profile-dir=" + empty.path().string()}, &out), 1);
  EXPECT_NE(out.find("no dashboard file"), std::string::npos) << out;
  EXPECT_EQ(testutil::RunCommand({kIpp, "top", "--url=http://127.0.0.1:1/"}, &out), 1);
  EXPECT_NE(out.find("no ?token="), std::string::npos) << out;
}

TEST_F(TopTest, RefusedTokenIsAClearError) {
  std::string text = testutil::ReadFile(DashboardFile());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("\"url\": *\"(http://[^/?\"]+)"))) << text;
  std::string out;
  EXPECT_EQ(testutil::RunCommand({kIpp, "top", "--url=" + m[1].str() + "/?token=0123456789abcdef", "--once"}, &out), 1);
  EXPECT_NE(out.find("refused the token"), std::string::npos) << out;
}

TEST_F(TopTest, LiveViewUpdatesAndQuitsRestoringTheTerminal) {
  if (!HaveTmux()) GTEST_SKIP() << "tmux is not installed: the live view needs a terminal to be tested in";
  ASSERT_TRUE(StartTerminal()) << Screen();
  Type(kIpp + " top " + Profile() + " --interval=0.2; echo quit-status=$?");
  ASSERT_TRUE(WaitForScreen(ShowsTwoEngines, 15s)) << Screen();
  EXPECT_TRUE(AlternateScreen());
  long before = Done(Screen());
  ASSERT_GE(before, 0) << Screen();

  // Work while the view is up: its done count grows without a key pressed.
  auto lb = client_->load_balanced_view();
  std::vector<AsyncResult> running;
  for (int i = 0; i < 40; ++i) running.push_back(lb.apply("ipp.sleep", 0.02));
  EXPECT_TRUE(WaitForScreen([&](const std::string& s) { return Done(s) > before; }, 15s)) << Screen();
  for (auto& r : running) r.wait(30s);
  EXPECT_TRUE(WaitForScreen([&](const std::string& s) { return Done(s) >= before + 40; }, 15s)) << Screen();

  Type("q", false);
  ASSERT_TRUE(WaitForScreen([](const std::string& s) { return s.find("quit-status=0") != std::string::npos; }, 10s))
      << Screen();
  EXPECT_FALSE(AlternateScreen());
  EXPECT_TRUE(WaitForScreen([](const std::string& s) {
    return s.find("top-test$", s.find("quit-status=0")) != std::string::npos;
  }, 5s)) << Screen();
}

TEST_F(TopTest, CtrlCQuitsAndALostControllerShowsInTheView) {
  if (!HaveTmux()) GTEST_SKIP() << "tmux is not installed: the live view needs a terminal to be tested in";
  ASSERT_TRUE(StartTerminal()) << Screen();
  Type(kIpp + " top " + Profile() + " --interval=0.2; echo quit-status=$?");
  ASSERT_TRUE(WaitForScreen(ShowsTwoEngines, 15s)) << Screen();

  // The controller goes away without cleaning up: the view says so and keeps the last data.
  cluster_.controller().signal(SIGKILL);
  ASSERT_TRUE(WaitForScreen([](const std::string& s) { return s.find("controller unreachable") != std::string::npos; }, 10s))
      << Screen();
  EXPECT_TRUE(ShowsTwoEngines(Screen())) << Screen();
  EXPECT_TRUE(AlternateScreen());

  ASSERT_EQ(Tmux({"send-keys", "-t", "top", "C-c"}), 0);
  ASSERT_TRUE(WaitForScreen([](const std::string& s) { return s.find("quit-status=0") != std::string::npos; }, 10s))
      << Screen();
  EXPECT_FALSE(AlternateScreen());
}

}  // namespace
}  // namespace ipp

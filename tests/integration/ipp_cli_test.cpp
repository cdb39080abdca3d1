// The ipp command against a real controller and engines.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class IppCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok());
    ASSERT_TRUE(testutil::WaitFor([&] {
      std::string out;
      return Ipp({"engines", "--json"}, &out) == 0 && json::parse(out, nullptr, false).size() == 2;
    }, 30s));
  }
  int Ipp(std::vector<std::string> args, std::string* out, const std::string& input = "") {
    // The profile right after the subcommand: anything after "--" belongs to px's command.
    std::vector<std::string> argv = {std::string(IPP_BIN_DIR) + "/ipp", args[0],
                                     "--profile-dir=" + cluster_.profile_dir().string()};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    if (!input.empty()) {
      auto file = dir_.path() / "stdin";
      std::ofstream(file) << input;
      return testutil::RunCommand({"/bin/sh", "-c", Quote(argv) + " < " + file.string()}, out);
    }
    return testutil::RunCommand(argv, out);
  }
  static std::string Quote(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) s += "'" + a + "' ";
    return s;
  }
  testutil::LocalCluster cluster_{2};
  testutil::TempDir dir_;
};

TEST_F(IppCliTest, EnginesListsIdsHostsAndPids) {
  std::string out;
  ASSERT_EQ(Ipp({"engines", "--json"}, &out), 0) << out;
  json rows = json::parse(out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["id"], 0);
  EXPECT_TRUE(rows[1]["pid"].is_number());
  EXPECT_EQ(rows[0]["kind"], "native");
  EXPECT_EQ(rows[1]["kind"], "native");
  ASSERT_EQ(Ipp({"engines"}, &out), 0);
  EXPECT_NE(out.find("host"), std::string::npos);
}

TEST_F(IppCliTest, PxPrintsEachEnginesOutput) {
  std::string out;
  ASSERT_EQ(Ipp({"px", "--", "echo", "hello-$$"}, &out), 0) << out;
  EXPECT_NE(out.find("[stdout:0] hello-"), std::string::npos) << out;
  EXPECT_NE(out.find("[stdout:1] hello-"), std::string::npos) << out;
  EXPECT_EQ(Ipp({"px", "--targets", "1", "--", "exit 4"}, &out), 1);
  EXPECT_NE(out.find("[error:1] CalledProcessError"), std::string::npos) << out;
}

// Back-to-back px runs, each a new client whose first request goes out right after it
// connected: each gets all its output (the client's IOPub subscription is in place before
// Connect returns), and none waits forever for an IOPub "idle" lost before it was subscribed.
// bench/px_stress is the long version.
TEST_F(IppCliTest, BackToBackPxRunsGetAllTheirOutputAndNeverHang) {
  // Sanitizer builds run fewer (scripts/test-sanitizers): every process there is slower.
  const int runs = std::getenv("IPP_PX_RUNS") ? std::atoi(std::getenv("IPP_PX_RUNS")) : 100;
  for (int i = 0; i < runs; ++i) {
    std::vector<std::string> argv = {std::string(IPP_BIN_DIR) + "/ipp", "px",
                                     "--profile-dir=" + cluster_.profile_dir().string(), "-t", "0", "--",
                                     "echo", "run-" + std::to_string(i)};
    std::string out;
    ASSERT_EQ(testutil::RunCommand(argv, &out, 15s), 0) << "run " << i << " failed or hung: " << out;
    ASSERT_EQ(out, "[stdout:0] run-" + std::to_string(i) + "\n") << "run " << i;
  }
}

TEST_F(IppCliTest, PxTimeoutBoundsTheWait) {
  std::string out;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Ipp({"px", "--timeout", "0.5", "-t", "1", "--", "sleep 20"}, &out), 1) << out;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_NE(out.find("[error:1] TimeoutError: still running after 0.5 s"), std::string::npos) << out;
}

TEST_F(IppCliTest, FunctionsListsEveryFunctionWithItsEngines) {
  std::string out;
  ASSERT_EQ(Ipp({"functions", "--json"}, &out), 0) << out;
  std::map<std::string, json> by_name;
  for (const json& f : json::parse(out)) by_name[f["name"]] = f;
  ASSERT_TRUE(by_name.count("pi.sample")) << out;
  EXPECT_EQ(by_name["pi.sample"]["engines"], json::array({0, 1}));
  EXPECT_NE(by_name["pi.sample"]["origin"].get<std::string>().find("libipp_example_pi.so"), std::string::npos);
  ASSERT_TRUE(by_name.count("ipp.echo"));
  EXPECT_EQ(by_name["ipp.echo"]["origin"], "builtin");
  EXPECT_FALSE(by_name["ipp.echo"]["doc"].get<std::string>().empty());
  ASSERT_EQ(Ipp({"functions", "-t", "1"}, &out), 0) << out;
  EXPECT_NE(out.find("pi.sample"), std::string::npos) << out;
  EXPECT_NE(out.find("libipp_example_pi.so"), std::string::npos) << out;
}

TEST_F(IppCliTest, LoadReportsWhatEachEngineAddedOrWhyItFailed) {
  std::string out;
  ASSERT_EQ(Ipp({"load", testutil::PiPlugin(), "-t", "1"}, &out), 0) << out;
  EXPECT_NE(out.find("[engine 1] added"), std::string::npos) << out;
  EXPECT_NE(out.find("pi.sample"), std::string::npos) << out;
  EXPECT_EQ(out.find("[engine 0]"), std::string::npos) << out;
  ASSERT_EQ(Ipp({"load", "--json", testutil::PiPlugin()}, &out), 0) << out;
  json rows = json::parse(out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["status"], "ok");
  EXPECT_TRUE(rows[1]["added"].is_array());
  auto missing = (dir_.path() / "libnothere.so").string();
  EXPECT_EQ(Ipp({"load", missing}, &out), 1);
  EXPECT_NE(out.find("[error:0] ImportError: plugin library " + missing + " does not exist"), std::string::npos) << out;
  EXPECT_NE(out.find("[error:1] ImportError"), std::string::npos) << out;
  auto not_a_plugin = dir_.path() / "libjunk.so";
  std::ofstream(not_a_plugin) << "junk";
  EXPECT_EQ(Ipp({"load", not_a_plugin.string(), "-t", "0"}, &out), 1);
  EXPECT_NE(out.find("[error:0] ImportError: cannot load plugin"), std::string::npos) << out;
  EXPECT_EQ(Ipp({"load"}, &out), 1);
  EXPECT_NE(out.find("load needs the path"), std::string::npos) << out;
}

TEST_F(IppCliTest, MapKeepsInputOrder) {
  std::string input;
  for (int i = 0; i < 30; ++i) input += std::to_string(i) + "\n";
  std::string out;
  ASSERT_EQ(Ipp({"map", "ipp.echo", "-", "--chunksize", "4"}, &out, input), 0) << out;
  EXPECT_EQ(out, input);
  EXPECT_EQ(Ipp({"map", "no.such.fn", "-"}, &out, "1\n"), 1);
  EXPECT_NE(out.find("NameError"), std::string::npos);
  EXPECT_EQ(Ipp({"map", "ipp.echo", "-"}, &out, "not json\n"), 1);
  EXPECT_NE(out.find("line 1 is not JSON"), std::string::npos);
}

TEST_F(IppCliTest, FarmRecordsResultsAndResumes) {
  auto commands = dir_.path() / "commands.txt";
  auto marker = dir_.path() / "marker";
  std::ofstream(commands) << "echo first\n"
                             "# a comment\n"
                             "test -e " + marker.string() + "\n"
                             "echo third >&2\n";
  std::string out;
  EXPECT_EQ(Ipp({"farm", commands.string(), "--retries", "1"}, &out), 1) << out;  // the test fails
  auto results = dir_.path() / "commands.txt.results.jsonl";
  std::ifstream in(results);
  std::map<int, json> by_line;
  for (std::string line; std::getline(in, line);) {
    json r = json::parse(line);
    by_line[r["line"]] = r;
  }
  ASSERT_EQ(by_line.size(), 3u);
  EXPECT_EQ(by_line[1]["exit_code"], 0);
  EXPECT_EQ(by_line[1]["stdout"], "first\n");
  EXPECT_EQ(by_line[3]["exit_code"], 1);
  EXPECT_EQ(by_line[4]["stderr"], "third\n");
  // Resume: only the failed command runs again, and now it succeeds.
  std::ofstream(marker) << "x";
  EXPECT_EQ(Ipp({"farm", commands.string()}, &out), 0) << out;
  EXPECT_NE(out.find("skipped 2"), std::string::npos) << out;
  size_t lines = 0;
  std::ifstream again(results);
  for (std::string line; std::getline(again, line);) ++lines;
  EXPECT_EQ(lines, 4u);
}

TEST_F(IppCliTest, FarmOfHundredsInterruptedAndResumed) {
  auto commands = dir_.path() / "many.txt";
  {
    std::ofstream out(commands);
    for (int i = 1; i <= 300; ++i) out << "sleep 0.01; echo job-" << i << "\n";
  }
  auto results = dir_.path() / "many.txt.results.jsonl";
  std::vector<std::string> argv = {std::string(IPP_BIN_DIR) + "/ipp", "farm",
                                   "--profile-dir=" + cluster_.profile_dir().string(), commands.string()};
  {
    testutil::Process farm(argv, dir_.path() / "farm1.log");
    // Interrupt it once some, but not all, commands are recorded.
    ASSERT_TRUE(testutil::WaitFor([&] {
      std::ifstream in(results);
      return std::count(std::istreambuf_iterator<char>(in), {}, '\n') >= 20;
    }, 60s));
    farm.signal(SIGINT);
    farm.wait(10s);
  }
  size_t first_run = 0;
  {
    std::ifstream in(results);
    for (std::string line; std::getline(in, line);) first_run += json::parse(line, nullptr, false).is_object();
  }
  ASSERT_GT(first_run, 0u);
  ASSERT_LT(first_run, 300u) << "the farm finished before it could be interrupted";
  std::string out;
  ASSERT_EQ(Ipp({"farm", commands.string()}, &out), 0) << out;
  std::map<int, int> successes;
  std::ifstream in(results);
  for (std::string line; std::getline(in, line);) {
    json r = json::parse(line, nullptr, false);
    if (!r.is_object()) continue;  // a line cut by the interrupt
    if (r["exit_code"] == 0) {
      ++successes[r["line"].get<int>()];
      EXPECT_EQ(r["stdout"], "job-" + std::to_string(r["line"].get<int>()) + "\n");
    }
  }
  EXPECT_EQ(successes.size(), 300u);  // every command succeeded
  for (auto& [line, n] : successes) EXPECT_EQ(n, 1) << "line " << line << " recorded twice";
}

TEST_F(IppCliTest, FarmTimeoutKillsSlowCommands) {
  auto commands = dir_.path() / "slow.txt";
  std::ofstream(commands) << "sleep 30\necho quick\n";
  std::string out;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Ipp({"farm", commands.string(), "--timeout", "0.5"}, &out), 1) << out;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  std::ifstream in(dir_.path() / "slow.txt.results.jsonl");
  std::map<int, json> by_line;
  for (std::string line; std::getline(in, line);) {
    json r = json::parse(line);
    by_line[r["line"]] = r;
  }
  ASSERT_EQ(by_line.size(), 2u);
  EXPECT_TRUE(by_line[1]["timed_out"].get<bool>());
  EXPECT_NE(by_line[1]["exit_code"], 0);
  EXPECT_EQ(by_line[2]["exit_code"], 0);
}

TEST_F(IppCliTest, StatusResultAbortAndShutdown) {
  std::string out;
  ASSERT_EQ(Ipp({"status", "--json"}, &out), 0) << out;
  EXPECT_EQ(json::parse(out)["status"], "ok");
  ASSERT_EQ(Ipp({"abort"}, &out), 0) << out;
  EXPECT_EQ(Ipp({"result", "no-such-id"}, &out), 1);
  ASSERT_EQ(Ipp({"shutdown"}, &out), 0) << out;
  EXPECT_GE(cluster_.controller().wait(10s), 0);
}

TEST(IppCliErrorsTest, ClearLinesAndExitCodes) {
  testutil::TempDir dir;
  std::string out;
  std::string ipp = std::string(IPP_BIN_DIR) + "/ipp";
  EXPECT_EQ(testutil::RunCommand({ipp, "engines", "--profile-dir=" + dir.path().string()}, &out), 1);
  EXPECT_NE(out.find("no cluster running"), std::string::npos) << out;
  EXPECT_EQ(testutil::RunCommand({ipp, "frobnicate"}, &out), 2);
  EXPECT_NE(out.find("unknown command"), std::string::npos);
  EXPECT_EQ(testutil::RunCommand({ipp, "--help"}, &out), 0);
  for (const char* cmd : {"engines", "px", "functions", "load", "map", "farm", "status", "result", "abort", "shutdown"}) {
    EXPECT_NE(out.find(cmd), std::string::npos) << cmd;
    std::string help;
    EXPECT_EQ(testutil::RunCommand({ipp, cmd, "--help"}, &help), 0) << cmd;
  }
}

}  // namespace
}  // namespace ipp

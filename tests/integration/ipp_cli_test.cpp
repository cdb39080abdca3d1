// The ipp command against a real controller and engines.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

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

// Listing the engines is not work: their done counts stay as they were.
TEST_F(IppCliTest, EnginesDoesNotCountItsOwnRequests) {
  std::string first, second;
  ASSERT_EQ(Ipp({"engines", "--json"}, &first), 0) << first;
  ASSERT_EQ(Ipp({"engines", "--json"}, &second), 0) << second;
  json a = json::parse(first), b = json::parse(second);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i]["done"], a[i]["done"]) << first << "\n" << second;
    EXPECT_TRUE(b[i]["host"].is_string() && b[i]["pid"].is_number()) << second;
  }
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

// --targets naming an engine that does not exist, or an empty range, is refused with what is
// wrong, and nothing runs anywhere.
TEST_F(IppCliTest, TargetsNameMissingEnginesAndEmptyRanges) {
  std::string out;
  auto marker = dir_.path() / "ran";
  EXPECT_EQ(Ipp({"px", "-t", "0,9", "--", "touch " + marker.string()}, &out), 1) << out;
  EXPECT_NE(out.find("no engine 9 (registered: 0-1)"), std::string::npos) << out;
  EXPECT_EQ(Ipp({"px", "-t", "3-1", "--", "touch " + marker.string()}, &out), 1) << out;
  EXPECT_NE(out.find("the range 3-1 is empty"), std::string::npos) << out;
  EXPECT_EQ(Ipp({"functions", "-t", "1x"}, &out), 1) << out;
  EXPECT_NE(out.find("bad --targets '1x'"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(marker));
  ASSERT_EQ(Ipp({"px", "-t", "1-1", "--", "echo one"}, &out), 0) << out;
  EXPECT_EQ(out, "[stdout:1] one\n");
}

TEST_F(IppCliTest, PxTimeoutBoundsTheWait) {
  std::string out;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Ipp({"px", "--timeout", "0.5", "-t", "1", "--", "sleep 20"}, &out), 1) << out;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_NE(out.find("[error:1] TimeoutError: still running after 0.5 s"), std::string::npos) << out;
}

// A px that stops waiting (--timeout, Ctrl-C) interrupts the command on the engines still
// running it: the next request to that engine runs at once instead of queueing behind it.
TEST_F(IppCliTest, PxTimeoutAndCtrlCInterruptTheRemoteCommand) {
  std::string out;
  ASSERT_EQ(Ipp({"px", "--timeout", "0.5", "-t", "1", "--", "sleep 30"}, &out), 1) << out;
  EXPECT_NE(out.find("[error:1] TimeoutError: still running after 0.5 s (sent SIGINT)"), std::string::npos) << out;
  ASSERT_EQ(Ipp({"px", "--timeout", "5", "-t", "1", "--", "echo next"}, &out), 0) << out;
  EXPECT_EQ(out, "[stdout:1] next\n");

  auto started = dir_.path() / "started";
  auto log = dir_.path() / "px.log";
  testutil::Process px({std::string(IPP_BIN_DIR) + "/ipp", "px", "--profile-dir=" + cluster_.profile_dir().string(),
                        "-t", "0", "--", "touch " + started.string() + "; sleep 30"},
                       log);
  ASSERT_TRUE(testutil::WaitFor([&] { return std::filesystem::exists(started); }, 10s)) << testutil::ReadFile(log);
  px.signal(SIGINT);
  EXPECT_EQ(px.wait(10s), 130) << testutil::ReadFile(log);
  EXPECT_NE(testutil::ReadFile(log).find("[error:0] KeyboardInterrupt: interrupted by Ctrl-C (sent SIGINT)"),
            std::string::npos)
      << testutil::ReadFile(log);
  ASSERT_EQ(Ipp({"px", "--timeout", "5", "-t", "0", "--", "echo next"}, &out), 0) << out;
  EXPECT_EQ(out, "[stdout:0] next\n");
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

// `ipp load` into all engines also gives the plugin to engines that register later (started, or
// restarted by ipcluster); into named engines, with --now-only, or when it loads nowhere, not.
TEST_F(IppCliTest, LoadIntoAllEnginesReachesEnginesThatRegisterLater) {
  // A second plugin: every engine of this cluster was started with the pi one.
  const std::string plugin = std::string(IPP_BIN_DIR) + "/../lib/libipp_test_greet.so";
  auto kept = [&] {
    std::string out;
    EXPECT_EQ(Ipp({"load", "--list", "--json"}, &out), 0) << out;
    return json::parse(out, nullptr, false);
  };
  auto engines_with = [&](const std::string& function) {
    std::string out;
    if (Ipp({"functions", "--json"}, &out) != 0) return json();
    for (const json& f : json::parse(out)) {
      if (f["name"] == function) return f["engines"];
    }
    return json::array();
  };
  std::string out;
  EXPECT_EQ(kept(), json::array());
  EXPECT_EQ(Ipp({"load", (dir_.path() / "libnothere.so").string()}, &out), 1) << out;
  EXPECT_EQ(kept(), json::array()) << "a path that loads nowhere is not kept";
  ASSERT_EQ(Ipp({"load", plugin, "-t", "1"}, &out), 0) << out;
  ASSERT_EQ(Ipp({"load", plugin, "--now-only"}, &out), 0) << out;
  EXPECT_EQ(kept(), json::array()) << "named engines or --now-only: those engines only";
  EXPECT_EQ(out.find("register later"), std::string::npos) << out;

  ASSERT_EQ(Ipp({"load", plugin}, &out), 0) << out;
  EXPECT_NE(out.find("engines that register later load it too"), std::string::npos) << out;
  const std::string absolute = std::filesystem::path(plugin).lexically_normal().string();
  EXPECT_EQ(kept(), json::array({absolute}));
  ASSERT_EQ(Ipp({"load", plugin}, &out), 0) << out;
  EXPECT_EQ(kept(), json::array({absolute})) << "kept once";

  cluster_.AddEngine();  // started with the pi plugin only
  EXPECT_TRUE(testutil::WaitFor([&] { return engines_with("test.greet") == json::array({0, 1, 2}); }, 30s))
      << engines_with("test.greet");
  EXPECT_EQ(engines_with("pi.sample"), json::array({0, 1, 2}));
  EXPECT_NE(cluster_.Log("engine-2.log").find("loaded 1 function(s) from " + absolute), std::string::npos)
      << cluster_.Log("engine-2.log");
  // The hub knows it too (what routing reads), not only the engine asked directly.
  EXPECT_TRUE(testutil::WaitFor([&] {
    if (Ipp({"engines", "--json"}, &out) != 0) return false;
    json rows = json::parse(out, nullptr, false);
    return rows.size() == 3 && rows[2]["functions"] == rows[0]["functions"];
  }, 10s)) << out;

  EXPECT_EQ(Ipp({"load", "--list", plugin}, &out), 1) << out;
  ASSERT_EQ(Ipp({"load", "--forget", plugin}, &out), 0) << out;
  EXPECT_EQ(kept(), json::array());
  EXPECT_EQ(Ipp({"load", "--forget", plugin}, &out), 1) << out;
  EXPECT_NE(out.find("no plugin " + absolute + " is kept"), std::string::npos) << out;
}

// A kept plugin that a new engine cannot load (its host lacks the file) is not fatal for that
// engine, but it is said where people look: the controller's log and ipp engines.
TEST_F(IppCliTest, AKeptPluginThatDoesNotLoadOnANewEngineIsShown) {
  const auto copy = dir_.path() / "libgreet_copy.so";
  std::filesystem::copy_file(std::string(IPP_BIN_DIR) + "/../lib/libipp_test_greet.so", copy);
  std::string out;
  ASSERT_EQ(Ipp({"load", copy.string()}, &out), 0) << out;
  std::filesystem::remove(copy);  // as on a host without it
  size_t index = cluster_.AddEngine();
  json row;
  ASSERT_TRUE(testutil::WaitFor([&] {
    if (Ipp({"engines", "--json"}, &out) != 0) return false;
    json rows = json::parse(out, nullptr, false);
    if (!rows.is_array() || rows.size() != 3) return false;
    row = rows[2];
    return row.contains("plugin_errors");
  }, 30s)) << out;
  ASSERT_TRUE(row["plugin_errors"].contains(copy.string())) << row;
  EXPECT_NE(row["plugin_errors"][copy.string()].get<std::string>().find("does not exist"), std::string::npos) << row;
  EXPECT_FALSE(json::parse(out)[0].contains("plugin_errors")) << out;
  ASSERT_EQ(Ipp({"engines"}, &out), 0) << out;
  EXPECT_NE(out.find("engine 2 could not load the cluster's plugin " + copy.string()), std::string::npos) << out;
  EXPECT_NE(cluster_.Log("controller.log").find("engine 2 on "), std::string::npos);
  EXPECT_NE(cluster_.Log("controller.log").find("the cluster's plugin " + copy.string() + " did not load"), std::string::npos)
      << cluster_.Log("controller.log");
  EXPECT_NE(cluster_.Log("engine-" + std::to_string(index) + ".log").find("cannot load the cluster's plugin"), std::string::npos);
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
  // A line that is not JSON is a failed item: the others are mapped.
  EXPECT_EQ(Ipp({"map", "ipp.echo", "-", "--json"}, &out, "1\nnot json\n3\n"), 1);
  std::vector<json> rows;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (json row = json::parse(line, nullptr, false); row.is_object()) rows.push_back(row);
  }
  ASSERT_EQ(rows.size(), 3u) << out;
  EXPECT_EQ(rows[0]["result"], 1);
  EXPECT_EQ(rows[1]["ok"], false);
  EXPECT_EQ(rows[1]["ename"], "ValueError");
  EXPECT_EQ(rows[1]["line"], 2);
  EXPECT_EQ(rows[2]["result"], 3);
  // Bytes that are not UTF-8 (a Latin-1 line) do not end the map.
  EXPECT_EQ(Ipp({"map", "ipp.echo", "-", "--json"}, &out, "\"caf\xe9\"\n4\n"), 1) << out;
  EXPECT_NE(out.find("\"ename\":\"ValueError\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"result\":4"), std::string::npos) << out;
}

// The input is mapped as it comes: a producer that writes its second line only once the first
// result is out finishes (reading the input whole first would wait for it for ever).
TEST_F(IppCliTest, MapSendsEachLineAsItComes) {
  auto result = dir_.path() / "out", saw = dir_.path() / "saw";
  std::string ipp = std::string(IPP_BIN_DIR) + "/ipp map ipp.echo - --profile-dir=" + cluster_.profile_dir().string();
  std::string producer = "echo 1; for i in $(seq 1200); do grep -q . " + result.string() + " && { echo saw > " +
                         saw.string() + "; break; }; sleep 0.05; done; echo 2";
  std::string out;
  ASSERT_EQ(testutil::RunCommand({"/bin/sh", "-c", "(" + producer + ") | " + ipp + " > " + result.string()}, &out), 0)
      << out;
  EXPECT_EQ(testutil::ReadFile(result), "1\n2\n");
  EXPECT_EQ(testutil::ReadFile(saw), "saw\n") << "the first result came only after the input ended";
}

// --timeout also stops a map whose input is still open: a producer that writes a line every
// 0.2 s for a minute (it ends at its first write after ipp map exits).
TEST_F(IppCliTest, MapTimeoutStopsWhileTheInputIsStillOpen) {
  std::string ipp = std::string(IPP_BIN_DIR) + "/ipp map ipp.echo - --timeout 2 --profile-dir=" + cluster_.profile_dir().string();
  std::string out;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(testutil::RunCommand({"/bin/sh", "-c", "for i in $(seq 300); do echo $i || exit; sleep 0.2; done | " + ipp}, &out), 1)
      << out;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  EXPECT_NE(out.find("TimeoutError: stopped after --timeout 2 s"), std::string::npos) << out;
  EXPECT_EQ(out.rfind("1\n2\n", 0), 0u) << "the lines read before the timeout were mapped, in order: " << out;
}

// A bad item costs only its own result: every good result is printed in order, every error
// with its input line, the C++ exception's class and no internal prefix; what the function
// printed is shown.
TEST_F(IppCliTest, MapKeepsGoingPastBadItems) {
  const std::string input = "[1,2,3]\n\"notarray\"\n[4]\n";
  for (const char* chunksize : {"1", "3"}) {
    std::string out;
    EXPECT_EQ(Ipp({"map", "demo.total", "-", "--chunksize", chunksize}, &out, input), 1) << out;
    size_t first = out.find("6.0\n"), error = out.find("ipp: line 2: [engine "), last = out.find("4.0\n");
    ASSERT_NE(first, std::string::npos) << out;
    ASSERT_NE(error, std::string::npos) << out;
    ASSERT_NE(last, std::string::npos) << out;
    EXPECT_LT(first, error) << out;
    EXPECT_LT(error, last) << out;
    EXPECT_NE(out.find("std::domain_error: demo.total wants an array of numbers, not \"notarray\""), std::string::npos) << out;
    EXPECT_EQ(out.find("ipp.map"), std::string::npos) << out;
    EXPECT_EQ(out.find("RuntimeError"), std::string::npos) << out;
    EXPECT_NE(out.find("summed 3 numbers"), std::string::npos) << out;
    EXPECT_NE(out.find("1 of 3 item(s) failed"), std::string::npos) << out;

    ASSERT_EQ(Ipp({"map", "demo.total", "-", "--json", "--chunksize", chunksize}, &out, input), 1) << out;
    std::vector<json> rows;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      json j = json::parse(line, nullptr, false);
      if (j.is_object()) rows.push_back(j);
    }
    ASSERT_EQ(rows.size(), 3u) << out;
    EXPECT_EQ(rows[0]["line"], 1);
    EXPECT_EQ(rows[0]["result"], 6.0);
    EXPECT_TRUE(rows[0]["ok"].get<bool>());
    EXPECT_EQ(rows[0]["stdout"].get<std::string>().find("summed 3 numbers"), 0u) << out;
    EXPECT_EQ(rows[1]["line"], 2);
    EXPECT_FALSE(rows[1]["ok"].get<bool>());
    EXPECT_EQ(rows[1]["ename"], "std::domain_error");
    EXPECT_EQ(rows[1]["evalue"], "demo.total wants an array of numbers, not \"notarray\"");
    EXPECT_EQ(rows[2]["result"], 4.0);
  }
}

TEST_F(IppCliTest, MapRefusesBadChunksizesAndUnknownFunctions) {
  std::string out;
  for (const char* bad : {"-1", "0"}) {
    EXPECT_EQ(Ipp({"map", "ipp.echo", "-", "--chunksize", bad}, &out, "1\n"), 1) << out;
    EXPECT_NE(out.find("--chunksize must be 1 or more"), std::string::npos) << out;
  }
  // No items: the name is still checked on the engines.
  auto empty = dir_.path() / "empty";
  std::ofstream(empty).flush();
  EXPECT_EQ(Ipp({"map", "unknown.fn", empty.string()}, &out), 1) << out;
  EXPECT_NE(out.find("no function 'unknown.fn' on the engines"), std::string::npos) << out;
  EXPECT_EQ(Ipp({"map", "ipp.echo", empty.string()}, &out), 0) << out;
  EXPECT_EQ(out, "");
}

// Ctrl-C on map: queued items are aborted, running ones interrupted; it exits 130 in bounded
// time and leaves nothing in the cluster.
TEST_F(IppCliTest, MapCtrlCAbortsQueuedAndInterruptsRunningItems) {
  auto input = dir_.path() / "slow.jsonl";
  {
    std::ofstream out(input);
    for (int i = 0; i < 6; ++i) out << R"({"seconds": 60})" << "\n";
  }
  testutil::Process map({std::string(IPP_BIN_DIR) + "/ipp", "map", "--profile-dir=" + cluster_.profile_dir().string(),
                         "ipp.sleep", input.string()},
                        dir_.path() / "map.log");
  std::string out;
  ASSERT_TRUE(testutil::WaitFor([&] {  // both engines busy, the rest queued in the scheduler
    if (Ipp({"status", "--json"}, &out) != 0) return false;
    json s = json::parse(out, nullptr, false);
    return s["0"]["tasks"] == 1 && s["1"]["tasks"] == 1 && s["unassigned"] == 4;
  }, 30s)) << out;
  auto start = std::chrono::steady_clock::now();
  map.signal(SIGINT);
  EXPECT_EQ(map.wait(20s), 130) << testutil::ReadFile(dir_.path() / "map.log");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 12s);
  EXPECT_NE(testutil::ReadFile(dir_.path() / "map.log").find("interrupted: 4 of 6 item(s) not done"), std::string::npos)
      << testutil::ReadFile(dir_.path() / "map.log");
  ASSERT_EQ(Ipp({"status", "--json"}, &out), 0) << out;
  json s = json::parse(out);
  EXPECT_EQ(s["unassigned"], 0) << out;
  EXPECT_EQ(s["0"]["tasks"], 0) << out;
  EXPECT_EQ(s["1"]["tasks"], 0) << out;
}

// --timeout bounds the whole map: what finished is printed, what runs is interrupted at once,
// what waits is aborted; it exits 1 saying so, and leaves nothing in the cluster.
TEST_F(IppCliTest, MapTimeoutStopsTheRestAndPrintsWhatFinished) {
  std::string out;
  for (const char* bad : {"-1", "inf", "nan"}) {
    EXPECT_EQ(Ipp({"map", "ipp.echo", "-", "--timeout", bad}, &out, "1\n"), 1) << out;
    EXPECT_NE(out.find("--timeout must be a number of seconds"), std::string::npos) << bad << ": " << out;
  }
  // Two quick items, then four of 60 s on two engines.
  std::string slow;
  for (int i = 0; i < 4; ++i) slow += R"({"seconds": 60})" "\n";
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Ipp({"map", "ipp.sleep", "-", "--timeout", "2"}, &out,
                "{\"seconds\": 0, \"result\": \"a\"}\n{\"seconds\": 0, \"result\": \"b\"}\n" + slow), 1) << out;
  // Not the 3 s Ctrl-C grace before the interrupt: the timeout interrupts at once.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s) << out;
  EXPECT_EQ(out.rfind("\"a\"\n\"b\"\n", 0), 0u) << out;  // what finished, in order, first
  EXPECT_NE(out.find("TimeoutError: "), std::string::npos) << out;
  EXPECT_NE(out.find("stopped after --timeout 2 s: "), std::string::npos) << out;
  EXPECT_NE(out.find("(stopped by --timeout)"), std::string::npos) << out;  // the running ones
  ASSERT_TRUE(testutil::WaitFor([&] {
    if (Ipp({"status", "--json"}, &out) != 0) return false;
    json s = json::parse(out, nullptr, false);
    return s["unassigned"] == 0 && s["0"]["tasks"] == 0 && s["1"]["tasks"] == 0 && s["0"]["queue"] == 0 &&
           s["1"]["queue"] == 0;
  }, 10s)) << out;
  // --json: one object per item, also for those that never ran.
  ASSERT_EQ(Ipp({"map", "ipp.sleep", "-", "--timeout", "1", "--json"}, &out, "0\n" + slow), 1) << out;
  std::map<int, json> by_line;
  std::istringstream rows(out);
  for (std::string row; std::getline(rows, row);) {
    json j = json::parse(row, nullptr, false);
    if (j.is_object()) by_line[j["line"]] = j;
  }
  ASSERT_EQ(by_line.size(), 5u) << out;
  EXPECT_EQ(by_line[1]["ok"], true) << out;
  EXPECT_EQ(by_line[5]["ename"], "TaskAborted") << out;  // the last: queued behind the two running
}

TEST_F(IppCliTest, MapPrintsEachResultAsItComesAndSaysWhatWorkNoEngineCanRunWaitsFor) {
  // The first item's result shows while the second still runs (in input order, not at the end).
  auto input = dir_.path() / "two.jsonl";
  std::ofstream(input) << "0.1\n60\n";
  auto log = dir_.path() / "stream.log";
  testutil::Process map({std::string(IPP_BIN_DIR) + "/ipp", "map", "--profile-dir=" + cluster_.profile_dir().string(),
                         "ipp.sleep", input.string()},
                        log);
  EXPECT_TRUE(testutil::WaitFor([&] { return testutil::ReadFile(log).find("null") != std::string::npos; }, 30s))
      << testutil::ReadFile(log);
  map.signal(SIGINT);
  EXPECT_EQ(map.wait(20s), 130) << testutil::ReadFile(log);

  // Work that needs a tag no engine has: the command says so instead of waiting silently.
  auto one = dir_.path() / "one.jsonl";
  std::ofstream(one) << "1\n";
  auto waiting_log = dir_.path() / "waiting.log";
  testutil::Process waiting({std::string(IPP_BIN_DIR) + "/ipp", "map", "--profile-dir=" + cluster_.profile_dir().string(),
                             "ipp.echo", "--requires", "tpu", one.string()},
                            waiting_log);
  EXPECT_TRUE(testutil::WaitFor([&] {
    return testutil::ReadFile(waiting_log).find("1 task(s) wait for an engine with function ipp.echo and tag tpu") !=
           std::string::npos;
  }, 30s)) << testutil::ReadFile(waiting_log);
  waiting.signal(SIGINT);
  EXPECT_EQ(waiting.wait(20s), 130) << testutil::ReadFile(waiting_log);
}

TEST_F(IppCliTest, MapRetriesTheTaskOfAnEngineThatDies) {
  std::string out;
  EXPECT_EQ(Ipp({"map", "ipp.echo", "-", "--retries", "-1"}, &out, "1\n"), 1) << out;
  EXPECT_NE(out.find("--retries must be 0 or more"), std::string::npos) << out;
  // Two long items, one per engine; one engine is killed: its item runs again on the other.
  auto input = dir_.path() / "two.jsonl";
  std::ofstream(input) << "2\n2\n";
  auto log = dir_.path() / "retries.log";
  testutil::Process map({std::string(IPP_BIN_DIR) + "/ipp", "map", "--profile-dir=" + cluster_.profile_dir().string(),
                         "ipp.sleep", input.string(), "--retries", "1"},
                        log);
  ASSERT_TRUE(testutil::WaitFor([&] {
    if (Ipp({"status", "--json"}, &out) != 0) return false;
    json s = json::parse(out, nullptr, false);
    return s["0"]["tasks"] == 1 && s["1"]["tasks"] == 1;
  }, 30s)) << out;
  cluster_.engines()[0]->signal(SIGKILL);
  EXPECT_EQ(map.wait(60s), 0) << testutil::ReadFile(log);
  EXPECT_EQ(testutil::ReadFile(log), "null\nnull\n");
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
  // Resume: only the failed command runs again, and now it succeeds; its new result replaces
  // the old one (one line per command).
  std::ofstream(marker) << "x";
  EXPECT_EQ(Ipp({"farm", commands.string()}, &out), 0) << out;
  EXPECT_NE(out.find("skipped 2"), std::string::npos) << out;
  size_t lines = 0;
  std::ifstream again(results);
  for (std::string line; std::getline(again, line);) {
    ++lines;
    EXPECT_EQ(json::parse(line)["exit_code"], 0) << line;
  }
  EXPECT_EQ(lines, 3u);
  ASSERT_EQ(Ipp({"farm", commands.string(), "--json"}, &out), 0) << out;
  json summary = json::parse(out);
  EXPECT_EQ(summary["commands"], 3);
  EXPECT_EQ(summary["skipped"], 3);
  EXPECT_EQ(summary["finished"], 0);
  EXPECT_EQ(summary["interrupted"], false);
}

// Ctrl-C stops the farm: what had not started is aborted (in the scheduler and on the
// engines), what ran is recorded; the rerun runs the rest. Each command appends to its own
// marker file: every command must have run exactly once in all. The whole farm takes ~10 s on
// the two engines, the interruption comes after ~1 s: under TSan a farm of 20 ms commands
// (2 s in all) once finished before the signal was handled.
TEST_F(IppCliTest, FarmInterruptedAndRerunRunsEachCommandOnce) {
  const int n = 200;
  auto commands = dir_.path() / "many.txt";
  auto marker = [&](int i) { return dir_.path() / ("ran-" + std::to_string(i)); };
  {
    std::ofstream out(commands);
    for (int i = 1; i <= n; ++i) out << "echo x >> " << marker(i).string() << "; sleep 0.1; echo job-" << i << "\n";
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
    EXPECT_EQ(farm.wait(20s), 130) << testutil::ReadFile(dir_.path() / "farm1.log");
  }
  EXPECT_NE(testutil::ReadFile(dir_.path() / "farm1.log").find("interrupted"), std::string::npos);
  auto count_lines = [](const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::count(std::istreambuf_iterator<char>(in), {}, '\n');
  };
  size_t first_run = static_cast<size_t>(count_lines(results));
  ASSERT_GT(first_run, 0u);
  ASSERT_LT(first_run, static_cast<size_t>(n)) << "the farm finished before it could be interrupted";
  // Nothing of the farm is left in the cluster.
  std::string out;
  ASSERT_EQ(Ipp({"status", "--json"}, &out), 0) << out;
  json status = json::parse(out);
  EXPECT_EQ(status["unassigned"], 0) << out;
  for (const char* id : {"0", "1"}) {
    EXPECT_EQ(status[id]["queue"], 0) << out;
    EXPECT_EQ(status[id]["tasks"], 0) << out;
  }
  // Only commands that ran are recorded: their side effects happened, the others' did not.
  size_t ran = 0;
  for (int i = 1; i <= n; ++i) ran += std::filesystem::exists(marker(i));
  EXPECT_EQ(ran, first_run);

  ASSERT_EQ(Ipp({"farm", commands.string()}, &out), 0) << out;
  std::map<int, int> records;
  std::ifstream in(results);
  for (std::string line; std::getline(in, line);) {
    json r = json::parse(line);
    ++records[r["line"].get<int>()];
    EXPECT_EQ(r["exit_code"], 0) << line;
    EXPECT_EQ(r["stdout"], "job-" + std::to_string(r["line"].get<int>()) + "\n");
  }
  EXPECT_EQ(records.size(), static_cast<size_t>(n));  // one line per command
  for (auto& [line, count] : records) EXPECT_EQ(count, 1) << "line " << line << " recorded twice";
  for (int i = 1; i <= n; ++i) EXPECT_EQ(count_lines(marker(i)), 1) << "command " << i << " ran other than once";
}

// Running commands that do not end within the grace period are interrupted (the farm ends in
// bounded time and records them as failed); a second Ctrl-C exits at once.
TEST_F(IppCliTest, FarmCtrlCInterruptsLongCommandsAndASecondExitsAtOnce) {
  auto commands = dir_.path() / "long.txt";
  auto path = [&](const std::string& name) { return (dir_.path() / name).string(); };
  std::ofstream(commands) << "touch " << path("started-1") << "; sleep 60\n"
                          << "touch " << path("started-2") << "; sleep 60\n"
                          << "touch " << path("queued-3") << "\n"
                          << "touch " << path("queued-4") << "\n";
  std::vector<std::string> argv = {std::string(IPP_BIN_DIR) + "/ipp", "farm",
                                   "--profile-dir=" + cluster_.profile_dir().string(), commands.string()};
  auto both_started = [&] {
    return testutil::WaitFor([&] {
      return std::filesystem::exists(path("started-1")) && std::filesystem::exists(path("started-2"));
    }, 30s);
  };
  {
    testutil::Process farm(argv, dir_.path() / "farm.log");
    ASSERT_TRUE(both_started());
    auto start = std::chrono::steady_clock::now();
    farm.signal(SIGINT);
    EXPECT_EQ(farm.wait(20s), 130) << testutil::ReadFile(dir_.path() / "farm.log");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 12s);
  }
  EXPECT_FALSE(std::filesystem::exists(path("queued-3")));
  EXPECT_FALSE(std::filesystem::exists(path("queued-4")));
  std::ifstream in(dir_.path() / "long.txt.results.jsonl");
  size_t recorded = 0;
  for (std::string line; std::getline(in, line); ++recorded) EXPECT_NE(json::parse(line)["exit_code"], 0) << line;
  EXPECT_EQ(recorded, 2u);
  std::string out;
  ASSERT_EQ(Ipp({"status", "--json"}, &out), 0) << out;
  EXPECT_EQ(json::parse(out)["unassigned"], 0) << out;

  // Again, with a second Ctrl-C once the first has aborted the queued commands: it does not
  // wait for the grace period.
  for (const char* name : {"started-1", "started-2"}) std::filesystem::remove(path(name));
  testutil::Process farm(argv, dir_.path() / "farm2.log");
  ASSERT_TRUE(both_started());
  farm.signal(SIGINT);
  ASSERT_TRUE(testutil::WaitFor([&] {
    return Ipp({"status", "--json"}, &out) == 0 && json::parse(out, nullptr, false).value("unassigned", -1) == 0;
  }, 10s));
  auto start = std::chrono::steady_clock::now();
  farm.signal(SIGINT);
  EXPECT_EQ(farm.wait(20s), 130);
  // Well under the 3 s a first Ctrl-C grants running commands, with room for a slow exit under TSan.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2500ms);
  EXPECT_EQ(testutil::ReadFile(dir_.path() / "farm2.log").find("interrupted:"), std::string::npos);  // no wind-down
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
  EXPECT_NE(out.find("aborted everything queued"), std::string::npos) << out;
  // An id the hub never saw is an error; a known one (a farm's finished command) is accepted.
  EXPECT_EQ(Ipp({"abort", "--json", "some-id"}, &out), 1) << out;
  EXPECT_NE(out.find("unknown message id(s): some-id"), std::string::npos) << out;
  auto commands = dir_.path() / "one.txt";
  std::ofstream(commands) << "true\n";
  ASSERT_EQ(Ipp({"farm", commands.string()}, &out), 0) << out;
  std::string known = json::parse(testutil::ReadFile(commands.string() + ".results.jsonl"))["msg_id"];
  ASSERT_EQ(Ipp({"abort", "--json", known}, &out), 0) << out;
  EXPECT_EQ(json::parse(out), json({{"msg_ids", {known}}, {"engines", {0, 1}}})) << out;
  EXPECT_EQ(Ipp({"result", "no-such-id"}, &out), 1);
  ASSERT_EQ(Ipp({"shutdown", "--json"}, &out), 0) << out;
  EXPECT_EQ(json::parse(out), json({{"engines", {0, 1}}, {"controller", true}})) << out;
  EXPECT_GE(cluster_.controller().wait(10s), 0);
}

TEST(IppCliErrorsTest, ClearLinesAndExitCodes) {
  testutil::TempDir dir;
  std::string out;
  std::string ipp = std::string(IPP_BIN_DIR) + "/ipp";
  EXPECT_EQ(testutil::RunCommand({ipp, "engines", "--profile-dir=" + dir.path().string()}, &out), 1);
  EXPECT_NE(out.find("no cluster running"), std::string::npos) << out;
  EXPECT_EQ(out.find("--cluster-id"), std::string::npos) << out;
  // A cluster with another id in the profile: the error names it.
  std::filesystem::create_directories(dir.path() / "security");
  std::ofstream(dir.path() / "security" / "ipcontroller-w2-client.json") << "{}";
  EXPECT_EQ(testutil::RunCommand({ipp, "engines", "--profile-dir=" + dir.path().string()}, &out), 1);
  EXPECT_NE(out.find("(this profile has a cluster with --cluster-id w2)"), std::string::npos) << out;
  auto missing = (dir.path() / "nope.json").string();
  EXPECT_EQ(testutil::RunCommand({ipp, "engines", "-f", missing}, &out), 1);
  EXPECT_EQ(out, "ipp: no connection file " + missing + " (--file)\n");
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

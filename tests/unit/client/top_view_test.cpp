// ipp top's layout: the dashboard API's JSON (in the shapes the controller serves) to lines.
#include "client/ipp_cmd/top_view.hpp"

#include <gtest/gtest.h>

namespace ipp_cmd {
namespace {

using nlohmann::json;

class TopViewTest : public ::testing::Test {
 protected:
  static json Engines() {
    return json::parse(R"json([
      {"id": 0, "uuid": "a", "kind": "native", "host": "node1", "pid": 11, "state": "busy", "death": null,
       "task": {"msg_id": "m1", "function": "pi.sample", "running_s": 1.25},
       "queue": 3, "done": 10, "failed": 1, "heartbeat_age_s": 0.4, "tags": [], "functions": 7},
      {"id": 1, "uuid": "b", "kind": "python", "host": null, "pid": null, "state": "dead",
       "death": "stopped answering heartbeats (3 missed)", "task": null,
       "queue": 0, "done": 4, "failed": 0, "heartbeat_age_s": 12.0, "tags": [], "functions": 0}
    ])json");
  }
  static json Stats() {
    return json::parse(R"json({"now": 100.0, "uptime_s": 100.0,
      "counters": {"submitted": 20, "done": 14, "failed": 1, "running": 1, "queued_lb": 5, "waiting_deps": 2},
      "rate_done_per_s": 2.5, "history": [],
      "failures": [{"t": 40.0, "engine": 0, "function": "pi.old", "ename": "KeyError", "evalue": "x", "traceback": []},
                   {"t": 90.0, "engine": 0, "function": "pi.sample", "ename": "ValueError", "evalue": "bad\nvalue", "traceback": []}],
      "functions": [], "clients": [], "controller": {"cpu_percent": 3.5, "rss_bytes": 12582912}})json");
  }
  static TopInput Input() { return {Engines(), Stats(), "http://127.0.0.1:8123", "", 1}; }
  // The first line that contains `needle`, or "".
  static std::string LineWith(const std::vector<TopLine>& lines, const std::string& needle, TopLine::Style* style = nullptr) {
    for (const TopLine& l : lines) {
      if (l.text.find(needle) != std::string::npos) {
        if (style) *style = l.style;
        return l.text;
      }
    }
    return "";
  }
  static size_t IndexOf(const std::vector<TopLine>& lines, const std::string& needle) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].text.find(needle) != std::string::npos) return i;
    }
    return lines.size();
  }
};

TEST_F(TopViewTest, SummaryCountsEnginesByStateAndShowsCounters) {
  auto lines = RenderTop(Input(), 200);
  EXPECT_NE(lines[0].text.find("http://127.0.0.1:8123"), std::string::npos);
  EXPECT_EQ(lines[0].style, TopLine::Style::kTitle);
  std::string summary = LineWith(lines, "engines 2:");
  EXPECT_NE(summary.find("1 busy, 0 idle, 1 dead, 0 gone"), std::string::npos) << summary;
  EXPECT_NE(summary.find("tasks/s 2.5"), std::string::npos) << summary;
  std::string tasks = LineWith(lines, "queued");
  EXPECT_NE(tasks.find("queued 5"), std::string::npos) << tasks;
  EXPECT_NE(tasks.find("waiting on deps 2"), std::string::npos) << tasks;
  EXPECT_NE(tasks.find("failed 1"), std::string::npos) << tasks;
  EXPECT_NE(tasks.find("done 14"), std::string::npos) << tasks;
  EXPECT_NE(LineWith(lines, "controller: cpu 3.5%").find("12.0 MiB"), std::string::npos);
}

TEST_F(TopViewTest, EngineRowsShowTaskAndHowLongAndDeadOnesDimmedWithHowTheyDied) {
  auto lines = RenderTop(Input(), 200);
  TopLine::Style style;
  std::string busy = LineWith(lines, "node1", &style);
  EXPECT_EQ(style, TopLine::Style::kNormal);
  for (const char* part : {"native", "busy", "pi.sample", "1.2s", "0.4s"}) {
    EXPECT_NE(busy.find(part), std::string::npos) << part << " in " << busy;
  }
  EXPECT_NE(busy.find(" 3 "), std::string::npos) << busy;  // queue
  EXPECT_NE(busy.find(" 10 "), std::string::npos) << busy;  // done
  std::string dead = LineWith(lines, "stopped answering heartbeats", &style);
  EXPECT_EQ(style, TopLine::Style::kDim);
  EXPECT_NE(dead.find("python"), std::string::npos) << dead;
  EXPECT_NE(dead.find("dead"), std::string::npos) << dead;
  EXPECT_LT(IndexOf(lines, "ID  KIND"), IndexOf(lines, "node1"));
}

TEST_F(TopViewTest, FailuresNewestFirstOnOneLineEach) {
  auto lines = RenderTop(Input(), 200);
  size_t heading = IndexOf(lines, "RECENT FAILURES");
  ASSERT_LT(heading, lines.size());
  ASSERT_LT(heading + 2, lines.size());
  EXPECT_NE(lines[heading + 1].text.find("ValueError: bad value"), std::string::npos) << lines[heading + 1].text;
  EXPECT_NE(lines[heading + 1].text.find("10s ago"), std::string::npos) << lines[heading + 1].text;
  EXPECT_NE(lines[heading + 2].text.find("KeyError: x"), std::string::npos) << lines[heading + 2].text;
  EXPECT_NE(lines[heading + 2].text.find("1m00s ago"), std::string::npos) << lines[heading + 2].text;
}

TEST_F(TopViewTest, WorkNoEngineCanRunIsAProblemLine) {
  TopInput in = Input();
  EXPECT_EQ(LineWith(RenderTop(in, 200), "no connected engine"), "");
  in.stats["waiting_for"] = json::parse(R"([{"reason": "a Python engine", "tasks": 3}])");
  TopLine::Style style;
  std::string line = LineWith(RenderTop(in, 200), "no connected engine", &style);
  EXPECT_NE(line.find("3 task(s) wait for a Python engine"), std::string::npos) << line;
  EXPECT_EQ(style, TopLine::Style::kProblem);
}

TEST_F(TopViewTest, ProblemShowsUnderTheTitleAndKeepsTheLastData) {
  TopInput in = Input();
  in.problem = "controller unreachable at http://127.0.0.1:8123: Connection";
  auto lines = RenderTop(in, 200);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[1].style, TopLine::Style::kProblem);
  EXPECT_NE(lines[1].text.find("controller unreachable"), std::string::npos);
  EXPECT_NE(LineWith(lines, "node1"), "");
}

TEST_F(TopViewTest, LinesAreCutToTheWidth) {
  for (const TopLine& l : RenderTop(Input(), 30)) EXPECT_LE(l.text.size(), 30u) << l.text;
}

TEST_F(TopViewTest, MissingOrMistypedFieldsShowAsDashesAndControlBytesAreMasked) {
  TopInput in{json::parse(R"([{"id": "x", "state": 5, "host": "evil\u001b[2J", "task": "no", "done": "many"}, 7])"),
              json::parse(R"({"counters": [], "failures": [3, {"t": "?"}], "controller": 1})"), "src", "", 1};
  std::vector<TopLine> lines;
  ASSERT_NO_THROW(lines = RenderTop(in, 200));
  EXPECT_NE(LineWith(lines, "evil?[2J"), "");
  for (const TopLine& l : lines) EXPECT_EQ(l.text.find('\x1b'), std::string::npos);
  EXPECT_NE(LineWith(lines, "queued -"), "");
  ASSERT_NO_THROW(RenderTop(TopInput{}, 80));
  EXPECT_NE(LineWith(RenderTop(TopInput{}, 80), "waiting for the first answer"), "");
}

}  // namespace
}  // namespace ipp_cmd

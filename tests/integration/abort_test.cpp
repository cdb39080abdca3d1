// Aborted requests never run, wherever they wait: in the load-balanced scheduler, queued on an
// engine, or not yet arrived. Each queued request would touch a marker file if it ran.
#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ipp/client.hpp"
#include "protocol/connection_file.hpp"
#include "protocol/session.hpp"
#include "tests/testutil/connected_cluster.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class AbortTest : public testutil::ConnectedClusterTest<1> {
 protected:
  // A command that occupies its engine until Release(): the requests after it must wait.
  std::string Blocker() const {
    return "touch " + (dir_.path() / "started").string() + "; while [ ! -e " + (dir_.path() / "go").string() +
           " ]; do sleep 0.02; done";
  }
  bool BlockerStarted() const {
    return testutil::WaitFor([&] { return fs::exists(dir_.path() / "started"); }, 30s);
  }
  void Release() const { std::ofstream(dir_.path() / "go") << "go"; }
  std::string Touch(int i) const { return "touch " + Marker(i).string(); }
  // Runs Blocker() with `submit`, then queues 8 Touch commands behind it (ids in ids_).
  AsyncResult QueueBehindBlocker(const std::function<AsyncResult(const std::string&)>& submit) {
    AsyncResult blocker = submit(Blocker());
    EXPECT_TRUE(BlockerStarted());
    for (int i = 0; i < 8; ++i) {
      queued_.push_back(submit(Touch(i)));
      ids_.push_back(queued_.back().msg_ids()[0]);
    }
    return blocker;
  }
  fs::path Marker(int i) const { return dir_.path() / ("ran-" + std::to_string(i)); }
  // Every queued request was answered "aborted" (to this client and in the hub's database),
  // and none ran: checked after a later request has run on the same engine.
  void ExpectAbortedAndNeverRun() { ExpectAbortedAndNeverRun(queued_, ids_); }
  void ExpectAbortedAndNeverRun(std::vector<AsyncResult>& queued, const std::vector<std::string>& ids) {
    for (auto& r : queued) {
      ASSERT_TRUE(r.wait(10s));
      EXPECT_EQ(r.info()[0].status, TaskStatus::kAborted);
      ASSERT_TRUE(r.info()[0].error.has_value());
      EXPECT_EQ(r.info()[0].error->ename(), "TaskAborted");
    }
    EXPECT_EQ(client_->load_balanced_view().shell("true").get(10s).size(), 1u);
    for (size_t i = 0; i < queued.size(); ++i) EXPECT_FALSE(fs::exists(Marker(static_cast<int>(i)))) << i;
    auto stored = client_->get_result(ids);
    ASSERT_TRUE(stored.wait(10s));
    for (const auto& t : stored.info()) EXPECT_EQ(t.status, TaskStatus::kAborted) << t.msg_id;
    auto status = client_->queue_status();
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(status->value("unassigned", -1), 0) << status->dump();
  }

  testutil::TempDir dir_;
  std::vector<AsyncResult> queued_;
  std::vector<std::string> ids_;
};

TEST_F(AbortTest, LoadBalancedTasksWaitingInTheSchedulerNeverRun) {
  auto lb = client_->load_balanced_view();
  AsyncResult blocker = QueueBehindBlocker([&](const std::string& command) { return lb.shell(command); });
  ASSERT_TRUE(client_->abort(ids_).ok());
  // Answered while the engine is still busy: the scheduler dropped them itself.
  for (auto& r : queued_) EXPECT_TRUE(r.wait(10s));
  Release();
  ASSERT_TRUE(blocker.wait(30s));
  EXPECT_EQ(blocker.info()[0].status, TaskStatus::kOk);
  ExpectAbortedAndNeverRun();
}

TEST_F(AbortTest, RetriesDoNotRunAnAbortedTask) {
  TaskOptions options;
  options.retries = 3;
  auto lb = client_->load_balanced_view(options);
  AsyncResult blocker = lb.shell(Blocker());
  ASSERT_TRUE(BlockerStarted());
  std::vector<AsyncResult> queued = {lb.shell(Touch(0))};
  std::vector<std::string> ids = {queued[0].msg_ids()[0]};
  ASSERT_TRUE(client_->abort(ids).ok());
  Release();
  ASSERT_TRUE(blocker.wait(30s));
  ExpectAbortedAndNeverRun(queued, ids);
}

TEST_F(AbortTest, IppAbortWithoutIdsAbortsEverythingQueued) {
  auto lb = client_->load_balanced_view();
  AsyncResult blocker = QueueBehindBlocker([&](const std::string& command) { return lb.shell(command); });
  // An abort without ids applies to what is queued when it arrives: the submissions, sent by the
  // client's I/O thread, must be in the scheduler before the other process's abort overtakes
  // them (it did under TSan).
  ASSERT_TRUE(testutil::WaitFor([&] {
    auto s = client_->queue_status();
    return s.ok() && s->value("unassigned", 0) >= static_cast<int>(queued_.size());
  }, 10s)) << client_->queue_status()->dump();
  // Another process, as a user would: it knows none of the ids.
  std::string out;
  ASSERT_EQ(testutil::RunCommand({std::string(IPP_BIN_DIR) + "/ipp", "abort",
                                  "--profile-dir=" + cluster_.profile_dir().string(), "--json"},
                                 &out),
            0)
      << out;
  EXPECT_EQ(nlohmann::json::parse(out, nullptr, false).value("engines", nlohmann::json()).size(), 1u) << out;
  for (auto& r : queued_) EXPECT_TRUE(r.wait(10s));
  Release();
  ASSERT_TRUE(blocker.wait(30s));
  EXPECT_EQ(blocker.info()[0].status, TaskStatus::kOk);  // running work is not aborted
  ExpectAbortedAndNeverRun();
}

// A farm whose queued commands were aborted by another client is not done: it exits
// non-zero, its --json counts them, and the aborted commands are not recorded as results.
TEST_F(AbortTest, FarmWithAbortedCommandsExitsNonZero) {
  fs::path commands = dir_.path() / "commands.txt";
  {
    std::ofstream out(commands);
    out << Blocker() << "\n";
    for (int i = 0; i < 3; ++i) out << Touch(i) << "\n";
  }
  fs::path log = dir_.path() / "farm.log";
  testutil::Process farm({std::string(IPP_BIN_DIR) + "/ipp", "farm", commands.string(),
                          "--profile-dir=" + cluster_.profile_dir().string(), "--json"},
                         log);
  ASSERT_TRUE(BlockerStarted()) << testutil::ReadFile(log);
  ASSERT_TRUE(testutil::WaitFor([&] {
    auto status = client_->queue_status();
    return status.ok() && status->value("unassigned", 0) == 3;
  }, 10s));
  std::string out;
  ASSERT_EQ(testutil::RunCommand({std::string(IPP_BIN_DIR) + "/ipp", "abort",
                                  "--profile-dir=" + cluster_.profile_dir().string()},
                                 &out),
            0)
      << out;
  Release();
  EXPECT_EQ(farm.wait(30s), 1) << testutil::ReadFile(log);
  std::string output = testutil::ReadFile(log);
  nlohmann::json summary = nlohmann::json::parse(output.substr(output.find('{')), nullptr, false);
  EXPECT_EQ(summary.value("aborted", -1), 3) << output;
  EXPECT_EQ(summary.value("failures", -1), 0) << output;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(fs::exists(Marker(i))) << i;
}

// ipp abort with an id the hub never saw says so and fails, instead of reporting success.
TEST_F(AbortTest, IppAbortNamesUnknownIds) {
  std::string known = client_->load_balanced_view().shell("true").msg_ids()[0];
  std::string out;
  EXPECT_EQ(testutil::RunCommand({std::string(IPP_BIN_DIR) + "/ipp", "abort",
                                  "--profile-dir=" + cluster_.profile_dir().string(), known, "no-such-id"},
                                 &out),
            1)
      << out;
  EXPECT_NE(out.find("unknown message id(s): no-such-id"), std::string::npos) << out;
  EXPECT_EQ(out.find("aborted"), std::string::npos) << out;
  ASSERT_EQ(testutil::RunCommand({std::string(IPP_BIN_DIR) + "/ipp", "abort",
                                  "--profile-dir=" + cluster_.profile_dir().string(), known},
                                 &out),
            0)
      << out;
}

TEST_F(AbortTest, DirectRequestsQueuedOnTheEngineNeverRun) {
  auto engine = client_->direct_view({0});
  AsyncResult blocker =
      QueueBehindBlocker([&](const std::string& command) { return engine.apply("ipp.shell", {{"command", command}}); });
  ASSERT_TRUE(client_->abort(ids_, {0}).ok());
  Release();
  ASSERT_TRUE(blocker.wait(30s));
  EXPECT_EQ(blocker.info()[0].status, TaskStatus::kOk);
  ExpectAbortedAndNeverRun();
}

// The abort comes first; the request it names arrives later, on the task and on the MUX
// channel. Raw messages: only they can name a msg_id before it is sent.
TEST_F(AbortTest, RequestsArrivingAfterTheirAbortNeverRun) {
  auto info = client_->direct_view({0}).apply("ipp.info").get_one(10s);
  std::string engine = info["uuid"].get<std::string>();
  auto connection = protocol::ReadConnectionFile(cluster_.client_file());
  ASSERT_TRUE(connection.ok());
  protocol::Session session(connection->key, "username", connection->signature_scheme);
  zmq::context_t context;
  auto dealer = [&](const char* channel) {
    zmq::socket_t s(context, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.connect(*connection->url(channel));
    return s;
  };
  zmq::socket_t control = dealer("control"), task = dealer("task"), mux = dealer("mux");
  auto receive = [&](zmq::socket_t& s) -> protocol::Message {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(10000)) == 0) return {};
    auto frames = protocol::TryRecv(s);
    if (!frames) return {};
    auto m = session.parse(std::move(*frames));
    return m.ok() ? std::move(*m) : protocol::Message{};
  };
  auto send = [&](zmq::socket_t& s, protocol::Message m, const std::string& to) {
    if (!to.empty()) m.identities.emplace_back(to.data(), to.size());
    protocol::Send(s, session.serialize(std::move(m)));
  };

  send(control, session.make("abort_request", {{"msg_ids", {"early-task", "early-direct"}}}), engine);
  protocol::Message ack = receive(control);
  ASSERT_EQ(ack.content.value("status", ""), "ok") << ack.content.dump();
  auto request = [&](const std::string& msg_id, int marker) {
    protocol::Message m = session.make(
        "apply_request", {{"ipp_call", {{"function", "ipp.shell"}, {"args", {{"command", Touch(marker)}}}}}});
    m.header["msg_id"] = msg_id;
    return m;
  };
  send(task, request("early-task", 0), "");
  protocol::Message task_reply = receive(task);
  EXPECT_EQ(task_reply.content.value("status", ""), "aborted") << task_reply.content.dump();
  EXPECT_EQ(task_reply.parent_header.value("msg_id", ""), "early-task");
  send(mux, request("early-direct", 1), engine);
  protocol::Message direct_reply = receive(mux);
  EXPECT_EQ(direct_reply.content.value("status", ""), "aborted") << direct_reply.content.dump();
  EXPECT_EQ(client_->load_balanced_view().shell("true").get(10s).size(), 1u);
  EXPECT_FALSE(fs::exists(Marker(0)));
  EXPECT_FALSE(fs::exists(Marker(1)));
}

}  // namespace
}  // namespace ipp

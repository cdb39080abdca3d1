#include "controller/hub.hpp"

#include <functional>

#include <gtest/gtest.h>

#include "protocol/errors.hpp"
#include "protocol/monitor.hpp"
#include "tests/testutil/fake_peer.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp::controller {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testutil::FakePeer;

constexpr const char* kKey = "hub-test-key";

// The hub on the test's thread over inproc, with a client (queries + notifications), a fake
// scheduler pushing to the monitor channel, and engines that register and echo heartbeats.
class HubTest : public ::testing::Test {
 protected:
  struct FakeEngine {
    FakeEngine(zmq::context_t& context, const std::string& uuid)
        : uuid(uuid), query(context, zmq::socket_type::dealer, kKey, uuid),  // as engines do
          ping(context, zmq::socket_type::sub, kKey), pong(context, zmq::socket_type::dealer, kKey, uuid) {}
    std::string uuid;
    FakePeer query, ping, pong;
    bool beating = true;
  };

  void SetUp() override {
    HubOptions& options = options_;
    options.query_url = "inproc://hub-query";
    options.notification_url = "inproc://hub-notifications";
    options.internal_notification_url = "inproc://hub-internal-notifications";
    options.monitor_url = "inproc://hub-monitor";
    options.resubmit_url = "inproc://hub-resubmit";
    options.ping_url = "inproc://hub-ping";
    options.pong_url = "inproc://hub-pong";
    options.ping_period = 50ms;
    options.max_heartbeat_misses = 2;
    options.engine_state_file = state_dir_.path() / "engines.json";
    hub_ = std::make_unique<Hub>(context_, kKey, options, std::make_unique<MemoryTaskStore>(),
                                 MakeLogger("test.hub"), [this] { shut_down_ = true; });
    Hub::BoundPorts ports = hub_->Bind();
    EXPECT_EQ(ports.registration, 0);  // no ports over inproc
    hub_->Attach(reactor_);
    client_.socket().connect("inproc://hub-query");
    notifications_.socket().connect("inproc://hub-notifications");
    internal_.socket().connect("inproc://hub-internal-notifications");
    monitor_.connect("inproc://hub-monitor");
  }

  // Turns the hub's reactor, the engines echoing each beat, until `done` or 5 s.
  bool Until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      reactor_.run_once(1ms);
      for (auto& e : engines_) {
        while (auto beat = protocol::TryRecv(e->ping.socket())) {
          if (e->beating) protocol::Send(e->pong.socket(), std::move(*beat));
        }
      }
    }
    return done();
  }
  // The next message `peer` gets, the engines beating meanwhile.
  std::optional<protocol::Message> Next(FakePeer& peer) {
    std::optional<protocol::Frames> frames;
    if (!Until([&] { return (frames = protocol::TryRecv(peer.socket())).has_value(); })) return std::nullopt;
    Result<protocol::Message> m = peer.session().parse(std::move(*frames));
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok()) return std::nullopt;
    return std::move(m).value();
  }
  // The next notification of `msg_type` (others are skipped), to clients or (`internal`) to our
  // schedulers.
  std::optional<protocol::Message> NextNotification(const std::string& msg_type, bool internal = false) {
    while (auto m = Next(internal ? internal_ : notifications_)) {
      if (m->msg_type() == msg_type) return m;
    }
    return std::nullopt;
  }
  json Query(const std::string& msg_type, json content) {
    std::string id = client_.Send(msg_type, std::move(content))["msg_id"];
    std::optional<protocol::Message> reply = Next(client_);
    EXPECT_TRUE(reply.has_value()) << "no answer to " << msg_type;
    if (!reply) return json();
    EXPECT_EQ(reply->parent_id(), id);
    return reply->content;
  }
  // Registers an engine and waits until the hub announces it; returns its id.
  // `ipp`: what it says it can run (our engines' registration field); null: nothing, as a stock
  // Python engine.
  FakeEngine& Register(const std::string& uuid, const json& ipp = nullptr) {
    engines_.push_back(std::make_unique<FakeEngine>(context_, uuid));
    FakeEngine& e = *engines_.back();
    e.query.socket().connect("inproc://hub-query");
    e.ping.socket().connect("inproc://hub-ping");
    e.pong.socket().connect("inproc://hub-pong");
    json content = {{"uuid", uuid}};
    if (!ipp.is_null()) content["ipp"] = ipp;
    e.query.Send("registration_request", content);
    std::optional<protocol::Message> reply = Next(e.query);
    EXPECT_TRUE(reply.has_value());
    if (reply) {
      EXPECT_EQ(reply->content.value("status", ""), "ok") << reply->content.dump();
      EXPECT_EQ(reply->content.value("ipp_hub", false), true) << reply->content.dump();
    }
    return e;
  }
  // A second hub's options, as after a controller restart with --restore: it reads this one's
  // engine state file, on endpoints of its own.
  HubOptions RestoredOptions() const {
    HubOptions options = options_;
    for (std::string* url : {&options.query_url, &options.notification_url, &options.internal_notification_url,
                             &options.monitor_url, &options.ping_url, &options.pong_url}) {
      *url += "-restored";
    }
    options.restore = true;
    return options;
  }
  // What a scheduler reports on the monitor channel: [topic, routing ids..., <msg>].
  void Report(std::string_view topic, std::vector<std::string> ids, protocol::Message message) {
    for (const auto& id : ids) message.identities.emplace_back(id.data(), id.size());
    protocol::Frames frames = scheduler_.serialize(std::move(message));
    frames.insert(frames.begin(), zmq::message_t(topic.data(), topic.size()));
    protocol::Send(monitor_, std::move(frames));
  }

  testutil::TempDir state_dir_;
  HubOptions options_;
  zmq::context_t context_;
  Reactor reactor_{MakeLogger("test.reactor")};
  bool shut_down_ = false;
  std::unique_ptr<Hub> hub_;
  FakePeer client_{context_, zmq::socket_type::dealer, kKey};
  FakePeer notifications_{context_, zmq::socket_type::sub, kKey};
  FakePeer internal_{context_, zmq::socket_type::sub, kKey};  // as our task scheduler
  zmq::socket_t monitor_{context_, zmq::socket_type::push};
  protocol::Session scheduler_{kKey};
  std::vector<std::unique_ptr<FakeEngine>> engines_;
};

TEST_F(HubTest, RegistersAnEngineOnItsFirstHeartbeatAndListsIt) {
  Register("engine-a");
  std::optional<protocol::Message> note = NextNotification("registration_notification");
  ASSERT_TRUE(note.has_value());
  EXPECT_EQ(note->content["uuid"], "engine-a");
  int id = note->content["id"];
  json connection = Query("connection_request", json::object());
  EXPECT_EQ(connection["engines"], (json{{std::to_string(id), "engine-a"}}));
  EXPECT_EQ(hub_->engine_uuids(), std::vector<std::string>{"engine-a"});
}

TEST_F(HubTest, RefusesAUuidAlreadyInUse) {
  FakeEngine& first = Register("engine-a");
  first.query.Send("registration_request", {{"uuid", "engine-a"}});
  std::optional<protocol::Message> reply = Next(first.query);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->content.value("status", ""), "error");
  EXPECT_EQ(reply->content.value("ename", ""), "KeyError");
}

const json kGpuEngine = {{"kind", "native"},
                         {"functions", {"ipp.info", "pi.sample"}},
                         {"tags", {"gpu"}},
                         {"resources", {{"gpus", 2}}}};

TEST_F(HubTest, KeepsAndAnnouncesWhatEachEngineCanRun) {
  Register("native-a", kGpuEngine);
  Register("python-b");
  std::map<std::string, json> announced, internal;
  for (int n = 0; n < 2; ++n) {
    std::optional<protocol::Message> note = NextNotification("registration_notification");
    ASSERT_TRUE(note.has_value());
    announced[note->content["uuid"]] = note->content;
    note = NextNotification("registration_notification", /*internal=*/true);
    ASSERT_TRUE(note.has_value());
    internal[note->content["uuid"]] = note->content;
  }
  EXPECT_EQ(announced["native-a"]["ipp"], kGpuEngine) << announced["native-a"].dump();
  EXPECT_EQ(internal["native-a"]["ipp"], kGpuEngine) << internal["native-a"].dump();
  EXPECT_FALSE(announced["python-b"].contains("ipp")) << announced["python-b"].dump();
  EXPECT_FALSE(internal["python-b"].contains("ipp")) << internal["python-b"].dump();

  std::string native_id = std::to_string(announced["native-a"]["id"].get<int>());
  std::string python_id = std::to_string(announced["python-b"]["id"].get<int>());
  for (bool verbose : {false, true}) {
    json queue = Query("queue_request", {{"targets", nullptr}, {"verbose", verbose}});
    EXPECT_EQ(queue[native_id]["kind"], "native") << queue.dump();
    EXPECT_EQ(queue[native_id]["functions"], 2) << queue.dump();
    EXPECT_EQ(queue[native_id]["tags"], json({"gpu"})) << queue.dump();
    EXPECT_EQ(queue[native_id]["resources"], json({{"gpus", 2}})) << queue.dump();
    EXPECT_EQ(queue[python_id]["kind"], "python") << queue.dump();
    EXPECT_EQ(queue[python_id]["functions"], 0) << queue.dump();
    EXPECT_EQ(queue[python_id]["tags"], json::array()) << queue.dump();
    EXPECT_EQ(queue[python_id]["resources"], json::object()) << queue.dump();
  }

  std::map<std::string, protocol::Capabilities> kept;
  for (auto& [uuid, c] : hub_->engine_capabilities()) kept[uuid] = c;
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept["native-a"].ToJson(), kGpuEngine);
  EXPECT_EQ(kept["python-b"].kind, protocol::EngineKind::kPython);
}

TEST_F(HubTest, RefusesAMalformedCapabilitiesFieldAndKeepsServing) {
  FakePeer engine(context_, zmq::socket_type::dealer, kKey, "bad-engine");
  engine.socket().connect("inproc://hub-query");
  engine.Send("registration_request", {{"uuid", "bad-engine"}, {"ipp", {{"kind", "fortran"}}}});
  std::optional<protocol::Message> reply = Next(engine);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->content.value("status", ""), "error") << reply->content.dump();
  EXPECT_EQ(reply->content.value("ename", ""), "ValueError");
  EXPECT_NE(reply->content.value("evalue", "").find("malformed \"ipp\""), std::string::npos) << reply->content.dump();
  EXPECT_TRUE(hub_->engine_uuids().empty());
  Register("good-engine", kGpuEngine);
  EXPECT_TRUE(NextNotification("registration_notification").has_value());
}

TEST_F(HubTest, PublishesAnEnginesUpdateToTheSchedulersOnly) {
  FakeEngine& engine = Register("native-a", kGpuEngine);
  std::optional<protocol::Message> registered = NextNotification("registration_notification", true);
  ASSERT_TRUE(registered.has_value());
  int id = registered->content["id"];
  json more = kGpuEngine;
  more["functions"].push_back("stats.mean");
  engine.query.Send("ipp_engine_update", {{"id", id}, {"ipp", more}});
  std::optional<protocol::Message> reply = Next(engine.query);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->msg_type(), "ipp_engine_update_reply");
  EXPECT_EQ(reply->content.value("status", ""), "ok") << reply->content.dump();
  std::optional<protocol::Message> update = NextNotification("ipp_engine_update", true);
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->content, json({{"id", id}, {"uuid", "native-a"}, {"ipp", more}}));
  EXPECT_EQ(Query("queue_request", {{"targets", nullptr}})[std::to_string(id)]["functions"], 3);

  // Refused, the hub serving on: an unknown engine, a malformed field, another engine's socket.
  auto refused = [&](FakePeer& from, const json& content) {
    from.Send("ipp_engine_update", content);
    std::optional<protocol::Message> r = Next(from);
    return r && r->content.value("status", "") == "error";
  };
  EXPECT_TRUE(refused(engine.query, {{"id", id + 100}, {"ipp", more}}));
  EXPECT_TRUE(refused(engine.query, {{"id", id}, {"ipp", {{"kind", "native"}, {"functions", "ipp.info"}}}}));
  FakeEngine& other = Register("python-b");
  EXPECT_TRUE(refused(other.query, {{"id", id}, {"ipp", kGpuEngine}}));
  EXPECT_EQ(Query("queue_request", {{"targets", nullptr}})[std::to_string(id)]["functions"], 3);

  // Clients never saw the update: the next thing they get after the first registration is the
  // second one.
  ASSERT_TRUE(NextNotification("registration_notification").has_value());
  std::optional<protocol::Message> next = Next(notifications_);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->msg_type(), "registration_notification");
  EXPECT_EQ(next->content["uuid"], "python-b");
}

TEST_F(HubTest, RestoredEnginesKeepWhatTheyCanRun) {
  FakeEngine& engine = Register("native-a", kGpuEngine);
  std::optional<protocol::Message> registered = NextNotification("registration_notification");
  ASSERT_TRUE(registered.has_value());
  int id = registered->content["id"];
  json more = kGpuEngine;
  more["functions"].push_back("stats.mean");
  engine.query.Send("ipp_engine_update", {{"id", id}, {"ipp", more}});
  ASSERT_TRUE(Next(engine.query).has_value());
  Register("python-b");
  ASSERT_TRUE(NextNotification("registration_notification").has_value());

  // A second hub, as after a controller restart with --restore, reading the first one's file.
  HubOptions options = RestoredOptions();
  Reactor reactor(MakeLogger("test.reactor2"));
  Hub restored(context_, kKey, options, std::make_unique<MemoryTaskStore>(), MakeLogger("test.hub2"), [] {});
  restored.Bind();
  restored.Attach(reactor);
  std::map<std::string, protocol::Capabilities> kept;
  for (auto& [uuid, c] : restored.engine_capabilities()) kept[uuid] = c;
  EXPECT_EQ(kept["native-a"].ToJson(), more);
  EXPECT_EQ(kept["python-b"].kind, protocol::EngineKind::kPython);
  // Its notifications to a new subscriber carry them.
  FakePeer subscriber(context_, zmq::socket_type::sub, kKey);
  subscriber.socket().connect(options.internal_notification_url);
  std::map<std::string, json> announced;
  while (announced.size() < 2) {
    std::optional<protocol::Message> note = subscriber.Next(reactor);
    ASSERT_TRUE(note.has_value());
    announced[note->content["uuid"]] = note->content;
  }
  EXPECT_EQ(announced["native-a"]["ipp"], more);
  EXPECT_FALSE(announced["python-b"].contains("ipp"));
}

// `ipp load` into all engines: the hub keeps the plugin's path (absolute, once) and names its
// plugins in every registration reply from then on, also after a restore.
TEST_F(HubTest, KeepsPluginsForEnginesThatRegisterLaterAcrossARestore) {
  EXPECT_EQ(Query("ipp_plugins_request", json::object()), json({{"status", "ok"}, {"plugins", json::array()}}));
  json refused = Query("ipp_plugins_request", {{"add", "lib/relative.so"}});
  EXPECT_EQ(refused.value("ename", ""), "ValueError") << refused.dump();
  EXPECT_EQ(Query("ipp_plugins_request", {{"add", 3}}).value("ename", ""), "ValueError");
  Query("ipp_plugins_request", {{"add", "/opt/a.so"}});
  Query("ipp_plugins_request", {{"add", "/opt/b.so"}});
  json kept = Query("ipp_plugins_request", {{"add", "/opt/a.so"}});
  EXPECT_EQ(kept["plugins"], json({"/opt/a.so", "/opt/b.so"})) << kept.dump();

  // A native engine registered before an add did not get it at registration: the reply says so.
  Register("native-early", kGpuEngine);
  ASSERT_TRUE(NextNotification("registration_notification").has_value());
  Register("python-early");
  ASSERT_TRUE(NextNotification("registration_notification").has_value());
  json added = Query("ipp_plugins_request", {{"add", "/opt/c.so"}});
  EXPECT_EQ(added["registered_before"], json::array({0})) << added.dump();
  json removed = Query("ipp_plugins_request", {{"remove", "/opt/c.so"}});
  EXPECT_EQ(removed["removed"], true) << removed.dump();
  EXPECT_EQ(Query("ipp_plugins_request", {{"remove", "/opt/c.so"}})["removed"], false);
  EXPECT_EQ(Query("ipp_plugins_request", {{"remove", "c.so"}}).value("ename", ""), "ValueError");

  FakePeer engine(context_, zmq::socket_type::dealer, kKey, "late-engine");
  engine.socket().connect("inproc://hub-query");
  engine.Send("registration_request", {{"uuid", "late-engine"}});
  std::optional<protocol::Message> reply = Next(engine);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->content["ipp_plugins"], json({"/opt/a.so", "/opt/b.so"})) << reply->content.dump();

  HubOptions options = RestoredOptions();
  Reactor reactor(MakeLogger("test.reactor2"));
  Hub restored(context_, kKey, options, std::make_unique<MemoryTaskStore>(), MakeLogger("test.hub2"), [] {});
  restored.Bind();
  restored.Attach(reactor);
  FakePeer client(context_, zmq::socket_type::dealer, kKey);
  client.socket().connect(options.query_url);
  client.Send("ipp_plugins_request", json::object());
  std::optional<protocol::Message> listed = client.Next(reactor);
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ(listed->content["plugins"], json({"/opt/a.so", "/opt/b.so"})) << listed->content.dump();
}

TEST_F(HubTest, UnregistersAnEngineThatStopsAnsweringHeartbeats) {
  FakeEngine& engine = Register("engine-a");
  ASSERT_TRUE(NextNotification("registration_notification").has_value());
  engine.beating = false;
  std::optional<protocol::Message> note = NextNotification("unregistration_notification");
  ASSERT_TRUE(note.has_value());
  EXPECT_EQ(note->content["uuid"], "engine-a");
  EXPECT_TRUE(hub_->engine_uuids().empty());
}

TEST_F(HubTest, AnEngineWhoseProcessEndedIsDroppedAtOnceWithItsCause) {
  Register("engine-b");  // queue_status answers only while some engine is registered
  ASSERT_TRUE(NextNotification("registration_notification").has_value());
  Register("engine-a", {{"kind", "native"}, {"functions", json::array()}, {"hostname", "node1"}, {"pid", 4321}});
  std::optional<protocol::Message> registered = NextNotification("registration_notification");
  ASSERT_TRUE(registered.has_value());
  int id = registered->content["id"];
  // Another host's pid 4321 is not it.
  json other = Query("ipp_engine_exit_request", {{"hostname", "node2"}, {"pid", 4321}, {"how", "exited with status 1"}});
  EXPECT_EQ(other, json({{"status", "ok"}, {"engine_id", nullptr}}));
  EXPECT_EQ(hub_->engine_uuids().size(), 2u);
  json reply = Query("ipp_engine_exit_request", {{"hostname", "node1"}, {"pid", 4321},
                                                 {"how", "killed (SIGKILL; possibly out of memory)"},
                                                 {"log_tail", "allocating 64 GiB\n"}});
  EXPECT_EQ(reply, json({{"status", "ok"}, {"engine_id", id}}));
  std::optional<protocol::Message> note = NextNotification("unregistration_notification");
  ASSERT_TRUE(note.has_value());
  EXPECT_EQ(note->content["reason"], "its process killed (SIGKILL; possibly out of memory)");
  EXPECT_EQ(hub_->engine_uuids(), std::vector<std::string>{"engine-b"});
  json dead = Query("queue_request", {{"targets", nullptr}})["dead"][std::to_string(id)];
  EXPECT_EQ(dead["how"], "killed (SIGKILL; possibly out of memory)");
  EXPECT_EQ(dead["log_tail"], "allocating 64 GiB\n");
  EXPECT_EQ(dead["hostname"], "node1");
  EXPECT_EQ(dead["pid"], 4321);
  // Bad input: an error, and the hub keeps serving.
  json bad = Query("ipp_engine_exit_request", {{"hostname", "node1"}, {"pid", "x"}, {"how", "?"}});
  EXPECT_EQ(bad["status"], "error");
  EXPECT_EQ(Query("queue_request", {{"targets", nullptr}})["status"], "ok");
}

TEST_F(HubTest, ACauseToldAfterTheHeartbeatsStoppedReplacesThatReason) {
  Register("engine-b");
  ASSERT_TRUE(NextNotification("registration_notification").has_value());
  FakeEngine& engine = Register("engine-a", {{"kind", "native"}, {"functions", json::array()}, {"hostname", "node1"}, {"pid", 7}});
  std::optional<protocol::Message> registered = NextNotification("registration_notification");
  ASSERT_TRUE(registered.has_value());
  int id = registered->content["id"];
  engine.beating = false;
  ASSERT_TRUE(NextNotification("unregistration_notification").has_value());
  json dead = Query("queue_request", {{"targets", nullptr}});
  EXPECT_NE(dead["dead"][std::to_string(id)]["how"].get<std::string>().find("heartbeats"), std::string::npos) << dead.dump();
  json reply = Query("ipp_engine_exit_request", {{"hostname", "node1"}, {"pid", 7}, {"how", "exited with status 3"}});
  EXPECT_EQ(reply["engine_id"], id);
  dead = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(dead["dead"][std::to_string(id)]["how"], "exited with status 3");
}

TEST_F(HubTest, UnregistersAnEngineThatAsksToLeave) {
  FakeEngine& engine = Register("engine-a");
  std::optional<protocol::Message> registered = NextNotification("registration_notification");
  ASSERT_TRUE(registered.has_value());
  engine.query.Send("unregistration_request", {{"id", registered->content["id"]}});
  std::optional<protocol::Message> note = NextNotification("unregistration_notification");
  ASSERT_TRUE(note.has_value());
  EXPECT_EQ(note->content["uuid"], "engine-a");
}

TEST_F(HubTest, TracksATaskThroughTheMonitorChannel) {
  Register("engine-a");
  std::optional<protocol::Message> registered = NextNotification("registration_notification");
  ASSERT_TRUE(registered.has_value());
  std::string engine_id = std::to_string(registered->content["id"].get<int>());
  protocol::Session client("hub-test-key");
  protocol::Message request = client.make("apply_request");
  std::string msg_id = request.msg_id();
  json request_header = request.header;

  Report("intask", {"client-1"}, std::move(request));
  json queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue["unassigned"], 1) << queue.dump();

  protocol::Frames track;
  for (std::string_view part : {std::string_view("tracktask"), std::string_view(msg_id), std::string_view("engine-a")}) {
    track.emplace_back(part.data(), part.size());
  }
  protocol::Send(monitor_, std::move(track));
  queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue["unassigned"], 0) << queue.dump();
  EXPECT_EQ(queue[engine_id]["tasks"], 1) << queue.dump();
  json pending = Query("result_request", {{"msg_ids", {msg_id}}});
  EXPECT_EQ(pending["pending"], json::array({msg_id})) << pending.dump();

  protocol::Message reply = scheduler_.make("apply_reply", {{"status", "ok"}}, request_header,
                                            {{"status", "ok"}, {"engine", "engine-a"}});
  Report("outtask", {"engine-a", "client-1"}, std::move(reply));
  queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue[engine_id]["tasks"], 0) << queue.dump();
  EXPECT_EQ(queue[engine_id]["completed"], 1) << queue.dump();
  json done = Query("result_request", {{"msg_ids", {msg_id}}});
  EXPECT_EQ(done["completed"], json::array({msg_id})) << done.dump();
}

TEST_F(HubTest, ATaskGivenBackByItsEngineIsUnassignedUntilItsNextDestination) {
  Register("engine-a");
  Register("engine-b");
  std::map<std::string, std::string> ids;  // uuid -> engine id
  for (int n = 0; n < 2; ++n) {
    std::optional<protocol::Message> note = NextNotification("registration_notification");
    ASSERT_TRUE(note.has_value());
    ids[note->content["uuid"]] = std::to_string(note->content["id"].get<int>());
  }
  const std::string id_a = ids["engine-a"], id_b = ids["engine-b"];
  protocol::Session client("hub-test-key");
  protocol::Message request = client.make("apply_request");
  std::string msg_id = request.msg_id();
  Report("intask", {"client-1"}, std::move(request));
  protocol::Send(monitor_, protocol::monitor::TaskDestination(msg_id, "engine-a"));
  json queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue[id_a]["tasks"], 1) << queue.dump();
  // Work stealing: the scheduler took it back, and it waits there for an engine.
  protocol::Send(monitor_, protocol::monitor::TaskDestination(msg_id, ""));
  queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue["unassigned"], 1) << queue.dump();
  EXPECT_EQ(queue[id_a]["tasks"], 0) << queue.dump();
  protocol::Send(monitor_, protocol::monitor::TaskDestination(msg_id, "engine-b"));
  queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue["unassigned"], 0) << queue.dump();
  EXPECT_EQ(queue[id_b]["tasks"], 1) << queue.dump();
}

TEST_F(HubTest, CountsTasksWaitingForAnEngineByReasonUntilTheyStopWaiting) {
  Register("engine-a");
  protocol::Session client("hub-test-key");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    protocol::Message request = client.make("apply_request");
    ids.push_back(request.msg_id());
    Report("intask", {"client-1"}, std::move(request));
  }
  auto report = [&](std::string_view topic, const std::string& msg_id, std::string_view text) {
    protocol::Send(monitor_, topic == "waiting" ? protocol::monitor::TaskWaiting(msg_id, text)
                                                : protocol::monitor::TaskDestination(msg_id, text));
  };
  json queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_FALSE(queue.contains("waiting")) << queue.dump();  // none: no key, as the stock hub
  const std::string pi = "an engine with function pi.sample", gpu = "a Python engine with tag gpu";
  report("waiting", ids[0], pi);
  report("waiting", ids[1], pi);
  report("waiting", ids[2], pi);
  report("waiting", ids[3], gpu);
  report("waiting", ids[3], gpu);  // said twice: counted once
  queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue["waiting"], (json{{pi, 3}, {gpu, 1}})) << queue.dump();
  // It stops: an engine that can run it came (""), it got an engine, or it got a reply.
  report("waiting", ids[0], "");
  report("tracktask", ids[1], "engine-a");
  protocol::Message reply = scheduler_.make("apply_reply", protocol::ErrorContent("TaskTimeout", "too late"),
                                            {{"msg_id", ids[3]}}, {{"status", "error"}, {"engine", ""}});
  Report("outtask", {"", "client-1"}, std::move(reply));
  queue = Query("queue_request", {{"targets", nullptr}});
  EXPECT_EQ(queue["waiting"], (json{{pi, 1}})) << queue.dump();
}

TEST_F(HubTest, DropsForgedQueriesAndAnswersUnknownTypesWithAnError) {
  FakePeer stranger(context_, zmq::socket_type::dealer, "wrong-key");
  stranger.socket().connect("inproc://hub-query");
  stranger.Send("connection_request");
  json error = Query("bogus_request", json::object());
  EXPECT_EQ(error.value("ename", ""), "KeyError");
  EXPECT_FALSE(protocol::TryRecv(stranger.socket()).has_value());
  EXPECT_EQ(Query("result_request", {{"msg_ids", {"nobody"}}}).value("ename", ""), "KeyError");
}

TEST_F(HubTest, ShutsDownOnRequest) {
  json reply = Query("shutdown_request", json::object());
  EXPECT_EQ(reply.value("status", ""), "ok");
  EXPECT_TRUE(Until([&] { return shut_down_; }));
}

}  // namespace
}  // namespace ipp::controller

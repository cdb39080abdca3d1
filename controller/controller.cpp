#include "controller/controller.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "common/reactor.hpp"
#include "controller/engine_gateway.hpp"
#include "controller/hub.hpp"
#include "controller/sqlite_task_store.hpp"
#include "protocol/curve.hpp"
#include "protocol/gateway.hpp"
#include "schedulers/broadcast.hpp"
#include "schedulers/relay.hpp"
#include "schedulers/task_scheduler.hpp"

namespace ipp::controller {

namespace fs = std::filesystem;
namespace gw = protocol::gateway;
using nlohmann::json;

namespace {
constexpr const char* kMonitorUrl = "inproc://ipp-monitor";
constexpr const char* kNotificationUrl = "inproc://ipp-notification";
constexpr const char* kTaskUrl = "inproc://ipp-task";
constexpr const char* kAbortUrl = "inproc://ipp-task-aborts";
constexpr const char* kControlUrl = "inproc://ipp-control";  // the task scheduler's work stealing
constexpr int kListenBacklog = 4096;

// Each engine costs the controller a descriptor per connection: the soft limit (often 1,024)
// is raised to the hard limit, as servers commonly do; the hard limit is the administrator's
// to raise (`ulimit -Hn`, systemd's LimitNOFILE), not ours, even when running as root.
void RaiseFdLimit(const Logger& log) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  rlim_t before = limit.rlim_cur;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = before;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return;
  long room = (static_cast<long>(limit.rlim_cur) - Hub::kFdReserve) / Hub::kFdsPerEngine;
  log->info("file descriptors: {}{}: room for at most about {} engines ({} descriptors each)",
            Hub::FdLimitText(limit.rlim_cur, limit.rlim_max),
            before != limit.rlim_cur ? ", raised from " + std::to_string(before) : std::string(), std::max(room, 0L),
            Hub::kFdsPerEngine);
}

}  // namespace

struct Controller::Parts {
  std::unique_ptr<Hub> hub;
  std::unique_ptr<schedulers::RouterRelay> mux, control;
  std::unique_ptr<schedulers::IopubRelay> iopub;
  std::unique_ptr<schedulers::BroadcastScheduler> broadcast;
  std::unique_ptr<schedulers::TaskScheduler> task;
  std::unique_ptr<EngineGateway> gateway;  // null: --engine-gateway never
  std::unique_ptr<Reactor> hub_reactor, relay_reactor, task_reactor, gateway_reactor;
};

Controller::Controller(ControllerOptions options)
    : options_(std::move(options)),
      profile_(protocol::ProfileDir::Resolve(options_.profile, options_.profile_dir)),
      log_(MakeLogger("controller")) {
  if (options_.location.empty()) options_.location = HostName();
}

Controller::~Controller() {
  stop_.raise();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  dashboard_server_.reset();
  parts_.reset();
  ipc_dir_.reset();
}

std::string Controller::LocalInterface() const { return ipc_dir_ ? ipc_dir_->interface() : std::string(); }

int Controller::BindPort(zmq::socket_t& socket, int port) const {
  socket.bind(Interface() + ":" + (port ? std::to_string(port) : std::string("*")));
  int bound = BoundPort(socket);
  if (ipc_dir_) socket.bind(protocol::ChannelUrl(ipc_dir_->interface(), bound));
  return bound;
}

Status Controller::SetUpCurve() {
  if (!options_.enable_curve) return Status::OK();
  if (!zmq_has("curve")) {
    return Status::Unavailable("CURVE was asked for, but this libzmq was built without it");
  }
  const char* secret = std::getenv("IPP_CURVE_SECRETKEY");
  const char* pub = std::getenv("IPP_CURVE_PUBLICKEY");
  if (secret && *secret && pub && *pub) {
    curve_secret_ = secret;
    curve_public_ = pub;
    if (curve_secret_.size() != 40 || curve_public_.size() != 40) {
      return Status::InvalidArgument("IPP_CURVE_SECRETKEY/IPP_CURVE_PUBLICKEY must be 40-character Z85 keys");
    }
  } else {
    Result<protocol::CurveKeyPair> keys = protocol::NewCurveKeyPair();
    if (!keys.ok()) return keys.status();
    curve_public_ = keys->public_key;
    curve_secret_ = keys->secret_key;
  }
  log_->info("CURVE encryption enabled (server public key {})", curve_public_);
  return Status::OK();
}

void Controller::Secure(zmq::socket_t& socket) const {
  // Thousands of engines starting at once connect faster than one I/O thread accepts: with
  // libzmq's default backlog of 100 the kernel drops their SYNs and they retry with growing
  // back-off, past their registration timeout. The kernel caps it at net.core.somaxconn.
  socket.set(zmq::sockopt::backlog, kListenBacklog);
  if (options_.max_message_size > 0) socket.set(zmq::sockopt::maxmsgsize, options_.max_message_size);
  if (curve_secret_.empty()) return;
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, curve_secret_);
}

Status Controller::Start() {
  if (Status s = profile_.Ensure(); !s.ok()) return s;
  if (options_.restore) options_.reuse = true;
  if (const char* env = std::getenv("IPP_ENABLE_CURVE"); env && std::string(env) == "1") {
    options_.enable_curve = true;
  }
  if (Status s = SetUpCurve(); !s.ok()) return s;
  RaiseFdLimit(log_);
  try {
    return Build();
  } catch (const zmq::error_t& e) {
    return Status::Unavailable(std::string("cannot bind the controller's sockets on ") + options_.ip +
                               ": " + e.what() + " (is another controller using these ports?)");
  }
}

// Ports: reuse the previous run's files when asked, else consume the pool in ipyparallel's
// order (registration, engine channels, client channels), else pick free ports (0). Reusing
// also takes the previous key.
Result<Controller::Ports> Controller::ChoosePorts() {
  fs::path client_file = profile_.security_dir() / protocol::ConnectionFileName("client", options_.cluster_id);
  fs::path engine_file = profile_.security_dir() / protocol::ConnectionFileName("engine", options_.cluster_id);
  Ports ports;
  if (options_.reuse && fs::exists(client_file) && fs::exists(engine_file)) {
    Result<protocol::ConnectionInfo> c = protocol::ReadConnectionFile(client_file);
    Result<protocol::ConnectionInfo> e = protocol::ReadConnectionFile(engine_file);
    if (!c.ok()) return c.status();
    if (!e.ok()) return e.status();
    for (const auto& [file, scheme] : {std::pair{client_file, c->signature_scheme}, std::pair{engine_file, e->signature_scheme}}) {
      if (scheme != "hmac-sha256") {
        return Status::InvalidArgument("cannot reuse " + file.string() + ": it names signature_scheme '" + scheme +
                                       "', and this controller signs with hmac-sha256 only");
      }
    }
    key_ = c->key;
    for (const char* ch : {"registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong"}) {
      ports.engine[ch] = e->port(ch).ok() ? *e->port(ch) : 0;
    }
    ports.engine["broadcast"] = e->port("broadcast", 0).ok() ? *e->port("broadcast", 0) : 0;
    ports.engine[gw::kPortKey] = e->port(gw::kPortKey).ok() ? *e->port(gw::kPortKey) : 0;
    reused_local_ = e->local_interface;
    for (const char* ch : {"control", "mux", "task", "iopub", "notification", "broadcast"}) {
      ports.client[ch] = c->port(ch).ok() ? *c->port(ch) : 0;
    }
    log_->info("reusing connection files in {}", profile_.security_dir().string());
    return ports;
  }
  size_t next = 0;
  auto take = [&]() { return next < options_.ports.size() ? options_.ports[next++] : 0; };
  ports.engine["registration"] = options_.registration_port ? options_.registration_port : take();
  for (const char* ch : {"control", "mux", "task", "iopub", "hb_ping", "hb_pong", "broadcast"}) {
    ports.engine[ch] = take();
  }
  for (const char* ch : {"control", "mux", "task", "iopub", "notification", "broadcast"}) {
    ports.client[ch] = take();
  }
  if (!options_.ports.empty() && next >= options_.ports.size() && options_.gateway != GatewayUse::kNever) {
    log_->warn("--ports has no port left for the engine gateway, which listens on a free port instead "
               "(give one more, or --engine-gateway never)");
  }
  ports.engine[gw::kPortKey] = take();  // ours: after ipyparallel's
  return ports;
}

void Controller::MakeSchedulers(Parts& parts) {
  parts.hub_reactor = std::make_unique<Reactor>(MakeLogger("hub"));
  parts.relay_reactor = std::make_unique<Reactor>(MakeLogger("sched.relay"));
  parts.task_reactor = std::make_unique<Reactor>(MakeLogger("sched.task"));
  // How long a message may wait for an engine that is (re)connecting its sockets.
  auto patience = std::max<std::chrono::milliseconds>(std::chrono::seconds(2), options_.ping * (options_.max_heartbeat_misses + 1));
  parts.mux = std::make_unique<schedulers::RouterRelay>(context_, key_, protocol::monitor::Topic::kMuxRequest,
                                                        protocol::monitor::Topic::kMuxReply, patience,
                                                        MakeLogger("sched.mux"), schedulers::RequestChannel::kMux);
  parts.control = std::make_unique<schedulers::RouterRelay>(context_, key_, std::nullopt, std::nullopt, patience,
                                                            MakeLogger("sched.control"));
  parts.iopub = std::make_unique<schedulers::IopubRelay>(context_, key_, options_.iopub_backlog, MakeLogger("sched.iopub"));
  parts.broadcast = std::make_unique<schedulers::BroadcastScheduler>(context_, key_, patience, MakeLogger("sched.broadcast"));
  schedulers::TaskSchedulerOptions task_options;
  task_options.scheme = options_.scheme;
  task_options.hwm = options_.hwm;
  task_options.remembered_tasks = options_.remembered_tasks;
  task_options.stranded_grace = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(5000), options_.ping);
  task_options.delivery_patience = patience;
  parts.task = std::make_unique<schedulers::TaskScheduler>(context_, key_, task_options, MakeLogger("sched.task"));
  if (options_.gateway != GatewayUse::kNever) {
    parts.gateway_reactor = std::make_unique<Reactor>(MakeLogger("gateway"));
    parts.gateway = std::make_unique<EngineGateway>(context_, patience, MakeLogger("gateway"));
  }
}

Controller::Channels Controller::BindSchedulers(Parts& parts, Ports& ports) {
  for (zmq::socket_t* socket : {&parts.control->engine_socket(), &parts.mux->engine_socket(),
                                &parts.task->engine_socket(), &parts.iopub->engine_socket(),
                                &parts.broadcast->engine_socket(), &parts.control->client_socket(),
                                &parts.mux->client_socket(), &parts.task->client_socket(),
                                &parts.iopub->client_socket(), &parts.broadcast->client_socket()}) {
    Secure(*socket);
  }
  Channels channels;
  json& engine = channels.engine;
  json& client = channels.client;
  engine["control"] = BindPort(parts.control->engine_socket(), ports.engine["control"]);
  engine["mux"] = BindPort(parts.mux->engine_socket(), ports.engine["mux"]);
  engine["task"] = BindPort(parts.task->engine_socket(), ports.engine["task"]);
  engine["iopub"] = BindPort(parts.iopub->engine_socket(), ports.engine["iopub"]);
  engine["broadcast"] = json::array({BindPort(parts.broadcast->engine_socket(), ports.engine["broadcast"])});
  if (parts.gateway) {
    Secure(parts.gateway->engine_socket());
    engine[gw::kPortKey] = BindPort(parts.gateway->engine_socket(), ports.engine[gw::kPortKey]);
    // Where the gateway's pipes for each engine come in (the heart monitor binds its own).
    parts.control->engine_socket().bind(gw::InternalUrl("control"));
    parts.mux->engine_socket().bind(gw::InternalUrl("mux"));
    parts.task->engine_socket().bind(gw::InternalUrl("task"));
    parts.broadcast->engine_socket().bind(gw::InternalUrl("broadcast"));
    parts.iopub->engine_socket().bind(gw::InternalUrl(gw::kIopub));
  }
  client["control"] = BindPort(parts.control->client_socket(), ports.client["control"]);
  parts.control->client_socket().bind(kControlUrl);
  client["mux"] = BindPort(parts.mux->client_socket(), ports.client["mux"]);
  client["task"] = BindPort(parts.task->client_socket(), ports.client["task"]);
  parts.task->client_socket().bind(kTaskUrl);  // the hub's resubmissions
  client["iopub"] = BindPort(parts.iopub->client_socket(), ports.client["iopub"]);
  client["broadcast"] = BindPort(parts.broadcast->client_socket(), ports.client["broadcast"]);
  return channels;
}

HubOptions Controller::MakeHubOptions(const Ports& ports) const {
  HubOptions hub;
  const std::string interface = Interface();
  auto url = [&](int port) { return interface + ":" + (port ? std::to_string(port) : std::string("*")); };
  hub.query_url = url(ports.engine.at("registration"));
  hub.notification_url = url(ports.client.at("notification"));
  hub.internal_notification_url = kNotificationUrl;
  hub.monitor_url = kMonitorUrl;
  hub.resubmit_url = kTaskUrl;
  hub.ping_url = url(ports.engine.at("hb_ping"));
  hub.pong_url = url(ports.engine.at("hb_pong"));
  hub.local_interface = LocalInterface();
  hub.ping_period = options_.ping;
  hub.max_heartbeat_misses = options_.max_heartbeat_misses;
  hub.registration_timeout = options_.registration_timeout;
  hub.engine_state_file = profile_.log_dir() / ("engines" + options_.cluster_id + ".json");
  hub.restore = options_.restore;
  hub.secure = [this](zmq::socket_t& socket) { Secure(socket); };
  hub.curve_serverkey = curve_public_;
  hub.gateway = options_.gateway;
  return hub;
}

Result<std::unique_ptr<TaskStore>> Controller::MakeTaskStore() const {
  std::unique_ptr<TaskStore> store;
  if (options_.db == DbBackend::kNone) {
    store = std::make_unique<NullTaskStore>();
  } else if (options_.db == DbBackend::kSqlite) {
    auto sqlite = SqliteTaskStore::Open(profile_.root() / "tasks.db");
    if (!sqlite.ok()) return sqlite.status();
    store = std::move(sqlite).value();
  } else {
    store = std::make_unique<MemoryTaskStore>(
        MemoryStoreLimits{options_.db_record_limit, options_.db_size_limit, options_.db_cull_fraction});
  }
  log_->info("task database: {}", store->name());
  return store;
}

void Controller::SetConnectionInfo(const Channels& channels) {
  auto fill = [&](protocol::ConnectionInfo& info, const json& channel_ports) {
    info.interface = Interface();
    info.key = key_;
    info.location = options_.location;
    info.channels = channel_ports;
    info.local_interface = LocalInterface();
    if (!info.local_interface.empty()) info.local_host = HostName();
    if (!curve_public_.empty()) info.curve_serverkey = curve_public_;
  };
  fill(engine_info_, channels.engine);
  fill(client_info_, channels.client);
  client_info_.task_scheme = options_.scheme;
}

void Controller::Connect(Parts& parts) {
  parts.mux->ConnectMonitor(kMonitorUrl);
  parts.iopub->ConnectMonitor(kMonitorUrl);
  parts.broadcast->ConnectMonitor(kMonitorUrl);
  parts.task->Connect(kNotificationUrl, kMonitorUrl);
  parts.task->ListenForAborts(kAbortUrl);
  parts.task->ConnectControl(kControlUrl);
  parts.control->TapAborts(kAbortUrl);

  parts.hub->Attach(*parts.hub_reactor);
  parts.mux->Attach(*parts.relay_reactor);
  parts.control->Attach(*parts.relay_reactor);
  parts.iopub->Attach(*parts.relay_reactor);
  parts.broadcast->Attach(*parts.relay_reactor);
  parts.task->Attach(*parts.task_reactor);
  if (parts.gateway) {
    parts.gateway->Connect();
    parts.gateway->Attach(*parts.gateway_reactor);
  }
  // Engines restored by the hub are known to the task scheduler before any client asks.
  for (auto& [uuid, capabilities] : parts.hub->engine_capabilities()) parts.task->AddEngine(uuid, std::move(capabilities));
}

Status Controller::Build() {
  Result<Ports> ports = ChoosePorts();
  if (!ports.ok()) return ports.status();
  if (!options_.local_ipc) {
    if (!reused_local_.empty()) {
      log_->warn("--no-ipc: engines that connected to the last run over {} cannot reconnect (restart them)", reused_local_);
    }
  } else {
    Result<std::unique_ptr<IpcDir>> dir = IpcDir::Create(reused_local_);
    if (dir.ok()) {
      ipc_dir_ = std::move(dir).value();
      log_->info("peers on this host connect over {}", ipc_dir_->interface());
      if (!reused_local_.empty() && ipc_dir_->interface() != reused_local_) {
        log_->warn("{} is served by another controller or not ours: engines that connected to the last run "
                   "over it cannot reconnect (restart them)", reused_local_);
      }
    } else {
      log_->warn("peers on this host connect over TCP: no directory for ipc:// endpoints ({})", dir.status().message());
    }
  }
  if (key_.empty()) key_ = options_.session_key.empty() ? protocol::NewId() : options_.session_key;

  // Schedulers first: their tcp ports go into the hub's engine_info.
  auto parts = std::make_unique<Parts>();
  MakeSchedulers(*parts);
  Channels channels = BindSchedulers(*parts, *ports);

  // The hub binds its own ports (registration, notification, heartbeat); engine_info is
  // complete once it has.
  Result<std::unique_ptr<TaskStore>> store = MakeTaskStore();
  if (!store.ok()) return store.status();
  parts->hub = std::make_unique<Hub>(context_, key_, MakeHubOptions(*ports), std::move(store).value(),
                                     MakeLogger("hub"), [this] { stop_.raise(); });
  if (options_.task_journal) {
    fs::path file = profile_.log_dir() / ("tasks" + options_.cluster_id + ".journal");
    Result<std::unique_ptr<TaskJournal>> journal = TaskJournal::Open(file, options_.restore);
    if (!journal.ok()) return journal.status();
    log_->info("task journal: {} ({} accepted task(s) to run again)", file.string(), (*journal)->pending());
    parts->hub->SetJournal(std::move(journal).value());
  }
  if (options_.dashboard) {
    dashboard_ = std::make_unique<dashboard::Aggregator>();
    parts->hub->SetDashboard(dashboard_.get());
  }
  Hub::BoundPorts bound = parts->hub->Bind();
  channels.engine["registration"] = bound.registration;
  channels.engine["hb_ping"] = bound.hb_ping;
  channels.engine["hb_pong"] = bound.hb_pong;
  channels.client["registration"] = bound.registration;
  channels.client["notification"] = bound.notification;
  SetConnectionInfo(channels);
  json engine_json = engine_info_;
  engine_json.erase("key");
  parts->hub->SetEngineInfo(engine_json);

  Connect(*parts);
  parts_ = std::move(parts);
  if (Status s = StartDashboard(); !s.ok()) return s;
  return WriteConnectionFiles();
}

fs::path Controller::DashboardFile() const {
  return profile_.security_dir() / protocol::ConnectionFileName("dashboard", options_.cluster_id);
}

Status Controller::StartDashboard() {
  // A controller restored after a crash (ipcluster restarts it so) serves the dashboard where the
  // last one did, with its token, so that a page left open goes on working. Any other start
  // gets a new token: the previous run's file is stale.
  std::string token = dashboard::NewToken();
  int port = options_.dashboard_port;
  bool same_port = false;
  if (options_.restore) {
    std::ifstream in(DashboardFile());
    json previous = json::parse(in, nullptr, false);
    if (previous.is_object() && previous.value("token", json()).is_string()) {
      token = previous["token"].get<std::string>();
      if (json last = previous.value("port", json()); port == 0 && last.is_number_integer() && last.get<int>() > 0) {
        port = last.get<int>();
        same_port = true;
      }
    }
  }
  std::error_code ec;
  fs::remove(DashboardFile(), ec);
  if (!dashboard_) return Status::OK();
  dashboard::ServerOptions server;
  server.ip = options_.dashboard_ip;
  server.port = port;
  server.token = token;
  dashboard_server_ = std::make_unique<dashboard::Server>(*dashboard_, server, MakeLogger("dashboard"));
  Status started = dashboard_server_->Start();
  if (!started.ok() && same_port) {
    log_->warn("dashboard: port {} of the last run is taken ({}); serving on another", port, started.message());
    server.port = 0;
    dashboard_server_ = std::make_unique<dashboard::Server>(*dashboard_, server, MakeLogger("dashboard"));
    started = dashboard_server_->Start();
  }
  if (!started.ok()) return started;
  parts_->hub_reactor->every(std::chrono::milliseconds(250), [this] { dashboard_->Publish(); });
  std::string url = dashboard_server_->url();
  json file = {{"url", url}, {"token", server.token}, {"port", dashboard_server_->port()}, {"pid", getpid()}};
  if (Status s = protocol::WritePrivateFile(DashboardFile(), file.dump(2) + "\n"); !s.ok()) return s;
  log_->info("dashboard: {}", url);
  return Status::OK();
}

Status Controller::WriteConnectionFiles() {
  fs::path dir = profile_.security_dir();
  // Engine file first: launchers start engines once the client file exists.
  Status s = protocol::WriteConnectionFile(dir / protocol::ConnectionFileName("engine", options_.cluster_id), engine_info_);
  if (s.ok()) s = protocol::WriteConnectionFile(dir / protocol::ConnectionFileName("client", options_.cluster_id), client_info_);
  if (s.ok()) log_->info("connection files written to {}", dir.string());
  return s;
}

void Controller::RemoveConnectionFiles() {
  if (options_.reuse) return;
  std::error_code ec;
  for (const char* role : {"client", "engine"}) {
    fs::remove(profile_.security_dir() / protocol::ConnectionFileName(role, options_.cluster_id), ec);
  }
}

void Controller::RemoveDashboardFile() {
  std::error_code ec;
  fs::remove(DashboardFile(), ec);
}

int Controller::Run() {
  for (Reactor* r : {parts_->relay_reactor.get(), parts_->task_reactor.get(), parts_->hub_reactor.get(),
                     parts_->gateway_reactor.get()}) {
    if (r) stop_.watch(*r, [r] { r->stop(); });
  }
  // Messages are allocated by one thread (libzmq's I/O thread) and freed by another, and glibc
  // keeps what is freed in per-thread arenas: after a burst (a purge, a flood of output) the
  // RSS would stay at its peak for good. Handing free memory back every few seconds keeps the
  // controller's footprint what it actually holds.
  parts_->hub_reactor->every(std::chrono::seconds(5), [] { malloc_trim(0); });
  // Named so that top -H and perf tell the controller's threads apart.
  threads_.emplace_back([this] {
    pthread_setname_np(pthread_self(), "ipc-relays");
    parts_->relay_reactor->run();
  });
  threads_.emplace_back([this] {
    pthread_setname_np(pthread_self(), "ipc-tasks");
    parts_->task_reactor->run();
  });
  if (parts_->gateway_reactor) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "ipc-gateway");
      parts_->gateway_reactor->run();
    });
  }
  log_->info("controller running (pid {}): {} engines may register at {}", getpid(),
             "any number of", *engine_info_.url("registration"));
  parts_->hub_reactor->run();
  stop_.raise();
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (dashboard_server_) dashboard_server_->Stop();
  RemoveDashboardFile();
  RemoveConnectionFiles();
  log_->info("controller stopped");
  return 0;
}

}  // namespace ipp::controller

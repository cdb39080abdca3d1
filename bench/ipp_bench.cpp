// ipp_bench: measures a running cluster from our C++ client. Prints one JSON object.
//
//   ipp_bench --file <client connection file> --tasks 20000 --latency 2000
//
// load-balanced no-op throughput (tasks/s), chunked map (items/s), direct round-trip latency
// (median, p99, µs), and the floor: a raw ZeroMQ DEALER->ROUTER->ROUTER->DEALER echo with the
// same hops — client, relay and echo in three processes, as client, controller and engine are
// (raw_zmq_rtt over TCP, raw_zmq_rtt_ipc over ipc://, which our client and engines use on the
// controller's host: "transport" says which this client used) — and, for reference, the same
// echo between threads of this process (raw_zmq_rtt_threads: one ZeroMQ I/O thread serves every
// socket, no process boundary).
//
//   ipp_bench --file <f> --lb-only --tasks 20000     only the load-balanced no-op throughput
//   ipp_bench --file <f> --mixed 10000 --long 4      only a mixed workload's makespan: 1 ms tasks
//                                                    (ipp.sleep) with 1 s ones spread among them
//   ipp_bench --file <f> --burst 8 --long-s 0.5      only a burst's makespan: 8 long tasks at once
//                                                    right after 2,000 no-op ones
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <chrono>
#include <iostream>
#include <optional>
#include <thread>

#include <boost/program_options.hpp>
#include <zmq.hpp>

#include "common/spawn.hpp"
#include "ipp/client.hpp"
#include "protocol/connection_file.hpp"

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

ipp::Json Percentiles(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))]; };
  return {{"median_us", at(0.5)}, {"p99_us", at(0.99)}, {"samples", us.size()}};
}

// zmq::poll, with a signal (SIGTERM ends the raw roles) counting as nothing ready.
int Poll(zmq::pollitem_t* items, size_t n) {
  try {
    return zmq::poll(items, n, std::chrono::milliseconds(100));
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    throw;
  }
}

// Moves one [id, id, body] message from `from` to `to`, with the two ids swapped or not.
void ForwardThree(zmq::socket_t& from, zmq::socket_t& to, bool swap_ids) {
  zmq::message_t a, b, body;
  (void)from.recv(a);
  (void)from.recv(b);
  (void)from.recv(body);
  to.send(swap_ids ? b : a, zmq::send_flags::sndmore);
  to.send(swap_ids ? a : b, zmq::send_flags::sndmore);
  to.send(body, zmq::send_flags::none);
}

// The relay of the raw echo (the controller's MUX without the protocol work): forwards between
// two ROUTERs, swapping the routing ids, until `stop`.
void RawRelay(zmq::socket_t& front, zmq::socket_t& back, const std::atomic<bool>& stop) {
  zmq::pollitem_t items[] = {{front.handle(), 0, ZMQ_POLLIN, 0}, {back.handle(), 0, ZMQ_POLLIN, 0}};
  while (!stop) {
    if (!Poll(items, 2)) continue;
    for (int k = 0; k < 2; ++k) {
      if (items[k].revents & ZMQ_POLLIN) ForwardThree(k ? back : front, k ? front : back, true);
    }
  }
}

// The engine of the raw echo: returns every message to where it came from.
void RawEcho(zmq::socket_t& echo, const std::atomic<bool>& stop) {
  zmq::pollitem_t item{echo.handle(), 0, ZMQ_POLLIN, 0};
  while (!stop) {
    if (Poll(&item, 1)) ForwardThree(echo, echo, false);
  }
}

zmq::socket_t EchoSocket(zmq::context_t& ctx, const std::string& relay_back) {
  zmq::socket_t echo(ctx, zmq::socket_type::router);
  echo.set(zmq::sockopt::routing_id, "engine");
  echo.connect(relay_back);
  return echo;
}

// The client end of a raw echo path: a DEALER connected to the relay's front.
zmq::socket_t RawClient(zmq::context_t& ctx, const std::string& relay_front) {
  zmq::socket_t client(ctx, zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.connect(relay_front);
  return client;
}

// One raw round trip: `client` (a DEALER connected to a relay) -> relay -> echo -> back.
void RawRoundTrip(zmq::socket_t& client) {
  client.send(zmq::str_buffer("engine"), zmq::send_flags::sndmore);
  client.send(zmq::str_buffer("ping"), zmq::send_flags::none);
  zmq::message_t a, b;
  (void)client.recv(a);
  (void)client.recv(b);
}

// Times `n` round trips of each kind (after 100 of each to warm up) in alternating blocks of 50:
// on a shared machine the floor itself drifts within a minute, and two kinds
// timed one after the other would carry that drift into their ratio.
std::vector<std::vector<double>> TimeAlternating(int n, const std::vector<std::function<void()>>& kinds) {
  constexpr int kBlock = 50, kWarmUp = 100;
  std::vector<std::vector<double>> us(kinds.size());
  for (int done = -kWarmUp; done < n; done += kBlock) {
    for (size_t k = 0; k < kinds.size(); ++k) {
      for (int i = 0; i < kBlock; ++i) {
        auto t0 = Clock::now();
        kinds[k]();
        if (done >= 0) us[k].push_back(Seconds(Clock::now() - t0) * 1e6);
      }
    }
  }
  return us;
}

// Hidden roles of this program for the three-process echo: "--raw-relay tcp|ipc" binds, prints
// its two endpoints and relays; "--raw-echo <endpoint>" echoes. Both end with their parent.
int RunRawRole(int argc, char** argv) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  static std::atomic<bool> stop{false};
  signal(SIGTERM, [](int) { stop = true; });
  zmq::context_t ctx;
  if (std::string(argv[1]) == "--raw-relay" && argc == 3) {
    zmq::socket_t front(ctx, zmq::socket_type::router), back(ctx, zmq::socket_type::router);
    // libzmq makes an ipc:// wildcard's socket in $TMPDIR, or else in the working directory.
    setenv("TMPDIR", "/tmp", /*overwrite=*/0);
    const char* endpoint = std::string(argv[2]) == "ipc" ? "ipc://*" : "tcp://127.0.0.1:*";
    front.bind(endpoint);
    back.bind(endpoint);
    std::cout << front.get(zmq::sockopt::last_endpoint) << " " << back.get(zmq::sockopt::last_endpoint) << std::endl;
    RawRelay(front, back, stop);
  } else if (argc == 3) {
    zmq::socket_t echo = EchoSocket(ctx, argv[2]);
    RawEcho(echo, stop);
  }
  return 0;
}

// Starts this program in a raw role; its stdout is returned through `out` (may be null).
pid_t SpawnRawRole(std::vector<std::string> args, FILE** out) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  ipp::SpawnOptions options;
  options.program = "/proc/self/exe";
  options.group = ipp::SpawnOptions::Group::kInherit;
  options.stdout_fd = fds[1];
  args.insert(args.begin(), "ipp_bench");
  ipp::Result<pid_t> pid = ipp::Spawn(args, options);
  close(fds[1]);
  if (!pid.ok() || !out) {
    close(fds[0]);
  } else {
    *out = fdopen(fds[0], "r");
  }
  return pid.ok() ? *pid : -1;
}

// client DEALER -> relay ROUTER/ROUTER -> echo DEALER: the hops of a direct apply (client ->
// controller MUX -> engine and back), without the protocol work, in three processes: the relay
// and the echo are this program in its hidden roles, stopped when this goes.
class RawEchoPath {
 public:
  explicit RawEchoPath(const std::string& transport) {  // "tcp" or "ipc"
    FILE* relay_out = nullptr;
    relay_ = SpawnRawRole({"--raw-relay", transport}, &relay_out);
    char front[256] = {}, back[256] = {};
    if (relay_ > 0 && relay_out && fscanf(relay_out, "%255s %255s", front, back) == 2) {
      echo_ = SpawnRawRole({"--raw-echo", back}, nullptr);
      if (echo_ > 0) front_ = front;
    }
    if (relay_out) fclose(relay_out);
    if (!front_.empty() && !Ready()) front_.clear();
  }
  ~RawEchoPath() {
    for (pid_t pid : {echo_, relay_}) {
      if (pid > 0) kill(pid, SIGTERM), waitpid(pid, nullptr, 0);
    }
  }
  RawEchoPath(const RawEchoPath&) = delete;
  RawEchoPath& operator=(const RawEchoPath&) = delete;
  bool ok() const { return !front_.empty(); }
  const std::string& front() const { return front_; }

  // Sends `body` through the path and waits up to `timeout` for it to come back (the relay
  // drops what it cannot route yet: nothing hangs on that). The echoed body, or nullopt.
  static std::optional<zmq::message_t> Echo(zmq::socket_t& client, zmq::message_t& body,
                                            std::chrono::milliseconds timeout) {
    client.send(zmq::str_buffer("engine"), zmq::send_flags::sndmore);
    client.send(body, zmq::send_flags::none);
    zmq::pollitem_t item{client.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
    zmq::message_t id, echoed;
    (void)client.recv(id);
    (void)client.recv(echoed);
    return echoed;
  }

 private:
  // The echo process connects a moment after it starts, and until then the relay drops what
  // it cannot route: ping until one comes back (up to 10 s).
  bool Ready() {
    zmq::context_t ctx;
    zmq::socket_t client = RawClient(ctx, front_);
    for (int attempt = 0; attempt < 100; ++attempt) {
      zmq::message_t ping(std::string_view("ping"));
      if (Echo(client, ping, std::chrono::milliseconds(100))) return true;
    }
    return false;
  }

  pid_t relay_ = -1, echo_ = -1;
  std::string front_;
};

// MB/s of a `bytes` payload sent through the raw echo path and back (both ways counted).
double RawZmqTransfer(const RawEchoPath& path, size_t bytes) {
  zmq::context_t ctx;
  zmq::socket_t client = RawClient(ctx, path.front());
  std::string payload(bytes, 'x');
  zmq::message_t body(payload.data(), payload.size());
  auto t0 = Clock::now();
  std::optional<zmq::message_t> echoed = RawEchoPath::Echo(client, body, std::chrono::seconds(60));
  double secs = Seconds(Clock::now() - t0);
  return echoed && echoed->size() == bytes ? 2.0 * bytes / 1e6 / secs : 0.0;
}

// The same echo between threads of this process.
ipp::Json RawZmqRoundTripThreads(int n) {
  zmq::context_t ctx;
  zmq::socket_t front(ctx, zmq::socket_type::router), back(ctx, zmq::socket_type::router);
  front.bind("tcp://127.0.0.1:*");
  back.bind("tcp://127.0.0.1:*");
  std::string front_ep = front.get(zmq::sockopt::last_endpoint), back_ep = back.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> stop{false};
  std::thread relay([&] { RawRelay(front, back, stop); });
  zmq::socket_t echo = EchoSocket(ctx, back_ep);
  std::thread engine([&] { RawEcho(echo, stop); });
  zmq::socket_t client = RawClient(ctx, front_ep);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ipp::Json result = Percentiles(TimeAlternating(n, {[&] { RawRoundTrip(client); }})[0]);
  stop = true;
  relay.join();
  engine.join();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--raw-relay" || std::string(argv[1]) == "--raw-echo")) {
    return RunRawRole(argc, argv);
  }
  std::string file;
  int tasks = 20000, latency = 2000, items = 200000, chunk = 1000, fanout = 0, mixed = 0, long_tasks = 4, burst = 0;
  double short_s = 0.001, long_s = 1.0;
  std::vector<int> data_mib;
  po::options_description o("ipp_bench options");
  o.add_options()("help,h", "help")("file,f", po::value(&file), "client connection file")
      ("tasks", po::value(&tasks)->default_value(20000), "load-balanced no-op tasks")
      ("latency", po::value(&latency)->default_value(2000), "direct round trips")
      ("items", po::value(&items)->default_value(200000), "map items")
      ("chunk", po::value(&chunk)->default_value(1000), "map chunk size")
      ("data-mib", po::value(&data_mib)->multitoken(), "buffer sizes (MiB) for push/pull throughput")
      ("fanout", po::value(&fanout)->default_value(0), "apply-to-all rounds (0: skip)")
      ("lb-only", "measure only the load-balanced no-op throughput")
      ("mixed", po::value(&mixed)->default_value(0), "measure only a mixed workload: this many short tasks")
      ("long", po::value(&long_tasks)->default_value(4), "--mixed: long tasks, spread evenly among the short ones")
      ("short-s", po::value(&short_s)->default_value(0.001), "--mixed: seconds a short task sleeps")
      ("long-s", po::value(&long_s)->default_value(1.0), "--mixed, --burst: seconds a long task sleeps")
      ("burst", po::value(&burst)->default_value(0),
       "measure only a burst's makespan: this many long tasks at once, right after many no-op ones");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, o), vm);
  po::notify(vm);
  if (vm.count("help") || file.empty()) {
    std::cout << o << std::endl;
    return vm.count("help") ? 0 : 2;
  }
  auto connected = ipp::Client::Connect(ipp::ClientOptions::File(file));
  if (!connected.ok()) {
    std::cerr << "ipp_bench: " << connected.status().message() << std::endl;
    return 1;
  }
  auto& client = *connected;
  ipp::Json out = {{"engines", client->ids().size()}};
  auto lb = client->load_balanced_view();
  lb.map("ipp.echo", std::vector<ipp::Json>(200, 0)).get();  // warm up

  if (burst > 0) {
    // Long tasks right after short ones: the scheduler has seen only no-op tasks when the burst
    // comes, and must not leave it queued on a few engines while others idle.
    lb.map("ipp.echo", std::vector<ipp::Json>(2000, 0), 1).get();
    auto start = Clock::now();
    lb.map("ipp.sleep", std::vector<ipp::Json>(burst, long_s), 1).get();
    double makespan = Seconds(Clock::now() - start);
    size_t engines = client->ids().size();
    out["burst"] = {{"tasks", burst}, {"long_s", long_s}, {"makespan_s", makespan},
                    {"ideal_s", std::ceil(burst / static_cast<double>(engines)) * long_s}};
    std::cout << out.dump() << std::endl;
    return 0;
  }

  if (mixed > 0) {
    // Makespan: from the first submission to the last reply, one task per item.
    std::vector<ipp::Json> seconds(mixed, short_s);
    for (int k = 1; k <= long_tasks; ++k) {
      seconds.insert(seconds.begin() + static_cast<long>(static_cast<size_t>(k) * mixed / (long_tasks + 1) + k - 1), long_s);
    }
    auto start = Clock::now();
    lb.map("ipp.sleep", seconds, 1).get();
    double makespan = Seconds(Clock::now() - start);
    double work = mixed * short_s + long_tasks * long_s;
    out["mixed"] = {{"short", mixed}, {"long", long_tasks}, {"short_s", short_s}, {"long_s", long_s},
                    {"makespan_s", makespan}, {"ideal_s", work / static_cast<double>(client->ids().size())}};
    std::cout << out.dump() << std::endl;
    return 0;
  }

  std::vector<ipp::Json> noops(tasks, nullptr);
  auto t0 = Clock::now();
  auto r = lb.map("ipp.echo", noops, 1);  // one task per item
  r.get();
  out["lb_tasks_per_s"] = tasks / Seconds(Clock::now() - t0);
  if (vm.count("lb-only")) {
    std::cout << out.dump() << std::endl;
    return 0;
  }

  std::vector<ipp::Json> many(items, 1);
  t0 = Clock::now();
  lb.map("ipp.echo", many, chunk).get();
  out["map_items_per_s"] = items / Seconds(Clock::now() - t0);

  // The direct round trip and its floors, timed in alternating blocks (see TimeAlternating).
  RawEchoPath raw_path("tcp"), raw_ipc_path("ipc");
  if (!raw_path.ok() || !raw_ipc_path.ok()) {
    std::cerr << "ipp_bench: could not start the raw echo processes" << std::endl;
    return 1;
  }
  auto one = client->direct_view({client->ids().front()});
  {
    zmq::context_t ctx;
    zmq::socket_t raw_client = RawClient(ctx, raw_path.front()), raw_ipc_client = RawClient(ctx, raw_ipc_path.front());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto us = TimeAlternating(latency, {[&] { one.apply("ipp.echo").get(); }, [&] { RawRoundTrip(raw_client); },
                                        [&] { RawRoundTrip(raw_ipc_client); }});
    out["direct_rtt"] = Percentiles(us[0]);
    out["raw_zmq_rtt"] = Percentiles(us[1]);
    out["raw_zmq_rtt_ipc"] = Percentiles(us[2]);
  }
  out["raw_zmq_rtt_threads"] = RawZmqRoundTripThreads(latency);
  double direct = out["direct_rtt"]["median_us"].get<double>();
  out["direct_rtt_ratio_to_raw"] = direct / out["raw_zmq_rtt"]["median_us"].get<double>();
  out["direct_rtt_ratio_to_raw_ipc"] = direct / out["raw_zmq_rtt_ipc"]["median_us"].get<double>();
  if (ipp::Result<ipp::protocol::ConnectionInfo> info = ipp::protocol::ReadConnectionFile(file); info.ok()) {
    out["transport"] = ipp::protocol::PreferLocalTransport(*info) ? "ipc" : "tcp";
  }

  // Data: a buffer to one engine and back (ipp.echo), MB/s of payload moved both ways, beside
  // a memcpy of the same size and the same payload through the raw ZeroMQ echo path.
  ipp::Json data = ipp::Json::array();
  for (int mib : data_mib) {
    size_t bytes = static_cast<size_t>(mib) << 20;
    std::string payload(bytes, 'x');
    ipp::Buffer buffer(payload);
    auto t = Clock::now();
    auto r = one.apply("ipp.echo", nullptr, {buffer});
    r.get();
    double secs = Seconds(Clock::now() - t);
    std::vector<char> copy(bytes);
    auto m = Clock::now();
    std::memcpy(copy.data(), payload.data(), bytes);
    double copy_secs = Seconds(Clock::now() - m);
    double raw = RawZmqTransfer(raw_path, bytes);
    data.push_back({{"mib", mib}, {"roundtrip_mb_per_s", 2.0 * bytes / 1e6 / secs},
                    {"memcpy_mb_per_s", bytes / 1e6 / copy_secs}, {"raw_zmq_mb_per_s", raw},
                    {"ok", r.info()[0].buffers.at(0).size() == bytes}});
  }
  if (!data.empty()) out["data"] = data;

  if (fanout > 0) {
    auto all = client->direct_view();
    std::vector<double> ms;
    for (int i = 0; i < fanout; ++i) {
      auto t = Clock::now();
      all.apply("ipp.echo").get();
      ms.push_back(Seconds(Clock::now() - t) * 1e3);
    }
    std::sort(ms.begin(), ms.end());
    out["fanout"] = {{"engines", client->ids().size()}, {"median_ms", ms[ms.size() / 2]}};
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

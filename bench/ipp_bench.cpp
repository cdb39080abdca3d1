// ipp_bench: measures a running cluster from our C++ client. Prints one JSON object.
//
//   ipp_bench --file <client connection file> --tasks 20000 --latency 2000
//
// load-balanced no-op throughput (tasks/s), chunked map (items/s), direct round-trip latency
// (median, p99, µs), and the floor: a raw ZeroMQ DEALER->ROUTER->ROUTER->DEALER echo with the
// same number of hops, measured in this process at the same time.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <iostream>
#include <thread>

#include <boost/program_options.hpp>
#include <zmq.hpp>

#include "ipp/client.hpp"

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

ipp::Json Percentiles(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))]; };
  return {{"median_us", at(0.5)}, {"p99_us", at(0.99)}, {"samples", us.size()}};
}

// client DEALER -> relay ROUTER/ROUTER -> echo DEALER: the hops of a direct apply (client ->
// controller MUX -> engine and back), without the protocol work.
ipp::Json RawZmqRoundTrip(int n) {
  zmq::context_t ctx;
  zmq::socket_t front(ctx, zmq::socket_type::router), back(ctx, zmq::socket_type::router);
  front.bind("tcp://127.0.0.1:*");
  back.bind("tcp://127.0.0.1:*");
  std::string front_ep = front.get(zmq::sockopt::last_endpoint), back_ep = back.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> stop{false};
  std::thread relay([&] {
    zmq::pollitem_t items[] = {{front.handle(), 0, ZMQ_POLLIN, 0}, {back.handle(), 0, ZMQ_POLLIN, 0}};
    while (!stop) {
      zmq::poll(items, 2, std::chrono::milliseconds(100));
      for (int k = 0; k < 2; ++k) {
        if (!(items[k].revents & ZMQ_POLLIN)) continue;
        zmq::socket_t& from = k ? back : front;
        zmq::socket_t& to = k ? front : back;
        zmq::message_t a, b, body;
        (void)from.recv(a);
        (void)from.recv(b);
        (void)from.recv(body);
        to.send(b, zmq::send_flags::sndmore);
        to.send(a, zmq::send_flags::sndmore);
        to.send(body, zmq::send_flags::none);
      }
    }
  });
  zmq::socket_t echo(ctx, zmq::socket_type::router);
  echo.set(zmq::sockopt::routing_id, "engine");
  echo.connect(back_ep);
  std::thread engine([&] {
    zmq::pollitem_t item{echo.handle(), 0, ZMQ_POLLIN, 0};
    while (!stop) {
      if (!zmq::poll(&item, 1, std::chrono::milliseconds(100))) continue;
      zmq::message_t relay_id, client_id, body;
      (void)echo.recv(relay_id);
      (void)echo.recv(client_id);
      (void)echo.recv(body);
      echo.send(relay_id, zmq::send_flags::sndmore);
      echo.send(client_id, zmq::send_flags::sndmore);
      echo.send(body, zmq::send_flags::none);
    }
  });
  zmq::socket_t client(ctx, zmq::socket_type::dealer);
  client.connect(front_ep);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<double> us;
  for (int i = 0; i < n + 100; ++i) {
    auto t0 = Clock::now();
    client.send(zmq::str_buffer("engine"), zmq::send_flags::sndmore);
    client.send(zmq::str_buffer("ping"), zmq::send_flags::none);
    zmq::message_t a, b;
    (void)client.recv(a);
    (void)client.recv(b);
    if (i >= 100) us.push_back(Seconds(Clock::now() - t0) * 1e6);
  }
  stop = true;
  relay.join();
  engine.join();
  return Percentiles(us);
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  int tasks = 20000, latency = 2000, items = 200000, chunk = 1000, fanout = 0;
  std::vector<int> data_mib;
  po::options_description o("ipp_bench options");
  o.add_options()("help,h", "help")("file,f", po::value(&file), "client connection file")
      ("tasks", po::value(&tasks)->default_value(20000), "load-balanced no-op tasks")
      ("latency", po::value(&latency)->default_value(2000), "direct round trips")
      ("items", po::value(&items)->default_value(200000), "map items")
      ("chunk", po::value(&chunk)->default_value(1000), "map chunk size")
      ("data-mib", po::value(&data_mib)->multitoken(), "buffer sizes (MiB) for push/pull throughput")
      ("fanout", po::value(&fanout)->default_value(0), "apply-to-all rounds (0: skip)");
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

  std::vector<ipp::Json> noops(tasks, nullptr);
  auto t0 = Clock::now();
  auto r = lb.map("ipp.echo", noops, 1);  // one task per item
  r.get();
  out["lb_tasks_per_s"] = tasks / Seconds(Clock::now() - t0);

  std::vector<ipp::Json> many(items, 1);
  t0 = Clock::now();
  lb.map("ipp.echo", many, chunk).get();
  out["map_items_per_s"] = items / Seconds(Clock::now() - t0);

  auto one = client->direct_view({client->ids().front()});
  std::vector<double> us;
  for (int i = 0; i < latency + 100; ++i) {
    auto t = Clock::now();
    one.apply("ipp.echo").get();
    if (i >= 100) us.push_back(Seconds(Clock::now() - t) * 1e6);
  }
  out["direct_rtt"] = Percentiles(us);
  out["raw_zmq_rtt"] = RawZmqRoundTrip(latency);
  out["direct_rtt_ratio_to_raw"] = out["direct_rtt"]["median_us"].get<double>() / out["raw_zmq_rtt"]["median_us"].get<double>();

  // Data: a buffer to one engine and back (ipp.echo), MB/s of payload moved both ways, beside
  // a memcpy of the same size.
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
    data.push_back({{"mib", mib}, {"roundtrip_mb_per_s", 2.0 * bytes / 1e6 / secs},
                    {"memcpy_mb_per_s", bytes / 1e6 / copy_secs}, {"ok", r.info()[0].buffers.at(0).size() == bytes}});
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

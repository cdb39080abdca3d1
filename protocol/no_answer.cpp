#include "protocol/no_answer.hpp"

#include <zmq.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

namespace ipp::protocol {

namespace {

std::string NewMonitorEndpoint() {
  static std::atomic<uint64_t> next{0};
  return "inproc://ipp-connection-watch-" + std::to_string(next.fetch_add(1));
}

// Linux: a process runs if /proc has it and it is not a zombie (a killed controller whose parent,
// ipcluster, has not reaped it yet still answers kill(pid, 0)).
bool Running(long pid) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t close = text.rfind(')');  // the command name in parentheses may hold spaces
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z' && text[close + 2] != 'X';
}

// What ipcluster's record beside the connection file says about the controller process, e.g.
// "ipcluster's record /p/security/cluster-.json lists the controller as pid 123, which is not
// running", or "" when there is no such record.
std::string ClusterRecordNote(const std::filesystem::path& connection_file) {
  static const std::regex kName(R"(ipcontroller-(?:(.*)-)?(?:client|engine)\.json)");
  std::smatch m;
  std::string name = connection_file.filename().string();
  if (!std::regex_match(name, m, kName)) return "";
  std::filesystem::path record = connection_file.parent_path() / ("cluster-" + m[1].str() + ".json");
  std::ifstream in(record);
  if (!in) return "";
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  const nlohmann::json* processes = nullptr;
  if (j.is_object() && j.contains("controller") && j["controller"].is_object() &&
      j["controller"].contains("state") && j["controller"]["state"].is_object()) {
    auto it = j["controller"]["state"].find("processes");
    if (it != j["controller"]["state"].end() && it->is_array() && !it->empty()) processes = &*it;
  }
  if (!processes || !(*processes)[0].is_object() || !(*processes)[0].value("pid", nlohmann::json()).is_number_integer()) {
    return "";
  }
  long pid = (*processes)[0]["pid"].get<long>();
  return "; ipcluster's record " + record.string() + " lists the controller as pid " + std::to_string(pid) +
         (Running(pid) ? ", which is still running" : ", which is not running");
}

}  // namespace

ConnectionWatch::ConnectionWatch(zmq::context_t& context, zmq::socket_ref socket)
    : socket_(socket), events_(context, zmq::socket_type::pair) {
  std::string endpoint = NewMonitorEndpoint();
  events_.set(zmq::sockopt::linger, 0);
  if (zmq_socket_monitor(socket_.handle(), endpoint.c_str(), ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
    return;  // then connected() and handshaken() stay false; the messages only lose detail
  }
  events_.connect(endpoint);
  active_ = true;
}

ConnectionWatch::~ConnectionWatch() {
  if (active_) zmq_socket_monitor(socket_.handle(), nullptr, 0);
}

void ConnectionWatch::Drain() {
  if (!active_) return;
  while (true) {
    zmq::message_t event, address;
    if (!events_.recv(event, zmq::recv_flags::dontwait)) return;
    if (event.more()) (void)events_.recv(address, zmq::recv_flags::dontwait);
    if (event.size() < sizeof(uint16_t)) continue;
    uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);
    connected_ = connected_ || id == ZMQ_EVENT_CONNECTED || id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ++handshakes_;
  }
}

bool ConnectionWatch::connected() {
  Drain();
  return connected_;
}

bool ConnectionWatch::handshaken() { return handshakes() > 0; }

size_t ConnectionWatch::handshakes() {
  Drain();
  return handshakes_;
}

std::string NoAnswerMessage(const std::string& url, std::chrono::milliseconds waited, ConnectionWatch& watch,
                            const std::filesystem::path& connection_file) {
  std::string file = connection_file.empty() ? std::string("the connection info") : connection_file.string();
  std::string message = "no answer from the controller at " + url + " within " + std::to_string(waited.count()) + " ms: ";
  if (watch.handshaken()) {
    message += "it is reachable but did not answer: the key or signature_scheme in " + file +
               " may not match the running controller's (the controller then logs \"invalid signature\")";
  } else if (watch.connected()) {
    message += "something accepts connections there but did not complete a ZeroMQ handshake (" + file +
               " may name the wrong address, its curve_serverkey may not match, or an ssh tunnel's far end is closed)";
  } else {
    message += "nothing is listening there: the controller is not running (is " + file + " stale?)";
  }
  if (!connection_file.empty()) message += ClusterRecordNote(connection_file);
  return message;
}

}  // namespace ipp::protocol

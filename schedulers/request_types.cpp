#include "schedulers/request_types.hpp"

#include <array>

#include "protocol/errors.hpp"

namespace ipp::schedulers {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 2> kTaskRequests = {"apply_request", "execute_request"};
// ipykernel's shell requests (Kernel.msg_types), ipyparallel's apply_request, our engines'
// clear_request on shell, and the comm messages (which expect no reply and hold nothing).
constexpr std::array<std::string_view, 15> kShellRequests = {
    "apply_request",      "execute_request",    "kernel_info_request", "clear_request",
    "complete_request",   "inspect_request",    "history_request",     "comm_info_request",
    "connect_request",    "shutdown_request",   "is_complete_request", "interrupt_request",
    "comm_open",          "comm_msg",           "comm_close"};

// Requests of the hub's query channel (ipyparallel's Hub.query_handlers), often sent to a
// scheduler's port by mistake.
constexpr std::array<std::string_view, 7> kHubRequests = {"queue_request",   "result_request", "purge_request",
                                                          "db_request",      "history_request", "resubmit_request",
                                                          "connection_request"};

template <size_t N>
bool Contains(const std::array<std::string_view, N>& types, std::string_view msg_type) {
  for (std::string_view t : types) {
    if (t == msg_type) return true;
  }
  return false;
}

std::string_view Name(RequestChannel channel) {
  switch (channel) {
    case RequestChannel::kTask: return "task";
    case RequestChannel::kBroadcast: return "broadcast";
    case RequestChannel::kMux: return "MUX";
  }
  return "?";
}

}  // namespace

bool Carries(RequestChannel channel, std::string_view msg_type) {
  return channel == RequestChannel::kMux ? Contains(kShellRequests, msg_type) : Contains(kTaskRequests, msg_type);
}

std::string ReplyType(std::string_view request_type) {
  constexpr std::string_view kSuffix = "_request";
  if (request_type.size() <= kSuffix.size() || !request_type.ends_with(kSuffix)) return "apply_reply";
  return std::string(request_type.substr(0, request_type.size() - kSuffix.size())) + "_reply";
}

protocol::Frames Refusal(protocol::Session& session, RequestChannel channel, protocol::RawMessage& raw,
                         std::string_view msg_type) {
  std::string evalue = "the " + std::string(Name(channel)) + " channel does not carry '" + std::string(msg_type) + "'";
  evalue += channel == RequestChannel::kMux ? " (it carries shell requests to one engine: apply_request, execute_request, "
                                              "kernel_info_request...)"
                                            : " (it carries apply_request and execute_request)";
  if (Contains(kHubRequests, msg_type)) evalue += "; it is a request for the hub's query channel";
  Result<json> header = raw.parse_object(protocol::RawMessage::kHeader);
  protocol::Message reply = session.make("apply_reply", protocol::ErrorContent("InvalidRequest", evalue),
                                         header.ok() ? *header : json::object(),
                                         {{"status", "error"}, {"dependencies_met", true}, {"engine", ""}});
  reply.identities.emplace_back(raw.identity(0).data(), raw.identity(0).size());
  return session.serialize(std::move(reply));
}

}  // namespace ipp::schedulers

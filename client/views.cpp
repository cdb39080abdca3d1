// The views: how each kind of request is addressed (DirectView: named engines; LoadBalancedView:
// the task scheduler; BroadcastView: one message fanned out by the broadcast scheduler).
#include "ipp/client.hpp"

#include <filesystem>

#include "client/io_thread.hpp"
#include "protocol/json_fields.hpp"

namespace ipp {

using detail::Channel;
using detail::Outgoing;

namespace {
// items[begin, end) as a JSON array.
Json Slice(const std::vector<Json>& items, size_t begin, size_t end) {
  return Json(std::vector<Json>(items.begin() + static_cast<long>(begin), items.begin() + static_cast<long>(end)));
}

// The arguments of ipp.map for items[begin, end), as JSON text. (The chunk is dumped in one
// call: dumping item by item cost a serializer and a string per item, a third of a 1000-item
// chunk's time.)
std::string MapArgs(const std::string& function, const std::vector<Json>& items, size_t begin, size_t end) {
  return "{\"function\":" + protocol::JsonString(function) + ",\"items\":" + Slice(items, begin, end).dump() + "}";
}

// Splits n items into k contiguous parts as even as possible (ipyparallel's Map partition).
std::vector<std::pair<size_t, size_t>> Partition(size_t n, size_t k) {
  std::vector<std::pair<size_t, size_t>> parts;
  size_t start = 0;
  for (size_t i = 0; i < k; ++i) {
    size_t len = n / k + (i < n % k ? 1 : 0);
    parts.emplace_back(start, start + len);
    start += len;
  }
  return parts;
}
}  // namespace

AsyncResult DirectView::apply(const std::string& function, Json args, std::vector<Buffer> buffers) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    std::string uuid = impl.UuidOf(id);
    if (uuid.empty()) return impl.NoEngine(id);
    Outgoing o = impl.Call(Channel::kMux, function, args, buffers);
    o.engine_uuid = uuid;
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

AsyncResult DirectView::map(const std::string& function, const std::vector<Json>& items) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  auto parts = Partition(items.size(), targets_.size());
  for (size_t i = 0; i < targets_.size(); ++i) {
    std::string uuid = impl.UuidOf(targets_[i]);
    if (uuid.empty()) return impl.NoEngine(targets_[i]);
    Outgoing o = impl.CallText(Channel::kMux, "ipp.map", MapArgs(function, items, parts[i].first, parts[i].second), {});
    o.engine_uuid = uuid;
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out), /*flatten=*/true);
}

AsyncResult DirectView::execute(const std::string& command, const Json& user_expressions, bool silent) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    Outgoing o = impl.Request(Channel::kMux, "execute_request",
                              {{"code", command}, {"silent", silent}, {"store_history", false},
                               {"user_expressions", user_expressions}, {"allow_stdin", false}, {"stop_on_error", false}},
                              impl.UuidOf(id));
    if (o.engine_uuid.empty()) return impl.NoEngine(id);
    o.needs_idle = true;  // complete once all its output has arrived
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

namespace {
Status Wait(const AsyncResult& r, Millis timeout) { return r.result(timeout).status(); }
}  // namespace

Status DirectView::push(const std::map<std::string, Json>& values, Millis timeout) {
  Json v = Json::object();
  for (auto& [k, val] : values) v[k] = val;
  return Wait(apply("ipp.push", {{"values", v}}), timeout);
}

Status DirectView::push_buffer(const std::string& name, Buffer buffer, Millis timeout) {
  return Wait(apply("ipp.push", {{"values", {{name, nullptr}}}, {"buffer_names", {name}}}, {std::move(buffer)}), timeout);
}

Result<std::vector<Json>> DirectView::pull(const std::vector<std::string>& names, Millis timeout) {
  Result<std::vector<Json>> replies = apply("ipp.pull", {{"names", names}}).result(timeout);
  if (!replies.ok()) return replies.status();
  std::vector<Json> out;
  for (Json& v : *replies) out.push_back(v.value("values", Json::object()));
  return out;
}

Status DirectView::scatter(const std::string& name, const std::vector<Json>& items, Millis timeout) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  auto parts = Partition(items.size(), targets_.size());
  for (size_t i = 0; i < targets_.size(); ++i) {
    Json chunk = Slice(items, parts[i].first, parts[i].second);
    Outgoing o = impl.Call(Channel::kMux, "ipp.push", {{"values", {{name, chunk}}}}, {});
    o.engine_uuid = impl.UuidOf(targets_[i]);
    if (o.engine_uuid.empty()) return Wait(impl.NoEngine(targets_[i]), timeout);
    out.push_back(std::move(o));
  }
  return Wait(impl.Submit(std::move(out)), timeout);
}

Result<std::vector<Json>> DirectView::gather(const std::string& name, Millis timeout) {
  Result<std::vector<Json>> parts = pull({name}, timeout);
  if (!parts.ok()) return parts.status();
  std::vector<Json> out;
  for (Json& p : *parts) {
    Json& v = p[name];
    if (v.is_array()) {
      for (auto& item : v) out.push_back(item);
    } else {
      out.push_back(v);
    }
  }
  return out;
}

AsyncResult DirectView::load_plugin(const std::string& path) {
  // Into the native engines only, as `ipp load`: a Python engine has no plugins, and the stock
  // one answers a native call with a bare "not enough buffers!" AssertionError.
  std::vector<int> native;
  if (!targets_.empty()) {
    std::map<int, EngineKind> kinds = client_->engine_kinds(targets_);
    for (int id : targets_) {
      if (kinds[id] != EngineKind::kPython) native.push_back(id);
    }
  }
  if (native.empty() && !targets_.empty()) {
    return client_->impl_->Failed("ValueError", "no native engines in this view (Python engines have no plugins)");
  }
  return DirectView(client_, std::move(native)).apply("ipp.load", {{"path", detail::PluginPath(path)}});
}

AsyncResult DirectView::kernel_info() {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    Outgoing o = impl.Request(Channel::kControl, "kernel_info_request", Json::object(), impl.UuidOf(id));
    if (o.engine_uuid.empty()) return impl.NoEngine(id);
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

AsyncResult DirectView::abort(const std::vector<std::string>& msg_ids) {
  auto& impl = *client_->impl_;
  std::vector<Outgoing> out;
  for (int id : targets_) {
    // An empty list, not null, for none: the stock engines iterate it (see Client::abort).
    Outgoing o = impl.Request(Channel::kControl, "abort_request", {{"msg_ids", msg_ids}}, impl.UuidOf(id));
    if (o.engine_uuid.empty()) return impl.NoEngine(id);
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out));
}

namespace {
Json DependencyJson(const std::vector<std::string>& ids, bool all, bool success, bool failure) {
  return {{"dependencies", ids}, {"all", all}, {"success", success}, {"failure", failure}};
}
}  // namespace

static Json TaskMetadata(detail::ClientImpl& impl, const TaskOptions& o) {
  Json targets = Json::array();
  for (int id : o.targets) targets.push_back(impl.UuidOf(id));
  Json md = {{"targets", targets}, {"retries", o.retries}};
  if (!o.after.empty()) md["after"] = DependencyJson(o.after, o.after_all, o.success, o.failure);
  if (!o.follow.empty()) md["follow"] = DependencyJson(o.follow, o.follow_all, o.success, o.failure);
  // ipyparallel's metadata gives seconds.
  if (o.timeout > Millis(0)) md["timeout"] = std::chrono::duration<double>(o.timeout).count();
  if (!o.requirements.empty()) md["requires"] = o.requirements;
  if (!o.label.empty()) md["label"] = o.label;
  if (o.priority != 0) md["priority"] = o.priority;
  return md;
}

AsyncResult LoadBalancedView::apply(const std::string& function, Json args, std::vector<Buffer> buffers) {
  auto& impl = *client_->impl_;
  Outgoing o = impl.Call(Channel::kTask, function, std::move(args), std::move(buffers));
  o.metadata = std::make_shared<const std::string>(TaskMetadata(impl, options_).dump());
  std::vector<Outgoing> out;
  out.push_back(std::move(o));
  return impl.Submit(std::move(out));
}

AsyncResult LoadBalancedView::map(const std::string& function, const std::vector<Json>& items, size_t chunksize,
                                  bool ordered) {
  auto& impl = *client_->impl_;
  if (chunksize == 0) chunksize = 1;
  auto md = std::make_shared<const std::string>(TaskMetadata(impl, options_).dump());
  std::vector<Outgoing> out;
  out.reserve(items.size() / chunksize + 1);
  for (size_t start = 0; start < items.size(); start += chunksize) {
    size_t end = std::min(items.size(), start + chunksize);
    Outgoing o = impl.CallText(Channel::kTask, "ipp.map", MapArgs(function, items, start, end), {});
    o.metadata = md;
    out.push_back(std::move(o));
  }
  return impl.Submit(std::move(out), /*flatten=*/true, /*unordered=*/!ordered);
}

AsyncResult LoadBalancedView::shell(const std::string& command, Millis timeout, bool check) {
  return apply("ipp.shell",
               {{"command", command}, {"timeout", std::chrono::duration<double>(timeout).count()}, {"check", check}});
}

AsyncResult BroadcastView::apply(const std::string& function, Json args, std::vector<Buffer> buffers) {
  auto& impl = *client_->impl_;
  Outgoing o = impl.Call(Channel::kBroadcast, function, std::move(args), std::move(buffers));
  Json targets = Json::array();
  for (int id : targets_) {
    std::string uuid = impl.UuidOf(id);
    if (uuid.empty()) return impl.NoEngine(id);
    targets.push_back({uuid, id});
    o.reply_ids.push_back(o.msg_id + "_" + uuid);  // each engine answers under its own id
  }
  o.metadata = std::make_shared<const std::string>(
      Json{{"targets", targets}, {"is_broadcast", true}, {"is_coalescing", false}}.dump());
  std::vector<Outgoing> out;
  out.push_back(std::move(o));
  return impl.Submit(std::move(out));
}

}  // namespace ipp

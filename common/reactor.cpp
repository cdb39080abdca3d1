#include "common/reactor.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace ipp {

void Reactor::add(zmq::socket_ref socket, Handler on_readable) {
  int fd = -1;
  size_t size = sizeof fd;
  if (zmq_getsockopt(socket.handle(), ZMQ_FD, &fd, &size) != 0) throw zmq::error_t();
  add_item({socket.handle(), fd}, std::move(on_readable));
}

void Reactor::add_fd(int fd, Handler on_readable) { add_item({nullptr, fd}, std::move(on_readable)); }

void Reactor::add_item(Item item, Handler on_readable) {
  items_.push_back(item);
  pollfds_.push_back({item.fd, POLLIN, 0});
  handlers_.push_back(std::make_shared<Handler>(std::move(on_readable)));
  ask_all_ = true;
}

void Reactor::remove(zmq::socket_ref socket) {
  for (const Item& item : items_) {
    if (item.socket == socket.handle()) return remove_item(item);
  }
}

void Reactor::remove_item(Item item) {
  for (size_t i = 0; i < items_.size(); ++i) {
    if (items_[i].socket == item.socket && items_[i].fd == item.fd) {
      items_.erase(items_.begin() + static_cast<long>(i));
      pollfds_.erase(pollfds_.begin() + static_cast<long>(i));
      handlers_.erase(handlers_.begin() + static_cast<long>(i));
      return;
    }
  }
}

Reactor::TimerId Reactor::every(std::chrono::milliseconds period, Handler fn) {
  TimerId id = next_timer_++;
  timers_.emplace(id, Timer{Clock::now() + period, period, std::move(fn)});
  return id;
}

Reactor::TimerId Reactor::after(std::chrono::milliseconds delay, Handler fn) {
  TimerId id = next_timer_++;
  timers_.emplace(id, Timer{Clock::now() + delay, std::chrono::milliseconds(0), std::move(fn)});
  return id;
}

void Reactor::cancel(TimerId id) { timers_.erase(id); }

void Reactor::invoke(const Handler& fn, const char* what) {
  try {
    fn();
  } catch (const zmq::error_t& e) {
    if (e.num() == ETERM) {
      stopped_ = true;
      return;
    }
    log_->error("{} handler failed: zmq: {}", what, e.what());
  } catch (const std::exception& e) {
    log_->error("{} handler failed: {}", what, e.what());
  }
}

void Reactor::run_timers() {
  auto now = Clock::now();
  std::vector<TimerId> due;
  for (auto& [id, t] : timers_) {
    if (t.due <= now) due.push_back(id);
  }
  for (TimerId id : due) {
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled by an earlier timer
    Handler fn = it->second.fn;
    if (it->second.period.count() > 0) {
      it->second.due = now + it->second.period;
    } else {
      timers_.erase(it);
    }
    invoke(fn, "timer");
  }
}

std::chrono::milliseconds Reactor::until_next_timer(std::chrono::milliseconds at_most) const {
  if (timers_.empty()) return at_most;
  auto next = std::min_element(timers_.begin(), timers_.end(), [](auto& a, auto& b) {
                return a.second.due < b.second.due;
              })->second.due;
  // Rounded up: a timer 0.4 ms away truncated to a 0 ms poll would spin for that 0.4 ms, and
  // with 20 ms timers that spin cost a few per cent of a core in every reactor, idle or not.
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
  return std::clamp(wait, std::chrono::milliseconds(0), at_most);
}

bool Reactor::has_input(void* socket) {
  int events = 0;
  size_t size = sizeof events;
  if (zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) != 0) {
    if (zmq_errno() == ETERM) stopped_ = true;
    return false;
  }
  return (events & ZMQ_POLLIN) != 0;
}

void Reactor::run_once(std::chrono::milliseconds timeout) {
  ask_all_ = true;  // the caller may have used the sockets since the last round
  step(timeout);
}

namespace {
// The sockets the handlers and timers of the reactor round running on this thread have used.
thread_local std::vector<void*>* t_used = nullptr;

// Points t_used at a round's list for as long as the round runs its handlers and timers.
class UseScope {
 public:
  explicit UseScope(std::vector<void*>* list) : outer_(std::exchange(t_used, list)) {}
  ~UseScope() { t_used = outer_; }
  UseScope(const UseScope&) = delete;
  UseScope& operator=(const UseScope&) = delete;

 private:
  std::vector<void*>* outer_;
};
}  // namespace

void Reactor::NoteUse(void* socket) {
  if (t_used && std::find(t_used->begin(), t_used->end(), socket) == t_used->end()) t_used->push_back(socket);
}

void Reactor::NoteDrained(void* socket) {
  if (t_used) std::erase(*t_used, socket);
}

void Reactor::step(std::chrono::milliseconds timeout) {
  // Every socket is asked now and then, also while others keep the loop busy: should a signal
  // ever go unseen (a registered socket used outside its handler without NoteUse), its message
  // waits that long, not for ever.
  auto now = Clock::now();
  if (now - asked_all_at_ >= kAskAllEvery) ask_all_ = true;
  if (ask_all_) asked_all_at_ = now;
  // Handlers may add or remove sockets: what is ready is a snapshot, found again by identity.
  std::vector<Item> ready;
  for (const Item& item : items_) {
    bool ask = ask_all_ || std::find(ask_.begin(), ask_.end(), item.socket) != ask_.end();
    if (item.socket && ask && has_input(item.socket)) ready.push_back(item);
  }
  ask_all_ = false;
  ask_.clear();
  if (stopped_) return;
  // With work in hand only a glance at the descriptors (the others, and stop flags, are not
  // starved); otherwise a wait for the next one or the next timer.
  int wait = ready.empty() ? static_cast<int>(until_next_timer(timeout).count()) : 0;
  int n = poll(pollfds_.data(), pollfds_.size(), wait);
  if (n < 0 && errno != EINTR) log_->error("poll failed: {}", strerror(errno));
  // A wait that ended with nothing to do asks every socket next time (see kAskAllEvery).
  if (n == 0 && ready.empty()) ask_all_ = true;
  std::vector<Item> closed;
  for (size_t i = 0; n > 0 && i < pollfds_.size(); ++i) {
    const Item& item = items_[i];
    if (pollfds_[i].revents & POLLNVAL) closed.push_back(item);
    if (!(pollfds_[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
    bool listed = std::any_of(ready.begin(), ready.end(), [&](const Item& r) { return r.socket == item.socket && r.fd == item.fd; });
    // A socket's descriptor firing means only "ask it" (reading ZMQ_EVENTS resets it).
    if (!listed && (!item.socket || has_input(item.socket))) ready.push_back(item);
  }
  // A descriptor closed while registered would make every wait return at once, for ever.
  for (const Item& c : closed) {
    log_->error("{} {} was closed while registered; no longer watched", c.socket ? "the socket on descriptor" : "descriptor", c.fd);
    remove_item(c);
  }
  // Asked next round: the sockets whose handlers ran (they may have left messages), and those
  // the handlers and timers used (NoteUse).
  UseScope scope(&ask_);
  for (const Item& r : ready) {
    if (r.socket) ask_.push_back(r.socket);
  }
  dispatch(ready);
  run_timers();
}

void Reactor::dispatch(const std::vector<Item>& ready) {
  for (const Item& r : ready) {
    for (size_t i = 0; i < items_.size(); ++i) {
      if (items_[i].socket == r.socket && items_[i].fd == r.fd) {
        std::shared_ptr<Handler> fn = handlers_[i];
        invoke(*fn, "socket");
        break;
      }
    }
  }
}

void Reactor::run() {
  ask_all_ = true;  // the sockets may have been used since the last run
  while (!stopped_) step(std::chrono::milliseconds(1000));
}

}  // namespace ipp

#include "common/reactor.hpp"

#include <algorithm>
#include <utility>

namespace ipp {

void Reactor::add(zmq::socket_ref socket, Handler on_readable) {
  items_.push_back({socket.handle(), 0, ZMQ_POLLIN, 0});
  handlers_.push_back(std::make_shared<Handler>(std::move(on_readable)));
}

void Reactor::add_fd(int fd, Handler on_readable) {
  items_.push_back({nullptr, fd, ZMQ_POLLIN, 0});
  handlers_.push_back(std::make_shared<Handler>(std::move(on_readable)));
}

void Reactor::remove(zmq::socket_ref socket) {
  for (size_t i = 0; i < items_.size(); ++i) {
    if (items_[i].socket == socket.handle()) {
      items_.erase(items_.begin() + static_cast<long>(i));
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

void Reactor::run_once(std::chrono::milliseconds timeout) {
  if (!timers_.empty()) {
    auto next = std::min_element(timers_.begin(), timers_.end(), [](auto& a, auto& b) {
                  return a.second.due < b.second.due;
                })->second.due;
    // Rounded up: a timer 0.4 ms away truncated to a 0 ms poll would spin for that 0.4 ms, and
    // with 20 ms timers that spin cost a few per cent of a core in every reactor, idle or not.
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
    timeout = std::clamp(wait, std::chrono::milliseconds(0), timeout);
  }
  try {
    zmq::poll(items_.data(), items_.size(), timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() == ETERM) {
      stopped_ = true;
      return;
    }
    if (e.num() != EINTR) log_->error("poll failed: {}", e.what());
    return;
  }
  // Handlers may add or remove sockets: iterate over a snapshot of what was ready (a socket,
  // or a file descriptor with no socket).
  std::vector<std::pair<void*, int>> ready;
  for (auto& item : items_) {
    if (item.revents & ZMQ_POLLIN) ready.emplace_back(item.socket, item.socket ? 0 : item.fd);
  }
  for (auto [socket, fd] : ready) {
    for (size_t i = 0; i < items_.size(); ++i) {
      if (items_[i].socket == socket && (socket || items_[i].fd == fd)) {
        std::shared_ptr<Handler> fn = handlers_[i];
        invoke(*fn, "socket");
        break;
      }
    }
  }
  run_timers();
}

void Reactor::run() {
  while (!stopped_) run_once(std::chrono::milliseconds(1000));
}

}  // namespace ipp

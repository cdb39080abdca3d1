// Ctrl-C in the commands that run many tasks (map, farm): the first asks the command to wind
// down, the second exits at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "client/ipp_cmd/options.hpp"

namespace ipp_cmd {

// Whether Ctrl-C was pressed once; the commands' waits poll it.
bool Interrupted();

// Connect() with SIGINT caught (see wind_down.cpp). Call from the main thread.
std::unique_ptr<ipp::Client> ConnectInterruptible(const Common& c, std::string* error);

// After a first Ctrl-C (or ipp map's --timeout): aborts what of `results` has not started, then
// interrupts what runs once it has had `before_signal` to end, and waits `after_signal` for its
// answers (see wind_down.cpp). Returns the msg_ids still unanswered after that.
std::vector<std::string> WindDown(ipp::Client& client, const std::vector<ipp::AsyncResult>& results,
                                  ipp::Millis before_signal, ipp::Millis after_signal);

constexpr ipp::Millis kWindDownGrace{3000};

}  // namespace ipp_cmd

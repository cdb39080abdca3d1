// The engines a subcommand addresses (--targets), and waiting for their answers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "client/ipp_cmd/options.hpp"

namespace ipp_cmd {

// "all", "0,2,5", "1-3", "0,4-6", each id one of `all`: the error message, "" when `*out` holds them.
std::string ParseTargets(const std::string& spec, const std::vector<int>& all, std::vector<int>* out);

// "0-3,5"
std::string FormatIds(std::vector<int> ids);

// The engines a native command runs on (see targets.cpp); false with `*error` set if none.
bool NativeTargets(ipp::Client& client, const std::string& spec, double timeout, std::vector<int>* out,
                   std::string* error);

// Connects and picks the targets of a native command (see NativeTargets); null on error.
std::unique_ptr<ipp::Client> ConnectForNative(const Common& c, const std::string& spec, std::vector<int>* targets,
                                              std::string* error);

// Waits for `r` showing on stderr which of `targets` it still waits for; `timeout` > 0 bounds
// the wait (seconds), and so does a Ctrl-C caught by ConnectInterruptible. False if either came.
bool WaitShowingProgress(const ipp::AsyncResult& r, const std::vector<int>& targets, double timeout);

}  // namespace ipp_cmd

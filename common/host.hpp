// This machine's name, as gethostname() gives it: what the controller writes as its location
// and engines report as theirs.
#pragma once

#include <string>

namespace ipp {

// "localhost" if gethostname() fails.
std::string HostName();

}  // namespace ipp

#include "common/host.hpp"

#include <unistd.h>

namespace ipp {

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

}  // namespace ipp

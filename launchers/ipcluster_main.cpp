// ipcluster: not implemented yet (see the README's "not done yet"); it parses options and says so.
#include <iostream>

#include "common/cli.hpp"

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  po::options_description options("Options");
  po::variables_map vm;
  int rc = ipp::cli::Parse(argc, argv, "usage: ipcluster [options]", options, vm);
  if (rc >= 0) return rc;
  std::cerr << "ipcluster: not implemented yet in this build" << std::endl;
  return 1;
}

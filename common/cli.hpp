// Helpers shared by the executables' option parsing (Boost.Program_options).
#pragma once

#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace ipp::cli {

namespace po = boost::program_options;

// Parses argv against `options`. Prints usage and returns 0 for --help, prints a one-line error
// and returns 2 for bad arguments, returns -1 to go on. Unknown `--Class.trait=value` arguments
// (ipyparallel's traitlets config) are collected into `*traitlets` when it is given, else rejected.
int Parse(int argc, char** argv, const std::string& usage, const po::options_description& options,
          po::variables_map& vm, std::vector<std::string>* traitlets = nullptr,
          const po::positional_options_description* positional = nullptr);

}  // namespace ipp::cli

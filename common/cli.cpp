#include "common/cli.hpp"

namespace ipp::cli {

int Parse(int argc, char** argv, const std::string& usage, const po::options_description& options,
          po::variables_map& vm, std::vector<std::string>* traitlets,
          const po::positional_options_description* positional) {
  po::options_description all(options);
  all.add_options()("help,h", "show this help and exit");
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(all);
    if (positional) parser.positional(*positional);
    if (traitlets) parser.allow_unregistered();
    po::parsed_options parsed = parser.run();
    if (traitlets) {
      for (const std::string& arg : po::collect_unrecognized(parsed.options, po::include_positional)) {
        if (positional && arg.rfind("--", 0) != 0) continue;
        traitlets->push_back(arg);
      }
    }
    po::store(parsed, vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << all << std::endl;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << argv[0] << ": " << e.what() << "\n(see " << argv[0] << " --help)" << std::endl;
    return 2;
  }
  return -1;
}

}  // namespace ipp::cli

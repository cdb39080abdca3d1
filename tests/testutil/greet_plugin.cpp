// A plugin for the tests, beside the example ones that test clusters load at start: one
// function, so that a test can tell whether an engine loaded it later.
#include <string>

#include <ipp/engine_plugin.hpp>

IPP_PLUGIN(registry) {
  registry.add("test.greet", [](const ipp::Json& args, ipp::CallContext& ctx) {
    return ipp::Json("hello " + args.get<std::string>() + " from engine " + std::to_string(ctx.engine_id()));
  }, "greet the argument (a string), naming the engine");
}

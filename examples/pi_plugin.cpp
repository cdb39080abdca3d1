// Example plugin: Monte Carlo estimate of pi, and a vector sum over a binary buffer.
//
//   ipengine --load build/lib/libipp_example_pi.so
//   ipp map pi.sample - <<< '1000000'        (or from C++: view.call("pi.sample", 1000000))
#include <cstring>
#include <stdexcept>
#include <string>
#include <random>

#include <ipp/engine_plugin.hpp>

IPP_PLUGIN(registry) {
  // args: number of samples (or {"samples": n, "seed": s}). Returns the number inside the circle.
  registry.add("pi.sample", [](const ipp::Json& args, ipp::CallContext& ctx) {
    long samples = args.is_object() ? args.at("samples").get<long>() : args.get<long>();
    if (samples < 0) throw std::invalid_argument("samples must be 0 or more, not " + std::to_string(samples));
    unsigned seed = args.is_object() && args.contains("seed") ? args["seed"].get<unsigned>()
                                                              : std::random_device{}() + ctx.engine_id();
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    long inside = 0;
    for (long i = 0; i < samples; ++i) {
      double x = u(rng), y = u(rng);
      inside += x * x + y * y <= 1.0;
      if ((i & 0xfffff) == 0 && ctx.interrupted()) throw std::runtime_error("interrupted");
    }
    return ipp::Json{{"inside", inside}, {"samples", samples}};
  }, "sample points in the unit square; count those inside the quarter circle");

  // Sums the doubles in the first buffer (zero-copy in) and returns them doubled as a buffer.
  registry.add("vec.sum_and_double", [](const ipp::Json&, ipp::CallContext& ctx) {
    if (ctx.buffers().empty()) throw std::invalid_argument("send one buffer of doubles");
    const ipp::Buffer& in = ctx.buffers()[0];
    size_t n = in.size() / sizeof(double);
    std::vector<char> out(n * sizeof(double));
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, in.data() + i * sizeof(double), sizeof v);
      sum += v;
      v *= 2;
      std::memcpy(out.data() + i * sizeof(double), &v, sizeof v);
    }
    ctx.add_buffer(ipp::Buffer(std::move(out)));
    return ipp::Json(sum);
  }, "sum a buffer of doubles; return the sum and the buffer doubled");

  // Sums a JSON array of numbers, saying how many it summed (ctx.print: the client shows it).
  registry.add("demo.total", [](const ipp::Json& args, ipp::CallContext& ctx) {
    if (!args.is_array()) throw std::domain_error("demo.total wants an array of numbers, not " + args.dump());
    double total = 0;
    for (const auto& x : args) total += x.get<double>();
    ctx.print("summed " + std::to_string(args.size()) + " numbers\n");
    return ipp::Json(total);
  }, "sum an array of numbers (prints how many)");

  registry.add("fail.always", [](const ipp::Json&, ipp::CallContext&) -> ipp::Json {
    throw std::domain_error("this function always fails");
  }, "throws, to show how errors come back");
}

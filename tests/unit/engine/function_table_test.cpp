#include "engine/function_table.hpp"

#include <chrono>
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.hpp"

namespace ipp::engine {
namespace {

const std::string kPiPlugin = std::string(IPP_BIN_DIR) + "/../lib/libipp_example_pi.so";

class NullContext : public CallContext {
 public:
  int engine_id() const override { return 3; }
  int mpi_rank() const override { return 0; }
  int mpi_size() const override { return 1; }
  const void* mpi_comm() const override { return nullptr; }
  const std::vector<Buffer>& buffers() const override { return in; }
  void add_buffer(Buffer b) override { out.push_back(std::move(b)); }
  Namespace& ns() override { return space; }
  void print(std::string_view t) override { printed += t; }
  void print_error(std::string_view t) override { printed += t; }
  bool interrupted() const override { return false; }
  std::vector<Buffer> in, out;
  Namespace space;
  std::string printed;
};

TEST(FunctionTableTest, AddFindAndReplace) {
  FunctionTable table;
  table.add("twice", [](const Json& a, CallContext&) { return Json(a.get<int>() * 2); }, "doubles");
  NullContext ctx;
  ASSERT_NE(table.find("twice"), nullptr);
  EXPECT_EQ(table.find("twice")->function(21, ctx), 42);
  table.add("twice", [](const Json& a, CallContext&) { return Json(a.get<int>() + a.get<int>() + 1); });
  EXPECT_EQ(table.find("twice")->function(1, ctx), 3);
  EXPECT_EQ(table.find("missing"), nullptr);
  EXPECT_EQ(table.List().size(), 1u);
}

TEST(FunctionTableTest, LoadsExamplePluginAndRunsIt) {
  FunctionTable table;
  auto added = table.Load(kPiPlugin);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_NE(std::find(added->begin(), added->end(), "pi.sample"), added->end());
  NullContext ctx;
  Json r = table.find("pi.sample")->function({{"samples", 100000}, {"seed", 7}}, ctx);
  double pi = 4.0 * r["inside"].get<double>() / r["samples"].get<double>();
  EXPECT_NEAR(pi, 3.1416, 0.05);
  EXPECT_THROW(table.find("pi.sample")->function({{"samples", -5}}, ctx), std::invalid_argument);
  EXPECT_THROW(table.find("pi.sample")->function(-1, ctx), std::invalid_argument);
  std::vector<double> v = {1.5, 2.5, 3};
  ctx.in.emplace_back(std::vector<char>(reinterpret_cast<char*>(v.data()), reinterpret_cast<char*>(v.data() + 3)));
  EXPECT_EQ(table.find("vec.sum_and_double")->function(nullptr, ctx), 7.0);
  ASSERT_EQ(ctx.out.size(), 1u);
  EXPECT_EQ(ctx.out[0].as<double>()[2], 6.0);
  EXPECT_THROW(table.find("fail.always")->function(nullptr, ctx), std::domain_error);
  EXPECT_EQ(table.List()[0]["origin"].get<std::string>().find("libipp_example_pi.so") != std::string::npos, true);
}

TEST(FunctionTableTest, BadLibrariesAreClearErrors) {
  FunctionTable table;
  auto missing = table.Load("/nonexistent/libnothing.so");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos);
  auto no_entry = table.Load("/lib/x86_64-linux-gnu/libm.so.6");
  ASSERT_FALSE(no_entry.ok());
  EXPECT_NE(no_entry.status().message().find("IPP_PLUGIN"), std::string::npos);
  auto not_a_library = table.Load("/etc/hostname");
  ASSERT_FALSE(not_a_library.ok());
  EXPECT_NE(not_a_library.status().message().find("cannot load"), std::string::npos);
}

// A plugin loaded again: unchanged, it gives its names and nothing else happens; rebuilt since,
// it is refused (dlopen would keep running the old code); a second library defining the same
// names is refused and leaves the first one's functions in place.
TEST(FunctionTableTest, ReloadsAndNameClashesAreRefusedWithTheReason) {
  testutil::TempDir dir;
  const auto copy = dir.path() / "libpi_copy.so";
  std::filesystem::copy_file(kPiPlugin, copy);
  FunctionTable table;
  ASSERT_TRUE(table.Load(copy.string()).ok());
  const size_t loads = table.loads();
  auto again = table.Load((dir.path() / "." / "libpi_copy.so").string());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_NE(std::find(again->begin(), again->end(), "pi.sample"), again->end());
  EXPECT_EQ(table.loads(), loads) << "an unchanged file is not loaded twice";
  EXPECT_TRUE(table.Loaded(copy.string()));

  std::filesystem::last_write_time(copy, std::filesystem::last_write_time(copy) + std::chrono::seconds(5));
  auto rebuilt = table.Load(copy.string());
  ASSERT_FALSE(rebuilt.ok());
  EXPECT_NE(rebuilt.status().message().find("changed since this engine loaded it"), std::string::npos)
      << rebuilt.status().message();

  auto clash = table.Load(kPiPlugin);  // the same functions from another file
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("would replace '"), std::string::npos) << clash.status().message();
  EXPECT_NE(clash.status().message().find(copy.string()), std::string::npos) << clash.status().message();
  EXPECT_EQ(table.find("pi.sample")->origin, copy.lexically_normal().string());
  EXPECT_FALSE(table.Loaded(kPiPlugin));
}

TEST(NamespaceTest, SetGetEraseWithSharedBuffers) {
  Namespace ns;
  Buffer b(std::string("bytes"));
  ns.set("x", Value{Json{1, 2}, {b}});
  ASSERT_NE(ns.get("x"), nullptr);
  EXPECT_EQ(ns.get("x")->data, (Json{1, 2}));
  EXPECT_EQ(ns.get("x")->buffers[0].data(), b.data());  // shared, not copied
  EXPECT_EQ(ns.names(), std::vector<std::string>{"x"});
  EXPECT_TRUE(ns.erase("x"));
  EXPECT_EQ(ns.get("x"), nullptr);
}

}  // namespace
}  // namespace ipp::engine

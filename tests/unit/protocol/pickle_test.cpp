// PickleJson / PickleNativeResult, checked by the real Python that reads them: Debian's
// /usr/bin/python3 unpickles what we write and prints its repr, which names the Python types.
#include "protocol/pickle.hpp"

#include <unistd.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.hpp"

namespace ipp::protocol {
namespace {

using nlohmann::json;
using testutil::kSystemPython;

std::string Hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// Runs `script` with one hex-encoded pickle per line on its stdin file (sys.argv[1]); returns
// what it printed, one line per input line.
std::vector<std::string> RunPython(const std::string& script, const std::vector<std::string>& pickles) {
  testutil::TempDir dir;
  std::ofstream(dir.path() / "script.py") << script;
  {
    std::ofstream in(dir.path() / "pickles.txt");
    for (const auto& p : pickles) in << Hex(p) << "\n";
  }
  std::string output;
  int rc = testutil::RunCommand(
      {kSystemPython, (dir.path() / "script.py").string(), (dir.path() / "pickles.txt").string()}, &output);
  EXPECT_EQ(rc, 0) << output;
  std::vector<std::string> lines;
  std::istringstream stream(output);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

const char* kLoadAndRepr = R"(
import pickle, sys
for line in open(sys.argv[1]):
    print(repr(pickle.loads(bytes.fromhex(line.strip()))))
)";

class PickleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kSystemPython, X_OK) != 0) GTEST_SKIP() << kSystemPython << " not found";
  }
};

TEST_F(PickleTest, PythonLoadsEveryJsonTypeAsItsPlainObject) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::pair<json, std::string>> cases = {
      {nullptr, "None"},
      {true, "True"},
      {false, "False"},
      {0, "0"},
      {255, "255"},
      {256, "256"},
      {65535, "65535"},
      {65536, "65536"},
      {-1, "-1"},
      {2147483647, "2147483647"},
      {-2147483648LL, "-2147483648"},
      {2147483648LL, "2147483648"},
      {-2147483649LL, "-2147483649"},
      {std::numeric_limits<int64_t>::max(), "9223372036854775807"},
      {std::numeric_limits<int64_t>::min(), "-9223372036854775808"},
      {std::numeric_limits<uint64_t>::max(), "18446744073709551615"},
      {9223372036854775808ULL, "9223372036854775808"},
      {0.5, "0.5"},
      {-1.25e300, "-1.25e+300"},
      {0.0, "0.0"},
      {inf, "inf"},
      {-inf, "-inf"},
      {std::nan(""), "nan"},
      {"", "''"},
      {"plain", "'plain'"},
      {"π ≈ 3.14159, 😀, \"quoted\"\n", "'π ≈ 3.14159, 😀, \"quoted\"\\n'"},
      {std::string("a\0b", 3), "'a\\x00b'"},
      {std::string("bad \xff\xc0 utf8 \xed\xa0\x80"), "'bad \ufffd\ufffd utf8 \ufffd\ufffd\ufffd'"},
      {json::array(), "[]"},
      {json::object(), "{}"},
      {json::parse(R"([1, [2, [3, []]], {"k": null}])"), "[1, [2, [3, []]], {'k': None}]"},
      {json::parse(R"({"b": [true, 1.5], "a": {"x": "y"}, "é": -7})"),
       "{'a': {'x': 'y'}, 'b': [True, 1.5], 'é': -7}"},
      {json::binary({0, 1, 255}), "b'\\x00\\x01\\xff'"},
  };
  std::vector<std::string> pickles;
  for (const auto& [value, repr] : cases) pickles.push_back(PickleJson(value));
  std::vector<std::string> got = RunPython(kLoadAndRepr, pickles);
  ASSERT_EQ(got.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(got[i], cases[i].second) << "case " << i << ": " << cases[i].first.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

TEST_F(PickleTest, LongListsAndDeepNestingLoad) {
  json long_list = json::array();
  for (int i = 0; i < 5000; ++i) long_list.push_back(i * 1000003LL);
  json deep = 1;
  for (int i = 0; i < 200; ++i) deep = json::array({deep});
  std::vector<std::string> got = RunPython(R"(
import pickle, sys
lines = [pickle.loads(bytes.fromhex(l.strip())) for l in open(sys.argv[1])]
print(lines[0] == [i * 1000003 for i in range(5000)])
d, depth = lines[1], 0
while isinstance(d, list):
    d, depth = d[0], depth + 1
print(depth, d)
)",
                                           {PickleJson(long_list), PickleJson(deep)});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "True");
  EXPECT_EQ(got[1], "200 1");
}

// What a stock client does with an apply_reply's buffers: deserialize_object per record, each
// consuming its own buffers, as for a coalesced broadcast or results fetched from the hub.
TEST_F(PickleTest, StockDeserializeConsumesExactlyEachResultsBuffers) {
  std::vector<std::string> got = RunPython(R"(
import sys
from ipyparallel.serialize import deserialize_object
parts = [bytes.fromhex(l.strip()) for l in open(sys.argv[1])]
bufs = parts
while bufs:
    obj, bufs = deserialize_object(bufs)
    print(repr(obj))
)",
                                           {
                                               PickleNativeResult({{"n", 1}}, 0),
                                               PickleNativeResult(json::array({1, 2}), 2),
                                               "first",
                                               "second",
                                               PickleNativeResult("last", 0),
                                           });
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "{'n': 1}");
  EXPECT_EQ(got[1], "([1, 2], b'first', b'second')");
  EXPECT_EQ(got[2], "'last'");
}

TEST_F(PickleTest, ResultWithMoreBuffersThanStockReadsConsumesThemAll) {
  std::vector<std::string> pickles = {PickleNativeResult("many", 70)};
  for (int i = 0; i < 70; ++i) pickles.push_back("buf" + std::to_string(i));
  pickles.push_back(PickleNativeResult(nullptr, 0));
  std::vector<std::string> got = RunPython(R"(
import sys
from ipyparallel.serialize import deserialize_object
bufs = [bytes.fromhex(l.strip()) for l in open(sys.argv[1])]
while bufs:
    obj, bufs = deserialize_object(bufs)
    print(repr(obj))
)",
                                           pickles);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "'many'");
  EXPECT_EQ(got[1], "None");
}

}  // namespace
}  // namespace ipp::protocol

// What engines announce (kind, functions, tags, resources) as real ipengines under a real
// ipcontroller, seen through the C++ client; and ipengine's refusal of bad --tag/--resources.
#include <algorithm>

#include <gtest/gtest.h>

#include "ipp/client.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

using namespace std::chrono_literals;

const std::string kIpengine = std::string(IPP_BIN_DIR) + "/ipengine";

class CapabilitiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok()) << cluster_.Log("controller.log");
    // A tagged engine with the pi plugin, and a plain one without any plugin.
    cluster_.AddEngine({"--tag", "gpu", "--tag=bigmem", "--resources", "gpus=2,mem=64"});
    plain_ = std::make_unique<testutil::Process>(
        std::vector<std::string>{kIpengine, "--profile-dir=" + cluster_.profile_dir().string(), "--log-level=DEBUG"},
        dir_.path() / "plain-engine.log");
    auto c = Client::Connect(ClientOptions::File(cluster_.client_file().string()));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    ASSERT_TRUE(client_->wait_for_engines(2, 30s).ok()) << cluster_.Log("engine-0.log");
  }
  // Engine `id`'s function names, as it lists them itself.
  size_t FunctionsOn(int id) { return client_->direct_view({id}).apply("ipp.functions").get_one(10s).size(); }
  const EngineInfo* Find(const std::vector<EngineInfo>& engines, bool tagged) {
    auto it = std::find_if(engines.begin(), engines.end(), [&](const EngineInfo& e) { return e.tags.empty() != tagged; });
    return it == engines.end() ? nullptr : &*it;
  }

  testutil::LocalCluster cluster_{0};
  testutil::TempDir dir_;
  std::unique_ptr<testutil::Process> plain_;
  std::unique_ptr<Client> client_;
};

TEST_F(CapabilitiesTest, EnginesShowKindFunctionsTagsAndResources) {
  Result<std::vector<EngineInfo>> engines = client_->engines();
  ASSERT_TRUE(engines.ok()) << engines.status().ToString();
  ASSERT_EQ(engines->size(), 2u);
  const EngineInfo* tagged = Find(*engines, true);
  const EngineInfo* plain = Find(*engines, false);
  ASSERT_TRUE(tagged && plain);
  EXPECT_EQ(tagged->kind, EngineKind::kNative);
  EXPECT_EQ(plain->kind, EngineKind::kNative);
  EXPECT_EQ(tagged->tags, (std::vector<std::string>{"bigmem", "gpu"}));
  EXPECT_EQ(tagged->resources, (std::map<std::string, double>{{"gpus", 2}, {"mem", 64}}));
  EXPECT_TRUE(plain->resources.empty());
  EXPECT_FALSE(tagged->uuid.empty());
  // Every function each has, built-ins included: the tagged one has the pi plugin's too.
  EXPECT_EQ(static_cast<size_t>(tagged->functions), FunctionsOn(tagged->id));
  EXPECT_EQ(static_cast<size_t>(plain->functions), FunctionsOn(plain->id));
  EXPECT_GT(tagged->functions, plain->functions);
  EXPECT_GT(plain->functions, 5);  // ipp.info, ipp.load, ...

  // The kinds come from the hub: no request to the engines (their replies would be counted).
  uint64_t replies = client_->counters().replies;
  std::map<int, EngineKind> kinds = client_->engine_kinds();
  EXPECT_EQ(kinds[tagged->id], EngineKind::kNative);
  EXPECT_EQ(kinds[plain->id], EngineKind::kNative);
  EXPECT_EQ(client_->counters().replies, replies);
}

TEST_F(CapabilitiesTest, LoadingAPluginGrowsTheFunctionsTheHubShows) {
  Result<std::vector<EngineInfo>> before = client_->engines();
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  const EngineInfo* plain = Find(*before, false);
  const EngineInfo* tagged = Find(*before, true);
  ASSERT_TRUE(plain && tagged);
  int id = plain->id, want = tagged->functions;  // the same functions once it has the plugin
  ASSERT_LT(plain->functions, want);
  client_->direct_view({id}).load_plugin(testutil::PiPlugin()).get(10s);
  int shown = -1;
  EXPECT_TRUE(testutil::WaitFor([&] {
    Result<Json> status = client_->queue_status({id});
    shown = status.ok() ? (*status)[std::to_string(id)].value("functions", -1) : -1;
    return shown == want;
  }, 10s)) << "queue_status shows " << shown << " functions, want " << want;
  // The plugin loaded again: the same functions, nothing refused.
  client_->direct_view({id}).load_plugin(testutil::PiPlugin()).get(10s);
  Result<std::vector<EngineInfo>> after = client_->engines();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(Find(*after, false)->functions, want);
  EXPECT_EQ(cluster_.Log("controller.log").find("ipp_engine_update refused"), std::string::npos);
}

TEST(IpengineOptionsTest, BadTagsAndResourcesAreClearStartupErrors) {
  testutil::TempDir dir;
  std::string out;
  std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--resources", "gpus=lots"}, "ipengine: --resources: resource \"gpus=lots\" is not NAME=NUMBER (e.g. gpus=2)"},
      {{"--resources", "gpus=2,,mem=1"}, "--resources: resource \"\" is not NAME=NUMBER"},
      {{"--tag", "gpus>=2"}, "ipengine: --tag 'gpus>=2' is not a tag name"},
      {{"--tag", "a b"}, "ipengine: --tag: requirement \"a b\" is not a tag or resource name"},
  };
  for (auto& [args, message] : cases) {
    std::vector<std::string> argv = {kIpengine, "--profile-dir=" + dir.path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    EXPECT_NE(testutil::RunCommand(argv, &out, 20s), 0) << args[1];
    EXPECT_NE(out.find(message), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace ipp

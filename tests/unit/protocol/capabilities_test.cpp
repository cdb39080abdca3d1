#include "protocol/capabilities.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace ipp::protocol {
namespace {

using nlohmann::json;

TEST(CapabilitiesTest, AnEngineThatSaysNothingIsAPythonEngine) {
  Result<Capabilities> c = Capabilities::FromContent({{"uuid", "abc"}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, EngineKind::kPython);
  EXPECT_TRUE(c->functions.empty());
}

TEST(CapabilitiesTest, RoundTripsThroughTheRegistrationField) {
  Capabilities c;
  c.kind = EngineKind::kNative;
  c.functions = {"pi.sample", "ipp.info"};
  c.tags = {"gpu"};
  c.resources = {{"gpus", 2}};
  json content = {{"uuid", "abc"}, {"ipp", c.ToJson()}};
  Result<Capabilities> back = Capabilities::FromContent(content);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->kind, EngineKind::kNative);
  EXPECT_EQ(back->functions, c.functions);
  EXPECT_EQ(back->tags, c.tags);
  EXPECT_EQ(back->resources, c.resources);
  EXPECT_EQ(content["ipp"]["functions"], json({"ipp.info", "pi.sample"}));  // sorted
}

TEST(CapabilitiesTest, TheBatchJobComesFromTheEnvironmentAndRoundTrips) {
  for (const char* name : {"IPP_JOB_ID", "SLURM_JOB_ID", "JOB_ID", "PBS_JOBID", "LSB_JOBID"}) unsetenv(name);
  EXPECT_EQ(BatchJobFromEnvironment(), "");
  setenv("PBS_JOBID", "1234[2].server", 1);
  EXPECT_EQ(BatchJobFromEnvironment(), "1234[2].server");
  setenv("SLURM_JOB_ID", "77", 1);
  EXPECT_EQ(BatchJobFromEnvironment(), "77");
  setenv("IPP_JOB_ID", "local-1-2", 1);  // ipcluster's Local job, even inside a batch job
  EXPECT_EQ(BatchJobFromEnvironment(), "local-1-2");
  for (const char* name : {"IPP_JOB_ID", "SLURM_JOB_ID", "PBS_JOBID"}) unsetenv(name);
  Capabilities c;
  c.kind = EngineKind::kNative;
  c.job = "77";
  EXPECT_EQ(c.ToJson()["job"], "77");
  EXPECT_EQ(Capabilities::FromJson(c.ToJson())->job, "77");
  EXPECT_FALSE(Capabilities().ToJson().contains("job"));
  EXPECT_EQ(Capabilities::FromJson({{"kind", "native"}, {"job", 5}})->job, "");  // descriptive: ignored
}

TEST(CapabilitiesTest, PluginErrorsRoundTripAndAreDescriptive) {
  Capabilities c;
  c.kind = EngineKind::kNative;
  EXPECT_FALSE(c.ToJson().contains("plugin_errors"));
  c.plugin_errors = {{"/opt/p.so", "plugin library /opt/p.so does not exist"}};
  EXPECT_EQ(Capabilities::FromJson(c.ToJson())->plugin_errors, c.plugin_errors);
  // Descriptive: a malformed value is ignored rather than refusing the engine.
  EXPECT_TRUE(Capabilities::FromJson({{"kind", "native"}, {"plugin_errors", 5}})->plugin_errors.empty());
  auto mixed = Capabilities::FromJson({{"kind", "native"}, {"plugin_errors", {{"a.so", "gone"}, {"b.so", 1}}}});
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(mixed->plugin_errors, (std::map<std::string, std::string>{{"a.so", "gone"}}));
}

TEST(CapabilitiesTest, WholeResourcesAreWrittenAsIntegers) {
  Capabilities c;
  c.resources = {{"gpus", 2}, {"mem", 0.5}};
  EXPECT_EQ(c.ToJson()["resources"].dump(), R"({"gpus":2,"mem":0.5})");
  EXPECT_EQ(c.ResourcesJson(), c.ToJson()["resources"]);
}

TEST(CapabilitiesTest, MalformedFieldsAreRefusedWithTheirName) {
  EXPECT_FALSE(Capabilities::FromContent({{"ipp", 3}}).ok());
  EXPECT_FALSE(Capabilities::FromJson({{"kind", "fortran"}}).ok());
  Result<Capabilities> bad = Capabilities::FromJson({{"kind", "native"}, {"tags", {1, 2}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("ipp.tags"), std::string::npos);
  EXPECT_FALSE(Capabilities::FromJson({{"kind", "native"}, {"resources", {{"gpus", "two"}}}}).ok());
}

TEST(CapabilitiesTest, RequirementsAreTagsOrResourceBounds) {
  Capabilities gpu_box;
  gpu_box.kind = EngineKind::kNative;
  gpu_box.tags = {"bigmem"};
  gpu_box.resources = {{"gpus", 2}, {"fpgas", 0}};
  auto reqs = [](json v) {
    Result<std::vector<Requirement>> r = ParseRequirements(v);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<Requirement>{};
  };
  EXPECT_TRUE(MeetsAll(gpu_box, reqs(nullptr)));
  EXPECT_TRUE(MeetsAll(gpu_box, reqs("bigmem")));
  EXPECT_TRUE(MeetsAll(gpu_box, reqs({"bigmem", "gpus"})));
  EXPECT_TRUE(MeetsAll(gpu_box, reqs("gpus>=2")));
  EXPECT_FALSE(MeetsAll(gpu_box, reqs("gpus>=3")));
  EXPECT_FALSE(MeetsAll(gpu_box, reqs("fpgas")));  // a resource of zero is not had
  EXPECT_FALSE(MeetsAll(gpu_box, reqs({"bigmem", "ssd"})));
  EXPECT_FALSE(MeetsAll(Capabilities{}, reqs("bigmem")));
  EXPECT_EQ(reqs("gpus>=2")[0].ToString(), "gpus>=2");
  EXPECT_EQ(reqs("mem>=1.5")[0].ToString(), "mem>=1.5");
}

TEST(CapabilitiesTest, BadRequirementsSayWhatIsWrong) {
  EXPECT_FALSE(ParseRequirements(3).ok());
  EXPECT_FALSE(ParseRequirements(json::array({"gpu", 1})).ok());
  EXPECT_FALSE(ParseRequirements("").ok());
  EXPECT_FALSE(ParseRequirements("gpus>=lots").ok());
  EXPECT_FALSE(ParseRequirements("gpu mem").ok());
}

TEST(CapabilitiesTest, ResourcesParseFromTheCommandLine) {
  std::map<std::string, double> r;
  ASSERT_TRUE(ParseResources("gpus=2,mem=64.5", &r).ok());
  ASSERT_TRUE(ParseResources("ssd=1", &r).ok());
  EXPECT_EQ(r, (std::map<std::string, double>{{"gpus", 2}, {"mem", 64.5}, {"ssd", 1}}));
  EXPECT_FALSE(ParseResources("gpus", &r).ok());
  EXPECT_FALSE(ParseResources("gpus=two", &r).ok());
  EXPECT_FALSE(ParseResources("=2", &r).ok());
  EXPECT_FALSE(ParseResources("gpus=2,", &r).ok());
}

}  // namespace
}  // namespace ipp::protocol

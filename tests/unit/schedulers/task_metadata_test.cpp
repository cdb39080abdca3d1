#include "schedulers/task_metadata.hpp"

#include <gtest/gtest.h>

namespace ipp::schedulers {
namespace {

using namespace std::chrono_literals;

Result<TaskMetadata> Parse(const std::string& text) {
  Result<protocol::PartFields> fields = protocol::PartFields::Of(text);
  EXPECT_TRUE(fields.ok()) << text;
  return ParseTaskMetadata(*fields);
}

TEST(TaskMetadataTest, EmptyMetadataMeansAnyEngineNoRetriesNoTimeoutNoDependencies) {
  Result<TaskMetadata> md = Parse("{}");
  ASSERT_TRUE(md.ok());
  EXPECT_TRUE(md->targets.empty());
  EXPECT_EQ(md->retries, 0);
  EXPECT_FALSE(md->timeout.has_value());
  EXPECT_TRUE(md->after.empty());
  EXPECT_TRUE(md->follow.empty());
}

TEST(TaskMetadataTest, PriorityIsAnIntegerDefaultingToZero) {
  EXPECT_EQ(Parse("{}")->priority, 0);
  EXPECT_EQ(Parse(R"({"priority": null})")->priority, 0);
  EXPECT_EQ(Parse(R"({"priority": 7})")->priority, 7);
  EXPECT_EQ(Parse(R"({"priority": -3})")->priority, -3);
  EXPECT_EQ(Parse(R"({"priority": 2147483647})")->priority, 2147483647);
  for (const char* bad : {R"({"priority": "high"})", R"({"priority": 1.5})", R"({"priority": true})",
                          R"({"priority": 2147483648})", R"({"priority": -2147483649})", R"({"priority": [1]})"}) {
    Result<TaskMetadata> md = Parse(bad);
    ASSERT_FALSE(md.ok()) << bad;
    EXPECT_NE(md.status().message().find("\"priority\" must be an integer"), std::string::npos) << md.status().ToString();
    EXPECT_STREQ(TaskMetadataErrorName(md.status()), "ValueError");
  }
}

TEST(TaskMetadataTest, ReadsEveryFieldTheSchedulerUses) {
  Result<TaskMetadata> md = Parse(
      R"({"targets": ["a", "b", 3], "retries": 2, "timeout": 1.5, "after": ["x"],)"
      R"( "follow": {"dependencies": ["y", "z"], "all": false, "success": false, "failure": true}})");
  ASSERT_TRUE(md.ok()) << md.status().ToString();
  EXPECT_EQ(md->targets, (IdSet{"a", "b"}));  // non-strings ignored, as the stock scheduler does
  EXPECT_EQ(md->retries, 2);
  ASSERT_TRUE(md->timeout.has_value());
  EXPECT_EQ(*md->timeout, std::chrono::duration_cast<std::chrono::steady_clock::duration>(1500ms));
  EXPECT_EQ(md->after.ids, (IdSet{"x"}));
  EXPECT_TRUE(md->after.all);
  EXPECT_EQ(md->follow.ids, (IdSet{"y", "z"}));
  EXPECT_FALSE(md->follow.all);
  EXPECT_TRUE(md->follow.failure);
}

TEST(TaskMetadataTest, IgnoresValuesOfTheWrongTypeAndNonPositiveTimeouts) {
  Result<TaskMetadata> md = Parse(R"({"retries": "3", "timeout": 0, "targets": null, "after": []})");
  ASSERT_TRUE(md.ok()) << md.status().ToString();
  EXPECT_EQ(md->retries, 0);
  EXPECT_FALSE(md->timeout.has_value());
  EXPECT_TRUE(md->targets.empty());
  EXPECT_FALSE(Parse(R"({"timeout": -1})")->timeout.has_value());
}

TEST(TaskMetadataTest, ADependencyThatIsNotOneIsAnInvalidDependency) {
  for (const char* text : {R"({"after": 5})", R"({"follow": [1]})",
                           R"({"after": {"dependencies": ["x"], "success": false, "failure": false}})"}) {
    Result<TaskMetadata> md = Parse(text);
    ASSERT_FALSE(md.ok()) << text;
    EXPECT_STREQ(TaskMetadataErrorName(md.status()), "InvalidDependency") << text;
  }
}

TEST(TaskMetadataTest, AnUnreadableValueIsAValueError) {
  // "all" must be a boolean: reading it throws inside the parse.
  Result<TaskMetadata> md = Parse(R"({"after": {"dependencies": ["x"], "all": "yes"}})");
  ASSERT_FALSE(md.ok());
  EXPECT_STREQ(TaskMetadataErrorName(md.status()), "ValueError");
  EXPECT_NE(md.status().message().find("invalid task metadata"), std::string::npos);
}

}  // namespace
}  // namespace ipp::schedulers

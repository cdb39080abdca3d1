#include "schedulers/dependency.hpp"

#include <algorithm>
#include <string>

#include <gtest/gtest.h>

namespace ipp::schedulers {
namespace {

using nlohmann::json;

Dependency Dep(const json& j) {
  auto d = Dependency::FromJson(j);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return *d;
}

TEST(DependencyTest, ParsesListsDictsAndNull) {
  EXPECT_TRUE(Dep(nullptr).empty());
  EXPECT_EQ(Dep(json::array({"a", "b"})).ids.size(), 2u);
  Dependency d = Dep({{"dependencies", {"a"}}, {"all", false}, {"success", false}, {"failure", true}});
  EXPECT_FALSE(d.all);
  EXPECT_FALSE(d.success);
  EXPECT_TRUE(d.failure);
  EXPECT_FALSE(Dependency::FromJson({{"dependencies", {"a"}}, {"success", false}, {"failure", false}}).ok());
  EXPECT_FALSE(Dependency::FromJson(json::array({1, 2})).ok());
}

// Fates where `ok` succeeded and `failed` failed, on engine 0 unless listed in `on_one`.
TaskFates Fates(std::initializer_list<const char*> ok, std::initializer_list<const char*> failed,
                std::initializer_list<std::string> on_one = {}) {
  TaskFates f;
  auto engine = [&](const char* id) { return std::count(on_one.begin(), on_one.end(), id) ? 1u : 0u; };
  for (const char* id : ok) f.Finished(id, true, engine(id));
  for (const char* id : failed) f.Finished(id, false, engine(id));
  return f;
}

TEST(DependencyTest, AllSuccessNeedsEveryIdCompleted) {
  Dependency d = Dep(json::array({"a", "b"}));
  EXPECT_FALSE(d.Check(Fates({"a"}, {})));
  EXPECT_TRUE(d.Check(Fates({"a", "b"}, {})));
  EXPECT_FALSE(d.Unreachable(Fates({"a"}, {})));
  EXPECT_TRUE(d.Unreachable(Fates({"a"}, {"b"})));  // a failure can never become a success
}

TEST(DependencyTest, PendingTasksMeetNothingAndBlockNothing) {
  Dependency d = Dep(json::array({"a"}));
  TaskFates f;
  f.Submitted("a");
  EXPECT_FALSE(d.Check(f));
  EXPECT_FALSE(d.Unreachable(f));
  f.Finished("a", true, 0);
  EXPECT_TRUE(d.Check(f));
}

TEST(DependencyTest, AnySuccessNeedsOneAndIsLostOnlyWhenAllFailed) {
  Dependency d = Dep({{"dependencies", {"a", "b"}}, {"all", false}});
  EXPECT_TRUE(d.Check(Fates({"b"}, {})));
  EXPECT_FALSE(d.Unreachable(Fates({}, {"a"})));
  EXPECT_TRUE(d.Unreachable(Fates({}, {"a", "b"})));
}

TEST(DependencyTest, FailureOnlyDependency) {
  Dependency d = Dep({{"dependencies", {"a"}}, {"success", false}, {"failure", true}});
  EXPECT_TRUE(d.Check(Fates({}, {"a"})));
  EXPECT_FALSE(d.Check(Fates({"a"}, {})));
  EXPECT_TRUE(d.Unreachable(Fates({"a"}, {})));
}

TEST(DependencyTest, SuccessOrFailureIsMetByEither) {
  Dependency d = Dep({{"dependencies", {"a", "b"}}, {"success", true}, {"failure", true}});
  EXPECT_TRUE(d.Check(Fates({"a"}, {"b"})));
  EXPECT_FALSE(d.Unreachable(Fates({"a"}, {"b"})));
}

TEST(DependencyTest, OnAnEngineCountsOnlyTasksThatRanThere) {
  Dependency all = Dep(json::array({"a", "b"}));
  TaskFates split = Fates({"a", "b"}, {}, {"b"});
  EXPECT_TRUE(all.Check(split));
  EXPECT_FALSE(all.Check(split, 0));
  EXPECT_FALSE(all.Check(split, 1));
  EXPECT_TRUE(all.Check(Fates({"a", "b"}, {}, {"a", "b"}), 1));
  Dependency any = Dep({{"dependencies", {"a", "b"}}, {"all", false}});
  EXPECT_TRUE(any.Check(split, 1));
  EXPECT_FALSE(any.Check(split, 2));
}

TEST(TaskFatesTest, RemembersOutcomeAndEngine) {
  TaskFates f;
  EXPECT_EQ(f.find("x").outcome, TaskFates::Outcome::kUnknown);
  f.Submitted("x");
  EXPECT_EQ(f.find("x").outcome, TaskFates::Outcome::kPending);
  EXPECT_EQ(f.find("x").engine, TaskFates::kNoEngine);
  f.Finished("x", false, 7);
  EXPECT_EQ(f.find("x").outcome, TaskFates::Outcome::kFailed);
  EXPECT_EQ(f.find("x").engine, 7u);
  f.Finished("y", true, TaskFates::kNoEngine);
  EXPECT_EQ(f.find("y").outcome, TaskFates::Outcome::kSucceeded);
  EXPECT_EQ(f.find("y").engine, TaskFates::kNoEngine);
  EXPECT_EQ(f.size(), 2u);
}

TEST(TaskFatesTest, KeepsTheLatestGenerationAndForgetsOlderOnes) {
  constexpr size_t kGeneration = 1000;
  TaskFates f(kGeneration);
  auto id = [](int i) { return "task-" + std::to_string(i); };
  for (int i = 0; i < 10 * static_cast<int>(kGeneration); ++i) {
    f.Submitted(id(i));
    f.Finished(id(i), i % 2 == 0, static_cast<uint32_t>(i % 5));
    ASSERT_LE(f.size(), 2 * kGeneration);
  }
  // The latest `generation` are always there, with their fates.
  for (int i = 9 * static_cast<int>(kGeneration); i < 10 * static_cast<int>(kGeneration); ++i) {
    TaskFates::Fate fate = f.find(id(i));
    ASSERT_EQ(fate.outcome, i % 2 == 0 ? TaskFates::Outcome::kSucceeded : TaskFates::Outcome::kFailed) << i;
    ASSERT_EQ(fate.engine, static_cast<uint32_t>(i % 5));
  }
  EXPECT_EQ(f.find(id(0)).outcome, TaskFates::Outcome::kUnknown);
  EXPECT_EQ(f.find(id(7 * static_cast<int>(kGeneration))).outcome, TaskFates::Outcome::kUnknown);
}

TEST(TaskFatesTest, AFateRecordedLaterWinsOverAnOlderGeneration) {
  TaskFates f(2);
  f.Submitted("long");
  f.Submitted("a");
  f.Submitted("b");  // "long" and "a" are now the older generation
  f.Finished("long", true, 3);
  EXPECT_EQ(f.find("long").outcome, TaskFates::Outcome::kSucceeded);
  EXPECT_EQ(f.find("long").engine, 3u);
}

TEST(TaskFatesTest, ZeroGenerationRemembersEverything) {
  TaskFates f(0);
  for (int i = 0; i < 5000; ++i) f.Finished(std::to_string(i), true, 0);
  EXPECT_EQ(f.size(), 5000u);
  EXPECT_EQ(f.find("0").outcome, TaskFates::Outcome::kSucceeded);
}

}  // namespace
}  // namespace ipp::schedulers

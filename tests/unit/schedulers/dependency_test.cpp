#include "schedulers/dependency.hpp"

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

TEST(DependencyTest, AllSuccessNeedsEveryIdCompleted) {
  Dependency d = Dep(json::array({"a", "b"}));
  EXPECT_FALSE(d.Check({"a"}, {}));
  EXPECT_TRUE(d.Check({"a", "b"}, {}));
  EXPECT_FALSE(d.Unreachable({"a"}, {}));
  EXPECT_TRUE(d.Unreachable({"a"}, {"b"}));  // a failure can never become a success
}

TEST(DependencyTest, AnySuccessNeedsOneAndIsLostOnlyWhenAllFailed) {
  Dependency d = Dep({{"dependencies", {"a", "b"}}, {"all", false}});
  EXPECT_TRUE(d.Check({"b"}, {}));
  EXPECT_FALSE(d.Unreachable({}, {"a"}));
  EXPECT_TRUE(d.Unreachable({}, {"a", "b"}));
}

TEST(DependencyTest, FailureOnlyDependency) {
  Dependency d = Dep({{"dependencies", {"a"}}, {"success", false}, {"failure", true}});
  EXPECT_TRUE(d.Check({}, {"a"}));
  EXPECT_FALSE(d.Check({"a"}, {}));
  EXPECT_TRUE(d.Unreachable({"a"}, {}));
}

TEST(DependencyTest, SuccessOrFailureIsMetByEither) {
  Dependency d = Dep({{"dependencies", {"a", "b"}}, {"success", true}, {"failure", true}});
  EXPECT_TRUE(d.Check({"a"}, {"b"}));
  EXPECT_FALSE(d.Unreachable({"a"}, {"b"}));
}

}  // namespace
}  // namespace ipp::schedulers

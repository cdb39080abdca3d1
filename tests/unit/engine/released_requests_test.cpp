#include "engine/released_requests.hpp"

#include <algorithm>
#include <thread>

#include <gtest/gtest.h>

namespace ipp::engine {
namespace {

using Ids = std::vector<std::string>;

TEST(ReleasedRequestsTest, OnlyRequestsNotStartedAreReleasedAndTheyNeverStart) {
  ReleasedRequests r;
  EXPECT_TRUE(r.Start("a"));
  EXPECT_EQ(r.Release({"a", "b", "c"}), (Ids{"b", "c"}));
  EXPECT_FALSE(r.Start("b"));  // dropped when it comes off the socket
  EXPECT_FALSE(r.Start("c"));
  EXPECT_EQ(r.Release({"d"}), (Ids{"d"}));
}

TEST(ReleasedRequestsTest, ACopySentAgainAfterTheReleasedOneRuns) {
  // The scheduler may send a released task back here (re-signed), behind the copy it released.
  ReleasedRequests r;
  EXPECT_EQ(r.Release({"x"}), (Ids{"x"}));
  EXPECT_FALSE(r.Start("x"));  // the released copy
  EXPECT_TRUE(r.Start("x"));   // the second copy
  EXPECT_EQ(r.Release({"x"}), Ids{});  // started: not released again
}

TEST(ReleasedRequestsTest, ReleasedTwiceBeforeItCameDropsTwoCopies) {
  ReleasedRequests r;
  EXPECT_EQ(r.Release({"x"}), (Ids{"x"}));
  EXPECT_EQ(r.Release({"x"}), (Ids{"x"}));  // the second copy, released before the first came
  EXPECT_FALSE(r.Start("x"));
  EXPECT_FALSE(r.Start("x"));
  EXPECT_TRUE(r.Start("x"));
}

TEST(ReleasedRequestsTest, EachIdIsStartedOrReleasedNeverBoth) {
  // The two threads race on the same ids: every id ends up on exactly one side.
  for (int round = 0; round < 50; ++round) {
    ReleasedRequests r;
    Ids ids;
    for (int i = 0; i < 200; ++i) ids.push_back(std::to_string(i));
    Ids started, released;
    std::thread shell([&] {
      for (const auto& id : ids) {
        if (r.Start(id)) started.push_back(id);
      }
    });
    released = r.Release(ids);
    shell.join();
    EXPECT_EQ(started.size() + released.size(), ids.size());
    for (const auto& id : released) EXPECT_EQ(std::count(started.begin(), started.end(), id), 0) << id;
  }
}

TEST(ReleasedRequestsTest, ManyReleasesNeverDropACopyThatWasNotReleased) {
  // An id released again after its first copy came gets a fresh place in the bounded order: the
  // old place aging out must not forget the new release.
  ReleasedRequests r;
  EXPECT_EQ(r.Release({"x"}), (Ids{"x"}));
  EXPECT_FALSE(r.Start("x"));
  EXPECT_EQ(r.Release({"x"}), (Ids{"x"}));  // a second copy, sent here again and released again
  // Enough that the first place ages out, not the second.
  for (int i = 0; i < (1 << 14) - 1; ++i) r.Release({"filler-" + std::to_string(i)});
  EXPECT_FALSE(r.Start("x")) << "the second release was forgotten";
}

}  // namespace
}  // namespace ipp::engine

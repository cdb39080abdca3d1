#include "controller/task_journal.hpp"

#include <fstream>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.hpp"

namespace ipp::controller {
namespace {

using protocol::Frames;

// [client, delimiter, signature, header, parent, metadata, content, buffers...]
protocol::RawMessage Request(const std::string& client, const std::string& msg_id, std::vector<std::string> buffers = {}) {
  Frames f;
  for (std::string part : {client, std::string(protocol::kDelimiter), std::string("sig"),
                           "{\"msg_id\":\"" + msg_id + "\"}", std::string("{}"), std::string("{}"), std::string("{}")}) {
    f.emplace_back(part.data(), part.size());
  }
  for (const auto& b : buffers) f.emplace_back(b.data(), b.size());
  return std::move(protocol::RawMessage::FromFrames(std::move(f))).value();
}

class TaskJournalTest : public ::testing::Test {
 protected:
  testutil::TempDir dir_;
  std::filesystem::path file_ = dir_.path() / "tasks.journal";
};

TEST_F(TaskJournalTest, RestoresAcceptedRequestsWithoutAReplyInOrder) {
  {
    auto journal = TaskJournal::Open(file_, false);
    ASSERT_TRUE(journal.ok());
    (*journal)->Accepted("a", Request("client1", "a", {"buf"}));
    (*journal)->Accepted("b", Request("client2", "b"));
    (*journal)->Accepted("c", Request("client1", "c"));
    (*journal)->Finished("b");
    (*journal)->Flush();
    // No destructor flush counted on: a SIGKILL runs none. What Flush wrote is what a restore sees.
    (*journal)->Accepted("d", Request("client1", "d"));
    std::filesystem::copy_file(file_, dir_.path() / "killed.journal");
  }
  auto restored = TaskJournal::Open(dir_.path() / "killed.journal", true);
  ASSERT_TRUE(restored.ok());
  auto pending = (*restored)->PendingRequests();
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].msg_id, "a");
  EXPECT_EQ(pending[1].msg_id, "c");
  ASSERT_EQ(pending[0].frames.size(), 8u);
  EXPECT_EQ(protocol::view(pending[0].frames[0]), "client1");
  EXPECT_EQ(protocol::view(pending[0].frames[1]), protocol::kDelimiter);
  EXPECT_EQ(protocol::view(pending[0].frames[7]), "buf");
}

TEST_F(TaskJournalTest, ATornLastEntryIsIgnoredAndAFreshStartForgetsEverything) {
  {
    auto journal = TaskJournal::Open(file_, false);
    (*journal)->Accepted("a", Request("c", "a"));
    (*journal)->Accepted("b", Request("c", "b"));
  }
  std::filesystem::resize_file(file_, std::filesystem::file_size(file_) - 3);
  auto restored = TaskJournal::Open(file_, true);
  ASSERT_TRUE(restored.ok());
  ASSERT_EQ((*restored)->pending(), 1u);
  EXPECT_EQ((*restored)->PendingRequests()[0].msg_id, "a");
  // Accepting a restored request again (the scheduler reports it) records it once.
  (*restored)->Accepted("a", Request("c", "a"));
  EXPECT_EQ((*restored)->pending(), 1u);
  restored->reset();
  EXPECT_EQ((*TaskJournal::Open(file_, true))->pending(), 1u);
  EXPECT_EQ((*TaskJournal::Open(file_, false))->pending(), 0u);
  EXPECT_EQ((*TaskJournal::Open(file_, true))->pending(), 0u);
}

}  // namespace
}  // namespace ipp::controller

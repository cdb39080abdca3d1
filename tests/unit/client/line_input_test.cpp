// ipp map's input reader on a real pipe: lines as they come, split across reads, the last one
// without '\n', at most what the caller takes, and the end.
#include "client/ipp_cmd/line_input.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>


namespace ipp_cmd {
namespace {

using namespace std::chrono_literals;

class LineInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    read_end_ = fds[0];
    write_end_ = fds[1];
    // The reader takes stdin, as `producer | ipp map f -` gives it.
    saved_stdin_ = dup(STDIN_FILENO);
    ASSERT_EQ(dup2(read_end_, STDIN_FILENO), STDIN_FILENO);
    std::string error;
    in_ = LineInput::Open("-", &error);
    ASSERT_TRUE(in_) << error;
  }
  void TearDown() override {
    in_.reset();
    dup2(saved_stdin_, STDIN_FILENO);
    for (int fd : {saved_stdin_, read_end_, write_end_}) {
      if (fd >= 0) close(fd);
    }
  }
  void Write(const std::string& text) { ASSERT_EQ(write(write_end_, text.data(), text.size()), static_cast<ssize_t>(text.size())); }
  void CloseWriter() {
    close(write_end_);
    write_end_ = -1;
  }

  int read_end_ = -1, write_end_ = -1, saved_stdin_ = -1;
  std::unique_ptr<LineInput> in_;
};

TEST_F(LineInputTest, GivesLinesAsTheyComeAndALineSplitAcrossWritesOnce) {
  std::vector<std::string> lines;
  EXPECT_TRUE(in_->Read(lines, 100, 0ms));  // nothing yet: no wait, still open
  EXPECT_TRUE(lines.empty());
  Write("1\n2");
  EXPECT_TRUE(in_->Read(lines, 100, 1000ms));
  EXPECT_EQ(lines, std::vector<std::string>({"1"}));
  Write("2\n\n");
  EXPECT_TRUE(in_->Read(lines, 100, 1000ms));
  EXPECT_EQ(lines, std::vector<std::string>({"1", "22", ""}));
}

TEST_F(LineInputTest, TakesAtMostWhatIsAskedAndKeepsTheRest) {
  Write("a\nb\nc\n");
  std::vector<std::string> lines;
  EXPECT_TRUE(in_->Read(lines, 2, 1000ms));
  EXPECT_EQ(lines, std::vector<std::string>({"a", "b"}));
  EXPECT_TRUE(in_->Read(lines, 2, 0ms));
  EXPECT_EQ(lines, std::vector<std::string>({"a", "b", "c"}));
}

TEST_F(LineInputTest, TheLastLineWithoutNewlineComesAtTheEnd) {
  Write("x\nlast");
  CloseWriter();
  std::vector<std::string> lines;
  bool open = true;
  for (int i = 0; i < 10 && open; ++i) open = in_->Read(lines, 100, 1000ms);
  EXPECT_FALSE(open);
  EXPECT_EQ(lines, std::vector<std::string>({"x", "last"}));
  EXPECT_EQ(in_->error(), "");
  EXPECT_FALSE(in_->Read(lines, 100, 0ms));  // and stays ended
}

TEST_F(LineInputTest, AMissingFileIsAnErrorNamingIt) {
  std::string error;
  EXPECT_EQ(LineInput::Open("/nonexistent/input.jsonl", &error), nullptr);
  EXPECT_NE(error.find("cannot read /nonexistent/input.jsonl"), std::string::npos) << error;
}

}  // namespace
}  // namespace ipp_cmd

#include "controller/ipc_dir.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "tests/testutil/testutil.hpp"

namespace ipp::controller {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

mode_t Mode(const fs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_mode & 0777 : 0;
}

// Directories are made in $TMPDIR: a private one per test, so that nothing in the real /tmp is
// made or swept.
class IpcDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* old = std::getenv("TMPDIR");
    if (old) old_tmpdir_ = old;
    setenv("TMPDIR", base_.path().c_str(), 1);
  }
  void TearDown() override {
    if (old_tmpdir_) {
      setenv("TMPDIR", old_tmpdir_->c_str(), 1);
    } else {
      unsetenv("TMPDIR");
    }
  }
  fs::path Make(const std::string& name) {
    fs::create_directories(base_.path() / name);
    fs::permissions(base_.path() / name, fs::perms::owner_all);
    return base_.path() / name;
  }
  static std::string InterfaceIn(const fs::path& dir) { return "ipc://" + (dir / "ipp").string(); }

  testutil::TempDir base_;
  std::optional<std::string> old_tmpdir_;
};

TEST_F(IpcDirTest, IsPrivateAndGoesWithItsSockets) {
  fs::path path;
  {
    Result<std::unique_ptr<IpcDir>> dir = IpcDir::Create("");
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    path = (*dir)->path();
    EXPECT_EQ(path.parent_path(), base_.path());
    EXPECT_EQ(path.filename().string().rfind(IpcDirPrefix(), 0), 0u) << path;
    EXPECT_EQ(Mode(path), 0700u);
    EXPECT_EQ((*dir)->interface(), InterfaceIn(path));
    EXPECT_TRUE(testutil::MakeStaleUnixSocket(path / "ipp-1234"));
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(IpcDirTest, AReusedDirectoryIsTakenAgainOnlyWhenNobodyServesIt) {
  fs::path wanted = base_.path() / (IpcDirPrefix() + "1-abcdef");
  {
    Result<std::unique_ptr<IpcDir>> dir = IpcDir::Create(InterfaceIn(wanted));
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    EXPECT_EQ((*dir)->path(), wanted) << "made again when it is gone";
    EXPECT_EQ(Mode(wanted), 0700u);

    // A second controller started with --reuse beside the first (whose TCP bind then fails) must
    // not take over, nor remove on its way out, what the first serves.
    zmq::context_t context;
    zmq::socket_t listener(context, zmq::socket_type::router);
    listener.set(zmq::sockopt::linger, 0);
    listener.bind("ipc://" + (wanted / "ipp-80").string());
    {
      Result<std::unique_ptr<IpcDir>> second = IpcDir::Create(InterfaceIn(wanted));
      ASSERT_TRUE(second.ok());
      EXPECT_NE((*second)->path(), wanted);
    }
    EXPECT_TRUE(fs::exists(wanted / "ipp-80"));
  }
  // Killed: its sockets are left, nobody serves them; the restarted controller takes it again.
  Make(wanted.filename().string());
  ASSERT_TRUE(testutil::MakeStaleUnixSocket(wanted / "ipp-80"));
  {
    Result<std::unique_ptr<IpcDir>> restarted = IpcDir::Create(InterfaceIn(wanted));
    ASSERT_TRUE(restarted.ok());
    EXPECT_EQ((*restarted)->path(), wanted);
  }
  EXPECT_FALSE(fs::exists(wanted));
}

TEST_F(IpcDirTest, AConnectionFileCannotMakeItTakeOrRemoveAnythingElse) {
  fs::path mine = Make("mine");  // not a name Create makes
  std::ofstream(mine / "notes.txt") << "mine";
  fs::path elsewhere = Make("elsewhere");
  fs::path link = base_.path() / (IpcDirPrefix() + "2-abcdef");
  fs::create_directory_symlink(elsewhere, link);
  fs::path open_dir = Make(IpcDirPrefix() + "3-abcdef");
  fs::permissions(open_dir, fs::perms::all);
  for (const fs::path& dir : {mine, link, open_dir}) {
    Result<std::unique_ptr<IpcDir>> made = IpcDir::Create(InterfaceIn(dir));
    ASSERT_TRUE(made.ok());
    EXPECT_NE((*made)->path(), dir);
  }
  EXPECT_TRUE(fs::exists(mine / "notes.txt"));
  EXPECT_TRUE(fs::is_directory(elsewhere));
  EXPECT_TRUE(fs::is_directory(open_dir));
}

TEST_F(IpcDirTest, OnlyAKilledControllersDirectoriesOnThisHostAreSweptAway) {
  const std::string prefix = IpcDirPrefix();
  fs::path stale = Make(prefix + "11-aaaaaa"), live = Make(prefix + "12-bbbbbb"), other_file = Make(prefix + "13-cccccc"),
           not_ours = Make("ipp-build"), empty = Make(prefix + "14-dddddd"),
           other_host = Make(std::string("ipp-") + (prefix == "ipp-00000000-" ? "00000001" : "00000000") + "-15-eeeeee");
  for (const fs::path& dir : {stale, other_file, not_ours, other_host}) {
    ASSERT_TRUE(testutil::MakeStaleUnixSocket(dir / "ipp-80"));
  }
  std::ofstream(other_file / "notes.txt") << "mine";
  zmq::context_t context;
  zmq::socket_t listener(context, zmq::socket_type::router);
  listener.set(zmq::sockopt::linger, 0);
  listener.bind("ipc://" + (live / "ipp-80").string());

  EXPECT_EQ(RemoveStaleIpcDirs(base_.path(), 3600s), 0) << "all are younger than an hour";
  EXPECT_EQ(RemoveStaleIpcDirs(base_.path(), 0s), 2);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(empty));
  EXPECT_TRUE(fs::exists(live / "ipp-80")) << "someone listens there";
  EXPECT_TRUE(fs::exists(other_file / "notes.txt")) << "holds what a controller does not leave";
  EXPECT_TRUE(fs::exists(not_ours)) << "not a name IpcDir makes";
  EXPECT_TRUE(fs::exists(other_host / "ipp-80")) << "another host's, in a $TMPDIR they share";
}

}  // namespace
}  // namespace ipp::controller

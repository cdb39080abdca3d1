#include "controller/ipc_dir.hpp"

#include <sys/stat.h>

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

TEST(IpcDirTest, IsPrivateAndGoesWithWhatIsInIt) {
  fs::path path;
  {
    Result<std::unique_ptr<IpcDir>> dir = IpcDir::Create("");
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    path = (*dir)->path();
    EXPECT_EQ(Mode(path), 0700u);
    EXPECT_EQ((*dir)->interface(), "ipc://" + (path / "ipp").string());
    EXPECT_TRUE(testutil::MakeStaleUnixSocket(path / "ipp-1234"));
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(IpcDirTest, AReusedInterfaceGetsItsDirectoryBack) {
  testutil::TempDir base;
  fs::path wanted = base.path() / "ipp-1-abcdef";
  std::string interface = "ipc://" + (wanted / "ipp").string();
  {
    Result<std::unique_ptr<IpcDir>> dir = IpcDir::Create(interface);
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    EXPECT_EQ((*dir)->interface(), interface) << "made again when it is gone";
    EXPECT_EQ(Mode(wanted), 0700u);
    Result<std::unique_ptr<IpcDir>> again = IpcDir::Create(interface);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ((*again)->path(), wanted) << "taken as it is when it is this user's and private";
    again->release();  // two owners of one directory: let the first remove it
  }
  fs::create_directories(wanted);
  fs::permissions(wanted, fs::perms::all);  // not private: someone else's to judge
  Result<std::unique_ptr<IpcDir>> other = IpcDir::Create(interface);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)->path(), wanted);
}

TEST(IpcDirTest, OnlyAKilledControllersDirectoriesAreSweptAway) {
  testutil::TempDir base;
  auto make = [&](const std::string& name) {
    fs::create_directories(base.path() / name);
    return base.path() / name;
  };
  fs::path stale = make("ipp-11-aaaaaa"), live = make("ipp-12-bbbbbb"), other_file = make("ipp-13-cccccc"),
           not_ours = make("ipp-build"), empty = make("ipp-14-dddddd");
  for (const fs::path& dir : {stale, other_file, not_ours}) ASSERT_TRUE(testutil::MakeStaleUnixSocket(dir / "ipp-80"));
  std::ofstream(other_file / "notes.txt") << "mine";
  zmq::context_t context;
  zmq::socket_t listener(context, zmq::socket_type::router);
  listener.bind("ipc://" + (live / "ipp-80").string());

  EXPECT_EQ(RemoveStaleIpcDirs(base.path(), 3600s), 0) << "all are younger than an hour";
  EXPECT_EQ(RemoveStaleIpcDirs(base.path(), 0s), 2);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(empty));
  EXPECT_TRUE(fs::exists(live / "ipp-80")) << "someone listens there";
  EXPECT_TRUE(fs::exists(other_file / "notes.txt")) << "holds what a controller does not leave";
  EXPECT_TRUE(fs::exists(not_ours)) << "not a name IpcDir makes";
}

}  // namespace
}  // namespace ipp::controller

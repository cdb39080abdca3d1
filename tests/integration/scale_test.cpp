// Scale limits with real processes: a controller out of file descriptors refuses the next
// engine's registration with a clear error, and the engines already in keep working.
#include <sys/resource.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/cli.hpp"
#include "controller/hub.hpp"
#include "ipp/client.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

long OpenFds(pid_t pid) {
  long n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

TEST(FdLimitTest, RegistrationsPastTheDescriptorLimitAreRefusedAndEnginesInKeepWorking) {
  testutil::TempDir dir;
  const fs::path profile = dir.path() / "profile";
  testutil::Process controller({std::string(IPP_BIN_DIR) + "/ipcontroller", "--profile-dir=" + profile.string(),
                                "--log-level=DEBUG"},
                               dir.path() / "controller.log");
  const fs::path client_file = profile / "security" / "ipcontroller-client.json";
  ASSERT_TRUE(testutil::WaitFor([&] { return fs::exists(client_file) || !controller.running(); }, 20s));
  auto connected = Client::Connect(ClientOptions::File(client_file.string()));
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  std::unique_ptr<Client> client = std::move(connected).value();

  // Room for exactly two engines beside what the controller holds now (its client included).
  constexpr int kFit = 2;
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max =
      static_cast<rlim_t>(OpenFds(controller.pid()) + controller::Hub::kFdReserve + kFit * controller::Hub::kFdsPerEngine + 4);
  ASSERT_EQ(prlimit(controller.pid(), RLIMIT_NOFILE, &limit, nullptr), 0);

  std::vector<std::unique_ptr<testutil::Process>> engines;
  for (int i = 0; i <= kFit; ++i) {
    engines.push_back(std::make_unique<testutil::Process>(
        std::vector<std::string>{std::string(IPP_BIN_DIR) + "/ipengine", "--profile-dir=" + profile.string(),
                                 "--log-level=DEBUG"},
        dir.path() / ("engine-" + std::to_string(i) + ".log")));
    ASSERT_TRUE(testutil::WaitFor([&] { return client->ids().size() > static_cast<size_t>(i) || !engines.back()->running(); }, 40s))
        << client->ids().size() << " engines registered\n"
        << testutil::ReadFile(dir.path() / "controller.log") << "\nengine " << i << ":\n"
        << testutil::ReadFile(dir.path() / ("engine-" + std::to_string(i) + ".log"));
    if (i < kFit) {
      ASSERT_EQ(client->ids().size(), static_cast<size_t>(i + 1)) << testutil::ReadFile(dir.path() / "controller.log");
    }
  }
  // The one past the limit: refused, it asks again a few times (a start storm's count is on the
  // safe side), says why and exits with the status ipcluster does not restart.
  EXPECT_EQ(engines.back()->wait(30s), cli::kExitRegistrationRefused);
  std::string refused = testutil::ReadFile(dir.path() / ("engine-" + std::to_string(kFit) + ".log"));
  EXPECT_NE(refused.find("registration refused: RuntimeError: the controller is out of file descriptors"), std::string::npos)
      << refused;
  EXPECT_NE(refused.find("asking again in 4 s"), std::string::npos) << refused;
  EXPECT_NE(testutil::ReadFile(dir.path() / "controller.log").find("out of file descriptors"), std::string::npos);
  // Those in keep working.
  EXPECT_EQ(client->ids().size(), static_cast<size_t>(kFit));
  std::vector<Json> echoed = client->direct_view().apply("ipp.echo", 7).get(30s);
  EXPECT_EQ(echoed, std::vector<Json>(kFit, Json(7)));
}

}  // namespace
}  // namespace ipp

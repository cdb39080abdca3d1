#include "protocol/connection_file.hpp"

#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "common/host.hpp"
#include "protocol/profile_dir.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp::protocol {
namespace {

// Written by the stock ipcontroller of ipyparallel 7.1 (keys and ports changed).
constexpr const char* kStockEngineFile = R"({
  "ssh": "",
  "interface": "tcp://127.0.0.1",
  "registration": 51701,
  "control": 35947,
  "mux": 59205,
  "task": 54485,
  "iopub": 34707,
  "hb_ping": 37877,
  "hb_pong": 52135,
  "broadcast": [47777, 52385],
  "key": "9eaa4a31-6647388e78f8106b22c9b91a",
  "curve_serverkey": null,
  "location": "vm",
  "pack": "json",
  "unpack": "json",
  "signature_scheme": "hmac-sha256"
})";

TEST(ConnectionFileTest, ParsesStockEngineFile) {
  Result<ConnectionInfo> info = ParseConnectionInfo(kStockEngineFile, "test");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->key, "9eaa4a31-6647388e78f8106b22c9b91a");
  EXPECT_EQ(info->location, "vm");
  EXPECT_FALSE(info->curve_serverkey.has_value());
  EXPECT_EQ(*info->url("registration"), "tcp://127.0.0.1:51701");
  EXPECT_EQ(*info->port("broadcast", 1), 52385);
  EXPECT_FALSE(info->port("broadcast", 2).ok());
  EXPECT_EQ(info->port("notification").status().code(), Status::Code::kNotFound);
}

TEST(ConnectionFileTest, WritesAtomicallyWithMode0600AndRoundTrips) {
  testutil::TempDir dir;
  auto path = dir.path() / "security" / ConnectionFileName("client", "");
  ConnectionInfo info;
  info.key = "k";
  info.location = "host";
  info.task_scheme = "leastload";
  info.channels = {{"registration", 1234}, {"mux", 1235}, {"notification", 1236}};
  ASSERT_TRUE(WriteConnectionFile(path, info).ok());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  Result<ConnectionInfo> back = ReadConnectionFile(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->task_scheme, "leastload");
  EXPECT_EQ(*back->port("notification"), 1236);
  auto text = nlohmann::json::parse(testutil::ReadFile(path));
  EXPECT_TRUE(text["curve_serverkey"].is_null());
  EXPECT_EQ(text["signature_scheme"], "hmac-sha256");
  // Overwriting a world-readable file leaves it 0600 and leaves no temporary file behind.
  chmod(path.c_str(), 0644);
  ASSERT_TRUE(WriteConnectionFile(path, info).ok());
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(path.parent_path()), {}), 1);
}

TEST(ConnectionFileTest, BadFilesGiveClearErrors) {
  testutil::TempDir dir;
  Result<ConnectionInfo> missing = ReadConnectionFile(dir.path() / "nope.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);

  EXPECT_FALSE(ParseConnectionInfo("not json", "x").ok());
  EXPECT_FALSE(ParseConnectionInfo("[]", "x").ok());
  Result<ConnectionInfo> no_key = ParseConnectionInfo(R"({"interface": "tcp://1.2.3.4"})", "f");
  ASSERT_FALSE(no_key.ok());
  EXPECT_NE(no_key.status().message().find("key"), std::string::npos);
  Result<ConnectionInfo> bad_type =
      ParseConnectionInfo(R"({"interface": "tcp://x", "key": 5, "registration": 1})", "f");
  EXPECT_FALSE(bad_type.ok());
}

// Each message names the origin (the file) and the field, never a bare nlohmann exception.
TEST(ConnectionFileTest, ErrorsNameTheFileAndTheField) {
  auto error = [](std::string_view text) {
    Result<ConnectionInfo> info = ParseConnectionInfo(text, "connection file /s/c.json");
    EXPECT_FALSE(info.ok()) << text;
    return info.ok() ? std::string() : info.status().message();
  };
  EXPECT_EQ(error("{}"), "connection file /s/c.json has no 'interface' field");
  EXPECT_EQ(error(R"({"interface": "tcp://x"})"), "connection file /s/c.json has no 'key' field");
  EXPECT_EQ(error(R"({"interface": "tcp://x", "key": "k"})"), "connection file /s/c.json has no 'registration' port");
  EXPECT_EQ(error(R"({"interface": "tcp://x", "key": 5, "registration": 1})"),
            "connection file /s/c.json: 'key' is a number, not a string");
  EXPECT_EQ(error(R"({"interface": "tcp://x", "key": "k", "registration": "1"})"),
            "connection file /s/c.json: 'registration' is \"1\", not a port number");
  EXPECT_EQ(error(R"({"interface": "tcp://x", "key": "k", "registration": 1, "location": 3})"),
            "connection file /s/c.json: 'location' is a number, not a string");
  EXPECT_EQ(error("[]"), "connection file /s/c.json is a JSON array, not an object");
  std::string syntax = error("{\n\"key\": \"k\",\n}");
  EXPECT_EQ(syntax.rfind("connection file /s/c.json is not valid JSON: parse error at line 3, column 1", 0), 0u) << syntax;
  EXPECT_EQ(syntax.find("json.exception"), std::string::npos) << syntax;
}

TEST(ConnectionFileTest, RefusesUnknownSignatureSchemes) {
  Result<ConnectionInfo> bad = ParseConnectionInfo(
      R"({"interface": "tcp://x", "key": "k", "registration": 1, "signature_scheme": "hmac-md999"})",
      "connection file /s/c.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("connection file /s/c.json: unsupported signature_scheme 'hmac-md999'", 0), 0u)
      << bad.status().message();
  Result<ConnectionInfo> sha512 = ParseConnectionInfo(
      R"({"interface": "tcp://x", "key": "k", "registration": 1, "signature_scheme": "hmac-sha512"})", "f");
  ASSERT_TRUE(sha512.ok()) << sha512.status().message();
  EXPECT_EQ(sha512->signature_scheme, "hmac-sha512");
  Result<ConnectionInfo> absent = ParseConnectionInfo(R"({"interface": "tcp://x", "key": "k", "registration": 1})", "f");
  ASSERT_TRUE(absent.ok());
  EXPECT_EQ(absent->signature_scheme, "hmac-sha256");
}

TEST(ConnectionFileTest, NamesFollowClusterId) {
  EXPECT_EQ(ConnectionFileName("engine", ""), "ipcontroller-engine.json");
  EXPECT_EQ(ConnectionFileName("client", "abc"), "ipcontroller-abc-client.json");
}

TEST(ConnectionFileTest, IpcUrlsUseDash) {
  ConnectionInfo info;
  info.interface = "ipc:///tmp/ctl";
  info.channels = {{"mux", 3}};
  EXPECT_EQ(*info.url("mux"), "ipc:///tmp/ctl-3");
}

TEST(ConnectionFileTest, LocalInterfaceRoundTripsUnderItsOwnKey) {
  ConnectionInfo info;
  info.key = "k";
  info.channels = {{"registration", 5}};
  info.local_interface = "ipc:///tmp/ipp-1-abcdef/ipp";
  info.local_host = "node7";
  nlohmann::json j = info;
  EXPECT_EQ(j["ipp_local"], (nlohmann::json{{"host", "node7"}, {"interface", "ipc:///tmp/ipp-1-abcdef/ipp"}}));
  Result<ConnectionInfo> back = ParseConnectionInfo(j.dump(), "test");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->local_interface, info.local_interface);
  EXPECT_EQ(back->local_host, "node7");
  EXPECT_FALSE(back->channels.contains("ipp_local")) << "not a channel";
  // Stock files have none, and then none is written.
  Result<ConnectionInfo> stock = ParseConnectionInfo(kStockEngineFile, "test");
  ASSERT_TRUE(stock.ok());
  EXPECT_TRUE(stock->local_interface.empty());
  EXPECT_FALSE(nlohmann::json(*stock).contains("ipp_local"));
  // A malformed one is ignored, as stock peers ignore it, not a reason to refuse the file.
  for (nlohmann::json bad : {nlohmann::json(5), nlohmann::json{{"interface", 5}, {"host", "h"}}, nlohmann::json{{"interface", "ipc:///x"}}}) {
    j["ipp_local"] = bad;
    Result<ConnectionInfo> ignored = ParseConnectionInfo(j.dump(), "test");
    ASSERT_TRUE(ignored.ok()) << bad.dump() << ": " << ignored.status().ToString();
    EXPECT_TRUE(ignored->local_interface.empty()) << bad.dump();
  }
  EXPECT_EQ(ChannelUrl("tcp://10.0.0.1", 80), "tcp://10.0.0.1:80");
  EXPECT_EQ(ChannelUrl("ipc:///tmp/x/ipp", 80), "ipc:///tmp/x/ipp-80");
}

TEST(ConnectionFileTest, LocalTransportOnlyOnTheControllersHostWithSomeoneListening) {
  testutil::TempDir dir;
  ConnectionInfo info;
  info.channels = {{"registration", 4242}, {"mux", 4243}};
  info.local_interface = "ipc://" + (dir.path() / "ipp").string();
  info.local_host = HostName();
  const std::string tcp = info.interface;

  EXPECT_FALSE(PreferLocalTransport(info)) << "nothing at the path yet";
  ASSERT_TRUE(testutil::MakeStaleUnixSocket(dir.path() / "ipp-4242"));
  EXPECT_FALSE(PreferLocalTransport(info)) << "a killed controller's socket";
  EXPECT_EQ(info.interface, tcp);

  zmq::context_t context;
  zmq::socket_t listener(context, zmq::socket_type::router);
  listener.bind(ChannelUrl(info.local_interface, 4242));  // replaces the stale file, as libzmq does
  ConnectionInfo elsewhere = info;
  elsewhere.local_host = HostName() + "-other";
  EXPECT_FALSE(PreferLocalTransport(elsewhere)) << "another host";
  ConnectionInfo stock = info;
  stock.local_interface.clear();
  EXPECT_FALSE(PreferLocalTransport(stock));

  ASSERT_TRUE(PreferLocalTransport(info));
  EXPECT_EQ(*info.url("mux"), "ipc://" + (dir.path() / "ipp-4243").string());
}

TEST(ProfileDirTest, ResolvesLikeIPython) {
  testutil::TempDir dir;
  setenv("IPYTHONDIR", dir.path().c_str(), 1);
  EXPECT_EQ(ProfileDir::Resolve("", "").root(), dir.path() / "profile_default");
  EXPECT_EQ(ProfileDir::Resolve("mpi", "").root(), dir.path() / "profile_mpi");
  EXPECT_EQ(ProfileDir::Resolve("mpi", "/x/y").root(), "/x/y");
  ProfileDir p = ProfileDir::Resolve("t", "");
  ASSERT_TRUE(p.Ensure().ok());
  struct stat st {};
  ASSERT_EQ(stat(p.security_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700);
  EXPECT_TRUE(std::filesystem::is_directory(p.log_dir()));
  unsetenv("IPYTHONDIR");
}

}  // namespace
}  // namespace ipp::protocol

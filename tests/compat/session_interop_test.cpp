// Interop with the real jupyter_client Session (Debian's, under /usr/bin/python3): messages it
// signs must parse and verify here, and messages we produce must verify and deserialize there —
// same key, both directions, with buffers.
#include <unistd.h>

#include <gtest/gtest.h>
#include <zmq_addon.hpp>

#include "protocol/clock.hpp"
#include "protocol/session.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp::protocol {
namespace {

using testutil::kSystemPython;

std::optional<Frames> RecvWithin(zmq::socket_t& sock, std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
  Frames frames;
  (void)zmq::recv_multipart(sock, std::back_inserter(frames));
  return frames;
}

TEST(SessionInteropTest, RealJupyterSessionBothDirections) {
  if (access(kSystemPython, X_OK) != 0) GTEST_SKIP() << kSystemPython << " not found";
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  std::string endpoint = testutil::BindLoopback(router);
  const std::string key = NewId();
  Session session(key);

  testutil::TempDir dir;
  testutil::Process peer({kSystemPython, std::string(IPP_SOURCE_DIR) + "/tests/compat/session_peer.py",
                          endpoint, key},
                         dir.path() / "peer.log");

  auto first = RecvWithin(router, std::chrono::seconds(30));
  ASSERT_TRUE(first) << "python peer sent nothing: " << testutil::ReadFile(dir.path() / "peer.log");
  Result<Message> m = session.parse(std::move(*first));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->msg_type(), "py_to_cpp");
  EXPECT_EQ(m->content["text"], "h\u00e9llo");
  EXPECT_EQ(m->content["list"], json::parse("[1, 2.5, null]"));
  EXPECT_EQ(m->metadata["targets"], json::parse("[0]"));
  EXPECT_EQ(m->header["version"], "5.3");
  EXPECT_TRUE(ParseIso8601(m->header["date"].get<std::string>()).has_value());
  ASSERT_EQ(m->identities.size(), 1u);  // the DEALER's routing id added by our ROUTER
  ASSERT_EQ(m->buffers.size(), 2u);
  EXPECT_EQ(view(m->buffers[0]), std::string_view("\x00" "bin\xff", 5));
  ASSERT_EQ(m->buffers[1].size(), 1u << 20);

  auto forged = RecvWithin(router, std::chrono::seconds(10));
  ASSERT_TRUE(forged);
  Result<Message> f = session.parse(std::move(*forged));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Status::Code::kUnauthorized);

  std::string reversed(view(m->buffers[1]));
  std::reverse(reversed.begin(), reversed.end());
  Message reply = session.make("cpp_to_py",
                               {{"echo", m->content["text"]}, {"n", 2}, {"forged_rejected", true}},
                               m->header, {{"status", "ok"}});
  reply.identities = std::move(m->identities);
  reply.buffers.emplace_back(reversed.data(), reversed.size());
  reply.buffers.emplace_back();
  zmq::send_multipart(router, session.serialize(std::move(reply)));

  auto verdict_frames = RecvWithin(router, std::chrono::seconds(30));
  ASSERT_TRUE(verdict_frames) << testutil::ReadFile(dir.path() / "peer.log");
  Result<Message> verdict = session.parse(std::move(*verdict_frames));
  ASSERT_TRUE(verdict.ok()) << verdict.status().ToString();
  EXPECT_TRUE(verdict->content["ok"].get<bool>()) << verdict->content["errors"].dump(2);
  EXPECT_EQ(peer.wait(std::chrono::seconds(20)), 0) << testutil::ReadFile(dir.path() / "peer.log");
}

}  // namespace
}  // namespace ipp::protocol

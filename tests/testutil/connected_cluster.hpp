// A test fixture: a LocalCluster and a Client connected to it that has seen its engines register.
// Tests that link ipp::client include this; testutil itself does not depend on the client.
#pragma once

#include <chrono>
#include <memory>

#include <gtest/gtest.h>

#include "ipp/client.hpp"
#include "tests/testutil/testutil.hpp"

namespace ipp::testutil {

template <int kEngines>
class ConnectedClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok()) << cluster_.Log("controller.log");
    auto c = Client::Connect(ClientOptions::File(cluster_.client_file().string()));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    ASSERT_TRUE(client_->wait_for_engines(kEngines, std::chrono::seconds(30)).ok()) << cluster_.Log("engine-0.log");
  }

  LocalCluster cluster_{kEngines};
  std::unique_ptr<Client> client_;
};

}  // namespace ipp::testutil

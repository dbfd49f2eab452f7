#include "compute/driver/net.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "compute/driver/util.h"

namespace concord::compute::driver {
namespace {

TEST(SubnetTest, ParsesCidr) {
  auto s = parse_subnet("10.99.0.0/24");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(ipv4_to_string(s->network), "10.99.0.0");
  EXPECT_EQ(ipv4_to_string(s->gateway()), "10.99.0.1");
  EXPECT_EQ(ipv4_to_string(s->broadcast()), "10.99.0.255");
  EXPECT_EQ(s->prefix, 24);
}

TEST(SubnetTest, RejectsMalformedSubnets) {
  for (const char* bad : {"10.99.0.0", "10.99.0.1/24", "10.99.0.0/31", "10.99.0.0/7",
                          "300.1.1.0/24", "10.99.0/24", "10.99.0.0/24x", "a.b.c.d/24"}) {
    auto s = parse_subnet(bad);
    ASSERT_FALSE(s.has_value()) << bad;
    EXPECT_EQ(s.error().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(NamesTest, InterfaceNamesFitTheKernelLimit) {
  std::string id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
  EXPECT_LE(BridgeNetwork::host_veth_name(id).size(), 15u);
  EXPECT_NE(BridgeNetwork::host_veth_name(id), BridgeNetwork::host_veth_name(id + "x"));
  std::string mac = BridgeNetwork::mac_for(id);
  EXPECT_EQ(mac.size(), 17u);
  EXPECT_EQ(mac.substr(0, 3), "02:");
}

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/lease-test-" + std::to_string(::getpid());
    std::filesystem::remove_all(root_);
    ASSERT_TRUE(make_dirs(root_ + "/owner-a").has_value());
    ASSERT_TRUE(make_dirs(root_ + "/owner-b").has_value());
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string root_;
};

TEST_F(LeaseTest, AllocatesDistinctAddressesAndReusesAnOwnersLease) {
  BridgeNetwork net("cctest0", parse_subnet("10.98.0.0/24").value(), root_ + "/leases");
  auto a = net.allocate("a", root_ + "/owner-a");
  auto b = net.allocate("b", root_ + "/owner-b");
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->ip, "10.98.0.2");
  EXPECT_EQ(b->ip, "10.98.0.3");
  EXPECT_EQ(a->gateway, "10.98.0.1");
  EXPECT_EQ(net.allocate("a", root_ + "/owner-a")->ip, "10.98.0.2");
  ASSERT_TRUE(net.release(*a, root_ + "/owner-a").has_value());
  EXPECT_EQ(net.allocate("c", root_ + "/owner-b")->ip, "10.98.0.2");
}

TEST_F(LeaseTest, FullSubnetIsResourceExhaustedAndStaleLeasesAreReclaimed) {
  // A /30 holds the gateway and one host.
  BridgeNetwork net("cctest0", parse_subnet("10.98.1.0/30").value(), root_ + "/leases");
  ASSERT_TRUE(net.allocate("a", root_ + "/owner-a").has_value());
  auto full = net.allocate("b", root_ + "/owner-b");
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().code(), Code::kResourceExhausted);
  // Owner a's instance directory disappears (agent died mid-destroy): its lease is stale.
  std::filesystem::remove_all(root_ + "/owner-a");
  auto b = net.allocate("b", root_ + "/owner-b");
  ASSERT_TRUE(b.has_value()) << b.error().to_string();
  EXPECT_EQ(b->ip, "10.98.1.2");
}

TEST_F(LeaseTest, ReclaimRefusesAnAddressHeldByALiveInstance) {
  BridgeNetwork net("cctest0", parse_subnet("10.98.2.0/24").value(), root_ + "/leases");
  auto a = net.allocate("a", root_ + "/owner-a");
  ASSERT_TRUE(a.has_value());
  auto st = net.reclaim(*a, root_ + "/owner-b");
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kAlreadyExists);
  EXPECT_TRUE(net.reclaim(*a, root_ + "/owner-a").has_value());
}

}  // namespace
}  // namespace concord::compute::driver

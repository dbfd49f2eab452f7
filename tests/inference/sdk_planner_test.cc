// The split planner's decisions from numbers alone: the Fashion-MNIST fixture's real sizes
// (input 3,136 B, cuts 50,176 .. 256 B, output 40 B) with device and server costs chosen to
// stand for a slow phone and an idle or loaded server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "inference/sdk/planner.h"

namespace concord::inference::sdk {
namespace {

using ::testing::HasSubstr;

constexpr int kNodes = 10;

// The fixture chain: per-cut bytes of one row, and a device that needs `device_scale` ms per
// unit of work (the whole model is 10 units; a cut after node k has done k units).
std::vector<SplitOption> fixture_options(double device_ms_whole, double server_ms_whole) {
  const std::vector<uint64_t> cut_bytes = {50176, 50176, 12544, 25088, 25088, 6272, 6272, 256, 256};
  std::vector<SplitOption> out;
  out.push_back({0, 0, 3136, 40, server_ms_whole});
  for (int k = 1; k < kNodes; ++k) {
    const double share = double(k) / kNodes;
    out.push_back(
        {k, device_ms_whole * share, cut_bytes[k - 1], 40, server_ms_whole * (1 - share)});
  }
  out.push_back({kNodes, device_ms_whole, 0, 0, 0});
  return out;
}

TEST(Planner, CostFormulaAddsDeviceNetworkAndLoadedServer) {
  const std::vector<SplitOption> options = {{3, 2.0, 1000, 100, 4.0}, {10, 9.0, 0, 0, 0}};
  LinkEstimate link{
      .rtt_ms = 5, .up_bytes_per_ms = 100, .down_bytes_per_ms = 50, .server_load_factor = 1.5};
  const auto costs = estimate_costs(options, link);
  ASSERT_EQ(costs.size(), 2u);
  EXPECT_DOUBLE_EQ(costs[0].device_ms, 2.0);
  EXPECT_DOUBLE_EQ(costs[0].network_ms, 5 + 10 + 2);
  EXPECT_DOUBLE_EQ(costs[0].server_ms, 6.0);
  EXPECT_DOUBLE_EQ(costs[0].total_ms, 25.0);
  // Device-only pays neither the round trip nor the server.
  EXPECT_DOUBLE_EQ(costs[1].network_ms, 0);
  EXPECT_DOUBLE_EQ(costs[1].total_ms, 9.0);
  EXPECT_EQ(cheapest(costs), 1);
}

TEST(Planner, NonsenseMeasurementsCannotMakeAnOptionFree) {
  const std::vector<SplitOption> options = {{0, 0, 1000, 0, 1.0}};
  LinkEstimate link{
      .rtt_ms = -3, .up_bytes_per_ms = 0, .down_bytes_per_ms = -1, .server_load_factor = 0.2};
  const auto costs = estimate_costs(options, link);
  EXPECT_DOUBLE_EQ(costs[0].network_ms, 1000.0);  // 1 byte/ms floor, rtt floored at 0
  EXPECT_DOUBLE_EQ(costs[0].server_ms, 1.0);      // load floored at 1
}

TEST(Planner, SlowLinkPicksDeviceOnlyOrALateSplit) {
  // 1 Mbit/s = 125 B/ms, 20 ms RTT; device 10 ms for the whole model; server 1 ms.
  SplitPlanner planner;
  const int cut = planner.plan(fixture_options(10, 1),
                               {.rtt_ms = 20, .up_bytes_per_ms = 125, .down_bytes_per_ms = 125});
  EXPECT_EQ(cut, kNodes);
  // Without the round trip, a late cut (256 B) beats sending the 3 KB input but not the device.
  SplitPlanner no_rtt;
  const int c2 = no_rtt.plan(fixture_options(10, 1),
                             {.rtt_ms = 0, .up_bytes_per_ms = 125, .down_bytes_per_ms = 125});
  EXPECT_GE(c2, 8);
}

TEST(Planner, FastLinkAndIdleServerPicksCloudOnlyOrAnEarlySplit) {
  // A CPU-starved device (100 ms for the model), 1 Gbit/s, 0.3 ms RTT, server 1 ms.
  SplitPlanner planner;
  const int cut =
      planner.plan(fixture_options(100, 1),
                   {.rtt_ms = 0.3, .up_bytes_per_ms = 125000, .down_bytes_per_ms = 125000});
  EXPECT_EQ(cut, 0);
  EXPECT_THAT(format_plan_table(planner.last_costs(), cut, kNodes), HasSubstr("* cloud-only"));
}

TEST(Planner, MiddleSplitWinsWhenInputIsLargeAndTheDeviceIsCheapEarly) {
  // The input is large (a raw photo), the first node shrinks it a lot and is cheap on the
  // device, the rest is expensive on the device: a middle split is best.
  const std::vector<SplitOption> options = {
      {0, 0, 1'000'000, 40, 5}, {1, 2, 1'000, 40, 4}, {2, 60, 500, 40, 2}, {3, 100, 0, 0, 0}};
  SplitPlanner planner;
  EXPECT_EQ(
      planner.plan(options, {.rtt_ms = 5, .up_bytes_per_ms = 1000, .down_bytes_per_ms = 1000}), 1);
}

TEST(Planner, LoadedServerPushesTheChoiceToTheDevice) {
  const LinkEstimate idle{.rtt_ms = 0.3,
                          .up_bytes_per_ms = 125000,
                          .down_bytes_per_ms = 125000,
                          .server_load_factor = 1};
  LinkEstimate loaded = idle;
  loaded.server_load_factor = 200;  // a request waits 199x its compute time in the queue
  SplitPlanner planner(0.1);
  ASSERT_EQ(planner.plan(fixture_options(100, 1), idle), 0);
  // Also the server's compute itself got slower (shared CPU): 5 ms for the whole model.
  EXPECT_EQ(planner.plan(fixture_options(100, 5), loaded), kNodes);
  EXPECT_EQ(planner.revisions(), 1);
}

TEST(Planner, HysteresisKeepsTheChoiceUnderSmallJitter) {
  // Two options within a few percent of each other, alternating which is cheaper.
  SplitPlanner planner(0.1);
  const LinkEstimate link{.rtt_ms = 1, .up_bytes_per_ms = 1000, .down_bytes_per_ms = 1000};
  std::vector<SplitOption> a = {{0, 0, 1000, 0, 8.0}, {10, 10.0, 0, 0, 0}};  // 10 vs 10
  a[1].device_ms = 10.2;
  ASSERT_EQ(planner.plan(a, link), 0);
  for (int i = 0; i < 20; ++i) {
    // Device-only is now up to 5% cheaper, now 3% dearer: no flip.
    a[1].device_ms = i % 2 ? 9.5 : 10.3;
    EXPECT_EQ(planner.plan(a, link), 0) << i;
  }
  EXPECT_EQ(planner.revisions(), 0);
  // A real change (device-only 20% cheaper) does flip, once.
  a[1].device_ms = 8.0;
  EXPECT_EQ(planner.plan(a, link), kNodes);
  EXPECT_EQ(planner.revisions(), 1);
  // And the jitter around the new state keeps it.
  a[1].device_ms = 9.0;
  EXPECT_EQ(planner.plan(a, link), kNodes);
  EXPECT_EQ(planner.revisions(), 1);
}

TEST(Planner, ZeroMarginFollowsEveryChange) {
  SplitPlanner planner(0.0);
  const LinkEstimate link{.rtt_ms = 1, .up_bytes_per_ms = 1000, .down_bytes_per_ms = 1000};
  std::vector<SplitOption> a = {{0, 0, 1000, 0, 8.0}, {10, 10.2, 0, 0, 0}};
  ASSERT_EQ(planner.plan(a, link), 0);
  a[1].device_ms = 9.5;
  EXPECT_EQ(planner.plan(a, link), kNodes);
}

TEST(Planner, VanishedChoiceIsReplacedAndEmptyOptionsGiveMinusOne) {
  SplitPlanner planner;
  const LinkEstimate link;
  ASSERT_EQ(planner.plan({{0, 0, 10, 0, 1}, {5, 3, 10, 0, 1}}, link), 0);
  EXPECT_EQ(planner.plan({{5, 3, 10, 0, 1}}, link), 5);
  EXPECT_EQ(planner.plan({}, link), -1);
  EXPECT_EQ(cheapest({}), -1);
}

}  // namespace
}  // namespace concord::inference::sdk

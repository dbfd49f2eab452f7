#include "compute/scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace concord::compute::scheduler {
namespace {

constexpr const char* kNoValidHost =
    "No valid host was found. There are not enough hosts available.";

HostState make_host(std::string name, Resources total = {8, 16384, 100}) {
  HostState h;
  h.name = std::move(name);
  h.total = total;
  h.drivers = {"container", "vm"};
  return h;
}

Request make_request(Resources r = {1, 1024, 10}, int count = 1) {
  Request q;
  q.per_instance = r;
  q.count = count;
  return q;
}

Options unit_ratios(Options::Weigher weigher = Options::Weigher::kSpread) {
  Options o;
  o.cpu_allocation_ratio = o.ram_allocation_ratio = o.disk_allocation_ratio = 1.0;
  o.weigher = weigher;
  return o;
}

std::vector<std::string> placed(const Result<Placement>& result) {
  EXPECT_TRUE(result.has_value()) << result.error().to_string();
  return result ? result->hosts : std::vector<std::string>{};
}

std::string reason(const std::string& detail) {
  return std::string(kNoValidHost) + " (" + detail + ")";
}

// ---------------------------------------------------------------------------------------------
// Every filter alone: one host, changed by `host`, asked by `request`; either it is chosen or
// the decision fails with exactly `rejected` as the detail.

struct FilterCase {
  const char* name;
  std::function<void(HostState&)> host;
  std::function<void(Request&)> request;
  std::optional<std::string> rejected;  // nullopt: the host is chosen
};

void no_change_host(HostState&) {}
void no_change_request(Request&) {}

const FilterCase kFilterCases[] = {
    {"plain_host_passes", no_change_host, no_change_request, std::nullopt},
    {"down_rejected", [](HostState& h) { h.up = false; }, no_change_request, "1 host: 1 down"},
    {"disabled_rejected", [](HostState& h) { h.disabled = true; }, no_change_request,
     "1 host: 1 disabled"},
    {"zone_match_passes", [](HostState& h) { h.availability_zone = "az1"; },
     [](Request& q) { q.availability_zone = "az1"; }, std::nullopt},
    {"zone_mismatch_rejected", no_change_host, [](Request& q) { q.availability_zone = "az1"; },
     "1 host: 1 not in availability zone \"az1\""},
    {"empty_zone_means_any", [](HostState& h) { h.availability_zone = "az9"; }, no_change_request,
     std::nullopt},
    {"driver_present_passes", [](HostState& h) { h.drivers = {"vm"}; },
     [](Request& q) { q.driver = "vm"; }, std::nullopt},
    {"driver_missing_rejected", [](HostState& h) { h.drivers = {"container"}; },
     [](Request& q) { q.driver = "vm"; }, "1 host: 1 without driver \"vm\""},
    {"trait_equal_passes", [](HostState& h) { h.traits["hypervisor_type"] = "qemu"; },
     [](Request& q) { q.required_traits["hypervisor_type"] = "qemu"; }, std::nullopt},
    {"trait_other_value_rejected", [](HostState& h) { h.traits["hypervisor_type"] = "xen"; },
     [](Request& q) { q.required_traits["hypervisor_type"] = "qemu"; },
     "1 host: 1 without the required traits"},
    {"trait_missing_rejected", no_change_host,
     [](Request& q) { q.required_traits["hypervisor_type"] = "qemu"; },
     "1 host: 1 without the required traits"},
    {"extra_host_traits_pass", [](HostState& h) { h.traits["gpu"] = "none"; }, no_change_request,
     std::nullopt},
    {"ignored_rejected", no_change_host, [](Request& q) { q.ignore_hosts = {"h1"}; },
     "1 host: 1 ignored"},
    {"ignore_other_host_passes", no_change_host, [](Request& q) { q.ignore_hosts = {"h2"}; },
     std::nullopt},
    {"vcpus_exact_fit_passes", no_change_host, [](Request& q) { q.per_instance.vcpus = 8; },
     std::nullopt},
    {"vcpus_short_rejected", [](HostState& h) { h.used.vcpus = 1; },
     [](Request& q) { q.per_instance.vcpus = 8; }, "1 host: 1 without 8 free vcpus"},
    {"ram_exact_fit_passes", [](HostState& h) { h.used.ram_mb = 16384 - 1024; }, no_change_request,
     std::nullopt},
    {"ram_short_rejected", [](HostState& h) { h.used.ram_mb = 16384 - 1023; }, no_change_request,
     "1 host: 1 without 1024 MiB free RAM"},
    {"disk_exact_fit_passes", [](HostState& h) { h.used.disk_gb = 90; }, no_change_request,
     std::nullopt},
    {"disk_short_rejected", [](HostState& h) { h.used.disk_gb = 91; }, no_change_request,
     "1 host: 1 without 10 GiB free disk"},
    {"over_committed_snapshot_rejected", [](HostState& h) { h.used.vcpus = 12; },
     [](Request& q) {
       q.per_instance = {0, 0, 0};
     },
     "1 host: 1 without 0 free vcpus"},
    {"zero_size_instance_passes_full_host", [](HostState& h) { h.used = h.total; },
     [](Request& q) {
       q.per_instance = {0, 0, 0};
     },
     std::nullopt},
    // A forced host skips the operator and policy filters...
    {"forced_disabled_passes", [](HostState& h) { h.disabled = true; },
     [](Request& q) { q.force_host = "h1"; }, std::nullopt},
    {"forced_other_zone_passes", [](HostState& h) { h.availability_zone = "az2"; },
     [](Request& q) {
       q.availability_zone = "az1";
       q.force_host = "az1:h1";
     },
     std::nullopt},
    {"forced_ignored_passes", no_change_host,
     [](Request& q) {
       q.force_host = "h1";
       q.ignore_hosts = {"h1"};
     },
     std::nullopt},
    {"forced_without_traits_passes", no_change_host,
     [](Request& q) {
       q.force_host = "nova:h1:h1";
       q.required_traits["x"] = "y";
     },
     std::nullopt},
    // ...but not the physical ones.
    {"forced_down_rejected", [](HostState& h) { h.up = false; },
     [](Request& q) { q.force_host = "h1"; }, "1 host: 1 down"},
    {"forced_without_driver_rejected", [](HostState& h) { h.drivers = {"container"}; },
     [](Request& q) {
       q.force_host = "h1";
       q.driver = "vm";
     },
     "1 host: 1 without driver \"vm\""},
    {"forced_full_rejected", [](HostState& h) { h.used.vcpus = 8; },
     [](Request& q) { q.force_host = "h1"; }, "1 host: 1 without 1 free vcpus"},
    {"forced_unknown_host_rejected", no_change_host, [](Request& q) { q.force_host = "h9"; },
     "1 host: 1 not the forced host \"h9\""},
    // A requested host (2.74) narrows the choice but every filter still applies.
    {"requested_host_passes", no_change_host, [](Request& q) { q.requested_host = "h1"; },
     std::nullopt},
    {"requested_other_host_rejected", no_change_host, [](Request& q) { q.requested_host = "h2"; },
     "1 host: 1 not the requested host \"h2\""},
    {"requested_disabled_rejected", [](HostState& h) { h.disabled = true; },
     [](Request& q) { q.requested_host = "h1"; }, "1 host: 1 disabled"},
    {"zone_only_force_form_is_not_forced", [](HostState& h) { h.disabled = true; },
     [](Request& q) { q.force_host = "nova:"; }, "1 host: 1 disabled"},
};

class FilterTest : public testing::TestWithParam<FilterCase> {};

TEST_P(FilterTest, AloneOnOneHost) {
  const FilterCase& c = GetParam();
  std::vector<HostState> hosts = {make_host("h1")};
  c.host(hosts[0]);
  Request q = make_request();
  c.request(q);
  for (auto weigher : {Options::Weigher::kPack, Options::Weigher::kSpread}) {
    auto result = place(hosts, q, unit_ratios(weigher));
    auto scheduler = Scheduler::create(hosts, unit_ratios(weigher));
    ASSERT_TRUE(scheduler.has_value());
    auto stateful = scheduler->place(q);
    if (!c.rejected) {
      EXPECT_EQ(placed(result), std::vector<std::string>{"h1"});
      EXPECT_EQ(placed(stateful), std::vector<std::string>{"h1"});
      continue;
    }
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), Code::kResourceExhausted);
    EXPECT_EQ(result.error().message(), reason(*c.rejected));
    ASSERT_FALSE(stateful.has_value());
    EXPECT_EQ(stateful.error().code(), Code::kResourceExhausted);
    EXPECT_EQ(stateful.error().message(), reason(*c.rejected));
  }
}

INSTANTIATE_TEST_SUITE_P(Filters, FilterTest, testing::ValuesIn(kFilterCases),
                         [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------------------------
// Allocation ratios.

struct RatioCase {
  const char* name;
  Resources total;
  Options ratios;
  Resources fits;       // exactly at the limit
  Resources too_large;  // one unit over
};

Options ratios(double cpu, double ram, double disk) {
  Options o;
  o.cpu_allocation_ratio = cpu;
  o.ram_allocation_ratio = ram;
  o.disk_allocation_ratio = disk;
  return o;
}

const RatioCase kRatioCases[] = {
    {"cpu_16", {4, 1000, 10}, ratios(16, 1, 1), {64, 1, 1}, {65, 1, 1}},
    {"ram_1_5", {4, 1000, 10}, ratios(1, 1.5, 1), {1, 1500, 1}, {1, 1501, 1}},
    {"disk_2", {4, 1000, 10}, ratios(1, 1, 2), {1, 1, 20}, {1, 1, 21}},
    {"disk_below_one", {4, 1000, 10}, ratios(1, 1, 0.5), {1, 1, 5}, {1, 1, 6}},
    {"fraction_floors", {3, 1000, 10}, ratios(1.5, 1, 1), {4, 1, 1}, {5, 1, 1}},
};

class RatioTest : public testing::TestWithParam<RatioCase> {};

TEST_P(RatioTest, LimitIsFloorOfTotalTimesRatio) {
  const RatioCase& c = GetParam();
  std::vector<HostState> hosts = {make_host("h1", c.total)};
  EXPECT_EQ(placed(place(hosts, make_request(c.fits), c.ratios)), std::vector<std::string>{"h1"});
  auto over = place(hosts, make_request(c.too_large), c.ratios);
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code(), Code::kResourceExhausted);
}

INSTANTIATE_TEST_SUITE_P(Ratios, RatioTest, testing::ValuesIn(kRatioCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RatioLimitTest, UsedCountsAgainstTheScaledLimit) {
  std::vector<HostState> hosts = {make_host("h1", {4, 1000, 10})};
  hosts[0].used.vcpus = 60;  // of 64 under ratio 16
  EXPECT_EQ(placed(place(hosts, make_request({4, 1, 1}), ratios(16, 1, 1))),
            std::vector<std::string>{"h1"});
  auto over = place(hosts, make_request({5, 1, 1}), ratios(16, 1, 1));
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().message(), reason("1 host: 1 without 5 free vcpus"));
}

TEST(RatioLimitTest, NonPositiveRatiosAreInvalid) {
  std::vector<HostState> hosts = {make_host("h1")};
  for (const Options& bad : {ratios(0, 1, 1), ratios(1, -1, 1), ratios(1, 1, 0)}) {
    auto result = place(hosts, make_request(), bad);
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), Code::kInvalidArgument);
    auto scheduler = Scheduler::create(hosts, bad);
    ASSERT_FALSE(scheduler.has_value());
    EXPECT_EQ(scheduler.error().code(), Code::kInvalidArgument);
  }
  auto nan = place(hosts, make_request(), ratios(1, 1, std::nan("")));
  ASSERT_FALSE(nan.has_value());
  EXPECT_EQ(nan.error().code(), Code::kInvalidArgument);
  EXPECT_NE(nan.error().message().find("disk_allocation_ratio"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Weighers.

TEST(WeigherTest, PackPrefersTheHostInUseSpreadTheEmptyOne) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b")};
  hosts[1].used = {4, 8192, 50};  // b is half full
  EXPECT_EQ(placed(place(hosts, make_request(), unit_ratios(Options::Weigher::kPack))),
            std::vector<std::string>{"b"});
  EXPECT_EQ(placed(place(hosts, make_request(), unit_ratios(Options::Weigher::kSpread))),
            std::vector<std::string>{"a"});
}

TEST(WeigherTest, PackNeverStartsAnEmptyHostWhileOneInUseFits) {
  // The host in use is a poor shape for the request; it still wins over an empty host.
  std::vector<HostState> hosts = {make_host("a"), make_host("b")};
  hosts[1].used = {1, 14000, 0};
  EXPECT_EQ(placed(place(hosts, make_request({4, 1024, 1}), unit_ratios(Options::Weigher::kPack))),
            std::vector<std::string>{"b"});
}

TEST(WeigherTest, PackMatchesTheRequestShapeToTheFreeCapacity) {
  // c has spare RAM (CPU-heavy flavors filled it), d spare CPU. A RAM-heavy instance goes to c,
  // a CPU-heavy one to d, so neither host strands a dimension.
  std::vector<HostState> hosts = {make_host("c", {32, 131072, 1000}),
                                  make_host("d", {32, 131072, 1000})};
  hosts[0].used = {28, 32768, 100};  // free 4 vcpus, 96 GiB
  hosts[1].used = {8, 114688, 100};  // free 24 vcpus, 16 GiB
  const Options pack = unit_ratios(Options::Weigher::kPack);
  EXPECT_EQ(placed(place(hosts, make_request({2, 16384, 10}), pack)),
            std::vector<std::string>{"c"});
  EXPECT_EQ(placed(place(hosts, make_request({4, 2048, 10}), pack)), std::vector<std::string>{"d"});
}

TEST(WeigherTest, PackPrefersTheFullerOfTwoEquallyShapedHosts) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b")};
  hosts[0].used = {2, 4096, 25};
  hosts[1].used = {6, 12288, 75};
  EXPECT_EQ(placed(place(hosts, make_request(), unit_ratios(Options::Weigher::kPack))),
            std::vector<std::string>{"b"});
}

TEST(WeigherTest, SpreadComparesFractionsNotAbsoluteFreeCapacity) {
  // big has more free vcpus in absolute terms but is 75% used; small is empty.
  std::vector<HostState> hosts = {make_host("big", {64, 131072, 1000}),
                                  make_host("small", {8, 16384, 100})};
  hosts[0].used = {48, 98304, 750};
  EXPECT_EQ(placed(place(hosts, make_request(), unit_ratios(Options::Weigher::kSpread))),
            std::vector<std::string>{"small"});
}

TEST(WeigherTest, TiesGoToTheSmallerNameWhateverTheInputOrder) {
  std::vector<HostState> hosts = {make_host("h3"), make_host("h1"), make_host("h2")};
  for (auto weigher : {Options::Weigher::kPack, Options::Weigher::kSpread}) {
    EXPECT_EQ(placed(place(hosts, make_request(), unit_ratios(weigher))),
              std::vector<std::string>{"h1"});
  }
}

// ---------------------------------------------------------------------------------------------
// count > 1 works on a working copy.

TEST(CountTest, LaterInstancesSeeEarlierOnes) {
  std::vector<HostState> hosts = {make_host("a", {4, 8192, 100}), make_host("b", {4, 8192, 100})};
  auto packed = place(hosts, make_request({2, 1024, 10}, 4), unit_ratios(Options::Weigher::kPack));
  EXPECT_EQ(placed(packed), (std::vector<std::string>{"a", "a", "b", "b"}));
  EXPECT_FALSE(packed->shortfall.has_value());
  auto spread =
      place(hosts, make_request({2, 1024, 10}, 4), unit_ratios(Options::Weigher::kSpread));
  EXPECT_EQ(placed(spread), (std::vector<std::string>{"a", "b", "a", "b"}));
  // The snapshot itself is not changed.
  EXPECT_EQ(hosts[0].used, Resources{});
}

TEST(CountTest, PlacesAsManyAsFitAndSaysWhyNotMore) {
  std::vector<HostState> hosts = {make_host("a", {4, 8192, 100}), make_host("b", {4, 8192, 100})};
  auto result = place(hosts, make_request({2, 1024, 10}, 5), unit_ratios());
  EXPECT_EQ(placed(result).size(), 4u);
  ASSERT_TRUE(result->shortfall.has_value());
  EXPECT_EQ(result->shortfall->reason, reason("2 hosts: 2 without 2 free vcpus"));
  EXPECT_EQ(result->shortfall->rejected,
            (std::vector<std::pair<std::string, int64_t>>{{"vcpus", 2}}));
}

// ---------------------------------------------------------------------------------------------
// Server groups.

Request grouped(GroupPolicy::Kind kind, std::vector<std::string> members, int count = 1) {
  Request q = make_request({1, 1024, 10}, count);
  q.group.kind = kind;
  q.group.member_hosts = std::move(members);
  return q;
}

TEST(GroupTest, AffinityStaysOnTheGroupsHost) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b"), make_host("c")};
  // Spread would pick a; the group lives on c.
  hosts[2].used = {4, 8192, 50};
  EXPECT_EQ(
      placed(place(hosts, grouped(GroupPolicy::Kind::kAffinity, {"c", "c"}, 2), unit_ratios())),
      (std::vector<std::string>{"c", "c"}));
}

TEST(GroupTest, AffinityFirstServerAnywhereThenTogether) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b"), make_host("c")};
  EXPECT_EQ(placed(place(hosts, grouped(GroupPolicy::Kind::kAffinity, {}, 3), unit_ratios())),
            (std::vector<std::string>{"a", "a", "a"}));
}

TEST(GroupTest, AffinityFailsWhenTheGroupsHostIsFull) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b")};
  hosts[1].used = hosts[1].total;
  auto result = place(hosts, grouped(GroupPolicy::Kind::kAffinity, {"b"}), unit_ratios());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kResourceExhausted);
  EXPECT_EQ(result.error().message(),
            reason("2 hosts: 1 not the server group's host (affinity), 1 without 1 free vcpus"));
}

TEST(GroupTest, AffinityWithAHostNoLongerInTheSnapshotFindsNothing) {
  std::vector<HostState> hosts = {make_host("a")};
  auto result = place(hosts, grouped(GroupPolicy::Kind::kAffinity, {"gone"}), unit_ratios());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().message(), reason("1 host: 1 not the server group's host (affinity)"));
}

TEST(GroupTest, AntiAffinityGroupOfThreeSpreadsOverThreeHostsEvenWhenPacking) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b"), make_host("c")};
  auto result = place(hosts, grouped(GroupPolicy::Kind::kAntiAffinity, {}, 3),
                      unit_ratios(Options::Weigher::kPack));
  EXPECT_EQ(placed(result), (std::vector<std::string>{"a", "b", "c"}));
  auto fourth = place(hosts, grouped(GroupPolicy::Kind::kAntiAffinity, {}, 4), unit_ratios());
  EXPECT_EQ(placed(fourth).size(), 3u);
  ASSERT_TRUE(fourth->shortfall.has_value());
  EXPECT_EQ(fourth->shortfall->reason,
            reason("3 hosts: 3 at the server group's limit of 1 per host (anti-affinity)"));
}

TEST(GroupTest, AntiAffinityAvoidsHostsTheGroupAlreadyUses) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b"), make_host("c")};
  EXPECT_EQ(placed(place(hosts, grouped(GroupPolicy::Kind::kAntiAffinity, {"a", "c"}),
                         unit_ratios(Options::Weigher::kPack))),
            std::vector<std::string>{"b"});
}

TEST(GroupTest, AntiAffinityMaxServerPerHost) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b"), make_host("c")};
  Request q = grouped(GroupPolicy::Kind::kAntiAffinity, {"a"}, 6);
  q.group.max_server_per_host = 2;
  auto result = place(hosts, q, unit_ratios(Options::Weigher::kPack));
  auto hosts_used = placed(result);
  ASSERT_EQ(hosts_used.size(), 5u);  // a already holds one member
  std::map<std::string, int> per_host;
  for (const auto& h : hosts_used) ++per_host[h];
  EXPECT_EQ(per_host, (std::map<std::string, int>{{"a", 1}, {"b", 2}, {"c", 2}}));
  ASSERT_TRUE(result->shortfall.has_value());
  EXPECT_EQ(result->shortfall->reason,
            reason("3 hosts: 3 at the server group's limit of 2 per host (anti-affinity)"));
}

TEST(GroupTest, SoftAffinityPrefersTheGroupsHostButMovesOnWhenFull) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b", {2, 16384, 100})};
  // Spread alone would choose a (b is smaller and the group already uses some of it).
  hosts[1].used = {1, 1024, 10};
  auto result = place(hosts, grouped(GroupPolicy::Kind::kSoftAffinity, {"b"}, 3), unit_ratios());
  EXPECT_EQ(placed(result), (std::vector<std::string>{"b", "a", "a"}));
}

TEST(GroupTest, SoftAntiAffinityAvoidsMembersButNeverFails) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b")};
  hosts[0].used = {4, 8192, 50};  // pack would choose a
  auto avoid = place(hosts, grouped(GroupPolicy::Kind::kSoftAntiAffinity, {"a"}),
                     unit_ratios(Options::Weigher::kPack));
  EXPECT_EQ(placed(avoid), std::vector<std::string>{"b"});
  // Three servers on two hosts: one on each, then the third still lands (on either).
  auto many = place(hosts, grouped(GroupPolicy::Kind::kSoftAntiAffinity, {}, 3),
                    unit_ratios(Options::Weigher::kPack));
  ASSERT_EQ(placed(many).size(), 3u);
  EXPECT_EQ(many->hosts[0], "a");
  EXPECT_EQ(many->hosts[1], "b");
  EXPECT_FALSE(many->shortfall.has_value());
}

TEST(GroupTest, ForcedHostSkipsHardGroupPolicy) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b")};
  Request q = grouped(GroupPolicy::Kind::kAntiAffinity, {"a"});
  q.force_host = "a";
  EXPECT_EQ(placed(place(hosts, q, unit_ratios())), std::vector<std::string>{"a"});
}

// ---------------------------------------------------------------------------------------------
// No valid host, validation, determinism.

TEST(NoValidHostTest, CountsEachHostUnderTheFirstFilterThatRejectsIt) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b"), make_host("c"),
                                  make_host("d"), make_host("e"), make_host("f")};
  hosts[0].up = false;
  hosts[0].disabled = true;  // counted as down only
  hosts[1].disabled = true;
  hosts[2].availability_zone = "other";
  hosts[3].used.ram_mb = 16000;
  hosts[4].used.ram_mb = 16000;
  hosts[5].drivers = {"container"};
  Request q = make_request({1, 1024, 10});
  q.availability_zone = "nova";
  q.driver = "vm";
  auto result = place(hosts, q, unit_ratios());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kResourceExhausted);
  EXPECT_EQ(result.error().message(),
            reason("6 hosts: 1 down, 1 disabled, 1 not in availability zone \"nova\", 1 "
                   "without driver \"vm\", 2 without 1024 MiB free RAM"));
}

TEST(NoValidHostTest, NoHostsAtAll) {
  auto result = place({}, make_request(), unit_ratios());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kResourceExhausted);
  EXPECT_EQ(result.error().message(), std::string(kNoValidHost) + " (no compute hosts)");
}

TEST(ValidationTest, MalformedRequestsAreInvalidArguments) {
  std::vector<HostState> hosts = {make_host("a")};
  auto scheduler = Scheduler::create(hosts, unit_ratios());
  ASSERT_TRUE(scheduler.has_value());
  struct Bad {
    Request request;
    const char* mentions;
  };
  Request zero = make_request();
  zero.count = 0;
  Request negative = make_request({1, -1, 1});
  Request anti = grouped(GroupPolicy::Kind::kAntiAffinity, {});
  anti.group.max_server_per_host = 0;
  for (const Bad& bad :
       {Bad{zero, "count"}, Bad{negative, "negative"}, Bad{anti, "max_server_per_host"}}) {
    auto result = place(hosts, bad.request, unit_ratios());
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code(), Code::kInvalidArgument);
    EXPECT_NE(result.error().message().find(bad.mentions), std::string::npos)
        << result.error().message();
    auto stateful = scheduler->place(bad.request);
    ASSERT_FALSE(stateful.has_value());
    EXPECT_EQ(stateful.error().code(), Code::kInvalidArgument);
  }
}

TEST(ValidationTest, DuplicateHostNamesAreInvalid) {
  std::vector<HostState> hosts = {make_host("a"), make_host("b"), make_host("a")};
  auto result = place(hosts, make_request(), unit_ratios());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(result.error().message(), "two hosts in the snapshot are named \"a\"");
  auto scheduler = Scheduler::create(hosts, unit_ratios());
  ASSERT_FALSE(scheduler.has_value());
  EXPECT_EQ(scheduler.error().code(), Code::kInvalidArgument);
}

TEST(ForcedHostNameTest, ParsesNovasForms) {
  EXPECT_EQ(forced_host_name(""), "");
  EXPECT_EQ(forced_host_name("h1"), "h1");
  EXPECT_EQ(forced_host_name("az:h1"), "h1");
  EXPECT_EQ(forced_host_name("az:h1:node"), "h1");
  EXPECT_EQ(forced_host_name(":h1"), "h1");
  EXPECT_EQ(forced_host_name("az:"), "");
}

// ---------------------------------------------------------------------------------------------
// Random cases: place() is the reference; Scheduler must agree with it decision by decision,
// and both must be deterministic whatever the input order.

// splitmix64, so the cases are the same with every standard library.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  int64_t in(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(next() % (hi - lo + 1)); }
  bool chance(int percent) { return in(1, 100) <= percent; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[next() % v.size()];
  }
};

const std::vector<std::string> kZones = {"nova", "az1", "az2"};

HostState random_host(Rng& rng, int index) {
  HostState h = make_host("host-" + std::to_string(rng.in(0, 9)) + "-" + std::to_string(index),
                          {rng.in(4, 32), rng.in(4, 64) * 1024, rng.in(100, 1000)});
  h.availability_zone = rng.pick(kZones);
  h.up = !rng.chance(10);
  h.disabled = rng.chance(10);
  if (rng.chance(20)) h.drivers = {rng.chance(50) ? "vm" : "container"};
  if (rng.chance(50)) h.traits["hypervisor_type"] = rng.chance(70) ? "qemu" : "lxc";
  h.used = {rng.in(0, h.total.vcpus * 2), rng.in(0, h.total.ram_mb), rng.in(0, h.total.disk_gb)};
  return h;
}

Request random_request(Rng& rng, const std::vector<HostState>& hosts) {
  static const std::vector<Resources> kFlavors = {{1, 512, 1},    {2, 2048, 20},  {4, 8192, 40},
                                                  {8, 16384, 80}, {2, 16384, 40}, {0, 0, 0}};
  Request q = make_request(rng.pick(kFlavors), static_cast<int>(rng.in(1, 4)));
  if (rng.chance(30)) q.availability_zone = rng.pick(kZones);
  if (rng.chance(30)) q.driver = rng.chance(50) ? "vm" : "container";
  if (rng.chance(20)) q.required_traits["hypervisor_type"] = "qemu";
  if (rng.chance(10)) q.ignore_hosts = {rng.pick(hosts).name, "not-a-host"};
  if (rng.chance(5)) q.force_host = "az1:" + rng.pick(hosts).name;
  if (rng.chance(5)) q.requested_host = rng.pick(hosts).name;
  if (rng.chance(40)) {
    q.group.kind = static_cast<GroupPolicy::Kind>(rng.in(1, 4));
    const int members = static_cast<int>(rng.in(0, 3));
    for (int i = 0; i < members; ++i) {
      q.group.member_hosts.push_back(rng.chance(90) ? rng.pick(hosts).name : "gone");
    }
    q.group.max_server_per_host = static_cast<int>(rng.in(1, 3));
  }
  return q;
}

void apply(std::vector<HostState>& hosts, const Request& q, const Placement& p) {
  for (const std::string& name : p.hosts) {
    auto it = std::find_if(hosts.begin(), hosts.end(), [&](auto& h) { return h.name == name; });
    ASSERT_NE(it, hosts.end());
    it->used.vcpus += q.per_instance.vcpus;
    it->used.ram_mb += q.per_instance.ram_mb;
    it->used.disk_gb += q.per_instance.disk_gb;
    ++it->instances;
  }
}

void expect_same(const Result<Placement>& want, const Result<Placement>& got, int step) {
  ASSERT_EQ(want.has_value(), got.has_value()) << "step " << step;
  if (!want) {
    EXPECT_EQ(want.error().code(), got.error().code()) << "step " << step;
    EXPECT_EQ(want.error().message(), got.error().message()) << "step " << step;
    return;
  }
  EXPECT_EQ(want->hosts, got->hosts) << "step " << step;
  ASSERT_EQ(want->shortfall.has_value(), got->shortfall.has_value()) << "step " << step;
  if (want->shortfall) {
    EXPECT_EQ(want->shortfall->reason, got->shortfall->reason) << "step " << step;
    EXPECT_EQ(want->shortfall->rejected, got->shortfall->rejected) << "step " << step;
  }
}

TEST(PropertyTest, SchedulerAgreesWithPlaceOnRandomSequences) {
  Rng rng{20261129};
  int placements = 0;
  int failures = 0;
  for (int round = 0; round < 40; ++round) {
    std::vector<HostState> hosts;
    const int n = static_cast<int>(rng.in(1, 25));
    for (int i = 0; i < n; ++i) hosts.push_back(random_host(rng, i));
    Options options;
    options.weigher = rng.chance(50) ? Options::Weigher::kPack : Options::Weigher::kSpread;
    options.cpu_allocation_ratio = rng.pick(std::vector<double>{1.0, 4.0, 16.0});
    options.ram_allocation_ratio = rng.pick(std::vector<double>{1.0, 1.5});
    auto scheduler = Scheduler::create(hosts, options);
    ASSERT_TRUE(scheduler.has_value());
    for (int step = 0; step < 60; ++step) {
      // Now and then the world changes under the scheduler: a claim made elsewhere, a host
      // going down or being disabled, a host added. The reference sees the same snapshot.
      if (rng.chance(10)) {
        HostState& h = hosts[rng.in(0, static_cast<int64_t>(hosts.size()) - 1)];
        if (rng.chance(50)) {
          const Resources r{1, 512, 5};
          ASSERT_TRUE(scheduler->claim(h.name, r).has_value());
          h.used.vcpus += r.vcpus;
          h.used.ram_mb += r.ram_mb;
          h.used.disk_gb += r.disk_gb;
          ++h.instances;
        } else {
          h.up = !h.up;
          h.disabled = rng.chance(30);
          scheduler->update_host(h);
        }
      }
      if (rng.chance(3)) {
        hosts.push_back(random_host(rng, static_cast<int>(hosts.size()) + 100));
        scheduler->update_host(hosts.back());
      }
      const Request q = random_request(rng, hosts);
      auto want = place(hosts, q, options);
      auto got = scheduler->place(q);
      expect_same(want, got, step);
      if (testing::Test::HasFailure()) return;
      if (want) {
        apply(hosts, q, *want);
        placements += static_cast<int>(want->hosts.size());
      } else {
        ++failures;
      }
    }
    // The scheduler's own view of every host matches the reference snapshot.
    auto mine = scheduler->hosts();
    std::vector<HostState> expected = hosts;
    std::sort(expected.begin(), expected.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    ASSERT_EQ(mine.size(), expected.size());
    for (size_t i = 0; i < mine.size(); ++i) {
      EXPECT_EQ(mine[i].name, expected[i].name);
      EXPECT_EQ(mine[i].used, expected[i].used) << mine[i].name;
      EXPECT_EQ(mine[i].instances, expected[i].instances) << mine[i].name;
    }
  }
  // The random cases exercise both outcomes, or the comparison proves little.
  EXPECT_GT(placements, 500);
  EXPECT_GT(failures, 50);
}

TEST(PropertyTest, PlaceIsDeterministicWhateverTheHostOrder) {
  Rng rng{7};
  for (int round = 0; round < 50; ++round) {
    std::vector<HostState> hosts;
    for (int i = 0; i < 12; ++i) hosts.push_back(random_host(rng, i));
    const Request q = random_request(rng, hosts);
    Options options;
    options.weigher = rng.chance(50) ? Options::Weigher::kPack : Options::Weigher::kSpread;
    auto first = place(hosts, q, options);
    std::reverse(hosts.begin(), hosts.end());
    auto reversed = place(hosts, q, options);
    std::swap(hosts[0], hosts[hosts.size() / 2]);
    auto swapped = place(hosts, q, options);
    expect_same(first, reversed, round);
    expect_same(first, swapped, round);
  }
}

// ---------------------------------------------------------------------------------------------
// Scheduler's own operations.

TEST(SchedulerTest, RecordsItsPlacementsAcrossCalls) {
  std::vector<HostState> hosts = {make_host("a", {4, 8192, 100})};
  auto scheduler = Scheduler::create(hosts, unit_ratios());
  ASSERT_TRUE(scheduler.has_value());
  EXPECT_EQ(placed(scheduler->place(make_request({3, 1024, 10}))), std::vector<std::string>{"a"});
  auto second = scheduler->place(make_request({3, 1024, 10}));
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), Code::kResourceExhausted);
  EXPECT_EQ(second.error().message(), reason("1 host: 1 without 3 free vcpus"));
  EXPECT_EQ(scheduler->hosts()[0].used, (Resources{3, 1024, 10}));
  EXPECT_EQ(scheduler->hosts()[0].instances, 1);
}

TEST(SchedulerTest, ClaimAndReleaseMoveFreeCapacity) {
  std::vector<HostState> hosts = {make_host("a", {4, 8192, 100})};
  auto scheduler = Scheduler::create(hosts, unit_ratios());
  ASSERT_TRUE(scheduler.has_value());
  ASSERT_TRUE(scheduler->claim("a", {4, 1024, 10}).has_value());
  auto full = scheduler->place(make_request({1, 1, 1}));
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().code(), Code::kResourceExhausted);
  ASSERT_TRUE(scheduler->release("a", {4, 1024, 10}).has_value());
  EXPECT_EQ(placed(scheduler->place(make_request({1, 1, 1}))), std::vector<std::string>{"a"});
  // Releasing more than was claimed stops at zero instead of inventing capacity.
  ASSERT_TRUE(scheduler->release("a", {100, 100000, 1000}).has_value());
  EXPECT_EQ(scheduler->hosts()[0].used, Resources{});
  EXPECT_EQ(scheduler->hosts()[0].instances, 0);
  auto unknown = scheduler->claim("nope", {1, 1, 1});
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
  auto unknown_release = scheduler->release("nope", {1, 1, 1});
  ASSERT_FALSE(unknown_release.has_value());
  EXPECT_EQ(unknown_release.error().code(), Code::kNotFound);
}

TEST(SchedulerTest, HostChangesReachCachedCandidates) {
  std::vector<HostState> hosts = {make_host("b")};
  auto scheduler = Scheduler::create(hosts, unit_ratios());
  ASSERT_TRUE(scheduler.has_value());
  Request q = make_request();
  q.availability_zone = "nova";
  EXPECT_EQ(placed(scheduler->place(q)), std::vector<std::string>{"b"});  // caches candidates
  scheduler->update_host(make_host("a"));  // added before b in name order
  EXPECT_EQ(placed(scheduler->place(q)), std::vector<std::string>{"a"});
  HostState a = make_host("a");
  a.disabled = true;
  scheduler->update_host(a);
  EXPECT_EQ(placed(scheduler->place(q)), std::vector<std::string>{"b"});
  HostState b = make_host("b");
  b.up = false;
  scheduler->update_host(b);
  auto none = scheduler->place(q);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().message(), reason("2 hosts: 1 down, 1 disabled"));
  EXPECT_EQ(scheduler->size(), 2u);
}

TEST(SchedulerTest, PartialPlacementKeepsWhatWasPlaced) {
  std::vector<HostState> hosts = {make_host("a", {2, 8192, 100})};
  auto scheduler = Scheduler::create(hosts, unit_ratios());
  ASSERT_TRUE(scheduler.has_value());
  auto result = scheduler->place(make_request({1, 1024, 10}, 3));
  EXPECT_EQ(placed(result), (std::vector<std::string>{"a", "a"}));
  ASSERT_TRUE(result->shortfall.has_value());
  EXPECT_EQ(result->shortfall->reason, reason("1 host: 1 without 1 free vcpus"));
  EXPECT_EQ(scheduler->hosts()[0].instances, 2);
}

}  // namespace
}  // namespace concord::compute::scheduler

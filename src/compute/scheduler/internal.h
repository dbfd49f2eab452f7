#pragma once
// Pieces shared by place() (the reference: every filter on every host for every instance) and
// Scheduler (cached candidates, flat arrays). Sharing the weigher arithmetic and the reason text
// is what lets the tests demand that both give identical answers, bit for bit.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "compute/scheduler/scheduler.h"

namespace concord::compute::scheduler::internal {

inline constexpr int kDims = 3;  // vcpus, ram_mb, disk_gb
using Vec = std::array<int64_t, kDims>;

inline Vec to_vec(const Resources& r) {
  return {r.vcpus, r.ram_mb, r.disk_gb};
}

// Filters in the order they are applied; a rejected host is counted under the first one.
enum Filter : int {
  kNotForced = 0,  // another host was forced
  kNotRequested,   // another host was requested (2.74 host / hypervisor_hostname)
  kIgnored,
  kDown,
  kDisabled,
  kZone,
  kDriver,
  kTraits,
  kAffinity,
  kAntiAffinity,
  kVcpus,
  kRam,
  kDisk,
  kFilterCount,
};
// Filters that depend only on the host's static description and the request, not on claims.
inline constexpr int kStaticFilterCount = kAffinity;

using Counts = std::array<int64_t, kFilterCount>;

// Capacity a host offers under the allocation ratios: floor(total * ratio), as Nova's
// resource filters compare used + requested <= total * ratio.
Vec limits(const Resources& total, const Options& options);

// kInvalidArgument with the offending field named.
[[nodiscard]] Status validate_options(const Options& options);
[[nodiscard]] Status validate_request(const Request& request);

using Inverse = std::array<double, kDims>;
// 1 / limit per dimension (0 where the limit is 0): weigh() multiplies by it.
Inverse inverse(const Vec& limit);

// The weigher: higher is better. `free_before` is the host's free capacity (limit - used) and
// `want` the instance, free_before >= want on every dimension of a host that passed the
// filters; `in_use` says the host holds any claim.
double weigh(Options::Weigher weigher, const Inverse& inv_limit, const Vec& free_before,
             const Vec& want, bool in_use);

// The host part of force_host, and the ignored hosts sorted for binary search.
struct StaticRequest {
  std::string_view forced;
  std::vector<std::string> ignored;
  explicit StaticRequest(const Request& request);
};

// The first request-independent-of-claims filter the host fails (kNotForced .. kTraits), or
// kFilterCount if it passes them all.
int static_filter(const HostState& host, const Request& request, const StaticRequest& prepared);

// The hard server-group filter (kAffinity, kAntiAffinity) given how many group members the host
// holds and whether the group has any member at all; kFilterCount if it passes. Forced hosts
// skip it.
inline int group_filter(const GroupPolicy& group, bool group_has_members, int64_t members_on_host) {
  if (group.kind == GroupPolicy::Kind::kAffinity && group_has_members && members_on_host == 0) {
    return kAffinity;
  }
  if (group.kind == GroupPolicy::Kind::kAntiAffinity &&
      members_on_host >= group.max_server_per_host) {
    return kAntiAffinity;
  }
  return kFilterCount;
}

// Soft server-group weight, compared before weigh(): the more group members on the host the
// better for soft-affinity, the fewer for soft-anti-affinity, 0 otherwise.
inline int64_t group_weight(GroupPolicy::Kind kind, int64_t members_on_host) {
  if (kind == GroupPolicy::Kind::kSoftAffinity) return members_on_host;
  if (kind == GroupPolicy::Kind::kSoftAntiAffinity) return -members_on_host;
  return 0;
}

// The first capacity filter the host fails (kVcpus, kRam, kDisk), or kFilterCount if it fits.
inline int capacity_filter(const Vec& free, const Vec& request) {
  for (int d = 0; d < kDims; ++d) {
    if (free[d] < request[d]) return kVcpus + d;
  }
  return kFilterCount;
}

NoValidHost no_valid_host(const Counts& rejected, int64_t host_count, const Request& request);

}  // namespace concord::compute::scheduler::internal

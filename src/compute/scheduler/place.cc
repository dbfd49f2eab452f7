// place(): the reference decision, written for clarity. Every instance runs every filter on
// every host of a working copy, so it is O(count x hosts) with string compares; the Nova API
// calls it with a few hosts' worth of work per request. Scheduler (scheduler.cc) gives the same
// answers faster for long runs of decisions.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "compute/scheduler/internal.h"
#include "compute/scheduler/scheduler.h"

namespace concord::compute::scheduler {

namespace {

using internal::Counts;
using internal::Vec;

Status check_unique_names(std::span<const HostState> hosts) {
  std::vector<std::string_view> names;
  names.reserve(hosts.size());
  for (const HostState& h : hosts) names.push_back(h.name);
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end()) {
    return fail(Code::kInvalidArgument,
                "two hosts in the snapshot are named \"" + std::string(*dup) + "\"");
  }
  return ok();
}

}  // namespace

Result<Placement> place(std::span<const HostState> hosts, const Request& request,
                        const Options& options) {
  CONCORD_RETURN_IF_ERROR(internal::validate_options(options));
  CONCORD_RETURN_IF_ERROR(internal::validate_request(request));
  CONCORD_RETURN_IF_ERROR(check_unique_names(hosts));

  const internal::StaticRequest prepared(request);
  const bool forced = !prepared.forced.empty();
  const Vec want = internal::to_vec(request.per_instance);
  std::vector<Vec> limit;
  std::vector<Vec> used;
  for (const HostState& h : hosts) {
    limit.push_back(internal::limits(h.total, options));
    used.push_back(internal::to_vec(h.used));
  }
  std::map<std::string, int64_t, std::less<>> members;
  for (const std::string& name : request.group.member_hosts) ++members[name];
  auto members_on = [&](const std::string& name) {
    auto it = members.find(name);
    return it == members.end() ? int64_t{0} : it->second;
  };

  Placement out;
  for (int k = 0; k < request.count; ++k) {
    Counts rejected{};
    int best = -1;
    int64_t best_group = 0;
    double best_weight = 0;
    for (size_t i = 0; i < hosts.size(); ++i) {
      const HostState& h = hosts[i];
      int filter = internal::static_filter(h, request, prepared);
      if (filter == internal::kFilterCount && !forced) {
        filter = internal::group_filter(request.group, !members.empty(), members_on(h.name));
      }
      Vec free{};
      for (int d = 0; d < internal::kDims; ++d) free[d] = limit[i][d] - used[i][d];
      if (filter == internal::kFilterCount) filter = internal::capacity_filter(free, want);
      if (filter != internal::kFilterCount) {
        ++rejected[filter];
        continue;
      }
      const int64_t group = internal::group_weight(request.group.kind, members_on(h.name));
      const double weight = internal::weigh(options.weigher, internal::inverse(limit[i]), free,
                                            want, used[i] != Vec{});
      const bool better =
          best < 0 || group > best_group ||
          (group == best_group &&
           (weight > best_weight || (weight == best_weight && h.name < hosts[best].name)));
      if (better) {
        best = static_cast<int>(i);
        best_group = group;
        best_weight = weight;
      }
    }
    if (best < 0) {
      NoValidHost why =
          internal::no_valid_host(rejected, static_cast<int64_t>(hosts.size()), request);
      if (out.hosts.empty()) return fail(Code::kResourceExhausted, why.reason);
      out.shortfall = std::move(why);
      break;
    }
    for (int d = 0; d < internal::kDims; ++d) used[best][d] += want[d];
    ++members[hosts[best].name];
    out.hosts.push_back(hosts[best].name);
  }
  return out;
}

}  // namespace concord::compute::scheduler

#include "compute/scheduler/internal.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>

namespace concord::compute::scheduler::internal {

Vec limits(const Resources& total, const Options& options) {
  auto scaled = [](int64_t total, double ratio) {
    if (total <= 0) return int64_t{0};
    return static_cast<int64_t>(std::floor(static_cast<double>(total) * ratio));
  };
  return {scaled(total.vcpus, options.cpu_allocation_ratio),
          scaled(total.ram_mb, options.ram_allocation_ratio),
          scaled(total.disk_gb, options.disk_allocation_ratio)};
}

Status validate_request(const Request& request) {
  if (request.count < 1) {
    return fail(Code::kInvalidArgument,
                fmt::format("request count must be at least 1, got {}", request.count));
  }
  const Resources& r = request.per_instance;
  if (r.vcpus < 0 || r.ram_mb < 0 || r.disk_gb < 0) {
    return fail(Code::kInvalidArgument,
                fmt::format("requested resources must not be negative, got vcpus={} ram_mb={} "
                            "disk_gb={}",
                            r.vcpus, r.ram_mb, r.disk_gb));
  }
  if (request.group.kind == GroupPolicy::Kind::kAntiAffinity &&
      request.group.max_server_per_host < 1) {
    return fail(Code::kInvalidArgument,
                fmt::format("anti-affinity max_server_per_host must be at least 1, got {}",
                            request.group.max_server_per_host));
  }
  return ok();
}

Status validate_options(const Options& options) {
  const std::pair<const char*, double> ratios[] = {
      {"cpu_allocation_ratio", options.cpu_allocation_ratio},
      {"ram_allocation_ratio", options.ram_allocation_ratio},
      {"disk_allocation_ratio", options.disk_allocation_ratio}};
  for (const auto& [name, value] : ratios) {
    if (!(value > 0.0) || !std::isfinite(value)) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{} must be a positive finite number, got {}", name, value));
    }
  }
  return ok();
}

Inverse inverse(const Vec& limit) {
  Inverse out{};
  for (int d = 0; d < kDims; ++d) {
    out[d] = limit[d] > 0 ? 1.0 / static_cast<double>(limit[d]) : 0.0;
  }
  return out;
}

double weigh(Options::Weigher weigher, const Inverse& inv_limit, const Vec& free_before,
             const Vec& want, bool in_use) {
  // Each dimension counts as a fraction of the host's (ratio-scaled) capacity, so vcpus and MiB
  // weigh alike and a big host half full scores like a small host half full.
  if (weigher == Options::Weigher::kSpread) {
    double left = 0;
    for (int d = 0; d < kDims; ++d) {
      left += static_cast<double>(free_before[d] - want[d]) * inv_limit[d];
    }
    return left;
  }
  std::array<double, kDims> before{};
  std::array<double, kDims> need{};
  double left = 0;
  for (int d = 0; d < kDims; ++d) {
    before[d] = static_cast<double>(free_before[d]) * inv_limit[d];
    need[d] = static_cast<double>(want[d]) * inv_limit[d];
    left += static_cast<double>(free_before[d] - want[d]) * inv_limit[d];
  }

  // Pack. First, never start an empty host while a host in use can take the instance: that is
  // what keeps the host count down. Then, among hosts in use, the one whose free capacity has
  // the request's shape (largest cosine between the two vectors), so a host's vcpus and RAM run
  // out together instead of one stranding the other: a RAM-heavy flavor goes where CPU-heavy
  // ones left RAM free. Each dimension is weighted by (its share of the request's largest
  // dimension)^4, so a dimension the request barely uses (disk, usually) cannot outvote the
  // ones it stresses. Exact ties (parallel vectors) go to the fuller host. The benchmark
  // (docs/design/scheduler.md) compares this with plain best fit: 854-858 hosts against 867-869
  // for a lower bound of 844.
  double largest = 0;
  for (int d = 0; d < kDims; ++d) largest = std::max(largest, need[d]);
  double dot = 0;
  double norm_before = 0;
  double norm_need = 0;
  if (largest > 0) {
    for (int d = 0; d < kDims; ++d) {
      const double share = need[d] / largest;
      const double weight = (share * share) * (share * share);
      dot += weight * before[d] * need[d];
      norm_before += weight * before[d] * before[d];
      norm_need += weight * need[d] * need[d];
    }
  }
  const double denominator = std::sqrt(norm_before * norm_need);
  const double alignment = denominator > 0 ? dot / denominator : 0;
  return (in_use ? 0.0 : -4.0) + alignment - 1e-6 * left;
}

StaticRequest::StaticRequest(const Request& request)
    : forced(forced_host_name(request.force_host)),
      ignored(request.ignore_hosts.begin(), request.ignore_hosts.end()) {
  std::sort(ignored.begin(), ignored.end());
}

int static_filter(const HostState& host, const Request& request, const StaticRequest& prepared) {
  const bool forced = !prepared.forced.empty();
  if (forced && host.name != prepared.forced) return kNotForced;
  if (!request.requested_host.empty() && host.name != request.requested_host) {
    return kNotRequested;
  }
  if (!forced && std::binary_search(prepared.ignored.begin(), prepared.ignored.end(), host.name)) {
    return kIgnored;
  }
  if (!host.up) return kDown;
  if (!forced && host.disabled) return kDisabled;
  if (!forced && !request.availability_zone.empty() &&
      host.availability_zone != request.availability_zone) {
    return kZone;
  }
  if (!request.driver.empty() &&
      std::find(host.drivers.begin(), host.drivers.end(), request.driver) == host.drivers.end()) {
    return kDriver;
  }
  if (!forced) {
    for (const auto& [key, value] : request.required_traits) {
      auto it = host.traits.find(key);
      if (it == host.traits.end() || it->second != value) return kTraits;
    }
  }
  return kFilterCount;
}

NoValidHost no_valid_host(const Counts& rejected, int64_t host_count, const Request& request) {
  NoValidHost out;
  out.reason = "No valid host was found. There are not enough hosts available.";
  if (host_count == 0) {
    out.reason += " (no compute hosts)";
    return out;
  }
  auto label = [&](int filter) -> std::string {
    switch (filter) {
      case kNotForced:
        return fmt::format("not the forced host \"{}\"", forced_host_name(request.force_host));
      case kNotRequested:
        return fmt::format("not the requested host \"{}\"", request.requested_host);
      case kIgnored: return "ignored";
      case kDown: return "down";
      case kDisabled: return "disabled";
      case kZone: return fmt::format("not in availability zone \"{}\"", request.availability_zone);
      case kDriver: return fmt::format("without driver \"{}\"", request.driver);
      case kTraits: return "without the required traits";
      case kAffinity: return "not the server group's host (affinity)";
      case kAntiAffinity:
        return fmt::format("at the server group's limit of {} per host (anti-affinity)",
                           request.group.max_server_per_host);
      case kVcpus: return fmt::format("without {} free vcpus", request.per_instance.vcpus);
      case kRam: return fmt::format("without {} MiB free RAM", request.per_instance.ram_mb);
      case kDisk: return fmt::format("without {} GiB free disk", request.per_instance.disk_gb);
    }
    return "rejected";
  };
  static constexpr const char* kNames[] = {
      "force_host", "requested_host",    "ignore_hosts", "up",
      "enabled",    "availability_zone", "driver",       "traits",
      "affinity",   "anti_affinity",     "vcpus",        "ram_mb",
      "disk_gb"};
  static_assert(std::size(kNames) == kFilterCount);
  std::string detail;
  for (int f = 0; f < kFilterCount; ++f) {
    if (rejected[f] == 0) continue;
    out.rejected.emplace_back(kNames[f], rejected[f]);
    detail += fmt::format("{}{} {}", detail.empty() ? ": " : ", ", rejected[f], label(f));
  }
  out.reason += fmt::format(" ({} host{}{})", host_count, host_count == 1 ? "" : "s", detail);
  return out;
}

}  // namespace concord::compute::scheduler::internal

namespace concord::compute::scheduler {

std::string_view forced_host_name(std::string_view force_host) {
  auto colon = force_host.find(':');
  if (colon == std::string_view::npos) return force_host;
  std::string_view rest = force_host.substr(colon + 1);
  return rest.substr(0, rest.find(':'));
}

}  // namespace concord::compute::scheduler

#pragma once
// Quota limits and checks (api_quotas.cc). Usage is counted from the rows themselves inside
// the caller's write transaction (store writes are serialised), so there is no usage counter
// to drift and concurrent creates can never exceed a limit. See docs/design/compute.md.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"
#include "store/store.h"

namespace concord::compute {

// Resource names as Nova spells them in os-quota-sets: instances, cores, ram, key_pairs,
// metadata_items, server_groups, server_group_members, injected_files,
// injected_file_content_bytes, injected_file_path_bytes, fixed_ips, floating_ips,
// security_groups, security_group_rules. -1 means unlimited.
using QuotaLimits = std::map<std::string, int64_t>;

// The built-in defaults (Nova's).
const QuotaLimits& default_quota_limits();
// The effective limits of a project: its own rows, else class "default" rows, else built-in.
[[nodiscard]] Result<QuotaLimits> project_limits(store::Tx& tx, std::string_view project_id);

struct ServerUsage {
  int64_t instances = 0;
  int64_t cores = 0;
  int64_t ram = 0;
};
// The limits of one user in a project (per-user quota rows over the project's limits); shown
// by os-quota-sets?user_id=, enforced only for key pairs (per user, as Nova).
[[nodiscard]] Result<QuotaLimits> user_limits(store::Tx& tx, std::string_view project_id,
                                              std::string_view user_id);

// Servers of the project that are not deleted (including those being deleted, as Nova counts
// them until they are gone).
[[nodiscard]] Result<ServerUsage> server_usage(store::Tx& tx, std::string_view project_id);

// How many of `wanted` more instances (each `cores`/`ram_mb`) fit the project's quota
// (0..wanted). When fewer than `min` fit: kResourceExhausted with Nova's message, e.g.
// "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances".
[[nodiscard]] Result<int64_t> instances_allowed(store::Tx& tx, std::string_view project_id,
                                                int64_t min, int64_t wanted, int64_t cores,
                                                int64_t ram_mb);
// For a resize: extra cores/ram on top of current usage. kResourceExhausted when over.
[[nodiscard]] Status check_resize_quota(store::Tx& tx, std::string_view project_id,
                                        int64_t extra_cores, int64_t extra_ram_mb);

}  // namespace concord::compute

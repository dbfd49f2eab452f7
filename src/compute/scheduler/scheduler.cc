#include "compute/scheduler/scheduler.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "compute/scheduler/internal.h"

namespace concord::compute::scheduler {

using internal::Counts;
using internal::Vec;

// The state behind Scheduler. Hosts live in name order in parallel arrays, so a scan in index
// order with a strict "better than" keeps the smallest name on ties, as place() does. The
// candidates of a request (hosts passing the filters that do not depend on claims) are cached
// by the request's static key: a benchmark or a burst of creates asks for the same zone, driver
// and traits over and over. Any host change clears the cache; claims do not (they only move
// free capacity, which is checked on every decision).
class SchedulerIndex {
 public:
  explicit SchedulerIndex(const Options& options) : options_(options) {}

  void reset(std::vector<HostState> hosts) {
    std::sort(hosts.begin(), hosts.end(),
              [](const HostState& a, const HostState& b) { return a.name < b.name; });
    hosts_ = std::move(hosts);
    rebuild();
  }

  void rebuild() {
    const size_t n = hosts_.size();
    limit_.resize(n);
    inv_limit_.resize(n);
    free_.resize(n);
    by_name_.clear();
    for (size_t i = 0; i < n; ++i) refresh(i);
    for (size_t i = 0; i < n; ++i) by_name_.emplace(hosts_[i].name, static_cast<uint32_t>(i));
    members_.assign(n, 0);
    cache_.clear();
  }

  void refresh(size_t i) {
    limit_[i] = internal::limits(hosts_[i].total, options_);
    inv_limit_[i] = internal::inverse(limit_[i]);
    const Vec used = internal::to_vec(hosts_[i].used);
    for (int d = 0; d < internal::kDims; ++d) free_[i][d] = limit_[i][d] - used[d];
  }

  const uint32_t* find(std::string_view name) const {
    auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : &it->second;
  }

  Status adjust(std::string_view host, const Resources& r, int sign) {
    const uint32_t* i = find(host);
    if (i == nullptr) {
      return fail(Code::kNotFound, "no compute host named \"" + std::string(host) + "\"");
    }
    HostState& h = hosts_[*i];
    auto move = [sign](int64_t& used, int64_t amount) {
      used = std::max<int64_t>(0, used + sign * amount);
    };
    move(h.used.vcpus, r.vcpus);
    move(h.used.ram_mb, r.ram_mb);
    move(h.used.disk_gb, r.disk_gb);
    h.instances = std::max<int64_t>(0, h.instances + sign);
    refresh(*i);
    return ok();
  }

  void update_host(const HostState& host) {
    if (const uint32_t* i = find(host.name)) {
      hosts_[*i] = host;
      refresh(*i);
      cache_.clear();
      return;
    }
    auto pos =
        std::lower_bound(hosts_.begin(), hosts_.end(), host.name,
                         [](const HostState& h, const std::string& name) { return h.name < name; });
    hosts_.insert(pos, host);
    rebuild();
  }

  Result<Placement> place(const Request& request);

  const std::vector<HostState>& hosts() const { return hosts_; }

 private:
  struct Candidates {
    std::vector<uint32_t> hosts;
    Counts rejected{};  // by the static filters
  };

  const Candidates& candidates(const Request& request, const internal::StaticRequest& prepared) {
    std::string key;
    key.reserve(64);
    auto add = [&key](std::string_view part) {
      key += part;
      key += '\0';
    };
    add(prepared.forced);
    add(request.requested_host);
    add(request.availability_zone);
    add(request.driver);
    for (const auto& [k, v] : request.required_traits) {
      add(k);
      add(v);
    }
    key += '\1';
    for (const std::string& name : prepared.ignored) add(name);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;

    // Distinct requests are few (zones x drivers x trait sets); the bound only keeps a caller
    // with ever-changing ignore lists from growing the cache without limit.
    if (cache_.size() >= 256) cache_.clear();
    Candidates c;
    for (size_t i = 0; i < hosts_.size(); ++i) {
      const int filter = internal::static_filter(hosts_[i], request, prepared);
      if (filter == internal::kFilterCount) {
        c.hosts.push_back(static_cast<uint32_t>(i));
      } else {
        ++c.rejected[filter];
      }
    }
    return cache_.emplace(std::move(key), std::move(c)).first->second;
  }

  Options options_;
  std::vector<HostState> hosts_;  // name order; `used` and `instances` kept current
  std::vector<Vec> limit_;
  std::vector<internal::Inverse> inv_limit_;
  std::vector<Vec> free_;  // limit - used; negative when a snapshot is over-committed
  std::unordered_map<std::string, uint32_t> by_name_;
  std::unordered_map<std::string, Candidates> cache_;
  // Group members per host during one place() call; all zero between calls.
  std::vector<int64_t> members_;
};

Result<Placement> SchedulerIndex::place(const Request& request) {
  CONCORD_RETURN_IF_ERROR(internal::validate_request(request));
  const internal::StaticRequest prepared(request);
  const bool forced = !prepared.forced.empty();
  const Candidates& cands = candidates(request, prepared);
  const Vec want = internal::to_vec(request.per_instance);
  const GroupPolicy& group = request.group;
  const bool grouped = group.kind != GroupPolicy::Kind::kNone;

  std::vector<uint32_t> touched;
  bool group_has_members = !group.member_hosts.empty();
  if (grouped) {
    for (const std::string& name : group.member_hosts) {
      if (const uint32_t* i = find(name)) {
        ++members_[*i];
        touched.push_back(*i);
      }
    }
  }
  const bool hard_group = grouped && !forced;

  const bool pack = options_.weigher == Options::Weigher::kPack;

  Placement out;
  for (int k = 0; k < request.count; ++k) {
    int64_t best = -1;
    int64_t best_group = 0;
    double best_weight = 0;
    bool best_in_use = false;
    for (const uint32_t i : cands.hosts) {
      const Vec& free = free_[i];
      if (free[0] < want[0] || free[1] < want[1] || free[2] < want[2]) continue;
      int64_t g = 0;
      if (grouped) {
        if (hard_group && internal::group_filter(group, group_has_members, members_[i]) !=
                              internal::kFilterCount) {
          continue;
        }
        g = internal::group_weight(group.kind, members_[i]);
      }
      const bool in_use = free != limit_[i];
      // Pack ranks every host in use above every empty one (see weigh()), so once a host in
      // use is the best so far, an empty host of no higher group weight cannot win: skip the
      // arithmetic. Half the hosts are empty for much of a packing run.
      if (pack && best_in_use && !in_use && g <= best_group) continue;
      const double weight = internal::weigh(options_.weigher, inv_limit_[i], free, want, in_use);
      // Candidates are in name order, so a tie keeps the earlier (smaller) name.
      if (best < 0 || g > best_group || (g == best_group && weight > best_weight)) {
        best = i;
        best_group = g;
        best_weight = weight;
        best_in_use = in_use;
      }
    }
    if (best < 0) {
      // Recount the claim-dependent rejections in place()'s filter order for the reason.
      Counts rejected = cands.rejected;
      for (const uint32_t i : cands.hosts) {
        int filter = hard_group ? internal::group_filter(group, group_has_members, members_[i])
                                : internal::kFilterCount;
        if (filter == internal::kFilterCount) filter = internal::capacity_filter(free_[i], want);
        if (filter != internal::kFilterCount) ++rejected[filter];
      }
      NoValidHost why =
          internal::no_valid_host(rejected, static_cast<int64_t>(hosts_.size()), request);
      if (out.hosts.empty()) {
        for (const uint32_t i : touched) members_[i] = 0;
        return fail(Code::kResourceExhausted, why.reason);
      }
      out.shortfall = std::move(why);
      break;
    }
    HostState& h = hosts_[best];
    for (int d = 0; d < internal::kDims; ++d) free_[best][d] -= want[d];
    h.used.vcpus += want[0];
    h.used.ram_mb += want[1];
    h.used.disk_gb += want[2];
    ++h.instances;
    if (grouped) {
      ++members_[best];
      touched.push_back(static_cast<uint32_t>(best));
      group_has_members = true;
    }
    out.hosts.push_back(h.name);
  }
  for (const uint32_t i : touched) members_[i] = 0;
  return out;
}

Result<Scheduler> Scheduler::create(std::span<const HostState> hosts, const Options& options) {
  CONCORD_RETURN_IF_ERROR(internal::validate_options(options));
  std::vector<HostState> copy(hosts.begin(), hosts.end());
  std::sort(copy.begin(), copy.end(),
            [](const HostState& a, const HostState& b) { return a.name < b.name; });
  auto dup = std::adjacent_find(copy.begin(), copy.end(),
                                [](const auto& a, const auto& b) { return a.name == b.name; });
  if (dup != copy.end()) {
    return fail(Code::kInvalidArgument,
                "two hosts in the snapshot are named \"" + dup->name + "\"");
  }
  auto index = std::make_unique<SchedulerIndex>(options);
  index->reset(std::move(copy));
  return Scheduler(std::move(index));
}

Scheduler::Scheduler(std::unique_ptr<SchedulerIndex> index) : index_(std::move(index)) {}
Scheduler::Scheduler(Scheduler&&) noexcept = default;
Scheduler& Scheduler::operator=(Scheduler&&) noexcept = default;
Scheduler::~Scheduler() = default;

Result<Placement> Scheduler::place(const Request& request) {
  return index_->place(request);
}

Status Scheduler::claim(std::string_view host, const Resources& r) {
  return index_->adjust(host, r, +1);
}

Status Scheduler::release(std::string_view host, const Resources& r) {
  return index_->adjust(host, r, -1);
}

void Scheduler::update_host(const HostState& host) {
  index_->update_host(host);
}

std::vector<HostState> Scheduler::hosts() const {
  return index_->hosts();
}

size_t Scheduler::size() const {
  return index_->hosts().size();
}

}  // namespace concord::compute::scheduler

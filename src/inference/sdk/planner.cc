#include "inference/sdk/planner.h"

#include <fmt/format.h>

#include <algorithm>

namespace concord::inference::sdk {

std::vector<OptionCost> estimate_costs(const std::vector<SplitOption>& options,
                                       const LinkEstimate& link) {
  const double up = std::max(link.up_bytes_per_ms, 1.0);
  const double down = std::max(link.down_bytes_per_ms, 1.0);
  const double load = std::max(link.server_load_factor, 1.0);
  const double rtt = std::max(link.rtt_ms, 0.0);
  std::vector<OptionCost> out;
  out.reserve(options.size());
  for (const SplitOption& o : options) {
    OptionCost c;
    c.cut = o.cut;
    c.device_ms = std::max(o.device_ms, 0.0);
    if (o.remote()) {
      c.network_ms = rtt + double(o.bytes_up) / up + double(o.bytes_down) / down;
      c.server_ms = std::max(o.server_ms, 0.0) * load + std::max(link.server_queue_ms, 0.0);
    }
    c.total_ms = c.device_ms + c.network_ms + c.server_ms;
    out.push_back(c);
  }
  return out;
}

int cheapest(const std::vector<OptionCost>& costs) {
  int best = -1;
  for (size_t i = 0; i < costs.size(); ++i) {
    if (best < 0 || costs[i].total_ms < costs[best].total_ms) best = static_cast<int>(i);
  }
  return best;
}

int SplitPlanner::plan(const std::vector<SplitOption>& options, const LinkEstimate& link) {
  costs_ = estimate_costs(options, link);
  const int best = cheapest(costs_);
  if (best < 0) {
    current_ = -1;
    return current_;
  }
  const auto it = std::find_if(costs_.begin(), costs_.end(),
                               [&](const OptionCost& c) { return c.cut == current_; });
  if (current_ < 0 || it == costs_.end()) {
    if (current_ >= 0) ++revisions_;
    current_ = costs_[best].cut;
    return current_;
  }
  if (costs_[best].cut != current_ && costs_[best].total_ms < (1.0 - margin_) * it->total_ms) {
    current_ = costs_[best].cut;
    ++revisions_;
  }
  return current_;
}

std::string format_plan_table(const std::vector<OptionCost>& costs, int chosen, int node_count) {
  std::string out = fmt::format("{:>3} {:<14} {:>10} {:>10} {:>10} {:>10}\n", "", "split",
                                "device_ms", "net_ms", "server_ms", "total_ms");
  for (const OptionCost& c : costs) {
    const std::string what = c.cut == 0            ? "cloud-only"
                             : c.cut == node_count ? "device-only"
                                                   : fmt::format("cut {}", c.cut);
    out += fmt::format("{:>3} {:<14} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f}\n",
                       c.cut == chosen ? "*" : "", what, c.device_ms, c.network_ms, c.server_ms,
                       c.total_ms);
  }
  return out;
}

}  // namespace concord::inference::sdk

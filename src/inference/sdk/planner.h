#pragma once
// The split planner of the device SDK (docs/design/inference.md, "Device SDK and the split
// planner"): given what each split option costs on the device, on the wire and at the server,
// it picks the cheapest, and revises that choice only when another option is clearly better.
// Pure: no clock, no I/O, so every decision is unit-tested from numbers.
//
// Options are identified by their cut k: 0 is cloud-only (send the model input, the server runs
// the whole model), a listed cut 0 < k < n runs nodes [0, k) on the device and the tail on the
// server, and n (the node count) is device-only. The estimated latency of option k is
//
//   device_ms[k] + (k < n ? rtt + bytes_up[k] / up_bw + server_ms[k] * load + queue
//                           + bytes_down / down_bw
//                         : 0)
//
// where `load` (>= 1) is how much slower than when it was probed the server computes now, and
// `queue` the time a request currently waits in the server's queue, both from the server's
// concord-compute-time-us / concord-queue-time-us headers (session.h says how). The queue
// wait is additive rather than a factor on compute because much of it is the batcher's fixed
// wait for company, which a cheap tail pays as much as the whole model.
//
// Hysteresis: estimates jitter call to call, and a split that flips on every jitter makes the
// device rebuild state and defeats the server's batching; so a new best replaces the current
// choice only when it is cheaper than the current choice's own (freshly estimated) cost by more
// than `margin` (a fraction, 0.1 = 10%).
#include <cstdint>
#include <string>
#include <vector>

namespace concord::inference::sdk {

struct SplitOption {
  int cut = 0;            // 0 cloud-only, node_count device-only, otherwise a listed cut
  double device_ms = 0;   // head on the device (0 for cloud-only; the whole model for device-only)
  uint64_t bytes_up = 0;  // request payload (input for cloud-only, cut tensors, 0 device-only)
  uint64_t bytes_down = 0;  // response payload (0 device-only)
  double server_ms = 0;     // tail compute at an idle server (0 device-only)
  bool remote() const { return bytes_up > 0 || server_ms > 0; }
};

struct LinkEstimate {
  double rtt_ms = 1;
  double up_bytes_per_ms = 1e5;  // 1e5 B/ms = 800 Mbit/s
  double down_bytes_per_ms = 1e5;
  double server_load_factor = 1;  // >= 1: compute slowdown at the server
  double server_queue_ms = 0;     // added to every remote option
};

struct OptionCost {
  int cut = 0;
  double device_ms = 0;
  double network_ms = 0;  // rtt + transfers
  double server_ms = 0;   // tail compute x load + queue
  double total_ms = 0;
};

// Costs of every option, in the order given. Bandwidths <= 0 are treated as 1 byte/ms and a
// load factor below 1 as 1, so nonsense measurements cannot make an option free.
std::vector<OptionCost> estimate_costs(const std::vector<SplitOption>& options,
                                       const LinkEstimate& link);

// Index (into `costs`) of the cheapest; ties go to the earlier option. -1 when empty.
int cheapest(const std::vector<OptionCost>& costs);

class SplitPlanner {
 public:
  explicit SplitPlanner(double margin = 0.1) : margin_(margin) {}

  // Re-plans with fresh estimates and returns the chosen cut. The first call takes the
  // cheapest; later calls keep the current cut unless it is gone from `options` or the cheapest
  // costs less than (1 - margin) x the current one's cost. Empty options: returns -1.
  int plan(const std::vector<SplitOption>& options, const LinkEstimate& link);

  int current() const { return current_; }
  // The costs computed by the last plan(), for reports.
  const std::vector<OptionCost>& last_costs() const { return costs_; }
  // How many times plan() changed an existing choice.
  int revisions() const { return revisions_; }

 private:
  double margin_;
  int current_ = -1;
  int revisions_ = 0;
  std::vector<OptionCost> costs_;
};

// A fixed-width table of `costs` with the chosen cut marked, for the CLI and the benchmark.
std::string format_plan_table(const std::vector<OptionCost>& costs, int chosen, int node_count);

}  // namespace concord::inference::sdk

#pragma once
// Concord's compute scheduler: decides which host runs each new instance.
//
// It is a pure function over a snapshot of the hosts: no store, no I/O, no clock. The Nova API
// loads the snapshot (hosts, their heartbeats and the sum of the claims on each) inside a store
// write transaction, calls place(), and records one claim per placed instance in the same
// transaction. Two concurrent creates therefore never over-commit a host: the second one's
// transaction sees the first one's claims (or is retried by the store on conflict).
//
// A decision is filters, then weighers (docs/design/scheduler.md has the details and the
// differences from Nova):
//   filters:  requested host (2.74), ignore_hosts, host up, service enabled, availability zone,
//             driver kind, required traits, hard server-group policy (affinity, anti-affinity
//             with max_server_per_host), capacity (vcpus, ram, disk with allocation ratios).
//   weighers: soft server-group policy first (more / fewer group members on the host), then
//             pack (a host already in use before an empty one, then the one whose free capacity
//             best matches the request's shape, so fewer hosts are used) or spread (most free
//             capacity left), then the host name (smaller first): every decision is
//             deterministic.
// A forced host (admin "zone:host") skips the operator and policy filters (ignore_hosts,
// disabled, availability zone, traits, server group) but not the physical ones (up, driver kind,
// capacity): an instance the agent cannot start would only end in ERROR later.
//
// Each instance of a request is placed on a working copy of the snapshot that already holds the
// request's earlier instances (capacity and group members), so count > 1 never over-commits and
// honours the group policy between the request's own instances.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace concord::compute::scheduler {

struct Resources {
  int64_t vcpus = 0;
  int64_t ram_mb = 0;
  int64_t disk_gb = 0;

  friend bool operator==(const Resources&, const Resources&) = default;
};

struct HostState {
  std::string name;
  std::string availability_zone = "nova";
  bool up = true;         // heartbeat fresh
  bool disabled = false;  // operator disabled the compute service
  Resources total;        // physical capacity reported by the agent
  Resources used;         // sum of claims on this host
  int64_t instances = 0;
  std::vector<std::string> drivers;  // "container", "vm"
  // Informational: the VM driver falls back to TCG without KVM, so no filter reads this. A
  // request that must have KVM asks for a trait the agent reports (e.g. "accel" -> "kvm").
  bool kvm = false;
  std::map<std::string, std::string> traits;  // e.g. "hypervisor_type" -> "qemu"
};

struct GroupPolicy {
  enum class Kind { kNone, kAffinity, kAntiAffinity, kSoftAffinity, kSoftAntiAffinity };
  Kind kind = Kind::kNone;
  // Hosts already used by the group's servers, repeated once per server.
  std::vector<std::string> member_hosts;
  // Anti-affinity rule (microversion 2.64): at most this many of the group's servers per host.
  // Only read for kAntiAffinity; must be >= 1.
  int max_server_per_host = 1;
};

struct Request {
  Resources per_instance;
  // Places as many instances as possible up to count (>= 1); min_count..max_count is the
  // caller's decision.
  int count = 1;
  std::string availability_zone;  // empty: any zone
  std::string driver;             // required driver kind, "container" | "vm"; empty: any
  // From image properties (e.g. hypervisor_type=qemu) and flavor extra specs; every entry must
  // equal the host's trait of the same key.
  std::map<std::string, std::string> required_traits;
  GroupPolicy group;
  std::vector<std::string> ignore_hosts;
  // "host", or the admin forms "zone:host" and "zone:host:node" (the zone and node parts are
  // ignored: in Concord a node is its host). Empty: not forced.
  std::string force_host;
  // Microversion 2.74's `host` / `hypervisor_hostname`: only this host, but unlike force_host
  // every filter still applies. Empty: any host.
  std::string requested_host;
};

struct Options {
  double cpu_allocation_ratio = 16.0;
  double ram_allocation_ratio = 1.5;
  double disk_allocation_ratio = 1.0;
  enum class Weigher { kPack, kSpread };
  Weigher weigher = Weigher::kSpread;  // Nova's default is spread
};

// Why no (more) host could be found. `reason` is Nova's fault message plus the per-filter
// detail, e.g. "No valid host was found. There are not enough hosts available. (3 hosts: 1 down,
// 2 without enough vcpus)".
struct NoValidHost {
  std::string reason;
  // Hosts rejected by each filter (the first filter that rejected a host counts it), in filter
  // order, only filters that rejected at least one host.
  std::vector<std::pair<std::string, int64_t>> rejected;
};

struct Placement {
  std::vector<std::string> hosts;  // one per placed instance, in order
  // Set when fewer than request.count instances were placed: why the next one did not fit.
  std::optional<NoValidHost> shortfall;
};

// Places up to request.count instances on a working copy of `hosts`. Returns fewer hosts than
// count when capacity runs out (with `shortfall` set). Errors:
//   kResourceExhausted  not even one instance fits; the message is NoValidHost::reason.
//   kInvalidArgument    a malformed request (count < 1, negative resources,
//                       max_server_per_host < 1), non-positive allocation ratios, or two hosts
//                       with the same name.
[[nodiscard]] Result<Placement> place(std::span<const HostState> hosts, const Request& request,
                                      const Options& options);

// The host part of a force_host value ("host", "zone:host" or "zone:host:node").
std::string_view forced_host_name(std::string_view force_host);

class SchedulerIndex;

// A long-lived scheduler for many sequential decisions over one large snapshot (a benchmark's
// 10,000 servers onto 1,000 hosts; a service that keeps its snapshot in memory and feeds it the
// claims it records). Every decision equals what place() returns on the same hosts with the
// earlier decisions' claims added (tests/compute/scheduler checks this on random cases).
//
// What makes it fast: hosts are kept in name order in flat arrays of limits and free capacity;
// the hosts that pass the request-independent filters (up, enabled, zone, driver, traits,
// ignore_hosts) are computed once per distinct combination and cached until a host changes, so
// a decision is one pass over the cached candidates doing integer compares and a few multiplies.
//
// Not thread-safe: one owner (the caller serializes decisions, as its store transaction does).
class Scheduler {
 public:
  // kInvalidArgument for duplicate host names or non-positive allocation ratios.
  [[nodiscard]] static Result<Scheduler> create(std::span<const HostState> hosts,
                                                const Options& options);
  Scheduler(Scheduler&&) noexcept;
  Scheduler& operator=(Scheduler&&) noexcept;
  ~Scheduler();

  // As place(), and the placed instances are recorded as claims in this scheduler's state.
  [[nodiscard]] Result<Placement> place(const Request& request);

  // Records a claim made elsewhere (used += r, instances += 1). kNotFound for an unknown host.
  [[nodiscard]] Status claim(std::string_view host, const Resources& r);
  // Releases a claim (used -= r, instances -= 1, never below zero). kNotFound for an unknown
  // host.
  [[nodiscard]] Status release(std::string_view host, const Resources& r);
  // Adds a host or replaces the one of the same name (heartbeat, enable/disable, capacity).
  void update_host(const HostState& host);

  // The current state of every host, in name order.
  [[nodiscard]] std::vector<HostState> hosts() const;
  [[nodiscard]] size_t size() const;

 private:
  explicit Scheduler(std::unique_ptr<SchedulerIndex> index);
  std::unique_ptr<SchedulerIndex> index_;
};

}  // namespace concord::compute::scheduler

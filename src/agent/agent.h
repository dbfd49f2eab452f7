#pragma once
// `concord agent`: the host agent. It pulls the host's desired instances from the server (agent
// protocol, docs/design/compute.md), converges them with the compute drivers one idempotent step
// at a time, and reports what it observes. In all-in-one the server runs one Agent in-process
// against its own URL: the same code path.
//
// Threads (all owned by Agent; start() launches them, stop() or the destructor joins them):
//   * reporter: registers the host (capabilities probed once), then reports every heartbeat
//     interval and right after any convergence step (coalesced), re-registering when the server
//     forgot the host; every resync interval it re-checks every instance against its driver;
//   * poller: the assignments long-poll (after=<seq>), which wakes as soon as the server commits
//     a change; each answer is the FULL desired set, so nothing is lost across restarts;
//   * workers (a small pool): per instance, compare the spec with the driver's status and do ONE
//     step (fetch image -> create -> rebuild -> resize -> reboot -> start/stop; destroy when
//     deleted or orphaned), then look again. One instance is never worked on by two workers at
//     once; different instances converge in parallel, so many creates do not queue behind one
//     slow QEMU boot.
// Nothing authoritative lives in memory: drivers derive instance state from disk and processes,
// and the applied reboot/rebuild sequence numbers sit in state_dir/instances/<id>.json (atomic
// writes), so a restarted agent adopts running instances without rebooting them again.
// Orphan rule: after the first successful assignments fetch, an instance on this host without a
// desired row is destroyed. Driver failures become an `error` report for that generation (the
// server turns it into vm_state error); the agent does not retry a failed generation until the
// desired state changes, except for transient failures (kUnavailable), retried each heartbeat.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "compute/driver/driver.h"

namespace concord::agent {

struct AgentOptions {
  // The server's root URL ("http://127.0.0.1:8080"); the agent protocol is under /agent/v1.
  std::string server_url;
  std::string host;                                  // this host's name as the scheduler sees it
  std::string credential;                            // `concord agent-credential <host>`
  std::string availability_zone;                     // empty: the server's default zone
  std::string state_dir;                             // per agent, e.g. <data_dir>/agent-<host>
  std::vector<std::string> drivers = {"container"};  // "container", "vm", "inference", "database"
  // Capacity overrides; unset: detected (vcpus = online CPUs, ram = MemTotal, disk = free space
  // of state_dir).
  std::optional<int64_t> vcpus, ram_mb, disk_gb;
  // Until the server answers the registration with its own interval.
  std::chrono::milliseconds heartbeat_interval{2000};
  std::chrono::milliseconds poll_wait{25000};        // long-poll wait asked of the server
  std::chrono::milliseconds resync_interval{10000};  // full status re-check of every instance
  std::chrono::milliseconds stop_grace{10000};       // graceful stop before a forced one
  int workers = 4;
  // Passed to the drivers; state_dir defaults to this agent's state_dir (the drivers use
  // <kind>/, images/ and runc/ there; the agent instances/ and blobs/).
  compute::driver::DriverOptions driver_options;
  // Drivers to use instead of building the ones named in `drivers` (embedding and tests).
  std::vector<std::shared_ptr<compute::driver::Driver>> injected_drivers;
};

class Agent {
 public:
  // Checks the options, creates state_dir and builds the drivers (kInvalidArgument for bad
  // options, kFailedPrecondition when a named driver cannot be built).
  [[nodiscard]] static Result<std::unique_ptr<Agent>> create(AgentOptions options);
  // Stops the threads; instances keep running (they belong to the host, not to the process).
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Adopts what the drivers have on this host, then starts the threads. Registration and the
  // first fetch happen in the background (the server may not be up yet).
  [[nodiscard]] Status start();
  void stop();

  // For tests and `concord agent` status output.
  struct Stats {
    bool registered = false;
    int64_t assignments_seq = 0;
    int64_t fetches = 0;
    int64_t reports = 0;
    int64_t observations = 0;     // instances carried in acknowledged reports (changes only)
    int64_t unchanged_polls = 0;  // long-polls answered "unchanged" (no set sent)
    int64_t steps = 0;
    int64_t instances = 0;
    int64_t orphans_destroyed = 0;
  };
  Stats stats() const;

 private:
  class Impl;
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::agent

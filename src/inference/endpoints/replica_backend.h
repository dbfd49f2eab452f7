#pragma once
// Where an endpoint's replicas run: the seam between the endpoint controller (which decides how
// many replicas an endpoint needs and routes requests to the ready ones) and the machinery that
// places and runs processes on hosts.
//
// The product's backend is compute (compute_replicas.h): a replica is a compute server of the
// "inference" driver in Concord's service project, placed by the scheduler with claims like any
// server, run by the host's agent as a `concord inference-replica` process, adopted after
// restarts and cleaned up when orphaned. Tests may run replicas in-process with the same
// serving code.
//
// Crash safety: the controller records a replica's id in its own table before calling
// ensure(id, ...), and ensure is idempotent per id, so a controller killed between the two
// re-issues the same call and never leaks or duplicates a replica.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "inference/serving/model_server.h"

namespace concord::inference::endpoints {

struct ReplicaSpec {
  std::string endpoint_id;
  std::string project_id;  // the endpoint's (tenant) project, for usage and names
  std::string name;        // "<endpoint name>-<n>", for people
  std::string model_id;
  int64_t model_version = 0;
  std::string model_name;  // OIP name the replica serves
  int vcpus = 1;
  int64_t memory_mb = 512;
  serving::BatchingOptions batching;
  bool split = false;       // also serve the model's tails for device SDKs
  std::string replica_key;  // the gateway's credential towards the replica
};

enum class ReplicaPhase {
  kPending,  // accepted, not placed or not started yet
  kRunning,  // the process runs; `url` is set (the gateway still probes /v2/health/ready)
  kFailed,   // cannot run (no host, start failed); `fault` says why; the controller replaces it
  kGone,     // unknown to the backend (deleted, or never created)
};
std::string_view phase_name(ReplicaPhase phase);

struct ReplicaInfo {
  std::string id;
  std::string endpoint_id;
  std::string host;
  ReplicaPhase phase = ReplicaPhase::kPending;
  std::string url;    // "http://127.0.0.1:34567" when running
  std::string fault;  // when failed
};

class ReplicaBackend {
 public:
  virtual ~ReplicaBackend() = default;
  // Creates replica `id` for `spec`, or does nothing when it exists. kResourceExhausted when no
  // host can take it now (the controller retries later), kInvalidArgument for a bad spec.
  [[nodiscard]] virtual Status ensure(const std::string& id, const ReplicaSpec& spec) = 0;
  // Stops and removes a replica; ok when it does not exist.
  [[nodiscard]] virtual Status destroy(std::string_view id) = 0;
  // Every replica this backend runs for Concord's endpoints (all endpoints), with its phase.
  [[nodiscard]] virtual Result<std::vector<ReplicaInfo>> list() = 0;
};

}  // namespace concord::inference::endpoints

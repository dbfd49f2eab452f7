#pragma once
// The product's replica backend: each replica is a compute server of the "inference" driver in
// Concord's service project (compute/service/service_servers.h), whose image is the model
// version (model_artifacts.h) and whose settings travel in the server's metadata
// (compute/driver/inference_keys.h). The scheduler places it with claims, the host's agent runs
// `concord inference-replica`, adopts it after restarts and destroys it when orphaned; compute
// marks it down with its host. Nothing here keeps state: list() reads the servers every time.
//
// Phases from the server:
//   BUILD (or ACTIVE before the replica has bound its port, or any transient task) -> kPending
//   ACTIVE, powered on, with its "inference" address                              -> kRunning
//   ERROR (the agent could not start it), SHUTOFF (the process exited), host DOWN -> kFailed
//   deleted or being deleted                                                       -> not listed
//
// Threading: every method may be called from any thread (the store serialises writes).
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "compute/service/context.h"
#include "compute/service/service_servers.h"
#include "inference/endpoints/replica_backend.h"

namespace concord::inference::placement {

struct ComputeReplicaOptions {
  std::string service_project_id;  // owns every replica server
  std::string service_user_id;
  std::string availability_zone;  // empty: any
  int64_t disk_gb = 0;            // claimed per replica (the model lives in the agent's cache)
};

class ComputeReplicaBackend final : public endpoints::ReplicaBackend {
 public:
  ComputeReplicaBackend(compute::ComputeContext& ctx, ComputeReplicaOptions options);

  // kInvalidArgument for a bad spec or id (or an unknown model version); kResourceExhausted,
  // with the scheduler's reason, when no host can take it now: nothing is recorded and the
  // controller asks again later with the same id.
  [[nodiscard]] Status ensure(const std::string& id, const endpoints::ReplicaSpec& spec) override;
  [[nodiscard]] Status destroy(std::string_view id) override;
  [[nodiscard]] Result<std::vector<endpoints::ReplicaInfo>> list() override;

  // The phase, url and fault of one service server (exposed for tests).
  static endpoints::ReplicaInfo replica_info(const compute::ServiceServer& server);

 private:
  compute::ComputeContext& ctx_;
  ComputeReplicaOptions options_;
};

}  // namespace concord::inference::placement

#include "inference/placement/compute_replicas.h"

#include <charconv>

#include "base/json.h"
#include "compute/driver/inference_keys.h"
#include "compute/service/model.h"
#include "inference/placement/model_artifacts.h"
#include "nlohmann/json.hpp"

namespace concord::inference::placement {
namespace {

namespace keys = compute::driver::inference_keys;

// The replica's "host:port" from Nova's addresses object ({"inference": [{"addr": ...}]}).
std::string replica_url(const std::string& addresses_json) {
  auto j = parse_json(addresses_json);
  if (!j || !j->is_object()) return {};
  auto net = j->find(std::string(keys::kAddressNetwork));
  if (net == j->end() || !net->is_array()) return {};
  for (const Json& a : *net) {
    if (!a.is_object()) continue;
    std::string addr = a.value("addr", std::string());
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos || colon == 0) continue;
    int port = 0;
    std::string_view digits = std::string_view(addr).substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || end != digits.data() + digits.size() || port <= 0 || port > 65535)
      continue;
    return "http://" + addr;
  }
  return {};
}

}  // namespace

ComputeReplicaBackend::ComputeReplicaBackend(compute::ComputeContext& ctx,
                                             ComputeReplicaOptions options)
    : ctx_(ctx), options_(std::move(options)) {}

Status ComputeReplicaBackend::ensure(const std::string& id, const endpoints::ReplicaSpec& spec) {
  if (spec.endpoint_id.empty() || spec.model_id.empty() || spec.model_name.empty()) {
    return fail(Code::kInvalidArgument,
                "replica " + id + ": endpoint id, model id and model name are required");
  }
  if (spec.model_version < 1) {
    return fail(Code::kInvalidArgument, "replica " + id +
                                            ": model version must be at least 1, got " +
                                            std::to_string(spec.model_version));
  }
  if (spec.batching.max_batch_size < 1 || spec.batching.max_queue < 1 ||
      spec.batching.max_queue_delay.count() < 0) {
    return fail(Code::kInvalidArgument, "replica " + id + ": batching options out of range");
  }
  compute::ServiceServerRequest req;
  req.id = id;
  req.project_id = options_.service_project_id;
  req.user_id = options_.service_user_id;
  req.name = spec.name.empty() ? "replica-" + id : spec.name;
  req.driver = "inference";
  req.image_id = artifact_id(spec.model_id, spec.model_version);
  req.vcpus = spec.vcpus;
  req.ram_mb = spec.memory_mb;
  req.disk_gb = options_.disk_gb;
  req.availability_zone = options_.availability_zone;
  // No host now: the controller keeps its replica row and asks again on its next pass, rather
  // than replacing a failed server every pass while the cloud is full.
  req.record_unplaced = false;
  req.metadata = {
      {std::string(keys::kEndpoint), spec.endpoint_id},
      {std::string(keys::kProject), spec.project_id},
      {std::string(keys::kName), spec.model_name},
      {std::string(keys::kModel), spec.model_id},
      {std::string(keys::kVersion), std::to_string(spec.model_version)},
      {std::string(keys::kMaxBatchSize), std::to_string(spec.batching.max_batch_size)},
      {std::string(keys::kMaxQueueDelayUs), std::to_string(spec.batching.max_queue_delay.count())},
      {std::string(keys::kMaxQueue), std::to_string(spec.batching.max_queue)},
      {std::string(keys::kSplit), spec.split ? "true" : "false"},
  };
  if (!spec.replica_key.empty()) req.metadata[std::string(keys::kKey)] = spec.replica_key;
  return compute::create_service_server(ctx_, req);
}

Status ComputeReplicaBackend::destroy(std::string_view id) {
  return compute::delete_service_server(ctx_, id);
}

endpoints::ReplicaInfo ComputeReplicaBackend::replica_info(const compute::ServiceServer& s) {
  endpoints::ReplicaInfo info;
  info.id = s.id;
  if (auto it = s.metadata.find(std::string(keys::kEndpoint)); it != s.metadata.end()) {
    info.endpoint_id = it->second;
  }
  info.host = s.host;
  const std::string url = replica_url(s.addresses_json);
  if (s.status == "ERROR") {
    info.phase = endpoints::ReplicaPhase::kFailed;
    info.fault = s.fault.empty() ? "the replica's server is in ERROR" : s.fault;
  } else if (s.status == "SHUTOFF") {
    info.phase = endpoints::ReplicaPhase::kFailed;
    info.fault = "the replica process stopped (server SHUTOFF on host " + s.host + ")";
  } else if (s.host_status == "DOWN") {
    info.phase = endpoints::ReplicaPhase::kFailed;
    info.fault = "host " + s.host + " is down";
  } else if (s.status == "ACTIVE" && s.power_state == compute::power::kRunning && !url.empty()) {
    info.phase = endpoints::ReplicaPhase::kRunning;
    info.url = url;
  } else {
    info.phase = endpoints::ReplicaPhase::kPending;
  }
  return info;
}

Result<std::vector<endpoints::ReplicaInfo>> ComputeReplicaBackend::list() {
  CONCORD_ASSIGN_OR_RETURN(std::vector<compute::ServiceServer> servers,
                           compute::list_service_servers(ctx_, options_.service_project_id));
  std::vector<endpoints::ReplicaInfo> out;
  for (const compute::ServiceServer& s : servers) {
    // Other services' servers in the same project, and replicas on their way out.
    if (!s.metadata.contains(std::string(keys::kEndpoint))) continue;
    if (s.task_state && *s.task_state == compute::task::kDeleting) continue;
    out.push_back(replica_info(s));
  }
  return out;
}

}  // namespace concord::inference::placement

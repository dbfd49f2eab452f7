#pragma once
// The endpoints' rows (component "inference_endpoints", same SQL on SQLite and PostgreSQL):
//
//   inference_endpoints  (id PK, project_id, name UNIQUE per project, model_id, model_version,
//                         min_replicas, max_replicas, vcpus, memory_mb, max_batch_size,
//                         max_queue_delay_us, scale_metric 'queue_length'|'p99_latency_ms',
//                         scale_target, scale_down_delay_s, split 0/1, status, replica_key,
//                         desired_replicas, spec_revision, created_at, updated_at, created_us,
//                         revision)
//   inference_replicas   (id PK, endpoint_id, ordinal, spec_revision, state 'active'|'deleting',
//                         status 'pending'|'running'|'ready'|'failed', host, url, fault,
//                         created_at, created_us, started_ms, last_metered_ms)
//
// spec_revision grows when a change needs new replicas (model version, batching, size, split):
// the controller starts replicas of the new revision and removes the old ones once enough new
// ones are ready. started_ms/last_metered_ms (0 until the replica first runs) bound the
// replica_seconds interval not yet written to the usage ledger.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "store/store.h"

namespace concord::inference::endpoints {

struct EndpointRow {
  std::string id;
  std::string project_id;
  std::string name;
  std::string model_id;
  int64_t model_version = 0;
  int64_t min_replicas = 1;
  int64_t max_replicas = 1;
  int64_t vcpus = 1;
  int64_t memory_mb = 512;
  int64_t max_batch_size = 8;
  int64_t max_queue_delay_us = 2000;
  std::string scale_metric = "queue_length";
  double scale_target = 4;
  int64_t scale_down_delay_s = 60;
  bool split = false;
  std::string status = "creating";
  std::string replica_key;
  int64_t desired_replicas = 1;
  int64_t spec_revision = 1;
  std::string created_at;
  std::string updated_at;
  int64_t created_us = 0;
  int64_t revision = 1;
};

struct ReplicaRow {
  std::string id;
  std::string endpoint_id;
  int64_t ordinal = 0;
  int64_t spec_revision = 1;
  std::string state = "active";    // active | deleting
  std::string status = "pending";  // pending | running | ready | failed
  std::string host;
  std::string url;
  std::string fault;
  std::string created_at;
  int64_t created_us = 0;
  int64_t started_ms = 0;
  int64_t last_metered_ms = 0;
};

[[nodiscard]] Result<std::optional<EndpointRow>> load_endpoint(store::Tx& tx, std::string_view id);
// Every endpoint, or one project's, oldest first.
[[nodiscard]] Result<std::vector<EndpointRow>> load_endpoints(
    store::Tx& tx, std::optional<std::string> project_id);
[[nodiscard]] Status insert_endpoint(store::Tx& tx, const EndpointRow& e, bool& name_taken);
// Writes every mutable column where id and revision match; kAborted / kNotFound otherwise.
// Bumps e.revision.
[[nodiscard]] Status update_endpoint(store::Tx& tx, EndpointRow& e);

// Replicas of one endpoint (or of all when empty), by endpoint then ordinal.
[[nodiscard]] Result<std::vector<ReplicaRow>> load_replicas(store::Tx& tx,
                                                            std::string_view endpoint_id);
[[nodiscard]] Status insert_replica(store::Tx& tx, const ReplicaRow& r);
[[nodiscard]] Status update_replica(store::Tx& tx, const ReplicaRow& r);
[[nodiscard]] Status delete_replica(store::Tx& tx, std::string_view id);

}  // namespace concord::inference::endpoints

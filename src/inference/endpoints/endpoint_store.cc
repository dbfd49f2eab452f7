#include "inference/endpoints/endpoint_store.h"

#include <utility>

#include "inference/endpoints/endpoint_service.h"

namespace concord::inference::endpoints {
namespace {

constexpr std::string_view kEndpointColumns =
    "id, project_id, name, model_id, model_version, min_replicas, max_replicas, vcpus, "
    "memory_mb, max_batch_size, max_queue_delay_us, scale_metric, scale_target, "
    "scale_down_delay_s, split, status, replica_key, desired_replicas, spec_revision, "
    "created_at, updated_at, created_us, revision";
constexpr std::string_view kReplicaColumns =
    "id, endpoint_id, ordinal, spec_revision, state, status, host, url, fault, created_at, "
    "created_us, started_ms, last_metered_ms";

EndpointRow endpoint_from(const store::Row& r) {
  EndpointRow e;
  e.id = r.text(0);
  e.project_id = r.text(1);
  e.name = r.text(2);
  e.model_id = r.text(3);
  e.model_version = r.integer(4);
  e.min_replicas = r.integer(5);
  e.max_replicas = r.integer(6);
  e.vcpus = r.integer(7);
  e.memory_mb = r.integer(8);
  e.max_batch_size = r.integer(9);
  e.max_queue_delay_us = r.integer(10);
  e.scale_metric = r.text(11);
  e.scale_target = r.real(12);
  e.scale_down_delay_s = r.integer(13);
  e.split = r.boolean(14);
  e.status = r.text(15);
  e.replica_key = r.text(16);
  e.desired_replicas = r.integer(17);
  e.spec_revision = r.integer(18);
  e.created_at = r.text(19);
  e.updated_at = r.text(20);
  e.created_us = r.integer(21);
  e.revision = r.integer(22);
  return e;
}

ReplicaRow replica_from(const store::Row& r) {
  ReplicaRow x;
  x.id = r.text(0);
  x.endpoint_id = r.text(1);
  x.ordinal = r.integer(2);
  x.spec_revision = r.integer(3);
  x.state = r.text(4);
  x.status = r.text(5);
  x.host = r.text(6);
  x.url = r.text(7);
  x.fault = r.text(8);
  x.created_at = r.text(9);
  x.created_us = r.integer(10);
  x.started_ms = r.integer(11);
  x.last_metered_ms = r.integer(12);
  return x;
}

}  // namespace

std::vector<store::Migration> migrations() {
  return {{"inference_endpoints", 1, "inference endpoints and their replicas",
           "CREATE TABLE inference_endpoints ("
           " id TEXT PRIMARY KEY,"
           " project_id TEXT NOT NULL,"
           " name TEXT NOT NULL,"
           " model_id TEXT NOT NULL,"
           " model_version BIGINT NOT NULL,"
           " min_replicas BIGINT NOT NULL,"
           " max_replicas BIGINT NOT NULL,"
           " vcpus BIGINT NOT NULL,"
           " memory_mb BIGINT NOT NULL,"
           " max_batch_size BIGINT NOT NULL,"
           " max_queue_delay_us BIGINT NOT NULL,"
           " scale_metric TEXT NOT NULL,"
           " scale_target DOUBLE PRECISION NOT NULL,"
           " scale_down_delay_s BIGINT NOT NULL,"
           " split BIGINT NOT NULL,"
           " status TEXT NOT NULL,"
           " replica_key TEXT NOT NULL,"
           " desired_replicas BIGINT NOT NULL,"
           " spec_revision BIGINT NOT NULL,"
           " created_at TEXT NOT NULL,"
           " updated_at TEXT NOT NULL,"
           " created_us BIGINT NOT NULL,"
           " revision BIGINT NOT NULL,"
           " UNIQUE (project_id, name));"
           "CREATE INDEX inference_endpoints_model ON inference_endpoints(model_id, model_version);"
           "CREATE TABLE inference_replicas ("
           " id TEXT PRIMARY KEY,"
           " endpoint_id TEXT NOT NULL,"
           " ordinal BIGINT NOT NULL,"
           " spec_revision BIGINT NOT NULL,"
           " state TEXT NOT NULL,"
           " status TEXT NOT NULL,"
           " host TEXT NOT NULL,"
           " url TEXT NOT NULL,"
           " fault TEXT NOT NULL,"
           " created_at TEXT NOT NULL,"
           " created_us BIGINT NOT NULL,"
           " started_ms BIGINT NOT NULL,"
           " last_metered_ms BIGINT NOT NULL);"
           "CREATE INDEX inference_replicas_endpoint ON inference_replicas(endpoint_id, ordinal)",
           ""}};
}

Result<std::optional<EndpointRow>> load_endpoint(store::Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT " + std::string(kEndpointColumns) +
                                                          " FROM inference_endpoints WHERE id = ?",
                                                      {std::string(id)}));
  if (rows.empty()) return std::optional<EndpointRow>();
  return std::optional<EndpointRow>(endpoint_from(rows.front()));
}

Result<std::vector<EndpointRow>> load_endpoints(store::Tx& tx,
                                                std::optional<std::string> project_id) {
  std::vector<store::Value> params;
  std::string where;
  if (project_id) {
    where = " WHERE project_id = ?";
    params.push_back(*project_id);
  }
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT " + std::string(kEndpointColumns) +
                                                          " FROM inference_endpoints" + where +
                                                          " ORDER BY created_us, id",
                                                      params));
  std::vector<EndpointRow> out;
  out.reserve(rows.size());
  for (const store::Row& r : rows) out.push_back(endpoint_from(r));
  return out;
}

Status insert_endpoint(store::Tx& tx, const EndpointRow& e, bool& name_taken) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("INSERT INTO inference_endpoints (" + std::string(kEndpointColumns) +
                  ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (project_id, name) DO NOTHING",
              {e.id,
               e.project_id,
               e.name,
               e.model_id,
               e.model_version,
               e.min_replicas,
               e.max_replicas,
               e.vcpus,
               e.memory_mb,
               e.max_batch_size,
               e.max_queue_delay_us,
               e.scale_metric,
               e.scale_target,
               e.scale_down_delay_s,
               int64_t{e.split ? 1 : 0},
               e.status,
               e.replica_key,
               e.desired_replicas,
               e.spec_revision,
               e.created_at,
               e.updated_at,
               e.created_us,
               e.revision}));
  name_taken = n == 0;
  return ok();
}

Status update_endpoint(store::Tx& tx, EndpointRow& e) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("UPDATE inference_endpoints SET name = ?, model_version = ?, min_replicas = ?, "
              "max_replicas = ?, vcpus = ?, memory_mb = ?, max_batch_size = ?, "
              "max_queue_delay_us = ?, scale_metric = ?, scale_target = ?, "
              "scale_down_delay_s = ?, split = ?, status = ?, desired_replicas = ?, "
              "spec_revision = ?, updated_at = ?, revision = revision + 1 "
              "WHERE id = ? AND revision = ?",
              {e.name, e.model_version, e.min_replicas, e.max_replicas, e.vcpus, e.memory_mb,
               e.max_batch_size, e.max_queue_delay_us, e.scale_metric, e.scale_target,
               e.scale_down_delay_s, int64_t{e.split ? 1 : 0}, e.status, e.desired_replicas,
               e.spec_revision, e.updated_at, e.id, e.revision}));
  if (n == 0) CONCORD_RETURN_IF_ERROR(store::check_revision(tx, "inference_endpoints", e.id));
  e.revision += 1;
  return ok();
}

Result<std::vector<ReplicaRow>> load_replicas(store::Tx& tx, std::string_view endpoint_id) {
  std::vector<store::Value> params;
  std::string where;
  if (!endpoint_id.empty()) {
    where = " WHERE endpoint_id = ?";
    params.emplace_back(std::string(endpoint_id));
  }
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT " + std::string(kReplicaColumns) +
                                                          " FROM inference_replicas" + where +
                                                          " ORDER BY endpoint_id, ordinal, id",
                                                      params));
  std::vector<ReplicaRow> out;
  out.reserve(rows.size());
  for (const store::Row& r : rows) out.push_back(replica_from(r));
  return out;
}

Status insert_replica(store::Tx& tx, const ReplicaRow& r) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO inference_replicas (" + std::string(kReplicaColumns) +
                  ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              {r.id, r.endpoint_id, r.ordinal, r.spec_revision, r.state, r.status, r.host, r.url,
               r.fault, r.created_at, r.created_us, r.started_ms, r.last_metered_ms}));
  return ok();
}

Status update_replica(store::Tx& tx, const ReplicaRow& r) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("UPDATE inference_replicas SET state = ?, status = ?, host = ?, url = ?, fault = ?, "
              "started_ms = ?, last_metered_ms = ? WHERE id = ?",
              {r.state, r.status, r.host, r.url, r.fault, r.started_ms, r.last_metered_ms, r.id}));
  return ok();
}

Status delete_replica(store::Tx& tx, std::string_view id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM inference_replicas WHERE id = ?", {std::string(id)}));
  return ok();
}

Result<std::optional<std::string>> EndpointService::endpoint_using(store::Tx& tx,
                                                                   std::string_view model_id,
                                                                   std::optional<int64_t> version) {
  std::vector<store::Value> params{std::string(model_id)};
  std::string sql = "SELECT id FROM inference_endpoints WHERE model_id = ?";
  if (version) {
    sql += " AND model_version = ?";
    params.emplace_back(*version);
  }
  sql += " ORDER BY created_us, id LIMIT 1";
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(sql, params));
  if (rows.empty()) return std::optional<std::string>();
  return std::optional<std::string>(rows.front().text(0));
}

Result<bool> EndpointService::in_use(store::Tx& tx, std::string_view model_id,
                                     std::optional<int64_t> version) {
  CONCORD_ASSIGN_OR_RETURN(auto user, endpoint_using(tx, model_id, version));
  return user.has_value();
}

}  // namespace concord::inference::endpoints

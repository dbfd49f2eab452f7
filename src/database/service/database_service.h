#pragma once
// Managed databases, server side: the Trove v1.0 API under /database (docs/design/database.md):
// instances with databases, users and root; restart and resize; configuration groups
// (api_configurations.cc); backups, restore and point-in-time restore (api_backups.cc).
//
// How an instance exists, and why this way:
//   * The API validates everything first (datastore, version, flavor, volume, names, passwords)
//     and writes the instance row (with its address, allocated in the same write transaction as
//     the row) and its databases and users; then it asks compute for a *service server* of the
//     operator's service project with the instance's id (driver "database", size from the Trove
//     flavor, disk from the volume) whose metadata (compute/driver/database_keys.h) carries the
//     desired state. Compute places it, the host agent runs the engine and converges it.
//   * Every change of databases, users or root rewrites the rows, raises the instance's state
//     revision and replaces the server's metadata with the whole desired state (sync_server),
//     so the latest write always carries everything; a crash between the row write and the
//     metadata write is repaired by the next change or by the next GET of the instance, which
//     pushes a state whose revision is behind the row's.
//   * Passwords never reach the store: each becomes the engine's verifier
//     (database/engine/credentials.h) before anything is written.
//   * Status is derived, never stored: from the compute server (status, task, fault) and the
//     instance's own pending action (restart/resize), per the design's state table.
//
// Usage events (usage_ledger.h), resource type "database.instance", the tenant's project:
//   database.instance_seconds:<flavor id>  seconds the instance existed with that flavor
//   database.storage_gb_hours              volume GB x hours
// each closed when the instance is resized or deleted (in that change's transaction).
//
// Threading: handlers block on the store; safe from any thread.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "compute/service/context.h"
#include "http/message.h"
#include "http/metrics.h"
#include "http/router.h"
#include "http/server.h"
#include "identity/identity_service.h"
#include "store/store.h"

namespace concord::database::service {

// Schema of component "database" (tables db_*), seeding the datastores postgresql 15 and
// mariadb 10.11.
std::vector<store::Migration> migrations();

struct DatabaseOptions {
  // IPv4 CIDR each instance's own address comes from (lowest free first).
  std::string address_pool = "127.77.0.0/16";
  int port_postgresql = 5432;
  int port_mariadb = 3306;
  int64_t max_volume_gb = 100;
  // Trove's per-project quotas (its max_*_per_tenant defaults; -1: unlimited), overridden per
  // project by an admin (PUT /mgmt/quotas/{project}). docs/design/database.md, "Quotas".
  int64_t quota_instances = 10;
  int64_t quota_volumes_gb = 40;
  int64_t quota_backups = 50;
  int64_t quota_ram_mb = -1;
  // How long a change of databases, users or root waits for the instance's agent to apply it
  // before answering (the answer is the same either way; 0: answer at once).
  std::chrono::milliseconds apply_wait{20000};
  // Where backup archives and archived logs are kept (a blob store; app.cc uses
  // <data_dir>/database-backups). Empty: backups are refused with 503.
  std::string backup_dir;
  // Region shown on instances and written into usage events.
  std::string region = "RegionOne";
  // Mount prefix, for links.
  std::string prefix = "/database";
  // Public origin for links; empty: the request's origin.
  std::string public_url;
  // Serve each instance's address from a proxy in this process (docs/design/database.md,
  // "Endpoints"): the engine then listens on a second address of the pool, and the address the
  // tenant sees stays put when the engine serving it changes. Off: the engine listens on the
  // instance's address itself (no pooling, no failover).
  bool endpoints = false;
  // Where the endpoints' own TLS certificate is kept (transaction pooling terminates TLS);
  // empty: pooling endpoints refuse TLS.
  std::string endpoint_tls_dir;
  // High availability: how long a standby member's host may be down (or its server gone or
  // failed) before the member is replaced by a new one on another host. Shorter rebuilds more
  // often after a host's brief outage; longer runs without a synchronous standby for longer.
  std::chrono::milliseconds ha_replace_after{std::chrono::minutes(2)};
};

// Trove's error body: {"<badRequest|itemNotFound|...>": {"message", "code"}}.
http::Response trove_error(int status, std::string_view message);

class DatabaseService {
 public:
  // kInvalidArgument for bad options (address pool, ports, volume bound).
  [[nodiscard]] static Result<std::unique_ptr<DatabaseService>> create(
      store::Store& store, const Clock& clock, identity::IdentityService& identity,
      compute::ComputeContext& compute, DatabaseOptions options);
  ~DatabaseService();
  DatabaseService(const DatabaseService&) = delete;
  DatabaseService& operator=(const DatabaseService&) = delete;

  // The service project that owns the instances' servers exists only once identity is
  // bootstrapped; until this is called, creates answer 503.
  void attach_service_project(std::string project_id, std::string user_id);

  // Below the mount prefix: "" (versions), "/v1.0/{project_id}/...".
  std::shared_ptr<http::RouteTable> routes() const;
  http::ErrorFormatter errors() const { return trove_error; }
  // The agents' backup and log routes (api_backups.cc), mounted at "/agent/v1/database" and
  // authenticated like compute's agent routes; `agent_streamed_body_hook` spools their uploads
  // to disk (give it the same mount prefix).
  std::shared_ptr<http::RouteTable> agent_routes() const;
  http::StreamedBodyHook agent_streamed_body_hook(std::string mount_prefix) const;
  // Per-instance gauges for the server's /metrics (instance up, disk used, volume, failovers,
  // endpoint clients, replication lag), computed at scrape time.
  void register_metrics(http::Registry& registry);

  class Impl;

 private:
  explicit DatabaseService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::database::service

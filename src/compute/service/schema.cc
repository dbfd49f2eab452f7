// The compute schema (store component "compute"). See docs/design/compute.md for what each
// table means. New columns or tables go in a new migration at the end; never edit an applied one.
#include "compute/service/model.h"

namespace concord::compute {

std::vector<store::Migration> migrations() {
  std::vector<store::Migration> m;
  m.push_back({"compute", 1, "flavors, keypairs, quotas, server groups, hosts, servers", R"SQL(
CREATE TABLE compute_flavors (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  disk_gb BIGINT NOT NULL,
  ephemeral_gb BIGINT NOT NULL DEFAULT 0,
  swap_mb BIGINT NOT NULL DEFAULT 0,
  rxtx_factor DOUBLE PRECISION NOT NULL DEFAULT 1.0,
  is_public BIGINT NOT NULL DEFAULT 1,
  disabled BIGINT NOT NULL DEFAULT 0,
  description TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT,
  revision BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE compute_flavor_extra_specs (
  flavor_id TEXT NOT NULL REFERENCES compute_flavors(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (flavor_id, key)
);
CREATE TABLE compute_flavor_access (
  flavor_id TEXT NOT NULL REFERENCES compute_flavors(id) ON DELETE CASCADE,
  project_id TEXT NOT NULL,
  PRIMARY KEY (flavor_id, project_id)
);
CREATE TABLE compute_keypairs (
  user_id TEXT NOT NULL,
  name TEXT NOT NULL,
  id BIGINT NOT NULL,
  type TEXT NOT NULL,
  public_key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (user_id, name)
);
CREATE TABLE compute_quotas (
  project_id TEXT NOT NULL,
  resource TEXT NOT NULL,
  hard_limit BIGINT NOT NULL,
  PRIMARY KEY (project_id, resource)
);
CREATE TABLE compute_quota_classes (
  class_name TEXT NOT NULL,
  resource TEXT NOT NULL,
  hard_limit BIGINT NOT NULL,
  PRIMARY KEY (class_name, resource)
);
CREATE TABLE compute_server_groups (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  name TEXT NOT NULL,
  policy TEXT NOT NULL,
  max_server_per_host BIGINT,
  created_at TEXT NOT NULL
);
CREATE INDEX compute_server_groups_project ON compute_server_groups(project_id);
CREATE TABLE compute_server_group_members (
  group_id TEXT NOT NULL REFERENCES compute_server_groups(id) ON DELETE CASCADE,
  server_id TEXT NOT NULL,
  PRIMARY KEY (group_id, server_id)
);
CREATE TABLE compute_hosts (
  name TEXT PRIMARY KEY,
  availability_zone TEXT NOT NULL,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  disk_gb BIGINT NOT NULL,
  drivers TEXT NOT NULL,
  kvm BIGINT NOT NULL DEFAULT 0,
  accel TEXT NOT NULL DEFAULT '',
  traits_json TEXT NOT NULL DEFAULT '{}',
  agent_version TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'up',
  disabled BIGINT NOT NULL DEFAULT 0,
  disabled_reason TEXT,
  last_heartbeat_ms BIGINT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  revision BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE compute_allocations (
  server_id TEXT NOT NULL,
  purpose TEXT NOT NULL,
  host TEXT NOT NULL,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  disk_gb BIGINT NOT NULL,
  PRIMARY KEY (server_id, purpose)
);
CREATE INDEX compute_allocations_host ON compute_allocations(host);
CREATE TABLE compute_servers (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT,
  image_id TEXT NOT NULL,
  flavor_id TEXT NOT NULL,
  flavor_json TEXT NOT NULL,
  old_flavor_json TEXT,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  disk_gb BIGINT NOT NULL,
  key_name TEXT,
  key_data TEXT,
  user_data TEXT,
  availability_zone TEXT,
  access_ipv4 TEXT NOT NULL DEFAULT '',
  access_ipv6 TEXT NOT NULL DEFAULT '',
  config_drive BIGINT NOT NULL DEFAULT 0,
  locked BIGINT NOT NULL DEFAULT 0,
  locked_reason TEXT,
  hostname TEXT NOT NULL,
  reservation_id TEXT NOT NULL,
  launch_index BIGINT NOT NULL DEFAULT 0,
  server_group_id TEXT,
  disk_config TEXT NOT NULL DEFAULT 'MANUAL',
  vm_state TEXT NOT NULL,
  task_state TEXT,
  power_state BIGINT NOT NULL DEFAULT 0,
  fault_json TEXT,
  host TEXT,
  network TEXT NOT NULL DEFAULT 'none',
  driver TEXT NOT NULL,
  addresses_json TEXT NOT NULL DEFAULT '{}',
  desired_power TEXT NOT NULL DEFAULT 'running',
  reboot_seq BIGINT NOT NULL DEFAULT 0,
  reboot_hard BIGINT NOT NULL DEFAULT 0,
  rebuild_seq BIGINT NOT NULL DEFAULT 0,
  spec_generation BIGINT NOT NULL DEFAULT 1,
  observed_generation BIGINT NOT NULL DEFAULT 0,
  observed_reboot_seq BIGINT NOT NULL DEFAULT 0,
  observed_rebuild_seq BIGINT NOT NULL DEFAULT 0,
  op_deadline_ms BIGINT NOT NULL DEFAULT 0,
  launched_at TEXT,
  terminated_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  deleted BIGINT NOT NULL DEFAULT 0,
  deleted_at TEXT,
  last_metered_ms BIGINT NOT NULL DEFAULT 0,
  revision BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX compute_servers_project ON compute_servers(project_id, deleted, created_ms);
CREATE INDEX compute_servers_host ON compute_servers(host, deleted);
CREATE INDEX compute_servers_active_ops ON compute_servers(deleted, op_deadline_ms);
CREATE TABLE compute_server_metadata (
  server_id TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (server_id, key)
);
CREATE TABLE compute_server_tags (
  server_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  PRIMARY KEY (server_id, tag)
);
CREATE TABLE compute_instance_actions (
  server_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  action TEXT NOT NULL,
  user_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  start_time TEXT NOT NULL,
  finish_time TEXT,
  message TEXT,
  updated_at TEXT NOT NULL,
  seq BIGINT NOT NULL,
  PRIMARY KEY (server_id, request_id)
);
CREATE TABLE compute_instance_action_events (
  server_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  event TEXT NOT NULL,
  start_time TEXT NOT NULL,
  finish_time TEXT,
  result TEXT,
  traceback TEXT,
  host TEXT,
  PRIMARY KEY (server_id, request_id, event)
);
CREATE TABLE compute_console_logs (
  server_id TEXT PRIMARY KEY,
  text TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
)SQL",
               ""});
  // novacat: per-user quota overrides (os-quota-sets?user_id=); shown to the user, the
  // project's limits stay what create/resize enforce.
  m.push_back({"compute", 2, "per-user quota overrides", R"SQL(
CREATE TABLE compute_user_quotas (
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  resource TEXT NOT NULL,
  hard_limit BIGINT NOT NULL,
  PRIMARY KEY (project_id, user_id, resource)
);
)SQL",
               ""});
  // Host aggregates (the availability zone is the metadata key "availability_zone", as in
  // Nova) and the migration records resizes leave (os-migrations).
  m.push_back({"compute", 3, "host aggregates, migrations", R"SQL(
CREATE TABLE compute_aggregates (
  id BIGINT PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL,
  updated_at TEXT
);
CREATE TABLE compute_aggregate_hosts (
  aggregate_id BIGINT NOT NULL REFERENCES compute_aggregates(id) ON DELETE CASCADE,
  host TEXT NOT NULL,
  PRIMARY KEY (aggregate_id, host)
);
CREATE INDEX compute_aggregate_hosts_host ON compute_aggregate_hosts(host);
CREATE TABLE compute_aggregate_metadata (
  aggregate_id BIGINT NOT NULL REFERENCES compute_aggregates(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (aggregate_id, key)
);
CREATE TABLE compute_migrations (
  id BIGINT PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  server_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  migration_type TEXT NOT NULL,
  status TEXT NOT NULL,
  source_compute TEXT,
  dest_compute TEXT,
  old_flavor_id TEXT NOT NULL,
  new_flavor_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT
);
CREATE INDEX compute_migrations_server ON compute_migrations(server_id, id);
)SQL",
               ""});
  // The password a guest posts to the metadata service (os-server-password). Concord has no
  // metadata service yet, so only DELETE touches it today; a row per server that has one.
  m.push_back({"compute", 4, "server passwords", R"SQL(
CREATE TABLE compute_server_passwords (
  server_id TEXT PRIMARY KEY,
  password TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
)SQL",
               ""});
  // The controller looks for deletes to finish locally every second; without this it read
  // every live server to find them (deleted = 0 matches all of them).
  m.push_back({"compute", 5, "index servers by task", R"SQL(
CREATE INDEX compute_servers_task ON compute_servers(task_state, deleted);
)SQL",
               ""});
  // A project's list in its default order (created_at desc, id desc) read from the index alone:
  // the cached detail path reads only (id, revision, host) and the filter on task_state, so the
  // page no longer visits 1,000 table rows nor sorts ties of created_ms in a temporary b-tree
  // (bench/compute/api_scale.sh: about 0.6 ms of the 3.4 ms a page of 1,000 cost). It
  // replaces compute_servers_project, its prefix.
  m.push_back({"compute", 6, "covering index for server lists", R"SQL(
CREATE INDEX compute_servers_list ON compute_servers(project_id, deleted, created_ms, id, revision, host, task_state);
DROP INDEX compute_servers_project;
)SQL",
               ""});
  // The driver's status detail as the agent last reported it (service_servers.h,
  // ServiceServer::detail): a table of its own, written only when the text changes, so neither
  // the server row's revision nor the Nova views move with it.
  m.push_back({"compute", 7, "observed driver detail", R"SQL(
CREATE TABLE compute_server_details (
  server_id TEXT PRIMARY KEY,
  detail TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
)SQL",
               ""});
  return m;
}

}  // namespace concord::compute

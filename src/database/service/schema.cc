// Tables of component "database" (docs/design/database.md, "Data model"). Datastore ids are
// fixed uuids so that every server replica seeding the same store agrees on them.
#include "database/service/database_service.h"

namespace concord::database::service {

std::vector<store::Migration> migrations() {
  return {{"database", 1, "datastores, instances, databases, users, root", R"sql(
CREATE TABLE db_datastores (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  default_version_id TEXT NOT NULL
);
CREATE TABLE db_datastore_versions (
  id TEXT PRIMARY KEY,
  datastore_id TEXT NOT NULL REFERENCES db_datastores(id),
  name TEXT NOT NULL,
  engine TEXT NOT NULL,
  version TEXT NOT NULL,
  active BIGINT NOT NULL DEFAULT 1,
  packages TEXT NOT NULL DEFAULT '',
  UNIQUE (datastore_id, name)
);
CREATE TABLE db_instances (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  name TEXT NOT NULL,
  datastore_version_id TEXT NOT NULL,
  flavor_id TEXT NOT NULL,
  vcpus BIGINT NOT NULL,
  ram_mb BIGINT NOT NULL,
  volume_gb BIGINT NOT NULL,
  address TEXT NOT NULL,
  port BIGINT NOT NULL,
  state_revision BIGINT NOT NULL DEFAULT 1,
  task TEXT NOT NULL DEFAULT '',
  created TEXT NOT NULL,
  updated TEXT NOT NULL,
  last_metered_us BIGINT NOT NULL,
  deleting BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX db_instances_project ON db_instances (project_id);
CREATE TABLE db_databases (
  instance_id TEXT NOT NULL REFERENCES db_instances(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  character_set TEXT NOT NULL DEFAULT '',
  collate_name TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (instance_id, name)
);
CREATE TABLE db_users (
  instance_id TEXT NOT NULL REFERENCES db_instances(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  host TEXT NOT NULL DEFAULT '%',
  verifier TEXT NOT NULL,
  databases_json TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (instance_id, name)
);
CREATE TABLE db_root (
  instance_id TEXT PRIMARY KEY REFERENCES db_instances(id) ON DELETE CASCADE,
  verifier TEXT NOT NULL,
  enabled BIGINT NOT NULL DEFAULT 1,
  enabled_at TEXT NOT NULL
);
INSERT INTO db_datastores (id, name, default_version_id) VALUES
  ('6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5a01', 'postgresql', '6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5b15'),
  ('6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5a02', 'mariadb', '6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5b11');
INSERT INTO db_datastore_versions (id, datastore_id, name, engine, version, active, packages)
VALUES
  ('6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5b15', '6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5a01', '15',
   'postgresql', '15', 1, 'postgresql-15'),
  ('6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5b11', '6e1a7a4c-58a4-4a84-9d51-2f1f0c0c5a02', '10.11',
   'mariadb', '10.11', 1, 'mariadb-server')
)sql"},
          // Stage 2 (docs/design/database.md, "Configuration groups" and "Backups and restore").
          {"database", 2, "configuration groups, backups, archived logs", R"sql(
CREATE TABLE db_configurations (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  datastore_version_id TEXT NOT NULL REFERENCES db_datastore_versions(id),
  values_json TEXT NOT NULL DEFAULT '{}',
  created TEXT NOT NULL,
  updated TEXT NOT NULL
);
CREATE INDEX db_configurations_project ON db_configurations (project_id);
ALTER TABLE db_instances ADD COLUMN configuration_id TEXT NOT NULL DEFAULT '';
ALTER TABLE db_instances ADD COLUMN restart_required BIGINT NOT NULL DEFAULT 0;
ALTER TABLE db_instances ADD COLUMN restored_from TEXT NOT NULL DEFAULT '';
CREATE TABLE db_backups (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  datastore_version_id TEXT NOT NULL,
  parent_id TEXT NOT NULL DEFAULT '',
  kind TEXT NOT NULL DEFAULT 'full',
  status TEXT NOT NULL,
  fail_reason TEXT NOT NULL DEFAULT '',
  sha256 TEXT NOT NULL DEFAULT '',
  size_bytes BIGINT NOT NULL DEFAULT 0,
  meta_json TEXT NOT NULL DEFAULT '{}',
  created TEXT NOT NULL,
  updated TEXT NOT NULL,
  deleting BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX db_backups_project ON db_backups (project_id);
CREATE INDEX db_backups_instance ON db_backups (instance_id);
CREATE TABLE db_log_segments (
  instance_id TEXT NOT NULL,
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size_bytes BIGINT NOT NULL,
  first_time_us BIGINT NOT NULL DEFAULT 0,
  last_time_us BIGINT NOT NULL DEFAULT 0,
  created TEXT NOT NULL,
  PRIMARY KEY (instance_id, name)
);
)sql"},
          // Stage 4 and 5 (docs/design/database.md, "Endpoints", "Read replicas", "Operations").
          {"database", 3,
           "endpoints, replicas, high availability, deletion protection, events, automated backups",
           R"sql(
ALTER TABLE db_instances ADD COLUMN engine_address TEXT NOT NULL DEFAULT '';
ALTER TABLE db_instances ADD COLUMN endpoint_mode TEXT NOT NULL DEFAULT 'session';
ALTER TABLE db_instances ADD COLUMN replica_of TEXT NOT NULL DEFAULT '';
ALTER TABLE db_instances ADD COLUMN replication_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE db_instances ADD COLUMN deletion_protection BIGINT NOT NULL DEFAULT 0;
ALTER TABLE db_instances ADD COLUMN backup_window TEXT NOT NULL DEFAULT '';
ALTER TABLE db_instances ADD COLUMN backup_retention_days BIGINT NOT NULL DEFAULT 0;
ALTER TABLE db_backups ADD COLUMN automated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE db_instances ADD COLUMN ha BIGINT NOT NULL DEFAULT 0;
ALTER TABLE db_instances ADD COLUMN primary_member TEXT NOT NULL DEFAULT '';
ALTER TABLE db_instances ADD COLUMN failovers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE db_instances ADD COLUMN is_public BIGINT NOT NULL DEFAULT 0;
ALTER TABLE db_instances ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE db_instances ADD COLUMN availability_zone TEXT NOT NULL DEFAULT '';
CREATE TABLE db_members (
  member_id TEXT PRIMARY KEY,
  instance_id TEXT NOT NULL,
  engine_address TEXT NOT NULL,
  role TEXT NOT NULL,
  sync TEXT NOT NULL DEFAULT 'none',
  created TEXT NOT NULL
);
CREATE INDEX db_members_instance ON db_members (instance_id);
CREATE TABLE db_events (
  id TEXT PRIMARY KEY,
  seq BIGINT NOT NULL,
  instance_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  type TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  detail_json TEXT NOT NULL DEFAULT '{}',
  created TEXT NOT NULL
);
CREATE INDEX db_events_instance ON db_events (instance_id, seq);
)sql"},
          {"database", 4, "quotas", R"sql(
CREATE TABLE db_quotas (
  project_id TEXT NOT NULL,
  resource TEXT NOT NULL,
  hard_limit BIGINT NOT NULL,
  PRIMARY KEY (project_id, resource)
);
)sql"},
          // Transaction pooling: the tenant's pool size (0: sized from the flavor).
          {"database", 5, "pool size", R"sql(
ALTER TABLE db_instances ADD COLUMN pool_size BIGINT NOT NULL DEFAULT 0;
)sql"},
          // Guest logs (api_logs.cc): the publish asked last (request_id), the one whose
          // content is stored (published_request), and that content (the log's end).
          {"database", 6, "guest logs", R"sql(
CREATE TABLE db_guest_logs (
  instance_id TEXT NOT NULL,
  name TEXT NOT NULL,
  request_id TEXT NOT NULL DEFAULT '',
  requested TEXT NOT NULL DEFAULT '',
  published_request TEXT NOT NULL DEFAULT '',
  published TEXT NOT NULL DEFAULT '',
  content TEXT NOT NULL DEFAULT '',
  published_bytes BIGINT NOT NULL DEFAULT 0,
  file_bytes BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (instance_id, name)
);
)sql"}};
}

}  // namespace concord::database::service

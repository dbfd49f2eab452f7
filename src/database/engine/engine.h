#pragma once
// The engine contract: what the host's database driver (compute/driver/database_driver.cc)
// asks of one database engine for one instance. One implementation per engine (PostgreSQL,
// MariaDB); a partner's engine implements the same interface and registers under its own name.
// See docs/design/database.md, "The engine contract".
//
// Rules every implementation keeps:
// - Every method is idempotent and safe to call again after the agent was killed at any point
//   (a half-made data folder is finished or redone, never trusted blindly).
// - No authoritative state in memory: everything is derived from the instance folder and the
//   live processes, so a restarted agent adopts running engines.
// - The engine runs as the unprivileged OS user in EngineOptions, detached in its own session
//   so it outlives the agent; the engine's administrative access is through a Unix socket in
//   the instance folder (no administrative password exists).
// - Identifiers from the desired state are always quoted as identifiers, verifiers as string
//   literals, in the engine's own quoting rules; names are also validated by the API.
// - Errors: kInvalidArgument (bad spec), kFailedPrecondition (engine binaries missing, folder
//   owned by someone else), kUnavailable (engine not answering yet; worth retrying),
//   kDeadlineExceeded (a bounded wait expired), kInternal (broken invariant).
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "database/engine/desired_state.h"

namespace concord::database::engine {

struct EngineOptions {
  std::string os_user = "concord-db";  // engines run as this user (PostgreSQL refuses root)
  // Where the engine binaries are; empty: the Debian locations (/usr/lib/postgresql/<v>/bin,
  // /usr/sbin/mariadbd, /usr/bin/mariadb-install-db, ...).
  std::string bin_dir;
  // cgroup v1 (cpu, memory) as for inference replicas; best effort.
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string cgroup_parent = "concord-database";
  std::chrono::milliseconds start_timeout{60000};
  // Where the per-host data-folder templates live (one per engine, version and engine user;
  // a new instance's data folder is a copy of its template instead of a fresh initdb /
  // mariadb-install-db). Empty: "<the instance folder's parent>/.templates" (dot names are
  // never taken for instances).
  std::string template_dir;
  // Keep one spare copy of each template ready (refilled by a detached `cp` after each use),
  // so a create claims its data folder with one rename instead of copying on the critical
  // path. Only where the templates share a file system with the instance folders (else the
  // rename fails and the copy is made as without spares).
  bool spare_copies = false;
  // MariaDB: completed binlogs stay at least this long (shipped or not), bounded by a quarter
  // of the volume, because a replica resumes from its upstream's binlogs (mariadb_backup.cc,
  // purge_boundary). Zero: purge what is shipped at once (tests).
  std::chrono::seconds binlog_keep{600};
  // MariaDB: the networks whose connections may begin with a PROXY protocol header naming the
  // real client (proxy_protocol_networks): the stable endpoints send one, so accounts limited
  // to hosts ('app'@'10.0.0.%') see the client, not the endpoint. "*": any, as the endpoints
  // may connect from any of the server's addresses; an engine's own address is for endpoints
  // and replicas only (the operator's network keeps tenants to the endpoint addresses, as
  // access.allowed_cidrs needs anyway). Comma-separated addresses or CIDRs; empty: none.
  std::string proxy_networks = "*";
};

struct InstanceConfig {
  std::string id;   // the instance id; names the folder and the cgroup
  std::string dir;  // the instance folder (the driver's state_dir/database/<id>)
  // Where the engine keeps what is Concord's, not the tenant's: a backup's working copy, log
  // shipping's staging and its cache of shipped logs. Outside the instance's volume when it has
  // one, so a full volume can still be backed up and can still ship the logs that fill it.
  // Empty: `dir`.
  std::string work_dir;
  std::string version;  // "15", "10.11"
  std::string address;  // the IPv4 address the engine listens on
  int port = 0;
  int vcpus = 1;
  int64_t ram_mb = 512;
  int64_t volume_gb = 1;
};

struct Health {
  bool running = false;           // the engine process of this instance is alive
  bool healthy = false;           // it answered a real query over the admin socket
  int64_t applied_revision = 0;   // the desired-state revision last applied (0: none)
  bool restart_required = false;  // a parameter waits for a restart
  // What the instance holds on its volume: the data folder, and the logs kept beside it
  // (PostgreSQL's archived WAL not shipped yet, MariaDB's binlogs): logs that pile up while
  // shipping stalls then show as storage low.
  int64_t disk_used_bytes = 0;
  std::string detail;  // why not healthy, or what is notable
  // Replication, as the engine itself says (not as the desired state wishes): "primary" when it
  // accepts writes, "replica" while it replays an upstream's changes; empty when not running.
  std::string role;
  // A replica: connected to its upstream and receiving its changes now.
  bool replication_streaming = false;
  // A replica: seconds its replay is behind the upstream's last commit it received (-1:
  // unknown, e.g. nothing received yet).
  int64_t replication_lag_seconds = -1;
  // A replica that cannot go on from its upstream without a new copy of it, and why (empty:
  // it can): the upstream no longer has the log from its position (MariaDB error 1236,
  // PostgreSQL "requested WAL segment ... has already been removed"), or (MariaDB) its replay
  // stopped on an error: its data diverged. apply() of a replica state rebuilds such a
  // replica, as it rebuilds a former primary.
  std::string replication_broken;
  // The fencing acknowledgement of a demoted primary: the desired-state revision that told it
  // to follow another member, under which it stopped taking writes for good (its engine
  // stopped and what it starts from made a replica's, or its data set aside, so no start can
  // bring it back writable); 0 when never demoted, and again once promoted. Written by apply()
  // before it follows (or copies) the new primary, which it can do only once that is promoted;
  // the service promotes once it sees this revision.
  int64_t fenced_revision = 0;
};

// What a finished backup is, engine-specific details in JSON (kept by the server with the backup
// and handed back in RestoreArchive::meta_json / BackupRequest::parent_meta_json): for example
// PostgreSQL's start and stop WAL positions and timeline, MariaDB's to_lsn and binlog position.
struct BackupInfo {
  std::string kind;              // "full" or "incremental"
  int64_t consistent_at_us = 0;  // the archive restores the data as of this moment (UTC, us)
  std::string meta_json = "{}";  // engine-specific positions
};

// An archived log file of an instance: a PostgreSQL WAL segment or a MariaDB binlog file.
struct LogFile {
  std::string name;    // file name as the engine writes it ("000000010000000000000003")
  std::string sha256;  // hex
  int64_t size_bytes = 0;
  int64_t first_time_us = 0;  // commit times it covers (0: unknown)
  int64_t last_time_us = 0;
};

// Moves archives and logs between a host and the server's blob store. The database driver
// implements it over the agent protocol (server routes under /agent/v1/database); tests use a
// folder. Every transfer is checksummed: a get verifies the SHA-256 it was given and answers
// kInternal ("checksum mismatch") without leaving the file behind.
class Transport {
 public:
  virtual ~Transport() = default;
  [[nodiscard]] virtual Status put_backup(const std::string& backup_id, const std::string& path,
                                          const std::string& sha256) = 0;
  [[nodiscard]] virtual Status get_backup(const std::string& backup_id, const std::string& sha256,
                                          const std::string& path) = 0;
  // Idempotent per (instance, name): re-putting the same file is ok.
  [[nodiscard]] virtual Status put_log(const std::string& instance_id, const LogFile& log,
                                       const std::string& path) = 0;
  [[nodiscard]] virtual Result<std::vector<LogFile>> list_logs(const std::string& instance_id) = 0;
  [[nodiscard]] virtual Status get_log(const std::string& instance_id, const LogFile& log,
                                       const std::string& path) = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // "postgresql", "mariadb"
  virtual std::string_view name() const = 0;
  // Whether this host can run the engine at `version` (binaries present, os_user exists).
  // Bounded in time.
  [[nodiscard]] virtual Status probe(std::string_view version) = 0;

  // Data folder, TLS certificate and configuration; does not start the engine.
  [[nodiscard]] virtual Status prepare(const InstanceConfig& config) = 0;
  // Starts the engine (no-op when running) and waits until it accepts admin connections.
  [[nodiscard]] virtual Status start(const InstanceConfig& config) = 0;
  // Clean shutdown, then forced after `grace`. Ok when not running.
  [[nodiscard]] virtual Status stop(const InstanceConfig& config,
                                    std::chrono::milliseconds grace) = 0;
  // Converges databases, users, grants, root and parameters to `state` and records its
  // revision in the instance folder. The engine must be running.
  [[nodiscard]] virtual Status apply(const InstanceConfig& config, const DesiredState& state) = 0;
  // Never fails for a stopped engine: running=false says so.
  [[nodiscard]] virtual Result<Health> health(const InstanceConfig& config) = 0;
  // Stops hard and removes the folder and the cgroup; ok when already gone.
  [[nodiscard]] virtual Status destroy(const InstanceConfig& config) = 0;

  // ---- backups and restore (docs/design/database.md, "Backups and restore") ----
  // Writes a consistent archive of the running engine to `out_path` (one file; a full backup,
  // or an incremental one on top of request.parent_meta_json). Online: the engine keeps serving.
  // The defaults answer kFailedPrecondition: an engine without backups (a partner's, say) still
  // runs; the API then refuses backups of its datastore.
  [[nodiscard]] virtual Result<BackupInfo> backup(const InstanceConfig& config,
                                                  const BackupRequest& request,
                                                  const std::string& out_path);
  // Makes the (not yet existing or half-made) data folder from `spec` instead of the template:
  // fetches and verifies each archive, unpacks, replays archived logs of
  // spec.log_source_instance up to spec.target_time_us, and leaves a folder start() can run
  // (with this instance's own configuration, certificate and address). Idempotent: a half-made
  // restore is redone.
  [[nodiscard]] virtual Status restore(const InstanceConfig& config, const RestoreSpec& spec,
                                       Transport& transport);
  // Ships the completed archived logs not yet shipped (the engine archives into the instance
  // folder; this uploads and then forgets them). Ok with nothing to do.
  [[nodiscard]] virtual Status ship_logs(const InstanceConfig& config, Transport& transport);
  // The storage guard's switch (the driver's, docs/design/database.md "Volumes"): on, the
  // instance's new transactions are read-only unless a session turns that off (to delete data);
  // off, as configured. Idempotent and cheap when nothing changes (the driver calls it every
  // second); kept across restarts. True when this call changed it. The default does nothing
  // (false): an engine that keeps running on a full disk, as MariaDB does (it waits for room).
  [[nodiscard]] virtual Result<bool> set_read_only(const InstanceConfig& config, bool on);
  // Whether completed logs wait on the instance's volume for ship_logs. From the files only (no
  // call to the engine process), so the driver can ask every second and ship a write burst's
  // logs as they complete instead of letting them fill the volume for a whole shipping
  // interval. The default: false (an engine without shipping).
  virtual bool logs_waiting(const InstanceConfig& config) const;

  // ---- replication (docs/design/database.md, "Read replicas") ----
  // Makes the (not yet existing or half-made) data folder of a replica as a copy of the running
  // upstream named in `spec` (PostgreSQL: pg_basebackup over the replication account;
  // MariaDB: a consistent copy taken over the network plus its GTID position), leaving a folder
  // start() runs as a replica of that upstream. Staged and renamed into place as restore() is;
  // idempotent. kUnavailable while the upstream cannot be reached (the driver retries). The
  // default answers kFailedPrecondition (an engine without replication; the API then refuses
  // replicas of its datastore).
  // With `seed_transport` and spec.seed, an engine whose network copy is logical may make the
  // copy from the seed's backups and archived logs instead (fetched through the transport) and
  // stream from the position they reach; when the seed cannot be used it makes the network
  // copy. An engine may ignore the seed (PostgreSQL's network copy is physical already).
  // Everything else about replication is declarative, in apply(): the role, the upstream, the
  // replication account and the synchronous standbys of DesiredState::replication. A replica
  // told it is now a primary promotes itself; a replica given another upstream re-points to it;
  // a primary told it is a replica is demoted in place: stopped, made to start as a replica,
  // Health::fenced_revision recorded, started, and following the upstream from its own
  // position once the upstream is promoted (kUnavailable until then is allowed: the service
  // promotes only once it sees the acknowledgement). A member whose history forked from the
  // upstream's, whose folder is no copy of the group's, or a replica that cannot go on
  // (Health::replication_broken) stops, rebuilds its folder from the upstream and starts as a
  // replica. clone_from of an existing folder keeps it (the driver calls it at every start of a
  // replica): it makes only a former primary's start as a replica's.
  [[nodiscard]] virtual Status clone_from(const InstanceConfig& config, const ReplicationSpec& spec,
                                          Transport* seed_transport);
};

[[nodiscard]] Result<std::unique_ptr<Engine>> make_postgres_engine(const EngineOptions& options);
[[nodiscard]] Result<std::unique_ptr<Engine>> make_mariadb_engine(const EngineOptions& options);

// The engines this build knows, by name, for the driver and the datastore catalog.
std::vector<std::string> engine_names();

}  // namespace concord::database::engine

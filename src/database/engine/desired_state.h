#pragma once
// The desired state of one managed database instance, as the database service writes it and
// the engine driver on the host converges to it (docs/design/database.md, "Desired state").
// The JSON form travels in the server metadata key database_keys::kState.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::database::engine {

struct DatabaseSpec {
  std::string name;
  std::string character_set;  // empty: the engine's default
  std::string collate;        // empty: the engine's default
  bool operator==(const DatabaseSpec&) const = default;
};

struct UserSpec {
  std::string name;
  std::string host = "%";  // MariaDB's host part; PostgreSQL ignores it
  // The engine's own password verifier (credentials.h), never the password.
  std::string verifier;
  std::vector<std::string> databases;  // full access to each of these databases
  bool operator==(const UserSpec&) const = default;
};

struct RootSpec {
  std::string verifier;  // remote superuser "root" with this verifier
  bool operator==(const RootSpec&) const = default;
};

// A backup the server asked for (docs/design/database.md, "Backups and restore"). The driver
// runs it once (it records the ids it finished in the instance folder), uploads the archive to
// the server under `id` and reports the outcome; the server then drops the request from the
// desired state.
struct BackupRequest {
  std::string id;
  // Empty: a full backup. Otherwise an incremental one on top of this backup (its BackupInfo
  // is in `parent_meta_json`, as the server recorded it at completion).
  std::string parent_id;
  std::string parent_meta_json;
  bool operator==(const BackupRequest&) const = default;
};

// A guest log the server asked to publish (docs/design/database.md, "Guest logs"): the driver
// uploads the end of that log (guest_logs.h) under `id` once, as the request finished here
// (it records the ids in the instance folder).
struct LogPublishRequest {
  std::string id;
  std::string name;  // a name of the engine's guest_log_catalog
  bool operator==(const LogPublishRequest&) const = default;
};

// One archive a restore needs: a backup (full first, then its incrementals in order), as the
// server stores it.
struct RestoreArchive {
  std::string backup_id;
  std::string sha256;  // hex; the download is verified against it (kInternal on mismatch)
  int64_t size_bytes = 0;
  std::string meta_json;  // the BackupInfo recorded at completion
  bool operator==(const RestoreArchive&) const = default;
};

// Where a new instance's data comes from instead of the engine's empty template.
struct RestoreSpec {
  std::vector<RestoreArchive> chain;  // full backup first, then incrementals
  // The instance whose archived logs (WAL segments / binlogs) are replayed after the chain;
  // empty: no replay beyond the last archive.
  std::string log_source_instance;
  // Point-in-time target, microseconds since the epoch (UTC); 0: the end of the chain (or of
  // the available logs when log_source_instance is set).
  int64_t target_time_us = 0;
  bool operator==(const RestoreSpec&) const = default;
};

// Replication between members of one replication group: a primary and its read replicas (and,
// for high availability, its synchronous standby). docs/design/database.md, "Read replicas".
// Absent from a desired state: a standalone instance (no replication account, nothing streams).
struct ReplicationSpec {
  enum class Role { kPrimary, kReplica };
  Role role = Role::kPrimary;
  // The replication account's password, the same on every member of the group (the server
  // makes it; the primary turns it into its own verifier for the account
  // kReplicationUser, a replica logs in with it). It never reaches a tenant.
  std::string secret;
  // kReplica: the member it streams from, by its instance id and its engine's own address and
  // port (the engine's, never the tenant-facing endpoint). A change of upstream_instance with
  // the same data history (a sibling promoted) is followed by re-pointing the replica; a
  // member that was a primary and is now told to be a replica rebuilds its data from the
  // upstream (its own history may hold writes the new primary never saw).
  std::string upstream_instance;
  std::string upstream_address;
  int upstream_port = 0;
  // kPrimary: instance ids of every replica streaming from it. The primary keeps what each
  // needs to catch up (PostgreSQL: a replication slot per replica, named after its id) and
  // drops what it kept for members no longer listed, so a deleted replica cannot make it keep
  // WAL forever.
  std::vector<std::string> replicas;
  // kPrimary: instance ids of the replicas that must confirm a commit before it is acknowledged
  // (high availability's synchronous standby; a subset of `replicas`); empty: replicas are
  // asynchronous.
  std::vector<std::string> synchronous_standbys;
  // kReplica, optional: a backup chain of the group and its archived logs (log_source_instance,
  // replayed to their end) to make the replica's first copy from, instead of copying the
  // running upstream over the network; the copy then catches up by streaming from the position
  // it reached. Used by an engine whose network copy is logical (MariaDB), only for the first
  // copy of a member (Engine::clone_from with a transport), and only as a shortcut: a seed
  // that cannot be used falls back to the network copy. docs/design/database.md, "Seeding a
  // MariaDB replica from a backup".
  std::optional<RestoreSpec> seed;
  // kReplica, 0 or a time (microseconds since the epoch): a backup of the group that will seed
  // the replica is being taken, so its first copy waits until then for a `seed` (a later
  // desired state brings it, or says the backup failed) before copying over the network.
  // docs/design/database.md, "A backup taken for the seed".
  int64_t seed_wait_until_us = 0;
  bool operator==(const ReplicationSpec&) const = default;
};
// The replication account on every member of a group (created by the engine on the primary;
// it replicates to the replicas with the rest of the data).
inline constexpr std::string_view kReplicationUser = "concord_replication";

struct DesiredState {
  int64_t revision = 0;  // increases with every change
  std::vector<DatabaseSpec> databases;
  std::vector<UserSpec> users;
  std::optional<RootSpec> root;                   // absent: no remote root
  std::map<std::string, std::string> parameters;  // engine parameters, values as text
  std::optional<BackupRequest> backup;            // at most one running at a time
  std::vector<LogPublishRequest> log_publish;     // guest logs to publish, one per name at most
  // Set for an instance created from a backup; used only when the data folder is first made.
  std::optional<RestoreSpec> restore;
  // Ship completed WAL segments / binlogs to the server (point-in-time restore).
  bool archive_logs = true;
  // Absent: standalone. A replica converges only its role, upstream and parameters: its
  // databases, users and root come from the primary by replication (the server sends the
  // group's lists anyway, so a promotion needs no other change).
  std::optional<ReplicationSpec> replication;
  bool operator==(const DesiredState&) const = default;
};

std::string to_json(const DesiredState& state);
// kInvalidArgument for malformed JSON, wrong types or a missing revision.
[[nodiscard]] Result<DesiredState> desired_state_from_json(std::string_view text);

}  // namespace concord::database::engine

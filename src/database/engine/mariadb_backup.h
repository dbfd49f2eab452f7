#pragma once
// MariaDB backups, restore and binlog archiving for one instance (docs/design/database.md,
// "Backups and restore"). The engine (mariadb_engine.cc) keeps the instance lifecycle; these
// functions own the backup-related files of the instance folder:
//   concord_binlog.cnf   log_bin into binlog/ (basename mariadb-bin-<tag>, one tag per binlog
//                        history), row format; !include'd by my.cnf
//   binlog/              the server's binary logs and index; completed ones are shipped and
//                        then purged (PURGE BINARY LOGS), the current one stays
//   binlog/flushed       "<file> <position>" after our last FLUSH BINARY LOGS
//   binlog/shipped       the number of the last binlog shipped
//   binlog/ship_alias    a folder with plain "mariadb-bin" names whose name the archive
//                        refused as taken (an HA sibling's): the tagged name it ships under
//   backup.tmp/, restore.tmp/   staging of a running backup / restore; stale ones are removed
//                        (backup.tmp/ in InstanceConfig::work_dir when set)
#include <functional>
#include <string>

#include "base/result.h"
#include "database/engine/engine.h"
#include "database/engine/engine_common.h"

namespace concord::database::engine::detail {

struct MdbBackupContext {
  InstanceConfig config;
  OsUser user;          // the engine user: owns the folder, runs the restore's programs
  std::string bin_dir;  // empty: /usr/bin and /usr/sbin
  std::string cnf;      // the instance's my.cnf
  std::string sock;     // its admin socket
  std::chrono::milliseconds start_timeout{60000};
  std::chrono::seconds binlog_keep{600};  // EngineOptions::binlog_keep
  // SQL as root@localhost over the instance's socket (the engine's admin()).
  std::function<Result<std::string>(const std::string& sql)> admin;
};

// Writes concord_binlog.cnf and makes binlog/ (prepare calls it before my.cnf includes it).
// The binlogs' basename is "mariadb-bin-<tag>": kept while the server has written under it,
// a new tag when `fresh` (the data folder is made anew: a new instance, a clone, a restore)
// or nothing was written under the current one yet. A folder's plain "mariadb-bin" (made
// before tags) is kept as long as it is in use.
[[nodiscard]] Status mdb_configure_binlog(const MdbBackupContext& ctx, bool fresh);

// mariadb-backup of the running server into one zstd tar at out_path; incremental
// (--incremental-lsn) on top of request.parent_meta_json's to_lsn when it names one of ours.
[[nodiscard]] Result<BackupInfo> mdb_backup(const MdbBackupContext& ctx,
                                            const BackupRequest& request,
                                            const std::string& out_path);

// Makes <dir>/data from spec: unpack, --prepare (the chain's last full backup, then each
// incremental after it), --move-back, and for a point-in-time restore
// the binlogs of spec.log_source_instance replayed into a private server on the staging folder
// (no network) before the one rename that makes the data folder appear. The replay follows
// domain 0's GTIDs from the backup's through every binlog history the instance shipped (its
// HA members' and earlier folders'); where histories diverge, the one that continues latest
// wins; a missing GTID before the target is kFailedPrecondition. Ok without doing
// anything when <dir>/data exists. The caller then writes the instance's own configuration.
// `before_rename` (optional) runs last on the staging folder, whose data/ is then complete,
// with the GTID position the data stands at (domain 0's last replayed group, else the
// backup's position; empty when unknown): a replica seeded from a backup records there where
// it streams on from (mdb_finish_seed).
using RestoreFinish = std::function<Status(const std::string& stage, const std::string& gtid)>;
[[nodiscard]] Status mdb_restore_data(const MdbBackupContext& ctx, const RestoreSpec& spec,
                                      Transport& transport,
                                      const RestoreFinish& before_rename = nullptr);
// Kills the private servers a killed restore (or seed) left in its staging folder and removes
// the folder: for a copy that will not be redone the same way, and for destroy.
void mdb_discard_restore_stage(const InstanceConfig& config);

// Closes the current binlog when it has events and the archive interval passed, uploads the
// completed ones and purges those uploaded. The archive keys them by instance, whichever HA
// member ships them; names are unique per binlog history (mdb_configure_binlog, ship_alias).
[[nodiscard]] Status mdb_ship_logs(const MdbBackupContext& ctx, Transport& transport);

// Whether binlog/ holds a completed binlog of the configured history that mdb_ship_logs has not
// shipped: one numbered below the newest (the server's current file). Files only, no query.
bool mdb_logs_waiting(const InstanceConfig& config);

// With archiving off (DesiredState::archive_logs false) the completed binlogs are purged
// unshipped, so they cannot fill the disk; on: nothing to do here.
[[nodiscard]] Status mdb_set_archiving(const MdbBackupContext& ctx, bool archive);

// Earliest and latest commit (Xid / COMMIT) times of one binlog file, seconds resolution.
std::pair<int64_t, int64_t> mdb_binlog_commit_range(const MdbBackupContext& ctx,
                                                    const std::string& path);

}  // namespace concord::database::engine::detail

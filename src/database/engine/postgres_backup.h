#pragma once
// PostgreSQL backups, restore and WAL archiving for one instance (docs/design/database.md,
// "Backups and restore"). The engine (postgres_engine.cc) keeps the instance lifecycle; these
// functions own the backup-related files of the instance folder:
//   wal_archive/            completed WAL segments the postmaster's archive_command put there
//                           (a hard link to the pg_wal/ file, or a copy made atomically as
//                           <name>.tmp, then renamed), until ship_logs uploaded them
//   wal_links               present while the running postmaster was launched with
//                           wal_recycle = off: archive_command then links instead of copying
//   wal_shipped/            shipped segments, zstd-compressed, kept for the next incremental
//                           backup (a WAL range from its parent's end); pruned by each backup
//                           to what a later one can build on, and capped in size
//   data/concord_archive.conf   archive_mode/archive_command/archive_timeout/wal_recycle,
//                               included after concord.conf from postgresql.conf
//   data/concord_recovery.conf  restore_command and the point-in-time target of a restore
//   restore_wal/            WAL fetched for a point-in-time restore (read by restore_command;
//                           removed once recovery has finished)
//   backup.tmp/, restore.tmp/   staging of a running backup / restore; stale ones are removed
#include <optional>
#include <string>

#include "base/result.h"
#include "database/engine/engine.h"
#include "database/engine/engine_common.h"

namespace concord::database::engine::detail {

struct PgBackupContext {
  InstanceConfig config;
  OsUser user;            // the engine user: every engine-side program runs as it
  std::string bin_dir;    // where pg_basebackup and pg_waldump are
  std::string superuser;  // the bootstrap role, reachable over the socket folder <dir>/run
};

// pg_basebackup of the running engine into one archive at out_path; with a usable parent
// (request.parent_meta_json of a backup of this engine, version and timeline whose WAL since
// is all still on this host), an incremental one instead: the WAL range from the parent's end
// to a segment switch made now (kind "incremental", format concord-pg-walrange-1). An unusable
// parent gets a full backup (kind "full"), never an incremental that cannot restore.
[[nodiscard]] Result<BackupInfo> pg_backup(const PgBackupContext& ctx, const BackupRequest& request,
                                           const std::string& out_path);

// Makes <dir>/data from spec: the chain's last full backup, then the WAL of the incrementals
// after it (in <dir>/restore_wal, replayed to the last one's stop; kInvalidArgument, before
// anything is fetched, for a chain with a gap or of another format or version), and for a
// point-in-time restore the shipped WAL with its target. Ok without doing anything when <dir>/data
// already exists: the data folder appears by one rename only when complete. The caller then writes
// the instance's own configuration.
[[nodiscard]] Status pg_restore_data(const PgBackupContext& ctx, const RestoreSpec& spec,
                                     Transport& transport);

// Uploads the completed segments in wal_archive/ (oldest first), moving each (compressed) to
// wal_shipped/ only after its put succeeded.
[[nodiscard]] Status pg_ship_logs(const PgBackupContext& ctx, Transport& transport);

// Whether wal_archive/ of the instance holds a file pg_ship_logs would upload (a completed
// segment, a timeline history, a backup label): files only, no call to PostgreSQL.
bool pg_logs_waiting(const InstanceConfig& config);

// Writes data/concord_archive.conf for this instance (archiving on or off; nullopt keeps what
// the file says for this instance, default on) and the include lines in postgresql.conf.
// Returns whether anything changed (the caller then reloads a running engine).
[[nodiscard]] Result<bool> pg_configure_archiving(const PgBackupContext& ctx,
                                                  std::optional<bool> archive);

// Called right before a postmaster is launched: writes wal_links when the configuration it
// will read says wal_recycle = off, removes it otherwise (see archive_command).
[[nodiscard]] Status pg_mark_wal_links(const InstanceConfig& config);

// After a restored instance finished recovery: drops restore_wal/ and the recovery settings.
void pg_cleanup_after_recovery(const PgBackupContext& ctx);

// The earliest and latest commit/abort times (UTC, us) in one WAL segment file, by pg_waldump;
// {0, 0} when there are none or the file cannot be read.
std::pair<int64_t, int64_t> pg_wal_commit_range(const PgBackupContext& ctx,
                                                const std::string& path);

}  // namespace concord::database::engine::detail

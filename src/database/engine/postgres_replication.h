#pragma once
// PostgreSQL read replicas for one instance (docs/design/database.md, "Read replicas:
// PostgreSQL"). The engine (postgres_engine.cc) runs the SQL side (the replication account,
// slots, promotion, health); these functions own the replication files of the instance folder:
//   data/concord_replication.conf  included last from postgresql.conf. On a primary:
//                                  synchronous_standby_names / synchronous_commit. On a
//                                  replica: primary_conninfo (with a passfile, never the
//                                  password), primary_slot_name.
//   data/standby.signal            a replica (PostgreSQL's own marker)
//   replication.pgpass             the replication secret as a libpq passfile (0600, the
//                                  engine user's), outside the data folder so that a base
//                                  backup taken from this member never carries it
//   clone.tmp/                     staging of a running clone_from; a stale one is removed
//   data.old/                      the data folder a rebuilt member (forked from its upstream,
//                                  broken, or no copy of the group's) set aside until its new
//                                  folder is complete (removed by the clone that puts it in place)
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "database/engine/desired_state.h"
#include "database/engine/postgres_backup.h"

namespace concord::database::engine::detail {

// The physical replication slot a primary keeps for the replica `instance_id`:
// "concord_" + the id lower-cased with '-' as '_' (slot names allow only [a-z0-9_]).
std::string pg_slot_name(std::string_view instance_id);
inline constexpr std::string_view kPgSlotPrefix = "concord_";

// The pg_hba.conf line that lets replicas (and clone_from) in as the replication account; the
// account exists only on members of a replication group, so a standalone instance admits
// nobody by it.
inline constexpr std::string_view kPgReplicationHbaLine =
    "host replication concord_replication 0.0.0.0/0 scram-sha-256";

// "FIRST 1 ("a", "b")" for synchronous_standby_names; "" for none. Ids are double-quoted so any
// instance id is one standby name (they match the replicas' application_name, their id).
std::string pg_synchronous_standby_names(const std::vector<std::string>& ids);

// The text of data/concord_replication.conf for `spec` on the instance in `ctx` (also for no
// replication: an empty-settings file, so a former primary's values are gone).
std::string pg_replication_conf(const PgBackupContext& ctx, const ReplicationSpec* spec);

// Writes data/concord_replication.conf (when its text changed), the passfile for a replica and
// the include line in postgresql.conf. Returns whether the conf file changed (the caller
// reloads). `data` is the data folder to write into (the live one, or a clone's staging one).
[[nodiscard]] Result<bool> pg_write_replication_files(const PgBackupContext& ctx,
                                                      const ReplicationSpec* spec,
                                                      const std::string& data);

// Adds `host replication concord_replication 0.0.0.0/0 scram-sha-256` to data/pg_hba.conf when
// an instance prepared before replicas existed lacks it. Returns whether it changed (reload).
[[nodiscard]] Result<bool> pg_ensure_replication_hba(const PgBackupContext& ctx);

// Makes <dir>/data a base backup of the upstream in `spec` (pg_basebackup over the replication
// account, WAL streamed through the replica's slot), set up to start as its replica. Ok at once
// when <dir>/data exists (it appears by one rename, only complete). kUnavailable when the
// upstream cannot be reached, refuses the account or lacks the slot (the primary makes slots
// in its apply; the driver retries); kInvalidArgument for a spec without an upstream.
[[nodiscard]] Status pg_clone_data(const PgBackupContext& ctx, const ReplicationSpec& spec);

// What pg_rewind_data did to a folder.
enum class PgRewind {
  kRewound,          // now a standby of the upstream, holding only the upstream's history
  kNothingToRewind,  // pg_rewind found no fork (the folder untouched): a rewind cannot help
};

// Rewinds `target`, the stopped and cleanly shut down data folder of a member whose history
// forked from the upstream in `spec`, onto the upstream's history (pg_rewind over the
// replication account, which the primary grants the four file functions pg_rewind calls): only
// the blocks changed since the fork and the upstream's newer files are copied, not the whole
// folder. Then the folder is set up to start as the upstream's replica as pg_clone_data leaves
// a copy (the caller's prepare rewrites the instance's own configuration, which pg_rewind took
// from the upstream). Hard links in pg_wal (segments archived by link, see postgres_backup.cc)
// are broken first, because pg_rewind rewrites a segment in place. kUnavailable: the upstream
// could not be reached, and the folder is untouched. Any other error: the folder may be half
// rewound and must never be started.
[[nodiscard]] Result<PgRewind> pg_rewind_data(const PgBackupContext& ctx,
                                              const ReplicationSpec& spec,
                                              const std::string& target);

// Whether a replica at (`timeline`, `replay_lsn`) can stream from an upstream whose current
// timeline is `upstream_timeline` with the history file `upstream_history` (the text of
// <upstream_timeline>.history; empty for timeline 1): the upstream's history must pass through
// our timeline at or after our replay position, else the replica holds WAL the upstream never
// had and must be rebuilt from it.
bool pg_can_follow(uint32_t timeline, uint64_t replay_lsn, uint32_t upstream_timeline,
                   std::string_view upstream_history);

// "0/2000028" -> 0x2000028; false when malformed.
bool pg_parse_lsn(std::string_view text, uint64_t* out);

// Why a standby that is not streaming cannot go on from its upstream without a new copy
// (Health::replication_broken), from the tail of its log, or "". PostgreSQL says so only in its
// log, repeated at every retry of its walreceiver: the upstream answers "requested WAL segment
// ... has already been removed" (a replica re-pointed to a sibling whose new slot for it does
// not reach back to its position), or "requested starting point ... is not in this server's
// history", or the standby's startup process finds that the upstream's "new timeline ...
// forked off current database system timeline ... before current recovery point" (a demoted
// primary with writes its promoted standby never received). The latest of these counts, only
// after the last "starting PostgreSQL", and not when "started streaming WAL" came after it. The
// messages are PostgreSQL's English ones (initdb --locale=C.UTF-8).
std::string pg_broken_in_log(std::string_view log_tail);

struct PgUpstreamTimeline {
  std::string system_id;  // pg_control_system().system_identifier: the same in every copy
  uint32_t timeline = 0;
  std::string history;  // the upstream's history file for `timeline` ("" for timeline 1)
};
// Asks the upstream in `spec` over a replication connection (IDENTIFY_SYSTEM, TIMELINE_HISTORY)
// as the replication account. kUnavailable when it cannot be reached.
[[nodiscard]] Result<PgUpstreamTimeline> pg_upstream_timeline(const PgBackupContext& ctx,
                                                              const ReplicationSpec& spec);

}  // namespace concord::database::engine::detail

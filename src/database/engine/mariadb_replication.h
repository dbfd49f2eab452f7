#pragma once
// MariaDB read replicas for one instance (docs/design/database.md, "Read replicas: MariaDB").
// The engine (mariadb_engine.cc) keeps the instance lifecycle and calls these; they own the
// replication-related files of the instance folder:
//   concord_replication.cnf  server_id (from the instance id), GTID strict mode, replicas log
//                            what they replay; written by prepare, !include'd by my.cnf
//   concord_role.cnf         what the role needs from the very start of the server: read_only
//                            on a replica, semi-synchronous replication on either side;
//                            rewritten by every apply and by clone_from
//   replication_role         "primary" or "replica": what this folder's data is (a replica's
//                            data is a copy of its upstream's history; anything else is its own)
//   replication_upstream     the upstream the slave connection was last pointed at (instance,
//                            address, port, a digest of the secret): CHANGE MASTER only when it
//                            differs, since SHOW SLAVE STATUS does not show the password
//   replica_copy             how the replica's data was copied, for the operator:
//                            "network <gtid>" (the dump) or "backup <id> <gtid>" (a seed)
//   clone.tmp/               the staging of a running clone_from; a stale one is redone
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"
#include "database/engine/engine.h"
#include "database/engine/engine_common.h"

namespace concord::database::engine::detail {

struct MdbReplContext {
  InstanceConfig config;
  OsUser user;             // the engine user: owns the folder, runs the private load server
  std::string bin_dir;     // empty: /usr/bin and /usr/sbin
  std::string sock;        // the instance's admin socket
  std::string binlog_cnf;  // concord_binlog.cnf (log_bin's path is read from it)
  std::chrono::milliseconds start_timeout{60000};
  // SQL as root@localhost over the instance's socket (the engine's admin(): batch output
  // without column names).
  std::function<Result<std::string>(const std::string& sql)> admin;
};

// A nonzero 32-bit server_id derived from the instance id (FNV-1a), so every member of a
// group has its own without any coordination.
uint32_t mdb_server_id(std::string_view instance_id);

// The member's server_id now: mdb_server_id of its id, or the one mdb_renew_server_id gave it.
uint32_t mdb_current_server_id(const InstanceConfig& config);

// A demoted primary, stopped, takes a new server_id (recorded in the folder, written to
// concord_replication.cnf; effective from its next start). Its upstream may hold transactions
// this member wrote but no longer has (cut from its binlog on a crash recovery: see
// role_text), and a replica skips every event carrying its own server_id
// (replicate_same_server_id is off, as log_slave_updates requires): under a new id they are
// an upstream's like any other, and GTID strict mode keeps them in order.
[[nodiscard]] Status mdb_renew_server_id(const MdbReplContext& ctx);

// Writes concord_replication.cnf (when it changed) and, when absent, an empty
// concord_role.cnf. prepare() calls it before my.cnf includes them; `new_data`: the data
// folder was just made from the template, so whatever role the folder had is forgotten.
[[nodiscard]] Status mdb_configure_replication(const MdbReplContext& ctx, bool new_data);

// The folder's recorded role ("primary", "replica", or "" when standalone / never set).
std::string mdb_recorded_role(const std::string& dir);

// Engine::clone_from's first step when it makes a copy: only a primary is copied (asked as
// kReplicationUser: @@global.read_only off). A replica being promoted may not have applied all
// it received, and those transactions carry the demoted primary's server_id, which that
// member, copied from there and streaming on, would skip as its own (replicate_same_server_id
// is off): rows lost without an error. kUnavailable while the upstream is read-only (retried
// until the promotion) or cannot be reached.
[[nodiscard]] Status mdb_check_upstream_is_primary(const MdbReplContext& ctx,
                                                   const ReplicationSpec& spec);

// The first GTID of `own_binlog_pos` (a member's @@gtid_binlog_pos: the last transaction of
// each domain in its binlog) that `upstream_binlog_state` (the upstream's @@gtid_binlog_state:
// the last of each domain and server) does not reach, as "d-s-n"; "" when it reaches them all.
// In GTID strict mode sequence numbers grow within a domain, so an upstream with a later
// transaction of the same server has every earlier one of it too.
std::string mdb_history_missing(std::string_view own_binlog_pos,
                                std::string_view upstream_binlog_state);

// Before a member follows an upstream it does not follow yet (a demoted primary, a sibling
// re-pointed to a promoted replica): why it cannot go on from its own position there (its last
// transactions never reached the upstream: a fork, which only a new copy mends), or "" when it
// can, or when it follows that upstream already. kUnavailable while the upstream is read-only
// (not promoted yet: it may not have applied all it received) or cannot be reached.
[[nodiscard]] Result<std::string> mdb_cannot_follow(const MdbReplContext& ctx,
                                                    const ReplicationSpec& spec);

// A primary about to be demoted: read_only on (commits under way finish, no new one starts),
// then waits until every binlog dump thread has sent its replica all there is (a shutdown
// would kill them with commits unsent, which only this member would then have). Returns the
// milliseconds it took, or -1 when some replica was still behind after `limit` (one that
// stopped reading, say): the demotion goes on, and the fork check decides.
[[nodiscard]] Result<int64_t> mdb_quiesce_for_demotion(const MdbReplContext& ctx,
                                                       std::chrono::milliseconds limit);

// A primary about to be demoted: whether, after up to `limit`, some commit still waits for a
// standby's acknowledgement (a failover promoted that standby: none will come), and a crash
// would keep every commit it acknowledged (innodb_flush_log_at_trx_commit = 1). Such a commit
// is in its binlog already: a clean shutdown would commit it, a fork only a copy mends; a
// crash instead, and the recovery as a replica drops it (init_rpl_role, role_text).
[[nodiscard]] Result<bool> mdb_holds_unacknowledged_commits(const MdbReplContext& ctx,
                                                            std::chrono::milliseconds limit);

// Whether a server's log (its tail since a failed start) says its crash recovery would not cut
// its binlog's unacknowledged transactions: a statement that cannot be rolled back (DDL, a
// non-transactional table) was logged after them ("Cannot truncate the binary log"), and the
// server then refuses to start.
bool mdb_truncation_refused(std::string_view log_tail);

// After such a refusal: this folder's start-up options no longer ask for the cut (recorded
// until it follows an upstream: mdb_follow_own_history), so the next start commits them as
// any crash recovery does; the member has then forked, and its apply copies it anew.
[[nodiscard]] Status mdb_forgo_truncation(const MdbReplContext& ctx);

// Writes concord_role.cnf for `spec` (nullptr: standalone), what the role needs from start-up
// (a replica's read_only): a demoted primary's, while it is stopped.
[[nodiscard]] Status mdb_write_role_options(const MdbReplContext& ctx, const ReplicationSpec* spec);

// A demoted primary, running read-only, made a replica of no upstream yet that goes on from the
// last transaction of its own binlog (gtid_slave_pos = gtid_binlog_pos; role file "replica").
[[nodiscard]] Status mdb_follow_own_history(const MdbReplContext& ctx);

// Engine::clone_from: a consistent logical copy of the running upstream (mariadb-dump over
// TLS as kReplicationUser) loaded into a fresh data folder made by `fresh_data(dest)` (the
// template copy), its GTID position set as both the slave and the binlog position, staged in
// clone.tmp and renamed into place. Ok without doing anything when <dir>/data exists.
// kUnavailable when the upstream cannot be reached or refuses the account (not yet made).
[[nodiscard]] Status mdb_clone_from(const MdbReplContext& ctx, const ReplicationSpec& spec,
                                    const std::function<Status(const std::string&)>& fresh_data);

// A replica's copy made from a seed (ReplicationSpec::seed) instead: mdb_restore_data makes
// the data in its staging folder, and before the rename this records there the GTID position
// the data stands at (as mdb_clone_from does for its dump's) and writes the role file; after
// the rename mdb_mark_replica records the folder as a replica's copy. kFailedPrecondition
// when the position is unknown (the caller then copies over the network).
[[nodiscard]] Status mdb_finish_seed(const MdbReplContext& ctx, const ReplicationSpec& spec,
                                     const std::string& stage, const std::string& gtid);
// Kills the private server a killed clone left in clone.tmp and removes the folder (destroy).
void mdb_discard_clone_stage(const InstanceConfig& config);
// Records the folder as a complete copy of the upstream (replication_role "replica") and
// `how` it was made (replica_copy). Only after the copy is renamed into place.
[[nodiscard]] Status mdb_mark_replica(const MdbReplContext& ctx, const std::string& how);

// SHOW SLAVE STATUS as column -> value; empty when no slave connection is configured.
[[nodiscard]] Result<std::map<std::string, std::string>> mdb_slave_status(
    const MdbReplContext& ctx);

// The replication half of apply() on a member told to be (or stay) a primary, or standalone
// (`spec` null): stops and forgets a slave connection (promotion), read_only off, the
// replication account (primary) or its removal (standalone); semi-synchronous replication off
// when no standby is listed. Called before the users and databases are converged.
[[nodiscard]] Status mdb_apply_primary(const MdbReplContext& ctx, const ReplicationSpec* spec);

// Semi-synchronous replication on when spec lists synchronous standbys (and the start-up
// file). Called last in apply(): from then on a commit waits for a standby's acknowledgement,
// so the apply's own statements must not.
[[nodiscard]] Status mdb_apply_semisync(const MdbReplContext& ctx, const ReplicationSpec* spec);

// The replication half of apply() on a replica whose data is a copy of its upstream
// (mdb_recorded_role == "replica"): read_only, semi-sync slave, and the slave connection
// pointed at spec's upstream and running.
[[nodiscard]] Status mdb_apply_replica(const MdbReplContext& ctx, const ReplicationSpec& spec);

// Why a running replica that follows spec's upstream cannot go on without a new copy of it
// (Health::replication_broken), or "". One that follows another upstream is not judged:
// re-pointing it may be all it needs.
[[nodiscard]] Result<std::string> mdb_replica_broken(const MdbReplContext& ctx,
                                                     const ReplicationSpec& spec);

// Fills Health::role, replication_streaming, replication_lag_seconds and replication_broken of
// a running, answering server.
void mdb_replication_health(const MdbReplContext& ctx, Health& health);

}  // namespace concord::database::engine::detail

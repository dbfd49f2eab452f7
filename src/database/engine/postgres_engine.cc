// PostgreSQL engine: one postmaster per instance, run as the engine user from the Debian
// binaries (/usr/lib/postgresql/<version>/bin).
//
// Instance folder (owned by the engine user, 0700):
//   data/            PGDATA: a copy of the host's initdb template for this version
//                    (clone_from_template: made beside it and renamed when complete, so a
//                    folder half-made by a killed agent is redone, never trusted)
//   data/concord.conf  our settings, included last from postgresql.conf (rewritten by prepare)
//   run/             the Unix socket (0700): only the engine user and root can reach it, which
//                    is what makes `local all all trust` in pg_hba safe
//   tls/server.{crt,key}  the per-instance self-signed certificate
//   engine.log       the postmaster's stderr; engine.pid the pid we launched
//   applied_revision the desired-state revision last converged
//   fenced_revision  the revision that demoted it, once stopped for it (Health::fenced_revision)
//   wal_archive/, restore_wal/, data/concord_{archive,recovery}.conf  backups, incrementals,
//                    WAL archiving and point-in-time restore (postgres_backup.h); wal_shipped/,
//                    backup.tmp/ and ship.tmp/ are in InstanceConfig::work_dir (when set)
//   data/concord_replication.conf, data/standby.signal, replication.pgpass, clone.tmp/,
//                    data.old/  read replicas (postgres_replication.h)
//   data/concord_group_member  the folder holds a replication group's history (kGroupMarker)
//
// Administration goes over the socket as the bootstrap superuser (named after the engine
// user) through libpq; no administrative password exists. Remote access is scram-sha-256 only,
// with the verifiers the server computed (credentials.h), so no password is ever seen here.
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "base/log.h"
#include "database/engine/credentials.h"
#include "database/engine/engine.h"
#include "database/engine/engine_common.h"
#include "database/engine/parameters.h"
#include "database/engine/postgres_backup.h"
#include "database/engine/postgres_common.h"
#include "database/engine/postgres_replication.h"
#include "fmt/format.h"

namespace concord::database::engine {
namespace {

using namespace detail;  // NOLINT(build/namespaces): the engine's own helpers
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1: longer names are truncated
constexpr milliseconds kKillWait{10000};
constexpr milliseconds kStartPoll{15};
// How much of a standby's log is read for why it cannot stream (pg_broken_in_log): the
// walreceiver retries every 5 s, so its last answer is always near the end.
constexpr size_t kLogTailForBreaks = 16384;

// In a data folder that holds a replication group's history: written by the group's primary,
// copied with it into every replica (demote_in_place).
constexpr std::string_view kGroupMarker = "concord_group_member";

struct Paths {
  explicit Paths(const std::string& d)
      : dir(d),
        data(d + "/data"),
        data_tmp(d + "/data.tmp"),
        run(d + "/run"),
        tls(d + "/tls"),
        crt(d + "/tls/server.crt"),
        key(d + "/tls/server.key"),
        log(d + "/engine.log"),
        pidfile(d + "/engine.pid"),
        group_marker(data + "/" + std::string(kGroupMarker)) {}
  std::string dir, data, data_tmp, run, tls, crt, key, log, pidfile, group_marker;
};

// A libpq connection that closes itself.
struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// The SQLSTATE class says whose fault it is: the request (22 data, 42 syntax/names), a
// transient condition (08 connection, 53 resources, 57 operator intervention), or a bug.
Code code_for_sqlstate(const char* state) {
  std::string_view s = state ? state : "";
  if (s.starts_with("22") || s.starts_with("42")) return Code::kInvalidArgument;
  if (s.starts_with("08") || s.starts_with("53") || s.starts_with("57")) return Code::kUnavailable;
  return Code::kInternal;
}

class PostgresEngine final : public Engine {
 public:
  explicit PostgresEngine(EngineOptions options)
      : options_(std::move(options)), log_(logger("database.engine")) {}

  std::string_view name() const override { return "postgresql"; }

  Status probe(std::string_view version) override {
    for (const char* prog : {"postgres", "initdb"}) {
      std::string path = bin(version, prog);
      if (::access(path.c_str(), X_OK) != 0) {
        return fail(Code::kFailedPrecondition,
                    fmt::format("PostgreSQL {}: {} is missing or not executable", version, path));
      }
    }
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    (void)user;
    return ok();
  }

  Status prepare(const InstanceConfig& config) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_RETURN_IF_ERROR(probe(config.version));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    Paths p(config.dir);
    CONCORD_RETURN_IF_ERROR(make_dir(p.dir, 0700, user));
    CONCORD_RETURN_IF_ERROR(make_dir(p.run, 0700, user));
    if (!path_exists(p.data)) {
      // New data: nothing of an earlier desired state is applied to it.
      CONCORD_RETURN_IF_ERROR(remove_tree(p.dir + "/applied_revision"));
      CONCORD_RETURN_IF_ERROR(remove_tree(p.data_tmp));  // left by stage 1's in-place initdb
      // Every instance starts as a copy of one initdb output per host, version and engine
      // user. The copies share pg_control's system identifier, which is acceptable: it only
      // ties WAL and base backups to the cluster they came from, and here replicas are made
      // from their primary by base backup (so they must share it) and backups are stored and
      // restored by instance id, never matched across instances by that identifier.
      auto r = clone_from_template(
          template_root(options_, config.dir),
          fmt::format("postgresql-{}-{}", config.version, options_.os_user), user,
          [&](const std::string& data, const std::string& scratch) -> Status {
            CommandOptions as_user;
            as_user.as = user;
            as_user.cwd = scratch;
            as_user.timeout = milliseconds(120000);
            auto made =
                run_checked({bin(config.version, "initdb"), "-D", data, "-U", options_.os_user,
                             "-E", "UTF8", "--locale=C.UTF-8", "--auth-local=trust",
                             "--auth-host=scram-sha-256", "--no-instructions"},
                            as_user, Code::kFailedPrecondition);
            if (!made) return fail(made.error());
            return ok();
          },
          p.data, options_.spare_copies);
      if (!r) {
        return fail(r.error().code(), fmt::format("initdb for database instance {}: {}", config.id,
                                                  r.error().message()));
      }
    }
    CONCORD_RETURN_IF_ERROR(ensure_tls(p.tls, config, user));
    CONCORD_RETURN_IF_ERROR(write_config(p, config, user));
    // Backups: WAL archiving settings for this instance (kept on/off as last applied).
    CONCORD_ASSIGN_OR_RETURN(bool archiving_changed,
                             pg_configure_archiving(backup_context(config, user), std::nullopt));
    (void)archiving_changed;  // read at the next start
    return ok();
  }

  Status start(const InstanceConfig& config) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    Paths p(config.dir);
    if (!path_exists(p.data)) {
      return fail(
          Code::kFailedPrecondition,
          fmt::format("database instance {} has no data folder (prepare first)", config.id));
    }
    EngineStart start{
        .what = "postgresql " + config.id,
        .log_path = p.log,
        .launch = [&]() -> Result<pid_t> {
          reap_stale_group(p.pidfile);
          CONCORD_RETURN_IF_ERROR(pg_mark_wal_links(config));
          std::string why_unlimited;
          auto procs = apply_limits(options_, config, &why_unlimited);
          if (!why_unlimited.empty()) {
            log_->warn("postgresql {} runs without cgroup limits: {}", config.id, why_unlimited);
          }
          CONCORD_ASSIGN_OR_RETURN(
              pid_t pid,
              spawn_detached({bin(config.version, "postgres"), "-D", p.data}, user, p.log, procs));
          CONCORD_RETURN_IF_ERROR(write_file_atomic(p.pidfile, std::to_string(pid) + "\n"));
          log_->info("postgresql {} launched pid={}", config.id, pid);
          return pid;
        },
        .probe = [&]() -> Status {
          CONCORD_ASSIGN_OR_RETURN(PgConn conn, connect(p, config, "postgres"));
          return exec(conn.get(), "SELECT 1");
        },
        .timeout = options_.start_timeout,
        .poll = kStartPoll};
    return wait_started(live_pid(p), start);
  }

  Status stop(const InstanceConfig& config, milliseconds grace) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    Paths p(config.dir);
    pid_t pid = live_pid(p);
    if (pid != 0) {
      if (grace.count() > 0) {
        ::kill(pid, SIGINT);  // fast shutdown: rolls back open transactions, checkpoints
        if (!wait_gone(pid, grace)) {
          log_->info("postgresql {} did not stop within {} ms, killing", config.id, grace.count());
        }
      }
      if (process_alive(pid) && !kill_hard(pid, kKillWait)) {
        return fail(
            Code::kDeadlineExceeded,
            fmt::format("postgresql pid {} of instance {} survived SIGKILL", pid, config.id));
      }
    }
    reap_stale_group(p.pidfile);
    (void)remove_tree(p.pidfile);
    return ok();
  }

  Status apply(const InstanceConfig& config, const DesiredState& state) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_RETURN_IF_ERROR(validate_state(state));
    CONCORD_RETURN_IF_ERROR(validate_parameters("postgresql", config.version, state.parameters));
    CONCORD_RETURN_IF_ERROR(check_parameters_fit("postgresql", state.parameters, config.ram_mb));
    const ReplicationSpec* repl = state.replication ? &*state.replication : nullptr;
    if (repl) CONCORD_RETURN_IF_ERROR(validate_replication(config, *repl));
    Paths p(config.dir);
    if (live_pid(p) == 0) {
      // A replica whose rebuild was cut short after its old folder was set aside (the agent
      // killed, the upstream down): finish it, there is nothing else to run.
      if (repl && repl->role == ReplicationSpec::Role::kReplica && !path_exists(p.data)) {
        CONCORD_RETURN_IF_ERROR(rebuild_replica(p, config, *repl, "its data folder is missing"));
      } else {
        return fail(Code::kFailedPrecondition,
                    fmt::format("postgresql {} is not running; cannot apply revision {}", config.id,
                                state.revision));
      }
    }
    // Role and upstream first: a promotion makes the rest applicable, a rebuild replaces the
    // folder the parameters below are written into.
    CONCORD_ASSIGN_OR_RETURN(bool is_replica, converge_role(p, config, repl, state.revision));
    CONCORD_RETURN_IF_ERROR(apply_parameters(p, config, state));
    if (is_replica) return finish_replica_apply(p, config, state);
    CONCORD_ASSIGN_OR_RETURN(PgConn admin, connect(p, config, "postgres"));
    PGconn* c = admin.get();

    // Databases. Only what Concord made and the API since removed is dropped (ManagedNames).
    const ManagedNames managed = read_managed_names(p.dir);
    std::set<std::string> wanted_dbs;
    for (const auto& d : state.databases) wanted_dbs.insert(d.name);
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> dbs,
                             column(c,
                                    "SELECT datname FROM pg_database WHERE NOT datistemplate AND "
                                    "datname <> 'postgres'"));
    std::set<std::string> have_dbs(dbs.begin(), dbs.end());
    for (const auto& d : have_dbs) {
      if (wanted_dbs.contains(d) || !managed.databases.contains(d)) continue;
      CONCORD_RETURN_IF_ERROR(exec(c, "DROP DATABASE IF EXISTS " + ident(c, d) + " WITH (FORCE)"));
      log_->info("postgresql {}: dropped database {}", config.id, d);
    }
    for (const auto& d : state.databases) {
      if (have_dbs.contains(d.name)) continue;
      std::string sql = "CREATE DATABASE " + ident(c, d.name) + " TEMPLATE template0";
      if (!d.character_set.empty()) sql += " ENCODING " + literal(c, d.character_set);
      if (!d.collate.empty()) {
        sql += " LC_COLLATE " + literal(c, d.collate) + " LC_CTYPE " + literal(c, d.collate);
      }
      CONCORD_RETURN_IF_ERROR(exec(c, sql));
      // Access to a database is by grant only (PUBLIC may connect to every database by
      // default).
      CONCORD_RETURN_IF_ERROR(
          exec(c, "REVOKE ALL ON DATABASE " + ident(c, d.name) + " FROM PUBLIC"));
      log_->info("postgresql {}: created database {}", config.id, d.name);
    }

    // Roles: listed users, "root" when enabled; the others Concord made go.
    CONCORD_ASSIGN_OR_RETURN(
        std::vector<std::string> roles,
        column(c, "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> " +
                      literal(c, options_.os_user)));
    std::set<std::string> have_roles(roles.begin(), roles.end());
    std::set<std::string> wanted_roles;
    for (const auto& u : state.users) {
      wanted_roles.insert(u.name);
      const char* verb = have_roles.contains(u.name) ? "ALTER" : "CREATE";
      CONCORD_RETURN_IF_ERROR(exec(c, fmt::format("{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB "
                                                  "NOCREATEROLE PASSWORD {}",
                                                  verb, ident(c, u.name), literal(c, u.verifier))));
    }
    if (state.root) {
      wanted_roles.insert("root");
      const char* verb = have_roles.contains("root") ? "ALTER" : "CREATE";
      CONCORD_RETURN_IF_ERROR(exec(c, fmt::format("{} ROLE root WITH LOGIN SUPERUSER PASSWORD {}",
                                                  verb, literal(c, state.root->verifier))));
    }
    std::vector<std::string> drop_roles;
    for (const auto& r : have_roles) {
      if (!wanted_roles.contains(r) && managed.accounts.contains(r)) drop_roles.push_back(r);
    }
    // Database-level grants.
    for (const auto& u : state.users) {
      std::set<std::string> mine(u.databases.begin(), u.databases.end());
      for (const auto& d : wanted_dbs) {
        std::string sql =
            mine.contains(d)
                ? "GRANT ALL ON DATABASE " + ident(c, d) + " TO " + ident(c, u.name)
                : "REVOKE ALL ON DATABASE " + ident(c, d) + " FROM " + ident(c, u.name);
        CONCORD_RETURN_IF_ERROR(exec(c, sql));
      }
    }
    // Per database: the public schema (PostgreSQL 15 grants CREATE there to the owner only)
    // and the objects of roles about to be dropped (kept, owned by the bootstrap role).
    for (const auto& d : wanted_dbs) {
      CONCORD_ASSIGN_OR_RETURN(PgConn dbc, connect(p, config, d));
      PGconn* dc = dbc.get();
      for (const auto& u : state.users) {
        bool granted = std::find(u.databases.begin(), u.databases.end(), d) != u.databases.end();
        CONCORD_RETURN_IF_ERROR(
            exec(dc, granted ? "GRANT ALL ON SCHEMA public TO " + ident(dc, u.name)
                             : "REVOKE ALL ON SCHEMA public FROM " + ident(dc, u.name)));
      }
      CONCORD_RETURN_IF_ERROR(disown(dc, drop_roles));
    }
    CONCORD_RETURN_IF_ERROR(disown(c, drop_roles));
    for (const auto& r : drop_roles) {
      CONCORD_RETURN_IF_ERROR(exec(c, "DROP ROLE IF EXISTS " + ident(c, r)));
      log_->info("postgresql {}: dropped role {}", config.id, r);
    }
    // Backups: WAL archiving on or off (a reload is enough: archive_mode itself stays on).
    {
      CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
      auto ctx = backup_context(config, user);
      pg_cleanup_after_recovery(ctx);
      CONCORD_ASSIGN_OR_RETURN(bool archiving_changed,
                               pg_configure_archiving(ctx, state.archive_logs));
      if (archiving_changed) CONCORD_RETURN_IF_ERROR(exec(c, "SELECT pg_reload_conf()"));
    }
    // Replication: the account and a slot per replica on a primary; a standalone instance
    // keeps no slots (a slot nobody reads would keep WAL forever).
    if (repl) CONCORD_RETURN_IF_ERROR(ensure_replication_account(c, config, repl->secret));
    CONCORD_RETURN_IF_ERROR(
        converge_slots(c, config, repl ? repl->replicas : std::vector<std::string>{}));
    CONCORD_RETURN_IF_ERROR(write_managed_names(p.dir, {wanted_dbs, wanted_roles}));
    CONCORD_RETURN_IF_ERROR(write_applied_revision(p.dir, state.revision));
    log_->info("postgresql {}: applied revision {}", config.id, state.revision);
    return ok();
  }

  // The seed is not used: pg_basebackup's copy is physical already, and a base backup from the
  // archive would still need the upstream's WAL from its start on.
  Status clone_from(const InstanceConfig& config, const ReplicationSpec& spec,
                    Transport* /*seed_transport*/) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_RETURN_IF_ERROR(probe(config.version));
    if (spec.role != ReplicationSpec::Role::kReplica) {
      return fail(
          Code::kInvalidArgument,
          fmt::format("postgresql {}: clone_from needs a replica's replication spec", config.id));
    }
    CONCORD_RETURN_IF_ERROR(validate_replication(config, spec));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    const Paths p(config.dir);
    if (live_pid(p) != 0) {
      return fail(
          Code::kFailedPrecondition,
          fmt::format("postgresql {} is running; a clone makes a new data folder", config.id));
    }
    if (path_exists(p.group_marker) && !path_exists(p.data + "/standby.signal")) {
      // The group's former primary (a failover while it was down): it starts as a standby,
      // never writable again, and keeps its folder; its apply follows the new upstream from
      // there, or rebuilds it when its history forked (converge_role).
      log_->info("postgresql {}: a former primary of the group; it starts as a standby", config.id);
      CONCORD_RETURN_IF_ERROR(write_file_atomic(p.data + "/standby.signal", "", 0600, user));
    }
    CONCORD_RETURN_IF_ERROR(pg_clone_data(backup_context(config, user), spec));
    // The clone carries the upstream's configuration: this instance's own (port, address,
    // certificate, socket folder, archiving) replaces it; the replication files stay.
    return prepare(config);
  }

  Result<Health> health(const InstanceConfig& config) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    Paths p(config.dir);
    Health h;
    h.applied_revision = read_applied_revision(p.dir);
    h.fenced_revision = read_fenced_revision(p.dir);
    // WAL segments archived and not shipped yet are the instance's too (postgres_backup.h).
    h.disk_used_bytes = disk_usage({p.data, p.dir + "/wal_archive"});
    pid_t pid = live_pid(p);
    h.running = pid != 0;
    if (!h.running) {
      h.detail = "postgresql is not running";
      return h;
    }
    auto conn = connect(p, config, "postgres", 3);
    if (!conn) {
      h.detail = conn.error().message();
      return h;
    }
    auto r = exec(conn->get(), "SELECT 1");
    h.healthy = r.has_value();
    h.detail = h.healthy ? fmt::format("postgresql pid {}", pid) : r.error().message();
    if (h.healthy) {
      auto pending = column(conn->get(), "SELECT name FROM pg_settings WHERE pending_restart");
      h.restart_required = pending && !pending->empty();
      // Lag 0 when everything received is replayed (an idle primary leaves the replay
      // timestamp old, which is no lag); -1 before anything was received.
      auto repl = run(conn->get(),
                      "SELECT pg_is_in_recovery(), "
                      "coalesce((SELECT status FROM pg_stat_wal_receiver LIMIT 1), ''), "
                      "CASE WHEN pg_last_wal_receive_lsn() IS NULL THEN -1 "
                      "WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0 "
                      "ELSE coalesce(greatest(0, floor(extract(epoch FROM now() - "
                      "pg_last_xact_replay_timestamp())))::bigint, -1) END");
      if (repl && PQntuples(repl->get()) == 1) {
        PGresult* r = repl->get();
        h.role = std::string_view(PQgetvalue(r, 0, 0)) == "t" ? "replica" : "primary";
        h.replication_streaming = std::string_view(PQgetvalue(r, 0, 1)) == "streaming";
        h.replication_lag_seconds = std::strtoll(PQgetvalue(r, 0, 2), nullptr, 10);
        if (h.role == "replica" && !h.replication_streaming) {
          h.replication_broken = pg_broken_in_log(file_tail(p.log, kLogTailForBreaks));
        }
      } else if (!repl) {
        h.detail += "; replication state unknown: " + repl.error().message();
      }
    }
    return h;
  }

  Status destroy(const InstanceConfig& config) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    Paths p(config.dir);
    if (pid_t pid = live_pid(p); pid != 0 && !kill_hard(pid, kKillWait)) {
      return fail(Code::kDeadlineExceeded,
                  fmt::format("postgresql pid {} of instance {} survived SIGKILL", pid, config.id));
    }
    reap_stale_group(p.pidfile);
    remove_shared_memory(p);
    remove_cgroups(options_, config.id);
    CONCORD_RETURN_IF_ERROR(remove_instance_folder(p.dir));
    log_->info("postgresql {} destroyed", config.id);
    return ok();
  }

  // ---- backups and restore (postgres_backup.cc) ----
  Result<BackupInfo> backup(const InstanceConfig& config, const BackupRequest& request,
                            const std::string& out_path) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    if (live_pid(Paths(config.dir)) == 0) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("postgresql {} is not running; cannot back it up", config.id));
    }
    // An instance made before backups existed has the replication line in pg_hba.conf only
    // since its last prepare: have the postmaster read it (a failed first try is retried).
    if (auto conn = connect(Paths(config.dir), config, "postgres"); conn) {
      (void)exec(conn->get(), "SELECT pg_reload_conf()");
    }
    return pg_backup(backup_context(config, user), request, out_path);
  }

  Status restore(const InstanceConfig& config, const RestoreSpec& spec,
                 Transport& transport) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_RETURN_IF_ERROR(probe(config.version));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    if (live_pid(Paths(config.dir)) != 0) {
      return fail(
          Code::kFailedPrecondition,
          fmt::format("postgresql {} is running; a restore makes a new data folder", config.id));
    }
    CONCORD_RETURN_IF_ERROR(pg_restore_data(backup_context(config, user), spec, transport));
    // The restored folder carries the source's configuration: this instance's own (port,
    // address, certificate, socket folder, archiving) replaces it.
    return prepare(config);
  }

  Status ship_logs(const InstanceConfig& config, Transport& transport) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    return pg_ship_logs(backup_context(config, user), transport);
  }
  bool logs_waiting(const InstanceConfig& config) const override { return pg_logs_waiting(config); }

  // data/concord_guard.conf, included last: default_transaction_read_only = on while the
  // guard is on, empty (or absent) otherwise; a reload (SIGHUP) makes a change reach every
  // session between its statements. A PostgreSQL whose WAL cannot grow PANICs and cannot
  // recover, so the guard stops writes before that. A data folder copied from a guarded
  // instance (a backup, a replica's copy) carries the file; the driver clears it (every second
  // on a volume, every round otherwise).
  Result<bool> set_read_only(const InstanceConfig& config, bool on) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    Paths p(config.dir);
    if (!path_exists(p.data)) return false;
    const std::string file = p.data + "/concord_guard.conf";
    const std::string text = on ? "# Written by Concord: the volume is full.\n"
                                  "default_transaction_read_only = on\n"
                                : "";
    auto current = read_file(file);
    if ((current ? *current : std::string()) == text) return false;
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    CONCORD_RETURN_IF_ERROR(write_file_atomic(file, text, 0600, user));
    CONCORD_RETURN_IF_ERROR(append_include(p, "include_if_exists = 'concord_guard.conf'", user));
    if (const pid_t pid = live_pid(p); pid != 0) ::kill(pid, SIGHUP);
    return true;
  }

 private:
  PgBackupContext backup_context(const InstanceConfig& config, const OsUser& user) const {
    return PgBackupContext{config, user,
                           options_.bin_dir.empty()
                               ? fmt::format("/usr/lib/postgresql/{}/bin", config.version)
                               : options_.bin_dir,
                           options_.os_user};
  }

  std::string bin(std::string_view version, std::string_view prog) const {
    if (!options_.bin_dir.empty()) return fmt::format("{}/{}", options_.bin_dir, prog);
    return fmt::format("/usr/lib/postgresql/{}/bin/{}", version, prog);
  }

  // The postmaster of this instance: our pidfile, else postgres' own (the agent may have died
  // between the launch and writing ours). Its command line names this data folder.
  pid_t live_pid(const Paths& p) const {
    std::string mark = "-D " + p.data;
    if (pid_t pid = live_pid_from(p.pidfile, mark); pid != 0) return pid;
    return live_pid_from(p.data + "/postmaster.pid", mark);
  }

  // The System V segment a killed postmaster leaves (postmaster.pid line 7: key and id).
  void remove_shared_memory(const Paths& p) const {
    auto text = read_file(p.data + "/postmaster.pid");
    if (!text) return;
    std::istringstream in(*text);
    std::string line;
    for (int i = 0; i < 7 && std::getline(in, line); ++i) {
    }
    std::istringstream fields(line);
    long key = 0;
    int id = -1;
    if (fields >> key >> id && id >= 0) {
      struct shmid_ds ds {};
      if (::shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 0) ::shmctl(id, IPC_RMID, nullptr);
    }
  }

  Status write_config(const Paths& p, const InstanceConfig& config, const OsUser& user) {
    // Memory and WAL sized to the flavor and the volume (parameters.h); in base units (8kB pages,
    // MB). A configuration group may set any of them.
    auto defaults = default_parameters("postgresql", config.ram_mb, config.volume_gb);
    std::string conf = fmt::format(
        "# Written by Concord for database instance {}; rewritten on every prepare.\n"
        "listen_addresses = {}\n"
        "port = {}\n"
        "unix_socket_directories = {}\n"
        "unix_socket_permissions = 0700\n"
        "ssl = on\n"
        "ssl_cert_file = {}\n"
        "ssl_key_file = {}\n"
        "password_encryption = 'scram-sha-256'\n"
        // What pg_rewind needs to rewind this folder after a fork (rewind_replica) instead of
        // copying it anew; Patroni turns it on too. Its cost: a page's first hint-bit change
        // after a checkpoint is written to the WAL in full.
        "wal_log_hints = on\n"
        "shared_buffers = {}\n"
        "max_wal_size = {}\n"
        "min_wal_size = {}\n"
        "max_connections = {}\n"
        "logging_collector = off\n"
        "hba_file = {}\n"
        // Last, so the configuration group's values win over the defaults above.
        "include_if_exists = 'concord_params.conf'\n",
        config.id, pg_conf_quote(config.address), config.port, pg_conf_quote(p.run),
        pg_conf_quote(p.crt), pg_conf_quote(p.key), defaults["shared_buffers"],
        defaults["max_wal_size"], defaults["min_wal_size"], defaults["max_connections"],
        pg_conf_quote(p.data + "/pg_hba.conf"));
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.data + "/concord.conf", conf, 0600, user));
    // The socket folder is the fence for `local ... trust`: 0700, the engine user's.
    const std::string hba =
        "# Written by Concord. Local: the 0700 socket folder admits only the engine user and "
        "root.\n"
        "local all all trust\n"
        "local replication all trust\n" +
        std::string(kPgReplicationHbaLine) +
        "\n"
        "host all all 0.0.0.0/0 scram-sha-256\n"
        "host all all ::/0 scram-sha-256\n";
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.data + "/pg_hba.conf", hba, 0600, user));
    return append_include(p, "include = 'concord.conf'", user);
  }

  // Appends `line` to postgresql.conf unless it is there: later lines win, so an include
  // appended after concord.conf (which includes the configuration group's file) overrides both.
  static Status append_include(const Paths& p, std::string_view line, const OsUser& user) {
    const std::string main_conf = p.data + "/postgresql.conf";
    CONCORD_ASSIGN_OR_RETURN(std::string text, read_file(main_conf));
    if (text.find(line) != std::string::npos) return ok();
    if (!text.empty() && text.back() != '\n') text += '\n';
    text += std::string(line) + "\n";
    return write_file_atomic(main_conf, text, 0600, user);
  }

  // ---- configuration groups (parameters.h) ----
  // The group's values go into data/concord_params.conf (included last by concord.conf),
  // written atomically and only when they changed, then a reload: dynamic parameters take
  // effect at once, removed ones return to their defaults, and postmaster-context ones wait for
  // the next start (pg_settings.pending_restart, reported by health()). On a new instance's
  // first apply those are made live by one restart right away, before it holds any data.
  Status apply_parameters(const Paths& p, const InstanceConfig& config, const DesiredState& state) {
    std::string text =
        "# Written by Concord: the instance's configuration group; rewritten on every change.\n";
    for (const auto& [name, value] : state.parameters) {
      // Names come from the catalog and values are in normal form (validate_parameters), so
      // neither can hold a quote or a line break; conf_quote is the second fence.
      text += name + " = " + pg_conf_quote(value) + "\n";
    }
    const std::string path = p.data + "/concord_params.conf";
    if (auto old = read_file(path); !old || *old != text) {
      CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(path, text, 0600, user));
    }
    // Reloaded on every apply, not only after a write: an agent killed between the write and
    // the reload would otherwise leave the file unread until the next change.
    CONCORD_ASSIGN_OR_RETURN(PgConn admin, connect(p, config, "postgres"));
    constexpr const char* kLoadTime = "SELECT pg_conf_load_time()::text";
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> loaded_before,
                             column(admin.get(), kLoadTime));
    CONCORD_RETURN_IF_ERROR(exec(admin.get(), "SELECT pg_reload_conf()"));
    // The reload is a signal the postmaster passes on: until this backend has re-read the files
    // (its pg_conf_load_time moves) neither the new values nor pending_restart show. Bounded.
    for (const auto until = Clock::now() + milliseconds(5000); Clock::now() < until;) {
      auto now_loaded = column(admin.get(), kLoadTime);
      if (!now_loaded) return fail(now_loaded.error());
      if (*now_loaded != loaded_before) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    // Then wait (bounded) until the dynamic values are visible, so that when apply returns, new
    // sessions run with them.
    std::vector<std::pair<std::string, std::string>> dynamic;
    for (const auto& [name, value] : state.parameters) {
      const ParameterSpec* spec = find_parameter("postgresql", config.version, name);
      if (spec != nullptr && !spec->restart_required) dynamic.emplace_back(name, value);
    }
    const auto deadline = Clock::now() + milliseconds(5000);
    while (!dynamic.empty()) {
      bool all = true;
      for (const auto& [name, value] : dynamic) {
        auto got = column(admin.get(), "SELECT setting FROM pg_settings WHERE name = " +
                                           literal(admin.get(), name));
        if (!got) return fail(got.error());
        if (got->empty() || (*got)[0] != value) all = false;
      }
      if (all) break;
      if (Clock::now() > deadline) {
        log_->warn("postgresql {}: the reloaded parameters are not all visible yet", config.id);
        break;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    CONCORD_ASSIGN_OR_RETURN(
        std::vector<std::string> pending,
        column(admin.get(), "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name"));
    if (!pending.empty() && read_applied_revision(p.dir) == 0) {
      log_->info("postgresql {}: restarting once for its configuration group ({})", config.id,
                 fmt::format("{}", fmt::join(pending, ", ")));
      admin.reset();
      CONCORD_RETURN_IF_ERROR(stop(config, milliseconds(10000)));
      CONCORD_RETURN_IF_ERROR(start(config));
    } else if (!pending.empty()) {
      log_->info("postgresql {}: waiting for a restart: {}", config.id,
                 fmt::format("{}", fmt::join(pending, ", ")));
    }
    log_->info("postgresql {}: {} configuration parameters applied", config.id,
               state.parameters.size());
    return ok();
  }

  // ---- read replicas (postgres_replication.h) ----
  Status validate_replication(const InstanceConfig& config, const ReplicationSpec& spec) const {
    if (spec.secret.empty()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("postgresql {}: the replication secret is empty", config.id));
    }
    auto check_slot = [&](const std::string& id) -> Status {
      std::string slot = pg_slot_name(id);
      bool valid = !id.empty() && slot.size() <= kMaxIdentifierBytes &&
                   std::all_of(slot.begin(), slot.end(), [](char ch) {
                     return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
                   });
      if (!valid) {
        return fail(Code::kInvalidArgument,
                    fmt::format("postgresql {}: member id '{}' makes no valid replication slot "
                                "name ('{}': [a-z0-9_], at most {} bytes)",
                                config.id, id, slot, kMaxIdentifierBytes));
      }
      return ok();
    };
    if (spec.role == ReplicationSpec::Role::kReplica) {
      CONCORD_RETURN_IF_ERROR(check_slot(config.id));
      if (spec.upstream_instance == config.id) {
        return fail(Code::kInvalidArgument,
                    fmt::format("postgresql {}: a replica cannot stream from itself", config.id));
      }
      if (spec.upstream_address.empty() || spec.upstream_port <= 0 || spec.upstream_port > 65535) {
        return fail(
            Code::kInvalidArgument,
            fmt::format("postgresql {}: replica without an upstream address and port", config.id));
      }
      return ok();
    }
    for (const auto& id : spec.replicas) CONCORD_RETURN_IF_ERROR(check_slot(id));
    for (const auto& id : spec.synchronous_standbys) {
      if (std::find(spec.replicas.begin(), spec.replicas.end(), id) == spec.replicas.end()) {
        return fail(Code::kInvalidArgument,
                    fmt::format("postgresql {}: synchronous standby '{}' is not one of its "
                                "replicas",
                                config.id, id));
      }
    }
    return ok();
  }

  // Brings the running engine to the role `repl` asks for (nullptr: standalone) and writes the
  // replication files; the caller's apply_parameters reloads them. Returns whether this member
  // is now a replica (then only parameters are applied: the rest arrives by replication).
  // `revision`: the desired state's, recorded as the fencing acknowledgement of a demotion.
  Result<bool> converge_role(const Paths& p, const InstanceConfig& config,
                             const ReplicationSpec* repl, int64_t revision) {
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    auto ctx = backup_context(config, user);
    CONCORD_ASSIGN_OR_RETURN(bool in_recovery, is_in_recovery(p, config));
    if (repl && repl->role == ReplicationSpec::Role::kReplica) {
      if (!in_recovery) {
        // A primary told to follow: made a standby of the new upstream in place, or rebuilt
        // from it when its history holds writes the upstream never saw.
        CONCORD_RETURN_IF_ERROR(demote_in_place(p, config, ctx, *repl, revision));
      } else if (auto current = read_file(p.data + "/concord_replication.conf");
                 current && *current == pg_replication_conf(ctx, repl)) {
        // The same upstream: rebuilt only when it cannot go on from there.
        CONCORD_ASSIGN_OR_RETURN(std::string broken, replica_broken(p, config));
        if (!broken.empty()) {
          CONCORD_RETURN_IF_ERROR(rebuild_replica(p, config, *repl, broken));
        }
      } else {
        // A new upstream (a sibling promoted): followed when its history passes through our
        // position, else rebuilt from it. Checked before the files are rewritten, so an agent
        // killed in between checks again.
        CONCORD_ASSIGN_OR_RETURN(bool follows, can_follow(p, config, ctx, *repl));
        if (!follows) {
          CONCORD_RETURN_IF_ERROR(rebuild_replica(
              p, config, *repl,
              fmt::format("its history forked from upstream {}'s", repl->upstream_instance)));
        } else {
          log_->info("postgresql {}: following upstream {} ({}:{})", config.id,
                     repl->upstream_instance, repl->upstream_address, repl->upstream_port);
        }
      }
      CONCORD_ASSIGN_OR_RETURN(bool changed, pg_write_replication_files(ctx, repl, p.data));
      (void)changed;  // reloaded by apply_parameters
      if (!path_exists(p.data + "/standby.signal")) {
        // Read at the next start only; this one is in recovery already.
        CONCORD_RETURN_IF_ERROR(write_file_atomic(p.data + "/standby.signal", "", 0600, user));
      }
      return true;
    }
    // A replica told it is the primary, or detached to stand alone: promoted first (a new
    // timeline; PostgreSQL removes standby.signal itself), then its files say primary. In this
    // order an agent killed in between finds it still in recovery and promotes again, and a
    // restart in between still finds a standby (never a primary on the old timeline).
    if (in_recovery && (repl || path_exists(p.data + "/standby.signal"))) {
      CONCORD_RETURN_IF_ERROR(promote(p, config));
    }
    // A primary again: an earlier demotion's acknowledgement no longer describes it.
    CONCORD_RETURN_IF_ERROR(remove_tree(p.dir + "/fenced_revision"));
    // Its folder holds the group's history from now on (and every copy of it, pg_basebackup
    // copies the file); a standalone instance's is its own.
    if (!repl) {
      CONCORD_RETURN_IF_ERROR(remove_tree(p.group_marker));
    } else if (!path_exists(p.group_marker)) {
      CONCORD_RETURN_IF_ERROR(write_file_atomic(
          p.group_marker, "Written by Concord: this folder holds a replication group's history.\n",
          0600, user));
    }
    CONCORD_ASSIGN_OR_RETURN(bool changed, pg_write_replication_files(ctx, repl, p.data));
    (void)changed;
    if (repl) {
      CONCORD_ASSIGN_OR_RETURN(bool hba_changed, pg_ensure_replication_hba(ctx));
      (void)hba_changed;  // reloaded by apply_parameters
    }
    return false;
  }

  Result<bool> is_in_recovery(const Paths& p, const InstanceConfig& config) const {
    CONCORD_ASSIGN_OR_RETURN(PgConn admin, connect(p, config, "postgres"));
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> r,
                             column(admin.get(), "SELECT pg_is_in_recovery()"));
    return !r.empty() && r[0] == "t";
  }

  // Health::replication_broken of a standby (in recovery), or "" while it streams.
  Result<std::string> replica_broken(const Paths& p, const InstanceConfig& config) const {
    CONCORD_ASSIGN_OR_RETURN(PgConn admin, connect(p, config, "postgres"));
    CONCORD_ASSIGN_OR_RETURN(
        std::vector<std::string> status,
        column(admin.get(), "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), '')"));
    if (!status.empty() && status[0] == "streaming") return std::string();
    return pg_broken_in_log(file_tail(p.log, kLogTailForBreaks));
  }

  Status promote(const Paths& p, const InstanceConfig& config) {
    CONCORD_ASSIGN_OR_RETURN(PgConn admin, connect(p, config, "postgres"));
    log_->info("postgresql {}: promoting to primary", config.id);
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> r,
                             column(admin.get(), "SELECT pg_promote(true, 60)"));
    if (r.empty() || r[0] != "t") {
      return fail(Code::kDeadlineExceeded,
                  fmt::format("postgresql {}: promotion did not finish within 60 s: {}", config.id,
                              file_tail(p.log, 1000)));
    }
    return ok();
  }

  // Whether this replica (in recovery) can stream from the upstream in `spec`: a copy of the
  // same database system (another host's template is not; instances made from one host's
  // template all are, which kGroupMarker tells apart) whose position the upstream's history
  // passes through. The timeline its replay is on: the latest of its checkpoint's, its minimum
  // recovery point's (a folder just rewound: its checkpoint is the one shared with the
  // upstream, on the old timeline, while it has replayed onto the new one already) and the
  // walreceiver's.
  Result<bool> can_follow(const Paths& p, const InstanceConfig& config, const PgBackupContext& ctx,
                          const ReplicationSpec& spec) const {
    CONCORD_ASSIGN_OR_RETURN(PgConn admin, connect(p, config, "postgres"));
    CONCORD_ASSIGN_OR_RETURN(
        PgResult r,
        run(admin.get(),
            "SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), "
            "greatest((SELECT timeline_id FROM pg_control_checkpoint()), "
            "(SELECT min_recovery_end_timeline FROM pg_control_recovery()), "
            "coalesce((SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1), 0))::text, "
            "(SELECT system_identifier FROM pg_control_system())::text"));
    if (PQntuples(r.get()) != 1) return fail(Code::kInternal, "replay position: no row");
    CONCORD_ASSIGN_OR_RETURN(PgUpstreamTimeline up, pg_upstream_timeline(ctx, spec));
    if (up.system_id != PQgetvalue(r.get(), 0, 2)) {
      log_->info("postgresql {}: database system {}; upstream {}'s is {}: not a copy of it",
                 config.id, PQgetvalue(r.get(), 0, 2), spec.upstream_instance, up.system_id);
      return false;
    }
    uint64_t lsn = 0;
    if (!pg_parse_lsn(PQgetvalue(r.get(), 0, 0), &lsn)) return true;  // nothing replayed yet
    auto timeline = static_cast<uint32_t>(std::strtoul(PQgetvalue(r.get(), 0, 1), nullptr, 10));
    bool follows = pg_can_follow(timeline, lsn, up.timeline, up.history);
    log_->info("postgresql {}: at timeline {} {}; upstream {} at timeline {}: {}", config.id,
               timeline, PQgetvalue(r.get(), 0, 0), spec.upstream_instance, up.timeline,
               follows ? "can follow" : "forked, must rebuild");
    return follows;
  }

  // A primary told to follow `spec`'s upstream, made its standby without a copy: stopped
  // cleanly (a fast shutdown first sends its replicas all it wrote, so the replica about to be
  // promoted has its whole history), the new upstream's files and standby.signal written while
  // it is stopped (no start can run it as a primary again), the demotion acknowledged
  // (fenced_revision, for the service's promotion of the upstream), then started in recovery.
  // Its slots go while it is stopped: on a standby a slot still keeps WAL, here for nobody, and
  // dropped by SQL after the start it could be in use again already (the member about to be
  // promoted streams from it, cascading, until its promotion). Its history may still hold
  // writes the upstream never saw (a crash before its standby received them, a replica promoted
  // while it lagged): when the upstream is promoted already, that is checked at once against
  // its timeline history and such a member is rebuilt from it; otherwise PostgreSQL itself
  // refuses to follow a timeline that forked before its position, which its health reports as
  // replication_broken and the agent's maintenance round rebuilds (pg_broken_in_log). A folder
  // without kGroupMarker (a template copy a rebuild cut short left) is rebuilt at once.
  Status demote_in_place(const Paths& p, const InstanceConfig& config, const PgBackupContext& ctx,
                         const ReplicationSpec& spec, int64_t revision) {
    if (!path_exists(p.group_marker)) {
      // Every instance starts as a copy of the same initdb template, so PostgreSQL cannot tell
      // such a folder from a member of the group (the same system identifier, timeline 1): as
      // a standby it would replay the upstream's WAL over data that never held it.
      return rebuild_replica(p, config, spec,
                             "its folder holds no history of the group's (a template copy, or a "
                             "standalone instance)",
                             revision);
    }
    log_->info("postgresql {}: demoted at revision {}: following {} ({}:{}) in place", config.id,
               revision, spec.upstream_instance, spec.upstream_address, spec.upstream_port);
    CONCORD_RETURN_IF_ERROR(stop(config, milliseconds(10000)));
    CONCORD_RETURN_IF_ERROR(remove_concord_slots(p, config));
    CONCORD_ASSIGN_OR_RETURN(bool changed, pg_write_replication_files(ctx, &spec, p.data));
    (void)changed;  // read by the start below
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.data + "/standby.signal", "", 0600, ctx.user));
    CONCORD_RETURN_IF_ERROR(write_fenced_revision(p.dir, revision));
    log_->info("postgresql {}: fenced at revision {} (stopped; restarting as a standby)", config.id,
               revision);
    CONCORD_RETURN_IF_ERROR(start(config));
    auto follows = can_follow(p, config, ctx, spec);
    if (!follows) {
      // Not decided here (the upstream unreachable, say): PostgreSQL's own check stands.
      log_->warn("postgresql {}: cannot compare histories with {} yet: {}", config.id,
                 spec.upstream_instance, follows.error().to_string());
      return ok();
    }
    if (*follows) return ok();
    return rebuild_replica(
        p, config, spec,
        fmt::format("it cannot follow upstream {} from where it stands", spec.upstream_instance));
  }

  // Stop; a folder of the group is rewound onto the upstream's history (rewind_replica), and
  // when that cannot be done: set the folder aside, clone from the upstream, start. The old folder
  // is removed once the new one is complete (pg_clone_data); a failed clone leaves no data folder,
  // which the next apply (or clone_from) finishes; the copy answers kUnavailable (retried) while
  // the upstream cannot serve it yet. `demoted_at`: the revision that made this primary a replica
  // (0: a replica made anew), recorded as its fencing acknowledgement once the folder is set
  // aside (no start can run it as a primary then), before the copy.
  Status rebuild_replica(const Paths& p, const InstanceConfig& config, const ReplicationSpec& spec,
                         std::string_view why, int64_t demoted_at = 0) {
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    // Until the rebuild is done no revision counts as applied, so a start after an interrupted
    // one applies the state again (which rebuilds) instead of running what prepare left.
    CONCORD_RETURN_IF_ERROR(remove_tree(p.dir + "/applied_revision"));
    CONCORD_RETURN_IF_ERROR(stop(config, milliseconds(10000)));
    if (path_exists(p.data) && path_exists(p.group_marker)) {
      CONCORD_ASSIGN_OR_RETURN(bool rewound, rewind_replica(p, config, spec, why, demoted_at));
      if (rewound) return ok();
    }
    log_->warn("postgresql {}: rebuilding from upstream {}: {}", config.id, spec.upstream_instance,
               why);
    const std::string old = p.dir + "/data.old";
    if (path_exists(p.data)) {
      CONCORD_RETURN_IF_ERROR(remove_tree(old));
      if (::rename(p.data.c_str(), old.c_str()) != 0) {
        return fail(Code::kInternal, fmt::format("rename {}: {}", p.data, std::strerror(errno)));
      }
    }
    if (demoted_at > 0) {
      CONCORD_RETURN_IF_ERROR(write_fenced_revision(p.dir, demoted_at));
      log_->info("postgresql {}: fenced at revision {} (stopped; its folder set aside)", config.id,
                 demoted_at);
    }
    CONCORD_RETURN_IF_ERROR(pg_clone_data(backup_context(config, user), spec));
    CONCORD_RETURN_IF_ERROR(prepare(config));
    return start(config);
  }

  // The first choice of rebuild_replica for a folder of the group (kGroupMarker) that forked from
  // the upstream: pg_rewind takes it back to the fork and onto the upstream's history, copying
  // only what changed since, where a rebuild copies everything. Stopped already. The folder is
  // made a fenced standby before anything else (standby.signal, the fencing acknowledgement),
  // then rewound under another name (data.rewind), so that an agent killed mid-rewind leaves no
  // `data` folder: the next apply or clone_from copies anew, and a half-rewound folder is never
  // started. Returns false when a copy is needed instead (pg_rewind failed or found no fork,
  // as for a replica whose upstream lost the WAL it needs, or the result cannot follow either),
  // with the folder set aside as data.old; kUnavailable when the upstream cannot be reached,
  // with the folder back and started as a standby, so the next round tries again.
  Result<bool> rewind_replica(const Paths& p, const InstanceConfig& config,
                              const ReplicationSpec& spec, std::string_view why,
                              int64_t demoted_at) {
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    auto ctx = backup_context(config, user);
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.data + "/standby.signal", "", 0600, user));
    CONCORD_RETURN_IF_ERROR(remove_concord_slots(p, config));
    if (demoted_at > 0) {
      CONCORD_RETURN_IF_ERROR(write_fenced_revision(p.dir, demoted_at));
      log_->info("postgresql {}: fenced at revision {} (stopped, a standby)", config.id,
                 demoted_at);
    }
    log_->warn("postgresql {}: rewinding onto upstream {}: {}", config.id, spec.upstream_instance,
               why);
    const std::string rewinding = p.dir + "/data.rewind";
    const std::string old = p.dir + "/data.old";
    auto move = [](const std::string& from, const std::string& to) -> Status {
      if (::rename(from.c_str(), to.c_str()) != 0) {
        return fail(Code::kInternal, fmt::format("rename {}: {}", from, std::strerror(errno)));
      }
      return ok();
    };
    CONCORD_RETURN_IF_ERROR(remove_tree(rewinding));
    CONCORD_RETURN_IF_ERROR(move(p.data, rewinding));
    auto rewound = pg_rewind_data(ctx, spec, rewinding);
    if (!rewound && rewound.error().code() == Code::kUnavailable) {
      CONCORD_RETURN_IF_ERROR(move(rewinding, p.data));
      if (auto st = start(config); !st) {
        log_->warn("postgresql {}: restarting as a standby: {}", config.id, st.error().message());
      }
      return fail(rewound.error());
    }
    if (!rewound || *rewound == PgRewind::kNothingToRewind) {
      log_->warn("postgresql {}: no rewind: {}", config.id,
                 rewound ? "pg_rewind found no fork" : rewound.error().message());
      CONCORD_RETURN_IF_ERROR(remove_tree(old));
      CONCORD_RETURN_IF_ERROR(move(rewinding, old));
      return false;
    }
    CONCORD_RETURN_IF_ERROR(move(rewinding, p.data));
    CONCORD_RETURN_IF_ERROR(prepare(config));
    auto started = start(config);
    auto follows = started ? can_follow(p, config, ctx, spec) : Result<bool>(false);
    if (follows && !*follows) {
      log_->warn("postgresql {}: rewound but {}", config.id,
                 started ? "still cannot follow " + spec.upstream_instance
                         : "does not start: " + started.error().message());
      CONCORD_RETURN_IF_ERROR(stop(config, milliseconds(10000)));
      CONCORD_RETURN_IF_ERROR(remove_tree(old));
      CONCORD_RETURN_IF_ERROR(move(p.data, old));
      return false;
    }
    // A warning as "rebuilding from upstream" is: an operator reads both to see what a fork
    // cost.
    log_->warn(
        "postgresql {}: rewound onto upstream {} ({}:{}): only what changed since the fork "
        "was copied",
        config.id, spec.upstream_instance, spec.upstream_address, spec.upstream_port);
    return true;
  }

  // A replica's apply after its parameters: no databases, users or root (read-only; they
  // arrive from the primary), but the names the group's state lists are recorded as Concord's,
  // so that after a promotion a name the API removes is dropped like on any primary.
  Status finish_replica_apply(const Paths& p, const InstanceConfig& config,
                              const DesiredState& state) {
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    auto ctx = backup_context(config, user);
    pg_cleanup_after_recovery(ctx);
    CONCORD_ASSIGN_OR_RETURN(bool archiving_changed,
                             pg_configure_archiving(ctx, state.archive_logs));
    if (archiving_changed) {
      CONCORD_ASSIGN_OR_RETURN(PgConn admin, connect(p, config, "postgres"));
      CONCORD_RETURN_IF_ERROR(exec(admin.get(), "SELECT pg_reload_conf()"));
    }
    ManagedNames names;
    for (const auto& d : state.databases) names.databases.insert(d.name);
    for (const auto& u : state.users) names.accounts.insert(u.name);
    if (state.root) names.accounts.insert("root");
    CONCORD_RETURN_IF_ERROR(write_managed_names(p.dir, names));
    CONCORD_RETURN_IF_ERROR(write_applied_revision(p.dir, state.revision));
    log_->info("postgresql {}: applied revision {} (replica of {})", config.id, state.revision,
               state.replication->upstream_instance);
    return ok();
  }

  // The replication account with the verifier of `secret`; left alone when it already has it
  // (a fresh verifier has a fresh salt, so comparing texts would rewrite it on every apply).
  Status ensure_replication_account(PGconn* c, const InstanceConfig& config,
                                    const std::string& secret) const {
    const std::string name(kReplicationUser);
    CONCORD_ASSIGN_OR_RETURN(PgResult r,
                             run(c,
                                 "SELECT coalesce(rolpassword, ''), rolreplication, rolcanlogin, "
                                 "rolsuper FROM pg_authid WHERE rolname = " +
                                     literal(c, name)));
    bool exists = PQntuples(r.get()) == 1;
    if (!exists || std::string_view(PQgetvalue(r.get(), 0, 1)) != "t" ||
        std::string_view(PQgetvalue(r.get(), 0, 2)) != "t" ||
        std::string_view(PQgetvalue(r.get(), 0, 3)) != "f" ||
        !verifier_matches(PQgetvalue(r.get(), 0, 0), secret)) {
      CONCORD_RETURN_IF_ERROR(
          exec(c, fmt::format("{} ROLE {} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB "
                              "NOCREATEROLE PASSWORD {}",
                              exists ? "ALTER" : "CREATE", ident(c, name),
                              literal(c, postgres_scram_verifier(secret)))));
      log_->info("postgresql {}: replication account {}", config.id,
                 exists ? "updated" : "created");
    }
    // What pg_rewind calls on the upstream (rewind_replica), as its manual lists for a
    // non-superuser: the account reads the data folder's files, as its base backups do already;
    // and CHECKPOINT (pg_checkpoint), which the rewind runs on the upstream first.
    static constexpr std::string_view kRewindFunctions[] = {
        "pg_catalog.pg_ls_dir(text, boolean, boolean)",
        "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)",
        "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
    };
    std::string functions, checks;
    for (std::string_view f : kRewindFunctions) {
      functions += (functions.empty() ? "" : ", ") + std::string(f);
      checks +=
          fmt::format("{}has_function_privilege({}, {}, 'EXECUTE')", checks.empty() ? "" : " AND ",
                      literal(c, name), literal(c, std::string(f)));
    }
    checks += fmt::format(" AND pg_has_role({}, 'pg_checkpoint', 'MEMBER')", literal(c, name));
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> granted, column(c, "SELECT " + checks));
    if (granted.empty() || granted[0] != "t") {
      CONCORD_RETURN_IF_ERROR(
          exec(c, fmt::format("GRANT EXECUTE ON FUNCTION {} TO {}", functions, ident(c, name))));
      CONCORD_RETURN_IF_ERROR(exec(c, "GRANT pg_checkpoint TO " + ident(c, name)));
      log_->info("postgresql {}: replication account may run pg_rewind", config.id);
    }
    return ok();
  }

  // "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" made from `secret`?
  static bool verifier_matches(std::string_view stored, std::string_view secret) {
    constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
    if (!stored.starts_with(kPrefix)) return false;
    std::string_view rest = stored.substr(kPrefix.size());
    size_t colon = rest.find(':');
    size_t dollar = rest.find('$');
    if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar) {
      return false;
    }
    int iterations = std::atoi(std::string(rest.substr(0, colon)).c_str());
    std::string b64(rest.substr(colon + 1, dollar - colon - 1));
    if (iterations <= 0 || b64.empty() || b64.size() % 4 != 0) return false;
    std::string salt(b64.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(salt.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()),
                            static_cast<int>(b64.size()));
    if (n < 0) return false;
    size_t pad = b64.ends_with("==") ? 2 : b64.ends_with("=") ? 1 : 0;
    salt.resize(static_cast<size_t>(n) - pad);
    return postgres_scram_verifier_with_salt(secret, salt, iterations) == stored;
  }

  // Concord's slots of a stopped instance (their folders in pg_replslot: a slot is its folder,
  // read at the next start).
  Status remove_concord_slots(const Paths& p, const InstanceConfig& config) const {
    const std::string dir = p.data + "/pg_replslot";
    for (const auto& name : compute::driver::list_subdirs(dir)) {
      if (!name.starts_with(kPgSlotPrefix)) continue;
      CONCORD_RETURN_IF_ERROR(remove_tree(dir + "/" + name));
      log_->info("postgresql {}: removed replication slot {}", config.id, name);
    }
    return ok();
  }

  // One physical slot per listed replica, made when missing; Concord's slots of members no
  // longer listed are dropped once nothing streams from them (an active one is a replica still
  // being detached: the next apply drops it).
  Status converge_slots(PGconn* c, const InstanceConfig& config,
                        const std::vector<std::string>& replicas) const {
    std::set<std::string> wanted;
    for (const auto& id : replicas) wanted.insert(pg_slot_name(id));
    CONCORD_ASSIGN_OR_RETURN(
        PgResult r, run(c,
                        "SELECT slot_name, active FROM pg_replication_slots WHERE slot_type "
                        "= 'physical' AND starts_with(slot_name, " +
                            literal(c, std::string(kPgSlotPrefix)) + ")"));
    std::set<std::string> have;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      std::string slot = PQgetvalue(r.get(), i, 0);
      have.insert(slot);
      if (wanted.contains(slot)) continue;
      if (std::string_view(PQgetvalue(r.get(), i, 1)) == "t") {
        log_->info("postgresql {}: slot {} is still in use; dropped at a later apply", config.id,
                   slot);
        continue;
      }
      CONCORD_RETURN_IF_ERROR(exec(c, "SELECT pg_drop_replication_slot(" + literal(c, slot) + ")"));
      log_->info("postgresql {}: dropped replication slot {}", config.id, slot);
    }
    for (const auto& slot : wanted) {
      if (have.contains(slot)) continue;
      // Reserved at once: WAL from now on is kept for the replica even before it connects.
      CONCORD_RETURN_IF_ERROR(
          exec(c, "SELECT pg_create_physical_replication_slot(" + literal(c, slot) + ", true)"));
      log_->info("postgresql {}: created replication slot {}", config.id, slot);
    }
    return ok();
  }

  Status validate_state(const DesiredState& state) const {
    std::set<std::string> seen;
    for (const auto& d : state.databases) {
      CONCORD_RETURN_IF_ERROR(check_identifier("database", d.name, kMaxIdentifierBytes));
      if (d.name == "postgres" || d.name == "template0" || d.name == "template1") {
        return fail(Code::kInvalidArgument,
                    fmt::format("database name '{}' is reserved by PostgreSQL", d.name));
      }
      if (!seen.insert(d.name).second) {
        return fail(Code::kInvalidArgument, fmt::format("database '{}' listed twice", d.name));
      }
    }
    seen.clear();
    for (const auto& u : state.users) {
      CONCORD_RETURN_IF_ERROR(check_identifier("user", u.name, kMaxIdentifierBytes));
      std::string lower = u.name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (u.name == options_.os_user || u.name == "root" || lower.starts_with("pg_") ||
          lower == "public" || lower == "none" || lower == "current_user" ||
          lower == "session_user" || lower == "current_role" || lower == "postgres" ||
          lower == kReplicationUser) {
        return fail(Code::kInvalidArgument,
                    fmt::format("user name '{}' is reserved on PostgreSQL instances", u.name));
      }
      if (!seen.insert(u.name).second) {
        return fail(Code::kInvalidArgument, fmt::format("user '{}' listed twice", u.name));
      }
      CONCORD_RETURN_IF_ERROR(check_verifier(u.name, u.verifier));
      for (const auto& d : u.databases) {
        bool known = std::any_of(state.databases.begin(), state.databases.end(),
                                 [&](const DatabaseSpec& s) { return s.name == d; });
        if (!known) {
          return fail(
              Code::kInvalidArgument,
              fmt::format("user '{}' is granted database '{}', which is not listed", u.name, d));
        }
      }
    }
    if (state.root) CONCORD_RETURN_IF_ERROR(check_verifier("root", state.root->verifier));
    return ok();
  }

  // Only a SCRAM verifier: anything else PostgreSQL would take as a clear password and hash.
  static Status check_verifier(std::string_view user, std::string_view verifier) {
    if (!verifier.starts_with("SCRAM-SHA-256$") || verifier.find('$', 14) == std::string::npos) {
      return fail(Code::kInvalidArgument,
                  fmt::format("user '{}': the verifier is not a PostgreSQL SCRAM-SHA-256 "
                              "verifier",
                              user));
    }
    return ok();
  }

  Result<PgConn> connect(const Paths& p, const InstanceConfig& config, const std::string& db,
                         int timeout_s = 5) const {
    const std::string port = std::to_string(config.port);
    const std::string timeout = std::to_string(timeout_s);
    const char* keys[] = {"host", "port", "user", "dbname", "connect_timeout", "application_name",
                          nullptr};
    const char* values[] = {p.run.c_str(), port.c_str(),    options_.os_user.c_str(),
                            db.c_str(),    timeout.c_str(), "concord-agent",
                            nullptr};
    PgConn conn(PQconnectdbParams(keys, values, 0));
    if (!conn) return fail(Code::kInternal, "libpq: out of memory");
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(conn.get());
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      return fail(
          Code::kUnavailable,
          fmt::format("postgresql {}: admin connection to '{}' failed: {}", config.id, db, msg));
    }
    return conn;
  }

  static Result<PgResult> run(PGconn* c, const std::string& sql) {
    PgResult r(PQexec(c, sql.c_str()));
    if (!r) return fail(Code::kUnavailable, "libpq: no result (connection lost?)");
    auto st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      std::string msg = PQresultErrorMessage(r.get());
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      return fail(code_for_sqlstate(PQresultErrorField(r.get(), PG_DIAG_SQLSTATE)),
                  fmt::format("postgresql: {}", msg));
    }
    return r;
  }
  static Status exec(PGconn* c, const std::string& sql) {
    CONCORD_ASSIGN_OR_RETURN(PgResult r, run(c, sql));
    (void)r;
    return ok();
  }
  static Result<std::vector<std::string>> column(PGconn* c, const std::string& sql) {
    CONCORD_ASSIGN_OR_RETURN(PgResult r, run(c, sql));
    std::vector<std::string> out;
    for (int i = 0; i < PQntuples(r.get()); ++i) out.emplace_back(PQgetvalue(r.get(), i, 0));
    return out;
  }
  // PQescapeIdentifier/Literal fail only on invalid encoding or out of memory; the empty
  // quoted forms then make the statement fail loudly rather than run with something else.
  static std::string ident(PGconn* c, const std::string& name) {
    char* q = PQescapeIdentifier(c, name.data(), name.size());
    if (q == nullptr) return "\"\"";
    std::string out(q);
    PQfreemem(q);
    return out;
  }
  static std::string literal(PGconn* c, const std::string& value) {
    char* q = PQescapeLiteral(c, value.data(), value.size());
    if (q == nullptr) return "NULL";
    std::string out(q);
    PQfreemem(q);
    return out;
  }

  Status disown(PGconn* c, const std::vector<std::string>& roles) const {
    for (const auto& r : roles) {
      CONCORD_RETURN_IF_ERROR(
          exec(c, "REASSIGN OWNED BY " + ident(c, r) + " TO " + ident(c, options_.os_user)));
      CONCORD_RETURN_IF_ERROR(exec(c, "DROP OWNED BY " + ident(c, r)));
    }
    return ok();
  }

  EngineOptions options_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

Result<std::unique_ptr<Engine>> make_postgres_engine(const EngineOptions& options) {
  if (options.os_user.empty() || options.os_user == "root") {
    return fail(Code::kInvalidArgument,
                "postgresql engine: os_user must name an unprivileged user (PostgreSQL refuses "
                "to run as root)");
  }
  if (options.start_timeout.count() < 1) {
    return fail(Code::kInvalidArgument, "postgresql engine: start_timeout must be positive");
  }
  return std::unique_ptr<Engine>(std::make_unique<PostgresEngine>(options));
}

std::vector<std::string> engine_names() {
  return {"postgresql", "mariadb"};
}

}  // namespace concord::database::engine

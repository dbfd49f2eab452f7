// MariaDB engine: one mariadbd per instance, run as the engine user from the Debian binaries.
//
// Instance folder (owned by the engine user, 0700):
//   data/        a copy of the host's mariadb-install-db template for this version
//                (clone_from_template: made beside it, renamed when complete)
//   my.cnf       the only option file the server reads (--defaults-file), rewritten by prepare
//   run/         mysqld.sock and mariadbd.pid (0700: only the engine user and root reach it)
//   tmp/         the server's tmpdir (temporary tables, also during mariadb-install-db)
//   tls/server.{crt,key}  the per-instance self-signed certificate
//   engine.log   log-error plus the server's stderr; engine.pid the pid we launched
//   applied_revision, fenced_revision (Health::fenced_revision)
//   binlog/, concord_binlog.cnf  binary logs for point-in-time restore (mariadb_backup.h)
//   concord_replication.cnf, concord_role.cnf, replication_role, replication_upstream
//                read replicas (mariadb_replication.h)
//
// Administration: the `mariadb` client over the socket as OS root, which the unix_socket plugin
// maps to root@localhost (mariadb-install-db --auth-root-authentication-method=socket), so no
// administrative password exists. The client is fed the SQL on stdin, so verifiers never show
// in `ps`. Names read back from the server come hex-encoded, so no output parsing can be
// fooled by a name holding tabs or newlines.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "base/encoding.h"
#include "base/log.h"
#include "database/engine/engine.h"
#include "database/engine/engine_common.h"
#include "database/engine/mariadb_backup.h"
#include "database/engine/mariadb_common.h"
#include "database/engine/mariadb_replication.h"
#include "database/engine/parameters.h"
#include "fmt/format.h"

namespace concord::database::engine {
namespace {

using namespace detail;  // NOLINT(build/namespaces): the engine's own helpers
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxDatabaseBytes = 64;
constexpr size_t kMaxUserChars = 80;
constexpr size_t kMaxHostChars = 255;
constexpr milliseconds kKillWait{10000};
constexpr milliseconds kStartPoll{15};
constexpr milliseconds kAdminTimeout{60000};

struct Paths {
  explicit Paths(const std::string& d)
      : dir(d),
        data(d + "/data"),
        data_tmp(d + "/data.tmp"),
        run(d + "/run"),
        sock(d + "/run/mysqld.sock"),
        server_pid(d + "/run/mariadbd.pid"),
        tmp(d + "/tmp"),
        tls(d + "/tls"),
        cnf(d + "/my.cnf"),
        log(d + "/engine.log"),
        pidfile(d + "/engine.pid") {}
  std::string dir, data, data_tmp, run, sock, server_pid, tmp, tls, cnf, log, pidfile;
};

// `name` as an identifier: backticks, any backtick doubled.
std::string ident(std::string_view name) {
  std::string out = "`";
  for (char c : name) {
    out += c;
    if (c == '`') out += '`';
  }
  return out + "`";
}

// A database name as a GRANT target: `_` and `%` are wildcards there, so a name holding them
// would also grant its look-alikes unless escaped.
std::string grant_db(std::string_view name) {
  std::string escaped;
  for (char c : name) {
    if (c == '_' || c == '%' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return ident(escaped);
}

std::string account(std::string_view user, std::string_view host) {
  return mdb_literal(user) + "@" + mdb_literal(host);
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The mariadb client's "ERROR 1064 (42000) at line 1: ..." by SQLSTATE class, as for
// PostgreSQL; 2002/2013 (cannot connect, lost connection) are transient.
Code code_for_client_error(const std::string& err) {
  if (err.find("ERROR 2002") != std::string::npos || err.find("ERROR 2013") != std::string::npos ||
      err.find("ERROR 2006") != std::string::npos) {
    return Code::kUnavailable;
  }
  auto open = err.find(" (");
  if (open != std::string::npos && err.size() > open + 4) {
    std::string_view state(err.data() + open + 2, 2);
    if (state == "42" || state == "22" || state == "HY") return Code::kInvalidArgument;
    if (state == "08") return Code::kUnavailable;
  }
  return Code::kInternal;
}

class MariadbEngine final : public Engine {
 public:
  explicit MariadbEngine(EngineOptions options)
      : options_(std::move(options)), log_(logger("database.engine")) {}

  std::string_view name() const override { return "mariadb"; }

  Status probe(std::string_view version) override {
    for (const std::string& path : {server_bin(), install_bin(), client_bin()}) {
      if (::access(path.c_str(), X_OK) != 0) {
        return fail(Code::kFailedPrecondition,
                    fmt::format("MariaDB {}: {} is missing or not executable", version, path));
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
    CONCORD_RETURN_IF_ERROR(make_dir(p.tmp, 0700, user));
    const bool new_data = !path_exists(p.data);
    if (new_data) {
      // New data: nothing of an earlier desired state is applied to it.
      CONCORD_RETURN_IF_ERROR(remove_tree(p.dir + "/applied_revision"));
      CONCORD_RETURN_IF_ERROR(remove_tree(p.data_tmp));  // left by stage 1's in-place install
      CONCORD_RETURN_IF_ERROR(fresh_data(config, user, p.data));
    }
    CONCORD_RETURN_IF_ERROR(ensure_tls(p.tls, config, user));
    // Memory and binlog files sized to the flavor and the volume (parameters.h), in bytes.
    auto defaults = default_parameters("mariadb", config.ram_mb, config.volume_gb);
    std::string cnf = fmt::format(
        "# Written by Concord for database instance {}; rewritten on every prepare.\n"
        "[mariadbd]\n"
        "datadir = {}\n"
        "socket = {}\n"
        "pid-file = {}\n"
        "tmpdir = {}\n"
        "bind-address = {}\n"
        "port = {}\n"
        "log-error = {}\n"
        "general_log_file = {}\n"  // guest_logs.h: the logs a tenant may publish
        "slow_query_log_file = {}\n"
        "ssl-cert = {}\n"
        "ssl-key = {}\n"
        "innodb_buffer_pool_size = {}\n"
        "max_binlog_size = {}\n"
        "max_connections = {}\n"
        "skip-name-resolve\n"
        "proxy-protocol-networks = {}\n"
        "character-set-server = {}\n"
        "collation-server = {}\n"
        "!include {}\n"  // binary logs for point-in-time restore (mariadb_backup.cc)
        // After the binlog file: its server_id is replaced by the instance's own.
        "!include {}\n"  // replication identity (mariadb_replication.cc)
        "!include {}\n"  // the replication role's start-up values
        // Last, so the configuration group's values win over the defaults above.
        "!include {}\n",
        config.id, p.data, p.sock, p.server_pid, p.tmp, config.address, config.port, p.log,
        p.dir + "/general.log", p.dir + "/slow.log", p.tls + "/server.crt", p.tls + "/server.key",
        defaults["innodb_buffer_pool_size"], defaults["max_binlog_size"],
        defaults["max_connections"], options_.proxy_networks, defaults["character_set_server"],
        defaults["collation_server"], p.dir + "/concord_binlog.cnf",
        p.dir + "/concord_replication.cnf", p.dir + "/concord_role.cnf", params_path(p));
    if (!path_exists(params_path(p))) {
      CONCORD_RETURN_IF_ERROR(write_file_atomic(params_path(p), params_text({}), 0600, user));
    }
    CONCORD_RETURN_IF_ERROR(mdb_configure_binlog(backup_context(config, user), new_data));
    CONCORD_RETURN_IF_ERROR(mdb_configure_replication(repl_context(config, user), new_data));
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.cnf, cnf, 0600, user));
    return ok();
  }

  Status start(const InstanceConfig& config) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    Paths p(config.dir);
    if (!path_exists(p.data) || !path_exists(p.cnf)) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("database instance {} is not prepared (no data folder or my.cnf)",
                              config.id));
    }
    EngineStart start{
        .what = "mariadb " + config.id,
        .log_path = p.log,
        .launch = [&]() -> Result<pid_t> {
          reap_stale_group(p.pidfile);
          std::string why_unlimited;
          auto procs = apply_limits(options_, config, &why_unlimited);
          if (!why_unlimited.empty()) {
            log_->warn("mariadb {} runs without cgroup limits: {}", config.id, why_unlimited);
          }
          CONCORD_RETURN_IF_ERROR(snapshot_started_params(p));
          CONCORD_ASSIGN_OR_RETURN(
              pid_t pid,
              spawn_detached({server_bin(), "--defaults-file=" + p.cnf}, user, p.log, procs));
          CONCORD_RETURN_IF_ERROR(write_file_atomic(p.pidfile, std::to_string(pid) + "\n"));
          log_->info("mariadb {} launched pid={}", config.id, pid);
          return pid;
        },
        // A client run only once the socket exists: before that it could only be refused.
        .probe = [&]() -> Status {
          if (!path_exists(p.sock)) return fail(Code::kUnavailable, "its socket is not there yet");
          CONCORD_ASSIGN_OR_RETURN(std::string out, admin(p, probe_sql(), milliseconds(5000)));
          (void)out;
          return ok();
        },
        .timeout = options_.start_timeout,
        .poll = kStartPoll};
    Status started = wait_started(live_pid(p), start);
    if (!started && mdb_truncation_refused(file_tail(p.log, 8192))) {
      log_->warn(
          "mariadb {}: its recovery as a replica could not cut the commits it never had "
          "acknowledged (a statement that cannot be rolled back follows them): started again "
          "committing them; it is copied anew once its upstream is known",
          config.id);
      CONCORD_RETURN_IF_ERROR(mdb_forgo_truncation(repl_context(config, user)));
      started = wait_started(live_pid(p), start);
    }
    return started;
  }

  Status stop(const InstanceConfig& config, milliseconds grace) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    Paths p(config.dir);
    pid_t pid = live_pid(p);
    if (pid != 0) {
      if (grace.count() > 0) {
        ::kill(pid, SIGTERM);  // clean shutdown
        if (!wait_gone(pid, grace)) {
          log_->info("mariadb {} did not stop within {} ms, killing", config.id, grace.count());
        }
      }
      if (process_alive(pid) && !kill_hard(pid, kKillWait)) {
        return fail(Code::kDeadlineExceeded,
                    fmt::format("mariadb pid {} of instance {} survived SIGKILL", pid, config.id));
      }
    }
    reap_stale_group(p.pidfile);
    (void)remove_tree(p.pidfile);
    return ok();
  }

  Status apply(const InstanceConfig& config, const DesiredState& state) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_RETURN_IF_ERROR(validate_state(state));
    CONCORD_RETURN_IF_ERROR(validate_parameters("mariadb", config.version, state.parameters));
    CONCORD_RETURN_IF_ERROR(check_parameters_fit("mariadb", state.parameters, config.ram_mb));
    Paths p(config.dir);
    if (live_pid(p) == 0) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("mariadb {} is not running; cannot apply revision {}", config.id,
                              state.revision));
    }
    {
      CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
      const ReplicationSpec* spec = state.replication ? &*state.replication : nullptr;
      if (spec != nullptr && spec->role == ReplicationSpec::Role::kReplica) {
        const auto ctx = repl_context(config, user);
        if (const std::string role = mdb_recorded_role(p.dir); role == "primary") {
          CONCORD_RETURN_IF_ERROR(demote_in_place(config, *spec, state.revision, user));
        } else if (role != "replica") {
          // A template copy (a new folder, or a rebuild cut short) never took the group's
          // writes: copied.
          CONCORD_RETURN_IF_ERROR(rebuild_as_replica(
              config, *spec, "its data is not a copy of the upstream (a new folder)"));
        }
        CONCORD_ASSIGN_OR_RETURN(std::string broken, mdb_replica_broken(ctx, *spec));
        if (broken.empty()) {
          // A new upstream (after a demotion, a sibling's promotion): only once it is writable
          // and has every transaction this member has.
          CONCORD_ASSIGN_OR_RETURN(broken, mdb_cannot_follow(ctx, *spec));
        }
        if (!broken.empty()) CONCORD_RETURN_IF_ERROR(rebuild_as_replica(config, *spec, broken));
        return apply_replica(config, state, user);
      }
      // A primary (promoted when it was a replica) or standalone: replication first, so a
      // promoted member stops following and accepts writes before the users are converged.
      CONCORD_RETURN_IF_ERROR(mdb_apply_primary(repl_context(config, user), spec));
      // A primary again: an earlier demotion's acknowledgement no longer describes it.
      CONCORD_RETURN_IF_ERROR(remove_tree(p.dir + "/fenced_revision"));
    }
    CONCORD_ASSIGN_OR_RETURN(
        std::string dbs_text,
        admin(p, "SELECT HEX(schema_name) FROM information_schema.schemata", kAdminTimeout));
    CONCORD_ASSIGN_OR_RETURN(
        std::string users_text,
        admin(p, "SELECT HEX(user), HEX(host) FROM mysql.user WHERE is_role = 'N'", kAdminTimeout));
    std::set<std::string> have_dbs;
    for (const auto& row : rows(dbs_text)) {
      if (!row.empty() && !system_schema(row[0])) have_dbs.insert(row[0]);
    }
    std::set<std::pair<std::string, std::string>> have_users;
    for (const auto& row : rows(users_text)) {
      if (row.size() == 2) have_users.emplace(row[0], row[1]);
    }

    // Only what Concord made and the API since removed is dropped (ManagedNames).
    const ManagedNames managed = read_managed_names(p.dir);
    ManagedNames made;
    std::string sql;
    std::set<std::string> wanted_dbs;
    for (const auto& d : state.databases) wanted_dbs.insert(d.name);
    for (const auto& d : have_dbs) {
      if (!wanted_dbs.contains(d) && managed.databases.contains(d)) {
        sql += "DROP DATABASE IF EXISTS " + ident(d) + ";\n";
      }
    }
    made.databases = wanted_dbs;
    for (const auto& d : state.databases) {
      if (have_dbs.contains(d.name)) continue;
      sql += "CREATE DATABASE IF NOT EXISTS " + ident(d.name);
      if (!d.character_set.empty()) sql += " CHARACTER SET " + mdb_literal(d.character_set);
      if (!d.collate.empty()) sql += " COLLATE " + mdb_literal(d.collate);
      sql += ";\n";
    }
    std::set<std::pair<std::string, std::string>> wanted_users;
    for (const auto& u : state.users) {
      wanted_users.emplace(u.name, u.host);
      made.accounts.insert(u.name + "@" + u.host);
      const std::string acct = account(u.name, u.host);
      sql += "CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY PASSWORD " +
             mdb_literal(u.verifier) + ";\n";
      sql += "ALTER USER " + acct + " IDENTIFIED BY PASSWORD " + mdb_literal(u.verifier) + ";\n";
      sql += "REVOKE ALL PRIVILEGES, GRANT OPTION FROM " + acct + ";\n";
      for (const auto& d : u.databases) {
        sql += "GRANT ALL PRIVILEGES ON " + grant_db(d) + ".* TO " + acct + ";\n";
      }
    }
    if (state.root) {
      const std::string acct = account("root", "%");
      sql += "CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY PASSWORD " +
             mdb_literal(state.root->verifier) + ";\n";
      sql += "ALTER USER " + acct + " IDENTIFIED BY PASSWORD " + mdb_literal(state.root->verifier) +
             ";\n";
      sql += "GRANT ALL PRIVILEGES ON *.* TO " + acct + " WITH GRANT OPTION;\n";
      // Everything but writing on a read-only server: a replica's, or a demoted primary's
      // (its fence). Without READ ONLY ADMIN root cannot turn read_only off either.
      sql += "REVOKE READ ONLY ADMIN ON *.* FROM " + acct + ";\n";
      made.accounts.insert("root@%");
    } else if (managed.accounts.contains("root@%")) {
      sql += "DROP USER IF EXISTS " + account("root", "%") + ";\n";
    }
    for (const auto& [u, h] : have_users) {
      if (wanted_users.contains({u, h}) || protected_account(u, h) || (u == "root" && h == "%") ||
          !managed.accounts.contains(u + "@" + h)) {
        continue;
      }
      sql += "DROP USER IF EXISTS " + account(u, h) + ";\n";
    }
    CONCORD_ASSIGN_OR_RETURN(std::string params_sql, write_parameters(p, config, state));
    sql += params_sql;
    CONCORD_ASSIGN_OR_RETURN(std::string out, admin(p, sql, kAdminTimeout));
    (void)out;
    CONCORD_RETURN_IF_ERROR(write_file_atomic(applied_path(p), params_text(state.parameters)));
    CONCORD_RETURN_IF_ERROR(restart_if_new(p, config));
    // Backups: with archiving off, completed binlogs go unshipped.
    {
      CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
      CONCORD_RETURN_IF_ERROR(mdb_set_archiving(backup_context(config, user), state.archive_logs));
    }
    CONCORD_RETURN_IF_ERROR(write_managed_names(p.dir, made));
    {
      CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
      CONCORD_RETURN_IF_ERROR(mdb_apply_semisync(
          repl_context(config, user), state.replication ? &*state.replication : nullptr));
    }
    CONCORD_RETURN_IF_ERROR(write_applied_revision(p.dir, state.revision));
    log_->info("mariadb {}: applied revision {}", config.id, state.revision);
    return ok();
  }

  // The query start() and health() ask the server: it also states the runtime setting my.cnf
  // has, so an engine that runs since before my.cnf said so (started by an earlier agent)
  // takes it at the next health check.
  std::string probe_sql() const {
    return "SET GLOBAL proxy_protocol_networks = " + mdb_literal(options_.proxy_networks) +
           "; SELECT 1";
  }

  Result<Health> health(const InstanceConfig& config) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    Paths p(config.dir);
    Health h;
    h.applied_revision = read_applied_revision(p.dir);
    h.fenced_revision = read_fenced_revision(p.dir);
    // The binlogs (mariadb_backup.h: binlog/, outside data/) are the instance's too.
    h.disk_used_bytes = disk_usage({p.data, p.dir + "/binlog"});
    pid_t pid = live_pid(p);
    h.running = pid != 0;
    if (!h.running) {
      h.detail = "mariadb is not running";
      return h;
    }
    auto r = admin(p, probe_sql(), milliseconds(5000));
    h.healthy = r.has_value();
    h.detail = h.healthy ? fmt::format("mariadb pid {}", pid) : r.error().message();
    h.restart_required = !pending_restart(p, config).empty();
    if (h.healthy) {
      if (auto user = lookup_os_user(options_.os_user)) {
        mdb_replication_health(repl_context(config, *user), h);
      }
    }
    return h;
  }

  Status destroy(const InstanceConfig& config) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    Paths p(config.dir);
    if (pid_t pid = live_pid(p); pid != 0 && !kill_hard(pid, kKillWait)) {
      return fail(Code::kDeadlineExceeded,
                  fmt::format("mariadb pid {} of instance {} survived SIGKILL", pid, config.id));
    }
    reap_stale_group(p.pidfile);
    // Private servers of a restore, seed or clone a killed agent left behind.
    mdb_discard_restore_stage(config);
    mdb_discard_clone_stage(config);
    remove_cgroups(options_, config.id);
    CONCORD_RETURN_IF_ERROR(remove_instance_folder(p.dir));
    log_->info("mariadb {} destroyed", config.id);
    return ok();
  }

  // ---- backups and restore (mariadb_backup.cc) ----
  Result<BackupInfo> backup(const InstanceConfig& config, const BackupRequest& request,
                            const std::string& out_path) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    if (live_pid(Paths(config.dir)) == 0) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("mariadb {} is not running; cannot back it up", config.id));
    }
    return mdb_backup(backup_context(config, user), request, out_path);
  }

  Status restore(const InstanceConfig& config, const RestoreSpec& spec,
                 Transport& transport) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_RETURN_IF_ERROR(probe(config.version));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    if (live_pid(Paths(config.dir)) != 0) {
      return fail(
          Code::kFailedPrecondition,
          fmt::format("mariadb {} is running; a restore makes a new data folder", config.id));
    }
    // A restored folder starts a binlog history of its own.
    if (!path_exists(Paths(config.dir).data)) {
      CONCORD_RETURN_IF_ERROR(make_dir(config.dir, 0700, user));
      CONCORD_RETURN_IF_ERROR(mdb_configure_binlog(backup_context(config, user), true));
    }
    CONCORD_RETURN_IF_ERROR(mdb_restore_data(backup_context(config, user), spec, transport));
    return prepare(config);  // this instance's own my.cnf, certificate and binlog folder
  }

  Status ship_logs(const InstanceConfig& config, Transport& transport) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    if (live_pid(Paths(config.dir)) == 0) return ok();  // nothing completes while stopped
    return mdb_ship_logs(backup_context(config, user), transport);
  }
  bool logs_waiting(const InstanceConfig& config) const override {
    return mdb_logs_waiting(config);
  }

  // ---- replication (mariadb_replication.cc) ----
  Status clone_from(const InstanceConfig& config, const ReplicationSpec& spec,
                    Transport* seed_transport) override {
    CONCORD_RETURN_IF_ERROR(validate_config(config));
    CONCORD_RETURN_IF_ERROR(probe(config.version));
    CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
    Paths p(config.dir);
    if (live_pid(p) != 0) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("mariadb {} is running; a clone makes a new data folder", config.id));
    }
    CONCORD_RETURN_IF_ERROR(make_dir(p.dir, 0700, user));
    if (path_exists(p.data) && mdb_recorded_role(p.dir) == "primary") {
      // The group's former primary (a failover while it was down): it starts read-only, and
      // its apply demotes it in place (demote_in_place) or rebuilds it if its history forked.
      log_->info("mariadb {}: a former primary of the group; it starts read-only", config.id);
      const auto ctx = repl_context(config, user);
      CONCORD_RETURN_IF_ERROR(mdb_write_role_options(ctx, &spec));
      CONCORD_RETURN_IF_ERROR(mdb_renew_server_id(ctx));
    }
    // The copy's binlog state is written where the instance's server keeps its binlogs, under
    // a new basename when the copy is made now (a new binlog history).
    CONCORD_RETURN_IF_ERROR(
        mdb_configure_binlog(backup_context(config, user), !path_exists(p.data)));
    if (!path_exists(p.data)) {
      CONCORD_RETURN_IF_ERROR(mdb_check_upstream_is_primary(repl_context(config, user), spec));
    }
    if (spec.seed && seed_transport != nullptr && !path_exists(p.data)) {
      auto seeded = seed_replica(config, user, spec, *seed_transport);
      if (seeded) return prepare(config);
      log_->warn("mariadb {}: the seed could not be used ({}); copying {} over the network",
                 config.id, seeded.error().message(), spec.upstream_instance);
    }
    // A seed a killed agent left half-made (its private servers too) is not redone this way.
    if (!path_exists(p.data)) mdb_discard_restore_stage(config);
    CONCORD_RETURN_IF_ERROR(
        mdb_clone_from(repl_context(config, user), spec,
                       [&](const std::string& dest) { return fresh_data(config, user, dest); }));
    return prepare(config);  // this instance's own my.cnf, certificate and server_id
  }

 private:
  // A replica's first copy from spec.seed: the backups restored and the archived binlogs
  // replayed to their end (physical, no load on the upstream), then the position reached
  // recorded as the one to stream on from. The upstream must still hold its binlogs from there
  // (they are kept binlog_keep after shipping); when it does not, the replica's receiver stops
  // on error 1236 and the apply makes it anew over the network ("Replicas that cannot go on").
  Status seed_replica(const InstanceConfig& config, const OsUser& user, const ReplicationSpec& spec,
                      Transport& transport) {
    const RestoreSpec& seed = *spec.seed;
    const MdbReplContext rc = repl_context(config, user);
    std::string at;
    CONCORD_RETURN_IF_ERROR(
        mdb_restore_data(backup_context(config, user), seed, transport,
                         [&](const std::string& staged, const std::string& gtid) -> Status {
                           at = gtid;
                           return mdb_finish_seed(rc, spec, staged, gtid);
                         }));
    const std::string backup = seed.chain.empty() ? "" : seed.chain.back().backup_id;
    CONCORD_RETURN_IF_ERROR(mdb_mark_replica(rc, fmt::format("backup {} {}", backup, at)));
    log_->info(
        "mariadb {}: seeded from backup {} and the archived binlogs of {}, streams on "
        "from {} at GTID {}",
        config.id, backup, seed.log_source_instance, spec.upstream_instance, at);
    return ok();
  }

  // Makes `dest` (absent) a copy of the host's mariadb-install-db template: a new instance's
  // data folder, and the base a replica's copy of its upstream is loaded into.
  Status fresh_data(const InstanceConfig& config, const OsUser& user, const std::string& dest) {
    // Every instance starts as a copy of one mariadb-install-db output per host, version and
    // engine user: the system tables hold only root@localhost (unix_socket, mapped to the
    // engine user) and the mysql/sys/performance_schema schemas, the same for every instance;
    // nothing in them names the data folder, the port or the instance.
    auto r = clone_from_template(
        template_root(options_, config.dir),
        fmt::format("mariadb-{}-{}", config.version, options_.os_user), user,
        [&](const std::string& data, const std::string& scratch) -> Status {
          CommandOptions as_user;
          as_user.as = user;
          as_user.cwd = scratch;
          as_user.timeout = milliseconds(180000);
          // Already the engine user, so no --user (as root the script would also chown the
          // system-wide PAM helper folder to it). A private tmpdir: the bootstrap's
          // temporary tables must not share /tmp with anything else on the host.
          auto made = run_checked({install_bin(), "--no-defaults", "--datadir=" + data,
                                   "--auth-root-authentication-method=socket",
                                   "--auth-root-socket-user=" + options_.os_user, "--skip-test-db",
                                   "--skip-name-resolve", "--tmpdir=" + scratch},
                                  as_user, Code::kFailedPrecondition);
          if (!made) return fail(made.error());
          return ok();
        },
        dest, options_.spare_copies);
    if (!r) {
      return fail(r.error().code(), fmt::format("mariadb-install-db for database instance {}: {}",
                                                config.id, r.error().message()));
    }
    return ok();
  }

  MdbReplContext repl_context(const InstanceConfig& config, const OsUser& user) const {
    Paths p(config.dir);
    MdbReplContext ctx;
    ctx.config = config;
    ctx.user = user;
    ctx.bin_dir = options_.bin_dir;
    ctx.sock = p.sock;
    ctx.binlog_cnf = p.dir + "/concord_binlog.cnf";
    ctx.start_timeout = options_.start_timeout;
    ctx.admin = [this, p](const std::string& sql) { return admin(p, sql, kAdminTimeout); };
    return ctx;
  }

  // A replica converges its parameters, read_only and slave connection; its databases and
  // accounts arrive from the primary by replication. The names the group's desired state lists
  // are recorded as made here, so after a promotion the API's later removals are dropped.
  Status apply_replica(const InstanceConfig& config, const DesiredState& state,
                       const OsUser& user) {
    Paths p(config.dir);
    CONCORD_RETURN_IF_ERROR(mdb_apply_replica(repl_context(config, user), *state.replication));
    CONCORD_ASSIGN_OR_RETURN(std::string params_sql, write_parameters(p, config, state));
    if (!params_sql.empty()) {
      CONCORD_ASSIGN_OR_RETURN(std::string out, admin(p, params_sql, kAdminTimeout));
      (void)out;
    }
    CONCORD_RETURN_IF_ERROR(write_file_atomic(applied_path(p), params_text(state.parameters)));
    CONCORD_RETURN_IF_ERROR(restart_if_new(p, config));
    CONCORD_RETURN_IF_ERROR(mdb_set_archiving(backup_context(config, user), state.archive_logs));
    ManagedNames made;
    for (const auto& d : state.databases) made.databases.insert(d.name);
    for (const auto& u : state.users) made.accounts.insert(u.name + "@" + u.host);
    if (state.root) made.accounts.insert("root@%");
    CONCORD_RETURN_IF_ERROR(write_managed_names(p.dir, made));
    CONCORD_RETURN_IF_ERROR(write_applied_revision(p.dir, state.revision));
    log_->info("mariadb {}: applied revision {} as a replica of {}", config.id, state.revision,
               state.replication->upstream_instance);
    return ok();
  }

  // A group's primary told to follow another member, made its replica without a copy: made
  // read-only and given until its replicas have all it wrote (mdb_quiesce_for_demotion), stopped
  // cleanly, its start-up options made a replica's (read_only) while it is stopped, the
  // demotion acknowledged (Health::fenced_revision: no start runs it writable again), started,
  // and set to go on from the last transaction of its own binlog. It follows the upstream only
  // once that is promoted and holds every transaction it has (mdb_cannot_follow, in apply);
  // until then the apply answers kUnavailable, so the agent reports the acknowledgement at once
  // and retries. A member with transactions the upstream never received is rebuilt then.
  // After a failover, commits may still wait for the promoted standby's acknowledgement (a
  // paused primary resumed): it is killed instead, and its recovery as a replica drops them
  // (mdb_holds_unacknowledged_commits). Either way it restarts under a new server_id
  // (mdb_renew_server_id), so it applies what its upstream received from it and it lost.
  Status demote_in_place(const InstanceConfig& config, const ReplicationSpec& spec,
                         int64_t revision, const OsUser& user) {
    Paths p(config.dir);
    const auto ctx = repl_context(config, user);
    log_->info("mariadb {}: demoted at revision {}: to follow {} ({}:{}) in place", config.id,
               revision, spec.upstream_instance, spec.upstream_address, spec.upstream_port);
    const bool running = live_pid(p) != 0;
    bool crash = false;
    if (running) {
      auto unacknowledged = mdb_holds_unacknowledged_commits(ctx, milliseconds(1000));
      crash = unacknowledged && *unacknowledged;
    }
    if (crash) {
      log_->warn(
          "mariadb {}: commits wait for an acknowledgement its promoted standby will not give: "
          "killed, so that its recovery as a replica drops them instead of committing them",
          config.id);
    } else if (running) {
      auto sent = mdb_quiesce_for_demotion(ctx, milliseconds(5000));
      if (!sent) {
        log_->warn("mariadb {}: could not quiesce it before its demotion: {}", config.id,
                   sent.error().to_string());
      } else if (*sent < 0) {
        log_->warn("mariadb {}: a replica was still behind 5 s after writes stopped", config.id);
      } else {
        log_->info("mariadb {}: read-only; its replicas had all it wrote after {} ms", config.id,
                   *sent);
      }
    }
    CONCORD_RETURN_IF_ERROR(stop(config, milliseconds(crash ? 0 : 30000)));
    CONCORD_RETURN_IF_ERROR(mdb_write_role_options(ctx, &spec));
    CONCORD_RETURN_IF_ERROR(mdb_renew_server_id(ctx));
    CONCORD_RETURN_IF_ERROR(write_fenced_revision(p.dir, revision));
    log_->info("mariadb {}: fenced at revision {} (stopped; restarting read-only)", config.id,
               revision);
    CONCORD_RETURN_IF_ERROR(start(config));
    return mdb_follow_own_history(ctx);
  }

  // A member told to be a replica that cannot be one as it is (`why`: its data is not a copy
  // of the upstream's, or its history forked from it, or its replication broke) is rebuilt as a
  // new copy of the upstream, over the network (the seed is for a first copy).
  Status rebuild_as_replica(const InstanceConfig& config, const ReplicationSpec& spec,
                            const std::string& why) {
    Paths p(config.dir);
    log_->warn("mariadb {}: to replicate from {}, its data is made anew from there: {}", config.id,
               spec.upstream_instance, why);
    CONCORD_RETURN_IF_ERROR(stop(config, milliseconds(30000)));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.data));
    // Its binlogs and their shipping records describe the discarded history.
    CONCORD_RETURN_IF_ERROR(remove_tree(p.dir + "/binlog"));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.dir + "/applied_revision"));
    CONCORD_RETURN_IF_ERROR(write_managed_names(p.dir, ManagedNames{}));
    CONCORD_RETURN_IF_ERROR(clone_from(config, spec, nullptr));
    return start(config);
  }

  MdbBackupContext backup_context(const InstanceConfig& config, const OsUser& user) const {
    Paths p(config.dir);
    MdbBackupContext ctx;
    ctx.config = config;
    ctx.user = user;
    ctx.bin_dir = options_.bin_dir;
    ctx.cnf = p.cnf;
    ctx.sock = p.sock;
    ctx.start_timeout = options_.start_timeout;
    ctx.binlog_keep = options_.binlog_keep;
    ctx.admin = [this, p](const std::string& sql) { return admin(p, sql, kAdminTimeout); };
    return ctx;
  }

  std::string server_bin() const { return mdb_program(options_.bin_dir, "mariadbd", true); }
  std::string install_bin() const { return mdb_program(options_.bin_dir, "mariadb-install-db"); }
  std::string client_bin() const { return mdb_program(options_.bin_dir, "mariadb"); }

  pid_t live_pid(const Paths& p) const {
    const std::string mark = "--defaults-file=" + p.cnf;
    if (pid_t pid = live_pid_from(p.pidfile, mark); pid != 0) return pid;
    return live_pid_from(p.server_pid, mark);
  }

  // Runs SQL (on stdin) as root@localhost over the socket; the batch output.
  Result<std::string> admin(const Paths& p, const std::string& sql, milliseconds timeout) const {
    CommandOptions o;
    o.timeout = timeout;
    o.stdin_data = sql;
    CONCORD_ASSIGN_OR_RETURN(
        CommandResult r,
        run_command({client_bin(), "--no-defaults", "--protocol=SOCKET", "--socket=" + p.sock,
                     "--user=root", "--batch", "--skip-column-names",
                     "--default-character-set=utf8mb4", "--connect-timeout=5"},
                    o));
    if (r.timed_out) return fail(Code::kDeadlineExceeded, r.describe("mariadb"));
    if (!r.ok()) {
      return fail(code_for_client_error(r.err), "mariadb: " + r.describe("mariadb"));
    }
    return r.out;
  }

  // Batch output of hex columns -> rows of decoded values.
  static std::vector<std::vector<std::string>> rows(const std::string& text) {
    std::vector<std::vector<std::string>> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      std::vector<std::string> row;
      std::istringstream fields(line);
      std::string f;
      while (std::getline(fields, f, '\t')) {
        auto bytes = hex_decode(f);
        row.push_back(bytes ? *bytes : std::string());
      }
      out.push_back(std::move(row));
    }
    return out;
  }

  static bool system_schema(const std::string& name) {
    std::string l = lower(name);
    return l == "information_schema" || l == "mysql" || l == "performance_schema" || l == "sys";
  }

  bool protected_account(const std::string& user, const std::string& host) const {
    if (host != "localhost") return false;
    return user == "root" || user == "mariadb.sys" || user == "mysql" || user == options_.os_user;
  }

  // ---- configuration groups (parameters.h) ----
  // The group's values live in concord_params.cnf, !include'd last by my.cnf, so they hold
  // from the next start; dynamic ones are also set at once with SET GLOBAL (removed ones go
  // back to my.cnf's value or the server default). A copy of the file taken when the server
  // is launched (params.started) tells which restart-required values are not live yet.
  static std::string params_path(const Paths& p) { return p.dir + "/concord_params.cnf"; }
  static std::string started_path(const Paths& p) { return p.dir + "/params.started"; }
  // The values last made live with SET GLOBAL: what a later apply reverts when they are
  // removed (the file alone could already hold the next values after a kill mid-apply).
  static std::string applied_path(const Paths& p) { return p.dir + "/params.applied"; }

  static std::string_view default_collation(std::string_view charset) {
    if (charset == "latin1") return "latin1_swedish_ci";
    if (charset == "ascii") return "ascii_general_ci";
    if (charset == "utf8mb3") return "utf8mb3_general_ci";
    return "utf8mb4_general_ci";
  }

  // Names are from the catalog and values in normal form (validate_parameters): no quote,
  // backslash or line break can reach the file; strings are quoted all the same.
  static std::string params_text(const std::map<std::string, std::string>& values) {
    std::string text =
        "# Written by Concord: the instance's configuration group; rewritten on every change.\n"
        "[mariadbd]\n";
    for (const auto& [name, value] : values) {
      const ParameterSpec* spec = find_parameter("mariadb", "", name);
      const bool quoted = spec != nullptr && spec->type == ParameterType::kString;
      text += name + " = " + (quoted ? "\"" + value + "\"" : value) + "\n";
      if (name == "character_set_server") {
        text += fmt::format("collation_server = \"{}\"\n", default_collation(value));
      }
    }
    return text;
  }

  static std::map<std::string, std::string> parse_params(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#' || line[0] == '[') continue;
      size_t eq = line.find(" = ");
      if (eq == std::string::npos) continue;
      std::string value = line.substr(eq + 3);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      out[line.substr(0, eq)] = value;
    }
    return out;
  }

  // my.cnf's own value of a parameter (what a removed one returns to), else the server's
  // compiled default.
  static std::string base_value(const InstanceConfig& config, const ParameterSpec& spec) {
    auto defaults = default_parameters("mariadb", config.ram_mb, config.volume_gb);
    auto it = defaults.find(std::string(spec.name));
    return it == defaults.end() ? "DEFAULT" : sql_value(spec, it->second);
  }

  static std::string sql_value(const ParameterSpec& spec, const std::string& value) {
    switch (spec.type) {
      case ParameterType::kBoolean: return value == "on" ? "ON" : "OFF";
      case ParameterType::kString: return mdb_literal(value);
      default: return value;
    }
  }

  // Writes the file (when it changed) and returns the SET GLOBAL statements for the dynamic
  // parameters set or removed.
  Result<std::string> write_parameters(const Paths& p, const InstanceConfig& config,
                                       const DesiredState& state) {
    const std::string text = params_text(state.parameters);
    auto old_text = read_file(params_path(p));
    auto applied_text = read_file(applied_path(p));
    auto before = old_text ? parse_params(*old_text) : std::map<std::string, std::string>{};
    if (applied_text) before.merge(parse_params(*applied_text));
    if (!old_text || *old_text != text) {
      CONCORD_ASSIGN_OR_RETURN(OsUser user, lookup_os_user(options_.os_user));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(params_path(p), text, 0600, user));
    }
    std::string sql;
    for (const auto& [name, value] : state.parameters) {
      const ParameterSpec* spec = find_parameter("mariadb", config.version, name);
      if (spec == nullptr || spec->restart_required) continue;
      sql += "SET GLOBAL " + name + " = " + sql_value(*spec, value) + ";\n";
      if (name == "character_set_server") {
        sql += fmt::format("SET GLOBAL collation_server = '{}';\n", default_collation(value));
      }
    }
    for (const auto& [name, value] : before) {
      const ParameterSpec* spec = find_parameter("mariadb", config.version, name);
      if (spec == nullptr || spec->restart_required || state.parameters.contains(name)) continue;
      sql += "SET GLOBAL " + name + " = " + base_value(config, *spec) + ";\n";
      if (name == "character_set_server") {
        sql += "SET GLOBAL collation_server = " +
               mdb_literal(default_parameters("mariadb", 0, 0).at("collation_server")) + ";\n";
      }
    }
    return sql;
  }

  Status snapshot_started_params(const Paths& p) const {
    auto text = read_file(params_path(p));
    return write_file_atomic(started_path(p), text ? *text : std::string());
  }

  // Restart-required parameters whose file value differs from the one the server started with.
  std::vector<std::string> pending_restart(const Paths& p, const InstanceConfig& config) const {
    auto now_text = read_file(params_path(p));
    auto started_text = read_file(started_path(p));
    const auto now = now_text ? parse_params(*now_text) : std::map<std::string, std::string>{};
    const auto started =
        started_text ? parse_params(*started_text) : std::map<std::string, std::string>{};
    std::vector<std::string> out;
    for (const ParameterSpec& spec : parameter_catalog("mariadb", config.version)) {
      if (!spec.restart_required) continue;
      const std::string name(spec.name);
      auto a = now.find(name), b = started.find(name);
      const bool same = (a == now.end() && b == started.end()) ||
                        (a != now.end() && b != started.end() && a->second == b->second);
      if (!same) out.push_back(name);
    }
    return out;
  }

  // A new instance (nothing applied yet, so no data to disturb) gets its restart-required
  // values live with one restart right away rather than a RESTART_REQUIRED status.
  Status restart_if_new(const Paths& p, const InstanceConfig& config) {
    if (read_applied_revision(p.dir) != 0) return ok();
    std::vector<std::string> pending = pending_restart(p, config);
    if (pending.empty()) return ok();
    log_->info("mariadb {}: restarting once for its configuration group ({})", config.id,
               fmt::format("{}", fmt::join(pending, ", ")));
    CONCORD_RETURN_IF_ERROR(stop(config, milliseconds(30000)));
    return start(config);
  }

  Status validate_state(const DesiredState& state) const {
    std::set<std::string> seen;
    for (const auto& d : state.databases) {
      CONCORD_RETURN_IF_ERROR(check_identifier("database", d.name, kMaxDatabaseBytes));
      if (system_schema(d.name)) {
        return fail(Code::kInvalidArgument,
                    fmt::format("database name '{}' is reserved by MariaDB", d.name));
      }
      if (!seen.insert(d.name).second) {
        return fail(Code::kInvalidArgument, fmt::format("database '{}' listed twice", d.name));
      }
    }
    std::set<std::pair<std::string, std::string>> accounts;
    for (const auto& u : state.users) {
      CONCORD_RETURN_IF_ERROR(check_identifier("user", u.name, kMaxUserChars));
      CONCORD_RETURN_IF_ERROR(check_identifier("host", u.host, kMaxHostChars));
      const std::string l = lower(u.name);
      if (l == "root" || l == "mariadb.sys" || l == "mysql" || l == "public" ||
          u.name == options_.os_user || u.name == kReplicationUser) {
        return fail(Code::kInvalidArgument,
                    fmt::format("user name '{}' is reserved on MariaDB instances", u.name));
      }
      if (!accounts.emplace(u.name, u.host).second) {
        return fail(Code::kInvalidArgument,
                    fmt::format("user '{}'@'{}' listed twice", u.name, u.host));
      }
      CONCORD_RETURN_IF_ERROR(check_verifier(u.name, u.verifier));
      for (const auto& d : u.databases) {
        if (!std::any_of(state.databases.begin(), state.databases.end(),
                         [&](const DatabaseSpec& s) { return s.name == d; })) {
          return fail(
              Code::kInvalidArgument,
              fmt::format("user '{}' is granted database '{}', which is not listed", u.name, d));
        }
      }
    }
    if (state.root) CONCORD_RETURN_IF_ERROR(check_verifier("root", state.root->verifier));
    return ok();
  }

  // "*" + 40 uppercase hex: anything else MariaDB would reject or take for something else.
  static Status check_verifier(std::string_view user, std::string_view v) {
    bool good = v.size() == 41 && v[0] == '*' && std::all_of(v.begin() + 1, v.end(), [](char c) {
                  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
                });
    if (!good) {
      return fail(Code::kInvalidArgument,
                  fmt::format("user '{}': the verifier is not a MariaDB mysql_native_password "
                              "hash ('*' and 40 hex digits)",
                              user));
    }
    return ok();
  }

  EngineOptions options_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

Result<std::unique_ptr<Engine>> make_mariadb_engine(const EngineOptions& options) {
  if (options.os_user.empty() || options.os_user == "root") {
    return fail(Code::kInvalidArgument,
                "mariadb engine: os_user must name an unprivileged user (engines never run as "
                "root)");
  }
  if (options.start_timeout.count() < 1) {
    return fail(Code::kInvalidArgument, "mariadb engine: start_timeout must be positive");
  }
  // It goes into my.cnf and a SET GLOBAL: addresses, CIDRs, commas or "*" only.
  if (options.proxy_networks.find_first_not_of("0123456789abcdefABCDEF.:/,*") !=
      std::string::npos) {
    return fail(Code::kInvalidArgument,
                "mariadb engine: proxy_networks must be comma-separated addresses or CIDRs, or "
                "'*': " +
                    options.proxy_networks);
  }
  return std::unique_ptr<Engine>(std::make_unique<MariadbEngine>(options));
}

}  // namespace concord::database::engine

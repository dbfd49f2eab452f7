// MariaDB read replicas: GTID replication over TLS from the primary's binlogs, replicas made
// by a logical copy (mariadb-dump --single-transaction --gtid) loaded into a private server,
// semi-synchronous replication (AFTER_SYNC) for the synchronous standbys. See
// mariadb_replication.h for the files and docs/design/database.md for why.
#include "database/engine/mariadb_replication.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/log.h"
#include "database/engine/credentials.h"
#include "database/engine/mariadb_common.h"
#include "fmt/format.h"

namespace concord::database::engine::detail {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kCloneTimeout{6 * 3600 * 1000};
// The semi-synchronous primary waits this long for an acknowledgement before it would fall
// back to asynchronous replication: in effect never (a commit not on a standby is not
// acknowledged; high availability relies on that).
constexpr std::string_view kSemiSyncTimeoutMs = "18446744073709551615";
// A replica that has heard nothing from its upstream for this long (its heartbeat comes at
// half of it) reconnects, and reports that it does not stream meanwhile: 6 s, not 60, so that
// a replica cut off without a reset (a silent link) is seen within seconds, as PostgreSQL's
// wal_receiver_timeout (postgres_replication.cc); while it is the synchronous standby the
// primary's commits wait until the server stops waiting for it.
constexpr int kNetTimeoutSeconds = 6;
// How often a replica retries its upstream: short, so a restarted or re-pointed member
// reconnects in seconds (the default is 60 s).
constexpr int kConnectRetrySeconds = 2;

struct RPaths {
  explicit RPaths(const std::string& d)
      : dir(d),
        data(d + "/data"),
        repl_cnf(d + "/concord_replication.cnf"),
        role_cnf(d + "/concord_role.cnf"),
        role(d + "/replication_role"),
        upstream(d + "/replication_upstream"),
        copy(d + "/replica_copy"),
        stage(d + "/clone.tmp"),
        server_id(d + "/server_id"),
        no_truncation(d + "/no_binlog_truncation") {}
  std::string dir, data, repl_cnf, role_cnf, role, upstream, copy, stage, server_id, no_truncation;
};

std::string prog(const MdbReplContext& ctx, const char* name) {
  return mdb_program(ctx.bin_dir, name);
}

// A value in an option file, double-quoted with the escapes the option parser knows.
std::string option_value(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string replication_account() {
  return mdb_literal(kReplicationUser) + "@'%'";
}

bool listed(const std::vector<std::string>& ids, const std::string& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

constexpr std::string_view kTruncatingRecovery = "loose-init_rpl_role = SLAVE\n";

// What the role needs from the server's very start (a restarted replica must not accept a
// write before the next apply; a restarted primary must not commit without its standby).
std::string role_text(const InstanceConfig& config, const ReplicationSpec* spec) {
  std::string text =
      "# Written by Concord: what this member's replication role needs from start-up; "
      "rewritten by every apply.\n[mariadbd]\n";
  if (spec == nullptr) return text;
  if (spec->role == ReplicationSpec::Role::kReplica) {
    text += fmt::format("read_only = ON\nslave_net_timeout = {}\n", kNetTimeoutSeconds);
    if (listed(spec->synchronous_standbys, config.id)) text += "rpl_semi_sync_slave_enabled = ON\n";
    if (mdb_recorded_role(config.dir) == "primary" &&
        !path_exists(RPaths(config.dir).no_truncation)) {
      // A former primary (demoted, or down during a failover): should this start recover from a
      // crash, the transactions its binlog holds but InnoDB never committed are rolled back and
      // cut from the binlog instead of committed. Under AFTER_SYNC those are exactly the commits
      // no client was told of (each waited for a standby's acknowledgement), and committing
      // them would make a fork, which only a new copy mends. Never on a primary: it would drop
      // commits its standby has (MDEV-33465). `loose-`: unknown before MariaDB 10.11.8.
      text += kTruncatingRecovery;
    }
  } else if (!spec->synchronous_standbys.empty()) {
    text += fmt::format(
        "rpl_semi_sync_master_enabled = ON\n"
        "rpl_semi_sync_master_wait_point = AFTER_SYNC\n"
        "rpl_semi_sync_master_wait_no_slave = ON\n"
        "rpl_semi_sync_master_timeout = {}\n",
        kSemiSyncTimeoutMs);
  }
  return text;
}

Status write_if_changed(const std::string& path, const std::string& text, const OsUser& user) {
  auto current = read_file(path);
  if (current && *current == text) return ok();
  return write_file_atomic(path, text, 0600, user);
}

// The mariadb-dump / mariadb client's connection failures, by the client error number: the
// upstream down or not yet listening, or refusing the account (the primary has not applied
// the replication account yet) are worth retrying; anything else is not.
Code code_for_connect_error(const std::string& err) {
  // 1045 and 1698 are both "Access denied" (1698 when no such account exists yet).
  for (std::string_view n :
       {"2002", "2003", "2005", "2006", "2013", "2026", "1045", "1130", "1698"}) {
    if (err.find(std::string("error: ") + std::string(n)) != std::string::npos ||
        err.find(std::string("ERROR ") + std::string(n)) != std::string::npos) {
      return Code::kUnavailable;
    }
  }
  return Code::kInternal;
}

// The last "-- SET GLOBAL gtid_slave_pos='...'" of a dump (--master-data=2 --gtid writes it
// commented, after every table, so the mysql.gtid_slave_pos table the dump reloads cannot
// overwrite it).
Result<std::string> dump_gtid(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Code::kInternal, "cannot read the dump " + path);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 64 * 1024);
  in.seekg(from);
  std::string tail(static_cast<size_t>(size - from), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  constexpr std::string_view kMark = "-- SET GLOBAL gtid_slave_pos='";
  size_t at = tail.rfind(kMark);
  if (at == std::string::npos) {
    return fail(Code::kInternal,
                "the upstream's dump records no GTID position (is binary logging on there?)");
  }
  at += kMark.size();
  size_t end = tail.find('\'', at);
  if (end == std::string::npos) return fail(Code::kInternal, "truncated GTID position in dump");
  std::string gtid = tail.substr(at, end - at);
  for (char c : gtid) {
    if (!((c >= '0' && c <= '9') || c == '-' || c == ',')) {
      return fail(Code::kInternal, "malformed GTID position in dump: " + gtid);
    }
  }
  return gtid;
}

// The log_bin path from concord_binlog.cnf, so the private server writes the binlog state the
// instance's own server will read (one place knows where binlogs live: mariadb_backup.cc).
Result<std::string> log_bin_path(const MdbReplContext& ctx) {
  auto text = read_file(ctx.binlog_cnf);
  if (!text) return fail(Code::kInternal, "cannot read " + ctx.binlog_cnf);
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("log_bin = ")) return line.substr(10);
  }
  return fail(Code::kInternal, ctx.binlog_cnf + " names no log_bin");
}

constexpr std::string_view kLoadServer = "load";

// A private server on the staging data folder, to load the dump into. Writes its binlog where
// the instance's server will (only to record the GTID state; the load itself is not logged).
PrivateMariadb::Options load_server(const MdbReplContext& ctx, const std::string& stage,
                                    const std::string& log_bin) {
  PrivateMariadb::Options o;
  o.folder = stage;
  o.name = kLoadServer;
  o.what = "the clone's load server";
  o.bin_dir = ctx.bin_dir;
  o.user = ctx.user;
  o.start_timeout = ctx.start_timeout;
  o.server_args = {"--innodb-buffer-pool-size=128M",
                   "--log-bin=" + log_bin,
                   "--log-bin-index=" + log_bin + ".index",
                   fmt::format("--server-id={}", mdb_current_server_id(ctx.config)),
                   "--binlog-format=ROW",
                   "--gtid-strict-mode=ON",
                   "--max-allowed-packet=1G"};
  o.sql_timeout = milliseconds(60000);
  o.skip_column_names = true;
  o.client_label = "mariadb (clone load server)";
  return o;
}

// Loads a dump file into the load server with binary logging off for the session (the copy is
// the upstream's history, not this member's).
Status load_dump(const MdbReplContext& ctx, const PrivateMariadb& server, const std::string& dump) {
  CommandOptions o;
  o.timeout = kCloneTimeout;
  auto r = run_command({"/bin/bash", "-c",
                        "exec \"$1\" --no-defaults --protocol=SOCKET "
                        "--socket=\"$2\" --user=root --binary-mode "
                        "--max-allowed-packet=1G "
                        "--init-command='SET sql_log_bin=0' < \"$3\"",
                        "load", prog(ctx, "mariadb"), server.sock(), dump},
                       o);
  if (!r) return fail(r.error());
  if (!r->ok()) {
    return fail(Code::kInternal, "loading the upstream's dump: " + r->describe("mariadb"));
  }
  return ok();
}

// Where a copy of the upstream continues: as a replica (slave position) and in its own binlog
// (so after a promotion its siblings find their position in it; a strict-mode primary refuses
// a position its binlogs do not know). RESET MASTER also clears binlogs a demoted member's
// folder may still list. On the copy's private server, before the copy is renamed into place.
Status record_copy_position(PrivateMariadb& server, const std::string& gtid) {
  std::string set = "FLUSH PRIVILEGES;\nRESET MASTER;\n";
  if (!gtid.empty()) {
    set += "SET GLOBAL gtid_slave_pos = " + mdb_literal(gtid) + ";\n";
    set += "SET GLOBAL gtid_binlog_state = " + mdb_literal(gtid) + ";\n";
  }
  set += "SELECT @@gtid_slave_pos, @@gtid_binlog_pos;\n";
  CONCORD_ASSIGN_OR_RETURN(std::string got, server.sql(set));
  const std::string want = gtid + "\t" + gtid + "\n";
  if (got != want) {
    return fail(Code::kInternal, fmt::format("the copy's GTID position did not hold: wanted {}, "
                                             "its private server says {}",
                                             gtid, got));
  }
  return ok();
}

// A new copy's role file (a replica of spec's upstream from its very start) and no recorded
// upstream (the first apply points the slave connection). Before the copy is renamed in.
Status write_copy_role(const MdbReplContext& ctx, const ReplicationSpec& spec) {
  RPaths p(ctx.config.dir);
  CONCORD_RETURN_IF_ERROR(
      write_file_atomic(p.role_cnf, role_text(ctx.config, &spec), 0600, ctx.user));
  return remove_tree(p.upstream);
}

// Batch output with its header line -> column -> value of the first row (batch mode escapes
// tabs and newlines inside values, so splitting on them is safe).
std::map<std::string, std::string> first_row(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string header, values;
  if (!std::getline(in, header) || !std::getline(in, values)) return out;
  auto split = [](const std::string& line) {
    std::vector<std::string> f;
    size_t start = 0;
    while (true) {
      size_t tab = line.find('\t', start);
      f.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    return f;
  };
  auto names = split(header), vals = split(values);
  for (size_t i = 0; i < names.size() && i < vals.size(); ++i) out[names[i]] = vals[i];
  return out;
}

std::string upstream_record(const ReplicationSpec& spec) {
  return fmt::format("{} {} {} {}\n", spec.upstream_instance, spec.upstream_address,
                     spec.upstream_port, mariadb_native_verifier(spec.secret));
}

Status check_replica_spec(const ReplicationSpec& spec) {
  if (spec.upstream_address.empty() || spec.upstream_port <= 0 || spec.upstream_port > 65535) {
    return fail(Code::kInvalidArgument,
                "a MariaDB replica needs its upstream's address and port (replication spec)");
  }
  if (spec.secret.empty()) {
    return fail(Code::kInvalidArgument, "the replication secret must not be empty");
  }
  return ok();
}

// Before a promotion: stops receiving and lets the replay finish what was already received
// (a commit the old primary acknowledged may sit in the relay log only), bounded. Sets
// `stopped_ms` to how long stopping the receiver took.
Status drain_relay_log(const MdbReplContext& ctx, std::map<std::string, std::string> slave,
                       int64_t& stopped_ms) {
  const auto t0 = std::chrono::steady_clock::now();
  if (slave["Slave_SQL_Running"] != "Yes") return ok();  // nothing more can be replayed
  // KILL of the receiving thread first: STOP SLAVE alone waits about 2 s for a thread blocked
  // reading from an upstream that is paused or cut off (measured on 10.11), which is most of a
  // failover's window; KILL shuts its socket down at once.
  CONCORD_ASSIGN_OR_RETURN(
      std::string out,
      ctx.admin("SET @io = (SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = "
                "'Slave_IO' LIMIT 1);\n"
                "SET @kill = IF(@io IS NULL, 'DO 0', CONCAT('KILL ', @io));\n"
                "PREPARE concord_kill FROM @kill;\nEXECUTE concord_kill;\n"
                "DEALLOCATE PREPARE concord_kill;\nSTOP SLAVE IO_THREAD;"));
  (void)out;
  stopped_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (true) {
    CONCORD_ASSIGN_OR_RETURN(slave, mdb_slave_status(ctx));
    if (slave.empty() || slave["Slave_SQL_Running"] != "Yes") return ok();
    if ((slave["Relay_Master_Log_File"] == slave["Master_Log_File"] &&
         slave["Exec_Master_Log_Pos"] == slave["Read_Master_Log_Pos"]) ||
        slave["Slave_SQL_Running_State"].starts_with("Slave has read all relay log")) {
      return ok();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return fail(
          Code::kDeadlineExceeded,
          fmt::format("mariadb {}: the replay of what it received did not finish within "
                      "120 s (at {}:{} of {}:{}); not promoted yet",
                      ctx.config.id, slave["Relay_Master_Log_File"], slave["Exec_Master_Log_Pos"],
                      slave["Master_Log_File"], slave["Read_Master_Log_Pos"]));
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
}

// Why a replica with this SHOW SLAVE STATUS cannot go on without a new copy, or "". The
// receiver stops for good on error 1236 (its GTID position is no longer in the upstream's
// binlogs, or the upstream never had it); the replay stops on an error when the data no longer
// matches the upstream's (a duplicate key, a missing row, an out-of-order GTID in strict
// mode), except lock timeouts and deadlocks, which START SLAVE retries.
std::string broken_reason(std::map<std::string, std::string>& slave) {
  if (slave["Slave_IO_Running"] == "No" && slave["Last_IO_Errno"] == "1236") {
    return "the upstream no longer has its binlogs from its position (error 1236: " +
           slave["Last_IO_Error"] + ")";
  }
  const std::string& sql_errno = slave["Last_SQL_Errno"];
  if (slave["Slave_SQL_Running"] == "No" && !sql_errno.empty() && sql_errno != "0" &&
      sql_errno != "1205" && sql_errno != "1213") {
    return fmt::format("its replay stopped on error {}: {}", sql_errno, slave["Last_SQL_Error"]);
  }
  return "";
}

}  // namespace

uint32_t mdb_server_id(std::string_view instance_id) {
  uint32_t h = 2166136261u;
  for (unsigned char c : instance_id) {
    h ^= c;
    h *= 16777619u;
  }
  return h == 0 ? 1 : h;
}

std::string mdb_recorded_role(const std::string& dir) {
  auto text = read_file(RPaths(dir).role);
  if (!text) return "";
  std::string role = *text;
  while (!role.empty() && (role.back() == '\n' || role.back() == ' ')) role.pop_back();
  return role;
}

uint32_t mdb_current_server_id(const InstanceConfig& config) {
  if (auto text = read_file(RPaths(config.dir).server_id)) {
    unsigned long v = 0;
    if (std::sscanf(text->c_str(), "%lu", &v) == 1 && v > 0 && v <= 0xffffffffUL) {
      return static_cast<uint32_t>(v);
    }
  }
  return mdb_server_id(config.id);
}

namespace {

// log_slave_updates: a replica's own binlog holds everything it replayed, so once promoted it
// can serve any sibling that re-points to it from that sibling's GTID position.
Status write_replication_identity(const MdbReplContext& ctx) {
  const std::string text = fmt::format(
      "# Written by Concord: replication identity; rewritten on every prepare.\n"
      "[mariadbd]\n"
      "server_id = {}\n"
      "gtid_strict_mode = ON\n"
      "log_slave_updates = ON\n"
      "relay_log = relay-bin\n"
      "relay_log_index = relay-bin.index\n",
      mdb_current_server_id(ctx.config));
  return write_if_changed(RPaths(ctx.config.dir).repl_cnf, text, ctx.user);
}

}  // namespace

Status mdb_renew_server_id(const MdbReplContext& ctx) {
  const uint32_t old_id = mdb_current_server_id(ctx.config);
  const uint32_t new_id = mdb_server_id(fmt::format("{}#{}", ctx.config.id, old_id));
  CONCORD_RETURN_IF_ERROR(write_file_atomic(RPaths(ctx.config.dir).server_id,
                                            std::to_string(new_id) + "\n", 0600, ctx.user));
  logger("database.engine")
      ->info("mariadb {}: server_id {} -> {} (what it wrote as {} is now a replica's to apply)",
             ctx.config.id, old_id, new_id, old_id);
  return write_replication_identity(ctx);
}

Status mdb_configure_replication(const MdbReplContext& ctx, bool new_data) {
  RPaths p(ctx.config.dir);
  CONCORD_RETURN_IF_ERROR(write_replication_identity(ctx));
  if (new_data) {
    // Data from the template is nobody's copy: whatever this folder was before is forgotten.
    CONCORD_RETURN_IF_ERROR(remove_tree(p.role));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.upstream));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.copy));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.no_truncation));
    CONCORD_RETURN_IF_ERROR(
        write_file_atomic(p.role_cnf, role_text(ctx.config, nullptr), 0600, ctx.user));
  } else if (!path_exists(p.role_cnf)) {
    CONCORD_RETURN_IF_ERROR(
        write_file_atomic(p.role_cnf, role_text(ctx.config, nullptr), 0600, ctx.user));
  }
  return ok();
}

// The replication account's client option file for the upstream (0600: the password never
// reaches argv, which ps shows).
Status write_upstream_creds(const std::string& path, const ReplicationSpec& spec) {
  return write_file_atomic(path,
                           fmt::format("[client]\nuser = {}\npassword = {}\nhost = {}\nport = {}\n",
                                       option_value(kReplicationUser), option_value(spec.secret),
                                       option_value(spec.upstream_address), spec.upstream_port),
                           0600);
}

namespace {

// Asks the upstream in `spec` one query as the replication account (over TLS) and returns its
// output; `what` names the question in errors.
Result<std::string> ask_upstream(const MdbReplContext& ctx, const ReplicationSpec& spec,
                                 const std::string& sql, std::string_view what) {
  CONCORD_RETURN_IF_ERROR(check_replica_spec(spec));
  RPaths p(ctx.config.dir);
  const std::string creds = p.dir + "/upstream-check.cnf";
  CONCORD_RETURN_IF_ERROR(write_upstream_creds(creds, spec));
  CommandOptions o;
  o.timeout = std::chrono::seconds(30);
  auto r = run_command({prog(ctx, "mariadb"), "--defaults-extra-file=" + creds, "--protocol=TCP",
                        "--ssl", "--connect-timeout=10", "-N", "-B", "-e", sql},
                       o);
  (void)remove_tree(creds);
  if (!r) return fail(r.error());
  if (!r->ok()) {
    return fail(code_for_connect_error(r->err),
                fmt::format("asking upstream {} ({}:{}) of replica {} {}: {}",
                            spec.upstream_instance, spec.upstream_address, spec.upstream_port,
                            ctx.config.id, what, r->describe("mariadb")));
  }
  return r->out;
}

std::unexpected<Error> read_only_upstream(const MdbReplContext& ctx, const ReplicationSpec& spec,
                                          std::string_view waits) {
  return fail(Code::kUnavailable,
              fmt::format("upstream {} of replica {} is read-only (a replica not yet promoted): "
                          "{} waits for the promotion",
                          spec.upstream_instance, ctx.config.id, waits));
}

// A client's answer without its trailing line end(s).
std::string without_line_end(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

struct Gtid {
  uint32_t domain = 0, server = 0;
  uint64_t seq = 0;
};

// "0-1-5,1-7-9" (a GTID position or state) as its GTIDs; malformed parts are skipped.
std::vector<Gtid> parse_gtids(std::string_view text) {
  std::vector<Gtid> out;
  std::istringstream in{std::string(text)};
  std::string part;
  while (std::getline(in, part, ',')) {
    Gtid g;
    unsigned long long seq = 0;
    if (std::sscanf(part.c_str(), " %u-%u-%llu", &g.domain, &g.server, &seq) == 3) {
      g.seq = seq;
      out.push_back(g);
    }
  }
  return out;
}

}  // namespace

Status mdb_check_upstream_is_primary(const MdbReplContext& ctx, const ReplicationSpec& spec) {
  CONCORD_ASSIGN_OR_RETURN(std::string out, ask_upstream(ctx, spec, "SELECT @@global.read_only",
                                                         "whether it is a primary"));
  if (out.find('1') != std::string::npos) return read_only_upstream(ctx, spec, "its copy");
  return ok();
}

std::string mdb_history_missing(std::string_view own_binlog_pos,
                                std::string_view upstream_binlog_state) {
  const std::vector<Gtid> theirs = parse_gtids(upstream_binlog_state);
  for (const Gtid& mine : parse_gtids(own_binlog_pos)) {
    const bool has = std::any_of(theirs.begin(), theirs.end(), [&](const Gtid& t) {
      return t.domain == mine.domain && t.server == mine.server && t.seq >= mine.seq;
    });
    if (!has) return fmt::format("{}-{}-{}", mine.domain, mine.server, mine.seq);
  }
  return "";
}

Result<std::string> mdb_cannot_follow(const MdbReplContext& ctx, const ReplicationSpec& spec) {
  if (auto recorded = read_file(RPaths(ctx.config.dir).upstream);
      recorded && *recorded == upstream_record(spec)) {
    return std::string();  // following it already
  }
  CONCORD_ASSIGN_OR_RETURN(
      std::string answer,
      ask_upstream(ctx, spec, "SELECT @@global.read_only, @@global.gtid_binlog_state",
                   "for its GTID state"));
  const std::string out = without_line_end(std::move(answer));
  const size_t tab = out.find('\t');
  if (out.substr(0, tab) != "0") return read_only_upstream(ctx, spec, "following it");
  const std::string theirs = tab == std::string::npos ? "" : out.substr(tab + 1);
  CONCORD_ASSIGN_OR_RETURN(std::string mine, ctx.admin("SELECT @@global.gtid_binlog_pos"));
  const std::string missing = mdb_history_missing(without_line_end(std::move(mine)), theirs);
  if (missing.empty()) return std::string();
  return fmt::format(
      "its history forked from upstream {}'s: the upstream's binlogs never had {}, the last "
      "transaction here",
      spec.upstream_instance, missing);
}

Result<int64_t> mdb_quiesce_for_demotion(const MdbReplContext& ctx, milliseconds limit) {
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();
  };
  // A shutdown kills the binlog dump threads without sending what they have not sent yet: a
  // commit there would be this member's alone, and it could not follow the promoted one.
  const std::string behind =
      "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%' "
      "AND STATE <> 'Master has sent all binlog to slave; waiting for more updates'";
  // read_only waits for the commits under way; later ones are refused (the tenant's accounts
  // and root lack READ ONLY ADMIN). One client call for both: each costs a process.
  CONCORD_ASSIGN_OR_RETURN(std::string out, ctx.admin("SET GLOBAL read_only = ON;\n" + behind));
  while (out != "0\n") {
    if (elapsed() >= limit.count()) return -1;
    std::this_thread::sleep_for(milliseconds(10));
    CONCORD_ASSIGN_OR_RETURN(out, ctx.admin(behind));
  }
  return elapsed();
}

Result<bool> mdb_holds_unacknowledged_commits(const MdbReplContext& ctx, milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  // Checked before read_only, which would wait for those commits for as long as they wait.
  const std::string sql =
      "SELECT COUNT(*), @@global.innodb_flush_log_at_trx_commit FROM "
      "information_schema.PROCESSLIST WHERE STATE = 'Waiting for semi-sync ACK from slave'";
  for (;;) {
    CONCORD_ASSIGN_OR_RETURN(std::string out, ctx.admin(sql));
    out = without_line_end(std::move(out));
    const size_t tab = out.find('\t');
    const std::string waiting = out.substr(0, tab);
    if (waiting == "0") return false;
    if (std::chrono::steady_clock::now() >= deadline) {
      // A crash keeps every acknowledged commit only when InnoDB flushes its log at each one.
      return tab != std::string::npos && out.substr(tab + 1) == "1";
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
}

Status mdb_write_role_options(const MdbReplContext& ctx, const ReplicationSpec* spec) {
  return write_if_changed(RPaths(ctx.config.dir).role_cnf, role_text(ctx.config, spec), ctx.user);
}

Status mdb_follow_own_history(const MdbReplContext& ctx) {
  RPaths p(ctx.config.dir);
  // A former primary goes on from the last transaction in its own binlog (not from the slave
  // position it kept from when it was a replica before, if ever).
  CONCORD_ASSIGN_OR_RETURN(std::string out,
                           ctx.admin("SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos"));
  (void)out;
  CONCORD_RETURN_IF_ERROR(remove_tree(p.upstream));
  CONCORD_RETURN_IF_ERROR(remove_tree(p.no_truncation));
  return write_if_changed(p.role, "replica\n", ctx.user);
}

bool mdb_truncation_refused(std::string_view log_tail) {
  return log_tail.find("Cannot truncate the binary log") != std::string_view::npos;
}

Status mdb_forgo_truncation(const MdbReplContext& ctx) {
  RPaths p(ctx.config.dir);
  CONCORD_RETURN_IF_ERROR(write_file_atomic(p.no_truncation, "", 0600, ctx.user));
  auto text = read_file(p.role_cnf);
  if (!text) return ok();
  std::string cnf = *text;
  if (size_t at = cnf.find(kTruncatingRecovery); at != std::string::npos) {
    cnf.erase(at, kTruncatingRecovery.size());
  }
  return write_if_changed(p.role_cnf, cnf, ctx.user);
}

Status mdb_clone_from(const MdbReplContext& ctx, const ReplicationSpec& spec,
                      const std::function<Status(const std::string&)>& fresh_data) {
  CONCORD_RETURN_IF_ERROR(check_replica_spec(spec));
  RPaths p(ctx.config.dir);
  if (path_exists(p.data)) return ok();
  auto log = logger("database.engine");
  CONCORD_RETURN_IF_ERROR(make_dir(p.dir, 0700, ctx.user));
  PrivateMariadb::reap(p.stage, kLoadServer);
  CONCORD_RETURN_IF_ERROR(remove_tree(p.stage));
  auto attempt = [&]() -> Status {
    CONCORD_RETURN_IF_ERROR(make_dir(p.stage, 0700, ctx.user));
    // The password reaches mariadb-dump in a 0600 option file, never in argv (ps shows argv).
    const std::string creds = p.stage + "/upstream.cnf";
    CONCORD_RETURN_IF_ERROR(write_upstream_creds(creds, spec));
    // Logical, over the network: a replica's host cannot read the primary's files. One
    // transaction gives a consistent snapshot of InnoDB; --master-data takes the GTID
    // position of exactly that snapshot. The dump is the only step that touches the upstream,
    // so it goes first: an unreachable upstream costs no template copy.
    const std::string dump = p.stage + "/dump.sql";
    {
      CommandOptions o;
      o.timeout = kCloneTimeout;
      auto r =
          run_command({"/bin/bash", "-o", "pipefail", "-c",
                       "exec \"$1\" --defaults-extra-file=\"$2\" --protocol=TCP --ssl "
                       "--all-databases --single-transaction --gtid --master-data=2 "
                       "--routines --events --triggers --flush-privileges --max-allowed-packet=1G "
                       "> \"$3\"",
                       "dump", prog(ctx, "mariadb-dump"), creds, dump},
                      o);
      if (!r) return fail(r.error());
      if (!r->ok()) {
        return fail(code_for_connect_error(r->err),
                    fmt::format("copying upstream {} ({}:{}) for replica {}: {}",
                                spec.upstream_instance, spec.upstream_address, spec.upstream_port,
                                ctx.config.id, r->describe("mariadb-dump")));
      }
    }
    (void)remove_tree(creds);
    CONCORD_ASSIGN_OR_RETURN(std::string gtid, dump_gtid(dump));
    CONCORD_RETURN_IF_ERROR(chown_tree(dump, ctx.user));
    CONCORD_RETURN_IF_ERROR(fresh_data(p.stage + "/data"));
    CONCORD_ASSIGN_OR_RETURN(std::string log_bin, log_bin_path(ctx));
    {
      PrivateMariadb server(load_server(ctx, p.stage, log_bin));
      CONCORD_RETURN_IF_ERROR(server.start());
      CONCORD_RETURN_IF_ERROR(load_dump(ctx, server, dump));
      CONCORD_RETURN_IF_ERROR(record_copy_position(server, gtid));
      CONCORD_RETURN_IF_ERROR(server.stop());
    }
    (void)remove_tree(dump);
    CONCORD_RETURN_IF_ERROR(write_copy_role(ctx, spec));
    if (::rename((p.stage + "/data").c_str(), p.data.c_str()) != 0) {
      return fail(Code::kInternal,
                  fmt::format("rename {}/data: {}", p.stage, std::strerror(errno)));
    }
    CONCORD_RETURN_IF_ERROR(mdb_mark_replica(ctx, fmt::format("network {}", gtid)));
    log->info("mariadb {}: cloned from {} ({}:{}) at GTID {}", ctx.config.id,
              spec.upstream_instance, spec.upstream_address, spec.upstream_port, gtid);
    return ok();
  };
  auto st = attempt();
  PrivateMariadb::reap(p.stage, kLoadServer);
  (void)remove_tree(p.stage);
  if (!st) log->warn("mariadb {}: clone failed: {}", ctx.config.id, st.error().message());
  return st;
}

void mdb_discard_clone_stage(const InstanceConfig& config) {
  RPaths p(config.dir);
  PrivateMariadb::reap(p.stage, kLoadServer);
  (void)remove_tree(p.stage);
}

Status mdb_finish_seed(const MdbReplContext& ctx, const ReplicationSpec& spec,
                       const std::string& stage, const std::string& gtid) {
  CONCORD_RETURN_IF_ERROR(check_replica_spec(spec));
  if (gtid.empty()) {
    return fail(Code::kFailedPrecondition,
                "the seed's backup records no GTID position to stream on from");
  }
  CONCORD_ASSIGN_OR_RETURN(std::string log_bin, log_bin_path(ctx));
  {
    PrivateMariadb server(load_server(ctx, stage, log_bin));
    CONCORD_RETURN_IF_ERROR(server.start());
    CONCORD_RETURN_IF_ERROR(record_copy_position(server, gtid));
    CONCORD_RETURN_IF_ERROR(server.stop());
  }
  return write_copy_role(ctx, spec);
}

Status mdb_mark_replica(const MdbReplContext& ctx, const std::string& how) {
  RPaths p(ctx.config.dir);
  CONCORD_RETURN_IF_ERROR(write_file_atomic(p.copy, how + "\n", 0600, ctx.user));
  // After the rename: a folder recorded as a replica is always a complete copy.
  return write_file_atomic(p.role, "replica\n", 0600, ctx.user);
}

Result<std::map<std::string, std::string>> mdb_slave_status(const MdbReplContext& ctx) {
  CommandOptions o;
  o.timeout = milliseconds(10000);
  o.stdin_data = "SHOW SLAVE STATUS";
  CONCORD_ASSIGN_OR_RETURN(
      CommandResult r,
      run_command({prog(ctx, "mariadb"), "--no-defaults", "--protocol=SOCKET",
                   "--socket=" + ctx.sock, "--user=root", "--batch", "--connect-timeout=5"},
                  o));
  if (!r.ok()) return fail(Code::kUnavailable, r.describe("mariadb (SHOW SLAVE STATUS)"));
  return first_row(r.out);
}

Status mdb_apply_primary(const MdbReplContext& ctx, const ReplicationSpec* spec) {
  RPaths p(ctx.config.dir);
  auto log = logger("database.engine");
  // A standalone instance that never took part in replication has nothing to undo (and its
  // applies stay as cheap as before replicas existed).
  if (spec == nullptr && mdb_recorded_role(p.dir).empty()) return ok();
  CONCORD_ASSIGN_OR_RETURN(auto slave, mdb_slave_status(ctx));
  std::string sql;
  if (!slave.empty()) {
    // Promotion (or a replica detached to stand alone): it keeps everything it replayed and
    // stops following. Its GTID history continues in its own binlog.
    const auto t0 = std::chrono::steady_clock::now();
    int64_t stopped_ms = 0;
    CONCORD_RETURN_IF_ERROR(drain_relay_log(ctx, slave, stopped_ms));
    sql += "STOP SLAVE;\nRESET SLAVE ALL;\n";
    log->info(
        "mariadb {}: promoted (was replica of {}:{}; relay log drained in {} ms, of which {} ms "
        "stopping the receiver; receiver state was '{}')",
        ctx.config.id, slave["Master_Host"], slave["Master_Port"],
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count(),
        stopped_ms, slave["Slave_IO_State"]);
  }
  // Off before anything else is written by this apply; semi-sync off first when no standby is
  // listed any more, so this apply's own statements do not wait for a standby that is gone.
  sql += "SET GLOBAL read_only = OFF;\nSET GLOBAL rpl_semi_sync_slave_enabled = OFF;\n";
  if (spec == nullptr || spec->synchronous_standbys.empty()) {
    sql = "SET GLOBAL rpl_semi_sync_master_enabled = OFF;\n" + sql;
  }
  const std::string acct = replication_account();
  if (spec != nullptr) {
    const std::string verifier = mdb_literal(mariadb_native_verifier(spec->secret));
    // Written only when it differs: every statement here is binlogged, and with a synchronous
    // standby down a write would wait for it.
    CONCORD_ASSIGN_OR_RETURN(
        std::string have,
        ctx.admin("SELECT COUNT(*) FROM mysql.user WHERE User = " + mdb_literal(kReplicationUser) +
                  " AND Host = '%' AND authentication_string = " + verifier +
                  " AND ssl_type = 'ANY' AND Repl_slave_priv = 'Y' AND Repl_client_priv = 'Y' "
                  "AND Select_priv = 'Y' AND Show_view_priv = 'Y' AND Trigger_priv = 'Y' AND "
                  "Event_priv = 'Y' AND Lock_tables_priv = 'Y' AND Reload_priv = 'Y'"));
    if (have != "1\n") {
      sql += "CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY PASSWORD " + verifier +
             " REQUIRE SSL;\n";
      sql += "ALTER USER " + acct + " IDENTIFIED BY PASSWORD " + verifier + " REQUIRE SSL;\n";
      // Streaming (REPLICATION SLAVE, BINLOG MONITOR) and the consistent copy clone_from
      // takes with mariadb-dump (read everything, FLUSH for --master-data, lock for
      // non-InnoDB tables).
      sql +=
          "GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT, SHOW VIEW, TRIGGER, EVENT, "
          "LOCK TABLES, RELOAD ON *.* TO " +
          acct + ";\n";
    }
  } else {
    // Standalone: no replication account (looked up first, so a standalone instance's apply
    // writes nothing to its binlog for it).
    CONCORD_ASSIGN_OR_RETURN(std::string have,
                             ctx.admin("SELECT COUNT(*) FROM mysql.user WHERE User = " +
                                       mdb_literal(kReplicationUser) + " AND Host = '%'"));
    if (have != "0\n") sql += "DROP USER IF EXISTS " + acct + ";\n";
  }
  CONCORD_ASSIGN_OR_RETURN(std::string out, ctx.admin(sql));
  (void)out;
  CONCORD_RETURN_IF_ERROR(remove_tree(p.upstream));
  if (spec != nullptr) {
    CONCORD_RETURN_IF_ERROR(write_if_changed(p.role, "primary\n", ctx.user));
  } else {
    CONCORD_RETURN_IF_ERROR(remove_tree(p.role));
  }
  return ok();
}

Status mdb_apply_semisync(const MdbReplContext& ctx, const ReplicationSpec* spec) {
  RPaths p(ctx.config.dir);
  if (spec != nullptr && !spec->synchronous_standbys.empty()) {
    CONCORD_ASSIGN_OR_RETURN(
        std::string out, ctx.admin(fmt::format("SET GLOBAL rpl_semi_sync_master_wait_point = "
                                               "AFTER_SYNC;\n"
                                               "SET GLOBAL rpl_semi_sync_master_wait_no_slave "
                                               "= ON;\n"
                                               "SET GLOBAL rpl_semi_sync_master_timeout = {};\n"
                                               "SET GLOBAL rpl_semi_sync_master_enabled = ON;\n",
                                               kSemiSyncTimeoutMs)));
    (void)out;
  }
  return write_if_changed(p.role_cnf, role_text(ctx.config, spec), ctx.user);
}

Status mdb_apply_replica(const MdbReplContext& ctx, const ReplicationSpec& spec) {
  CONCORD_RETURN_IF_ERROR(check_replica_spec(spec));
  RPaths p(ctx.config.dir);
  auto log = logger("database.engine");
  CONCORD_RETURN_IF_ERROR(write_if_changed(p.role_cnf, role_text(ctx.config, &spec), ctx.user));
  const bool sync = listed(spec.synchronous_standbys, ctx.config.id);
  CONCORD_ASSIGN_OR_RETURN(std::string now, ctx.admin("SELECT @@rpl_semi_sync_slave_enabled"));
  const bool sync_changed = now != (sync ? "1\n" : "0\n");
  std::string sql = fmt::format(
      "SET GLOBAL read_only = ON;\nSET GLOBAL rpl_semi_sync_master_enabled = OFF;\n"
      "SET GLOBAL rpl_semi_sync_slave_enabled = {};\n",
      sync ? "ON" : "OFF");
  CONCORD_ASSIGN_OR_RETURN(auto slave, mdb_slave_status(ctx));
  auto recorded = read_file(p.upstream);
  const std::string want = upstream_record(spec);
  const bool same_upstream = !slave.empty() && recorded && *recorded == want &&
                             slave["Master_Host"] == spec.upstream_address &&
                             slave["Master_Port"] == std::to_string(spec.upstream_port) &&
                             slave["Master_User"] == kReplicationUser &&
                             slave["Using_Gtid"] == "Slave_Pos" &&
                             slave["Master_SSL_Allowed"] == "Yes";
  if (!same_upstream) {
    // Re-pointing keeps the GTID slave position: the new upstream (a promoted sibling with
    // log_slave_updates) has this member's history in its binlog.
    if (!slave.empty()) sql += "STOP SLAVE;\n";
    sql += fmt::format(
        "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, "
        "MASTER_PASSWORD = {}, MASTER_USE_GTID = slave_pos, MASTER_SSL = 1, "
        "MASTER_CONNECT_RETRY = {}, MASTER_HEARTBEAT_PERIOD = {};\n",
        mdb_literal(spec.upstream_address), spec.upstream_port, mdb_literal(kReplicationUser),
        mdb_literal(spec.secret), kConnectRetrySeconds, kNetTimeoutSeconds / 2);
    sql += "START SLAVE;\n";
    log->info("mariadb {}: replicating from {} ({}:{})", ctx.config.id, spec.upstream_instance,
              spec.upstream_address, spec.upstream_port);
  } else if (sync_changed && slave["Slave_IO_Running"] != "No") {
    // The slave side of semi-sync is negotiated when the IO thread connects.
    sql += "STOP SLAVE IO_THREAD;\nSTART SLAVE;\n";
  } else if (slave["Slave_IO_Running"] == "No" || slave["Slave_SQL_Running"] == "No") {
    sql += "START SLAVE;\n";
  }
  CONCORD_ASSIGN_OR_RETURN(std::string out, ctx.admin(sql));
  (void)out;
  return write_if_changed(p.upstream, want, ctx.user);
}

Result<std::string> mdb_replica_broken(const MdbReplContext& ctx, const ReplicationSpec& spec) {
  CONCORD_ASSIGN_OR_RETURN(auto slave, mdb_slave_status(ctx));
  auto recorded = read_file(RPaths(ctx.config.dir).upstream);
  if (slave.empty() || !recorded || *recorded != upstream_record(spec)) return std::string();
  return broken_reason(slave);
}

void mdb_replication_health(const MdbReplContext& ctx, Health& health) {
  if (mdb_recorded_role(ctx.config.dir).empty()) {
    health.role = "primary";  // standalone: never a replica's copy, never pointed anywhere
    return;
  }
  auto slave = mdb_slave_status(ctx);
  if (!slave) return;
  if (slave->empty()) {
    // A demoted primary waiting for its upstream's promotion (mdb_follow_own_history) is a
    // replica already, read-only, just not streaming.
    health.role = mdb_recorded_role(ctx.config.dir) == "replica" ? "replica" : "primary";
    return;
  }
  health.role = "replica";
  health.replication_streaming =
      (*slave)["Slave_IO_Running"] == "Yes" && (*slave)["Slave_SQL_Running"] == "Yes";
  const std::string& lag = (*slave)["Seconds_Behind_Master"];
  health.replication_lag_seconds = -1;
  if (!lag.empty() && lag != "NULL" &&
      std::all_of(lag.begin(), lag.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    health.replication_lag_seconds = std::stoll(lag);
  }
  health.replication_broken = broken_reason(*slave);
}

}  // namespace concord::database::engine::detail

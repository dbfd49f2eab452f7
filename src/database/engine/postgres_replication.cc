// PostgreSQL replication files and the clone of a replica's data folder. See
// postgres_replication.h for the files; docs/design/database.md, "Read replicas: PostgreSQL",
// for the whole design.
#include "database/engine/postgres_replication.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>

#include "base/encoding.h"
#include "base/log.h"
#include "database/engine/parameters.h"
#include "database/engine/postgres_common.h"
#include "fmt/format.h"

namespace concord::database::engine::detail {
namespace {

using std::chrono::milliseconds;

// A base backup of a large instance takes long; a dead upstream is noticed by the connection
// and by pg_basebackup's own replication timeout well before this.
constexpr milliseconds kCloneTimeout{6 * 3600 * 1000};
constexpr int kConnectTimeoutS = 10;

struct RPaths {
  explicit RPaths(const std::string& d)
      : dir(d),
        data(d + "/data"),
        clone_tmp(d + "/clone.tmp"),
        passfile(d + "/replication.pgpass") {}
  std::string dir, data, clone_tmp, passfile;
};

// A libpq conninfo value.
std::string conninfo_quote(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// A libpq passfile field: ':' and '\' are escaped with a backslash.
std::string passfile_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string upstream_conninfo(const PgBackupContext& ctx, const ReplicationSpec& spec) {
  // sslmode=prefer: the members' certificates are self-signed per instance, so TLS protects the
  // stream from passive readers without a CA to verify against; the password never crosses in
  // clear either way (SCRAM).
  return fmt::format(
      "host={} port={} user={} passfile={} application_name={} sslmode=prefer "
      "connect_timeout={}",
      conninfo_quote(spec.upstream_address), spec.upstream_port, conninfo_quote(kReplicationUser),
      conninfo_quote(RPaths(ctx.config.dir).passfile), conninfo_quote(ctx.config.id),
      kConnectTimeoutS);
}

Status write_passfile(const PgBackupContext& ctx, const ReplicationSpec& spec) {
  const std::string path = RPaths(ctx.config.dir).passfile;
  const std::string text =
      fmt::format("*:*:*:{}:{}\n", kReplicationUser, passfile_escape(spec.secret));
  if (auto old = read_file(path); old && *old == text) return ok();
  // 0600 and the engine user's: libpq ignores a passfile others can read.
  return write_file_atomic(path, text, 0600, ctx.user);
}

Status check_upstream(const ReplicationSpec& spec) {
  if (spec.upstream_address.empty() || spec.upstream_port <= 0 || spec.upstream_port > 65535) {
    return fail(Code::kInvalidArgument,
                fmt::format("replication: no upstream address and port for upstream '{}'",
                            spec.upstream_instance));
  }
  if (spec.secret.empty()) {
    return fail(Code::kInvalidArgument, "replication: the replication secret is empty");
  }
  if (spec.secret.find('\n') != std::string::npos) {
    return fail(Code::kInvalidArgument, "replication: the replication secret holds a line break");
  }
  return ok();
}

// What pg_basebackup says when the upstream is not (yet) ready for us: down, starting,
// without our slot or account yet (its apply has not run), or not reloaded its pg_hba.
bool upstream_not_ready(std::string_view err) {
  for (std::string_view s :
       {"could not connect", "Connection refused", "timeout expired", "No route to host",
        "could not translate host name", "does not exist", "no pg_hba.conf entry",
        "password authentication failed", "the database system is starting up",
        "the database system is shutting down", "server closed the connection",
        "could not send replication command", "too many connections",
        "number of requested standby connections exceeds", "is active for PID"}) {
    if (err.find(s) != std::string_view::npos) return true;
  }
  return false;
}

Status ensure_include(const std::string& data, const OsUser& user) {
  const std::string main_conf = data + "/postgresql.conf";
  CONCORD_ASSIGN_OR_RETURN(std::string text, read_file(main_conf));
  const std::string line = "include_if_exists = 'concord_replication.conf'";
  if (text.find(line) != std::string::npos) return ok();
  if (!text.empty() && text.back() != '\n') text += '\n';
  text += line + "\n";
  return write_file_atomic(main_conf, text, 0600, user);
}

// Sets up `data`, a folder that now holds the upstream's files (a base backup, a rewind), to
// start as the upstream's replica: the upstream's run-time and recovery leftovers go; its own
// configuration files are rewritten for this instance by prepare().
Status make_standby_of(const PgBackupContext& ctx, const ReplicationSpec& spec,
                       const std::string& data) {
  for (const char* stale : {"postmaster.pid", "postmaster.opts", "recovery.signal"}) {
    CONCORD_RETURN_IF_ERROR(remove_tree(data + "/" + stale));
  }
  if (path_exists(data + "/concord_recovery.conf")) {
    CONCORD_RETURN_IF_ERROR(write_file_atomic(data + "/concord_recovery.conf",
                                              "# Written by Concord: no point-in-time "
                                              "recovery.\n",
                                              0600, ctx.user));
  }
  CONCORD_RETURN_IF_ERROR(write_file_atomic(data + "/standby.signal", "", 0600, ctx.user));
  CONCORD_ASSIGN_OR_RETURN(bool changed, pg_write_replication_files(ctx, &spec, data));
  (void)changed;
  // Records about the folder being replaced describe nothing in the new one.
  return remove_tree(RPaths(ctx.config.dir).dir + "/applied_revision");
}

// Gives every file in `dir` that shares its inode with another name (a WAL segment archived by
// a hard link) an inode of its own: a copy, synced, then renamed over it.
Status break_hard_links(const std::string& dir, const OsUser& owner) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink < 2) {
      continue;
    }
    const std::string path = entry.path().string();
    const std::string tmp = path + ".concord-own";
    std::filesystem::copy_file(path, tmp, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return fail(Code::kInternal, fmt::format("copy {}: {}", path, ec.message()));
    int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!synced || ::chown(tmp.c_str(), owner.uid, owner.gid) != 0 ||
        ::chmod(tmp.c_str(), st.st_mode & 07777) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
      return fail(Code::kInternal, fmt::format("{}: {}", tmp, std::strerror(errno)));
    }
  }
  if (ec) return fail(Code::kInternal, fmt::format("list {}: {}", dir, ec.message()));
  return ok();
}

using UpstreamConn = std::unique_ptr<PGconn, void (*)(PGconn*)>;

// A libpq connection to the upstream in `spec` as the replication account: a replication
// connection, or one to the database postgres.
UpstreamConn connect_upstream(const PgBackupContext& ctx, const ReplicationSpec& spec,
                              bool replication) {
  const std::string port = std::to_string(spec.upstream_port);
  const std::string timeout = std::to_string(kConnectTimeoutS);
  const std::string user(kReplicationUser);
  // In memory through libpq's parameters: the secret is never on a command line.
  const char* keys[] = {"host",
                        "port",
                        "user",
                        "password",
                        "replication",
                        "dbname",
                        "sslmode",
                        "connect_timeout",
                        "application_name",
                        nullptr};
  const char* values[] = {spec.upstream_address.c_str(),
                          port.c_str(),
                          user.c_str(),
                          spec.secret.c_str(),
                          replication ? "true" : "false",
                          replication ? "replication" : "postgres",
                          "prefer",
                          timeout.c_str(),
                          ctx.config.id.c_str(),
                          nullptr};
  return UpstreamConn(PQconnectdbParams(keys, values, 0), PQfinish);
}

std::string upstream_error(const PgBackupContext& ctx, const ReplicationSpec& spec,
                           std::string_view what, PGconn* conn) {
  std::string msg = PQerrorMessage(conn);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  return fmt::format("postgresql {}: {} upstream {} ({}:{}): {}", ctx.config.id, what,
                     spec.upstream_instance, spec.upstream_address, spec.upstream_port, msg);
}

// A CHECKPOINT on the upstream, which pg_rewind needs after a promotion: it reads the upstream's
// timeline from its control file, which a promotion updates only at the checkpoint that
// follows, a spread one (the manual asks for this). The replication account may, by
// pg_checkpoint. kUnavailable when it cannot be reached.
Status checkpoint_upstream(const PgBackupContext& ctx, const ReplicationSpec& spec) {
  UpstreamConn conn = connect_upstream(ctx, spec, false);
  if (!conn) return fail(Code::kInternal, "libpq: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return fail(Code::kUnavailable, upstream_error(ctx, spec, "connecting to", conn.get()));
  }
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(conn.get(), "CHECKPOINT"), PQclear);
  if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    return fail(Code::kFailedPrecondition,
                upstream_error(ctx, spec, "a checkpoint on", conn.get()));
  }
  return ok();
}

}  // namespace

std::string pg_slot_name(std::string_view instance_id) {
  std::string out(kPgSlotPrefix);
  for (char c : instance_id) {
    out += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string pg_synchronous_standby_names(const std::vector<std::string>& ids) {
  if (ids.empty()) return "";
  std::string list;
  for (const auto& id : ids) {
    if (!list.empty()) list += ", ";
    list += '"';
    for (char c : id) {
      if (c == '"') list += '"';
      list += c;
    }
    list += '"';
  }
  return "FIRST 1 (" + list + ")";
}

std::string pg_replication_conf(const PgBackupContext& ctx, const ReplicationSpec* spec) {
  if (spec == nullptr) {
    return "# Written by Concord: a standalone instance (no replication).\n";
  }
  // The WAL every member keeps past its last checkpoint, so that after a fork pg_rewind still
  // finds its own WAL back to the last checkpoint the histories share (a demoted primary's
  // shutdown checkpoint would otherwise remove it; a fork further back is copied anew). The
  // volume's WAL budget, its default max_wal_size: checkpoints come about that often in WAL, so
  // the shared one lies about that far back at most (unless a configuration group raises
  // max_wal_size). 64 MB was too little: in the rewind bench, forks lay 77-95 MB past the
  // shared checkpoint after 3-4 s of load, and 6 of 18 rewinds in five runs failed.
  const std::string keep = fmt::format("{}MB", pg_wal_budget_mb(ctx.config.volume_gb));
  if (spec->role == ReplicationSpec::Role::kPrimary) {
    // synchronous_commit = on: with a standby named, a commit returns once that standby has
    // flushed it, so a failover to it loses no acknowledged commit. wal_sender_timeout 10 s,
    // not 60: a sender whose standby went silent holds that standby's slot until it times out,
    // and the standby cannot stream again before (reloadable, as every parameter here).
    return fmt::format(
        "# Written by Concord: the primary of a replication group.\n"
        "synchronous_standby_names = {}\n"
        "synchronous_commit = on\n"
        "wal_sender_timeout = '10s'\n"
        "wal_keep_size = '{}'\n",
        pg_conf_quote(pg_synchronous_standby_names(spec->synchronous_standbys)), keep);
  }
  // hot_standby is not set here: it is on by default (read-only queries on the replica) and the
  // clone empties concord_recovery.conf, the only file that turns it off. Naming a
  // restart-only parameter here would make a later promotion, which drops this text, report a
  // pending restart for a value that never changed. wal_retrieve_retry_interval (reloadable)
  // is 1 s, not 5: a replica re-pointed to a sibling just promoted may connect before that
  // sibling has made its slot, and then catches up within a second of the slot, not five.
  // wal_receiver_timeout 5 s, not 60: a replica cut off from its upstream without a reset (a
  // silent link, a stopped sender) stops streaming after that long and its agent reports it,
  // and while it is the synchronous standby the primary's commits wait until the server stops
  // waiting for it (docs/design/database.md, "High availability"). The upstream's sender
  // answers the receiver's pings at half that.
  return fmt::format(
      "# Written by Concord: a replica of instance {}.\n"
      "primary_conninfo = {}\n"
      "primary_slot_name = {}\n"
      "wal_retrieve_retry_interval = '1s'\n"
      "wal_receiver_timeout = '5s'\n"
      "synchronous_standby_names = ''\n"
      "wal_keep_size = '{}'\n",
      spec->upstream_instance, pg_conf_quote(upstream_conninfo(ctx, *spec)),
      pg_conf_quote(pg_slot_name(ctx.config.id)), keep);
}

Result<bool> pg_write_replication_files(const PgBackupContext& ctx, const ReplicationSpec* spec,
                                        const std::string& data) {
  if (spec != nullptr && spec->role == ReplicationSpec::Role::kReplica) {
    CONCORD_RETURN_IF_ERROR(check_upstream(*spec));
    CONCORD_RETURN_IF_ERROR(write_passfile(ctx, *spec));
  }
  const std::string path = data + "/concord_replication.conf";
  const std::string text = pg_replication_conf(ctx, spec);
  auto current = read_file(path);
  bool changed = !current || *current != text;
  if (changed) CONCORD_RETURN_IF_ERROR(write_file_atomic(path, text, 0600, ctx.user));
  CONCORD_RETURN_IF_ERROR(ensure_include(data, ctx.user));
  return changed;
}

Result<bool> pg_ensure_replication_hba(const PgBackupContext& ctx) {
  const std::string path = RPaths(ctx.config.dir).data + "/pg_hba.conf";
  CONCORD_ASSIGN_OR_RETURN(std::string text, read_file(path));
  if (text.find(kPgReplicationHbaLine) != std::string::npos) return false;
  if (!text.empty() && text.back() != '\n') text += '\n';
  text += std::string(kPgReplicationHbaLine) + "\n";
  CONCORD_RETURN_IF_ERROR(write_file_atomic(path, text, 0600, ctx.user));
  return true;
}

Status pg_clone_data(const PgBackupContext& ctx, const ReplicationSpec& spec) {
  RPaths p(ctx.config.dir);
  if (path_exists(p.data)) return ok();  // appears only complete (one rename, below)
  CONCORD_RETURN_IF_ERROR(check_upstream(spec));
  auto log = logger("database.engine");

  // Whatever a killed clone left is redone from scratch.
  CONCORD_RETURN_IF_ERROR(make_dir(p.dir, 0700, ctx.user));
  CONCORD_RETURN_IF_ERROR(remove_tree(p.clone_tmp));
  CONCORD_RETURN_IF_ERROR(make_dir(p.clone_tmp, 0700, ctx.user));
  CONCORD_RETURN_IF_ERROR(write_passfile(ctx, spec));
  const std::string data = p.clone_tmp + "/data";
  auto attempt = [&]() -> Status {
    CommandOptions o;
    o.as = ctx.user;
    o.timeout = kCloneTimeout;
    o.cwd = p.clone_tmp;
    // The password is read from the passfile by libpq: never on a command line. The slot is the
    // primary's (made by its apply from its list of replicas), so WAL streamed during the copy
    // and after it is kept for this replica from the first byte on.
    auto r = run_command(
        {ctx.bin_dir + "/pg_basebackup", "-D", data, "-d", upstream_conninfo(ctx, spec), "-X",
         "stream", "-S", pg_slot_name(ctx.config.id), "-c", "fast", "--no-password"},
        o);
    if (!r) return fail(r.error());
    if (!r->ok()) {
      std::string why = r->describe("pg_basebackup");
      return fail(
          upstream_not_ready(r->err) ? Code::kUnavailable : Code::kInternal,
          fmt::format("postgresql {}: cloning from {} ({}:{}): {}", ctx.config.id,
                      spec.upstream_instance, spec.upstream_address, spec.upstream_port, why));
    }
    auto version = read_file(data + "/PG_VERSION");
    if (!version || version->substr(0, version->find('\n')) != ctx.config.version) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("postgresql {}: upstream {} is not PostgreSQL {}", ctx.config.id,
                              spec.upstream_instance, ctx.config.version));
    }
    CONCORD_RETURN_IF_ERROR(make_standby_of(ctx, spec, data));
    if (::rename(data.c_str(), p.data.c_str()) != 0) {
      return fail(Code::kInternal, fmt::format("rename {}: {}", data, std::strerror(errno)));
    }
    return ok();
  };
  auto st = attempt();
  (void)remove_tree(p.clone_tmp);
  if (!st) {
    log->warn("postgresql {}: clone from {} failed: {}", ctx.config.id, spec.upstream_instance,
              st.error().message());
    return st;
  }
  log->info("postgresql {}: cloned from {} ({}:{})", ctx.config.id, spec.upstream_instance,
            spec.upstream_address, spec.upstream_port);
  // A rebuild's old folder, also when the copy was finished by a later start (a demoted
  // primary's copy waits for the promotion), and what a rewind cut short left: the new one is
  // complete, the old ones only take room on the volume.
  (void)remove_tree(p.dir + "/data.old");
  (void)remove_tree(p.dir + "/data.rewind");
  return ok();
}

Result<PgRewind> pg_rewind_data(const PgBackupContext& ctx, const ReplicationSpec& spec,
                                const std::string& target) {
  CONCORD_RETURN_IF_ERROR(check_upstream(spec));
  CONCORD_RETURN_IF_ERROR(write_passfile(ctx, spec));
  CONCORD_RETURN_IF_ERROR(checkpoint_upstream(ctx, spec));
  CONCORD_RETURN_IF_ERROR(break_hard_links(target + "/pg_wal", ctx.user));
  CommandOptions o;
  o.as = ctx.user;
  o.timeout = kCloneTimeout;
  o.cwd = RPaths(ctx.config.dir).dir;
  // --no-ensure-shutdown: the caller stopped the folder cleanly; one that was not is copied
  // instead of being recovered here in single-user mode (which refuses standby.signal anyway).
  auto r = run_command({ctx.bin_dir + "/pg_rewind", "--target-pgdata=" + target,
                        "--source-server=" + upstream_conninfo(ctx, spec) + " dbname=postgres",
                        "--no-ensure-shutdown"},
                       o);
  if (!r) return fail(r.error());
  if (!r->ok()) {
    // pg_rewind connects before it reads or changes anything.
    bool untouched =
        upstream_not_ready(r->err) && r->err.find("connected to server") == std::string::npos;
    return fail(untouched ? Code::kUnavailable : Code::kInternal,
                fmt::format("postgresql {}: rewinding onto {} ({}:{}): {}", ctx.config.id,
                            spec.upstream_instance, spec.upstream_address, spec.upstream_port,
                            r->describe("pg_rewind")));
  }
  if ((r->out + r->err).find("no rewind required") != std::string::npos) {
    return PgRewind::kNothingToRewind;
  }
  CONCORD_RETURN_IF_ERROR(make_standby_of(ctx, spec, target));
  return PgRewind::kRewound;
}

std::string pg_broken_in_log(std::string_view tail) {
  if (size_t start = tail.rfind("starting PostgreSQL"); start != std::string_view::npos) {
    tail.remove_prefix(start);
  }
  // What the walreceiver or the startup process says, from where the quoted text begins. A
  // fork is for good (our position never moves back, the upstream's history never changes),
  // even when the walreceiver streams the common part again at each retry; a removed segment
  // is not once streaming started after it.
  struct Break {
    std::string_view from, until, why;
    bool for_good;
  };
  static constexpr Break kBreaks[] = {
      {"requested WAL segment", "has already been removed",
       "the upstream no longer has the WAL it needs", false},
      // The upstream, asked for our position on our timeline, forked before it.
      {"requested starting point", "is not in this server's history",
       "its history forked from the upstream's", true},
      // The upstream's new timeline (its history file), read here, forked before our position.
      {"new timeline", "before current recovery point", "its history forked from the upstream's",
       true},
      // Not a copy of the upstream at all (made from another host's initdb template).
      {"database system identifier differs", "database system identifier differs",
       "it is not a copy of the upstream", true},
  };
  const size_t streaming = tail.rfind("started streaming WAL");
  const Break* last = nullptr;
  size_t last_at = 0;
  for (const Break& b : kBreaks) {
    const size_t at = tail.rfind(b.until);
    if (at == std::string_view::npos) continue;
    if (!b.for_good && streaming != std::string_view::npos && streaming > at) continue;
    if (last == nullptr || at > last_at) {
      last = &b;
      last_at = at;
    }
  }
  if (last == nullptr) return "";
  size_t from = tail.rfind(last->from, last_at);
  if (from == std::string_view::npos) from = last_at;
  // With the position that follows on the same line, if any.
  size_t until = last_at + last->until.size();
  until = std::min({tail.find('\n', until), until + 40, tail.size()});
  return fmt::format("{} ({})", last->why, tail.substr(from, until - from));
}

bool pg_parse_lsn(std::string_view text, uint64_t* out) {
  unsigned hi = 0, lo = 0;
  std::string t(text);
  if (std::sscanf(t.c_str(), "%X/%X", &hi, &lo) != 2) return false;
  *out = (static_cast<uint64_t>(hi) << 32) | lo;
  return true;
}

bool pg_can_follow(uint32_t timeline, uint64_t replay_lsn, uint32_t upstream_timeline,
                   std::string_view upstream_history) {
  if (upstream_timeline == timeline) return true;
  if (upstream_timeline < timeline) return false;
  // Lines "<parent timeline>\t<switchpoint>\t<reason>"; comments and blank lines skipped.
  std::istringstream in{std::string(upstream_history)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    uint32_t tli = 0;
    std::string lsn_text;
    if (!(fields >> tli >> lsn_text)) continue;
    if (tli != timeline) continue;
    uint64_t switchpoint = 0;
    if (!pg_parse_lsn(lsn_text, &switchpoint)) return false;
    return replay_lsn <= switchpoint;
  }
  return false;
}

Result<PgUpstreamTimeline> pg_upstream_timeline(const PgBackupContext& ctx,
                                                const ReplicationSpec& spec) {
  CONCORD_RETURN_IF_ERROR(check_upstream(spec));
  UpstreamConn conn = connect_upstream(ctx, spec, true);
  if (!conn) return fail(Code::kInternal, "libpq: out of memory");
  auto failed = [&](std::string_view what) {
    return fail(Code::kUnavailable, upstream_error(ctx, spec, what, conn.get()));
  };
  if (PQstatus(conn.get()) != CONNECTION_OK) return failed("connecting to");
  using Res = std::unique_ptr<PGresult, void (*)(PGresult*)>;
  Res ident(PQexec(conn.get(), "IDENTIFY_SYSTEM"), PQclear);
  if (!ident || PQresultStatus(ident.get()) != PGRES_TUPLES_OK || PQntuples(ident.get()) != 1 ||
      PQnfields(ident.get()) < 2) {
    return failed("IDENTIFY_SYSTEM on");
  }
  PgUpstreamTimeline out;
  out.system_id = PQgetvalue(ident.get(), 0, 0);
  out.timeline = static_cast<uint32_t>(std::strtoul(PQgetvalue(ident.get(), 0, 1), nullptr, 10));
  if (out.timeline == 0) {
    return fail(Code::kInternal,
                fmt::format("postgresql {}: upstream {} reported timeline '{}'", ctx.config.id,
                            spec.upstream_instance, PQgetvalue(ident.get(), 0, 1)));
  }
  if (out.timeline > 1) {
    Res hist(PQexec(conn.get(), fmt::format("TIMELINE_HISTORY {}", out.timeline).c_str()), PQclear);
    if (!hist || PQresultStatus(hist.get()) != PGRES_TUPLES_OK || PQntuples(hist.get()) != 1 ||
        PQnfields(hist.get()) < 2) {
      return failed("TIMELINE_HISTORY on");
    }
    // The walsender sends the file as is, though typed bytea; decode in case a later server
    // escapes it.
    std::string content(PQgetvalue(hist.get(), 0, 1), PQgetlength(hist.get(), 0, 1));
    if (content.starts_with("\\x")) {
      if (auto raw = hex_decode(std::string_view(content).substr(2))) content = *raw;
    }
    out.history = std::move(content);
  }
  return out;
}

}  // namespace concord::database::engine::detail

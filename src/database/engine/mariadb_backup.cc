// MariaDB backups: mariadb-backup into a target folder, packed as one zstd tar; restore
// unpacks and prepares as the engine user and, for a point in time, replays the source's
// shipped binlogs with mariadb-binlog into a private server on the staging folder. See
// mariadb_backup.h for the files.
#include "database/engine/mariadb_backup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/json.h"
#include "base/log.h"
#include "database/engine/backup_util.h"
#include "database/engine/mariadb_common.h"
#include "fmt/format.h"

namespace concord::database::engine::detail {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kFormat = "concord-mariadb-backup-1";
constexpr std::string_view kBinlogBase = "mariadb-bin";
constexpr milliseconds kBackupTimeout{6 * 3600 * 1000};
// As PostgreSQL's archive_timeout: a binlog with events is closed and shipped at least this
// often, bounding what a point-in-time restore can lose (plus the shipping interval).
constexpr int64_t kArchiveIntervalUs = 60'000'000;

struct MPaths {
  explicit MPaths(const std::string& d)
      : dir(d),
        data(d + "/data"),
        binlog(d + "/binlog"),
        flushed(d + "/binlog/flushed"),
        shipped(d + "/binlog/shipped"),
        conf(d + "/concord_binlog.cnf"),
        backup_tmp(d + "/backup.tmp"),
        restore_tmp(d + "/restore.tmp") {}
  std::string dir, data, binlog, flushed, shipped, conf, backup_tmp, restore_tmp;
};

std::string prog(const MdbBackupContext& ctx, const char* name) {
  return mdb_program(ctx.bin_dir, name);
}

CommandOptions as_user(const MdbBackupContext& ctx, milliseconds timeout) {
  CommandOptions o;
  o.as = ctx.user;
  o.timeout = timeout;
  o.cwd = ctx.config.dir;
  return o;
}

// "mariadb-bin.000012" -> 12; -1 for anything else (the index, our marker).
int64_t binlog_number(std::string_view name) {
  std::string prefix = std::string(kBinlogBase) + ".";
  if (!name.starts_with(prefix) || name.size() != prefix.size() + 6) return -1;
  int64_t n = 0;
  for (char c : name.substr(prefix.size())) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

// "key = value" lines of mariadb-backup's xtrabackup_checkpoints.
std::string checkpoint_value(const std::string& text, std::string_view key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find(" = ");
    if (eq != std::string::npos && line.substr(0, eq) == key) return line.substr(eq + 3);
  }
  return "";
}

std::string jstr(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
int64_t jint(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// SHOW MASTER STATUS: the current binlog and position.
Result<std::pair<std::string, int64_t>> master_status(const MdbBackupContext& ctx) {
  CONCORD_ASSIGN_OR_RETURN(std::string out, ctx.admin("SHOW MASTER STATUS"));
  std::istringstream in(out);
  std::string file;
  int64_t pos = 0;
  if (!(in >> file >> pos) || binlog_number(file) < 0) {
    return fail(Code::kFailedPrecondition,
                fmt::format("mariadb {}: binary logging is off (SHOW MASTER STATUS: '{}'); "
                            "restart the instance to enable it",
                            ctx.config.id, out.substr(0, 200)));
  }
  return std::pair{file, pos};
}

}  // namespace

Status mdb_configure_binlog(const MdbBackupContext& ctx) {
  MPaths p(ctx.config.dir);
  CONCORD_RETURN_IF_ERROR(make_dir(p.binlog, 0700, ctx.user));
  // Outside the data folder: binlogs are not part of a backup, and a restore's data folder
  // must not inherit the source's.
  const std::string text = fmt::format(
      "# Written by Concord: binary logs for point-in-time restore.\n"
      "[mariadbd]\n"
      "log_bin = {}/{}\n"
      "log_bin_index = {}/{}.index\n"
      "server_id = 1\n"
      "binlog_format = ROW\n",
      p.binlog, kBinlogBase, p.binlog, kBinlogBase);
  auto current = read_file(p.conf);
  if (current && *current == text) return ok();
  return write_file_atomic(p.conf, text, 0600, ctx.user);
}

std::pair<int64_t, int64_t> mdb_binlog_commit_range(const MdbBackupContext& ctx,
                                                    const std::string& path) {
  CommandOptions o;
  o.timeout = milliseconds(120000);
  auto r = run_command({"/usr/bin/env", "TZ=UTC", prog(ctx, "mariadb-binlog"), "--no-defaults",
                        "--base64-output=decode-rows", path},
                       o);
  if (!r) return {0, 0};
  // decode-rows without --verbose drops the row images; the event headers stay:
  // "#YYMMDD HH:MM:SS server id 1  end_log_pos 400 CRC32 0x...  Xid = 12".
  int64_t first = 0, last = 0;
  std::istringstream in(r->out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 16 || line[0] != '#' || line.find(" server id ") == std::string::npos) {
      continue;
    }
    if (line.find("Xid = ") == std::string::npos && line.find("\tQuery\t") == std::string::npos) {
      continue;
    }
    std::string when = fmt::format("20{}-{}-{} {}", line.substr(1, 2), line.substr(3, 2),
                                   line.substr(5, 2), line.substr(8, 8));
    int64_t t = parse_utc_us(when);
    if (t == 0) continue;
    if (first == 0 || t < first) first = t;
    last = std::max(last, t);
  }
  return {first, last};
}

Result<BackupInfo> mdb_backup(const MdbBackupContext& ctx, const BackupRequest& request,
                              const std::string& out_path) {
  MPaths p(ctx.config.dir);
  if (out_path.empty()) return fail(Code::kInvalidArgument, "backup: empty output path");
  CONCORD_RETURN_IF_ERROR(remove_tree(p.backup_tmp));
  CONCORD_RETURN_IF_ERROR(make_dir(p.backup_tmp, 0700, ctx.user));
  auto cleanup = [&] { (void)remove_tree(p.backup_tmp); };
  const std::string out = p.backup_tmp + "/out";
  // Incremental: only the pages changed since the parent's to_lsn. A parent we cannot read
  // (not ours, no LSN) gets a full backup instead, reported as such.
  std::string parent_lsn;
  if (!request.parent_id.empty()) {
    auto parent = parse_json(request.parent_meta_json.empty() ? "{}" : request.parent_meta_json);
    if (parent && parent->is_object() && jstr(*parent, "format") == kFormat) {
      parent_lsn = jstr(*parent, "to_lsn");
    }
  }
  const bool incremental =
      !parent_lsn.empty() && std::all_of(parent_lsn.begin(), parent_lsn.end(),
                                         [](char c) { return c >= '0' && c <= '9'; });
  // As OS root, which unix_socket maps to root@localhost; it reads the data files directly.
  std::vector<std::string> argv = {
      prog(ctx, "mariadb-backup"), "--defaults-file=" + ctx.cnf, "--backup",
      "--target-dir=" + out,       "--socket=" + ctx.sock,       "--user=root"};
  if (incremental) argv.push_back("--incremental-lsn=" + parent_lsn);
  auto r = run_command(argv, CommandOptions{.timeout = kBackupTimeout});
  const int64_t consistent_at = now_us();
  if (!r || !r->ok()) {
    cleanup();
    if (!r) return fail(r.error());
    // Not answering is worth retrying; anything else (disk full, a broken folder) is the
    // backup's failure.
    const bool transient = r->err.find("Failed to connect") != std::string::npos ||
                           r->err.find("Can't connect") != std::string::npos;
    return fail(r->timed_out ? Code::kDeadlineExceeded
                : transient  ? Code::kUnavailable
                             : Code::kInternal,
                fmt::format("mariadb {}: {}", ctx.config.id, r->describe("mariadb-backup")));
  }
  auto checkpoints = read_file(out + "/xtrabackup_checkpoints");
  const std::string to_lsn = checkpoints ? checkpoint_value(*checkpoints, "to_lsn") : "";
  if (to_lsn.empty()) {
    cleanup();
    return fail(Code::kInternal, fmt::format("mariadb {}: mariadb-backup wrote no "
                                             "xtrabackup_checkpoints with to_lsn",
                                             ctx.config.id));
  }
  std::string binlog_file;
  int64_t binlog_pos = 0;
  std::string gtid;
  if (auto info = read_file(out + "/xtrabackup_binlog_info")) {
    std::istringstream in(*info);
    in >> binlog_file >> binlog_pos >> gtid;
  }
  // zstd level 1 (-1): fast on the host's cores, and InnoDB pages compress well.
  auto t =
      run_checked({"tar", "--use-compress-program=zstd -1 -T1", "-cf", out_path, "-C", out, "."},
                  CommandOptions{.timeout = kBackupTimeout});
  cleanup();
  if (!t) {
    (void)remove_tree(out_path);
    return fail(Code::kInternal, fmt::format("mariadb {}: packing the backup: {}", ctx.config.id,
                                             t.error().message()));
  }
  const std::string kind = incremental ? "incremental" : "full";
  Json meta = {{"format", kFormat},
               {"kind", kind},
               {"version", ctx.config.version},
               {"compression", "zstd"},
               {"from_lsn", checkpoint_value(*checkpoints, "from_lsn")},
               {"to_lsn", to_lsn},
               {"binlog_file", binlog_file},
               {"binlog_pos", binlog_pos},
               {"gtid", gtid},
               {"consistent_at_us", consistent_at}};
  if (incremental) meta["parent_id"] = request.parent_id;
  BackupInfo info;
  info.kind = kind;
  info.consistent_at_us = consistent_at;
  info.meta_json = dump_json(meta);
  logger("database.engine")
      ->info("mariadb {}: backup {} done ({}{})", ctx.config.id, request.id, info.meta_json,
             request.parent_id.empty() || incremental ? "" : "; parent unusable, made full");
  return info;
}

namespace {

constexpr std::string_view kReplayServer = "replay";

// The private server a point-in-time restore replays binlogs into, on the staging folder.
PrivateMariadb::Options replay_server(const MdbBackupContext& ctx, const std::string& staging) {
  PrivateMariadb::Options o;
  o.folder = staging;
  o.name = kReplayServer;
  o.what = "the replay server";
  o.bin_dir = ctx.bin_dir;
  o.user = ctx.user;
  o.start_timeout = ctx.start_timeout;
  o.server_args = {"--innodb-buffer-pool-size=64M"};
  return o;
}

}  // namespace

Status mdb_restore_data(const MdbBackupContext& ctx, const RestoreSpec& spec,
                        Transport& transport) {
  MPaths p(ctx.config.dir);
  if (path_exists(p.data)) return ok();  // appears only complete (one rename, below)
  CONCORD_RETURN_IF_ERROR(check_shell_safe_path(p.dir));
  if (spec.chain.empty()) return fail(Code::kInvalidArgument, "restore: the backup chain is empty");
  // The chain's latest full backup, then the incrementals after it, each on top of the one
  // before (its from_lsn is that one's to_lsn).
  std::vector<Json> metas;
  for (const auto& a : spec.chain) {
    auto parsed = parse_json(a.meta_json.empty() ? "{}" : a.meta_json);
    if (!parsed || !parsed->is_object() || jstr(*parsed, "format") != kFormat) {
      return fail(
          Code::kInvalidArgument,
          fmt::format("backup {} is not a MariaDB backup made by this engine", a.backup_id));
    }
    if (jstr(*parsed, "version") != ctx.config.version) {
      return fail(Code::kInvalidArgument,
                  fmt::format("backup {} is of MariaDB {}, the instance runs {}", a.backup_id,
                              jstr(*parsed, "version"), ctx.config.version));
    }
    metas.push_back(*parsed);
  }
  size_t first = metas.size();
  for (size_t i = 0; i < metas.size(); ++i) {
    if (jstr(metas[i], "kind") == "full") first = i;
  }
  if (first == metas.size()) {
    return fail(Code::kInvalidArgument, "restore: the backup chain holds no full backup");
  }
  for (size_t i = first + 1; i < metas.size(); ++i) {
    if (jstr(metas[i], "kind") != "incremental" ||
        jstr(metas[i], "from_lsn") != jstr(metas[i - 1], "to_lsn")) {
      return fail(Code::kInvalidArgument,
                  fmt::format("restore: backup {} does not continue backup {} (from_lsn {} after "
                              "to_lsn {})",
                              spec.chain[i].backup_id, spec.chain[i - 1].backup_id,
                              jstr(metas[i], "from_lsn"), jstr(metas[i - 1], "to_lsn")));
    }
  }
  const RestoreArchive& base = spec.chain.back();
  const Json& meta = metas.back();
  const int64_t consistent = jint(meta, "consistent_at_us");
  if (spec.target_time_us != 0 && spec.target_time_us < consistent) {
    return fail(
        Code::kInvalidArgument,
        fmt::format("restore target {} is before backup {} is consistent ({})",
                    format_utc_us(spec.target_time_us), base.backup_id, format_utc_us(consistent)));
  }
  const std::string start_file = jstr(meta, "binlog_file");
  const int64_t start_pos = jint(meta, "binlog_pos");
  if (!spec.log_source_instance.empty() && binlog_number(start_file) < 0) {
    return fail(Code::kFailedPrecondition,
                fmt::format("backup {} records no binlog position (binary logging was off); "
                            "it cannot be rolled forward",
                            base.backup_id));
  }
  auto log = logger("database.engine");

  CONCORD_RETURN_IF_ERROR(make_dir(p.dir, 0700, ctx.user));
  PrivateMariadb::reap(p.restore_tmp, kReplayServer);
  CONCORD_RETURN_IF_ERROR(remove_tree(p.restore_tmp));
  auto attempt = [&]() -> Status {
    CONCORD_RETURN_IF_ERROR(make_dir(p.restore_tmp, 0700, ctx.user));
    const std::string prep = p.restore_tmp + "/prep";
    const std::string data = p.restore_tmp + "/data";
    auto opts = as_user(ctx, kBackupTimeout);
    auto step_err = [&](std::string_view what, const Error& e) {
      return fail(Code::kInternal,
                  fmt::format("restore of backup {}: {}: {}", base.backup_id, what, e.message()));
    };
    // Fetches, verifies and unpacks one archive of the chain into `into`.
    auto fetch = [&](const RestoreArchive& a, const std::string& into) -> Status {
      const std::string archive = p.restore_tmp + "/archive.tar.zst";
      CONCORD_RETURN_IF_ERROR(transport.get_backup(a.backup_id, a.sha256, archive));
      CONCORD_RETURN_IF_ERROR(verify_sha256(archive, a.sha256));
      CONCORD_RETURN_IF_ERROR(chown_tree(archive, ctx.user));
      CONCORD_RETURN_IF_ERROR(make_dir(into, 0700, ctx.user));
      if (auto r = run_checked({"tar", "--zstd", "-xf", archive, "-C", into}, opts); !r) {
        return step_err("unpacking " + a.backup_id, r.error());
      }
      (void)remove_tree(archive);
      if (!path_exists(into + "/xtrabackup_checkpoints")) {
        return fail(Code::kInternal, fmt::format("restore of backup {}: archive {} holds no "
                                                 "mariadb-backup folder (xtrabackup_checkpoints)",
                                                 base.backup_id, a.backup_id));
      }
      return ok();
    };
    CONCORD_RETURN_IF_ERROR(fetch(spec.chain[first], prep));
    if (auto r =
            run_checked({prog(ctx, "mariadb-backup"), "--prepare", "--target-dir=" + prep}, opts);
        !r) {
      return step_err("mariadb-backup --prepare", r.error());
    }
    for (size_t i = first + 1; i < spec.chain.size(); ++i) {
      const std::string inc = p.restore_tmp + "/inc";
      CONCORD_RETURN_IF_ERROR(fetch(spec.chain[i], inc));
      if (auto r = run_checked({prog(ctx, "mariadb-backup"), "--prepare", "--target-dir=" + prep,
                                "--incremental-dir=" + inc},
                               opts);
          !r) {
        return step_err("mariadb-backup --prepare --incremental-dir " + spec.chain[i].backup_id,
                        r.error());
      }
      (void)remove_tree(inc);
    }
    CONCORD_RETURN_IF_ERROR(make_dir(data, 0700, ctx.user));
    if (auto r = run_checked({prog(ctx, "mariadb-backup"), "--move-back", "--target-dir=" + prep,
                              "--datadir=" + data},
                             opts);
        !r) {
      return step_err("mariadb-backup --move-back", r.error());
    }
    (void)remove_tree(prep);

    if (!spec.log_source_instance.empty()) {
      CONCORD_ASSIGN_OR_RETURN(std::vector<LogFile> listed,
                               transport.list_logs(spec.log_source_instance));
      std::sort(listed.begin(), listed.end(),
                [](const LogFile& a, const LogFile& b) { return a.name < b.name; });
      const std::string wal = p.restore_tmp + "/binlogs";
      CONCORD_RETURN_IF_ERROR(make_dir(wal, 0700, ctx.user));
      std::vector<std::string> files;
      int64_t expect = binlog_number(start_file);
      for (const auto& l : listed) {
        int64_t n = binlog_number(l.name);
        if (n < expect) continue;
        if (n != expect) {
          return fail(Code::kFailedPrecondition,
                      fmt::format("restore of backup {}: binlog {}.{:06} of instance {} is "
                                  "missing",
                                  base.backup_id, kBinlogBase, expect, spec.log_source_instance));
        }
        ++expect;
        const std::string path = wal + "/" + l.name;
        CONCORD_RETURN_IF_ERROR(transport.get_log(spec.log_source_instance, l, path));
        CONCORD_RETURN_IF_ERROR(verify_sha256(path, l.sha256));
        files.push_back(path);
        if (spec.target_time_us != 0 && l.first_time_us > spec.target_time_us) break;
      }
      if (!files.empty()) {
        PrivateMariadb server(replay_server(ctx, p.restore_tmp));
        CONCORD_RETURN_IF_ERROR(server.start());
        // Binlog events carry whole seconds: events stamped at or after the target's second
        // are left out (mariadb-binlog reads the time in TZ, hence TZ=UTC).
        std::string cmd =
            fmt::format("TZ=UTC {} --no-defaults --disable-log-bin --start-position={}",
                        prog(ctx, "mariadb-binlog"), start_pos);
        if (spec.target_time_us != 0) {
          cmd += " --stop-datetime='" + format_utc_us(spec.target_time_us).substr(0, 19) + "'";
        }
        for (const auto& f : files) cmd += " " + f;
        cmd += fmt::format(
            " | {} --no-defaults --protocol=SOCKET --socket={} --user=root "
            "--binary-mode",
            prog(ctx, "mariadb"), server.sock());
        auto r = run_checked({"/bin/bash", "-o", "pipefail", "-c", cmd},
                             CommandOptions{.timeout = kBackupTimeout});
        if (!r) return step_err("replaying binlogs", r.error());
        CONCORD_RETURN_IF_ERROR(server.stop());
      }
      log->info("mariadb {}: restored backup {} and replayed {} binlogs of {} to {}", ctx.config.id,
                base.backup_id, files.size(), spec.log_source_instance,
                spec.target_time_us ? format_utc_us(spec.target_time_us) : "their end");
    }
    if (::rename(data.c_str(), p.data.c_str()) != 0) {
      return fail(Code::kInternal, fmt::format("rename {}: {}", data, std::strerror(errno)));
    }
    return ok();
  };
  auto st = attempt();
  PrivateMariadb::reap(p.restore_tmp, kReplayServer);
  (void)remove_tree(p.restore_tmp);
  if (!st) log->warn("mariadb {}: restore failed: {}", ctx.config.id, st.error().message());
  return st;
}

Status mdb_set_archiving(const MdbBackupContext& ctx, bool archive) {
  if (archive) return ok();
  auto status = master_status(ctx);
  if (!status) {
    // Binary logging is off (an instance started before it existed): nothing to purge.
    if (status.error().code() == Code::kFailedPrecondition) return ok();
    return fail(status.error());
  }
  CONCORD_ASSIGN_OR_RETURN(std::string out,
                           ctx.admin("PURGE BINARY LOGS TO '" + status->first + "'"));
  (void)out;
  return ok();
}

Status mdb_ship_logs(const MdbBackupContext& ctx, Transport& transport) {
  MPaths p(ctx.config.dir);
  CONCORD_ASSIGN_OR_RETURN(auto status, master_status(ctx));
  // Close the current binlog when it has events we have not closed yet and the interval has
  // passed, so a quiet instance still ships what it wrote.
  auto marker = read_file(p.flushed);
  const std::string mark_now = fmt::format("{} {}", status.first, status.second);
  struct stat st {};
  const bool due =
      !marker || (::stat(p.flushed.c_str(), &st) == 0 &&
                  now_us() - static_cast<int64_t>(st.st_mtime) * 1000000 >= kArchiveIntervalUs);
  if (due && (!marker || *marker != mark_now)) {
    CONCORD_ASSIGN_OR_RETURN(std::string out, ctx.admin("FLUSH BINARY LOGS"));
    (void)out;
    CONCORD_ASSIGN_OR_RETURN(status, master_status(ctx));
    CONCORD_RETURN_IF_ERROR(
        write_file_atomic(p.flushed, fmt::format("{} {}", status.first, status.second)));
  }
  const int64_t current = binlog_number(status.first);
  std::string first_unshipped = status.first;
  // The server keeps a binlog it still needs for crash recovery (binlog checkpoint) through a
  // PURGE; what we already shipped is not shipped again.
  auto shipped_text = read_file(p.shipped);
  int64_t shipped = shipped_text ? std::atoll(shipped_text->c_str()) : 0;
  Status result = ok();
  for (const auto& name : list_files(p.binlog)) {
    const int64_t n = binlog_number(name);
    if (n < 0 || n >= current || n <= shipped) continue;
    const std::string path = p.binlog + "/" + name;
    LogFile lf;
    lf.name = name;
    auto sha = sha256_file(path);
    if (!sha) {
      result = fail(sha.error());
      first_unshipped = name;
      break;
    }
    lf.sha256 = *sha;
    if (::stat(path.c_str(), &st) == 0) lf.size_bytes = st.st_size;
    auto [first, last] = mdb_binlog_commit_range(ctx, path);
    lf.first_time_us = first;
    lf.last_time_us = last;
    if (auto put = transport.put_log(ctx.config.id, lf, path); !put) {
      result = put;
      first_unshipped = name;
      break;
    }
    shipped = n;
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.shipped, std::to_string(n) + "\n"));
  }
  // The server forgets (index) and deletes the shipped ones; never behind its back.
  if (binlog_number(first_unshipped) > 0) {
    auto purged = ctx.admin("PURGE BINARY LOGS TO '" + first_unshipped + "'");
    if (!purged && result) return fail(purged.error());
  }
  return result;
}

}  // namespace concord::database::engine::detail

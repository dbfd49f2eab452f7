// PostgreSQL backups: pg_basebackup (tar format, WAL streamed alongside, zstd on the client)
// wrapped in one outer tar; restore unpacks as the engine user and lets PostgreSQL's own
// archive recovery replay shipped WAL to the target time. See postgres_backup.h for the files.
#include "database/engine/postgres_backup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/log.h"
#include "database/engine/backup_util.h"
#include "database/engine/postgres_common.h"
#include "fmt/format.h"

namespace concord::database::engine::detail {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kFormat = "concord-pg-basebackup-1";
// zstd level 1 on the client. Measured (pgbench scale 5, 178 MB data folder, 2 shared cores):
// none 119 MB in 0.9 s, gzip 7.5 MB in 2.7 s, lz4 30 MB in 0.5 s, zstd:1 6.4 MB in 0.7 s (with
// pg_wal.tar, which pg_basebackup leaves uncompressed for zstd, zstd'ed by us), zstd:3 no
// smaller at twice the time.
constexpr std::string_view kCompress = "client-zstd:1";
constexpr milliseconds kBackupTimeout{6 * 3600 * 1000};
constexpr milliseconds kUnpackTimeout{6 * 3600 * 1000};
// A quiet instance still closes and archives a segment at least this often (when anything was
// written), which bounds what a point-in-time restore can lose to about this plus the
// shipping interval. Shorter would ship mostly-empty 16 MB segments for little gain.
constexpr int kArchiveTimeoutS = 60;

struct BPaths {
  explicit BPaths(const std::string& d)
      : dir(d),
        data(d + "/data"),
        run(d + "/run"),
        archive(d + "/wal_archive"),
        restore_wal(d + "/restore_wal"),
        backup_tmp(d + "/backup.tmp"),
        restore_tmp(d + "/restore.tmp"),
        ship_tmp(d + "/ship.tmp") {}
  std::string dir, data, run, archive, restore_wal, backup_tmp, restore_tmp, ship_tmp;
};

CommandOptions as_user(const PgBackupContext& ctx, milliseconds timeout) {
  CommandOptions o;
  o.as = ctx.user;
  o.timeout = timeout;
  o.cwd = ctx.config.dir;
  return o;
}

bool is_segment_name(std::string_view n) {
  return n.size() == 24 && std::all_of(n.begin(), n.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
         });
}
bool is_history_name(std::string_view n) {
  return n.size() == 16 && n.ends_with(".history") &&
         is_segment_name(std::string(n.substr(0, 8)) + "0000000000000000");
}

// "0/2000028" -> 0x2000028
bool parse_lsn(std::string_view text, uint64_t* out) {
  unsigned hi = 0, lo = 0;
  std::string t(text);
  if (std::sscanf(t.c_str(), "%X/%X", &hi, &lo) != 2) return false;
  *out = (static_cast<uint64_t>(hi) << 32) | lo;
  return true;
}

// The segment file holding `lsn` on `timeline` (16 MB segments, the initdb default we use).
std::string segment_name(uint32_t timeline, uint64_t lsn) {
  constexpr uint64_t kSegSize = 16ull * 1024 * 1024;
  constexpr uint64_t kSegsPerId = 0x100000000ull / kSegSize;
  uint64_t segno = lsn / kSegSize;
  return fmt::format("{:08X}{:08X}{:08X}", timeline, segno / kSegsPerId, segno % kSegsPerId);
}

std::string archive_command(const BPaths& p) {
  // Atomic: the copy becomes visible under its final name only when complete and on disk, so
  // ship_logs never uploads half a segment. A segment already archived (the postmaster died
  // between our rename and recording it) succeeds only when identical, as the manual asks.
  return fmt::format(
      "f={}/%f; if [ -f \"$f\" ]; then cmp -s \"%p\" \"$f\"; else cp \"%p\" \"$f.tmp\" && "
      "sync \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; fi",
      p.archive);
}

Status ensure_includes(const std::string& data, const OsUser& user) {
  const std::string main_conf = data + "/postgresql.conf";
  CONCORD_ASSIGN_OR_RETURN(std::string text, read_file(main_conf));
  bool changed = false;
  for (const char* line : {"include_if_exists = 'concord_archive.conf'",
                           "include_if_exists = 'concord_recovery.conf'"}) {
    if (text.find(line) != std::string::npos) continue;
    if (!text.empty() && text.back() != '\n') text += '\n';
    text += std::string(line) + "\n";
    changed = true;
  }
  if (changed) CONCORD_RETURN_IF_ERROR(write_file_atomic(main_conf, text, 0600, user));
  return ok();
}

// A fetched log that travelled compressed is made the engine's file again, in place.
Status decompress_if_zstd(const std::string& path) {
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in.read(magic, 4) || std::string_view(magic, 4) != "\x28\xb5\x2f\xfd") return ok();
  }
  const std::string plain = path + ".plain";
  if (auto z = run_checked({"zstd", "-d", "-q", "-f", path, "-o", plain}); !z) {
    (void)remove_tree(plain);
    return fail(Code::kInternal, fmt::format("decompressing {}: {}", path, z.error().message()));
  }
  if (::rename(plain.c_str(), path.c_str()) != 0) {
    return fail(Code::kInternal, fmt::format("rename {}: {}", plain, std::strerror(errno)));
  }
  return ok();
}

Result<Json> parse_meta(const RestoreArchive& a) {
  auto j = parse_json(a.meta_json.empty() ? "{}" : a.meta_json);
  if (!j || !j->is_object()) {
    return fail(Code::kInvalidArgument,
                fmt::format("backup {}: its recorded metadata is not a JSON object", a.backup_id));
  }
  return *j;
}

std::string jstr(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
int64_t jint(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

}  // namespace

std::pair<int64_t, int64_t> pg_wal_commit_range(const PgBackupContext& ctx,
                                                const std::string& path) {
  CommandOptions o;
  o.timeout = milliseconds(120000);
  // Only transaction records; TZ=UTC so the printed times parse as UTC. The same file as start
  // and end keeps pg_waldump inside this segment. It exits non-zero at the end of valid WAL in a
  // switched segment, so the output is read whatever the exit code.
  auto r = run_command(
      {"/usr/bin/env", "TZ=UTC", ctx.bin_dir + "/pg_waldump", "--rmgr=Transaction", path, path}, o);
  if (!r) return {0, 0};
  int64_t first = 0, last = 0;
  size_t pos = 0;
  const std::string& out = r->out;
  while ((pos = out.find("desc: ", pos)) != std::string::npos) {
    pos += 6;
    std::string_view rest(out.data() + pos, std::min<size_t>(64, out.size() - pos));
    std::string_view when;
    if (rest.starts_with("COMMIT ")) {
      when = rest.substr(7);
    } else if (rest.starts_with("ABORT ")) {
      when = rest.substr(6);
    } else {
      continue;
    }
    int64_t t = parse_utc_us(when);
    if (t == 0) continue;
    if (first == 0 || t < first) first = t;
    last = std::max(last, t);
  }
  return {first, last};
}

Result<bool> pg_configure_archiving(const PgBackupContext& ctx, std::optional<bool> archive) {
  BPaths p(ctx.config.dir);
  CONCORD_RETURN_IF_ERROR(check_shell_safe_path(p.dir));
  const std::string file = p.data + "/concord_archive.conf";
  auto current = read_file(file);
  const std::string off_mark = "# concord-archive: off for " + p.dir + "\n";
  const std::string on_mark = "# concord-archive: on for " + p.dir + "\n";
  bool on = archive.value_or(!(current && current->find(off_mark) != std::string::npos));
  // archive_mode stays on either way (changing it needs a restart); "off" archives to nowhere,
  // because an empty archive_command would make the postmaster keep every segment.
  std::string text = fmt::format(
      "# Written by Concord: WAL archiving for point-in-time restore.\n{}"
      "archive_mode = on\n"
      "archive_command = {}\n"
      "archive_timeout = {}\n",
      on ? on_mark : off_mark, pg_conf_quote(on ? archive_command(p) : "/bin/true"),
      kArchiveTimeoutS);
  if (on) CONCORD_RETURN_IF_ERROR(make_dir(p.archive, 0700, ctx.user));
  bool changed = !current || *current != text;
  if (changed) CONCORD_RETURN_IF_ERROR(write_file_atomic(file, text, 0600, ctx.user));
  CONCORD_RETURN_IF_ERROR(ensure_includes(p.data, ctx.user));
  return changed;
}

void pg_cleanup_after_recovery(const PgBackupContext& ctx) {
  BPaths p(ctx.config.dir);
  if (!path_exists(p.data) || path_exists(p.data + "/recovery.signal")) return;
  if (path_exists(p.restore_wal)) (void)remove_tree(p.restore_wal);
  const std::string rec = p.data + "/concord_recovery.conf";
  if (auto text = read_file(rec); text && !text->empty()) {
    (void)write_file_atomic(rec, "", 0600, ctx.user);
  }
}

Result<BackupInfo> pg_backup(const PgBackupContext& ctx, const BackupRequest& request,
                             const std::string& out_path) {
  BPaths p(ctx.config.dir);
  const std::string socket = fmt::format("{}/.s.PGSQL.{}", p.run, ctx.config.port);
  if (!path_exists(socket)) {
    return fail(Code::kFailedPrecondition,
                fmt::format("postgresql {} is not running (no socket {}); cannot back it up",
                            ctx.config.id, socket));
  }
  if (out_path.empty()) return fail(Code::kInvalidArgument, "backup: empty output path");
  // A stale staging folder is from a backup killed midway: its files are worthless.
  CONCORD_RETURN_IF_ERROR(remove_tree(p.backup_tmp));
  CONCORD_RETURN_IF_ERROR(make_dir(p.backup_tmp, 0700, ctx.user));
  auto cleanup = [&] { (void)remove_tree(p.backup_tmp); };
  const std::string out = p.backup_tmp + "/out";
  // Tar format with WAL streamed beside it: the archive restores on its own, whatever the WAL
  // retention; a fast checkpoint so the backup starts now rather than after a spread one.
  auto r = run_command(
      {ctx.bin_dir + "/pg_basebackup", "-h", p.run, "-p", std::to_string(ctx.config.port), "-U",
       ctx.superuser, "-D", out, "-Ft", "-X", "stream", "--compress=" + std::string(kCompress),
       "--checkpoint=fast", "--no-sync", "--label=concord-" + request.id},
      as_user(ctx, kBackupTimeout));
  const int64_t consistent_at = now_us();
  if (!r || !r->ok()) {
    cleanup();
    if (!r) return fail(r.error());
    // Not answering (starting, restarting, or pg_hba just rewritten and not yet reloaded) is
    // worth retrying; anything else (disk full, a broken folder) is the backup's failure.
    const bool transient = r->err.find("could not connect") != std::string::npos ||
                           r->err.find("no pg_hba.conf entry") != std::string::npos ||
                           r->err.find("starting up") != std::string::npos ||
                           r->err.find("shutting down") != std::string::npos;
    return fail(r->timed_out ? Code::kDeadlineExceeded
                : transient  ? Code::kUnavailable
                             : Code::kInternal,
                fmt::format("postgresql {}: {}", ctx.config.id, r->describe("pg_basebackup")));
  }
  // Streamed WAL is mostly the unused tail of 16 MB segments: compresses to almost nothing.
  if (path_exists(out + "/pg_wal.tar")) {
    auto z = run_checked({"zstd", "-1", "-q", "--rm", out + "/pg_wal.tar"},
                         as_user(ctx, kBackupTimeout));
    if (!z) {
      cleanup();
      return fail(Code::kInternal, fmt::format("postgresql {}: compressing pg_wal.tar: {}",
                                               ctx.config.id, z.error().message()));
    }
  }
  auto manifest_text = read_file(out + "/backup_manifest");
  Json wal;
  if (manifest_text) {
    auto manifest = parse_json(*manifest_text);
    if (manifest && manifest->is_object() && manifest->contains("WAL-Ranges") &&
        (*manifest)["WAL-Ranges"].is_array() && !(*manifest)["WAL-Ranges"].empty()) {
      wal = (*manifest)["WAL-Ranges"].back();
    }
  }
  uint64_t start_lsn = 0;
  if (!wal.is_object() || !wal.contains("Timeline") || !wal["Timeline"].is_number_unsigned() ||
      !parse_lsn(jstr(wal, "Start-LSN"), &start_lsn)) {
    cleanup();
    return fail(Code::kInternal,
                fmt::format("postgresql {}: pg_basebackup wrote no usable backup_manifest "
                            "(WAL-Ranges)",
                            ctx.config.id));
  }
  const uint32_t timeline = wal["Timeline"].get<uint32_t>();
  // One file: the inner tars are compressed already, so the outer one is not.
  // pg_basebackup names its files by what it compressed (PostgreSQL 15 leaves pg_wal.tar
  // uncompressed with client-side zstd); restore goes by the names.
  std::vector<std::string> argv = {"tar", "-cf", out_path, "-C", out};
  for (const auto& f : list_files(out)) argv.push_back(f);
  auto t = run_checked(argv, CommandOptions{.timeout = kBackupTimeout});
  cleanup();
  if (!t) {
    (void)remove_tree(out_path);
    return fail(Code::kInternal, fmt::format("postgresql {}: packing the backup: {}", ctx.config.id,
                                             t.error().message()));
  }
  Json meta = {{"format", kFormat},
               {"kind", "full"},
               {"version", ctx.config.version},
               {"compression", "zstd"},
               {"timeline", timeline},
               {"start_lsn", jstr(wal, "Start-LSN")},
               {"stop_lsn", jstr(wal, "End-LSN")},
               {"start_wal", segment_name(timeline, start_lsn)},
               {"consistent_at_us", consistent_at}};
  BackupInfo info;
  info.kind = "full";
  info.consistent_at_us = consistent_at;
  info.meta_json = dump_json(meta);
  logger("database.engine")
      ->info("postgresql {}: backup {} done ({}{})", ctx.config.id, request.id, info.meta_json,
             request.parent_id.empty() ? "" : "; asked incremental, made full");
  return info;
}

namespace {

struct RestorePlan {
  const RestoreArchive* base = nullptr;
  Json meta;
};

Result<RestorePlan> plan_restore(const PgBackupContext& ctx, const RestoreSpec& spec) {
  if (spec.chain.empty()) {
    return fail(Code::kInvalidArgument, "restore: the backup chain is empty");
  }
  // Our backups are all full (an "incremental" request is answered with a full one), so the
  // latest archive of the chain is the one to restore.
  RestorePlan plan;
  plan.base = &spec.chain.back();
  CONCORD_ASSIGN_OR_RETURN(plan.meta, parse_meta(*plan.base));
  if (jstr(plan.meta, "format") != kFormat) {
    return fail(Code::kInvalidArgument,
                fmt::format("backup {} is not a PostgreSQL base backup made by this engine "
                            "(format '{}')",
                            plan.base->backup_id, jstr(plan.meta, "format")));
  }
  if (jstr(plan.meta, "version") != ctx.config.version) {
    return fail(Code::kInvalidArgument,
                fmt::format("backup {} is of PostgreSQL {}, the instance runs {}",
                            plan.base->backup_id, jstr(plan.meta, "version"), ctx.config.version));
  }
  const int64_t consistent = jint(plan.meta, "consistent_at_us");
  if (spec.target_time_us != 0 && spec.target_time_us < consistent) {
    return fail(Code::kInvalidArgument,
                fmt::format("restore target {} is before backup {} is consistent ({})",
                            format_utc_us(spec.target_time_us), plan.base->backup_id,
                            format_utc_us(consistent)));
  }
  return plan;
}

// The segments after the backup's start (any later timeline too) and every history file, in
// replay order; with a target, up to the first segment known to commit after it.
std::vector<LogFile> logs_to_fetch(const RestorePlan& plan, const RestoreSpec& spec,
                                   std::vector<LogFile> all) {
  const std::string start = jstr(plan.meta, "start_wal");
  std::sort(all.begin(), all.end(), [](const LogFile& a, const LogFile& b) {
    bool ah = is_history_name(a.name), bh = is_history_name(b.name);
    if (ah != bh) return ah;  // history files first
    if (ah) return a.name < b.name;
    // Replay order is by position, then timeline.
    auto pos = [](const std::string& n) { return n.substr(8) + n.substr(0, 8); };
    return pos(a.name) < pos(b.name);
  });
  std::vector<LogFile> out;
  int after_target = 0;  // segments taken past the first one committing after the target
  for (auto& l : all) {
    if (is_history_name(l.name)) {
      out.push_back(l);
      continue;
    }
    if (!is_segment_name(l.name) || start.size() != 24) continue;
    if (l.name.substr(0, 8) < start.substr(0, 8) || l.name.substr(8) < start.substr(8)) continue;
    // One more than the segment holding the stopping commit: its record may end in the next.
    if (after_target > 1) break;
    out.push_back(l);
    if (after_target > 0 || (spec.target_time_us != 0 && l.first_time_us > spec.target_time_us)) {
      ++after_target;
    }
  }
  return out;
}

}  // namespace

Status pg_restore_data(const PgBackupContext& ctx, const RestoreSpec& spec, Transport& transport) {
  BPaths p(ctx.config.dir);
  if (path_exists(p.data)) return ok();  // appears only complete (one rename, below)
  CONCORD_RETURN_IF_ERROR(check_shell_safe_path(p.dir));
  CONCORD_ASSIGN_OR_RETURN(RestorePlan plan, plan_restore(ctx, spec));
  auto log = logger("database.engine");

  // Whatever a killed restore left is redone from scratch.
  CONCORD_RETURN_IF_ERROR(make_dir(p.dir, 0700, ctx.user));
  CONCORD_RETURN_IF_ERROR(remove_tree(p.restore_tmp));
  CONCORD_RETURN_IF_ERROR(remove_tree(p.restore_wal));
  auto cleanup = [&] {
    (void)remove_tree(p.restore_tmp);
    (void)remove_tree(p.restore_wal);
  };
  auto attempt = [&]() -> Status {
    CONCORD_RETURN_IF_ERROR(make_dir(p.restore_tmp, 0700, ctx.user));
    const std::string archive = p.restore_tmp + "/archive.tar";
    CONCORD_RETURN_IF_ERROR(transport.get_backup(plan.base->backup_id, plan.base->sha256, archive));
    // The transport verified it; so do we, before the engine user's tar reads a byte of it.
    CONCORD_RETURN_IF_ERROR(verify_sha256(archive, plan.base->sha256));
    CONCORD_RETURN_IF_ERROR(chown_tree(archive, ctx.user));
    const std::string unpack = p.restore_tmp + "/unpack";
    const std::string data = p.restore_tmp + "/data";
    CONCORD_RETURN_IF_ERROR(make_dir(unpack, 0700, ctx.user));
    CONCORD_RETURN_IF_ERROR(make_dir(data, 0700, ctx.user));
    // Unpacked as the engine user: whatever an archive holds, it cannot write where that user
    // cannot.
    auto unpack_err = [&](const Error& e) {
      return fail(Code::kInternal, fmt::format("restore of backup {}: unpacking: {}",
                                               plan.base->backup_id, e.message()));
    };
    auto opts = as_user(ctx, kUnpackTimeout);
    if (auto r = run_checked({"tar", "-xf", archive, "-C", unpack}, opts); !r) {
      return unpack_err(r.error());
    }
    (void)remove_tree(archive);
    CONCORD_RETURN_IF_ERROR(make_dir(data + "/pg_wal", 0700, ctx.user));
    for (const auto& [inner, into] : {std::pair<std::string, std::string>{"base.tar", data},
                                      {"pg_wal.tar", data + "/pg_wal"}}) {
      std::vector<std::string> argv;
      for (const auto& [suffix, flag] : {std::pair<std::string, std::string>{"", ""},
                                         {".zst", "--zstd"},
                                         {".gz", "--gzip"},
                                         {".lz4", "--use-compress-program=lz4"}}) {
        const std::string file = unpack + "/" + inner + suffix;
        if (!path_exists(file)) continue;
        argv = {"tar", "-xf", file, "-C", into};
        if (!flag.empty()) argv.insert(argv.begin() + 1, flag);
        break;
      }
      if (argv.empty()) {
        return fail(Code::kInternal, fmt::format("restore of backup {}: the archive has no {}",
                                                 plan.base->backup_id, inner));
      }
      if (auto r = run_checked(argv, opts); !r) return unpack_err(r.error());
    }
    (void)remove_tree(unpack);
    auto version = read_file(data + "/PG_VERSION");
    if (!version || version->substr(0, version->find('\n')) != ctx.config.version ||
        !path_exists(data + "/backup_label")) {
      return fail(Code::kInternal, fmt::format("restore of backup {}: the archive holds no "
                                               "PostgreSQL {} base backup (PG_VERSION, "
                                               "backup_label)",
                                               plan.base->backup_id, ctx.config.version));
    }
    for (const char* stale : {"postmaster.pid", "postmaster.opts", "recovery.signal",
                              "standby.signal", "concord_recovery.conf"}) {
      CONCORD_RETURN_IF_ERROR(remove_tree(data + "/" + stale));
    }

    std::string recovery = "# Written by Concord: no point-in-time recovery.\n";
    if (!spec.log_source_instance.empty()) {
      const std::string wal = p.restore_tmp + "/wal";
      CONCORD_RETURN_IF_ERROR(make_dir(wal, 0700, ctx.user));
      CONCORD_ASSIGN_OR_RETURN(std::vector<LogFile> listed,
                               transport.list_logs(spec.log_source_instance));
      std::vector<LogFile> logs = logs_to_fetch(plan, spec, std::move(listed));
      int64_t last_commit = 0;
      for (auto& l : logs) {
        const std::string path = wal + "/" + l.name;
        CONCORD_RETURN_IF_ERROR(transport.get_log(spec.log_source_instance, l, path));
        CONCORD_RETURN_IF_ERROR(verify_sha256(path, l.sha256));
        CONCORD_RETURN_IF_ERROR(decompress_if_zstd(path));
        CONCORD_RETURN_IF_ERROR(chown_tree(path, ctx.user));
        if (spec.target_time_us != 0 && is_segment_name(l.name)) {
          int64_t t = l.last_time_us;
          if (t == 0) t = pg_wal_commit_range(ctx, path).second;
          last_commit = std::max(last_commit, t);
        }
      }
      // PostgreSQL refuses to promote when the target was never reached; a target after the
      // last commit in the logs means "everything", so it replays to the end instead.
      std::string target;
      if (spec.target_time_us != 0 && spec.target_time_us <= last_commit) {
        target = fmt::format(
            "recovery_target_time = {}\n"
            "recovery_target_inclusive = off\n",
            pg_conf_quote(format_utc_us(spec.target_time_us)));
      }
      recovery = fmt::format(
          "# Written by Concord: point-in-time recovery from instance {} ({} files).\n"
          "restore_command = {}\n{}"
          "recovery_target_action = 'promote'\n"
          "recovery_target_timeline = 'latest'\n"
          "# No read-only connections during recovery: start() returns once the instance\n"
          "# answers, which must mean promoted and writable.\n"
          "hot_standby = off\n",
          spec.log_source_instance, logs.size(),
          pg_conf_quote(fmt::format("cp {}/%f \"%p\"", p.restore_wal)), target);
      CONCORD_RETURN_IF_ERROR(write_file_atomic(data + "/recovery.signal", "", 0600, ctx.user));
      log->info("postgresql {}: restoring backup {} with {} log files of {} to {}", ctx.config.id,
                plan.base->backup_id, logs.size(), spec.log_source_instance,
                target.empty() ? "their end" : format_utc_us(spec.target_time_us));
      if (::rename(wal.c_str(), p.restore_wal.c_str()) != 0) {
        return fail(Code::kInternal, fmt::format("rename {}: {}", wal, std::strerror(errno)));
      }
    }
    CONCORD_RETURN_IF_ERROR(
        write_file_atomic(data + "/concord_recovery.conf", recovery, 0600, ctx.user));
    // The data folder appears complete or not at all.
    if (::rename(data.c_str(), p.data.c_str()) != 0) {
      return fail(Code::kInternal, fmt::format("rename {}: {}", data, std::strerror(errno)));
    }
    return ok();
  };
  auto st = attempt();
  if (!st) {
    cleanup();
    log->warn("postgresql {}: restore failed: {}", ctx.config.id, st.error().message());
    return st;
  }
  (void)remove_tree(p.restore_tmp);
  return ok();
}

Status pg_ship_logs(const PgBackupContext& ctx, Transport& transport) {
  BPaths p(ctx.config.dir);
  pg_cleanup_after_recovery(ctx);
  for (const auto& name : list_files(p.archive)) {
    // Segments, timeline histories, and the archiver's *.backup / *.partial markers (kept with
    // the logs for inspection; restore reads only the first two). *.tmp is being copied.
    if (name.ends_with(".tmp")) continue;
    const std::string path = p.archive + "/" + name;
    LogFile lf;
    lf.name = name;
    if (is_segment_name(name)) {
      auto [first, last] = pg_wal_commit_range(ctx, path);
      lf.first_time_us = first;
      lf.last_time_us = last;
    }
    // Segments travel zstd-compressed under their own name (a segment closed by
    // archive_timeout is mostly unused space); restore recognises the zstd frame.
    CONCORD_RETURN_IF_ERROR(make_dir(p.ship_tmp, 0700));
    const std::string packed = p.ship_tmp + "/" + name;
    if (auto z = run_checked({"zstd", "-1", "-q", "-f", path, "-o", packed}); !z) {
      (void)remove_tree(p.ship_tmp);
      return fail(Code::kInternal, fmt::format("postgresql {}: compressing {}: {}", ctx.config.id,
                                               name, z.error().message()));
    }
    auto sha = sha256_file(packed);
    struct stat st {};
    if (!sha || ::stat(packed.c_str(), &st) != 0) {
      (void)remove_tree(p.ship_tmp);
      return fail(Code::kInternal, fmt::format("postgresql {}: reading {}", ctx.config.id, packed));
    }
    lf.sha256 = *sha;
    lf.size_bytes = st.st_size;
    auto put = transport.put_log(ctx.config.id, lf, packed);
    (void)remove_tree(p.ship_tmp);
    CONCORD_RETURN_IF_ERROR(put);
    CONCORD_RETURN_IF_ERROR(remove_tree(path));
  }
  return ok();
}

}  // namespace concord::database::engine::detail

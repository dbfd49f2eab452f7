// PostgreSQL backups: pg_basebackup (tar format, WAL streamed alongside, zstd on the client)
// wrapped in one outer tar; restore unpacks as the engine user and lets PostgreSQL's own
// archive recovery replay shipped WAL to the target time. See postgres_backup.h for the files.
//
// Incremental backups are WAL ranges. PostgreSQL 15 has no incremental base backup, but its
// archive already holds every change since any earlier backup: an incremental is the run of
// completed WAL segments from its parent's end point to a segment switch made for it, packed
// like the shipped logs (one zstd file per segment, under the segment's name). Restoring a
// chain unpacks its full base backup and lets archive recovery replay the incrementals'
// segments to the last one's switch record (recovery_target_lsn), so a chain restores exactly
// the state at its last backup whether or not the instance's shipped logs still exist.
// The segments come from wal_archive/ (not shipped yet) or wal_shipped/ (shipped, kept
// compressed for the next incremental until a backup no longer needs them or the size cap
// drops them). When any segment of the range is gone (pruned, a rebuilt or promoted instance
// on another timeline, archiving off, a parent of another format or version) the request gets
// a full backup instead, said so in the log and in BackupInfo.kind: never an incremental that
// cannot restore.
#include "database/engine/postgres_backup.h"

#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/json.h"
#include "base/log.h"
#include "database/engine/backup_util.h"
#include "database/engine/postgres_common.h"
#include "fmt/format.h"

namespace concord::database::engine::detail {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kFormat = "concord-pg-basebackup-1";
// An incremental backup: a WAL range on top of a parent (see the file comment).
constexpr std::string_view kWalRangeFormat = "concord-pg-walrange-1";
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
// How long an incremental backup waits for the archiver to copy the segment it switched to.
// The copy is one 16 MB file; much longer means the archiver is failing, and a full backup
// (which streams its own WAL) is then the useful answer.
constexpr milliseconds kArchiveWait{60000};
constexpr milliseconds kArchivePoll{100};
constexpr milliseconds kAdminTimeout{60000};
// wal_shipped/ is kept under this many bytes (oldest dropped first; an incremental whose
// parent's range was dropped becomes a full backup): a quarter of the volume, at least 256 MiB.
// Shipped segments are compressed, so a quiet instance keeps weeks of them in a few MiB.
constexpr int64_t kShippedFloorBytes = 256ll * 1024 * 1024;
constexpr uint64_t kSegSize = 16ull * 1024 * 1024;  // the initdb default we use

// In the instance folder what the server and a restore use (a restore renames its folder into
// place); in the work folder (InstanceConfig::work_dir) Concord's own copies.
struct BPaths {
  explicit BPaths(const InstanceConfig& c)
      : BPaths(c.dir, c.work_dir.empty() ? c.dir : c.work_dir) {}
  BPaths(const std::string& d, const std::string& w)
      : dir(d),
        data(d + "/data"),
        run(d + "/run"),
        archive(d + "/wal_archive"),
        shipped(w + "/wal_shipped"),
        restore_wal(d + "/restore_wal"),
        backup_tmp(w + "/backup.tmp"),
        restore_tmp(d + "/restore.tmp"),
        ship_tmp(w + "/ship.tmp") {}
  std::string dir, data, run, archive, shipped, restore_wal, backup_tmp, restore_tmp, ship_tmp;
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

std::string format_lsn(uint64_t lsn) {
  return fmt::format("{:X}/{:X}", lsn >> 32, lsn & 0xffffffffu);
}

constexpr uint64_t kSegsPerId = 0x100000000ull / kSegSize;

// The segment file number `segno` on `timeline`.
std::string segment_file(uint32_t timeline, uint64_t segno) {
  return fmt::format("{:08X}{:08X}{:08X}", timeline, segno / kSegsPerId, segno % kSegsPerId);
}

// The segment file holding `lsn` on `timeline`.
std::string segment_name(uint32_t timeline, uint64_t lsn) {
  return segment_file(timeline, lsn / kSegSize);
}

// "000000010000000200000003" -> timeline 1, segment number 2 * kSegsPerId + 3.
bool parse_segment(std::string_view name, uint32_t* timeline, uint64_t* segno) {
  if (!is_segment_name(name)) return false;
  auto hex = [](std::string_view h) {
    uint64_t v = 0;
    std::from_chars(h.data(), h.data() + h.size(), v, 16);
    return v;
  };
  *timeline = static_cast<uint32_t>(hex(name.substr(0, 8)));
  *segno = hex(name.substr(8, 8)) * kSegsPerId + hex(name.substr(16, 8));
  return true;
}

// The configuration line that lets archive_command link: PostgreSQL then removes old segments
// instead of renaming them to future names and overwriting them, which would overwrite the
// archive's link too. Not in the parameter catalog, so no configuration group changes it.
constexpr std::string_view kNoRecycle = "wal_recycle = off\n";

std::string links_marker(const BPaths& p) {
  return p.dir + "/wal_links";
}

std::string archive_command(const BPaths& p) {
  // A hard link when the running postmaster was launched with wal_recycle = off (wal_links,
  // written by pg_mark_wal_links right before the launch; a reload alone does not reach every
  // process at once, so one launched before keeps copying until its next start). A link needs
  // no room on the volume and no second write of 16 MB: a full volume still archives, so
  // shipping and the next checkpoint free its WAL. The segment is complete and fsynced when
  // archived; the link is made durable by syncing the folder. Otherwise, or when the link
  // fails, a copy, atomic: visible under its final name only when complete and on disk, so
  // ship_logs never uploads half a segment. A segment already archived (the postmaster died
  // between our rename and recording it) succeeds only when identical, as the manual asks.
  return fmt::format(
      "f={0}/%f; if [ -f \"$f\" ]; then cmp -s \"%p\" \"$f\"; elif [ -f {1} ] && ln \"%p\" \"$f\" "
      "2>/dev/null; then sync {0}; else cp \"%p\" \"$f.tmp\" && sync \"$f.tmp\" && mv \"$f.tmp\" "
      "\"$f\"; fi",
      p.archive, links_marker(p));
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

// The first line of concord_archive.conf, which says whether this instance archives.
std::string archive_mark(const BPaths& p, bool on) {
  return fmt::format("# concord-archive: {} for {}\n", on ? "on" : "off", p.dir);
}

// Where a backup's WAL stands: what a successor continues from and a restore replays to.
struct BackupPoint {
  bool full = true;
  uint32_t timeline = 0;
  uint64_t start_lsn = 0;  // a full backup's checkpoint; an incremental's first segment start
  uint64_t stop_lsn = 0;   // consistent from here (full); the switch record to stop after (inc)
  // Where the next incremental's WAL begins: a full backup's stop_lsn (its segment is only
  // partly in pg_wal.tar), an incremental's next segment.
  uint64_t end_lsn = 0;
};

// kInvalidArgument, naming the backup, when the metadata is not one of ours or lacks a position.
Result<BackupPoint> backup_point(const Json& meta, const std::string& backup_id) {
  const std::string format = jstr(meta, "format");
  BackupPoint pt;
  if (format == kFormat) {
    pt.full = true;
  } else if (format == kWalRangeFormat) {
    pt.full = false;
  } else {
    return fail(Code::kInvalidArgument,
                fmt::format("backup {} is not a PostgreSQL backup made by this engine (format "
                            "'{}')",
                            backup_id, format));
  }
  auto tl = meta.find("timeline");
  bool good = tl != meta.end() && tl->is_number_unsigned() && tl->get<uint64_t>() > 0 &&
              tl->get<uint64_t>() <= 0xffffffffu &&
              parse_lsn(jstr(meta, "start_lsn"), &pt.start_lsn) &&
              parse_lsn(jstr(meta, "stop_lsn"), &pt.stop_lsn);
  if (good && pt.full) {
    pt.end_lsn = pt.stop_lsn;
  } else if (good) {
    good = parse_lsn(jstr(meta, "end_lsn"), &pt.end_lsn) && pt.start_lsn <= pt.stop_lsn &&
           pt.stop_lsn < pt.end_lsn;
  }
  if (!good) {
    return fail(Code::kInvalidArgument,
                fmt::format("backup {}: its recorded metadata has no usable timeline and WAL "
                            "positions ({})",
                            backup_id, dump_json(meta)));
  }
  pt.timeline = static_cast<uint32_t>(tl->get<uint64_t>());
  return pt;
}

struct PgConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultCloser {
  void operator()(PGresult* r) const { PQclear(r); }
};

// One administrative statement over the socket as the bootstrap superuser (trusted locally, as
// for pg_basebackup); the first row's values. kUnavailable when the engine does not answer,
// kFailedPrecondition when it refuses the statement (a standby cannot switch WAL, say).
Result<std::vector<std::string>> admin_row(const PgBackupContext& ctx, const std::string& sql) {
  BPaths p(ctx.config);
  const std::string port = std::to_string(ctx.config.port);
  const std::string options =
      fmt::format("-c statement_timeout={}", std::chrono::milliseconds(kAdminTimeout).count());
  const char* keys[] = {
      "host", "port", "user", "dbname", "options", "connect_timeout", "application_name", nullptr};
  const char* values[] = {p.run.c_str(),   port.c_str(), ctx.superuser.c_str(), "postgres",
                          options.c_str(), "10",         "concord-agent",       nullptr};
  std::unique_ptr<PGconn, PgConnCloser> conn(PQconnectdbParams(keys, values, 0));
  if (!conn) return fail(Code::kInternal, "libpq: out of memory");
  auto message = [](const char* m) {
    std::string out = m == nullptr ? "" : m;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  };
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return fail(Code::kUnavailable,
                fmt::format("postgresql {}: admin connection failed: {}", ctx.config.id,
                            message(PQerrorMessage(conn.get()))));
  }
  std::unique_ptr<PGresult, PgResultCloser> r(PQexec(conn.get(), sql.c_str()));
  if (!r) {
    return fail(
        Code::kUnavailable,
        fmt::format("postgresql {}: no answer to '{}' (connection lost?)", ctx.config.id, sql));
  }
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) < 1) {
    return fail(Code::kFailedPrecondition,
                fmt::format("postgresql {}: '{}' failed: {}", ctx.config.id, sql,
                            message(PQresultErrorMessage(r.get()))));
  }
  std::vector<std::string> row;
  for (int i = 0; i < PQnfields(r.get()); ++i) row.emplace_back(PQgetvalue(r.get(), 0, i));
  return row;
}

// The position of the last segment-switch record in a WAL segment file, by pg_waldump; 0 when
// there is none or the file cannot be read.
uint64_t last_switch_lsn(const PgBackupContext& ctx, const std::string& path) {
  CommandOptions o;
  o.timeout = milliseconds(120000);
  // As in pg_wal_commit_range: it exits non-zero at the end of a switched segment's valid WAL.
  auto r = run_command({ctx.bin_dir + "/pg_waldump", "--rmgr=XLOG", path, path}, o);
  if (!r) return 0;
  uint64_t found = 0;
  size_t line_start = 0;
  const std::string& out = r->out;
  while (line_start < out.size()) {
    size_t end = out.find('\n', line_start);
    if (end == std::string::npos) end = out.size();
    std::string_view line(out.data() + line_start, end - line_start);
    line_start = end + 1;
    const size_t desc = line.find("desc: SWITCH");
    const size_t at = line.find("lsn: ");
    if (desc == std::string_view::npos || at == std::string_view::npos) continue;
    std::string_view lsn = line.substr(at + 5);
    lsn = lsn.substr(0, lsn.find(','));
    uint64_t v = 0;
    if (parse_lsn(lsn, &v)) found = std::max(found, v);
  }
  return found;
}

// Drops the kept (already shipped) segments no later backup of this instance can build on:
// those before segment `segno` of `timeline`, and any of an earlier timeline.
void prune_shipped(const BPaths& p, uint32_t timeline, uint64_t segno) {
  for (const auto& name : list_files(p.shipped)) {
    uint32_t tl = 0;
    uint64_t n = 0;
    if (!parse_segment(name, &tl, &n) || tl < timeline || (tl == timeline && n < segno)) {
      (void)remove_tree(p.shipped + "/" + name);
    }
  }
}

// Keeps wal_shipped/ under its cap, oldest first (names sort by timeline, then position).
void cap_shipped(const PgBackupContext& ctx, const BPaths& p) {
  const int64_t cap =
      std::max<int64_t>(kShippedFloorBytes, ctx.config.volume_gb * (int64_t{1} << 30) / 4);
  std::vector<std::pair<std::string, int64_t>> files;
  int64_t total = 0;
  for (const auto& name : list_files(p.shipped)) {
    struct stat st {};
    if (::stat((p.shipped + "/" + name).c_str(), &st) != 0) continue;
    files.emplace_back(name, st.st_size);
    total += st.st_size;
  }
  for (const auto& [name, size] : files) {
    if (total <= cap) break;
    (void)remove_tree(p.shipped + "/" + name);
    total -= size;
  }
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
  BPaths p(ctx.config);
  CONCORD_RETURN_IF_ERROR(check_shell_safe_path(p.dir));
  const std::string file = p.data + "/concord_archive.conf";
  auto current = read_file(file);
  const std::string off_mark = archive_mark(p, false);
  const std::string on_mark = archive_mark(p, true);
  bool on = archive.value_or(!(current && current->find(off_mark) != std::string::npos));
  // archive_mode stays on either way (changing it needs a restart); "off" archives to nowhere,
  // because an empty archive_command would make the postmaster keep every segment.
  std::string text = fmt::format(
      "# Written by Concord: WAL archiving for point-in-time restore.\n{}"
      "archive_mode = on\n"
      "archive_command = {}\n"
      "archive_timeout = {}\n"
      "{}",
      on ? on_mark : off_mark, pg_conf_quote(on ? archive_command(p) : "/bin/true"),
      kArchiveTimeoutS, kNoRecycle);
  if (on) CONCORD_RETURN_IF_ERROR(make_dir(p.archive, 0700, ctx.user));
  bool changed = !current || *current != text;
  if (changed) CONCORD_RETURN_IF_ERROR(write_file_atomic(file, text, 0600, ctx.user));
  CONCORD_RETURN_IF_ERROR(ensure_includes(p.data, ctx.user));
  return changed;
}

Status pg_mark_wal_links(const InstanceConfig& config) {
  BPaths p(config);
  auto conf = read_file(p.data + "/concord_archive.conf");
  if (conf && conf->find(kNoRecycle) != std::string::npos) {
    return write_file_atomic(links_marker(p),
                             "the postmaster was launched with wal_recycle = off\n");
  }
  return remove_tree(links_marker(p));
}

void pg_cleanup_after_recovery(const PgBackupContext& ctx) {
  BPaths p(ctx.config);
  if (!path_exists(p.data) || path_exists(p.data + "/recovery.signal")) return;
  if (path_exists(p.restore_wal)) (void)remove_tree(p.restore_wal);
  const std::string rec = p.data + "/concord_recovery.conf";
  if (auto text = read_file(rec); text && !text->empty()) {
    (void)write_file_atomic(rec, "", 0600, ctx.user);
  }
}

namespace {

// pg_basebackup into out_path. `why_full` says why an incremental request got a full backup.
Result<BackupInfo> full_backup(const PgBackupContext& ctx, const BackupRequest& request,
                               const std::string& out_path, const std::string& why_full) {
  BPaths p(ctx.config);
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
  // Kept segments before this backup's start serve only incrementals on older backups.
  prune_shipped(p, timeline, start_lsn / kSegSize);
  logger("database.engine")
      ->info("postgresql {}: backup {} done ({}{})", ctx.config.id, request.id, info.meta_json,
             why_full.empty() ? "" : "; parent unusable (" + why_full + "), made full");
  return info;
}

// An incremental backup, or why none can be made here (then `info` is empty).
struct Incremental {
  std::optional<BackupInfo> info;
  std::string unusable;
};

// The WAL range from the parent's end to a segment switch made now (see the file comment).
// Errors only for what would fail a full backup too (the engine not answering, packing).
Result<Incremental> try_incremental(const PgBackupContext& ctx, const BackupRequest& request,
                                    const std::string& out_path) {
  BPaths p(ctx.config);
  Incremental res;
  auto unusable = [&](std::string why) {
    res.unusable = std::move(why);
    return res;
  };
  auto parent = parse_json(request.parent_meta_json.empty() ? "{}" : request.parent_meta_json);
  if (!parent || !parent->is_object()) return unusable("its metadata is not a JSON object");
  auto point = backup_point(*parent, request.parent_id);
  if (!point) return unusable(point.error().message());
  if (jstr(*parent, "version") != ctx.config.version) {
    return unusable(fmt::format("it is of PostgreSQL {}, the instance runs {}",
                                jstr(*parent, "version"), ctx.config.version));
  }
  auto conf = read_file(p.data + "/concord_archive.conf");
  if (!conf || conf->find(archive_mark(p, true)) == std::string::npos) {
    return unusable("WAL archiving is off for this instance");
  }
  // A record of our own first, so the switch always closes a segment holding something after
  // the parent's end (with nothing written since the last switch, a switch does nothing).
  auto row = admin_row(ctx, "SELECT pg_logical_emit_message(false, 'concord-backup', 'wal range')");
  if (row) {
    row = admin_row(ctx, "SELECT r, pg_walfile_name(r) FROM (SELECT pg_switch_wal() AS r) s");
  }
  if (!row) {
    if (row.error().code() == Code::kFailedPrecondition) return unusable(row.error().message());
    return fail(row.error());
  }
  // Everything committed before the switch is in the segments up to the switched one.
  const int64_t consistent_at = now_us();
  uint64_t switch_end = 0;
  uint32_t timeline = 0;
  uint64_t unused = 0;
  if (row->size() != 2 || !parse_lsn((*row)[0], &switch_end) || switch_end == 0 ||
      !parse_segment((*row)[1], &timeline, &unused)) {
    return fail(Code::kInternal,
                fmt::format("postgresql {}: unexpected answer to the WAL switch", ctx.config.id));
  }
  if (timeline != point->timeline) {
    return unusable(
        fmt::format("the instance is on timeline {}, the backup on {}", timeline, point->timeline));
  }
  const uint64_t first = point->end_lsn / kSegSize;
  const uint64_t last = (switch_end - 1) / kSegSize;
  if (last < first) {
    return unusable(fmt::format("the WAL switch at {} is not after its end {}",
                                format_lsn(switch_end), format_lsn(point->end_lsn)));
  }
  const std::string last_name = segment_file(timeline, last);
  auto where = [&](const std::string& name) -> std::string {
    if (path_exists(p.archive + "/" + name)) return p.archive + "/" + name;
    if (path_exists(p.shipped + "/" + name)) return p.shipped + "/" + name;
    return "";
  };
  const auto deadline = std::chrono::steady_clock::now() + kArchiveWait;
  while (where(last_name).empty()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return unusable(
          fmt::format("segment {} was not archived within {} s", last_name,
                      std::chrono::duration_cast<std::chrono::seconds>(kArchiveWait).count()));
    }
    std::this_thread::sleep_for(kArchivePoll);
  }
  std::vector<std::string> names;
  for (uint64_t n = first; n <= last; ++n) {
    names.push_back(segment_file(timeline, n));
    if (where(names.back()).empty()) {
      return unusable(
          fmt::format("segment {} of its WAL range is no longer on this host", names.back()));
    }
  }

  CONCORD_RETURN_IF_ERROR(remove_tree(p.backup_tmp));
  CONCORD_RETURN_IF_ERROR(make_dir(p.backup_tmp, 0700, ctx.user));
  auto cleanup = [&] { (void)remove_tree(p.backup_tmp); };
  auto packing_error = [&](const std::string& what) {
    cleanup();
    (void)remove_tree(out_path);
    return fail(Code::kInternal,
                fmt::format("postgresql {}: packing WAL range: {}", ctx.config.id, what));
  };
  const std::string stage = p.backup_tmp + "/wal";
  CONCORD_RETURN_IF_ERROR(make_dir(stage, 0700));
  const CommandOptions opts{.timeout = kBackupTimeout};
  for (const auto& name : names) {
    const std::string from = where(name);
    if (from.empty()) return packing_error(name + " vanished while packing");
    // The shipping format: one zstd file per segment under its own name (wal_shipped/ holds
    // them so already).
    std::vector<std::string> argv = {"cp", "--", from, stage + "/" + name};
    if (from.starts_with(p.archive + "/")) {
      argv = {"zstd", "-1", "-q", "-f", from, "-o", stage + "/" + name};
    }
    if (auto r = run_checked(argv, opts); !r) return packing_error(r.error().message());
  }
  // The recovery target: the switch record itself, the last record of the range.
  std::string last_raw = p.archive + "/" + last_name;
  if (!path_exists(last_raw)) {
    last_raw = p.backup_tmp + "/" + last_name;
    if (auto r =
            run_checked({"zstd", "-d", "-q", "-f", stage + "/" + last_name, "-o", last_raw}, opts);
        !r) {
      return packing_error(r.error().message());
    }
  }
  const uint64_t stop_lsn = last_switch_lsn(ctx, last_raw);
  if (stop_lsn == 0 || stop_lsn <= point->stop_lsn || stop_lsn / kSegSize != last) {
    cleanup();
    return unusable(fmt::format("no segment switch found in {}", last_name));
  }
  std::vector<std::string> argv = {"tar", "-cf", out_path, "-C", stage};
  argv.insert(argv.end(), names.begin(), names.end());
  if (auto t = run_checked(argv, opts); !t) return packing_error(t.error().message());
  cleanup();
  Json meta = {{"format", kWalRangeFormat},
               {"kind", "incremental"},
               {"version", ctx.config.version},
               {"compression", "zstd"},
               {"timeline", timeline},
               {"start_lsn", format_lsn(first * kSegSize)},
               {"stop_lsn", format_lsn(stop_lsn)},
               {"end_lsn", format_lsn((last + 1) * kSegSize)},
               {"start_wal", names.front()},
               {"stop_wal", names.back()},
               {"segments", names},
               {"consistent_at_us", consistent_at},
               {"parent_id", request.parent_id}};
  BackupInfo info;
  info.kind = "incremental";
  info.consistent_at_us = consistent_at;
  info.meta_json = dump_json(meta);
  // Kept segments before this range serve only incrementals on backups older than its parent;
  // the range itself stays, in case this backup is never recorded and the next one again
  // builds on the parent.
  prune_shipped(p, timeline, first);
  res.info = std::move(info);
  return res;
}

}  // namespace

Result<BackupInfo> pg_backup(const PgBackupContext& ctx, const BackupRequest& request,
                             const std::string& out_path) {
  BPaths p(ctx.config);
  const std::string socket = fmt::format("{}/.s.PGSQL.{}", p.run, ctx.config.port);
  if (!path_exists(socket)) {
    return fail(Code::kFailedPrecondition,
                fmt::format("postgresql {} is not running (no socket {}); cannot back it up",
                            ctx.config.id, socket));
  }
  if (out_path.empty()) return fail(Code::kInvalidArgument, "backup: empty output path");
  std::string why_full;
  if (!request.parent_id.empty()) {
    CONCORD_ASSIGN_OR_RETURN(Incremental inc, try_incremental(ctx, request, out_path));
    if (inc.info) {
      logger("database.engine")
          ->info("postgresql {}: backup {} done ({})", ctx.config.id, request.id,
                 inc.info->meta_json);
      return *inc.info;
    }
    why_full = fmt::format("backup {}: {}", request.parent_id, inc.unusable);
  }
  return full_backup(ctx, request, out_path, why_full);
}

namespace {

struct RestorePlan {
  const RestoreArchive* base = nullptr;  // the chain's last full backup
  Json meta;                             // its metadata
  // The incrementals after it, in order, with their metadata and positions.
  std::vector<std::pair<const RestoreArchive*, Json>> incrementals;
  BackupPoint last;  // where the chain ends: the base's or the last incremental's point
};

Result<RestorePlan> plan_restore(const PgBackupContext& ctx, const RestoreSpec& spec) {
  if (spec.chain.empty()) {
    return fail(Code::kInvalidArgument, "restore: the backup chain is empty");
  }
  // Every archive is checked before anything is fetched. The chain's last full backup is the
  // base (an earlier one may precede it: an incremental request whose parent was unusable was
  // answered with a full backup), and the incrementals after it continue it without a gap.
  std::vector<Json> metas;
  std::vector<BackupPoint> points;
  for (const auto& a : spec.chain) {
    CONCORD_ASSIGN_OR_RETURN(Json meta, parse_meta(a));
    CONCORD_ASSIGN_OR_RETURN(BackupPoint pt, backup_point(meta, a.backup_id));
    if (jstr(meta, "version") != ctx.config.version) {
      return fail(Code::kInvalidArgument,
                  fmt::format("backup {} is of PostgreSQL {}, the instance runs {}", a.backup_id,
                              jstr(meta, "version"), ctx.config.version));
    }
    metas.push_back(std::move(meta));
    points.push_back(pt);
  }
  size_t first = metas.size();
  for (size_t i = 0; i < metas.size(); ++i) {
    if (points[i].full) first = i;
  }
  if (first == metas.size()) {
    return fail(Code::kInvalidArgument,
                fmt::format("restore: the backup chain up to {} holds no full backup",
                            spec.chain.back().backup_id));
  }
  RestorePlan plan;
  plan.base = &spec.chain[first];
  plan.meta = metas[first];
  for (size_t i = first + 1; i < metas.size(); ++i) {
    const BackupPoint& prev = points[i - 1];
    const BackupPoint& cur = points[i];
    // Its segments are every one of its range, in order: restore moves exactly these.
    const auto segments = metas[i].find("segments");
    bool listed = segments != metas[i].end() && segments->is_array() &&
                  cur.start_lsn % kSegSize == 0 && cur.end_lsn % kSegSize == 0 &&
                  segments->size() == (cur.end_lsn - cur.start_lsn) / kSegSize;
    for (size_t k = 0; listed && k < segments->size(); ++k) {
      listed = (*segments)[k] == segment_file(cur.timeline, cur.start_lsn / kSegSize + k);
    }
    if (!listed) {
      return fail(Code::kInvalidArgument,
                  fmt::format("backup {}: its recorded segments are not those of its WAL range",
                              spec.chain[i].backup_id));
    }
    if (cur.timeline != prev.timeline || cur.start_lsn > prev.end_lsn ||
        cur.stop_lsn <= prev.stop_lsn) {
      return fail(Code::kInvalidArgument,
                  fmt::format("restore: backup {} does not continue backup {} (its WAL starts at "
                              "{} on timeline {}; that one ends at {} on timeline {})",
                              spec.chain[i].backup_id, spec.chain[i - 1].backup_id,
                              format_lsn(cur.start_lsn), cur.timeline, format_lsn(prev.end_lsn),
                              prev.timeline));
    }
    plan.incrementals.emplace_back(&spec.chain[i], metas[i]);
  }
  plan.last = points.back();
  const int64_t consistent = jint(metas.back(), "consistent_at_us");
  if (spec.target_time_us != 0 && spec.target_time_us < consistent) {
    return fail(Code::kInvalidArgument,
                fmt::format("restore target {} is before backup {} is consistent ({})",
                            format_utc_us(spec.target_time_us), spec.chain.back().backup_id,
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
  BPaths p(ctx.config);
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
    const std::string wal = p.restore_tmp + "/wal";
    if (!plan.incrementals.empty() || !spec.log_source_instance.empty()) {
      CONCORD_RETURN_IF_ERROR(make_dir(wal, 0700, ctx.user));
    }
    // The incrementals' segments go where restore_command reads, as shipped logs do.
    size_t wal_files = 0;
    for (const auto& [inc, meta] : plan.incrementals) {
      const std::string tar = p.restore_tmp + "/incremental.tar";
      const std::string into = p.restore_tmp + "/incremental";
      CONCORD_RETURN_IF_ERROR(transport.get_backup(inc->backup_id, inc->sha256, tar));
      CONCORD_RETURN_IF_ERROR(verify_sha256(tar, inc->sha256));
      CONCORD_RETURN_IF_ERROR(chown_tree(tar, ctx.user));
      CONCORD_RETURN_IF_ERROR(make_dir(into, 0700, ctx.user));
      if (auto r = run_checked({"tar", "-xf", tar, "-C", into}, opts); !r) {
        return fail(Code::kInternal, fmt::format("restore of backup {}: unpacking: {}",
                                                 inc->backup_id, r.error().message()));
      }
      (void)remove_tree(tar);
      for (const auto& n : meta["segments"]) {
        const std::string name = n.get<std::string>();
        const std::string path = into + "/" + name;
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
          return fail(Code::kInternal,
                      fmt::format("restore of backup {}: the archive lacks WAL segment {}",
                                  inc->backup_id, name));
        }
        CONCORD_RETURN_IF_ERROR(decompress_if_zstd(path));
        CONCORD_RETURN_IF_ERROR(chown_tree(path, ctx.user));
        if (::rename(path.c_str(), (wal + "/" + name).c_str()) != 0) {
          return fail(Code::kInternal, fmt::format("rename {}: {}", path, std::strerror(errno)));
        }
        ++wal_files;
      }
      CONCORD_RETURN_IF_ERROR(remove_tree(into));
    }
    if (!spec.log_source_instance.empty()) {
      CONCORD_ASSIGN_OR_RETURN(std::vector<LogFile> listed,
                               transport.list_logs(spec.log_source_instance));
      std::vector<LogFile> logs = logs_to_fetch(plan, spec, std::move(listed));
      int64_t last_commit = 0;
      for (auto& l : logs) {
        const std::string path = wal + "/" + l.name;
        // A segment an incremental brought is the same file; the shipped copy is not needed.
        if (!path_exists(path)) {
          CONCORD_RETURN_IF_ERROR(transport.get_log(spec.log_source_instance, l, path));
          CONCORD_RETURN_IF_ERROR(verify_sha256(path, l.sha256));
          CONCORD_RETURN_IF_ERROR(decompress_if_zstd(path));
          CONCORD_RETURN_IF_ERROR(chown_tree(path, ctx.user));
          ++wal_files;
        }
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
          spec.log_source_instance, wal_files,
          pg_conf_quote(fmt::format("cp {}/%f \"%p\"", p.restore_wal)), target);
      log->info(
          "postgresql {}: restoring backup {} and {} incrementals with {} log files of {} "
          "to {}",
          ctx.config.id, plan.base->backup_id, plan.incrementals.size(), logs.size(),
          spec.log_source_instance,
          target.empty() ? "their end" : format_utc_us(spec.target_time_us));
    } else if (!plan.incrementals.empty()) {
      // Exactly the state at the last incremental: recovery stops after its switch record (and
      // fails rather than promoting short of it, should a segment not replay).
      recovery = fmt::format(
          "# Written by Concord: recovery through {} incremental backups ({} files).\n"
          "restore_command = {}\n"
          "recovery_target_lsn = {}\n"
          "recovery_target_inclusive = on\n"
          "recovery_target_action = 'promote'\n"
          "recovery_target_timeline = 'current'\n"
          "# No read-only connections during recovery: start() returns once the instance\n"
          "# answers, which must mean promoted and writable.\n"
          "hot_standby = off\n",
          plan.incrementals.size(), wal_files,
          pg_conf_quote(fmt::format("cp {}/%f \"%p\"", p.restore_wal)),
          pg_conf_quote(format_lsn(plan.last.stop_lsn)));
      log->info("postgresql {}: restoring backup {} and {} incrementals to {}", ctx.config.id,
                plan.base->backup_id, plan.incrementals.size(), format_lsn(plan.last.stop_lsn));
    }
    if (path_exists(wal)) {
      CONCORD_RETURN_IF_ERROR(write_file_atomic(data + "/recovery.signal", "", 0600, ctx.user));
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
  BPaths p(ctx.config);
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
    if (!put) {
      (void)remove_tree(p.ship_tmp);
      return put;
    }
    // A shipped segment stays, compressed, for the next incremental backup (the file comment);
    // kept before the original goes, so a kill in between only ships it once more.
    if (is_segment_name(name)) {
      CONCORD_RETURN_IF_ERROR(make_dir(p.shipped, 0700));
      if (::rename(packed.c_str(), (p.shipped + "/" + name).c_str()) != 0) {
        logger("database.engine")
            ->warn("postgresql {}: keeping shipped segment {}: {}", ctx.config.id, name,
                   std::strerror(errno));
      }
    }
    (void)remove_tree(p.ship_tmp);
    CONCORD_RETURN_IF_ERROR(remove_tree(path));
  }
  cap_shipped(ctx, p);
  return ok();
}

bool pg_logs_waiting(const InstanceConfig& config) {
  const std::vector<std::string> names = list_files(BPaths(config).archive);
  return std::any_of(names.begin(), names.end(),
                     [](const std::string& name) { return !name.ends_with(".tmp"); });
}

}  // namespace concord::database::engine::detail

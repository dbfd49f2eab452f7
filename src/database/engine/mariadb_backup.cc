// MariaDB backups: mariadb-backup into a target folder, packed as one zstd tar; restore
// unpacks and prepares as the engine user and, for a point in time, replays the source's
// shipped binlogs with mariadb-binlog into a private server on the staging folder. See
// mariadb_backup.h for the files.
#include "database/engine/mariadb_backup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "database/engine/backup_util.h"
#include "database/engine/mariadb_common.h"
#include "fmt/format.h"

namespace concord::database::engine::detail {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kFormat = "concord-mariadb-backup-1";
// Every binlog history (a data folder made anew: prepare, clone, restore) gets its own
// basename "mariadb-bin-<tag>", so the files of an HA group's members never share a name in
// the instance's archive. Plain "mariadb-bin" is the one history of a folder made before tags.
constexpr std::string_view kBinlogBase = "mariadb-bin";
// Files of another history than the backup's that end this long before the backup is
// consistent are not fetched for a point-in-time restore: a row event carries its
// statement's start time, so a long statement committed after the backup's position is
// stamped earlier than the backup; an hour bounds that and what is fetched for nothing.
constexpr int64_t kOtherHistoryMarginUs = 3600LL * 1'000'000;
constexpr milliseconds kBackupTimeout{6 * 3600 * 1000};
// As PostgreSQL's archive_timeout: a binlog with events is closed and shipped at least this
// often, bounding what a point-in-time restore can lose (plus the shipping interval).
constexpr int64_t kArchiveIntervalUs = 60'000'000;

// In the instance folder what the server and a restore use; a backup's working copy in the
// work folder (InstanceConfig::work_dir), outside the instance's volume.
struct MPaths {
  explicit MPaths(const InstanceConfig& c)
      : MPaths(c.dir, c.work_dir.empty() ? c.dir : c.work_dir) {}
  MPaths(const std::string& d, const std::string& w)
      : dir(d),
        data(d + "/data"),
        binlog(d + "/binlog"),
        flushed(d + "/binlog/flushed"),
        shipped(d + "/binlog/shipped"),
        alias(d + "/binlog/ship_alias"),
        conf(d + "/concord_binlog.cnf"),
        backup_tmp(w + "/backup.tmp"),
        restore_tmp(d + "/restore.tmp") {}
  std::string dir, data, binlog, flushed, shipped, alias, conf, backup_tmp, restore_tmp;
};

// The number of the last binlog shipped (binlog/shipped), 0 when none was.
int64_t last_shipped(const MPaths& p) {
  auto text = read_file(p.shipped);
  return text ? std::atoll(text->c_str()) : 0;
}

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

// A binlog's name: its history's basename and its number.
struct BinlogName {
  std::string base;  // "mariadb-bin" or "mariadb-bin-<tag>"
  int64_t number = -1;
};

// "mariadb-bin-<tag>.000012" (tag: lowercase letters and digits) or "mariadb-bin.000012";
// number -1 for anything else (the index, the state file, our markers).
BinlogName parse_binlog_name(std::string_view name) {
  BinlogName out;
  const auto dot = name.rfind('.');
  if (dot == std::string_view::npos || name.size() - dot - 1 != 6) return out;
  std::string_view base = name.substr(0, dot);
  if (!base.starts_with(kBinlogBase)) return out;
  std::string_view tag = base.substr(kBinlogBase.size());
  if (!tag.empty()) {
    if (tag.size() < 2 || tag.size() > 33 || tag[0] != '-') return out;
    for (char c : tag.substr(1)) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) return out;
    }
  }
  int64_t n = 0;
  for (char c : name.substr(dot + 1)) {
    if (c < '0' || c > '9') return out;
    n = n * 10 + (c - '0');
  }
  out.base = std::string(base);
  out.number = n;
  return out;
}

int64_t binlog_number(std::string_view name) {
  return parse_binlog_name(name).number;
}

// The basename concord_binlog.cnf gives log_bin ("" when the file or the line is absent).
std::string configured_base(const std::string& conf) {
  auto text = read_file(conf);
  if (!text) return "";
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("log_bin = ")) continue;
    const auto slash = line.rfind('/');
    return slash == std::string::npos ? "" : line.substr(slash + 1);
  }
  return "";
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

Status mdb_configure_binlog(const MdbBackupContext& ctx, bool fresh) {
  MPaths p(ctx.config);
  CONCORD_RETURN_IF_ERROR(make_dir(p.binlog, 0700, ctx.user));
  // The basename stays while the server has written under it (its index exists): renaming a
  // live history would lose the server's GTID state and its crash-recovery checkpoints. A new
  // history, or one nothing was written to yet, gets a new tag, so its numbering from 000001
  // never meets names another history (a sibling member, this folder before a rebuild)
  // already shipped.
  std::string base = configured_base(p.conf);
  if (fresh || base.empty() || parse_binlog_name(base + ".000001").number < 0 ||
      !path_exists(p.binlog + "/" + base + ".index")) {
    base = fmt::format("{}-{}", kBinlogBase, new_hex_id().substr(0, 12));
    // The markers describe the previous history's files.
    CONCORD_RETURN_IF_ERROR(remove_tree(p.flushed));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.shipped));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.alias));
  }
  // Outside the data folder: binlogs are not part of a backup, and a restore's data folder
  // must not inherit the source's.
  const std::string text = fmt::format(
      "# Written by Concord: binary logs for point-in-time restore.\n"
      "[mariadbd]\n"
      "log_bin = {}/{}\n"
      "log_bin_index = {}/{}.index\n"
      "server_id = 1\n"
      "binlog_format = ROW\n",
      p.binlog, base, p.binlog, base);
  auto current = read_file(p.conf);
  if (current && *current == text) return ok();
  return write_file_atomic(p.conf, text, 0600, ctx.user);
}

namespace {

// The time of a mariadb-binlog event header line, "#YYMMDD HH:MM:SS server id ..." (the hour
// space-padded, read in TZ=UTC): microseconds since the epoch, 0 for any other line.
int64_t header_time_us(const std::string& line) {
  if (line.size() < 16 || line[0] != '#' || line.find(" server id ") == std::string::npos) return 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (std::sscanf(line.c_str(), "#%2d%2d%2d %d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6) return 0;
  return parse_utc_us(fmt::format("20{:02}-{:02}-{:02} {:02}:{:02}:{:02}", y, mo, d, h, mi, sec));
}

}  // namespace

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
    int64_t t = header_time_us(line);
    if (t == 0) continue;
    if (first == 0 || t < first) first = t;
    last = std::max(last, t);
  }
  return {first, last};
}

Result<BackupInfo> mdb_backup(const MdbBackupContext& ctx, const BackupRequest& request,
                              const std::string& out_path) {
  MPaths p(ctx.config);
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

// One event group of a binlog: its GTID and where its GTID event starts; `time_us` is that
// event's time (the commit's statement time, whole seconds).
struct BinlogGroup {
  uint32_t domain = 0;
  uint32_t server = 0;
  uint64_t seq = 0;
  int64_t offset = 0;
  int64_t time_us = 0;
};

// A shipped binlog fetched for a point-in-time restore, with its event groups in file order.
struct FetchedBinlog {
  LogFile log;
  BinlogName name;
  std::string path;
  std::vector<BinlogGroup> groups;
};

// "D-S-N" -> the GTID; false when malformed.
bool parse_gtid(std::string_view text, BinlogGroup& g) {
  unsigned long long d = 0, sv = 0, n = 0;
  int used = 0;
  std::string t(text.substr(0, 64));
  if (std::sscanf(t.c_str(), "%llu-%llu-%llu%n", &d, &sv, &n, &used) != 3) return false;
  if (d > UINT32_MAX || sv > UINT32_MAX) return false;
  g.domain = static_cast<uint32_t>(d);
  g.server = static_cast<uint32_t>(sv);
  g.seq = n;
  return true;
}

// Domain 0's sequence number in a GTID position ("0-1-5,1-2-3"); 0 when it holds none (no
// transaction was ever logged in domain 0).
uint64_t domain0_seq(const std::string& position) {
  std::istringstream in(position);
  std::string one;
  while (std::getline(in, one, ',')) {
    BinlogGroup g;
    if (parse_gtid(one, g) && g.domain == 0) return g.seq;
  }
  return 0;
}

// The event groups of one binlog file, from mariadb-binlog's event headers ("# at <offset>",
// then "#<time> server id ... GTID D-S-N ...").
Result<std::vector<BinlogGroup>> binlog_groups(const MdbBackupContext& ctx,
                                               const std::string& path) {
  CommandOptions o;
  o.timeout = kBackupTimeout;
  auto r = run_command({"/usr/bin/env", "TZ=UTC", prog(ctx, "mariadb-binlog"), "--no-defaults",
                        "--base64-output=decode-rows", path},
                       o);
  if (!r) return fail(r.error());
  if (!r->ok()) {
    return fail(Code::kInternal,
                fmt::format("reading binlog {}: {}", path, r->describe("mariadb-binlog")));
  }
  std::vector<BinlogGroup> out;
  std::istringstream in(r->out);
  std::string line;
  int64_t at = -1;
  while (std::getline(in, line)) {
    if (line.starts_with("# at ")) {
      at = std::atoll(line.c_str() + 5);
      continue;
    }
    const int64_t t = header_time_us(line);
    if (t == 0) continue;
    // "GTID 0-1-6 trans" after the checksum; "Gtid list [...]" is another event.
    auto g = line.find("GTID ", line.find(" end_log_pos "));
    if (g == std::string::npos || at < 4) continue;
    BinlogGroup group;
    if (!parse_gtid(std::string_view(line).substr(g + 5), group)) continue;
    group.offset = at;
    group.time_us = t;
    out.push_back(group);
  }
  return out;
}

// What a point-in-time restore replays: byte ranges of fetched binlogs, in order.
struct ReplayRange {
  size_t file = 0;    // index into the fetched binlogs
  int64_t start = 0;  // the first group's GTID event
  int64_t stop = 0;   // the next group's GTID event; 0: to the end of the file
  size_t last = 0;    // the last group replayed (index into the file's groups)
};

struct ReplayPlan {
  std::vector<ReplayRange> ranges;
  uint64_t last_seq = 0;     // domain 0's last replayed sequence number
  uint32_t last_server = 0;  // and its server id (0: nothing replayed)
  std::string detail;        // for the log: where it switched histories, what it left out
};

// Follows domain 0's GTIDs from the backup's `from_seq` through every history (basename) the
// fetched binlogs hold: each next sequence number from whichever file holds it, preferring to
// stay in the file and history it is reading. When histories disagree on a sequence number (a
// primary's commits its standby never received before it was promoted), the GTID held by the
// history that continues latest (`history_end_us`) wins and the others are not read past that
// point. Stops before the first group stamped in the target's second or later (`cutoff_us`,
// 0: none). kFailedPrecondition when a later GTID exists before the cutoff but the next one is
// in no fetched file (a binlog is missing).
Result<ReplayPlan> plan_replay(const std::vector<FetchedBinlog>& files, uint64_t from_seq,
                               int64_t cutoff_us,
                               const std::map<std::string, int64_t>& history_end_us,
                               const std::string& source) {
  // seq -> (file, group) holding it, domain 0 only.
  std::map<uint64_t, std::vector<std::pair<size_t, size_t>>> by_seq;
  for (size_t f = 0; f < files.size(); ++f) {
    for (size_t i = 0; i < files[f].groups.size(); ++i) {
      const BinlogGroup& g = files[f].groups[i];
      if (g.domain == 0 && g.seq > from_seq) by_seq[g.seq].emplace_back(f, i);
    }
  }
  auto end_of = [&](const std::string& base) {
    auto it = history_end_us.find(base);
    return it == history_end_us.end() ? int64_t{0} : it->second;
  };
  ReplayPlan plan;
  std::set<std::string> dead;  // histories that diverged from the one followed
  uint64_t seq = from_seq;
  bool reached_cutoff = false;
  std::optional<std::pair<size_t, size_t>> prev;
  while (true) {
    auto it = by_seq.find(seq + 1);
    std::vector<std::pair<size_t, size_t>> holders;
    if (it != by_seq.end()) {
      for (const auto& h : it->second) {
        if (!dead.contains(files[h.first].name.base)) holders.push_back(h);
      }
    }
    if (holders.empty()) break;
    // The GTID (server id) of the history that continues latest.
    std::map<uint32_t, int64_t> server_end;
    for (const auto& [f, i] : holders) {
      int64_t& e = server_end[files[f].groups[i].server];
      e = std::max(e, end_of(files[f].name.base));
    }
    uint32_t server = server_end.begin()->first;
    for (const auto& [sv, e] : server_end) {
      if (e > server_end[server]) server = sv;
    }
    for (const auto& [f, i] : holders) {
      if (files[f].groups[i].server != server && !dead.contains(files[f].name.base)) {
        dead.insert(files[f].name.base);
        plan.detail += fmt::format("; {} diverges at GTID {}-{}-{} (left out)", files[f].name.base,
                                   0, files[f].groups[i].server, seq + 1);
      }
    }
    std::erase_if(holders,
                  [&](const auto& h) { return files[h.first].groups[h.second].server != server; });
    // Where to read it: right after the previous group in the same file, else the same
    // history's next file, else the history that continues latest.
    auto pick = holders.front();
    auto rank = [&](const std::pair<size_t, size_t>& h) {
      if (prev && h.first == prev->first && h.second == prev->second + 1) return int64_t{3};
      if (prev && files[h.first].name.base == files[prev->first].name.base) return int64_t{2};
      return int64_t{1};
    };
    for (const auto& h : holders) {
      const int64_t a = rank(h), b = rank(pick);
      if (a > b ||
          (a == b && end_of(files[h.first].name.base) > end_of(files[pick.first].name.base))) {
        pick = h;
      }
    }
    const BinlogGroup& g = files[pick.first].groups[pick.second];
    if (cutoff_us != 0 && g.time_us >= cutoff_us) {
      reached_cutoff = true;
      break;
    }
    if (prev && pick.first == prev->first && pick.second == prev->second + 1) {
      plan.ranges.back().last = pick.second;
    } else {
      if (!plan.ranges.empty() &&
          files[pick.first].name.base != files[plan.ranges.back().file].name.base) {
        plan.detail += fmt::format("; continues in {} at GTID 0-{}-{}", files[pick.first].name.base,
                                   g.server, g.seq);
      }
      plan.ranges.push_back(ReplayRange{pick.first, g.offset, 0, pick.second});
    }
    prev = pick;
    seq = g.seq;
    plan.last_server = g.server;
  }
  for (ReplayRange& r : plan.ranges) {
    const auto& groups = files[r.file].groups;
    r.stop = r.last + 1 < groups.size() ? groups[r.last + 1].offset : 0;
  }
  plan.last_seq = seq;
  if (!reached_cutoff) {
    // Nothing holds seq + 1: the end of the archived history, unless a later GTID of a
    // history still followed would have been replayed.
    for (const auto& [later, holders] : by_seq) {
      if (later <= seq + 1) continue;
      for (const auto& [f, i] : holders) {
        const BinlogGroup& g = files[f].groups[i];
        if (dead.contains(files[f].name.base) || (cutoff_us != 0 && g.time_us >= cutoff_us)) {
          continue;
        }
        return fail(Code::kFailedPrecondition,
                    fmt::format("no archived binlog of instance {} holds GTID 0-*-{} (after "
                                "it: GTID 0-{}-{} in {}): a binlog is missing",
                                source, seq + 1, g.server, g.seq, files[f].log.name));
      }
    }
  }
  return plan;
}

}  // namespace

void mdb_discard_restore_stage(const InstanceConfig& config) {
  const std::string stage = MPaths(config).restore_tmp;
  PrivateMariadb::reap_all(stage);
  (void)remove_tree(stage);
}

Status mdb_restore_data(const MdbBackupContext& ctx, const RestoreSpec& spec, Transport& transport,
                        const RestoreFinish& before_rename) {
  MPaths p(ctx.config);
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
  PrivateMariadb::reap_all(p.restore_tmp);  // the replay server, a seed's load server
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

    std::string position = jstr(meta, "gtid");
    if (!spec.log_source_instance.empty()) {
      CONCORD_ASSIGN_OR_RETURN(std::vector<LogFile> listed,
                               transport.list_logs(spec.log_source_instance));
      // Binlog events carry whole seconds: groups stamped in the target's second or later are
      // left out.
      const int64_t cutoff =
          spec.target_time_us == 0 ? 0 : spec.target_time_us / 1'000'000 * 1'000'000;
      const BinlogName start = parse_binlog_name(start_file);
      std::map<std::string, int64_t> history_end;
      std::vector<FetchedBinlog> fetched;
      for (const auto& l : listed) {
        BinlogName n = parse_binlog_name(l.name);
        if (n.number < 0) continue;
        int64_t& end = history_end[n.base];
        end = std::max({end, l.first_time_us, l.last_time_us});
        // What the backup holds, what is all after the target, and another history's files
        // that end well before the backup are not needed.
        if (n.base == start.base && n.number < start.number) continue;
        if (cutoff != 0 && l.first_time_us >= cutoff) continue;
        if (n.base != start.base && l.last_time_us != 0 &&
            l.last_time_us + kOtherHistoryMarginUs < consistent) {
          continue;
        }
        fetched.push_back(FetchedBinlog{l, n, "", {}});
      }
      std::sort(fetched.begin(), fetched.end(), [](const auto& x, const auto& y) {
        return std::tie(x.name.base, x.name.number) < std::tie(y.name.base, y.name.number);
      });
      const std::string wal = p.restore_tmp + "/binlogs";
      CONCORD_RETURN_IF_ERROR(make_dir(wal, 0700, ctx.user));
      for (auto& f : fetched) {
        f.path = wal + "/" + f.log.name;
        CONCORD_RETURN_IF_ERROR(transport.get_log(spec.log_source_instance, f.log, f.path));
        CONCORD_RETURN_IF_ERROR(verify_sha256(f.path, f.log.sha256));
        CONCORD_ASSIGN_OR_RETURN(f.groups, binlog_groups(ctx, f.path));
      }
      // Where the backup stands: its GTID position; a backup that recorded none (binlog
      // without any GTID yet) stands after the groups before its binlog position.
      const std::string gtid = jstr(meta, "gtid");
      uint64_t from_seq = domain0_seq(gtid);
      for (const auto& f : fetched) {
        if (!gtid.empty() || f.log.name != start_file) continue;
        for (const BinlogGroup& g : f.groups) {
          if (g.domain == 0 && g.offset < start_pos) from_seq = std::max(from_seq, g.seq);
        }
      }
      auto planned = plan_replay(fetched, from_seq, cutoff, history_end, spec.log_source_instance);
      if (!planned) {
        return fail(planned.error().code(), fmt::format("restore of backup {}: {}", base.backup_id,
                                                        planned.error().message()));
      }
      const ReplayPlan& plan = *planned;
      if (!plan.ranges.empty()) {
        PrivateMariadb server(replay_server(ctx, p.restore_tmp));
        CONCORD_RETURN_IF_ERROR(server.start());
        // One mariadb-binlog per range, by byte offsets of GTID events the plan read from the
        // files themselves, so exactly the planned groups are replayed.
        std::string cmd = "{ true";
        for (const ReplayRange& r : plan.ranges) {
          cmd += fmt::format(" && TZ=UTC {} --no-defaults --disable-log-bin --start-position={}",
                             prog(ctx, "mariadb-binlog"), r.start);
          if (r.stop != 0) cmd += fmt::format(" --stop-position={}", r.stop);
          cmd += " " + fetched[r.file].path;
        }
        cmd += fmt::format(
            "; }} | {} --no-defaults --protocol=SOCKET --socket={} --user=root --binary-mode",
            prog(ctx, "mariadb"), server.sock());
        auto r = run_checked({"/bin/bash", "-o", "pipefail", "-c", cmd},
                             CommandOptions{.timeout = kBackupTimeout});
        if (!r) return step_err("replaying binlogs", r.error());
        CONCORD_RETURN_IF_ERROR(server.stop());
        position = fmt::format("0-{}-{}", plan.last_server, plan.last_seq);
      }
      log->info(
          "mariadb {}: restored backup {} and replayed {} binlog ranges of {} from GTID "
          "0-*-{} through 0-*-{} (target {}){}",
          ctx.config.id, base.backup_id, plan.ranges.size(), spec.log_source_instance, from_seq,
          plan.last_seq, spec.target_time_us ? format_utc_us(spec.target_time_us) : "their end",
          plan.detail);
    }
    if (before_rename) CONCORD_RETURN_IF_ERROR(before_rename(p.restore_tmp, position));
    if (::rename(data.c_str(), p.data.c_str()) != 0) {
      return fail(Code::kInternal, fmt::format("rename {}: {}", data, std::strerror(errno)));
    }
    return ok();
  };
  auto st = attempt();
  PrivateMariadb::reap_all(p.restore_tmp);  // the replay server, a seed's load server
  (void)remove_tree(p.restore_tmp);
  if (!st) log->warn("mariadb {}: restore failed: {}", ctx.config.id, st.error().message());
  return st;
}

namespace {

// Completed binlogs stay this long after they were written, shipped or not: a replica resumes
// from its GTID position in its upstream's binlogs, so a sibling cloned from this server (its
// dump's position, then CHANGE MASTER a moment later), a standby whose connection dropped for a
// while, and a member promoted from here all need the files just before the current one. A
// purge right after shipping left such a replica with "Could not find GTID state requested by
// slave in any binlog files" (error 1236) and no way forward but a rebuild.
// (MdbBackupContext::binlog_keep, 10 minutes by default.) At most a quarter of the volume, at
// least this much, so a busy primary cannot fill its disk with them.
constexpr int64_t kKeepCompletedFloorBytes = int64_t{64} << 20;

// The name to PURGE BINARY LOGS TO so that what goes is at most everything before `limit` (a
// binlog of the current history) and no file a replica may still read: completed files younger
// than binlog_keep, newest first, while they fit a quarter of the volume. Empty: purge nothing.
std::string purge_boundary(const MdbBackupContext& ctx, const std::string& binlog_dir,
                           const std::string& limit) {
  const BinlogName lim = parse_binlog_name(limit);
  if (lim.number <= 0) return "";
  std::vector<std::pair<int64_t, std::string>> older;  // (number, name) before `limit`
  for (const auto& name : list_files(binlog_dir)) {
    const BinlogName bn = parse_binlog_name(name);
    if (bn.number > 0 && bn.base == lim.base && bn.number < lim.number) {
      older.emplace_back(bn.number, name);
    }
  }
  if (older.empty()) return "";
  std::sort(older.begin(), older.end());
  const int64_t cap =
      std::max<int64_t>(kKeepCompletedFloorBytes, ctx.config.volume_gb * (int64_t{1} << 30) / 4);
  const int64_t now = now_us();
  const int64_t keep_us =
      std::chrono::duration_cast<std::chrono::microseconds>(ctx.binlog_keep).count();
  std::string keep_from = limit;
  int64_t kept = 0;
  for (auto it = older.rbegin(); it != older.rend(); ++it) {
    struct stat st {};
    if (::stat((binlog_dir + "/" + it->second).c_str(), &st) != 0) break;
    const int64_t mtime_us = static_cast<int64_t>(st.st_mtime) * 1000000;
    if (now - mtime_us >= keep_us || kept + st.st_size > cap) break;
    kept += st.st_size;
    keep_from = it->second;
  }
  return keep_from == older.front().second ? "" : keep_from;
}

}  // namespace

Status mdb_set_archiving(const MdbBackupContext& ctx, bool archive) {
  if (archive) return ok();
  auto status = master_status(ctx);
  if (!status) {
    // Binary logging is off (an instance started before it existed): nothing to purge.
    if (status.error().code() == Code::kFailedPrecondition) return ok();
    return fail(status.error());
  }
  const std::string to = purge_boundary(ctx, MPaths(ctx.config).binlog, status->first);
  if (to.empty()) return ok();
  CONCORD_ASSIGN_OR_RETURN(std::string out, ctx.admin("PURGE BINARY LOGS TO '" + to + "'"));
  (void)out;
  return ok();
}

Status mdb_ship_logs(const MdbBackupContext& ctx, Transport& transport) {
  MPaths p(ctx.config);
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
  const BinlogName current = parse_binlog_name(status.first);
  std::string first_unshipped = status.first;
  // The server keeps a binlog it still needs for crash recovery (binlog checkpoint) through a
  // PURGE; what we already shipped is not shipped again.
  int64_t shipped = last_shipped(p);
  // A folder made before tags writes plain "mariadb-bin" names, which its HA sibling may have
  // shipped first: once the server refuses one as taken, this folder's files travel under a
  // tagged name of their own (the restore follows GTIDs, whatever the names).
  auto alias_text = read_file(p.alias);
  std::string alias = alias_text ? alias_text->substr(0, alias_text->find('\n')) : "";
  if (parse_binlog_name(alias + ".000001").number < 0) alias.clear();
  Status result = ok();
  for (const auto& name : list_files(p.binlog)) {
    // Only this history's (another basename in the folder is none the server still lists).
    const BinlogName bn = parse_binlog_name(name);
    const int64_t n = bn.number;
    if (n < 0 || bn.base != current.base || n >= current.number || n <= shipped) continue;
    const std::string path = p.binlog + "/" + name;
    LogFile lf;
    lf.name = alias.empty() ? name : alias + name.substr(bn.base.size());
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
    auto put = transport.put_log(ctx.config.id, lf, path);
    if (!put && put.error().code() == Code::kAlreadyExists && alias.empty() &&
        bn.base == kBinlogBase) {
      alias = fmt::format("{}-{}", kBinlogBase, new_hex_id().substr(0, 12));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(p.alias, alias + "\n"));
      logger("database.engine")
          ->warn(
              "mariadb {}: binlog {} is taken in the archive by another member's; this "
              "folder's binlogs are shipped as {}.*",
              ctx.config.id, name, alias);
      lf.name = alias + name.substr(bn.base.size());
      put = transport.put_log(ctx.config.id, lf, path);
    }
    if (!put) {
      result = put;
      first_unshipped = name;
      break;
    }
    shipped = n;
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.shipped, std::to_string(n) + "\n"));
  }
  // The server forgets (index) and deletes the shipped ones its replicas no longer need; never
  // behind its back.
  if (const std::string to = purge_boundary(ctx, p.binlog, first_unshipped); !to.empty()) {
    auto purged = ctx.admin("PURGE BINARY LOGS TO '" + to + "'");
    if (!purged && result) return fail(purged.error());
  }
  return result;
}

bool mdb_logs_waiting(const InstanceConfig& config) {
  MPaths p(config);
  const std::string base = configured_base(p.conf);
  if (base.empty()) return false;
  int64_t newest = -1;
  for (const auto& name : list_files(p.binlog)) {
    const BinlogName bn = parse_binlog_name(name);
    if (bn.base == base) newest = std::max(newest, bn.number);
  }
  const int64_t shipped = last_shipped(p);
  return newest - 1 > shipped;
}

}  // namespace concord::database::engine::detail

// Backups, restore and point-in-time recovery of the real engines (PostgreSQL 15 first):
// a backup of a running engine with data is restored into a new instance folder through a
// folder-backed Transport (no server), started, and queried with the real client. Corrupted
// archives, half-made restores and the WAL archive -> ship -> replay-to-a-time path are checked
// against the engine itself.
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "base/json.h"
#include "database/engine/backup_util.h"
#include "database/engine/credentials.h"
#include "database/engine/engine.h"
#include "engine_test_util.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace concord::database::engine::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// The server's blob store, as a folder. Every get verifies the checksum it was given and
// answers kInternal without leaving the file, as the Transport contract asks.
class FolderTransport final : public Transport {
 public:
  explicit FolderTransport(std::string root) : root_(std::move(root)) {
    fs::create_directories(root_ + "/backups");
    fs::create_directories(root_ + "/logs");
  }

  Status put_backup(const std::string& backup_id, const std::string& path,
                    const std::string& sha256) override {
    CONCORD_ASSIGN_OR_RETURN(std::string have, detail::sha256_file(path));
    if (have != sha256) return fail(Code::kInternal, "put_backup: checksum mismatch");
    return copy(path, backup_path(backup_id));
  }
  Status get_backup(const std::string& backup_id, const std::string& sha256,
                    const std::string& path) override {
    ++backup_gets;
    CONCORD_RETURN_IF_ERROR(copy(backup_path(backup_id), path));
    return detail::verify_sha256(path, sha256);
  }
  Status put_log(const std::string& shipper, const LogFile& log, const std::string& path) override {
    if (fail_log_puts) return fail(Code::kUnavailable, "put_log: the server is away");
    CONCORD_ASSIGN_OR_RETURN(std::string have, detail::sha256_file(path));
    if (have != log.sha256) return fail(Code::kInternal, "put_log: checksum mismatch");
    // An HA member's logs are its instance's, as the server keeps them; a name taken with
    // other data is refused, as the server does (409).
    const std::string instance_id = ship_as.contains(shipper) ? ship_as.at(shipper) : shipper;
    if (auto it = logs_[instance_id].find(log.name);
        it != logs_[instance_id].end() && it->second.sha256 != log.sha256) {
      return fail(Code::kAlreadyExists, "put_log: " + log.name + " exists with other data");
    }
    ++log_puts;
    fs::create_directories(root_ + "/logs/" + instance_id);
    CONCORD_RETURN_IF_ERROR(copy(path, root_ + "/logs/" + instance_id + "/" + log.name));
    logs_[instance_id][log.name] = log;
    return ok();
  }
  void drop_log(const std::string& instance_id, const std::string& name) {
    logs_[instance_id].erase(name);
  }
  Result<std::vector<LogFile>> list_logs(const std::string& instance_id) override {
    std::vector<LogFile> out;
    for (const auto& [name, log] : logs_[instance_id]) out.push_back(log);
    return out;
  }
  Status get_log(const std::string& instance_id, const LogFile& log,
                 const std::string& path) override {
    CONCORD_RETURN_IF_ERROR(copy(root_ + "/logs/" + instance_id + "/" + log.name, path));
    return detail::verify_sha256(path, log.sha256);
  }

  std::string backup_path(const std::string& id) const { return root_ + "/backups/" + id; }
  const std::map<std::string, LogFile>& logs(const std::string& instance_id) {
    return logs_[instance_id];
  }

  bool fail_log_puts = false;
  std::map<std::string, std::string> ship_as;  // member -> the instance its logs belong to
  int backup_gets = 0;
  int log_puts = 0;

 private:
  static Status copy(const std::string& from, const std::string& to) {
    std::error_code ec;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec) return fail(Code::kNotFound, "copy " + from + " -> " + to + ": " + ec.message());
    return ok();
  }
  std::string root_;
  std::map<std::string, std::map<std::string, LogFile>> logs_;
};

int64_t now_us() {
  return detail::now_us();
}

class PostgresBackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = engine_skip_reason({"/usr/lib/postgresql/15/bin/postgres",
                                          "/usr/lib/postgresql/15/bin/pg_basebackup",
                                          "/usr/lib/postgresql/15/bin/pg_waldump", "/usr/bin/psql",
                                          "/usr/bin/zstd", "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    auto e = make_postgres_engine(EngineOptions{});
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    engine_ = std::move(*e);
    transport_ = std::make_unique<FolderTransport>(tmp_.path() + "/blobs");
    source_ = make_config("src");
  }
  void TearDown() override {
    if (!engine_) return;
    for (const auto& c : made_) (void)engine_->destroy(c);
  }

  InstanceConfig make_config(const std::string& suffix) {
    InstanceConfig c;
    c.id = "pgb-" + std::to_string(::getpid()) + "-" + suffix;
    c.dir = tmp_.path() + "/" + c.id;
    c.version = "15";
    c.address = unique_address();
    c.port = free_port(c.address);
    c.ram_mb = 256;
    made_.push_back(c);
    return c;
  }

  void up(const InstanceConfig& c) {
    auto st = engine_->prepare(c);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    start(c);
  }
  void start(const InstanceConfig& c) {
    auto st = engine_->start(c);
    ASSERT_TRUE(st.has_value()) << st.error().to_string()
                                << detail::file_tail(c.dir + "/engine.log", 3000);
  }

  // A database "shop" for user "app", and a remote root (to switch WAL segments).
  void converge(const InstanceConfig& c) {
    DesiredState s;
    s.revision = 1;
    s.databases = {{"shop", "", ""}};
    s.users = {{"app", "%", postgres_scram_verifier("app-pw"), {"shop"}}};
    s.root = RootSpec{postgres_scram_verifier("root-pw")};
    auto st = engine_->apply(c, s);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }

  detail::CommandResult sql(const InstanceConfig& c, const std::string& text) {
    return psql(c.address, c.port, "app", "app-pw", "shop", text);
  }
  detail::CommandResult root_sql(const InstanceConfig& c, const std::string& text) {
    return psql(c.address, c.port, "root", "root-pw", "postgres", text);
  }

  // Backs up `c` (incremental on `parent` when given), stores the archive in the transport,
  // and returns the chain entry.
  RestoreArchive backup(const InstanceConfig& c, const std::string& id,
                        const RestoreArchive* parent = nullptr) {
    const std::string out = tmp_.path() + "/" + id + ".out";
    BackupRequest req{id, "", ""};
    if (parent != nullptr) {
      req.parent_id = parent->backup_id;
      req.parent_meta_json = parent->meta_json;
    }
    auto info = engine_->backup(c, req, out);
    EXPECT_TRUE(info.has_value()) << info.error().to_string();
    if (!info) return {};
    auto sha = detail::sha256_file(out);
    EXPECT_TRUE(sha.has_value());
    EXPECT_TRUE(transport_->put_backup(id, out, *sha).has_value());
    RestoreArchive a;
    a.backup_id = id;
    a.sha256 = *sha;
    a.size_bytes = static_cast<int64_t>(fs::file_size(out));
    a.meta_json = info->meta_json;
    last_info_ = *info;
    fs::remove(out);
    return a;
  }

  EngineTempDir tmp_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<FolderTransport> transport_;
  InstanceConfig source_;
  std::vector<InstanceConfig> made_;
  BackupInfo last_info_;
};

TEST_F(PostgresBackupTest, OnlineBackupRestoresIntoANewInstanceWithItsOwnConfiguration) {
  up(source_);
  converge(source_);
  auto r = sql(source_,
               "CREATE TABLE t(id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM "
               "generate_series(1, 5000) g");
  ASSERT_TRUE(r.ok()) << r.err;

  const int64_t before = now_us();
  RestoreArchive a = backup(source_, "b1");
  ASSERT_FALSE(a.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "full");
  EXPECT_GE(last_info_.consistent_at_us, before);
  EXPECT_LE(last_info_.consistent_at_us, now_us());
  auto meta = parse_json(last_info_.meta_json);
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ((*meta)["timeline"], 1);
  EXPECT_TRUE((*meta)["start_lsn"].is_string() && (*meta)["stop_lsn"].is_string())
      << last_info_.meta_json;
  EXPECT_EQ((*meta)["start_wal"].get<std::string>().size(), 24u);
  // Online: the source kept serving, and what it writes now is not in the backup.
  r = sql(source_, "INSERT INTO t VALUES (9999, 'after')");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_FALSE(fs::exists(source_.dir + "/backup.tmp"));

  InstanceConfig copy = make_config("copy");
  RestoreSpec spec;
  spec.chain = {a};
  auto st = engine_->restore(copy, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(fs::exists(copy.dir + "/restore.tmp"));
  // This instance's own address, port and socket folder, not the source's.
  auto conf = detail::read_file(copy.dir + "/data/concord.conf");
  ASSERT_TRUE(conf.has_value());
  EXPECT_NE(conf->find(copy.address), std::string::npos);
  EXPECT_EQ(conf->find(source_.dir), std::string::npos);
  auto archive_conf = detail::read_file(copy.dir + "/data/concord_archive.conf");
  ASSERT_TRUE(archive_conf.has_value());
  EXPECT_NE(archive_conf->find(copy.dir + "/wal_archive"), std::string::npos);
  EXPECT_EQ(archive_conf->find(source_.dir), std::string::npos);
  start(copy);
  r = sql(copy, "SELECT count(*), sum(id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "5000|12502500\n");
  // Writable.
  r = sql(copy, "INSERT INTO t VALUES (1, 'x'); SELECT count(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "5001\n");
  // Idempotent: a second restore of an existing data folder changes nothing and fetches nothing.
  const int gets = transport_->backup_gets;
  EXPECT_TRUE(engine_->stop(copy, milliseconds(5000)).has_value());
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(transport_->backup_gets, gets);
  start(copy);
  r = sql(copy, "SELECT count(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "5001\n");
  // A restore into a running instance is refused.
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
}

TEST_F(PostgresBackupTest, CorruptedOrForeignArchivesAreRefusedAndLeaveNothing) {
  up(source_);
  converge(source_);
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int); INSERT INTO t VALUES (1)").ok());
  RestoreArchive a = backup(source_, "b1");
  ASSERT_FALSE(a.backup_id.empty());

  // One flipped byte in the stored archive.
  {
    std::fstream f(transport_->backup_path("b1"), std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekg(1000);
    char ch = 0;
    f.read(&ch, 1);
    ch = static_cast<char>(ch ^ 0x5a);
    f.seekp(1000);
    f.write(&ch, 1);
  }
  InstanceConfig copy = make_config("copy");
  RestoreSpec spec;
  spec.chain = {a};
  auto st = engine_->restore(copy, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInternal) << st.error().to_string();
  EXPECT_NE(st.error().message().find("checksum mismatch"), std::string::npos)
      << st.error().message();
  EXPECT_FALSE(fs::exists(copy.dir + "/data"));
  EXPECT_FALSE(fs::exists(copy.dir + "/restore.tmp"));
  EXPECT_FALSE(fs::exists(copy.dir + "/restore_wal"));

  // An archive whose checksum matches but holds no base backup (a transport or server bug).
  const std::string junk = tmp_.path() + "/junk.tar";
  ASSERT_TRUE(detail::run_command({"tar", "-cf", junk, "-C", "/etc", "hostname"})->ok());
  auto sha = detail::sha256_file(junk);
  ASSERT_TRUE(sha.has_value());
  ASSERT_TRUE(transport_->put_backup("junk", junk, *sha).has_value());
  RestoreArchive bad = a;
  bad.backup_id = "junk";
  bad.sha256 = *sha;
  spec.chain = {bad};
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInternal) << st.error().to_string();
  EXPECT_FALSE(fs::exists(copy.dir + "/data"));
  EXPECT_FALSE(fs::exists(copy.dir + "/restore.tmp"));

  // Metadata of another engine or version: refused before anything is fetched.
  bad = a;
  bad.meta_json = R"({"format":"concord-mariadb-backup-1"})";
  spec.chain = {bad};
  const int gets = transport_->backup_gets;
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  spec.chain = {};
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(transport_->backup_gets, gets);
}

TEST_F(PostgresBackupTest, BackupOfAStoppedEngineIsRefused) {
  auto st = engine_->prepare(source_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto info = engine_->backup(source_, BackupRequest{"b1", "", ""}, tmp_.path() + "/b1.out");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().code(), Code::kFailedPrecondition);
  EXPECT_FALSE(fs::exists(tmp_.path() + "/b1.out"));
}

// Whether the running server's archive_command comes to contain `want` (reloads are signals,
// so it may lag the apply for a moment); `last` is what it showed last.
bool wait_archive_command(const InstanceConfig& c, const std::string& want, std::string* last) {
  for (int i = 0; i < 100; ++i) {
    auto r = psql(c.address, c.port, "root", "root-pw", "postgres", "SHOW archive_command");
    *last = r.ok() ? r.out : r.err;
    if (r.ok() && r.out.find(want) != std::string::npos) return true;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return false;
}

// Waits until the archiver put `segment` (or something after it) into wal_archive/.
bool wait_archived(const std::string& dir, const std::string& segment) {
  for (int i = 0; i < 300; ++i) {
    for (const auto& n : detail::list_files(dir + "/wal_archive")) {
      if (n.size() == 24 && n >= segment) return true;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return false;
}

TEST_F(PostgresBackupTest, ArchivingFollowsTheDesiredStateAndSurvivesPrepare) {
  up(source_);
  converge(source_);
  DesiredState off;
  off.revision = 2;
  off.databases = {{"shop", "", ""}};
  off.users = {{"app", "%", postgres_scram_verifier("app-pw"), {"shop"}}};
  off.root = RootSpec{postgres_scram_verifier("root-pw")};
  off.archive_logs = false;
  auto st = engine_->apply(source_, off);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  std::string last;
  ASSERT_TRUE(wait_archive_command(source_, "/bin/true", &last)) << last;
  // A prepare (every agent start) keeps it off.
  ASSERT_TRUE(engine_->prepare(source_).has_value());
  auto conf = detail::read_file(source_.dir + "/data/concord_archive.conf");
  ASSERT_TRUE(conf.has_value());
  EXPECT_NE(conf->find("archive_command = '/bin/true'"), std::string::npos) << *conf;
  ASSERT_TRUE(root_sql(source_, "SELECT pg_switch_wal()").ok());

  off.revision = 3;
  off.archive_logs = true;
  st = engine_->apply(source_, off);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(wait_archive_command(source_, source_.dir + "/wal_archive", &last)) << last;

  // A postmaster launched before wal_recycle = off (no wal_links: it may still recycle a
  // segment into a future one) gets a copy, which recycling cannot overwrite.
  ASSERT_TRUE(std::filesystem::exists(source_.dir + "/wal_links"));
  std::filesystem::remove(source_.dir + "/wal_links");
  auto seg = root_sql(source_, "SELECT pg_walfile_name(pg_current_wal_lsn())");
  ASSERT_TRUE(seg.ok()) << seg.err;
  const std::string segment = seg.out.substr(0, 24);
  ASSERT_TRUE(
      root_sql(source_, "CREATE TABLE copied AS SELECT 1 AS x; SELECT pg_switch_wal()").ok());
  ASSERT_TRUE(wait_archived(source_.dir, segment))
      << detail::file_tail(source_.dir + "/engine.log", 2000);
  struct stat archived {};
  ASSERT_EQ(::stat((source_.dir + "/wal_archive/" + segment).c_str(), &archived), 0);
  EXPECT_EQ(archived.st_nlink, 1u);
}

TEST_F(PostgresBackupTest, PointInTimeRestoreReplaysShippedWalToTheTarget) {
  up(source_);
  converge(source_);
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int)").ok());
  RestoreArchive a = backup(source_, "b1");
  ASSERT_FALSE(a.backup_id.empty());

  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (1)").ok());
  const int64_t after_one = now_us();
  std::this_thread::sleep_for(milliseconds(1500));
  const int64_t before_two = now_us();
  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (2)").ok());
  auto seg = root_sql(source_, "SELECT pg_walfile_name(pg_current_wal_lsn())");
  ASSERT_TRUE(seg.ok()) << seg.err;
  std::string segment = seg.out.substr(0, 24);
  ASSERT_TRUE(root_sql(source_, "SELECT pg_switch_wal()").ok());
  ASSERT_TRUE(wait_archived(source_.dir, segment))
      << "segment " << segment
      << " was not archived: " << detail::file_tail(source_.dir + "/engine.log", 2000);
  // Archived by a hard link to the segment in pg_wal/ (no checkpoint removed it yet), not a
  // second copy on the volume: the postmaster was launched with wal_recycle = off.
  auto recycle = root_sql(source_, "SHOW wal_recycle");
  EXPECT_EQ(recycle.out, "off\n") << recycle.err;
  struct stat archived {
  }, in_wal{};
  ASSERT_EQ(::stat((source_.dir + "/wal_archive/" + segment).c_str(), &archived), 0);
  ASSERT_EQ(::stat((source_.dir + "/data/pg_wal/" + segment).c_str(), &in_wal), 0);
  EXPECT_EQ(archived.st_ino, in_wal.st_ino);
  EXPECT_TRUE(engine_->logs_waiting(source_));

  // The server is away: nothing is lost locally.
  transport_->fail_log_puts = true;
  auto st = engine_->ship_logs(source_, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable);
  EXPECT_FALSE(detail::list_files(source_.dir + "/wal_archive").empty());
  transport_->fail_log_puts = false;
  st = engine_->ship_logs(source_, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  for (const auto& n : detail::list_files(source_.dir + "/wal_archive")) {
    EXPECT_TRUE(n.ends_with(".tmp")) << n << " was shipped but kept";
  }
  EXPECT_FALSE(engine_->logs_waiting(source_));
  const auto& shipped = transport_->logs(source_.id);
  ASSERT_TRUE(shipped.contains(segment));
  // The commit times of the segment with both rows are known and bracket them.
  EXPECT_GT(shipped.at(segment).first_time_us, 0);
  EXPECT_LE(shipped.at(segment).first_time_us, after_one);
  EXPECT_GE(shipped.at(segment).last_time_us, before_two);
  // Shipped compressed: a 16 MB segment holding two inserts is mostly unused space.
  EXPECT_LT(shipped.at(segment).size_bytes, 4 * 1024 * 1024);
  EXPECT_TRUE(engine_->ship_logs(source_, *transport_).has_value());  // nothing to do

  // A restore killed midway left its staging and fetched WAL behind; they are redone.
  InstanceConfig pitr = make_config("pitr");
  ASSERT_TRUE(detail::make_dir(pitr.dir + "/restore.tmp/data", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(pitr.dir + "/restore.tmp/data/junk", "x").has_value());
  ASSERT_TRUE(detail::make_dir(pitr.dir + "/restore_wal", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(pitr.dir + "/restore_wal/" + segment, "junk").has_value());

  RestoreSpec spec;
  spec.chain = {a};
  spec.log_source_instance = source_.id;
  spec.target_time_us = (after_one + before_two) / 2;
  st = engine_->restore(pitr, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  start(pitr);
  // Promoted at the end of recovery: exactly row 1, and writable.
  auto r = sql(pitr, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1\n");
  r = sql(pitr, "INSERT INTO t VALUES (3); SELECT count(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.err << detail::file_tail(pitr.dir + "/engine.log", 2000);
  EXPECT_EQ(r.out, "2\n");
  // Recovery leftovers go once it is over; the instance archives its own new timeline.
  ASSERT_TRUE(engine_->ship_logs(pitr, *transport_).has_value());
  EXPECT_FALSE(fs::exists(pitr.dir + "/restore_wal"));

  // Target 0: everything shipped is replayed.
  InstanceConfig all = make_config("all");
  spec.target_time_us = 0;
  st = engine_->restore(all, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  start(all);
  r = sql(all, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1,2\n");

  // A target before the backup is consistent cannot be reached.
  InstanceConfig early = make_config("early");
  spec.target_time_us = last_info_.consistent_at_us - 60'000'000;
  st = engine_->restore(early, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  EXPECT_FALSE(fs::exists(early.dir + "/data"));
}

// What a restored and started instance's table t holds ("count|min|max"), or why not.
struct Restored {
  Status status;
  std::string rows;
};

class PostgresIncrementalTest : public PostgresBackupTest {
 protected:
  void SetUp() override {
    PostgresBackupTest::SetUp();
    // Concord's own copies (backup.tmp/, ship.tmp/, wal_shipped/) in a folder of their own, as
    // the driver keeps them off an instance's volume (InstanceConfig::work_dir).
    source_.work_dir = tmp_.path() + "/work-src";
  }
  void insert(int from, int to) {
    auto r = sql(source_, fmt::format("INSERT INTO t SELECT g, md5(g::text) FROM "
                                      "generate_series({}, {}) g",
                                      from, to));
    ASSERT_TRUE(r.ok()) << r.err;
  }
  // Closes the current segment, waits for the archiver, and ships: the segments then live in
  // wal_shipped/ only (what an incremental finds hours after its parent).
  void switch_and_ship() {
    auto seg = root_sql(source_, "SELECT pg_walfile_name(pg_current_wal_lsn())");
    ASSERT_TRUE(seg.ok()) << seg.err;
    ASSERT_TRUE(root_sql(source_, "SELECT pg_switch_wal()").ok());
    ASSERT_TRUE(wait_archived(source_.dir, seg.out.substr(0, 24))) << seg.out;
    auto st = engine_->ship_logs(source_, *transport_);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }
  // Restores `spec` into a new instance "<suffix>" and starts it.
  Restored restore_rows(const std::string& suffix, const RestoreSpec& spec) {
    InstanceConfig c = make_config(suffix);
    Restored out;
    out.status = engine_->restore(c, spec, *transport_);
    if (!out.status) return out;
    auto st = engine_->start(c);
    if (!st) {
      out.status = fail(st.error().code(), st.error().message() + "\n" +
                                               detail::file_tail(c.dir + "/engine.log", 3000));
      return out;
    }
    auto r = sql(c, "SELECT count(*), min(id), max(id) FROM t");
    out.rows = r.ok() ? r.out : "error: " + r.err;
    // Promoted: it takes writes.
    auto w = sql(c, "INSERT INTO t VALUES (-1, 'w')");
    if (!w.ok()) out.rows += "not writable: " + w.err;
    return out;
  }
  static Json meta_of(const RestoreArchive& a) {
    auto j = parse_json(a.meta_json);
    return j ? *j : Json::object();
  }
  // The timeline-1 segment file holding a "X/Y" position.
  static std::string segment_of(const std::string& lsn) {
    unsigned hi = 0, lo = 0;
    if (std::sscanf(lsn.c_str(), "%X/%X", &hi, &lo) != 2) return "";
    const uint64_t segno = ((uint64_t{hi} << 32) | lo) / (16ull * 1024 * 1024);
    return fmt::format("00000001{:08X}{:08X}", segno >> 8, segno & 0xff);
  }
};

TEST_F(PostgresIncrementalTest, IncrementalsAreWalRangesThatRestoreAsAChain) {
  up(source_);
  converge(source_);
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int, v text)").ok());
  insert(1, 1000);  // A
  RestoreArchive full = backup(source_, "full");
  ASSERT_FALSE(full.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "full");

  insert(1001, 2000);  // B, part of it shipped before the incremental is asked for
  switch_and_ship();
  EXPECT_FALSE(detail::list_files(source_.work_dir + "/wal_shipped").empty());
  for (const char* own : {"/wal_shipped", "/ship.tmp", "/backup.tmp"}) {
    EXPECT_FALSE(detail::path_exists(source_.dir + own)) << own << " in the instance folder";
  }
  insert(2001, 2500);
  const int64_t before = now_us();
  RestoreArchive inc1 = backup(source_, "inc1", &full);
  ASSERT_FALSE(inc1.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "incremental");
  EXPECT_GE(last_info_.consistent_at_us, before);
  EXPECT_LE(last_info_.consistent_at_us, now_us());
  Json m1 = meta_of(inc1);
  EXPECT_EQ(m1.value("format", ""), "concord-pg-walrange-1") << inc1.meta_json;
  EXPECT_EQ(m1.value("kind", ""), "incremental");
  EXPECT_EQ(m1.value("parent_id", ""), "full");
  EXPECT_EQ(m1.value("timeline", 0), 1);
  // It starts with the segment holding the full backup's end and ends with its own switch.
  const Json mf = meta_of(full);
  ASSERT_TRUE(m1["segments"].is_array() && m1["segments"].size() >= 2) << inc1.meta_json;
  EXPECT_EQ(m1["segments"].front(), segment_of(mf.value("stop_lsn", "")))
      << inc1.meta_json << " " << full.meta_json;
  EXPECT_EQ(m1["segments"].back(), m1["stop_wal"]);
  // Small: compressed segments, not a copy of the data folder.
  EXPECT_LT(inc1.size_bytes, 8 * 1024 * 1024);
  EXPECT_FALSE(fs::exists(source_.dir + "/backup.tmp"));

  insert(2501, 3000);  // C
  switch_and_ship();
  RestoreArchive inc2 = backup(source_, "inc2", &inc1);
  ASSERT_FALSE(inc2.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "incremental");
  Json m2 = meta_of(inc2);
  // It continues where inc1 ended: the next segment.
  EXPECT_GT(m2["start_wal"].get<std::string>(), m1["stop_wal"].get<std::string>());
  EXPECT_EQ(m2.value("parent_id", ""), "inc1");
  // Kept shipped segments before its range serve no later incremental: pruned.
  const auto kept = detail::list_files(source_.work_dir + "/wal_shipped");
  EXPECT_FALSE(kept.empty());
  for (const auto& n : kept) EXPECT_GE(n, m2.value("start_wal", "")) << n;
  insert(3001, 3100);  // after every backup: in no restore of the chain

  RestoreSpec spec;
  spec.chain = {full, inc1};
  Restored r = restore_rows("upto1", spec);
  ASSERT_TRUE(r.status.has_value()) << r.status.error().to_string();
  EXPECT_EQ(r.rows, "2500|1|2500\n");  // A + B, no C

  spec.chain = {full, inc1, inc2};
  r = restore_rows("upto2", spec);
  ASSERT_TRUE(r.status.has_value()) << r.status.error().to_string();
  EXPECT_EQ(r.rows, "3000|1|3000\n");  // A + B + C

  // Just the full backup: A only (its pg_wal is all it replays).
  spec.chain = {full};
  r = restore_rows("full", spec);
  ASSERT_TRUE(r.status.has_value()) << r.status.error().to_string();
  EXPECT_EQ(r.rows, "1000|1|1000\n");

  // A gap (inc1's range missing): refused before anything is fetched, nothing left behind.
  const int gets = transport_->backup_gets;
  InstanceConfig gap = make_config("gap");
  spec.chain = {full, inc2};
  auto st = engine_->restore(gap, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
  EXPECT_NE(st.error().message().find("does not continue"), std::string::npos)
      << st.error().message();
  // No full backup under the incrementals.
  spec.chain = {inc1, inc2};
  st = engine_->restore(gap, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
  // An incremental whose recorded segments do not cover its range.
  RestoreArchive trimmed = inc2;
  Json mt = m2;
  mt["segments"].erase(mt["segments"].size() - 1);
  trimmed.meta_json = dump_json(mt);
  spec.chain = {full, inc1, trimmed};
  st = engine_->restore(gap, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
  EXPECT_EQ(transport_->backup_gets, gets);
  EXPECT_FALSE(fs::exists(gap.dir + "/data"));
  EXPECT_FALSE(fs::exists(gap.dir + "/restore.tmp"));
  EXPECT_FALSE(fs::exists(gap.dir + "/restore_wal"));

  // A corrupted incremental: the checksum stops it and nothing is left behind.
  {
    std::fstream f(transport_->backup_path("inc2"),
                   std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekp(600);
    f.write("xx", 2);
  }
  spec.chain = {full, inc1, inc2};
  st = engine_->restore(gap, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInternal) << st.error().to_string();
  EXPECT_FALSE(fs::exists(gap.dir + "/data"));
  EXPECT_FALSE(fs::exists(gap.dir + "/restore.tmp"));
  EXPECT_FALSE(fs::exists(gap.dir + "/restore_wal"));

  // With the shipped logs too (point-in-time to their end): the chain's WAL and the logs merge.
  switch_and_ship();
  spec.chain = {full, inc1};
  spec.log_source_instance = source_.id;
  spec.target_time_us = 0;
  r = restore_rows("logs", spec);
  ASSERT_TRUE(r.status.has_value()) << r.status.error().to_string();
  EXPECT_EQ(r.rows, "3100|1|3100\n");
}

TEST_F(PostgresIncrementalTest, AnUnusableParentGetsAFullBackup) {
  up(source_);
  converge(source_);
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int, v text)").ok());
  insert(1, 100);
  RestoreArchive full = backup(source_, "full");
  ASSERT_FALSE(full.backup_id.empty());
  insert(101, 200);
  switch_and_ship();
  // The parent's WAL is no longer on this host (pruned, or the instance was rebuilt).
  ASSERT_FALSE(detail::list_files(source_.work_dir + "/wal_shipped").empty());
  for (const auto& n : detail::list_files(source_.work_dir + "/wal_shipped")) {
    fs::remove(source_.work_dir + "/wal_shipped/" + n);
  }
  insert(201, 300);
  RestoreArchive b2 = backup(source_, "b2", &full);
  ASSERT_FALSE(b2.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "full");
  EXPECT_EQ(meta_of(b2).value("format", ""), "concord-pg-basebackup-1") << b2.meta_json;

  // A parent of another engine, or of another PostgreSQL version: full too.
  RestoreArchive foreign = b2;
  foreign.meta_json = R"({"format":"concord-mariadb-backup-1","to_lsn":"123"})";
  RestoreArchive b3 = backup(source_, "b3", &foreign);
  ASSERT_FALSE(b3.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "full");
  RestoreArchive other_version = b2;
  Json mv = meta_of(b2);
  mv["version"] = "14";
  other_version.meta_json = dump_json(mv);
  insert(301, 400);
  RestoreArchive b4 = backup(source_, "b4", &other_version);
  ASSERT_FALSE(b4.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "full");

  // The usable parent b4 (a full one) still gets an incremental.
  insert(401, 500);
  RestoreArchive b5 = backup(source_, "b5", &b4);
  ASSERT_FALSE(b5.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "incremental");

  // The chain the server builds by parent ids, [full, b2 (made full), b4 (full), b5]: restored
  // from its last full backup on.
  RestoreSpec spec;
  spec.chain = {full, b2, b4, b5};
  Restored r = restore_rows("chain", spec);
  ASSERT_TRUE(r.status.has_value()) << r.status.error().to_string();
  EXPECT_EQ(r.rows, "500|1|500\n");
}

TEST_F(PostgresIncrementalTest, WithoutArchivingAnIncrementalRequestGetsAFullBackup) {
  up(source_);
  converge(source_);
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int, v text)").ok());
  RestoreArchive full = backup(source_, "full");
  ASSERT_FALSE(full.backup_id.empty());
  DesiredState off;
  off.revision = 2;
  off.databases = {{"shop", "", ""}};
  off.users = {{"app", "%", postgres_scram_verifier("app-pw"), {"shop"}}};
  off.root = RootSpec{postgres_scram_verifier("root-pw")};
  off.archive_logs = false;
  auto st = engine_->apply(source_, off);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  insert(1, 10);
  RestoreArchive b2 = backup(source_, "b2", &full);
  ASSERT_FALSE(b2.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "full");
}

// ---- MariaDB 10.11 ----

class MariadbBackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why =
        engine_skip_reason({"/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db", "/usr/bin/mariadb",
                            "/usr/bin/mariadb-backup", "/usr/bin/mariadb-binlog", "/usr/bin/zstd",
                            "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    // Shipped binlogs go at once here (the default keeps them for replicas for 10 minutes;
    // ShippedBinlogsStayWhileReplicasMayNeedThem checks that).
    EngineOptions o;
    o.binlog_keep = std::chrono::seconds(0);
    auto e = make_mariadb_engine(o);
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    engine_ = std::move(*e);
    transport_ = std::make_unique<FolderTransport>(tmp_.path() + "/blobs");
    source_ = make_config("src");
  }
  void TearDown() override {
    if (!engine_) return;
    for (const auto& c : made_) (void)engine_->destroy(c);
  }

  // The source running with rows 1 and 2, each in a binlog of its own that is now completed.
  void two_completed_binlogs() {
    up(source_);
    converge(source_);
    ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
    ASSERT_TRUE(root_sql(source_, "FLUSH BINARY LOGS").ok());
    ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE(root_sql(source_, "FLUSH BINARY LOGS").ok());
  }

  InstanceConfig make_config(const std::string& suffix) {
    InstanceConfig c;
    c.id = "mdb-" + std::to_string(::getpid()) + "-" + suffix;
    c.dir = tmp_.path() + "/" + c.id;
    c.version = "10.11";
    c.address = unique_address();
    c.port = free_port(c.address);
    c.ram_mb = 256;
    made_.push_back(c);
    return c;
  }

  void up(const InstanceConfig& c) {
    auto st = engine_->prepare(c);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    start(c);
  }
  void start(const InstanceConfig& c) {
    auto st = engine_->start(c);
    ASSERT_TRUE(st.has_value()) << st.error().to_string()
                                << detail::file_tail(c.dir + "/engine.log", 3000);
  }
  void converge(const InstanceConfig& c) {
    DesiredState s;
    s.revision = 1;
    s.databases = {{"shop", "", ""}};
    s.users = {{"app", "%", mariadb_native_verifier("app-pw"), {"shop"}}};
    s.root = RootSpec{mariadb_native_verifier("root-pw")};
    auto st = engine_->apply(c, s);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }
  detail::CommandResult sql(const InstanceConfig& c, const std::string& text) {
    return mariadb_cli(c.address, c.port, "app", "app-pw", "shop", text);
  }
  detail::CommandResult root_sql(const InstanceConfig& c, const std::string& text) {
    return mariadb_cli(c.address, c.port, "root", "root-pw", "", text);
  }

  RestoreArchive backup(const InstanceConfig& c, const std::string& id) {
    const std::string out = tmp_.path() + "/" + id + ".out";
    auto info = engine_->backup(c, BackupRequest{id, "", ""}, out);
    EXPECT_TRUE(info.has_value()) << info.error().to_string();
    if (!info) return {};
    auto sha = detail::sha256_file(out);
    EXPECT_TRUE(sha.has_value());
    EXPECT_TRUE(transport_->put_backup(id, out, *sha).has_value());
    RestoreArchive a;
    a.backup_id = id;
    a.sha256 = *sha;
    a.size_bytes = static_cast<int64_t>(fs::file_size(out));
    a.meta_json = info->meta_json;
    last_info_ = *info;
    fs::remove(out);
    return a;
  }

  // A replication group of the source and its replicas (the tests of replicas and of restores
  // across a promotion): everybody's databases, users and root; the roles; an apply of both.
  static DesiredState group_state(int64_t revision) {
    DesiredState st;
    st.revision = revision;
    st.databases = {{"shop", "", ""}};
    st.users = {{"app", "%", mariadb_native_verifier("app-pw"), {"shop"}}};
    st.root = RootSpec{mariadb_native_verifier("root-pw")};
    return st;
  }
  static ReplicationSpec primary_spec(std::vector<std::string> replicas) {
    ReplicationSpec r;
    r.role = ReplicationSpec::Role::kPrimary;
    r.secret = "repl-Secret-42";
    r.replicas = std::move(replicas);
    return r;
  }
  static ReplicationSpec replica_spec(const InstanceConfig& upstream) {
    ReplicationSpec r;
    r.role = ReplicationSpec::Role::kReplica;
    r.secret = "repl-Secret-42";
    r.upstream_instance = upstream.id;
    r.upstream_address = upstream.address;
    r.upstream_port = upstream.port;
    return r;
  }
  void apply(const InstanceConfig& c, DesiredState st, const ReplicationSpec& spec) {
    st.replication = spec;
    auto done = engine_->apply(c, st);
    ASSERT_TRUE(done.has_value()) << c.id << ": " << done.error().to_string();
  }
  // Table t's ids, as "1,2,3\n".
  std::string rows(const InstanceConfig& c) {
    auto r = sql(c, "SELECT GROUP_CONCAT(id ORDER BY id) FROM t");
    return r.ok() ? r.out : "error: " + r.err;
  }
  // How the engine recorded a replica's copy was made ("backup <id> <gtid>", "network <gtid>").
  static std::string copy_record(const InstanceConfig& c) {
    return detail::read_file(c.dir + "/replica_copy").value_or("(none)");
  }
  static bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 600 && !done(); ++i) std::this_thread::sleep_for(milliseconds(100));
    return done();
  }

  EngineTempDir tmp_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<FolderTransport> transport_;
  InstanceConfig source_;
  std::vector<InstanceConfig> made_;
  BackupInfo last_info_;
};

TEST_F(MariadbBackupTest, OnlineBackupRestoresIntoANewInstanceAndCorruptionIsRefused) {
  up(source_);
  converge(source_);
  auto r = sql(source_,
               "CREATE TABLE t(id int primary key, v text); INSERT INTO t SELECT seq, md5(seq) "
               "FROM seq_1_to_5000");
  ASSERT_TRUE(r.ok()) << r.err;
  const int64_t before = now_us();
  RestoreArchive a = backup(source_, "m1");
  ASSERT_FALSE(a.backup_id.empty());
  EXPECT_EQ(last_info_.kind, "full");
  EXPECT_GE(last_info_.consistent_at_us, before);
  auto meta = parse_json(last_info_.meta_json);
  ASSERT_TRUE(meta.has_value());
  EXPECT_FALSE((*meta)["to_lsn"].get<std::string>().empty()) << last_info_.meta_json;
  EXPECT_TRUE((*meta)["binlog_file"].get<std::string>().starts_with("mariadb-bin-"))
      << last_info_.meta_json;
  EXPECT_GT((*meta)["binlog_pos"].get<int64_t>(), 0);
  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (9999, 'after')").ok());
  EXPECT_FALSE(fs::exists(source_.dir + "/backup.tmp"));

  // A corrupted copy first: refused, nothing left.
  const std::string stored = transport_->backup_path("m1");
  const std::string good = stored + ".good";
  fs::copy_file(stored, good);
  {
    std::fstream f(stored, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(500);
    f.write("XXXX", 4);
  }
  InstanceConfig copy = make_config("copy");
  RestoreSpec spec;
  spec.chain = {a};
  auto st = engine_->restore(copy, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInternal) << st.error().to_string();
  EXPECT_FALSE(fs::exists(copy.dir + "/data"));
  EXPECT_FALSE(fs::exists(copy.dir + "/restore.tmp"));
  fs::rename(good, stored);

  // A half-made restore of a killed agent is redone.
  ASSERT_TRUE(detail::make_dir(copy.dir + "/restore.tmp/prep", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(copy.dir + "/restore.tmp/prep/junk", "x").has_value());
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(fs::exists(copy.dir + "/restore.tmp"));
  auto cnf = detail::read_file(copy.dir + "/my.cnf");
  ASSERT_TRUE(cnf.has_value());
  EXPECT_NE(cnf->find(copy.address), std::string::npos);
  start(copy);
  r = sql(copy, "SELECT count(*), sum(id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "5000\t12502500\n");
  r = sql(copy, "INSERT INTO t VALUES (5001, 'x'); SELECT count(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "5001\n");
  // Idempotent once made; refused while running.
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(engine_->stop(copy, milliseconds(10000)).has_value());
  const int gets = transport_->backup_gets;
  st = engine_->restore(copy, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(transport_->backup_gets, gets);
}

TEST_F(MariadbBackupTest, PointInTimeRestoreReplaysShippedBinlogsToTheTarget) {
  up(source_);
  converge(source_);
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int primary key)").ok());
  RestoreArchive a = backup(source_, "m1");
  ASSERT_FALSE(a.backup_id.empty());

  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (1)").ok());
  const int64_t after_one = now_us();
  // Binlog events carry whole seconds: more than two seconds apart, the midpoint's second
  // falls strictly between the two rows' seconds.
  std::this_thread::sleep_for(milliseconds(2300));
  const int64_t before_two = now_us();
  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (2)").ok());
  ASSERT_TRUE(root_sql(source_, "FLUSH BINARY LOGS").ok());

  transport_->fail_log_puts = true;
  auto st = engine_->ship_logs(source_, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable);
  transport_->fail_log_puts = false;
  st = engine_->ship_logs(source_, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  const auto& shipped = transport_->logs(source_.id);
  ASSERT_FALSE(shipped.empty());
  int64_t last = 0;
  for (const auto& [name, l] : shipped) last = std::max(last, l.last_time_us);
  EXPECT_GE(last, before_two - 1'000'000);
  // Shipped ones are purged by the server once it no longer needs them for its own crash
  // recovery (a later round, then), and never shipped twice.
  const int puts = transport_->log_puts;
  detail::CommandResult r;
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(engine_->ship_logs(source_, *transport_).has_value());
    r = root_sql(source_, "SHOW BINARY LOGS");
    ASSERT_TRUE(r.ok()) << r.err;
    if (std::count(r.out.begin(), r.out.end(), '\n') == 1) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(transport_->log_puts, puts);

  InstanceConfig pitr = make_config("pitr");
  RestoreSpec spec;
  spec.chain = {a};
  spec.log_source_instance = source_.id;
  spec.target_time_us = (after_one + before_two) / 2;
  st = engine_->restore(pitr, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  start(pitr);
  r = sql(pitr, "SELECT GROUP_CONCAT(id ORDER BY id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1\n");
  r = sql(pitr, "INSERT INTO t VALUES (3); SELECT count(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "2\n");

  InstanceConfig all = make_config("all");
  spec.target_time_us = 0;
  st = engine_->restore(all, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  start(all);
  r = sql(all, "SELECT GROUP_CONCAT(id ORDER BY id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1,2\n");
}

// The basename concord_binlog.cnf gives log_bin.
std::string binlog_base(const InstanceConfig& c) {
  auto text = detail::read_file(c.dir + "/concord_binlog.cnf");
  if (!text) return "";
  auto at = text->find("log_bin = ");
  if (at == std::string::npos) return "";
  std::string path = text->substr(at + 10, text->find('\n', at) - at - 10);
  return path.substr(path.rfind('/') + 1);
}

TEST_F(MariadbBackupTest, EveryBinlogHistoryHasItsOwnBasenameKeptWhileInUse) {
  up(source_);
  converge(source_);
  const std::string base = binlog_base(source_);
  EXPECT_TRUE(base.starts_with("mariadb-bin-") && base.size() > 14) << base;
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
  RestoreArchive a = backup(source_, "m1");
  ASSERT_FALSE(a.backup_id.empty());
  // A restart keeps the history's name (the server wrote under it).
  ASSERT_TRUE(engine_->stop(source_, milliseconds(10000)).has_value());
  ASSERT_NO_FATAL_FAILURE(up(source_));
  EXPECT_EQ(binlog_base(source_), base);
  auto r = root_sql(source_, "SHOW MASTER STATUS");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_TRUE(r.out.starts_with(base + ".")) << r.out;
  // A restore starts a history of its own.
  InstanceConfig copy = make_config("copy");
  RestoreSpec spec;
  spec.chain = {a};
  ASSERT_TRUE(engine_->restore(copy, spec, *transport_).has_value());
  ASSERT_NO_FATAL_FAILURE(start(copy));
  EXPECT_TRUE(binlog_base(copy).starts_with("mariadb-bin-"));
  EXPECT_NE(binlog_base(copy), base);

  // A folder made before tags keeps its plain name. Its HA sibling's plain names may be in the
  // archive first: refused there (409), its files are shipped under a tagged name of their own,
  // and a point-in-time restore follows them by GTID.
  InstanceConfig old = make_config("old");
  ASSERT_TRUE(engine_->prepare(old).has_value());
  auto text = detail::read_file(old.dir + "/concord_binlog.cnf");
  ASSERT_TRUE(text.has_value());
  const std::string tagged = binlog_base(old);
  std::string legacy = *text;
  for (size_t at; (at = legacy.find(tagged)) != std::string::npos;) {
    legacy.replace(at, tagged.size(), "mariadb-bin");
  }
  ASSERT_TRUE(detail::write_file_atomic(old.dir + "/concord_binlog.cnf", legacy).has_value());
  ASSERT_NO_FATAL_FAILURE(start(old));
  ASSERT_TRUE(engine_->stop(old, milliseconds(10000)).has_value());
  ASSERT_NO_FATAL_FAILURE(up(old));
  EXPECT_EQ(binlog_base(old), "mariadb-bin");
  converge(old);
  ASSERT_TRUE(sql(old, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
  RestoreArchive o = backup(old, "o1");
  ASSERT_FALSE(o.backup_id.empty());
  ASSERT_TRUE(sql(old, "INSERT INTO t VALUES (2)").ok());
  ASSERT_TRUE(root_sql(old, "FLUSH BINARY LOGS").ok());
  const std::string sibling = tmp_.path() + "/sibling.bin";
  ASSERT_TRUE(detail::write_file_atomic(sibling, "another member's binlog").has_value());
  LogFile taken{"mariadb-bin.000001", *detail::sha256_file(sibling), 23, 0, 0};
  ASSERT_TRUE(transport_->put_log(old.id, taken, sibling).has_value());
  const int puts = transport_->log_puts;
  ASSERT_TRUE(engine_->ship_logs(old, *transport_).has_value());
  EXPECT_GT(transport_->log_puts, puts);
  std::set<std::string> bases;
  for (const auto& [name, l] : transport_->logs(old.id)) {
    bases.insert(name.substr(0, name.rfind('.')));
  }
  ASSERT_EQ(bases.size(), 2u);
  EXPECT_EQ(*bases.begin(), "mariadb-bin");
  EXPECT_TRUE(bases.rbegin()->starts_with("mariadb-bin-")) << *bases.rbegin();
  EXPECT_EQ(transport_->logs(old.id).at("mariadb-bin.000001").sha256, taken.sha256);
  InstanceConfig old_pitr = make_config("oldpitr");
  spec.chain = {o};
  spec.log_source_instance = old.id;
  ASSERT_TRUE(engine_->restore(old_pitr, spec, *transport_).has_value());
  ASSERT_NO_FATAL_FAILURE(start(old_pitr));
  r = sql(old_pitr, "SELECT GROUP_CONCAT(id ORDER BY id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1,2\n");
}

// An HA pair as the failover leaves it: the primary `p` archives, its standby `s` (a clone
// replicating it, log_slave_updates) is promoted, `p` commits once more (a commit `s` never
// receives: a divergent tail), and `s` carries on. Both ship into one instance's archive, as the
// server keeps an HA instance's logs. A point-in-time restore of `p`'s backup follows the
// GTIDs from `p`'s binlogs into `s`'s and leaves `p`'s divergent commit out.
TEST_F(MariadbBackupTest, PointInTimeRestoreFollowsGtidsAcrossAPromotion) {
  const InstanceConfig& p = source_;
  InstanceConfig s = make_config("standby");
  transport_->ship_as[s.id] = p.id;
  const ReplicationSpec as_primary = primary_spec({s.id});
  const ReplicationSpec as_replica = replica_spec(p);

  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_NO_FATAL_FAILURE(apply(p, group_state(1), as_primary));
  ASSERT_TRUE(sql(p, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
  RestoreArchive a = backup(p, "m1");
  ASSERT_FALSE(a.backup_id.empty());
  ASSERT_TRUE(sql(p, "INSERT INTO t VALUES (2)").ok());
  auto cloned = engine_->clone_from(s, as_replica, nullptr);
  ASSERT_TRUE(cloned.has_value()) << cloned.error().to_string();
  ASSERT_NO_FATAL_FAILURE(up(s));
  ASSERT_NO_FATAL_FAILURE(apply(s, group_state(1), as_replica));
  ASSERT_TRUE(sql(p, "INSERT INTO t VALUES (3)").ok());
  ASSERT_TRUE(eventually([&] { return rows(s) == "1,2,3\n"; })) << rows(s);
  // The standby ships what it replicated under its own basename, beside the primary's.
  ASSERT_TRUE(engine_->ship_logs(p, *transport_).has_value());
  ASSERT_TRUE(engine_->ship_logs(s, *transport_).has_value());
  EXPECT_NE(binlog_base(s), binlog_base(p));

  // The failover: s is promoted; p, cut off from it, commits 4.
  ReplicationSpec alone;
  alone.role = ReplicationSpec::Role::kPrimary;
  alone.secret = as_primary.secret;
  ASSERT_NO_FATAL_FAILURE(apply(s, group_state(2), alone));
  ASSERT_TRUE(sql(p, "INSERT INTO t VALUES (4)").ok());
  ASSERT_TRUE(root_sql(p, "FLUSH BINARY LOGS").ok());
  ASSERT_TRUE(engine_->ship_logs(p, *transport_).has_value());
  std::this_thread::sleep_for(milliseconds(1100));
  ASSERT_TRUE(sql(s, "INSERT INTO t VALUES (5)").ok());
  const int64_t after_five = now_us();
  std::this_thread::sleep_for(milliseconds(2300));
  const int64_t before_six = now_us();
  ASSERT_TRUE(sql(s, "INSERT INTO t VALUES (6)").ok());
  ASSERT_TRUE(root_sql(s, "FLUSH BINARY LOGS").ok());
  auto shipped = engine_->ship_logs(s, *transport_);
  ASSERT_TRUE(shipped.has_value()) << shipped.error().to_string();
  std::set<std::string> bases;
  for (const auto& [name, l] : transport_->logs(p.id))
    bases.insert(name.substr(0, name.rfind('.')));
  EXPECT_EQ(bases, (std::set<std::string>{binlog_base(p), binlog_base(s)}));

  RestoreSpec spec;
  spec.chain = {a};
  spec.log_source_instance = p.id;
  spec.target_time_us = (after_five + before_six) / 2;
  InstanceConfig at_five = make_config("five");
  auto st = engine_->restore(at_five, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  ASSERT_NO_FATAL_FAILURE(start(at_five));
  EXPECT_EQ(rows(at_five), "1,2,3,5\n");

  spec.target_time_us = 0;
  InstanceConfig all = make_config("all");
  st = engine_->restore(all, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  ASSERT_NO_FATAL_FAILURE(start(all));
  EXPECT_EQ(rows(all), "1,2,3,5,6\n");

  // Without the primary's binlog that holds 2 (s's copy starts after it), the history has a
  // hole before the target: refused, nothing made.
  auto meta = parse_json(a.meta_json);
  ASSERT_TRUE(meta.has_value());
  const std::string holding_two = (*meta)["binlog_file"].get<std::string>();
  ASSERT_TRUE(transport_->logs(p.id).contains(holding_two)) << holding_two;
  transport_->drop_log(p.id, holding_two);
  InstanceConfig holed = make_config("holed");
  st = engine_->restore(holed, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition) << st.error().to_string();
  EXPECT_NE(st.error().message().find("missing"), std::string::npos) << st.error().to_string();
  EXPECT_FALSE(fs::exists(holed.dir + "/data"));
}

// A replica's first copy from its upstream's newest backup and archived binlogs (the seed)
// instead of a dump over the network: 1 comes from the backup, 2 from the shipped binlog, 3
// (written after the last shipped binlog) and 4 (after the start) stream from the upstream. A
// row the upstream wrote unlogged (100) is in no backup and no binlog: a dump copies it, a
// seed cannot, which tells the two apart. A seed that cannot be used falls back to the dump.
TEST_F(MariadbBackupTest, AReplicaIsSeededFromTheNewestBackupAndTheArchivedBinlogs) {
  const InstanceConfig& p = source_;
  InstanceConfig seeded = make_config("seeded");
  InstanceConfig fallback = make_config("fallback");
  const ReplicationSpec as_primary = primary_spec({seeded.id, fallback.id});
  const ReplicationSpec as_replica = replica_spec(p);

  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_NO_FATAL_FAILURE(apply(p, group_state(1), as_primary));
  ASSERT_TRUE(sql(p, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
  RestoreArchive a = backup(p, "seed1");
  ASSERT_FALSE(a.backup_id.empty());
  ASSERT_TRUE(sql(p, "INSERT INTO t VALUES (2)").ok());
  ASSERT_TRUE(root_sql(p, "FLUSH BINARY LOGS").ok());
  auto shipped = engine_->ship_logs(p, *transport_);
  ASSERT_TRUE(shipped.has_value()) << shipped.error().to_string();
  ASSERT_TRUE(sql(p, "INSERT INTO t VALUES (3)").ok());
  ASSERT_TRUE(root_sql(p, "SET sql_log_bin = 0; INSERT INTO shop.t VALUES (100)").ok());

  ReplicationSpec with_seed = as_replica;
  with_seed.seed = RestoreSpec{{a}, p.id, 0};
  auto st = engine_->clone_from(seeded, with_seed, transport_.get());
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(copy_record(seeded).starts_with("backup seed1 0-")) << copy_record(seeded);
  ASSERT_NO_FATAL_FAILURE(start(seeded));
  ASSERT_NO_FATAL_FAILURE(apply(seeded, group_state(1), as_replica));
  EXPECT_TRUE(eventually([&] { return rows(seeded) == "1,2,3\n"; })) << rows(seeded);
  ASSERT_TRUE(sql(p, "INSERT INTO t VALUES (4)").ok());
  EXPECT_TRUE(eventually([&] { return rows(seeded) == "1,2,3,4\n"; })) << rows(seeded);
  auto h = engine_->health(seeded);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->role, "replica");
  EXPECT_TRUE(h->replication_streaming);
  EXPECT_EQ(h->replication_broken, "");

  // An archive the blob store no longer has: the copy is made over the network instead.
  ReplicationSpec gone = as_replica;
  RestoreArchive missing = a;
  missing.backup_id = "seed-gone";
  gone.seed = RestoreSpec{{missing}, p.id, 0};
  st = engine_->clone_from(fallback, gone, transport_.get());
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(copy_record(fallback).starts_with("network ")) << copy_record(fallback);
  EXPECT_FALSE(fs::exists(fallback.dir + "/restore.tmp"));
  ASSERT_NO_FATAL_FAILURE(start(fallback));
  ASSERT_NO_FATAL_FAILURE(apply(fallback, group_state(1), as_replica));
  EXPECT_TRUE(eventually([&] { return rows(fallback) == "1,2,3,4,100\n"; })) << rows(fallback);
}

// What a kill -9 of the agent in the middle of a seed leaves (the staging folder, a private
// server still running in it) is reaped and the seed redone; a copy that goes over the network
// instead (the seed no longer offered) discards it. Nothing of the half-made seed outlives it.
TEST_F(MariadbBackupTest, AHalfMadeSeedIsRedoneOrDiscarded) {
  const InstanceConfig& p = source_;
  InstanceConfig redone = make_config("redone");
  InstanceConfig discarded = make_config("discarded");
  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_NO_FATAL_FAILURE(apply(p, group_state(1), primary_spec({redone.id, discarded.id})));
  ASSERT_TRUE(sql(p, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
  RestoreArchive a = backup(p, "half1");
  ASSERT_FALSE(a.backup_id.empty());
  ReplicationSpec seeded = replica_spec(p);
  seeded.seed = RestoreSpec{{a}, p.id, 0};

  auto half_made = [&](const InstanceConfig& c) {
    std::filesystem::create_directories(c.dir + "/restore.tmp/data");
    EXPECT_TRUE(detail::write_file_atomic(c.dir + "/restore.tmp/data/ibdata1", "torn").has_value());
    return leave_private_server(c.dir + "/restore.tmp", "load");
  };
  const pid_t left = half_made(redone);
  ASSERT_GT(left, 1);
  auto st = engine_->clone_from(redone, seeded, transport_.get());
  EXPECT_TRUE(detail::wait_gone(left, milliseconds(10000)));
  (void)::kill(left, SIGKILL);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(copy_record(redone).starts_with("backup "));
  EXPECT_FALSE(fs::exists(redone.dir + "/restore.tmp"));
  ASSERT_NO_FATAL_FAILURE(start(redone));
  ASSERT_NO_FATAL_FAILURE(apply(redone, group_state(1), replica_spec(p)));
  EXPECT_TRUE(eventually([&] { return rows(redone) == "1\n"; })) << rows(redone);

  const pid_t stale = half_made(discarded);
  ASSERT_GT(stale, 1);
  st = engine_->clone_from(discarded, replica_spec(p), nullptr);
  EXPECT_TRUE(detail::wait_gone(stale, milliseconds(10000)));
  (void)::kill(stale, SIGKILL);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(copy_record(discarded).starts_with("network "));
  EXPECT_FALSE(fs::exists(discarded.dir + "/restore.tmp"));
}

TEST_F(MariadbBackupTest, IncrementalBackupsRestoreAsAChain) {
  up(source_);
  converge(source_);
  ASSERT_TRUE(sql(source_, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
  RestoreArchive full = backup(source_, "f1");
  ASSERT_FALSE(full.backup_id.empty());
  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (2)").ok());

  auto incremental = [&](const std::string& id, const RestoreArchive& parent) {
    const std::string out = tmp_.path() + "/" + id + ".out";
    auto info =
        engine_->backup(source_, BackupRequest{id, parent.backup_id, parent.meta_json}, out);
    EXPECT_TRUE(info.has_value()) << info.error().to_string();
    if (!info) return RestoreArchive{};
    EXPECT_EQ(info->kind, "incremental");
    auto sha = detail::sha256_file(out);
    EXPECT_TRUE(transport_->put_backup(id, out, *sha).has_value());
    return RestoreArchive{id, *sha, static_cast<int64_t>(fs::file_size(out)), info->meta_json};
  };
  RestoreArchive i1 = incremental("i1", full);
  ASSERT_FALSE(i1.backup_id.empty());
  auto fm = parse_json(full.meta_json);
  auto im = parse_json(i1.meta_json);
  ASSERT_TRUE(fm.has_value() && im.has_value());
  EXPECT_EQ((*im)["from_lsn"], (*fm)["to_lsn"]) << i1.meta_json;
  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (3)").ok());
  RestoreArchive i2 = incremental("i2", i1);
  ASSERT_FALSE(i2.backup_id.empty());
  ASSERT_TRUE(sql(source_, "INSERT INTO t VALUES (4)").ok());

  // Chains that do not continue are refused before anything is fetched: no full backup, or an
  // incremental whose start is not its predecessor's end (to_lsn is InnoDB's checkpoint, so
  // an incremental taken before the next checkpoint may legitimately start where the full
  // one ends; only a mismatch is a hole).
  InstanceConfig broken = make_config("broken");
  RestoreSpec spec;
  spec.chain = {i1, i2};
  auto st = engine_->restore(broken, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  RestoreArchive hole = i2;
  auto hm = parse_json(i2.meta_json);
  ASSERT_TRUE(hm.has_value());
  (*hm)["from_lsn"] = "1";
  hole.meta_json = dump_json(*hm);
  spec.chain = {full, i1, hole};
  st = engine_->restore(broken, spec, *transport_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(transport_->backup_gets, 0);
  EXPECT_FALSE(fs::exists(broken.dir + "/data"));

  InstanceConfig two = make_config("two");
  spec.chain = {full, i1};
  st = engine_->restore(two, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  start(two);
  auto r = sql(two, "SELECT GROUP_CONCAT(id ORDER BY id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1,2\n");

  InstanceConfig three = make_config("three");
  spec.chain = {full, i1, i2};
  st = engine_->restore(three, spec, *transport_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  start(three);
  r = sql(three, "SELECT GROUP_CONCAT(id ORDER BY id) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1,2,3\n");
}

// A replica resumes from its GTID position in its upstream's binlogs (a sibling cloned a
// moment ago, a standby that lost its connection for a while): shipping must not purge them at
// once, or the replica stops with error 1236 and can only be rebuilt.
TEST_F(MariadbBackupTest, ShippedBinlogsStayWhileReplicasMayNeedThem) {
  ASSERT_NO_FATAL_FAILURE(two_completed_binlogs());
  auto keeping = make_mariadb_engine(EngineOptions{});  // the default: 10 minutes
  ASSERT_TRUE(keeping.has_value()) << keeping.error().to_string();
  auto count = [&] {
    auto r = root_sql(source_, "SHOW BINARY LOGS");
    EXPECT_TRUE(r.ok()) << r.err;
    return std::count(r.out.begin(), r.out.end(), '\n');
  };
  const auto before = count();
  ASSERT_GE(before, 3);
  for (int i = 0; i < 5; ++i) {
    auto st = (*keeping)->ship_logs(source_, *transport_);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_GT(transport_->log_puts, 0) << "nothing was shipped";
  EXPECT_GE(count(), before) << "shipped binlogs were purged at once";  // (one more: a flush)
  // Once they are old enough (here: at once) they go.
  for (int i = 0; i < 100 && count() > 1; ++i) {
    ASSERT_TRUE(engine_->ship_logs(source_, *transport_).has_value());
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(count(), 1);
}

TEST_F(MariadbBackupTest, WithoutArchivingCompletedBinlogsArePurgedUnshipped) {
  ASSERT_NO_FATAL_FAILURE(two_completed_binlogs());
  auto r = root_sql(source_, "SHOW BINARY LOGS");
  ASSERT_TRUE(r.ok()) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;

  DesiredState off;
  off.databases = {{"shop", "", ""}};
  off.users = {{"app", "%", mariadb_native_verifier("app-pw"), {"shop"}}};
  off.root = RootSpec{mariadb_native_verifier("root-pw")};
  off.archive_logs = false;
  // The server may still need the newest completed one for its own crash recovery for a
  // moment; a later apply purges it.
  for (int i = 0; i < 100; ++i) {
    off.revision = 2 + i;
    auto st = engine_->apply(source_, off);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    r = root_sql(source_, "SHOW BINARY LOGS");
    ASSERT_TRUE(r.ok()) << r.err;
    if (std::count(r.out.begin(), r.out.end(), '\n') == 1) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(transport_->log_puts, 0);
  // Stopped: nothing to ship, and not an error.
  ASSERT_TRUE(engine_->stop(source_, milliseconds(10000)).has_value());
  EXPECT_TRUE(engine_->ship_logs(source_, *transport_).has_value());
}

}  // namespace
}  // namespace concord::database::engine::testing

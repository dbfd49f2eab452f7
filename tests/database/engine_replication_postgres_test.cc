// PostgreSQL read replicas on the real postgres 15 binaries: members of a replication group are
// separate instances on separate loopback addresses, cloned with the real pg_basebackup and
// streaming over TCP as the replication account; tenants log in with the real psql. Covers
// cloning, streaming, read-only replicas, promotion with a sibling re-pointed and the old
// primary rebuilt as a replica, synchronous standbys, slot clean-up and clone failures.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <thread>

#include "database/engine/credentials.h"
#include "database/engine/engine.h"
#include "database/engine/parameters.h"
#include "database/engine/postgres_replication.h"
#include "engine_test_util.h"

namespace concord::database::engine::testing {
namespace {

using std::chrono::milliseconds;

// A secret with the characters a libpq passfile must escape.
constexpr const char* kSecret = "repl:secret\\with-escapes";

TEST(PgReplicationNames, SlotNamesAndStandbyList) {
  EXPECT_EQ(detail::pg_slot_name("Ab-9_x"), "concord_ab_9_x");
  EXPECT_EQ(detail::pg_synchronous_standby_names({}), "");
  EXPECT_EQ(detail::pg_synchronous_standby_names({"r-1"}), "FIRST 1 (\"r-1\")");
  EXPECT_EQ(detail::pg_synchronous_standby_names({"a", "b"}), "FIRST 1 (\"a\", \"b\")");
}

TEST(PgReplicationNames, FollowsOnlyAHistoryThroughItsPosition) {
  // Same timeline: follows.
  EXPECT_TRUE(detail::pg_can_follow(1, 0x3000000, 1, ""));
  // The upstream forked from our timeline at or after our position: follows.
  const std::string history = "1\t0/5000060\tno recovery target specified\n";
  EXPECT_TRUE(detail::pg_can_follow(1, 0x5000060, 2, history));
  EXPECT_TRUE(detail::pg_can_follow(1, 0x4000000, 2, history));
  // We replayed past the fork: our history holds WAL the upstream never had.
  EXPECT_FALSE(detail::pg_can_follow(1, 0x5000061, 2, history));
  // Our timeline is not in its history, or it is behind ours.
  EXPECT_FALSE(detail::pg_can_follow(3, 0x1000000, 2, history));
  EXPECT_FALSE(detail::pg_can_follow(2, 0x1000000, 1, ""));
  // Two switches: the line for our timeline decides.
  const std::string two = "1\t0/5000060\tx\n\n2\t0/7000000\ty\n";
  EXPECT_TRUE(detail::pg_can_follow(2, 0x6000000, 3, two));
  EXPECT_FALSE(detail::pg_can_follow(2, 0x7000001, 3, two));
  uint64_t lsn = 0;
  EXPECT_FALSE(detail::pg_parse_lsn("nonsense", &lsn));
}

TEST(PgReplicationNames, ABrokenStandbyIsReadFromItsLogSinceItsLastStart) {
  const std::string start = "2026-11-30 12:00:00.000 UTC [10] LOG:  starting PostgreSQL 15.8\n";
  const std::string removed =
      "2026-11-30 12:00:01.000 UTC [12] FATAL:  could not receive data from WAL stream: "
      "ERROR:  requested WAL segment 000000010000000000000003 has already been removed\n";
  const std::string streaming =
      "2026-11-30 12:00:02.000 UTC [13] LOG:  started streaming WAL from primary at 0/3000000 "
      "on timeline 1\n";
  EXPECT_EQ(detail::pg_broken_in_log(start + removed),
            "the upstream no longer has the WAL it needs (requested WAL segment "
            "000000010000000000000003 has already been removed)");
  EXPECT_EQ(detail::pg_broken_in_log(start + removed + removed).empty(), false);
  EXPECT_EQ(detail::pg_broken_in_log(start + removed + streaming), "") << "it streams since";
  EXPECT_EQ(detail::pg_broken_in_log(removed + start), "") << "from before its last start";
  EXPECT_EQ(detail::pg_broken_in_log(start + streaming), "");
  EXPECT_EQ(detail::pg_broken_in_log(""), "");

  // A demoted primary whose history holds writes its new upstream never received.
  const std::string not_in_history =
      "2026-11-30 12:00:03.000 UTC [14] FATAL:  could not start WAL streaming: ERROR:  "
      "requested starting point 0/3000000 on timeline 1 is not in this server's history\n"
      "\tDETAIL:  This server's history forked from timeline 1 at 0/2000110.\n";
  const std::string forked_off =
      "2026-11-30 12:00:04.000 UTC [11] LOG:  new timeline 2 forked off current database "
      "system timeline 1 before current recovery point 0/3000060\n";
  EXPECT_EQ(detail::pg_broken_in_log(start + not_in_history),
            "its history forked from the upstream's (requested starting point 0/3000000 on "
            "timeline 1 is not in this server's history)");
  EXPECT_EQ(detail::pg_broken_in_log(start + removed + forked_off),
            "its history forked from the upstream's (new timeline 2 forked off current database "
            "system timeline 1 before current recovery point 0/3000060)")
      << "the latest reason counts";
  EXPECT_EQ(detail::pg_broken_in_log(start + forked_off + streaming),
            detail::pg_broken_in_log(start + forked_off))
      << "a fork is for good; the walreceiver streams the common part again at each retry";
  EXPECT_EQ(detail::pg_broken_in_log(forked_off + start), "") << "from before its last start";
}

class PostgresReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = engine_skip_reason(
        {"/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/15/bin/initdb",
         "/usr/lib/postgresql/15/bin/pg_basebackup", "/usr/bin/psql", "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    auto e = make_postgres_engine(EngineOptions{});
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    engine_ = std::move(*e);
    app_verifier_ = postgres_scram_verifier("app-pw");
  }
  void TearDown() override {
    if (!engine_) return;
    for (const auto& m : members_) (void)engine_->destroy(m);
  }

  InstanceConfig member(const std::string& name) {
    InstanceConfig c;
    c.id = "pgr" + std::to_string(::getpid()) + "-" + name;
    c.dir = tmp_.path() + "/" + c.id;
    c.version = "15";
    c.address = unique_address();
    c.port = 5432;  // addresses differ, so the standard port serves every member
    c.ram_mb = 256;
    members_.push_back(c);
    return c;
  }

  // The group's lists, as the server sends them to every member.
  DesiredState group_state(ReplicationSpec spec) {
    DesiredState s;
    s.revision = ++revision_;
    s.databases = {{"shop", "", ""}};
    s.users = {{"app", "%", app_verifier_, {"shop"}}};
    spec.secret = kSecret;
    s.replication = std::move(spec);
    return s;
  }
  DesiredState primary_state(std::vector<std::string> replicas,
                             std::vector<std::string> synchronous = {}) {
    ReplicationSpec spec;
    spec.role = ReplicationSpec::Role::kPrimary;
    spec.replicas = std::move(replicas);
    spec.synchronous_standbys = std::move(synchronous);
    return group_state(std::move(spec));
  }
  ReplicationSpec replica_spec(const InstanceConfig& upstream) {
    ReplicationSpec spec;
    spec.role = ReplicationSpec::Role::kReplica;
    spec.secret = kSecret;
    spec.upstream_instance = upstream.id;
    spec.upstream_address = upstream.address;
    spec.upstream_port = upstream.port;
    return spec;
  }

  void up(const InstanceConfig& c) {
    auto st = engine_->prepare(c);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    st = engine_->start(c);
    ASSERT_TRUE(st.has_value()) << st.error().to_string()
                                << detail::file_tail(c.dir + "/engine.log", 2000);
  }
  void apply(const InstanceConfig& c, const DesiredState& s) {
    auto st = engine_->apply(c, s);
    ASSERT_TRUE(st.has_value()) << c.id << ": " << st.error().to_string()
                                << detail::file_tail(c.dir + "/engine.log", 2000);
  }
  // As the driver makes a replica: clone_from, prepare, start, apply.
  void make_replica(const InstanceConfig& c, const InstanceConfig& upstream) {
    auto st = engine_->clone_from(c, replica_spec(upstream), nullptr);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    ASSERT_NO_FATAL_FAILURE(up(c));
    ASSERT_NO_FATAL_FAILURE(apply(c, group_state(replica_spec(upstream))));
  }

  // A primary whose table t holds one row, and a replica of it.
  void pair_with_one_row(const InstanceConfig& p, const InstanceConfig& r) {
    ASSERT_NO_FATAL_FAILURE(up(p));
    ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id})));
    auto w = app_sql(p, "CREATE TABLE t(id int); INSERT INTO t VALUES (1)");
    ASSERT_TRUE(w.ok()) << w.err;
    ASSERT_NO_FATAL_FAILURE(make_replica(r, p));
  }

  detail::CommandResult app_sql(const InstanceConfig& c, const std::string& text) {
    return psql(c.address, c.port, "app", "app-pw", "shop", text);
  }
  // As the engine user over the instance's socket folder (root may reach it).
  std::string admin_sql(const InstanceConfig& c, const std::string& text) {
    auto r = detail::run_command({"/usr/bin/psql",
                                  "host=" + c.dir + "/run port=" + std::to_string(c.port) +
                                      " user=concord-db dbname=postgres",
                                  "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tAc", text});
    if (!r) return "error: " + r.error().message();
    if (!r->ok()) return "error: " + r->err;
    return r->out;
  }

  // Polls (every 100 ms, at most 60 s) until `done`; a bound, never a gate on speed.
  static bool eventually(const std::function<bool()>& done) {
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
         std::chrono::steady_clock::now() < until;) {
      if (done()) return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return done();
  }
  bool has_rows(const InstanceConfig& c, const std::string& count) {
    return eventually([&] {
      auto r = app_sql(c, "SELECT count(*) FROM t");
      return r.ok() && r.out == count + "\n";
    });
  }
  // The ids in table t, in order ("1,2\n"), or the error.
  std::string ids(const InstanceConfig& c) {
    auto r = app_sql(c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
    return r.ok() ? r.out : "error: " + r.err;
  }
  // After a rebuild: a new folder (concord_test_marker gone), holding exactly `want` in t and
  // streaming.
  void expect_copied_anew(const InstanceConfig& c, const std::string& want) {
    EXPECT_FALSE(detail::path_exists(c.dir + "/data/concord_test_marker")) << "a new copy";
    EXPECT_TRUE(eventually([&] { return ids(c) == want; })) << ids(c);
    EXPECT_TRUE(streams(c));
  }
  // The inode of the member's data folder: a copy makes a new one, a rewind keeps it.
  static ino_t folder_inode(const InstanceConfig& c) {
    struct stat st {};
    return ::stat((c.dir + "/data").c_str(), &st) == 0 ? st.st_ino : 0;
  }
  // After a rebuild of a forked member: the same folder taken back onto the upstream's history
  // by pg_rewind (not copied), holding exactly `want` in t, streaming, nothing left aside.
  void expect_rewound(const InstanceConfig& c, ino_t folder, const std::string& want) {
    EXPECT_EQ(folder_inode(c), folder) << "rewound in place, not copied";
    EXPECT_TRUE(eventually([&] { return ids(c) == want; })) << ids(c);
    EXPECT_TRUE(streams(c));
    EXPECT_FALSE(detail::path_exists(c.dir + "/data.rewind"));
    EXPECT_FALSE(detail::path_exists(c.dir + "/data.old"));
  }
  bool streams(const InstanceConfig& c) {
    return eventually([&] {
      auto h = engine_->health(c);
      return h && h->role == "replica" && h->replication_streaming &&
             h->replication_lag_seconds >= 0;
    });
  }

  EngineTempDir tmp_;
  std::unique_ptr<Engine> engine_;
  std::vector<InstanceConfig> members_;
  std::string app_verifier_;
  int64_t revision_ = 0;
};

TEST_F(PostgresReplicationTest, ReplicasStreamAndSurviveAFailover) {
  InstanceConfig p = member("p");
  InstanceConfig r1 = member("r1");
  InstanceConfig r2 = member("r2");
  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r1.id})));
  auto w = app_sql(p, "CREATE TABLE t(id int); INSERT INTO t VALUES (1)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_EQ(admin_sql(p,
                      "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = "
                      "'concord_replication'"),
            "t|f\n");
  EXPECT_EQ(admin_sql(p, "SELECT slot_name FROM pg_replication_slots"),
            detail::pg_slot_name(r1.id) + "\n");

  // Replica 1: cloned, streaming, read-only, the tenant's account works there.
  ASSERT_NO_FATAL_FAILURE(make_replica(r1, p));
  EXPECT_TRUE(detail::path_exists(r1.dir + "/data/standby.signal"));
  ASSERT_TRUE(has_rows(r1, "1"));
  w = app_sql(p, "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(r1, "2"));
  auto refused = app_sql(r1, "INSERT INTO t VALUES (99)");
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.err.find("read-only transaction"), std::string::npos) << refused.err;
  EXPECT_TRUE(streams(r1));
  auto hp = engine_->health(p);
  ASSERT_TRUE(hp.has_value());
  EXPECT_EQ(hp->role, "primary");
  EXPECT_FALSE(hp->replication_streaming);
  // The password is in the 0600 passfile, not in the replica's configuration.
  auto conf = detail::read_file(r1.dir + "/data/concord_replication.conf");
  ASSERT_TRUE(conf.has_value());
  EXPECT_EQ(conf->find("secret"), std::string::npos) << *conf;
  EXPECT_NE(conf->find("application_name=''" + r1.id + "''"), std::string::npos) << *conf;
  // A second apply of the same state changes nothing and keeps streaming.
  ASSERT_NO_FATAL_FAILURE(apply(r1, group_state(replica_spec(p))));
  EXPECT_TRUE(streams(r1));

  // Replica 2.
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r1.id, r2.id})));
  ASSERT_NO_FATAL_FAILURE(make_replica(r2, p));
  ASSERT_TRUE(has_rows(r2, "2"));
  EXPECT_TRUE(streams(r2));
  EXPECT_EQ(admin_sql(p,
                      "SELECT string_agg(application_name, ',' ORDER BY application_name) "
                      "FROM pg_stat_replication"),
            r1.id + "," + r2.id + "\n");

  // Failover: the primary is lost; replica 1 is promoted, replica 2 follows it (re-pointed,
  // not rebuilt: a file in its folder survives), the old primary comes back as a replica.
  ASSERT_TRUE(engine_->stop(p, milliseconds(10000)).has_value());
  ASSERT_TRUE(detail::write_file_atomic(r2.dir + "/data/concord_test_marker", "x").has_value());
  ASSERT_NO_FATAL_FAILURE(apply(r1, primary_state({r2.id, p.id})));
  auto h1 = engine_->health(r1);
  ASSERT_TRUE(h1.has_value());
  EXPECT_EQ(h1->role, "primary");
  EXPECT_FALSE(h1->restart_required);  // a promotion needs no restart
  EXPECT_FALSE(detail::path_exists(r1.dir + "/data/standby.signal"));
  // The group's names that arrived by replication are now Concord's on the new primary.
  auto names = detail::read_managed_names(r1.dir);
  EXPECT_TRUE(names.databases.contains("shop"));
  EXPECT_TRUE(names.accounts.contains("app"));
  EXPECT_FALSE(names.accounts.contains("concord_replication"));
  w = app_sql(r1, "INSERT INTO t VALUES (3)");
  ASSERT_TRUE(w.ok()) << w.err;

  ASSERT_NO_FATAL_FAILURE(apply(r2, group_state(replica_spec(r1))));
  EXPECT_TRUE(detail::path_exists(r2.dir + "/data/concord_test_marker"));
  EXPECT_TRUE(has_rows(r2, "3"));
  EXPECT_TRUE(streams(r2));

  ASSERT_TRUE(engine_->start(p).has_value());
  auto hold = engine_->health(p);
  ASSERT_TRUE(hold.has_value());
  EXPECT_EQ(hold->role, "primary");  // as it was before it was lost
  ASSERT_NO_FATAL_FAILURE(apply(p, group_state(replica_spec(r1))));
  auto hnew = engine_->health(p);
  ASSERT_TRUE(hnew.has_value());
  EXPECT_EQ(hnew->role, "replica");
  EXPECT_FALSE(detail::path_exists(p.dir + "/data.old"));
  EXPECT_TRUE(has_rows(p, "3"));
  EXPECT_TRUE(streams(p));

  // Writes on the new primary reach both.
  w = app_sql(r1, "INSERT INTO t VALUES (4)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(r2, "4"));
  EXPECT_TRUE(has_rows(p, "4"));
  auto old_primary_refuses = app_sql(p, "INSERT INTO t VALUES (99)");
  EXPECT_FALSE(old_primary_refuses.ok());
  EXPECT_NE(old_primary_refuses.err.find("read-only transaction"), std::string::npos)
      << old_primary_refuses.err;

  // A removed replica's slot is dropped once nothing streams from it.
  ASSERT_TRUE(engine_->destroy(p).has_value());
  ASSERT_NO_FATAL_FAILURE(apply(r1, primary_state({r2.id})));
  EXPECT_EQ(admin_sql(r1, "SELECT string_agg(slot_name, ',') FROM pg_replication_slots"),
            detail::pg_slot_name(r2.id) + "\n");
  w = app_sql(r1, "INSERT INTO t VALUES (5)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(r2, "5"));
}

// Trove's switchover, in the service's order: the old primary is told first that it follows
// its replica, which is promoted only after the old primary acknowledged it stopped taking
// writes (Health::fenced_revision). Its apply stops it cleanly (its replica receives all it
// wrote), makes it a standby of the replica in place and records the acknowledgement; once the
// replica is promoted it streams from it, its folder kept: no copy either way.
TEST_F(PostgresReplicationTest, ADemotedPrimaryFollowsItsPromotedReplicaInPlace) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(has_rows(r, "1"));
  auto before = engine_->health(p);
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->fenced_revision, 0);
  EXPECT_EQ(admin_sql(p, "SELECT count(*) FROM pg_replication_slots"), "1\n");
  ASSERT_TRUE(detail::write_file_atomic(p.dir + "/data/concord_marker_p", "x").has_value());

  const DesiredState demoted = group_state(replica_spec(r));
  ASSERT_NO_FATAL_FAILURE(apply(p, demoted));
  auto fenced = engine_->health(p);
  ASSERT_TRUE(fenced.has_value());
  EXPECT_TRUE(fenced->running);
  EXPECT_EQ(fenced->role, "replica");
  EXPECT_EQ(fenced->fenced_revision, demoted.revision);
  EXPECT_TRUE(detail::path_exists(p.dir + "/data/standby.signal"));
  EXPECT_EQ(admin_sql(p, "SELECT count(*) FROM pg_replication_slots"), "0\n")
      << "a standby's slot would keep WAL for nobody";
  auto refused = app_sql(p, "INSERT INTO t VALUES (99)");
  EXPECT_FALSE(refused.ok()) << "fenced: no writes before the replica is promoted";
  // Stopped and started again meanwhile (the agent's restart): still a standby.
  ASSERT_TRUE(engine_->stop(p, milliseconds(10000)).has_value());
  ASSERT_NO_FATAL_FAILURE(up(p));
  EXPECT_EQ(engine_->health(p)->role, "replica");

  // The service promotes the replica once it sees the acknowledgement.
  ASSERT_NO_FATAL_FAILURE(apply(r, primary_state({p.id})));
  auto w = app_sql(r, "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(p, "2"));
  EXPECT_TRUE(streams(p));
  EXPECT_TRUE(detail::path_exists(p.dir + "/data/concord_marker_p")) << "not copied";
  ASSERT_NO_FATAL_FAILURE(apply(p, demoted));  // the agent's next apply changes nothing
  EXPECT_TRUE(detail::path_exists(p.dir + "/data/concord_marker_p"));
  EXPECT_EQ(engine_->health(p)->fenced_revision, demoted.revision);

  // Switched back the same way: the member promoted again is a primary without an
  // acknowledgement, the other one fenced at the later revision, and follows it.
  ASSERT_TRUE(detail::write_file_atomic(r.dir + "/data/concord_marker_r", "x").has_value());
  const DesiredState back = group_state(replica_spec(p));
  ASSERT_NO_FATAL_FAILURE(apply(r, back));
  EXPECT_EQ(engine_->health(r)->fenced_revision, back.revision);
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id})));
  auto again = engine_->health(p);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->role, "primary");
  EXPECT_EQ(again->fenced_revision, 0);
  w = app_sql(p, "INSERT INTO t VALUES (3)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(r, "3"));
  EXPECT_TRUE(streams(r));
  EXPECT_TRUE(detail::path_exists(r.dir + "/data/concord_marker_r")) << "not copied";
  EXPECT_EQ(ids(r), "1,2,3\n");
}

// A demoted primary whose history holds a commit its replica never received (the replica was
// down, then promoted): PostgreSQL refuses to follow a timeline that forked before its
// position, its health says so, and the next apply rebuilds it from the new primary, without
// the commit the group never had.
TEST_F(PostgresReplicationTest, ADemotedPrimaryThatForkedIsRebuiltFromTheNewPrimary) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(has_rows(r, "1"));
  ASSERT_TRUE(engine_->stop(r, milliseconds(10000)).has_value());
  auto w = app_sql(p, "INSERT INTO t VALUES (100)");  // never reaches r
  ASSERT_TRUE(w.ok()) << w.err;
  const ino_t folder = folder_inode(p);

  // Demoted while its upstream is down: the histories cannot be compared yet.
  const DesiredState demoted = group_state(replica_spec(r));
  ASSERT_NO_FATAL_FAILURE(apply(p, demoted));
  EXPECT_EQ(engine_->health(p)->role, "replica");
  ASSERT_NO_FATAL_FAILURE(up(r));
  ASSERT_NO_FATAL_FAILURE(apply(r, primary_state({p.id})));
  w = app_sql(r, "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;

  std::string broken;
  EXPECT_TRUE(eventually([&] {
    auto h = engine_->health(p);
    broken = h ? h->replication_broken : h.error().to_string();
    return !broken.empty();
  })) << detail::file_tail(p.dir + "/engine.log", 3000);
  EXPECT_NE(broken.find("forked"), std::string::npos) << broken;
  ASSERT_NO_FATAL_FAILURE(apply(p, demoted));  // as the agent's maintenance round does
  expect_rewound(p, folder, "1,2\n");          // without the commit the group never had
}

// Demoted when its replica is promoted already (a failover: the old primary comes back with a
// commit nobody received): the apply compares the histories and rebuilds it at once.
TEST_F(PostgresReplicationTest, ADemotedPrimaryBehindAPromotionIsRebuiltAtOnce) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(has_rows(r, "1"));
  ASSERT_NO_FATAL_FAILURE(apply(r, primary_state({p.id})));
  auto w = app_sql(p, "INSERT INTO t VALUES (100)");  // the old primary writes on: a fork
  ASSERT_TRUE(w.ok()) << w.err;
  w = app_sql(r, "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;
  const ino_t folder = folder_inode(p);
  // Its archive holds its segments by hard links into pg_wal (archiving is on by default), and
  // pg_rewind rewrites in place a segment both sides hold: the archive must keep what the
  // primary wrote. (Here the segments both hold have the same bytes on both sides, so this
  // checks the outcome, not that pg_rewind_data gave them inodes of their own first.)
  EXPECT_EQ(admin_sql(p, "SELECT 1 FROM pg_switch_wal()"), "1\n");
  const std::string archive = p.dir + "/wal_archive";
  std::map<std::string, std::string> archived;
  bool linked = false;
  ASSERT_TRUE(eventually([&] {
    for (const auto& e : std::filesystem::directory_iterator(archive)) {
      archived[e.path().filename()] = detail::read_file(e.path()).value_or("");
      linked = linked || std::filesystem::hard_link_count(e.path()) > 1;
    }
    return linked;
  })) << "no segment archived by a link";

  const DesiredState demoted = group_state(replica_spec(r));
  ASSERT_NO_FATAL_FAILURE(apply(p, demoted));
  EXPECT_EQ(engine_->health(p)->fenced_revision, demoted.revision);
  expect_rewound(p, folder, "1,2\n");
  for (const auto& [name, text] : archived) {
    EXPECT_EQ(detail::read_file(archive + "/" + name).value_or(""), text) << name;
  }
}

// A fork 7 segments (112 MB) of WAL past the last checkpoint both histories share, and the
// demoted primary's shutdown checkpoint in between: it keeps its WAL back to that checkpoint
// (wal_keep_size, the volume's WAL budget: 128 MB here) and is rewound. With the 64 MB every
// member kept before, it was copied: "could not find previous WAL record".
TEST_F(PostgresReplicationTest, AForkFarPastTheSharedCheckpointIsStillRewound) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(has_rows(r, "1"));
  // No checkpoint of p's own after the one below (one every 33 segments and every hour), so the
  // shared checkpoint stays that far back.
  EXPECT_EQ(admin_sql(p, "ALTER SYSTEM SET max_wal_size = '1GB'"), "");
  EXPECT_EQ(admin_sql(p, "ALTER SYSTEM SET checkpoint_timeout = '1h'"), "");
  EXPECT_EQ(admin_sql(p, "SELECT pg_reload_conf()"), "t\n");
  EXPECT_EQ(admin_sql(p, "CHECKPOINT"), "");
  for (int i = 2; i <= 7; ++i) {
    ASSERT_TRUE(app_sql(p, "INSERT INTO t VALUES (" + std::to_string(i) + ")").ok());
    EXPECT_EQ(admin_sql(p, "SELECT 1 FROM pg_switch_wal()"), "1\n");
  }
  ASSERT_TRUE(has_rows(r, "7"));
  ASSERT_NO_FATAL_FAILURE(apply(r, primary_state({p.id})));
  ASSERT_TRUE(app_sql(p, "INSERT INTO t VALUES (100)").ok());  // the old primary writes on
  ASSERT_TRUE(app_sql(r, "INSERT INTO t VALUES (8)").ok());
  const ino_t folder = folder_inode(p);
  ASSERT_NO_FATAL_FAILURE(apply(p, group_state(replica_spec(r))));
  expect_rewound(p, folder, "1,2,3,4,5,6,7,8\n");
}

// Two promotions in a row, there and back (timelines 1, 2, 3), and the second one's old primary
// forked: it is rewound onto a new primary whose control file still names an older timeline
// (a promotion updates it only at the spread checkpoint that follows), so the rewind makes the
// upstream checkpoint first, as pg_rewind's manual asks.
TEST_F(PostgresReplicationTest, AMemberForkedRightAfterASecondPromotionIsRewound) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(has_rows(r, "1"));
  ASSERT_NO_FATAL_FAILURE(apply(p, group_state(replica_spec(r))));  // demoted in place
  ASSERT_NO_FATAL_FAILURE(apply(r, primary_state({p.id})));         // timeline 2
  ASSERT_TRUE(app_sql(r, "INSERT INTO t VALUES (2)").ok());
  // Pages p replays and holds dirty, so that the checkpoint after its promotion is spread over
  // minutes: until it ends, p's control file names timeline 1.
  auto bulk = app_sql(r,
                      "CREATE TABLE bulk AS SELECT g, repeat('x', 100) AS pad FROM "
                      "generate_series(1, 200000) g");
  ASSERT_TRUE(bulk.ok()) << bulk.err;
  ASSERT_TRUE(has_rows(p, "2"));
  ASSERT_TRUE(eventually([&] {
    auto n = app_sql(p, "SELECT count(*) FROM bulk");
    return n.ok() && n.out == "200000\n";
  }));
  ASSERT_TRUE(streams(p));

  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id})));  // timeline 3, while r still writes
  auto w = app_sql(r, "INSERT INTO t VALUES (100)");         // a fork
  ASSERT_TRUE(w.ok()) << w.err;
  ASSERT_TRUE(app_sql(p, "INSERT INTO t VALUES (3)").ok());
  const ino_t folder = folder_inode(r);
  ASSERT_NO_FATAL_FAILURE(apply(r, group_state(replica_spec(p))));
  expect_rewound(r, folder, "1,2,3\n");
}

// A replica promoted while its primary wrote on (the fork mid-segment), then told to follow that
// primary again: rewound onto it.
TEST_F(PostgresReplicationTest, APromotedReplicaToldToFollowItsPrimaryAgainIsRewound) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(app_sql(p, "INSERT INTO t VALUES (2)").ok());  // the fork, mid-segment
  ASSERT_TRUE(has_rows(r, "2"));
  ASSERT_NO_FATAL_FAILURE(apply(r, primary_state({})));  // timeline 2
  ASSERT_TRUE(app_sql(r, "INSERT INTO t VALUES (100)").ok());
  ASSERT_TRUE(app_sql(p, "INSERT INTO t VALUES (3)").ok());
  const ino_t folder = folder_inode(r);
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id})));
  ASSERT_NO_FATAL_FAILURE(apply(r, group_state(replica_spec(p))));
  expect_rewound(r, folder, "1,2,3\n");
}

// When pg_rewind cannot run (here: the new primary's replication account may not read its
// files), the forked member is copied anew instead, and still fenced.
TEST_F(PostgresReplicationTest, AForkedMemberThatCannotBeRewoundIsCopiedAnew) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(has_rows(r, "1"));
  ASSERT_NO_FATAL_FAILURE(apply(r, primary_state({p.id})));
  EXPECT_EQ(admin_sql(r,
                      "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, "
                      "bigint, bigint, boolean) FROM concord_replication"),
            "");
  auto w = app_sql(p, "INSERT INTO t VALUES (100)");  // the old primary writes on: a fork
  ASSERT_TRUE(w.ok()) << w.err;
  w = app_sql(r, "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;
  ASSERT_TRUE(detail::write_file_atomic(p.dir + "/data/concord_test_marker", "x").has_value());

  const DesiredState demoted = group_state(replica_spec(r));
  ASSERT_NO_FATAL_FAILURE(apply(p, demoted));
  EXPECT_EQ(engine_->health(p)->fenced_revision, demoted.revision);
  expect_copied_anew(p, "1,2\n");
  EXPECT_FALSE(detail::path_exists(p.dir + "/data.rewind"));
  EXPECT_FALSE(detail::path_exists(p.dir + "/data.old"));
}

// A folder of another database system (a template copy a rebuild cut short left, then
// started) told to follow is not made a standby in place: it is rebuilt from the upstream.
TEST_F(PostgresReplicationTest, AFolderThatIsNoCopyOfItsUpstreamIsRebuilt) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id})));
  auto w = app_sql(p, "CREATE TABLE t(id int); INSERT INTO t VALUES (1)");
  ASSERT_TRUE(w.ok()) << w.err;
  ASSERT_NO_FATAL_FAILURE(up(r));  // a template copy, never a copy of p
  ASSERT_NO_FATAL_FAILURE(apply(r, group_state(replica_spec(p))));
  EXPECT_TRUE(has_rows(r, "1"));
  EXPECT_TRUE(streams(r));
}

// A replica that replayed writes its new upstream never saw (the old primary kept writing after
// a sibling's promotion) cannot follow it: it is rebuilt from it instead.
TEST_F(PostgresReplicationTest, ForkedReplicaIsRebuiltFromItsNewUpstream) {
  InstanceConfig p = member("p");
  InstanceConfig r1 = member("r1");
  InstanceConfig r2 = member("r2");
  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r1.id, r2.id})));
  auto w = app_sql(p, "CREATE TABLE t(id int); INSERT INTO t VALUES (1)");
  ASSERT_TRUE(w.ok()) << w.err;
  ASSERT_NO_FATAL_FAILURE(make_replica(r1, p));
  ASSERT_NO_FATAL_FAILURE(make_replica(r2, p));
  ASSERT_TRUE(has_rows(r1, "1"));
  ASSERT_TRUE(has_rows(r2, "1"));

  ASSERT_NO_FATAL_FAILURE(apply(r1, primary_state({r2.id})));
  w = app_sql(p, "INSERT INTO t VALUES (100)");  // the old primary writes on: a fork
  ASSERT_TRUE(w.ok()) << w.err;
  ASSERT_TRUE(has_rows(r2, "2"));  // replica 2 replayed it
  const ino_t folder = folder_inode(r2);

  ASSERT_NO_FATAL_FAILURE(apply(r2, group_state(replica_spec(r1))));
  EXPECT_EQ(folder_inode(r2), folder) << "rewound in place, not copied";
  EXPECT_FALSE(detail::path_exists(r2.dir + "/data.old"));
  EXPECT_TRUE(has_rows(r2, "1"));  // the new primary's history: without the forked row
  w = app_sql(r1, "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(r2, "2"));
  EXPECT_EQ(ids(r2), "1,2\n");
  EXPECT_TRUE(streams(r2));
}

// A standby whose position its upstream no longer has in pg_wal (here: its slot dropped while
// it was stopped, the WAL recycled, a new slot made) says why in its health, and the next apply
// of its unchanged state makes it anew.
TEST_F(PostgresReplicationTest, AReplicaWhoseWalIsGoneIsRebuiltByItsNextApply) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(has_rows(r, "1"));
  ASSERT_TRUE(streams(r));

  ASSERT_TRUE(engine_->stop(r, milliseconds(10000)).has_value());
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({})));  // its slot goes
  // More segments than every member keeps past its checkpoint (wal_keep_size, the 1 GB
  // volume's WAL budget: 128 MB, 8 segments).
  ASSERT_EQ(pg_wal_budget_mb(p.volume_gb), 128);
  for (int i = 2; i <= 11; ++i) {
    ASSERT_TRUE(app_sql(p, "INSERT INTO t VALUES (" + std::to_string(i) + ")").ok());
    EXPECT_EQ(admin_sql(p, "SELECT 1 FROM pg_switch_wal()"), "1\n");
  }
  EXPECT_EQ(admin_sql(p, "CHECKPOINT"), "");
  EXPECT_EQ(admin_sql(p, "CHECKPOINT"), "");
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id})));  // a new slot, from now on
  ASSERT_NO_FATAL_FAILURE(up(r));
  // The report that says it is broken. Not a second look: the standby's WAL receiver retries
  // every few seconds, and during each try, until the upstream answers that the segment is
  // gone, it shows as streaming.
  std::optional<Health> broken;
  ASSERT_TRUE(eventually([&] {
    auto h = engine_->health(r);
    if (h && !h->replication_broken.empty()) broken = *h;
    return broken.has_value();
  })) << detail::file_tail(r.dir + "/engine.log", 2000);
  EXPECT_NE(broken->replication_broken.find("has already been removed"), std::string::npos)
      << broken->replication_broken;
  EXPECT_FALSE(broken->replication_streaming);

  ASSERT_NO_FATAL_FAILURE(apply(r, group_state(replica_spec(p))));
  EXPECT_TRUE(has_rows(r, "11"));
  EXPECT_TRUE(streams(r));
  auto h = engine_->health(r);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->replication_broken, "");
  ASSERT_TRUE(app_sql(p, "INSERT INTO t VALUES (12)").ok());
  EXPECT_TRUE(has_rows(r, "12"));
}

TEST_F(PostgresReplicationTest, SynchronousStandbyHoldsCommitsUntilItReturns) {
  InstanceConfig p = member("p");
  InstanceConfig r = member("r");
  ASSERT_NO_FATAL_FAILURE(pair_with_one_row(p, r));
  ASSERT_TRUE(streams(r));

  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id}, {r.id})));
  EXPECT_EQ(admin_sql(p, "SHOW synchronous_standby_names"), "FIRST 1 (\"" + r.id + "\")\n");
  EXPECT_TRUE(eventually(
      [&] { return admin_sql(p, "SELECT sync_state FROM pg_stat_replication") == "sync\n"; }));
  auto w = app_sql(p, "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(r, "2"));

  // Without its standby, a commit does not complete: the client is still waiting when its
  // bounded wait ends (statement_timeout cannot show it: PostgreSQL lifts it before the commit),
  // and the row stays invisible to everyone else. The server-side backend keeps waiting.
  ASSERT_TRUE(engine_->stop(r, milliseconds(10000)).has_value());
  const std::string conninfo = "host=" + p.address + " port=" + std::to_string(p.port) +
                               " user=app password=app-pw dbname=shop sslmode=require";
  detail::CommandOptions bounded;
  bounded.timeout = milliseconds(3000);
  auto held = detail::run_command(
      {"/usr/bin/psql", conninfo, "-X", "-q", "-tAc", "INSERT INTO t VALUES (3)"}, bounded);
  ASSERT_TRUE(held.has_value()) << held.error().to_string();
  EXPECT_TRUE(held->timed_out) << "exit " << held->exit_code << ": " << held->err;
  w = app_sql(p, "SELECT count(*) FROM t");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_EQ(w.out, "2\n");

  // With the standby back, the held commit completes and new ones do too.
  ASSERT_TRUE(engine_->start(r).has_value());
  ASSERT_NO_FATAL_FAILURE(apply(r, group_state(replica_spec(p))));
  EXPECT_TRUE(has_rows(p, "3"));
  w = app_sql(p, "INSERT INTO t VALUES (4)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(has_rows(r, "4"));

  // Asynchronous again; the replica removed: its slot goes with it.
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({r.id})));
  EXPECT_EQ(admin_sql(p, "SHOW synchronous_standby_names"), "\n");
  ASSERT_TRUE(engine_->destroy(r).has_value());
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({})));
  EXPECT_EQ(admin_sql(p, "SELECT count(*) FROM pg_replication_slots"), "0\n");
  w = app_sql(p, "INSERT INTO t VALUES (5)");
  ASSERT_TRUE(w.ok()) << w.err;
}

TEST_F(PostgresReplicationTest, CloneFailuresSayWhetherToRetry) {
  InstanceConfig p = member("p");
  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({})));

  // Nobody listens at the upstream: retry later.
  InstanceConfig lost = member("lost");
  ReplicationSpec nowhere = replica_spec(p);
  nowhere.upstream_address = unique_address();
  nowhere.upstream_port = free_port(nowhere.upstream_address);
  auto st = engine_->clone_from(lost, nowhere, nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable) << st.error().to_string();
  EXPECT_FALSE(detail::path_exists(lost.dir + "/data"));
  EXPECT_FALSE(detail::path_exists(lost.dir + "/clone.tmp"));

  // The primary has no slot for this replica yet (its apply has not listed it): retry later;
  // once it has, the same call succeeds.
  InstanceConfig early = member("early");
  st = engine_->clone_from(early, replica_spec(p), nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable) << st.error().to_string();
  EXPECT_NE(st.error().message().find("does not exist"), std::string::npos)
      << st.error().to_string();
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({early.id})));
  // What a killed clone left behind is redone, not trusted.
  ASSERT_TRUE(detail::make_dir(early.dir + "/clone.tmp/data", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(early.dir + "/clone.tmp/data/junk", "x").has_value());
  st = engine_->clone_from(early, replica_spec(p), nullptr);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(detail::path_exists(early.dir + "/data/junk"));
  EXPECT_FALSE(detail::path_exists(early.dir + "/clone.tmp"));
  // Idempotent: the folder exists, nothing is redone.
  ASSERT_TRUE(detail::write_file_atomic(early.dir + "/data/concord_test_marker", "x").has_value());
  st = engine_->clone_from(early, replica_spec(p), nullptr);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(detail::path_exists(early.dir + "/data/concord_test_marker"));
  ASSERT_NO_FATAL_FAILURE(up(early));
  ASSERT_NO_FATAL_FAILURE(apply(early, group_state(replica_spec(p))));
  EXPECT_TRUE(streams(early));
  // A rebuild cut short after the old folder was set aside (agent killed, upstream down): the
  // next apply finishes it.
  ASSERT_TRUE(engine_->stop(early, milliseconds(10000)).has_value());
  ASSERT_EQ(::rename((early.dir + "/data").c_str(), (early.dir + "/data.old").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(apply(early, group_state(replica_spec(p))));
  EXPECT_FALSE(detail::path_exists(early.dir + "/data.old"));
  EXPECT_TRUE(streams(early));

  // A wrong secret: the primary refuses the account (retryable: the primary's apply with the
  // group's secret may not have run yet).
  InstanceConfig wrong = member("wrong");
  ASSERT_NO_FATAL_FAILURE(apply(p, primary_state({early.id, wrong.id})));
  ReplicationSpec bad_secret = replica_spec(p);
  bad_secret.secret = "not-the-secret";
  st = engine_->clone_from(wrong, bad_secret, nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable) << st.error().to_string();
  EXPECT_NE(st.error().message().find("password authentication failed"), std::string::npos)
      << st.error().to_string();

  // Specs that cannot work.
  ReplicationSpec as_primary = replica_spec(p);
  as_primary.role = ReplicationSpec::Role::kPrimary;
  st = engine_->clone_from(wrong, as_primary, nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  ReplicationSpec no_upstream = replica_spec(p);
  no_upstream.upstream_address.clear();
  st = engine_->clone_from(wrong, no_upstream, nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  // A running instance is not overwritten.
  st = engine_->clone_from(p, replica_spec(early), nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);

  // The replication account is no tenant's: the name is reserved, and a synchronous standby
  // must be one of the replicas.
  DesiredState reserved = primary_state({early.id});
  reserved.users.push_back({"concord_replication", "%", app_verifier_, {}});
  st = engine_->apply(p, reserved);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  st = engine_->apply(p, primary_state({early.id}, {"stranger"}));
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace concord::database::engine::testing

// MariaDB read replicas on the real mariadbd 10.11: replicas cloned over the network from a
// running primary, GTID replication over TLS, promotion, re-pointing, demotion in place (or by
// rebuild after a fork) and semi-synchronous commits. Every wait is bounded polling of the real
// servers.
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <thread>

#include "database/engine/credentials.h"
#include "database/engine/engine.h"
#include "database/engine/mariadb_replication.h"
#include "engine_test_util.h"
#include "fmt/format.h"

namespace concord::database::engine::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kSecret[] = "repl-Secret-42";
constexpr char kAppPassword[] = "app-pw";

// Polls `done` every 100 ms until it holds or `limit` passed.
bool eventually(const std::function<bool()>& done, milliseconds limit = milliseconds(90000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return done();
}

TEST(MariadbGtidHistory, AMemberFollowsOnlyAnUpstreamThatHasItsLastTransactions) {
  using detail::mdb_history_missing;
  // The upstream has this member's last transaction, or a later one of the same server.
  EXPECT_EQ(mdb_history_missing("0-7-105", "0-7-105,0-9-110"), "");
  EXPECT_EQ(mdb_history_missing("0-7-105", "0-9-110,0-7-107"), "");
  // Its last transaction never reached the upstream: a fork.
  EXPECT_EQ(mdb_history_missing("0-7-106", "0-7-105,0-9-110"), "0-7-106");
  EXPECT_EQ(mdb_history_missing("0-7-5", "0-9-110"), "0-7-5");
  // Every domain counts.
  EXPECT_EQ(mdb_history_missing("0-7-5,1-7-3", "0-7-5,1-8-4"), "1-7-3");
  EXPECT_EQ(mdb_history_missing("0-7-5,1-7-3", "1-7-3,0-7-9"), "");
  // Nothing written here yet: nothing to miss.
  EXPECT_EQ(mdb_history_missing("", "0-7-5"), "");
  EXPECT_EQ(mdb_history_missing("0-7-5", ""), "0-7-5");
}

class MariadbReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why =
        engine_skip_reason({"/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db", "/usr/bin/mariadb",
                            "/usr/bin/mariadb-dump", "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    EngineOptions options;
    options.template_dir = tmp_.path() + "/.templates";
    auto e = make_mariadb_engine(options);
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    engine_ = std::move(*e);
  }
  void TearDown() override {
    if (!engine_) return;
    for (const auto& m : members_) (void)engine_->destroy(m);
  }

  InstanceConfig member(const std::string& name) {
    InstanceConfig c;
    c.id = "mr-" + std::to_string(::getpid()) + "-" + name;
    c.dir = tmp_.path() + "/" + c.id;
    c.version = "10.11";
    c.address = unique_address();
    c.port = 3306;
    c.vcpus = 1;
    c.ram_mb = 256;
    members_.push_back(c);
    return c;
  }

  // The group's lists: every member gets the same databases and users (a replica ignores
  // them until promoted).
  DesiredState group_state(int64_t revision) {
    DesiredState s;
    s.revision = revision;
    s.databases = {{"shop", "", ""}};
    s.users = {{"app", "%", mariadb_native_verifier(kAppPassword), {"shop"}}};
    return s;
  }

  static ReplicationSpec primary_spec(std::vector<std::string> replicas,
                                      std::vector<std::string> sync = {}) {
    ReplicationSpec r;
    r.role = ReplicationSpec::Role::kPrimary;
    r.secret = kSecret;
    r.replicas = std::move(replicas);
    r.synchronous_standbys = std::move(sync);
    return r;
  }

  static ReplicationSpec replica_spec(const InstanceConfig& upstream,
                                      std::vector<std::string> sync = {}) {
    ReplicationSpec r;
    r.role = ReplicationSpec::Role::kReplica;
    r.secret = kSecret;
    r.upstream_instance = upstream.id;
    r.upstream_address = upstream.address;
    r.upstream_port = upstream.port;
    r.synchronous_standbys = std::move(sync);
    return r;
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
    ASSERT_TRUE(st.has_value()) << c.id << ": " << st.error().to_string() << logs();
  }

  // Every member's log tail, for a failure message.
  std::string logs() const {
    std::string out;
    for (const auto& m : members_) {
      out += "\n---- " + m.id + " ----\n" + detail::file_tail(m.dir + "/engine.log", 1500);
    }
    return out;
  }

  // clone_from, prepare, start, apply: what the driver does for a new replica.
  void make_replica(const InstanceConfig& c, const InstanceConfig& upstream, int64_t revision,
                    std::vector<std::string> sync = {}) {
    auto st = engine_->clone_from(c, replica_spec(upstream, sync), nullptr);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    ASSERT_NO_FATAL_FAILURE(up(c));
    DesiredState s = group_state(revision);
    s.replication = replica_spec(upstream, sync);
    ASSERT_NO_FATAL_FAILURE(apply(c, s));
  }

  // As the engine's own administrator, over the instance's socket (root of this host only).
  detail::CommandResult local_admin(const InstanceConfig& c, const std::string& sql) {
    auto r = detail::run_command(
        {"/usr/bin/mariadb", "-S", c.dir + "/run/mysqld.sock", "-u", "root", "-N", "-e", sql});
    if (r) return *r;
    detail::CommandResult failed;
    failed.err = r.error().message();
    return failed;
  }

  detail::CommandResult app(const InstanceConfig& c, const std::string& sql) {
    return mariadb_cli(c.address, c.port, "app", kAppPassword, "shop", sql);
  }

  std::string count(const InstanceConfig& c) {
    auto r = app(c, "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM t");
    return r.ok() ? r.out : "error: " + r.err;
  }

  Health health(const InstanceConfig& c) {
    auto h = engine_->health(c);
    EXPECT_TRUE(h.has_value()) << h.error().to_string();
    return h ? *h : Health{};
  }

  bool streaming(const InstanceConfig& c) {
    Health h = health(c);
    return h.role == "replica" && h.replication_streaming && h.replication_lag_seconds >= 0;
  }

  // p a primary with table t, r its synchronous standby (semi-synchronous, streaming): p's
  // desired state at revision 2, returned.
  DesiredState make_sync_pair(const InstanceConfig& p, const InstanceConfig& r) {
    DesiredState ps = group_state(1);
    ps.replication = primary_spec({r.id});
    [&] {
      ASSERT_NO_FATAL_FAILURE(up(p));
      ASSERT_NO_FATAL_FAILURE(apply(p, ps));
      ASSERT_TRUE(app(p, "CREATE TABLE t(id int primary key, v text)").ok());
      ASSERT_NO_FATAL_FAILURE(make_replica(r, p, 1, {r.id}));
      ASSERT_TRUE(eventually([&] { return streaming(r); })) << health(r).detail;
      ps.revision = 2;
      ps.replication = primary_spec({r.id}, {r.id});
      ASSERT_NO_FATAL_FAILURE(apply(p, ps));
    }();
    return ps;
  }

  EngineTempDir tmp_;
  std::unique_ptr<Engine> engine_;
  std::vector<InstanceConfig> members_;
};

TEST_F(MariadbReplicationTest, ReplicasFollowThenPromoteRepointAndDemote) {
  const InstanceConfig p = member("p");
  const InstanceConfig r1 = member("r1");
  const InstanceConfig r2 = member("r2");
  ASSERT_NO_FATAL_FAILURE(up(p));
  DesiredState ps = group_state(1);
  ps.replication = primary_spec({r1.id, r2.id});
  ASSERT_NO_FATAL_FAILURE(apply(p, ps));
  auto w = app(p, "CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'one')");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_EQ(health(p).role, "primary");

  // Replica 1: a copy of the running primary, then streaming. A half-made copy left by a
  // killed agent is redone, never trusted.
  ASSERT_TRUE(detail::make_dir(r1.dir + "/clone.tmp/data", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(r1.dir + "/clone.tmp/data/junk", "x").has_value());
  ASSERT_NO_FATAL_FAILURE(make_replica(r1, p, 1));
  EXPECT_FALSE(detail::path_exists(r1.dir + "/clone.tmp"));
  EXPECT_FALSE(detail::path_exists(r1.dir + "/data/junk"));
  EXPECT_EQ(count(r1), "1\t1\n") << "the copy holds the primary's rows";
  ASSERT_TRUE(eventually([&] { return streaming(r1); })) << health(r1).detail;
  ASSERT_TRUE(app(p, "INSERT INTO t VALUES (2, 'two')").ok());
  EXPECT_TRUE(eventually([&] { return count(r1) == "2\t2\n"; })) << count(r1);

  // The tenant's user (no SUPER / READ_ONLY ADMIN) cannot write on a replica.
  auto denied = app(r1, "INSERT INTO t VALUES (100, 'nope')");
  EXPECT_FALSE(denied.ok());
  EXPECT_NE(denied.err.find("ERROR 1290"), std::string::npos) << denied.err;
  // Every member has its own server_id (derived from its instance id).
  auto ids = mariadb_cli(p.address, p.port, "app", kAppPassword, "", "SELECT @@server_id");
  auto ids1 = mariadb_cli(r1.address, r1.port, "app", kAppPassword, "", "SELECT @@server_id");
  ASSERT_TRUE(ids.ok() && ids1.ok()) << ids.err << ids1.err;
  EXPECT_NE(ids.out, ids1.out);
  EXPECT_NE(ids.out, "1\n");

  // Applying the same states again changes nothing and keeps streaming.
  DesiredState rs = group_state(1);
  rs.replication = replica_spec(p);
  ASSERT_NO_FATAL_FAILURE(apply(r1, rs));
  ASSERT_NO_FATAL_FAILURE(apply(p, ps));

  // Only a primary is copied: a replica (here replica 1, as one being promoted would be) may
  // not have applied all it received, and the copy would skip those rows for good.
  auto refused = engine_->clone_from(r2, replica_spec(r1), nullptr);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kUnavailable) << refused.error().to_string();
  EXPECT_NE(refused.error().message().find("read-only"), std::string::npos)
      << refused.error().to_string();
  EXPECT_FALSE(detail::path_exists(r2.dir + "/data"));

  // Replica 2.
  ASSERT_NO_FATAL_FAILURE(make_replica(r2, p, 1));
  ASSERT_TRUE(app(p, "INSERT INTO t VALUES (3, 'three')").ok());
  EXPECT_TRUE(eventually([&] { return count(r2) == "3\t3\n"; })) << count(r2);
  EXPECT_TRUE(eventually([&] { return count(r1) == "3\t3\n"; })) << count(r1);
  ASSERT_TRUE(eventually([&] { return streaming(r2); })) << health(r2).detail;

  // A replica survives a restart as a replica: read-only from start-up, streaming again.
  ASSERT_TRUE(engine_->stop(r2, milliseconds(30000)).has_value());
  ASSERT_NO_FATAL_FAILURE(up(r2));
  denied = app(r2, "INSERT INTO t VALUES (101, 'nope')");
  EXPECT_NE(denied.err.find("ERROR 1290"), std::string::npos) << denied.err;
  ASSERT_TRUE(eventually([&] { return streaming(r2); })) << health(r2).detail;

  // Promote replica 1 (the primary is left alone first, as after a failover fence).
  ASSERT_TRUE(engine_->stop(p, milliseconds(30000)).has_value());
  DesiredState s2 = group_state(2);
  s2.users.push_back({"late", "%", mariadb_native_verifier("late-pw"), {"shop"}});
  s2.replication = primary_spec({r2.id, p.id});
  ASSERT_NO_FATAL_FAILURE(apply(r1, s2));
  EXPECT_EQ(health(r1).role, "primary");
  EXPECT_FALSE(health(r1).replication_streaming);
  auto names = detail::read_managed_names(r1.dir);
  EXPECT_TRUE(names.databases.contains("shop"));
  EXPECT_TRUE(names.accounts.contains("app@%"));
  EXPECT_TRUE(names.accounts.contains("late@%"));
  ASSERT_TRUE(app(r1, "INSERT INTO t VALUES (4, 'four')").ok());

  // Re-point replica 2 to the new primary: it continues from its GTID position.
  DesiredState r2s = group_state(2);
  r2s.replication = replica_spec(r1);
  ASSERT_NO_FATAL_FAILURE(apply(r2, r2s));
  EXPECT_TRUE(eventually([&] { return count(r2) == "4\t4\n"; })) << count(r2);
  EXPECT_TRUE(mariadb_cli(r2.address, r2.port, "late", "late-pw", "shop", "SELECT 1").ok())
      << "the account the new primary made reached replica 2";

  // The old primary comes back and is told it is a replica of replica 1. It took a write
  // nobody else has: its demotion finds that its last transaction never reached replica 1 and
  // rebuilds it from there.
  ASSERT_NO_FATAL_FAILURE(up(p));
  ASSERT_TRUE(app(p, "INSERT INTO t VALUES (50, 'diverged')").ok())
      << "the old primary still accepts writes until told otherwise";
  EXPECT_EQ(health(p).fenced_revision, 0);
  DesiredState pd = group_state(2);
  pd.replication = replica_spec(r1);
  ASSERT_NO_FATAL_FAILURE(apply(p, pd));
  EXPECT_EQ(health(p).fenced_revision, 2);
  EXPECT_EQ(count(p), "4\t4\n") << "the diverged write is gone with the rebuilt folder";
  ASSERT_TRUE(eventually([&] { return streaming(p); })) << health(p).detail;

  // Writes on the new primary reach both.
  ASSERT_TRUE(app(r1, "INSERT INTO t VALUES (5, 'five')").ok());
  EXPECT_TRUE(eventually([&] { return count(r2) == "5\t5\n"; })) << count(r2);
  EXPECT_TRUE(eventually([&] { return count(p) == "5\t5\n"; })) << count(p);
  EXPECT_TRUE(eventually([&] { return streaming(r2); })) << health(r2).detail;
  EXPECT_EQ(health(r1).role, "primary");
}

// Trove's switchover, in the service's order: the old primary is told first that it follows
// its replica; its apply stops it, makes it read-only from start-up, records the fencing
// acknowledgement and waits (kUnavailable) for the replica's promotion; it then follows it
// from the last transaction of its own binlog, its data kept: no copy either way.
TEST_F(MariadbReplicationTest, ADemotedPrimaryFollowsItsPromotedReplicaInPlace) {
  const InstanceConfig p = member("ip");
  const InstanceConfig r = member("ir");
  ASSERT_NO_FATAL_FAILURE(up(p));
  // Root enabled: it has every privilege but READ ONLY ADMIN, so the fence holds it too.
  auto with_root = [](DesiredState s) {
    s.root = RootSpec{mariadb_native_verifier("root-pw")};
    return s;
  };
  auto root_write = [](const InstanceConfig& c) {
    return mariadb_cli(c.address, c.port, "root", "root-pw", "shop",
                       "INSERT INTO t VALUES (98, 'root')");
  };
  DesiredState ps = with_root(group_state(1));
  ps.replication = primary_spec({r.id});
  ASSERT_NO_FATAL_FAILURE(apply(p, ps));
  auto w = app(p, "CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'one')");
  ASSERT_TRUE(w.ok()) << w.err;
  ASSERT_NO_FATAL_FAILURE(make_replica(r, p, 1));
  ASSERT_TRUE(eventually([&] { return count(r) == "1\t1\n"; })) << count(r);
  ASSERT_TRUE(detail::write_file_atomic(p.dir + "/data/concord_test_marker", "x").has_value());

  DesiredState demoted = with_root(group_state(2));
  demoted.replication = replica_spec(r);
  // Writes go on until the fence refuses them: whatever it committed reaches the replica
  // before its stop, else it could not follow in place (checked below: its folder is kept).
  std::atomic<bool> writing{true};
  auto writer = std::async(std::launch::async, [&] {
    int id = 1000;
    while (writing && app(p, fmt::format("INSERT INTO t VALUES ({}, 'w')", id)).ok()) ++id;
    return id - 1000;
  });
  std::this_thread::sleep_for(milliseconds(300));
  auto st = engine_->apply(p, demoted);
  writing = false;
  const int written = writer.get();
  EXPECT_GT(written, 0);
  ASSERT_FALSE(st.has_value()) << "its upstream is not promoted yet";
  EXPECT_EQ(st.error().code(), Code::kUnavailable) << st.error().to_string();
  EXPECT_NE(st.error().message().find("read-only"), std::string::npos) << st.error().to_string();
  Health fenced = health(p);
  EXPECT_TRUE(fenced.running);
  EXPECT_EQ(fenced.role, "replica");
  EXPECT_EQ(fenced.fenced_revision, 2);
  auto denied = app(p, "INSERT INTO t VALUES (99, 'nope')");
  EXPECT_NE(denied.err.find("ERROR 1290"), std::string::npos) << "fenced: " << denied.err;
  denied = root_write(p);
  EXPECT_NE(denied.err.find("ERROR 1290"), std::string::npos) << "fenced: " << denied.err;
  denied = mariadb_cli(p.address, p.port, "root", "root-pw", "", "SET GLOBAL read_only = OFF");
  EXPECT_FALSE(denied.ok()) << "root cannot lift the fence";
  // Restarted meanwhile (the agent's restart): still read-only, the next apply waits again.
  ASSERT_TRUE(engine_->stop(p, milliseconds(30000)).has_value());
  ASSERT_NO_FATAL_FAILURE(up(p));
  denied = app(p, "INSERT INTO t VALUES (99, 'nope')");
  EXPECT_NE(denied.err.find("ERROR 1290"), std::string::npos) << "fenced: " << denied.err;
  st = engine_->apply(p, demoted);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable) << st.error().to_string();

  // The replica is promoted; the retry follows it.
  DesiredState rs = with_root(group_state(2));
  rs.replication = primary_spec({p.id});
  ASSERT_NO_FATAL_FAILURE(apply(r, rs));
  ASSERT_TRUE(app(r, "INSERT INTO t VALUES (2, 'two')").ok());
  ASSERT_NO_FATAL_FAILURE(apply(p, demoted));
  EXPECT_TRUE(eventually([&] { return count(p) == count(r); })) << count(p) << count(r);
  ASSERT_TRUE(app(r, "DELETE FROM t WHERE id >= 1000").ok());
  EXPECT_TRUE(eventually([&] { return count(p) == "2\t2\n"; })) << count(p);
  ASSERT_TRUE(eventually([&] { return streaming(p); })) << health(p).detail;
  EXPECT_TRUE(detail::path_exists(p.dir + "/data/concord_test_marker")) << "not copied";
  EXPECT_EQ(health(p).fenced_revision, 2);

  // And back: the member promoted again is a primary without an acknowledgement.
  ASSERT_TRUE(detail::write_file_atomic(r.dir + "/data/concord_test_marker", "x").has_value());
  DesiredState back = with_root(group_state(3));
  back.replication = replica_spec(p);
  st = engine_->apply(r, back);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable) << st.error().to_string();
  EXPECT_EQ(health(r).fenced_revision, 3);
  DesiredState ps3 = with_root(group_state(3));
  ps3.replication = primary_spec({r.id});
  ASSERT_NO_FATAL_FAILURE(apply(p, ps3));
  EXPECT_EQ(health(p).role, "primary");
  EXPECT_EQ(health(p).fenced_revision, 0);
  ASSERT_TRUE(app(p, "INSERT INTO t VALUES (3, 'three')").ok());
  auto w3 = root_write(p);
  EXPECT_TRUE(w3.ok()) << "root writes on the primary: " << w3.err;
  ASSERT_TRUE(app(p, "DELETE FROM t WHERE id = 98").ok());
  ASSERT_NO_FATAL_FAILURE(apply(r, back));
  EXPECT_TRUE(eventually([&] { return count(r) == "3\t3\n"; })) << count(r);
  ASSERT_TRUE(eventually([&] { return streaming(r); })) << health(r).detail;
  EXPECT_TRUE(detail::path_exists(r.dir + "/data/concord_test_marker")) << "not copied";
  ASSERT_TRUE(app(p, "INSERT INTO t VALUES (4, 'four')").ok());
  EXPECT_TRUE(eventually([&] { return count(r) == "4\t4\n"; })) << count(r);
}

// A failover leaves the old primary with a commit waiting for its standby's acknowledgement
// (a paused primary resumed, say): in its binlog, never acknowledged. Its demotion kills it and
// its recovery as a replica drops that commit, so it follows the promoted standby in place
// instead of being copied anew. When the standby had received it, the member gets it back
// from there, under its old server_id, which it no longer skips as its own. When a statement
// that cannot be rolled back waits after it, MariaDB refuses the cut (and would not start): it
// starts committing both instead, and is copied anew.
TEST_F(MariadbReplicationTest, ADemotedPrimaryDropsItsUnacknowledgedCommitAndFollowsInPlace) {
  enum Case { kNeverReceived, kReceived, kDdlAfterIt };
  for (Case c : {kNeverReceived, kReceived, kDdlAfterIt}) {
    SCOPED_TRACE(c == kNeverReceived ? "the standby never received it"
                 : c == kReceived    ? "the standby had received it"
                                     : "a statement that cannot be rolled back follows it");
    const std::string n = std::to_string(static_cast<int>(c));
    const InstanceConfig p = member("ua-p" + n);
    const InstanceConfig r = member("ua-r" + n);
    ASSERT_NO_FATAL_FAILURE(make_sync_pair(p, r));
    ASSERT_TRUE(app(p, "INSERT INTO t VALUES (1, 'acknowledged')").ok());
    ASSERT_EQ(count(r), "1\t1\n");
    const std::string old_id = local_admin(p, "SELECT @@server_id").out;
    ASSERT_FALSE(old_id.empty());
    ASSERT_TRUE(detail::write_file_atomic(p.dir + "/data/concord_test_marker", "x").has_value());

    // The standby stops replicating; the next commit waits for its acknowledgement.
    ASSERT_TRUE(local_admin(r, "STOP SLAVE").ok());
    auto pending = std::async(std::launch::async,
                              [&] { return app(p, "INSERT INTO t VALUES (2, 'unacknowledged')"); });
    ASSERT_EQ(pending.wait_for(std::chrono::seconds(2)), std::future_status::timeout);
    std::future<detail::CommandResult> ddl;
    if (c == kDdlAfterIt) {
      ddl = std::async(std::launch::async,
                       [&] { return local_admin(p, "CREATE USER 'late'@'localhost'"); });
      ASSERT_EQ(ddl.wait_for(std::chrono::seconds(2)), std::future_status::timeout);
    }
    // The failover: the standby promoted, written to.
    DesiredState rs = group_state(3);
    rs.replication = primary_spec({p.id});
    ASSERT_NO_FATAL_FAILURE(apply(r, rs));
    if (c == kReceived) {
      // As if it had come before the cut: the same transaction, under the old primary's id.
      auto w = local_admin(r, "SET SESSION server_id = " + old_id +
                                  "; INSERT INTO shop.t VALUES (2, 'unacknowledged')");
      ASSERT_TRUE(w.ok()) << w.err;
    }
    ASSERT_TRUE(app(r, "INSERT INTO t VALUES (3, 'after the failover')").ok());

    DesiredState demoted = group_state(3);
    demoted.replication = replica_spec(r);
    ASSERT_NO_FATAL_FAILURE(apply(p, demoted));
    auto lost = pending.get();
    EXPECT_FALSE(lost.ok()) << "the waiting commit was never acknowledged";
    if (ddl.valid()) {
      EXPECT_FALSE(ddl.get().ok());
    }
    const std::string want = c == kReceived ? "3\t3\n" : "2\t3\n";
    EXPECT_EQ(count(r), want);
    EXPECT_TRUE(eventually([&] { return count(p) == want; })) << count(p) << logs();
    EXPECT_EQ(app(p, "SELECT COUNT(*) FROM t WHERE id = 2").out, c == kReceived ? "1\n" : "0\n");
    EXPECT_TRUE(eventually([&] { return streaming(p); })) << health(p).detail;
    EXPECT_EQ(detail::path_exists(p.dir + "/data/concord_test_marker"), c != kDdlAfterIt)
        << "copied anew only when the cut was refused";
    if (c == kDdlAfterIt) {
      EXPECT_NE(detail::file_tail(p.dir + "/engine.log", 1 << 20).find("Cannot truncate"),
                std::string::npos);
    }
    EXPECT_NE(local_admin(p, "SELECT @@server_id").out, old_id);
    EXPECT_EQ(health(p).fenced_revision, 3);
  }
}

TEST_F(MariadbReplicationTest, SemiSyncCommitWaitsForTheSynchronousStandby) {
  const InstanceConfig p = member("sp");
  const InstanceConfig r = member("sr");
  // The replica is the synchronous standby.
  DesiredState ps;
  ASSERT_NO_FATAL_FAILURE(ps = make_sync_pair(p, r));
  auto w = app(p, "INSERT INTO t VALUES (1, 'acknowledged by the standby')");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_EQ(count(r), "1\t1\n") << "after-sync: acknowledged means on the standby";

  // With the only synchronous standby down, a commit is not acknowledged...
  ASSERT_TRUE(engine_->stop(r, milliseconds(30000)).has_value());
  auto pending =
      std::async(std::launch::async, [&] { return app(p, "INSERT INTO t VALUES (2, 'waits')"); });
  EXPECT_EQ(pending.wait_for(std::chrono::seconds(5)), std::future_status::timeout)
      << "the commit completed without its standby: " << pending.get().err;
  // ...and is once the standby is back.
  ASSERT_NO_FATAL_FAILURE(up(r));
  auto done = pending.get();
  EXPECT_TRUE(done.ok()) << done.err;
  EXPECT_EQ(count(r), "2\t2\n");
  EXPECT_TRUE(eventually([&] { return streaming(r); })) << health(r).detail;

  // Off again when the list is empty: a commit no longer waits for anyone.
  ASSERT_TRUE(engine_->stop(r, milliseconds(30000)).has_value());
  ps.revision = 3;
  ps.replication = primary_spec({r.id});
  ASSERT_NO_FATAL_FAILURE(apply(p, ps));
  auto async_commit =
      std::async(std::launch::async, [&] { return app(p, "INSERT INTO t VALUES (3, 'async')"); });
  ASSERT_EQ(async_commit.wait_for(std::chrono::seconds(50)), std::future_status::ready);
  EXPECT_TRUE(async_commit.get().ok());

  // A replica detached (no replication in its desired state) stands alone: it catches up,
  // stops following and accepts the tenant's writes.
  ASSERT_NO_FATAL_FAILURE(up(r));
  ASSERT_TRUE(eventually([&] { return count(r) == "3\t3\n"; })) << count(r);
  ASSERT_NO_FATAL_FAILURE(apply(r, group_state(4)));
  Health h = health(r);
  EXPECT_EQ(h.role, "primary");
  EXPECT_FALSE(h.replication_streaming);
  auto own = app(r, "INSERT INTO t VALUES (4, 'standalone')");
  EXPECT_TRUE(own.ok()) << own.err;
}

// A replica that cannot go on from its upstream says why in its health, and the next apply of
// its (unchanged) state makes it anew from the upstream: once for its position purged from the
// upstream's binlogs (error 1236), once for a replay stopped by a row its root wrote on it.
TEST_F(MariadbReplicationTest, AReplicaThatCannotGoOnIsRebuiltByItsNextApply) {
  const InstanceConfig p = member("bp");
  const InstanceConfig r = member("br");
  ASSERT_NO_FATAL_FAILURE(up(p));
  DesiredState ps = group_state(1);
  ps.root = RootSpec{mariadb_native_verifier("root-pw")};
  ps.replication = primary_spec({r.id});
  ASSERT_NO_FATAL_FAILURE(apply(p, ps));
  auto root = [&](const InstanceConfig& c, const std::string& sql) {
    return mariadb_cli(c.address, c.port, "root", "root-pw", "", sql);
  };
  ASSERT_TRUE(
      app(p, "CREATE TABLE t(id int primary key, v text); INSERT INTO t VALUES (1, 'a')").ok());
  ASSERT_NO_FATAL_FAILURE(make_replica(r, p, 1));
  ASSERT_TRUE(eventually([&] { return streaming(r) && count(r) == "1\t1\n"; })) << count(r);
  DesiredState rs = group_state(1);
  rs.replication = replica_spec(p);

  // While the replica is down the primary writes on and purges every binlog but the current.
  ASSERT_TRUE(engine_->stop(r, milliseconds(30000)).has_value());
  for (int id = 2; id <= 4; ++id) {
    ASSERT_TRUE(app(p, "INSERT INTO t VALUES (" + std::to_string(id) + ", 'b')").ok());
    ASSERT_TRUE(root(p, "FLUSH BINARY LOGS").ok());
  }
  auto purged = root(p, "PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY; SHOW BINARY LOGS");
  ASSERT_TRUE(purged.ok()) << purged.err;
  ASSERT_NO_FATAL_FAILURE(up(r));
  ASSERT_TRUE(eventually([&] { return !health(r).replication_broken.empty(); }))
      << "binlogs left: " << purged.out << logs();
  Health h = health(r);
  EXPECT_NE(h.replication_broken.find("1236"), std::string::npos) << h.replication_broken;
  EXPECT_FALSE(h.replication_streaming);
  EXPECT_EQ(count(r), "1\t1\n");
  ASSERT_NO_FATAL_FAILURE(apply(r, rs));
  EXPECT_EQ(count(r), "4\t4\n") << "the new copy holds what the purged binlogs had";
  ASSERT_TRUE(eventually([&] { return streaming(r); })) << health(r).detail << logs();
  EXPECT_EQ(health(r).replication_broken, "");
  ASSERT_TRUE(app(p, "INSERT INTO t VALUES (5, 'c')").ok());
  EXPECT_TRUE(eventually([&] { return count(r) == "5\t5\n"; })) << count(r);

  // A row written on the replica (by its administrator: the tenant's root cannot, it lacks
  // READ ONLY ADMIN) that the primary then writes too: the replay stops.
  EXPECT_FALSE(root(r, "INSERT INTO shop.t VALUES (6, 'replica')").ok()) << "root is read-only";
  ASSERT_TRUE(local_admin(r, "INSERT INTO shop.t VALUES (6, 'replica')").ok());
  ASSERT_TRUE(app(p, "INSERT INTO t VALUES (6, 'primary')").ok());
  ASSERT_TRUE(eventually([&] { return !health(r).replication_broken.empty(); })) << logs();
  h = health(r);
  // (1950 in strict GTID mode: the replica's own write took the primary's next sequence number.)
  EXPECT_NE(h.replication_broken.find("replay stopped on error"), std::string::npos)
      << h.replication_broken;
  ASSERT_NO_FATAL_FAILURE(apply(r, rs));
  ASSERT_TRUE(eventually([&] { return streaming(r); })) << health(r).detail << logs();
  auto six = app(r, "SELECT v FROM t WHERE id = 6");
  EXPECT_EQ(six.out, "primary\n") << six.err;

  // A healthy replica's apply changes nothing: no rebuild (the root's row would be gone).
  ASSERT_TRUE(local_admin(r, "SET sql_log_bin = 0; CREATE DATABASE mark_of_this_copy").ok());
  ASSERT_NO_FATAL_FAILURE(apply(r, rs));
  EXPECT_TRUE(local_admin(r, "USE mark_of_this_copy").ok()) << "a healthy replica was rebuilt";
}

TEST_F(MariadbReplicationTest, CloneFromUnreachableUpstreamIsUnavailable) {
  const InstanceConfig r = member("lonely");
  InstanceConfig nowhere;
  nowhere.id = "nowhere";
  nowhere.address = unique_address();
  nowhere.port = free_port(nowhere.address);
  ASSERT_GT(nowhere.port, 0);
  auto st = engine_->clone_from(r, replica_spec(nowhere), nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable) << st.error().to_string();
  EXPECT_FALSE(detail::path_exists(r.dir + "/data"));
  EXPECT_FALSE(detail::path_exists(r.dir + "/clone.tmp"));

  // A replica spec without an upstream is refused before anything is tried.
  ReplicationSpec bad = replica_spec(nowhere);
  bad.upstream_address.clear();
  st = engine_->clone_from(r, bad, nullptr);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
}

TEST_F(MariadbReplicationTest, ReplicationAccountNameIsReservedForTenants) {
  const InstanceConfig p = member("res");
  ASSERT_NO_FATAL_FAILURE(up(p));
  Health h = health(p);
  EXPECT_EQ(h.role, "primary") << "a standalone instance accepts writes";
  EXPECT_FALSE(h.replication_streaming);
  EXPECT_EQ(h.replication_lag_seconds, -1);
  DesiredState s = group_state(1);
  s.users.push_back({std::string(kReplicationUser), "%", mariadb_native_verifier("x"), {}});
  auto st = engine_->apply(p, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
}

}  // namespace
}  // namespace concord::database::engine::testing

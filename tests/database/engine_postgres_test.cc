// The PostgreSQL engine on the real postgres 15 binaries: users log in over TCP with TLS using
// the real psql and the passwords whose verifiers the state carries, so convergence, verifiers,
// quoting and the process lifecycle are all checked against the engine itself.
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "database/engine/credentials.h"
#include "database/engine/engine.h"
#include "engine_test_util.h"

namespace concord::database::engine::testing {
namespace {

class PostgresEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = engine_skip_reason({"/usr/lib/postgresql/15/bin/postgres",
                                          "/usr/lib/postgresql/15/bin/initdb", "/usr/bin/psql",
                                          "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    auto e = make_postgres_engine(EngineOptions{});
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    engine_ = std::move(*e);
    config_.id = "pg-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name();
    config_.dir = tmp_.path() + "/" + config_.id;
    config_.version = "15";
    config_.address = unique_address();
    config_.port = free_port(config_.address);
    config_.vcpus = 1;
    config_.ram_mb = 256;
    ASSERT_GT(config_.port, 0);
  }
  void TearDown() override {
    if (engine_) (void)engine_->destroy(config_);
  }

  void up() {
    auto st = engine_->prepare(config_);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    st = engine_->start(config_);
    ASSERT_TRUE(st.has_value()) << st.error().to_string()
                                << detail::file_tail(config_.dir + "/engine.log", 2000);
  }

  detail::CommandResult sql(const std::string& user, const std::string& password,
                            const std::string& db, const std::string& text) {
    return psql(config_.address, config_.port, user, password, db, text);
  }

  EngineTempDir tmp_;
  std::unique_ptr<Engine> engine_;
  InstanceConfig config_;
};

TEST_F(PostgresEngineTest, ConvergesUsersDatabasesRootAndSurvivesRestarts) {
  // A folder half-made by a killed agent is redone.
  ASSERT_TRUE(detail::make_dir(config_.dir + "/data.tmp", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(config_.dir + "/data.tmp/junk", "x").has_value());
  up();

  DesiredState s1;
  s1.revision = 1;
  s1.databases = {{"shop", "", ""}, {"extra", "UTF8", ""}};
  s1.users = {{"app", "%", postgres_scram_verifier("pw-one"), {"shop"}},
              {"other", "%", postgres_scram_verifier("pw-other"), {"extra"}}};
  auto st = engine_->apply(config_, s1);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();

  auto r = sql("app", "pw-one", "shop",
               "CREATE TABLE t(id int); INSERT INTO t VALUES (42); SELECT id FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "42\n");
  r = sql("app", "wrong", "shop", "SELECT 1");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.err.find("password authentication failed"), std::string::npos) << r.err;
  // Grants are per database: app has no access to extra.
  r = sql("app", "pw-one", "extra", "SELECT 1");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  r = sql("other", "pw-other", "extra", "SELECT current_user");
  ASSERT_TRUE(r.ok()) << r.err;
  // The connection is TLS.
  r = sql("app", "pw-one", "shop", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "t\n");

  // Revision 2: other and extra gone, app's password changed; root enabled.
  DesiredState s2;
  s2.revision = 2;
  s2.databases = {{"shop", "", ""}};
  s2.users = {{"app", "%", postgres_scram_verifier("pw-two"), {"shop"}}};
  s2.root = RootSpec{postgres_scram_verifier("root-pw")};
  st = engine_->apply(config_, s2);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  r = sql("app", "pw-one", "shop", "SELECT 1");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.err.find("password authentication failed"), std::string::npos) << r.err;
  r = sql("app", "pw-two", "shop", "SELECT id FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "42\n");
  r = sql("other", "pw-other", "postgres", "SELECT 1");
  EXPECT_FALSE(r.ok());
  r = sql("root", "root-pw", "postgres",
          "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE NOT "
          "datistemplate; SELECT count(*) FROM pg_roles WHERE rolname = 'other'; "
          "SELECT rolsuper FROM pg_roles WHERE rolname = 'root'");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "postgres,shop\n0\nt\n");
  // What the tenant makes itself as root (not through the API) is never dropped by an apply.
  r = sql("root", "root-pw", "postgres", "CREATE DATABASE mine");
  ASSERT_TRUE(r.ok()) << r.err;
  r = sql("root", "root-pw", "postgres", "CREATE ROLE rootmade LOGIN");
  ASSERT_TRUE(r.ok()) << r.err;

  auto h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_TRUE(h->running);
  EXPECT_TRUE(h->healthy) << h->detail;
  EXPECT_EQ(h->applied_revision, 2);
  EXPECT_GT(h->disk_used_bytes, 1 << 20);

  // Root disabled again.
  s2.revision = 3;
  s2.root.reset();
  ASSERT_TRUE(engine_->apply(config_, s2).has_value());
  r = sql("root", "root-pw", "postgres", "SELECT 1");
  EXPECT_FALSE(r.ok());
  r = sql("app", "pw-two", "shop",
          "SELECT count(*) FROM pg_database WHERE datname = 'mine'; "
          "SELECT count(*) FROM pg_roles WHERE rolname = 'rootmade'");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1\n1\n");

  // Stop/start keeps the data.
  st = engine_->stop(config_, std::chrono::milliseconds(10000));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_FALSE(h->running);
  EXPECT_FALSE(h->healthy);
  auto bad = engine_->apply(config_, s2);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kFailedPrecondition);
  up();
  r = sql("app", "pw-two", "shop", "SELECT id FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "42\n");

  // kill -9 of the postmaster, then start again.
  auto pid_text = detail::read_file(config_.dir + "/engine.pid");
  ASSERT_TRUE(pid_text.has_value());
  pid_t pid = std::atoi(pid_text->c_str());
  ASSERT_GT(pid, 1);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(detail::wait_gone(pid, std::chrono::milliseconds(10000)));
  h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_FALSE(h->running);
  st = engine_->start(config_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  r = sql("app", "pw-two", "shop", "INSERT INTO t VALUES (43); SELECT count(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "2\n");

  // Destroy: no process, no folder; and again is fine.
  st = engine_->destroy(config_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(config_.dir));
  EXPECT_TRUE(pid_gone_for(config_.dir));
  EXPECT_TRUE(engine_->destroy(config_).has_value());
}

TEST_F(PostgresEngineTest, NamesWithQuotesAreUsedLiterally) {
  up();
  const std::string db = "we\"ird'db; DROP DATABASE postgres; --";
  const std::string user = "o'brien\"x";
  DesiredState s;
  s.revision = 5;
  s.databases = {{db, "", ""}};
  s.users = {{user, "%", postgres_scram_verifier("p'w\"1"), {db}}};
  auto st = engine_->apply(config_, s);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto r = sql(user, "p'w\"1", db,
               "CREATE TABLE q(x text); INSERT INTO q VALUES ('ok'); "
               "SELECT current_user, current_database(), x FROM q");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, user + "|" + db + "|ok\n");
  // Applying the same state again is a no-op that keeps the data.
  ASSERT_TRUE(engine_->apply(config_, s).has_value());
  r = sql(user, "p'w\"1", db, "SELECT count(*) FROM q");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1\n");
}

TEST_F(PostgresEngineTest, RefusesReservedNamesAndClearPasswords) {
  up();
  DesiredState s;
  s.revision = 1;
  s.databases = {{"postgres", "", ""}};
  auto st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  s.databases = {{"shop", "", ""}};
  s.users = {{"concord-db", "%", postgres_scram_verifier("x"), {}}};
  st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  s.users = {{"root", "%", postgres_scram_verifier("x"), {}}};
  st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  s.users = {{"app", "%", "cleartext-password", {"shop"}}};
  st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  EXPECT_NE(st.error().message().find("SCRAM"), std::string::npos);

  s.users = {{"app", "%", postgres_scram_verifier("x"), {"nosuchdb"}}};
  st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  // Nothing was applied by the refused states.
  auto h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->applied_revision, 0);
}

TEST_F(PostgresEngineTest, BadConfigIsInvalidArgument) {
  config_.id = "../escape";
  auto st = engine_->prepare(config_);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  auto root = make_postgres_engine(EngineOptions{.os_user = "root"});
  ASSERT_FALSE(root.has_value());
  EXPECT_EQ(root.error().code(), Code::kInvalidArgument);
}

TEST_F(PostgresEngineTest, NewInstancesAreCopiesOfOneTemplate) {
  up();
  const std::string tpl = tmp_.path() + "/.templates/postgresql-15-concord-db";
  ASSERT_TRUE(detail::path_exists(tpl + "/PG_VERSION"));
  // The template is the pristine initdb output: per-instance settings go to the copy only.
  auto conf = detail::read_file(tpl + "/postgresql.conf");
  ASSERT_TRUE(conf.has_value());
  EXPECT_EQ(conf->find("concord.conf"), std::string::npos);

  InstanceConfig second = config_;
  second.id = config_.id + "-2";
  second.dir = tmp_.path() + "/" + second.id;
  second.address = unique_address();
  second.port = free_port(second.address);
  // A copy interrupted by a killed agent is redone, not renamed into place.
  ASSERT_TRUE(detail::make_dir(second.dir + "/data.clone", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(second.dir + "/data.clone/junk", "x").has_value());
  auto st = engine_->prepare(second);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(detail::path_exists(second.dir + "/data.clone"));
  EXPECT_FALSE(detail::path_exists(second.dir + "/data/junk"));
  st = engine_->start(second);
  EXPECT_TRUE(st.has_value()) << st.error().to_string()
                              << detail::file_tail(second.dir + "/engine.log", 2000);
  // Both run at once from the same template, each on its own address.
  auto h1 = engine_->health(config_);
  auto h2 = engine_->health(second);
  ASSERT_TRUE(h1.has_value() && h2.has_value());
  EXPECT_TRUE(h1->healthy) << h1->detail;
  EXPECT_TRUE(h2->healthy) << h2->detail;
  EXPECT_TRUE(engine_->destroy(second).has_value());
}

// clone_from_template itself, with a stand-in build step (no engine, no root needed).
class EngineTemplate : public ::testing::Test {
 protected:
  void SetUp() override {
    const passwd* pw = ::getpwuid(::geteuid());
    ASSERT_NE(pw, nullptr);
    auto u = detail::lookup_os_user(pw->pw_name);
    ASSERT_TRUE(u.has_value()) << u.error().to_string();
    owner_ = *u;
    root_ = tmp_.path() + "/templates";
  }

  Status clone(const std::string& dest, bool spare = false) {
    return detail::clone_from_template(
        root_, "engine-1", owner_,
        [this](const std::string& data, const std::string& scratch) -> Status {
          ++builds_;
          if (fail_build_) return fail(Code::kFailedPrecondition, "initdb: stand-in failure");
          CONCORD_RETURN_IF_ERROR(detail::write_file_atomic(scratch + "/tmpfile", "t"));
          CONCORD_RETURN_IF_ERROR(detail::make_dir(data + "/base", 0700, owner_));
          std::this_thread::sleep_for(std::chrono::milliseconds(100));  // widen the race window
          return detail::write_file_atomic(data + "/base/catalog", "system tables", 0600, owner_);
        },
        dest, spare);
  }

  // Until the detached refill made the spare and exited (it holds the flock until then).
  // Bounded: a refill that never completes fails the test instead of hanging it.
  bool wait_spare() {
    const std::string spares = root_ + "/engine-1.spare";
    for (int i = 0; i < 3000 && !detail::path_exists(spares + "/data"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!detail::path_exists(spares + "/data")) return false;
    int fd = ::open((spares + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool locked = ::flock(fd, LOCK_EX) == 0;
    ::close(fd);
    return locked;
  }

  static ino_t inode(const std::string& path) {
    struct stat sb {};
    return ::stat(path.c_str(), &sb) == 0 ? sb.st_ino : 0;
  }

  EngineTempDir tmp_;
  detail::OsUser owner_;
  std::string root_;
  std::atomic<int> builds_{0};
  bool fail_build_ = false;
};

TEST_F(EngineTemplate, BuildsOnceThenCopies) {
  for (const char* name : {"a", "b"}) {
    const std::string dest = tmp_.path() + "/" + name + "/data";
    ASSERT_TRUE(detail::make_dir(tmp_.path() + "/" + name, 0700).has_value());
    auto st = clone(dest);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    auto text = detail::read_file(dest + "/base/catalog");
    ASSERT_TRUE(text.has_value());
    EXPECT_EQ(*text, "system tables");
    struct stat sb {};
    ASSERT_EQ(::stat((dest + "/base/catalog").c_str(), &sb), 0);
    EXPECT_EQ(sb.st_mode & 0777, 0600u);  // modes (and owners) survive the copy
    EXPECT_FALSE(detail::path_exists(dest + ".clone"));
  }
  EXPECT_EQ(builds_.load(), 1);
  EXPECT_TRUE(detail::path_exists(root_ + "/engine-1/base/catalog"));
  EXPECT_FALSE(detail::path_exists(root_ + "/engine-1.build"));
  // The copies are independent of the template and of each other.
  ASSERT_TRUE(
      detail::write_file_atomic(tmp_.path() + "/a/data/base/catalog", "changed").has_value());
  EXPECT_EQ(*detail::read_file(tmp_.path() + "/b/data/base/catalog"), "system tables");
  EXPECT_EQ(*detail::read_file(root_ + "/engine-1/base/catalog"), "system tables");
}

TEST_F(EngineTemplate, ConcurrentCreatorsBuildItOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      if (clone(tmp_.path() + "/data-" + std::to_string(i))) ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 4);
  EXPECT_EQ(builds_.load(), 1);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(detail::path_exists(tmp_.path() + "/data-" + std::to_string(i) + "/base/catalog"));
  }
}

TEST_F(EngineTemplate, FailedBuildLeavesNothingAndIsRetried) {
  const std::string dest = tmp_.path() + "/data";
  fail_build_ = true;
  auto st = clone(dest);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(st.error().message().find("stand-in failure"), std::string::npos);
  EXPECT_FALSE(detail::path_exists(root_ + "/engine-1"));
  EXPECT_FALSE(detail::path_exists(dest));
  fail_build_ = false;
  st = clone(dest);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(builds_.load(), 2);
  EXPECT_TRUE(detail::path_exists(dest + "/base/catalog"));
}

TEST_F(EngineTemplate, LeftoversOfAKilledAgentAreRedone) {
  // A builder killed mid-initdb, and a copier killed mid-copy.
  ASSERT_TRUE(detail::make_dir(root_ + "/engine-1.build/data", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(root_ + "/engine-1.build/data/partial", "x").has_value());
  const std::string dest = tmp_.path() + "/data";
  ASSERT_TRUE(detail::make_dir(dest + ".clone", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(dest + ".clone/junk", "x").has_value());
  auto st = clone(dest);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(builds_.load(), 1);
  EXPECT_FALSE(detail::path_exists(root_ + "/engine-1/partial"));
  EXPECT_FALSE(detail::path_exists(root_ + "/engine-1.build"));
  EXPECT_FALSE(detail::path_exists(dest + "/junk"));
  EXPECT_FALSE(detail::path_exists(dest + ".clone"));
  EXPECT_TRUE(detail::path_exists(dest + "/base/catalog"));
}

TEST_F(EngineTemplate, SpareCopyIsClaimedByRenameAndRefilled) {
  const std::string spare = root_ + "/engine-1.spare/data";
  auto st = clone(tmp_.path() + "/one", true);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  ASSERT_TRUE(wait_spare()) << detail::file_tail(root_ + "/engine-1.spare/refill.log", 2000);
  EXPECT_EQ(*detail::read_file(spare + "/base/catalog"), "system tables");
  const ino_t spare_inode = inode(spare);
  ASSERT_NE(spare_inode, 0u);

  // The next create takes the spare itself (same inode: renamed, not copied) ...
  st = clone(tmp_.path() + "/two", true);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(inode(tmp_.path() + "/two"), spare_inode);
  EXPECT_EQ(*detail::read_file(tmp_.path() + "/two/base/catalog"), "system tables");
  // ... and a new spare is made for the one after.
  ASSERT_TRUE(wait_spare()) << detail::file_tail(root_ + "/engine-1.spare/refill.log", 2000);
  EXPECT_NE(inode(spare), spare_inode);
  EXPECT_FALSE(detail::path_exists(root_ + "/engine-1.spare/tmp"));
  EXPECT_EQ(builds_.load(), 1);

  // A refill killed half-way leaves tmp behind: the next refill replaces it.
  ASSERT_TRUE(detail::remove_tree(spare).has_value());
  ASSERT_TRUE(detail::make_dir(root_ + "/engine-1.spare/tmp/base", 0700).has_value());
  ASSERT_TRUE(
      detail::write_file_atomic(root_ + "/engine-1.spare/tmp/base/partial", "x").has_value());
  st = clone(tmp_.path() + "/three", true);  // no spare: copies, then refills
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(detail::path_exists(tmp_.path() + "/three/base/catalog"));
  ASSERT_TRUE(wait_spare()) << detail::file_tail(root_ + "/engine-1.spare/refill.log", 2000);
  EXPECT_FALSE(detail::path_exists(spare + "/base/partial"));
  EXPECT_TRUE(detail::path_exists(spare + "/base/catalog"));
}

}  // namespace
}  // namespace concord::database::engine::testing

// The PostgreSQL engine on the real postgres 15 binaries: users log in over TCP with TLS using
// the real psql and the passwords whose verifiers the state carries, so convergence, verifiers,
// quoting and the process lifecycle are all checked against the engine itself.
#include <signal.h>

#include <filesystem>

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

}  // namespace
}  // namespace concord::database::engine::testing

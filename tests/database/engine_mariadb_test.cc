// The MariaDB engine on the real mariadbd 10.11: users log in over TCP with TLS using the real
// mariadb client and the passwords whose verifiers the state carries.
#include <signal.h>

#include <filesystem>

#include "database/engine/credentials.h"
#include "database/engine/engine.h"
#include "engine_test_util.h"

namespace concord::database::engine::testing {
namespace {

class MariadbEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = engine_skip_reason({"/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db",
                                          "/usr/bin/mariadb", "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    auto e = make_mariadb_engine(EngineOptions{});
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    engine_ = std::move(*e);
    config_.id = "my-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name();
    config_.dir = tmp_.path() + "/" + config_.id;
    config_.version = "10.11";
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
    return mariadb_cli(config_.address, config_.port, user, password, db, text);
  }

  EngineTempDir tmp_;
  std::unique_ptr<Engine> engine_;
  InstanceConfig config_;
};

TEST_F(MariadbEngineTest, ConvergesUsersDatabasesRootAndSurvivesRestarts) {
  ASSERT_TRUE(detail::make_dir(config_.dir + "/data.tmp", 0700).has_value());
  ASSERT_TRUE(detail::write_file_atomic(config_.dir + "/data.tmp/junk", "x").has_value());
  up();

  DesiredState s1;
  s1.revision = 1;
  s1.databases = {{"shop", "utf8mb4", "utf8mb4_unicode_ci"},
                  {"extra", "", ""},
                  {"a_b", "", ""},
                  {"aXb", "", ""}};
  s1.users = {{"app", "%", mariadb_native_verifier("pw-one"), {"shop", "a_b"}},
              {"other", "%", mariadb_native_verifier("pw-other"), {"extra"}}};
  auto st = engine_->apply(config_, s1);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();

  auto r = sql("app", "pw-one", "shop",
               "CREATE TABLE t(id int); INSERT INTO t VALUES (42); SELECT id FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "42\n");
  r = sql("app", "pw-one", "shop", "SELECT @@collation_database");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "utf8mb4_unicode_ci\n");
  r = sql("app", "wrong", "shop", "SELECT 1");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.err.find("Access denied"), std::string::npos) << r.err;
  // Grants are per database, and `_` in a granted name is not a wildcard.
  r = sql("app", "pw-one", "extra", "SELECT 1");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(sql("app", "pw-one", "a_b", "CREATE TABLE x(i int)").ok());
  r = sql("app", "pw-one", "aXb", "SELECT 1");
  EXPECT_FALSE(r.ok()) << "a_b's grant reached aXb";
  EXPECT_TRUE(sql("other", "pw-other", "extra", "SELECT 1").ok());
  // TLS.
  r = sql("app", "pw-one", "shop", "SHOW STATUS LIKE 'Ssl_cipher'");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_TRUE(r.out.starts_with("Ssl_cipher\t") && r.out.size() > 12) << r.out;

  DesiredState s2;
  s2.revision = 2;
  s2.databases = {{"shop", "", ""}};
  s2.users = {{"app", "%", mariadb_native_verifier("pw-two"), {"shop"}}};
  s2.root = RootSpec{mariadb_native_verifier("root-pw")};
  st = engine_->apply(config_, s2);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  r = sql("app", "pw-one", "shop", "SELECT 1");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.err.find("Access denied"), std::string::npos) << r.err;
  r = sql("app", "pw-two", "shop", "SELECT id FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "42\n");
  EXPECT_FALSE(sql("other", "pw-other", "", "SELECT 1").ok());
  r = sql("root", "root-pw", "",
          "SELECT GROUP_CONCAT(schema_name ORDER BY schema_name) FROM information_schema.schemata "
          "WHERE schema_name NOT IN ('mysql','information_schema','performance_schema','sys'); "
          "SELECT COUNT(*) FROM mysql.user WHERE user = 'other'; "
          "SELECT COUNT(*) FROM mysql.user WHERE user = 'root' AND host = 'localhost'");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "shop\n0\n1\n");
  // What the tenant makes itself as root (not through the API) is never dropped by an apply.
  r = sql("root", "root-pw", "",
          "CREATE DATABASE mine; CREATE USER 'rootmade'@'%' IDENTIFIED BY 'made-pw'; "
          "GRANT ALL ON mine.* TO 'rootmade'@'%'");
  ASSERT_TRUE(r.ok()) << r.err;

  auto h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_TRUE(h->running);
  EXPECT_TRUE(h->healthy) << h->detail;
  EXPECT_EQ(h->applied_revision, 2);
  EXPECT_GT(h->disk_used_bytes, 1 << 20);

  s2.revision = 3;
  s2.root.reset();
  ASSERT_TRUE(engine_->apply(config_, s2).has_value());
  EXPECT_FALSE(sql("root", "root-pw", "", "SELECT 1").ok());
  r = sql("rootmade", "made-pw", "mine", "SELECT DATABASE()");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "mine\n");
  // The local administrative root still works (the engine is still administrable).
  h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_TRUE(h->healthy) << h->detail;

  st = engine_->stop(config_, std::chrono::milliseconds(20000));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_FALSE(h->running);
  auto bad = engine_->apply(config_, s2);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kFailedPrecondition);
  up();
  r = sql("app", "pw-two", "shop", "SELECT id FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "42\n");

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
  r = sql("app", "pw-two", "shop", "INSERT INTO t VALUES (43); SELECT COUNT(*) FROM t");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "2\n");

  st = engine_->destroy(config_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(config_.dir));
  EXPECT_TRUE(pid_gone_for(config_.dir));
  EXPECT_TRUE(engine_->destroy(config_).has_value());
}

// A restore's replay server, a seed's and a clone's load server run as the agent's children in
// staging folders; an agent killed meanwhile leaves them running. Deleting the instance kills
// them (stand-ins here: processes whose command line names the staging data folder, as a
// private server's does, with the pid files the servers leave).
TEST_F(MariadbEngineTest, DestroyKillsThePrivateServersAKilledAgentLeft) {
  namespace fs = std::filesystem;
  fs::create_directories(config_.dir);
  const pid_t replay = leave_private_server(config_.dir + "/restore.tmp", "replay");
  const pid_t seed_load = leave_private_server(config_.dir + "/restore.tmp", "load");
  const pid_t clone_load = leave_private_server(config_.dir + "/clone.tmp", "load");
  for (pid_t pid : {replay, seed_load, clone_load}) {
    ASSERT_GT(pid, 1);
    ASSERT_EQ(::kill(pid, 0), 0) << pid;
  }
  auto st = engine_->destroy(config_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  for (pid_t pid : {replay, seed_load, clone_load}) {
    EXPECT_TRUE(detail::wait_gone(pid, std::chrono::milliseconds(10000))) << pid;
    (void)::kill(pid, SIGKILL);  // a failed check leaves no stand-in behind
  }
  EXPECT_FALSE(fs::exists(config_.dir));
}

TEST_F(MariadbEngineTest, NamesWithBackticksAndQuotesAreUsedLiterally) {
  up();
  const std::string db = "we`ird'db\"; DROP DATABASE mysql; --";
  const std::string user = "o'b`r\\x";
  DesiredState s;
  s.revision = 5;
  s.databases = {{db, "", ""}};
  s.users = {{user, "%", mariadb_native_verifier("p'w`1"), {db}}};
  auto st = engine_->apply(config_, s);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto r = sql(user, "p'w`1", db,
               "CREATE TABLE q(x text); INSERT INTO q VALUES ('ok'); "
               "SELECT HEX(CURRENT_USER()), HEX(DATABASE()), x FROM q");
  ASSERT_TRUE(r.ok()) << r.err;
  auto hex = [](const std::string& s) {
    static const char* digits = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
      out += digits[c >> 4];
      out += digits[c & 15];
    }
    return out;
  };
  EXPECT_EQ(r.out, hex(user + "@%") + "\t" + hex(db) + "\tok\n");
  ASSERT_TRUE(engine_->apply(config_, s).has_value());
  r = sql(user, "p'w`1", db, "SELECT COUNT(*) FROM q");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "1\n");
}

TEST_F(MariadbEngineTest, RefusesReservedNamesAndClearPasswords) {
  up();
  DesiredState s;
  s.revision = 1;
  s.databases = {{"mysql", "", ""}};
  auto st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  s.databases = {{"shop", "", ""}};
  s.users = {{"root", "%", mariadb_native_verifier("x"), {}}};
  st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  s.users = {{"app", "%", "cleartext", {"shop"}}};
  st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  EXPECT_NE(st.error().message().find("mysql_native_password"), std::string::npos);

  // An engine-side refusal (unknown character set) is the request's fault too.
  s.users.clear();
  s.databases = {{"shop", "no-such-charset", ""}};
  st = engine_->apply(config_, s);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
  auto h = engine_->health(config_);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->applied_revision, 0);
}

TEST_F(MariadbEngineTest, InstancesFromOneTemplateHaveTheirOwnSystemTables) {
  up();
  const std::string tpl = tmp_.path() + "/.templates/mariadb-10.11-concord-db";
  ASSERT_TRUE(detail::path_exists(tpl + "/mysql"));
  InstanceConfig second = config_;
  second.id = config_.id + "-2";
  second.dir = tmp_.path() + "/" + second.id;
  second.address = unique_address();
  second.port = free_port(second.address);
  auto st = engine_->prepare(second);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  st = engine_->start(second);
  ASSERT_TRUE(st.has_value()) << st.error().to_string()
                              << detail::file_tail(second.dir + "/engine.log", 2000);

  DesiredState one;
  one.revision = 1;
  one.databases = {{"shop", "", ""}};
  one.users = {{"app", "%", mariadb_native_verifier("pw-one"), {"shop"}}};
  st = engine_->apply(config_, one);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  DesiredState two = one;
  two.users = {{"app", "%", mariadb_native_verifier("pw-two"), {"shop"}}};
  st = engine_->apply(second, two);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();

  // Each copy's mysql.global_priv is its own: a password set on one is not the other's.
  EXPECT_TRUE(sql("app", "pw-one", "shop", "SELECT 1").ok());
  auto r = mariadb_cli(second.address, second.port, "app", "pw-one", "shop", "SELECT 1");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.err.find("Access denied"), std::string::npos) << r.err;
  r = mariadb_cli(second.address, second.port, "app", "pw-two", "shop", "SELECT 1");
  EXPECT_TRUE(r.ok()) << r.err;
  // The template itself never gets an instance's users.
  EXPECT_FALSE(detail::path_exists(tpl + "/shop"));
  EXPECT_TRUE(engine_->destroy(second).has_value());
}

}  // namespace
}  // namespace concord::database::engine::testing

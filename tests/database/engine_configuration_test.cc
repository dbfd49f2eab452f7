// Configuration-group parameters: the catalog's checks (no engine needed), and their effect on
// the real PostgreSQL 15 and MariaDB 10.11 engines: a dynamic value is live as soon as apply
// returns, a restart-required one only after a restart (reported pending until then), a removed
// one goes back to its default, and a bad value is refused before it reaches any file.
#include <fstream>
#include <sstream>

#include "database/engine/credentials.h"
#include "database/engine/engine.h"
#include "database/engine/parameters.h"
#include "engine_test_util.h"

namespace concord::database::engine::testing {
namespace {

// ---- the catalog ----

TEST(ParameterCatalog, BothEnginesHaveTheirListsWithRestartFlags) {
  const ParameterSpec* p = find_parameter("postgresql", "15", "max_connections");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->restart_required);
  p = find_parameter("postgresql", "15", "work_mem");
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(p->restart_required);
  EXPECT_EQ(p->unit, "kB");
  p = find_parameter("mariadb", "10.11", "innodb_log_file_size");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->restart_required);
  EXPECT_EQ(find_parameter("postgresql", "15", "listen_addresses"), nullptr);
  EXPECT_EQ(find_parameter("postgresql", "15", "port"), nullptr);
  EXPECT_EQ(find_parameter("mariadb", "10.11", "bind_address"), nullptr);
  EXPECT_TRUE(parameter_catalog("partner-engine", "1").empty());
}

TEST(ParameterCatalog, NormalizesValuesOfEachType) {
  const ParameterSpec* work_mem = find_parameter("postgresql", "15", "work_mem");
  const ParameterSpec* cost = find_parameter("postgresql", "15", "random_page_cost");
  const ParameterSpec* jit = find_parameter("postgresql", "15", "jit");
  const ParameterSpec* iso = find_parameter("postgresql", "15", "default_transaction_isolation");
  const ParameterSpec* mode = find_parameter("mariadb", "10.11", "sql_mode");
  ASSERT_TRUE(work_mem && cost && jit && iso && mode);
  EXPECT_EQ(*normalize_parameter(*work_mem, "+8192"), "8192");
  EXPECT_EQ(*normalize_parameter(*cost, "1.10"), "1.1");
  EXPECT_EQ(*normalize_parameter(*jit, "TRUE"), "on");
  EXPECT_EQ(*normalize_parameter(*jit, "0"), "off");
  EXPECT_EQ(*normalize_parameter(*iso, "READ COMMITTED"), "read committed");
  EXPECT_EQ(*normalize_parameter(*mode, "strict_trans_tables, NO_ZERO_DATE,STRICT_TRANS_TABLES"),
            "STRICT_TRANS_TABLES,NO_ZERO_DATE");
  EXPECT_EQ(*normalize_parameter(*mode, ""), "");
}

TEST(ParameterCatalog, RefusesBadValuesNamingTheParameter) {
  const ParameterSpec* work_mem = find_parameter("postgresql", "15", "work_mem");
  const ParameterSpec* cost = find_parameter("postgresql", "15", "random_page_cost");
  const ParameterSpec* iso = find_parameter("postgresql", "15", "default_transaction_isolation");
  const ParameterSpec* mode = find_parameter("mariadb", "10.11", "sql_mode");
  ASSERT_TRUE(work_mem && cost && iso && mode);
  for (std::string_view bad : {"", "12", "8MB", "1.5", "99999999999999", "8192\n", "0x10"}) {
    auto r = normalize_parameter(*work_mem, bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_NE(r.error().message().find("'work_mem'"), std::string::npos) << r.error().message();
  }
  for (std::string_view bad : {"nan", "inf", "-1", "1e7", "1,5"}) {
    auto r = normalize_parameter(*cost, bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
  // Quotes and line breaks never pass a string parameter.
  for (std::string_view bad : {"read committed'\nshared_preload_libraries='x", "snapshot"}) {
    auto r = normalize_parameter(*iso, bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
  // Flags that would change how Concord's own SQL parses are not on the list.
  auto r = normalize_parameter(*mode, "NO_BACKSLASH_ESCAPES");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(ParameterCatalog, ValidateWantsKnownNamesInNormalForm) {
  EXPECT_TRUE(validate_parameters("postgresql", "15", {{"work_mem", "8192"}}).has_value());
  auto r = validate_parameters("postgresql", "15", {{"work_mem", "+8192"}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  r = validate_parameters("postgresql", "15", {{"archive_command", "rm -rf /"}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().message().find("'archive_command'"), std::string::npos);
}

TEST(ParameterCatalog, BufferCacheMustFitTheInstancesMemory) {
  // 512 MB: at most 384 MB, i.e. 49152 pages of 8 kB / 402653184 bytes.
  EXPECT_TRUE(check_parameters_fit("postgresql", {{"shared_buffers", "49152"}}, 512).has_value());
  auto r = check_parameters_fit("postgresql", {{"shared_buffers", "49153"}}, 512);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().message().find("'shared_buffers'"), std::string::npos);
  EXPECT_TRUE(
      check_parameters_fit("mariadb", {{"innodb_buffer_pool_size", "402653184"}}, 512).has_value());
  r = check_parameters_fit("mariadb", {{"innodb_buffer_pool_size", "402653185"}}, 512);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(check_parameters_fit("postgresql", {{"work_mem", "2097151"}}, 512).has_value());
}

TEST(ParameterCatalog, DefaultsFollowTheFlavorAndTheVolumeAndAreValidValues) {
  // 512 MB and 1 GB: a quarter of the memory for the buffer cache, an eighth of the volume of
  // WAL (at least 64 MB) and a sixteenth of it per binlog file.
  auto pg = default_parameters("postgresql", 512, 1);
  EXPECT_EQ(pg, (std::map<std::string, std::string>{{"max_connections", "100"},
                                                    {"shared_buffers", "16384"},
                                                    {"max_wal_size", "128"},
                                                    {"min_wal_size", "64"}}));
  EXPECT_TRUE(validate_parameters("postgresql", "15", pg).has_value());
  EXPECT_TRUE(check_parameters_fit("postgresql", pg, 512).has_value());
  auto maria = default_parameters("mariadb", 512, 1);
  EXPECT_EQ(maria.at("innodb_buffer_pool_size"), "134217728");
  EXPECT_EQ(maria.at("max_binlog_size"), "67108864");
  EXPECT_EQ(maria.at("character_set_server"), "utf8mb4");
  maria.erase("max_binlog_size");  // Concord's own, not a tenant's to set
  maria.erase("collation_server");
  EXPECT_TRUE(validate_parameters("mariadb", "10.11", maria).has_value());
  // Floors and caps: tiny memory, a large volume.
  EXPECT_EQ(default_parameters("postgresql", 32, 100).at("shared_buffers"), "2048");  // 16 MB
  EXPECT_EQ(default_parameters("postgresql", 32, 100).at("max_wal_size"), "1024");
  EXPECT_EQ(default_parameters("mariadb", 64, 100).at("innodb_buffer_pool_size"), "33554432");
  EXPECT_TRUE(default_parameters("sqlite", 512, 1).empty());
}

// ---- the engines ----

class ConfigurationEngineTest : public ::testing::Test {
 protected:
  void set_up(bool postgres) {
    postgres_ = postgres;
    std::string why = postgres
                          ? engine_skip_reason({"/usr/lib/postgresql/15/bin/postgres",
                                                "/usr/lib/postgresql/15/bin/initdb",
                                                "/usr/bin/psql", "/usr/bin/openssl"})
                          : engine_skip_reason({"/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db",
                                                "/usr/bin/mariadb", "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    auto e =
        postgres ? make_postgres_engine(EngineOptions{}) : make_mariadb_engine(EngineOptions{});
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    engine_ = std::move(*e);
    config_.id = std::string(postgres ? "pgcfg-" : "mdbcfg-") + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name();
    config_.dir = tmp_.path() + "/" + config_.id;
    config_.version = postgres ? "15" : "10.11";
    config_.address = unique_address();
    config_.port = free_port(config_.address);
    config_.ram_mb = 512;
    ASSERT_GT(config_.port, 0);
    auto st = engine_->prepare(config_);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    st = engine_->start(config_);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }
  void TearDown() override {
    if (engine_) (void)engine_->destroy(config_);
  }

  DesiredState state(int64_t revision, std::map<std::string, std::string> params) {
    DesiredState s;
    s.revision = revision;
    s.root = RootSpec{postgres_ ? postgres_scram_verifier("root-pw")
                                : mariadb_native_verifier("root-pw")};
    s.parameters = std::move(params);
    return s;
  }

  void apply(const DesiredState& s) {
    auto st = engine_->apply(config_, s);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }

  // The live value as a fresh session sees it.
  std::string live(const std::string& name) {
    auto r = postgres_ ? psql(config_.address, config_.port, "root", "root-pw", "postgres",
                              "SHOW " + name)
                       : mariadb_cli(config_.address, config_.port, "root", "root-pw", "",
                                     "SELECT @@GLOBAL." + name);
    EXPECT_TRUE(r.ok()) << r.err;
    std::string out = r.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  bool restart_pending() {
    auto h = engine_->health(config_);
    EXPECT_TRUE(h.has_value());
    return h && h->restart_required;
  }

  void restart() {
    auto st = engine_->stop(config_, std::chrono::milliseconds(20000));
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    st = engine_->start(config_);
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }

  bool postgres_ = true;
  EngineTempDir tmp_;
  std::unique_ptr<Engine> engine_;
  InstanceConfig config_;
};

TEST_F(ConfigurationEngineTest, PostgresDynamicAtOnceRestartOnlyAfterRestart) {
  set_up(true);
  if (IsSkipped()) return;
  apply(state(1, {}));
  ASSERT_EQ(live("work_mem"), "4MB");
  ASSERT_EQ(live("max_connections"), "100");

  apply(state(2, {{"work_mem", "8192"}, {"max_connections", "150"}, {"jit", "off"}}));
  EXPECT_EQ(live("work_mem"), "8MB");  // dynamic: live when apply returns
  EXPECT_EQ(live("jit"), "off");
  EXPECT_EQ(live("max_connections"), "100");  // needs a restart
  EXPECT_TRUE(restart_pending());

  restart();
  EXPECT_EQ(live("max_connections"), "150");
  EXPECT_EQ(live("work_mem"), "8MB");
  EXPECT_FALSE(restart_pending());

  // Removed: back to the defaults (work_mem at once; max_connections to Concord's 100 after the
  // next restart).
  apply(state(3, {}));
  EXPECT_EQ(live("work_mem"), "4MB");
  EXPECT_EQ(live("jit"), "on");
  EXPECT_TRUE(restart_pending());
  restart();
  EXPECT_EQ(live("max_connections"), "100");
  EXPECT_FALSE(restart_pending());
}

TEST_F(ConfigurationEngineTest, PostgresRefusesBadValuesBeforeWritingAnything) {
  set_up(true);
  if (IsSkipped()) return;
  apply(state(1, {{"work_mem", "8192"}}));
  const std::string file = config_.dir + "/data/concord_params.conf";
  auto before = detail::read_file(file);
  ASSERT_TRUE(before.has_value());
  for (auto params : std::vector<std::map<std::string, std::string>>{
           {{"work_mem", "8192'\nshared_preload_libraries = 'evil"}},
           {{"work_mem", "1"}},
           {{"listen_addresses", "*"}},
           {{"default_transaction_isolation", "read committed'"}}}) {
    auto st = engine_->apply(config_, state(2, params));
    ASSERT_FALSE(st.has_value());
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
  }
  EXPECT_EQ(detail::read_file(file).value_or(""), *before);
  EXPECT_EQ(live("work_mem"), "8MB");
  EXPECT_EQ(detail::read_applied_revision(config_.dir), 1);
}

TEST_F(ConfigurationEngineTest, PostgresNewInstanceStartsWithRestartValuesLive) {
  set_up(true);
  if (IsSkipped()) return;
  // The first apply of a new instance restarts it once instead of leaving a pending restart.
  apply(state(1, {{"max_connections", "120"}, {"shared_buffers", "2048"}}));
  EXPECT_EQ(live("max_connections"), "120");
  EXPECT_EQ(live("shared_buffers"), "16MB");
  EXPECT_FALSE(restart_pending());
}

TEST_F(ConfigurationEngineTest, MariadbDynamicAtOnceRestartOnlyAfterRestart) {
  set_up(false);
  if (IsSkipped()) return;
  apply(state(1, {}));
  const std::string log_size = live("innodb_log_file_size");
  ASSERT_EQ(live("wait_timeout"), "28800");

  apply(state(2, {{"wait_timeout", "600"},
                  {"slow_query_log", "on"},
                  {"long_query_time", "0.5"},
                  {"sql_mode", "STRICT_ALL_TABLES"},
                  {"character_set_server", "latin1"},
                  {"innodb_log_file_size", "16777216"}}));
  EXPECT_EQ(live("wait_timeout"), "600");
  EXPECT_EQ(live("slow_query_log"), "1");
  EXPECT_EQ(live("long_query_time"), "0.500000");
  EXPECT_EQ(live("sql_mode"), "STRICT_ALL_TABLES");
  EXPECT_EQ(live("character_set_server"), "latin1");
  EXPECT_EQ(live("innodb_log_file_size"), log_size);  // needs a restart
  EXPECT_TRUE(restart_pending());

  restart();
  EXPECT_EQ(live("innodb_log_file_size"), "16777216");
  EXPECT_EQ(live("wait_timeout"), "600");
  EXPECT_EQ(live("character_set_server"), "latin1");
  EXPECT_EQ(live("collation_server"), "latin1_swedish_ci");
  EXPECT_FALSE(restart_pending());

  // Removed: back to my.cnf's values or the defaults, at once for the dynamic ones.
  apply(state(3, {{"max_connections", "300"}}));
  EXPECT_EQ(live("wait_timeout"), "28800");
  EXPECT_EQ(live("slow_query_log"), "0");
  EXPECT_EQ(live("character_set_server"), "utf8mb4");
  EXPECT_EQ(live("max_connections"), "300");
  EXPECT_TRUE(restart_pending());  // innodb_log_file_size goes back at the next start
  apply(state(4, {}));
  EXPECT_EQ(live("max_connections"), "100");
  restart();
  EXPECT_EQ(live("innodb_log_file_size"), log_size);
  EXPECT_FALSE(restart_pending());
}

TEST_F(ConfigurationEngineTest, MariadbRefusesBadValuesBeforeWritingAnything) {
  set_up(false);
  if (IsSkipped()) return;
  apply(state(1, {{"wait_timeout", "600"}}));
  const std::string file = config_.dir + "/concord_params.cnf";
  auto before = detail::read_file(file);
  ASSERT_TRUE(before.has_value());
  for (auto params : std::vector<std::map<std::string, std::string>>{
           {{"wait_timeout", "600\n[client]\nuser=root"}},
           {{"wait_timeout", "0"}},
           {{"sql_mode", "NO_BACKSLASH_ESCAPES"}},
           {{"datadir", "/tmp"}}}) {
    auto st = engine_->apply(config_, state(2, params));
    ASSERT_FALSE(st.has_value());
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << st.error().to_string();
  }
  EXPECT_EQ(detail::read_file(file).value_or(""), *before);
  EXPECT_EQ(live("wait_timeout"), "600");
}

}  // namespace
}  // namespace concord::database::engine::testing

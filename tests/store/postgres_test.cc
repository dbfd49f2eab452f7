// PostgreSQL-only behaviour: placeholder rewriting, lost connections, deadlock retries,
// schema changes under cached statements, and opening errors.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <thread>

#include "postgres_server.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "store_test_util.h"

namespace concord::store {
namespace {

using test_support::PostgresServer;
using namespace std::chrono_literals;

TEST(PlaceholderRewriteTest, RewritesOnlyOutsideQuotesAndComments) {
  struct Case {
    std::string in;
    std::string out;
    int params;
  };
  const std::vector<Case> cases = {
      {"SELECT ?, ?", "SELECT $1, $2", 2},
      {"WHERE a<>? AND b=?", "WHERE a<>$1 AND b=$2", 2},
      {"SELECT '?', 'it''s ?', ?", "SELECT '?', 'it''s ?', $1", 1},
      {"SELECT \"a?\"\"b\" FROM t WHERE x = ?", "SELECT \"a?\"\"b\" FROM t WHERE x = $1", 1},
      {"SELECT ? -- what?\n, ?", "SELECT $1 -- what?\n, $2", 2},
      {"SELECT /* ? /* nested ? */ still ? */ ?", "SELECT /* ? /* nested ? */ still ? */ $1", 1},
      {"SELECT 1 -- ?", "SELECT 1 -- ?", 0},
      {"SELECT 'unterminated ?", "SELECT 'unterminated ?", 0},
      {"", "", 0},
  };
  for (const Case& c : cases) {
    internal::RewrittenSql r = internal::rewrite_placeholders(c.in);
    EXPECT_EQ(r.sql, c.out) << c.in;
    EXPECT_EQ(r.params, c.params) << c.in;
  }
  // Ten and more placeholders get two-digit numbers.
  internal::RewrittenSql many = internal::rewrite_placeholders("?,?,?,?,?,?,?,?,?,?,?");
  EXPECT_EQ(many.sql, "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11");
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = PostgresServer::shared();
    ASSERT_TRUE(server.has_value())
        << "PostgreSQL tests need a real PostgreSQL 15 and none could be started: "
        << server.error().to_string();
    server_ = *server;
    auto db = server_->create_database();
    ASSERT_TRUE(db.has_value()) << db.error().to_string();
    db_ = *db;
  }
  void TearDown() override {
    if (server_ != nullptr && !db_.name.empty()) EXPECT_OK(server_->drop_database(db_.name));
  }

  Result<std::unique_ptr<Store>> open(int connections = 4) {
    PostgresOptions o;
    o.conninfo = db_.conninfo;
    o.connections = connections;
    return open_postgres(o);
  }

  PostgresServer* server_ = nullptr;
  PostgresServer::Database db_;
};

Status exec(Store& store, std::string_view sql, std::vector<Value> params = {}) {
  return store.write([&](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.exec(sql, params));
    return ok();
  });
}

Result<Rows> query(Store& store, std::string_view sql, std::vector<Value> params = {}) {
  Rows rows;
  Status st = store.read([&](Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(rows, tx.query(sql, params));
    return ok();
  });
  if (!st) return fail(st.error());
  return rows;
}

TEST_F(PostgresStoreTest, OpenReportsBadAndUnreachableServers) {
  PostgresOptions bad;
  bad.conninfo = "nonsense";
  EXPECT_CODE(open_postgres(bad), Code::kInvalidArgument);
  PostgresOptions unreachable;
  unreachable.conninfo = "host=/nonexistent-concord-socket-dir port=1 dbname=x connect_timeout=2";
  EXPECT_CODE(open_postgres(unreachable), Code::kUnavailable);
  PostgresOptions no_connections;
  no_connections.conninfo = db_.conninfo;
  no_connections.connections = 0;
  EXPECT_CODE(open_postgres(no_connections), Code::kInvalidArgument);
}

// The server drops every connection of the store (as on a failover or a restart of
// PostgreSQL): the next calls reconnect and succeed, and the change listener comes back.
TEST_F(PostgresStoreTest, LostConnectionsAreReplaced) {
  auto store = open(/*connections=*/2);
  ASSERT_OK(store);
  auto admin = open(/*connections=*/1);
  ASSERT_OK(admin);
  std::vector<Migration> schema = {{"test", 1, "t", "CREATE TABLE t (id TEXT PRIMARY KEY)"}};
  ASSERT_OK((*store)->migrate(schema));
  ASSERT_OK(exec(**store, "INSERT INTO t (id) VALUES (?)", {"before"}));
  ASSERT_OK(query(**store, "SELECT COUNT(*) FROM t"));

  // Kill every other backend of this database (the store's pool and both listeners), and
  // wait until they are gone, so the store meets dead connections rather than dying ones.
  // (In the select list, not in WHERE: the planner may evaluate WHERE terms in any order,
  // and must not terminate its own backend.)
  auto killed = query(**admin,
                      "SELECT COUNT(pg_terminate_backend(pid, 30000)) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()");
  ASSERT_OK(killed);
  EXPECT_GE(killed->at(0).integer(0), 1);

  EXPECT_OK(exec(**store, "INSERT INTO t (id) VALUES (?)", {"after"}));
  auto rows = query(**store, "SELECT COUNT(*) FROM t");
  ASSERT_OK(rows);
  EXPECT_EQ(rows->at(0).integer(0), 2);

  // Changes committed through another store still wake a waiter on this one.
  auto before = (*store)->last_change_seq();
  ASSERT_OK(before);
  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    EXPECT_OK((*admin)->write([](Tx& tx) {
      Change c;
      c.kind = "test.t";
      c.id = "x";
      c.op = "create";
      return tx.record_change(c);
    }));
  });
  auto woke = (*store)->wait_for_changes(*before, 60s);
  writer.join();
  ASSERT_OK(woke);
  EXPECT_EQ(*woke, *before + 1);
}

// Two transactions lock two rows in opposite orders; PostgreSQL aborts one with a deadlock
// error (40P01) and write() runs its function again, so both succeed.
TEST_F(PostgresStoreTest, DeadlockVictimIsRetried) {
  auto store = open();
  ASSERT_OK(store);
  std::vector<Migration> schema = {{"test", 1, "t",
                                    "CREATE TABLE t (id TEXT PRIMARY KEY, v BIGINT NOT NULL);"
                                    "INSERT INTO t VALUES ('a', 0), ('b', 0)"}};
  ASSERT_OK((*store)->migrate(schema));
  std::latch both_hold_first_lock(2);
  std::atomic<int> runs{0};
  auto tx = [&](std::string first, std::string second) {
    bool first_attempt = true;
    return (*store)->write([&](Tx& t) -> Status {
      ++runs;
      CONCORD_RETURN_IF_ERROR(t.exec("UPDATE t SET v = v + 1 WHERE id = ?", {first}));
      if (first_attempt) {
        first_attempt = false;
        both_hold_first_lock.arrive_and_wait();
      }
      CONCORD_RETURN_IF_ERROR(t.exec("UPDATE t SET v = v + 1 WHERE id = ?", {second}));
      return ok();
    });
  };
  Status s1 = ok();
  Status s2 = ok();
  std::thread t1([&] { s1 = tx("a", "b"); });
  std::thread t2([&] { s2 = tx("b", "a"); });
  t1.join();
  t2.join();
  EXPECT_OK(s1);
  EXPECT_OK(s2);
  // The victim ran again (more than once if its rerun, unsynchronised, grabbed its first row
  // before the survivor woke up and deadlocked a second time).
  EXPECT_GE(runs.load(), 3);
  auto rows = query(**store, "SELECT v FROM t ORDER BY id");
  ASSERT_OK(rows);
  EXPECT_EQ(rows->at(0).integer(0), 2);
  EXPECT_EQ(rows->at(1).integer(0), 2);
}

// Another process alters a table under a statement this store has prepared; PostgreSQL
// refuses the stale plan ("cached plan must not change result type") and the store
// re-prepares and runs the read again.
TEST_F(PostgresStoreTest, SchemaChangeByAnotherProcessInvalidatesCachedStatements) {
  auto store = open(/*connections=*/1);
  ASSERT_OK(store);
  auto other = open(/*connections=*/1);
  ASSERT_OK(other);
  std::vector<Migration> v1 = {{"test", 1, "t",
                                "CREATE TABLE t (id TEXT PRIMARY KEY);"
                                "INSERT INTO t VALUES ('a')"}};
  ASSERT_OK((*store)->migrate(v1));
  auto rows = query(**store, "SELECT * FROM t");
  ASSERT_OK(rows);
  EXPECT_EQ(rows->at(0).size(), 1u);
  std::vector<Migration> v2 = v1;
  v2.push_back({"test", 2, "y", "ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'why'"});
  ASSERT_OK((*other)->migrate(v2));
  rows = query(**store, "SELECT * FROM t");
  ASSERT_OK(rows);
  ASSERT_EQ(rows->at(0).size(), 2u);
  EXPECT_EQ(rows->at(0).text(1), "why");
}

TEST_F(PostgresStoreTest, NumericAndTextColumnsConvertByType) {
  auto store = open();
  ASSERT_OK(store);
  auto rows = query(**store,
                    "SELECT CAST(7 AS SMALLINT), CAST(8 AS INTEGER), CAST(2.5 AS REAL),"
                    " CAST(1.25 AS NUMERIC), TRUE, FALSE, CAST('12' AS TEXT), NULL");
  ASSERT_OK(rows);
  const Row& r = rows->at(0);
  EXPECT_EQ(std::get<int64_t>(r.value(0)), 7);
  EXPECT_EQ(std::get<int64_t>(r.value(1)), 8);
  EXPECT_EQ(std::get<double>(r.value(2)), 2.5);
  EXPECT_EQ(std::get<double>(r.value(3)), 1.25);
  EXPECT_EQ(std::get<int64_t>(r.value(4)), 1);
  EXPECT_EQ(std::get<int64_t>(r.value(5)), 0);
  EXPECT_EQ(std::get<std::string>(r.value(6)), "12");  // text stays text
  EXPECT_TRUE(r.is_null(7));
}

}  // namespace
}  // namespace concord::store

// The one test suite both store backends must pass. Every test runs twice: against a temp
// SQLite file and against a fresh database on a real PostgreSQL server (started by the test
// program itself, see postgres_server.h). If no PostgreSQL can be started the PostgreSQL
// half FAILS: a backend that is not tested is not known to work.
#include <gtest/gtest.h>

#include <atomic>
#include <cfloat>
#include <climits>
#include <map>
#include <thread>

#include "base/time_format.h"
#include "postgres_server.h"
#include "store/store.h"
#include "store_test_util.h"

namespace concord::store {
namespace {

using test_support::PostgresServer;
using test_support::TempDir;
using namespace std::chrono_literals;

enum class Backend { kSqlite, kPostgres };

std::vector<Migration> schema() {
  return {
      {"test", 1, "items",
       "CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT, n BIGINT, x DOUBLE PRECISION,"
       " revision BIGINT NOT NULL DEFAULT 1)"},
      {"test", 2, "parents and children",
       "CREATE TABLE parents (id TEXT PRIMARY KEY);"
       "CREATE TABLE children (id TEXT PRIMARY KEY,"
       " parent_id TEXT NOT NULL REFERENCES parents(id))"},
      {"test", 3, "counters",
       "CREATE TABLE counters (id TEXT PRIMARY KEY, value BIGINT NOT NULL,"
       " revision BIGINT NOT NULL)"},
  };
}

Change change(std::string kind, std::string id, std::string op, int64_t revision) {
  Change c;
  c.kind = std::move(kind);
  c.id = std::move(id);
  c.project_id = "p1";
  c.op = std::move(op);
  c.revision = revision;
  return c;
}

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kSqlite) {
      dir_ = std::make_unique<TempDir>();
    } else {
      auto server = PostgresServer::shared();
      ASSERT_TRUE(server.has_value())
          << "the PostgreSQL half of the store suite needs a real PostgreSQL 15 and none could "
             "be started (set CONCORD_TEST_POSTGRES_URL to use an existing server): "
          << server.error().to_string();
      server_ = *server;
      auto db = server_->create_database();
      ASSERT_TRUE(db.has_value()) << db.error().to_string();
      db_ = *db;
    }
    auto opened = open_another();
    ASSERT_TRUE(opened.has_value()) << opened.error().to_string();
    store_ = std::move(*opened);
  }

  void TearDown() override {
    store_.reset();
    if (server_ != nullptr && !db_.name.empty()) EXPECT_OK(server_->drop_database(db_.name));
  }

  // Another Store on the same database, as a second process would open it.
  Result<std::unique_ptr<Store>> open_another() {
    if (GetParam() == Backend::kSqlite) {
      SqliteOptions o;
      o.path = dir_->path() + "/concord.db";
      return open_sqlite(o);
    }
    PostgresOptions o;
    o.conninfo = db_.conninfo;
    return open_postgres(o);
  }

  Store& store() { return *store_; }

  // Runs one query in a read transaction.
  Result<Rows> query(std::string_view sql, std::vector<Value> params = {}) {
    Rows rows;
    Status st = store().read([&](Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(rows, tx.query(sql, params));
      return ok();
    });
    if (!st) return fail(st.error());
    return rows;
  }

  int64_t count(std::string_view sql, std::vector<Value> params = {}) {
    auto rows = query(sql, std::move(params));
    EXPECT_TRUE(rows.has_value()) << rows.error().to_string();
    return rows && !rows->empty() ? rows->at(0).integer(0) : -1;
  }

  Status insert_item(std::string id, Value name = null(), Value n = null(), Value x = null()) {
    return store().write([&](Tx& tx) -> Status {
      CONCORD_RETURN_IF_ERROR(
          tx.exec("INSERT INTO items (id, name, n, x) VALUES (?, ?, ?, ?)", {id, name, n, x}));
      return ok();
    });
  }

  std::unique_ptr<TempDir> dir_;
  PostgresServer* server_ = nullptr;
  PostgresServer::Database db_;
  std::unique_ptr<Store> store_;
};

// ---------------------------------------------------------------------------------------
// Migrations

TEST_P(StoreTest, MigrateAppliesRecordsAndIsIdempotent) {
  ASSERT_OK(store().migrate(schema()));
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations WHERE component = ?", {"test"}), 3);
  auto rows = query(
      "SELECT version, description, applied_at FROM schema_migrations WHERE component = ?"
      " ORDER BY version",
      {"test"});
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ(rows->at(1).integer(0), 2);
  EXPECT_EQ(rows->at(1).text(1), "parents and children");
  EXPECT_TRUE(parse_iso_time(rows->at(1).text(2)).has_value()) << rows->at(1).text(2);
  // The store's own schema is recorded too.
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations WHERE component = 'store'"), 1);

  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(store().migrate(schema()));
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations WHERE component = ?", {"test"}), 3);
  ASSERT_OK(insert_item("a"));
  EXPECT_EQ(count("SELECT COUNT(*) FROM items"), 1);
}

TEST_P(StoreTest, MigrateAppliesPendingInVersionOrder) {
  std::vector<Migration> all = schema();
  all.push_back({"test", 4, "needs v1", "ALTER TABLE items ADD COLUMN extra TEXT"});
  ASSERT_OK(store().migrate(std::span(all).first(1)));
  // Listed out of order: v4 alters the table v1 made, so only version order works.
  std::vector<Migration> shuffled = {all[3], all[2], all[0], all[1]};
  ASSERT_OK(store().migrate(shuffled));
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations WHERE component = ?", {"test"}), 4);
  ASSERT_OK(store().write([](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO items (id, extra) VALUES (?, ?)", {"a", "e"}));
    return ok();
  }));
}

TEST_P(StoreTest, MigrateRefusesDatabaseOfNewerBinary) {
  ASSERT_OK(store().migrate(schema()));
  std::vector<Migration> older = schema();
  older.pop_back();
  auto st = store().migrate(older);
  EXPECT_CODE(st, Code::kFailedPrecondition);
  if (!st) {
    EXPECT_NE(st.error().message().find("'test'"), std::string::npos);
  }
  // Other components are not affected.
  std::vector<Migration> other = {{"other", 1, "t", "CREATE TABLE other_t (id TEXT)"}};
  EXPECT_OK(store().migrate(other));
}

// Several server replicas start at once against one database: each migration is applied
// exactly once and every replica's migrate() succeeds.
TEST_P(StoreTest, ConcurrentMigrationsFromSeveralStoresApplyEachOnce) {
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < 3; ++i) {
    auto s = open_another();
    ASSERT_OK(s);
    stores.push_back(std::move(*s));
  }
  std::vector<Status> results(stores.size(), ok());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < stores.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = stores[i]->migrate(schema()); });
  }
  for (auto& t : threads) t.join();
  for (const Status& st : results) EXPECT_OK(st);
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations WHERE component = 'test'"), 3);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items"), 0);
}

TEST_P(StoreTest, MigrationWithBadSqlLeavesNothingHalfApplied) {
  std::vector<Migration> list = schema();
  list.resize(1);
  list.push_back({"test", 2, "broken",
                  "CREATE TABLE half (x TEXT); INSERT INTO half VALUES ('h'); CREATE TABLE ("});
  EXPECT_CODE(store().migrate(list), Code::kInternal);
  // v1 (its own transaction) stays; nothing of v2 does.
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations WHERE component = 'test'"), 1);
  EXPECT_CODE(query("SELECT COUNT(*) FROM half"), Code::kInternal);

  list[1].sql = "CREATE TABLE half (x TEXT); INSERT INTO half VALUES ('h')";
  ASSERT_OK(store().migrate(list));
  EXPECT_EQ(count("SELECT COUNT(*) FROM half"), 1);
}

TEST_P(StoreTest, MigrateRejectsMalformedLists) {
  std::vector<Migration> dup = {{"test", 1, "a", "CREATE TABLE a (x TEXT)"},
                                {"test", 1, "b", "CREATE TABLE b (x TEXT)"}};
  EXPECT_CODE(store().migrate(dup), Code::kInvalidArgument);
  std::vector<Migration> reserved = {{"store", 9, "a", "CREATE TABLE a (x TEXT)"}};
  EXPECT_CODE(store().migrate(reserved), Code::kInvalidArgument);
  std::vector<Migration> zero = {{"test", 0, "a", "CREATE TABLE a (x TEXT)"}};
  EXPECT_CODE(store().migrate(zero), Code::kInvalidArgument);
  EXPECT_EQ(count("SELECT COUNT(*) FROM schema_migrations WHERE component = 'test'"), 0);
}

TEST_P(StoreTest, MigrationScriptSplitsOnlyOnRealStatementEnds) {
  std::vector<Migration> list = {{"test", 1, "notes",
                                  "CREATE TABLE notes (body TEXT);\n"
                                  "-- a comment; with a semicolon\n"
                                  "INSERT INTO notes VALUES ('a;b'); /* another; comment */\n"
                                  "INSERT INTO notes VALUES ('it''s; ok');\n"}};
  ASSERT_OK(store().migrate(list));
  auto rows = query("SELECT body FROM notes ORDER BY body");
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ(rows->at(0).text(0), "a;b");
  EXPECT_EQ(rows->at(1).text(0), "it's; ok");
}

TEST_P(StoreTest, PostgresSpecificMigrationTextIsUsedOnPostgres) {
  std::vector<Migration> list = {{"test", 1, "dialect",
                                  "CREATE TABLE d (which TEXT);"
                                  "INSERT INTO d VALUES ('portable')",
                                  "CREATE TABLE d (which TEXT);"
                                  "INSERT INTO d VALUES ('postgres')"}};
  ASSERT_OK(store().migrate(list));
  auto rows = query("SELECT which FROM d");
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ(rows->at(0).text(0), GetParam() == Backend::kPostgres ? "postgres" : "portable");
}

// ---------------------------------------------------------------------------------------
// Values and parameters

TEST_P(StoreTest, StringsAreStoredVerbatim) {
  ASSERT_OK(store().migrate(schema()));
  std::string long_text;
  for (int i = 0; long_text.size() < (1 << 20); ++i) long_text += "ünïcødé-" + std::to_string(i);
  std::vector<std::string> values = {
      "",
      "'); DROP TABLE items; --",
      "Robert'); DELETE FROM items WHERE ('1'='1",
      "?",
      "$1 ? $2 ?? '?' \"?\"",
      "/* not a comment */ -- nor this",
      "\"double\" and 'single' quotes",
      "back\\slash\\",
      "h\u00e9llo w\u00f6rld \u2603 \u65e5\u672c\u8a9e \U0001F389",
      "line\nbreak\ttab\rcr",
      long_text,
  };
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_OK(insert_item("id" + std::to_string(i), values[i]));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    auto rows = query("SELECT name FROM items WHERE id = ?", {"id" + std::to_string(i)});
    ASSERT_OK(rows);
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_FALSE(rows->at(0).is_null(0));
    EXPECT_EQ(rows->at(0).text(0), values[i]) << "value " << i;
    // The value also works as a lookup key.
    EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE name = ?", {values[i]}), 1) << i;
  }
  EXPECT_EQ(count("SELECT COUNT(*) FROM items"), static_cast<int64_t>(values.size()));
}

TEST_P(StoreTest, NullsIntegersAndDoublesRoundTrip) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(insert_item("nulls"));
  ASSERT_OK(insert_item("empty", std::string()));
  auto rows = query("SELECT name, n, x FROM items WHERE id = ?", {"nulls"});
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 1u);
  for (size_t c = 0; c < 3; ++c) EXPECT_TRUE(rows->at(0).is_null(c)) << c;
  EXPECT_EQ(rows->at(0).opt_text(0), std::nullopt);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE name IS NULL"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE name = ?", {std::string()}), 1);

  const std::vector<int64_t> ints = {0, 1, -1, INT32_MAX + int64_t{1}, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < ints.size(); ++i) {
    ASSERT_OK(insert_item("i" + std::to_string(i), null(), ints[i]));
    auto r = query("SELECT n FROM items WHERE id = ?", {"i" + std::to_string(i)});
    ASSERT_OK(r);
    ASSERT_TRUE(std::holds_alternative<int64_t>(r->at(0).value(0))) << i;
    EXPECT_EQ(r->at(0).integer(0), ints[i]);
    EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE n = ?", {ints[i]}), 1) << ints[i];
  }

  const std::vector<double> doubles = {0.0,     0.1,     -2.5,    1.0 / 3.0,          1e300,
                                       -1e-300, DBL_MAX, DBL_MIN, 123456.789012345678};
  for (size_t i = 0; i < doubles.size(); ++i) {
    ASSERT_OK(insert_item("d" + std::to_string(i), null(), null(), doubles[i]));
    auto r = query("SELECT x FROM items WHERE id = ?", {"d" + std::to_string(i)});
    ASSERT_OK(r);
    ASSERT_TRUE(std::holds_alternative<double>(r->at(0).value(0))) << i;
    EXPECT_EQ(r->at(0).real(0), doubles[i]) << i;  // exact, not approximately
  }

  // Booleans travel as 0/1 on both engines.
  auto b = query("SELECT n > ?, n < ? FROM items WHERE id = ?", {int64_t{0}, int64_t{0}, "i1"});
  ASSERT_OK(b);
  ASSERT_TRUE(std::holds_alternative<int64_t>(b->at(0).value(0)));
  EXPECT_TRUE(b->at(0).boolean(0));
  EXPECT_FALSE(b->at(0).boolean(1));
}

TEST_P(StoreTest, QuestionMarksInLiteralsIdentifiersAndCommentsAreNotPlaceholders) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(insert_item("a", "alpha"));
  auto rows = query(
      "SELECT '?' AS q, 'it''s ?' AS r, name AS \"what?\", CAST(? AS TEXT) /* ? */ FROM items"
      " -- trailing ?\n WHERE id = ?",
      {"param", "a"});
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ(rows->at(0).text(0), "?");
  EXPECT_EQ(rows->at(0).text(1), "it's ?");
  EXPECT_EQ(rows->at(0).text(2), "alpha");
  EXPECT_EQ(rows->at(0).text(3), "param");
}

TEST_P(StoreTest, ParameterCountMismatchIsInternal) {
  ASSERT_OK(store().migrate(schema()));
  EXPECT_CODE(query("SELECT name FROM items WHERE id = ?"), Code::kInternal);
  EXPECT_CODE(query("SELECT name FROM items WHERE id = ?", {"a", "b"}), Code::kInternal);
}

TEST_P(StoreTest, NulByteInParameterIsRejected) {
  ASSERT_OK(store().migrate(schema()));
  EXPECT_CODE(insert_item("a", std::string("nul\0byte", 8)), Code::kInvalidArgument);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items"), 0);
}

TEST_P(StoreTest, SeveralStatementsInOneExecAreRejected) {
  ASSERT_OK(store().migrate(schema()));
  Status st = store().write([](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO items (id) VALUES ('a'); DELETE FROM items"));
    return ok();
  });
  EXPECT_CODE(st, Code::kInternal);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items"), 0);
}

// ---------------------------------------------------------------------------------------
// Transactions

TEST_P(StoreTest, WriteCommitsOnOkAndRollsBackOnError) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(store().write([](Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec("INSERT INTO items (id) VALUES (?)", {"kept"}));
    EXPECT_EQ(n, 1);
    return ok();
  }));
  Status st = store().write([](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO items (id) VALUES (?)", {"dropped"}));
    CONCORD_RETURN_IF_ERROR(tx.exec("UPDATE items SET name = ? WHERE id = ?", {"x", "kept"}));
    // The transaction sees its own writes...
    CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query("SELECT COUNT(*) FROM items"));
    EXPECT_EQ(rows.at(0).integer(0), 2);
    return fail(Code::kNotFound, "caller gave up");
  });
  EXPECT_CODE(st, Code::kNotFound);  // the function's own error, unchanged
  if (!st) {
    EXPECT_EQ(st.error().message(), "caller gave up");
  }
  // ...and none of them survive the rollback.
  EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE id = ?", {"dropped"}), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE name IS NULL AND id = ?", {"kept"}), 1);
}

TEST_P(StoreTest, ExecReportsChangedRowCount) {
  ASSERT_OK(store().migrate(schema()));
  for (std::string id : {"a", "b", "c"}) ASSERT_OK(insert_item(id, "old"));
  ASSERT_OK(store().write([](Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE items SET name = ? WHERE id <> ?", {"new", "a"}));
    EXPECT_EQ(n, 2);
    CONCORD_ASSIGN_OR_RETURN(n, tx.exec("DELETE FROM items WHERE id = ?", {"nope"}));
    EXPECT_EQ(n, 0);
    CONCORD_ASSIGN_OR_RETURN(
        n, tx.exec("INSERT INTO items (id) VALUES (?) ON CONFLICT (id) DO NOTHING", {"a"}));
    EXPECT_EQ(n, 0);
    CONCORD_ASSIGN_OR_RETURN(
        n, tx.exec("INSERT INTO items (id) VALUES (?), (?) RETURNING id", {"d", "e"}));
    EXPECT_EQ(n, 2);
    CONCORD_ASSIGN_OR_RETURN(n, tx.exec("SELECT id FROM items"));
    EXPECT_EQ(n, 0);  // a query changes nothing
    return ok();
  }));
}

TEST_P(StoreTest, FailedStatementDoomsTheTransactionEvenIfIgnored) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(insert_item("a"));
  Code second_code = Code::kOk;
  Status st = store().write([&](Tx& tx) -> Status {
    auto dup = tx.exec("INSERT INTO items (id) VALUES (?)", {"a"});
    EXPECT_CODE(dup, Code::kAlreadyExists);
    auto next = tx.exec("INSERT INTO items (id) VALUES (?)", {"b"});
    if (!next) second_code = next.error().code();
    return ok();  // ignores both errors
  });
  EXPECT_CODE(st, Code::kAlreadyExists);
  EXPECT_EQ(second_code, Code::kAlreadyExists);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE id = ?", {"b"}), 0);
}

TEST_P(StoreTest, ReadCannotWriteNorRecordChanges) {
  ASSERT_OK(store().migrate(schema()));
  Status st = store().read([](Tx& tx) -> Status {
    EXPECT_CODE(tx.record_change(change("test.item", "a", "create", 1)), Code::kFailedPrecondition);
    EXPECT_CODE(tx.serialize(), Code::kFailedPrecondition);
    return ok();
  });
  EXPECT_OK(st);
  st = store().read([](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO items (id) VALUES (?)", {"a"}));
    return ok();
  });
  EXPECT_CODE(st, Code::kFailedPrecondition);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items"), 0);
  auto last = store().last_change_seq();
  ASSERT_OK(last);
  EXPECT_EQ(*last, 0);
}

TEST_P(StoreTest, ReadSeesOneSnapshot) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(insert_item("a", "before"));
  Status st = store().read([&](Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Rows first, tx.query("SELECT name FROM items WHERE id = ?", {"a"}));
    // A commit from another thread after our first read...
    std::thread writer([&] {
      EXPECT_OK(store().write([](Tx& w) -> Status {
        CONCORD_RETURN_IF_ERROR(w.exec("UPDATE items SET name = ? WHERE id = ?", {"after", "a"}));
        return ok();
      }));
    });
    writer.join();
    // ...is not visible to the rest of this read.
    CONCORD_ASSIGN_OR_RETURN(Rows second, tx.query("SELECT name FROM items WHERE id = ?", {"a"}));
    EXPECT_EQ(first.at(0).text(0), "before");
    EXPECT_EQ(second.at(0).text(0), "before");
    return ok();
  });
  EXPECT_OK(st);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE name = ?", {"after"}), 1);
}

TEST_P(StoreTest, NestedWriteOnTheSameStoreIsRefused) {
  ASSERT_OK(store().migrate(schema()));
  Status inner = ok();
  ASSERT_OK(store().write([&](Tx&) -> Status {
    inner = store().write([](Tx&) { return ok(); });
    return ok();
  }));
  EXPECT_CODE(inner, Code::kInternal);
}

TEST_P(StoreTest, UniqueViolationIsAlreadyExists) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(insert_item("a"));
  EXPECT_CODE(insert_item("a"), Code::kAlreadyExists);
  EXPECT_EQ(count("SELECT COUNT(*) FROM items"), 1);
}

TEST_P(StoreTest, ForeignKeyViolationIsFailedPrecondition) {
  ASSERT_OK(store().migrate(schema()));
  auto exec = [&](std::string_view sql, std::vector<Value> params) {
    return store().write([&](Tx& tx) -> Status {
      CONCORD_RETURN_IF_ERROR(tx.exec(sql, params));
      return ok();
    });
  };
  EXPECT_CODE(exec("INSERT INTO children (id, parent_id) VALUES (?, ?)", {"c", "missing"}),
              Code::kFailedPrecondition);
  ASSERT_OK(exec("INSERT INTO parents (id) VALUES (?)", {"p"}));
  ASSERT_OK(exec("INSERT INTO children (id, parent_id) VALUES (?, ?)", {"c", "p"}));
  EXPECT_CODE(exec("DELETE FROM parents WHERE id = ?", {"p"}), Code::kFailedPrecondition);
  EXPECT_EQ(count("SELECT COUNT(*) FROM parents"), 1);
}

TEST_P(StoreTest, CheckRevisionTellsNotFoundFromStale) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(insert_item("a"));
  auto update = [&](std::string id, int64_t revision) {
    return store().write([&](Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("UPDATE items SET name = ?, revision = revision + 1"
                                       " WHERE id = ? AND revision = ?",
                                       {"renamed", id, revision}));
      if (n == 0) return check_revision(tx, "items", id);
      return ok();
    });
  };
  EXPECT_CODE(update("a", 7), Code::kAborted);
  EXPECT_CODE(update("ghost", 1), Code::kNotFound);
  EXPECT_OK(update("a", 1));
  EXPECT_CODE(update("a", 1), Code::kAborted);  // the revision moved on
  EXPECT_EQ(count("SELECT revision FROM items WHERE id = ?", {"a"}), 2);
}

// Optimistic concurrency under real contention: every increment is a read in one
// transaction and a conditional write in another; losers get kAborted and retry.
TEST_P(StoreTest, ConcurrentReadModifyWriteReachesExactTotal) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(store().write([](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(
        tx.exec("INSERT INTO counters (id, value, revision) VALUES ('c', 0, 1)"));
    return ok();
  }));
  constexpr int kThreads = 4;
  constexpr int kIncrements = 25;
  std::atomic<int> aborted{0};
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements;) {
        int64_t value = 0;
        int64_t revision = 0;
        Status rd = store().read([&](Tx& tx) -> Status {
          CONCORD_ASSIGN_OR_RETURN(
              Rows rows, tx.query("SELECT value, revision FROM counters WHERE id = ?", {"c"}));
          value = rows.at(0).integer(0);
          revision = rows.at(0).integer(1);
          return ok();
        });
        if (!rd) {
          ++unexpected;
          return;
        }
        Status wr = store().write([&](Tx& tx) -> Status {
          CONCORD_ASSIGN_OR_RETURN(int64_t n,
                                   tx.exec("UPDATE counters SET value = ?, revision = revision + 1"
                                           " WHERE id = ? AND revision = ?",
                                           {value + 1, "c", revision}));
          if (n == 0) return check_revision(tx, "counters", "c");
          return tx.record_change(change("test.counter", "c", "update", revision + 1));
        });
        if (wr) {
          ++i;
        } else if (wr.error().code() == Code::kAborted) {
          ++aborted;
        } else {
          ADD_FAILURE() << wr.error().to_string();
          ++unexpected;
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(unexpected.load(), 0);
  auto rows = query("SELECT value, revision FROM counters WHERE id = ?", {"c"});
  ASSERT_OK(rows);
  EXPECT_EQ(rows->at(0).integer(0), kThreads * kIncrements);
  EXPECT_EQ(rows->at(0).integer(1), kThreads * kIncrements + 1);
  auto last = store().last_change_seq();
  ASSERT_OK(last);
  EXPECT_EQ(*last, kThreads * kIncrements);  // one change per successful increment
  RecordProperty("aborted_retries", aborted.load());
}

// A check and the insert it guards, from several writers at once: with serialize() first,
// exactly one of them inserts per round (on PostgreSQL's READ COMMITTED, without it, every
// writer can see "none yet" and insert; the pause between check and insert makes that
// likely).
TEST_P(StoreTest, SerializedCheckThenInsertHappensOncePerRound) {
  ASSERT_OK(store().migrate(schema()));
  constexpr int kWriters = 3;
  constexpr int kRounds = 4;
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = "round-" + std::to_string(round);
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        Status st = store().write([&](Tx& tx) -> Status {
          CONCORD_RETURN_IF_ERROR(tx.serialize());
          CONCORD_ASSIGN_OR_RETURN(Rows made,
                                   tx.query("SELECT id FROM items WHERE name = ?", {name}));
          if (!made.empty()) return ok();
          std::this_thread::sleep_for(std::chrono::milliseconds(30));
          CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO items (id, name) VALUES (?, ?)",
                                          {name + "-" + std::to_string(w), name}));
          return ok();
        });
        EXPECT_OK(st);
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE name = ?", {name}), 1) << name;
  }
}

// ---------------------------------------------------------------------------------------
// Change feed

TEST_P(StoreTest, ChangeFeedPagesInOrderWithAllFields) {
  ASSERT_OK(store().migrate(schema()));
  auto last = store().last_change_seq();
  ASSERT_OK(last);
  EXPECT_EQ(*last, 0);
  ASSERT_OK(store().write([](Tx& tx) -> Status {
    for (int i = 1; i <= 5; ++i) {
      Change c = change("test.item", "id" + std::to_string(i), i == 5 ? "delete" : "create",
                        i == 5 ? 0 : i);
      c.project_id = i == 3 ? "" : "proj-" + std::to_string(i);
      CONCORD_RETURN_IF_ERROR(tx.record_change(c));
    }
    return ok();
  }));
  std::vector<Change> all;
  int64_t after = 0;
  for (;;) {
    auto page = store().changes_since(after, 2);
    ASSERT_OK(page);
    if (page->empty()) break;
    EXPECT_LE(page->size(), 2u);
    for (const Change& c : *page) all.push_back(c);
    after = page->back().seq;
  }
  ASSERT_EQ(all.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const Change& c = all[static_cast<size_t>(i)];
    EXPECT_EQ(c.seq, i + 1);
    EXPECT_EQ(c.kind, "test.item");
    EXPECT_EQ(c.id, "id" + std::to_string(i + 1));
    EXPECT_EQ(c.project_id, i == 2 ? "" : "proj-" + std::to_string(i + 1));
    EXPECT_EQ(c.op, i == 4 ? "delete" : "create");
    EXPECT_EQ(c.revision, i == 4 ? 0 : i + 1);
    EXPECT_TRUE(parse_iso_time(c.at).has_value()) << c.at;
  }
  last = store().last_change_seq();
  ASSERT_OK(last);
  EXPECT_EQ(*last, 5);
  EXPECT_CODE(store().changes_since(0, 0), Code::kInvalidArgument);
  auto none = store().changes_since(5, 100);
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreTest, RecordChangeValidatesTheChange) {
  ASSERT_OK(store().migrate(schema()));
  Status st = store().write([](Tx& tx) -> Status {
    EXPECT_CODE(tx.record_change(change("test.item", "a", "frobnicate", 1)),
                Code::kInvalidArgument);
    EXPECT_CODE(tx.record_change(change("", "a", "create", 1)), Code::kInvalidArgument);
    EXPECT_CODE(tx.record_change(change("test.item", "", "create", 1)), Code::kInvalidArgument);
    return ok();
  });
  EXPECT_OK(st);
  auto last = store().last_change_seq();
  ASSERT_OK(last);
  EXPECT_EQ(*last, 0);
}

TEST_P(StoreTest, ChangesOfRolledBackTransactionsNeverAppear) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(
      store().write([](Tx& tx) { return tx.record_change(change("k", "one", "create", 1)); }));
  EXPECT_CODE(store().write([](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.record_change(change("k", "ghost", "create", 1)));
    return fail(Code::kAborted, "lost a race");
  }),
              Code::kAborted);
  ASSERT_OK(
      store().write([](Tx& tx) { return tx.record_change(change("k", "two", "create", 1)); }));
  auto changes = store().changes_since(0, 100);
  ASSERT_OK(changes);
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_EQ(changes->at(0).id, "one");
  EXPECT_EQ(changes->at(1).id, "two");
  EXPECT_EQ(changes->at(1).seq, 2);  // no hole where the rolled-back change was
}

// Several writers commit concurrently (some roll back) while a watcher follows the feed the
// way a controller does. The watcher must see every committed change exactly once, with no
// gaps, in commit order: a seq it has passed must never show up later.
TEST_P(StoreTest, ChangeFeedIsGapFreeAndOrderedUnderConcurrentWriters) {
  ASSERT_OK(store().migrate(schema()));
  constexpr int kWriters = 4;
  constexpr int kTxPerWriter = 30;
  int expected = 0;
  for (int i = 0; i < kTxPerWriter; ++i) expected += (i % 5 == 4) ? 0 : 2;
  expected *= kWriters;

  std::vector<Change> seen;
  std::string watcher_error;
  std::thread watcher([&] {
    int64_t last = 0;
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (static_cast<int>(seen.size()) < expected) {
      if (std::chrono::steady_clock::now() > deadline) {
        watcher_error = "watcher timed out";
        return;
      }
      auto newest = store().wait_for_changes(last, 200ms);
      if (!newest) {
        watcher_error = newest.error().to_string();
        return;
      }
      auto page = store().changes_since(last, 7);
      if (!page) {
        watcher_error = page.error().to_string();
        return;
      }
      for (const Change& c : *page) {
        if (c.seq != last + 1) {
          watcher_error = "gap or reorder: after seq " + std::to_string(last) + " came " +
                          std::to_string(c.seq);
          return;
        }
        last = c.seq;
        seen.push_back(c);
      }
    }
  });

  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kTxPerWriter; ++i) {
        std::string id = "w" + std::to_string(w) + "-" + std::to_string(i);
        bool roll_back = i % 5 == 4;
        Status st = store().write([&](Tx& tx) -> Status {
          CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO items (id, revision) VALUES (?, 1)", {id}));
          CONCORD_RETURN_IF_ERROR(tx.record_change(change("test.item", id, "create", 1)));
          CONCORD_RETURN_IF_ERROR(tx.exec("UPDATE items SET revision = 2 WHERE id = ?", {id}));
          CONCORD_RETURN_IF_ERROR(tx.record_change(change("test.item", id, "update", 2)));
          if (roll_back) return fail(Code::kAborted, "rolled back on purpose");
          return ok();
        });
        if (roll_back) {
          EXPECT_CODE(st, Code::kAborted);
        } else {
          EXPECT_OK(st);
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  watcher.join();
  ASSERT_EQ(watcher_error, "");
  ASSERT_EQ(static_cast<int>(seen.size()), expected);

  // Per writer: its transactions in its own order, each create immediately followed by its
  // update (one transaction's changes are contiguous), nothing rolled back.
  std::map<std::string, int> next_tx;
  for (size_t k = 0; k < seen.size(); k += 2) {
    const Change& create = seen[k];
    const Change& update = seen[k + 1];
    EXPECT_EQ(create.op, "create");
    EXPECT_EQ(update.op, "update");
    EXPECT_EQ(create.id, update.id);
    std::string writer = create.id.substr(0, create.id.find('-'));
    int tx = std::stoi(create.id.substr(create.id.find('-') + 1));
    EXPECT_NE(tx % 5, 4) << "a rolled-back change appeared: " << create.id;
    EXPECT_GE(tx, next_tx[writer]) << create.id;
    next_tx[writer] = tx + 1;
  }
  auto last = store().last_change_seq();
  ASSERT_OK(last);
  EXPECT_EQ(*last, expected);
}

TEST_P(StoreTest, WaitForChangesReturnsAfterTimeoutWhenNothingHappens) {
  auto start = std::chrono::steady_clock::now();
  auto newest = store().wait_for_changes(0, 300ms);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_OK(newest);
  EXPECT_EQ(*newest, 0);
  EXPECT_GE(elapsed, 300ms);
}

TEST_P(StoreTest, WaitForChangesReturnsAtOnceWhenAlreadyBehind) {
  ASSERT_OK(store().write([](Tx& tx) { return tx.record_change(change("k", "a", "create", 1)); }));
  auto start = std::chrono::steady_clock::now();
  auto newest = store().wait_for_changes(0, 60s);
  ASSERT_OK(newest);
  EXPECT_EQ(*newest, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s);
}

// Waits on `waiter` while `writer` commits a change from another thread; the wait must end
// because of the commit (well before its long timeout) and report the new seq.
void expect_wakes(Store& waiter, Store& writer) {
  auto before = waiter.last_change_seq();
  ASSERT_OK(before);
  std::atomic<bool> waiting{false};
  Result<int64_t> woke = 0;
  std::chrono::steady_clock::duration waited{};
  std::thread t([&] {
    auto start = std::chrono::steady_clock::now();
    waiting = true;
    woke = waiter.wait_for_changes(*before, 60s);
    waited = std::chrono::steady_clock::now() - start;
  });
  while (!waiting) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);  // let it block; correctness does not depend on this
  ASSERT_OK(writer.write([](Tx& tx) { return tx.record_change(change("k", "w", "update", 2)); }));
  t.join();
  ASSERT_OK(woke);
  EXPECT_EQ(*woke, *before + 1);
  EXPECT_LT(waited, 60s) << "the wait ran into its timeout instead of waking on the commit";
}

TEST_P(StoreTest, WaitForChangesWakesOnCommitFromAnotherThread) {
  expect_wakes(store(), store());
}

TEST_P(StoreTest, WaitForChangesWakesOnCommitFromAnotherStore) {
  auto other = open_another();
  ASSERT_OK(other);
  expect_wakes(store(), **other);
  expect_wakes(**other, store());
}

TEST_P(StoreTest, ReopenKeepsDataAndFeed) {
  ASSERT_OK(store().migrate(schema()));
  ASSERT_OK(store().write([](Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO items (id, name) VALUES (?, ?)", {"a", "kept"}));
    return tx.record_change(change("test.item", "a", "create", 1));
  }));
  store_.reset();
  auto reopened = open_another();
  ASSERT_OK(reopened);
  store_ = std::move(*reopened);
  ASSERT_OK(store().migrate(schema()));
  EXPECT_EQ(count("SELECT COUNT(*) FROM items WHERE name = ?", {"kept"}), 1);
  auto last = store().last_change_seq();
  ASSERT_OK(last);
  EXPECT_EQ(*last, 1);
  EXPECT_EQ(store().dialect(),
            GetParam() == Backend::kSqlite ? Dialect::kSqlite : Dialect::kPostgres);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
                         });

}  // namespace
}  // namespace concord::store

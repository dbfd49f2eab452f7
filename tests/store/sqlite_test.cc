// SQLite-only behaviour: durability settings, crash safety under SIGKILL, a database kept
// busy by another process, and opening errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>

#include "store/store.h"
#include "store_test_util.h"

namespace concord::store {
namespace {

using test_support::TempDir;

Result<std::unique_ptr<Store>> open_at(const std::string& path, int busy_timeout_ms = 5000) {
  SqliteOptions o;
  o.path = path;
  o.busy_timeout_ms = busy_timeout_ms;
  return open_sqlite(o);
}

Result<Rows> read_query(Store& store, std::string_view sql) {
  Rows rows;
  Status st = store.read([&](Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(rows, tx.query(sql));
    return ok();
  });
  if (!st) return fail(st.error());
  return rows;
}

TEST(SqliteStoreTest, WriterUsesWalFullSyncAndForeignKeys) {
  TempDir dir;
  auto store = open_at(dir.path() + "/db");
  ASSERT_OK(store);
  ASSERT_OK((*store)->write([](Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Rows mode, tx.query("PRAGMA journal_mode"));
    EXPECT_EQ(mode.at(0).text(0), "wal");
    CONCORD_ASSIGN_OR_RETURN(Rows sync, tx.query("PRAGMA synchronous"));
    EXPECT_EQ(sync.at(0).integer(0), 2);  // FULL
    CONCORD_ASSIGN_OR_RETURN(Rows fk, tx.query("PRAGMA foreign_keys"));
    EXPECT_EQ(fk.at(0).integer(0), 1);
    EXPECT_EQ(tx.dialect(), Dialect::kSqlite);
    return ok();
  }));
}

TEST(SqliteStoreTest, OpenRejectsBadPaths) {
  EXPECT_CODE(open_at(":memory:"), Code::kInvalidArgument);
  EXPECT_CODE(open_at(""), Code::kInvalidArgument);
  EXPECT_CODE(open_at("/nonexistent-dir-for-concord/db"), Code::kFailedPrecondition);
  EXPECT_CODE(open_store("sqlite://"), Code::kInvalidArgument);
  EXPECT_CODE(open_store("mysql://localhost/x"), Code::kInvalidArgument);
  TempDir dir;
  auto by_url = open_store("sqlite://" + dir.path() + "/url.db");
  ASSERT_OK(by_url);
  EXPECT_EQ((*by_url)->dialect(), Dialect::kSqlite);
}

// Another process holds the write lock: writes give up with kUnavailable after the bounded
// retries, reads keep working (WAL), and writes succeed once the lock is released.
TEST(SqliteStoreTest, BusyDatabaseIsUnavailableAndReadsGoOn) {
  TempDir dir;
  const std::string path = dir.path() + "/db";
  auto store = open_at(path, /*busy_timeout_ms=*/20);
  ASSERT_OK(store);
  std::vector<Migration> schema = {{"test", 1, "t", "CREATE TABLE t (id TEXT PRIMARY KEY)"}};
  ASSERT_OK((*store)->migrate(schema));

  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  auto insert = [&](std::string id) {
    return (*store)->write([&](Tx& tx) -> Status {
      CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO t (id) VALUES (?)", {id}));
      return ok();
    });
  };
  EXPECT_CODE(insert("blocked"), Code::kUnavailable);
  auto rows = read_query(**store, "SELECT COUNT(*) FROM t");
  ASSERT_OK(rows);
  EXPECT_EQ(rows->at(0).integer(0), 0);

  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  EXPECT_OK(insert("free"));
  rows = read_query(**store, "SELECT COUNT(*) FROM t");
  ASSERT_OK(rows);
  EXPECT_EQ(rows->at(0).integer(0), 1);
}

bool read_exact(int fd, int64_t& out) {
  char* p = reinterpret_cast<char*>(&out);
  size_t got = 0;
  while (got < sizeof out) {
    ssize_t n = read(fd, p + got, sizeof out - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// The child: opens the store and commits row after row, reporting each id on the pipe only
// after write() returned ok (i.e. acknowledged). Never returns.
[[noreturn]] void crash_child(const std::string& path, int64_t first, int ack_fd) {
  auto store = open_at(path);
  if (!store) _exit(2);
  const std::string payload(2048, 'x');
  for (int64_t n = first;; ++n) {
    Status st = (*store)->write([&](Tx& tx) -> Status {
      CONCORD_RETURN_IF_ERROR(
          tx.exec("INSERT INTO crash_rows (n, payload) VALUES (?, ?)", {n, payload}));
      Change c;
      c.kind = "test.row";
      c.id = std::to_string(n);
      c.op = "create";
      c.revision = 1;
      return tx.record_change(c);
    });
    if (!st) _exit(3);
    if (write(ack_fd, &n, sizeof n) != static_cast<ssize_t>(sizeof n)) _exit(4);
  }
}

// kill -9 in the middle of a stream of acknowledged writes, three times over: after each
// restart every acknowledged row is there exactly once, nothing else but possibly the one
// write in flight, the change feed matches the rows, and the file passes integrity_check.
TEST(SqliteStoreTest, AcknowledgedWritesSurviveSigkill) {
  TempDir dir;
  const std::string path = dir.path() + "/crash.db";
  {
    auto store = open_at(path);
    ASSERT_OK(store);
    // No uniqueness on n, so a row written twice would show.
    std::vector<Migration> schema = {
        {"test", 1, "rows", "CREATE TABLE crash_rows (n BIGINT NOT NULL, payload TEXT NOT NULL)"}};
    ASSERT_OK((*store)->migrate(schema));
  }
  std::set<int64_t> acked;
  // Rows committed by a killed child before it could acknowledge them (at most one a round:
  // the write in flight); legitimately present from then on.
  std::set<int64_t> unacked;
  int64_t next = 0;
  for (int round = 0; round < 3; ++round) {
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      crash_child(path, next, fds[1]);
    }
    close(fds[1]);
    const int kill_after = 30 + 25 * round;
    int64_t n = 0;
    for (int i = 0; i < kill_after; ++i) {
      if (!read_exact(fds[0], n)) {
        int status = 0;
        waitpid(pid, &status, 0);
        close(fds[0]);
        FAIL() << "writer child stopped early (wait status " << status << ")";
      }
      acked.insert(n);
    }
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    while (read_exact(fds[0], n)) acked.insert(n);  // acknowledged before the kill
    close(fds[0]);

    auto store = open_at(path);
    ASSERT_OK(store);
    auto rows = read_query(**store, "SELECT n, COUNT(*) FROM crash_rows GROUP BY n ORDER BY n");
    ASSERT_OK(rows);
    std::map<int64_t, int64_t> present;
    for (const Row& r : *rows) present[r.integer(0)] = r.integer(1);
    for (int64_t id : acked) {
      ASSERT_TRUE(present.contains(id)) << "acknowledged row " << id << " was lost";
    }
    const int64_t max_acked = *acked.rbegin();
    for (auto [id, copies] : present) {
      EXPECT_EQ(copies, 1) << "row " << id;
      if (acked.contains(id) || unacked.contains(id)) continue;
      EXPECT_EQ(id, max_acked + 1) << "row " << id << " came from nowhere";
      unacked.insert(id);
    }
    auto feed = (*store)->changes_since(0, 100000);
    ASSERT_OK(feed);
    ASSERT_EQ(feed->size(), present.size());
    for (size_t i = 0; i < feed->size(); ++i)
      EXPECT_EQ(feed->at(i).seq, static_cast<int64_t>(i) + 1);
    auto check = read_query(**store, "PRAGMA integrity_check");
    ASSERT_OK(check);
    ASSERT_EQ(check->size(), 1u);
    EXPECT_EQ(check->at(0).text(0), "ok");
    next = present.rbegin()->first + 1;
  }
  EXPECT_GE(acked.size(), 30u + 55u + 80u);
}

}  // namespace
}  // namespace concord::store

// The embedded SQLite backend.
//
// Design: the database runs in WAL mode, so readers never block the writer nor each other.
// All writes go through ONE connection guarded by a mutex (SQLite allows one writer at a
// time anyway; queuing in-process on a mutex is cheaper and fairer than spinning on
// SQLITE_BUSY) and run as BEGIN IMMEDIATE ... COMMIT, so the write lock is taken up front
// and a transaction never fails half-way on a lock upgrade. SQLITE_BUSY can then only come
// from another process holding the write lock longer than busy_timeout; the whole
// transaction is retried a few times and then reported as kUnavailable. Reads borrow one of
// a small pool of query_only connections and run in a deferred transaction: one consistent
// snapshot per read().
//
// Durability: synchronous=FULL on the writer fsyncs the WAL at every commit, so a commit
// that returned ok survives a process crash and a power loss. (NORMAL would survive a process
// crash but may lose the last commits on power loss, which breaks "nothing acknowledged is
// lost".)
//
// Each connection caches its prepared statements by SQL text; the token-validation and
// listing paths then cost a hash lookup, bind and step.
#include <sqlite3.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

#include "base/log.h"
#include "store/store.h"
#include "store/store_internal.h"

namespace concord::store {
namespace {

using internal::MigrationTx;
using internal::TxErrors;

constexpr int kMaxAttempts = 3;
// How often a waiter re-reads MAX(seq) to see commits of other processes; a primary-key
// lookup, so cheap, while in-process commits wake waiters at once.
constexpr std::chrono::milliseconds kPollInterval{25};

bool is_busy(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

Error sqlite_error(sqlite3* db, int rc, std::string_view context) {
  std::string msg = std::string(context) + ": " +
                    (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) + " (" +
                    sqlite3_errstr(rc) + ")";
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID: return Error(Code::kAlreadyExists, std::move(msg));
    case SQLITE_CONSTRAINT_FOREIGNKEY: return Error(Code::kFailedPrecondition, std::move(msg));
    default: break;
  }
  if (is_busy(rc)) return Error(Code::kUnavailable, std::move(msg));
  // query_only readers: a write attempted inside read().
  if ((rc & 0xff) == SQLITE_READONLY) return Error(Code::kFailedPrecondition, std::move(msg));
  return Error(Code::kInternal, std::move(msg));
}

// One connection and its statement cache. Used by one thread at a time (the writer mutex or
// the reader pool guarantees it), so it is opened with SQLITE_OPEN_NOMUTEX.
class SqliteConn {
 public:
  explicit SqliteConn(sqlite3* db) : db_(db) {}
  ~SqliteConn() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }
  SqliteConn(const SqliteConn&) = delete;
  SqliteConn& operator=(const SqliteConn&) = delete;

  static Result<std::unique_ptr<SqliteConn>> open(const std::string& path, int busy_timeout_ms,
                                                  bool writer) {
    sqlite3* raw = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    auto conn = std::make_unique<SqliteConn>(raw);  // owns raw even when open failed
    if (rc != SQLITE_OK) {
      return fail(Code::kFailedPrecondition,
                  "cannot open SQLite database '" + path +
                      "': " + (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(raw, busy_timeout_ms);
    if (writer) {
      CONCORD_ASSIGN_OR_RETURN(std::string mode, conn->pragma_text("PRAGMA journal_mode=WAL"));
      if (mode != "wal") {
        return fail(Code::kFailedPrecondition,
                    "SQLite database '" + path + "' refused WAL mode (journal_mode=" + mode + ")");
      }
      CONCORD_RETURN_IF_ERROR(conn->run("PRAGMA synchronous=FULL"));
      CONCORD_RETURN_IF_ERROR(conn->run("PRAGMA foreign_keys=ON"));
    } else {
      CONCORD_RETURN_IF_ERROR(conn->run("PRAGMA query_only=ON"));
    }
    return conn;
  }

  sqlite3* db() const { return db_; }

  // A statement ready to bind: from the cache, or freshly prepared (and cached while the
  // cache has room). Rejects text holding more than one statement.
  Result<sqlite3_stmt*> statement(std::string_view sql, bool& cached) {
    if (auto it = cache_.find(sql); it != cache_.end()) {
      cached = true;
      return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) return fail(sqlite_error(db_, rc, "prepare"));
    if (stmt == nullptr) return fail(Code::kInternal, "empty SQL statement");
    if (has_statement(tail, sql.data() + sql.size())) {
      sqlite3_finalize(stmt);
      return fail(Code::kInternal,
                  "SQL text holds more than one statement; only migrations may do that");
    }
    cached = cache_.size() < internal::kStatementCacheLimit;
    if (cached) cache_.emplace(std::string(sql), stmt);
    return stmt;
  }

  // Runs a parameterless statement whose rows (if any) are not needed.
  Status run(std::string_view sql) {
    bool cached = false;
    CONCORD_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(sql, cached));
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    Status st = rc == SQLITE_DONE ? ok() : fail(sqlite_error(db_, rc, std::string(sql)));
    release(stmt, cached);
    return st;
  }

  // Returns a statement to the cache (reset, bindings cleared) or finalizes it.
  static void release(sqlite3_stmt* stmt, bool cached) {
    if (cached) {
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
    } else {
      sqlite3_finalize(stmt);
    }
  }

  // Ends the open transaction, if any (SQLite may already have rolled back on some errors).
  void rollback() {
    if (sqlite3_get_autocommit(db_) != 0) return;
    if (Status st = run("ROLLBACK"); !st) {
      logger("store")->warn("sqlite rollback failed: {}", st.error().message());
    }
  }

 private:
  Result<std::string> pragma_text(const char* sql) {
    bool cached = false;
    CONCORD_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(sql, cached));
    std::string out;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      out = text != nullptr ? text : "";
      rc = sqlite3_step(stmt);
    }
    Status st = rc == SQLITE_DONE ? ok() : fail(sqlite_error(db_, rc, sql));
    release(stmt, cached);
    CONCORD_RETURN_IF_ERROR(st);
    return out;
  }

  // True if [tail, end) holds another statement (not just whitespace or comments).
  bool has_statement(const char* tail, const char* end) {
    if (tail == nullptr || tail >= end) return false;
    sqlite3_stmt* next = nullptr;
    sqlite3_prepare_v2(db_, tail, static_cast<int>(end - tail), &next, nullptr);
    bool more = next != nullptr;
    sqlite3_finalize(next);
    return more;
  }

  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*, internal::SqlHash, std::equal_to<>> cache_;
};

class SqliteTx final : public MigrationTx {
 public:
  SqliteTx(SqliteConn& conn, bool writable) : conn_(conn), writable_(writable) {}

  using Tx::exec;
  using Tx::query;

  Result<int64_t> exec(std::string_view sql, std::span<const Value> params) override {
    int64_t changed = 0;
    CONCORD_RETURN_IF_ERROR(step_all(sql, params, nullptr, &changed));
    return changed;
  }

  Result<Rows> query(std::string_view sql, std::span<const Value> params) override {
    Rows rows;
    CONCORD_RETURN_IF_ERROR(step_all(sql, params, &rows, nullptr));
    return rows;
  }

  Status record_change(const Change& change) override {
    if (!writable_)
      return fail(Code::kFailedPrecondition, "record_change() is only valid inside write()");
    CONCORD_RETURN_IF_ERROR(internal::validate_change(change));
    std::vector<Value> params = internal::change_params(change);
    CONCORD_ASSIGN_OR_RETURN(Rows rows, query(internal::kInsertChangeSql, params));
    last_seq_ = rows.at(0).integer(0);
    return ok();
  }

  // BEGIN IMMEDIATE took the write lock when the transaction began.
  Status serialize() override {
    if (!writable_)
      return fail(Code::kFailedPrecondition, "serialize() is only valid inside write()");
    return ok();
  }

  Dialect dialect() const override { return Dialect::kSqlite; }

  // Splits by sqlite3_prepare's tail pointer, which knows about quotes and comments.
  Status exec_script(std::string_view sql) override {
    if (auto d = errors_.doomed()) return fail(*d);
    sqlite3* db = conn_.db();
    const char* p = sql.data();
    const char* end = sql.data() + sql.size();
    while (p < end) {
      sqlite3_stmt* stmt = nullptr;
      const char* tail = nullptr;
      int rc = sqlite3_prepare_v2(db, p, static_cast<int>(end - p), &stmt, &tail);
      if (rc != SQLITE_OK) return errors_.note(sqlite_error(db, rc, "prepare"), is_busy(rc));
      p = tail;
      if (stmt == nullptr) continue;  // whitespace or a comment
      while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      }
      sqlite3_finalize(stmt);
      if (rc != SQLITE_DONE) return errors_.note(sqlite_error(db, rc, "step"), is_busy(rc));
    }
    return ok();
  }

  Status lock_migrations() override { return ok(); }  // BEGIN IMMEDIATE holds the write lock

  const TxErrors& errors() const { return errors_; }
  int64_t last_seq() const { return last_seq_; }

 private:
  Status step_all(std::string_view sql, std::span<const Value> params, Rows* rows,
                  int64_t* changed) {
    if (auto d = errors_.doomed()) return fail(*d);
    if (Status st = internal::check_params(params); !st) return errors_.note(st.error(), false);
    sqlite3* db = conn_.db();
    bool cached = false;
    auto prepared = conn_.statement(sql, cached);
    if (!prepared)
      return errors_.note(prepared.error(), prepared.error().code() == Code::kUnavailable);
    sqlite3_stmt* stmt = *prepared;
    Status st = bind_and_step(db, stmt, params, rows, changed);
    SqliteConn::release(stmt, cached);
    return st;
  }

  Status bind_and_step(sqlite3* db, sqlite3_stmt* stmt, std::span<const Value> params, Rows* rows,
                       int64_t* changed) {
    int expected = sqlite3_bind_parameter_count(stmt);
    if (expected != static_cast<int>(params.size())) {
      return errors_.note(Error(Code::kInternal,
                                "statement has " + std::to_string(expected) + " placeholders but " +
                                    std::to_string(params.size()) + " parameters were given"),
                          false);
    }
    for (int i = 0; i < expected; ++i) {
      const Value& v = params[static_cast<size_t>(i)];
      int rc = SQLITE_OK;
      if (const auto* n = std::get_if<int64_t>(&v)) {
        rc = sqlite3_bind_int64(stmt, i + 1, *n);
      } else if (const auto* d = std::get_if<double>(&v)) {
        rc = sqlite3_bind_double(stmt, i + 1, *d);
      } else if (const auto* s = std::get_if<std::string>(&v)) {
        // SQLITE_STATIC: `params` outlives the statement's use; release() clears bindings.
        rc = sqlite3_bind_text64(stmt, i + 1, s->data(), s->size(), SQLITE_STATIC, SQLITE_UTF8);
      } else {
        rc = sqlite3_bind_null(stmt, i + 1);
      }
      if (rc != SQLITE_OK) return errors_.note(sqlite_error(db, rc, "bind"), false);
    }
    const int ncols = sqlite3_column_count(stmt);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (rows == nullptr) continue;
      std::vector<Value> cols;
      cols.reserve(static_cast<size_t>(ncols));
      for (int c = 0; c < ncols; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_INTEGER:
            cols.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
            break;
          case SQLITE_FLOAT: cols.emplace_back(sqlite3_column_double(stmt, c)); break;
          case SQLITE_NULL: cols.emplace_back(std::monostate{}); break;
          default: {  // TEXT or BLOB: the bytes as stored
            const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt, c));
            int len = sqlite3_column_bytes(stmt, c);
            cols.emplace_back(std::string(data != nullptr ? data : "", static_cast<size_t>(len)));
          }
        }
      }
      rows->emplace_back(std::move(cols));
    }
    if (rc != SQLITE_DONE) return errors_.note(sqlite_error(db, rc, "step"), is_busy(rc));
    if (changed != nullptr) *changed = sqlite3_stmt_readonly(stmt) ? 0 : sqlite3_changes64(db);
    return ok();
  }

  SqliteConn& conn_;
  const bool writable_;
  TxErrors errors_;
  int64_t last_seq_ = 0;
};

// Reader connections, lent out one per read().
class ReaderPool {
 public:
  class Lease {
   public:
    Lease(ReaderPool& pool, std::unique_ptr<SqliteConn> conn)
        : pool_(pool), conn_(std::move(conn)) {}
    ~Lease() { pool_.give_back(std::move(conn_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    SqliteConn& operator*() const { return *conn_; }

   private:
    ReaderPool& pool_;
    std::unique_ptr<SqliteConn> conn_;
  };

  void add(std::unique_ptr<SqliteConn> conn) { give_back(std::move(conn)); }

  Lease acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty(); });
    std::unique_ptr<SqliteConn> conn = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(conn));
  }

 private:
  void give_back(std::unique_ptr<SqliteConn> conn) {
    {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(conn));
    }
    cv_.notify_one();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<SqliteConn>> idle_;  // guarded by mu_
};

// Rolls back on every exit that did not commit, including an exception thrown by the
// caller's function.
class RollbackGuard {
 public:
  explicit RollbackGuard(SqliteConn& conn) : conn_(conn) {}
  ~RollbackGuard() {
    if (armed_) conn_.rollback();
  }
  RollbackGuard(const RollbackGuard&) = delete;
  RollbackGuard& operator=(const RollbackGuard&) = delete;
  void disarm() { armed_ = false; }

 private:
  SqliteConn& conn_;
  bool armed_ = true;
};

// The store in use for writing on this thread, to refuse a nested write() that would
// deadlock on the writer mutex.
thread_local const void* tl_writing = nullptr;

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> open(const SqliteOptions& o) {
    if (o.path.empty() || o.path == ":memory:" || o.path.starts_with("file:")) {
      return fail(Code::kInvalidArgument,
                  "SQLite store needs a database file path, not '" + o.path + "'");
    }
    if (o.reader_connections < 1)
      return fail(Code::kInvalidArgument, "SQLite store needs at least one reader connection");
    auto store = std::make_unique<SqliteStore>();
    // The writer first: it creates the file and switches it to WAL mode for everyone.
    CONCORD_ASSIGN_OR_RETURN(store->writer_, SqliteConn::open(o.path, o.busy_timeout_ms, true));
    for (int i = 0; i < o.reader_connections; ++i) {
      CONCORD_ASSIGN_OR_RETURN(auto reader, SqliteConn::open(o.path, o.busy_timeout_ms, false));
      store->readers_.add(std::move(reader));
    }
    CONCORD_RETURN_IF_ERROR(internal::apply_migrations(store->migration_writer(), Dialect::kSqlite,
                                                       internal::own_migrations(),
                                                       /*allow_own=*/true));
    return store;
  }

  Status migrate(std::span<const Migration> migrations) override {
    return internal::apply_migrations(migration_writer(), Dialect::kSqlite, migrations,
                                      /*allow_own=*/false);
  }

  Status write(const std::function<Status(Tx&)>& fn) override {
    return run_write([&](MigrationTx& tx) { return fn(tx); });
  }

  Status read(const std::function<Status(Tx&)>& fn) override {
    for (int attempt = 1;; ++attempt) {
      ReaderPool::Lease lease = readers_.acquire();
      SqliteConn& conn = *lease;
      Status st = conn.run("BEGIN");
      bool retry = !st && st.error().code() == Code::kUnavailable;
      if (st) {
        RollbackGuard guard(conn);
        SqliteTx tx(conn, /*writable=*/false);
        st = fn(tx);
        if (st && tx.errors().first()) st = fail(*tx.errors().first());
        retry = !st && tx.errors().retryable();
        if (st) {
          st = conn.run("COMMIT");
          if (st) guard.disarm();
        }
      }
      if (st || !retry) return st;
      if (attempt == kMaxAttempts) return fail(exhausted(st.error()));
      internal::backoff(attempt);
    }
  }

  Result<std::vector<Change>> changes_since(int64_t after, int limit) override {
    CONCORD_RETURN_IF_ERROR(internal::validate_limit(limit));
    CONCORD_ASSIGN_OR_RETURN(
        Rows rows, single_query(internal::kChangesSinceSql, {after, static_cast<int64_t>(limit)}));
    return internal::to_changes(rows);
  }

  Result<int64_t> last_change_seq() override {
    CONCORD_ASSIGN_OR_RETURN(Rows rows, single_query(internal::kLastSeqSql, {}));
    return rows.at(0).integer(0);
  }

  Result<int64_t> wait_for_changes(int64_t after, std::chrono::milliseconds timeout) override {
    return internal::wait_for_changes(
        signal_, [this] { return last_change_seq(); }, after, timeout, kPollInterval);
  }

  Dialect dialect() const override { return Dialect::kSqlite; }

 private:
  internal::MigrationWriteFn migration_writer() {
    return [this](const std::function<Status(MigrationTx&)>& fn) { return run_write(fn); };
  }

  static Error exhausted(const Error& last) {
    return Error(Code::kUnavailable, "SQLite database stayed busy after " +
                                         std::to_string(kMaxAttempts) +
                                         " attempts: " + last.message());
  }

  // One statement in autocommit mode on a reader (its own snapshot).
  Result<Rows> single_query(std::string_view sql, std::initializer_list<Value> params) {
    for (int attempt = 1;; ++attempt) {
      ReaderPool::Lease lease = readers_.acquire();
      SqliteTx tx(*lease, /*writable=*/false);
      Result<Rows> rows = tx.query(sql, params);
      if (rows || !tx.errors().retryable()) return rows;
      if (attempt == kMaxAttempts) return fail(exhausted(rows.error()));
      internal::backoff(attempt);
    }
  }

  Status run_write(const std::function<Status(MigrationTx&)>& fn) {
    if (tl_writing == this) {
      return fail(Code::kInternal,
                  "write() called inside write() of the same store; the writer is not re-entrant");
    }
    std::lock_guard lock(writer_mu_);
    const void* outer = tl_writing;
    tl_writing = this;
    struct Restore {
      const void* outer;
      ~Restore() { tl_writing = outer; }
    } restore{outer};

    for (int attempt = 1;; ++attempt) {
      bool retry = false;
      Status st = write_once(fn, retry);
      if (st || !retry) return st;
      if (attempt == kMaxAttempts) return fail(exhausted(st.error()));
      internal::backoff(attempt);
    }
  }

  Status write_once(const std::function<Status(MigrationTx&)>& fn, bool& retry) {
    SqliteConn& conn = *writer_;
    if (Status st = conn.run("BEGIN IMMEDIATE"); !st) {
      retry = st.error().code() == Code::kUnavailable;
      return st;
    }
    RollbackGuard guard(conn);
    SqliteTx tx(conn, /*writable=*/true);
    Status st = fn(tx);
    if (!st || tx.errors().first()) {
      retry = tx.errors().retryable();
      return st ? fail(*tx.errors().first()) : st;
    }
    if (Status c = conn.run("COMMIT"); !c) {
      retry = c.error().code() == Code::kUnavailable;
      return c;
    }
    guard.disarm();
    if (tx.last_seq() > 0) signal_.notify();
    return ok();
  }

  std::mutex writer_mu_;
  std::unique_ptr<SqliteConn> writer_;  // used only under writer_mu_
  ReaderPool readers_;
  internal::ChangeSignal signal_;
};

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite(const SqliteOptions& options) {
  CONCORD_ASSIGN_OR_RETURN(auto store, SqliteStore::open(options));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace concord::store

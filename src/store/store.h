#pragma once
// The state store: the one source of truth. Two implementations pass one test suite
// (tests/store/store_suite.cc): SQLite (embedded, one machine) and PostgreSQL (production,
// several server replicas).
//
// The interface is SQL, not key-value: capabilities own their tables (declared as
// migrations) and query them with parameterised statements written in the portable subset
// both engines accept:
//   * placeholders are `?`; the PostgreSQL backend rewrites them to $1..$n (outside quotes);
//   * types: TEXT, BIGINT (64-bit), DOUBLE PRECISION, BOOLEAN stored as BIGINT 0/1, BLOB is
//     not used (bytes go in TEXT as hex/base64);
//   * INSERT ... ON CONFLICT DO NOTHING / DO UPDATE, RETURNING, LIMIT/OFFSET work on both;
//   * a migration may give a PostgreSQL-specific text where the dialects differ;
//   * a `?` whose type its context does not fix (`SELECT ?`, `? IS NULL`) needs a cast,
//     `CAST(? AS TEXT)` / `CAST(? AS BIGINT)`: PostgreSQL infers parameter types from context;
//   * TEXT parameters must not hold NUL bytes (kInvalidArgument on both engines);
//   * SUM() of BIGINT is NUMERIC on PostgreSQL and comes back as a double: CAST it to BIGINT
//     where exactness matters.
// No SQL is ever built by concatenating values; identifiers (table/column names) come only
// from code.
//
// Conventions the store enforces or helps with:
//   * Optimistic concurrency: resource tables carry `revision BIGINT NOT NULL`. Writers update
//     with `... SET revision = revision + 1 WHERE id = ? AND revision = ?`; when no row
//     matched, `check_revision()` tells kNotFound from kAborted (stale revision).
//   * Change feed: a write transaction calls `Tx::record_change()` for every resource it
//     changes; the change becomes visible exactly when the transaction commits, in commit
//     order, with a strictly increasing `seq`. Controllers remember the last seq they
//     applied and call `Store::wait_for_changes()`; restarting from a remembered seq never
//     misses or reorders a change.
//   * Transactions: `write()` runs a function in one serialisable-enough transaction (SQLite:
//     BEGIN IMMEDIATE; PostgreSQL: a single writer lock for changes plus READ COMMITTED row
//     locks; a check-then-insert calls `Tx::serialize()` first) and commits iff the function
//     returns ok; transient conflicts (SQLITE_BUSY, serialization failures, deadlocks) are retried
//     a bounded number of times, so the function must be safe to run again (no side effects outside
//     the transaction).
//   * A failed statement dooms its transaction on both engines (PostgreSQL aborts it; SQLite
//     is made to agree): later statements fail with the same error, and write()/read()
//     return that first error even if the function ignored it. Use ON CONFLICT instead of
//     "insert, and on kAlreadyExists do something else" inside one transaction.
//   * Error codes: unique/primary-key violation -> kAlreadyExists; foreign-key violation ->
//     kFailedPrecondition; a write inside read() -> kFailedPrecondition; busy database,
//     serialization failure, deadlock or lost connection that retries did not cure ->
//     kUnavailable; bad data for a column type (PostgreSQL) -> kInvalidArgument; anything
//     else (SQL syntax, missing table, placeholder/parameter count mismatch) -> kInternal.
//
// The store owns two tables, created by the store itself when it opens (component "store"
// in schema_migrations): `schema_migrations` and the change feed `store_changes`. See
// docs/design/store.md.
//
// Thread safety: a Store is shared by all threads. A Tx belongs to the thread running the
// function it was handed to and must not escape it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"

namespace concord::store {

// A bound parameter or a column value. Booleans travel as int64 0/1.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

inline Value null() {
  return std::monostate{};
}

class Row {
 public:
  explicit Row(std::vector<Value> cols) : cols_(std::move(cols)) {}
  size_t size() const { return cols_.size(); }
  bool is_null(size_t i) const { return std::holds_alternative<std::monostate>(cols_.at(i)); }
  // Text of column i ("" when NULL). Integers are converted to their decimal text.
  std::string text(size_t i) const;
  std::optional<std::string> opt_text(size_t i) const;
  // Integer of column i (0 when NULL). PostgreSQL returns every column as text; the
  // backend converts by declared type, so callers never parse.
  int64_t integer(size_t i) const;
  double real(size_t i) const;
  bool boolean(size_t i) const { return integer(i) != 0; }
  const Value& value(size_t i) const { return cols_.at(i); }

 private:
  std::vector<Value> cols_;
};

using Rows = std::vector<Row>;

// One entry of the change feed.
struct Change {
  int64_t seq = 0;         // strictly increasing in commit order
  std::string kind;        // resource kind, e.g. "identity.project"
  std::string id;          // resource id
  std::string project_id;  // owning project ("" for global resources)
  std::string op;          // "create" | "update" | "delete"
  int64_t revision = 0;    // the resource revision after the change (0 on delete)
  std::string at;          // commit time, ISO 8601 UTC (informational)
};

enum class Dialect { kSqlite, kPostgres };

class Tx {
 public:
  virtual ~Tx() = default;

  // Runs a statement; returns the number of rows it changed.
  [[nodiscard]] virtual Result<int64_t> exec(std::string_view sql,
                                             std::span<const Value> params = {}) = 0;
  // Runs a query; returns all rows (callers bound result size with LIMIT).
  [[nodiscard]] virtual Result<Rows> query(std::string_view sql,
                                           std::span<const Value> params = {}) = 0;
  // Appends to the change feed; only valid inside write() (kFailedPrecondition in read()).
  // seq and at are assigned by the store. kInvalidArgument if kind or id is empty or op is
  // not create/update/delete.
  [[nodiscard]] virtual Status record_change(const Change& change) = 0;
  // For a check and the write it guards ("count, then insert if under the limit"; "is there
  // one already today?"): from this call on, the transaction runs alone among writers that
  // also called serialize() or record_change(), and every later statement sees what they
  // committed. SQLite's BEGIN IMMEDIATE already gives that; PostgreSQL (READ COMMITTED) takes
  // the change feed's writer lock now instead of at the first change. Only valid inside
  // write() (kFailedPrecondition in read()).
  [[nodiscard]] virtual Status serialize() = 0;

  virtual Dialect dialect() const = 0;

  // Convenience overloads taking an initializer list: tx.exec("... ?", {id, rev}).
  [[nodiscard]] Result<int64_t> exec(std::string_view sql, std::initializer_list<Value> params) {
    return exec(sql, std::span<const Value>(params.begin(), params.size()));
  }
  [[nodiscard]] Result<Rows> query(std::string_view sql, std::initializer_list<Value> params) {
    return query(sql, std::span<const Value>(params.begin(), params.size()));
  }
};

// One schema change of one component. Components (identity, usage, compute, ...) keep their
// own version sequence starting at 1; the store records (component, version) once applied.
struct Migration {
  std::string component;
  int version = 0;
  std::string description;
  std::string sql;           // portable text; may hold several statements separated by ';'
  std::string postgres_sql;  // if non-empty, used instead of `sql` on PostgreSQL
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies, in order and each in its own transaction, the migrations not yet recorded.
  // Idempotent. Fails with kFailedPrecondition if the database holds a migration of a
  // component with a version this binary does not know (a newer binary ran here); only
  // components present in `migrations` are checked, so capabilities may migrate separately.
  // kInvalidArgument for a malformed list (duplicate version, version < 1, the reserved
  // component "store"). A migration's text must not contain BEGIN/COMMIT. Several processes
  // may migrate the same database at once; each migration is applied once.
  [[nodiscard]] virtual Status migrate(std::span<const Migration> migrations) = 0;

  // Runs fn in a read-write transaction; see the header comment for retry rules.
  [[nodiscard]] virtual Status write(const std::function<Status(Tx&)>& fn) = 0;
  // Runs fn in a read-only snapshot; record_change() fails inside it.
  [[nodiscard]] virtual Status read(const std::function<Status(Tx&)>& fn) = 0;

  // Changes with seq > after, oldest first, at most `limit` (kInvalidArgument if < 1).
  [[nodiscard]] virtual Result<std::vector<Change>> changes_since(int64_t after, int limit) = 0;
  // The seq of the newest committed change (0 when none).
  [[nodiscard]] virtual Result<int64_t> last_change_seq() = 0;
  // Blocks until a change with seq > after is committed (by this or another process) or the
  // timeout passes; returns the newest seq seen. Used by controllers and caches.
  [[nodiscard]] virtual Result<int64_t> wait_for_changes(int64_t after,
                                                         std::chrono::milliseconds timeout) = 0;

  virtual Dialect dialect() const = 0;
};

// After an UPDATE/DELETE ... WHERE id = ? AND revision = ? changed no row: kNotFound if no row
// with that id exists in `table`, else kAborted (the caller's revision is stale).
[[nodiscard]] Status check_revision(Tx& tx, std::string_view table, std::string_view id);

struct SqliteOptions {
  std::string path;  // database file; ":memory:" is not supported (readers need the file)
  int busy_timeout_ms = 5000;
  int reader_connections = 4;
};
[[nodiscard]] Result<std::unique_ptr<Store>> open_sqlite(const SqliteOptions& options);

struct PostgresOptions {
  std::string conninfo;  // libpq connection string, e.g. "host=/tmp port=5433 dbname=concord"
  int connections = 4;
};
[[nodiscard]] Result<std::unique_ptr<Store>> open_postgres(const PostgresOptions& options);

// Opens by URL: "sqlite:///abs/path/concord.db" or "postgresql://..." / "postgres://...".
[[nodiscard]] Result<std::unique_ptr<Store>> open_store(const std::string& url);

}  // namespace concord::store

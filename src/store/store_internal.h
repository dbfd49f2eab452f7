#pragma once
// Pieces the SQLite and PostgreSQL backends share: the migration runner, the change-feed
// SQL, the in-process change signal and the wait loop built on it, transaction error
// bookkeeping, and the `?` -> `$n` placeholder rewrite. Not part of the public interface;
// only src/store and its tests include this header.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace concord::store::internal {

// A write transaction that can also run migration scripts. Both backends' transactions
// implement it; only the migration runner uses the extra methods.
class MigrationTx : public Tx {
 public:
  // Runs a text that may hold several statements, without parameters.
  [[nodiscard]] virtual Status exec_script(std::string_view sql) = 0;
  // Serialises migration runs of several processes sharing one database. SQLite's
  // BEGIN IMMEDIATE already does; PostgreSQL takes a transaction-scoped advisory lock.
  [[nodiscard]] virtual Status lock_migrations() = 0;
};

// Runs fn in a write transaction (with the backend's retries) and commits iff it returns ok.
using MigrationWriteFn = std::function<Status(const std::function<Status(MigrationTx&)>&)>;

// The store's own schema (component "store"): the change feed. Applied by open_sqlite() and
// open_postgres() before they return, so record_change() works before migrate() is called.
std::span<const Migration> own_migrations();
inline constexpr std::string_view kOwnComponent = "store";

// Creates schema_migrations if missing, refuses a database that holds a newer version of a
// listed component, then applies each pending migration in its own transaction together
// with its schema_migrations row. `allow_own` lets the backends apply component "store".
[[nodiscard]] Status apply_migrations(const MigrationWriteFn& write, Dialect dialect,
                                      std::span<const Migration> migrations, bool allow_own);

// The change feed, in the portable subset. The seq is MAX(seq)+1 computed inside the
// inserting transaction: with one writer at a time holding the change-feed lock (SQLite's
// single writer, PostgreSQL's advisory lock) this is gap-free and strictly increasing in
// commit order; a rolled-back transaction leaves no hole.
inline constexpr std::string_view kInsertChangeSql =
    "INSERT INTO store_changes (seq, kind, id, project_id, op, revision, at) VALUES ("
    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM store_changes), ?, ?, ?, ?, ?, ?) RETURNING seq";
inline constexpr std::string_view kLastSeqSql = "SELECT COALESCE(MAX(seq), 0) FROM store_changes";
inline constexpr std::string_view kChangesSinceSql =
    "SELECT seq, kind, id, project_id, op, revision, at FROM store_changes WHERE seq > ? "
    "ORDER BY seq LIMIT ?";

// kInvalidArgument for a change that cannot be meaningful to a watcher.
[[nodiscard]] Status validate_change(const Change& change);
std::vector<Value> change_params(const Change& change);
std::vector<Change> to_changes(const Rows& rows);
[[nodiscard]] Status validate_limit(int limit);

// Rejects string parameters holding a NUL byte on both backends: PostgreSQL's TEXT cannot
// hold one (libpq would silently truncate the value at it) and the two must agree.
[[nodiscard]] Status check_params(std::span<const Value> params);

// Error bookkeeping of one transaction. Once a statement fails the transaction is doomed on
// both backends (PostgreSQL aborts it anyway; SQLite is made to agree so code behaves the
// same on both): later statements fail with the first error, and write()/read() report the
// first error even if the function ignored it and returned ok.
class TxErrors {
 public:
  // Records e (if it is the first) and returns it, for `return note(...)`.
  std::unexpected<Error> note(Error e, bool retryable);
  // The error a statement gets after an earlier one failed; nullopt while healthy.
  std::optional<Error> doomed() const;
  const std::optional<Error>& first() const { return first_; }
  // True if a failure was transient (busy, serialization failure, deadlock, lost connection
  // before commit): the whole function may be run again in a fresh transaction.
  bool retryable() const { return retryable_; }

 private:
  std::optional<Error> first_;
  bool retryable_ = false;
};

// Wakes in-process change waiters. Backends call notify() after a commit that recorded
// changes, and the PostgreSQL listener after a NOTIFY from another process.
class ChangeSignal {
 public:
  void notify();
  uint64_t generation() const;
  // Blocks until notify() has been called since `seen` was read, or until `until`.
  void wait(uint64_t seen, std::chrono::steady_clock::time_point until) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  uint64_t generation_ = 0;  // guarded by mu_
};

// The wait_for_changes() loop: re-reads the newest seq whenever the signal fires or `poll`
// passes (which catches commits by other processes), until it exceeds `after` or the
// timeout passes. Reading the generation before the seq means a commit that lands between
// the two still wakes the wait, so nothing is slept through.
[[nodiscard]] Result<int64_t> wait_for_changes(const ChangeSignal& signal,
                                               const std::function<Result<int64_t>()>& newest,
                                               int64_t after, std::chrono::milliseconds timeout,
                                               std::chrono::milliseconds poll);

// Sleeps a short, growing, jittered time before retry `attempt` (1-based) of a transaction.
void backoff(int attempt);

// The current time as ISO 8601 UTC, for Change::at and schema_migrations.applied_at.
std::string now_iso();

// `?` placeholders rewritten to `$1..$n` for PostgreSQL, leaving single-quoted literals,
// double-quoted identifiers, `--` and (nested) `/* */` comments untouched.
struct RewrittenSql {
  std::string sql;
  int params = 0;
};
RewrittenSql rewrite_placeholders(std::string_view sql);

// Heterogeneous lookup for statement caches keyed by SQL text.
struct SqlHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Statement caches hold at most this many entries per connection; SQL text comes from code,
// so the set is small, and the cap only guards against a caller generating SQL.
inline constexpr size_t kStatementCacheLimit = 512;

}  // namespace concord::store::internal

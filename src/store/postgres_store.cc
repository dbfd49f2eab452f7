// The PostgreSQL backend, on libpq.
//
// Design: a small pool of connections, each with its own cache of server-side prepared
// statements keyed by the caller's SQL text (the `?` -> `$n` rewrite happens once, at
// prepare). Parameters and results travel in text format; results are converted by the
// column's type OID so callers get int64/double/NULL as on SQLite.
//
// Transactions: write() runs READ COMMITTED; optimistic concurrency (`... WHERE revision = ?`)
// is what protects read-modify-write, and a conflicting UPDATE simply matches no row.
// read() runs REPEATABLE READ READ ONLY: one snapshot for the whole function. Serialization
// failures, deadlocks and a connection lost before COMMIT make the whole function run again
// on a fresh transaction (a bounded number of times); a connection lost DURING COMMIT is
// reported as kUnavailable with an explicit "outcome unknown", because the commit may have
// happened. A broken connection is dropped from the pool and replaced on the next use.
//
// Change feed: see record_change() for why an advisory lock makes seq order commit order.
// Other processes' commits are announced by NOTIFY on the channel concord_store_changes; a
// listener thread with its own connection wakes local waiters, and waiters also poll MAX(seq)
// in case the listener is reconnecting.
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "base/log.h"
#include "store/store.h"
#include "store/store_internal.h"

namespace concord::store {
namespace {

using internal::MigrationTx;
using internal::TxErrors;

constexpr int kMaxAttempts = 5;
// Fallback poll of MAX(seq) for waiters; NOTIFY normally wakes them much sooner.
constexpr std::chrono::milliseconds kPollInterval{250};
// How long a transaction waits for a pooled connection before giving up.
constexpr std::chrono::seconds kPoolWait{30};
// Advisory lock keys ("CONCORD1"/"CONCORD2" as big-endian int64) for the change feed and for
// migration runs; arbitrary, but fixed so that every concord process agrees on them.
constexpr char kLockChangesSql[] =
    "SELECT pg_advisory_xact_lock(4850018398735492145), pg_notify('concord_store_changes', '')";
constexpr char kLockMigrationsSql[] = "SELECT pg_advisory_xact_lock(4850018398735492146)";

// Type OIDs from pg_type.h (stable across releases).
constexpr Oid kBoolOid = 16;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kNumericOid = 1700;

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConnPtr = std::unique_ptr<PGconn, PgConnDeleter>;

std::string trimmed(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

void log_notice(void* /*arg*/, const char* message) {
  logger("store")->debug("postgres: {}", trimmed(message));
}

// One pooled connection and its prepared-statement cache.
struct PgConn {
  struct Prepared {
    std::string name;
    int params = 0;
  };

  explicit PgConn(PgConnPtr c) : conn(std::move(c)) {}
  PGconn* get() const { return conn.get(); }

  PgConnPtr conn;
  std::unordered_map<std::string, Prepared, internal::SqlHash, std::equal_to<>> cache;
  uint64_t next_name = 0;
  uint64_t schema_epoch = 0;  // the store's schema epoch the cache was built under
  bool cache_stale = false;   // the server said a cached plan no longer fits the schema
  bool broken = false;        // dropped instead of returned to the pool
};

Result<PgConnPtr> connect(const std::string& conninfo) {
  PgConnPtr conn(PQconnectdb(conninfo.c_str()));
  if (!conn) return fail(Code::kUnavailable, "cannot connect to PostgreSQL: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return fail(Code::kUnavailable,
                "cannot connect to PostgreSQL: " + trimmed(PQerrorMessage(conn.get())));
  }
  PQsetNoticeProcessor(conn.get(), log_notice, nullptr);
  if (PQsetClientEncoding(conn.get(), "UTF8") != 0) {
    return fail(Code::kInternal,
                "PostgreSQL refused client_encoding UTF8: " + trimmed(PQerrorMessage(conn.get())));
  }
  return conn;
}

struct PgFailure {
  Error error;
  bool retryable = false;
  bool lost = false;
};

PgFailure classify(PgConn& c, const PGresult* r, std::string_view context) {
  const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string sqlstate = state != nullptr ? state : "";
  std::string msg = r != nullptr ? trimmed(PQresultErrorMessage(r)) : "";
  if (msg.empty()) msg = trimmed(PQerrorMessage(c.get()));
  msg = std::string(context) + ": " + msg;
  if (!sqlstate.empty()) msg += " [SQLSTATE " + sqlstate + "]";

  if (PQstatus(c.get()) == CONNECTION_BAD || sqlstate.starts_with("08") ||
      sqlstate.starts_with("57P")) {
    c.broken = true;
    return {Error(Code::kUnavailable, "PostgreSQL connection lost: " + msg), true, true};
  }
  if (sqlstate == "23505") return {Error(Code::kAlreadyExists, msg)};
  if (sqlstate == "23503") return {Error(Code::kFailedPrecondition, msg)};
  if (sqlstate == "40001" || sqlstate == "40P01") return {Error(Code::kUnavailable, msg), true};
  if (sqlstate == "25006") return {Error(Code::kFailedPrecondition, msg)};  // read-only tx
  if (sqlstate == "0A000" && msg.find("cached plan") != std::string::npos) {
    // Another process changed the schema under a cached statement: re-prepare and rerun.
    c.cache_stale = true;
    return {Error(Code::kUnavailable, msg), true};
  }
  if (sqlstate.starts_with("53")) return {Error(Code::kUnavailable, msg)};      // out of resources
  if (sqlstate.starts_with("22")) return {Error(Code::kInvalidArgument, msg)};  // bad data
  return {Error(Code::kInternal, msg)};
}

bool command_ok(const PGresult* r) {
  if (r == nullptr) return false;
  ExecStatusType s = PQresultStatus(r);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
}

// Runs a parameterless command outside the statement cache (BEGIN, COMMIT, DEALLOCATE).
Status simple(PgConn& c, const char* sql) {
  PgResult r(PQexec(c.get(), sql));
  if (command_ok(r.get())) return ok();
  return fail(classify(c, r.get(), sql).error);
}

std::string format_double(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest exact form
  return std::string(buf, end);
}

Value parse_double(const char* text, int len) {
  std::string_view s(text, static_cast<size_t>(len));
  if (s == "NaN") return std::nan("");
  if (s == "Infinity") return HUGE_VAL;
  if (s == "-Infinity") return -HUGE_VAL;
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || end != s.data() + s.size()) return std::string(s);  // keep the text
  return d;
}

Value parse_int(const char* text, int len) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text, text + len, n);
  if (ec != std::errc() || end != text + len) return std::string(text, static_cast<size_t>(len));
  return n;
}

Rows to_rows(const PGresult* r) {
  const int nrows = PQntuples(r);
  const int ncols = PQnfields(r);
  std::vector<Oid> types(static_cast<size_t>(ncols));
  for (int c = 0; c < ncols; ++c) types[static_cast<size_t>(c)] = PQftype(r, c);
  Rows rows;
  rows.reserve(static_cast<size_t>(nrows));
  for (int i = 0; i < nrows; ++i) {
    std::vector<Value> cols;
    cols.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      if (PQgetisnull(r, i, c)) {
        cols.emplace_back(std::monostate{});
        continue;
      }
      const char* text = PQgetvalue(r, i, c);
      const int len = PQgetlength(r, i, c);
      switch (types[static_cast<size_t>(c)]) {
        case kInt2Oid:
        case kInt4Oid:
        case kInt8Oid: cols.push_back(parse_int(text, len)); break;
        case kBoolOid: cols.emplace_back(int64_t{text[0] == 't' ? 1 : 0}); break;
        case kFloat4Oid:
        case kFloat8Oid:
        case kNumericOid: cols.push_back(parse_double(text, len)); break;
        default: cols.emplace_back(std::string(text, static_cast<size_t>(len)));
      }
    }
    rows.emplace_back(std::move(cols));
  }
  return rows;
}

class PgTx final : public MigrationTx {
 public:
  PgTx(PgConn& conn, bool writable) : c_(conn), writable_(writable) {}

  using Tx::exec;
  using Tx::query;

  Result<int64_t> exec(std::string_view sql, std::span<const Value> params) override {
    CONCORD_ASSIGN_OR_RETURN(PgResult r, run(sql, params));
    // A SELECT changes nothing (PostgreSQL would report the rows it returned; SQLite 0).
    if (std::string_view(PQcmdStatus(r.get())).starts_with("SELECT")) return int64_t{0};
    const char* tuples = PQcmdTuples(r.get());
    int64_t n = 0;
    if (tuples != nullptr && *tuples != '\0') std::from_chars(tuples, tuples + strlen(tuples), n);
    return n;
  }

  Result<Rows> query(std::string_view sql, std::span<const Value> params) override {
    CONCORD_ASSIGN_OR_RETURN(PgResult r, run(sql, params));
    return to_rows(r.get());
  }

  // Seq order must equal commit order, or a watcher that has read seq N could later see a
  // smaller seq appear and skip it. Under READ COMMITTED two transactions could each read
  // MAX(seq) and commit in either order; so the first change of a transaction takes a
  // transaction-scoped advisory lock, held until COMMIT/ROLLBACK. The next transaction
  // acquires it only after this one's commit is visible, and computes its seq in a later
  // statement (a fresh READ COMMITTED snapshot) that sees it: seqs are assigned and
  // committed one transaction at a time, gap-free. The same statement queues a NOTIFY,
  // which PostgreSQL delivers only if and when the transaction commits.
  Status record_change(const Change& change) override {
    if (!writable_)
      return fail(Code::kFailedPrecondition, "record_change() is only valid inside write()");
    CONCORD_RETURN_IF_ERROR(internal::validate_change(change));
    CONCORD_RETURN_IF_ERROR(serialize());
    std::vector<Value> params = internal::change_params(change);
    CONCORD_ASSIGN_OR_RETURN(Rows rows, query(internal::kInsertChangeSql, params));
    last_seq_ = rows.at(0).integer(0);
    return ok();
  }

  // The same lock as the change feed's, so a serialized check also waits for every writer
  // that records changes (all resource writes do).
  Status serialize() override {
    if (!writable_)
      return fail(Code::kFailedPrecondition, "serialize() is only valid inside write()");
    if (!changes_locked_) {
      CONCORD_RETURN_IF_ERROR(exec(kLockChangesSql, std::span<const Value>()));
      changes_locked_ = true;
    }
    return ok();
  }

  Dialect dialect() const override { return Dialect::kPostgres; }

  // PQexec runs a multi-statement text inside the open transaction.
  Status exec_script(std::string_view sql) override {
    if (auto d = errors_.doomed()) return fail(*d);
    PgResult r(PQexec(c_.get(), std::string(sql).c_str()));
    if (command_ok(r.get())) return ok();
    PgFailure f = classify(c_, r.get(), "migration");
    return errors_.note(f.error, f.retryable);
  }

  Status lock_migrations() override {
    CONCORD_RETURN_IF_ERROR(exec(kLockMigrationsSql, std::span<const Value>()));
    return ok();
  }

  const TxErrors& errors() const { return errors_; }
  int64_t last_seq() const { return last_seq_; }

 private:
  Result<PgResult> run(std::string_view sql, std::span<const Value> params) {
    if (auto d = errors_.doomed()) return fail(*d);
    if (Status st = internal::check_params(params); !st) return errors_.note(st.error(), false);

    const int n = static_cast<int>(params.size());
    std::vector<std::string> text(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      const Value& v = params[i];
      if (const auto* num = std::get_if<int64_t>(&v)) {
        text[i] = std::to_string(*num);
        values[i] = text[i].c_str();
      } else if (const auto* d = std::get_if<double>(&v)) {
        text[i] = format_double(*d);
        values[i] = text[i].c_str();
      } else if (const auto* s = std::get_if<std::string>(&v)) {
        values[i] = s->c_str();
      }
    }

    PGresult* raw = nullptr;
    auto it = c_.cache.find(sql);
    if (it != c_.cache.end()) {
      if (it->second.params != n) return mismatch(it->second.params, n);
      raw =
          PQexecPrepared(c_.get(), it->second.name.c_str(), n, values.data(), nullptr, nullptr, 0);
    } else {
      internal::RewrittenSql rw = internal::rewrite_placeholders(sql);
      if (rw.params != n) return mismatch(rw.params, n);
      if (c_.cache.size() < internal::kStatementCacheLimit) {
        std::string name = "concord_" + std::to_string(++c_.next_name);
        PgResult prepared(PQprepare(c_.get(), name.c_str(), rw.sql.c_str(), n, nullptr));
        if (!command_ok(prepared.get())) {
          PgFailure f = classify(c_, prepared.get(), "prepare");
          return errors_.note(f.error, f.retryable);
        }
        c_.cache.emplace(std::string(sql), PgConn::Prepared{name, n});
        raw = PQexecPrepared(c_.get(), name.c_str(), n, values.data(), nullptr, nullptr, 0);
      } else {
        raw =
            PQexecParams(c_.get(), rw.sql.c_str(), n, nullptr, values.data(), nullptr, nullptr, 0);
      }
    }
    PgResult r(raw);
    if (!command_ok(r.get())) {
      PgFailure f = classify(c_, r.get(), "statement");
      return errors_.note(f.error, f.retryable);
    }
    return r;
  }

  std::unexpected<Error> mismatch(int expected, int given) {
    return errors_.note(
        Error(Code::kInternal, "statement has " + std::to_string(expected) + " placeholders but " +
                                   std::to_string(given) + " parameters were given"),
        false);
  }

  PgConn& c_;
  const bool writable_;
  TxErrors errors_;
  bool changes_locked_ = false;
  int64_t last_seq_ = 0;
};

// Wakes local waiters when another process commits changes: LISTENs on its own connection in
// a thread, reconnecting after a failure. Stopped through a pipe so poll() needs no timeout.
class PgListener {
 public:
  PgListener(std::string conninfo, internal::ChangeSignal& signal)
      : conninfo_(std::move(conninfo)), signal_(signal) {}
  ~PgListener() { stop(); }
  PgListener(const PgListener&) = delete;
  PgListener& operator=(const PgListener&) = delete;

  Status start() {
    if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0)
      return fail(Code::kInternal,
                  "pipe2 failed: " + std::string(std::system_category().message(errno)));
    thread_ = std::thread([this] { run(); });
    return ok();
  }

  void stop() {
    if (!thread_.joinable()) return;
    char byte = 1;
    while (::write(wake_[1], &byte, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
    close(wake_[0]);
    close(wake_[1]);
  }

 private:
  // Waits for the stop pipe up to `ms`; true if asked to stop.
  bool stopped_within(int ms) {
    pollfd p{wake_[0], POLLIN, 0};
    return poll(&p, 1, ms) > 0;
  }

  void run() {
    PgConnPtr conn;
    for (;;) {
      if (!conn) {
        auto made = connect(conninfo_);
        if (made) {
          PgResult r(PQexec(made->get(), "LISTEN concord_store_changes"));
          if (command_ok(r.get())) conn = std::move(*made);
        }
        if (!conn) {
          logger("store")->warn("postgres change listener cannot connect; retrying in 1s");
          if (stopped_within(1000)) return;
          continue;
        }
        signal_.notify();  // commits may have happened while nobody listened
      }
      pollfd fds[2] = {{PQsocket(conn.get()), POLLIN, 0}, {wake_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        logger("store")->error("postgres change listener: poll failed: {}",
                               std::system_category().message(errno));
        if (stopped_within(1000)) return;
        continue;
      }
      if (fds[1].revents != 0) return;
      if (fds[0].revents == 0) continue;
      if (PQconsumeInput(conn.get()) == 0) {
        logger("store")->warn("postgres change listener lost its connection: {}",
                              trimmed(PQerrorMessage(conn.get())));
        conn.reset();
        continue;
      }
      bool notified = false;
      while (PGnotify* note = PQnotifies(conn.get())) {
        PQfreemem(note);
        notified = true;
      }
      if (notified) signal_.notify();
    }
  }

  std::string conninfo_;
  internal::ChangeSignal& signal_;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

thread_local const void* tl_writing = nullptr;

class PgStore final : public Store {
 public:
  explicit PgStore(const PostgresOptions& o)
      : conninfo_(o.conninfo), max_connections_(o.connections), listener_(o.conninfo, signal_) {}

  static Result<std::unique_ptr<PgStore>> open(const PostgresOptions& o) {
    char* err = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(o.conninfo.c_str(), &err);
    if (parsed == nullptr) {
      std::string why = err != nullptr ? trimmed(err) : "out of memory";
      PQfreemem(err);
      return fail(Code::kInvalidArgument, "bad PostgreSQL connection string: " + why);
    }
    PQconninfoFree(parsed);
    if (o.connections < 1)
      return fail(Code::kInvalidArgument, "PostgreSQL store needs at least one connection");

    auto store = std::make_unique<PgStore>(o);
    {
      // Connect now, so a wrong address fails at open rather than at the first request.
      bool retryable = false;
      CONCORD_ASSIGN_OR_RETURN(Lease lease, store->acquire(retryable));
    }
    CONCORD_RETURN_IF_ERROR(
        internal::apply_migrations(store->migration_writer(), Dialect::kPostgres,
                                   internal::own_migrations(), /*allow_own=*/true));
    CONCORD_RETURN_IF_ERROR(store->listener_.start());
    return store;
  }

  ~PgStore() override { listener_.stop(); }

  Status migrate(std::span<const Migration> migrations) override {
    Status st = internal::apply_migrations(migration_writer(), Dialect::kPostgres, migrations,
                                           /*allow_own=*/false);
    schema_epoch_.fetch_add(1);  // cached plans may predate the new schema
    return st;
  }

  Status write(const std::function<Status(Tx&)>& fn) override {
    return run_write([&](MigrationTx& tx) { return fn(tx); });
  }

  Status read(const std::function<Status(Tx&)>& fn) override {
    for (int attempt = 1;; ++attempt) {
      bool retry = false;
      Status st = read_once(fn, retry);
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

  Dialect dialect() const override { return Dialect::kPostgres; }

 private:
  // A connection borrowed from the pool; returned (or dropped if broken) on destruction.
  class Lease {
   public:
    Lease(PgStore* store, std::unique_ptr<PgConn> conn) : store_(store), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_) store_->give_back(std::move(conn_));
    }
    PgConn& operator*() const { return *conn_; }

   private:
    PgStore* store_;
    std::unique_ptr<PgConn> conn_;
  };

  // Rolls back on every exit that did not commit, including an exception from the caller.
  class RollbackGuard {
   public:
    explicit RollbackGuard(PgConn& c) : c_(c) {}
    ~RollbackGuard() { rollback(); }
    RollbackGuard(const RollbackGuard&) = delete;
    RollbackGuard& operator=(const RollbackGuard&) = delete;
    void disarm() { armed_ = false; }
    void rollback() {
      if (!armed_) return;
      armed_ = false;
      if (!c_.broken && !simple(c_, "ROLLBACK")) c_.broken = true;
    }

   private:
    PgConn& c_;
    bool armed_ = true;
  };

  // `retryable` tells a failed connect (the server may come back) from a pool that stayed
  // exhausted (retrying would only wait again).
  Result<Lease> acquire(bool& retryable) {
    retryable = false;
    std::unique_ptr<PgConn> conn;
    {
      std::unique_lock lock(pool_mu_);
      // Bounded, so that a read() nested in a write() on every pooled connection at once
      // fails instead of deadlocking.
      if (!pool_cv_.wait_for(lock, kPoolWait,
                             [&] { return !idle_.empty() || open_ < max_connections_; })) {
        return fail(Code::kUnavailable, "all " + std::to_string(max_connections_) +
                                            " PostgreSQL connections stayed busy for " +
                                            std::to_string(kPoolWait.count()) + " s");
      }
      if (!idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      } else {
        ++open_;
      }
    }
    if (!conn) {
      auto made = connect(conninfo_);
      if (!made) {
        {
          std::lock_guard lock(pool_mu_);
          --open_;
        }
        pool_cv_.notify_one();
        retryable = true;
        return fail(made.error());
      }
      conn = std::make_unique<PgConn>(std::move(*made));
      conn->schema_epoch = schema_epoch_.load();
    }
    Lease lease(this, std::move(conn));
    PgConn& c = *lease;
    uint64_t epoch = schema_epoch_.load();
    if (c.schema_epoch != epoch || c.cache_stale) {
      if (Status st = simple(c, "DEALLOCATE ALL"); !st) {
        retryable = c.broken;
        return fail(st.error());
      }
      c.cache.clear();
      c.schema_epoch = epoch;
      c.cache_stale = false;
    }
    return lease;
  }

  void give_back(std::unique_ptr<PgConn> conn) {
    bool healthy = !conn->broken && PQstatus(conn->get()) == CONNECTION_OK &&
                   PQtransactionStatus(conn->get()) == PQTRANS_IDLE;
    {
      std::lock_guard lock(pool_mu_);
      if (healthy) {
        idle_.push_back(std::move(conn));
      } else {
        --open_;  // replaced by a fresh connection on the next acquire()
      }
    }
    pool_cv_.notify_one();
  }

  internal::MigrationWriteFn migration_writer() {
    return [this](const std::function<Status(MigrationTx&)>& fn) { return run_write(fn); };
  }

  static Error exhausted(const Error& last) {
    return Error(Code::kUnavailable, "PostgreSQL transaction still failing after " +
                                         std::to_string(kMaxAttempts) +
                                         " attempts: " + last.message());
  }

  Status run_write(const std::function<Status(MigrationTx&)>& fn) {
    if (tl_writing == this) {
      return fail(Code::kInternal,
                  "write() called inside write() of the same store; the writer is not re-entrant");
    }
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
    auto lease = acquire(retry);
    if (!lease) return fail(lease.error());
    PgConn& c = **lease;
    if (Status st = simple(c, "BEGIN ISOLATION LEVEL READ COMMITTED"); !st) {
      retry = c.broken;
      return st;
    }
    RollbackGuard guard(c);
    PgTx tx(c, /*writable=*/true);
    Status st = fn(tx);
    if (!st || tx.errors().first()) {
      retry = tx.errors().retryable();
      guard.rollback();
      return st ? fail(*tx.errors().first()) : st;
    }
    guard.disarm();
    PgResult r(PQexec(c.get(), "COMMIT"));
    if (!command_ok(r.get())) {
      PgFailure f = classify(c, r.get(), "COMMIT");
      if (f.lost) {
        return fail(Code::kUnavailable,
                    "the connection was lost during COMMIT; the transaction may or may not have "
                    "committed: " +
                        f.error.message());
      }
      retry = f.retryable;  // the server rolled it back
      return fail(f.error);
    }
    if (std::string_view(PQcmdStatus(r.get())) != "COMMIT")
      return fail(Code::kInternal, "PostgreSQL rolled the transaction back at COMMIT");
    if (tx.last_seq() > 0) signal_.notify();
    return ok();
  }

  Status read_once(const std::function<Status(Tx&)>& fn, bool& retry) {
    auto lease = acquire(retry);
    if (!lease) return fail(lease.error());
    PgConn& c = **lease;
    if (Status st = simple(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !st) {
      retry = c.broken;
      return st;
    }
    RollbackGuard guard(c);
    PgTx tx(c, /*writable=*/false);
    Status st = fn(tx);
    if (st && tx.errors().first()) st = fail(*tx.errors().first());
    if (!st) {
      retry = tx.errors().retryable();
      return st;
    }
    // Everything was read; a failing COMMIT of a read-only transaction changes nothing
    // (a broken connection is noted and dropped by the guard/lease).
    guard.disarm();
    if (!simple(c, "COMMIT")) c.broken = true;
    return ok();
  }

  // One statement in autocommit mode (its own snapshot).
  Result<Rows> single_query(std::string_view sql, std::initializer_list<Value> params) {
    for (int attempt = 1;; ++attempt) {
      bool retry = false;
      Result<Rows> rows = [&]() -> Result<Rows> {
        auto lease = acquire(retry);
        if (!lease) return fail(lease.error());
        PgTx tx(**lease, /*writable=*/false);
        Result<Rows> out = tx.query(sql, params);
        retry = !out && tx.errors().retryable();
        return out;
      }();
      if (rows || !retry) return rows;
      if (attempt == kMaxAttempts) return fail(exhausted(rows.error()));
      internal::backoff(attempt);
    }
  }

  const std::string conninfo_;
  const int max_connections_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<PgConn>> idle_;  // guarded by pool_mu_
  int open_ = 0;                               // guarded by pool_mu_; idle + lent out
  std::atomic<uint64_t> schema_epoch_{0};
  internal::ChangeSignal signal_;
  PgListener listener_;
};

}  // namespace

Result<std::unique_ptr<Store>> open_postgres(const PostgresOptions& options) {
  CONCORD_ASSIGN_OR_RETURN(auto store, PgStore::open(options));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace concord::store

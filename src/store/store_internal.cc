#include "store/store_internal.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "base/time_format.h"

namespace concord::store::internal {
namespace {

const Migration kOwnMigrations[] = {
    {"store", 1, "change feed",
     // INTEGER PRIMARY KEY makes seq SQLite's rowid: MAX(seq) is one b-tree descent.
     "CREATE TABLE store_changes ("
     " seq INTEGER PRIMARY KEY,"
     " kind TEXT NOT NULL,"
     " id TEXT NOT NULL,"
     " project_id TEXT NOT NULL,"
     " op TEXT NOT NULL,"
     " revision BIGINT NOT NULL,"
     " at TEXT NOT NULL)",
     "CREATE TABLE store_changes ("
     " seq BIGINT PRIMARY KEY,"
     " kind TEXT NOT NULL,"
     " id TEXT NOT NULL,"
     " project_id TEXT NOT NULL,"
     " op TEXT NOT NULL,"
     " revision BIGINT NOT NULL,"
     " at TEXT NOT NULL)"},
};

constexpr std::string_view kCreateSchemaMigrations =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " component TEXT NOT NULL,"
    " version BIGINT NOT NULL,"
    " description TEXT NOT NULL,"
    " applied_at TEXT NOT NULL,"
    " PRIMARY KEY (component, version))";

std::string describe(const Migration& m) {
  return "migration " + m.component + " v" + std::to_string(m.version) + " (" + m.description + ")";
}

Status validate_list(std::span<const Migration> migrations, bool allow_own) {
  std::set<std::pair<std::string, int>> seen;
  for (const Migration& m : migrations) {
    if (m.component.empty())
      return fail(Code::kInvalidArgument, describe(m) + ": component name is empty");
    if (m.component == kOwnComponent && !allow_own)
      return fail(Code::kInvalidArgument,
                  describe(m) + ": component name 'store' is reserved for the store itself");
    if (m.version < 1) return fail(Code::kInvalidArgument, describe(m) + ": versions start at 1");
    if (m.sql.empty()) return fail(Code::kInvalidArgument, describe(m) + ": empty SQL");
    if (!seen.emplace(m.component, m.version).second)
      return fail(Code::kInvalidArgument, describe(m) + ": listed twice");
  }
  return ok();
}

}  // namespace

std::span<const Migration> own_migrations() {
  return kOwnMigrations;
}

Status apply_migrations(const MigrationWriteFn& write, Dialect dialect,
                        std::span<const Migration> migrations, bool allow_own) {
  CONCORD_RETURN_IF_ERROR(validate_list(migrations, allow_own));

  // Components in the order they first appear, each with its migrations by version.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const Migration*>> by_component;
  for (const Migration& m : migrations) {
    auto& list = by_component[m.component];
    if (list.empty()) order.push_back(m.component);
    list.push_back(&m);
  }
  for (auto& [component, list] : by_component) {
    std::sort(list.begin(), list.end(),
              [](const Migration* a, const Migration* b) { return a->version < b->version; });
  }

  std::map<std::string, std::set<int64_t>> applied;
  Status st = write([&](MigrationTx& tx) -> Status {
    applied.clear();  // the function may run more than once
    CONCORD_RETURN_IF_ERROR(tx.lock_migrations());
    CONCORD_RETURN_IF_ERROR(tx.exec_script(kCreateSchemaMigrations));
    CONCORD_ASSIGN_OR_RETURN(Rows rows,
                             tx.query("SELECT component, version FROM schema_migrations"));
    for (const Row& r : rows) applied[r.text(0)].insert(r.integer(1));
    return ok();
  });
  if (!st) {
    return fail(st.error().code(),
                "cannot read schema_migrations: " + std::string(st.error().message()));
  }

  // Refuse before changing anything: a newer binary has run against this database, and its
  // schema may no longer be what this binary's SQL expects.
  for (const std::string& component : order) {
    auto it = applied.find(component);
    if (it == applied.end() || it->second.empty()) continue;
    int64_t db_max = *it->second.rbegin();
    int known_max = by_component[component].back()->version;
    if (db_max > known_max) {
      return fail(Code::kFailedPrecondition,
                  "database holds schema version " + std::to_string(db_max) + " of component '" +
                      component + "' but this binary knows only up to version " +
                      std::to_string(known_max) + "; a newer concord has migrated it");
    }
  }

  for (const std::string& component : order) {
    for (const Migration* m : by_component[component]) {
      if (applied[component].contains(m->version)) continue;
      const std::string& sql =
          dialect == Dialect::kPostgres && !m->postgres_sql.empty() ? m->postgres_sql : m->sql;
      Status applied_one = write([&](MigrationTx& tx) -> Status {
        CONCORD_RETURN_IF_ERROR(tx.lock_migrations());
        // Another process may have applied it since we looked.
        CONCORD_ASSIGN_OR_RETURN(
            Rows done,
            tx.query("SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?",
                     {m->component, int64_t{m->version}}));
        if (!done.empty()) return ok();
        CONCORD_RETURN_IF_ERROR(tx.exec_script(sql));
        CONCORD_RETURN_IF_ERROR(
            tx.exec("INSERT INTO schema_migrations (component, version, description, applied_at)"
                    " VALUES (?, ?, ?, ?)",
                    {m->component, int64_t{m->version}, m->description, now_iso()}));
        return ok();
      });
      if (!applied_one) {
        return fail(applied_one.error().code(),
                    describe(*m) + " failed: " + std::string(applied_one.error().message()));
      }
    }
  }
  return ok();
}

Status validate_change(const Change& c) {
  if (c.kind.empty()) return fail(Code::kInvalidArgument, "change: kind is required");
  if (c.id.empty()) return fail(Code::kInvalidArgument, "change: id is required");
  if (c.op != "create" && c.op != "update" && c.op != "delete") {
    return fail(Code::kInvalidArgument,
                "change: op must be create, update or delete, not '" + c.op + "'");
  }
  if (c.revision < 0) return fail(Code::kInvalidArgument, "change: revision is negative");
  return ok();
}

std::vector<Value> change_params(const Change& c) {
  return {c.kind, c.id, c.project_id, c.op, c.revision, now_iso()};
}

std::vector<Change> to_changes(const Rows& rows) {
  std::vector<Change> out;
  out.reserve(rows.size());
  for (const Row& r : rows) {
    Change c;
    c.seq = r.integer(0);
    c.kind = r.text(1);
    c.id = r.text(2);
    c.project_id = r.text(3);
    c.op = r.text(4);
    c.revision = r.integer(5);
    c.at = r.text(6);
    out.push_back(std::move(c));
  }
  return out;
}

Status validate_limit(int limit) {
  if (limit < 1) return fail(Code::kInvalidArgument, "changes_since: limit must be at least 1");
  return ok();
}

Status check_params(std::span<const Value> params) {
  for (size_t i = 0; i < params.size(); ++i) {
    const auto* s = std::get_if<std::string>(&params[i]);
    if (s != nullptr && s->find('\0') != std::string::npos) {
      return fail(Code::kInvalidArgument,
                  "parameter " + std::to_string(i + 1) +
                      " holds a NUL byte; TEXT cannot store one (encode bytes as hex/base64)");
    }
  }
  return ok();
}

std::unexpected<Error> TxErrors::note(Error e, bool retryable) {
  if (!first_) first_ = e;
  retryable_ = retryable_ || retryable;
  return std::unexpected<Error>(std::move(e));
}

std::optional<Error> TxErrors::doomed() const {
  if (!first_) return std::nullopt;
  return Error(first_->code(),
               "an earlier statement of this transaction failed: " + first_->message());
}

void ChangeSignal::notify() {
  {
    std::lock_guard lock(mu_);
    ++generation_;
  }
  cv_.notify_all();
}

uint64_t ChangeSignal::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

void ChangeSignal::wait(uint64_t seen, std::chrono::steady_clock::time_point until) const {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, until, [&] { return generation_ != seen; });
}

Result<int64_t> wait_for_changes(const ChangeSignal& signal,
                                 const std::function<Result<int64_t>()>& newest, int64_t after,
                                 std::chrono::milliseconds timeout,
                                 std::chrono::milliseconds poll) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  for (;;) {
    uint64_t seen = signal.generation();
    CONCORD_ASSIGN_OR_RETURN(int64_t seq, newest());
    auto now = Clock::now();
    if (seq > after || now >= deadline) return seq;
    signal.wait(seen, std::min(deadline, now + poll));
  }
}

void backoff(int attempt) {
  thread_local std::minstd_rand rng(std::random_device{}());
  int cap_ms = 1 << std::min(attempt, 6);  // 2, 4, ... 64 ms
  std::uniform_int_distribution<int> dist(1, cap_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(dist(rng)));
}

std::string now_iso() {
  return format_keystone_time(std::chrono::system_clock::now());
}

RewrittenSql rewrite_placeholders(std::string_view in) {
  RewrittenSql out;
  out.sql.reserve(in.size() + 16);
  size_t i = 0;
  const size_t n = in.size();
  // Copies a quoted run starting at i (the opening quote); a doubled quote is an escape.
  auto copy_quoted = [&](char quote) {
    size_t j = i + 1;
    while (j < n) {
      if (in[j] == quote) {
        if (j + 1 < n && in[j + 1] == quote) {
          j += 2;
          continue;
        }
        ++j;
        break;
      }
      ++j;
    }
    out.sql.append(in.substr(i, j - i));
    i = j;
  };
  while (i < n) {
    char c = in[i];
    if (c == '\'' || c == '"') {
      copy_quoted(c);
    } else if (c == '-' && i + 1 < n && in[i + 1] == '-') {
      size_t end = in.find('\n', i);
      end = end == std::string_view::npos ? n : end;
      out.sql.append(in.substr(i, end - i));
      i = end;
    } else if (c == '/' && i + 1 < n && in[i + 1] == '*') {
      // PostgreSQL block comments nest.
      size_t j = i + 2;
      int depth = 1;
      while (j < n && depth > 0) {
        if (in[j] == '/' && j + 1 < n && in[j + 1] == '*') {
          ++depth;
          j += 2;
        } else if (in[j] == '*' && j + 1 < n && in[j + 1] == '/') {
          --depth;
          j += 2;
        } else {
          ++j;
        }
      }
      out.sql.append(in.substr(i, j - i));
      i = j;
    } else if (c == '?') {
      out.sql += '$';
      out.sql += std::to_string(++out.params);
      ++i;
    } else {
      out.sql += c;
      ++i;
    }
  }
  return out;
}

}  // namespace concord::store::internal

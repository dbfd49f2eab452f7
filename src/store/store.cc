#include "store/store.h"

#include <charconv>

namespace concord::store {

std::string Row::text(size_t i) const {
  const Value& v = cols_.at(i);
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  if (auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  if (auto* d = std::get_if<double>(&v)) return std::to_string(*d);
  return {};
}

std::optional<std::string> Row::opt_text(size_t i) const {
  if (is_null(i)) return std::nullopt;
  return text(i);
}

int64_t Row::integer(size_t i) const {
  const Value& v = cols_.at(i);
  if (auto* n = std::get_if<int64_t>(&v)) return *n;
  if (auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  if (auto* s = std::get_if<std::string>(&v)) {
    int64_t out = 0;
    std::from_chars(s->data(), s->data() + s->size(), out);
    return out;
  }
  return 0;
}

double Row::real(size_t i) const {
  const Value& v = cols_.at(i);
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
  if (auto* s = std::get_if<std::string>(&v)) {
    double out = 0;
    std::from_chars(s->data(), s->data() + s->size(), out);
    return out;
  }
  return 0;
}

Status check_revision(Tx& tx, std::string_view table, std::string_view id) {
  // `table` comes from code, never from a request (see store.h).
  std::string sql = "SELECT 1 FROM " + std::string(table) + " WHERE id = ?";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {std::string(id)}));
  if (rows.empty())
    return fail(Code::kNotFound, std::string(table) + " " + std::string(id) + " not found");
  return fail(Code::kAborted,
              std::string(table) + " " + std::string(id) + " was changed concurrently");
}

Result<std::unique_ptr<Store>> open_store(const std::string& url) {
  constexpr std::string_view kSqlite = "sqlite://";
  if (url.starts_with(kSqlite)) {
    SqliteOptions o;
    o.path = url.substr(kSqlite.size());
    if (o.path.empty())
      return fail(Code::kInvalidArgument, "sqlite URL needs a path: sqlite:///abs/path.db");
    return open_sqlite(o);
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    PostgresOptions o;
    o.conninfo = url;
    return open_postgres(o);
  }
  return fail(Code::kInvalidArgument,
              "unsupported store URL '" + url + "' (sqlite:///path or postgresql://...)");
}

}  // namespace concord::store

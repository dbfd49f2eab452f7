#include "usage/usage_ledger.h"

#include "base/time_format.h"

namespace concord::usage {

std::vector<store::Migration> migrations() {
  return {
      {"usage", 1, "usage ledger",
       // start_us/end_us are microseconds since the epoch: comparable and index-friendly on
       // both engines; the ISO text is kept for people reading the table.
       "CREATE TABLE usage_events ("
       " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
       " event_id TEXT NOT NULL UNIQUE,"
       " project_id TEXT NOT NULL,"
       " resource_id TEXT NOT NULL,"
       " resource_type TEXT NOT NULL,"
       " kind TEXT NOT NULL,"
       " quantity TEXT NOT NULL,"
       " unit TEXT NOT NULL,"
       " start_us BIGINT NOT NULL,"
       " end_us BIGINT NOT NULL,"
       " publisher_id TEXT NOT NULL,"
       " region TEXT NOT NULL,"
       " recorded_at TEXT NOT NULL);"
       "CREATE INDEX usage_events_project ON usage_events(project_id, end_us);",
       "CREATE TABLE usage_events ("
       " seq BIGSERIAL PRIMARY KEY,"
       " event_id TEXT NOT NULL UNIQUE,"
       " project_id TEXT NOT NULL,"
       " resource_id TEXT NOT NULL,"
       " resource_type TEXT NOT NULL,"
       " kind TEXT NOT NULL,"
       " quantity TEXT NOT NULL,"
       " unit TEXT NOT NULL,"
       " start_us BIGINT NOT NULL,"
       " end_us BIGINT NOT NULL,"
       " publisher_id TEXT NOT NULL,"
       " region TEXT NOT NULL,"
       " recorded_at TEXT NOT NULL);"
       "CREATE INDEX usage_events_project ON usage_events(project_id, end_us);"},
  };
}

namespace {

int64_t micros(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

Status validate(const UsageEvent& e) {
  auto bad = [](std::string what) { return fail(Code::kInvalidArgument, "usage event: " + what); };
  if (e.event_id.empty() || e.event_id.size() > 255) return bad("event_id must be 1-255 bytes");
  if (e.project_id.empty()) return bad("project_id is required");
  if (e.resource_id.empty()) return bad("resource_id is required");
  if (e.resource_type.empty()) return bad("resource_type is required");
  if (e.kind.empty()) return bad("kind is required");
  if (e.unit.empty()) return bad("unit is required");
  if (!is_decimal(e.quantity))
    return bad("quantity '" + e.quantity + "' is not a non-negative decimal");
  if (e.end < e.start) return bad("end is before start");
  return ok();
}

}  // namespace

bool is_decimal(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  size_t i = 0;
  size_t int_digits = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    ++i;
    ++int_digits;
  }
  if (int_digits == 0) return false;
  if (i == text.size()) return true;
  if (text[i] != '.') return false;
  ++i;
  size_t frac_digits = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    ++i;
    ++frac_digits;
  }
  return frac_digits > 0 && i == text.size();
}

Result<bool> append(store::Tx& tx, const UsageEvent& e) {
  CONCORD_RETURN_IF_ERROR(validate(e));
  std::string recorded_at = format_keystone_time(std::chrono::system_clock::now());
  CONCORD_ASSIGN_OR_RETURN(
      int64_t changed,
      tx.exec("INSERT INTO usage_events (event_id, project_id, resource_id, resource_type, kind,"
              " quantity, unit, start_us, end_us, publisher_id, region, recorded_at)"
              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
              {e.event_id, e.project_id, e.resource_id, e.resource_type, e.kind, e.quantity, e.unit,
               micros(e.start), micros(e.end), e.publisher_id, e.region, recorded_at}));
  return changed == 1;
}

Result<std::vector<StoredUsageEvent>> list(store::Tx& tx, const UsageFilter& f) {
  // One statement whose optional filters are disabled by NULL parameters, so the SQL text is
  // fixed (cached as one prepared statement) and no SQL is assembled from input.
  store::Value project = f.project_id ? store::Value(*f.project_id) : store::null();
  store::Value from = f.from ? store::Value(micros(*f.from)) : store::null();
  store::Value to = f.to ? store::Value(micros(*f.to)) : store::null();
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT seq, event_id, project_id, resource_id, resource_type, kind, quantity, unit,"
               " start_us, end_us, publisher_id, region, recorded_at FROM usage_events"
               " WHERE seq > ?"
               " AND (CAST(? AS TEXT) IS NULL OR project_id = ?)"
               " AND (CAST(? AS BIGINT) IS NULL OR end_us >= ?)"
               " AND (CAST(? AS BIGINT) IS NULL OR start_us < ?)"
               " ORDER BY seq LIMIT ?",
               {f.after_seq, project, project, from, from, to, to, int64_t{f.limit}}));
  std::vector<StoredUsageEvent> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    StoredUsageEvent s;
    s.seq = r.integer(0);
    s.event.event_id = r.text(1);
    s.event.project_id = r.text(2);
    s.event.resource_id = r.text(3);
    s.event.resource_type = r.text(4);
    s.event.kind = r.text(5);
    s.event.quantity = r.text(6);
    s.event.unit = r.text(7);
    s.event.start = SystemTime(std::chrono::microseconds(r.integer(8)));
    s.event.end = SystemTime(std::chrono::microseconds(r.integer(9)));
    s.event.publisher_id = r.text(10);
    s.event.region = r.text(11);
    s.recorded_at = r.text(12);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace concord::usage

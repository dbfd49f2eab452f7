// Concord's operations extensions to the Trove API (docs/design/database.md, "Operations"):
// deletion protection, the per-instance events feed, automated daily backups with retention,
// the episode watch (storage low, replica rebuilds) and per-instance metrics.
//
// Why this shape:
//   * Everything the operations thread does goes through the same code paths as the tenant's
//     own calls (create_backup, delete_backup) with a Call made for the instance's project, so
//     an automated backup is checked, recorded, metered and shown exactly like a manual one.
//   * Multi-server safety comes from the store, not from the thread: each server runs a pass;
//     create_backup checks "an automated backup since today's window start" and inserts the
//     backup in one serialized write transaction (store::Tx::serialize), so two servers cannot
//     make two backups for the same day. The check reads the events feed (the
//     "backup.automated.started" event is written in that same transaction), so a tenant who
//     deletes today's automated backup does not get it back the same day.
//   * Automated backups count against the project's backups quota like manual ones. At the
//     quota the day's backup is skipped: create_backup writes a "backup.automated.skipped"
//     event instead of the backup (which also settles the day, so the skip is recorded once
//     and retried only at the next day's window) and the instance's status is left alone; a
//     pass runs retention before the day's backups, so expired ones free their share first.
//   * "now" is always clock_.now(): the schedule follows the service's clock (a FakeClock in
//     tests); only the thread's wake-up interval is real time.
#include <iterator>
#include <set>

#include "database/service/api_internal.h"

namespace concord::database::service {
namespace {

constexpr int64_t kMaxRetentionDays = 35;
constexpr auto kOperationsInterval = std::chrono::seconds(30);
// The episode watch runs more often: a replica's rebuild can start and end within a pass.
constexpr auto kEpisodeWatchInterval = std::chrono::seconds(2);
// Running instances and kept backups are metered at least this often (also at delete and
// resize), so the ledger shows a long-lived resource's use before it ends.
constexpr auto kMeterEvery = std::chrono::hours(1);
constexpr auto kMeterCheckEvery = std::chrono::minutes(5);
constexpr int64_t kDayUs = int64_t{86'400} * 1'000'000;
constexpr int64_t kGiB = int64_t{1} << 30;

// "HH:MM" (00:00 to 23:59) -> minutes after midnight UTC.
std::optional<int64_t> window_minutes(std::string_view s) {
  if (s.size() != 5 || s[2] != ':') return std::nullopt;
  for (size_t i : {0, 1, 3, 4}) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
  }
  const int64_t h = (s[0] - '0') * 10 + (s[1] - '0');
  const int64_t m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

struct Schedule {
  std::string window;  // "" off
  int64_t retention_days = 0;
};

// {"window": "HH:MM", "retention_days": N} or null (off).
Result<Schedule> parse_schedule(const Json& v) {
  if (v.is_null()) return Schedule{};
  const std::string shape =
      "'backup_schedule' must be null or {\"window\": \"HH:MM\" (UTC), \"retention_days\": 1 to " +
      std::to_string(kMaxRetentionDays) + "}";
  if (!v.is_object()) return fail(bad(shape + "."));
  for (auto& [key, value] : v.items()) {
    (void)value;
    if (key != "window" && key != "retention_days") {
      return fail(bad(shape + "; '" + sanitize_utf8(key) + "' is not one of its fields."));
    }
  }
  auto w = v.find("window");
  if (w == v.end() || !w->is_string() || !window_minutes(w->get<std::string>())) {
    return fail(bad(shape + ": 'window' must be a time of day such as \"02:30\"."));
  }
  auto r = v.find("retention_days");
  if (r == v.end() || !r->is_number_integer() || r->get<int64_t>() < 1 ||
      r->get<int64_t>() > kMaxRetentionDays) {
    return fail(bad(shape + ": 'retention_days' must be an integer from 1 to " +
                    std::to_string(kMaxRetentionDays) + "."));
  }
  return Schedule{w->get<std::string>(), r->get<int64_t>()};
}

Result<bool> parse_protection(const Json& v) {
  if (!v.is_boolean()) return fail(bad("'deletion_protection' must be true or false."));
  return v.get<bool>();
}

// The start of today's (UTC, by `now`) backup window, or nullopt when it has not started yet.
std::optional<SystemTime> window_start_today(const std::string& window, SystemTime now) {
  auto minutes = window_minutes(window);
  if (!minutes) return std::nullopt;
  const int64_t now_us = to_us(now);
  const int64_t start_us = now_us - now_us % kDayUs + *minutes * 60 * 1'000'000;
  if (now_us < start_us) return std::nullopt;
  return SystemTime{std::chrono::microseconds(start_us)};
}

// When the agent says archived logs stopped reaching the backup store (archive_stalled_since,
// unix seconds on the agent's clock), and how long ago that is at `now` (0 for a clock behind
// the agent's).
std::optional<SystemTime> stalled_since(const std::map<std::string, std::string>& f) {
  auto since = integer_of(f, "archive_stalled_since");
  if (!since) return std::nullopt;
  return SystemTime{std::chrono::seconds(*since)};
}
int64_t stalled_seconds(const std::map<std::string, std::string>& f, SystemTime now) {
  auto since = stalled_since(f);
  if (!since) return 0;
  return std::max<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(now - *since).count(),
                           0);
}

}  // namespace

void DatabaseService::Impl::add_operations_routes() {
  const std::string r = "project_reader";
  add(Method::kGet, "/instances/{id}/events", &Impl::list_events, r);
  add(Method::kGet, "/instances/{id}/metrics", &Impl::instance_metrics, r);
  // Operators: run a pass of the operations thread now (after changing schedules, in tests).
  add(Method::kPost, "/mgmt/operations", &Impl::run_operations, "admin");
}

Status DatabaseService::Impl::parse_create_operations(const Call& c, const Json& in,
                                                      InstanceRow& inst) {
  (void)c;
  if (auto p = in.find("deletion_protection"); p != in.end() && !p->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(inst.deletion_protection, parse_protection(*p));
  }
  if (auto s = in.find("backup_schedule"); s != in.end()) {
    CONCORD_ASSIGN_OR_RETURN(Schedule sched, parse_schedule(*s));
    inst.backup_window = sched.window;
    inst.backup_retention_days = sched.retention_days;
  }
  return ok();
}

bool DatabaseService::Impl::is_operations_key(std::string_view key) {
  return key == "deletion_protection" || key == "backup_schedule";
}

Status DatabaseService::Impl::apply_update_operations(store::Tx& tx, const InstanceRow& inst,
                                                      const Json& in) {
  const std::string now = trove_time(clock_.now());
  if (auto p = in.find("deletion_protection"); p != in.end()) {
    CONCORD_ASSIGN_OR_RETURN(bool on, parse_protection(*p));
    if (on != inst.deletion_protection) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("UPDATE db_instances SET deletion_protection = ?, updated = ? "
                             "WHERE id = ?",
                             {int64_t{on ? 1 : 0}, now, inst.id}));
      (void)n;
      CONCORD_RETURN_IF_ERROR(record_event(
          tx, inst, on ? "deletion_protection.enabled" : "deletion_protection.disabled",
          on ? "Deletion protection turned on." : "Deletion protection turned off."));
    }
  }
  if (auto s = in.find("backup_schedule"); s != in.end()) {
    CONCORD_ASSIGN_OR_RETURN(Schedule sched, parse_schedule(*s));
    if (sched.window != inst.backup_window || sched.retention_days != inst.backup_retention_days) {
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("UPDATE db_instances SET backup_window = ?, "
                                       "backup_retention_days = ?, updated = ? WHERE id = ?",
                                       {sched.window, sched.retention_days, now, inst.id}));
      (void)n;
      Json detail = sched.window.empty()
                        ? Json(Json::object())
                        : Json{{"window", sched.window}, {"retention_days", sched.retention_days}};
      CONCORD_RETURN_IF_ERROR(record_event(
          tx, inst, "backup_schedule.changed",
          sched.window.empty() ? "Automated backups turned off."
                               : "Automated backups daily at " + sched.window + " UTC, kept " +
                                     std::to_string(sched.retention_days) + " days.",
          detail));
    }
  }
  // Attach and detach happen in the same transaction (update_instance calls
  // set_instance_configuration just before): `inst` still holds the group before the change.
  if (auto cfg = in.find("configuration"); cfg != in.end()) {
    if (cfg->is_string() && cfg->get<std::string>() != inst.configuration_id) {
      CONCORD_RETURN_IF_ERROR(record_event(tx, inst, "configuration.attached",
                                           "Configuration group attached.",
                                           {{"configuration_id", cfg->get<std::string>()}}));
    } else if (cfg->is_null() && !inst.configuration_id.empty()) {
      CONCORD_RETURN_IF_ERROR(record_event(tx, inst, "configuration.detached",
                                           "Configuration group detached.",
                                           {{"configuration_id", inst.configuration_id}}));
    }
  }
  return ok();
}

Status DatabaseService::Impl::check_deletable(const InstanceRow& inst) {
  if (!inst.deletion_protection) return ok();
  return fail(Code::kFailedPrecondition,
              "Instance '" + inst.id +
                  "' has deletion protection on (\"deletion_protection\": true); turn it off "
                  "with PATCH /instances/" +
                  inst.id + " {\"instance\": {\"deletion_protection\": false}} first.");
}

void DatabaseService::Impl::add_operations_view(const InstanceRow& inst,
                                                const compute::ServiceServer* s, Json& view) const {
  view["deletion_protection"] = inst.deletion_protection;
  if (inst.backup_window.empty()) {
    view["backup_schedule"] = nullptr;
  } else {
    view["backup_schedule"] = {{"window", inst.backup_window},
                               {"retention_days", inst.backup_retention_days}};
  }
  if (!s || s->detail.empty()) return;
  const auto f = detail_fields(s->detail);
  if (auto used = integer_of(f, "disk_used_bytes")) {
    view["storage"] = {{"used_bytes", *used},
                       {"low", f.contains("storage_low")},
                       {"full", f.contains("storage_full")}};
  }
}

Status DatabaseService::Impl::insert_operations(store::Tx& tx, const InstanceRow& inst) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("UPDATE db_instances SET deletion_protection = ?, backup_window = ?, "
                         "backup_retention_days = ? WHERE id = ?",
                         {int64_t{inst.deletion_protection ? 1 : 0}, inst.backup_window,
                          inst.backup_retention_days, inst.id}));
  (void)n;
  return record_event(tx, inst, "created", "The instance was created.",
                      {{"datastore", inst.datastore}, {"version", inst.version}});
}

Status DatabaseService::Impl::record_event(store::Tx& tx, const InstanceRow& inst,
                                           std::string_view type, std::string_view message,
                                           const Json& detail) {
  return record_instance_event(tx, inst.id, inst.project_id, type, message, detail);
}

Status DatabaseService::Impl::record_instance_event(store::Tx& tx, const std::string& instance_id,
                                                    const std::string& project_id,
                                                    std::string_view type, std::string_view message,
                                                    const Json& detail) {
  // Serialized (store::Tx::serialize), so MAX + 1 is unique per instance.
  CONCORD_RETURN_IF_ERROR(tx.serialize());
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows last,
      tx.query("SELECT COALESCE(MAX(seq), 0) FROM db_events WHERE instance_id = ?", {instance_id}));
  const int64_t seq = (last.empty() ? 0 : last[0].integer(0)) + 1;
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("INSERT INTO db_events (id, seq, instance_id, project_id, type, message, "
              "detail_json, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              {new_uuid(), seq, instance_id, project_id, std::string(type), sanitize_utf8(message),
               dump_json(detail.is_object() ? detail : Json::object()), trove_time(clock_.now())}));
  (void)n;
  return ok();
}

Result<Response> DatabaseService::Impl::list_events(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(int64_t limit, parse_limit(c.req));
  const std::optional<std::string> marker = c.req.query_param("marker");
  store::Rows rows;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    // Also a deleted instance's, while its row exists (the feed says why it went).
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1), true));
    int64_t after = 0;
    if (marker && !marker->empty()) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows m, tx.query("SELECT seq FROM db_events WHERE id = ? AND instance_id = ?",
                                  {*marker, inst.id}));
      if (m.empty()) return fail(bad("Marker '" + *marker + "' is not a listed event."));
      after = m[0].integer(0);
    }
    // One more than asked tells whether a next page exists.
    const int64_t fetch = limit == std::numeric_limits<int64_t>::max() ? limit : limit + 1;
    CONCORD_ASSIGN_OR_RETURN(
        rows, tx.query("SELECT id, type, message, detail_json, created FROM db_events WHERE "
                       "instance_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                       {inst.id, after, fetch}));
    return ok();
  }));
  Json list = Json::array();
  for (const store::Row& r : rows) {
    if (static_cast<int64_t>(list.size()) >= limit) break;
    auto detail = parse_json(r.text(3));
    list.push_back({{"id", r.text(0)},
                    {"type", r.text(1)},
                    {"message", r.text(2)},
                    {"detail", detail && detail->is_object() ? *detail : Json::object()},
                    {"created", r.text(4)}});
  }
  Json out = {{"events", list}};
  if (static_cast<int64_t>(rows.size()) > limit && !list.empty()) {
    const std::string next = base(c) + "/instances/" + c.param(1) +
                             "/events?limit=" + std::to_string(limit) +
                             "&marker=" + list.back()["id"].get<std::string>();
    out["links"] = Json::array({{{"href", next}, {"rel", "next"}}});
  }
  return Response::json(200, dump_json(out));
}

Result<Response> DatabaseService::Impl::instance_metrics(Call& c) {
  InstanceRow inst;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(inst, load_instance(tx, c, c.param(1)));
    return ok();
  }));
  CONCORD_ASSIGN_OR_RETURN(auto live, servers());
  auto s = live.find(primary_server(inst));
  const compute::ServiceServer* server = s == live.end() ? nullptr : &s->second;
  Json out = {{"instance_id", inst.id},
              {"status", status(inst, server).first},
              {"volume_bytes", inst.volume_gb * kGiB},
              {"state_revision", inst.state_revision},
              {"applied_revision", nullptr},
              {"disk_used_bytes", nullptr}};
  if (server) {
    const auto f = detail_fields(server->detail);
    if (auto applied = integer_of(f, "state_revision")) out["applied_revision"] = *applied;
    if (auto used = integer_of(f, "disk_used_bytes")) out["disk_used_bytes"] = *used;
    out["storage_low"] = f.contains("storage_low");
    out["storage_full"] = f.contains("storage_full");
    // Seconds archived logs have failed to reach the backup store, once the agent says they
    // stalled; 0 otherwise.
    out["archive_stalled_seconds"] = stalled_seconds(f, clock_.now());
    if (auto role = f.find("role"); role != f.end()) out["role"] = role->second;
    if (auto lag = f.find("lag_seconds"); lag != f.end()) {
      try {
        out["replication_lag_seconds"] = std::stod(lag->second);
      } catch (const std::exception&) {
        // A malformed figure from an agent is left out rather than failing the call.
      }
    }
    if (auto st = f.find("streaming"); st != f.end()) {
      out["replication_streaming"] = st->second == "1" || st->second == "true";
    }
    // A replica that cannot go on from its upstream: "needed", then "running" while the agent
    // makes it anew (docs/design/database.md, "Replicas that cannot go on").
    if (auto rebuild = f.find("rebuild"); rebuild != f.end()) {
      out["replica_rebuild"] = rebuild->second;
    }
  }
  return Response::json(200, dump_json({{"metrics", out}}));
}

Result<Response> DatabaseService::Impl::run_operations(Call& c) {
  if (!c.caller.is_admin()) {
    return fail(Code::kPermissionDenied, "Only administrators may run the operations pass.");
  }
  operations_pass();
  return Response::empty(204);
}

void DatabaseService::Impl::meter_running(SystemTime now) {
  // Hourly intervals need no look every 30 s pass: that would take the store's writer lock and
  // read every backup's meta each time for nothing.
  if (now - last_meter_check_ < kMeterCheckEvery) return;
  last_meter_check_ = now;
  const int64_t now_us = to_us(now);
  const int64_t due_before =
      now_us - std::chrono::duration_cast<std::chrono::microseconds>(kMeterEvery).count();
  Status wrote = store_.write([&](store::Tx& tx) -> Status {
    // Serialized: another server's pass reads the interval this one closed, not the same one.
    CONCORD_RETURN_IF_ERROR(tx.serialize());
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string(kInstanceSelect) +
                     "WHERE i.deleting = 0 AND i.last_metered_us < ? ORDER BY i.id",
                 {due_before}));
    for (const store::Row& r : rows) {
      InstanceRow inst = instance_from(r);
      CONCORD_RETURN_IF_ERROR(meter(tx, inst, now_us, options_.region));
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("UPDATE db_instances SET last_metered_us = ? WHERE id = ?",
                                       {inst.last_metered_us, inst.id}));
      (void)n;
    }
    return meter_backups(tx, now_us, due_before);  // api_backups.cc
  });
  if (!wrote) {
    logger("database")->warn("operations pass: metering: {}", wrote.error().to_string());
  }
}

void DatabaseService::Impl::operations_pass() {
  std::lock_guard pass_lock(ops_pass_mu_);
  auto log = logger("database");
  const SystemTime now = clock_.now();
  struct Due {
    InstanceRow inst;
    std::string since, date;
  };
  std::vector<Due> due;
  std::vector<RetainedBackup> expired;
  Status read = store_.read([&](store::Tx& tx) -> Status {
    due.clear();
    expired.clear();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows, tx.query(std::string(kInstanceSelect) +
                                   "WHERE i.deleting = 0 AND i.backup_window <> '' ORDER BY i.id"));
    for (const store::Row& r : rows) {
      InstanceRow inst = instance_from(r);
      auto start = window_start_today(inst.backup_window, now);
      if (!start) continue;
      const std::string since = trove_time(*start);
      // A cheap first look (made or skipped today); create_backup repeats it inside its write.
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows made,
          tx.query(std::string("SELECT id FROM db_events WHERE instance_id = ? AND type IN ") +
                       kAutomatedDayEvents + " AND created >= ?",
                   {inst.id, since}));
      if (!made.empty()) continue;
      due.push_back({std::move(inst), since, since.substr(0, 10)});
    }
    CONCORD_ASSIGN_OR_RETURN(expired, expired_backups(tx, now, ""));
    return ok();
  });
  if (!read) {
    log->warn("operations pass: reading the schedules: {}", read.error().to_string());
    return;
  }
  watch_episodes();
  meter_running(now);
  // Retention first: the backups it deletes no longer count against the project's backups
  // quota when the day's automated backups are checked against it below.
  for (const RetainedBackup& e : expired) {
    Request req;
    req.method = Method::kDelete;
    req.params = {e.project_id, e.id};
    req.request_id = "operations-" + new_uuid();
    Call call{req, {}};
    call.caller.project_id = e.project_id;
    auto gone = delete_backup(call);
    if (!gone) {
      if (gone.error().code() != Code::kNotFound) {
        log->warn("backup {}: retention could not delete it: {}", e.id, gone.error().to_string());
      }
      continue;
    }
    Status noted = store_.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows inst, tx.query("SELECT id FROM db_instances WHERE id = ?", {e.instance_id}));
      if (inst.empty()) return ok();
      if (e.seed) {
        return record_instance_event(
            tx, e.instance_id, e.project_id, "backup.seed.deleted",
            "Backup '" + e.name + "', taken to seed replicas, deleted an hour after it ended.",
            {{"backup_id", e.id}});
      }
      return record_instance_event(
          tx, e.instance_id, e.project_id, "backup.retention.deleted",
          "Automated backup '" + e.name + "' deleted: past the retention period.",
          {{"backup_id", e.id}});
    });
    if (!noted)
      log->warn("backup {}: recording its retention event: {}", e.id, noted.error().to_string());
  }
  for (Due& d : due) {
    Request req;
    req.method = Method::kPost;
    req.params = {d.inst.project_id};
    req.request_id = "operations-" + new_uuid();
    req.body = dump_json({{"backup", {{"name", "automated-" + d.date}, {"instance", d.inst.id}}}});
    Call call{req, {}};
    call.caller.project_id = d.inst.project_id;
    call.automated_since = d.since;
    auto made = create_backup(call);
    if (made) {
      log->info("instance {}: automated backup for {} started", d.inst.id, d.date);
    } else if (made.error().code() == Code::kAlreadyExists) {
      // Another server made (or skipped) it first.
    } else if (made.error().code() == Code::kResourceExhausted) {
      // At the project's backups quota: skipped for the day, recorded in the instance's events.
      log->warn("instance {} of project {}: automated backup for {} skipped: {}", d.inst.id,
                d.inst.project_id, d.date, made.error().message());
    } else {
      // Not ACTIVE, a backup already running, no backup storage: the next pass tries again.
      log->debug("instance {}: automated backup not started yet: {}", d.inst.id,
                 made.error().to_string());
    }
  }
}

namespace {

// A condition the driver reports in a server's status detail (a detail_fields() key present
// while it lasts), recorded in the instance's events feed once when it starts and once when it
// ends.
struct Episode {
  std::string_view field;
  std::string_view start_type, start_text;
  std::string_view end_type, end_text;
  // Also for an HA member's own server (recorded on its instance, naming the member). Storage is
  // watched on the instance's first server only: two members' episodes in one feed would mix.
  bool members;
};

constexpr Episode kEpisodes[] = {
    {"storage_low", "storage.low", "Storage is low: more than 90% of the volume is used.",
     "storage.ok", "Storage is no longer low.", false},
    {"storage_full", "storage.full",
     "The volume is full: the instance is read-only (a transaction may still begin READ WRITE "
     "to delete data) until data is dropped or the volume is resized.",
     "storage.writable", "The volume has room again: the instance accepts writes.", false},
    {"rebuild", "replica.rebuilding",
     "The replica cannot go on from its source (its position is gone there, or its replay "
     "failed) and is being made anew from it.",
     "replica.rebuilt", "The replica follows its source again.", true},
    {"archive_stalled_since", "archiving.stalled",
     "Archived logs have not reached the backup store for a while: point-in-time restore "
     "reaches only as far as the last log that did, and the waiting logs take space on the "
     "instance's volume.",
     "archiving.resumed", "Archived logs reach the backup store again.", true},
};

}  // namespace

void DatabaseService::Impl::watch_episodes() {
  auto live = servers();
  if (!live) {
    logger("database")->warn("episode watch: listing servers: {}", live.error().to_string());
    return;
  }
  // The latest of an episode's two event types in the instance's feed says whether one is open.
  auto open_episode = [](store::Tx& tx, const std::string& instance_id,
                         const Episode& e) -> Result<bool> {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows last,
        tx.query("SELECT type FROM db_events WHERE instance_id = ? AND type "
                 "IN (?, ?) ORDER BY seq DESC LIMIT 1",
                 {instance_id, std::string(e.start_type), std::string(e.end_type)}));
    return !last.empty() && last[0].text(0) == e.start_type;
  };
  // A server whose episodes changed since the last watch: its detail, and its instance (the
  // instance id its metadata names; an HA member's server id differs from it).
  struct Look {
    std::string server, instance;
    std::map<std::string, std::string> fields;
    unsigned episodes = 0;  // bits of kEpisodes present in `fields`
  };
  std::lock_guard watching(episodes_mu_);
  std::erase_if(episodes_seen_, [&](const auto& e) { return !live->contains(e.first); });
  std::vector<Look> look;
  for (const auto& [id, server] : *live) {
    if (server.detail.empty()) continue;
    Look l{id, id, detail_fields(server.detail)};
    for (size_t i = 0; i < std::size(kEpisodes); ++i) {
      if (l.fields.contains(std::string(kEpisodes[i].field))) l.episodes |= 1u << i;
    }
    if (auto seen = episodes_seen_.find(id);
        seen != episodes_seen_.end() && seen->second == l.episodes) {
      continue;
    }
    if (auto named = server.metadata.find(std::string(keys::kInstance));
        named != server.metadata.end()) {
      l.instance = named->second;
    }
    look.push_back(std::move(l));
  }
  if (look.empty()) return;
  // Which of them differ from their feed: a read first, so a watch that finds the feed already
  // right takes no write lock.
  std::vector<std::pair<const Look*, const Episode*>> changed;
  Status looked = store_.read([&](store::Tx& tx) -> Status {
    changed.clear();
    for (const Look& l : look) {
      for (const Episode& e : kEpisodes) {
        if (l.server != l.instance && !e.members) continue;
        CONCORD_ASSIGN_OR_RETURN(bool open, open_episode(tx, l.instance, e));
        if (l.fields.contains(std::string(e.field)) != open) changed.emplace_back(&l, &e);
      }
    }
    return ok();
  });
  if (!looked) {
    logger("database")->warn("episode watch: reading events: {}", looked.error().to_string());
    return;
  }
  std::set<std::string> failed;  // looked at again by the next watch
  for (const auto& [l, e] : changed) {
    const bool starts = l->fields.contains(std::string(e->field));
    // The look and the insert share one write, so two servers' passes record it once.
    Status st = store_.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(bool open, open_episode(tx, l->instance, *e));
      if (starts == open) return ok();  // another server's pass recorded it
      CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(std::string(kInstanceSelect) +
                                                              "WHERE i.id = ? AND i.deleting = 0",
                                                          {l->instance}));
      if (rows.empty()) return ok();
      const InstanceRow inst = instance_from(rows[0]);
      Json detail = Json::object();
      if (l->server != l->instance) detail["member"] = l->server;
      if (e->field == "storage_low" || e->field == "storage_full") {
        detail["volume_bytes"] = inst.volume_gb * kGiB;
        if (auto used = integer_of(l->fields, "disk_used_bytes")) detail["used_bytes"] = *used;
      }
      if (e->field == "archive_stalled_since" && starts) {
        if (auto since = stalled_since(l->fields)) detail["since"] = trove_time(*since);
      }
      return record_event(tx, inst, starts ? e->start_type : e->end_type,
                          starts ? e->start_text : e->end_text, detail);
    });
    if (!st) {
      logger("database")
          ->warn("episode watch: instance {}: {}", l->instance, st.error().to_string());
      failed.insert(l->server);
    }
  }
  for (const Look& l : look) {
    if (!failed.contains(l.server)) episodes_seen_[l.server] = l.episodes;
  }
}

void DatabaseService::Impl::start_operations() {
  ops_thread_ = std::thread([this] {
    std::unique_lock lock(ops_mu_);
    auto last_pass = std::chrono::steady_clock::now();
    while (!ops_stopping_) {
      ops_cv_.wait_for(lock, kEpisodeWatchInterval, [&] { return ops_stopping_; });
      if (ops_stopping_) break;
      lock.unlock();
      try {
        if (std::chrono::steady_clock::now() - last_pass >= kOperationsInterval) {
          last_pass = std::chrono::steady_clock::now();
          operations_pass();
        } else {
          watch_episodes();
        }
      } catch (const std::exception& e) {
        logger("database")->error("operations pass: unexpected exception: {}", e.what());
      }
      lock.lock();
    }
  });
}

void DatabaseService::Impl::stop_operations() {
  {
    std::lock_guard lock(ops_mu_);
    ops_stopping_ = true;
  }
  ops_cv_.notify_all();
  if (ops_thread_.joinable()) ops_thread_.join();
}

}  // namespace concord::database::service

namespace concord::database::service {

// Prometheus families for operators (docs/design/database.md, "Operations"): one series per
// instance (and per member for replication lag), computed at scrape time from the rows and the
// servers' reported detail. Each family reads the store (and compute, when it needs the
// servers) once per scrape.
void DatabaseService::Impl::register_metrics(http::Registry& registry) {
  using Series = http::Registry::GaugeSeries;
  struct Snapshot {
    std::vector<InstanceRow> instances;
    std::map<std::string, compute::ServiceServer> live;
  };
  auto instances = [this]() -> std::vector<InstanceRow> {
    std::vector<InstanceRow> out;
    Status read = store_.read([&](store::Tx& tx) -> Status {
      out.clear();
      CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                               tx.query(std::string(kInstanceSelect) + "WHERE i.deleting = 0"));
      for (const store::Row& r : rows) out.push_back(instance_from(r));
      return ok();
    });
    if (!read) out.clear();
    return out;
  };
  auto snapshot = [this, instances]() -> Snapshot {
    Snapshot snap;
    snap.instances = instances();
    if (snap.instances.empty()) return snap;
    if (auto live = servers()) snap.live = std::move(*live);
    return snap;
  };
  auto labels = [](const InstanceRow& inst) {
    return http::Labels{
        {"instance", inst.id}, {"project", inst.project_id}, {"engine", inst.engine}};
  };
  // Per instance: `value(inst, its primary server or nullptr)`; nullopt leaves it out.
  auto per_instance = [snapshot, labels](auto value) {
    return [snapshot, labels, value]() -> Series {
      Snapshot snap = snapshot();
      Series out;
      for (const InstanceRow& inst : snap.instances) {
        auto s = snap.live.find(primary_server(inst));
        std::optional<double> v = value(inst, s == snap.live.end() ? nullptr : &s->second);
        if (v) out.emplace_back(labels(inst), *v);
      }
      return out;
    };
  };
  registry.gauge_family_fn(
      "concord_database_instance_up",
      "1 when the managed database instance's engine runs and answers (Trove status ACTIVE, "
      "BACKUP or RESTART_REQUIRED with operating status HEALTHY), else 0.",
      per_instance([](const InstanceRow& inst, const compute::ServiceServer* s) {
        return std::optional<double>(status(inst, s).second == "HEALTHY" ? 1 : 0);
      }));
  registry.gauge_family_fn(
      "concord_database_instance_disk_used_bytes",
      "Bytes the instance's data folder uses, as its host's agent last reported.",
      per_instance([](const InstanceRow&, const compute::ServiceServer* s) {
        std::optional<double> v;
        if (s) {
          if (auto used = integer_of(detail_fields(s->detail), "disk_used_bytes")) v = *used;
        }
        return v;
      }));
  registry.gauge_family_fn("concord_database_instance_volume_bytes",
                           "The instance's volume size in bytes.",
                           per_instance([](const InstanceRow& inst, const compute::ServiceServer*) {
                             return std::optional<double>(inst.volume_gb * kGiB);
                           }));
  registry.gauge_family_fn("concord_database_instance_failovers",
                           "Automatic failovers of the instance since it was created.",
                           per_instance([](const InstanceRow& inst, const compute::ServiceServer*) {
                             return inst.ha ? std::optional<double>(inst.failovers) : std::nullopt;
                           }));
  // Per instance with a running endpoint proxy: `value(its stats)`; nullopt leaves it out.
  auto per_endpoint = [this, instances, labels](auto value) {
    return [this, instances, labels, value]() -> Series {
      Series out;
      if (!endpoints_) return out;
      for (const InstanceRow& inst : instances()) {
        std::optional<proxy::ProxyStats> st = endpoints_->stats(inst.id);
        if (!st) continue;
        if (std::optional<double> v = value(inst, *st)) out.emplace_back(labels(inst), *v);
      }
      return out;
    };
  };
  // One of the proxy's own figures (its counts start again at 0 when the server does); with
  // `pooled`, only transaction-mode endpoints have it (a session-mode one never pools).
  auto endpoint_count = [per_endpoint](int64_t proxy::ProxyStats::*field, bool pooled = false) {
    return per_endpoint([field, pooled](const InstanceRow& inst, const proxy::ProxyStats& st) {
      return pooled && inst.endpoint_mode != "transaction"
                 ? std::nullopt
                 : std::optional<double>(static_cast<double>(st.*field));
    });
  };
  registry.gauge_family_fn("concord_database_endpoint_clients",
                           "Client connections open now through the instance's endpoint proxy.",
                           endpoint_count(&proxy::ProxyStats::clients_active));
  registry.gauge_family_fn(
      "concord_database_endpoint_server_connections",
      "Connections the instance's endpoint proxy holds open to the engine now (idle, lent to a "
      "transaction, or pinned to a client's session).",
      endpoint_count(&proxy::ProxyStats::server_connections));
  registry.gauge_family_fn(
      "concord_database_endpoint_pool_size",
      "Transaction pooling: the server connections each pool (user and database) of the "
      "instance's endpoint may hold, as in force now.",
      endpoint_count(&proxy::ProxyStats::pool_size, true));
  registry.counter_family_fn(
      "concord_database_endpoint_transactions_total",
      "Transaction pooling: server connections the endpoint got back at the end of a "
      "transaction.",
      endpoint_count(&proxy::ProxyStats::transactions, true));
  registry.counter_family_fn(
      "concord_database_endpoint_pool_waits_total",
      "Transaction pooling: times a client's transaction waited for a server connection "
      "because its pool was full (a pool size too small for the load when this grows fast).",
      endpoint_count(&proxy::ProxyStats::pool_waits, true));
  registry.counter_family_fn(
      "concord_database_endpoint_wait_timeouts_total",
      "Transaction pooling: clients disconnected because no server connection came free in "
      "time.",
      endpoint_count(&proxy::ProxyStats::wait_timeouts, true));
  registry.counter_family_fn(
      "concord_database_endpoint_clients_refused_total",
      "Client connections the endpoint closed at accept: their address is not in the "
      "instance's allowed CIDRs.",
      endpoint_count(&proxy::ProxyStats::clients_refused));
  // Per member server that names its instance: `value(detail fields)`; nullopt leaves it out.
  auto per_member = [snapshot](auto value) {
    return [snapshot, value]() -> Series {
      Snapshot snap = snapshot();
      std::map<std::string, const InstanceRow*> by_id;
      for (const InstanceRow& inst : snap.instances) by_id[inst.id] = &inst;
      Series out;
      for (const auto& [server_id, s] : snap.live) {
        auto named = s.metadata.find(std::string(keys::kInstance));
        if (named == s.metadata.end()) continue;
        auto inst = by_id.find(named->second);
        if (inst == by_id.end()) continue;
        std::optional<double> v = value(detail_fields(s.detail));
        if (!v) continue;
        out.push_back({{{"instance", inst->second->id},
                        {"project", inst->second->project_id},
                        {"member", server_id}},
                       *v});
      }
      return out;
    };
  };
  registry.gauge_family_fn(
      "concord_database_replication_lag_seconds",
      "Seconds a replica or standby member's replay is behind its upstream, as its agent last "
      "reported (only members that report it).",
      per_member([](std::map<std::string, std::string> f) -> std::optional<double> {
        auto lag = integer_of(f, "lag_seconds");
        if (!lag || *lag < 0 || f["role"] != "replica") return std::nullopt;
        return static_cast<double>(*lag);
      }));
  registry.gauge_family_fn(
      "concord_database_replica_rebuilding",
      "1 while a replica or standby member cannot go on from its upstream and its agent makes "
      "it anew (reported rebuild=needed or running), 0 for the other replicas.",
      per_member([](const std::map<std::string, std::string>& f) -> std::optional<double> {
        if (f.contains("rebuild")) return 1.0;
        auto role = f.find("role");
        if (role != f.end() && role->second == "replica") return 0.0;
        return std::nullopt;
      }));
  registry.gauge_family_fn(
      "concord_database_archive_stalled_seconds",
      "How long the instance's archived logs have failed to reach the backup store, once its "
      "agent reports them stalled (database_archive_stall_after); 0 while they ship.",
      per_member([this](const std::map<std::string, std::string>& f) -> std::optional<double> {
        return static_cast<double>(stalled_seconds(f, clock_.now()));
      }));
}

}  // namespace concord::database::service

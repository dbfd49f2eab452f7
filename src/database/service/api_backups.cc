// Trove API: backups (/backups, /instances/{id}/backups), restore into a new instance
// ("restorePoint" at create, with Concord's point-in-time extension) and the agents' routes
// that store and fetch backup archives and archived logs (docs/design/database.md, "Backups
// and restore").
//
// How a backup happens, and why this way:
//   * The API records the backup (NEW) and raises the instance's state revision in one write;
//     the desired state then carries a BackupRequest (add_backup_state), so the host's driver
//     learns of it like any other change and a restarted agent or server loses nothing.
//   * The driver runs the engine's backup, reports progress (BUILDING, SAVING), uploads the
//     archive with its SHA-256 and BackupInfo (PUT .../data), or reports a failure. Either
//     outcome ends the request: the revision is raised again and the request leaves the
//     desired state. Only the agent of the host running the instance may do either.
//   * Archives and archived logs live in a content-addressed blob store; rows (db_backups,
//     db_log_segments) are the references. A blob goes when its last row goes.
//   * db_backups.meta_json holds Concord's own record of a backup: the engine's
//     BackupInfo.meta_json ("engine"), the moment the archive restores to ("consistent_at_us"),
//     the start of its unmetered storage interval ("metered_us") and the instance's databases
//     and users (with verifiers) when it was asked for ("access"). A restored instance starts
//     with those rows: its desired state is authoritative, and without them the driver's
//     convergence would drop the restored databases and users.
//   * db_instances.restored_from is "<backup id>" for a restore, "<backup id>@<target us>" for
//     a point-in-time restore (the target travels with the instance, not the backup).
#include <limits>

#include "base/encoding.h"
#include "compute/service/agent_api.h"
#include "database/engine/guest_logs.h"
#include "database/service/api_internal.h"

namespace concord::database::service {
namespace {

constexpr const char* kBackupSelect =
    "SELECT b.id, b.project_id, b.instance_id, b.name, b.description, b.datastore_version_id, "
    "b.parent_id, b.kind, b.status, b.fail_reason, b.sha256, b.size_bytes, b.meta_json, "
    "b.created, b.updated, d.name, v.name "
    "FROM db_backups b "
    "JOIN db_datastore_versions v ON v.id = b.datastore_version_id "
    "JOIN db_datastores d ON d.id = v.datastore_id ";
constexpr const char* kRunning = "('NEW', 'BUILDING', 'SAVING')";
constexpr uint64_t kMaxUploadBytes = uint64_t{1} << 40;
constexpr int64_t kGiB = int64_t{1} << 30;
constexpr size_t kMaxChain = 1000;

struct BackupRow {
  std::string id, project_id, instance_id, name, description, version_id, parent_id, kind, status,
      fail_reason, sha256;
  int64_t size_bytes = 0;
  std::string meta_json, created, updated, datastore, version;
};

BackupRow backup_from(const store::Row& r) {
  BackupRow b;
  b.id = r.text(0);
  b.project_id = r.text(1);
  b.instance_id = r.text(2);
  b.name = r.text(3);
  b.description = r.text(4);
  b.version_id = r.text(5);
  b.parent_id = r.text(6);
  b.kind = r.text(7);
  b.status = r.text(8);
  b.fail_reason = r.text(9);
  b.sha256 = r.text(10);
  b.size_bytes = r.integer(11);
  b.meta_json = r.text(12);
  b.created = r.text(13);
  b.updated = r.text(14);
  b.datastore = r.text(15);
  b.version = r.text(16);
  return b;
}

bool running(const std::string& status) {
  return status == "NEW" || status == "BUILDING" || status == "SAVING";
}

// Concord's record of a completed backup (see the file comment).
struct BackupMeta {
  std::string engine_meta = "{}";
  int64_t consistent_at_us = 0;
  int64_t metered_us = 0;
  Json access = Json::object();  // {"databases": [[name, charset, collate]], "users": [...]}
};

BackupMeta meta_of(const std::string& text) {
  BackupMeta m;
  auto j = parse_json(text);
  if (!j || !j->is_object()) return m;
  if (auto e = j->find("engine"); e != j->end() && e->is_string()) m.engine_meta = *e;
  if (auto t = j->find("consistent_at_us"); t != j->end() && t->is_number_integer()) {
    m.consistent_at_us = t->get<int64_t>();
  }
  if (auto t = j->find("metered_us"); t != j->end() && t->is_number_integer()) {
    m.metered_us = t->get<int64_t>();
  }
  if (auto a = j->find("access"); a != j->end() && a->is_object()) m.access = *a;
  return m;
}

std::string meta_text(const BackupMeta& m) {
  return dump_json(Json{{"engine", m.engine_meta},
                        {"consistent_at_us", m.consistent_at_us},
                        {"metered_us", m.metered_us},
                        {"access", m.access}});
}

// bytes x microseconds as GiB-hours, a decimal with up to 9 fractional digits (rounded down).
std::string gib_hours(int64_t bytes, int64_t us) {
  __extension__ using i128 = __int128;
  const i128 num = static_cast<i128>(bytes) * us;
  const i128 den = static_cast<i128>(kGiB) * 3'600'000'000LL;
  const i128 whole = num / den;
  const i128 frac = (num % den) * 1'000'000'000 / den;
  std::string out = std::to_string(static_cast<long long>(whole));
  if (frac == 0) return out;
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%09lld", static_cast<long long>(frac));
  std::string f(buf);
  while (!f.empty() && f.back() == '0') f.pop_back();
  return out + "." + f;
}

// Records the completed backup's storage since m.metered_us and moves m.metered_us to now_us
// (the caller writes the meta back, or deletes the row).
Status meter_backup(store::Tx& tx, const BackupRow& b, BackupMeta& m, int64_t now_us,
                    const std::string& region) {
  if (m.metered_us <= 0 || now_us <= m.metered_us) return ok();
  usage::UsageEvent e;
  e.project_id = b.project_id;
  e.resource_id = b.id;
  e.resource_type = "database.backup";
  e.start = SystemTime{std::chrono::microseconds(m.metered_us)};
  e.end = SystemTime{std::chrono::microseconds(now_us)};
  e.region = region;
  e.event_id = b.id + ":backup-storage:" + std::to_string(m.metered_us);
  e.kind = "database.backup-storage-gb-hours";
  e.quantity = gib_hours(b.size_bytes, now_us - m.metered_us);
  e.unit = "GB-h";
  CONCORD_ASSIGN_OR_RETURN(bool fresh, usage::append(tx, e));
  (void)fresh;
  m.metered_us = now_us;
  return ok();
}

bool valid_log_name(const std::string& name) {
  if (name.empty() || name.size() > 255 || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-';
  });
}

Result<Response> blob_response(const blob::BlobStore& blobs, const std::string& sha256) {
  if (!blobs.contains(sha256)) {
    return fail(Code::kInternal, "the stored data " + sha256 + " is missing from the blob store");
  }
  Response r;
  r.status = 200;
  r.body_file = blobs.path_of(sha256);
  r.set_header("content-type", "application/octet-stream");
  r.set_header("x-concord-sha256", sha256);
  return r;
}

}  // namespace

Result<int64_t> header_int(const Request& req, std::string_view name) {
  std::string_view text = req.header(name);
  if (text.empty()) return int64_t{0};
  int64_t v = 0;
  for (char ch : text) {
    if (!std::isdigit(static_cast<unsigned char>(ch)) || v > (INT64_MAX - 9) / 10) {
      return fail(Code::kInvalidArgument,
                  "header " + std::string(name) + " must be a non-negative integer");
    }
    v = v * 10 + (ch - '0');
  }
  return v;
}

Result<std::string> header_sha256(const Request& req) {
  std::string sha(req.header("x-concord-sha256"));
  if (!blob::BlobStore::valid_key(sha)) {
    return fail(Code::kInvalidArgument,
                "X-Concord-SHA256 must be the upload's SHA-256 as 64 lowercase hex characters");
  }
  return sha;
}

// ---- tenant API -------------------------------------------------------------------------

void DatabaseService::Impl::add_backup_routes() {
  if (!options_.backup_dir.empty()) {
    auto blobs = blob::BlobStore::create(options_.backup_dir);
    if (blobs) {
      backup_blobs_ = std::move(*blobs);
    } else {
      logger("database")
          ->error("backups are disabled: the backup store {}: {}", options_.backup_dir,
                  blobs.error().to_string());
    }
  }
  const std::string r = "project_reader", m = "project_member";
  add(Method::kPost, "/backups", &Impl::create_backup, m);
  add(Method::kGet, "/backups", &Impl::list_backups, r);
  add(Method::kGet, "/backups/{id}", &Impl::show_backup, r);
  add(Method::kDelete, "/backups/{id}", &Impl::delete_backup, m);
  add(Method::kGet, "/instances/{id}/backups", &Impl::list_instance_backups, r);

  add_agent(Method::kPost, "/backups/{id}/progress", &Impl::agent_backup_progress);
  add_agent(Method::kPut, "/backups/{id}/data", &Impl::agent_put_backup);
  add_agent(Method::kGet, "/backups/{id}/data", &Impl::agent_get_backup);
  add_agent(Method::kPost, "/backups/{id}/failed", &Impl::agent_backup_failed);
  add_agent(Method::kGet, "/instances/{id}/logs", &Impl::agent_list_logs);
  add_agent(Method::kPut, "/instances/{id}/logs/{name}", &Impl::agent_put_log);
  add_agent(Method::kGet, "/instances/{id}/logs/{name}", &Impl::agent_get_log);
}

namespace {

// A backup's Trove view; Concord adds consistent_at (what a restore of it restores to) and
// fail_reason.
Json backup_view(const std::string& base_url, const BackupRow& b) {
  const bool done = b.status == "COMPLETED";
  Json out = {
      {"id", b.id},
      {"name", b.name},
      {"description", b.description.empty() ? Json(nullptr) : Json(b.description)},
      {"locationRef", done ? Json(base_url + "/backups/" + b.id) : Json(nullptr)},
      {"instance_id", b.instance_id},
      {"created", b.created},
      {"updated", b.updated},
      {"size", done ? Json(static_cast<double>(b.size_bytes) / kGiB) : Json(nullptr)},
      {"status", b.status},
      {"parent_id", b.parent_id.empty() ? Json(nullptr) : Json(b.parent_id)},
      {"datastore", {{"type", b.datastore}, {"version", b.version}, {"version_id", b.version_id}}},
      {"project_id", b.project_id}};
  if (done) {
    BackupMeta m = meta_of(b.meta_json);
    out["consistent_at"] =
        format_keystone_time(SystemTime{std::chrono::microseconds(m.consistent_at_us)});
  }
  if (b.status == "FAILED" && !b.fail_reason.empty()) out["fail_reason"] = b.fail_reason;
  return out;
}

// A backup the caller may see (its project's, or any for an admin), else kNotFound.
Result<BackupRow> load_backup(store::Tx& tx, const identity::AuthContext& caller,
                              const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query(std::string(kBackupSelect) + "WHERE b.id = ? AND b.deleting = 0", {id}));
  if (rows.empty() || (rows[0].text(1) != caller.project_id && !caller.is_admin())) {
    return fail(Code::kNotFound, "Backup '" + id + "' cannot be found.");
  }
  return backup_from(rows[0]);
}

// db_backups.automated: who asked for the backup.
constexpr int64_t kTenantBackup = 0;     // the tenant (POST /backups)
constexpr int64_t kScheduledBackup = 1;  // the daily automated backup (the operations pass)
constexpr int64_t kSeedBackup = 2;       // a new replica's seed (start_seed_backup)
// A seed backup is deleted this long after it ended, and a replica waits for a running one
// until this long after it was made (docs/design/database.md, "A backup taken for the seed").
constexpr std::chrono::hours kSeedBackupKeep{1};
constexpr std::chrono::minutes kSeedBackupWait{15};

// A running backup (NEW, BUILDING or SAVING) of the instance, "" when none: an instance has
// at most one at a time.
Result<std::string> running_backup(store::Tx& tx, const std::string& instance_id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows busy,
      tx.query(std::string("SELECT id FROM db_backups WHERE instance_id = ? AND deleting = 0 "
                           "AND status IN ") +
                   kRunning,
               {instance_id}));
  return busy.empty() ? std::string() : busy[0].text(0);
}

// Inserts `b` (id, names, parent and kind set) as a NEW backup of its instance, with the
// databases and users the archive will hold (for instances restored from it), and raises the
// instance's revision so that its agent takes it.
Status insert_backup(store::Tx& tx, BackupRow& b, int64_t automated) {
  BackupMeta meta;
  meta.access = {{"databases", Json::array()}, {"users", Json::array()}};
  CONCORD_ASSIGN_OR_RETURN(store::Rows dbs,
                           tx.query("SELECT name, character_set, collate_name FROM db_databases "
                                    "WHERE instance_id = ? ORDER BY name",
                                    {b.instance_id}));
  for (const store::Row& r : dbs) {
    meta.access["databases"].push_back(Json::array({r.text(0), r.text(1), r.text(2)}));
  }
  CONCORD_ASSIGN_OR_RETURN(store::Rows users,
                           tx.query("SELECT name, host, verifier, databases_json FROM db_users "
                                    "WHERE instance_id = ? ORDER BY name",
                                    {b.instance_id}));
  for (const store::Row& r : users) {
    meta.access["users"].push_back(Json::array({r.text(0), r.text(1), r.text(2), r.text(3)}));
  }
  b.meta_json = meta_text(meta);
  b.status = "NEW";
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("INSERT INTO db_backups (id, project_id, instance_id, name, description, "
              "datastore_version_id, parent_id, kind, status, meta_json, created, updated, "
              "automated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'NEW', ?, ?, ?, ?)",
              {b.id, b.project_id, b.instance_id, b.name, b.description, b.version_id, b.parent_id,
               b.kind, b.meta_json, b.created, b.updated, automated}));
  CONCORD_ASSIGN_OR_RETURN(
      n, tx.exec("UPDATE db_instances SET state_revision = state_revision + 1 WHERE id = ?",
                 {b.instance_id}));
  (void)n;
  return ok();
}

}  // namespace

Result<std::vector<RetainedBackup>> expired_backups(store::Tx& tx, SystemTime at,
                                                    const std::string& project) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT b.id, b.project_id, b.instance_id, b.name, b.created, "
               "i.backup_retention_days, b.automated, b.updated FROM db_backups b LEFT JOIN "
               "db_instances i ON i.id = b.instance_id WHERE ((b.automated = 1 AND "
               "i.backup_retention_days > 0) OR b.automated = 2) AND b.deleting = 0 AND "
               "b.status IN ('COMPLETED', 'FAILED') AND (? = '' OR b.project_id = ?) AND NOT "
               "EXISTS (SELECT 1 FROM db_backups k WHERE k.parent_id = b.id AND k.deleting = 0) "
               "ORDER BY b.created, b.id",
               {project, project}));
  std::vector<RetainedBackup> out;
  for (const store::Row& r : rows) {
    const bool seed = r.integer(6) == kSeedBackup;
    // A seed backup from when it ended, a scheduled one from when it was made.
    const bool expired = seed ? r.text(7) < trove_time(at - kSeedBackupKeep)
                              : r.text(4) < trove_time(at - std::chrono::days(r.integer(5)));
    if (expired) out.push_back({r.text(0), r.text(1), r.text(2), r.text(3), seed});
  }
  return out;
}

Result<Response> DatabaseService::Impl::create_backup(Call& c) {
  if (!backup_blobs_) {
    return fail(Code::kUnavailable, "Backups are not available: this cloud has no backup storage.");
  }
  CONCORD_ASSIGN_OR_RETURN(
      const Json in,
      body_member(c.req, "backup",
                  "The request body must be {\"backup\": {\"name\": ..., \"instance\": ...}}."));
  for (const char* unsupported : {"swift_container", "restore_from"}) {
    if (auto u = in.find(unsupported); u != in.end() && !u->is_null()) {
      return fail(bad(std::string("'") + unsupported + "' is not supported by this cloud."));
    }
  }
  CONCORD_ASSIGN_OR_RETURN(std::string name, string_field(in, "name", "backup"));
  if (name.empty() || name.size() > 255 || sanitize_utf8(name) != name) {
    return fail(bad("The backup 'name' must be 1 to 255 characters of UTF-8."));
  }
  CONCORD_ASSIGN_OR_RETURN(std::string instance_id, string_field(in, "instance", "backup"));
  std::string description;
  if (auto d = in.find("description"); d != in.end() && !d->is_null()) {
    if (!d->is_string() || d->get<std::string>().size() > 1024 ||
        sanitize_utf8(d->get<std::string>()) != d->get<std::string>()) {
      return fail(bad("The backup 'description' must be up to 1024 characters of UTF-8."));
    }
    description = d->get<std::string>();
  }
  std::string parent_id;
  if (auto p = in.find("parent_id"); p != in.end() && !p->is_null()) {
    if (!p->is_string()) return fail(bad("'parent_id' must be a backup id."));
    parent_id = p->get<std::string>();
  }
  bool incremental = false;
  if (auto i = in.find("incremental"); i != in.end() && !i->is_null()) {
    if (i->is_boolean()) {
      incremental = i->get<bool>();
    } else if (i->is_number_integer() && (i->get<int64_t>() == 0 || i->get<int64_t>() == 1)) {
      incremental = i->get<int64_t>() == 1;
    } else {
      return fail(bad("'incremental' must be 0, 1, true or false."));
    }
  }
  InstanceRow inst;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(inst, load_instance(tx, c, instance_id));
    return ok();
  }));
  if (inst.engine != "postgresql" && inst.engine != "mariadb") {
    return fail(Code::kFailedPrecondition,
                "Datastore '" + inst.datastore + "' does not support backups on this cloud.");
  }
  // The conflict first: a running backup also makes the status BACKUP, not ACTIVE.
  if (inst.backup_running) {
    return fail(Code::kAborted, "Instance '" + inst.id +
                                    "' already has a backup running; only one at a time. Try "
                                    "again when it has finished.");
  }
  CONCORD_RETURN_IF_ERROR(require_active(inst));
  BackupRow b;
  b.id = new_uuid();
  b.project_id = inst.project_id;
  b.instance_id = inst.id;
  b.name = name;
  b.description = description;
  b.version_id = inst.version_id;
  b.status = "NEW";
  b.datastore = inst.datastore;
  b.version = inst.version;
  b.created = b.updated = trove_time(clock_.now());
  // An automated backup at the project's quota: the check's message, written to the feed.
  std::string skipped;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    skipped.clear();  // the store may run this again
    // "One running backup", "one automated backup a day" and the quota are checks before an
    // insert; another server may be making the same checks (store.h, serialize()).
    CONCORD_RETURN_IF_ERROR(tx.serialize());
    CONCORD_ASSIGN_OR_RETURN(std::string busy, running_backup(tx, inst.id));
    if (!busy.empty()) {
      return fail(Code::kAborted, "Instance '" + inst.id + "' already has a backup running (" +
                                      busy + "); only one at a time.");
    }
    if (c.automated_since.empty()) {
      CONCORD_RETURN_IF_ERROR(check_quota(tx, inst.project_id, {{"backups", 1}}));
    } else {
      // The operations thread's check-and-insert, in one write (api_operations.cc).
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows made,
          tx.query(std::string("SELECT id FROM db_events WHERE instance_id = ? AND type IN ") +
                       kAutomatedDayEvents + " AND created >= ?",
                   {inst.id, c.automated_since}));
      if (!made.empty()) {
        return fail(Code::kAlreadyExists, "Instance '" + inst.id +
                                              "' already had its automated backup since " +
                                              c.automated_since + ".");
      }
      // At the quota the day's backup is skipped, not refused: nothing is made, the skip is
      // recorded in this same write (so the day is settled once, whichever server sees it)
      // and the next day's window tries again. The instance's status is not touched.
      if (Status quota = check_quota(tx, inst.project_id, {{"backups", 1}}); !quota) {
        if (quota.error().code() != Code::kResourceExhausted) return quota;
        // Unless retention frees room soon: the backup retention deletes today was made about
        // this time yesterday (or N days ago), so a pass at the window's start often comes
        // seconds before it expires. Waiting, not skipping, keeps a project whose quota holds
        // exactly its retained backups at one a day; the next passes try again.
        CONCORD_ASSIGN_OR_RETURN(
            auto expiring, expired_backups(tx, clock_.now() + kRetentionWait, inst.project_id));
        if (!expiring.empty()) {
          return fail(Code::kUnavailable, quota.error().message() + " Waiting for backup '" +
                                              expiring[0].id + "' to expire.");
        }
        skipped = quota.error().message();
        return record_event(tx, inst, "backup.automated.skipped",
                            "Automated backup '" + b.name + "' skipped: " + skipped,
                            {{"reason", skipped}});
      }
    }
    b.parent_id = parent_id;
    if (!parent_id.empty()) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows p,
          tx.query("SELECT instance_id, status FROM db_backups WHERE id = ? AND deleting = 0",
                   {parent_id}));
      if (p.empty() || p[0].text(0) != inst.id) {
        return fail(bad("Parent backup '" + parent_id + "' is not a backup of instance '" +
                        inst.id + "'."));
      }
      if (p[0].text(1) != "COMPLETED") {
        return fail(bad("Parent backup '" + parent_id + "' is not completed (status " +
                        p[0].text(1) + ")."));
      }
    } else if (incremental) {
      // Trove: an incremental backup without a parent builds on the instance's latest one.
      CONCORD_ASSIGN_OR_RETURN(store::Rows p,
                               tx.query("SELECT id FROM db_backups WHERE instance_id = ? AND "
                                        "deleting = 0 AND status = 'COMPLETED' "
                                        "ORDER BY created DESC, id DESC LIMIT 1",
                                        {inst.id}));
      if (!p.empty()) b.parent_id = p[0].text(0);
    }
    b.kind = b.parent_id.empty() ? "full" : "incremental";
    CONCORD_RETURN_IF_ERROR(
        insert_backup(tx, b, c.automated_since.empty() ? kTenantBackup : kScheduledBackup));
    if (!c.automated_since.empty()) {
      CONCORD_RETURN_IF_ERROR(record_event(tx, inst, "backup.automated.started",
                                           "Automated backup '" + b.name + "' started.",
                                           {{"backup_id", b.id}}));
    }
    return ok();
  }));
  if (!skipped.empty()) return fail(Code::kResourceExhausted, skipped);
  if (Status synced = sync_server(inst.id); !synced) {
    // The row holds it; the next GET of the instance pushes the state.
    logger("database")
        ->warn("backup {}: pushing instance {}'s desired state: {}", b.id, inst.id,
               synced.error().to_string());
  }
  logger("database")
      ->info("backup {} of instance {} requested ({}{})", b.id, inst.id, b.kind,
             b.parent_id.empty() ? "" : " on " + b.parent_id);
  return Response::json(202, dump_json({{"backup", backup_view(base(c), b)}}));
}

Result<Response> DatabaseService::Impl::list_backups(Call& c) {
  std::string where = "WHERE b.deleting = 0";
  std::vector<store::Value> args;
  const std::optional<std::string> all = c.req.query_param("all_projects");
  const bool all_projects = all && *all != "0" && *all != "false" && *all != "False";
  if (all_projects && !c.caller.is_admin()) {
    return fail(Code::kPermissionDenied, "Only administrators may list all projects' backups.");
  }
  if (!all_projects) {
    where += " AND b.project_id = ?";
    args.emplace_back(c.caller.project_id);
  } else if (auto p = c.req.query_param("project_id"); p && !p->empty()) {
    where += " AND b.project_id = ?";
    args.emplace_back(*p);
  }
  if (c.req.params.size() > 1) {  // /instances/{id}/backups
    where += " AND b.instance_id = ?";
    args.emplace_back(c.param(1));
  } else if (auto i = c.req.query_param("instance_id"); i && !i->empty()) {
    where += " AND b.instance_id = ?";
    args.emplace_back(*i);
  }
  if (auto d = c.req.query_param("datastore"); d && !d->empty()) {
    where += " AND (d.name = ? OR d.id = ?)";
    args.emplace_back(*d);
    args.emplace_back(*d);
  }
  CONCORD_ASSIGN_OR_RETURN(const int64_t limit, parse_limit(c.req));
  std::vector<BackupRow> rows;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    rows.clear();
    if (c.req.params.size() > 1) CONCORD_RETURN_IF_ERROR(load_instance(tx, c, c.param(1), true));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows r,
        tx.query(std::string(kBackupSelect) + where + " ORDER BY b.created, b.id", args));
    for (const store::Row& row : r) rows.push_back(backup_from(row));
    return ok();
  }));
  CONCORD_ASSIGN_OR_RETURN(
      const Page page, page_of(
                           c.req, limit, rows, [](const BackupRow& b) { return b.id; }, "backup"));
  Json list = Json::array();
  for (size_t i = page.begin; i < page.end; ++i) list.push_back(backup_view(base(c), rows[i]));
  Json out = {{"backups", std::move(list)}};
  if (!page.next.empty()) {
    std::string next = base(c) + (c.req.params.size() > 1 ? "/instances/" + c.param(1) : "") +
                       "/backups?limit=" + std::to_string(limit) + "&marker=" + page.next;
    out["links"] = Json::array({{{"href", next}, {"rel", "next"}}});
  }
  return Response::json(200, dump_json(out));
}

Result<Response> DatabaseService::Impl::list_instance_backups(Call& c) {
  return list_backups(c);
}

Result<Response> DatabaseService::Impl::show_backup(Call& c) {
  BackupRow b;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(b, load_backup(tx, c.caller, c.param(1)));
    return ok();
  }));
  // A backup whose instance went away before its agent finished can never finish.
  if (running(b.status)) {
    CONCORD_ASSIGN_OR_RETURN(auto live, servers());
    if (!live.contains(b.instance_id)) {
      CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
        CONCORD_ASSIGN_OR_RETURN(
            store::Rows inst,
            tx.query("SELECT id FROM db_instances WHERE id = ? AND deleting = 0", {b.instance_id}));
        if (!inst.empty()) return ok();  // not placed yet: its server comes
        b.status = "FAILED";
        b.fail_reason = "the instance was deleted before the backup finished";
        b.updated = trove_time(clock_.now());
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec(std::string("UPDATE db_backups SET status = 'FAILED', fail_reason "
                                           "= ?, updated = ? WHERE id = ? AND status IN ") +
                                   kRunning,
                               {b.fail_reason, b.updated, b.id}));
        if (n == 0) return ok();
        return record_instance_event(tx, b.instance_id, b.project_id, "backup.failed",
                                     "Backup '" + b.name + "' failed.",
                                     {{"backup_id", b.id}, {"reason", b.fail_reason}});
      }));
    }
  }
  return Response::json(200, dump_json({{"backup", backup_view(base(c), b)}}));
}

Status DatabaseService::Impl::meter_backups(store::Tx& tx, int64_t now_us, int64_t due_before) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows, tx.query(std::string(kBackupSelect) +
                                 "WHERE b.deleting = 0 AND b.status = 'COMPLETED' ORDER BY b.id"));
  for (const store::Row& r : rows) {
    const BackupRow b = backup_from(r);
    BackupMeta m = meta_of(b.meta_json);
    if (m.metered_us <= 0 || m.metered_us >= due_before) continue;
    CONCORD_RETURN_IF_ERROR(meter_backup(tx, b, m, now_us, options_.region));
    CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec("UPDATE db_backups SET meta_json = ? WHERE id = ?",
                                                {meta_text(m), b.id}));
    (void)n;
  }
  return ok();
}

// Trove's delete: the backup and, recursively, every incremental backup made on top of it
// (they cannot be restored without it), all in one write; refused (422) while any of them runs.
Result<Response> DatabaseService::Impl::delete_backup(Call& c) {
  std::vector<BackupRow> gone;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    gone.clear();
    CONCORD_ASSIGN_OR_RETURN(BackupRow root, load_backup(tx, c.caller, c.param(1)));
    gone.push_back(std::move(root));
    for (size_t i = 0; i < gone.size(); ++i) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows children,
          tx.query(std::string(kBackupSelect) + "WHERE b.parent_id = ? AND b.deleting = 0",
                   {gone[i].id}));
      for (const store::Row& r : children) gone.push_back(backup_from(r));
    }
    const int64_t now_us = to_us(clock_.now());
    for (BackupRow& b : gone) {
      if (running(b.status)) {
        return fail(
            Code::kFailedPrecondition,
            "Backup '" + b.id + "' is still running (status " + b.status + ")" +
                (b.id == gone.front().id ? "" : ", on top of backup '" + gone.front().id + "'") +
                "; delete it when it has completed or failed.");
      }
      if (b.status == "COMPLETED") {
        // Close the backup's storage interval (GiB-hours) in the same write.
        BackupMeta m = meta_of(b.meta_json);
        CONCORD_RETURN_IF_ERROR(meter_backup(tx, b, m, now_us, options_.region));
      }
      CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec("DELETE FROM db_backups WHERE id = ?", {b.id}));
      (void)n;
    }
    return ok();
  }));
  for (const BackupRow& b : gone) {
    if (b.sha256.empty() || !backup_blobs_) continue;
    bool referenced = true;
    Status st = store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows r, tx.query("SELECT (SELECT COUNT(*) FROM db_backups WHERE sha256 = ?) + "
                                  "(SELECT COUNT(*) FROM db_log_segments WHERE sha256 = ?)",
                                  {b.sha256, b.sha256}));
      referenced = !r.empty() && r[0].integer(0) > 0;
      return ok();
    });
    if (st && !referenced) {
      if (Status rm = backup_blobs_->remove(b.sha256); !rm) {
        logger("database")->warn("backup {}: removing its data: {}", b.id, rm.error().to_string());
      }
    }
    logger("database")->info("backup {} of instance {} deleted", b.id, b.instance_id);
  }
  prune_logs(gone.front().instance_id);
  return Response::empty(202);
}

// ---- restore ----------------------------------------------------------------------------

Status DatabaseService::Impl::parse_create_restore(const Call& c, const Json& in,
                                                   InstanceRow& inst) {
  auto rp = in.find("restorePoint");
  if (rp == in.end() || rp->is_null()) return ok();
  if (!rp->is_object()) {
    return fail(
        bad("'restorePoint' must be {\"backupRef\": <backup id>} (optionally with "
            "\"restore_time\")."));
  }
  auto string_member = [&](const char* key) -> Result<std::optional<std::string>> {
    auto it = rp->find(key);
    if (it == rp->end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string() || it->get<std::string>().empty()) {
      return fail(bad(std::string("restorePoint '") + key + "' must be a non-empty string."));
    }
    return std::optional<std::string>(it->get<std::string>());
  };
  CONCORD_ASSIGN_OR_RETURN(std::optional<std::string> backup_ref, string_member("backupRef"));
  CONCORD_ASSIGN_OR_RETURN(std::optional<std::string> instance_ref, string_member("instanceRef"));
  CONCORD_ASSIGN_OR_RETURN(std::optional<std::string> time_text, string_member("restore_time"));
  if (backup_ref.has_value() == instance_ref.has_value()) {
    return fail(
        bad("'restorePoint' takes either 'backupRef' (a backup id) or 'instanceRef' (an "
            "instance id, with 'restore_time')."));
  }
  if (instance_ref && !time_text) {
    return fail(bad("restorePoint 'instanceRef' needs a 'restore_time'."));
  }
  int64_t target_us = 0;
  if (time_text) {
    std::optional<SystemTime> t = parse_iso_time(*time_text);
    if (!t) {
      return fail(
          bad("restorePoint 'restore_time' must be an ISO 8601 UTC time such as "
              "2026-11-29T12:00:00.123456Z."));
    }
    target_us = to_us(*t);
    if (target_us <= 0) return fail(bad("restorePoint 'restore_time' is before 1970."));
    if (target_us > to_us(clock_.now())) {
      return fail(bad("restorePoint 'restore_time' " + *time_text + " is in the future."));
    }
  }
  BackupRow b;
  int64_t logs_until_us = 0;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    if (backup_ref) {
      CONCORD_ASSIGN_OR_RETURN(b, load_backup(tx, c.caller, *backup_ref));
    } else {
      // The latest completed backup of that instance consistent at or before the target.
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query(std::string(kBackupSelect) +
                       "WHERE b.instance_id = ? AND b.deleting = 0 AND b.status = 'COMPLETED' "
                       "ORDER BY b.created, b.id",
                   {*instance_ref}));
      std::optional<BackupRow> best;
      int64_t best_at = -1;
      bool any = false;
      for (const store::Row& r : rows) {
        BackupRow x = backup_from(r);
        if (x.project_id != c.caller.project_id && !c.caller.is_admin()) continue;
        any = true;
        const int64_t at = meta_of(x.meta_json).consistent_at_us;
        if (at <= target_us && at >= best_at) {
          best = x;
          best_at = at;
        }
      }
      if (!any) {
        return fail(Code::kNotFound,
                    "Instance '" + *instance_ref + "' has no completed backup to restore from.");
      }
      if (!best) {
        return fail(bad("Instance '" + *instance_ref + "' has no completed backup from before " +
                        *time_text + "."));
      }
      b = *best;
    }
    if (target_us > 0) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows r, tx.query("SELECT COALESCE(MAX(last_time_us), 0) FROM db_log_segments "
                                  "WHERE instance_id = ?",
                                  {b.instance_id}));
      logs_until_us = r.empty() ? 0 : r[0].integer(0);
    }
    return ok();
  }));
  if (b.status != "COMPLETED") {
    return fail(bad("Backup '" + b.id + "' is not completed (status " + b.status +
                    "); only a completed backup can be restored."));
  }
  if (b.version_id != inst.version_id) {
    return fail(bad("Backup '" + b.id + "' is of datastore " + b.datastore + " " + b.version +
                    "; the new instance must use the same datastore and version (it asks for " +
                    inst.datastore + " " + inst.version + ")."));
  }
  if (inst.volume_gb * kGiB < b.size_bytes) {
    return fail(bad("The volume of " + std::to_string(inst.volume_gb) + " GB is smaller than " +
                    "backup '" + b.id + "' (" + std::to_string(b.size_bytes) + " bytes)."));
  }
  if (target_us > 0) {
    const BackupMeta m = meta_of(b.meta_json);
    const auto shown = [](int64_t us) {
      return format_keystone_time(SystemTime{std::chrono::microseconds(us)});
    };
    if (target_us < m.consistent_at_us) {
      return fail(bad("restore_time " + *time_text + " is before backup '" + b.id +
                      "' is consistent (" + shown(m.consistent_at_us) +
                      "); pick an earlier backup."));
    }
    if (target_us > logs_until_us) {
      return fail(bad(
          "restore_time " + *time_text + " is beyond the archived logs of instance '" +
          b.instance_id + "'" +
          (logs_until_us > 0 ? " (they reach " + shown(logs_until_us) + ")" : " (there are none)") +
          "; the latest seconds arrive as their log files are archived."));
    }
  }
  inst.restored_from = b.id + (target_us > 0 ? "@" + std::to_string(target_us) : "");
  return ok();
}

namespace {

// Whether `j` is an array of exactly `n` strings (a recorded database or user row).
bool string_tuple(const Json& j, size_t n) {
  return j.is_array() && j.size() == n &&
         std::all_of(j.begin(), j.end(), [](const Json& x) { return x.is_string(); });
}

// Adds the backup's recorded databases and users that the instance does not have yet (the
// create request's own win) as rows and to `st`. In the create's write transaction; on a later
// read of the first state everything is there already and nothing is written.
Status import_access(store::Tx& tx, const std::string& instance_id, const std::string& backup_id,
                     engine::DesiredState& st) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows r,
                           tx.query("SELECT meta_json FROM db_backups WHERE id = ?", {backup_id}));
  if (r.empty()) return ok();
  const Json access = meta_of(r[0].text(0)).access;
  bool changed = false;
  for (const Json& d : access.value("databases", Json::array())) {
    if (!string_tuple(d, 3)) continue;
    const std::string name = d[0];
    if (std::any_of(st.databases.begin(), st.databases.end(),
                    [&](const engine::DatabaseSpec& x) { return x.name == name; })) {
      continue;
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO db_databases (instance_id, name, "
                           "character_set, collate_name) VALUES (?, ?, ?, ?)",
                           {instance_id, name, d[1].get<std::string>(), d[2].get<std::string>()}));
    (void)n;
    st.databases.push_back({name, d[1], d[2]});
    changed = true;
  }
  for (const Json& u : access.value("users", Json::array())) {
    if (!string_tuple(u, 4)) continue;
    const std::string name = u[0];
    if (std::any_of(st.users.begin(), st.users.end(),
                    [&](const engine::UserSpec& x) { return x.name == name; })) {
      continue;
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO db_users (instance_id, name, host, "
                           "verifier, databases_json) VALUES (?, ?, ?, ?, ?)",
                           {instance_id, name, u[1].get<std::string>(), u[2].get<std::string>(),
                            u[3].get<std::string>()}));
    (void)n;
    st.users.push_back({name, u[1], u[2], string_list(u[3])});
    changed = true;
  }
  if (changed) {
    auto by_name = [](const auto& a, const auto& b) { return a.name < b.name; };
    std::sort(st.databases.begin(), st.databases.end(), by_name);
    std::sort(st.users.begin(), st.users.end(), by_name);
  }
  return ok();
}

// A restorable chain: its archives (full first) and the instance they were taken of.
struct Chain {
  engine::RestoreSpec spec;
  std::string instance_id;
  int64_t size_bytes = 0;  // of all its archives
};

// The chain that ends with `backup_id`, following parent_id to its full backup; nullopt when
// one of its backups is gone or not COMPLETED.
Result<std::optional<Chain>> chain_to(store::Tx& tx, const std::string& backup_id) {
  Chain out;
  for (std::string id = backup_id; !id.empty();) {
    if (out.spec.chain.size() >= kMaxChain) return fail(Code::kInternal, "backup chain too long");
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows r, tx.query("SELECT sha256, size_bytes, meta_json, parent_id, instance_id, "
                                "status FROM db_backups WHERE id = ?",
                                {id}));
    if (r.empty() || r[0].text(5) != "COMPLETED") return std::optional<Chain>();
    if (out.instance_id.empty()) out.instance_id = r[0].text(4);
    out.spec.chain.push_back(
        {id, r[0].text(0), r[0].integer(1), meta_of(r[0].text(2)).engine_meta});
    out.size_bytes += r[0].integer(1);
    id = r[0].text(3);
  }
  std::reverse(out.spec.chain.begin(), out.spec.chain.end());
  return std::optional<Chain>(std::move(out));
}

}  // namespace

Result<std::optional<engine::RestoreSpec>> DatabaseService::Impl::backup_seed(
    store::Tx& tx, const InstanceRow& source) {
  // PostgreSQL's network copy (pg_basebackup) is physical already; MariaDB's is a dump.
  if (source.engine != "mariadb") return std::optional<engine::RestoreSpec>();
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows newest,
      tx.query("SELECT id, meta_json FROM db_backups WHERE instance_id = ? AND deleting = 0 AND "
               "status = 'COMPLETED' ORDER BY created DESC, id DESC LIMIT 1",
               {source.id}));
  if (newest.empty()) return std::optional<engine::RestoreSpec>();
  CONCORD_ASSIGN_OR_RETURN(std::optional<Chain> chain, chain_to(tx, newest[0].text(0)));
  if (!chain) return std::optional<engine::RestoreSpec>();
  // Replaying the logs written since re-executes every change, as loading a dump re-executes
  // every row: a backup that many logs followed is no shortcut. Logs begun after the backup
  // count; the one open during it does not (its events before the backup's position, most of
  // it when a load preceded the backup, are skipped by the replay, and a binlog is closed at
  // least once a minute).
  const int64_t consistent_us = meta_of(newest[0].text(1)).consistent_at_us;
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows logs,
      tx.query("SELECT COALESCE(SUM(size_bytes), 0) FROM db_log_segments WHERE instance_id = ? "
               "AND (first_time_us = 0 OR first_time_us >= ?)",
               {source.id, consistent_us}));
  if (!logs.empty() && logs[0].integer(0) > chain->size_bytes) {
    return std::optional<engine::RestoreSpec>();
  }
  chain->spec.log_source_instance = source.id;  // replayed to their end (target_time_us 0)
  return std::optional<engine::RestoreSpec>(std::move(chain->spec));
}

Status DatabaseService::Impl::replica_seed(store::Tx& tx, const InstanceRow& source,
                                           engine::ReplicationSpec& r) {
  CONCORD_ASSIGN_OR_RETURN(r.seed, backup_seed(tx, source));
  r.seed_wait_until_us = 0;
  if (r.seed || source.engine != "mariadb") return ok();
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows running,
      tx.query(std::string("SELECT created FROM db_backups WHERE instance_id = ? AND "
                           "deleting = 0 AND automated = ? AND status IN ") +
                   kRunning + " ORDER BY created DESC LIMIT 1",
               {source.id, kSeedBackup}));
  if (running.empty()) return ok();
  if (auto made = parse_iso_time(running[0].text(0))) {
    r.seed_wait_until_us = to_us(*made + kSeedBackupWait);
  }
  return ok();
}

Status DatabaseService::Impl::start_seed_backup(store::Tx& tx, const InstanceRow& source,
                                                const std::string& replica_id) {
  if (!backup_blobs_ || source.engine != "mariadb") return ok();
  CONCORD_ASSIGN_OR_RETURN(std::optional<engine::RestoreSpec> seed, backup_seed(tx, source));
  if (seed) return ok();
  // Inside the replica's (serialized) write: a running backup holds the source (one at a
  // time), and the project's quota is checked with the insert.
  CONCORD_ASSIGN_OR_RETURN(std::string busy, running_backup(tx, source.id));
  if (!busy.empty()) return ok();
  if (Status quota = check_quota(tx, source.project_id, {{"backups", 1}}); !quota) {
    if (quota.error().code() != Code::kResourceExhausted) return quota;
    logger("database")
        ->info("replica {}: no backup of {} taken to seed it: {}", replica_id, source.id,
               quota.error().message());
    return ok();
  }
  BackupRow b;
  b.id = new_uuid();
  b.project_id = source.project_id;
  b.instance_id = source.id;
  b.name = "Replication snapshot for " + source.name;  // Trove's name for its own
  b.description = "Taken to seed replica " + replica_id + "; deleted an hour after it ends.";
  b.version_id = source.version_id;
  b.kind = "full";
  b.created = b.updated = trove_time(clock_.now());
  CONCORD_RETURN_IF_ERROR(insert_backup(tx, b, kSeedBackup));
  return record_event(tx, source, "backup.seed.started",
                      "Backup '" + b.name + "' started, to seed replica " + replica_id + ".",
                      {{"backup_id", b.id}, {"replica_id", replica_id}});
}

Status DatabaseService::Impl::add_backup_state(store::Tx& tx, const InstanceRow& inst,
                                               engine::DesiredState& st) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows pending,
      tx.query(std::string("SELECT id, parent_id FROM db_backups WHERE instance_id = ? AND "
                           "deleting = 0 AND status IN ") +
                   kRunning + " ORDER BY created, id LIMIT 1",
               {inst.id}));
  if (!pending.empty()) {
    engine::BackupRequest req;
    req.id = pending[0].text(0);
    req.parent_id = pending[0].text(1);
    if (!req.parent_id.empty()) {
      CONCORD_ASSIGN_OR_RETURN(store::Rows p, tx.query("SELECT meta_json FROM db_backups WHERE "
                                                       "id = ?",
                                                       {req.parent_id}));
      req.parent_meta_json = p.empty() ? "{}" : meta_of(p[0].text(0)).engine_meta;
    }
    st.backup = std::move(req);
  }
  if (inst.restored_from.empty()) return ok();
  std::string backup_id = inst.restored_from;
  int64_t target_us = 0;
  if (size_t at = backup_id.find('@'); at != std::string::npos) {
    target_us = std::strtoll(backup_id.c_str() + at + 1, nullptr, 10);
    backup_id.resize(at);
  }
  CONCORD_ASSIGN_OR_RETURN(std::optional<Chain> chain, chain_to(tx, backup_id));
  if (!chain) {
    // Deleted after the restore was asked for: the instance's folder was made from it already
    // (or its restore fails on the host, which shows as the instance's fault).
    logger("database")
        ->warn("instance {}: a backup of its restore chain ({}) is gone", inst.id, backup_id);
    return ok();
  }
  engine::RestoreSpec spec = std::move(chain->spec);
  const std::string& source_instance = chain->instance_id;
  // The instance's first state (its create) takes the restored backup's databases and users
  // (see the file comment); later states have them as rows.
  if (inst.state_revision == 1) {
    CONCORD_RETURN_IF_ERROR(import_access(tx, inst.id, backup_id, st));
  }
  if (target_us > 0) {
    spec.log_source_instance = source_instance;
    spec.target_time_us = target_us;
  }
  st.restore = std::move(spec);
  return ok();
}

// ---- agents' routes ---------------------------------------------------------------------

void DatabaseService::Impl::add_agent(Method method, const std::string& pattern,
                                      AgentHandler handler) {
  agent_routes_->add(
      method, pattern,
      [this, handler](Request& req) -> Response {
        try {
          auto host = compute::authenticate_agent(compute_, req);
          if (!host) return http::keystone_style_error(401, host.error().message());
          for (const std::string& p : req.params) {
            if (p.empty() || p.size() > 255 || p.find('/') != std::string::npos ||
                sanitize_utf8(p) != p) {
              return http::keystone_style_error(404, "The resource could not be found.");
            }
          }
          auto r = (this->*handler)(req, *host);
          if (!r) {
            if (status_of(r.error().code()) >= 500) {
              logger("database")
                  ->error("agent {} {} host={}: {}", http::method_name(req.method),
                          sanitize_utf8(req.path), *host, r.error().to_string());
            }
            return http::keystone_style_error(status_of(r.error().code()), r.error().message());
          }
          return std::move(*r);
        } catch (const std::exception& e) {
          logger("database")
              ->error("agent {} {}: unexpected exception: {}", http::method_name(req.method),
                      sanitize_utf8(req.path), e.what());
          return http::keystone_style_error(
              500, "Internal error; the request id is " + req.request_id + ".");
        }
      },
      "database-agent:" + std::string(http::method_name(method)) + " " + pattern);
}

Result<std::string> DatabaseService::Impl::require_instance_host(const std::string& id,
                                                                 const std::string& host) {
  CONCORD_ASSIGN_OR_RETURN(auto live, servers());
  // Any member server of an instance answers for it (high availability: the standby member,
  // "<id>-m1", is the primary after a failover); its metadata names the instance.
  bool known = false;
  for (const auto& [server_id, s] : live) {
    auto named = s.metadata.find(std::string(keys::kInstance));
    const std::string instance = named == s.metadata.end() ? server_id : named->second;
    if (server_id != id && instance != id) continue;
    known = true;
    if (s.host == host) return instance;
  }
  if (!known) return fail(Code::kNotFound, "Instance '" + id + "' has no server.");
  return fail(Code::kPermissionDenied, "Host '" + host + "' does not run instance '" + id + "'.");
}

void DatabaseService::Impl::backup_request_done(const std::string& instance_id) {
  int64_t changed = 0;
  std::vector<std::string> replicas;
  Status st = store_.write([&](store::Tx& tx) -> Status {
    replicas.clear();  // the store may run this again
    CONCORD_ASSIGN_OR_RETURN(changed, tx.exec("UPDATE db_instances SET state_revision = "
                                              "state_revision + 1 WHERE id = ? AND deleting = 0",
                                              {instance_id}));
    if (changed == 0) return ok();
    // Its replicas too: one waiting for this backup to seed it now has it as its seed, or,
    // when it failed, copies over the network ("A backup taken for the seed").
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT id FROM db_instances WHERE replica_of = ? AND "
                                      "deleting = 0 ORDER BY created, id",
                                      {instance_id}));
    for (const store::Row& r : rows) replicas.push_back(r.text(0));
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE db_instances SET state_revision = state_revision + 1 "
                                     "WHERE replica_of = ? AND deleting = 0",
                                     {instance_id}));
    (void)n;
    return ok();
  });
  if (st && changed > 0) st = sync_server(instance_id);
  if (!st) {
    // The next GET of the instance (or the next change) pushes the state.
    logger("database")
        ->warn("instance {}: dropping its finished backup request: {}", instance_id,
               st.error().to_string());
  }
  sync_servers(replicas);
}

void DatabaseService::Impl::prune_logs(const std::string& instance_id) {
  // Also any other deleted instance's logs that nothing needs (one deleted without backups).
  std::vector<std::string> shas;
  Status st = store_.write([&](store::Tx& tx) -> Status {
    shas.clear();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows orphans,
        tx.query("SELECT DISTINCT l.instance_id FROM db_log_segments l WHERE "
                 "NOT EXISTS (SELECT 1 FROM db_instances i WHERE i.id = l.instance_id AND "
                 "i.deleting = 0) AND "
                 "NOT EXISTS (SELECT 1 FROM db_backups b WHERE b.instance_id = l.instance_id)"));
    for (const store::Row& o : orphans) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows logs,
          tx.query("SELECT sha256 FROM db_log_segments WHERE instance_id = ?", {o.text(0)}));
      for (const store::Row& r : logs) shas.push_back(r.text(0));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("DELETE FROM db_log_segments WHERE instance_id = ?", {o.text(0)}));
      (void)n;
    }
    return ok();
  });
  if (!st) {
    logger("database")
        ->warn("instance {}: pruning archived logs: {}", instance_id, st.error().to_string());
    return;
  }
  if (!backup_blobs_) return;
  for (const std::string& sha : shas) {
    bool referenced = true;
    Status q = store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows r, tx.query("SELECT (SELECT COUNT(*) FROM db_backups WHERE sha256 = ?) + "
                                  "(SELECT COUNT(*) FROM db_log_segments WHERE sha256 = ?)",
                                  {sha, sha}));
      referenced = !r.empty() && r[0].integer(0) > 0;
      return ok();
    });
    if (q && !referenced) (void)backup_blobs_->remove(sha);
  }
}

namespace {

Result<BackupRow> agent_load_backup(store::Store& store, const std::string& id) {
  BackupRow b;
  CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string(kBackupSelect) + "WHERE b.id = ? AND b.deleting = 0", {id}));
    if (rows.empty()) return fail(Code::kNotFound, "Backup '" + id + "' cannot be found.");
    b = backup_from(rows[0]);
    return ok();
  }));
  return b;
}

}  // namespace

Result<Response> DatabaseService::Impl::agent_backup_progress(Request& req,
                                                              const std::string& host) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(req));
  CONCORD_ASSIGN_OR_RETURN(std::string status, string_field(body, "status", "progress"));
  if (status != "BUILDING" && status != "SAVING") {
    return fail(bad("progress 'status' must be BUILDING or SAVING."));
  }
  CONCORD_ASSIGN_OR_RETURN(BackupRow b, agent_load_backup(store_, req.params.at(0)));
  CONCORD_RETURN_IF_ERROR(require_instance_host(b.instance_id, host));
  // Only forward (NEW -> BUILDING -> SAVING); a late or repeated report changes nothing.
  const char* from = status == "BUILDING" ? "('NEW')" : "('NEW', 'BUILDING')";
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec(std::string("UPDATE db_backups SET status = ?, updated = ? WHERE id = ? AND "
                            "status IN ") +
                    from,
                {status, trove_time(clock_.now()), b.id}));
    (void)n;
    return ok();
  }));
  return Response::empty(204);
}

Result<Response> DatabaseService::Impl::agent_put_backup(Request& req, const std::string& host) {
  if (!backup_blobs_) return fail(Code::kUnavailable, "this server has no backup storage");
  CONCORD_ASSIGN_OR_RETURN(std::string sha, header_sha256(req));
  // The BackupInfo (engine.h) as base64url JSON; absent: a full archive consistent now.
  BackupMeta meta;
  std::string kind;
  if (std::string_view info = req.header("x-concord-backup-info"); !info.empty()) {
    std::optional<Json> j;
    if (auto raw = base64url_decode(info)) {
      if (auto parsed = parse_json(*raw)) j = std::move(*parsed);
    }
    if (!j || !j->is_object()) {
      return fail(bad("X-Concord-Backup-Info must be base64url of the BackupInfo JSON object"));
    }
    kind = j->value("kind", std::string());
    if (auto t = j->find("consistent_at_us"); t != j->end() && t->is_number_integer()) {
      meta.consistent_at_us = t->get<int64_t>();
    }
    if (auto m = j->find("meta_json"); m != j->end() && m->is_string()) meta.engine_meta = *m;
    if ((!kind.empty() && kind != "full" && kind != "incremental") || meta.consistent_at_us < 0 ||
        !parse_json(meta.engine_meta).has_value()) {
      return fail(
          bad("X-Concord-Backup-Info: kind must be full or incremental, "
              "consistent_at_us a time, meta_json JSON"));
    }
  }
  CONCORD_ASSIGN_OR_RETURN(BackupRow b, agent_load_backup(store_, req.params.at(0)));
  if (b.status == "COMPLETED") {
    if (b.sha256 == sha) return Response::json(200, dump_json({{"status", b.status}}));
    return fail(Code::kAlreadyExists, "Backup '" + b.id + "' is completed with other data.");
  }
  if (b.status == "FAILED") {
    return fail(Code::kFailedPrecondition, "Backup '" + b.id + "' has failed already.");
  }
  CONCORD_RETURN_IF_ERROR(require_instance_host(b.instance_id, host));
  std::unique_ptr<blob::BlobWriter> writer;
  if (!req.body_file.empty()) {
    CONCORD_ASSIGN_OR_RETURN(writer, backup_blobs_->adopt(req.body_file, kMaxUploadBytes));
  } else {
    CONCORD_ASSIGN_OR_RETURN(writer, backup_blobs_->begin_write(kMaxUploadBytes));
    CONCORD_RETURN_IF_ERROR(writer->write(req.body));
  }
  CONCORD_ASSIGN_OR_RETURN(blob::BlobInfo got, writer->commit());
  auto drop_unreferenced = [&] {
    bool referenced = true;
    Status q = store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows r, tx.query("SELECT (SELECT COUNT(*) FROM db_backups WHERE sha256 = ?) + "
                                  "(SELECT COUNT(*) FROM db_log_segments WHERE sha256 = ?)",
                                  {got.sha256, got.sha256}));
      referenced = !r.empty() && r[0].integer(0) > 0;
      return ok();
    });
    if (q && !referenced) (void)backup_blobs_->remove(got.sha256);
  };
  if (got.sha256 != sha) {
    drop_unreferenced();
    return fail(bad("checksum mismatch: the agent sent SHA-256 " + sha + ", the server received " +
                    got.sha256 + " (" + std::to_string(got.size) + " bytes); upload it again."));
  }
  const int64_t now_us = to_us(clock_.now());
  meta.access = meta_of(b.meta_json).access;
  if (meta.consistent_at_us == 0) meta.consistent_at_us = now_us;
  meta.metered_us = now_us;
  if (kind.empty()) kind = b.kind;
  bool stored = false;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec(std::string("UPDATE db_backups SET status = 'COMPLETED', sha256 = ?, size_bytes = "
                            "?, kind = ?, meta_json = ?, updated = ? WHERE id = ? AND "
                            "deleting = 0 AND status IN ") +
                    kRunning,
                {got.sha256, static_cast<int64_t>(got.size), kind, meta_text(meta),
                 trove_time(clock_.now()), b.id}));
    stored = n > 0;
    if (!stored) return ok();
    return record_instance_event(tx, b.instance_id, b.project_id, "backup.completed",
                                 "Backup '" + b.name + "' completed.",
                                 {{"backup_id", b.id}, {"size_bytes", got.size}});
  }));
  if (!stored) {
    drop_unreferenced();
    return fail(Code::kFailedPrecondition,
                "Backup '" + b.id + "' is no longer waiting for its data.");
  }
  logger("database")
      ->info("backup {} of instance {} completed: {} bytes sha256={}", b.id, b.instance_id,
             got.size, got.sha256);
  backup_request_done(b.instance_id);
  return Response::json(
      200, dump_json({{"status", "COMPLETED"}, {"size_bytes", got.size}, {"sha256", got.sha256}}));
}

Result<Response> DatabaseService::Impl::agent_backup_failed(Request& req, const std::string& host) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(req));
  std::string reason = body.value("reason", std::string("the agent reported a failure"));
  reason = sanitize_utf8(reason.substr(0, 1000));
  CONCORD_ASSIGN_OR_RETURN(BackupRow b, agent_load_backup(store_, req.params.at(0)));
  if (b.status == "FAILED") return Response::empty(204);
  if (b.status == "COMPLETED") {
    return fail(Code::kFailedPrecondition, "Backup '" + b.id + "' has completed already.");
  }
  CONCORD_RETURN_IF_ERROR(require_instance_host(b.instance_id, host));
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec(std::string("UPDATE db_backups SET status = 'FAILED', fail_reason = "
                                       "?, updated = ? WHERE id = ? AND status IN ") +
                               kRunning,
                           {reason, trove_time(clock_.now()), b.id}));
    if (n == 0) return ok();
    return record_instance_event(tx, b.instance_id, b.project_id, "backup.failed",
                                 "Backup '" + b.name + "' failed.",
                                 {{"backup_id", b.id}, {"reason", reason}});
  }));
  logger("database")->warn("backup {} of instance {} failed: {}", b.id, b.instance_id, reason);
  backup_request_done(b.instance_id);
  return Response::empty(204);
}

Result<Response> DatabaseService::Impl::agent_get_backup(Request& req, const std::string& host) {
  (void)host;  // any agent: a restore runs wherever the new instance was placed
  if (!backup_blobs_) return fail(Code::kUnavailable, "this server has no backup storage");
  CONCORD_ASSIGN_OR_RETURN(BackupRow b, agent_load_backup(store_, req.params.at(0)));
  if (b.status != "COMPLETED") {
    return fail(Code::kFailedPrecondition,
                "Backup '" + b.id + "' has no data (status " + b.status + ").");
  }
  return blob_response(*backup_blobs_, b.sha256);
}

Result<Response> DatabaseService::Impl::agent_put_log(Request& req, const std::string& host) {
  if (!backup_blobs_) return fail(Code::kUnavailable, "this server has no backup storage");
  // The logs are the instance's, whichever member's server ships them.
  const std::string& shipper = req.params.at(0);
  const std::string& name = req.params.at(1);
  if (!valid_log_name(name)) {
    return fail(bad("a log file name is 1 to 255 letters, digits, '.', '_' or '-'"));
  }
  CONCORD_ASSIGN_OR_RETURN(std::string sha, header_sha256(req));
  CONCORD_ASSIGN_OR_RETURN(int64_t first_us, header_int(req, "x-concord-log-first-us"));
  CONCORD_ASSIGN_OR_RETURN(int64_t last_us, header_int(req, "x-concord-log-last-us"));
  CONCORD_ASSIGN_OR_RETURN(const std::string instance_id, require_instance_host(shipper, host));
  std::optional<std::string> existing;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows r,
        tx.query("SELECT sha256 FROM db_log_segments WHERE instance_id = ? AND name = ?",
                 {instance_id, name}));
    if (!r.empty()) existing = r[0].text(0);
    return ok();
  }));
  if (existing) {
    if (*existing == sha) return Response::empty(204);  // shipped again after a lost answer
    return fail(Code::kAlreadyExists, "Log file '" + name + "' of instance '" + instance_id +
                                          "' exists with other data.");
  }
  std::unique_ptr<blob::BlobWriter> writer;
  if (!req.body_file.empty()) {
    CONCORD_ASSIGN_OR_RETURN(writer, backup_blobs_->adopt(req.body_file, kMaxUploadBytes));
  } else {
    CONCORD_ASSIGN_OR_RETURN(writer, backup_blobs_->begin_write(kMaxUploadBytes));
    CONCORD_RETURN_IF_ERROR(writer->write(req.body));
  }
  CONCORD_ASSIGN_OR_RETURN(blob::BlobInfo got, writer->commit());
  if (got.sha256 != sha) {
    bool referenced = true;
    Status q = store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows r, tx.query("SELECT (SELECT COUNT(*) FROM db_backups WHERE sha256 = ?) + "
                                  "(SELECT COUNT(*) FROM db_log_segments WHERE sha256 = ?)",
                                  {got.sha256, got.sha256}));
      referenced = !r.empty() && r[0].integer(0) > 0;
      return ok();
    });
    if (q && !referenced) (void)backup_blobs_->remove(got.sha256);
    return fail(bad("checksum mismatch: the agent sent SHA-256 " + sha + ", the server received " +
                    got.sha256 + "; upload it again."));
  }
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows r,
        tx.query("SELECT sha256 FROM db_log_segments WHERE instance_id = ? AND name = ?",
                 {instance_id, name}));
    if (!r.empty()) {
      if (r[0].text(0) == sha) return ok();
      return fail(Code::kAlreadyExists, "Log file '" + name + "' of instance '" + instance_id +
                                            "' exists with other data.");
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO db_log_segments (instance_id, name, sha256, size_bytes, "
                           "first_time_us, last_time_us, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           {instance_id, name, sha, static_cast<int64_t>(got.size), first_us,
                            last_us, trove_time(clock_.now())}));
    (void)n;
    return ok();
  }));
  return Response::empty(204);
}

Result<Response> DatabaseService::Impl::agent_list_logs(Request& req, const std::string& host) {
  (void)host;  // any agent: a point-in-time restore replays another instance's logs
  Json logs = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT name, sha256, size_bytes, first_time_us, last_time_us FROM "
                 "db_log_segments WHERE instance_id = ? ORDER BY name",
                 {req.params.at(0)}));
    for (const store::Row& r : rows) {
      logs.push_back({{"name", r.text(0)},
                      {"sha256", r.text(1)},
                      {"size_bytes", r.integer(2)},
                      {"first_time_us", r.integer(3)},
                      {"last_time_us", r.integer(4)}});
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"logs", std::move(logs)}}));
}

Result<Response> DatabaseService::Impl::agent_get_log(Request& req, const std::string& host) {
  (void)host;
  if (!backup_blobs_) return fail(Code::kUnavailable, "this server has no backup storage");
  std::string sha;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows r,
        tx.query("SELECT sha256 FROM db_log_segments WHERE instance_id = ? AND name = ?",
                 {req.params.at(0), req.params.at(1)}));
    if (r.empty()) {
      return fail(Code::kNotFound, "Log file '" + req.params.at(1) + "' of instance '" +
                                       req.params.at(0) + "' cannot be found.");
    }
    sha = r[0].text(0);
    return ok();
  }));
  return blob_response(*backup_blobs_, sha);
}

// ---- DatabaseService --------------------------------------------------------------------

std::shared_ptr<http::RouteTable> DatabaseService::agent_routes() const {
  return impl_->agent_routes();
}

http::StreamedBodyHook DatabaseService::agent_streamed_body_hook(std::string mount_prefix) const {
  const blob::BlobStore* blobs = impl_->backup_blobs();
  if (!blobs) return nullptr;
  std::string dir = blobs->root() + "/tmp";
  return [prefix = std::move(mount_prefix), dir](
             Method method, std::string_view raw_path) -> std::optional<http::StreamedBody> {
    // <prefix>/backups/<id>/data, <prefix>/instances/<id>/logs/<name> and
    // <prefix>/instances/<id>/guest-logs/<name>
    if (method != Method::kPut || !raw_path.starts_with(prefix)) return std::nullopt;
    std::string_view rest = raw_path.substr(prefix.size());
    std::vector<std::string_view> parts;
    while (!rest.empty()) {
      if (rest.front() != '/') return std::nullopt;
      rest.remove_prefix(1);
      size_t slash = rest.find('/');
      parts.push_back(rest.substr(0, slash));
      rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    }
    const bool backup = parts.size() == 3 && parts[0] == "backups" && parts[2] == "data";
    const bool log = parts.size() == 4 && parts[0] == "instances" && parts[2] == "logs";
    // A published guest log (api_logs.cc): small, but it may pass the server's in-memory limit.
    if (parts.size() == 4 && parts[0] == "instances" && parts[2] == "guest-logs") {
      return http::StreamedBody{dir, static_cast<uint64_t>(engine::kGuestLogPublishBytes)};
    }
    if (!backup && !log) return std::nullopt;
    return http::StreamedBody{dir, kMaxUploadBytes};
  };
}

}  // namespace concord::database::service

#pragma once
// Internal to the database service: the Trove API's shared helpers and the Impl class whose
// handlers are spread over api*.cc by resource (see database_service.h for the design).
#include <algorithm>
#include <array>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <utility>

#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "base/time_format.h"
#include "blob/blob_store.h"
#include "compute/driver/database_keys.h"
#include "compute/service/flavors.h"
#include "compute/service/service_servers.h"
#include "database/engine/credentials.h"
#include "database/engine/desired_state.h"
#include "database/engine/guest_logs.h"
#include "database/proxy/endpoint_set.h"
#include "database/service/database_service.h"
#include "database/service/names.h"
#include "http/metrics.h"
#include "usage/usage_ledger.h"

namespace concord::database::service {

namespace keys = compute::driver::database_keys;
using http::Method;
using http::Request;
using http::Response;
inline constexpr std::string_view kResourceType = "database.instance";

std::string_view fault_name(int status);

int status_of(Code code);

int64_t to_us(SystemTime t);

// Trove's times: "2026-11-29T12:00:00" (no fraction, no zone).
std::string trove_time(SystemTime t);

// "12.000034" style exact decimal of a microsecond count.
std::string decimal_us(int64_t us);

std::string ip_text(uint32_t a);

std::optional<uint32_t> parse_ip(std::string_view s);

// The values the database driver puts into a server's status detail ("key=value; ...; storage
// low", compute/driver/database_driver.cc), as a map; "storage low" becomes storage_low=1.
std::map<std::string, std::string> detail_fields(std::string_view detail);
// A non-negative integer field of detail_fields(); nullopt when absent or not a number.
std::optional<int64_t> integer_of(const std::map<std::string, std::string>& f,
                                  const std::string& key);

Error bad(std::string message);

struct VersionRow {
  std::string id, datastore_id, datastore_name, name, engine, version, packages;
  bool active = true;
};

// The engine drivers this build has: a datastore version's `engine` (Trove's
// datastore_manager) must name one of them.
inline constexpr std::array<std::string_view, 2> kEngineDrivers = {"mariadb", "postgresql"};
inline bool known_engine(std::string_view engine) {
  return std::find(kEngineDrivers.begin(), kEngineDrivers.end(), engine) != kEngineDrivers.end();
}

inline constexpr const char* kVersionColumns =
    "v.id, v.datastore_id, d.name, v.name, v.engine, v.version, v.packages, v.active";

VersionRow version_from(const store::Row& r);

struct InstanceRow {
  std::string id, project_id, name, version_id, flavor_id;
  int64_t vcpus = 0, ram_mb = 0, volume_gb = 0;
  std::string address;
  int64_t port = 0, state_revision = 1;
  std::string task, created, updated;
  int64_t last_metered_us = 0;
  bool deleting = false;
  // Joined from the datastore tables.
  std::string datastore, version, engine;
  std::string configuration_id;   // attached configuration group ("" none)
  bool restart_required = false;  // a restart-required parameter changed since the last restart
  std::string restored_from;      // the backup the instance was restored from ("" none)
  bool backup_running = false;    // a backup of it is NEW, BUILDING or SAVING (status BACKUP)
  // Schema 3. The tenant-facing `address` is the endpoint (a proxy listener in the server);
  // the engine listens on `engine_address` ("" for instances made before endpoints: the
  // engine is then at `address` and no proxy serves it).
  std::string engine_address;
  std::string endpoint_mode = "session";  // "session" or "transaction" (PostgreSQL pooling)
  int64_t pool_size = 0;   // transaction mode: server connections per pool (0: from the flavor)
  std::string replica_of;  // the primary it replicates ("" none)
  std::string replication_secret;  // the group's replication password ("" none yet)
  bool deletion_protection = false;
  std::string backup_window;  // "HH:MM" UTC start of the daily automated backup ("" none)
  int64_t backup_retention_days = 0;
  // High availability (api_ha.cc): members in db_members; `engine_address` is then the current
  // primary member's, `primary_member` its server id ("": the instance id).
  bool ha = false;
  std::string primary_member;
  int64_t failovers = 0;
  // Trove's access: is_public as the tenant set it (Concord has one kind of address), and the
  // client networks the endpoint accepts (empty: any).
  bool is_public = false;
  std::vector<std::string> allowed_cidrs;
  std::string availability_zone;  // asked for at create ("": any)
};

inline constexpr const char* kInstanceSelect =
    "SELECT i.id, i.project_id, i.name, i.datastore_version_id, i.flavor_id, i.vcpus, i.ram_mb, "
    "i.volume_gb, i.address, i.port, i.state_revision, i.task, i.created, i.updated, "
    "i.last_metered_us, i.deleting, d.name, v.name, v.engine, i.configuration_id, "
    "i.restart_required, i.restored_from, (SELECT COUNT(*) FROM db_backups b WHERE "
    "b.instance_id = i.id AND b.deleting = 0 AND b.status IN ('NEW', 'BUILDING', 'SAVING')), "
    "i.engine_address, i.endpoint_mode, i.replica_of, i.replication_secret, "
    "i.deletion_protection, i.backup_window, i.backup_retention_days, i.ha, i.primary_member, "
    "i.failovers, i.is_public, i.allowed_cidrs, i.availability_zone, i.pool_size "
    "FROM db_instances i "
    "JOIN db_datastore_versions v ON v.id = i.datastore_version_id "
    "JOIN db_datastores d ON d.id = v.datastore_id ";

InstanceRow instance_from(const store::Row& r);

// The events that settle an instance's automated backup for a day: it was started, or it was
// skipped because the project was at its backups quota (create_backup writes either; the
// operations pass and create_backup look for both since the day's window start).
inline constexpr const char* kAutomatedDayEvents =
    "('backup.automated.started', 'backup.automated.skipped')";

// Backups that Concord deletes at `at`: finished, with no incremental child built on them,
// and either automated backups past their instance's backup_retention_days (on) or seed
// backups an hour after they ended ("A backup taken for the seed"); oldest first; of one
// project when `project` is not empty. The operations pass deletes those of now; an automated
// backup at the backups quota waits for those of the next kRetentionWait instead of being
// skipped (create_backup).
struct RetainedBackup {
  std::string id, project_id, instance_id, name;
  bool seed = false;  // a seed backup (else an automated one past retention)
};
Result<std::vector<RetainedBackup>> expired_backups(store::Tx& tx, SystemTime at,
                                                    const std::string& project);
inline constexpr std::chrono::minutes kRetentionWait{60};

// Closes the instance's open usage interval at `now_us` (resize, delete).
Status meter(store::Tx& tx, InstanceRow& inst, int64_t now_us, const std::string& region);

Result<Json> body_object(const Request& req);
// The request body's object under `key` (Trove wraps each resource: {"instance": {...}});
// 400 with `shape` (how the body should look) otherwise.
Result<Json> body_member(const Request& req, const char* key, std::string_view shape);

// A positive ?limit= (none: unlimited) of a list; 400 otherwise.
Result<int64_t> parse_limit(const Request& req);
// The agents' upload headers (api_backups.cc): a non-negative integer (0 when absent), and
// X-Concord-SHA256 (64 lowercase hex characters).
Result<int64_t> header_int(const Request& req, std::string_view name);
Result<std::string> header_sha256(const Request& req);

// The page of a list (in its listed order) that ?marker= (the id of the last row of the page
// before) and `limit` (parse_limit's) ask for: rows [begin, end); `next` is the marker of the
// following page, empty when this page is the last. A marker that is not in the list is 400
// naming `what`.
struct Page {
  size_t begin = 0, end = 0;
  std::string next;
};
template <typename Row, typename IdOf>
Result<Page> page_of(const Request& req, int64_t limit, const std::vector<Row>& rows, IdOf id_of,
                     std::string_view what) {
  Page page;
  if (auto marker = req.query_param("marker"); marker && !marker->empty()) {
    auto m =
        std::find_if(rows.begin(), rows.end(), [&](const Row& r) { return id_of(r) == *marker; });
    if (m == rows.end()) {
      return fail(bad("Marker '" + *marker + "' is not a listed " + std::string(what) + "."));
    }
    page.begin = static_cast<size_t>(m - rows.begin()) + 1;
  }
  page.end = page.begin + static_cast<size_t>(std::min<int64_t>(
                              limit, static_cast<int64_t>(rows.size() - page.begin)));
  if (page.end < rows.size() && page.end > page.begin) page.next = id_of(rows[page.end - 1]);
  return page;
}

// A required string member.
Result<std::string> string_field(const Json& obj, const char* name, std::string_view where);

// "name" or "name@host" as troveclient puts a user into paths.
std::pair<std::string, std::optional<std::string>> split_user(const std::string& segment);

struct UserRow {
  std::string name, host, verifier;
  std::vector<std::string> databases;
};

std::vector<std::string> string_list(const std::string& json_text);

Json database_refs(const std::vector<std::string>& names);

struct NewUser {
  std::string name, host, password;
  std::vector<std::string> databases;
};

class DatabaseService::Impl {
 public:
  Impl(store::Store& store, const Clock& clock, identity::IdentityService& identity,
       compute::ComputeContext& compute, DatabaseOptions options, uint32_t pool_first,
       uint32_t pool_last)
      : store_(store),
        clock_(clock),
        identity_(identity),
        compute_(compute),
        options_(std::move(options)),
        pool_first_(pool_first),
        pool_last_(pool_last),
        routes_(std::make_shared<http::RouteTable>()) {
    build_routes();
    watcher_ = std::thread([this] { watch_applies(); });
    start_endpoints();
    start_ha();
    start_operations();
  }
  ~Impl();

  void attach(std::string project, std::string user) {
    std::lock_guard lock(mu_);
    service_project_ = std::move(project);
    service_user_ = std::move(user);
  }

  std::shared_ptr<http::RouteTable> routes() const { return routes_; }

 private:
  // What an add_applied handler may leave for its answer after the wait.
  struct LateAnswer {
    std::function<Response()> render;  // the answer, rendered when it is sent
    // Ends the wait before the instance's server reports the revision applied (a stopped
    // engine's agent does the work but reports no applied revision).
    std::function<bool()> done;
  };

  struct Call {
    Request& req;
    identity::AuthContext caller;
    const std::string& param(size_t i) const { return req.params.at(i); }
    // Set by change_state: the instance whose desired state this call changed and its new
    // revision, which an add_applied route waits to see applied before answering.
    std::string changed_instance;
    int64_t changed_revision = 0;
    // Set by the operations thread (api_operations.cc) when it makes an automated backup
    // through create_backup: the start of today's backup window (Trove time). create_backup
    // then refuses (kAlreadyExists) when one was made or skipped since, in its own write
    // transaction, so two servers never make two for the same day, and marks the backup
    // automated. At the project's backups quota it makes none, records the day's
    // "backup.automated.skipped" event instead and answers kResourceExhausted.
    std::string automated_since;
    // Set by an add_applied handler whose answer depends on what the agent did (a guest log's
    // publish).
    LateAnswer late;
  };

  using Handler = Result<Response> (Impl::*)(Call&);

  // api.cc: the request frame, versions, routes
  void add(Method method, const std::string& pattern, Handler handler, std::string rule);
  // A route whose successful answer waits (bounded by options_.apply_wait) until the instance's
  // agent has applied the desired state the call wrote, without holding a server thread: a
  // client that logs in right after creating a user or enabling root then finds it (Trove's
  // guest applies these synchronously). The change itself is asynchronous as before: when the
  // wait runs out the answer is the same, only later.
  void add_applied(Method method, const std::string& pattern, Handler handler, std::string rule);
  Response error(const Request& req, const Error& e);
  // `changed` (optional) receives the call's changed instance and revision (Call::changed_*),
  // `late` the call's Call::late.
  Response run(Request& req, Handler handler, const std::string& rule,
               std::pair<std::string, int64_t>* changed = nullptr, LateAnswer* late = nullptr);
  // The thread behind add_applied: answers each waiting call once its instance's server has
  // converged at (or beyond) the revision, is gone or failed, or its deadline passed.
  void watch_applies();
  std::string base(const Call& c) const;
  Json links(const Call& c, const std::string& collection, const std::string& id) const;
  std::pair<std::string, std::string> service_actor();
  Json version_doc(const Request& req) const;
  void build_routes();

  // api_configurations.cc: configuration groups (Trove's /configurations, the parameter catalog
  // under datastore versions, attach and detach).
  void add_configuration_routes();
  // The create request's "configuration" (a group id), checked against the instance's datastore
  // version; sets inst.configuration_id. Absent or null: none.
  Status parse_create_configuration(const Call& c, const Json& in, InstanceRow& inst);
  // Adds the attached group's values to the desired state's parameters.
  Status add_configuration_state(store::Tx& tx, const InstanceRow& inst, engine::DesiredState& st);
  // Attaches (`group_id`) or detaches (nullopt) a group inside update_instance's transaction:
  // checks project and datastore version, raises the state revision and sets restart_required
  // when a restart-required parameter changes. The new state revision, or 0 when nothing
  // changed. The caller syncs the server afterwards.
  Result<int64_t> set_instance_configuration(store::Tx& tx, const InstanceRow& inst,
                                             const std::optional<std::string>& group_id);
  // The instance view's "configuration": {"id", "name", "links"}.
  Json configuration_ref(const Call& c, const std::string& group_id) const;
  // After a restart: the flag goes once the agent had the latest desired state.
  Status clear_restart_required(const std::string& instance_id);
  struct GroupRow {
    std::string id, project_id, name, description, version_id, created, updated;
    std::map<std::string, std::string> values;  // normal-form text (engine/parameters.h)
    VersionRow version;
  };
  static Result<std::optional<GroupRow>> find_group(store::Tx& tx, const std::string& id);
  Result<GroupRow> load_group(store::Tx& tx, const Call& c, const std::string& id);
  Result<VersionRow> version_by_id(store::Tx& tx, const std::string& id);
  static Result<std::map<std::string, std::string>> parse_values(const Json& values,
                                                                 const VersionRow& v);
  static Json values_view(const std::map<std::string, std::string>& values, const VersionRow& v);
  Json group_view(const Call& c, const GroupRow& g, int64_t instance_count, bool detail) const;
  // (instance id, new state revision) of each instance rewritten.
  Status rewrite_attached(store::Tx& tx, const GroupRow& before,
                          const std::map<std::string, std::string>& after,
                          std::vector<std::pair<std::string, int64_t>>& synced);
  Result<Response> parameters_response(Call& c, const VersionRow& v, const std::string* name);
  Result<Response> list_parameters_by_version(Call& c);
  Result<Response> show_parameter_by_version(Call& c);
  Result<Response> list_parameters(Call& c);
  Result<Response> show_parameter(Call& c);
  Result<Response> create_configuration(Call& c);
  Result<Response> list_configurations(Call& c);
  Result<Response> show_configuration(Call& c);
  Result<Response> replace_configuration(Call& c);
  Result<Response> merge_configuration(Call& c);
  Result<Response> update_configuration(Call& c, bool merge);
  Result<Response> delete_configuration(Call& c);
  Result<Response> list_configuration_instances(Call& c);
  Result<Response> show_instance_configuration(Call& c);

  // api_quotas.cc: Trove's quotas (instances, volumes in GB, backups, ram in MB) per project:
  // the defaults in DatabaseOptions, an admin's overrides in db_quotas. check_quota fails with
  // Trove's 413 when adding `more` (resource -> amount) to the project's use would pass a
  // limit; call it in the write that adds them, after tx.serialize().
  void add_quota_routes();
  Result<std::map<std::string, int64_t>> quota_limits(store::Tx& tx, const std::string& project);
  static Result<std::map<std::string, int64_t>> quota_usage(store::Tx& tx,
                                                            const std::string& project);
  Status check_quota(store::Tx& tx, const std::string& project,
                     const std::map<std::string, int64_t>& more);
  Result<Response> show_limits(Call& c);
  Result<Response> show_quotas(Call& c);
  Result<Response> update_quotas(Call& c);

  // api_logs.cc: Trove's guest logs (/instances/{id}/log) and the agents' publish route.
  void add_log_routes();
  // The guest logs waiting to be published go into the instance's desired state.
  Status add_log_state(store::Tx& tx, const InstanceRow& inst, engine::DesiredState& st);
  Result<Json> guest_log_view(store::Tx& tx, const InstanceRow& inst,
                              const engine::GuestLogSpec& spec);
  Result<Response> list_guest_logs(Call& c);
  Result<Response> guest_log_action(Call& c);
  Result<Response> guest_log_content(Call& c);
  Result<Response> agent_put_guest_log(Request& req, const std::string& host);

  // api_backups.cc: backups (Trove's /backups), restore into a new instance, and the agents'
  // routes that store and fetch backup data and archived logs.
  void add_backup_routes();
  // The create request's "restorePoint" ({"backupRef": id}), checked against the instance's
  // datastore version; sets inst.restored_from. Absent or null: a new empty instance.
  Status parse_create_restore(const Call& c, const Json& in, InstanceRow& inst);
  // Adds the pending backup request and the restore source to the desired state.
  Status add_backup_state(store::Tx& tx, const InstanceRow& inst, engine::DesiredState& st);
  // What a new replica of `source` (a read replica, an HA standby) may copy its data from
  // instead of the running upstream (engine::ReplicationSpec::seed): the newest completed
  // backup chain of a MariaDB source and its archived binlogs; nullopt for another engine, no
  // such backup, or when the logs since the backup outweigh its archives (replaying them would
  // cost more than the network copy).
  Result<std::optional<engine::RestoreSpec>> backup_seed(store::Tx& tx, const InstanceRow& source);
  // Sets r.seed (backup_seed) and, without one, r.seed_wait_until_us while a seed backup of
  // `source` runs (start_seed_backup).
  Status replica_seed(store::Tx& tx, const InstanceRow& source, engine::ReplicationSpec& r);
  // Inside the write that makes replica `replica_id` of `source`: when backup_seed finds
  // nothing for a MariaDB source, starts a full backup of it to seed the replica (named as
  // Trove names its replication snapshots; deleted an hour after it ends by expired_backups),
  // unless a backup runs already, the cloud has no backup storage or the project is at its
  // backups quota. docs/design/database.md, "A backup taken for the seed".
  Status start_seed_backup(store::Tx& tx, const InstanceRow& source, const std::string& replica_id);
  Result<Response> create_backup(Call& c);
  Result<Response> list_backups(Call& c);
  Result<Response> list_instance_backups(Call& c);
  Result<Response> show_backup(Call& c);
  Result<Response> delete_backup(Call& c);
  // The agents' routes (mounted at /agent/v1/database), authenticated as compute's agents.
  using AgentHandler = Result<Response> (Impl::*)(Request&, const std::string& host);
  void add_agent(Method method, const std::string& pattern, AgentHandler handler);
  Result<Response> agent_backup_progress(Request& req, const std::string& host);
  Result<Response> agent_put_backup(Request& req, const std::string& host);
  Result<Response> agent_backup_failed(Request& req, const std::string& host);
  Result<Response> agent_get_backup(Request& req, const std::string& host);
  Result<Response> agent_put_log(Request& req, const std::string& host);
  Result<Response> agent_list_logs(Request& req, const std::string& host);
  Result<Response> agent_get_log(Request& req, const std::string& host);
  // The instance `id` (an instance id, or a member server's) belongs to, when `host` runs one of
  // its servers; kNotFound (no such server), kPermissionDenied (another host).
  Result<std::string> require_instance_host(const std::string& id, const std::string& host);
  // Raises the instance's state revision (when it still exists) and its replicas', and pushes
  // their desired states, so a finished backup request leaves it and a replica waiting for the
  // backup to seed it goes on.
  void backup_request_done(const std::string& instance_id);
  // Removes the archived logs of a deleted instance (`instance_id`, and any other) once no
  // backup of it remains.
  void prune_logs(const std::string& instance_id);

  // api_replicas.cc: read replicas (Trove's replica_of, promote_to_replica_source,
  // eject_replica_source, detach). A replica is an instance of its own (own endpoint, own
  // engine) whose engine streams from its primary's; its databases, users and root are the
  // primary's rows (rows_owner), so a promotion moves them and nothing else.
  // The create request's "replica_of": the primary (checked: the caller's, not deleting, not a
  // replica itself), after filling in the request's datastore, flavor and volume from it when
  // absent. nullopt: not a replica. Refuses databases, users and restorePoint for a replica.
  Result<std::optional<InstanceRow>> parse_create_replica(const Call& c, Json& in);
  // The create request's "pooling": "session" | "transaction" (PostgreSQL only), or
  // {"mode": ..., "pool_size": N}.
  Status parse_create_pooling(const Json& in, InstanceRow& inst);
  // A "pooling" object names only "mode" and "pool_size".
  static Status check_pooling_keys(const Json& pooling);
  // A "pooling" object's "pool_size": 1-1000, or null → 0 (sized from the flavor).
  static Result<int64_t> parse_pool_size(const Json& value);
  // The server connections per pool the endpoint of `inst` (transaction mode) keeps.
  static int pool_size_of(const InstanceRow& inst);
  // PUT /instances/{id} {"pooling": {"pool_size": N | null}}: a transaction-mode instance's
  // pool size (the endpoint resizes its pools live); the mode itself stays as created.
  Status update_pool_size(store::Tx& tx, const InstanceRow& inst, const Json& pooling);
  // In create's transaction: gives the group a replication secret (made on first use) and
  // raises the primary's state revision (its replicas list changes).
  Status link_replica(store::Tx& tx, InstanceRow& inst);
  static std::string rows_owner(const InstanceRow& inst) {
    return inst.replica_of.empty() ? inst.id : inst.replica_of;
  }
  // load_instance, then the instance whose databases/users/root rows `id`'s are.
  Result<InstanceRow> load_rows_owner(store::Tx& tx, const Call& c, const std::string& id);
  Status add_replication_state(store::Tx& tx, const InstanceRow& inst, engine::DesiredState& st);
  // "replica_of" / "replicas" of the instance view.
  void add_replication_view(const Call& c, const InstanceRow& inst, Json& out) const;
  // Actions and the detach of update_instance.
  Result<Response> promote_replica(Call& c, const InstanceRow& inst);
  Result<Response> eject_replica_source(Call& c, const InstanceRow& inst);
  Status detach_replica(const Call& c, const std::string& id);
  // Grows each replica's volume to `gb` with its primary's (resize action).
  Status resize_replica_volumes(const Call& c, const InstanceRow& primary, int64_t gb);
  // kPermissionDenied while `inst` has replicas (Trove's rule: detach or delete them first).
  Status check_no_replicas(store::Tx& tx, const InstanceRow& inst);
  // Raises the state revision of each instance in one transaction.
  static Status bump_revisions(store::Tx& tx, const std::vector<std::string>& ids,
                               const std::string& now);
  // Pushes each instance's state; failures are logged (the next show repairs them).
  void sync_servers(const std::vector<std::string>& ids);
  // Waits (bounded by options_.apply_wait) until `id`'s server converged at `revision` or
  // reports that it stopped taking writes under it (fenced_revision, a demoted primary that
  // waits for the new one's promotion to follow it), is gone or failed.
  void wait_fenced(const std::string& id, int64_t revision);

  // api_ha.cc: high availability (docs/design/database.md, "High availability"): a primary
  // and a synchronous standby member, each a service server on its own host (the first member's
  // server id is the instance id), and the controller thread that probes primaries, fails over
  // (fence, promote, re-point the endpoint) and turns synchronous replication on and off.
  struct Member {
    std::string id, engine_address, role, sync;  // role primary|standby; sync none|requested|active
  };
  static Result<std::vector<Member>> members_of(store::Tx& tx, const std::string& instance_id);
  // The server whose engine serves the instance now.
  static std::string primary_server(const InstanceRow& inst) {
    return inst.primary_member.empty() ? inst.id : inst.primary_member;
  }
  // Addresses of the pool that live servers' engines hold (a server being deleted may still
  // listen), and the lowest `wanted` addresses no instance, member or held address takes; call
  // inside a serialized write (kResourceExhausted when the pool is used up).
  static std::set<uint32_t> held_addresses(
      const std::map<std::string, compute::ServiceServer>& live);
  Result<std::vector<uint32_t>> free_addresses(store::Tx& tx, std::set<uint32_t> used,
                                               size_t wanted);
  // The create request's "high_availability" (a boolean).
  Status parse_create_ha(const Json& in, InstanceRow& inst);
  // In create's transaction: the member rows (the standby's engine address given).
  Status insert_members(store::Tx& tx, const InstanceRow& inst, const std::string& standby_address);
  // Each server the instance's desired state goes to, with its metadata: the instance's own
  // server, or one per member.
  using ServerTargets = std::vector<std::pair<std::string, std::map<std::string, std::string>>>;
  Result<ServerTargets> server_targets(store::Tx& tx, const InstanceRow& inst);
  // Every member server id of `inst` (the instance id alone without HA).
  Result<std::vector<std::string>> member_servers(const InstanceRow& inst);
  // The view's "high_availability".
  void add_ha_view(const InstanceRow& inst, Json& out);
  void start_ha();
  void stop_ha();
  // One controller round over every HA instance.
  void ha_round();
  // Moves the primary role to the standby in one transaction, then pushes the states and
  // re-points the endpoint. False when it did not happen (no synchronized standby, raced).
  bool fail_over(const std::string& instance_id, const std::string& reason);
  // Swaps a standby member whose host stayed down for a new member (next "<id>-mN", a new
  // engine address) in one transaction, then deletes the old member's server and pushes the
  // states (which creates the new member's server away from the primary's host; until some
  // host can take it the repair pass retries). False when it did not happen (raced, not a
  // standby any more, still synchronous).
  bool replace_standby(const InstanceRow& inst, const Member& old,
                       const std::map<std::string, compute::ServiceServer>& live,
                       const std::string& reason);

  // api_endpoints.cc: the instances' stable endpoints (one proxy listener per instance in this
  // process, options_.endpoints) and the thread that keeps them converged.
  void start_endpoints();
  void stop_endpoints();
  // Converges the proxies to the instance rows now (also run every second by the thread).
  void refresh_endpoints();
  // Asks the thread for a refresh now (after a create, delete or promotion).
  void poke_endpoints();
  // Trove's "access" ({"is_public": bool, "allowed_cidrs": ["192.0.2.0/24", ...]}) into inst;
  // 400 for anything else.
  static Status parse_access(const Json& access, InstanceRow& inst);
  // The engine that serves `inst` now: its own engine address ("" before endpoints existed:
  // the instance's address).
  static std::string engine_address_of(const InstanceRow& inst) {
    return inst.engine_address.empty() ? inst.address : inst.engine_address;
  }

  // api_operations.cc: Concord's operations extensions (docs/design/database.md,
  // "Operations"): deletion protection, the events feed, automated backups with retention, and
  // the storage watch.
  void add_operations_routes();
  // The create request's "deletion_protection" and "backup_schedule"; sets inst's fields.
  Status parse_create_operations(const Call& c, const Json& in, InstanceRow& inst);
  // Whether update_instance's `key` is one of this part's ("deletion_protection",
  // "backup_schedule"); apply_update_operations checks and writes them in update_instance's
  // transaction.
  static bool is_operations_key(std::string_view key);
  Status apply_update_operations(store::Tx& tx, const InstanceRow& inst, const Json& in);
  // kFailedPrecondition (Trove's 422) while deletion protection is on.
  Status check_deletable(const InstanceRow& inst);
  // The instance view's "deletion_protection", "backup_schedule" and (from the server's
  // reported detail, when there is one) "storage".
  void add_operations_view(const InstanceRow& inst, const compute::ServiceServer* s,
                           Json& view) const;
  // Appends an event to the instance's feed, in the caller's transaction.
  Status record_event(store::Tx& tx, const InstanceRow& inst, std::string_view type,
                      std::string_view message, const Json& detail = Json::object());
  // The operations thread (automated backups, retention, storage watch); stop joins it.
  void start_operations();
  void stop_operations();
  // create_instance's write: the operations columns of the new row and its "created" event.
  Status insert_operations(store::Tx& tx, const InstanceRow& inst);
  // record_event for code that holds only the instance's id and project (backups).
  Status record_instance_event(store::Tx& tx, const std::string& instance_id,
                               const std::string& project_id, std::string_view type,
                               std::string_view message, const Json& detail = Json::object());
  Result<Response> list_events(Call& c);
  Result<Response> instance_metrics(Call& c);
  Result<Response> run_operations(Call& c);
  // One pass of the operations thread: automated backups due, retention, storage watch,
  // metering of running instances.
  void operations_pass();
  // Closes the usage interval of every running instance and completed backup metered before
  // an hour ago.
  void meter_running(SystemTime now);
  // In meter_running's write: each completed backup metered before `due_before` (api_backups.cc).
  Status meter_backups(store::Tx& tx, int64_t now_us, int64_t due_before);
  // The watch of what the agents report (every 2 s, and in each pass): one event when an
  // episode starts and one when it ends ("storage.low" / "storage.ok" while the detail says
  // "storage low"; "replica.rebuilding" / "replica.rebuilt" while it says rebuild=...).
  void watch_episodes();

 public:
  // The operators' Prometheus families (api_operations.cc).
  void register_metrics(http::Registry& registry);
  std::shared_ptr<http::RouteTable> agent_routes() const { return agent_routes_; }
  const blob::BlobStore* backup_blobs() const { return backup_blobs_.get(); }

 private:
  // api_datastores.cc: datastores, versions, flavors
  Result<std::vector<VersionRow>> versions_of(store::Tx& tx, const std::string& datastore_id);
  Result<std::pair<std::string, std::string>> find_datastore(store::Tx& tx, const std::string& ref);
  Result<VersionRow> find_version(store::Tx& tx, const std::string& datastore_id,
                                  const std::string& ref);
  Json version_view(const Call& c, const VersionRow& v, bool full) const;
  Result<Json> datastore_view(store::Tx& tx, const Call& c, const std::string& id,
                              const std::string& name, const std::string& default_version);
  Result<Response> list_datastores(Call& c);
  Result<Response> show_datastore(Call& c);
  Result<Response> list_versions(Call& c);
  Result<Response> show_version(Call& c);
  Result<Response> show_version_by_id(Call& c);
  // The datastore's version named `ref`, or its default when `ref` is empty (400 when it has
  // none), active or not.
  Result<VersionRow> find_version_or_default(store::Tx& tx, const std::string& datastore_ref,
                                             const std::optional<std::string>& ref);
  // Trove's management API for datastore versions (admin).
  static Json mgmt_version_view(const VersionRow& v, bool is_default);
  Result<Response> mgmt_list_versions(Call& c);
  Result<Response> mgmt_show_version(Call& c);
  Result<Response> mgmt_create_version(Call& c);
  Result<Response> mgmt_update_version(Call& c);
  Result<Response> mgmt_delete_version(Call& c);
  Result<Response> delete_datastore(Call& c);
  Json flavor_view(const Call& c, const std::string& id, const std::string& name, int64_t vcpus,
                   int64_t ram_mb, int64_t disk_gb, int64_t ephemeral_gb) const;
  Result<Response> list_flavors(Call& c);
  Result<compute::FlavorSnapshot> load_flavor(store::Tx& tx, const Call& c, const std::string& ref);
  Result<Response> show_flavor(Call& c);

  // api_instances.cc: instances, their server and desired state, actions
  Result<InstanceRow> load_instance(store::Tx& tx, const Call& c, const std::string& id,
                                    bool allow_deleting = false);
  Result<InstanceRow> load_instance(store::Tx& tx, const identity::AuthContext& caller,
                                    const std::string& id, bool allow_deleting = false);
  Result<engine::DesiredState> desired_state(store::Tx& tx, const InstanceRow& inst);
  std::map<std::string, std::string> server_metadata(const InstanceRow& inst,
                                                     const engine::DesiredState& st) const;
  // The instance's Trove flavor as its service server shows it; nullopt when it is gone.
  std::optional<compute::FlavorSnapshot> shown_flavor(const std::string& flavor_id);
  // Creates `server_id`'s server (default: the instance's own) off `ignore_hosts`; a standby
  // that no host can take is an error (kResourceExhausted), not a server in ERROR.
  Status ensure_server(const InstanceRow& inst, const std::map<std::string, std::string>& md,
                       const std::string& server_id = "",
                       const std::vector<std::string>& ignore_hosts = {});
  Status sync_server(const std::string& instance_id);
  Result<std::map<std::string, compute::ServiceServer>> servers();
  // Removes a deleted instance's rows (its server is gone: the instance is history).
  Status purge_instance_rows(store::Tx& tx, const std::string& id);
  static int64_t state_revision_of(const compute::ServiceServer& s);
  static std::pair<std::string, std::string> status(const InstanceRow& inst,
                                                    const compute::ServiceServer* s);
  Json instance_view(const Call& c, const InstanceRow& inst, const compute::ServiceServer* s,
                     bool detail);
  Result<std::vector<engine::DatabaseSpec>> parse_databases(const Json& list,
                                                            const std::string& engine);
  Result<std::vector<NewUser>> parse_users(const Json& list, const std::string& engine);
  // A user's "host" ("%" when absent). PostgreSQL takes none but "%": its engine sees the
  // endpoint's address, never the client's (docs/design/database.md, "Endpoints").
  static Result<std::string> parse_host(const Json& u, const std::string& engine);
  static Result<std::vector<std::string>> parse_refs(const Json& list);
  int port_for(const std::string& engine) const;
  Result<int64_t> volume_size(const Json& v) const;
  Result<Response> create_instance(Call& c);
  // GET /instances: the caller's project's instances. GET /mgmt/instances (admin, what
  // `openstack database instance list --all-projects` calls): every project's, or one's with
  // ?project_id=, each adding Trove's management fields (mgmt_fields). Both page with ?limit=
  // and ?marker= (an instance id) as Trove's lists do, with a "next" link.
  Result<Response> list_instances(Call& c);
  Result<Response> mgmt_list_instances(Call& c);
  Result<Response> list_instances_of(Call& c, bool mgmt);
  Result<Response> show_instance(Call& c);
  // GET /mgmt/instances/{id} (admin): the detail view with the management fields.
  Result<Response> mgmt_show_instance(Call& c);
  // The detail view of the instance named by the path (mgmt: with the management fields).
  Result<Json> instance_detail(Call& c, bool mgmt);
  // Trove's management view adds the owning project, the serving server and its host.
  static void add_mgmt_fields(const InstanceRow& inst, const compute::ServiceServer* s, Json& out);
  Result<Response> update_instance(Call& c);
  Result<Response> delete_instance(Call& c);
  // kFailedPrecondition (Trove's 422) unless the instance is ACTIVE or RESTART_REQUIRED, or with
  // or_down also SHUTDOWN (its engine stopped or died) or ERROR on a host that is up (a step of
  // its engine failed); not while it is being deleted.
  Status require_active(const InstanceRow& inst, bool or_down = false);
  Result<Response> action(Call& c);
  Status set_task(const std::string& id, const std::string& task,
                  const std::optional<InstanceRow>& resized);

  // api_access.cc: databases, users, root (each change rewrites the desired state)
  Status change_state(Call& c, const std::function<Status(store::Tx&, InstanceRow&)>& fn);
  static Result<std::set<std::string>> database_names(store::Tx& tx, const std::string& id);
  static Result<std::optional<UserRow>> find_user(store::Tx& tx, const std::string& id,
                                                  const std::string& segment);
  static Result<UserRow> require_user(store::Tx& tx, const std::string& id,
                                      const std::string& segment);
  static Status write_grants(store::Tx& tx, const std::string& id, const UserRow& u);
  Result<Response> list_databases(Call& c);
  Result<Response> create_databases(Call& c);
  Result<Response> delete_database(Call& c);
  static Json user_view(const UserRow& u);
  Result<Response> list_users(Call& c);
  Result<Response> create_users(Call& c);
  Result<Response> show_user(Call& c);
  Result<Response> update_user(Call& c);
  Result<Response> change_passwords(Call& c);
  Result<Response> delete_user(Call& c);
  Result<Response> list_access(Call& c);
  Result<Response> grant_access(Call& c);
  Result<Response> revoke_access(Call& c);
  Result<Response> enable_root(Call& c);
  Result<Response> show_root(Call& c);
  Result<Response> disable_root(Call& c);

  store::Store& store_;
  const Clock& clock_;
  identity::IdentityService& identity_;
  compute::ComputeContext& compute_;
  const DatabaseOptions options_;
  const uint32_t pool_first_, pool_last_;
  std::shared_ptr<http::RouteTable> routes_;
  std::mutex sync_mu_;  // serialises sync_server()
  std::mutex mu_;
  std::string service_project_;  // guarded by mu_
  std::string service_user_;     // guarded by mu_
  // Backups (api_backups.cc): archives and archived logs by SHA-256 under
  // options_.backup_dir; null when none is configured (backups then answer 503).
  std::unique_ptr<blob::BlobStore> backup_blobs_;
  std::shared_ptr<http::RouteTable> agent_routes_ = std::make_shared<http::RouteTable>();

  struct PendingApply {
    std::string instance_id;
    int64_t revision = 0;
    Response response;
    LateAnswer late;  // late.render, when set, renders the answer instead of `response`
    http::Responder respond;
    std::chrono::steady_clock::time_point deadline;
  };
  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::vector<PendingApply> pending_;  // guarded by wait_mu_
  bool stopping_ = false;              // guarded by wait_mu_
  std::thread watcher_;

  // api_endpoints.cc
  std::unique_ptr<proxy::EndpointSet> endpoints_;  // null unless options_.endpoints
  std::mutex endpoints_mu_;
  std::condition_variable endpoints_cv_;
  bool endpoints_stopping_ = false;  // guarded by endpoints_mu_
  bool endpoints_poked_ = false;     // guarded by endpoints_mu_
  std::thread endpoint_keeper_;

  // api_ha.cc
  struct Probes {
    int primary_failures = 0;  // consecutive failed probes of the primary member's engine
    std::chrono::steady_clock::time_point standby_down_since{};  // zero: answering
    std::chrono::steady_clock::time_point last_restart{};        // of a stopped standby
    std::chrono::steady_clock::time_point last_push{};           // of a lagging desired state
    std::chrono::steady_clock::time_point standby_lost_since{};  // its host down; zero: up
    // Since when its agent has reported it answering but not streaming; zero: streaming.
    std::chrono::steady_clock::time_point standby_stalled_since{};
  };
  std::map<std::string, Probes> probes_;  // by instance id; the controller thread's own
  std::mutex ha_mu_;
  std::condition_variable ha_cv_;
  bool ha_stopping_ = false;  // guarded by ha_mu_
  std::thread ha_controller_;

  // The operations thread (api_operations.cc).
  std::mutex ops_mu_;
  std::condition_variable ops_cv_;
  bool ops_stopping_ = false;      // guarded by ops_mu_
  std::mutex ops_pass_mu_;         // one pass at a time (the thread, the admin route)
  SystemTime last_meter_check_{};  // guarded by ops_pass_mu_ (meter_running)
  // One watch_episodes at a time; by server id, the episodes (bits of kEpisodes) whose state
  // the feed was last seen to reflect, so a watch with nothing new touches no store.
  std::mutex episodes_mu_;
  std::map<std::string, unsigned> episodes_seen_;  // guarded by episodes_mu_
  std::thread ops_thread_;
};

}  // namespace concord::database::service

// Read replicas (docs/design/database.md, "Read replicas"): Trove's replica_of at create,
// promote_to_replica_source, eject_replica_source and detach. A replica is an instance of its
// own whose engine streams from its primary's engine; the replication group is the set of rows
// pointing at one primary with replica_of. Every change is a change of rows (replica_of, the
// owner of the databases/users/root rows, state revisions) written in one transaction and then
// pushed to the members' servers; the engines converge (engine.h, clone_from and apply).
#include "base/random.h"
#include "database/service/api_internal.h"

namespace concord::database::service {
namespace {

Result<std::optional<InstanceRow>> row_by_id(store::Tx& tx, const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {id}));
  if (rows.empty()) return std::optional<InstanceRow>();
  return std::optional<InstanceRow>(instance_from(rows[0]));
}

Result<std::vector<std::string>> replicas_of(store::Tx& tx, const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT id FROM db_instances WHERE replica_of = ? AND "
                                    "deleting = 0 ORDER BY created, id",
                                    {id}));
  std::vector<std::string> out;
  for (const store::Row& r : rows) out.push_back(r.text(0));
  return out;
}

// Moves (or copies) the databases, users and root rows of `from` to `to`.
Status carry_rows(store::Tx& tx, const std::string& from, const std::string& to, bool copy) {
  if (!copy) {
    for (const char* table : {"db_databases", "db_users", "db_root"}) {
      CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec(std::string("UPDATE ") + table +
                                                      " SET instance_id = ? WHERE instance_id = ?",
                                                  {to, from}));
      (void)n;
    }
    return ok();
  }
  for (const char* stmt :
       {"INSERT INTO db_databases (instance_id, name, character_set, collate_name) "
        "SELECT ?, name, character_set, collate_name FROM db_databases WHERE instance_id = ?",
        "INSERT INTO db_users (instance_id, name, host, verifier, databases_json) "
        "SELECT ?, name, host, verifier, databases_json FROM db_users WHERE instance_id = ?",
        "INSERT INTO db_root (instance_id, verifier, enabled, enabled_at) "
        "SELECT ?, verifier, enabled, enabled_at FROM db_root WHERE instance_id = ?"}) {
    CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec(stmt, {to, from}));
    (void)n;
  }
  return ok();
}

}  // namespace

Result<std::optional<InstanceRow>> DatabaseService::Impl::parse_create_replica(const Call& c,
                                                                               Json& in) {
  auto r = in.find("replica_of");
  if (r == in.end() || r->is_null() || (r->is_string() && r->get<std::string>().empty())) {
    return std::optional<InstanceRow>();
  }
  if (!r->is_string()) return fail(bad("'replica_of' must be the id of an instance."));
  for (const char* refused : {"databases", "users", "restorePoint"}) {
    auto f = in.find(refused);
    if (f != in.end() && !f->is_null() && !(f->is_array() && f->empty())) {
      return fail(bad(std::string("A replica takes its data from its primary: '") + refused +
                      "' cannot be given with 'replica_of'."));
    }
  }
  InstanceRow source;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(source, load_instance(tx, c, r->get<std::string>()));
    return ok();
  }));
  if (!source.replica_of.empty()) {
    return fail(bad("Instance '" + source.id + "' is itself a replica (of '" + source.replica_of +
                    "'): create the replica from the primary."));
  }
  if (!in.contains("datastore") || in["datastore"].is_null()) {
    in["datastore"] = {{"type", source.datastore}, {"version", source.version}};
  }
  if (!in.contains("flavorRef") || in["flavorRef"].is_null()) in["flavorRef"] = source.flavor_id;
  if (!in.contains("volume") || in["volume"].is_null()) {
    in["volume"] = {{"size", source.volume_gb}};
  }
  return std::optional<InstanceRow>(std::move(source));
}

Status DatabaseService::Impl::parse_create_pooling(const Json& in, InstanceRow& inst) {
  auto p = in.find("pooling");
  if (p == in.end() || p->is_null()) return ok();
  const Json* mode = &*p;
  if (p->is_object()) {
    CONCORD_RETURN_IF_ERROR(check_pooling_keys(*p));
    mode = p->contains("mode") ? &(*p)["mode"] : nullptr;
  }
  if (mode && (!mode->is_string() || (*mode != "session" && *mode != "transaction"))) {
    return fail(
        bad("'pooling' must be \"session\" or \"transaction\", or an object with "
            "'mode' and 'pool_size'."));
  }
  const std::string m = mode ? mode->get<std::string>() : "session";
  if (m == "transaction" && inst.engine != "postgresql") {
    return fail(bad("Transaction pooling is offered for PostgreSQL instances only."));
  }
  if (m == "transaction" && !options_.endpoints) {
    return fail(
        bad("Transaction pooling needs the database endpoints, which this cloud does not run."));
  }
  if (p->is_object() && p->contains("pool_size")) {
    if (m != "transaction") return fail(bad("'pooling.pool_size' needs 'mode': \"transaction\"."));
    CONCORD_ASSIGN_OR_RETURN(inst.pool_size, parse_pool_size((*p)["pool_size"]));
  }
  inst.endpoint_mode = m;
  return ok();
}

Status DatabaseService::Impl::check_pooling_keys(const Json& pooling) {
  for (const auto& [key, value] : pooling.items()) {
    if (key != "mode" && key != "pool_size") {
      return fail(bad("'pooling." + sanitize_utf8(key) + "' is not known (mode, pool_size)."));
    }
  }
  return ok();
}

Result<int64_t> DatabaseService::Impl::parse_pool_size(const Json& value) {
  if (value.is_null()) return int64_t{0};
  if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 1000) {
    return fail(
        bad("'pooling.pool_size' must be an integer from 1 to 1000, or null for the "
            "size chosen from the flavor."));
  }
  return value.get<int64_t>();
}

int DatabaseService::Impl::pool_size_of(const InstanceRow& inst) {
  return inst.pool_size > 0 ? static_cast<int>(inst.pool_size)
                            : proxy::default_pool_size(inst.vcpus);
}

Status DatabaseService::Impl::link_replica(store::Tx& tx, InstanceRow& inst) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<InstanceRow> primary, row_by_id(tx, inst.replica_of));
  if (!primary || primary->deleting) {
    return fail(Code::kNotFound, "Instance '" + inst.replica_of + "' cannot be found.");
  }
  if (!primary->replica_of.empty()) {
    return fail(bad("Instance '" + primary->id + "' is itself a replica: create the replica from " +
                    "its primary."));
  }
  std::string secret = primary->replication_secret;
  if (secret.empty()) secret = random_token(24);
  inst.replication_secret = secret;
  CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec("UPDATE db_instances SET replication_secret = ?, "
                                              "state_revision = state_revision + 1 WHERE id = ?",
                                              {secret, primary->id}));
  (void)n;
  return ok();
}

Result<InstanceRow> DatabaseService::Impl::load_rows_owner(store::Tx& tx, const Call& c,
                                                           const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, id));
  if (inst.replica_of.empty()) return inst;
  CONCORD_ASSIGN_OR_RETURN(std::optional<InstanceRow> primary, row_by_id(tx, inst.replica_of));
  if (!primary) return inst;  // a primary's row outlives its replicas; never absent in practice
  return *primary;
}

Status DatabaseService::Impl::add_replication_state(store::Tx& tx, const InstanceRow& inst,
                                                    engine::DesiredState& st) {
  if (!inst.replica_of.empty()) {
    CONCORD_ASSIGN_OR_RETURN(std::optional<InstanceRow> primary, row_by_id(tx, inst.replica_of));
    if (!primary) {
      return fail(Code::kInternal,
                  "instance " + inst.id + ": its primary " + inst.replica_of + " has no row");
    }
    engine::ReplicationSpec r;
    r.role = engine::ReplicationSpec::Role::kReplica;
    r.secret = inst.replication_secret;
    r.upstream_instance = primary->id;
    r.upstream_address = engine_address_of(*primary);
    r.upstream_port = static_cast<int>(primary->port);
    CONCORD_RETURN_IF_ERROR(replica_seed(tx, *primary, r));
    st.replication = std::move(r);
    return ok();
  }
  if (inst.replication_secret.empty()) return ok();  // never had a replica
  engine::ReplicationSpec r;
  r.role = engine::ReplicationSpec::Role::kPrimary;
  r.secret = inst.replication_secret;
  CONCORD_ASSIGN_OR_RETURN(r.replicas, replicas_of(tx, inst.id));
  st.replication = std::move(r);
  return ok();
}

void DatabaseService::Impl::add_replication_view(const Call& c, const InstanceRow& inst,
                                                 Json& out) const {
  if (!inst.replica_of.empty()) {
    out["replica_of"] = {{"id", inst.replica_of},
                         {"links", links(c, "instances", inst.replica_of)}};
    return;
  }
  if (inst.replication_secret.empty()) return;  // never had a replica: no query
  std::vector<std::string> ids;
  Status read = store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ids, replicas_of(tx, inst.id));
    return ok();
  });
  if (!read || ids.empty()) return;  // Trove leaves "replicas" out when there are none
  Json list = Json::array();
  for (const std::string& id : ids) {
    list.push_back({{"id", id}, {"links", links(c, "instances", id)}});
  }
  out["replicas"] = std::move(list);
}

Status DatabaseService::Impl::check_no_replicas(store::Tx& tx, const InstanceRow& inst) {
  if (!inst.replica_of.empty() || inst.replication_secret.empty()) return ok();
  CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> ids, replicas_of(tx, inst.id));
  if (ids.empty()) return ok();
  return fail(Code::kPermissionDenied,
              "Instance '" + inst.id + "' is the replication source of " +
                  std::to_string(ids.size()) +
                  " replica(s): delete or detach them (or promote one) first.");
}

Status DatabaseService::Impl::bump_revisions(store::Tx& tx, const std::vector<std::string>& ids,
                                             const std::string& now) {
  for (const std::string& id : ids) {
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE db_instances SET state_revision = state_revision + "
                                     "1, updated = ? WHERE id = ?",
                                     {now, id}));
    (void)n;
  }
  return ok();
}

void DatabaseService::Impl::sync_servers(const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    if (Status synced = sync_server(id); !synced) {
      logger("database")
          ->warn("instance {}: pushing its state: {} (the next show repairs it)", id,
                 synced.error().to_string());
    }
  }
}

void DatabaseService::Impl::wait_fenced(const std::string& id, int64_t revision) {
  const auto deadline = std::chrono::steady_clock::now() + options_.apply_wait;
  while (std::chrono::steady_clock::now() < deadline) {
    auto live = servers();
    if (live) {
      auto s = live->find(id);
      if (s == live->end() || s->second.status == "ERROR" ||
          (s->second.converged && state_revision_of(s->second) >= revision) ||
          integer_of(detail_fields(s->second.detail), "fenced_revision").value_or(0) >= revision) {
        return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  logger("database")
      ->warn("instance {}: revision {} neither applied nor fenced in time; going on", id, revision);
}

// Trove's switchover: the replica becomes the group's primary; the old primary and the other
// replicas replicate from it. The old primary is told first and the promotion is pushed once
// its agent says it stopped taking writes (Health::fenced_revision, reported before it follows
// the new primary, which it cannot do before the promotion) or applied the state (or the apply
// wait ran out): it stops taking writes before the new primary takes any, so there are never
// two writable primaries. Its engine then follows the replica in place (engine.h): an
// asynchronous replica has everything the old primary's clean shutdown sent it.
Result<Response> DatabaseService::Impl::promote_replica(Call& c, const InstanceRow& inst) {
  if (inst.replica_of.empty()) {
    return fail(
        bad("Instance '" + inst.id + "' is not a replica: only a replica can be promoted."));
  }
  CONCORD_RETURN_IF_ERROR(require_active(inst));
  const std::string old_primary = inst.replica_of;
  std::vector<std::string> siblings;
  int64_t old_primary_revision = 0;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow me, load_instance(tx, c, inst.id));
    if (me.replica_of != old_primary) {
      return fail(Code::kAborted, "Instance '" + inst.id + "' changed meanwhile; try again.");
    }
    CONCORD_ASSIGN_OR_RETURN(std::optional<InstanceRow> p, row_by_id(tx, old_primary));
    if (!p || p->deleting) return fail(bad("The primary of '" + inst.id + "' is being deleted."));
    if (p->ha) {
      // Its members' roles are the failover controller's; a read replica does not take them.
      return fail(bad("The primary of '" + inst.id +
                      "' is highly available: detach the replica instead of promoting it."));
    }
    CONCORD_ASSIGN_OR_RETURN(siblings, replicas_of(tx, old_primary));
    std::erase(siblings, inst.id);
    for (const std::string& id : siblings) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("UPDATE db_instances SET replica_of = ? WHERE id = ?", {inst.id, id}));
      (void)n;
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n1,
        tx.exec("UPDATE db_instances SET replica_of = ? WHERE id = ?", {inst.id, old_primary}));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n2, tx.exec("UPDATE db_instances SET replica_of = '' WHERE id = ?", {inst.id}));
    (void)n1;
    (void)n2;
    CONCORD_RETURN_IF_ERROR(carry_rows(tx, old_primary, inst.id, false));
    std::vector<std::string> all = siblings;
    all.push_back(old_primary);
    all.push_back(inst.id);
    CONCORD_RETURN_IF_ERROR(bump_revisions(tx, all, trove_time(clock_.now())));
    old_primary_revision = p->state_revision + 1;
    return ok();
  }));
  logger("database")
      ->info("instance {} promoted: {} and {} other replica(s) now replicate from it", inst.id,
             old_primary, siblings.size());
  sync_servers({old_primary});
  wait_fenced(old_primary, old_primary_revision);
  std::vector<std::string> rest = siblings;
  rest.insert(rest.begin(), inst.id);
  sync_servers(rest);
  poke_endpoints();
  return Response::empty(202);
}

// Trove's eject: the primary (`inst`, lost or unreachable) leaves its group; its first replica
// becomes the primary of the others. The ejected instance keeps its own rows and becomes a
// standalone instance (if its engine comes back, it is a separate database from then on).
Result<Response> DatabaseService::Impl::eject_replica_source(Call& c, const InstanceRow& inst) {
  if (!inst.replica_of.empty()) {
    return fail(bad("Instance '" + inst.id + "' is a replica: eject its replication source '" +
                    inst.replica_of + "' instead."));
  }
  std::vector<std::string> replicas;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(replicas, replicas_of(tx, inst.id));
    if (replicas.empty()) {
      return fail(
          bad("Instance '" + inst.id + "' has no replicas: there is nothing to eject it from."));
    }
    const std::string& next = replicas.front();
    for (size_t i = 1; i < replicas.size(); ++i) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("UPDATE db_instances SET replica_of = ? WHERE id = ?", {next, replicas[i]}));
      (void)n;
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("UPDATE db_instances SET replica_of = '' WHERE id = ?", {next}));
    (void)n;
    CONCORD_RETURN_IF_ERROR(carry_rows(tx, inst.id, next, true));
    std::vector<std::string> all = replicas;
    all.push_back(inst.id);
    return bump_revisions(tx, all, trove_time(clock_.now()));
  }));
  logger("database")
      ->info("instance {} ejected from its replicas; {} is their primary now", inst.id,
             replicas.front());
  (void)c;
  sync_servers(replicas);
  sync_servers({inst.id});
  poke_endpoints();
  return Response::empty(202);
}

// The replica leaves its group and becomes a standalone primary with its own copy of the rows.
Status DatabaseService::Impl::detach_replica(const Call& c, const std::string& id) {
  std::string primary;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, id));
    if (inst.replica_of.empty()) return ok();  // detached meanwhile (update_instance checked)
    primary = inst.replica_of;
    CONCORD_RETURN_IF_ERROR(carry_rows(tx, primary, inst.id, true));
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE db_instances SET replica_of = '' WHERE id = ?", {id}));
    (void)n;
    return bump_revisions(tx, {id, primary}, trove_time(clock_.now()));
  }));
  if (primary.empty()) return ok();
  logger("database")->info("instance {} detached from its primary {}", id, primary);
  sync_servers({id, primary});
  return ok();
}

Status DatabaseService::Impl::resize_replica_volumes(const Call& c, const InstanceRow& primary,
                                                     int64_t gb) {
  std::vector<InstanceRow> replicas;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    replicas.clear();
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> ids, replicas_of(tx, primary.id));
    for (const std::string& id : ids) {
      CONCORD_ASSIGN_OR_RETURN(std::optional<InstanceRow> r, row_by_id(tx, id));
      if (r && r->volume_gb < gb) replicas.push_back(std::move(*r));
    }
    return ok();
  }));
  (void)c;
  for (InstanceRow& r : replicas) {
    InstanceRow next = r;
    next.volume_gb = gb;
    CONCORD_RETURN_IF_ERROR(compute::resize_service_server(
        compute_, r.id, next.vcpus, next.ram_mb, next.volume_gb, shown_flavor(next.flavor_id)));
    CONCORD_RETURN_IF_ERROR(set_task(r.id, "RESIZE", next));
    CONCORD_RETURN_IF_ERROR(sync_server(r.id));
  }
  return ok();
}

}  // namespace concord::database::service

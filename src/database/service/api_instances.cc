// Trove API: instances (create, list, show, rename, delete, actions), their service server and
// the desired state written into it.
#include "base/encoding.h"
#include "database/service/api_internal.h"

namespace concord::database::service {

Result<InstanceRow> DatabaseService::Impl::load_instance(store::Tx& tx, const Call& c,
                                                         const std::string& id,
                                                         bool allow_deleting) {
  return load_instance(tx, c.caller, id, allow_deleting);
}

Result<InstanceRow> DatabaseService::Impl::load_instance(store::Tx& tx,
                                                         const identity::AuthContext& caller,
                                                         const std::string& id,
                                                         bool allow_deleting) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {id}));
  // Trove's rule: an admin reaches any project's instance through its own project's path
  // (operators and Tempest's admin client clean up tenants' instances that way).
  if (rows.empty() || (rows[0].text(1) != caller.project_id && !caller.is_admin()) ||
      (rows[0].integer(15) != 0 && !allow_deleting)) {
    return fail(Code::kNotFound, "Instance '" + id + "' cannot be found.");
  }
  return instance_from(rows[0]);
}

Result<engine::DesiredState> DatabaseService::Impl::desired_state(store::Tx& tx,
                                                                  const InstanceRow& inst) {
  engine::DesiredState st;
  st.revision = inst.state_revision;
  // A replica's databases, users and root are its primary's (api_replicas.cc).
  const std::string owner = rows_owner(inst);
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows dbs,
      tx.query("SELECT name, character_set, collate_name FROM db_databases WHERE instance_id = ? "
               "ORDER BY name",
               {owner}));
  for (const store::Row& r : dbs) st.databases.push_back({r.text(0), r.text(1), r.text(2)});
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows users,
      tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE instance_id = ? "
               "ORDER BY name",
               {owner}));
  for (const store::Row& r : users) {
    st.users.push_back({r.text(0), r.text(1), r.text(2), string_list(r.text(3))});
  }
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows root,
      tx.query("SELECT verifier FROM db_root WHERE instance_id = ? AND enabled = 1", {owner}));
  if (!root.empty()) st.root = engine::RootSpec{root[0].text(0)};
  CONCORD_RETURN_IF_ERROR(add_configuration_state(tx, inst, st));
  CONCORD_RETURN_IF_ERROR(add_backup_state(tx, inst, st));
  CONCORD_RETURN_IF_ERROR(add_replication_state(tx, inst, st));
  CONCORD_RETURN_IF_ERROR(add_log_state(tx, inst, st));
  return st;
}

std::map<std::string, std::string> DatabaseService::Impl::server_metadata(
    const InstanceRow& inst, const engine::DesiredState& st) const {
  return {{std::string(keys::kInstance), inst.id},
          {std::string(keys::kProject), inst.project_id},
          {std::string(keys::kEngine), inst.engine},
          {std::string(keys::kVersion), inst.version},
          {std::string(keys::kAddress), engine_address_of(inst)},
          {std::string(keys::kPort), std::to_string(inst.port)},
          {std::string(keys::kVolumeGb), std::to_string(inst.volume_gb)},
          {std::string(keys::kState), engine::to_json(st)}};
}

std::optional<compute::FlavorSnapshot> DatabaseService::Impl::shown_flavor(
    const std::string& flavor_id) {
  std::optional<compute::FlavorSnapshot> out;
  Status st = store_.read([&](store::Tx& tx) -> Status {
    auto f = compute::load_flavor(tx, flavor_id, "", true);
    if (f) out = std::move(*f);
    return ok();
  });
  if (!st) out.reset();  // a synthetic flavor of the same size is shown instead
  return out;
}

std::set<uint32_t> DatabaseService::Impl::held_addresses(
    const std::map<std::string, compute::ServiceServer>& live) {
  std::set<uint32_t> held;
  for (const auto& [id, s] : live) {
    if (auto a = s.metadata.find(std::string(keys::kAddress)); a != s.metadata.end()) {
      if (auto ip = parse_ip(a->second)) held.insert(*ip);
    }
  }
  return held;
}

Result<std::vector<uint32_t>> DatabaseService::Impl::free_addresses(store::Tx& tx,
                                                                    std::set<uint32_t> used,
                                                                    size_t wanted) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT address, engine_address FROM db_instances UNION ALL "
                                    "SELECT engine_address, '' FROM db_members"));
  for (const store::Row& r : rows) {
    for (int col : {0, 1}) {
      if (auto ip = parse_ip(r.text(col))) used.insert(*ip);
    }
  }
  std::vector<uint32_t> free;
  for (uint32_t a = pool_first_; a <= pool_last_ && free.size() < wanted; ++a) {
    if (!used.contains(a)) free.push_back(a);
    if (a == pool_last_) break;
  }
  if (free.size() < wanted) {
    return fail(Code::kResourceExhausted, "No free address is left in the database address pool " +
                                              options_.address_pool + ".");
  }
  return free;
}

// Creates the instance's server with the given metadata (idempotent per id).
Status DatabaseService::Impl::ensure_server(const InstanceRow& inst,
                                            const std::map<std::string, std::string>& md,
                                            const std::string& server_id,
                                            const std::vector<std::string>& ignore_hosts) {
  auto [project, user] = service_actor();
  if (project.empty()) {
    return fail(Code::kUnavailable, "the database service is starting; try again shortly");
  }
  compute::ServiceServerRequest req;
  req.id = server_id.empty() ? inst.id : server_id;
  req.project_id = project;
  req.user_id = user;
  // Named and sized as the tenant's instance, so an operator (and Tempest's resize test) finds
  // it through the Nova API by the instance's name, showing the Trove flavor.
  req.name = inst.name;
  req.driver = "database";
  req.vcpus = inst.vcpus;
  req.ram_mb = inst.ram_mb;
  req.disk_gb = inst.volume_gb;
  req.flavor = shown_flavor(inst.flavor_id);
  req.metadata = md;
  req.ignore_hosts = ignore_hosts;
  req.availability_zone = inst.availability_zone;
  req.record_unplaced = req.id == inst.id;
  return compute::create_service_server(compute_, req);
}

// Writes the instance's whole desired state into its server (see the header comment).
Status DatabaseService::Impl::sync_server(const std::string& instance_id) {
  // Read and write as one step per process: two changes syncing at once could otherwise
  // write their states in the wrong order (a GET repairs what another replica's race leaves).
  std::lock_guard sync_lock(sync_mu_);
  InstanceRow inst;
  ServerTargets targets;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows, tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {instance_id}));
    if (rows.empty()) return fail(Code::kNotFound, "instance " + instance_id + " is gone");
    inst = instance_from(rows[0]);
    CONCORD_ASSIGN_OR_RETURN(targets, server_targets(tx, inst));
    return ok();
  }));
  if (inst.deleting) return ok();
  for (const auto& [server_id, md] : targets) {
    Status st = compute::set_service_server_metadata(compute_, server_id, md);
    if (!st && st.error().code() == Code::kNotFound) {
      // A member never shares a host with another member of its instance.
      std::vector<std::string> avoid;
      if (targets.size() > 1) {
        CONCORD_ASSIGN_OR_RETURN(auto live, servers());
        for (const auto& [other, unused] : targets) {
          auto o = live.find(other);
          if (other != server_id && o != live.end() && !o->second.host.empty()) {
            avoid.push_back(o->second.host);
          }
        }
      }
      st = ensure_server(inst, md, server_id, avoid);
    }
    CONCORD_RETURN_IF_ERROR(st);
  }
  return ok();
}

Result<std::map<std::string, compute::ServiceServer>> DatabaseService::Impl::servers() {
  std::map<std::string, compute::ServiceServer> out;
  auto [project, user] = service_actor();
  (void)user;
  if (project.empty()) return out;
  CONCORD_ASSIGN_OR_RETURN(std::vector<compute::ServiceServer> list,
                           compute::list_service_servers(compute_, project));
  for (compute::ServiceServer& s : list) {
    if (!s.metadata.contains(std::string(keys::kInstance))) continue;
    std::string id = s.id;
    out.emplace(std::move(id), std::move(s));
  }
  return out;
}

int64_t DatabaseService::Impl::state_revision_of(const compute::ServiceServer& s) {
  auto it = s.metadata.find(std::string(keys::kState));
  if (it == s.metadata.end()) return 0;
  auto st = engine::desired_state_from_json(it->second);
  return st ? st->revision : 0;
}

// Trove status and operating status (docs/design/database.md, "Instance state machine").
std::pair<std::string, std::string> DatabaseService::Impl::status(const InstanceRow& inst,
                                                                  const compute::ServiceServer* s) {
  if (inst.deleting) return {"SHUTDOWN", "SHUTDOWN"};
  if (!s) return {"BUILD", ""};
  if (s->host_status == "DOWN") return {"ERROR", "ERROR"};
  // A hard reboot of a stopped or failed server (a restart from SHUTDOWN or ERROR) keeps Nova's
  // SHUTOFF or ERROR until it runs; Trove says REBOOT for it all the same.
  if (s->status == "REBOOT" || s->status == "HARD_REBOOT" ||
      s->task_state.value_or("") == "rebooting_hard") {
    return {"REBOOT", ""};
  }
  if (s->status == "ERROR") return {"ERROR", "ERROR"};
  if (inst.task == "RESIZE" && !s->converged) return {"RESIZE", ""};
  if (s->status == "RESIZE" || s->status == "VERIFY_RESIZE") return {"RESIZE", ""};
  if (s->status == "BUILD") return {"BUILD", ""};
  if (s->status == "SHUTOFF") return {"SHUTDOWN", "SHUTDOWN"};
  if (s->status == "ACTIVE") {
    const bool running = s->power_state == compute::power::kRunning;
    // A changed restart-required parameter waits for the restart action (Trove's status).
    if (running && inst.restart_required) return {"RESTART_REQUIRED", "HEALTHY"};
    // Trove shows BACKUP while a backup of the instance runs (the engine keeps serving).
    if (running && inst.backup_running) return {"BACKUP", "HEALTHY"};
    return {"ACTIVE", running ? "HEALTHY" : "SHUTDOWN"};
  }
  return {s->status, ""};
}

Json DatabaseService::Impl::instance_view(const Call& c, const InstanceRow& inst,
                                          const compute::ServiceServer* s, bool detail) {
  auto [trove_status, operating] = status(inst, s);
  Json flavor = {{"id", inst.flavor_id}, {"links", links(c, "flavors", inst.flavor_id)}};
  Json out = {{"id", inst.id},
              {"name", inst.name},
              {"status", trove_status},
              {"operating_status", operating},
              {"flavor", flavor},
              {"datastore", {{"type", inst.datastore}, {"version", inst.version}}},
              {"volume", {{"size", inst.volume_gb}}},
              {"ip", Json::array({inst.address})},
              {"addresses", Json::array({{{"address", inst.address}, {"type", "private"}}})},
              {"port", inst.port},
              {"links", links(c, "instances", inst.id)},
              {"region", options_.region},
              {"access", {{"is_public", inst.is_public}, {"allowed_cidrs", inst.allowed_cidrs}}},
              {"pooling", {{"mode", inst.endpoint_mode}}},
              {"created", inst.created},
              {"updated", inst.updated}};
  if (inst.endpoint_mode == "transaction") out["pooling"]["pool_size"] = pool_size_of(inst);
  if (!inst.configuration_id.empty()) {
    out["configuration"] = configuration_ref(c, inst.configuration_id);
  }
  add_operations_view(inst, s, out);
  add_replication_view(c, inst, out);
  add_ha_view(inst, out);
  if (detail) {
    out["tenant_id"] = inst.project_id;
    out["datastore"]["version_number"] = inst.version;
  }
  if (trove_status == "ERROR" && s) {
    out["fault"] = {
        {"message", s->fault.empty() ? (s->host_status == "DOWN" ? "the instance's host is down"
                                                                 : "the instance failed")
                                     : s->fault},
        {"created", inst.updated},
        {"details", ""}};
  }
  return out;
}

Result<std::vector<engine::DatabaseSpec>> DatabaseService::Impl::parse_databases(
    const Json& list, const std::string& engine) {
  if (!list.is_array()) return fail(bad("'databases' must be a list"));
  std::vector<engine::DatabaseSpec> out;
  std::set<std::string> seen;
  for (const Json& d : list) {
    if (!d.is_object()) return fail(bad("each database must be an object with a 'name'"));
    CONCORD_ASSIGN_OR_RETURN(std::string name, string_field(d, "name", "a database"));
    CONCORD_RETURN_IF_ERROR(check_name(engine, NameKind::kDatabase, name));
    if (!seen.insert(name).second) {
      return fail(bad("Database '" + name + "' appears more than once in the request."));
    }
    engine::DatabaseSpec spec{name, "", ""};
    for (const char* field : {"character_set", "collate"}) {
      auto it = d.find(field);
      if (it == d.end() || it->is_null()) continue;
      // get_ref: get<std::string>() returns a copy, and two copies' begin() and end() would
      // belong to different strings.
      if (!it->is_string() || it->get_ref<const std::string&>().size() > 64 ||
          !std::all_of(it->get_ref<const std::string&>().begin(),
                       it->get_ref<const std::string&>().end(), [](char ch) {
                         return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
                                ch == '-';
                       })) {
        return fail(bad(std::string("'") + field + "' of database '" + name +
                        "' must be up to 64 letters, digits, '_' or '-'"));
      }
      (std::string(field) == "collate" ? spec.collate : spec.character_set) =
          it->get<std::string>();
    }
    out.push_back(std::move(spec));
  }
  return out;
}

Result<std::vector<NewUser>> DatabaseService::Impl::parse_users(const Json& list,
                                                                const std::string& engine) {
  if (!list.is_array()) return fail(bad("'users' must be a list"));
  std::vector<NewUser> out;
  std::set<std::string> seen;
  for (const Json& u : list) {
    if (!u.is_object()) return fail(bad("each user must be an object with 'name' and 'password'"));
    NewUser n;
    CONCORD_ASSIGN_OR_RETURN(n.name, string_field(u, "name", "a user"));
    CONCORD_RETURN_IF_ERROR(check_name(engine, NameKind::kUser, n.name));
    CONCORD_ASSIGN_OR_RETURN(n.password, string_field(u, "password", "user '" + n.name + "'"));
    CONCORD_RETURN_IF_ERROR(check_password(n.password));
    CONCORD_ASSIGN_OR_RETURN(n.host, parse_host(u, engine));
    if (!seen.insert(n.name).second) {
      return fail(bad("User '" + n.name + "' appears more than once in the request."));
    }
    if (auto d = u.find("databases"); d != u.end() && !d->is_null()) {
      CONCORD_ASSIGN_OR_RETURN(n.databases, parse_refs(*d));
    }
    out.push_back(std::move(n));
  }
  return out;
}

Result<std::string> DatabaseService::Impl::parse_host(const Json& u, const std::string& engine) {
  auto it = u.find("host");
  if (it == u.end() || it->is_null()) return std::string("%");
  // One copy: get<std::string>() returns by value, so two calls' begin() and end() would
  // belong to different strings.
  const std::string host = it->is_string() ? it->get<std::string>() : std::string();
  if (host.empty() || host.size() > 60 || !std::all_of(host.begin(), host.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '%' || ch == '.' ||
               ch == '-' || ch == '_' || ch == ':';
      })) {
    return fail(bad("'host' must be up to 60 letters, digits, '%', '.', ':', '-' or '_'"));
  }
  if (engine == "postgresql" && host != "%") {
    return fail(bad("PostgreSQL users take no host ('" + host +
                    "'): every address may log in; limit the addresses with the instance's "
                    "access.allowed_cidrs."));
  }
  return host;
}

// [{"name": ...}, ...] -> names (deduplicated, in order).
Result<std::vector<std::string>> DatabaseService::Impl::parse_refs(const Json& list) {
  if (!list.is_array()) return fail(bad("'databases' must be a list of {\"name\": ...}"));
  std::vector<std::string> out;
  for (const Json& d : list) {
    if (!d.is_object() || !d.contains("name") || !d["name"].is_string()) {
      return fail(bad("'databases' must be a list of {\"name\": ...}"));
    }
    std::string n = d["name"].get<std::string>();
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(std::move(n));
  }
  return out;
}

int DatabaseService::Impl::port_for(const std::string& engine) const {
  return engine == "mariadb" ? options_.port_mariadb : options_.port_postgresql;
}

Result<int64_t> DatabaseService::Impl::volume_size(const Json& v) const {
  if (!v.is_number_integer()) return fail(bad("The volume 'size' must be an integer."));
  const int64_t size = v.get<int64_t>();
  if (size < 1 || size > options_.max_volume_gb) {
    return fail(bad("Volume size " + std::to_string(size) + " is out of range: it must be 1 to " +
                    std::to_string(options_.max_volume_gb) + " GB."));
  }
  return size;
}

Status DatabaseService::Impl::purge_instance_rows(store::Tx& tx, const std::string& id) {
  for (const char* table :
       {"db_databases", "db_users", "db_root", "db_events", "db_members", "db_guest_logs"}) {
    CONCORD_RETURN_IF_ERROR(
        tx.exec(std::string("DELETE FROM ") + table + " WHERE instance_id = ?", {id}));
  }
  CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM db_instances WHERE id = ?", {id}));
  return ok();
}

Result<Response> DatabaseService::Impl::create_instance(Call& c) {
  auto [service_project, service_user] = service_actor();
  (void)service_user;
  if (service_project.empty()) {
    return fail(Code::kUnavailable, "The database service is starting; try again shortly.");
  }
  // A replica's datastore, flavor and volume default to its primary's (api_replicas.cc).
  CONCORD_ASSIGN_OR_RETURN(
      Json in, body_member(c.req, "instance", "The request body must be {\"instance\": {...}}."));
  CONCORD_ASSIGN_OR_RETURN(std::optional<InstanceRow> source, parse_create_replica(c, in));
  for (const char* unsupported : {"modules"}) {
    auto u = in.find(unsupported);
    if (u != in.end() && !u->is_null() && !(u->is_array() && u->empty())) {
      return fail(bad(std::string("'") + unsupported +
                      "' is not supported by this cloud yet (single instances only)."));
    }
  }
  if (auto rc = in.find("replica_count");
      rc != in.end() && !rc->is_null() && !(rc->is_number_integer() && rc->get<int64_t>() == 1)) {
    return fail(bad("'replica_count' is not supported by this cloud yet."));
  }
  InstanceRow inst;
  inst.id = new_uuid();
  inst.project_id = c.caller.project_id;
  CONCORD_ASSIGN_OR_RETURN(inst.name, string_field(in, "name", "instance"));
  CONCORD_RETURN_IF_ERROR(check_instance_name(inst.name));
  // Datastore: type (name or id) is required; the version defaults to the datastore's.
  auto ds = in.find("datastore");
  if (ds == in.end() || !ds->is_object() || !ds->contains("type") || !(*ds)["type"].is_string()) {
    return fail(
        bad("Please specify the datastore: {\"datastore\": {\"type\": ..., "
            "\"version\": ...}}."));
  }
  const std::string ds_ref = (*ds)["type"].get<std::string>();
  std::optional<std::string> version_ref;
  if (auto v = ds->find("version"); v != ds->end() && !v->is_null()) {
    if (!v->is_string()) return fail(bad("The datastore 'version' must be a string."));
    version_ref = v->get<std::string>();
  }
  // Flavor: an id, a number or a link.
  auto fr = in.find("flavorRef");
  std::string flavor_ref;
  if (fr != in.end() && fr->is_string() && !fr->get<std::string>().empty()) {
    flavor_ref = fr->get<std::string>();
    if (size_t slash = flavor_ref.rfind('/'); slash != std::string::npos) {
      flavor_ref = flavor_ref.substr(slash + 1);
    }
  } else if (fr != in.end() && fr->is_number_integer()) {
    flavor_ref = std::to_string(fr->get<int64_t>());
  } else {
    return fail(bad("'flavorRef' is required: a flavor id."));
  }
  auto vol = in.find("volume");
  if (vol == in.end() || !vol->is_object() || !vol->contains("size")) {
    return fail(bad("Volume size was not specified: {\"volume\": {\"size\": <GB>}}."));
  }
  CONCORD_ASSIGN_OR_RETURN(inst.volume_gb, volume_size((*vol)["size"]));

  VersionRow version;
  compute::FlavorSnapshot flavor;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(version, find_version_or_default(tx, ds_ref, version_ref));
    if (!version.active) {
      return fail(bad("Datastore version '" + version.name + "' is not active."));
    }
    CONCORD_ASSIGN_OR_RETURN(flavor, load_flavor(tx, c, flavor_ref));
    return ok();
  }));
  inst.version_id = version.id;
  inst.datastore = version.datastore_name;
  inst.version = version.name;
  inst.engine = version.engine;
  inst.flavor_id = flavor.id;
  inst.vcpus = flavor.vcpus;
  inst.ram_mb = flavor.ram_mb;
  inst.port = port_for(inst.engine);
  // Stage-2 parts of the request: "configuration" (api_configurations.cc) and "restorePoint"
  // (api_backups.cc); each checks its part against the chosen datastore version.
  CONCORD_RETURN_IF_ERROR(parse_create_configuration(c, in, inst));
  CONCORD_RETURN_IF_ERROR(parse_create_restore(c, in, inst));
  if (source) {
    if (source->version_id != inst.version_id) {
      return fail(bad("A replica runs the datastore version of its primary (" + source->datastore +
                      " " + source->version + ")."));
    }
    inst.replica_of = source->id;
  }
  CONCORD_RETURN_IF_ERROR(parse_create_pooling(in, inst));
  CONCORD_RETURN_IF_ERROR(parse_create_ha(in, inst));
  if (auto a = in.find("access"); a != in.end() && !a->is_null()) {
    CONCORD_RETURN_IF_ERROR(parse_access(*a, inst));
  }
  if (auto z = in.find("availability_zone"); z != in.end() && !z->is_null()) {
    if (!z->is_string()) return fail(bad("'availability_zone' must be a string."));
    inst.availability_zone = z->get<std::string>();
  }
  CONCORD_RETURN_IF_ERROR(parse_create_operations(c, in, inst));

  std::vector<engine::DatabaseSpec> databases;
  if (auto d = in.find("databases"); d != in.end() && !d->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(databases, parse_databases(*d, inst.engine));
  }
  std::vector<NewUser> users;
  if (auto u = in.find("users"); u != in.end() && !u->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(users, parse_users(*u, inst.engine));
  }
  std::vector<engine::UserSpec> user_specs;
  for (const NewUser& u : users) {
    for (const std::string& db : u.databases) {
      if (std::none_of(databases.begin(), databases.end(),
                       [&](const engine::DatabaseSpec& d) { return d.name == db; })) {
        return fail(bad("Database '" + db + "' of user '" + u.name +
                        "' is not in the instance's list of databases."));
      }
    }
    CONCORD_ASSIGN_OR_RETURN(std::string verifier,
                             engine::password_verifier(inst.engine, u.password));
    user_specs.push_back({u.name, u.host, std::move(verifier), u.databases});
  }

  CONCORD_ASSIGN_OR_RETURN(auto live_servers, servers());
  const std::set<uint32_t> held = held_addresses(live_servers);
  bool source_active = false;  // a backup can seed the replica (start_seed_backup)
  if (source) {
    auto s = live_servers.find(primary_server(*source));
    const std::string st = status(*source, s == live_servers.end() ? nullptr : &s->second).first;
    source_active = st == "ACTIVE" || st == "RESTART_REQUIRED";
  }
  const SystemTime now = clock_.now();
  engine::DesiredState st;
  inst.created = inst.updated = trove_time(now);
  inst.last_metered_us = to_us(now);
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.serialize());  // the free addresses stay free until the commit
    const int64_t engines = inst.ha ? 2 : 1;
    CONCORD_RETURN_IF_ERROR(check_quota(
        tx, inst.project_id,
        {{"instances", 1}, {"ram", inst.ram_mb * engines}, {"volumes", inst.volume_gb * engines}}));
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT id, deleting FROM db_instances WHERE deleting = 1"));
    for (const store::Row& r : rows) {
      // A deleted instance whose server is gone is history: its rows go now.
      if (!live_servers.contains(r.text(0)))
        CONCORD_RETURN_IF_ERROR(purge_instance_rows(tx, r.text(0)));
    }
    // The tenant's address, and with endpoints a second one the engine listens on.
    CONCORD_ASSIGN_OR_RETURN(std::vector<uint32_t> free,
                             free_addresses(tx, held, options_.endpoints ? (inst.ha ? 3 : 2) : 1));
    inst.address = ip_text(free[0]);
    if (options_.endpoints) inst.engine_address = ip_text(free[1]);
    const std::string standby_address = inst.ha ? ip_text(free[2]) : std::string();
    if (source) {
      CONCORD_RETURN_IF_ERROR(link_replica(tx, inst));
      if (source_active) CONCORD_RETURN_IF_ERROR(start_seed_backup(tx, *source, inst.id));
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec(
            "INSERT INTO db_instances (id, project_id, name, datastore_version_id, "
            "flavor_id, vcpus, ram_mb, volume_gb, address, port, state_revision, task, "
            "created, updated, last_metered_us, deleting, configuration_id, restored_from, "
            "engine_address, endpoint_mode, replica_of, replication_secret, ha, is_public, "
            "allowed_cidrs, availability_zone, pool_size) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, '', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?)",
            {inst.id,
             inst.project_id,
             inst.name,
             inst.version_id,
             inst.flavor_id,
             inst.vcpus,
             inst.ram_mb,
             inst.volume_gb,
             inst.address,
             inst.port,
             inst.created,
             inst.updated,
             inst.last_metered_us,
             inst.configuration_id,
             inst.restored_from,
             inst.engine_address,
             inst.endpoint_mode,
             inst.replica_of,
             inst.replication_secret,
             int64_t{inst.ha ? 1 : 0},
             int64_t{inst.is_public ? 1 : 0},
             dump_json(inst.allowed_cidrs),
             inst.availability_zone,
             inst.pool_size}));
    (void)n;
    if (inst.ha) CONCORD_RETURN_IF_ERROR(insert_members(tx, inst, standby_address));
    CONCORD_RETURN_IF_ERROR(insert_operations(tx, inst));  // api_operations.cc
    for (const engine::DatabaseSpec& d : databases) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t m, tx.exec("INSERT INTO db_databases (instance_id, name, character_set, "
                             "collate_name) VALUES (?, ?, ?, ?)",
                             {inst.id, d.name, d.character_set, d.collate}));
      (void)m;
    }
    for (const engine::UserSpec& u : user_specs) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t m, tx.exec("INSERT INTO db_users (instance_id, name, host, verifier, "
                             "databases_json) VALUES (?, ?, ?, ?, ?)",
                             {inst.id, u.name, u.host, u.verifier, dump_json(u.databases)}));
      (void)m;
    }
    CONCORD_ASSIGN_OR_RETURN(st, desired_state(tx, inst));
    return ok();
  }));
  // An HA instance's members go to two hosts (sync_server places the standby away from the
  // primary); one no host can take fails the whole create.
  Status made = inst.ha ? sync_server(inst.id) : ensure_server(inst, server_metadata(inst, st));
  if (!made) {
    if (inst.ha) {
      for (const std::string& id : {inst.id, inst.id + "-m1"}) {
        (void)compute::delete_service_server(compute_, id);
      }
      if (made.error().code() == Code::kResourceExhausted) {
        made = fail(bad("High availability needs a second host that can run the standby: " +
                        made.error().message()));
      }
    }
    // Nothing half-created: the rows go with the failed server.
    Status undo = store_.write([&](store::Tx& tx) -> Status {
      for (const char* table : {"db_databases", "db_users", "db_events", "db_members"}) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec(std::string("DELETE FROM ") + table + " WHERE instance_id = ?", {inst.id}));
        (void)n;
      }
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("DELETE FROM db_instances WHERE id = ?", {inst.id}));
      (void)n;
      return ok();
    });
    if (!undo) {
      logger("database")
          ->error("instance {}: undoing a failed create: {}", inst.id, undo.error().to_string());
    }
    return fail(made.error());
  }
  logger("database")
      ->info("instance {} created project={} datastore={} {} address={}:{}{}", inst.id,
             inst.project_id, inst.datastore, inst.version, inst.address, inst.port,
             source ? " replica of " + source->id : std::string());
  if (source) {
    // The primary now lists the replica (its slot); a failed push is repaired by its next show.
    if (Status synced = sync_server(source->id); !synced) {
      logger("database")
          ->warn("instance {}: pushing the primary's state: {}", source->id,
                 synced.error().to_string());
    }
  }
  poke_endpoints();
  CONCORD_ASSIGN_OR_RETURN(auto now_servers, servers());
  auto s = now_servers.find(inst.id);
  return Response::json(
      200,
      dump_json({{"instance",
                  instance_view(c, inst, s == now_servers.end() ? nullptr : &s->second, true)}}));
}

Result<Response> DatabaseService::Impl::list_instances(Call& c) {
  return list_instances_of(c, false);
}

Result<Response> DatabaseService::Impl::mgmt_list_instances(Call& c) {
  return list_instances_of(c, true);
}

Result<Response> DatabaseService::Impl::list_instances_of(Call& c, bool mgmt) {
  std::string where = "WHERE i.project_id = ?";
  std::vector<store::Value> args = {c.caller.project_id};
  if (mgmt) {
    where = "WHERE 1 = 1";
    args.clear();
    if (auto p = c.req.query_param("project_id"); p && !p->empty()) {
      where += " AND i.project_id = ?";
      args.emplace_back(*p);
    }
    // Trove keeps deleted instances' rows (deleted=true lists them); Concord removes an
    // instance's record once its engine and data are gone, so there are none to list.
    const std::optional<std::string> deleted = c.req.query_param("deleted");
    if (deleted && *deleted != "true" && *deleted != "false" && *deleted != "True" &&
        *deleted != "False") {
      return fail(bad("'deleted' must be true or false."));
    }
    if (deleted && (*deleted == "true" || *deleted == "True")) {
      return Response::json(200, dump_json({{"instances", Json::array()}}));
    }
  }
  CONCORD_ASSIGN_OR_RETURN(const int64_t limit, parse_limit(c.req));
  std::vector<InstanceRow> rows;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    rows.clear();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows r,
        tx.query(std::string(kInstanceSelect) + where + " ORDER BY i.created, i.id", args));
    for (const store::Row& row : r) rows.push_back(instance_from(row));
    return ok();
  }));
  CONCORD_ASSIGN_OR_RETURN(auto live, servers());
  std::erase_if(rows, [&](const InstanceRow& inst) {
    return inst.deleting && !live.contains(primary_server(inst));  // gone
  });
  CONCORD_ASSIGN_OR_RETURN(
      const Page page,
      page_of(
          c.req, limit, rows, [](const InstanceRow& inst) { return inst.id; }, "instance"));
  Json list = Json::array();
  for (size_t i = page.begin; i < page.end; ++i) {
    auto s = live.find(primary_server(rows[i]));
    const compute::ServiceServer* server = s == live.end() ? nullptr : &s->second;
    Json view = instance_view(c, rows[i], server, false);
    if (mgmt) add_mgmt_fields(rows[i], server, view);
    list.push_back(std::move(view));
  }
  Json out = {{"instances", std::move(list)}};
  if (!page.next.empty()) {
    std::string next = base(c) + (mgmt ? "/mgmt/instances" : "/instances") +
                       "?limit=" + std::to_string(limit) + "&marker=" + url_encode(page.next);
    if (auto p = c.req.query_param("project_id"); mgmt && p && !p->empty()) {
      next += "&project_id=" + url_encode(*p);  // as given, so encoded again
    }
    out["links"] = Json::array({{{"href", next}, {"rel", "next"}}});
  }
  return Response::json(200, dump_json(out));
}

void DatabaseService::Impl::add_mgmt_fields(const InstanceRow& inst,
                                            const compute::ServiceServer* s, Json& out) {
  out["tenant_id"] = inst.project_id;
  out["server_id"] = primary_server(inst);
  out["server"] = s ? Json{{"id", s->id},
                           {"name", s->name},
                           {"status", s->status},
                           {"host", s->host},
                           {"host_status", s->host_status},
                           {"tenant_id", s->project_id}}
                    : Json(nullptr);
  out["deleted"] = false;
  out["deleted_at"] = nullptr;
}

Result<Json> DatabaseService::Impl::instance_detail(Call& c, bool mgmt) {
  InstanceRow inst;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(inst, load_instance(tx, c, c.param(1), true));
    return ok();
  }));
  CONCORD_ASSIGN_OR_RETURN(auto live, servers());
  auto s = live.find(primary_server(inst));
  if (inst.deleting && s == live.end()) {
    return fail(Code::kNotFound, "Instance '" + inst.id + "' cannot be found.");
  }
  // Repair after a crash between a row write and its server write.
  if (!inst.deleting && (s == live.end() || state_revision_of(s->second) < inst.state_revision)) {
    if (Status synced = sync_server(inst.id); !synced) {
      logger("database")
          ->warn("instance {}: pushing its desired state: {}", inst.id, synced.error().to_string());
    }
    CONCORD_ASSIGN_OR_RETURN(live, servers());
    s = live.find(primary_server(inst));
  }
  const compute::ServiceServer* server = s == live.end() ? nullptr : &s->second;
  Json view = instance_view(c, inst, server, true);
  if (mgmt) add_mgmt_fields(inst, server, view);
  return view;
}

Result<Response> DatabaseService::Impl::show_instance(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json view, instance_detail(c, false));
  return Response::json(200, dump_json({{"instance", std::move(view)}}));
}

Result<Response> DatabaseService::Impl::mgmt_show_instance(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json view, instance_detail(c, true));
  return Response::json(200, dump_json({{"instance", std::move(view)}}));
}

Result<Response> DatabaseService::Impl::update_instance(Call& c) {
  bool endpoint_changed = false;  // access list or pool size
  CONCORD_ASSIGN_OR_RETURN(
      const Json in,
      body_member(c.req, "instance", "The request body must be {\"instance\": {...}}."));
  for (auto& [key, value] : in.items()) {
    if (key == "name") continue;
    if ((key == "configuration" || key == "detach_replica" || key == "replica_of" ||
         key == "slave_of") &&
        value.is_null()) {
      continue;
    }
    // troveclient's `detach-replica` sends "replica_of": "" (Tempest too).
    if ((key == "replica_of" || key == "slave_of") && value.is_string() &&
        value.get<std::string>().empty()) {
      continue;
    }
    if (key == "detach_replica" && value.is_boolean()) continue;
    if (key == "configuration" && value.is_string()) continue;  // attach (null: detach)
    if (key == "access" && value.is_object()) continue;
    if (key == "pooling") continue;        // its pool size (update_pool_size checks the value)
    if (is_operations_key(key)) continue;  // api_operations.cc checks the value
    return fail(bad("Changing '" + sanitize_utf8(key) +
                    "' of an instance is not supported by this cloud yet."));
  }
  std::optional<std::string> name;
  if (auto n = in.find("name"); n != in.end()) {
    if (!n->is_string()) return fail(bad("The instance 'name' must be a string."));
    CONCORD_RETURN_IF_ERROR(check_instance_name(n->get<std::string>()));
    name = n->get<std::string>();
  }
  // Attach ({"configuration": id}) or detach ({"configuration": null}, what troveclient's
  // `configuration detach` sends); absent: unchanged.
  std::optional<std::optional<std::string>> configuration;
  int64_t new_revision = 0;  // of an attach or detach that changed the desired state
  if (auto cfg = in.find("configuration"); cfg != in.end()) {
    configuration = cfg->is_null() ? std::optional<std::string>()
                                   : std::optional<std::string>(cfg->get<std::string>());
    if (configuration->has_value() && (*configuration)->empty()) {
      return fail(
          bad("'configuration' must be the id of a configuration group, or null to "
              "detach."));
    }
  }
  bool detach = false;
  for (const char* key : {"replica_of", "slave_of"}) {
    auto r = in.find(key);
    if (r != in.end() && (r->is_null() || (r->is_string() && r->get<std::string>().empty()))) {
      detach = true;
    }
  }
  if (auto d = in.find("detach_replica"); d != in.end() && (d->is_null() || *d == true)) {
    detach = true;
  }
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
    // As Trove: before anything else of the update is written.
    if (detach && inst.replica_of.empty()) {
      return fail(bad("Instance '" + inst.id + "' is not a replica."));
    }
    if (configuration) {
      CONCORD_ASSIGN_OR_RETURN(new_revision, set_instance_configuration(tx, inst, *configuration));
    }
    CONCORD_RETURN_IF_ERROR(apply_update_operations(tx, inst, in));
    if (auto a = in.find("access"); a != in.end()) {
      InstanceRow next = inst;
      CONCORD_RETURN_IF_ERROR(parse_access(*a, next));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("UPDATE db_instances SET is_public = ?, allowed_cidrs = ?, updated = ? "
                  "WHERE id = ?",
                  {int64_t{next.is_public ? 1 : 0}, dump_json(next.allowed_cidrs),
                   trove_time(clock_.now()), inst.id}));
      (void)n;
      endpoint_changed = true;
    }
    if (auto p = in.find("pooling"); p != in.end()) {
      CONCORD_RETURN_IF_ERROR(update_pool_size(tx, inst, *p));
      endpoint_changed = true;
    }
    if (!name) return ok();
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE db_instances SET name = ?, updated = ? WHERE id = ?",
                                     {*name, trove_time(clock_.now()), inst.id}));
    (void)n;
    return ok();
  }));
  if (detach) CONCORD_RETURN_IF_ERROR(detach_replica(c, c.param(1)));
  if (endpoint_changed) poke_endpoints();  // the endpoint takes the change now
  if (new_revision > 0) {
    CONCORD_RETURN_IF_ERROR(sync_server(c.param(1)));
    // Answered once applied where the route waits (add_applied), as access changes are.
    c.changed_instance = c.param(1);
    c.changed_revision = new_revision;
  }
  return Response::empty(202);
}

Status DatabaseService::Impl::update_pool_size(store::Tx& tx, const InstanceRow& inst,
                                               const Json& pooling) {
  if (!pooling.is_object()) {
    return fail(bad("'pooling' must be an object: {\"pool_size\": N or null}."));
  }
  CONCORD_RETURN_IF_ERROR(check_pooling_keys(pooling));
  if (auto m = pooling.find("mode"); m != pooling.end() && *m != inst.endpoint_mode) {
    return fail(bad("The pooling mode is chosen at create ('" + inst.endpoint_mode +
                    "' for this instance); only 'pooling.pool_size' can change."));
  }
  if (!pooling.contains("pool_size")) return ok();
  if (inst.endpoint_mode != "transaction") {
    return fail(bad("Instance '" + inst.id +
                    "' has no transaction pooling: 'pooling.pool_size' "
                    "applies to instances created with \"pooling\": \"transaction\"."));
  }
  CONCORD_ASSIGN_OR_RETURN(int64_t pool_size, parse_pool_size(pooling["pool_size"]));
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("UPDATE db_instances SET pool_size = ?, updated = ? WHERE id = ?",
                         {pool_size, trove_time(clock_.now()), inst.id}));
  (void)n;
  return ok();
}

Result<Response> DatabaseService::Impl::delete_instance(Call& c) {
  bool already = false;
  std::string primary;  // of a replica: it no longer keeps a slot for it
  bool ha = false;
  std::vector<std::string> members;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1), true));
    if (inst.deleting) {
      already = true;
      return ok();
    }
    CONCORD_RETURN_IF_ERROR(check_deletable(inst));
    ha = inst.ha;
    if (ha) {
      CONCORD_ASSIGN_OR_RETURN(std::vector<Member> ms, members_of(tx, inst.id));
      members.clear();
      for (const Member& m : ms) members.push_back(m.id);
    }
    CONCORD_RETURN_IF_ERROR(check_no_replicas(tx, inst));
    if (!inst.replica_of.empty()) {
      primary = inst.replica_of;
      CONCORD_RETURN_IF_ERROR(bump_revisions(tx, {primary}, trove_time(clock_.now())));
    }
    CONCORD_RETURN_IF_ERROR(meter(tx, inst, to_us(clock_.now()), options_.region));
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE db_instances SET deleting = 1, updated = ?, "
                                     "last_metered_us = ? WHERE id = ?",
                                     {trove_time(clock_.now()), inst.last_metered_us, inst.id}));
    (void)n;
    return record_event(tx, inst, "deleted", "The instance is being deleted.");
  }));
  // Re-issued on a repeated delete too, so a crash right after the row write is finished.
  CONCORD_RETURN_IF_ERROR(compute::delete_service_server(compute_, c.param(1)));
  if (ha) {
    for (const std::string& id : members) {
      if (id != c.param(1)) CONCORD_RETURN_IF_ERROR(compute::delete_service_server(compute_, id));
    }
  }
  if (!already) logger("database")->info("instance {} deleting", c.param(1));
  if (!primary.empty()) sync_servers({primary});
  poke_endpoints();
  return Response::empty(202);
}

Status DatabaseService::Impl::require_active(const InstanceRow& inst, bool or_down) {
  CONCORD_ASSIGN_OR_RETURN(auto live, servers());
  auto s = live.find(primary_server(inst));
  const compute::ServiceServer* server = s == live.end() ? nullptr : &s->second;
  const std::string st = status(inst, server).first;
  if (or_down && !inst.deleting) {
    if (st == "SHUTDOWN") return ok();
    // ERROR from a failed step of the engine on a host that is up (its start, say: a crash
    // recovery that found no room on a full volume). Nova lets a hard reboot take an ERROR
    // server back; Trove offers nothing short of an admin's reset, which leaves a tenant with
    // data no way out but a restore. A host that is down or an instance that was never placed
    // stays ERROR: nothing there could run the action.
    if (st == "ERROR" && server->status == "ERROR" && !server->host.empty() &&
        server->host_status == "UP") {
      return ok();
    }
  }
  if (st != "ACTIVE" && st != "RESTART_REQUIRED") {
    return fail(Code::kFailedPrecondition,
                "Instance is not currently available for an action to be performed (status was " +
                    st + ").");
  }
  return ok();
}

Result<Response> DatabaseService::Impl::action(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
  if (body.size() != 1) {
    return fail(bad("An action body holds exactly one action: restart or resize."));
  }
  const std::string name = body.begin().key();
  const Json& arg = body.begin().value();
  InstanceRow inst;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(inst, load_instance(tx, c, c.param(1)));
    return ok();
  }));
  if (name == "restart") {
    // Also from SHUTDOWN, as Trove allows (a stopped or crashed datastore permits actions): the
    // tenant's way to bring back an engine that died, e.g. one that stopped on a full volume;
    // and from an ERROR its engine's failed start left (require_active).
    CONCORD_RETURN_IF_ERROR(require_active(inst, /*or_down=*/true));
    if (inst.ha) {
      // Every member: a restart-required parameter is every engine's (a PostgreSQL standby
      // with a smaller max_connections than its primary stops replaying). The standby first;
      // the controller does not fail over while the primary's planned reboot runs (api_ha.cc).
      CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> members, member_servers(inst));
      for (const std::string& m : members) {
        if (m == primary_server(inst)) continue;
        if (Status r = compute::reboot_service_server(compute_, m); !r) {
          logger("database")
              ->warn("instance {}: restarting standby member {}: {}", inst.id, m,
                     r.error().to_string());
        }
      }
    }
    CONCORD_RETURN_IF_ERROR(compute::reboot_service_server(compute_, primary_server(inst)));
    CONCORD_RETURN_IF_ERROR(set_task(inst.id, "RESTART", std::nullopt));
    if (inst.restart_required) CONCORD_RETURN_IF_ERROR(clear_restart_required(inst.id));
    return Response::empty(202);
  }
  if (name == "reset_status") {
    // Trove's admin-only unstick before a forced delete: forgets a pending action; the status
    // itself always follows the server (see status()), so there is nothing else to reset.
    // A tenant gets Trove's answer for an action its policy refuses (403): troveclient's
    // `instance force delete` asks for it first.
    if (!c.caller.is_admin()) {
      return fail(Code::kPermissionDenied,
                  "Policy doesn't allow instance:reset_status to be performed: only "
                  "administrators may reset an instance's status.");
    }
    CONCORD_RETURN_IF_ERROR(set_task(inst.id, "", std::nullopt));
    return Response::empty(202);
  }
  if (name == "promote_to_replica_source") return promote_replica(c, inst);
  if (name == "eject_replica_source") return eject_replica_source(c, inst);
  if (name != "resize") {
    return fail(bad("Action '" + sanitize_utf8(name) +
                    "' is not supported (restart, resize with flavorRef or volume, "
                    "promote_to_replica_source, eject_replica_source; reset_status for admins)."));
  }
  if (!arg.is_object() || arg.size() != 1 ||
      (!arg.contains("flavorRef") && !arg.contains("volume"))) {
    return fail(bad("resize takes either {\"flavorRef\": ...} or {\"volume\": {\"size\": ...}}."));
  }
  InstanceRow next = inst;
  if (arg.contains("flavorRef")) {
    const Json& f = arg["flavorRef"];
    std::string ref = f.is_string()           ? f.get<std::string>()
                      : f.is_number_integer() ? std::to_string(f.get<int64_t>())
                                              : std::string();
    if (size_t slash = ref.rfind('/'); slash != std::string::npos) ref = ref.substr(slash + 1);
    if (ref.empty()) return fail(bad("'flavorRef' must be a flavor id."));
    compute::FlavorSnapshot flavor;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(flavor, load_flavor(tx, c, ref));
      return ok();
    }));
    if (flavor.id == inst.flavor_id) {
      return fail(bad("The new flavor id must be different than the current flavor id of '" +
                      inst.flavor_id + "'."));
    }
    next.flavor_id = flavor.id;
    next.vcpus = flavor.vcpus;
    next.ram_mb = flavor.ram_mb;
  } else {
    const Json& v = arg["volume"];
    if (!v.is_object() || !v.contains("size")) {
      return fail(bad("resize volume takes {\"volume\": {\"size\": <GB>}}."));
    }
    CONCORD_ASSIGN_OR_RETURN(next.volume_gb, volume_size(v["size"]));
    if (next.volume_gb <= inst.volume_gb) {
      return fail(bad("The new volume 'size' must be larger than the current volume size of '" +
                      std::to_string(inst.volume_gb) + "'."));
    }
  }
  // A bigger volume also from SHUTDOWN or ERROR: an engine that stopped on a full volume (its
  // crash recovery needing more room than the storage guard's recovery reserve) is given room.
  // The agent grows the volume of a stopped engine without starting it (SHUTDOWN: restarted by
  // the tenant), and starts one whose restart had failed (ERROR: it was asked to run).
  CONCORD_RETURN_IF_ERROR(require_active(inst, /*or_down=*/!arg.contains("flavorRef")));
  CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> member_ids, member_servers(inst));
  // The growth against the project's quota, with the replicas' volumes that grow along
  // (resize_replica_volumes).
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    const auto engines = static_cast<int64_t>(member_ids.size());
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows along,
        tx.query("SELECT COALESCE(SUM(? - volume_gb), 0) FROM db_instances WHERE replica_of = ? "
                 "AND deleting = 0 AND volume_gb < ?",
                 {next.volume_gb, inst.id, next.volume_gb}));
    const int64_t volumes = (next.volume_gb - inst.volume_gb) * engines + along[0].integer(0);
    return check_quota(tx, inst.project_id,
                       {{"ram", (next.ram_mb - inst.ram_mb) * engines}, {"volumes", volumes}});
  }));
  for (const std::string& id : member_ids) {
    CONCORD_RETURN_IF_ERROR(compute::resize_service_server(
        compute_, id, next.vcpus, next.ram_mb, next.volume_gb, shown_flavor(next.flavor_id)));
  }
  CONCORD_RETURN_IF_ERROR(set_task(inst.id, "RESIZE", next));
  if (next.volume_gb != inst.volume_gb) {
    CONCORD_RETURN_IF_ERROR(sync_server(inst.id));
    // A replica holds the same data: its volume grows with its primary's (as Trove's).
    CONCORD_RETURN_IF_ERROR(resize_replica_volumes(c, inst, next.volume_gb));
  }
  return Response::empty(202);
}

// Records a pending action (and, for a resize, the new size with the usage interval closed).
Status DatabaseService::Impl::set_task(const std::string& id, const std::string& task,
                                       const std::optional<InstanceRow>& resized) {
  return store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {id}));
    if (rows.empty()) return fail(Code::kNotFound, "Instance '" + id + "' cannot be found.");
    InstanceRow inst = instance_from(rows[0]);
    const SystemTime now = clock_.now();
    if (resized) {
      CONCORD_RETURN_IF_ERROR(meter(tx, inst, to_us(now), options_.region));
      inst.flavor_id = resized->flavor_id;
      inst.vcpus = resized->vcpus;
      inst.ram_mb = resized->ram_mb;
      inst.volume_gb = resized->volume_gb;
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE db_instances SET task = ?, flavor_id = ?, vcpus = ?, ram_mb = ?, "
                "volume_gb = ?, last_metered_us = ?, updated = ? WHERE id = ?",
                {task, inst.flavor_id, inst.vcpus, inst.ram_mb, inst.volume_gb,
                 inst.last_metered_us, trove_time(now), id}));
    (void)n;
    if (task == "RESTART") return record_event(tx, inst, "restart.requested", "Restart requested.");
    if (task == "RESIZE") {
      return record_event(tx, inst, "resize.requested", "Resize requested.",
                          {{"flavor_id", inst.flavor_id}, {"volume_gb", inst.volume_gb}});
    }
    return ok();
  });
}

}  // namespace concord::database::service

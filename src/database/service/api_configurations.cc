// Trove API: configuration groups and the per-engine parameter catalog (see
// docs/design/database.md, "Configuration groups").
//
// A group is a project's named set of parameter values for one datastore version
// (db_configurations; values_json holds each value as normal-form text, engine/parameters.h).
// Attaching it to an instance (db_instances.configuration_id) puts its values into the
// instance's desired state; every change of the group's values, and every attach or detach,
// raises the state revision of each instance concerned and pushes the new desired state to its
// server, exactly as a change of databases or users does. When such a change alters a parameter
// that only takes effect at the engine's next start, the instance is flagged restart_required
// (Trove's RESTART_REQUIRED status) until it is restarted.
#include <charconv>

#include "database/engine/parameters.h"
#include "database/service/api_internal.h"

namespace concord::database::service {

namespace {

constexpr size_t kMaxGroupName = 255;
constexpr size_t kMaxDescription = 255;
constexpr size_t kMaxValues = 200;

const char* const kGroupColumns =
    "c.id, c.project_id, c.name, c.description, c.datastore_version_id, c.values_json, "
    "c.created, c.updated, v.id, v.datastore_id, d.name, v.name, v.engine, v.version, "
    "v.packages, v.active FROM db_configurations c "
    "JOIN db_datastore_versions v ON v.id = c.datastore_version_id "
    "JOIN db_datastores d ON d.id = v.datastore_id ";

std::map<std::string, std::string> values_from_json(const std::string& text) {
  std::map<std::string, std::string> out;
  auto j = parse_json(text);
  if (!j || !j->is_object()) return out;
  for (auto& [k, v] : j->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

// Whether going from `a` to `b` changes (sets, alters or removes) a parameter that needs a
// restart to take effect.
bool restart_touched(const VersionRow& v, const std::map<std::string, std::string>& a,
                     const std::map<std::string, std::string>& b) {
  std::set<std::string> names;
  for (const auto& [k, val] : a) names.insert(k);
  for (const auto& [k, val] : b) names.insert(k);
  for (const std::string& n : names) {
    auto ia = a.find(n), ib = b.find(n);
    const bool same = ia != a.end() && ib != b.end() && ia->second == ib->second;
    if (same) continue;
    const engine::ParameterSpec* spec = engine::find_parameter(v.engine, v.version, n);
    if (spec != nullptr && spec->restart_required) return true;
  }
  return false;
}

Result<std::string> checked_text(const Json& in, const char* field, size_t max, bool required) {
  auto it = in.find(field);
  if (it == in.end() || it->is_null()) {
    if (required) return fail(bad(std::string("'") + field + "' is required."));
    return std::string();
  }
  if (!it->is_string()) return fail(bad(std::string("'") + field + "' must be a string."));
  std::string s = it->get<std::string>();
  if ((required && s.empty()) || s.size() > max || sanitize_utf8(s) != s ||
      std::any_of(s.begin(), s.end(),
                  [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; })) {
    return fail(bad(std::string("'") + field + "' must be " + (required ? "1" : "0") + " to " +
                    std::to_string(max) + " characters without control characters."));
  }
  return s;
}

}  // namespace

void DatabaseService::Impl::add_configuration_routes() {
  const std::string r = "project_reader", m = "project_member";
  add(Method::kGet, "/datastores/versions/{version_id}/parameters",
      &Impl::list_parameters_by_version, r);
  add(Method::kGet, "/datastores/versions/{version_id}/parameters/{name}",
      &Impl::show_parameter_by_version, r);
  add(Method::kGet, "/datastores/{datastore}/versions/{version}/parameters", &Impl::list_parameters,
      r);
  add(Method::kGet, "/datastores/{datastore}/versions/{version}/parameters/{name}",
      &Impl::show_parameter, r);
  add(Method::kPost, "/configurations", &Impl::create_configuration, m);
  add(Method::kGet, "/configurations", &Impl::list_configurations, r);
  add(Method::kGet, "/configurations/{id}", &Impl::show_configuration, r);
  // A value change answers once an attached instance has applied it (as user and database
  // changes do), so a client reading the value right after sees it.
  add_applied(Method::kPut, "/configurations/{id}", &Impl::replace_configuration, m);
  add_applied(Method::kPatch, "/configurations/{id}", &Impl::merge_configuration, m);
  add(Method::kDelete, "/configurations/{id}", &Impl::delete_configuration, m);
  add(Method::kGet, "/configurations/{id}/instances", &Impl::list_configuration_instances, r);
  add(Method::kGet, "/instances/{id}/configuration", &Impl::show_instance_configuration, r);
}

// ---- the catalog ----

Result<VersionRow> DatabaseService::Impl::version_by_id(store::Tx& tx, const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows, tx.query(std::string("SELECT ") + kVersionColumns +
                                     " FROM db_datastore_versions v JOIN db_datastores d ON d.id = "
                                     "v.datastore_id WHERE v.id = ?",
                                 {id}));
  if (rows.empty()) return fail(Code::kNotFound, "Datastore version '" + id + "' cannot be found.");
  return version_from(rows[0]);
}

Result<Response> DatabaseService::Impl::parameters_response(Call& c, const VersionRow& v,
                                                            const std::string* name) {
  auto view = [&](const engine::ParameterSpec& p) {
    Json out = {{"name", std::string(p.name)},
                {"type", std::string(engine::parameter_type_name(p.type))},
                {"restart_required", p.restart_required},
                {"datastore_version_id", v.id}};
    if (p.type == engine::ParameterType::kInteger) {
      out["min"] = static_cast<int64_t>(p.min);
      out["max"] = static_cast<int64_t>(p.max);
    } else if (p.type == engine::ParameterType::kFloat) {
      out["min"] = p.min;
      out["max"] = p.max;
    }
    if (!p.unit.empty()) out["unit"] = std::string(p.unit);
    if (!p.choices.empty()) out["choices"] = std::string(p.choices);
    if (!p.description.empty()) out["description"] = std::string(p.description);
    return out;
  };
  if (name != nullptr) {
    const engine::ParameterSpec* p = engine::find_parameter(v.engine, v.version, *name);
    if (p == nullptr) {
      return fail(Code::kNotFound, "No configuration parameter '" + *name +
                                       "' exists for datastore " + v.datastore_name + " " + v.name +
                                       ".");
    }
    return Response::json(200, dump_json(view(*p)));
  }
  (void)c;
  Json out = Json::array();
  for (const engine::ParameterSpec& p : engine::parameter_catalog(v.engine, v.version)) {
    out.push_back(view(p));
  }
  return Response::json(200, dump_json({{"configuration-parameters", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::list_parameters_by_version(Call& c) {
  VersionRow v;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(v, version_by_id(tx, c.param(1)));
    return ok();
  }));
  return parameters_response(c, v, nullptr);
}

Result<Response> DatabaseService::Impl::show_parameter_by_version(Call& c) {
  VersionRow v;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(v, version_by_id(tx, c.param(1)));
    return ok();
  }));
  return parameters_response(c, v, &c.param(2));
}

Result<Response> DatabaseService::Impl::list_parameters(Call& c) {
  VersionRow v;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(v, find_version(tx, ds.first, c.param(2)));
    return ok();
  }));
  return parameters_response(c, v, nullptr);
}

Result<Response> DatabaseService::Impl::show_parameter(Call& c) {
  VersionRow v;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(v, find_version(tx, ds.first, c.param(2)));
    return ok();
  }));
  return parameters_response(c, v, &c.param(3));
}

// ---- groups ----

Result<std::optional<DatabaseService::Impl::GroupRow>> DatabaseService::Impl::find_group(
    store::Tx& tx, const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows, tx.query(std::string("SELECT ") + kGroupColumns + "WHERE c.id = ?", {id}));
  if (rows.empty()) return std::optional<GroupRow>();
  const store::Row& r = rows[0];
  GroupRow g{r.text(0),   r.text(1), r.text(2), r.text(3),
             r.text(4),   r.text(6), r.text(7), values_from_json(r.text(5)),
             VersionRow{}};
  g.version = {r.text(8),  r.text(9),  r.text(10), r.text(11),
               r.text(12), r.text(13), r.text(14), r.integer(15) != 0};
  return std::optional<GroupRow>(std::move(g));
}

// A group of the caller's project; another project's is as absent as a missing one.
Result<DatabaseService::Impl::GroupRow> DatabaseService::Impl::load_group(store::Tx& tx,
                                                                          const Call& c,
                                                                          const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<GroupRow> g, find_group(tx, id));
  if (!g || g->project_id != c.caller.project_id) {
    return fail(Code::kNotFound, "Configuration group '" + id + "' cannot be found.");
  }
  return std::move(*g);
}

// {"name": value, ...} with JSON values of the parameter's type -> normal-form text.
Result<std::map<std::string, std::string>> DatabaseService::Impl::parse_values(
    const Json& values, const VersionRow& v) {
  if (!values.is_object()) {
    return fail(bad("'values' must be an object of parameter names and values."));
  }
  if (values.size() > kMaxValues) {
    return fail(
        bad("A configuration group holds at most " + std::to_string(kMaxValues) + " values."));
  }
  std::map<std::string, std::string> out;
  for (auto& [name, value] : values.items()) {
    const engine::ParameterSpec* spec = engine::find_parameter(v.engine, v.version, name);
    if (spec == nullptr) {
      return fail(bad("The configuration parameter '" + sanitize_utf8(name) +
                      "' is not supported by datastore " + v.datastore_name + " " + v.name + "."));
    }
    std::string text;
    if (value.is_boolean()) {
      text = value.get<bool>() ? "true" : "false";
    } else if (value.is_number_integer()) {
      text = value.is_number_unsigned() ? std::to_string(value.get<uint64_t>())
                                        : std::to_string(value.get<int64_t>());
    } else if (value.is_number_float()) {
      text = dump_json(value);
    } else if (value.is_string()) {
      text = value.get<std::string>();
    } else {
      return fail(bad("The value for configuration parameter '" + name +
                      "' must be a number, a string or a boolean."));
    }
    // A JSON string holding a number or a boolean is taken too (troveclient users write
    // {"work_mem": "8192"} as often as {"work_mem": 8192}); a boolean or a fraction where an
    // integer belongs is not.
    if (spec->type == engine::ParameterType::kInteger && value.is_boolean()) {
      return fail(bad("The value for configuration parameter '" + name +
                      "' must be an integer, not a boolean."));
    }
    CONCORD_ASSIGN_OR_RETURN(std::string normal, engine::normalize_parameter(*spec, text));
    out[name] = std::move(normal);
  }
  return out;
}

// Normal-form text back to JSON of the parameter's type, as Trove shows values.
Json DatabaseService::Impl::values_view(const std::map<std::string, std::string>& values,
                                        const VersionRow& v) {
  Json out = Json::object();
  for (const auto& [name, text] : values) {
    const engine::ParameterSpec* spec = engine::find_parameter(v.engine, v.version, name);
    if (spec == nullptr) {  // one of Concord's own (default_parameters): a size, or a name
      int64_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec == std::errc() && end == text.data() + text.size()) {
        out[name] = n;
      } else {
        out[name] = text;
      }
      continue;
    }
    switch (spec->type) {
      case engine::ParameterType::kInteger: out[name] = std::stoll(text); break;
      case engine::ParameterType::kFloat: out[name] = std::stod(text); break;
      case engine::ParameterType::kBoolean: out[name] = text == "on"; break;
      case engine::ParameterType::kString: out[name] = text; break;
    }
  }
  return out;
}

Json DatabaseService::Impl::group_view(const Call& c, const GroupRow& g, int64_t instance_count,
                                       bool detail) const {
  Json out = {{"id", g.id},
              {"name", g.name},
              {"description", g.description},
              {"datastore_version_id", g.version_id},
              {"datastore_name", g.version.datastore_name},
              {"datastore_version_name", g.version.name},
              {"datastore_version_number", g.version.version},
              {"created", g.created},
              {"updated", g.updated},
              {"links", links(c, "configurations", g.id)}};
  if (detail) {
    out["values"] = values_view(g.values, g.version);
    out["instance_count"] = instance_count;
  }
  return out;
}

Result<Response> DatabaseService::Impl::create_configuration(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(
      const Json in,
      body_member(c.req, "configuration", "The request body must be {\"configuration\": {...}}."));
  GroupRow g;
  g.id = new_uuid();
  g.project_id = c.caller.project_id;
  CONCORD_ASSIGN_OR_RETURN(g.name, checked_text(in, "name", kMaxGroupName, true));
  CONCORD_ASSIGN_OR_RETURN(g.description, checked_text(in, "description", kMaxDescription, false));
  auto ds = in.find("datastore");
  if (ds == in.end() || !ds->is_object() || !ds->contains("type") || !(*ds)["type"].is_string()) {
    return fail(
        bad("Please specify the datastore: {\"datastore\": {\"type\": ..., \"version\": "
            "...}}."));
  }
  std::optional<std::string> version_ref;
  if (auto v = ds->find("version"); v != ds->end() && !v->is_null()) {
    if (!v->is_string()) return fail(bad("The datastore 'version' must be a string."));
    version_ref = v->get<std::string>();
  }
  auto values = in.find("values");
  if (values == in.end()) return fail(bad("'values' is required (an object, may be empty)."));
  g.created = g.updated = trove_time(clock_.now());
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        g.version, find_version_or_default(tx, (*ds)["type"].get<std::string>(), version_ref));
    if (!g.version.active) {
      return fail(bad("Datastore version '" + g.version.name + "' is not active."));
    }
    g.version_id = g.version.id;
    CONCORD_ASSIGN_OR_RETURN(g.values, parse_values(*values, g.version));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO db_configurations (id, project_id, name, description, "
                           "datastore_version_id, values_json, created, updated) VALUES (?, ?, "
                           "?, ?, ?, ?, ?, ?)",
                           {g.id, g.project_id, g.name, g.description, g.version_id,
                            dump_json(g.values), g.created, g.updated}));
    (void)n;
    return ok();
  }));
  logger("database")
      ->info("configuration group {} created project={} datastore={} {} values={}", g.id,
             g.project_id, g.version.datastore_name, g.version.name, g.values.size());
  return Response::json(200, dump_json({{"configuration", group_view(c, g, 0, true)}}));
}

Result<Response> DatabaseService::Impl::list_configurations(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT id FROM db_configurations WHERE project_id = ? ORDER BY created, id",
                 {c.caller.project_id}));
    for (const store::Row& r : rows) {
      CONCORD_ASSIGN_OR_RETURN(std::optional<GroupRow> g, find_group(tx, r.text(0)));
      if (g) out.push_back(group_view(c, *g, 0, false));
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"configurations", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::show_configuration(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(GroupRow g, load_group(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows n,
        tx.query("SELECT COUNT(*) FROM db_instances WHERE configuration_id = ? AND deleting = 0",
                 {g.id}));
    out = group_view(c, g, n.empty() ? 0 : n[0].integer(0), true);
    return ok();
  }));
  return Response::json(200, dump_json({{"configuration", std::move(out)}}));
}

// Raises the revision of every instance the group is attached to (and flags a restart where a
// restart-required value changes); `synced` collects them for sync_server after the commit.
Status DatabaseService::Impl::rewrite_attached(
    store::Tx& tx, const GroupRow& before, const std::map<std::string, std::string>& after,
    std::vector<std::pair<std::string, int64_t>>& synced) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT id, state_revision, ram_mb FROM db_instances WHERE configuration_id = ? "
               "AND deleting = 0 ORDER BY id",
               {before.id}));
  const bool restart = restart_touched(before.version, before.values, after);
  for (const store::Row& r : rows) {
    if (Status fits = engine::check_parameters_fit(before.version.engine, after, r.integer(2));
        !fits) {
      return fail(bad(fits.error().message() + " (instance " + r.text(0) + ")"));
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE db_instances SET state_revision = state_revision + 1, restart_required = "
                "CASE WHEN ? = 1 THEN 1 ELSE restart_required END, updated = ? WHERE id = ?",
                {int64_t{restart ? 1 : 0}, trove_time(clock_.now()), r.text(0)}));
    (void)n;
    synced.emplace_back(r.text(0), r.integer(1) + 1);
  }
  return ok();
}

Result<Response> DatabaseService::Impl::replace_configuration(Call& c) {
  return update_configuration(c, false);
}

Result<Response> DatabaseService::Impl::merge_configuration(Call& c) {
  return update_configuration(c, true);
}

// PUT replaces the values (and name and description when given; 202); PATCH merges values in
// (200, as Trove answers each).
Result<Response> DatabaseService::Impl::update_configuration(Call& c, bool merge) {
  CONCORD_ASSIGN_OR_RETURN(
      const Json in,
      body_member(c.req, "configuration",
                  "The request body must be {\"configuration\": {\"values\": {...}}}."));
  auto values = in.find("values");
  if (values == in.end()) return fail(bad("'values' is required (an object)."));
  std::optional<std::string> name, description;
  if (!merge && in.contains("name") && !in["name"].is_null()) {
    CONCORD_ASSIGN_OR_RETURN(name, checked_text(in, "name", kMaxGroupName, true));
  }
  if (!merge && in.contains("description") && !in["description"].is_null()) {
    CONCORD_ASSIGN_OR_RETURN(description, checked_text(in, "description", kMaxDescription, false));
  }
  std::vector<std::pair<std::string, int64_t>> synced;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    synced.clear();
    CONCORD_ASSIGN_OR_RETURN(GroupRow g, load_group(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(auto parsed, parse_values(*values, g.version));
    std::map<std::string, std::string> next =
        merge ? g.values : std::map<std::string, std::string>{};
    for (auto& [k, v] : parsed) next[k] = v;
    if (next.size() > kMaxValues) {
      return fail(
          bad("A configuration group holds at most " + std::to_string(kMaxValues) + " values."));
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE db_configurations SET values_json = ?, name = ?, description = ?, "
                "updated = ? WHERE id = ?",
                {dump_json(next), name.value_or(g.name), description.value_or(g.description),
                 trove_time(clock_.now()), g.id}));
    (void)n;
    if (next != g.values) CONCORD_RETURN_IF_ERROR(rewrite_attached(tx, g, next, synced));
    return ok();
  }));
  for (const auto& [id, revision] : synced) {
    // The revision is in the store; a failed push is repaired by the next show (show_instance).
    if (Status s = sync_server(id); !s) {
      logger("database")
          ->warn("instance {}: pushing its desired state after a configuration change: {}", id,
                 s.error().to_string());
    }
  }
  // The answer waits for one of them (the wait follows one instance per call).
  if (!synced.empty()) {
    c.changed_instance = synced.front().first;
    c.changed_revision = synced.front().second;
  }
  return Response::empty(merge ? 200 : 202);
}

Result<Response> DatabaseService::Impl::delete_configuration(Call& c) {
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(GroupRow g, load_group(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows n,
        tx.query("SELECT COUNT(*) FROM db_instances WHERE configuration_id = ? AND deleting = 0",
                 {g.id}));
    if (!n.empty() && n[0].integer(0) > 0) {
      return fail(bad("Configuration group '" + g.id + "' is attached to " +
                      std::to_string(n[0].integer(0)) +
                      " instance(s); detach it before deleting it."));
    }
    CONCORD_ASSIGN_OR_RETURN(int64_t gone,
                             tx.exec("DELETE FROM db_configurations WHERE id = ?", {g.id}));
    (void)gone;
    return ok();
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::list_configuration_instances(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(GroupRow g, load_group(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT id, name FROM db_instances WHERE configuration_id = ? AND deleting = 0 "
                 "ORDER BY created, id",
                 {g.id}));
    for (const store::Row& r : rows) {
      out.push_back({{"id", r.text(0)}, {"name", r.text(1)}});
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"instances", std::move(out)}}));
}

// Trove's "default configuration" of an instance: what Concord sets for its flavor and volume,
// before any configuration group (whose values `GET /configurations/{id}` shows).
Result<Response> DatabaseService::Impl::show_instance_configuration(Call& c) {
  Json values = Json::object();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(VersionRow v, version_by_id(tx, inst.version_id));
    values = values_view(engine::default_parameters(v.engine, inst.ram_mb, inst.volume_gb), v);
    return ok();
  }));
  return Response::json(200, dump_json({{"instance", {{"configuration", std::move(values)}}}}));
}

// ---- instances ----

Status DatabaseService::Impl::parse_create_configuration(const Call& c, const Json& in,
                                                         InstanceRow& inst) {
  auto u = in.find("configuration");
  if (u == in.end() || u->is_null()) return ok();
  if (!u->is_string() || u->get<std::string>().empty()) {
    return fail(bad("'configuration' must be the id of a configuration group."));
  }
  const std::string id = u->get<std::string>();
  return store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(GroupRow g, load_group(tx, c, id));
    if (g.version_id != inst.version_id) {
      return fail(bad("Configuration group '" + id + "' is for datastore " +
                      g.version.datastore_name + " " + g.version.name +
                      ", not for the instance's " + inst.datastore + " " + inst.version + "."));
    }
    CONCORD_RETURN_IF_ERROR(engine::check_parameters_fit(inst.engine, g.values, inst.ram_mb));
    inst.configuration_id = g.id;
    return ok();
  });
}

Status DatabaseService::Impl::add_configuration_state(store::Tx& tx, const InstanceRow& inst,
                                                      engine::DesiredState& st) {
  if (inst.configuration_id.empty()) return ok();
  CONCORD_ASSIGN_OR_RETURN(std::optional<GroupRow> g, find_group(tx, inst.configuration_id));
  if (!g) return ok();  // deletion of an attached group is refused; nothing to add
  for (const auto& [k, v] : g->values) st.parameters[k] = v;
  return ok();
}

Result<int64_t> DatabaseService::Impl::set_instance_configuration(
    store::Tx& tx, const InstanceRow& inst, const std::optional<std::string>& group_id) {
  std::map<std::string, std::string> before, after;
  std::optional<GroupRow> current;
  if (!inst.configuration_id.empty()) {
    CONCORD_ASSIGN_OR_RETURN(current, find_group(tx, inst.configuration_id));
    if (current) before = current->values;
  }
  std::string next_id;
  if (group_id) {
    if (*group_id == inst.configuration_id) return int64_t{0};  // attached already
    if (!inst.configuration_id.empty()) {
      return fail(bad("Instance '" + inst.id + "' already has configuration group '" +
                      inst.configuration_id + "' attached; detach it first."));
    }
    CONCORD_ASSIGN_OR_RETURN(std::optional<GroupRow> g, find_group(tx, *group_id));
    // Only a group of the instance's own project (an admin acting on another project's
    // instance cannot bring a group across either).
    if (!g || g->project_id != inst.project_id) {
      return fail(Code::kNotFound, "Configuration group '" + *group_id + "' cannot be found.");
    }
    if (g->version_id != inst.version_id) {
      return fail(bad("Configuration group '" + *group_id + "' is for datastore " +
                      g->version.datastore_name + " " + g->version.name +
                      ", not for the instance's " + inst.datastore + " " + inst.version + "."));
    }
    CONCORD_RETURN_IF_ERROR(engine::check_parameters_fit(inst.engine, g->values, inst.ram_mb));
    after = g->values;
    next_id = g->id;
  } else if (inst.configuration_id.empty()) {
    return int64_t{0};  // nothing attached: detaching is a no-op
  }
  VersionRow v;
  CONCORD_ASSIGN_OR_RETURN(v, version_by_id(tx, inst.version_id));
  const bool restart = restart_touched(v, before, after);
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("UPDATE db_instances SET configuration_id = ?, state_revision = state_revision + 1, "
              "restart_required = CASE WHEN ? = 1 THEN 1 ELSE restart_required END, updated = ? "
              "WHERE id = ?",
              {next_id, int64_t{restart ? 1 : 0}, trove_time(clock_.now()), inst.id}));
  (void)n;
  logger("database")
      ->info("instance {}: configuration group {} restart_required={}", inst.id,
             next_id.empty() ? "detached" : next_id + " attached", restart);
  return inst.state_revision + 1;
}

Json DatabaseService::Impl::configuration_ref(const Call& c, const std::string& group_id) const {
  std::string name;
  Status read = store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows, tx.query("SELECT name FROM db_configurations WHERE id = ?", {group_id}));
    if (!rows.empty()) name = rows[0].text(0);
    return ok();
  });
  (void)read;  // the name is decoration; the id and links stand without it
  return {{"id", group_id}, {"name", name}, {"links", links(c, "configurations", group_id)}};
}

Status DatabaseService::Impl::clear_restart_required(const std::string& instance_id) {
  return store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE db_instances SET restart_required = 0 WHERE id = ?", {instance_id}));
    (void)n;
    return ok();
  });
}

}  // namespace concord::database::service

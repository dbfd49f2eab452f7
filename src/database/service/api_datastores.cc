// Trove API: datastores and their versions, and compute's flavors in Trove's shape.
#include "database/service/api_internal.h"

namespace concord::database::service {

Result<std::vector<VersionRow>> DatabaseService::Impl::versions_of(
    store::Tx& tx, const std::string& datastore_id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows, tx.query(std::string("SELECT ") + kVersionColumns +
                                     " FROM db_datastore_versions v JOIN db_datastores d ON d.id = "
                                     "v.datastore_id WHERE v.datastore_id = ? ORDER BY v.name",
                                 {datastore_id}));
  std::vector<VersionRow> out;
  for (const store::Row& r : rows) out.push_back(version_from(r));
  return out;
}

// By id or by name, as troveclient sends either.
Result<std::pair<std::string, std::string>> DatabaseService::Impl::find_datastore(
    store::Tx& tx, const std::string& ref) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT id, name, default_version_id FROM db_datastores WHERE id = ? OR name = ?",
               {ref, ref}));
  if (rows.empty()) {
    return fail(Code::kNotFound, "Datastore '" + ref + "' cannot be found.");
  }
  return std::make_pair(rows[0].text(0), rows[0].text(2));
}

Result<VersionRow> DatabaseService::Impl::find_version(store::Tx& tx,
                                                       const std::string& datastore_id,
                                                       const std::string& ref) {
  CONCORD_ASSIGN_OR_RETURN(std::vector<VersionRow> versions, versions_of(tx, datastore_id));
  for (const VersionRow& v : versions) {
    if (v.id == ref || v.name == ref) return v;
  }
  return fail(Code::kNotFound, "Datastore version '" + ref + "' cannot be found.");
}

Result<VersionRow> DatabaseService::Impl::find_version_or_default(
    store::Tx& tx, const std::string& datastore_ref, const std::optional<std::string>& ref) {
  CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, datastore_ref));
  if (!ref && ds.second.empty()) {
    return fail(bad("Default version for datastore '" + datastore_ref + "' not found."));
  }
  return find_version(tx, ds.first, ref.value_or(ds.second));
}

Json DatabaseService::Impl::version_view(const Call& c, const VersionRow& v, bool full) const {
  Json out = {{"id", v.id},
              {"name", v.name},
              {"links", links(c, "datastores/versions", v.id)},
              {"active", v.active},
              {"version", v.version}};
  if (full) {
    out["datastore"] = v.datastore_id;
    out["packages"] = v.packages;
    out["image"] = "";
  }
  return out;
}

Result<Json> DatabaseService::Impl::datastore_view(store::Tx& tx, const Call& c,
                                                   const std::string& id, const std::string& name,
                                                   const std::string& default_version) {
  CONCORD_ASSIGN_OR_RETURN(std::vector<VersionRow> versions, versions_of(tx, id));
  Json vs = Json::array();
  for (const VersionRow& v : versions) {
    if (v.active) vs.push_back(version_view(c, v, false));  // as Trove: inactive ones are hidden
  }
  return Json{{"id", id},
              {"name", name},
              {"links", links(c, "datastores", id)},
              {"default_version", default_version},
              {"versions", std::move(vs)}};
}

Result<Response> DatabaseService::Impl::list_datastores(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT id, name, default_version_id FROM db_datastores ORDER BY name"));
    for (const store::Row& r : rows) {
      CONCORD_ASSIGN_OR_RETURN(Json d, datastore_view(tx, c, r.text(0), r.text(1), r.text(2)));
      if (!d["versions"].empty()) out.push_back(std::move(d));  // nothing a tenant could use
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"datastores", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::show_datastore(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT name FROM db_datastores WHERE id = ?", {ds.first}));
    CONCORD_ASSIGN_OR_RETURN(out, datastore_view(tx, c, ds.first, rows.at(0).text(0), ds.second));
    return ok();
  }));
  return Response::json(200, dump_json({{"datastore", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::list_versions(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(std::vector<VersionRow> versions, versions_of(tx, ds.first));
    for (const VersionRow& v : versions) {
      if (v.active) out.push_back(version_view(c, v, true));
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"versions", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::show_version(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(VersionRow v, find_version(tx, ds.first, c.param(2)));
    out = version_view(c, v, true);
    return ok();
  }));
  return Response::json(200, dump_json({{"version", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::show_version_by_id(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(VersionRow v, version_by_id(tx, c.param(1)));
    out = version_view(c, v, true);
    return ok();
  }));
  return Response::json(200, dump_json({{"version", std::move(out)}}));
}

Json DatabaseService::Impl::flavor_view(const Call& c, const std::string& id,
                                        const std::string& name, int64_t vcpus, int64_t ram_mb,
                                        int64_t disk_gb, int64_t ephemeral_gb) const {
  const bool digits = !id.empty() && std::all_of(id.begin(), id.end(), [](char ch) {
    return std::isdigit(static_cast<unsigned char>(ch));
  }) && id.size() < 10;
  return {{"id", digits ? Json(std::stoll(id)) : Json(id)},
          {"str_id", id},
          {"name", name},
          {"ram", ram_mb},
          {"vcpus", vcpus},
          {"disk", disk_gb},
          {"ephemeral", ephemeral_gb},
          {"links", links(c, "flavors", id)}};
}

Result<Response> DatabaseService::Impl::list_flavors(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT id, name, vcpus, ram_mb, disk_gb, ephemeral_gb FROM compute_flavors "
                 "WHERE disabled = 0 AND (is_public = 1 OR id IN (SELECT flavor_id FROM "
                 "compute_flavor_access WHERE project_id = ?)) ORDER BY ram_mb, id",
                 {c.caller.project_id}));
    for (const store::Row& r : rows) {
      out.push_back(flavor_view(c, r.text(0), r.text(1), r.integer(2), r.integer(3), r.integer(4),
                                r.integer(5)));
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"flavors", std::move(out)}}));
}

Result<compute::FlavorSnapshot> DatabaseService::Impl::load_flavor(store::Tx& tx, const Call& c,
                                                                   const std::string& ref) {
  auto f = compute::load_flavor(tx, ref, c.caller.project_id, c.caller.is_admin());
  if (!f && f.error().code() == Code::kNotFound) {
    return fail(Code::kNotFound, "Flavor '" + ref + "' cannot be found.");
  }
  return f;
}

Result<Response> DatabaseService::Impl::show_flavor(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(compute::FlavorSnapshot f, load_flavor(tx, c, c.param(1)));
    out = flavor_view(c, f.id, f.name, f.vcpus, f.ram_mb, f.disk_gb, f.ephemeral_gb);
    return ok();
  }));
  return Response::json(200, dump_json({{"flavor", std::move(out)}}));
}

// ---- management API: datastore versions (admin) ----

namespace {

// Datastore and version names: what Trove's CLI shows and what a create names. Printable,
// no '/' (they appear in URLs), at most 64 characters.
Status check_catalog_name(const Json& value, const char* field) {
  const std::string what = std::string("'") + field + "'";
  if (!value.is_string()) return fail(bad(what + " must be a string."));
  const std::string& s = value.get_ref<const std::string&>();
  if (s.empty() || s.size() > 64) return fail(bad(what + " must be 1 to 64 characters."));
  for (unsigned char ch : s) {
    if (ch < 0x20 || ch == 0x7f || ch == '/') {
      return fail(bad(what + " may not hold control characters or '/'."));
    }
  }
  return ok();
}

// An engine's version number ("15", "10.11").
Status check_version_number(const Json& value) {
  if (!value.is_string()) return fail(bad("'version' must be a string."));
  const std::string& s = value.get_ref<const std::string&>();
  const bool fine = !s.empty() && s.size() <= 32 && std::all_of(s.begin(), s.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == '_';
  });
  if (!fine) {
    return fail(bad("'version' must be 1 to 32 letters, digits, '.', '-' or '_'."));
  }
  return ok();
}

Status check_manager(const Json& value) {
  if (!value.is_string() || !known_engine(value.get<std::string>())) {
    std::string names;
    for (std::string_view e : kEngineDrivers) names += (names.empty() ? "" : ", ") + std::string(e);
    return fail(
        bad("'datastore_manager' must name an engine driver of this cloud: " + names + "."));
  }
  return ok();
}

Result<bool> bool_field(const Json& obj, const char* field, bool fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return fail(bad(std::string("'") + field + "' must be true or false."));
  return it->get<bool>();
}

// Trove keeps packages as one comma-separated text; clients send a list or that text.
Result<std::optional<std::string>> packages_field(const Json& obj) {
  auto it = obj.find("packages");
  if (it == obj.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (!it->is_array()) return fail(bad("'packages' must be a list of names."));
  std::string joined;
  for (const Json& p : *it) {
    if (!p.is_string()) return fail(bad("'packages' must be a list of names."));
    joined += (joined.empty() ? "" : ",") + p.get<std::string>();
  }
  if (joined.size() > 1024) return fail(bad("'packages' is longer than 1024 characters."));
  return std::optional<std::string>(joined);
}

// Accepted for the clients' sake and not kept: engines run from the hosts' packages, so there
// is no guest image to name.
Status check_image_fields(const Json& obj) {
  if (auto it = obj.find("image"); it != obj.end() && !it->is_null() && !it->is_string()) {
    return fail(bad("'image' must be a string."));
  }
  if (auto it = obj.find("image_tags"); it != obj.end() && !it->is_null()) {
    const bool list = it->is_array() && std::all_of(it->begin(), it->end(),
                                                    [](const Json& t) { return t.is_string(); });
    if (!list) return fail(bad("'image_tags' must be a list of strings."));
  }
  return ok();
}

Result<bool> version_name_taken(store::Tx& tx, const std::string& datastore_id,
                                const std::string& name) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT 1 FROM db_datastore_versions WHERE datastore_id = ? AND name = ?",
               {datastore_id, name}));
  return !rows.empty();
}

}  // namespace

Json DatabaseService::Impl::mgmt_version_view(const VersionRow& v, bool is_default) {
  Json packages = Json::array();
  for (size_t at = 0; at < v.packages.size();) {
    size_t comma = v.packages.find(',', at);
    if (comma == std::string::npos) comma = v.packages.size();
    packages.push_back(v.packages.substr(at, comma - at));
    at = comma + 1;
  }
  return {{"id", v.id},
          {"name", v.name},
          {"datastore_id", v.datastore_id},
          {"datastore_name", v.datastore_name},
          {"datastore_manager", v.engine},
          {"image", ""},
          {"image_tags", Json::array()},
          {"packages", std::move(packages)},
          {"active", v.active},
          {"default", is_default},
          {"version", v.version}};
}

Result<Response> DatabaseService::Impl::mgmt_list_versions(Call& c) {
  (void)c;
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query(std::string("SELECT ") + kVersionColumns +
                                      ", CASE WHEN d.default_version_id = v.id THEN 1 ELSE 0 END "
                                      "FROM db_datastore_versions v "
                                      "JOIN db_datastores d "
                                      "ON d.id = v.datastore_id ORDER BY d.name, v.name"));
    for (const store::Row& r : rows) {
      out.push_back(mgmt_version_view(version_from(r), r.integer(8) != 0));
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"versions", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::mgmt_show_version(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(VersionRow v, version_by_id(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows d,
        tx.query("SELECT default_version_id FROM db_datastores WHERE id = ?", {v.datastore_id}));
    out = mgmt_version_view(v, !d.empty() && d[0].text(0) == v.id);
    return ok();
  }));
  return Response::json(200, dump_json({{"version", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::mgmt_create_version(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(
      const Json in,
      body_member(c.req, "version", "The request body must be {\"version\": {...}}."));
  for (const char* field : {"name", "datastore_name"}) {
    if (!in.contains(field)) return fail(bad(std::string("'") + field + "' is required."));
    CONCORD_RETURN_IF_ERROR(check_catalog_name(in[field], field));
  }
  if (!in.contains("datastore_manager")) return fail(bad("'datastore_manager' is required."));
  CONCORD_RETURN_IF_ERROR(check_manager(in["datastore_manager"]));
  CONCORD_RETURN_IF_ERROR(check_image_fields(in));
  const std::string name = in["name"], datastore = in["datastore_name"];
  const std::string engine = in["datastore_manager"];
  std::string number = name;
  if (auto it = in.find("version"); it != in.end() && !it->is_null()) {
    CONCORD_RETURN_IF_ERROR(check_version_number(*it));
    number = it->get<std::string>();
  } else {
    CONCORD_RETURN_IF_ERROR(check_version_number(Json(name)));
  }
  CONCORD_ASSIGN_OR_RETURN(bool active, bool_field(in, "active", true));
  CONCORD_ASSIGN_OR_RETURN(bool make_default, bool_field(in, "default", false));
  CONCORD_ASSIGN_OR_RETURN(std::optional<std::string> packages, packages_field(in));
  const std::string id = new_uuid();
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    // Two admins adding the same datastore at once: one creates it, the other finds it.
    CONCORD_RETURN_IF_ERROR(tx.serialize());
    CONCORD_ASSIGN_OR_RETURN(store::Rows ds,
                             tx.query("SELECT id FROM db_datastores WHERE name = ?", {datastore}));
    std::string ds_id;
    if (ds.empty()) {
      ds_id = new_uuid();
      CONCORD_RETURN_IF_ERROR(
          tx.exec("INSERT INTO db_datastores (id, name, default_version_id) VALUES (?, ?, '')",
                  {ds_id, datastore}));
    } else {
      ds_id = ds[0].text(0);
      CONCORD_ASSIGN_OR_RETURN(bool taken, version_name_taken(tx, ds_id, name));
      if (taken) {
        return fail(bad("A datastore version with the name '" + name + "' already exists."));
      }
    }
    CONCORD_RETURN_IF_ERROR(tx.exec(
        "INSERT INTO db_datastore_versions (id, datastore_id, name, engine, version, active, "
        "packages) VALUES (?, ?, ?, ?, ?, ?, ?)",
        {id, ds_id, name, engine, number, int64_t{active ? 1 : 0}, packages.value_or("")}));
    if (make_default) {
      CONCORD_RETURN_IF_ERROR(
          tx.exec("UPDATE db_datastores SET default_version_id = ? WHERE id = ?", {id, ds_id}));
    }
    return ok();
  }));
  logger("database")
      ->info("datastore version {} ({} {} on engine {}) added", id, datastore, name, engine);
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::mgmt_update_version(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json in, body_object(c.req));
  if (in.contains("name")) CONCORD_RETURN_IF_ERROR(check_catalog_name(in["name"], "name"));
  if (in.contains("datastore_manager"))
    CONCORD_RETURN_IF_ERROR(check_manager(in["datastore_manager"]));
  CONCORD_RETURN_IF_ERROR(check_image_fields(in));
  CONCORD_ASSIGN_OR_RETURN(std::optional<std::string> packages, packages_field(in));
  std::optional<bool> active, make_default;
  if (in.contains("active") && !in["active"].is_null()) {
    CONCORD_ASSIGN_OR_RETURN(bool a, bool_field(in, "active", true));
    active = a;
  }
  if (in.contains("default") && !in["default"].is_null()) {
    CONCORD_ASSIGN_OR_RETURN(bool d, bool_field(in, "default", false));
    make_default = d;
  }
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.serialize());
    CONCORD_ASSIGN_OR_RETURN(VersionRow v, version_by_id(tx, c.param(1)));
    if (in.contains("name") && in["name"] != v.name) {
      CONCORD_ASSIGN_OR_RETURN(bool taken, version_name_taken(tx, v.datastore_id, in["name"]));
      if (taken) {
        return fail(bad("A datastore version with the name '" + in["name"].get<std::string>() +
                        "' already exists."));
      }
      v.name = in["name"];
    }
    if (in.contains("datastore_manager")) v.engine = in["datastore_manager"];
    if (packages) v.packages = *packages;
    if (active) v.active = *active;
    CONCORD_RETURN_IF_ERROR(
        tx.exec("UPDATE db_datastore_versions SET name = ?, engine = ?, packages = ?, active = ? "
                "WHERE id = ?",
                {v.name, v.engine, v.packages, int64_t{v.active ? 1 : 0}, v.id}));
    if (make_default == true) {
      CONCORD_RETURN_IF_ERROR(tx.exec(
          "UPDATE db_datastores SET default_version_id = ? WHERE id = ?", {v.id, v.datastore_id}));
    } else if (make_default == false) {
      CONCORD_RETURN_IF_ERROR(
          tx.exec("UPDATE db_datastores SET default_version_id = '' WHERE id = ? AND "
                  "default_version_id = ?",
                  {v.datastore_id, v.id}));
    }
    return ok();
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::mgmt_delete_version(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(auto live_servers, servers());
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.serialize());
    CONCORD_ASSIGN_OR_RETURN(VersionRow v, version_by_id(tx, c.param(1)));
    // A deleted instance is history once its server is gone (create_instance purges the same
    // way); one still being torn down uses the version.
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows deleted,
        tx.query("SELECT id FROM db_instances WHERE datastore_version_id = ? AND deleting = 1",
                 {v.id}));
    for (const store::Row& r : deleted) {
      if (!live_servers.contains(r.text(0))) {
        CONCORD_RETURN_IF_ERROR(purge_instance_rows(tx, r.text(0)));
      }
    }
    for (auto [table, what] :
         {std::pair{"db_instances", "instance"}, std::pair{"db_backups", "backup"},
          std::pair{"db_configurations", "configuration"}}) {
      CONCORD_ASSIGN_OR_RETURN(store::Rows used,
                               tx.query(std::string("SELECT 1 FROM ") + table +
                                            " WHERE datastore_version_id = ? LIMIT 1",
                                        {v.id}));
      if (!used.empty()) {
        return fail(bad("Datastore version '" + v.name + "' is in use by at least one " + what +
                        "; deactivate it instead (active: false)."));
      }
    }
    CONCORD_RETURN_IF_ERROR(
        tx.exec("UPDATE db_datastores SET default_version_id = '' WHERE id = ? AND "
                "default_version_id = ?",
                {v.datastore_id, v.id}));
    CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM db_datastore_versions WHERE id = ?", {v.id}));
    return ok();
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::delete_datastore(Call& c) {
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.serialize());
    CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows versions,
        tx.query("SELECT 1 FROM db_datastore_versions WHERE datastore_id = ? LIMIT 1", {ds.first}));
    if (!versions.empty()) {
      return fail(bad("Datastore '" + c.param(1) + "' still has versions; delete them first."));
    }
    CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM db_datastores WHERE id = ?", {ds.first}));
    return ok();
  }));
  return Response::empty(202);
}

}  // namespace concord::database::service

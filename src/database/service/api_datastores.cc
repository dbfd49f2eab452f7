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
  for (const VersionRow& v : versions) vs.push_back(version_view(c, v, false));
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
      out.push_back(std::move(d));
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
    for (const VersionRow& v : versions) out.push_back(version_view(c, v, true));
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
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string("SELECT ") + kVersionColumns +
                     " FROM db_datastore_versions v JOIN db_datastores d ON d.id = "
                     "v.datastore_id WHERE v.id = ?",
                 {c.param(1)}));
    if (rows.empty()) {
      return fail(Code::kNotFound, "Datastore version '" + c.param(1) + "' cannot be found.");
    }
    out = version_view(c, version_from(rows[0]), true);
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

}  // namespace concord::database::service

// Trove's quotas (docs/design/database.md, "Quotas"): per project, how many instances, how
// many GB of volumes, how many backups and how many MB of RAM it may hold; checked in the write
// that adds them, so two creates racing for the last instance cannot both get it. The
// /mgmt/quotas routes take a project id that identity must know (404 otherwise).
#include <algorithm>
#include <iterator>

#include "database/service/api_internal.h"

namespace concord::database::service {

namespace {

// Trove's resource names, in its order.
constexpr const char* kResources[] = {"instances", "ram", "volumes", "backups"};

// The path's project must be one identity holds (a domain is not one): otherwise an admin's
// mistyped id (or a project's name) would be shown the defaults as if they were its quotas, or
// given limits that bind no project. Trove's 404 itemNotFound.
Status require_project(const identity::IdentityService& identity, const std::string& project) {
  CONCORD_ASSIGN_OR_RETURN(const bool exists, identity.project_exists(project));
  if (!exists) return fail(Code::kNotFound, "Project '" + project + "' cannot be found.");
  return ok();
}

}  // namespace

void DatabaseService::Impl::add_quota_routes() {
  const std::string r = "project_reader";
  add(Method::kGet, "/limits", &Impl::show_limits, r);
  add(Method::kGet, "/mgmt/quotas/{project}", &Impl::show_quotas, r);
  add(Method::kPut, "/mgmt/quotas/{project}", &Impl::update_quotas, "admin");
}

Result<std::map<std::string, int64_t>> DatabaseService::Impl::quota_limits(
    store::Tx& tx, const std::string& project) {
  std::map<std::string, int64_t> out = {{"instances", options_.quota_instances},
                                        {"ram", options_.quota_ram_mb},
                                        {"volumes", options_.quota_volumes_gb},
                                        {"backups", options_.quota_backups}};
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT resource, hard_limit FROM db_quotas WHERE project_id = ?", {project}));
  for (const store::Row& row : rows) out[row.text(0)] = row.integer(1);
  return out;
}

// An HA instance holds two engines, each with the flavor's RAM and the volume.
Result<std::map<std::string, int64_t>> DatabaseService::Impl::quota_usage(
    store::Tx& tx, const std::string& project) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows inst,
                           tx.query("SELECT COUNT(*), COALESCE(SUM(ram_mb * (1 + ha)), 0), "
                                    "COALESCE(SUM(volume_gb * (1 + ha)), 0) FROM db_instances "
                                    "WHERE project_id = ? AND deleting = 0",
                                    {project}));
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows backups,
      tx.query("SELECT COUNT(*) FROM db_backups WHERE project_id = ? AND deleting = 0", {project}));
  return std::map<std::string, int64_t>{{"instances", inst[0].integer(0)},
                                        {"ram", inst[0].integer(1)},
                                        {"volumes", inst[0].integer(2)},
                                        {"backups", backups[0].integer(0)}};
}

Status DatabaseService::Impl::check_quota(store::Tx& tx, const std::string& project,
                                          const std::map<std::string, int64_t>& more) {
  CONCORD_ASSIGN_OR_RETURN(auto limits, quota_limits(tx, project));
  CONCORD_ASSIGN_OR_RETURN(auto used, quota_usage(tx, project));
  std::string overs;
  for (const char* resource : kResources) {
    auto m = more.find(resource);
    if (m == more.end() || m->second <= 0) continue;
    const int64_t limit = limits[resource];
    if (limit >= 0 && used[resource] + m->second > limit) {
      overs += std::string(overs.empty() ? "" : ", ") + "'" + resource + "'";
    }
  }
  if (overs.empty()) return ok();
  // Trove's QuotaExceeded (413, overLimit), its message listing the resources.
  return fail(Code::kResourceExhausted, "Quota exceeded for resources: [" + overs + "].");
}

Result<Response> DatabaseService::Impl::show_limits(Call& c) {
  std::map<std::string, int64_t> limits;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(limits, quota_limits(tx, c.caller.project_id));
    return ok();
  }));
  // Trove's shape: one ABSOLUTE entry with max_<resource>, then its rate limits (none here).
  Json absolute = {{"verb", "ABSOLUTE"}};
  for (const char* resource : kResources)
    absolute[std::string("max_") + resource] = limits[resource];
  return Response::json(200, dump_json({{"limits", Json::array({absolute})}}));
}

Result<Response> DatabaseService::Impl::show_quotas(Call& c) {
  const std::string project = c.param(1);
  if (project != c.caller.project_id && !c.caller.is_admin()) {
    return fail(Code::kPermissionDenied, "Only administrators may see another project's quotas.");
  }
  CONCORD_RETURN_IF_ERROR(require_project(identity_, project));
  std::map<std::string, int64_t> limits, used;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(limits, quota_limits(tx, project));
    CONCORD_ASSIGN_OR_RETURN(used, quota_usage(tx, project));
    return ok();
  }));
  Json out = Json::array();
  for (const char* resource : kResources) {
    out.push_back({{"resource", resource},
                   {"in_use", used[resource]},
                   {"reserved", 0},
                   {"limit", limits[resource]}});
  }
  return Response::json(200, dump_json({{"quotas", out}}));
}

Result<Response> DatabaseService::Impl::update_quotas(Call& c) {
  const std::string project = c.param(1);
  CONCORD_RETURN_IF_ERROR(require_project(identity_, project));
  CONCORD_ASSIGN_OR_RETURN(
      const Json in,
      body_member(c.req, "quotas", "The request body must be {\"quotas\": {\"instances\": 20}}."));
  if (!in.is_object() || in.empty()) {
    return fail(bad("'quotas' must name at least one of instances, ram, volumes, backups."));
  }
  std::map<std::string, int64_t> wanted;
  for (const auto& [resource, value] : in.items()) {
    if (value.is_null()) continue;  // as Trove: unchanged
    if (std::ranges::find(kResources, resource) == std::end(kResources)) {
      return fail(bad("Quota resource '" + sanitize_utf8(resource) +
                      "' is not known (instances, ram, volumes, backups)."));
    }
    if (!value.is_number_integer() || value.get<int64_t>() < -1 ||
        value.get<int64_t>() > (int64_t{1} << 40)) {
      return fail(
          bad("Quota limit for '" + resource + "' must be an integer of -1 (unlimited) or more."));
    }
    wanted[resource] = value.get<int64_t>();
  }
  std::map<std::string, int64_t> limits;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    for (const auto& [resource, limit] : wanted) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("DELETE FROM db_quotas WHERE project_id = ? AND resource = ?",
                             {project, resource}));
      CONCORD_ASSIGN_OR_RETURN(
          n, tx.exec("INSERT INTO db_quotas (project_id, resource, hard_limit) VALUES (?, ?, ?)",
                     {project, resource, limit}));
      (void)n;
    }
    CONCORD_ASSIGN_OR_RETURN(limits, quota_limits(tx, project));
    return ok();
  }));
  Json out = Json::object();
  for (const auto& [resource, limit] : wanted) out[resource] = limits[resource];
  logger("database")->info("quotas of project {} set: {}", project, dump_json(out));
  return Response::json(200, dump_json({{"quotas", out}}));
}

}  // namespace concord::database::service

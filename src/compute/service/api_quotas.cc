// Quotas (quota.h) and their APIs: /limits, os-quota-sets, os-quota-class-sets.
//
// Limits resolve in three layers: built-in defaults, then class "default" rows, then the
// project's rows (and, for display only, a user's rows on top: Nova's per-user quotas, which
// Tempest sets and reads back). Usage is never stored: it is counted from the rows that hold
// it (servers not deleted, keypairs, server groups) inside the caller's write transaction, made
// to run alone among writers first (store::Tx::serialize), so a check and the insert it guards
// cannot race, also between servers sharing a PostgreSQL store.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "compute/service/api.h"
#include "compute/service/quota.h"

namespace concord::compute {

[[nodiscard]] Result<QuotaLimits> user_limits(store::Tx& tx, std::string_view project_id,
                                              std::string_view user_id);

namespace {

// Every resource, in the order Nova lists them.
const std::vector<std::string>& all_resources() {
  static const std::vector<std::string> k = {"instances",
                                             "cores",
                                             "ram",
                                             "floating_ips",
                                             "fixed_ips",
                                             "metadata_items",
                                             "injected_files",
                                             "injected_file_content_bytes",
                                             "injected_file_path_bytes",
                                             "key_pairs",
                                             "security_groups",
                                             "security_group_rules",
                                             "server_groups",
                                             "server_group_members"};
  return k;
}

bool is_network_resource(std::string_view r) {
  return r == "floating_ips" || r == "fixed_ips" || r == "security_groups" ||
         r == "security_group_rules";
}
bool is_injected_resource(std::string_view r) {
  return r == "injected_files" || r == "injected_file_content_bytes" ||
         r == "injected_file_path_bytes";
}

// The resources os-quota-sets shows at a microversion (2.36 drops the nova-network ones, 2.57
// the file-injection ones).
std::vector<std::string> quota_set_resources(const ApiVersion& v) {
  std::vector<std::string> out;
  for (const std::string& r : all_resources()) {
    if (v.at_least(36) && is_network_resource(r)) continue;
    if (v.at_least(57) && is_injected_resource(r)) continue;
    out.push_back(r);
  }
  return out;
}

// os-quota-class-sets: before 2.50 without the server group resources; 2.50 drops the network
// ones instead, 2.57 also the file-injection ones.
std::vector<std::string> quota_class_resources(const ApiVersion& v) {
  std::vector<std::string> out;
  for (const std::string& r : all_resources()) {
    if (!v.at_least(50) && (r == "server_groups" || r == "server_group_members")) continue;
    if (v.at_least(50) && is_network_resource(r)) continue;
    if (v.at_least(57) && is_injected_resource(r)) continue;
    out.push_back(r);
  }
  return out;
}

Status overlay(store::Tx& tx, QuotaLimits& limits, std::string_view sql,
               std::initializer_list<store::Value> params) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(sql, params));
  for (const store::Row& r : rows) limits[r.text(0)] = r.integer(1);
  return ok();
}

Result<QuotaLimits> class_limits(store::Tx& tx, std::string_view class_name) {
  QuotaLimits limits = default_quota_limits();
  CONCORD_RETURN_IF_ERROR(overlay(tx, limits,
                                  "SELECT resource, hard_limit FROM compute_quota_classes WHERE "
                                  "class_name = ?",
                                  {std::string(class_name)}));
  return limits;
}

int64_t limit_of(const QuotaLimits& l, const std::string& r) {
  auto it = l.find(r);
  return it == l.end() ? -1 : it->second;
}

// Usage per resource as Nova's detail view reports it. key_pairs are per user, so they are
// only counted when a user is named.
Result<std::map<std::string, int64_t>> usage(store::Tx& tx, std::string_view project_id,
                                             std::string_view user_id) {
  std::map<std::string, int64_t> u;
  CONCORD_ASSIGN_OR_RETURN(ServerUsage s, server_usage(tx, project_id));
  u["instances"] = s.instances;
  u["cores"] = s.cores;
  u["ram"] = s.ram;
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows groups,
      tx.query("SELECT COUNT(*) FROM compute_server_groups WHERE project_id = ?",
               {std::string(project_id)}));
  u["server_groups"] = groups[0].integer(0);
  if (!user_id.empty()) {
    CONCORD_ASSIGN_OR_RETURN(store::Rows keys,
                             tx.query("SELECT COUNT(*) FROM compute_keypairs WHERE user_id = ?",
                                      {std::string(user_id)}));
    u["key_pairs"] = keys[0].integer(0);
  }
  return u;
}

Result<int64_t> quota_value(const std::string& resource, const Json& v) {
  auto bad = [&](const std::string& why) {
    return fail(Code::kInvalidArgument, "Invalid input for field/attribute " + resource +
                                            ". Value: " + dump_json(v) + ". " + why);
  };
  int64_t n = 0;
  if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else if (v.is_string()) {
    std::string s = v.get<std::string>();
    bool neg = !s.empty() && s[0] == '-';
    std::string digits = neg ? s.substr(1) : s;
    if (digits.empty() || digits.size() > 18 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return bad("'" + s + "' does not match '^-?[0-9]+$'");
    n = std::stoll(s);
  } else {
    return bad(dump_json(v) + " is not of type 'integer', 'string'");
  }
  if (n < -1) return bad(std::to_string(n) + " is less than the minimum of -1");
  if (n > 2147483647) return bad(std::to_string(n) + " is greater than the maximum of 2147483647");
  return n;
}

// Parses {"<wrapper>": {resource: value, ...}}; `force` is returned separately when allowed.
Result<std::map<std::string, int64_t>> parse_quota_body(const NovaApi::Call& call,
                                                        std::string_view wrapper,
                                                        const std::vector<std::string>& allowed,
                                                        bool allow_force, bool* force) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find(std::string(wrapper));
  if (body.size() != 1 || it == body.end() || !it->is_object())
    return fail(Code::kInvalidArgument,
                "Invalid input for field/attribute " + std::string(wrapper) + ". Value: " +
                    dump_json(body) + ". '" + std::string(wrapper) + "' is a required property");
  std::map<std::string, int64_t> values;
  for (auto& [k, v] : it->items()) {
    if (allow_force && k == "force") {
      std::optional<bool> b;
      if (v.is_boolean()) b = v.get<bool>();
      if (v.is_string()) {
        std::string s = v.get<std::string>();
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (s == "true" || s == "1" || s == "yes" || s == "t" || s == "on" || s == "y") b = true;
        if (s == "false" || s == "0" || s == "no" || s == "f" || s == "off" || s == "n") b = false;
      }
      if (!b)
        return fail(Code::kInvalidArgument, "Invalid input for field/attribute force. Value: " +
                                                dump_json(v) + ". is not of type 'boolean'");
      *force = *b;
      continue;
    }
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      return fail(Code::kInvalidArgument, "Invalid input for field/attribute " +
                                              std::string(wrapper) + ". Value: " + dump_json(*it) +
                                              ". Additional properties are not allowed ('" + k +
                                              "' was unexpected)");
    CONCORD_ASSIGN_OR_RETURN(values[k], quota_value(k, v));
  }
  return values;
}

Json limits_object(const QuotaLimits& l, const std::vector<std::string>& resources) {
  Json j = Json::object();
  for (const std::string& r : resources) j[r] = limit_of(l, r);
  return j;
}

// ---- handlers ----

Result<http::Response> get_limits(NovaApi& api, NovaApi::Call& call) {
  std::string project = call.caller.project_id;
  if (auto t = call.req.query_param("tenant_id"); t && *t != project) {
    CONCORD_RETURN_IF_ERROR(api.authorize(call, "admin", *t));
    project = *t;
  }
  QuotaLimits l;
  std::map<std::string, int64_t> used;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(l, project_limits(tx, project));
    CONCORD_ASSIGN_OR_RETURN(used, usage(tx, project, ""));
    return ok();
  }));
  const ApiVersion& v = call.version;
  Json a = {{"maxServerMeta", limit_of(l, "metadata_items")},
            {"maxTotalCores", limit_of(l, "cores")},
            {"maxTotalInstances", limit_of(l, "instances")},
            {"maxTotalKeypairs", limit_of(l, "key_pairs")},
            {"maxTotalRAMSize", limit_of(l, "ram")},
            {"maxServerGroups", limit_of(l, "server_groups")},
            {"maxServerGroupMembers", limit_of(l, "server_group_members")},
            {"totalCoresUsed", used["cores"]},
            {"totalInstancesUsed", used["instances"]},
            {"totalRAMUsed", used["ram"]},
            {"totalServerGroupsUsed", used["server_groups"]}};
  if (!v.at_least(36)) {
    a["maxSecurityGroups"] = limit_of(l, "security_groups");
    a["maxSecurityGroupRules"] = limit_of(l, "security_group_rules");
    a["maxTotalFloatingIps"] = limit_of(l, "floating_ips");
    a["totalFloatingIpsUsed"] = 0;
    a["totalSecurityGroupsUsed"] = 0;
  }
  if (!v.at_least(39)) a["maxImageMeta"] = limit_of(l, "metadata_items");
  if (!v.at_least(57)) {
    a["maxPersonality"] = limit_of(l, "injected_files");
    a["maxPersonalitySize"] = limit_of(l, "injected_file_content_bytes");
  }
  Json body = {{"limits", {{"absolute", a}, {"rate", Json::array()}}}};
  return http::Response::json(200, dump_json(body));
}

// The project in the path, authorised: its members and readers, or an administrator. A user
// other than the caller may only be named by an administrator.
Result<std::string> quota_user(NovaApi& api, const NovaApi::Call& call) {
  auto u = call.req.query_param("user_id");
  if (!u || u->empty()) return std::string();
  if (*u != call.caller.user_id)
    CONCORD_RETURN_IF_ERROR(api.authorize(call, "admin", call.param(0)));
  return *u;
}

Result<http::Response> show_quota_set(NovaApi& api, NovaApi::Call& call, bool detail) {
  std::string project(call.param(0));
  CONCORD_RETURN_IF_ERROR(api.authorize(call, "project_reader", project));
  CONCORD_ASSIGN_OR_RETURN(std::string user, quota_user(api, call));
  QuotaLimits l;
  std::map<std::string, int64_t> used;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    if (user.empty()) {
      CONCORD_ASSIGN_OR_RETURN(l, project_limits(tx, project));
    } else {
      CONCORD_ASSIGN_OR_RETURN(l, user_limits(tx, project, user));
    }
    if (detail) {
      CONCORD_ASSIGN_OR_RETURN(used, usage(tx, project, user));
    }
    return ok();
  }));
  Json q = {{"id", project}};
  for (const std::string& r : quota_set_resources(call.version)) {
    if (detail) {
      q[r] = {{"limit", limit_of(l, r)}, {"in_use", used[r]}, {"reserved", 0}};
    } else {
      q[r] = limit_of(l, r);
    }
  }
  return http::Response::json(200, dump_json(Json{{"quota_set", q}}));
}

Result<http::Response> show_defaults(NovaApi& api, NovaApi::Call& call) {
  std::string project(call.param(0));
  QuotaLimits l;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(l, class_limits(tx, "default"));
    return ok();
  }));
  Json q = limits_object(l, quota_set_resources(call.version));
  q["id"] = project;
  return http::Response::json(200, dump_json(Json{{"quota_set", q}}));
}

Result<http::Response> update_quota_set(NovaApi& api, NovaApi::Call& call) {
  std::string project(call.param(0));
  CONCORD_ASSIGN_OR_RETURN(std::string user, quota_user(api, call));
  bool force = false;
  CONCORD_ASSIGN_OR_RETURN(
      auto values,
      parse_quota_body(call, "quota_set", quota_set_resources(call.version), true, &force));
  QuotaLimits l;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    if (!force) {
      CONCORD_ASSIGN_OR_RETURN(auto used, usage(tx, project, user));
      for (const auto& [r, v] : values) {
        int64_t in_use = used.count(r) ? used[r] : 0;
        if (v != -1 && v < in_use)
          return fail(Code::kInvalidArgument,
                      "Quota limit " + std::to_string(v) + " for " + r +
                          " must be greater than or equal to already used and reserved " +
                          std::to_string(in_use) + ".");
      }
    }
    for (const auto& [r, v] : values) {
      if (user.empty()) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec("INSERT INTO compute_quotas (project_id, resource, hard_limit) "
                               "VALUES (?, ?, ?) ON CONFLICT (project_id, resource) DO UPDATE SET "
                               "hard_limit = excluded.hard_limit",
                               {project, r, v}));
        (void)n;
      } else {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec("INSERT INTO compute_user_quotas (project_id, user_id, resource, hard_limit) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (project_id, user_id, resource) DO UPDATE "
                    "SET hard_limit = excluded.hard_limit",
                    {project, user, r, v}));
        (void)n;
      }
    }
    if (user.empty()) {
      CONCORD_ASSIGN_OR_RETURN(l, project_limits(tx, project));
    } else {
      CONCORD_ASSIGN_OR_RETURN(l, user_limits(tx, project, user));
    }
    return ok();
  }));
  Json q = limits_object(l, quota_set_resources(call.version));
  return http::Response::json(200, dump_json(Json{{"quota_set", q}}));
}

Result<http::Response> delete_quota_set(NovaApi& api, NovaApi::Call& call) {
  std::string project(call.param(0));
  CONCORD_ASSIGN_OR_RETURN(std::string user, quota_user(api, call));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    if (user.empty()) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t a, tx.exec("DELETE FROM compute_quotas WHERE project_id = ?", {project}));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t b, tx.exec("DELETE FROM compute_user_quotas WHERE project_id = ?", {project}));
      (void)a;
      (void)b;
    } else {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t a, tx.exec("DELETE FROM compute_user_quotas WHERE project_id = ? AND user_id = ?",
                             {project, user}));
      (void)a;
    }
    return ok();
  }));
  return http::Response::empty(202);
}

Status check_class_name(std::string_view name) {
  if (name.empty() || name.size() > 255)
    return fail(Code::kInvalidArgument, "The quota class name must be 1 to 255 characters.");
  return ok();
}

Result<http::Response> show_quota_class(NovaApi& api, NovaApi::Call& call) {
  std::string name(call.param(0));
  CONCORD_RETURN_IF_ERROR(check_class_name(name));
  QuotaLimits l;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(l, class_limits(tx, name));
    return ok();
  }));
  Json q = limits_object(l, quota_class_resources(call.version));
  q["id"] = name;
  return http::Response::json(200, dump_json(Json{{"quota_class_set", q}}));
}

Result<http::Response> update_quota_class(NovaApi& api, NovaApi::Call& call) {
  std::string name(call.param(0));
  CONCORD_RETURN_IF_ERROR(check_class_name(name));
  // Writable: what the version shows, plus the server group resources at any version (Nova's
  // schema accepts them before 2.50 even though it does not show them).
  std::vector<std::string> writable = quota_set_resources(call.version);
  bool force = false;
  CONCORD_ASSIGN_OR_RETURN(auto values,
                           parse_quota_body(call, "quota_class_set", writable, false, &force));
  QuotaLimits l;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    for (const auto& [r, v] : values) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("INSERT INTO compute_quota_classes (class_name, resource, hard_limit) VALUES "
                  "(?, ?, ?) ON CONFLICT (class_name, resource) DO UPDATE SET hard_limit = "
                  "excluded.hard_limit",
                  {name, r, v}));
      (void)n;
    }
    CONCORD_ASSIGN_OR_RETURN(l, class_limits(tx, name));
    return ok();
  }));
  Json q = limits_object(l, quota_class_resources(call.version));
  return http::Response::json(200, dump_json(Json{{"quota_class_set", q}}));
}

std::string exceeded(std::string_view resource, int64_t requested, int64_t used, int64_t limit) {
  return "Quota exceeded for " + std::string(resource) + ": Requested " +
         std::to_string(requested) + ", but already used " + std::to_string(used) + " of " +
         std::to_string(limit) + " " + std::string(resource);
}

}  // namespace

const QuotaLimits& default_quota_limits() {
  // Nova's [quota] defaults.
  static const QuotaLimits k = {{"instances", 10},
                                {"cores", 20},
                                {"ram", 51200},
                                {"floating_ips", 10},
                                {"fixed_ips", -1},
                                {"metadata_items", 128},
                                {"injected_files", 5},
                                {"injected_file_content_bytes", 10240},
                                {"injected_file_path_bytes", 255},
                                {"key_pairs", 100},
                                {"security_groups", 10},
                                {"security_group_rules", 20},
                                {"server_groups", 10},
                                {"server_group_members", 10}};
  return k;
}

Result<QuotaLimits> project_limits(store::Tx& tx, std::string_view project_id) {
  CONCORD_ASSIGN_OR_RETURN(QuotaLimits l, class_limits(tx, "default"));
  CONCORD_RETURN_IF_ERROR(
      overlay(tx, l, "SELECT resource, hard_limit FROM compute_quotas WHERE project_id = ?",
              {std::string(project_id)}));
  return l;
}

Result<QuotaLimits> user_limits(store::Tx& tx, std::string_view project_id,
                                std::string_view user_id) {
  CONCORD_ASSIGN_OR_RETURN(QuotaLimits l, project_limits(tx, project_id));
  CONCORD_RETURN_IF_ERROR(overlay(tx, l,
                                  "SELECT resource, hard_limit FROM compute_user_quotas WHERE "
                                  "project_id = ? AND user_id = ?",
                                  {std::string(project_id), std::string(user_id)}));
  return l;
}

Result<ServerUsage> server_usage(store::Tx& tx, std::string_view project_id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT COUNT(*), CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), "
               "CAST(COALESCE(SUM(ram_mb), 0) AS BIGINT) FROM compute_servers WHERE "
               "project_id = ? AND deleted = 0",
               {std::string(project_id)}));
  ServerUsage u;
  u.instances = rows[0].integer(0);
  u.cores = rows[0].integer(1);
  u.ram = rows[0].integer(2);
  return u;
}

Result<int64_t> instances_allowed(store::Tx& tx, std::string_view project_id, int64_t min,
                                  int64_t wanted, int64_t cores, int64_t ram_mb) {
  CONCORD_RETURN_IF_ERROR(tx.serialize());  // the count must hold until the insert commits
  CONCORD_ASSIGN_OR_RETURN(QuotaLimits l, project_limits(tx, project_id));
  CONCORD_ASSIGN_OR_RETURN(ServerUsage u, server_usage(tx, project_id));
  struct Dim {
    const char* name;
    int64_t used, per;
  };
  const Dim dims[] = {
      {"instances", u.instances, 1}, {"cores", u.cores, cores}, {"ram", u.ram, ram_mb}};
  int64_t allowed = wanted;
  for (const Dim& d : dims) {
    int64_t limit = limit_of(l, d.name);
    if (limit < 0 || d.per <= 0) continue;
    int64_t headroom = std::max<int64_t>(0, limit - d.used);
    allowed = std::min(allowed, headroom / d.per);
  }
  if (allowed < min) {
    // Name the first resource that cannot take `min` more instances, as Nova's message does.
    for (const Dim& d : dims) {
      int64_t limit = limit_of(l, d.name);
      if (limit < 0 || d.per <= 0) continue;
      if (d.used + min * d.per > limit)
        return fail(Code::kResourceExhausted, exceeded(d.name, wanted * d.per, d.used, limit));
    }
  }
  return std::max<int64_t>(allowed, 0);
}

Status check_resize_quota(store::Tx& tx, std::string_view project_id, int64_t extra_cores,
                          int64_t extra_ram_mb) {
  CONCORD_RETURN_IF_ERROR(tx.serialize());
  CONCORD_ASSIGN_OR_RETURN(QuotaLimits l, project_limits(tx, project_id));
  CONCORD_ASSIGN_OR_RETURN(ServerUsage u, server_usage(tx, project_id));
  int64_t cores_limit = limit_of(l, "cores");
  if (extra_cores > 0 && cores_limit >= 0 && u.cores + extra_cores > cores_limit)
    return fail(Code::kResourceExhausted, exceeded("cores", extra_cores, u.cores, cores_limit));
  int64_t ram_limit = limit_of(l, "ram");
  if (extra_ram_mb > 0 && ram_limit >= 0 && u.ram + extra_ram_mb > ram_limit)
    return fail(Code::kResourceExhausted, exceeded("ram", extra_ram_mb, u.ram, ram_limit));
  return ok();
}

void add_quota_routes(NovaApi& api) {
  using M = http::Method;
  NovaApi* a = &api;
  api.add(M::kGet, "/v2.1/limits", "authenticated",
          [a](NovaApi::Call& c) { return get_limits(*a, c); });
  api.add(M::kGet, "/v2.1/os-quota-sets/{project_id}", "authenticated",
          [a](NovaApi::Call& c) { return show_quota_set(*a, c, false); });
  api.add(M::kGet, "/v2.1/os-quota-sets/{project_id}/detail", "authenticated",
          [a](NovaApi::Call& c) { return show_quota_set(*a, c, true); });
  api.add(M::kGet, "/v2.1/os-quota-sets/{project_id}/defaults", "authenticated",
          [a](NovaApi::Call& c) { return show_defaults(*a, c); });
  api.add(M::kPut, "/v2.1/os-quota-sets/{project_id}", "admin",
          [a](NovaApi::Call& c) { return update_quota_set(*a, c); });
  api.add(M::kDelete, "/v2.1/os-quota-sets/{project_id}", "admin",
          [a](NovaApi::Call& c) { return delete_quota_set(*a, c); });
  api.add(M::kGet, "/v2.1/os-quota-class-sets/{class_name}", "admin",
          [a](NovaApi::Call& c) { return show_quota_class(*a, c); });
  api.add(M::kPut, "/v2.1/os-quota-class-sets/{class_name}", "admin",
          [a](NovaApi::Call& c) { return update_quota_class(*a, c); });
}

}  // namespace concord::compute

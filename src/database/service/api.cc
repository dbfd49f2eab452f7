// The Trove v1.0 API (/database/v1.0/{project_id}/...): validate, authorize, record the desired
// state, hand it to the instance's service server, answer. See database_service.h.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "base/time_format.h"
#include "compute/driver/database_keys.h"
#include "compute/service/flavors.h"
#include "compute/service/service_servers.h"
#include "database/engine/credentials.h"
#include "database/engine/desired_state.h"
#include "database/service/database_service.h"
#include "database/service/names.h"
#include "usage/usage_ledger.h"

namespace concord::database::service {
namespace {

namespace keys = compute::driver::database_keys;
using http::Method;
using http::Request;
using http::Response;

constexpr std::string_view kResourceType = "database.instance";

std::string_view fault_name(int status) {
  switch (status) {
    case 400: return "badRequest";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "itemNotFound";
    case 405: return "badMethod";
    case 409: return "conflictingRequest";
    case 413: return "overLimit";
    case 415: return "badMediaType";
    case 422: return "unprocessableEntity";
    case 501: return "notImplemented";
    case 503: return "serviceUnavailable";
    default: return "instanceFault";
  }
}

int status_of(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kAborted: return 409;
    // Trove's "Instance is not currently available for an action to be performed".
    case Code::kFailedPrecondition: return 422;
    case Code::kResourceExhausted: return 413;
    case Code::kUnavailable: return 503;
    default: return 500;
  }
}

int64_t to_us(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// Trove's times: "2026-11-29T12:00:00" (no fraction, no zone).
std::string trove_time(SystemTime t) {
  return format_iso_naive(t).substr(0, 19);
}

// "12.000034" style exact decimal of a microsecond count.
std::string decimal_us(int64_t us) {
  std::string out = std::to_string(us / 1'000'000);
  int64_t frac = us % 1'000'000;
  if (frac == 0) return out;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%06lld", static_cast<long long>(frac));
  std::string f(buf);
  while (!f.empty() && f.back() == '0') f.pop_back();
  return out + "." + f;
}

std::string ip_text(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

std::optional<uint32_t> parse_ip(std::string_view s) {
  uint32_t out = 0;
  int parts = 0;
  size_t i = 0;
  while (parts < 4) {
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
    uint32_t v = 0;
    size_t digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      v = v * 10 + static_cast<uint32_t>(s[i] - '0');
      if (++digits > 3 || v > 255) return std::nullopt;
      ++i;
    }
    out = (out << 8) | v;
    ++parts;
    if (parts < 4) {
      if (i >= s.size() || s[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i != s.size()) return std::nullopt;
  return out;
}

Error bad(std::string message) {
  return Error(Code::kInvalidArgument, std::move(message));
}

struct VersionRow {
  std::string id, datastore_id, datastore_name, name, engine, version, packages;
  bool active = true;
};

constexpr const char* kVersionColumns =
    "v.id, v.datastore_id, d.name, v.name, v.engine, v.version, v.packages, v.active";

VersionRow version_from(const store::Row& r) {
  return {r.text(0), r.text(1), r.text(2), r.text(3),
          r.text(4), r.text(5), r.text(6), r.integer(7) != 0};
}

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
};

constexpr const char* kInstanceSelect =
    "SELECT i.id, i.project_id, i.name, i.datastore_version_id, i.flavor_id, i.vcpus, i.ram_mb, "
    "i.volume_gb, i.address, i.port, i.state_revision, i.task, i.created, i.updated, "
    "i.last_metered_us, i.deleting, d.name, v.name, v.engine FROM db_instances i "
    "JOIN db_datastore_versions v ON v.id = i.datastore_version_id "
    "JOIN db_datastores d ON d.id = v.datastore_id ";

InstanceRow instance_from(const store::Row& r) {
  InstanceRow i;
  i.id = r.text(0);
  i.project_id = r.text(1);
  i.name = r.text(2);
  i.version_id = r.text(3);
  i.flavor_id = r.text(4);
  i.vcpus = r.integer(5);
  i.ram_mb = r.integer(6);
  i.volume_gb = r.integer(7);
  i.address = r.text(8);
  i.port = r.integer(9);
  i.state_revision = r.integer(10);
  i.task = r.text(11);
  i.created = r.text(12);
  i.updated = r.text(13);
  i.last_metered_us = r.integer(14);
  i.deleting = r.integer(15) != 0;
  i.datastore = r.text(16);
  i.version = r.text(17);
  i.engine = r.text(18);
  return i;
}

// Closes the instance's open usage interval at `now_us` (resize, delete).
Status meter(store::Tx& tx, InstanceRow& inst, int64_t now_us, const std::string& region) {
  if (now_us <= inst.last_metered_us) return ok();
  const int64_t us = now_us - inst.last_metered_us;
  const SystemTime start{std::chrono::microseconds(inst.last_metered_us)};
  const SystemTime end{std::chrono::microseconds(now_us)};
  usage::UsageEvent e;
  e.project_id = inst.project_id;
  e.resource_id = inst.id;
  e.resource_type = std::string(kResourceType);
  e.start = start;
  e.end = end;
  e.region = region;
  e.event_id = inst.id + ":instance-seconds:" + std::to_string(inst.last_metered_us);
  e.kind = "database.instance-seconds:" + inst.flavor_id;
  e.quantity = decimal_us(us);
  e.unit = "s";
  CONCORD_ASSIGN_OR_RETURN(bool fresh, usage::append(tx, e));
  e.event_id = inst.id + ":storage-gb-seconds:" + std::to_string(inst.last_metered_us);
  e.kind = "database.storage-gb-seconds";
  e.quantity = decimal_us(us * inst.volume_gb);
  e.unit = "GB-s";
  CONCORD_ASSIGN_OR_RETURN(bool fresh2, usage::append(tx, e));
  (void)fresh;
  (void)fresh2;
  inst.last_metered_us = now_us;
  return ok();
}

Result<Json> body_object(const Request& req) {
  auto parsed = parse_json(req.body);
  if (!parsed || !parsed->is_object()) {
    return fail(Code::kInvalidArgument, "the request body must be a JSON object");
  }
  return std::move(*parsed);
}

// A required string member.
Result<std::string> string_field(const Json& obj, const char* name, std::string_view where) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    return fail(Code::kInvalidArgument,
                std::string("'") + name + "' is a required string in " + std::string(where));
  }
  return it->get<std::string>();
}

// "name" or "name@host" as troveclient puts a user into paths.
std::pair<std::string, std::optional<std::string>> split_user(const std::string& segment) {
  size_t at = segment.find('@');
  if (at == std::string::npos) return {segment, std::nullopt};
  return {segment.substr(0, at), segment.substr(at + 1)};
}

struct UserRow {
  std::string name, host, verifier;
  std::vector<std::string> databases;
};

std::vector<std::string> string_list(const std::string& json_text) {
  std::vector<std::string> out;
  auto j = parse_json(json_text);
  if (!j || !j->is_array()) return out;
  for (const Json& v : *j) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

Json database_refs(const std::vector<std::string>& names) {
  Json out = Json::array();
  for (const std::string& n : names) out.push_back({{"name", n}});
  return out;
}

}  // namespace

http::Response trove_error(int status, std::string_view message) {
  Json body = {
      {std::string(fault_name(status)), {{"message", sanitize_utf8(message)}, {"code", status}}}};
  return Response::json(status, dump_json(body));
}

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
  }

  void attach(std::string project, std::string user) {
    std::lock_guard lock(mu_);
    service_project_ = std::move(project);
    service_user_ = std::move(user);
  }
  std::shared_ptr<http::RouteTable> routes() const { return routes_; }

 private:
  struct Call {
    Request& req;
    identity::AuthContext caller;
    const std::string& param(size_t i) const { return req.params.at(i); }
  };
  using Handler = Result<Response> (Impl::*)(Call&);

  // ---- the request frame -----------------------------------------------------------------------

  void add(Method method, const std::string& pattern, Handler handler, std::string rule) {
    routes_->add(
        method, "/v1.0/{project_id}" + pattern,
        [this, handler, rule](Request& req) { return run(req, handler, rule); },
        "database:" + std::string(http::method_name(method)) + " /v1.0/{project_id}" + pattern);
  }

  Response error(const Request& req, const Error& e) {
    int status = status_of(e.code());
    if (status >= 500) {
      logger("database")
          ->error("{} {} failed: {} request_id={}", http::method_name(req.method),
                  sanitize_utf8(req.path), e.to_string(), req.request_id);
    }
    return trove_error(status, e.message());
  }

  Response run(Request& req, Handler handler, const std::string& rule) {
    try {
      std::string_view token = req.header("x-auth-token");
      if (token.empty()) {
        return trove_error(401, "Authentication required: send a token in X-Auth-Token.");
      }
      auto caller = identity_.authenticate(token);
      if (!caller) {
        if (caller.error().code() != Code::kUnauthenticated) return error(req, caller.error());
        return trove_error(401, "The token is not valid: " + caller.error().message());
      }
      for (const std::string& p : req.params) {
        if (p.find('\0') != std::string::npos || sanitize_utf8(p) != p || p.size() > 255) {
          return trove_error(404, "The resource could not be found.");
        }
      }
      // Trove's tenant check: the path's project must be the token's.
      if (caller->project_id.empty() || req.params.at(0) != caller->project_id) {
        return trove_error(
            403, "User with tenant id " + caller->project_id + " cannot access this resource.");
      }
      identity::Target target;
      target.project_id = caller->project_id;
      if (auto allowed = identity_.authorize(*caller, rule, target); !allowed) {
        if (allowed.error().code() == Code::kPermissionDenied) {
          return trove_error(403, rule == "project_member"
                                      ? "The member role on the project is needed to change "
                                        "database instances."
                                      : "The reader role on the project is needed to read "
                                        "database instances.");
        }
        return error(req, allowed.error());
      }
      Call call{req, std::move(*caller)};
      auto response = (this->*handler)(call);
      if (!response) return error(req, response.error());
      return std::move(*response);
    } catch (const std::exception& e) {
      logger("database")
          ->error("unexpected exception: {} {} request_id={} what={}",
                  http::method_name(req.method), sanitize_utf8(req.path), req.request_id, e.what());
      return trove_error(500, "Internal error; the request id is " + req.request_id + ".");
    }
  }

  std::string base(const Call& c) const {
    std::string origin = c.req.base_url;
    if (!options_.public_url.empty()) {
      origin = options_.public_url;
      while (origin.ends_with('/')) origin.pop_back();
      origin += options_.prefix;
    }
    return origin + "/v1.0/" + c.caller.project_id;
  }

  Json links(const Call& c, const std::string& collection, const std::string& id) const {
    const std::string href = base(c) + "/" + collection + "/" + id;
    return Json::array({{{"href", href}, {"rel", "self"}}, {{"href", href}, {"rel", "bookmark"}}});
  }

  std::pair<std::string, std::string> service_actor() {
    std::lock_guard lock(mu_);
    return {service_project_, service_user_};
  }

  // ---- versions (no token, as in Trove) ---------------------------------------------------------

  Json version_doc(const Request& req) const {
    return {{"id", "v1.0"},
            {"status", "CURRENT"},
            {"updated", "2012-08-01T00:00:00Z"},
            {"links", Json::array({{{"href", req.base_url + "/v1.0/"}, {"rel", "self"}}})}};
  }

  // ---- datastores -------------------------------------------------------------------------------

  Result<std::vector<VersionRow>> versions_of(store::Tx& tx, const std::string& datastore_id) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string("SELECT ") + kVersionColumns +
                     " FROM db_datastore_versions v JOIN db_datastores d ON d.id = "
                     "v.datastore_id WHERE v.datastore_id = ? ORDER BY v.name",
                 {datastore_id}));
    std::vector<VersionRow> out;
    for (const store::Row& r : rows) out.push_back(version_from(r));
    return out;
  }

  // By id or by name, as troveclient sends either.
  Result<std::pair<std::string, std::string>> find_datastore(store::Tx& tx,
                                                             const std::string& ref) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT id, name, default_version_id FROM db_datastores WHERE id = ? OR name = ?",
                 {ref, ref}));
    if (rows.empty()) {
      return fail(Code::kNotFound, "Datastore '" + ref + "' cannot be found.");
    }
    return std::make_pair(rows[0].text(0), rows[0].text(2));
  }

  Result<VersionRow> find_version(store::Tx& tx, const std::string& datastore_id,
                                  const std::string& ref) {
    CONCORD_ASSIGN_OR_RETURN(std::vector<VersionRow> versions, versions_of(tx, datastore_id));
    for (const VersionRow& v : versions) {
      if (v.id == ref || v.name == ref) return v;
    }
    return fail(Code::kNotFound, "Datastore version '" + ref + "' cannot be found.");
  }

  Json version_view(const Call& c, const VersionRow& v, bool full) const {
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

  Result<Json> datastore_view(store::Tx& tx, const Call& c, const std::string& id,
                              const std::string& name, const std::string& default_version) {
    CONCORD_ASSIGN_OR_RETURN(std::vector<VersionRow> versions, versions_of(tx, id));
    Json vs = Json::array();
    for (const VersionRow& v : versions) vs.push_back(version_view(c, v, false));
    return Json{{"id", id},
                {"name", name},
                {"links", links(c, "datastores", id)},
                {"default_version", default_version},
                {"versions", std::move(vs)}};
  }

  Result<Response> list_datastores(Call& c) {
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

  Result<Response> show_datastore(Call& c) {
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

  Result<Response> list_versions(Call& c) {
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

  Result<Response> show_version(Call& c) {
    Json out;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(auto ds, find_datastore(tx, c.param(1)));
      CONCORD_ASSIGN_OR_RETURN(VersionRow v, find_version(tx, ds.first, c.param(2)));
      out = version_view(c, v, true);
      return ok();
    }));
    return Response::json(200, dump_json({{"version", std::move(out)}}));
  }

  Result<Response> show_version_by_id(Call& c) {
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

  // ---- flavors (compute's, in Trove's shape) ----------------------------------------------------

  Json flavor_view(const Call& c, const std::string& id, const std::string& name, int64_t vcpus,
                   int64_t ram_mb, int64_t disk_gb, int64_t ephemeral_gb) const {
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

  Result<Response> list_flavors(Call& c) {
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

  Result<compute::FlavorSnapshot> load_flavor(store::Tx& tx, const Call& c,
                                              const std::string& ref) {
    auto f = compute::load_flavor(tx, ref, c.caller.project_id, c.caller.is_admin());
    if (!f && f.error().code() == Code::kNotFound) {
      return fail(Code::kNotFound, "Flavor '" + ref + "' cannot be found.");
    }
    return f;
  }

  Result<Response> show_flavor(Call& c) {
    Json out;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(compute::FlavorSnapshot f, load_flavor(tx, c, c.param(1)));
      out = flavor_view(c, f.id, f.name, f.vcpus, f.ram_mb, f.disk_gb, f.ephemeral_gb);
      return ok();
    }));
    return Response::json(200, dump_json({{"flavor", std::move(out)}}));
  }

  // ---- instances: state, server and view --------------------------------------------------------

  Result<InstanceRow> load_instance(store::Tx& tx, const Call& c, const std::string& id,
                                    bool allow_deleting = false) {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {id}));
    // Trove's rule: an admin reaches any project's instance through its own project's path
    // (operators and Tempest's admin client clean up tenants' instances that way).
    if (rows.empty() || (rows[0].text(1) != c.caller.project_id && !c.caller.is_admin()) ||
        (rows[0].integer(15) != 0 && !allow_deleting)) {
      return fail(Code::kNotFound, "Instance '" + id + "' cannot be found.");
    }
    return instance_from(rows[0]);
  }

  Result<engine::DesiredState> desired_state(store::Tx& tx, const InstanceRow& inst) {
    engine::DesiredState st;
    st.revision = inst.state_revision;
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows dbs,
        tx.query("SELECT name, character_set, collate_name FROM db_databases WHERE instance_id = ? "
                 "ORDER BY name",
                 {inst.id}));
    for (const store::Row& r : dbs) st.databases.push_back({r.text(0), r.text(1), r.text(2)});
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows users,
        tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE instance_id = ? "
                 "ORDER BY name",
                 {inst.id}));
    for (const store::Row& r : users) {
      st.users.push_back({r.text(0), r.text(1), r.text(2), string_list(r.text(3))});
    }
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows root,
        tx.query("SELECT verifier FROM db_root WHERE instance_id = ? AND enabled = 1", {inst.id}));
    if (!root.empty()) st.root = engine::RootSpec{root[0].text(0)};
    return st;
  }

  std::map<std::string, std::string> server_metadata(const InstanceRow& inst,
                                                     const engine::DesiredState& st) const {
    return {{std::string(keys::kInstance), inst.id},
            {std::string(keys::kProject), inst.project_id},
            {std::string(keys::kEngine), inst.engine},
            {std::string(keys::kVersion), inst.version},
            {std::string(keys::kAddress), inst.address},
            {std::string(keys::kPort), std::to_string(inst.port)},
            {std::string(keys::kVolumeGb), std::to_string(inst.volume_gb)},
            {std::string(keys::kState), engine::to_json(st)}};
  }

  // Creates the instance's server with the given metadata (idempotent per id).
  Status ensure_server(const InstanceRow& inst, const std::map<std::string, std::string>& md) {
    auto [project, user] = service_actor();
    if (project.empty()) {
      return fail(Code::kUnavailable, "the database service is starting; try again shortly");
    }
    compute::ServiceServerRequest req;
    req.id = inst.id;
    req.project_id = project;
    req.user_id = user;
    req.name = "database-" + inst.id;
    req.driver = "database";
    req.vcpus = inst.vcpus;
    req.ram_mb = inst.ram_mb;
    req.disk_gb = inst.volume_gb;
    req.metadata = md;
    req.record_unplaced = true;
    return compute::create_service_server(compute_, req);
  }

  // Writes the instance's whole desired state into its server (see the header comment).
  Status sync_server(const std::string& instance_id) {
    // Read and write as one step per process: two changes syncing at once could otherwise
    // write their states in the wrong order (a GET repairs what another replica's race leaves).
    std::lock_guard sync_lock(sync_mu_);
    InstanceRow inst;
    std::map<std::string, std::string> md;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {instance_id}));
      if (rows.empty()) return fail(Code::kNotFound, "instance " + instance_id + " is gone");
      inst = instance_from(rows[0]);
      CONCORD_ASSIGN_OR_RETURN(engine::DesiredState st, desired_state(tx, inst));
      md = server_metadata(inst, st);
      return ok();
    }));
    if (inst.deleting) return ok();
    Status st = compute::set_service_server_metadata(compute_, inst.id, md);
    if (!st && st.error().code() == Code::kNotFound) return ensure_server(inst, md);
    return st;
  }

  Result<std::map<std::string, compute::ServiceServer>> servers() {
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

  static int64_t state_revision_of(const compute::ServiceServer& s) {
    auto it = s.metadata.find(std::string(keys::kState));
    if (it == s.metadata.end()) return 0;
    auto st = engine::desired_state_from_json(it->second);
    return st ? st->revision : 0;
  }

  // Trove status and operating status (docs/design/database.md, "Instance state machine").
  static std::pair<std::string, std::string> status(const InstanceRow& inst,
                                                    const compute::ServiceServer* s) {
    if (inst.deleting) return {"SHUTDOWN", "SHUTDOWN"};
    if (!s) return {"BUILD", ""};
    if (s->status == "ERROR" || s->host_status == "DOWN") return {"ERROR", "ERROR"};
    if (s->status == "REBOOT" || s->status == "HARD_REBOOT") return {"REBOOT", ""};
    if (inst.task == "RESIZE" && !s->converged) return {"RESIZE", ""};
    if (s->status == "RESIZE" || s->status == "VERIFY_RESIZE") return {"RESIZE", ""};
    if (s->status == "BUILD") return {"BUILD", ""};
    if (s->status == "SHUTOFF") return {"SHUTDOWN", "SHUTDOWN"};
    if (s->status == "ACTIVE") {
      return {"ACTIVE", s->power_state == compute::power::kRunning ? "HEALTHY" : "SHUTDOWN"};
    }
    return {s->status, ""};
  }

  Json instance_view(const Call& c, const InstanceRow& inst, const compute::ServiceServer* s,
                     bool detail) const {
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
                {"access", {{"is_public", false}}},
                {"created", inst.created},
                {"updated", inst.updated}};
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

  // ---- instances: create ------------------------------------------------------------------------

  struct NewUser {
    std::string name, host, password;
    std::vector<std::string> databases;
  };

  Result<std::vector<engine::DatabaseSpec>> parse_databases(const Json& list,
                                                            const std::string& engine) {
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
        if (!it->is_string() || it->get<std::string>().size() > 64 ||
            !std::all_of(it->get<std::string>().begin(), it->get<std::string>().end(), [](char ch) {
              return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
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

  Result<std::vector<NewUser>> parse_users(const Json& list, const std::string& engine) {
    if (!list.is_array()) return fail(bad("'users' must be a list"));
    std::vector<NewUser> out;
    std::set<std::string> seen;
    for (const Json& u : list) {
      if (!u.is_object())
        return fail(bad("each user must be an object with 'name' and 'password'"));
      NewUser n;
      CONCORD_ASSIGN_OR_RETURN(n.name, string_field(u, "name", "a user"));
      CONCORD_RETURN_IF_ERROR(check_name(engine, NameKind::kUser, n.name));
      CONCORD_ASSIGN_OR_RETURN(n.password, string_field(u, "password", "user '" + n.name + "'"));
      CONCORD_RETURN_IF_ERROR(check_password(n.password));
      CONCORD_ASSIGN_OR_RETURN(n.host, parse_host(u));
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

  static Result<std::string> parse_host(const Json& u) {
    auto it = u.find("host");
    if (it == u.end() || it->is_null()) return std::string("%");
    if (!it->is_string() || it->get<std::string>().empty() || it->get<std::string>().size() > 60 ||
        !std::all_of(it->get<std::string>().begin(), it->get<std::string>().end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) || ch == '%' || ch == '.' ||
                 ch == '-' || ch == '_' || ch == ':';
        })) {
      return fail(bad("'host' must be up to 60 letters, digits, '%', '.', ':', '-' or '_'"));
    }
    return it->get<std::string>();
  }

  // [{"name": ...}, ...] -> names (deduplicated, in order).
  static Result<std::vector<std::string>> parse_refs(const Json& list) {
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

  int port_for(const std::string& engine) const {
    return engine == "mariadb" ? options_.port_mariadb : options_.port_postgresql;
  }

  Result<int64_t> volume_size(const Json& v) const {
    if (!v.is_number_integer()) return fail(bad("The volume 'size' must be an integer."));
    const int64_t size = v.get<int64_t>();
    if (size < 1 || size > options_.max_volume_gb) {
      return fail(bad("Volume size " + std::to_string(size) + " is out of range: it must be 1 to " +
                      std::to_string(options_.max_volume_gb) + " GB."));
    }
    return size;
  }

  Result<Response> create_instance(Call& c) {
    auto [service_project, service_user] = service_actor();
    (void)service_user;
    if (service_project.empty()) {
      return fail(Code::kUnavailable, "The database service is starting; try again shortly.");
    }
    CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
    auto it = body.find("instance");
    if (it == body.end() || !it->is_object()) {
      return fail(bad("The request body must be {\"instance\": {...}}."));
    }
    const Json& in = *it;
    for (const char* unsupported : {"replica_of", "restorePoint", "configuration", "modules"}) {
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
      CONCORD_ASSIGN_OR_RETURN(auto d, find_datastore(tx, ds_ref));
      CONCORD_ASSIGN_OR_RETURN(version, find_version(tx, d.first, version_ref.value_or(d.second)));
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

    // Addresses still held by servers being deleted are not free yet (their engine may still
    // listen there).
    CONCORD_ASSIGN_OR_RETURN(auto live_servers, servers());
    std::set<uint32_t> held;
    for (const auto& [id, s] : live_servers) {
      if (auto a = s.metadata.find(std::string(keys::kAddress)); a != s.metadata.end()) {
        if (auto ip = parse_ip(a->second)) held.insert(*ip);
      }
    }
    const SystemTime now = clock_.now();
    inst.created = inst.updated = trove_time(now);
    inst.last_metered_us = to_us(now);
    CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
      std::set<uint32_t> used = held;
      CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                               tx.query("SELECT id, address, deleting FROM db_instances"));
      for (const store::Row& r : rows) {
        // A deleted instance whose server is gone is history: its rows go now.
        if (r.integer(2) != 0 && !live_servers.contains(r.text(0))) {
          for (const char* table : {"db_databases", "db_users", "db_root"}) {
            CONCORD_ASSIGN_OR_RETURN(
                int64_t n, tx.exec(std::string("DELETE FROM ") + table + " WHERE instance_id = ?",
                                   {r.text(0)}));
            (void)n;
          }
          CONCORD_ASSIGN_OR_RETURN(int64_t n,
                                   tx.exec("DELETE FROM db_instances WHERE id = ?", {r.text(0)}));
          (void)n;
          continue;
        }
        if (auto ip = parse_ip(r.text(1))) used.insert(*ip);
      }
      std::optional<uint32_t> free;
      for (uint32_t a = pool_first_; a <= pool_last_; ++a) {
        if (!used.contains(a)) {
          free = a;
          break;
        }
        if (a == pool_last_) break;
      }
      if (!free) {
        return fail(Code::kResourceExhausted,
                    "No free address is left in the database address "
                    "pool " +
                        options_.address_pool + ".");
      }
      inst.address = ip_text(*free);
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("INSERT INTO db_instances (id, project_id, name, datastore_version_id, "
                  "flavor_id, vcpus, ram_mb, volume_gb, address, port, state_revision, task, "
                  "created, updated, last_metered_us, deleting) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                  "?, 1, '', ?, ?, ?, 0)",
                  {inst.id, inst.project_id, inst.name, inst.version_id, inst.flavor_id, inst.vcpus,
                   inst.ram_mb, inst.volume_gb, inst.address, inst.port, inst.created, inst.updated,
                   inst.last_metered_us}));
      (void)n;
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
      return ok();
    }));
    engine::DesiredState st;
    st.revision = inst.state_revision;
    st.databases = databases;
    st.users = user_specs;
    if (Status made = ensure_server(inst, server_metadata(inst, st)); !made) {
      // Nothing half-created: the rows go with the failed server.
      Status undo = store_.write([&](store::Tx& tx) -> Status {
        for (const char* table : {"db_databases", "db_users"}) {
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
        ->info("instance {} created project={} datastore={} {} address={}:{}", inst.id,
               inst.project_id, inst.datastore, inst.version, inst.address, inst.port);
    CONCORD_ASSIGN_OR_RETURN(auto now_servers, servers());
    auto s = now_servers.find(inst.id);
    return Response::json(
        200,
        dump_json({{"instance",
                    instance_view(c, inst, s == now_servers.end() ? nullptr : &s->second, true)}}));
  }

  // ---- instances: read, rename, delete ----------------------------------------------------------

  Result<Response> list_instances(Call& c) {
    std::vector<InstanceRow> rows;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      rows.clear();
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows r,
          tx.query(std::string(kInstanceSelect) + "WHERE i.project_id = ? ORDER BY i.created, i.id",
                   {c.caller.project_id}));
      for (const store::Row& row : r) rows.push_back(instance_from(row));
      return ok();
    }));
    CONCORD_ASSIGN_OR_RETURN(auto live, servers());
    Json out = Json::array();
    for (const InstanceRow& inst : rows) {
      auto s = live.find(inst.id);
      if (inst.deleting && s == live.end()) continue;  // gone
      out.push_back(instance_view(c, inst, s == live.end() ? nullptr : &s->second, false));
    }
    return Response::json(200, dump_json({{"instances", std::move(out)}}));
  }

  Result<Response> show_instance(Call& c) {
    InstanceRow inst;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(inst, load_instance(tx, c, c.param(1), true));
      return ok();
    }));
    CONCORD_ASSIGN_OR_RETURN(auto live, servers());
    auto s = live.find(inst.id);
    if (inst.deleting && s == live.end()) {
      return fail(Code::kNotFound, "Instance '" + inst.id + "' cannot be found.");
    }
    // Repair after a crash between a row write and its server write.
    if (!inst.deleting && (s == live.end() || state_revision_of(s->second) < inst.state_revision)) {
      if (Status synced = sync_server(inst.id); !synced) {
        logger("database")
            ->warn("instance {}: pushing its desired state: {}", inst.id,
                   synced.error().to_string());
      }
      CONCORD_ASSIGN_OR_RETURN(live, servers());
      s = live.find(inst.id);
    }
    return Response::json(
        200, dump_json({{"instance",
                         instance_view(c, inst, s == live.end() ? nullptr : &s->second, true)}}));
  }

  Result<Response> update_instance(Call& c) {
    CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
    auto it = body.find("instance");
    if (it == body.end() || !it->is_object()) {
      return fail(bad("The request body must be {\"instance\": {...}}."));
    }
    for (auto& [key, value] : it->items()) {
      if (key == "name") continue;
      if ((key == "configuration" || key == "detach_replica" || key == "replica_of" ||
           key == "slave_of") &&
          value.is_null()) {
        continue;
      }
      if (key == "access" && value.is_object()) continue;
      return fail(bad("Changing '" + sanitize_utf8(key) +
                      "' of an instance is not supported by this cloud yet."));
    }
    std::optional<std::string> name;
    if (auto n = it->find("name"); n != it->end()) {
      if (!n->is_string()) return fail(bad("The instance 'name' must be a string."));
      CONCORD_RETURN_IF_ERROR(check_instance_name(n->get<std::string>()));
      name = n->get<std::string>();
    }
    CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      if (!name) return ok();
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("UPDATE db_instances SET name = ?, updated = ? WHERE id = ?",
                                       {*name, trove_time(clock_.now()), inst.id}));
      (void)n;
      return ok();
    }));
    return Response::empty(202);
  }

  Result<Response> delete_instance(Call& c) {
    bool already = false;
    CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1), true));
      if (inst.deleting) {
        already = true;
        return ok();
      }
      CONCORD_RETURN_IF_ERROR(meter(tx, inst, to_us(clock_.now()), options_.region));
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("UPDATE db_instances SET deleting = 1, updated = ?, "
                                       "last_metered_us = ? WHERE id = ?",
                                       {trove_time(clock_.now()), inst.last_metered_us, inst.id}));
      (void)n;
      return ok();
    }));
    // Re-issued on a repeated delete too, so a crash right after the row write is finished.
    CONCORD_RETURN_IF_ERROR(compute::delete_service_server(compute_, c.param(1)));
    if (!already) logger("database")->info("instance {} deleting", c.param(1));
    return Response::empty(202);
  }

  // ---- instances: actions -----------------------------------------------------------------------

  Status require_active(const InstanceRow& inst) {
    CONCORD_ASSIGN_OR_RETURN(auto live, servers());
    auto s = live.find(inst.id);
    const std::string st = status(inst, s == live.end() ? nullptr : &s->second).first;
    if (st != "ACTIVE") {
      return fail(Code::kFailedPrecondition,
                  "Instance is not currently available for an action to be performed (status was " +
                      st + ").");
    }
    return ok();
  }

  Result<Response> action(Call& c) {
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
      CONCORD_RETURN_IF_ERROR(require_active(inst));
      CONCORD_RETURN_IF_ERROR(compute::reboot_service_server(compute_, inst.id));
      CONCORD_RETURN_IF_ERROR(set_task(inst.id, "RESTART", std::nullopt));
      return Response::empty(202);
    }
    if (name == "reset_status" && c.caller.is_admin()) {
      // Trove's admin-only unstick before a forced delete: forgets a pending action; the status
      // itself always follows the server (see status()), so there is nothing else to reset.
      // A non-admin is told the action is not offered (400), as before it existed.
      CONCORD_RETURN_IF_ERROR(set_task(inst.id, "", std::nullopt));
      return Response::empty(202);
    }
    if (name != "resize") {
      return fail(bad("Action '" + sanitize_utf8(name) +
                      "' is not supported (restart, resize with flavorRef or volume; "
                      "reset_status for admins)."));
    }
    if (!arg.is_object() || arg.size() != 1 ||
        (!arg.contains("flavorRef") && !arg.contains("volume"))) {
      return fail(
          bad("resize takes either {\"flavorRef\": ...} or {\"volume\": {\"size\": ...}}."));
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
    CONCORD_RETURN_IF_ERROR(require_active(inst));
    CONCORD_RETURN_IF_ERROR(
        compute::resize_service_server(compute_, inst.id, next.vcpus, next.ram_mb, next.volume_gb));
    CONCORD_RETURN_IF_ERROR(set_task(inst.id, "RESIZE", next));
    if (next.volume_gb != inst.volume_gb) CONCORD_RETURN_IF_ERROR(sync_server(inst.id));
    return Response::empty(202);
  }

  // Records a pending action (and, for a resize, the new size with the usage interval closed).
  Status set_task(const std::string& id, const std::string& task,
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
      return ok();
    });
  }

  // ---- databases, users, root: every change rewrites the desired state --------------------------

  // Runs `fn` on the instance's rows in one write transaction, raises the state revision, then
  // hands the new desired state to the server.
  Status change_state(const Call& c, const std::function<Status(store::Tx&, InstanceRow&)>& fn) {
    std::string id;
    CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      CONCORD_RETURN_IF_ERROR(fn(tx, inst));
      id = inst.id;
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("UPDATE db_instances SET state_revision = state_revision + 1, "
                             "task = '', updated = ? WHERE id = ?",
                             {trove_time(clock_.now()), inst.id}));
      (void)n;
      return ok();
    }));
    return sync_server(id);
  }

  static Result<std::set<std::string>> database_names(store::Tx& tx, const std::string& id) {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT name FROM db_databases WHERE instance_id = ?", {id}));
    std::set<std::string> out;
    for (const store::Row& r : rows) out.insert(r.text(0));
    return out;
  }

  static Result<std::optional<UserRow>> find_user(store::Tx& tx, const std::string& id,
                                                  const std::string& segment) {
    auto [name, host] = split_user(segment);
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE instance_id = ? "
                 "AND name = ?",
                 {id, name}));
    if (rows.empty() || (host && rows[0].text(1) != *host)) return std::optional<UserRow>();
    return std::optional<UserRow>(
        UserRow{rows[0].text(0), rows[0].text(1), rows[0].text(2), string_list(rows[0].text(3))});
  }

  static Result<UserRow> require_user(store::Tx& tx, const std::string& id,
                                      const std::string& segment) {
    CONCORD_ASSIGN_OR_RETURN(std::optional<UserRow> u, find_user(tx, id, segment));
    if (!u) return fail(Code::kNotFound, "User '" + segment + "' cannot be found on the instance.");
    return std::move(*u);
  }

  static Status write_grants(store::Tx& tx, const std::string& id, const UserRow& u) {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE db_users SET databases_json = ? WHERE instance_id = ? AND name = ?",
                {dump_json(u.databases), id, u.name}));
    (void)n;
    return ok();
  }

  Result<Response> list_databases(Call& c) {
    Json out = Json::array();
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      out = Json::array();
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query(
              "SELECT name, character_set, collate_name FROM db_databases WHERE instance_id = ? "
              "ORDER BY name",
              {inst.id}));
      for (const store::Row& r : rows) {
        Json d = {{"name", r.text(0)}};
        if (!r.text(1).empty()) d["character_set"] = r.text(1);
        if (!r.text(2).empty()) d["collate"] = r.text(2);
        out.push_back(std::move(d));
      }
      return ok();
    }));
    return Response::json(200, dump_json({{"databases", std::move(out)}}));
  }

  Result<Response> create_databases(Call& c) {
    CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
    if (!body.contains("databases")) {
      return fail(bad("The request body must be {\"databases\": [{\"name\": ...}]}."));
    }
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(auto dbs, parse_databases(body["databases"], inst.engine));
      if (dbs.empty()) return fail(bad("'databases' must name at least one database."));
      CONCORD_ASSIGN_OR_RETURN(std::set<std::string> existing, database_names(tx, inst.id));
      for (const engine::DatabaseSpec& d : dbs) {
        if (existing.contains(d.name)) {
          return fail(bad("A database with the name '" + d.name + "' already exists."));
        }
      }
      for (const engine::DatabaseSpec& d : dbs) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec("INSERT INTO db_databases (instance_id, name, character_set, "
                               "collate_name) VALUES (?, ?, ?, ?)",
                               {inst.id, d.name, d.character_set, d.collate}));
        (void)n;
      }
      return ok();
    }));
    return Response::empty(202);
  }

  Result<Response> delete_database(Call& c) {
    const std::string name = c.param(2);
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("DELETE FROM db_databases WHERE instance_id = ? AND name = ?", {inst.id, name}));
      if (n == 0) {
        return fail(Code::kNotFound, "Database '" + name + "' cannot be found on the instance.");
      }
      // Grants on a dropped database go with it.
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows users,
          tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE "
                   "instance_id = ?",
                   {inst.id}));
      for (const store::Row& r : users) {
        UserRow u{r.text(0), r.text(1), r.text(2), string_list(r.text(3))};
        auto gone = std::remove(u.databases.begin(), u.databases.end(), name);
        if (gone == u.databases.end()) continue;
        u.databases.erase(gone, u.databases.end());
        CONCORD_RETURN_IF_ERROR(write_grants(tx, inst.id, u));
      }
      return ok();
    }));
    return Response::empty(202);
  }

  static Json user_view(const UserRow& u) {
    return {{"name", u.name}, {"host", u.host}, {"databases", database_refs(u.databases)}};
  }

  Result<Response> list_users(Call& c) {
    Json out = Json::array();
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      out = Json::array();
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE "
                   "instance_id = ? ORDER BY name",
                   {inst.id}));
      for (const store::Row& r : rows) {
        out.push_back(user_view({r.text(0), r.text(1), "", string_list(r.text(3))}));
      }
      return ok();
    }));
    return Response::json(200, dump_json({{"users", std::move(out)}}));
  }

  Result<Response> create_users(Call& c) {
    CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
    if (!body.contains("users")) {
      return fail(
          bad("The request body must be {\"users\": [{\"name\": ..., \"password\": ...}]}."));
    }
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(std::vector<NewUser> users, parse_users(body["users"], inst.engine));
      if (users.empty()) return fail(bad("'users' must name at least one user."));
      CONCORD_ASSIGN_OR_RETURN(std::set<std::string> dbs, database_names(tx, inst.id));
      for (const NewUser& u : users) {
        CONCORD_ASSIGN_OR_RETURN(std::optional<UserRow> existing, find_user(tx, inst.id, u.name));
        if (existing) return fail(bad("A user with the name '" + u.name + "' already exists."));
        for (const std::string& d : u.databases) {
          if (!dbs.contains(d)) {
            return fail(Code::kNotFound, "Database '" + d + "' cannot be found on the instance.");
          }
        }
      }
      for (const NewUser& u : users) {
        CONCORD_ASSIGN_OR_RETURN(std::string verifier,
                                 engine::password_verifier(inst.engine, u.password));
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec("INSERT INTO db_users (instance_id, name, host, verifier, "
                               "databases_json) VALUES (?, ?, ?, ?, ?)",
                               {inst.id, u.name, u.host, verifier, dump_json(u.databases)}));
        (void)n;
      }
      return ok();
    }));
    return Response::empty(202);
  }

  Result<Response> show_user(Call& c) {
    Json out;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
      out = user_view(u);
      return ok();
    }));
    return Response::json(200, dump_json({{"user", std::move(out)}}));
  }

  Result<Response> update_user(Call& c) {
    CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
    auto it = body.find("user");
    if (it == body.end() || !it->is_object() || it->empty()) {
      return fail(
          bad("The request body must be {\"user\": {\"name\"|\"password\"|\"host\": ...}}."));
    }
    const Json& in = *it;
    for (auto& [key, value] : in.items()) {
      (void)value;
      if (key != "name" && key != "password" && key != "host") {
        return fail(
            bad("Unknown user attribute '" + sanitize_utf8(key) + "' (name, password, host)."));
      }
    }
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
      UserRow next = u;
      if (in.contains("name")) {
        CONCORD_ASSIGN_OR_RETURN(next.name, string_field(in, "name", "user"));
        CONCORD_RETURN_IF_ERROR(check_name(inst.engine, NameKind::kUser, next.name));
        if (next.name != u.name) {
          CONCORD_ASSIGN_OR_RETURN(std::optional<UserRow> clash, find_user(tx, inst.id, next.name));
          if (clash) {
            return fail(bad("A user with the name '" + next.name + "' already exists."));
          }
        }
      }
      if (in.contains("host")) {
        CONCORD_ASSIGN_OR_RETURN(next.host, parse_host(in));
      }
      if (in.contains("password")) {
        CONCORD_ASSIGN_OR_RETURN(std::string pw, string_field(in, "password", "user"));
        CONCORD_RETURN_IF_ERROR(check_password(pw));
        CONCORD_ASSIGN_OR_RETURN(next.verifier, engine::password_verifier(inst.engine, pw));
      }
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("UPDATE db_users SET name = ?, host = ?, verifier = ? WHERE "
                                       "instance_id = ? AND name = ?",
                                       {next.name, next.host, next.verifier, inst.id, u.name}));
      (void)n;
      return ok();
    }));
    return Response::empty(202);
  }

  // PUT /users: {"users": [{"name", "password"}]} changes several passwords at once.
  Result<Response> change_passwords(Call& c) {
    CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
    auto it = body.find("users");
    if (it == body.end() || !it->is_array() || it->empty()) {
      return fail(
          bad("The request body must be {\"users\": [{\"name\": ..., \"password\": ...}]}."));
    }
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      for (const Json& u : *it) {
        if (!u.is_object()) return fail(bad("each user must be an object"));
        CONCORD_ASSIGN_OR_RETURN(std::string name, string_field(u, "name", "a user"));
        CONCORD_ASSIGN_OR_RETURN(std::string pw, string_field(u, "password", "user " + name));
        CONCORD_RETURN_IF_ERROR(check_password(pw));
        CONCORD_ASSIGN_OR_RETURN(UserRow row, require_user(tx, inst.id, name));
        CONCORD_ASSIGN_OR_RETURN(std::string verifier, engine::password_verifier(inst.engine, pw));
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec("UPDATE db_users SET verifier = ? WHERE instance_id = ? AND name = ?",
                    {verifier, inst.id, row.name}));
        (void)n;
      }
      return ok();
    }));
    return Response::empty(202);
  }

  Result<Response> delete_user(Call& c) {
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("DELETE FROM db_users WHERE instance_id = ? AND name = ?", {inst.id, u.name}));
      (void)n;
      return ok();
    }));
    return Response::empty(202);
  }

  Result<Response> list_access(Call& c) {
    Json out;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
      out = database_refs(u.databases);
      return ok();
    }));
    return Response::json(200, dump_json({{"databases", std::move(out)}}));
  }

  Result<Response> grant_access(Call& c) {
    CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
    if (!body.contains("databases")) {
      return fail(bad("The request body must be {\"databases\": [{\"name\": ...}]}."));
    }
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> names, parse_refs(body["databases"]));
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
      CONCORD_ASSIGN_OR_RETURN(std::set<std::string> dbs, database_names(tx, inst.id));
      for (const std::string& d : names) {
        if (!dbs.contains(d)) {
          return fail(Code::kNotFound, "Database '" + d + "' cannot be found on the instance.");
        }
        if (std::find(u.databases.begin(), u.databases.end(), d) == u.databases.end()) {
          u.databases.push_back(d);
        }
      }
      return write_grants(tx, inst.id, u);
    }));
    return Response::empty(202);
  }

  Result<Response> revoke_access(Call& c) {
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
      auto gone = std::remove(u.databases.begin(), u.databases.end(), c.param(3));
      if (gone == u.databases.end()) {
        return fail(Code::kNotFound,
                    "User '" + u.name + "' has no access to database '" + c.param(3) + "'.");
      }
      u.databases.erase(gone, u.databases.end());
      return write_grants(tx, inst.id, u);
    }));
    return Response::empty(202);
  }

  Result<Response> enable_root(Call& c) {
    // Letters and digits only, so that no client mangles it in a shell or a URL.
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    const std::string bytes = random_bytes(24);
    std::string password;
    for (unsigned char b : bytes) password.push_back(kAlphabet[b % kAlphabet.size()]);
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(std::string verifier,
                               engine::password_verifier(inst.engine, password));
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("DELETE FROM db_root WHERE instance_id = ?", {inst.id}));
      CONCORD_ASSIGN_OR_RETURN(
          n, tx.exec("INSERT INTO db_root (instance_id, verifier, enabled, enabled_at) VALUES (?, "
                     "?, 1, ?)",
                     {inst.id, verifier, trove_time(clock_.now())}));
      (void)n;
      return ok();
    }));
    return Response::json(200, dump_json({{"user", {{"name", "root"}, {"password", password}}}}));
  }

  Result<Response> show_root(Call& c) {
    bool enabled = false;
    CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      // Trove answers whether root was ever enabled.
      CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                               tx.query("SELECT 1 FROM db_root WHERE instance_id = ?", {inst.id}));
      enabled = !rows.empty();
      return ok();
    }));
    return Response::json(200, dump_json({{"rootEnabled", enabled}}));
  }

  Result<Response> disable_root(Call& c) {
    CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("UPDATE db_root SET enabled = 0 WHERE instance_id = ? AND enabled = 1",
                             {inst.id}));
      if (n == 0) {
        return fail(Code::kNotFound, "Root is not enabled on instance '" + inst.id + "'.");
      }
      return ok();
    }));
    return Response::empty(204);
  }

  void build_routes() {
    routes_->add(
        Method::kGet, "",
        [this](Request& req) {
          return Response::json(200, dump_json({{"versions", Json::array({version_doc(req)})}}));
        },
        "database:GET /");
    routes_->add(
        Method::kGet, "/v1.0",
        [this](Request& req) {
          Json v = version_doc(req);
          v["links"][0]["href"] = req.base_url + "/";
          return Response::json(200, dump_json({{"version", v}}));
        },
        "database:GET /v1.0");
    const std::string r = "project_reader", m = "project_member";
    add(Method::kGet, "/datastores", &Impl::list_datastores, r);
    add(Method::kGet, "/datastores/versions/{version_id}", &Impl::show_version_by_id, r);
    add(Method::kGet, "/datastores/{datastore}", &Impl::show_datastore, r);
    add(Method::kGet, "/datastores/{datastore}/versions", &Impl::list_versions, r);
    add(Method::kGet, "/datastores/{datastore}/versions/{version}", &Impl::show_version, r);
    add(Method::kGet, "/flavors", &Impl::list_flavors, r);
    add(Method::kGet, "/flavors/{flavor_id}", &Impl::show_flavor, r);
    add(Method::kPost, "/instances", &Impl::create_instance, m);
    add(Method::kGet, "/instances", &Impl::list_instances, r);
    add(Method::kGet, "/instances/detail", &Impl::list_instances, r);
    add(Method::kGet, "/instances/{id}", &Impl::show_instance, r);
    add(Method::kPatch, "/instances/{id}", &Impl::update_instance, m);
    add(Method::kPut, "/instances/{id}", &Impl::update_instance, m);
    add(Method::kDelete, "/instances/{id}", &Impl::delete_instance, m);
    add(Method::kPost, "/instances/{id}/action", &Impl::action, m);
    add(Method::kPost, "/instances/{id}/root", &Impl::enable_root, m);
    add(Method::kGet, "/instances/{id}/root", &Impl::show_root, r);
    add(Method::kDelete, "/instances/{id}/root", &Impl::disable_root, m);
    add(Method::kGet, "/instances/{id}/databases", &Impl::list_databases, r);
    add(Method::kPost, "/instances/{id}/databases", &Impl::create_databases, m);
    add(Method::kDelete, "/instances/{id}/databases/{name}", &Impl::delete_database, m);
    add(Method::kGet, "/instances/{id}/users", &Impl::list_users, r);
    add(Method::kPost, "/instances/{id}/users", &Impl::create_users, m);
    add(Method::kPut, "/instances/{id}/users", &Impl::change_passwords, m);
    add(Method::kGet, "/instances/{id}/users/{user}", &Impl::show_user, r);
    add(Method::kPut, "/instances/{id}/users/{user}", &Impl::update_user, m);
    add(Method::kDelete, "/instances/{id}/users/{user}", &Impl::delete_user, m);
    add(Method::kGet, "/instances/{id}/users/{user}/databases", &Impl::list_access, r);
    add(Method::kPut, "/instances/{id}/users/{user}/databases", &Impl::grant_access, m);
    add(Method::kDelete, "/instances/{id}/users/{user}/databases/{name}", &Impl::revoke_access, m);
  }

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
};

Result<std::unique_ptr<DatabaseService>> DatabaseService::create(
    store::Store& store, const Clock& clock, identity::IdentityService& identity,
    compute::ComputeContext& compute, DatabaseOptions options) {
  const std::string& pool = options.address_pool;
  size_t slash = pool.find('/');
  std::optional<uint32_t> net = parse_ip(std::string_view(pool).substr(0, slash));
  int bits = -1;
  if (slash != std::string::npos && slash + 1 < pool.size() && pool.size() - slash <= 3) {
    bits = 0;
    for (char ch : pool.substr(slash + 1)) {
      if (!std::isdigit(static_cast<unsigned char>(ch))) bits = -1;
      if (bits >= 0) bits = bits * 10 + (ch - '0');
    }
  }
  if (!net || bits < 8 || bits > 30) {
    return fail(Code::kInvalidArgument,
                "database.address_pool must be an IPv4 CIDR from /8 to "
                "/30, such as 127.77.0.0/16 (got '" +
                    sanitize_utf8(pool) + "')");
  }
  const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  const uint32_t first = (*net & mask) + 1;         // not the network address
  const uint32_t last = (*net & mask) + ~mask - 1;  // not the broadcast address
  for (int port : {options.port_postgresql, options.port_mariadb}) {
    if (port < 1 || port > 65535) {
      return fail(Code::kInvalidArgument, "database ports must be 1 to 65535");
    }
  }
  if (options.max_volume_gb < 1) {
    return fail(Code::kInvalidArgument, "database.max_volume_gb must be at least 1");
  }
  auto impl =
      std::make_unique<Impl>(store, clock, identity, compute, std::move(options), first, last);
  return std::unique_ptr<DatabaseService>(new DatabaseService(std::move(impl)));
}

DatabaseService::DatabaseService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DatabaseService::~DatabaseService() = default;

void DatabaseService::attach_service_project(std::string project_id, std::string user_id) {
  impl_->attach(std::move(project_id), std::move(user_id));
}

std::shared_ptr<http::RouteTable> DatabaseService::routes() const {
  return impl_->routes();
}

}  // namespace concord::database::service

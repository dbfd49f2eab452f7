#include "identity/api.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/time_format.h"
#include "identity/json_input.h"
#include "identity/repository.h"

namespace concord::identity {

std::string Api::Call::link(std::string_view path) const {
  std::string out = req.base_url;
  out += "/v3/";
  out += path;
  return out;
}

Api::Api(Core& core) : core_(core), table_(std::make_shared<http::RouteTable>()) {}

Status Api::build() {
  add_discovery_routes();
  add_auth_routes();
  add_project_routes();
  add_user_routes();
  add_role_routes();
  add_catalog_routes();
  add_document_routes();
  add_domain_config_routes();
  add_endpoint_group_project_routes();
  if (!errors_.empty()) {
    std::string msg = "identity routes with unknown policy rules:";
    for (const std::string& e : errors_) msg += " " + e;
    return fail(Code::kInternal, msg);
  }
  return ok();
}

void Api::add(http::Method method, std::string pattern, std::string rule, Handler handler,
              TargetFn target) {
  const Rule* r = find_rule(rule);
  if (r == nullptr) {
    errors_.push_back(std::string(http::method_name(method)) + " " + pattern + " -> " + rule);
    return;
  }
  auto spec = std::make_shared<Spec>();
  spec->rule = rule;
  spec->check = r->check;
  spec->handler = std::move(handler);
  spec->target = std::move(target);
  for (size_t pos = pattern.find('{'); pos != std::string::npos; pos = pattern.find('{', pos)) {
    size_t end = pattern.find('}', pos);
    spec->param_names.push_back(pattern.substr(pos + 1, end - pos - 1));
    pos = end;
  }
  infos_.push_back({method, pattern, rule});
  table_->add(method, pattern, [this, spec](http::Request& req) { return run(req, *spec); });
}

namespace {

const char kAuthRequired[] = "The request you have made requires authentication.";
const char kUnexpected[] = "An unexpected error prevented the server from fulfilling your request.";

http::Response error_response(const http::Request& req, int status, std::string_view message) {
  http::Response r = http::keystone_style_error(status, message);
  if (status == 401) r.set_header("www-authenticate", "Keystone uri=\"" + req.base_url + "\"");
  return r;
}

http::Response error_from(const http::Request& req, const Error& e) {
  int status = http_status(e.code());
  if (status == 401) return error_response(req, 401, kAuthRequired);
  if (status >= 500) {
    logger("identity")
        ->error("request failed: {} {} request_id={} error={}", http::method_name(req.method),
                sanitize_utf8(req.path), req.request_id, e.to_string());
    return error_response(req, status,
                          status == 503 ? "The service is temporarily unavailable." : kUnexpected);
  }
  return error_response(req, status, e.message());
}

// Keystone's rule for request bodies: a body is parsed as JSON only when the Content-Type says
// JSON (application/json or application/*+json, any parameters such as charset) or is absent.
bool json_content_type(std::string_view content_type) {
  std::string mime(content_type.substr(0, content_type.find(';')));
  for (char& ch : mime) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  size_t b = mime.find_first_not_of(" \t");
  if (b == std::string::npos) return true;
  size_t e = mime.find_last_not_of(" \t");
  mime = mime.substr(b, e - b + 1);
  if (mime == "application/json") return true;
  return mime.starts_with("application/") && mime.ends_with("+json");
}

}  // namespace

http::Response Api::run(http::Request& req, const Spec& spec) {
  try {
    if (!req.body.empty() && !json_content_type(req.header("content-type"))) {
      return error_response(req, 400,
                            "Expecting to find application/json in Content-Type header. The "
                            "server could not comply with the request since it is either "
                            "malformed or otherwise incorrect. The client is assumed to be in "
                            "error.");
    }
    Call call{req, nullptr};
    AuthContext ctx;
    if (spec.check != Check::kPublic) {
      std::string_view token = req.header("x-auth-token");
      if (token.empty()) return error_response(req, 401, kAuthRequired);
      auto validated = core_.validate(token);
      if (!validated) {
        if (validated.error().code() != Code::kUnauthenticated) {
          return error_from(req, validated.error());
        }
        logger("identity")
            ->debug("rejected X-Auth-Token: {} request_id={}", validated.error().message(),
                    req.request_id);
        return error_response(req, 401, kAuthRequired);
      }
      ctx = std::move(*validated);
      call.caller = &ctx;
    }
    // Every stored id and name is valid UTF-8 without NUL bytes (they come from JSON or are
    // generated), so a path parameter that is not cannot name anything; and such bytes must
    // not reach the store, which rejects them (PostgreSQL) or cannot hold them.
    auto storable = [](const std::string& s) {
      return s.find('\0') == std::string::npos && sanitize_utf8(s) == s;
    };
    for (const std::string& p : req.params) {
      if (!storable(p)) return error_response(req, 404, "Could not find the requested resource.");
    }
    if (req.query.find('%') != std::string::npos) {
      for (const auto& [key, value] : req.query_params()) {
        if (!storable(key) || !storable(value)) {
          return error_response(req, 400,
                                "Query parameters must be valid UTF-8 without NUL characters.");
        }
      }
    }
    Target target;
    if (spec.target) {
      auto t = spec.target(call);
      if (!t) return error_from(req, t.error());
      target = std::move(*t);
    } else {
      for (size_t i = 0; i < spec.param_names.size() && i < req.params.size(); ++i) {
        const std::string& name = spec.param_names[i];
        if (name == "user_id") target.user_id = req.params[i];
        if (name == "project_id") target.project_id = req.params[i];
        if (name == "domain_id") target.domain_id = req.params[i];
      }
    }
    if (auto allowed = authorize(call.caller, spec.rule, target); !allowed) {
      return error_from(req, allowed.error());
    }
    auto response = spec.handler(call);
    if (!response) return error_from(req, response.error());
    return std::move(*response);
  } catch (const std::exception& e) {
    // nlohmann::json and the standard library throw; nothing may escape into the server.
    logger("identity")
        ->error("unexpected exception: {} {} request_id={} what={}", http::method_name(req.method),
                sanitize_utf8(req.path), req.request_id, e.what());
    return error_response(req, 500, kUnexpected);
  }
}

std::string Api::default_domain_for(const Call& c) const {
  if (c.caller != nullptr) {
    if (c.caller->scope == ScopeKind::kProject) return c.caller->project_domain_id;
    if (c.caller->scope == ScopeKind::kDomain) return c.caller->domain_id;
  }
  return std::string(kDefaultDomainId);
}

Result<Project> Api::load_domain(store::Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<Project> d, repo::get_project(tx, id));
  if (!d || !d->is_domain) return api::not_found("domain", id);
  return std::move(*d);
}

Result<Project> Api::load_project(store::Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, repo::get_project(tx, id));
  if (!p) return api::not_found("project", id);
  return std::move(*p);
}

// ---------------------------------------------------------------------------------------------
namespace api {

http::Response json(int status, const Json& body) {
  return http::Response::json(status, dump_json(body));
}

Json collection(const Api::Call& c, std::string_view key, Json items) {
  std::string self = c.req.base_url + c.req.path;
  if (!c.req.query.empty()) self += "?" + c.req.query;
  Json out = Json::object();
  out[std::string(key)] = std::move(items);
  out["links"] = {{"self", sanitize_utf8(self)}, {"previous", nullptr}, {"next", nullptr}};
  return out;
}

bool query_bool(std::string_view v) {
  std::string s(v);
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return !(s == "0" || s == "false" || s == "f" || s == "no" || s == "n" || s == "off");
}

std::optional<bool> bool_query(const http::Request& req, std::string_view name) {
  auto v = req.query_param(name);
  if (!v) return std::nullopt;
  return query_bool(*v);
}

std::unexpected<Error> not_found(std::string_view what, std::string_view id) {
  return fail(Code::kNotFound,
              "Could not find " + std::string(what) + ": " + sanitize_utf8(id) + ".");
}

std::unexpected<Error> conflict(std::string_view type, std::string_view details) {
  return fail(Code::kAlreadyExists, "Conflict occurred attempting to store " + std::string(type) +
                                        " - " + sanitize_utf8(details) + ".");
}

void merge_extra(Json& extra, const Json& body, std::initializer_list<std::string_view> reserved) {
  if (!extra.is_object()) extra = Json::object();
  for (auto it = body.begin(); it != body.end(); ++it) {
    bool skip = it.key() == "links" || it.key() == "id";
    for (std::string_view r : reserved) skip = skip || it.key() == r;
    if (skip) continue;
    extra[it.key()] = it.value();
  }
}

Result<std::vector<std::string>> tag_list(const Json& value, std::string_view field) {
  if (!value.is_array()) return input::invalid(field, "is not of type 'array'");
  if (value.size() > 80) return input::invalid(field, "has more than 80 items");
  std::vector<std::string> out;
  for (const Json& t : value) {
    if (!t.is_string()) return input::invalid(field, "items must be of type 'string'");
    std::string s = t.get<std::string>();
    size_t len = input::utf8_length(s);
    if (len < 1 || len > 255) return input::invalid(field, "tags must have 1 to 255 characters");
    if (s.find_first_of(",/") != std::string::npos) {
      return input::invalid(field, "tags must not contain ',' or '/'");
    }
    for (const std::string& prev : out) {
      if (prev == s) return input::invalid(field, "has non-unique elements");
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::optional<std::vector<std::string>>> tags_field(const Json& body) {
  auto it = body.find("tags");
  if (it == body.end()) return std::optional<std::vector<std::string>>();
  CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> tags, tag_list(*it, "tags"));
  return std::optional<std::vector<std::string>>(std::move(tags));
}

namespace {
Json base_of(const Json& extra) {
  return extra.is_object() ? extra : Json::object();
}
Json opt(const std::optional<std::string>& s) {
  return s ? Json(*s) : Json(nullptr);
}
Json empty_null(const std::string& s) {
  return s.empty() ? Json(nullptr) : Json(s);
}
}  // namespace

Json render_project(const Project& p, const Api::Call& c) {
  Json j = base_of(p.extra);
  j["id"] = p.id;
  j["name"] = p.name;
  j["domain_id"] = p.is_domain ? Json(nullptr) : Json(p.domain_id);
  j["description"] = opt(p.description);
  j["enabled"] = p.enabled;
  j["parent_id"] = empty_null(p.parent_id);
  j["is_domain"] = p.is_domain;
  j["tags"] = p.tags;
  j["options"] = Json::object();
  j["links"] = {{"self", c.link("projects/" + p.id)}};
  return j;
}

Json render_domain(const Project& d, const Api::Call& c) {
  Json j = base_of(d.extra);
  j["id"] = d.id;
  j["name"] = d.name;
  j["description"] = opt(d.description);
  j["enabled"] = d.enabled;
  j["tags"] = d.tags;
  j["options"] = Json::object();
  j["links"] = {{"self", c.link("domains/" + d.id)}};
  return j;
}

Json render_user(const User& u, const Api::Call& c) {
  Json j = base_of(u.extra);
  j["id"] = u.id;
  j["name"] = u.name;
  j["domain_id"] = u.domain_id;
  j["enabled"] = u.enabled;
  if (!u.default_project_id.empty()) j["default_project_id"] = u.default_project_id;
  j["password_expires_at"] = u.password_expires_at
                                 ? Json(format_iso_naive(from_micros(*u.password_expires_at)))
                                 : Json(nullptr);
  j["options"] = Json::object();
  j["links"] = {{"self", c.link("users/" + u.id)}};
  return j;
}

Json render_group(const Group& g, const Api::Call& c) {
  Json j = base_of(g.extra);
  j["id"] = g.id;
  j["name"] = g.name;
  j["domain_id"] = g.domain_id;
  j["description"] = opt(g.description);
  j["links"] = {{"self", c.link("groups/" + g.id)}};
  return j;
}

Json render_role(const Role& r, const Api::Call& c) {
  Json j = base_of(r.extra);
  j["id"] = r.id;
  j["name"] = r.name;
  j["domain_id"] = empty_null(r.domain_id);
  j["description"] = opt(r.description);
  j["options"] = Json::object();
  j["links"] = {{"self", c.link("roles/" + r.id)}};
  return j;
}

Json render_region(const Region& r, const Api::Call& c) {
  Json j = base_of(r.extra);
  j["id"] = r.id;
  j["description"] = r.description;
  j["parent_region_id"] = empty_null(r.parent_region_id);
  j["links"] = {{"self", c.link("regions/" + r.id)}};
  return j;
}

Json render_service(const Service& s, const Api::Call& c) {
  Json j = base_of(s.extra);
  j["id"] = s.id;
  j["type"] = s.type;
  j["enabled"] = s.enabled;
  j["links"] = {{"self", c.link("services/" + s.id)}};
  return j;
}

Json render_endpoint(const Endpoint& e, const Api::Call& c) {
  Json j = base_of(e.extra);
  j["id"] = e.id;
  j["interface"] = e.interface;
  j["region_id"] = empty_null(e.region_id);
  j["region"] = empty_null(e.region_id);
  j["service_id"] = e.service_id;
  j["url"] = e.url;
  j["enabled"] = e.enabled;
  j["links"] = {{"self", c.link("endpoints/" + e.id)}};
  return j;
}

Json render_app_cred(const AppCred& a, const RoleSnapshot& roles, const Api::Call& c) {
  Json role_list = Json::array();
  for (const std::string& id : a.role_ids) {
    auto it = roles.by_id.find(id);
    if (it == roles.by_id.end()) continue;
    role_list.push_back({{"id", it->second.id},
                         {"name", it->second.name},
                         {"domain_id", empty_null(it->second.domain_id)},
                         {"description", opt(it->second.description)}});
  }
  Json j = Json::object();
  j["id"] = a.id;
  j["name"] = a.name;
  j["description"] = opt(a.description);
  j["project_id"] = a.project_id;
  j["expires_at"] =
      a.expires_at ? Json(format_iso_naive(from_micros(*a.expires_at))) : Json(nullptr);
  j["unrestricted"] = a.unrestricted;
  j["roles"] = std::move(role_list);
  j["access_rules"] = a.access_rules.is_array() ? a.access_rules : Json::array();
  j["links"] = {{"self", c.link("users/" + a.user_id + "/application_credentials/" + a.id)}};
  return j;
}

}  // namespace api
}  // namespace concord::identity

// Version discovery and /v3/auth/*.
#include <nlohmann/json.hpp>

#include "identity/api.h"
#include "identity/repository.h"

namespace concord::identity {

using api::collection;
using api::json;
using http::Method;

void Api::add_discovery_routes() {
  add(Method::kGet, "/", "identity:discovery", [this](Call& c) { return versions(c); });
  add(Method::kGet, "/v3", "identity:discovery", [this](Call& c) { return version_v3(c); });
}

void Api::add_auth_routes() {
  add(Method::kPost, "/v3/auth/tokens", "identity:authenticate",
      [this](Call& c) { return issue_token(c); });
  auto subject = [this](Call& c) { return subject_target(c); };
  add(
      Method::kGet, "/v3/auth/tokens", "identity:validate_token",
      [this](Call& c) { return validate_token(c, false); }, subject);
  add(
      Method::kHead, "/v3/auth/tokens", "identity:check_token",
      [this](Call& c) { return validate_token(c, true); }, subject);
  add(
      Method::kDelete, "/v3/auth/tokens", "identity:revoke_token",
      [this](Call& c) { return revoke_token(c); }, subject);
  add(Method::kGet, "/v3/auth/catalog", "identity:get_auth_catalog",
      [this](Call& c) { return auth_catalog(c); });
  add(Method::kGet, "/v3/auth/projects", "identity:get_auth_projects",
      [this](Call& c) { return auth_projects(c); });
  add(Method::kGet, "/v3/auth/domains", "identity:get_auth_domains",
      [this](Call& c) { return auth_domains(c); });
  add(Method::kGet, "/v3/auth/system", "identity:get_auth_system",
      [this](Call& c) { return auth_system(c); });
}

namespace {

Json v3_version(const Api::Call& c) {
  return {{"id", "v3.14"},
          {"status", "stable"},
          {"updated", "2020-04-07T00:00:00Z"},
          {"links", Json::array({{{"rel", "self"}, {"href", c.req.base_url + "/v3/"}}})},
          {"media-types", Json::array({{{"base", "application/json"},
                                        {"type", "application/vnd.openstack.identity-v3+json"}}})}};
}

}  // namespace

Result<http::Response> Api::versions(Call& c) {
  Json body = {{"versions", {{"values", Json::array({v3_version(c)})}}}};
  http::Response r = json(300, body);
  r.set_header("location", c.req.base_url + "/v3/");
  return r;
}

Result<http::Response> Api::version_v3(Call& c) {
  return json(200, {{"version", v3_version(c)}});
}

Result<http::Response> Api::issue_token(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(AuthRequest request, parse_auth_request(c.req.body));
  CONCORD_ASSIGN_OR_RETURN(Core::Issued issued, core_.authenticate_request(request));
  bool catalog = !c.req.query_param("nocatalog").has_value();
  CONCORD_ASSIGN_OR_RETURN(std::string body, core_.token_body(issued.context, catalog));
  http::Response r = http::Response::json(201, std::move(body));
  r.set_header("x-subject-token", issued.token);
  return r;
}

Result<Target> Api::subject_target(Call& c) {
  std::string_view token = c.req.header("x-subject-token");
  auto subject = core_.validate(token);
  if (!subject) {
    if (subject.error().code() != Code::kUnauthenticated) return std::unexpected(subject.error());
    return fail(Code::kNotFound, "Could not find token.");
  }
  Target t;
  t.user_id = subject->user_id;
  c.subject = std::move(*subject);
  return t;
}

Result<http::Response> Api::validate_token(Call& c, bool head) {
  http::Response r;
  if (head) {
    r = http::Response::empty(200);
  } else {
    bool catalog = !c.req.query_param("nocatalog").has_value();
    CONCORD_ASSIGN_OR_RETURN(std::string body, core_.token_body(*c.subject, catalog));
    r = http::Response::json(200, std::move(body));
  }
  r.set_header("x-subject-token", std::string(c.req.header("x-subject-token")));
  return r;
}

Result<http::Response> Api::revoke_token(Call& c) {
  const std::string audit_id = c.subject->audit_ids.front();
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    return ws.revoke(tx, RevocationKind::kAuditId, audit_id, core_.clock.now());
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::auth_catalog(Call& c) {
  if (c.caller->scope == ScopeKind::kUnscoped) {
    return fail(Code::kPermissionDenied,
                "A project-scoped token is required to produce a service catalog.");
  }
  CONCORD_ASSIGN_OR_RETURN(std::string catalog, core_.catalog_text(*c.caller));
  CONCORD_ASSIGN_OR_RETURN(Json parsed, parse_json(catalog));
  return json(200, collection(c, "catalog", std::move(parsed)));
}

Result<http::Response> Api::auth_projects(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    items = Json::array();
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                             repo::targets_of_user(tx, c.caller->user_id, TargetType::kProject));
    std::vector<Project> projects;
    for (const std::string& id : ids) {
      CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, repo::get_project(tx, id));
      if (!p || p->is_domain || !p->enabled) continue;
      CONCORD_ASSIGN_OR_RETURN(std::optional<Project> d, repo::get_project(tx, p->domain_id));
      if (!d || !d->enabled) continue;
      projects.push_back(std::move(*p));
    }
    std::sort(projects.begin(), projects.end(),
              [](const Project& a, const Project& b) { return a.name < b.name; });
    for (const Project& p : projects) items.push_back(api::render_project(p, c));
    return ok();
  }));
  return json(200, collection(c, "projects", std::move(items)));
}

Result<http::Response> Api::auth_domains(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    items = Json::array();
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                             repo::targets_of_user(tx, c.caller->user_id, TargetType::kDomain));
    std::vector<Project> domains;
    for (const std::string& id : ids) {
      CONCORD_ASSIGN_OR_RETURN(std::optional<Project> d, repo::get_project(tx, id));
      if (!d || !d->is_domain || !d->enabled) continue;
      domains.push_back(std::move(*d));
    }
    std::sort(domains.begin(), domains.end(),
              [](const Project& a, const Project& b) { return a.name < b.name; });
    for (const Project& d : domains) items.push_back(api::render_domain(d, c));
    return ok();
  }));
  return json(200, collection(c, "domains", std::move(items)));
}

Result<http::Response> Api::auth_system(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(
      auto roles, core_.dir.effective_roles(c.caller->user_id, TargetType::kSystem, kSystemAll));
  Json items = Json::array();
  if (!roles->empty()) items.push_back({{"all", true}});
  return json(200, collection(c, "system", std::move(items)));
}

}  // namespace concord::identity

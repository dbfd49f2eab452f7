// Roles, implied roles, grants and GET /v3/role_assignments.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/random.h"
#include "identity/api.h"
#include "identity/json_input.h"
#include "identity/repository.h"

namespace concord::identity {

using api::collection;
using api::conflict;
using api::json;
using api::not_found;
using http::Method;

namespace {

const input::StrRule kRoleName{.min_len = 1, .max_len = 255, .non_blank = true};
const input::StrRule kNullable{.nullable = true};

// Keystone's [assignment] prohibited_implied_role default.
constexpr std::string_view kProhibitedImplied = "admin";

std::string_view collection_of(TargetType t) {
  switch (t) {
    case TargetType::kProject: return "projects";
    case TargetType::kDomain: return "domains";
    case TargetType::kSystem: return "system";
  }
  return "projects";
}

std::string_view collection_of(ActorType a) {
  return a == ActorType::kUser ? "users" : "groups";
}

}  // namespace

void Api::add_role_routes() {
  add(Method::kGet, "/v3/roles", "identity:list_roles", [this](Call& c) { return list_roles(c); });
  add(Method::kPost, "/v3/roles", "identity:create_role",
      [this](Call& c) { return create_role(c); });
  add(Method::kGet, "/v3/roles/{role_id}", "identity:get_role",
      [this](Call& c) { return get_role(c); });
  add(Method::kPatch, "/v3/roles/{role_id}", "identity:update_role",
      [this](Call& c) { return update_role(c); });
  add(Method::kDelete, "/v3/roles/{role_id}", "identity:delete_role",
      [this](Call& c) { return delete_role(c); });
  add(Method::kGet, "/v3/roles/{prior_role_id}/implies", "identity:list_implied_roles",
      [this](Call& c) { return list_implied(c); });
  add(Method::kPut, "/v3/roles/{prior_role_id}/implies/{implied_role_id}",
      "identity:create_implied_role", [this](Call& c) { return put_implied(c); });
  add(Method::kGet, "/v3/roles/{prior_role_id}/implies/{implied_role_id}",
      "identity:get_implied_role", [this](Call& c) { return get_implied(c, false); });
  add(Method::kHead, "/v3/roles/{prior_role_id}/implies/{implied_role_id}",
      "identity:check_implied_role", [this](Call& c) { return get_implied(c, true); });
  add(Method::kDelete, "/v3/roles/{prior_role_id}/implies/{implied_role_id}",
      "identity:delete_implied_role", [this](Call& c) { return delete_implied(c); });
  add(Method::kGet, "/v3/role_inferences", "identity:list_role_inference_rules",
      [this](Call& c) { return list_inferences(c); });

  struct GrantRoute {
    ActorType actor;
    TargetType target;
    std::string prefix;  // path up to /roles
    std::string_view create, check, list, revoke;
  };
  const GrantRoute grant_routes[] = {
      {ActorType::kUser, TargetType::kProject, "/v3/projects/{project_id}/users/{user_id}",
       "identity:create_grant", "identity:check_grant", "identity:list_grants",
       "identity:revoke_grant"},
      {ActorType::kGroup, TargetType::kProject, "/v3/projects/{project_id}/groups/{group_id}",
       "identity:create_grant", "identity:check_grant", "identity:list_grants",
       "identity:revoke_grant"},
      {ActorType::kUser, TargetType::kDomain, "/v3/domains/{domain_id}/users/{user_id}",
       "identity:create_grant", "identity:check_grant", "identity:list_grants",
       "identity:revoke_grant"},
      {ActorType::kGroup, TargetType::kDomain, "/v3/domains/{domain_id}/groups/{group_id}",
       "identity:create_grant", "identity:check_grant", "identity:list_grants",
       "identity:revoke_grant"},
      {ActorType::kUser, TargetType::kSystem, "/v3/system/users/{user_id}",
       "identity:create_system_grant_for_user", "identity:check_system_grant_for_user",
       "identity:list_system_grants_for_user", "identity:revoke_system_grant_for_user"},
      {ActorType::kGroup, TargetType::kSystem, "/v3/system/groups/{group_id}",
       "identity:create_system_grant_for_group", "identity:check_system_grant_for_group",
       "identity:list_system_grants_for_group", "identity:revoke_system_grant_for_group"},
  };
  for (const GrantRoute& g : grant_routes) {
    ActorType a = g.actor;
    TargetType t = g.target;
    add(Method::kGet, g.prefix + "/roles", std::string(g.list),
        [this, a, t](Call& c) { return grant_list(c, a, t); });
    add(Method::kPut, g.prefix + "/roles/{role_id}", std::string(g.create),
        [this, a, t](Call& c) { return grant_put(c, a, t); });
    add(Method::kHead, g.prefix + "/roles/{role_id}", std::string(g.check),
        [this, a, t](Call& c) { return grant_check(c, a, t); });
    add(Method::kGet, g.prefix + "/roles/{role_id}", std::string(g.check),
        [this, a, t](Call& c) { return grant_check(c, a, t); });
    add(Method::kDelete, g.prefix + "/roles/{role_id}", std::string(g.revoke),
        [this, a, t](Call& c) { return grant_delete(c, a, t); });
  }

  // OS-INHERIT: the same grants, applying to the projects below the target. Keystone lists
  // inherited grants only on domains.
  struct InheritRoute {
    ActorType actor;
    TargetType target;
    std::string prefix;
    bool list;
  };
  const InheritRoute inherit_routes[] = {
      {ActorType::kUser, TargetType::kDomain, "/v3/OS-INHERIT/domains/{domain_id}/users/{user_id}",
       true},
      {ActorType::kGroup, TargetType::kDomain,
       "/v3/OS-INHERIT/domains/{domain_id}/groups/{group_id}", true},
      {ActorType::kUser, TargetType::kProject,
       "/v3/OS-INHERIT/projects/{project_id}/users/{user_id}", false},
      {ActorType::kGroup, TargetType::kProject,
       "/v3/OS-INHERIT/projects/{project_id}/groups/{group_id}", false},
  };
  for (const InheritRoute& g : inherit_routes) {
    ActorType a = g.actor;
    TargetType t = g.target;
    std::string one = g.prefix + "/roles/{role_id}/inherited_to_projects";
    if (g.list) {
      add(Method::kGet, g.prefix + "/roles/inherited_to_projects", "identity:list_grants",
          [this, a, t](Call& c) { return grant_list(c, a, t, true); });
    }
    add(Method::kPut, one, "identity:create_grant",
        [this, a, t](Call& c) { return grant_put(c, a, t, true); });
    add(Method::kHead, one, "identity:check_grant",
        [this, a, t](Call& c) { return grant_check(c, a, t, true); });
    add(Method::kGet, one, "identity:check_grant",
        [this, a, t](Call& c) { return grant_check(c, a, t, true); });
    add(Method::kDelete, one, "identity:revoke_grant",
        [this, a, t](Call& c) { return grant_delete(c, a, t, true); });
  }

  add(Method::kGet, "/v3/role_assignments", "identity:list_role_assignments",
      [this](Call& c) { return list_role_assignments(c); });
}

// ---------------------------------------------------------------------------------------------
// Roles

Result<http::Response> Api::list_roles(Call& c) {
  repo::RoleFilter f;
  f.name = c.req.query_param("name");
  f.domain_id = c.req.query_param("domain_id").value_or("");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Role> roles, repo::list_roles(tx, f));
    items = Json::array();
    for (const Role& r : roles) items.push_back(api::render_role(r, c));
    return ok();
  }));
  return json(200, collection(c, "roles", std::move(items)));
}

Result<http::Response> Api::create_role(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "role"));
  Role r;
  r.id = new_hex_id();
  CONCORD_ASSIGN_OR_RETURN(r.name, input::required_string(body, "name", kRoleName));
  CONCORD_ASSIGN_OR_RETURN(
      input::Str domain_id,
      input::string_field(body, "domain_id",
                          {.min_len = 1, .max_len = 64, .nullable = true, .id_chars = true}));
  if (domain_id.has_value()) r.domain_id = domain_id.value;
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  if (desc.has_value()) r.description = desc.value;
  CONCORD_ASSIGN_OR_RETURN(const Json* options, input::object_field(body, "options"));
  (void)options;
  api::merge_extra(r.extra, body, {"name", "domain_id", "description", "options"});
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    if (!r.domain_id.empty()) {
      CONCORD_ASSIGN_OR_RETURN(Project domain, load_domain(tx, r.domain_id));
      (void)domain;
    }
    CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_role_by_name(tx, r.domain_id, r.name));
    if (dup) return conflict("role", "Duplicate entry found with name " + r.name);
    CONCORD_RETURN_IF_ERROR(repo::insert_role(tx, r, core_.now_us()));
    return ws.change(tx, kinds::kRole, r.id, "create");
  }));
  return json(201, {{"role", api::render_role(r, c)}});
}

Result<http::Response> Api::get_role(Call& c) {
  return api::get_stored<Role>(core_, c, "role", repo::get_role, api::render_role);
}

Result<http::Response> Api::update_role(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "role"));
  if (body.empty()) return input::invalid("role", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(input::Str name, input::string_field(body, "name", kRoleName));
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  CONCORD_ASSIGN_OR_RETURN(input::Str domain_id,
                           input::string_field(body, "domain_id", {.nullable = true}));
  CONCORD_ASSIGN_OR_RETURN(const Json* options, input::object_field(body, "options"));
  (void)options;
  Role r;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Role> found, repo::get_role(tx, c.param(0)));
    if (!found) return not_found("role", c.param(0));
    r = std::move(*found);
    if (domain_id.present && (domain_id.null ? std::string() : domain_id.value) != r.domain_id) {
      return fail(Code::kInvalidArgument, "Update of domain_id is not allowed.");
    }
    if (name.has_value() && name.value != r.name) {
      CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_role_by_name(tx, r.domain_id, name.value));
      if (dup) return conflict("role", "Duplicate entry found with name " + name.value);
      r.name = name.value;
    }
    if (desc.present) {
      r.description = desc.null ? std::optional<std::string>() : std::optional(desc.value);
    }
    api::merge_extra(r.extra, body, {"name", "domain_id", "description", "options"});
    CONCORD_RETURN_IF_ERROR(repo::update_role(tx, r));
    return ws.change(tx, kinds::kRole, r.id, "update");
  }));
  return json(200, {{"role", api::render_role(r, c)}});
}

Result<http::Response> Api::delete_role(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_RETURN_IF_ERROR(repo::delete_role(tx, c.param(0)));
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kAssignment, c.param(0), "delete"));
    return ws.change(tx, kinds::kRole, c.param(0), "delete");
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// Implied roles

namespace {

Json role_ref(const Role& r, const Api::Call& c) {
  return {{"id", r.id}, {"name", r.name}, {"links", {{"self", c.link("roles/" + r.id)}}}};
}

}  // namespace

Result<http::Response> Api::put_implied(Call& c) {
  Role prior, implied;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Role> p, repo::get_role(tx, c.param(0)));
    if (!p) return not_found("role", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Role> i, repo::get_role(tx, c.param(1)));
    if (!i) return not_found("role", c.param(1));
    prior = *p;
    implied = *i;
    if (prior.domain_id.empty() && !implied.domain_id.empty()) {
      return fail(Code::kPermissionDenied, implied.id + " cannot be an implied roles.");
    }
    if (implied.domain_id.empty() && implied.name == kProhibitedImplied) {
      return fail(Code::kPermissionDenied, implied.id + " cannot be an implied roles.");
    }
    if (prior.id == implied.id) {
      return fail(Code::kInvalidArgument, "A role cannot imply itself.");
    }
    CONCORD_RETURN_IF_ERROR(repo::insert_implied_rule(tx, prior.id, implied.id));
    return ws.change(tx, kinds::kImpliedRole, prior.id, "update");
  }));
  Json body = {
      {"role_inference", {{"prior_role", role_ref(prior, c)}, {"implies", role_ref(implied, c)}}},
      {"links", {{"self", c.link("roles/" + prior.id + "/implies/" + implied.id)}}}};
  return json(201, body);
}

Result<http::Response> Api::get_implied(Call& c, bool head) {
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const RoleSnapshot> snap, core_.dir.roles());
  auto prior = snap->by_id.find(c.param(0));
  if (prior == snap->by_id.end()) return not_found("role", c.param(0));
  auto implied = snap->by_id.find(c.param(1));
  if (implied == snap->by_id.end()) return not_found("role", c.param(1));
  auto rules = snap->implies.find(c.param(0));
  if (rules == snap->implies.end() ||
      std::find(rules->second.begin(), rules->second.end(), c.param(1)) == rules->second.end()) {
    return fail(Code::kNotFound, prior->second.id + " does not imply " + implied->second.id + ".");
  }
  if (head) return http::Response::empty(204);
  Json body = {
      {"role_inference",
       {{"prior_role", role_ref(prior->second, c)}, {"implies", role_ref(implied->second, c)}}},
      {"links",
       {{"self", c.link("roles/" + prior->second.id + "/implies/" + implied->second.id)}}}};
  return json(200, body);
}

Result<http::Response> Api::delete_implied(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Role> p, repo::get_role(tx, c.param(0)));
    if (!p) return not_found("role", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Role> i, repo::get_role(tx, c.param(1)));
    if (!i) return not_found("role", c.param(1));
    CONCORD_ASSIGN_OR_RETURN(bool removed, repo::delete_implied_rule(tx, p->id, i->id));
    if (!removed) return fail(Code::kNotFound, p->id + " does not imply " + i->id + ".");
    return ws.change(tx, kinds::kImpliedRole, p->id, "update");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::list_implied(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const RoleSnapshot> snap, core_.dir.roles());
  auto prior = snap->by_id.find(c.param(0));
  if (prior == snap->by_id.end()) return not_found("role", c.param(0));
  Json implies = Json::array();
  if (auto rules = snap->implies.find(c.param(0)); rules != snap->implies.end()) {
    std::vector<const Role*> roles;
    for (const std::string& id : rules->second) {
      auto it = snap->by_id.find(id);
      if (it != snap->by_id.end()) roles.push_back(&it->second);
    }
    std::sort(roles.begin(), roles.end(),
              [](const Role* a, const Role* b) { return a->name < b->name; });
    for (const Role* r : roles) implies.push_back(role_ref(*r, c));
  }
  Json body = {{"role_inference",
                {{"prior_role", role_ref(prior->second, c)}, {"implies", std::move(implies)}}},
               {"links", {{"self", c.link("roles/" + prior->second.id + "/implies")}}}};
  return json(200, body);
}

Result<http::Response> Api::list_inferences(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const RoleSnapshot> snap, core_.dir.roles());
  std::map<std::string, std::vector<const Role*>> by_prior;  // ordered for a stable body
  for (const auto& [prior_id, implied_ids] : snap->implies) {
    if (!snap->by_id.contains(prior_id)) continue;
    for (const std::string& id : implied_ids) {
      auto it = snap->by_id.find(id);
      if (it != snap->by_id.end()) by_prior[prior_id].push_back(&it->second);
    }
  }
  Json items = Json::array();
  for (auto& [prior_id, roles] : by_prior) {
    std::sort(roles.begin(), roles.end(),
              [](const Role* a, const Role* b) { return a->name < b->name; });
    Json implies = Json::array();
    for (const Role* r : roles) implies.push_back(role_ref(*r, c));
    items.push_back(
        {{"prior_role", role_ref(snap->by_id.find(prior_id)->second, c)}, {"implies", implies}});
  }
  return json(200, collection(c, "role_inferences", std::move(items)));
}

// ---------------------------------------------------------------------------------------------
// Grants

namespace {

// Path parameters of a grant route: actor and target (system has no target parameter).
struct GrantIds {
  std::string actor_id;
  std::string target_id;
};

GrantIds grant_ids(const Api::Call& c, TargetType target) {
  if (target == TargetType::kSystem) return {std::string(c.param(0)), std::string(kSystemAll)};
  return {std::string(c.param(1)), std::string(c.param(0))};
}

}  // namespace

// Checks that actor, target and (when given) role exist; returns the role.
static Result<std::optional<Role>> check_grant_parts(store::Tx& tx, ActorType actor,
                                                     TargetType target, const GrantIds& ids,
                                                     std::string_view role_id) {
  if (target == TargetType::kProject) {
    CONCORD_ASSIGN_OR_RETURN(auto p, repo::get_project(tx, ids.target_id));
    if (!p || p->is_domain) return not_found("project", ids.target_id);
  } else if (target == TargetType::kDomain) {
    CONCORD_ASSIGN_OR_RETURN(auto d, repo::get_project(tx, ids.target_id));
    if (!d || !d->is_domain) return not_found("domain", ids.target_id);
  }
  if (actor == ActorType::kUser) {
    CONCORD_ASSIGN_OR_RETURN(auto u, repo::get_user(tx, ids.actor_id));
    if (!u) return not_found("user", ids.actor_id);
  } else {
    CONCORD_ASSIGN_OR_RETURN(auto g, repo::get_group(tx, ids.actor_id));
    if (!g) return not_found("group", ids.actor_id);
  }
  if (role_id.empty()) return std::optional<Role>();
  CONCORD_ASSIGN_OR_RETURN(auto r, repo::get_role(tx, role_id));
  if (!r) return not_found("role", role_id);
  return r;
}

Result<http::Response> Api::grant_put(Call& c, ActorType actor, TargetType target, bool inherited) {
  GrantIds ids = grant_ids(c, target);
  std::string role_id(c.param(target == TargetType::kSystem ? 1 : 2));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Role> role,
                             check_grant_parts(tx, actor, target, ids, role_id));
    if (!role->domain_id.empty()) {
      // A domain-specific role may only be granted within its domain.
      std::string target_domain;
      if (target == TargetType::kProject) {
        CONCORD_ASSIGN_OR_RETURN(auto p, repo::get_project(tx, ids.target_id));
        target_domain = p->domain_id;
      } else if (target == TargetType::kDomain) {
        target_domain = ids.target_id;
      }
      if (target_domain != role->domain_id) {
        return fail(Code::kPermissionDenied, "Project " + ids.target_id +
                                                 " must be in the same domain as the role " +
                                                 role->id + " being assigned.");
      }
    }
    CONCORD_RETURN_IF_ERROR(repo::insert_assignment(
        tx, {actor, ids.actor_id, target, ids.target_id, role->id, inherited}));
    return ws.change(tx, kinds::kAssignment, ids.actor_id, "update",
                     target == TargetType::kProject ? std::string_view(ids.target_id) : "");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::grant_check(Call& c, ActorType actor, TargetType target,
                                        bool inherited) {
  GrantIds ids = grant_ids(c, target);
  std::string role_id(c.param(target == TargetType::kSystem ? 1 : 2));
  bool found = false;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto role, check_grant_parts(tx, actor, target, ids, role_id));
    (void)role;
    CONCORD_ASSIGN_OR_RETURN(found, repo::has_assignment(tx, {actor, ids.actor_id, target,
                                                              ids.target_id, role_id, inherited}));
    return ok();
  }));
  if (!found) {
    return fail(Code::kNotFound, "Could not find role assignment with role: " + role_id +
                                     ", user or group: " + ids.actor_id +
                                     ", project, domain, or system: " + ids.target_id + ".");
  }
  return http::Response::empty(204);
}

Result<http::Response> Api::grant_delete(Call& c, ActorType actor, TargetType target,
                                         bool inherited) {
  GrantIds ids = grant_ids(c, target);
  std::string role_id(c.param(target == TargetType::kSystem ? 1 : 2));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto role, check_grant_parts(tx, actor, target, ids, role_id));
    (void)role;
    CONCORD_ASSIGN_OR_RETURN(
        bool removed, repo::delete_assignment(
                          tx, {actor, ids.actor_id, target, ids.target_id, role_id, inherited}));
    if (!removed) {
      return fail(Code::kNotFound, "Could not find role assignment with role: " + role_id +
                                       ", user or group: " + ids.actor_id +
                                       ", project, domain, or system: " + ids.target_id + ".");
    }
    // No revocation event: tokens re-derive their roles, so the role disappears from them at
    // once and a token left with no role on its scope stops validating.
    return ws.change(tx, kinds::kAssignment, ids.actor_id, "delete",
                     target == TargetType::kProject ? std::string_view(ids.target_id) : "");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::grant_list(Call& c, ActorType actor, TargetType target,
                                       bool inherited) {
  GrantIds ids = grant_ids(c, target);
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto none, check_grant_parts(tx, actor, target, ids, ""));
    (void)none;
    repo::AssignmentFilter f;
    f.actor_type = actor;
    f.actor_id = ids.actor_id;
    f.target_type = target;
    f.target_id = ids.target_id;
    f.inherited = inherited;
    CONCORD_ASSIGN_OR_RETURN(std::vector<Assignment> list, repo::list_assignments(tx, f));
    std::vector<Role> roles;
    for (const Assignment& a : list) {
      CONCORD_ASSIGN_OR_RETURN(auto r, repo::get_role(tx, a.role_id));
      if (r) roles.push_back(std::move(*r));
    }
    std::sort(roles.begin(), roles.end(),
              [](const Role& a, const Role& b) { return a.name < b.name; });
    items = Json::array();
    for (const Role& r : roles) items.push_back(api::render_role(r, c));
    return ok();
  }));
  return json(200, collection(c, "roles", std::move(items)));
}

// ---------------------------------------------------------------------------------------------
// GET /v3/role_assignments

namespace {

// One (possibly derived) assignment as Keystone reports it.
struct Reported {
  Assignment a;
  std::string via_group;   // set when derived from a group assignment (effective mode)
  std::string prior_role;  // set when derived through an implied role (effective mode)
  // Effective mode: the domain or ancestor project an inherited role came from.
  std::optional<std::pair<TargetType, std::string>> inherited_from;
};

// An assignment as stored, or (effective mode) an inherited one moved onto a project.
struct Raw {
  Assignment a;
  std::optional<std::pair<TargetType, std::string>> inherited_from;
};

std::string assignment_link(const Api::Call& c, const Reported& r) {
  std::string path;
  bool inherited = r.a.inherited || r.inherited_from.has_value();
  if (r.inherited_from) {
    path = "OS-INHERIT/" + std::string(collection_of(r.inherited_from->first)) + "/" +
           r.inherited_from->second;
  } else if (r.a.target_type == TargetType::kSystem) {
    path = "system";
  } else {
    path = std::string(inherited ? "OS-INHERIT/" : "") +
           std::string(collection_of(r.a.target_type)) + "/" + r.a.target_id;
  }
  if (!r.via_group.empty()) {
    path += "/groups/" + r.via_group;
  } else {
    path += "/" + std::string(collection_of(r.a.actor_type)) + "/" + r.a.actor_id;
  }
  path += "/roles/" + (r.prior_role.empty() ? r.a.role_id : r.prior_role);
  if (inherited) path += "/inherited_to_projects";
  return c.link(path);
}

}  // namespace

Result<http::Response> Api::list_role_assignments(Call& c) {
  const http::Request& req = c.req;
  auto user_id = req.query_param("user.id");
  auto group_id = req.query_param("group.id");
  auto role_id = req.query_param("role.id");
  auto project_id = req.query_param("scope.project.id");
  auto domain_id = req.query_param("scope.domain.id");
  auto system = req.query_param("scope.system");
  bool effective = req.query_param("effective").has_value() && *req.query_param("effective") != "0";
  bool include_names =
      req.query_param("include_names").has_value() && *req.query_param("include_names") != "0";
  bool include_subtree =
      req.query_param("include_subtree").has_value() && *req.query_param("include_subtree") != "0";
  auto given = [](const std::optional<std::string>& v) { return v && !v->empty(); };
  if (given(user_id) && given(group_id)) {
    return fail(Code::kInvalidArgument, "Specify a user or group, not both");
  }
  if (given(project_id) && given(domain_id)) {
    return fail(Code::kInvalidArgument, "Specify a domain or project, not both");
  }
  if (given(system) && given(domain_id)) {
    return fail(Code::kInvalidArgument, "Specify system or domain, not both");
  }
  if (given(system) && given(project_id)) {
    return fail(Code::kInvalidArgument, "Specify system or project, not both");
  }
  if (effective && given(group_id)) {
    return fail(Code::kInvalidArgument,
                "Combining effective and group filter will always result in an empty list.");
  }
  if (include_subtree && !given(project_id)) {
    return fail(Code::kInvalidArgument,
                "scope.project.id must be specified if include_subtree is also specified");
  }

  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const RoleSnapshot> snap, core_.dir.roles());
  std::vector<Reported> out;
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    out.clear();
    // Targets in scope.
    std::optional<TargetType> target_type;
    std::vector<std::string> target_ids;
    if (given(project_id)) {
      target_type = TargetType::kProject;
      target_ids.push_back(*project_id);
      if (include_subtree) {
        CONCORD_ASSIGN_OR_RETURN(std::vector<Project> all, repo::list_projects(tx, {}));
        for (size_t i = 0; i < target_ids.size(); ++i) {
          for (const Project& p : all) {
            if (!p.is_domain && p.parent_id == target_ids[i]) target_ids.push_back(p.id);
          }
        }
      }
    } else if (given(domain_id)) {
      target_type = TargetType::kDomain;
      target_ids.push_back(*domain_id);
    } else if (given(system)) {
      target_type = TargetType::kSystem;
      target_ids.push_back(std::string(kSystemAll));
    }

    // The actors whose assignments count: a group, a user (and, effective, its groups), or all.
    std::vector<repo::AssignmentFilter> actors;
    repo::AssignmentFilter base;
    if (!effective && given(role_id)) base.role_id = *role_id;
    if (given(group_id)) {
      base.actor_type = ActorType::kGroup;
      base.actor_id = *group_id;
      actors.push_back(base);
    } else if (given(user_id)) {
      base.actor_type = ActorType::kUser;
      base.actor_id = *user_id;
      actors.push_back(base);
      if (effective) {
        CONCORD_ASSIGN_OR_RETURN(std::vector<Group> groups, repo::list_user_groups(tx, *user_id));
        for (const Group& g : groups) {
          repo::AssignmentFilter gf;
          gf.actor_type = ActorType::kGroup;
          gf.actor_id = g.id;
          actors.push_back(gf);
        }
      }
    } else {
      actors.push_back(base);
    }

    // Raw assignments. Listed as stored, inherited grants show on their own target; in the
    // effective view they apply to the projects below it instead (Keystone's OS-INHERIT).
    std::vector<Raw> raw;
    auto collect = [&](repo::AssignmentFilter f, std::optional<TargetType> type,
                       const std::string& id, bool inherited) -> Status {
      f.target_type = type;
      if (type) f.target_id = id;
      f.inherited = inherited;
      CONCORD_ASSIGN_OR_RETURN(std::vector<Assignment> list, repo::list_assignments(tx, f));
      for (Assignment& a : list) raw.push_back({std::move(a), std::nullopt});
      return ok();
    };
    for (const repo::AssignmentFilter& f : actors) {
      if (target_ids.empty()) {
        CONCORD_RETURN_IF_ERROR(collect(f, std::nullopt, "", false));
        continue;
      }
      for (const std::string& t : target_ids) {
        CONCORD_RETURN_IF_ERROR(collect(f, target_type, t, false));
        if (!effective && target_type != TargetType::kSystem) {
          CONCORD_RETURN_IF_ERROR(collect(f, target_type, t, true));
        }
      }
    }
    if (effective) {
      std::vector<Raw> direct;
      std::vector<Assignment> inherited;  // as stored (only listed without a scope filter)
      for (Raw& r : raw) {
        if (r.a.inherited) {
          inherited.push_back(std::move(r.a));
        } else {
          direct.push_back(std::move(r));
        }
      }
      raw = std::move(direct);
      auto land = [&](const Assignment& a, const std::string& project) {
        Assignment moved = a;
        moved.target_type = TargetType::kProject;
        moved.target_id = project;
        moved.inherited = false;
        raw.push_back({std::move(moved), std::pair{a.target_type, a.target_id}});
      };
      if (target_type == TargetType::kProject) {
        // What each project in scope inherits from its domain and its ancestors.
        for (const std::string& t : target_ids) {
          CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, repo::get_project(tx, t));
          if (!p || p->is_domain) continue;
          std::vector<std::pair<TargetType, std::string>> sources = {
              {TargetType::kDomain, p->domain_id}};
          std::string parent = p->parent_id;
          for (int depth = 0; depth < 128 && !parent.empty() && parent != p->domain_id; ++depth) {
            CONCORD_ASSIGN_OR_RETURN(std::optional<Project> a, repo::get_project(tx, parent));
            if (!a || a->is_domain) break;
            sources.emplace_back(TargetType::kProject, a->id);
            parent = a->parent_id;
          }
          for (const repo::AssignmentFilter& f : actors) {
            for (const auto& [type, id] : sources) {
              repo::AssignmentFilter sf = f;
              sf.target_type = type;
              sf.target_id = id;
              sf.inherited = true;
              CONCORD_ASSIGN_OR_RETURN(std::vector<Assignment> list,
                                       repo::list_assignments(tx, sf));
              for (const Assignment& a : list) land(a, t);
            }
          }
        }
      } else if (!target_type && !inherited.empty()) {
        // Every project below each inherited grant's target.
        CONCORD_ASSIGN_OR_RETURN(std::vector<Project> all, repo::list_projects(tx, {}));
        for (const Assignment& a : inherited) {
          std::vector<std::string> below;
          if (a.target_type == TargetType::kDomain) {
            for (const Project& p : all) {
              if (!p.is_domain && p.domain_id == a.target_id) below.push_back(p.id);
            }
          } else {
            std::vector<std::string> frontier = {a.target_id};
            for (size_t i = 0; i < frontier.size() && i < all.size() + 1; ++i) {
              for (const Project& p : all) {
                if (!p.is_domain && p.parent_id == frontier[i]) {
                  frontier.push_back(p.id);
                  below.push_back(p.id);
                }
              }
            }
          }
          for (const std::string& project : below) land(a, project);
        }
      }
    }

    if (!effective) {
      for (Raw& r : raw) out.push_back({std::move(r.a), "", "", std::nullopt});
    } else {
      // Groups become their members; roles expand through implied roles; domain-specific
      // roles disappear (Keystone's effective view, the same one tokens get).
      for (const Raw& raw_one : raw) {
        const Assignment& a = raw_one.a;
        std::vector<std::pair<std::string, std::string>> users;  // user, via group
        if (a.actor_type == ActorType::kGroup) {
          CONCORD_ASSIGN_OR_RETURN(std::vector<User> members,
                                   repo::list_group_users(tx, a.actor_id));
          for (const User& u : members) {
            if (given(user_id) && u.id != *user_id) continue;
            users.emplace_back(u.id, a.actor_id);
          }
        } else {
          users.emplace_back(a.actor_id, "");
        }
        std::vector<RoleRef> expanded = snap->effective({a.role_id});
        for (const auto& [uid, via] : users) {
          for (const RoleRef& r : expanded) {
            if (given(role_id) && r.id != *role_id) continue;
            Reported rep;
            rep.a = {ActorType::kUser, uid, a.target_type, a.target_id, r.id};
            rep.via_group = via;
            if (r.id != a.role_id) rep.prior_role = a.role_id;
            rep.inherited_from = raw_one.inherited_from;
            out.push_back(std::move(rep));
          }
        }
      }
    }

    items = Json::array();
    for (const Reported& r : out) {
      Json item = Json::object();
      Json scope;
      if (r.a.target_type == TargetType::kSystem) {
        scope = {{"system", {{"all", true}}}};
      } else {
        Json target = {{"id", r.a.target_id}};
        if (include_names) {
          CONCORD_ASSIGN_OR_RETURN(auto p, repo::get_project(tx, r.a.target_id));
          if (p) {
            target["name"] = p->name;
            if (!p->is_domain) {
              CONCORD_ASSIGN_OR_RETURN(auto d, repo::get_project(tx, p->domain_id));
              target["domain"] = {{"id", p->domain_id}, {"name", d ? d->name : ""}};
            }
          }
        }
        scope = {{r.a.target_type == TargetType::kProject ? "project" : "domain", target}};
        if (r.a.inherited) scope["OS-INHERIT:inherited_to"] = "projects";
      }
      item["scope"] = scope;
      Json actor = {{"id", r.a.actor_id}};
      if (include_names) {
        std::string domain_of_actor;
        if (r.a.actor_type == ActorType::kUser) {
          CONCORD_ASSIGN_OR_RETURN(auto u, repo::get_user(tx, r.a.actor_id));
          if (u) {
            actor["name"] = u->name;
            domain_of_actor = u->domain_id;
          }
        } else {
          CONCORD_ASSIGN_OR_RETURN(auto g, repo::get_group(tx, r.a.actor_id));
          if (g) {
            actor["name"] = g->name;
            domain_of_actor = g->domain_id;
          }
        }
        if (!domain_of_actor.empty()) {
          CONCORD_ASSIGN_OR_RETURN(auto d, repo::get_project(tx, domain_of_actor));
          actor["domain"] = {{"id", domain_of_actor}, {"name", d ? d->name : ""}};
        }
      }
      item[r.a.actor_type == ActorType::kUser ? "user" : "group"] = actor;
      Json role = {{"id", r.a.role_id}};
      if (include_names) {
        auto it = snap->by_id.find(r.a.role_id);
        if (it != snap->by_id.end()) {
          role["name"] = it->second.name;
          if (!it->second.domain_id.empty()) {
            CONCORD_ASSIGN_OR_RETURN(auto d, repo::get_project(tx, it->second.domain_id));
            role["domain"] = {{"id", it->second.domain_id}, {"name", d ? d->name : ""}};
          }
        }
      }
      item["role"] = role;
      Json links = {{"assignment", assignment_link(c, r)}};
      if (!r.via_group.empty()) {
        links["membership"] = c.link("groups/" + r.via_group + "/users/" + r.a.actor_id);
      }
      if (!r.prior_role.empty()) {
        links["prior_role"] = c.link("prior_role/" + r.prior_role + "/implies/" + r.a.role_id);
      }
      item["links"] = links;
      items.push_back(std::move(item));
    }
    return ok();
  }));
  return json(200, collection(c, "role_assignments", std::move(items)));
}

}  // namespace concord::identity

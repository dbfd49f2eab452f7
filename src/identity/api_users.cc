// Users, groups and membership, password changes, application credentials.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/random.h"
#include "base/time_format.h"
#include "identity/api.h"
#include "identity/crypto/password.h"
#include "identity/json_input.h"
#include "identity/repository.h"

namespace concord::identity {

using api::collection;
using api::conflict;
using api::json;
using api::not_found;
using http::Method;

namespace {

const input::StrRule kIdentityName{.min_len = 1, .max_len = 255, .non_blank = true};
const input::StrRule kId{.min_len = 1, .max_len = 64, .id_chars = true};
const input::StrRule kNullableId{.min_len = 1, .max_len = 64, .nullable = true, .id_chars = true};
const input::StrRule kNullable{.nullable = true};

// A password field: a string (or null to clear it) of at most kMaxPasswordBytes.
Result<input::Str> password_field(const Json& body, std::string_view key, bool nullable) {
  CONCORD_ASSIGN_OR_RETURN(input::Str pw, input::string_field(body, key, {.nullable = nullable}));
  if (pw.has_value() && pw.value.size() > kMaxPasswordBytes) {
    return input::invalid(key, "is longer than " + std::to_string(kMaxPasswordBytes) + " bytes");
  }
  return pw;
}

}  // namespace

void Api::add_user_routes() {
  add(Method::kGet, "/v3/users", "identity:list_users", [this](Call& c) { return list_users(c); });
  add(Method::kPost, "/v3/users", "identity:create_user",
      [this](Call& c) { return create_user(c); });
  add(Method::kGet, "/v3/users/{user_id}", "identity:get_user",
      [this](Call& c) { return get_user(c); });
  add(Method::kPatch, "/v3/users/{user_id}", "identity:update_user",
      [this](Call& c) { return update_user(c); });
  add(Method::kDelete, "/v3/users/{user_id}", "identity:delete_user",
      [this](Call& c) { return delete_user(c); });
  add(Method::kPost, "/v3/users/{user_id}/password", "identity:change_password",
      [this](Call& c) { return change_password(c); });
  add(Method::kGet, "/v3/users/{user_id}/projects", "identity:list_user_projects",
      [this](Call& c) { return list_user_projects(c); });
  add(Method::kGet, "/v3/users/{user_id}/groups", "identity:list_groups_for_user",
      [this](Call& c) { return list_user_groups(c); });

  add(Method::kGet, "/v3/groups", "identity:list_groups",
      [this](Call& c) { return list_groups(c); });
  add(Method::kPost, "/v3/groups", "identity:create_group",
      [this](Call& c) { return create_group(c); });
  add(Method::kGet, "/v3/groups/{group_id}", "identity:get_group",
      [this](Call& c) { return get_group(c); });
  add(Method::kPatch, "/v3/groups/{group_id}", "identity:update_group",
      [this](Call& c) { return update_group(c); });
  add(Method::kDelete, "/v3/groups/{group_id}", "identity:delete_group",
      [this](Call& c) { return delete_group(c); });
  add(Method::kGet, "/v3/groups/{group_id}/users", "identity:list_users_in_group",
      [this](Call& c) { return list_group_users(c); });
  add(Method::kPut, "/v3/groups/{group_id}/users/{user_id}", "identity:add_user_to_group",
      [this](Call& c) { return add_group_user(c); });
  add(Method::kHead, "/v3/groups/{group_id}/users/{user_id}", "identity:check_user_in_group",
      [this](Call& c) { return check_group_user(c); });
  add(Method::kGet, "/v3/groups/{group_id}/users/{user_id}", "identity:check_user_in_group",
      [this](Call& c) { return check_group_user(c); });
  add(Method::kDelete, "/v3/groups/{group_id}/users/{user_id}", "identity:remove_user_from_group",
      [this](Call& c) { return remove_group_user(c); });

  add(Method::kPost, "/v3/users/{user_id}/application_credentials",
      "identity:create_application_credential", [this](Call& c) { return create_app_cred(c); });
  add(Method::kGet, "/v3/users/{user_id}/application_credentials",
      "identity:list_application_credentials", [this](Call& c) { return list_app_creds(c); });
  add(Method::kGet, "/v3/users/{user_id}/application_credentials/{app_cred_id}",
      "identity:get_application_credential", [this](Call& c) { return get_app_cred(c); });
  add(Method::kDelete, "/v3/users/{user_id}/application_credentials/{app_cred_id}",
      "identity:delete_application_credential", [this](Call& c) { return delete_app_cred(c); });

  add(Method::kGet, "/v3/users/{user_id}/access_rules", "identity:list_access_rules",
      [this](Call& c) { return list_access_rules(c); });
  add(Method::kGet, "/v3/users/{user_id}/access_rules/{access_rule_id}", "identity:get_access_rule",
      [this](Call& c) { return get_access_rule(c); });
  add(Method::kDelete, "/v3/users/{user_id}/access_rules/{access_rule_id}",
      "identity:delete_access_rule", [this](Call& c) { return delete_access_rule(c); });

  add(Method::kGet, "/v3/users/{user_id}/credentials/OS-EC2", "identity:ec2_list_credentials",
      [this](Call& c) { return list_ec2(c); });
  add(Method::kPost, "/v3/users/{user_id}/credentials/OS-EC2", "identity:ec2_create_credential",
      [this](Call& c) { return create_ec2(c); });
  add(Method::kGet, "/v3/users/{user_id}/credentials/OS-EC2/{credential_id}",
      "identity:ec2_get_credential", [this](Call& c) { return get_ec2(c); });
  add(Method::kDelete, "/v3/users/{user_id}/credentials/OS-EC2/{credential_id}",
      "identity:ec2_delete_credential", [this](Call& c) { return delete_ec2(c); });
}

// ---------------------------------------------------------------------------------------------
// Users

Result<http::Response> Api::list_users(Call& c) {
  repo::UserFilter f;
  f.name = c.req.query_param("name");
  f.domain_id = c.req.query_param("domain_id");
  f.enabled = api::bool_query(c.req, "enabled");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<User> users, repo::list_users(tx, f));
    items = Json::array();
    for (const User& u : users) items.push_back(api::render_user(u, c));
    return ok();
  }));
  return json(200, collection(c, "users", std::move(items)));
}

namespace {
const std::initializer_list<std::string_view> kUserReserved = {
    "name",    "domain_id",           "password", "enabled", "default_project_id",
    "options", "password_expires_at", "federated"};
}  // namespace

Result<http::Response> Api::create_user(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "user"));
  User u;
  u.id = new_hex_id();
  CONCORD_ASSIGN_OR_RETURN(u.name, input::required_string(body, "name", kIdentityName));
  CONCORD_ASSIGN_OR_RETURN(input::Str domain_id, input::string_field(body, "domain_id", kId));
  u.domain_id = domain_id.has_value() ? domain_id.value : default_domain_for(c);
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  u.enabled = enabled.value_or(true);
  CONCORD_ASSIGN_OR_RETURN(input::Str dp,
                           input::string_field(body, "default_project_id", kNullableId));
  if (dp.has_value()) u.default_project_id = dp.value;
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  (void)desc;
  CONCORD_ASSIGN_OR_RETURN(const Json* options, input::object_field(body, "options"));
  (void)options;
  CONCORD_ASSIGN_OR_RETURN(input::Str password, password_field(body, "password", true));
  if (password.has_value()) {
    CONCORD_ASSIGN_OR_RETURN(u.password_hash, core_.hash_secret(password.value));
  }
  api::merge_extra(u.extra, body, kUserReserved);

  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project domain, load_domain(tx, u.domain_id));
    (void)domain;
    if (!u.default_project_id.empty()) {
      CONCORD_ASSIGN_OR_RETURN(auto project, repo::get_project(tx, u.default_project_id));
      if (project && project->is_domain) {
        return fail(Code::kInvalidArgument, "The default project cannot be a domain.");
      }
    }
    CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_user_by_name(tx, u.domain_id, u.name));
    if (dup) {
      return conflict("user",
                      "Duplicate entry found with name " + u.name + " at domain ID " + u.domain_id);
    }
    CONCORD_RETURN_IF_ERROR(repo::insert_user(tx, u, core_.now_us()));
    return ws.change(tx, kinds::kUser, u.id, "create");
  }));
  return json(201, {{"user", api::render_user(u, c)}});
}

Result<http::Response> Api::get_user(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const User> u, core_.dir.user(c.param(0)));
  if (!u) return not_found("user", c.param(0));
  return json(200, {{"user", api::render_user(*u, c)}});
}

Result<http::Response> Api::update_user(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "user"));
  if (body.empty()) return input::invalid("user", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(input::Str name, input::string_field(body, "name", kIdentityName));
  CONCORD_ASSIGN_OR_RETURN(input::Str domain_id, input::string_field(body, "domain_id", kId));
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  CONCORD_ASSIGN_OR_RETURN(input::Str dp,
                           input::string_field(body, "default_project_id", kNullableId));
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  (void)desc;
  CONCORD_ASSIGN_OR_RETURN(const Json* options, input::object_field(body, "options"));
  (void)options;
  CONCORD_ASSIGN_OR_RETURN(input::Str id, input::string_field(body, "id"));
  if (id.has_value() && id.value != c.param(0)) {
    return fail(Code::kInvalidArgument, "Cannot change the ID of a user.");
  }
  CONCORD_ASSIGN_OR_RETURN(input::Str password, password_field(body, "password", true));
  std::string new_hash;
  if (password.has_value()) {
    CONCORD_ASSIGN_OR_RETURN(new_hash, core_.hash_secret(password.value));
  }

  User u;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> found, repo::get_user(tx, c.param(0)));
    if (!found) return not_found("user", c.param(0));
    u = std::move(*found);
    if (domain_id.has_value() && domain_id.value != u.domain_id) {
      return fail(Code::kInvalidArgument, "Cannot change the domain of a user.");
    }
    bool revoke = false;
    if (name.has_value() && name.value != u.name) {
      CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_user_by_name(tx, u.domain_id, name.value));
      if (dup) {
        return conflict("user", "Duplicate entry found with name " + name.value + " at domain ID " +
                                    u.domain_id);
      }
      u.name = name.value;
    }
    if (enabled) {
      if (u.enabled && !*enabled) revoke = true;
      u.enabled = *enabled;
    }
    if (dp.present) {
      u.default_project_id = dp.null ? std::string() : dp.value;
      if (!u.default_project_id.empty()) {
        CONCORD_ASSIGN_OR_RETURN(auto project, repo::get_project(tx, u.default_project_id));
        if (project && project->is_domain) {
          return fail(Code::kInvalidArgument, "The default project cannot be a domain.");
        }
      }
    }
    if (password.present) {
      u.password_hash = password.null ? std::string() : new_hash;
      u.password_expires_at.reset();
      revoke = true;
    }
    api::merge_extra(u.extra, body, kUserReserved);
    CONCORD_RETURN_IF_ERROR(repo::update_user(tx, u));
    if (revoke)
      CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kUser, u.id, core_.clock.now()));
    return ws.change(tx, kinds::kUser, u.id, "update");
  }));
  return json(200, {{"user", api::render_user(u, c)}});
}

Status Api::cascade_delete_user(store::Tx& tx, WriteSet& ws, const User& u) {
  CONCORD_RETURN_IF_ERROR(repo::delete_memberships_of_user(tx, u.id));
  CONCORD_RETURN_IF_ERROR(repo::delete_assignments_of_actor(tx, ActorType::kUser, u.id));
  CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> creds, repo::app_cred_ids_of_user(tx, u.id));
  for (const std::string& id : creds) {
    CONCORD_RETURN_IF_ERROR(repo::delete_app_cred(tx, id));
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kAppCred, id, "delete"));
  }
  CONCORD_RETURN_IF_ERROR(repo::delete_ec2_of_user(tx, u.id));
  CONCORD_ASSIGN_OR_RETURN(
      std::vector<std::string> rules_gone,
      repo::delete_documents_where(tx, documents::kAccessRule, "user_id", u.id));
  for (const std::string& id : rules_gone) {
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kDocument, "access_rule/" + id, "delete"));
  }
  CONCORD_ASSIGN_OR_RETURN(
      std::vector<std::string> creds_gone,
      repo::delete_documents_where(tx, documents::kCredential, "user_id", u.id));
  for (const std::string& id : creds_gone) {
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kDocument, "credential/" + id, "delete"));
  }
  CONCORD_RETURN_IF_ERROR(repo::delete_user(tx, u.id));
  CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kUser, u.id, core_.clock.now()));
  CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kAssignment, u.id, "delete"));
  return ws.change(tx, kinds::kUser, u.id, "delete");
}

Result<http::Response> Api::delete_user(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(0)));
    if (!u) return not_found("user", c.param(0));
    return cascade_delete_user(tx, ws, *u);
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::change_password(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "user"));
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (it.key() != "original_password" && it.key() != "password") {
      return input::invalid("user", "Additional properties are not allowed ('" +
                                        sanitize_utf8(it.key()) + "' was unexpected)");
    }
  }
  CONCORD_ASSIGN_OR_RETURN(std::string original, input::required_string(body, "original_password"));
  CONCORD_ASSIGN_OR_RETURN(input::Str password, password_field(body, "password", false));
  if (!password.present) return input::invalid("password", "'password' is a required property");

  std::optional<User> u;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(u, repo::get_user(tx, c.param(0)));
    return ok();
  }));
  if (!u) return not_found("user", c.param(0));
  SystemTime now = core_.clock.now();
  if (core_.lockout.locked(u->id, now)) {
    return fail(Code::kUnauthenticated, "The account is locked for user: " + u->id + ".");
  }
  if (u->password_hash.empty() || original.size() > kMaxPasswordBytes ||
      !verify_password(original, u->password_hash)) {
    core_.lockout.record_failure(u->id, now);
    return fail(Code::kUnauthenticated, "Error when changing user password: invalid password.");
  }
  core_.lockout.record_success(u->id);
  CONCORD_ASSIGN_OR_RETURN(std::string hash, core_.hash_secret(password.value));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> fresh, repo::get_user(tx, c.param(0)));
    if (!fresh) return not_found("user", c.param(0));
    fresh->password_hash = hash;
    fresh->password_expires_at.reset();
    CONCORD_RETURN_IF_ERROR(repo::update_user(tx, *fresh));
    CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kUser, fresh->id, core_.clock.now()));
    return ws.change(tx, kinds::kUser, fresh->id, "update");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::list_user_projects(Call& c) {
  auto name = c.req.query_param("name");
  auto domain_id = c.req.query_param("domain_id");
  auto enabled = api::bool_query(c.req, "enabled");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(0)));
    if (!u) return not_found("user", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> ids,
                             repo::targets_of_user(tx, u->id, TargetType::kProject));
    std::vector<Project> projects;
    for (const std::string& id : ids) {
      CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, repo::get_project(tx, id));
      if (!p || p->is_domain) continue;
      if (name && p->name != *name) continue;
      if (domain_id && p->domain_id != *domain_id) continue;
      if (enabled && p->enabled != *enabled) continue;
      projects.push_back(std::move(*p));
    }
    std::sort(projects.begin(), projects.end(), [](const Project& a, const Project& b) {
      return a.name != b.name ? a.name < b.name : a.id < b.id;
    });
    items = Json::array();
    for (const Project& p : projects) items.push_back(api::render_project(p, c));
    return ok();
  }));
  return json(200, collection(c, "projects", std::move(items)));
}

Result<http::Response> Api::list_user_groups(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(0)));
    if (!u) return not_found("user", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::vector<Group> groups, repo::list_user_groups(tx, u->id));
    items = Json::array();
    for (const Group& g : groups) items.push_back(api::render_group(g, c));
    return ok();
  }));
  return json(200, collection(c, "groups", std::move(items)));
}

// ---------------------------------------------------------------------------------------------
// Groups

Result<http::Response> Api::list_groups(Call& c) {
  repo::GroupFilter f;
  f.name = c.req.query_param("name");
  f.domain_id = c.req.query_param("domain_id");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Group> groups, repo::list_groups(tx, f));
    items = Json::array();
    for (const Group& g : groups) items.push_back(api::render_group(g, c));
    return ok();
  }));
  return json(200, collection(c, "groups", std::move(items)));
}

Result<http::Response> Api::create_group(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "group"));
  Group g;
  g.id = new_hex_id();
  CONCORD_ASSIGN_OR_RETURN(g.name, input::required_string(body, "name", kIdentityName));
  CONCORD_ASSIGN_OR_RETURN(input::Str domain_id, input::string_field(body, "domain_id", kId));
  g.domain_id = domain_id.has_value() ? domain_id.value : default_domain_for(c);
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  if (desc.has_value()) g.description = desc.value;
  api::merge_extra(g.extra, body, {"name", "domain_id", "description"});
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project domain, load_domain(tx, g.domain_id));
    (void)domain;
    repo::GroupFilter f;
    f.name = g.name;
    f.domain_id = g.domain_id;
    CONCORD_ASSIGN_OR_RETURN(std::vector<Group> dup, repo::list_groups(tx, f));
    if (!dup.empty()) {
      return conflict("group",
                      "Duplicate entry found with name " + g.name + " at domain ID " + g.domain_id);
    }
    CONCORD_RETURN_IF_ERROR(repo::insert_group(tx, g, core_.now_us()));
    return ws.change(tx, kinds::kGroup, g.id, "create");
  }));
  return json(201, {{"group", api::render_group(g, c)}});
}

Result<http::Response> Api::get_group(Call& c) {
  return api::get_stored<Group>(core_, c, "group", repo::get_group, api::render_group);
}

Result<http::Response> Api::update_group(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "group"));
  if (body.empty()) return input::invalid("group", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(input::Str name, input::string_field(body, "name", kIdentityName));
  CONCORD_ASSIGN_OR_RETURN(input::Str domain_id, input::string_field(body, "domain_id", kId));
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  Group g;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Group> found, repo::get_group(tx, c.param(0)));
    if (!found) return not_found("group", c.param(0));
    g = std::move(*found);
    if (domain_id.has_value() && domain_id.value != g.domain_id) {
      return fail(Code::kInvalidArgument, "Cannot change the domain of a group.");
    }
    if (name.has_value() && name.value != g.name) {
      repo::GroupFilter f;
      f.name = name.value;
      f.domain_id = g.domain_id;
      CONCORD_ASSIGN_OR_RETURN(std::vector<Group> dup, repo::list_groups(tx, f));
      if (!dup.empty()) {
        return conflict("group", "Duplicate entry found with name " + name.value +
                                     " at domain ID " + g.domain_id);
      }
      g.name = name.value;
    }
    if (desc.present) {
      g.description = desc.null ? std::optional<std::string>() : std::optional(desc.value);
    }
    api::merge_extra(g.extra, body, {"name", "domain_id", "description"});
    CONCORD_RETURN_IF_ERROR(repo::update_group(tx, g));
    return ws.change(tx, kinds::kGroup, g.id, "update");
  }));
  return json(200, {{"group", api::render_group(g, c)}});
}

Status Api::cascade_delete_group(store::Tx& tx, WriteSet& ws, const Group& g) {
  CONCORD_RETURN_IF_ERROR(repo::delete_memberships_of_group(tx, g.id));
  CONCORD_RETURN_IF_ERROR(repo::delete_assignments_of_actor(tx, ActorType::kGroup, g.id));
  CONCORD_RETURN_IF_ERROR(repo::delete_group(tx, g.id));
  CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kAssignment, g.id, "delete"));
  return ws.change(tx, kinds::kGroup, g.id, "delete");
}

Result<http::Response> Api::delete_group(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Group> g, repo::get_group(tx, c.param(0)));
    if (!g) return not_found("group", c.param(0));
    return cascade_delete_group(tx, ws, *g);
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::list_group_users(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Group> g, repo::get_group(tx, c.param(0)));
    if (!g) return not_found("group", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::vector<User> users, repo::list_group_users(tx, g->id));
    items = Json::array();
    for (const User& u : users) items.push_back(api::render_user(u, c));
    return ok();
  }));
  return json(200, collection(c, "users", std::move(items)));
}

Result<http::Response> Api::add_group_user(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Group> g, repo::get_group(tx, c.param(0)));
    if (!g) return not_found("group", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(1)));
    if (!u) return not_found("user", c.param(1));
    CONCORD_RETURN_IF_ERROR(repo::add_member(tx, g->id, u->id));
    return ws.change(tx, kinds::kMembership, u->id, "update");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::check_group_user(Call& c) {
  bool member = false;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Group> g, repo::get_group(tx, c.param(0)));
    if (!g) return not_found("group", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(1)));
    if (!u) return not_found("user", c.param(1));
    CONCORD_ASSIGN_OR_RETURN(member, repo::is_member(tx, g->id, u->id));
    return ok();
  }));
  if (!member) {
    return fail(Code::kNotFound, "User '" + sanitize_utf8(c.param(1)) + "' not found in group '" +
                                     sanitize_utf8(c.param(0)) + "'.");
  }
  return http::Response::empty(204);
}

Result<http::Response> Api::remove_group_user(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Group> g, repo::get_group(tx, c.param(0)));
    if (!g) return not_found("group", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(1)));
    if (!u) return not_found("user", c.param(1));
    CONCORD_ASSIGN_OR_RETURN(bool removed, repo::remove_member(tx, g->id, u->id));
    if (!removed) {
      return fail(Code::kNotFound, "User '" + u->id + "' not found in group '" + g->id + "'.");
    }
    return ws.change(tx, kinds::kMembership, u->id, "update");
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// Application credentials

namespace {

Status forbid_restricted(const AuthContext& caller) {
  if (!caller.app_cred_id.empty() && caller.app_cred_restricted) {
    return fail(Code::kPermissionDenied,
                "You are not authorized to perform the requested action: Using method "
                "'application_credential' is not allowed for managing additional application "
                "credentials.");
  }
  return ok();
}

Result<Json> access_rules(const Json& body) {
  auto it = body.find("access_rules");
  if (it == body.end() || it->is_null()) return Json::array();
  if (!it->is_array()) return input::invalid("access_rules", "is not of type 'array'");
  Json out = Json::array();
  for (const Json& rule : *it) {
    if (!rule.is_object()) return input::invalid("access_rules", "items must be objects");
    Json r = Json::object();
    for (auto f = rule.begin(); f != rule.end(); ++f) {
      const std::string& k = f.key();
      if (k != "path" && k != "method" && k != "service" && k != "id") {
        return input::invalid("access_rules", "Additional properties are not allowed ('" +
                                                  sanitize_utf8(k) + "' was unexpected)");
      }
      if (!f->is_string()) return input::invalid("access_rules/" + k, "is not of type 'string'");
      r[k] = *f;
    }
    if (!r.contains("id")) r["id"] = new_hex_id();
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

Result<http::Response> Api::create_app_cred(Call& c) {
  const AuthContext& caller = *c.caller;
  CONCORD_RETURN_IF_ERROR(forbid_restricted(caller));
  if (caller.user_id != c.param(0)) {
    return fail(Code::kPermissionDenied,
                "You are not authorized to perform the requested action: Cannot create an "
                "application credential for another user.");
  }
  if (caller.scope != ScopeKind::kProject) {
    return fail(Code::kInvalidArgument,
                "Invalid application credential: a project-scoped token is required.");
  }
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "application_credential"));
  AppCred a;
  a.id = new_hex_id();
  a.user_id = caller.user_id;
  a.project_id = caller.project_id;
  a.created_at = core_.now_us();
  CONCORD_ASSIGN_OR_RETURN(a.name, input::required_string(body, "name", kIdentityName));
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  if (desc.has_value()) a.description = desc.value;
  CONCORD_ASSIGN_OR_RETURN(input::Str secret, password_field(body, "secret", true));
  std::string plain = secret.has_value() && !secret.value.empty() ? secret.value : random_token(64);
  CONCORD_ASSIGN_OR_RETURN(input::Str expires, input::string_field(body, "expires_at", kNullable));
  if (expires.has_value()) {
    auto t = parse_iso_time(expires.value);
    if (!t) {
      return fail(Code::kInvalidArgument,
                  "Timestamp not in expected format. The server could not comply with the "
                  "request since it is either malformed or otherwise incorrect.");
    }
    if (*t <= core_.clock.now()) {
      return fail(Code::kInvalidArgument, "The 'expires_at' must not be before now.");
    }
    a.expires_at = to_micros(*t);
  }
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> unrestricted,
                           input::bool_field(body, "unrestricted"));
  a.unrestricted = unrestricted.value_or(false);
  CONCORD_ASSIGN_OR_RETURN(a.access_rules, access_rules(body));

  // Roles: by default the token's; any named role must be one the token carries.
  auto roles_it = body.find("roles");
  if (roles_it == body.end() || roles_it->is_null() ||
      (roles_it->is_array() && roles_it->empty())) {
    for (const RoleRef& r : caller.roles) a.role_ids.push_back(r.id);
  } else {
    if (!roles_it->is_array()) return input::invalid("roles", "is not of type 'array'");
    for (const Json& item : *roles_it) {
      if (!item.is_object() || item.size() != 1 ||
          !(item.contains("id") || item.contains("name"))) {
        return input::invalid("roles", "each role must be {\"id\": ...} or {\"name\": ...}");
      }
      const Json& v = item.begin().value();
      if (!v.is_string()) return input::invalid("roles", "role ids and names are strings");
      std::string want = v.get<std::string>();
      bool by_id = item.contains("id");
      auto found = std::find_if(caller.roles.begin(), caller.roles.end(), [&](const RoleRef& r) {
        return by_id ? r.id == want : r.name == want;
      });
      if (found == caller.roles.end()) {
        return fail(Code::kInvalidArgument,
                    "Invalid application credential: Cannot create an application credential "
                    "with unassigned role");
      }
      if (std::find(a.role_ids.begin(), a.role_ids.end(), found->id) == a.role_ids.end()) {
        a.role_ids.push_back(found->id);
      }
    }
  }
  CONCORD_ASSIGN_OR_RETURN(a.secret_hash, core_.hash_secret(plain));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_app_cred_by_name(tx, a.user_id, a.name));
    if (dup) return conflict("application_credential", "Duplicate entry found with name " + a.name);
    CONCORD_RETURN_IF_ERROR(register_access_rules(tx, ws, a));
    CONCORD_RETURN_IF_ERROR(repo::insert_app_cred(tx, a));
    return ws.change(tx, kinds::kAppCred, a.id, "create", a.project_id);
  }));
  CONCORD_ASSIGN_OR_RETURN(auto roles, core_.dir.roles());
  Json rendered = api::render_app_cred(a, *roles, c);
  rendered["secret"] = plain;
  return json(201, {{"application_credential", std::move(rendered)}});
}

Result<http::Response> Api::list_app_creds(Call& c) {
  auto name = c.req.query_param("name");
  std::vector<AppCred> creds;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(0)));
    if (!u) return not_found("user", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(creds, repo::list_app_creds(tx, u->id, name));
    return ok();
  }));
  CONCORD_ASSIGN_OR_RETURN(auto roles, core_.dir.roles());
  Json items = Json::array();
  for (const AppCred& a : creds) items.push_back(api::render_app_cred(a, *roles, c));
  return json(200, collection(c, "application_credentials", std::move(items)));
}

Result<http::Response> Api::get_app_cred(Call& c) {
  std::optional<AppCred> a;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(a, repo::get_app_cred(tx, c.param(1)));
    return ok();
  }));
  if (!a || a->user_id != c.param(0)) return not_found("Application Credential", c.param(1));
  CONCORD_ASSIGN_OR_RETURN(auto roles, core_.dir.roles());
  return json(200, {{"application_credential", api::render_app_cred(*a, *roles, c)}});
}

Result<http::Response> Api::delete_app_cred(Call& c) {
  CONCORD_RETURN_IF_ERROR(forbid_restricted(*c.caller));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<AppCred> a, repo::get_app_cred(tx, c.param(1)));
    if (!a || a->user_id != c.param(0)) return not_found("Application Credential", c.param(1));
    CONCORD_RETURN_IF_ERROR(repo::delete_app_cred(tx, a->id));
    CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kAppCred, a->id, core_.clock.now()));
    return ws.change(tx, kinds::kAppCred, a->id, "delete", a->project_id);
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// OS-EC2 credentials

namespace {

Status forbid_delegated(const AuthContext& caller) {
  if (!caller.app_cred_id.empty()) {
    return fail(Code::kPermissionDenied,
                "You are not authorized to perform the requested action: Delegated tokens cannot "
                "access credentials directly.");
  }
  return ok();
}

Json render_ec2(const Ec2Credential& e, const Api::Call& c) {
  return {{"user_id", e.user_id},
          {"tenant_id", e.project_id},
          {"access", e.access},
          {"secret", e.secret},
          {"trust_id", nullptr},
          {"links", {{"self", c.link("users/" + e.user_id + "/credentials/OS-EC2/" + e.access)}}}};
}

}  // namespace

Result<http::Response> Api::list_ec2(Call& c) {
  CONCORD_RETURN_IF_ERROR(forbid_delegated(*c.caller));
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(0)));
    if (!u) return not_found("user", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::vector<Ec2Credential> creds, repo::list_ec2(tx, u->id));
    items = Json::array();
    for (const Ec2Credential& e : creds) items.push_back(render_ec2(e, c));
    return ok();
  }));
  return json(200, collection(c, "credentials", std::move(items)));
}

Result<http::Response> Api::create_ec2(Call& c) {
  CONCORD_RETURN_IF_ERROR(forbid_delegated(*c.caller));
  CONCORD_ASSIGN_OR_RETURN(Json body, input::parse_object(c.req.body));
  CONCORD_ASSIGN_OR_RETURN(
      std::string tenant_id,
      input::required_string(body, "tenant_id", {.min_len = 1, .max_len = 64}));
  Ec2Credential e{new_hex_id(), std::string(c.param(0)), tenant_id, new_hex_id()};
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, e.user_id));
    if (!u) return not_found("user", e.user_id);
    CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, repo::get_project(tx, e.project_id));
    if (!p || p->is_domain) return not_found("project", e.project_id);
    CONCORD_RETURN_IF_ERROR(repo::insert_ec2(tx, e, core_.now_us()));
    return ws.change(tx, kinds::kEc2Credential, e.access, "create", e.project_id);
  }));
  return json(201, {{"credential", render_ec2(e, c)}});
}

Result<http::Response> Api::get_ec2(Call& c) {
  CONCORD_RETURN_IF_ERROR(forbid_delegated(*c.caller));
  std::optional<Ec2Credential> e;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(0)));
    if (!u) return not_found("user", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(e, repo::get_ec2(tx, c.param(1)));
    return ok();
  }));
  if (!e || e->user_id != c.param(0)) return not_found("credential", c.param(1));
  return json(200, {{"credential", render_ec2(*e, c)}});
}

Result<http::Response> Api::delete_ec2(Call& c) {
  CONCORD_RETURN_IF_ERROR(forbid_delegated(*c.caller));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Ec2Credential> e, repo::get_ec2(tx, c.param(1)));
    if (!e || e->user_id != c.param(0)) return not_found("credential", c.param(1));
    CONCORD_ASSIGN_OR_RETURN(bool removed, repo::delete_ec2(tx, e->access));
    (void)removed;
    return ws.change(tx, kinds::kEc2Credential, e->access, "delete", e->project_id);
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// Access rules: Keystone keeps a user's application-credential access rules as resources of
// their own (kind access_rule: {user_id, service, path, method}), shared by every credential
// that names the same rule and kept after the credentials are gone until deleted.

Status Api::register_access_rules(store::Tx& tx, WriteSet& ws, AppCred& a) {
  if (!a.access_rules.is_array() || a.access_rules.empty()) return ok();
  CONCORD_ASSIGN_OR_RETURN(std::vector<Document> existing,
                           repo::list_documents(tx, documents::kAccessRule));
  for (Json& rule : a.access_rules) {
    std::optional<std::string> reuse;
    for (const Document& d : existing) {
      if (d.data.value("user_id", "") != a.user_id) continue;
      bool same = d.data.value("service", "") == rule.value("service", "") &&
                  d.data.value("path", "") == rule.value("path", "") &&
                  d.data.value("method", "") == rule.value("method", "");
      if (same || d.id == rule.value("id", "")) {
        reuse = d.id;
        break;
      }
    }
    if (reuse) {
      rule["id"] = *reuse;
      for (const Document& d : existing) {
        if (d.id != *reuse) continue;
        rule["service"] = d.data.value("service", "");
        rule["path"] = d.data.value("path", "");
        rule["method"] = d.data.value("method", "");
      }
      continue;
    }
    Document d{std::string(documents::kAccessRule), rule.value("id", new_hex_id()),
               Json{{"user_id", a.user_id},
                    {"service", rule.value("service", "")},
                    {"path", rule.value("path", "")},
                    {"method", rule.value("method", "")}}};
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> taken,
                             repo::get_document(tx, documents::kAccessRule, d.id));
    if (taken) d.id = new_hex_id();  // another user's rule id: never share across users
    rule["id"] = d.id;
    CONCORD_RETURN_IF_ERROR(repo::insert_document(tx, d, core_.now_us()));
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kDocument, "access_rule/" + d.id, "create"));
    existing.push_back(std::move(d));
  }
  return ok();
}

namespace {
Json render_access_rule(const Document& d, const Api::Call& c) {
  return {{"id", d.id},
          {"service", d.data.value("service", "")},
          {"path", d.data.value("path", "")},
          {"method", d.data.value("method", "")},
          {"links",
           {{"self", c.link("users/" + d.data.value("user_id", "") + "/access_rules/" + d.id)}}}};
}
}  // namespace

Result<http::Response> Api::list_access_rules(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    items = Json::array();
    CONCORD_ASSIGN_OR_RETURN(std::optional<User> u, repo::get_user(tx, c.param(0)));
    if (!u) return not_found("user", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::vector<Document> rules,
                             repo::list_documents(tx, documents::kAccessRule));
    for (const Document& d : rules) {
      if (d.data.value("user_id", "") == u->id) items.push_back(render_access_rule(d, c));
    }
    return ok();
  }));
  return json(200, collection(c, "access_rules", std::move(items)));
}

Result<http::Response> Api::get_access_rule(Call& c) {
  std::optional<Document> d;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(d, repo::get_document(tx, documents::kAccessRule, c.param(1)));
    return ok();
  }));
  if (!d || d->data.value("user_id", "") != c.param(0)) {
    return not_found("access rule", c.param(1));
  }
  return json(200, {{"access_rule", render_access_rule(*d, c)}});
}

Result<http::Response> Api::delete_access_rule(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> d,
                             repo::get_document(tx, documents::kAccessRule, c.param(1)));
    if (!d || d->data.value("user_id", "") != c.param(0)) {
      return not_found("access rule", c.param(1));
    }
    CONCORD_ASSIGN_OR_RETURN(std::vector<AppCred> creds,
                             repo::list_app_creds(tx, c.param(0), std::nullopt));
    for (const AppCred& a : creds) {
      if (!a.access_rules.is_array()) continue;
      for (const Json& rule : a.access_rules) {
        if (rule.value("id", "") == d->id) {
          return fail(Code::kPermissionDenied,
                      "You are not authorized to perform the requested action: Cannot delete "
                      "access rule " +
                          d->id + " because it is in use by application credential " + a.id + ".");
        }
      }
    }
    CONCORD_ASSIGN_OR_RETURN(bool gone, repo::delete_document(tx, documents::kAccessRule, d->id));
    (void)gone;
    return ws.change(tx, kinds::kDocument, "access_rule/" + d->id, "delete");
  }));
  return http::Response::empty(204);
}

}  // namespace concord::identity

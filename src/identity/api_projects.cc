// Domains, projects and project tags.
#include <algorithm>
#include <nlohmann/json.hpp>

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

// Keystone: names of projects and domains are 1..64 characters with a non-blank one.
const input::StrRule kProjectName{.min_len = 1, .max_len = 64, .non_blank = true};
const input::StrRule kNullableId{.min_len = 1, .max_len = 64, .nullable = true, .id_chars = true};
const input::StrRule kDescription{.nullable = true};

std::string trim(std::string s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

}  // namespace

void Api::add_project_routes() {
  add(Method::kGet, "/v3/domains", "identity:list_domains",
      [this](Call& c) { return list_domains(c); });
  add(Method::kPost, "/v3/domains", "identity:create_domain",
      [this](Call& c) { return create_domain(c); });
  add(Method::kGet, "/v3/domains/{domain_id}", "identity:get_domain",
      [this](Call& c) { return get_domain(c); });
  add(Method::kPatch, "/v3/domains/{domain_id}", "identity:update_domain",
      [this](Call& c) { return update_domain(c); });
  add(Method::kDelete, "/v3/domains/{domain_id}", "identity:delete_domain",
      [this](Call& c) { return delete_domain(c); });

  add(Method::kGet, "/v3/projects", "identity:list_projects",
      [this](Call& c) { return list_projects(c); });
  add(Method::kPost, "/v3/projects", "identity:create_project",
      [this](Call& c) { return create_project(c); });
  add(Method::kGet, "/v3/projects/{project_id}", "identity:get_project",
      [this](Call& c) { return get_project(c); });
  add(Method::kPatch, "/v3/projects/{project_id}", "identity:update_project",
      [this](Call& c) { return update_project(c); });
  add(Method::kDelete, "/v3/projects/{project_id}", "identity:delete_project",
      [this](Call& c) { return delete_project(c); });

  add(Method::kGet, "/v3/projects/{project_id}/tags", "identity:list_project_tags",
      [this](Call& c) { return list_tags(c); });
  add(Method::kPut, "/v3/projects/{project_id}/tags", "identity:update_project_tags",
      [this](Call& c) { return replace_tags(c); });
  add(Method::kDelete, "/v3/projects/{project_id}/tags", "identity:delete_project_tags",
      [this](Call& c) { return delete_tags(c); });
  add(Method::kGet, "/v3/projects/{project_id}/tags/{tag}", "identity:get_project_tag",
      [this](Call& c) { return check_tag(c); });
  add(Method::kPut, "/v3/projects/{project_id}/tags/{tag}", "identity:create_project_tag",
      [this](Call& c) { return add_tag(c); });
  add(Method::kDelete, "/v3/projects/{project_id}/tags/{tag}", "identity:delete_project_tag",
      [this](Call& c) { return delete_tag(c); });
}

// ---------------------------------------------------------------------------------------------
// Domains

Result<http::Response> Api::list_domains(Call& c) {
  repo::ProjectFilter f;
  f.is_domain = true;
  f.name = c.req.query_param("name");
  f.enabled = api::bool_query(c.req, "enabled");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Project> domains, repo::list_projects(tx, f));
    items = Json::array();
    for (const Project& d : domains) items.push_back(api::render_domain(d, c));
    return ok();
  }));
  return json(200, collection(c, "domains", std::move(items)));
}

Result<http::Response> Api::create_domain(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "domain"));
  Project d;
  d.id = new_hex_id();
  d.is_domain = true;
  d.domain_id = std::string(kDomainRoot);
  CONCORD_ASSIGN_OR_RETURN(d.name, input::required_string(body, "name", kProjectName));
  d.name = trim(d.name);
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kDescription));
  d.description = desc.has_value() ? desc.value : std::string();
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  d.enabled = enabled.value_or(true);
  CONCORD_ASSIGN_OR_RETURN(auto tags, api::tags_field(body));
  if (tags) d.tags = std::move(*tags);
  api::merge_extra(d.extra, body,
                   {"name", "description", "enabled", "tags", "options", "domain_id", "parent_id",
                    "is_domain", "explicit_domain_id"});
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_project_by_name(tx, kDomainRoot, d.name));
    if (dup) return conflict("domain", "Duplicate entry found with name " + d.name);
    CONCORD_RETURN_IF_ERROR(repo::insert_project(tx, d, core_.now_us()));
    return ws.change(tx, kinds::kProject, d.id, "create", d.id);
  }));
  return json(201, {{"domain", api::render_domain(d, c)}});
}

Result<http::Response> Api::get_domain(Call& c) {
  // Through the cache: every project member reads its domain.
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> d, core_.dir.project(c.param(0)));
  if (!d || !d->is_domain) return not_found("domain", c.param(0));
  return json(200, {{"domain", api::render_domain(*d, c)}});
}

Result<http::Response> Api::update_domain(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "domain"));
  if (body.empty()) return input::invalid("domain", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(input::Str name, input::string_field(body, "name", kProjectName));
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kDescription));
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  CONCORD_ASSIGN_OR_RETURN(auto tags, api::tags_field(body));
  CONCORD_ASSIGN_OR_RETURN(input::Str id, input::string_field(body, "id"));
  if (id.has_value() && id.value != c.param(0)) {
    return fail(Code::kInvalidArgument, "Cannot change the ID of a domain.");
  }
  Project d;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(d, load_domain(tx, c.param(0)));
    bool was_enabled = d.enabled;
    if (name.has_value()) {
      std::string new_name = trim(name.value);
      if (new_name != d.name) {
        CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_project_by_name(tx, kDomainRoot, new_name));
        if (dup) return conflict("domain", "Duplicate entry found with name " + new_name);
        d.name = new_name;
      }
    }
    if (desc.present) d.description = desc.null ? std::string() : desc.value;
    if (enabled) d.enabled = *enabled;
    if (tags) d.tags = std::move(*tags);
    api::merge_extra(d.extra, body,
                     {"name", "description", "enabled", "tags", "options", "domain_id", "parent_id",
                      "is_domain"});
    CONCORD_RETURN_IF_ERROR(repo::update_project(tx, d));
    if (was_enabled && !d.enabled) {
      CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kDomain, d.id, core_.clock.now()));
    }
    return ws.change(tx, kinds::kProject, d.id, "update", d.id);
  }));
  return json(200, {{"domain", api::render_domain(d, c)}});
}

Status Api::cascade_delete_project(store::Tx& tx, WriteSet& ws, const Project& p) {
  SystemTime now = core_.clock.now();
  if (p.is_domain) {
    // Everything owned by the domain goes with it: projects, users, groups, domain roles.
    repo::ProjectFilter pf;
    pf.domain_id = p.id;
    CONCORD_ASSIGN_OR_RETURN(std::vector<Project> projects, repo::list_projects(tx, pf));
    for (const Project& child : projects) {
      CONCORD_RETURN_IF_ERROR(cascade_delete_project(tx, ws, child));
    }
    repo::UserFilter uf;
    uf.domain_id = p.id;
    CONCORD_ASSIGN_OR_RETURN(std::vector<User> users, repo::list_users(tx, uf));
    for (const User& u : users) CONCORD_RETURN_IF_ERROR(cascade_delete_user(tx, ws, u));
    repo::GroupFilter gf;
    gf.domain_id = p.id;
    CONCORD_ASSIGN_OR_RETURN(std::vector<Group> groups, repo::list_groups(tx, gf));
    for (const Group& g : groups) CONCORD_RETURN_IF_ERROR(cascade_delete_group(tx, ws, g));
    repo::RoleFilter rf;
    rf.domain_id = p.id;
    CONCORD_ASSIGN_OR_RETURN(std::vector<Role> roles, repo::list_roles(tx, rf));
    for (const Role& r : roles) {
      CONCORD_RETURN_IF_ERROR(repo::delete_role(tx, r.id));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kRole, r.id, "delete"));
    }
    CONCORD_RETURN_IF_ERROR(repo::delete_assignments_on_target(tx, TargetType::kDomain, p.id));
    CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kDomain, p.id, now));
  } else {
    CONCORD_RETURN_IF_ERROR(repo::delete_assignments_on_target(tx, TargetType::kProject, p.id));
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> creds,
                             repo::app_cred_ids_of_project(tx, p.id));
    for (const std::string& id : creds) {
      CONCORD_RETURN_IF_ERROR(repo::delete_app_cred(tx, id));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kAppCred, id, "delete"));
    }
    CONCORD_RETURN_IF_ERROR(repo::clear_default_project(tx, p.id));
    CONCORD_RETURN_IF_ERROR(repo::delete_ec2_of_project(tx, p.id));
    CONCORD_ASSIGN_OR_RETURN(
        std::vector<std::string> creds_gone,
        repo::delete_documents_where(tx, documents::kCredential, "project_id", p.id));
    for (const std::string& id : creds_gone) {
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kDocument, "credential/" + id, "delete"));
    }
    CONCORD_ASSIGN_OR_RETURN(
        std::vector<std::string> eg_gone,
        repo::delete_documents_where(tx, documents::kEndpointGroupProject, "project_id", p.id));
    for (const std::string& id : eg_gone) {
      CONCORD_RETURN_IF_ERROR(
          ws.change(tx, kinds::kDocument, "endpoint_group_project/" + id, "delete"));
    }
    CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kProject, p.id, now));
  }
  if (p.is_domain) {
    CONCORD_ASSIGN_OR_RETURN(bool had_config,
                             repo::delete_document(tx, documents::kDomainConfig, p.id));
    (void)had_config;
  }
  CONCORD_RETURN_IF_ERROR(repo::delete_project(tx, p.id));
  CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kAssignment, p.id, "delete", p.id));
  return ws.change(tx, kinds::kProject, p.id, "delete", p.id);
}

Result<http::Response> Api::delete_domain(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project d, load_domain(tx, c.param(0)));
    if (d.enabled) {
      return fail(Code::kFailedPrecondition,
                  "Cannot delete a domain that is enabled, please disable it first.");
    }
    return cascade_delete_project(tx, ws, d);
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// Projects

Result<http::Response> Api::list_projects(Call& c) {
  // The admin listing is read often (every CLI name lookup); cache the body per query.
  uint64_t gen = core_.dir.list_generation(kinds::kProject);
  std::string key = "projects\x1f" + c.req.base_url + "\x1f" + c.req.path + "\x1f" + c.req.query;
  if (auto cached = core_.dir.cached_list(key, gen)) return http::Response::json(200, *cached);

  repo::ProjectFilter f;
  f.name = c.req.query_param("name");
  f.domain_id = c.req.query_param("domain_id");
  f.parent_id = c.req.query_param("parent_id");
  f.enabled = api::bool_query(c.req, "enabled");
  f.is_domain = api::bool_query(c.req, "is_domain").value_or(false);
  std::vector<std::string> all_tags, any_tags, not_tags, not_any_tags;
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
      size_t comma = s.find(',', start);
      if (comma == std::string::npos) comma = s.size();
      if (comma > start) out.push_back(s.substr(start, comma - start));
      start = comma + 1;
    }
    return out;
  };
  if (auto v = c.req.query_param("tags")) all_tags = split(*v);
  if (auto v = c.req.query_param("tags-any")) any_tags = split(*v);
  if (auto v = c.req.query_param("not-tags")) not_tags = split(*v);
  if (auto v = c.req.query_param("not-tags-any")) not_any_tags = split(*v);

  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Project> projects, repo::list_projects(tx, f));
    items = Json::array();
    for (const Project& p : projects) {
      auto has = [&](const std::string& t) {
        return std::find(p.tags.begin(), p.tags.end(), t) != p.tags.end();
      };
      if (!all_tags.empty() && !std::all_of(all_tags.begin(), all_tags.end(), has)) continue;
      if (!any_tags.empty() && !std::any_of(any_tags.begin(), any_tags.end(), has)) continue;
      if (!not_tags.empty() && std::all_of(not_tags.begin(), not_tags.end(), has)) continue;
      if (!not_any_tags.empty() && std::any_of(not_any_tags.begin(), not_any_tags.end(), has)) {
        continue;
      }
      items.push_back(api::render_project(p, c));
    }
    return ok();
  }));
  std::string body = dump_json(collection(c, "projects", std::move(items)));
  core_.dir.put_list(key, gen, body);
  return http::Response::json(200, std::move(body));
}

Result<http::Response> Api::create_project(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "project"));
  Project p;
  p.id = new_hex_id();
  CONCORD_ASSIGN_OR_RETURN(p.name, input::required_string(body, "name", kProjectName));
  p.name = trim(p.name);
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kDescription));
  p.description = desc.has_value() ? desc.value : std::string();
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  p.enabled = enabled.value_or(true);
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> is_domain, input::bool_field(body, "is_domain"));
  p.is_domain = is_domain.value_or(false);
  CONCORD_ASSIGN_OR_RETURN(input::Str domain_id,
                           input::string_field(body, "domain_id", kNullableId));
  CONCORD_ASSIGN_OR_RETURN(input::Str parent_id,
                           input::string_field(body, "parent_id", kNullableId));
  CONCORD_ASSIGN_OR_RETURN(auto tags, api::tags_field(body));
  if (tags) p.tags = std::move(*tags);
  CONCORD_ASSIGN_OR_RETURN(const Json* options, input::object_field(body, "options"));
  (void)options;
  api::merge_extra(
      p.extra, body,
      {"name", "description", "enabled", "is_domain", "domain_id", "parent_id", "tags", "options"});

  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    if (p.is_domain) {
      if (domain_id.has_value()) {
        return fail(Code::kInvalidArgument,
                    "A project acting as a domain cannot have a domain_id.");
      }
      if (parent_id.has_value()) {
        return fail(Code::kInvalidArgument, "only root projects are allowed to act as domains.");
      }
      p.domain_id = std::string(kDomainRoot);
      p.parent_id.clear();
      CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_project_by_name(tx, kDomainRoot, p.name));
      if (dup) {
        return conflict("project",
                        "it is not permitted to have two projects acting as domains with the "
                        "same name: " +
                            p.name);
      }
    } else {
      std::optional<Project> parent;
      if (parent_id.has_value()) {
        CONCORD_ASSIGN_OR_RETURN(parent, repo::get_project(tx, parent_id.value));
        // Keystone answers 400 here: the URL's resource exists, the body names a missing one.
        if (!parent) {
          return fail(Code::kInvalidArgument,
                      "Could not find project: " + sanitize_utf8(parent_id.value) + ".");
        }
      }
      if (domain_id.has_value()) {
        p.domain_id = domain_id.value;
      } else if (parent) {
        p.domain_id = parent->is_domain ? parent->id : parent->domain_id;
      } else {
        p.domain_id = default_domain_for(c);
      }
      if (auto domain = load_domain(tx, p.domain_id); !domain) {
        if (domain.error().code() != Code::kNotFound) return std::unexpected(domain.error());
        return fail(Code::kInvalidArgument, domain.error().message());
      }
      if (parent) {
        std::string parent_domain = parent->is_domain ? parent->id : parent->domain_id;
        if (parent_domain != p.domain_id) {
          return fail(Code::kInvalidArgument,
                      "Cannot create project, since it specifies its domain_id " + p.domain_id +
                          ", but specifies a parent in a different domain (" + parent_domain +
                          ").");
        }
        // Keystone refuses a project under a disabled branch.
        std::optional<Project> cur = parent;
        for (int depth = 0; cur && !cur->is_domain && depth < 64; ++depth) {
          if (!cur->enabled) {
            return fail(
                Code::kInvalidArgument,
                "cannot create a project in a branch containing a disabled project: " + cur->id);
          }
          if (cur->parent_id.empty()) break;
          CONCORD_ASSIGN_OR_RETURN(cur, repo::get_project(tx, cur->parent_id));
        }
        p.parent_id = parent->id;
      } else {
        p.parent_id = p.domain_id;
      }
      CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_project_by_name(tx, p.domain_id, p.name));
      if (dup) {
        return conflict("project",
                        "it is not permitted to have two projects with either the same name or "
                        "same id in the same domain: name is " +
                            p.name + ", project id " + p.id);
      }
    }
    CONCORD_RETURN_IF_ERROR(repo::insert_project(tx, p, core_.now_us()));
    return ws.change(tx, kinds::kProject, p.id, "create", p.id);
  }));
  return json(201, {{"project", api::render_project(p, c)}});
}

Result<http::Response> Api::get_project(Call& c) {
  // Through the cache: clients look their project up on every command.
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> p, core_.dir.project(c.param(0)));
  if (!p) return not_found("project", c.param(0));
  return json(200, {{"project", api::render_project(*p, c)}});
}

Result<http::Response> Api::update_project(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "project"));
  if (body.empty()) return input::invalid("project", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(input::Str name, input::string_field(body, "name", kProjectName));
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kDescription));
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> is_domain, input::bool_field(body, "is_domain"));
  CONCORD_ASSIGN_OR_RETURN(input::Str domain_id,
                           input::string_field(body, "domain_id", kNullableId));
  CONCORD_ASSIGN_OR_RETURN(input::Str parent_id,
                           input::string_field(body, "parent_id", kNullableId));
  CONCORD_ASSIGN_OR_RETURN(auto tags, api::tags_field(body));
  CONCORD_ASSIGN_OR_RETURN(input::Str id, input::string_field(body, "id"));
  if (id.has_value() && id.value != c.param(0)) {
    return fail(Code::kInvalidArgument, "Cannot change the ID of a project.");
  }
  Project p;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(p, load_project(tx, c.param(0)));
    if (is_domain && *is_domain != p.is_domain) {
      return fail(Code::kInvalidArgument, "Update of is_domain is not allowed.");
    }
    std::string current_domain = p.is_domain ? std::string() : p.domain_id;
    if (domain_id.present && (domain_id.null ? std::string() : domain_id.value) != current_domain) {
      return fail(Code::kInvalidArgument, "Update of domain_id is not allowed.");
    }
    if (parent_id.present && (parent_id.null ? std::string() : parent_id.value) != p.parent_id) {
      return fail(Code::kFailedPrecondition, "Update of `parent_id` is not allowed.");
    }
    bool was_enabled = p.enabled;
    if (name.has_value()) {
      std::string new_name = trim(name.value);
      if (new_name != p.name) {
        CONCORD_ASSIGN_OR_RETURN(auto dup, repo::find_project_by_name(tx, p.domain_id, new_name));
        if (dup) {
          return conflict("project",
                          "it is not permitted to have two projects with the same name in the "
                          "same domain: " +
                              new_name);
        }
        p.name = new_name;
      }
    }
    if (desc.present) p.description = desc.null ? std::string() : desc.value;
    if (enabled) p.enabled = *enabled;
    if (tags) p.tags = std::move(*tags);
    api::merge_extra(p.extra, body,
                     {"name", "description", "enabled", "is_domain", "domain_id", "parent_id",
                      "tags", "options"});
    CONCORD_RETURN_IF_ERROR(repo::update_project(tx, p));
    if (was_enabled && !p.enabled) {
      CONCORD_RETURN_IF_ERROR(
          ws.revoke(tx, p.is_domain ? RevocationKind::kDomain : RevocationKind::kProject, p.id,
                    core_.clock.now()));
    }
    return ws.change(tx, kinds::kProject, p.id, "update", p.id);
  }));
  return json(200, {{"project", api::render_project(p, c)}});
}

Result<http::Response> Api::delete_project(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project p, load_project(tx, c.param(0)));
    if (p.is_domain && p.enabled) {
      return fail(Code::kFailedPrecondition,
                  "Cannot delete a domain that is enabled, please disable it first.");
    }
    if (!p.is_domain) {
      CONCORD_ASSIGN_OR_RETURN(bool children, repo::project_has_children(tx, p.id));
      if (children) {
        return fail(Code::kFailedPrecondition,
                    "Cannot delete the project " + p.id +
                        " since it is not a leaf in the hierarchy. Use the cascade option if you "
                        "want to delete a whole subtree.");
      }
    }
    return cascade_delete_project(tx, ws, p);
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// Tags

Result<http::Response> Api::list_tags(Call& c) {
  Project p;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(p, load_project(tx, c.param(0)));
    return ok();
  }));
  return json(200, {{"tags", p.tags}});
}

Result<http::Response> Api::replace_tags(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::parse_object(c.req.body));
  auto it = body.find("tags");
  if (it == body.end())
    return fail(Code::kInvalidArgument, "Expecting to find tags in request body.");
  CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> tags, api::tag_list(*it, "tags"));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project p, load_project(tx, c.param(0)));
    p.tags = tags;
    CONCORD_RETURN_IF_ERROR(repo::update_project(tx, p));
    return ws.change(tx, kinds::kProject, p.id, "update", p.id);
  }));
  return json(200, {{"tags", tags}});
}

Result<http::Response> Api::check_tag(Call& c) {
  Project p;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(p, load_project(tx, c.param(0)));
    return ok();
  }));
  if (std::find(p.tags.begin(), p.tags.end(), c.param(1)) == p.tags.end()) {
    return not_found("project tag", c.param(1));
  }
  return http::Response::empty(204);
}

Result<http::Response> Api::add_tag(Call& c) {
  std::string tag(c.param(1));
  CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> checked,
                           api::tag_list(Json::array({tag}), "tag"));
  (void)checked;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project p, load_project(tx, c.param(0)));
    if (std::find(p.tags.begin(), p.tags.end(), tag) != p.tags.end()) return ok();
    if (p.tags.size() >= 80) {
      return fail(Code::kInvalidArgument, "A project may have at most 80 tags.");
    }
    p.tags.push_back(tag);
    CONCORD_RETURN_IF_ERROR(repo::update_project(tx, p));
    return ws.change(tx, kinds::kProject, p.id, "update", p.id);
  }));
  http::Response r = http::Response::empty(201);
  r.set_header("location", c.link("projects/" + std::string(c.param(0)) + "/tags/" + tag));
  return r;
}

Result<http::Response> Api::delete_tags(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project p, load_project(tx, c.param(0)));
    p.tags.clear();
    CONCORD_RETURN_IF_ERROR(repo::update_project(tx, p));
    return ws.change(tx, kinds::kProject, p.id, "update", p.id);
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::delete_tag(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project p, load_project(tx, c.param(0)));
    auto it = std::find(p.tags.begin(), p.tags.end(), c.param(1));
    if (it == p.tags.end()) return not_found("project tag", c.param(1));
    p.tags.erase(it);
    CONCORD_RETURN_IF_ERROR(repo::update_project(tx, p));
    return ws.change(tx, kinds::kProject, p.id, "update", p.id);
  }));
  return http::Response::empty(204);
}

}  // namespace concord::identity

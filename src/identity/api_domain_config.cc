// Domain-specific configuration (/v3/domains/{domain_id}/config...): Keystone lets an
// administrator store per-domain overrides of the [identity] and [ldap] option groups. Concord
// has no LDAP driver, so the configuration is stored and served (as Keystone's API does) but
// does not change how the domain's users are looked up; docs/design/identity.md says so.
//
// The configuration of a domain is one document (kind domain_config, id = domain id) holding
// {"<group>": {"<option>": value}}. Only Keystone's allowed groups and options are accepted;
// anything else is 403, as Keystone's InvalidDomainConfig.
#include <nlohmann/json.hpp>

#include "identity/api.h"
#include "identity/json_input.h"
#include "identity/repository.h"

namespace concord::identity {

using http::Method;
using namespace api;

namespace {

// Keystone 22's defaults for the options a domain may override (its whitelisted options;
// ldap.password is also allowed in a domain's configuration but never shown as a default).
const Json& default_config() {
  static const Json d = [] {
    auto parsed = parse_json(R"({
      "identity": {"driver": "sql", "list_limit": null},
      "ldap": {"url": "ldap://localhost", "user": null, "suffix": "cn=example,cn=com",
        "query_scope": "one", "page_size": 0, "alias_dereferencing": "default",
        "debug_level": null, "chase_referrals": null, "user_tree_dn": null,
        "user_filter": null, "user_objectclass": "inetOrgPerson", "user_id_attribute": "cn",
        "user_name_attribute": "sn", "user_mail_attribute": "mail",
        "user_description_attribute": "description", "user_pass_attribute": "userPassword",
        "user_enabled_attribute": "enabled", "user_enabled_invert": false,
        "user_enabled_mask": 0, "user_enabled_default": "True",
        "user_attribute_ignore": ["default_project_id"],
        "user_default_project_id_attribute": null, "user_enabled_emulation": false,
        "user_enabled_emulation_dn": null, "user_enabled_emulation_use_group_config": false,
        "user_additional_attribute_mapping": [], "group_tree_dn": null, "group_filter": null,
        "group_objectclass": "groupOfNames", "group_id_attribute": "cn",
        "group_name_attribute": "ou", "group_members_are_ids": false,
        "group_member_attribute": "member", "group_desc_attribute": "description",
        "group_attribute_ignore": [], "group_additional_attribute_mapping": [],
        "tls_cacertfile": null, "tls_cacertdir": null, "use_tls": false,
        "tls_req_cert": "demand", "use_pool": true, "pool_size": 10, "pool_retry_max": 3,
        "pool_retry_delay": 0.1, "pool_connection_timeout": -1,
        "pool_connection_lifetime": 600, "use_auth_pool": true, "auth_pool_size": 100,
        "auth_pool_connection_lifetime": 60}
    })");
    return parsed ? *parsed : Json::object();
  }();
  return d;
}

bool known_group(std::string_view group) {
  return group == "identity" || group == "ldap";
}

bool known_option(std::string_view group, std::string_view option) {
  if (!known_group(group)) return false;
  if (group == "ldap" && option == "password") return true;
  return default_config()[std::string(group)].contains(std::string(option));
}

std::unexpected<Error> invalid_config(std::string_view reason) {
  return fail(Code::kPermissionDenied,
              "Invalid domain specific configuration: " + sanitize_utf8(reason) + ".");
}

Status check_group(std::string_view group) {
  if (known_group(group)) return ok();
  return invalid_config("Group " + std::string(group) +
                        " is not supported for domain specific configurations");
}

Status check_option(std::string_view group, std::string_view option) {
  CONCORD_RETURN_IF_ERROR(check_group(group));
  if (known_option(group, option)) return ok();
  return invalid_config("Option " + std::string(option) + " in group " + std::string(group) +
                        " is not supported for domain specific configurations");
}

// {"<group>": {"<option>": value}} with allowed groups and options only.
Status check_config(const Json& config) {
  if (!config.is_object() || config.empty()) {
    return input::invalid("config", "must be a non-empty object");
  }
  for (auto g = config.begin(); g != config.end(); ++g) {
    CONCORD_RETURN_IF_ERROR(check_group(g.key()));
    if (!g->is_object()) return input::invalid("config", "each group must be an object");
    for (auto o = g->begin(); o != g->end(); ++o) {
      CONCORD_RETURN_IF_ERROR(check_option(g.key(), o.key()));
    }
  }
  return ok();
}

Result<Json> config_body(std::string_view body) {
  CONCORD_ASSIGN_OR_RETURN(Json obj, input::parse_object(body));
  auto it = obj.find("config");
  if (it == obj.end()) return input::invalid("config", "'config' is a required property");
  if (!it->is_object()) return input::invalid("config", "is not of type 'object'");
  return *it;
}

// The stored configuration as shown: ldap.password is write-only, as in Keystone.
Json shown(const Json& config) {
  Json out = config;
  if (out.contains("ldap") && out["ldap"].is_object()) out["ldap"].erase("password");
  return out;
}

}  // namespace

void Api::add_domain_config_routes() {
  const std::string base = "/v3/domains/{domain_id}/config";
  add(Method::kPut, base, "identity:create_domain_config",
      [this](Call& c) { return put_domain_config(c); });
  add(Method::kGet, base, "identity:get_domain_config",
      [this](Call& c) { return get_domain_config(c, 0); });
  add(Method::kPatch, base, "identity:update_domain_config",
      [this](Call& c) { return update_domain_config(c, 0); });
  add(Method::kDelete, base, "identity:delete_domain_config",
      [this](Call& c) { return delete_domain_config(c, 0); });
  add(Method::kGet, base + "/{group}", "identity:get_domain_config",
      [this](Call& c) { return get_domain_config(c, 1); });
  add(Method::kPatch, base + "/{group}", "identity:update_domain_config",
      [this](Call& c) { return update_domain_config(c, 1); });
  add(Method::kDelete, base + "/{group}", "identity:delete_domain_config",
      [this](Call& c) { return delete_domain_config(c, 1); });
  add(Method::kGet, base + "/{group}/{option}", "identity:get_domain_config",
      [this](Call& c) { return get_domain_config(c, 2); });
  add(Method::kPatch, base + "/{group}/{option}", "identity:update_domain_config",
      [this](Call& c) { return update_domain_config(c, 2); });
  add(Method::kDelete, base + "/{group}/{option}", "identity:delete_domain_config",
      [this](Call& c) { return delete_domain_config(c, 2); });
  add(Method::kGet, "/v3/domains/config/default", "identity:get_domain_config_default",
      [this](Call& c) { return default_domain_config(c, 0); });
  add(Method::kGet, "/v3/domains/config/{group}/default", "identity:get_domain_config_default",
      [this](Call& c) { return default_domain_config(c, 1); });
  add(Method::kGet, "/v3/domains/config/{group}/{option}/default",
      "identity:get_domain_config_default",
      [this](Call& c) { return default_domain_config(c, 2); });
}

Result<http::Response> Api::put_domain_config(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json config, config_body(c.req.body));
  CONCORD_RETURN_IF_ERROR(check_config(config));
  bool created = false;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project d, load_domain(tx, c.param(0)));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> cur,
                             repo::get_document(tx, documents::kDomainConfig, d.id));
    Document doc{std::string(documents::kDomainConfig), d.id, config};
    created = !cur;
    if (cur) {
      CONCORD_RETURN_IF_ERROR(repo::update_document(tx, doc));
    } else {
      CONCORD_RETURN_IF_ERROR(repo::insert_document(tx, doc, core_.now_us()));
    }
    return ws.change(tx, kinds::kDocument, "domain_config/" + d.id, created ? "create" : "update");
  }));
  return json(created ? 201 : 200, {{"config", shown(config)}});
}

Result<http::Response> Api::get_domain_config(Call& c, int depth) {
  std::optional<Document> doc;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project d, load_domain(tx, c.param(0)));
    CONCORD_ASSIGN_OR_RETURN(doc, repo::get_document(tx, documents::kDomainConfig, d.id));
    return ok();
  }));
  std::string group(c.param(1));
  std::string option(c.param(2));
  if (depth >= 1) CONCORD_RETURN_IF_ERROR(check_group(group));
  if (depth >= 2) CONCORD_RETURN_IF_ERROR(check_option(group, option));
  auto missing = [&]() {
    std::string what = depth == 0   ? std::string()
                       : depth == 1 ? " group " + group
                                    : " option " + option + " in group " + group;
    return fail(Code::kNotFound, "Could not find domain config" + sanitize_utf8(what) +
                                     " for domain " + sanitize_utf8(c.param(0)) + ".");
  };
  if (!doc) return missing();
  Json config = shown(doc->data);
  if (depth == 0) return json(200, {{"config", config}});
  if (!config.contains(group)) return missing();
  if (depth == 1) return json(200, {{"config", {{group, config[group]}}}});
  if (!config[group].contains(option)) return missing();
  return json(200, {{"config", {{option, config[group][option]}}}});
}

Result<http::Response> Api::update_domain_config(Call& c, int depth) {
  CONCORD_ASSIGN_OR_RETURN(Json patch, config_body(c.req.body));
  std::string group(c.param(1));
  std::string option(c.param(2));
  // Normalize every form to {"<group>": {"<option>": value}}.
  if (depth == 2) {
    CONCORD_RETURN_IF_ERROR(check_option(group, option));
    if (patch.size() != 1 || !patch.contains(option)) {
      return fail(Code::kInvalidArgument,
                  "The body must hold exactly the option named in the URL: " + option + ".");
    }
    patch = Json{{group, patch}};
  } else if (depth == 1) {
    CONCORD_RETURN_IF_ERROR(check_group(group));
    if (patch.size() != 1 || !patch.contains(group)) {
      return fail(Code::kInvalidArgument,
                  "The body must hold exactly the group named in the URL: " + group + ".");
    }
  }
  CONCORD_RETURN_IF_ERROR(check_config(patch));
  Json config;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project d, load_domain(tx, c.param(0)));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> cur,
                             repo::get_document(tx, documents::kDomainConfig, d.id));
    if (!cur) {
      return fail(Code::kNotFound, "Could not find domain config for domain " + d.id + ".");
    }
    if (depth >= 1 && !cur->data.contains(group)) {
      return fail(Code::kNotFound,
                  "Could not find domain config group " + group + " for domain " + d.id + ".");
    }
    if (depth == 2 && !cur->data[group].contains(option)) {
      return fail(Code::kNotFound, "Could not find domain config option " + option + " in group " +
                                       group + " for domain " + d.id + ".");
    }
    Document doc = *cur;
    for (auto g = patch.begin(); g != patch.end(); ++g) {
      for (auto o = g->begin(); o != g->end(); ++o) doc.data[g.key()][o.key()] = *o;
    }
    CONCORD_RETURN_IF_ERROR(repo::update_document(tx, doc));
    config = doc.data;
    return ws.change(tx, kinds::kDocument, "domain_config/" + d.id, "update");
  }));
  return json(200, {{"config", shown(config)}});
}

Result<http::Response> Api::delete_domain_config(Call& c, int depth) {
  std::string group(c.param(1));
  std::string option(c.param(2));
  if (depth >= 1) CONCORD_RETURN_IF_ERROR(check_group(group));
  if (depth >= 2) CONCORD_RETURN_IF_ERROR(check_option(group, option));
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Project d, load_domain(tx, c.param(0)));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> cur,
                             repo::get_document(tx, documents::kDomainConfig, d.id));
    if (!cur) {
      return fail(Code::kNotFound, "Could not find domain config for domain " + d.id + ".");
    }
    Document doc = *cur;
    if (depth == 0) {
      CONCORD_ASSIGN_OR_RETURN(bool gone, repo::delete_document(tx, doc.kind, doc.id));
      (void)gone;
      return ws.change(tx, kinds::kDocument, "domain_config/" + d.id, "delete");
    }
    if (!doc.data.contains(group) || (depth == 2 && !doc.data[group].contains(option))) {
      return fail(Code::kNotFound, "Could not find domain config " +
                                       (depth == 2 ? "option " + option + " in group " : "group ") +
                                       group + " for domain " + d.id + ".");
    }
    if (depth == 1) {
      doc.data.erase(group);
    } else {
      doc.data[group].erase(option);
      if (doc.data[group].empty()) doc.data.erase(group);
    }
    if (doc.data.empty()) {
      CONCORD_ASSIGN_OR_RETURN(bool gone, repo::delete_document(tx, doc.kind, doc.id));
      (void)gone;
    } else {
      CONCORD_RETURN_IF_ERROR(repo::update_document(tx, doc));
    }
    return ws.change(tx, kinds::kDocument, "domain_config/" + d.id, "update");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::default_domain_config(Call& c, int depth) {
  const Json& d = default_config();
  if (depth == 0) return json(200, {{"config", d}});
  std::string group(c.param(0));
  CONCORD_RETURN_IF_ERROR(check_group(group));
  if (depth == 1) return json(200, {{"config", {{group, d[group]}}}});
  std::string option(c.param(1));
  CONCORD_RETURN_IF_ERROR(check_option(group, option));
  if (!d[group].contains(option)) {
    // ldap.password: allowed in a domain's configuration, never shown.
    return invalid_config("Reading the default for option " + option + " in group " + group +
                          " is not allowed");
  }
  return json(200, {{"config", {{option, d[group][option]}}}});
}

}  // namespace concord::identity

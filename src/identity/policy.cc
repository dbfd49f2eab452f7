#include "identity/policy.h"

#include <algorithm>

namespace concord::identity {
namespace {

// The whole policy. Keep it sorted by area; the names match Keystone's policy rule names so
// operators can map their knowledge (and the policy matrix test names them).
const std::vector<Rule> kRules = {
    // Generic rules for every capability.
    {"admin", Check::kAdmin},
    {"authenticated", Check::kAuthenticated},
    {"project_reader", Check::kProjectReader},
    {"project_member", Check::kProjectMember},

    // Discovery and authentication.
    {"identity:discovery", Check::kPublic},
    {"identity:authenticate", Check::kPublic},
    {"identity:validate_token", Check::kSelf},
    {"identity:check_token", Check::kSelf},
    {"identity:revoke_token", Check::kSelf},
    {"identity:get_auth_catalog", Check::kAuthenticated},
    {"identity:get_auth_projects", Check::kAuthenticated},
    {"identity:get_auth_domains", Check::kAuthenticated},
    {"identity:get_auth_system", Check::kAuthenticated},

    // Domains.
    {"identity:list_domains", Check::kAdmin},
    {"identity:create_domain", Check::kAdmin},
    {"identity:get_domain", Check::kOwnDomain},
    {"identity:update_domain", Check::kAdmin},
    {"identity:delete_domain", Check::kAdmin},

    // Projects and tags.
    {"identity:list_projects", Check::kAdmin},
    {"identity:create_project", Check::kAdmin},
    {"identity:get_project", Check::kOwnProject},
    {"identity:update_project", Check::kAdmin},
    {"identity:delete_project", Check::kAdmin},
    {"identity:list_user_projects", Check::kSelf},
    {"identity:list_project_tags", Check::kOwnProject},
    {"identity:get_project_tag", Check::kOwnProject},
    {"identity:update_project_tags", Check::kAdmin},
    {"identity:create_project_tag", Check::kAdmin},
    {"identity:delete_project_tags", Check::kAdmin},
    {"identity:delete_project_tag", Check::kAdmin},

    // Users.
    {"identity:list_users", Check::kAdmin},
    {"identity:create_user", Check::kAdmin},
    {"identity:get_user", Check::kSelf},
    {"identity:update_user", Check::kAdmin},
    {"identity:delete_user", Check::kAdmin},
    {"identity:change_password", Check::kSelf},
    {"identity:list_groups_for_user", Check::kAdmin},

    // Groups.
    {"identity:list_groups", Check::kAdmin},
    {"identity:create_group", Check::kAdmin},
    {"identity:get_group", Check::kAdmin},
    {"identity:update_group", Check::kAdmin},
    {"identity:delete_group", Check::kAdmin},
    {"identity:list_users_in_group", Check::kAdmin},
    {"identity:add_user_to_group", Check::kAdmin},
    {"identity:check_user_in_group", Check::kAdmin},
    {"identity:remove_user_from_group", Check::kAdmin},

    // Roles and implied roles.
    {"identity:list_roles", Check::kAdmin},
    {"identity:create_role", Check::kAdmin},
    {"identity:get_role", Check::kAdmin},
    {"identity:update_role", Check::kAdmin},
    {"identity:delete_role", Check::kAdmin},
    {"identity:list_implied_roles", Check::kAdmin},
    {"identity:create_implied_role", Check::kAdmin},
    {"identity:get_implied_role", Check::kAdmin},
    {"identity:check_implied_role", Check::kAdmin},
    {"identity:delete_implied_role", Check::kAdmin},
    {"identity:list_role_inference_rules", Check::kAdmin},

    // Grants and role assignments.
    {"identity:create_grant", Check::kAdmin},
    {"identity:check_grant", Check::kAdmin},
    {"identity:list_grants", Check::kAdmin},
    {"identity:revoke_grant", Check::kAdmin},
    {"identity:create_system_grant_for_user", Check::kAdmin},
    {"identity:check_system_grant_for_user", Check::kAdmin},
    {"identity:list_system_grants_for_user", Check::kAdmin},
    {"identity:revoke_system_grant_for_user", Check::kAdmin},
    {"identity:create_system_grant_for_group", Check::kAdmin},
    {"identity:check_system_grant_for_group", Check::kAdmin},
    {"identity:list_system_grants_for_group", Check::kAdmin},
    {"identity:revoke_system_grant_for_group", Check::kAdmin},
    {"identity:list_role_assignments", Check::kAdmin},

    // Application credentials: the owner manages them (the handler also refuses to create one
    // for another user, as Keystone does, even for an administrator).
    {"identity:create_application_credential", Check::kSelf},
    {"identity:get_application_credential", Check::kSelf},
    {"identity:list_application_credentials", Check::kSelf},
    {"identity:delete_application_credential", Check::kSelf},
    {"identity:list_access_rules", Check::kSelf},
    {"identity:get_access_rule", Check::kSelf},
    {"identity:delete_access_rule", Check::kSelf},

    // OS-EC2 credentials: the owner manages them.
    {"identity:ec2_list_credentials", Check::kSelf},
    {"identity:ec2_create_credential", Check::kSelf},
    {"identity:ec2_get_credential", Check::kSelf},
    {"identity:ec2_delete_credential", Check::kSelf},

    // Catalog. Regions are readable by anyone with a token, as in Keystone.
    {"identity:list_regions", Check::kAuthenticated},
    {"identity:get_region", Check::kAuthenticated},
    {"identity:create_region", Check::kAdmin},
    {"identity:update_region", Check::kAdmin},
    {"identity:delete_region", Check::kAdmin},
    {"identity:list_services", Check::kAdmin},
    {"identity:get_service", Check::kAdmin},
    {"identity:create_service", Check::kAdmin},
    {"identity:update_service", Check::kAdmin},
    {"identity:delete_service", Check::kAdmin},
    {"identity:list_endpoints", Check::kAdmin},
    {"identity:get_endpoint", Check::kAdmin},
    {"identity:create_endpoint", Check::kAdmin},
    {"identity:update_endpoint", Check::kAdmin},
    {"identity:delete_endpoint", Check::kAdmin},

    // Stored, uninterpreted resources (api_documents.cc). Keystone also lets a user manage
    // their own /v3/credentials; Concord keeps them admin-only for now.
    {"identity:list_policies", Check::kAdmin},
    {"identity:create_policy", Check::kAdmin},
    {"identity:get_policy", Check::kAdmin},
    {"identity:update_policy", Check::kAdmin},
    {"identity:delete_policy", Check::kAdmin},
    {"identity:list_credentials", Check::kAdmin},
    {"identity:create_credential", Check::kAdmin},
    {"identity:get_credential", Check::kAdmin},
    {"identity:update_credential", Check::kAdmin},
    {"identity:delete_credential", Check::kAdmin},
    {"identity:list_consumers", Check::kAdmin},
    {"identity:create_consumer", Check::kAdmin},
    {"identity:get_consumer", Check::kAdmin},
    {"identity:update_consumer", Check::kAdmin},
    {"identity:delete_consumer", Check::kAdmin},
    {"identity:add_endpoint_group_to_project", Check::kAdmin},
    {"identity:get_endpoint_group_in_project", Check::kAdmin},
    {"identity:remove_endpoint_group_from_project", Check::kAdmin},
    {"identity:list_projects_associated_with_endpoint_group", Check::kAdmin},
    {"identity:list_endpoints_associated_with_endpoint_group", Check::kAdmin},
    {"identity:list_endpoint_groups_for_project", Check::kAdmin},
    {"identity:create_domain_config", Check::kAdmin},
    {"identity:get_domain_config", Check::kAdmin},
    {"identity:update_domain_config", Check::kAdmin},
    {"identity:delete_domain_config", Check::kAdmin},
    {"identity:get_domain_config_default", Check::kAdmin},
    {"identity:list_endpoint_groups", Check::kAdmin},
    {"identity:create_endpoint_group", Check::kAdmin},
    {"identity:get_endpoint_group", Check::kAdmin},
    {"identity:update_endpoint_group", Check::kAdmin},
    {"identity:delete_endpoint_group", Check::kAdmin},
};

bool scoped_to_project(const AuthContext& c, const std::string& project_id) {
  return c.scope == ScopeKind::kProject && !project_id.empty() && c.project_id == project_id;
}

bool passes(const AuthContext& c, Check check, const Target& t) {
  if (c.is_admin()) return true;
  switch (check) {
    case Check::kPublic:
    case Check::kAuthenticated: return true;
    case Check::kAdmin: return false;
    case Check::kSelf: return !t.user_id.empty() && c.user_id == t.user_id;
    case Check::kOwnProject: return scoped_to_project(c, t.project_id);
    case Check::kOwnDomain:
      if (t.domain_id.empty()) return false;
      if (c.scope == ScopeKind::kProject) return c.project_domain_id == t.domain_id;
      if (c.scope == ScopeKind::kDomain) return c.domain_id == t.domain_id;
      return false;
    case Check::kProjectReader:
      return scoped_to_project(c, t.project_id) && (c.has_role("reader") || c.has_role("member"));
    case Check::kProjectMember: return scoped_to_project(c, t.project_id) && c.has_role("member");
  }
  return false;
}

}  // namespace

const std::vector<Rule>& policy_rules() {
  return kRules;
}

const Rule* find_rule(std::string_view name) {
  auto it =
      std::find_if(kRules.begin(), kRules.end(), [&](const Rule& r) { return r.name == name; });
  return it == kRules.end() ? nullptr : &*it;
}

Status authorize(const AuthContext* caller, std::string_view rule, const Target& target) {
  const Rule* r = find_rule(rule);
  if (r == nullptr) {
    return fail(Code::kInternal, "no policy rule named '" + std::string(rule) + "'");
  }
  if (r->check == Check::kPublic) return ok();
  if (caller == nullptr) {
    return fail(Code::kUnauthenticated, "The request you have made requires authentication.");
  }
  if (passes(*caller, r->check, target)) return ok();
  return fail(Code::kPermissionDenied,
              "You are not authorized to perform the requested action: " + std::string(rule) + ".");
}

}  // namespace concord::identity

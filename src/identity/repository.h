#pragma once
// SQL access to the identity tables. Every function runs inside a caller's transaction (so an
// API operation composes several of them atomically) and uses bound parameters only; column
// and table names come from code. Absent rows are std::nullopt, never errors.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/model.h"
#include "store/store.h"

namespace concord::identity::repo {

using store::Tx;

// ---- projects and domains (domains are projects with is_domain) ----
struct ProjectFilter {
  std::optional<std::string> name;
  std::optional<std::string> domain_id;
  std::optional<std::string> parent_id;
  std::optional<bool> enabled;
  std::optional<bool> is_domain;
};
Result<std::optional<Project>> get_project(Tx& tx, std::string_view id);
// domain_id = kDomainRoot looks up a domain by name.
Result<std::optional<Project>> find_project_by_name(Tx& tx, std::string_view domain_id,
                                                    std::string_view name);
Result<std::vector<Project>> list_projects(Tx& tx, const ProjectFilter& f);
Status insert_project(Tx& tx, const Project& p, int64_t now_us);
Status update_project(Tx& tx, const Project& p);
Status delete_project(Tx& tx, std::string_view id);
Result<bool> project_has_children(Tx& tx, std::string_view id);

// ---- users ----
struct UserFilter {
  std::optional<std::string> name;
  std::optional<std::string> domain_id;
  std::optional<bool> enabled;
};
Result<std::optional<User>> get_user(Tx& tx, std::string_view id);
Result<std::optional<User>> find_user_by_name(Tx& tx, std::string_view domain_id,
                                              std::string_view name);
Result<std::vector<User>> list_users(Tx& tx, const UserFilter& f);
Status insert_user(Tx& tx, const User& u, int64_t now_us);
Status update_user(Tx& tx, const User& u);
Status delete_user(Tx& tx, std::string_view id);
// Clears default_project_id wherever it names this project (Keystone does on project delete).
Status clear_default_project(Tx& tx, std::string_view project_id);

// ---- groups and membership ----
struct GroupFilter {
  std::optional<std::string> name;
  std::optional<std::string> domain_id;
};
Result<std::optional<Group>> get_group(Tx& tx, std::string_view id);
Result<std::vector<Group>> list_groups(Tx& tx, const GroupFilter& f);
Status insert_group(Tx& tx, const Group& g, int64_t now_us);
Status update_group(Tx& tx, const Group& g);
Status delete_group(Tx& tx, std::string_view id);
Status add_member(Tx& tx, std::string_view group_id, std::string_view user_id);
Result<bool> remove_member(Tx& tx, std::string_view group_id, std::string_view user_id);
Result<bool> is_member(Tx& tx, std::string_view group_id, std::string_view user_id);
Result<std::vector<User>> list_group_users(Tx& tx, std::string_view group_id);
Result<std::vector<Group>> list_user_groups(Tx& tx, std::string_view user_id);
Status delete_memberships_of_user(Tx& tx, std::string_view user_id);
Status delete_memberships_of_group(Tx& tx, std::string_view group_id);

// ---- roles and implied roles ----
struct RoleFilter {
  std::optional<std::string> name;
  std::string domain_id;  // "" = global roles (Keystone lists global roles unless asked)
};
Result<std::optional<Role>> get_role(Tx& tx, std::string_view id);
Result<std::optional<Role>> find_role_by_name(Tx& tx, std::string_view domain_id,
                                              std::string_view name);
Result<std::vector<Role>> list_roles(Tx& tx, const RoleFilter& f);
Result<std::vector<Role>> list_all_roles(Tx& tx);
Status insert_role(Tx& tx, const Role& r, int64_t now_us);
Status update_role(Tx& tx, const Role& r);
Status delete_role(Tx& tx, std::string_view id);  // also its implied rules and assignments
Result<std::vector<ImpliedRule>> list_implied_rules(Tx& tx);
Result<bool> has_implied_rule(Tx& tx, std::string_view prior, std::string_view implied);
Status insert_implied_rule(Tx& tx, std::string_view prior, std::string_view implied);
Result<bool> delete_implied_rule(Tx& tx, std::string_view prior, std::string_view implied);

// ---- assignments ----
struct AssignmentFilter {
  std::optional<ActorType> actor_type;
  std::optional<std::string> actor_id;
  std::optional<TargetType> target_type;
  std::optional<std::string> target_id;
  std::optional<std::string> role_id;
  // With target_type: whether the inherited (OS-INHERIT) or the direct assignments on that
  // target are meant. Without target_type both kinds are listed.
  bool inherited = false;
};
Status insert_assignment(Tx& tx, const Assignment& a);  // no-op when it exists
Result<bool> delete_assignment(Tx& tx, const Assignment& a);
Result<bool> has_assignment(Tx& tx, const Assignment& a);
Result<std::vector<Assignment>> list_assignments(Tx& tx, const AssignmentFilter& f);
Status delete_assignments_of_actor(Tx& tx, ActorType type, std::string_view actor_id);
Status delete_assignments_on_target(Tx& tx, TargetType type, std::string_view target_id);
// Role ids assigned to the user on the target directly or through any of its groups
// (unexpanded, unsorted, may repeat).
Result<std::vector<std::string>> assigned_role_ids(Tx& tx, std::string_view user_id,
                                                   TargetType type, std::string_view target_id);
// Role ids the user inherits on a project (OS-INHERIT) from its domain and its ancestors,
// directly or through groups (unexpanded, may repeat).
Result<std::vector<std::string>> inherited_role_ids(Tx& tx, std::string_view user_id,
                                                    std::string_view project_id);
// Targets (of one type) where the user holds any role, directly or through groups.
Result<std::vector<std::string>> targets_of_user(Tx& tx, std::string_view user_id, TargetType type);

// ---- catalog ----
Result<std::optional<Region>> get_region(Tx& tx, std::string_view id);
Result<std::vector<Region>> list_regions(Tx& tx, const std::optional<std::string>& parent);
Status insert_region(Tx& tx, const Region& r, int64_t now_us);
Status update_region(Tx& tx, const Region& r);
Status delete_region(Tx& tx, std::string_view id);
Result<bool> region_in_use(Tx& tx, std::string_view id);  // children or endpoints

struct ServiceFilter {
  std::optional<std::string> type;
  std::optional<std::string> name;
};
Result<std::optional<Service>> get_service(Tx& tx, std::string_view id);
Result<std::vector<Service>> list_services(Tx& tx, const ServiceFilter& f);
Status insert_service(Tx& tx, const Service& s, int64_t now_us);
Status update_service(Tx& tx, const Service& s);
Status delete_service(Tx& tx, std::string_view id);  // also its endpoints

struct EndpointFilter {
  std::optional<std::string> service_id;
  std::optional<std::string> interface;
  std::optional<std::string> region_id;
};
Result<std::optional<Endpoint>> get_endpoint(Tx& tx, std::string_view id);
Result<std::vector<Endpoint>> list_endpoints(Tx& tx, const EndpointFilter& f);
Status insert_endpoint(Tx& tx, const Endpoint& e, int64_t now_us);
Status update_endpoint(Tx& tx, const Endpoint& e);
Status delete_endpoint(Tx& tx, std::string_view id);

// ---- application credentials ----
Result<std::optional<AppCred>> get_app_cred(Tx& tx, std::string_view id);
Result<std::optional<AppCred>> find_app_cred_by_name(Tx& tx, std::string_view user_id,
                                                     std::string_view name);
Result<std::vector<AppCred>> list_app_creds(Tx& tx, std::string_view user_id,
                                            const std::optional<std::string>& name);
Result<std::vector<std::string>> app_cred_ids_of_user(Tx& tx, std::string_view user_id);
Result<std::vector<std::string>> app_cred_ids_of_project(Tx& tx, std::string_view project_id);
Status insert_app_cred(Tx& tx, const AppCred& a);
Status delete_app_cred(Tx& tx, std::string_view id);

// ---- EC2 credentials ----
Result<std::optional<Ec2Credential>> get_ec2(Tx& tx, std::string_view access);
Result<std::vector<Ec2Credential>> list_ec2(Tx& tx, std::string_view user_id);
Status insert_ec2(Tx& tx, const Ec2Credential& c, int64_t now_us);
Result<bool> delete_ec2(Tx& tx, std::string_view access);
Status delete_ec2_of_user(Tx& tx, std::string_view user_id);
Status delete_ec2_of_project(Tx& tx, std::string_view project_id);

// ---- revocation events ----
Status insert_revocation(Tx& tx, const RevocationEvent& e);
Result<std::optional<RevocationEvent>> get_revocation(Tx& tx, std::string_view id);
Result<std::vector<RevocationEvent>> list_revocations(Tx& tx);
// Deletes events created before `created_before_us`; returns how many.
Result<int64_t> prune_revocations(Tx& tx, int64_t created_before_us);

// Records a change in the feed (kind from model.h kinds, op create/update/delete).
Status record(Tx& tx, std::string_view kind, std::string_view id, std::string_view op,
              std::string_view project_id = {});

// ---- documents (identity_documents; see schema.cc) ----
Result<std::optional<Document>> get_document(Tx& tx, std::string_view kind, std::string_view id);
// In creation order.
Result<std::vector<Document>> list_documents(Tx& tx, std::string_view kind);
Status insert_document(Tx& tx, const Document& d, int64_t now_us);
// Replaces data and bumps the revision; kNotFound when the row is gone.
Status update_document(Tx& tx, const Document& d);
Result<bool> delete_document(Tx& tx, std::string_view kind, std::string_view id);
// Deletes the documents of `kind` whose string member `field` equals `value` (Keystone removes
// a user's or a project's /v3/credentials with it); returns their ids.
Result<std::vector<std::string>> delete_documents_where(Tx& tx, std::string_view kind,
                                                        std::string_view field,
                                                        std::string_view value);

}  // namespace concord::identity::repo

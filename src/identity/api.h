#pragma once
// The Keystone v3 HTTP API over Core. Every route is registered with a policy rule; the one
// wrapper (Api::run) authenticates the caller, builds the policy target, authorizes, runs the
// handler and turns any error into Keystone's error body. Handlers are spread over api_*.cc by
// resource family. Internal to src/identity.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "http/router.h"
#include "identity/core.h"
#include "identity/identity_service.h"
#include "identity/policy.h"

namespace concord::identity {

class Api {
 public:
  explicit Api(Core& core);

  // Registers every route; fails (kInternal) if any names an unknown policy rule.
  [[nodiscard]] Status build();
  std::shared_ptr<http::RouteTable> table() const { return table_; }
  const std::vector<RouteInfo>& infos() const { return infos_; }

  // One request in flight.
  struct Call {
    http::Request& req;
    const AuthContext* caller = nullptr;  // nullptr on public routes
    // The X-Subject-Token's caller, when the policy target was derived from it.
    std::optional<AuthContext> subject;
    std::string_view param(size_t i) const {
      return i < req.params.size() ? std::string_view(req.params[i]) : std::string_view();
    }
    // scheme://host[:port]/prefix + "/v3/" + path
    std::string link(std::string_view path) const;
  };
  // A resource kept whole in identity_documents (api_documents.cc).
  struct DocKind;
  using Handler = std::function<Result<http::Response>(Call&)>;
  using TargetFn = std::function<Result<Target>(Call&)>;

 private:
  struct Spec {
    std::string rule;
    Check check = Check::kAdmin;
    std::vector<std::string> param_names;  // from the pattern's {name} placeholders
    Handler handler;
    TargetFn target;
  };
  void add(http::Method method, std::string pattern, std::string rule, Handler handler,
           TargetFn target = {});
  http::Response run(http::Request& req, const Spec& spec);

  void add_discovery_routes();
  void add_auth_routes();
  void add_project_routes();
  void add_user_routes();
  void add_role_routes();
  void add_catalog_routes();
  void add_document_routes();
  void add_domain_config_routes();
  void add_endpoint_group_project_routes();

  // ---- discovery and auth (api_auth.cc) ----
  Result<http::Response> versions(Call& c);
  Result<http::Response> version_v3(Call& c);
  Result<http::Response> issue_token(Call& c);
  Result<http::Response> validate_token(Call& c, bool head);
  Result<http::Response> revoke_token(Call& c);
  Result<Target> subject_target(Call& c);
  Result<http::Response> auth_catalog(Call& c);
  Result<http::Response> auth_projects(Call& c);
  Result<http::Response> auth_domains(Call& c);
  Result<http::Response> auth_system(Call& c);

  // ---- domains, projects, tags (api_projects.cc) ----
  Result<http::Response> list_domains(Call& c);
  Result<http::Response> create_domain(Call& c);
  Result<http::Response> get_domain(Call& c);
  Result<http::Response> update_domain(Call& c);
  Result<http::Response> delete_domain(Call& c);
  Result<http::Response> list_projects(Call& c);
  Result<http::Response> create_project(Call& c);
  Result<http::Response> get_project(Call& c);
  Result<http::Response> update_project(Call& c);
  Result<http::Response> delete_project(Call& c);
  Result<http::Response> list_tags(Call& c);
  Result<http::Response> replace_tags(Call& c);
  Result<http::Response> check_tag(Call& c);
  Result<http::Response> add_tag(Call& c);
  Result<http::Response> delete_tags(Call& c);
  Result<http::Response> delete_tag(Call& c);

  // ---- users, groups, passwords, application credentials (api_users.cc) ----
  Result<http::Response> list_users(Call& c);
  Result<http::Response> create_user(Call& c);
  Result<http::Response> get_user(Call& c);
  Result<http::Response> update_user(Call& c);
  Result<http::Response> delete_user(Call& c);
  Result<http::Response> change_password(Call& c);
  Result<http::Response> list_user_projects(Call& c);
  Result<http::Response> list_user_groups(Call& c);
  Result<http::Response> list_groups(Call& c);
  Result<http::Response> create_group(Call& c);
  Result<http::Response> get_group(Call& c);
  Result<http::Response> update_group(Call& c);
  Result<http::Response> delete_group(Call& c);
  Result<http::Response> list_group_users(Call& c);
  Result<http::Response> add_group_user(Call& c);
  Result<http::Response> check_group_user(Call& c);
  Result<http::Response> remove_group_user(Call& c);
  Result<http::Response> create_app_cred(Call& c);
  Result<http::Response> list_app_creds(Call& c);
  Result<http::Response> get_app_cred(Call& c);
  Result<http::Response> delete_app_cred(Call& c);
  Result<http::Response> list_access_rules(Call& c);
  Result<http::Response> get_access_rule(Call& c);
  Result<http::Response> delete_access_rule(Call& c);
  // Gives each of the credential's access rules the id of the user's matching stored rule,
  // storing the new ones (inside the credential's write).
  Status register_access_rules(store::Tx& tx, WriteSet& ws, AppCred& a);
  Result<http::Response> list_ec2(Call& c);
  Result<http::Response> create_ec2(Call& c);
  Result<http::Response> get_ec2(Call& c);
  Result<http::Response> delete_ec2(Call& c);

  // ---- roles, implied roles, grants, assignments (api_roles.cc) ----
  Result<http::Response> list_roles(Call& c);
  Result<http::Response> create_role(Call& c);
  Result<http::Response> get_role(Call& c);
  Result<http::Response> update_role(Call& c);
  Result<http::Response> delete_role(Call& c);
  Result<http::Response> put_implied(Call& c);
  Result<http::Response> get_implied(Call& c, bool head);
  Result<http::Response> delete_implied(Call& c);
  Result<http::Response> list_implied(Call& c);
  Result<http::Response> list_inferences(Call& c);
  // Grants: `system` targets take no target parameter.
  // `inherited`: the OS-INHERIT form (/v3/OS-INHERIT/.../inherited_to_projects).
  Result<http::Response> grant_put(Call& c, ActorType actor, TargetType target,
                                   bool inherited = false);
  Result<http::Response> grant_check(Call& c, ActorType actor, TargetType target,
                                     bool inherited = false);
  Result<http::Response> grant_delete(Call& c, ActorType actor, TargetType target,
                                      bool inherited = false);
  Result<http::Response> grant_list(Call& c, ActorType actor, TargetType target,
                                    bool inherited = false);
  Result<http::Response> list_role_assignments(Call& c);

  // ---- regions, services, endpoints (api_catalog.cc) ----
  Result<http::Response> list_regions(Call& c);
  Result<http::Response> create_region(Call& c);
  Result<http::Response> put_region(Call& c);
  Result<http::Response> get_region(Call& c);
  Result<http::Response> update_region(Call& c);
  Result<http::Response> delete_region(Call& c);
  Result<http::Response> list_services(Call& c);
  Result<http::Response> create_service(Call& c);
  Result<http::Response> get_service(Call& c);
  Result<http::Response> update_service(Call& c);
  Result<http::Response> delete_service(Call& c);
  Result<http::Response> list_endpoints(Call& c);
  Result<http::Response> create_endpoint(Call& c);
  Result<http::Response> get_endpoint(Call& c);
  Result<http::Response> update_endpoint(Call& c);
  Result<http::Response> delete_endpoint(Call& c);

  // ---- policies, credentials, OAuth1 consumers, endpoint groups (api_documents.cc) ----
  Result<http::Response> doc_list(Call& c, const DocKind& k);
  Result<http::Response> doc_create(Call& c, const DocKind& k);
  Result<http::Response> doc_get(Call& c, const DocKind& k, bool head);
  Result<http::Response> doc_update(Call& c, const DocKind& k);
  Result<http::Response> doc_delete(Call& c, const DocKind& k);
  Result<http::Response> eg_project_put(Call& c);
  Result<http::Response> eg_project_get(Call& c, bool head);
  Result<http::Response> eg_project_delete(Call& c);
  Result<http::Response> eg_projects(Call& c);
  Result<http::Response> eg_endpoints(Call& c);
  Result<http::Response> project_endpoint_groups(Call& c);

  // ---- domain configuration (api_domain_config.cc); depth: 0 whole, 1 group, 2 option ----
  Result<http::Response> put_domain_config(Call& c);
  Result<http::Response> get_domain_config(Call& c, int depth);
  Result<http::Response> update_domain_config(Call& c, int depth);
  Result<http::Response> delete_domain_config(Call& c, int depth);
  Result<http::Response> default_domain_config(Call& c, int depth);

  // Shared pieces.
  Result<Project> load_domain(store::Tx& tx, std::string_view id);
  Result<Project> load_project(store::Tx& tx, std::string_view id);
  // The domain a create request lands in when the body names none (Keystone: the token's).
  std::string default_domain_for(const Call& c) const;
  // Deletes a project or domain and everything that hangs off it (inside a write).
  Status cascade_delete_project(store::Tx& tx, WriteSet& ws, const Project& p);
  Status cascade_delete_user(store::Tx& tx, WriteSet& ws, const User& u);
  Status cascade_delete_group(store::Tx& tx, WriteSet& ws, const Group& g);
  Status create_region_impl(store::Tx& tx, WriteSet& ws, Region& r);

  Core& core_;
  std::shared_ptr<http::RouteTable> table_;
  std::vector<RouteInfo> infos_;
  std::vector<std::string> errors_;
};

// ---- helpers shared by the api_*.cc files ----
namespace api {

http::Response json(int status, const Json& body);
// {"<key>": items, "links": {"self": ..., "previous": null, "next": null}}
Json collection(const Api::Call& c, std::string_view key, Json items);
// Keystone's truthiness of a boolean query filter: 0/false/f/no/n/off are false.
bool query_bool(std::string_view value);
std::optional<bool> bool_query(const http::Request& req, std::string_view name);
std::unexpected<Error> not_found(std::string_view what, std::string_view id);
std::unexpected<Error> conflict(std::string_view type, std::string_view details);
// Copies the members of `body` that are not in `reserved` into `extra` (Keystone keeps
// unknown attributes); a null value removes the attribute.
void merge_extra(Json& extra, const Json& body, std::initializer_list<std::string_view> reserved);
// Project tags: array of 1..255-character strings without ',' or '/', at most 80, unique.
Result<std::optional<std::vector<std::string>>> tags_field(const Json& body);
Result<std::vector<std::string>> tag_list(const Json& value, std::string_view field);

Json render_project(const Project& p, const Api::Call& c);
Json render_domain(const Project& d, const Api::Call& c);
Json render_user(const User& u, const Api::Call& c);
Json render_group(const Group& g, const Api::Call& c);
Json render_role(const Role& r, const Api::Call& c);
Json render_region(const Region& r, const Api::Call& c);
Json render_service(const Service& s, const Api::Call& c);
Json render_endpoint(const Endpoint& e, const Api::Call& c);
Json render_app_cred(const AppCred& a, const RoleSnapshot& roles, const Api::Call& c);

// GET of one resource read from the store by the route's first id: {"<key>": render(row)},
// or Keystone's 404. (Users, projects and domains are served from the directory cache.)
template <typename T>
Result<http::Response> get_stored(Core& core, Api::Call& c, std::string_view key,
                                  Result<std::optional<T>> (*load)(store::Tx&, std::string_view),
                                  Json (*render)(const T&, const Api::Call&)) {
  std::optional<T> found;
  CONCORD_RETURN_IF_ERROR(core.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(found, load(tx, c.param(0)));
    return ok();
  }));
  if (!found) return not_found(key, c.param(0));
  return json(200, {{std::string(key), render(*found, c)}});
}

}  // namespace api
}  // namespace concord::identity

#pragma once
// The identity capability (OpenStack Keystone v3): tokens, the identity resources, the service
// catalog and the policy every other capability calls. See docs/design/identity.md.
//
// Wiring (main()):
//   store->migrate(identity::migrations());
//   auto identity = identity::IdentityService::create(*store, clock, options);
//   identity->bootstrap({admin_password, public_url, region});
//   router.mount("/identity", identity->routes(), http::keystone_style_error);
//   router.mount("", identity->routes(), http::keystone_style_error);
//
// Threading: every method is safe to call from any thread. create() starts one background
// thread that follows the store's change feed (cache invalidation and revocations made by other
// replicas); the destructor stops it.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "http/router.h"
#include "identity/auth_context.h"
#include "identity/crypto/password.h"
#include "identity/policy.h"
#include "store/store.h"

namespace concord::identity {

// Schema of component "identity".
std::vector<store::Migration> migrations();

struct IdentityOptions {
  std::string region = "RegionOne";
  std::chrono::seconds token_ttl{3600};
  // Fernet key repository folder (created with two keys when empty).
  std::string key_dir;
  int max_active_keys = 3;
  // Password-login throttling per user: after this many failures within the window, refuse.
  int lockout_failures = 6;
  std::chrono::milliseconds lockout_window{300000};
  // argon2id cost for user passwords and application credential secrets. Tests lower it.
  PasswordParams password_params;
  // How long the change-feed thread blocks per wait (bounds the shutdown delay and the
  // staleness seen by other replicas).
  std::chrono::milliseconds feed_wait{250};
};

// A registered route, for tests (the policy matrix) and documentation.
struct RouteInfo {
  http::Method method;
  std::string pattern;  // "/v3/projects/{project_id}"
  std::string rule;     // policy rule name
};

struct BootstrapResult {
  std::string default_domain_id;  // "default"
  std::string admin_project_id;
  std::string admin_user_id;
  std::string admin_role_id;
  std::string member_role_id;
  std::string reader_role_id;
  std::string region_id;
  std::string identity_service_id;
};

class IdentityService {
 public:
  static Result<std::unique_ptr<IdentityService>> create(store::Store& store, const Clock& clock,
                                                         IdentityOptions options);
  ~IdentityService();
  IdentityService(const IdentityService&) = delete;
  IdentityService& operator=(const IdentityService&) = delete;

  // X-Auth-Token -> the caller; kUnauthenticated (message fit for a 401 body) when the token
  // is malformed, forged, expired, revoked or no longer backed by an enabled user/scope/role.
  // The hot path: no store access except on a cache miss.
  [[nodiscard]] Result<AuthContext> authenticate(std::string_view token) const;

  // Idempotent, like `keystone-manage bootstrap`: the Default domain (id "default"), roles
  // admin > member > reader (implied), the admin project and the admin user with the admin role
  // on that project and on the system, the region, and the identity service with public,
  // internal and admin endpoints at `<public_url>/identity/v3`. Re-running with another
  // public_url moves those endpoints; with another password resets it (and revokes the admin's
  // tokens). An empty region means options.region.
  struct BootstrapSpec {
    std::string admin_password;
    std::string public_url;
    std::string region;
  };
  [[nodiscard]] Result<BootstrapResult> bootstrap(const BootstrapSpec& spec);

  // For other capabilities: makes sure a service of `type` (named `name`) exists and has
  // public, internal and admin endpoints with `url` in `region` (empty: options.region),
  // creating the region if needed and updating the URLs when they changed. Idempotent.
  // The URL may contain "$(project_id)s", substituted per token in the catalog.
  [[nodiscard]] Status ensure_service_endpoint(std::string_view type, std::string_view name,
                                               std::string_view url, std::string_view region = {});

  // For capabilities that own resources on the operator's behalf (inference replicas run as
  // compute servers, later database instances): the id of the project `name` in the Default
  // domain, created (enabled, with `description`) when missing, as deployments conventionally
  // keep a "service" project. Idempotent; kFailedPrecondition before bootstrap (no Default
  // domain).
  [[nodiscard]] Result<std::string> ensure_project(std::string_view name,
                                                   std::string_view description);

  // For capabilities whose API takes a project id from the caller (a quota path): whether a
  // project (not a domain) with that id exists, enabled or not.
  [[nodiscard]] Result<bool> project_exists(std::string_view project_id) const;

  // The Keystone v3 API, to mount at "/identity" and at "". Errors use keystone_style_error.
  std::shared_ptr<http::RouteTable> routes() const;
  // What routes() holds, with the policy rule of each route.
  const std::vector<RouteInfo>& route_infos() const;

  // Promotes the staged Fernet key (what `keystone-manage fernet_rotate` does). Tokens issued
  // with older keys stay valid while their key is within max_active_keys.
  [[nodiscard]] Status rotate_keys();

  // Drops revocation events older than the token lifetime from the store and from memory
  // (the change-feed thread also does this every few minutes).
  [[nodiscard]] Status prune_revocations();

  // Policy check for other capabilities (same as identity::authorize()).
  [[nodiscard]] Status authorize(const AuthContext& caller, std::string_view rule,
                                 const Target& target) const {
    return identity::authorize(caller, rule, target);
  }

 private:
  class Impl;
  explicit IdentityService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::identity

#pragma once
// The authenticated caller, as every capability sees it after IdentityService::authenticate().
// A plain value: it is derived from a validated token plus current identity data (names, enabled
// flags, effective roles including implied ones), so it is safe to keep for one request only.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "identity/crypto/token.h"

namespace concord::identity {

struct RoleRef {
  std::string id;
  std::string name;
  friend bool operator==(const RoleRef&, const RoleRef&) = default;
};

struct AuthContext {
  std::string user_id;
  std::string user_name;
  std::string user_domain_id;
  std::string user_domain_name;
  std::optional<SystemTime> password_expires_at;

  ScopeKind scope = ScopeKind::kUnscoped;
  // Project scope.
  std::string project_id;
  std::string project_name;
  std::string project_domain_id;
  std::string project_domain_name;
  // Domain scope.
  std::string domain_id;
  std::string domain_name;
  // System scope is scope == kSystem (always "all").

  // Effective roles on the scope (direct, through groups, and implied), sorted by name then id.
  // Empty for unscoped tokens.
  std::vector<RoleRef> roles;
  std::vector<std::string> audit_ids;
  std::vector<std::string> methods;
  SystemTime issued_at;
  SystemTime expires_at;

  // Set for tokens issued with an application credential.
  std::string app_cred_id;
  std::string app_cred_name;
  bool app_cred_restricted = false;

  bool has_role(std::string_view name) const {
    for (const RoleRef& r : roles) {
      if (r.name == name) return true;
    }
    return false;
  }
  // "admin" in any scope is an administrator of the whole cloud (Keystone's default policy).
  bool is_admin() const { return has_role("admin"); }
};

}  // namespace concord::identity

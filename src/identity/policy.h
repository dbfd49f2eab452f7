#pragma once
// Authorization, in one place, for identity and for every later capability.
//
// A rule name (Keystone's where one exists: "identity:list_projects") maps to one Check in a
// single table (policy.cc). Roles are admin > member > reader (implied roles make an admin also
// a member and a reader, but checks never rely on that: they name every role that qualifies).
// Keystone's default policy treats the admin role in any scope as cloud administrator; so do
// we. Non-admins may act on themselves, their token's project and that project's domain as
// each rule says. Generic rules for other capabilities:
//   "admin"          the caller is an administrator;
//   "authenticated"  any valid token;
//   "project_reader" reader, member or admin of the target project (project-scoped token), or
//                    an administrator;
//   "project_member" member or admin of the target project, or an administrator.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/auth_context.h"

namespace concord::identity {

// The resource a request touches, as far as policy cares.
struct Target {
  std::string user_id;     // the user owning the resource (path {user_id}, a token's subject)
  std::string project_id;  // the project the resource belongs to
  std::string domain_id;   // the domain the resource belongs to
};

enum class Check : uint8_t {
  kPublic,         // no token needed
  kAuthenticated,  // any valid token
  kAdmin,          // administrators only
  kSelf,           // administrators, or caller.user_id == target.user_id
  kOwnProject,     // administrators, or a token scoped to target.project_id
  kOwnDomain,      // administrators, or a token on target.domain_id (domain scope or the
                   // domain of the scoped project)
  kProjectReader,  // administrators, or reader/member/admin on target.project_id
  kProjectMember,  // administrators, or member/admin on target.project_id
};

struct Rule {
  std::string_view name;
  Check check;
};

// Every rule, in table order.
const std::vector<Rule>& policy_rules();
// nullptr when no rule has this name.
const Rule* find_rule(std::string_view name);

// Decides one request. `caller` is nullptr when no valid token was presented.
//   ok                  allowed;
//   kUnauthenticated    the rule needs a token and there is none;
//   kPermissionDenied   authenticated but not allowed (message names the rule, as Keystone's);
//   kInternal           the rule name is unknown (a bug: routes are checked at registration).
[[nodiscard]] Status authorize(const AuthContext* caller, std::string_view rule,
                               const Target& target);
[[nodiscard]] inline Status authorize(const AuthContext& caller, std::string_view rule,
                                      const Target& target) {
  return authorize(&caller, rule, target);
}

}  // namespace concord::identity

#pragma once
// The body of POST /v3/auth/tokens, parsed and validated without touching the store (this is
// what tests/fuzz/auth_request_fuzz.cc exercises). Errors are kInvalidArgument with a message
// for a 400 body, in Keystone's words where Keystone has them.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::identity {

// A user named by id, or by name plus a domain named by id or name.
struct UserSelector {
  std::string id;
  std::string name;
  std::string domain_id;
  std::string domain_name;
};

struct PasswordMethod {
  UserSelector user;
  std::string password;
};

// By id, or by name plus the owning user.
struct AppCredMethod {
  std::string id;
  std::string name;
  std::string secret;
  UserSelector user;
};

enum class ScopeRequest {
  kDefault,   // no "scope": Keystone scopes to the user's default project when it can
  kUnscoped,  // "scope": "unscoped" (or {"unscoped": {}}): never scope
  kProject,
  kDomain,
  kSystem,
};

struct AuthRequest {
  std::vector<std::string> methods;  // in request order, no duplicates
  std::optional<PasswordMethod> password;
  std::optional<std::string> token;  // the token to rescope
  std::optional<AppCredMethod> app_cred;

  ScopeRequest scope = ScopeRequest::kDefault;
  std::string project_id;
  std::string project_name;
  std::string project_domain_id;
  std::string project_domain_name;
  std::string domain_id;
  std::string domain_name;
};

// Parses the raw request body.
Result<AuthRequest> parse_auth_request(std::string_view body);

}  // namespace concord::identity

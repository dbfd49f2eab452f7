#include "identity/auth_request.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "identity/json_input.h"

namespace concord::identity {
namespace {

using input::invalid;

std::unexpected<Error> expecting(std::string_view what, std::string_view where) {
  return fail(Code::kInvalidArgument,
              "Expecting to find " + std::string(what) + " in " + std::string(where) + ".");
}

Result<std::string> opt_string(const Json& obj, std::string_view key, std::string_view path) {
  auto it = obj.find(key);
  if (it == obj.end()) return std::string();
  if (!it->is_string()) {
    return invalid(std::string(path) + "/" + std::string(key), "not of type 'string'");
  }
  std::string value = it->get<std::string>();
  if (value.find('\0') != std::string::npos) {
    return invalid(std::string(path) + "/" + std::string(key), "must not contain NUL characters");
  }
  return value;
}

// {"id": ...} or {"name": ...} (both allowed; id wins), as Keystone's schema.
struct IdOrName {
  std::string id;
  std::string name;
  bool present = false;
};
Result<IdOrName> id_or_name(const Json& obj, std::string_view key, std::string_view path) {
  IdOrName out;
  auto it = obj.find(key);
  if (it == obj.end()) return out;
  std::string here = std::string(path) + "/" + std::string(key);
  if (!it->is_object()) return invalid(here, "not of type 'object'");
  out.present = true;
  CONCORD_ASSIGN_OR_RETURN(out.id, opt_string(*it, "id", here));
  CONCORD_ASSIGN_OR_RETURN(out.name, opt_string(*it, "name", here));
  if (!it->contains("id") && !it->contains("name")) {
    return invalid(here, "id or name must be present.");
  }
  return out;
}

Result<UserSelector> user_selector(const Json& holder, std::string_view path) {
  auto it = holder.find("user");
  if (it == holder.end()) return expecting("user", path);
  std::string here = std::string(path) + "/user";
  if (!it->is_object()) return invalid(here, "not of type 'object'");
  UserSelector u;
  CONCORD_ASSIGN_OR_RETURN(u.id, opt_string(*it, "id", here));
  CONCORD_ASSIGN_OR_RETURN(u.name, opt_string(*it, "name", here));
  if (!it->contains("id") && !it->contains("name")) {
    return invalid(here, "id or name must be present.");
  }
  CONCORD_ASSIGN_OR_RETURN(IdOrName domain, id_or_name(*it, "domain", here));
  u.domain_id = domain.id;
  u.domain_name = domain.name;
  if (u.id.empty()) {
    if (u.name.empty()) return invalid(here, "id or name must be a non-empty string.");
    if (!domain.present) return expecting("domain", "user");
  }
  return u;
}

Result<PasswordMethod> parse_password(const Json& identity) {
  auto it = identity.find("password");
  if (it == identity.end()) return expecting("password", "identity");
  if (!it->is_object()) return invalid("identity/password", "not of type 'object'");
  PasswordMethod m;
  CONCORD_ASSIGN_OR_RETURN(m.user, user_selector(*it, "identity/password"));
  const Json& user = (*it)["user"];
  auto pw = user.find("password");
  if (pw == user.end()) return expecting("password", "user");
  if (!pw->is_string()) {
    return invalid("identity/password/user/password", "not of type 'string'");
  }
  m.password = pw->get<std::string>();
  return m;
}

Result<std::string> parse_token(const Json& identity) {
  auto it = identity.find("token");
  if (it == identity.end()) return expecting("token", "identity");
  if (!it->is_object()) return invalid("identity/token", "not of type 'object'");
  auto id = it->find("id");
  if (id == it->end()) return expecting("id", "token");
  if (!id->is_string()) return invalid("identity/token/id", "not of type 'string'");
  return id->get<std::string>();
}

Result<AppCredMethod> parse_app_cred(const Json& identity) {
  auto it = identity.find("application_credential");
  if (it == identity.end()) return expecting("application_credential", "identity");
  std::string here = "identity/application_credential";
  if (!it->is_object()) return invalid(here, "not of type 'object'");
  AppCredMethod m;
  CONCORD_ASSIGN_OR_RETURN(m.id, opt_string(*it, "id", here));
  CONCORD_ASSIGN_OR_RETURN(m.name, opt_string(*it, "name", here));
  auto secret = it->find("secret");
  if (secret == it->end()) return expecting("secret", "application_credential");
  if (!secret->is_string()) return invalid(here + "/secret", "not of type 'string'");
  m.secret = secret->get<std::string>();
  if (m.id.empty()) {
    if (m.name.empty()) {
      return fail(Code::kInvalidArgument,
                  "Could not find application credential: either id or name and user must be "
                  "given.");
    }
    CONCORD_ASSIGN_OR_RETURN(m.user, user_selector(*it, here));
  }
  return m;
}

Status parse_scope(const Json& auth, AuthRequest& out) {
  auto it = auth.find("scope");
  if (it == auth.end()) return ok();
  if (it->is_string()) {
    if (it->get<std::string>() != "unscoped") {
      return invalid("scope", "a string scope must be 'unscoped'");
    }
    out.scope = ScopeRequest::kUnscoped;
    return ok();
  }
  if (!it->is_object()) return invalid("scope", "not of type 'object' or 'string'");
  const Json& scope = *it;
  if (scope.contains("OS-TRUST:trust")) {
    return fail(Code::kInvalidArgument, "Trust-scoped tokens are not supported.");
  }
  int kinds = static_cast<int>(scope.contains("project")) +
              static_cast<int>(scope.contains("domain")) +
              static_cast<int>(scope.contains("system"));
  if (kinds > 1) {
    return fail(Code::kInvalidArgument,
                "Specify only one of domain, project or system in the scope.");
  }
  if (kinds == 0) {
    out.scope = ScopeRequest::kUnscoped;
    return ok();
  }
  if (scope.contains("project")) {
    CONCORD_ASSIGN_OR_RETURN(IdOrName p, id_or_name(scope, "project", "scope"));
    out.scope = ScopeRequest::kProject;
    out.project_id = p.id;
    out.project_name = p.name;
    CONCORD_ASSIGN_OR_RETURN(IdOrName d, id_or_name(scope["project"], "domain", "scope/project"));
    out.project_domain_id = d.id;
    out.project_domain_name = d.name;
    if (out.project_id.empty()) {
      if (out.project_name.empty()) return invalid("scope/project", "id or name must be present.");
      if (!d.present) return expecting("domain", "project");
    }
    return ok();
  }
  if (scope.contains("domain")) {
    CONCORD_ASSIGN_OR_RETURN(IdOrName d, id_or_name(scope, "domain", "scope"));
    if (d.id.empty() && d.name.empty()) {
      return invalid("scope/domain", "id or name must be present.");
    }
    out.scope = ScopeRequest::kDomain;
    out.domain_id = d.id;
    out.domain_name = d.name;
    return ok();
  }
  const Json& system = scope["system"];
  if (!system.is_object()) return invalid("scope/system", "not of type 'object'");
  auto all = system.find("all");
  if (all == system.end() || !all->is_boolean() || !all->get<bool>()) {
    return invalid("scope/system", "system scope must be {\"all\": true}");
  }
  out.scope = ScopeRequest::kSystem;
  return ok();
}

}  // namespace

Result<AuthRequest> parse_auth_request(std::string_view body) {
  CONCORD_ASSIGN_OR_RETURN(Json root, input::parse_object(body));
  auto auth_it = root.find("auth");
  if (auth_it == root.end()) return expecting("auth", "request body");
  if (!auth_it->is_object()) return invalid("auth", "not of type 'object'");
  const Json& auth = *auth_it;
  auto id_it = auth.find("identity");
  if (id_it == auth.end()) return expecting("identity", "auth");
  if (!id_it->is_object()) return invalid("identity", "not of type 'object'");
  const Json& identity = *id_it;
  auto methods = identity.find("methods");
  if (methods == identity.end()) return expecting("methods", "identity");
  if (!methods->is_array()) return invalid("identity/methods", "not of type 'array'");
  if (methods->empty()) return invalid("identity/methods", "at least one method is required");

  AuthRequest out;
  for (const Json& m : *methods) {
    if (!m.is_string()) return invalid("identity/methods", "items must be of type 'string'");
    std::string name = m.get<std::string>();
    if (name != "password" && name != "token" && name != "application_credential") {
      return fail(Code::kInvalidArgument, "Attempted to authenticate with an unsupported method: " +
                                              sanitize_utf8(name.substr(0, 64)) + ".");
    }
    if (std::find(out.methods.begin(), out.methods.end(), name) == out.methods.end()) {
      out.methods.push_back(std::move(name));
    }
  }
  for (const std::string& m : out.methods) {
    if (m == "password") {
      CONCORD_ASSIGN_OR_RETURN(out.password, parse_password(identity));
    } else if (m == "token") {
      CONCORD_ASSIGN_OR_RETURN(out.token, parse_token(identity));
    } else {
      CONCORD_ASSIGN_OR_RETURN(out.app_cred, parse_app_cred(identity));
    }
  }
  CONCORD_RETURN_IF_ERROR(parse_scope(auth, out));
  return out;
}

}  // namespace concord::identity

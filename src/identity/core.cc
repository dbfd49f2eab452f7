#include "identity/core.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/random.h"
#include "base/time_format.h"
#include "identity/crypto/password.h"
#include "identity/repository.h"

namespace concord::identity {
namespace {

std::unexpected<Error> unauthenticated(std::string why) {
  return fail(Code::kUnauthenticated, std::move(why));
}

// Revocation events may be recorded by replicas whose clocks differ slightly; keep them a
// little longer than the longest token lifetime.
constexpr std::chrono::seconds kPruneSlack{60};

}  // namespace

int http_status(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kAborted: return 409;
    case Code::kFailedPrecondition: return 403;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kResourceExhausted: return 429;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    case Code::kInternal: return 500;
  }
  return 500;
}

Status WriteSet::change(store::Tx& tx, std::string_view kind, std::string_view id,
                        std::string_view op, std::string_view project_id) {
  CONCORD_RETURN_IF_ERROR(repo::record(tx, kind, id, op, project_id));
  changes.emplace_back(std::string(kind), std::string(id));
  return ok();
}

Status WriteSet::revoke(store::Tx& tx, RevocationKind kind, std::string_view value,
                        SystemTime now) {
  RevocationEvent e;
  e.id = new_hex_id();
  e.kind = kind;
  e.value = std::string(value);
  e.issued_before = to_micros(now);
  e.created_at = e.issued_before;
  CONCORD_RETURN_IF_ERROR(repo::insert_revocation(tx, e));
  CONCORD_RETURN_IF_ERROR(repo::record(tx, kinds::kRevocation, e.id, "create"));
  revocations.push_back(std::move(e));
  return ok();
}

Core::Core(store::Store& store_in, const Clock& clock_in, IdentityOptions options_in,
           std::shared_ptr<KeyRepository> keys_in)
    : store(store_in),
      clock(clock_in),
      options(std::move(options_in)),
      keys(std::move(keys_in)),
      codec(keys, clock),
      dir(store),
      lockout(options.lockout_failures, options.lockout_window) {
  auto dummy = hash_password(random_token(16), options.password_params);
  if (dummy) dummy_hash_ = std::move(*dummy);
}

Result<std::string> Core::hash_secret(std::string_view secret) const {
  return hash_password(secret, options.password_params);
}

void Core::burn_verification(std::string_view password) const {
  if (!dummy_hash_.empty()) (void)verify_password(password, dummy_hash_);
}

Status Core::write(const std::function<Status(store::Tx&, WriteSet&)>& fn) {
  WriteSet ws;
  CONCORD_RETURN_IF_ERROR(store.write([&](store::Tx& tx) -> Status {
    ws = WriteSet();
    return fn(tx, ws);
  }));
  apply(ws);
  return ok();
}

Status Core::read(const std::function<Status(store::Tx&)>& fn) {
  return store.read(fn);
}

void Core::apply(const WriteSet& ws) {
  for (const auto& [kind, id] : ws.changes) dir.on_change(kind, id);
  for (const RevocationEvent& e : ws.revocations) revocations.add(e);
}

Status Core::load_revocation(std::string_view event_id) {
  if (revocations.contains(event_id)) return ok();
  std::optional<RevocationEvent> e;
  CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(e, repo::get_revocation(tx, event_id));
    return ok();
  }));
  if (e) revocations.add(*e);
  return ok();
}

Status Core::load_all_revocations() {
  std::vector<RevocationEvent> events;
  CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(events, repo::list_revocations(tx));
    return ok();
  }));
  for (const RevocationEvent& e : events) revocations.add(e);
  return ok();
}

Status Core::prune_revocations() {
  int64_t cutoff = to_micros(clock.now() - options.token_ttl - kPruneSlack);
  CONCORD_RETURN_IF_ERROR(store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(int64_t n, repo::prune_revocations(tx, cutoff));
    (void)n;
    return ok();
  }));
  revocations.prune(cutoff);
  return ok();
}

// ---------------------------------------------------------------------------------------------
// Validation

Result<AuthContext> Core::validate(std::string_view token) {
  if (token.empty()) return unauthenticated("no token");
  auto payload = codec.open(token);
  if (!payload) return unauthenticated(payload.error().message());
  return resolve(*payload);
}

Result<AuthContext> Core::resolve(const TokenPayload& p) {
  SystemTime now = clock.now();
  if (p.expires_at <= now) return unauthenticated("the token has expired");
  if (p.audit_ids.empty()) return unauthenticated("the token has no audit id");

  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const User> user, dir.user(p.user_id));
  if (!user) return unauthenticated("the token's user no longer exists");
  if (!user->enabled) return unauthenticated("the token's user is disabled");
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> user_domain,
                           dir.project(user->domain_id));
  if (!user_domain || !user_domain->is_domain || !user_domain->enabled) {
    return unauthenticated("the user's domain is missing or disabled");
  }

  AuthContext c;
  c.user_id = user->id;
  c.user_name = user->name;
  c.user_domain_id = user_domain->id;
  c.user_domain_name = user_domain->name;
  if (user->password_expires_at) c.password_expires_at = from_micros(*user->password_expires_at);
  c.scope = p.scope;

  std::shared_ptr<const std::vector<RoleRef>> roles;
  switch (p.scope) {
    case ScopeKind::kProject: {
      CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> project, dir.project(p.scope_id));
      if (!project || project->is_domain) return unauthenticated("the project no longer exists");
      if (!project->enabled) return unauthenticated("the project is disabled");
      CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> domain,
                               dir.project(project->domain_id));
      if (!domain || !domain->enabled) return unauthenticated("the project's domain is disabled");
      c.project_id = project->id;
      c.project_name = project->name;
      c.project_domain_id = domain->id;
      c.project_domain_name = domain->name;
      CONCORD_ASSIGN_OR_RETURN(roles,
                               dir.effective_roles(user->id, TargetType::kProject, project->id));
      break;
    }
    case ScopeKind::kDomain: {
      CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> domain, dir.project(p.scope_id));
      if (!domain || !domain->is_domain) return unauthenticated("the domain no longer exists");
      if (!domain->enabled) return unauthenticated("the domain is disabled");
      c.domain_id = domain->id;
      c.domain_name = domain->name;
      CONCORD_ASSIGN_OR_RETURN(roles,
                               dir.effective_roles(user->id, TargetType::kDomain, domain->id));
      break;
    }
    case ScopeKind::kSystem: {
      CONCORD_ASSIGN_OR_RETURN(roles,
                               dir.effective_roles(user->id, TargetType::kSystem, kSystemAll));
      break;
    }
    case ScopeKind::kUnscoped: break;
  }
  if (roles) {
    c.roles = *roles;
    if (c.roles.empty()) return unauthenticated("the user has no role on the token's scope");
  }

  if (!p.app_cred_id.empty()) {
    CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const AppCred> ac, dir.app_cred(p.app_cred_id));
    if (!ac || ac->user_id != user->id) {
      return unauthenticated("the application credential no longer exists");
    }
    if (ac->expires_at && *ac->expires_at <= to_micros(now)) {
      return unauthenticated("the application credential has expired");
    }
    if (p.scope != ScopeKind::kProject || ac->project_id != p.scope_id) {
      return unauthenticated("the application credential does not match the token's scope");
    }
    // The credential's roles, as far as the user still holds them.
    std::erase_if(c.roles, [&](const RoleRef& r) {
      return std::find(ac->role_ids.begin(), ac->role_ids.end(), r.id) == ac->role_ids.end();
    });
    if (c.roles.empty()) return unauthenticated("the application credential has no role left");
    c.app_cred_id = ac->id;
    c.app_cred_name = ac->name;
    c.app_cred_restricted = !ac->unrestricted;
  }

  TokenFacts facts;
  facts.user_id = c.user_id;
  facts.user_domain_id = c.user_domain_id;
  facts.project_id = c.project_id;
  facts.project_domain_id = c.project_domain_id;
  facts.domain_id = c.domain_id;
  facts.audit_id = p.audit_ids.front();
  facts.app_cred_id = p.app_cred_id;
  facts.issued_at_us = to_micros(p.issued_at);
  if (revocations.is_revoked(facts)) return unauthenticated("the token has been revoked");

  c.audit_ids = p.audit_ids;
  c.methods = p.methods;
  c.issued_at = p.issued_at;
  c.expires_at = p.expires_at;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Authentication (POST /v3/auth/tokens)

namespace {
const char kGenericAuthFailure[] = "The request you have made requires authentication.";
}  // namespace

Result<std::string> Core::password_user(const PasswordMethod& m) {
  std::optional<User> user;
  std::optional<Project> domain;
  CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
    user.reset();
    domain.reset();
    if (!m.user.id.empty()) {
      CONCORD_ASSIGN_OR_RETURN(user, repo::get_user(tx, m.user.id));
    } else {
      if (!m.user.domain_id.empty()) {
        CONCORD_ASSIGN_OR_RETURN(domain, repo::get_project(tx, m.user.domain_id));
      } else {
        CONCORD_ASSIGN_OR_RETURN(domain,
                                 repo::find_project_by_name(tx, kDomainRoot, m.user.domain_name));
      }
      if (domain && domain->is_domain) {
        CONCORD_ASSIGN_OR_RETURN(user, repo::find_user_by_name(tx, domain->id, m.user.name));
      }
    }
    if (user && (!domain || domain->id != user->domain_id)) {
      CONCORD_ASSIGN_OR_RETURN(domain, repo::get_project(tx, user->domain_id));
    }
    return ok();
  }));
  SystemTime now = clock.now();
  if (!user) {
    burn_verification(m.password);
    return unauthenticated(kGenericAuthFailure);
  }
  if (lockout.locked(user->id, now)) {
    logger("identity")->warn("login refused: account locked user_id={}", user->id);
    return unauthenticated(kGenericAuthFailure);
  }
  if (user->password_hash.empty() || m.password.size() > kMaxPasswordBytes ||
      !verify_password(m.password, user->password_hash)) {
    lockout.record_failure(user->id, clock.now());
    return unauthenticated(kGenericAuthFailure);
  }
  lockout.record_success(user->id);
  if (!user->enabled) return unauthenticated(kGenericAuthFailure);
  if (!domain || !domain->enabled) return unauthenticated(kGenericAuthFailure);
  if (user->password_expires_at && *user->password_expires_at <= to_micros(now)) {
    return unauthenticated("The password is expired and needs to be changed for user: " + user->id +
                           ".");
  }
  return user->id;
}

Result<std::shared_ptr<const AppCred>> Core::app_cred_for(const AppCredMethod& m) {
  std::optional<AppCred> ac;
  std::optional<User> user;
  CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
    ac.reset();
    user.reset();
    if (!m.id.empty()) {
      CONCORD_ASSIGN_OR_RETURN(ac, repo::get_app_cred(tx, m.id));
    } else {
      std::optional<User> owner;
      if (!m.user.id.empty()) {
        CONCORD_ASSIGN_OR_RETURN(owner, repo::get_user(tx, m.user.id));
      } else {
        std::optional<Project> domain;
        if (!m.user.domain_id.empty()) {
          CONCORD_ASSIGN_OR_RETURN(domain, repo::get_project(tx, m.user.domain_id));
        } else {
          CONCORD_ASSIGN_OR_RETURN(domain,
                                   repo::find_project_by_name(tx, kDomainRoot, m.user.domain_name));
        }
        if (domain) {
          CONCORD_ASSIGN_OR_RETURN(owner, repo::find_user_by_name(tx, domain->id, m.user.name));
        }
      }
      if (owner) {
        CONCORD_ASSIGN_OR_RETURN(ac, repo::find_app_cred_by_name(tx, owner->id, m.name));
      }
    }
    if (ac) {
      CONCORD_ASSIGN_OR_RETURN(user, repo::get_user(tx, ac->user_id));
    }
    return ok();
  }));
  if (!ac) {
    burn_verification(m.secret);
    return unauthenticated(kGenericAuthFailure);
  }
  if (m.secret.size() > kMaxPasswordBytes || !verify_password(m.secret, ac->secret_hash)) {
    return unauthenticated(kGenericAuthFailure);
  }
  if (ac->expires_at && *ac->expires_at <= now_us()) {
    return unauthenticated("The application credential has expired.");
  }
  if (!user || !user->enabled) return unauthenticated(kGenericAuthFailure);
  return std::make_shared<const AppCred>(std::move(*ac));
}

Result<TokenPayload> Core::scope_payload(const AuthRequest& r, TokenPayload p,
                                         const std::string& default_project_id) {
  std::optional<Project> target;
  switch (r.scope) {
    case ScopeRequest::kProject: {
      CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
        target.reset();
        if (!r.project_id.empty()) {
          CONCORD_ASSIGN_OR_RETURN(target, repo::get_project(tx, r.project_id));
          return ok();
        }
        std::optional<Project> domain;
        if (!r.project_domain_id.empty()) {
          CONCORD_ASSIGN_OR_RETURN(domain, repo::get_project(tx, r.project_domain_id));
        } else {
          CONCORD_ASSIGN_OR_RETURN(
              domain, repo::find_project_by_name(tx, kDomainRoot, r.project_domain_name));
        }
        if (domain && domain->is_domain) {
          CONCORD_ASSIGN_OR_RETURN(target,
                                   repo::find_project_by_name(tx, domain->id, r.project_name));
        }
        return ok();
      }));
      if (!target || target->is_domain) return unauthenticated(kGenericAuthFailure);
      p.scope = ScopeKind::kProject;
      p.scope_id = target->id;
      return p;
    }
    case ScopeRequest::kDomain: {
      CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
        target.reset();
        if (!r.domain_id.empty()) {
          CONCORD_ASSIGN_OR_RETURN(target, repo::get_project(tx, r.domain_id));
        } else {
          CONCORD_ASSIGN_OR_RETURN(target,
                                   repo::find_project_by_name(tx, kDomainRoot, r.domain_name));
        }
        return ok();
      }));
      if (!target || !target->is_domain) return unauthenticated(kGenericAuthFailure);
      p.scope = ScopeKind::kDomain;
      p.scope_id = target->id;
      return p;
    }
    case ScopeRequest::kSystem:
      p.scope = ScopeKind::kSystem;
      p.scope_id = std::string(kSystemAll);
      return p;
    case ScopeRequest::kUnscoped: return p;
    case ScopeRequest::kDefault: break;
  }
  // Keystone scopes to the default project when the user may use it, else stays unscoped.
  if (default_project_id.empty()) return p;
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> project, dir.project(default_project_id));
  if (!project || project->is_domain || !project->enabled) return p;
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const Project> domain, dir.project(project->domain_id));
  if (!domain || !domain->enabled) return p;
  CONCORD_ASSIGN_OR_RETURN(auto roles,
                           dir.effective_roles(p.user_id, TargetType::kProject, project->id));
  if (roles->empty()) return p;
  p.scope = ScopeKind::kProject;
  p.scope_id = project->id;
  return p;
}

Result<Core::Issued> Core::authenticate_request(const AuthRequest& r) {
  SystemTime now = clock.now();
  std::string user_id;
  std::optional<TokenPayload> parent;
  std::shared_ptr<const AppCred> app_cred;
  auto same_user = [&](const std::string& id) -> Status {
    if (!user_id.empty() && user_id != id) {
      return unauthenticated("the authentication methods name different users");
    }
    user_id = id;
    return ok();
  };

  for (const std::string& method : r.methods) {
    if (method == "password") {
      CONCORD_ASSIGN_OR_RETURN(std::string id, password_user(*r.password));
      CONCORD_RETURN_IF_ERROR(same_user(id));
    } else if (method == "token") {
      // Keystone answers a bad token here with 404, as on validation.
      auto opened = codec.open(*r.token);
      if (!opened) return fail(Code::kNotFound, "Could not find token.");
      auto ctx = resolve(*opened);
      if (!ctx) return fail(Code::kNotFound, "Could not find token.");
      if (!opened->app_cred_id.empty()) {
        return fail(Code::kPermissionDenied,
                    "Using a delegated token to create another token is not allowed.");
      }
      if (opened->scope == ScopeKind::kSystem &&
          (r.scope == ScopeRequest::kProject || r.scope == ScopeRequest::kDomain)) {
        return fail(Code::kPermissionDenied,
                    "Using a system-scoped token to create a project-scoped or domain-scoped "
                    "token is not allowed.");
      }
      CONCORD_RETURN_IF_ERROR(same_user(opened->user_id));
      parent = std::move(*opened);
    } else {
      if (r.scope != ScopeRequest::kDefault && r.scope != ScopeRequest::kUnscoped) {
        return unauthenticated("Application credentials cannot request a scope.");
      }
      CONCORD_ASSIGN_OR_RETURN(app_cred, app_cred_for(*r.app_cred));
      CONCORD_RETURN_IF_ERROR(same_user(app_cred->user_id));
    }
  }
  if (user_id.empty()) return unauthenticated(kGenericAuthFailure);

  TokenPayload p;
  p.user_id = user_id;
  if (parent) {
    p.methods = parent->methods;
    p.expires_at = parent->expires_at;
  } else {
    p.expires_at = now + options.token_ttl;
  }
  for (const std::string& m : r.methods) {
    if (std::find(p.methods.begin(), p.methods.end(), m) == p.methods.end()) p.methods.push_back(m);
  }
  p.issued_at = now;
  p.audit_ids.push_back(new_audit_id());
  if (parent) {
    // The audit chain id: the original token's, however often it was rescoped.
    p.audit_ids.push_back(parent->audit_ids.size() > 1 ? parent->audit_ids[1]
                                                       : parent->audit_ids.front());
  }

  if (app_cred) {
    p.app_cred_id = app_cred->id;
    p.scope = ScopeKind::kProject;
    p.scope_id = app_cred->project_id;
    if (app_cred->expires_at && from_micros(*app_cred->expires_at) < p.expires_at) {
      p.expires_at = from_micros(*app_cred->expires_at);
    }
  } else {
    std::string default_project;
    CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const User> user, dir.user(user_id));
    if (user) default_project = user->default_project_id;
    CONCORD_ASSIGN_OR_RETURN(p, scope_payload(r, std::move(p), default_project));
  }

  // What the token will carry, exactly (the payload codec may round times).
  CONCORD_ASSIGN_OR_RETURN(p, decode_payload(encode_payload(p)));
  {
    // Every event in the index was recorded before this token: one with the same (or, from a
    // replica with a clock ahead of ours, a later) timestamp must not revoke it. Move
    // issued_at just past such an event.
    TokenFacts facts;
    facts.user_id = p.user_id;
    facts.project_id = p.scope == ScopeKind::kProject ? std::string_view(p.scope_id) : "";
    facts.domain_id = p.scope == ScopeKind::kDomain ? std::string_view(p.scope_id) : "";
    CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const User> user, dir.user(p.user_id));
    if (user) facts.user_domain_id = user->domain_id;
    std::shared_ptr<const Project> project;
    if (p.scope == ScopeKind::kProject) {
      CONCORD_ASSIGN_OR_RETURN(project, dir.project(p.scope_id));
      if (project) facts.project_domain_id = project->domain_id;
    }
    auto newest = revocations.newest_time_event(facts);
    if (newest && to_micros(p.issued_at) <= *newest) {
      p.issued_at = from_micros(*newest + 1);
      CONCORD_ASSIGN_OR_RETURN(p, decode_payload(encode_payload(p)));
    }
  }
  std::string token = codec.issue(p);
  auto ctx = resolve(p);
  if (!ctx) {
    logger("identity")
        ->info("token not issued: user_id={} reason={}", p.user_id, ctx.error().message());
    return unauthenticated(kGenericAuthFailure);
  }
  return Issued{std::move(token), std::move(*ctx)};
}

// ---------------------------------------------------------------------------------------------
// Rendering. Token bodies are written as text, not built as nlohmann::json objects: validation
// renders one per request and building the tree then serialising it cost more than everything
// else on that path. Keys are in the order nlohmann would print them (sorted), so the output
// is byte-for-byte what dump_json of the equivalent object gives.

namespace {

void append_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char ch : s) {
    if (ch >= 0x80) {
      // Stored text is valid UTF-8 (it came from JSON), but never emit anything else.
      std::string clean = sanitize_utf8(s);
      if (clean != s) {
        out.resize(out.size() - 1);
        append_string(out, clean);
        return;
      }
      break;
    }
  }
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out.push_back(static_cast<char>(ch));
        }
    }
  }
  out.push_back('"');
}

void append_string_or_null(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += "null";
  } else {
    append_string(out, s);
  }
}

// Keystone's endpoint URL substitution ($(project_id)s, %(tenant_id)s). Returns nullopt when
// the URL needs a value this token does not have (the endpoint is then left out).
std::optional<std::string> substitute(const std::string& url, std::string_view project_id) {
  if (url.find('(') == std::string::npos) return url;
  std::string out;
  out.reserve(url.size() + 32);
  size_t i = 0;
  while (i < url.size()) {
    if ((url[i] == '$' || url[i] == '%') && i + 1 < url.size() && url[i + 1] == '(') {
      size_t close = url.find(")s", i + 2);
      if (close == std::string::npos) return std::nullopt;
      std::string_view key = std::string_view(url).substr(i + 2, close - i - 2);
      if ((key != "project_id" && key != "tenant_id") || project_id.empty()) return std::nullopt;
      out += project_id;
      i = close + 2;
      continue;
    }
    out.push_back(url[i]);
    ++i;
  }
  return out;
}

std::string render_catalog(const CatalogSnapshot& cat, std::string_view project_id) {
  std::string out = "[";
  bool first_service = true;
  for (const CatalogSnapshot::Service& s : cat.services) {
    if (!first_service) out.push_back(',');
    first_service = false;
    out += "{\"endpoints\":[";
    bool first_ep = true;
    for (const CatalogSnapshot::Endpoint& e : s.endpoints) {
      auto url = substitute(e.url, project_id);
      if (!url) continue;
      if (!first_ep) out.push_back(',');
      first_ep = false;
      out += "{\"id\":";
      append_string(out, e.id);
      out += ",\"interface\":";
      append_string(out, e.interface);
      out += ",\"region\":";
      append_string_or_null(out, e.region_id);
      out += ",\"region_id\":";
      append_string_or_null(out, e.region_id);
      out += ",\"url\":";
      append_string(out, *url);
      out.push_back('}');
    }
    out += "],\"id\":";
    append_string(out, s.id);
    out += ",\"name\":";
    append_string(out, s.name);
    out += ",\"type\":";
    append_string(out, s.type);
    out.push_back('}');
  }
  out.push_back(']');
  return out;
}

void append_roles(std::string& out, const std::vector<RoleRef>& roles) {
  out += "\"roles\":[";
  for (size_t i = 0; i < roles.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += "{\"id\":";
    append_string(out, roles[i].id);
    out += ",\"name\":";
    append_string(out, roles[i].name);
    out.push_back('}');
  }
  out += "],";
}

void append_id_name(std::string& out, std::string_view id, std::string_view name) {
  out += "{\"id\":";
  append_string(out, id);
  out += ",\"name\":";
  append_string(out, name);
  out.push_back('}');
}

}  // namespace

Result<std::string> Core::catalog_text(const AuthContext& c) {
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const CatalogSnapshot> cat, dir.catalog());
  {
    std::lock_guard lock(cat->render_mu);
    auto it = cat->rendered.find(c.project_id);
    if (it != cat->rendered.end()) return it->second;
  }
  std::string text = render_catalog(*cat, c.project_id);
  std::lock_guard lock(cat->render_mu);
  if (cat->rendered.size() >= 10000) cat->rendered.clear();
  cat->rendered.insert_or_assign(c.project_id, text);
  return text;
}

Result<std::string> Core::token_body(const AuthContext& c, bool include_catalog) {
  std::string out;
  out.reserve(include_catalog ? 2048 : 512);
  out += "{\"token\":{";
  if (!c.app_cred_id.empty()) {
    out += "\"application_credential\":{\"id\":";
    append_string(out, c.app_cred_id);
    out += ",\"name\":";
    append_string(out, c.app_cred_name);
    out += c.app_cred_restricted ? ",\"restricted\":true}," : ",\"restricted\":false},";
  }
  out += "\"audit_ids\":[";
  for (size_t i = 0; i < c.audit_ids.size(); ++i) {
    if (i > 0) out.push_back(',');
    append_string(out, c.audit_ids[i]);
  }
  out += "],";
  if (include_catalog && c.scope != ScopeKind::kUnscoped) {
    CONCORD_ASSIGN_OR_RETURN(std::string catalog, catalog_text(c));
    out += "\"catalog\":";
    out += catalog;
    out.push_back(',');
  }
  if (c.scope == ScopeKind::kDomain) {
    out += "\"domain\":";
    append_id_name(out, c.domain_id, c.domain_name);
    out.push_back(',');
  }
  out += "\"expires_at\":";
  append_string(out, format_keystone_time(c.expires_at));
  out.push_back(',');
  if (c.scope == ScopeKind::kProject) out += "\"is_domain\":false,";
  out += "\"issued_at\":";
  append_string(out, format_keystone_time(c.issued_at));
  out += ",\"methods\":[";
  for (size_t i = 0; i < c.methods.size(); ++i) {
    if (i > 0) out.push_back(',');
    append_string(out, c.methods[i]);
  }
  out += "],";
  if (c.scope == ScopeKind::kProject) {
    out += "\"project\":{\"domain\":";
    append_id_name(out, c.project_domain_id, c.project_domain_name);
    out += ",\"id\":";
    append_string(out, c.project_id);
    out += ",\"name\":";
    append_string(out, c.project_name);
    out += "},";
  }
  if (c.scope != ScopeKind::kUnscoped) append_roles(out, c.roles);
  if (c.scope == ScopeKind::kSystem) out += "\"system\":{\"all\":true},";
  out += "\"user\":{\"domain\":";
  append_id_name(out, c.user_domain_id, c.user_domain_name);
  out += ",\"id\":";
  append_string(out, c.user_id);
  out += ",\"name\":";
  append_string(out, c.user_name);
  out += ",\"password_expires_at\":";
  if (c.password_expires_at) {
    append_string(out, format_iso_naive(*c.password_expires_at));
  } else {
    out += "null";
  }
  out += "}}}";
  return out;
}

}  // namespace concord::identity

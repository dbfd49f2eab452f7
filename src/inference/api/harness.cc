#include "inference/api/harness.h"

#include <exception>
#include <utility>

#include "base/json.h"
#include "base/log.h"

namespace concord::inference::api {

Status authorize_on(const Harness& harness, const identity::IdentityService& identity,
                    const identity::AuthContext& caller, std::string_view rule,
                    const std::string& project) {
  identity::Target target;
  target.project_id = project;
  auto allowed = identity.authorize(caller, rule, target);
  if (!allowed && allowed.error().code() == Code::kPermissionDenied) {
    return fail(
        Code::kPermissionDenied,
        std::string(rule == "project_member" ? harness.member_denied : harness.reader_denied));
  }
  return allowed;
}

http::Response run_request(const Harness& harness, const identity::IdentityService& identity,
                           http::Request& req, std::string_view rule, const CallHandler& handler) {
  auto error = [&](const Error& e) {
    int status = harness.status_of(e.code());
    if (status >= 500) {
      logger("inference")
          ->error("{} {} failed: {} request_id={}", http::method_name(req.method),
                  sanitize_utf8(req.path), e.to_string(), req.request_id);
    }
    return harness.errors(status, e.message());
  };
  try {
    std::string_view token = req.header("x-auth-token");
    if (token.empty()) {
      return harness.errors(401, "authentication required: send a token in X-Auth-Token");
    }
    auto ctx = identity.authenticate(token);
    if (!ctx) {
      if (ctx.error().code() != Code::kUnauthenticated) return error(ctx.error());
      return harness.errors(401, "the token is not valid: " + ctx.error().message());
    }
    if (ctx->project_id.empty() && !ctx->is_admin()) {
      return harness.errors(403, "a project-scoped token is needed");
    }
    if (auto allowed = authorize_on(harness, identity, *ctx, rule, ctx->project_id); !allowed) {
      return error(allowed.error());
    }
    // No stored id holds these, so they can only be "not found"; checking here keeps such bytes
    // out of queries and log lines.
    for (const std::string& p : req.params) {
      if (p.find('\0') != std::string::npos || sanitize_utf8(p) != p || p.size() > 255) {
        return harness.errors(404, "the resource could not be found");
      }
    }
    auto response = handler(std::move(*ctx));
    if (!response) return error(response.error());
    return std::move(*response);
  } catch (const std::exception& e) {
    logger("inference")
        ->error("unexpected exception: {} {} request_id={} what={}", http::method_name(req.method),
                sanitize_utf8(req.path), req.request_id, e.what());
    return harness.errors(500, "internal error; the request id is " + req.request_id);
  }
}

}  // namespace concord::inference::api

// The request harness the inference APIs (/inference/v1 models and endpoints) share: one place
// decides how a request becomes an authenticated, authorized call and how a failed call becomes
// an HTTP error, so the two APIs cannot drift apart in status codes or messages.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "http/message.h"
#include "http/router.h"
#include "identity/auth_context.h"
#include "identity/identity_service.h"

namespace concord::inference::api {

// What differs between the APIs: their error body, their code -> status table and the words
// they use for a denied policy rule.
struct Harness {
  http::ErrorFormatter errors;
  int (*status_of)(Code code) = nullptr;
  // kPermissionDenied message for the "project_member" rule, and for any other (reader) rule.
  std::string_view member_denied;
  std::string_view reader_denied;
};

// The caller's policy check with the API's own words on a denial; other failures pass through.
[[nodiscard]] Status authorize_on(const Harness& harness, const identity::IdentityService& identity,
                                  const identity::AuthContext& caller, std::string_view rule,
                                  const std::string& project);

using CallHandler = std::function<Result<http::Response>(identity::AuthContext caller)>;

// Runs one request: X-Auth-Token -> caller (401 without or with a bad token), a project-scoped
// token unless admin (403), `rule` on the caller's project, path parameters that no stored id can
// match -> 404, then `handler`; a failed Result maps through the harness (5xx logged), and an
// exception becomes a 500 naming the request id.
[[nodiscard]] http::Response run_request(const Harness& harness,
                                         const identity::IdentityService& identity,
                                         http::Request& req, std::string_view rule,
                                         const CallHandler& handler);

}  // namespace concord::inference::api

// Fuzzes the body of POST /v3/auth/tokens: JSON parsing (depth limit, UTF-8 checks) and the
// validation into identity::AuthRequest, without a store. Any input must give either a
// kInvalidArgument error or a request that satisfies the invariants the service relies on.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/log.h"
#include "identity/auth_request.h"

namespace {

using concord::Code;
using concord::identity::AuthRequest;
using concord::identity::ScopeRequest;

void check(bool condition) {
  if (!condition) std::abort();
}

void check_invariants(const AuthRequest& r) {
  check(!r.methods.empty());
  for (size_t i = 0; i < r.methods.size(); ++i) {
    const std::string& m = r.methods[i];
    check(m == "password" || m == "token" || m == "application_credential");
    for (size_t j = i + 1; j < r.methods.size(); ++j) check(r.methods[j] != m);
    if (m == "password") {
      check(r.password.has_value());
      const auto& u = r.password->user;
      check(!u.id.empty() || !u.name.empty());
    }
    if (m == "token") check(r.token.has_value());
    if (m == "application_credential") {
      check(r.app_cred.has_value());
      check(!r.app_cred->id.empty() || !r.app_cred->name.empty());
    }
  }
  if (r.scope == ScopeRequest::kProject) {
    check(!r.project_id.empty() || !r.project_name.empty());
  }
  if (r.scope == ScopeRequest::kDomain) check(!r.domain_id.empty() || !r.domain_name.empty());
  // Ids and names that reach SQL never carry NUL bytes.
  for (const std::string* s : {&r.project_id, &r.project_name, &r.project_domain_id,
                               &r.project_domain_name, &r.domain_id, &r.domain_name}) {
    check(s->find('\0') == std::string::npos);
  }
  if (r.password) {
    check(r.password->user.id.find('\0') == std::string::npos);
    check(r.password->user.name.find('\0') == std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = [] {
    concord::set_log_level("off");
    return true;
  }();
  (void)quiet;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = concord::identity::parse_auth_request(body);
  if (parsed) {
    check_invariants(*parsed);
  } else {
    check(parsed.error().code() == Code::kInvalidArgument);
    check(!parsed.error().message().empty());
  }
  return 0;
}

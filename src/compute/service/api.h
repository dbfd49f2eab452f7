#pragma once
// The Nova v2.1 HTTP frame: one wrapper (NovaApi::run) authenticates the caller, parses and
// checks the microversion, checks the route's policy rule, runs the handler, turns any error
// into Nova's fault body and echoes the version headers on every answer (also errors, as Nova
// does; Tempest checks it). Handlers live in api_*.cc by resource family; each family has one
// add_*_routes() function. Internal to src/compute/service.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "compute/service/context.h"
#include "http/router.h"
#include "identity/auth_context.h"

namespace concord::compute {

// A compute API microversion "2.<minor>".
struct ApiVersion {
  int major = 2;
  int minor = 1;
  bool at_least(int m) const { return minor >= m; }
  std::string str() const { return std::to_string(major) + "." + std::to_string(minor); }
  friend auto operator<=>(const ApiVersion&, const ApiVersion&) = default;
};
inline constexpr ApiVersion kMinVersion{2, 1};
inline constexpr ApiVersion kMaxVersion{2, 79};

// From `OpenStack-API-Version: compute X` (preferred) or `X-OpenStack-Nova-API-Version: X`;
// no header means 2.1; "latest" means kMaxVersion. kInvalidArgument for a malformed value
// (Nova: 400), kFailedPrecondition for a well-formed one outside [min, max] (Nova: 406).
[[nodiscard]] Result<ApiVersion> parse_version(const http::Request& req);

// Nova's fault body: {"<name>": {"code": status, "message": message}} with the name Nova uses
// for the status (badRequest, unauthorized, forbidden, itemNotFound, badMethod,
// conflictingRequest, overLimit, badMediaType, notImplemented, ...). application/json.
http::Response nova_error(int status, std::string_view message);
// The HTTP status Nova uses for an error code (kInvalidArgument 400, kUnauthenticated 401,
// kPermissionDenied 403, kResourceExhausted 403 (quota), kNotFound 404, kAlreadyExists 409,
// kAborted/kFailedPrecondition 409, kUnavailable 503, kDeadlineExceeded 504, else 500).
int nova_status(Code code);

class ServerViewCache;

class NovaApi {
 public:
  explicit NovaApi(ComputeContext& ctx);
  ~NovaApi();

  struct Call {
    http::Request& req;
    const identity::AuthContext& caller;
    ApiVersion version;
    std::string_view param(size_t i) const {
      return i < req.params.size() ? std::string_view(req.params[i]) : std::string_view();
    }
    // scheme://host[:port]/compute + "/v2.1/" + path, and the bookmark form (no version).
    std::string link(std::string_view path) const;
    std::string bookmark(std::string_view path) const;
  };
  // A handler returns the response (the frame adds the version headers) or an error, which
  // the frame renders with nova_error(nova_status(code), message).
  using Handler = std::function<Result<http::Response>(Call&)>;

  // Registers a route. `rule` is a policy rule checked before the handler against the token's
  // own project ("admin", "authenticated", "project_reader", "project_member"); handlers that
  // touch another project's resource call authorize() themselves with that project.
  // `min_version`: below it the route answers 404 as Nova does for unknown URLs.
  void add(http::Method method, std::string pattern, std::string rule, Handler handler,
           ApiVersion min_version = kMinVersion);
  // Routes that need no token (version discovery).
  void add_public(http::Method method, std::string pattern, Handler handler);

  // ok, or kPermissionDenied / kNotFound per Nova's convention: a non-admin asking for another
  // project's server gets 404 (not 403), so use `hide_as_not_found` for reads of owned objects.
  [[nodiscard]] Status authorize(const Call& call, std::string_view rule,
                                 std::string_view project_id, bool hide_as_not_found = false) const;

  // Parses the body as a JSON object (400 with Nova's message otherwise).
  [[nodiscard]] static Result<Json> body_object(const Call& call);

  ComputeContext& ctx() { return ctx_; }
  ServerViewCache& view_cache() { return *view_cache_; }
  std::shared_ptr<http::RouteTable> table() const { return table_; }
  const std::vector<RouteInfo>& infos() const { return infos_; }

 private:
  struct Spec {
    std::string rule;
    bool needs_token = true;
    ApiVersion min_version;
    Handler handler;
  };
  http::Response run(http::Request& req, const Spec& spec);

  ComputeContext& ctx_;
  std::unique_ptr<ServerViewCache> view_cache_;
  std::shared_ptr<http::RouteTable> table_;
  std::vector<RouteInfo> infos_;
};

// Adds the version headers for `v` to a response (also used for errors before routing).
void add_version_headers(http::Response& resp, const ApiVersion& v);

// A UUID (version 5 layout) derived from a name, so that ids of things named by the operator
// (hypervisors, hosts) are stable across restarts and replicas (api_misc.cc).
std::string name_uuid(std::string_view ns, std::string_view name);

// Route families (one api_*.cc each).
void add_version_routes(NovaApi& api);  // GET /, /v2.1 discovery (api_versions.cc)
void add_flavor_routes(NovaApi& api);   // flavors, extra specs, access (api_flavors.cc)
void add_keypair_routes(NovaApi& api);  // os-keypairs (api_keypairs.cc)
void add_quota_routes(NovaApi& api);    // limits, os-quota-sets, os-quota-class-sets
void add_misc_routes(NovaApi& api);     // os-availability-zone, os-server-groups,
                                        // os-hypervisors, os-services (api_misc.cc)
void add_server_routes(NovaApi& api);   // servers, actions, metadata, instance actions,
                                        // console output, tags (api_servers*.cc)
void add_admin_routes(NovaApi& api);    // os-aggregates, os-hosts, os-migrations, diagnostics,
                                        // external events, hypervisor uptime (api_admin.cc)
void add_proxy_routes(NovaApi& api);    // Nova's image proxy, os-simple-tenant-usage,
                                        // os-server-password, extensions (api_proxy.cc)

}  // namespace concord::compute

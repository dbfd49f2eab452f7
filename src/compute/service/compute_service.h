#pragma once
// The compute capability's server side: the Nova v2.1 API, the agent protocol endpoints and
// the controller (host liveness, operation deadlines, local deletes). See
// docs/design/compute.md.
#include <memory>
#include <vector>

#include "base/result.h"
#include "compute/service/context.h"
#include "http/router.h"

namespace concord::compute {

class ComputeService {
 public:
  // Registers routes; fails (kInternal) on a route naming an unknown policy rule.
  [[nodiscard]] static Result<std::unique_ptr<ComputeService>> create(ComputeContext ctx);
  ~ComputeService();
  ComputeService(const ComputeService&) = delete;
  ComputeService& operator=(const ComputeService&) = delete;

  // Nova v2.1, to mount at "/compute" (catalog URL `<public>/compute/v2.1`). Errors: nova_error.
  std::shared_ptr<http::RouteTable> routes() const;
  static http::Response error(int status, std::string_view message);
  const std::vector<RouteInfo>& route_infos() const;

  // The agent protocol, to mount at "/agent". Errors: keystone_style_error.
  std::shared_ptr<http::RouteTable> agent_routes() const;

  // Starts / stops the controller thread (host liveness, deadlines). Idempotent.
  [[nodiscard]] Status start();
  void stop();
  // One controller pass (tests call it with a FakeClock instead of starting the thread).
  [[nodiscard]] Status reconcile_once();

  ComputeContext& context();

 private:
  class Impl;
  explicit ComputeService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The per-host credential: base64url(HMAC-SHA256(agent_key, host)).
std::string agent_credential(std::string_view agent_key, std::string_view host);

}  // namespace concord::compute

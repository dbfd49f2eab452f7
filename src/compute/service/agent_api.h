#pragma once
// The server side of the agent protocol (agent_api.cc) and the controller (controller.cc).
// See docs/design/compute.md, "Agent protocol" and "Failure cases".
#include <memory>

#include "base/result.h"
#include "compute/service/context.h"
#include "http/router.h"

namespace concord::compute {

// Routes under "/agent": register, assignments (long-poll), report, image download.
std::shared_ptr<http::RouteTable> make_agent_routes(ComputeContext& ctx);

// The host an agent's request comes from, checked as the agent routes check it: the
// X-Concord-Agent header "<host>:<credential>" against the server's agent key. For other
// capabilities' agent routes (the database service's backup routes). kUnauthenticated when the
// header is missing, malformed or wrong, or no agent key is configured.
[[nodiscard]] Result<std::string> authenticate_agent(const ComputeContext& ctx,
                                                     const http::Request& req);

// Host liveness (down after missed heartbeats), operation deadlines (ERROR + fault), local
// deletes on down hosts. One pass is idempotent; run() loops until stop().
class Controller {
 public:
  explicit Controller(ComputeContext& ctx);
  ~Controller();
  [[nodiscard]] Status reconcile_once();
  void start();
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::compute

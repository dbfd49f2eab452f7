#pragma once
// Inference endpoints (issue 5, item 2): Concord's API for endpoints under /inference/v1/endpoints,
// the Open Inference Protocol gateway under /inference/v2/endpoints/{id}/v2/..., and the
// controller that keeps each endpoint's replicas running, ready and sized to its load.
//
// How the three parts share state, and why:
//   * The API only records intent (the endpoint row: model version, replica bounds, batching,
//     autoscaling) in one store transaction and answers; it never talks to replicas. Deleting
//     marks the row `deleting`; the controller removes it once its replicas are gone.
//   * The controller (level-triggered, one pass at a time) reads every endpoint and replica row
//     and the backend's list, and converges: replica rows first, then ReplicaBackend::ensure
//     (idempotent per id), so a crash between the two re-issues the same call; failed, killed
//     and surplus replicas are destroyed and their rows removed; replicas the backend runs that
//     no row names are destroyed (orphans). It probes each running replica's
//     GET /v2/health/ready and publishes the ready set to the gateway (memory only: after a
//     restart the gateway answers 503 until the first pass).
//   * The gateway authenticates the caller, proxies to the ready replica with the fewest
//     outstanding requests (a connect failure or a broken connection is retried once on
//     another replica) and records what the autoscaler needs (in-flight count seen by each
//     arriving request, latencies) and what billing needs (request counts, flushed into the
//     usage ledger by the controller).
//
// Autoscaling: desired = clamp(ceil(ready * observed / target), min, max). queue_length observes
// the mean number of requests in flight per ready replica as seen by arriving requests (by
// PASTA, the time average under random arrivals); p99_latency_ms observes the p99 of the
// latencies since the previous pass. Scale-up is immediate; scale-down waits until the computed
// value has stayed lower for the endpoint's scale_down_delay.
//
// Usage events (usage_ledger.h), resource type "inference.endpoint", the endpoint's project:
//   inference.requests        count of gateway requests per endpoint per controller pass
//   inference.replica_seconds seconds each replica ran, per interval (at most meter_interval
//                             long, and closed when the replica is removed), in the same
//                             transaction as the replica row's change.
//
// Data (component "inference_endpoints", SQLite and PostgreSQL): see endpoint_store.h.
//
// Wiring (main()):
//   store->migrate(inference::endpoints::migrations());
//   auto endpoints = EndpointService::create(*store, clock, *identity, *registry, *backend,
//                                            metrics, options);
//   registry->set_in_use(endpoints->in_use_check());
//   router.mount("/inference/v1/endpoints", endpoints->routes_api(), endpoints->api_errors());
//   router.mount("/inference/v2/endpoints", endpoints->routes_gateway(),
//                endpoints->gateway_errors());
//   endpoints->start();  ...  endpoints->stop();   // before the backend and the store go
//
// Threading: every method is safe from any thread. API handlers block on the store. Gateway
// routes are deferred (http/router.h): the I/O thread authenticates (token, at most one store
// read) and hands the request to an async HTTP client with its own thread(s) and keep-alive
// pool per replica; the answer goes back through the Responder, so a slow inference holds no
// server thread. In-flight gateway requests are bounded by EndpointOptions::max_in_flight and
// each by request_timeout. reconcile_once() passes are
// serialised by a mutex; start() runs them on one thread every reconcile_interval, and sooner
// after an API change.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "http/metrics.h"
#include "http/router.h"
#include "identity/identity_service.h"
#include "inference/endpoints/replica_backend.h"
#include "inference/registry/registry.h"
#include "store/store.h"

namespace concord::inference::endpoints {

// Schema of component "inference_endpoints".
std::vector<store::Migration> migrations();

struct EndpointOptions {
  // Where the two route tables are mounted (for the endpoint's URL and the gateway's paths).
  std::string api_prefix = "/inference/v1/endpoints";
  std::string gateway_prefix = "/inference/v2/endpoints";
  // Public origin for endpoint URLs ("https://cloud.example:5000"); empty: the request's origin.
  std::string public_url;
  // Region written into usage events.
  std::string region;
  // Upper bound of max_replicas an endpoint may ask for.
  int max_replicas_limit = 16;
  // Product loop period (start()); tests call reconcile_once() instead.
  std::chrono::milliseconds reconcile_interval{2000};
  // Bound on each readiness probe and on each proxied request.
  std::chrono::milliseconds probe_timeout{1000};
  std::chrono::milliseconds request_timeout{30'000};
  // Idle keep-alive connections kept per replica by the gateway (its async client's pool).
  size_t clients_per_replica = 64;
  // Gateway requests in flight at once (all endpoints) before new ones get 503 with
  // Retry-After. This, not the HTTP server's thread count, bounds concurrency through the
  // gateway: a request waiting for its replica holds no server thread (a deferred route).
  size_t max_in_flight = 1024;
  // Threads of the gateway's async HTTP client (they only move bytes and copy replies).
  int gateway_threads = 1;
  // Longest replica_seconds interval before the controller closes one and starts the next.
  std::chrono::seconds meter_interval{60};
  // A replica that runs but has not answered its ready probe for this long (since it started,
  // or since it last was ready) is destroyed and replaced: a hung process or one the backend
  // has not noticed is gone.
  std::chrono::seconds unready_grace{120};
};

// The one error body of the endpoints API, the registry's: {"error": {"code", "message"}}.
http::Response endpoints_error(int status, std::string_view message);
// The gateway's, OIP's: {"error": "<message>"}.
http::Response gateway_error(int status, std::string_view message);

// What the controller saw in one pass (for tests and logs).
struct ReconcileReport {
  int endpoints = 0;
  int replicas_created = 0;
  int replicas_destroyed = 0;
  int orphans_destroyed = 0;
  int endpoints_removed = 0;
  int ready = 0;      // ready replicas over all endpoints after the pass
  int not_ready = 0;  // replicas kept that are not ready yet (the loop comes back sooner)
};

class EndpointService {
 public:
  // kInvalidArgument for bad options. `metrics` may be null (no metrics).
  [[nodiscard]] static Result<std::unique_ptr<EndpointService>> create(
      store::Store& store, const Clock& clock, identity::IdentityService& identity,
      registry::ModelRegistry& registry, ReplicaBackend& backend,
      std::shared_ptr<http::Registry> metrics, EndpointOptions options);
  ~EndpointService();  // stops the loop
  EndpointService(const EndpointService&) = delete;
  EndpointService& operator=(const EndpointService&) = delete;

  // Below api_prefix: "", "/{id}".
  std::shared_ptr<http::RouteTable> routes_api() const;
  http::ErrorFormatter api_errors() const { return endpoints_error; }
  // Below gateway_prefix: "/{id}/v2/...".
  std::shared_ptr<http::RouteTable> routes_gateway() const;
  http::ErrorFormatter gateway_errors() const { return gateway_error; }

  // Runs reconcile passes on a thread until stop(). kFailedPrecondition when already started.
  [[nodiscard]] Status start();
  void stop();
  // One controller pass (serialised with the loop's).
  [[nodiscard]] Result<ReconcileReport> reconcile_once();

  // The id of an endpoint (not yet removed) serving the model (any version when `version` is
  // nullopt), inside the caller's transaction; nullopt when none.
  [[nodiscard]] static Result<std::optional<std::string>> endpoint_using(
      store::Tx& tx, std::string_view model_id, std::optional<int64_t> version);
  [[nodiscard]] static Result<bool> in_use(store::Tx& tx, std::string_view model_id,
                                           std::optional<int64_t> version);
  // For ModelRegistry::set_in_use.
  registry::InUseCheck in_use_check() const;

  class Impl;

 private:
  explicit EndpointService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::inference::endpoints

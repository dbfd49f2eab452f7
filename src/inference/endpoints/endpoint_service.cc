#include "inference/endpoints/endpoint_service.h"

#include <utility>

#include "inference/endpoints/service_impl.h"

namespace concord::inference::endpoints {

std::string_view phase_name(ReplicaPhase phase) {
  switch (phase) {
    case ReplicaPhase::kPending: return "pending";
    case ReplicaPhase::kRunning: return "running";
    case ReplicaPhase::kFailed: return "failed";
    case ReplicaPhase::kGone: return "gone";
  }
  return "unknown";
}

Result<std::unique_ptr<EndpointService>> EndpointService::create(
    store::Store& store, const Clock& clock, identity::IdentityService& identity,
    registry::ModelRegistry& registry, ReplicaBackend& backend,
    std::shared_ptr<http::Registry> metrics, EndpointOptions options) {
  if (options.max_replicas_limit < 1) {
    return fail(Code::kInvalidArgument, "inference endpoints max_replicas_limit must be positive");
  }
  if (options.reconcile_interval.count() <= 0 || options.probe_timeout.count() <= 0 ||
      options.request_timeout.count() <= 0) {
    return fail(Code::kInvalidArgument,
                "inference endpoints reconcile_interval, probe_timeout and request_timeout must "
                "be positive");
  }
  if (options.meter_interval.count() <= 0 || options.unready_grace.count() <= 0) {
    return fail(Code::kInvalidArgument,
                "inference endpoints meter_interval and unready_grace must be positive");
  }
  if (!options.api_prefix.starts_with('/') || !options.gateway_prefix.starts_with('/')) {
    return fail(Code::kInvalidArgument, "inference endpoints prefixes must start with '/'");
  }
  if (options.max_in_flight < 1 || options.gateway_threads < 1) {
    return fail(Code::kInvalidArgument,
                "inference endpoints max_in_flight and gateway_threads must be positive");
  }
  http::AsyncClientOptions client_options;
  client_options.threads = options.gateway_threads;
  client_options.max_idle_per_origin = options.clients_per_replica;
  CONCORD_ASSIGN_OR_RETURN(auto client, http::AsyncHttpClient::create(client_options));
  auto impl = std::make_unique<Impl>(store, clock, identity, registry, backend, std::move(metrics),
                                     std::move(options));
  impl->client_ = std::move(client);
  impl->build_api_routes();
  impl->build_gateway_routes();
  return std::unique_ptr<EndpointService>(new EndpointService(std::move(impl)));
}

EndpointService::EndpointService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EndpointService::~EndpointService() = default;

std::shared_ptr<http::RouteTable> EndpointService::routes_api() const {
  return impl_->api_;
}
std::shared_ptr<http::RouteTable> EndpointService::routes_gateway() const {
  return impl_->gateway_;
}
Status EndpointService::start() {
  return impl_->start();
}
void EndpointService::stop() {
  impl_->stop();
}
Result<ReconcileReport> EndpointService::reconcile_once() {
  return impl_->reconcile_once();
}
registry::InUseCheck EndpointService::in_use_check() const {
  return [](store::Tx& tx, std::string_view model_id, std::optional<int64_t> version) {
    return endpoint_using(tx, model_id, version);
  };
}

}  // namespace concord::inference::endpoints

// The OIP gateway (/inference/v2/endpoints/{id}/v2/...): authenticates the caller against the
// endpoint's project and proxies the request to one of the endpoint's ready replicas.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/log.h"
#include "inference/endpoints/service_impl.h"

namespace concord::inference::endpoints {
namespace {

using http::Request;
using http::Response;

// Latency samples kept per endpoint between two controller passes (enough for a p99).
constexpr size_t kMaxLatencySamples = 4096;

const std::vector<double>& seconds_buckets() {
  static const std::vector<double> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return kBounds;
}

std::optional<double> header_number(const http::HttpReply& reply, std::string_view name) {
  std::string v = reply.header(name);
  double out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || out < 0) return std::nullopt;
  return out;
}

}  // namespace

http::Response gateway_error(int status, std::string_view message) {
  Json body = {{"error", sanitize_utf8(message)}};
  return Response::json(status, dump_json(body));
}

// ---- EndpointLoad -----------------------------------------------------------------------------

void EndpointLoad::arrive() {
  int64_t now = ++in_flight_;
  std::lock_guard lock(mu_);
  arrival_sum_ += static_cast<double>(now);
  ++arrivals_;
  ++unbilled_requests_;
}

void EndpointLoad::depart(double latency_ms) {
  --in_flight_;
  std::lock_guard lock(mu_);
  if (latencies_ms_.size() < kMaxLatencySamples) latencies_ms_.push_back(latency_ms);
}

EndpointLoad::Window EndpointLoad::take_window() {
  Window w;
  w.in_flight_now = in_flight_.load();
  std::lock_guard lock(mu_);
  w.arrivals = arrivals_;
  w.mean_in_flight_at_arrival = arrivals_ > 0 ? arrival_sum_ / static_cast<double>(arrivals_) : 0;
  w.latencies_ms = std::move(latencies_ms_);
  latencies_ms_.clear();
  arrival_sum_ = 0;
  arrivals_ = 0;
  return w;
}

int64_t EndpointLoad::take_requests() {
  std::lock_guard lock(mu_);
  return std::exchange(unbilled_requests_, 0);
}

void EndpointLoad::give_back_requests(int64_t n) {
  std::lock_guard lock(mu_);
  unbilled_requests_ += n;
}

// ---- the proxy ---------------------------------------------------------------------------------

std::shared_ptr<EndpointRuntime> EndpointService::Impl::find_runtime(const std::string& id) {
  std::lock_guard lock(runtimes_mu_);
  auto it = runtimes_.find(id);
  return it == runtimes_.end() ? nullptr : it->second;
}

std::shared_ptr<EndpointRuntime> EndpointService::Impl::runtime_for(const EndpointRow& e) {
  std::lock_guard lock(runtimes_mu_);
  auto& slot = runtimes_[e.id];
  if (!slot) {
    slot = std::make_shared<EndpointRuntime>();
    slot->id = e.id;
    slot->project_id = e.project_id;
    slot->replica_key = e.replica_key;
  }
  return slot;
}

void EndpointService::Impl::record_metrics(const std::string& endpoint_id, int status,
                                           double seconds, const http::HttpReply* reply) {
  if (!metrics_) return;
  metrics_
      ->counter("concord_inference_requests_total", "OIP requests through the endpoint gateway",
                {{"endpoint", endpoint_id}, {"code", std::to_string(status)}})
      .inc();
  metrics_
      ->histogram("concord_inference_request_seconds",
                  "OIP request time through the gateway, replica included",
                  {{"endpoint", endpoint_id}}, seconds_buckets())
      .observe(seconds);
  if (reply == nullptr) return;
  if (auto batch = header_number(*reply, "concord-batch-size")) {
    metrics_
        ->histogram("concord_inference_batch_size", "rows per runtime call, as replicas report",
                    {{"endpoint", endpoint_id}}, {1, 2, 4, 8, 16, 32, 64, 128, 256})
        .observe(*batch);
  }
  if (auto q = header_number(*reply, "concord-queue-time-us")) {
    metrics_
        ->histogram("concord_inference_queue_seconds",
                    "time a request waited for its batch in the replica",
                    {{"endpoint", endpoint_id}}, seconds_buckets())
        .observe(*q / 1e6);
  }
  if (auto ct = header_number(*reply, "concord-compute-time-us")) {
    metrics_
        ->histogram("concord_inference_compute_seconds",
                    "runtime time of the batch a request ran in", {{"endpoint", endpoint_id}},
                    seconds_buckets())
        .observe(*ct / 1e6);
  }
}

// One forwarded request, from the moment it leaves the I/O thread until its Responder is
// called. Owned by the async client's callbacks; everything it needs was copied out of the
// Request (which is valid only while the handler runs).
struct EndpointService::Impl::Forward {
  http::Responder respond;
  std::shared_ptr<EndpointRuntime> rt;
  std::string id;
  std::string request_id;
  std::string method;
  std::string tail;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::steady_clock::time_point started;
  std::vector<std::string> tried;  // replicas that could not be reached
  std::shared_ptr<ReplicaTarget> current;
  Response failure;
};

void EndpointService::Impl::proxy(Request& req, http::Responder respond) {
  try {
    const std::string id = req.params.empty() ? std::string() : req.params.front();
    std::string_view token = req.header("x-auth-token");
    if (token.empty()) {
      respond(gateway_error(401, "authentication required: send a token in X-Auth-Token"));
      return;
    }
    auto caller = identity_.authenticate(token);
    if (!caller) {
      if (caller.error().code() == Code::kUnauthenticated) {
        respond(gateway_error(401, "the token is not valid: " + caller.error().message()));
      } else {
        respond(gateway_error(503, caller.error().message()));
      }
      return;
    }
    std::shared_ptr<EndpointRuntime> rt = find_runtime(id);
    std::string project = rt ? rt->project_id : std::string();
    if (!rt) {
      std::optional<EndpointRow> row;
      auto read = store_.read([&](store::Tx& tx) -> Status {
        CONCORD_ASSIGN_OR_RETURN(row, load_endpoint(tx, id));
        return ok();
      });
      if (!read) {
        respond(gateway_error(503, read.error().message()));
        return;
      }
      if (row) project = row->project_id;
    }
    if (project.empty() || (!caller->is_admin() && caller->project_id != project)) {
      respond(gateway_error(404, "endpoint " + sanitize_utf8(id) + " not found"));
      return;
    }
    identity::Target target;
    target.project_id = project;
    if (!identity_.authorize(*caller, "project_reader", target)) {
      respond(gateway_error(403, "the reader role on the endpoint's project is needed"));
      return;
    }
    if (!rt) {
      respond(gateway_error(503, "endpoint " + id + " has no ready replica yet"));
      return;
    }

    // The OIP path below the endpoint, still percent-encoded, with its query.
    std::string_view raw = req.target;
    std::string marker = "/" + id + "/";
    size_t at = raw.find(marker);
    if (at == std::string_view::npos) {
      respond(gateway_error(404, "no such OIP route"));
      return;
    }

    // The bound that replaces the server's thread count: past it, waiting requests would only
    // pile up memory and latency, so the caller is told to come back.
    if (in_flight_.fetch_add(1) >= static_cast<int64_t>(options_.max_in_flight)) {
      in_flight_.fetch_sub(1);
      Response busy =
          gateway_error(503, "the gateway has " + std::to_string(options_.max_in_flight) +
                                 " requests in flight, its limit; retry shortly");
      busy.set_header("retry-after", "1");
      record_metrics(id, busy.status, 0, nullptr);
      respond(std::move(busy));
      return;
    }

    auto fwd = std::make_shared<Forward>();
    fwd->respond = std::move(respond);
    fwd->rt = rt;
    fwd->id = id;
    fwd->request_id = req.request_id;
    fwd->method = std::string(http::method_name(req.method));
    fwd->tail = std::string(raw.substr(at + marker.size() - 1));
    fwd->body = std::move(req.body);
    fwd->headers = {{"x-concord-replica-key", rt->replica_key}};
    for (std::string_view name : {"content-type", "inference-header-content-length", "accept"}) {
      if (req.has_header(name)) fwd->headers.emplace_back(std::string(name), req.header(name));
    }
    fwd->failure = gateway_error(503, "endpoint " + id + " has no ready replica");
    fwd->started = std::chrono::steady_clock::now();
    rt->load.arrive();
    forward(std::move(fwd));
  } catch (const std::exception& e) {
    logger("inference")
        ->error("unexpected exception in the gateway: {} request_id={}", e.what(), req.request_id);
    respond(gateway_error(500, "internal error; the request id is " + req.request_id));
  }
}

void EndpointService::Impl::forward(std::shared_ptr<Forward> fwd) {
  // At most two replicas: a broken connection to one is retried on another (the async client
  // already retried a stale pooled connection on the same replica once).
  if (fwd->tried.size() >= 2) {
    complete(*fwd, nullptr);
    return;
  }
  std::shared_ptr<ReplicaTarget> pick;
  {
    std::lock_guard lock(fwd->rt->mu);
    const auto& ready = fwd->rt->ready;
    const size_t n = ready.size();
    const size_t start = n == 0 ? 0 : fwd->rt->next++ % n;
    for (size_t i = 0; i < n; ++i) {
      const auto& t = ready[(start + i) % n];
      if (!t->healthy.load()) continue;
      if (std::find(fwd->tried.begin(), fwd->tried.end(), t->id()) != fwd->tried.end()) continue;
      if (!pick || t->outstanding.load() < pick->outstanding.load()) pick = t;
    }
  }
  if (!pick) {
    complete(*fwd, nullptr);
    return;
  }
  ++pick->outstanding;
  fwd->current = pick;
  // The body is copied, not moved: a retry on another replica sends it again.
  client_->request(
      pick->url(), fwd->method, fwd->tail, fwd->body, fwd->headers, options_.request_timeout,
      [this, fwd](Result<http::HttpReply> got) mutable {
        std::shared_ptr<ReplicaTarget> pick = std::move(fwd->current);
        --pick->outstanding;
        if (got) {
          complete(*fwd, &*got);
          return;
        }
        if (got.error().code() == Code::kUnavailable) {
          pick->healthy = false;
          fwd->tried.push_back(pick->id());
          logger("inference")
              ->warn("endpoint {} replica {} unreachable: {} request_id={}", fwd->id, pick->id(),
                     got.error().message(), fwd->request_id);
          fwd->failure =
              gateway_error(503, "no replica of endpoint " + fwd->id + " could be reached");
          forward(std::move(fwd));
          return;
        }
        if (got.error().code() == Code::kDeadlineExceeded) {
          fwd->failure =
              gateway_error(504, "the replica did not answer within " +
                                     std::to_string(options_.request_timeout.count()) + " ms");
        } else {
          fwd->failure = gateway_error(502, "the replica failed: " + got.error().message());
        }
        complete(*fwd, nullptr);
      });
}

void EndpointService::Impl::complete(Forward& fwd, http::HttpReply* reply) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - fwd.started).count();
  fwd.rt->load.depart(seconds * 1000.0);
  in_flight_.fetch_sub(1);
  if (reply == nullptr) {
    record_metrics(fwd.id, fwd.failure.status, seconds, nullptr);
    fwd.respond(std::move(fwd.failure));
    return;
  }
  record_metrics(fwd.id, reply->status, seconds, reply);
  Response out;
  out.status = reply->status;
  out.body = std::move(reply->body);
  for (std::string_view name :
       {"content-type", "inference-header-content-length", "concord-queue-time-us",
        "concord-compute-time-us", "concord-batch-size"}) {
    std::string v = reply->header(name);
    if (!v.empty()) out.set_header(std::string(name), v);
  }
  fwd.respond(std::move(out));
}

void EndpointService::Impl::build_gateway_routes() {
  using M = http::Method;
  // Deferred routes: the I/O thread authenticates and hands the request to the async client;
  // the replica's answer comes back on the client's thread (see proxy()).
  auto h = [this](Request& req, http::Responder respond) { proxy(req, std::move(respond)); };
  const std::vector<std::string> gets = {
      "/{id}/v2/health/live",
      "/{id}/v2/health/ready",
      "/{id}/v2",
      "/{id}/v2/models/{name}",
      "/{id}/v2/models/{name}/ready",
      "/{id}/v2/models/{name}/versions/{version}",
      "/{id}/v2/models/{name}/versions/{version}/ready",
  };
  for (const std::string& p : gets)
    gateway_->add_deferred(M::kGet, p, h, "inference-gateway:GET " + p);
  for (const std::string& p : {std::string("/{id}/v2/models/{name}/infer"),
                               std::string("/{id}/v2/models/{name}/versions/{version}/infer")}) {
    gateway_->add_deferred(M::kPost, p, h, "inference-gateway:POST " + p);
  }
}

}  // namespace concord::inference::endpoints

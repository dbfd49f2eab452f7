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

// ---- ReplicaTarget / EndpointLoad --------------------------------------------------------------

Result<std::unique_ptr<http::HttpClient>> ReplicaTarget::checkout(bool& reused) {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      reused = true;
      return c;
    }
  }
  reused = false;
  return http::HttpClient::create(url_);
}

void ReplicaTarget::checkin(std::unique_ptr<http::HttpClient> client, size_t keep) {
  std::lock_guard lock(mu_);
  if (idle_.size() < keep) idle_.push_back(std::move(client));
}

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

Response EndpointService::Impl::proxy(Request& req) {
  try {
    const std::string id = req.params.empty() ? std::string() : req.params.front();
    std::string_view token = req.header("x-auth-token");
    if (token.empty()) {
      return gateway_error(401, "authentication required: send a token in X-Auth-Token");
    }
    auto caller = identity_.authenticate(token);
    if (!caller) {
      if (caller.error().code() == Code::kUnauthenticated) {
        return gateway_error(401, "the token is not valid: " + caller.error().message());
      }
      return gateway_error(503, caller.error().message());
    }
    std::shared_ptr<EndpointRuntime> rt = find_runtime(id);
    std::string project = rt ? rt->project_id : std::string();
    if (!rt) {
      std::optional<EndpointRow> row;
      auto read = store_.read([&](store::Tx& tx) -> Status {
        CONCORD_ASSIGN_OR_RETURN(row, load_endpoint(tx, id));
        return ok();
      });
      if (!read) return gateway_error(503, read.error().message());
      if (row) project = row->project_id;
    }
    if (project.empty() || (!caller->is_admin() && caller->project_id != project)) {
      return gateway_error(404, "endpoint " + sanitize_utf8(id) + " not found");
    }
    identity::Target target;
    target.project_id = project;
    if (!identity_.authorize(*caller, "project_reader", target)) {
      return gateway_error(403, "the reader role on the endpoint's project is needed");
    }
    if (!rt) return gateway_error(503, "endpoint " + id + " has no ready replica yet");

    // The OIP path below the endpoint, still percent-encoded, with its query.
    std::string_view raw = req.target;
    std::string marker = "/" + id + "/";
    size_t at = raw.find(marker);
    if (at == std::string_view::npos) return gateway_error(404, "no such OIP route");
    std::string tail(raw.substr(at + marker.size() - 1));

    std::vector<std::pair<std::string, std::string>> headers = {
        {"x-concord-replica-key", rt->replica_key}};
    for (std::string_view name : {"content-type", "inference-header-content-length", "accept"}) {
      if (req.has_header(name)) headers.emplace_back(std::string(name), req.header(name));
    }

    const auto started = std::chrono::steady_clock::now();
    rt->load.arrive();
    std::optional<http::HttpReply> reply;
    Response failure = gateway_error(503, "endpoint " + id + " has no ready replica");
    std::vector<std::string> tried;
    // At most two replicas; a stale pooled connection on the same replica is not one of them.
    int attempts = 0;
    int stale_retries = 0;
    while (attempts < 2 && !reply) {
      std::shared_ptr<ReplicaTarget> pick;
      {
        std::lock_guard lock(rt->mu);
        const size_t n = rt->ready.size();
        const size_t start = n == 0 ? 0 : rt->next++ % n;
        for (size_t i = 0; i < n; ++i) {
          const auto& t = rt->ready[(start + i) % n];
          if (!t->healthy.load()) continue;
          if (std::find(tried.begin(), tried.end(), t->id()) != tried.end()) continue;
          if (!pick || t->outstanding.load() < pick->outstanding.load()) pick = t;
        }
      }
      if (!pick) break;
      bool reused = false;
      auto client = pick->checkout(reused);
      if (!client) {
        failure = gateway_error(502, client.error().message());
        break;
      }
      ++pick->outstanding;
      auto got = (*client)->request(http::method_name(req.method), tail, req.body, headers,
                                    options_.request_timeout);
      --pick->outstanding;
      if (got) {
        reply = std::move(*got);
        pick->checkin(std::move(*client), options_.clients_per_replica);
        break;
      }
      if (got.error().code() == Code::kUnavailable) {
        if (reused && stale_retries == 0) {
          // The replica may simply have closed an idle connection: once more, fresh.
          ++stale_retries;
          continue;
        }
        pick->healthy = false;
        tried.push_back(pick->id());
        ++attempts;
        logger("inference")
            ->warn("endpoint {} replica {} unreachable: {} request_id={}", id, pick->id(),
                   got.error().message(), req.request_id);
        failure = gateway_error(503, "no replica of endpoint " + id + " could be reached");
        continue;
      }
      if (got.error().code() == Code::kDeadlineExceeded) {
        failure = gateway_error(504, "the replica did not answer within " +
                                         std::to_string(options_.request_timeout.count()) + " ms");
      } else {
        failure = gateway_error(502, "the replica failed: " + got.error().message());
      }
      break;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    rt->load.depart(seconds * 1000.0);
    if (!reply) {
      record_metrics(id, failure.status, seconds, nullptr);
      return failure;
    }
    record_metrics(id, reply->status, seconds, &*reply);
    Response out;
    out.status = reply->status;
    out.body = std::move(reply->body);
    for (std::string_view name :
         {"content-type", "inference-header-content-length", "concord-queue-time-us",
          "concord-compute-time-us", "concord-batch-size"}) {
      std::string v = reply->header(name);
      if (!v.empty()) out.set_header(std::string(name), v);
    }
    return out;
  } catch (const std::exception& e) {
    logger("inference")
        ->error("unexpected exception in the gateway: {} request_id={}", e.what(), req.request_id);
    return gateway_error(500, "internal error; the request id is " + req.request_id);
  }
}

void EndpointService::Impl::build_gateway_routes() {
  using M = http::Method;
  auto h = [this](Request& req) { return proxy(req); };
  const std::vector<std::string> gets = {
      "/{id}/v2/health/live",
      "/{id}/v2/health/ready",
      "/{id}/v2",
      "/{id}/v2/models/{name}",
      "/{id}/v2/models/{name}/ready",
      "/{id}/v2/models/{name}/versions/{version}",
      "/{id}/v2/models/{name}/versions/{version}/ready",
  };
  for (const std::string& p : gets) gateway_->add(M::kGet, p, h, "inference-gateway:GET " + p);
  for (const std::string& p : {std::string("/{id}/v2/models/{name}/infer"),
                               std::string("/{id}/v2/models/{name}/versions/{version}/infer")}) {
    gateway_->add(M::kPost, p, h, "inference-gateway:POST " + p);
  }
}

}  // namespace concord::inference::endpoints

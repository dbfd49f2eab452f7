#pragma once
// Internals of EndpointService shared by api.cc, gateway.cc and controller.cc (not a public
// header). The Gateway owns the in-memory view of each endpoint's ready replicas (published by
// the controller after every pass) and the load and request counts the gateway records and the
// controller takes.
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "http/async_client.h"
#include "http/client.h"
#include "inference/endpoints/endpoint_service.h"
#include "inference/endpoints/endpoint_store.h"

namespace concord::inference::endpoints {

int api_status(Code code);

// One ready replica as the gateway sees it. Shared between the published ready list and the
// requests using it, so a list republished mid-request never frees a target in use. Its
// keep-alive connections live in the gateway's AsyncHttpClient pool, keyed by the URL's origin.
class ReplicaTarget {
 public:
  ReplicaTarget(std::string id, std::string url) : id_(std::move(id)), url_(std::move(url)) {}
  const std::string& id() const { return id_; }
  const std::string& url() const { return url_; }
  std::atomic<int> outstanding{0};
  // Cleared when a request could not reach it; set again by the next ready probe.
  std::atomic<bool> healthy{true};

 private:
  const std::string id_;
  const std::string url_;
};

// What the gateway records per endpoint for the autoscaler and for billing.
class EndpointLoad {
 public:
  // A request arrives: counts it in flight and samples how many were in flight (itself too).
  void arrive();
  // It left after `latency_ms`.
  void depart(double latency_ms);

  struct Window {
    double mean_in_flight_at_arrival = 0;  // 0 without arrivals
    int64_t in_flight_now = 0;
    std::vector<double> latencies_ms;
    int64_t arrivals = 0;
  };
  // The window since the previous take, and starts the next.
  Window take_window();
  int64_t take_requests();
  void give_back_requests(int64_t n);

 private:
  std::atomic<int64_t> in_flight_{0};
  std::mutex mu_;
  double arrival_sum_ = 0;            // guarded by mu_
  int64_t arrivals_ = 0;              // guarded by mu_
  std::vector<double> latencies_ms_;  // guarded by mu_ (bounded)
  int64_t unbilled_requests_ = 0;     // guarded by mu_
};

struct EndpointRuntime {
  std::string id;
  std::string project_id;
  std::string replica_key;
  EndpointLoad load;
  std::mutex mu;
  std::vector<std::shared_ptr<ReplicaTarget>> ready;  // guarded by mu
  // Where the least-outstanding scan starts, rotated per request so ties spread evenly.
  std::atomic<size_t> next{0};
};

class EndpointService::Impl {
 public:
  Impl(store::Store& store, const Clock& clock, identity::IdentityService& identity,
       registry::ModelRegistry& registry, ReplicaBackend& backend,
       std::shared_ptr<http::Registry> metrics, EndpointOptions options)
      : store_(store),
        clock_(clock),
        identity_(identity),
        registry_(registry),
        backend_(backend),
        metrics_(std::move(metrics)),
        options_(std::move(options)) {}
  ~Impl() {
    stop();
    // Its threads run the gateway's callbacks, which use this object: they stop first. Requests
    // still in flight are answered 500 by their dropped Responders.
    client_.reset();
  }

  void build_api_routes();
  void build_gateway_routes();
  Status start();
  void stop();
  void wake();
  Result<ReconcileReport> reconcile_once();

  std::shared_ptr<http::RouteTable> api_ = std::make_shared<http::RouteTable>();
  std::shared_ptr<http::RouteTable> gateway_ = std::make_shared<http::RouteTable>();
  // The gateway's way to the replicas (set by EndpointService::create).
  std::unique_ptr<http::AsyncHttpClient> client_;

 private:
  // ---- API (api.cc)
  struct Call {
    http::Request& req;
    identity::AuthContext caller;
  };
  using Handler = Result<http::Response> (Impl::*)(Call&);
  void add_api(http::Method method, std::string pattern, Handler handler);
  http::Response run_api(http::Request& req, Handler handler);
  Status authorize_on(const Call& c, std::string_view rule, const std::string& project) const;
  Result<EndpointRow> load_visible(store::Tx& tx, const Call& c, std::string_view id) const;
  Json view(const EndpointRow& e, const std::vector<ReplicaRow>& replicas, const Call& c) const;
  std::string endpoint_url(const EndpointRow& e, const http::Request& req) const;
  Result<http::Response> create_endpoint(Call& c);
  Result<http::Response> list_endpoints(Call& c);
  Result<http::Response> show_endpoint(Call& c);
  Result<http::Response> update_endpoint_call(Call& c);
  Result<http::Response> delete_endpoint(Call& c);

  // ---- gateway (gateway.cc)
  struct Forward;
  void proxy(http::Request& req, http::Responder respond);
  void forward(std::shared_ptr<Forward> fwd);
  void complete(Forward& fwd, http::HttpReply* reply);
  std::shared_ptr<EndpointRuntime> runtime_for(const EndpointRow& e);
  std::shared_ptr<EndpointRuntime> find_runtime(const std::string& id);
  void record_metrics(const std::string& endpoint_id, int status, double seconds,
                      const http::HttpReply* reply);

  // ---- controller (controller.cc)
  struct Pass;
  Status reconcile_endpoint(Pass& pass, EndpointRow e, std::vector<ReplicaRow> replicas);
  Status remove_endpoint(Pass& pass, const EndpointRow& e, std::vector<ReplicaRow> replicas);
  Status remove_replica(Pass& pass, const EndpointRow& e, ReplicaRow r);
  Status create_replica(Pass& pass, const EndpointRow& e, int64_t ordinal);
  ReplicaSpec spec_for(const Pass& pass, const EndpointRow& e, const ReplicaRow& r) const;
  bool probe_ready(const std::string& url, const std::string& key) const;
  void publish(const EndpointRow& e, const std::vector<ReplicaRow>& replicas);
  // Takes a replica out of the gateway's ready set before it is destroyed.
  void unpublish(const std::string& endpoint_id, const std::string& replica_id);
  Status flush_requests(const EndpointRow& e, store::Tx& tx, int64_t count);
  Result<bool> append_replica_seconds(store::Tx& tx, const EndpointRow& e, ReplicaRow& r,
                                      int64_t until_ms);
  void loop();

  store::Store& store_;
  const Clock& clock_;
  identity::IdentityService& identity_;
  registry::ModelRegistry& registry_;
  ReplicaBackend& backend_;
  std::shared_ptr<http::Registry> metrics_;
  const EndpointOptions options_;

  // Gateway requests between authentication and answer, bounded by options_.max_in_flight.
  std::atomic<int64_t> in_flight_{0};

  std::mutex runtimes_mu_;
  std::map<std::string, std::shared_ptr<EndpointRuntime>> runtimes_;  // guarded by runtimes_mu_

  // Serialises controller passes; guards the per-endpoint scaling memory below.
  std::mutex pass_mu_;
  std::map<std::string, SystemTime> below_since_;          // guarded by pass_mu_
  std::map<std::string, SystemTime> unready_since_;        // by replica; guarded by pass_mu_
  std::map<std::string, SystemTime> requests_flushed_at_;  // guarded by pass_mu_

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stopping_ = false;  // guarded by loop_mu_
  bool woken_ = false;     // guarded by loop_mu_
  std::thread thread_;
};

}  // namespace concord::inference::endpoints

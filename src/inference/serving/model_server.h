#pragma once
// What one inference replica serves: a set of loaded models (an endpoint's model, and for split
// inference the model's tails "<name>.from.<k>"), each behind a dynamic batcher, exposed as the
// Open Inference Protocol v2 routes:
//
//   GET  /v2/health/live, /v2/health/ready
//   GET  /v2/models/{name}[/versions/{v}], .../ready
//   POST /v2/models/{name}[/versions/{v}]/infer     JSON or binary tensors (oip.h)
//   GET  /v2/stats                                  Concord's: queue, batches, latencies (JSON)
//
// Batching (docs/design/inference.md, "Batching"): a request is validated against the model's
// metadata first, so a bad request never fails a batch; it then waits in the model's queue
// until `max_batch_size` items are queued, or the oldest has waited `max_queue_delay`, or every
// request inside the server is queued (nobody else is on the way: a lone client is not made to
// wait for company that cannot come); the batch is the requests' inputs stacked along
// dimension 0, run once, and split back. Requests
// whose batch dimension is not dynamic, or whose own batch is already max_batch_size or more,
// run alone. A full queue (`max_queue` requests waiting) answers 503 at once rather than
// letting latency grow without bound.
//
// Every infer response carries the server's view of its cost, which the gateway turns into
// per-endpoint metrics and the device SDK into its load estimate:
//   concord-queue-time-us, concord-compute-time-us, concord-batch-size
//
// Threading: handlers block until their batch has run, so the HTTP server needs at least as
// many threads as requests that should be able to share a batch (the replica main sizes it).
// Every method is safe from any thread.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "http/router.h"
#include "inference/runtime/runtime.h"

namespace concord::inference::serving {

struct BatchingOptions {
  int max_batch_size = 8;  // 1 disables batching
  std::chrono::microseconds max_queue_delay{2000};
  int max_queue = 1024;  // waiting requests per model before 503
};

struct ServedModel {
  std::string name;     // OIP model name
  std::string version;  // OIP version string ("1")
  std::shared_ptr<Model> model;
};

struct ModelServerOptions {
  BatchingOptions batching;
  // When not empty, every route but /v2/health/live demands this value in the
  // `x-concord-replica-key` header (401 otherwise): the gateway is the replica's only client.
  std::string replica_key;
};

// A histogram snapshot: upper bounds (inclusive) and counts per bucket, plus sum and count.
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // bounds.size() + 1 (the last is +Inf)
  double sum = 0;
  uint64_t count = 0;
  Json to_json() const;
};

struct ModelStats {
  std::string name;
  uint64_t requests = 0;      // infer requests answered (any status)
  uint64_t failures = 0;      // answered with an error
  uint64_t inferences = 0;    // items (batch rows) inferred
  uint64_t batches = 0;       // runtime calls
  int64_t queue_length = 0;   // requests waiting now
  int64_t in_flight = 0;      // requests inside the server now (waiting or running)
  Histogram batch_size;       // rows per runtime call
  Histogram queue_time_us;    // per request
  Histogram compute_time_us;  // per runtime call
  Json to_json() const;
};

class ModelServer {
 public:
  // kInvalidArgument: no model, duplicate names, bad batching options.
  [[nodiscard]] static Result<std::unique_ptr<ModelServer>> create(std::vector<ServedModel> models,
                                                                   ModelServerOptions options);
  ~ModelServer();
  ModelServer(const ModelServer&) = delete;
  ModelServer& operator=(const ModelServer&) = delete;

  // The OIP routes, to mount at "" (paths start with /v2). Errors: oip::error. The handlers
  // refer to this server: stop the HTTP server before destroying it.
  std::shared_ptr<http::RouteTable> routes() const;
  // Per model, in the order given to create().
  std::vector<ModelStats> stats() const;
  // Ready once every model is loaded (always, after create) and until drain() is called.
  bool ready() const;
  // Stops accepting new infer requests (503) and lets the queued ones finish; for a graceful
  // stop (SIGTERM) before the HTTP server closes.
  void drain();

  class Impl;

 private:
  explicit ModelServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::inference::serving

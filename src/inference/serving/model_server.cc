#include "inference/serving/model_server.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/log.h"
#include "inference/serving/oip.h"

namespace concord::inference::serving {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int kMaxBatchSizeLimit = 4096;

int64_t micros(SteadyClock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

// A histogram under a mutex: observations happen once per request or batch, far below the rate
// where a lock matters, and a snapshot must be consistent (counts add up to count).
class LockedHistogram {
 public:
  explicit LockedHistogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v) {
    std::lock_guard lock(mu_);
    const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
    ++counts_[static_cast<size_t>(it - bounds_.begin())];
    sum_ += v;
    ++count_;
  }
  Histogram snapshot() const {
    std::lock_guard lock(mu_);
    return Histogram{bounds_, counts_, sum_, count_};
  }

 private:
  mutable std::mutex mu_;
  const std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // guarded by mu_
  double sum_ = 0;                // guarded by mu_
  uint64_t count_ = 0;            // guarded by mu_
};

// What a request gets back from its batch.
struct Outcome {
  Result<std::vector<Tensor>> outputs = std::vector<Tensor>{};
  int64_t queue_us = 0;
  int64_t compute_us = 0;
  int64_t batch_size = 0;  // rows in the runtime call that served the request
};

struct Pending {
  std::vector<Tensor> inputs;
  int64_t rows = 1;
  SteadyClock::time_point enqueued;
  std::promise<Outcome> done;
};

// Concatenates the requests' tensors for input `i` along dimension 0.
Tensor stack_input(const std::vector<std::shared_ptr<Pending>>& batch, size_t i, int64_t rows) {
  const Tensor& first = batch.front()->inputs[i];
  Tensor t{first.name, first.datatype, first.shape, {}};
  t.shape[0] = rows;
  size_t bytes = 0;
  for (const auto& p : batch) bytes += p->inputs[i].data.size();
  t.data.resize(bytes);
  size_t at = 0;
  for (const auto& p : batch) {
    const std::string& d = p->inputs[i].data;
    if (!d.empty()) std::memcpy(t.data.data() + at, d.data(), d.size());
    at += d.size();
  }
  return t;
}

// The inputs of one request in the model's input order (validate_inputs accepted any order).
std::vector<Tensor> in_model_order(std::vector<Tensor> inputs, const ModelMetadata& metadata) {
  std::vector<Tensor> out;
  out.reserve(inputs.size());
  for (const TensorInfo& info : metadata.inputs) {
    for (Tensor& t : inputs) {
      if (t.name == info.name) out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace

Json Histogram::to_json() const {
  return {{"bounds", bounds}, {"counts", counts}, {"sum", sum}, {"count", count}};
}

Json ModelStats::to_json() const {
  return {{"name", name},
          {"requests", requests},
          {"failures", failures},
          {"inferences", inferences},
          {"batches", batches},
          {"queue_length", queue_length},
          {"in_flight", in_flight},
          {"batch_size", batch_size.to_json()},
          {"queue_time_us", queue_time_us.to_json()},
          {"compute_time_us", compute_time_us.to_json()}};
}

// One served model: its queue and the worker thread that forms batches from it.
//
// The worker owns batch formation: it sleeps until the queue is non-empty, then (for a batchable
// model) until enough rows are queued or the oldest request's delay has passed, takes requests
// from the front while they fit in max_batch_size rows, and runs them as one Model::infer call
// without holding the lock. Handlers block on their request's future. A request of
// max_batch_size rows or more, and every request of a model whose batch dimension is fixed,
// runs alone.
class ModelQueue {
 public:
  ModelQueue(ServedModel served, BatchingOptions options)
      : served_(std::move(served)),
        options_(options),
        batchable_(is_batchable(served_.model->metadata())),
        batch_size_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}),
        queue_time_us_({50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000,
                        250'000, 500'000, 1'000'000, 5'000'000}),
        compute_time_us_({50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000,
                          250'000, 500'000, 1'000'000, 5'000'000}) {
    worker_ = std::thread([this] { run(); });
  }

  ~ModelQueue() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  const ServedModel& served() const { return served_; }

  // Blocks until the request's batch has run. kUnavailable when the queue is full.
  Outcome submit(std::vector<Tensor> inputs) {
    auto p = std::make_shared<Pending>();
    // Rows count the items for the metrics of every model; only a batchable model's queue
    // combines them (the others take one request per call whatever its rows).
    p->rows = 1;
    if (!inputs.empty() && !inputs.front().shape.empty() && inputs.front().shape.front() > 0) {
      p->rows = inputs.front().shape.front();
    }
    p->inputs = in_model_order(std::move(inputs), served_.model->metadata());
    auto future = p->done.get_future();
    {
      std::lock_guard lock(mu_);
      if (static_cast<int>(queue_.size()) >= options_.max_queue) {
        Outcome full;
        full.outputs = fail(Code::kUnavailable,
                            fmt::format("model '{}' has {} requests waiting, the queue is full; "
                                        "retry later",
                                        served_.name, queue_.size()));
        return full;
      }
      p->enqueued = SteadyClock::now();
      queue_.push_back(p);
      queued_rows_ += p->rows;
    }
    cv_.notify_all();
    return future.get();
  }

  void count_request(bool failed) {
    requests_.fetch_add(1);
    if (failed) failures_.fetch_add(1);
  }

  // A request enters before it is parsed and leaves once its answer is built. Leaving wakes a
  // worker that waits for company (run()), since it may now be that nobody else can come.
  void enter() { in_flight_.fetch_add(1); }
  void leave() {
    in_flight_.fetch_sub(1);
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

  ModelStats stats() const {
    ModelStats s;
    s.name = served_.name;
    s.requests = requests_.load();
    s.failures = failures_.load();
    s.inferences = inferences_.load();
    s.batches = batches_.load();
    {
      std::lock_guard lock(mu_);
      s.queue_length = static_cast<int64_t>(queue_.size());
    }
    s.in_flight = in_flight_.load();
    s.batch_size = batch_size_.snapshot();
    s.queue_time_us = queue_time_us_.snapshot();
    s.compute_time_us = compute_time_us_.snapshot();
    return s;
  }

  bool batchable() const { return batchable_; }

 private:
  static bool is_batchable(const ModelMetadata& m) {
    if (m.inputs.empty()) return false;
    for (const TensorInfo& t : m.inputs) {
      if (!t.has_shape || t.shape.empty() || t.shape[0] >= 0) return false;
    }
    for (const TensorInfo& t : m.outputs) {
      if (t.has_shape && (t.shape.empty() || t.shape[0] >= 0)) return false;
    }
    return true;
  }

  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      const auto& first = queue_.front();
      const int max = options_.max_batch_size;
      if (batchable_ && max > 1 && first->rows < max) {
        // Wait for company only while some request inside this server is not queued yet
        // (being read or parsed): once every request present waits here, waiting longer can
        // only help a request that has not arrived, and costs every queued one the whole
        // delay. A lone client thus gets batch-1 latency, closed-loop clients get batches as
        // large as their number, and arrivals during a run form the next batch anyway.
        const auto deadline = first->enqueued + options_.max_queue_delay;
        cv_.wait_until(lock, deadline, [&] {
          return stopping_ || queued_rows_ >= max ||
                 in_flight_.load() <= static_cast<int64_t>(queue_.size());
        });
      }
      std::vector<std::shared_ptr<Pending>> batch;
      int64_t rows = 0;
      while (!queue_.empty()) {
        const auto& next = queue_.front();
        if (!batch.empty() && (!batchable_ || next->rows >= max || rows + next->rows > max)) {
          break;
        }
        rows += next->rows;
        queued_rows_ -= next->rows;
        batch.push_back(next);
        queue_.pop_front();
        if (!batchable_ || rows >= max) break;
      }
      lock.unlock();
      execute(batch, rows);
      lock.lock();
    }
  }

  // Runs `batch` (one runtime call, or one per request when the outputs cannot be split back)
  // and fulfils every request's promise.
  void execute(const std::vector<std::shared_ptr<Pending>>& batch, int64_t rows) {
    const auto start = SteadyClock::now();
    if (batch.size() == 1) {
      auto result = run_model(batch.front()->inputs);
      finish(batch, start, rows, std::move(result));
      return;
    }
    std::vector<Tensor> stacked;
    const size_t n_inputs = batch.front()->inputs.size();
    stacked.reserve(n_inputs);
    for (size_t i = 0; i < n_inputs; ++i) stacked.push_back(stack_input(batch, i, rows));
    auto result = run_model(stacked);
    if (!result) {
      // Each request was valid on its own; a failing batch is the runtime's fault, so every
      // request gets its error.
      finish(batch, start, rows, std::move(result));
      return;
    }
    for (const Tensor& out : *result) {
      if (out.shape.empty() || out.shape[0] != rows ||
          out.data.size() % static_cast<size_t>(rows) != 0) {
        // The model's output does not follow its batch dimension: split back is impossible, so
        // run the requests one by one (still correct, just unbatched).
        logger("inference")
            ->warn(
                "model={} output={} shape does not follow the batch; running "
                "the batch's {} requests one by one",
                served_.name, out.name, batch.size());
        for (const auto& p : batch) {
          const auto one_start = SteadyClock::now();
          auto one = run_model(p->inputs);
          finish({p}, one_start, p->rows, std::move(one));
        }
        return;
      }
    }
    const auto end = SteadyClock::now();
    record_batch(rows, micros(end - start));
    int64_t row = 0;
    for (const auto& p : batch) {
      std::vector<Tensor> mine;
      mine.reserve(result->size());
      for (const Tensor& out : *result) {
        const size_t row_bytes = out.data.size() / static_cast<size_t>(rows);
        Tensor t{out.name, out.datatype, out.shape, {}};
        t.shape[0] = p->rows;
        t.data.assign(out.data, static_cast<size_t>(row) * row_bytes,
                      static_cast<size_t>(p->rows) * row_bytes);
        mine.push_back(std::move(t));
      }
      row += p->rows;
      Outcome o;
      o.outputs = std::move(mine);
      o.queue_us = micros(start - p->enqueued);
      o.compute_us = micros(end - start);
      o.batch_size = rows;
      queue_time_us_.observe(static_cast<double>(o.queue_us));
      p->done.set_value(std::move(o));
    }
  }

  // Model::infer does not throw by contract; a runtime that breaks it must not take the worker
  // thread (and with it every later request) down, so it becomes this batch's kInternal.
  Result<std::vector<Tensor>> run_model(std::span<const Tensor> inputs) {
    try {
      return served_.model->infer(inputs);
    } catch (const std::exception& e) {
      return fail(Code::kInternal, fmt::format("model '{}' threw: {}", served_.name, e.what()));
    } catch (...) {
      return fail(Code::kInternal, fmt::format("model '{}' threw", served_.name));
    }
  }

  void record_batch(int64_t rows, int64_t compute_us) {
    batches_.fetch_add(1);
    inferences_.fetch_add(static_cast<uint64_t>(rows));
    batch_size_.observe(static_cast<double>(rows));
    compute_time_us_.observe(static_cast<double>(compute_us));
  }

  void finish(const std::vector<std::shared_ptr<Pending>>& batch, SteadyClock::time_point start,
              int64_t rows, Result<std::vector<Tensor>> result) {
    const auto end = SteadyClock::now();
    record_batch(rows, micros(end - start));
    for (const auto& p : batch) {
      Outcome o;
      o.outputs = result;
      o.queue_us = micros(start - p->enqueued);
      o.compute_us = micros(end - start);
      o.batch_size = rows;
      queue_time_us_.observe(static_cast<double>(o.queue_us));
      p->done.set_value(std::move(o));
    }
  }

  const ServedModel served_;
  const BatchingOptions options_;
  const bool batchable_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pending>> queue_;  // guarded by mu_
  int64_t queued_rows_ = 0;                     // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> inferences_{0};
  std::atomic<uint64_t> batches_{0};
  std::atomic<int64_t> in_flight_{0};
  LockedHistogram batch_size_;
  LockedHistogram queue_time_us_;
  LockedHistogram compute_time_us_;

  std::thread worker_;  // last: starts after every member above exists
};

// The route table's handlers: they parse and validate a request on the HTTP thread, hand it to
// its model's queue and block until its batch has run. The table refers to this object, so the
// ModelServer must outlive the router it is mounted on (the replica stops the HTTP server first).
class ModelServer::Impl {
 public:
  Impl(std::vector<ServedModel> models, ModelServerOptions options) : options_(std::move(options)) {
    for (ServedModel& m : models) {
      queues_.push_back(std::make_unique<ModelQueue>(std::move(m), options_.batching));
    }
  }

  bool ready() const { return !draining_.load(); }
  void drain() { draining_.store(true); }

  std::vector<ModelStats> stats() const {
    std::vector<ModelStats> out;
    for (const auto& q : queues_) out.push_back(q->stats());
    return out;
  }

  std::shared_ptr<http::RouteTable> routes() {
    auto t = std::make_shared<http::RouteTable>();
    using http::Method;
    t->add(Method::kGet, "/v2/health/live",
           [](http::Request&) { return http::Response::json(200, R"({"live":true})"); });
    t->add(Method::kGet, "/v2/health/ready",
           guarded([this](http::Request&) { return ready_response(); }));
    t->add(Method::kGet, "/v2", guarded([](http::Request&) {
             return http::Response::json(
                 200, dump_json(Json{{"name", "concord"},
                                     {"version", "1"},
                                     {"extensions", Json::array({"binary_tensor_data"})}}));
           }));
    t->add(Method::kGet, "/v2/stats", guarded([this](http::Request&) {
             Json models = Json::array();
             for (const ModelStats& s : stats()) models.push_back(s.to_json());
             return http::Response::json(200, dump_json(Json{{"models", std::move(models)}}));
           }));
    for (const bool versioned : {false, true}) {
      const std::string base =
          versioned ? "/v2/models/{name}/versions/{version}" : "/v2/models/{name}";
      t->add(Method::kGet, base, guarded([this, versioned](http::Request& req) {
               return with_model(req, versioned, [&](ModelQueue& q) {
                 const std::vector<std::string> versions{q.served().version};
                 return http::Response::json(
                     200, dump_json(oip::model_metadata_json(q.served().name, versions,
                                                             q.served().model->metadata())));
               });
             }));
      t->add(Method::kGet, base + "/ready", guarded([this, versioned](http::Request& req) {
               return with_model(req, versioned, [&](ModelQueue& q) {
                 if (!ready()) {
                   return http::Response::json(
                       503, dump_json(Json{{"name", q.served().name}, {"ready", false}}));
                 }
                 return http::Response::json(
                     200, dump_json(Json{{"name", q.served().name}, {"ready", true}}));
               });
             }));
      t->add(Method::kPost, base + "/infer", guarded([this, versioned](http::Request& req) {
               return with_model(req, versioned, [&](ModelQueue& q) { return infer(q, req); });
             }));
    }
    return t;
  }

 private:
  http::Response ready_response() const {
    if (!ready()) {
      return http::Response::json(503, R"({"ready":false})");
    }
    return http::Response::json(200, R"({"ready":true})");
  }

  // Wraps a handler with the replica key check.
  http::Handler guarded(http::Handler inner) const {
    if (options_.replica_key.empty()) return inner;
    return [this, inner = std::move(inner)](http::Request& req) {
      if (!key_matches(req.header("x-concord-replica-key"))) {
        return oip::error(401, "this replica answers only with the right x-concord-replica-key");
      }
      return inner(req);
    };
  }

  // Compares without an early exit, so the time taken does not tell how much of a guess is right.
  bool key_matches(std::string_view given) const {
    const std::string& want = options_.replica_key;
    unsigned diff = given.size() == want.size() ? 0 : 1;
    for (size_t i = 0; i < want.size(); ++i) {
      diff |= static_cast<unsigned>(static_cast<unsigned char>(want[i]) ^
                                    static_cast<unsigned char>(i < given.size() ? given[i] : 0));
    }
    return diff == 0;
  }

  template <typename F>
  http::Response with_model(http::Request& req, bool versioned, F&& f) {
    const std::string& name = req.params.at(0);
    for (const auto& q : queues_) {
      if (q->served().name != name) continue;
      if (versioned && req.params.at(1) != q->served().version) {
        return oip::error(404, fmt::format("model '{}' has no version '{}' here (served: '{}')",
                                           sanitize_utf8(name), sanitize_utf8(req.params.at(1)),
                                           q->served().version));
      }
      return f(*q);
    }
    return oip::error(404, fmt::format("unknown model '{}'", sanitize_utf8(name)));
  }

  http::Response infer(ModelQueue& q, http::Request& req) {
    q.enter();
    struct Leave {
      ModelQueue& q;
      ~Leave() { q.leave(); }
    } leave{q};
    auto fail_with = [&](const Error& e) {
      q.count_request(true);
      return oip::error(oip::status_for(e.code()), e.message());
    };
    if (draining_.load()) {
      return fail_with(Error(Code::kUnavailable, "this replica is draining; retry on another"));
    }
    auto header_length = oip::header_length_of(req);
    if (!header_length) return fail_with(header_length.error());
    const ModelMetadata& metadata = q.served().model->metadata();
    auto parsed = oip::parse_infer_request(req.body, *header_length, metadata);
    if (!parsed) return fail_with(parsed.error());
    // The runtime's own check (positive dimensions, one batch size across inputs) before the
    // request joins a batch, so it cannot fail the others.
    if (auto valid = validate_inputs(metadata, parsed->inputs); !valid) {
      return fail_with(valid.error());
    }
    Outcome outcome = q.submit(std::move(parsed->inputs));
    if (!outcome.outputs) {
      if (outcome.outputs.error().code() == Code::kInternal) {
        logger("inference")
            ->error("model={} request_id={} inference failed: {}", q.served().name, req.request_id,
                    outcome.outputs.error().message());
      }
      http::Response r = fail_with(outcome.outputs.error());
      if (r.status == 503) r.set_header("retry-after", "1");
      return r;
    }
    q.count_request(false);
    http::Response r = oip::to_response(
        oip::encode_infer_response(q.served().name, q.served().version, *parsed, *outcome.outputs));
    r.set_header("concord-queue-time-us", std::to_string(outcome.queue_us));
    r.set_header("concord-compute-time-us", std::to_string(outcome.compute_us));
    r.set_header("concord-batch-size", std::to_string(outcome.batch_size));
    return r;
  }

  const ModelServerOptions options_;
  std::vector<std::unique_ptr<ModelQueue>> queues_;
  std::atomic<bool> draining_{false};
};

Result<std::unique_ptr<ModelServer>> ModelServer::create(std::vector<ServedModel> models,
                                                         ModelServerOptions options) {
  if (models.empty()) return fail(Code::kInvalidArgument, "a model server needs a model");
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].model == nullptr) {
      return fail(Code::kInvalidArgument,
                  fmt::format("served model '{}' has no loaded model", models[i].name));
    }
    if (models[i].name.empty() || models[i].version.empty()) {
      return fail(Code::kInvalidArgument, "a served model needs a name and a version");
    }
    for (size_t k = 0; k < i; ++k) {
      if (models[k].name == models[i].name) {
        return fail(Code::kInvalidArgument,
                    fmt::format("model name '{}' is served twice", models[i].name));
      }
    }
  }
  const BatchingOptions& b = options.batching;
  if (b.max_batch_size < 1 || b.max_batch_size > kMaxBatchSizeLimit) {
    return fail(Code::kInvalidArgument, fmt::format("max_batch_size {} is outside [1, {}]",
                                                    b.max_batch_size, kMaxBatchSizeLimit));
  }
  if (b.max_queue_delay.count() < 0 || b.max_queue_delay > std::chrono::seconds(10)) {
    return fail(Code::kInvalidArgument, fmt::format("max_queue_delay {} us is outside [0, 10 s]",
                                                    b.max_queue_delay.count()));
  }
  if (b.max_queue < 1) {
    return fail(Code::kInvalidArgument,
                fmt::format("max_queue {} must be at least 1", b.max_queue));
  }
  return std::unique_ptr<ModelServer>(
      new ModelServer(std::make_unique<Impl>(std::move(models), std::move(options))));
}

ModelServer::ModelServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelServer::~ModelServer() = default;

std::shared_ptr<http::RouteTable> ModelServer::routes() const {
  return impl_->routes();
}
std::vector<ModelStats> ModelServer::stats() const {
  return impl_->stats();
}
bool ModelServer::ready() const {
  return impl_->ready();
}
void ModelServer::drain() {
  impl_->drain();
}

}  // namespace concord::inference::serving

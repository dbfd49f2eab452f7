// The batching model server (model_server.h) and the replica process (replica.h):
//  - with scripted fake models, in process through the Router (no socket): batch formation,
//    unbatched models, oversized requests alone, queue full, replica key, drain, error bodies;
//  - on the committed Fashion-MNIST model over a real http::Server on port 0: health, metadata,
//    JSON and binary inference with the right classes, and 16 concurrent clients whose batched
//    results equal unbatched ones bitwise;
//  - run_replica_until on a thread: port file, inference, stop; exit codes for bad options and
//    a missing model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "eventually.h"
#include "fixtures.h"
#include "http/client.h"
#include "http/metrics.h"
#include "http/server.h"
#include "http/testing.h"
#include "inference/runtime/runtimes.h"
#include "inference/serving/model_server.h"
#include "inference/serving/oip.h"
#include "inference/serving/replica.h"

namespace concord::inference::serving {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

using test_support::eventually;

TensorInfo info(std::string name, std::vector<int64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.datatype = "FP32";
  t.has_shape = true;
  t.shape = std::move(shape);
  return t;
}

// A model whose output row is the sum of its input row (x: [-1 or fixed, 2] -> y: [.., 1]). It
// records the rows of every call and can be held inside infer() until released.
class SumModel final : public Model {
 public:
  explicit SumModel(int64_t batch_dim = -1) {
    metadata_.format = "onnx";
    metadata_.runtime = "fake";
    metadata_.inputs.push_back(info("x", {batch_dim, 2}));
    metadata_.outputs.push_back(info("y", {batch_dim, 1}));
  }
  const ModelMetadata& metadata() const override { return metadata_; }
  Result<std::vector<Tensor>> infer(std::span<const Tensor> inputs) override {
    CONCORD_RETURN_IF_ERROR(validate_inputs(metadata_, inputs));
    std::unique_lock lock(mu_);
    ++entered_;
    calls_.push_back(inputs[0].shape[0]);
    cv_.wait(lock, [&] { return !hold_; });
    lock.unlock();
    const std::vector<float> x = inputs[0].to_floats();
    std::vector<float> y(x.size() / 2);
    for (size_t i = 0; i < y.size(); ++i) y[i] = x[2 * i] + x[2 * i + 1];
    return std::vector<Tensor>{Tensor::fp32("y", {inputs[0].shape[0], 1}, y)};
  }
  void hold() {
    std::lock_guard lock(mu_);
    hold_ = true;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      hold_ = false;
    }
    cv_.notify_all();
  }
  int entered() {
    std::lock_guard lock(mu_);
    return entered_;
  }
  std::vector<int64_t> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  ModelMetadata metadata_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int entered_ = 0;
  std::vector<int64_t> calls_;
};

std::string sum_request(int64_t rows, float base) {
  std::vector<float> v;
  for (int64_t i = 0; i < rows * 2; ++i) v.push_back(base + static_cast<float>(i));
  Json body = {
      {"inputs", {{{"name", "x"}, {"shape", {rows, 2}}, {"datatype", "FP32"}, {"data", v}}}}};
  return body.dump();
}

// A ModelServer mounted on a Router, called in process.
struct InProcess {
  std::unique_ptr<ModelServer> server;
  std::shared_ptr<http::Router> router = std::make_shared<http::Router>();

  static InProcess make(std::shared_ptr<Model> model, ModelServerOptions options) {
    InProcess p;
    auto s = ModelServer::create({ServedModel{"sum", "1", std::move(model)}}, std::move(options));
    EXPECT_TRUE(s.has_value()) << s.error().to_string();
    p.server = std::move(*s);
    p.router->mount("", p.server->routes(), oip::error);
    return p;
  }

  http::Response call(http::Method method, std::string path, std::string body = {},
                      std::vector<http::Header> headers = {}) const {
    http::Request req;
    req.method = method;
    req.target = std::move(path);
    req.body = std::move(body);
    req.headers = std::move(headers);
    std::string route;
    return router->dispatch(req, route);
  }
};

std::string error_of(const http::Response& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("error")) return "<no error body: " + r.body + ">";
  return j["error"].get<std::string>();
}

TEST(ModelServerCreate, RejectsBadConfigurations) {
  auto m = std::make_shared<SumModel>();
  EXPECT_EQ(ModelServer::create({}, {}).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(ModelServer::create({{"a", "1", m}, {"a", "1", m}}, {}).error().message(),
            "model name 'a' is served twice");
  EXPECT_EQ(ModelServer::create({{"a", "1", nullptr}}, {}).error().code(), Code::kInvalidArgument);
  ModelServerOptions bad;
  bad.batching.max_batch_size = 0;
  EXPECT_EQ(ModelServer::create({{"a", "1", m}}, bad).error().message(),
            "max_batch_size 0 is outside [1, 4096]");
  bad.batching.max_batch_size = 8;
  bad.batching.max_queue = 0;
  EXPECT_EQ(ModelServer::create({{"a", "1", m}}, bad).error().code(), Code::kInvalidArgument);
}

TEST(ModelServerInProcess, InferAnswersWithCostHeaders) {
  auto model = std::make_shared<SumModel>();
  auto p = InProcess::make(model, {});
  auto r = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(2, 1.0f));
  ASSERT_EQ(r.status, 200) << r.body;
  auto out = oip::parse_infer_response(r.body, std::nullopt);
  ASSERT_TRUE(out.has_value()) << out.error().to_string();
  EXPECT_EQ((*out)[0].to_floats(), (std::vector<float>{3.0f, 7.0f}));
  EXPECT_FALSE(r.header("concord-queue-time-us").empty());
  EXPECT_FALSE(r.header("concord-compute-time-us").empty());
  EXPECT_EQ(r.header("concord-batch-size"), "2");
  auto versioned =
      p.call(http::Method::kPost, "/v2/models/sum/versions/1/infer", sum_request(1, 0.0f));
  EXPECT_EQ(versioned.status, 200) << versioned.body;
  const auto stats = p.server->stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].requests, 2u);
  EXPECT_EQ(stats[0].failures, 0u);
  EXPECT_EQ(stats[0].inferences, 3u);
  EXPECT_EQ(stats[0].batches, 2u);
  EXPECT_EQ(stats[0].in_flight, 0);
  EXPECT_EQ(stats[0].batch_size.count, 2u);
  EXPECT_EQ(stats[0].batch_size.counts.size(), stats[0].batch_size.bounds.size() + 1);
}

TEST(ModelServerInProcess, ErrorsUseOipBodies) {
  auto p = InProcess::make(std::make_shared<SumModel>(), {});
  auto unknown = p.call(http::Method::kPost, "/v2/models/nope/infer", sum_request(1, 0));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(error_of(unknown), "unknown model 'nope'");
  auto version = p.call(http::Method::kPost, "/v2/models/sum/versions/2/infer", sum_request(1, 0));
  EXPECT_EQ(version.status, 404);
  EXPECT_EQ(error_of(version), "model 'sum' has no version '2' here (served: '1')");
  auto meta_version = p.call(http::Method::kGet, "/v2/models/sum/versions/01");
  EXPECT_EQ(meta_version.status, 404);
  auto shape =
      p.call(http::Method::kPost, "/v2/models/sum/infer",
             R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]})");
  EXPECT_EQ(shape.status, 400);
  EXPECT_EQ(error_of(shape), "input 'x' has shape [1,3], the model expects [-1,2]");
  auto zero = p.call(http::Method::kPost, "/v2/models/sum/infer",
                     R"({"inputs":[{"name":"x","shape":[0,2],"datatype":"FP32","data":[]}]})");
  EXPECT_EQ(zero.status, 400);
  EXPECT_EQ(error_of(zero), "input 'x' has shape [0,2]: every dimension must be positive");
  auto header = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 0),
                       {{"inference-header-content-length", "abc"}});
  EXPECT_EQ(header.status, 400);
  EXPECT_EQ(error_of(header), "Inference-Header-Content-Length 'abc' is not a byte count");
  auto not_json = p.call(http::Method::kPost, "/v2/models/sum/infer", "{");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_THAT(error_of(not_json), HasSubstr("the inference request is not valid JSON"));
  auto method = p.call(http::Method::kGet, "/v2/models/sum/infer");
  EXPECT_EQ(method.status, 405);
  EXPECT_NE(error_of(method).find("<no error body"), 0u);
  auto nowhere = p.call(http::Method::kGet, "/v3/whatever");
  EXPECT_EQ(nowhere.status, 404);
  EXPECT_NE(error_of(nowhere).find("<no error body"), 0u);
  const auto stats = p.server->stats();
  EXPECT_EQ(stats[0].requests, 4u);  // parsed by the served model's infer route
  EXPECT_EQ(stats[0].failures, 4u);
  EXPECT_EQ(stats[0].batches, 0u);
}

TEST(ModelServerInProcess, FramingErrorsFromTheHttpServerUseOipBodies) {
  auto p = InProcess::make(std::make_shared<SumModel>(), {});
  http::ServerOptions options;
  options.max_body_bytes = 64;
  const std::string body(100, 'x');
  const std::string raw = "POST /v2/models/sum/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  http::Response r = http::testing::handle_raw_request(*p.router, raw, options);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(error_of(r).find("<no error body"), 0u) << r.body;
}

TEST(ModelServerInProcess, ConcurrentRequestsShareABatchAndSplitBack) {
  auto model = std::make_shared<SumModel>();
  ModelServerOptions options;
  options.batching.max_batch_size = 8;
  options.batching.max_queue_delay = 10s;  // batches close by size, not by time, here
  auto p = InProcess::make(model, options);
  // A first request occupies the worker (held inside the model), so the next 8 all queue and
  // leave together as one batch when it is released.
  model->hold();
  std::thread first([&] {
    EXPECT_EQ(p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 0.0f)).status,
              200);
  });
  while (model->entered() < 1) std::this_thread::sleep_for(1ms);
  std::vector<std::thread> threads;
  std::vector<http::Response> responses(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      responses[i] = p.call(http::Method::kPost, "/v2/models/sum/infer",
                            sum_request(1, static_cast<float>(10 * i)));
    });
  }
  while (p.server->stats()[0].queue_length < 8) std::this_thread::sleep_for(1ms);
  model->release();
  first.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(model->calls(), (std::vector<int64_t>{1, 8}));
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(responses[i].status, 200) << responses[i].body;
    EXPECT_EQ(responses[i].header("concord-batch-size"), "8");
    auto out = oip::parse_infer_response(responses[i].body, std::nullopt);
    ASSERT_TRUE(out.has_value());
    EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{1, 1}));
    EXPECT_EQ((*out)[0].to_floats(), (std::vector<float>{20.0f * i + 1}));
  }
  const auto stats = p.server->stats();
  EXPECT_EQ(stats[0].batches, 2u);
  EXPECT_EQ(stats[0].inferences, 9u);
  EXPECT_EQ(stats[0].batch_size.counts[0], 1u);  // bounds 1,2,4,8: the "<= 1" bucket
  EXPECT_EQ(stats[0].batch_size.counts[3], 1u);  // and the "<= 8" one
}

// A lone client is not made to wait for company that cannot come: with a 10 s delay and room
// for 8, its request runs as soon as it is the only one inside the server.
TEST(ModelServerInProcess, ALoneRequestDoesNotWaitForTheDelay) {
  auto model = std::make_shared<SumModel>();
  ModelServerOptions options;
  options.batching.max_batch_size = 8;
  options.batching.max_queue_delay = 10s;  // the most the options allow
  auto p = InProcess::make(model, options);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    http::Response r = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 1.0f));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("concord-batch-size"), "1");
  }
  // Not a speed check: three requests that each waited the delay would take 30 s.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(model->calls(), (std::vector<int64_t>{1, 1, 1}));
}

TEST(ModelServerInProcess, OversizedRequestRunsAloneAndBatchesNeverExceedTheMax) {
  auto model = std::make_shared<SumModel>();
  ModelServerOptions options;
  options.batching.max_batch_size = 4;
  options.batching.max_queue_delay = 5ms;
  auto p = InProcess::make(model, options);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] {
      const int64_t rows = i % 4 == 0 ? 6 : 1 + i % 3;
      auto r = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(rows, 1.0f));
      if (r.status == 200) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 12);
  int sixes = 0;
  for (int64_t rows : model->calls()) {
    if (rows == 6) ++sixes;
    EXPECT_TRUE(rows == 6 || rows <= 4) << rows;
  }
  EXPECT_EQ(sixes, 3);
}

TEST(ModelServerInProcess, FixedBatchDimensionRunsUnbatched) {
  auto model = std::make_shared<SumModel>(/*batch_dim=*/1);
  ModelServerOptions options;
  options.batching.max_batch_size = 8;
  options.batching.max_queue_delay = 10s;  // would stall the test if these were batched
  auto p = InProcess::make(model, options);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      auto r = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 1.0f));
      EXPECT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(r.header("concord-batch-size"), "1");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(model->calls(), std::vector<int64_t>(6, 1));
}

TEST(ModelServerInProcess, FullQueueAnswers503AtOnce) {
  auto model = std::make_shared<SumModel>();
  model->hold();
  ModelServerOptions options;
  options.batching.max_batch_size = 1;
  options.batching.max_queue = 1;
  auto p = InProcess::make(model, options);
  http::Response first, second;
  std::thread a(
      [&] { first = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 1)); });
  ASSERT_TRUE(eventually([&] { return model->entered() == 1; }));
  std::thread b(
      [&] { second = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 2)); });
  ASSERT_TRUE(eventually([&] { return p.server->stats()[0].queue_length == 1; }));
  EXPECT_EQ(p.server->stats()[0].in_flight, 2);
  auto third = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 3));
  EXPECT_EQ(third.status, 503);
  EXPECT_EQ(error_of(third), "model 'sum' has 1 requests waiting, the queue is full; retry later");
  EXPECT_EQ(third.header("retry-after"), "1");
  model->release();
  a.join();
  b.join();
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(p.server->stats()[0].failures, 1u);
}

TEST(ModelServerInProcess, ReplicaKeyIsEnforcedExceptOnLiveness) {
  ModelServerOptions options;
  options.replica_key = "s3cret";
  auto p = InProcess::make(std::make_shared<SumModel>(), options);
  EXPECT_EQ(p.call(http::Method::kGet, "/v2/health/live").status, 200);
  const std::vector<std::pair<http::Method, std::string>> guarded{
      {http::Method::kGet, "/v2/health/ready"},
      {http::Method::kGet, "/v2/models/sum"},
      {http::Method::kGet, "/v2/models/sum/ready"},
      {http::Method::kGet, "/v2/stats"},
      {http::Method::kPost, "/v2/models/sum/infer"}};
  for (const auto& [method, path] : guarded) {
    SCOPED_TRACE(path);
    auto none = p.call(method, path, sum_request(1, 0));
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(error_of(none), "this replica answers only with the right x-concord-replica-key");
    EXPECT_EQ(p.call(method, path, sum_request(1, 0), {{"x-concord-replica-key", "s3cre"}}).status,
              401);
    EXPECT_EQ(
        p.call(method, path, sum_request(1, 0), {{"x-concord-replica-key", "s3cret!"}}).status,
        401);
    EXPECT_EQ(p.call(method, path, sum_request(1, 0), {{"x-concord-replica-key", "s3cret"}}).status,
              200);
  }
}

TEST(ModelServerInProcess, DrainRefusesNewWorkAndFinishesQueuedWork) {
  auto model = std::make_shared<SumModel>();
  model->hold();
  auto p = InProcess::make(model, {});
  http::Response running;
  std::thread a(
      [&] { running = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 1)); });
  ASSERT_TRUE(eventually([&] { return model->entered() == 1; }));
  EXPECT_TRUE(p.server->ready());
  p.server->drain();
  EXPECT_FALSE(p.server->ready());
  auto refused = p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(1, 1));
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(error_of(refused), "this replica is draining; retry on another");
  EXPECT_EQ(p.call(http::Method::kGet, "/v2/health/ready").status, 503);
  EXPECT_EQ(p.call(http::Method::kGet, "/v2/models/sum/ready").status, 503);
  EXPECT_EQ(p.call(http::Method::kGet, "/v2/health/live").status, 200);
  model->release();
  a.join();
  EXPECT_EQ(running.status, 200);
}

TEST(ModelServerInProcess, StatsRoute) {
  auto p = InProcess::make(std::make_shared<SumModel>(), {});
  ASSERT_EQ(p.call(http::Method::kPost, "/v2/models/sum/infer", sum_request(3, 0)).status, 200);
  auto r = p.call(http::Method::kGet, "/v2/stats");
  ASSERT_EQ(r.status, 200);
  auto j = nlohmann::json::parse(r.body);
  ASSERT_EQ(j["models"].size(), 1u);
  const auto& m = j["models"][0];
  EXPECT_EQ(m["name"], "sum");
  EXPECT_EQ(m["requests"], 1);
  EXPECT_EQ(m["inferences"], 3);
  EXPECT_EQ(m["batch_size"]["count"], 1);
  EXPECT_EQ(m["batch_size"]["sum"], 3.0);
  EXPECT_EQ(m["batch_size"]["counts"].size(), m["batch_size"]["bounds"].size() + 1);
  EXPECT_TRUE(m.contains("queue_time_us"));
  EXPECT_TRUE(m.contains("compute_time_us"));
  EXPECT_EQ(m["queue_length"], 0);
}

// ---- The Fashion-MNIST model over a real server -------------------------------------------

// The class torch predicted for each of the first 16 test images (argmax of the reference
// logits committed next to the model).
std::vector<int> reference_classes() {
  std::ifstream in(testing::model_fixture_dir() / "fashion_mnist_cnn.reference.txt");
  std::vector<int> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    int index = 0, label = 0;
    s >> index >> label;
    float best = -1e30f;
    int arg = 0;
    for (int k = 0; k < 10; ++k) {
      float v = 0;
      s >> v;
      if (v > best) best = v, arg = k;
    }
    out.push_back(arg);
  }
  return out;
}

int argmax(std::span<const float> row) {
  return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
}

class FashionServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto runtime = make_runtime("opencv");
    ASSERT_TRUE(runtime.has_value());
    auto model = (*runtime)->load_file(testing::fashion_mnist_model());
    ASSERT_TRUE(model.has_value()) << model.error().to_string();
    model_ = std::shared_ptr<Model>(std::move(*model));
    data_ = testing::load_fashion_mnist_test();
  }
  static void TearDownTestSuite() {
    model_.reset();
    data_.reset();
  }
  void TearDown() override {
    if (http_) http_->stop();
  }

  void start(ModelServerOptions options, int threads = 8) {
    auto s = ModelServer::create({ServedModel{"fm", "1", model_}}, std::move(options));
    ASSERT_TRUE(s.has_value()) << s.error().to_string();
    server_ = std::move(*s);
    auto router = std::make_shared<http::Router>();
    router->mount("", server_->routes(), oip::error);
    http::ServerOptions o;
    o.threads = threads;
    o.max_body_bytes = 8 << 20;
    http_ = std::make_unique<http::Server>(o, router, std::make_shared<http::Registry>());
    ASSERT_TRUE(http_->start().has_value());
  }
  std::unique_ptr<http::HttpClient> client() {
    auto c = http::HttpClient::create("http://127.0.0.1:" + std::to_string(http_->port()));
    EXPECT_TRUE(c.has_value());
    return std::move(*c);
  }
  static Tensor image(int index) {
    // Without Debian's dataset, a synthetic image still exercises everything but the classes.
    std::vector<float> px(784);
    if (data_) {
      std::memcpy(px.data(), data_->pixels.data() + size_t(index) * 784, 784 * sizeof(float));
    } else {
      for (int i = 0; i < 784; ++i) px[i] = static_cast<float>((i * 7 + index * 13) % 256) / 255;
    }
    return Tensor::fp32("input", {1, 1, 28, 28}, px);
  }
  // The model's answer for one image, called directly (batch 1, no server).
  static std::vector<float> direct(int index) {
    const Tensor t = image(index);
    auto out = model_->infer(std::span<const Tensor>(&t, 1));
    EXPECT_TRUE(out.has_value());
    return out ? (*out)[0].to_floats() : std::vector<float>{};
  }
  static std::vector<float> infer(http::HttpClient& c, int index, bool binary) {
    const Tensor t = image(index);
    oip::EncodedMessage m = oip::encode_infer_request(std::span<const Tensor>(&t, 1), binary);
    std::vector<std::pair<std::string, std::string>> headers{{"content-type", m.content_type}};
    if (m.header_length) {
      headers.emplace_back("inference-header-content-length", std::to_string(*m.header_length));
    }
    auto r = c.request("POST", "/v2/models/fm/infer", m.body, headers, 60s);
    EXPECT_TRUE(r.has_value());
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    std::optional<size_t> hl;
    if (const std::string h = r->header("inference-header-content-length"); !h.empty()) {
      hl = std::stoul(h);
    }
    EXPECT_EQ(hl.has_value(), binary);
    auto out = oip::parse_infer_response(r->body, hl);
    EXPECT_TRUE(out.has_value()) << (out ? "" : out.error().to_string());
    if (!out || out->size() != 1) return {};
    EXPECT_EQ((*out)[0].name, "logits");
    EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{1, 10}));
    return (*out)[0].to_floats();
  }

  static std::shared_ptr<Model> model_;
  static std::optional<testing::FashionMnistTest> data_;
  std::unique_ptr<ModelServer> server_;
  std::unique_ptr<http::Server> http_;
};
std::shared_ptr<Model> FashionServerTest::model_;
std::optional<testing::FashionMnistTest> FashionServerTest::data_;

TEST_F(FashionServerTest, HealthMetadataAndReady) {
  start({});
  auto c = client();
  auto get = [&](std::string_view path) {
    auto r = c->request("GET", path, "", {}, 30s);
    EXPECT_TRUE(r.has_value());
    return r ? *r : http::HttpReply{};
  };
  EXPECT_EQ(get("/v2/health/live").status, 200);
  EXPECT_EQ(get("/v2/health/ready").status, 200);
  EXPECT_EQ(get("/healthz").status, 200);
  for (const char* path : {"/v2/models/fm", "/v2/models/fm/versions/1"}) {
    auto meta = get(path);
    ASSERT_EQ(meta.status, 200) << path;
    auto j = nlohmann::json::parse(meta.body);
    EXPECT_EQ(j["name"], "fm");
    EXPECT_EQ(j["versions"], Json::array({"1"}));
    EXPECT_EQ(j["platform"], "onnx");
    EXPECT_EQ(j["inputs"][0]["name"], "input");
    EXPECT_EQ(j["inputs"][0]["datatype"], "FP32");
    EXPECT_EQ(j["inputs"][0]["shape"], Json::array({-1, 1, 28, 28}));
    EXPECT_EQ(j["outputs"][0]["name"], "logits");
  }
  EXPECT_EQ(get("/v2/models/fm/ready").status, 200);
  EXPECT_EQ(get("/v2/models/fm/versions/1/ready").status, 200);
  auto missing = get("/v2/models/other");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(nlohmann::json::parse(missing.body)["error"], "unknown model 'other'");
  EXPECT_EQ(get("/v2/models/fm/versions/2/ready").status, 404);
}

TEST_F(FashionServerTest, JsonAndBinaryInferenceGiveTheReferenceClasses) {
  if (!data_) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  start({});
  auto c = client();
  const std::vector<int> classes = reference_classes();
  ASSERT_EQ(classes.size(), 16u);
  for (int i = 0; i < 16; ++i) {
    const std::vector<float> want = direct(i);
    const std::vector<float> json = infer(*c, i, false);
    const std::vector<float> binary = infer(*c, i, true);
    ASSERT_EQ(json.size(), 10u);
    ASSERT_EQ(binary.size(), 10u);
    EXPECT_EQ(argmax(json), classes[i]) << "image " << i;
    EXPECT_EQ(argmax(binary), classes[i]) << "image " << i;
    // JSON carries each float's shortest exact decimal, so both paths are bitwise equal.
    EXPECT_EQ(std::memcmp(json.data(), want.data(), 40), 0) << "image " << i;
    EXPECT_EQ(std::memcmp(binary.data(), want.data(), 40), 0) << "image " << i;
  }
}

TEST_F(FashionServerTest, ConcurrentClientsAreBatchedWithBitwiseEqualResults) {
  ModelServerOptions options;
  options.batching.max_batch_size = 8;
  options.batching.max_queue_delay = 20ms;
  start(options, /*threads=*/20);
  constexpr int kClients = 16;
  constexpr int kPerClient = 6;
  std::vector<std::vector<float>> want(kClients * kPerClient);
  for (int i = 0; i < kClients * kPerClient; ++i) want[i] = direct(i);
  std::vector<std::vector<std::vector<float>>> got(kClients);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < kClients; ++k) {
    threads.emplace_back([&, k] {
      auto c = client();
      ++ready;
      while (ready.load() < kClients) std::this_thread::yield();
      for (int j = 0; j < kPerClient; ++j) {
        got[k].push_back(infer(*c, k * kPerClient + j, /*binary=*/j % 2 == 0));
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int k = 0; k < kClients; ++k) {
    ASSERT_EQ(got[k].size(), size_t{kPerClient});
    for (int j = 0; j < kPerClient; ++j) {
      const auto& w = want[k * kPerClient + j];
      ASSERT_EQ(got[k][j].size(), w.size());
      EXPECT_EQ(std::memcmp(got[k][j].data(), w.data(), w.size() * sizeof(float)), 0)
          << "client " << k << " request " << j;
    }
  }
  auto c = client();
  auto stats = c->request("GET", "/v2/stats", "", {}, 30s);
  ASSERT_TRUE(stats.has_value());
  ASSERT_EQ(stats->status, 200);
  auto j = nlohmann::json::parse(stats->body)["models"][0];
  EXPECT_EQ(j["requests"], kClients * kPerClient);
  EXPECT_EQ(j["inferences"], kClients * kPerClient);
  const auto& counts = j["batch_size"]["counts"];
  uint64_t above_one = 0;
  for (size_t b = 1; b < counts.size(); ++b) above_one += counts[b].get<uint64_t>();
  EXPECT_GT(above_one, 0u) << stats->body;
  EXPECT_LT(j["batches"].get<int>(), kClients * kPerClient);
  std::printf("%d requests in %d batches\n", kClients * kPerClient, j["batches"].get<int>());
}

// ---- run_replica_until ---------------------------------------------------------------------

class ReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("concord-replica-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ReplicaTest, ServesUntilStoppedAndExitsZero) {
  const std::string port_file = (dir_ / "port").string();
  const std::string key_file = (dir_ / "key").string();
  std::ofstream(key_file) << "k3y\n";
  std::atomic<bool> stop{false};
  std::atomic<int> code{-1};
  std::thread t([&] {
    code = run_replica_until({"--model", testing::fashion_mnist_model().string(), "--name", "fm",
                              "--port-file", port_file, "--key-file", key_file, "--max-batch-size",
                              "4", "--max-queue-delay-us", "1000"},
                             stop);
  });
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(port_file) || code.load() >= 0; }));
  ASSERT_EQ(code.load(), -1) << "the replica exited early";
  int port = 0;
  std::ifstream(port_file) >> port;
  ASSERT_GT(port, 0);
  auto c = http::HttpClient::create("http://127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(c.has_value());
  auto live = (*c)->request("GET", "/v2/health/live", "", {}, 30s);
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ(live->status, 200);
  const Tensor img = Tensor::fp32("input", {2, 1, 28, 28}, std::vector<float>(2 * 784, 0.5f));
  oip::EncodedMessage m = oip::encode_infer_request(std::span<const Tensor>(&img, 1), true);
  auto no_key =
      (*c)->request("POST", "/v2/models/fm/infer", m.body,
                    {{"inference-header-content-length", std::to_string(*m.header_length)}}, 30s);
  ASSERT_TRUE(no_key.has_value());
  EXPECT_EQ(no_key->status, 401);
  auto r = (*c)->request("POST", "/v2/models/fm/infer", m.body,
                         {{"inference-header-content-length", std::to_string(*m.header_length)},
                          {"x-concord-replica-key", "k3y"}},
                         30s);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  auto out =
      oip::parse_infer_response(r->body, std::stoul(r->header("inference-header-content-length")));
  ASSERT_TRUE(out.has_value()) << out.error().to_string();
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{2, 10}));
  stop = true;
  t.join();
  EXPECT_EQ(code.load(), 0);
  EXPECT_FALSE(std::filesystem::exists(port_file));
}

TEST_F(ReplicaTest, SigtermDrainsAndExitsZero) {
  const std::string port_file = (dir_ / "port").string();
  std::atomic<int> code{-1};
  std::thread t([&] {
    code = run_replica({"--model", testing::fashion_mnist_model().string(), "--name", "fm",
                        "--port-file", port_file});
  });
  // The handler is installed before the model loads, so once the port is published a SIGTERM
  // reaches it rather than killing the test.
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(port_file) || code.load() >= 0; }));
  ASSERT_EQ(code.load(), -1) << "the replica exited early";
  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  t.join();
  EXPECT_EQ(code.load(), 0);
}

TEST_F(ReplicaTest, BadOptionsExitTwo) {
  const std::atomic<bool> stop{true};
  const std::string model = testing::fashion_mnist_model().string();
  EXPECT_EQ(run_replica_until({"--bogus"}, stop), 2);
  EXPECT_EQ(run_replica_until({"--name", "fm"}, stop), 2);    // no --model
  EXPECT_EQ(run_replica_until({"--model", model}, stop), 2);  // no --name
  EXPECT_EQ(run_replica_until({"--model", model, "--name", "fm", "--max-batch-size", "0"}, stop),
            2);
  EXPECT_EQ(run_replica_until({"--model", model, "--name", "fm", "--port", "70000"}, stop), 2);
  EXPECT_EQ(run_replica_until({"--model", model, "--name", "fm", "--runtime", "tensorrt"}, stop),
            2);
  EXPECT_EQ(run_replica_until(
                {"--model", model, "--name", "fm", "--key-file", (dir_ / "absent").string()}, stop),
            2);
  EXPECT_EQ(run_replica_until({"--help"}, stop), 0);
}

TEST_F(ReplicaTest, UnloadableModelExitsThree) {
  const std::atomic<bool> stop{true};
  EXPECT_EQ(run_replica_until({"--model", (dir_ / "absent.onnx").string(), "--name", "fm"}, stop),
            3);
  const std::string junk = (dir_ / "junk.onnx").string();
  std::ofstream(junk) << "this is not a model";
  EXPECT_EQ(run_replica_until({"--model", junk, "--name", "fm"}, stop), 3);
}

TEST_F(ReplicaTest, PortInUseExitsFour) {
  // Hold a port with a server of our own, then ask the replica for it.
  auto router = std::make_shared<http::Router>();
  http::Server holder({}, router, nullptr);
  ASSERT_TRUE(holder.start().has_value());
  const std::atomic<bool> stop{true};
  EXPECT_EQ(run_replica_until({"--model", testing::fashion_mnist_model().string(), "--name", "fm",
                               "--port", std::to_string(holder.port())},
                              stop),
            4);
  holder.stop();
}

}  // namespace
}  // namespace concord::inference::serving

// The device SDK against a real ModelServer over HTTP on loopback, serving the fixture model and
// its tails the way a replica does: every split gives the whole model's output bit for bit,
// probing fills the planner's inputs, and errors carry their documented codes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "fixtures.h"
#include "http/router.h"
#include "http/server.h"
#include "inference/partition/partition.h"
#include "inference/runtime/opencv_runtime.h"
#include "inference/sdk/session.h"
#include "inference/serving/model_server.h"
#include "inference/serving/oip.h"

namespace concord::inference::sdk {
namespace {

using ::testing::HasSubstr;

// Eight deterministic, non-trivial images (no dependency on the data set package).
Tensor images(int batch) {
  std::vector<float> px(batch * 784);
  for (size_t i = 0; i < px.size(); ++i) px[i] = float((i * 37 + i / 784 * 11) % 256) / 255.0f;
  return Tensor::fp32("input", {batch, 1, 28, 28}, px);
}

// A ModelServer serving "fmnist" and (with tails) "fmnist.from.<k>" on 127.0.0.1, on `port`
// (0: a free one).
class Endpoint {
 public:
  explicit Endpoint(bool with_tails, uint16_t port = 0) {
    bytes_ = testing::read_file(testing::fashion_mnist_model());
    std::vector<serving::ServedModel> served;
    auto whole = runtime_.load(bytes_);
    EXPECT_TRUE(whole.has_value());
    served.push_back({"fmnist", "1", std::shared_ptr<Model>(std::move(*whole))});
    if (with_tails) {
      auto tails = partition::tail_parts(bytes_, "fmnist", runtime_);
      EXPECT_TRUE(tails.has_value());
      for (auto& t : *tails) {
        auto m = runtime_.load(t.bytes);
        EXPECT_TRUE(m.has_value());
        served.push_back({t.name, "1", std::shared_ptr<Model>(std::move(*m))});
      }
    }
    serving::ModelServerOptions options;
    options.batching.max_queue_delay = std::chrono::microseconds(200);
    auto server = serving::ModelServer::create(std::move(served), options);
    EXPECT_TRUE(server.has_value()) << server.error().to_string();
    models_ = std::move(*server);
    auto router = std::make_shared<http::Router>();
    router->mount("", models_->routes(), oip::error);
    http::ServerOptions http_options;
    http_options.port = port;
    http_options.threads = 8;
    http_options.max_body_bytes = 16 << 20;
    http_ =
        std::make_unique<http::Server>(http_options, router, std::make_shared<http::Registry>());
    EXPECT_TRUE(http_->start().has_value());
  }
  ~Endpoint() { http_->stop(); }
  uint16_t port() const { return http_->port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  const std::string& bytes() const { return bytes_; }
  SessionOptions options() const {
    SessionOptions o;
    o.endpoint_url = url();
    o.model_name = "fmnist";
    o.model_bytes = bytes_;
    o.profile_runs = 3;
    o.bandwidth_probe_bytes = 64 * 1024;
    return o;
  }

 private:
  OpenCvRuntime runtime_;
  std::string bytes_;
  std::unique_ptr<serving::ModelServer> models_;
  std::unique_ptr<http::Server> http_;
};

TEST(DeviceSession, EverySplitEqualsTheWholeModelBitwise) {
  Endpoint endpoint(/*with_tails=*/true);
  OpenCvRuntime runtime;
  auto session = DeviceSession::create(endpoint.options(), runtime);
  ASSERT_TRUE(session.has_value()) << session.error().to_string();
  auto& s = **session;
  EXPECT_EQ(s.node_count(), 10);
  EXPECT_EQ(s.splits(), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  ASSERT_TRUE(s.probe().has_value());

  auto whole = runtime.load(endpoint.bytes());
  ASSERT_TRUE(whole.has_value());
  const Tensor input = images(8);
  auto expected = (*whole)->infer(std::span(&input, 1));
  ASSERT_TRUE(expected.has_value());
  for (const int split : s.splits()) {
    SCOPED_TRACE("split " + std::to_string(split));
    auto r = s.infer_at(split, std::span(&input, 1));
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->cut, split);
    ASSERT_EQ(r->outputs.size(), 1u);
    EXPECT_EQ(r->outputs[0].shape, (std::vector<int64_t>{8, 10}));
    EXPECT_EQ(r->outputs[0].data, (*expected)[0].data);
    if (split == 10) {
      EXPECT_EQ(r->remote_ms, 0);
      EXPECT_EQ(r->bytes_up, 0u);
    } else {
      EXPECT_GT(r->remote_ms, 0);
      EXPECT_TRUE(r->server.known()) << "the server's cost headers are missing";
      EXPECT_GT(r->bytes_up, split == 0 ? 8u * 3136 : 8u * 256);
    }
  }
}

TEST(DeviceSession, ProbeFillsThePlannerInputsAndInferPlans) {
  Endpoint endpoint(/*with_tails=*/true);
  OpenCvRuntime runtime;
  auto session = DeviceSession::create(endpoint.options(), runtime);
  ASSERT_TRUE(session.has_value()) << session.error().to_string();
  auto& s = **session;
  ASSERT_TRUE(s.probe().has_value());
  const auto options = s.options();
  ASSERT_EQ(options.size(), 11u);
  EXPECT_EQ(options.front().cut, 0);
  EXPECT_EQ(options.front().device_ms, 0);
  EXPECT_EQ(options.front().bytes_up, 3136u);
  EXPECT_GT(options.front().server_ms, 0);
  EXPECT_EQ(options.back().cut, 10);
  EXPECT_GT(options.back().device_ms, 0);
  EXPECT_EQ(options.back().bytes_up, 0u);
  EXPECT_EQ(options.back().server_ms, 0);
  EXPECT_EQ(options[8].bytes_up, 256u);  // cut 8: [-1, 64] floats
  const LinkEstimate link = s.link();
  EXPECT_GT(link.rtt_ms, 0);
  EXPECT_GT(link.up_bytes_per_ms, 0);
  EXPECT_GE(link.server_load_factor, 1);

  const Tensor input = images(1);
  auto r = s.infer(std::span(&input, 1));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->cut, s.current_split());
  EXPECT_GE(r->cut, 0);
  EXPECT_LE(r->cut, 10);
  EXPECT_THAT(s.plan_table(), HasSubstr("device-only"));
  EXPECT_THAT(s.plan_table(), HasSubstr("*"));
}

TEST(DeviceSession, EndpointWithoutTailsIsNotFoundAtProbe) {
  Endpoint endpoint(/*with_tails=*/false);
  OpenCvRuntime runtime;
  auto session = DeviceSession::create(endpoint.options(), runtime);
  ASSERT_TRUE(session.has_value()) << session.error().to_string();
  auto st = (*session)->probe();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kNotFound);
  EXPECT_THAT(st.error().message(), HasSubstr("fmnist.from.1"));
  // Cloud-only and device-only still work.
  const Tensor input = images(1);
  auto cloud = (*session)->infer_at(0, std::span(&input, 1));
  ASSERT_TRUE(cloud.has_value()) << cloud.error().to_string();
  auto device = (*session)->infer_at(10, std::span(&input, 1));
  ASSERT_TRUE(device.has_value());
  EXPECT_EQ(cloud->outputs[0].data, device->outputs[0].data);
}

TEST(DeviceSession, BadSplitAndBadInputAreInvalidArgument) {
  Endpoint endpoint(/*with_tails=*/true);
  OpenCvRuntime runtime;
  auto session = DeviceSession::create(endpoint.options(), runtime);
  ASSERT_TRUE(session.has_value());
  const Tensor input = images(1);
  auto r = (*session)->infer_at(11, std::span(&input, 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("split 11"));
  const Tensor wrong = Tensor::fp32("input", {1, 1, 28, 27}, std::vector<float>(28 * 27));
  r = (*session)->infer_at(4, std::span(&wrong, 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  // The server rejects it the same way for cloud-only (an OIP 400).
  r = (*session)->infer_at(0, std::span(&wrong, 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(DeviceSession, CreateRejectsBadModelAndBadUrl) {
  OpenCvRuntime runtime;
  SessionOptions o;
  o.endpoint_url = "http://127.0.0.1:1";
  o.model_name = "m";
  o.model_bytes = "not a model";
  auto s = DeviceSession::create(o, runtime);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  o.model_bytes = testing::read_file(testing::fashion_mnist_model());
  o.endpoint_url = "ftp://nowhere";
  s = DeviceSession::create(o, runtime);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
}

TEST(DeviceSession, UnreachableEndpointIsUnavailable) {
  OpenCvRuntime runtime;
  SessionOptions o;
  {
    Endpoint gone(/*with_tails=*/false);
    o = gone.options();
  }  // the server is stopped: nothing listens on its port now
  o.timeout = std::chrono::seconds(5);
  auto s = DeviceSession::create(o, runtime);
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  auto st = (*s)->probe();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable);
}

// A device whose every model takes `delay` longer than OpenCV needs: a phone's slow CPU, so
// that the planner sends work to a loopback endpoint.
class SlowRuntime : public Runtime {
 public:
  explicit SlowRuntime(std::chrono::milliseconds delay) : delay_(delay) {}
  std::string_view name() const override { return "slow-opencv"; }
  Result<std::unique_ptr<Model>> load(std::string_view bytes) override {
    CONCORD_ASSIGN_OR_RETURN(auto model, inner_.load(bytes));
    return std::unique_ptr<Model>(new Slow(std::move(model), delay_));
  }

 private:
  class Slow : public Model {
   public:
    Slow(std::unique_ptr<Model> inner, std::chrono::milliseconds delay)
        : inner_(std::move(inner)), delay_(delay) {}
    const ModelMetadata& metadata() const override { return inner_->metadata(); }
    Result<std::vector<Tensor>> infer(std::span<const Tensor> inputs) override {
      std::this_thread::sleep_for(delay_);
      return inner_->infer(inputs);
    }

   private:
    std::unique_ptr<Model> inner_;
    std::chrono::milliseconds delay_;
  };
  OpenCvRuntime inner_;
  std::chrono::milliseconds delay_;
};

std::vector<Tensor> whole_model_output(const std::string& bytes, const Tensor& input) {
  OpenCvRuntime runtime;
  auto whole = runtime.load(bytes);
  EXPECT_TRUE(whole.has_value());
  auto out = (*whole)->infer(std::span(&input, 1));
  EXPECT_TRUE(out.has_value());
  return out ? *out : std::vector<Tensor>{};
}

TEST(DeviceSession, ProbeTimeoutTakesTheEndpointOutAndRequestsRunOnTheDevice) {
  // A port that accepts connections (the kernel's backlog) and never answers: an endpoint too
  // busy to serve within the timeout.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);

  OpenCvRuntime runtime;
  SessionOptions o;
  o.endpoint_url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  o.model_name = "fmnist";
  o.model_bytes = testing::read_file(testing::fashion_mnist_model());
  o.profile_runs = 1;
  o.timeout = std::chrono::milliseconds(300);
  o.remote_retry_after = std::chrono::hours(1);
  auto session = DeviceSession::create(o, runtime);
  ASSERT_TRUE(session.has_value()) << session.error().to_string();
  auto& s = **session;
  EXPECT_TRUE(s.remote_available());
  auto st = s.probe();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kDeadlineExceeded);
  EXPECT_FALSE(s.remote_available());
  const auto options = s.options();
  ASSERT_EQ(options.size(), 1u);
  EXPECT_EQ(options[0].cut, 10);

  const Tensor input = images(4);
  const auto expected = whole_model_output(o.model_bytes, input);
  ASSERT_EQ(expected.size(), 1u);
  for (int i = 0; i < 3; ++i) {
    auto r = s.infer(std::span(&input, 1));
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->cut, 10);
    EXPECT_EQ(r->remote_ms, 0);
    EXPECT_EQ(r->outputs[0].data, expected[0].data);
  }
  EXPECT_EQ(s.current_split(), 10);
  EXPECT_FALSE(s.remote_available()) << "tried again before remote_retry_after";
  ::close(listener);
}

TEST(DeviceSession, AnEndpointThatComesBackReturnsToThePlan) {
  OpenCvRuntime runtime;
  SessionOptions o;
  uint16_t port = 0;
  {
    Endpoint gone(/*with_tails=*/true);
    o = gone.options();
    port = gone.port();
  }  // stopped: nothing listens on its port now
  o.remote_retry_after = std::chrono::milliseconds(50);
  auto session = DeviceSession::create(o, runtime);
  ASSERT_TRUE(session.has_value()) << session.error().to_string();
  auto& s = **session;
  auto st = s.probe();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable);
  EXPECT_FALSE(s.remote_available());

  const Tensor input = images(1);
  const auto expected = whole_model_output(o.model_bytes, input);
  ASSERT_EQ(expected.size(), 1u);
  // Still down when tried again (after 50 ms): it stays out, and requests are answered here.
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  auto r = s.infer(std::span(&input, 1));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->cut, 10);
  EXPECT_FALSE(s.remote_available());

  Endpoint back(/*with_tails=*/true, port);
  ASSERT_EQ(back.port(), port);
  // The next try is 100 ms after the failed one (twice the first wait).
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  r = s.infer(std::span(&input, 1));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->outputs[0].data, expected[0].data);
  EXPECT_TRUE(s.remote_available()) << "the request after the wait probes the endpoint again";
  EXPECT_EQ(s.options().size(), 11u);
  EXPECT_GT(s.link().rtt_ms, 0);
}

TEST(DeviceSession, ARemoteCallThatFailsIsAnsweredOnTheDevice) {
  auto endpoint = std::make_unique<Endpoint>(/*with_tails=*/true);
  // 10 ms per model on the device: every option with device work costs more than a loopback
  // call, so the planner sends the whole request to the endpoint.
  SlowRuntime runtime(std::chrono::milliseconds(10));
  SessionOptions o = endpoint->options();
  o.profile_runs = 1;
  auto session = DeviceSession::create(o, runtime);
  ASSERT_TRUE(session.has_value()) << session.error().to_string();
  auto& s = **session;
  ASSERT_TRUE(s.probe().has_value());

  const Tensor input = images(2);
  const auto expected = whole_model_output(o.model_bytes, input);
  ASSERT_EQ(expected.size(), 1u);
  auto r = s.infer(std::span(&input, 1));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  ASSERT_EQ(r->cut, 0) << s.plan_table();
  EXPECT_GT(r->remote_ms, 0);

  endpoint.reset();  // the endpoint goes away between two requests
  r = s.infer(std::span(&input, 1));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->cut, 10);
  EXPECT_EQ(r->remote_ms, 0);
  EXPECT_EQ(r->outputs[0].data, expected[0].data);
  EXPECT_FALSE(s.remote_available());
  EXPECT_EQ(s.current_split(), 10);
  // A fixed remote split is what the caller asked for: its failure is the caller's to see.
  auto fixed = s.infer_at(0, std::span(&input, 1));
  ASSERT_FALSE(fixed.has_value());
  EXPECT_EQ(fixed.error().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace concord::inference::sdk

// Inference endpoints against a real store (SQLite in a temp dir, or PostgreSQL with
// CONCORD_INFERENCE_TEST_STORE=postgres), real identity tokens, the real model registry with the
// committed Fashion-MNIST model, and replicas run in-process by InProcessBackend: each replica
// is a real http::Server on port 0. The replica is a real ModelServer when the serving library
// is built (CONCORD_HAVE_MODEL_SERVER), else a small OIP stand-in (FakeReplica) that answers
// the same routes, checks the replica key and can hold infer requests to build a queue.
// The controller runs pass by pass (reconcile_once) on a FakeClock; API and gateway requests go
// through an http::Router exactly as the server dispatches them.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "fixtures.h"
#include "http/client.h"
#include "http/metrics.h"
#include "http/router.h"
#include "http/server.h"
#include "identity/identity_service.h"
#include "identity_calls.h"
#include "inference/endpoints/endpoint_service.h"
#include "inference/endpoints/replica_backend.h"
#include "inference/registry/registry.h"
#include "postgres_server.h"
#include "store/store.h"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

#ifdef CONCORD_HAVE_MODEL_SERVER
#include "inference/runtime/runtimes.h"
#include "inference/serving/model_server.h"
#include "inference/serving/oip.h"
#endif

namespace concord::inference::endpoints {
namespace {

using ::concord::inference::testing::fashion_mnist_model;
using ::concord::inference::testing::read_file;
using ::concord::testing::TempDir;
using namespace std::chrono_literals;

const auto* const kPostgresEnv = ::testing::AddGlobalTestEnvironment(
    std::make_unique<test_support::PostgresEnvironment>().release());

// ---- the in-process replica backend ------------------------------------------------------------

// Holds infer requests of FakeReplicas until released, so tests can build a queue.
class Gate {
 public:
  void close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait_for(lock, 20s, [&] { return open_; });
    --waiting_;
  }
  bool wait_waiting(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 20s, [&] { return waiting_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waiting_ = 0;
};

// The OIP routes a replica answers, enough for the controller and the gateway: health, model
// metadata and an infer that echoes the request with the replica's id.
std::shared_ptr<http::RouteTable> fake_replica_routes(const std::string& replica_id,
                                                      const ReplicaSpec& spec, Gate& gate) {
  auto table = std::make_shared<http::RouteTable>();
  auto keyed = [key = spec.replica_key](const http::Request& req) {
    return req.header("x-concord-replica-key") == key;
  };
  auto deny = [] { return http::Response::json(401, R"({"error":"replica key required"})"); };
  table->add(http::Method::kGet, "/v2/health/live",
             [](http::Request&) { return http::Response::json(200, "{}"); });
  table->add(http::Method::kGet, "/v2/health/ready", [=](http::Request& req) {
    return keyed(req) ? http::Response::json(200, "{}") : deny();
  });
  table->add(http::Method::kGet, "/v2/models/{name}", [=](http::Request& req) {
    if (!keyed(req)) return deny();
    if (req.params[0] != spec.model_name) {
      return http::Response::json(404, R"({"error":"unknown model"})");
    }
    return http::Response::json(
        200, dump_json({{"name", spec.model_name}, {"versions", {"1"}}, {"platform", "onnx"}}));
  });
  table->add(http::Method::kPost, "/v2/models/{name}/infer", [=, &gate](http::Request& req) {
    if (!keyed(req)) return deny();
    gate.pass();
    http::Response r = http::Response::json(
        200,
        dump_json({{"model_name", req.params[0]}, {"replica", replica_id}, {"echo", req.body}}));
    r.set_header("concord-batch-size", "1");
    r.set_header("concord-queue-time-us", "150");
    r.set_header("concord-compute-time-us", "80");
    return r;
  });
  return table;
}

class InProcessBackend : public ReplicaBackend {
 public:
  using RoutesFactory = std::function<Result<std::shared_ptr<http::RouteTable>>(
      const std::string&, const ReplicaSpec&)>;
  explicit InProcessBackend(RoutesFactory factory) : factory_(std::move(factory)) {}
  ~InProcessBackend() override {
    std::lock_guard lock(mu_);
    for (auto& [id, r] : replicas_) {
      if (r.server) r.server->stop();
    }
  }

  Status ensure(const std::string& id, const ReplicaSpec& spec) override {
    std::lock_guard lock(mu_);
    ++ensure_calls;
    if (replicas_.contains(id)) return ok();
    Replica r;
    r.info.id = id;
    r.info.endpoint_id = spec.endpoint_id;
    r.info.host = "test-host";
    r.spec = spec;
    if (fail_next > 0) {
      --fail_next;
      r.info.phase = ReplicaPhase::kFailed;
      r.info.fault = "the replica process exited with status 3";
      replicas_.emplace(id, std::move(r));
      return ok();
    }
    CONCORD_ASSIGN_OR_RETURN(auto routes, factory_(id, spec));
    auto router = std::make_shared<http::Router>();
    router->mount("", routes, [](int status, std::string_view message) {
      return http::Response::json(status, dump_json({{"error", message}}));
    });
    http::ServerOptions so;
    so.threads = replica_threads;
    so.max_body_bytes = 16 << 20;
    r.server = std::make_unique<http::Server>(so, router, std::make_shared<http::Registry>());
    CONCORD_RETURN_IF_ERROR(r.server->start());
    r.info.phase = ReplicaPhase::kRunning;
    r.info.url = "http://127.0.0.1:" + std::to_string(r.server->port());
    replicas_.emplace(id, std::move(r));
    return ok();
  }

  Status destroy(std::string_view id) override {
    std::unique_ptr<http::Server> server;
    {
      std::lock_guard lock(mu_);
      ++destroy_calls;
      auto it = replicas_.find(std::string(id));
      if (it == replicas_.end()) return ok();
      server = std::move(it->second.server);
      replicas_.erase(it);
    }
    if (server) server->stop();
    return ok();
  }

  Result<std::vector<ReplicaInfo>> list() override {
    std::lock_guard lock(mu_);
    std::vector<ReplicaInfo> out;
    for (const auto& [id, r] : replicas_) out.push_back(r.info);
    return out;
  }

  // Behind the controller's back: the replica disappears (a host lost, a kill -9).
  void kill(const std::string& id) { (void)destroy(id); }
  // The process stops answering but the backend still reports it running (not noticed yet).
  void stop_serving(const std::string& id) {
    std::unique_ptr<http::Server> server;
    {
      std::lock_guard lock(mu_);
      server = std::move(replicas_.at(id).server);
    }
    server->stop();
  }
  std::vector<std::string> ids() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [id, r] : replicas_) out.push_back(id);
    return out;
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return replicas_.size();
  }
  std::optional<ReplicaSpec> spec_of(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = replicas_.find(id);
    if (it == replicas_.end()) return std::nullopt;
    return it->second.spec;
  }

  std::atomic<int> fail_next{0};
  // I/O threads of each replica's server (a FakeReplica holds one per request at the gate).
  int replica_threads = 8;
  int ensure_calls = 0;
  int destroy_calls = 0;

 private:
  struct Replica {
    ReplicaInfo info;
    ReplicaSpec spec;
    std::unique_ptr<http::Server> server;
  };
  RoutesFactory factory_;
  std::mutex mu_;
  std::map<std::string, Replica> replicas_;
};

// ---- the fixture -------------------------------------------------------------------------------

struct Reply {
  int status = 0;
  Json body;
  http::Response raw;
  std::string message() const {
    if (body.is_object() && body.contains("error") && body["error"].is_object())
      return body["error"].value("message", "");
    return {};
  }
  // OIP's {"error": "..."}.
  std::string oip_error() const {
    if (body.is_object() && body.contains("error") && body["error"].is_string())
      return body["error"].get<std::string>();
    return {};
  }
};

std::ostream& operator<<(std::ostream& os, const Reply& r) {
  return os << r.status << " " << r.raw.body.substr(0, 500);
}

class EndpointsTest : public ::testing::Test, public test_support::IdentityCalls {
 protected:
  void SetUp() override {
    set_log_level("error");
    const char* engine = std::getenv("CONCORD_INFERENCE_TEST_STORE");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, engine != nullptr && std::string_view(engine) == "postgres",
        {identity::migrations(), usage::migrations(), registry::migrations(),
         endpoints::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);
    pg_database_ = stack->pg_database;
    auto boot = identity_->bootstrap({"admin-secret", "http://localhost:5000", ""});
    ASSERT_TRUE(boot.has_value()) << boot.error().to_string();
    boot_ = *boot;
    attach_identity(*identity_);
    admin_ = token("admin", "admin-secret", "admin");
    use_identity_admin(admin_);
    p1_ = create_project("p1");
    p2_ = create_project("p2");
    std::string member1 = create_user("member1");
    std::string reader1 = create_user("reader1");
    std::string member2 = create_user("member2");
    grant(p1_, member1, boot_.member_role_id);
    grant(p1_, reader1, boot_.reader_role_id);
    grant(p2_, member2, boot_.member_role_id);
    member1_ = token("member1", "member1-pw", "p1");
    reader1_ = token("reader1", "reader1-pw", "p1");
    member2_ = token("member2", "member2-pw", "p2");

    registry::RegistryOptions ro;
    ro.blob_dir = dir_.path() + "/models";
    ro.region = "RegionOne";
    auto reg = registry::ModelRegistry::create(*store_, clock_, *identity_, ro);
    ASSERT_TRUE(reg.has_value()) << reg.error().to_string();
    registry_ = std::move(*reg);

    backend_ = std::make_unique<InProcessBackend>(
        [this](const std::string& id, const ReplicaSpec& spec) { return make_replica(id, spec); });
    metrics_ = std::make_shared<http::Registry>();
    EndpointOptions eo;
    eo.region = "RegionOne";
    eo.probe_timeout = 2000ms;
    eo.request_timeout = 10'000ms;
    eo.max_in_flight = max_in_flight_;
    auto svc =
        EndpointService::create(*store_, clock_, *identity_, *registry_, *backend_, metrics_, eo);
    ASSERT_TRUE(svc.has_value()) << svc.error().to_string();
    service_ = std::move(*svc);
    registry_->set_in_use(service_->in_use_check());
    router_.mount("/inference", registry_->routes(), registry_->error_formatter());
    router_.mount("/inference/v1/endpoints", service_->routes_api(), service_->api_errors());
    router_.mount("/inference/v2/endpoints", service_->routes_gateway(),
                  service_->gateway_errors());

    model_id_ = make_model("fashion", member1_);
    Reply up = call(http::Method::kPut, "/inference/v1/models/" + model_id_ + "/versions/1",
                    member1_, read_file(fashion_mnist_model()), "application/octet-stream");
    ASSERT_EQ(up.status, 201) << up;
  }

  void TearDown() override {
    gate_.open();
    service_.reset();
    backend_.reset();
    registry_.reset();
    identity_.reset();
    store_.reset();
    if (!pg_database_.empty()) {
      auto server = test_support::PostgresServer::shared();
      if (server) {
        EXPECT_TRUE((*server)->drop_database(pg_database_).has_value());
      }
    }
  }

  Result<std::shared_ptr<http::RouteTable>> make_replica(const std::string& id,
                                                         const ReplicaSpec& spec) {
#ifdef CONCORD_HAVE_MODEL_SERVER
    if (real_replicas_) {
      CONCORD_ASSIGN_OR_RETURN(std::string file,
                               registry_->version_file(spec.model_id, spec.model_version));
      CONCORD_ASSIGN_OR_RETURN(auto runtime, make_runtime("opencv"));
      CONCORD_ASSIGN_OR_RETURN(auto model, runtime->load_file(file));
      serving::ServedModel served{spec.model_name, std::to_string(spec.model_version),
                                  std::shared_ptr<Model>(std::move(model))};
      std::vector<serving::ServedModel> models;
      models.push_back(std::move(served));
      CONCORD_ASSIGN_OR_RETURN(
          auto server,
          serving::ModelServer::create(std::move(models), {spec.batching, spec.replica_key}));
      std::shared_ptr<serving::ModelServer> shared(std::move(server));
      std::lock_guard lock(model_servers_mu_);
      model_servers_.push_back(shared);
      return shared->routes();
    }
#endif
    return fake_replica_routes(id, spec, gate_);
  }

  Reply dispatch(const http::Router& router, http::Request req) const {
    std::string route;
    Reply r;
    r.raw = router.dispatch(req, route);
    r.status = r.raw.status;
    if (!r.raw.body.empty()) {
      auto parsed = parse_json(r.raw.body);
      if (parsed) r.body = std::move(*parsed);
    }
    return r;
  }
  Reply call(http::Method method, const std::string& target, const std::string& token,
             const std::string& body = "", const std::string& content_type = "application/json",
             std::vector<http::Header> extra = {}) const {
    http::Request req;
    req.method = method;
    req.target = target;
    req.body = body;
    req.base_url = "http://localhost:5000";
    req.request_id = "req-test";
    if (!body.empty() || content_type != "application/json")
      req.headers.push_back({"content-type", content_type});
    if (!token.empty()) req.headers.push_back({"x-auth-token", token});
    for (auto& h : extra) req.headers.push_back(std::move(h));
    return dispatch(router_, std::move(req));
  }
  Reply api(http::Method method, const std::string& tail, const std::string& token,
            const Json& body = nullptr) const {
    return call(method, "/inference/v1/endpoints" + tail, token,
                body.is_null() ? "" : dump_json(body));
  }
  Reply create(const Json& endpoint, const std::string& token) const {
    return api(http::Method::kPost, "", token, {{"endpoint", endpoint}});
  }
  Json basic(const std::string& name = "fmnist") const {
    return {{"name", name}, {"model_id", model_id_}, {"model_version", 1}};
  }
  std::string create_ok(Json endpoint) {
    Reply r = create(endpoint, member1_);
    EXPECT_EQ(r.status, 201) << r;
    return r.body["endpoint"].value("id", "");
  }
  Reply show(const std::string& id, const std::string& token) const {
    return api(http::Method::kGet, "/" + id, token);
  }
  Reply infer(const std::string& id, const std::string& token, const std::string& body = "{}",
              const std::string& model = "fashion") const {
    return call(http::Method::kPost,
                "/inference/v2/endpoints/" + id + "/v2/models/" + model + "/infer", token, body);
  }
  void reconcile() {
    auto r = service_->reconcile_once();
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
  }
  void expect_error(const Reply& r, int status, const std::string& message) const {
    EXPECT_EQ(r.status, status) << r;
    EXPECT_EQ(r.body["error"].is_object() ? r.body["error"].value("code", 0) : 0, status) << r;
    EXPECT_EQ(r.message(), message) << r;
  }

  std::string make_model(const std::string& name, const std::string& tok) {
    Reply r = call(http::Method::kPost, "/inference/v1/models", tok, dump_json({{"name", name}}));
    EXPECT_EQ(r.status, 201) << r;
    return r.body["model"].value("id", "");
  }

  std::vector<usage::StoredUsageEvent> usage_of(const std::string& kind) {
    std::vector<usage::StoredUsageEvent> all, out;
    EXPECT_TRUE(store_
                    ->read([&](store::Tx& tx) -> Status {
                      CONCORD_ASSIGN_OR_RETURN(all, usage::list(tx, {}));
                      return ok();
                    })
                    .has_value());
    for (auto& e : all) {
      if (e.event.kind == kind) out.push_back(std::move(e));
    }
    return out;
  }
  int64_t count_rows(const std::string& table) {
    int64_t n = -1;
    EXPECT_TRUE(store_
                    ->read([&](store::Tx& tx) -> Status {
                      CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                                               tx.query("SELECT COUNT(*) FROM " + table));
                      n = rows.front().integer(0);
                      return ok();
                    })
                    .has_value());
    return n;
  }
  std::vector<Json> replicas_of(const std::string& id) {
    Reply r = show(id, admin_);
    EXPECT_EQ(r.status, 200) << r;
    std::vector<Json> out;
    for (const Json& x : r.body["endpoint"]["replicas"]) out.push_back(x);
    return out;
  }

  TempDir dir_{"concord-endpoints"};
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  identity::BootstrapResult boot_;
  std::unique_ptr<registry::ModelRegistry> registry_;
  std::unique_ptr<InProcessBackend> backend_;
  std::shared_ptr<http::Registry> metrics_;
  std::unique_ptr<EndpointService> service_;
  http::Router router_;
  size_t max_in_flight_ = 1024;  // set before SetUp by fixtures that test the bound
  Gate gate_;
#ifdef CONCORD_HAVE_MODEL_SERVER
  bool real_replicas_ = true;
#else
  bool real_replicas_ = false;
#endif
#ifdef CONCORD_HAVE_MODEL_SERVER
  std::mutex model_servers_mu_;
  std::vector<std::shared_ptr<serving::ModelServer>> model_servers_;
#endif
  std::string admin_, member1_, reader1_, member2_, p1_, p2_, model_id_;
  std::string pg_database_;
};

// ---- API ---------------------------------------------------------------------------------------

TEST_F(EndpointsTest, CreateAnswersTheEndpointWithDefaults) {
  Reply r = create(basic(), member1_);
  ASSERT_EQ(r.status, 201) << r;
  const Json& e = r.body["endpoint"];
  std::string id = e["id"].get<std::string>();
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(e["name"], "fmnist");
  EXPECT_EQ(e["project_id"], p1_);
  EXPECT_EQ(e["model_id"], model_id_);
  EXPECT_EQ(e["model_version"], 1);
  EXPECT_EQ(e["url"], "http://localhost:5000/inference/v2/endpoints/" + id);
  EXPECT_EQ(e["status"], "creating");
  EXPECT_EQ(e["replicas"], Json::array());
  EXPECT_EQ(e["desired_replicas"], 1);
  EXPECT_EQ(e["min_replicas"], 1);
  EXPECT_EQ(e["max_replicas"], 1);
  EXPECT_EQ(e["vcpus"], 1);
  EXPECT_EQ(e["memory_mb"], 512);
  EXPECT_EQ(e["batching"], Json({{"max_batch_size", 8}, {"max_queue_delay_us", 2000}}));
  EXPECT_EQ(e["autoscaling"],
            Json({{"metric", "queue_length"}, {"target", 4.0}, {"scale_down_delay_s", 60}}));
  EXPECT_EQ(e["split"], false);
  EXPECT_EQ(e["created_at"], "2027-01-15T08:00:00.000000Z");
  Reply shown = show(id, reader1_);
  ASSERT_EQ(shown.status, 200) << shown;
  EXPECT_EQ(shown.body["endpoint"], e);
  Reply listed = api(http::Method::kGet, "", reader1_);
  ASSERT_EQ(listed.status, 200) << listed;
  ASSERT_EQ(listed.body["endpoints"].size(), 1u);
  EXPECT_EQ(listed.body["endpoints"][0], e);
}

TEST_F(EndpointsTest, CreateTakesEverySetting) {
  Json body = basic();
  body["min_replicas"] = 2;
  body["max_replicas"] = 5;
  body["vcpus"] = 2;
  body["memory_mb"] = 1024;
  body["batching"] = {{"max_batch_size", 32}, {"max_queue_delay_us", 500}};
  body["autoscaling"] = {{"metric", "p99_latency_ms"}, {"target", 25.5}, {"scale_down_delay_s", 5}};
  body["split"] = true;
  Reply r = create(body, member1_);
  ASSERT_EQ(r.status, 201) << r;
  const Json& e = r.body["endpoint"];
  EXPECT_EQ(e["desired_replicas"], 2);
  EXPECT_EQ(e["max_replicas"], 5);
  EXPECT_EQ(e["batching"]["max_batch_size"], 32);
  EXPECT_EQ(e["autoscaling"]["metric"], "p99_latency_ms");
  EXPECT_EQ(e["autoscaling"]["target"], 25.5);
  EXPECT_EQ(e["split"], true);
  // The replicas get the settings.
  reconcile();
  ASSERT_EQ(backend_->size(), 2u);
  auto spec = backend_->spec_of(backend_->ids().front());
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->endpoint_id, e["id"]);
  EXPECT_EQ(spec->project_id, p1_);
  EXPECT_EQ(spec->model_id, model_id_);
  EXPECT_EQ(spec->model_version, 1);
  EXPECT_EQ(spec->model_name, "fashion");
  EXPECT_EQ(spec->vcpus, 2);
  EXPECT_EQ(spec->memory_mb, 1024);
  EXPECT_EQ(spec->batching.max_batch_size, 32);
  EXPECT_EQ(spec->batching.max_queue_delay, 500us);
  EXPECT_TRUE(spec->split);
  EXPECT_GE(spec->replica_key.size(), 32u);
  EXPECT_TRUE(spec->name.starts_with("fmnist-"));
}

TEST_F(EndpointsTest, EveryValidationErrorNamesTheField) {
  auto with = [&](const std::string& key, const Json& value) {
    Json b = basic();
    b[key] = value;
    return b;
  };
  auto bad = [&](const Json& endpoint, const std::string& message) {
    expect_error(create(endpoint, member1_), 400, message);
  };
  bad(Json({{"model_id", model_id_}, {"model_version", 1}}), "'name' is required");
  bad(Json({{"name", "x"}, {"model_version", 1}}), "'model_id' is required");
  bad(Json({{"name", "x"}, {"model_id", model_id_}}), "'model_version' is required");
  bad(with("name", ""), "'name' must not be empty");
  bad(with("name", 3), "'name' must be a string");
  bad(with("name", std::string(256, 'a')), "'name' is longer than 255 bytes");
  bad(with("model_id", 5), "'model_id' must be a model's id");
  bad(with("model_version", 0), "'model_version' must be an integer from 1 to 2147483647");
  bad(with("model_version", "1"), "'model_version' must be an integer from 1 to 2147483647");
  bad(with("min_replicas", 0), "'min_replicas' must be an integer from 1 to 16");
  bad(with("min_replicas", 1.5), "'min_replicas' must be an integer from 1 to 16");
  bad(with("max_replicas", 17), "'max_replicas' must be an integer from 1 to 16");
  Json minmax = basic();
  minmax["min_replicas"] = 3;
  minmax["max_replicas"] = 2;
  bad(minmax, "'max_replicas' (2) must not be less than 'min_replicas' (3)");
  bad(with("vcpus", 0), "'vcpus' must be an integer from 1 to 64");
  bad(with("memory_mb", 10), "'memory_mb' must be an integer from 64 to 262144");
  bad(with("batching", 3), "'batching' must be an object");
  bad(with("batching", {{"max_batch_size", 0}}),
      "'max_batch_size' must be an integer from 1 to 256");
  bad(with("batching", {{"max_batch_size", 257}}),
      "'max_batch_size' must be an integer from 1 to 256");
  bad(with("batching", {{"max_queue_delay_us", 1000001}}),
      "'max_queue_delay_us' must be an integer from 0 to 1000000");
  bad(with("batching", {{"size", 1}}),
      "unknown field 'size' in batching (max_batch_size, max_queue_delay_us)");
  bad(with("autoscaling", {{"metric", "cpu"}}),
      "'metric' must be 'queue_length' or 'p99_latency_ms'");
  bad(with("autoscaling", {{"target", 0}}),
      "'target' must be a number greater than 0 and at most 1000000");
  bad(with("autoscaling", {{"target", "4"}}),
      "'target' must be a number greater than 0 and at most 1000000");
  bad(with("autoscaling", {{"scale_down_delay_s", -1}}),
      "'scale_down_delay_s' must be an integer from 0 to 86400");
  bad(with("split", 1), "'split' must be true or false");
  bad(with("replicas", 1),
      "unknown field 'replicas' in endpoint (autoscaling, batching, max_replicas, memory_mb, "
      "min_replicas, model_id, model_version, name, split, vcpus)");
  bad(with("model_id", "no-such-model"), "model no-such-model not found in project " + p1_);
  bad(with("model_version", 2), "version 2 of model " + model_id_ + " not found");
  // A model of another project is not usable (nor visible).
  std::string other = make_model("other", member2_);
  bad(with("model_id", other), "model " + other + " not found in project " + p1_);
  expect_error(call(http::Method::kPost, "/inference/v1/endpoints", member1_, "[1]"), 400,
               "the request body must be {\"endpoint\": {...}}");
  expect_error(call(http::Method::kPost, "/inference/v1/endpoints", member1_, "{", "text/plain"),
               400, "the request body must be application/json, not 'text/plain'");
  create_ok(basic());
  expect_error(create(basic(), member1_), 409,
               "an endpoint named 'fmnist' already exists in project " + p1_);
  EXPECT_EQ(count_rows("inference_endpoints"), 1);
}

TEST_F(EndpointsTest, PatchChangesSettingsAndKeepsModel) {
  std::string id = create_ok(basic());
  Reply r = api(http::Method::kPatch, "/" + id, member1_,
                {{"endpoint",
                  {{"name", "renamed"},
                   {"max_replicas", 4},
                   {"autoscaling", {{"metric", "p99_latency_ms"}}}}}});
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["endpoint"]["name"], "renamed");
  EXPECT_EQ(r.body["endpoint"]["max_replicas"], 4);
  EXPECT_EQ(r.body["endpoint"]["autoscaling"]["metric"], "p99_latency_ms");
  EXPECT_EQ(r.body["endpoint"]["autoscaling"]["target"], 100.0);  // the metric's default
  EXPECT_EQ(show(id, member1_).body["endpoint"], r.body["endpoint"]);
  expect_error(api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"model_id", "x"}}}}),
               400, "'model_id' cannot change; create another endpoint for another model");
  expect_error(api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"min_replicas", 5}}}}),
               400, "'max_replicas' (4) must not be less than 'min_replicas' (5)");
  expect_error(
      api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"model_version", 9}}}}), 400,
      "version 9 of model " + model_id_ + " not found");
  expect_error(api(http::Method::kPatch, "/" + id, reader1_, {{"endpoint", {{"name", "z"}}}}), 403,
               "the member role on the endpoint's project is needed to change endpoints");
  create_ok(basic("second"));
  expect_error(api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"name", "second"}}}}),
               409, "an endpoint named 'second' already exists in project " + p1_);
}

TEST_F(EndpointsTest, TenancyAndRoles) {
  std::string id = create_ok(basic());
  expect_error(show(id, member2_), 404, "endpoint " + id + " not found");
  expect_error(api(http::Method::kDelete, "/" + id, member2_), 404,
               "endpoint " + id + " not found");
  expect_error(api(http::Method::kPatch, "/" + id, member2_, {{"endpoint", {{"name", "x"}}}}), 404,
               "endpoint " + id + " not found");
  EXPECT_EQ(api(http::Method::kGet, "", member2_).body["endpoints"], Json::array());
  expect_error(create(basic("r"), reader1_), 403,
               "the member role on the endpoint's project is needed to change endpoints");
  expect_error(api(http::Method::kDelete, "/" + id, reader1_), 403,
               "the member role on the endpoint's project is needed to change endpoints");
  expect_error(api(http::Method::kGet, "?all_projects=1", member1_), 403,
               "only an administrator may list all projects' endpoints");
  expect_error(api(http::Method::kGet, "", ""), 401,
               "authentication required: send a token in X-Auth-Token");
  expect_error(api(http::Method::kGet, "", "bogus"), 401,
               show(id, "bogus").message());  // the identity's own reason
  EXPECT_EQ(api(http::Method::kGet, "?all_projects=1", admin_).body["endpoints"].size(), 1u);
  // The admin sees it (and may change it); the tenant never sees hosts or replica URLs.
  EXPECT_EQ(show(id, admin_).status, 200);
  reconcile();
  reconcile();
  Json tenant_view = show(id, member1_).body["endpoint"]["replicas"][0];
  EXPECT_FALSE(tenant_view.contains("url"));
  EXPECT_FALSE(tenant_view.contains("host"));
  Json admin_view = show(id, admin_).body["endpoint"]["replicas"][0];
  EXPECT_TRUE(admin_view["url"].get<std::string>().starts_with("http://127.0.0.1:"));
  EXPECT_EQ(admin_view["host"], "test-host");
}

TEST_F(EndpointsTest, ModelInUseCannotBeDeleted) {
  std::string id = create_ok(basic());
  expect_error(call(http::Method::kDelete, "/inference/v1/models/" + model_id_, member1_), 409,
               "model " + model_id_ + " is used by endpoint " + id + "; delete the endpoint first");
  expect_error(
      call(http::Method::kDelete, "/inference/v1/models/" + model_id_ + "/versions/1", member1_),
      409,
      "version 1 of model " + model_id_ + " is used by endpoint " + id +
          "; delete the endpoint first");
  ASSERT_EQ(api(http::Method::kDelete, "/" + id, member1_).status, 204);
  // Still in use until the controller has removed its replicas.
  EXPECT_EQ(call(http::Method::kDelete, "/inference/v1/models/" + model_id_, member1_).status, 409);
  reconcile();
  EXPECT_EQ(call(http::Method::kDelete, "/inference/v1/models/" + model_id_, member1_).status, 204);
}

// ---- controller --------------------------------------------------------------------------------

TEST_F(EndpointsTest, MinReplicasAreCreatedThenReady) {
  Json b = basic();
  b["min_replicas"] = 2;
  b["max_replicas"] = 3;
  std::string id = create_ok(b);
  reconcile();
  EXPECT_EQ(backend_->size(), 2u);
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "creating");
  for (const Json& r : replicas_of(id)) EXPECT_EQ(r["status"], "pending");
  reconcile();  // probes the running replicas
  Json e = show(id, member1_).body["endpoint"];
  EXPECT_EQ(e["status"], "ready");
  ASSERT_EQ(e["replicas"].size(), 2u);
  for (const Json& r : e["replicas"]) EXPECT_EQ(r["status"], "ready");
  // A steady pass changes nothing.
  int ensures = backend_->ensure_calls;
  reconcile();
  EXPECT_EQ(backend_->ensure_calls, ensures);
  EXPECT_EQ(backend_->size(), 2u);
}

TEST_F(EndpointsTest, ScalesUpOnQueueAndDownOnlyAfterTheDelay) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  Json b = basic();
  b["max_replicas"] = 3;
  b["autoscaling"] = {{"metric", "queue_length"}, {"target", 1}, {"scale_down_delay_s", 60}};
  std::string id = create_ok(b);
  reconcile();
  reconcile();
  ASSERT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");
  // Four requests held in the replica: arrivals saw 1, 2, 3, 4 in flight (mean 2.5) on one
  // ready replica, against a target of 1: ceil(2.5) = 3.
  gate_.close();
  std::vector<std::thread> clients;
  std::vector<int> statuses(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(i == 0 || gate_.wait_waiting(i));
    clients.emplace_back([&, i] { statuses[i] = infer(id, member1_).status; });
  }
  ASSERT_TRUE(gate_.wait_waiting(4));
  reconcile();
  EXPECT_EQ(show(id, member1_).body["endpoint"]["desired_replicas"], 3);
  EXPECT_EQ(backend_->size(), 3u);
  gate_.open();
  for (auto& t : clients) t.join();
  for (int s : statuses) EXPECT_EQ(s, 200);
  reconcile();  // idle now: the lower value starts its delay
  EXPECT_EQ(backend_->size(), 3u);
  clock_.advance(30s);
  reconcile();
  EXPECT_EQ(backend_->size(), 3u);
  EXPECT_EQ(show(id, member1_).body["endpoint"]["desired_replicas"], 3);
  clock_.advance(31s);
  reconcile();
  EXPECT_EQ(backend_->size(), 1u);
  Json e = show(id, member1_).body["endpoint"];
  EXPECT_EQ(e["desired_replicas"], 1);
  EXPECT_EQ(e["replicas"].size(), 1u);
  EXPECT_EQ(e["status"], "ready");
}

TEST_F(EndpointsTest, LoadAboveTargetResetsTheScaleDownDelay) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  Json b = basic();
  b["min_replicas"] = 1;
  b["max_replicas"] = 2;
  b["autoscaling"] = {{"target", 1}, {"scale_down_delay_s", 60}};
  std::string id = create_ok(b);
  reconcile();
  reconcile();
  ASSERT_TRUE(
      api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"min_replicas", 2}}}}).status ==
      200);
  reconcile();
  reconcile();
  ASSERT_EQ(backend_->size(), 2u);
  ASSERT_EQ(
      api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"min_replicas", 1}}}}).status,
      200);
  reconcile();  // idle: delay starts
  clock_.advance(50s);
  // Two requests at once on two ready replicas: mean 1.5 in flight / 2 ready = 0.75 < 1, so
  // still below target; then a burst of 4 keeps the desired count at 2 and resets the delay.
  gate_.close();
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(i == 0 || gate_.wait_waiting(i));
    clients.emplace_back([&] { EXPECT_EQ(infer(id, member1_).status, 200); });
  }
  ASSERT_TRUE(gate_.wait_waiting(4));
  reconcile();
  gate_.open();
  for (auto& t : clients) t.join();
  clock_.advance(20s);  // 70 s after the first idle pass, 20 s after the burst
  reconcile();
  EXPECT_EQ(backend_->size(), 2u);
  clock_.advance(61s);
  reconcile();
  EXPECT_EQ(backend_->size(), 1u);
}

TEST_F(EndpointsTest, FailedReplicaIsReplaced) {
  backend_->fail_next = 1;
  std::string id = create_ok(basic());
  reconcile();
  ASSERT_EQ(backend_->size(), 1u);
  std::string failed = backend_->ids().front();
  reconcile();  // sees it failed: destroys it, starts another
  auto ids = backend_->ids();
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_NE(ids.front(), failed);
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "error");
  reconcile();
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");
}

TEST_F(EndpointsTest, KilledReplicaIsReplacedAndEndpointDegradesMeanwhile) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  Json b = basic();
  b["min_replicas"] = 2;
  b["max_replicas"] = 2;
  std::string id = create_ok(b);
  reconcile();
  reconcile();
  ASSERT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");
  std::string victim = backend_->ids().front();
  backend_->kill(victim);
  reconcile();
  auto ids = backend_->ids();
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), victim), 0);
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "degraded");
  EXPECT_EQ(infer(id, member1_).status, 200);  // still served by the other
  reconcile();
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");
  EXPECT_EQ(count_rows("inference_replicas"), 2);
}

TEST_F(EndpointsTest, DeleteRemovesReplicasRowsAndMetersTheLastInterval) {
  Json b = basic();
  b["min_replicas"] = 2;
  b["max_replicas"] = 2;
  std::string id = create_ok(b);
  reconcile();
  reconcile();  // running from now
  clock_.advance(10s);
  ASSERT_EQ(api(http::Method::kDelete, "/" + id, member1_).status, 204);
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "deleting");
  expect_error(api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"name", "x"}}}}), 409,
               "endpoint " + id + " is being deleted");
  EXPECT_EQ(api(http::Method::kDelete, "/" + id, member1_).status, 204);  // idempotent
  reconcile();
  EXPECT_EQ(backend_->size(), 0u);
  EXPECT_EQ(count_rows("inference_replicas"), 0);
  EXPECT_EQ(count_rows("inference_endpoints"), 0);
  expect_error(show(id, member1_), 404, "endpoint " + id + " not found");
  auto seconds = usage_of("inference.replica_seconds");
  ASSERT_EQ(seconds.size(), 2u);
  for (const auto& e : seconds) {
    EXPECT_EQ(e.event.quantity, "10.000");
    EXPECT_EQ(e.event.unit, "s");
    EXPECT_EQ(e.event.project_id, p1_);
    EXPECT_EQ(e.event.resource_id, id);
    EXPECT_EQ(e.event.resource_type, "inference.endpoint");
    EXPECT_EQ(e.event.region, "RegionOne");
  }
  // The gateway forgets it.
  Reply r = infer(id, member1_);
  EXPECT_EQ(r.status, 404) << r;
}

TEST_F(EndpointsTest, OrphanReplicasAreDestroyed) {
  std::string id = create_ok(basic());
  reconcile();
  ReplicaSpec spec = *backend_->spec_of(backend_->ids().front());
  spec.endpoint_id = "gone-endpoint";
  ASSERT_TRUE(backend_->ensure("orphan-1", spec).has_value());
  ASSERT_EQ(backend_->size(), 2u);
  auto report = service_->reconcile_once();
  ASSERT_TRUE(report.has_value()) << report.error().to_string();
  EXPECT_EQ(report->orphans_destroyed, 1);
  auto ids = backend_->ids();
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_NE(ids.front(), "orphan-1");
}

TEST_F(EndpointsTest, ReplicaRowWithoutReplicaIsEnsuredAgain) {
  // As after a crash between the row insert and ensure(): the backend does not know the id.
  std::string id = create_ok(basic());
  reconcile();
  std::string rid = backend_->ids().front();
  ASSERT_TRUE(backend_->destroy(rid).has_value());  // never started: no started_ms yet
  reconcile();
  auto ids = backend_->ids();
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids.front(), rid);  // the same id, ensured again
}

TEST_F(EndpointsTest, UsageRecordsRequestsAndReplicaSeconds) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(infer(id, member1_).status, 200);
  clock_.advance(90s);
  reconcile();
  auto requests = usage_of("inference.requests");
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].event.quantity, "5");
  EXPECT_EQ(requests[0].event.unit, "request");
  EXPECT_EQ(requests[0].event.resource_id, id);
  EXPECT_EQ(requests[0].event.project_id, p1_);
  auto seconds = usage_of("inference.replica_seconds");
  ASSERT_EQ(seconds.size(), 1u);
  EXPECT_EQ(seconds[0].event.quantity, "90.000");
  // Nothing new without requests or a full interval.
  reconcile();
  EXPECT_EQ(usage_of("inference.requests").size(), 1u);
  EXPECT_EQ(usage_of("inference.replica_seconds").size(), 1u);
}

TEST_F(EndpointsTest, ChangingTheModelVersionRollsReplicas) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  Reply up = call(http::Method::kPut, "/inference/v1/models/" + model_id_ + "/versions/2", member1_,
                  read_file(fashion_mnist_model()), "application/octet-stream");
  ASSERT_EQ(up.status, 201) << up;
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  std::string old_id = backend_->ids().front();
  ASSERT_EQ(
      api(http::Method::kPatch, "/" + id, member1_, {{"endpoint", {{"model_version", 2}}}}).status,
      200);
  reconcile();  // the new one starts; the old one serves meanwhile
  EXPECT_EQ(backend_->size(), 2u);
  EXPECT_EQ(infer(id, member1_).status, 200);
  reconcile();  // the new one is ready: the old one goes
  auto ids = backend_->ids();
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_NE(ids.front(), old_id);
  EXPECT_EQ(backend_->spec_of(ids.front())->model_version, 2);
  // Version 1 is free now, version 2 is not.
  EXPECT_EQ(
      call(http::Method::kDelete, "/inference/v1/models/" + model_id_ + "/versions/1", member1_)
          .status,
      204);
  EXPECT_EQ(
      call(http::Method::kDelete, "/inference/v1/models/" + model_id_ + "/versions/2", member1_)
          .status,
      409);
}

TEST_F(EndpointsTest, ServiceLoopReconcilesOnItsOwn) {
  std::string id = create_ok(basic());
  ASSERT_TRUE(service_->start().has_value());
  EXPECT_EQ(service_->start().error().code(), Code::kFailedPrecondition);
  // The API wakes the loop; no clock needed. Bounded wait, not a timing assertion.
  std::string status;
  for (int i = 0; i < 400 && status != "ready"; ++i) {
    std::this_thread::sleep_for(25ms);
    status = show(id, member1_).body["endpoint"].value("status", "");
  }
  EXPECT_EQ(status, "ready");
  service_->stop();
}

TEST_F(EndpointsTest, ScalesUpOnP99Latency) {
  real_replicas_ = false;
  Json b = basic();
  b["max_replicas"] = 3;
  b["autoscaling"] = {{"metric", "p99_latency_ms"}, {"target", 5}, {"scale_down_delay_s", 0}};
  std::string id = create_ok(b);
  reconcile();
  reconcile();
  // Two requests held for at least 50 ms each: p99 >= 50 ms against a target of 5 ms.
  gate_.close();
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&] { EXPECT_EQ(infer(id, member1_).status, 200); });
  }
  ASSERT_TRUE(gate_.wait_waiting(2));
  std::this_thread::sleep_for(50ms);  // a lower bound on latency, never an upper one
  gate_.open();
  for (auto& t : clients) t.join();
  reconcile();
  EXPECT_EQ(backend_->size(), 3u);
  EXPECT_EQ(show(id, member1_).body["endpoint"]["desired_replicas"], 3);
  // No latencies in the next window and no delay: straight back to min.
  reconcile();
  EXPECT_EQ(backend_->size(), 1u);
}

TEST_F(EndpointsTest, ReplicaThatStopsAnsweringIsReplacedAfterTheGrace) {
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  std::string hung = backend_->ids().front();
  backend_->stop_serving(hung);  // still listed as running by the backend
  reconcile();
  EXPECT_EQ(backend_->ids(), std::vector<std::string>{hung});
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "degraded");
  clock_.advance(119s);
  reconcile();
  EXPECT_EQ(backend_->ids(), std::vector<std::string>{hung});
  clock_.advance(2s);
  reconcile();
  auto ids = backend_->ids();
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_NE(ids.front(), hung);
  reconcile();
  EXPECT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");
}

// ---- gateway -----------------------------------------------------------------------------------

TEST_F(EndpointsTest, GatewayProxiesToTheReplica) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  Reply r = infer(id, reader1_, R"({"inputs":[]})");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["model_name"], "fashion");
  EXPECT_EQ(r.body["echo"], R"({"inputs":[]})");
  EXPECT_EQ(r.body["replica"], backend_->ids().front());
  EXPECT_EQ(r.raw.header("concord-batch-size"), "1");
  EXPECT_EQ(r.raw.header("content-type"), "application/json");
  // Any model name (a tail "<name>.from.<k>") passes through to the replica.
  Reply meta =
      call(http::Method::kGet, "/inference/v2/endpoints/" + id + "/v2/models/fashion", member1_);
  EXPECT_EQ(meta.status, 200) << meta;
  EXPECT_EQ(meta.body["name"], "fashion");
  Reply unknown = call(http::Method::kGet,
                       "/inference/v2/endpoints/" + id + "/v2/models/fashion.from.3", member1_);
  EXPECT_EQ(unknown.status, 404) << unknown;
  EXPECT_EQ(unknown.oip_error(), "unknown model");
  Reply ready =
      call(http::Method::kGet, "/inference/v2/endpoints/" + id + "/v2/health/ready", member1_);
  EXPECT_EQ(ready.status, 200) << ready;
  // Metrics per endpoint.
  std::string text = metrics_->render();
  EXPECT_NE(text.find("concord_inference_requests_total{endpoint=\"" + id + "\",code=\"200\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("concord_inference_requests_total{endpoint=\"" + id + "\",code=\"404\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("concord_inference_batch_size_count{endpoint=\"" + id + "\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("concord_inference_queue_seconds_count"), std::string::npos);
  EXPECT_NE(text.find("concord_inference_compute_seconds_count"), std::string::npos);
}

TEST_F(EndpointsTest, GatewayAuthenticatesAndIsolatesTenants) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  Reply none = infer(id, "");
  EXPECT_EQ(none.status, 401) << none;
  EXPECT_EQ(none.oip_error(), "authentication required: send a token in X-Auth-Token");
  Reply bogus = infer(id, "not-a-token");
  EXPECT_EQ(bogus.status, 401) << bogus;
  EXPECT_TRUE(bogus.oip_error().starts_with("the token is not valid: ")) << bogus;
  Reply other = infer(id, member2_);
  EXPECT_EQ(other.status, 404) << other;
  EXPECT_EQ(other.oip_error(), "endpoint " + id + " not found");
  Reply missing = infer("00000000-0000-0000-0000-000000000000", member1_);
  EXPECT_EQ(missing.status, 404) << missing;
  EXPECT_EQ(infer(id, admin_).status, 200);
  EXPECT_EQ(infer(id, reader1_).status, 200);
}

TEST_F(EndpointsTest, GatewayAnswers503WithoutReadyReplica) {
  std::string id = create_ok(basic());
  Reply before = infer(id, member1_);  // not reconciled yet
  EXPECT_EQ(before.status, 503) << before;
  EXPECT_EQ(before.oip_error(), "endpoint " + id + " has no ready replica yet");
  reconcile();  // created, not probed yet
  Reply pending = infer(id, member1_);
  EXPECT_EQ(pending.status, 503) << pending;
  EXPECT_EQ(pending.oip_error(), "endpoint " + id + " has no ready replica");
}

TEST_F(EndpointsTest, AStoppedReplicaLosesNoRequest) {
  real_replicas_ = false;  // FakeReplica: names itself in answers, can hold requests
  Json b = basic();
  b["min_replicas"] = 2;
  b["max_replicas"] = 2;
  std::string id = create_ok(b);
  reconcile();
  reconcile();
  ASSERT_EQ(backend_->size(), 2u);
  // Warm both replicas' connection pools; ties in outstanding requests rotate, so one client's
  // sequential requests spread over both.
  std::map<std::string, int> warm;
  for (int i = 0; i < 6; ++i) {
    Reply r = infer(id, member1_);
    ASSERT_EQ(r.status, 200) << r;
    ++warm[r.body["replica"].get<std::string>()];
  }
  EXPECT_EQ(warm.size(), 2u);
  std::string stopped = backend_->ids().front();
  backend_->stop_serving(stopped);  // the controller does not know yet
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  std::mutex seen_mu;
  std::set<std::string> served_by;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        Reply r = infer(id, member1_);
        if (r.status != 200) {
          ++failures;
          continue;
        }
        std::lock_guard lock(seen_mu);
        served_by.insert(r.body["replica"].get<std::string>());
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(served_by.count(stopped), 0u);
  EXPECT_EQ(served_by.size(), 1u);
}

// The gateway holds no server thread while a replica computes (issue 5, task G1): through a
// real server with only 2 I/O threads, 32 concurrent inferences all reach the replica at once,
// and another API on the same server answers while they are held there.
TEST_F(EndpointsTest, GatewayHoldsNoServerThreadWhileReplicasCompute) {
  real_replicas_ = false;  // FakeReplica: holds infer requests at the gate
  backend_->replica_threads = 40;
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  ASSERT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");

  auto router = std::make_shared<http::Router>();
  router->mount("/inference/v1/endpoints", service_->routes_api(), service_->api_errors());
  router->mount("/inference/v2/endpoints", service_->routes_gateway(), service_->gateway_errors());
  http::ServerOptions so;
  so.threads = 2;
  http::Server server(so, router, std::make_shared<http::Registry>());
  ASSERT_TRUE(server.start().has_value());
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());

  constexpr int kClients = 32;
  gate_.close();
  std::vector<int> statuses(kClients, 0);
  std::vector<std::string> replicas(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      auto c = http::HttpClient::create(base);
      if (!c) return;
      auto r = (*c)->request("POST", "/inference/v2/endpoints/" + id + "/v2/models/fashion/infer",
                             R"({"inputs":[]})", {{"x-auth-token", member1_}}, 60s);
      if (!r) return;
      statuses[i] = r->status;
      auto body = parse_json(r->body);
      if (body && body->is_object()) replicas[i] = body->value("replica", "");
    });
  }
  // Every request is in the replica at the same time: none waits for a gateway thread.
  ASSERT_TRUE(gate_.wait_waiting(kClients));
  // And the server's two threads still serve the other APIs meanwhile.
  auto other = http::HttpClient::create(base);
  ASSERT_TRUE(other.has_value());
  auto shown = (*other)->request("GET", "/inference/v1/endpoints/" + id, "",
                                 {{"x-auth-token", member1_}}, 30s);
  ASSERT_TRUE(shown.has_value()) << shown.error().to_string();
  EXPECT_EQ(shown->status, 200);
  EXPECT_EQ(parse_json(shown->body).value()["endpoint"]["id"], id);
  // The same held requests, seen from the autoscaler's side.
  gate_.open();
  for (auto& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(statuses[i], 200) << i;
    EXPECT_EQ(replicas[i], backend_->ids().front()) << i;
  }
  std::string text = metrics_->render();
  EXPECT_NE(text.find("concord_inference_requests_total{endpoint=\"" + id + "\",code=\"200\"} " +
                      std::to_string(kClients)),
            std::string::npos)
      << text;
  server.stop();
}

class GatewayLimitTest : public EndpointsTest {
 protected:
  void SetUp() override {
    max_in_flight_ = 3;
    EndpointsTest::SetUp();
  }
};

TEST_F(GatewayLimitTest, RequestsBeyondTheInFlightLimitGet503WithRetryAfter) {
  real_replicas_ = false;
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  gate_.close();
  std::vector<std::thread> held;
  std::vector<int> statuses(3, 0);
  for (int i = 0; i < 3; ++i) {
    held.emplace_back([&, i] { statuses[i] = infer(id, member1_).status; });
  }
  ASSERT_TRUE(gate_.wait_waiting(3));
  Reply over = infer(id, member1_);
  EXPECT_EQ(over.status, 503) << over;
  EXPECT_EQ(over.oip_error(), "the gateway has 3 requests in flight, its limit; retry shortly");
  EXPECT_EQ(over.raw.header("retry-after"), "1");
  // Authentication still comes first: no token is 401 even at the limit.
  EXPECT_EQ(infer(id, "").status, 401);
  gate_.open();
  for (auto& t : held) t.join();
  EXPECT_EQ(statuses, std::vector<int>(3, 200));
  // The slots are given back.
  EXPECT_EQ(infer(id, member1_).status, 200);
  std::string text = metrics_->render();
  EXPECT_NE(text.find("concord_inference_requests_total{endpoint=\"" + id + "\",code=\"503\"} 1"),
            std::string::npos)
      << text;
}

#ifdef CONCORD_HAVE_MODEL_SERVER
TEST_F(EndpointsTest, RealModelServerThroughTheGatewayEqualsTheReplica) {
  std::string id = create_ok(basic());
  reconcile();
  reconcile();
  ASSERT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");
  std::vector<float> pixels(2 * 784);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>(i % 255) / 255.0f;
  Tensor input = Tensor::fp32("input", {2, 1, 28, 28}, pixels);
  for (bool binary : {false, true}) {
    oip::EncodedMessage msg = oip::encode_infer_request(std::span<const Tensor>(&input, 1), binary);
    std::vector<http::Header> extra;
    if (msg.header_length) {
      extra.push_back({"inference-header-content-length", std::to_string(*msg.header_length)});
    }
    Reply through =
        call(http::Method::kPost, "/inference/v2/endpoints/" + id + "/v2/models/fashion/infer",
             member1_, msg.body, msg.content_type, extra);
    ASSERT_EQ(through.status, 200) << through;
    // The same request straight to the replica.
    std::string url = replicas_of(id).front()["url"].get<std::string>();
    auto client = http::HttpClient::create(url);
    ASSERT_TRUE(client.has_value());
    std::vector<std::pair<std::string, std::string>> headers = {
        {"content-type", msg.content_type},
        {"x-concord-replica-key", backend_->spec_of(backend_->ids().front())->replica_key}};
    if (msg.header_length) {
      headers.emplace_back("inference-header-content-length", std::to_string(*msg.header_length));
    }
    auto direct = (*client)->request("POST", "/v2/models/fashion/infer", msg.body, headers, 10s);
    ASSERT_TRUE(direct.has_value()) << direct.error().to_string();
    ASSERT_EQ(direct->status, 200) << direct->body;
    std::optional<size_t> hl;
    if (std::string v = direct->header("inference-header-content-length"); !v.empty()) {
      hl = std::stoul(v);
    }
    std::optional<size_t> hl2;
    if (auto v = through.raw.header("inference-header-content-length"); !v.empty()) {
      hl2 = std::stoul(std::string(v));
    }
    EXPECT_EQ(hl, hl2);
    auto a = oip::parse_infer_response(through.raw.body, hl2);
    auto d = oip::parse_infer_response(direct->body, hl);
    ASSERT_TRUE(a.has_value()) << a.error().to_string();
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    ASSERT_EQ(a->size(), 1u);
    EXPECT_EQ((*a)[0].shape, (std::vector<int64_t>{2, 10}));
    EXPECT_EQ((*a)[0].to_floats(), (*d)[0].to_floats());
  }
  Reply bad = infer(id, member1_,
                    R"({"inputs":[{"name":"nope","datatype":"FP32","shape":[1],"data":[1]}]})");
  EXPECT_EQ(bad.status, 400) << bad;
  EXPECT_FALSE(bad.oip_error().empty());
}

TEST_F(EndpointsTest, RealReplicaStoppedUnderLoadLosesNoRequest) {
  Json b = basic();
  b["min_replicas"] = 2;
  b["max_replicas"] = 2;
  std::string id = create_ok(b);
  reconcile();
  reconcile();
  ASSERT_EQ(show(id, member1_).body["endpoint"]["status"], "ready");
  std::vector<float> pixels(784, 0.5f);
  Tensor input = Tensor::fp32("input", {1, 1, 28, 28}, pixels);
  oip::EncodedMessage msg = oip::encode_infer_request(std::span<const Tensor>(&input, 1), false);
  std::atomic<int> failures{0};
  std::atomic<int> done{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 15; ++i) {
        Reply r = infer(id, member1_, msg.body);
        if (r.status != 200) ++failures;
        ++done;
      }
    });
  }
  while (done.load() < 10) std::this_thread::sleep_for(1ms);
  backend_->stop_serving(backend_->ids().front());  // mid-run, unknown to the controller
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(done.load(), 60);
}
#endif

}  // namespace
}  // namespace concord::inference::endpoints

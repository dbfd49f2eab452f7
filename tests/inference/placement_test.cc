// Inference replicas as compute servers, on a real store with the real compute service and its
// agent routes: model versions served to agents as images (ModelArtifactCatalog), service
// servers placed only on hosts offering the inference driver, and the replica backend's phases
// driven by agent reports (running with a port, process exited, host down, deleted).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "agent_test_util.h"
#include "base/json.h"
#include "compute/driver/inference_keys.h"
#include "compute/driver/util.h"
#include "compute/service/compute_service.h"
#include "compute/service/service_servers.h"
#include "inference/placement/compute_replicas.h"
#include "inference/placement/model_artifacts.h"
#include "nlohmann/json.hpp"

namespace concord::inference::placement {
namespace {

using compute::agent_testing::MemoryImages;
using compute::agent_testing::Reply;
using endpoints::ReplicaPhase;
namespace keys = compute::driver::inference_keys;

constexpr const char* kAgentKey = "test-agent-key-0123456789abcdef";
constexpr const char* kServiceProject = "svc-project";
constexpr const char* kServiceUser = "svc-user";
constexpr const char* kModelId = "7d6b0e4c-2f57-4c1e-9a55-0d0c3a4e8f11";
const std::string kFixture = std::string(CONCORD_MODEL_FIXTURE_DIR) + "/fashion_mnist_cnn.onnx";

class PlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level("error");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, false,
        {identity::migrations(), compute::migrations(), usage::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);

    // The registry's content-addressed layout: <dir>/sha256/ab/cd/<64 hex>.
    auto digest = compute::driver::sha256_file(kFixture);
    ASSERT_TRUE(digest);
    sha256_ = *digest;
    blob_ = dir_.path() + "/blobs/sha256/" + sha256_.substr(0, 2) + "/" + sha256_.substr(2, 2) +
            "/" + sha256_;
    std::filesystem::create_directories(std::filesystem::path(blob_).parent_path());
    std::filesystem::copy_file(kFixture, blob_);
    size_ = static_cast<int64_t>(std::filesystem::file_size(blob_));

    glance_.add({"11111111-1111-4111-8111-111111111111",
                 "busybox",
                 "active",
                 "raw",
                 "docker",
                 5,
                 "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                 0,
                 0,
                 {}},
                "hello");
    catalog_ = std::make_unique<ModelArtifactCatalog>(
        glance_, [this](std::string_view model, int64_t version) -> Result<std::string> {
          ++lookups_;
          if (model == kModelId && version == 1) return blob_;
          return fail(Code::kNotFound, "no such model version");
        });

    options_.agent_key = kAgentKey;
    options_.down_after = std::chrono::milliseconds(10000);
    auto svc = compute::ComputeService::create(
        compute::ComputeContext{*store_, clock_, *identity_, *catalog_, options_});
    ASSERT_TRUE(svc.has_value()) << svc.error().to_string();
    compute_ = std::move(*svc);
    router_.mount("/agent", compute_->agent_routes(), http::keystone_style_error);
    ctx_ = std::make_unique<compute::ComputeContext>(
        compute::ComputeContext{*store_, clock_, *identity_, *catalog_, options_});
    backend_ = std::make_unique<ComputeReplicaBackend>(
        *ctx_, ComputeReplicaOptions{.service_project_id = kServiceProject,
                                     .service_user_id = kServiceUser});
  }

  Reply call(http::Method method, const std::string& path, const Json& body,
             const std::string& host) {
    http::Request req;
    req.method = method;
    req.target = "/agent" + path;
    req.body = body.is_null() ? "" : dump_json(body);
    req.base_url = "http://localhost:8080";
    req.request_id = "req-placement-test";
    if (!req.body.empty()) req.headers.push_back({"content-type", "application/json"});
    req.headers.push_back(
        {"x-concord-agent", host + ":" + compute::agent_credential(kAgentKey, host)});
    std::string route;
    Reply r;
    r.raw = router_.dispatch(req, route);
    r.status = r.raw.status;
    if (!r.raw.body.empty()) {
      if (auto parsed = parse_json(r.raw.body)) r.body = std::move(*parsed);
    }
    return r;
  }

  void register_host(const std::string& host, const std::vector<std::string>& drivers,
                     int64_t vcpus = 8) {
    Json body = {{"availability_zone", "nova"},
                 {"capacity", {{"vcpus", vcpus}, {"ram_mb", 8192}, {"disk_gb", 100}}},
                 {"drivers", drivers},
                 {"kvm", false},
                 {"accel", "process"},
                 {"traits", Json::object()},
                 {"version", "test"}};
    Reply r = call(http::Method::kPut, "/v1/hosts/" + host, body, host);
    ASSERT_EQ(r.status, 200) << r;
  }

  Reply report(const std::string& host, const Json& instances) {
    return call(http::Method::kPost, "/v1/hosts/" + host + "/report",
                Json{{"instances", instances}}, host);
  }

  endpoints::ReplicaSpec spec(const std::string& endpoint = "ep-1") {
    endpoints::ReplicaSpec s;
    s.endpoint_id = endpoint;
    s.project_id = "tenant-1";
    s.name = "fashion-1";
    s.model_id = kModelId;
    s.model_version = 1;
    s.model_name = "fashion";
    s.vcpus = 2;
    s.memory_mb = 1024;
    s.batching.max_batch_size = 4;
    s.batching.max_queue_delay = std::chrono::microseconds(1500);
    s.split = true;
    s.replica_key = "k-secret";
    return s;
  }

  std::vector<endpoints::ReplicaInfo> replicas() {
    auto list = backend_->list();
    EXPECT_TRUE(list) << list.error().to_string();
    return list ? *list : std::vector<endpoints::ReplicaInfo>{};
  }

  std::vector<compute::ServiceServer> servers() {
    auto list = compute::list_service_servers(*ctx_, kServiceProject);
    EXPECT_TRUE(list) << list.error().to_string();
    return list ? *list : std::vector<compute::ServiceServer>{};
  }

  ::concord::testing::TempDir dir_{"concord-placement"};
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  MemoryImages glance_;
  std::unique_ptr<ModelArtifactCatalog> catalog_;
  int lookups_ = 0;
  compute::ComputeOptions options_;
  std::unique_ptr<compute::ComputeService> compute_;
  http::Router router_;
  std::unique_ptr<compute::ComputeContext> ctx_;
  std::unique_ptr<ComputeReplicaBackend> backend_;
  std::string sha256_, blob_;
  int64_t size_ = 0;
};

TEST(ArtifactIdTest, RoundTripsAndRejectsOtherIds) {
  EXPECT_EQ(artifact_id(kModelId, 3), std::string("model-") + kModelId + "-v3");
  auto parsed = parse_artifact_id(artifact_id(kModelId, 12));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->first, kModelId);
  EXPECT_EQ(parsed->second, 12);
  for (const char* bad : {"11111111-1111-4111-8111-111111111111", "model-", "model--v1",
                          "model-abc-v0", "model-abc-v", "model-abc-v1x", "model-abc"}) {
    EXPECT_FALSE(parse_artifact_id(bad)) << bad;
  }
}

TEST_F(PlacementTest, ArtifactCatalogServesModelVersionsToAgentsOnly) {
  const std::string id = artifact_id(kModelId, 1);
  auto info = catalog_->get_any(id);
  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->id, id);
  EXPECT_EQ(info->status, "active");
  EXPECT_EQ(info->disk_format, "onnx");
  EXPECT_EQ(info->container_format, "bare");
  EXPECT_EQ(info->sha256, sha256_);
  EXPECT_EQ(info->size, size_);

  auto dl = catalog_->download(id);
  ASSERT_TRUE(dl);
  EXPECT_EQ(dl->status, 200);
  EXPECT_EQ(dl->body_file, blob_);
  EXPECT_EQ(dl->header("content-type"), "application/octet-stream");

  auto missing = catalog_->get_any(artifact_id(kModelId, 2));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  auto missing_dl = catalog_->download(artifact_id(kModelId, 2));
  ASSERT_FALSE(missing_dl);
  EXPECT_EQ(missing_dl.error().code(), Code::kNotFound);

  // Users cannot boot a model artifact through Nova.
  identity::AuthContext caller;
  auto user_view = catalog_->get(id, caller);
  ASSERT_FALSE(user_view);
  EXPECT_EQ(user_view.error().code(), Code::kNotFound);

  // Everything else is the wrapped catalog's, without a registry lookup.
  int before = lookups_;
  auto glance = catalog_->get_any("11111111-1111-4111-8111-111111111111");
  ASSERT_TRUE(glance);
  EXPECT_EQ(glance->disk_format, "raw");
  auto glance_dl = catalog_->download("11111111-1111-4111-8111-111111111111");
  ASSERT_TRUE(glance_dl);
  EXPECT_EQ(glance_dl->body, "hello");
  EXPECT_EQ(lookups_, before);
}

TEST_F(PlacementTest, ServiceServerIsPlacedOnlyOnAnInferenceHost) {
  register_host("h-container", {"container"}, 64);
  register_host("h-inference", {"inference"}, 8);

  ASSERT_TRUE(backend_->ensure("replica-1", spec()));
  auto list = servers();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id, "replica-1");
  EXPECT_EQ(list[0].host, "h-inference");
  EXPECT_EQ(list[0].status, "BUILD");
  EXPECT_EQ(list[0].metadata.at(std::string(keys::kName)), "fashion");
  EXPECT_EQ(list[0].metadata.at(std::string(keys::kEndpoint)), "ep-1");
  EXPECT_EQ(list[0].metadata.at(std::string(keys::kMaxQueueDelayUs)), "1500");
  EXPECT_EQ(list[0].metadata.at(std::string(keys::kSplit)), "true");

  // Idempotent per id: a re-issued ensure neither duplicates nor moves it.
  ASSERT_TRUE(backend_->ensure("replica-1", spec()));
  EXPECT_EQ(servers().size(), 1u);

  // The claim is the replica's size.
  auto claims = [&] {
    store::Rows rows;
    EXPECT_TRUE(store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          rows, tx.query("SELECT host, vcpus, ram_mb FROM compute_allocations WHERE server_id = ?",
                         {std::string("replica-1")}));
      return ok();
    }));
    return rows;
  }();
  ASSERT_EQ(claims.size(), 1u);
  EXPECT_EQ(claims[0].text(0), "h-inference");
  EXPECT_EQ(claims[0].integer(1), 2);
  EXPECT_EQ(claims[0].integer(2), 1024);

  // What the inference host's agent receives: the model as an "onnx" image it can fetch by id
  // and verify by sha256, and the settings in meta_data_json's "meta".
  Reply a = call(http::Method::kGet, "/v1/hosts/h-inference/assignments", nullptr, "h-inference");
  ASSERT_EQ(a.status, 200) << a;
  ASSERT_EQ(a.body["instances"].size(), 1u) << a;
  const Json& inst = a.body["instances"][0];
  EXPECT_EQ(inst["driver"], "inference");
  EXPECT_EQ(inst["image"]["id"], artifact_id(kModelId, 1));
  EXPECT_EQ(inst["image"]["sha256"], sha256_);
  EXPECT_EQ(inst["image"]["disk_format"], "onnx");
  auto md = parse_json(inst["guest"]["meta_data_json"].get<std::string>());
  ASSERT_TRUE(md);
  EXPECT_EQ((*md)["meta"][std::string(keys::kKey)], "k-secret");
  EXPECT_EQ((*md)["meta"][std::string(keys::kVersion)], "1");
  Reply other =
      call(http::Method::kGet, "/v1/hosts/h-container/assignments", nullptr, "h-container");
  ASSERT_EQ(other.status, 200);
  EXPECT_TRUE(other.body["instances"].empty());

  // The agent's download path serves the blob.
  Reply file = call(http::Method::kGet, "/v1/images/" + artifact_id(kModelId, 1) + "/file", nullptr,
                    "h-inference");
  ASSERT_EQ(file.status, 200);
  EXPECT_EQ(file.raw.body_file, blob_);
}

TEST_F(PlacementTest, NoInferenceHostIsResourceExhaustedForTheBackend) {
  register_host("h-container", {"container"}, 64);
  Status st = backend_->ensure("replica-1", spec());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kResourceExhausted);
  EXPECT_NE(st.error().message().find("No valid host was found"), std::string::npos)
      << st.error().message();
  EXPECT_TRUE(servers().empty());  // nothing recorded: the controller asks again later
  EXPECT_TRUE(replicas().empty());

  // Once an inference host registers, the same id is placed.
  register_host("h-inference", {"inference"});
  ASSERT_TRUE(backend_->ensure("replica-1", spec()));
  ASSERT_EQ(servers().size(), 1u);
  EXPECT_EQ(servers()[0].host, "h-inference");
}

TEST_F(PlacementTest, UnplacedServiceServerIsRecordedInErrorWithNovasFault) {
  register_host("h-inference", {"inference"});
  compute::ServiceServerRequest req;
  req.id = "svc-1";
  req.project_id = kServiceProject;
  req.user_id = kServiceUser;
  req.name = "big";
  req.driver = "inference";
  req.image_id = artifact_id(kModelId, 1);
  req.vcpus = 1;
  req.ram_mb = 1 << 20;  // 1 TiB: no host has it
  req.metadata = {{std::string(keys::kEndpoint), "ep-9"}};
  ASSERT_TRUE(compute::create_service_server(*ctx_, req));
  auto list = servers();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].status, "ERROR");
  EXPECT_TRUE(list[0].host.empty());
  EXPECT_NE(list[0].fault.find("No valid host was found"), std::string::npos) << list[0].fault;
  EXPECT_NE(list[0].fault.find("RAM"), std::string::npos) << list[0].fault;
  // The backend lists it (it carries an endpoint id) as failed, with the fault.
  auto r = replicas();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, ReplicaPhase::kFailed);
  EXPECT_EQ(r[0].fault, list[0].fault);

  // Re-issued: nothing changes. An unknown image is kInvalidArgument.
  ASSERT_TRUE(compute::create_service_server(*ctx_, req));
  EXPECT_EQ(servers().size(), 1u);
  compute::ServiceServerRequest bad = req;
  bad.id = "svc-2";
  bad.image_id = "model-nope-v1";
  Status st = compute::create_service_server(*ctx_, bad);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  // Never placed: deleting finishes at once, and the id cannot be reused.
  ASSERT_TRUE(compute::delete_service_server(*ctx_, "svc-1"));
  EXPECT_TRUE(servers().empty());
  st = compute::create_service_server(*ctx_, req);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(compute::delete_service_server(*ctx_, "no-such-server"));
}

TEST_F(PlacementTest, ReplicaPhasesFollowTheAgentsReports) {
  register_host("h-inference", {"inference"});
  ASSERT_TRUE(backend_->ensure("replica-1", spec()));
  auto r = replicas();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, ReplicaPhase::kPending);
  EXPECT_EQ(r[0].endpoint_id, "ep-1");
  EXPECT_EQ(r[0].host, "h-inference");

  // Running but not listening yet: still pending.
  Reply rep = report("h-inference", Json::array({{{"id", "replica-1"},
                                                  {"generation", 1},
                                                  {"state", "present"},
                                                  {"power_state", 1},
                                                  {"addresses", Json::array()}}}));
  ASSERT_EQ(rep.status, 200) << rep;
  r = replicas();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, ReplicaPhase::kPending);

  rep = report("h-inference", Json::array({{{"id", "replica-1"},
                                            {"generation", 1},
                                            {"state", "present"},
                                            {"power_state", 1},
                                            {"addresses", Json::array({{{"network", "inference"},
                                                                        {"addr", "127.0.0.1:34567"},
                                                                        {"version", 4}}})}}}));
  ASSERT_EQ(rep.status, 200) << rep;
  r = replicas();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, ReplicaPhase::kRunning);
  EXPECT_EQ(r[0].url, "http://127.0.0.1:34567");

  // The process exited on its own: the server is stopped (power sync) and the replica failed.
  rep = report("h-inference", Json::array({{{"id", "replica-1"},
                                            {"generation", 1},
                                            {"state", "present"},
                                            {"power_state", 4},
                                            {"addresses", Json::array()}}}));
  ASSERT_EQ(rep.status, 200) << rep;
  EXPECT_EQ(servers()[0].status, "SHUTOFF");
  r = replicas();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, ReplicaPhase::kFailed);
  EXPECT_NE(r[0].fault.find("stopped"), std::string::npos) << r[0].fault;

  // Destroy goes through the agent (its host is up): not listed any more, and the row is
  // deleted once the agent reports the instance gone.
  ASSERT_TRUE(backend_->destroy("replica-1"));
  EXPECT_TRUE(replicas().empty());
  ASSERT_EQ(servers().size(), 1u);
  EXPECT_EQ(servers()[0].task_state.value_or(""), "deleting");
  ASSERT_TRUE(backend_->destroy("replica-1"));  // again: fine
  rep = report("h-inference",
               Json::array({{{"id", "replica-1"}, {"generation", 2}, {"state", "absent"}}}));
  ASSERT_EQ(rep.status, 200) << rep;
  EXPECT_TRUE(servers().empty());
  ASSERT_TRUE(backend_->destroy("replica-1"));  // gone: fine
}

TEST_F(PlacementTest, ReplicaOnADownHostIsFailed) {
  register_host("h-inference", {"inference"});
  ASSERT_TRUE(backend_->ensure("replica-1", spec()));
  clock_.advance(std::chrono::seconds(60));  // no heartbeat for longer than down_after
  auto r = replicas();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].phase, ReplicaPhase::kFailed);
  EXPECT_NE(r[0].fault.find("h-inference is down"), std::string::npos) << r[0].fault;
  // And no new replica goes there.
  Status st = backend_->ensure("replica-2", spec());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kResourceExhausted);
  ASSERT_EQ(servers().size(), 1u);
  // A down host's replica is deleted locally.
  ASSERT_TRUE(backend_->destroy("replica-1"));
  EXPECT_TRUE(servers().empty());
}

TEST_F(PlacementTest, BadSpecsAndIdsAreInvalidArgument) {
  register_host("h-inference", {"inference"});
  auto expect_invalid = [&](const std::string& id, const endpoints::ReplicaSpec& s,
                            const char* what) {
    Status st = backend_->ensure(id, s);
    ASSERT_FALSE(st) << what;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << what << ": " << st.error().message();
  };
  endpoints::ReplicaSpec no_name = spec();
  no_name.model_name.clear();
  expect_invalid("r1", no_name, "model name");
  endpoints::ReplicaSpec v0 = spec();
  v0.model_version = 0;
  expect_invalid("r1", v0, "version");
  endpoints::ReplicaSpec tiny = spec();
  tiny.vcpus = 0;
  expect_invalid("r1", tiny, "vcpus");
  expect_invalid("../r1", spec(), "id");
  endpoints::ReplicaSpec unknown = spec();
  unknown.model_version = 9;  // no such version: the image does not exist
  expect_invalid("r1", unknown, "unknown model version");
  EXPECT_TRUE(servers().empty());
}

}  // namespace
}  // namespace concord::inference::placement

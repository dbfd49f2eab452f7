// End to end: the replica backend creates a service server, the scheduler places it on the one
// host whose agent runs the inference driver, that in-process Agent fetches the model through
// the agent image path (ModelArtifactCatalog over the fixture's blob), starts the REAL
// `concord inference-replica`, and reports it; the backend then lists it running with a URL
// that answers /v2/health/ready. Killing the process makes the replica failed; destroy removes
// the process and the server.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "compute/driver/driver.h"
#include "compute/driver/util.h"
#include "compute/service/compute_service.h"
#include "compute/service/model.h"
#include "compute/service/service_servers.h"
#include "eventually.h"
#include "http/client.h"
#include "http/router.h"
#include "http/server.h"
#include "inference/placement/compute_replicas.h"
#include "inference/placement/model_artifacts.h"
#include "nlohmann/json.hpp"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

namespace concord::inference::placement {
namespace {

using endpoints::ReplicaPhase;

constexpr const char* kAgentKey = "e2e-agent-key";
constexpr const char* kModelId = "0b9f7a34-51c2-4b8e-9d0e-2a6c1f3e4d55";
constexpr const char* kKey = "e2e-replica-key";
const std::string kFixture = std::string(CONCORD_MODEL_FIXTURE_DIR) + "/fashion_mnist_cnn.onnx";

// No Glance in this test: only model artifacts exist.
class NoImages final : public compute::ImageCatalog {
 public:
  Result<compute::ImageInfo> get(std::string_view, const identity::AuthContext&) const override {
    return fail(Code::kNotFound, "no images");
  }
  Result<compute::ImageInfo> get_any(std::string_view) const override {
    return fail(Code::kNotFound, "no images");
  }
  Result<http::Response> download(std::string_view) const override {
    return fail(Code::kNotFound, "no images");
  }
};

using test_support::eventually;

class PlacementE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level("error");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, false,
        {identity::migrations(), compute::migrations(), usage::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);

    auto digest = compute::driver::sha256_file(kFixture);
    ASSERT_TRUE(digest);
    blob_ = dir_.path() + "/blobs/sha256/" + digest->substr(0, 2) + "/" + digest->substr(2, 2) +
            "/" + *digest;
    std::filesystem::create_directories(std::filesystem::path(blob_).parent_path());
    std::filesystem::copy_file(kFixture, blob_);
    catalog_ = std::make_unique<ModelArtifactCatalog>(
        glance_, [this](std::string_view model, int64_t version) -> Result<std::string> {
          if (model == kModelId && version == 1) return blob_;
          return fail(Code::kNotFound, "no such model version");
        });

    compute::ComputeOptions options;
    options.agent_key = kAgentKey;
    options.heartbeat_interval = std::chrono::milliseconds(200);
    options.assignments_wait = std::chrono::milliseconds(2000);
    auto svc = compute::ComputeService::create(
        compute::ComputeContext{*store_, clock_, *identity_, *catalog_, options});
    ASSERT_TRUE(svc.has_value()) << svc.error().to_string();
    compute_ = std::move(*svc);
    auto router = std::make_shared<http::Router>();
    router->mount("/agent", compute_->agent_routes(), http::keystone_style_error);
    http::ServerOptions so;
    so.threads = 4;
    server_ = std::make_unique<http::Server>(so, router, std::make_shared<http::Registry>());
    auto started = server_->start();
    ASSERT_TRUE(started.has_value()) << started.error().to_string();

    ctx_ = std::make_unique<compute::ComputeContext>(
        compute::ComputeContext{*store_, clock_, *identity_, *catalog_, options});
    backend_ = std::make_unique<ComputeReplicaBackend>(
        *ctx_, ComputeReplicaOptions{.service_project_id = "svc", .service_user_id = "svc-user"});

    cgroup_parent_ = "concord-inference-e2e-" + new_hex_id().substr(0, 12);
    start_agent();
    ASSERT_TRUE(eventually([&] { return host_registered(); }));
  }

  // An agent for host h-inf on its state dir (a second call after stop() is a restarted agent).
  void start_agent() {
    agent::AgentOptions o;
    o.server_url = "http://127.0.0.1:" + std::to_string(server_->port());
    o.host = "h-inf";
    o.credential = compute::agent_credential(kAgentKey, o.host);
    o.state_dir = dir_.path() + "/agent";
    o.heartbeat_interval = std::chrono::milliseconds(200);
    o.poll_wait = std::chrono::milliseconds(2000);
    o.resync_interval = std::chrono::milliseconds(500);
    o.stop_grace = std::chrono::milliseconds(5000);
    o.vcpus = 4;
    o.ram_mb = 4096;
    o.disk_gb = 20;
    o.drivers = {"inference"};
    o.driver_options.replica_command = {CONCORD_BINARY, "inference-replica"};
    o.driver_options.cgroup_parent = cgroup_parent_;
    auto a = agent::Agent::create(o);
    ASSERT_TRUE(a.has_value()) << a.error().to_string();
    agent_ = std::move(*a);
    ASSERT_TRUE(agent_->start().has_value());
  }

  void TearDown() override {
    // Leave no replica behind: destroy what the agent's driver still has.
    if (agent_) agent_->stop();
    agent_.reset();
    compute::driver::DriverOptions d;
    d.state_dir = dir_.path() + "/agent";
    d.cgroup_parent = cgroup_parent_;
    if (auto drv = compute::driver::make_inference_driver(d)) {
      if (auto ids = (*drv)->list()) {
        for (const auto& id : *ids) (void)(*drv)->destroy(id);
      }
    }
    for (const char* c : {"cpu", "memory"}) {
      std::error_code ec;
      std::filesystem::remove(std::string("/sys/fs/cgroup/") + c + "/" + cgroup_parent_, ec);
    }
    if (server_) server_->stop();
    server_.reset();
    compute_.reset();
    identity_.reset();
    store_.reset();
  }

  bool host_registered() {
    bool found = false;
    (void)store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows, tx.query("SELECT drivers FROM compute_hosts WHERE name = 'h-inf'", {}));
      found = !rows.empty() && rows[0].text(0).find("inference") != std::string::npos;
      return ok();
    });
    return found;
  }

  std::optional<endpoints::ReplicaInfo> replica(const std::string& id) {
    auto list = backend_->list();
    if (!list) return std::nullopt;
    for (auto& r : *list) {
      if (r.id == id) return r;
    }
    return std::nullopt;
  }

  static int ready(const std::string& url) {
    auto client = http::HttpClient::create(url);
    if (!client) return -1;
    auto reply =
        (*client)->request("GET", "/v2/health/ready", "", {{"x-concord-replica-key", kKey}},
                           std::chrono::milliseconds(10000));
    return reply ? reply->status : -1;
  }

  std::string pid_of(const std::string& id) {
    auto text = compute::driver::read_file(dir_.path() + "/agent/inference/" + id + "/replica.pid");
    return text ? *text : "";
  }

  ::concord::testing::TempDir dir_{"concord-placement-e2e"};
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  NoImages glance_;
  std::unique_ptr<ModelArtifactCatalog> catalog_;
  std::unique_ptr<compute::ComputeService> compute_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<compute::ComputeContext> ctx_;
  std::unique_ptr<ComputeReplicaBackend> backend_;
  std::unique_ptr<agent::Agent> agent_;
  std::string blob_, cgroup_parent_;
};

TEST_F(PlacementE2eTest, ReplicaRunsOnTheAgentServesAndIsReplacedWhenItDies) {
  endpoints::ReplicaSpec spec;
  spec.endpoint_id = "ep-e2e";
  spec.project_id = "tenant";
  spec.name = "fashion-e2e-1";
  spec.model_id = kModelId;
  spec.model_version = 1;
  spec.model_name = "fashion";
  spec.vcpus = 1;
  spec.memory_mb = 512;
  spec.replica_key = kKey;
  const std::string id = new_uuid();
  ASSERT_TRUE(backend_->ensure(id, spec));

  std::optional<endpoints::ReplicaInfo> r;
  ASSERT_TRUE(eventually([&] {
    r = replica(id);
    return r && r->phase == ReplicaPhase::kRunning;
  })) << (r ? std::string(r->fault) : "not listed");
  EXPECT_EQ(r->host, "h-inf");
  EXPECT_EQ(r->endpoint_id, "ep-e2e");
  ASSERT_TRUE(r->url.starts_with("http://127.0.0.1:")) << r->url;
  EXPECT_TRUE(eventually([&] { return ready(r->url) == 200; })) << r->url;
  // The agent cached the model under its digest, as for any image.
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/agent/blobs/" +
                                      std::filesystem::path(blob_).filename().string()));

  // The process dies behind everyone's back: the server is stopped, the replica failed.
  const std::string pid = pid_of(id);
  ASSERT_FALSE(pid.empty());
  ASSERT_EQ(::kill(std::atoi(pid.c_str()), SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    r = replica(id);
    return r && r->phase == ReplicaPhase::kFailed;
  }));
  EXPECT_NE(r->fault.find("stopped"), std::string::npos) << r->fault;

  // What the controller then does: destroy it. The agent removes the instance; the row goes.
  ASSERT_TRUE(backend_->destroy(id));
  EXPECT_FALSE(replica(id));
  EXPECT_TRUE(eventually([&] {
    auto servers = compute::list_service_servers(*ctx_, "svc");
    return servers && servers->empty() &&
           !std::filesystem::exists(dir_.path() + "/agent/inference/" + id);
  }));
}

TEST_F(PlacementE2eTest, RestartedAgentAdoptsTheRunningReplica) {
  endpoints::ReplicaSpec spec;
  spec.endpoint_id = "ep-adopt";
  spec.project_id = "tenant";
  spec.model_id = kModelId;
  spec.model_version = 1;
  spec.model_name = "fashion";
  spec.replica_key = kKey;
  const std::string id = new_uuid();
  ASSERT_TRUE(backend_->ensure(id, spec));
  std::optional<endpoints::ReplicaInfo> r;
  ASSERT_TRUE(eventually([&] {
    r = replica(id);
    return r && r->phase == ReplicaPhase::kRunning;
  }));
  const std::string url = r->url;
  const std::string pid = pid_of(id);

  // The agent goes away (upgrade, crash): the replica keeps serving.
  agent_->stop();
  agent_.reset();
  EXPECT_TRUE(compute::driver::process_alive(std::atoi(pid.c_str())));
  EXPECT_TRUE(eventually([&] { return ready(url) == 200; }));

  // A new agent on the same state dir adopts it: same process, same URL, still running.
  start_agent();
  std::this_thread::sleep_for(std::chrono::seconds(2));  // a few report rounds
  r = replica(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->phase, ReplicaPhase::kRunning);
  EXPECT_EQ(r->url, url);
  EXPECT_EQ(pid_of(id), pid);
  EXPECT_EQ(ready(url), 200);
}

}  // namespace
}  // namespace concord::inference::placement

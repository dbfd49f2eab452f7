#pragma once
// The host agent against a real compute server: SQLite in a temp dir, the real ComputeService
// agent routes served by a real http::Server on port 0, an in-memory image catalog holding real
// bytes, and helpers that write server rows as the Nova API does. Drivers: a scriptable
// in-memory FakeDriver (hermetic tests) or the real container driver (root tests).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
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

#include "agent/agent.h"
#include "base/clock.h"
#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "compute/driver/driver.h"
#include "compute/service/compute_service.h"
#include "compute/service/context.h"
#include "compute/service/model.h"
#include "compute/service/report.h"
#include "http/router.h"
#include "http/server.h"
#include "identity/identity_service.h"
#include "store/store.h"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

namespace concord::agent::testing {

namespace driver = compute::driver;
using compute::ServerRow;

using TempDir = ::concord::testing::TempDir;

inline std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

// An in-memory driver: instances are map entries. Survives Agent objects (it stands for the
// host), counts calls, and fails an operation on demand.
class FakeDriver final : public driver::Driver {
 public:
  struct Inst {
    driver::InstanceSpec spec;
    driver::PowerState power = driver::PowerState::kNoState;
    std::string console;
    std::string detail;  // InstanceStatus::detail
    bool watch = false;  // InstanceStatus::watch
  };

  FakeDriver() = default;
  // Another kind ("database": image-less specs) for the tests of that driver's path.
  explicit FakeDriver(std::string kind) : kind_(std::move(kind)) {}

  std::string_view kind() const override { return kind_; }
  driver::Capabilities probe() override { return {true, false, "fake", "fake driver"}; }

  Status create(const driver::InstanceSpec& spec) override {
    std::lock_guard lock(mu_);
    ++calls_["create"];
    CONCORD_RETURN_IF_ERROR(injected("create"));
    Inst& i = instances_[spec.id];
    i.spec = spec;
    i.power = driver::PowerState::kRunning;
    i.console = "concord-guest: hello from " + spec.hostname + "\n";
    return ok();
  }
  Status start(std::string_view id) override {
    return set_power(id, "start", driver::PowerState::kRunning);
  }
  Status stop(std::string_view id, std::chrono::milliseconds) override {
    return set_power(id, "stop", driver::PowerState::kShutdown);
  }
  Status reboot(std::string_view id, bool) override {
    return set_power(id, "reboot", driver::PowerState::kRunning);
  }
  Status resize(const driver::InstanceSpec& spec) override {
    std::lock_guard lock(mu_);
    ++calls_["resize"];
    CONCORD_RETURN_IF_ERROR(injected("resize"));
    auto it = instances_.find(spec.id);
    if (it == instances_.end()) return fail(Code::kNotFound, "no instance " + spec.id);
    it->second.spec.vcpus = spec.vcpus;
    it->second.spec.ram_mb = spec.ram_mb;
    return ok();
  }
  Status rebuild(const driver::InstanceSpec& spec) override {
    std::lock_guard lock(mu_);
    ++calls_["rebuild"];
    CONCORD_RETURN_IF_ERROR(injected("rebuild"));
    auto it = instances_.find(spec.id);
    if (it == instances_.end()) return fail(Code::kNotFound, "no instance " + spec.id);
    it->second.spec = spec;
    it->second.power = driver::PowerState::kRunning;
    return ok();
  }
  Status destroy(std::string_view id) override {
    std::lock_guard lock(mu_);
    ++calls_["destroy"];
    CONCORD_RETURN_IF_ERROR(injected("destroy"));
    instances_.erase(std::string(id));
    return ok();
  }
  Result<driver::InstanceStatus> status(std::string_view id) override {
    std::lock_guard lock(mu_);
    ++calls_["status"];
    driver::InstanceStatus st;
    auto it = instances_.find(std::string(id));
    if (it == instances_.end()) return st;
    st.exists = true;
    st.power = it->second.power;
    st.detail = it->second.detail;
    st.watch = it->second.watch;
    st.addresses.push_back({"private", "10.99.0.2", 4, "02:00:00:00:00:02", "fixed", {}});
    return st;
  }
  // Records the metadata each configure got (configured()).
  Status configure(const driver::InstanceSpec& spec) override {
    std::lock_guard lock(mu_);
    ++calls_["configure"];
    if (!configure_detail_.empty()) instances_[spec.id].detail = configure_detail_;
    CONCORD_RETURN_IF_ERROR(injected("configure"));
    configured_.push_back(spec.guest.meta_data_json);
    return ok();
  }
  Result<std::vector<std::string>> list() override {
    std::lock_guard lock(mu_);
    std::vector<std::string> ids;
    for (const auto& [id, i] : instances_) ids.push_back(id);
    return ids;
  }
  Result<std::string> console_log(std::string_view id, size_t) override {
    std::lock_guard lock(mu_);
    auto it = instances_.find(std::string(id));
    if (it == instances_.end()) return fail(Code::kNotFound, "no instance");
    return it->second.console;
  }

  // Test controls.
  void fail_next(const std::string& op, Error e) {
    std::lock_guard lock(mu_);
    failures_.insert_or_assign(op, std::move(e));
  }
  int calls(const std::string& op) {
    std::lock_guard lock(mu_);
    return calls_[op];
  }
  bool has(const std::string& id) {
    std::lock_guard lock(mu_);
    return instances_.contains(id);
  }
  std::optional<Inst> get(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = instances_.find(id);
    if (it == instances_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> configured() {
    std::lock_guard lock(mu_);
    return configured_;
  }
  // Each configure sets the instance's status detail to `detail` (before any injected failure),
  // as a database driver's partial progress does.
  void configure_sets_detail(std::string detail) {
    std::lock_guard lock(mu_);
    configure_detail_ = std::move(detail);
  }
  // What status() says of `id` from now on (a replica that stops streaming, say).
  void set_status(const std::string& id, std::string detail, bool watch) {
    std::lock_guard lock(mu_);
    instances_[id].detail = std::move(detail);
    instances_[id].watch = watch;
  }
  // start/stop/reboot "succeed" without effect (a guest that dies right after each start).
  void ignore_power_changes(bool on) {
    std::lock_guard lock(mu_);
    power_ignored_ = on;
  }
  // Something on the host that no desired row names, or a guest that powered itself off.
  void plant(const std::string& id, driver::PowerState power = driver::PowerState::kRunning) {
    std::lock_guard lock(mu_);
    instances_[id].spec.id = id;
    instances_[id].power = power;
  }

 private:
  Status set_power(std::string_view id, const char* op, driver::PowerState p) {
    std::lock_guard lock(mu_);
    ++calls_[op];
    CONCORD_RETURN_IF_ERROR(injected(op));
    auto it = instances_.find(std::string(id));
    if (it == instances_.end()) return fail(Code::kNotFound, "no instance " + std::string(id));
    if (!power_ignored_) it->second.power = p;
    return ok();
  }
  Status injected(const std::string& op) {
    auto it = failures_.find(op);
    if (it == failures_.end()) return ok();
    Error e = it->second;
    failures_.erase(it);
    return fail(std::move(e));
  }

  std::mutex mu_;
  std::map<std::string, Inst> instances_;
  std::map<std::string, int> calls_;
  std::map<std::string, Error> failures_;
  bool power_ignored_ = false;
  std::string kind_ = "container";
  std::vector<std::string> configured_;
  std::string configure_detail_;
};

// Every image is visible; download() answers the stored bytes.
class MemoryImages final : public compute::ImageCatalog {
 public:
  void add(compute::ImageInfo image, std::string bytes) {
    std::lock_guard lock(mu_);
    bytes_[image.id] = std::move(bytes);
    images_[image.id] = std::move(image);
  }
  Result<compute::ImageInfo> get(std::string_view id, const identity::AuthContext&) const override {
    return get_any(id);
  }
  Result<compute::ImageInfo> get_any(std::string_view id) const override {
    std::lock_guard lock(mu_);
    auto it = images_.find(std::string(id));
    if (it == images_.end()) return fail(Code::kNotFound, "Image not found");
    return it->second;
  }
  Result<http::Response> download(std::string_view id) const override {
    std::lock_guard lock(mu_);
    auto it = bytes_.find(std::string(id));
    if (it == bytes_.end()) return fail(Code::kNotFound, "Image not found");
    http::Response r;
    r.set_header("content-type", "application/octet-stream");
    r.body = it->second;
    return r;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, compute::ImageInfo> images_;
  std::map<std::string, std::string> bytes_;
};

inline constexpr const char* kImage = "11111111-1111-4111-8111-111111111111";
inline constexpr const char* kAgentKey = "agent-test-key";

// A compute server (agent routes only) on a real socket.
class AgentServerTest : public ::testing::Test {
 protected:
  // The heartbeat interval the server gives its agents.
  virtual std::chrono::milliseconds server_heartbeat() const {
    return std::chrono::milliseconds(200);
  }
  void SetUp() override {
    set_log_level("error");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, false,
        {identity::migrations(), compute::migrations(), usage::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);
    set_image(image_bytes());

    compute::ComputeOptions options;
    options.agent_key = kAgentKey;
    options.heartbeat_interval = server_heartbeat();
    options.assignments_wait = std::chrono::milliseconds(2000);
    auto svc = compute::ComputeService::create(
        compute::ComputeContext{*store_, clock_, *identity_, images_, options});
    ASSERT_TRUE(svc.has_value()) << svc.error().to_string();
    compute_ = std::move(*svc);
    auto router = std::make_shared<http::Router>();
    router->mount("/agent", compute_->agent_routes(), http::keystone_style_error);
    http::ServerOptions so;
    so.threads = 4;
    server_ = std::make_unique<http::Server>(so, router, std::make_shared<http::Registry>());
    auto started = server_->start();
    ASSERT_TRUE(started.has_value()) << started.error().to_string();
  }

  void TearDown() override {
    agent_.reset();
    if (server_) server_->stop();
    server_.reset();
    compute_.reset();
    identity_.reset();
    store_.reset();
  }

  virtual std::string image_bytes() { return "not really a rootfs, the fake driver never looks"; }

  void set_image(const std::string& bytes, const std::string& sha = "") {
    images_.add({kImage,
                 "busybox",
                 "active",
                 "raw",
                 "docker",
                 static_cast<int64_t>(bytes.size()),
                 sha.empty() ? sha256_hex(bytes) : sha,
                 0,
                 0,
                 {}},
                bytes);
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

  AgentOptions agent_options(const std::string& host = "h1") {
    AgentOptions o;
    o.server_url = url();
    o.host = host;
    o.credential = compute::agent_credential(kAgentKey, host);
    o.state_dir = dir_.path() + "/agent-" + host;
    o.heartbeat_interval = std::chrono::milliseconds(200);
    o.poll_wait = std::chrono::milliseconds(2000);
    o.resync_interval = std::chrono::milliseconds(500);
    o.stop_grace = std::chrono::milliseconds(2000);
    o.vcpus = 8;
    o.ram_mb = 8192;
    o.disk_gb = 100;
    return o;
  }

  // `resync`: the agent's full status re-check (agent_options' 500 ms when not given).
  void start_agent(std::shared_ptr<driver::Driver> d, const std::string& host = "h1",
                   std::optional<std::chrono::milliseconds> resync = std::nullopt) {
    AgentOptions o = agent_options(host);
    if (resync) o.resync_interval = *resync;
    o.injected_drivers = {std::move(d)};
    auto a = Agent::create(o);
    ASSERT_TRUE(a.has_value()) << a.error().to_string();
    agent_ = std::move(*a);
    ASSERT_TRUE(agent_->start().has_value());
  }

  int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
        .count();
  }

  // Polls `pred` until it holds or `limit` passes (a generous bound for a noisy machine; the
  // tests never depend on how fast it happens).
  static bool eventually(const std::function<bool()>& pred,
                         std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  }

  // A server row as the API writes it after placing a create on `host` (with its action).
  ServerRow insert_building(const std::string& id, const std::string& host = "h1") {
    ServerRow s;
    s.id = id;
    s.project_id = "p1";
    s.user_id = "u1";
    s.name = "vm-" + id.substr(0, 4);
    s.image_id = kImage;
    s.flavor_id = "1";
    s.flavor_json = R"({"id":"1","name":"m1.tiny","vcpus":1,"ram_mb":128,"disk_gb":1})";
    s.vcpus = 1;
    s.ram_mb = 128;
    s.disk_gb = 1;
    s.user_data = "ZWNobyBoaQ==";
    s.hostname = s.name;
    s.reservation_id = "r-1";
    s.vm_state = std::string(compute::vm::kBuilding);
    s.task_state = std::string(compute::task::kSpawning);
    s.host = host;
    s.driver = "container";
    s.spec_generation = 1;
    s.op_deadline_ms = now_ms() + 600000;
    s.created_at = s.updated_at = compute::stored_time(now_ms());
    s.created_ms = now_ms();
    auto st = store_->write([&](store::Tx& tx) -> Status {
      CONCORD_RETURN_IF_ERROR(compute::insert_server(tx, s));
      return add_action(tx, id, "create", "compute__do_build_and_run_instance");
    });
    EXPECT_TRUE(st.has_value()) << st.error().to_string();
    return s;
  }

  Status add_action(store::Tx& tx, const std::string& id, const std::string& action,
                    const std::string& event) {
    CONCORD_ASSIGN_OR_RETURN(store::Rows seq,
                             tx.query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM "
                                      "compute_instance_actions WHERE server_id = ?",
                                      {id}));
    const int64_t next = seq[0].integer(0) + 1;
    const std::string request_id = "req-" + action + "-" + std::to_string(next);
    const std::string t = compute::stored_time(now_ms());
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("INSERT INTO compute_instance_actions (server_id, request_id, action, user_id, "
                "project_id, start_time, updated_at, seq) VALUES (?, ?, ?, 'u1', 'p1', ?, ?, ?)",
                {id, request_id, action, t, t, next}));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t e, tx.exec("INSERT INTO compute_instance_action_events (server_id, request_id, "
                           "event, start_time) VALUES (?, ?, ?, ?)",
                           {id, request_id, event, t}));
    (void)n;
    (void)e;
    return ok();
  }

  // What an API action does: change the row (task + desired state, generation + 1) and record
  // the action, in one transaction.
  void api_action(const std::string& id, const std::string& action,
                  const std::function<void(ServerRow&)>& change) {
    auto st = store_->write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(ServerRow s, compute::load_server(tx, id, true));
      change(s);
      s.spec_generation += 1;
      s.op_deadline_ms = now_ms() + 300000;
      CONCORD_RETURN_IF_ERROR(compute::update_server(tx, s));
      return add_action(tx, id, action, "compute_" + action + "_instance");
    });
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }

  ServerRow load(const std::string& id) {
    ServerRow out;
    auto st = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(out, compute::load_server(tx, id, true));
      return ok();
    });
    EXPECT_TRUE(st.has_value()) << st.error().to_string();
    return out;
  }

  std::string status_of(const std::string& id) {
    ServerRow s = load(id);
    if (s.deleted) return "DELETED";
    return std::string(s.status());
  }

  // The status detail the agent last reported for `id` ("" before any).
  std::string detail_of(const std::string& id) {
    std::string out;
    auto st = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT detail FROM compute_server_details WHERE server_id = ?", {id}));
      if (!rows.empty()) out = rows[0].text(0);
      return ok();
    });
    EXPECT_TRUE(st.has_value()) << st.error().to_string();
    return out;
  }

  std::string action_result(const std::string& id, const std::string& action) {
    std::string out;
    auto st = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT e.result FROM compute_instance_action_events e JOIN "
                   "compute_instance_actions a ON a.server_id = e.server_id AND a.request_id = "
                   "e.request_id WHERE a.server_id = ? AND a.action = ? ORDER BY a.seq DESC "
                   "LIMIT 1",
                   {id, action}));
      if (!rows.empty()) out = rows[0].text(0);
      return ok();
    });
    EXPECT_TRUE(st.has_value());
    return out;
  }

  TempDir dir_{"concord-agent"};
  RealClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  MemoryImages images_;
  std::unique_ptr<compute::ComputeService> compute_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<Agent> agent_;
};

}  // namespace concord::agent::testing

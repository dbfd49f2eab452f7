#pragma once
// A hermetic compute API for the servers tests: SQLite in a temp dir (compute, identity and usage
// schemas), a real bootstrapped IdentityService, a FakeClock, an in-memory image catalog with a
// container image and a VM image, hosts inserted as an agent would register them, and the Nova
// routes called directly through a Router (no sockets).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "compute/service/compute_service.h"
#include "compute/service/context.h"
#include "compute/service/flavors.h"
#include "compute/service/model.h"
#include "http/router.h"
#include "identity/identity_service.h"
#include "store/store.h"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

namespace concord::compute::testing {

using TempDir = ::concord::testing::TempDir;

struct Reply {
  int status = 0;
  Json body;
  http::Response raw;
  std::string header(std::string_view name) const { return std::string(raw.header(name)); }
  // The Nova fault message ({"<name>": {"code", "message"}}), or "".
  std::string message() const {
    if (body.is_object() && body.size() == 1) {
      const Json& inner = body.begin().value();
      if (inner.is_object() && inner.contains("message") && inner["message"].is_string())
        return inner["message"].get<std::string>();
    }
    return {};
  }
};

inline std::ostream& operator<<(std::ostream& os, const Reply& r) {
  return os << r.status << " " << r.raw.body;
}

// Images: public ones visible to all; private ones to their owner project (and admins).
class FakeImages final : public ImageCatalog {
 public:
  void add(ImageInfo image, std::string owner = {}) {
    owners_[image.id] = std::move(owner);
    images_[image.id] = std::move(image);
  }
  Result<ImageInfo> get(std::string_view id, const identity::AuthContext& caller) const override {
    auto it = images_.find(std::string(id));
    if (it == images_.end()) return fail(Code::kNotFound, "no image");
    const std::string& owner = owners_.at(it->first);
    if (!owner.empty() && owner != caller.project_id && !caller.is_admin())
      return fail(Code::kNotFound, "no image");
    return it->second;
  }
  Result<ImageInfo> get_any(std::string_view id) const override {
    auto it = images_.find(std::string(id));
    if (it == images_.end()) return fail(Code::kNotFound, "no image");
    return it->second;
  }
  Result<http::Response> download(std::string_view) const override {
    return fail(Code::kNotFound, "no bytes in tests");
  }

 private:
  std::map<std::string, ImageInfo> images_;
  std::map<std::string, std::string> owners_;
};

inline constexpr const char* kContainerImage = "11111111-1111-4111-8111-111111111111";
inline constexpr const char* kVmImage = "22222222-2222-4222-8222-222222222222";
inline constexpr const char* kQueuedImage = "33333333-3333-4333-8333-333333333333";
inline constexpr const char* kBigImage = "44444444-4444-4444-8444-444444444444";

class ServersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level("error");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, false,
        {identity::migrations(), compute::migrations(), usage::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);
    auto boot = identity_->bootstrap({"admin-secret", "http://localhost:5000", ""});
    ASSERT_TRUE(boot.has_value()) << boot.error().to_string();
    boot_ = *boot;
    router_.mount("/identity", identity_->routes(), http::keystone_style_error);

    images_.add({kContainerImage, "busybox", "active", "raw", "docker", 1 << 20, "aa", 0, 0, {}});
    images_.add({kVmImage,
                 "cirros",
                 "active",
                 "qcow2",
                 "bare",
                 16 << 20,
                 "bb",
                 0,
                 0,
                 {{"hypervisor_type", "qemu"}}});
    images_.add({kQueuedImage, "queued", "queued", "raw", "bare", 0, "", 0, 0, {}});
    images_.add({kBigImage, "big", "active", "qcow2", "bare", 1 << 20, "cc", 50, 4096, {}});
    ASSERT_TRUE(ensure_default_flavors(*store_, clock_).has_value());

    ComputeOptions options;
    customize(options);
    auto svc =
        ComputeService::create(ComputeContext{*store_, clock_, *identity_, images_, options});
    ASSERT_TRUE(svc.has_value()) << svc.error().to_string();
    compute_ = std::move(*svc);
    router_.mount("/compute", compute_->routes(),
                  [](int status, std::string_view m) { return ComputeService::error(status, m); });

    p1_ = create_project("p1");
    p2_ = create_project("p2");
    alice_id_ = create_user("alice", p1_, boot_.member_role_id);
    bob_id_ = create_user("bob", p2_, boot_.member_role_id);
    create_user("carol", p1_, boot_.reader_role_id);
    alice_ = token("alice", "p1");
    bob_ = token("bob", "p2");
    carol_ = token("carol", "p1");
    admin_ = token("admin", "admin", "admin-secret");
  }

  void TearDown() override {
    compute_.reset();
    identity_.reset();
    store_.reset();
  }

  virtual void customize(ComputeOptions&) {}

  Reply raw_call(http::Method method, const std::string& target, const std::string& body,
                 const std::vector<std::pair<std::string, std::string>>& headers) {
    http::Request req;
    req.method = method;
    req.target = target;
    req.body = body;
    req.base_url = "http://localhost:8774";
    req.request_id = "req-" + std::to_string(++request_counter_);
    bool typed = false;
    for (const auto& h : headers) typed = typed || h.first == "content-type";
    if (!body.empty() && !typed) req.headers.push_back({"content-type", "application/json"});
    for (const auto& [k, v] : headers) req.headers.push_back({k, v});
    std::string route;
    Reply r;
    r.raw = router_.dispatch(req, route);
    r.status = r.raw.status;
    if (!r.raw.body.empty()) {
      auto parsed = parse_json(r.raw.body);
      if (parsed) r.body = std::move(*parsed);
    }
    return r;
  }

  // A Nova call under /compute/v2.1 with a token and a microversion ("" = none sent).
  Reply nova(http::Method method, const std::string& path, const std::string& token,
             const Json& body = nullptr, const std::string& version = "") {
    std::vector<std::pair<std::string, std::string>> h;
    if (!token.empty()) h.push_back({"x-auth-token", token});
    if (!version.empty()) h.push_back({"x-openstack-nova-api-version", version});
    return raw_call(method, "/compute/v2.1" + path, body.is_null() ? "" : dump_json(body), h);
  }
  Reply get(const std::string& path, const std::string& token, const std::string& v = "") {
    return nova(http::Method::kGet, path, token, nullptr, v);
  }
  Reply post(const std::string& path, const std::string& token, const Json& body,
             const std::string& v = "") {
    return nova(http::Method::kPost, path, token, body, v);
  }
  Reply put(const std::string& path, const std::string& token, const Json& body,
            const std::string& v = "") {
    return nova(http::Method::kPut, path, token, body, v);
  }
  Reply del(const std::string& path, const std::string& token, const std::string& v = "") {
    return nova(http::Method::kDelete, path, token, nullptr, v);
  }

  Reply identity_call(http::Method method, const std::string& path, const Json& body,
                      const std::string& token) {
    std::vector<std::pair<std::string, std::string>> h;
    if (!token.empty()) h.push_back({"x-auth-token", token});
    return raw_call(method, "/identity" + path, body.is_null() ? "" : dump_json(body), h);
  }

  std::string token(const std::string& user, const std::string& project,
                    const std::string& password = "") {
    Json auth = {
        {"auth",
         {{"identity",
           {{"methods", {"password"}},
            {"password",
             {{"user",
               {{"name", user},
                {"domain", {{"id", "default"}}},
                {"password", password.empty() ? user + "-pw" : password}}}}}}},
          {"scope", {{"project", {{"name", project}, {"domain", {{"id", "default"}}}}}}}}}};
    Reply r = identity_call(http::Method::kPost, "/v3/auth/tokens", auth, "");
    EXPECT_EQ(r.status, 201) << r;
    return r.header("x-subject-token");
  }

  std::string admin_bootstrap_token() {
    if (admin_boot_.empty()) admin_boot_ = token("admin", "admin", "admin-secret");
    return admin_boot_;
  }

  std::string create_project(const std::string& name) {
    Reply r = identity_call(http::Method::kPost, "/v3/projects", {{"project", {{"name", name}}}},
                            admin_bootstrap_token());
    EXPECT_EQ(r.status, 201) << r;
    return r.body["project"]["id"].get<std::string>();
  }
  std::string create_user(const std::string& name, const std::string& project,
                          const std::string& role) {
    Reply r = identity_call(http::Method::kPost, "/v3/users",
                            {{"user", {{"name", name}, {"password", name + "-pw"}}}},
                            admin_bootstrap_token());
    EXPECT_EQ(r.status, 201) << r;
    std::string id = r.body["user"]["id"].get<std::string>();
    Reply g = identity_call(http::Method::kPut,
                            "/v3/projects/" + project + "/users/" + id + "/roles/" + role, nullptr,
                            admin_bootstrap_token());
    EXPECT_EQ(g.status, 204) << g;
    return id;
  }

  int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
        .count();
  }

  // Registers a host as an agent would (heartbeat now).
  void add_host(const std::string& name, const std::string& az = "nova", int64_t vcpus = 4,
                int64_t ram_mb = 8192, int64_t disk_gb = 100,
                const std::string& drivers = "container,vm",
                const std::string& traits = R"({"hypervisor_type":"qemu"})") {
    auto s = store_->write([&](store::Tx& tx) -> Status {
      auto n = tx.exec(
          "INSERT INTO compute_hosts (name, availability_zone, vcpus, ram_mb, disk_gb, drivers, "
          "traits_json, last_heartbeat_ms, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
          "?, 'x', 'x')",
          {name, az, vcpus, ram_mb, disk_gb, drivers, traits, now_ms()});
      if (!n) return fail(n.error());
      return ok();
    });
    ASSERT_TRUE(s.has_value()) << s.error().to_string();
  }

  void exec(const std::string& sql, std::initializer_list<store::Value> args) {
    std::vector<store::Value> a(args);
    auto s = store_->write([&](store::Tx& tx) -> Status {
      auto n = tx.exec(sql, a);
      if (!n) return fail(n.error());
      return ok();
    });
    ASSERT_TRUE(s.has_value()) << s.error().to_string();
  }

  store::Rows query(const std::string& sql, std::initializer_list<store::Value> args = {}) {
    std::vector<store::Value> a(args);
    store::Rows out;
    auto s = store_->read([&](store::Tx& tx) -> Status {
      auto r = tx.query(sql, a);
      if (!r) return fail(r.error());
      out = std::move(*r);
      return ok();
    });
    EXPECT_TRUE(s.has_value()) << s.error().to_string();
    return out;
  }

  ServerRow row(const std::string& id) {
    ServerRow out;
    auto s = store_->read([&](store::Tx& tx) -> Status {
      auto r = load_server(tx, id, true);
      if (!r) return fail(r.error());
      out = *r;
      return ok();
    });
    EXPECT_TRUE(s.has_value()) << s.error().to_string();
    return out;
  }

  // Puts a server in a state as the report handler would (bumping the revision as
  // update_server() does: cached list views depend on it).
  void set_state(const std::string& id, const std::string& vm_state,
                 std::optional<std::string> task = std::nullopt, int64_t power = 1) {
    exec(
        "UPDATE compute_servers SET vm_state = ?, task_state = ?, power_state = ?, "
        "revision = revision + 1 WHERE id = ?",
        {vm_state, task ? store::Value(*task) : store::null(), power, id});
  }

  static Json server_body(const std::string& name, const std::string& image = kContainerImage,
                          const Json& flavor = "42") {
    return {{"server", {{"name", name}, {"imageRef", image}, {"flavorRef", flavor}}}};
  }

  // Creates a server and returns its id (fails the test on anything but 202).
  std::string create(const std::string& token, const Json& body, const std::string& v = "") {
    Reply r = post("/servers", token, body, v);
    EXPECT_EQ(r.status, 202) << r;
    if (r.status != 202) return "";
    return r.body["server"]["id"].get<std::string>();
  }
  std::string create_active(const std::string& token, const std::string& name) {
    std::string id = create(token, server_body(name));
    set_state(id, "active");
    return id;
  }

  TempDir dir_{"concord-servers"};
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  identity::BootstrapResult boot_;
  FakeImages images_;
  std::unique_ptr<ComputeService> compute_;
  http::Router router_;
  std::string p1_, p2_, alice_id_, bob_id_;
  std::string alice_, bob_, carol_, admin_, admin_boot_;
  std::atomic<int> request_counter_{0};
};

}  // namespace concord::compute::testing

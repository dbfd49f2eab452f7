#pragma once
// A hermetic Nova "catalog" API for tests: SQLite in a temp dir with the identity, usage and
// compute schemas, a real IdentityService (bootstrapped, FakeClock, cheap argon2), users with
// each role in two projects, and the catalog route families (versions, flavors, keypairs,
// quotas, misc) on a NovaApi mounted at /compute. Requests are hand-built and dispatched
// through an http::Router, exactly as the server would, without sockets.
//
// The servers family is not mounted: these tests exercise only the catalog APIs, and the
// fixture seeds compute_servers / compute_hosts rows directly where a test needs usage.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "compute/service/api.h"
#include "compute/service/context.h"
#include "compute/service/flavors.h"
#include "compute/service/model.h"
#include "http/router.h"
#include "identity/identity_service.h"
#include "postgres_server.h"
#include "store/store.h"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

#define ASSERT_OK(expr)                                                              \
  do {                                                                               \
    const auto& concord_test_r_ = (expr);                                            \
    ASSERT_TRUE(concord_test_r_.has_value()) << concord_test_r_.error().to_string(); \
  } while (false)

namespace concord::compute::testing {

using TempDir = ::concord::testing::TempDir;

// The catalog tests never boot servers, so the image catalog is empty.
class NoImages final : public ImageCatalog {
 public:
  Result<ImageInfo> get(std::string_view id, const identity::AuthContext&) const override {
    return fail(Code::kNotFound, "Image " + std::string(id) + " could not be found.");
  }
  Result<ImageInfo> get_any(std::string_view id) const override {
    return fail(Code::kNotFound, "Image " + std::string(id) + " could not be found.");
  }
  Result<http::Response> download(std::string_view id) const override {
    return fail(Code::kNotFound, "Image " + std::string(id) + " could not be found.");
  }
};

struct Reply {
  int status = 0;
  Json body;  // null when the body is empty or not JSON
  http::Response raw;
  std::string header(std::string_view name) const { return std::string(raw.header(name)); }
  // The Nova fault name ("badRequest", ...) or "".
  std::string fault() const {
    if (body.is_object() && body.size() == 1 && body.begin().value().is_object() &&
        body.begin().value().contains("message"))
      return body.begin().key();
    return {};
  }
  std::string message() const {
    if (fault().empty()) return {};
    return body.begin().value()["message"].get<std::string>();
  }
};

inline std::ostream& operator<<(std::ostream& os, const Reply& r) {
  return os << r.status << " " << r.raw.body;
}

// Sorted key names of a JSON object, for exact shape checks (Tempest's additionalProperties).
inline std::vector<std::string> keys_of(const Json& j) {
  std::vector<std::string> k;
  if (!j.is_object()) return k;
  for (auto& [name, v] : j.items()) k.push_back(name);
  std::sort(k.begin(), k.end());
  return k;
}
inline std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level("warn");
    // CONCORD_CATALOG_TEST_STORE=postgres runs the same tests on PostgreSQL (a private server
    // started by tests/store/postgres_server.h, or CONCORD_TEST_POSTGRES_URL).
    const char* engine = std::getenv("CONCORD_CATALOG_TEST_STORE");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, engine != nullptr && std::string_view(engine) == "postgres",
        {identity::migrations(), usage::migrations(), compute::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);
    pg_database_ = stack->pg_database;
    auto boot = identity_->bootstrap({"admin-secret", "http://localhost:5000", ""});
    ASSERT_TRUE(boot.has_value()) << boot.error().to_string();
    boot_ = *boot;
    router_.mount("/identity", identity_->routes(), http::keystone_style_error);

    ctx_ =
        std::make_unique<ComputeContext>(ComputeContext{*store_, clock_, *identity_, images_, {}});
    api_ = std::make_unique<NovaApi>(*ctx_);
    add_version_routes(*api_);
    add_flavor_routes(*api_);
    add_keypair_routes(*api_);
    add_quota_routes(*api_);
    add_misc_routes(*api_);
    router_.mount("/compute", api_->table(), nova_error);
    ASSERT_OK(ensure_default_flavors(*store_, clock_));

    admin_ = token("admin", "admin-secret", "admin");
    admin_user_ = boot_.admin_user_id;
    admin_project_ = boot_.admin_project_id;
    p1_ = create_project("p1");
    p2_ = create_project("p2");
    member1_user_ = create_user("member1");
    reader1_user_ = create_user("reader1");
    member2_user_ = create_user("member2");
    grant(p1_, member1_user_, boot_.member_role_id);
    grant(p1_, reader1_user_, boot_.reader_role_id);
    grant(p2_, member2_user_, boot_.member_role_id);
    member1_ = token("member1", "member1-pw", "p1");
    reader1_ = token("reader1", "reader1-pw", "p1");
    member2_ = token("member2", "member2-pw", "p2");
  }

  void TearDown() override {
    api_.reset();
    ctx_.reset();
    identity_.reset();
    store_.reset();
    if (!pg_database_.empty()) {
      auto server = test_support::PostgresServer::shared();
      if (server) {
        EXPECT_TRUE((*server)->drop_database(pg_database_).has_value());
      }
    }
  }

  Reply dispatch(http::Request req) const {
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

  // A compute request; `version` goes into X-OpenStack-Nova-API-Version (as Tempest sends it)
  // unless empty.
  Reply call(http::Method method, const std::string& target, const std::string& token,
             const std::string& body = "", const std::string& version = "") const {
    http::Request req;
    req.method = method;
    req.target = "/compute" + target;
    req.body = body;
    req.base_url = "http://localhost:8774";
    req.request_id = "req-test";
    if (!body.empty()) req.headers.push_back({"content-type", "application/json"});
    if (!token.empty()) req.headers.push_back({"x-auth-token", token});
    if (!version.empty()) req.headers.push_back({"x-openstack-nova-api-version", version});
    Reply r = dispatch(std::move(req));
    record(method, target, version, r);
    return r;
  }

  // CONCORD_CATALOG_DUMP=<file> appends every exchange as one JSON line (method, path,
  // version, status, body) so that responses can be checked offline against Tempest's
  // response schemas.
  static void record(http::Method method, const std::string& target, const std::string& version,
                     const Reply& r) {
    const char* path = std::getenv("CONCORD_CATALOG_DUMP");
    if (path == nullptr || *path == '\0') return;
    std::FILE* f = std::fopen(path, "a");
    if (f == nullptr) return;
    Json line = {{"method", std::string(http::method_name(method))},
                 {"path", target},
                 {"version", version.empty() ? "2.1" : version},
                 {"status", r.status},
                 {"body", r.body}};
    std::string text = dump_json(line) + "\n";
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  Reply get(const std::string& target, const std::string& token,
            const std::string& version = "") const {
    return call(http::Method::kGet, target, token, "", version);
  }
  Reply post(const std::string& target, const Json& body, const std::string& token,
             const std::string& version = "") const {
    return call(http::Method::kPost, target, token, dump_json(body), version);
  }
  Reply put(const std::string& target, const Json& body, const std::string& token,
            const std::string& version = "") const {
    return call(http::Method::kPut, target, token, dump_json(body), version);
  }
  Reply del(const std::string& target, const std::string& token,
            const std::string& version = "") const {
    return call(http::Method::kDelete, target, token, "", version);
  }

  Reply identity_call(http::Method method, const std::string& target, const Json& body,
                      const std::string& token) const {
    http::Request req;
    req.method = method;
    req.target = "/identity" + target;
    req.base_url = "http://localhost:5000";
    req.request_id = "req-test";
    if (!body.is_null()) {
      req.body = dump_json(body);
      req.headers.push_back({"content-type", "application/json"});
    }
    if (!token.empty()) req.headers.push_back({"x-auth-token", token});
    return dispatch(std::move(req));
  }

  std::string token(const std::string& user, const std::string& password,
                    const std::string& project) {
    Json auth = {
        {"auth",
         {{"identity",
           {{"methods", {"password"}},
            {"password",
             {{"user",
               {{"name", user}, {"domain", {{"id", "default"}}}, {"password", password}}}}}}},
          {"scope", {{"project", {{"name", project}, {"domain", {{"id", "default"}}}}}}}}}};
    Reply r = identity_call(http::Method::kPost, "/v3/auth/tokens", auth, "");
    EXPECT_EQ(r.status, 201) << r;
    return r.header("x-subject-token");
  }
  std::string create_project(const std::string& name) {
    Reply r =
        identity_call(http::Method::kPost, "/v3/projects", {{"project", {{"name", name}}}}, admin_);
    EXPECT_EQ(r.status, 201) << r;
    return r.body["project"]["id"].get<std::string>();
  }
  std::string create_user(const std::string& name) {
    Reply r = identity_call(http::Method::kPost, "/v3/users",
                            {{"user", {{"name", name}, {"password", name + "-pw"}}}}, admin_);
    EXPECT_EQ(r.status, 201) << r;
    return r.body["user"]["id"].get<std::string>();
  }
  void grant(const std::string& project, const std::string& user, const std::string& role) {
    Reply r = identity_call(http::Method::kPut,
                            "/v3/projects/" + project + "/users/" + user + "/roles/" + role,
                            nullptr, admin_);
    EXPECT_EQ(r.status, 204) << r;
  }

  // Seeds a server row (only the columns quota and hypervisor views read matter).
  void seed_server(const std::string& id, const std::string& project, int64_t vcpus, int64_t ram_mb,
                   const std::string& host = "", bool deleted = false) {
    ServerRow s;
    s.id = id;
    s.project_id = project;
    s.user_id = "u";
    s.name = "srv-" + id;
    s.image_id = "img";
    s.flavor_id = "1";
    s.flavor_json = "{}";
    s.vcpus = vcpus;
    s.ram_mb = ram_mb;
    s.disk_gb = 1;
    s.hostname = s.name;
    s.reservation_id = "r-1";
    s.vm_state = std::string(vm::kActive);
    s.driver = "container";
    if (!host.empty()) s.host = host;
    s.created_at = s.updated_at = "2026-01-01T00:00:00";
    s.deleted = deleted;
    ASSERT_OK(store_->write([&](store::Tx& tx) { return insert_server(tx, s); }));
  }

  // Seeds a registered host, as an agent's PUT /agent/v1/hosts/{host} would.
  void seed_host(const std::string& name, const std::string& zone, int64_t heartbeat_ms,
                 int64_t order = 0) {
    ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
      auto n = tx.exec(
          "INSERT INTO compute_hosts (name, availability_zone, vcpus, ram_mb, disk_gb, drivers, "
          "last_heartbeat_ms, created_at, updated_at) VALUES (?, ?, 8, 16384, 100, "
          "'[\"container\"]', ?, ?, ?)",
          {name, zone, heartbeat_ms, "2026-01-01T00:00:0" + std::to_string(order),
           "2026-01-01T00:00:00"});
      if (!n) return fail(n.error());
      return ok();
    }));
  }

  int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
        .count();
  }

  TempDir dir_{"concord-catalog"};
  FakeClock clock_;
  NoImages images_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  identity::BootstrapResult boot_;
  std::unique_ptr<ComputeContext> ctx_;
  std::unique_ptr<NovaApi> api_;
  http::Router router_;
  std::string admin_, member1_, reader1_, member2_;
  std::string pg_database_;
  std::string admin_user_, admin_project_, p1_, p2_, member1_user_, reader1_user_, member2_user_;
};

}  // namespace concord::compute::testing

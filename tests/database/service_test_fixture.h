// The fixture shared by the Trove v1.0 API tests (service_api_test.cc,
// service_configurations_test.cc, service_backups_test.cc): a real store (SQLite in a temp dir, or
// PostgreSQL with CONCORD_DATABASE_TEST_STORE=postgres), real tokens, and the real compute
// service. Each instance is a service server placed on a registered host offering the "database"
// driver, whose agent's part is played by reports through compute's own agent routes. Kept in one
// place so the three suites stay on the same stack; each derives from DatabaseServiceTest and adds
// only what its own tests need.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent_test_util.h"
#include "base/json.h"
#include "base/log.h"
#include "compute/driver/database_keys.h"
#include "compute/service/compute_service.h"
#include "compute/service/flavors.h"
#include "compute/service/model.h"
#include "compute/service/service_servers.h"
#include "database/engine/desired_state.h"
#include "database/service/database_service.h"
#include "http/router.h"
#include "identity_calls.h"
#include "nlohmann/json.hpp"
#include "postgres_server.h"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

namespace concord::database::service {

// Starts (and stops) the PostgreSQL server the *_postgres variants run on. Inline so that each
// test binary registers it exactly once, whichever of its files include this header.
inline const auto* const kDatabaseServicePostgresEnv = ::testing::AddGlobalTestEnvironment(
    std::make_unique<test_support::PostgresEnvironment>().release());

class DatabaseServiceTest : public ::testing::Test, public test_support::IdentityCalls {
 protected:
  using Reply = compute::agent_testing::Reply;

  static constexpr const char* kAgentKey = "test-agent-key-0123456789abcdef";
  static constexpr const char* kHost = "h-db";

  // `temp_dir` names the suite's temp dir; `request_id` is stamped on every request it sends.
  explicit DatabaseServiceTest(const std::string& temp_dir,
                               std::string request_id = "req-database-test")
      : dir_(temp_dir), request_id_(std::move(request_id)) {}

  void SetUp() override {
    set_log_level("error");
    const char* engine = std::getenv("CONCORD_DATABASE_TEST_STORE");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, engine != nullptr && std::string_view(engine) == "postgres",
        {identity::migrations(), usage::migrations(), compute::migrations(), migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);
    auto boot = identity_->bootstrap({"admin-secret", "http://localhost:5000", ""});
    ASSERT_TRUE(boot.has_value()) << boot.error().to_string();
    attach_identity(*identity_);
    admin_ = token("admin", "admin-secret", "admin");
    use_identity_admin(admin_);
    p1_ = create_project("p1");
    p2_ = create_project("p2");
    service_project_ = create_project("service");
    const std::string member1 = create_user("member1");
    const std::string reader1 = create_user("reader1");
    const std::string member2 = create_user("member2");
    grant(p1_, member1, boot->member_role_id);
    grant(p1_, reader1, boot->reader_role_id);
    grant(p2_, member2, boot->member_role_id);
    member1_ = token("member1", "member1-pw", "p1");
    reader1_ = token("reader1", "reader1-pw", "p1");
    member2_ = token("member2", "member2-pw", "p2");

    options_.agent_key = kAgentKey;
    auto svc = compute::ComputeService::create(
        compute::ComputeContext{*store_, clock_, *identity_, images_, options_});
    ASSERT_TRUE(svc.has_value()) << svc.error().to_string();
    compute_ = std::move(*svc);
    ASSERT_TRUE(compute::ensure_default_flavors(*store_, clock_));
    ctx_ = std::make_unique<compute::ComputeContext>(
        compute::ComputeContext{*store_, clock_, *identity_, images_, options_});
    DatabaseOptions o;
    o.max_volume_gb = 20;
    // No agent applies anything here unless a test reports it: answer changes at once (the
    // waiting is tested on services of its own).
    o.apply_wait = std::chrono::milliseconds(0);
    configure(o);
    auto db = DatabaseService::create(*store_, clock_, *identity_, *ctx_, o);
    ASSERT_TRUE(db.has_value()) << db.error().to_string();
    db_ = std::move(*db);
    router_.mount("/database", db_->routes(), db_->errors());
    router_.mount("/agent", compute_->agent_routes(), http::keystone_style_error);
    db_->attach_service_project(service_project_, "concord-database");
    register_host();
  }

  // A second database service on the same store with options `o` (a waiting apply_wait, say),
  // its Trove routes mounted on `router` at /database; null (and a test failure) if it cannot
  // be made.
  std::unique_ptr<DatabaseService> service_on(http::Router& router, const DatabaseOptions& o) {
    auto made = DatabaseService::create(*store_, clock_, *identity_, *ctx_, o);
    if (!made) {
      ADD_FAILURE() << made.error().to_string();
      return nullptr;
    }
    (*made)->attach_service_project(service_project_, "concord-database");
    router.mount("/database", (*made)->routes(), (*made)->errors());
    return std::move(*made);
  }

  // A service like db_ whose changes answer only once the agent applied them (apply_wait 60 s),
  // its Trove routes on `router`.
  std::unique_ptr<DatabaseService> waiting_service_on(http::Router& router) {
    DatabaseOptions o;
    o.max_volume_gb = 20;
    o.apply_wait = std::chrono::milliseconds(60000);
    return service_on(router, o);
  }

  // A Trove call below /database/v1.0/{p1} as member1 through `router` (a service_on()
  // service's); its status.
  int trove_status_on(http::Router& router, http::Method method, const std::string& path,
                      const Json& body) {
    http::Request req;
    req.method = method;
    req.target = "/database/v1.0/" + p1_ + path;
    req.base_url = "http://localhost:8080";
    req.body = dump_json(body);
    req.headers.push_back({"content-type", "application/json"});
    req.headers.push_back({"x-auth-token", member1_});
    std::string route;
    return router.dispatch(req, route).status;
  }

  // Lets a suite adjust the options of db_ (the service behind router_) before it is created.
  virtual void configure(DatabaseOptions& /*options*/) {}

  // Sends `body` as it is through router_.
  Reply dispatch_raw(http::Method method, const std::string& target, std::string body,
                     std::vector<http::Header> headers) {
    http::Request req;
    req.method = method;
    req.target = target;
    req.base_url = "http://localhost:8080";
    req.request_id = request_id_;
    req.body = std::move(body);
    for (auto& h : headers) req.headers.push_back(std::move(h));
    std::string route;
    Reply r;
    r.raw = router_.dispatch(req, route);
    r.status = r.raw.status;
    if (!r.raw.body.empty()) {
      if (auto parsed = parse_json(r.raw.body)) r.body = std::move(*parsed);
    }
    return r;
  }

  // Sends a JSON body (none when null) through router_.
  Reply dispatch(http::Method method, const std::string& target, const Json& body,
                 std::vector<http::Header> headers) {
    if (body.is_null()) return dispatch_raw(method, target, {}, std::move(headers));
    headers.insert(headers.begin(), http::Header{"content-type", "application/json"});
    return dispatch_raw(method, target, dump_json(body), std::move(headers));
  }

  // A Trove call below /database/v1.0/{project}, as member1 in p1 unless told.
  Reply trove(http::Method method, const std::string& path, const Json& body = nullptr,
              const std::string& tok = {}, const std::string& project = {}) {
    const std::string t = tok.empty() ? member1_ : tok;
    const std::string p = project.empty() ? p1_ : project;
    return dispatch(method, "/database/v1.0/" + p + path, body, {{"x-auth-token", t}});
  }

  // The genuine credentials of `host`'s agent.
  static http::Header agent_header(const std::string& host) {
    return {"x-concord-agent", host + ":" + compute::agent_credential(kAgentKey, host)};
  }

  // A call to compute's agent routes as `host`'s agent.
  Reply agent(http::Method method, const std::string& path, const Json& body,
              const std::string& host = kHost) {
    return dispatch(method, "/agent" + path, body, {agent_header(host)});
  }

  // Registers (or heartbeats) `host`, offering `driver`.
  void register_host(const std::string& host = kHost, const std::string& driver = "database") {
    Json body = {{"availability_zone", "nova"},
                 {"capacity", {{"vcpus", 8}, {"ram_mb", 16384}, {"disk_gb", 100}}},
                 {"drivers", {driver}},
                 {"kvm", false},
                 {"accel", "process"},
                 {"traits", Json::object()},
                 {"version", "test"}};
    Reply r = agent(http::Method::kPut, "/v1/hosts/" + host, body, host);
    ASSERT_EQ(r.status, 200) << r;
  }

  // The agent reports the instance running at the given spec generation (and, when given, the
  // reboots it has done).
  void report(const std::string& id, int64_t generation, const std::string& state = "present",
              int power = 1, std::optional<int64_t> reboot_seq = std::nullopt) {
    Json inst = {{"id", id}, {"generation", generation}, {"state", state}};
    if (state == "present") {
      inst["power_state"] = power;
      inst["addresses"] = Json::array();
    }
    if (reboot_seq) inst["reboot_seq"] = *reboot_seq;
    Reply r = agent(http::Method::kPost, std::string("/v1/hosts/") + kHost + "/report",
                    Json{{"instances", Json::array({inst})}});
    ASSERT_EQ(r.status, 200) << r;
  }

  // The agent of `host` reports the server `id` running with the driver's status `detail` (a
  // report carries what changed: the host's other servers keep what they reported last).
  void report_detail(const std::string& id, const std::string& detail, int64_t generation = 1,
                     const std::string& host = kHost) {
    Json inst = {{"id", id},         {"generation", generation},   {"state", "present"},
                 {"power_state", 1}, {"addresses", Json::array()}, {"detail", detail}};
    Reply r = agent(http::Method::kPost, "/v1/hosts/" + host + "/report",
                    Json{{"instances", Json::array({inst})}}, host);
    ASSERT_EQ(r.status, 200) << r;
  }

  // The id of the admin project (the admin token's scope for /mgmt calls).
  std::string admin_project_id() {
    http::Response r =
        identity_call(http::Method::kGet, "/v3/projects?name=admin", nullptr, admin_);
    EXPECT_EQ(r.status, 200) << r.body;
    auto body = parse_json(r.body);
    if (!body || (*body)["projects"].size() != 1) {
      ADD_FAILURE() << "no single admin project: " << r.body;
      return {};
    }
    return (*body)["projects"][0]["id"].get<std::string>();
  }

  // The desired-state generation of the server `id` (what an agent's report must reach for the
  // server to count as converged).
  int64_t spec_generation(const std::string& id) {
    int64_t out = 0;
    Status read = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(compute::ServerRow s, compute::load_server(tx, id, true));
      out = s.spec_generation;
      return ok();
    });
    EXPECT_TRUE(read.has_value()) << read.error().to_string();
    return out;
  }

  std::optional<compute::ServiceServer> server(const std::string& id) {
    auto list = compute::list_service_servers(*ctx_, service_project_);
    EXPECT_TRUE(list) << list.error().to_string();
    if (!list) return std::nullopt;
    for (auto& s : *list) {
      if (s.id == id) return s;
    }
    return std::nullopt;
  }

  engine::DesiredState state_of(const std::string& id) {
    auto s = server(id);
    EXPECT_TRUE(s.has_value());
    if (!s) return {};
    auto st = engine::desired_state_from_json(
        s->metadata[std::string(compute::driver::database_keys::kState)]);
    EXPECT_TRUE(st) << st.error().to_string();
    return st ? *st : engine::DesiredState{};
  }

  static Json pg_instance(const std::string& name = "db1") {
    return {{"instance",
             {{"name", name},
              {"flavorRef", "2"},
              {"volume", {{"size", 2}}},
              {"datastore", {{"type", "postgresql"}, {"version", "15"}}},
              {"databases", Json::array({{{"name", "shop"}}})},
              {"users", Json::array({{{"name", "app"},
                                      {"password", "s3cret-pw"},
                                      {"databases", Json::array({{{"name", "shop"}}})}}})}}}};
  }

  std::string create(const Json& body) {
    Reply r = trove(http::Method::kPost, "/instances", body);
    EXPECT_EQ(r.status, 200) << r;
    return r.body["instance"].value("id", std::string());
  }

  // Makes the instance ACTIVE as its agent would.
  void activate(const std::string& id) {
    auto s = server(id);
    ASSERT_TRUE(s.has_value());
    report(id, 1);
    Reply r = trove(http::Method::kGet, "/instances/" + id);
    ASSERT_EQ(r.status, 200) << r;
    ASSERT_EQ(r.body["instance"]["status"], "ACTIVE") << r;
  }

  int instance_rows() {
    int n = -1;
    EXPECT_TRUE(store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT COUNT(*) FROM db_instances"));
      n = static_cast<int>(rows[0].integer(0));
      return ok();
    }));
    return n;
  }

  ::concord::testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  compute::agent_testing::MemoryImages images_;
  compute::ComputeOptions options_;
  std::unique_ptr<compute::ComputeService> compute_;
  std::unique_ptr<compute::ComputeContext> ctx_;
  std::unique_ptr<DatabaseService> db_;
  http::Router router_;
  std::string admin_, member1_, reader1_, member2_;
  std::string p1_, p2_, service_project_;

 private:
  std::string request_id_;
};

}  // namespace concord::database::service

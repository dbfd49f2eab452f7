#pragma once
// A hermetic server side of the agent protocol: SQLite in a temp dir (identity, compute and
// usage schemas), a FakeClock, an in-memory image catalog with bytes, the real ComputeService
// with its agent routes mounted at /agent on a Router the tests call directly (no sockets), and
// helpers that insert server rows and actions as the Nova API does.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "compute/service/compute_service.h"
#include "compute/service/context.h"
#include "compute/service/model.h"
#include "compute/service/report.h"
#include "http/router.h"
#include "identity/identity_service.h"
#include "postgres_server.h"
#include "store/store.h"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

namespace concord::compute::agent_testing {

using TempDir = ::concord::testing::TempDir;

struct Reply {
  int status = 0;
  Json body;
  http::Response raw;
  std::string message() const {
    if (body.is_object() && body.contains("error")) return body["error"].value("message", "");
    return {};
  }
};

inline std::ostream& operator<<(std::ostream& os, const Reply& r) {
  return os << r.status << " " << r.raw.body;
}

// Every image is visible; download() answers the stored bytes.
class MemoryImages final : public ImageCatalog {
 public:
  void add(ImageInfo image, std::string bytes = {}) {
    bytes_[image.id] = std::move(bytes);
    images_[image.id] = std::move(image);
  }
  Result<ImageInfo> get(std::string_view id, const identity::AuthContext&) const override {
    return get_any(id);
  }
  Result<ImageInfo> get_any(std::string_view id) const override {
    auto it = images_.find(std::string(id));
    if (it == images_.end())
      return fail(Code::kNotFound, "Image " + std::string(id) + " not found");
    return it->second;
  }
  Result<http::Response> download(std::string_view id) const override {
    auto it = bytes_.find(std::string(id));
    if (it == bytes_.end()) return fail(Code::kNotFound, "Image " + std::string(id) + " not found");
    http::Response r;
    r.status = 200;
    r.set_header("content-type", "application/octet-stream");
    r.body = it->second;
    return r;
  }

 private:
  std::map<std::string, ImageInfo> images_;
  std::map<std::string, std::string> bytes_;
};

inline constexpr const char* kImage = "11111111-1111-4111-8111-111111111111";
inline constexpr const char* kAgentKey = "test-agent-key-0123456789abcdef";

class AgentApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level("error");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, use_postgres(),
        {identity::migrations(), compute::migrations(), usage::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);
    pg_database_ = stack->pg_database;

    images_.add({kImage,
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
    ComputeOptions options;
    options.agent_key = kAgentKey;
    options.heartbeat_interval = std::chrono::milliseconds(2000);
    options.down_after = std::chrono::milliseconds(10000);
    options.assignments_wait = std::chrono::milliseconds(5000);
    customize(options);
    auto svc =
        ComputeService::create(ComputeContext{*store_, clock_, *identity_, images_, options});
    ASSERT_TRUE(svc.has_value()) << svc.error().to_string();
    compute_ = std::move(*svc);
    router_.mount("/agent", compute_->agent_routes(), http::keystone_style_error);
  }

  void TearDown() override {
    compute_.reset();
    identity_.reset();
    store_.reset();
    if (!pg_database_.empty()) {
      if (auto server = test_support::PostgresServer::shared()) {
        EXPECT_TRUE((*server)->drop_database(pg_database_).has_value());
      }
    }
  }

  // CONCORD_COMPUTE_TEST_STORE=postgres runs the same tests on PostgreSQL.
  static bool use_postgres() {
    const char* v = std::getenv("CONCORD_COMPUTE_TEST_STORE");
    return v != nullptr && std::string_view(v) == "postgres";
  }

  virtual void customize(ComputeOptions&) {}

  std::string credential(const std::string& host) const {
    return agent_credential(kAgentKey, host);
  }

  // A call to /agent<path> authenticated as `as_host` (empty: no header).
  Reply call(http::Method method, const std::string& path, const Json& body,
             const std::string& as_host, const std::string& cred = "") {
    http::Request req;
    req.method = method;
    req.target = "/agent" + path;
    req.body = body.is_null() ? "" : dump_json(body);
    req.base_url = "http://localhost:8080";
    req.request_id = "req-agent-test";
    if (!req.body.empty()) req.headers.push_back({"content-type", "application/json"});
    if (!as_host.empty()) {
      req.headers.push_back(
          {"x-concord-agent", as_host + ":" + (cred.empty() ? credential(as_host) : cred)});
    }
    std::string route;
    Reply r;
    r.raw = router_.dispatch(req, route);
    r.status = r.raw.status;
    if (!r.raw.body.empty()) {
      if (auto parsed = parse_json(r.raw.body)) r.body = std::move(*parsed);
    }
    return r;
  }

  Reply register_host(const std::string& host, int64_t vcpus = 8) {
    Json body = {{"availability_zone", "nova"},
                 {"capacity", {{"vcpus", vcpus}, {"ram_mb", 8192}, {"disk_gb", 100}}},
                 {"drivers", {"container"}},
                 {"kvm", false},
                 {"accel", "runc"},
                 {"traits", Json::object()},
                 {"version", "test"}};
    return call(http::Method::kPut, "/v1/hosts/" + host, body, host);
  }

  Reply report(const std::string& host, const Json& instances) {
    return call(http::Method::kPost, "/v1/hosts/" + host + "/report",
                Json{{"instances", instances}}, host);
  }

  int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch())
        .count();
  }

  // A server row as the API writes it after placing a create on `host`, with its open "create"
  // action and event and an instance claim.
  ServerRow insert_building(const std::string& id, const std::optional<std::string>& host) {
    ServerRow s;
    s.id = id;
    s.project_id = "p1";
    s.user_id = "u1";
    s.name = "vm-" + id.substr(0, 4);
    s.image_id = kImage;
    s.flavor_id = "1";
    s.flavor_json = R"({"id":"1","name":"m1.tiny","vcpus":1,"ram_mb":512,"disk_gb":1})";
    s.vcpus = 1;
    s.ram_mb = 512;
    s.disk_gb = 1;
    s.key_name = "k1";
    s.key_data = "ssh-ed25519 AAAA test";
    s.user_data = "aGVsbG8=";
    s.hostname = s.name;
    s.reservation_id = "r-1";
    s.vm_state = std::string(vm::kBuilding);
    s.task_state = std::string(task::kSpawning);
    s.host = host;
    s.driver = "container";
    s.spec_generation = 1;
    s.op_deadline_ms = now_ms() + 600000;
    s.created_at = s.updated_at = stored_time(now_ms());
    s.created_ms = now_ms();
    EXPECT_TRUE(store_
                    ->write([&](store::Tx& tx) -> Status {
                      CONCORD_RETURN_IF_ERROR(insert_server(tx, s));
                      CONCORD_RETURN_IF_ERROR(add_action(tx, id, "req-create", "create",
                                                         "compute__do_build_and_run_instance"));
                      if (host) {
                        CONCORD_ASSIGN_OR_RETURN(
                            int64_t n,
                            tx.exec("INSERT INTO compute_allocations (server_id, purpose, host, "
                                    "vcpus, ram_mb, disk_gb) VALUES (?, 'instance', ?, 1, 512, 1)",
                                    {id, *host}));
                        (void)n;
                      }
                      CONCORD_ASSIGN_OR_RETURN(
                          int64_t m, tx.exec("INSERT INTO compute_server_metadata (server_id, key, "
                                             "value) VALUES (?, 'role', 'web')",
                                             {id}));
                      (void)m;
                      return ok();
                    })
                    .has_value());
    return s;
  }

  Status add_action(store::Tx& tx, const std::string& id, const std::string& request_id,
                    const std::string& action, const std::string& event) {
    CONCORD_ASSIGN_OR_RETURN(store::Rows seq,
                             tx.query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM "
                                      "compute_instance_actions WHERE server_id = ?",
                                      {id}));
    const std::string t = stored_time(now_ms());
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("INSERT INTO compute_instance_actions (server_id, request_id, action, user_id, "
                "project_id, start_time, updated_at, seq) VALUES (?, ?, ?, 'u1', 'p1', ?, ?, ?)",
                {id, request_id, action, t, t, seq[0].integer(0) + 1}));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t e, tx.exec("INSERT INTO compute_instance_action_events (server_id, request_id, "
                           "event, start_time) VALUES (?, ?, ?, ?)",
                           {id, request_id, event, t}));
    (void)n;
    (void)e;
    return ok();
  }

  // Applies `change` to the stored row as an API action would (same transaction as the action).
  void api_change(const std::string& id, const std::function<void(ServerRow&)>& change,
                  const std::string& action = "", const std::string& event = "") {
    auto st = store_->write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(ServerRow s, load_server(tx, id, true));
      change(s);
      CONCORD_RETURN_IF_ERROR(update_server(tx, s));
      if (!action.empty()) {
        CONCORD_RETURN_IF_ERROR(add_action(tx, id, "req-" + action, action, event));
      }
      return ok();
    });
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
  }

  ServerRow load(const std::string& id) {
    ServerRow out;
    auto st = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(out, load_server(tx, id, true));
      return ok();
    });
    EXPECT_TRUE(st.has_value()) << st.error().to_string();
    return out;
  }

  store::Rows query(const std::string& sql, std::initializer_list<store::Value> params) {
    store::Rows rows;
    std::vector<store::Value> p(params);
    auto st = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(rows, tx.query(sql, p));
      return ok();
    });
    EXPECT_TRUE(st.has_value()) << st.error().to_string();
    return rows;
  }

  TempDir dir_{"concord-agentapi"};
  std::string pg_database_;
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  MemoryImages images_;
  std::unique_ptr<ComputeService> compute_;
  http::Router router_;
};

}  // namespace concord::compute::agent_testing

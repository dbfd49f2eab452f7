#pragma once
// A hermetic identity service for tests: SQLite in a temp dir, a FakeClock, cheap argon2
// parameters, bootstrapped, with the API mounted at /identity on a Router that the tests call
// directly (no sockets).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "http/router.h"
#include "identity/identity_service.h"
#include "postgres_server.h"
#include "store/store.h"

#define ASSERT_OK(expr)                                                              \
  do {                                                                               \
    const auto& concord_test_r_ = (expr);                                            \
    ASSERT_TRUE(concord_test_r_.has_value()) << concord_test_r_.error().to_string(); \
  } while (false)

#define EXPECT_CODE(expr, expected_code)                                                     \
  do {                                                                                       \
    const auto& concord_test_r_ = (expr);                                                    \
    if (concord_test_r_.has_value()) {                                                       \
      ADD_FAILURE() << #expr " succeeded; expected " << ::concord::code_name(expected_code); \
    } else {                                                                                 \
      EXPECT_EQ(concord_test_r_.error().code(), expected_code)                               \
          << concord_test_r_.error().to_string();                                            \
    }                                                                                        \
  } while (false)

namespace concord::identity::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "concord-identity-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Reply {
  int status = 0;
  Json body;  // null when the body is empty or not JSON
  http::Response raw;
  std::string header(std::string_view name) const { return std::string(raw.header(name)); }
  // The Keystone error message, or "".
  std::string message() const {
    if (body.is_object() && body.contains("error") && body["error"].contains("message")) {
      return body["error"]["message"].get<std::string>();
    }
    return {};
  }
};

inline std::ostream& operator<<(std::ostream& os, const Reply& r) {
  return os << r.status << " " << r.raw.body;
}

inline IdentityOptions test_options(const std::string& dir) {
  IdentityOptions o;
  o.key_dir = dir + "/keys";
  o.password_params = PasswordParams{.time_cost = 1, .memory_kib = 8, .parallelism = 1};
  o.feed_wait = std::chrono::milliseconds(50);
  return o;
}

// One "replica": a service over a store, with its router.
class Node {
 public:
  Node(store::Store& store, const Clock& clock, IdentityOptions options) {
    auto svc = IdentityService::create(store, clock, std::move(options));
    if (!svc) {
      ADD_FAILURE() << "IdentityService::create: " << svc.error().to_string();
      return;
    }
    service = std::move(*svc);
    router.mount("/identity", service->routes(), http::keystone_style_error);
  }

  Reply call(http::Method method, const std::string& target, const std::string& body = "",
             const std::string& token = "",
             const std::vector<std::pair<std::string, std::string>>& headers = {}) const {
    http::Request req;
    req.method = method;
    req.target = "/identity" + target;
    req.body = body;
    req.base_url = "http://localhost:5000";
    req.request_id = "req-test";
    bool typed = false;
    for (const auto& h : headers) typed = typed || h.first == "content-type";
    if (!body.empty() && !typed) req.headers.push_back({"content-type", "application/json"});
    if (!token.empty()) req.headers.push_back({"x-auth-token", token});
    for (const auto& [k, v] : headers) req.headers.push_back({k, v});
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

  std::unique_ptr<IdentityService> service;
  http::Router router;
};

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level("warn");
    start();
  }

  void TearDown() override {
    node_.reset();
    store_.reset();
    if (!pg_database_.empty()) {
      auto server = test_support::PostgresServer::shared();
      if (server) {
        EXPECT_TRUE((*server)->drop_database(pg_database_).has_value());
      }
    }
  }

  // CONCORD_IDENTITY_TEST_STORE=postgres runs the same tests on PostgreSQL.
  static bool use_postgres() {
    const char* v = std::getenv("CONCORD_IDENTITY_TEST_STORE");
    return v != nullptr && std::string_view(v) == "postgres";
  }

  void start() {
    Result<std::unique_ptr<store::Store>> st = fail(Code::kInternal, "no store");
    if (use_postgres()) {
      auto server = test_support::PostgresServer::shared();
      ASSERT_TRUE(server.has_value()) << server.error().to_string();
      auto db = (*server)->create_database();
      ASSERT_TRUE(db.has_value()) << db.error().to_string();
      pg_database_ = db->name;
      st = store::open_postgres({.conninfo = db->conninfo});
    } else {
      st = store::open_sqlite({.path = dir_.path() + "/identity.db"});
    }
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    store_ = std::move(*st);
    auto m = migrations();
    ASSERT_OK(store_->migrate(m));
    node_ = std::make_unique<Node>(*store_, clock_, options());
    ASSERT_TRUE(node_->service);
    auto boot = node_->service->bootstrap({"admin-secret", "http://localhost:5000", ""});
    ASSERT_TRUE(boot.has_value()) << boot.error().to_string();
    boot_ = *boot;
  }

  virtual IdentityOptions options() { return test_options(dir_.path()); }

  IdentityService& svc() { return *node_->service; }

  Reply call(http::Method method, const std::string& target, const std::string& body = "",
             const std::string& token = "",
             const std::vector<std::pair<std::string, std::string>>& headers = {}) const {
    return node_->call(method, target, body, token, headers);
  }
  Reply get(const std::string& target, const std::string& token) const {
    return call(http::Method::kGet, target, "", token);
  }
  Reply post(const std::string& target, const Json& body, const std::string& token) const {
    return call(http::Method::kPost, target, dump_json(body), token);
  }
  Reply patch(const std::string& target, const Json& body, const std::string& token) const {
    return call(http::Method::kPatch, target, dump_json(body), token);
  }
  Reply put(const std::string& target, const std::string& token,
            const std::string& body = "") const {
    return call(http::Method::kPut, target, body, token);
  }
  Reply del(const std::string& target, const std::string& token) const {
    return call(http::Method::kDelete, target, "", token);
  }

  // POST /v3/auth/tokens with a password; project/domain scope by name in Default, or none.
  static Json password_auth(const std::string& user, const std::string& password,
                            const Json& scope = nullptr) {
    Json auth = {
        {"identity",
         {{"methods", {"password"}},
          {"password",
           {{"user",
             {{"name", user}, {"domain", {{"name", "Default"}}}, {"password", password}}}}}}}};
    if (!scope.is_null()) auth["scope"] = scope;
    return {{"auth", auth}};
  }
  static Json project_scope(const std::string& name) {
    return {{"project", {{"name", name}, {"domain", {{"id", "default"}}}}}};
  }

  Reply issue(const Json& body) const { return post("/v3/auth/tokens", body, ""); }

  // A token for user/password scoped to `project` (empty: unscoped); fails the test if refused.
  std::string token(const std::string& user, const std::string& password,
                    const std::string& project = "") {
    Reply r = issue(
        password_auth(user, password, project.empty() ? Json(nullptr) : project_scope(project)));
    EXPECT_EQ(r.status, 201) << r;
    return r.header("x-subject-token");
  }
  std::string admin_token() {
    if (admin_token_.empty()) admin_token_ = token("admin", "admin-secret", "admin");
    return admin_token_;
  }

  // Admin helpers; each fails the test on an unexpected status.
  std::string create_project(const std::string& name, const Json& extra = Json::object()) {
    Json p = extra;
    p["name"] = name;
    Reply r = post("/v3/projects", {{"project", p}}, admin_token());
    EXPECT_EQ(r.status, 201) << r;
    return r.body["project"]["id"].get<std::string>();
  }
  std::string create_user(const std::string& name, const std::string& password,
                          const Json& extra = Json::object()) {
    Json u = extra;
    u["name"] = name;
    u["password"] = password;
    Reply r = post("/v3/users", {{"user", u}}, admin_token());
    EXPECT_EQ(r.status, 201) << r;
    return r.body["user"]["id"].get<std::string>();
  }
  std::string create_role(const std::string& name) {
    Reply r = post("/v3/roles", {{"role", {{"name", name}}}}, admin_token());
    EXPECT_EQ(r.status, 201) << r;
    return r.body["role"]["id"].get<std::string>();
  }
  void grant(const std::string& project_id, const std::string& user_id,
             const std::string& role_id) {
    Reply r = put("/v3/projects/" + project_id + "/users/" + user_id + "/roles/" + role_id,
                  admin_token());
    EXPECT_EQ(r.status, 204) << r;
  }
  // A user with `role_id` on a new project of the same name; returns {user id, project id}.
  std::pair<std::string, std::string> member_of_new_project(const std::string& name,
                                                            const std::string& role_id) {
    std::string project = create_project(name);
    std::string user = create_user(name, name + "-pw");
    grant(project, user, role_id);
    return {user, project};
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Node> node_;
  BootstrapResult boot_;
  std::string admin_token_;
  std::string pg_database_;
};

}  // namespace concord::identity::testing

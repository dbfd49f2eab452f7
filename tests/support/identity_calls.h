#pragma once
// Keystone calls that service tests make to set up projects, users, role grants and tokens,
// in-process through the identity service's own routes (no sockets). A fixture derives from
// IdentityCalls next to ::testing::Test, attaches its identity service once, then uses
// token(), create_project(), create_user() and grant() as if they were its own.
#include <gtest/gtest.h>

#include <string>

#include "base/json.h"
#include "http/message.h"
#include "http/router.h"
#include "identity/identity_service.h"

namespace concord::test_support {

class IdentityCalls {
 public:
  // Mounts `ids`' routes at /identity; call before any other method.
  void attach_identity(identity::IdentityService& ids) {
    identity_router_.mount("/identity", ids.routes(), http::keystone_style_error);
  }
  // The token create_project/create_user/grant act with (an admin's).
  void use_identity_admin(std::string token) { identity_admin_ = std::move(token); }

  http::Response identity_call(http::Method method, const std::string& target, const Json& body,
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
    std::string route;
    return identity_router_.dispatch(req, route);
  }

  // A project-scoped token (the project and user in the Default domain).
  std::string token(const std::string& user, const std::string& password,
                    const std::string& project) const {
    Json auth = {
        {"auth",
         {{"identity",
           {{"methods", {"password"}},
            {"password",
             {{"user",
               {{"name", user}, {"domain", {{"id", "default"}}}, {"password", password}}}}}}},
          {"scope", {{"project", {{"name", project}, {"domain", {{"id", "default"}}}}}}}}}};
    http::Response r = identity_call(http::Method::kPost, "/v3/auth/tokens", auth, "");
    EXPECT_EQ(r.status, 201) << r.body;
    return std::string(r.header("x-subject-token"));
  }
  std::string create_project(const std::string& name) const {
    return created(identity_call(http::Method::kPost, "/v3/projects",
                                 {{"project", {{"name", name}}}}, identity_admin_),
                   "project");
  }
  // The user's password is "<name>-pw".
  std::string create_user(const std::string& name) const {
    return created(
        identity_call(http::Method::kPost, "/v3/users",
                      {{"user", {{"name", name}, {"password", name + "-pw"}}}}, identity_admin_),
        "user");
  }
  void grant(const std::string& project, const std::string& user, const std::string& role) const {
    http::Response r = identity_call(
        http::Method::kPut, "/v3/projects/" + project + "/users/" + user + "/roles/" + role,
        nullptr, identity_admin_);
    EXPECT_EQ(r.status, 204) << r.body;
  }

 private:
  static std::string created(const http::Response& r, const std::string& kind) {
    EXPECT_EQ(r.status, 201) << r.body;
    auto body = parse_json(r.body);
    if (!body || !body->contains(kind)) return {};
    return (*body)[kind].value("id", std::string());
  }

  http::Router identity_router_;
  std::string identity_admin_;
};

}  // namespace concord::test_support

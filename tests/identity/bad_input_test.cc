// Hostile and malformed input on every route that takes a body, on paths and on the auth
// request: always a clean Keystone error (400/404/...), never a 500.
#include <nlohmann/json.hpp>

#include "identity/auth_request.h"
#include "identity_test_util.h"

namespace concord::identity::testing {
namespace {

using http::Method;

void expect_error(const Reply& r, int status, const std::string& what) {
  EXPECT_EQ(r.status, status) << what << ": " << r;
  ASSERT_TRUE(r.body.is_object()) << what << ": " << r.raw.body;
  ASSERT_TRUE(r.body.contains("error")) << what;
  const Json& e = r.body["error"];
  EXPECT_EQ(e["code"], status) << what;
  EXPECT_TRUE(e["title"].is_string()) << what;
  EXPECT_TRUE(e["message"].is_string()) << what;
  EXPECT_EQ(r.header("content-type").substr(0, 16), "application/json") << what;
}

class BadInputTest : public IdentityTest {
 protected:
  // Every route that takes a JSON body, with the key its body wraps the entity in.
  struct BodyRoute {
    Method method;
    std::string path;
    std::string key;
  };
  std::vector<BodyRoute> body_routes() {
    std::string tok = admin_token();
    std::string user = boot_.admin_user_id;
    std::string project = boot_.admin_project_id;
    std::string group = post("/v3/groups", {{"group", {{"name", "bg"}}}}, tok).body["group"]["id"];
    std::string role = create_role("brole");
    std::string svc_id =
        post("/v3/services", {{"service", {{"type", "bt"}}}}, tok).body["service"]["id"];
    std::string ep =
        post("/v3/endpoints",
             {{"endpoint", {{"service_id", svc_id}, {"interface", "public"}, {"url", "http://b"}}}},
             tok)
            .body["endpoint"]["id"];
    return {
        {Method::kPost, "/v3/domains", "domain"},
        {Method::kPatch, "/v3/domains/default", "domain"},
        {Method::kPost, "/v3/projects", "project"},
        {Method::kPatch, "/v3/projects/" + project, "project"},
        {Method::kPost, "/v3/users", "user"},
        {Method::kPatch, "/v3/users/" + user, "user"},
        {Method::kPost, "/v3/users/" + user + "/password", "user"},
        {Method::kPost, "/v3/groups", "group"},
        {Method::kPatch, "/v3/groups/" + group, "group"},
        {Method::kPost, "/v3/roles", "role"},
        {Method::kPatch, "/v3/roles/" + role, "role"},
        {Method::kPost, "/v3/regions", "region"},
        {Method::kPut, "/v3/regions/new-region", "region"},
        {Method::kPatch, "/v3/regions/RegionOne", "region"},
        {Method::kPost, "/v3/services", "service"},
        {Method::kPatch, "/v3/services/" + svc_id, "service"},
        {Method::kPost, "/v3/endpoints", "endpoint"},
        {Method::kPatch, "/v3/endpoints/" + ep, "endpoint"},
        {Method::kPost, "/v3/users/" + user + "/application_credentials", "application_credential"},
        {Method::kPut, "/v3/projects/" + project + "/tags", "tags"},
        {Method::kPost, "/v3/auth/tokens", "auth"},
    };
  }
};

TEST_F(BadInputTest, MalformedBodiesAreRejectedEverywhere) {
  std::string deep(200, '[');
  std::vector<std::pair<std::string, std::string>> bodies = {
      {"empty", ""},
      {"truncated", "{\"x\":"},
      {"not json", "hello"},
      {"array", "[]"},
      {"number", "5"},
      {"deep nesting", deep + std::string(200, ']')},
      {"lone surrogate", "{\"a\":\"\\ud800\"}"},
      {"invalid utf-8", "{\"a\":\"\xff\xfe\"}"},
      {"nul", std::string("{\"a\":\0}", 7)},
  };
  for (const BodyRoute& route : body_routes()) {
    for (const auto& [what, body] : bodies) {
      Reply r = call(route.method, route.path, body, admin_token());
      expect_error(r, 400,
                   std::string(http::method_name(route.method)) + " " + route.path + " " + what);
    }
    // The wrapper key with the wrong type.
    for (const Json& wrong : {Json(5), Json("x"), Json::array(), Json(nullptr)}) {
      if (route.key == "tags" && wrong.is_array()) continue;  // an empty tag list is valid
      Json body = {{route.key, wrong}};
      Reply r = call(route.method, route.path, dump_json(body), admin_token());
      expect_error(r, 400, route.path + " " + route.key + "=" + dump_json(wrong));
    }
  }
}

TEST_F(BadInputTest, WrongFieldTypesAndLimits) {
  std::string tok = admin_token();
  struct Case {
    std::string path;
    Json body;
  };
  std::string long_name(300, 'n');
  std::string huge(100000, 'h');
  std::vector<Case> cases = {
      {"/v3/projects", {{"project", {{"name", 5}}}}},
      {"/v3/projects", {{"project", {{"name", "ok"}, {"enabled", "yes"}}}}},
      {"/v3/projects", {{"project", {{"name", "ok"}, {"enabled", 1}}}}},
      {"/v3/projects", {{"project", {{"name", "ok"}, {"description", 7}}}}},
      {"/v3/projects", {{"project", {{"name", "ok"}, {"domain_id", std::string(65, 'd')}}}}},
      {"/v3/projects", {{"project", {{"name", "ok"}, {"domain_id", "bad id!"}}}}},
      {"/v3/projects", {{"project", {{"name", "ok"}, {"tags", "a"}}}}},
      {"/v3/projects", {{"project", {{"name", "ok"}, {"tags", {1}}}}}},
      {"/v3/projects", {{"project", {{"name", "   "}}}}},
      {"/v3/projects", {{"project", {{"description", "no name"}}}}},
      {"/v3/projects", {{"project", {{"name", huge}}}}},
      {"/v3/domains", {{"domain", {{"name", true}}}}},
      {"/v3/domains", {{"domain", {{"name", long_name}}}}},
      {"/v3/users", {{"user", {{"name", Json::array()}}}}},
      {"/v3/users", {{"user", {{"name", long_name}}}}},
      {"/v3/users", {{"user", {{"name", "u"}, {"password", 5}}}}},
      {"/v3/users", {{"user", {{"name", "u"}, {"password", std::string(5000, 'p')}}}}},
      {"/v3/users", {{"user", {{"name", "u"}, {"enabled", "true"}}}}},
      {"/v3/users", {{"user", {{"name", "u"}, {"default_project_id", 3}}}}},
      {"/v3/groups", {{"group", {{"name", nullptr}}}}},
      {"/v3/roles", {{"role", {{"name", long_name}}}}},
      {"/v3/roles", {{"role", {{"name", ""}}}}},
      {"/v3/services", {{"service", {{"type", 5}}}}},
      {"/v3/services", {{"service", {{"type", long_name}}}}},
      {"/v3/services", {{"service", {{"type", "t"}, {"enabled", "False"}}}}},
      {"/v3/regions", {{"region", {{"id", 5}}}}},
      {"/v3/regions", {{"region", {{"id", long_name}}}}},
      {"/v3/endpoints", {{"endpoint", {{"interface", "public"}, {"url", "http://x"}}}}},
      {"/v3/endpoints",
       {{"endpoint",
         {{"interface", "public"}, {"service_id", "s"}, {"url", std::string(300, 'u')}}}}},
      {"/v3/users/" + boot_.admin_user_id + "/password",
       {{"user", {{"original_password", "admin-secret"}}}}},
      {"/v3/users/" + boot_.admin_user_id + "/password",
       {{"user", {{"original_password", "admin-secret"}, {"password", "x"}, {"extra", 1}}}}},
      {"/v3/users/" + boot_.admin_user_id + "/application_credentials",
       {{"application_credential", {{"name", 5}}}}},
      {"/v3/users/" + boot_.admin_user_id + "/application_credentials",
       {{"application_credential", {{"name", "a"}, {"expires_at", "tomorrow"}}}}},
      {"/v3/users/" + boot_.admin_user_id + "/application_credentials",
       {{"application_credential", {{"name", "a"}, {"roles", "admin"}}}}},
      {"/v3/users/" + boot_.admin_user_id + "/application_credentials",
       {{"application_credential", {{"name", "a"}, {"unrestricted", "yes"}}}}},
      {"/v3/users/" + boot_.admin_user_id + "/application_credentials",
       {{"application_credential", {{"name", "a"}, {"access_rules", {{{"path", 1}}}}}}}},
  };
  for (const Case& c : cases) {
    Reply r = post(c.path, c.body, tok);
    std::string shown = dump_json(c.body).substr(0, 120);
    expect_error(r, 400, c.path + " " + shown);
  }
  // Long names at the limit are fine; over it, 400 (counted in characters, not bytes).
  std::string accents;
  for (int i = 0; i < 64; ++i) accents += "\xc3\xa9";  // 64 x U+00E9, 128 bytes
  EXPECT_EQ(post("/v3/projects", {{"project", {{"name", accents}}}}, tok).status, 201);
}

TEST_F(BadInputTest, SqlLookingAndUnicodeNamesAreStoredVerbatim) {
  std::string tok = admin_token();
  for (std::string name :
       {std::string("x'); DROP TABLE identity_projects;--"), std::string("\" OR 1=1 --"),
        std::string("%00%ff"), std::string("名前 🙂"), std::string("a\\b/c?d")}) {
    Reply r = post("/v3/projects", {{"project", {{"name", name}}}}, tok);
    ASSERT_EQ(r.status, 201) << name << " " << r;
    std::string id = r.body["project"]["id"];
    EXPECT_EQ(get("/v3/projects/" + id, tok).body["project"]["name"], name);
    std::string encoded;
    for (unsigned char ch : name) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", ch);
      encoded += buf;
    }
    Reply listed = get("/v3/projects?name=" + encoded, tok);
    ASSERT_EQ(listed.status, 200) << listed;
    ASSERT_EQ(listed.body["projects"].size(), 1u) << name;
    EXPECT_EQ(listed.body["projects"][0]["id"], id);
  }
  EXPECT_EQ(get("/v3/projects", tok).status, 200);
}

TEST_F(BadInputTest, HostilePathsAreNotFound) {
  std::string tok = admin_token();
  for (const std::string& path : std::vector<std::string>{
           "/v3/projects/%FF%FE", "/v3/users/%C0%AF", "/v3/domains/%00",
           "/v3/projects/" + std::string(5000, 'a'), "/v3/roles/..%2F..%2Fetc",
           "/v3/groups/%ED%A0%80", "/v3/regions/%F0%9F%99%82", "/v3/endpoints/'%20OR%201=1"}) {
    Reply r = get(path, tok);
    expect_error(r, 404, path);
  }
  expect_error(get("/v3/projects?name=%00", tok), 400, "NUL in a query parameter");
  expect_error(post("/v3/projects", {{"project", {{"name", std::string("a\0b", 3)}}}}, tok), 400,
               "NUL in a name");
  expect_error(get("/v3/nothing/here", tok), 404, "unknown route");
  expect_error(call(Method::kPatch, "/v3/auth/tokens", "{}", tok), 405, "wrong method");
  // Unauthenticated on an unknown resource is still 401 first (no existence oracle).
  expect_error(get("/v3/projects/whatever", ""), 401, "no token");
}

TEST_F(BadInputTest, AuthRequestValidation) {
  struct Case {
    std::string what;
    std::string body;
  };
  std::vector<Case> cases = {
      {"no auth", R"({})"},
      {"auth not object", R"({"auth":[]})"},
      {"no identity", R"({"auth":{}})"},
      {"no methods", R"({"auth":{"identity":{}}})"},
      {"methods not array", R"({"auth":{"identity":{"methods":"password"}}})"},
      {"empty methods", R"({"auth":{"identity":{"methods":[]}}})"},
      {"method not string", R"({"auth":{"identity":{"methods":[5]}}})"},
      {"unknown method", R"({"auth":{"identity":{"methods":["kerberos"]}}})"},
      {"password missing", R"({"auth":{"identity":{"methods":["password"]}}})"},
      {"user missing", R"({"auth":{"identity":{"methods":["password"],"password":{}}}})"},
      {"user id not string",
       R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"id":5,"password":"x"}}}}})"},
      {"name without domain",
       R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"a","password":"x"}}}}})"},
      {"password not string",
       R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"a","password":1}}}}})"},
      {"token id missing", R"({"auth":{"identity":{"methods":["token"],"token":{}}}})"},
      {"secret missing",
       R"({"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"a"}}}})"},
      {"bad scope string",
       R"({"auth":{"identity":{"methods":["token"],"token":{"id":"t"}},"scope":"everything"}})"},
      {"two scopes",
       R"({"auth":{"identity":{"methods":["token"],"token":{"id":"t"}},"scope":{"project":{"id":"p"},"domain":{"id":"d"}}}})"},
      {"system false",
       R"({"auth":{"identity":{"methods":["token"],"token":{"id":"t"}},"scope":{"system":{"all":false}}}})"},
      {"NUL in a user name",
       R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"a\u0000b","domain":{"id":"default"},"password":"x"}}}}})"},
      {"project name without domain",
       R"({"auth":{"identity":{"methods":["token"],"token":{"id":"t"}},"scope":{"project":{"name":"p"}}}})"},
  };
  for (const Case& c : cases) {
    EXPECT_CODE(parse_auth_request(c.body), Code::kInvalidArgument);
    expect_error(call(Method::kPost, "/v3/auth/tokens", c.body), 400, c.what);
  }
}

TEST(AuthRequestParse, AcceptsTheShapesClientsSend) {
  auto r = parse_auth_request(
      R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"password":"secret",
      "name":"demo","domain":{"name":"Default"}}}},"scope":{"project":{"name":"demo",
      "domain":{"name":"Default"}}}}})");
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->methods, std::vector<std::string>{"password"});
  EXPECT_EQ(r->password->user.name, "demo");
  EXPECT_EQ(r->password->user.domain_name, "Default");
  EXPECT_EQ(r->scope, ScopeRequest::kProject);
  EXPECT_EQ(r->project_name, "demo");
  EXPECT_EQ(r->project_domain_name, "Default");

  auto ac = parse_auth_request(
      R"({"auth":{"identity":{"methods":["application_credential"],
      "application_credential":{"secret":"s3cr3t","id":"ac1"}}}})");
  ASSERT_TRUE(ac.has_value());
  EXPECT_EQ(ac->app_cred->id, "ac1");
  EXPECT_EQ(ac->scope, ScopeRequest::kDefault);

  auto sys = parse_auth_request(
      R"({"auth":{"identity":{"methods":["token"],"token":{"id":"t"}},"scope":{"system":{"all":true}}}})");
  ASSERT_TRUE(sys.has_value());
  EXPECT_EQ(sys->scope, ScopeRequest::kSystem);
  auto unscoped = parse_auth_request(
      R"({"auth":{"identity":{"methods":["token"],"token":{"id":"t"}},"scope":"unscoped"}})");
  ASSERT_TRUE(unscoped.has_value());
  EXPECT_EQ(unscoped->scope, ScopeRequest::kUnscoped);
}

// Keystone parses a body only when the Content-Type says JSON (or is absent); anything else is
// 400 with its ValidationError message, before any handler runs.
TEST_F(BadInputTest, BodyMustBeDeclaredAsJson) {
  std::string tok = admin_token();
  std::string body = dump_json({{"project", {{"name", "ct-plain"}}}});
  for (const char* type : {"text/plain", "application/x-www-form-urlencoded", "text/json"}) {
    Reply r = call(Method::kPost, "/v3/projects", body, tok, {{"content-type", type}});
    expect_error(r, 400, type);
    EXPECT_EQ(r.message(),
              "Expecting to find application/json in Content-Type header. The server could not "
              "comply with the request since it is either malformed or otherwise incorrect. The "
              "client is assumed to be in error.")
        << type;
  }
  // PATCH and PUT are checked the same way.
  Reply patch_plain =
      call(Method::kPatch, "/v3/projects/" + boot_.admin_project_id,
           dump_json({{"project", {{"description", "x"}}}}), tok, {{"content-type", "text/plain"}});
  expect_error(patch_plain, 400, "PATCH text/plain");
  // Parameters and case do not matter, and +json types are JSON (as Flask's is_json).
  int n = 0;
  for (const char* type : {"application/json; charset=UTF-8", "Application/JSON",
                           " application/json ;charset=utf-8", "application/merge-patch+json"}) {
    std::string name = "ct-ok-" + std::to_string(n++);
    Reply r = call(Method::kPost, "/v3/projects", dump_json({{"project", {{"name", name}}}}), tok,
                   {{"content-type", type}});
    EXPECT_EQ(r.status, 201) << type << ": " << r;
  }
  // An empty Content-Type counts as absent: the body is parsed as JSON (Keystone does too).
  Reply untyped =
      call(Method::kPost, "/v3/projects", dump_json({{"project", {{"name", "ct-untyped"}}}}), tok,
           {{"content-type", ""}});
  EXPECT_EQ(untyped.status, 201) << untyped;
  // No body: the Content-Type is irrelevant (PUT of a grant, tag, ...).
  Reply tag = call(Method::kPut, "/v3/projects/" + boot_.admin_project_id + "/tags/ct", "", tok,
                   {{"content-type", "text/plain"}});
  EXPECT_EQ(tag.status, 201) << tag;
}

}  // namespace
}  // namespace concord::identity::testing

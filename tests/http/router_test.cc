#include "http/router.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/json.h"
#include "http/message.h"
#include "test_util.h"

namespace concord::http {
namespace {

Handler echo(std::string tag) {
  return [tag](Request& req) {
    Json body = {{"tag", tag}, {"params", req.params}, {"path", sanitize_utf8(req.path)}};
    return Response::json(200, dump_json(body));
  };
}

Json body_of(const Response& r) {
  auto parsed = parse_json(r.body);
  EXPECT_TRUE(parsed.has_value()) << "body is not valid JSON: " << r.body;
  return parsed ? *parsed : Json();
}

Request make_request(Method method, std::string target) {
  Request req;
  req.method = method;
  req.target = std::move(target);
  return req;
}

TEST(RouteTableTest, MatchesLiteralsAndParams) {
  RouteTable t;
  t.add(Method::kGet, "/v3/projects/{id}", echo("project"));
  t.add(Method::kGet, "/v3/projects", echo("list"));

  auto m = t.match(Method::kGet, "/v3/projects/abc");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(*m.name, "GET /v3/projects/{id}");
  EXPECT_EQ(m.params, std::vector<std::string>{"abc"});

  m = t.match(Method::kGet, "/v3/projects");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(*m.name, "GET /v3/projects");
  EXPECT_TRUE(m.params.empty());

  EXPECT_EQ(t.match(Method::kGet, "/v3/projects/abc/extra").handler, nullptr);
  EXPECT_EQ(t.match(Method::kGet, "/v3").handler, nullptr);
}

TEST(RouteTableTest, TrailingSlashIsIgnoredButEmptySegmentsDoNotMatchParams) {
  RouteTable t;
  t.add(Method::kGet, "/v3/projects/{id}", echo("project"));
  t.add(Method::kGet, "/v3/projects", echo("list"));
  EXPECT_NE(t.match(Method::kGet, "/v3/projects/").handler, nullptr);
  auto m = t.match(Method::kGet, "/v3/projects/abc/");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.params, std::vector<std::string>{"abc"});
  // "//" leaves an empty segment, which a {param} does not accept.
  EXPECT_EQ(t.match(Method::kGet, "/v3/projects//").handler, nullptr);
}

TEST(RouteTableTest, ParamsArePercentDecodedAndEncodedSlashesStayInTheSegment) {
  RouteTable t;
  t.add(Method::kGet, "/v3/users/{id}/groups", echo("groups"));
  auto m = t.match(Method::kGet, "/v3/users/a%20b%2Fc/groups");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.params, std::vector<std::string>{"a b/c"});
  // Literal segments compare decoded too.
  EXPECT_NE(t.match(Method::kGet, "/v3/users/x/%67roups").handler, nullptr);
}

TEST(RouteTableTest, LiteralBeatsParamWhateverTheOrder) {
  RouteTable t;
  t.add(Method::kGet, "/v3/users/{id}", echo("by-id"));
  t.add(Method::kGet, "/v3/users/me", echo("me"));
  auto m = t.match(Method::kGet, "/v3/users/me");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(*m.name, "GET /v3/users/me");
  m = t.match(Method::kGet, "/v3/users/other");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(*m.name, "GET /v3/users/{id}");
}

TEST(RouteTableTest, MethodMismatchReportsAllowedMethodsWithHeadForGet) {
  RouteTable t;
  t.add(Method::kGet, "/v3/projects/{id}", echo("get"));
  t.add(Method::kDelete, "/v3/projects/{id}", echo("delete"));
  t.add(Method::kPatch, "/v3/projects/{id}", echo("patch"));
  auto m = t.match(Method::kPost, "/v3/projects/abc");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_EQ(m.allowed,
            (std::vector<Method>{Method::kGet, Method::kHead, Method::kPatch, Method::kDelete}));
  EXPECT_TRUE(t.match(Method::kPost, "/nowhere").allowed.empty());
}

TEST(RouteTableTest, HeadFallsBackToGetUnlessAHeadRouteExists) {
  RouteTable t;
  t.add(Method::kGet, "/a", echo("get-a"));
  t.add(Method::kGet, "/b", echo("get-b"));
  t.add(Method::kHead, "/b", echo("head-b"));
  auto m = t.match(Method::kHead, "/a");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(*m.name, "GET /a");
  m = t.match(Method::kHead, "/b");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(*m.name, "HEAD /b");
}

TEST(RouteTableTest, CustomRouteNameIsTheMetricsLabel) {
  RouteTable t;
  t.add(Method::kGet, "/v3/auth/tokens", echo("x"), "identity:GET /v3/auth/tokens");
  auto m = t.match(Method::kGet, "/v3/auth/tokens");
  ASSERT_NE(m.name, nullptr);
  EXPECT_EQ(*m.name, "identity:GET /v3/auth/tokens");
}

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto identity = std::make_shared<RouteTable>();
    identity->add(Method::kGet, "/", echo("identity-root"));
    identity->add(Method::kGet, "/v3/projects/{id}", echo("project"));
    identity->add(Method::kGet, "/v3/users/{id}", echo("user"));
    identity->add(Method::kPost, "/v3/users/{id}", echo("user-post"));
    identity->add(Method::kGet, "/boom",
                  [](Request&) -> Response { throw std::runtime_error("database exploded \xff"); });
    identity->add(Method::kGet, "/sized",
                  [](Request&) { return Response::json(200, R"({"a":"0123456789"})"); });
    auto compute = std::make_shared<RouteTable>();
    compute->add(Method::kGet, "/v2.1/servers", echo("servers"));
    compute->add(Method::kGet, "/boom", [](Request&) -> Response { throw 42; });
    auto root = std::make_shared<RouteTable>();
    root->add(Method::kGet, "/", echo("versions"));
    router_.mount("/identity", identity, keystone_style_error);
    router_.mount("/compute/", compute, test::nova_style_error);  // trailing slash normalised
    router_.mount("", root, keystone_style_error);
  }

  Response dispatch(Request& req) { return router_.dispatch(req, route_); }

  Router router_;
  std::string route_;
};

TEST_F(RouterTest, LongestPrefixMountServesAndStripsThePrefix) {
  Request req = make_request(Method::kGet, "/identity/v3/projects/p1?fields=name");
  req.base_url = "http://example.test:5000";
  Response r = dispatch(req);
  ASSERT_EQ(r.status, 200);
  Json body = body_of(r);
  EXPECT_EQ(body["tag"], "project");
  EXPECT_EQ(body["params"], Json::array({"p1"}));
  EXPECT_EQ(req.path, "/v3/projects/p1");
  EXPECT_EQ(req.query, "fields=name");
  EXPECT_EQ(req.base_url, "http://example.test:5000/identity");
  EXPECT_EQ(route_, "GET /v3/projects/{id}");

  Request bare = make_request(Method::kGet, "/identity");
  r = dispatch(bare);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r)["tag"], "identity-root");

  Request versions = make_request(Method::kGet, "/");
  EXPECT_EQ(body_of(dispatch(versions))["tag"], "versions");
}

TEST_F(RouterTest, PrefixMatchesWholeSegmentsOnly) {
  // "/identityx" belongs to the root mount, which has no such route: 404 in its format.
  Request req = make_request(Method::kGet, "/identityx/v3/projects/p1");
  Response r = dispatch(req);
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(body_of(r).contains("error"));
  EXPECT_EQ(route_, "unmatched");
}

TEST_F(RouterTest, NotFoundUsesTheMountsErrorFormat) {
  Request a = make_request(Method::kGet, "/identity/v3/nothing");
  Response r = dispatch(a);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/json");
  Json body = body_of(r);
  EXPECT_EQ(body["error"]["code"], 404);
  EXPECT_EQ(body["error"]["title"], "Not Found");

  Request b = make_request(Method::kGet, "/compute/v2.1/flavors");
  r = dispatch(b);
  EXPECT_EQ(r.status, 404);
  body = body_of(r);
  ASSERT_TRUE(body.contains("itemNotFound")) << r.body;
  EXPECT_EQ(body["itemNotFound"]["code"], 404);
}

TEST_F(RouterTest, MethodNotAllowedCarriesAllowInTheMountsFormat) {
  Request req = make_request(Method::kDelete, "/identity/v3/users/u1");
  Response r = dispatch(req);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD, POST");
  EXPECT_EQ(body_of(r)["error"]["title"], "Method Not Allowed");

  Request nova = make_request(Method::kPut, "/compute/v2.1/servers");
  r = dispatch(nova);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_TRUE(body_of(r).contains("computeFault"));
}

TEST_F(RouterTest, UnknownMethodIsMethodNotAllowedEvenOnUnknownPaths) {
  Request known = make_request(Method::kOther, "/identity/v3/users/u1");
  Response r = dispatch(known);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD, POST");
  Request unknown = make_request(Method::kOther, "/identity/nowhere");
  r = dispatch(unknown);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(body_of(r)["error"]["code"], 405);
}

TEST_F(RouterTest, HeadRunsGetAndDropsTheBodyKeepingItsLength) {
  Request req = make_request(Method::kHead, "/identity/sized");
  Response r = dispatch(req);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(r.header("content-length"),
            std::to_string(std::string(R"({"a":"0123456789"})").size()));
  EXPECT_EQ(r.header("content-type"), "application/json");
}

TEST_F(RouterTest, NonUtf8AndPercentEncodedJunkGivesValidJson404) {
  Request req = make_request(Method::kGet, "/identity/%FF%FE%00/\xC3\x28/%zz/%");
  Response r = dispatch(req);
  EXPECT_EQ(r.status, 404);
  Json body = body_of(r);  // parse_json rejects invalid UTF-8, so this checks the body
  std::string message = body["error"]["message"];
  EXPECT_NE(message.find("\xEF\xBF\xBD"), std::string::npos) << message;
  EXPECT_NE(message.find("%zz"), std::string::npos) << message;
}

TEST_F(RouterTest, VeryLongPathsAreTruncatedInTheMessage) {
  Request req = make_request(Method::kGet, "/identity/" + std::string(5000, 'a'));
  Response r = dispatch(req);
  EXPECT_EQ(r.status, 404);
  EXPECT_LT(r.body.size(), 1000u);
}

TEST_F(RouterTest, ThrowingHandlerBecomes500InTheMountsFormat) {
  Request req = make_request(Method::kGet, "/identity/boom");
  Response r = dispatch(req);
  EXPECT_EQ(r.status, 500);
  Json body = body_of(r);
  EXPECT_EQ(body["error"]["code"], 500);
  // The exception text is logged, never shown to the client.
  EXPECT_EQ(std::string(body["error"]["message"]).find("exploded"), std::string::npos);
  EXPECT_EQ(route_, "GET /boom");

  Request nova = make_request(Method::kGet, "/compute/boom");
  r = dispatch(nova);
  EXPECT_EQ(r.status, 500);
  EXPECT_TRUE(body_of(r).contains("computeFault"));
}

TEST_F(RouterTest, ErrorForPicksTheMountOfARawPath) {
  Response r = router_.error_for("/compute/v2.1/servers?x=1", 413, "too big");
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(body_of(r).contains("overLimit"));
  r = router_.error_for("/identity/v3/auth/tokens", 431, "headers");
  EXPECT_EQ(body_of(r)["error"]["title"], "Request Header Fields Too Large");
}

TEST_F(RouterTest, RequestBuiltWithPathOnlyIsRouted) {
  Request req;
  req.method = Method::kGet;
  req.path = "/identity/v3/users/u%201";
  Response r = dispatch(req);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r)["params"], Json::array({"u 1"}));
}

TEST(RouterNoMountTest, EmptyRouterAnswers404InKeystoneFormat) {
  Router router;
  std::string route;
  Request req = make_request(Method::kGet, "/anything");
  Response r = router.dispatch(req, route);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(route, "unmatched");
  EXPECT_EQ(body_of(r)["error"]["code"], 404);
}

TEST(RouterFormatterTest, ThrowingFormatterFallsBackToKeystoneShape) {
  Router router;
  router.mount("/x", std::make_shared<RouteTable>(),
               [](int, std::string_view) -> Response { throw std::runtime_error("bad"); });
  std::string route;
  Request req = make_request(Method::kGet, "/x/nothing");
  Response r = router.dispatch(req, route);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(body_of(r)["error"]["code"], 404);
}

TEST(KeystoneErrorTest, ShapeAndContentType) {
  Response r = keystone_style_error(404, "Could not find project: p1.");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/json");
  Json body = body_of(r);
  EXPECT_EQ(body, Json::parse(R"({"error":{"code":404,"title":"Not Found",
                                  "message":"Could not find project: p1."}})"));
  r = keystone_style_error(401, "bad \xff token");
  body = body_of(r);
  EXPECT_EQ(body["error"]["title"], "Unauthorized");
  EXPECT_EQ(body["error"]["message"], "bad \xEF\xBF\xBD token");
}

TEST(MessageTest, QueryParamsAreDecodedInOrderWithRepeats) {
  Request req;
  req.query = "name=a%20b&flag&x=1+2&name=c&=v&&enc%61=%zz";
  auto params = req.query_params();
  std::vector<std::pair<std::string, std::string>> expected = {
      {"name", "a b"}, {"flag", ""}, {"x", "1 2"}, {"name", "c"}, {"", "v"}, {"enca", "%zz"}};
  EXPECT_EQ(params, expected);
  EXPECT_EQ(req.query_param("name"), "a b");
  EXPECT_EQ(req.query_param("flag"), "");
  EXPECT_EQ(req.query_param("enca"), "%zz");
  EXPECT_EQ(req.query_param("missing"), std::nullopt);
}

TEST(MessageTest, PercentDecodeKeepsMalformedEscapes) {
  EXPECT_EQ(percent_decode("a%2Fb%2fc"), "a/b/c");
  EXPECT_EQ(percent_decode("%"), "%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("%G1x"), "%G1x");
  EXPECT_EQ(percent_decode("a+b"), "a+b");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("%00"), std::string("\0", 1));
}

TEST(MessageTest, HeadersAreCaseInsensitiveAndSetHeaderReplaces) {
  Request req;
  req.headers = {{"x-auth-token", "t1"}, {"X-Other", "o"}};
  EXPECT_EQ(req.header("x-auth-token"), "t1");
  EXPECT_EQ(req.header("x-other"), "o");
  EXPECT_TRUE(req.has_header("x-other"));
  EXPECT_FALSE(req.has_header("x-missing"));
  EXPECT_EQ(req.header("x-missing"), "");

  Response r = Response::json(201, "{}");
  r.set_header("Content-Type", "application/problem+json");
  r.set_header("X-Subject-Token", "abc");
  EXPECT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
  EXPECT_EQ(r.header("x-subject-token"), "abc");
  EXPECT_EQ(Response::empty(204).status, 204);
  EXPECT_TRUE(Response::empty(204).body.empty());
}

TEST(MessageTest, MethodNames) {
  EXPECT_EQ(method_name(Method::kGet), "GET");
  EXPECT_EQ(method_name(Method::kPatch), "PATCH");
  EXPECT_EQ(method_name(Method::kOther), "OTHER");
}

}  // namespace
}  // namespace concord::http

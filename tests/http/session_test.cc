// The connection logic without sockets, through the testing entry points the fuzzer uses.
#include <gtest/gtest.h>

#include <regex>

#include "base/json.h"
#include "http/router.h"
#include "http/testing.h"
#include "test_util.h"

namespace concord::http {
namespace {

using testing::handle_raw_request;
using testing::serve_raw_connection;

std::vector<test::ParsedResponse> parse_all(std::string_view wire,
                                            const std::vector<bool>& head = {}) {
  std::vector<test::ParsedResponse> out;
  while (!wire.empty()) {
    test::ParsedResponse r;
    bool is_head = out.size() < head.size() && head[out.size()];
    size_t used = test::parse_response(wire, r, is_head);
    if (used == 0) {
      ADD_FAILURE() << "unparseable response bytes: " << wire;
      break;
    }
    out.push_back(r);
    wire.remove_prefix(used);
  }
  return out;
}

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto identity = std::make_shared<RouteTable>();
    identity->add(Method::kGet, "/v3/items/{id}", [](Request& req) {
      return Response::json(200, dump_json(Json{{"id", req.params.at(0)}}));
    });
    identity->add(Method::kPost, "/v3/echo", [](Request& req) {
      Response r = Response::json(200, dump_json(Json{{"body", req.body}}));
      return r;
    });
    identity->add(Method::kGet, "/v3/whoami", [](Request& req) {
      return Response::json(200, dump_json(Json{{"base_url", req.base_url},
                                                {"request_id", req.request_id},
                                                {"target", req.target},
                                                {"host", std::string(req.header("host"))}}));
    });
    identity->add(Method::kGet, "/v3/evil-header", [](Request&) {
      Response r = Response::json(200, "{}");
      r.set_header("X-Injected", "a\r\nSet-Cookie: stolen=1");
      r.set_header("Content-Length", "999");
      r.set_header("bad header", "dropped");
      return r;
    });
    identity->add(Method::kDelete, "/v3/items/{id}", [](Request&) { return Response::empty(204); });
    auto compute = std::make_shared<RouteTable>();
    compute->add(Method::kGet, "/servers", [](Request&) { return Response::json(200, "[]"); });
    router_.mount("/identity", identity, keystone_style_error);
    router_.mount("/compute", compute, test::nova_style_error);
    options_.max_header_bytes = 1024;
    options_.max_body_bytes = 64;
  }

  Router router_;
  ServerOptions options_;
};

TEST_F(SessionTest, SimpleGetCarriesTheStandardHeaders) {
  std::string wire = serve_raw_connection(
      router_, "GET /identity/v3/items/i%201 HTTP/1.1\r\nHost: h\r\n\r\n", options_);
  auto rs = parse_all(wire);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, 200);
  EXPECT_EQ(rs[0].body, R"({"id":"i 1"})");
  EXPECT_EQ(rs[0].header("content-length"), std::to_string(rs[0].body.size()));
  EXPECT_EQ(rs[0].header("content-type"), "application/json");
  EXPECT_TRUE(
      std::regex_match(rs[0].header("date"),
                       std::regex(R"([A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT)")))
      << rs[0].header("date");
  EXPECT_TRUE(std::regex_match(
      rs[0].header("x-openstack-request-id"),
      std::regex("req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << rs[0].header("x-openstack-request-id");
  EXPECT_TRUE(rs[0].keep_alive);
}

TEST_F(SessionTest, RequestSeesIdBaseUrlAndHost) {
  Response r = handle_raw_request(
      router_, "GET /identity/v3/whoami HTTP/1.1\r\nHost: cloud.example:5000\r\n\r\n", options_);
  ASSERT_EQ(r.status, 200);
  Json body = *parse_json(r.body);
  EXPECT_EQ(body["base_url"], "http://cloud.example:5000/identity");
  EXPECT_EQ(std::string(body["request_id"]).substr(0, 4), "req-");
  EXPECT_EQ(body["host"], "cloud.example:5000");
}

TEST_F(SessionTest, ImplausibleHostFallsBackToTheBoundAddress) {
  Response r = handle_raw_request(
      router_, "GET /identity/v3/whoami HTTP/1.1\r\nHost: evil\"/x\r\n\r\n", options_);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ((*parse_json(r.body))["base_url"], "http://127.0.0.1:0/identity");
  r = handle_raw_request(router_, "GET /identity/v3/whoami HTTP/1.0\r\n\r\n", options_);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ((*parse_json(r.body))["base_url"], "http://127.0.0.1:0/identity");
}

TEST_F(SessionTest, AbsoluteFormTargetIsReducedToOriginForm) {
  Response r = handle_raw_request(
      router_, "GET http://h:1/identity/v3/whoami?x=1 HTTP/1.1\r\nHost: h:1\r\n\r\n", options_);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ((*parse_json(r.body))["target"], "/identity/v3/whoami?x=1");
  r = handle_raw_request(router_, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", options_);
  EXPECT_EQ(r.status, 400);
}

TEST_F(SessionTest, HeadAtExactlyTheLimitIsAcceptedOneMoreByteIs431) {
  std::string start = "GET /identity/v3/items/x HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  std::string end = "\r\n\r\n";
  std::string exact =
      start + std::string(options_.max_header_bytes - start.size() - end.size(), 'a') + end;
  ASSERT_EQ(exact.size(), options_.max_header_bytes);
  EXPECT_EQ(handle_raw_request(router_, exact, options_).status, 200);
  std::string over =
      start + std::string(options_.max_header_bytes - start.size() - end.size() + 1, 'a') + end;
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{7}, size_t{100}}) {
    Response r = handle_raw_request(router_, over, options_, chunk);
    EXPECT_EQ(r.status, 431) << "chunk " << chunk;
    EXPECT_EQ((*parse_json(r.body))["error"]["title"], "Request Header Fields Too Large");
  }
  EXPECT_EQ(handle_raw_request(router_, exact, options_, 1).status, 200);
}

TEST_F(SessionTest, OversizeHeadIsAnsweredInTheMountsFormatAndCloses) {
  std::string req = "GET /compute/servers HTTP/1.1\r\nHost: h\r\nX-Pad: " + std::string(5000, 'a') +
                    "\r\n\r\nGET /compute/servers HTTP/1.1\r\n\r\n";
  auto rs = parse_all(serve_raw_connection(router_, req, options_));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, 431);
  EXPECT_TRUE((*parse_json(rs[0].body)).contains("computeFault")) << rs[0].body;
  EXPECT_FALSE(rs[0].keep_alive);
  EXPECT_EQ(rs[0].header("connection"), "close");
}

TEST_F(SessionTest, HugeRequestLineIs431InTheRootFormat) {
  std::string req = "GET /" + std::string(5000, 'a') + " HTTP/1.1\r\n\r\n";
  Response r = handle_raw_request(router_, req, options_);
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ((*parse_json(r.body))["error"]["code"], 431);
}

// A request line over the head limit is never parsed, yet the error still comes in the format
// of the mount its first bytes name (Nova's here), whether it arrives at once or byte by byte.
TEST_F(SessionTest, HugeRequestLineUnderAMountIs431InThatMountsFormat) {
  for (const std::string& target : {"/compute/servers/" + std::string(5000, 'a'),
                                    "/compute/servers?q=" + std::string(5000, 'a')}) {
    const std::string req = "GET " + target + " HTTP/1.1\r\n\r\n";
    for (size_t chunk : {size_t{0}, size_t{1}, size_t{700}}) {
      Response r = handle_raw_request(router_, req, options_, chunk);
      EXPECT_EQ(r.status, 431) << chunk;
      EXPECT_TRUE((*parse_json(r.body)).contains("computeFault")) << chunk << " " << r.body;
    }
  }
  // A target that is not a path keeps the root format.
  Response odd =
      handle_raw_request(router_, "GET " + std::string(5000, 'x') + " HTTP/1.1\r\n\r\n", options_);
  EXPECT_EQ(odd.status, 431);
  EXPECT_EQ((*parse_json(odd.body))["error"]["code"], 431);
}

TEST_F(SessionTest, ContentLengthOverLimitIs413WithoutWaitingForTheBody) {
  // No body bytes at all: the answer must not depend on them.
  std::string req = "POST /compute/servers HTTP/1.1\r\nHost: h\r\nContent-Length: 65\r\n\r\n";
  auto rs = parse_all(serve_raw_connection(router_, req, options_));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, 413);
  EXPECT_TRUE((*parse_json(rs[0].body)).contains("overLimit")) << rs[0].body;
  EXPECT_EQ(rs[0].header("connection"), "close");
  // Exactly at the limit is fine.
  std::string ok =
      "POST /identity/v3/echo HTTP/1.1\r\nContent-Length: 64\r\n\r\n" + std::string(64, 'b');
  EXPECT_EQ(handle_raw_request(router_, ok, options_).status, 200);
}

TEST_F(SessionTest, ChunkedBodiesAreDecodedAndBoundedByTheSameLimit) {
  std::string ok =
      "POST /identity/v3/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{3}}) {
    Response r = handle_raw_request(router_, ok, options_, chunk);
    ASSERT_EQ(r.status, 200) << "chunk " << chunk;
    EXPECT_EQ((*parse_json(r.body))["body"], "hello world");
  }
  // 40 + 40 bytes > 64: refused at the chunk that crosses the limit.
  std::string big = "POST /identity/v3/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n" +
                    std::string(40, 'x') + "\r\n28\r\n" + std::string(40, 'y') + "\r\n0\r\n\r\n";
  EXPECT_EQ(handle_raw_request(router_, big, options_).status, 413);
  EXPECT_EQ(handle_raw_request(router_, big, options_, 5).status, 413);
}

TEST_F(SessionTest, GarbageIs400AndCloses) {
  for (std::string junk :
       {std::string("\x01\x02garbage\r\n\r\n"), std::string("GET\r\n\r\n"),
        std::string("GET / HTTP/9.9\r\n\r\n"), std::string("GET / HTTP/1.1\r\nbad header\r\n\r\n"),
        std::string("POST / HTTP/1.1\r\nContent-Length: 1\r\n"
                    "Content-Length: 2\r\n\r\nab"),
        std::string("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "zz\r\n")}) {
    auto rs = parse_all(serve_raw_connection(router_, junk + "GET / HTTP/1.1\r\n\r\n", options_));
    ASSERT_EQ(rs.size(), 1u) << junk;
    EXPECT_EQ(rs[0].status, 400) << junk;
    EXPECT_EQ(rs[0].header("connection"), "close") << junk;
    EXPECT_TRUE(parse_json(rs[0].body).has_value()) << rs[0].body;
  }
}

TEST_F(SessionTest, UnknownMethodIs405InTheMountsFormat) {
  Response r = handle_raw_request(router_, "BREW /compute/servers HTTP/1.1\r\n\r\n", options_);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_TRUE((*parse_json(r.body)).contains("computeFault"));
}

TEST_F(SessionTest, PipelinedRequestsAreAnsweredInOrderUntilClose) {
  std::string reqs =
      "GET /identity/v3/items/1 HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /identity/v3/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "GET /identity/v3/items/3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
      "GET /identity/v3/items/4 HTTP/1.1\r\nHost: h\r\n\r\n";
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{10}}) {
    auto rs = parse_all(serve_raw_connection(router_, reqs, options_, chunk));
    ASSERT_EQ(rs.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(rs[0].body, R"({"id":"1"})");
    EXPECT_EQ(rs[1].body, R"({"body":"abc"})");
    EXPECT_EQ(rs[2].body, R"({"id":"3"})");
    EXPECT_EQ(rs[2].header("connection"), "close");
    EXPECT_NE(rs[0].header("x-openstack-request-id"), rs[1].header("x-openstack-request-id"));
  }
}

TEST_F(SessionTest, Http10ClosesUnlessKeepAliveIsAsked) {
  auto rs = parse_all(serve_raw_connection(
      router_, "GET /identity/v3/items/1 HTTP/1.0\r\n\r\nGET /identity/v3/items/2 HTTP/1.0\r\n\r\n",
      options_));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].header("connection"), "close");
  rs = parse_all(serve_raw_connection(router_,
                                      "GET /identity/v3/items/1 HTTP/1.0\r\n"
                                      "Connection: keep-alive\r\n\r\n"
                                      "GET /identity/v3/items/2 HTTP/1.0\r\n\r\n",
                                      options_));
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].header("connection"), "keep-alive");
  EXPECT_EQ(rs[1].header("connection"), "close");
}

TEST_F(SessionTest, ExpectContinueGetsAnInterimResponseBeforeTheBody) {
  std::string head =
      "POST /identity/v3/echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
      "Content-Length: 2\r\n\r\n";
  // Body not yet sent: 100 Continue, then (input exhausted) the body timeout's 408.
  std::string wire = serve_raw_connection(router_, head, options_);
  EXPECT_EQ(wire.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0u) << wire;
  // Delivered in pieces: the interim response comes once the head is complete.
  wire = serve_raw_connection(router_, head + "ok", options_, head.size());
  ASSERT_EQ(wire.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0u) << wire;
  auto rs = parse_all(std::string_view(wire).substr(25));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].body, R"({"body":"ok"})");
  // Oversize with Expect: the 413 comes instead of 100 Continue.
  std::string big =
      "POST /identity/v3/echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n";
  EXPECT_EQ(serve_raw_connection(router_, big, options_).rfind("HTTP/1.1 413 ", 0), 0u);
}

TEST_F(SessionTest, IncompleteRequestGets408) {
  auto rs =
      parse_all(serve_raw_connection(router_, "GET /compute/servers HTTP/1.1\r\nHo", options_));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, 408);
  EXPECT_TRUE((*parse_json(rs[0].body)).contains("computeFault"));
  EXPECT_EQ(rs[0].header("connection"), "close");
  // A quiet client with no request in progress gets nothing.
  EXPECT_EQ(serve_raw_connection(router_, "", options_), "");
}

TEST_F(SessionTest, LeadingEmptyLinesAreIgnored) {
  Response r = handle_raw_request(router_, "\r\n\n\r\nGET /identity/v3/items/z HTTP/1.1\r\n\r\n",
                                  options_, 1);
  EXPECT_EQ(r.status, 200);
}

TEST_F(SessionTest, HeadOverTheWireHasGetsLengthAndNoBody) {
  std::string reqs =
      "HEAD /identity/v3/items/abc HTTP/1.1\r\nHost: h\r\n\r\n"
      "GET /identity/v3/items/abc HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string wire = serve_raw_connection(router_, reqs, options_);
  auto rs = parse_all(wire, {true, false});
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].status, 200);
  EXPECT_TRUE(rs[0].body.empty());
  EXPECT_EQ(rs[0].header("content-length"), std::to_string(rs[1].body.size()));
}

TEST_F(SessionTest, NoContentHasNoLengthAndNoBody) {
  std::string wire = serve_raw_connection(router_,
                                          "DELETE /identity/v3/items/1 HTTP/1.1\r\n\r\n"
                                          "GET /identity/v3/items/2 HTTP/1.1\r\n\r\n",
                                          options_);
  auto rs = parse_all(wire);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].status, 204);
  EXPECT_FALSE(rs[0].has("content-length"));
  EXPECT_EQ(rs[1].status, 200);
}

TEST_F(SessionTest, HandlerHeadersCannotSplitTheResponseOrOverrideFraming) {
  std::string wire =
      serve_raw_connection(router_, "GET /identity/v3/evil-header HTTP/1.1\r\n\r\n", options_);
  EXPECT_EQ(wire.find("\r\nSet-Cookie"), std::string::npos) << wire;
  auto rs = parse_all(wire);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].header("x-injected"), "a  Set-Cookie: stolen=1");
  EXPECT_EQ(rs[0].header("content-length"), "2");
  EXPECT_FALSE(rs[0].has("bad header"));
}

TEST_F(SessionTest, HealthAndMetricsAreBuiltIn) {
  Response r = handle_raw_request(router_, "GET /healthz HTTP/1.1\r\n\r\n", options_);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"status":"ok"})");
  ServerOptions sick = options_;
  sick.health = [] { return false; };
  r = handle_raw_request(router_, "GET /healthz HTTP/1.1\r\n\r\n", sick);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.header("content-type"), "application/json");
  r = handle_raw_request(router_, "GET /metrics HTTP/1.1\r\n\r\n", options_);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4");
  // Other methods on these paths go to the router like any path.
  EXPECT_EQ(handle_raw_request(router_, "POST /healthz HTTP/1.1\r\n\r\n", options_).status, 404);
}

}  // namespace
}  // namespace concord::http

// The server over real loopback sockets (port 0). Timeouts in the options are short so the
// timeout tests finish quickly; every wait in a test is bounded so a bug fails instead of hangs.
#include "http/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <regex>
#include <set>
#include <stdexcept>
#include <thread>

#include "base/json.h"
#include "test_util.h"

namespace concord::http {
namespace {

using namespace std::chrono_literals;
using test::ParsedResponse;
using test::TestClient;

std::string get(std::string_view path, std::string_view extra = "") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra) +
         "\r\n";
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    table_ = std::make_shared<RouteTable>();
    table_->add(Method::kGet, "/v3/items/{id}", [](Request& req) {
      return Response::json(200, dump_json(Json{{"id", req.params.at(0)},
                                                {"request_id", req.request_id},
                                                {"base_url", req.base_url}}));
    });
    table_->add(Method::kPost, "/v3/echo", [this](Request& req) {
      bodies_seen_.fetch_add(1);
      return Response::json(200, dump_json(Json{{"size", req.body.size()}}));
    });
    table_->add(Method::kGet, "/v3/boom",
                [](Request&) -> Response { throw std::runtime_error("handler bug"); });
    table_->add(Method::kGet, "/v3/slow", [this](Request&) {
      slow_entered_.set_value();
      release_slow_.get_future().wait();
      return Response::json(200, R"({"slow":"done"})");
    });
    auto compute = std::make_shared<RouteTable>();
    compute->add(Method::kGet, "/servers", [](Request&) { return Response::json(200, "[]"); });
    router_ = std::make_shared<Router>();
    router_->mount("/identity", table_, keystone_style_error);
    router_->mount("/compute", compute, test::nova_style_error);
    registry_ = std::make_shared<Registry>();

    options_.port = 0;
    options_.threads = 2;
    options_.max_header_bytes = 4096;
    options_.max_body_bytes = 1024;
    options_.header_timeout = 200ms;
    options_.body_timeout = 200ms;
    options_.idle_timeout = 300ms;
    options_.shutdown_grace = 10s;
  }

  void start() {
    server_ = std::make_unique<Server>(options_, router_, registry_);
    ASSERT_TRUE(server_->start().has_value());
    ASSERT_NE(server_->port(), 0);
  }

  std::shared_ptr<RouteTable> table_;
  std::shared_ptr<Router> router_;
  std::shared_ptr<Registry> registry_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::atomic<int> bodies_seen_{0};
  std::promise<void> slow_entered_;
  std::promise<void> release_slow_;
};

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.connected());
  std::set<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.send(get("/identity/v3/items/" + std::to_string(i))));
    auto r = c.read_response();
    ASSERT_TRUE(r.has_value()) << "request " << i;
    EXPECT_EQ(r->status, 200);
    Json body = *parse_json(r->body);
    EXPECT_EQ(body["id"], std::to_string(i));
    // The id the handler saw is the one sent back.
    EXPECT_EQ(body["request_id"], r->header("x-openstack-request-id"));
    EXPECT_EQ(body["base_url"], "http://localhost/identity");
    EXPECT_TRUE(r->has("date"));
    EXPECT_EQ(r->header("content-length"), std::to_string(r->body.size()));
    ids.insert(r->header("x-openstack-request-id"));
  }
  EXPECT_EQ(ids.size(), 5u);
  for (const auto& id : ids) {
    EXPECT_TRUE(std::regex_match(id, std::regex("req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                                                "[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
        << id;
  }
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  TestClient c(server_->port());
  std::string batch;
  for (int i = 0; i < 10; ++i) batch += get("/identity/v3/items/" + std::to_string(i));
  ASSERT_TRUE(c.send(batch));
  for (int i = 0; i < 10; ++i) {
    auto r = c.read_response();
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ((*parse_json(r->body))["id"], std::to_string(i));
  }
}

TEST_F(ServerTest, OversizeBodyIs413WithoutReadingIt) {
  start();
  TestClient c(server_->port());
  // Announce a body far over the limit and send none of it: the 413 must come anyway (if the
  // server waited for the body it would hit body_timeout and answer 408 instead).
  ASSERT_TRUE(
      c.send("POST /compute/servers HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE((*parse_json(r->body)).contains("overLimit")) << r->body;
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(bodies_seen_.load(), 0);
}

TEST_F(ServerTest, OversizeChunkedBodyIs413) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(
      c.send("POST /identity/v3/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::string chunk = "200\r\n" + std::string(512, 'x') + "\r\n";
  ASSERT_TRUE(c.send(chunk + chunk));
  ASSERT_TRUE(c.send(chunk));  // 1536 > 1024
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(bodies_seen_.load(), 0);
}

TEST_F(ServerTest, BodyWithinLimitReachesTheHandler) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send("POST /identity/v3/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1024\r\n\r\n" +
                     std::string(1024, 'z')));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ((*parse_json(r->body))["size"], 1024);
}

TEST_F(ServerTest, OversizeHeadersAre431) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(
      "GET /compute/servers HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 431);
  EXPECT_TRUE((*parse_json(r->body)).contains("computeFault")) << r->body;
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(ServerTest, GarbageIs400ThenClose) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(
      c.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 23)));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_TRUE(parse_json(r->body).has_value());
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(ServerTest, UnknownMethodIs405) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send("BREW /identity/v3/items/1 HTTP/1.1\r\nHost: h\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->header("allow"), "GET, HEAD");
  EXPECT_EQ((*parse_json(r->body))["error"]["code"], 405);
  // The connection stays usable.
  ASSERT_TRUE(c.send(get("/identity/v3/items/2")));
  r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, SlowlorisIsCutOffAtTheHeaderTimeoutWith408) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send("GET /identity/v3/items/1 HTTP/1.1\r\nHost: h\r\n"));
  // Keep trickling header bytes: activity must not extend the header deadline.
  bool closed = false;
  auto give_up = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < give_up) {
    if (!c.send("X")) break;
    if (c.wait_closed(50ms)) {
      closed = true;
      break;
    }
  }
  if (!closed) closed = c.wait_closed(1s);
  EXPECT_TRUE(closed);
  ParsedResponse r;
  ASSERT_GT(test::parse_response(c.pending(), r, false), 0u) << c.pending();
  EXPECT_EQ(r.status, 408);
  EXPECT_EQ(r.header("connection"), "close");
}

TEST_F(ServerTest, SilentConnectionIsClosedAtTheHeaderTimeout) {
  start();
  TestClient c(server_->port());
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(c.pending(), "");  // nothing was asked, nothing answered
}

TEST_F(ServerTest, StalledBodyGets408) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(
      c.send("POST /identity/v3/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(bodies_seen_.load(), 0);
}

TEST_F(ServerTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  options_.header_timeout = 10s;  // so only the idle timeout can close it
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/identity/v3/items/1")));
  ASSERT_TRUE(c.read_response().has_value());
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(ServerTest, HealthzReportsHealthAndUnhealth) {
  std::atomic<bool> healthy{true};
  options_.health = [&] { return healthy.load(); };
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/healthz")));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"status":"ok"})");
  healthy = false;
  ASSERT_TRUE(c.send(get("/healthz")));
  r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
}

TEST_F(ServerTest, MetricsReflectTraffic) {
  start();
  TestClient c(server_->port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send(get("/identity/v3/items/" + std::to_string(i))));
    ASSERT_TRUE(c.read_response().has_value());
  }
  ASSERT_TRUE(c.send(get("/identity/v3/nothing")));
  ASSERT_TRUE(c.read_response().has_value());
  ASSERT_TRUE(c.send(get("/metrics")));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-type"), "text/plain; version=0.0.4");
  const std::string& text = r->body;
  auto has = [&](const std::string& s) { return text.find(s) != std::string::npos; };
  EXPECT_TRUE(has("# TYPE concord_http_requests_total counter\n")) << text;
  EXPECT_TRUE(
      has("concord_http_requests_total{route=\"GET /v3/items/{id}\",method=\"GET\","
          "status=\"200\"} 3\n"))
      << text;
  EXPECT_TRUE(
      has("concord_http_requests_total{route=\"unmatched\",method=\"GET\","
          "status=\"404\"} 1\n"))
      << text;
  EXPECT_TRUE(has("# TYPE concord_http_request_duration_seconds histogram\n")) << text;
  EXPECT_TRUE(
      has("concord_http_request_duration_seconds_bucket{route=\"GET /v3/items/{id}\","
          "le=\"0.0001\"} "))
      << text;
  EXPECT_TRUE(
      has("concord_http_request_duration_seconds_bucket{route=\"GET /v3/items/{id}\","
          "le=\"+Inf\"} 3\n"))
      << text;
  EXPECT_TRUE(has("concord_http_request_duration_seconds_count{route=\"GET /v3/items/{id}\"} 3\n"))
      << text;
  EXPECT_TRUE(has("concord_http_open_connections 1\n")) << text;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("process_resident_memory_bytes (\\d+)\n")))
      << text;
  EXPECT_GT(std::stod(m[1]), 1e6);
}

TEST_F(ServerTest, ConcurrentClientsFromSeveralThreads) {
  start();
  constexpr int kThreads = 8;
  constexpr int kRequests = 50;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      TestClient c(server_->port());
      for (int i = 0; i < kRequests; ++i) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        if (!c.send(get("/identity/v3/items/" + id))) return;
        auto r = c.read_response();
        if (!r || r->status != 200) return;
        auto body = parse_json(r->body);
        if (body && (*body)["id"] == id) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kRequests);
  EXPECT_EQ(registry_
                ->counter("concord_http_requests_total", "",
                          {{"route", "GET /v3/items/{id}"}, {"method", "GET"}, {"status", "200"}})
                .value(),
            kThreads * kRequests);
}

TEST_F(ServerTest, GracefulStopCompletesTheRequestInFlight) {
  start();
  uint16_t port = server_->port();
  TestClient busy(port);
  TestClient idle(port);
  ASSERT_TRUE(idle.send(get("/identity/v3/items/1")));
  ASSERT_TRUE(idle.read_response().has_value());
  ASSERT_TRUE(busy.send(get("/identity/v3/slow")));
  ASSERT_EQ(slow_entered_.get_future().wait_for(10s), std::future_status::ready);

  auto stopped = std::async(std::launch::async, [&] { server_->stop(); });
  // The idle keep-alive connection is closed right away, and new connections are refused,
  // while the slow request is still running.
  EXPECT_TRUE(idle.wait_closed());
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    TestClient probe(port);
    refused = !probe.connected();
    if (!refused) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused);
  EXPECT_NE(stopped.wait_for(0ms), std::future_status::ready);

  release_slow_.set_value();
  auto r = busy.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"slow":"done"})");
  EXPECT_EQ(r->header("connection"), "close");
  EXPECT_TRUE(busy.wait_closed());
  EXPECT_EQ(stopped.wait_for(10s), std::future_status::ready);
}

TEST_F(ServerTest, StopWithOnlyIdleConnectionsDoesNotWaitForTheGrace) {
  options_.shutdown_grace = 60s;
  options_.idle_timeout = 60s;
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/identity/v3/items/1")));
  ASSERT_TRUE(c.read_response().has_value());
  auto begin = std::chrono::steady_clock::now();
  server_->stop();
  // Generous bound: only checks that stop() did not sit out the 60 s grace period.
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 30s);
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(ServerTest, NonUtf8AndEncodedJunkInPathsGiveValidJson404) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/identity/v3/%ff%fe/\xc3\x28\xa0\xa1/%00%zz%")));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->header("content-type"), "application/json");
  auto body = parse_json(r->body);  // rejects invalid UTF-8
  ASSERT_TRUE(body.has_value()) << r->body;
  EXPECT_EQ((*body)["error"]["code"], 404);
}

TEST_F(ServerTest, ThrowingHandlerGives500AndTheServerKeepsServing) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/identity/v3/boom")));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ((*parse_json(r->body))["error"]["code"], 500);
  ASSERT_TRUE(c.send(get("/identity/v3/items/after")));
  r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  TestClient fresh(server_->port());
  ASSERT_TRUE(fresh.send(get("/identity/v3/items/fresh")));
  r = fresh.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, HeadOverSocketKeepsTheConnectionInSync) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send("HEAD /identity/v3/items/abc HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto head = c.read_response(10s, /*head_request=*/true);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  ASSERT_TRUE(c.send(get("/identity/v3/items/abc")));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  // Same length as the GET body (request ids differ but have a fixed length).
  EXPECT_EQ(head->header("content-length"), std::to_string(r->body.size()));
}

TEST_F(ServerTest, Http10WithoutKeepAliveIsClosed) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send("GET /identity/v3/items/1 HTTP/1.0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ((*parse_json(r->body))["base_url"],
            "http://127.0.0.1:" + std::to_string(server_->port()) + "/identity");
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(ServerTest, StartTwiceAndBindConflictsAreErrors) {
  start();
  auto again = server_->start();
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);

  ServerOptions clash = options_;
  clash.port = server_->port();
  Server other(clash, router_, registry_);
  auto st = other.start();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable);
  EXPECT_NE(st.error().message().find(std::to_string(server_->port())), std::string::npos);

  ServerOptions bad = options_;
  bad.bind_address = "no such host.invalid";
  Server unresolvable(bad, router_, registry_);
  auto st2 = unresolvable.start();
  ASSERT_FALSE(st2.has_value());
  EXPECT_EQ(st2.error().code(), Code::kInvalidArgument);
}

TEST_F(ServerTest, DestructorStopsARunningServer) {
  start();
  uint16_t port = server_->port();
  {
    TestClient c(port);
    ASSERT_TRUE(c.send(get("/identity/v3/items/1")));
    ASSERT_TRUE(c.read_response().has_value());
  }
  server_.reset();
  TestClient after(port);
  EXPECT_FALSE(after.connected());
}

}  // namespace
}  // namespace concord::http

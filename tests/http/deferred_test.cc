// Deferred responses (RouteTable::add_deferred) over real loopback sockets: a handler that
// answers later, from another thread, must not hold an I/O thread; a connection answers its
// requests in order; a client that leaves first, a dropped Responder and a server stop with a
// request still deferred are all handled. Every wait is bounded so a bug fails instead of hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "base/json.h"
#include "eventually.h"
#include "http/client.h"
#include "http/server.h"
#include "test_util.h"

namespace concord::http {
namespace {

using namespace std::chrono_literals;
using test::ParsedResponse;
using test::TestClient;
using test_support::eventually;

std::string get(std::string_view path, std::string_view extra = "") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra) +
         "\r\n";
}

// Responders parked by the deferred routes, for the test to answer from its own thread.
class Parked {
 public:
  void park(std::string tag, Responder r) {
    std::lock_guard lock(mu_);
    items_.push_back({std::move(tag), std::move(r)});
    cv_.notify_all();
  }
  // Waits (bounded) until `n` are parked.
  bool wait_for(size_t n, std::chrono::milliseconds limit = 20s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return items_.size() >= n; });
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return items_.size();
  }
  std::pair<std::string, Responder> take() {
    std::lock_guard lock(mu_);
    auto item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, Responder>> items_;
};

class DeferredTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto table = std::make_shared<RouteTable>();
    table->add_deferred(Method::kGet, "/v1/later/{tag}", [this](Request& req, Responder r) {
      parked_.park(req.params.at(0), std::move(r));
    });
    table->add_deferred(Method::kPost, "/v1/later/{tag}", [this](Request& req, Responder r) {
      // The body is the handler's to take: the Request is not valid after this call.
      std::string body = std::move(req.body);
      parked_.park(req.params.at(0) + ":" + body, std::move(r));
    });
    table->add_deferred(Method::kGet, "/v1/now",
                        [](Request&, Responder r) { r(Response::json(200, R"({"now":true})")); });
    table->add_deferred(Method::kGet, "/v1/dropped", [](Request&, Responder) {});
    table->add_deferred(Method::kGet, "/v1/throws", [](Request&, Responder) {
      throw std::runtime_error("deferred handler bug");
    });
    table->add(Method::kGet, "/v1/sync", [this](Request&) {
      sync_calls_.fetch_add(1);
      return Response::json(200, R"({"sync":true})");
    });
    router_ = std::make_shared<Router>();
    router_->mount("/compute", table, test::nova_style_error);
    registry_ = std::make_shared<Registry>();
    options_.port = 0;
    options_.threads = 1;
    options_.header_timeout = 2s;
    options_.body_timeout = 300ms;  // shorter than the waits below: no deadline while deferred
    options_.idle_timeout = 10s;
    options_.shutdown_grace = 300ms;
  }

  void start() {
    server_ = std::make_unique<Server>(options_, router_, registry_);
    ASSERT_TRUE(server_->start().has_value());
  }

  static Response answer(std::string text) {
    return Response::json(200, dump_json(Json{{"answer", std::move(text)}}));
  }

  double open_connections() {
    std::string text = registry_->render();
    size_t at = text.find("\nconcord_http_open_connections ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + std::string("\nconcord_http_open_connections ").size()));
  }

  Parked parked_;
  std::atomic<int> sync_calls_{0};
  std::shared_ptr<Router> router_;
  std::shared_ptr<Registry> registry_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
};

TEST_F(DeferredTest, AnswerFromAnotherThreadReachesTheClient) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/compute/v1/later/a")));
  ASSERT_TRUE(parked_.wait_for(1));
  // Longer than body_timeout: a deferred request is not subject to the server's deadlines.
  std::this_thread::sleep_for(500ms);
  auto [tag, respond] = parked_.take();
  EXPECT_EQ(tag, "a");
  std::thread([respond] { respond(answer("from-thread")); }).join();
  EXPECT_TRUE(respond.answered());
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(parse_json(r->body).value()["answer"], "from-thread");
  EXPECT_TRUE(r->header("x-openstack-request-id").starts_with("req-"));
  EXPECT_TRUE(r->keep_alive);
  // A second call on the same Responder is ignored; the connection serves the next request.
  respond(answer("twice"));
  ASSERT_TRUE(c.send(get("/compute/v1/sync")));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->body, R"({"sync":true})");
  EXPECT_EQ(c.pending(), "");
  std::string metrics = registry_->render();
  EXPECT_NE(metrics.find(R"(concord_http_requests_total{route="GET /v1/later/{tag}",method="GET",)"
                         R"(status="200"} 1)"),
            std::string::npos)
      << metrics;
}

TEST_F(DeferredTest, ManyInFlightWithOneThreadAndOtherRoutesStayResponsive) {
  start();
  constexpr int kClients = 32;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<TestClient>(server_->port()));
    ASSERT_TRUE(clients.back()->send(get("/compute/v1/later/" + std::to_string(i))));
  }
  // All 32 reached their handler although the server has one I/O thread.
  ASSERT_TRUE(parked_.wait_for(kClients)) << parked_.size() << " parked";
  // And the one thread still serves everything else.
  TestClient other(server_->port());
  ASSERT_TRUE(other.send(get("/compute/v1/sync")));
  auto quick = other.read_response();
  ASSERT_TRUE(quick.has_value());
  EXPECT_EQ(quick->status, 200);
  EXPECT_EQ(sync_calls_.load(), 1);

  // Answered in reverse order from several threads: each goes to its own connection.
  std::vector<std::pair<std::string, Responder>> all;
  for (int i = 0; i < kClients; ++i) all.push_back(parked_.take());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&all, t] {
      for (int i = kClients - 1 - t; i >= 0; i -= 4) all[i].second(answer(all[i].first));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    auto r = clients[i]->read_response();
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(parse_json(r->body).value()["answer"], std::to_string(i));
  }
}

TEST_F(DeferredTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  TestClient c(server_->port());
  // A deferred request, then a synchronous one and a deferred POST on the same connection.
  ASSERT_TRUE(c.send(get("/compute/v1/later/first") + get("/compute/v1/sync") +
                     "POST /compute/v1/later/third HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     "\r\nbody"));
  ASSERT_TRUE(parked_.wait_for(1));
  // The next request is not read while the first is deferred: its handler has not run, and
  // nothing was written.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(sync_calls_.load(), 0);
  EXPECT_EQ(parked_.size(), 1u);
  EXPECT_FALSE(c.read_response(100ms).has_value());

  auto [tag, respond] = parked_.take();
  EXPECT_EQ(tag, "first");
  respond(answer("1"));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1.has_value());
  EXPECT_EQ(parse_json(r1->body).value()["answer"], "1");
  auto r2 = c.read_response();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->body, R"({"sync":true})");
  ASSERT_TRUE(parked_.wait_for(1));
  auto [tag3, respond3] = parked_.take();
  EXPECT_EQ(tag3, "third:body");
  respond3(answer("3"));
  auto r3 = c.read_response();
  ASSERT_TRUE(r3.has_value());
  EXPECT_EQ(parse_json(r3->body).value()["answer"], "3");
}

TEST_F(DeferredTest, ClientGoneBeforeTheAnswerFreesTheConnection) {
  start();
  {
    TestClient c(server_->port());
    ASSERT_TRUE(c.send(get("/compute/v1/later/gone")));
    ASSERT_TRUE(parked_.wait_for(1));
  }  // the client closes its socket while the handler still holds the request
  EXPECT_EQ(open_connections(), 1);
  auto [tag, respond] = parked_.take();
  respond(answer("nobody listens"));
  EXPECT_TRUE(eventually([&] { return open_connections() == 0; }, 10s)) << open_connections();
  // The server is unharmed.
  TestClient next(server_->port());
  ASSERT_TRUE(next.send(get("/compute/v1/now")));
  auto r = next.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_F(DeferredTest, ImmediateAnswerDroppedResponderAndThrowingHandler) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/compute/v1/now")));
  auto now = c.read_response();
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->status, 200);
  EXPECT_EQ(now->body, R"({"now":true})");

  // A handler that lets its Responder go unanswered: 500 in the mount's (Nova's) format, and
  // the connection goes on.
  ASSERT_TRUE(c.send(get("/compute/v1/dropped")));
  auto dropped = c.read_response();
  ASSERT_TRUE(dropped.has_value());
  EXPECT_EQ(dropped->status, 500);
  EXPECT_EQ(parse_json(dropped->body).value()["computeFault"]["code"], 500);

  ASSERT_TRUE(c.send(get("/compute/v1/throws")));
  auto threw = c.read_response();
  ASSERT_TRUE(threw.has_value());
  EXPECT_EQ(threw->status, 500);
  EXPECT_EQ(parse_json(threw->body).value()["computeFault"]["code"], 500);
  EXPECT_TRUE(threw->keep_alive);
}

TEST_F(DeferredTest, HeadOnADeferredGetHasTheLengthButNoBody) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(
      c.send("HEAD /compute/v1/later/h HTTP/1.1\r\nHost: x\r\n\r\n" + get("/compute/v1/sync")));
  ASSERT_TRUE(parked_.wait_for(1));
  auto [tag, respond] = parked_.take();
  Response full = answer("twelve");
  const size_t length = full.body.size();
  respond(std::move(full));
  auto head = c.read_response(10s, /*head_request=*/true);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("content-length"), std::to_string(length));
  EXPECT_EQ(head->body, "");
  // The next response starts right after the head: no body bytes were sent.
  auto next = c.read_response();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->body, R"({"sync":true})");
}

TEST_F(DeferredTest, StopWithARequestStillDeferredThenAnswerAfterwards) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/compute/v1/later/late")));
  ASSERT_TRUE(parked_.wait_for(1));
  auto [tag, respond] = parked_.take();
  // The grace period passes with the request unanswered; the connection is closed.
  server_->stop();
  EXPECT_TRUE(c.wait_closed(5s));
  server_.reset();
  // The Responder outlived the server: answering (and dropping) it is harmless.
  respond(answer("too late"));
  EXPECT_TRUE(respond.answered());
}

TEST_F(DeferredTest, AnswerDuringStopClosesAfterTheResponse) {
  options_.shutdown_grace = 10s;
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send(get("/compute/v1/later/s")));
  ASSERT_TRUE(parked_.wait_for(1));
  auto [tag, respond] = parked_.take();
  std::thread stopper([&] { server_->stop(); });
  std::this_thread::sleep_for(200ms);
  respond(answer("last"));
  auto r = c.read_response();
  stopper.join();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->keep_alive);  // "Connection: close" once the server is stopping
}

// Router::dispatch (tests, the socket-less driver) waits for a deferred answer in place.
TEST_F(DeferredTest, SynchronousDispatchWaitsForTheAnswer) {
  Request req;
  req.method = Method::kGet;
  req.target = "/compute/v1/later/sync";
  std::string route;
  std::thread answerer([this] {
    ASSERT_TRUE(parked_.wait_for(1));
    auto [tag, respond] = parked_.take();
    respond(answer(tag));
  });
  Response resp = router_->dispatch(req, route);
  answerer.join();
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(parse_json(resp.body).value()["answer"], "sync");
  EXPECT_EQ(route, "GET /v1/later/{tag}");

  Request dropped;
  dropped.method = Method::kGet;
  dropped.target = "/compute/v1/dropped";
  Response d = router_->dispatch(dropped, route);
  EXPECT_EQ(d.status, 500);
  EXPECT_EQ(parse_json(d.body).value()["computeFault"]["code"], 500);
}

TEST(ResponderTest, FirstCallWinsAndDropAnswersOnce) {
  std::vector<int> delivered;
  {
    Responder r([&](Response resp) { delivered.push_back(resp.status); },
                [] { return Response::empty(500); });
    Responder copy = r;
    EXPECT_FALSE(r.answered());
    copy(Response::empty(201));
    r(Response::empty(202));
    EXPECT_TRUE(r.answered());
  }
  EXPECT_EQ(delivered, std::vector<int>{201});
  {
    Responder r([&](Response resp) { delivered.push_back(resp.status); },
                [] { return Response::empty(500); });
    Responder copy = r;
  }
  EXPECT_EQ(delivered, (std::vector<int>{201, 500}));
  Responder empty;
  empty(Response::empty(200));  // a default-constructed one does nothing
  EXPECT_FALSE(empty.answered());
}

}  // namespace
}  // namespace concord::http

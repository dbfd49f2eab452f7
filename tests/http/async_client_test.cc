// AsyncHttpClient against real servers on loopback (port 0): replies, keep-alive reuse, a pooled
// connection the server closed while idle, timeouts, unreachable origins, and many requests in
// flight on one client thread.
#include "http/async_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "base/json.h"
#include "http/server.h"

namespace concord::http {
namespace {

using namespace std::chrono_literals;

class AsyncClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto table = std::make_shared<RouteTable>();
    table->add(Method::kPost, "/echo", [](Request& req) {
      Response r = Response::json(201, req.body);
      r.set_header("x-seen-type", std::string(req.header("content-type")));
      return r;
    });
    // Held until `release_` is set; counts how many are held at once.
    table->add(Method::kGet, "/slow", [this](Request&) {
      int now = ++held_;
      int seen = max_held_.load();
      while (now > seen && !max_held_.compare_exchange_weak(seen, now)) {
      }
      release_future_.wait_for(20s);
      --held_;
      return Response::json(200, R"({"slow":true})");
    });
    router_ = std::make_shared<Router>();
    router_->mount("", table, keystone_style_error);
    options_.port = 0;
    options_.threads = 16;
    options_.idle_timeout = 10s;
  }

  void start() {
    server_ = std::make_unique<Server>(options_, router_, std::make_shared<Registry>());
    ASSERT_TRUE(server_->start().has_value());
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }

  static std::unique_ptr<AsyncHttpClient> client(AsyncClientOptions o = {}) {
    auto c = AsyncHttpClient::create(o);
    EXPECT_TRUE(c.has_value());
    return std::move(*c);
  }

  // Runs one request and waits (bounded) for its callback.
  static Result<HttpReply> call(AsyncHttpClient& c, const std::string& url, std::string method,
                                std::string target, std::string body = {},
                                std::chrono::milliseconds timeout = 10s) {
    auto p = std::make_shared<std::promise<Result<HttpReply>>>();
    auto f = p->get_future();
    c.request(url, method, target, std::move(body), {{"content-type", "application/x-test"}},
              timeout, [p](Result<HttpReply> r) { p->set_value(std::move(r)); });
    if (f.wait_for(30s) != std::future_status::ready) {
      return fail(Code::kInternal, "the callback never came");
    }
    return f.get();
  }

  std::shared_ptr<Router> router_;
  ServerOptions options_;
  std::string url_;
  std::atomic<int> held_{0};
  std::atomic<int> max_held_{0};
  std::promise<void> release_;
  std::shared_future<void> release_future_ = release_.get_future().share();
  // Last, so it is destroyed (and its handlers, which use the members above, joined) first.
  std::unique_ptr<Server> server_;
};

TEST_F(AsyncClientTest, RepliesAndReusesOneKeptAliveConnection) {
  start();
  auto c = client();
  for (int i = 0; i < 5; ++i) {
    auto r = call(*c, url_, "POST", "/echo", "body-" + std::to_string(i));
    ASSERT_TRUE(r.has_value()) << r.error().message();
    EXPECT_EQ(r->status, 201);
    EXPECT_EQ(r->body, "body-" + std::to_string(i));
    EXPECT_EQ(r->header("x-seen-type"), "application/x-test");
  }
  EXPECT_EQ(c->connections_opened(), 1u);
  EXPECT_EQ(c->idle_connections(), 1u);
  // An HTTP error status is a reply, not an error.
  auto missing = call(*c, url_, "GET", "/nothing");
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->status, 404);
}

TEST_F(AsyncClientTest, APooledConnectionTheServerClosedIsReplacedTransparently) {
  options_.idle_timeout = 100ms;
  start();
  auto c = client();
  ASSERT_TRUE(call(*c, url_, "POST", "/echo", "a").has_value());
  EXPECT_EQ(c->idle_connections(), 1u);
  std::this_thread::sleep_for(400ms);  // the server closes the idle connection
  auto r = call(*c, url_, "POST", "/echo", "b");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->body, "b");
  EXPECT_EQ(c->connections_opened(), 2u);
}

TEST_F(AsyncClientTest, TimeoutIsDeadlineExceededAndUnreachableIsUnavailable) {
  start();
  auto c = client();
  auto slow = call(*c, url_, "GET", "/slow", {}, 200ms);
  ASSERT_FALSE(slow.has_value());
  EXPECT_EQ(slow.error().code(), Code::kDeadlineExceeded);
  release_.set_value();

  // A port nobody listens on: bind one, note it, close it.
  std::string dead;
  {
    ServerOptions o;
    Server s(o, std::make_shared<Router>(), std::make_shared<Registry>());
    ASSERT_TRUE(s.start().has_value());
    dead = "http://127.0.0.1:" + std::to_string(s.port());
  }
  auto refused = call(*c, dead, "GET", "/x");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kUnavailable);

  auto bad_url = call(*c, "ftp://127.0.0.1:1", "GET", "/x");
  ASSERT_FALSE(bad_url.has_value());
  EXPECT_EQ(bad_url.error().code(), Code::kInvalidArgument);
  auto bad_method = call(*c, url_, "FROB", "/x");
  ASSERT_FALSE(bad_method.has_value());
  EXPECT_EQ(bad_method.error().code(), Code::kInvalidArgument);
}

TEST_F(AsyncClientTest, ManyRequestsInFlightOnOneClientThread) {
  start();
  auto c = client({.threads = 1});
  constexpr int kRequests = 12;
  std::mutex mu;
  std::vector<int> statuses;
  std::promise<void> all_done;
  for (int i = 0; i < kRequests; ++i) {
    c->request(url_, "GET", "/slow", {}, {}, 20s, [&](Result<HttpReply> r) {
      std::lock_guard lock(mu);
      statuses.push_back(r ? r->status : -1);
      if (statuses.size() == kRequests) all_done.set_value();
    });
  }
  // All twelve reach the server at once although the client has a single thread.
  for (int i = 0; i < 400 && held_.load() < kRequests; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(held_.load(), kRequests);
  release_.set_value();
  ASSERT_EQ(all_done.get_future().wait_for(30s), std::future_status::ready);
  EXPECT_EQ(statuses, std::vector<int>(kRequests, 200));
  EXPECT_EQ(c->idle_connections(), static_cast<size_t>(kRequests));
}

TEST_F(AsyncClientTest, DestroyingTheClientDropsPendingCallbacksWithoutCallingThem) {
  start();
  auto c = client();
  std::atomic<int> called{0};
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  c->request(url_, "GET", "/slow", {}, {}, 20s, [&called, token](Result<HttpReply>) { ++called; });
  token.reset();
  for (int i = 0; i < 200 && held_.load() < 1; ++i) std::this_thread::sleep_for(50ms);
  ASSERT_EQ(held_.load(), 1);
  c.reset();
  EXPECT_EQ(called.load(), 0);
  EXPECT_TRUE(watch.expired());  // the callback (and what it captured) was destroyed
  release_.set_value();
}

}  // namespace
}  // namespace concord::http

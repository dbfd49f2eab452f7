// The HTTP client against the real http::Server: keep-alive reuse and the retry when
// the server closed an idle connection, timeouts, streamed downloads, cancel from another thread.
#include "http/client.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "base/log.h"
#include "http/router.h"
#include "http/server.h"

namespace concord::http {
namespace {

class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_level("error");
    auto table = std::make_shared<http::RouteTable>();
    table->add(http::Method::kGet, "/hello", [](http::Request& req) {
      http::Response r = http::Response::json(200, R"({"hello":"world"})");
      r.set_header("x-echo", std::string(req.header("x-test")));
      return r;
    });
    table->add(http::Method::kPost, "/echo",
               [](http::Request& req) { return http::Response::json(201, req.body); });
    table->add(http::Method::kGet, "/slow", [this](http::Request&) {
      ++slow_calls_;
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      return http::Response::json(200, "{}");
    });
    table->add(http::Method::kPut, "/size", [](http::Request& req) {
      return http::Response::json(
          200, "{\"size\":" + std::to_string(req.body.size()) + ",\"type\":\"" +
                   std::string(req.header("content-type")) + "\",\"ends\":\"" +
                   req.body.substr(0, 1) + req.body.substr(req.body.size() - 1) + "\"}");
    });
    table->add(http::Method::kGet, "/blob", [](http::Request&) {
      http::Response r;
      r.set_header("content-type", "application/octet-stream");
      r.body = std::string(3 * 1024 * 1024, 'z');
      return r;
    });
    router_ = std::make_shared<http::Router>();
    router_->mount("/prefix", table, http::keystone_style_error);
    http::ServerOptions so;
    so.threads = 2;
    so.idle_timeout = std::chrono::milliseconds(200);
    server_ = std::make_unique<http::Server>(so, router_, std::make_shared<http::Registry>());
    ASSERT_TRUE(server_->start().has_value());
    auto c = HttpClient::create("http://127.0.0.1:" + std::to_string(server_->port()) + "/prefix/");
    ASSERT_TRUE(c.has_value()) << c.error().to_string();
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->stop();
  }

  std::shared_ptr<http::Router> router_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<HttpClient> client_;
  std::atomic<int> slow_calls_{0};
};

TEST_F(HttpClientTest, RequestsReuseTheConnectionAndSurviveAnIdleClose) {
  auto r = client_->request("GET", "/hello", "", {{"X-Test", "1"}}, std::chrono::seconds(5));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"hello":"world"})");
  EXPECT_EQ(r->header("X-Echo"), "1");
  auto post = client_->request("POST", "/echo", R"({"a":1})", {}, std::chrono::seconds(5));
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->status, 201);
  EXPECT_EQ(post->body, R"({"a":1})");
  // The server drops the idle connection after 200 ms; the next call reconnects by itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto again = client_->request("GET", "/hello", "", {}, std::chrono::seconds(5));
  ASSERT_TRUE(again.has_value()) << again.error().to_string();
  EXPECT_EQ(again->status, 200);
  // HTTP errors are answers, not failures.
  auto missing = client_->request("GET", "/nope", "", {}, std::chrono::seconds(5));
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->status, 404);
}

TEST_F(HttpClientTest, TimeoutIsDeadlineExceeded) {
  auto r = client_->request("GET", "/slow", "", {}, std::chrono::milliseconds(200));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDeadlineExceeded);
  EXPECT_EQ(slow_calls_.load(), 1);  // a timed-out call is not retried
}

TEST_F(HttpClientTest, UnreachableServerIsUnavailable) {
  auto c = HttpClient::create("http://127.0.0.1:1");
  ASSERT_TRUE(c.has_value());
  auto r = (*c)->request("GET", "/x", "", {}, std::chrono::seconds(5));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

TEST_F(HttpClientTest, DownloadStreamsToAFile) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("concord-dl-" + std::to_string(::getpid())))
          .string();
  auto r = client_->download("/blob", {}, path, std::chrono::seconds(10));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(std::filesystem::file_size(path), 3u * 1024 * 1024);
  std::filesystem::remove(path);
  auto missing = client_->download("/nope", {}, path, std::chrono::seconds(10));
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("could not be found"), std::string::npos) << missing->body;
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(HttpClientTest, UploadSendsAFileAsTheBody) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("concord-ul-" + std::to_string(::getpid())))
          .string();
  {
    std::ofstream out(path, std::ios::binary);
    out << 'a' << std::string(512 * 1024, 'y') << 'b';
  }
  auto r = client_->upload("PUT", "/size", path, {}, std::chrono::seconds(10));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"size":524290,"type":"application/octet-stream","ends":"ab"})");
  // The same kept-alive connection serves the next call.
  auto again = client_->upload("PUT", "/size", path, {{"Content-Type", "text/plain"}},
                               std::chrono::seconds(10));
  ASSERT_TRUE(again.has_value()) << again.error().to_string();
  EXPECT_NE(again->body.find("text/plain"), std::string::npos) << again->body;
  std::filesystem::remove(path);
  auto missing = client_->upload("PUT", "/size", path, {}, std::chrono::seconds(10));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kFailedPrecondition);
}

TEST_F(HttpClientTest, CancelEndsARunningCallAndLaterOnes) {
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    client_->cancel();
  });
  auto r = client_->request("GET", "/slow", "", {}, std::chrono::seconds(30));
  canceller.join();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  auto later = client_->request("GET", "/hello", "", {}, std::chrono::seconds(5));
  ASSERT_FALSE(later.has_value());
  EXPECT_EQ(later.error().code(), Code::kUnavailable);
}

TEST(HttpClientUrlTest, RejectsWhatItCannotSpeak) {
  auto tls = HttpClient::create("https://example.com");
  ASSERT_FALSE(tls.has_value());
  EXPECT_EQ(tls.error().code(), Code::kInvalidArgument);
  auto empty = HttpClient::create("http://");
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(HttpClient::create("http://[::1]:8080/x").has_value());
}

}  // namespace
}  // namespace concord::http

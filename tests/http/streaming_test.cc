// Large bodies: requests spooled to a file (ServerOptions::streamed_body -> Request::body_file)
// and responses sent from a file (Response::body_file), over real loopback sockets and through
// the socket-free Session driver.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/json.h"
#include "http/server.h"
#include "http/testing.h"
#include "test_util.h"

namespace concord::http {
namespace {

using namespace std::chrono_literals;
using test::TestClient;
namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

class StreamingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "concord-http-stream-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    spool_ = dir_ + "/spool";
    fs::create_directories(spool_);
    table_ = std::make_shared<RouteTable>();
    // Reports what it received; keeps the spooled file when asked to (moved away).
    table_->add(Method::kPut, "/upload/{mode}", [this](Request& req) {
      Json j = {{"memory", req.body.size()}, {"file", !req.body_file.empty()}};
      if (!req.body_file.empty()) {
        j["file_bytes"] = slurp(req.body_file).size();
        j["in_spool"] = fs::path(req.body_file).parent_path() == fs::path(spool_);
        if (req.params.at(0) == "keep") fs::rename(req.body_file, dir_ + "/kept");
      }
      return Response::json(200, dump_json(j));
    });
    table_->add(Method::kPost, "/small", [](Request& req) {
      return Response::json(
          200, dump_json(Json{{"memory", req.body.size()}, {"file", !req.body_file.empty()}}));
    });
    table_->add(Method::kGet, "/download", [this](Request&) {
      Response r;
      r.status = 200;
      r.set_header("content-type", "application/octet-stream");
      r.body_file = dir_ + "/payload";
      return r;
    });
    table_->add(Method::kGet, "/missing-file", [this](Request&) {
      Response r;
      r.body_file = dir_ + "/does-not-exist";
      return r;
    });
    router_ = std::make_shared<Router>();
    router_->mount("/api", table_, keystone_style_error);
    options_.port = 0;
    options_.threads = 2;
    options_.max_body_bytes = 1024;
    options_.streamed_body = [this](Method m,
                                    std::string_view path) -> std::optional<StreamedBody> {
      if (m == Method::kPut && path.starts_with("/api/upload/")) {
        return StreamedBody{spool_, 4 * 1024 * 1024};
      }
      return std::nullopt;
    };
    payload_.resize(3 * 1024 * 1024 + 17);
    for (size_t i = 0; i < payload_.size(); ++i) payload_[i] = static_cast<char>(i * 131 % 251);
    std::ofstream(dir_ + "/payload", std::ios::binary) << payload_;
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void start() {
    server_ = std::make_unique<Server>(options_, router_, std::make_shared<Registry>());
    ASSERT_TRUE(server_->start().has_value());
  }
  std::string put(const std::string& path, const std::string& body) {
    return "PUT " + path +
           " HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
  }

  std::string dir_, spool_, payload_;
  std::shared_ptr<RouteTable> table_;
  std::shared_ptr<Router> router_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
};

TEST_F(StreamingTest, LargeUploadIsSpooledToAFileAndRemovedAfterwards) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(put("/api/upload/drop", payload_)));
  auto r = c.read_response(30s);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = *parse_json(r->body);
  EXPECT_EQ(j["memory"], 0);
  EXPECT_EQ(j["file"], true);
  EXPECT_EQ(j["file_bytes"], payload_.size());
  EXPECT_EQ(j["in_spool"], true);
  EXPECT_EQ(files_in(spool_), 0u);  // the server deleted the leftover

  // Chunked transfer encoding is spooled too; a handler may keep the file by moving it.
  std::string chunked =
      "PUT /api/upload/keep HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  ASSERT_TRUE(c.send(chunked));
  auto r2 = c.read_response(10s);
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ((*parse_json(r2->body))["file_bytes"], 11);
  EXPECT_EQ(slurp(dir_ + "/kept"), "hello world");
  EXPECT_EQ(files_in(spool_), 0u);
}

TEST_F(StreamingTest, OtherRoutesKeepTheMemoryLimit) {
  start();
  TestClient c(server_->port());
  std::string body(2000, 'x');
  ASSERT_TRUE(
      c.send("POST /api/small HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n" + body));
  auto r = c.read_response(10s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
}

TEST_F(StreamingTest, StreamedBodyOverItsOwnLimitIs413AndLeavesNoFile) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send("PUT /api/upload/drop HTTP/1.1\r\nHost: localhost\r\nContent-Length: " +
                     std::to_string(5 * 1024 * 1024) + "\r\n\r\n"));
  auto r = c.read_response(10s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  c.wait_closed(5s);
  EXPECT_EQ(files_in(spool_), 0u);

  // Chunked: the limit applies to the sum of the chunks as they arrive.
  TestClient c2(server_->port());
  std::string head =
      "PUT /api/upload/drop HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string chunk(1024 * 1024, 'c');
  std::string wire = head;
  for (int i = 0; i < 5; ++i) wire += "100000\r\n" + chunk + "\r\n";
  c2.send(wire);
  auto r2 = c2.read_response(10s);
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 413);
  c2.wait_closed(5s);
  EXPECT_EQ(files_in(spool_), 0u);
}

TEST_F(StreamingTest, AbandonedUploadLeavesNoFile) {
  start();
  {
    TestClient c(server_->port());
    ASSERT_TRUE(
        c.send("PUT /api/upload/drop HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
               "100000\r\n\r\npartial"));
    // Wait until the server has created its spool file, then hang up mid-body.
    for (int i = 0; i < 500 && files_in(spool_) == 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(files_in(spool_), 1u);
  }
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = files_in(spool_) == 0;
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone);
}

TEST_F(StreamingTest, FileResponseIsSentWhole) {
  start();
  TestClient c(server_->port());
  ASSERT_TRUE(c.send("GET /api/download HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto r = c.read_response(30s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-length"), std::to_string(payload_.size()));
  EXPECT_TRUE(r->body == payload_);
  // The connection stays usable after a file body.
  ASSERT_TRUE(c.send("HEAD /api/download HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto head = c.read_response(10s, /*head_request=*/true);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->header("content-length"), std::to_string(payload_.size()));
  EXPECT_TRUE(head->body.empty());
  ASSERT_TRUE(c.send("GET /api/missing-file HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto missing = c.read_response(10s);
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->status, 500);
}

TEST_F(StreamingTest, SessionDriverSpoolsAndSendsFiles) {
  std::string wire =
      testing::serve_raw_connection(*router_, put("/api/upload/drop", "abc"), options_, 1);
  EXPECT_NE(wire.find("\"file_bytes\":3"), std::string::npos) << wire;
  EXPECT_EQ(files_in(spool_), 0u);
  std::string down = testing::serve_raw_connection(
      *router_, "GET /api/download HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", options_);
  EXPECT_TRUE(down.ends_with(payload_));
}

}  // namespace
}  // namespace concord::http

// Image data through a real HTTP server on loopback: the upload is spooled to disk by the
// streamed_body hook (beyond the server's in-memory body limit) and the download is sent from
// the blob file.
#include "http/server.h"
#include "image_test_util.h"
#include "test_util.h"

namespace concord::image::testing {
namespace {

using namespace std::chrono_literals;

class ImageServerTest : public ImageTest {
 protected:
  ImageOptions image_options() override {
    ImageOptions o = ImageTest::image_options();
    o.max_image_bytes = 8 * 1024 * 1024;
    return o;
  }
};

TEST_F(ImageServerTest, StreamedBodyHookMatchesOnlyUploads) {
  auto hook = images_->streamed_body_hook("/image");
  using http::Method;
  auto spooled = hook(Method::kPut, "/image/v2/images/8c1d1f5e-5b3a-4e1e-9d5c-0e2f1a3b4c5d/file");
  ASSERT_TRUE(spooled.has_value());
  EXPECT_EQ(spooled->dir, dir_.path() + "/blobs/tmp");
  EXPECT_EQ(spooled->max_bytes, 8u * 1024 * 1024);
  EXPECT_TRUE(hook(Method::kPut, "/image/v2/images/x/file/").has_value());
  EXPECT_FALSE(hook(Method::kGet, "/image/v2/images/x/file").has_value());
  EXPECT_FALSE(hook(Method::kPut, "/image/v2/images//file").has_value());
  EXPECT_FALSE(hook(Method::kPut, "/image/v2/images/x/tags/file").has_value());
  EXPECT_FALSE(hook(Method::kPut, "/identity/v2/images/x/file").has_value());
  EXPECT_FALSE(hook(Method::kPatch, "/image/v2/images/x").has_value());
}

TEST_F(ImageServerTest, LargeUploadAndDownloadOverTheWire) {
  make_tenants();
  auto router = std::make_shared<http::Router>();
  router->mount("/image", images_->routes(), images_->error_formatter());
  http::ServerOptions options;
  options.port = 0;
  options.threads = 2;
  options.max_body_bytes = 64 * 1024;  // far below the image
  options.streamed_body = images_->streamed_body_hook("/image");
  http::Server server(options, router, std::make_shared<http::Registry>());
  ASSERT_TRUE(server.start().has_value());

  std::string id = create(alpha_);
  std::string data(3 * 1024 * 1024 + 5, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7 + i / 4096) % 256);
  // Keep the raw data from looking like a structured disk format.
  data[0] = 'R';

  http::test::TestClient c(server.port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("PUT /image/v2/images/" + id +
                     "/file HTTP/1.1\r\nHost: localhost\r\nX-Auth-Token: " + alpha_ +
                     "\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                     std::to_string(data.size()) + "\r\n\r\n" + data));
  auto up = c.read_response(60s);
  ASSERT_TRUE(up.has_value());
  ASSERT_EQ(up->status, 204) << up->body;
  Reply shown = iget("/v2/images/" + id, alpha_);
  EXPECT_EQ(shown.body["status"], "active");
  EXPECT_EQ(shown.body["size"], data.size());

  ASSERT_TRUE(c.send("GET /image/v2/images/" + id +
                     "/file HTTP/1.1\r\nHost: localhost\r\nX-Auth-Token: " + alpha_ + "\r\n\r\n"));
  auto down = c.read_response(60s);
  ASSERT_TRUE(down.has_value());
  EXPECT_EQ(down->status, 200);
  EXPECT_EQ(down->header("content-md5"), shown.body["checksum"]);
  EXPECT_TRUE(down->body == data);

  // Over the image limit: 413 in Glance's format, before the handler runs; the image is
  // untouched and no spool file is left.
  std::string other = create(alpha_);
  http::test::TestClient c2(server.port());
  ASSERT_TRUE(c2.send("PUT /image/v2/images/" + other +
                      "/file HTTP/1.1\r\nHost: localhost\r\nX-Auth-Token: " + alpha_ +
                      "\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                      std::to_string(9 * 1024 * 1024) + "\r\n\r\n"));
  auto big = c2.read_response(30s);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(big->header("content-type"), "text/plain; charset=UTF-8");
  EXPECT_EQ(status_of(other), "queued");
  server.stop();
  size_t leftovers = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path() + "/blobs/tmp")) {
    (void)e;
    ++leftovers;
  }
  EXPECT_EQ(leftovers, 0u);
}

}  // namespace
}  // namespace concord::image::testing

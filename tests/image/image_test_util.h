#pragma once
// A hermetic image service for tests: the identity test world (SQLite in a temp dir or the
// test PostgreSQL, FakeClock, bootstrapped Keystone) plus ImageService on the same store, with
// its routes mounted at /image on a Router the tests call directly.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "identity_test_util.h"
#include "image/image_service.h"
#include "usage/usage_ledger.h"

namespace concord::image::testing {

using identity::testing::Reply;

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

class ImageTest : public identity::testing::IdentityTest {
 protected:
  void SetUp() override {
    IdentityTest::SetUp();
    if (HasFatalFailure()) return;
    auto m = image::migrations();
    ASSERT_OK(store_->migrate(m));
    auto u = usage::migrations();
    ASSERT_OK(store_->migrate(u));
    start_images();
  }

  void TearDown() override {
    images_.reset();
    IdentityTest::TearDown();
  }

  virtual ImageOptions image_options() {
    ImageOptions o;
    o.blob_dir = dir_.path() + "/blobs";
    return o;
  }

  void start_images() {
    images_.reset();
    auto created = ImageService::create(*store_, clock_, IdentityTest::svc(), image_options());
    ASSERT_TRUE(created.has_value()) << created.error().to_string();
    images_ = std::move(*created);
    image_router_ = std::make_unique<http::Router>();
    image_router_->mount("/image", images_->routes(), images_->error_formatter());
  }

  Reply icall(http::Method method, const std::string& target, const std::string& body,
              const std::string& token, const std::string& content_type = "") {
    http::Request req;
    req.method = method;
    req.target = "/image" + target;
    req.body = body;
    req.base_url = "http://localhost:9292";
    req.request_id = "req-test";
    if (!content_type.empty()) req.headers.push_back({"content-type", content_type});
    if (!token.empty()) req.headers.push_back({"x-auth-token", token});
    std::string route;
    Reply r;
    r.raw = image_router_->dispatch(req, route);
    r.status = r.raw.status;
    if (!r.raw.body.empty()) {
      auto parsed = parse_json(r.raw.body);
      if (parsed) r.body = std::move(*parsed);
    }
    return r;
  }
  Reply iget(const std::string& target, const std::string& token) {
    return icall(http::Method::kGet, target, "", token);
  }
  Reply ipost(const std::string& target, const Json& body, const std::string& token) {
    return icall(http::Method::kPost, target, dump_json(body), token, "application/json");
  }
  Reply ipatch(const std::string& target, const Json& ops, const std::string& token) {
    return icall(http::Method::kPatch, target, dump_json(ops), token,
                 "application/openstack-images-v2.1-json-patch");
  }
  Reply idel(const std::string& target, const std::string& token) {
    return icall(http::Method::kDelete, target, "", token);
  }
  Reply upload(const std::string& id, const std::string& data, const std::string& token) {
    return icall(http::Method::kPut, "/v2/images/" + id + "/file", data, token,
                 "application/octet-stream");
  }
  // The downloaded bytes (the server streams Response::body_file; read it here).
  std::string downloaded(const Reply& r) {
    if (!r.raw.body_file.empty()) return read_file(r.raw.body_file);
    return r.raw.body;
  }

  // Creates an image and fails the test unless 201; returns its id.
  std::string create(const std::string& token, Json body = Json::object()) {
    if (!body.contains("name")) body["name"] = "img";
    if (!body.contains("disk_format")) body["disk_format"] = "raw";
    if (!body.contains("container_format")) body["container_format"] = "bare";
    Reply r = ipost("/v2/images", body, token);
    EXPECT_EQ(r.status, 201) << r;
    return r.body.is_object() ? r.body.value("id", "") : "";
  }
  std::string create_active(const std::string& token, Json body = Json::object(),
                            const std::string& data = "some raw disk bytes") {
    std::string id = create(token, std::move(body));
    Reply r = upload(id, data, token);
    EXPECT_EQ(r.status, 204) << r;
    return id;
  }
  std::string status_of(const std::string& id) {
    Reply r = iget("/v2/images/" + id, admin_token());
    return r.body.is_object() ? r.body.value("status", "") : "";
  }

  // Project-scoped tokens of a member and a reader of project "alpha" and a member of "beta".
  void make_tenants() {
    auto [alpha_user, alpha] = member_of_new_project("alpha", boot_.member_role_id);
    alpha_project_ = alpha;
    auto beta = member_of_new_project("beta", boot_.member_role_id);
    beta_project_ = beta.second;
    std::string reader = create_user("alpha-reader", "alpha-reader-pw");
    grant(alpha_project_, reader, boot_.reader_role_id);
    alpha_ = token("alpha", "alpha-pw", "alpha");
    beta_ = token("beta", "beta-pw", "beta");
    alpha_reader_ = token("alpha-reader", "alpha-reader-pw", "alpha");
  }

  std::unique_ptr<ImageService> images_;
  std::unique_ptr<http::Router> image_router_;
  std::string alpha_project_, beta_project_;
  std::string alpha_, beta_, alpha_reader_;
};

}  // namespace concord::image::testing

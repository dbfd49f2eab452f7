// One row per route: who may call it, and that hostile input never yields a 5xx. A route
// missing from the table, or a row with no route, fails the test.
#include <map>
#include <set>

#include "image_test_util.h"

namespace concord::image::testing {
namespace {

using http::Method;

struct PolicyRow {
  Method method;
  std::string pattern;
  std::string rule;  // as registered
  int no_token;      // status without a token
  int reader;        // a reader of the owning project
  int other;         // a member of another project (image private to alpha)
  int member;        // a member of the owning project
};

class ImagePolicyTest : public ImageTest {};

TEST_F(ImagePolicyTest, EveryRouteFollowsItsRule) {
  make_tenants();
  const std::vector<PolicyRow> table = {
      {Method::kGet, "/", "public", 300, 300, 300, 300},
      {Method::kGet, "/versions", "public", 300, 300, 300, 300},
      {Method::kGet, "/v2/schemas/image", "authenticated", 401, 200, 200, 200},
      {Method::kGet, "/v2/schemas/images", "authenticated", 401, 200, 200, 200},
      {Method::kGet, "/v2/schemas/member", "authenticated", 401, 200, 200, 200},
      {Method::kGet, "/v2/schemas/members", "authenticated", 401, 200, 200, 200},
      {Method::kPost, "/v2/images", "project_member", 401, 403, 201, 201},
      {Method::kGet, "/v2/images", "authenticated", 401, 200, 200, 200},
      // Only `DELETE /v2/images/` (an empty id, 404) exists; without the slash it is 405.
      {Method::kDelete, "/v2/images", "authenticated", 401, 405, 405, 405},
      {Method::kGet, "/v2/images/{image_id}", "authenticated", 401, 200, 404, 200},
      {Method::kPatch, "/v2/images/{image_id}", "authenticated", 401, 403, 404, 200},
      {Method::kDelete, "/v2/images/{image_id}", "authenticated", 401, 403, 404, 204},
      {Method::kPut, "/v2/images/{image_id}/file", "authenticated", 401, 403, 404, 204},
      {Method::kGet, "/v2/images/{image_id}/file", "authenticated", 401, 200, 404, 200},
      {Method::kPost, "/v2/images/{image_id}/actions/deactivate", "project_member", 401, 403, 404,
       204},
      {Method::kPost, "/v2/images/{image_id}/actions/reactivate", "project_member", 401, 403, 404,
       204},
      {Method::kPut, "/v2/images/{image_id}/tags/{tag}", "authenticated", 401, 403, 404, 204},
      {Method::kDelete, "/v2/images/{image_id}/tags/{tag}", "authenticated", 401, 403, 404, 204},
      {Method::kGet, "/v2/images/{image_id}/members", "authenticated", 401, 200, 404, 200},
      {Method::kPost, "/v2/images/{image_id}/members", "authenticated", 401, 403, 404, 200},
      {Method::kGet, "/v2/images/{image_id}/members/{member_id}", "authenticated", 401, 200, 404,
       200},
      // Only the member itself sets its status: the owner's side gets 403.
      {Method::kPut, "/v2/images/{image_id}/members/{member_id}", "authenticated", 401, 403, 404,
       403},
      {Method::kDelete, "/v2/images/{image_id}/members/{member_id}", "authenticated", 401, 403, 404,
       204},
  };
  std::set<std::pair<Method, std::string>> registered;
  for (const RouteInfo& info : images_->route_infos()) {
    registered.insert({info.method, info.pattern});
    bool found = false;
    for (const PolicyRow& row : table) {
      if (row.method == info.method && row.pattern == info.pattern) {
        found = true;
        EXPECT_EQ(row.rule, info.rule) << info.pattern;
      }
    }
    EXPECT_TRUE(found) << "route without a policy row: " << http::method_name(info.method) << " "
                       << info.pattern;
  }
  for (const PolicyRow& row : table) {
    EXPECT_TRUE(registered.contains({row.method, row.pattern}))
        << "policy row without a route: " << row.pattern;
  }

  enum Who { kNone, kReader, kOther, kMember };
  for (const PolicyRow& row : table) {
    for (Who who : {kNone, kReader, kOther, kMember}) {
      // A fresh image per case: shared, active, with a tag, a member entry and visible only to
      // alpha (beta is not a member).
      std::string id = create_active(alpha_, {{"tags", {"t"}}});
      ASSERT_EQ(ipost("/v2/images/" + id + "/members", {{"member", "gamma"}}, alpha_).status, 200);
      std::string target = row.pattern;
      auto replace = [&](const std::string& key, const std::string& value) {
        if (auto pos = target.find(key); pos != std::string::npos) {
          target.replace(pos, key.size(), value);
        }
      };
      replace("{image_id}", id);
      replace("{tag}", "t");
      replace("{member_id}", "gamma");
      std::string body, type;
      if (row.method == Method::kPost && row.pattern == "/v2/images") {
        body = R"({"name":"n"})";
        type = "application/json";
      } else if (row.method == Method::kPost && row.pattern.ends_with("/members")) {
        body = R"({"member":"delta"})";
        type = "application/json";
      } else if (row.method == Method::kPut && row.pattern.ends_with("{member_id}")) {
        body = R"({"status":"accepted"})";
        type = "application/json";
      } else if (row.method == Method::kPatch) {
        body = R"([{"op":"replace","path":"/name","value":"x"}])";
        type = "application/openstack-images-v2.1-json-patch";
      } else if (row.method == Method::kPut && row.pattern.ends_with("/file")) {
        // Upload needs a queued image.
        target = "/v2/images/" + create(alpha_) + "/file";
        body = "data";
        type = "application/octet-stream";
      }
      std::string token = who == kNone     ? ""
                          : who == kReader ? alpha_reader_
                          : who == kOther  ? beta_
                                           : alpha_;
      int expected = who == kNone     ? row.no_token
                     : who == kReader ? row.reader
                     : who == kOther  ? row.other
                                      : row.member;
      Reply r = icall(row.method, target, body, token, type);
      EXPECT_EQ(r.status, expected)
          << http::method_name(row.method) << " " << row.pattern << " as " << who << ": " << r;
    }
  }
}

TEST_F(ImagePolicyTest, AdminMayDoEverything) {
  make_tenants();
  std::string id = create_active(alpha_, {{"visibility", "private"}});
  EXPECT_EQ(iget("/v2/images/" + id, admin_token()).status, 200);
  EXPECT_EQ(
      ipatch("/v2/images/" + id, {{{"op", "add"}, {"path", "/x"}, {"value", "y"}}}, admin_token())
          .status,
      200);
  EXPECT_EQ(
      icall(Method::kPost, "/v2/images/" + id + "/actions/deactivate", "", admin_token()).status,
      204);
  EXPECT_EQ(idel("/v2/images/" + id, admin_token()).status, 204);
}

TEST_F(ImagePolicyTest, HostileInputNeverGives5xx) {
  make_tenants();
  std::string id = create_active(alpha_);
  const std::vector<std::string> ids = {id,    "not-a-uuid", "8c1d1f5e-5b3a-4e1e-9d5c-0e2f1a3b4c5d",
                                        "%00", "%ff%fe",     std::string(300, 'a')};
  const std::vector<std::string> bodies = {
      "", "{", "null", "[]", "{}", "[{\"op\":1}]", "\"text\"", "123", "{\"a\":{}}"};
  const std::vector<std::string> types = {"", "application/json", "application/octet-stream",
                                          "application/openstack-images-v2.1-json-patch"};
  int cases = 0;
  for (const RouteInfo& info : images_->route_infos()) {
    for (const std::string& image : ids) {
      for (const std::string& body : bodies) {
        for (const std::string& type : types) {
          std::string target = info.pattern;
          for (std::string key : {"{image_id}", "{tag}", "{member_id}"}) {
            if (auto pos = target.find(key); pos != std::string::npos) {
              target.replace(pos, key.size(), image);
            }
          }
          Reply r = icall(info.method, target, body, alpha_, type);
          ++cases;
          EXPECT_LT(r.status, 500) << http::method_name(info.method) << " " << target << " " << body
                                   << " " << type << ": " << r;
          if (r.status >= 400) {
            EXPECT_EQ(r.header("content-type"), "text/plain; charset=UTF-8");
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 1000);
  for (std::string query : {"?limit=99999999999999999999", "?marker=%00", "?sort=:", "?sort=,",
                            "?size_min=", "?tag=%ff", "?limit=0"}) {
    Reply r = iget("/v2/images" + query, alpha_);
    EXPECT_LT(r.status, 500) << query << " " << r;
  }
}

}  // namespace
}  // namespace concord::image::testing

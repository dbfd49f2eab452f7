// The route table's policy, route by route: every catalog route refuses a request without a
// token (401) unless it is public, and every administrator route refuses a project member
// and a reader (403) before its handler runs, whatever the path parameters are.
#include "catalog_test_util.h"

namespace concord::compute::testing {
namespace {

class PolicyTest : public CatalogTest {
 protected:
  // The route's pattern with each {param} replaced by a harmless value.
  static std::string concrete(const std::string& pattern) {
    std::string out;
    size_t i = 0;
    while (i < pattern.size()) {
      if (pattern[i] == '{') {
        size_t end = pattern.find('}', i);
        out += "x1";
        i = end + 1;
      } else {
        out += pattern[i++];
      }
    }
    return out;
  }
  Reply hit(const RouteInfo& r, const std::string& token) {
    std::string body =
        r.method == http::Method::kPost || r.method == http::Method::kPut ? "{}" : "";
    return call(r.method, concrete(r.pattern), token, body, "latest");
  }
};

TEST_F(PolicyTest, EveryRouteHasAKnownRule) {
  ASSERT_GT(api_->infos().size(), 40u);
  for (const RouteInfo& r : api_->infos()) {
    EXPECT_TRUE(r.rule == "public" || r.rule == "admin" || r.rule == "authenticated" ||
                r.rule == "project_reader" || r.rule == "project_member")
        << r.pattern << " " << r.rule;
  }
}

TEST_F(PolicyTest, NoTokenIs401ExceptPublic) {
  for (const RouteInfo& r : api_->infos()) {
    Reply reply = hit(r, "");
    if (r.rule == "public") {
      EXPECT_EQ(reply.status, 200) << http::method_name(r.method) << " " << r.pattern << reply;
    } else {
      EXPECT_EQ(reply.status, 401) << http::method_name(r.method) << " " << r.pattern << reply;
      EXPECT_EQ(reply.fault(), "unauthorized");
    }
  }
}

TEST_F(PolicyTest, AdminRoutesRefuseMembersAndReaders) {
  int admin_routes = 0;
  for (const RouteInfo& r : api_->infos()) {
    if (r.rule != "admin") continue;
    ++admin_routes;
    for (const std::string* token : {&member1_, &reader1_, &member2_}) {
      Reply reply = hit(r, *token);
      EXPECT_EQ(reply.status, 403) << http::method_name(r.method) << " " << r.pattern << reply;
      EXPECT_EQ(reply.fault(), "forbidden");
    }
    // An administrator gets past policy: whatever the handler says, it is not 401/403.
    Reply as_admin = hit(r, admin_);
    EXPECT_NE(as_admin.status, 401) << r.pattern;
    EXPECT_NE(as_admin.status, 403) << r.pattern << as_admin;
    EXPECT_LT(as_admin.status, 500) << r.pattern << as_admin;
  }
  EXPECT_GE(admin_routes, 20);
}

TEST_F(PolicyTest, NoRouteAnswers500OnDummyInput) {
  for (const RouteInfo& r : api_->infos()) {
    for (const std::string* token : {&admin_, &member1_, &reader1_}) {
      Reply reply = hit(r, *token);
      EXPECT_LT(reply.status, 500) << http::method_name(r.method) << " " << r.pattern << reply;
    }
  }
}

TEST_F(PolicyTest, ReadersMayNotWriteProjectResources) {
  Reply group = post("/v2.1/os-server-groups",
                     {{"server_group", {{"name", "g"}, {"policies", {"affinity"}}}}}, reader1_);
  EXPECT_EQ(group.status, 403) << group;
  // Readers still read.
  EXPECT_EQ(get("/v2.1/os-server-groups", reader1_).status, 200);
  EXPECT_EQ(get("/v2.1/flavors/detail", reader1_).status, 200);
  EXPECT_EQ(get("/v2.1/limits", reader1_).status, 200);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_, reader1_).status, 200);
  EXPECT_EQ(get("/v2.1/os-availability-zone", reader1_).status, 200);
}

}  // namespace
}  // namespace concord::compute::testing

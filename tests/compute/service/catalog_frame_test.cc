// Version discovery and the microversion frame as the catalog routes see it.
#include "catalog_test_util.h"

namespace concord::compute::testing {
namespace {

class FrameTest : public CatalogTest {};

TEST_F(FrameTest, RootListsBothVersionsWithoutToken) {
  Reply r = get("/", "");
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(keys_of(r.body), std::vector<std::string>{"versions"});
  ASSERT_EQ(r.body["versions"].size(), 2u);
  const Json& v20 = r.body["versions"][0];
  const Json& v21 = r.body["versions"][1];
  EXPECT_EQ(v20["id"], "v2.0");
  EXPECT_EQ(v20["status"], "SUPPORTED");
  EXPECT_EQ(v20["version"], "");
  EXPECT_EQ(v20["min_version"], "");
  EXPECT_EQ(v21["id"], "v2.1");
  EXPECT_EQ(v21["status"], "CURRENT");
  EXPECT_EQ(v21["version"], "2.79");
  EXPECT_EQ(v21["min_version"], "2.1");
  EXPECT_EQ(v21["links"][0]["href"], "http://localhost:8774/compute/v2.1/");
  EXPECT_EQ(keys_of(v21), sorted({"id", "status", "version", "min_version", "updated", "links"}));
}

TEST_F(FrameTest, V21DocumentWithAndWithoutSlash) {
  for (const char* path : {"/v2.1", "/v2.1/"}) {
    Reply r = get(path, "");
    ASSERT_EQ(r.status, 200) << path << " " << r;
    const Json& v = r.body["version"];
    EXPECT_EQ(keys_of(v), sorted({"id", "status", "version", "min_version", "updated", "links",
                                  "media-types"}));
    EXPECT_EQ(v["version"], "2.79");
    EXPECT_EQ(v["media-types"][0]["type"], "application/vnd.openstack.compute+json;version=2.1");
  }
}

struct VersionCase {
  const char* header;  // "modern" or "legacy"
  const char* value;
  int status;
  const char* echoed;  // expected echo of the version ("" for none checked)
};

class VersionHeaderTest : public CatalogTest, public ::testing::WithParamInterface<VersionCase> {};

TEST_P(VersionHeaderTest, NegotiatesAndEchoes) {
  const VersionCase& c = GetParam();
  http::Request req;
  req.method = http::Method::kGet;
  req.target = "/compute/v2.1/flavors";
  req.base_url = "http://localhost:8774";
  req.headers.push_back({"x-auth-token", member1_});
  if (std::string_view(c.header) == "modern")
    req.headers.push_back({"openstack-api-version", c.value});
  else
    req.headers.push_back({"x-openstack-nova-api-version", c.value});
  Reply r = dispatch(std::move(req));
  EXPECT_EQ(r.status, c.status) << r;
  if (c.status == 406) {
    EXPECT_EQ(r.fault(), "notAcceptable") << r;
  }
  if (c.status == 400) {
    EXPECT_EQ(r.fault(), "badRequest") << r;
  }
  EXPECT_EQ(r.header("x-openstack-nova-api-version"), c.echoed);
  EXPECT_EQ(r.header("openstack-api-version"), std::string("compute ") + c.echoed);
  EXPECT_NE(r.header("vary").find("X-OpenStack-Nova-API-Version"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Frame, VersionHeaderTest,
                         ::testing::Values(VersionCase{"legacy", "2.1", 200, "2.1"},
                                           VersionCase{"legacy", "2.37", 200, "2.37"},
                                           VersionCase{"legacy", "latest", 200, "2.79"},
                                           VersionCase{"modern", "compute 2.55", 200, "2.55"},
                                           VersionCase{"modern", "compute latest", 200, "2.79"},
                                           VersionCase{"legacy", "2.80", 406, "2.1"},
                                           VersionCase{"legacy", "3.0", 406, "2.1"},
                                           VersionCase{"legacy", "abc", 400, "2.1"},
                                           VersionCase{"modern", "compute 2.x", 400, "2.1"}));

TEST_F(FrameTest, TokenRequiredForCatalogRoutes) {
  Reply none = get("/v2.1/flavors", "");
  EXPECT_EQ(none.status, 401) << none;
  EXPECT_EQ(none.fault(), "unauthorized");
  Reply forged = get("/v2.1/flavors", "not-a-token");
  EXPECT_EQ(forged.status, 401) << forged;
}

TEST_F(FrameTest, RequestIdHeader) {
  Reply r = get("/v2.1/flavors", member1_);
  EXPECT_EQ(r.header("x-compute-request-id"), "req-test");
}

}  // namespace
}  // namespace concord::compute::testing

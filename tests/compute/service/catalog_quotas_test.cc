// Limits, os-quota-sets, os-quota-class-sets, and the in-transaction checks of quota.h.
#include "catalog_test_util.h"
#include "compute/service/quota.h"

namespace concord::compute::testing {
namespace {

class QuotasTest : public CatalogTest {};

const std::vector<std::string> kAbsolute21 = {"maxImageMeta",          "maxPersonality",
                                              "maxPersonalitySize",    "maxSecurityGroupRules",
                                              "maxSecurityGroups",     "maxServerMeta",
                                              "maxTotalCores",         "maxTotalFloatingIps",
                                              "maxTotalInstances",     "maxTotalKeypairs",
                                              "maxTotalRAMSize",       "totalCoresUsed",
                                              "totalFloatingIpsUsed",  "totalInstancesUsed",
                                              "totalRAMUsed",          "totalSecurityGroupsUsed",
                                              "maxServerGroupMembers", "maxServerGroups",
                                              "totalServerGroupsUsed"};

std::vector<std::string> without(std::vector<std::string> v, std::vector<std::string> drop) {
  std::erase_if(v, [&](const std::string& s) {
    return std::find(drop.begin(), drop.end(), s) != drop.end();
  });
  return sorted(v);
}

struct LimitsCase {
  std::string version;
  std::vector<std::string> dropped;
};

class LimitsShapeTest : public QuotasTest, public ::testing::WithParamInterface<LimitsCase> {};

TEST_P(LimitsShapeTest, AbsoluteKeysPerVersion) {
  Reply r = get("/v2.1/limits", member1_, GetParam().version);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(keys_of(r.body), std::vector<std::string>{"limits"});
  EXPECT_EQ(keys_of(r.body["limits"]), sorted({"absolute", "rate"}));
  EXPECT_EQ(r.body["limits"]["rate"], Json::array());
  EXPECT_EQ(keys_of(r.body["limits"]["absolute"]), without(kAbsolute21, GetParam().dropped));
}

const std::vector<std::string> kNet = {"maxSecurityGroupRules", "maxSecurityGroups",
                                       "maxTotalFloatingIps", "totalFloatingIpsUsed",
                                       "totalSecurityGroupsUsed"};
std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

INSTANTIATE_TEST_SUITE_P(
    Versions, LimitsShapeTest,
    ::testing::Values(LimitsCase{"2.1", {}}, LimitsCase{"2.35", {}}, LimitsCase{"2.36", kNet},
                      LimitsCase{"2.39", plus(kNet, {"maxImageMeta"})},
                      LimitsCase{"2.57", plus(kNet, {"maxImageMeta", "maxPersonality",
                                                     "maxPersonalitySize"})}));

TEST_F(QuotasTest, LimitsCountUsageAndHonourTenantIdForAdmin) {
  seed_server("s1", p1_, 2, 1024);
  seed_server("s2", p1_, 1, 512);
  seed_server("s3", p1_, 4, 4096, "", /*deleted=*/true);
  seed_server("s4", p2_, 8, 8192);
  Reply r = get("/v2.1/limits", member1_);
  ASSERT_EQ(r.status, 200) << r;
  const Json& a = r.body["limits"]["absolute"];
  EXPECT_EQ(a["totalInstancesUsed"], 2);
  EXPECT_EQ(a["totalCoresUsed"], 3);
  EXPECT_EQ(a["totalRAMUsed"], 1536);
  EXPECT_EQ(a["maxTotalInstances"], 10);
  EXPECT_EQ(a["maxTotalCores"], 20);
  EXPECT_EQ(a["maxTotalRAMSize"], 51200);
  EXPECT_EQ(a["maxTotalKeypairs"], 100);
  Reply other = get("/v2.1/limits?tenant_id=" + p2_, admin_);
  ASSERT_EQ(other.status, 200) << other;
  EXPECT_EQ(other.body["limits"]["absolute"]["totalCoresUsed"], 8);
  Reply denied = get("/v2.1/limits?tenant_id=" + p2_, member1_);
  EXPECT_EQ(denied.status, 403) << denied;
  // Naming one's own project is fine.
  EXPECT_EQ(get("/v2.1/limits?tenant_id=" + p1_, member1_).status, 200);
}

const std::vector<std::string> kQuota21 = {"instances",
                                           "cores",
                                           "ram",
                                           "floating_ips",
                                           "fixed_ips",
                                           "metadata_items",
                                           "key_pairs",
                                           "security_groups",
                                           "security_group_rules",
                                           "injected_files",
                                           "injected_file_content_bytes",
                                           "injected_file_path_bytes",
                                           "server_groups",
                                           "server_group_members"};
const std::vector<std::string> kQuotaNet = {"floating_ips", "fixed_ips", "security_groups",
                                            "security_group_rules"};
const std::vector<std::string> kQuotaInjected = {"injected_files", "injected_file_content_bytes",
                                                 "injected_file_path_bytes"};

struct QuotaShapeCase {
  std::string version;
  std::vector<std::string> dropped;
};
class QuotaSetShapeTest : public QuotasTest,
                          public ::testing::WithParamInterface<QuotaShapeCase> {};

TEST_P(QuotaSetShapeTest, ShowDetailDefaultsUpdateKeys) {
  const auto& c = GetParam();
  std::vector<std::string> res = without(kQuota21, c.dropped);
  std::vector<std::string> with_id = sorted(plus(res, {"id"}));
  Reply show = get("/v2.1/os-quota-sets/" + p1_, member1_, c.version);
  ASSERT_EQ(show.status, 200) << show;
  EXPECT_EQ(keys_of(show.body["quota_set"]), with_id);
  EXPECT_EQ(show.body["quota_set"]["id"], p1_);
  Reply defaults = get("/v2.1/os-quota-sets/" + p1_ + "/defaults", member1_, c.version);
  ASSERT_EQ(defaults.status, 200) << defaults;
  EXPECT_EQ(keys_of(defaults.body["quota_set"]), with_id);
  Reply detail = get("/v2.1/os-quota-sets/" + p1_ + "/detail", member1_, c.version);
  ASSERT_EQ(detail.status, 200) << detail;
  EXPECT_EQ(keys_of(detail.body["quota_set"]), with_id);
  EXPECT_EQ(keys_of(detail.body["quota_set"]["cores"]), sorted({"in_use", "limit", "reserved"}));
  Reply upd =
      put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"cores", 30}}}}, admin_, c.version);
  ASSERT_EQ(upd.status, 200) << upd;
  EXPECT_EQ(keys_of(upd.body["quota_set"]), res);  // no id in the update answer
  EXPECT_EQ(upd.body["quota_set"]["cores"], 30);
}

INSTANTIATE_TEST_SUITE_P(
    Versions, QuotaSetShapeTest,
    ::testing::Values(QuotaShapeCase{"2.1", {}}, QuotaShapeCase{"2.36", kQuotaNet},
                      QuotaShapeCase{"2.57", plus(kQuotaNet, kQuotaInjected)}));

TEST_F(QuotasTest, UpdateShowDeleteAndUnlimited) {
  Reply upd =
      put("/v2.1/os-quota-sets/" + p1_,
          {{"quota_set", {{"instances", "20"}, {"ram", -1}, {"metadata_items", 256}}}}, admin_);
  ASSERT_EQ(upd.status, 200) << upd;
  Reply show = get("/v2.1/os-quota-sets/" + p1_, reader1_);
  EXPECT_EQ(show.body["quota_set"]["instances"], 20);
  EXPECT_EQ(show.body["quota_set"]["ram"], -1);
  EXPECT_EQ(show.body["quota_set"]["cores"], 20);  // untouched default
  // The other project keeps defaults.
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p2_, member2_).body["quota_set"]["instances"], 10);
  Reply d = del("/v2.1/os-quota-sets/" + p1_, admin_);
  EXPECT_EQ(d.status, 202) << d;
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_, member1_).body["quota_set"]["instances"], 10);
}

TEST_F(QuotasTest, Policy) {
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p2_, member1_).status, 403);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p2_ + "/detail", member1_).status, 403);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p2_, admin_).status, 200);
  for (const std::string* t : {&member1_, &reader1_}) {
    EXPECT_EQ(put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"cores", 1}}}}, *t).status, 403);
    EXPECT_EQ(del("/v2.1/os-quota-sets/" + p1_, *t).status, 403);
    EXPECT_EQ(get("/v2.1/os-quota-class-sets/default", *t).status, 403);
    EXPECT_EQ(
        put("/v2.1/os-quota-class-sets/default", {{"quota_class_set", {{"cores", 1}}}}, *t).status,
        403);
  }
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_, "").status, 401);
  // A member may read their own user's quota but not another user's.
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_ + "?user_id=" + member1_user_, member1_).status, 200);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_ + "?user_id=" + reader1_user_, member1_).status, 403);
}

TEST_F(QuotasTest, BadUpdates400) {
  for (const Json& body :
       {Json({{"quota_set", {{"cores", -2}}}}), Json({{"quota_set", {{"cores", "many"}}}}),
        Json({{"quota_set", {{"cores", 1.5}}}}), Json({{"quota_set", {{"unicorns", 1}}}}),
        Json({{"quota_set", {{"cores", int64_t{1} << 40}}}}), Json({{"quota_set", "x"}}),
        Json({{"quota", {{"cores", 1}}}}), Json({{"quota_set", {{"force", "sometimes"}}}})}) {
    Reply r = put("/v2.1/os-quota-sets/" + p1_, body, admin_);
    EXPECT_EQ(r.status, 400) << body << " " << r;
  }
  // Network resources are gone from the schema at 2.36, file injection at 2.57.
  EXPECT_EQ(
      put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"floating_ips", 1}}}}, admin_, "2.36")
          .status,
      400);
  EXPECT_EQ(
      put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"injected_files", 1}}}}, admin_, "2.57")
          .status,
      400);
  EXPECT_EQ(
      put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"injected_files", 1}}}}, admin_, "2.56")
          .status,
      200);
}

TEST_F(QuotasTest, LimitBelowUsageNeedsForce) {
  seed_server("s1", p1_, 4, 1024);
  seed_server("s2", p1_, 4, 1024);
  Reply r = put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"instances", 1}}}}, admin_);
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(r.message(),
            "Quota limit 1 for instances must be greater than or equal to already used and "
            "reserved 2.");
  Reply forced = put("/v2.1/os-quota-sets/" + p1_,
                     {{"quota_set", {{"instances", 1}, {"force", true}}}}, admin_);
  EXPECT_EQ(forced.status, 200) << forced;
  Reply detail = get("/v2.1/os-quota-sets/" + p1_ + "/detail", member1_);
  EXPECT_EQ(detail.body["quota_set"]["instances"],
            Json({{"in_use", 2}, {"limit", 1}, {"reserved", 0}}));
  EXPECT_EQ(detail.body["quota_set"]["cores"]["in_use"], 8);
  EXPECT_EQ(detail.body["quota_set"]["ram"]["in_use"], 2048);
}

TEST_F(QuotasTest, PerUserQuotasShownForThatUser) {
  Reply u = put("/v2.1/os-quota-sets/" + p1_ + "?user_id=" + member1_user_,
                {{"quota_set", {{"ram", "2048"}}}}, admin_);
  ASSERT_EQ(u.status, 200) << u;
  EXPECT_EQ(u.body["quota_set"]["ram"], 2048);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_ + "?user_id=" + member1_user_, admin_)
                .body["quota_set"]["ram"],
            2048);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_, admin_).body["quota_set"]["ram"], 51200);
  ASSERT_EQ(del("/v2.1/os-quota-sets/" + p1_ + "?user_id=" + member1_user_, admin_).status, 202);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p1_ + "?user_id=" + member1_user_, admin_)
                .body["quota_set"]["ram"],
            51200);
}

TEST_F(QuotasTest, QuotaClassDefaultFeedsProjects) {
  Reply show = get("/v2.1/os-quota-class-sets/default", admin_);
  ASSERT_EQ(show.status, 200) << show;
  EXPECT_EQ(show.body["quota_class_set"]["id"], "default");
  // Before 2.50 the class view has no server group resources.
  EXPECT_FALSE(show.body["quota_class_set"].contains("server_groups"));
  EXPECT_EQ(keys_of(show.body["quota_class_set"]).size(), 13u);
  Reply upd = put("/v2.1/os-quota-class-sets/default",
                  {{"quota_class_set", {{"instances", 15}, {"server_groups", 3}}}}, admin_);
  ASSERT_EQ(upd.status, 200) << upd;
  EXPECT_FALSE(upd.body["quota_class_set"].contains("id"));
  EXPECT_EQ(upd.body["quota_class_set"]["instances"], 15);
  EXPECT_EQ(get("/v2.1/os-quota-sets/" + p2_, member2_).body["quota_set"]["instances"], 15);
  EXPECT_EQ(
      get("/v2.1/os-quota-sets/" + p2_ + "/defaults", member2_).body["quota_set"]["instances"], 15);
  Reply v250 = get("/v2.1/os-quota-class-sets/default", admin_, "2.50");
  EXPECT_EQ(v250.body["quota_class_set"]["server_groups"], 3);
  EXPECT_FALSE(v250.body["quota_class_set"].contains("floating_ips"));
  EXPECT_TRUE(v250.body["quota_class_set"].contains("injected_files"));
  Reply v257 = get("/v2.1/os-quota-class-sets/default", admin_, "2.57");
  EXPECT_EQ(keys_of(v257.body["quota_class_set"]),
            sorted({"id", "instances", "cores", "ram", "metadata_items", "key_pairs",
                    "server_groups", "server_group_members"}));
  EXPECT_EQ(put("/v2.1/os-quota-class-sets/default", {{"quota_class_set", {{"bogus", 1}}}}, admin_)
                .status,
            400);
}

// The checks the servers engineer calls inside their create/resize transactions.
TEST_F(QuotasTest, InstancesAllowedMath) {
  seed_server("s1", p1_, 2, 2048);
  ASSERT_EQ(put("/v2.1/os-quota-sets/" + p1_,
                {{"quota_set", {{"instances", 5}, {"cores", 8}, {"ram", 8192}}}}, admin_)
                .status,
            200);
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    // 4 instances left, 6 cores (3 of 2), 6144 MiB (3 of 2048): cores/ram bound it to 3.
    auto fits = instances_allowed(tx, p1_, 1, 10, 2, 2048);
    EXPECT_TRUE(fits.has_value());
    if (fits) {
      EXPECT_EQ(*fits, 3);
    }
    auto all = instances_allowed(tx, p1_, 1, 2, 1, 512);
    EXPECT_TRUE(all.has_value());
    if (all) {
      EXPECT_EQ(*all, 2);
    }
    auto over = instances_allowed(tx, p1_, 4, 4, 2, 512);
    EXPECT_FALSE(over.has_value());
    if (!over) {
      EXPECT_EQ(over.error().code(), Code::kResourceExhausted);
      EXPECT_EQ(over.error().message(),
                "Quota exceeded for cores: Requested 8, but already used 2 of 8 cores");
    }
    return ok();
  }));
}

TEST_F(QuotasTest, InstancesQuotaMessageAsNova) {
  for (int i = 0; i < 10; ++i) seed_server("s" + std::to_string(i), p1_, 1, 64);
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    auto r = instances_allowed(tx, p1_, 1, 1, 1, 64);
    EXPECT_FALSE(r.has_value());
    if (!r) {
      EXPECT_EQ(r.error().code(), Code::kResourceExhausted);
      EXPECT_EQ(r.error().message(),
                "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances");
    }
    return ok();
  }));
  // Unlimited instances: only cores and ram bound it.
  ASSERT_EQ(put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"instances", -1}}}}, admin_).status,
            200);
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    auto r = instances_allowed(tx, p1_, 1, 100, 1, 64);
    EXPECT_TRUE(r.has_value());
    if (r) {
      EXPECT_EQ(*r, 10);  // 20 cores - 10 used
    }
    return ok();
  }));
}

TEST_F(QuotasTest, ResizeQuota) {
  seed_server("s1", p1_, 18, 50000);
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    EXPECT_TRUE(check_resize_quota(tx, p1_, 2, 1200).has_value());
    EXPECT_TRUE(check_resize_quota(tx, p1_, -4, -1000).has_value());  // shrinking always fits
    auto cores = check_resize_quota(tx, p1_, 3, 0);
    EXPECT_FALSE(cores.has_value());
    if (!cores) {
      EXPECT_EQ(cores.error().code(), Code::kResourceExhausted);
      EXPECT_EQ(cores.error().message(),
                "Quota exceeded for cores: Requested 3, but already used 18 of 20 cores");
    }
    auto ram = check_resize_quota(tx, p1_, 0, 1201);
    EXPECT_FALSE(ram.has_value());
    if (!ram) {
      EXPECT_EQ(ram.error().message(),
                "Quota exceeded for ram: Requested 1201, but already used 50000 of 51200 ram");
    }
    return ok();
  }));
}

}  // namespace
}  // namespace concord::compute::testing

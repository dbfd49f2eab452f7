// os-availability-zone, os-server-groups, os-hypervisors, os-services.
#include "catalog_test_util.h"

namespace concord::compute::testing {
namespace {

class MiscTest : public CatalogTest {
 protected:
  // Two hosts: "h1" up in zone "nova", "h2" silent for a minute (down) in zone "az2".
  void two_hosts() {
    seed_host("h1", "nova", now_ms(), 1);
    seed_host("h2", "az2", now_ms() - 60000, 2);
  }
  Json group(const Json& body, const std::string& token, const std::string& version = "",
             int status = 200) {
    Reply r = post("/v2.1/os-server-groups", {{"server_group", body}}, token, version);
    EXPECT_EQ(r.status, status) << r;
    return r.body["server_group"];
  }
};

// ---------- availability zones ----------

TEST_F(MiscTest, ZonesForAnyUser) {
  two_hosts();
  Reply r = get("/v2.1/os-availability-zone", reader1_);
  ASSERT_EQ(r.status, 200) << r;
  const Json& zones = r.body["availabilityZoneInfo"];
  ASSERT_EQ(zones.size(), 2u);
  EXPECT_EQ(zones[0],
            Json({{"zoneName", "nova"}, {"zoneState", {{"available", true}}}, {"hosts", nullptr}}));
  EXPECT_EQ(zones[1]["zoneName"], "az2");
  EXPECT_EQ(zones[1]["zoneState"]["available"], false);  // its only host is down
}

TEST_F(MiscTest, DefaultZoneListedWithoutHosts) {
  Reply r = get("/v2.1/os-availability-zone", member1_);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["availabilityZoneInfo"].size(), 1u);
  EXPECT_EQ(r.body["availabilityZoneInfo"][0]["zoneName"], "nova");
  EXPECT_EQ(r.body["availabilityZoneInfo"][0]["zoneState"]["available"], false);
}

TEST_F(MiscTest, ZoneDetailForAdmin) {
  two_hosts();
  EXPECT_EQ(get("/v2.1/os-availability-zone/detail", member1_).status, 403);
  Reply r = get("/v2.1/os-availability-zone/detail", admin_);
  ASSERT_EQ(r.status, 200) << r;
  const Json& zones = r.body["availabilityZoneInfo"];
  ASSERT_EQ(zones.size(), 3u);
  EXPECT_EQ(zones[0]["zoneName"], "internal");
  const Json& control = zones[0]["hosts"].begin().value();
  EXPECT_EQ(keys_of(control), sorted({"nova-conductor", "nova-scheduler"}));
  const Json& h1 = zones[1]["hosts"]["h1"]["nova-compute"];
  EXPECT_EQ(keys_of(h1), sorted({"available", "active", "updated_at"}));
  EXPECT_EQ(h1["available"], true);
  EXPECT_EQ(h1["active"], true);
  EXPECT_EQ(zones[2]["hosts"]["h2"]["nova-compute"]["available"], false);
}

// ---------- server groups ----------

TEST_F(MiscTest, ServerGroupShapesPerVersion) {
  Json g21 = group({{"name", "g"}, {"policies", {"anti-affinity"}}}, member1_, "2.1");
  EXPECT_EQ(keys_of(g21), sorted({"id", "name", "policies", "members", "metadata"}));
  EXPECT_EQ(g21["policies"], Json({"anti-affinity"}));
  EXPECT_EQ(g21["metadata"], Json::object());
  Json g213 = group({{"name", "g"}, {"policies", {"affinity"}}}, member1_, "2.13");
  EXPECT_EQ(keys_of(g213),
            sorted({"id", "name", "policies", "members", "metadata", "project_id", "user_id"}));
  EXPECT_EQ(g213["project_id"], p1_);
  EXPECT_EQ(g213["user_id"], member1_user_);
  Json g264 =
      group({{"name", "g"}, {"policy", "anti-affinity"}, {"rules", {{"max_server_per_host", 2}}}},
            member1_, "2.64");
  EXPECT_EQ(keys_of(g264),
            sorted({"id", "name", "policy", "rules", "members", "project_id", "user_id"}));
  EXPECT_EQ(g264["rules"], Json({{"max_server_per_host", 2}}));
  // Nova's positive_integer takes digits in a string too.
  Json digits =
      group({{"name", "d"}, {"policy", "anti-affinity"}, {"rules", {{"max_server_per_host", "3"}}}},
            member1_, "2.64");
  EXPECT_EQ(digits["rules"], Json({{"max_server_per_host", 3}})) << digits;
  Reply old_view = get("/v2.1/os-server-groups/" + g264["id"].get<std::string>(), member1_, "2.1");
  EXPECT_EQ(old_view.body["server_group"]["policies"], Json({"anti-affinity"}));
  Json plain = group({{"name", "p"}, {"policy", "soft-affinity"}}, member1_, "2.64");
  EXPECT_EQ(plain["rules"], Json::object());
}

struct BadGroup {
  const char* what;
  const char* version;
  Json body;
};

class BadGroupTest : public MiscTest, public ::testing::WithParamInterface<BadGroup> {};

TEST_P(BadGroupTest, Rejected400) {
  Reply r = post("/v2.1/os-server-groups", {{"server_group", GetParam().body}}, member1_,
                 GetParam().version);
  EXPECT_EQ(r.status, 400) << GetParam().what << ": " << r;
  EXPECT_EQ(r.fault(), "badRequest");
}

INSTANTIATE_TEST_SUITE_P(
    Validation, BadGroupTest,
    ::testing::Values(
        BadGroup{"no name", "2.1", {{"policies", {"affinity"}}}},
        BadGroup{"empty name", "2.1", {{"name", ""}, {"policies", {"affinity"}}}},
        BadGroup{
            "two policies", "2.1", {{"name", "g"}, {"policies", {"affinity", "anti-affinity"}}}},
        BadGroup{"unknown policy", "2.1", {{"name", "g"}, {"policies", {"spread"}}}},
        BadGroup{"soft before 2.15", "2.14", {{"name", "g"}, {"policies", {"soft-affinity"}}}},
        BadGroup{"policy key before 2.64", "2.63", {{"name", "g"}, {"policy", "affinity"}}},
        BadGroup{"policies key at 2.64", "2.64", {{"name", "g"}, {"policies", {"affinity"}}}},
        BadGroup{"rules with affinity",
                 "2.64",
                 {{"name", "g"}, {"policy", "affinity"}, {"rules", {{"max_server_per_host", 2}}}}},
        BadGroup{
            "zero max",
            "2.64",
            {{"name", "g"}, {"policy", "anti-affinity"}, {"rules", {{"max_server_per_host", 0}}}}},
        BadGroup{"unknown rule",
                 "2.64",
                 {{"name", "g"}, {"policy", "anti-affinity"}, {"rules", {{"spread", 1}}}}},
        BadGroup{"extra key", "2.1", {{"name", "g"}, {"policies", {"affinity"}}, {"x", 1}}}));

TEST_F(MiscTest, ServerGroupMembersSkipDeletedServers) {
  Json g = group({{"name", "g"}, {"policies", {"affinity"}}}, member1_);
  std::string id = g["id"];
  seed_server("live", p1_, 1, 64);
  seed_server("dead", p1_, 1, 64, "", /*deleted=*/true);
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    for (const char* s : {"live", "dead"}) {
      auto n =
          tx.exec("INSERT INTO compute_server_group_members (group_id, server_id) VALUES (?, ?)",
                  {id, std::string(s)});
      if (!n) return fail(n.error());
    }
    return ok();
  }));
  Reply r = get("/v2.1/os-server-groups/" + id, reader1_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["server_group"]["members"], Json({"live"}));
}

TEST_F(MiscTest, ServerGroupPolicyAndListing) {
  Json g1 = group({{"name", "one"}, {"policies", {"affinity"}}}, member1_);
  clock_.advance(std::chrono::seconds(1));  // listings are in creation order
  Json g2 = group({{"name", "two"}, {"policies", {"affinity"}}}, member2_);
  group({{"name", "r"}, {"policies", {"affinity"}}}, reader1_, "", 403);
  std::string id1 = g1["id"];
  // Another project's group is not found; readers may see but not delete.
  EXPECT_EQ(get("/v2.1/os-server-groups/" + id1, member2_).status, 404);
  EXPECT_EQ(del("/v2.1/os-server-groups/" + id1, member2_).status, 404);
  EXPECT_EQ(get("/v2.1/os-server-groups/" + id1, reader1_).status, 200);
  EXPECT_EQ(del("/v2.1/os-server-groups/" + id1, reader1_).status, 403);
  Reply mine = get("/v2.1/os-server-groups", member1_);
  ASSERT_EQ(mine.body["server_groups"].size(), 1u);
  EXPECT_EQ(mine.body["server_groups"][0]["name"], "one");
  // all_projects is an administrator's switch; others just see their own.
  EXPECT_EQ(get("/v2.1/os-server-groups?all_projects=True", member1_).body["server_groups"].size(),
            1u);
  EXPECT_EQ(get("/v2.1/os-server-groups?all_projects=True", admin_).body["server_groups"].size(),
            2u);
  EXPECT_EQ(get("/v2.1/os-server-groups", admin_).body["server_groups"].size(), 0u);
  EXPECT_EQ(get("/v2.1/os-server-groups?all_projects=1&limit=1&offset=1", admin_)
                .body["server_groups"][0]["name"],
            "two");
  EXPECT_EQ(get("/v2.1/os-server-groups?limit=abc", member1_).status, 400);
  EXPECT_EQ(get("/v2.1/os-server-groups?offset=-1", member1_).status, 400);
  Reply d = del("/v2.1/os-server-groups/" + id1, member1_);
  EXPECT_EQ(d.status, 204) << d;
  Reply gone = get("/v2.1/os-server-groups/" + id1, member1_);
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.message(), "Instance group " + id1 + " could not be found.");
  EXPECT_EQ(get("/v2.1/os-server-groups", "").status, 401);
}

TEST_F(MiscTest, ServerGroupQuota) {
  ASSERT_EQ(
      put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"server_groups", 1}}}}, admin_).status,
      200);
  group({{"name", "a"}, {"policies", {"affinity"}}}, member1_);
  Reply over = post("/v2.1/os-server-groups",
                    {{"server_group", {{"name", "b"}, {"policies", {"affinity"}}}}}, member1_);
  EXPECT_EQ(over.status, 403) << over;
  EXPECT_EQ(over.message(), "Quota exceeded, too many server groups.");
  EXPECT_EQ(get("/v2.1/limits", member1_).body["limits"]["absolute"]["totalServerGroupsUsed"], 1);
}

// ---------- hypervisors ----------

TEST_F(MiscTest, HypervisorsAdminOnly) {
  for (const char* path : {"/v2.1/os-hypervisors", "/v2.1/os-hypervisors/detail",
                           "/v2.1/os-hypervisors/statistics", "/v2.1/os-services"}) {
    EXPECT_EQ(get(path, member1_).status, 403) << path;
    EXPECT_EQ(get(path, "").status, 401) << path;
  }
}

TEST_F(MiscTest, HypervisorListDetailAndUsage) {
  two_hosts();
  seed_server("a", p1_, 2, 1024, "h1");
  seed_server("b", p2_, 1, 512, "h1");
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    auto n = tx.exec(
        "INSERT INTO compute_allocations (server_id, purpose, host, vcpus, ram_mb, disk_gb) "
        "VALUES ('a', 'instance', 'h1', 2, 1024, 10), ('b', 'instance', 'h1', 1, 512, 5)");
    if (!n) return fail(n.error());
    return ok();
  }));
  Reply list = get("/v2.1/os-hypervisors", admin_);
  ASSERT_EQ(list.status, 200) << list;
  ASSERT_EQ(list.body["hypervisors"].size(), 2u);
  EXPECT_EQ(
      list.body["hypervisors"][0],
      Json({{"id", 1}, {"hypervisor_hostname", "h1"}, {"state", "up"}, {"status", "enabled"}}));
  EXPECT_EQ(list.body["hypervisors"][1]["state"], "down");
  Reply detail = get("/v2.1/os-hypervisors/detail", admin_);
  ASSERT_EQ(detail.status, 200) << detail;
  const Json& h1 = detail.body["hypervisors"][0];
  EXPECT_EQ(keys_of(h1), sorted({"cpu_info",
                                 "current_workload",
                                 "disk_available_least",
                                 "host_ip",
                                 "free_disk_gb",
                                 "free_ram_mb",
                                 "hypervisor_hostname",
                                 "hypervisor_type",
                                 "hypervisor_version",
                                 "id",
                                 "local_gb",
                                 "local_gb_used",
                                 "memory_mb",
                                 "memory_mb_used",
                                 "running_vms",
                                 "service",
                                 "vcpus",
                                 "vcpus_used",
                                 "state",
                                 "status"}));
  EXPECT_EQ(h1["vcpus_used"], 3);
  EXPECT_EQ(h1["memory_mb_used"], 1536);
  EXPECT_EQ(h1["local_gb_used"], 15);
  EXPECT_EQ(h1["free_ram_mb"], 16384 - 1536);
  EXPECT_EQ(h1["running_vms"], 2);
  EXPECT_TRUE(h1["cpu_info"].is_string());
  EXPECT_EQ(h1["service"]["host"], "h1");
  EXPECT_EQ(h1["hypervisor_type"], "runc");
  Reply at228 = get("/v2.1/os-hypervisors/1", admin_, "2.28");
  ASSERT_EQ(at228.status, 200) << at228;
  EXPECT_TRUE(at228.body["hypervisor"]["cpu_info"].is_object());
  Reply stats = get("/v2.1/os-hypervisors/statistics", admin_);
  ASSERT_EQ(stats.status, 200) << stats;
  EXPECT_EQ(stats.body["hypervisor_statistics"]["count"], 2);
  EXPECT_EQ(stats.body["hypervisor_statistics"]["vcpus"], 16);
  EXPECT_EQ(stats.body["hypervisor_statistics"]["running_vms"], 2);
  EXPECT_EQ(get("/v2.1/os-hypervisors/9", admin_).status, 404);
  Reply search = get("/v2.1/os-hypervisors/h2/search", admin_);
  ASSERT_EQ(search.status, 200) << search;
  EXPECT_EQ(search.body["hypervisors"].size(), 1u);
  EXPECT_EQ(get("/v2.1/os-hypervisors/zz/search", admin_).status, 404);
  Reply servers = get("/v2.1/os-hypervisors/h1/servers", admin_);
  ASSERT_EQ(servers.status, 200) << servers;
  EXPECT_EQ(servers.body["hypervisors"][0]["servers"].size(), 2u);
}

TEST_F(MiscTest, HypervisorUuidsAt253) {
  two_hosts();
  Reply list = get("/v2.1/os-hypervisors?with_servers=true", admin_, "2.53");
  ASSERT_EQ(list.status, 200) << list;
  std::string id = list.body["hypervisors"][0]["id"];
  EXPECT_EQ(id.size(), 36u);
  // Stable: the same id on every call.
  EXPECT_EQ(get("/v2.1/os-hypervisors", admin_, "2.53").body["hypervisors"][0]["id"], id);
  Reply show = get("/v2.1/os-hypervisors/" + id, admin_, "2.53");
  ASSERT_EQ(show.status, 200) << show;
  EXPECT_EQ(show.body["hypervisor"]["hypervisor_hostname"], "h1");
  EXPECT_EQ(show.body["hypervisor"]["service"]["id"].get<std::string>().size(), 36u);
  EXPECT_EQ(get("/v2.1/os-hypervisors/1", admin_, "2.53").status, 400);
  EXPECT_EQ(get("/v2.1/os-hypervisors/h1/search", admin_, "2.53").status, 404);
  Reply pattern = get("/v2.1/os-hypervisors?hypervisor_hostname_pattern=h2", admin_, "2.53");
  ASSERT_EQ(pattern.status, 200) << pattern;
  EXPECT_EQ(pattern.body["hypervisors"].size(), 1u);
  Reply paged = get("/v2.1/os-hypervisors?limit=1", admin_, "2.53");
  ASSERT_EQ(paged.body["hypervisors"].size(), 1u);
  EXPECT_TRUE(paged.body.contains("hypervisors_links"));
  Reply next = get("/v2.1/os-hypervisors?limit=1&marker=" + id, admin_, "2.53");
  EXPECT_EQ(next.body["hypervisors"][0]["hypervisor_hostname"], "h2");
  EXPECT_EQ(get("/v2.1/os-hypervisors?marker=nope", admin_, "2.53").status, 400);
}

// ---------- services ----------

TEST_F(MiscTest, ServicesListShapes) {
  two_hosts();
  Reply r = get("/v2.1/os-services", admin_);
  ASSERT_EQ(r.status, 200) << r;
  const Json& s = r.body["services"];
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0]["binary"], "nova-scheduler");
  EXPECT_EQ(s[1]["binary"], "nova-conductor");
  EXPECT_EQ(keys_of(s[2]), sorted({"id", "binary", "host", "zone", "status", "state", "updated_at",
                                   "disabled_reason"}));
  EXPECT_EQ(s[2]["host"], "h1");
  EXPECT_EQ(s[2]["state"], "up");
  EXPECT_EQ(s[3]["state"], "down");
  EXPECT_TRUE(s[2]["id"].is_number_integer());
  Reply v211 = get("/v2.1/os-services?binary=nova-compute", admin_, "2.11");
  ASSERT_EQ(v211.body["services"].size(), 2u);
  EXPECT_EQ(v211.body["services"][0]["forced_down"], false);
  Reply by_host = get("/v2.1/os-services?host=h2", admin_);
  ASSERT_EQ(by_host.body["services"].size(), 1u);
}

TEST_F(MiscTest, LegacyDisableEnable) {
  two_hosts();
  Reply d =
      put("/v2.1/os-services/disable-log-reason",
          {{"host", "h1"}, {"binary", "nova-compute"}, {"disabled_reason", "maintenance"}}, admin_);
  ASSERT_EQ(d.status, 200) << d;
  EXPECT_EQ(d.body["service"], Json({{"host", "h1"},
                                     {"binary", "nova-compute"},
                                     {"status", "disabled"},
                                     {"disabled_reason", "maintenance"}}));
  Reply list = get("/v2.1/os-services?host=h1", admin_);
  EXPECT_EQ(list.body["services"][0]["status"], "disabled");
  EXPECT_EQ(list.body["services"][0]["disabled_reason"], "maintenance");
  // A disabled host makes its zone unavailable and its hypervisor "disabled".
  EXPECT_EQ(get("/v2.1/os-availability-zone", member1_)
                .body["availabilityZoneInfo"][0]["zoneState"]["available"],
            false);
  EXPECT_EQ(get("/v2.1/os-hypervisors", admin_).body["hypervisors"][0]["status"], "disabled");
  Reply e = put("/v2.1/os-services/enable", {{"host", "h1"}, {"binary", "nova-compute"}}, admin_);
  ASSERT_EQ(e.status, 200) << e;
  EXPECT_EQ(e.body["service"]["status"], "enabled");
  EXPECT_EQ(put("/v2.1/os-services/disable", {{"host", "nope"}, {"binary", "nova-compute"}}, admin_)
                .status,
            404);
  EXPECT_EQ(put("/v2.1/os-services/disable", {{"host", "h1"}}, admin_).status, 400);
  EXPECT_EQ(put("/v2.1/os-services/disable", {{"host", "h1"}, {"binary", "nova-compute"}}, member1_)
                .status,
            403);
  // The change is in the feed, for schedulers and caches.
  auto changes = store_->changes_since(0, 1000);
  ASSERT_TRUE(changes.has_value());
  bool seen = false;
  for (const store::Change& c : *changes) seen = seen || (c.kind == kHostKind && c.id == "h1");
  EXPECT_TRUE(seen);
}

TEST_F(MiscTest, UpdateServiceAt253) {
  two_hosts();
  Reply list = get("/v2.1/os-services?binary=nova-compute&host=h1", admin_, "2.53");
  ASSERT_EQ(list.status, 200) << list;
  std::string id = list.body["services"][0]["id"];
  ASSERT_EQ(id.size(), 36u);
  Reply d = put("/v2.1/os-services/" + id, {{"status", "disabled"}, {"disabled_reason", "x"}},
                admin_, "2.53");
  ASSERT_EQ(d.status, 200) << d;
  EXPECT_EQ(keys_of(d.body["service"]), sorted({"id", "binary", "disabled_reason", "host", "state",
                                                "status", "updated_at", "zone", "forced_down"}));
  EXPECT_EQ(d.body["service"]["status"], "disabled");
  EXPECT_EQ(d.body["service"]["disabled_reason"], "x");
  Reply e = put("/v2.1/os-services/" + id, {{"status", "enabled"}}, admin_, "2.53");
  EXPECT_EQ(e.body["service"]["status"], "enabled");
  EXPECT_TRUE(e.body["service"]["disabled_reason"].is_null());
  for (const Json& bad : {Json::object(), Json({{"status", "sleeping"}}),
                          Json({{"status", "enabled"}, {"disabled_reason", "x"}}),
                          Json({{"forced_down", true}}), Json({{"color", "red"}})}) {
    Reply r = put("/v2.1/os-services/" + id, bad, admin_, "2.53");
    EXPECT_EQ(r.status, 400) << bad << " " << r;
  }
  EXPECT_EQ(put("/v2.1/os-services/00000000-0000-5000-8000-000000000000", {{"status", "enabled"}},
                admin_, "2.53")
                .status,
            404);
  EXPECT_EQ(put("/v2.1/os-services/" + id, {{"status", "enabled"}}, admin_, "2.52").status, 404);
}

}  // namespace
}  // namespace concord::compute::testing

// The server views per microversion: the exact key sets Tempest's schemas allow
// (additionalProperties: false), for show, list detail, update and rebuild, admin and not.
#include "servers_test_util.h"

namespace concord::compute::testing {
namespace {

std::set<std::string> keys_of(const Json& j) {
  std::set<std::string> out;
  for (auto& [k, v] : j.items()) out.insert(k);
  return out;
}

std::set<std::string> operator+(std::set<std::string> a, const std::set<std::string>& b) {
  a.insert(b.begin(), b.end());
  return a;
}

const std::set<std::string> kBase = {
    "id",         "name",      "status",   "image", "flavor",    "user_id", "tenant_id",
    "created",    "updated",   "metadata", "links", "addresses", "hostId",  "OS-DCF:diskConfig",
    "accessIPv4", "accessIPv6"};
const std::set<std::string> kDetail21 = {"key_name",
                                         "security_groups",
                                         "OS-SRV-USG:launched_at",
                                         "OS-SRV-USG:terminated_at",
                                         "OS-EXT-AZ:availability_zone",
                                         "OS-EXT-STS:task_state",
                                         "OS-EXT-STS:vm_state",
                                         "OS-EXT-STS:power_state",
                                         "os-extended-volumes:volumes_attached",
                                         "config_drive"};
const std::set<std::string> kAdmin21 = {"OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:instance_name",
                                        "OS-EXT-SRV-ATTR:hypervisor_hostname"};
const std::set<std::string> kAdmin23 = {
    "OS-EXT-SRV-ATTR:reservation_id", "OS-EXT-SRV-ATTR:launch_index",
    "OS-EXT-SRV-ATTR:kernel_id",      "OS-EXT-SRV-ATTR:ramdisk_id",
    "OS-EXT-SRV-ATTR:hostname",       "OS-EXT-SRV-ATTR:root_device_name",
    "OS-EXT-SRV-ATTR:user_data"};

class ViewTest : public ServersTest {
 protected:
  void SetUp() override {
    ServersTest::SetUp();
    add_host("h1");
    id_ = create(alice_, server_body("v"));
    // BUILD has "progress"; keep it in the expected sets below.
  }
  std::string id_;
};

struct ViewCase {
  const char* version;
  bool admin;
  std::set<std::string> extra;  // beyond kBase + progress + kDetail21 (+ admin sets)
};

TEST_F(ViewTest, ShowKeySetsPerVersion) {
  const std::vector<ViewCase> cases = {
      {"2.1", false, {}},
      {"2.1", true, kAdmin21},
      {"2.3", true, kAdmin21 + kAdmin23},
      {"2.3", false, {}},
      {"2.9", false, {"locked"}},
      {"2.16", false, {"locked"}},
      {"2.16", true, kAdmin21 + kAdmin23 + std::set<std::string>{"locked", "host_status"}},
      {"2.19", false, {"locked", "description"}},
      {"2.26", false, {"locked", "description", "tags"}},
      {"2.47", false, {"locked", "description", "tags"}},
      {"2.63", false, {"locked", "description", "tags", "trusted_image_certificates"}},
      {"2.71",
       false,
       {"locked", "description", "tags", "trusted_image_certificates", "server_groups"}},
      {"2.73",
       false,
       {"locked", "description", "tags", "trusted_image_certificates", "server_groups",
        "locked_reason"}},
      {"2.79", true,
       kAdmin21 + kAdmin23 +
           std::set<std::string>{"locked", "host_status", "description", "tags",
                                 "trusted_image_certificates", "server_groups", "locked_reason"}},
  };
  for (const ViewCase& c : cases) {
    Reply r = get("/servers/" + id_, c.admin ? admin_ : alice_, c.version);
    ASSERT_EQ(r.status, 200) << c.version << " " << r;
    EXPECT_EQ(r.header("x-openstack-nova-api-version"), c.version);
    std::set<std::string> want = kBase + kDetail21 + c.extra + std::set<std::string>{"progress"};
    EXPECT_EQ(keys_of(r.body["server"]), want) << c.version << (c.admin ? " admin" : "");
    // List detail: the same without server_groups.
    Reply l = get(c.admin ? "/servers/detail?all_tenants=1" : "/servers/detail",
                  c.admin ? admin_ : alice_, c.version);
    ASSERT_EQ(l.status, 200) << l;
    ASSERT_EQ(l.body["servers"].size(), 1u);
    want.erase("server_groups");
    EXPECT_EQ(keys_of(l.body["servers"][0]), want) << "detail " << c.version;
  }
}

TEST_F(ViewTest, FieldValues) {
  Reply r = get("/servers/" + id_, admin_, "2.16");
  const Json& s = r.body["server"];
  EXPECT_EQ(s["status"], "BUILD");
  EXPECT_EQ(s["tenant_id"], p1_);
  EXPECT_EQ(s["image"]["id"], kContainerImage);
  EXPECT_EQ(s["flavor"]["id"], "42");
  EXPECT_EQ(s["flavor"]["links"][0]["rel"], "bookmark");
  EXPECT_EQ(s["hostId"].get<std::string>().size(), 56u);  // sha224 hex
  EXPECT_EQ(s["host_status"], "UP");
  EXPECT_EQ(s["OS-EXT-SRV-ATTR:host"], "h1");
  EXPECT_EQ(s["OS-EXT-STS:vm_state"], "building");
  EXPECT_EQ(s["OS-EXT-STS:task_state"], "spawning");
  EXPECT_EQ(s["OS-EXT-STS:power_state"], 0);
  EXPECT_EQ(s["security_groups"][0]["name"], "default");
  EXPECT_EQ(s["config_drive"], "");
  EXPECT_EQ(s["links"][0]["href"], "http://localhost:8774/compute/v2.1/servers/" + id_);
  EXPECT_EQ(s["created"].get<std::string>().size(), 20u);  // 2026-01-01T00:00:00Z
  EXPECT_TRUE(s["created"].get<std::string>().ends_with("Z"));
  // The hostId is per project: bob's view of his own server on h1 differs.
  std::string bob_server = create(bob_, server_body("b"));
  Reply b = get("/servers/" + bob_server, bob_);
  EXPECT_NE(b.body["server"]["hostId"], s["hostId"]);
  // A down host shows DOWN.
  clock_.advance(std::chrono::seconds(60));
  EXPECT_EQ(get("/servers/" + id_, admin_, "2.16").body["server"]["host_status"], "DOWN");
}

TEST_F(ViewTest, FlavorEmbeddedFrom247) {
  Reply r = get("/servers/" + id_, alice_, "2.47");
  const Json& f = r.body["server"]["flavor"];
  EXPECT_EQ(keys_of(f), (std::set<std::string>{"vcpus", "ram", "disk", "ephemeral", "swap",
                                               "original_name", "extra_specs"}));
  EXPECT_EQ(f["original_name"], "c1.nano");
  EXPECT_EQ(f["ram"], 64);
}

TEST_F(ViewTest, ActiveHasNoTaskAndAddressesAreShown) {
  exec(
      "UPDATE compute_servers SET vm_state = 'active', task_state = NULL, power_state = 1, "
      "addresses_json = ? WHERE id = ?",
      {std::string(R"({"private":[{"addr":"10.0.0.5","version":4,"OS-EXT-IPS:type":"fixed",)"
                   R"("OS-EXT-IPS-MAC:mac_addr":"fa:16:3e:00:00:01"}]})"),
       id_});
  Reply r = get("/servers/" + id_, alice_);
  EXPECT_EQ(r.body["server"]["status"], "ACTIVE");
  EXPECT_TRUE(r.body["server"]["OS-EXT-STS:task_state"].is_null());
  EXPECT_EQ(r.body["server"]["addresses"]["private"][0]["OS-EXT-IPS:type"], "fixed");
  // The update view (basic, below 2.75) strips the OS-EXT-IPS keys.
  Reply u = put("/servers/" + id_, alice_, {{"server", {{"name", "renamed"}}}});
  ASSERT_EQ(u.status, 200) << u;
  EXPECT_EQ(keys_of(u.body["server"]["addresses"]["private"][0]),
            (std::set<std::string>{"addr", "version"}));
}

TEST_F(ViewTest, UpdateAndRebuildKeySets) {
  set_state(id_, "active");
  struct Case {
    const char* version;
    std::set<std::string> update_extra;
    std::set<std::string> rebuild_extra;
  };
  const std::vector<Case> cases = {
      {"2.1", {"progress"}, {"progress", "adminPass"}},
      {"2.9", {"progress", "locked"}, {"progress", "locked", "adminPass"}},
      {"2.26",
       {"progress", "locked", "description", "tags"},
       {"progress", "locked", "description", "tags", "adminPass"}},
      {"2.57",
       {"progress", "locked", "description", "tags"},
       {"progress", "locked", "description", "tags", "adminPass", "key_name", "user_data"}},
      {"2.73",
       {"progress", "locked", "description", "tags", "trusted_image_certificates", "server_groups",
        "locked_reason"},
       {"progress", "locked", "description", "tags", "adminPass", "key_name", "user_data",
        "trusted_image_certificates", "server_groups", "locked_reason"}},
  };
  for (const Case& c : cases) {
    Reply u = put("/servers/" + id_, alice_, {{"server", {{"name", "n"}}}}, c.version);
    ASSERT_EQ(u.status, 200) << u;
    EXPECT_EQ(keys_of(u.body["server"]), kBase + c.update_extra) << "update " << c.version;
    Reply rb = post("/servers/" + id_ + "/action", alice_,
                    {{"rebuild", {{"imageRef", kContainerImage}}}}, c.version);
    ASSERT_EQ(rb.status, 202) << rb;
    EXPECT_EQ(keys_of(rb.body["server"]), kBase + c.rebuild_extra) << "rebuild " << c.version;
    set_state(id_, "active");
  }
  // 2.75: update and rebuild return everything GET does (rebuild: user_data, not the
  // OS-EXT-SRV-ATTR one).
  Reply show = get("/servers/" + id_, alice_, "2.75");
  Reply u = put("/servers/" + id_, alice_, {{"server", {{"name", "n"}}}}, "2.75");
  EXPECT_EQ(keys_of(u.body["server"]), keys_of(show.body["server"]));
  Reply rb = post("/servers/" + id_ + "/action", alice_,
                  {{"rebuild", {{"imageRef", kContainerImage}}}}, "2.75");
  std::set<std::string> want =
      keys_of(show.body["server"]) + std::set<std::string>{"adminPass", "user_data", "key_name"};
  want.erase("progress");  // REBUILD keeps progress; ACTIVE had it too
  want.insert("progress");
  EXPECT_EQ(keys_of(rb.body["server"]), want);
  Reply rba = post("/servers/" + id_ + "/action", admin_,
                   {{"rebuild", {{"imageRef", kContainerImage}}}}, "2.75");
  EXPECT_EQ(rba.status, 409);  // still rebuilding
  set_state(id_, "active");
  rba = post("/servers/" + id_ + "/action", admin_, {{"rebuild", {{"imageRef", kContainerImage}}}},
             "2.75");
  ASSERT_EQ(rba.status, 202) << rba;
  EXPECT_FALSE(rba.body["server"].contains("OS-EXT-SRV-ATTR:user_data"));
  EXPECT_TRUE(rba.body["server"].contains("OS-EXT-SRV-ATTR:hostname"));
}

TEST_F(ViewTest, ListItemsAreIdLinksName) {
  Reply r = get("/servers", alice_, "2.79");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.body["servers"].size(), 1u);
  EXPECT_EQ(keys_of(r.body["servers"][0]), (std::set<std::string>{"id", "links", "name"}));
  EXPECT_EQ(keys_of(r.body), (std::set<std::string>{"servers"}));
}

}  // namespace
}  // namespace concord::compute::testing

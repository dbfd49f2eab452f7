// POST /v2.1/servers: rows, claims and the instance action written in one transaction; quota and
// scheduling decisions; Nova's validation answers.
#include <thread>

#include "servers_test_util.h"

namespace concord::compute::testing {
namespace {

using http::Method;

TEST_F(ServersTest, CreateWritesRowClaimAndAction) {
  add_host("h1");
  Json body = server_body("web 1_A");
  body["server"]["metadata"] = {{"role", "web"}};
  body["server"]["accessIPv6"] = "2001:DB8:0::0001";
  body["server"]["OS-DCF:diskConfig"] = "AUTO";
  body["server"]["adminPass"] = "s3cret";
  Reply r = post("/servers", alice_, body);
  ASSERT_EQ(r.status, 202) << r;
  const Json& s = r.body["server"];
  EXPECT_EQ(s["adminPass"], "s3cret");
  EXPECT_EQ(s["OS-DCF:diskConfig"], "AUTO");
  EXPECT_EQ(s["security_groups"], Json::parse(R"([{"name":"default"}])"));
  std::set<std::string> keys;
  for (auto& [k, v] : s.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"id", "links", "adminPass", "OS-DCF:diskConfig",
                                         "security_groups"}));
  EXPECT_FALSE(r.header("x-compute-request-id").empty());
  const std::string id = s["id"];

  ServerRow row = this->row(id);
  EXPECT_EQ(row.project_id, p1_);
  EXPECT_EQ(row.user_id, alice_id_);
  EXPECT_EQ(row.vm_state, "building");
  EXPECT_EQ(row.task_state, "spawning");
  EXPECT_EQ(row.host, "h1");
  EXPECT_EQ(row.driver, "container");
  EXPECT_EQ(row.network, "auto");
  EXPECT_EQ(row.hostname, "web-1-a");
  EXPECT_EQ(row.access_ipv6, "2001:db8::1");  // canonicalised
  EXPECT_EQ(row.availability_zone, "nova");
  EXPECT_EQ(row.spec_generation, 1);
  EXPECT_EQ(row.desired_power, "running");
  EXPECT_EQ(row.op_deadline_ms, now_ms() + 600000);
  EXPECT_TRUE(row.reservation_id.starts_with("r-"));
  EXPECT_EQ(row.vcpus, 1);
  EXPECT_EQ(row.ram_mb, 64);

  store::Rows claims = query(
      "SELECT purpose, host, vcpus, ram_mb, disk_gb FROM "
      "compute_allocations WHERE server_id = ?",
      {id});
  ASSERT_EQ(claims.size(), 1u);
  EXPECT_EQ(claims[0].text(0), "instance");
  EXPECT_EQ(claims[0].text(1), "h1");
  EXPECT_EQ(claims[0].integer(2), 1);
  EXPECT_EQ(claims[0].integer(3), 64);

  store::Rows actions = query(
      "SELECT action, request_id, finish_time FROM "
      "compute_instance_actions WHERE server_id = ?",
      {id});
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].text(0), "create");
  EXPECT_EQ(actions[0].text(1), r.header("x-compute-request-id"));
  EXPECT_TRUE(actions[0].is_null(2));
  store::Rows events = query(
      "SELECT event, host FROM compute_instance_action_events WHERE "
      "server_id = ?",
      {id});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text(0), "compute__do_build_and_run_instance");
  EXPECT_EQ(events[0].text(1), "h1");
  store::Rows md =
      query("SELECT key, value FROM compute_server_metadata WHERE server_id = ?", {id});
  ASSERT_EQ(md.size(), 1u);
  EXPECT_EQ(md[0].text(1), "web");
}

TEST_F(ServersTest, CreateActionCarriesTheRequestId) {
  add_host("h1");
  Reply r = post("/servers", alice_, server_body("a"));
  ASSERT_EQ(r.status, 202) << r;
  const std::string id = r.body["server"]["id"];
  Reply list = get("/servers/" + id + "/os-instance-actions", alice_);
  ASSERT_EQ(list.status, 200) << list;
  ASSERT_EQ(list.body["instanceActions"].size(), 1u);
  EXPECT_EQ(list.body["instanceActions"][0]["request_id"], r.header("x-compute-request-id"));
  EXPECT_EQ(list.body["instanceActions"][0]["action"], "create");
}

TEST_F(ServersTest, VmImageGoesToVmDriverAndNeedsTheTrait) {
  add_host("only-containers", "nova", 4, 8192, 100, "container", "{}");
  std::string id = create(alice_, server_body("vm", kVmImage, "1"));
  ServerRow r = row(id);
  EXPECT_EQ(r.driver, "vm");
  EXPECT_EQ(r.vm_state, "error");  // no host runs VMs
  add_host("qemu-host", "nova", 4, 8192, 100, "vm", R"({"hypervisor_type":"qemu"})");
  std::string id2 = create(alice_, server_body("vm2", kVmImage, "1"));
  EXPECT_EQ(row(id2).host, "qemu-host");
}

TEST_F(ServersTest, NoValidHostIsErrorWithFaultAnd202) {
  Reply r = post("/servers", alice_, server_body("nohost"));
  ASSERT_EQ(r.status, 202) << r;
  const std::string id = r.body["server"]["id"];
  ServerRow s = row(id);
  EXPECT_EQ(s.vm_state, "error");
  EXPECT_FALSE(s.task_state.has_value());
  EXPECT_FALSE(s.host.has_value());
  EXPECT_TRUE(query("SELECT 1 FROM compute_allocations WHERE server_id = ?", {id}).empty());
  Reply show = get("/servers/" + id, alice_);
  ASSERT_EQ(show.status, 200) << show;
  EXPECT_EQ(show.body["server"]["status"], "ERROR");
  EXPECT_EQ(show.body["server"]["fault"]["code"], 500);
  EXPECT_EQ(show.body["server"]["fault"]["message"],
            "No valid host was found. There are not enough hosts available.");
  EXPECT_FALSE(show.body["server"]["fault"].contains("details"));  // admins only
  Reply as_admin = get("/servers/" + id, admin_);
  EXPECT_TRUE(as_admin.body["server"]["fault"].contains("details"));
  store::Rows a = query(
      "SELECT finish_time, message FROM compute_instance_actions WHERE "
      "server_id = ?",
      {id});
  ASSERT_EQ(a.size(), 1u);
  EXPECT_FALSE(a[0].is_null(0));
  EXPECT_EQ(a[0].text(1), "Error");
}

TEST_F(ServersTest, MultipleCreateNamesAndReservation) {
  add_host("h1");
  Json body = server_body("multi");
  body["server"]["min_count"] = 2;
  body["server"]["max_count"] = "3";
  body["server"]["return_reservation_id"] = true;
  Reply r = post("/servers", alice_, body);
  ASSERT_EQ(r.status, 202) << r;
  ASSERT_TRUE(r.body.contains("reservation_id")) << r;
  EXPECT_EQ(r.body.size(), 1u);
  store::Rows rows = query(
      "SELECT name, hostname, launch_index FROM compute_servers WHERE "
      "reservation_id = ? ORDER BY launch_index",
      {r.body["reservation_id"].get<std::string>()});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].text(0), "multi-1");
  EXPECT_EQ(rows[2].text(0), "multi-3");
  EXPECT_EQ(rows[1].text(1), "multi-2");
  EXPECT_EQ(rows[2].integer(2), 2);
}

TEST_F(ServersTest, QuotaExceededIs403WithNovasMessage) {
  add_host("h1", "nova", 64, 65536, 1000);
  exec("INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES (?, 'instances', 2)",
       {p1_});
  create(alice_, server_body("a"));
  create(alice_, server_body("b"));
  Reply r = post("/servers", alice_, server_body("c"));
  EXPECT_EQ(r.status, 403) << r;
  EXPECT_EQ(r.message(),
            "Quota exceeded for instances: Requested 1, but already used 2 of 2 "
            "instances");
  // Another project is not affected.
  EXPECT_EQ(post("/servers", bob_, server_body("b1")).status, 202);
  // max_count above the room left creates what fits (min_count 1).
  exec("UPDATE compute_quotas SET hard_limit = 4 WHERE project_id = ?", {p1_});
  Json body = server_body("m");
  body["server"]["max_count"] = 5;
  EXPECT_EQ(post("/servers", alice_, body).status, 202);
  EXPECT_EQ(query("SELECT id FROM compute_servers WHERE project_id = ?", {p1_}).size(), 4u);
}

TEST_F(ServersTest, ConcurrentCreatesNeverExceedTheQuota) {
  add_host("h1", "nova", 64, 65536, 1000);
  constexpr int kLimit = 5;
  constexpr int kThreads = 8;
  constexpr int kEach = 3;
  exec("INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES (?, 'instances', ?)",
       {p1_, int64_t{kLimit}});
  std::atomic<int> accepted{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        Reply r = post("/servers", alice_, server_body("c" + std::to_string(t * 10 + i)));
        if (r.status == 202)
          ++accepted;
        else if (r.status == 403)
          ++refused;
        else
          ++other;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(accepted.load(), kLimit);
  EXPECT_EQ(refused.load(), kThreads * kEach - kLimit);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(query("SELECT id FROM compute_servers WHERE project_id = ?", {p1_}).size(),
            static_cast<size_t>(kLimit));
}

TEST_F(ServersTest, ConcurrentCreatesNeverOvercommitAHost) {
  // c1.nano needs 64 MiB; 4 GiB * 1.5 ram ratio / 64 MiB... use disk: m1.small needs 20 GB and
  // the host has 100 GB at ratio 1.0, so exactly 5 fit.
  add_host("h1", "nova", 64, 1 << 20, 100);
  exec("INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES (?, 'instances', 100)",
       {p1_});
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2; ++i)
        post("/servers", alice_,
             server_body("d" + std::to_string(t * 10 + i), kContainerImage, "2"));
    });
  }
  for (auto& th : threads) th.join();
  store::Rows placed = query("SELECT COUNT(*) FROM compute_servers WHERE host = 'h1'");
  EXPECT_EQ(placed[0].integer(0), 5);
  store::Rows disk =
      query("SELECT CAST(SUM(disk_gb) AS BIGINT) FROM compute_allocations WHERE host = 'h1'");
  EXPECT_EQ(disk[0].integer(0), 100);
  store::Rows errors = query("SELECT COUNT(*) FROM compute_servers WHERE vm_state = 'error'");
  EXPECT_EQ(errors[0].integer(0), 7);
}

TEST_F(ServersTest, AntiAffinityGroupSpreadsOverThreeHosts) {
  add_host("h1");
  add_host("h2");
  add_host("h3");
  const std::string group = "5a5a5a5a-0000-4000-8000-000000000001";
  exec(
      "INSERT INTO compute_server_groups (id, project_id, user_id, name, policy, created_at) "
      "VALUES (?, ?, ?, 'g', 'anti-affinity', 'x')",
      {group, p1_, alice_id_});
  std::set<std::string> hosts;
  for (int i = 0; i < 3; ++i) {
    Json body = server_body("g" + std::to_string(i));
    body["os:scheduler_hints"] = {{"group", group}};
    std::string id = create(alice_, body);
    ServerRow r = row(id);
    ASSERT_TRUE(r.host.has_value());
    hosts.insert(*r.host);
    EXPECT_EQ(r.server_group_id, group);
  }
  EXPECT_EQ(hosts.size(), 3u);
  EXPECT_EQ(query("SELECT server_id FROM compute_server_group_members WHERE group_id = ?", {group})
                .size(),
            3u);
  // A fourth member has nowhere to go.
  Json body = server_body("g4");
  body["os:scheduler_hints"] = {{"group", group}};
  std::string id = create(alice_, body);
  EXPECT_EQ(row(id).vm_state, "error");
  // Another project cannot use the group.
  Json other = server_body("x");
  other["os:scheduler_hints"] = {{"group", group}};
  EXPECT_EQ(post("/servers", bob_, other).status, 400);
}

TEST_F(ServersTest, AvailabilityZoneAndForcedHost) {
  add_host("h1", "az1");
  add_host("h2", "az2");
  Json body = server_body("z");
  body["server"]["availability_zone"] = "az2";
  EXPECT_EQ(row(create(alice_, body)).host, "h2");
  body["server"]["availability_zone"] = "nowhere";
  Reply r = post("/servers", alice_, body);
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(r.message(), "The requested availability zone is not available");
  body["server"]["availability_zone"] = "az1:h1";
  EXPECT_EQ(post("/servers", alice_, body).status, 403);
  EXPECT_EQ(row(create(admin_, body)).host, "h1");
  body["server"]["availability_zone"] = "az1:nohost";
  EXPECT_EQ(post("/servers", admin_, body).status, 400);
}

TEST_F(ServersTest, KeyNameAndUserData) {
  add_host("h1");
  exec(
      "INSERT INTO compute_keypairs (user_id, name, id, type, public_key, fingerprint, "
      "created_at) VALUES (?, 'k1', 1, 'ssh', 'ssh-ed25519 AAAA', 'fp', 'x')",
      {alice_id_});
  Json body = server_body("k");
  body["server"]["key_name"] = "k1";
  body["server"]["user_data"] = "aGVsbG8=";
  ServerRow r = row(create(alice_, body));
  EXPECT_EQ(r.key_name, "k1");
  EXPECT_EQ(r.key_data, "ssh-ed25519 AAAA");
  EXPECT_EQ(r.user_data, "aGVsbG8=");
  body["server"]["key_name"] = "nokey";
  Reply bad = post("/servers", alice_, body);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.message(), "Invalid key_name provided.");
  // Bob cannot use alice's key.
  body["server"]["key_name"] = "k1";
  EXPECT_EQ(post("/servers", bob_, body).status, 400);
}

TEST_F(ServersTest, MetadataQuotaIs403) {
  add_host("h1");
  exec(
      "INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES (?, "
      "'metadata_items', 2)",
      {p1_});
  Json body = server_body("m");
  body["server"]["metadata"] = {{"a", "1"}, {"b", "2"}, {"c", "3"}};
  Reply r = post("/servers", alice_, body);
  EXPECT_EQ(r.status, 403) << r;
}

// Bad input: always a 4xx with a Nova fault body, never a 5xx.
struct BadCreate {
  const char* name;
  const char* server_json;  // merged over a valid server body; null values remove keys
  int status;
  const char* version = "";
};

class CreateBadInput : public ServersTest, public ::testing::WithParamInterface<BadCreate> {};

TEST_P(CreateBadInput, Rejected) {
  add_host("h1");
  const BadCreate& c = GetParam();
  Json body = server_body("ok");
  std::string text = c.server_json;
  if (size_t p = text.find("__LONG__"); p != std::string::npos)
    text.replace(p, 8, std::string(256, 'a'));
  Json patch = Json::parse(text);
  for (auto& [k, v] : patch.items()) {
    if (v.is_null())
      body["server"].erase(k);
    else
      body["server"][k] = v;
  }
  Reply r = post("/servers", alice_, body, c.version);
  EXPECT_EQ(r.status, c.status) << c.name << ": " << r;
  EXPECT_FALSE(r.message().empty()) << r;
}

const BadCreate kBadCreates[] = {
    {"no name", R"({"name": null})", 400},
    {"empty name", R"({"name": ""})", 400},
    {"name not string", R"({"name": 5})", 400},
    {"name leading space", R"({"name": " x"})", 400},
    {"name too long", R"({"name": "__LONG__"})", 400},
    {"no image", R"({"imageRef": null})", 400},
    {"image not uuid", R"({"imageRef": "not-a-uuid"})", 400},
    {"image unknown", R"({"imageRef": "99999999-9999-4999-8999-999999999999"})", 400},
    {"image queued", R"({"imageRef": "33333333-3333-4333-8333-333333333333"})", 400},
    {"image too big for flavor",
     R"({"imageRef": "44444444-4444-4444-8444-444444444444", "flavorRef": "1"})", 400},
    {"image as number", R"({"imageRef": 7})", 400},
    {"no flavor", R"({"flavorRef": null})", 400},
    {"flavor unknown", R"({"flavorRef": "9999"})", 400},
    {"flavor as object", R"({"flavorRef": {}})", 400},
    {"unknown key", R"({"colour": "blue"})", 400},
    {"description at 2.1", R"({"description": "d"})", 400},
    {"tags at 2.51", R"({"tags": ["a"]})", 400, "2.51"},
    {"tag with slash", R"({"tags": ["a/b"]})", 400, "2.52"},
    {"min_count zero", R"({"min_count": 0})", 400},
    {"min_count text", R"({"min_count": "two"})", 400},
    {"min above max", R"({"min_count": 3, "max_count": 2})", 400},
    {"bad ipv4", R"({"accessIPv4": "1.2.3"})", 400},
    {"ipv6 in ipv4", R"({"accessIPv4": "::1"})", 400},
    {"bad ipv6", R"({"accessIPv6": "zz::1"})", 400},
    {"bad disk config", R"({"OS-DCF:diskConfig": "SOMETIMES"})", 400},
    {"metadata not object", R"({"metadata": ["a"]})", 400},
    {"metadata number value", R"({"metadata": {"a": 1}})", 400},
    {"metadata empty key", R"({"metadata": {"": "x"}})", 400},
    {"user data not base64", R"({"user_data": "!!!not base64"})", 400},
    {"user data bad padding", R"({"user_data": "aGVsbG8"})", 400},
    {"networks string at 2.1", R"({"networks": "none"})", 400},
    {"networks bad string", R"({"networks": "some"})", 400, "2.37"},
    {"network uuid unknown", R"({"networks": [{"uuid": "55555555-5555-4555-8555-555555555555"}]})",
     400},
    {"network uuid malformed", R"({"networks": [{"uuid": "x"}]})", 400},
    {"port", R"({"networks": [{"port": "55555555-5555-4555-8555-555555555555"}]})", 400},
    {"security group", R"({"security_groups": [{"name": "web"}]})", 400},
    {"volume bdm",
     R"({"block_device_mapping_v2": [{"source_type": "volume", "uuid": "55555555-5555-4555-8555-555555555555", "boot_index": 0}]})",
     400},
    {"legacy bdm", R"({"block_device_mapping": []})", 400},
    {"personality", R"({"personality": [{"path": "/a", "contents": "YQ=="}]})", 400},
    {"personality at 2.57", R"({"personality": []})", 400, "2.57"},
    {"config drive junk", R"({"config_drive": "maybe"})", 400},
    {"key name not string", R"({"key_name": 3})", 400},
    {"az not string", R"({"availability_zone": 3})", 400},
    {"forced host non admin", R"({"availability_zone": "nova:h1"})", 403},
    {"trusted certs", R"({"trusted_image_certificates": ["a"]})", 400, "2.63"},
    {"bad version", R"({})", 400, "2.x"},
    {"version too high", R"({})", 406, "2.80"},
};

INSTANTIATE_TEST_SUITE_P(Table, CreateBadInput, ::testing::ValuesIn(kBadCreates),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST_F(ServersTest, CreateBodyShapesAreRejected) {
  add_host("h1");
  for (const char* body : {"[]", "{}", R"({"server": []})", R"({"server": {}, "extra": 1})",
                           "not json", R"({"server": {"name": "a", "imageRef": )"}) {
    Reply r = raw_call(Method::kPost, "/compute/v2.1/servers", body, {{"x-auth-token", alice_}});
    EXPECT_EQ(r.status, 400) << body << " -> " << r;
  }
  Reply r = raw_call(Method::kPost, "/compute/v2.1/servers", dump_json(server_body("x")),
                     {{"x-auth-token", alice_}, {"content-type", "text/plain"}});
  EXPECT_EQ(r.status, 415) << r;
}

TEST_F(ServersTest, OversizeUserDataIs400) {
  add_host("h1");
  Json body = server_body("u");
  body["server"]["user_data"] = std::string(65536, 'A');
  Reply r = post("/servers", alice_, body);
  EXPECT_EQ(r.status, 400) << r.status;
}

TEST_F(ServersTest, ReaderCannotCreate) {
  add_host("h1");
  EXPECT_EQ(post("/servers", carol_, server_body("r")).status, 403);
  EXPECT_EQ(post("/servers", "", server_body("r")).status, 401);
}

TEST_F(ServersTest, NetworksAtOrAbove237) {
  add_host("h1");
  Json body = server_body("n");
  body["server"]["networks"] = "none";
  EXPECT_EQ(row(create(alice_, body, "2.37")).network, "none");
  body["server"]["networks"] = "auto";
  EXPECT_EQ(row(create(alice_, body, "2.37")).network, "auto");
  body["server"].erase("networks");
  EXPECT_EQ(row(create(alice_, body, "2.37")).network, "auto");  // tolerated (Tempest sends none)
}

TEST_F(ServersTest, DescriptionAndTagsAtTheirVersions) {
  add_host("h1");
  Json body = server_body("d");
  body["server"]["description"] = "my server";
  body["server"]["tags"] = {"a", "b", "a"};
  std::string id = create(alice_, body, "2.52");
  EXPECT_EQ(row(id).description, "my server");
  EXPECT_EQ(query("SELECT tag FROM compute_server_tags WHERE server_id = ?", {id}).size(), 2u);
}

}  // namespace
}  // namespace concord::compute::testing

namespace concord::compute::testing {
namespace {

// Tempest's test_create_server sends these and compares with netaddr's canonical form.
TEST_F(ServersTest, AccessIpsAreCanonicalisedAsNetaddrDoes) {
  add_host("h1");
  Json body = server_body("ips");
  body["server"]["accessIPv4"] = "1.1.1.1";
  body["server"]["accessIPv6"] = "0000:0000:0000:0000:0000:babe:220.12.22.2";
  std::string id = create(alice_, body);
  Reply r = get("/servers/" + id, alice_);
  EXPECT_EQ(r.body["server"]["accessIPv4"], "1.1.1.1");
  EXPECT_EQ(r.body["server"]["accessIPv6"], "::babe:dc0c:1602");
}

}  // namespace
}  // namespace concord::compute::testing

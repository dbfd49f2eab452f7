// GET /v2.1/servers and /servers/detail: scoping, filters, sorting and keyset paging.
#include "servers_test_util.h"

namespace concord::compute::testing {
namespace {

std::vector<std::string> names(const Reply& r) {
  std::vector<std::string> out;
  for (const Json& s : r.body["servers"]) out.push_back(s["name"].get<std::string>());
  return out;
}

class ListTest : public ServersTest {
 protected:
  void SetUp() override {
    ServersTest::SetUp();
    add_host("h1", "nova", 64, 65536, 1000);
    add_host("h2", "az2", 64, 65536, 1000);
    for (const char* n : {"alpha", "beta", "gamma", "delta"}) {
      ids_[n] = create(alice_, server_body(n));
      clock_.advance(std::chrono::seconds(1));
    }
    bob_server_ = create(bob_, server_body("bobs"));
  }
  std::map<std::string, std::string> ids_;
  std::string bob_server_;
};

TEST_F(ListTest, OwnProjectNewestFirst) {
  Reply r = get("/servers", alice_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(names(r), (std::vector<std::string>{"delta", "gamma", "beta", "alpha"}));
  EXPECT_FALSE(r.body.contains("servers_links"));
  EXPECT_EQ(names(get("/servers/detail", bob_)), (std::vector<std::string>{"bobs"}));
}

TEST_F(ListTest, AllTenantsIsAdminOnly) {
  EXPECT_EQ(get("/servers?all_tenants=1", alice_).status, 403);
  EXPECT_EQ(get("/servers/detail?all_tenants", alice_).status, 403);
  EXPECT_EQ(names(get("/servers", admin_)).size(), 0u);  // admin's own project has none
  EXPECT_EQ(names(get("/servers?all_tenants=1", admin_)).size(), 5u);
  EXPECT_EQ(names(get("/servers?all_tenants=true&project_id=" + p2_, admin_)),
            (std::vector<std::string>{"bobs"}));
  EXPECT_EQ(names(get("/servers?all_tenants=true&tenant_id=" + p2_, admin_)),
            (std::vector<std::string>{"bobs"}));
  EXPECT_EQ(get("/servers?all_tenants=maybe", admin_).status, 400);
}

TEST_F(ListTest, NameIsARegex) {
  EXPECT_EQ(names(get("/servers?name=a$", alice_)),
            (std::vector<std::string>{"delta", "gamma", "beta", "alpha"}));
  EXPECT_EQ(names(get("/servers?name=^.e", alice_)), (std::vector<std::string>{"delta", "beta"}));
  EXPECT_EQ(names(get("/servers?name=mm", alice_)), (std::vector<std::string>{"gamma"}));
  EXPECT_EQ(names(get("/servers?name=(al|ga)", alice_)),
            (std::vector<std::string>{"gamma", "alpha"}));
  Reply bad = get("/servers?name=(unclosed", alice_);
  EXPECT_EQ(bad.status, 400) << bad;
  // A pathological pattern answers quickly (linear-time matcher): nothing to assert on time,
  // only that it is accepted and matches nothing.
  EXPECT_EQ(names(get("/servers?name=(a%2B)%2Bb", alice_)).size(), 0u);
}

TEST_F(ListTest, StatusFilter) {
  set_state(ids_["alpha"], "active");
  set_state(ids_["beta"], "active", "rebooting");
  set_state(ids_["gamma"], "stopped", std::nullopt, 4);
  EXPECT_EQ(names(get("/servers?status=ACTIVE", alice_)),
            (std::vector<std::string>{"beta", "alpha"}));  // Nova: REBOOT counts as ACTIVE
  EXPECT_EQ(names(get("/servers?status=REBOOT", alice_)), (std::vector<std::string>{"beta"}));
  EXPECT_EQ(names(get("/servers?status=SHUTOFF", alice_)), (std::vector<std::string>{"gamma"}));
  EXPECT_EQ(names(get("/servers?status=BUILD&status=SHUTOFF", alice_)),
            (std::vector<std::string>{"delta", "gamma"}));
  EXPECT_EQ(names(get("/servers?status=NOPE", alice_)).size(), 0u);
  EXPECT_EQ(get("/servers?status=NOPE", alice_, "2.38").status, 400);
}

TEST_F(ListTest, ImageFlavorHostFilters) {
  std::string vm = create(alice_, server_body("vm1", kVmImage, "1"));
  EXPECT_EQ(names(get(std::string("/servers?image=") + kVmImage, alice_)),
            (std::vector<std::string>{"vm1"}));
  EXPECT_EQ(names(get("/servers?flavor=1", alice_)), (std::vector<std::string>{"vm1"}));
  // host is admin-only; a member's host filter is ignored (Nova drops it).
  EXPECT_EQ(names(get("/servers?host=nohost", alice_)).size(), 5u);
  EXPECT_EQ(names(get("/servers?all_tenants=1&host=nohost", admin_)).size(), 0u);
  EXPECT_EQ(names(get("/servers?all_tenants=1&availability_zone=az2", admin_)).size(),
            query("SELECT id FROM compute_servers WHERE availability_zone = 'az2'").size());
}

TEST_F(ListTest, ChangesSinceIncludesDeleted) {
  const std::string t = "2027-01-15T08:00:03Z";  // FakeClock starts at 1.8e9 s: 2027-01-15T08:00
  std::vector<std::string> since = names(get("/servers?changes-since=" + t, alice_));
  EXPECT_EQ(since, (std::vector<std::string>{"delta"}));
  ASSERT_EQ(del("/servers/" + ids_["alpha"], alice_).status, 204);  // deleting (host up)
  EXPECT_EQ(names(get("/servers", alice_)).size(), 3u);
  EXPECT_EQ(names(get("/servers?changes-since=2000-01-01T00:00:00Z", alice_)).size(), 4u);
  EXPECT_EQ(get("/servers?changes-since=yesterday", alice_).status, 400);
  // alpha's delete moved its updated_at past t.
  EXPECT_EQ(names(get("/servers?changes-before=" + t, alice_, "2.66")),
            (std::vector<std::string>{"delta", "gamma", "beta"}));
  EXPECT_EQ(get("/servers?changes-since=2030-01-01T00:00:00Z&changes-before=2020-01-01T00:00:00Z",
                alice_, "2.66")
                .status,
            400);
}

TEST_F(ListTest, TagFilters) {
  for (auto [name, tags] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"alpha", {"a", "b"}}, {"beta", {"a"}}, {"gamma", {"c"}}}) {
    for (const std::string& t : tags)
      exec("INSERT INTO compute_server_tags (server_id, tag) VALUES (?, ?)", {ids_[name], t});
  }
  const std::string v = "2.26";
  EXPECT_EQ(names(get("/servers?tags=a,b", alice_, v)), (std::vector<std::string>{"alpha"}));
  EXPECT_EQ(names(get("/servers?tags-any=b,c", alice_, v)),
            (std::vector<std::string>{"gamma", "alpha"}));
  EXPECT_EQ(names(get("/servers?not-tags=a,b", alice_, v)),
            (std::vector<std::string>{"delta", "gamma", "beta"}));
  EXPECT_EQ(names(get("/servers?not-tags-any=a,c", alice_, v)),
            (std::vector<std::string>{"delta"}));
  // Below 2.26 the tag filters do not exist.
  EXPECT_EQ(names(get("/servers?tags=a,b", alice_)).size(), 4u);
}

TEST_F(ListTest, LockedFilterAt273) {
  exec("UPDATE compute_servers SET locked = 1 WHERE id = ?", {ids_["beta"]});
  EXPECT_EQ(names(get("/servers?locked=true", alice_, "2.73")), (std::vector<std::string>{"beta"}));
  EXPECT_EQ(names(get("/servers?locked=0", alice_, "2.73")).size(), 3u);
  EXPECT_EQ(get("/servers?locked=sometimes", alice_, "2.73").status, 400);
}

TEST_F(ListTest, SortKeysAndDirections) {
  EXPECT_EQ(names(get("/servers?sort_key=display_name&sort_dir=asc", alice_)),
            (std::vector<std::string>{"alpha", "beta", "delta", "gamma"}));
  EXPECT_EQ(names(get("/servers?sort_key=display_name", alice_)),
            (std::vector<std::string>{"gamma", "delta", "beta", "alpha"}));
  EXPECT_EQ(names(get("/servers?sort_key=created_at&sort_dir=asc", alice_)),
            (std::vector<std::string>{"alpha", "beta", "gamma", "delta"}));
  EXPECT_EQ(names(get("/servers?sort_key=vm_state&sort_dir=asc&sort_key=display_name&sort_dir=asc",
                      alice_)),
            (std::vector<std::string>{"alpha", "beta", "delta", "gamma"}));
  EXPECT_EQ(get("/servers?sort_key=colour", alice_).status, 400);
  EXPECT_EQ(get("/servers?sort_key=display_name&sort_dir=up", alice_).status, 400);
  EXPECT_EQ(get("/servers?sort_key=host", alice_).status, 403);
  EXPECT_EQ(names(get("/servers?sort_key=vcpus", alice_)).size(), 4u);  // ignored key
}

TEST_F(ListTest, PagingWithMarkerAndNextLinks) {
  Reply p1 = get("/servers?limit=2&sort_key=display_name&sort_dir=asc", alice_);
  ASSERT_EQ(p1.status, 200) << p1;
  EXPECT_EQ(names(p1), (std::vector<std::string>{"alpha", "beta"}));
  ASSERT_TRUE(p1.body.contains("servers_links"));
  std::string next = p1.body["servers_links"][0]["href"];
  EXPECT_NE(next.find("marker=" + ids_["beta"]), std::string::npos);
  EXPECT_NE(next.find("limit=2"), std::string::npos);
  std::string path = next.substr(next.find("/servers"));
  Reply p2 = get(path, alice_);
  EXPECT_EQ(names(p2), (std::vector<std::string>{"delta", "gamma"}));
  Reply p3 = get(
      p2.body["servers_links"][0]["href"].get<std::string>().substr(next.find("/servers")), alice_);
  EXPECT_EQ(names(p3).size(), 0u);
  EXPECT_FALSE(p3.body.contains("servers_links"));
  // Default order, detail view.
  Reply d1 = get("/servers/detail?limit=3", alice_);
  EXPECT_EQ(names(d1), (std::vector<std::string>{"delta", "gamma", "beta"}));
  Reply d2 = get("/servers/detail?limit=3&marker=" + ids_["beta"], alice_);
  EXPECT_EQ(names(d2), (std::vector<std::string>{"alpha"}));
}

// The detail list renders from a cache keyed by (server, revision, variant): every change a
// client can make shows up in the next list, and a list item equals the server's own view.
TEST_F(ListTest, DetailListFollowsEveryChangeAndMatchesShow) {
  const std::string v = "2.79";
  const std::string id = ids_["beta"];
  auto item = [&](const std::string& token) -> Json {
    Reply r = get("/servers/detail", token, v);
    EXPECT_EQ(r.status, 200) << r;
    for (const Json& s : r.body["servers"]) {
      if (s["id"] == id) return s;
    }
    ADD_FAILURE() << "server not listed: " << r;
    return Json::object();
  };
  set_state(id, "active");
  ASSERT_EQ(item(alice_)["name"], "beta");  // now cached

  ASSERT_EQ(put("/servers/" + id, alice_, {{"server", {{"name", "beta2"}}}}, v).status, 200);
  EXPECT_EQ(item(alice_)["name"], "beta2");
  ASSERT_EQ(post("/servers/" + id + "/metadata", alice_, {{"metadata", {{"k", "v1"}}}}, v).status,
            200);
  EXPECT_EQ(item(alice_)["metadata"], (Json{{"k", "v1"}}));
  ASSERT_EQ(nova(http::Method::kPut, "/servers/" + id + "/tags/t1", alice_, nullptr, v).status,
            201);
  EXPECT_EQ(item(alice_)["tags"], Json::array({"t1"}));
  set_state(id, "stopped", std::nullopt, 4);
  Json stopped = item(alice_);
  EXPECT_EQ(stopped["status"], "SHUTOFF");
  EXPECT_EQ(stopped["OS-EXT-STS:power_state"], 4);

  // The list item is the server's own view (show adds only server_groups at 2.71+).
  Reply show = get("/servers/" + id, alice_, v);
  ASSERT_EQ(show.status, 200) << show;
  Json shown = show.body["server"];
  shown.erase("server_groups");
  EXPECT_EQ(stopped, shown);
}

TEST_F(ListTest, DetailViewsDoNotMixVersionsOrCallers) {
  const std::string id = ids_["alpha"];
  auto find = [&](const Reply& r) -> Json {
    for (const Json& s : r.body["servers"]) {
      if (s["id"] == id) return s;
    }
    return Json::object();
  };
  for (int round = 0; round < 2; ++round) {  // the second round is served from the cache
    Json old_view = find(get("/servers/detail", alice_, "2.1"));
    EXPECT_FALSE(old_view.contains("locked")) << old_view;
    EXPECT_FALSE(old_view.contains("OS-EXT-SRV-ATTR:host")) << old_view;
    Json new_view = find(get("/servers/detail", alice_, "2.79"));
    EXPECT_TRUE(new_view.contains("locked")) << new_view;
    EXPECT_TRUE(new_view.contains("tags")) << new_view;
    EXPECT_FALSE(new_view.contains("OS-EXT-SRV-ATTR:host")) << new_view;
    Json admin_view = find(get("/servers/detail?all_tenants=1", admin_, "2.79"));
    EXPECT_TRUE(admin_view.contains("OS-EXT-SRV-ATTR:host")) << admin_view;
    EXPECT_EQ(admin_view["host_status"], "UP") << admin_view;
  }
}

TEST_F(ListTest, HostStatusInCachedViewsIsLive) {
  const std::string id = ids_["alpha"];
  const std::string host = row(id).host.value_or("");
  ASSERT_FALSE(host.empty());
  auto status = [&] {
    Reply r = get("/servers/detail?all_tenants=1", admin_, "2.16");
    for (const Json& s : r.body["servers"]) {
      if (s["id"] == id) return s.value("host_status", std::string("<none>"));
    }
    return std::string("<not listed>");
  };
  EXPECT_EQ(status(), "UP");
  // The host goes quiet: the server row does not change, its host_status does.
  exec("UPDATE compute_hosts SET last_heartbeat_ms = 0 WHERE name = ?", {host});
  EXPECT_EQ(status(), "DOWN");
  exec("UPDATE compute_hosts SET last_heartbeat_ms = ?, disabled = 1 WHERE name = ?",
       {now_ms(), host});
  EXPECT_EQ(status(), "MAINTENANCE");
}

TEST_F(ListTest, MarkerAndLimitErrors) {
  Reply r = get("/servers?marker=nope", alice_);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.message(), "marker [nope] not found");
  // Another project's server is not a marker for alice.
  EXPECT_EQ(get("/servers?marker=" + bob_server_, alice_).status, 400);
  EXPECT_EQ(get("/servers?limit=-1", alice_).status, 400);
  EXPECT_EQ(get("/servers?limit=abc", alice_).status, 400);
  // Nova takes min(max_limit, limit): 0 lists nothing (Tempest checks it), without a next link.
  Reply zero = get("/servers/detail?limit=0", alice_);
  EXPECT_EQ(names(zero).size(), 0u) << zero;
  EXPECT_FALSE(zero.body.contains("servers_links")) << zero;
  EXPECT_EQ(names(get("/servers?limit=0&name=a", alice_)).size(), 0u);
}

TEST_F(ListTest, DeletedFilterForAdmins) {
  exec("UPDATE compute_servers SET deleted = 1, vm_state = 'deleted' WHERE id = ?",
       {ids_["alpha"]});
  EXPECT_EQ(names(get("/servers?all_tenants=1&deleted=true", admin_)),
            (std::vector<std::string>{"alpha"}));
  EXPECT_EQ(names(get("/servers?deleted=true", alice_)).size(), 3u);  // ignored for members
}

TEST_F(ListTest, IpFilter) {
  exec("UPDATE compute_servers SET addresses_json = ? WHERE id = ?",
       {std::string(R"({"private":[{"addr":"10.1.2.3","version":4}]})"), ids_["gamma"]});
  EXPECT_EQ(names(get("/servers?ip=10%5C.1%5C.", alice_)), (std::vector<std::string>{"gamma"}));
  EXPECT_EQ(names(get("/servers?ip=192", alice_)).size(), 0u);
}

}  // namespace
}  // namespace concord::compute::testing

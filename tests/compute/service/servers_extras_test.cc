// Server metadata, tags, instance actions, and tenant isolation across every server route.
#include "compute/service/api_servers_internal.h"
#include "servers_test_util.h"

namespace concord::compute::testing {
namespace {

using http::Method;

TEST_F(ServersTest, MetadataRoutes) {
  add_host("h1");
  std::string id = create_active(alice_, "m");
  const std::string base = "/servers/" + id + "/metadata";
  EXPECT_EQ(get(base, alice_).body, Json::parse(R"({"metadata":{}})"));
  Reply r = post(base, alice_, {{"metadata", {{"a", "1"}, {"b", "2"}}}});
  ASSERT_EQ(r.status, 200) << r;
  r = post(base, alice_, {{"metadata", {{"b", "3"}, {"c", "4"}}}});  // merge
  EXPECT_EQ(r.body["metadata"], Json::parse(R"({"a":"1","b":"3","c":"4"})"));
  r = put(base, alice_, {{"metadata", {{"z", "9"}}}});  // replace
  EXPECT_EQ(r.body["metadata"], Json::parse(R"({"z":"9"})"));
  EXPECT_EQ(get(base, alice_).body["metadata"], Json::parse(R"({"z":"9"})"));
  r = put(base + "/k", alice_, {{"meta", {{"k", "v"}}}});
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, Json::parse(R"({"meta":{"k":"v"}})"));
  EXPECT_EQ(get(base + "/k", carol_).body, Json::parse(R"({"meta":{"k":"v"}})"));
  EXPECT_EQ(get(base + "/nokey", alice_).status, 404);
  EXPECT_EQ(del(base + "/k", alice_).status, 204);
  EXPECT_EQ(del(base + "/k", alice_).status, 404);
  // Nova's validation.
  EXPECT_EQ(put(base + "/k", alice_, {{"meta", {{"other", "v"}}}}).status, 400);
  EXPECT_EQ(put(base + "/k", alice_, {{"meta", {{"k", "v"}, {"l", "w"}}}}).status, 400);
  EXPECT_EQ(put(base + "/k", alice_, {{"meta", {{"k", 1}}}}).status, 400);
  EXPECT_EQ(post(base, alice_, {{"metadata", {{"k", std::string(256, 'x')}}}}).status, 400);
  EXPECT_EQ(post(base, alice_, {{"metadata", {{std::string(256, 'k'), "v"}}}}).status, 400);
  EXPECT_EQ(post(base, alice_, {{"meta", {{"k", "v"}}}}).status, 400);
  EXPECT_EQ(post(base, carol_, {{"metadata", {{"k", "v"}}}}).status, 403);
  // Quota.
  exec(
      "INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES (?, "
      "'metadata_items', 2)",
      {p1_});
  EXPECT_EQ(post(base, alice_, {{"metadata", {{"x", "1"}, {"y", "2"}}}}).status, 403);
  EXPECT_EQ(put(base, alice_, {{"metadata", {{"x", "1"}, {"y", "2"}}}}).status, 200);
  EXPECT_EQ(put(base + "/w", alice_, {{"meta", {{"w", "3"}}}}).status, 403);
  // State and lock.
  set_state(id, "building", "spawning", 0);
  Reply busy = post(base, alice_, {{"metadata", {{"x", "1"}}}});
  EXPECT_EQ(busy.status, 409);
  EXPECT_EQ(busy.message(),
            "Cannot 'update metadata' instance " + id + " while it is in vm_state building");
  set_state(id, "active");
  exec("UPDATE compute_servers SET locked = 1 WHERE id = ?", {id});
  EXPECT_EQ(post(base, alice_, {{"metadata", {{"x", "1"}}}}).status, 409);
}

TEST_F(ServersTest, TagRoutes) {
  add_host("h1");
  std::string id = create_active(alice_, "t");
  const std::string base = "/servers/" + id + "/tags";
  const std::string v = "2.26";
  EXPECT_EQ(get(base, alice_).status, 404);  // below 2.26 the route does not exist
  EXPECT_EQ(get(base, alice_, v).body, Json::parse(R"({"tags":[]})"));
  Reply r = put(base + "/red", alice_, nullptr, v);
  EXPECT_EQ(r.status, 201) << r;
  EXPECT_EQ(r.header("location"), "http://localhost:8774/compute/v2.1/servers/" + id + "/tags/red");
  EXPECT_EQ(put(base + "/red", alice_, nullptr, v).status, 204);
  EXPECT_EQ(get(base + "/red", carol_, v).status, 204);
  EXPECT_EQ(get(base + "/blue", alice_, v).status, 404);
  r = put(base, alice_, {{"tags", {"b", "a"}}}, v);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body, Json::parse(R"({"tags":["a","b"]})"));
  EXPECT_EQ(get("/servers/" + id, alice_, v).body["server"]["tags"], Json::parse(R"(["a","b"])"));
  EXPECT_EQ(del(base + "/a", alice_, v).status, 204);
  EXPECT_EQ(del(base + "/a", alice_, v).status, 404);
  EXPECT_EQ(del(base, alice_, v).status, 204);
  EXPECT_EQ(get(base, alice_, v).body["tags"].size(), 0u);
  // Validation.
  EXPECT_EQ(put(base, alice_, {{"tags", {"a,b"}}}, v).status, 400);
  EXPECT_EQ(put(base, alice_, {{"tags", {std::string(61, 't')}}}, v).status, 400);
  EXPECT_EQ(put(base, alice_, {{"tags", "a"}}, v).status, 400);
  Json many = Json::array();
  for (int i = 0; i < 51; ++i) many.push_back("t" + std::to_string(i));
  EXPECT_EQ(put(base, alice_, {{"tags", many}}, v).status, 400);
  many.erase(many.size() - 1);
  EXPECT_EQ(put(base, alice_, {{"tags", many}}, v).status, 200);
  EXPECT_EQ(put(base + "/one-more", alice_, nullptr, v).status, 400);
  EXPECT_EQ(put(base + "/x", carol_, nullptr, v).status, 403);
  set_state(id, "building", "spawning", 0);
  EXPECT_EQ(put(base + "/x", alice_, nullptr, v).status, 409);
}

TEST_F(ServersTest, InstanceActionsShapes) {
  add_host("h1");
  std::string id = create_active(alice_, "ia");
  Reply stop = post("/servers/" + id + "/action", alice_, {{"os-stop", nullptr}});
  ASSERT_EQ(stop.status, 202);
  Reply list = get("/servers/" + id + "/os-instance-actions", alice_);
  ASSERT_EQ(list.status, 200) << list;
  ASSERT_EQ(list.body["instanceActions"].size(), 2u);
  const Json& newest = list.body["instanceActions"][0];
  EXPECT_EQ(newest["action"], "stop");
  std::set<std::string> keys;
  for (auto& [k, v] : newest.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"action", "request_id", "user_id", "project_id",
                                         "start_time", "message", "instance_uuid"}));
  const std::string req = stop.header("x-compute-request-id");
  // Below 2.51 members see no events; admins do.
  Reply m = get("/servers/" + id + "/os-instance-actions/" + req, alice_);
  ASSERT_EQ(m.status, 200) << m;
  EXPECT_FALSE(m.body["instanceAction"].contains("events"));
  Reply a = get("/servers/" + id + "/os-instance-actions/" + req, admin_);
  ASSERT_EQ(a.body["instanceAction"]["events"].size(), 1u);
  EXPECT_EQ(a.body["instanceAction"]["events"][0]["event"], "compute_stop_instance");
  EXPECT_TRUE(a.body["instanceAction"]["events"][0]["result"].is_null());
  Reply m51 = get("/servers/" + id + "/os-instance-actions/" + req, alice_, "2.51");
  ASSERT_EQ(m51.body["instanceAction"]["events"].size(), 1u);
  EXPECT_FALSE(m51.body["instanceAction"]["events"][0].contains("traceback"));
  Reply m62 = get("/servers/" + id + "/os-instance-actions/" + req, alice_, "2.62");
  EXPECT_TRUE(m62.body["instanceAction"]["events"][0].contains("hostId"));
  EXPECT_FALSE(m62.body["instanceAction"]["events"][0].contains("host"));
  Reply m58 = get("/servers/" + id + "/os-instance-actions", alice_, "2.58");
  EXPECT_TRUE(m58.body["instanceActions"][0].contains("updated_at"));
  EXPECT_EQ(get("/servers/" + id + "/os-instance-actions/req-none", alice_).status, 404);
  // Deleted servers keep their actions readable from 2.21.
  exec("UPDATE compute_servers SET deleted = 1 WHERE id = ?", {id});
  EXPECT_EQ(get("/servers/" + id + "/os-instance-actions", alice_).status, 404);
  EXPECT_EQ(get("/servers/" + id + "/os-instance-actions", alice_, "2.21").status, 200);
  EXPECT_EQ(get("/servers/" + id + "/os-instance-actions", bob_, "2.21").status, 404);
}

// 2.58 pages the list (limit, marker, "links") and filters it by changes-since; earlier
// microversions ignore those parameters, as Nova.
TEST_F(ServersTest, InstanceActionsPageFrom258) {
  add_host("h1");
  std::string id = create_active(alice_, "paged");
  ASSERT_EQ(post("/servers/" + id + "/action", alice_, {{"os-stop", nullptr}}).status, 202);
  const std::string base = "/servers/" + id + "/os-instance-actions";
  Reply all = get(base, alice_, "2.58");
  ASSERT_EQ(all.status, 200) << all;
  ASSERT_EQ(all.body["instanceActions"].size(), 2u);
  EXPECT_FALSE(all.body.contains("links"));
  const std::string newest = all.body["instanceActions"][0]["request_id"];
  const std::string oldest = all.body["instanceActions"][1]["request_id"];

  Reply first = get(base + "?limit=1", alice_, "2.58");
  ASSERT_EQ(first.status, 200) << first;
  ASSERT_EQ(first.body["instanceActions"].size(), 1u);
  EXPECT_EQ(first.body["instanceActions"][0]["request_id"], newest);
  ASSERT_TRUE(first.body.contains("links")) << first;
  const std::string next = first.body["links"][0]["href"];
  EXPECT_NE(next.find("marker=" + newest), std::string::npos) << next;
  Reply second = get(base + "?limit=1&marker=" + newest, alice_, "2.58");
  ASSERT_EQ(second.status, 200) << second;
  ASSERT_EQ(second.body["instanceActions"].size(), 1u);
  EXPECT_EQ(second.body["instanceActions"][0]["request_id"], oldest);
  Reply after_last = get(base + "?marker=" + oldest, alice_, "2.58");
  EXPECT_EQ(after_last.body["instanceActions"].size(), 0u) << after_last;

  Reply future = get(base + "?changes-since=2999-01-01T00:00:00Z", alice_, "2.58");
  ASSERT_EQ(future.status, 200) << future;
  EXPECT_EQ(future.body["instanceActions"].size(), 0u) << future;
  Reply past = get(base + "?changes-since=2000-01-01T00:00:00Z", alice_, "2.58");
  EXPECT_EQ(past.body["instanceActions"].size(), 2u);
  Reply before = get(base + "?changes-before=2000-01-01T00:00:00Z", alice_, "2.66");
  EXPECT_EQ(before.body["instanceActions"].size(), 0u) << before;

  Reply negative = get(base + "?limit=-1", alice_, "2.58");
  EXPECT_EQ(negative.status, 400) << negative;
  EXPECT_NE(negative.body.dump().find("does not match"), std::string::npos) << negative;
  Reply unknown = get(base + "?marker=req-nope", alice_, "2.58");
  EXPECT_EQ(unknown.status, 400) << unknown;
  EXPECT_NE(unknown.body.dump().find("Marker req-nope could not be found."), std::string::npos);
  EXPECT_EQ(get(base + "?changes-since=tomorrow", alice_, "2.58").status, 400);
  EXPECT_EQ(get(base + "?changes-since=2001-01-01T00:00:00Z&changes-before=2000-01-01T00:00:00Z",
                alice_, "2.66")
                .status,
            400);
  // Before 2.58 the parameters mean nothing: the whole list, never a 400.
  Reply old = get(base + "?limit=-1&marker=req-nope", alice_, "2.57");
  ASSERT_EQ(old.status, 200) << old;
  EXPECT_EQ(old.body["instanceActions"].size(), 2u);
}

// Another project's server is 404 on every route; an admin reaches it.
TEST_F(ServersTest, TenantIsolationOnEveryRoute) {
  add_host("h1");
  std::string id = create_active(alice_, "private");
  exec("INSERT INTO compute_server_metadata (server_id, key, value) VALUES (?, 'k', 'v')", {id});
  exec("INSERT INTO compute_server_tags (server_id, tag) VALUES (?, 't')", {id});
  struct Route {
    Method method;
    std::string path;
    Json body;
    std::string version;
  };
  const std::string s = "/servers/" + id;
  const std::vector<Route> routes = {
      {Method::kGet, s, nullptr, ""},
      {Method::kPut, s, {{"server", {{"name", "x"}}}}, ""},
      {Method::kPost, s + "/action", {{"os-stop", nullptr}}, ""},
      {Method::kPost, s + "/action", {{"os-getConsoleOutput", Json::object()}}, ""},
      {Method::kPost, s + "/action", {{"createImage", {{"name", "x"}}}}, ""},
      {Method::kGet, s + "/metadata", nullptr, ""},
      {Method::kPost, s + "/metadata", {{"metadata", {{"a", "b"}}}}, ""},
      {Method::kPut, s + "/metadata", {{"metadata", {{"a", "b"}}}}, ""},
      {Method::kGet, s + "/metadata/k", nullptr, ""},
      {Method::kPut, s + "/metadata/k", {{"meta", {{"k", "b"}}}}, ""},
      {Method::kDelete, s + "/metadata/k", nullptr, ""},
      {Method::kGet, s + "/tags", nullptr, "2.26"},
      {Method::kPut, s + "/tags", {{"tags", {"a"}}}, "2.26"},
      {Method::kDelete, s + "/tags", nullptr, "2.26"},
      {Method::kGet, s + "/tags/t", nullptr, "2.26"},
      {Method::kPut, s + "/tags/u", nullptr, "2.26"},
      {Method::kDelete, s + "/tags/t", nullptr, "2.26"},
      {Method::kGet, s + "/os-instance-actions", nullptr, ""},
      {Method::kGet, s + "/os-instance-actions/req-1", nullptr, ""},
      {Method::kDelete, s, nullptr, ""},
  };
  for (const Route& r : routes) {
    Reply reply = nova(r.method, r.path, bob_, r.body, r.version);
    EXPECT_EQ(reply.status, 404) << http::method_name(r.method) << " " << r.path << ": " << reply;
    EXPECT_EQ(reply.body.begin().key(), "itemNotFound");
  }
  EXPECT_EQ(row(id).name, "private");
  EXPECT_EQ(get("/servers/" + id, admin_).status, 200);
  EXPECT_EQ(get("/servers", bob_).body["servers"].size(), 0u);
  EXPECT_EQ(get("/servers/detail?all_tenants=1", admin_).body["servers"].size(), 1u);
}

TEST_F(ServersTest, UnknownAndMalformedIdsAre404) {
  for (const std::string& id : std::vector<std::string>{
           "00000000-0000-4000-8000-000000000000", "not-a-uuid", std::string(300, 'x'), "%00"}) {
    Reply r = get("/servers/" + id, alice_);
    EXPECT_EQ(r.status, 404) << id << " " << r;
  }
  EXPECT_EQ(del("/servers/nope", alice_).status, 404);
  EXPECT_EQ(post("/servers/nope/action", alice_, {{"os-stop", nullptr}}).status, 404);
}

TEST_F(ServersTest, UpdateValidation) {
  add_host("h1");
  std::string id = create_active(alice_, "u");
  const std::string p = "/servers/" + id;
  Reply ok = put(p, alice_, {{"server", {{"name", "new"}, {"accessIPv6", "FE80::0:1"}}}});
  ASSERT_EQ(ok.status, 200) << ok;
  EXPECT_EQ(ok.body["server"]["name"], "new");
  EXPECT_EQ(ok.body["server"]["accessIPv6"], "fe80::1");
  EXPECT_EQ(put(p, alice_, {{"server", {{"description", "d"}}}}).status, 400);
  Reply d = put(p, alice_, {{"server", {{"description", "d"}}}}, "2.19");
  EXPECT_EQ(d.body["server"]["description"], "d");
  EXPECT_EQ(put(p, alice_, {{"server", {{"name", ""}}}}).status, 400);
  EXPECT_EQ(put(p, alice_, {{"server", {{"name", 1}}}}).status, 400);
  EXPECT_EQ(put(p, alice_, {{"server", {{"accessIPv6", "1.2.3.4"}}}}).status, 400);
  EXPECT_EQ(put(p, alice_, {{"server", {{"host", "x"}}}}).status, 400);
  EXPECT_EQ(put(p, alice_, {{"name", "x"}}).status, 400);
  EXPECT_EQ(put(p, carol_, {{"server", {{"name", "x"}}}}).status, 403);
}

TEST(NameMatcher, Searches) {
  struct Case {
    const char* pattern;
    const char* text;
    bool match;
  };
  const Case cases[] = {
      {"abc", "xxabcxx", true},
      {"^abc", "xabc", false},
      {"abc$", "xxabc", true},
      {"a.c", "abc", true},
      {"a.c", "a\nc", false},
      {"a*", "", true},
      {"^a+$", "aaa", true},
      {"^a+$", "aab", false},
      {"colou?r", "color", true},
      {"(ab|cd)e", "xcde", true},
      {"(ab|cd)e", "abd", false},
      {"[a-c]x", "bx", true},
      {"[^a-c]x", "bx", false},
      {"\\d{2,3}", "a12b", true},
      {"^\\d{2,3}$", "1234", false},
      {"a{2}", "ba", false},
      {"a{,", "a{,", true},
      {"\\.", "a.b", true},
      {"\\.", "ab", false},
      {"(?:x|y)z", "yz", true},
      {"\\w+\\s\\w+", "hi there", true},
      {"^$", "", true},
      {"é", "café", true},
      {"(a*)*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
  };
  for (const Case& c : cases) {
    auto m = servers::NameMatcher::compile(c.pattern);
    ASSERT_TRUE(m.has_value()) << c.pattern << ": " << m.error().to_string();
    EXPECT_EQ(m->search(c.text), c.match) << c.pattern << " on " << c.text;
  }
  for (const char* bad : {"(", ")", "[a", "*a", "a**", "\\", "(?=x)", "\\q", "a{5,2}", "x{1000}"}) {
    auto m = servers::NameMatcher::compile(bad);
    EXPECT_FALSE(m.has_value()) << bad;
    if (!m) {
      EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
    }
  }
  EXPECT_FALSE(servers::NameMatcher::compile(std::string(256, 'a')).has_value());
  // A long hostile input stays linear.
  auto m = servers::NameMatcher::compile("(a|aa)*(a|aa)*(a|aa)*c");
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->search(std::string(5000, 'a')));
}

}  // namespace
}  // namespace concord::compute::testing

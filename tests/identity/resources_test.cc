// CRUD, filters and Keystone's 400/403/404/409 semantics of every identity resource.
#include <nlohmann/json.hpp>
#include <set>

#include "identity_test_util.h"

namespace concord::identity::testing {
namespace {

using http::Method;

class ResourcesTest : public IdentityTest {};

std::vector<std::string> ids_of(const Json& list) {
  std::vector<std::string> out;
  for (const Json& e : list) out.push_back(e["id"]);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// ---- domains ----

TEST_F(ResourcesTest, DomainCrudAndShape) {
  std::string tok = admin_token();
  Reply created = post("/v3/domains", {{"domain", {{"name", "d1"}}}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  Json d = created.body["domain"];
  std::string id = d["id"];
  EXPECT_EQ(d["name"], "d1");
  EXPECT_EQ(d["description"], "");
  EXPECT_EQ(d["enabled"], true);
  EXPECT_EQ(d["tags"], Json::array());
  EXPECT_EQ(d["options"], Json::object());
  EXPECT_EQ(d["links"]["self"], "http://localhost:5000/identity/v3/domains/" + id);
  EXPECT_FALSE(d.contains("domain_id"));

  // The create response equals the list entry and the GET.
  Reply listed = get("/v3/domains?name=d1", tok);
  ASSERT_EQ(listed.status, 200);
  ASSERT_EQ(listed.body["domains"].size(), 1u);
  EXPECT_EQ(listed.body["domains"][0], d);
  EXPECT_EQ(listed.body["links"]["self"], "http://localhost:5000/identity/v3/domains?name=d1");
  EXPECT_TRUE(listed.body["links"]["previous"].is_null());
  EXPECT_EQ(get("/v3/domains/" + id, tok).body["domain"], d);

  EXPECT_EQ(post("/v3/domains", {{"domain", {{"name", "d1"}}}}, tok).status, 409);
  EXPECT_EQ(post("/v3/domains", {{"domain", {{"name", ""}}}}, tok).status, 400);
  EXPECT_EQ(post("/v3/domains", {{"domain", {{"name", std::string(65, 'a')}}}}, tok).status, 400);
  EXPECT_EQ(post("/v3/domains", {{"domain", {{"name", std::string(64, 'a')}}}}, tok).status, 201);

  Reply updated =
      patch("/v3/domains/" + id,
            {{"domain", {{"name", "d1b"}, {"description", "x"}, {"enabled", false}}}}, tok);
  ASSERT_EQ(updated.status, 200) << updated;
  EXPECT_EQ(updated.body["domain"]["name"], "d1b");
  EXPECT_EQ(updated.body["domain"]["description"], "x");
  EXPECT_EQ(updated.body["domain"]["enabled"], false);

  Reply enabled_only = get("/v3/domains?enabled=true", tok);
  EXPECT_FALSE(contains(ids_of(enabled_only.body["domains"]), id));
  EXPECT_TRUE(contains(ids_of(get("/v3/domains?enabled=false", tok).body["domains"]), id));

  EXPECT_EQ(get("/v3/domains/nope", tok).status, 404);
  EXPECT_EQ(del("/v3/domains/nope", tok).status, 404);
  EXPECT_EQ(del("/v3/domains/" + id, tok).status, 204);
  EXPECT_EQ(get("/v3/domains/" + id, tok).status, 404);
}

TEST_F(ResourcesTest, EnabledDomainCannotBeDeletedAndDeleteCascades) {
  std::string tok = admin_token();
  std::string id =
      post("/v3/domains", {{"domain", {{"name", "doomed"}}}}, tok).body["domain"]["id"];
  Reply blocked = del("/v3/domains/" + id, tok);
  EXPECT_EQ(blocked.status, 403) << blocked;
  EXPECT_EQ(blocked.body["error"]["title"], "Forbidden");
  std::string user =
      post("/v3/users", {{"user", {{"name", "u"}, {"domain_id", id}}}}, tok).body["user"]["id"];
  std::string group =
      post("/v3/groups", {{"group", {{"name", "g"}, {"domain_id", id}}}}, tok).body["group"]["id"];
  std::string project = post("/v3/projects", {{"project", {{"name", "p"}, {"domain_id", id}}}}, tok)
                            .body["project"]["id"];
  ASSERT_EQ(patch("/v3/domains/" + id, {{"domain", {{"enabled", false}}}}, tok).status, 200);
  EXPECT_EQ(del("/v3/domains/" + id, tok).status, 204);
  EXPECT_EQ(get("/v3/users/" + user, tok).status, 404);
  EXPECT_EQ(get("/v3/groups/" + group, tok).status, 404);
  EXPECT_EQ(get("/v3/projects/" + project, tok).status, 404);
}

// ---- projects ----

TEST_F(ResourcesTest, ProjectCreateDefaultsAndShape) {
  std::string tok = admin_token();
  Reply r = post("/v3/projects", {{"project", {{"name", "p1"}, {"tags", {"a", "b"}}}}}, tok);
  ASSERT_EQ(r.status, 201) << r;
  const Json& p = r.body["project"];
  EXPECT_EQ(p["domain_id"], "default");  // the token's project domain
  EXPECT_EQ(p["parent_id"], "default");
  EXPECT_EQ(p["is_domain"], false);
  EXPECT_EQ(p["description"], "");
  EXPECT_EQ(p["enabled"], true);
  EXPECT_EQ(p["tags"], Json({"a", "b"}));
  EXPECT_EQ(p["options"], Json::object());
  std::string id = p["id"];
  Reply shown = get("/v3/projects/" + id, tok);
  EXPECT_EQ(shown.body["project"], p);
  Reply listed = get("/v3/projects", tok);
  bool found = false;
  for (const Json& e : listed.body["projects"]) {
    if (e["id"] == id) {
      EXPECT_EQ(e, p);
      found = true;
    }
  }
  EXPECT_TRUE(found);
  // Extra attributes round-trip.
  Reply extra = post("/v3/projects", {{"project", {{"name", "p2"}, {"flavor", "gold"}}}}, tok);
  ASSERT_EQ(extra.status, 201);
  EXPECT_EQ(get("/v3/projects/" + extra.body["project"]["id"].get<std::string>(), tok)
                .body["project"]["flavor"],
            "gold");
}

TEST_F(ResourcesTest, ProjectHierarchyFiltersAndConflicts) {
  std::string tok = admin_token();
  std::string parent = create_project("parent");
  Reply child =
      post("/v3/projects", {{"project", {{"name", "child"}, {"parent_id", parent}}}}, tok);
  ASSERT_EQ(child.status, 201) << child;
  EXPECT_EQ(child.body["project"]["parent_id"], parent);
  EXPECT_EQ(child.body["project"]["domain_id"], "default");
  std::string child_id = child.body["project"]["id"];
  Reply disabled = post("/v3/projects", {{"project", {{"name", "off"}, {"enabled", false}}}}, tok);
  ASSERT_EQ(disabled.status, 201);

  auto names = [&](const std::string& query) {
    std::vector<std::string> out;
    Reply listed = get("/v3/projects" + query, tok);
    for (const Json& p : listed.body["projects"]) out.push_back(p["name"]);
    return out;
  };
  EXPECT_EQ(names("?name=child"), std::vector<std::string>{"child"});
  EXPECT_EQ(names("?parent_id=" + parent), std::vector<std::string>{"child"});
  EXPECT_EQ(names("?enabled=False"), std::vector<std::string>{"off"});
  EXPECT_TRUE(contains(names("?domain_id=default"), "parent"));
  EXPECT_TRUE(names("?domain_id=other").empty());
  EXPECT_FALSE(contains(names(""), "Default"));  // domains are not listed as projects

  EXPECT_EQ(post("/v3/projects", {{"project", {{"name", "child"}}}}, tok).status, 409);
  EXPECT_EQ(post("/v3/projects", {{"project", {{"name", ""}}}}, tok).status, 400);
  EXPECT_EQ(post("/v3/projects", {{"project", {{"name", std::string(65, 'p')}}}}, tok).status, 400);
  // Keystone answers 400 (ValidationError) when the body names a domain or parent that does
  // not exist; users and groups with an unknown domain_id stay 404 (DomainNotFound), as there.
  Reply bad_domain =
      post("/v3/projects", {{"project", {{"name", "x"}, {"domain_id", "missing"}}}}, tok);
  EXPECT_EQ(bad_domain.status, 400) << bad_domain;
  EXPECT_EQ(bad_domain.message(), "Could not find domain: missing.");
  Reply bad_parent =
      post("/v3/projects", {{"project", {{"name", "x"}, {"parent_id", "missing"}}}}, tok);
  EXPECT_EQ(bad_parent.status, 400) << bad_parent;
  EXPECT_EQ(bad_parent.message(), "Could not find project: missing.");
  EXPECT_EQ(post("/v3/users", {{"user", {{"name", "x"}, {"domain_id", "missing"}}}}, tok).status,
            404);
  EXPECT_EQ(post("/v3/groups", {{"group", {{"name", "x"}, {"domain_id", "missing"}}}}, tok).status,
            404);
  std::string other_domain =
      post("/v3/domains", {{"domain", {{"name", "od"}}}}, tok).body["domain"]["id"];
  EXPECT_EQ(
      post("/v3/projects",
           {{"project", {{"name", "x"}, {"parent_id", parent}, {"domain_id", other_domain}}}}, tok)
          .status,
      400);
  // The same name in another domain is fine.
  EXPECT_EQ(
      post("/v3/projects", {{"project", {{"name", "child"}, {"domain_id", other_domain}}}}, tok)
          .status,
      201);

  // Deleting a parent with children is refused; leaves go first.
  EXPECT_EQ(del("/v3/projects/" + parent, tok).status, 403);
  EXPECT_EQ(del("/v3/projects/" + child_id, tok).status, 204);
  EXPECT_EQ(del("/v3/projects/" + parent, tok).status, 204);
  EXPECT_EQ(get("/v3/projects/" + parent, tok).status, 404);
  EXPECT_EQ(del("/v3/projects/" + parent, tok).status, 404);
}

TEST_F(ResourcesTest, ProjectUpdate) {
  std::string tok = admin_token();
  std::string id = create_project("up");
  Reply r = patch("/v3/projects/" + id,
                  {{"project", {{"name", "up2"}, {"description", "d"}, {"enabled", false}}}}, tok);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["project"]["name"], "up2");
  EXPECT_EQ(r.body["project"]["description"], "d");
  EXPECT_EQ(r.body["project"]["enabled"], false);
  EXPECT_EQ(get("/v3/projects/" + id, tok).body["project"], r.body["project"]);
  create_project("taken");
  EXPECT_EQ(patch("/v3/projects/" + id, {{"project", {{"name", "taken"}}}}, tok).status, 409);
  EXPECT_EQ(patch("/v3/projects/" + id, {{"project", {{"domain_id", "other"}}}}, tok).status, 400);
  EXPECT_EQ(patch("/v3/projects/" + id, {{"project", Json::object()}}, tok).status, 400);
  EXPECT_EQ(patch("/v3/projects/missing", {{"project", {{"name", "z"}}}}, tok).status, 404);
}

TEST_F(ResourcesTest, ProjectActingAsDomain) {
  std::string tok = admin_token();
  Reply r = post("/v3/projects",
                 {{"project", {{"name", "pd"}, {"is_domain", true}, {"domain_id", nullptr}}}}, tok);
  ASSERT_EQ(r.status, 201) << r;
  std::string id = r.body["project"]["id"];
  EXPECT_EQ(r.body["project"]["is_domain"], true);
  EXPECT_TRUE(r.body["project"]["domain_id"].is_null());
  EXPECT_TRUE(contains(ids_of(get("/v3/projects?is_domain=True", tok).body["projects"]), id));
  EXPECT_TRUE(contains(ids_of(get("/v3/domains", tok).body["domains"]), id));
  EXPECT_EQ(del("/v3/projects/" + id, tok).status, 403);  // enabled
  ASSERT_EQ(patch("/v3/projects/" + id, {{"project", {{"enabled", false}}}}, tok).status, 200);
  EXPECT_EQ(del("/v3/projects/" + id, tok).status, 204);
}

TEST_F(ResourcesTest, ProjectTags) {
  std::string tok = admin_token();
  std::string id = create_project("tagged");
  EXPECT_EQ(put("/v3/projects/" + id + "/tags/blue", tok).status, 201);
  EXPECT_EQ(get("/v3/projects/" + id + "/tags/blue", tok).status, 204);
  EXPECT_EQ(get("/v3/projects/" + id + "/tags/red", tok).status, 404);
  EXPECT_EQ(get("/v3/projects/" + id + "/tags", tok).body["tags"], Json({"blue"}));
  Reply replaced = put("/v3/projects/" + id + "/tags", tok, R"({"tags":["x","y"]})");
  ASSERT_EQ(replaced.status, 200) << replaced;
  EXPECT_EQ(replaced.body["tags"], Json({"x", "y"}));
  EXPECT_EQ(put("/v3/projects/" + id + "/tags", tok, R"({"tags":["a,b"]})").status, 400);
  EXPECT_TRUE(contains(ids_of(get("/v3/projects?tags=x", tok).body["projects"]), id));
  EXPECT_FALSE(contains(ids_of(get("/v3/projects?tags=blue", tok).body["projects"]), id));
  EXPECT_EQ(del("/v3/projects/" + id + "/tags/x", tok).status, 204);
  EXPECT_EQ(del("/v3/projects/" + id + "/tags/x", tok).status, 404);
  EXPECT_EQ(del("/v3/projects/" + id + "/tags", tok).status, 204);
  EXPECT_EQ(get("/v3/projects/" + id + "/tags", tok).body["tags"], Json::array());
}

// ---- users ----

TEST_F(ResourcesTest, UserCrudShapeAndExtraAttributes) {
  std::string tok = admin_token();
  std::string project = create_project("up");
  Reply r = post("/v3/users",
                 {{"user",
                   {{"name", "vera"},
                    {"password", "pw"},
                    {"email", "vera@example.com"},
                    {"description", "desc"},
                    {"enabled", false},
                    {"project_id", project}}}},
                 tok);
  ASSERT_EQ(r.status, 201) << r;
  const Json& u = r.body["user"];
  std::string id = u["id"];
  EXPECT_FALSE(u.contains("password"));
  EXPECT_TRUE(u["password_expires_at"].is_null());
  EXPECT_EQ(u["email"], "vera@example.com");
  EXPECT_EQ(u["description"], "desc");
  EXPECT_EQ(u["project_id"], project);
  EXPECT_EQ(u["domain_id"], "default");
  EXPECT_EQ(u["enabled"], false);
  EXPECT_EQ(u["options"], Json::object());
  EXPECT_FALSE(u.contains("default_project_id"));
  EXPECT_EQ(get("/v3/users/" + id, tok).body["user"], u);

  Reply upd = patch("/v3/users/" + id,
                    {{"user",
                      {{"name", "vera2"},
                       {"email", "v2@example.com"},
                       {"enabled", true},
                       {"default_project_id", project}}}},
                    tok);
  ASSERT_EQ(upd.status, 200) << upd;
  EXPECT_EQ(upd.body["user"]["name"], "vera2");
  EXPECT_EQ(upd.body["user"]["email"], "v2@example.com");
  EXPECT_EQ(upd.body["user"]["default_project_id"], project);
  EXPECT_EQ(get("/v3/users/" + id, tok).body["user"], upd.body["user"]);

  EXPECT_EQ(post("/v3/users", {{"user", {{"name", "vera2"}}}}, tok).status, 409);
  EXPECT_EQ(post("/v3/users", {{"user", {{"name", "w"}, {"domain_id", "0123abcd"}}}}, tok).status,
            404);
  EXPECT_EQ(post("/v3/users", {{"user", {{"name", std::string(256, 'u')}}}}, tok).status, 400);
  EXPECT_EQ(post("/v3/users", {{"user", {{"name", std::string(255, 'u')}}}}, tok).status, 201);
  EXPECT_EQ(patch("/v3/users/" + id, {{"user", {{"domain_id", "other"}}}}, tok).status, 400);
  EXPECT_EQ(del("/v3/users/" + id, tok).status, 204);
  EXPECT_EQ(get("/v3/users/" + id, tok).status, 404);
  EXPECT_EQ(del("/v3/users/" + id, tok).status, 404);
}

TEST_F(ResourcesTest, UserListFilters) {
  std::string tok = admin_token();
  std::string domain =
      post("/v3/domains", {{"domain", {{"name", "ud"}}}}, tok).body["domain"]["id"];
  std::string a = post("/v3/users", {{"user", {{"name", "ua"}, {"domain_id", domain}}}}, tok)
                      .body["user"]["id"];
  std::string b =
      post("/v3/users", {{"user", {{"name", "ub"}, {"enabled", false}}}}, tok).body["user"]["id"];
  auto ids = [&](const std::string& q) { return ids_of(get("/v3/users" + q, tok).body["users"]); };
  EXPECT_EQ(ids("?domain_id=" + domain), std::vector<std::string>{a});
  EXPECT_TRUE(contains(ids("?enabled=false"), b));
  EXPECT_FALSE(contains(ids("?enabled=false"), a));
  EXPECT_EQ(ids("?name=ub"), std::vector<std::string>{b});
  EXPECT_TRUE(contains(ids(""), a));
  EXPECT_TRUE(contains(ids(""), b));
}

TEST_F(ResourcesTest, UserProjectsAndGroups) {
  std::string tok = admin_token();
  std::string user = create_user("walt", "walt-pw");
  std::string p1 = create_project("wp1");
  std::string p2 = create_project("wp2");
  create_project("wp3");
  grant(p1, user, boot_.reader_role_id);
  grant(p2, user, boot_.member_role_id);
  Reply projects = get("/v3/users/" + user + "/projects", tok);
  ASSERT_EQ(projects.status, 200);
  EXPECT_EQ(ids_of(projects.body["projects"]), (std::vector<std::string>{p1, p2}));
  // The user may list their own projects; not somebody else's.
  std::string own = token("walt", "walt-pw", "wp1");
  EXPECT_EQ(get("/v3/users/" + user + "/projects", own).status, 200);
  EXPECT_EQ(get("/v3/users/" + boot_.admin_user_id + "/projects", own).status, 403);
  EXPECT_EQ(get("/v3/users/missing/projects", tok).status, 404);

  std::string g1 = post("/v3/groups", {{"group", {{"name", "g1"}}}}, tok).body["group"]["id"];
  std::string g2 = post("/v3/groups", {{"group", {{"name", "g2"}}}}, tok).body["group"]["id"];
  ASSERT_EQ(put("/v3/groups/" + g1 + "/users/" + user, tok).status, 204);
  ASSERT_EQ(put("/v3/groups/" + g2 + "/users/" + user, tok).status, 204);
  Reply groups = get("/v3/users/" + user + "/groups", tok);
  ASSERT_EQ(groups.status, 200);
  EXPECT_EQ(groups.body["groups"][0], get("/v3/groups/" + g1, tok).body["group"]);
  EXPECT_EQ(ids_of(groups.body["groups"]), (std::vector<std::string>{g1, g2}));
}

// ---- groups ----

TEST_F(ResourcesTest, GroupCrudAndMembership) {
  std::string tok = admin_token();
  Reply created = post("/v3/groups", {{"group", {{"name", "ops"}, {"description", "d"}}}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  std::string g = created.body["group"]["id"];
  EXPECT_EQ(created.body["group"]["domain_id"], "default");
  EXPECT_EQ(created.body["group"]["description"], "d");
  EXPECT_EQ(post("/v3/groups", {{"group", {{"name", "ops"}}}}, tok).status, 409);
  Reply upd = patch("/v3/groups/" + g, {{"group", {{"name", "ops2"}}}}, tok);
  ASSERT_EQ(upd.status, 200);
  EXPECT_EQ(upd.body["group"]["name"], "ops2");
  EXPECT_EQ(upd.body["group"]["description"], "d");
  EXPECT_TRUE(contains(ids_of(get("/v3/groups?name=ops2", tok).body["groups"]), g));

  std::string u1 = create_user("m1", "pw");
  std::string u2 = create_user("m2", "pw");
  ASSERT_EQ(put("/v3/groups/" + g + "/users/" + u1, tok).status, 204);
  ASSERT_EQ(put("/v3/groups/" + g + "/users/" + u2, tok).status, 204);
  ASSERT_EQ(put("/v3/groups/" + g + "/users/" + u2, tok).status, 204);  // idempotent
  EXPECT_EQ(call(Method::kHead, "/v3/groups/" + g + "/users/" + u1, "", tok).status, 204);
  Reply members = get("/v3/groups/" + g + "/users", tok);
  ASSERT_EQ(members.status, 200);
  EXPECT_EQ(ids_of(members.body["users"]), (std::vector<std::string>{u1, u2}));
  EXPECT_EQ(members.body["users"][0], get("/v3/users/" + u1, tok).body["user"]);
  EXPECT_EQ(del("/v3/groups/" + g + "/users/" + u1, tok).status, 204);
  EXPECT_EQ(call(Method::kHead, "/v3/groups/" + g + "/users/" + u1, "", tok).status, 404);
  EXPECT_EQ(del("/v3/groups/" + g + "/users/" + u1, tok).status, 404);
  EXPECT_EQ(put("/v3/groups/" + g + "/users/missing", tok).status, 404);
  EXPECT_EQ(put("/v3/groups/missing/users/" + u1, tok).status, 404);
  EXPECT_EQ(del("/v3/groups/" + g, tok).status, 204);
  EXPECT_EQ(get("/v3/groups/" + g, tok).status, 404);
  EXPECT_TRUE(get("/v3/users/" + u2 + "/groups", tok).body["groups"].empty());
}

// ---- roles and implied roles ----

TEST_F(ResourcesTest, RoleCrudAndDomainRoles) {
  std::string tok = admin_token();
  Reply r = post("/v3/roles", {{"role", {{"name", "viewer"}}}}, tok);
  ASSERT_EQ(r.status, 201) << r;
  const Json& role = r.body["role"];
  std::string id = role["id"];
  EXPECT_TRUE(role["domain_id"].is_null());
  EXPECT_TRUE(role["description"].is_null());
  EXPECT_EQ(role["options"], Json::object());
  bool listed = false;
  Reply roles = get("/v3/roles", tok);
  for (const Json& e : roles.body["roles"]) listed = listed || e == role;
  EXPECT_TRUE(listed);
  EXPECT_EQ(post("/v3/roles", {{"role", {{"name", "viewer"}}}}, tok).status, 409);
  Reply upd = patch("/v3/roles/" + id, {{"role", {{"name", "viewer2"}}}}, tok);
  ASSERT_EQ(upd.status, 200);
  EXPECT_EQ(get("/v3/roles/" + id, tok).body["role"]["name"], "viewer2");

  std::string domain =
      post("/v3/domains", {{"domain", {{"name", "rd"}}}}, tok).body["domain"]["id"];
  Reply dr = post("/v3/roles", {{"role", {{"name", "viewer2"}, {"domain_id", domain}}}}, tok);
  ASSERT_EQ(dr.status, 201) << dr;  // same name, other domain
  Reply in_domain = get("/v3/roles?domain_id=" + domain, tok);
  ASSERT_EQ(in_domain.body["roles"].size(), 1u);
  EXPECT_EQ(in_domain.body["roles"][0], dr.body["role"]);
  EXPECT_FALSE(contains(ids_of(get("/v3/roles", tok).body["roles"]), dr.body["role"]["id"]));

  EXPECT_EQ(del("/v3/roles/" + id, tok).status, 204);
  EXPECT_EQ(get("/v3/roles/" + id, tok).status, 404);
  EXPECT_EQ(del("/v3/roles/" + id, tok).status, 404);
}

TEST_F(ResourcesTest, ImpliedRoles) {
  std::string tok = admin_token();
  std::string a = create_role("ra");
  std::string b = create_role("rb");
  std::string c = create_role("rc");
  Reply created = put("/v3/roles/" + a + "/implies/" + b, tok);
  ASSERT_EQ(created.status, 201) << created;
  EXPECT_EQ(created.body["role_inference"]["prior_role"]["id"], a);
  EXPECT_EQ(created.body["role_inference"]["implies"]["name"], "rb");
  EXPECT_TRUE(created.body["role_inference"]["implies"]["links"].contains("self"));
  EXPECT_EQ(call(Method::kHead, "/v3/roles/" + a + "/implies/" + b, "", tok).status, 204);
  EXPECT_EQ(get("/v3/roles/" + a + "/implies/" + b, tok).body["role_inference"],
            created.body["role_inference"]);
  ASSERT_EQ(put("/v3/roles/" + a + "/implies/" + c, tok).status, 201);
  Reply list = get("/v3/roles/" + a + "/implies", tok);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(ids_of(list.body["role_inference"]["implies"]), (std::vector<std::string>{b, c}));
  Reply all = get("/v3/role_inferences", tok);
  ASSERT_EQ(all.status, 200);
  bool found = false;
  for (const Json& rule : all.body["role_inferences"]) {
    if (rule["prior_role"]["id"] == a) {
      EXPECT_EQ(rule["implies"].size(), 2u);
      found = true;
    }
  }
  EXPECT_TRUE(found);

  // Effective role assignments follow the rule.
  auto [user, project] = member_of_new_project("ivy", a);
  Reply eff =
      get("/v3/role_assignments?effective&user.id=" + user + "&scope.project.id=" + project, tok);
  ASSERT_EQ(eff.status, 200) << eff;
  EXPECT_EQ(eff.body["role_assignments"].size(), 3u);
  ASSERT_EQ(del("/v3/roles/" + a + "/implies/" + b, tok).status, 204);
  EXPECT_EQ(get("/v3/roles/" + a + "/implies/" + b, tok).status, 404);
  EXPECT_EQ(del("/v3/roles/" + a + "/implies/" + b, tok).status, 404);
  eff = get("/v3/role_assignments?effective&user.id=" + user + "&scope.project.id=" + project, tok);
  EXPECT_EQ(eff.body["role_assignments"].size(), 2u);

  // A global role cannot imply a domain role, and nothing implies admin.
  std::string domain =
      post("/v3/domains", {{"domain", {{"name", "id1"}}}}, tok).body["domain"]["id"];
  std::string dr = post("/v3/roles", {{"role", {{"name", "dr"}, {"domain_id", domain}}}}, tok)
                       .body["role"]["id"];
  EXPECT_EQ(put("/v3/roles/" + a + "/implies/" + dr, tok).status, 403);
  EXPECT_EQ(put("/v3/roles/" + dr + "/implies/" + a, tok).status, 201);
  EXPECT_EQ(put("/v3/roles/" + a + "/implies/" + boot_.admin_role_id, tok).status, 403);
  EXPECT_EQ(put("/v3/roles/" + a + "/implies/missing", tok).status, 404);
}

// ---- grants and role assignments ----

TEST_F(ResourcesTest, GrantsOnProjectsDomainsAndSystem) {
  std::string tok = admin_token();
  std::string role = create_role("gr");
  std::string user = create_user("xena", "pw");
  std::string project = create_project("gp");
  std::string group = post("/v3/groups", {{"group", {{"name", "gg"}}}}, tok).body["group"]["id"];
  for (const std::string& prefix : {"/v3/projects/" + project + "/users/" + user,
                                    "/v3/projects/" + project + "/groups/" + group,
                                    std::string("/v3/domains/default/users/") + user,
                                    std::string("/v3/domains/default/groups/") + group,
                                    "/v3/system/users/" + user, "/v3/system/groups/" + group}) {
    SCOPED_TRACE(prefix);
    EXPECT_EQ(call(Method::kHead, prefix + "/roles/" + role, "", tok).status, 404);
    EXPECT_EQ(put(prefix + "/roles/" + role, tok).status, 204);
    EXPECT_EQ(put(prefix + "/roles/" + role, tok).status, 204);
    EXPECT_EQ(call(Method::kHead, prefix + "/roles/" + role, "", tok).status, 204);
    EXPECT_EQ(get(prefix + "/roles/" + role, tok).status, 204);
    Reply list = get(prefix + "/roles", tok);
    ASSERT_EQ(list.status, 200);
    ASSERT_EQ(list.body["roles"].size(), 1u);
    EXPECT_EQ(list.body["roles"][0]["id"], role);
    EXPECT_EQ(put(prefix + "/roles/missing", tok).status, 404);
    EXPECT_EQ(del(prefix + "/roles/" + role, tok).status, 204);
    EXPECT_EQ(del(prefix + "/roles/" + role, tok).status, 404);
  }
  EXPECT_EQ(put("/v3/projects/missing/users/" + user + "/roles/" + role, tok).status, 404);
  EXPECT_EQ(put("/v3/projects/" + project + "/users/missing/roles/" + role, tok).status, 404);
  EXPECT_EQ(put("/v3/domains/" + project + "/users/" + user + "/roles/" + role, tok).status, 404);

  // A domain-specific role only inside its domain.
  std::string domain =
      post("/v3/domains", {{"domain", {{"name", "gd"}}}}, tok).body["domain"]["id"];
  std::string dr = post("/v3/roles", {{"role", {{"name", "dr"}, {"domain_id", domain}}}}, tok)
                       .body["role"]["id"];
  EXPECT_EQ(put("/v3/projects/" + project + "/users/" + user + "/roles/" + dr, tok).status, 403);
}

TEST_F(ResourcesTest, RoleAssignmentsListing) {
  std::string tok = admin_token();
  std::string user = create_user("yuri", "pw");
  std::string project = create_project("ap");
  std::string group = post("/v3/groups", {{"group", {{"name", "ag"}}}}, tok).body["group"]["id"];
  ASSERT_EQ(put("/v3/groups/" + group + "/users/" + user, tok).status, 204);
  ASSERT_EQ(
      put("/v3/projects/" + project + "/groups/" + group + "/roles/" + boot_.reader_role_id, tok)
          .status,
      204);
  grant(project, user, boot_.member_role_id);

  Reply direct = get("/v3/role_assignments?scope.project.id=" + project, tok);
  ASSERT_EQ(direct.status, 200) << direct;
  ASSERT_EQ(direct.body["role_assignments"].size(), 2u);
  for (const Json& a : direct.body["role_assignments"]) {
    EXPECT_EQ(a["scope"]["project"]["id"], project);
    EXPECT_TRUE(a.contains("user") || a.contains("group"));
    EXPECT_TRUE(a["links"].contains("assignment"));
  }
  Reply by_user = get("/v3/role_assignments?user.id=" + user, tok);
  ASSERT_EQ(by_user.body["role_assignments"].size(), 1u);
  EXPECT_EQ(by_user.body["role_assignments"][0]["role"]["id"], boot_.member_role_id);
  EXPECT_EQ(by_user.body["role_assignments"][0]["links"]["assignment"],
            "http://localhost:5000/identity/v3/projects/" + project + "/users/" + user + "/roles/" +
                boot_.member_role_id);

  // Effective: the group assignment becomes the user's, member implies reader.
  Reply eff = get("/v3/role_assignments?effective=true&user.id=" + user + "&include_names", tok);
  ASSERT_EQ(eff.status, 200);
  std::set<std::string> roles;
  bool via_group = false;
  for (const Json& a : eff.body["role_assignments"]) {
    roles.insert(a["role"]["name"].get<std::string>());
    EXPECT_EQ(a["user"]["id"], user);
    EXPECT_EQ(a["user"]["name"], "yuri");
    EXPECT_EQ(a["scope"]["project"]["domain"]["name"], "Default");
    if (a["links"].contains("membership")) via_group = true;
  }
  EXPECT_EQ(roles, (std::set<std::string>{"member", "reader"}));
  EXPECT_TRUE(via_group);
  Reply by_role = get("/v3/role_assignments?effective&role.id=" + boot_.reader_role_id +
                          "&scope.project.id=" + project,
                      tok);
  EXPECT_EQ(by_role.body["role_assignments"].size(), 2u);  // via group and via implication

  Reply system = get("/v3/role_assignments?scope.system=all", tok);
  ASSERT_EQ(system.body["role_assignments"].size(), 1u);
  EXPECT_EQ(system.body["role_assignments"][0]["scope"]["system"]["all"], true);

  EXPECT_EQ(get("/v3/role_assignments?user.id=a&group.id=b", tok).status, 400);
  EXPECT_EQ(get("/v3/role_assignments?scope.project.id=a&scope.domain.id=b", tok).status, 400);
  EXPECT_EQ(get("/v3/role_assignments?effective&group.id=" + group, tok).status, 400);
  EXPECT_EQ(get("/v3/role_assignments?include_subtree=1", tok).status, 400);

  std::string child =
      post("/v3/projects", {{"project", {{"name", "apc"}, {"parent_id", project}}}}, tok)
          .body["project"]["id"];
  grant(child, user, boot_.reader_role_id);
  Reply subtree =
      get("/v3/role_assignments?include_subtree=1&user.id=" + user + "&scope.project.id=" + project,
          tok);
  ASSERT_EQ(subtree.status, 200) << subtree;
  EXPECT_EQ(subtree.body["role_assignments"].size(), 2u);
}

// ---- catalog ----

TEST_F(ResourcesTest, Regions) {
  std::string tok = admin_token();
  Reply r = post("/v3/regions", {{"region", {{"description", "first"}}}}, tok);
  ASSERT_EQ(r.status, 201) << r;
  std::string parent = r.body["region"]["id"];
  EXPECT_TRUE(r.body["region"]["parent_region_id"].is_null());
  Reply with_id = call(Method::kPut, "/v3/regions/Region-Two",
                       R"({"region":{"parent_region_id":")" + parent + R"("}})", tok);
  ASSERT_EQ(with_id.status, 201) << with_id;
  EXPECT_EQ(with_id.body["region"]["id"], "Region-Two");
  EXPECT_EQ(with_id.body["region"]["description"], "");
  EXPECT_EQ(call(Method::kPut, "/v3/regions/Region-Two", R"({"region":{}})", tok).status, 409);
  EXPECT_EQ(
      post("/v3/regions", {{"region", {{"id", "r3"}, {"parent_region_id", "nope"}}}}, tok).status,
      404);
  Reply children = get("/v3/regions?parent_region_id=" + parent, tok);
  ASSERT_EQ(children.body["regions"].size(), 1u);
  EXPECT_EQ(children.body["regions"][0], with_id.body["region"]);
  // A cycle is refused.
  EXPECT_EQ(patch("/v3/regions/" + parent, {{"region", {{"parent_region_id", "Region-Two"}}}}, tok)
                .status,
            400);
  Reply upd = patch("/v3/regions/Region-Two", {{"region", {{"description", "second"}}}}, tok);
  ASSERT_EQ(upd.status, 200);
  EXPECT_EQ(get("/v3/regions/Region-Two", tok).body["region"]["description"], "second");
  // Regions with endpoints cannot go; the others take their children with them.
  std::string svc_id =
      post("/v3/services", {{"service", {{"type", "t"}}}}, tok).body["service"]["id"];
  std::string ep = post("/v3/endpoints",
                        {{"endpoint",
                          {{"service_id", svc_id},
                           {"interface", "public"},
                           {"url", "http://x"},
                           {"region_id", "Region-Two"}}}},
                        tok)
                       .body["endpoint"]["id"];
  EXPECT_EQ(del("/v3/regions/" + parent, tok).status, 403);
  EXPECT_EQ(del("/v3/endpoints/" + ep, tok).status, 204);
  EXPECT_EQ(del("/v3/regions/" + parent, tok).status, 204);
  EXPECT_EQ(get("/v3/regions/Region-Two", tok).status, 404);
}

TEST_F(ResourcesTest, ServicesAndEndpoints) {
  std::string tok = admin_token();
  Reply s = post("/v3/services",
                 {{"service", {{"type", "compute"}, {"name", "nova"}, {"description", "d"}}}}, tok);
  ASSERT_EQ(s.status, 201) << s;
  std::string sid = s.body["service"]["id"];
  EXPECT_EQ(s.body["service"]["name"], "nova");
  EXPECT_EQ(s.body["service"]["enabled"], true);
  EXPECT_EQ(get("/v3/services?type=compute", tok).body["services"].size(), 1u);
  EXPECT_EQ(get("/v3/services?name=nova", tok).body["services"].size(), 1u);
  Reply su = patch("/v3/services/" + sid, {{"service", {{"description", "d2"}}}}, tok);
  ASSERT_EQ(su.status, 200);
  EXPECT_EQ(su.body["service"]["description"], "d2");
  EXPECT_EQ(su.body["service"]["name"], "nova");
  EXPECT_EQ(post("/v3/services", {{"service", {{"name", "x"}}}}, tok).status, 400);

  Json ep = {{"service_id", sid},
             {"interface", "public"},
             {"url", "http://nova:8774/v2.1"},
             {"region", "brand-new"}};
  Reply e = post("/v3/endpoints", {{"endpoint", ep}}, tok);
  ASSERT_EQ(e.status, 201) << e;
  std::string eid = e.body["endpoint"]["id"];
  EXPECT_EQ(e.body["endpoint"]["region"], "brand-new");
  EXPECT_EQ(e.body["endpoint"]["region_id"], "brand-new");
  EXPECT_EQ(e.body["endpoint"]["enabled"], true);
  EXPECT_EQ(get("/v3/regions/brand-new", tok).status, 200);  // created for the legacy field

  Json bad = ep;
  bad.erase("region");
  bad["region_id"] = "missing";
  EXPECT_EQ(post("/v3/endpoints", {{"endpoint", bad}}, tok).status, 400);
  bad = ep;
  bad["service_id"] = "missing";
  EXPECT_EQ(post("/v3/endpoints", {{"endpoint", bad}}, tok).status, 400);
  bad = ep;
  bad["interface"] = "private";
  EXPECT_EQ(post("/v3/endpoints", {{"endpoint", bad}}, tok).status, 400);
  bad = ep;
  bad["enabled"] = "False";
  EXPECT_EQ(post("/v3/endpoints", {{"endpoint", bad}}, tok).status, 400);
  bad = ep;
  bad["url"] = "no-scheme";
  EXPECT_EQ(post("/v3/endpoints", {{"endpoint", bad}}, tok).status, 400);
  EXPECT_EQ(patch("/v3/endpoints/" + eid, {{"endpoint", {{"enabled", "True"}}}}, tok).status, 400);

  ep["interface"] = "internal";
  ep.erase("region");
  std::string eid2 = post("/v3/endpoints", {{"endpoint", ep}}, tok).body["endpoint"]["id"];
  EXPECT_EQ(
      ids_of(get("/v3/endpoints?interface=internal&service_id=" + sid, tok).body["endpoints"]),
      std::vector<std::string>{eid2});
  EXPECT_EQ(get("/v3/endpoints?service_id=" + sid, tok).body["endpoints"].size(), 2u);
  EXPECT_EQ(ids_of(get("/v3/endpoints?region_id=brand-new", tok).body["endpoints"]),
            std::vector<std::string>{eid});
  Reply upd =
      patch("/v3/endpoints/" + eid,
            {{"endpoint", {{"url", "http://n2"}, {"enabled", false}, {"region", "r9"}}}}, tok);
  ASSERT_EQ(upd.status, 200) << upd;
  EXPECT_EQ(upd.body["endpoint"]["url"], "http://n2");
  EXPECT_EQ(upd.body["endpoint"]["region"], "r9");
  EXPECT_EQ(get("/v3/endpoints/" + eid, tok).body["endpoint"], upd.body["endpoint"]);

  // Disabled endpoints leave the catalog; deleting the service takes its endpoints.
  Reply t = issue(password_auth("admin", "admin-secret", project_scope("admin")));
  for (const Json& svc : t.body["token"]["catalog"]) {
    if (svc["id"] == sid) {
      EXPECT_EQ(ids_of(svc["endpoints"]), std::vector<std::string>{eid2});
    }
  }
  EXPECT_EQ(del("/v3/services/" + sid, tok).status, 204);
  EXPECT_EQ(get("/v3/endpoints/" + eid2, tok).status, 404);
  EXPECT_EQ(get("/v3/services/" + sid, tok).status, 404);
  EXPECT_EQ(del("/v3/services/" + sid, tok).status, 404);
  EXPECT_EQ(del("/v3/endpoints/" + eid, tok).status, 404);
}

TEST_F(ResourcesTest, Ec2Credentials) {
  std::string role = create_role("ec2r");
  auto [user, project] = member_of_new_project("zed", role);
  std::string tok = token("zed", "zed-pw", "zed");
  std::string base = "/v3/users/" + user + "/credentials/OS-EC2";
  Reply created = post(base, {{"tenant_id", project}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  const Json& cred = created.body["credential"];
  EXPECT_EQ(cred["user_id"], user);
  EXPECT_EQ(cred["tenant_id"], project);
  EXPECT_FALSE(cred["access"].get<std::string>().empty());
  EXPECT_FALSE(cred["secret"].get<std::string>().empty());
  std::string access = cred["access"];
  Reply shown = get(base + "/" + access, tok);
  ASSERT_EQ(shown.status, 200);
  EXPECT_EQ(shown.body["credential"], cred);
  Reply list = get(base, tok);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body["credentials"].size(), 1u);
  EXPECT_EQ(post(base, {{"tenant_id", "missing"}}, tok).status, 404);
  EXPECT_EQ(post(base, Json::object(), tok).status, 400);
  EXPECT_EQ(get("/v3/users/" + boot_.admin_user_id + "/credentials/OS-EC2", tok).status, 403);
  EXPECT_EQ(del(base + "/" + access, tok).status, 204);
  EXPECT_EQ(get(base + "/" + access, tok).status, 404);
  EXPECT_EQ(del(base + "/" + access, tok).status, 404);
}

}  // namespace
}  // namespace concord::identity::testing

// OS-INHERIT: grants on a domain or project that apply to the projects below it, in the grant
// API, in GET /v3/role_assignments (stored and effective views) and in token roles.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "identity_test_util.h"

namespace concord::identity::testing {
namespace {

using http::Method;

class InheritTest : public IdentityTest {
 protected:
  void SetUp() override {
    IdentityTest::SetUp();
    tok_ = admin_token();
    domain_ =
        post("/v3/domains", {{"domain", {{"name", "inh-domain"}}}}, tok_).body["domain"]["id"];
    top_ = create_project("inh-top", {{"domain_id", domain_}});
    leaf_ = create_project("inh-leaf", {{"domain_id", domain_}, {"parent_id", top_}});
    user_ = create_user("inh-user", "inh-pw", {{"domain_id", domain_}});
    role_ = create_role("inh-role");
  }

  std::string inherit_path(const std::string& target, const std::string& actor) const {
    return "/v3/OS-INHERIT/" + target + "/" + actor + "/roles/" + role_ + "/inherited_to_projects";
  }
  Json effective(const std::string& project) const {
    Reply r = get(
        "/v3/role_assignments?effective&user.id=" + user_ + "&scope.project.id=" + project, tok_);
    EXPECT_EQ(r.status, 200) << r;
    return r.body["role_assignments"];
  }
  // Roles of a token for the user scoped to `project`; empty when the login is refused.
  std::vector<std::string> token_roles(const std::string& project) const {
    Json body = {{"auth",
                  {{"identity",
                    {{"methods", {"password"}},
                     {"password", {{"user", {{"id", user_}, {"password", "inh-pw"}}}}}}},
                   {"scope", {{"project", {{"id", project}}}}}}}};
    Reply r = issue(body);
    std::vector<std::string> out;
    if (r.status != 201) return out;
    for (const Json& role : r.body["token"]["roles"]) out.push_back(role["name"]);
    return out;
  }

  std::string tok_, domain_, top_, leaf_, user_, role_;
};

TEST_F(InheritTest, DomainGrantAppliesToEveryProjectButNotTheDomain) {
  std::string path = inherit_path("domains/" + domain_, "users/" + user_);
  EXPECT_EQ(call(Method::kHead, path, "", tok_).status, 404);
  ASSERT_EQ(put(path, tok_).status, 204);
  EXPECT_EQ(call(Method::kHead, path, "", tok_).status, 204);
  EXPECT_EQ(get(path, tok_).status, 204);

  Reply list =
      get("/v3/OS-INHERIT/domains/" + domain_ + "/users/" + user_ + "/roles/inherited_to_projects",
          tok_);
  ASSERT_EQ(list.status, 200) << list;
  ASSERT_EQ(list.body["roles"].size(), 1u);
  EXPECT_EQ(list.body["roles"][0]["id"], role_);
  // Not a direct grant on the domain.
  EXPECT_EQ(get("/v3/domains/" + domain_ + "/users/" + user_ + "/roles", tok_).body["roles"].size(),
            0u);
  EXPECT_EQ(call(Method::kHead, "/v3/domains/" + domain_ + "/users/" + user_ + "/roles/" + role_,
                 "", tok_)
                .status,
            404);

  for (const std::string& project : {top_, leaf_}) {
    Json items = effective(project);
    ASSERT_EQ(items.size(), 1u) << project;
    EXPECT_EQ(items[0]["scope"]["project"]["id"], project);
    EXPECT_EQ(items[0]["role"]["id"], role_);
    EXPECT_EQ(items[0]["links"]["assignment"],
              "http://localhost:5000/identity/v3/OS-INHERIT/domains/" + domain_ + "/users/" +
                  user_ + "/roles/" + role_ + "/inherited_to_projects");
    EXPECT_EQ(token_roles(project), std::vector<std::string>{"inh-role"}) << project;
  }
  // The stored view shows the grant on the domain, flagged.
  Reply stored = get("/v3/role_assignments?user.id=" + user_, tok_);
  ASSERT_EQ(stored.body["role_assignments"].size(), 1u);
  const Json& a = stored.body["role_assignments"][0];
  EXPECT_EQ(a["scope"]["domain"]["id"], domain_);
  EXPECT_EQ(a["scope"]["OS-INHERIT:inherited_to"], "projects");
  // The effective view without a scope lands it on both projects, not on the domain.
  Reply all = get("/v3/role_assignments?effective&user.id=" + user_, tok_);
  ASSERT_EQ(all.body["role_assignments"].size(), 2u) << all;
  for (const Json& item : all.body["role_assignments"]) {
    EXPECT_TRUE(item["scope"].contains("project")) << item;
  }

  ASSERT_EQ(del(path, tok_).status, 204);
  EXPECT_EQ(del(path, tok_).status, 404);
  EXPECT_EQ(effective(top_).size(), 0u);
  EXPECT_EQ(effective(leaf_).size(), 0u);
  EXPECT_TRUE(token_roles(leaf_).empty());
}

TEST_F(InheritTest, ProjectGrantAppliesToTheSubtreeOnly) {
  std::string path = inherit_path("projects/" + top_, "users/" + user_);
  ASSERT_EQ(put(path, tok_).status, 204);
  EXPECT_EQ(call(Method::kHead, path, "", tok_).status, 204);
  EXPECT_EQ(effective(top_).size(), 0u);  // not the project itself
  Json items = effective(leaf_);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0]["links"]["assignment"],
            "http://localhost:5000/identity/v3/OS-INHERIT/projects/" + top_ + "/users/" + user_ +
                "/roles/" + role_ + "/inherited_to_projects");
  EXPECT_EQ(token_roles(leaf_), std::vector<std::string>{"inh-role"});
  EXPECT_TRUE(token_roles(top_).empty());
  // A project created below later inherits too.
  std::string deeper = create_project("inh-deeper", {{"domain_id", domain_}, {"parent_id", leaf_}});
  EXPECT_EQ(effective(deeper).size(), 1u);
  ASSERT_EQ(del(path, tok_).status, 204);
  EXPECT_EQ(effective(leaf_).size(), 0u);
  EXPECT_EQ(effective(deeper).size(), 0u);
}

TEST_F(InheritTest, GroupGrantsReachMembers) {
  std::string group =
      post("/v3/groups", {{"group", {{"name", "inh-group"}, {"domain_id", domain_}}}}, tok_)
          .body["group"]["id"];
  ASSERT_EQ(put("/v3/groups/" + group + "/users/" + user_, tok_).status, 204);
  std::string on_domain = inherit_path("domains/" + domain_, "groups/" + group);
  std::string on_project = inherit_path("projects/" + top_, "groups/" + group);
  ASSERT_EQ(put(on_domain, tok_).status, 204);
  ASSERT_EQ(put(on_project, tok_).status, 204);
  EXPECT_EQ(call(Method::kHead, on_project, "", tok_).status, 204);
  Reply list =
      get("/v3/OS-INHERIT/domains/" + domain_ + "/groups/" + group + "/roles/inherited_to_projects",
          tok_);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body["roles"].size(), 1u);
  Json items = effective(leaf_);
  EXPECT_EQ(items.size(), 2u);  // from the domain and from the parent, both via the group
  for (const Json& item : items) {
    EXPECT_EQ(item["links"]["membership"],
              "http://localhost:5000/identity/v3/groups/" + group + "/users/" + user_);
  }
  EXPECT_EQ(token_roles(leaf_), std::vector<std::string>{"inh-role"});
  ASSERT_EQ(del(on_domain, tok_).status, 204);
  ASSERT_EQ(del(on_project, tok_).status, 204);
  EXPECT_TRUE(token_roles(leaf_).empty());
}

std::vector<std::string> ids_of(const Json& projects) {
  std::vector<std::string> out;
  for (const Json& p : projects) out.push_back(p["id"]);
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(InheritTest, InheritedProjectsAreListedForTheUser) {
  EXPECT_TRUE(ids_of(get("/v3/users/" + user_ + "/projects", tok_).body["projects"]).empty());
  ASSERT_EQ(put(inherit_path("projects/" + top_, "users/" + user_), tok_).status, 204);
  EXPECT_EQ(ids_of(get("/v3/users/" + user_ + "/projects", tok_).body["projects"]),
            std::vector<std::string>{leaf_});
  ASSERT_EQ(put(inherit_path("domains/" + domain_, "users/" + user_), tok_).status, 204);
  std::vector<std::string> both = {top_, leaf_};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(ids_of(get("/v3/users/" + user_ + "/projects", tok_).body["projects"]), both);
  // The user's own view: a token scoped to the leaf lists both projects.
  Json body = {{"auth",
                {{"identity",
                  {{"methods", {"password"}},
                   {"password", {{"user", {{"id", user_}, {"password", "inh-pw"}}}}}}},
                 {"scope", {{"project", {{"id", leaf_}}}}}}}};
  Reply login = issue(body);
  ASSERT_EQ(login.status, 201) << login;
  Reply mine = get("/v3/auth/projects", login.header("x-subject-token"));
  ASSERT_EQ(mine.status, 200) << mine;
  EXPECT_EQ(ids_of(mine.body["projects"]), both);
}

TEST_F(InheritTest, UnknownPartsAre404AndDeletingTheTargetRemovesGrants) {
  EXPECT_EQ(put(inherit_path("domains/nope", "users/" + user_), tok_).status, 404);
  EXPECT_EQ(put(inherit_path("projects/nope", "users/" + user_), tok_).status, 404);
  EXPECT_EQ(put(inherit_path("domains/" + domain_, "users/nope"), tok_).status, 404);
  EXPECT_EQ(put("/v3/OS-INHERIT/domains/" + domain_ + "/users/" + user_ +
                    "/roles/nope/inherited_to_projects",
                tok_)
                .status,
            404);
  // A project is not a domain here.
  EXPECT_EQ(put(inherit_path("domains/" + top_, "users/" + user_), tok_).status, 404);

  ASSERT_EQ(put(inherit_path("projects/" + top_, "users/" + user_), tok_).status, 204);
  ASSERT_EQ(del("/v3/projects/" + leaf_, tok_).status, 204);
  ASSERT_EQ(del("/v3/projects/" + top_, tok_).status, 204);
  Reply stored = get("/v3/role_assignments?user.id=" + user_, tok_);
  EXPECT_EQ(stored.body["role_assignments"].size(), 0u) << stored;
}

TEST_F(InheritTest, NonAdminsAreRefused) {
  std::string member = create_role("inh-member");
  auto [user, project] = member_of_new_project("inh-other", member);
  std::string tok = token("inh-other", "inh-other-pw", "inh-other");
  std::string path = inherit_path("projects/" + project, "users/" + user);
  EXPECT_EQ(put(path, tok).status, 403);
  EXPECT_EQ(put(path, "").status, 401);
}

}  // namespace
}  // namespace concord::identity::testing

// Token issue, validation, rescoping, scopes, application credentials, revocation, expiry,
// key rotation and login throttling, through the HTTP API.
#include <nlohmann/json.hpp>

#include "base/time_format.h"
#include "identity_test_util.h"

namespace concord::identity::testing {
namespace {

using http::Method;

class AuthTest : public IdentityTest {};

TEST_F(AuthTest, VersionDiscovery) {
  Reply root = get("/", "");
  EXPECT_EQ(root.status, 300) << root;
  EXPECT_EQ(root.header("location"), "http://localhost:5000/identity/v3/");
  const Json& v = root.body["versions"]["values"][0];
  EXPECT_EQ(v["id"], "v3.14");
  EXPECT_EQ(v["status"], "stable");
  EXPECT_EQ(v["links"][0]["href"], "http://localhost:5000/identity/v3/");
  EXPECT_EQ(v["media-types"][0]["type"], "application/vnd.openstack.identity-v3+json");

  Reply v3 = get("/v3", "");
  EXPECT_EQ(v3.status, 200) << v3;
  EXPECT_EQ(v3.body["version"], v);
  EXPECT_EQ(get("/v3/", "").status, 200);
}

TEST_F(AuthTest, PasswordProjectScopedTokenHasKeystoneShape) {
  Reply r = issue(password_auth("admin", "admin-secret", project_scope("admin")));
  ASSERT_EQ(r.status, 201) << r;
  EXPECT_FALSE(r.header("x-subject-token").empty());
  const Json& t = r.body["token"];
  EXPECT_EQ(t["methods"], Json({"password"}));
  EXPECT_EQ(t["user"]["id"], boot_.admin_user_id);
  EXPECT_EQ(t["user"]["name"], "admin");
  EXPECT_EQ(t["user"]["domain"], Json({{"id", "default"}, {"name", "Default"}}));
  EXPECT_TRUE(t["user"]["password_expires_at"].is_null());
  EXPECT_EQ(t["audit_ids"].size(), 1u);
  EXPECT_EQ(t["expires_at"], format_keystone_time(clock_.now() + std::chrono::hours(1)));
  EXPECT_EQ(t["issued_at"], format_keystone_time(clock_.now()));
  EXPECT_EQ(t["project"]["id"], boot_.admin_project_id);
  EXPECT_EQ(t["project"]["name"], "admin");
  EXPECT_EQ(t["project"]["domain"], Json({{"id", "default"}, {"name", "Default"}}));
  EXPECT_EQ(t["is_domain"], false);
  // admin implies member implies reader.
  std::vector<std::string> roles;
  for (const Json& role : t["roles"]) roles.push_back(role["name"]);
  EXPECT_EQ(roles, (std::vector<std::string>{"admin", "member", "reader"}));
  // The catalog holds the identity service with three interfaces, region and region_id.
  ASSERT_EQ(t["catalog"].size(), 1u);
  const Json& svc = t["catalog"][0];
  EXPECT_EQ(svc["type"], "identity");
  EXPECT_EQ(svc["name"], "keystone");
  ASSERT_EQ(svc["endpoints"].size(), 3u);
  for (const Json& ep : svc["endpoints"]) {
    EXPECT_EQ(ep["url"], "http://localhost:5000/identity/v3");
    EXPECT_EQ(ep["region"], "RegionOne");
    EXPECT_EQ(ep["region_id"], "RegionOne");
    EXPECT_TRUE(ep.contains("id"));
  }
}

TEST_F(AuthTest, ValidateReturnsTheIssueBodyAndHeadAndDeleteWork) {
  std::string role = create_role("observer");
  auto [user, project] = member_of_new_project("alice", role);
  Reply issued = issue(password_auth("alice", "alice-pw", project_scope("alice")));
  ASSERT_EQ(issued.status, 201) << issued;
  std::string tok = issued.header("x-subject-token");

  clock_.advance(std::chrono::minutes(5));
  Reply shown = call(Method::kGet, "/v3/auth/tokens", "", tok, {{"x-subject-token", tok}});
  ASSERT_EQ(shown.status, 200) << shown;
  EXPECT_EQ(shown.body, issued.body);
  EXPECT_EQ(shown.header("x-subject-token"), tok);

  // An admin may validate it too.
  Reply by_admin =
      call(Method::kGet, "/v3/auth/tokens", "", admin_token(), {{"x-subject-token", tok}});
  EXPECT_EQ(by_admin.status, 200) << by_admin;
  EXPECT_EQ(by_admin.body, issued.body);

  Reply nocatalog =
      call(Method::kGet, "/v3/auth/tokens?nocatalog", "", tok, {{"x-subject-token", tok}});
  EXPECT_EQ(nocatalog.status, 200);
  EXPECT_FALSE(nocatalog.body["token"].contains("catalog"));

  EXPECT_EQ(call(Method::kHead, "/v3/auth/tokens", "", tok, {{"x-subject-token", tok}}).status,
            200);
  EXPECT_EQ(call(Method::kDelete, "/v3/auth/tokens", "", tok, {{"x-subject-token", tok}}).status,
            204);
  Reply after =
      call(Method::kGet, "/v3/auth/tokens", "", admin_token(), {{"x-subject-token", tok}});
  EXPECT_EQ(after.status, 404) << after;
  EXPECT_EQ(after.body["error"]["code"], 404);
  EXPECT_EQ(
      call(Method::kHead, "/v3/auth/tokens", "", admin_token(), {{"x-subject-token", tok}}).status,
      404);
  // The revoked token no longer authenticates anything.
  EXPECT_EQ(get("/v3/auth/catalog", tok).status, 401);
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
}

TEST_F(AuthTest, NamesNeedingEscapesSurviveTheTextRenderedTokenBody) {
  std::string name = "we\"ird\\ na\tme \u00fc\u540d \U0001F642 \x01";
  std::string role = create_role("quote\"role");
  std::string project = create_project(name);
  std::string user = create_user(name, "pw");
  grant(project, user, role);
  Json auth = {
      {"auth",
       {{"identity",
         {{"methods", {"password"}}, {"password", {{"user", {{"id", user}, {"password", "pw"}}}}}}},
        {"scope", {{"project", {{"id", project}}}}}}}};
  Reply r = issue(auth);
  ASSERT_EQ(r.status, 201) << r;
  EXPECT_EQ(r.body["token"]["user"]["name"], name);
  EXPECT_EQ(r.body["token"]["project"]["name"], name);
  ASSERT_EQ(r.body["token"]["roles"].size(), 1u);
  EXPECT_EQ(r.body["token"]["roles"][0]["name"], "quote\"role");
  // The text renderer writes what nlohmann would.
  EXPECT_EQ(r.raw.body, dump_json(r.body));
}

TEST_F(AuthTest, TamperedOrGarbageSubjectTokenIs404AndBadAuthTokenIs401) {
  std::string tok = admin_token();
  std::string tampered = tok;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_EQ(call(Method::kGet, "/v3/auth/tokens", "", tok, {{"x-subject-token", tampered}}).status,
            404);
  EXPECT_EQ(
      call(Method::kGet, "/v3/auth/tokens", "", tok, {{"x-subject-token", "not-a-token"}}).status,
      404);
  EXPECT_EQ(call(Method::kGet, "/v3/auth/tokens", "", tok).status, 404);
  Reply bad = call(Method::kGet, "/v3/auth/tokens", "", tampered, {{"x-subject-token", tok}});
  EXPECT_EQ(bad.status, 401) << bad;
  EXPECT_EQ(bad.body, Json::parse(R"({"error":{"code":401,"title":"Unauthorized",
      "message":"The request you have made requires authentication."}})"));
  EXPECT_EQ(bad.header("www-authenticate"), "Keystone uri=\"http://localhost:5000/identity\"");
  EXPECT_EQ(get("/v3/projects", "").status, 401);
}

TEST_F(AuthTest, UnscopedTokenHasNoRolesNorCatalog) {
  std::string user = create_user("bob", "bob-pw");
  Json body = {{"auth",
                {{"identity",
                  {{"methods", {"password"}},
                   {"password", {{"user", {{"id", user}, {"password", "bob-pw"}}}}}}}}}};
  Reply r = issue(body);
  ASSERT_EQ(r.status, 201) << r;
  const Json& t = r.body["token"];
  EXPECT_EQ(t["user"]["id"], user);
  EXPECT_FALSE(t.contains("roles"));
  EXPECT_FALSE(t.contains("catalog"));
  EXPECT_FALSE(t.contains("project"));
  EXPECT_GT(t["expires_at"].get<std::string>(), t["issued_at"].get<std::string>());
  // Unscoped tokens may not read the catalog.
  EXPECT_EQ(get("/v3/auth/catalog", r.header("x-subject-token")).status, 403);
}

TEST_F(AuthTest, DefaultProjectScopesUnscopedRequestsWhenTheUserHasARole) {
  std::string project = create_project("home");
  std::string user = create_user("carol", "carol-pw", {{"default_project_id", project}});
  // No role yet: unscoped.
  Reply r1 = issue(password_auth("carol", "carol-pw"));
  ASSERT_EQ(r1.status, 201) << r1;
  EXPECT_FALSE(r1.body["token"].contains("project"));
  grant(project, user, boot_.member_role_id);
  Reply r2 = issue(password_auth("carol", "carol-pw"));
  ASSERT_EQ(r2.status, 201) << r2;
  EXPECT_EQ(r2.body["token"]["project"]["id"], project);
  // An explicit "unscoped" scope wins over the default project.
  Reply r3 = issue(password_auth("carol", "carol-pw", "unscoped"));
  ASSERT_EQ(r3.status, 201) << r3;
  EXPECT_FALSE(r3.body["token"].contains("project"));
}

TEST_F(AuthTest, ProjectScopeByIdAndByDomainNameAndNoRoleIs401) {
  std::string role = create_role("worker");
  auto [user, project] = member_of_new_project("dave", role);
  std::string other = create_project("elsewhere");
  Json by_id = password_auth("dave", "dave-pw", {{"project", {{"id", project}}}});
  EXPECT_EQ(issue(by_id).status, 201);
  Json by_domain_name = password_auth(
      "dave", "dave-pw", {{"project", {{"name", "dave"}, {"domain", {{"name", "Default"}}}}}});
  EXPECT_EQ(issue(by_domain_name).status, 201);
  Reply no_role = issue(password_auth("dave", "dave-pw", {{"project", {{"id", other}}}}));
  EXPECT_EQ(no_role.status, 401) << no_role;
  EXPECT_EQ(no_role.body["error"]["title"], "Unauthorized");
  EXPECT_EQ(issue(password_auth("dave", "dave-pw", {{"project", {{"id", "missing"}}}})).status,
            401);
}

TEST_F(AuthTest, WrongCredentialsAreUniformly401) {
  create_user("erin", "erin-pw");
  EXPECT_EQ(issue(password_auth("erin", "wrong")).status, 401);
  EXPECT_EQ(issue(password_auth("nobody", "erin-pw")).status, 401);
  Json wrong_domain = {
      {"auth",
       {{"identity",
         {{"methods", {"password"}},
          {"password",
           {{"user",
             {{"name", "erin"}, {"domain", {{"id", "nope"}}}, {"password", "erin-pw"}}}}}}}}}};
  EXPECT_EQ(issue(wrong_domain).status, 401);
}

TEST_F(AuthTest, DisabledUserProjectOrDomainRefusesLoginAndRevokesTokens) {
  std::string role = create_role("r1");
  auto [user, project] = member_of_new_project("frank", role);
  std::string tok = token("frank", "frank-pw", "frank");
  ASSERT_EQ(get("/v3/auth/catalog", tok).status, 200);

  // Disabling the project kills the token and project-scoped logins.
  clock_.advance(std::chrono::seconds(1));
  ASSERT_EQ(
      patch("/v3/projects/" + project, {{"project", {{"enabled", false}}}}, admin_token()).status,
      200);
  EXPECT_EQ(get("/v3/auth/catalog", tok).status, 401);
  EXPECT_EQ(issue(password_auth("frank", "frank-pw", project_scope("frank"))).status, 401);
  // Re-enabling does not resurrect the old token (it was revoked), but new logins work.
  clock_.advance(std::chrono::seconds(1));
  ASSERT_EQ(
      patch("/v3/projects/" + project, {{"project", {{"enabled", true}}}}, admin_token()).status,
      200);
  EXPECT_EQ(get("/v3/auth/catalog", tok).status, 401);
  std::string tok2 = token("frank", "frank-pw", "frank");
  EXPECT_EQ(get("/v3/auth/catalog", tok2).status, 200);

  // Disabling the user.
  clock_.advance(std::chrono::seconds(1));
  ASSERT_EQ(patch("/v3/users/" + user, {{"user", {{"enabled", false}}}}, admin_token()).status,
            200);
  EXPECT_EQ(get("/v3/auth/catalog", tok2).status, 401);
  EXPECT_EQ(issue(password_auth("frank", "frank-pw")).status, 401);
}

TEST_F(AuthTest, DisabledDomainRevokesItsUsersTokens) {
  Reply d = post("/v3/domains", {{"domain", {{"name", "acme"}}}}, admin_token());
  ASSERT_EQ(d.status, 201) << d;
  std::string domain = d.body["domain"]["id"];
  Reply u = post("/v3/users",
                 {{"user", {{"name", "gina"}, {"password", "gina-pw"}, {"domain_id", domain}}}},
                 admin_token());
  ASSERT_EQ(u.status, 201) << u;
  Json auth = {
      {"auth",
       {{"identity",
         {{"methods", {"password"}},
          {"password",
           {{"user",
             {{"name", "gina"}, {"domain", {{"name", "acme"}}}, {"password", "gina-pw"}}}}}}}}}};
  Reply t = issue(auth);
  ASSERT_EQ(t.status, 201) << t;
  std::string tok = t.header("x-subject-token");
  EXPECT_TRUE(svc().authenticate(tok).has_value());
  clock_.advance(std::chrono::seconds(1));
  ASSERT_EQ(
      patch("/v3/domains/" + domain, {{"domain", {{"enabled", false}}}}, admin_token()).status,
      200);
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
  EXPECT_EQ(issue(auth).status, 401);
}

TEST_F(AuthTest, RescopeKeepsExpiryAndUserAndChainsAuditIds) {
  std::string role = create_role("r2");
  auto [user, project] = member_of_new_project("hank", role);
  std::string project2 = create_project("hank2");
  grant(project2, user, role);
  Reply unscoped = issue(password_auth("hank", "hank-pw"));
  ASSERT_EQ(unscoped.status, 201);
  std::string tok = unscoped.header("x-subject-token");
  clock_.advance(std::chrono::minutes(10));
  Json rescope = {{"auth",
                   {{"identity", {{"methods", {"token"}}, {"token", {{"id", tok}}}}},
                    {"scope", project_scope("hank")}}}};
  Reply scoped = issue(rescope);
  ASSERT_EQ(scoped.status, 201) << scoped;
  const Json& t = scoped.body["token"];
  EXPECT_EQ(t["expires_at"], unscoped.body["token"]["expires_at"]);
  EXPECT_EQ(t["user"], unscoped.body["token"]["user"]);
  EXPECT_EQ(t["methods"], Json({"password", "token"}));
  EXPECT_EQ(t["project"]["id"], project);
  ASSERT_EQ(t["audit_ids"].size(), 2u);
  EXPECT_EQ(t["audit_ids"][1], unscoped.body["token"]["audit_ids"][0]);
  EXPECT_EQ(t["roles"].size(), 1u);
  EXPECT_EQ(t["roles"][0]["id"], role);

  // Revoking the scoped token leaves the original usable for another project.
  std::string scoped_tok = scoped.header("x-subject-token");
  ASSERT_EQ(
      call(Method::kDelete, "/v3/auth/tokens", "", admin_token(), {{"x-subject-token", scoped_tok}})
          .status,
      204);
  rescope["auth"]["scope"] = project_scope("hank2");
  Reply other = issue(rescope);
  EXPECT_EQ(other.status, 201) << other;
  // Rescoping a revoked token answers 404 as Keystone does.
  rescope["auth"]["identity"]["token"]["id"] = scoped_tok;
  EXPECT_EQ(issue(rescope).status, 404);
}

TEST_F(AuthTest, SystemAndDomainScopes) {
  Reply sys = issue(password_auth("admin", "admin-secret", {{"system", {{"all", true}}}}));
  ASSERT_EQ(sys.status, 201) << sys;
  EXPECT_EQ(sys.body["token"]["system"], Json({{"all", true}}));
  EXPECT_FALSE(sys.body["token"]["roles"].empty());
  EXPECT_TRUE(sys.body["token"].contains("catalog"));

  // No domain role yet: 401; with one: a domain token.
  Reply none = issue(password_auth("admin", "admin-secret", {{"domain", {{"id", "default"}}}}));
  EXPECT_EQ(none.status, 401);
  ASSERT_EQ(
      put("/v3/domains/default/users/" + boot_.admin_user_id + "/roles/" + boot_.reader_role_id,
          admin_token())
          .status,
      204);
  Reply dom = issue(password_auth("admin", "admin-secret", {{"domain", {{"name", "Default"}}}}));
  ASSERT_EQ(dom.status, 201) << dom;
  EXPECT_EQ(dom.body["token"]["domain"], Json({{"id", "default"}, {"name", "Default"}}));
  EXPECT_EQ(dom.body["token"]["roles"],
            Json::parse(R"([{"id":")" + boot_.reader_role_id + R"(","name":"reader"}])"));
  // A plain user has no system role.
  create_user("ivan", "ivan-pw");
  EXPECT_EQ(issue(password_auth("ivan", "ivan-pw", {{"system", {{"all", true}}}})).status, 401);
}

TEST_F(AuthTest, ExpiredTokensAreRejected) {
  std::string tok = admin_token();
  std::string viewer = token("admin", "admin-secret", "admin");
  clock_.advance(std::chrono::seconds(3599));
  EXPECT_TRUE(svc().authenticate(tok).has_value());
  clock_.advance(std::chrono::seconds(2));
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
  EXPECT_EQ(get("/v3/projects", tok).status, 401);
}

TEST_F(AuthTest, KeyRotationKeepsIssuedTokensValid) {
  std::string tok = admin_token();
  ASSERT_OK(svc().rotate_keys());
  EXPECT_TRUE(svc().authenticate(tok).has_value());
  std::string fresh = token("admin", "admin-secret", "admin");
  ASSERT_OK(svc().rotate_keys());
  EXPECT_TRUE(svc().authenticate(fresh).has_value());
  // With max_active_keys = 3 (staged, primary, one secondary) the key of the first token has
  // now been pruned, as in Keystone: a token survives one rotation.
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
}

TEST_F(AuthTest, PasswordChangeRevokesTokensAndOldPassword) {
  std::string role = create_role("r3");
  auto [user, project] = member_of_new_project("judy", role);
  std::string tok = token("judy", "judy-pw", "judy");
  clock_.advance(std::chrono::seconds(1));
  Json change = {{"user", {{"original_password", "wrong"}, {"password", "new-pw"}}}};
  EXPECT_EQ(post("/v3/users/" + user + "/password", change, tok).status, 401);
  change["user"]["original_password"] = "judy-pw";
  Reply r = post("/v3/users/" + user + "/password", change, tok);
  ASSERT_EQ(r.status, 204) << r;
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
  EXPECT_EQ(issue(password_auth("judy", "judy-pw")).status, 401);
  // A login right after the change (same clock tick) gets a working token.
  std::string fresh = token("judy", "new-pw", "judy");
  EXPECT_TRUE(svc().authenticate(fresh).has_value());
  // Another user's password cannot be changed by a non-admin.
  EXPECT_EQ(post("/v3/users/" + boot_.admin_user_id + "/password", change, fresh).status, 403);
}

TEST_F(AuthTest, AdminPasswordResetAndUserDeleteRevoke) {
  std::string role = create_role("r4");
  auto [user, project] = member_of_new_project("kim", role);
  std::string tok = token("kim", "kim-pw", "kim");
  clock_.advance(std::chrono::seconds(1));
  ASSERT_EQ(
      patch("/v3/users/" + user, {{"user", {{"password", "reset-pw"}}}}, admin_token()).status,
      200);
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
  std::string tok2 = token("kim", "reset-pw", "kim");
  ASSERT_TRUE(svc().authenticate(tok2).has_value());
  ASSERT_EQ(del("/v3/users/" + user, admin_token()).status, 204);
  EXPECT_CODE(svc().authenticate(tok2), Code::kUnauthenticated);
}

TEST_F(AuthTest, RoleRemovalTakesEffectImmediately) {
  std::string r1 = create_role("alpha");
  std::string r2 = create_role("beta");
  auto [user, project] = member_of_new_project("leo", r1);
  grant(project, user, r2);
  std::string tok = token("leo", "leo-pw", "leo");
  auto ctx = svc().authenticate(tok);
  ASSERT_TRUE(ctx.has_value());
  EXPECT_EQ(ctx->roles.size(), 2u);
  ASSERT_EQ(
      del("/v3/projects/" + project + "/users/" + user + "/roles/" + r2, admin_token()).status,
      204);
  ctx = svc().authenticate(tok);
  ASSERT_TRUE(ctx.has_value());
  ASSERT_EQ(ctx->roles.size(), 1u);
  EXPECT_EQ(ctx->roles[0].name, "alpha");
  ASSERT_EQ(
      del("/v3/projects/" + project + "/users/" + user + "/roles/" + r1, admin_token()).status,
      204);
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
  EXPECT_EQ(
      call(Method::kGet, "/v3/auth/tokens", "", admin_token(), {{"x-subject-token", tok}}).status,
      404);
}

TEST_F(AuthTest, GroupRolesAndImpliedRolesReachTheToken) {
  std::string project = create_project("shared");
  std::string user = create_user("mia", "mia-pw");
  Reply g = post("/v3/groups", {{"group", {{"name", "team"}}}}, admin_token());
  ASSERT_EQ(g.status, 201) << g;
  std::string group = g.body["group"]["id"];
  ASSERT_EQ(put("/v3/groups/" + group + "/users/" + user, admin_token()).status, 204);
  ASSERT_EQ(put("/v3/projects/" + project + "/groups/" + group + "/roles/" + boot_.member_role_id,
                admin_token())
                .status,
            204);
  Reply t = issue(password_auth("mia", "mia-pw", project_scope("shared")));
  ASSERT_EQ(t.status, 201) << t;
  std::vector<std::string> names;
  for (const Json& r : t.body["token"]["roles"]) names.push_back(r["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"member", "reader"}));
  // Leaving the group removes the roles: the token stops validating.
  std::string tok = t.header("x-subject-token");
  ASSERT_EQ(del("/v3/groups/" + group + "/users/" + user, admin_token()).status, 204);
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
}

TEST_F(AuthTest, ApplicationCredentialLifecycle) {
  std::string role = create_role("r5");
  auto [user, project] = member_of_new_project("nina", role);
  std::string tok = token("nina", "nina-pw", "nina");
  Reply created =
      post("/v3/users/" + user + "/application_credentials",
           {{"application_credential", {{"name", "ci"}, {"unrestricted", false}}}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  const Json& ac = created.body["application_credential"];
  std::string id = ac["id"];
  std::string secret = ac["secret"];
  EXPECT_EQ(ac["project_id"], project);
  EXPECT_EQ(ac["unrestricted"], false);
  EXPECT_TRUE(ac["expires_at"].is_null());
  ASSERT_EQ(ac["roles"].size(), 1u);
  EXPECT_EQ(ac["roles"][0]["id"], role);

  Reply shown = get("/v3/users/" + user + "/application_credentials/" + id, tok);
  ASSERT_EQ(shown.status, 200);
  EXPECT_FALSE(shown.body["application_credential"].contains("secret"));

  Json auth = {{"auth",
                {{"identity",
                  {{"methods", {"application_credential"}},
                   {"application_credential", {{"id", id}, {"secret", secret}}}}}}}};
  Reply t = issue(auth);
  ASSERT_EQ(t.status, 201) << t;
  EXPECT_EQ(t.body["token"]["project"]["id"], project);
  EXPECT_EQ(t.body["token"]["methods"], Json({"application_credential"}));
  EXPECT_EQ(t.body["token"]["application_credential"],
            Json({{"id", id}, {"name", "ci"}, {"restricted", true}}));
  std::string ac_token = t.header("x-subject-token");
  Reply validated = call(Method::kGet, "/v3/auth/tokens", "", tok, {{"x-subject-token", ac_token}});
  EXPECT_EQ(validated.body, t.body);

  // By name + user.
  Json by_name = {{"auth",
                   {{"identity",
                     {{"methods", {"application_credential"}},
                      {"application_credential",
                       {{"name", "ci"}, {"secret", secret}, {"user", {{"id", user}}}}}}}}}};
  EXPECT_EQ(issue(by_name).status, 201);
  // Wrong secret, scope requests and restricted management are refused.
  auth["auth"]["identity"]["application_credential"]["secret"] = "nope";
  EXPECT_EQ(issue(auth).status, 401);
  auth["auth"]["identity"]["application_credential"]["secret"] = secret;
  Json scoped = auth;
  scoped["auth"]["scope"] = project_scope("nina");
  EXPECT_EQ(issue(scoped).status, 401);
  EXPECT_EQ(post("/v3/users/" + user + "/application_credentials",
                 {{"application_credential", {{"name", "more"}}}}, ac_token)
                .status,
            403);
  // Rescoping an application credential token is refused.
  Json rescope = {
      {"auth", {{"identity", {{"methods", {"token"}}, {"token", {{"id", ac_token}}}}}}}};
  EXPECT_EQ(issue(rescope).status, 403);

  // Duplicate name, list and filter.
  EXPECT_EQ(post("/v3/users/" + user + "/application_credentials",
                 {{"application_credential", {{"name", "ci"}}}}, tok)
                .status,
            409);
  Reply list = get("/v3/users/" + user + "/application_credentials?name=ci", tok);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body["application_credentials"].size(), 1u);

  // Deleting it revokes its tokens.
  ASSERT_EQ(del("/v3/users/" + user + "/application_credentials/" + id, tok).status, 204);
  EXPECT_CODE(svc().authenticate(ac_token), Code::kUnauthenticated);
  EXPECT_EQ(issue(auth).status, 401);
  EXPECT_EQ(get("/v3/users/" + user + "/application_credentials/" + id, tok).status, 404);
}

TEST_F(AuthTest, ApplicationCredentialExpiryRoundTripsAndExpires) {
  std::string role = create_role("r6");
  auto [user, project] = member_of_new_project("oscar", role);
  std::string tok = token("oscar", "oscar-pw", "oscar");
  std::string expires =
      format_iso_naive(clock_.now() + std::chrono::minutes(30) + std::chrono::microseconds(123456));
  Reply created =
      post("/v3/users/" + user + "/application_credentials",
           {{"application_credential", {{"name", "short"}, {"expires_at", expires}}}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  EXPECT_EQ(created.body["application_credential"]["expires_at"], expires);
  Json auth = {{"auth",
                {{"identity",
                  {{"methods", {"application_credential"}},
                   {"application_credential",
                    {{"id", created.body["application_credential"]["id"]},
                     {"secret", created.body["application_credential"]["secret"]}}}}}}}};
  Reply t = issue(auth);
  ASSERT_EQ(t.status, 201) << t;
  // The token does not outlive the credential.
  EXPECT_EQ(t.body["token"]["expires_at"], format_keystone_time(*parse_iso_time(expires)));
  clock_.advance(std::chrono::minutes(31));
  EXPECT_EQ(issue(auth).status, 401);
  EXPECT_CODE(svc().authenticate(t.header("x-subject-token")), Code::kUnauthenticated);
  // An expiry in the past is refused.
  EXPECT_EQ(post("/v3/users/" + user + "/application_credentials",
                 {{"application_credential",
                   {{"name", "past"}, {"expires_at", format_iso_naive(clock_.now())}}}},
                 token("oscar", "oscar-pw", "oscar"))
                .status,
            400);
}

TEST_F(AuthTest, ApplicationCredentialRolesMustBeHeld) {
  std::string r1 = create_role("ro1");
  std::string r2 = create_role("ro2");
  auto [user, project] = member_of_new_project("pia", r1);
  grant(project, user, r2);
  std::string tok = token("pia", "pia-pw", "pia");
  Reply one = post("/v3/users/" + user + "/application_credentials",
                   {{"application_credential", {{"name", "one"}, {"roles", {{{"id", r1}}}}}}}, tok);
  ASSERT_EQ(one.status, 201) << one;
  ASSERT_EQ(one.body["application_credential"]["roles"].size(), 1u);
  Reply t = issue({{"auth",
                    {{"identity",
                      {{"methods", {"application_credential"}},
                       {"application_credential",
                        {{"id", one.body["application_credential"]["id"]},
                         {"secret", one.body["application_credential"]["secret"]}}}}}}}});
  ASSERT_EQ(t.status, 201) << t;
  EXPECT_EQ(t.body["token"]["roles"], Json::parse(R"([{"id":")" + r1 + R"(","name":"ro1"}])"));
  EXPECT_EQ(
      post("/v3/users/" + user + "/application_credentials",
           {{"application_credential", {{"name", "two"}, {"roles", {{{"name", "admin"}}}}}}}, tok)
          .status,
      400);
  // Nobody creates credentials for someone else, not even an admin.
  EXPECT_EQ(post("/v3/users/" + user + "/application_credentials",
                 {{"application_credential", {{"name", "x"}}}}, admin_token())
                .status,
            403);
}

class LockoutTest : public IdentityTest {
 protected:
  IdentityOptions options() override {
    IdentityOptions o = IdentityTest::options();
    o.lockout_failures = 3;
    o.lockout_window = std::chrono::minutes(5);
    return o;
  }
};

TEST_F(LockoutTest, FailuresLockTheUserUntilTheWindowPasses) {
  create_user("quinn", "quinn-pw");
  create_user("rose", "rose-pw");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(issue(password_auth("quinn", "bad")).status, 401);
  // Locked: even the right password is refused; other users are unaffected.
  EXPECT_EQ(issue(password_auth("quinn", "quinn-pw")).status, 401);
  EXPECT_EQ(issue(password_auth("rose", "rose-pw")).status, 201);
  clock_.advance(std::chrono::minutes(4));
  EXPECT_EQ(issue(password_auth("quinn", "quinn-pw")).status, 401);
  clock_.advance(std::chrono::minutes(2));
  EXPECT_EQ(issue(password_auth("quinn", "quinn-pw")).status, 201);
}

TEST_F(LockoutTest, SuccessResetsTheCount) {
  create_user("sam", "sam-pw");
  for (int i = 0; i < 2; ++i) EXPECT_EQ(issue(password_auth("sam", "bad")).status, 401);
  EXPECT_EQ(issue(password_auth("sam", "sam-pw")).status, 201);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(issue(password_auth("sam", "bad")).status, 401);
  EXPECT_EQ(issue(password_auth("sam", "sam-pw")).status, 201);
}

TEST_F(AuthTest, AuthEndpointsListScopes) {
  std::string role = create_role("r7");
  auto [user, project] = member_of_new_project("tess", role);
  std::string tok = token("tess", "tess-pw");
  Reply projects = get("/v3/auth/projects", tok);
  ASSERT_EQ(projects.status, 200) << projects;
  ASSERT_EQ(projects.body["projects"].size(), 1u);
  EXPECT_EQ(projects.body["projects"][0]["id"], project);
  EXPECT_TRUE(projects.body["links"]["next"].is_null());
  Reply domains = get("/v3/auth/domains", tok);
  ASSERT_EQ(domains.status, 200);
  EXPECT_TRUE(domains.body["domains"].empty());
  Reply system = get("/v3/auth/system", admin_token());
  ASSERT_EQ(system.status, 200);
  EXPECT_EQ(system.body["system"], Json::parse(R"([{"all":true}])"));
  EXPECT_TRUE(get("/v3/auth/system", tok).body["system"].empty());
  Reply catalog = get("/v3/auth/catalog", admin_token());
  ASSERT_EQ(catalog.status, 200);
  EXPECT_EQ(catalog.body["catalog"][0]["type"], "identity");
}

TEST_F(AuthTest, CatalogSubstitutesProjectIdAndOtherCapabilitiesRegister) {
  ASSERT_OK(svc().ensure_service_endpoint("database", "trove",
                                          "http://localhost:8779/v1.0/$(project_id)s"));
  ASSERT_OK(svc().ensure_service_endpoint("compute", "nova", "http://localhost:8774/v2.1"));
  // Idempotent, and a new URL moves the endpoints.
  ASSERT_OK(svc().ensure_service_endpoint("compute", "nova", "http://localhost:9999/v2.1"));
  Reply t = issue(password_auth("admin", "admin-secret", project_scope("admin")));
  ASSERT_EQ(t.status, 201);
  const Json& catalog = t.body["token"]["catalog"];
  ASSERT_EQ(catalog.size(), 3u);
  EXPECT_EQ(catalog[0]["type"], "compute");
  EXPECT_EQ(catalog[0]["endpoints"].size(), 3u);
  EXPECT_EQ(catalog[0]["endpoints"][0]["url"], "http://localhost:9999/v2.1");
  EXPECT_EQ(catalog[1]["type"], "database");
  EXPECT_EQ(catalog[1]["endpoints"][0]["url"],
            "http://localhost:8779/v1.0/" + boot_.admin_project_id);
  // A system-scoped token has no project: such endpoints are left out.
  Reply sys = issue(password_auth("admin", "admin-secret", {{"system", {{"all", true}}}}));
  ASSERT_EQ(sys.status, 201);
  EXPECT_TRUE(sys.body["token"]["catalog"][1]["endpoints"].empty());
}

TEST_F(AuthTest, BootstrapIsIdempotentAndResetsPasswordAndUrl) {
  auto again = svc().bootstrap({"admin-secret", "http://localhost:5000", ""});
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->admin_user_id, boot_.admin_user_id);
  EXPECT_EQ(again->admin_project_id, boot_.admin_project_id);
  EXPECT_EQ(again->admin_role_id, boot_.admin_role_id);
  EXPECT_EQ(again->identity_service_id, boot_.identity_service_id);
  std::string tok = admin_token();
  ASSERT_TRUE(svc().authenticate(tok).has_value());
  clock_.advance(std::chrono::seconds(1));
  auto moved = svc().bootstrap({"new-secret", "http://10.0.0.1:5000/", ""});
  ASSERT_TRUE(moved.has_value());
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
  EXPECT_EQ(issue(password_auth("admin", "admin-secret")).status, 401);
  Reply t = issue(password_auth("admin", "new-secret", project_scope("admin")));
  ASSERT_EQ(t.status, 201);
  ASSERT_EQ(t.body["token"]["catalog"][0]["endpoints"].size(), 3u);
  EXPECT_EQ(t.body["token"]["catalog"][0]["endpoints"][0]["url"],
            "http://10.0.0.1:5000/identity/v3");
  Reply eps = get("/v3/endpoints", t.header("x-subject-token"));
  EXPECT_EQ(eps.body["endpoints"].size(), 3u);
}

TEST_F(AuthTest, EnsureProjectCreatesOnceAndListsIt) {
  auto id = svc().ensure_project("service", "Concord's own resources");
  ASSERT_TRUE(id.has_value()) << id.error().to_string();
  auto again = svc().ensure_project("service", "another description");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, *id);
  EXPECT_NE(*id, boot_.admin_project_id);
  // The existing admin project is found, not duplicated.
  auto admin = svc().ensure_project("admin", "");
  ASSERT_TRUE(admin.has_value());
  EXPECT_EQ(*admin, boot_.admin_project_id);
  Reply p = get("/v3/projects/" + *id, admin_token());
  ASSERT_EQ(p.status, 200) << p;
  EXPECT_EQ(p.body["project"]["name"], "service");
  EXPECT_EQ(p.body["project"]["domain_id"], "default");
  EXPECT_EQ(p.body["project"]["enabled"], true);
}

TEST_F(AuthTest, RevocationsSurviveARestart) {
  std::string tok = token("admin", "admin-secret", "admin");
  ASSERT_EQ(call(Method::kDelete, "/v3/auth/tokens", "", tok, {{"x-subject-token", tok}}).status,
            204);
  node_.reset();
  node_ = std::make_unique<Node>(*store_, clock_, options());
  ASSERT_TRUE(node_->service);
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
  admin_token_.clear();
  EXPECT_TRUE(svc().authenticate(admin_token()).has_value());
}

TEST_F(AuthTest, RevocationEventsArePrunedAfterTheTokenLifetime) {
  std::string tok = token("admin", "admin-secret", "admin");
  ASSERT_EQ(call(Method::kDelete, "/v3/auth/tokens", "", tok, {{"x-subject-token", tok}}).status,
            204);
  int64_t before = 0;
  ASSERT_OK(store_->read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT COUNT(*) FROM identity_revocations"));
    before = rows[0].integer(0);
    return ok();
  }));
  EXPECT_EQ(before, 1);
  clock_.advance(std::chrono::hours(2));
  ASSERT_OK(svc().prune_revocations());
  int64_t after = -1;
  ASSERT_OK(store_->read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT COUNT(*) FROM identity_revocations"));
    after = rows[0].integer(0);
    return ok();
  }));
  EXPECT_EQ(after, 0);
  // The token had expired anyway.
  EXPECT_CODE(svc().authenticate(tok), Code::kUnauthenticated);
}

// Two services over one database, as two replicas: a write on one reaches the other through
// the change feed (polled with a generous bound; never a speed gate).
TEST_F(AuthTest, AnotherReplicaSeesRevocationsAndChangesThroughTheFeed) {
  Node other(*store_, clock_, options());
  ASSERT_TRUE(other.service);
  std::string role = create_role("r8");
  auto [user, project] = member_of_new_project("uma", role);
  std::string tok = token("uma", "uma-pw", "uma");
  ASSERT_TRUE(other.service->authenticate(tok).has_value());  // caches user/project/roles there
  ASSERT_EQ(call(Method::kDelete, "/v3/auth/tokens", "", tok, {{"x-subject-token", tok}}).status,
            204);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (other.service->authenticate(tok).has_value() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_CODE(other.service->authenticate(tok), Code::kUnauthenticated);

  // A cached project renamed on this replica shows up renamed on the other.
  std::string tok2 = token("uma", "uma-pw", "uma");
  ASSERT_TRUE(other.service->authenticate(tok2).has_value());
  ASSERT_EQ(
      patch("/v3/projects/" + project, {{"project", {{"name", "uma-renamed"}}}}, admin_token())
          .status,
      200);
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    auto ctx = other.service->authenticate(tok2);
    if (ctx && ctx->project_name == "uma-renamed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto ctx = other.service->authenticate(tok2);
  ASSERT_TRUE(ctx.has_value());
  EXPECT_EQ(ctx->project_name, "uma-renamed");
}

}  // namespace
}  // namespace concord::identity::testing

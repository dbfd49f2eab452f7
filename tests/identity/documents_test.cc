// The stored, uninterpreted Keystone resources: /v3/policies, /v3/credentials, OAuth1
// consumers, endpoint groups and domain configuration.
#include <nlohmann/json.hpp>

#include "identity_test_util.h"

namespace concord::identity::testing {
namespace {

using http::Method;

class DocumentsTest : public IdentityTest {};

bool listed(const Json& items, const std::string& id) {
  for (const Json& i : items) {
    if (i["id"] == id) return true;
  }
  return false;
}

TEST_F(DocumentsTest, PolicyCrud) {
  std::string tok = admin_token();
  Reply created = post("/v3/policies",
                       {{"policy", {{"type", "application/json"}, {"blob", "{\"a\":1}"}}}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  const Json& p = created.body["policy"];
  std::string id = p["id"];
  EXPECT_EQ(p["type"], "application/json");
  EXPECT_EQ(p["blob"], "{\"a\":1}");
  EXPECT_EQ(p["links"]["self"], "http://localhost:5000/identity/v3/policies/" + id);

  Reply updated = patch("/v3/policies/" + id, {{"policy", {{"type", "text/plain"}}}}, tok);
  ASSERT_EQ(updated.status, 200) << updated;
  EXPECT_EQ(updated.body["policy"]["type"], "text/plain");
  EXPECT_EQ(updated.body["policy"]["blob"], "{\"a\":1}");  // untouched

  Reply shown = get("/v3/policies/" + id, tok);
  ASSERT_EQ(shown.status, 200);
  EXPECT_EQ(shown.body["policy"]["type"], "text/plain");
  Reply list = get("/v3/policies", tok);
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(listed(list.body["policies"], id));
  EXPECT_EQ(get("/v3/policies?type=nope", tok).body["policies"].size(), 0u);

  EXPECT_EQ(post("/v3/policies", {{"policy", {{"type", "t"}}}}, tok).status, 400);  // no blob
  EXPECT_EQ(post("/v3/policies", {{"policy", {{"type", 5}, {"blob", "b"}}}}, tok).status, 400);
  EXPECT_EQ(patch("/v3/policies/" + id, {{"policy", {{"id", "other"}}}}, tok).status, 400);

  EXPECT_EQ(del("/v3/policies/" + id, tok).status, 204);
  Reply gone = get("/v3/policies/" + id, tok);
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.message(), "Could not find policy: " + id + ".");
  EXPECT_EQ(del("/v3/policies/" + id, tok).status, 404);
}

TEST_F(DocumentsTest, CredentialCrudAndEc2Ids) {
  std::string tok = admin_token();
  std::string user = boot_.admin_user_id;
  std::string project = boot_.admin_project_id;
  std::string blob = R"({"access": "AKID1", "secret": "s1"})";
  Reply created =
      post("/v3/credentials",
           {{"credential",
             {{"type", "ec2"}, {"blob", blob}, {"user_id", user}, {"project_id", project}}}},
           tok);
  ASSERT_EQ(created.status, 201) << created;
  std::string id = created.body["credential"]["id"];
  // Keystone's EC2 credential id: the SHA-256 of the access key, in hex.
  EXPECT_EQ(
      id,
      "a598cef9bfb743a7d669fb7e365fe960e5c304d5f80188ecf80921ad61d11e82");  // sha256sum of "AKID1"
  EXPECT_EQ(created.body["credential"]["user_id"], user);
  EXPECT_EQ(created.body["credential"]["project_id"], project);
  EXPECT_EQ(created.body["credential"]["blob"], blob);
  // The same access key again is a conflict.
  EXPECT_EQ(post("/v3/credentials",
                 {{"credential",
                   {{"type", "ec2"}, {"blob", blob}, {"user_id", user}, {"project_id", project}}}},
                 tok)
                .status,
            409);
  // ec2 needs a project and an access key in a JSON blob.
  EXPECT_EQ(post("/v3/credentials",
                 {{"credential", {{"type", "ec2"}, {"blob", blob}, {"user_id", user}}}}, tok)
                .status,
            400);
  Reply no_access = post("/v3/credentials",
                         {{"credential",
                           {{"type", "ec2"},
                            {"blob", R"({"secret": "s"})"},
                            {"user_id", user},
                            {"project_id", project}}}},
                         tok);
  EXPECT_EQ(no_access.status, 400) << no_access;
  EXPECT_EQ(
      post("/v3/credentials",
           {{"credential",
             {{"type", "ec2"}, {"blob", "not json"}, {"user_id", user}, {"project_id", project}}}},
           tok)
          .status,
      400);
  EXPECT_EQ(
      post("/v3/credentials", {{"credential", {{"type", "cert"}, {"blob", "b"}}}}, tok).status,
      400);  // no user_id

  Reply cert =
      post("/v3/credentials",
           {{"credential", {{"type", "cert"}, {"blob", "pem"}, {"user_id", "someone"}}}}, tok);
  ASSERT_EQ(cert.status, 201) << cert;
  std::string cert_id = cert.body["credential"]["id"];
  EXPECT_EQ(cert_id.size(), 32u);

  std::string blob2 = R"({"access": "AKID2", "secret": "s2"})";
  Reply updated = patch("/v3/credentials/" + id, {{"credential", {{"blob", blob2}}}}, tok);
  ASSERT_EQ(updated.status, 200) << updated;
  EXPECT_EQ(updated.body["credential"]["id"], id);  // the id does not follow the access key
  EXPECT_EQ(get("/v3/credentials/" + id, tok).body["credential"]["blob"], blob2);

  Reply by_user = get("/v3/credentials?user_id=" + user, tok);
  ASSERT_EQ(by_user.status, 200);
  EXPECT_TRUE(listed(by_user.body["credentials"], id));
  EXPECT_FALSE(listed(by_user.body["credentials"], cert_id));
  Reply by_type = get("/v3/credentials?type=cert", tok);
  EXPECT_TRUE(listed(by_type.body["credentials"], cert_id));
  EXPECT_FALSE(listed(by_type.body["credentials"], id));

  EXPECT_EQ(del("/v3/credentials/" + id, tok).status, 204);
  EXPECT_EQ(get("/v3/credentials/" + id, tok).status, 404);
}

// Keystone deletes a user's and a project's credentials with them.
TEST_F(DocumentsTest, CredentialsGoWithTheirUserAndProject) {
  std::string tok = admin_token();
  std::string user = create_user("cred-owner", "pw");
  std::string project = create_project("cred-project");
  auto cred = [&](const Json& extra) {
    Json c = extra;
    c["type"] = "cert";
    c["blob"] = "b";
    Reply r = post("/v3/credentials", {{"credential", c}}, tok);
    EXPECT_EQ(r.status, 201) << r;
    return r.body["credential"]["id"].get<std::string>();
  };
  std::string of_user = cred({{"user_id", user}});
  std::string of_project = cred({{"user_id", boot_.admin_user_id}, {"project_id", project}});
  std::string kept = cred({{"user_id", boot_.admin_user_id}});
  ASSERT_EQ(del("/v3/users/" + user, tok).status, 204);
  EXPECT_EQ(get("/v3/credentials/" + of_user, tok).status, 404);
  EXPECT_EQ(get("/v3/credentials/" + of_project, tok).status, 200);
  ASSERT_EQ(del("/v3/projects/" + project, tok).status, 204);
  EXPECT_EQ(get("/v3/credentials/" + of_project, tok).status, 404);
  EXPECT_EQ(get("/v3/credentials/" + kept, tok).status, 200);
}

TEST_F(DocumentsTest, ConsumerSecretOnlyOnCreate) {
  std::string tok = admin_token();
  Reply created = post("/v3/OS-OAUTH1/consumers", {{"consumer", {{"description", "d1"}}}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  std::string id = created.body["consumer"]["id"];
  EXPECT_EQ(created.body["consumer"]["description"], "d1");
  ASSERT_TRUE(created.body["consumer"]["secret"].is_string());
  EXPECT_EQ(created.body["consumer"]["secret"].get<std::string>().size(), 32u);

  Reply shown = get("/v3/OS-OAUTH1/consumers/" + id, tok);
  ASSERT_EQ(shown.status, 200);
  EXPECT_FALSE(shown.body["consumer"].contains("secret"));
  EXPECT_EQ(shown.body["consumer"]["links"]["self"],
            "http://localhost:5000/identity/v3/OS-OAUTH1/consumers/" + id);

  Reply updated =
      patch("/v3/OS-OAUTH1/consumers/" + id, {{"consumer", {{"description", "d2"}}}}, tok);
  ASSERT_EQ(updated.status, 200) << updated;
  EXPECT_EQ(updated.body["consumer"]["description"], "d2");
  EXPECT_EQ(patch("/v3/OS-OAUTH1/consumers/" + id, {{"consumer", {{"secret", "x"}}}}, tok).status,
            400);
  Reply bare = post("/v3/OS-OAUTH1/consumers", {{"consumer", Json::object()}}, tok);
  ASSERT_EQ(bare.status, 201);
  EXPECT_TRUE(bare.body["consumer"]["description"].is_null());

  EXPECT_TRUE(listed(get("/v3/OS-OAUTH1/consumers", tok).body["consumers"], id));
  EXPECT_EQ(del("/v3/OS-OAUTH1/consumers/" + id, tok).status, 204);
  EXPECT_EQ(get("/v3/OS-OAUTH1/consumers/" + id, tok).status, 404);
}

TEST_F(DocumentsTest, EndpointGroupCrudAndHead) {
  std::string tok = admin_token();
  Json eg = {{"name", "eg1"}, {"description", "d"}, {"filters", {{"service_id", "svc1"}}}};
  Reply created = post("/v3/OS-EP-FILTER/endpoint_groups", {{"endpoint_group", eg}}, tok);
  ASSERT_EQ(created.status, 201) << created;
  std::string id = created.body["endpoint_group"]["id"];
  EXPECT_EQ(created.body["endpoint_group"]["filters"]["service_id"], "svc1");
  std::string path = "/v3/OS-EP-FILTER/endpoint_groups/" + id;
  EXPECT_EQ(call(Method::kHead, path, "", tok).status, 200);
  EXPECT_EQ(call(Method::kHead, path + "x", "", tok).status, 404);

  Reply updated = patch(
      path, {{"endpoint_group", {{"name", "eg2"}, {"filters", {{"interface", "admin"}}}}}}, tok);
  ASSERT_EQ(updated.status, 200) << updated;
  EXPECT_EQ(updated.body["endpoint_group"]["name"], "eg2");
  EXPECT_EQ(updated.body["endpoint_group"]["filters"], Json({{"interface", "admin"}}));
  EXPECT_EQ(updated.body["endpoint_group"]["description"], "d");

  // Keystone's filters: interface, service_id, region_id only; name and filters required.
  EXPECT_EQ(post("/v3/OS-EP-FILTER/endpoint_groups",
                 {{"endpoint_group", {{"name", "x"}, {"filters", {{"color", "red"}}}}}}, tok)
                .status,
            400);
  EXPECT_EQ(
      post("/v3/OS-EP-FILTER/endpoint_groups", {{"endpoint_group", {{"name", "x"}}}}, tok).status,
      400);
  EXPECT_EQ(post("/v3/OS-EP-FILTER/endpoint_groups",
                 {{"endpoint_group", {{"filters", {{"interface", "public"}}}}}}, tok)
                .status,
            400);

  EXPECT_TRUE(listed(get("/v3/OS-EP-FILTER/endpoint_groups", tok).body["endpoint_groups"], id));
  EXPECT_EQ(del(path, tok).status, 204);
  EXPECT_EQ(get(path, tok).status, 404);
  EXPECT_FALSE(listed(get("/v3/OS-EP-FILTER/endpoint_groups", tok).body["endpoint_groups"], id));
}

TEST_F(DocumentsTest, EndpointGroupProjectAssociations) {
  std::string tok = admin_token();
  std::string svc =
      post("/v3/services", {{"service", {{"type", "eg-type"}}}}, tok).body["service"]["id"];
  std::string ep =
      post("/v3/endpoints",
           {{"endpoint", {{"service_id", svc}, {"interface", "internal"}, {"url", "http://eg"}}}},
           tok)
          .body["endpoint"]["id"];
  std::string eg =
      post("/v3/OS-EP-FILTER/endpoint_groups",
           {{"endpoint_group", {{"name", "eg"}, {"filters", {{"service_id", svc}}}}}}, tok)
          .body["endpoint_group"]["id"];
  std::string project = create_project("eg-project");
  std::string one = "/v3/OS-EP-FILTER/endpoint_groups/" + eg + "/projects/" + project;
  EXPECT_EQ(call(Method::kHead, one, "", tok).status, 404);
  ASSERT_EQ(put(one, tok).status, 204);
  ASSERT_EQ(put(one, tok).status, 204);  // idempotent
  EXPECT_EQ(call(Method::kHead, one, "", tok).status, 200);
  Reply shown = get(one, tok);
  ASSERT_EQ(shown.status, 200) << shown;
  EXPECT_EQ(shown.body["project"]["id"], project);

  Reply projects = get("/v3/OS-EP-FILTER/endpoint_groups/" + eg + "/projects", tok);
  ASSERT_EQ(projects.status, 200);
  ASSERT_EQ(projects.body["projects"].size(), 1u);
  EXPECT_EQ(projects.body["projects"][0]["id"], project);
  Reply groups = get("/v3/OS-EP-FILTER/projects/" + project + "/endpoint_groups", tok);
  ASSERT_EQ(groups.status, 200);
  ASSERT_EQ(groups.body["endpoint_groups"].size(), 1u);
  EXPECT_EQ(groups.body["endpoint_groups"][0]["id"], eg);
  Reply endpoints = get("/v3/OS-EP-FILTER/endpoint_groups/" + eg + "/endpoints", tok);
  ASSERT_EQ(endpoints.status, 200);
  ASSERT_EQ(endpoints.body["endpoints"].size(), 1u);  // only the one of its service
  EXPECT_EQ(endpoints.body["endpoints"][0]["id"], ep);

  EXPECT_EQ(put("/v3/OS-EP-FILTER/endpoint_groups/nope/projects/" + project, tok).status, 404);
  EXPECT_EQ(put("/v3/OS-EP-FILTER/endpoint_groups/" + eg + "/projects/nope", tok).status, 404);
  ASSERT_EQ(del(one, tok).status, 204);
  EXPECT_EQ(del(one, tok).status, 404);
  EXPECT_EQ(get("/v3/OS-EP-FILTER/projects/" + project + "/endpoint_groups", tok)
                .body["endpoint_groups"]
                .size(),
            0u);
  // Deleting the group or the project drops its associations.
  ASSERT_EQ(put(one, tok).status, 204);
  ASSERT_EQ(del("/v3/OS-EP-FILTER/endpoint_groups/" + eg, tok).status, 204);
  EXPECT_EQ(get("/v3/OS-EP-FILTER/projects/" + project + "/endpoint_groups", tok)
                .body["endpoint_groups"]
                .size(),
            0u);
  std::string eg2 =
      post("/v3/OS-EP-FILTER/endpoint_groups",
           {{"endpoint_group", {{"name", "eg2"}, {"filters", {{"service_id", svc}}}}}}, tok)
          .body["endpoint_group"]["id"];
  ASSERT_EQ(put("/v3/OS-EP-FILTER/endpoint_groups/" + eg2 + "/projects/" + project, tok).status,
            204);
  ASSERT_EQ(del("/v3/projects/" + project, tok).status, 204);
  EXPECT_EQ(
      get("/v3/OS-EP-FILTER/endpoint_groups/" + eg2 + "/projects", tok).body["projects"].size(),
      0u);
}

// Access rules outlive the application credentials that introduced them and are shared by
// credentials naming the same rule; one in use cannot be deleted (403), as in Keystone.
TEST_F(DocumentsTest, AccessRulesAreSharedAndOutliveCredentials) {
  std::string member = create_role("ar-member");
  auto [user, project] = member_of_new_project("ar-user", member);
  std::string tok = token("ar-user", "ar-user-pw", "ar-user");
  Json rule = {{"service", "compute"}, {"path", "/v2.1/servers/*/ips"}, {"method", "GET"}};
  auto make = [&](const std::string& name) {
    Reply r = post("/v3/users/" + user + "/application_credentials",
                   {{"application_credential", {{"name", name}, {"access_rules", {rule}}}}}, tok);
    EXPECT_EQ(r.status, 201) << r;
    return r.body["application_credential"];
  };
  Json first = make("ar-1");
  Json second = make("ar-2");
  std::string rule_id = first["access_rules"][0]["id"];
  EXPECT_EQ(second["access_rules"][0]["id"], rule_id);  // the same rule, shared
  std::string base = "/v3/users/" + user + "/access_rules";
  Reply list = get(base, tok);
  ASSERT_EQ(list.status, 200) << list;
  ASSERT_EQ(list.body["access_rules"].size(), 1u);
  EXPECT_EQ(list.body["access_rules"][0]["path"], "/v2.1/servers/*/ips");
  Reply shown = get(base + "/" + rule_id, tok);
  ASSERT_EQ(shown.status, 200);
  EXPECT_EQ(shown.body["access_rule"]["service"], "compute");
  EXPECT_EQ(get(base + "/nope", tok).status, 404);

  EXPECT_EQ(del(base + "/" + rule_id, tok).status, 403);
  ASSERT_EQ(
      del("/v3/users/" + user + "/application_credentials/" + first["id"].get<std::string>(), tok)
          .status,
      204);
  EXPECT_EQ(del(base + "/" + rule_id, tok).status, 403);  // still used by the second
  ASSERT_EQ(
      del("/v3/users/" + user + "/application_credentials/" + second["id"].get<std::string>(), tok)
          .status,
      204);
  EXPECT_EQ(get(base, tok).body["access_rules"].size(), 1u);  // kept
  EXPECT_EQ(del(base + "/" + rule_id, tok).status, 204);
  EXPECT_EQ(get(base, tok).body["access_rules"].size(), 0u);
  EXPECT_EQ(del(base + "/" + rule_id, tok).status, 404);
  // Another user's rules are not theirs to see.
  EXPECT_EQ(get("/v3/users/" + boot_.admin_user_id + "/access_rules", tok).status, 403);
}

TEST_F(DocumentsTest, NonAdminsAreRefused) {
  std::string member = create_role("member-ish");
  auto [user, project] = member_of_new_project("docs-user", member);
  std::string tok = token("docs-user", "docs-user-pw", "docs-user");
  for (const char* path : {"/v3/policies", "/v3/credentials", "/v3/OS-OAUTH1/consumers",
                           "/v3/OS-EP-FILTER/endpoint_groups", "/v3/domains/config/default"}) {
    EXPECT_EQ(get(path, tok).status, 403) << path;
    EXPECT_EQ(get(path, "").status, 401) << path;
  }
}

TEST_F(DocumentsTest, DomainConfigWholeGroupAndOption) {
  std::string tok = admin_token();
  std::string domain =
      post("/v3/domains", {{"domain", {{"name", "cfg-domain"}}}}, tok).body["domain"]["id"];
  std::string base = "/v3/domains/" + domain + "/config";
  EXPECT_EQ(get(base, tok).status, 404);
  Json config = {{"identity", {{"driver", "ldap"}}},
                 {"ldap", {{"url", "ldap://a:389/"}, {"user_tree_dn", "ou=Users"}}}};
  Reply created = put(base, tok, dump_json({{"config", config}}));
  ASSERT_EQ(created.status, 201) << created;
  EXPECT_EQ(created.body["config"], config);
  EXPECT_EQ(get(base, tok).body["config"], config);
  EXPECT_EQ(get(base + "/ldap", tok).body["config"], Json({{"ldap", config["ldap"]}}));
  EXPECT_EQ(get(base + "/ldap/url", tok).body["config"], Json({{"url", "ldap://a:389/"}}));
  EXPECT_EQ(get(base + "/ldap/user", tok).status, 404);  // allowed but not set

  // PATCH of the whole config merges options.
  Reply merged = patch(base, {{"config", {{"ldap", {{"url", "ldap://b/"}}}}}}, tok);
  ASSERT_EQ(merged.status, 200) << merged;
  EXPECT_EQ(merged.body["config"]["ldap"]["url"], "ldap://b/");
  EXPECT_EQ(merged.body["config"]["ldap"]["user_tree_dn"], "ou=Users");
  EXPECT_EQ(merged.body["config"]["identity"]["driver"], "ldap");

  Reply group = patch(base + "/identity",
                      {{"config", {{"identity", {{"driver", "d2"}, {"list_limit", 7}}}}}}, tok);
  ASSERT_EQ(group.status, 200) << group;
  EXPECT_EQ(group.body["config"]["identity"], Json({{"driver", "d2"}, {"list_limit", 7}}));
  Reply option = patch(base + "/identity/driver", {{"config", {{"driver", "d3"}}}}, tok);
  ASSERT_EQ(option.status, 200) << option;
  EXPECT_EQ(option.body["config"]["identity"]["driver"], "d3");
  // The body must match the URL.
  EXPECT_EQ(patch(base + "/identity/driver", {{"config", {{"list_limit", 1}}}}, tok).status, 400);
  EXPECT_EQ(patch(base + "/identity", {{"config", {{"ldap", {{"url", "x"}}}}}}, tok).status, 400);

  // Unknown groups and options are Keystone's InvalidDomainConfig (403).
  Reply bad_group = put(base, tok, dump_json({{"config", {{"assignment", {{"driver", "x"}}}}}}));
  EXPECT_EQ(bad_group.status, 403) << bad_group;
  EXPECT_EQ(bad_group.message(),
            "Invalid domain specific configuration: Group assignment is not supported for domain "
            "specific configurations.");
  EXPECT_EQ(put(base, tok, dump_json({{"config", {{"identity", {{"color", "x"}}}}}})).status, 403);
  EXPECT_EQ(get(base + "/assignment", tok).status, 403);
  // ldap.password may be set but is never shown.
  ASSERT_EQ(patch(base, {{"config", {{"ldap", {{"password", "pw"}}}}}}, tok).status, 200);
  EXPECT_FALSE(get(base, tok).body["config"]["ldap"].contains("password"));

  EXPECT_EQ(del(base + "/identity/driver", tok).status, 204);
  EXPECT_EQ(get(base + "/identity/driver", tok).status, 404);
  EXPECT_EQ(get(base + "/identity/list_limit", tok).body["config"]["list_limit"], 7);
  EXPECT_EQ(del(base + "/identity", tok).status, 204);
  EXPECT_EQ(get(base + "/identity", tok).status, 404);
  EXPECT_EQ(del(base + "/identity", tok).status, 404);

  // PUT again replaces the whole configuration: 200.
  Reply replaced = put(base, tok, dump_json({{"config", {{"identity", {{"driver", "sql"}}}}}}));
  EXPECT_EQ(replaced.status, 200) << replaced;
  EXPECT_FALSE(get(base, tok).body["config"].contains("ldap"));

  EXPECT_EQ(del(base, tok).status, 204);
  EXPECT_EQ(get(base, tok).status, 404);
  EXPECT_EQ(del(base, tok).status, 404);
  EXPECT_EQ(get("/v3/domains/no-such-domain/config", tok).status, 404);

  // Deleting a domain takes its configuration with it.
  ASSERT_EQ(put(base, tok, dump_json({{"config", config}})).status, 201);
  ASSERT_EQ(patch("/v3/domains/" + domain, {{"domain", {{"enabled", false}}}}, tok).status, 200);
  ASSERT_EQ(del("/v3/domains/" + domain, tok).status, 204);
  std::string again =
      post("/v3/domains", {{"domain", {{"name", "cfg-domain-2"}}}}, tok).body["domain"]["id"];
  EXPECT_EQ(get("/v3/domains/" + again + "/config", tok).status, 404);
}

TEST_F(DocumentsTest, DomainConfigDefaults) {
  std::string tok = admin_token();
  Reply all = get("/v3/domains/config/default", tok);
  ASSERT_EQ(all.status, 200) << all;
  EXPECT_EQ(all.body["config"]["identity"], Json({{"driver", "sql"}, {"list_limit", nullptr}}));
  EXPECT_EQ(all.body["config"]["ldap"]["url"], "ldap://localhost");
  EXPECT_FALSE(all.body["config"]["ldap"].contains("password"));
  Reply ldap = get("/v3/domains/config/ldap/default", tok);
  ASSERT_EQ(ldap.status, 200);
  EXPECT_EQ(ldap.body["config"]["ldap"]["user_tree_dn"], nullptr);
  Reply option = get("/v3/domains/config/identity/driver/default", tok);
  ASSERT_EQ(option.status, 200);
  EXPECT_EQ(option.body["config"], Json({{"driver", "sql"}}));
  EXPECT_EQ(get("/v3/domains/config/assignment/default", tok).status, 403);
  EXPECT_EQ(get("/v3/domains/config/ldap/nope/default", tok).status, 403);
  EXPECT_EQ(get("/v3/domains/config/ldap/password/default", tok).status, 403);
}

}  // namespace
}  // namespace concord::identity::testing

// Every registered route x {admin, member, reader, no token} x {own, other}, driven by one
// table. The expected status follows from the route's policy rule (policy.h) and the caller;
// the table gives each route a request that succeeds for an administrator, and the few
// business-rule exceptions are listed with their reason. A route missing from the table, or a
// table row with no route, fails the test.
//
// Each case runs against a fresh copy of one prepared world (SQLite file + Fernet keys), so
// destructive requests cannot disturb the next case.
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "identity/policy.h"
#include "identity_test_util.h"

namespace concord::identity::testing {
namespace {

using http::Method;

enum class Caller { kAdmin, kMember, kReader, kNone };
enum class Ownership { kOwn, kOther };

const char* name(Caller c) {
  switch (c) {
    case Caller::kAdmin: return "admin";
    case Caller::kMember: return "member";
    case Caller::kReader: return "reader";
    case Caller::kNone: return "no-token";
  }
  return "?";
}

struct Row {
  Method method;
  std::string pattern;
  int success;       // status for an allowed request
  std::string body;  // may contain {placeholders}
  // Placeholder values that differ from the world's defaults for this route.
  std::map<std::string, std::string> params = {};
  // (caller, ownership) cases where a business rule, not policy, decides; with the reason.
  std::map<std::pair<Caller, Ownership>, int> exceptions = {};
};

// The table: one row per registered route.
std::vector<Row> table() {
  using O = Ownership;
  return {
      {Method::kGet, "/", 300, ""},
      {Method::kGet, "/v3", 200, ""},
      {Method::kPost, "/v3/auth/tokens", 201,
       R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"{user_id}",
          "password":"{password}"}}}}})"},
      {Method::kGet, "/v3/auth/tokens", 200, ""},
      {Method::kHead, "/v3/auth/tokens", 200, ""},
      {Method::kDelete, "/v3/auth/tokens", 204, ""},
      {Method::kGet, "/v3/auth/catalog", 200, ""},
      {Method::kGet, "/v3/auth/projects", 200, ""},
      {Method::kGet, "/v3/auth/domains", 200, ""},
      {Method::kGet, "/v3/auth/system", 200, ""},

      {Method::kGet, "/v3/domains", 200, ""},
      {Method::kPost, "/v3/domains", 201, R"({"domain":{"name":"new-domain"}})"},
      {Method::kGet, "/v3/domains/{domain_id}", 200, ""},
      {Method::kPatch, "/v3/domains/{domain_id}", 200, R"({"domain":{"description":"x"}})"},
      // The own domain (Default) is enabled, and an enabled domain cannot be deleted.
      {Method::kDelete, "/v3/domains/{domain_id}", 204, "", {}, {{{Caller::kAdmin, O::kOwn}, 403}}},

      {Method::kGet, "/v3/projects", 200, ""},
      {Method::kPost, "/v3/projects", 201, R"({"project":{"name":"new-project"}})"},
      {Method::kGet, "/v3/projects/{project_id}", 200, ""},
      {Method::kPatch, "/v3/projects/{project_id}", 200, R"({"project":{"description":"x"}})"},
      {Method::kDelete, "/v3/projects/{project_id}", 204, ""},
      {Method::kGet, "/v3/projects/{project_id}/tags", 200, ""},
      {Method::kPut, "/v3/projects/{project_id}/tags", 200, R"({"tags":["a","b"]})"},
      {Method::kDelete, "/v3/projects/{project_id}/tags", 204, ""},
      {Method::kGet, "/v3/projects/{project_id}/tags/{tag}", 204, ""},
      {Method::kPut, "/v3/projects/{project_id}/tags/{tag}", 201, "", {{"tag", "t2"}}},
      {Method::kDelete, "/v3/projects/{project_id}/tags/{tag}", 204, ""},

      {Method::kGet, "/v3/users", 200, ""},
      {Method::kPost, "/v3/users", 201, R"({"user":{"name":"new-user"}})"},
      {Method::kGet, "/v3/users/{user_id}", 200, ""},
      {Method::kPatch, "/v3/users/{user_id}", 200, R"({"user":{"description":"x"}})"},
      {Method::kDelete, "/v3/users/{user_id}", 204, ""},
      {Method::kPost, "/v3/users/{user_id}/password", 204,
       R"({"user":{"original_password":"{password}","password":"changed"}})"},
      {Method::kGet, "/v3/users/{user_id}/projects", 200, ""},
      {Method::kGet, "/v3/users/{user_id}/groups", 200, ""},

      {Method::kGet, "/v3/groups", 200, ""},
      {Method::kPost, "/v3/groups", 201, R"({"group":{"name":"new-group"}})"},
      {Method::kGet, "/v3/groups/{group_id}", 200, ""},
      {Method::kPatch, "/v3/groups/{group_id}", 200, R"({"group":{"description":"x"}})"},
      {Method::kDelete, "/v3/groups/{group_id}", 204, ""},
      {Method::kGet, "/v3/groups/{group_id}/users", 200, ""},
      {Method::kPut, "/v3/groups/{group_id}/users/{user_id}", 204, ""},
      {Method::kHead, "/v3/groups/{group_id}/users/{user_id}", 204, ""},
      {Method::kGet, "/v3/groups/{group_id}/users/{user_id}", 204, ""},
      {Method::kDelete, "/v3/groups/{group_id}/users/{user_id}", 204, ""},

      // Application credentials: even an administrator may not create one for someone else.
      {Method::kPost,
       "/v3/users/{user_id}/application_credentials",
       201,
       R"({"application_credential":{"name":"new-ac"}})",
       {},
       {{{Caller::kAdmin, O::kOther}, 403}}},
      {Method::kGet, "/v3/users/{user_id}/application_credentials", 200, ""},
      {Method::kGet, "/v3/users/{user_id}/application_credentials/{app_cred_id}", 200, ""},
      {Method::kDelete, "/v3/users/{user_id}/application_credentials/{app_cred_id}", 204, ""},
      // Each caller has one access rule, no longer used by any credential.
      {Method::kGet, "/v3/users/{user_id}/access_rules", 200, ""},
      {Method::kGet, "/v3/users/{user_id}/access_rules/{access_rule_id}", 200, ""},
      {Method::kDelete, "/v3/users/{user_id}/access_rules/{access_rule_id}", 204, ""},

      {Method::kGet, "/v3/users/{user_id}/credentials/OS-EC2", 200, ""},
      {Method::kPost, "/v3/users/{user_id}/credentials/OS-EC2", 201,
       R"({"tenant_id":"{project_id}"})"},
      {Method::kGet, "/v3/users/{user_id}/credentials/OS-EC2/{credential_id}", 200, ""},
      {Method::kDelete, "/v3/users/{user_id}/credentials/OS-EC2/{credential_id}", 204, ""},

      {Method::kGet, "/v3/roles", 200, ""},
      {Method::kPost, "/v3/roles", 201, R"({"role":{"name":"new-role"}})"},
      {Method::kGet, "/v3/roles/{role_id}", 200, ""},
      {Method::kPatch, "/v3/roles/{role_id}", 200, R"({"role":{"description":"x"}})"},
      {Method::kDelete, "/v3/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/roles/{prior_role_id}/implies", 200, ""},
      {Method::kPut, "/v3/roles/{prior_role_id}/implies/{implied_role_id}", 201, ""},
      {Method::kGet, "/v3/roles/{prior_role_id}/implies/{implied_role_id}", 200, ""},
      {Method::kHead, "/v3/roles/{prior_role_id}/implies/{implied_role_id}", 204, ""},
      {Method::kDelete, "/v3/roles/{prior_role_id}/implies/{implied_role_id}", 204, ""},
      {Method::kGet, "/v3/role_inferences", 200, ""},
      {Method::kGet, "/v3/role_assignments", 200, ""},

      {Method::kGet, "/v3/projects/{project_id}/users/{user_id}/roles", 200, ""},
      {Method::kPut, "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kHead, "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kDelete, "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/projects/{project_id}/groups/{group_id}/roles", 200, ""},
      {Method::kPut, "/v3/projects/{project_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kHead, "/v3/projects/{project_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/projects/{project_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kDelete, "/v3/projects/{project_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/domains/{domain_id}/users/{user_id}/roles", 200, ""},
      {Method::kPut, "/v3/domains/{domain_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kHead, "/v3/domains/{domain_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/domains/{domain_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kDelete, "/v3/domains/{domain_id}/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/domains/{domain_id}/groups/{group_id}/roles", 200, ""},
      {Method::kPut, "/v3/domains/{domain_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kHead, "/v3/domains/{domain_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/domains/{domain_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kDelete, "/v3/domains/{domain_id}/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/system/users/{user_id}/roles", 200, ""},
      {Method::kPut, "/v3/system/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kHead, "/v3/system/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/system/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kDelete, "/v3/system/users/{user_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/system/groups/{group_id}/roles", 200, ""},
      {Method::kPut, "/v3/system/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kHead, "/v3/system/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kGet, "/v3/system/groups/{group_id}/roles/{role_id}", 204, ""},
      {Method::kDelete, "/v3/system/groups/{group_id}/roles/{role_id}", 204, ""},

      {Method::kGet, "/v3/regions", 200, ""},
      {Method::kPost, "/v3/regions", 201, R"({"region":{"description":"x"}})"},
      {Method::kGet, "/v3/regions/{region_id}", 200, ""},
      {Method::kPut,
       "/v3/regions/{region_id}",
       201,
       R"({"region":{}})",
       {{"region_id", "fresh-region"}}},
      {Method::kPatch, "/v3/regions/{region_id}", 200, R"({"region":{"description":"x"}})"},
      {Method::kDelete, "/v3/regions/{region_id}", 204, ""},
      {Method::kGet, "/v3/services", 200, ""},
      {Method::kPost, "/v3/services", 201, R"({"service":{"type":"new-type"}})"},
      {Method::kGet, "/v3/services/{service_id}", 200, ""},
      {Method::kPatch, "/v3/services/{service_id}", 200, R"({"service":{"description":"x"}})"},
      {Method::kDelete, "/v3/services/{service_id}", 204, ""},
      {Method::kGet, "/v3/endpoints", 200, ""},
      {Method::kPost, "/v3/endpoints", 201,
       R"({"endpoint":{"service_id":"{service_id}","interface":"public","url":"http://x"}})"},
      {Method::kGet, "/v3/endpoints/{endpoint_id}", 200, ""},
      {Method::kPatch, "/v3/endpoints/{endpoint_id}", 200, R"({"endpoint":{"url":"http://y"}})"},
      {Method::kDelete, "/v3/endpoints/{endpoint_id}", 204, ""},

      // Stored, uninterpreted resources (admin-only).
      {Method::kGet, "/v3/policies", 200, ""},
      {Method::kPost, "/v3/policies", 201, R"({"policy":{"type":"application/json","blob":"{}"}})"},
      {Method::kGet, "/v3/policies/{policy_id}", 200, ""},
      {Method::kPatch, "/v3/policies/{policy_id}", 200, R"({"policy":{"type":"text/plain"}})"},
      {Method::kDelete, "/v3/policies/{policy_id}", 204, ""},
      {Method::kGet, "/v3/credentials", 200, ""},
      {Method::kPost, "/v3/credentials", 201,
       R"({"credential":{"type":"cert","blob":"b","user_id":"{user_id}"}})"},
      {Method::kGet, "/v3/credentials/{cred_id}", 200, ""},
      {Method::kPatch, "/v3/credentials/{cred_id}", 200, R"({"credential":{"blob":"c"}})"},
      {Method::kDelete, "/v3/credentials/{cred_id}", 204, ""},
      {Method::kGet, "/v3/OS-OAUTH1/consumers", 200, ""},
      {Method::kPost, "/v3/OS-OAUTH1/consumers", 201, R"({"consumer":{"description":"d"}})"},
      {Method::kGet, "/v3/OS-OAUTH1/consumers/{consumer_id}", 200, ""},
      {Method::kPatch, "/v3/OS-OAUTH1/consumers/{consumer_id}", 200,
       R"({"consumer":{"description":"e"}})"},
      {Method::kDelete, "/v3/OS-OAUTH1/consumers/{consumer_id}", 204, ""},
      {Method::kGet, "/v3/OS-EP-FILTER/endpoint_groups", 200, ""},
      {Method::kPost, "/v3/OS-EP-FILTER/endpoint_groups", 201,
       R"({"endpoint_group":{"name":"g","filters":{"interface":"public"}}})"},
      {Method::kGet, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}", 200, ""},
      {Method::kHead, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}", 200, ""},
      {Method::kPatch, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}", 200,
       R"({"endpoint_group":{"name":"h"}})"},
      {Method::kDelete, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}", 204, ""},
      // The world's endpoint group is associated with every caller's project.
      {Method::kPut, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/projects/{project_id}",
       204, ""},
      {Method::kGet, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/projects/{project_id}",
       200, ""},
      {Method::kHead, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/projects/{project_id}",
       200, ""},
      {Method::kDelete,
       "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/projects/{project_id}", 204, ""},
      {Method::kGet, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/projects", 200, ""},
      {Method::kGet, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/endpoints", 200, ""},
      {Method::kGet, "/v3/OS-EP-FILTER/projects/{project_id}/endpoint_groups", 200, ""},

      // Domain configuration: both domains hold {"identity": {"driver", "list_limit"}, "ldap":
      // {"url"}} in the world.
      {Method::kPut, "/v3/domains/{domain_id}/config", 200,
       R"({"config":{"identity":{"driver":"ldap"}}})"},
      {Method::kGet, "/v3/domains/{domain_id}/config", 200, ""},
      {Method::kPatch, "/v3/domains/{domain_id}/config", 200,
       R"({"config":{"ldap":{"url":"ldap://y"}}})"},
      {Method::kDelete, "/v3/domains/{domain_id}/config", 204, ""},
      {Method::kGet, "/v3/domains/{domain_id}/config/{group}", 200, ""},
      {Method::kPatch, "/v3/domains/{domain_id}/config/{group}", 200,
       R"({"config":{"identity":{"driver":"x"}}})"},
      {Method::kDelete, "/v3/domains/{domain_id}/config/{group}", 204, ""},
      {Method::kGet, "/v3/domains/{domain_id}/config/{group}/{option}", 200, ""},
      {Method::kPatch, "/v3/domains/{domain_id}/config/{group}/{option}", 200,
       R"({"config":{"driver":"y"}})"},
      {Method::kDelete, "/v3/domains/{domain_id}/config/{group}/{option}", 204, ""},
      {Method::kGet, "/v3/domains/config/default", 200, ""},
      {Method::kGet, "/v3/domains/config/{group}/default", 200, ""},
      {Method::kGet, "/v3/domains/config/{group}/{option}/default", 200, ""},

      // OS-INHERIT: every caller holds "extra" inherited on its project and both domains, for
      // itself and through the group.
      {Method::kGet,
       "/v3/OS-INHERIT/domains/{domain_id}/users/{user_id}/roles/inherited_to_projects", 200, ""},
      {Method::kPut,
       "/v3/OS-INHERIT/domains/{domain_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kHead,
       "/v3/OS-INHERIT/domains/{domain_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kGet,
       "/v3/OS-INHERIT/domains/{domain_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kDelete,
       "/v3/OS-INHERIT/domains/{domain_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kGet,
       "/v3/OS-INHERIT/domains/{domain_id}/groups/{group_id}/roles/inherited_to_projects", 200, ""},
      {Method::kPut,
       "/v3/OS-INHERIT/domains/{domain_id}/groups/{group_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kHead,
       "/v3/OS-INHERIT/domains/{domain_id}/groups/{group_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kGet,
       "/v3/OS-INHERIT/domains/{domain_id}/groups/{group_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kDelete,
       "/v3/OS-INHERIT/domains/{domain_id}/groups/{group_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kPut,
       "/v3/OS-INHERIT/projects/{project_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kHead,
       "/v3/OS-INHERIT/projects/{project_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kGet,
       "/v3/OS-INHERIT/projects/{project_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kDelete,
       "/v3/OS-INHERIT/projects/{project_id}/users/{user_id}/roles/{role_id}/inherited_to_projects",
       204, ""},
      {Method::kPut,
       "/v3/OS-INHERIT/projects/{project_id}/groups/{group_id}/roles/{role_id}/"
       "inherited_to_projects",
       204, ""},
      {Method::kHead,
       "/v3/OS-INHERIT/projects/{project_id}/groups/{group_id}/roles/{role_id}/"
       "inherited_to_projects",
       204, ""},
      {Method::kGet,
       "/v3/OS-INHERIT/projects/{project_id}/groups/{group_id}/roles/{role_id}/"
       "inherited_to_projects",
       204, ""},
      {Method::kDelete,
       "/v3/OS-INHERIT/projects/{project_id}/groups/{group_id}/roles/{role_id}/"
       "inherited_to_projects",
       204, ""},
  };
}

// Who the callers are in the prepared world.
struct Identity {
  std::string user_id;
  std::string password;
  std::string project_id;
  std::string token;
  std::string app_cred_id;
  std::string ec2_access;
  std::string access_rule_id;
};

struct World {
  std::string dir;  // template: identity.db + keys/
  std::map<Caller, Identity> callers;
  Identity other;
  std::string spare_domain;  // disabled, empty apart from grants
  std::string group;
  std::string role;     // "extra", granted everywhere
  std::string implied;  // "extra" implies "extra2"
  std::string service;  // a service with one endpoint, outside the catalog's identity
  std::string endpoint;
  std::string policy;  // stored documents, one of each kind
  std::string credential;
  std::string consumer;
  std::string endpoint_group;
};

class PolicyMatrixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    set_log_level("error");
    template_dir_ = new TempDir();
    world_ = new World();
    build_world();
  }
  static void TearDownTestSuite() {
    delete world_;
    delete template_dir_;
  }

  // Creates the template world through the API, then closes it.
  static void build_world() {
    World& w = *world_;
    w.dir = template_dir_->path();
    FakeClock clock;
    auto st = store::open_sqlite({.path = w.dir + "/identity.db"});
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    auto m = migrations();
    ASSERT_OK((*st)->migrate(m));
    {
      Node node(**st, clock, test_options(w.dir));
      ASSERT_TRUE(node.service);
      auto boot = node.service->bootstrap({"admin-secret", "http://localhost:5000", ""});
      ASSERT_TRUE(boot.has_value());
      auto ok_status = [](const Reply& r, int want) {
        EXPECT_EQ(r.status, want) << r;
        return r;
      };
      auto post = [&](const std::string& path, const Json& body, const std::string& tok) {
        return node.call(Method::kPost, path, dump_json(body), tok);
      };
      auto put = [&](const std::string& path, const std::string& tok) {
        return ok_status(node.call(Method::kPut, path, "", tok), 204);
      };
      auto login = [&](const std::string& user_id, const std::string& password,
                       const std::string& project_id) {
        Json body = {{"auth",
                      {{"identity",
                        {{"methods", {"password"}},
                         {"password", {{"user", {{"id", user_id}, {"password", password}}}}}}},
                       {"scope", {{"project", {{"id", project_id}}}}}}}};
        Reply r = ok_status(post("/v3/auth/tokens", body, ""), 201);
        return r.header("x-subject-token");
      };
      Identity admin{boot->admin_user_id, "admin-secret", boot->admin_project_id, "", ""};
      admin.token = login(admin.user_id, admin.password, admin.project_id);
      const std::string& tok = admin.token;

      auto make_user = [&](const std::string& name, const std::string& role_id) {
        Identity id;
        id.password = name + "-pw";
        id.project_id =
            ok_status(post("/v3/projects", {{"project", {{"name", name + "-proj"}}}}, tok), 201)
                .body["project"]["id"];
        id.user_id = ok_status(post("/v3/users",
                                    {{"user", {{"name", name}, {"password", id.password}}}}, tok),
                               201)
                         .body["user"]["id"];
        put("/v3/projects/" + id.project_id + "/users/" + id.user_id + "/roles/" + role_id, tok);
        id.token = login(id.user_id, id.password, id.project_id);
        return id;
      };
      Identity member = make_user("member", boot->member_role_id);
      Identity reader = make_user("reader", boot->reader_role_id);
      Identity other = make_user("other", boot->member_role_id);

      w.role = ok_status(post("/v3/roles", {{"role", {{"name", "extra"}}}}, tok), 201)
                   .body["role"]["id"];
      w.implied = ok_status(post("/v3/roles", {{"role", {{"name", "extra2"}}}}, tok), 201)
                      .body["role"]["id"];
      ok_status(node.call(Method::kPut, "/v3/roles/" + w.role + "/implies/" + w.implied, "", tok),
                201);
      w.group = ok_status(post("/v3/groups", {{"group", {{"name", "everyone"}}}}, tok), 201)
                    .body["group"]["id"];
      w.spare_domain =
          ok_status(post("/v3/domains", {{"domain", {{"name", "spare"}, {"enabled", false}}}}, tok),
                    201)
              .body["domain"]["id"];
      ok_status(post("/v3/regions", {{"region", {{"id", "spare-region"}}}}, tok), 201);
      w.service = ok_status(post("/v3/services", {{"service", {{"type", "spare"}}}}, tok), 201)
                      .body["service"]["id"];
      w.endpoint =
          ok_status(
              post(
                  "/v3/endpoints",
                  {{"endpoint",
                    {{"service_id", w.service}, {"interface", "public"}, {"url", "http://spare"}}}},
                  tok),
              201)
              .body["endpoint"]["id"];

      w.policy =
          ok_status(post("/v3/policies", {{"policy", {{"type", "t"}, {"blob", "{}"}}}}, tok), 201)
              .body["policy"]["id"];
      w.credential =
          ok_status(
              post("/v3/credentials",
                   {{"credential", {{"type", "cert"}, {"blob", "b"}, {"user_id", "u"}}}}, tok),
              201)
              .body["credential"]["id"];
      w.consumer =
          ok_status(post("/v3/OS-OAUTH1/consumers", {{"consumer", Json::object()}}, tok), 201)
              .body["consumer"]["id"];
      w.endpoint_group =
          ok_status(
              post("/v3/OS-EP-FILTER/endpoint_groups",
                   {{"endpoint_group", {{"name", "g"}, {"filters", {{"interface", "public"}}}}}},
                   tok),
              201)
              .body["endpoint_group"]["id"];
      for (const std::string& d : {std::string("default"), w.spare_domain}) {
        Json config = {{"identity", {{"driver", "sql"}, {"list_limit", 5}}},
                       {"ldap", {{"url", "ldap://x"}}}};
        ok_status(node.call(Method::kPut, "/v3/domains/" + d + "/config",
                            dump_json({{"config", config}}), tok),
                  201);
      }
      for (Identity* id : {&admin, &member, &reader, &other}) {
        put("/v3/groups/" + w.group + "/users/" + id->user_id, tok);
        put("/v3/projects/" + id->project_id + "/users/" + id->user_id + "/roles/" + w.role, tok);
        put("/v3/projects/" + id->project_id + "/groups/" + w.group + "/roles/" + w.role, tok);
        put("/v3/system/users/" + id->user_id + "/roles/" + w.role, tok);
        for (const std::string& d : {std::string("default"), w.spare_domain}) {
          put("/v3/domains/" + d + "/users/" + id->user_id + "/roles/" + w.role, tok);
        }
        for (const std::string& target :
             {"projects/" + id->project_id, std::string("domains/default"),
              "domains/" + w.spare_domain}) {
          for (const std::string& actor : {"users/" + id->user_id, "groups/" + w.group}) {
            put("/v3/OS-INHERIT/" + target + "/" + actor + "/roles/" + w.role +
                    "/inherited_to_projects",
                tok);
          }
        }
        put("/v3/OS-EP-FILTER/endpoint_groups/" + w.endpoint_group + "/projects/" + id->project_id,
            tok);
        ok_status(node.call(Method::kPut, "/v3/projects/" + id->project_id + "/tags/t1", "", tok),
                  201);
        // Tokens carry the roles of the moment: issue them again now that "extra" exists.
        id->token = login(id->user_id, id->password, id->project_id);
        id->app_cred_id = ok_status(post("/v3/users/" + id->user_id + "/application_credentials",
                                         {{"application_credential", {{"name", "ac"}}}}, id->token),
                                    201)
                              .body["application_credential"]["id"];
        {
          Json ruled = {
              {"application_credential",
               {{"name", "ac-rules"},
                {"access_rules", {{{"service", "compute"}, {"path", "/x"}, {"method", "GET"}}}}}}};
          Reply r = ok_status(
              post("/v3/users/" + id->user_id + "/application_credentials", ruled, id->token), 201);
          id->access_rule_id = r.body["application_credential"]["access_rules"][0]["id"];
          ok_status(node.call(Method::kDelete,
                              "/v3/users/" + id->user_id + "/application_credentials/" +
                                  r.body["application_credential"]["id"].get<std::string>(),
                              "", id->token),
                    204);
        }
        id->ec2_access = ok_status(post("/v3/users/" + id->user_id + "/credentials/OS-EC2",
                                        {{"tenant_id", id->project_id}}, id->token),
                                   201)
                             .body["credential"]["access"];
      }
      put("/v3/system/groups/" + w.group + "/roles/" + w.role, tok);
      for (const std::string& d : {std::string("default"), w.spare_domain}) {
        put("/v3/domains/" + d + "/groups/" + w.group + "/roles/" + w.role, tok);
      }
      w.callers[Caller::kAdmin] = admin;
      w.callers[Caller::kMember] = member;
      w.callers[Caller::kReader] = reader;
      w.callers[Caller::kNone] = member;  // the ids "own" refers to when no token is sent
      w.other = other;
    }
    st->reset();
  }

  static TempDir* template_dir_;
  static World* world_;
};

TempDir* PolicyMatrixTest::template_dir_ = nullptr;
World* PolicyMatrixTest::world_ = nullptr;

std::string substitute(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [key, value] : values) {
    std::string needle = "{" + key + "}";
    for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos)) {
      text.replace(pos, needle.size(), value);
      pos += value.size();
    }
  }
  return text;
}

// What policy says, for a caller on a route whose rule is `rule`.
bool allowed(const Rule& rule, Caller caller, Ownership own) {
  switch (rule.check) {
    case Check::kPublic: return true;
    case Check::kAuthenticated: return caller != Caller::kNone;
    case Check::kAdmin: return caller == Caller::kAdmin;
    case Check::kSelf:
    case Check::kOwnProject:
    case Check::kOwnDomain:
      return caller == Caller::kAdmin || (caller != Caller::kNone && own == Ownership::kOwn);
    case Check::kProjectReader:
    case Check::kProjectMember:
      return caller == Caller::kAdmin || (caller != Caller::kNone && own == Ownership::kOwn);
  }
  return false;
}

TEST_F(PolicyMatrixTest, EveryRouteEveryCaller) {
  ASSERT_FALSE(HasFatalFailure());
  const World& w = *world_;
  std::vector<Row> rows = table();

  // The table and the registered routes must match one to one.
  std::vector<RouteInfo> routes;
  {
    TempDir dir;
    std::filesystem::copy(w.dir, dir.path(), std::filesystem::copy_options::recursive);
    auto st = store::open_sqlite({.path = dir.path() + "/identity.db"});
    ASSERT_TRUE(st.has_value());
    FakeClock clock;
    Node node(**st, clock, test_options(dir.path()));
    ASSERT_TRUE(node.service);
    routes = node.service->route_infos();
  }
  std::map<std::pair<Method, std::string>, const Row*> by_route;
  for (const Row& row : rows) {
    EXPECT_TRUE(by_route.emplace(std::pair{row.method, row.pattern}, &row).second)
        << "duplicate table row " << http::method_name(row.method) << " " << row.pattern;
  }
  std::map<std::pair<Method, std::string>, std::string> rules;
  for (const RouteInfo& r : routes) {
    rules[{r.method, r.pattern}] = r.rule;
    EXPECT_TRUE(by_route.contains({r.method, r.pattern}))
        << "route without a policy-matrix row: " << http::method_name(r.method) << " " << r.pattern
        << " (" << r.rule << ")";
  }
  for (const Row& row : rows) {
    EXPECT_TRUE(rules.contains({row.method, row.pattern}))
        << "table row without a route: " << http::method_name(row.method) << " " << row.pattern;
  }

  int cases = 0;
  for (const Row& row : rows) {
    auto rule_it = rules.find({row.method, row.pattern});
    if (rule_it == rules.end()) continue;
    const Rule* rule = find_rule(rule_it->second);
    ASSERT_NE(rule, nullptr) << rule_it->second;
    for (Caller caller : {Caller::kNone, Caller::kReader, Caller::kMember, Caller::kAdmin}) {
      for (Ownership own : {Ownership::kOwn, Ownership::kOther}) {
        const Identity& me = w.callers.at(caller);
        const Identity& target = own == Ownership::kOwn ? me : w.other;
        std::map<std::string, std::string> values = {
            {"user_id", target.user_id},
            {"password", target.password},
            {"project_id", target.project_id},
            {"app_cred_id", target.app_cred_id},
            {"credential_id", target.ec2_access},
            {"access_rule_id", target.access_rule_id},
            {"domain_id", own == Ownership::kOwn ? std::string("default") : w.spare_domain},
            {"group_id", w.group},
            {"role_id", w.role},
            {"prior_role_id", w.role},
            {"implied_role_id", w.implied},
            {"tag", "t1"},
            {"region_id", "spare-region"},
            {"service_id", w.service},
            {"endpoint_id", w.endpoint},
            {"policy_id", w.policy},
            {"cred_id", w.credential},
            {"consumer_id", w.consumer},
            {"endpoint_group_id", w.endpoint_group},
            {"group", "identity"},
            {"option", "driver"},
        };
        for (const auto& [k, v] : row.params) values[k] = v;
        std::string path = substitute(row.pattern, values);
        std::string body = substitute(row.body, values);
        std::vector<std::pair<std::string, std::string>> headers;
        if (row.pattern == "/v3/auth/tokens" && row.method != Method::kPost) {
          headers.push_back({"x-subject-token", target.token});
        }

        int expected;
        auto exception = row.exceptions.find({caller, own});
        if (!allowed(*rule, caller, own)) {
          expected = caller == Caller::kNone ? 401 : 403;
        } else if (exception != row.exceptions.end()) {
          expected = exception->second;
        } else {
          expected = row.success;
        }

        // A fresh copy of the world for every case.
        TempDir dir;
        std::filesystem::copy(w.dir, dir.path(), std::filesystem::copy_options::recursive);
        auto st = store::open_sqlite({.path = dir.path() + "/identity.db"});
        ASSERT_TRUE(st.has_value()) << st.error().to_string();
        FakeClock clock;
        Node node(**st, clock, test_options(dir.path()));
        ASSERT_TRUE(node.service);
        std::string tok = caller == Caller::kNone ? "" : me.token;
        Reply r = node.call(row.method, path, body, tok, headers);
        ++cases;
        EXPECT_EQ(r.status, expected)
            << http::method_name(row.method) << " " << row.pattern << " [" << rule->name << "] as "
            << name(caller) << " on " << (own == Ownership::kOwn ? "own" : "other") << ": "
            << r.raw.body;
        if (r.status >= 400 && row.method != Method::kHead) {
          EXPECT_TRUE(r.body.contains("error")) << row.pattern << ": " << r.raw.body;
        }
      }
    }
  }
  EXPECT_EQ(cases, static_cast<int>(rows.size()) * 8);
}

}  // namespace
}  // namespace concord::identity::testing

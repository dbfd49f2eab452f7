// Unit tests of the pieces under the API: policy decisions, the revocation index, login
// throttling and effective-role expansion.
#include <gtest/gtest.h>

#include <set>

#include "identity/cache.h"
#include "identity/lockout.h"
#include "identity/policy.h"
#include "identity/revocation.h"
#include "identity_test_util.h"

namespace concord::identity {
namespace {

AuthContext project_caller(std::string project, std::vector<std::string> role_names) {
  AuthContext c;
  c.user_id = "u1";
  c.scope = ScopeKind::kProject;
  c.project_id = std::move(project);
  c.project_domain_id = "default";
  for (const std::string& n : role_names) c.roles.push_back({"id-" + n, n});
  return c;
}

TEST(Policy, GenericProjectRules) {
  Target own{.project_id = "p1"};
  Target other{.project_id = "p2"};
  AuthContext reader = project_caller("p1", {"reader"});
  AuthContext member = project_caller("p1", {"member", "reader"});
  AuthContext admin_elsewhere = project_caller("p9", {"admin"});
  AuthContext no_role = project_caller("p1", {"custom"});

  EXPECT_TRUE(authorize(reader, "project_reader", own).has_value());
  EXPECT_CODE(authorize(reader, "project_member", own), Code::kPermissionDenied);
  EXPECT_CODE(authorize(reader, "project_reader", other), Code::kPermissionDenied);
  EXPECT_TRUE(authorize(member, "project_member", own).has_value());
  EXPECT_TRUE(authorize(member, "project_reader", own).has_value());
  EXPECT_CODE(authorize(member, "project_member", other), Code::kPermissionDenied);
  EXPECT_TRUE(authorize(admin_elsewhere, "project_member", other).has_value());
  EXPECT_TRUE(authorize(admin_elsewhere, "admin", {}).has_value());
  EXPECT_CODE(authorize(no_role, "project_reader", own), Code::kPermissionDenied);
  EXPECT_CODE(authorize(member, "admin", own), Code::kPermissionDenied);
  EXPECT_CODE(authorize(nullptr, "project_reader", own), Code::kUnauthenticated);
  EXPECT_TRUE(authorize(nullptr, "identity:authenticate", {}).has_value());
  EXPECT_CODE(authorize(member, "no-such-rule", own), Code::kInternal);
}

TEST(Policy, OwnershipRules) {
  AuthContext member = project_caller("p1", {"member", "reader"});
  EXPECT_TRUE(authorize(member, "identity:get_user", {.user_id = "u1"}).has_value());
  EXPECT_CODE(authorize(member, "identity:get_user", {.user_id = "u2"}), Code::kPermissionDenied);
  EXPECT_TRUE(authorize(member, "identity:get_domain", {.domain_id = "default"}).has_value());
  EXPECT_CODE(authorize(member, "identity:get_domain", {.domain_id = "d2"}),
              Code::kPermissionDenied);
  EXPECT_TRUE(authorize(member, "identity:get_project", {.project_id = "p1"}).has_value());
  EXPECT_CODE(authorize(member, "identity:list_projects", {}), Code::kPermissionDenied);
  auto denied = authorize(member, "identity:list_projects", {});
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().message(),
            "You are not authorized to perform the requested action: identity:list_projects.");
  // Every rule in the table has a distinct name.
  std::set<std::string_view> names;
  for (const Rule& r : policy_rules()) EXPECT_TRUE(names.insert(r.name).second) << r.name;
}

TEST(RevocationIndex, MatchesByKindAndTime) {
  RevocationIndex idx;
  idx.add({"e1", RevocationKind::kUser, "u1", 100, 100});
  idx.add({"e2", RevocationKind::kAuditId, "a1", 200, 200});
  idx.add({"e3", RevocationKind::kDomain, "d1", 300, 300});
  idx.add({"e4", RevocationKind::kAppCred, "ac", 400, 400});
  idx.add({"e1", RevocationKind::kUser, "u1", 999, 999});  // same id: ignored
  EXPECT_EQ(idx.size(), 4u);

  TokenFacts t{.user_id = "u1", .audit_id = "x", .issued_at_us = 100};
  EXPECT_TRUE(idx.is_revoked(t));
  t.issued_at_us = 101;
  EXPECT_FALSE(idx.is_revoked(t));
  TokenFacts audit{.user_id = "u2", .audit_id = "a1", .issued_at_us = 150};
  EXPECT_TRUE(idx.is_revoked(audit));
  TokenFacts by_project_domain{.user_id = "u2", .project_domain_id = "d1", .issued_at_us = 250};
  EXPECT_TRUE(idx.is_revoked(by_project_domain));
  TokenFacts by_user_domain{.user_id = "u2", .user_domain_id = "d1", .issued_at_us = 301};
  EXPECT_FALSE(idx.is_revoked(by_user_domain));
  TokenFacts app{.user_id = "u2", .app_cred_id = "ac", .issued_at_us = 10000};
  EXPECT_TRUE(idx.is_revoked(app));
  EXPECT_EQ(idx.newest_time_event({.user_id = "u1", .domain_id = "d1"}), 300);

  idx.prune(250);  // drops e1 and e2
  EXPECT_EQ(idx.size(), 2u);
  EXPECT_FALSE(idx.is_revoked({.user_id = "u1", .audit_id = "a1", .issued_at_us = 50}));
  EXPECT_TRUE(idx.is_revoked(by_project_domain));
}

TEST(Lockout, CountsPerUserWithinTheWindow) {
  Lockout l(2, std::chrono::seconds(10));
  SystemTime t0(std::chrono::seconds(1000));
  l.record_failure("u", t0);
  EXPECT_FALSE(l.locked("u", t0));
  l.record_failure("u", t0 + std::chrono::seconds(1));
  EXPECT_TRUE(l.locked("u", t0 + std::chrono::seconds(2)));
  EXPECT_FALSE(l.locked("v", t0 + std::chrono::seconds(2)));
  EXPECT_TRUE(l.locked("u", t0 + std::chrono::seconds(9)));
  EXPECT_FALSE(l.locked("u", t0 + std::chrono::seconds(11)));  // the first failure aged out
  l.record_failure("u", t0 + std::chrono::seconds(12));
  EXPECT_FALSE(l.locked("u", t0 + std::chrono::seconds(12)));  // one failure in the window
  l.record_failure("u", t0 + std::chrono::seconds(13));
  EXPECT_TRUE(l.locked("u", t0 + std::chrono::seconds(13)));
  l.record_success("u");
  EXPECT_FALSE(l.locked("u", t0 + std::chrono::seconds(13)));

  Lockout off(0, std::chrono::seconds(10));
  for (int i = 0; i < 10; ++i) off.record_failure("u", t0);
  EXPECT_FALSE(off.locked("u", t0));
}

TEST(RoleSnapshot, ExpandsImpliedRolesAndDropsDomainRoles) {
  RoleSnapshot s;
  s.by_id.emplace("a", Role{.id = "a", .name = "admin"});
  s.by_id.emplace("m", Role{.id = "m", .name = "member"});
  s.by_id.emplace("r", Role{.id = "r", .name = "reader"});
  s.by_id.emplace("d", Role{.id = "d", .name = "domain-only", .domain_id = "dom"});
  s.implies["a"] = {"m"};
  s.implies["m"] = {"r", "a"};  // a cycle is harmless
  s.implies["d"] = {"r"};
  auto names = [](const std::vector<RoleRef>& v) {
    std::vector<std::string> out;
    for (const RoleRef& r : v) out.push_back(r.name);
    return out;
  };
  EXPECT_EQ(names(s.effective({"m"})), (std::vector<std::string>{"admin", "member", "reader"}));
  EXPECT_EQ(names(s.effective({"d"})), std::vector<std::string>{"reader"});
  EXPECT_EQ(names(s.effective({"r", "r", "missing"})), std::vector<std::string>{"reader"});
  EXPECT_TRUE(s.effective({}).empty());
}

}  // namespace
}  // namespace concord::identity

namespace {
// Stops the shared PostgreSQL server (used when CONCORD_IDENTITY_TEST_STORE=postgres).
[[maybe_unused]] ::testing::Environment* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new concord::test_support::PostgresEnvironment);
}  // namespace

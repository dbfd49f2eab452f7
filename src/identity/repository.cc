#include "identity/repository.h"

#include <nlohmann/json.hpp>
#include <set>

namespace concord::identity {

std::string_view actor_type_name(ActorType a) {
  return a == ActorType::kUser ? "user" : "group";
}

std::string_view target_type_name(TargetType t) {
  switch (t) {
    case TargetType::kProject: return "project";
    case TargetType::kDomain: return "domain";
    case TargetType::kSystem: return "system";
  }
  return "project";
}

std::string_view revocation_kind_name(RevocationKind k) {
  switch (k) {
    case RevocationKind::kAuditId: return "audit";
    case RevocationKind::kUser: return "user";
    case RevocationKind::kProject: return "project";
    case RevocationKind::kDomain: return "domain";
    case RevocationKind::kAppCred: return "app_cred";
  }
  return "audit";
}

std::optional<RevocationKind> parse_revocation_kind(std::string_view s) {
  if (s == "audit") return RevocationKind::kAuditId;
  if (s == "user") return RevocationKind::kUser;
  if (s == "project") return RevocationKind::kProject;
  if (s == "domain") return RevocationKind::kDomain;
  if (s == "app_cred") return RevocationKind::kAppCred;
  return std::nullopt;
}

namespace repo {
namespace {

using store::Row;
using store::Rows;
using store::Value;

Value str(std::string_view s) {
  return std::string(s);
}
Value opt_str(const std::optional<std::string>& s) {
  return s ? Value(*s) : store::null();
}
// "" stands for SQL NULL in columns such as parent_id.
Value empty_as_null(const std::string& s) {
  return s.empty() ? store::null() : Value(s);
}
Value boolean(bool b) {
  return int64_t{b ? 1 : 0};
}
Value opt_int(const std::optional<int64_t>& v) {
  return v ? Value(*v) : store::null();
}

Json json_or(const std::string& text, Json fallback) {
  if (text.empty()) return fallback;
  auto parsed = parse_json(text);
  if (!parsed) return fallback;
  return std::move(*parsed);
}

std::vector<std::string> string_list(const std::string& text) {
  std::vector<std::string> out;
  Json j = json_or(text, Json::array());
  if (!j.is_array()) return out;
  for (const Json& e : j) {
    if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

std::string dump_list(const std::vector<std::string>& v) {
  return dump_json(Json(v));
}

// Appends "col = ?" conditions; column names come from code only.
class Where {
 public:
  void eq(std::string_view col, Value v) {
    add(std::string(col) + " = ?");
    params_.push_back(std::move(v));
  }
  void raw(std::string_view clause) { add(std::string(clause)); }
  void raw(std::string_view clause, Value v) {
    add(std::string(clause));
    params_.push_back(std::move(v));
  }
  const std::string& sql() const { return sql_; }
  std::vector<Value>& params() { return params_; }

 private:
  void add(const std::string& clause) {
    sql_ += sql_.empty() ? " WHERE " : " AND ";
    sql_ += clause;
  }
  std::string sql_;
  std::vector<Value> params_;
};

Result<Rows> query(Tx& tx, const std::string& sql, std::vector<Value>& params) {
  return tx.query(sql, std::span<const Value>(params.data(), params.size()));
}

Status expect_one(Result<int64_t> changed, std::string_view what, std::string_view id) {
  if (!changed) return std::unexpected(std::move(changed.error()));
  if (*changed == 0) {
    return fail(Code::kNotFound,
                "Could not find " + std::string(what) + ": " + std::string(id) + ".");
  }
  return ok();
}

// ---- row mappings ----
constexpr std::string_view kProjectCols =
    "id, name, domain_id, parent_id, is_domain, enabled, description, tags, extra, revision";
Project to_project(const Row& r) {
  Project p;
  p.id = r.text(0);
  p.name = r.text(1);
  p.domain_id = r.text(2);
  p.parent_id = r.text(3);
  p.is_domain = r.boolean(4);
  p.enabled = r.boolean(5);
  p.description = r.opt_text(6);
  p.tags = string_list(r.text(7));
  p.extra = json_or(r.text(8), Json::object());
  p.revision = r.integer(9);
  return p;
}

constexpr std::string_view kUserCols =
    "id, domain_id, name, enabled, default_project_id, password_hash, password_expires_at, extra, "
    "revision";
User to_user(const Row& r) {
  User u;
  u.id = r.text(0);
  u.domain_id = r.text(1);
  u.name = r.text(2);
  u.enabled = r.boolean(3);
  u.default_project_id = r.text(4);
  u.password_hash = r.text(5);
  if (!r.is_null(6)) u.password_expires_at = r.integer(6);
  u.extra = json_or(r.text(7), Json::object());
  u.revision = r.integer(8);
  return u;
}

constexpr std::string_view kGroupCols = "id, domain_id, name, description, extra, revision";
Group to_group(const Row& r) {
  Group g;
  g.id = r.text(0);
  g.domain_id = r.text(1);
  g.name = r.text(2);
  g.description = r.opt_text(3);
  g.extra = json_or(r.text(4), Json::object());
  g.revision = r.integer(5);
  return g;
}

constexpr std::string_view kRoleCols = "id, name, domain_id, description, extra, revision";
Role to_role(const Row& r) {
  Role x;
  x.id = r.text(0);
  x.name = r.text(1);
  x.domain_id = r.text(2);
  x.description = r.opt_text(3);
  x.extra = json_or(r.text(4), Json::object());
  x.revision = r.integer(5);
  return x;
}

constexpr std::string_view kRegionCols = "id, description, parent_region_id, extra, revision";
Region to_region(const Row& r) {
  Region x;
  x.id = r.text(0);
  x.description = r.text(1);
  x.parent_region_id = r.text(2);
  x.extra = json_or(r.text(3), Json::object());
  x.revision = r.integer(4);
  return x;
}

constexpr std::string_view kServiceCols = "id, type, enabled, extra, revision";
Service to_service(const Row& r) {
  Service s;
  s.id = r.text(0);
  s.type = r.text(1);
  s.enabled = r.boolean(2);
  s.extra = json_or(r.text(3), Json::object());
  s.revision = r.integer(4);
  return s;
}

constexpr std::string_view kEndpointCols =
    "id, service_id, interface, region_id, url, enabled, extra, revision";
Endpoint to_endpoint(const Row& r) {
  Endpoint e;
  e.id = r.text(0);
  e.service_id = r.text(1);
  e.interface = r.text(2);
  e.region_id = r.text(3);
  e.url = r.text(4);
  e.enabled = r.boolean(5);
  e.extra = json_or(r.text(6), Json::object());
  e.revision = r.integer(7);
  return e;
}

constexpr std::string_view kAppCredCols =
    "id, user_id, project_id, name, description, secret_hash, expires_at, unrestricted, roles, "
    "access_rules, created_at";
AppCred to_app_cred(const Row& r) {
  AppCred a;
  a.id = r.text(0);
  a.user_id = r.text(1);
  a.project_id = r.text(2);
  a.name = r.text(3);
  a.description = r.opt_text(4);
  a.secret_hash = r.text(5);
  if (!r.is_null(6)) a.expires_at = r.integer(6);
  a.unrestricted = r.boolean(7);
  a.role_ids = string_list(r.text(8));
  a.access_rules = json_or(r.text(9), Json::array());
  a.created_at = r.integer(10);
  return a;
}

constexpr std::string_view kAssignmentCols =
    "actor_type, actor_id, target_type, target_id, role_id";
Assignment to_assignment(const Row& r) {
  Assignment a;
  a.actor_type = r.text(0) == "group" ? ActorType::kGroup : ActorType::kUser;
  a.actor_id = r.text(1);
  std::string t = r.text(2);
  constexpr std::string_view kInherited = ".inherited";
  if (t.ends_with(kInherited)) {
    a.inherited = true;
    t.resize(t.size() - kInherited.size());
  }
  a.target_type = t == "domain"   ? TargetType::kDomain
                  : t == "system" ? TargetType::kSystem
                                  : TargetType::kProject;
  a.target_id = r.text(3);
  a.role_id = r.text(4);
  return a;
}

template <typename T, typename F>
Result<std::optional<T>> get_one(Tx& tx, std::string_view cols, std::string_view table,
                                 std::string_view id, F map) {
  std::string sql = "SELECT " + std::string(cols) + " FROM " + std::string(table) + " WHERE id = ?";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(id)}));
  if (rows.empty()) return std::optional<T>();
  return std::optional<T>(map(rows[0]));
}

template <typename T, typename F>
Result<std::vector<T>> list_where(Tx& tx, std::string_view cols, std::string_view table,
                                  Where& where, std::string_view order, F map) {
  std::string sql = "SELECT " + std::string(cols) + " FROM " + std::string(table) + where.sql() +
                    " ORDER BY " + std::string(order);
  CONCORD_ASSIGN_OR_RETURN(Rows rows, query(tx, sql, where.params()));
  std::vector<T> out;
  out.reserve(rows.size());
  for (const Row& r : rows) out.push_back(map(r));
  return out;
}

}  // namespace

// ---- projects ----
Result<std::optional<Project>> get_project(Tx& tx, std::string_view id) {
  return get_one<Project>(tx, kProjectCols, "identity_projects", id, to_project);
}

Result<std::optional<Project>> find_project_by_name(Tx& tx, std::string_view domain_id,
                                                    std::string_view name) {
  std::string sql = "SELECT " + std::string(kProjectCols) +
                    " FROM identity_projects WHERE domain_id = ? AND name = ?";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(domain_id), str(name)}));
  if (rows.empty()) return std::optional<Project>();
  return std::optional<Project>(to_project(rows[0]));
}

Result<std::vector<Project>> list_projects(Tx& tx, const ProjectFilter& f) {
  Where w;
  if (f.name) w.eq("name", *f.name);
  if (f.domain_id) w.eq("domain_id", *f.domain_id);
  if (f.parent_id) w.eq("parent_id", *f.parent_id);
  if (f.enabled) w.eq("enabled", boolean(*f.enabled));
  if (f.is_domain) w.eq("is_domain", boolean(*f.is_domain));
  return list_where<Project>(tx, kProjectCols, "identity_projects", w, "name, id", to_project);
}

Status insert_project(Tx& tx, const Project& p, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(tx.exec(
      "INSERT INTO identity_projects (id, name, domain_id, parent_id, is_domain, enabled, "
      "description, tags, extra, revision, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
      {p.id, p.name, p.domain_id, empty_as_null(p.parent_id), boolean(p.is_domain),
       boolean(p.enabled), opt_str(p.description), dump_list(p.tags), dump_json(p.extra), now_us}));
  return ok();
}

Status update_project(Tx& tx, const Project& p) {
  return expect_one(
      tx.exec("UPDATE identity_projects SET name = ?, parent_id = ?, enabled = ?, description = ?, "
              "tags = ?, extra = ?, revision = revision + 1 WHERE id = ?",
              {p.name, empty_as_null(p.parent_id), boolean(p.enabled), opt_str(p.description),
               dump_list(p.tags), dump_json(p.extra), p.id}),
      "project", p.id);
}

Status delete_project(Tx& tx, std::string_view id) {
  return expect_one(tx.exec("DELETE FROM identity_projects WHERE id = ?", {str(id)}), "project",
                    id);
}

Result<bool> project_has_children(Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows,
      tx.query("SELECT 1 FROM identity_projects WHERE parent_id = ? AND is_domain = 0 LIMIT 1",
               {str(id)}));
  return !rows.empty();
}

// ---- users ----
Result<std::optional<User>> get_user(Tx& tx, std::string_view id) {
  return get_one<User>(tx, kUserCols, "identity_users", id, to_user);
}

Result<std::optional<User>> find_user_by_name(Tx& tx, std::string_view domain_id,
                                              std::string_view name) {
  std::string sql =
      "SELECT " + std::string(kUserCols) + " FROM identity_users WHERE domain_id = ? AND name = ?";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(domain_id), str(name)}));
  if (rows.empty()) return std::optional<User>();
  return std::optional<User>(to_user(rows[0]));
}

Result<std::vector<User>> list_users(Tx& tx, const UserFilter& f) {
  Where w;
  if (f.name) w.eq("name", *f.name);
  if (f.domain_id) w.eq("domain_id", *f.domain_id);
  if (f.enabled) w.eq("enabled", boolean(*f.enabled));
  return list_where<User>(tx, kUserCols, "identity_users", w, "name, id", to_user);
}

Status insert_user(Tx& tx, const User& u, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_users (id, domain_id, name, enabled, default_project_id, "
              "password_hash, password_created_at, password_expires_at, extra, revision, "
              "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
              {u.id, u.domain_id, u.name, boolean(u.enabled), empty_as_null(u.default_project_id),
               empty_as_null(u.password_hash), u.password_hash.empty() ? store::null() : now_us,
               opt_int(u.password_expires_at), dump_json(u.extra), now_us}));
  return ok();
}

Status update_user(Tx& tx, const User& u) {
  return expect_one(
      tx.exec("UPDATE identity_users SET name = ?, enabled = ?, default_project_id = ?, "
              "password_hash = ?, password_expires_at = ?, extra = ?, revision = revision + 1 "
              "WHERE id = ?",
              {u.name, boolean(u.enabled), empty_as_null(u.default_project_id),
               empty_as_null(u.password_hash), opt_int(u.password_expires_at), dump_json(u.extra),
               u.id}),
      "user", u.id);
}

Status delete_user(Tx& tx, std::string_view id) {
  return expect_one(tx.exec("DELETE FROM identity_users WHERE id = ?", {str(id)}), "user", id);
}

Status clear_default_project(Tx& tx, std::string_view project_id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("UPDATE identity_users SET default_project_id = NULL, revision = revision + 1 "
              "WHERE default_project_id = ?",
              {str(project_id)}));
  return ok();
}

// ---- groups ----
Result<std::optional<Group>> get_group(Tx& tx, std::string_view id) {
  return get_one<Group>(tx, kGroupCols, "identity_groups", id, to_group);
}

Result<std::vector<Group>> list_groups(Tx& tx, const GroupFilter& f) {
  Where w;
  if (f.name) w.eq("name", *f.name);
  if (f.domain_id) w.eq("domain_id", *f.domain_id);
  return list_where<Group>(tx, kGroupCols, "identity_groups", w, "name, id", to_group);
}

Status insert_group(Tx& tx, const Group& g, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_groups (id, domain_id, name, description, extra, revision, "
              "created_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
              {g.id, g.domain_id, g.name, opt_str(g.description), dump_json(g.extra), now_us}));
  return ok();
}

Status update_group(Tx& tx, const Group& g) {
  return expect_one(tx.exec("UPDATE identity_groups SET name = ?, description = ?, extra = ?, "
                            "revision = revision + 1 WHERE id = ?",
                            {g.name, opt_str(g.description), dump_json(g.extra), g.id}),
                    "group", g.id);
}

Status delete_group(Tx& tx, std::string_view id) {
  return expect_one(tx.exec("DELETE FROM identity_groups WHERE id = ?", {str(id)}), "group", id);
}

Status add_member(Tx& tx, std::string_view group_id, std::string_view user_id) {
  CONCORD_RETURN_IF_ERROR(tx.exec(
      "INSERT INTO identity_group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
      {str(group_id), str(user_id)}));
  return ok();
}

Result<bool> remove_member(Tx& tx, std::string_view group_id, std::string_view user_id) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("DELETE FROM identity_group_members WHERE group_id = ? AND user_id = ?",
                         {str(group_id), str(user_id)}));
  return n > 0;
}

Result<bool> is_member(Tx& tx, std::string_view group_id, std::string_view user_id) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows, tx.query("SELECT 1 FROM identity_group_members WHERE group_id = ? AND user_id = ?",
                          {str(group_id), str(user_id)}));
  return !rows.empty();
}

Result<std::vector<User>> list_group_users(Tx& tx, std::string_view group_id) {
  // Columns are qualified in a join, so the list is spelled out.
  std::string sql =
      "SELECT u.id, u.domain_id, u.name, u.enabled, u.default_project_id, u.password_hash, "
      "u.password_expires_at, u.extra, u.revision FROM identity_users u "
      "JOIN identity_group_members m ON m.user_id = u.id WHERE m.group_id = ? "
      "ORDER BY u.name, u.id";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(group_id)}));
  std::vector<User> out;
  for (const Row& r : rows) out.push_back(to_user(r));
  return out;
}

Result<std::vector<Group>> list_user_groups(Tx& tx, std::string_view user_id) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows,
      tx.query("SELECT g.id, g.domain_id, g.name, g.description, g.extra, g.revision "
               "FROM identity_groups g JOIN identity_group_members m ON m.group_id = g.id "
               "WHERE m.user_id = ? ORDER BY g.name, g.id",
               {str(user_id)}));
  std::vector<Group> out;
  for (const Row& r : rows) out.push_back(to_group(r));
  return out;
}

Status delete_memberships_of_user(Tx& tx, std::string_view user_id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_group_members WHERE user_id = ?", {str(user_id)}));
  return ok();
}

Status delete_memberships_of_group(Tx& tx, std::string_view group_id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_group_members WHERE group_id = ?", {str(group_id)}));
  return ok();
}

// ---- roles ----
Result<std::optional<Role>> get_role(Tx& tx, std::string_view id) {
  return get_one<Role>(tx, kRoleCols, "identity_roles", id, to_role);
}

Result<std::optional<Role>> find_role_by_name(Tx& tx, std::string_view domain_id,
                                              std::string_view name) {
  std::string sql =
      "SELECT " + std::string(kRoleCols) + " FROM identity_roles WHERE domain_id = ? AND name = ?";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(domain_id), str(name)}));
  if (rows.empty()) return std::optional<Role>();
  return std::optional<Role>(to_role(rows[0]));
}

Result<std::vector<Role>> list_roles(Tx& tx, const RoleFilter& f) {
  Where w;
  if (f.name) w.eq("name", *f.name);
  w.eq("domain_id", f.domain_id);
  return list_where<Role>(tx, kRoleCols, "identity_roles", w, "name, id", to_role);
}

Result<std::vector<Role>> list_all_roles(Tx& tx) {
  Where w;
  return list_where<Role>(tx, kRoleCols, "identity_roles", w, "name, id", to_role);
}

Status insert_role(Tx& tx, const Role& r, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_roles (id, name, domain_id, description, extra, revision, "
              "created_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
              {r.id, r.name, r.domain_id, opt_str(r.description), dump_json(r.extra), now_us}));
  return ok();
}

Status update_role(Tx& tx, const Role& r) {
  return expect_one(tx.exec("UPDATE identity_roles SET name = ?, description = ?, extra = ?, "
                            "revision = revision + 1 WHERE id = ?",
                            {r.name, opt_str(r.description), dump_json(r.extra), r.id}),
                    "role", r.id);
}

Status delete_role(Tx& tx, std::string_view id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_implied_roles WHERE prior_role_id = ? OR implied_role_id = ?",
              {str(id), str(id)}));
  CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM identity_assignments WHERE role_id = ?", {str(id)}));
  return expect_one(tx.exec("DELETE FROM identity_roles WHERE id = ?", {str(id)}), "role", id);
}

Result<std::vector<ImpliedRule>> list_implied_rules(Tx& tx) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows, tx.query("SELECT prior_role_id, implied_role_id FROM identity_implied_roles "
                          "ORDER BY prior_role_id, implied_role_id"));
  std::vector<ImpliedRule> out;
  for (const Row& r : rows) out.push_back({r.text(0), r.text(1)});
  return out;
}

Result<bool> has_implied_rule(Tx& tx, std::string_view prior, std::string_view implied) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows, tx.query("SELECT 1 FROM identity_implied_roles WHERE prior_role_id = ? AND "
                          "implied_role_id = ?",
                          {str(prior), str(implied)}));
  return !rows.empty();
}

Status insert_implied_rule(Tx& tx, std::string_view prior, std::string_view implied) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_implied_roles (prior_role_id, implied_role_id) VALUES (?, ?) "
              "ON CONFLICT DO NOTHING",
              {str(prior), str(implied)}));
  return ok();
}

Result<bool> delete_implied_rule(Tx& tx, std::string_view prior, std::string_view implied) {
  CONCORD_ASSIGN_OR_RETURN(int64_t n,
                           tx.exec("DELETE FROM identity_implied_roles WHERE prior_role_id = ? AND "
                                   "implied_role_id = ?",
                                   {str(prior), str(implied)}));
  return n > 0;
}

// ---- assignments ----
namespace {
// The target_type column: "project", "domain", "system", or "<type>.inherited" (OS-INHERIT).
std::string stored_target_name(TargetType t, bool inherited) {
  std::string out(target_type_name(t));
  if (inherited) out += ".inherited";
  return out;
}
Value stored_target(TargetType t, bool inherited) {
  return stored_target_name(t, inherited);
}
}  // namespace

Status insert_assignment(Tx& tx, const Assignment& a) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_assignments (actor_type, actor_id, target_type, target_id, "
              "role_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
              {str(actor_type_name(a.actor_type)), a.actor_id,
               stored_target(a.target_type, a.inherited), a.target_id, a.role_id}));
  return ok();
}

Result<bool> delete_assignment(Tx& tx, const Assignment& a) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("DELETE FROM identity_assignments WHERE actor_type = ? AND actor_id = ? AND "
              "target_type = ? AND target_id = ? AND role_id = ?",
              {str(actor_type_name(a.actor_type)), a.actor_id,
               stored_target(a.target_type, a.inherited), a.target_id, a.role_id}));
  return n > 0;
}

Result<bool> has_assignment(Tx& tx, const Assignment& a) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows,
      tx.query("SELECT 1 FROM identity_assignments WHERE actor_type = ? AND actor_id = ? AND "
               "target_type = ? AND target_id = ? AND role_id = ?",
               {str(actor_type_name(a.actor_type)), a.actor_id,
                stored_target(a.target_type, a.inherited), a.target_id, a.role_id}));
  return !rows.empty();
}

Result<std::vector<Assignment>> list_assignments(Tx& tx, const AssignmentFilter& f) {
  Where w;
  if (f.actor_type) w.eq("actor_type", str(actor_type_name(*f.actor_type)));
  if (f.actor_id) w.eq("actor_id", *f.actor_id);
  if (f.target_type) w.eq("target_type", stored_target(*f.target_type, f.inherited));
  if (f.target_id) w.eq("target_id", *f.target_id);
  if (f.role_id) w.eq("role_id", *f.role_id);
  return list_where<Assignment>(tx, kAssignmentCols, "identity_assignments", w,
                                "target_type, target_id, actor_type, actor_id, role_id",
                                to_assignment);
}

Status delete_assignments_of_actor(Tx& tx, ActorType type, std::string_view actor_id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_assignments WHERE actor_type = ? AND actor_id = ?",
              {str(actor_type_name(type)), str(actor_id)}));
  return ok();
}

Status delete_assignments_on_target(Tx& tx, TargetType type, std::string_view target_id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_assignments WHERE target_type IN (?, ?) AND target_id = ?",
              {stored_target(type, false), stored_target(type, true), str(target_id)}));
  return ok();
}

Result<std::vector<std::string>> assigned_role_ids(Tx& tx, std::string_view user_id,
                                                   TargetType type, std::string_view target_id) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows,
      tx.query("SELECT role_id FROM identity_assignments WHERE actor_type = 'user' AND "
               "actor_id = ? AND target_type = ? AND target_id = ? "
               "UNION SELECT a.role_id FROM identity_assignments a JOIN identity_group_members m "
               "ON a.actor_type = 'group' AND a.actor_id = m.group_id WHERE m.user_id = ? AND "
               "a.target_type = ? AND a.target_id = ?",
               {str(user_id), str(target_type_name(type)), str(target_id), str(user_id),
                str(target_type_name(type)), str(target_id)}));
  std::vector<std::string> out;
  for (const Row& r : rows) out.push_back(r.text(0));
  return out;
}

Result<std::vector<std::string>> inherited_role_ids(Tx& tx, std::string_view user_id,
                                                    std::string_view project_id) {
  std::vector<std::pair<Value, std::string>> sources;  // stored target type, target id
  CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, get_project(tx, project_id));
  if (!p || p->is_domain) return std::vector<std::string>();
  sources.emplace_back(stored_target(TargetType::kDomain, true), p->domain_id);
  // Ancestors up to the domain; the depth bound guards against a corrupt cycle.
  std::string parent = p->parent_id;
  for (int depth = 0; depth < 128 && !parent.empty() && parent != p->domain_id; ++depth) {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Project> a, get_project(tx, parent));
    if (!a || a->is_domain) break;
    sources.emplace_back(stored_target(TargetType::kProject, true), a->id);
    parent = a->parent_id;
  }
  std::vector<std::string> out;
  for (const auto& [type, id] : sources) {
    CONCORD_ASSIGN_OR_RETURN(
        Rows rows,
        tx.query("SELECT role_id FROM identity_assignments WHERE actor_type = 'user' AND "
                 "actor_id = ? AND target_type = ? AND target_id = ? "
                 "UNION SELECT a.role_id FROM identity_assignments a JOIN identity_group_members "
                 "m ON a.actor_type = 'group' AND a.actor_id = m.group_id WHERE m.user_id = ? AND "
                 "a.target_type = ? AND a.target_id = ?",
                 {str(user_id), type, id, str(user_id), type, id}));
    for (const Row& r : rows) out.push_back(r.text(0));
  }
  return out;
}

Result<std::vector<std::string>> targets_of_user(Tx& tx, std::string_view user_id,
                                                 TargetType type) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows,
      tx.query(
          "SELECT target_id FROM identity_assignments WHERE actor_type = 'user' AND "
          "actor_id = ? AND target_type = ? "
          "UNION SELECT a.target_id FROM identity_assignments a JOIN identity_group_members "
          "m ON a.actor_type = 'group' AND a.actor_id = m.group_id WHERE m.user_id = ? AND "
          "a.target_type = ?",
          {str(user_id), str(target_type_name(type)), str(user_id), str(target_type_name(type))}));
  std::vector<std::string> out;
  for (const Row& r : rows) out.push_back(r.text(0));
  if (type != TargetType::kProject) return out;
  // Projects reached through inherited grants (OS-INHERIT): a domain's projects, a project's
  // subtree.
  CONCORD_ASSIGN_OR_RETURN(
      Rows inherited,
      tx.query(
          "SELECT target_type, target_id FROM identity_assignments WHERE actor_type = "
          "'user' AND actor_id = ? AND target_type IN (?, ?) "
          "UNION SELECT a.target_type, a.target_id FROM identity_assignments a JOIN "
          "identity_group_members m ON a.actor_type = 'group' AND a.actor_id = m.group_id "
          "WHERE m.user_id = ? AND a.target_type IN (?, ?)",
          {str(user_id), stored_target(TargetType::kDomain, true),
           stored_target(TargetType::kProject, true), str(user_id),
           stored_target(TargetType::kDomain, true), stored_target(TargetType::kProject, true)}));
  if (inherited.empty()) return out;
  std::set<std::string> seen(out.begin(), out.end());
  for (const Row& r : inherited) {
    ProjectFilter f;
    f.is_domain = false;
    std::vector<std::string> frontier;
    if (r.text(0) == stored_target_name(TargetType::kDomain, true)) {
      f.domain_id = r.text(1);
      CONCORD_ASSIGN_OR_RETURN(std::vector<Project> in_domain, list_projects(tx, f));
      for (const Project& p : in_domain) {
        if (seen.insert(p.id).second) out.push_back(p.id);
      }
      continue;
    }
    frontier.push_back(r.text(1));
    for (size_t i = 0; i < frontier.size() && i < 100000; ++i) {
      f.parent_id = frontier[i];
      CONCORD_ASSIGN_OR_RETURN(std::vector<Project> children, list_projects(tx, f));
      for (const Project& p : children) {
        frontier.push_back(p.id);
        if (seen.insert(p.id).second) out.push_back(p.id);
      }
    }
  }
  return out;
}

// ---- regions ----
Result<std::optional<Region>> get_region(Tx& tx, std::string_view id) {
  return get_one<Region>(tx, kRegionCols, "identity_regions", id, to_region);
}

Result<std::vector<Region>> list_regions(Tx& tx, const std::optional<std::string>& parent) {
  Where w;
  if (parent) w.eq("parent_region_id", *parent);
  return list_where<Region>(tx, kRegionCols, "identity_regions", w, "id", to_region);
}

Status insert_region(Tx& tx, const Region& r, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(tx.exec(
      "INSERT INTO identity_regions (id, description, parent_region_id, extra, revision, "
      "created_at) VALUES (?, ?, ?, ?, 1, ?)",
      {r.id, r.description, empty_as_null(r.parent_region_id), dump_json(r.extra), now_us}));
  return ok();
}

Status update_region(Tx& tx, const Region& r) {
  return expect_one(
      tx.exec("UPDATE identity_regions SET description = ?, parent_region_id = ?, extra = ?, "
              "revision = revision + 1 WHERE id = ?",
              {r.description, empty_as_null(r.parent_region_id), dump_json(r.extra), r.id}),
      "region", r.id);
}

Status delete_region(Tx& tx, std::string_view id) {
  return expect_one(tx.exec("DELETE FROM identity_regions WHERE id = ?", {str(id)}), "region", id);
}

Result<bool> region_in_use(Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows, tx.query("SELECT 1 FROM identity_regions WHERE parent_region_id = ? UNION "
                          "SELECT 1 FROM identity_endpoints WHERE region_id = ?",
                          {str(id), str(id)}));
  return !rows.empty();
}

// ---- services ----
Result<std::optional<Service>> get_service(Tx& tx, std::string_view id) {
  return get_one<Service>(tx, kServiceCols, "identity_services", id, to_service);
}

Result<std::vector<Service>> list_services(Tx& tx, const ServiceFilter& f) {
  Where w;
  if (f.type) w.eq("type", *f.type);
  CONCORD_ASSIGN_OR_RETURN(
      std::vector<Service> all,
      list_where<Service>(tx, kServiceCols, "identity_services", w, "type, id", to_service));
  if (!f.name) return all;
  // The name lives in the free-form attributes, as in Keystone.
  std::vector<Service> out;
  for (Service& s : all) {
    if (s.name() == *f.name) out.push_back(std::move(s));
  }
  return out;
}

Status insert_service(Tx& tx, const Service& s, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_services (id, type, enabled, extra, revision, created_at) "
              "VALUES (?, ?, ?, ?, 1, ?)",
              {s.id, s.type, boolean(s.enabled), dump_json(s.extra), now_us}));
  return ok();
}

Status update_service(Tx& tx, const Service& s) {
  return expect_one(tx.exec("UPDATE identity_services SET type = ?, enabled = ?, extra = ?, "
                            "revision = revision + 1 WHERE id = ?",
                            {s.type, boolean(s.enabled), dump_json(s.extra), s.id}),
                    "service", s.id);
}

Status delete_service(Tx& tx, std::string_view id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_endpoints WHERE service_id = ?", {str(id)}));
  return expect_one(tx.exec("DELETE FROM identity_services WHERE id = ?", {str(id)}), "service",
                    id);
}

// ---- endpoints ----
Result<std::optional<Endpoint>> get_endpoint(Tx& tx, std::string_view id) {
  return get_one<Endpoint>(tx, kEndpointCols, "identity_endpoints", id, to_endpoint);
}

Result<std::vector<Endpoint>> list_endpoints(Tx& tx, const EndpointFilter& f) {
  Where w;
  if (f.service_id) w.eq("service_id", *f.service_id);
  if (f.interface) w.eq("interface", *f.interface);
  if (f.region_id) w.eq("region_id", *f.region_id);
  return list_where<Endpoint>(tx, kEndpointCols, "identity_endpoints", w,
                              "service_id, interface, region_id, id", to_endpoint);
}

Status insert_endpoint(Tx& tx, const Endpoint& e, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_endpoints (id, service_id, interface, region_id, url, "
              "enabled, extra, revision, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
              {e.id, e.service_id, e.interface, empty_as_null(e.region_id), e.url,
               boolean(e.enabled), dump_json(e.extra), now_us}));
  return ok();
}

Status update_endpoint(Tx& tx, const Endpoint& e) {
  return expect_one(
      tx.exec("UPDATE identity_endpoints SET service_id = ?, interface = ?, region_id = ?, "
              "url = ?, enabled = ?, extra = ?, revision = revision + 1 WHERE id = ?",
              {e.service_id, e.interface, empty_as_null(e.region_id), e.url, boolean(e.enabled),
               dump_json(e.extra), e.id}),
      "endpoint", e.id);
}

Status delete_endpoint(Tx& tx, std::string_view id) {
  return expect_one(tx.exec("DELETE FROM identity_endpoints WHERE id = ?", {str(id)}), "endpoint",
                    id);
}

// ---- application credentials ----
Result<std::optional<AppCred>> get_app_cred(Tx& tx, std::string_view id) {
  return get_one<AppCred>(tx, kAppCredCols, "identity_app_creds", id, to_app_cred);
}

Result<std::optional<AppCred>> find_app_cred_by_name(Tx& tx, std::string_view user_id,
                                                     std::string_view name) {
  std::string sql = "SELECT " + std::string(kAppCredCols) +
                    " FROM identity_app_creds WHERE user_id = ? AND name = ?";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(user_id), str(name)}));
  if (rows.empty()) return std::optional<AppCred>();
  return std::optional<AppCred>(to_app_cred(rows[0]));
}

Result<std::vector<AppCred>> list_app_creds(Tx& tx, std::string_view user_id,
                                            const std::optional<std::string>& name) {
  Where w;
  w.eq("user_id", str(user_id));
  if (name) w.eq("name", *name);
  return list_where<AppCred>(tx, kAppCredCols, "identity_app_creds", w, "name, id", to_app_cred);
}

namespace {
Result<std::vector<std::string>> ids(Tx& tx, const char* sql, std::string_view param) {
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(param)}));
  std::vector<std::string> out;
  for (const Row& r : rows) out.push_back(r.text(0));
  return out;
}
}  // namespace

Result<std::vector<std::string>> app_cred_ids_of_user(Tx& tx, std::string_view user_id) {
  return ids(tx, "SELECT id FROM identity_app_creds WHERE user_id = ?", user_id);
}

Result<std::vector<std::string>> app_cred_ids_of_project(Tx& tx, std::string_view project_id) {
  return ids(tx, "SELECT id FROM identity_app_creds WHERE project_id = ?", project_id);
}

Status insert_app_cred(Tx& tx, const AppCred& a) {
  CONCORD_RETURN_IF_ERROR(tx.exec(
      "INSERT INTO identity_app_creds (id, user_id, project_id, name, description, secret_hash, "
      "expires_at, unrestricted, roles, access_rules, created_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {a.id, a.user_id, a.project_id, a.name, opt_str(a.description), a.secret_hash,
       opt_int(a.expires_at), boolean(a.unrestricted), dump_list(a.role_ids),
       dump_json(a.access_rules), a.created_at}));
  return ok();
}

Status delete_app_cred(Tx& tx, std::string_view id) {
  return expect_one(tx.exec("DELETE FROM identity_app_creds WHERE id = ?", {str(id)}),
                    "application credential", id);
}

// ---- EC2 credentials ----
namespace {
Ec2Credential to_ec2(const Row& r) {
  return {r.text(0), r.text(1), r.text(2), r.text(3)};
}
}  // namespace

Result<std::optional<Ec2Credential>> get_ec2(Tx& tx, std::string_view access) {
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query("SELECT access, user_id, project_id, secret FROM "
                                               "identity_ec2_credentials WHERE access = ?",
                                               {str(access)}));
  if (rows.empty()) return std::optional<Ec2Credential>();
  return std::optional<Ec2Credential>(to_ec2(rows[0]));
}

Result<std::vector<Ec2Credential>> list_ec2(Tx& tx, std::string_view user_id) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows, tx.query("SELECT access, user_id, project_id, secret FROM "
                          "identity_ec2_credentials WHERE user_id = ? ORDER BY created_at, access",
                          {str(user_id)}));
  std::vector<Ec2Credential> out;
  for (const Row& r : rows) out.push_back(to_ec2(r));
  return out;
}

Status insert_ec2(Tx& tx, const Ec2Credential& c, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_ec2_credentials (access, user_id, project_id, secret, "
              "created_at) VALUES (?, ?, ?, ?, ?)",
              {c.access, c.user_id, c.project_id, c.secret, now_us}));
  return ok();
}

Result<bool> delete_ec2(Tx& tx, std::string_view access) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("DELETE FROM identity_ec2_credentials WHERE access = ?", {str(access)}));
  return n > 0;
}

Status delete_ec2_of_user(Tx& tx, std::string_view user_id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_ec2_credentials WHERE user_id = ?", {str(user_id)}));
  return ok();
}

Status delete_ec2_of_project(Tx& tx, std::string_view project_id) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("DELETE FROM identity_ec2_credentials WHERE project_id = ?", {str(project_id)}));
  return ok();
}

// ---- revocations ----
namespace {
constexpr std::string_view kRevocationCols = "id, kind, value, issued_before, created_at";
std::optional<RevocationEvent> to_revocation(const Row& r) {
  auto kind = parse_revocation_kind(r.text(1));
  if (!kind) return std::nullopt;
  RevocationEvent e;
  e.id = r.text(0);
  e.kind = *kind;
  e.value = r.text(2);
  e.issued_before = r.integer(3);
  e.created_at = r.integer(4);
  return e;
}
}  // namespace

Status insert_revocation(Tx& tx, const RevocationEvent& e) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_revocations (id, kind, value, issued_before, created_at) "
              "VALUES (?, ?, ?, ?, ?)",
              {e.id, str(revocation_kind_name(e.kind)), e.value, e.issued_before, e.created_at}));
  return ok();
}

Result<std::optional<RevocationEvent>> get_revocation(Tx& tx, std::string_view id) {
  std::string sql =
      "SELECT " + std::string(kRevocationCols) + " FROM identity_revocations WHERE id = ?";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql, {str(id)}));
  if (rows.empty()) return std::optional<RevocationEvent>();
  return to_revocation(rows[0]);
}

Result<std::vector<RevocationEvent>> list_revocations(Tx& tx) {
  std::string sql = "SELECT " + std::string(kRevocationCols) +
                    " FROM identity_revocations ORDER BY created_at, id";
  CONCORD_ASSIGN_OR_RETURN(Rows rows, tx.query(sql));
  std::vector<RevocationEvent> out;
  for (const Row& r : rows) {
    if (auto e = to_revocation(r)) out.push_back(std::move(*e));
  }
  return out;
}

Result<int64_t> prune_revocations(Tx& tx, int64_t created_before_us) {
  return tx.exec("DELETE FROM identity_revocations WHERE created_at < ?", {created_before_us});
}

Status record(Tx& tx, std::string_view kind, std::string_view id, std::string_view op,
              std::string_view project_id) {
  store::Change c;
  c.kind = std::string(kind);
  c.id = std::string(id);
  c.op = std::string(op);
  c.project_id = std::string(project_id);
  return tx.record_change(c);
}

// ---- documents ----
namespace {
Document to_document(const Row& r) {
  Document d;
  d.kind = r.text(0);
  d.id = r.text(1);
  d.data = json_or(r.text(2), Json::object());
  d.revision = r.integer(3);
  d.created_at = r.integer(4);
  return d;
}
}  // namespace

Result<std::optional<Document>> get_document(Tx& tx, std::string_view kind, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows, tx.query("SELECT kind, id, data, revision, created_at FROM identity_documents "
                          "WHERE kind = ? AND id = ?",
                          {str(kind), str(id)}));
  if (rows.empty()) return std::optional<Document>();
  return std::optional<Document>(to_document(rows[0]));
}

Result<std::vector<Document>> list_documents(Tx& tx, std::string_view kind) {
  CONCORD_ASSIGN_OR_RETURN(
      Rows rows, tx.query("SELECT kind, id, data, revision, created_at FROM identity_documents "
                          "WHERE kind = ? ORDER BY created_at, id",
                          {str(kind)}));
  std::vector<Document> out;
  for (const Row& r : rows) out.push_back(to_document(r));
  return out;
}

Status insert_document(Tx& tx, const Document& d, int64_t now_us) {
  CONCORD_RETURN_IF_ERROR(
      tx.exec("INSERT INTO identity_documents (kind, id, data, created_at) VALUES (?, ?, ?, ?)",
              {d.kind, d.id, dump_json(d.data), now_us}));
  return ok();
}

Status update_document(Tx& tx, const Document& d) {
  return expect_one(tx.exec("UPDATE identity_documents SET data = ?, revision = revision + 1 "
                            "WHERE kind = ? AND id = ?",
                            {dump_json(d.data), d.kind, d.id}),
                    d.kind, d.id);
}

Result<bool> delete_document(Tx& tx, std::string_view kind, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("DELETE FROM identity_documents WHERE kind = ? AND id = ?", {str(kind), str(id)}));
  return n > 0;
}

Result<std::vector<std::string>> delete_documents_where(Tx& tx, std::string_view kind,
                                                        std::string_view field,
                                                        std::string_view value) {
  CONCORD_ASSIGN_OR_RETURN(std::vector<Document> docs, list_documents(tx, kind));
  std::vector<std::string> out;
  for (const Document& d : docs) {
    auto it = d.data.find(std::string(field));
    if (it == d.data.end() || !it->is_string() || it->get<std::string>() != value) continue;
    CONCORD_ASSIGN_OR_RETURN(bool gone, delete_document(tx, kind, d.id));
    if (gone) out.push_back(d.id);
  }
  return out;
}

}  // namespace repo
}  // namespace concord::identity

// Trove API: databases, users (with grants and passwords) and root of an instance; every change
// raises the state revision and rewrites the desired state (change_state).
#include "database/service/api_internal.h"

namespace concord::database::service {

// Runs `fn` on the instance's rows in one write transaction, raises the state revision, then
// hands the new desired state to the server.
Status DatabaseService::Impl::change_state(
    Call& c, const std::function<Status(store::Tx&, InstanceRow&)>& fn) {
  std::string id, waited_server;
  int64_t revision = 0;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
    if (!inst.replica_of.empty()) {
      return fail(Code::kInvalidArgument,
                  "Instance '" + inst.id + "' is a replica of '" + inst.replica_of +
                      "': its databases, users and root follow its primary; change them there.");
    }
    CONCORD_RETURN_IF_ERROR(fn(tx, inst));
    id = inst.id;
    waited_server = primary_server(inst);
    revision = inst.state_revision + 1;
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE db_instances SET state_revision = state_revision + 1, "
                                     "task = '', updated = ? WHERE id = ?",
                                     {trove_time(clock_.now()), inst.id}));
    (void)n;
    return ok();
  }));
  CONCORD_RETURN_IF_ERROR(sync_server(id));
  c.changed_instance = waited_server;  // the server that applies it: the primary member's
  c.changed_revision = revision;
  return ok();
}

Result<std::set<std::string>> DatabaseService::Impl::database_names(store::Tx& tx,
                                                                    const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT name FROM db_databases WHERE instance_id = ?", {id}));
  std::set<std::string> out;
  for (const store::Row& r : rows) out.insert(r.text(0));
  return out;
}

Result<std::optional<UserRow>> DatabaseService::Impl::find_user(store::Tx& tx,
                                                                const std::string& id,
                                                                const std::string& segment) {
  auto [name, host] = split_user(segment);
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE instance_id = ? "
               "AND name = ?",
               {id, name}));
  if (rows.empty() || (host && rows[0].text(1) != *host)) return std::optional<UserRow>();
  return std::optional<UserRow>(
      UserRow{rows[0].text(0), rows[0].text(1), rows[0].text(2), string_list(rows[0].text(3))});
}

Result<UserRow> DatabaseService::Impl::require_user(store::Tx& tx, const std::string& id,
                                                    const std::string& segment) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<UserRow> u, find_user(tx, id, segment));
  if (!u) return fail(Code::kNotFound, "User '" + segment + "' cannot be found on the instance.");
  return std::move(*u);
}

Status DatabaseService::Impl::write_grants(store::Tx& tx, const std::string& id, const UserRow& u) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("UPDATE db_users SET databases_json = ? WHERE instance_id = ? AND name = ?",
              {dump_json(u.databases), id, u.name}));
  (void)n;
  return ok();
}

Result<Response> DatabaseService::Impl::list_databases(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_rows_owner(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT name, character_set, collate_name FROM db_databases WHERE instance_id = ? "
                 "ORDER BY name",
                 {inst.id}));
    for (const store::Row& r : rows) {
      Json d = {{"name", r.text(0)}};
      if (!r.text(1).empty()) d["character_set"] = r.text(1);
      if (!r.text(2).empty()) d["collate"] = r.text(2);
      out.push_back(std::move(d));
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"databases", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::create_databases(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
  if (!body.contains("databases")) {
    return fail(bad("The request body must be {\"databases\": [{\"name\": ...}]}."));
  }
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto dbs, parse_databases(body["databases"], inst.engine));
    if (dbs.empty()) return fail(bad("'databases' must name at least one database."));
    CONCORD_ASSIGN_OR_RETURN(std::set<std::string> existing, database_names(tx, inst.id));
    for (const engine::DatabaseSpec& d : dbs) {
      if (existing.contains(d.name)) {
        return fail(bad("A database with the name '" + d.name + "' already exists."));
      }
    }
    for (const engine::DatabaseSpec& d : dbs) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("INSERT INTO db_databases (instance_id, name, character_set, "
                             "collate_name) VALUES (?, ?, ?, ?)",
                             {inst.id, d.name, d.character_set, d.collate}));
      (void)n;
    }
    return ok();
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::delete_database(Call& c) {
  const std::string name = c.param(2);
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("DELETE FROM db_databases WHERE instance_id = ? AND name = ?", {inst.id, name}));
    if (n == 0) {
      return fail(Code::kNotFound, "Database '" + name + "' cannot be found on the instance.");
    }
    // Grants on a dropped database go with it.
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows users,
        tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE "
                 "instance_id = ?",
                 {inst.id}));
    for (const store::Row& r : users) {
      UserRow u{r.text(0), r.text(1), r.text(2), string_list(r.text(3))};
      auto gone = std::remove(u.databases.begin(), u.databases.end(), name);
      if (gone == u.databases.end()) continue;
      u.databases.erase(gone, u.databases.end());
      CONCORD_RETURN_IF_ERROR(write_grants(tx, inst.id, u));
    }
    return ok();
  }));
  return Response::empty(202);
}

Json DatabaseService::Impl::user_view(const UserRow& u) {
  return {{"name", u.name}, {"host", u.host}, {"databases", database_refs(u.databases)}};
}

Result<Response> DatabaseService::Impl::list_users(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_rows_owner(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT name, host, verifier, databases_json FROM db_users WHERE "
                 "instance_id = ? ORDER BY name",
                 {inst.id}));
    for (const store::Row& r : rows) {
      out.push_back(user_view({r.text(0), r.text(1), "", string_list(r.text(3))}));
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"users", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::create_users(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
  if (!body.contains("users")) {
    return fail(bad("The request body must be {\"users\": [{\"name\": ..., \"password\": ...}]}."));
  }
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<NewUser> users, parse_users(body["users"], inst.engine));
    if (users.empty()) return fail(bad("'users' must name at least one user."));
    CONCORD_ASSIGN_OR_RETURN(std::set<std::string> dbs, database_names(tx, inst.id));
    for (const NewUser& u : users) {
      CONCORD_ASSIGN_OR_RETURN(std::optional<UserRow> existing, find_user(tx, inst.id, u.name));
      if (existing) return fail(bad("A user with the name '" + u.name + "' already exists."));
      for (const std::string& d : u.databases) {
        if (!dbs.contains(d)) {
          return fail(Code::kNotFound, "Database '" + d + "' cannot be found on the instance.");
        }
      }
    }
    for (const NewUser& u : users) {
      CONCORD_ASSIGN_OR_RETURN(std::string verifier,
                               engine::password_verifier(inst.engine, u.password));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("INSERT INTO db_users (instance_id, name, host, verifier, "
                             "databases_json) VALUES (?, ?, ?, ?, ?)",
                             {inst.id, u.name, u.host, verifier, dump_json(u.databases)}));
      (void)n;
    }
    return ok();
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::show_user(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_rows_owner(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
    out = user_view(u);
    return ok();
  }));
  return Response::json(200, dump_json({{"user", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::update_user(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
  auto it = body.find("user");
  if (it == body.end() || !it->is_object() || it->empty()) {
    return fail(bad("The request body must be {\"user\": {\"name\"|\"password\"|\"host\": ...}}."));
  }
  const Json& in = *it;
  for (auto& [key, value] : in.items()) {
    (void)value;
    if (key != "name" && key != "password" && key != "host") {
      return fail(
          bad("Unknown user attribute '" + sanitize_utf8(key) + "' (name, password, host)."));
    }
  }
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
    UserRow next = u;
    if (in.contains("name")) {
      CONCORD_ASSIGN_OR_RETURN(next.name, string_field(in, "name", "user"));
      CONCORD_RETURN_IF_ERROR(check_name(inst.engine, NameKind::kUser, next.name));
      if (next.name != u.name) {
        CONCORD_ASSIGN_OR_RETURN(std::optional<UserRow> clash, find_user(tx, inst.id, next.name));
        if (clash) {
          return fail(bad("A user with the name '" + next.name + "' already exists."));
        }
      }
    }
    if (in.contains("host")) {
      CONCORD_ASSIGN_OR_RETURN(next.host, parse_host(in, inst.engine));
    }
    if (in.contains("password")) {
      CONCORD_ASSIGN_OR_RETURN(std::string pw, string_field(in, "password", "user"));
      CONCORD_RETURN_IF_ERROR(check_password(pw));
      CONCORD_ASSIGN_OR_RETURN(next.verifier, engine::password_verifier(inst.engine, pw));
    }
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("UPDATE db_users SET name = ?, host = ?, verifier = ? WHERE "
                                     "instance_id = ? AND name = ?",
                                     {next.name, next.host, next.verifier, inst.id, u.name}));
    (void)n;
    return ok();
  }));
  return Response::empty(202);
}

// PUT /users: {"users": [{"name", "password"}]} changes several passwords at once.
Result<Response> DatabaseService::Impl::change_passwords(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
  auto it = body.find("users");
  if (it == body.end() || !it->is_array() || it->empty()) {
    return fail(bad("The request body must be {\"users\": [{\"name\": ..., \"password\": ...}]}."));
  }
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    for (const Json& u : *it) {
      if (!u.is_object()) return fail(bad("each user must be an object"));
      CONCORD_ASSIGN_OR_RETURN(std::string name, string_field(u, "name", "a user"));
      CONCORD_ASSIGN_OR_RETURN(std::string pw, string_field(u, "password", "user " + name));
      CONCORD_RETURN_IF_ERROR(check_password(pw));
      CONCORD_ASSIGN_OR_RETURN(UserRow row, require_user(tx, inst.id, name));
      CONCORD_ASSIGN_OR_RETURN(std::string verifier, engine::password_verifier(inst.engine, pw));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("UPDATE db_users SET verifier = ? WHERE instance_id = ? AND name = ?",
                             {verifier, inst.id, row.name}));
      (void)n;
    }
    return ok();
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::delete_user(Call& c) {
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("DELETE FROM db_users WHERE instance_id = ? AND name = ?", {inst.id, u.name}));
    (void)n;
    return ok();
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::list_access(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_rows_owner(tx, c, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
    out = database_refs(u.databases);
    return ok();
  }));
  return Response::json(200, dump_json({{"databases", std::move(out)}}));
}

Result<Response> DatabaseService::Impl::grant_access(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(c.req));
  if (!body.contains("databases")) {
    return fail(bad("The request body must be {\"databases\": [{\"name\": ...}]}."));
  }
  CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> names, parse_refs(body["databases"]));
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
    CONCORD_ASSIGN_OR_RETURN(std::set<std::string> dbs, database_names(tx, inst.id));
    for (const std::string& d : names) {
      if (!dbs.contains(d)) {
        return fail(Code::kNotFound, "Database '" + d + "' cannot be found on the instance.");
      }
      if (std::find(u.databases.begin(), u.databases.end(), d) == u.databases.end()) {
        u.databases.push_back(d);
      }
    }
    return write_grants(tx, inst.id, u);
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::revoke_access(Call& c) {
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(UserRow u, require_user(tx, inst.id, c.param(2)));
    auto gone = std::remove(u.databases.begin(), u.databases.end(), c.param(3));
    if (gone == u.databases.end()) {
      return fail(Code::kNotFound,
                  "User '" + u.name + "' has no access to database '" + c.param(3) + "'.");
    }
    u.databases.erase(gone, u.databases.end());
    return write_grants(tx, inst.id, u);
  }));
  return Response::empty(202);
}

Result<Response> DatabaseService::Impl::enable_root(Call& c) {
  // Letters and digits only, so that no client mangles it in a shell or a URL.
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  const std::string bytes = random_bytes(24);
  std::string password;
  for (unsigned char b : bytes) password.push_back(kAlphabet[b % kAlphabet.size()]);
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::string verifier,
                             engine::password_verifier(inst.engine, password));
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("DELETE FROM db_root WHERE instance_id = ?", {inst.id}));
    CONCORD_ASSIGN_OR_RETURN(
        n, tx.exec("INSERT INTO db_root (instance_id, verifier, enabled, enabled_at) VALUES (?, "
                   "?, 1, ?)",
                   {inst.id, verifier, trove_time(clock_.now())}));
    (void)n;
    return ok();
  }));
  return Response::json(200, dump_json({{"user", {{"name", "root"}, {"password", password}}}}));
}

Result<Response> DatabaseService::Impl::show_root(Call& c) {
  bool enabled = false;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_rows_owner(tx, c, c.param(1)));
    // Trove answers whether root was ever enabled.
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT 1 FROM db_root WHERE instance_id = ?", {inst.id}));
    enabled = !rows.empty();
    return ok();
  }));
  return Response::json(200, dump_json({{"rootEnabled", enabled}}));
}

Result<Response> DatabaseService::Impl::disable_root(Call& c) {
  CONCORD_RETURN_IF_ERROR(change_state(c, [&](store::Tx& tx, InstanceRow& inst) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE db_root SET enabled = 0 WHERE instance_id = ? AND enabled = 1", {inst.id}));
    if (n == 0) {
      return fail(Code::kNotFound, "Root is not enabled on instance '" + inst.id + "'.");
    }
    return ok();
  }));
  return Response::empty(204);
}

}  // namespace concord::database::service

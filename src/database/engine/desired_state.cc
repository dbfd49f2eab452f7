#include "database/engine/desired_state.h"

#include "base/json.h"
#include "nlohmann/json.hpp"

namespace concord::database::engine {
namespace {

std::unexpected<Error> type_error(std::string_view what) {
  return fail(Code::kInvalidArgument, "database desired state: " + std::string(what));
}

Result<std::string> string_field(const Json& obj, const char* key, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return type_error(std::string(key) + " is required");
    return std::string();
  }
  if (!it->is_string()) {
    return type_error(std::string(key) + " must be a string");
  }
  return it->get<std::string>();
}

// A RestoreSpec (a restore's source, or a replica's seed) as JSON and back; `what` names the
// field in errors.
Json restore_json(const RestoreSpec& r) {
  Json chain = Json::array();
  for (const RestoreArchive& a : r.chain) {
    chain.push_back({{"backup_id", a.backup_id},
                     {"sha256", a.sha256},
                     {"size_bytes", a.size_bytes},
                     {"meta", a.meta_json}});
  }
  return {{"chain", std::move(chain)},
          {"log_source_instance", r.log_source_instance},
          {"target_time_us", r.target_time_us}};
}

Result<RestoreSpec> restore_from_json(const Json& j, const std::string& what) {
  if (!j.is_object()) return type_error(what + " must be an object");
  RestoreSpec r;
  auto chain = j.find("chain");
  if (chain == j.end() || !chain->is_array() || chain->empty()) {
    return type_error(what + ".chain must be a non-empty array");
  }
  for (const Json& a : *chain) {
    if (!a.is_object()) return type_error("a restore archive must be an object");
    RestoreArchive archive;
    CONCORD_ASSIGN_OR_RETURN(archive.backup_id, string_field(a, "backup_id", true));
    CONCORD_ASSIGN_OR_RETURN(archive.sha256, string_field(a, "sha256", true));
    CONCORD_ASSIGN_OR_RETURN(archive.meta_json, string_field(a, "meta", false));
    auto size = a.find("size_bytes");
    if (size == a.end() || !size->is_number_integer()) {
      return type_error("a restore archive's size_bytes must be an integer");
    }
    archive.size_bytes = size->get<int64_t>();
    r.chain.push_back(std::move(archive));
  }
  CONCORD_ASSIGN_OR_RETURN(r.log_source_instance, string_field(j, "log_source_instance", false));
  if (auto t = j.find("target_time_us"); t != j.end() && !t->is_null()) {
    if (!t->is_number_integer()) return type_error(what + ".target_time_us must be an integer");
    r.target_time_us = t->get<int64_t>();
  }
  return r;
}

}  // namespace

std::string to_json(const DesiredState& state) {
  Json dbs = Json::array();
  for (const DatabaseSpec& d : state.databases) {
    dbs.push_back({{"name", d.name}, {"character_set", d.character_set}, {"collate", d.collate}});
  }
  Json users = Json::array();
  for (const UserSpec& u : state.users) {
    users.push_back(
        {{"name", u.name}, {"host", u.host}, {"verifier", u.verifier}, {"databases", u.databases}});
  }
  Json out = {{"revision", state.revision},
              {"databases", std::move(dbs)},
              {"users", std::move(users)},
              {"parameters", Json(state.parameters)}};
  out["root"] = state.root ? Json{{"verifier", state.root->verifier}} : Json(nullptr);
  out["backup"] = state.backup ? Json{{"id", state.backup->id},
                                      {"parent_id", state.backup->parent_id},
                                      {"parent_meta", state.backup->parent_meta_json}}
                               : Json(nullptr);
  if (!state.log_publish.empty()) {
    Json logs = Json::array();
    for (const LogPublishRequest& l : state.log_publish) {
      logs.push_back({{"id", l.id}, {"name", l.name}});
    }
    out["log_publish"] = std::move(logs);
  }
  out["restore"] = state.restore ? restore_json(*state.restore) : Json(nullptr);
  out["archive_logs"] = state.archive_logs;
  if (state.replication) {
    const ReplicationSpec& r = *state.replication;
    out["replication"] = {
        {"role", r.role == ReplicationSpec::Role::kPrimary ? "primary" : "replica"},
        {"secret", r.secret},
        {"upstream_instance", r.upstream_instance},
        {"upstream_address", r.upstream_address},
        {"upstream_port", r.upstream_port},
        {"replicas", r.replicas},
        {"synchronous_standbys", r.synchronous_standbys}};
    if (r.seed) out["replication"]["seed"] = restore_json(*r.seed);
    if (r.seed_wait_until_us > 0) out["replication"]["seed_wait_until_us"] = r.seed_wait_until_us;
  } else {
    out["replication"] = nullptr;
  }
  return dump_json(out);
}

Result<DesiredState> desired_state_from_json(std::string_view text) {
  Result<Json> parsed = parse_json(text);
  if (!parsed)
    return fail(Code::kInvalidArgument, "database desired state: " + parsed.error().message());
  const Json& j = *parsed;
  if (!j.is_object()) return type_error("not an object");
  DesiredState out;
  auto rev = j.find("revision");
  if (rev == j.end() || !rev->is_number_integer()) {
    return type_error("revision must be an integer");
  }
  out.revision = rev->get<int64_t>();

  if (auto it = j.find("databases"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return type_error("databases must be an array");
    for (const Json& d : *it) {
      if (!d.is_object()) return type_error("a database must be an object");
      DatabaseSpec db;
      CONCORD_ASSIGN_OR_RETURN(db.name, string_field(d, "name", true));
      CONCORD_ASSIGN_OR_RETURN(db.character_set, string_field(d, "character_set", false));
      CONCORD_ASSIGN_OR_RETURN(db.collate, string_field(d, "collate", false));
      out.databases.push_back(std::move(db));
    }
  }
  if (auto it = j.find("users"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return type_error("users must be an array");
    for (const Json& u : *it) {
      if (!u.is_object()) return type_error("a user must be an object");
      UserSpec user;
      CONCORD_ASSIGN_OR_RETURN(user.name, string_field(u, "name", true));
      CONCORD_ASSIGN_OR_RETURN(user.host, string_field(u, "host", false));
      if (user.host.empty()) user.host = "%";
      CONCORD_ASSIGN_OR_RETURN(user.verifier, string_field(u, "verifier", true));
      if (auto d = u.find("databases"); d != u.end() && !d->is_null()) {
        if (!d->is_array()) {
          return type_error("a user's databases must be an array");
        }
        for (const Json& name : *d) {
          if (!name.is_string()) {
            return type_error("a user's databases must be strings");
          }
          user.databases.push_back(name.get<std::string>());
        }
      }
      out.users.push_back(std::move(user));
    }
  }
  if (auto it = j.find("root"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return type_error("root must be an object");
    RootSpec root;
    CONCORD_ASSIGN_OR_RETURN(root.verifier, string_field(*it, "verifier", true));
    out.root = std::move(root);
  }
  if (auto it = j.find("parameters"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return type_error("parameters must be an object");
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) return type_error("parameter values are strings");
      out.parameters[k] = v.get<std::string>();
    }
  }
  if (auto it = j.find("backup"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return type_error("backup must be an object");
    BackupRequest b;
    CONCORD_ASSIGN_OR_RETURN(b.id, string_field(*it, "id", true));
    CONCORD_ASSIGN_OR_RETURN(b.parent_id, string_field(*it, "parent_id", false));
    CONCORD_ASSIGN_OR_RETURN(b.parent_meta_json, string_field(*it, "parent_meta", false));
    out.backup = std::move(b);
  }
  if (auto it = j.find("log_publish"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return type_error("log_publish must be an array");
    for (const Json& l : *it) {
      if (!l.is_object()) return type_error("a log_publish request must be an object");
      LogPublishRequest r;
      CONCORD_ASSIGN_OR_RETURN(r.id, string_field(l, "id", true));
      CONCORD_ASSIGN_OR_RETURN(r.name, string_field(l, "name", true));
      out.log_publish.push_back(std::move(r));
    }
  }
  if (auto it = j.find("restore"); it != j.end() && !it->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(out.restore, restore_from_json(*it, "restore"));
  }
  if (auto it = j.find("archive_logs"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return type_error("archive_logs must be a boolean");
    out.archive_logs = it->get<bool>();
  }
  if (auto it = j.find("replication"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return type_error("replication must be an object");
    ReplicationSpec r;
    CONCORD_ASSIGN_OR_RETURN(std::string role, string_field(*it, "role", true));
    if (role == "primary") {
      r.role = ReplicationSpec::Role::kPrimary;
    } else if (role == "replica") {
      r.role = ReplicationSpec::Role::kReplica;
    } else {
      return type_error("replication.role must be \"primary\" or \"replica\"");
    }
    CONCORD_ASSIGN_OR_RETURN(r.secret, string_field(*it, "secret", true));
    if (r.secret.empty()) return type_error("replication.secret must not be empty");
    CONCORD_ASSIGN_OR_RETURN(r.upstream_instance, string_field(*it, "upstream_instance", false));
    CONCORD_ASSIGN_OR_RETURN(r.upstream_address, string_field(*it, "upstream_address", false));
    if (auto p = it->find("upstream_port"); p != it->end() && !p->is_null()) {
      if (!p->is_number_integer() || p->get<int64_t>() < 0 || p->get<int64_t>() > 65535) {
        return type_error("replication.upstream_port must be a port number");
      }
      r.upstream_port = p->get<int>();
    }
    if (r.role == ReplicationSpec::Role::kReplica &&
        (r.upstream_instance.empty() || r.upstream_address.empty() || r.upstream_port == 0)) {
      return type_error("a replica needs upstream_instance, upstream_address and upstream_port");
    }
    for (auto [key, list] : {std::pair{"replicas", &r.replicas},
                             std::pair{"synchronous_standbys", &r.synchronous_standbys}}) {
      auto s = it->find(key);
      if (s == it->end() || s->is_null()) continue;
      if (!s->is_array())
        return type_error(std::string("replication.") + key + " must be an array");
      for (const Json& name : *s) {
        if (!name.is_string())
          return type_error(std::string("replication.") + key + " are strings");
        list->push_back(name.get<std::string>());
      }
    }
    if (auto s = it->find("seed"); s != it->end() && !s->is_null()) {
      CONCORD_ASSIGN_OR_RETURN(r.seed, restore_from_json(*s, "replication.seed"));
    }
    if (auto w = it->find("seed_wait_until_us"); w != it->end() && !w->is_null()) {
      if (!w->is_number_integer() || w->get<int64_t>() < 0) {
        return type_error("replication.seed_wait_until_us must be a non-negative integer");
      }
      r.seed_wait_until_us = w->get<int64_t>();
    }
    out.replication = std::move(r);
  }
  return out;
}

}  // namespace concord::database::engine

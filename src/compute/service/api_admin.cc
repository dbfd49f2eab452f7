// Nova's administrator APIs: os-aggregates, os-hosts (below 2.43), os-migrations and
// /servers/{id}/migrations, server diagnostics, os-server-external-events, hypervisor uptime
// and os-instance_usage_audit_log. Every route is "admin" in the frame; handlers name Nova's
// own policy rule only in messages.
//
// Decisions (see docs/design/compute.md, "Admin APIs"):
//   * an aggregate's availability zone is its metadata key "availability_zone", as in Nova; a
//     host belongs to at most one zone, so adding it to a second aggregate with another zone is
//     409 and changing an aggregate's zone that would split a host is 400. os-hosts shows the
//     aggregate's zone for member hosts; the scheduler snapshot (placement.cc) and
//     os-availability-zone (api_misc.cc) still read the zone the agent registered;
//   * migrations are the rows resizes leave (api_server_actions.cc). The report handler does
//     not update them, so the stored status of an open resize ("pre-migrating", "reverting")
//     is refined here from the server's state: resizing -> "migrating", awaiting confirmation
//     -> "finished", reverted -> "reverted", failed -> "error";
//   * diagnostics come from the server row (flavor, power state, launch time): Concord's agents
//     report no counters, so counters are null, which Nova's 2.48 format allows;
//   * external events are acknowledged per server as Nova does; nothing in Concord waits on
//     them (there is no Neutron or Cinder), so an accepted event changes nothing;
//   * a hypervisor's uptime is the time since its agent first registered with this cloud
//     (compute_hosts.created_at), not the machine's boot time, which agents do not report;
//   * the usage audit log is Nova's answer when the audit task never ran: every host "not run"
//     for the last completed month (Concord meters usage continuously in the usage ledger and
//     has no periodic audit task).
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/random.h"
#include "base/time_format.h"
#include "compute/service/api.h"
#include "compute/service/api_servers_internal.h"
#include "compute/service/model.h"
#include "compute/service/report.h"

namespace concord::compute {
namespace {

using Call = NovaApi::Call;

std::unexpected<Error> bad(std::string message) {
  return fail(Code::kInvalidArgument, std::move(message));
}

http::Response json_response(int status, const Json& body) {
  return http::Response::json(status, dump_json(body));
}

int64_t now_ms(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
      .count();
}

std::string controller_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "concord";
  return buf;
}

std::string host_ip(const std::string& traits_json) {
  auto traits = parse_json(traits_json);
  if (traits && traits->is_object()) {
    auto it = traits->find("host_ip");
    if (it != traits->end() && it->is_string()) return it->get<std::string>();
  }
  return "127.0.0.1";
}

// Nova's parameter_types.name: 1-255 characters without leading or trailing whitespace.
Status check_name(const Json& v, std::string_view field, bool az) {
  auto invalid = [&](std::string_view why) {
    return bad("Invalid input for field/attribute " + std::string(field) +
               ". Value: " + dump_json(v) + ". " + std::string(why));
  };
  if (!v.is_string()) return invalid("is not of type 'string'");
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > 255) return invalid("must be 1 to 255 characters long");
  if (std::isspace(static_cast<unsigned char>(s.front())) ||
      std::isspace(static_cast<unsigned char>(s.back())))
    return invalid("must not have leading or trailing whitespace");
  if (az && s.find(':') != std::string::npos) return invalid("must not contain ':'");
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return invalid("must not contain non-printable characters");
  }
  return ok();
}

Status additional(std::string_view field, const Json& obj, std::set<std::string> allowed) {
  for (auto& [k, v] : obj.items()) {
    (void)v;
    if (!allowed.contains(k))
      return bad("Invalid input for field/attribute " + std::string(field) +
                 ". Additional properties are not allowed ('" + sanitize_utf8(k) +
                 "' was unexpected)");
  }
  return ok();
}

// ---------------- aggregates ----------------

constexpr const char* kAzKey = "availability_zone";

struct Aggregate {
  int64_t id = 0;
  std::string uuid, name, created_at;
  std::optional<std::string> updated_at;
  std::vector<std::string> hosts;
  std::map<std::string, std::string> metadata;
  std::optional<std::string> zone() const {
    auto it = metadata.find(kAzKey);
    if (it == metadata.end()) return std::nullopt;
    return it->second;
  }
};

Result<std::vector<Aggregate>> load_aggregates(store::Tx& tx, std::optional<int64_t> only = {}) {
  std::vector<store::Value> args;
  std::string where;
  if (only) {
    where = " WHERE id = ?";
    args.emplace_back(*only);
  }
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT id, uuid, name, created_at, updated_at FROM "
                                    "compute_aggregates" +
                                        where + " ORDER BY id",
                                    args));
  std::vector<Aggregate> out;
  std::map<int64_t, size_t> index;
  for (const store::Row& r : rows) {
    Aggregate a;
    a.id = r.integer(0);
    a.uuid = r.text(1);
    a.name = r.text(2);
    a.created_at = r.text(3);
    a.updated_at = r.opt_text(4);
    index[a.id] = out.size();
    out.push_back(std::move(a));
  }
  if (out.empty()) return out;
  std::string sub = only ? " WHERE aggregate_id = ?" : "";
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows hosts,
      tx.query("SELECT aggregate_id, host FROM compute_aggregate_hosts" + sub + " ORDER BY host",
               args));
  for (const store::Row& r : hosts) {
    auto it = index.find(r.integer(0));
    if (it != index.end()) out[it->second].hosts.push_back(r.text(1));
  }
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows md,
      tx.query("SELECT aggregate_id, key, value FROM compute_aggregate_metadata" + sub, args));
  for (const store::Row& r : md) {
    auto it = index.find(r.integer(0));
    if (it != index.end()) out[it->second].metadata[r.text(1)] = r.text(2);
  }
  return out;
}

// Nova validates the id as an integer (400 otherwise) and then looks it up, so "-1" is 404.
Result<int64_t> aggregate_id(std::string_view text) {
  std::string_view digits = text.starts_with('-') ? text.substr(1) : text;
  if (digits.empty() || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad("Invalid input received: id must be an integer");
  return std::stoll(std::string(text));
}

Result<Aggregate> load_aggregate(store::Tx& tx, int64_t id) {
  CONCORD_ASSIGN_OR_RETURN(std::vector<Aggregate> all, load_aggregates(tx, id));
  if (all.empty())
    return fail(Code::kNotFound, "Aggregate " + std::to_string(id) + " could not be found.");
  return std::move(all[0]);
}

Json aggregate_json(const Call& call, const Aggregate& a, bool with_members = true) {
  Json j = {{"availability_zone", a.zone() ? Json(*a.zone()) : Json()},
            {"created_at", servers::usg_time(a.created_at)},
            {"deleted", false},
            {"deleted_at", nullptr},
            {"id", a.id},
            {"name", a.name},
            {"updated_at", a.updated_at ? Json(servers::usg_time(*a.updated_at)) : Json()}};
  if (with_members) {
    j["hosts"] = a.hosts;
    j["metadata"] = Json::object();
    for (const auto& [k, v] : a.metadata) j["metadata"][k] = v;
  }
  if (call.version.at_least(41)) j["uuid"] = a.uuid;
  return j;
}

Status touch(store::Tx& tx, int64_t id, const std::string& now) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("UPDATE compute_aggregates SET updated_at = ? WHERE id = ?", {now, id}));
  (void)n;
  return ok();
}

Status check_unique_name(store::Tx& tx, const std::string& name, int64_t except_id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT id FROM compute_aggregates WHERE name = ? AND id <> ?", {name, except_id}));
  if (!rows.empty()) return fail(Code::kAlreadyExists, "Aggregate " + name + " already exists.");
  return ok();
}

// The zones the other aggregates of `hosts` put them in (a host lives in one zone only).
Result<std::set<std::string>> other_zones(store::Tx& tx, int64_t aggregate,
                                          const std::vector<std::string>& hosts) {
  std::set<std::string> zones;
  for (const std::string& h : hosts) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT m.value FROM compute_aggregate_hosts ah JOIN compute_aggregate_metadata "
                 "m ON m.aggregate_id = ah.aggregate_id AND m.key = ? WHERE ah.host = ? AND "
                 "ah.aggregate_id <> ?",
                 {std::string(kAzKey), h, aggregate}));
    for (const store::Row& r : rows) zones.insert(r.text(0));
  }
  return zones;
}

std::string zone_list(const std::set<std::string>& zones) {
  std::string out = "[";
  for (const std::string& z : zones) {
    if (out.size() > 1) out += ", ";
    out += "'" + z + "'";
  }
  return out + "]";
}

// A new zone for an aggregate must not move any of its hosts out of a zone another aggregate
// holds them in (Nova's InvalidAggregateActionUpdate, 400).
Status check_zone_change(store::Tx& tx, const Aggregate& a, const std::optional<std::string>& az,
                         std::string_view action) {
  if (az && *az == "internal")
    return bad("Aggregate " + std::to_string(a.id) + ": Action '" + std::string(action) +
               "' caused an error: The internal availability zone cannot be used.");
  if (!az || az == a.zone()) return ok();
  CONCORD_ASSIGN_OR_RETURN(std::set<std::string> zones, other_zones(tx, a.id, a.hosts));
  zones.erase(*az);
  if (!zones.empty())
    return bad("Cannot update aggregate " + std::to_string(a.id) +
               ". Reason: One or more hosts already in availability zone(s) " + zone_list(zones) +
               ".");
  return ok();
}

Status set_zone(store::Tx& tx, int64_t id, const std::optional<std::string>& az) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("DELETE FROM compute_aggregate_metadata WHERE aggregate_id = ? AND key = ?",
              {id, std::string(kAzKey)}));
  (void)n;
  if (!az) return ok();
  CONCORD_ASSIGN_OR_RETURN(
      int64_t m,
      tx.exec("INSERT INTO compute_aggregate_metadata (aggregate_id, key, value) VALUES (?, ?, ?)",
              {id, std::string(kAzKey), *az}));
  (void)m;
  return ok();
}

Result<http::Response> list_aggregates(NovaApi& api, Call& call) {
  std::vector<Aggregate> all;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(all, load_aggregates(tx));
    return ok();
  }));
  Json items = Json::array();
  for (const Aggregate& a : all) items.push_back(aggregate_json(call, a));
  return json_response(200, {{"aggregates", items}});
}

Result<http::Response> create_aggregate(NovaApi& api, Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto in = body.find("aggregate");
  if (in == body.end() || !in->is_object())
    return bad("Invalid input for field/attribute aggregate. 'aggregate' is a required property");
  CONCORD_RETURN_IF_ERROR(additional("request body", body, {"aggregate"}));
  CONCORD_RETURN_IF_ERROR(additional("aggregate", *in, {"name", "availability_zone"}));
  if (!in->contains("name"))
    return bad("Invalid input for field/attribute aggregate. 'name' is a required property");
  CONCORD_RETURN_IF_ERROR(check_name((*in)["name"], "name", false));
  std::optional<std::string> az;
  if (auto z = in->find("availability_zone"); z != in->end() && !z->is_null()) {
    CONCORD_RETURN_IF_ERROR(check_name(*z, "availability_zone", true));
    az = z->get<std::string>();
  }
  if (az && *az == "internal")
    return bad(
        "Aggregate action 'create' caused an error: The internal availability zone "
        "cannot be used.");
  Aggregate created;
  const std::string name = (*in)["name"].get<std::string>();
  CONCORD_RETURN_IF_ERROR(servers::write_retrying(api.ctx().store, [&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.serialize());  // the name check and MAX + 1 hold until commit
    CONCORD_RETURN_IF_ERROR(check_unique_name(tx, name, 0));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows max,
        tx.query("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM compute_aggregates", {}));
    created = Aggregate{};
    created.id = max.empty() ? 1 : max[0].integer(0) + 1;
    created.uuid = new_uuid();
    created.name = name;
    created.created_at = stored_time(now_ms(api.ctx().clock));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO compute_aggregates (id, uuid, name, created_at) VALUES "
                           "(?, ?, ?, ?)",
                           {created.id, created.uuid, created.name, created.created_at}));
    (void)n;
    CONCORD_RETURN_IF_ERROR(set_zone(tx, created.id, az));
    if (az) created.metadata[kAzKey] = *az;
    return ok();
  }));
  // Nova's create answer leaves out hosts and metadata.
  return json_response(200, {{"aggregate", aggregate_json(call, created, false)}});
}

Result<http::Response> show_aggregate(NovaApi& api, Call& call) {
  CONCORD_ASSIGN_OR_RETURN(int64_t id, aggregate_id(call.param(0)));
  Aggregate a;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(a, load_aggregate(tx, id));
    return ok();
  }));
  return json_response(200, {{"aggregate", aggregate_json(call, a)}});
}

Result<http::Response> update_aggregate(NovaApi& api, Call& call) {
  CONCORD_ASSIGN_OR_RETURN(int64_t id, aggregate_id(call.param(0)));
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto in = body.find("aggregate");
  if (in == body.end() || !in->is_object())
    return bad("Invalid input for field/attribute aggregate. 'aggregate' is a required property");
  CONCORD_RETURN_IF_ERROR(additional("request body", body, {"aggregate"}));
  CONCORD_RETURN_IF_ERROR(additional("aggregate", *in, {"name", "availability_zone"}));
  if (in->empty())
    return bad(
        "Invalid input for field/attribute aggregate. Value: {}. {} does not have enough "
        "properties");
  std::optional<std::string> name;
  if (auto n = in->find("name"); n != in->end()) {
    CONCORD_RETURN_IF_ERROR(check_name(*n, "name", false));
    name = n->get<std::string>();
  }
  bool zone_given = false;
  std::optional<std::string> az;
  if (auto z = in->find("availability_zone"); z != in->end()) {
    zone_given = true;
    if (!z->is_null()) {
      CONCORD_RETURN_IF_ERROR(check_name(*z, "availability_zone", true));
      az = z->get<std::string>();
    }
  }
  Aggregate a;
  CONCORD_RETURN_IF_ERROR(servers::write_retrying(api.ctx().store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(a, load_aggregate(tx, id));
    const std::string now = stored_time(now_ms(api.ctx().clock));
    if (name) {
      CONCORD_RETURN_IF_ERROR(check_unique_name(tx, *name, id));
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("UPDATE compute_aggregates SET name = ? WHERE id = ?", {*name, id}));
      (void)n;
    }
    if (zone_given) {
      CONCORD_RETURN_IF_ERROR(check_zone_change(tx, a, az, "update_aggregate"));
      CONCORD_RETURN_IF_ERROR(set_zone(tx, id, az));
    }
    CONCORD_RETURN_IF_ERROR(touch(tx, id, now));
    CONCORD_ASSIGN_OR_RETURN(a, load_aggregate(tx, id));
    return ok();
  }));
  return json_response(200, {{"aggregate", aggregate_json(call, a)}});
}

Result<http::Response> delete_aggregate(NovaApi& api, Call& call) {
  CONCORD_ASSIGN_OR_RETURN(int64_t id, aggregate_id(call.param(0)));
  CONCORD_RETURN_IF_ERROR(servers::write_retrying(api.ctx().store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Aggregate a, load_aggregate(tx, id));
    if (!a.hosts.empty())
      return bad("Aggregate " + std::to_string(id) +
                 ": Action 'delete' caused an error: Host aggregate is not empty.");
    for (const char* table : {"compute_aggregate_metadata", "compute_aggregate_hosts"}) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec(std::string("DELETE FROM ") + table + " WHERE aggregate_id = ?", {id}));
      (void)n;
    }
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("DELETE FROM compute_aggregates WHERE id = ?", {id}));
    (void)n;
    return ok();
  }));
  return http::Response::empty(200);
}

Status check_host_arg(const Json& arg, std::string_view action) {
  if (!arg.is_object())
    return bad("Invalid input for field/attribute " + std::string(action) +
               ". Value: " + dump_json(arg) + ". is not of type 'object'");
  CONCORD_RETURN_IF_ERROR(additional(action, arg, {"host"}));
  auto h = arg.find("host");
  if (h == arg.end())
    return bad("Invalid input for field/attribute " + std::string(action) +
               ". 'host' is a required property");
  if (!h->is_string() || h->get<std::string>().empty() || h->get<std::string>().size() > 255)
    return bad("Invalid input for field/attribute host. Value: " + dump_json(*h) +
               ". must be a string of 1 to 255 characters");
  return ok();
}

Status check_metadata_arg(const Json& arg) {
  if (!arg.is_object())
    return bad("Invalid input for field/attribute set_metadata. Value: " + dump_json(arg) +
               ". is not of type 'object'");
  CONCORD_RETURN_IF_ERROR(additional("set_metadata", arg, {"metadata"}));
  auto m = arg.find("metadata");
  if (m == arg.end())
    return bad("Invalid input for field/attribute set_metadata. 'metadata' is a required property");
  if (!m->is_object())
    return bad("Invalid input for field/attribute metadata. Value: " + dump_json(*m) +
               ". is not of type 'object'");
  for (auto& [k, v] : m->items()) {
    if (k.empty() || k.size() > 255)
      return bad("Invalid input for field/attribute metadata. Key '" + sanitize_utf8(k) +
                 "' must be 1 to 255 characters long");
    if (!v.is_null() && (!v.is_string() || v.get<std::string>().size() > 255))
      return bad("Invalid input for field/attribute " + sanitize_utf8(k) + ". Value: " +
                 dump_json(v) + ". must be null or a string of at most 255 characters");
  }
  if (auto z = m->find(kAzKey); z != m->end() && !z->is_null())
    CONCORD_RETURN_IF_ERROR(check_name(*z, kAzKey, true));
  return ok();
}

Result<http::Response> aggregate_action(NovaApi& api, Call& call) {
  CONCORD_ASSIGN_OR_RETURN(int64_t id, aggregate_id(call.param(0)));
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  if (body.size() != 1) return bad("Malformed request body: exactly one action expected.");
  const std::string action = body.begin().key();
  const Json arg = body.begin().value();
  if (action == "add_host" || action == "remove_host") {
    CONCORD_RETURN_IF_ERROR(check_host_arg(arg, action));
  } else if (action == "set_metadata") {
    CONCORD_RETURN_IF_ERROR(check_metadata_arg(arg));
  } else {
    return bad("There is no such action: " + sanitize_utf8(action));
  }
  Aggregate a;
  CONCORD_RETURN_IF_ERROR(servers::write_retrying(api.ctx().store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(a, load_aggregate(tx, id));
    const std::string now = stored_time(now_ms(api.ctx().clock));
    const std::string sid = std::to_string(id);
    if (action == "set_metadata") {
      const Json& md = arg["metadata"];
      if (auto z = md.find(kAzKey); z != md.end()) {
        std::optional<std::string> az;
        if (!z->is_null()) az = z->get<std::string>();
        CONCORD_RETURN_IF_ERROR(check_zone_change(tx, a, az, "update_aggregate_metadata"));
      }
      for (auto& [k, v] : md.items()) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec("DELETE FROM compute_aggregate_metadata WHERE aggregate_id = ? AND key = ?",
                    {id, k}));
        (void)n;
        if (v.is_null()) continue;
        CONCORD_ASSIGN_OR_RETURN(int64_t m, tx.exec("INSERT INTO compute_aggregate_metadata "
                                                    "(aggregate_id, key, value) VALUES (?, ?, ?)",
                                                    {id, k, v.get<std::string>()}));
        (void)m;
      }
    } else {
      const std::string host = arg["host"].get<std::string>();
      CONCORD_ASSIGN_OR_RETURN(store::Rows known,
                               tx.query("SELECT name FROM compute_hosts WHERE name = ?", {host}));
      if (known.empty())
        return fail(Code::kNotFound, "Compute host " + host + " could not be found.");
      const bool member = std::find(a.hosts.begin(), a.hosts.end(), host) != a.hosts.end();
      if (action == "add_host") {
        if (member)
          return fail(Code::kAlreadyExists, "Aggregate " + sid + " already has host " + host + ".");
        if (a.zone()) {
          CONCORD_ASSIGN_OR_RETURN(std::set<std::string> zones, other_zones(tx, id, {host}));
          zones.erase(*a.zone());
          if (!zones.empty())
            return fail(Code::kAlreadyExists, "Cannot add host to aggregate " + sid +
                                                  ". Reason: One or more hosts already in "
                                                  "availability zone(s) " +
                                                  zone_list(zones) + ".");
        }
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec("INSERT INTO compute_aggregate_hosts (aggregate_id, host) VALUES (?, ?)",
                    {id, host}));
        (void)n;
      } else {
        if (!member)
          return fail(Code::kNotFound, "Aggregate " + sid + " has no host " + host + ".");
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec("DELETE FROM compute_aggregate_hosts WHERE aggregate_id = ? AND host = ?",
                    {id, host}));
        (void)n;
      }
    }
    CONCORD_RETURN_IF_ERROR(touch(tx, id, now));
    CONCORD_ASSIGN_OR_RETURN(a, load_aggregate(tx, id));
    return ok();
  }));
  return json_response(200, {{"aggregate", aggregate_json(call, a)}});
}

// ---------------- hosts (os-hosts, os-hypervisors/{id}/uptime) ----------------

struct HostRow {
  int64_t rank = 0;  // 1-based by registration, as api_misc.cc numbers hypervisors
  std::string name, zone, created_at, traits_json;
  int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
  bool up = false, disabled = false;
};

// Hosts with the zone a member aggregate gives them (else the zone their agent registered).
Result<std::vector<HostRow>> load_host_rows(store::Tx& tx, const ComputeContext& ctx) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT h.name, h.availability_zone, h.vcpus, h.ram_mb, h.disk_gb, h.state, "
               "h.disabled, h.last_heartbeat_ms, h.created_at, h.traits_json, (SELECT MIN(m.value) "
               "FROM compute_aggregate_hosts ah JOIN compute_aggregate_metadata m ON "
               "m.aggregate_id = ah.aggregate_id AND m.key = 'availability_zone' WHERE ah.host = "
               "h.name) FROM compute_hosts h ORDER BY h.created_at, h.name",
               {}));
  const int64_t now = now_ms(ctx.clock);
  std::vector<HostRow> out;
  for (const store::Row& r : rows) {
    HostRow h;
    h.rank = static_cast<int64_t>(out.size()) + 1;
    h.name = r.text(0);
    h.zone = r.is_null(10) ? r.text(1) : r.text(10);
    h.vcpus = r.integer(2);
    h.ram_mb = r.integer(3);
    h.disk_gb = r.integer(4);
    h.up = r.text(5) == "up" && now - r.integer(7) <= ctx.options.down_after.count();
    h.disabled = r.boolean(6);
    h.created_at = r.text(8);
    h.traits_json = r.text(9);
    out.push_back(std::move(h));
  }
  return out;
}

// os-hosts is gone from 2.43 on (Nova answers 404 for the whole family).
Status hosts_api_available(const Call& call) {
  if (call.version.at_least(43)) return fail(Code::kNotFound, "The resource could not be found.");
  return ok();
}

Result<http::Response> list_hosts(NovaApi& api, Call& call) {
  CONCORD_RETURN_IF_ERROR(hosts_api_available(call));
  std::vector<HostRow> hosts;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_host_rows(tx, api.ctx()));
    return ok();
  }));
  // An empty zone means no filter (Nova tests the parameter for truth).
  const std::string zone = call.req.query_param("zone").value_or("");
  Json items = Json::array();
  auto add = [&](const std::string& name, const char* service, const std::string& z) {
    if (!zone.empty() && z != zone) return;
    items.push_back({{"host_name", name}, {"service", service}, {"zone", z}});
  };
  const std::string me = controller_host();
  add(me, "conductor", "internal");
  add(me, "scheduler", "internal");
  for (const HostRow& h : hosts) add(h.name, "compute", h.zone);
  return json_response(200, {{"hosts", items}});
}

Result<HostRow> find_host(const std::vector<HostRow>& hosts, std::string_view name) {
  for (const HostRow& h : hosts)
    if (h.name == name) return h;
  return fail(Code::kNotFound, "Compute host " + std::string(name) + " could not be found.");
}

Result<http::Response> show_host(NovaApi& api, Call& call) {
  CONCORD_RETURN_IF_ERROR(hosts_api_available(call));
  const std::string name(call.param(0));
  HostRow h;
  int64_t now_cpu = 0, now_ram = 0, now_disk = 0;
  struct Usage {
    int64_t cpu = 0, ram = 0, disk = 0;
  };
  std::map<std::string, Usage> by_project;
  Usage max;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<HostRow> hosts, load_host_rows(tx, api.ctx()));
    CONCORD_ASSIGN_OR_RETURN(h, find_host(hosts, name));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows claimed,
        tx.query("SELECT CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), CAST(COALESCE(SUM(ram_mb), 0) "
                 "AS BIGINT), CAST(COALESCE(SUM(disk_gb), 0) AS BIGINT) FROM compute_allocations "
                 "WHERE host = ?",
                 {name}));
    if (!claimed.empty()) {
      now_cpu = claimed[0].integer(0);
      now_ram = claimed[0].integer(1);
      now_disk = claimed[0].integer(2);
    }
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows servers,
        tx.query("SELECT project_id, vcpus, ram_mb, disk_gb FROM compute_servers WHERE host = ? "
                 "AND deleted = 0 ORDER BY project_id",
                 {name}));
    for (const store::Row& r : servers) {
      Usage& u = by_project[r.text(0)];
      u.cpu += r.integer(1);
      u.ram += r.integer(2);
      u.disk += r.integer(3);
      max.cpu += r.integer(1);
      max.ram += r.integer(2);
      max.disk += r.integer(3);
    }
    return ok();
  }));
  Json rows = Json::array();
  auto add = [&](const std::string& project, int64_t cpu, int64_t ram, int64_t disk) {
    rows.push_back({{"resource",
                     {{"host", h.name},
                      {"project", project},
                      {"cpu", cpu},
                      {"memory_mb", ram},
                      {"disk_gb", disk}}}});
  };
  add("(total)", h.vcpus, h.ram_mb, h.disk_gb);
  add("(used_now)", now_cpu, now_ram, now_disk);
  add("(used_max)", max.cpu, max.ram, max.disk);
  for (const auto& [project, u] : by_project) add(project, u.cpu, u.ram, u.disk);
  return json_response(200, {{"host", rows}});
}

// PUT /os-hosts/{host}: "status" enables or disables the host for scheduling as os-services
// does; maintenance mode has no meaning for Concord's drivers (Nova's libvirt answers 501 too).
Result<http::Response> update_host(NovaApi& api, Call& call) {
  CONCORD_RETURN_IF_ERROR(hosts_api_available(call));
  const std::string name(call.param(0));
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  CONCORD_RETURN_IF_ERROR(additional("request body", body, {"status", "maintenance_mode"}));
  if (body.empty())
    return bad(
        "Invalid input for field/attribute request body. Value: {}. {} does not have "
        "enough properties");
  for (const char* k : {"status", "maintenance_mode"}) {
    if (auto v = body.find(k); v != body.end() && *v != "enable" && *v != "disable")
      return bad(std::string("Invalid input for field/attribute ") + k +
                 ". Value: " + dump_json(*v) + ". is not one of ['enable', 'disable']");
  }
  std::optional<bool> disable;
  if (auto v = body.find("status"); v != body.end()) disable = *v == "disable";
  CONCORD_RETURN_IF_ERROR(servers::write_retrying(api.ctx().store, [&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<HostRow> hosts, load_host_rows(tx, api.ctx()));
    CONCORD_ASSIGN_OR_RETURN(HostRow h, find_host(hosts, name));
    (void)h;
    if (!disable || body.contains("maintenance_mode")) return ok();
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("UPDATE compute_hosts SET disabled = ?, updated_at = ?, revision = "
                           "revision + 1 WHERE name = ?",
                           {int64_t{*disable}, stored_time(now_ms(api.ctx().clock)), name}));
    (void)n;
    CONCORD_ASSIGN_OR_RETURN(store::Rows rev,
                             tx.query("SELECT revision FROM compute_hosts WHERE name = ?", {name}));
    return tx.record_change({0, std::string(kHostKind), name, "", "update", rev[0].integer(0), ""});
  }));
  // Nothing is changed when maintenance mode is asked for, as Nova's drivers that lack it.
  if (body.contains("maintenance_mode"))
    return nova_error(501, "Virt driver does not implement host maintenance mode.");
  Json out = {{"host", name}};
  if (disable) out["status"] = *disable ? "disabled" : "enabled";
  return json_response(200, out);
}

Result<http::Response> host_power_action(NovaApi& api, Call& call, std::string_view action) {
  CONCORD_RETURN_IF_ERROR(hosts_api_available(call));
  const std::string name(call.param(0));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<HostRow> hosts, load_host_rows(tx, api.ctx()));
    CONCORD_ASSIGN_OR_RETURN(HostRow h, find_host(hosts, name));
    (void)h;
    return ok();
  }));
  // Concord's agents do not power their machines on or off.
  return nova_error(501, "Host power action '" + std::string(action) +
                             "' is not supported by this cloud's compute agents.");
}

// Nova shows the output of `uptime`; Concord knows when the host's agent first registered.
std::optional<std::string> uptime_text(const HostRow& h, SystemTime now) {
  auto since = parse_iso_time(h.created_at);
  if (!since) return std::nullopt;
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  const int64_t secs =
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(now - *since).count());
  const int64_t days = secs / 86400, hours = (secs % 86400) / 3600, mins = (secs % 3600) / 60;
  char buf[128];
  std::snprintf(buf, sizeof(buf), " %02d:%02d:%02d up %lld day%s, %2lld:%02lld", tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<long long>(days), days == 1 ? "" : "s",
                static_cast<long long>(hours), static_cast<long long>(mins));
  return std::string(buf);
}

Result<http::Response> hypervisor_uptime(NovaApi& api, Call& call) {
  const std::string id(call.param(0));
  const bool v253 = call.version.at_least(53);
  if (v253 && (id.size() != 36 || !servers::is_uuid(id))) return bad("Invalid uuid " + id);
  std::vector<HostRow> hosts;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_host_rows(tx, api.ctx()));
    return ok();
  }));
  for (const HostRow& h : hosts) {
    const std::string hid = v253 ? name_uuid("concord-hypervisor", h.name) : std::to_string(h.rank);
    if (hid != id) continue;
    if (!h.up) return bad("Compute service of " + h.name + " is unavailable at this time.");
    auto up = uptime_text(h, api.ctx().clock.now());
    Json j = {{"id", v253 ? Json(hid) : Json(h.rank)},
              {"hypervisor_hostname", h.name},
              {"state", h.up ? "up" : "down"},
              {"status", h.disabled ? "disabled" : "enabled"},
              {"uptime", up ? Json(*up) : Json()}};
    return json_response(200, {{"hypervisor", j}});
  }
  return fail(Code::kNotFound, "Hypervisor with ID '" + id + "' could not be found.");
}

// ---------------- migrations ----------------

struct Migration {
  int64_t id = 0;
  std::string uuid, server_id, type, status, created_at, updated_at, old_flavor, new_flavor;
  std::optional<std::string> source, dest;
  std::string dest_ip;
};

// The status os-migrations shows: the stored one, refined from the server's state while the
// resize is open (see the file comment).
std::string effective_status(const std::string& stored, const store::Row& r, size_t col) {
  if (stored != "pre-migrating" && stored != "reverting") return stored;
  if (r.is_null(col)) return "error";  // the server row is gone
  const std::string vm_state = r.text(col);
  const std::string task = r.text(col + 1);
  const bool deleted = r.boolean(col + 2);
  if (stored == "reverting") {
    if (task == task::kResizeReverting) return "reverting";
    return vm_state == vm::kError ? "error" : "reverted";
  }
  if (deleted) return r.is_null(col + 3) ? "error" : "confirmed";  // Nova confirms on delete
  if (task == task::kResizePrep || task == task::kResizeFinish) return "migrating";
  if (vm_state == vm::kResized) return "finished";
  if (vm_state == vm::kError) return "error";
  return stored;
}

Result<std::vector<Migration>> load_migrations(store::Tx& tx, std::string_view server_id = {}) {
  std::string sql =
      "SELECT m.id, m.uuid, m.server_id, m.migration_type, m.status, m.source_compute, "
      "m.dest_compute, m.old_flavor_id, m.new_flavor_id, m.created_at, m.updated_at, "
      "s.vm_state, s.task_state, s.deleted, s.old_flavor_json, h.traits_json FROM "
      "compute_migrations m LEFT JOIN compute_servers s ON s.id = m.server_id LEFT JOIN "
      "compute_hosts h ON h.name = m.dest_compute";
  std::vector<store::Value> args;
  if (!server_id.empty()) {
    sql += " WHERE m.server_id = ?";
    args.emplace_back(std::string(server_id));
  }
  sql += " ORDER BY m.created_at DESC, m.id DESC";
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(sql, args));
  std::vector<Migration> out;
  for (const store::Row& r : rows) {
    Migration m;
    m.id = r.integer(0);
    m.uuid = r.text(1);
    m.server_id = r.text(2);
    m.type = r.text(3);
    m.status = effective_status(r.text(4), r, 11);
    m.source = r.opt_text(5);
    m.dest = r.opt_text(6);
    m.old_flavor = r.text(7);
    m.new_flavor = r.text(8);
    m.created_at = r.text(9);
    m.updated_at = r.text(10);
    m.dest_ip = host_ip(r.text(15));
    out.push_back(std::move(m));
  }
  return out;
}

// Nova's instance type ids are integers; Concord's flavor ids are text, shown as integers
// when they are numeric (the default flavors), else null.
Json flavor_ref(const std::string& id) {
  if (id.empty() || id.size() > 18 ||
      !std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return nullptr;
  return std::stoll(id);
}

Json migration_json(const Call& call, const Migration& m) {
  Json j = {{"created_at", servers::usg_time(m.created_at)},
            {"dest_compute", m.dest ? Json(*m.dest) : Json()},
            {"dest_host", m.dest ? Json(m.dest_ip) : Json()},
            {"dest_node", m.dest ? Json(*m.dest) : Json()},
            {"id", m.id},
            {"instance_uuid", m.server_id},
            {"new_instance_type_id", flavor_ref(m.new_flavor)},
            {"old_instance_type_id", flavor_ref(m.old_flavor)},
            {"source_compute", m.source ? Json(*m.source) : Json()},
            {"source_node", m.source ? Json(*m.source) : Json()},
            {"status", m.status},
            {"updated_at", servers::usg_time(m.updated_at)}};
  if (call.version.at_least(23)) j["migration_type"] = m.type;
  if (call.version.at_least(59)) j["uuid"] = m.uuid;
  return j;
}

Result<http::Response> list_migrations(NovaApi& api, Call& call) {
  const ApiVersion& v = call.version;
  auto host = call.req.query_param("host");
  auto status = call.req.query_param("status");
  auto server = call.req.query_param("instance_uuid");
  auto source = call.req.query_param("source_compute");
  std::optional<std::string> type;
  if (v.at_least(23)) type = call.req.query_param("migration_type");
  servers::ChangesPaging paging;
  if (v.at_least(59)) {
    CONCORD_ASSIGN_OR_RETURN(paging, servers::parse_changes_paging(call));
  }
  const int64_t limit = paging.limit;
  const std::optional<std::string>& marker = paging.marker;
  std::vector<Migration> all;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(all, load_migrations(tx));
    return ok();
  }));
  std::vector<const Migration*> items;
  for (const Migration& m : all) {
    if (host && m.source != *host && m.dest != *host) continue;
    if (status && m.status != *status) continue;
    if (server && m.server_id != *server) continue;
    if (source && m.source != *source) continue;
    if (type && m.type != *type) continue;
    if (!paging.in_window(m.updated_at)) continue;
    items.push_back(&m);
  }
  size_t start = 0;
  if (marker) {
    auto it = std::find_if(items.begin(), items.end(),
                           [&](const Migration* m) { return m->uuid == *marker; });
    if (it == items.end()) return bad("Marker " + sanitize_utf8(*marker) + " could not be found.");
    start = static_cast<size_t>(it - items.begin()) + 1;
  }
  Json out = Json::array();
  std::string last;
  for (size_t i = start; i < items.size(); ++i) {
    if (limit >= 0 && static_cast<int64_t>(out.size()) >= limit) break;
    out.push_back(migration_json(call, *items[i]));
    last = items[i]->uuid;
  }
  Json body = {{"migrations", out}};
  if (limit > 0 && static_cast<int64_t>(out.size()) == limit)
    body["migrations_links"] =
        Json::array({{{"rel", "next"},
                      {"href", call.link("os-migrations") + "?limit=" + std::to_string(limit) +
                                   "&marker=" + last}}});
  return json_response(200, body);
}

// GET /servers/{id}/migrations[/{migration_id}] (2.23+): in-progress live migrations only,
// which Concord never starts, so the list is empty for every existing server.
Result<http::Response> server_migrations(NovaApi& api, Call& call, bool one) {
  std::vector<Migration> all;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             servers::load_visible(tx, api, call, call.param(0), "project_reader"));
    CONCORD_ASSIGN_OR_RETURN(all, load_migrations(tx, s.id));
    return ok();
  }));
  std::erase_if(all, [](const Migration& m) {
    return m.type != "live-migration" || !(m.status == "queued" || m.status == "preparing" ||
                                           m.status == "running" || m.status == "post-migrating");
  });
  if (one) {
    const std::string mid(call.param(1));
    for (const Migration& m : all) {
      if (std::to_string(m.id) == mid)
        return json_response(200, {{"migration", migration_json(call, m)}});
    }
    return fail(Code::kNotFound, "In-progress live migration " + mid + " is not found for server " +
                                     std::string(call.param(0)) + ".");
  }
  Json items = Json::array();
  for (const Migration& m : all) items.push_back(migration_json(call, m));
  return json_response(200, {{"migrations", items}});
}

// ---------------- diagnostics ----------------

std::string diag_state(int64_t power_state) {
  switch (power_state) {
    case power::kRunning: return "running";
    case power::kPaused: return "paused";
    case power::kShutdown: return "shutdown";
    case power::kCrashed: return "crashed";
    case power::kSuspended: return "suspended";
    default: return "pending";
  }
}

Result<http::Response> server_diagnostics(NovaApi& api, Call& call) {
  ServerRow s;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(s,
                             servers::load_visible(tx, api, call, call.param(0), "project_reader"));
    return ok();
  }));
  if (!s.host || s.vm_state == vm::kBuilding)
    return fail(Code::kFailedPrecondition, "Instance " + s.id + " is not ready");
  CONCORD_ASSIGN_OR_RETURN(FlavorSnapshot f, flavor_from_json(s.flavor_json));
  const bool vm = s.driver == "vm";
  std::optional<int64_t> uptime;
  if (s.power_state == power::kRunning && s.launched_at) {
    if (auto t = parse_iso_time(*s.launched_at))
      uptime = std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::seconds>(api.ctx().clock.now() - *t).count());
  }
  // Disks as the driver lays them out: the root disk (a container's rootfs), then ephemeral
  // and swap disks of a VM's flavor.
  int64_t disks = 1;
  if (vm && f.ephemeral_gb > 0) ++disks;
  if (vm && f.swap_mb > 0) ++disks;
  int64_t nics = 0;
  if (auto a = parse_json(s.addresses_json); a && a->is_object()) {
    for (auto& [net, ips] : a->items()) {
      (void)net;
      if (ips.is_array() && !ips.empty()) ++nics;
    }
  }
  const std::string state = diag_state(s.power_state);
  const std::string driver = vm ? "qemu" : "runc";
  if (!call.version.at_least(48)) {
    // Before 2.48 Nova passes the driver's own dictionary through; Concord's is this one.
    Json j = {{"state", state},
              {"driver", driver},
              {"uptime", uptime ? Json(*uptime) : Json()},
              {"num_cpus", f.vcpus},
              {"memory", f.ram_mb * 1024},
              {"num_disks", disks},
              {"num_nics", nics},
              {"config_drive", s.config_drive}};
    return json_response(200, j);
  }
  Json cpus = Json::array();
  for (int64_t i = 0; i < f.vcpus; ++i)
    cpus.push_back({{"id", i}, {"time", nullptr}, {"utilisation", nullptr}});
  Json nic_details = Json::array();
  for (int64_t i = 0; i < nics; ++i) {
    Json n = {{"mac_address", nullptr}};
    for (const char* k : {"rx_octets", "rx_errors", "rx_drop", "rx_packets", "rx_rate", "tx_octets",
                          "tx_errors", "tx_drop", "tx_packets", "tx_rate"})
      n[k] = nullptr;
    nic_details.push_back(n);
  }
  Json disk_details = Json::array();
  for (int64_t i = 0; i < disks; ++i)
    disk_details.push_back({{"read_bytes", nullptr},
                            {"read_requests", nullptr},
                            {"write_bytes", nullptr},
                            {"write_requests", nullptr},
                            {"errors_count", nullptr}});
  Json j = {{"state", state},
            {"driver", driver},
            {"hypervisor", vm ? Json("qemu") : Json("runc")},
            {"hypervisor_os", "linux"},
            {"uptime", uptime ? Json(*uptime) : Json()},
            {"config_drive", s.config_drive},
            {"num_cpus", f.vcpus},
            {"num_nics", nics},
            {"num_disks", disks},
            {"memory_details", {{"maximum", f.ram_mb}, {"used", nullptr}}},
            {"cpu_details", cpus},
            {"nic_details", nic_details},
            {"disk_details", disk_details}};
  return json_response(200, j);
}

// ---------------- external events ----------------

Result<http::Response> external_events(NovaApi& api, Call& call) {
  const ApiVersion& v = call.version;
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  CONCORD_RETURN_IF_ERROR(additional("request body", body, {"events"}));
  auto events = body.find("events");
  if (events == body.end())
    return bad("Invalid input for field/attribute events. 'events' is a required property");
  if (!events->is_array() || events->empty())
    return bad("Invalid input for field/attribute events. Value: " + dump_json(*events) +
               ". must be a non-empty list");
  std::set<std::string> names = {"network-changed", "network-vif-plugged", "network-vif-unplugged",
                                 "network-vif-deleted"};
  if (v.at_least(51)) names.insert("volume-extended");
  if (v.at_least(76)) names.insert("power-update");
  for (const Json& e : *events) {
    if (!e.is_object())
      return bad("Invalid input for field/attribute events. Value: " + dump_json(e) +
                 ". is not of type 'object'");
    CONCORD_RETURN_IF_ERROR(additional("events", e, {"name", "server_uuid", "status", "tag"}));
    auto n = e.find("name");
    if (n == e.end() || !n->is_string() || !names.contains(n->get<std::string>()))
      return bad("Invalid input for field/attribute name. Value: " +
                 (n == e.end() ? std::string("null") : dump_json(*n)) +
                 ". is not a known event name");
    auto u = e.find("server_uuid");
    if (u == e.end() || !u->is_string())
      return bad("Invalid input for field/attribute events. 'server_uuid' is a required property");
    if (auto st = e.find("status"); st != e.end()) {
      if (*st != "failed" && *st != "completed" && *st != "in-progress")
        return bad("Invalid input for field/attribute status. Value: " + dump_json(*st) +
                   ". is not one of ['failed', 'completed', 'in-progress']");
    }
    if (auto t = e.find("tag"); t != e.end()) {
      if (!t->is_string() || t->get<std::string>().size() > 255)
        return bad("Invalid input for field/attribute tag. Value: " + dump_json(*t) +
                   ". must be a string of at most 255 characters");
    }
  }
  Json out = Json::array();
  int accepted = 0;
  bool any_failed = false;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    accepted = 0;
    any_failed = false;
    for (const Json& e : *events) {
      Json r = {{"name", e["name"]},
                {"server_uuid", e["server_uuid"]},
                {"status", e.value("status", "completed")}};
      if (e.contains("tag")) r["tag"] = e["tag"];
      int code = 200;
      auto s = load_server(tx, e["server_uuid"].get<std::string>());
      if (!s) {
        if (s.error().code() != Code::kNotFound) return fail(s.error());
        code = 404;
      } else if (!s->host) {
        code = 422;  // not on a host yet: nobody could receive it (Nova's answer)
      } else if (e["name"] == "power-update" && e.value("tag", "") != "POWER_ON" &&
                 e.value("tag", "") != "POWER_OFF") {
        code = 400;
      }
      if (code != 200) {
        r["status"] = "failed";
        any_failed = true;
      } else {
        ++accepted;
      }
      r["code"] = code;
      out.push_back(r);
    }
    return ok();
  }));
  if (accepted == 0) return fail(Code::kNotFound, "No instances found for any event");
  return json_response(any_failed ? 207 : 200, {{"events", out}});
}

// ---------------- instance usage audit log ----------------

// Nova's last completed monthly audit period before `before`: [first of the previous month,
// first of this month).
std::pair<std::string, std::string> audit_period(SystemTime before) {
  const std::time_t t = std::chrono::system_clock::to_time_t(before);
  std::tm tm{};
  gmtime_r(&t, &tm);
  int year = tm.tm_year + 1900, month = tm.tm_mon + 1;
  int prev_year = month == 1 ? year - 1 : year, prev_month = month == 1 ? 12 : month - 1;
  char b[64], e[64];
  std::snprintf(b, sizeof(b), "%04d-%02d-01 00:00:00", prev_year, prev_month);
  std::snprintf(e, sizeof(e), "%04d-%02d-01 00:00:00", year, month);
  return {b, e};
}

Result<http::Response> audit_log(NovaApi& api, Call& call, bool one) {
  SystemTime before = api.ctx().clock.now();
  if (one) {
    std::string text(call.param(0));
    // Nova accepts "%Y-%m-%d %H:%M:%S" with an optional fraction.
    std::optional<SystemTime> parsed;
    if (text.size() >= 19 && text[10] == ' ') {
      std::string iso = text;
      iso[10] = 'T';
      parsed = parse_iso_time(iso);
    }
    if (!parsed) return bad("Invalid timestamp for date " + sanitize_utf8(text));
    before = *parsed;
  }
  std::vector<std::string> hosts;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT name FROM compute_hosts ORDER BY name", {}));
    hosts.clear();
    for (const store::Row& r : rows) hosts.push_back(r.text(0));
    return ok();
  }));
  auto [begin, end] = audit_period(before);
  const int64_t n = static_cast<int64_t>(hosts.size());
  Json log = {{"hosts_not_run", hosts},
              {"log", Json::object()},
              {"num_hosts", n},
              {"num_hosts_done", 0},
              {"num_hosts_not_run", n},
              {"num_hosts_running", 0},
              {"overall_status", "0 of " + std::to_string(n) + " hosts done. 0 errors."},
              {"period_beginning", begin},
              {"period_ending", end},
              {"total_errors", 0},
              {"total_instances", 0}};
  return json_response(200,
                       {{one ? "instance_usage_audit_log" : "instance_usage_audit_logs", log}});
}

}  // namespace

void add_admin_routes(NovaApi& api) {
  using M = http::Method;
  NovaApi* a = &api;
  // os_compute_api:os-aggregates:{index,create,show,update,delete,add_host,remove_host,
  // set_metadata}
  api.add(M::kGet, "/v2.1/os-aggregates", "admin", [a](Call& c) { return list_aggregates(*a, c); });
  api.add(M::kPost, "/v2.1/os-aggregates", "admin",
          [a](Call& c) { return create_aggregate(*a, c); });
  api.add(M::kGet, "/v2.1/os-aggregates/{aggregate_id}", "admin",
          [a](Call& c) { return show_aggregate(*a, c); });
  api.add(M::kPut, "/v2.1/os-aggregates/{aggregate_id}", "admin",
          [a](Call& c) { return update_aggregate(*a, c); });
  api.add(M::kDelete, "/v2.1/os-aggregates/{aggregate_id}", "admin",
          [a](Call& c) { return delete_aggregate(*a, c); });
  api.add(M::kPost, "/v2.1/os-aggregates/{aggregate_id}/action", "admin",
          [a](Call& c) { return aggregate_action(*a, c); });

  // os_compute_api:os-hosts:{list,show,update,start,shutdown,reboot}
  api.add(M::kGet, "/v2.1/os-hosts", "admin", [a](Call& c) { return list_hosts(*a, c); });
  api.add(M::kGet, "/v2.1/os-hosts/{host_name}", "admin",
          [a](Call& c) { return show_host(*a, c); });
  api.add(M::kPut, "/v2.1/os-hosts/{host_name}", "admin",
          [a](Call& c) { return update_host(*a, c); });
  for (const char* action : {"startup", "shutdown", "reboot"}) {
    std::string act = action;
    api.add(M::kGet, "/v2.1/os-hosts/{host_name}/" + act, "admin",
            [a, act](Call& c) { return host_power_action(*a, c, act); });
  }

  // os_compute_api:os-hypervisors:uptime
  api.add(M::kGet, "/v2.1/os-hypervisors/{hypervisor_id}/uptime", "admin",
          [a](Call& c) { return hypervisor_uptime(*a, c); });

  // os_compute_api:os-migrations:index, os_compute_api:servers:migrations:{index,show}
  api.add(M::kGet, "/v2.1/os-migrations", "admin", [a](Call& c) { return list_migrations(*a, c); });
  api.add(
      M::kGet, "/v2.1/servers/{server_id}/migrations", "admin",
      [a](Call& c) { return server_migrations(*a, c, false); }, ApiVersion{2, 23});
  api.add(
      M::kGet, "/v2.1/servers/{server_id}/migrations/{migration_id}", "admin",
      [a](Call& c) { return server_migrations(*a, c, true); }, ApiVersion{2, 23});

  // os_compute_api:os-server-diagnostics
  api.add(M::kGet, "/v2.1/servers/{server_id}/diagnostics", "admin",
          [a](Call& c) { return server_diagnostics(*a, c); });

  // os_compute_api:os-server-external-events:create
  api.add(M::kPost, "/v2.1/os-server-external-events", "admin",
          [a](Call& c) { return external_events(*a, c); });

  // os_compute_api:os-instance-usage-audit-log:{list,show}
  api.add(M::kGet, "/v2.1/os-instance_usage_audit_log", "admin",
          [a](Call& c) { return audit_log(*a, c, false); });
  api.add(M::kGet, "/v2.1/os-instance_usage_audit_log/{before_timestamp}", "admin",
          [a](Call& c) { return audit_log(*a, c, true); });
}

}  // namespace concord::compute

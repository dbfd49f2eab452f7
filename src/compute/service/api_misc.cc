// os-availability-zone, os-server-groups, os-hypervisors and os-services.
//
// Hosts are what agents registered in compute_hosts; there is no separate service table. Each
// host is one "nova-compute" service and one hypervisor; the API server itself stands for
// Nova's control services (nova-scheduler, nova-conductor) in the "internal" zone. Nova's
// integer ids (before 2.53) are the host's rank by registration time (hosts are never
// removed, so ranks are stable); from 2.53 ids are UUIDs derived from the host name, so they
// are stable without storing anything. A host is up when its agent reported within
// compute.down_after and the controller has not marked it down.
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/random.h"
#include "base/time_format.h"
#include "compute/service/api.h"
#include "compute/service/model.h"
#include "compute/service/quota.h"

namespace concord::compute {

std::string name_uuid(std::string_view ns, std::string_view name) {
  std::string input = std::string(ns) + ":" + std::string(name);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_sha1(), nullptr);
  md[6] = static_cast<unsigned char>((md[6] & 0x0f) | 0x50);
  md[8] = static_cast<unsigned char>((md[8] & 0x3f) | 0x80);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

namespace {

constexpr const char* kInternalZone = "internal";

bool looks_like_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

std::string controller_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "concord";
  return buf;
}

struct Host {
  int64_t rank = 0;  // 1-based, by registration time
  std::string name, zone, drivers, traits_json, state;
  int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
  bool disabled = false;
  std::optional<std::string> disabled_reason;
  int64_t last_heartbeat_ms = 0;
  bool up = false;
  // Claimed resources and running servers.
  int64_t vcpus_used = 0, ram_used = 0, disk_used = 0, running = 0;
};

int64_t now_ms(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
      .count();
}

std::string ms_time(int64_t ms) {
  return format_iso_naive(SystemTime(std::chrono::milliseconds(ms)));
}

Result<std::vector<Host>> load_all_hosts(store::Tx& tx, const ComputeContext& ctx,
                                         bool with_usage) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query(std::string("SELECT h.name, ") + kHostZoneSql +
               ", h.vcpus, h.ram_mb, h.disk_gb, h.drivers, h.traits_json, h.state, h.disabled, "
               "h.disabled_reason, h.last_heartbeat_ms FROM compute_hosts h ORDER BY "
               "h.created_at, h.name"));
  std::vector<Host> hosts;
  int64_t now = now_ms(ctx.clock);
  for (const store::Row& r : rows) {
    Host h;
    h.rank = static_cast<int64_t>(hosts.size()) + 1;
    h.name = r.text(0);
    h.zone = r.text(1);
    h.vcpus = r.integer(2);
    h.ram_mb = r.integer(3);
    h.disk_gb = r.integer(4);
    h.drivers = r.text(5);
    h.traits_json = r.text(6);
    h.state = r.text(7);
    h.disabled = r.boolean(8);
    h.disabled_reason = r.opt_text(9);
    h.last_heartbeat_ms = r.integer(10);
    h.up = h.state == "up" && now - h.last_heartbeat_ms <= ctx.options.down_after.count();
    hosts.push_back(std::move(h));
  }
  if (with_usage) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows used,
        tx.query("SELECT host, CAST(SUM(vcpus) AS BIGINT), CAST(SUM(ram_mb) AS BIGINT), "
                 "CAST(SUM(disk_gb) AS BIGINT) FROM compute_allocations GROUP BY host"));
    CONCORD_ASSIGN_OR_RETURN(store::Rows running,
                             tx.query("SELECT host, COUNT(*) FROM compute_servers WHERE deleted "
                                      "= 0 AND host IS NOT NULL GROUP BY host"));
    for (Host& h : hosts) {
      for (const store::Row& u : used) {
        if (u.text(0) != h.name) continue;
        h.vcpus_used = u.integer(1);
        h.ram_used = u.integer(2);
        h.disk_used = u.integer(3);
      }
      for (const store::Row& u : running) {
        if (u.text(0) == h.name) h.running = u.integer(1);
      }
    }
  }
  return hosts;
}

http::Response json_response(int status, const Json& body) {
  return http::Response::json(status, dump_json(body));
}

Status bad(std::string message) {
  return fail(Code::kInvalidArgument, std::move(message));
}

Result<int64_t> non_negative_query(const NovaApi::Call& call, const char* name, int64_t fallback) {
  auto v = call.req.query_param(name);
  if (!v) return fallback;
  const std::string& s = *v;
  if (s.empty() || s.size() > 18 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return fail(bad(std::string("Invalid input for query parameters ") + name + ". Value: " + s +
                    ". '" + s + "' does not match '^[0-9]*$'")
                    .error());
  return std::stoll(s);
}

bool truthy(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s == "1" || s == "true" || s == "t" || s == "yes" || s == "y" || s == "on";
}

// ---------------- availability zones ----------------

Result<http::Response> list_zones(NovaApi& api, NovaApi::Call&, bool detail) {
  std::vector<Host> hosts;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_all_hosts(tx, api.ctx(), false));
    return ok();
  }));
  // zone -> available (any host up and enabled), keeping first-seen order.
  std::vector<std::string> order;
  std::map<std::string, bool> available;
  auto note = [&](const std::string& zone, bool usable) {
    if (!available.contains(zone)) {
      order.push_back(zone);
      available[zone] = false;
    }
    available[zone] = available[zone] || usable;
  };
  note(api.ctx().options.default_availability_zone, false);
  for (const Host& h : hosts) note(h.zone, h.up && !h.disabled);
  Json zones = Json::array();
  std::string now = format_iso_naive(api.ctx().clock.now());
  if (detail) {
    Json control = {{"available", true}, {"active", true}, {"updated_at", now}};
    zones.push_back(
        {{"zoneName", kInternalZone},
         {"zoneState", {{"available", true}}},
         {"hosts",
          {{controller_host(), {{"nova-conductor", control}, {"nova-scheduler", control}}}}}});
  }
  for (const std::string& zone : order) {
    Json z = {{"zoneName", zone}, {"zoneState", {{"available", available[zone]}}}};
    if (detail) {
      Json hs = Json::object();
      for (const Host& h : hosts) {
        if (h.zone != zone) continue;
        hs[h.name] = {{"nova-compute",
                       {{"available", h.up},
                        {"active", !h.disabled},
                        {"updated_at", ms_time(h.last_heartbeat_ms)}}}};
      }
      z["hosts"] = hs.empty() ? Json() : hs;
    } else {
      z["hosts"] = nullptr;
    }
    zones.push_back(z);
  }
  return json_response(200, {{"availabilityZoneInfo", zones}});
}

// ---------------- server groups ----------------

struct Group {
  std::string id, project_id, user_id, name, policy;
  std::optional<int64_t> max_per_host;
  std::vector<std::string> members;
};

constexpr const char* kGroupColumns = "id, project_id, user_id, name, policy, max_server_per_host";

Group group_from_row(const store::Row& r) {
  Group g;
  g.id = r.text(0);
  g.project_id = r.text(1);
  g.user_id = r.text(2);
  g.name = r.text(3);
  g.policy = r.text(4);
  if (!r.is_null(5)) g.max_per_host = r.integer(5);
  return g;
}

Status load_members(store::Tx& tx, Group& g) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT m.server_id FROM compute_server_group_members m JOIN compute_servers s ON "
               "s.id = m.server_id WHERE m.group_id = ? AND s.deleted = 0 ORDER BY m.server_id",
               {g.id}));
  g.members.clear();
  for (const store::Row& r : rows) g.members.push_back(r.text(0));
  return ok();
}

Json group_json(const NovaApi::Call& call, const Group& g) {
  Json j = {{"id", g.id}, {"name", g.name}, {"members", g.members}};
  if (call.version.at_least(64)) {
    j["policy"] = g.policy;
    j["rules"] = Json::object();
    if (g.max_per_host) j["rules"]["max_server_per_host"] = *g.max_per_host;
  } else {
    j["policies"] = Json::array({g.policy});
    j["metadata"] = Json::object();
  }
  if (call.version.at_least(13)) {
    j["project_id"] = g.project_id;
    j["user_id"] = g.user_id;
  }
  return j;
}

Status group_not_found(std::string_view id) {
  return fail(Code::kNotFound, "Instance group " + std::string(id) + " could not be found.");
}

Result<Group> load_group(store::Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query(std::string("SELECT ") + kGroupColumns + " FROM compute_server_groups WHERE id = ?",
               {std::string(id)}));
  if (rows.empty()) return fail(group_not_found(id).error());
  Group g = group_from_row(rows[0]);
  CONCORD_RETURN_IF_ERROR(load_members(tx, g));
  return g;
}

Result<http::Response> create_group(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find("server_group");
  if (body.size() != 1 || it == body.end() || !it->is_object())
    return fail(bad("Invalid input for field/attribute server_group. Value: " + dump_json(body) +
                    ". 'server_group' is a required property")
                    .error());
  const Json& in = *it;
  const bool v264 = call.version.at_least(64);
  std::set<std::string> allowed = {"name"};
  allowed.insert(v264 ? "policy" : "policies");
  if (v264) allowed.insert("rules");
  for (auto& [k, v] : in.items()) {
    if (!allowed.contains(k))
      return fail(bad("Invalid input for field/attribute server_group. Value: " + dump_json(in) +
                      ". Additional properties are not allowed ('" + k + "' was unexpected)")
                      .error());
  }
  const Json name = in.value("name", Json());
  if (!name.is_string() || name.get<std::string>().empty() ||
      name.get<std::string>().size() > 255 ||
      std::isspace(static_cast<unsigned char>(name.get<std::string>().front())) ||
      std::isspace(static_cast<unsigned char>(name.get<std::string>().back())))
    return fail(bad("Invalid input for field/attribute name. Value: " + dump_json(name) +
                    ". It must be a string of 1 to 255 characters without leading or trailing "
                    "whitespace")
                    .error());
  std::set<std::string> policies = {"affinity", "anti-affinity"};
  if (call.version.at_least(15)) {
    policies.insert("soft-affinity");
    policies.insert("soft-anti-affinity");
  }
  Group g;
  g.id = new_uuid();
  g.name = name.get<std::string>();
  g.project_id = call.caller.project_id;
  g.user_id = call.caller.user_id;
  if (v264) {
    const Json p = in.value("policy", Json());
    if (!p.is_string() || !policies.contains(p.get<std::string>()))
      return fail(bad("Invalid input for field/attribute policy. Value: " + dump_json(p) +
                      ". It must be one of the server group policies")
                      .error());
    g.policy = p.get<std::string>();
    if (auto r = in.find("rules"); r != in.end()) {
      if (!r->is_object())
        return fail(bad("Invalid input for field/attribute rules. Value: " + dump_json(*r) +
                        ". is not of type 'object'")
                        .error());
      for (auto& [k, v] : r->items()) {
        if (k != "max_server_per_host")
          return fail(bad("Invalid input for field/attribute rules. Additional properties are "
                          "not allowed ('" +
                          k + "' was unexpected)")
                          .error());
        int64_t n = 0;
        if (v.is_number_integer()) {
          n = v.get<int64_t>();
        } else if (v.is_string() && !v.get<std::string>().empty() &&
                   v.get<std::string>().size() < 10 &&
                   std::all_of(v.get_ref<const std::string&>().begin(),
                               v.get_ref<const std::string&>().end(),
                               [](char c) { return c >= '0' && c <= '9'; })) {
          n = std::stoll(v.get<std::string>());
        } else {
          return fail(bad("Invalid input for field/attribute max_server_per_host. Value: " +
                          dump_json(v) + ". is not a positive integer")
                          .error());
        }
        if (n < 1 || n > 2147483647)
          return fail(bad("Invalid input for field/attribute max_server_per_host. Value: " +
                          dump_json(v) + ". is less than the minimum of 1")
                          .error());
        g.max_per_host = n;
      }
      if (!r->empty() && g.policy != "anti-affinity")
        return fail(bad("Only anti-affinity policy supports rules.").error());
    }
  } else {
    const Json p = in.value("policies", Json());
    if (!p.is_array() || p.size() != 1 || !p[0].is_string() ||
        !policies.contains(p[0].get<std::string>()))
      return fail(bad("Invalid input for field/attribute policies. Value: " + dump_json(p) +
                      ". It must be a list of exactly one server group policy")
                      .error());
    g.policy = p[0].get<std::string>();
  }
  std::string now = format_iso_naive(api.ctx().clock.now());
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.serialize());  // the quota count holds until the insert commits
    CONCORD_ASSIGN_OR_RETURN(QuotaLimits limits, project_limits(tx, g.project_id));
    int64_t limit = limits.count("server_groups") ? limits.at("server_groups") : -1;
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows count,
        tx.query("SELECT COUNT(*) FROM compute_server_groups WHERE project_id = ?",
                 {g.project_id}));
    if (limit >= 0 && count[0].integer(0) + 1 > limit)
      return fail(Code::kResourceExhausted, "Quota exceeded, too many server groups.");
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec(std::string("INSERT INTO compute_server_groups (") + kGroupColumns +
                               ", created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           {g.id, g.project_id, g.user_id, g.name, g.policy,
                            g.max_per_host ? store::Value(*g.max_per_host) : store::null(), now}));
    (void)n;
    return ok();
  }));
  return json_response(200, {{"server_group", group_json(call, g)}});
}

Result<http::Response> list_groups(NovaApi& api, NovaApi::Call& call) {
  bool all = call.caller.is_admin() && truthy(call.req.query_param("all_projects").value_or(""));
  CONCORD_ASSIGN_OR_RETURN(int64_t limit, non_negative_query(call, "limit", 1000));
  CONCORD_ASSIGN_OR_RETURN(int64_t offset, non_negative_query(call, "offset", 0));
  limit = std::min<int64_t>(limit == 0 ? 1000 : limit, 1000);
  std::vector<Group> groups;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    groups.clear();
    std::string sql = std::string("SELECT ") + kGroupColumns + " FROM compute_server_groups" +
                      (all ? "" : " WHERE project_id = ?") +
                      " ORDER BY created_at, id LIMIT ? OFFSET ?";
    std::vector<store::Value> params;
    if (!all) params.emplace_back(call.caller.project_id);
    params.emplace_back(limit);
    params.emplace_back(offset);
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(sql, params));
    for (const store::Row& r : rows) {
      Group g = group_from_row(r);
      CONCORD_RETURN_IF_ERROR(load_members(tx, g));
      groups.push_back(std::move(g));
    }
    return ok();
  }));
  Json items = Json::array();
  for (const Group& g : groups) items.push_back(group_json(call, g));
  return json_response(200, {{"server_groups", items}});
}

Result<http::Response> show_group(NovaApi& api, NovaApi::Call& call) {
  Group g;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(g, load_group(tx, call.param(0)));
    return ok();
  }));
  CONCORD_RETURN_IF_ERROR(api.authorize(call, "project_reader", g.project_id, true));
  return json_response(200, {{"server_group", group_json(call, g)}});
}

Result<http::Response> delete_group(NovaApi& api, NovaApi::Call& call) {
  std::string id(call.param(0));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Group g, load_group(tx, id));
    CONCORD_RETURN_IF_ERROR(api.authorize(call, "project_reader", g.project_id, true));
    CONCORD_RETURN_IF_ERROR(api.authorize(call, "project_member", g.project_id));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t m, tx.exec("DELETE FROM compute_server_group_members WHERE group_id = ?", {id}));
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("DELETE FROM compute_server_groups WHERE id = ?", {id}));
    (void)m;
    (void)n;
    return ok();
  }));
  return http::Response::empty(204);
}

// ---------------- hypervisors ----------------

std::string hypervisor_id_text(const NovaApi::Call& call, const Host& h) {
  return call.version.at_least(53) ? name_uuid("concord-hypervisor", h.name)
                                   : std::to_string(h.rank);
}
Json hypervisor_id(const NovaApi::Call& call, const Host& h) {
  if (call.version.at_least(53)) return name_uuid("concord-hypervisor", h.name);
  return h.rank;
}
Json service_id(const NovaApi::Call& call, const Host& h) {
  if (call.version.at_least(53)) return name_uuid("concord-service:nova-compute", h.name);
  return h.rank + 2;  // 1 and 2 are the control services
}

std::string host_ip(const Host& h) {
  auto traits = parse_json(h.traits_json);
  if (traits && traits->is_object()) {
    auto it = traits->find("host_ip");
    if (it != traits->end() && it->is_string()) return it->get<std::string>();
  }
  return "127.0.0.1";
}

Result<std::vector<std::pair<std::string, std::string>>> host_servers(store::Tx& tx,
                                                                      const std::string& host) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT id, name FROM compute_servers WHERE host = ? AND deleted = 0 ORDER BY "
               "created_ms, id",
               {host}));
  std::vector<std::pair<std::string, std::string>> out;
  for (const store::Row& r : rows) out.emplace_back(r.text(0), r.text(1));
  return out;
}

Json servers_json(const std::vector<std::pair<std::string, std::string>>& servers) {
  Json a = Json::array();
  for (const auto& [id, name] : servers) a.push_back({{"uuid", id}, {"name", name}});
  return a;
}

Json hypervisor_brief(const NovaApi::Call& call, const Host& h) {
  return {{"id", hypervisor_id(call, h)},
          {"hypervisor_hostname", h.name},
          {"state", h.up ? "up" : "down"},
          {"status", h.disabled ? "disabled" : "enabled"}};
}

Json hypervisor_detail(const NovaApi::Call& call, const Host& h) {
  Json j = hypervisor_brief(call, h);
  j["cpu_info"] = call.version.at_least(28) ? Json::object() : Json("{}");
  j["current_workload"] = 0;
  j["disk_available_least"] = h.disk_gb - h.disk_used;
  j["free_disk_gb"] = h.disk_gb - h.disk_used;
  j["free_ram_mb"] = h.ram_mb - h.ram_used;
  j["host_ip"] = host_ip(h);
  j["hypervisor_type"] = h.drivers.find("vm") != std::string::npos ? "QEMU" : "runc";
  j["hypervisor_version"] = 1;
  j["local_gb"] = h.disk_gb;
  j["local_gb_used"] = h.disk_used;
  j["memory_mb"] = h.ram_mb;
  j["memory_mb_used"] = h.ram_used;
  j["running_vms"] = h.running;
  j["vcpus"] = h.vcpus;
  j["vcpus_used"] = h.vcpus_used;
  j["service"] = {{"host", h.name},
                  {"id", service_id(call, h)},
                  {"disabled_reason", h.disabled_reason ? Json(*h.disabled_reason) : Json()}};
  return j;
}

Result<http::Response> list_hypervisors(NovaApi& api, NovaApi::Call& call, bool detail) {
  const bool v253 = call.version.at_least(53);
  std::optional<std::string> pattern;
  bool with_servers = false;
  if (v253) {
    pattern = call.req.query_param("hypervisor_hostname_pattern");
    with_servers = truthy(call.req.query_param("with_servers").value_or(""));
  }
  int64_t limit = 1000;
  std::optional<std::string> marker;
  if (call.version.at_least(33)) {
    CONCORD_ASSIGN_OR_RETURN(limit, non_negative_query(call, "limit", 1000));
    if (limit == 0) limit = 1000;
    marker = call.req.query_param("marker");
    if (pattern && (call.req.query_param("limit") || marker))
      return fail(bad("Paging over hypervisors with the hypervisor_hostname_pattern query "
                      "parameter is not supported.")
                      .error());
  }
  std::vector<Host> hosts;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> servers;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_all_hosts(tx, api.ctx(), detail));
    if (with_servers) {
      for (const Host& h : hosts) {
        CONCORD_ASSIGN_OR_RETURN(servers[h.name], host_servers(tx, h.name));
      }
    }
    return ok();
  }));
  if (pattern) {
    std::erase_if(hosts, [&](const Host& h) { return h.name.find(*pattern) == std::string::npos; });
    if (hosts.empty())
      return fail(Code::kNotFound, "No hypervisor matching '" + *pattern + "' could be found.");
  }
  size_t start = 0;
  if (marker) {
    auto it = std::find_if(hosts.begin(), hosts.end(),
                           [&](const Host& h) { return hypervisor_id_text(call, h) == *marker; });
    if (it == hosts.end()) return fail(bad("marker [" + *marker + "] not found").error());
    start = static_cast<size_t>(it - hosts.begin()) + 1;
  }
  Json items = Json::array();
  std::string last;
  for (size_t i = start; i < hosts.size() && static_cast<int64_t>(items.size()) < limit; ++i) {
    Json j = detail ? hypervisor_detail(call, hosts[i]) : hypervisor_brief(call, hosts[i]);
    if (with_servers && !servers[hosts[i].name].empty())
      j["servers"] = servers_json(servers[hosts[i].name]);
    items.push_back(j);
    last = hypervisor_id_text(call, hosts[i]);
  }
  Json body = {{"hypervisors", items}};
  if (call.version.at_least(33) && static_cast<int64_t>(items.size()) == limit)
    body["hypervisors_links"] =
        Json::array({{{"rel", "next"},
                      {"href", call.link(detail ? "os-hypervisors/detail" : "os-hypervisors") +
                                   "?limit=" + std::to_string(limit) + "&marker=" + last}}});
  return json_response(200, body);
}

Result<Host> find_hypervisor(const NovaApi::Call& call, const std::vector<Host>& hosts,
                             std::string_view id) {
  if (call.version.at_least(53) && !looks_like_uuid(id))
    return fail(bad("Invalid uuid " + std::string(id)).error());
  for (const Host& h : hosts) {
    if (hypervisor_id_text(call, h) == id) return h;
  }
  return fail(Code::kNotFound, "Hypervisor with ID '" + std::string(id) + "' could not be found.");
}

Result<http::Response> show_hypervisor(NovaApi& api, NovaApi::Call& call) {
  std::vector<Host> hosts;
  std::vector<std::pair<std::string, std::string>> servers;
  bool with_servers =
      call.version.at_least(53) && truthy(call.req.query_param("with_servers").value_or(""));
  Host h;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_all_hosts(tx, api.ctx(), true));
    CONCORD_ASSIGN_OR_RETURN(h, find_hypervisor(call, hosts, call.param(0)));
    if (with_servers) {
      CONCORD_ASSIGN_OR_RETURN(servers, host_servers(tx, h.name));
    }
    return ok();
  }));
  Json j = hypervisor_detail(call, h);
  if (with_servers && !servers.empty()) j["servers"] = servers_json(servers);
  return json_response(200, {{"hypervisor", j}});
}

Result<http::Response> hypervisor_statistics(NovaApi& api, NovaApi::Call&) {
  std::vector<Host> hosts;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_all_hosts(tx, api.ctx(), true));
    return ok();
  }));
  Json s = {{"count", 0},
            {"current_workload", 0},
            {"disk_available_least", 0},
            {"free_disk_gb", 0},
            {"free_ram_mb", 0},
            {"local_gb", 0},
            {"local_gb_used", 0},
            {"memory_mb", 0},
            {"memory_mb_used", 0},
            {"running_vms", 0},
            {"vcpus", 0},
            {"vcpus_used", 0}};
  auto add = [&](const char* k, int64_t v) { s[k] = s[k].get<int64_t>() + v; };
  for (const Host& h : hosts) {
    add("count", 1);
    add("disk_available_least", h.disk_gb - h.disk_used);
    add("free_disk_gb", h.disk_gb - h.disk_used);
    add("free_ram_mb", h.ram_mb - h.ram_used);
    add("local_gb", h.disk_gb);
    add("local_gb_used", h.disk_used);
    add("memory_mb", h.ram_mb);
    add("memory_mb_used", h.ram_used);
    add("running_vms", h.running);
    add("vcpus", h.vcpus);
    add("vcpus_used", h.vcpus_used);
  }
  return json_response(200, {{"hypervisor_statistics", s}});
}

// Before 2.53: /os-hypervisors/{pattern}/search and /os-hypervisors/{id}/servers.
Result<http::Response> search_hypervisors(NovaApi& api, NovaApi::Call& call, bool servers) {
  if (call.version.at_least(53)) return fail(Code::kNotFound, "The resource could not be found.");
  std::string key(call.param(0));
  std::vector<Host> hosts;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> by_host;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_all_hosts(tx, api.ctx(), false));
    for (const Host& h : hosts) {
      if (h.name.find(key) == std::string::npos) continue;
      if (servers) {
        CONCORD_ASSIGN_OR_RETURN(by_host[h.name], host_servers(tx, h.name));
      }
    }
    return ok();
  }));
  Json items = Json::array();
  for (const Host& h : hosts) {
    // Nova's legacy /servers route takes a hostname pattern despite its name.
    if (h.name.find(key) == std::string::npos) continue;
    Json j = hypervisor_brief(call, h);
    if (servers && !by_host[h.name].empty()) j["servers"] = servers_json(by_host[h.name]);
    items.push_back(j);
  }
  if (items.empty())
    return fail(Code::kNotFound, "No hypervisor matching '" + key + "' could be found.");
  return json_response(200, {{"hypervisors", items}});
}

// ---------------- services ----------------

Json compute_service_json(const NovaApi::Call& call, const Host& h) {
  Json j = {{"id", service_id(call, h)},
            {"binary", "nova-compute"},
            {"host", h.name},
            {"zone", h.zone},
            {"status", h.disabled ? "disabled" : "enabled"},
            {"state", h.up ? "up" : "down"},
            {"updated_at", ms_time(h.last_heartbeat_ms)},
            {"disabled_reason", h.disabled_reason ? Json(*h.disabled_reason) : Json()}};
  if (call.version.at_least(11)) j["forced_down"] = false;
  return j;
}

Json control_service_json(const NovaApi::Call& call, const std::string& binary, int64_t number,
                          const std::string& host, const std::string& now) {
  Json j = {{"id", call.version.at_least(53) ? Json(name_uuid("concord-service:" + binary, host))
                                             : Json(number)},
            {"binary", binary},
            {"host", host},
            {"zone", kInternalZone},
            {"status", "enabled"},
            {"state", "up"},
            {"updated_at", now},
            {"disabled_reason", nullptr}};
  if (call.version.at_least(11)) j["forced_down"] = false;
  return j;
}

Result<http::Response> list_services(NovaApi& api, NovaApi::Call& call) {
  auto host_filter = call.req.query_param("host");
  auto binary_filter = call.req.query_param("binary");
  std::vector<Host> hosts;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(hosts, load_all_hosts(tx, api.ctx(), false));
    return ok();
  }));
  std::string me = controller_host();
  std::string now = format_iso_naive(api.ctx().clock.now());
  std::vector<Json> all = {control_service_json(call, "nova-scheduler", 1, me, now),
                           control_service_json(call, "nova-conductor", 2, me, now)};
  for (const Host& h : hosts) all.push_back(compute_service_json(call, h));
  Json items = Json::array();
  for (const Json& s : all) {
    if (host_filter && s["host"] != *host_filter) continue;
    if (binary_filter && s["binary"] != *binary_filter) continue;
    items.push_back(s);
  }
  return json_response(200, {{"services", items}});
}

// Sets a host's disabled flag and reason; the scheduler sees it through the change feed.
Status set_disabled(NovaApi& api, store::Tx& tx, const std::string& host, bool disabled,
                    const std::optional<std::string>& reason) {
  std::string now = format_iso_naive(api.ctx().clock.now());
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("UPDATE compute_hosts SET disabled = ?, disabled_reason = ?, updated_at "
              "= ?, revision = revision + 1 WHERE name = ?",
              {int64_t{disabled}, reason ? store::Value(*reason) : store::null(), now, host}));
  if (n == 0) return fail(Code::kNotFound, "Compute host " + host + " could not be found.");
  CONCORD_ASSIGN_OR_RETURN(store::Rows rev,
                           tx.query("SELECT revision FROM compute_hosts WHERE name = ?", {host}));
  return tx.record_change({0, std::string(kHostKind), host, "", "update", rev[0].integer(0), ""});
}

Status check_reason(const Json& v) {
  if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 255)
    return bad("Invalid input for field/attribute disabled_reason. Value: " + dump_json(v) +
               ". It must be a string of 1 to 255 characters");
  return ok();
}

// PUT /os-services/{enable,disable,disable-log-reason} (before 2.53).
Result<http::Response> legacy_service_action(NovaApi& api, NovaApi::Call& call,
                                             std::string_view action) {
  if (call.version.at_least(53)) return fail(Code::kNotFound, "The resource could not be found.");
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  const Json host = body.value("host", Json());
  const Json binary = body.value("binary", Json());
  if (!host.is_string() || host.get<std::string>().empty() || !binary.is_string())
    return fail(bad("Invalid input for field/attribute host or binary. 'host' and 'binary' are "
                    "required properties")
                    .error());
  if (binary != "nova-compute")
    return fail(Code::kNotFound, "Service " + binary.get<std::string>() + " on host " +
                                     host.get<std::string>() + " could not be found.");
  std::optional<std::string> reason;
  if (action == "disable-log-reason") {
    CONCORD_RETURN_IF_ERROR(check_reason(body.value("disabled_reason", Json())));
    reason = body["disabled_reason"].get<std::string>();
  }
  bool disable = action != "enable";
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    return set_disabled(api, tx, host.get<std::string>(), disable, reason);
  }));
  Json s = {{"host", host}, {"binary", binary}, {"status", disable ? "disabled" : "enabled"}};
  if (reason) s["disabled_reason"] = *reason;
  return json_response(200, {{"service", s}});
}

// PUT /os-services/{service_id} (2.53+).
Result<http::Response> update_service(NovaApi& api, NovaApi::Call& call) {
  std::string id(call.param(0));
  if (!looks_like_uuid(id)) return fail(bad("Invalid uuid " + id).error());
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  if (body.empty())
    return fail(bad("No updates were requested. Fields 'status' or 'forced_down' should be "
                    "specified.")
                    .error());
  std::optional<bool> disable;
  std::optional<std::string> reason;
  for (auto& [k, v] : body.items()) {
    if (k == "status") {
      if (v != "enabled" && v != "disabled")
        return fail(bad("Invalid input for field/attribute status. Value: " + dump_json(v) +
                        ". It is not one of ['enabled', 'disabled']")
                        .error());
      disable = v == "disabled";
    } else if (k == "disabled_reason") {
      CONCORD_RETURN_IF_ERROR(check_reason(v));
      reason = v.get<std::string>();
    } else if (k == "forced_down") {
      if (!v.is_boolean())
        return fail(bad("Invalid input for field/attribute forced_down. Value: " + dump_json(v) +
                        ". is not of type 'boolean'")
                        .error());
      // Host liveness comes from agent heartbeats; forcing it is not offered.
      if (v.get<bool>())
        return fail(bad("forced_down is not supported: a host is down when its agent stops "
                        "reporting.")
                        .error());
    } else {
      return fail(
          bad("Additional properties are not allowed ('" + k + "' was unexpected)").error());
    }
  }
  if (reason && disable != true)
    return fail(bad("Specifying 'disabled_reason' with status 'enabled' is invalid.").error());
  Host found;
  bool matched = false;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    matched = false;
    CONCORD_ASSIGN_OR_RETURN(std::vector<Host> hosts, load_all_hosts(tx, api.ctx(), false));
    for (const Host& h : hosts) {
      if (name_uuid("concord-service:nova-compute", h.name) == id) {
        found = h;
        matched = true;
      }
    }
    if (!matched) {
      std::string me = controller_host();
      if (id == name_uuid("concord-service:nova-scheduler", me) ||
          id == name_uuid("concord-service:nova-conductor", me))
        return bad("Updating a non nova-compute service is not supported.");
      return fail(Code::kNotFound, "Service " + id + " could not be found.");
    }
    if (disable) {
      found.disabled = *disable;
      found.disabled_reason = *disable ? reason : std::nullopt;
      CONCORD_RETURN_IF_ERROR(
          set_disabled(api, tx, found.name, found.disabled, found.disabled_reason));
    }
    return ok();
  }));
  return json_response(200, {{"service", compute_service_json(call, found)}});
}

}  // namespace

void add_misc_routes(NovaApi& api) {
  using M = http::Method;
  NovaApi* a = &api;
  api.add(M::kGet, "/v2.1/os-availability-zone", "authenticated",
          [a](NovaApi::Call& c) { return list_zones(*a, c, false); });
  api.add(M::kGet, "/v2.1/os-availability-zone/detail", "admin",
          [a](NovaApi::Call& c) { return list_zones(*a, c, true); });

  // Every caller acts on their token's project; the frame's check is "project_reader" there.
  api.add(M::kGet, "/v2.1/os-server-groups", "project_reader",
          [a](NovaApi::Call& c) { return list_groups(*a, c); });
  api.add(M::kPost, "/v2.1/os-server-groups", "project_member",
          [a](NovaApi::Call& c) { return create_group(*a, c); });
  api.add(M::kGet, "/v2.1/os-server-groups/{group_id}", "authenticated",
          [a](NovaApi::Call& c) { return show_group(*a, c); });
  api.add(M::kDelete, "/v2.1/os-server-groups/{group_id}", "authenticated",
          [a](NovaApi::Call& c) { return delete_group(*a, c); });

  api.add(M::kGet, "/v2.1/os-hypervisors", "admin",
          [a](NovaApi::Call& c) { return list_hypervisors(*a, c, false); });
  api.add(M::kGet, "/v2.1/os-hypervisors/detail", "admin",
          [a](NovaApi::Call& c) { return list_hypervisors(*a, c, true); });
  api.add(M::kGet, "/v2.1/os-hypervisors/statistics", "admin",
          [a](NovaApi::Call& c) { return hypervisor_statistics(*a, c); });
  api.add(M::kGet, "/v2.1/os-hypervisors/{hypervisor_id}", "admin",
          [a](NovaApi::Call& c) { return show_hypervisor(*a, c); });
  api.add(M::kGet, "/v2.1/os-hypervisors/{pattern}/search", "admin",
          [a](NovaApi::Call& c) { return search_hypervisors(*a, c, false); });
  api.add(M::kGet, "/v2.1/os-hypervisors/{pattern}/servers", "admin",
          [a](NovaApi::Call& c) { return search_hypervisors(*a, c, true); });

  api.add(M::kGet, "/v2.1/os-services", "admin",
          [a](NovaApi::Call& c) { return list_services(*a, c); });
  for (const char* action : {"enable", "disable", "disable-log-reason"}) {
    std::string act = action;
    api.add(M::kPut, "/v2.1/os-services/" + act, "admin",
            [a, act](NovaApi::Call& c) { return legacy_service_action(*a, c, act); });
  }
  api.add(
      M::kPut, "/v2.1/os-services/{service_id}", "admin",
      [a](NovaApi::Call& c) { return update_service(*a, c); }, ApiVersion{2, 53});
}

}  // namespace concord::compute

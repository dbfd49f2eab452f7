// Helpers and views shared by the servers API files (see api_servers_internal.h).
#include <arpa/inet.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/random.h"
#include "base/time_format.h"
#include "compute/service/api_servers_internal.h"
#include "compute/service/metering.h"
#include "compute/service/placement.h"
#include "compute/service/quota.h"
#include "compute/service/report.h"

namespace concord::compute::servers {

int64_t now_ms(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
      .count();
}

Result<bool> delete_server_row(store::Tx& tx, ComputeContext& ctx, ServerRow& row, int64_t now) {
  bool local = !row.host;
  if (row.host) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows h,
        tx.query("SELECT state, last_heartbeat_ms FROM compute_hosts WHERE name = ?", {*row.host}));
    local = h.empty() || h[0].text(0) == "down" ||
            now - h[0].integer(1) > static_cast<int64_t>(ctx.options.down_after.count());
  }
  const std::string stamp = stored_time(now);
  if (local) {
    CONCORD_RETURN_IF_ERROR(meter_instance(tx, row, now, ctx.options.region));
    row.deleted = true;
    row.deleted_at = stamp;
    row.terminated_at = stamp;
    row.vm_state = std::string(vm::kDeleted);
    row.task_state.reset();
    row.power_state = power::kNoState;
    row.op_deadline_ms = 0;
    row.updated_at = stamp;
    row.spec_generation += 1;
    CONCORD_RETURN_IF_ERROR(update_server(tx, row));
    CONCORD_RETURN_IF_ERROR(release(tx, row.id));
    return true;
  }
  row.task_state = std::string(task::kDeleting);
  row.spec_generation += 1;
  row.op_deadline_ms = now + static_cast<int64_t>(ctx.options.action_timeout.count());
  row.updated_at = stamp;
  CONCORD_RETURN_IF_ERROR(update_server(tx, row));
  return false;
}

std::string view_time(std::string_view stored) {
  // "2026-01-01T12:00:00.123456Z" -> "2026-01-01T12:00:00Z"
  if (stored.size() < 19) return std::string(stored);
  return std::string(stored.substr(0, 19)) + "Z";
}

std::string usg_time(std::string_view stored) {
  if (stored.size() < 19) return std::string(stored);
  std::string out(stored.substr(0, 19));
  std::string_view rest = stored.substr(19);
  if (rest.starts_with(".")) {
    std::string frac(rest.substr(1));
    while (!frac.empty() && !std::isdigit(static_cast<unsigned char>(frac.back()))) frac.pop_back();
    frac.resize(6, '0');
    return out + "." + frac;
  }
  return out + ".000000";
}

bool is_uuid(std::string_view s) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  if (s.size() == 32) {
    for (char c : s)
      if (!hex(c)) return false;
    return true;
  }
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!hex(s[i])) {
      return false;
    }
  }
  return true;
}

std::string ref_id(std::string_view ref) {
  while (!ref.empty() && ref.back() == '/') ref.remove_suffix(1);
  size_t slash = ref.rfind('/');
  return std::string(slash == std::string_view::npos ? ref : ref.substr(slash + 1));
}

Status write_retrying(store::Store& store, const std::function<Status(store::Tx&)>& fn) {
  for (int attempt = 0;; ++attempt) {
    Status s = store.write(fn);
    if (s || s.error().code() != Code::kAborted || attempt >= 4) return s;
  }
}

Result<ServerRow> load_visible(store::Tx& tx, const NovaApi& api, const NovaApi::Call& call,
                               std::string_view id, std::string_view rule) {
  auto not_found = [&] {
    return fail(Code::kNotFound,
                "Instance " + sanitize_utf8(std::string(id)) + " could not be found.");
  };
  if (id.size() > 64) return not_found();
  auto row = load_server(tx, id);
  if (!row) {
    if (row.error().code() == Code::kNotFound) return not_found();
    return fail(row.error());
  }
  if (row->task_state && *row->task_state == task::kDeleting) return not_found();
  // Another project's server does not exist for the caller (404); in its own project a role
  // that is too weak gets 403.
  CONCORD_RETURN_IF_ERROR(
      api.authorize(call, rule, row->project_id, row->project_id != call.caller.project_id));
  return row;
}

Error invalid_state(std::string_view action, const ServerRow& s, bool task_attr) {
  std::string attr = task_attr ? "task_state" : "vm_state";
  std::string state = task_attr ? s.task_state.value_or("None") : s.vm_state;
  return Error(Code::kFailedPrecondition, "Cannot '" + std::string(action) + "' instance " + s.id +
                                              " while it is in " + attr + " " + state);
}

Status check_not_locked(const NovaApi::Call& call, const ServerRow& s) {
  if (s.locked && !call.caller.is_admin())
    return fail(Code::kFailedPrecondition, "Instance " + s.id + " is locked");
  return ok();
}

Status record_action(store::Tx& tx, const NovaApi::Call& call, const ServerRow& s,
                     std::string_view action, std::string_view event, int64_t now,
                     std::string_view result) {
  const bool finished = !result.empty();
  const std::string t = stored_time(now);
  CONCORD_RETURN_IF_ERROR(tx.serialize());  // MAX + 1 stays unique until the commit
  CONCORD_ASSIGN_OR_RETURN(store::Rows seq,
                           tx.query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM "
                                    "compute_instance_actions WHERE server_id = ?",
                                    {s.id}));
  const int64_t next = seq.empty() ? 1 : seq[0].integer(0) + 1;
  const store::Value finish = finished ? store::Value(t) : store::null();
  // A client may reuse a request id (Nova's are per request); the first record wins.
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("INSERT INTO compute_instance_actions (server_id, request_id, action, user_id, "
              "project_id, start_time, finish_time, message, updated_at, seq) VALUES "
              "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
              {s.id, call.req.request_id, std::string(action), call.caller.user_id,
               call.caller.project_id.empty() ? s.project_id : call.caller.project_id, t, finish,
               result == "Error" ? store::Value(std::string("Error")) : store::null(), t, next}));
  if (n == 0 || event.empty()) return ok();
  const store::Value h = s.host ? store::Value(*s.host) : store::null();
  CONCORD_ASSIGN_OR_RETURN(
      int64_t e,
      tx.exec("INSERT INTO compute_instance_action_events (server_id, request_id, event, "
              "start_time, finish_time, result, traceback, host) VALUES (?, ?, ?, ?, ?, ?, NULL, "
              "?) ON CONFLICT DO NOTHING",
              {s.id, call.req.request_id, std::string(event), t, finish,
               finished ? store::Value(std::string(result)) : store::null(), h}));
  (void)e;
  return ok();
}

namespace {

std::string host_id(const ServerRow& s) {
  if (!s.host || s.host->empty()) return "";
  std::string data = s.project_id + *s.host;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha224(), nullptr);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

Json bookmark(const NovaApi::Call& call, std::string_view kind, const std::string& id) {
  return Json::array(
      {{{"rel", "bookmark"}, {"href", call.bookmark(std::string(kind) + "/" + id)}}});
}

Json flavor_view(const NovaApi::Call& call, const ServerRow& s) {
  if (!call.version.at_least(47)) {
    return {{"id", s.flavor_id}, {"links", bookmark(call, "flavors", s.flavor_id)}};
  }
  auto f = flavor_from_json(s.flavor_json);
  if (!f) return Json::object();
  Json specs = Json::object();
  for (const auto& [k, v] : f->extra_specs) specs[k] = v;
  return {{"vcpus", f->vcpus},   {"ram", f->ram_mb},
          {"disk", f->disk_gb},  {"ephemeral", f->ephemeral_gb},
          {"swap", f->swap_mb},  {"original_name", f->name},
          {"extra_specs", specs}};
}

Json addresses_view(const ServerRow& s, bool extended) {
  auto parsed = parse_json(s.addresses_json);
  if (!parsed || !parsed->is_object()) return Json::object();
  if (extended) return std::move(*parsed);
  Json out = Json::object();
  for (auto& [net, list] : parsed->items()) {
    Json items = Json::array();
    if (list.is_array()) {
      for (const Json& a : list) {
        if (!a.is_object()) continue;
        items.push_back({{"version", a.value("version", 4)}, {"addr", a.value("addr", "")}});
      }
    }
    out[net] = std::move(items);
  }
  return out;
}

bool progress_status(std::string_view st) {
  return st == "ACTIVE" || st == "BUILD" || st == "REBUILD" || st == "RESIZE" ||
         st == "VERIFY_RESIZE" || st == "MIGRATING";
}

}  // namespace

Json server_links(const NovaApi::Call& call, const std::string& id) {
  return Json::array({{{"rel", "self"}, {"href", call.link("servers/" + id)}},
                      {{"rel", "bookmark"}, {"href", call.bookmark("servers/" + id)}}});
}

namespace {

// Writes JSON text directly: a list page renders up to 1,000 servers, and building a tree of
// nlohmann objects (one std::map per server) costs several times the query itself.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  Writer& key(std::string_view k) {
    out_ += first_ ? "" : ",";
    first_ = false;
    quoted(k);
    out_ += ':';
    return *this;
  }
  void str(std::string_view v) { quoted(v); }
  void opt(const std::optional<std::string>& v) {
    if (v)
      quoted(*v);
    else
      out_ += "null";
  }
  void num(int64_t v) { out_ += std::to_string(v); }
  void boolean(bool v) { out_ += v ? "true" : "false"; }
  void null() { out_ += "null"; }
  void raw(std::string_view json) { out_ += json; }
  void begin() {
    out_ += '{';
    first_ = true;
  }
  void end() {
    out_ += '}';
    first_ = false;
  }

 private:
  void quoted(std::string_view v) {
    out_ += '"';
    bool plain = true;
    for (unsigned char c : v) {
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) {
        plain = false;
        break;
      }
    }
    if (plain) {
      out_ += v;
    } else {
      // dump_json escapes and replaces invalid UTF-8; strip its quotes.
      std::string d = dump_json(Json(std::string(v)));
      out_.append(d, 1, d.size() - 2);
    }
    out_ += '"';
  }
  std::string& out_;
  bool first_ = true;
};

void links_text(Writer& w, std::string& out, const NovaApi::Call& call, std::string_view kind,
                const std::string& id, bool self) {
  const std::string path = std::string(kind) + "/" + id;
  out += '[';
  if (self) {
    w.begin();
    w.key("rel").str("self");
    w.key("href").str(call.link(path));
    w.end();
    out += ',';
  }
  w.begin();
  w.key("rel").str("bookmark");
  w.key("href").str(call.bookmark(path));
  w.end();
  out += ']';
}

}  // namespace

namespace {

bool full_view(const NovaApi::Call& call, ViewKind kind) {
  return kind == ViewKind::kShow || kind == ViewKind::kDetail || call.version.at_least(75);
}

}  // namespace

bool view_has_host_status(const NovaApi::Call& call, ViewKind kind) {
  return full_view(call, kind) && call.caller.is_admin() && call.version.at_least(16);
}

void close_server_view(std::string& out, const NovaApi::Call& call, ViewKind kind,
                       std::string_view host_status) {
  if (view_has_host_status(call, kind)) {
    out += R"(,"host_status":)";
    out += dump_json(Json(std::string(host_status)));
  }
  out += '}';
}

void append_server_view(std::string& out, const NovaApi::Call& call, const ServerRow& s,
                        const ServerExtras& x, ViewKind kind, ViewCache* cache) {
  append_server_view_open(out, call, s, x, kind, cache);
  close_server_view(out, call, kind, x.host_status);
}

void append_server_view_open(std::string& out, const NovaApi::Call& call, const ServerRow& s,
                             const ServerExtras& x, ViewKind kind, ViewCache* cache) {
  const ApiVersion& v = call.version;
  const bool admin = call.caller.is_admin();
  const bool full = full_view(call, kind);
  const std::string_view status = s.status();
  Writer w(out);
  w.begin();
  w.key("id").str(s.id);
  w.key("name").str(s.name);
  w.key("status").str(status);
  w.key("tenant_id").str(s.project_id);
  w.key("user_id").str(s.user_id);
  w.key("metadata");
  {
    w.begin();
    for (const auto& [k, val] : x.metadata) w.key(k).str(val);
    w.end();
  }
  w.key("hostId").str(host_id(s));
  w.key("image");
  if (s.image_id.empty()) {
    w.str("");
  } else {
    w.begin();
    w.key("id").str(s.image_id);
    w.key("links");
    links_text(w, out, call, "images", s.image_id, false);
    w.end();
  }
  w.key("flavor");
  if (!v.at_least(47)) {
    w.begin();
    w.key("id").str(s.flavor_id);
    w.key("links");
    links_text(w, out, call, "flavors", s.flavor_id, false);
    w.end();
  } else {
    // Servers of a page share few flavors: render each snapshot once.
    std::string* cached = nullptr;
    if (cache) {
      auto it = cache->flavors.find(s.flavor_json);
      if (it != cache->flavors.end()) cached = &it->second;
    }
    if (cached) {
      w.raw(*cached);
    } else {
      std::string text = dump_json(flavor_view(call, s));
      w.raw(text);
      if (cache) cache->flavors.emplace(s.flavor_json, std::move(text));
    }
  }
  w.key("created").str(view_time(s.created_at));
  w.key("updated").str(view_time(s.updated_at));
  w.key("addresses");
  if (s.addresses_json == "{}" || s.addresses_json.empty()) {
    w.raw("{}");
  } else {
    w.raw(dump_json(addresses_view(s, full)));
  }
  w.key("accessIPv4").str(s.access_ipv4);
  w.key("accessIPv6").str(s.access_ipv6);
  w.key("links");
  links_text(w, out, call, "servers", s.id, true);
  w.key("OS-DCF:diskConfig").str(s.disk_config);
  if (progress_status(status)) w.key("progress").num(status == "ACTIVE" ? 100 : 0);
  if (v.at_least(9)) w.key("locked").boolean(s.locked);
  if (v.at_least(73)) {
    w.key("locked_reason");
    if (s.locked && s.locked_reason)
      w.str(*s.locked_reason);
    else
      w.null();
  }
  if (v.at_least(19)) w.key("description").opt(s.description);
  if (v.at_least(26)) {
    w.key("tags");
    out += '[';
    for (size_t i = 0; i < x.tags.size(); ++i) {
      if (i) out += ',';
      w.str(x.tags[i]);
    }
    out += ']';
  }
  if (v.at_least(63)) w.key("trusted_image_certificates").null();
  if (full) {
    w.key("OS-EXT-AZ:availability_zone").str(s.availability_zone.value_or(""));
    w.key("config_drive").str(s.config_drive ? "True" : "");
    w.key("key_name").opt(s.key_name);
    w.key("OS-SRV-USG:launched_at");
    if (s.launched_at)
      w.str(usg_time(*s.launched_at));
    else
      w.null();
    w.key("OS-SRV-USG:terminated_at");
    if (s.terminated_at)
      w.str(usg_time(*s.terminated_at));
    else
      w.null();
    w.key("security_groups").raw(R"([{"name":"default"}])");
    w.key("OS-EXT-STS:task_state").opt(s.task_state);
    w.key("OS-EXT-STS:vm_state").str(s.vm_state);
    w.key("OS-EXT-STS:power_state").num(s.power_state);
    w.key("os-extended-volumes:volumes_attached").raw("[]");
    if (admin) {
      w.key("OS-EXT-SRV-ATTR:host").opt(s.host);
      w.key("OS-EXT-SRV-ATTR:hypervisor_hostname").opt(s.host);
      w.key("OS-EXT-SRV-ATTR:instance_name").str("instance-" + s.id.substr(0, 8));
      if (v.at_least(3)) {
        w.key("OS-EXT-SRV-ATTR:hostname").str(s.hostname);
        w.key("OS-EXT-SRV-ATTR:kernel_id").null();
        w.key("OS-EXT-SRV-ATTR:ramdisk_id").null();
        w.key("OS-EXT-SRV-ATTR:launch_index").num(s.launch_index);
        w.key("OS-EXT-SRV-ATTR:reservation_id").str(s.reservation_id);
        w.key("OS-EXT-SRV-ATTR:root_device_name");
        if (s.driver == "vm")
          w.str("/dev/vda");
        else
          w.null();
        if (kind != ViewKind::kRebuild) w.key("OS-EXT-SRV-ATTR:user_data").opt(s.user_data);
      }
      // host_status (2.16) comes last, from close_server_view(): it changes with the host's
      // heartbeats, not with the row, so cached views leave it out.
    }
  }
  if (kind != ViewKind::kDetail && v.at_least(71)) {
    w.key("server_groups");
    out += '[';
    if (s.server_group_id) w.str(*s.server_group_id);
    out += ']';
  }
  if (kind == ViewKind::kRebuild) {
    if (v.at_least(54)) w.key("key_name").opt(s.key_name);
    if (v.at_least(57)) w.key("user_data").opt(s.user_data);
  }
  if ((status == "ERROR" || status == "DELETED") && s.fault_json) {
    auto f = parse_json(*s.fault_json);
    if (f && f->is_object()) {
      Json fault = {{"code", f->value("code", 500)},
                    {"message", f->value("message", "")},
                    {"created", view_time(f->value("created", s.updated_at))}};
      if (admin && f->contains("details") && (*f)["details"].is_string())
        fault["details"] = (*f)["details"];
      w.key("fault").raw(dump_json(fault));
    }
  }
}

Json server_view(const NovaApi::Call& call, const ServerRow& s, const ServerExtras& x,
                 ViewKind kind) {
  std::string text;
  append_server_view(text, call, s, x, kind, nullptr);
  auto parsed = parse_json(text);
  return parsed ? std::move(*parsed) : Json::object();
}

namespace {

std::string host_status_of(const store::Row& r, int64_t now, int64_t down_after) {
  // name, state, disabled, last_heartbeat_ms
  if (r.text(1) == "down" || now - r.integer(3) > down_after) return "DOWN";
  if (r.integer(2) != 0) return "MAINTENANCE";
  return "UP";
}

// "?, ?, ..." for n parameters.
std::string placeholders(size_t n) {
  std::string p;
  p.reserve(n * 3);
  for (size_t i = 0; i < n; ++i) p += i ? ", ?" : "?";
  return p;
}

}  // namespace

Result<std::map<std::string, ServerExtras>> load_extras(store::Tx& tx,
                                                        std::span<const ServerRow> rows,
                                                        const ExtrasWanted& wanted, int64_t now,
                                                        int64_t down_after) {
  std::map<std::string, ServerExtras> out;
  if (rows.empty()) return out;
  std::vector<store::Value> ids;
  ids.reserve(rows.size());
  for (const ServerRow& r : rows) {
    out[r.id];
    ids.push_back(r.id);
  }
  const std::string in = placeholders(ids.size());
  if (wanted.metadata) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows md,
        tx.query("SELECT server_id, key, value FROM compute_server_metadata WHERE server_id IN (" +
                     in + ")",
                 ids));
    for (const store::Row& r : md) out[r.text(0)].metadata[r.text(1)] = r.text(2);
  }
  if (wanted.tags) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows tags,
        tx.query("SELECT server_id, tag FROM compute_server_tags WHERE server_id IN (" + in +
                     ") ORDER BY server_id, tag",
                 ids));
    for (const store::Row& r : tags) out[r.text(0)].tags.push_back(r.text(1));
  }
  if (wanted.host_status) {
    std::set<std::string> hosts;
    for (const ServerRow& r : rows) {
      if (r.host) hosts.insert(*r.host);
    }
    CONCORD_ASSIGN_OR_RETURN(auto status, host_statuses(tx, hosts, now, down_after));
    for (const ServerRow& r : rows) {
      if (r.host) out[r.id].host_status = status[*r.host];
    }
  }
  return out;
}

Result<std::map<std::string, std::string>> host_statuses(store::Tx& tx,
                                                         const std::set<std::string>& hosts,
                                                         int64_t now, int64_t down_after) {
  std::map<std::string, std::string> status;
  std::vector<store::Value> names;
  for (const std::string& h : hosts) {
    status.emplace(h, "UNKNOWN");
    names.push_back(h);
  }
  if (names.empty()) return status;
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows hr,
      tx.query(
          "SELECT name, state, disabled, last_heartbeat_ms FROM compute_hosts WHERE name IN (" +
              placeholders(names.size()) + ")",
          names));
  for (const store::Row& r : hr) status[r.text(0)] = host_status_of(r, now, down_after);
  return status;
}

Result<ServerExtras> load_one_extras(store::Tx& tx, const NovaApi::Call& call, const ServerRow& row,
                                     int64_t now, int64_t down_after) {
  ExtrasWanted w;
  w.tags = call.version.at_least(26);
  w.host_status = call.version.at_least(16) && call.caller.is_admin();
  CONCORD_ASSIGN_OR_RETURN(
      auto all, load_extras(tx, std::span<const ServerRow>(&row, 1), w, now, down_after));
  return std::move(all[row.id]);
}

std::string bad_field(std::string_view field, const Json& value, std::string_view why) {
  std::string shown = value.is_string() ? value.get<std::string>() : dump_json(value);
  if (shown.size() > 128) shown = shown.substr(0, 128) + "...";
  return "Invalid input for field/attribute " + std::string(field) + ". Value: " + shown + ". " +
         std::string(why);
}

Result<ChangesPaging> parse_changes_paging(const NovaApi::Call& call) {
  ChangesPaging p;
  auto invalid = [](std::string_view name, const std::string& value, std::string_view why) {
    const std::string shown = sanitize_utf8(value);
    return fail(Code::kInvalidArgument, "Invalid input for query parameters " + std::string(name) +
                                            ". Value: " + shown + ". '" + shown + "' " +
                                            std::string(why));
  };
  if (auto l = call.req.query_param("limit")) {
    if (l->empty() || l->size() > 9 ||
        !std::all_of(l->begin(), l->end(), [](char c) { return c >= '0' && c <= '9'; }))
      return invalid("limit", *l, "does not match '^[0-9]*$'");
    p.limit = std::stoll(*l);
  }
  p.marker = call.req.query_param("marker");
  for (auto [name, out] : {std::pair{"changes-since", &p.since}, {"changes-before", &p.before}}) {
    if (std::string_view(name) == "changes-before" && !call.version.at_least(66)) continue;
    if (auto t = call.req.query_param(name)) {
      *out = parse_iso_time(*t);
      if (!*out) return invalid(name, *t, "is not a 'date-time'");
    }
  }
  if (p.since && p.before && *p.before < *p.since)
    return fail(Code::kInvalidArgument,
                "The value of changes-since must be less than or equal to changes-before.");
  return p;
}

bool ChangesPaging::in_window(std::string_view updated_at) const {
  if (!since && !before) return true;
  auto updated = parse_iso_time(updated_at);
  if (since && (!updated || *updated < *since)) return false;
  if (before && (!updated || *updated > *before)) return false;
  return true;
}

Status check_name(const Json& v, std::string_view field) {
  if (!v.is_string()) return fail(Code::kInvalidArgument, bad_field(field, v, "not a string"));
  const std::string s = v.get<std::string>();
  if (s.empty()) return fail(Code::kInvalidArgument, bad_field(field, v, "'' is too short"));
  // Nova counts characters, not bytes.
  size_t chars = 0;
  for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
  if (chars > 255) return fail(Code::kInvalidArgument, bad_field(field, v, "is too long"));
  auto space = [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  if (space(s.front()) || space(s.back()))
    return fail(Code::kInvalidArgument,
                bad_field(field, v, "The name may not have leading or trailing whitespace"));
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f)
      return fail(Code::kInvalidArgument,
                  bad_field(field, v, "The name contains non-printable characters"));
  }
  return ok();
}

Result<std::string> canonical_ip(const Json& v, bool v6, std::string_view field) {
  if (!v.is_string()) return fail(Code::kInvalidArgument, bad_field(field, v, "not a string"));
  const std::string s = v.get<std::string>();
  if (s.empty()) return s;
  unsigned char buf[16];
  char text[INET6_ADDRSTRLEN];
  int family = v6 ? AF_INET6 : AF_INET;
  if (s.find('\0') != std::string::npos || inet_pton(family, s.c_str(), buf) != 1 ||
      inet_ntop(family, buf, text, sizeof(text)) == nullptr) {
    return fail(Code::kInvalidArgument,
                bad_field(field, v, v6 ? "is not a 'ipv6'" : "is not a 'ipv4'"));
  }
  return std::string(text);
}

Status check_metadata(const Json& v, std::string_view field) {
  if (!v.is_object()) return fail(Code::kInvalidArgument, bad_field(field, v, "is not an object"));
  for (auto& [k, val] : v.items()) {
    if (k.empty() || k.size() > 255)
      return fail(Code::kInvalidArgument,
                  bad_field(field, v, "Metadata keys must be 1 to 255 characters long"));
    if (!val.is_string())
      return fail(Code::kInvalidArgument, bad_field(field, v, "Metadata values must be strings"));
    if (val.get_ref<const std::string&>().size() > 255)
      return fail(Code::kInvalidArgument,
                  bad_field(field, v, "Metadata values must be at most 255 characters long"));
  }
  return ok();
}

Status check_metadata_quota(store::Tx& tx, std::string_view project_id, size_t items) {
  CONCORD_ASSIGN_OR_RETURN(QuotaLimits limits, project_limits(tx, project_id));
  auto it = limits.find("metadata_items");
  const int64_t allowed = it == limits.end() ? 128 : it->second;
  if (allowed >= 0 && static_cast<int64_t>(items) > allowed) {
    return fail(Code::kResourceExhausted,
                "Quota exceeded for metadata_items: Maximum number of metadata items exceeds " +
                    std::to_string(allowed));
  }
  return ok();
}

Result<std::string> check_user_data(const Json& v, size_t max_bytes) {
  if (!v.is_string())
    return fail(Code::kInvalidArgument, bad_field("user_data", v, "not a string"));
  const std::string& s = v.get_ref<const std::string&>();
  if (s.size() > max_bytes) {
    return fail(Code::kInvalidArgument,
                "Invalid input for field/attribute user_data. User data is too large: " +
                    std::to_string(s.size()) + " bytes, at most " + std::to_string(max_bytes) +
                    " allowed.");
  }
  // Standard base64 (RFC 4648 section 4) with padding; whitespace between groups is tolerated.
  std::string compact;
  compact.reserve(s.size());
  for (char c : s) {
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    compact.push_back(c);
  }
  auto bad = [&] {
    return fail(Code::kInvalidArgument,
                "Invalid input for field/attribute user_data. User data needs to be valid base "
                "64.");
  };
  if (compact.size() % 4 != 0) return bad();
  size_t pad = 0;
  for (size_t i = 0; i < compact.size(); ++i) {
    char c = compact[i];
    if (c == '=') {
      ++pad;
      if (i + 2 < compact.size()) return bad();
      continue;
    }
    if (pad > 0) return bad();
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/')) return bad();
  }
  if (pad > 2) return bad();
  return s;
}

Status check_tag(const Json& v) {
  if (!v.is_string()) return fail(Code::kInvalidArgument, bad_field("tags", v, "not a string"));
  const std::string& t = v.get_ref<const std::string&>();
  size_t chars = 0;
  for (unsigned char c : t) chars += (c & 0xC0) != 0x80;
  if (chars < 1 || chars > 60)
    return fail(Code::kInvalidArgument,
                bad_field("tags", v, "Tags must be 1 to 60 characters long"));
  if (t.find('/') != std::string::npos || t.find(',') != std::string::npos)
    return fail(Code::kInvalidArgument, bad_field("tags", v, "Tags may not contain '/' or ','"));
  return ok();
}

std::string generate_password() {
  // Nova's alphabet without look-alike characters.
  static constexpr std::string_view kChars =
      "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  std::string bytes = random_bytes(12);
  std::string out;
  for (unsigned char b : bytes) out.push_back(kChars[b % kChars.size()]);
  return out;
}

std::map<std::string, std::string> to_string_map(const Json& obj) {
  std::map<std::string, std::string> out;
  if (!obj.is_object()) return out;
  for (auto& [k, v] : obj.items())
    if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

Status replace_metadata(store::Tx& tx, const std::string& server_id,
                        const std::map<std::string, std::string>& md) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("DELETE FROM compute_server_metadata WHERE server_id = ?", {server_id}));
  (void)n;
  for (const auto& [k, v] : md) {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t m, tx.exec("INSERT INTO compute_server_metadata (server_id, key, value) VALUES "
                           "(?, ?, ?)",
                           {server_id, k, v}));
    (void)m;
  }
  return ok();
}

}  // namespace concord::compute::servers

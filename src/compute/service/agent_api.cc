// The server side of the agent protocol (docs/design/compute.md, "Agent protocol").
//
// Agents pull: the assignments long-poll returns the host's FULL desired set (level-triggered),
// so a lost answer or a restarted agent costs nothing but one more poll. The report is both the
// heartbeat and the only way observed state enters the store; it runs the pure state machine
// (report.h) per instance and commits every instance of one report in one write transaction.
#include "compute/service/agent_api.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "compute/service/compute_service.h"
#include "compute/service/model.h"
#include "compute/service/report.h"

namespace concord::compute {
namespace {

constexpr size_t kConsoleMaxBytes = 64 * 1024;
constexpr int kReportRetries = 5;
// How many irrelevant changes the long-poll skips over before answering anyway.
constexpr int kMaxChangesScanned = 5000;
// A waiting long-poll holds one HTTP I/O thread (handlers are synchronous), so only
// ComputeOptions::max_waiting_polls wait at once; the others answer at once with
// retry_after_ms and their agents poll slower.
constexpr int64_t kRetryAfterMs = 1000;

int status_for(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists:
    case Code::kAborted:
    case Code::kFailedPrecondition: return 409;
    case Code::kResourceExhausted: return 429;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

http::Response error_response(const Error& e) {
  return http::keystone_style_error(status_for(e.code()), e.message());
}

int64_t now_ms_of(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
      .count();
}

}  // namespace

Result<std::string> authenticate_agent(const ComputeContext& ctx, const http::Request& req) {
  std::string_view header = req.header("x-concord-agent");
  if (header.empty()) {
    return fail(Code::kUnauthenticated,
                "The request you have made requires authentication: "
                "missing X-Concord-Agent header.");
  }
  if (ctx.options.agent_key.empty()) {
    return fail(Code::kUnauthenticated, "Agent authentication is not configured on this server.");
  }
  size_t colon = header.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return fail(Code::kUnauthenticated,
                "Malformed X-Concord-Agent header: expected <host>:<credential>.");
  }
  std::string_view claimed = header.substr(0, colon);
  std::string_view given = header.substr(colon + 1);
  const std::string expected = agent_credential(ctx.options.agent_key, claimed);
  if (given.size() != expected.size() ||
      CRYPTO_memcmp(given.data(), expected.data(), expected.size()) != 0) {
    return fail(Code::kUnauthenticated, "Invalid agent credential.");
  }
  return std::string(claimed);
}

namespace {

class AgentApi {
 public:
  explicit AgentApi(ComputeContext& ctx) : ctx_(ctx) {}

  // ok when the X-Concord-Agent header names `host` (when non-empty) with its credential.
  Status authenticate(const http::Request& req, std::string_view host) const {
    CONCORD_ASSIGN_OR_RETURN(std::string claimed, authenticate_agent(ctx_, req));
    if (!host.empty() && claimed != host) {
      return fail(Code::kPermissionDenied, "The credential of host '" + std::string(claimed) +
                                               "' may not act as host '" + std::string(host) +
                                               "'.");
    }
    return ok();
  }

  http::Response guarded(http::Request& req, bool per_host,
                         const std::function<Result<http::Response>(http::Request&)>& fn) {
    std::string host = per_host && !req.params.empty() ? req.params[0] : std::string();
    if (auto st = authenticate(req, host); !st) return error_response(st.error());
    Result<http::Response> r = fn(req);
    if (!r) {
      if (r.error().code() == Code::kInternal) {
        logger("compute")->error("agent api {} {}: {}", http::method_name(req.method), req.path,
                                 r.error().message());
      }
      return error_response(r.error());
    }
    return std::move(*r);
  }

  Result<http::Response> register_host(http::Request& req) {
    const std::string host = req.params.at(0);
    CONCORD_ASSIGN_OR_RETURN(Json body, parse_json(req.body));
    if (!body.is_object()) return fail(Code::kInvalidArgument, "The body must be a JSON object.");
    std::string az = ctx_.options.default_availability_zone;
    int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
    std::string drivers = "[]", accel, traits = "{}", version;
    bool kvm = false;
    try {
      if (auto it = body.find("availability_zone");
          it != body.end() && it->is_string() && !it->get<std::string>().empty()) {
        az = it->get<std::string>();
      }
      const Json& cap = body.at("capacity");
      vcpus = cap.at("vcpus").get<int64_t>();
      ram_mb = cap.at("ram_mb").get<int64_t>();
      disk_gb = cap.at("disk_gb").get<int64_t>();
      Json d = body.value("drivers", Json::array());
      if (!d.is_array()) return fail(Code::kInvalidArgument, "'drivers' must be a list.");
      for (const Json& x : d) {
        if (!x.is_string()) return fail(Code::kInvalidArgument, "'drivers' must hold strings.");
      }
      drivers = dump_json(d);
      kvm = body.value("kvm", false);
      accel = body.value("accel", std::string());
      if (auto it = body.find("traits"); it != body.end() && it->is_object())
        traits = dump_json(*it);
      version = body.value("version", std::string());
    } catch (const Json::exception& e) {
      return fail(Code::kInvalidArgument, std::string("Invalid host registration: ") + e.what());
    }
    if (vcpus < 0 || ram_mb < 0 || disk_gb < 0) {
      return fail(Code::kInvalidArgument, "Capacity must not be negative.");
    }
    const int64_t now = now_ms_of(ctx_.clock);
    const std::string now_text = stored_time(now);
    CONCORD_RETURN_IF_ERROR(ctx_.store.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query(
              "INSERT INTO compute_hosts (name, availability_zone, vcpus, ram_mb, disk_gb, "
              "drivers, kvm, accel, traits_json, agent_version, state, last_heartbeat_ms, "
              "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'up', ?, ?, ?) "
              "ON CONFLICT (name) DO UPDATE SET availability_zone = excluded.availability_zone, "
              "vcpus = excluded.vcpus, ram_mb = excluded.ram_mb, disk_gb = excluded.disk_gb, "
              "drivers = excluded.drivers, kvm = excluded.kvm, accel = excluded.accel, "
              "traits_json = excluded.traits_json, agent_version = excluded.agent_version, "
              "state = 'up', last_heartbeat_ms = excluded.last_heartbeat_ms, "
              "updated_at = excluded.updated_at, "
              "revision = compute_hosts.revision + 1 RETURNING revision",
              {host, az, vcpus, ram_mb, disk_gb, drivers, int64_t{kvm}, accel, traits, version, now,
               now_text, now_text}));
      int64_t revision = rows.empty() ? 1 : rows[0].integer(0);
      return tx.record_change(
          {0, std::string(kHostKind), host, "", revision == 1 ? "create" : "update", revision, ""});
    }));
    logger("compute")->info(
        "agent registered host={} az={} vcpus={} ram_mb={} disk_gb={} drivers={}", host, az, vcpus,
        ram_mb, disk_gb, drivers);
    Json out = {{"heartbeat_interval_ms", ctx_.options.heartbeat_interval.count()},
                {"down_after_ms", ctx_.options.down_after.count()}};
    return http::Response::json(200, dump_json(out));
  }

  // What a long-poll's wait ended with.
  struct Waited {
    int64_t seq = 0;       // the seq to hand back (never past the state read afterwards)
    bool relevant = true;  // a compute.server change past `after`, or not known to be none
  };

  // Waits until a compute.server change past `after` or the wait ends.
  Result<Waited> wait_relevant(int64_t after, std::chrono::milliseconds wait) {
    CONCORD_ASSIGN_OR_RETURN(int64_t last, ctx_.store.last_change_seq());
    // A first poll, or a store that went back in time (restored): answer at once.
    if ((after <= 0 && last > 0) || after > last || wait.count() <= 0) return Waited{last, true};
    const auto deadline = std::chrono::steady_clock::now() + wait;
    int64_t cursor = after;
    int scanned = 0;
    while (true) {
      while (last > cursor) {
        CONCORD_ASSIGN_OR_RETURN(std::vector<store::Change> changes,
                                 ctx_.store.changes_since(cursor, 500));
        if (changes.empty()) {
          cursor = last;
          break;
        }
        for (const store::Change& c : changes) {
          if (c.kind == kServerKind) return Waited{last, true};
        }
        cursor = changes.back().seq;
        scanned += static_cast<int>(changes.size());
        if (scanned > kMaxChangesScanned) return Waited{last, true};
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Waited{cursor, false};
      CONCORD_ASSIGN_OR_RETURN(last, ctx_.store.wait_for_changes(cursor, left));
      if (last <= cursor) return Waited{cursor, false};
    }
  }

  Result<http::Response> assignments(http::Request& req) {
    const std::string host = req.params.at(0);
    int64_t after = 0;
    int64_t wait_ms = 0;
    try {
      if (auto a = req.query_param("after")) after = std::stoll(*a);
      if (auto w = req.query_param("wait_ms")) wait_ms = std::stoll(*w);
    } catch (const std::exception&) {
      return fail(Code::kInvalidArgument, "'after' and 'wait_ms' must be integers.");
    }
    wait_ms = std::clamp<int64_t>(wait_ms, 0, ctx_.options.assignments_wait.count());
    bool over_capacity = false;
    if (wait_ms > 0 && waiting_.fetch_add(1) >= ctx_.options.max_waiting_polls) {
      over_capacity = true;
      wait_ms = 0;
    }
    Result<Waited> waited = wait_relevant(after, std::chrono::milliseconds(wait_ms));
    if (wait_ms > 0 || over_capacity) waiting_.fetch_sub(1);
    CONCORD_ASSIGN_OR_RETURN(Waited w, std::move(waited));
    const int64_t seq = w.seq;
    auto unchanged = [&] {
      Json out = {{"seq", seq}, {"unchanged", true}};
      if (over_capacity) out["retry_after_ms"] = kRetryAfterMs;
      return http::Response::json(200, dump_json(out));
    };
    if (!w.relevant && after > 0) {
      // Nothing for any server changed since `after`: the agent keeps the set it has. Rendering
      // the whole set again for every idle poll was most of an idle server's CPU at 10,000
      // servers (bench/compute/api_scale.sh); agents still ask for the full set (after=0) now
      // and then as a safety net.
      return unchanged();
    }
    if (auto digest = req.query_param("digest")) {
      // The agent says which set it holds (docs/design/compute.md, "Agent protocol"): when it
      // is this host's current set, the answer is "unchanged" instead of the whole set. That
      // keeps the agents' periodic full polls and the polls woken by changes to servers on
      // other hosts from re-rendering 1,000 specs each (about 120 ms of CPU per host).
      std::string current;
      CONCORD_RETURN_IF_ERROR(ctx_.store.read([&](store::Tx& tx) -> Status {
        CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                                 tx.query("SELECT id, revision FROM compute_servers WHERE host = ? "
                                          "AND deleted = 0 ORDER BY id",
                                          {host}));
        RevisionSetDigest digest;
        for (const store::Row& r : rows) digest.add(r.text(0), r.integer(1));
        current = digest.hex();
        return ok();
      }));
      if (*digest == current) return unchanged();
    }

    std::vector<ServerRow> servers;
    std::map<std::string, Json> metadata;
    CONCORD_RETURN_IF_ERROR(ctx_.store.read([&](store::Tx& tx) -> Status {
      servers.clear();
      metadata.clear();
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query(std::string("SELECT ") + kServerColumns +
                       " FROM compute_servers WHERE host = ? AND deleted = 0 ORDER BY created_ms",
                   {host}));
      for (const store::Row& r : rows) servers.push_back(server_from_row(r));
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows meta,
          tx.query("SELECT m.server_id, m.key, m.value FROM compute_server_metadata m JOIN "
                   "compute_servers s ON s.id = m.server_id WHERE s.host = ? AND s.deleted = 0",
                   {host}));
      for (const store::Row& r : meta) metadata[r.text(0)][r.text(1)] = r.text(2);
      return ok();
    }));

    std::map<std::string, std::optional<ImageInfo>> images;  // per request
    auto image = [&](const std::string& id) -> const std::optional<ImageInfo>& {
      auto it = images.find(id);
      if (it != images.end()) return it->second;
      // Service servers of drivers that need no image (database) have none to look up.
      if (id.empty()) return images.emplace(id, std::nullopt).first->second;
      Result<ImageInfo> got = ctx_.images.get_any(id);
      if (!got) {
        logger("compute")->warn("assignments host={} image={} lookup failed: {}", host, id,
                                got.error().message());
      }
      return images.emplace(id, got ? std::optional<ImageInfo>(*got) : std::nullopt).first->second;
    };

    Json instances = Json::array();
    for (const ServerRow& s : servers) {
      Json meta = Json::object();
      if (auto it = metadata.find(s.id); it != metadata.end()) meta = it->second;
      instances.push_back(spec_json(s, meta, image));
    }
    Json out = {{"seq", seq}, {"instances", std::move(instances)}};
    if (over_capacity) out["retry_after_ms"] = kRetryAfterMs;
    return http::Response::json(200, dump_json(out));
  }

  template <typename ImageFn>
  Json spec_json(const ServerRow& s, const Json& meta, ImageFn& image) {
    Json img = {{"id", s.image_id}};
    if (const auto& info = image(s.image_id)) {
      img["sha256"] = info->sha256;
      img["size"] = info->size;
      img["disk_format"] = info->disk_format;
      img["container_format"] = info->container_format;
      for (const char* prop : {"kernel_id", "ramdisk_id"}) {
        auto p = info->properties.find(prop);
        if (p == info->properties.end() || p->second.empty()) continue;
        img[prop] = p->second;
        // The agent caches by sha256, so it gets the digests of the boot files too.
        const std::string digest_key =
            std::string(prop).substr(0, std::string(prop).size() - 3) + "_sha256";
        if (const auto& boot = image(p->second)) img[digest_key] = boot->sha256;
      }
    }
    Json flavor = {
        {"vcpus", s.vcpus}, {"ram_mb", s.ram_mb}, {"disk_gb", s.disk_gb}, {"id", s.flavor_id}};
    if (auto f = flavor_from_json(s.flavor_json)) flavor["name"] = f->name;

    Json keys = Json::object();
    if (s.key_name && s.key_data) keys[*s.key_name] = *s.key_data;
    const std::string az = s.availability_zone.value_or(ctx_.options.default_availability_zone);
    Json meta_data = {{"uuid", s.id},
                      {"name", s.name},
                      {"hostname", s.hostname},
                      {"launch_index", s.launch_index},
                      {"availability_zone", az},
                      {"project_id", s.project_id},
                      {"public_keys", keys},
                      {"meta", meta},
                      {"devices", Json::array()}};
    if (s.key_name)
      meta_data["keys"] = Json::array(
          {{{"name", *s.key_name}, {"type", "ssh"}, {"data", s.key_data.value_or("")}}});
    Json network_data = {
        {"links", Json::array()}, {"networks", Json::array()}, {"services", Json::array()}};
    if (s.network == "auto") {
      network_data["links"] = Json::array({{{"id", "eth0"}, {"type", "phy"}, {"mtu", 1500}}});
      network_data["networks"] = Json::array(
          {{{"id", "network0"}, {"type", "ipv4_dhcp"}, {"link", "eth0"}, {"network_id", "auto"}}});
    }
    return Json{
        {"id", s.id},
        {"revision", s.revision},
        {"generation", s.spec_generation},
        {"project_id", s.project_id},
        {"name", s.name},
        {"hostname", s.hostname},
        {"driver", s.driver},
        {"flavor", flavor},
        {"image", img},
        {"network", s.network},
        {"desired_power", s.desired_power},
        {"reboot_seq", s.reboot_seq},
        {"reboot_hard", s.reboot_hard},
        {"rebuild_seq", s.rebuild_seq},
        {"deleted", s.task_state.value_or("") == task::kDeleting},
        {"config_drive", s.config_drive},
        {"guest",
         {{"user_data", s.user_data.value_or("")},
          {"meta_data_json", dump_json(meta_data)},
          {"network_data_json", dump_json(network_data)}}},
    };
  }

  static Result<Observation> parse_observation(const Json& j) {
    if (!j.is_object()) return fail(Code::kInvalidArgument, "Each instance must be an object.");
    Observation o;
    try {
      o.id = j.at("id").get<std::string>();
      o.generation = j.value("generation", int64_t{0});
      std::string state = j.value("state", std::string("present"));
      if (state != "present" && state != "absent") {
        return fail(Code::kInvalidArgument,
                    "Instance state must be 'present' or 'absent', not '" + state + "'.");
      }
      o.present = state == "present";
      o.power_state = j.value("power_state", int64_t{0});
      o.reboot_seq = j.value("reboot_seq", int64_t{0});
      o.rebuild_seq = j.value("rebuild_seq", int64_t{0});
      if (auto it = j.find("error");
          it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
        o.error = it->get<std::string>();
      }
      if (auto it = j.find("addresses"); it != j.end() && it->is_array()) {
        o.addresses_json = dump_json(nova_addresses(*it));
      }
      if (auto it = j.find("console"); it != j.end() && it->is_string()) {
        o.console = it->get<std::string>();
      }
      if (auto it = j.find("detail"); it != j.end() && it->is_string()) {
        o.detail = sanitize_utf8(it->get<std::string>().substr(0, 4096));
      }
    } catch (const Json::exception& e) {
      return fail(Code::kInvalidArgument, std::string("Invalid instance report: ") + e.what());
    }
    if (o.id.empty()) return fail(Code::kInvalidArgument, "Instance id must not be empty.");
    return o;
  }

  // [{network, addr, version, mac, type}] -> Nova's {"<network>": [{addr, version,
  // OS-EXT-IPS:type, OS-EXT-IPS-MAC:mac_addr}]}.
  static Json nova_addresses(const Json& list) {
    Json out = Json::object();
    for (const Json& a : list) {
      if (!a.is_object()) continue;
      std::string net = a.value("network", std::string("private"));
      Json entry = {{"addr", a.value("addr", std::string())},
                    {"version", a.value("version", 4)},
                    {"OS-EXT-IPS:type", a.value("type", std::string("fixed"))}};
      // An address without a network interface of its own (a database engine's listening
      // address) has no MAC; Nova's schema allows the key to be absent but not empty.
      if (std::string mac = a.value("mac", std::string()); !mac.empty()) {
        entry["OS-EXT-IPS-MAC:mac_addr"] = std::move(mac);
      }
      out[net].push_back(std::move(entry));
    }
    return out;
  }

  static std::string console_tail(std::string_view text) {
    if (text.size() > kConsoleMaxBytes) text = text.substr(text.size() - kConsoleMaxBytes);
    std::string clean;
    clean.reserve(text.size());
    for (char c : text) {
      if (c != '\0') clean.push_back(c);
    }
    return sanitize_utf8(clean);
  }

  Result<http::Response> report(http::Request& req) {
    const std::string host = req.params.at(0);
    CONCORD_ASSIGN_OR_RETURN(Json body, parse_json(req.body));
    if (!body.is_object()) return fail(Code::kInvalidArgument, "The body must be a JSON object.");
    std::vector<Observation> observed;
    if (auto it = body.find("instances"); it != body.end()) {
      if (!it->is_array()) return fail(Code::kInvalidArgument, "'instances' must be a list.");
      for (const Json& j : *it) {
        CONCORD_ASSIGN_OR_RETURN(Observation o, parse_observation(j));
        observed.push_back(std::move(o));
      }
    }
    const int64_t now = now_ms_of(ctx_.clock);
    Status st = ok();
    bool was_down = false;
    for (int attempt = 0; attempt < kReportRetries; ++attempt) {
      st = ctx_.store.write(
          [&](store::Tx& tx) { return apply_report(tx, host, observed, now, was_down); });
      if (st || st.error().code() != Code::kAborted) break;
    }
    CONCORD_RETURN_IF_ERROR(st);
    // Agents report only what changed since their last acknowledged report; a host coming back
    // from down asks for every instance, since the controller may have moved its servers on.
    return http::Response::json(200, was_down ? R"({"full_report":true})" : "{}");
  }

  Status apply_report(store::Tx& tx, const std::string& host,
                      const std::vector<Observation>& observed, int64_t now, bool& was_down) {
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows hosts,
        tx.query("SELECT state, revision FROM compute_hosts WHERE name = ?", {host}));
    if (hosts.empty()) {
      return fail(Code::kNotFound,
                  "Host " + host + " is not registered; register it (PUT) before reporting.");
    }
    was_down = hosts[0].text(0) != "up";
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("UPDATE compute_hosts SET last_heartbeat_ms = ?, state = 'up', "
                           "revision = revision + ? WHERE name = ?",
                           {now, int64_t{was_down ? 1 : 0}, host}));
    (void)n;
    if (was_down) {
      // Only state flips go to the change feed: a heartbeat every few seconds per host would
      // otherwise flood it.
      CONCORD_RETURN_IF_ERROR(tx.record_change(
          {0, std::string(kHostKind), host, "", "update", hosts[0].integer(1) + 1, ""}));
    }
    if (observed.empty()) return ok();

    std::map<std::string, ServerRow> rows;
    CONCORD_ASSIGN_OR_RETURN(store::Rows found,
                             tx.query(std::string("SELECT ") + kServerColumns +
                                          " FROM compute_servers WHERE host = ? AND deleted = 0",
                                      {host}));
    for (const store::Row& r : found) {
      ServerRow s = server_from_row(r);
      rows.emplace(s.id, std::move(s));
    }
    const std::string now_text = stored_time(now);
    for (const Observation& o : observed) {
      auto it = rows.find(o.id);
      // Unknown, deleted or another host's: the agent's orphan rule handles what runs.
      if (it == rows.end()) continue;
      const ServerRow& before = it->second;
      Transition t = apply_observation(before, o, now);
      CONCORD_RETURN_IF_ERROR(commit_transition(tx, ctx_.options, before, t, now, host));
      if (o.console && !t.mark_deleted) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t c,
            tx.exec("INSERT INTO compute_console_logs (server_id, text, updated_at) VALUES (?, ?, "
                    "?) ON CONFLICT (server_id) DO UPDATE SET text = excluded.text, "
                    "updated_at = excluded.updated_at",
                    {o.id, console_tail(*o.console), now_text}));
        (void)c;
      }
      if (o.detail && !t.mark_deleted) {
        // Written only when the text changed (the WHERE of the upsert).
        CONCORD_ASSIGN_OR_RETURN(
            int64_t c,
            tx.exec("INSERT INTO compute_server_details (server_id, detail, updated_at) VALUES "
                    "(?, ?, ?) ON CONFLICT (server_id) DO UPDATE SET detail = excluded.detail, "
                    "updated_at = excluded.updated_at WHERE compute_server_details.detail <> "
                    "excluded.detail",
                    {o.id, *o.detail, now_text}));
        (void)c;
      }
      if (t.mark_deleted) {
        logger("compute")->info("delete finished server={} host={}", o.id, host);
        rows.erase(it);
      } else {
        it->second = std::move(t.row);  // a repeated id in one report sees the new revision
      }
    }
    return ok();
  }

  Result<http::Response> image_file(http::Request& req) {
    return ctx_.images.download(req.params.at(0));
  }

 private:
  ComputeContext& ctx_;
  std::atomic<int> waiting_{0};  // long-polls currently waiting
};

}  // namespace

std::shared_ptr<http::RouteTable> make_agent_routes(ComputeContext& ctx) {
  auto api = std::make_shared<AgentApi>(ctx);
  auto table = std::make_shared<http::RouteTable>();
  table->add(
      http::Method::kPut, "/v1/hosts/{host}",
      [api](http::Request& req) {
        return api->guarded(req, true, [&](http::Request& r) { return api->register_host(r); });
      },
      "agent:PUT /v1/hosts/{host}");
  table->add(
      http::Method::kGet, "/v1/hosts/{host}/assignments",
      [api](http::Request& req) {
        return api->guarded(req, true, [&](http::Request& r) { return api->assignments(r); });
      },
      "agent:GET /v1/hosts/{host}/assignments");
  table->add(
      http::Method::kPost, "/v1/hosts/{host}/report",
      [api](http::Request& req) {
        return api->guarded(req, true, [&](http::Request& r) { return api->report(r); });
      },
      "agent:POST /v1/hosts/{host}/report");
  table->add(
      http::Method::kGet, "/v1/images/{id}/file",
      [api](http::Request& req) {
        return api->guarded(req, false, [&](http::Request& r) { return api->image_file(r); });
      },
      "agent:GET /v1/images/{id}/file");
  return table;
}

}  // namespace concord::compute

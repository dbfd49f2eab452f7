// Helpers shared by the Trove API's handlers (api_internal.h).
#include <limits>

#include "database/service/api_internal.h"

namespace concord::database::service {

std::string_view fault_name(int status) {
  switch (status) {
    case 400: return "badRequest";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "itemNotFound";
    case 405: return "badMethod";
    case 409: return "conflictingRequest";
    case 413: return "overLimit";
    case 415: return "badMediaType";
    case 422: return "unprocessableEntity";
    case 501: return "notImplemented";
    case 503: return "serviceUnavailable";
    default: return "instanceFault";
  }
}

int status_of(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kAborted: return 409;
    // Trove's "Instance is not currently available for an action to be performed".
    case Code::kFailedPrecondition: return 422;
    case Code::kResourceExhausted: return 413;
    case Code::kUnavailable: return 503;
    default: return 500;
  }
}

int64_t to_us(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::string trove_time(SystemTime t) {
  return format_iso_naive(t).substr(0, 19);
}

std::string decimal_us(int64_t us) {
  std::string out = std::to_string(us / 1'000'000);
  int64_t frac = us % 1'000'000;
  if (frac == 0) return out;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%06lld", static_cast<long long>(frac));
  std::string f(buf);
  while (!f.empty() && f.back() == '0') f.pop_back();
  return out + "." + f;
}

std::string ip_text(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

std::map<std::string, std::string> detail_fields(std::string_view detail) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos <= detail.size()) {
    size_t end = detail.find(';', pos);
    if (end == std::string_view::npos) end = detail.size();
    std::string_view part = detail.substr(pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (part == "storage low") {
      out["storage_low"] = "1";
    } else if (size_t eq = part.find('='); eq != std::string_view::npos && eq > 0) {
      out[std::string(part.substr(0, eq))] = std::string(part.substr(eq + 1));
    }
    pos = end + 1;
  }
  return out;
}

std::optional<int64_t> integer_of(const std::map<std::string, std::string>& f,
                                  const std::string& key) {
  auto it = f.find(key);
  if (it == f.end() || it->second.empty() || it->second.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char ch : it->second) {
    if (!std::isdigit(static_cast<unsigned char>(ch))) return std::nullopt;
    v = v * 10 + (ch - '0');
  }
  return v;
}

std::optional<uint32_t> parse_ip(std::string_view s) {
  uint32_t out = 0;
  int parts = 0;
  size_t i = 0;
  while (parts < 4) {
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
    uint32_t v = 0;
    size_t digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      v = v * 10 + static_cast<uint32_t>(s[i] - '0');
      if (++digits > 3 || v > 255) return std::nullopt;
      ++i;
    }
    out = (out << 8) | v;
    ++parts;
    if (parts < 4) {
      if (i >= s.size() || s[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i != s.size()) return std::nullopt;
  return out;
}

Error bad(std::string message) {
  return Error(Code::kInvalidArgument, std::move(message));
}

VersionRow version_from(const store::Row& r) {
  return {r.text(0), r.text(1), r.text(2), r.text(3),
          r.text(4), r.text(5), r.text(6), r.integer(7) != 0};
}

InstanceRow instance_from(const store::Row& r) {
  InstanceRow i;
  i.id = r.text(0);
  i.project_id = r.text(1);
  i.name = r.text(2);
  i.version_id = r.text(3);
  i.flavor_id = r.text(4);
  i.vcpus = r.integer(5);
  i.ram_mb = r.integer(6);
  i.volume_gb = r.integer(7);
  i.address = r.text(8);
  i.port = r.integer(9);
  i.state_revision = r.integer(10);
  i.task = r.text(11);
  i.created = r.text(12);
  i.updated = r.text(13);
  i.last_metered_us = r.integer(14);
  i.deleting = r.integer(15) != 0;
  i.datastore = r.text(16);
  i.version = r.text(17);
  i.engine = r.text(18);
  i.configuration_id = r.text(19);
  i.restart_required = r.integer(20) != 0;
  i.restored_from = r.text(21);
  i.backup_running = r.integer(22) != 0;
  i.engine_address = r.text(23);
  i.endpoint_mode = r.text(24);
  i.replica_of = r.text(25);
  i.replication_secret = r.text(26);
  i.deletion_protection = r.integer(27) != 0;
  i.backup_window = r.text(28);
  i.backup_retention_days = r.integer(29);
  i.ha = r.integer(30) != 0;
  i.primary_member = r.text(31);
  i.failovers = r.integer(32);
  i.is_public = r.integer(33) != 0;
  i.allowed_cidrs = string_list(r.text(34));
  i.availability_zone = r.text(35);
  i.pool_size = r.integer(36);
  return i;
}

Result<int64_t> parse_limit(const Request& req) {
  int64_t limit = std::numeric_limits<int64_t>::max();
  if (auto l = req.query_param("limit"); l && !l->empty()) {
    limit = 0;
    for (char ch : *l) {
      if (!std::isdigit(static_cast<unsigned char>(ch)) || limit > 1'000'000) {
        return fail(bad("'limit' must be a positive integer."));
      }
      limit = limit * 10 + (ch - '0');
    }
    if (limit < 1) return fail(bad("'limit' must be a positive integer."));
  }
  return limit;
}

Status meter(store::Tx& tx, InstanceRow& inst, int64_t now_us, const std::string& region) {
  if (now_us <= inst.last_metered_us) return ok();
  const int64_t us = now_us - inst.last_metered_us;
  usage::UsageEvent e;
  e.project_id = inst.project_id;
  e.resource_id = inst.id;
  e.resource_type = std::string(kResourceType);
  e.start = SystemTime{std::chrono::microseconds(inst.last_metered_us)};
  e.end = SystemTime{std::chrono::microseconds(now_us)};
  e.region = region;
  // The event id names the interval, so metering the same interval twice records it once.
  auto add = [&](const std::string& line, const std::string& kind, int64_t quantity_us,
                 const char* unit) -> Status {
    e.event_id = inst.id + ":" + line + ":" + std::to_string(inst.last_metered_us);
    e.kind = kind;
    e.quantity = decimal_us(quantity_us);
    e.unit = unit;
    CONCORD_ASSIGN_OR_RETURN(bool fresh, usage::append(tx, e));
    (void)fresh;
    return ok();
  };
  CONCORD_RETURN_IF_ERROR(
      add("instance-seconds", "database.instance-seconds:" + inst.flavor_id, us, "s"));
  CONCORD_RETURN_IF_ERROR(
      add("storage-gb-seconds", "database.storage-gb-seconds", us * inst.volume_gb, "GB-s"));
  if (inst.ha) {
    // The synchronous standby is a second engine of the same size on another host, billed as
    // its own line so a price list can charge high availability separately.
    CONCORD_RETURN_IF_ERROR(add("standby-instance-seconds",
                                "database.standby-instance-seconds:" + inst.flavor_id, us, "s"));
    CONCORD_RETURN_IF_ERROR(add("standby-storage-gb-seconds", "database.standby-storage-gb-seconds",
                                us * inst.volume_gb, "GB-s"));
  }
  inst.last_metered_us = now_us;
  return ok();
}

Result<Json> body_object(const Request& req) {
  auto parsed = parse_json(req.body);
  if (!parsed || !parsed->is_object()) {
    return fail(Code::kInvalidArgument, "the request body must be a JSON object");
  }
  return std::move(*parsed);
}

Result<Json> body_member(const Request& req, const char* key, std::string_view shape) {
  CONCORD_ASSIGN_OR_RETURN(Json body, body_object(req));
  auto it = body.find(key);
  if (it == body.end() || !it->is_object()) return fail(bad(std::string(shape)));
  return std::move(*it);
}

Result<std::string> string_field(const Json& obj, const char* name, std::string_view where) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    return fail(Code::kInvalidArgument,
                std::string("'") + name + "' is a required string in " + std::string(where));
  }
  return it->get<std::string>();
}

std::pair<std::string, std::optional<std::string>> split_user(const std::string& segment) {
  size_t at = segment.find('@');
  if (at == std::string::npos) return {segment, std::nullopt};
  return {segment.substr(0, at), segment.substr(at + 1)};
}

std::vector<std::string> string_list(const std::string& json_text) {
  std::vector<std::string> out;
  auto j = parse_json(json_text);
  if (!j || !j->is_array()) return out;
  for (const Json& v : *j) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

Json database_refs(const std::vector<std::string>& names) {
  Json out = Json::array();
  for (const std::string& n : names) out.push_back({{"name", n}});
  return out;
}

}  // namespace concord::database::service

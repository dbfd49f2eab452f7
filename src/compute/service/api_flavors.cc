// Flavors, their extra specs and their access lists (Nova's flavors, flavor-manage,
// os-flavor-access, os-flavor-extra-specs), and the flavor lookups of flavors.h.
//
// Visibility follows Nova's database layer: an administrator sees every flavor; anyone else
// sees public flavors plus the private ones their project was given access to, and listings
// hide disabled flavors from them. A private flavor the caller may not see is "not found".
// Response shapes follow the microversion (2.55 adds description, 2.61 extra_specs).
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/encoding.h"
#include "base/random.h"
#include "base/time_format.h"
#include "compute/service/api.h"
#include "compute/service/flavors.h"

namespace concord::compute {
namespace {

constexpr int64_t kMaxInt = 2147483647;  // Nova's db.MAX_INT
constexpr int64_t kMaxLimit = 1000;      // Nova's [api] max_limit

struct FlavorRow {
  std::string id, name;
  int64_t vcpus = 0, ram_mb = 0, disk_gb = 0, ephemeral_gb = 0, swap_mb = 0;
  double rxtx_factor = 1.0;
  bool is_public = true, disabled = false;
  std::optional<std::string> description;
  std::string created_at;
  std::optional<std::string> updated_at;
};

constexpr const char* kFlavorColumns =
    "id, name, vcpus, ram_mb, disk_gb, ephemeral_gb, swap_mb, rxtx_factor, is_public, disabled, "
    "description, created_at, updated_at";

FlavorRow flavor_from_row(const store::Row& r) {
  FlavorRow f;
  f.id = r.text(0);
  f.name = r.text(1);
  f.vcpus = r.integer(2);
  f.ram_mb = r.integer(3);
  f.disk_gb = r.integer(4);
  f.ephemeral_gb = r.integer(5);
  f.swap_mb = r.integer(6);
  f.rxtx_factor = r.real(7);
  f.is_public = r.boolean(8);
  f.disabled = r.boolean(9);
  f.description = r.opt_text(10);
  f.created_at = r.text(11);
  f.updated_at = r.opt_text(12);
  return f;
}

Status flavor_not_found(std::string_view id) {
  return fail(Code::kNotFound, "Flavor " + std::string(id) + " could not be found.");
}

Result<std::optional<FlavorRow>> find_flavor(store::Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(std::string("SELECT ") + kFlavorColumns +
                                                          " FROM compute_flavors WHERE id = ?",
                                                      {std::string(id)}));
  if (rows.empty()) return std::optional<FlavorRow>();
  return std::optional<FlavorRow>(flavor_from_row(rows[0]));
}

Result<bool> has_access(store::Tx& tx, std::string_view flavor_id, std::string_view project_id) {
  if (project_id.empty()) return false;
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT 1 FROM compute_flavor_access WHERE flavor_id = ? AND "
                                    "project_id = ?",
                                    {std::string(flavor_id), std::string(project_id)}));
  return !rows.empty();
}

// The flavor if the caller may see it; kNotFound (Nova's message) otherwise.
Result<FlavorRow> visible_flavor(store::Tx& tx, std::string_view id, std::string_view project_id,
                                 bool is_admin) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<FlavorRow> f, find_flavor(tx, id));
  if (!f) return fail(flavor_not_found(id).error());
  if (!f->is_public && !is_admin) {
    CONCORD_ASSIGN_OR_RETURN(bool ok, has_access(tx, id, project_id));
    if (!ok) return fail(flavor_not_found(id).error());
  }
  return std::move(*f);
}

Result<std::vector<std::pair<std::string, std::string>>> load_specs(store::Tx& tx,
                                                                    std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT key, value FROM compute_flavor_extra_specs WHERE "
                                    "flavor_id = ? ORDER BY key",
                                    {std::string(id)}));
  std::vector<std::pair<std::string, std::string>> out;
  for (const store::Row& r : rows) out.emplace_back(r.text(0), r.text(1));
  return out;
}

Json specs_json(const std::vector<std::pair<std::string, std::string>>& specs) {
  Json j = Json::object();
  for (const auto& [k, v] : specs) j[k] = v;
  return j;
}

Json links(const NovaApi::Call& call, const std::string& path) {
  return Json::array({{{"rel", "self"}, {"href", call.link(path)}},
                      {{"rel", "bookmark"}, {"href", call.bookmark(path)}}});
}

Json brief_json(const NovaApi::Call& call, const FlavorRow& f) {
  Json j = {{"id", f.id}, {"name", f.name}, {"links", links(call, "flavors/" + f.id)}};
  if (call.version.at_least(55)) j["description"] = f.description ? Json(*f.description) : Json();
  return j;
}

Json detail_json(const NovaApi::Call& call, const FlavorRow& f,
                 const std::vector<std::pair<std::string, std::string>>* specs) {
  Json j = brief_json(call, f);
  j["ram"] = f.ram_mb;
  j["vcpus"] = f.vcpus;
  j["disk"] = f.disk_gb;
  // Nova answers "" for a flavor without swap (a quirk clients rely on).
  j["swap"] = f.swap_mb == 0 ? Json("") : Json(f.swap_mb);
  j["OS-FLV-DISABLED:disabled"] = f.disabled;
  j["OS-FLV-EXT-DATA:ephemeral"] = f.ephemeral_gb;
  j["os-flavor-access:is_public"] = f.is_public;
  j["rxtx_factor"] = f.rxtx_factor;
  if (call.version.at_least(61) && specs != nullptr) j["extra_specs"] = specs_json(*specs);
  return j;
}

std::string json_text(const Json& v) {
  return dump_json(v);
}

Status invalid_field(std::string_view field, const Json& value, std::string_view why) {
  return fail(Code::kInvalidArgument, "Invalid input for field/attribute " + std::string(field) +
                                          ". Value: " + json_text(value) + ". " + std::string(why));
}

// An integer field that Nova also accepts as a string of digits.
Result<int64_t> int_field(const Json& v, std::string_view field, int64_t min, int64_t max) {
  int64_t n = 0;
  if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > 18 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return fail(invalid_field(field, v, "'" + s + "' does not match '^[0-9]*$'").error());
    n = std::stoll(s);
  } else {
    return fail(
        invalid_field(field, v, json_text(v) + " is not of type 'integer', 'string'").error());
  }
  if (n < min)
    return fail(
        invalid_field(field, v,
                      std::to_string(n) + " is less than the minimum of " + std::to_string(min))
            .error());
  if (n > max)
    return fail(
        invalid_field(field, v,
                      std::to_string(n) + " is greater than the maximum of " + std::to_string(max))
            .error());
  return n;
}

// Nova's boolean parameter: JSON booleans and the strings oslo's bool_from_string knows.
std::optional<bool> parse_bool(const Json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (!v.is_string()) return std::nullopt;
  std::string s = v.get<std::string>();
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::set<std::string> kTrue = {"1", "t", "true", "on", "y", "yes"};
  static const std::set<std::string> kFalse = {"0", "f", "false", "off", "n", "no"};
  if (kTrue.contains(s)) return true;
  if (kFalse.contains(s)) return false;
  return std::nullopt;
}

bool printable_text(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Nova's "name" format: 1..255 printable characters, no leading or trailing whitespace.
Status check_name(const Json& v, std::string_view field) {
  if (!v.is_string()) return invalid_field(field, v, json_text(v) + " is not of type 'string'");
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty()) return invalid_field(field, v, "'' is too short");
  if (s.size() > 255) return invalid_field(field, v, "'" + s.substr(0, 32) + "...' is too long");
  if (std::isspace(static_cast<unsigned char>(s.front())) ||
      std::isspace(static_cast<unsigned char>(s.back())) || !printable_text(s))
    return invalid_field(field, v,
                         "'" + s +
                             "' is not a 'name'. An invalid 'name' value: it must not have "
                             "leading or trailing whitespace or control characters.");
  return ok();
}

// Extra spec keys and values as Nova's schema allows them.
bool valid_spec_key(std::string_view k) {
  if (k.empty() || k.size() > 255) return false;
  for (char c : k) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' ||
          c == '.' || c == ' '))
      return false;
  }
  return true;
}

Result<std::string> spec_value(std::string_view key, const Json& v) {
  std::string s;
  if (v.is_string()) {
    s = v.get<std::string>();
  } else if (v.is_boolean()) {
    s = v.get<bool>() ? "True" : "False";  // Python's str(bool), as Nova stores it
  } else if (v.is_number_integer()) {
    s = std::to_string(v.get<int64_t>());
  } else if (v.is_number()) {
    s = dump_json(v);
  } else {
    return fail(invalid_field(std::string("extra_specs.") + std::string(key), v,
                              json_text(v) + " is not of type 'string', 'number', 'boolean'")
                    .error());
  }
  if (s.size() > 255)
    return fail(
        invalid_field(std::string("extra_specs.") + std::string(key), v, "is too long").error());
  if (s.find('\0') != std::string::npos)
    return fail(
        invalid_field(std::string("extra_specs.") + std::string(key), v, "contains a NUL character")
            .error());
  return s;
}

Result<std::vector<std::pair<std::string, std::string>>> parse_specs(const Json& obj) {
  if (!obj.is_object())
    return fail(
        invalid_field("extra_specs", obj, json_text(obj) + " is not of type 'object'").error());
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [k, v] : obj.items()) {
    if (!valid_spec_key(k))
      return fail(Code::kInvalidArgument,
                  "Invalid input for field/attribute extra_specs. Value: " + json_text(obj) +
                      ". Additional properties are not allowed ('" + k + "' was unexpected)");
    CONCORD_ASSIGN_OR_RETURN(std::string value, spec_value(k, v));
    out.emplace_back(k, std::move(value));
  }
  return out;
}

Status put_specs(store::Tx& tx, std::string_view flavor_id,
                 const std::vector<std::pair<std::string, std::string>>& specs) {
  for (const auto& [k, v] : specs) {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO compute_flavor_extra_specs (flavor_id, key, value) VALUES "
                           "(?, ?, ?) ON CONFLICT (flavor_id, key) DO UPDATE SET value = "
                           "excluded.value",
                           {std::string(flavor_id), k, v}));
    (void)n;
  }
  return ok();
}

http::Response json_response(int status, const Json& body) {
  return http::Response::json(status, dump_json(body));
}

// The "next" link Nova adds when a page is full: same query, marker = last item.
Json next_link(const NovaApi::Call& call, std::string_view path, std::string_view marker) {
  std::string query;
  for (const auto& [k, v] : call.req.query_params()) {
    if (k == "marker") continue;
    query += (query.empty() ? "" : "&") + url_encode(k) + "=" + url_encode(v);
  }
  query += (query.empty() ? "" : "&") + std::string("marker=") + url_encode(marker);
  return Json::array({{{"rel", "next"}, {"href", call.link(path) + "?" + query}}});
}

Result<int64_t> parse_limit(const NovaApi::Call& call) {
  auto limit = call.req.query_param("limit");
  if (!limit) return kMaxLimit;
  const std::string& s = *limit;
  if (s.empty() || s.size() > 18 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return fail(Code::kInvalidArgument, "limit param must be an integer");
  int64_t n = std::stoll(s);
  return n == 0 ? kMaxLimit : std::min(n, kMaxLimit);
}

// Nova's sort keys and the column each sorts by.
std::optional<std::string> sort_column(std::string_view key) {
  static const std::vector<std::pair<std::string_view, std::string_view>> kKeys = {
      {"flavorid", "id"},
      {"id", "created_at"},
      {"name", "name"},
      {"memory_mb", "ram_mb"},
      {"root_gb", "disk_gb"},
      {"vcpus", "vcpus"},
      {"ephemeral_gb", "ephemeral_gb"},
      {"swap", "swap_mb"},
      {"rxtx_factor", "rxtx_factor"},
      {"is_public", "is_public"},
      {"disabled", "disabled"},
      {"created_at", "created_at"},
      {"updated_at", "updated_at"},
      {"description", "description"},
      {"vcpu_weight", "id"}};
  for (const auto& [k, col] : kKeys) {
    if (k == key) return std::string(col);
  }
  return std::nullopt;
}

Result<http::Response> list_flavors(NovaApi& api, NovaApi::Call& call, bool detail) {
  std::string where = "1 = 1";
  std::vector<store::Value> params;
  const bool admin = call.caller.is_admin();
  if (admin) {
    // Nova: absent means public (plus the caller's project's private ones); "None" means all.
    std::optional<bool> is_public = true;
    if (auto p = call.req.query_param("is_public")) {
      std::string lower = *p;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == "none") {
        is_public.reset();
      } else {
        is_public = parse_bool(Json(*p));
        if (!is_public)
          return fail(Code::kInvalidArgument, "Invalid is_public filter [" + *p + "]");
      }
    }
    if (is_public && *is_public) {
      where +=
          " AND (is_public = 1 OR id IN (SELECT flavor_id FROM compute_flavor_access WHERE "
          "project_id = ?))";
      params.emplace_back(call.caller.project_id);
    } else if (is_public) {
      where += " AND is_public = 0";
    }
  } else {
    where +=
        " AND disabled = 0 AND (is_public = 1 OR id IN (SELECT flavor_id FROM "
        "compute_flavor_access WHERE project_id = ?))";
    params.emplace_back(call.caller.project_id);
  }
  for (const auto& [name, column] : {std::pair<const char*, const char*>{"minRam", "ram_mb"},
                                     std::pair<const char*, const char*>{"minDisk", "disk_gb"}}) {
    if (auto v = call.req.query_param(name)) {
      const std::string& s = *v;
      bool digits = !s.empty() && s.size() <= 18 &&
                    std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits)
        return fail(Code::kInvalidArgument, std::string("Invalid ") + name + " filter [" + s + "]");
      where += std::string(" AND ") + column + " >= ?";
      params.emplace_back(static_cast<int64_t>(std::stoll(s)));
    }
  }
  std::string sort_key = call.req.query_param("sort_key").value_or("flavorid");
  std::string sort_dir = call.req.query_param("sort_dir").value_or("asc");
  if (sort_key.empty()) sort_key = "flavorid";
  if (sort_dir.empty()) sort_dir = "asc";
  auto column = sort_column(sort_key);
  if (!column) return fail(Code::kInvalidArgument, "Invalid sort key: " + sort_key);
  if (sort_dir != "asc" && sort_dir != "desc")
    return fail(Code::kInvalidArgument, "Invalid sort direction: " + sort_dir);
  CONCORD_ASSIGN_OR_RETURN(int64_t limit, parse_limit(call));
  std::optional<std::string> marker = call.req.query_param("marker");

  std::vector<FlavorRow> flavors;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> specs;
  Status s = api.ctx().store.read([&](store::Tx& tx) -> Status {
    flavors.clear();
    specs.clear();
    std::string sql = std::string("SELECT ") + kFlavorColumns + " FROM compute_flavors WHERE " +
                      where + " ORDER BY " + *column + " " + sort_dir + ", id " + sort_dir;
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(sql, params));
    for (const store::Row& r : rows) flavors.push_back(flavor_from_row(r));
    if (detail && call.version.at_least(61)) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows srows,
          tx.query("SELECT flavor_id, key, value FROM compute_flavor_extra_specs ORDER BY key"));
      for (const store::Row& r : srows) specs[r.text(0)].emplace_back(r.text(1), r.text(2));
    }
    return ok();
  });
  CONCORD_RETURN_IF_ERROR(s);

  size_t start = 0;
  if (marker) {
    auto it = std::find_if(flavors.begin(), flavors.end(),
                           [&](const FlavorRow& f) { return f.id == *marker; });
    if (it == flavors.end())
      return fail(Code::kInvalidArgument, "marker [" + *marker + "] not found");
    start = static_cast<size_t>(it - flavors.begin()) + 1;
  }
  Json items = Json::array();
  std::string last;
  for (size_t i = start; i < flavors.size() && static_cast<int64_t>(items.size()) < limit; ++i) {
    const FlavorRow& f = flavors[i];
    static const std::vector<std::pair<std::string, std::string>> kNone;
    auto it = specs.find(f.id);
    items.push_back(detail ? detail_json(call, f, it == specs.end() ? &kNone : &it->second)
                           : brief_json(call, f));
    last = f.id;
  }
  Json body = {{"flavors", items}};
  if (static_cast<int64_t>(items.size()) == limit && limit > 0)
    body["flavors_links"] = next_link(call, detail ? "flavors/detail" : "flavors", last);
  return json_response(200, body);
}

Result<http::Response> show_flavor(NovaApi& api, NovaApi::Call& call) {
  FlavorRow f;
  std::vector<std::pair<std::string, std::string>> specs;
  std::string id(call.param(0));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        f, visible_flavor(tx, id, call.caller.project_id, call.caller.is_admin()));
    CONCORD_ASSIGN_OR_RETURN(specs, load_specs(tx, id));
    return ok();
  }));
  return json_response(200, {{"flavor", detail_json(call, f, &specs)}});
}

// Nova's flavor id: 1..255 of [a-zA-Z0-9. _-], no leading/trailing space; numbers allowed.
Result<std::string> parse_flavor_id(const Json& v) {
  std::string id;
  if (v.is_number_integer()) {
    id = std::to_string(v.get<int64_t>());
  } else if (v.is_string()) {
    id = v.get<std::string>();
  } else {
    return fail(invalid_field("id", v, json_text(v) + " is not of type 'string', 'number', 'null'")
                    .error());
  }
  bool ok_chars = std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == ' ' || c == '_' ||
           c == '-';
  });
  if (id.empty() || id.size() > 255 || !ok_chars || id.front() == ' ' || id.back() == ' ')
    return fail(
        invalid_field("id", v, "'" + id + "' does not match '^(?! )[a-zA-Z0-9. _-]+(?<! )$'")
            .error());
  return id;
}

Status check_description(const Json& v) {
  if (v.is_null()) return ok();
  if (!v.is_string())
    return invalid_field("description", v, json_text(v) + " is not of type 'string', 'null'");
  const std::string& s = v.get_ref<const std::string&>();
  if (s.size() > 65535) return invalid_field("description", v, "is too long");
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7f)
      return invalid_field("description", v, "is not a valid description (control characters)");
  }
  return ok();
}

Result<http::Response> create_flavor(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto fit = body.find("flavor");
  if (body.size() != 1 || fit == body.end() || !fit->is_object())
    return fail(Code::kInvalidArgument, "Invalid input for field/attribute flavor. Value: " +
                                            json_text(body) + ". 'flavor' is a required property");
  const Json& in = *fit;
  static const std::set<std::string> kAllowed = {
      "name",       "id",          "ram",
      "vcpus",      "disk",        "OS-FLV-EXT-DATA:ephemeral",
      "swap",       "rxtx_factor", "os-flavor-access:is_public",
      "description"};
  for (auto& [k, v] : in.items()) {
    if (!kAllowed.contains(k) || (k == "description" && !call.version.at_least(55)))
      return fail(Code::kInvalidArgument,
                  "Additional properties are not allowed ('" + k + "' was unexpected)");
  }
  for (const char* required : {"name", "ram", "vcpus", "disk"}) {
    if (!in.contains(required))
      return fail(Code::kInvalidArgument,
                  std::string("Invalid input for field/attribute flavor. Value: ") + json_text(in) +
                      ". '" + required + "' is a required property");
  }
  FlavorRow f;
  CONCORD_RETURN_IF_ERROR(check_name(in["name"], "name"));
  f.name = in["name"].get<std::string>();
  if (auto it = in.find("id"); it != in.end() && !it->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(f.id, parse_flavor_id(*it));
  } else {
    f.id = new_uuid();
  }
  CONCORD_ASSIGN_OR_RETURN(f.ram_mb, int_field(in["ram"], "ram", 1, kMaxInt));
  CONCORD_ASSIGN_OR_RETURN(f.vcpus, int_field(in["vcpus"], "vcpus", 1, kMaxInt));
  CONCORD_ASSIGN_OR_RETURN(f.disk_gb, int_field(in["disk"], "disk", 0, kMaxInt));
  if (auto it = in.find("OS-FLV-EXT-DATA:ephemeral"); it != in.end()) {
    CONCORD_ASSIGN_OR_RETURN(f.ephemeral_gb,
                             int_field(*it, "OS-FLV-EXT-DATA:ephemeral", 0, kMaxInt));
  }
  if (auto it = in.find("swap"); it != in.end()) {
    CONCORD_ASSIGN_OR_RETURN(f.swap_mb, int_field(*it, "swap", 0, kMaxInt));
  }
  if (auto it = in.find("rxtx_factor"); it != in.end()) {
    if (!it->is_number())
      return fail(
          invalid_field("rxtx_factor", *it, json_text(*it) + " is not of type 'number'").error());
    f.rxtx_factor = it->get<double>();
    if (!(f.rxtx_factor > 0) || f.rxtx_factor > 3.40282e38 || !std::isfinite(f.rxtx_factor))
      return fail(invalid_field("rxtx_factor", *it, "must be greater than 0").error());
  }
  if (auto it = in.find("os-flavor-access:is_public"); it != in.end()) {
    auto b = parse_bool(*it);
    if (!b)
      return fail(invalid_field("os-flavor-access:is_public", *it,
                                json_text(*it) + " is not of type 'boolean'")
                      .error());
    f.is_public = *b;
  }
  if (auto it = in.find("description"); it != in.end()) {
    CONCORD_RETURN_IF_ERROR(check_description(*it));
    if (it->is_string()) f.description = it->get<std::string>();
  }
  f.created_at = format_iso_naive(api.ctx().clock.now());
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows by_name,
                             tx.query("SELECT id FROM compute_flavors WHERE name = ?", {f.name}));
    if (!by_name.empty())
      return fail(Code::kAlreadyExists, "Flavor with name " + f.name + " already exists.");
    CONCORD_ASSIGN_OR_RETURN(store::Rows by_id,
                             tx.query("SELECT id FROM compute_flavors WHERE id = ?", {f.id}));
    if (!by_id.empty())
      return fail(Code::kAlreadyExists, "Flavor with ID " + f.id + " already exists.");
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("INSERT INTO compute_flavors (id, name, vcpus, ram_mb, disk_gb, ephemeral_gb, "
                "swap_mb, rxtx_factor, is_public, disabled, description, created_at) VALUES (?, "
                "?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                {f.id, f.name, f.vcpus, f.ram_mb, f.disk_gb, f.ephemeral_gb, f.swap_mb,
                 f.rxtx_factor, int64_t{f.is_public},
                 f.description ? store::Value(*f.description) : store::null(), f.created_at}));
    (void)n;
    return ok();
  }));
  std::vector<std::pair<std::string, std::string>> none;
  return json_response(200, {{"flavor", detail_json(call, f, &none)}});
}

Result<http::Response> update_flavor(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto fit = body.find("flavor");
  if (body.size() != 1 || fit == body.end() || !fit->is_object() || fit->size() != 1 ||
      !fit->contains("description"))
    return fail(Code::kInvalidArgument,
                "Invalid input for field/attribute flavor. Value: " + json_text(body) +
                    ". Only 'description' may be updated and it is required");
  const Json& d = (*fit)["description"];
  CONCORD_RETURN_IF_ERROR(check_description(d));
  std::string id(call.param(0));
  FlavorRow f;
  std::vector<std::pair<std::string, std::string>> specs;
  std::string now = format_iso_naive(api.ctx().clock.now());
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<FlavorRow> found, find_flavor(tx, id));
    if (!found) return flavor_not_found(id);
    f = *found;
    f.description = d.is_string() ? std::optional<std::string>(d.get<std::string>()) : std::nullopt;
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE compute_flavors SET description = ?, updated_at = ?, revision = revision "
                "+ 1 WHERE id = ?",
                {f.description ? store::Value(*f.description) : store::null(), now, id}));
    (void)n;
    CONCORD_ASSIGN_OR_RETURN(specs, load_specs(tx, id));
    return ok();
  }));
  return json_response(200, {{"flavor", detail_json(call, f, &specs)}});
}

Result<http::Response> delete_flavor(NovaApi& api, NovaApi::Call& call) {
  std::string id(call.param(0));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(int64_t n, tx.exec("DELETE FROM compute_flavors WHERE id = ?", {id}));
    if (n == 0) return flavor_not_found(id);
    // Servers keep their flavor snapshot, so nothing else refers to the row.
    CONCORD_ASSIGN_OR_RETURN(
        int64_t a, tx.exec("DELETE FROM compute_flavor_extra_specs WHERE flavor_id = ?", {id}));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t b, tx.exec("DELETE FROM compute_flavor_access WHERE flavor_id = ?", {id}));
    (void)a;
    (void)b;
    return ok();
  }));
  return http::Response::empty(202);
}

// --- extra specs ---

Result<http::Response> list_specs(NovaApi& api, NovaApi::Call& call) {
  std::string id(call.param(0));
  std::vector<std::pair<std::string, std::string>> specs;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        FlavorRow f, visible_flavor(tx, id, call.caller.project_id, call.caller.is_admin()));
    (void)f;
    CONCORD_ASSIGN_OR_RETURN(specs, load_specs(tx, id));
    return ok();
  }));
  return json_response(200, {{"extra_specs", specs_json(specs)}});
}

Status spec_not_found(std::string_view id, std::string_view key) {
  return fail(Code::kNotFound, "Flavor " + std::string(id) + " has no extra specs with key " +
                                   std::string(key) + ".");
}

Result<http::Response> show_spec(NovaApi& api, NovaApi::Call& call) {
  std::string id(call.param(0));
  std::string key(call.param(1));
  std::string value;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        FlavorRow f, visible_flavor(tx, id, call.caller.project_id, call.caller.is_admin()));
    (void)f;
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT value FROM compute_flavor_extra_specs WHERE "
                                      "flavor_id = ? AND key = ?",
                                      {id, key}));
    if (rows.empty()) return spec_not_found(id, key);
    value = rows[0].text(0);
    return ok();
  }));
  return json_response(200, {{key, value}});
}

Status write_specs(NovaApi& api, std::string_view id,
                   const std::vector<std::pair<std::string, std::string>>& specs) {
  return api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<FlavorRow> f, find_flavor(tx, id));
    if (!f) return flavor_not_found(id);
    return put_specs(tx, id, specs);
  });
}

Result<http::Response> create_specs(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find("extra_specs");
  if (it == body.end() || body.size() != 1)
    return fail(Code::kInvalidArgument,
                "Invalid input for field/attribute extra_specs. Value: " + json_text(body) +
                    ". 'extra_specs' is a required property");
  CONCORD_ASSIGN_OR_RETURN(auto specs, parse_specs(*it));
  CONCORD_RETURN_IF_ERROR(write_specs(api, call.param(0), specs));
  return json_response(200, {{"extra_specs", specs_json(specs)}});
}

Result<http::Response> update_spec(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  std::string key(call.param(1));
  if (body.size() > 1) return fail(Code::kInvalidArgument, "Request body contains too many items");
  CONCORD_ASSIGN_OR_RETURN(auto specs, parse_specs(body));
  if (specs.empty() || specs[0].first != key)
    return fail(Code::kInvalidArgument, "Request body and URI mismatch");
  CONCORD_RETURN_IF_ERROR(write_specs(api, call.param(0), specs));
  return json_response(200, specs_json(specs));
}

Result<http::Response> delete_spec(NovaApi& api, NovaApi::Call& call) {
  std::string id(call.param(0));
  std::string key(call.param(1));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<FlavorRow> f, find_flavor(tx, id));
    if (!f) return flavor_not_found(id);
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("DELETE FROM compute_flavor_extra_specs WHERE flavor_id = ? AND key = ?",
                           {id, key}));
    if (n == 0) return spec_not_found(id, key);
    return ok();
  }));
  return http::Response::empty(200);
}

// --- access ---

Result<Json> access_list(store::Tx& tx, std::string_view id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT project_id FROM compute_flavor_access WHERE "
                                    "flavor_id = ? ORDER BY project_id",
                                    {std::string(id)}));
  Json list = Json::array();
  for (const store::Row& r : rows)
    list.push_back({{"flavor_id", std::string(id)}, {"tenant_id", r.text(0)}});
  return list;
}

Result<http::Response> list_access(NovaApi& api, NovaApi::Call& call) {
  std::string id(call.param(0));
  Json list;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<FlavorRow> f, find_flavor(tx, id));
    if (!f) return flavor_not_found(id);
    if (f->is_public) return fail(Code::kNotFound, "Access list not available for public flavors.");
    CONCORD_ASSIGN_OR_RETURN(list, access_list(tx, id));
    return ok();
  }));
  return json_response(200, {{"flavor_access", list}});
}

Result<http::Response> flavor_action(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  if (body.size() != 1)
    return fail(Code::kInvalidArgument,
                "Exactly one action (addTenantAccess or "
                "removeTenantAccess) must be given.");
  const std::string action = body.begin().key();
  const Json& arg = body.begin().value();
  if (action != "addTenantAccess" && action != "removeTenantAccess")
    return fail(Code::kInvalidArgument, "There is no such action: " + action);
  if (!arg.is_object() || arg.size() != 1 || !arg.contains("tenant") ||
      !arg["tenant"].is_string() || arg["tenant"].get<std::string>().empty() ||
      arg["tenant"].get<std::string>().size() > 255)
    return fail(Code::kInvalidArgument, "Invalid input for field/attribute " + action +
                                            ". Value: " + json_text(arg) +
                                            ". 'tenant' is a required property");
  std::string tenant = arg["tenant"].get<std::string>();
  std::string id(call.param(0));
  Json list;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<FlavorRow> f, find_flavor(tx, id));
    if (!f) return flavor_not_found(id);
    if (action == "addTenantAccess") {
      if (f->is_public)
        return fail(Code::kFailedPrecondition, "Can not add access to a public flavor.");
      CONCORD_ASSIGN_OR_RETURN(bool exists, has_access(tx, id, tenant));
      if (exists)
        return fail(Code::kAlreadyExists, "Flavor access already exists for flavor " + id +
                                              " and project " + tenant + " combination.");
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("INSERT INTO compute_flavor_access (flavor_id, project_id) VALUES (?, ?)",
                  {id, tenant}));
      (void)n;
    } else {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("DELETE FROM compute_flavor_access WHERE flavor_id = ? AND project_id = ?",
                  {id, tenant}));
      if (n == 0)
        return fail(Code::kNotFound,
                    "Flavor access not found for " + id + " / " + tenant + " combination.");
    }
    CONCORD_ASSIGN_OR_RETURN(list, access_list(tx, id));
    return ok();
  }));
  return json_response(200, {{"flavor_access", list}});
}

struct DefaultFlavor {
  const char* id;
  const char* name;
  int64_t vcpus, ram_mb, disk_gb;
};

}  // namespace

Result<FlavorSnapshot> load_flavor(store::Tx& tx, std::string_view id, std::string_view project_id,
                                   bool is_admin) {
  CONCORD_ASSIGN_OR_RETURN(FlavorRow f, visible_flavor(tx, id, project_id, is_admin));
  FlavorSnapshot s;
  s.id = f.id;
  s.name = f.name;
  s.vcpus = f.vcpus;
  s.ram_mb = f.ram_mb;
  s.disk_gb = f.disk_gb;
  s.ephemeral_gb = f.ephemeral_gb;
  s.swap_mb = f.swap_mb;
  CONCORD_ASSIGN_OR_RETURN(s.extra_specs, load_specs(tx, id));
  return s;
}

Status ensure_default_flavors(store::Store& store, const Clock& clock) {
  // Nova's classic m1.* set, plus two tiny ones (Tempest's and DevStack's c1.nano/micro ids)
  // that fit a busybox container or a small TCG guest on a laptop-sized host.
  static const DefaultFlavor kDefaults[] = {
      {"1", "m1.tiny", 1, 512, 1},       {"2", "m1.small", 1, 2048, 20},
      {"3", "m1.medium", 2, 4096, 40},   {"4", "m1.large", 4, 8192, 80},
      {"5", "m1.xlarge", 8, 16384, 160}, {"42", "c1.nano", 1, 64, 0},
      {"84", "c1.micro", 1, 128, 0}};
  std::string now = format_iso_naive(clock.now());
  return store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT COUNT(*) FROM compute_flavors"));
    if (!rows.empty() && rows[0].integer(0) > 0) return ok();
    for (const DefaultFlavor& d : kDefaults) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("INSERT INTO compute_flavors (id, name, vcpus, ram_mb, disk_gb, created_at) "
                  "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                  {std::string(d.id), std::string(d.name), d.vcpus, d.ram_mb, d.disk_gb, now}));
      (void)n;
    }
    return ok();
  });
}

void add_flavor_routes(NovaApi& api) {
  using M = http::Method;
  NovaApi* a = &api;
  api.add(M::kGet, "/v2.1/flavors", "authenticated",
          [a](NovaApi::Call& c) { return list_flavors(*a, c, false); });
  api.add(M::kGet, "/v2.1/flavors/detail", "authenticated",
          [a](NovaApi::Call& c) { return list_flavors(*a, c, true); });
  api.add(M::kGet, "/v2.1/flavors/{flavor_id}", "authenticated",
          [a](NovaApi::Call& c) { return show_flavor(*a, c); });
  api.add(M::kPost, "/v2.1/flavors", "admin",
          [a](NovaApi::Call& c) { return create_flavor(*a, c); });
  api.add(
      M::kPut, "/v2.1/flavors/{flavor_id}", "admin",
      [a](NovaApi::Call& c) { return update_flavor(*a, c); }, ApiVersion{2, 55});
  api.add(M::kDelete, "/v2.1/flavors/{flavor_id}", "admin",
          [a](NovaApi::Call& c) { return delete_flavor(*a, c); });
  api.add(M::kGet, "/v2.1/flavors/{flavor_id}/os-extra_specs", "authenticated",
          [a](NovaApi::Call& c) { return list_specs(*a, c); });
  api.add(M::kPost, "/v2.1/flavors/{flavor_id}/os-extra_specs", "admin",
          [a](NovaApi::Call& c) { return create_specs(*a, c); });
  api.add(M::kGet, "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", "authenticated",
          [a](NovaApi::Call& c) { return show_spec(*a, c); });
  api.add(M::kPut, "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", "admin",
          [a](NovaApi::Call& c) { return update_spec(*a, c); });
  api.add(M::kDelete, "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", "admin",
          [a](NovaApi::Call& c) { return delete_spec(*a, c); });
  api.add(M::kGet, "/v2.1/flavors/{flavor_id}/os-flavor-access", "admin",
          [a](NovaApi::Call& c) { return list_access(*a, c); });
  api.add(M::kPost, "/v2.1/flavors/{flavor_id}/action", "admin",
          [a](NovaApi::Call& c) { return flavor_action(*a, c); });
}

}  // namespace concord::compute

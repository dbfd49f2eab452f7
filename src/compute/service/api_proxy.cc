// Nova's deprecated proxies and small legacy APIs: the image proxy (/images and image
// metadata, over Glance), os-simple-tenant-usage, os-server-password and the legacy
// extensions list.
//
// The image proxy never reads image tables: it goes through ComputeContext::images (the image
// service's own API, run with the caller's token), so what a tenant sees and may change is
// exactly what Glance allows. Nova's view is a translation of Glance's record: status and
// progress are mapped, extra properties are Nova's "metadata", and the proxy disappears at the
// microversions where Nova removed it (2.36 for /images, 2.39 for image metadata), with 404.
//
// Usage reports are computed from the server rows (deleted ones included) exactly as Nova's
// simple tenant usage does: a server counts in [start, end) from launched_at to terminated_at
// (or the end of the window), weighted by its flavor's vCPUs, RAM and local disk.
#include <algorithm>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "base/time_format.h"
#include "compute/service/api.h"
#include "compute/service/api_servers_internal.h"
#include "compute/service/model.h"

namespace concord::compute {
namespace {

http::Response json_response(int status, const Json& body) {
  return http::Response::json(status, dump_json(body));
}

std::unexpected<Error> bad(std::string message) {
  return fail(Code::kInvalidArgument, std::move(message));
}

std::unexpected<Error> not_found(std::string message = "The resource could not be found.") {
  return fail(Code::kNotFound, std::move(message));
}

// The request path (before '?') ends with '/': the router ignores it, Nova does not (an empty
// id segment such as "os-simple-tenant-usage/" is an unknown resource).
bool trailing_slash(const http::Request& req) {
  const std::string_view target = req.target;
  const std::string_view path = target.substr(0, target.find('?'));
  return path.size() > 1 && path.back() == '/';
}

// Nova's get_limit_and_marker: limit is a non-negative integer, capped at max_limit (1000).
constexpr int64_t kMaxLimit = 1000;
Result<int64_t> limit_param(const std::optional<std::string>& v) {
  if (!v) return kMaxLimit;
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (v->empty() || ec != std::errc() || ptr != v->data() + v->size())
    return bad("limit param must be an integer");
  if (n < 0) return bad("limit param must be positive");
  return std::min(n, kMaxLimit);
}

ImageAccess access_of(const NovaApi::Call& call) {
  return ImageAccess{call.caller, call.req.header("x-auth-token"), call.req.request_id};
}

// ---------------- images ----------------

// Glance's core attributes: never Nova "metadata" (setting one through the proxy would change
// the image itself, not a property).
const std::set<std::string, std::less<>>& glance_core() {
  static const std::set<std::string, std::less<>> kCore = {
      "id",       "name",         "status",        "visibility", "protected",  "os_hidden",
      "checksum", "os_hash_algo", "os_hash_value", "owner",      "size",       "virtual_size",
      "min_ram",  "min_disk",     "disk_format",   "created_at", "updated_at", "tags",
      "self",     "file",         "schema",        "locations",  "direct_url", "container_format",
      "deleted",  "deleted_at",   "member_status", "members"};
  return kCore;
}

// Nova's image status vocabulary (views/images.py) and its progress per status.
std::string image_status(std::string_view glance) {
  if (glance == "active") return "ACTIVE";
  if (glance == "queued" || glance == "saving") return "SAVING";
  if (glance == "deleted" || glance == "pending_delete") return "DELETED";
  if (glance == "killed") return "ERROR";
  return "UNKNOWN";
}
int progress_of(std::string_view glance) {
  if (glance == "queued") return 25;
  if (glance == "saving") return 50;
  if (glance == "active") return 100;
  return 0;
}

// Glance's "2026-11-29T10:00:00Z" (or with a fraction) as Nova's "%Y-%m-%dT%H:%M:%SZ".
std::string nova_time(std::string_view t) {
  if (t.size() < 19) return std::string(t);
  return std::string(t.substr(0, 19)) + "Z";
}

// Glance's public URL as seen by this client: the compute mount ("/compute") replaced by the
// image mount ("/image"), both served on one port (docs/design/compute.md).
std::string glance_url(const NovaApi::Call& call) {
  std::string base = call.req.base_url;
  constexpr std::string_view kMount = "/compute";
  if (base.ends_with(kMount)) base.resize(base.size() - kMount.size());
  return base + "/image";
}

Json image_links(const NovaApi::Call& call, const std::string& id) {
  return Json::array({{{"rel", "self"}, {"href", call.link("images/" + id)}},
                      {{"rel", "bookmark"}, {"href", call.bookmark("images/" + id)}},
                      {{"rel", "alternate"},
                       {"type", "application/vnd.openstack.image"},
                       {"href", glance_url(call) + "/images/" + id}}});
}

Json image_brief(const NovaApi::Call& call, const ImageInfo& im) {
  return {{"id", im.id}, {"name", im.name}, {"links", image_links(call, im.id)}};
}

Json metadata_of(const ImageInfo& im) {
  Json m = Json::object();
  for (const auto& [k, v] : im.properties) m[k] = v;
  return m;
}

Json image_detail(const NovaApi::Call& call, const ImageInfo& im) {
  Json j = {{"id", im.id},
            {"name", im.name},
            {"minRam", im.min_ram},
            {"minDisk", im.min_disk},
            {"metadata", metadata_of(im)},
            {"created", nova_time(im.created_at)},
            {"updated", nova_time(im.updated_at)},
            {"status", image_status(im.status)},
            {"progress", progress_of(im.status)},
            {"links", image_links(call, im.id)},
            {"OS-EXT-IMG-SIZE:size", im.size}};
  // Snapshots name the server they were taken from (Glance property instance_uuid).
  if (auto it = im.properties.find("instance_uuid"); it != im.properties.end()) {
    j["server"] = {
        {"id", it->second},
        {"links",
         Json::array({{{"rel", "self"}, {"href", call.link("servers/" + it->second)}},
                      {{"rel", "bookmark"}, {"href", call.bookmark("servers/" + it->second)}}})}};
  }
  return j;
}

// Nova answers 404 for the proxy above the microversion that removed it.
Status check_proxy_version(const NovaApi::Call& call, int removed_at) {
  if (call.version.at_least(removed_at)) return not_found();
  return ok();
}

Error image_error(const Error& e) {
  if (e.code() == Code::kNotFound) return Error(Code::kNotFound, "Image not found.");
  return e;
}

Result<ImageInfo> show_or_404(NovaApi& api, const NovaApi::Call& call, std::string_view id) {
  auto im = api.ctx().images.show(id, access_of(call));
  if (!im) return fail(image_error(im.error()));
  return std::move(*im);
}

// The filters Nova's proxy passes to Glance (SUPPORTED_FILTERS plus property-*), applied here
// to the caller's visible images.
struct ImageFilters {
  std::optional<std::string> name, status;
  std::optional<SystemTime> changes_since;
  std::map<std::string, std::string> properties;
  std::optional<int64_t> min_ram, min_disk;
};

Result<int64_t> integer_filter(const std::string& name, const std::string& v) {
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || n < 0)
    return bad("Invalid " + name + " filter value '" + v + "': it must be a non-negative integer.");
  return n;
}

Result<ImageFilters> image_filters(const NovaApi::Call& call) {
  ImageFilters f;
  for (const auto& [k, v] : call.req.query_params()) {
    if (k == "name") {
      f.name = v;
    } else if (k == "status") {
      std::string lower = v;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      f.status = lower;  // Glance's statuses are lowercase
    } else if (k == "changes-since") {
      auto t = parse_iso_time(v);
      if (!t) return bad("Invalid changes-since value '" + v + "'.");
      f.changes_since = *t;
    } else if (k == "server") {
      // A server id or any link to it ("http://.../servers/<id>").
      f.properties["instance_uuid"] =
          v.substr(v.rfind('/') == std::string::npos ? 0 : v.rfind('/') + 1);
    } else if (k == "type") {
      f.properties["image_type"] = v;
    } else if (k == "minRam") {
      CONCORD_ASSIGN_OR_RETURN(f.min_ram, integer_filter(k, v));
    } else if (k == "minDisk") {
      CONCORD_ASSIGN_OR_RETURN(f.min_disk, integer_filter(k, v));
    } else if (k.starts_with("property-") && k.size() > 9) {
      f.properties[k.substr(9)] = v;
    }
    // Anything else is ignored, as Nova's proxy ignores unknown query parameters.
  }
  return f;
}

bool matches(const ImageFilters& f, const ImageInfo& im) {
  if (f.name && im.name != *f.name) return false;
  if (f.status && im.status != *f.status) return false;
  if (f.changes_since) {
    auto updated = parse_iso_time(im.updated_at);
    if (!updated || *updated < *f.changes_since) return false;
  }
  for (const auto& [k, v] : f.properties) {
    auto it = im.properties.find(k);
    if (it == im.properties.end() || it->second != v) return false;
  }
  if (f.min_ram && im.min_ram < *f.min_ram) return false;
  if (f.min_disk && im.min_disk < *f.min_disk) return false;
  return true;
}

Result<http::Response> list_images(NovaApi& api, NovaApi::Call& call, bool detail) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 36));
  CONCORD_ASSIGN_OR_RETURN(ImageFilters filters, image_filters(call));
  CONCORD_ASSIGN_OR_RETURN(int64_t limit, limit_param(call.req.query_param("limit")));
  std::optional<std::string> marker = call.req.query_param("marker");
  CONCORD_ASSIGN_OR_RETURN(std::vector<ImageInfo> all, api.ctx().images.list(access_of(call)));
  std::vector<const ImageInfo*> shown;
  for (const ImageInfo& im : all) {
    if (matches(filters, im)) shown.push_back(&im);
  }
  size_t start = 0;
  if (marker) {
    auto it = std::find_if(shown.begin(), shown.end(),
                           [&](const ImageInfo* im) { return im->id == *marker; });
    if (it == shown.end()) return bad("marker [" + *marker + "] not found");
    start = static_cast<size_t>(it - shown.begin()) + 1;
  }
  Json items = Json::array();
  for (size_t i = start; i < shown.size() && static_cast<int64_t>(items.size()) < limit; ++i)
    items.push_back(detail ? image_detail(call, *shown[i]) : image_brief(call, *shown[i]));
  Json body = {{"images", items}};
  // As Nova: a full page gets a "next" link carrying the same query with the last id as marker.
  if (limit > 0 && static_cast<int64_t>(items.size()) == limit) {
    std::string href = call.link(detail ? "images/detail" : "images") + "?";
    for (const auto& [k, v] : call.req.query_params()) {
      if (k == "marker") continue;
      href += url_encode(k) + "=" + url_encode(v) + "&";
    }
    href += "marker=" + url_encode(items.back()["id"].get<std::string>());
    body["images_links"] = Json::array({{{"rel", "next"}, {"href", href}}});
  }
  return json_response(200, body);
}

Result<http::Response> show_image(NovaApi& api, NovaApi::Call& call) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 36));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo im, show_or_404(api, call, call.param(0)));
  return json_response(200, {{"image", image_detail(call, im)}});
}

Result<http::Response> delete_image(NovaApi& api, NovaApi::Call& call) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 36));
  Status s = api.ctx().images.remove(call.param(0), access_of(call));
  if (!s) {
    if (s.error().code() == Code::kPermissionDenied)
      return fail(Code::kPermissionDenied, "You are not allowed to delete the image.");
    return fail(image_error(s.error()));
  }
  return http::Response::empty(204);
}

// ---------------- image metadata ----------------

// Nova's schema for metadata bodies plus the rule that Glance's core attributes are not
// metadata.
Status check_image_metadata(const Json& v, std::string_view field) {
  CONCORD_RETURN_IF_ERROR(servers::check_metadata(v, field));
  for (auto& [k, val] : v.items()) {
    if (glance_core().contains(k))
      return bad("Invalid input for field/attribute " + std::string(field) + ". '" + k +
                 "' is an image attribute, not image metadata.");
  }
  return ok();
}

// Nova's image metadata quota: the project's metadata_items limit (403 when exceeded).
Status check_image_quota(NovaApi& api, const NovaApi::Call& call, size_t items) {
  return api.ctx().store.read([&](store::Tx& tx) -> Status {
    Status s = servers::check_metadata_quota(tx, call.caller.project_id, items);
    if (!s && s.error().code() == Code::kResourceExhausted)
      return fail(Code::kResourceExhausted, "Image metadata limit exceeded");
    return s;
  });
}

Result<Json> metadata_body(const NovaApi::Call& call, const char* name) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find(name);
  if (it == body.end() || body.size() != 1)
    return bad(std::string("Invalid input for field/attribute ") + name + ". '" + name +
               "' is a required property and the only one allowed");
  CONCORD_RETURN_IF_ERROR(check_image_metadata(*it, name));
  return *it;
}

Result<ImageInfo> update_metadata(NovaApi& api, const NovaApi::Call& call,
                                  const std::map<std::string, std::string>& set,
                                  const std::vector<std::string>& remove) {
  auto im = api.ctx().images.update_properties(call.param(0), access_of(call), set, remove);
  if (!im) return fail(image_error(im.error()));
  return std::move(*im);
}

Result<http::Response> list_image_metadata(NovaApi& api, NovaApi::Call& call) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 39));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo im, show_or_404(api, call, call.param(0)));
  return json_response(200, {{"metadata", metadata_of(im)}});
}

// POST merges, PUT replaces everything.
Result<http::Response> set_image_metadata(NovaApi& api, NovaApi::Call& call, bool replace) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 39));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo im, show_or_404(api, call, call.param(0)));
  CONCORD_ASSIGN_OR_RETURN(Json meta, metadata_body(call, "metadata"));
  std::map<std::string, std::string> set = servers::to_string_map(meta);
  std::vector<std::string> remove;
  std::map<std::string, std::string> result = replace ? set : im.properties;
  if (replace) {
    for (const auto& [k, v] : im.properties)
      if (!set.contains(k)) remove.push_back(k);
  } else {
    for (const auto& [k, v] : set) result[k] = v;
  }
  CONCORD_RETURN_IF_ERROR(check_image_quota(api, call, result.size()));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo updated, update_metadata(api, call, set, remove));
  // PUT answers what was asked for; POST the image's whole metadata afterwards (as Nova).
  return json_response(200, {{"metadata", replace ? meta : metadata_of(updated)}});
}

Result<http::Response> show_image_metadata_item(NovaApi& api, NovaApi::Call& call) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 39));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo im, show_or_404(api, call, call.param(0)));
  std::string key(call.param(1));
  auto it = im.properties.find(key);
  if (it == im.properties.end()) return not_found("Image metadata key " + key + " not found.");
  return json_response(200, {{"meta", {{key, it->second}}}});
}

Result<http::Response> set_image_metadata_item(NovaApi& api, NovaApi::Call& call) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 39));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo im, show_or_404(api, call, call.param(0)));
  CONCORD_ASSIGN_OR_RETURN(Json meta, metadata_body(call, "meta"));
  std::string key(call.param(1));
  if (meta.size() > 1) return bad("Request body contains too many items");
  if (meta.empty() || !meta.contains(key)) return bad("Request body and URI mismatch");
  std::map<std::string, std::string> set = {{key, meta[key].get<std::string>()}};
  size_t count = im.properties.size() + (im.properties.contains(key) ? 0 : 1);
  CONCORD_RETURN_IF_ERROR(check_image_quota(api, call, count));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo updated, update_metadata(api, call, set, {}));
  (void)updated;
  return json_response(200, {{"meta", meta}});
}

Result<http::Response> delete_image_metadata_item(NovaApi& api, NovaApi::Call& call) {
  CONCORD_RETURN_IF_ERROR(check_proxy_version(call, 39));
  CONCORD_ASSIGN_OR_RETURN(ImageInfo im, show_or_404(api, call, call.param(0)));
  std::string key(call.param(1));
  if (!im.properties.contains(key)) return not_found("Image metadata key " + key + " not found.");
  CONCORD_ASSIGN_OR_RETURN(ImageInfo updated, update_metadata(api, call, {}, {key}));
  (void)updated;
  return http::Response::empty(204);
}

// ---------------- os-simple-tenant-usage ----------------

struct UsageWindow {
  SystemTime start, stop;
  bool detailed = false;
};

// Nova's _parse_datetime: the formats its clients send, or now when absent.
Result<SystemTime> usage_time(NovaApi& api, const std::optional<std::string>& v) {
  if (!v) return api.ctx().clock.now();
  // Also Nova's "%Y-%m-%d %H:%M:%S.%f" (a space for the 'T'), which parse_iso_time accepts.
  auto t = parse_iso_time(*v);
  if (!t) return bad("Invalid input for start/end: '" + *v + "'. Datetime is in invalid format");
  return *t;
}

Result<UsageWindow> usage_window(NovaApi& api, const NovaApi::Call& call) {
  UsageWindow w;
  CONCORD_ASSIGN_OR_RETURN(w.start, usage_time(api, call.req.query_param("start")));
  CONCORD_ASSIGN_OR_RETURN(w.stop, usage_time(api, call.req.query_param("end")));
  if (!(w.start < w.stop))
    return bad("Invalid start time. The start time cannot occur after the end time.");
  // As Nova: usage is never projected into the future; the window ends now at the latest.
  w.stop = std::min(w.stop, api.ctx().clock.now());
  w.detailed = call.req.query_param("detailed").value_or("0") == "1";
  if (call.version.at_least(75)) {
    // From 2.75 Nova's query schema rejects unknown parameters.
    static const std::set<std::string, std::less<>> kKnown = {"start", "end", "detailed", "limit",
                                                              "marker"};
    for (const auto& [k, v] : call.req.query_params()) {
      if (!kKnown.contains(k))
        return bad("Invalid input for query parameters " + k +
                   ". Additional properties are not allowed ('" + k + "' was unexpected)");
    }
  }
  return w;
}

struct ServerUsage {
  std::string project_id;
  Json info;
  double hours = 0;
  int64_t local_gb = 0, memory_mb = 0, vcpus = 0;
};

double hours_between(SystemTime a, SystemTime b) {
  return std::chrono::duration<double>(b - a).count() / 3600.0;
}

// Nova's _hours_for: the part of [launched_at, terminated_at or stop] inside [start, stop].
double usage_hours(const UsageWindow& w, std::optional<SystemTime> launched,
                   std::optional<SystemTime> terminated) {
  if (!launched) return 0;
  if (terminated && *terminated < w.start) return 0;
  if (*launched > w.stop) return 0;
  SystemTime from = std::max(*launched, w.start);
  SystemTime to = terminated ? std::min(*terminated, w.stop) : w.stop;
  return to > from ? hours_between(from, to) : 0;
}

// The servers active in the window (Nova's get_active_by_window_joined: launched before the end,
// not terminated before the start), deleted ones included, oldest first; `project` "" for all.
// With a limit (2.40), a page after `marker` (a server id; 400 when unknown).
Result<std::vector<ServerUsage>> window_servers(NovaApi& api, const UsageWindow& w,
                                                const std::string& project, int64_t limit,
                                                const std::optional<std::string>& marker,
                                                bool* full_page) {
  store::Rows rows;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    std::string sql = std::string("SELECT ") + kServerColumns +
                      " FROM compute_servers WHERE launched_at IS NOT NULL";
    std::vector<store::Value> params;
    if (!project.empty()) {
      sql += " AND project_id = ?";
      params.push_back(project);
    }
    sql += " ORDER BY created_ms, id";
    CONCORD_ASSIGN_OR_RETURN(rows, tx.query(sql, params));
    return ok();
  }));
  SystemTime now = api.ctx().clock.now();
  std::vector<ServerUsage> out;
  bool after_marker = !marker.has_value();
  *full_page = false;
  for (const store::Row& r : rows) {
    ServerRow s = server_from_row(r);
    auto launched = parse_iso_time(s.launched_at.value_or(""));
    std::optional<SystemTime> terminated;
    if (s.terminated_at) terminated = parse_iso_time(*s.terminated_at);
    if (!launched || !(*launched < w.stop)) continue;
    if (terminated && !(*terminated > w.start)) continue;
    if (!after_marker) {
      if (s.id == *marker) after_marker = true;
      continue;
    }
    if (static_cast<int64_t>(out.size()) == limit) {
      *full_page = true;
      break;
    }
    ServerUsage u;
    u.project_id = s.project_id;
    u.hours = usage_hours(w, launched, terminated);
    std::string flavor_name = s.flavor_id;
    int64_t ephemeral = 0;
    if (auto f = flavor_from_json(s.flavor_json); f) {
      if (!f->name.empty()) flavor_name = f->name;
      ephemeral = f->ephemeral_gb;
    }
    u.local_gb = s.disk_gb + ephemeral;
    u.memory_mb = s.ram_mb;
    u.vcpus = s.vcpus;
    bool ended = terminated.has_value();
    SystemTime until = ended ? *terminated : now;
    int64_t uptime = std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::seconds>(until - *launched).count());
    u.info = {{"instance_id", s.id},
              {"name", s.name},
              {"tenant_id", s.project_id},
              {"flavor", flavor_name},
              {"hours", u.hours},
              {"local_gb", u.local_gb},
              {"memory_mb", u.memory_mb},
              {"vcpus", u.vcpus},
              {"started_at", format_iso_naive(*launched)},
              {"ended_at", ended ? Json(format_iso_naive(*terminated)) : Json()},
              {"state", ended ? std::string("terminated") : s.vm_state},
              {"uptime", uptime}};
    out.push_back(std::move(u));
  }
  if (marker && !after_marker) return bad("Marker " + *marker + " could not be found.");
  return out;
}

// Per-tenant sums in first-seen order.
std::vector<Json> summarize(const UsageWindow& w, const std::vector<ServerUsage>& servers,
                            bool with_servers) {
  std::vector<Json> out;
  std::map<std::string, size_t> index;
  for (const ServerUsage& u : servers) {
    auto [it, added] = index.emplace(u.project_id, out.size());
    if (added) {
      Json t = {{"tenant_id", u.project_id},        {"start", format_iso_naive(w.start)},
                {"stop", format_iso_naive(w.stop)}, {"total_hours", 0.0},
                {"total_local_gb_usage", 0.0},      {"total_memory_mb_usage", 0.0},
                {"total_vcpus_usage", 0.0}};
      if (with_servers) t["server_usages"] = Json::array();
      out.push_back(std::move(t));
    }
    Json& t = out[it->second];
    t["total_hours"] = t["total_hours"].get<double>() + u.hours;
    t["total_local_gb_usage"] = t["total_local_gb_usage"].get<double>() + u.local_gb * u.hours;
    t["total_memory_mb_usage"] = t["total_memory_mb_usage"].get<double>() + u.memory_mb * u.hours;
    t["total_vcpus_usage"] = t["total_vcpus_usage"].get<double>() + u.vcpus * u.hours;
    if (with_servers) t["server_usages"].push_back(u.info);
  }
  return out;
}

Json usage_links(const NovaApi::Call& call, const std::string& path,
                 const std::vector<ServerUsage>& servers) {
  std::string href = call.link(path) + "?";
  for (const auto& [k, v] : call.req.query_params()) {
    if (k == "marker") continue;
    href += url_encode(k) + "=" + url_encode(v) + "&";
  }
  href += "marker=" + url_encode(servers.back().info["instance_id"].get<std::string>());
  return Json::array({{{"rel", "next"}, {"href", href}}});
}

Result<std::pair<int64_t, std::optional<std::string>>> usage_paging(const NovaApi::Call& call) {
  // Paging exists from 2.40; before it every server in the window counts.
  if (!call.version.at_least(40)) return std::make_pair(int64_t{-1}, std::optional<std::string>());
  CONCORD_ASSIGN_OR_RETURN(int64_t limit, limit_param(call.req.query_param("limit")));
  return std::make_pair(limit, call.req.query_param("marker"));
}

Result<http::Response> list_usage(NovaApi& api, NovaApi::Call& call) {
  if (trailing_slash(call.req)) return not_found();
  CONCORD_ASSIGN_OR_RETURN(UsageWindow w, usage_window(api, call));
  CONCORD_ASSIGN_OR_RETURN(auto paging, usage_paging(call));
  bool full = false;
  CONCORD_ASSIGN_OR_RETURN(std::vector<ServerUsage> servers,
                           window_servers(api, w, "", paging.first, paging.second, &full));
  Json body = {{"tenant_usages", summarize(w, servers, w.detailed)}};
  if (full && !servers.empty())
    body["tenant_usages_links"] = usage_links(call, "os-simple-tenant-usage", servers);
  return json_response(200, body);
}

Result<http::Response> show_usage(NovaApi& api, NovaApi::Call& call) {
  std::string tenant(call.param(0));
  // Nova's policy: a project reader of that project, or an admin (403 otherwise).
  CONCORD_RETURN_IF_ERROR(api.authorize(call, "project_reader", tenant));
  CONCORD_ASSIGN_OR_RETURN(UsageWindow w, usage_window(api, call));
  CONCORD_ASSIGN_OR_RETURN(auto paging, usage_paging(call));
  bool full = false;
  CONCORD_ASSIGN_OR_RETURN(std::vector<ServerUsage> servers,
                           window_servers(api, w, tenant, paging.first, paging.second, &full));
  std::vector<Json> tenants = summarize(w, servers, true);
  // Nova answers an empty object for a tenant without usage in the window.
  Json body = {{"tenant_usage", tenants.empty() ? Json::object() : tenants.front()}};
  if (full && !servers.empty())
    body["tenant_usage_links"] = usage_links(call, "os-simple-tenant-usage/" + tenant, servers);
  return json_response(200, body);
}

// ---------------- os-server-password ----------------

// The password a guest posts to the metadata service (encrypted with the server's key pair).
// Concord has no metadata service yet, so nothing sets it: GET answers "" until one exists,
// and DELETE clears whatever is stored, as Nova's does.
Result<http::Response> show_password(NovaApi& api, NovaApi::Call& call) {
  std::string password;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             servers::load_visible(tx, api, call, call.param(0), "project_reader"));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT password FROM compute_server_passwords WHERE server_id = ?", {s.id}));
    password = rows.empty() ? "" : rows[0].text(0);
    return ok();
  }));
  return json_response(200, {{"password", password}});
}

Result<http::Response> clear_password(NovaApi& api, NovaApi::Call& call) {
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             servers::load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("DELETE FROM compute_server_passwords WHERE server_id = ?", {s.id}));
    (void)n;
    return ok();
  }));
  return http::Response::empty(204);
}

// ---------------- extensions ----------------

struct Extension {
  const char* alias;
  const char* name;
  const char* description;
};

// Nova's legacy (v2.1) extension list, kept for clients that still read it: every API that
// used to be an extension is part of v2.1, so the list is fixed.
constexpr Extension kExtensions[] = {
    {"NMN", "Multinic", "Multiple network support."},
    {"OS-DCF", "DiskConfig", "Disk Management Extension."},
    {"OS-EXT-AZ", "ExtendedAvailabilityZone", "Extended Availability Zone support."},
    {"OS-EXT-IMG-SIZE", "ImageSize", "Adds image size to image listings."},
    {"OS-EXT-IPS", "ExtendedIps", "Adds type parameter to the ip list."},
    {"OS-EXT-IPS-MAC", "ExtendedIpsMac", "Adds mac address parameter to the ip list."},
    {"OS-EXT-SRV-ATTR", "ExtendedServerAttributes", "Extended Server Attributes support."},
    {"OS-EXT-STS", "ExtendedStatus", "Extended Status support."},
    {"OS-FLV-DISABLED", "FlavorDisabled", "Support to show the disabled status of a flavor."},
    {"OS-FLV-EXT-DATA", "FlavorExtraData", "Provide additional data for flavors."},
    {"OS-SCH-HNT", "SchedulerHints", "Pass arbitrary key/value pairs to the scheduler."},
    {"OS-SRV-USG", "ServerUsage", "Adds launched_at and terminated_at on Servers."},
    {"os-access-ips", "AccessIPs", "Access IPs support."},
    {"os-admin-actions", "AdminActions", "Enable admin-only server actions."},
    {"os-admin-password", "AdminPassword", "Admin password management support."},
    {"os-agents", "Agents", "Agents support."},
    {"os-aggregates", "Aggregates", "Admin-only aggregate administration."},
    {"os-assisted-volume-snapshots", "AssistedVolumeSnapshots", "Assisted volume snapshots."},
    {"os-attach-interfaces", "AttachInterfaces", "Attach interface support."},
    {"os-availability-zone", "AvailabilityZone",
     "1. Add availability_zone to the Create Server "
     "API. 2. Add availability zones describing."},
    {"os-baremetal-ext-status", "BareMetalExtStatus", "Add extended status in Baremetal Nodes."},
    {"os-baremetal-nodes", "BareMetalNodes", "Admin-only bare-metal node administration."},
    {"os-block-device-mapping", "BlockDeviceMapping", "Block device mapping boot support."},
    {"os-block-device-mapping-v2-boot", "BlockDeviceMappingV2Boot",
     "Allow boot with the new BDM data format."},
    {"os-cell-capacities", "CellCapacities", "Adding functionality to get cell capacities."},
    {"os-cells", "Cells", "Enables cells-related functionality."},
    {"os-certificates", "Certificates", "Certificates support."},
    {"os-cloudpipe", "Cloudpipe", "Adds actions to create cloudpipe instances."},
    {"os-cloudpipe-update", "CloudpipeUpdate", "Adds the ability to set the vpn ip/port."},
    {"os-config-drive", "ConfigDrive", "Config Drive Extension."},
    {"os-console-auth-tokens", "ConsoleAuthTokens", "Console token authentication support."},
    {"os-console-output", "ConsoleOutput", "Console log output support."},
    {"os-consoles", "Consoles", "Interactive Console support."},
    {"os-create-backup", "CreateBackup", "Create a backup of a server."},
    {"os-create-server-ext", "Createserverext", "Extended support to the Create Server API."},
    {"os-deferred-delete", "DeferredDelete", "Instance deferred delete."},
    {"os-evacuate", "Evacuate", "Enables server evacuation."},
    {"os-extended-evacuate-find-host", "ExtendedEvacuateFindHost",
     "Enables server evacuation without target host."},
    {"os-extended-floating-ips", "ExtendedFloatingIps",
     "Adds optional fixed_address to "
     "the add floating IP command."},
    {"os-extended-hypervisors", "ExtendedHypervisors", "Extended hypervisors support."},
    {"os-extended-networks", "ExtendedNetworks", "Adds additional fields to networks."},
    {"os-extended-quotas", "ExtendedQuotas",
     "Adds ability for admins to delete quota and "
     "optionally force the update Quota command."},
    {"os-extended-rescue-with-image", "ExtendedRescueWithImage",
     "Allow the user to specify the image to use for rescue."},
    {"os-extended-services", "ExtendedServices", "Extended services support."},
    {"os-extended-services-delete", "ExtendedServicesDelete", "Extended services deletion."},
    {"os-extended-status", "ExtendedStatus", "Extended Status support."},
    {"os-extended-volumes", "ExtendedVolumes", "Extended Volumes support."},
    {"os-fixed-ips", "FixedIPs", "Fixed IPs support."},
    {"os-flavor-access", "FlavorAccess", "Flavor access support."},
    {"os-flavor-extra-specs", "FlavorExtraSpecs", "Flavors extra specs support."},
    {"os-flavor-manage", "FlavorManage", "Flavor create/delete API support."},
    {"os-flavor-rxtx", "FlavorRxtx", "Support to show the rxtx status of a flavor."},
    {"os-flavor-swap", "FlavorSwap", "Support to show the swap status of a flavor."},
    {"os-floating-ip-dns", "FloatingIpDns", "Floating IP DNS support."},
    {"os-floating-ip-pools", "FloatingIpPools", "Floating IPs support."},
    {"os-floating-ips", "FloatingIps", "Floating IPs support."},
    {"os-floating-ips-bulk", "FloatingIpsBulk", "Bulk handling of Floating IPs."},
    {"os-fping", "Fping", "Fping Management Extension."},
    {"os-hide-server-addresses", "HideServerAddresses",
     "Support hiding server addresses in certain states."},
    {"os-hosts", "Hosts", "Admin-only host administration."},
    {"os-hypervisor-status", "HypervisorStatus", "Show hypervisor status."},
    {"os-hypervisors", "Hypervisors", "Admin-only hypervisor administration."},
    {"os-instance-actions", "InstanceActions",
     "View a log of actions and events taken on an "
     "instance."},
    {"os-instance_usage_audit_log", "OSInstanceUsageAuditLog", "Admin-only Task Log Monitoring."},
    {"os-keypairs", "Keypairs", "Keypair Support."},
    {"os-lock-server", "LockServer", "Enable lock/unlock server actions."},
    {"os-migrate-server", "MigrateServer", "Enable migrate and live-migrate server actions."},
    {"os-migrations", "Migrations", "Provide data on migrations."},
    {"os-multiple-create", "MultipleCreate",
     "Allow multiple create in the Create Server v2.1 "
     "API."},
    {"os-networks", "Networks", "Admin-only Network Management Extension."},
    {"os-networks-associate", "NetworkAssociationSupport", "Network association support."},
    {"os-pause-server", "PauseServer", "Enable pause/unpause server actions."},
    {"os-personality", "Personality", "Personality support."},
    {"os-preserve-ephemeral-rebuild", "PreserveEphemeralOnRebuild",
     "Allow preservation of the ephemeral partition on rebuild."},
    {"os-quota-class-sets", "QuotaClasses", "Quota classes management support."},
    {"os-quota-sets", "Quotas", "Quotas management support."},
    {"os-rescue", "Rescue", "Instance rescue mode."},
    {"os-security-group-default-rules", "SecurityGroupDefaultRules",
     "Default rules for security group support."},
    {"os-security-groups", "SecurityGroups", "Security group support."},
    {"os-server-diagnostics", "ServerDiagnostics",
     "Allow Admins to view server diagnostics "
     "through server action."},
    {"os-server-external-events", "ServerExternalEvents", "Server External Event Triggers."},
    {"os-server-group-quotas", "ServerGroupQuotas", "Adds quota support to server groups."},
    {"os-server-groups", "ServerGroups", "Server group support."},
    {"os-server-list-multi-status", "ServerListMultiStatus",
     "Allow to filter the servers by a set of status values."},
    {"os-server-password", "ServerPassword", "Server password support."},
    {"os-server-sort-keys", "ServerSortKeys", "Add sorting support in get Server v2 API."},
    {"os-server-start-stop", "ServerStartStop", "Start/Stop instance compute API support."},
    {"os-services", "Services", "Services support."},
    {"os-shelve", "Shelve", "Instance shelve mode."},
    {"os-simple-tenant-usage", "SimpleTenantUsage", "Simple tenant usage extension."},
    {"os-suspend-server", "SuspendServer", "Enable suspend/resume server actions."},
    {"os-tenant-networks", "OSTenantNetworks", "Tenant-based Network Management Extension."},
    {"os-used-limits", "UsedLimits", "Provide data on limited resources that are being used."},
    {"os-used-limits-for-admin", "UsedLimitsForAdmin",
     "Provide data to admin on limited resources used by other tenants."},
    {"os-user-data", "UserData", "Add user_data to the Create Server API."},
    {"os-user-quotas", "UserQuotas", "Project user quota support."},
    {"os-virtual-interfaces", "VirtualInterfaces", "Virtual interface support."},
    {"os-volume-attachment-update", "VolumeAttachmentUpdate",
     "Support for updating a volume attachment."},
    {"os-volumes", "Volumes", "Volumes support."},
};

Json extension_json(const Extension& e) {
  return {{"alias", e.alias},
          {"name", e.name},
          {"description", e.description},
          {"namespace", "http://docs.openstack.org/compute/ext/fake_xml"},
          {"updated", "2014-12-03T00:00:00Z"},
          {"links", Json::array()}};
}

Result<http::Response> list_extensions(NovaApi&, NovaApi::Call&) {
  Json items = Json::array();
  for (const Extension& e : kExtensions) items.push_back(extension_json(e));
  return json_response(200, {{"extensions", items}});
}

Result<http::Response> show_extension(NovaApi&, NovaApi::Call& call) {
  for (const Extension& e : kExtensions) {
    if (call.param(0) == e.alias) return json_response(200, {{"extension", extension_json(e)}});
  }
  return not_found("Extension " + std::string(call.param(0)) + " could not be found.");
}

}  // namespace

void add_proxy_routes(NovaApi& api) {
  using M = http::Method;
  NovaApi* a = &api;
  // The image proxy checks nothing itself beyond a valid token: Glance's own rules (through
  // the catalog, with the caller's token) decide what is visible and who may change it.
  api.add(M::kGet, "/v2.1/images", "authenticated",
          [a](NovaApi::Call& c) { return list_images(*a, c, false); });
  api.add(M::kGet, "/v2.1/images/detail", "authenticated",
          [a](NovaApi::Call& c) { return list_images(*a, c, true); });
  api.add(M::kGet, "/v2.1/images/{image_id}", "authenticated",
          [a](NovaApi::Call& c) { return show_image(*a, c); });
  api.add(M::kDelete, "/v2.1/images/{image_id}", "authenticated",
          [a](NovaApi::Call& c) { return delete_image(*a, c); });
  api.add(M::kGet, "/v2.1/images/{image_id}/metadata", "authenticated",
          [a](NovaApi::Call& c) { return list_image_metadata(*a, c); });
  api.add(M::kPost, "/v2.1/images/{image_id}/metadata", "authenticated",
          [a](NovaApi::Call& c) { return set_image_metadata(*a, c, false); });
  api.add(M::kPut, "/v2.1/images/{image_id}/metadata", "authenticated",
          [a](NovaApi::Call& c) { return set_image_metadata(*a, c, true); });
  api.add(M::kGet, "/v2.1/images/{image_id}/metadata/{key}", "authenticated",
          [a](NovaApi::Call& c) { return show_image_metadata_item(*a, c); });
  api.add(M::kPut, "/v2.1/images/{image_id}/metadata/{key}", "authenticated",
          [a](NovaApi::Call& c) { return set_image_metadata_item(*a, c); });
  api.add(M::kDelete, "/v2.1/images/{image_id}/metadata/{key}", "authenticated",
          [a](NovaApi::Call& c) { return delete_image_metadata_item(*a, c); });

  // os_compute_api:os-simple-tenant-usage:list (admin) and :show (the project's readers).
  api.add(M::kGet, "/v2.1/os-simple-tenant-usage", "admin",
          [a](NovaApi::Call& c) { return list_usage(*a, c); });
  api.add(M::kGet, "/v2.1/os-simple-tenant-usage/{tenant_id}", "authenticated",
          [a](NovaApi::Call& c) { return show_usage(*a, c); });

  // os_compute_api:os-server-password:show (reader) and :clear (member), on the server's
  // project; checked by load_visible.
  api.add(M::kGet, "/v2.1/servers/{server_id}/os-server-password", "authenticated",
          [a](NovaApi::Call& c) { return show_password(*a, c); });
  api.add(M::kDelete, "/v2.1/servers/{server_id}/os-server-password", "authenticated",
          [a](NovaApi::Call& c) { return clear_password(*a, c); });

  // os_compute_api:extensions: any authenticated caller.
  api.add(M::kGet, "/v2.1/extensions", "authenticated",
          [a](NovaApi::Call& c) { return list_extensions(*a, c); });
  api.add(M::kGet, "/v2.1/extensions/{alias}", "authenticated",
          [a](NovaApi::Call& c) { return show_extension(*a, c); });
}

}  // namespace concord::compute

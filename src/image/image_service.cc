#include "image/image_service.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "base/time_format.h"
#include "blob/blob_store.h"
#include "image/format_check.h"
#include "usage/usage_ledger.h"

namespace concord::image {
namespace {

using http::Method;
using http::Request;
using http::Response;
using identity::AuthContext;

constexpr size_t kMaxTags = 128;
constexpr size_t kMaxProperties = 128;
constexpr size_t kMaxMembers = 128;
constexpr int kDefaultLimit = 25;
constexpr int kMaxLimit = 1000;
constexpr std::string_view kChangeKind = "image.image";

// Properties clients may never set (Glance answers 403 "is read-only").
const std::set<std::string, std::less<>> kReadOnly = {
    "checksum", "created_at", "direct_url", "file",   "os_hash_algo", "os_hash_value",
    "schema",   "self",       "size",       "status", "updated_at",   "virtual_size"};
// Names Glance reserves (403 "is reserved"); `publisher` is kept for partner publishing.
const std::set<std::string, std::less<>> kReserved = {"location", "locations", "deleted",
                                                      "deleted_at", "publisher"};
const std::set<std::string, std::less<>> kContainerFormats = {"ami", "ari", "aki",    "bare",
                                                              "ovf", "ova", "docker", "compressed"};
const std::set<std::string, std::less<>> kDiskFormats = {
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"};
const std::set<std::string, std::less<>> kVisibilities = {"private", "shared", "community",
                                                          "public"};
const std::set<std::string, std::less<>> kMemberStatuses = {"pending", "accepted", "rejected"};
// Core properties a PATCH or a create may set.
const std::set<std::string, std::less<>> kWritableCore = {
    "name", "visibility", "protected",   "os_hidden",        "min_disk", "min_ram",
    "tags", "owner",      "disk_format", "container_format", "id"};

std::string glance_time(SystemTime t) {
  time_t secs = std::chrono::system_clock::to_time_t(t);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

int64_t to_us(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The media type of a Content-Type header, lowercased, without parameters.
std::string media_type(std::string_view content_type) {
  std::string mime(content_type.substr(0, content_type.find(';')));
  size_t b = mime.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  size_t e = mime.find_last_not_of(" \t");
  return lower(mime.substr(b, e - b + 1));
}

// ---- errors ---------------------------------------------------------------------------------

int http_status(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists:
    case Code::kAborted:
    case Code::kFailedPrecondition: return 409;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kResourceExhausted: return 413;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

std::unexpected<Error> bad_request(std::string message) {
  return fail(Code::kInvalidArgument, std::move(message));
}
std::unexpected<Error> forbidden(std::string message) {
  return fail(Code::kPermissionDenied, std::move(message));
}
std::unexpected<Error> conflict(std::string message) {
  return fail(Code::kAlreadyExists, std::move(message));
}
std::unexpected<Error> image_not_found(std::string_view id) {
  return fail(Code::kNotFound, "No image found with ID " + sanitize_utf8(id));
}

// ---- the record in the store ----------------------------------------------------------------

struct Image : ImageRecord {
  int64_t revision = 0;
  int64_t created_us = 0;
  std::optional<int64_t> activated_us;
};

struct Member {
  std::string image_id;
  std::string member_id;
  std::string status;
  std::string created_at;
  std::string updated_at;
};

constexpr std::string_view kColumns =
    "id, name, status, visibility, owner, publisher, disk_format, container_format, size, "
    "virtual_size, checksum, os_hash_algo, os_hash_value, blob_sha256, min_disk, min_ram, "
    "protected, os_hidden, tags, properties, created_at, updated_at, created_us, activated_us, "
    "revision";

std::optional<int64_t> opt_int(const store::Row& r, size_t i) {
  if (r.is_null(i)) return std::nullopt;
  return r.integer(i);
}

Result<Image> from_row(const store::Row& r) {
  Image im;
  im.id = r.text(0);
  im.name = r.opt_text(1);
  im.status = r.text(2);
  im.visibility = r.text(3);
  im.owner = r.text(4);
  im.publisher = r.opt_text(5);
  im.disk_format = r.opt_text(6);
  im.container_format = r.opt_text(7);
  im.size = opt_int(r, 8);
  im.virtual_size = opt_int(r, 9);
  im.checksum = r.opt_text(10);
  im.os_hash_algo = r.opt_text(11);
  im.os_hash_value = r.opt_text(12);
  im.sha256 = r.opt_text(13);
  im.min_disk = r.integer(14);
  im.min_ram = r.integer(15);
  im.is_protected = r.boolean(16);
  im.os_hidden = r.boolean(17);
  auto tags = parse_json(r.text(18));
  auto props = parse_json(r.text(19));
  if (!tags || !tags->is_array() || !props || !props->is_object()) {
    return fail(Code::kInternal, "corrupt tags/properties of image " + im.id);
  }
  for (const Json& t : *tags) {
    if (t.is_string()) im.tags.push_back(t.get<std::string>());
  }
  for (const auto& [k, v] : props->items()) {
    if (v.is_string()) im.properties[k] = v.get<std::string>();
  }
  im.created_at = r.text(20);
  im.updated_at = r.text(21);
  im.created_us = r.integer(22);
  im.activated_us = opt_int(r, 23);
  im.revision = r.integer(24);
  return im;
}

store::Value opt(const std::optional<std::string>& s) {
  return s ? store::Value(*s) : store::null();
}
store::Value opt(const std::optional<int64_t>& v) {
  return v ? store::Value(*v) : store::null();
}

std::string tags_text(const Image& im) {
  return dump_json(Json(im.tags));
}
std::string props_text(const Image& im) {
  Json j = Json::object();
  for (const auto& [k, v] : im.properties) j[k] = v;
  return dump_json(j);
}

Result<std::vector<Image>> query_images(store::Tx& tx, std::string_view where,
                                        std::span<const store::Value> params) {
  std::string sql = "SELECT " + std::string(kColumns) + " FROM image_images";
  if (!where.empty()) sql += " WHERE " + std::string(where);
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(sql, params));
  std::vector<Image> out;
  out.reserve(rows.size());
  for (const store::Row& r : rows) {
    CONCORD_ASSIGN_OR_RETURN(Image im, from_row(r));
    out.push_back(std::move(im));
  }
  return out;
}

Result<std::optional<Image>> load_image(store::Tx& tx, std::string_view id) {
  store::Value p = std::string(id);
  CONCORD_ASSIGN_OR_RETURN(auto images, query_images(tx, "id = ?", std::span(&p, 1)));
  if (images.empty()) return std::optional<Image>();
  return std::optional<Image>(std::move(images.front()));
}

Status insert_image(store::Tx& tx, const Image& im) {
  std::vector<store::Value> v = {im.id,
                                 opt(im.name),
                                 im.status,
                                 im.visibility,
                                 im.owner,
                                 opt(im.publisher),
                                 opt(im.disk_format),
                                 opt(im.container_format),
                                 opt(im.size),
                                 opt(im.virtual_size),
                                 opt(im.checksum),
                                 opt(im.os_hash_algo),
                                 opt(im.os_hash_value),
                                 opt(im.sha256),
                                 im.min_disk,
                                 im.min_ram,
                                 int64_t{im.is_protected},
                                 int64_t{im.os_hidden},
                                 tags_text(im),
                                 props_text(im),
                                 im.created_at,
                                 im.updated_at,
                                 im.created_us,
                                 opt(im.activated_us),
                                 int64_t{1}};
  CONCORD_RETURN_IF_ERROR(tx.exec("INSERT INTO image_images (" + std::string(kColumns) +
                                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                                      "?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  v));
  return tx.record_change({.kind = std::string(kChangeKind),
                           .id = im.id,
                           .project_id = im.owner,
                           .op = "create",
                           .revision = 1});
}

// Writes every mutable column of `im` if its revision is still current; bumps the revision.
Status update_image(store::Tx& tx, Image& im) {
  std::vector<store::Value> v = {opt(im.name),
                                 im.status,
                                 im.visibility,
                                 im.owner,
                                 opt(im.disk_format),
                                 opt(im.container_format),
                                 opt(im.size),
                                 opt(im.virtual_size),
                                 opt(im.checksum),
                                 opt(im.os_hash_algo),
                                 opt(im.os_hash_value),
                                 opt(im.sha256),
                                 im.min_disk,
                                 im.min_ram,
                                 int64_t{im.is_protected},
                                 int64_t{im.os_hidden},
                                 tags_text(im),
                                 props_text(im),
                                 im.updated_at,
                                 opt(im.activated_us),
                                 im.id,
                                 im.revision};
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("UPDATE image_images SET name = ?, status = ?, visibility = ?, owner = ?, "
              "disk_format = ?, container_format = ?, size = ?, virtual_size = ?, checksum = ?, "
              "os_hash_algo = ?, os_hash_value = ?, blob_sha256 = ?, min_disk = ?, min_ram = ?, "
              "protected = ?, os_hidden = ?, tags = ?, properties = ?, updated_at = ?, "
              "activated_us = ?, revision = revision + 1 WHERE id = ? AND revision = ?",
              v));
  if (n == 0) return store::check_revision(tx, "image_images", im.id);
  im.revision += 1;
  return tx.record_change({.kind = std::string(kChangeKind),
                           .id = im.id,
                           .project_id = im.owner,
                           .op = "update",
                           .revision = im.revision});
}

Result<std::vector<Member>> load_members(store::Tx& tx, std::string_view image_id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT image_id, member_id, status, created_at, updated_at FROM image_members "
               "WHERE image_id = ? ORDER BY created_at, member_id",
               {std::string(image_id)}));
  std::vector<Member> out;
  for (const auto& r : rows) out.push_back({r.text(0), r.text(1), r.text(2), r.text(3), r.text(4)});
  return out;
}

Result<std::optional<Member>> load_member(store::Tx& tx, std::string_view image_id,
                                          std::string_view member_id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT image_id, member_id, status, created_at, updated_at FROM image_members "
               "WHERE image_id = ? AND member_id = ?",
               {std::string(image_id), std::string(member_id)}));
  if (rows.empty()) return std::optional<Member>();
  const auto& r = rows.front();
  return std::optional<Member>(Member{r.text(0), r.text(1), r.text(2), r.text(3), r.text(4)});
}

// ---- rendering ------------------------------------------------------------------------------

Json opt_json(const std::optional<std::string>& s) {
  return s ? Json(*s) : Json(nullptr);
}
Json opt_json(const std::optional<int64_t>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Json render_image(const Image& im) {
  Json j = Json::object();
  // Extra properties first, so a core field can never be shadowed by one.
  for (const auto& [k, v] : im.properties) j[k] = v;
  j["id"] = im.id;
  j["name"] = opt_json(im.name);
  j["status"] = im.status;
  j["visibility"] = im.visibility;
  j["protected"] = im.is_protected;
  j["os_hidden"] = im.os_hidden;
  j["checksum"] = opt_json(im.checksum);
  j["os_hash_algo"] = opt_json(im.os_hash_algo);
  j["os_hash_value"] = opt_json(im.os_hash_value);
  j["owner"] = im.owner;
  j["size"] = opt_json(im.size);
  j["virtual_size"] = opt_json(im.virtual_size);
  j["min_ram"] = im.min_ram;
  j["min_disk"] = im.min_disk;
  j["disk_format"] = opt_json(im.disk_format);
  j["container_format"] = opt_json(im.container_format);
  j["created_at"] = im.created_at;
  j["updated_at"] = im.updated_at;
  j["tags"] = im.tags;
  j["self"] = "/v2/images/" + im.id;
  j["file"] = "/v2/images/" + im.id + "/file";
  j["schema"] = "/v2/schemas/image";
  return j;
}

Json render_member(const Member& m) {
  return {{"image_id", m.image_id},     {"member_id", m.member_id},
          {"status", m.status},         {"created_at", m.created_at},
          {"updated_at", m.updated_at}, {"schema", "/v2/schemas/member"}};
}

Response json_response(int status, const Json& body) {
  return Response::json(status, dump_json(body));
}

// ---- schemas --------------------------------------------------------------------------------

const char* const kUuidPattern =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

Json nullable_enum(const std::set<std::string, std::less<>>& values) {
  Json e = Json::array({nullptr});
  for (const auto& v : values) e.push_back(v);
  return {{"type", {"null", "string"}}, {"enum", e}};
}

Json image_schema() {
  Json p = Json::object();
  p["id"] = {{"type", "string"},
             {"description", "An identifier for the image"},
             {"pattern", kUuidPattern}};
  p["name"] = {{"type", {"null", "string"}},
               {"description", "Descriptive name for the image"},
               {"maxLength", 255}};
  p["status"] = {{"type", "string"},
                 {"readOnly", true},
                 {"description", "Status of the image"},
                 {"enum",
                  {"queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                   "pending_delete", "deactivated"}}};
  p["visibility"] = {{"type", "string"},
                     {"description", "Scope of image accessibility"},
                     {"enum", {"community", "public", "private", "shared"}}};
  p["protected"] = {{"type", "boolean"}, {"description", "If true, image will not be deletable."}};
  p["os_hidden"] = {{"type", "boolean"},
                    {"description", "If true, image will not appear in default image list."}};
  p["checksum"] = {{"type", {"null", "string"}},
                   {"readOnly", true},
                   {"description", "md5 hash of image contents."},
                   {"maxLength", 32}};
  p["os_hash_algo"] = {{"type", {"null", "string"}},
                       {"readOnly", true},
                       {"description", "Algorithm to calculate the os_hash_value"},
                       {"maxLength", 64}};
  p["os_hash_value"] = {{"type", {"null", "string"}},
                        {"readOnly", true},
                        {"description",
                         "Hexdigest of the image contents using the algorithm "
                         "specified by the os_hash_algo"},
                        {"maxLength", 128}};
  p["owner"] = {
      {"type", {"null", "string"}}, {"description", "Owner of the image"}, {"maxLength", 255}};
  p["size"] = {{"type", {"null", "integer"}},
               {"readOnly", true},
               {"description", "Size of image file in bytes"}};
  p["virtual_size"] = {{"type", {"null", "integer"}},
                       {"readOnly", true},
                       {"description", "Virtual size of image in bytes"}};
  p["container_format"] = nullable_enum(kContainerFormats);
  p["container_format"]["description"] = "Format of the container";
  p["disk_format"] = nullable_enum(kDiskFormats);
  p["disk_format"]["description"] = "Format of the disk";
  p["created_at"] = {{"type", "string"},
                     {"readOnly", true},
                     {"description", "Date and time of image registration"}};
  p["updated_at"] = {{"type", "string"},
                     {"readOnly", true},
                     {"description", "Date and time of the last image modification"}};
  p["tags"] = {{"type", "array"},
               {"description", "List of strings related to the image"},
               {"items", {{"type", "string"}, {"maxLength", 255}}}};
  p["direct_url"] = {{"type", "string"},
                     {"readOnly", true},
                     {"description", "URL to access the image file kept in external store"}};
  p["min_ram"] = {{"type", "integer"},
                  {"description", "Amount of ram (in MB) required to boot image."}};
  p["min_disk"] = {{"type", "integer"},
                   {"description", "Amount of disk space (in GB) required to boot image."}};
  p["self"] = {{"type", "string"}, {"readOnly", true}, {"description", "An image self url"}};
  p["file"] = {{"type", "string"}, {"readOnly", true}, {"description", "An image file url"}};
  p["schema"] = {{"type", "string"}, {"readOnly", true}, {"description", "An image schema url"}};
  p["locations"] = {
      {"type", "array"},
      {"description", "A set of URLs to access the image file kept in external store"},
      {"items",
       {{"type", "object"},
        {"properties",
         {{"url", {{"type", "string"}, {"maxLength", 255}}}, {"metadata", {{"type", "object"}}}}},
        {"required", {"url", "metadata"}}}}};
  for (const char* k : {"kernel_id", "ramdisk_id"}) {
    p[k] = {{"type", {"null", "string"}}, {"pattern", kUuidPattern}, {"is_base", false}};
  }
  p["kernel_id"]["description"] =
      "ID of image stored in Glance that should be used as the kernel when booting an AMI-style "
      "image.";
  p["ramdisk_id"]["description"] =
      "ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style "
      "image.";
  p["instance_uuid"] = {{"type", "string"},
                        {"is_base", false},
                        {"description",
                         "Metadata which can be used to record which instance "
                         "this image is associated with."}};
  p["architecture"] = {
      {"type", "string"}, {"is_base", false}, {"description", "Operating system architecture"}};
  p["os_distro"] = {{"type", "string"},
                    {"is_base", false},
                    {"description", "Common name of operating system distribution"}};
  p["os_version"] = {{"type", "string"},
                     {"is_base", false},
                     {"description", "Operating system version as specified by the distributor"}};
  p["description"] = {{"type", "string"},
                      {"is_base", false},
                      {"description", "A human-readable string describing this image."}};
  return {{"name", "image"},
          {"properties", p},
          {"additionalProperties", {{"type", "string"}}},
          {"links",
           {{{"href", "{self}"}, {"rel", "self"}},
            {{"href", "{file}"}, {"rel", "enclosure"}},
            {{"href", "{schema}"}, {"rel", "describedby"}}}}};
}

Json images_schema() {
  return {{"name", "images"},
          {"properties",
           {{"images", {{"type", "array"}, {"items", image_schema()}}},
            {"schema", {{"type", "string"}}},
            {"first", {{"type", "string"}}},
            {"next", {{"type", "string"}}}}},
          {"links",
           {{{"rel", "first"}, {"href", "{first}"}},
            {{"rel", "next"}, {"href", "{next}"}},
            {{"rel", "describedby"}, {"href", "{schema}"}}}}};
}

Json member_schema() {
  Json p = {
      {"created_at",
       {{"type", "string"}, {"description", "Date and time of image member creation"}}},
      {"image_id",
       {{"type", "string"},
        {"description", "An identifier for the image"},
        {"pattern", kUuidPattern}}},
      {"member_id",
       {{"type", "string"}, {"description", "An identifier for the image member (tenantId)"}}},
      {"schema", {{"type", "string"}, {"readOnly", true}}},
      {"status",
       {{"type", "string"},
        {"description", "The status of this image member"},
        {"enum", {"pending", "accepted", "rejected"}}}},
      {"updated_at",
       {{"type", "string"},
        {"description", "Date and time of last modification of image member"}}}};
  return {{"name", "member"}, {"properties", p}};
}

Json members_schema() {
  return {{"name", "members"},
          {"properties",
           {{"members", {{"type", "array"}, {"items", member_schema()}}},
            {"schema", {{"type", "string"}}}}},
          {"links", {{{"rel", "describedby"}, {"href", "{schema}"}}}}};
}

// ---- validation of individual properties -----------------------------------------------------

Status check_property_name(std::string_view name) {
  if (kReadOnly.contains(name)) {
    return forbidden("Attribute '" + std::string(name) + "' is read-only.");
  }
  if (kReserved.contains(name) || name.starts_with("os_glance")) {
    return forbidden("Attribute '" + std::string(name) + "' is reserved.");
  }
  if (name.empty() || name.size() > 255) {
    return bad_request("Property names must be 1 to 255 characters long.");
  }
  return ok();
}

Result<std::optional<std::string>> nullable_string(const Json& v, std::string_view field,
                                                   size_t max_len) {
  if (v.is_null()) return std::optional<std::string>();
  if (!v.is_string()) {
    return bad_request("Invalid type for '" + std::string(field) + "': expected string or null.");
  }
  std::string s = v.get<std::string>();
  if (s.size() > max_len) {
    return bad_request("'" + std::string(field) + "' is too long (maximum " +
                       std::to_string(max_len) + " characters).");
  }
  return std::optional<std::string>(std::move(s));
}

Result<std::optional<std::string>> format_value(const Json& v, std::string_view field,
                                                const std::set<std::string, std::less<>>& allowed) {
  CONCORD_ASSIGN_OR_RETURN(auto s, nullable_string(v, field, 255));
  if (s && !allowed.contains(*s)) {
    return bad_request("Invalid value '" + sanitize_utf8(*s) + "' for '" + std::string(field) +
                       "'.");
  }
  return s;
}

Result<std::vector<std::string>> tags_value(const Json& v) {
  if (!v.is_array()) return bad_request("Invalid type for 'tags': expected an array of strings.");
  std::vector<std::string> tags;
  for (const Json& t : v) {
    if (!t.is_string()) return bad_request("Invalid type for tag: expected a string.");
    std::string s = t.get<std::string>();
    if (s.empty() || s.size() > 255) return bad_request("Tags must be 1 to 255 characters long.");
    if (std::find(tags.begin(), tags.end(), s) == tags.end()) tags.push_back(std::move(s));
  }
  if (tags.size() > kMaxTags) {
    return fail(Code::kResourceExhausted,
                "Maximum number of tags exceeded (" + std::to_string(kMaxTags) + ").");
  }
  return tags;
}

Result<int64_t> non_negative(const Json& v, std::string_view field) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0) {
    return bad_request("Invalid value for '" + std::string(field) +
                       "': expected a non-negative integer.");
  }
  return v.get<int64_t>();
}

}  // namespace

http::Response glance_error(int status, std::string_view message) {
  Response r;
  r.status = status;
  std::string line = std::to_string(status) + " " + std::string(http::status_title(status));
  r.body = line + "\n\n" + sanitize_utf8(message) + "\n\n    ";
  r.set_header("content-type", "text/plain; charset=UTF-8");
  return r;
}

// ---------------------------------------------------------------------------------------------

std::vector<store::Migration> migrations() {
  return {{"image", 1, "images, members and blob references",
           "CREATE TABLE image_images ("
           " id TEXT PRIMARY KEY,"
           " name TEXT,"
           " status TEXT NOT NULL,"
           " visibility TEXT NOT NULL,"
           " owner TEXT NOT NULL,"
           " publisher TEXT,"
           " disk_format TEXT,"
           " container_format TEXT,"
           " size BIGINT,"
           " virtual_size BIGINT,"
           " checksum TEXT,"
           " os_hash_algo TEXT,"
           " os_hash_value TEXT,"
           " blob_sha256 TEXT,"
           " min_disk BIGINT NOT NULL,"
           " min_ram BIGINT NOT NULL,"
           " protected BIGINT NOT NULL,"
           " os_hidden BIGINT NOT NULL,"
           " tags TEXT NOT NULL,"
           " properties TEXT NOT NULL,"
           " created_at TEXT NOT NULL,"
           " updated_at TEXT NOT NULL,"
           " created_us BIGINT NOT NULL,"
           " activated_us BIGINT,"
           " revision BIGINT NOT NULL);"
           "CREATE INDEX image_images_owner ON image_images(owner);"
           "CREATE INDEX image_images_visibility ON image_images(visibility);"
           "CREATE INDEX image_images_status ON image_images(status);"
           "CREATE TABLE image_members ("
           " image_id TEXT NOT NULL,"
           " member_id TEXT NOT NULL,"
           " status TEXT NOT NULL,"
           " created_at TEXT NOT NULL,"
           " updated_at TEXT NOT NULL,"
           " PRIMARY KEY (image_id, member_id));"
           "CREATE INDEX image_members_member ON image_members(member_id);"
           // Blobs are content-addressed and shared by images with identical data.
           "CREATE TABLE image_blobs ("
           " sha256 TEXT PRIMARY KEY,"
           " refs BIGINT NOT NULL)",
           ""}};
}

// ---------------------------------------------------------------------------------------------

class ImageService::Impl {
 public:
  Impl(store::Store& store, const Clock& clock, identity::IdentityService& identity,
       ImageOptions options, std::unique_ptr<blob::BlobStore> blobs)
      : store_(store),
        clock_(clock),
        identity_(identity),
        options_(std::move(options)),
        blobs_(std::move(blobs)) {
    qemu_.binary = options_.qemu_img;
    qemu_.timeout = options_.qemu_img_timeout;
  }

  Status recover();
  void build_routes();

  std::shared_ptr<http::RouteTable> table_ = std::make_shared<http::RouteTable>();
  std::vector<RouteInfo> infos_;

  Result<ImageRecord> get_for_project(std::string_view id, std::string_view project,
                                      bool is_admin) const;
  std::string spool_dir() const { return blobs_->root() + "/tmp"; }
  uint64_t max_image_bytes() const { return options_.max_image_bytes; }
  std::string blob_path(const ImageRecord& im) const {
    if (!im.sha256 || (im.status != "active" && im.status != "deactivated")) return {};
    return blobs_->path_of(*im.sha256);
  }

 private:
  struct Call {
    Request& req;
    AuthContext caller;
    std::string_view param(size_t i) const {
      return i < req.params.size() ? std::string_view(req.params[i]) : std::string_view();
    }
    bool admin() const { return caller.is_admin(); }
    const std::string& project() const { return caller.project_id; }
  };
  using Handler = Result<Response> (Impl::*)(Call&);

  void add(Method method, std::string pattern, std::string rule, Handler handler);
  Response run(Request& req, const std::string& rule, Handler handler);

  // Whether the caller may see the image at all (404 otherwise); members with any status may.
  Result<bool> visible(store::Tx& tx, const Image& im, const Call& c) const;
  // Loads an image the caller can see, or 404 (also for ids that are not UUIDs).
  Result<Image> load_visible(store::Tx& tx, const Call& c, std::string_view id) const;
  // The caller may change the image: a member (or admin) of the owning project.
  Status check_owner(const Call& c, const Image& im) const;
  std::string now_text() const { return glance_time(clock_.now()); }

  Result<Response> versions(Call& c);
  Result<Response> schema_image(Call& c);
  Result<Response> schema_images(Call& c);
  Result<Response> schema_member(Call& c);
  Result<Response> schema_members(Call& c);
  Result<Response> create_image(Call& c);
  Result<Response> list_images(Call& c);
  Result<Response> show_image(Call& c);
  Result<Response> delete_collection(Call& c);
  static bool trailing_slash(const Request& req);
  Result<Response> update_image_route(Call& c);
  Result<Response> delete_image(Call& c);
  Result<Response> upload(Call& c);
  Result<Response> download(Call& c);
  Result<Response> deactivate(Call& c);
  Result<Response> reactivate(Call& c);
  Result<Response> add_tag(Call& c);
  Result<Response> delete_tag(Call& c);
  Result<Response> list_members(Call& c);
  Result<Response> create_member(Call& c);
  Result<Response> show_member(Call& c);
  Result<Response> update_member(Call& c);
  Result<Response> delete_member(Call& c);

  Result<Response> set_active(Call& c, bool active);
  // Applies one JSON-patch operation to `im` (validation included).
  Status apply_patch_op(const Call& c, Image& im, const Json& op);
  Status set_core(const Call& c, Image& im, const std::string& name, const Json& value);
  // Puts an image back from `saving` to `queued` after a failed upload.
  void restore_queued(std::string_view id);

  store::Store& store_;
  const Clock& clock_;
  identity::IdentityService& identity_;
  ImageOptions options_;
  std::unique_ptr<blob::BlobStore> blobs_;
  QemuImgOptions qemu_;
  // Held across "commit a blob + reference it in the store" and "drop the last reference +
  // remove the blob", so a blob shared by two images is never removed between the two steps.
  std::mutex blob_mu_;
};

// ---- plumbing -------------------------------------------------------------------------------

void ImageService::Impl::add(Method method, std::string pattern, std::string rule,
                             Handler handler) {
  infos_.push_back({method, pattern, rule});
  table_->add(method, pattern,
              [this, rule, handler](Request& req) { return run(req, rule, handler); });
}

Response ImageService::Impl::run(Request& req, const std::string& rule, Handler handler) {
  auto error = [&](const Error& e) {
    int status = http_status(e.code());
    if (status >= 500) {
      logger("image")->error("{} {} failed: {} request_id={}", http::method_name(req.method),
                             sanitize_utf8(req.path), e.to_string(), req.request_id);
    }
    return glance_error(status, e.message());
  };
  try {
    Call call{req, {}};
    if (rule != "public") {
      std::string_view token = req.header("x-auth-token");
      if (token.empty()) {
        return glance_error(401,
                            "This server could not verify that you are authorized to "
                            "access the document you requested.");
      }
      auto ctx = identity_.authenticate(token);
      if (!ctx) {
        if (ctx.error().code() != Code::kUnauthenticated) return error(ctx.error());
        return glance_error(401,
                            "This server could not verify that you are authorized to "
                            "access the document you requested.");
      }
      call.caller = std::move(*ctx);
      identity::Target target;
      target.project_id = call.caller.project_id;
      if (auto allowed = identity_.authorize(call.caller, rule, target); !allowed) {
        return error(allowed.error());
      }
    }
    for (const std::string& p : req.params) {
      if (p.find('\0') != std::string::npos || sanitize_utf8(p) != p) {
        return glance_error(404, "The resource could not be found.");
      }
    }
    if (req.query.find('%') != std::string::npos) {
      for (const auto& [k, v] : req.query_params()) {
        if (k.find('\0') != std::string::npos || v.find('\0') != std::string::npos ||
            sanitize_utf8(k) != k || sanitize_utf8(v) != v) {
          return glance_error(400, "Query parameters must be valid UTF-8 without NUL characters.");
        }
      }
    }
    auto response = (this->*handler)(call);
    if (!response) return error(response.error());
    return std::move(*response);
  } catch (const std::exception& e) {
    logger("image")->error("unexpected exception: {} {} request_id={} what={}",
                           http::method_name(req.method), sanitize_utf8(req.path), req.request_id,
                           e.what());
    return glance_error(500,
                        "The server has either erred or is incapable of performing the "
                        "requested operation.");
  }
}

Result<bool> ImageService::Impl::visible(store::Tx& tx, const Image& im, const Call& c) const {
  if (c.admin()) return true;
  if (im.visibility == "public" || im.visibility == "community") return true;
  if (!c.project().empty() && im.owner == c.project()) return true;
  if (im.visibility == "shared" && !c.project().empty()) {
    CONCORD_ASSIGN_OR_RETURN(auto m, load_member(tx, im.id, c.project()));
    return m.has_value();
  }
  return false;
}

Result<Image> ImageService::Impl::load_visible(store::Tx& tx, const Call& c,
                                               std::string_view id) const {
  if (!is_uuid(id)) return image_not_found(id);
  CONCORD_ASSIGN_OR_RETURN(auto im, load_image(tx, id));
  if (!im) return image_not_found(id);
  CONCORD_ASSIGN_OR_RETURN(bool ok, visible(tx, *im, c));
  if (!ok) return image_not_found(id);
  return std::move(*im);
}

Status ImageService::Impl::check_owner(const Call& c, const Image& im) const {
  identity::Target t;
  t.project_id = im.owner;
  if (!identity_.authorize(c.caller, "project_member", t)) {
    return forbidden("You are not permitted to modify image " + im.id + ".");
  }
  return ok();
}

// ---- discovery and schemas ------------------------------------------------------------------

Result<Response> ImageService::Impl::versions(Call& c) {
  Json list = Json::array();
  std::string href = c.req.base_url + "/v2/";
  for (int minor = 7; minor >= 0; --minor) {
    list.push_back({{"id", "v2." + std::to_string(minor)},
                    {"status", minor == 7 ? "CURRENT" : "SUPPORTED"},
                    {"links", {{{"rel", "self"}, {"href", href}}}}});
  }
  return json_response(300, {{"versions", list}});
}

Result<Response> ImageService::Impl::schema_image(Call&) {
  return json_response(200, image_schema());
}
Result<Response> ImageService::Impl::schema_images(Call&) {
  return json_response(200, images_schema());
}
Result<Response> ImageService::Impl::schema_member(Call&) {
  return json_response(200, member_schema());
}
Result<Response> ImageService::Impl::schema_members(Call&) {
  return json_response(200, members_schema());
}

// ---- create, show, list ---------------------------------------------------------------------

Status ImageService::Impl::set_core(const Call& c, Image& im, const std::string& name,
                                    const Json& value) {
  if (name == "name") {
    CONCORD_ASSIGN_OR_RETURN(im.name, nullable_string(value, name, 255));
  } else if (name == "visibility") {
    if (!value.is_string() || !kVisibilities.contains(value.get<std::string>())) {
      return bad_request("Invalid visibility value: " + sanitize_utf8(value.dump()));
    }
    std::string v = value.get<std::string>();
    if (v == "public" && !c.admin() && im.visibility != "public") {
      return forbidden("You are not authorized to complete publicize_image action.");
    }
    im.visibility = v;
  } else if (name == "protected" || name == "os_hidden") {
    if (!value.is_boolean()) {
      return bad_request("Invalid type for '" + name + "': expected a boolean.");
    }
    (name == "protected" ? im.is_protected : im.os_hidden) = value.get<bool>();
  } else if (name == "min_disk") {
    CONCORD_ASSIGN_OR_RETURN(im.min_disk, non_negative(value, name));
  } else if (name == "min_ram") {
    CONCORD_ASSIGN_OR_RETURN(im.min_ram, non_negative(value, name));
  } else if (name == "tags") {
    CONCORD_ASSIGN_OR_RETURN(im.tags, tags_value(value));
  } else if (name == "disk_format" || name == "container_format") {
    const auto& allowed = name == "disk_format" ? kDiskFormats : kContainerFormats;
    CONCORD_ASSIGN_OR_RETURN(auto v, format_value(value, name, allowed));
    auto& field = name == "disk_format" ? im.disk_format : im.container_format;
    if (v != field && im.status != "queued") {
      return forbidden("Attribute " + name + " can be only replaced for a queued image.");
    }
    field = std::move(v);
  } else if (name == "owner") {
    CONCORD_ASSIGN_OR_RETURN(auto v, nullable_string(value, name, 255));
    std::string owner = v.value_or("");
    if (owner != im.owner && !c.admin()) {
      return forbidden("You are not permitted to set the owner of an image to '" +
                       sanitize_utf8(owner) + "'.");
    }
    if (owner.empty()) return bad_request("An image must have an owner.");
    im.owner = owner;
  } else if (name == "id") {
    return forbidden("Attribute 'id' is read-only.");
  } else {
    return fail(Code::kInternal, "set_core called for " + name);
  }
  return ok();
}

Result<Response> ImageService::Impl::create_image(Call& c) {
  auto body = parse_json(c.req.body);
  if (!body) return bad_request("Malformed JSON in request body.");
  if (!body->is_object()) return bad_request("Request body must be a JSON object.");
  Image im;
  im.id = new_uuid();
  im.status = "queued";
  im.visibility = "shared";  // Glance's default since v2.5: members may be added without a change
  im.owner = c.project();
  SystemTime now = clock_.now();
  im.created_at = im.updated_at = glance_time(now);
  im.created_us = to_us(now);
  if (auto it = body->find("id"); it != body->end()) {
    if (!it->is_string() || !is_uuid(it->get<std::string>())) {
      return bad_request("Invalid value for 'id': expected a UUID.");
    }
    im.id = lower(it->get<std::string>());
  }
  for (const auto& [key, value] : body->items()) {
    if (key == "id") continue;
    CONCORD_RETURN_IF_ERROR(check_property_name(key));
    if (kWritableCore.contains(key)) {
      if (key == "owner") {
        CONCORD_ASSIGN_OR_RETURN(auto v, nullable_string(value, key, 255));
        if (v && *v != c.project() && !c.admin()) {
          return forbidden("You are not permitted to create images owned by '" + sanitize_utf8(*v) +
                           "'.");
        }
        if (v) im.owner = *v;
        continue;
      }
      CONCORD_RETURN_IF_ERROR(set_core(c, im, key, value));
      continue;
    }
    if (value.is_null() && (key == "kernel_id" || key == "ramdisk_id")) continue;
    if (!value.is_string()) {
      return bad_request("Invalid type for extra property '" + sanitize_utf8(key) +
                         "': expected a string.");
    }
    im.properties[key] = value.get<std::string>();
  }
  if (im.properties.size() > kMaxProperties) {
    return fail(Code::kResourceExhausted, "Maximum number of image properties exceeded.");
  }
  if (im.owner.empty()) {
    return forbidden("Images can only be created with a project-scoped token.");
  }
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto existing, load_image(tx, im.id));
    if (existing) return conflict("An image with identifier " + im.id + " already exists.");
    return insert_image(tx, im);
  }));
  im.revision = 1;
  Response r = json_response(201, render_image(im));
  r.set_header("location", c.req.base_url + "/v2/images/" + im.id);
  return r;
}

// `GET /v2/images/` is a show with an empty id (404) in Glance, not the list; the router
// ignores trailing slashes, so the raw target tells them apart.
bool ImageService::Impl::trailing_slash(const Request& req) {
  std::string_view raw = std::string_view(req.target).substr(0, req.target.find('?'));
  return raw.size() > 1 && raw.back() == '/';
}

Result<Response> ImageService::Impl::delete_collection(Call& c) {
  if (trailing_slash(c.req)) return image_not_found("");
  Response r = glance_error(405, "The method DELETE is not allowed for this resource.");
  r.set_header("allow", "GET, HEAD, POST");
  return r;
}

Result<Response> ImageService::Impl::show_image(Call& c) {
  Image im;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(im, load_visible(tx, c, c.param(0)));
    return ok();
  }));
  return json_response(200, render_image(im));
}

namespace {

const std::set<std::string, std::less<>> kSortKeys = {
    "name",     "status",     "container_format", "disk_format", "size",
    "id",       "created_at", "updated_at",       "visibility",  "owner",
    "min_disk", "min_ram",    "virtual_size",     "protected",   "os_hidden"};

struct SortKey {
  std::string key;
  bool asc = false;
};

// Compares two images by one key; nulls sort first, as in Glance's SQL.
int compare_by(const Image& a, const Image& b, const std::string& key) {
  auto cmp_opt_s = [](const std::optional<std::string>& x, const std::optional<std::string>& y) {
    if (x == y) return 0;
    if (!x) return -1;
    if (!y) return 1;
    return *x < *y ? -1 : 1;
  };
  auto cmp_opt_i = [](const std::optional<int64_t>& x, const std::optional<int64_t>& y) {
    if (x == y) return 0;
    if (!x) return -1;
    if (!y) return 1;
    return *x < *y ? -1 : 1;
  };
  auto cmp_s = [](const std::string& x, const std::string& y) {
    return x == y ? 0 : (x < y ? -1 : 1);
  };
  auto cmp_i = [](int64_t x, int64_t y) { return x == y ? 0 : (x < y ? -1 : 1); };
  if (key == "name") return cmp_opt_s(a.name, b.name);
  if (key == "status") return cmp_s(a.status, b.status);
  if (key == "container_format") return cmp_opt_s(a.container_format, b.container_format);
  if (key == "disk_format") return cmp_opt_s(a.disk_format, b.disk_format);
  if (key == "size") return cmp_opt_i(a.size, b.size);
  if (key == "virtual_size") return cmp_opt_i(a.virtual_size, b.virtual_size);
  if (key == "id") return cmp_s(a.id, b.id);
  if (key == "created_at") return cmp_i(a.created_us, b.created_us);
  if (key == "updated_at") return cmp_s(a.updated_at, b.updated_at);
  if (key == "visibility") return cmp_s(a.visibility, b.visibility);
  if (key == "owner") return cmp_s(a.owner, b.owner);
  if (key == "min_disk") return cmp_i(a.min_disk, b.min_disk);
  if (key == "min_ram") return cmp_i(a.min_ram, b.min_ram);
  if (key == "protected") return cmp_i(a.is_protected, b.is_protected);
  if (key == "os_hidden") return cmp_i(a.os_hidden, b.os_hidden);
  return 0;
}

Result<int64_t> int_param(const std::string& name, const std::string& value) {
  if (value.empty() || value.size() > 18 ||
      !std::all_of(value.begin(), value.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return bad_request("Invalid value '" + value + "' for parameter '" + name +
                       "': expected a non-negative integer.");
  }
  return std::stoll(value);
}

Result<bool> bool_param(const std::string& name, const std::string& value) {
  std::string v = lower(value);
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  return bad_request("Invalid value '" + value + "' for parameter '" + name +
                     "': expected a boolean.");
}

// A created_at / updated_at filter: "[op:]time" with Glance's operators. As in Glance, a value
// that is not ISO 8601 or names an unknown operator is the client's error (400), never a
// property filter that silently matches nothing.
struct TimeFilter {
  std::string op;  // eq neq lt lte gt gte
  int64_t us = 0;
  bool matches(int64_t value_us) const {
    if (op == "eq") return value_us == us;
    if (op == "neq") return value_us != us;
    if (op == "lt") return value_us < us;
    if (op == "lte") return value_us <= us;
    if (op == "gt") return value_us > us;
    return value_us >= us;  // gte
  }
};

Result<TimeFilter> time_filter(const std::string& name, const std::string& value) {
  TimeFilter f{"eq", 0};
  std::string_view time_text = value;
  // A bare ISO time also contains ':' (HH:MM), so only a known operator prefix splits.
  if (size_t colon = value.find(':'); colon != std::string::npos && !parse_iso_time(value)) {
    f.op = value.substr(0, colon);
    time_text = std::string_view(value).substr(colon + 1);
    static const std::set<std::string, std::less<>> kOps = {"eq", "neq", "lt", "lte", "gt", "gte"};
    if (!kOps.contains(f.op)) {
      return bad_request("Unable to filter on an unknown operator '" + sanitize_utf8(f.op) +
                         "' in '" + name + "'.");
    }
  }
  std::optional<SystemTime> t = parse_iso_time(time_text);
  if (!t) {
    return bad_request("Bad \"" + name + "\" query filter format '" + sanitize_utf8(value) +
                       "'. Use ISO 8601 DateTime notation.");
  }
  f.us = to_us(*t);
  return f;
}

}  // namespace

Result<Response> ImageService::Impl::list_images(Call& c) {
  if (trailing_slash(c.req)) return image_not_found("");
  auto params = c.req.query_params();
  int limit = kDefaultLimit;
  std::optional<std::string> marker;
  std::vector<SortKey> sort;
  std::vector<std::string> sort_keys, sort_dirs;
  bool sort_combined = false;
  std::optional<std::string> visibility;
  std::string member_status = "accepted";
  std::optional<bool> os_hidden = false;
  std::optional<bool> is_protected;
  std::optional<int64_t> size_min, size_max, size_exact;
  std::vector<std::string> tags;
  std::map<std::string, std::string> equals;  // name, status, formats, owner
  std::map<std::string, std::string> property_filters;
  std::vector<TimeFilter> created_filters, updated_filters;

  for (const auto& [k, v] : params) {
    if (k == "limit") {
      CONCORD_ASSIGN_OR_RETURN(int64_t n, int_param(k, v));
      limit = static_cast<int>(std::min<int64_t>(n, kMaxLimit));
    } else if (k == "marker") {
      marker = v;
    } else if (k == "sort_key") {
      if (!kSortKeys.contains(v)) return bad_request("Invalid sort key: " + v + ".");
      sort_keys.push_back(v);
    } else if (k == "sort_dir") {
      if (v != "asc" && v != "desc") {
        return bad_request("Invalid sort direction: " + v + ".");
      }
      sort_dirs.push_back(v);
    } else if (k == "sort") {
      sort_combined = true;
      size_t start = 0;
      while (start <= v.size()) {
        size_t end = v.find(',', start);
        if (end == std::string::npos) end = v.size();
        std::string item = v.substr(start, end - start);
        std::string key = item, dir = "desc";
        if (size_t colon = item.find(':'); colon != std::string::npos) {
          key = item.substr(0, colon);
          dir = item.substr(colon + 1);
        }
        if (!kSortKeys.contains(key)) return bad_request("Invalid sort key: " + key + ".");
        if (dir != "asc" && dir != "desc") {
          return bad_request("Invalid sort direction: " + dir + ".");
        }
        sort.push_back({key, dir == "asc"});
        start = end + 1;
      }
    } else if (k == "visibility") {
      if (v != "all" && !kVisibilities.contains(v)) {
        return bad_request("Invalid visibility value: " + v + ".");
      }
      visibility = v;
    } else if (k == "member_status") {
      if (v != "all" && !kMemberStatuses.contains(v)) {
        return bad_request("Invalid status value: " + v + ".");
      }
      member_status = v;
    } else if (k == "os_hidden") {
      CONCORD_ASSIGN_OR_RETURN(bool b, bool_param(k, v));
      os_hidden = b;
    } else if (k == "protected") {
      CONCORD_ASSIGN_OR_RETURN(bool b, bool_param(k, v));
      is_protected = b;
    } else if (k == "size") {
      CONCORD_ASSIGN_OR_RETURN(size_exact, int_param(k, v));
    } else if (k == "size_min") {
      CONCORD_ASSIGN_OR_RETURN(size_min, int_param(k, v));
    } else if (k == "size_max") {
      CONCORD_ASSIGN_OR_RETURN(size_max, int_param(k, v));
    } else if (k == "tag") {
      tags.push_back(v);
    } else if (k == "created_at" || k == "updated_at") {
      CONCORD_ASSIGN_OR_RETURN(TimeFilter f, time_filter(k, v));
      (k == "created_at" ? created_filters : updated_filters).push_back(f);
    } else if (k == "name" || k == "status" || k == "container_format" || k == "disk_format" ||
               k == "owner" || k == "id") {
      equals[k] = v;
    } else {
      property_filters[k] = v;
    }
  }
  if (sort_combined && (!sort_keys.empty() || !sort_dirs.empty())) {
    return bad_request("The 'sort' parameter cannot be combined with sort_key or sort_dir.");
  }
  if (!sort_combined) {
    if (sort_dirs.size() > std::max<size_t>(sort_keys.size(), 1)) {
      return bad_request("The number of sort_dir values exceeds the number of sort_key values.");
    }
    if (sort_keys.empty()) sort_keys.push_back("created_at");
    for (size_t i = 0; i < sort_keys.size(); ++i) {
      std::string dir =
          i < sort_dirs.size() ? sort_dirs[i] : (sort_dirs.empty() ? "desc" : sort_dirs.front());
      sort.push_back({sort_keys[i], dir == "asc"});
    }
  }
  if (size_min && size_max && *size_min > *size_max) {
    return bad_request("size_min must not be greater than size_max.");
  }

  std::vector<Image> candidates;
  std::map<std::string, std::string> my_membership;  // image id -> member status
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    if (!c.project().empty()) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT image_id, status FROM image_members WHERE member_id = ?",
                   {c.project()}));
      for (const auto& r : rows) my_membership[r.text(0)] = r.text(1);
    }
    if (c.admin()) {
      CONCORD_ASSIGN_OR_RETURN(candidates, query_images(tx, "", {}));
    } else {
      std::vector<store::Value> p = {c.project(), c.project()};
      CONCORD_ASSIGN_OR_RETURN(
          candidates,
          query_images(tx,
                       "owner = ? OR visibility IN ('public', 'community') OR id IN (SELECT "
                       "image_id FROM image_members WHERE member_id = ?)",
                       p));
    }
    return ok();
  }));

  auto shows = [&](const Image& im) {
    bool mine = !c.project().empty() && im.owner == c.project();
    auto membership = my_membership.find(im.id);
    bool member_ok = membership != my_membership.end() &&
                     (member_status == "all" || membership->second == member_status);
    if (visibility && *visibility != "all") {
      if (im.visibility != *visibility) return false;
      if (c.admin()) return true;
      // As Glance: the caller's own images of that visibility plus, for shared, those shared
      // with it under the requested member_status.
      if (*visibility == "shared") return mine || member_ok;
      if (*visibility == "private") return mine;
      return true;  // public, community
    }
    if (c.admin()) return im.visibility != "community" || mine || visibility;
    if (mine) return true;
    if (im.visibility == "public") return true;
    if (im.visibility == "community") return visibility.has_value();  // visibility=all
    if (im.visibility == "shared") return member_ok;
    return false;
  };

  std::vector<Image> images;
  for (Image& im : candidates) {
    if (!shows(im)) continue;
    if (os_hidden && im.os_hidden != *os_hidden) continue;
    if (is_protected && im.is_protected != *is_protected) continue;
    if (size_exact && im.size != size_exact) continue;
    if (size_min && (!im.size || *im.size < *size_min)) continue;
    if (size_max && (!im.size || *im.size > *size_max)) continue;
    bool match = true;
    // Compared at the precision the API shows (whole seconds), as Glance compares what it
    // stored.
    auto time_match = [](const std::string& text, const std::vector<TimeFilter>& filters) {
      if (filters.empty()) return true;
      std::optional<SystemTime> t = parse_iso_time(text);
      return t && std::all_of(filters.begin(), filters.end(),
                              [&](const TimeFilter& f) { return f.matches(to_us(*t)); });
    };
    match = match && time_match(im.created_at, created_filters) &&
            time_match(im.updated_at, updated_filters);
    for (const auto& [k, v] : equals) {
      if (k == "name") match = match && im.name && *im.name == v;
      if (k == "status") match = match && im.status == v;
      if (k == "container_format") match = match && im.container_format == v;
      if (k == "disk_format") match = match && im.disk_format == v;
      if (k == "owner") match = match && im.owner == v;
      if (k == "id") match = match && im.id == v;
    }
    for (const std::string& t : tags) {
      match = match && std::find(im.tags.begin(), im.tags.end(), t) != im.tags.end();
    }
    for (const auto& [k, v] : property_filters) {
      auto it = im.properties.find(k);
      match = match && it != im.properties.end() && it->second == v;
    }
    if (match) images.push_back(std::move(im));
  }
  bool id_sorted = false;
  for (const SortKey& s : sort) id_sorted = id_sorted || s.key == "id";
  if (!id_sorted) sort.push_back({"id", sort.empty() ? false : sort.back().asc});
  std::stable_sort(images.begin(), images.end(), [&](const Image& a, const Image& b) {
    for (const SortKey& s : sort) {
      int r = compare_by(a, b, s.key);
      if (r != 0) return s.asc ? r < 0 : r > 0;
    }
    return false;
  });
  size_t start = 0;
  if (marker) {
    auto it = std::find_if(images.begin(), images.end(),
                           [&](const Image& im) { return im.id == *marker; });
    if (it == images.end()) {
      return bad_request("Invalid marker. Image " + sanitize_utf8(*marker) +
                         " could not be found.");
    }
    start = static_cast<size_t>(it - images.begin()) + 1;
  }
  Json items = Json::array();
  size_t end = std::min(images.size(), start + static_cast<size_t>(limit));
  for (size_t i = start; i < end; ++i) items.push_back(render_image(images[i]));
  Json body = {{"images", items}, {"first", "/v2/images"}, {"schema", "/v2/schemas/images"}};
  if (end < images.size() && end > start) {
    std::string next = "/v2/images?";
    for (const auto& [k, v] : params) {
      if (k == "marker") continue;
      next += url_encode(k, ":,") + "=" + url_encode(v, ":,") + "&";
    }
    next += "marker=" + images[end - 1].id;
    body["next"] = next;
  }
  return json_response(200, body);
}

// ---- update (JSON patch) --------------------------------------------------------------------

Status ImageService::Impl::apply_patch_op(const Call& c, Image& im, const Json& op) {
  if (!op.is_object()) return bad_request("Each patch operation must be a JSON object.");
  std::string kind, path;
  if (auto op_it = op.find("op"); op_it != op.end()) {
    // application/openstack-images-v2.1-json-patch (RFC 6902): {"op", "path", "value"}.
    if (!op_it->is_string()) return bad_request("Unable to find 'op' in JSON Schema change");
    kind = op_it->get<std::string>();
    if (kind != "add" && kind != "replace" && kind != "remove") {
      return bad_request("Invalid operation: `" + sanitize_utf8(kind) + "`.");
    }
    auto path_it = op.find("path");
    if (path_it == op.end() || !path_it->is_string()) {
      return bad_request("Unable to find 'path' in JSON Schema change");
    }
    path = path_it->get<std::string>();
  } else {
    // The older application/openstack-images-v2.0-json-patch, which Glance still accepts and
    // Tempest sends: the operation is the key, its value the path ({"replace": "/name", ...}).
    int found = 0;
    for (const char* name : {"add", "replace", "remove"}) {
      auto it = op.find(name);
      if (it == op.end()) continue;
      ++found;
      if (!it->is_string()) return bad_request("Unable to find 'path' in JSON Schema change");
      kind = name;
      path = it->get<std::string>();
    }
    if (found != 1) return bad_request("Unable to find 'op' in JSON Schema change");
  }
  if (path.size() < 2 || path[0] != '/') {
    return bad_request("Invalid JSON pointer for this resource: '" + sanitize_utf8(path) + "'");
  }
  std::string name;
  for (size_t i = 1; i < path.size(); ++i) {
    char ch = path[i];
    if (ch == '/') return bad_request("Nested paths are not allowed");
    if (ch == '~') {
      if (i + 1 < path.size() && (path[i + 1] == '0' || path[i + 1] == '1')) {
        name.push_back(path[i + 1] == '0' ? '~' : '/');
        ++i;
        continue;
      }
      return bad_request("Invalid JSON pointer for this resource: '" + sanitize_utf8(path) + "'");
    }
    name.push_back(ch);
  }
  bool has_value = op.contains("value");
  if (kind != "remove" && !has_value) {
    return bad_request("Operation \"" + kind + "\" requires a member named \"value\".");
  }
  CONCORD_RETURN_IF_ERROR(check_property_name(name));
  if (kWritableCore.contains(name)) {
    if (kind == "remove") {
      return forbidden("Property " + name + " may not be removed.");
    }
    return set_core(c, im, name, op["value"]);
  }
  auto existing = im.properties.find(name);
  if (kind == "remove") {
    if (existing == im.properties.end()) {
      return conflict("Property " + sanitize_utf8(name) + " does not exist.");
    }
    im.properties.erase(existing);
    return ok();
  }
  if (kind == "replace" && existing == im.properties.end()) {
    return conflict("Property " + sanitize_utf8(name) + " does not exist.");
  }
  const Json& value = op["value"];
  if (!value.is_string()) {
    return bad_request("Invalid type for extra property '" + sanitize_utf8(name) +
                       "': expected a string.");
  }
  im.properties[name] = value.get<std::string>();
  if (im.properties.size() > kMaxProperties) {
    return fail(Code::kResourceExhausted, "Maximum number of image properties exceeded.");
  }
  return ok();
}

Result<Response> ImageService::Impl::update_image_route(Call& c) {
  std::string type = media_type(c.req.header("content-type"));
  if (type != "application/openstack-images-v2.1-json-patch" &&
      type != "application/openstack-images-v2.0-json-patch") {
    Response r = glance_error(415, "Unsupported Content-Type");
    r.set_header("accept-patch",
                 "application/openstack-images-v2.0-json-patch, "
                 "application/openstack-images-v2.1-json-patch");
    return r;
  }
  auto body = parse_json(c.req.body);
  if (!body) return bad_request("Malformed JSON in request body.");
  if (!body->is_array()) {
    return bad_request("Request body must be a JSON array of operation objects.");
  }
  Image im;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(im, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    for (const Json& op : *body) CONCORD_RETURN_IF_ERROR(apply_patch_op(c, im, op));
    im.updated_at = now_text();
    return update_image(tx, im);
  }));
  return json_response(200, render_image(im));
}

// ---- delete ---------------------------------------------------------------------------------

Result<Response> ImageService::Impl::delete_image(Call& c) {
  std::lock_guard lock(blob_mu_);
  std::optional<std::string> unreferenced;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    unreferenced.reset();
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    if (im.is_protected) {
      return forbidden("Image " + im.id + " is protected and cannot be deleted.");
    }
    CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM image_members WHERE image_id = ?", {im.id}));
    CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM image_images WHERE id = ?", {im.id}));
    CONCORD_RETURN_IF_ERROR(tx.record_change({.kind = std::string(kChangeKind),
                                              .id = im.id,
                                              .project_id = im.owner,
                                              .op = "delete",
                                              .revision = 0}));
    if (im.sha256) {
      CONCORD_RETURN_IF_ERROR(
          tx.exec("UPDATE image_blobs SET refs = refs - 1 WHERE sha256 = ?", {*im.sha256}));
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT refs FROM image_blobs WHERE sha256 = ?", {*im.sha256}));
      if (rows.empty() || rows.front().integer(0) <= 0) {
        CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM image_blobs WHERE sha256 = ?", {*im.sha256}));
        unreferenced = *im.sha256;
      }
    }
    if (im.activated_us && im.size) {
      SystemTime now = clock_.now();
      SystemTime start{std::chrono::microseconds(*im.activated_us)};
      usage::UsageEvent e{.event_id = "image:" + im.id + ":deleted",
                          .project_id = im.owner,
                          .resource_id = im.id,
                          .resource_type = "image",
                          .kind = "image.storage",
                          .quantity = std::to_string(*im.size),
                          .unit = "B",
                          .start = std::min(start, now),
                          .end = now};
      CONCORD_RETURN_IF_ERROR(usage::append(tx, e));
    }
    return ok();
  }));
  if (unreferenced) {
    if (auto st = blobs_->remove(*unreferenced); !st) {
      // The image is gone; the file is garbage that the next start-up gc() removes.
      logger("image")->warn("could not remove blob {}: {}", *unreferenced, st.error().message());
    }
  }
  return Response::empty(204);
}

// ---- data -----------------------------------------------------------------------------------

void ImageService::Impl::restore_queued(std::string_view id) {
  auto st = store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto im, load_image(tx, id));
    if (!im || im->status != "saving") return ok();
    im->status = "queued";
    im->updated_at = now_text();
    return update_image(tx, *im);
  });
  if (!st) {
    logger("image")->error("could not put image {} back to queued: {}", id, st.error().message());
  }
}

Result<Response> ImageService::Impl::upload(Call& c) {
  std::string type = media_type(c.req.header("content-type"));
  if (type != "application/octet-stream") {
    return glance_error(415,
                        "Unsupported Content-Type; image data must be sent as "
                        "application/octet-stream.");
  }
  Image im;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(im, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    if (im.status != "queued") {
      return conflict("Image status transition from " + im.status + " to saving is not allowed");
    }
    if (!im.disk_format || !im.container_format) {
      return bad_request(
          "Properties disk_format, container_format must be set prior to "
          "saving data.");
    }
    im.status = "saving";
    im.updated_at = now_text();
    return update_image(tx, im);
  }));
  // From here on, any failure puts the image back to queued (Glance's behaviour for failed
  // uploads), so the client can simply retry.
  auto failed = [&](Error e) -> Result<Response> {
    restore_queued(im.id);
    return fail(std::move(e));
  };
  // A spooled body is moved into the blob store rather than copied.
  auto writer = c.req.body_file.empty() ? blobs_->begin_write(options_.max_image_bytes)
                                        : blobs_->adopt(c.req.body_file, options_.max_image_bytes);
  Status wrote = ok();
  if (!writer) {
    if (writer.error().code() != Code::kResourceExhausted) return failed(writer.error());
    wrote = fail(writer.error());
  } else if (c.req.body_file.empty()) {
    wrote = (*writer)->write(c.req.body);
  }
  if (!wrote) {
    if (wrote.error().code() == Code::kResourceExhausted) {
      return failed(Error(Code::kResourceExhausted,
                          "Image exceeds the storage quota: the upload is larger than the maximum "
                          "of " +
                              std::to_string(options_.max_image_bytes) + " bytes."));
    }
    return failed(wrote.error());
  }
  auto report = verify_format((*writer)->temp_path(), (*writer)->size(), *im.disk_format,
                              *im.container_format, qemu_);
  if (!report) return failed(report.error());

  std::lock_guard lock(blob_mu_);
  auto info = (*writer)->commit();
  if (!info) return failed(info.error());
  bool gone = false;
  auto activated = store_.write([&](store::Tx& tx) -> Status {
    gone = false;
    CONCORD_ASSIGN_OR_RETURN(auto cur, load_image(tx, im.id));
    if (!cur || cur->status != "saving") {
      gone = true;
      return ok();
    }
    SystemTime now = clock_.now();
    cur->status = "active";
    cur->size = static_cast<int64_t>(info->size);
    cur->virtual_size = report->virtual_size;
    cur->checksum = info->md5;
    cur->os_hash_algo = "sha512";
    cur->os_hash_value = info->sha512;
    cur->sha256 = info->sha256;
    cur->activated_us = to_us(now);
    cur->updated_at = glance_time(now);
    CONCORD_RETURN_IF_ERROR(update_image(tx, *cur));
    CONCORD_RETURN_IF_ERROR(tx.exec(
        "INSERT INTO image_blobs (sha256, refs) VALUES (?, 1) ON CONFLICT (sha256) DO UPDATE SET "
        "refs = image_blobs.refs + 1",
        {info->sha256}));
    usage::UsageEvent e{.event_id = "image:" + cur->id + ":active",
                        .project_id = cur->owner,
                        .resource_id = cur->id,
                        .resource_type = "image",
                        .kind = "image.storage",
                        .quantity = std::to_string(info->size),
                        .unit = "B",
                        .start = now,
                        .end = now};
    CONCORD_RETURN_IF_ERROR(usage::append(tx, e));
    return ok();
  });
  auto drop_if_unreferenced = [&] {
    bool referenced = false;
    auto st = store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT refs FROM image_blobs WHERE sha256 = ?", {info->sha256}));
      referenced = !rows.empty();
      return ok();
    });
    if (st && !referenced) (void)blobs_->remove(info->sha256);
  };
  if (!activated) {
    drop_if_unreferenced();
    return failed(activated.error());
  }
  if (gone) {
    drop_if_unreferenced();
    return glance_error(410, "Image " + im.id +
                                 " could not be found after upload. The image may have been "
                                 "deleted during the upload.");
  }
  return Response::empty(204);
}

Result<Response> ImageService::Impl::download(Call& c) {
  Image im;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(im, load_visible(tx, c, c.param(0)));
    return ok();
  }));
  if (im.status == "deactivated" && !c.admin()) {
    return forbidden(
        "The requested image has been deactivated. Image data download is "
        "forbidden.");
  }
  if ((im.status != "active" && im.status != "deactivated") || !im.sha256) {
    return Response::empty(204);
  }
  std::string path = blobs_->path_of(*im.sha256);
  if (!blobs_->contains(*im.sha256)) {
    return fail(Code::kInternal, "data of image " + im.id + " is missing from the blob store");
  }
  Response r;
  r.status = 200;
  r.set_header("content-type", "application/octet-stream");
  if (im.checksum) r.set_header("content-md5", *im.checksum);
  r.body_file = path;
  return r;
}

// ---- actions, tags --------------------------------------------------------------------------

Result<Response> ImageService::Impl::set_active(Call& c, bool active) {
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    std::string want = active ? "active" : "deactivated";
    if (im.status == want) return ok();
    if (im.status != "active" && im.status != "deactivated") {
      return forbidden(std::string("Not allowed to ") + (active ? "reactivate" : "deactivate") +
                       " image in status '" + im.status + "'");
    }
    im.status = want;
    im.updated_at = now_text();
    return update_image(tx, im);
  }));
  return Response::empty(204);
}

Result<Response> ImageService::Impl::deactivate(Call& c) {
  return set_active(c, false);
}
Result<Response> ImageService::Impl::reactivate(Call& c) {
  return set_active(c, true);
}

Result<Response> ImageService::Impl::add_tag(Call& c) {
  std::string tag(c.param(1));
  if (tag.size() > 255) return bad_request("Tags must be 1 to 255 characters long.");
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    if (std::find(im.tags.begin(), im.tags.end(), tag) != im.tags.end()) return ok();
    if (im.tags.size() >= kMaxTags) {
      return fail(Code::kResourceExhausted,
                  "Maximum number of tags exceeded (" + std::to_string(kMaxTags) + ").");
    }
    im.tags.push_back(tag);
    im.updated_at = now_text();
    return update_image(tx, im);
  }));
  return Response::empty(204);
}

Result<Response> ImageService::Impl::delete_tag(Call& c) {
  std::string tag(c.param(1));
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    auto it = std::find(im.tags.begin(), im.tags.end(), tag);
    if (it == im.tags.end()) {
      return fail(Code::kNotFound, "Tag " + sanitize_utf8(tag) + " not found.");
    }
    im.tags.erase(it);
    im.updated_at = now_text();
    return update_image(tx, im);
  }));
  return Response::empty(204);
}

// ---- members --------------------------------------------------------------------------------

Result<Response> ImageService::Impl::list_members(Call& c) {
  std::vector<Member> members;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    if (im.visibility != "shared") {
      return forbidden("Only shared images have members.");
    }
    CONCORD_ASSIGN_OR_RETURN(members, load_members(tx, im.id));
    if (!c.admin() && im.owner != c.project()) {
      // A member sees its own membership only.
      std::erase_if(members, [&](const Member& m) { return m.member_id != c.project(); });
    }
    return ok();
  }));
  Json items = Json::array();
  for (const Member& m : members) items.push_back(render_member(m));
  return json_response(200, {{"members", items}, {"schema", "/v2/schemas/members"}});
}

Result<Response> ImageService::Impl::create_member(Call& c) {
  auto body = parse_json(c.req.body);
  if (!body) return bad_request("Malformed JSON in request body.");
  if (!body->is_object() || !body->contains("member") || !(*body)["member"].is_string()) {
    return bad_request("Member to be added not specified");
  }
  std::string member_id = (*body)["member"].get<std::string>();
  if (member_id.empty() || member_id.size() > 255) {
    return bad_request("Member id must be 1 to 255 characters long.");
  }
  Member m;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    if (im.visibility != "shared") {
      return forbidden("Only shared images have members.");
    }
    CONCORD_ASSIGN_OR_RETURN(auto existing, load_member(tx, im.id, member_id));
    if (existing) {
      return conflict("Member " + sanitize_utf8(member_id) + " already exists on image " + im.id +
                      ".");
    }
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows count,
        tx.query("SELECT COUNT(*) FROM image_members WHERE image_id = ?", {im.id}));
    if (!count.empty() && count.front().integer(0) >= static_cast<int64_t>(kMaxMembers)) {
      return fail(Code::kResourceExhausted, "Maximum number of image members exceeded.");
    }
    m = {im.id, member_id, "pending", now_text(), now_text()};
    CONCORD_RETURN_IF_ERROR(tx.exec(
        "INSERT INTO image_members (image_id, member_id, status, created_at, updated_at) VALUES "
        "(?, ?, ?, ?, ?)",
        {m.image_id, m.member_id, m.status, m.created_at, m.updated_at}));
    return tx.record_change({.kind = "image.member",
                             .id = im.id + "/" + member_id,
                             .project_id = im.owner,
                             .op = "create",
                             .revision = 1});
  }));
  return json_response(200, render_member(m));
}

Result<Response> ImageService::Impl::show_member(Call& c) {
  std::optional<Member> m;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_ASSIGN_OR_RETURN(m, load_member(tx, im.id, c.param(1)));
    if (!c.admin() && im.owner != c.project() && c.param(1) != c.project()) m.reset();
    return ok();
  }));
  if (!m) {
    return fail(Code::kNotFound, "Member " + sanitize_utf8(c.param(1)) + " not found on image " +
                                     sanitize_utf8(c.param(0)) + ".");
  }
  return json_response(200, render_member(*m));
}

Result<Response> ImageService::Impl::update_member(Call& c) {
  auto body = parse_json(c.req.body);
  if (!body) return bad_request("Malformed JSON in request body.");
  if (!body->is_object() || !body->contains("status") || !(*body)["status"].is_string()) {
    return bad_request("Status not specified");
  }
  std::string status = (*body)["status"].get<std::string>();
  if (!kMemberStatuses.contains(status)) {
    return bad_request("Invalid status: " + sanitize_utf8(status));
  }
  Member m;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_ASSIGN_OR_RETURN(auto found, load_member(tx, im.id, c.param(1)));
    bool is_member = c.param(1) == c.project();
    if (!found || (!is_member && !c.admin() && im.owner != c.project())) {
      return fail(Code::kNotFound,
                  "Member " + sanitize_utf8(c.param(1)) + " not found on image " + im.id + ".");
    }
    // Only the consumer decides whether it accepts an image (Glance's default policy).
    if (!is_member) {
      return forbidden("You are not permitted to modify 'status' on this image member.");
    }
    m = *found;
    m.status = status;
    m.updated_at = now_text();
    CONCORD_RETURN_IF_ERROR(tx.exec(
        "UPDATE image_members SET status = ?, updated_at = ? WHERE image_id = ? AND member_id = ?",
        {m.status, m.updated_at, m.image_id, m.member_id}));
    return tx.record_change({.kind = "image.member",
                             .id = im.id + "/" + m.member_id,
                             .project_id = im.owner,
                             .op = "update",
                             .revision = 1});
  }));
  return json_response(200, render_member(m));
}

Result<Response> ImageService::Impl::delete_member(Call& c) {
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(Image im, load_visible(tx, c, c.param(0)));
    CONCORD_ASSIGN_OR_RETURN(auto found, load_member(tx, im.id, c.param(1)));
    bool owner_side = c.admin() || im.owner == c.project();
    if (!found || (!owner_side && c.param(1) != c.project())) {
      return fail(Code::kNotFound,
                  "Member " + sanitize_utf8(c.param(1)) + " not found on image " + im.id + ".");
    }
    if (!owner_side) return forbidden("You are not permitted to delete this image member.");
    CONCORD_RETURN_IF_ERROR(check_owner(c, im));
    CONCORD_RETURN_IF_ERROR(
        tx.exec("DELETE FROM image_members WHERE image_id = ? AND member_id = ?",
                {im.id, std::string(c.param(1))}));
    return tx.record_change({.kind = "image.member",
                             .id = im.id + "/" + std::string(c.param(1)),
                             .project_id = im.owner,
                             .op = "delete",
                             .revision = 0});
  }));
  return Response::empty(204);
}

// ---- lookup for compute ---------------------------------------------------------------------

Result<ImageRecord> ImageService::Impl::get_for_project(std::string_view id,
                                                        std::string_view project,
                                                        bool is_admin) const {
  if (!is_uuid(id)) return image_not_found(id);
  std::optional<Image> im;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(im, load_image(tx, id));
    if (!im || is_admin || im->visibility == "public" || im->visibility == "community" ||
        (!project.empty() && im->owner == project)) {
      return ok();
    }
    bool accepted = false;
    if (im->visibility == "shared" && !project.empty()) {
      CONCORD_ASSIGN_OR_RETURN(auto m, load_member(tx, im->id, project));
      accepted = m && m->status == "accepted";
    }
    if (!accepted) im.reset();
    return ok();
  }));
  if (!im) return image_not_found(id);
  return static_cast<ImageRecord>(*im);
}

// ---- start-up -------------------------------------------------------------------------------

Status ImageService::Impl::recover() {
  std::set<std::string> referenced;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    referenced.clear();
    // An upload interrupted by a crash left its image in `saving`; its temp file is already
    // gone (BlobStore::create), so the image has no data and may be uploaded again.
    CONCORD_ASSIGN_OR_RETURN(auto saving, query_images(tx, "status = 'saving'", {}));
    for (Image& im : saving) {
      im.status = "queued";
      im.updated_at = now_text();
      CONCORD_RETURN_IF_ERROR(update_image(tx, im));
      logger("image")->warn("image {} was left saving by an interrupted upload; now queued", im.id);
    }
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT sha256 FROM image_blobs"));
    for (const auto& r : rows) referenced.insert(r.text(0));
    return ok();
  }));
  std::lock_guard lock(blob_mu_);
  CONCORD_ASSIGN_OR_RETURN(size_t removed, blobs_->gc(referenced));
  if (removed > 0) logger("image")->info("removed {} unreferenced image blobs", removed);
  return ok();
}

void ImageService::Impl::build_routes() {
  using M = Method;
  add(M::kGet, "/", "public", &Impl::versions);
  add(M::kGet, "/versions", "public", &Impl::versions);
  add(M::kGet, "/v2/schemas/image", "authenticated", &Impl::schema_image);
  add(M::kGet, "/v2/schemas/images", "authenticated", &Impl::schema_images);
  add(M::kGet, "/v2/schemas/member", "authenticated", &Impl::schema_member);
  add(M::kGet, "/v2/schemas/members", "authenticated", &Impl::schema_members);
  add(M::kPost, "/v2/images", "project_member", &Impl::create_image);
  add(M::kGet, "/v2/images", "authenticated", &Impl::list_images);
  add(M::kGet, "/v2/images/{image_id}", "authenticated", &Impl::show_image);
  add(M::kDelete, "/v2/images", "authenticated", &Impl::delete_collection);
  add(M::kPatch, "/v2/images/{image_id}", "authenticated", &Impl::update_image_route);
  add(M::kDelete, "/v2/images/{image_id}", "authenticated", &Impl::delete_image);
  add(M::kPut, "/v2/images/{image_id}/file", "authenticated", &Impl::upload);
  add(M::kGet, "/v2/images/{image_id}/file", "authenticated", &Impl::download);
  // Glance's default since its secure RBAC rules: admin, or a member of the owning project.
  add(M::kPost, "/v2/images/{image_id}/actions/deactivate", "project_member", &Impl::deactivate);
  add(M::kPost, "/v2/images/{image_id}/actions/reactivate", "project_member", &Impl::reactivate);
  add(M::kPut, "/v2/images/{image_id}/tags/{tag}", "authenticated", &Impl::add_tag);
  add(M::kDelete, "/v2/images/{image_id}/tags/{tag}", "authenticated", &Impl::delete_tag);
  add(M::kGet, "/v2/images/{image_id}/members", "authenticated", &Impl::list_members);
  add(M::kPost, "/v2/images/{image_id}/members", "authenticated", &Impl::create_member);
  add(M::kGet, "/v2/images/{image_id}/members/{member_id}", "authenticated", &Impl::show_member);
  add(M::kPut, "/v2/images/{image_id}/members/{member_id}", "authenticated", &Impl::update_member);
  add(M::kDelete, "/v2/images/{image_id}/members/{member_id}", "authenticated",
      &Impl::delete_member);
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<ImageService>> ImageService::create(store::Store& store, const Clock& clock,
                                                           identity::IdentityService& identity,
                                                           ImageOptions options) {
  if (options.max_image_bytes == 0) {
    return fail(Code::kInvalidArgument, "image max_image_bytes must be positive");
  }
  CONCORD_ASSIGN_OR_RETURN(auto blobs, blob::BlobStore::create(options.blob_dir));
  auto impl = std::make_unique<Impl>(store, clock, identity, std::move(options), std::move(blobs));
  CONCORD_RETURN_IF_ERROR(impl->recover());
  impl->build_routes();
  return std::unique_ptr<ImageService>(new ImageService(std::move(impl)));
}

ImageService::ImageService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ImageService::~ImageService() = default;

std::shared_ptr<http::RouteTable> ImageService::routes() const {
  return impl_->table_;
}
const std::vector<RouteInfo>& ImageService::route_infos() const {
  return impl_->infos_;
}
Result<ImageRecord> ImageService::get_for_project(std::string_view image_id,
                                                  std::string_view project_id,
                                                  bool is_admin) const {
  return impl_->get_for_project(image_id, project_id, is_admin);
}
std::string ImageService::blob_path(const ImageRecord& image) const {
  return impl_->blob_path(image);
}

http::StreamedBodyHook ImageService::streamed_body_hook(std::string mount_prefix) const {
  std::string dir = impl_->spool_dir();
  uint64_t limit = impl_->max_image_bytes();
  return [prefix = std::move(mount_prefix), dir, limit](
             http::Method method, std::string_view raw_path) -> std::optional<http::StreamedBody> {
    // <prefix>/v2/images/<one segment>/file, with an optional trailing slash.
    if (method != http::Method::kPut || !raw_path.starts_with(prefix)) return std::nullopt;
    std::string_view rest = raw_path.substr(prefix.size());
    constexpr std::string_view kHead = "/v2/images/";
    if (!rest.starts_with(kHead)) return std::nullopt;
    rest.remove_prefix(kHead.size());
    if (rest.ends_with('/')) rest.remove_suffix(1);
    size_t slash = rest.find('/');
    if (slash == 0 || slash == std::string_view::npos || rest.substr(slash) != "/file") {
      return std::nullopt;
    }
    return http::StreamedBody{dir, limit};
  };
}

}  // namespace concord::image

#include "inference/registry/registry.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "base/time_format.h"
#include "blob/blob_store.h"
#include "inference/api/harness.h"
#include "usage/usage_ledger.h"

namespace concord::inference::registry {
namespace {

using http::Method;
using http::Request;
using http::Response;

constexpr std::string_view kModelKind = "inference.model";
constexpr std::string_view kVersionKind = "inference.model_version";
constexpr size_t kMaxNameBytes = 255;
constexpr size_t kMaxDescriptionBytes = 4096;
constexpr int64_t kMaxVersion = 2147483647;

int http_status(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kAborted: return 409;
    case Code::kFailedPrecondition: return 409;
    case Code::kResourceExhausted: return 413;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

std::string media_type(std::string_view content_type) {
  std::string t(content_type.substr(0, content_type.find(';')));
  t.erase(0, t.find_first_not_of(" \t"));
  t.erase(t.find_last_not_of(" \t") + 1);
  for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return t;
}

int64_t to_us(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::string not_found_model(std::string_view id) {
  return "model " + sanitize_utf8(id) + " not found";
}

// OIP version names are strings; Concord's are the positive integers 1..2^31-1 in plain decimal.
Result<int64_t> parse_version(std::string_view text) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  bool plain = !text.empty() && text.size() <= 10 && text[0] != '0' &&
               std::all_of(text.begin(), text.end(),
                           [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (!plain || ec != std::errc() || ptr != text.data() + text.size() || v < 1 || v > kMaxVersion) {
    return fail(Code::kInvalidArgument, "version must be a positive integer from 1 to " +
                                            std::to_string(kMaxVersion) + ", not '" +
                                            sanitize_utf8(text) + "'");
  }
  return v;
}

struct ModelRow {
  std::string id;
  std::string project_id;
  std::string name;
  std::string description;
  std::optional<std::string> publisher;
  std::string created_at;
  std::string updated_at;
  int64_t revision = 0;
};

struct VersionRow {
  std::string model_id;
  int64_t version = 0;
  std::string project_id;
  std::string sha256;
  int64_t size = 0;
  std::string format;
  std::string runtime;
  std::string status;
  std::string metadata;  // JSON: {"inputs": [...], "outputs": [...]}
  std::string created_at;
  int64_t created_us = 0;
};

constexpr std::string_view kModelColumns =
    "id, project_id, name, description, publisher, created_at, updated_at, revision";
constexpr std::string_view kVersionColumns =
    "model_id, version, project_id, blob_sha256, size, format, runtime, status, metadata, "
    "created_at, created_us";

ModelRow model_from(const store::Row& r) {
  return {r.text(0),     r.text(1), r.text(2), r.text(3),
          r.opt_text(4), r.text(5), r.text(6), r.integer(7)};
}
VersionRow version_from(const store::Row& r) {
  return {r.text(0), r.integer(1), r.text(2), r.text(3), r.integer(4), r.text(5),
          r.text(6), r.text(7),    r.text(8), r.text(9), r.integer(10)};
}

Json tensors_json(const std::vector<TensorInfo>& tensors) {
  Json out = Json::array();
  for (const TensorInfo& t : tensors) {
    out.push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
  }
  return out;
}

Json version_json(const VersionRow& v) {
  Json meta = Json::object();
  if (auto parsed = parse_json(v.metadata); parsed && parsed->is_object()) meta = *parsed;
  return {{"model_id", v.model_id},
          {"version", v.version},
          {"sha256", v.sha256},
          {"size", v.size},
          {"format", v.format},
          {"runtime", v.runtime},
          {"status", v.status},
          {"inputs", meta.value("inputs", Json::array())},
          {"outputs", meta.value("outputs", Json::array())},
          {"created_at", v.created_at}};
}

Json model_json(const ModelRow& m, const std::vector<VersionRow>& versions) {
  Json vs = Json::array();
  for (const VersionRow& v : versions) vs.push_back(version_json(v));
  return {{"id", m.id},
          {"name", m.name},
          {"description", m.description},
          {"project_id", m.project_id},
          {"publisher", m.publisher ? Json(*m.publisher) : Json(nullptr)},
          {"created_at", m.created_at},
          {"updated_at", m.updated_at},
          {"versions", std::move(vs)}};
}

Response json_response(int status, const Json& body) {
  return Response::json(status, dump_json(body));
}

// Name and description as a client may send them: strings within bounds, no NUL.
Result<std::string> text_field(const Json& body, std::string_view field, size_t max_bytes,
                               bool allow_empty) {
  const Json& v = body[std::string(field)];
  if (!v.is_string()) {
    return fail(Code::kInvalidArgument, "'" + std::string(field) + "' must be a string");
  }
  std::string s = v.get<std::string>();
  if (!allow_empty && s.empty()) {
    return fail(Code::kInvalidArgument, "'" + std::string(field) + "' must not be empty");
  }
  if (s.size() > max_bytes) {
    return fail(Code::kInvalidArgument, "'" + std::string(field) + "' is longer than " +
                                            std::to_string(max_bytes) + " bytes");
  }
  if (s.find('\0') != std::string::npos) {
    return fail(Code::kInvalidArgument,
                "'" + std::string(field) + "' must not contain NUL characters");
  }
  return s;
}

}  // namespace

http::Response registry_error(int status, std::string_view message) {
  Json body = {{"error", {{"code", status}, {"message", sanitize_utf8(message)}}}};
  return Response::json(status, dump_json(body));
}

std::vector<store::Migration> migrations() {
  return {{"inference_registry", 1, "models and model versions",
           "CREATE TABLE inference_models ("
           " id TEXT PRIMARY KEY,"
           " project_id TEXT NOT NULL,"
           " name TEXT NOT NULL,"
           " description TEXT NOT NULL,"
           " publisher TEXT,"
           " created_at TEXT NOT NULL,"
           " updated_at TEXT NOT NULL,"
           " created_us BIGINT NOT NULL,"
           " revision BIGINT NOT NULL,"
           " UNIQUE (project_id, name));"
           "CREATE TABLE inference_model_versions ("
           " model_id TEXT NOT NULL,"
           " version BIGINT NOT NULL,"
           " project_id TEXT NOT NULL,"
           " blob_sha256 TEXT NOT NULL,"
           " size BIGINT NOT NULL,"
           " format TEXT NOT NULL,"
           " runtime TEXT NOT NULL,"
           " status TEXT NOT NULL,"
           " metadata TEXT NOT NULL,"
           " created_at TEXT NOT NULL,"
           " created_us BIGINT NOT NULL,"
           " PRIMARY KEY (model_id, version));"
           "CREATE INDEX inference_model_versions_sha ON inference_model_versions(blob_sha256);"
           "CREATE INDEX inference_model_versions_project ON "
           "inference_model_versions(project_id)",
           ""}};
}

// ---------------------------------------------------------------------------------------------

class ModelRegistry::Impl {
 public:
  Impl(store::Store& store, const Clock& clock, identity::IdentityService& identity,
       RegistryOptions options, std::unique_ptr<blob::BlobStore> blobs)
      : store_(store),
        clock_(clock),
        identity_(identity),
        options_(std::move(options)),
        blobs_(std::move(blobs)),
        checker_(options_.load ? options_.load : runtime_loader(options_.runtime),
                 options_.check_timeout, options_.max_concurrent_checks) {}

  Status recover();
  void build_routes();

  std::shared_ptr<http::RouteTable> table_ = std::make_shared<http::RouteTable>();
  std::string spool_dir() const { return blobs_->root() + "/tmp"; }
  uint64_t max_model_bytes() const { return options_.max_model_bytes; }
  Result<std::string> version_file(std::string_view model_id, int64_t version);
  InUseCheck in_use_;

 private:
  struct Call {
    Request& req;
    identity::AuthContext caller;
    std::string_view param(size_t i) const {
      return i < req.params.size() ? std::string_view(req.params[i]) : std::string_view();
    }
    bool admin() const { return caller.is_admin(); }
  };
  using Handler = Result<Response> (Impl::*)(Call&);

  void add(Method method, std::string pattern, std::string rule, Handler handler);
  Response run(Request& req, const std::string& rule, Handler handler);

  // The model if the caller may see it (own project, or admin); kNotFound otherwise.
  Result<ModelRow> load_visible(store::Tx& tx, const Call& c, std::string_view id) const;
  Status authorize_on(const Call& c, std::string_view rule, const std::string& project) const;
  static Result<std::vector<VersionRow>> load_versions(store::Tx& tx, std::string_view model_id);
  static Result<std::optional<VersionRow>> load_version(store::Tx& tx, std::string_view model_id,
                                                        int64_t version);
  Result<Json> json_body(const Call& c) const;
  // Deletes version rows (with their usage events) inside tx; returns the blobs they named.
  Result<std::set<std::string>> delete_versions(store::Tx& tx, const std::vector<VersionRow>& vs);
  // kFailedPrecondition (409) when in_use_ names a user of the model or version.
  Status check_unused(store::Tx& tx, const ModelRow& m, std::optional<int64_t> version) const;
  // Removes the blobs no version row names any longer.
  void drop_unreferenced(const std::set<std::string>& shas);

  Result<Response> create_model(Call& c);
  Result<Response> list_models(Call& c);
  Result<Response> show_model(Call& c);
  Result<Response> update_model(Call& c);
  Result<Response> delete_model(Call& c);
  Result<Response> upload_version(Call& c);
  Result<Response> list_versions(Call& c);
  Result<Response> show_version(Call& c);
  Result<Response> delete_version(Call& c);
  Result<Response> download_version(Call& c);

  store::Store& store_;
  const Clock& clock_;
  identity::IdentityService& identity_;
  RegistryOptions options_;
  std::unique_ptr<blob::BlobStore> blobs_;
  ModelChecker checker_;
  // Serialises "commit blob + insert row" against "delete rows + remove unreferenced blob", so
  // a blob being adopted by a new version is never removed underneath it (in this process).
  std::mutex blob_mu_;
};

void ModelRegistry::Impl::add(Method method, std::string pattern, std::string rule,
                              Handler handler) {
  std::string name = "inference:" + std::string(http::method_name(method)) + " " + pattern;
  table_->add(
      method, std::move(pattern),
      [this, rule = std::move(rule), handler](Request& req) { return run(req, rule, handler); },
      std::move(name));
}

namespace {

// The registry's error format and its words for denials on models.
const inference::api::Harness& registry_harness() {
  static const inference::api::Harness harness{
      registry_error, http_status,
      "the member role on the model's project is needed to change models",
      "the reader role on the model's project is needed to read models"};
  return harness;
}

}  // namespace

Response ModelRegistry::Impl::run(Request& req, const std::string& rule, Handler handler) {
  return inference::api::run_request(registry_harness(), identity_, req, rule,
                                     [&](identity::AuthContext caller) {
                                       Call call{req, std::move(caller)};
                                       return (this->*handler)(call);
                                     });
}

Status ModelRegistry::Impl::authorize_on(const Call& c, std::string_view rule,
                                         const std::string& project) const {
  return inference::api::authorize_on(registry_harness(), identity_, c.caller, rule, project);
}

Result<ModelRow> ModelRegistry::Impl::load_visible(store::Tx& tx, const Call& c,
                                                   std::string_view id) const {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT " + std::string(kModelColumns) +
                                                          " FROM inference_models WHERE id = ?",
                                                      {std::string(id)}));
  if (rows.empty()) return fail(Code::kNotFound, not_found_model(id));
  ModelRow m = model_from(rows.front());
  if (!c.admin() && m.project_id != c.caller.project_id) {
    return fail(Code::kNotFound, not_found_model(id));
  }
  return m;
}

Result<std::vector<VersionRow>> ModelRegistry::Impl::load_versions(store::Tx& tx,
                                                                   std::string_view model_id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT " + std::string(kVersionColumns) +
                                        " FROM inference_model_versions WHERE model_id = ? "
                                        "ORDER BY version",
                                    {std::string(model_id)}));
  std::vector<VersionRow> out;
  for (const store::Row& r : rows) out.push_back(version_from(r));
  return out;
}

Result<std::optional<VersionRow>> ModelRegistry::Impl::load_version(store::Tx& tx,
                                                                    std::string_view model_id,
                                                                    int64_t version) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT " + std::string(kVersionColumns) +
                                        " FROM inference_model_versions WHERE model_id = ? AND "
                                        "version = ?",
                                    {std::string(model_id), version}));
  if (rows.empty()) return std::optional<VersionRow>();
  return std::optional<VersionRow>(version_from(rows.front()));
}

Result<Json> ModelRegistry::Impl::json_body(const Call& c) const {
  std::string type = media_type(c.req.header("content-type"));
  if (!type.empty() && type != "application/json") {
    return fail(Code::kInvalidArgument,
                "the request body must be application/json, not '" + sanitize_utf8(type) + "'");
  }
  CONCORD_ASSIGN_OR_RETURN(Json body, parse_json(c.req.body));
  if (!body.is_object()) return fail(Code::kInvalidArgument, "the request body must be an object");
  return body;
}

Result<std::set<std::string>> ModelRegistry::Impl::delete_versions(
    store::Tx& tx, const std::vector<VersionRow>& vs) {
  std::set<std::string> shas;
  SystemTime now = clock_.now();
  for (const VersionRow& v : vs) {
    CONCORD_RETURN_IF_ERROR(
        tx.exec("DELETE FROM inference_model_versions WHERE model_id = ? AND version = ?",
                {v.model_id, v.version}));
    std::string resource = v.model_id + "/" + std::to_string(v.version);
    CONCORD_RETURN_IF_ERROR(tx.record_change({.kind = std::string(kVersionKind),
                                              .id = resource,
                                              .project_id = v.project_id,
                                              .op = "delete",
                                              .revision = 0}));
    SystemTime start{std::chrono::microseconds(v.created_us)};
    usage::UsageEvent e{.event_id = "inference.model_version:" + resource + ":deleted",
                        .project_id = v.project_id,
                        .resource_id = resource,
                        .resource_type = std::string(kVersionKind),
                        .kind = "inference.model_storage",
                        .quantity = std::to_string(v.size),
                        .unit = "B",
                        .start = std::min(start, now),
                        .end = now,
                        .publisher_id = "",
                        .region = options_.region};
    CONCORD_RETURN_IF_ERROR(usage::append(tx, e));
    shas.insert(v.sha256);
  }
  return shas;
}

Status ModelRegistry::Impl::check_unused(store::Tx& tx, const ModelRow& m,
                                         std::optional<int64_t> version) const {
  if (!in_use_) return ok();
  CONCORD_ASSIGN_OR_RETURN(std::optional<std::string> user, in_use_(tx, m.id, version));
  if (!user) return ok();
  std::string what =
      version ? "version " + std::to_string(*version) + " of model " + m.id : "model " + m.id;
  return fail(Code::kFailedPrecondition,
              what + " is used by endpoint " + *user + "; delete the endpoint first");
}

void ModelRegistry::Impl::drop_unreferenced(const std::set<std::string>& shas) {
  std::lock_guard lock(blob_mu_);
  for (const std::string& sha : shas) {
    bool referenced = true;
    auto st = store_.read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows rows,
          tx.query("SELECT 1 FROM inference_model_versions WHERE blob_sha256 = ? LIMIT 1", {sha}));
      referenced = !rows.empty();
      return ok();
    });
    if (!st) {
      // Left in place: the start-up gc removes it once no row names it.
      logger("inference")->warn("could not check blob {}: {}", sha, st.error().message());
      continue;
    }
    if (referenced) continue;
    if (auto removed = blobs_->remove(sha); !removed) {
      logger("inference")->warn("could not remove blob {}: {}", sha, removed.error().message());
    }
  }
}

// ---- models ---------------------------------------------------------------------------------

Result<Response> ModelRegistry::Impl::create_model(Call& c) {
  if (c.caller.project_id.empty()) {
    return fail(Code::kPermissionDenied, "a project-scoped token is needed to create a model");
  }
  CONCORD_ASSIGN_OR_RETURN(Json body, json_body(c));
  for (auto& [key, value] : body.items()) {
    if (key != "name" && key != "description") {
      return fail(Code::kInvalidArgument, "unknown field '" + key + "' (name, description)");
    }
  }
  if (!body.contains("name")) return fail(Code::kInvalidArgument, "'name' is required");
  CONCORD_ASSIGN_OR_RETURN(std::string name, text_field(body, "name", kMaxNameBytes, false));
  std::string description;
  if (body.contains("description")) {
    CONCORD_ASSIGN_OR_RETURN(description,
                             text_field(body, "description", kMaxDescriptionBytes, true));
  }
  SystemTime now = clock_.now();
  ModelRow m{.id = new_uuid(),
             .project_id = c.caller.project_id,
             .name = name,
             .description = description,
             .publisher = std::nullopt,
             .created_at = format_keystone_time(now),
             .updated_at = format_keystone_time(now),
             .revision = 1};
  bool taken = false;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec(
            "INSERT INTO inference_models (id, project_id, name, description, publisher, "
            "created_at, updated_at, created_us, revision) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, "
            "1) ON CONFLICT (project_id, name) DO NOTHING",
            {m.id, m.project_id, m.name, m.description, m.created_at, m.updated_at, to_us(now)}));
    taken = n == 0;
    if (taken) return ok();
    return tx.record_change({.kind = std::string(kModelKind),
                             .id = m.id,
                             .project_id = m.project_id,
                             .op = "create",
                             .revision = 1});
  }));
  if (taken) {
    return fail(Code::kAlreadyExists,
                "a model named '" + name + "' already exists in project " + m.project_id);
  }
  return json_response(201, {{"model", model_json(m, {})}});
}

Result<Response> ModelRegistry::Impl::list_models(Call& c) {
  bool all = false;
  if (auto flag = c.req.query_param("all_projects")) {
    std::string v = *flag;
    if (v == "1" || v == "true" || v == "True") {
      all = true;
    } else if (v != "0" && v != "false" && v != "False") {
      return fail(Code::kInvalidArgument, "all_projects must be 1 or 0");
    }
  }
  if (all && !c.admin()) {
    return fail(Code::kPermissionDenied, "only an administrator may list all projects' models");
  }
  Json models = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    models = Json::array();
    std::string where = all ? "" : " WHERE project_id = ?";
    std::vector<store::Value> params;
    if (!all) params.push_back(c.caller.project_id);
    CONCORD_ASSIGN_OR_RETURN(store::Rows mrows, tx.query("SELECT " + std::string(kModelColumns) +
                                                             " FROM inference_models" + where +
                                                             " ORDER BY created_us, id",
                                                         params));
    CONCORD_ASSIGN_OR_RETURN(store::Rows vrows, tx.query("SELECT " + std::string(kVersionColumns) +
                                                             " FROM inference_model_versions" +
                                                             where + " ORDER BY model_id, version",
                                                         params));
    std::map<std::string, std::vector<VersionRow>> by_model;
    for (const store::Row& r : vrows) {
      VersionRow v = version_from(r);
      by_model[v.model_id].push_back(std::move(v));
    }
    for (const store::Row& r : mrows) {
      ModelRow m = model_from(r);
      models.push_back(model_json(m, by_model[m.id]));
    }
    return ok();
  }));
  return json_response(200, {{"models", std::move(models)}});
}

Result<Response> ModelRegistry::Impl::show_model(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ModelRow m, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_reader", m.project_id));
    CONCORD_ASSIGN_OR_RETURN(auto versions, load_versions(tx, m.id));
    out = model_json(m, versions);
    return ok();
  }));
  return json_response(200, {{"model", std::move(out)}});
}

Result<Response> ModelRegistry::Impl::update_model(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, json_body(c));
  std::optional<std::string> name, description;
  for (auto& [key, value] : body.items()) {
    if (key != "name" && key != "description") {
      return fail(Code::kInvalidArgument,
                  "unknown or read-only field '" + key + "' (name, description may change)");
    }
  }
  if (body.contains("name")) {
    CONCORD_ASSIGN_OR_RETURN(name, text_field(body, "name", kMaxNameBytes, false));
  }
  if (body.contains("description")) {
    CONCORD_ASSIGN_OR_RETURN(description,
                             text_field(body, "description", kMaxDescriptionBytes, true));
  }
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ModelRow m, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_member", m.project_id));
    if (name && *name != m.name) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows clash,
          tx.query("SELECT id FROM inference_models WHERE project_id = ? AND name = ?",
                   {m.project_id, *name}));
      if (!clash.empty()) {
        return fail(Code::kAlreadyExists,
                    "a model named '" + *name + "' already exists in project " + m.project_id);
      }
      m.name = *name;
    }
    if (description) m.description = *description;
    m.updated_at = format_keystone_time(clock_.now());
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("UPDATE inference_models SET name = ?, description = ?, updated_at = ?, "
                           "revision = revision + 1 WHERE id = ? AND revision = ?",
                           {m.name, m.description, m.updated_at, m.id, m.revision}));
    if (n == 0) CONCORD_RETURN_IF_ERROR(store::check_revision(tx, "inference_models", m.id));
    m.revision += 1;
    CONCORD_RETURN_IF_ERROR(tx.record_change({.kind = std::string(kModelKind),
                                              .id = m.id,
                                              .project_id = m.project_id,
                                              .op = "update",
                                              .revision = m.revision}));
    CONCORD_ASSIGN_OR_RETURN(auto versions, load_versions(tx, m.id));
    out = model_json(m, versions);
    return ok();
  }));
  return json_response(200, {{"model", std::move(out)}});
}

Result<Response> ModelRegistry::Impl::delete_model(Call& c) {
  std::set<std::string> shas;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ModelRow m, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_member", m.project_id));
    CONCORD_RETURN_IF_ERROR(check_unused(tx, m, std::nullopt));
    CONCORD_ASSIGN_OR_RETURN(auto versions, load_versions(tx, m.id));
    CONCORD_ASSIGN_OR_RETURN(shas, delete_versions(tx, versions));
    CONCORD_RETURN_IF_ERROR(tx.exec("DELETE FROM inference_models WHERE id = ?", {m.id}));
    return tx.record_change({.kind = std::string(kModelKind),
                             .id = m.id,
                             .project_id = m.project_id,
                             .op = "delete",
                             .revision = 0});
  }));
  drop_unreferenced(shas);
  return Response::empty(204);
}

// ---- versions -------------------------------------------------------------------------------

Result<Response> ModelRegistry::Impl::upload_version(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(int64_t version, parse_version(c.param(1)));
  ModelRow model;
  bool exists = false;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(model, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_member", model.project_id));
    CONCORD_ASSIGN_OR_RETURN(auto v, load_version(tx, model.id, version));
    exists = v.has_value();
    return ok();
  }));
  auto conflict = [&] {
    return fail(Code::kAlreadyExists, "version " + std::to_string(version) + " of model " +
                                          model.id +
                                          " already exists; upload a new version number");
  };
  if (exists) return conflict();
  std::string type = media_type(c.req.header("content-type"));
  if (type != "application/octet-stream") {
    return registry_error(415,
                          "a model version's body must be application/octet-stream (the "
                          "ONNX file's bytes), not '" +
                              sanitize_utf8(type) + "'");
  }
  auto too_large = [&] {
    return fail(Code::kResourceExhausted, "the model is larger than the limit of " +
                                              std::to_string(options_.max_model_bytes) +
                                              " bytes (inference.max_model_mb)");
  };
  // A spooled body is moved into the blob store's temp folder, not copied.
  auto writer = c.req.body_file.empty() ? blobs_->begin_write(options_.max_model_bytes)
                                        : blobs_->adopt(c.req.body_file, options_.max_model_bytes);
  if (!writer) {
    if (writer.error().code() == Code::kResourceExhausted) return too_large();
    return fail(writer.error());
  }
  if (c.req.body_file.empty()) {
    if (auto wrote = (*writer)->write(c.req.body); !wrote) {
      if (wrote.error().code() == Code::kResourceExhausted) return too_large();
      return fail(wrote.error());
    }
  }
  if ((*writer)->size() == 0) {
    return fail(Code::kInvalidArgument,
                "model rejected: the body is empty; send the ONNX file's bytes");
  }
  std::string bytes;
  {
    std::ifstream in((*writer)->temp_path(), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      return fail(Code::kInternal,
                  "cannot read the uploaded model back from " + (*writer)->temp_path());
    }
  }
  if (bytes.size() != (*writer)->size()) {
    return fail(Code::kInternal, "the uploaded model's temp file changed size while read");
  }
  auto checked = checker_.check(std::move(bytes));
  if (!checked) {
    const Error& e = checked.error();
    if (e.code() == Code::kInvalidArgument || e.code() == Code::kFailedPrecondition) {
      return fail(Code::kInvalidArgument, "model rejected: " + e.message());
    }
    return fail(e);
  }
  Json metadata = {{"inputs", tensors_json(checked->inputs)},
                   {"outputs", tensors_json(checked->outputs)}};

  SystemTime now = clock_.now();
  VersionRow row{.model_id = model.id,
                 .version = version,
                 .project_id = model.project_id,
                 .sha256 = "",
                 .size = static_cast<int64_t>((*writer)->size()),
                 .format = "onnx",
                 .runtime = checked->runtime.empty() ? options_.runtime : checked->runtime,
                 .status = "ready",
                 .metadata = dump_json(metadata),
                 .created_at = format_keystone_time(now),
                 .created_us = to_us(now)};
  enum class Outcome { kStored, kModelGone, kVersionTaken } outcome = Outcome::kStored;
  Status stored = ok();
  {
    std::lock_guard lock(blob_mu_);
    // The blob first, the row last: a crash in between leaves an orphan blob only.
    CONCORD_ASSIGN_OR_RETURN(blob::BlobInfo info, (*writer)->commit());
    row.sha256 = info.sha256;
    stored = store_.write([&](store::Tx& tx) -> Status {
      outcome = Outcome::kStored;
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows still, tx.query("SELECT id FROM inference_models WHERE id = ?", {model.id}));
      if (still.empty()) {
        outcome = Outcome::kModelGone;
        return ok();
      }
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("INSERT INTO inference_model_versions (model_id, version, project_id, "
                  "blob_sha256, size, format, runtime, status, metadata, created_at, created_us) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_id, version) DO "
                  "NOTHING",
                  {row.model_id, row.version, row.project_id, row.sha256, row.size, row.format,
                   row.runtime, row.status, row.metadata, row.created_at, row.created_us}));
      if (n == 0) {
        outcome = Outcome::kVersionTaken;
        return ok();
      }
      std::string resource = row.model_id + "/" + std::to_string(row.version);
      CONCORD_RETURN_IF_ERROR(tx.record_change({.kind = std::string(kVersionKind),
                                                .id = resource,
                                                .project_id = row.project_id,
                                                .op = "create",
                                                .revision = 1}));
      usage::UsageEvent e{.event_id = "inference.model_version:" + resource + ":created",
                          .project_id = row.project_id,
                          .resource_id = resource,
                          .resource_type = std::string(kVersionKind),
                          .kind = "inference.model_storage",
                          .quantity = std::to_string(row.size),
                          .unit = "B",
                          .start = now,
                          .end = now,
                          .publisher_id = "",
                          .region = options_.region};
      CONCORD_RETURN_IF_ERROR(usage::append(tx, e));
      return ok();
    });
  }
  if (!stored || outcome != Outcome::kStored) drop_unreferenced({row.sha256});
  if (!stored) return fail(stored.error());
  if (outcome == Outcome::kModelGone) {
    return fail(Code::kNotFound, not_found_model(model.id) + " (deleted during the upload)");
  }
  if (outcome == Outcome::kVersionTaken) return conflict();
  return json_response(201, {{"version", version_json(row)}});
}

Result<Response> ModelRegistry::Impl::list_versions(Call& c) {
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ModelRow m, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_reader", m.project_id));
    CONCORD_ASSIGN_OR_RETURN(auto versions, load_versions(tx, m.id));
    out = Json::array();
    for (const VersionRow& v : versions) out.push_back(version_json(v));
    return ok();
  }));
  return json_response(200, {{"versions", std::move(out)}});
}

Result<Response> ModelRegistry::Impl::show_version(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(int64_t version, parse_version(c.param(1)));
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ModelRow m, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_reader", m.project_id));
    CONCORD_ASSIGN_OR_RETURN(auto v, load_version(tx, m.id, version));
    if (!v) {
      return fail(Code::kNotFound,
                  "version " + std::to_string(version) + " of model " + m.id + " not found");
    }
    out = version_json(*v);
    return ok();
  }));
  return json_response(200, {{"version", std::move(out)}});
}

Result<Response> ModelRegistry::Impl::delete_version(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(int64_t version, parse_version(c.param(1)));
  std::set<std::string> shas;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ModelRow m, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_member", m.project_id));
    CONCORD_ASSIGN_OR_RETURN(auto v, load_version(tx, m.id, version));
    if (!v) {
      return fail(Code::kNotFound,
                  "version " + std::to_string(version) + " of model " + m.id + " not found");
    }
    CONCORD_RETURN_IF_ERROR(check_unused(tx, m, version));
    CONCORD_ASSIGN_OR_RETURN(shas, delete_versions(tx, {*v}));
    return ok();
  }));
  drop_unreferenced(shas);
  return Response::empty(204);
}

Result<Response> ModelRegistry::Impl::download_version(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(int64_t version, parse_version(c.param(1)));
  std::optional<VersionRow> v;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ModelRow m, load_visible(tx, c, c.param(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_reader", m.project_id));
    CONCORD_ASSIGN_OR_RETURN(v, load_version(tx, m.id, version));
    if (!v) {
      return fail(Code::kNotFound,
                  "version " + std::to_string(version) + " of model " + m.id + " not found");
    }
    return ok();
  }));
  if (!blobs_->contains(v->sha256)) {
    return fail(Code::kInternal, "the bytes of model " + v->model_id + " version " +
                                     std::to_string(version) + " are missing from the blob store");
  }
  Response r;
  r.status = 200;
  r.set_header("content-type", "application/octet-stream");
  r.set_header("x-model-sha256", v->sha256);
  r.body_file = blobs_->path_of(v->sha256);
  return r;
}

Result<std::string> ModelRegistry::Impl::version_file(std::string_view model_id, int64_t version) {
  std::optional<VersionRow> v;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(v, load_version(tx, model_id, version));
    return ok();
  }));
  if (!v || !blobs_->contains(v->sha256)) {
    return fail(Code::kNotFound, "version " + std::to_string(version) + " of model " +
                                     sanitize_utf8(model_id) + " has no stored bytes");
  }
  return blobs_->path_of(v->sha256);
}

// ---------------------------------------------------------------------------------------------

Status ModelRegistry::Impl::recover() {
  std::set<std::string> referenced;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    referenced.clear();
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query("SELECT DISTINCT blob_sha256 FROM inference_model_versions"));
    for (const store::Row& r : rows) referenced.insert(r.text(0));
    return ok();
  }));
  CONCORD_ASSIGN_OR_RETURN(size_t removed, blobs_->gc(referenced));
  if (removed > 0) {
    logger("inference")
        ->info("removed {} model blobs no version names (interrupted uploads)", removed);
  }
  return ok();
}

void ModelRegistry::Impl::build_routes() {
  using M = Method;
  add(M::kPost, "/v1/models", "project_member", &Impl::create_model);
  add(M::kGet, "/v1/models", "project_reader", &Impl::list_models);
  add(M::kGet, "/v1/models/{model_id}", "project_reader", &Impl::show_model);
  add(M::kPatch, "/v1/models/{model_id}", "project_reader", &Impl::update_model);
  add(M::kDelete, "/v1/models/{model_id}", "project_reader", &Impl::delete_model);
  add(M::kGet, "/v1/models/{model_id}/versions", "project_reader", &Impl::list_versions);
  add(M::kPut, "/v1/models/{model_id}/versions/{version}", "project_reader", &Impl::upload_version);
  add(M::kGet, "/v1/models/{model_id}/versions/{version}", "project_reader", &Impl::show_version);
  add(M::kDelete, "/v1/models/{model_id}/versions/{version}", "project_reader",
      &Impl::delete_version);
  add(M::kGet, "/v1/models/{model_id}/versions/{version}/file", "project_reader",
      &Impl::download_version);
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<ModelRegistry>> ModelRegistry::create(store::Store& store,
                                                             const Clock& clock,
                                                             identity::IdentityService& identity,
                                                             RegistryOptions options) {
  if (options.max_model_bytes == 0) {
    return fail(Code::kInvalidArgument, "inference max_model_bytes must be positive");
  }
  if (options.check_timeout.count() <= 0) {
    return fail(Code::kInvalidArgument, "inference check_timeout must be positive");
  }
  CONCORD_ASSIGN_OR_RETURN(auto blobs, blob::BlobStore::create(options.blob_dir));
  auto impl = std::make_unique<Impl>(store, clock, identity, std::move(options), std::move(blobs));
  CONCORD_RETURN_IF_ERROR(impl->recover());
  impl->build_routes();
  return std::unique_ptr<ModelRegistry>(new ModelRegistry(std::move(impl)));
}

ModelRegistry::ModelRegistry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelRegistry::~ModelRegistry() = default;

std::shared_ptr<http::RouteTable> ModelRegistry::routes() const {
  return impl_->table_;
}

Result<std::string> ModelRegistry::version_file(std::string_view model_id, int64_t version) const {
  return impl_->version_file(model_id, version);
}

void ModelRegistry::set_in_use(InUseCheck check) {
  impl_->in_use_ = std::move(check);
}

http::StreamedBodyHook ModelRegistry::streamed_body_hook(std::string mount_prefix) const {
  std::string dir = impl_->spool_dir();
  uint64_t limit = impl_->max_model_bytes();
  return [prefix = std::move(mount_prefix), dir, limit](
             Method method, std::string_view raw_path) -> std::optional<http::StreamedBody> {
    // <prefix>/v1/models/<one segment>/versions/<one segment>, optional trailing slash.
    if (method != Method::kPut || !raw_path.starts_with(prefix)) return std::nullopt;
    std::string_view rest = raw_path.substr(prefix.size());
    constexpr std::string_view kHead = "/v1/models/";
    if (!rest.starts_with(kHead)) return std::nullopt;
    rest.remove_prefix(kHead.size());
    if (rest.ends_with('/')) rest.remove_suffix(1);
    size_t slash = rest.find('/');
    if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(slash);
    constexpr std::string_view kVersions = "/versions/";
    if (!rest.starts_with(kVersions)) return std::nullopt;
    rest.remove_prefix(kVersions.size());
    if (rest.empty() || rest.find('/') != std::string_view::npos) return std::nullopt;
    return http::StreamedBody{dir, limit};
  };
}

}  // namespace concord::inference::registry

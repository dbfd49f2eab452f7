// The endpoints API (/inference/v1/endpoints): validate, authorize, record intent, answer.
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "base/encoding.h"
#include "base/log.h"
#include "base/random.h"
#include "base/time_format.h"
#include "inference/api/harness.h"
#include "inference/endpoints/service_impl.h"

namespace concord::inference::endpoints {
namespace {

using http::Method;
using http::Request;
using http::Response;

constexpr std::string_view kEndpointKind = "inference.endpoint";
constexpr size_t kMaxNameBytes = 255;
constexpr int64_t kMaxVersion = 2147483647;

int64_t to_us(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::string media_type(std::string_view content_type) {
  std::string t(content_type.substr(0, content_type.find(';')));
  t.erase(0, t.find_first_not_of(" \t"));
  t.erase(t.find_last_not_of(" \t") + 1);
  for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return t;
}

std::string not_found(std::string_view id) {
  return "endpoint " + sanitize_utf8(id) + " not found";
}

Result<int64_t> int_field(const Json& obj, const std::string& name, int64_t lo, int64_t hi) {
  const Json& v = obj[name];
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi) {
    return fail(Code::kInvalidArgument, "'" + name + "' must be an integer from " +
                                            std::to_string(lo) + " to " + std::to_string(hi));
  }
  return v.get<int64_t>();
}

Status only_fields(const Json& obj, const std::set<std::string>& allowed, std::string_view where) {
  for (auto& [key, value] : obj.items()) {
    if (!allowed.contains(key)) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return fail(Code::kInvalidArgument, "unknown field '" + sanitize_utf8(key) + "' in " +
                                              std::string(where) + " (" + list + ")");
    }
  }
  return ok();
}

// Applies the settings present in `body` onto `e`. On create every field is optional but
// name, model_id and model_version; on update model_id may not change. Sets `respec` when a
// change needs new replicas.
Status apply_settings(const Json& body, EndpointRow& e, bool create, int max_limit, bool& respec) {
  std::set<std::string> allowed = {"name",         "model_version", "min_replicas",
                                   "max_replicas", "vcpus",         "memory_mb",
                                   "batching",     "autoscaling",   "split"};
  if (create) allowed.insert("model_id");
  if (!create && body.contains("model_id")) {
    return fail(Code::kInvalidArgument,
                "'model_id' cannot change; create another endpoint for another model");
  }
  CONCORD_RETURN_IF_ERROR(only_fields(body, allowed, "endpoint"));
  if (create) {
    for (const char* required : {"name", "model_id", "model_version"}) {
      if (!body.contains(required)) {
        return fail(Code::kInvalidArgument, "'" + std::string(required) + "' is required");
      }
    }
  }
  if (body.contains("name")) {
    const Json& v = body["name"];
    if (!v.is_string()) return fail(Code::kInvalidArgument, "'name' must be a string");
    std::string s = v.get<std::string>();
    if (s.empty()) return fail(Code::kInvalidArgument, "'name' must not be empty");
    if (s.size() > kMaxNameBytes) {
      return fail(Code::kInvalidArgument, "'name' is longer than 255 bytes");
    }
    if (s.find('\0') != std::string::npos) {
      return fail(Code::kInvalidArgument, "'name' must not contain NUL characters");
    }
    e.name = s;
  }
  if (body.contains("model_id")) {
    const Json& v = body["model_id"];
    if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 255) {
      return fail(Code::kInvalidArgument, "'model_id' must be a model's id");
    }
    e.model_id = v.get<std::string>();
  }
  if (body.contains("model_version")) {
    CONCORD_ASSIGN_OR_RETURN(int64_t v, int_field(body, "model_version", 1, kMaxVersion));
    if (v != e.model_version) respec = true;
    e.model_version = v;
  }
  const int64_t limit = max_limit;
  bool min_given = body.contains("min_replicas");
  if (min_given) {
    CONCORD_ASSIGN_OR_RETURN(e.min_replicas, int_field(body, "min_replicas", 1, limit));
  }
  if (body.contains("max_replicas")) {
    CONCORD_ASSIGN_OR_RETURN(e.max_replicas, int_field(body, "max_replicas", 1, limit));
  } else if (create) {
    e.max_replicas = e.min_replicas;
  }
  if (e.max_replicas < e.min_replicas) {
    return fail(Code::kInvalidArgument, "'max_replicas' (" + std::to_string(e.max_replicas) +
                                            ") must not be less than 'min_replicas' (" +
                                            std::to_string(e.min_replicas) + ")");
  }
  if (body.contains("vcpus")) {
    CONCORD_ASSIGN_OR_RETURN(int64_t v, int_field(body, "vcpus", 1, 64));
    respec = respec || v != e.vcpus;
    e.vcpus = v;
  }
  if (body.contains("memory_mb")) {
    CONCORD_ASSIGN_OR_RETURN(int64_t v, int_field(body, "memory_mb", 64, 262144));
    respec = respec || v != e.memory_mb;
    e.memory_mb = v;
  }
  if (body.contains("batching")) {
    const Json& b = body["batching"];
    if (!b.is_object()) return fail(Code::kInvalidArgument, "'batching' must be an object");
    CONCORD_RETURN_IF_ERROR(only_fields(b, {"max_batch_size", "max_queue_delay_us"}, "batching"));
    if (b.contains("max_batch_size")) {
      CONCORD_ASSIGN_OR_RETURN(int64_t v, int_field(b, "max_batch_size", 1, 256));
      respec = respec || v != e.max_batch_size;
      e.max_batch_size = v;
    }
    if (b.contains("max_queue_delay_us")) {
      CONCORD_ASSIGN_OR_RETURN(int64_t v, int_field(b, "max_queue_delay_us", 0, 1'000'000));
      respec = respec || v != e.max_queue_delay_us;
      e.max_queue_delay_us = v;
    }
  }
  if (body.contains("autoscaling")) {
    const Json& a = body["autoscaling"];
    if (!a.is_object()) return fail(Code::kInvalidArgument, "'autoscaling' must be an object");
    CONCORD_RETURN_IF_ERROR(
        only_fields(a, {"metric", "target", "scale_down_delay_s"}, "autoscaling"));
    if (a.contains("metric")) {
      const Json& m = a["metric"];
      if (!m.is_string() ||
          (m.get<std::string>() != "queue_length" && m.get<std::string>() != "p99_latency_ms")) {
        return fail(Code::kInvalidArgument, "'metric' must be 'queue_length' or 'p99_latency_ms'");
      }
      std::string metric = m.get<std::string>();
      if (metric != e.scale_metric && !a.contains("target")) {
        e.scale_target = metric == "queue_length" ? 4.0 : 100.0;
      }
      e.scale_metric = metric;
    }
    if (a.contains("target")) {
      const Json& t = a["target"];
      if (!t.is_number() || !std::isfinite(t.get<double>()) || t.get<double>() <= 0 ||
          t.get<double>() > 1e6) {
        return fail(Code::kInvalidArgument,
                    "'target' must be a number greater than 0 and at most 1000000");
      }
      e.scale_target = t.get<double>();
    }
    if (a.contains("scale_down_delay_s")) {
      CONCORD_ASSIGN_OR_RETURN(e.scale_down_delay_s, int_field(a, "scale_down_delay_s", 0, 86400));
    }
  }
  if (body.contains("split")) {
    if (!body["split"].is_boolean()) {
      return fail(Code::kInvalidArgument, "'split' must be true or false");
    }
    bool v = body["split"].get<bool>();
    respec = respec || v != e.split;
    e.split = v;
  }
  return ok();
}

// The model and version must exist and belong to the endpoint's project.
Status check_model(store::Tx& tx, const EndpointRow& e) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT project_id FROM inference_models WHERE id = ?", {e.model_id}));
  if (rows.empty() || rows.front().text(0) != e.project_id) {
    return fail(Code::kInvalidArgument,
                "model " + sanitize_utf8(e.model_id) + " not found in project " + e.project_id);
  }
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows versions,
      tx.query("SELECT status FROM inference_model_versions WHERE model_id = ? AND version = ?",
               {e.model_id, e.model_version}));
  if (versions.empty()) {
    return fail(Code::kInvalidArgument, "version " + std::to_string(e.model_version) +
                                            " of model " + e.model_id + " not found");
  }
  return ok();
}

}  // namespace

int api_status(Code code) {
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

http::Response endpoints_error(int status, std::string_view message) {
  return registry::registry_error(status, message);
}

void EndpointService::Impl::add_api(Method method, std::string pattern, Handler handler) {
  std::string name =
      "inference:" + std::string(http::method_name(method)) + " /v1/endpoints" + pattern;
  api_->add(
      method, std::move(pattern), [this, handler](Request& req) { return run_api(req, handler); },
      std::move(name));
}

namespace {

// The endpoints API speaks the registry's error format and words its denials for endpoints.
const inference::api::Harness& endpoints_harness() {
  static const inference::api::Harness harness{
      endpoints_error, api_status,
      "the member role on the endpoint's project is needed to change endpoints",
      "the reader role on the endpoint's project is needed to read endpoints"};
  return harness;
}

}  // namespace

Response EndpointService::Impl::run_api(Request& req, Handler handler) {
  return inference::api::run_request(endpoints_harness(), identity_, req, "project_reader",
                                     [&](identity::AuthContext caller) {
                                       Call call{req, std::move(caller)};
                                       return (this->*handler)(call);
                                     });
}

Status EndpointService::Impl::authorize_on(const Call& c, std::string_view rule,
                                           const std::string& project) const {
  return inference::api::authorize_on(endpoints_harness(), identity_, c.caller, rule, project);
}

Result<EndpointRow> EndpointService::Impl::load_visible(store::Tx& tx, const Call& c,
                                                        std::string_view id) const {
  CONCORD_ASSIGN_OR_RETURN(std::optional<EndpointRow> e, load_endpoint(tx, id));
  if (!e || (!c.caller.is_admin() && e->project_id != c.caller.project_id)) {
    return fail(Code::kNotFound, not_found(id));
  }
  return std::move(*e);
}

std::string EndpointService::Impl::endpoint_url(const EndpointRow& e, const Request& req) const {
  std::string origin = options_.public_url;
  if (origin.empty()) {
    origin = req.base_url;
    if (origin.ends_with(options_.api_prefix)) {
      origin.resize(origin.size() - options_.api_prefix.size());
    }
  }
  while (origin.ends_with('/')) origin.pop_back();
  return origin + options_.gateway_prefix + "/" + e.id;
}

Json EndpointService::Impl::view(const EndpointRow& e, const std::vector<ReplicaRow>& replicas,
                                 const Call& c) const {
  Json reps = Json::array();
  for (const ReplicaRow& r : replicas) {
    Json x = {{"id", r.id}, {"status", r.state == "deleting" ? "deleting" : r.status}};
    // Hosts and replica addresses are the operator's business.
    if (c.caller.is_admin()) {
      x["host"] = r.host;
      x["url"] = r.url;
      if (!r.fault.empty()) x["fault"] = r.fault;
    }
    reps.push_back(std::move(x));
  }
  return {{"id", e.id},
          {"name", e.name},
          {"project_id", e.project_id},
          {"model_id", e.model_id},
          {"model_version", e.model_version},
          {"url", endpoint_url(e, c.req)},
          {"status", e.status},
          {"replicas", std::move(reps)},
          {"desired_replicas", e.desired_replicas},
          {"min_replicas", e.min_replicas},
          {"max_replicas", e.max_replicas},
          {"vcpus", e.vcpus},
          {"memory_mb", e.memory_mb},
          {"batching",
           {{"max_batch_size", e.max_batch_size}, {"max_queue_delay_us", e.max_queue_delay_us}}},
          {"autoscaling",
           {{"metric", e.scale_metric},
            {"target", e.scale_target},
            {"scale_down_delay_s", e.scale_down_delay_s}}},
          {"split", e.split},
          {"created_at", e.created_at},
          {"updated_at", e.updated_at}};
}

namespace {
Result<Json> endpoint_body(const Request& req) {
  std::string type = media_type(req.header("content-type"));
  if (!type.empty() && type != "application/json") {
    return fail(Code::kInvalidArgument,
                "the request body must be application/json, not '" + sanitize_utf8(type) + "'");
  }
  CONCORD_ASSIGN_OR_RETURN(Json body, parse_json(req.body));
  if (!body.is_object() || !body.contains("endpoint") || !body["endpoint"].is_object()) {
    return fail(Code::kInvalidArgument, "the request body must be {\"endpoint\": {...}}");
  }
  if (body.size() != 1) {
    return fail(Code::kInvalidArgument, "the request body must hold only 'endpoint'");
  }
  return body["endpoint"];
}
}  // namespace

Result<Response> EndpointService::Impl::create_endpoint(Call& c) {
  if (c.caller.project_id.empty()) {
    return fail(Code::kPermissionDenied, "a project-scoped token is needed to create an endpoint");
  }
  CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_member", c.caller.project_id));
  CONCORD_ASSIGN_OR_RETURN(Json body, endpoint_body(c.req));
  SystemTime now = clock_.now();
  EndpointRow e;
  e.id = new_uuid();
  e.project_id = c.caller.project_id;
  bool respec = false;
  CONCORD_RETURN_IF_ERROR(apply_settings(body, e, true, options_.max_replicas_limit, respec));
  e.desired_replicas = e.min_replicas;
  e.replica_key = random_token(24);
  e.created_at = e.updated_at = format_keystone_time(now);
  e.created_us = to_us(now);
  bool taken = false;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(check_model(tx, e));
    CONCORD_RETURN_IF_ERROR(insert_endpoint(tx, e, taken));
    if (taken) return ok();
    return tx.record_change({.kind = std::string(kEndpointKind),
                             .id = e.id,
                             .project_id = e.project_id,
                             .op = "create",
                             .revision = 1});
  }));
  if (taken) {
    return fail(Code::kAlreadyExists,
                "an endpoint named '" + e.name + "' already exists in project " + e.project_id);
  }
  wake();
  return Response::json(201, dump_json({{"endpoint", view(e, {}, c)}}));
}

Result<Response> EndpointService::Impl::list_endpoints(Call& c) {
  bool all = false;
  if (auto flag = c.req.query_param("all_projects")) {
    if (*flag == "1" || *flag == "true" || *flag == "True") {
      all = true;
    } else if (*flag != "0" && *flag != "false" && *flag != "False") {
      return fail(Code::kInvalidArgument, "all_projects must be 1 or 0");
    }
  }
  if (all && !c.caller.is_admin()) {
    return fail(Code::kPermissionDenied, "only an administrator may list all projects' endpoints");
  }
  Json out = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out = Json::array();
    CONCORD_ASSIGN_OR_RETURN(
        auto eps,
        load_endpoints(tx, all ? std::nullopt : std::optional<std::string>(c.caller.project_id)));
    CONCORD_ASSIGN_OR_RETURN(auto reps, load_replicas(tx, ""));
    std::map<std::string, std::vector<ReplicaRow>> by_endpoint;
    for (ReplicaRow& r : reps) by_endpoint[r.endpoint_id].push_back(std::move(r));
    for (const EndpointRow& e : eps) out.push_back(view(e, by_endpoint[e.id], c));
    return ok();
  }));
  return Response::json(200, dump_json({{"endpoints", std::move(out)}}));
}

Result<Response> EndpointService::Impl::show_endpoint(Call& c) {
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(EndpointRow e, load_visible(tx, c, c.req.params.at(0)));
    CONCORD_ASSIGN_OR_RETURN(auto reps, load_replicas(tx, e.id));
    out = view(e, reps, c);
    return ok();
  }));
  return Response::json(200, dump_json({{"endpoint", std::move(out)}}));
}

Result<Response> EndpointService::Impl::update_endpoint_call(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, endpoint_body(c.req));
  Json out;
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(EndpointRow e, load_visible(tx, c, c.req.params.at(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_member", e.project_id));
    if (e.status == "deleting") {
      return fail(Code::kFailedPrecondition, "endpoint " + e.id + " is being deleted");
    }
    std::string old_name = e.name;
    bool respec = false;
    CONCORD_RETURN_IF_ERROR(apply_settings(body, e, false, options_.max_replicas_limit, respec));
    if (e.name != old_name) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows clash,
          tx.query("SELECT id FROM inference_endpoints WHERE project_id = ? AND name = ?",
                   {e.project_id, e.name}));
      if (!clash.empty()) {
        return fail(Code::kAlreadyExists,
                    "an endpoint named '" + e.name + "' already exists in project " + e.project_id);
      }
    }
    if (respec) {
      CONCORD_RETURN_IF_ERROR(check_model(tx, e));
      e.spec_revision += 1;
    }
    e.desired_replicas = std::clamp(e.desired_replicas, e.min_replicas, e.max_replicas);
    e.updated_at = format_keystone_time(clock_.now());
    CONCORD_RETURN_IF_ERROR(update_endpoint(tx, e));
    CONCORD_RETURN_IF_ERROR(tx.record_change({.kind = std::string(kEndpointKind),
                                              .id = e.id,
                                              .project_id = e.project_id,
                                              .op = "update",
                                              .revision = e.revision}));
    CONCORD_ASSIGN_OR_RETURN(auto reps, load_replicas(tx, e.id));
    out = view(e, reps, c);
    return ok();
  }));
  wake();
  return Response::json(200, dump_json({{"endpoint", std::move(out)}}));
}

Result<Response> EndpointService::Impl::delete_endpoint(Call& c) {
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(EndpointRow e, load_visible(tx, c, c.req.params.at(0)));
    CONCORD_RETURN_IF_ERROR(authorize_on(c, "project_member", e.project_id));
    if (e.status == "deleting") return ok();
    e.status = "deleting";
    e.updated_at = format_keystone_time(clock_.now());
    CONCORD_RETURN_IF_ERROR(update_endpoint(tx, e));
    return tx.record_change({.kind = std::string(kEndpointKind),
                             .id = e.id,
                             .project_id = e.project_id,
                             .op = "update",
                             .revision = e.revision});
  }));
  wake();
  return Response::empty(204);
}

void EndpointService::Impl::build_api_routes() {
  add_api(Method::kPost, "", &Impl::create_endpoint);
  add_api(Method::kGet, "", &Impl::list_endpoints);
  add_api(Method::kGet, "/{endpoint_id}", &Impl::show_endpoint);
  add_api(Method::kPatch, "/{endpoint_id}", &Impl::update_endpoint_call);
  add_api(Method::kDelete, "/{endpoint_id}", &Impl::delete_endpoint);
}

}  // namespace concord::inference::endpoints

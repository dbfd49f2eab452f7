#include "compute/service/api.h"

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "compute/service/view_cache.h"
#include "identity/identity_service.h"
#include "identity/policy.h"

namespace concord::compute {
namespace {

std::string_view fault_name(int status) {
  switch (status) {
    case 400: return "badRequest";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "itemNotFound";
    case 405: return "badMethod";
    case 406: return "notAcceptable";
    case 409: return "conflictingRequest";
    case 413: return "overLimit";
    case 414:
    case 431: return "badRequest";  // too long a URI or headers: the client's fault
    case 415: return "badMediaType";
    case 429: return "overLimit";
    case 501: return "notImplemented";
    case 503: return "serviceUnavailable";
    default: return "computeFault";
  }
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

Result<ApiVersion> parse_number(std::string_view text) {
  std::string t = trim(text);
  for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (t == "latest") return kMaxVersion;
  size_t dot = t.find('.');
  auto bad = [&] {
    return fail(Code::kInvalidArgument,
                "Invalid format of API version '" + sanitize_utf8(std::string(text)) +
                    "'. The API version must be in the format 'X.Y' (e.g. 2.1).");
  };
  if (dot == std::string::npos || dot == 0 || dot + 1 == t.size()) return bad();
  ApiVersion v;
  auto r1 = std::from_chars(t.data(), t.data() + dot, v.major);
  auto r2 = std::from_chars(t.data() + dot + 1, t.data() + t.size(), v.minor);
  if (r1.ec != std::errc() || r1.ptr != t.data() + dot || r2.ec != std::errc() ||
      r2.ptr != t.data() + t.size() || v.major < 0 || v.minor < 0)
    return bad();
  return v;
}

bool json_content_type(std::string_view content_type) {
  std::string mime = trim(content_type.substr(0, content_type.find(';')));
  for (char& ch : mime) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (mime.empty()) return true;
  return mime == "application/json" ||
         (mime.starts_with("application/") && mime.ends_with("+json"));
}

bool storable(const std::string& s) {
  return s.find('\0') == std::string::npos && sanitize_utf8(s) == s;
}

}  // namespace

Result<ApiVersion> parse_version(const http::Request& req) {
  std::optional<ApiVersion> v;
  // OpenStack-API-Version: "compute 2.37" (other services' entries may be listed, comma
  // separated; only ours counts).
  std::string_view modern = req.header("openstack-api-version");
  if (!modern.empty()) {
    std::string all(modern);
    size_t start = 0;
    while (start <= all.size()) {
      size_t comma = all.find(',', start);
      std::string item = trim(std::string_view(all).substr(
          start, comma == std::string::npos ? std::string::npos : comma - start));
      std::string lower = item;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (lower.starts_with("compute ")) {
        CONCORD_ASSIGN_OR_RETURN(ApiVersion parsed, parse_number(item.substr(8)));
        v = parsed;
        break;
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (!v) {
    std::string_view legacy = req.header("x-openstack-nova-api-version");
    if (!legacy.empty()) {
      CONCORD_ASSIGN_OR_RETURN(ApiVersion parsed, parse_number(legacy));
      v = parsed;
    }
  }
  if (!v) return kMinVersion;
  if (*v < kMinVersion || *v > kMaxVersion) {
    return fail(Code::kFailedPrecondition,
                "Version " + v->str() + " is not supported by the API. Minimum is " +
                    kMinVersion.str() + " and maximum is " + kMaxVersion.str() + ".");
  }
  return *v;
}

http::Response nova_error(int status, std::string_view message) {
  Json body = {{std::string(fault_name(status)),
                {{"code", status}, {"message", sanitize_utf8(std::string(message))}}}};
  return http::Response::json(status, dump_json(body));
}

int nova_status(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kResourceExhausted: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kAborted: return 409;
    case Code::kFailedPrecondition: return 409;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

void add_version_headers(http::Response& resp, const ApiVersion& v) {
  resp.set_header("openstack-api-version", "compute " + v.str());
  resp.set_header("x-openstack-nova-api-version", v.str());
  resp.set_header("vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version");
}

std::string NovaApi::Call::link(std::string_view path) const {
  return req.base_url + "/v2.1/" + std::string(path);
}
std::string NovaApi::Call::bookmark(std::string_view path) const {
  return req.base_url + "/" + std::string(path);
}

NovaApi::NovaApi(ComputeContext& ctx)
    : ctx_(ctx),
      view_cache_(std::make_unique<ServerViewCache>(ctx.options.view_cache_bytes)),
      table_(std::make_shared<http::RouteTable>()) {}
NovaApi::~NovaApi() = default;

void NovaApi::add(http::Method method, std::string pattern, std::string rule, Handler handler,
                  ApiVersion min_version) {
  auto spec = std::make_shared<Spec>(Spec{rule, true, min_version, std::move(handler)});
  infos_.push_back({method, pattern, rule});
  table_->add(
      method, pattern, [this, spec](http::Request& req) { return run(req, *spec); },
      "compute:" + std::string(http::method_name(method)) + " " + pattern);
}

void NovaApi::add_public(http::Method method, std::string pattern, Handler handler) {
  auto spec = std::make_shared<Spec>(Spec{"", false, kMinVersion, std::move(handler)});
  infos_.push_back({method, pattern, "public"});
  table_->add(
      method, pattern, [this, spec](http::Request& req) { return run(req, *spec); },
      "compute:" + std::string(http::method_name(method)) + " " + pattern);
}

Status NovaApi::authorize(const Call& call, std::string_view rule, std::string_view project_id,
                          bool hide_as_not_found) const {
  identity::Target target;
  target.project_id = std::string(project_id);
  Status s = identity::authorize(call.caller, rule, target);
  if (!s && hide_as_not_found && s.error().code() == Code::kPermissionDenied)
    return fail(Code::kNotFound, "The resource could not be found.");
  if (!s && s.error().code() == Code::kPermissionDenied) {
    return fail(Code::kPermissionDenied,
                "Policy doesn't allow " + std::string(rule) + " to be performed.");
  }
  return s;
}

Result<Json> NovaApi::body_object(const Call& call) {
  if (call.req.body.empty())
    return fail(Code::kInvalidArgument, "The request body is missing or empty.");
  auto parsed = parse_json(call.req.body);
  if (!parsed || !parsed->is_object())
    return fail(Code::kInvalidArgument, "Malformed request body");
  return std::move(*parsed);
}

http::Response NovaApi::run(http::Request& req, const Spec& spec) {
  ApiVersion version = kMinVersion;
  auto finish = [&](http::Response r) {
    add_version_headers(r, version);
    r.set_header("x-compute-request-id", req.request_id);
    return r;
  };
  try {
    auto parsed = parse_version(req);
    if (!parsed) {
      int status = parsed.error().code() == Code::kFailedPrecondition ? 406 : 400;
      return finish(nova_error(status, parsed.error().message()));
    }
    version = *parsed;
    if (version < spec.min_version) {
      return finish(nova_error(404, "The resource could not be found."));
    }
    if (!req.body.empty() && !json_content_type(req.header("content-type"))) {
      return finish(nova_error(415, "Unsupported Content-Type"));
    }
    for (const std::string& p : req.params) {
      if (!storable(p)) return finish(nova_error(404, "The resource could not be found."));
    }
    if (req.query.find('%') != std::string::npos) {
      for (const auto& [key, value] : req.query_params()) {
        if (!storable(key) || !storable(value))
          return finish(nova_error(400, "Query parameters must be valid UTF-8."));
      }
    }
    identity::AuthContext caller;
    if (spec.needs_token) {
      std::string_view token = req.header("x-auth-token");
      if (token.empty())
        return finish(nova_error(401, "The request you have made requires authentication."));
      auto validated = ctx_.identity.authenticate(token);
      if (!validated) {
        if (validated.error().code() != Code::kUnauthenticated)
          return finish(nova_error(nova_status(validated.error().code()),
                                   "The service is temporarily unavailable."));
        return finish(nova_error(401, "The request you have made requires authentication."));
      }
      caller = std::move(*validated);
    }
    Call call{req, caller, version};
    if (spec.needs_token) {
      if (Status s = authorize(call, spec.rule, caller.project_id); !s) {
        return finish(nova_error(nova_status(s.error().code()), s.error().message()));
      }
    }
    auto response = spec.handler(call);
    if (!response) {
      int status = nova_status(response.error().code());
      if (status >= 500) {
        logger("compute")->error("request failed: {} {} request_id={} error={}",
                                 http::method_name(req.method), sanitize_utf8(req.path),
                                 req.request_id, response.error().to_string());
        return finish(nova_error(status, status == 503
                                             ? "The service is temporarily unavailable."
                                             : "Unexpected API Error. Please report this at "
                                               "your cloud operator's support."));
      }
      return finish(nova_error(status, response.error().message()));
    }
    return finish(std::move(*response));
  } catch (const std::exception& e) {
    logger("compute")->error("handler threw: {} {} request_id={} what={}",
                             http::method_name(req.method), sanitize_utf8(req.path), req.request_id,
                             e.what());
    return finish(nova_error(500, "Unexpected API Error."));
  }
}

}  // namespace concord::compute

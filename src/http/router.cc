#include "http/router.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/log.h"

namespace concord::http {
namespace {

// Routes longer than this are refused at add(); a request path with more segments cannot match
// any route, which lets match() split the path into a fixed array without allocating.
constexpr size_t kMaxSegments = 32;

// Bounds how much of a client's path is echoed back in a 404/405 message.
constexpr size_t kMaxEchoedPath = 256;

struct Segments {
  std::array<std::string_view, kMaxSegments> items;
  size_t count = 0;
  bool overflow = false;
};

// Splits "/a/b/c" (raw, still percent-encoded) into segments. One trailing slash is ignored;
// empty segments from "//" are kept so they never match a non-empty pattern segment.
Segments split_path(std::string_view path) {
  Segments out;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.empty()) return out;
  while (true) {
    size_t slash = path.find('/');
    if (out.count == kMaxSegments) {
      out.overflow = true;
      return out;
    }
    out.items[out.count++] = path.substr(0, slash);
    if (slash == std::string_view::npos) return out;
    path.remove_prefix(slash + 1);
  }
}

bool segment_equals(std::string_view raw, const std::string& literal) {
  if (raw.find('%') == std::string_view::npos) return raw == literal;
  return percent_decode(raw) == literal;
}

std::string truncate_for_echo(std::string_view s) {
  if (s.size() <= kMaxEchoedPath) return std::string(s);
  return std::string(s.substr(0, kMaxEchoedPath)) + "...";
}

std::string join_methods(const std::vector<Method>& methods) {
  std::string out;
  for (Method m : methods) {
    if (!out.empty()) out += ", ";
    out += method_name(m);
  }
  return out;
}

std::string normalize_prefix(std::string prefix) {
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (!prefix.empty() && prefix.front() != '/') prefix.insert(prefix.begin(), '/');
  return prefix;
}

// Formatters are supplied by capabilities; one that throws must not turn an error reply into a
// dropped connection, so fall back to the generic body.
Response format_error(const ErrorFormatter& errors, int status, std::string_view message) {
  if (errors) {
    try {
      return errors(status, message);
    } catch (const std::exception& e) {
      logger("http")->error("error formatter threw for status={}: {}", status,
                            sanitize_utf8(e.what()));
    } catch (...) {
      logger("http")->error("error formatter threw a non-exception for status={}", status);
    }
  }
  return keystone_style_error(status, message);
}

}  // namespace

std::string_view status_title(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    // The titles OpenStack services (webob) use, which clients may display.
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Requested Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: break;
  }
  if (status >= 100 && status < 200) return "Informational";
  if (status >= 200 && status < 300) return "Success";
  if (status >= 300 && status < 400) return "Redirection";
  if (status >= 400 && status < 500) return "Client Error";
  return "Server Error";
}

Response keystone_style_error(int status, std::string_view message) {
  Json body = {{"error",
                {{"code", status},
                 {"title", std::string(status_title(status))},
                 {"message", sanitize_utf8(message)}}}};
  return Response::json(status, dump_json(body));
}

// ---- Responder ------------------------------------------------------------------------------

struct Responder::State {
  State(std::function<void(Response)> d, std::function<Response()> drop)
      : deliver(std::move(d)), on_drop(std::move(drop)) {}
  // The last copy went away unanswered: answer for the handler, so the client is not left
  // waiting until a timeout.
  ~State() {
    if (done.exchange(true)) return;
    try {
      deliver(on_drop ? on_drop()
                      : keystone_style_error(500, "The request was dropped without an answer."));
    } catch (...) {
      logger("http")->error("answering a dropped deferred request threw");
    }
  }
  std::atomic<bool> done{false};
  std::function<void(Response)> deliver;
  std::function<Response()> on_drop;
};

Responder::Responder(std::function<void(Response)> deliver, std::function<Response()> on_drop)
    : state_(std::make_shared<State>(std::move(deliver), std::move(on_drop))) {}

void Responder::operator()(Response response) const {
  if (!state_ || state_->done.exchange(true)) return;
  try {
    state_->deliver(std::move(response));
  } catch (const std::exception& e) {
    // The sinks the server installs do not throw; this keeps a handler's thread alive anyway.
    logger("http")->error("delivering a deferred response threw: {}", sanitize_utf8(e.what()));
  } catch (...) {
    logger("http")->error("delivering a deferred response threw a non-exception");
  }
}

bool Responder::answered() const {
  return state_ && state_->done.load();
}

// ---- RouteTable ---------------------------------------------------------------------------

void RouteTable::add(Method method, std::string pattern, Handler handler, std::string name) {
  add_route(method, std::move(pattern), std::move(handler), nullptr, std::move(name));
}

void RouteTable::add_deferred(Method method, std::string pattern, DeferredHandler handler,
                              std::string name) {
  add_route(method, std::move(pattern), nullptr, std::move(handler), std::move(name));
}

void RouteTable::add_route(Method method, std::string pattern, Handler handler,
                           DeferredHandler deferred, std::string name) {
  Route route;
  route.method = method;
  Segments segments = split_path(pattern);
  if (segments.overflow) {
    // A programming error in route registration; refuse loudly at startup rather than never
    // matching silently.
    logger("http")->critical("route pattern has more than {} segments: {}", kMaxSegments, pattern);
    std::abort();
  }
  for (size_t i = 0; i < segments.count; ++i) {
    std::string_view s = segments.items[i];
    if (s.size() >= 2 && s.front() == '{' && s.back() == '}') {
      route.segments.emplace_back("{}");
    } else {
      route.segments.emplace_back(s);
    }
  }
  route.name = name.empty() ? std::string(method_name(method)) + " " + pattern : std::move(name);
  route.handler = std::move(handler);
  route.deferred = std::move(deferred);
  routes_.push_back(std::move(route));
}

RouteTable::Match RouteTable::match(Method method, std::string_view path) const {
  Match result;
  Segments segs = split_path(path);
  if (segs.overflow) return result;

  // Among routes whose pattern matches, the most specific wins: at the first segment where two
  // patterns differ, a literal beats a parameter ("/users/me" over "/users/{id}"). The score
  // sets one bit per literal segment, earlier segments on higher bits.
  const Route* best = nullptr;
  uint64_t best_score = 0;
  const Route* best_get = nullptr;  // HEAD falls back to GET
  uint64_t best_get_score = 0;
  for (const Route& route : routes_) {
    if (route.segments.size() != segs.count) continue;
    uint64_t score = 0;
    bool ok = true;
    for (size_t i = 0; i < segs.count && ok; ++i) {
      const std::string& pat = route.segments[i];
      if (pat == "{}") {
        ok = !segs.items[i].empty();
      } else {
        ok = segment_equals(segs.items[i], pat);
        score |= uint64_t{1} << (63 - i);
      }
    }
    if (!ok) continue;
    if (route.method == method) {
      if (best == nullptr || score > best_score) {
        best = &route;
        best_score = score;
      }
    } else if (method == Method::kHead && route.method == Method::kGet) {
      if (best_get == nullptr || score > best_get_score) {
        best_get = &route;
        best_get_score = score;
      }
    }
    if (std::find(result.allowed.begin(), result.allowed.end(), route.method) ==
        result.allowed.end()) {
      result.allowed.push_back(route.method);
    }
  }
  if (best == nullptr) best = best_get;
  if (best == nullptr) {
    // Every GET answers HEAD as well, so advertise it.
    bool has_get = std::find(result.allowed.begin(), result.allowed.end(), Method::kGet) !=
                   result.allowed.end();
    bool has_head = std::find(result.allowed.begin(), result.allowed.end(), Method::kHead) !=
                    result.allowed.end();
    if (has_get && !has_head) result.allowed.push_back(Method::kHead);
    std::sort(result.allowed.begin(), result.allowed.end());
    return result;
  }
  result.allowed.clear();
  if (best->deferred) {
    result.deferred = &best->deferred;
  } else {
    result.handler = &best->handler;
  }
  result.name = &best->name;
  for (size_t i = 0; i < segs.count; ++i) {
    if (best->segments[i] == "{}") result.params.push_back(percent_decode(segs.items[i]));
  }
  return result;
}

void Router::mount(std::string prefix, std::shared_ptr<RouteTable> table, ErrorFormatter errors) {
  Mount m{normalize_prefix(std::move(prefix)), std::move(table), std::move(errors)};
  // Kept longest first so find() returns the first hit.
  auto pos = std::find_if(mounts_.begin(), mounts_.end(), [&](const Mount& other) {
    return other.prefix.size() < m.prefix.size();
  });
  mounts_.insert(pos, std::move(m));
}

const Router::Mount* Router::find(std::string_view path) const {
  for (const Mount& m : mounts_) {
    if (m.prefix.empty()) return &m;
    if (path.size() < m.prefix.size() || path.compare(0, m.prefix.size(), m.prefix) != 0) {
      continue;
    }
    // "/identity" owns "/identity" and "/identity/..." but not "/identityx".
    if (path.size() == m.prefix.size() || path[m.prefix.size()] == '/' ||
        path[m.prefix.size()] == '?') {
      return &m;
    }
  }
  return nullptr;
}

namespace {

// HEAD answers what GET would, without the body but with its length (RFC 9110 9.3.2).
void strip_for_head(Response& resp) {
  if (resp.header("content-length").empty()) {
    uint64_t length = resp.body.size();
    if (!resp.body_file.empty() && resp.body.empty()) {
      std::error_code ec;
      auto size = std::filesystem::file_size(resp.body_file, ec);
      if (!ec) length = size;
    }
    resp.set_header("content-length", std::to_string(length));
  }
  resp.body.clear();
  resp.body_file.clear();
}

}  // namespace

Response Router::dispatch(Request& req, std::string& route_name) const {
  // A deferred route answers through the promise; waiting here is what the synchronous callers
  // (tests, the session driver without a socket) want.
  std::promise<Response> answer;
  std::future<Response> later = answer.get_future();
  std::function<DeferredSink()> defer = [&answer]() -> DeferredSink {
    // The promise outlives the wait below, and the Responder calls its sink at most once.
    return [p = &answer](Response r) { p->set_value(std::move(r)); };
  };
  std::optional<Response> now = dispatch(req, route_name, defer);
  if (now) return std::move(*now);
  return later.get();
}

std::optional<Response> Router::dispatch(Request& req, std::string& route_name,
                                         const std::function<DeferredSink()>& defer) const {
  std::string_view raw = req.target.empty() ? std::string_view(req.path) : req.target;
  size_t qmark = raw.find('?');
  if (!req.target.empty()) {
    if (qmark == std::string_view::npos) {
      req.query.clear();
    } else {
      req.query.assign(raw.substr(qmark + 1));
    }
  }
  std::string_view raw_path = raw.substr(0, qmark);
  // Copy before req.path is overwritten below (raw may point into it).
  std::string raw_copy;
  if (req.target.empty()) {
    raw_copy.assign(raw_path);
    raw_path = raw_copy;
  }

  std::optional<Response> resp = route(req, raw_path, route_name, &defer);
  if (resp && req.method == Method::kHead) strip_for_head(*resp);
  return resp;
}

std::optional<Response> Router::route(Request& req, std::string_view raw_path,
                                      std::string& route_name,
                                      const std::function<DeferredSink()>* defer) const {
  const Mount* mount = find(raw_path);
  if (mount == nullptr) {
    route_name = "unmatched";
    return keystone_style_error(404,
                                "The resource could not be found: " + truncate_for_echo(raw_path));
  }
  std::string_view rest = raw_path.substr(mount->prefix.size());
  if (rest.empty()) rest = "/";
  req.path = percent_decode(rest);
  req.base_url += mount->prefix;

  RouteTable::Match m = mount->table ? mount->table->match(req.method, rest) : RouteTable::Match{};
  if (m.handler == nullptr && m.deferred == nullptr) {
    route_name = "unmatched";
    if (!m.allowed.empty() || req.method == Method::kOther) {
      Response r = format_error(
          mount->errors, 405,
          "The method is not allowed for the requested URL: " + truncate_for_echo(req.path));
      r.set_header("Allow", join_methods(m.allowed));
      return r;
    }
    return format_error(mount->errors, 404,
                        "The resource could not be found: " + truncate_for_echo(req.path));
  }

  route_name = *m.name;
  req.params = std::move(m.params);
  if (m.deferred != nullptr) {
    const bool head = req.method == Method::kHead;
    ErrorFormatter errors = mount->errors;
    Responder respond(
        [sink = (*defer)(), head](Response r) {
          if (head) strip_for_head(r);
          sink(std::move(r));
        },
        [errors] {
          return format_error(errors, 500,
                              "An unexpected error prevented the server from fulfilling your "
                              "request.");
        });
    try {
      (*m.deferred)(req, respond);
      return std::nullopt;
    } catch (const std::exception& e) {
      logger("http")->error("deferred handler threw request_id={} route=\"{}\": {}", req.request_id,
                            route_name, sanitize_utf8(e.what()));
    } catch (...) {
      logger("http")->error("deferred handler threw a non-exception request_id={} route=\"{}\"",
                            req.request_id, route_name);
    }
    // Answers unless the handler already did before throwing.
    respond(format_error(mount->errors, 500,
                         "An unexpected error prevented the server from fulfilling your request."));
    return std::nullopt;
  }
  try {
    return (*m.handler)(req);
  } catch (const std::exception& e) {
    logger("http")->error("handler threw request_id={} route=\"{}\": {}", req.request_id,
                          route_name, sanitize_utf8(e.what()));
  } catch (...) {
    logger("http")->error("handler threw a non-exception request_id={} route=\"{}\"",
                          req.request_id, route_name);
  }
  return format_error(mount->errors, 500,
                      "An unexpected error prevented the server from fulfilling your request.");
}

Response Router::error_for(std::string_view raw_path, int status, std::string_view message) const {
  size_t qmark = raw_path.find('?');
  const Mount* mount = find(raw_path.substr(0, qmark));
  if (mount == nullptr) return keystone_style_error(status, message);
  return format_error(mount->errors, status, message);
}

}  // namespace concord::http

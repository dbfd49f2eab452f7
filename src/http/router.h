#pragma once
// Routes requests to handlers by method and path pattern, per mounted API family.
//
// A Router holds "mounts": a path prefix ("/identity", "/compute") with its own route table
// and its own error formatter, because each OpenStack API family has its own error body
// (Keystone {"error":{...}}, Nova {"itemNotFound":{...}}). The HTTP server asks the router to
// dispatch; unknown paths get 404 and known paths with another method get 405 (with Allow),
// both in the family's format.
//
// Patterns are literal segments and "{name}" placeholders matching one non-empty segment:
//   "/v3/projects/{id}". A trailing slash in the request is ignored. Handlers are called on
// an I/O thread and may block for short work (store reads/writes); see docs/architecture.md.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace concord::http {

using Handler = std::function<Response(Request&)>;

// Builds the family's error body for an HTTP status and a message.
using ErrorFormatter = std::function<Response(int status, std::string_view message)>;

// A generic {"error":{"code","title","message"}} body (Keystone's shape).
Response keystone_style_error(int status, std::string_view message);
std::string_view status_title(int status);

class RouteTable {
 public:
  // `name` labels metrics ("identity:GET /v3/projects/{id}"); defaults to method + pattern.
  void add(Method method, std::string pattern, Handler handler, std::string name = {});

  struct Match {
    const Handler* handler = nullptr;
    const std::string* name = nullptr;
    std::vector<std::string> params;
    std::vector<Method> allowed;  // filled when the path matched but the method did not
  };
  // `path` is the raw (still percent-encoded) path below the mount prefix; literal segments
  // compare against, and params hold, the percent-decoded segments. HEAD falls back to the GET
  // route when there is no HEAD route; `allowed` lists HEAD wherever GET is allowed.
  Match match(Method method, std::string_view path) const;

 private:
  struct Route {
    Method method;
    std::vector<std::string> segments;  // "{}" marks a parameter
    std::string name;
    Handler handler;
  };
  std::vector<Route> routes_;
};

class Router {
 public:
  // Mounts a table under a prefix ("" for the root). Longest prefix wins.
  void mount(std::string prefix, std::shared_ptr<RouteTable> table, ErrorFormatter errors);

  // Fills req.path/params, calls the handler or produces 404/405. `route_name` receives the
  // metrics label ("unmatched" when nothing matched).
  //
  // Reads the raw path and query from req.target (or from req.path when target is empty, for
  // callers that build a Request by hand), fills req.query, and appends the mount prefix to
  // req.base_url (the server puts the origin there). A handler that throws is logged and
  // answered 500 in the mount's format. For HEAD the body is dropped and its length kept in a
  // content-length header.
  Response dispatch(Request& req, std::string& route_name) const;

  // The error formatter for the mount that owns this raw path (for errors the server raises
  // before routing: 413, 400 on bad framing, timeouts).
  Response error_for(std::string_view raw_path, int status, std::string_view message) const;

 private:
  struct Mount {
    std::string prefix;
    std::shared_ptr<RouteTable> table;
    ErrorFormatter errors;
  };
  const Mount* find(std::string_view path) const;
  Response route(Request& req, std::string_view raw_path, std::string& route_name) const;
  std::vector<Mount> mounts_;
};

}  // namespace concord::http

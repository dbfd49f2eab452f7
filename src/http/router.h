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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace concord::http {

using Handler = std::function<Response(Request&)>;

// Deferred responses: a route whose handler answers later, from any thread, without holding the
// server's I/O thread while it waits (the inference gateway waiting for a replica; later the
// database proxy and long-polls).
//
// Why this shape: the smallest thing a handler needs is "a way to answer once", so that is all
// a Responder is: a copyable, thread-safe, call-once function. The connection that waits is not
// exposed (no socket, no Beast, no executor), so capabilities stay free of networking headers,
// and the same handler runs under the server (non-blocking) and under Router::dispatch (which
// waits for the answer, for tests and for the synchronous session driver). A Responder that is
// destroyed without being called answers 500 in the mount's format, so a lost callback can
// never leave a client hanging.
//
// Rules for a DeferredHandler:
//   * `req` is valid only during the call: copy (or move out) what the answer needs.
//   * Call the Responder exactly once, from any thread; later calls are ignored. It never
//     blocks and never throws; the connection's own thread writes the response.
//   * Work done before returning still runs on the I/O thread: keep it short (the same rule as
//     for a Handler); the waiting is what moves off the thread.
//   * After the client went away the answer is discarded; the handler is not told.
class Responder {
 public:
  Responder() = default;
  // `deliver` receives the one answer; `on_drop` builds the answer sent when every copy of the
  // Responder is destroyed without being called.
  Responder(std::function<void(Response)> deliver, std::function<Response()> on_drop);

  // The first call delivers; later calls (and calls on a default-constructed one) do nothing.
  void operator()(Response response) const;
  // Whether an answer was delivered (by any copy).
  bool answered() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};
using DeferredHandler = std::function<void(Request&, Responder)>;
// Where the server wants a deferred route's answer delivered (see Router::dispatch).
using DeferredSink = std::function<void(Response)>;

// Builds the family's error body for an HTTP status and a message.
using ErrorFormatter = std::function<Response(int status, std::string_view message)>;

// A generic {"error":{"code","title","message"}} body (Keystone's shape).
Response keystone_style_error(int status, std::string_view message);
std::string_view status_title(int status);

class RouteTable {
 public:
  // `name` labels metrics ("identity:GET /v3/projects/{id}"); defaults to method + pattern.
  void add(Method method, std::string pattern, Handler handler, std::string name = {});
  // A route whose handler answers through a Responder (see above).
  void add_deferred(Method method, std::string pattern, DeferredHandler handler,
                    std::string name = {});

  struct Match {
    const Handler* handler = nullptr;           // set for a synchronous route
    const DeferredHandler* deferred = nullptr;  // set instead for a deferred route
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
    DeferredHandler deferred;  // set instead of handler for a deferred route
  };
  void add_route(Method method, std::string pattern, Handler handler, DeferredHandler deferred,
                 std::string name);
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
  //
  // A deferred route is waited for here (the calling thread blocks until the handler's
  // Responder is called or dropped): tests and the synchronous session driver use this.
  Response dispatch(Request& req, std::string& route_name) const;

  // The server's form: the same, except that a deferred route does not block. Then the
  // handler is given a Responder delivering (HEAD rule and 500-on-drop applied) to the sink
  // `defer()` returns, and nullopt is returned. `defer` is called only for deferred routes, so
  // synchronous requests pay nothing for the mechanism.
  std::optional<Response> dispatch(Request& req, std::string& route_name,
                                   const std::function<DeferredSink()>& defer) const;

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
  std::optional<Response> route(Request& req, std::string_view raw_path, std::string& route_name,
                                const std::function<DeferredSink()>* defer) const;
  std::vector<Mount> mounts_;
};

}  // namespace concord::http

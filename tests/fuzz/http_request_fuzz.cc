// Arbitrary bytes as a client connection: parsing, limits, routing, handlers and serialisation
// must not crash, leak or hang, and what the server writes must always be well-formed HTTP
// whose JSON bodies are valid UTF-8 JSON.
//
// The first input byte picks how the rest is delivered (all at once or in small pieces), so
// the fuzzer also explores the parser's incremental paths.
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

#include "base/json.h"
#include "http/router.h"
#include "http/server.h"
#include "http/testing.h"

namespace {

using namespace concord;
using namespace concord::http;

Response nova_error(int status, std::string_view message) {
  Json body = {{status == 404 ? "itemNotFound" : "computeFault",
                {{"code", status}, {"message", sanitize_utf8(message)}}}};
  return Response::json(status, dump_json(body));
}

const Router& router() {
  static const std::shared_ptr<Router> r = [] {
    auto identity = std::make_shared<RouteTable>();
    identity->add(Method::kGet, "/v3/projects/{id}", [](Request& req) {
      return Response::json(200, dump_json(Json{{"id", req.params.at(0)},
                                                {"base_url", req.base_url},
                                                {"query", req.query_params()}}));
    });
    identity->add(Method::kPost, "/v3/auth/tokens", [](Request& req) {
      auto parsed = parse_json(req.body);
      if (!parsed) return keystone_style_error(400, parsed.error().message());
      Response r = Response::json(201, dump_json(*parsed));
      r.set_header("X-Subject-Token", std::string(req.header("x-auth-token")));
      return r;
    });
    identity->add(Method::kGet, "/v3/users/{id}/groups/{gid}", [](Request& req) {
      if (req.params.at(0) == "throw") throw std::runtime_error("handler bug");
      return Response::json(200, dump_json(Json{{"u", req.params.at(0)}, {"g", req.params[1]}}));
    });
    identity->add(Method::kDelete, "/v3/projects/{id}",
                  [](Request&) { return Response::empty(204); });
    auto compute = std::make_shared<RouteTable>();
    compute->add(Method::kGet, "/v2.1/servers",
                 [](Request&) { return Response::json(200, R"({"servers":[]})"); });
    auto r = std::make_shared<Router>();
    r->mount("/identity", identity, keystone_style_error);
    r->mount("/compute", compute, nova_error);
    r->mount("", std::make_shared<RouteTable>(), keystone_style_error);
    return r;
  }();
  return *r;
}

[[noreturn]] void invariant_failed(const char* what, std::string_view wire) {
  std::fprintf(stderr, "invariant failed: %s\n--- wire ---\n%.*s\n", what,
               static_cast<int>(wire.size()), wire.data());
  std::abort();
}

// Every response the server writes parses as HTTP/1.1 on its own (no trailing or missing
// bytes), carries the headers every response must, and holds valid JSON when it says JSON.
void check_part(const testing::WrittenResponse& part) {
  namespace bhttp = boost::beast::http;
  std::string_view bytes = part.bytes;
  if (bytes == "HTTP/1.1 100 Continue\r\n\r\n") return;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.eager(true);
  parser.body_limit(16 * 1024 * 1024);
  if (part.head) parser.skip(true);
  boost::beast::error_code ec;
  size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec || !parser.is_done()) invariant_failed("response does not parse", bytes);
  if (used != bytes.size()) invariant_failed("bytes after the response", bytes);
  const auto& msg = parser.get();
  if (!msg.count("x-openstack-request-id")) invariant_failed("no request id", bytes);
  if (!msg.count(bhttp::field::date)) invariant_failed("no Date", bytes);
  if (msg[bhttp::field::content_type] == "application/json" && !msg.body().empty() &&
      !parse_json(msg.body()).has_value()) {
    invariant_failed("JSON body does not parse", bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const ServerOptions options = [] {
    ServerOptions o;
    o.max_header_bytes = 2048;
    o.max_body_bytes = 4096;
    return o;
  }();
  size_t chunk = data[0] % 4 == 0 ? 0 : data[0] % 16 + 1;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  for (const auto& part : testing::serve_raw_connection_parts(router(), bytes, options, chunk)) {
    check_part(part);
  }

  Response first = testing::handle_raw_request(router(), bytes, options, chunk);
  if (first.status < 100 || first.status > 599) invariant_failed("bad status", first.body);
  if (first.header("content-type") == "application/json" && !first.body.empty() &&
      !parse_json(first.body).has_value()) {
    invariant_failed("first response JSON does not parse", first.body);
  }
  return 0;
}

// A server with one trivial route, for measuring throughput by hand:
//   http_load_target [port] [threads]   then   wrk -t2 -c64 -d5s http://127.0.0.1:PORT/v3/ping
// Prints the port and serves until stdin closes.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "base/log.h"
#include "http/router.h"
#include "http/server.h"

int main(int argc, char** argv) {
  using namespace concord::http;
  concord::set_log_level("warn");
  auto table = std::make_shared<RouteTable>();
  table->add(Method::kGet, "/v3/ping",
             [](Request&) { return Response::json(200, R"({"pong":true})"); });
  table->add(Method::kGet, "/v3/items/{id}", [](Request& req) {
    return Response::json(200, "{\"id\":\"" + req.params[0] + "\"}");
  });
  auto router = std::make_shared<Router>();
  router->mount("", table, keystone_style_error);
  ServerOptions options;
  options.port = argc > 1 ? static_cast<uint16_t>(std::stoi(argv[1])) : 0;
  options.threads = argc > 2 ? std::stoi(argv[2]) : 2;
  Server server(options, router, std::make_shared<Registry>());
  if (auto st = server.start(); !st) {
    std::fprintf(stderr, "%s\n", st.error().to_string().c_str());
    return 1;
  }
  std::printf("%u\n", server.port());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  server.stop();
  return 0;
}

#pragma once
// The HTTP/1.1 server on Boost.Asio/Beast: keep-alive, bounded header and body sizes (413),
// header and body read timeouts, graceful shutdown, x-openstack-request-id on every response,
// /healthz and /metrics. Beast stays inside server.cc so capabilities never include it.
//
// Threading: `threads` I/O threads run one io_context; each connection is served by one
// thread at a time; handlers run on the I/O thread (they may block briefly on the store).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "http/metrics.h"
#include "http/router.h"

namespace concord::http {

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;  // 0: pick a free port (tests); see Server::port()
  int threads = 4;
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1024 * 1024;
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds shutdown_grace{5'000};
  // Returns whether the process is healthy (for /healthz); nullptr means always healthy.
  std::function<bool()> health;
};

class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router,
         std::shared_ptr<Registry> metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts the I/O threads; returns once the socket accepts connections.
  [[nodiscard]] Status start();
  // The bound port (after start()).
  uint16_t port() const;
  // Stops accepting, lets in-flight requests finish up to shutdown_grace, then closes.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::http

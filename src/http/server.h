#pragma once
// The HTTP/1.1 server on Boost.Asio/Beast: keep-alive, bounded header and body sizes (413),
// header and body read timeouts, graceful shutdown, x-openstack-request-id on every response,
// /healthz and /metrics. Beast stays inside server.cc so capabilities never include it.
//
// Threading: `threads` I/O threads run one io_context; each connection is served by one
// thread at a time; handlers run on the I/O thread (they may block briefly on the store).
// Deferred routes (router.h) answer later from any thread; while one holds a request its
// connection holds no thread and reads no further request (answers stay in order).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "http/metrics.h"
#include "http/router.h"

namespace concord::http {

// Where a request body goes when it is too large to hold in memory (image uploads): a file in
// `dir`, bounded by `max_bytes` instead of ServerOptions::max_body_bytes.
struct StreamedBody {
  std::string dir;
  uint64_t max_bytes = 0;
};
// Decides, from the request line alone (method and raw path including the mount prefix,
// without the query), whether a request's body is spooled to disk. The handler then finds the
// file in Request::body_file; the server deletes what is left of it after the response.
using StreamedBodyHook =
    std::function<std::optional<StreamedBody>(Method method, std::string_view raw_path)>;

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
  // nullptr: every body is buffered in memory. For streamed requests and for responses with a
  // body_file, body_timeout bounds each period without progress rather than the whole transfer.
  StreamedBodyHook streamed_body;
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

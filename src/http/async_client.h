#pragma once
// An asynchronous HTTP/1.1 client for proxies: many requests in flight on a few threads, with a
// pool of keep-alive connections per origin. Where HttpClient blocks its caller (one request per
// thread), this one takes a callback, so a gateway can forward hundreds of requests without a
// thread each; the inference gateway uses it towards replicas, answering its clients through
// deferred responses (router.h).
//
// Design: one io_context run by `threads` threads owned by the client. Each request is one
// operation on its own strand (the connection's executor): take an idle pooled connection to
// the origin (or connect), write, read, return the connection to the pool when the reply allows
// keep-alive. A deadline timer on the same strand closes the socket when `timeout` passes. A
// pooled connection the peer closed while idle is detected before use (a peek that sees EOF),
// and a pooled connection that fails before any reply byte arrives is retried once on a fresh
// connection, which is not the peer's failure. Plain http only (loopback or a private network).
//
// Threading: request() may be called from any thread; callbacks run on the client's threads,
// must not block, and may call request() again (a retry on another origin). Destroying the
// client stops its threads; callbacks of requests still running are then destroyed without
// being called (a Responder captured in one answers its client 500, see router.h).
// Beast stays inside async_client.cc.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "http/client.h"

namespace concord::http {

struct AsyncClientOptions {
  int threads = 1;
  // Idle keep-alive connections kept per origin; more are closed after use.
  size_t max_idle_per_origin = 64;
  uint64_t max_body_bytes = 64ull * 1024 * 1024;
};

class AsyncHttpClient {
 public:
  // Errors as HttpClient::request: kUnavailable when the origin cannot be reached or the
  // connection broke (retry, possibly elsewhere), kDeadlineExceeded when `timeout` passed,
  // kInvalidArgument for a bad URL or method; HTTP error statuses are a successful HttpReply.
  using Callback = std::function<void(Result<HttpReply>)>;

  // kInvalidArgument when threads < 1.
  [[nodiscard]] static Result<std::unique_ptr<AsyncHttpClient>> create(
      AsyncClientOptions options = {});
  ~AsyncHttpClient();
  AsyncHttpClient(const AsyncHttpClient&) = delete;
  AsyncHttpClient& operator=(const AsyncHttpClient&) = delete;

  // `base_url` "http://host:port[/prefix]"; `target` is appended to its prefix. `done` is
  // called exactly once, on a client thread (also for argument errors), unless the client is
  // destroyed first.
  void request(std::string_view base_url, std::string_view method, std::string_view target,
               std::string body, std::vector<std::pair<std::string, std::string>> headers,
               std::chrono::milliseconds timeout, Callback done);

  // Idle pooled connections over all origins (for tests and metrics).
  size_t idle_connections() const;
  // Connections opened so far (for tests: keep-alive reuse means few).
  uint64_t connections_opened() const;

  class Impl;

 private:
  explicit AsyncHttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::http

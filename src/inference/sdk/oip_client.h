#pragma once
// The device SDK's side of the Open Inference Protocol: binary-tensor infer calls to an endpoint
// (or a replica), a health probe for the round-trip time, and the server's cost headers
// (model_server.h: concord-queue-time-us, concord-compute-time-us, concord-batch-size) that
// the planner turns into a load estimate. Every call is timed here, on a steady clock, because
// the planner's bandwidth estimate comes from real calls' sizes and durations.
//
// Threading: one client per thread (it owns one keep-alive HttpClient connection).
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "http/client.h"
#include "inference/runtime/tensor.h"

namespace concord::inference::sdk {

// What the server said about one call; -1 / 0 when a header was absent (an endpoint that does
// not report costs).
struct ServerTiming {
  int64_t queue_us = -1;
  int64_t compute_us = -1;
  int batch_size = 0;
  bool known() const { return compute_us >= 0 && queue_us >= 0; }
};

struct InferCall {
  std::vector<Tensor> outputs;
  ServerTiming server;
  uint64_t bytes_up = 0;    // request body
  uint64_t bytes_down = 0;  // response body
  double elapsed_ms = 0;    // request sent to response parsed
};

class OipClient {
 public:
  // `base_url`: "http://host:port[/prefix]" of the endpoint; `token` is sent as X-Auth-Token
  // when not empty. kInvalidArgument for a malformed URL.
  [[nodiscard]] static Result<std::unique_ptr<OipClient>> create(
      std::string_view base_url, std::string token,
      std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // POST /v2/models/{model}/infer with binary tensors. Errors: the server's OIP error mapped
  // to its code (400 kInvalidArgument, 401 kUnauthenticated, 403 kPermissionDenied,
  // 404 kNotFound, 503 kUnavailable, 504 kDeadlineExceeded, other kInternal) with the
  // server's message; transport errors as HttpClient reports them (kUnavailable,
  // kDeadlineExceeded); kInvalidArgument for a response that is not OIP.
  [[nodiscard]] Result<InferCall> infer(std::string_view model, std::span<const Tensor> inputs);

  // GET /v2/health/ready; the elapsed milliseconds. kUnavailable when not ready.
  [[nodiscard]] Result<double> ping();

 private:
  OipClient(std::unique_ptr<http::HttpClient> http, std::string token,
            std::chrono::milliseconds timeout)
      : http_(std::move(http)), token_(std::move(token)), timeout_(timeout) {}
  std::vector<std::pair<std::string, std::string>> headers() const;

  std::unique_ptr<http::HttpClient> http_;
  std::string token_;
  std::chrono::milliseconds timeout_;
};

// The Code for an OIP HTTP error status (as above).
Code code_for_status(int status);

}  // namespace concord::inference::sdk

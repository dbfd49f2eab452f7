#include "inference/sdk/oip_client.h"

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "inference/serving/oip.h"

namespace concord::inference::sdk {
namespace {

using Steady = std::chrono::steady_clock;

double ms_since(Steady::time_point start) {
  return std::chrono::duration<double, std::milli>(Steady::now() - start).count();
}

int64_t header_int(const http::HttpReply& reply, std::string_view name, int64_t absent) {
  const std::string v = reply.header(name);
  int64_t out = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size()) return absent;
  return out;
}

// The OIP error body's message, or the start of the body when it is not one.
std::string error_message(const http::HttpReply& reply) {
  auto json = parse_json(reply.body);
  if (json && json->is_object() && json->contains("error") && (*json)["error"].is_string()) {
    return (*json)["error"].get<std::string>();
  }
  return reply.body.substr(0, 200);
}

}  // namespace

Code code_for_status(int status) {
  switch (status) {
    case 400: return Code::kInvalidArgument;
    case 401: return Code::kUnauthenticated;
    case 403: return Code::kPermissionDenied;
    case 404: return Code::kNotFound;
    case 503: return Code::kUnavailable;
    case 504: return Code::kDeadlineExceeded;
    default: return Code::kInternal;
  }
}

Result<std::unique_ptr<OipClient>> OipClient::create(std::string_view base_url, std::string token,
                                                     std::chrono::milliseconds timeout) {
  CONCORD_ASSIGN_OR_RETURN(auto http, http::HttpClient::create(base_url));
  return std::unique_ptr<OipClient>(new OipClient(std::move(http), std::move(token), timeout));
}

std::vector<std::pair<std::string, std::string>> OipClient::headers() const {
  std::vector<std::pair<std::string, std::string>> h;
  if (!token_.empty()) h.emplace_back("X-Auth-Token", token_);
  return h;
}

Result<InferCall> OipClient::infer(std::string_view model, std::span<const Tensor> inputs) {
  const auto start = Steady::now();
  oip::EncodedMessage msg = oip::encode_infer_request(inputs, /*binary=*/true);
  auto h = headers();
  h.emplace_back("Content-Type", msg.content_type);
  if (msg.header_length) {
    h.emplace_back(std::string(oip::kHeaderLengthHeader), std::to_string(*msg.header_length));
  }
  InferCall call;
  call.bytes_up = msg.body.size();
  CONCORD_ASSIGN_OR_RETURN(
      const http::HttpReply reply,
      http_->request("POST", fmt::format("/v2/models/{}/infer", model), msg.body, h, timeout_));
  call.bytes_down = reply.body.size();
  if (reply.status != 200) {
    return fail(code_for_status(reply.status), fmt::format("model '{}' answered {}: {}", model,
                                                           reply.status, error_message(reply)));
  }
  std::optional<size_t> header_length;
  const std::string hl = reply.header(oip::kHeaderLengthHeader);
  if (!hl.empty()) {
    size_t v = 0;
    const auto [end, ec] = std::from_chars(hl.data(), hl.data() + hl.size(), v);
    if (ec != std::errc() || end != hl.data() + hl.size() || v > reply.body.size()) {
      return fail(Code::kInvalidArgument, fmt::format("model '{}' sent a bad {} header '{}'", model,
                                                      oip::kHeaderLengthHeader, hl));
    }
    header_length = v;
  }
  CONCORD_ASSIGN_OR_RETURN(call.outputs, oip::parse_infer_response(reply.body, header_length));
  call.server.queue_us = header_int(reply, "concord-queue-time-us", -1);
  call.server.compute_us = header_int(reply, "concord-compute-time-us", -1);
  call.server.batch_size = static_cast<int>(header_int(reply, "concord-batch-size", 0));
  call.elapsed_ms = ms_since(start);
  return call;
}

Result<double> OipClient::ping() {
  const auto start = Steady::now();
  CONCORD_ASSIGN_OR_RETURN(const http::HttpReply reply,
                           http_->request("GET", "/v2/health/ready", "", headers(), timeout_));
  if (reply.status != 200) {
    return fail(Code::kUnavailable,
                fmt::format("endpoint not ready ({}): {}", reply.status, error_message(reply)));
  }
  return ms_since(start);
}

}  // namespace concord::inference::sdk

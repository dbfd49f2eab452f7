#pragma once
// The Open Inference Protocol v2 (KServe / Triton REST) wire format: infer requests and
// responses with JSON tensors (flat or nested `data`) and the binary tensor extension
// (`parameters.binary_data_size` per tensor, the JSON header's length in the
// `Inference-Header-Content-Length` header, tensor bytes appended after the header in order),
// the model metadata document and the error body `{"error": "<message>"}`.
//
// Both sides live here so the replica, the endpoint gateway, the device SDK and the benchmarks
// speak exactly the same protocol: the server parses requests and encodes responses, a client
// encodes requests and parses responses.
//
// Why not a library: no Debian package implements OIP in C++ (Triton's client library is not
// packaged and pulls gRPC); the format is small and is parsed with nlohmann-json.
//
// Errors are kInvalidArgument with a message fit for the OIP error body (it names the tensor and
// what is wrong: "input 'input': expected 784 elements for shape [1,1,28,28], got 783").
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "http/message.h"
#include "inference/runtime/runtime.h"
#include "inference/runtime/tensor.h"

namespace concord::inference::oip {

inline constexpr std::string_view kHeaderLengthHeader = "inference-header-content-length";
inline constexpr std::string_view kBinaryContentType = "application/octet-stream";

struct Limits {
  uint64_t max_elements_per_tensor = uint64_t{1} << 26;
  size_t max_tensors = 64;
  size_t max_rank = 16;  // dimensions per tensor shape
};

// What a client asks to get back for one output.
struct RequestedOutput {
  std::string name;
  bool binary_data = false;
};

struct InferRequest {
  std::string id;                        // echoed in the response when present
  std::vector<Tensor> inputs;            // data as contiguous little-endian bytes
  std::vector<RequestedOutput> outputs;  // empty: every output, JSON unless binary_data_output
  bool binary_data_output = false;       // request-level parameters.binary_data_output
};

// Parses a request body. `header_length` is the Inference-Header-Content-Length value (nullopt
// when the header is absent: the whole body is JSON). Checks every input against `metadata`:
// known name, no duplicate, the model's datatype, the rank and fixed dimensions, the element
// count (JSON `data`, nested or flat, with numbers of the right kind and range; BOOL as true or
// false) or the byte size (binary_data_size, which must add up to the binary section), and that
// requested outputs exist. kInvalidArgument otherwise.
[[nodiscard]] Result<InferRequest> parse_infer_request(std::string_view body,
                                                       std::optional<size_t> header_length,
                                                       const ModelMetadata& metadata,
                                                       const Limits& limits = {});

// The header value as sent (digits only, at most the body size); kInvalidArgument otherwise.
[[nodiscard]] Result<std::optional<size_t>> header_length_of(const http::Request& req);

struct EncodedMessage {
  std::string body;
  std::optional<size_t> header_length;  // set when a binary section follows the JSON header
  std::string content_type;             // application/json or application/octet-stream
};

// The response for `outputs` (in the model's order): binary for the outputs the request asked
// in binary (or all, with binary_data_output), JSON `data` (flat) otherwise.
EncodedMessage encode_infer_response(std::string_view model_name, std::string_view model_version,
                                     const InferRequest& request, std::span<const Tensor> outputs);

// An http::Response carrying `message`: status 200, content type and
// Inference-Header-Content-Length when binary.
http::Response to_response(EncodedMessage message);

// Client side: a request for `inputs`; binary sends every input with the binary extension and
// asks every output back in binary.
EncodedMessage encode_infer_request(std::span<const Tensor> inputs, bool binary,
                                    std::string_view id = {});
// Client side: the outputs of a response (JSON or binary), with the datatypes and shapes it
// states. kInvalidArgument for a malformed response.
[[nodiscard]] Result<std::vector<Tensor>> parse_infer_response(std::string_view body,
                                                               std::optional<size_t> header_length);

// GET /v2/models/{name}[/versions/{v}]: {name, versions, platform "onnx", inputs, outputs}
// with OIP tensor metadata (name, datatype, shape with -1).
Json model_metadata_json(std::string_view name, std::span<const std::string> versions,
                         const ModelMetadata& metadata);

// {"error": "<message>"} with `status`, as every OIP route answers errors.
http::Response error(int status, std::string_view message);
// The OIP status for a Result error: kInvalidArgument 400, kNotFound 404, kUnauthenticated 401,
// kPermissionDenied 403, kResourceExhausted and kUnavailable 503, kDeadlineExceeded 504,
// everything else 500.
int status_for(Code code);

}  // namespace concord::inference::oip

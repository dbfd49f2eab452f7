#pragma once
// A tensor as the Open Inference Protocol v2 carries it: a name, an OIP datatype name, a shape
// and the elements as contiguous row-major little-endian bytes (what the binary tensor
// extension sends), so the HTTP layer can hand bytes through without a conversion.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::inference {

struct Tensor {
  std::string name;
  std::string datatype;  // "FP32", "INT64", ... (OIP names)
  std::vector<int64_t> shape;
  std::string data;  // element bytes; no alignment is assumed: read with memcpy

  // FP32 helpers for tests and callers that build tensors by hand.
  static Tensor fp32(std::string name, std::vector<int64_t> shape, std::span<const float> values);
  // The elements as floats; empty when datatype is not FP32.
  std::vector<float> to_floats() const;
};

// Bytes per element of an OIP datatype; nullopt for BYTES (variable length) or an unknown name.
std::optional<size_t> datatype_size(std::string_view datatype);

// Number of elements of `shape`; kInvalidArgument when a dimension is negative or the product
// is over `max_elements`.
[[nodiscard]] Result<uint64_t> element_count(std::span<const int64_t> shape,
                                             uint64_t max_elements = uint64_t{1} << 32);

// Checks that `tensor.data` holds exactly the bytes its datatype and shape say; the message
// names the tensor. kInvalidArgument otherwise.
[[nodiscard]] Status check_tensor_size(const Tensor& tensor);

}  // namespace concord::inference

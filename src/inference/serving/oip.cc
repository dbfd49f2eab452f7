#include "inference/serving/oip.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <ranges>

namespace concord::inference::oip {
namespace {

// The OIP datatypes, decoded once per tensor so the per-element loops switch on an enum.
enum class DType { kBool, kU8, kU16, kU32, kU64, kI8, kI16, kI32, kI64, kF16, kF32, kF64, kBytes };

std::optional<DType> dtype_of(std::string_view name) {
  static constexpr std::pair<std::string_view, DType> kNames[] = {
      {"BOOL", DType::kBool},  {"UINT8", DType::kU8},   {"UINT16", DType::kU16},
      {"UINT32", DType::kU32}, {"UINT64", DType::kU64}, {"INT8", DType::kI8},
      {"INT16", DType::kI16},  {"INT32", DType::kI32},  {"INT64", DType::kI64},
      {"FP16", DType::kF16},   {"FP32", DType::kF32},   {"FP64", DType::kF64},
      {"BYTES", DType::kBytes}};
  for (const auto& [n, d] : kNames) {
    if (n == name) return d;
  }
  return std::nullopt;
}

size_t size_of(DType d) {
  switch (d) {
    case DType::kBool:
    case DType::kU8:
    case DType::kI8: return 1;
    case DType::kU16:
    case DType::kI16:
    case DType::kF16: return 2;
    case DType::kU32:
    case DType::kI32:
    case DType::kF32: return 4;
    case DType::kU64:
    case DType::kI64:
    case DType::kF64: return 8;
    case DType::kBytes: return 0;
  }
  return 0;
}

// Tensor bytes are little-endian on the wire and in Tensor::data; every machine Concord runs on
// is little-endian, so memcpy is the conversion. Fail the build rather than corrupt data.
static_assert(std::endian::native == std::endian::little, "OIP tensor bytes are little-endian");

template <typename T>
void put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

template <typename T>
T get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

float half_to_float(uint16_t h) {
  const int sign = (h >> 15) != 0 ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return static_cast<float>(sign * std::ldexp(static_cast<double>(mant), -24));
  if (exp == 31) {
    return mant == 0 ? static_cast<float>(sign) * std::numeric_limits<float>::infinity()
                     : std::numeric_limits<float>::quiet_NaN();
  }
  return static_cast<float>(sign * std::ldexp(static_cast<double>(mant + 1024), exp - 25));
}

// Round to nearest, ties to even; nullopt when the value does not fit (it would become inf).
std::optional<uint16_t> float_to_half(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return std::nullopt;  // inf or NaN
  if (abs < 0x38800000) {                      // below the smallest normal half, 2^-14
    // Scaling by 2^24 is exact; nearbyint rounds ties to even in the default mode. 1024 is the
    // smallest normal's encoding, so the carry is right.
    const auto m = static_cast<uint16_t>(std::nearbyint(std::bit_cast<float>(abs) * 16777216.0f));
    return static_cast<uint16_t>(sign | m);
  }
  const uint32_t mant = abs & 0x7fffff;
  const int exp = static_cast<int>(abs >> 23) - 127 + 15;
  if (exp >= 31) return std::nullopt;
  uint32_t h = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1) != 0)) ++h;
  if (h >= 0x7c00) return std::nullopt;
  return static_cast<uint16_t>(sign | h);
}

std::string shape_text(std::span<const int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

template <typename T>
bool append_int(const Json& v, std::string& out) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
    put<T>(out, static_cast<T>(u));
    return true;
  }
  const auto i = v.get<int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (i < 0 || static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      return false;
    }
  } else {
    if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        i > static_cast<int64_t>(std::numeric_limits<T>::max())) {
      return false;
    }
  }
  put<T>(out, static_cast<T>(i));
  return true;
}

// Appends one JSON element in `d`'s byte form; the error names the element by its flat index.
Status append_element(DType d, std::string_view datatype, const Json& v, uint64_t index,
                      std::string_view what, std::string& out) {
  auto bad = [&](std::string_view why) {
    return fail(Code::kInvalidArgument, fmt::format("{}: element {} {}", what, index, why));
  };
  switch (d) {
    case DType::kBool:
      if (!v.is_boolean()) return bad("is not a boolean (BOOL takes true or false)");
      out.push_back(v.get<bool>() ? 1 : 0);
      return ok();
    case DType::kBytes: {
      if (!v.is_string()) return bad("is not a string (BYTES takes strings)");
      const auto& s = v.get_ref<const std::string&>();
      if (s.size() > std::numeric_limits<uint32_t>::max()) return bad("is too long");
      put<uint32_t>(out, static_cast<uint32_t>(s.size()));
      out.append(s);
      return ok();
    }
    case DType::kF16:
    case DType::kF32:
    case DType::kF64: {
      if (!v.is_number()) return bad("is not a number");
      const double x = v.get<double>();
      if (!std::isfinite(x)) return bad("is not a finite number");
      if (d == DType::kF64) {
        put<double>(out, x);
        return ok();
      }
      if (std::fabs(x) > static_cast<double>(std::numeric_limits<float>::max())) {
        return bad(fmt::format("is {}, out of range for {}", x, datatype));
      }
      if (d == DType::kF32) {
        put<float>(out, static_cast<float>(x));
        return ok();
      }
      const auto h = float_to_half(static_cast<float>(x));
      if (!h) return bad(fmt::format("is {}, out of range for FP16", x));
      put<uint16_t>(out, *h);
      return ok();
    }
    default: break;
  }
  if (!v.is_number_integer())
    return bad(fmt::format("is not an integer ({} takes integers)", datatype));
  bool fits = false;
  switch (d) {
    case DType::kU8: fits = append_int<uint8_t>(v, out); break;
    case DType::kU16: fits = append_int<uint16_t>(v, out); break;
    case DType::kU32: fits = append_int<uint32_t>(v, out); break;
    case DType::kU64: fits = append_int<uint64_t>(v, out); break;
    case DType::kI8: fits = append_int<int8_t>(v, out); break;
    case DType::kI16: fits = append_int<int16_t>(v, out); break;
    case DType::kI32: fits = append_int<int32_t>(v, out); break;
    case DType::kI64: fits = append_int<int64_t>(v, out); break;
    default: break;
  }
  if (!fits) return bad(fmt::format("is {}, out of range for {}", v.dump(), datatype));
  return ok();
}

// Walks nested `data` that must match `shape` exactly, appending the leaves in row-major order.
Status append_nested(DType d, std::string_view datatype, const Json& node,
                     std::span<const int64_t> shape, size_t depth, uint64_t& index,
                     std::string_view what, std::string& out) {
  if (depth == shape.size()) {
    if (node.is_array()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{}: nested data is deeper than shape {}", what, shape_text(shape)));
    }
    CONCORD_RETURN_IF_ERROR(append_element(d, datatype, node, index, what, out));
    ++index;
    return ok();
  }
  if (!node.is_array() || node.size() != static_cast<uint64_t>(shape[depth])) {
    return fail(Code::kInvalidArgument,
                fmt::format("{}: nested data does not match shape {} at dimension {} (expected "
                            "{} entries, got {})",
                            what, shape_text(shape), depth, shape[depth],
                            node.is_array() ? std::to_string(node.size()) : "a scalar"));
  }
  for (const Json& child : node) {
    CONCORD_RETURN_IF_ERROR(append_nested(d, datatype, child, shape, depth + 1, index, what, out));
  }
  return ok();
}

// Reads BYTES elements (4-byte little-endian length, then the bytes) and checks that exactly
// `count` of them fill `raw`.
Status check_bytes_elements(std::string_view raw, uint64_t count, std::string_view what) {
  uint64_t n = 0;
  size_t at = 0;
  while (at < raw.size()) {
    if (raw.size() - at < 4) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{}: BYTES element {} has a truncated length prefix", what, n));
    }
    const uint32_t len = get<uint32_t>(raw.data() + at);
    at += 4;
    if (len > raw.size() - at) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{}: BYTES element {} claims {} bytes but only {} remain", what, n,
                              len, raw.size() - at));
    }
    at += len;
    ++n;
    if (n > count) break;
  }
  if (n != count) {
    return fail(Code::kInvalidArgument,
                fmt::format("{}: binary data holds {}{} BYTES elements, the shape needs {}", what,
                            n > count ? "more than " : "", n > count ? count : n, count));
  }
  return ok();
}

// The binary section after the JSON header and how much of it the tensors used so far.
struct BinarySection {
  bool present = false;
  std::string_view bytes;
  size_t used = 0;
};

// Decodes one tensor object ({name, shape, datatype, parameters?, data?}). When `expect` is set
// the datatype and shape must agree with it. `kind` is "input" or "output", for messages.
Result<Tensor> decode_tensor(const Json& t, std::string_view kind, const TensorInfo* expect,
                             BinarySection& binary, const Limits& limits) {
  Tensor out;
  out.name = t["name"].get<std::string>();
  const std::string what = fmt::format("{} '{}'", kind, out.name);

  const auto dt_it = t.find("datatype");
  if (dt_it == t.end() || !dt_it->is_string()) {
    return fail(Code::kInvalidArgument, fmt::format("{} has no datatype string", what));
  }
  out.datatype = dt_it->get<std::string>();
  const auto dtype = dtype_of(out.datatype);
  if (!dtype) {
    return fail(Code::kInvalidArgument,
                fmt::format("{}: unknown datatype '{}'", what, sanitize_utf8(out.datatype)));
  }
  if (expect != nullptr && !expect->datatype.empty() && expect->datatype != out.datatype) {
    return fail(Code::kInvalidArgument, fmt::format("{} has datatype '{}', the model expects '{}'",
                                                    what, out.datatype, expect->datatype));
  }

  const auto shape_it = t.find("shape");
  if (shape_it == t.end() || !shape_it->is_array()) {
    return fail(Code::kInvalidArgument, fmt::format("{} has no shape array", what));
  }
  if (shape_it->size() > limits.max_rank) {
    return fail(Code::kInvalidArgument, fmt::format("{}: shape has {} dimensions, the limit is {}",
                                                    what, shape_it->size(), limits.max_rank));
  }
  for (const Json& dim : *shape_it) {
    if (!dim.is_number_integer() || (!dim.is_number_unsigned() && dim.get<int64_t>() < 0) ||
        (dim.is_number_unsigned() &&
         dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{}: shape must be an array of non-negative integers", what));
    }
    out.shape.push_back(dim.get<int64_t>());
  }
  if (expect != nullptr && expect->has_shape) {
    bool match = expect->shape.size() == out.shape.size();
    for (size_t i = 0; match && i < out.shape.size(); ++i) {
      match = expect->shape[i] < 0 || expect->shape[i] == out.shape[i];
    }
    if (!match) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{} has shape {}, the model expects {}", what, shape_text(out.shape),
                              shape_text(expect->shape)));
    }
  }
  auto count_or = element_count(out.shape, limits.max_elements_per_tensor);
  if (!count_or) {
    return fail(Code::kInvalidArgument,
                fmt::format("{}: shape {} has more than {} elements", what, shape_text(out.shape),
                            limits.max_elements_per_tensor));
  }
  const uint64_t count = *count_or;
  const size_t elem = size_of(*dtype);

  std::optional<uint64_t> binary_size;
  if (const auto p = t.find("parameters"); p != t.end()) {
    if (!p->is_object()) {
      return fail(Code::kInvalidArgument, fmt::format("{}: parameters must be an object", what));
    }
    if (const auto b = p->find("binary_data_size"); b != p->end()) {
      if (!b->is_number_unsigned() && !(b->is_number_integer() && b->get<int64_t>() >= 0)) {
        return fail(Code::kInvalidArgument,
                    fmt::format("{}: binary_data_size must be a non-negative integer", what));
      }
      binary_size = b->get<uint64_t>();
    }
  }
  const auto data_it = t.find("data");
  if (binary_size) {
    if (data_it != t.end()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{} has both data and parameters.binary_data_size", what));
    }
    if (!binary.present) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{} has parameters.binary_data_size but the message has no "
                              "Inference-Header-Content-Length header",
                              what));
    }
    const size_t left = binary.bytes.size() - binary.used;
    if (*binary_size > left) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{}: binary_data_size {} is beyond the binary data ({} bytes left)",
                              what, *binary_size, left));
    }
    const std::string_view raw = binary.bytes.substr(binary.used, *binary_size);
    if (*dtype == DType::kBytes) {
      CONCORD_RETURN_IF_ERROR(check_bytes_elements(raw, count, what));
    } else if (*binary_size != count * elem) {
      return fail(Code::kInvalidArgument,
                  fmt::format("{}: binary_data_size is {} bytes, shape {} of {} needs {}", what,
                              *binary_size, shape_text(out.shape), out.datatype, count * elem));
    }
    out.data.assign(raw);
    binary.used += raw.size();
    return out;
  }

  if (data_it == t.end()) {
    return fail(Code::kInvalidArgument,
                fmt::format("{} has no data (give data or parameters.binary_data_size)", what));
  }
  if (!data_it->is_array()) {
    return fail(Code::kInvalidArgument, fmt::format("{}: data must be an array", what));
  }
  const Json& data = *data_it;
  const bool nested = !data.empty() && data.front().is_array();
  if (elem != 0) out.data.reserve(count * elem);
  if (nested) {
    uint64_t index = 0;
    CONCORD_RETURN_IF_ERROR(
        append_nested(*dtype, out.datatype, data, out.shape, 0, index, what, out.data));
    return out;
  }
  if (data.size() != count) {
    return fail(Code::kInvalidArgument,
                fmt::format("{}: expected {} elements for shape {}, got {}", what, count,
                            shape_text(out.shape), data.size()));
  }
  uint64_t index = 0;
  for (const Json& v : data) {
    CONCORD_RETURN_IF_ERROR(append_element(*dtype, out.datatype, v, index, what, out.data));
    ++index;
  }
  return out;
}

// JSON elements of a tensor's bytes (flat). The tensor's size was checked by the caller.
Json elements_json(DType d, std::string_view data) {
  Json arr = Json::array();
  const char* p = data.data();
  const size_t elem = size_of(d);
  if (d == DType::kBytes) {
    size_t at = 0;
    while (at + 4 <= data.size()) {
      const uint32_t len = get<uint32_t>(p + at);
      at += 4;
      if (len > data.size() - at) break;
      arr.push_back(std::string(data.substr(at, len)));
      at += len;
    }
    return arr;
  }
  const size_t n = data.size() / elem;
  arr.get_ref<Json::array_t&>().reserve(n);
  for (size_t i = 0; i < n; ++i, p += elem) {
    switch (d) {
      case DType::kBool: arr.push_back(*p != 0); break;
      case DType::kU8: arr.push_back(get<uint8_t>(p)); break;
      case DType::kU16: arr.push_back(get<uint16_t>(p)); break;
      case DType::kU32: arr.push_back(get<uint32_t>(p)); break;
      case DType::kU64: arr.push_back(get<uint64_t>(p)); break;
      case DType::kI8: arr.push_back(get<int8_t>(p)); break;
      case DType::kI16: arr.push_back(get<int16_t>(p)); break;
      case DType::kI32: arr.push_back(get<int32_t>(p)); break;
      case DType::kI64: arr.push_back(get<int64_t>(p)); break;
      case DType::kF16: arr.push_back(static_cast<double>(half_to_float(get<uint16_t>(p)))); break;
      case DType::kF32: arr.push_back(static_cast<double>(get<float>(p))); break;
      case DType::kF64: arr.push_back(get<double>(p)); break;
      case DType::kBytes: break;
    }
  }
  return arr;
}

// Whether the tensor's bytes can go out as JSON data: the datatype is known, the size fits the
// shape, and every float is finite (JSON has no NaN or Infinity).
bool json_encodable(const Tensor& t) {
  const auto d = dtype_of(t.datatype);
  if (!d) return false;
  if (*d == DType::kBytes) {
    // Well-formed elements of valid UTF-8 only: JSON strings cannot carry arbitrary bytes.
    size_t at = 0;
    while (at < t.data.size()) {
      if (t.data.size() - at < 4) return false;
      const uint32_t len = get<uint32_t>(t.data.data() + at);
      at += 4;
      if (len > t.data.size() - at) return false;
      const std::string_view s(t.data.data() + at, len);
      if (sanitize_utf8(s) != s) return false;
      at += len;
    }
    return true;
  }
  if (!check_tensor_size(t)) return false;
  const size_t n = t.data.size() / size_of(*d);
  for (size_t i = 0; i < n; ++i) {
    const char* p = t.data.data() + i * size_of(*d);
    if (*d == DType::kF32 && !std::isfinite(get<float>(p))) return false;
    if (*d == DType::kF64 && !std::isfinite(get<double>(p))) return false;
    if (*d == DType::kF16 && ((get<uint16_t>(p) >> 10) & 0x1f) == 0x1f) return false;
  }
  return true;
}

// Encodes `tensors` as OIP tensor objects into `json_tensors`, binary ones appended to
// `binary`; returns whether any tensor went binary (then the message needs the header length,
// even when every binary tensor is empty).
bool encode_tensors(std::span<const Tensor* const> tensors, std::span<const char> as_binary,
                    Json& json_tensors, std::string& binary) {
  bool any_binary = false;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = *tensors[i];
    Json j = {{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}};
    // Tensors JSON cannot carry (NaN, inf, an unknown datatype) go binary rather than wrong.
    if (as_binary[i] != 0 || !json_encodable(t)) {
      j["parameters"] = {{"binary_data_size", t.data.size()}};
      binary.append(t.data);
      any_binary = true;
    } else {
      j["data"] = elements_json(*dtype_of(t.datatype), t.data);
    }
    json_tensors.push_back(std::move(j));
  }
  return any_binary;
}

EncodedMessage finish(const Json& header, std::string binary, bool any_binary) {
  EncodedMessage m;
  m.body = dump_json(header);
  if (!any_binary) {
    m.content_type = "application/json";
    return m;
  }
  m.header_length = m.body.size();
  m.body.append(binary);
  m.content_type = std::string(kBinaryContentType);
  return m;
}

// Splits a body into its JSON header and binary section.
Result<std::pair<std::string_view, BinarySection>> split_body(std::string_view body,
                                                              std::optional<size_t> header_length) {
  BinarySection binary;
  std::string_view json_text = body;
  if (header_length) {
    if (*header_length > body.size()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("Inference-Header-Content-Length {} is beyond the body's {} bytes",
                              *header_length, body.size()));
    }
    json_text = body.substr(0, *header_length);
    binary.present = true;
    binary.bytes = body.substr(*header_length);
  }
  return std::pair{json_text, binary};
}

Result<Json> parse_object(std::string_view text, std::string_view what) {
  // nlohmann stops at a NUL byte as if the text ended there, so "{...}\0<anything>" would pass;
  // JSON never holds a raw NUL, and the usual cause is binary data sent without its header.
  if (text.find('\0') != std::string_view::npos) {
    return fail(Code::kInvalidArgument,
                fmt::format("{} is not valid JSON: it holds a NUL byte (binary tensor data needs "
                            "the Inference-Header-Content-Length header)",
                            what));
  }
  auto j = parse_json(text);
  if (!j) {
    return fail(Code::kInvalidArgument,
                fmt::format("{} is not valid JSON: {}", what, j.error().message()));
  }
  if (!j->is_object()) {
    return fail(Code::kInvalidArgument, fmt::format("{} must be a JSON object", what));
  }
  return std::move(*j);
}

Status check_binary_used(const BinarySection& binary) {
  if (binary.used != binary.bytes.size()) {
    return fail(Code::kInvalidArgument,
                fmt::format("the binary data after the JSON header is {} bytes but the tensors' "
                            "binary_data_size add up to {}",
                            binary.bytes.size(), binary.used));
  }
  return ok();
}

Status check_named(const Json& t, std::string_view kind, size_t index) {
  if (!t.is_object()) {
    return fail(Code::kInvalidArgument, fmt::format("{}s[{}] must be an object", kind, index));
  }
  const auto n = t.find("name");
  if (n == t.end() || !n->is_string() || n->get_ref<const std::string&>().empty()) {
    return fail(Code::kInvalidArgument,
                fmt::format("{}s[{}] has no name (a non-empty string)", kind, index));
  }
  return ok();
}

std::string names_of(std::span<const TensorInfo> infos) {
  return fmt::format(
      "{}",
      fmt::join(infos | std::views::transform([](const TensorInfo& t) { return t.name; }), ", "));
}

}  // namespace

Result<InferRequest> parse_infer_request(std::string_view body, std::optional<size_t> header_length,
                                         const ModelMetadata& metadata, const Limits& limits) {
  CONCORD_ASSIGN_OR_RETURN(auto parts, split_body(body, header_length));
  auto& [json_text, binary] = parts;
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_object(json_text, "the inference request"));
  InferRequest req;
  if (const auto id = j.find("id"); id != j.end()) {
    if (!id->is_string()) {
      return fail(Code::kInvalidArgument, "the request id must be a string");
    }
    req.id = id->get<std::string>();
  }
  if (const auto p = j.find("parameters"); p != j.end()) {
    if (!p->is_object()) {
      return fail(Code::kInvalidArgument, "the request parameters must be an object");
    }
    if (const auto b = p->find("binary_data_output"); b != p->end()) {
      if (!b->is_boolean()) {
        return fail(Code::kInvalidArgument, "parameters.binary_data_output must be a boolean");
      }
      req.binary_data_output = b->get<bool>();
    }
  }
  const auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array()) {
    return fail(Code::kInvalidArgument, "the request has no inputs array");
  }
  if (inputs->size() > limits.max_tensors) {
    return fail(Code::kInvalidArgument, fmt::format("the request has {} inputs, the limit is {}",
                                                    inputs->size(), limits.max_tensors));
  }
  std::vector<bool> seen(metadata.inputs.size(), false);
  for (size_t i = 0; i < inputs->size(); ++i) {
    const Json& t = (*inputs)[i];
    CONCORD_RETURN_IF_ERROR(check_named(t, "input", i));
    const auto& name = t["name"].get_ref<const std::string&>();
    size_t index = metadata.inputs.size();
    for (size_t k = 0; k < metadata.inputs.size(); ++k) {
      if (metadata.inputs[k].name == name) index = k;
    }
    if (index == metadata.inputs.size()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("unknown input '{}'; the model's inputs are: {}", sanitize_utf8(name),
                              names_of(metadata.inputs)));
    }
    if (seen[index]) {
      return fail(Code::kInvalidArgument, fmt::format("input '{}' is given more than once", name));
    }
    seen[index] = true;
    CONCORD_ASSIGN_OR_RETURN(Tensor tensor,
                             decode_tensor(t, "input", &metadata.inputs[index], binary, limits));
    req.inputs.push_back(std::move(tensor));
  }
  for (size_t k = 0; k < metadata.inputs.size(); ++k) {
    if (!seen[k]) {
      return fail(Code::kInvalidArgument,
                  fmt::format("input '{}' is missing", metadata.inputs[k].name));
    }
  }
  CONCORD_RETURN_IF_ERROR(check_binary_used(binary));

  if (const auto outputs = j.find("outputs"); outputs != j.end()) {
    if (!outputs->is_array()) {
      return fail(Code::kInvalidArgument, "outputs must be an array");
    }
    if (outputs->size() > limits.max_tensors) {
      return fail(Code::kInvalidArgument,
                  fmt::format("the request asks for {} outputs, the limit is {}", outputs->size(),
                              limits.max_tensors));
    }
    for (size_t i = 0; i < outputs->size(); ++i) {
      const Json& o = (*outputs)[i];
      CONCORD_RETURN_IF_ERROR(check_named(o, "output", i));
      RequestedOutput ro;
      ro.name = o["name"].get<std::string>();
      const bool known = std::ranges::any_of(
          metadata.outputs, [&](const TensorInfo& info) { return info.name == ro.name; });
      if (!known) {
        return fail(Code::kInvalidArgument,
                    fmt::format("unknown output '{}'; the model's outputs are: {}",
                                sanitize_utf8(ro.name), names_of(metadata.outputs)));
      }
      if (std::ranges::any_of(req.outputs,
                              [&](const RequestedOutput& r) { return r.name == ro.name; })) {
        return fail(Code::kInvalidArgument,
                    fmt::format("output '{}' is requested more than once", ro.name));
      }
      ro.binary_data = req.binary_data_output;
      if (const auto p = o.find("parameters"); p != o.end()) {
        if (!p->is_object()) {
          return fail(Code::kInvalidArgument,
                      fmt::format("output '{}': parameters must be an object", ro.name));
        }
        if (const auto b = p->find("binary_data"); b != p->end()) {
          if (!b->is_boolean()) {
            return fail(
                Code::kInvalidArgument,
                fmt::format("output '{}': parameters.binary_data must be a boolean", ro.name));
          }
          ro.binary_data = b->get<bool>();
        }
      }
      req.outputs.push_back(std::move(ro));
    }
  }
  return req;
}

Result<std::optional<size_t>> header_length_of(const http::Request& req) {
  if (!req.has_header(kHeaderLengthHeader)) return std::optional<size_t>{};
  const std::string_view v = req.header(kHeaderLengthHeader);
  if (v.empty() || v.size() > 19 ||
      !std::ranges::all_of(v, [](char c) { return c >= '0' && c <= '9'; })) {
    return fail(Code::kInvalidArgument,
                fmt::format("Inference-Header-Content-Length '{}' is not a byte count",
                            sanitize_utf8(v.substr(0, 32))));
  }
  size_t n = 0;
  for (char c : v) n = n * 10 + static_cast<size_t>(c - '0');
  if (n > req.body.size()) {
    return fail(Code::kInvalidArgument,
                fmt::format("Inference-Header-Content-Length {} is beyond the body's {} bytes", n,
                            req.body.size()));
  }
  return std::optional<size_t>{n};
}

EncodedMessage encode_infer_response(std::string_view model_name, std::string_view model_version,
                                     const InferRequest& request, std::span<const Tensor> outputs) {
  Json header = {{"model_name", model_name}, {"model_version", model_version}};
  if (!request.id.empty()) header["id"] = request.id;
  std::vector<const Tensor*> chosen;
  std::vector<char> flags;
  if (request.outputs.empty()) {
    for (const Tensor& t : outputs) {
      chosen.push_back(&t);
      flags.push_back(request.binary_data_output ? 1 : 0);
    }
  } else {
    // In the model's order, whatever order the request listed them in.
    for (const Tensor& t : outputs) {
      for (const RequestedOutput& ro : request.outputs) {
        if (ro.name == t.name) {
          chosen.push_back(&t);
          flags.push_back(ro.binary_data ? 1 : 0);
        }
      }
    }
  }
  Json tensors = Json::array();
  std::string binary;
  const bool any_binary = encode_tensors(chosen, flags, tensors, binary);
  header["outputs"] = std::move(tensors);
  return finish(header, std::move(binary), any_binary);
}

http::Response to_response(EncodedMessage message) {
  http::Response r;
  r.status = 200;
  r.set_header("content-type", message.content_type);
  if (message.header_length) {
    r.set_header(std::string(kHeaderLengthHeader), std::to_string(*message.header_length));
  }
  r.body = std::move(message.body);
  return r;
}

EncodedMessage encode_infer_request(std::span<const Tensor> inputs, bool binary,
                                    std::string_view id) {
  Json header = Json::object();
  if (!id.empty()) header["id"] = id;
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : inputs) ptrs.push_back(&t);
  const std::vector<char> flags(inputs.size(), binary ? 1 : 0);
  Json tensors = Json::array();
  std::string bytes;
  const bool any_binary = encode_tensors(ptrs, flags, tensors, bytes);
  header["inputs"] = std::move(tensors);
  if (binary) header["parameters"] = {{"binary_data_output", true}};
  return finish(header, std::move(bytes), any_binary);
}

Result<std::vector<Tensor>> parse_infer_response(std::string_view body,
                                                 std::optional<size_t> header_length) {
  CONCORD_ASSIGN_OR_RETURN(auto parts, split_body(body, header_length));
  auto& [json_text, binary] = parts;
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_object(json_text, "the inference response"));
  if (const auto e = j.find("error"); e != j.end() && e->is_string()) {
    return fail(Code::kInvalidArgument,
                fmt::format("the response is an error: {}", e->get<std::string>()));
  }
  const auto outputs = j.find("outputs");
  if (outputs == j.end() || !outputs->is_array()) {
    return fail(Code::kInvalidArgument, "the response has no outputs array");
  }
  const Limits limits;
  if (outputs->size() > limits.max_tensors) {
    return fail(Code::kInvalidArgument, fmt::format("the response has {} outputs, the limit is {}",
                                                    outputs->size(), limits.max_tensors));
  }
  std::vector<Tensor> out;
  for (size_t i = 0; i < outputs->size(); ++i) {
    const Json& t = (*outputs)[i];
    CONCORD_RETURN_IF_ERROR(check_named(t, "output", i));
    CONCORD_ASSIGN_OR_RETURN(Tensor tensor, decode_tensor(t, "output", nullptr, binary, limits));
    out.push_back(std::move(tensor));
  }
  CONCORD_RETURN_IF_ERROR(check_binary_used(binary));
  return out;
}

Json model_metadata_json(std::string_view name, std::span<const std::string> versions,
                         const ModelMetadata& metadata) {
  auto tensors = [](std::span<const TensorInfo> infos) {
    Json arr = Json::array();
    for (const TensorInfo& t : infos) {
      arr.push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
    }
    return arr;
  };
  Json v = Json::array();
  for (const std::string& s : versions) v.push_back(s);
  return {{"name", name},
          {"versions", std::move(v)},
          {"platform", metadata.format.empty() ? std::string("onnx") : metadata.format},
          {"inputs", tensors(metadata.inputs)},
          {"outputs", tensors(metadata.outputs)}};
}

http::Response error(int status, std::string_view message) {
  return http::Response::json(status, dump_json(Json{{"error", message}}));
}

int status_for(Code code) {
  switch (code) {
    case Code::kInvalidArgument: return 400;
    case Code::kNotFound: return 404;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kResourceExhausted:
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

}  // namespace concord::inference::oip

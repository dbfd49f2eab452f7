#pragma once
// The protobuf wire format (protobuf's "Encoding" spec), as much of it as the ONNX reader and
// rewriter need, and the onnx.proto field numbers they use: a reader over a borrowed buffer that
// never recurses and never copies, and appenders for the writer. Internal to src/inference/onnx.
#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"

namespace concord::inference::wire {

// Protobuf wire types (protobuf encoding spec). Groups (3, 4) are deprecated and never written
// by ONNX exporters; skipping them needs recursion, so they are rejected.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  uint64_t varint = 0;     // kVarint
  std::string_view bytes;  // kLengthDelimited
};

// Reads one message's fields in order over a borrowed buffer. `path` names the message for
// errors ("ModelProto.graph.node[3]").
class WireReader {
 public:
  WireReader(std::string_view data, std::string path) : data_(data), path_(std::move(path)) {}

  bool done() const { return pos_ >= data_.size(); }
  size_t position() const { return pos_; }
  const std::string& path() const { return path_; }

  [[nodiscard]] Status next(Field* field) {
    uint64_t tag = 0;
    CONCORD_RETURN_IF_ERROR(read_varint(&tag));
    if (tag > 0xFFFFFFFFu) return error("field tag out of range");
    field->number = static_cast<uint32_t>(tag >> 3);
    field->wire_type = static_cast<uint32_t>(tag & 7);
    if (field->number == 0) return error("field number 0 (not a protobuf message)");
    switch (field->wire_type) {
      case kVarint: return read_varint(&field->varint);
      case kFixed64: return skip(8);
      case kFixed32: return skip(4);
      case kLengthDelimited: {
        uint64_t length = 0;
        CONCORD_RETURN_IF_ERROR(read_varint(&length));
        if (length > data_.size() - pos_) {
          return error(fmt::format("field {} claims {} bytes but only {} remain", field->number,
                                   length, data_.size() - pos_));
        }
        field->bytes = data_.substr(pos_, static_cast<size_t>(length));
        pos_ += static_cast<size_t>(length);
        return ok();
      }
      default:
        return error(
            fmt::format("field {} has unsupported wire type {}", field->number, field->wire_type));
    }
  }

  std::unexpected<Error> error(std::string_view what) const {
    return fail(Code::kInvalidArgument,
                fmt::format("invalid ONNX model: {} at {} (byte {})", what, path_, pos_));
  }

 private:
  Status read_varint(uint64_t* out) {
    uint64_t value = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= data_.size()) return error("truncated varint");
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      if (i == 9 && byte > 1) return error("varint longer than 64 bits");
      value |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
      if ((byte & 0x80) == 0) {
        *out = value;
        return ok();
      }
    }
    return error("varint longer than 10 bytes");
  }

  Status skip(size_t n) {
    if (n > data_.size() - pos_) return error("truncated fixed-width field");
    pos_ += n;
    return ok();
  }

  std::string_view data_;
  size_t pos_ = 0;
  std::string path_;
};

namespace onnx_fields {
// Field numbers from onnx.proto (ONNX IR, stable since IR version 3).
namespace model_field {
constexpr uint32_t kIrVersion = 1, kProducerName = 2, kProducerVersion = 3, kGraph = 7,
                   kOpsetImport = 8;
}
namespace opset_field {
constexpr uint32_t kDomain = 1, kVersion = 2;
}
namespace graph_field {
constexpr uint32_t kNode = 1, kName = 2, kInitializer = 5, kInput = 11, kOutput = 12,
                   kSparseInitializer = 15;
}
namespace node_field {
constexpr uint32_t kInput = 1, kOutput = 2, kName = 3, kOpType = 4, kDomain = 7;
}
namespace value_info_field {
constexpr uint32_t kName = 1, kType = 2;
}
namespace type_field {
constexpr uint32_t kTensorType = 1;
}
namespace tensor_type_field {
constexpr uint32_t kElemType = 1, kShape = 2;
}
namespace shape_field {
constexpr uint32_t kDim = 1;
}
namespace dim_field {
constexpr uint32_t kDimValue = 1, kDimParam = 2;
}
namespace tensor_field {
constexpr uint32_t kName = 8;
}
namespace sparse_tensor_field {
constexpr uint32_t kValues = 1;
}

}  // namespace onnx_fields

inline void append_varint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}
inline void append_varint_field(std::string* out, uint32_t number, uint64_t value) {
  append_varint(out, uint64_t{number} << 3 | kVarint);
  append_varint(out, value);
}
inline void append_bytes_field(std::string* out, uint32_t number, std::string_view bytes) {
  append_varint(out, uint64_t{number} << 3 | kLengthDelimited);
  append_varint(out, bytes.size());
  out->append(bytes);
}

}  // namespace concord::inference::wire

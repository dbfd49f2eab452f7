#pragma once
// Builds protobuf wire bytes by hand so the ONNX tests can make exactly the model (or the
// exactly malformed bytes) each case needs, without python or libprotobuf.
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace concord::inference::testing {

class ProtoBuilder {
 public:
  ProtoBuilder& varint(uint32_t field, uint64_t value) {
    tag(field, 0);
    raw_varint(value);
    return *this;
  }
  ProtoBuilder& bytes(uint32_t field, std::string_view value) {
    tag(field, 2);
    raw_varint(value.size());
    buf_.append(value);
    return *this;
  }
  ProtoBuilder& message(uint32_t field, const ProtoBuilder& m) { return bytes(field, m.str()); }
  ProtoBuilder& fixed32(uint32_t field, uint32_t value) {
    tag(field, 5);
    for (int i = 0; i < 4; ++i) buf_.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
    return *this;
  }
  ProtoBuilder& fixed64(uint32_t field, uint64_t value) {
    tag(field, 1);
    for (int i = 0; i < 8; ++i) buf_.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
    return *this;
  }
  ProtoBuilder& tag(uint32_t field, uint32_t wire_type) {
    raw_varint((uint64_t{field} << 3) | wire_type);
    return *this;
  }
  ProtoBuilder& raw_varint(uint64_t value) {
    while (value >= 0x80) {
      buf_.push_back(static_cast<char>((value & 0x7F) | 0x80));
      value >>= 7;
    }
    buf_.push_back(static_cast<char>(value));
    return *this;
  }
  ProtoBuilder& raw(std::string_view bytes) {
    buf_.append(bytes);
    return *this;
  }
  const std::string& str() const { return buf_; }

 private:
  std::string buf_;
};

// A dimension: a number (dim_value) or a name (dim_param).
using Dim = std::variant<int64_t, std::string>;

// ONNX ValueInfoProto with a tensor type.
inline ProtoBuilder value_info(std::string_view name, int32_t elem_type,
                               const std::vector<Dim>& dims) {
  ProtoBuilder shape;
  for (const Dim& d : dims) {
    ProtoBuilder dim;
    if (const auto* v = std::get_if<int64_t>(&d)) {
      dim.varint(1, static_cast<uint64_t>(*v));
    } else {
      dim.bytes(2, std::get<std::string>(d));
    }
    shape.message(1, dim);
  }
  ProtoBuilder tensor_type;
  tensor_type.varint(1, static_cast<uint64_t>(elem_type)).message(2, shape);
  ProtoBuilder type;
  type.message(1, tensor_type);
  ProtoBuilder vi;
  vi.bytes(1, name).message(2, type);
  return vi;
}

inline ProtoBuilder node(std::string_view op_type, const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, std::string_view name = "") {
  ProtoBuilder n;
  for (const auto& i : inputs) n.bytes(1, i);
  for (const auto& o : outputs) n.bytes(2, o);
  if (!name.empty()) n.bytes(3, name);
  n.bytes(4, op_type);
  return n;
}

// ONNX TensorProto holding FP32 values in raw_data.
inline ProtoBuilder float_initializer(std::string_view name, const std::vector<int64_t>& dims,
                                      const std::vector<float>& values) {
  ProtoBuilder t;
  for (int64_t d : dims) t.varint(1, static_cast<uint64_t>(d));
  t.varint(2, 1).bytes(8, name);
  t.bytes(9, std::string_view(reinterpret_cast<const char*>(values.data()),
                              values.size() * sizeof(float)));
  return t;
}

inline ProtoBuilder opset(int64_t version, std::string_view domain = "") {
  ProtoBuilder o;
  if (!domain.empty()) o.bytes(1, domain);
  o.varint(2, static_cast<uint64_t>(version));
  return o;
}

// ModelProto: ir_version 7, producer "concord-test", default opset 11, the given graph.
inline std::string model(const ProtoBuilder& graph, int64_t opset_version = 11) {
  ProtoBuilder m;
  m.varint(1, 7)
      .bytes(2, "concord-test")
      .bytes(3, "1")
      .message(7, graph)
      .message(8, opset(opset_version));
  return m.str();
}

// A one-node model: y = op(x) with x, y FP32 [batch, 4].
inline std::string unary_model(std::string_view op_type, int32_t elem_type = 1) {
  ProtoBuilder g;
  g.message(1, node(op_type, {"x"}, {"y"}, "n0"))
      .bytes(2, "unary")
      .message(11, value_info("x", elem_type, {std::string("batch"), int64_t{4}}))
      .message(12, value_info("y", elem_type, {std::string("batch"), int64_t{4}}));
  return model(g);
}

}  // namespace concord::inference::testing

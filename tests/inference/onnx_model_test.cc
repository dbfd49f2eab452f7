// The ONNX metadata reader: the committed Fashion-MNIST model, hand-built models for each
// rule (initializers are not inputs, unknown fields are skipped, dim_param is -1), and
// malformed bytes of every kind, each rejected with kInvalidArgument and never a crash.
#include "inference/onnx/onnx_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "fixtures.h"
#include "proto_builder.h"

namespace concord::inference {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::model;
using testing::node;
using testing::ProtoBuilder;
using testing::value_info;

std::vector<std::string> op_types(const OnnxModelInfo& info) {
  std::vector<std::string> out;
  for (const auto& n : info.nodes) out.push_back(n.op_type);
  return out;
}

void expect_invalid(std::string_view bytes, std::string_view message_part = "") {
  auto r = parse_onnx_model(bytes);
  ASSERT_FALSE(r.has_value()) << "parsed " << bytes.size() << " bytes as a model";
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().to_string();
  if (!message_part.empty()) {
    EXPECT_THAT(r.error().message(), HasSubstr(message_part));
  }
}

TEST(OnnxModel, FashionMnistFixtureMetadata) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  ASSERT_FALSE(bytes.empty()) << "missing fixture " << testing::fashion_mnist_model();
  auto info = parse_onnx_model(bytes);
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  EXPECT_GE(info->ir_version, 6);
  EXPECT_EQ(info->producer_name, "pytorch");
  EXPECT_EQ(info->default_opset(), 11);

  ASSERT_EQ(info->inputs.size(), 1u);
  EXPECT_EQ(info->inputs[0].name, "input");
  EXPECT_EQ(info->inputs[0].datatype, "FP32");
  EXPECT_EQ(info->inputs[0].elem_type, 1);
  EXPECT_TRUE(info->inputs[0].has_shape);
  EXPECT_THAT(info->inputs[0].shape, ElementsAre(-1, 1, 28, 28));
  EXPECT_THAT(info->inputs[0].dim_params, ElementsAre("batch", "", "", ""));

  ASSERT_EQ(info->outputs.size(), 1u);
  EXPECT_EQ(info->outputs[0].name, "logits");
  EXPECT_EQ(info->outputs[0].datatype, "FP32");
  EXPECT_THAT(info->outputs[0].shape, ElementsAre(-1, 10));

  // The chain the split planner will cut: two conv blocks, then the classifier.
  EXPECT_THAT(op_types(*info), ElementsAre("Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool",
                                           "Flatten", "Gemm", "Relu", "Gemm"));
  EXPECT_EQ(info->nodes.front().inputs[0], "input");
  EXPECT_EQ(info->nodes.back().outputs[0], "logits");
  // Four weights and four biases, none of them listed as a model input.
  EXPECT_EQ(info->initializer_names.size(), 8u);
}

TEST(OnnxModel, InitializersListedAsInputsAreNotModelInputs) {
  ProtoBuilder sparse_values;
  sparse_values.bytes(8, "sparse_w");
  ProtoBuilder sparse;
  sparse.message(1, sparse_values);
  ProtoBuilder g;
  g.message(1, node("Gemm", {"x", "w", "b"}, {"y"}))
      .message(5, testing::float_initializer("w", {4, 4}, std::vector<float>(16, 1.0f)))
      .message(5, testing::float_initializer("b", {4}, std::vector<float>(4, 0.0f)))
      .message(15, sparse)
      .message(11, value_info("x", 1, {int64_t{1}, int64_t{4}}))
      .message(11, value_info("w", 1, {int64_t{4}, int64_t{4}}))
      .message(11, value_info("b", 1, {int64_t{4}}))
      .message(11, value_info("sparse_w", 1, {int64_t{4}}))
      .message(12, value_info("y", 1, {int64_t{1}, int64_t{4}}));
  auto info = parse_onnx_model(model(g));
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  ASSERT_EQ(info->inputs.size(), 1u);
  EXPECT_EQ(info->inputs[0].name, "x");
  EXPECT_THAT(info->initializer_names, ElementsAre("w", "b", "sparse_w"));
}

TEST(OnnxModel, DimensionsDatatypesAndUnknownFields) {
  ProtoBuilder seq_type;  // TypeProto.sequence_type: not a tensor
  seq_type.message(
      4, ProtoBuilder().message(1, ProtoBuilder().message(1, ProtoBuilder().varint(1, 1))));
  ProtoBuilder seq_input;
  seq_input.bytes(1, "seq").message(2, seq_type);
  ProtoBuilder g;
  g.fixed32(99, 7)  // unknown fields of every wire type are skipped
      .fixed64(98, 7)
      .bytes(97, "ignored")
      .varint(96, 1)
      .message(1, node("Identity", {"ids"}, {"out"}))
      .message(11, value_info("ids", 7, {std::string("n"), int64_t{0}, int64_t{3}}))
      .message(11, seq_input)
      .message(11, value_info("flags", 9, {}))
      .message(12, value_info("out", 16, {std::string("n")}));  // bfloat16: no OIP name
  ProtoBuilder m;
  m.varint(1, 8)
      .bytes(14, "metadata props are skipped")
      .message(7, g)
      .message(8, testing::opset(17))
      .message(8, testing::opset(1, "ai.onnx.ml"));
  auto info = parse_onnx_model(m.str());
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  ASSERT_EQ(info->inputs.size(), 3u);
  EXPECT_EQ(info->inputs[0].datatype, "INT64");
  EXPECT_THAT(info->inputs[0].shape, ElementsAre(-1, 0, 3));
  EXPECT_EQ(info->inputs[1].name, "seq");
  EXPECT_EQ(info->inputs[1].elem_type, 0);
  EXPECT_EQ(info->inputs[1].datatype, "");
  EXPECT_FALSE(info->inputs[1].has_shape);
  EXPECT_EQ(info->inputs[2].datatype, "BOOL");
  EXPECT_TRUE(info->inputs[2].has_shape);  // a scalar: shape present, rank 0
  EXPECT_TRUE(info->inputs[2].shape.empty());
  EXPECT_EQ(info->outputs[0].datatype, "");
  EXPECT_EQ(info->outputs[0].elem_type, 16);
  EXPECT_EQ(info->default_opset(), 17);
  ASSERT_EQ(info->opset_imports.size(), 2u);
  EXPECT_EQ(info->opset_imports[1].domain, "ai.onnx.ml");
}

TEST(OnnxModel, OipDatatypeNames) {
  EXPECT_EQ(oip_datatype(1), "FP32");
  EXPECT_EQ(oip_datatype(7), "INT64");
  EXPECT_EQ(oip_datatype(8), "BYTES");
  EXPECT_EQ(oip_datatype(10), "FP16");
  EXPECT_EQ(oip_datatype(11), "FP64");
  EXPECT_EQ(oip_datatype(0), "");
  EXPECT_EQ(oip_datatype(14), "");  // complex64
  EXPECT_EQ(oip_datatype(-3), "");
}

TEST(OnnxModel, RejectsWhatIsNotAModel) {
  expect_invalid("", "empty");
  expect_invalid("hello, this is plain text and not a model");
  // A well-formed protobuf message that is not a ModelProto: an ONNX TensorProto.
  expect_invalid(testing::float_initializer("w", {2}, {1.0f, 2.0f}).str());
  // A protobuf whose fields happen to fit ModelProto but with no graph.
  expect_invalid(ProtoBuilder().varint(1, 7).bytes(2, "x").str(), "graph is missing");
  // A graph but no ir_version.
  ProtoBuilder g;
  g.message(11, value_info("x", 1, {int64_t{1}})).message(12, value_info("y", 1, {int64_t{1}}));
  expect_invalid(ProtoBuilder().message(7, g).message(8, testing::opset(11)).str(),
                 "ir_version is missing");
  // No opset_import.
  expect_invalid(ProtoBuilder().varint(1, 7).message(7, g).str(), "opset_import is missing");
  // Only initializer inputs, or no outputs.
  ProtoBuilder only_weights;
  only_weights.message(5, testing::float_initializer("w", {1}, {1.0f}))
      .message(11, value_info("w", 1, {int64_t{1}}))
      .message(12, value_info("y", 1, {int64_t{1}}));
  expect_invalid(model(only_weights), "no inputs");
  ProtoBuilder no_outputs;
  no_outputs.message(11, value_info("x", 1, {int64_t{1}}));
  expect_invalid(model(no_outputs), "no outputs");
}

TEST(OnnxModel, RejectsMalformedWireFormat) {
  const std::string good = testing::unary_model("Relu");
  ASSERT_TRUE(parse_onnx_model(good).has_value());
  // Wrong wire type for a known field.
  expect_invalid(ProtoBuilder().bytes(1, "seven").str(), "wire type");
  // Groups (wire types 3 and 4) are refused.
  expect_invalid(ProtoBuilder().tag(5, 3).str(), "wire type 3");
  // Field number 0.
  expect_invalid(std::string("\x00\x01", 2), "field number 0");
  // A varint that never ends, and one longer than 64 bits.
  expect_invalid(std::string("\x08\xff\xff", 3), "truncated varint");
  expect_invalid(std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11), "64 bits");
  // A length running past the end, at the top and deep inside the graph.
  expect_invalid(ProtoBuilder().tag(7, 2).raw_varint(1000).raw("abc").str(), "claims 1000");
  ProtoBuilder bad_dim_graph;
  bad_dim_graph.raw(ProtoBuilder().tag(11, 2).raw_varint(3).raw("\x0a\x09x").str());
  expect_invalid(model(bad_dim_graph), "ModelProto.graph.input[0]");
  // Negative dim_value.
  ProtoBuilder neg;
  neg.message(11, value_info("x", 1, {int64_t{-5}})).message(12, value_info("y", 1, {}));
  expect_invalid(model(neg), "negative dim_value");
  // A node without op_type.
  ProtoBuilder no_op;
  no_op.message(1, ProtoBuilder().bytes(1, "x").bytes(2, "y"))
      .message(11, value_info("x", 1, {}))
      .message(12, value_info("y", 1, {}));
  expect_invalid(model(no_op), "without op_type");
  // Two graphs.
  ProtoBuilder two;
  two.varint(1, 7).raw(ProtoBuilder().str());
  ProtoBuilder g;
  g.message(11, value_info("x", 1, {})).message(12, value_info("y", 1, {}));
  two.message(7, g).message(7, g).message(8, testing::opset(11));
  expect_invalid(two.str(), "graph appears twice");
}

TEST(OnnxModel, EveryTruncationOfTheFixtureIsRejected) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  ASSERT_GT(bytes.size(), 1000u);
  std::vector<size_t> cuts;
  for (size_t n = 0; n < 600; ++n) cuts.push_back(n);
  for (size_t n = bytes.size() - 600; n < bytes.size(); ++n) cuts.push_back(n);
  for (size_t n = 600; n < bytes.size() - 600; n += bytes.size() / 1500) cuts.push_back(n);
  for (const size_t n : cuts) {
    auto r = parse_onnx_model(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(r.has_value()) << "a " << n << "-byte prefix parsed";
    ASSERT_EQ(r.error().code(), Code::kInvalidArgument) << n << ": " << r.error().to_string();
  }
}

TEST(OnnxModel, RandomAndMutatedBytesNeverCrash) {
  std::mt19937 rng(5);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rng() % 512, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    expect_invalid(junk);
  }
  // Flipped bytes in a good model: either still a model or a clean kInvalidArgument.
  const std::string good = testing::unary_model("Relu");
  int rejected = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string m = good;
    m[rng() % m.size()] = static_cast<char>(rng());
    auto r = parse_onnx_model(m);
    if (!r) {
      ASSERT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().to_string();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
}

TEST(OnnxModel, LimitsAreEnforced) {
  ProtoBuilder g;
  g.message(1, node("Relu", {"x"}, {"a"}))
      .message(1, node("Relu", {"a"}, {"b"}))
      .message(1, node("Relu", {"b"}, {"y"}))
      .message(11, value_info("x", 1, {int64_t{1}, int64_t{2}, int64_t{3}}))
      .message(12, value_info("y", 1, {int64_t{1}, int64_t{2}, int64_t{3}}));
  const std::string m = model(g);
  ASSERT_TRUE(parse_onnx_model(m).has_value());

  OnnxLimits nodes;
  nodes.max_nodes = 2;
  auto r = parse_onnx_model(m, nodes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("more than 2 nodes"));

  OnnxLimits rank;
  rank.max_rank = 2;
  r = parse_onnx_model(m, rank);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("rank over the limit of 2"));

  OnnxLimits names;
  names.max_name_bytes = 4;  // "concord-test" (producer_name) is longer
  r = parse_onnx_model(m, names);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("producer_name is 12 bytes"));

  OnnxLimits size;
  size.max_model_bytes = m.size() - 1;
  r = parse_onnx_model(m, size);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("over the limit"));

  OnnxLimits values;
  values.max_values = 1;
  r = parse_onnx_model(m, values);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message(), HasSubstr("graph inputs and outputs"));
}

// ONNX's own operator test models (Debian's libonnx-testdata, 1,072 models). Compared by hand
// once against python3-onnx (docs/design/inference.md); here every one must parse except the
// graphs with no inputs, which are refused on purpose.
TEST(OnnxModel, OnnxTestSuiteModelsParse) {
  const std::filesystem::path root = "/usr/share/libonnx-testdata/data";
  if (!std::filesystem::is_directory(root)) {
    GTEST_SKIP() << root << " not found (Debian package libonnx-testdata; install-deps --test)";
  }
  int parsed = 0;
  std::vector<std::string> refused;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.path().filename() != "model.onnx") continue;
    auto info = parse_onnx_model(testing::read_file(entry.path()));
    if (!info) {
      EXPECT_EQ(info.error().code(), Code::kInvalidArgument) << entry.path();
      refused.push_back(entry.path().parent_path().filename().string() + ": " +
                        info.error().message());
      continue;
    }
    ++parsed;
    for (const auto& t : info->inputs) {
      EXPECT_FALSE(t.name.empty()) << entry.path();
      EXPECT_EQ(t.shape.size(), t.dim_params.size()) << entry.path();
    }
  }
  EXPECT_GE(parsed, 1000);
  EXPECT_THAT(refused, ElementsAre("test_constant: invalid ONNX model: the graph has no inputs "
                                   "besides its initializers"));
}

}  // namespace
}  // namespace concord::inference

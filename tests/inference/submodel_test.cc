// Split inference's building block: cutting the Fashion-MNIST chain after every node into a
// head and a tail model, each loaded by the OpenCV runtime; head then tail must give the whole
// model's logits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "fixtures.h"
#include "inference/onnx/onnx_submodel.h"
#include "inference/runtime/opencv_runtime.h"
#include "proto_builder.h"

namespace concord::inference {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TensorInfo fp32_info(std::string name, std::vector<int64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.elem_type = 1;
  t.datatype = "FP32";
  t.has_shape = true;
  t.dim_params.assign(shape.size(), "");
  t.dim_params[0] = "batch";
  t.shape = std::move(shape);
  return t;
}

// The shape of each node's output in the fixture's chain (conv 3x3 pad 1, pool 2).
const std::vector<std::vector<int64_t>> kCutShapes = {
    {-1, 16, 28, 28}, {-1, 16, 28, 28}, {-1, 16, 14, 14}, {-1, 32, 14, 14}, {-1, 32, 14, 14},
    {-1, 32, 7, 7},   {-1, 1568},       {-1, 64},         {-1, 64},
};

Tensor run_one(Model& model, const Tensor& in) {
  auto out = model.infer(std::span<const Tensor>(&in, 1));
  EXPECT_TRUE(out.has_value()) << out.error().to_string();
  if (!out || out->size() != 1) return {};
  return std::move((*out)[0]);
}

TEST(Submodel, HeadThenTailEqualsWholeModelAtEveryCut) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  ASSERT_FALSE(bytes.empty());
  auto info = parse_onnx_model(bytes);
  ASSERT_TRUE(info.has_value());
  ASSERT_EQ(info->nodes.size(), kCutShapes.size() + 1);

  // Eight deterministic, non-trivial images (no dependency on the data set package).
  constexpr int kBatch = 8;
  std::vector<float> px(kBatch * 784);
  for (size_t i = 0; i < px.size(); ++i) px[i] = float((i * 37 + i / 784 * 11) % 256) / 255.0f;
  const Tensor input = Tensor::fp32("input", {kBatch, 1, 28, 28}, px);

  OpenCvRuntime runtime;
  auto whole = runtime.load(bytes);
  ASSERT_TRUE(whole.has_value()) << whole.error().to_string();
  const Tensor expected = run_one(**whole, input);
  ASSERT_THAT(expected.shape, ElementsAre(kBatch, 10));

  const TensorInfo in_info = info->inputs[0];
  const TensorInfo out_info = info->outputs[0];
  int bitwise = 0;
  for (size_t k = 0; k < kCutShapes.size(); ++k) {
    SCOPED_TRACE("cut after node " + std::to_string(k) + " (" + info->nodes[k].op_type + ")");
    const TensorInfo cut = fp32_info(info->nodes[k].outputs[0], kCutShapes[k]);
    auto head_bytes = extract_submodel(bytes, std::span(&in_info, 1), std::span(&cut, 1));
    ASSERT_TRUE(head_bytes.has_value()) << head_bytes.error().to_string();
    auto tail_bytes = extract_submodel(bytes, std::span(&cut, 1), std::span(&out_info, 1));
    ASSERT_TRUE(tail_bytes.has_value()) << tail_bytes.error().to_string();

    auto head_info = parse_onnx_model(*head_bytes);
    auto tail_info = parse_onnx_model(*tail_bytes);
    ASSERT_TRUE(head_info && tail_info);
    EXPECT_EQ(head_info->nodes.size(), k + 1);
    EXPECT_EQ(tail_info->nodes.size(), info->nodes.size() - k - 1);
    EXPECT_EQ(head_info->inputs[0].name, "input");
    EXPECT_EQ(tail_info->inputs[0].name, cut.name);
    EXPECT_EQ(tail_info->inputs[0].shape, cut.shape);

    auto head = runtime.load(*head_bytes);
    ASSERT_TRUE(head.has_value()) << head.error().to_string();
    auto tail = runtime.load(*tail_bytes);
    ASSERT_TRUE(tail.has_value()) << tail.error().to_string();
    Tensor middle = run_one(**head, input);
    std::vector<int64_t> want_shape = cut.shape;
    want_shape[0] = kBatch;
    ASSERT_EQ(middle.shape, want_shape);
    middle.name = cut.name;  // what the device SDK sends
    const Tensor got = run_one(**tail, middle);
    ASSERT_EQ(got.shape, expected.shape);
    const auto a = got.to_floats();
    const auto b = expected.to_floats();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f) << i;
    bitwise += got.data == expected.data;
  }
  std::printf("head + tail bitwise equal to the whole model at %d of %zu cuts\n", bitwise,
              kCutShapes.size());
}

TEST(Submodel, WholeRangeKeepsEveryNodeAndWeight) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  auto info = parse_onnx_model(bytes);
  ASSERT_TRUE(info.has_value());
  auto same = extract_submodel(bytes, info->inputs, info->outputs);
  ASSERT_TRUE(same.has_value()) << same.error().to_string();
  auto again = parse_onnx_model(*same);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->nodes.size(), info->nodes.size());
  EXPECT_EQ(again->initializer_names, info->initializer_names);
  EXPECT_EQ(again->default_opset(), 11);
  EXPECT_EQ(again->producer_name, "pytorch");
  // Only the graph's name and its input/output declarations are re-encoded.
  EXPECT_NEAR(double(same->size()), double(bytes.size()), 64.0);
}

TEST(Submodel, RejectsCutsThatAreNotTensorsOrDoNotClose) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  auto info = parse_onnx_model(bytes);
  ASSERT_TRUE(info.has_value());
  const TensorInfo unknown = fp32_info("no_such_tensor", {-1, 64});
  auto r = extract_submodel(bytes, std::span(&unknown, 1), info->outputs);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("'no_such_tensor' is not a tensor of the model"));

  r = extract_submodel(bytes, info->inputs, std::span(&unknown, 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  // From a late tensor back to an early one: the early one needs the model's input.
  const TensorInfo late = fp32_info(info->nodes[7].outputs[0], {-1, 64});
  const TensorInfo early = fp32_info(info->nodes[2].outputs[0], {-1, 16, 14, 14});
  r = extract_submodel(bytes, std::span(&late, 1), std::span(&early, 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("'input', which is neither one of its inputs"));

  r = extract_submodel("not a model", info->inputs, info->outputs);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace concord::inference

// The cuts of a model as the replica and the device SDK both list them: every cut of the
// Fashion-MNIST chain, and of a small DAG, gives a head and a tail whose composition is the whole
// model, bit for bit.
#include "inference/partition/partition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "fixtures.h"
#include "inference/runtime/opencv_runtime.h"
#include "proto_builder.h"

namespace concord::inference::partition {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::ProtoBuilder;

// Eight deterministic, non-trivial images (no dependency on the data set package).
Tensor eight_images() {
  constexpr int kBatch = 8;
  std::vector<float> px(kBatch * 784);
  for (size_t i = 0; i < px.size(); ++i) px[i] = float((i * 37 + i / 784 * 11) % 256) / 255.0f;
  return Tensor::fp32("input", {kBatch, 1, 28, 28}, px);
}

std::vector<Tensor> run(Model& model, std::vector<Tensor> inputs) {
  auto out = model.infer(inputs);
  EXPECT_TRUE(out.has_value()) << out.error().to_string();
  return out ? std::move(*out) : std::vector<Tensor>{};
}

// Runs head then tail at `cut` and returns the tail's outputs.
std::vector<Tensor> split_run(Runtime& runtime, std::string_view bytes, const OnnxModelInfo& info,
                              const Cut& cut, std::vector<Tensor> inputs) {
  auto head_bytes = head_model(bytes, info, cut);
  auto tail_bytes = tail_model(bytes, info, cut);
  EXPECT_TRUE(head_bytes && tail_bytes);
  if (!head_bytes || !tail_bytes) return {};
  auto head = runtime.load(*head_bytes);
  auto tail = runtime.load(*tail_bytes);
  EXPECT_TRUE(head.has_value()) << head.error().to_string();
  EXPECT_TRUE(tail.has_value()) << tail.error().to_string();
  if (!head || !tail) return {};
  std::vector<Tensor> middle = run(**head, std::move(inputs));
  EXPECT_EQ(middle.size(), cut.tensors.size());
  for (size_t i = 0; i < middle.size() && i < cut.tensors.size(); ++i) {
    EXPECT_EQ(middle[i].name, cut.tensors[i].name);
    std::vector<int64_t> want = cut.tensors[i].shape;
    want[0] = middle[i].shape.empty() ? -1 : middle[i].shape[0];
    EXPECT_EQ(middle[i].shape, want) << middle[i].name;
  }
  return run(**tail, std::move(middle));
}

TEST(Partition, FixtureChainHasACutAfterEveryNodeWithMeasuredShapes) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  ASSERT_FALSE(bytes.empty());
  OpenCvRuntime runtime;
  auto parts = list_cuts(bytes, runtime);
  ASSERT_TRUE(parts.has_value()) << parts.error().to_string();
  EXPECT_EQ(parts->node_count, 10);
  EXPECT_EQ(parts->input_bytes_per_item, 784u * 4);
  EXPECT_EQ(parts->output_bytes_per_item, 10u * 4);
  ASSERT_EQ(parts->cuts.size(), 9u);
  const std::vector<std::vector<int64_t>> shapes = {
      {-1, 16, 28, 28}, {-1, 16, 28, 28}, {-1, 16, 14, 14}, {-1, 32, 14, 14}, {-1, 32, 14, 14},
      {-1, 32, 7, 7},   {-1, 1568},       {-1, 64},         {-1, 64},
  };
  for (int k = 1; k <= 9; ++k) {
    const Cut& cut = parts->cuts[k - 1];
    SCOPED_TRACE("cut " + std::to_string(k));
    EXPECT_EQ(cut.index, k);
    ASSERT_EQ(cut.tensors.size(), 1u);
    EXPECT_EQ(cut.tensors[0].shape, shapes[k - 1]);
    EXPECT_EQ(cut.tensors[0].datatype, "FP32");
    uint64_t elements = 1;
    for (size_t d = 1; d < shapes[k - 1].size(); ++d) elements *= shapes[k - 1][d];
    EXPECT_EQ(cut.bytes_per_item, elements * 4);
    EXPECT_FALSE(cut.after_node.empty());
  }
  // Only one tensor crosses any cut of a chain, so a limit of one changes nothing.
  auto one = list_cuts(bytes, runtime, 1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->cuts.size(), 9u);
}

TEST(Partition, HeadThenTailEqualsWholeModelBitwiseAtEveryListedCut) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  auto info = parse_onnx_model(bytes);
  ASSERT_TRUE(info.has_value());
  OpenCvRuntime runtime;
  auto parts = list_cuts(bytes, runtime);
  ASSERT_TRUE(parts.has_value()) << parts.error().to_string();
  auto whole = runtime.load(bytes);
  ASSERT_TRUE(whole.has_value());
  const std::vector<Tensor> expected = run(**whole, {eight_images()});
  ASSERT_EQ(expected.size(), 1u);
  ASSERT_THAT(expected[0].shape, ElementsAre(8, 10));
  for (const Cut& cut : parts->cuts) {
    SCOPED_TRACE("cut " + std::to_string(cut.index) + " after " + cut.after_node);
    const auto got = split_run(runtime, bytes, *info, cut, {eight_images()});
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].shape, expected[0].shape);
    EXPECT_EQ(got[0].data, expected[0].data) << "not bitwise equal";
  }
}

TEST(Partition, TailNameIsTheOipModelName) {
  EXPECT_EQ(tail_name("fmnist", 7), "fmnist.from.7");
  EXPECT_EQ(tail_name("a.b", 1), "a.b.from.1");
}

TEST(Partition, TailPartsAreEveryCutsTailUnderItsOipName) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  OpenCvRuntime runtime;
  auto tails = tail_parts(bytes, "fmnist", runtime);
  ASSERT_TRUE(tails.has_value()) << tails.error().to_string();
  ASSERT_EQ(tails->size(), 9u);
  for (int k = 1; k <= 9; ++k) {
    const TailPart& t = (*tails)[k - 1];
    EXPECT_EQ(t.cut, k);
    EXPECT_EQ(t.name, "fmnist.from." + std::to_string(k));
    auto info = parse_onnx_model(t.bytes);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->nodes.size(), size_t(10 - k));
    EXPECT_TRUE(runtime.load(t.bytes).has_value());
  }
  auto bad = tail_parts("garbage", "x", runtime);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
}

TEST(Partition, BadBytesAreInvalidArgument) {
  OpenCvRuntime runtime;
  auto r = list_cuts("definitely not an onnx model", runtime);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  r = list_cuts("", runtime);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(Partition, HeadAndTailOfAnEmptyCutAreInvalidArgument) {
  const std::string bytes = testing::read_file(testing::fashion_mnist_model());
  auto info = parse_onnx_model(bytes);
  ASSERT_TRUE(info.has_value());
  const Cut empty;
  auto h = head_model(bytes, *info, empty);
  ASSERT_FALSE(h.has_value());
  EXPECT_EQ(h.error().code(), Code::kInvalidArgument);
  auto t = tail_model(bytes, *info, empty);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
}

// x[N,4] -> s = x*w1 -> a = Relu(s); b = Sigmoid(s) -> b2 = b*w2; y = a + b2.
// Cuts: 1 {s}; 2 {s, a} (s still feeds the Sigmoid); 3 {a, b}; 4 {a, b2}.
std::string dag_model(bool with_unsupported_op = false) {
  using testing::float_initializer;
  using testing::node;
  using testing::value_info;
  ProtoBuilder g;
  g.message(1, node("Mul", {"x", "w1"}, {"s"}, "stem"));
  g.message(1, node("Relu", {"s"}, {"a"}, "left"));
  g.message(1, node("Sigmoid", {"s"}, {"b"}, "right"));
  g.message(1, node("Mul", {"b", "w2"}, {"b2"}, "right_scale"));
  if (with_unsupported_op) {
    g.message(1, node("NoSuchOperator", {"a", "b2"}, {"y"}, "join"));
  } else {
    g.message(1, node("Add", {"a", "b2"}, {"y"}, "join"));
  }
  g.bytes(2, "dag");
  g.message(5, float_initializer("w1", {4}, {1.5f, -2.0f, 0.25f, 3.0f}));
  g.message(5, float_initializer("w2", {4}, {0.5f, 4.0f, -1.0f, 2.0f}));
  g.message(11, value_info("x", 1, {std::string("batch"), int64_t{4}}));
  g.message(12, value_info("y", 1, {std::string("batch"), int64_t{4}}));
  return testing::model(g);
}

TEST(Partition, DagListsOnlyCutsItsHeadCanProduceAndComposesExactly) {
  const std::string bytes = dag_model();
  auto info = parse_onnx_model(bytes);
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  OpenCvRuntime runtime;
  auto parts = list_cuts(bytes, runtime);
  ASSERT_TRUE(parts.has_value()) << parts.error().to_string();
  EXPECT_EQ(parts->node_count, 5);
  std::map<int, std::vector<std::string>> names;
  for (const Cut& cut : parts->cuts) {
    for (const auto& t : cut.tensors) names[cut.index].push_back(t.name);
    EXPECT_EQ(cut.bytes_per_item, cut.tensors.size() * 4 * 4) << cut.index;
  }
  EXPECT_EQ(names, (std::map<int, std::vector<std::string>>{
                       {1, {"s"}}, {2, {"s", "a"}}, {3, {"a", "b"}}, {4, {"a", "b2"}}}));

  const std::vector<float> xs = {0.1f,   -0.7f, 2.0f,  -3.5f, 1.25f, 0.0f,
                                 -0.01f, 9.0f,  -4.0f, 0.33f, 0.5f,  -1.0f};
  const Tensor x = Tensor::fp32("x", {3, 4}, xs);
  auto whole = runtime.load(bytes);
  ASSERT_TRUE(whole.has_value()) << whole.error().to_string();
  const auto expected = run(**whole, {x});
  ASSERT_EQ(expected.size(), 1u);
  ASSERT_THAT(expected[0].shape, ElementsAre(3, 4));
  for (const Cut& cut : parts->cuts) {
    SCOPED_TRACE("cut " + std::to_string(cut.index));
    const auto got = split_run(runtime, bytes, *info, cut, {x});
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].data, expected[0].data);
  }

  // A limit of one tensor keeps only the stem's cut.
  auto narrow = list_cuts(bytes, runtime, 1);
  ASSERT_TRUE(narrow.has_value());
  ASSERT_EQ(narrow->cuts.size(), 1u);
  EXPECT_EQ(narrow->cuts[0].index, 1);
  EXPECT_THAT(narrow->cuts[0].tensors[0].shape, ElementsAreArray({-1, 4}));
}

TEST(Partition, ModelTheRuntimeCannotRunIsFailedPrecondition) {
  OpenCvRuntime runtime;
  auto r = list_cuts(dag_model(/*with_unsupported_op=*/true), runtime);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.error().message(), HasSubstr("cannot"));
}

}  // namespace
}  // namespace concord::inference::partition

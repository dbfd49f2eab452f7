// The OpenCV dnn runtime on the committed Fashion-MNIST model: metadata, agreement with
// torch's logits, batches equal to single calls, the whole test set, bad models refused at
// load with the documented code, bad inputs refused at infer, and concurrent callers.
#include "inference/runtime/opencv_runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <thread>

#include "fixtures.h"
#include "inference/runtime/runtimes.h"
#include "proto_builder.h"

namespace concord::inference {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Batched and single forward passes may sum in a different order inside OpenCV's GEMM
// kernels, so results are compared within this absolute tolerance on logits (which are of
// order 1-10); BatchEqualsSingleCalls also reports whether they matched bitwise.
constexpr float kLogitTolerance = 1e-4f;

class OpenCvRuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    OpenCvRuntime runtime;
    auto model = runtime.load_file(testing::fashion_mnist_model());
    ASSERT_TRUE(model.has_value()) << model.error().to_string();
    model_ = std::move(*model);
    data_ = testing::load_fashion_mnist_test();
  }
  static void TearDownTestSuite() {
    model_.reset();
    data_.reset();
  }

  // Images [first, first + n) as one input tensor.
  static Tensor images(int first, int n) {
    const auto& d = *data_;
    return Tensor::fp32(
        "input", {n, 1, 28, 28},
        std::span<const float>(d.pixels).subspan(size_t(first) * 784, size_t(n) * 784));
  }
  static std::vector<float> logits(std::span<const Tensor> inputs) {
    auto out = model_->infer(inputs);
    EXPECT_TRUE(out.has_value()) << out.error().to_string();
    if (!out) return {};
    EXPECT_EQ(out->size(), 1u);
    EXPECT_EQ((*out)[0].name, "logits");
    EXPECT_EQ((*out)[0].datatype, "FP32");
    return (*out)[0].to_floats();
  }
  static int argmax(std::span<const float> row) {
    return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
  }
  void require_data() {
    if (!data_.has_value()) {
      GTEST_SKIP() << "Fashion-MNIST test set not found under " << testing::fashion_mnist_dir()
                   << " (Debian package dataset-fashion-mnist; scripts/install-deps.sh --test)";
    }
  }

  static inline std::unique_ptr<Model> model_;
  static inline std::optional<testing::FashionMnistTest> data_;
};

Error load_error(std::string_view bytes) {
  OpenCvRuntime runtime;
  auto r = runtime.load(bytes);
  EXPECT_FALSE(r.has_value()) << "loaded " << bytes.size() << " bytes";
  return r ? Error(Code::kOk, "") : r.error();
}

TEST_F(OpenCvRuntimeTest, Metadata) {
  const ModelMetadata& m = model_->metadata();
  EXPECT_EQ(m.format, "onnx");
  EXPECT_EQ(m.runtime, "opencv");
  ASSERT_EQ(m.inputs.size(), 1u);
  EXPECT_EQ(m.inputs[0].name, "input");
  EXPECT_EQ(m.inputs[0].datatype, "FP32");
  EXPECT_THAT(m.inputs[0].shape, ElementsAre(-1, 1, 28, 28));
  ASSERT_EQ(m.outputs.size(), 1u);
  EXPECT_EQ(m.outputs[0].name, "logits");
  EXPECT_THAT(m.outputs[0].shape, ElementsAre(-1, 10));
  EXPECT_EQ(m.onnx.nodes.size(), 10u);
}

// The reference file holds torch's logits for the first test images, written by the script
// that trained the model.
TEST_F(OpenCvRuntimeTest, SameLogitsAsTorchAndRightLabels) {
  require_data();
  std::istringstream ref(
      testing::read_file(testing::model_fixture_dir() / "fashion_mnist_cnn.reference.txt"));
  std::string line;
  int checked = 0;
  int right = 0;
  while (std::getline(ref, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    int index = 0;
    int label = 0;
    fields >> index >> label;
    std::vector<float> want(10);
    for (float& v : want) fields >> v;
    ASSERT_TRUE(fields) << "bad reference line: " << line;
    ASSERT_EQ(label, data_->labels[index]) << "the reference file and the data set disagree";

    const Tensor in = images(index, 1);
    const std::vector<float> got = logits(std::span<const Tensor>(&in, 1));
    ASSERT_EQ(got.size(), 10u);
    for (int k = 0; k < 10; ++k) {
      EXPECT_NEAR(got[k], want[k], kLogitTolerance) << "image " << index << " class " << k;
    }
    EXPECT_EQ(argmax(got), argmax(want)) << "image " << index;
    right += argmax(got) == label;
    ++checked;
  }
  EXPECT_EQ(checked, 16);
  // The first 16 test images: the model classifies at least 14 right (it scores about 90%).
  EXPECT_GE(right, 14);
}

TEST_F(OpenCvRuntimeTest, BatchEqualsSingleCalls) {
  require_data();
  constexpr int kBatch = 37;
  const Tensor batch = images(100, kBatch);
  const std::vector<float> batched = logits(std::span<const Tensor>(&batch, 1));
  ASSERT_EQ(batched.size(), size_t{kBatch} * 10);
  bool bitwise = true;
  for (int i = 0; i < kBatch; ++i) {
    const Tensor one = images(100 + i, 1);
    const std::vector<float> single = logits(std::span<const Tensor>(&one, 1));
    ASSERT_EQ(single.size(), 10u);
    for (int k = 0; k < 10; ++k) {
      EXPECT_NEAR(batched[i * 10 + k], single[k], kLogitTolerance) << "image " << i;
      bitwise = bitwise && std::memcmp(&batched[i * 10 + k], &single[k], sizeof(float)) == 0;
    }
  }
  RecordProperty("bitwise_equal", bitwise ? "true" : "false");
  std::printf("batch of %d vs single calls: %s\n", kBatch,
              bitwise ? "bitwise equal" : "equal within tolerance");
}

TEST_F(OpenCvRuntimeTest, WholeTestSetAccuracy) {
  require_data();
  const auto& d = *data_;
  ASSERT_EQ(d.count, 10000);
  int right = 0;
  constexpr int kBatch = 250;
  for (int first = 0; first < d.count; first += kBatch) {
    const Tensor in = images(first, kBatch);
    const std::vector<float> out = logits(std::span<const Tensor>(&in, 1));
    ASSERT_EQ(out.size(), size_t{kBatch} * 10);
    for (int i = 0; i < kBatch; ++i) {
      right +=
          argmax(std::span<const float>(out).subspan(size_t(i) * 10, 10)) == d.labels[first + i];
    }
  }
  const double accuracy = right / 10000.0;
  RecordProperty("accuracy", std::to_string(accuracy));
  std::printf("Fashion-MNIST t10k accuracy through OpenCV dnn: %.4f\n", accuracy);
  EXPECT_GE(accuracy, 0.85);
}

TEST_F(OpenCvRuntimeTest, ConcurrentCallersGetTheSameAnswers) {
  OpenCvRuntime::Options options;
  options.instances = 2;
  OpenCvRuntime runtime(options);
  auto loaded = runtime.load_file(testing::fashion_mnist_model());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().to_string();
  Model& model = **loaded;
  // Distinct deterministic inputs per thread, so a Net shared by mistake mixes answers.
  auto input = [](int t) {
    std::vector<float> px(784);
    for (size_t i = 0; i < px.size(); ++i) px[i] = float((i * (t + 3)) % 256) / 255.0f;
    return Tensor::fp32("input", {1, 1, 28, 28}, px);
  };
  constexpr int kThreads = 4;
  std::vector<std::vector<float>> expected(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    const Tensor in = input(t);
    auto out = model.infer(std::span<const Tensor>(&in, 1));
    ASSERT_TRUE(out.has_value());
    expected[t] = (*out)[0].to_floats();
  }
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Tensor in = input(t);
      for (int i = 0; i < 25; ++i) {
        auto out = model.infer(std::span<const Tensor>(&in, 1));
        if (!out || (*out)[0].to_floats() != expected[t]) ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

TEST_F(OpenCvRuntimeTest, WrongInputsAreRejected) {
  std::vector<float> px(784, 0.5f);
  auto infer_error = [&](std::vector<Tensor> inputs) {
    auto r = model_->infer(inputs);
    EXPECT_FALSE(r.has_value());
    return r ? Error(Code::kOk, "") : r.error();
  };
  Error e = infer_error({Tensor::fp32("image", {1, 1, 28, 28}, px)});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("unknown input 'image'"));

  e = infer_error({});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("input 'input' is missing"));

  e = infer_error(
      {Tensor::fp32("input", {1, 1, 28, 28}, px), Tensor::fp32("input", {1, 1, 28, 28}, px)});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("more than once"));

  Tensor as_int64{"input", "INT64", {1, 1, 28, 28}, std::string(784 * 8, '\0')};
  e = infer_error({as_int64});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("datatype 'INT64', the model expects 'FP32'"));

  e = infer_error({Tensor::fp32("input", {1, 28, 28}, px)});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("expects rank 4"));

  std::vector<float> wide(1 * 28 * 27, 0.5f);
  e = infer_error({Tensor::fp32("input", {1, 1, 28, 27}, wide)});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("expects [-1,1,28,28]"));

  e = infer_error({Tensor::fp32("input", {2, 1, 28, 28}, px)});  // one image's bytes for two
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("need 6272 bytes but 3136 were given"));

  e = infer_error({Tensor::fp32("input", {0, 1, 28, 28}, {})});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("must be positive"));

  Tensor huge{"input", "FP32", {int64_t{1} << 40, 1, 28, 28}, ""};
  e = infer_error({huge});
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_THAT(e.message(), HasSubstr("more than"));
}

TEST(OpenCvRuntimeLoad, NotOnnxIsInvalidArgument) {
  const std::string good = testing::read_file(testing::fashion_mnist_model());
  ASSERT_FALSE(good.empty());
  EXPECT_EQ(load_error("").code(), Code::kInvalidArgument);
  EXPECT_EQ(load_error("GIF89a not a model at all").code(), Code::kInvalidArgument);
  EXPECT_EQ(load_error(good.substr(0, good.size() / 2)).code(), Code::kInvalidArgument);
  EXPECT_EQ(load_error(good.substr(0, good.size() - 1)).code(), Code::kInvalidArgument);
  std::string random(4096, '\0');
  uint32_t x = 12345;
  for (char& c : random) c = static_cast<char>((x = x * 1103515245 + 12345) >> 16);
  EXPECT_EQ(load_error(random).code(), Code::kInvalidArgument);
  // A valid protobuf that is not a model.
  EXPECT_EQ(load_error(testing::float_initializer("w", {2}, {1.0f, 2.0f}).str()).code(),
            Code::kInvalidArgument);
}

TEST(OpenCvRuntimeLoad, OnnxTheRuntimeCannotRunIsFailedPrecondition) {
  Error e = load_error(testing::unary_model("NoSuchOperator"));
  EXPECT_EQ(e.code(), Code::kFailedPrecondition);
  EXPECT_THAT(e.message(), HasSubstr("OpenCV dnn cannot import"));

  e = load_error(testing::unary_model("Relu", /*elem_type=*/7));  // INT64 tensors
  EXPECT_EQ(e.code(), Code::kFailedPrecondition);
  EXPECT_THAT(e.message(), HasSubstr("FP32 tensors only; 'x' is INT64"));

  // Imports, but the Gemm's weight does not fit the input: fails at the load-time probe.
  testing::ProtoBuilder g;
  g.message(1, testing::node("Gemm", {"x", "w"}, {"y"}, "gemm"))
      .message(5, testing::float_initializer("w", {3, 2}, std::vector<float>(6, 1.0f)))
      .message(11, testing::value_info("x", 1, {std::string("n"), int64_t{4}}))
      .message(12, testing::value_info("y", 1, {std::string("n"), int64_t{2}}));
  e = load_error(testing::model(g));
  EXPECT_EQ(e.code(), Code::kFailedPrecondition) << e.to_string();
  EXPECT_THAT(e.message(), HasSubstr("imported the model but cannot run it"));
}

TEST(OpenCvRuntimeLoad, HandBuiltModelRunsAndMissingFileIsNotFound) {
  OpenCvRuntime runtime;
  auto model = runtime.load(testing::unary_model("Relu"));
  ASSERT_TRUE(model.has_value()) << model.error().to_string();
  const Tensor in = Tensor::fp32("x", {2, 4}, std::vector<float>{-1, 2, -3, 4, 5, -6, 7, -8});
  auto out = (*model)->infer(std::span<const Tensor>(&in, 1));
  ASSERT_TRUE(out.has_value()) << out.error().to_string();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].name, "y");
  EXPECT_THAT((*out)[0].shape, ElementsAre(2, 4));
  EXPECT_THAT((*out)[0].to_floats(), ElementsAre(0, 2, 0, 4, 5, 0, 7, 0));

  auto missing = runtime.load_file("/nonexistent/concord/model.onnx");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
}

TEST(Runtimes, ChosenByName) {
  EXPECT_THAT(available_runtimes(), ElementsAre("opencv"));
  auto opencv = make_runtime("opencv");
  ASSERT_TRUE(opencv.has_value()) << opencv.error().to_string();
  EXPECT_EQ((*opencv)->name(), "opencv");
  auto model = (*opencv)->load(testing::unary_model("Relu"));
  ASSERT_TRUE(model.has_value()) << model.error().to_string();
  EXPECT_EQ((*model)->metadata().runtime, "opencv");

  auto torch = make_runtime("torch");
  ASSERT_FALSE(torch.has_value());
  EXPECT_EQ(torch.error().code(), Code::kNotFound);
  EXPECT_THAT(torch.error().message(), HasSubstr("no inference runtime named 'torch'"));
}

}  // namespace
}  // namespace concord::inference

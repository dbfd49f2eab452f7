#include "inference/runtime/opencv_runtime.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <utility>
#include <vector>

#include "base/log.h"

namespace concord::inference {
namespace {

// OpenCV 4.6 dnn computes in float; other datatypes would need conversions that change
// results, so models using them are refused at load rather than served approximately.
constexpr std::string_view kSupportedDatatype = "FP32";

// cv::dnn throws cv::Exception (a std::exception) for every failure; this is the edge where
// that becomes a Result.
template <typename F>
auto catch_cv(Code code, std::string_view what, F&& f) -> Result<decltype(f())> {
  try {
    return f();
  } catch (const std::exception& e) {
    return fail(code, fmt::format("{}: {}", what, e.what()));
  } catch (...) {
    return fail(code, fmt::format("{}: unknown exception", what));
  }
}

Result<cv::dnn::Net> import_net(std::string_view bytes) {
  return catch_cv(Code::kFailedPrecondition, "OpenCV dnn cannot import this ONNX model", [&] {
    cv::dnn::Net net = cv::dnn::readNetFromONNX(bytes.data(), bytes.size());
    if (net.empty()) throw std::runtime_error("the imported network is empty");
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    return net;
  });
}

Result<cv::Mat> to_mat(const Tensor& tensor) {
  std::vector<int> sizes;
  sizes.reserve(tensor.shape.size());
  for (const int64_t d : tensor.shape) {
    if (d > std::numeric_limits<int>::max()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("input '{}': dimension {} is too large", tensor.name, d));
    }
    sizes.push_back(static_cast<int>(d));
  }
  // A rank-0 or rank-1 tensor still needs a 2-D Mat; OpenCV's ONNX layers treat it as [1, n].
  if (sizes.empty()) sizes.push_back(1);
  if (sizes.size() == 1) sizes.insert(sizes.begin(), 1);
  cv::Mat mat(static_cast<int>(sizes.size()), sizes.data(), CV_32F);
  std::memcpy(mat.ptr(), tensor.data.data(), tensor.data.size());
  return mat;
}

Result<Tensor> from_mat(const cv::Mat& mat, const std::string& name) {
  if (mat.depth() != CV_32F || !mat.isContinuous()) {
    return fail(
        Code::kInternal,
        fmt::format("output '{}': OpenCV returned an unexpected matrix type {}", name, mat.type()));
  }
  Tensor out;
  out.name = name;
  out.datatype = std::string(kSupportedDatatype);
  for (int i = 0; i < mat.dims; ++i) out.shape.push_back(mat.size[i]);
  out.data.assign(reinterpret_cast<const char*>(mat.ptr()), mat.total() * mat.elemSize());
  return out;
}

// The Net pool described in the header.
class OpenCvModel final : public Model {
 public:
  OpenCvModel(ModelMetadata metadata, std::vector<cv::dnn::Net> nets)
      : metadata_(std::move(metadata)), idle_(std::move(nets)) {
    for (const auto& out : metadata_.outputs) output_names_.push_back(out.name);
    for (const auto& in : metadata_.inputs) input_names_.push_back(in.name);
  }

  const ModelMetadata& metadata() const override { return metadata_; }

  Result<std::vector<Tensor>> infer(std::span<const Tensor> inputs) override {
    CONCORD_RETURN_IF_ERROR(validate_inputs(metadata_, inputs));
    std::vector<cv::Mat> mats;
    mats.reserve(input_names_.size());
    for (const auto& name : input_names_) {
      for (const Tensor& t : inputs) {
        if (t.name != name) continue;
        CONCORD_ASSIGN_OR_RETURN(auto mat, to_mat(t));
        mats.push_back(std::move(mat));
      }
    }
    cv::dnn::Net net = checkout();
    auto outs = run(net, mats);
    checkin(std::move(net));
    return outs;
  }

  // Runs `net` once; used by infer and by the load-time probe.
  Result<std::vector<Tensor>> run(cv::dnn::Net& net, const std::vector<cv::Mat>& mats) {
    CONCORD_ASSIGN_OR_RETURN(auto raw, catch_cv(Code::kInternal, "OpenCV dnn forward failed", [&] {
                               for (size_t i = 0; i < mats.size(); ++i)
                                 net.setInput(mats[i], input_names_[i]);
                               std::vector<cv::Mat> outs;
                               net.forward(outs, output_names_);
                               return outs;
                             }));
    if (raw.size() != output_names_.size()) {
      return fail(Code::kInternal, fmt::format("OpenCV dnn returned {} outputs, expected {}",
                                               raw.size(), output_names_.size()));
    }
    std::vector<Tensor> outs;
    for (size_t i = 0; i < raw.size(); ++i) {
      CONCORD_ASSIGN_OR_RETURN(auto t, from_mat(raw[i], output_names_[i]));
      outs.push_back(std::move(t));
    }
    return outs;
  }

  cv::dnn::Net checkout() {
    std::unique_lock lock(mu_);
    available_.wait(lock, [&] { return !idle_.empty(); });
    cv::dnn::Net net = std::move(idle_.back());
    idle_.pop_back();
    return net;
  }
  void checkin(cv::dnn::Net net) {
    {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(net));
    }
    available_.notify_one();
  }

 private:
  const ModelMetadata metadata_;
  std::vector<cv::String> output_names_;
  std::vector<std::string> input_names_;
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<cv::dnn::Net> idle_;  // GUARDED_BY(mu_)
};

Status check_runtime_support(const ModelMetadata& metadata) {
  for (const auto* list : {&metadata.inputs, &metadata.outputs}) {
    for (const TensorInfo& t : *list) {
      if (t.datatype != kSupportedDatatype) {
        return fail(Code::kFailedPrecondition,
                    fmt::format("the OpenCV runtime serves FP32 tensors only; '{}' is {}", t.name,
                                t.datatype.empty() ? fmt::format("ONNX type {}", t.elem_type)
                                                   : t.datatype));
      }
      if (!t.has_shape) {
        return fail(
            Code::kFailedPrecondition,
            fmt::format("'{}' has no declared shape; the OpenCV runtime needs the rank", t.name));
      }
    }
  }
  return ok();
}

}  // namespace

Result<std::unique_ptr<Model>> OpenCvRuntime::load(std::string_view bytes) {
  CONCORD_ASSIGN_OR_RETURN(auto onnx, parse_onnx_model(bytes, options_.limits));
  ModelMetadata metadata;
  metadata.format = "onnx";
  metadata.runtime = std::string(name());
  metadata.inputs = onnx.inputs;
  metadata.outputs = onnx.outputs;
  metadata.onnx = std::move(onnx);
  CONCORD_RETURN_IF_ERROR(check_runtime_support(metadata));

  const int instances = std::max(1, options_.instances);
  std::vector<cv::dnn::Net> nets;
  for (int i = 0; i < instances; ++i) {
    CONCORD_ASSIGN_OR_RETURN(auto net, import_net(bytes));
    nets.push_back(std::move(net));
  }

  // The probe: batch 1 (or the fixed size) of zeros through the first Net.
  std::vector<cv::Mat> probe;
  for (const TensorInfo& in : metadata.inputs) {
    std::vector<int64_t> shape = in.shape;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] >= 0) continue;
      if (d != 0) {
        return fail(Code::kFailedPrecondition,
                    fmt::format("input '{}' has a dynamic dimension {} other than the batch "
                                "dimension; the OpenCV runtime cannot serve it",
                                in.name, d));
      }
      shape[d] = 1;
    }
    auto count = element_count(shape, uint64_t{1} << 28);
    if (!count) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("input '{}': {}", in.name, count.error().message()));
    }
    Tensor zeros{in.name, in.datatype, shape, std::string(*count * sizeof(float), '\0')};
    CONCORD_ASSIGN_OR_RETURN(auto mat, to_mat(zeros));
    probe.push_back(std::move(mat));
  }
  auto model = std::make_unique<OpenCvModel>(std::move(metadata), std::move(nets));
  cv::dnn::Net first = model->checkout();
  auto probed = model->run(first, probe);
  model->checkin(std::move(first));
  if (!probed) {
    return fail(Code::kFailedPrecondition,
                fmt::format("OpenCV dnn imported the model but cannot run it: {}",
                            probed.error().message()));
  }
  logger("inference")
      ->debug("opencv runtime loaded model inputs={} outputs={} nets={}",
              model->metadata().inputs.size(), model->metadata().outputs.size(), instances);
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace concord::inference

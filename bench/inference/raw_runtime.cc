// inference_raw_bench: the "raw runtime" row of bench/inference/serving.sh. It calls the OpenCV
// runtime in-process (make_runtime("opencv"), the same Runtime a replica loads) on the committed
// Fashion-MNIST model, batch B of real test images per call, from C threads for D seconds, so
// the serving benchmark can say how much of this throughput survives the HTTP layers.
//
// Each call builds its input Tensor from the test set (a copy, as a replica does when it parses
// a binary request) and checks the output shape, so a runtime that silently returns nothing
// cannot look fast. Prints one machine-readable line:
//   RAW_RESULT
//   {"calls":..,"images":..,"errors":..,"duration_s":..,"latency_us":{"p50":..,"p99":..}}
// Exit codes: 0 measured, 2 bad options, 3 model or data set unreadable, 4 a call failed.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.h"
#include "inference/runtime/runtime.h"
#include "inference/runtime/runtimes.h"

namespace {

using Clock = std::chrono::steady_clock;

// Nearest-rank percentile of sorted values, as bench/compute/common.py computes it, so the raw
// row and the wrk rows are read the same way (wrk's own percentiles are also nearest-rank).
int64_t percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return -1;
  const auto k = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(k, 1, sorted.size()) - 1];
}

struct Worker {
  std::vector<int64_t> latencies_us;
  int64_t calls = 0;
  int64_t errors = 0;
  std::string first_error;
};

}  // namespace

int main(int argc, char** argv) {
  namespace inf = concord::inference;
  CLI::App app{"Calls the OpenCV runtime in-process on the Fashion-MNIST model (serving bench)"};
  std::string model_path = inf::testing::fashion_mnist_model().string();
  int batch = 32;
  int threads = 1;
  double duration_s = 5.0;
  int warmup_calls = 3;
  app.add_option("--model", model_path, "ONNX model file");
  app.add_option("--batch", batch, "images per call")->check(CLI::Range(1, 10000));
  app.add_option("--threads", threads, "concurrent callers")->check(CLI::Range(1, 1024));
  app.add_option("--duration", duration_s, "seconds measured")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--warmup-calls", warmup_calls, "untimed calls first")->check(CLI::Range(0, 1000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  auto data = inf::testing::load_fashion_mnist_test();
  if (!data || data->count < batch) {
    std::fprintf(stderr, "inference_raw_bench: cannot read the Fashion-MNIST test set under %s\n",
                 inf::testing::fashion_mnist_dir().c_str());
    return 3;
  }
  auto runtime = inf::make_runtime("opencv");
  if (!runtime.has_value()) {
    std::fprintf(stderr, "inference_raw_bench: %s\n", runtime.error().message().c_str());
    return 3;
  }
  auto loaded = (*runtime)->load_file(model_path);
  if (!loaded.has_value()) {
    std::fprintf(stderr, "inference_raw_bench: loading %s: %s\n", model_path.c_str(),
                 loaded.error().message().c_str());
    return 3;
  }
  inf::Model& model = **loaded;
  const std::string input_name = model.metadata().inputs.at(0).name;
  const int64_t windows = data->count - batch + 1;
  const size_t image_floats = 784;

  auto call = [&](int64_t window, Worker& w) {
    const std::span<const float> rows(data->pixels.data() + window * image_floats,
                                      static_cast<size_t>(batch) * image_floats);
    const inf::Tensor input = inf::Tensor::fp32(input_name, {batch, 1, 28, 28}, rows);
    auto out = model.infer(std::span<const inf::Tensor>(&input, 1));
    if (!out.has_value() || out->empty() || out->front().shape.empty() ||
        out->front().shape[0] != batch) {
      ++w.errors;
      if (w.first_error.empty()) {
        w.first_error = out.has_value() ? "unexpected output shape" : out.error().message();
      }
      return false;
    }
    return true;
  };

  {
    Worker warm;
    for (int i = 0; i < warmup_calls; ++i) call(i % windows, warm);
    if (warm.errors > 0) {
      std::fprintf(stderr, "inference_raw_bench: warm-up call failed: %s\n",
                   warm.first_error.c_str());
      return 4;
    }
  }

  std::vector<Worker> workers(static_cast<size_t>(threads));
  std::atomic<bool> stop{false};
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(duration_s));
  {
    std::vector<std::jthread> pool;
    pool.reserve(workers.size());
    for (size_t t = 0; t < workers.size(); ++t) {
      pool.emplace_back([&, t] {
        Worker& w = workers[t];
        w.latencies_us.reserve(4096);
        // Different threads walk different images; the content does not change the cost of a
        // CNN, but it keeps the run honest about using real data.
        int64_t window = static_cast<int64_t>(t) * 97 % windows;
        while (!stop.load(std::memory_order_relaxed)) {
          const auto t0 = Clock::now();
          if (t0 >= end) break;
          const bool ok = call(window, w);
          const auto t1 = Clock::now();
          if (ok) {
            w.latencies_us.push_back(
                std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count());
            ++w.calls;
          }
          window = (window + batch) % windows;
        }
      });
    }
  }
  // Calls that started before the deadline are finished and counted; the duration is the real
  // span, so throughput is not inflated by the last calls overrunning the deadline.
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<int64_t> all;
  int64_t calls = 0;
  int64_t errors = 0;
  std::string first_error;
  for (const Worker& w : workers) {
    all.insert(all.end(), w.latencies_us.begin(), w.latencies_us.end());
    calls += w.calls;
    errors += w.errors;
    if (first_error.empty()) first_error = w.first_error;
  }
  std::sort(all.begin(), all.end());
  std::printf(
      "RAW_RESULT {\"calls\":%lld,\"images\":%lld,\"errors\":%lld,\"batch\":%d,\"threads\":%d,"
      "\"duration_s\":%.3f,\"latency_us\":{\"p50\":%lld,\"p99\":%lld,\"max\":%lld}}\n",
      static_cast<long long>(calls), static_cast<long long>(calls) * batch,
      static_cast<long long>(errors), batch, threads, elapsed,
      static_cast<long long>(percentile(all, 50)), static_cast<long long>(percentile(all, 99)),
      static_cast<long long>(all.empty() ? -1 : all.back()));
  if (errors > 0) {
    std::fprintf(stderr, "inference_raw_bench: %lld calls failed, first: %s\n",
                 static_cast<long long>(errors), first_error.c_str());
    return 4;
  }
  return 0;
}

// concord-device: tries the device SDK against an endpoint. It loads the model here, lists and
// profiles its splits, probes the endpoint, then classifies images from an IDX file (Debian's
// dataset-fashion-mnist format, gzip'd) one per request, printing each request's latency and
// split, and the plan table. --verify also runs the whole model here on every image and counts
// results that are not bitwise equal; --json ends with one summary line for scripts
// (bench/inference/split.sh).
//
//   concord-device --endpoint URL --name NAME --model FILE [--token T] [--images FILE.gz]
//       [--labels FILE.gz] [--count N] [--split auto|cloud|device|K] [--report] [--verify]
//       [--json] [--quiet] [--margin 0.1] [--profile-runs 5] [--probe-bytes 131072]
//
// A model whose single input is not one IDX image (per row) is fed deterministic pseudo-random
// values in [0, 1) instead (the benchmark's larger synthetic model).
//
// Exit codes: 0 done (and, with --verify, every result equal), 1 a request failed or a result
// differed, 2 bad options or inputs, 3 the model or the endpoint could not be set up. An
// endpoint that is unreachable, times out or is overloaded while probing is not an error with
// --split auto: the requests run on the device, and the endpoint is tried again later.
#include <fmt/format.h>
#include <zlib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "inference/runtime/opencv_runtime.h"
#include "inference/sdk/session.h"

namespace {

using concord::inference::Tensor;

std::optional<std::string> gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  std::string out;
  std::vector<char> buf(1 << 16);
  int n = 0;
  while ((n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0) {
    out.append(buf.data(), static_cast<size_t>(n));
  }
  const bool ok = n == 0;
  gzclose(f);
  if (!ok) return std::nullopt;
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<uint8_t>(s[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[at + 3])};
}

struct Images {
  int count = 0;
  int rows = 0;
  int cols = 0;
  std::string pixels;  // count x rows x cols bytes
};

std::optional<Images> read_idx_images(const std::string& path) {
  auto raw = gunzip(path);
  if (!raw || raw->size() < 16 || be32(*raw, 0) != 0x803) return std::nullopt;
  Images im;
  im.count = static_cast<int>(be32(*raw, 4));
  im.rows = static_cast<int>(be32(*raw, 8));
  im.cols = static_cast<int>(be32(*raw, 12));
  if (raw->size() != 16 + size_t(im.count) * im.rows * im.cols) return std::nullopt;
  im.pixels = raw->substr(16);
  return im;
}

std::optional<std::string> read_idx_labels(const std::string& path) {
  auto raw = gunzip(path);
  if (!raw || raw->size() < 8 || be32(*raw, 0) != 0x801) return std::nullopt;
  if (raw->size() != 8 + size_t(be32(*raw, 4))) return std::nullopt;
  return raw->substr(8);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * double(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Split inference from a device: the head of a model here, the tail at an endpoint"};
  std::string endpoint, token, model_file, name;
  std::string images_file = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  std::string labels_file;
  std::string split = "auto";
  int count = 100;
  int profile_runs = 5;
  double margin = 0.1;
  uint64_t probe_bytes = 128 * 1024;
  bool report = false, verify = false, json = false, quiet = false;
  app.add_option("--endpoint", endpoint, "endpoint URL serving NAME and NAME.from.K")->required();
  app.add_option("--token", token, "X-Auth-Token to send");
  app.add_option("--model", model_file, "the ONNX model file (the same bytes the endpoint serves)")
      ->required();
  app.add_option("--name", name, "the OIP model name at the endpoint")->required();
  app.add_option("--images", images_file, "gzip'd IDX images (pixel/255 as model input)");
  app.add_option("--labels", labels_file, "gzip'd IDX labels: report accuracy");
  app.add_option("--count", count, "requests (one image each)")->check(CLI::PositiveNumber);
  app.add_option("--split", split, "auto, cloud, device, or a cut K");
  app.add_option("--margin", margin, "planner hysteresis (fraction)");
  app.add_option("--profile-runs", profile_runs, "runs per head when profiling (median)");
  app.add_option("--probe-bytes", probe_bytes, "size of the bandwidth probe");
  app.add_flag("--report", report, "print the plan table after probing and at the end");
  app.add_flag("--verify", verify, "run the whole model here too and compare bitwise");
  app.add_flag("--json", json, "end with one JSON summary line");
  app.add_flag("--quiet", quiet, "no per-request lines");
  CLI11_PARSE(app, argc, argv);

  std::ifstream in(model_file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "concord-device: cannot read model file %s\n", model_file.c_str());
    return 2;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto images = read_idx_images(images_file);
  if (!images) {
    std::fprintf(stderr, "concord-device: %s is not a gzip'd IDX image file\n",
                 images_file.c_str());
    return 2;
  }
  std::optional<std::string> labels;
  if (!labels_file.empty()) {
    labels = read_idx_labels(labels_file);
    if (!labels || static_cast<int>(labels->size()) != images->count) {
      std::fprintf(stderr, "concord-device: %s does not label %s\n", labels_file.c_str(),
                   images_file.c_str());
      return 2;
    }
  }

  concord::inference::OpenCvRuntime runtime;
  concord::inference::sdk::SessionOptions options;
  options.endpoint_url = endpoint;
  options.token = token;
  options.model_name = name;
  options.model_bytes = bytes;
  options.profile_runs = profile_runs;
  options.margin = margin;
  options.bandwidth_probe_bytes = probe_bytes;
  auto session = concord::inference::sdk::DeviceSession::create(options, runtime);
  if (!session) {
    std::fprintf(stderr, "concord-device: %s\n", session.error().to_string().c_str());
    return 3;
  }
  auto& s = **session;
  const int n = s.node_count();
  std::optional<int> fixed;
  if (split == "cloud") {
    fixed = 0;
  } else if (split == "device") {
    fixed = n;
  } else if (split != "auto") {
    try {
      fixed = std::stoi(split);
    } catch (const std::exception&) {
      std::fprintf(stderr, "concord-device: --split must be auto, cloud, device or a number\n");
      return 2;
    }
    const auto all = s.splits();
    if (std::find(all.begin(), all.end(), *fixed) == all.end()) {
      std::fprintf(stderr, "concord-device: %d is not a split of this model\n", *fixed);
      return 2;
    }
  }
  // A fixed split needs no estimates; probing would only add its own traffic to the run. An
  // endpoint that is unreachable, too slow or overloaded is not fatal: the session runs on the
  // device and tries it again later (session.h).
  if (auto st = fixed ? concord::ok() : s.probe(); !st) {
    std::fprintf(stderr, "concord-device: probing %s failed: %s%s\n", endpoint.c_str(),
                 st.error().to_string().c_str(),
                 s.remote_available() ? "" : "; running on the device until it answers");
    if (s.remote_available()) return 3;
  }
  const auto link = s.link();
  std::printf("model %s: %d nodes, %zu cuts; ", name.c_str(), n, s.partitions().cuts.size());
  if (s.remote_available()) {
    std::printf("rtt %.3f ms, bandwidth %.1f B/ms, server queue %.3f ms\n", link.rtt_ms,
                link.up_bytes_per_ms, link.server_queue_ms);
  } else {
    std::printf("the endpoint is out of the plan\n");
  }
  if (report) std::printf("%s", s.plan_table().c_str());

  std::unique_ptr<concord::inference::Model> whole;
  if (verify) {
    auto w = runtime.load(bytes);
    if (!w) {
      std::fprintf(stderr, "concord-device: %s\n", w.error().to_string().c_str());
      return 3;
    }
    whole = std::move(*w);
  }
  const auto info = concord::inference::parse_onnx_model(bytes);  // create() parsed it already
  if (!info || info->inputs.size() != 1) {
    std::fprintf(stderr, "concord-device: the CLI feeds models with exactly one input\n");
    return 2;
  }
  const size_t per_image = size_t(images->rows) * images->cols;
  std::vector<double> latencies;
  std::map<int, int> used;
  int equal = 0, differ = 0, correct = 0, failures = 0;
  for (int i = 0; i < count; ++i) {
    const int idx = i % images->count;
    std::vector<int64_t> shape = info->inputs[0].shape;
    size_t elements = 1;
    for (auto& d : shape) {
      d = d < 0 ? 1 : d;
      elements *= static_cast<size_t>(d);
    }
    std::vector<float> px(elements);
    if (elements == per_image) {
      for (size_t p = 0; p < per_image; ++p) {
        px[p] = float(static_cast<uint8_t>(images->pixels[idx * per_image + p])) / 255.0f;
      }
    } else {
      // Not an image model of this size: deterministic pseudo-random inputs in [0, 1).
      uint64_t x = 0x9E3779B97F4A7C15ull * uint64_t(idx + 1);
      for (auto& v : px) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = float(x >> 40) / float(1 << 24);
      }
    }
    const Tensor input = Tensor::fp32(info->inputs[0].name, shape, px);
    auto r = fixed ? s.infer_at(*fixed, std::span(&input, 1)) : s.infer(std::span(&input, 1));
    if (!r) {
      ++failures;
      std::fprintf(stderr, "request %d failed: %s\n", i, r.error().to_string().c_str());
      continue;
    }
    latencies.push_back(r->total_ms);
    ++used[r->cut];
    if (!quiet) {
      std::printf(
          "request %d split %d latency %.3f ms (device %.3f, remote %.3f, queue %lld us, "
          "compute %lld us, %llu B up)\n",
          i, r->cut, r->total_ms, r->device_ms, r->remote_ms,
          static_cast<long long>(r->server.queue_us), static_cast<long long>(r->server.compute_us),
          static_cast<unsigned long long>(r->bytes_up));
    }
    if (whole) {
      auto w = whole->infer(std::span(&input, 1));
      const bool same = w && !r->outputs.empty() && w->size() == r->outputs.size() &&
                        (*w)[0].data == r->outputs[0].data && (*w)[0].shape == r->outputs[0].shape;
      same ? ++equal : ++differ;
    }
    if (labels && !r->outputs.empty()) {
      const auto logits = r->outputs[0].to_floats();
      const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
      correct += best == static_cast<uint8_t>((*labels)[idx]);
    }
  }
  if (report) std::printf("%s", s.plan_table().c_str());
  std::string splits_used;
  for (const auto& [k, c] : used)
    splits_used += fmt::format("{}{}x{}", splits_used.empty() ? "" : " ", k, c);
  std::printf(
      "summary: %zu requests, %d failed, split %s -> [%s], revisions %d, latency ms "
      "min %.3f median %.3f p90 %.3f max %.3f\n",
      latencies.size(), failures, split.c_str(), splits_used.c_str(), s.revisions(),
      percentile(latencies, 0), percentile(latencies, 0.5), percentile(latencies, 0.9),
      percentile(latencies, 1));
  if (verify)
    std::printf("verify: %d of %d equal to the whole model bitwise\n", equal, equal + differ);
  if (labels) std::printf("accuracy: %d of %zu\n", correct, latencies.size());
  if (json) {
    concord::Json j;
    j["split_mode"] = split;
    j["requests"] = latencies.size();
    j["failures"] = failures;
    j["final_split"] = fixed ? *fixed : s.current_split();
    j["node_count"] = n;
    j["revisions"] = s.revisions();
    concord::Json u = concord::Json::object();
    for (const auto& [k, c] : used) u[std::to_string(k)] = c;
    j["splits_used"] = u;
    j["latency_ms"] = {{"min", percentile(latencies, 0)},
                       {"median", percentile(latencies, 0.5)},
                       {"p90", percentile(latencies, 0.9)},
                       {"max", percentile(latencies, 1)}};
    j["remote_available"] = s.remote_available();
    j["link"] = {{"rtt_ms", link.rtt_ms},
                 {"bandwidth_bytes_per_ms", link.up_bytes_per_ms},
                 {"server_queue_ms", link.server_queue_ms}};
    if (verify) {
      j["verified_equal"] = equal;
      j["verified_differ"] = differ;
    }
    if (labels) j["correct"] = correct;
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  return failures > 0 || differ > 0 ? 1 : 0;
}

#include "inference/serving/replica.h"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/core/utils/logger.hpp>
#include <thread>

#include "base/log.h"
#include "http/metrics.h"
#include "http/server.h"
#include "inference/partition/partition.h"
#include "inference/runtime/runtimes.h"
#include "inference/serving/oip.h"

namespace concord::inference::serving {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitBadOptions = 2;
constexpr int kExitModel = 3;
constexpr int kExitBind = 4;

// The body limit must hold a batch of 64 rows of the model's input sent as JSON (a float is up
// to ~20 characters of text against 4 bytes binary); 64 MiB covers the models Concord serves
// today and stays a bound against a hostile client.
constexpr size_t kMinBodyBytes = size_t{64} << 20;
constexpr size_t kMaxBodyBytes = size_t{1} << 30;

// Parses `args` (without program and subcommand). nullopt with `exit_code` set when the process
// should stop (help printed: 0; an error printed: 2).
std::optional<ReplicaOptions> parse_options(const std::vector<std::string>& args, int& exit_code) {
  ReplicaOptions o;
  int64_t delay_us = o.batching.max_queue_delay.count();
  CLI::App app{"Serve one model over the Open Inference Protocol v2 (an inference replica)",
               "concord inference-replica"};
  app.add_option("--model", o.model_file, "ONNX model file to serve")->required();
  app.add_option("--name", o.name, "OIP model name to serve it under")->required();
  app.add_option("--version", o.version, "OIP model version string")->capture_default_str();
  app.add_option("--runtime", o.runtime, "Inference runtime (opencv)")->capture_default_str();
  app.add_option("--bind", o.bind, "Address to listen on")->capture_default_str();
  app.add_option("--port", o.port, "Port to listen on; 0 picks a free one")->capture_default_str();
  app.add_option("--port-file", o.port_file,
                 "File to write the bound port to (atomically) once serving");
  app.add_option("--key-file", o.key_file,
                 "File holding the replica key every request but /v2/health/live must present "
                 "in x-concord-replica-key");
  app.add_option("--max-batch-size", o.batching.max_batch_size, "Rows per batch at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-queue-delay-us", delay_us,
                 "How long the oldest queued request waits for a batch to fill")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
  app.add_option("--max-queue", o.batching.max_queue, "Waiting requests per model before 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--threads", o.threads,
                 "HTTP server threads; 0 sizes it for batching (max(8, 2*max-batch-size+4))")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app.add_flag("--split", o.split, "Also serve the model's tails for split inference");
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    exit_code = kExitOk;
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "concord inference-replica: %s\n", e.what());
    exit_code = kExitBadOptions;
    return std::nullopt;
  }
  o.batching.max_queue_delay = std::chrono::microseconds(delay_us);
  return o;
}

Result<std::string> read_whole_file(const std::string& path, std::string_view what) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return fail(Code::kNotFound, fmt::format("{} {} does not exist", what, path));
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return fail(Code::kUnavailable, fmt::format("cannot read {} {}", what, path));
  }
  return bytes;
}

// Written to a temporary name and renamed, so a reader never sees a partial port.
Status write_port_file(const std::string& path, uint16_t port) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << '\n';
    out.close();
    if (!out) return fail(Code::kUnavailable, fmt::format("cannot write port file {}", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return fail(Code::kUnavailable, fmt::format("cannot rename {} to {}", tmp, path));
  }
  return ok();
}

std::atomic<bool> g_signalled{false};

extern "C" void on_stop_signal(int) {
  g_signalled.store(true);
}

}  // namespace

Result<std::vector<ServedModel>> build_served_models(std::string_view model_bytes,
                                                     std::shared_ptr<Model> whole,
                                                     const ReplicaOptions& options,
                                                     Runtime& runtime) {
  std::vector<ServedModel> models;
  models.push_back(ServedModel{options.name, options.version, std::move(whole)});
  if (options.split) {
    // The tails "<name>.from.<k>" a device SDK calls after running the head up to cut k itself
    // (partition.h: both sides cut the same bytes at the same tensors). Cut 0 (cloud only) is
    // the whole model above.
    CONCORD_ASSIGN_OR_RETURN(std::vector<partition::TailPart> tails,
                             partition::tail_parts(model_bytes, options.name, runtime));
    for (partition::TailPart& tail : tails) {
      CONCORD_ASSIGN_OR_RETURN(std::unique_ptr<Model> loaded, runtime.load(tail.bytes));
      models.push_back(
          {std::move(tail.name), options.version, std::shared_ptr<Model>(std::move(loaded))});
    }
    logger("inference")->info("model={} split serving: {} tails", options.name, models.size() - 1);
  }
  return models;
}

int run_replica_until(const std::vector<std::string>& args, const std::atomic<bool>& stop) {
  int exit_code = kExitBadOptions;
  const auto parsed = parse_options(args, exit_code);
  if (!parsed) return exit_code;
  const ReplicaOptions& o = *parsed;
  auto log = logger("inference");
  // OpenCV's own logging (info lines on import) would interleave with Concord's structured logs.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);

  ModelServerOptions server_options;
  server_options.batching = o.batching;
  if (!o.key_file.empty()) {
    auto key = read_whole_file(o.key_file, "key file");
    if (!key) {
      std::fprintf(stderr, "concord inference-replica: %s\n", key.error().message().c_str());
      return kExitBadOptions;
    }
    while (!key->empty() && (key->back() == '\n' || key->back() == '\r' || key->back() == ' ')) {
      key->pop_back();
    }
    if (key->empty()) {
      std::fprintf(stderr, "concord inference-replica: key file %s is empty\n", o.key_file.c_str());
      return kExitBadOptions;
    }
    server_options.replica_key = std::move(*key);
  }

  auto runtime = make_runtime(o.runtime);
  if (!runtime) {
    std::fprintf(stderr, "concord inference-replica: %s\n", runtime.error().message().c_str());
    return kExitBadOptions;
  }
  auto bytes = read_whole_file(o.model_file, "model file");
  if (!bytes) {
    std::fprintf(stderr, "concord inference-replica: %s\n", bytes.error().message().c_str());
    return kExitModel;
  }
  auto model = (*runtime)->load(*bytes);
  if (!model) {
    std::fprintf(stderr, "concord inference-replica: cannot load %s: %s\n", o.model_file.c_str(),
                 model.error().to_string().c_str());
    return kExitModel;
  }
  uint64_t row_bytes = 0;
  for (const TensorInfo& t : (*model)->metadata().inputs) {
    uint64_t n = datatype_size(t.datatype).value_or(1);
    for (size_t d = 1; d < t.shape.size(); ++d)
      n *= static_cast<uint64_t>(std::max<int64_t>(1, t.shape[d]));
    row_bytes += n;
  }
  auto served =
      build_served_models(*bytes, std::shared_ptr<Model>(std::move(*model)), o, **runtime);
  bytes->clear();
  if (!served) {
    std::fprintf(stderr, "concord inference-replica: %s\n", served.error().to_string().c_str());
    return kExitModel;
  }
  auto model_server = ModelServer::create(std::move(*served), server_options);
  if (!model_server) {
    std::fprintf(stderr, "concord inference-replica: %s\n", model_server.error().message().c_str());
    return kExitBadOptions;
  }

  auto router = std::make_shared<http::Router>();
  router->mount("", (*model_server)->routes(), oip::error);
  http::ServerOptions http_options;
  http_options.bind_address = o.bind;
  http_options.port = o.port;
  http_options.threads = o.threads > 0 ? o.threads : std::max(8, 2 * o.batching.max_batch_size + 4);
  // 64 rows as JSON text (about 5x the binary size), never below 64 MiB nor above 1 GiB.
  http_options.max_body_bytes =
      static_cast<size_t>(std::clamp<uint64_t>(row_bytes * 64 * 5, kMinBodyBytes, kMaxBodyBytes));
  ModelServer* ms = model_server->get();
  http_options.health = [ms] { return ms->ready(); };
  http::Server server(http_options, router, std::make_shared<http::Registry>());
  if (auto started = server.start(); !started) {
    std::fprintf(stderr, "concord inference-replica: cannot listen on %s:%u: %s\n", o.bind.c_str(),
                 static_cast<unsigned>(o.port), started.error().message().c_str());
    return kExitBind;
  }
  if (!o.port_file.empty()) {
    if (auto written = write_port_file(o.port_file, server.port()); !written) {
      std::fprintf(stderr, "concord inference-replica: %s\n", written.error().message().c_str());
      server.stop();
      return kExitBadOptions;
    }
  }
  log->info(
      "model={} version={} serving on {}:{} max_batch_size={} max_queue_delay_us={} "
      "threads={}",
      o.name, o.version, o.bind, server.port(), o.batching.max_batch_size,
      o.batching.max_queue_delay.count(), http_options.threads);

  while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));

  log->info("model={} stopping: draining", o.name);
  ms->drain();
  server.stop();
  model_server->reset();
  if (!o.port_file.empty()) {
    std::error_code ec;
    std::filesystem::remove(o.port_file, ec);
  }
  return kExitOk;
}

int run_replica(const std::vector<std::string>& args) {
  g_signalled.store(false);
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_term = {};
  struct sigaction old_int = {};
  ::sigaction(SIGTERM, &sa, &old_term);
  ::sigaction(SIGINT, &sa, &old_int);
  const int code = run_replica_until(args, g_signalled);
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGINT, &old_int, nullptr);
  return code;
}

}  // namespace concord::inference::serving

#pragma once
// `concord inference-replica`: the process an agent's inference driver starts for one replica
// of an endpoint. It loads the model file with the runtime, builds the served models (the whole
// model, and its tails when split serving is on), serves the OIP routes (model_server.h) on its
// own HTTP server, writes its port to a file once ready, and on SIGTERM drains and exits 0.
//
// Command line (every option also documented by --help):
//   concord inference-replica --model FILE --name NAME [--version 1] [--runtime opencv]
//       [--bind 127.0.0.1] [--port 0] [--port-file FILE] [--key-file FILE]
//       [--max-batch-size 8] [--max-queue-delay-us 2000] [--max-queue 1024]
//       [--threads N] [--split]
// --port-file is written atomically (temp + rename) with the bound port once the server
// accepts connections; --key-file holds the replica key (model_server.h), read once at start.
// Exit codes: 0 after a graceful stop, 2 for bad options, 3 when the model cannot be loaded,
// 4 when the port cannot be bound.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "inference/runtime/runtime.h"
#include "inference/serving/model_server.h"

namespace concord::inference::serving {

// The parsed command line.
struct ReplicaOptions {
  std::string model_file;
  std::string name;
  std::string version = "1";
  std::string runtime = "opencv";
  std::string bind = "127.0.0.1";
  uint16_t port = 0;
  std::string port_file;
  std::string key_file;
  BatchingOptions batching;
  int threads = 0;  // 0: max(8, 2 * max_batch_size + 4)
  bool split = false;
};

// The models one replica serves, built from the model file's bytes and the loaded whole model:
// the whole model under its name, and (the hook for split serving, see --split) its tails
// "<name>.from.<k>" once they are added here. kInvalidArgument / kFailedPrecondition when a
// part cannot be built.
[[nodiscard]] Result<std::vector<ServedModel>> build_served_models(std::string_view model_bytes,
                                                                   std::shared_ptr<Model> whole,
                                                                   const ReplicaOptions& options,
                                                                   Runtime& runtime);

// As run_replica, but stops when `stop` becomes true instead of on a signal (tests, and a
// caller that owns signal handling). Returns the same exit codes.
int run_replica_until(const std::vector<std::string>& args, const std::atomic<bool>& stop);

// Runs the replica until SIGTERM/SIGINT; `args` excludes the program and subcommand names.
int run_replica(const std::vector<std::string>& args);

}  // namespace concord::inference::serving

#pragma once
// DeviceSession: the device SDK's whole loop for one model and one endpoint (docs/design/
// inference.md, "Device SDK and the split planner").
//
//   create():  parses the model, lists its cuts (partition.h, the same cuts the replica serves
//              as "<name>.from.<k>"), builds and loads every head with the device's runtime and
//              profiles it (median of `profile_runs` runs on zeros of batch 1, after one warm-up).
//   probe():   measures the link and the server: RTT as the median of five GET
//              /v2/health/ready; bandwidth from pairs of cloud-only calls of one row and of
//              about `bandwidth_probe_bytes` (zero rows): size difference / difference of
//              (elapsed - queue - compute); then the idle cost of every remote option (cloud-
//              only and each tail whose upload is cheap enough) from one zero-input call each,
//              read from concord-compute-time-us.
//   infer():   plans (planner.h, with hysteresis), runs the head here and the tail there, and
//              folds what the call showed back into the estimates (EWMA, `ewma_alpha`).
//
// Measurement model (what each planner input is, and where it comes from):
//   device_ms[k]  profiled head time x device slowdown; the slowdown is the EWMA of observed /
//                 profiled head time of the calls made, so a device that gets busier shifts
//                 every option at once.
//   server_ms[k]  the tail's compute time on the idle server as measured by probe(), x server
//                 slowdown (EWMA of reported compute / probed compute of the option used). For
//                 a tail probe() skipped: the whole model's server time x the tail's share of
//                 the device's time for the whole model (1 - head_ms[k] / whole_ms).
//   queue         the server's queue time, EWMA of concord-queue-time-us, added to every remote
//                 option. It is additive, not a factor on compute: much of it is the batcher's
//                 fixed wait for company (max_queue_delay), which a cheap tail pays as much as
//                 the whole model (LinkEstimate::server_queue_ms; server_load_factor carries
//                 the compute slowdown).
//   bandwidth     EWMA of (bytes up + down) / (elapsed - rtt - server time) over calls that
//                 moved at least 16 KiB (smaller ones say more about RTT than bandwidth); the
//                 same value is used both ways (the emulated links are symmetric).
//   rtt           probe() and a ping every `reprobe_every` requests.
// When the planner has chosen device-only no server information flows, so every
// `reprobe_every` requests the session also sends one zero-input call to the smallest tail to
// refresh the server's queue and slowdown; that call is not part of any request's latency.
//
// An endpoint that cannot be reached, times out or says it is overloaded (kUnavailable,
// kDeadlineExceeded, kResourceExhausted from probe(), a refresh or a remote call of infer())
// is taken out of the plan: only device-only is planned until a new probe() succeeds. That
// probe runs after the first request made `remote_retry_after` later, then after twice that,
// and so on up to `remote_retry_max`; it runs on the caller's thread, between two requests. A
// request of infer() whose remote call fails so is run again on the device, so the caller gets
// its answer (later by the failed call). Other errors (a model the endpoint does not serve, a
// refused token) are the caller's to see and change nothing.
//
// Costs scale with the request's batch rows linearly (bytes exactly; compute approximately).
//
// Threading: one session per thread.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "inference/partition/partition.h"
#include "inference/runtime/runtime.h"
#include "inference/sdk/oip_client.h"
#include "inference/sdk/planner.h"

namespace concord::inference::sdk {

struct SessionOptions {
  std::string endpoint_url;  // http://host:port[/prefix] serving "<name>" and its tails
  std::string token;         // X-Auth-Token; empty for none
  std::string model_name;
  std::string model_bytes;
  int max_cut_tensors = 4;
  int profile_runs = 5;
  double margin = 0.1;  // planner hysteresis
  double ewma_alpha = 0.3;
  uint64_t bandwidth_probe_bytes = 128 * 1024;
  // probe() calls a tail only when its upload takes at most this long at the measured
  // bandwidth (on a slow link the early cuts' megabytes would take seconds each).
  double max_probe_upload_ms = 100;
  int reprobe_every = 16;
  std::chrono::milliseconds timeout{30'000};
  // When an unusable endpoint is tried again (see above).
  std::chrono::milliseconds remote_retry_after{30'000};
  std::chrono::milliseconds remote_retry_max{600'000};
};

struct SplitResult {
  std::vector<Tensor> outputs;
  int cut = 0;           // 0 cloud-only, node_count device-only
  double total_ms = 0;   // head + remote call
  double device_ms = 0;  // head (or whole model) here
  double remote_ms = 0;  // the remote call, 0 for device-only
  ServerTiming server;
  uint64_t bytes_up = 0;
};

class DeviceSession {
 public:
  // Errors: kInvalidArgument for bytes that are not a model or a malformed URL;
  // kFailedPrecondition when the runtime cannot run the model or a head.
  [[nodiscard]] static Result<std::unique_ptr<DeviceSession>> create(SessionOptions options,
                                                                     Runtime& runtime);

  // Measures RTT, bandwidth and the server's idle cost of every remote option (see above).
  // Errors of the calls as OipClient reports them (a tail the endpoint does not serve is
  // kNotFound: the endpoint is not serving split tails); after kUnavailable, kDeadlineExceeded
  // or kResourceExhausted the session plans device-only (remote_available() is false).
  [[nodiscard]] Status probe();

  // Plans and runs. Errors: the head's (kInvalidArgument for inputs that do not fit the model)
  // or the remote call's, except those that take the endpoint out of the plan: that request
  // is run on the device instead.
  [[nodiscard]] Result<SplitResult> infer(std::span<const Tensor> inputs);
  // Runs at a fixed split (0, a listed cut, or node_count), still learning from the call.
  // kInvalidArgument for a split that is not one of splits().
  [[nodiscard]] Result<SplitResult> infer_at(int split, std::span<const Tensor> inputs);

  int node_count() const { return parts_.node_count; }
  const partition::Partitions& partitions() const { return parts_; }
  // 0, every listed cut, node_count.
  std::vector<int> splits() const;
  // The planner's inputs now, for a request of `rows` batch rows.
  std::vector<SplitOption> options(int rows = 1) const;
  LinkEstimate link() const;
  // The split the planner holds (-1 before the first infer()).
  int current_split() const { return planner_.current(); }
  int revisions() const { return planner_.revisions(); }
  // False from a probe, refresh or remote call that failed as unreachable, timed out or
  // overloaded, until a probe() succeeds.
  bool remote_available() const { return !remote_down_; }
  // The estimated cost of every split now, the planner's choice marked.
  std::string plan_table(int rows = 1) const;
  // The profiled head times (ms, batch 1) by split.
  const std::map<int, double>& device_profile() const { return device_ms_; }

 private:
  DeviceSession(SessionOptions options, OnnxModelInfo info, partition::Partitions parts,
                std::unique_ptr<OipClient> client);
  void learn(int split, double device_ms, const InferCall* call);
  [[nodiscard]] Status refresh();
  // probe()'s calls and estimates; probe() decides what a failure means for the plan.
  [[nodiscard]] Status measure();
  // kUnavailable, kDeadlineExceeded, kResourceExhausted: the endpoint cannot serve for now.
  static bool unusable(const Error& error);
  // Takes the endpoint out of the plan (or keeps it out) and sets its next try.
  void take_out(const Error& error);
  // After each request: the periodic refresh, or the endpoint's next try when it is out.
  void after_request();

  SessionOptions options_;
  OnnxModelInfo info_;
  partition::Partitions parts_;
  std::unique_ptr<OipClient> client_;
  std::map<int, std::unique_ptr<Model>> heads_;      // by split; node_count holds the whole model
  std::map<int, double> device_ms_;                  // profiled, batch 1
  std::map<int, double> server_ms_;                  // probed idle compute, batch 1
  std::map<int, uint64_t> bytes_up_;                 // per row, as sent (tensor bytes)
  std::map<int, std::vector<Tensor>> probe_inputs_;  // head outputs on zeros, for refresh()
  SplitPlanner planner_;
  double rtt_ms_ = 1;
  double bandwidth_ = 1e5;  // bytes per ms
  double queue_ms_ = 0;
  double server_slowdown_ = 1;
  double device_slowdown_ = 1;
  int requests_ = 0;
  bool remote_down_ = false;
  std::chrono::milliseconds remote_backoff_{0};
  std::chrono::steady_clock::time_point remote_retry_at_;
};

// Zero tensors for every input of `inputs`, dynamic dimension 0 set to `rows` (other dynamic
// dimensions to 1). kInvalidArgument for a datatype without a fixed size.
[[nodiscard]] Result<std::vector<Tensor>> zero_inputs(const std::vector<TensorInfo>& inputs,
                                                      int rows);

}  // namespace concord::inference::sdk

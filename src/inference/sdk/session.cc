#include "inference/sdk/session.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/log.h"

namespace concord::inference::sdk {
namespace {

using Steady = std::chrono::steady_clock;

double ms_since(Steady::time_point start) {
  return std::chrono::duration<double, std::milli>(Steady::now() - start).count();
}

double ewma(double old_value, double sample, double alpha) {
  return (1 - alpha) * old_value + alpha * sample;
}

// Calls that move less than this say more about the round trip than about bandwidth.
constexpr uint64_t kMinBandwidthSampleBytes = 16 * 1024;
// 1e6 B/ms = 8 Gbit/s: beyond that transfers cost nothing next to a round trip, and a probe on
// loopback whose timing noise swamps the transfer would otherwise report nonsense.
constexpr double kMaxBandwidth = 1e6;

Result<double> median_infer_ms(Model& model, std::span<const Tensor> inputs, int runs) {
  CONCORD_RETURN_IF_ERROR(model.infer(inputs));  // warm-up: first runs allocate
  std::vector<double> ms;
  for (int i = 0; i < std::max(runs, 1); ++i) {
    const auto start = Steady::now();
    CONCORD_RETURN_IF_ERROR(model.infer(inputs));
    ms.push_back(ms_since(start));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int batch_rows(std::span<const Tensor> inputs) {
  if (inputs.empty() || inputs[0].shape.empty()) return 1;
  return static_cast<int>(std::max<int64_t>(inputs[0].shape[0], 1));
}

}  // namespace

Result<std::vector<Tensor>> zero_inputs(const std::vector<TensorInfo>& inputs, int rows) {
  std::vector<Tensor> out;
  for (const TensorInfo& t : inputs) {
    Tensor z;
    z.name = t.name;
    z.datatype = t.datatype;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      z.shape.push_back(t.shape[d] >= 0 ? t.shape[d] : (d == 0 ? rows : 1));
    }
    const auto size = datatype_size(t.datatype);
    if (!size) {
      return fail(
          Code::kInvalidArgument,
          fmt::format("input '{}' has datatype '{}', which has no fixed size", t.name, t.datatype));
    }
    CONCORD_ASSIGN_OR_RETURN(const uint64_t count, element_count(z.shape));
    z.data.assign(count * *size, '\0');
    out.push_back(std::move(z));
  }
  return out;
}

DeviceSession::DeviceSession(SessionOptions options, OnnxModelInfo info,
                             partition::Partitions parts, std::unique_ptr<OipClient> client)
    : options_(std::move(options)),
      info_(std::move(info)),
      parts_(std::move(parts)),
      client_(std::move(client)),
      planner_(options_.margin) {}

Result<std::unique_ptr<DeviceSession>> DeviceSession::create(SessionOptions options,
                                                             Runtime& runtime) {
  CONCORD_ASSIGN_OR_RETURN(OnnxModelInfo info, parse_onnx_model(options.model_bytes));
  CONCORD_ASSIGN_OR_RETURN(
      partition::Partitions parts,
      partition::list_cuts(options.model_bytes, runtime, options.max_cut_tensors));
  CONCORD_ASSIGN_OR_RETURN(auto client,
                           OipClient::create(options.endpoint_url, options.token, options.timeout));
  std::unique_ptr<DeviceSession> s(
      new DeviceSession(std::move(options), std::move(info), std::move(parts), std::move(client)));

  CONCORD_ASSIGN_OR_RETURN(const std::vector<Tensor> zeros, zero_inputs(s->info_.inputs, 1));
  const int n = s->parts_.node_count;
  auto whole = runtime.load(s->options_.model_bytes);
  if (!whole) {
    return fail(
        Code::kFailedPrecondition,
        fmt::format("the device runtime cannot load the model: {}", whole.error().message()));
  }
  s->heads_[n] = std::move(*whole);
  for (const partition::Cut& cut : s->parts_.cuts) {
    CONCORD_ASSIGN_OR_RETURN(const std::string head,
                             partition::head_model(s->options_.model_bytes, s->info_, cut));
    auto model = runtime.load(head);
    if (!model) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("the device runtime cannot load the head before cut {}: {}",
                              cut.index, model.error().message()));
    }
    s->heads_[cut.index] = std::move(*model);
    s->bytes_up_[cut.index] = cut.bytes_per_item;
  }
  s->bytes_up_[0] = s->parts_.input_bytes_per_item;
  s->device_ms_[0] = 0;
  for (auto& [split, model] : s->heads_) {
    auto ms = median_infer_ms(*model, zeros, s->options_.profile_runs);
    if (!ms) {
      return fail(
          Code::kFailedPrecondition,
          fmt::format("profiling split {} on the device failed: {}", split, ms.error().message()));
    }
    s->device_ms_[split] = *ms;
  }
  return s;
}

std::vector<int> DeviceSession::splits() const {
  std::vector<int> out{0};
  for (const auto& c : parts_.cuts) out.push_back(c.index);
  out.push_back(parts_.node_count);
  return out;
}

Status DeviceSession::probe() {
  if (Status st = measure(); !st) {
    // A failed try of an endpoint already out stays out, whatever the failure.
    if (remote_down_ || unusable(st.error())) take_out(st.error());
    return st;
  }
  if (remote_down_) {
    remote_down_ = false;
    logger("inference.sdk")->info("the endpoint answers again: it is back in the plan");
  }
  return ok();
}

bool DeviceSession::unusable(const Error& error) {
  return error.code() == Code::kUnavailable || error.code() == Code::kDeadlineExceeded ||
         error.code() == Code::kResourceExhausted;
}

void DeviceSession::take_out(const Error& error) {
  remote_backoff_ = remote_down_ ? std::min(remote_backoff_ * 2, options_.remote_retry_max)
                                 : options_.remote_retry_after;
  remote_down_ = true;
  remote_retry_at_ = Steady::now() + remote_backoff_;
  logger("inference.sdk")
      ->warn("the endpoint failed ({}): running on the device, trying it again in {} ms",
             error.to_string(), remote_backoff_.count());
}

Status DeviceSession::measure() {
  std::vector<double> pings;
  for (int i = 0; i < 5; ++i) {
    CONCORD_ASSIGN_OR_RETURN(const double ms, client_->ping());
    pings.push_back(ms);
  }
  std::sort(pings.begin(), pings.end());
  rtt_ms_ = pings[pings.size() / 2];

  // The whole model once, to warm the server up (its first calls allocate).
  CONCORD_ASSIGN_OR_RETURN(const std::vector<Tensor> zeros, zero_inputs(info_.inputs, 1));
  CONCORD_RETURN_IF_ERROR(client_->infer(options_.model_name, zeros));

  // Bandwidth: pairs of cloud-only calls, one row and about bandwidth_probe_bytes; the
  // difference of their wire times (elapsed minus the server's own time) over the difference of
  // their sizes, so the round trip and per-call overheads cancel out. Median of up to three
  // pairs, fewer when the large call is slow (a slow link is measured well by one).
  const uint64_t per_row = std::max<uint64_t>(parts_.input_bytes_per_item, 1);
  const int rows =
      static_cast<int>(std::clamp<uint64_t>(options_.bandwidth_probe_bytes / per_row, 2, 4096));
  CONCORD_ASSIGN_OR_RETURN(const std::vector<Tensor> big, zero_inputs(info_.inputs, rows));
  auto wire_ms = [](const InferCall& c) {
    const double server =
        c.server.known() ? double(c.server.queue_us + c.server.compute_us) / 1000.0 : 0.0;
    return c.elapsed_ms - server;
  };
  std::vector<double> samples;
  std::vector<double> whole_compute;
  std::vector<double> queue;
  double large_ms = 0;
  for (int i = 0; i < 3 && large_ms < 1000; ++i) {
    CONCORD_ASSIGN_OR_RETURN(const InferCall small, client_->infer(options_.model_name, zeros));
    CONCORD_ASSIGN_OR_RETURN(const InferCall large, client_->infer(options_.model_name, big));
    large_ms += large.elapsed_ms;
    if (small.server.known()) {
      whole_compute.push_back(double(small.server.compute_us) / 1000.0);
      queue.push_back(double(small.server.queue_us) / 1000.0);
    }
    const double bytes =
        double(large.bytes_up + large.bytes_down) - double(small.bytes_up + small.bytes_down);
    const double ms = wire_ms(large) - wire_ms(small);
    samples.push_back(ms > 0 ? bytes / ms : kMaxBandwidth);
  }
  std::sort(samples.begin(), samples.end());
  bandwidth_ = std::clamp(samples[samples.size() / 2], 1.0, kMaxBandwidth);
  // Cloud-only's idle cost: the one-row calls are exactly that request.
  if (!whole_compute.empty()) {
    std::sort(whole_compute.begin(), whole_compute.end());
    server_ms_[0] = std::max(whole_compute[whole_compute.size() / 2], 0.001);
  }
  // The idle cost of each remote option from one zero call each, read from the server's own
  // compute time. Tails whose upload would take longer than `max_probe_upload_ms` at the
  // measured bandwidth are not called; options() scales the whole model's cost for them.
  for (const int split : splits()) {
    if (split == parts_.node_count || (split == 0 && server_ms_.contains(0))) continue;
    if (split != 0 && double(bytes_up_.at(split)) / bandwidth_ > options_.max_probe_upload_ms) {
      continue;
    }
    std::vector<Tensor> inputs = zeros;
    std::string model = options_.model_name;
    if (split != 0) {
      CONCORD_ASSIGN_OR_RETURN(inputs, heads_.at(split)->infer(zeros));
      model = partition::tail_name(options_.model_name, split);
      probe_inputs_[split] = inputs;
    }
    CONCORD_ASSIGN_OR_RETURN(const InferCall call, client_->infer(model, inputs));
    const double elapsed_server = call.server.known() ? double(call.server.compute_us) / 1000.0
                                                      : std::max(call.elapsed_ms - rtt_ms_, 0.0);
    server_ms_[split] = std::max(elapsed_server, 0.001);
    if (call.server.known()) queue.push_back(double(call.server.queue_us) / 1000.0);
  }
  if (!queue.empty()) {
    std::sort(queue.begin(), queue.end());
    queue_ms_ = queue[queue.size() / 2];
  }

  logger("inference.sdk")
      ->info("probe: rtt {:.3f} ms, bandwidth {:.1f} B/ms ({} samples), queue {:.3f} ms", rtt_ms_,
             bandwidth_, samples.size(), queue_ms_);
  return ok();
}

std::vector<SplitOption> DeviceSession::options(int rows) const {
  std::vector<SplitOption> out;
  const double r = std::max(rows, 1);
  for (const int split : splits()) {
    if (remote_down_ && split != parts_.node_count) continue;
    SplitOption o;
    o.cut = split;
    o.device_ms = device_ms_.at(split) * device_slowdown_ * r;
    if (split != parts_.node_count) {
      o.bytes_up = bytes_up_.at(split) * static_cast<uint64_t>(r);
      o.bytes_down = parts_.output_bytes_per_item * static_cast<uint64_t>(r);
      const auto it = server_ms_.find(split);
      // Not probed yet: scale the whole model's cost by the tail's share of the device's.
      if (it != server_ms_.end()) {
        o.server_ms = it->second * r;
      } else if (server_ms_.contains(0) && device_ms_.at(parts_.node_count) > 0) {
        const double whole = device_ms_.at(parts_.node_count);
        o.server_ms = server_ms_.at(0) * std::max(whole - device_ms_.at(split), 0.0) / whole * r;
      }
    }
    out.push_back(o);
  }
  return out;
}

LinkEstimate DeviceSession::link() const {
  return LinkEstimate{.rtt_ms = rtt_ms_,
                      .up_bytes_per_ms = bandwidth_,
                      .down_bytes_per_ms = bandwidth_,
                      .server_load_factor = std::max(server_slowdown_, 1.0),
                      .server_queue_ms = queue_ms_};
}

std::string DeviceSession::plan_table(int rows) const {
  return format_plan_table(estimate_costs(options(rows), link()), planner_.current(),
                           parts_.node_count);
}

Result<SplitResult> DeviceSession::infer(std::span<const Tensor> inputs) {
  const auto start = Steady::now();
  const int split = planner_.plan(options(batch_rows(inputs)), link());
  auto result = infer_at(split, inputs);
  if (result || split == parts_.node_count || !unusable(result.error())) return result;
  take_out(result.error());
  // The endpoint is out of the plan now, so this plans device-only: the request is answered
  // here, and its latency includes the failed call.
  result = infer_at(planner_.plan(options(batch_rows(inputs)), link()), inputs);
  if (result) result->total_ms = ms_since(start);
  return result;
}

Result<SplitResult> DeviceSession::infer_at(int split, std::span<const Tensor> inputs) {
  const auto all = splits();
  if (std::find(all.begin(), all.end(), split) == all.end()) {
    return fail(Code::kInvalidArgument,
                fmt::format("split {} is not one of this model's splits (0, the listed cuts, {})",
                            split, parts_.node_count));
  }
  SplitResult result;
  result.cut = split;
  const auto start = Steady::now();
  std::vector<Tensor> sent;
  if (split != 0) {
    CONCORD_ASSIGN_OR_RETURN(sent, heads_.at(split)->infer(inputs));
    result.device_ms = ms_since(start);
  }
  std::optional<InferCall> call;
  if (split == parts_.node_count) {
    result.outputs = std::move(sent);
  } else {
    const std::string model =
        split == 0 ? options_.model_name : partition::tail_name(options_.model_name, split);
    auto r = split == 0 ? client_->infer(model, inputs) : client_->infer(model, sent);
    if (!r) return fail(r.error());
    call = std::move(*r);
    result.remote_ms = call->elapsed_ms;
    result.server = call->server;
    result.bytes_up = call->bytes_up;
    result.outputs = std::move(call->outputs);
  }
  result.total_ms = ms_since(start);
  learn(split, result.device_ms / batch_rows(inputs), call ? &*call : nullptr);
  after_request();
  return result;
}

void DeviceSession::after_request() {
  ++requests_;
  if (remote_down_) {
    if (Steady::now() >= remote_retry_at_) (void)probe();  // probe() logs either way
    return;
  }
  if (requests_ % std::max(options_.reprobe_every, 1) != 0) return;
  if (Status s = refresh(); !s) {
    if (unusable(s.error())) {
      take_out(s.error());
    } else {
      logger("inference.sdk")->warn("refreshing the link estimate failed: {}", s.error().message());
    }
  }
}

void DeviceSession::learn(int split, double device_ms_per_row, const InferCall* call) {
  const double a = options_.ewma_alpha;
  if (split != 0 && device_ms_.at(split) > 0) {
    device_slowdown_ = std::clamp(
        ewma(device_slowdown_, device_ms_per_row / device_ms_.at(split), a), 0.1, 1000.0);
  }
  if (call == nullptr) return;
  double server = 0;
  if (call->server.known()) {
    const double compute = double(call->server.compute_us) / 1000.0;
    const double queue = double(call->server.queue_us) / 1000.0;
    server = compute + queue;
    queue_ms_ = ewma(queue_ms_, queue, a);
    const auto it = server_ms_.find(split);
    if (it != server_ms_.end() && it->second > 0) {
      server_slowdown_ = std::clamp(ewma(server_slowdown_, compute / it->second, a), 0.1, 1000.0);
    }
  }
  const uint64_t bytes = call->bytes_up + call->bytes_down;
  if (bytes >= kMinBandwidthSampleBytes) {
    const double transfer = call->elapsed_ms - rtt_ms_ - server;
    if (transfer > 0.01) {
      bandwidth_ = std::clamp(ewma(bandwidth_, double(bytes) / transfer, a), 1.0, kMaxBandwidth);
    }
  }
}

Status DeviceSession::refresh() {
  CONCORD_ASSIGN_OR_RETURN(const double ms, client_->ping());
  rtt_ms_ = ewma(rtt_ms_, ms, options_.ewma_alpha);
  if (planner_.current() != parts_.node_count) return ok();
  // Device-only: nothing from the server flows, so ask the cheapest tail once.
  int smallest = 0;
  for (const auto& c : parts_.cuts) {
    if (c.bytes_per_item < bytes_up_.at(smallest)) smallest = c.index;
  }
  // The head's output on zeros from probe() when there is one: a refresh should cost the device
  // no compute (on a throttled device it would delay the next real requests).
  CONCORD_ASSIGN_OR_RETURN(const std::vector<Tensor> zeros, zero_inputs(info_.inputs, 1));
  std::vector<Tensor> inputs = zeros;
  std::string model = options_.model_name;
  if (smallest != 0) {
    if (auto it = probe_inputs_.find(smallest); it != probe_inputs_.end()) {
      inputs = it->second;
    } else {
      CONCORD_ASSIGN_OR_RETURN(inputs, heads_.at(smallest)->infer(zeros));
      probe_inputs_[smallest] = inputs;
    }
    model = partition::tail_name(options_.model_name, smallest);
  }
  CONCORD_ASSIGN_OR_RETURN(const InferCall call, client_->infer(model, inputs));
  if (call.server.known()) {
    const double a = options_.ewma_alpha;
    queue_ms_ = ewma(queue_ms_, double(call.server.queue_us) / 1000.0, a);
    const auto it = server_ms_.find(smallest);
    if (it != server_ms_.end() && it->second > 0) {
      server_slowdown_ = std::clamp(
          ewma(server_slowdown_, double(call.server.compute_us) / 1000.0 / it->second, a), 0.1,
          1000.0);
    }
  }
  return ok();
}

}  // namespace concord::inference::sdk

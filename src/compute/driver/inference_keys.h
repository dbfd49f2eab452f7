#pragma once
// The server metadata keys that carry an inference replica's settings from the replica backend
// (src/inference/placement) through the compute server and the agent's spec (the "meta" map of
// meta_data_json) to the inference driver. One place, so the writer and the reader cannot drift.
// Values are strings, as all Nova metadata values are.
#include <string_view>

namespace concord::compute::driver::inference_keys {

// The endpoint the replica belongs to (the backend lists replicas by it).
inline constexpr std::string_view kEndpoint = "concord.inference.endpoint";
// The endpoint's (tenant) project, for people and usage; the server itself belongs to the
// service project.
inline constexpr std::string_view kProject = "concord.inference.project";
// The OIP model name the replica serves (required by the driver).
inline constexpr std::string_view kName = "concord.inference.name";
// The model id and version number (the image id names them too; kept for people and lists).
inline constexpr std::string_view kModel = "concord.inference.model";
inline constexpr std::string_view kVersion = "concord.inference.version";
// Batching (serving::BatchingOptions); absent keys take the replica's defaults.
inline constexpr std::string_view kMaxBatchSize = "concord.inference.max_batch_size";
inline constexpr std::string_view kMaxQueueDelayUs = "concord.inference.max_queue_delay_us";
inline constexpr std::string_view kMaxQueue = "concord.inference.max_queue";
// "true": also serve the model's tails ({name}.from.{k}) for device SDKs.
inline constexpr std::string_view kSplit = "concord.inference.split";
// The credential the gateway presents to the replica (x-concord-replica-key). The driver writes
// it to a 0600 file and passes the path, never the value, on the command line.
inline constexpr std::string_view kKey = "concord.inference.key";

// The network name of the one address an inference instance reports. Its addr is
// "<host address>:<port>": the agent protocol carries only addr/version/mac/type of an address,
// so the port the replica bound travels inside addr (forwarded_ports holds it too).
inline constexpr std::string_view kAddressNetwork = "inference";

// The image disk_format of a model version exposed to agents (the agent's image_kind).
inline constexpr std::string_view kImageKind = "onnx";

}  // namespace concord::compute::driver::inference_keys

#pragma once
// The agent's side of the wire format (docs/design/compute.md, "Agent protocol"): the instance
// spec the server sends and the small per-instance record of what the agent applied, which it
// keeps on disk so a restarted agent neither repeats a reboot nor forgets a converged generation.
// Internal to src/agent.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/result.h"
#include "compute/driver/driver.h"

namespace concord::agent {

struct ImageRef {
  std::string id;
  std::string sha256;  // empty: the server does not know the image's data (deleted image)
  std::string disk_format;
  std::string container_format;
  int64_t size = 0;
};

struct Spec {
  std::string id;
  int64_t revision = 0;  // the server row's revision: any change to the spec changes it
  int64_t generation = 0;
  std::string name, hostname, driver;
  int64_t vcpus = 1, ram_mb = 64, disk_gb = 1;
  ImageRef image;
  ImageRef kernel, ramdisk;  // id empty when the image has no kernel_id / ramdisk_id
  std::string network = "none";
  std::string desired_power = "running";
  int64_t reboot_seq = 0, rebuild_seq = 0;
  bool reboot_hard = false, deleted = false, config_drive = false;
  std::string user_data_b64, meta_data_json, network_data_json;
};

// kInvalidArgument for a spec missing its id or with fields of the wrong type.
[[nodiscard]] Result<Spec> parse_spec(const Json& j);

// What this agent last applied to an instance (state_dir/instances/<id>.json).
struct Applied {
  std::string driver;
  int64_t generation = 0;  // converged to
  int64_t reboot_seq = 0, rebuild_seq = 0;
  int64_t vcpus = 0, ram_mb = 0, disk_gb = 0;
  std::string image_sha256;
  // Digest (meta_digest) of the spec's meta_data_json the driver was last created or
  // configured with: when the spec's differs, the agent calls Driver::configure. Empty: never
  // recorded (an older record, or adopted), which configures once.
  std::string meta_digest;
};

std::string to_json(const Applied& a);
[[nodiscard]] Result<Applied> applied_from_json(std::string_view text);

// Hex SHA-256 of a spec's meta_data_json, as recorded in Applied::meta_digest.
std::string meta_digest(std::string_view meta_data_json);

// Standard base64 (RFC 4648 section 4, padding optional, whitespace ignored) to bytes.
[[nodiscard]] Result<std::string> base64_decode_standard(std::string_view text);

// The image kind the drivers expect: "rootfs-tar" for container_format docker, else the disk
// format ("raw", "qcow2").
std::string image_kind(const ImageRef& image);

// Writes `content` to `path` atomically (temp file in the same folder, fsync, rename).
[[nodiscard]] Status write_file_atomic(const std::string& path, std::string_view content);

// Hex SHA-256 of a file's content.
[[nodiscard]] Result<std::string> sha256_file(const std::string& path);

// Nova's addresses as the agent reports them: [{network, addr, version, mac, type}].
Json addresses_json(const std::vector<compute::driver::Address>& addresses);

}  // namespace concord::agent

#pragma once
// Verifies that uploaded image data is what its disk_format and container_format claim.
// A lie is a security problem, not a cosmetic one: a qcow2 file uploaded as "raw" would be
// handed to the hypervisor as a raw disk whose header can name a backing file on the host
// (CVE-2024-32498 in Glance/Nova), so content that looks like a structured disk format is
// refused under any other claim, and structured formats are checked with `qemu-img info`
// (backing files and external data files are refused).
//
// qemu-img runs without a shell, with a wall-clock timeout, a CPU-time limit and an
// address-space limit, since it parses untrusted headers.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord::image {

// The format the first bytes of a file show: "qcow2", "vmdk", "vhdx", "vdi", "vhd", "iso",
// "gzip", "tar" or "" (unrecognised, e.g. raw). `head` should hold at least 33 KiB when
// available (the ISO 9660 signature sits at 32769).
std::string sniff_format(std::string_view head);

struct QemuImgOptions {
  std::string binary = "qemu-img";
  std::chrono::milliseconds timeout{30'000};
  uint64_t max_address_space = 1ull << 30;
  int max_cpu_seconds = 30;
};

struct FormatReport {
  std::optional<int64_t> virtual_size;
};

// Checks the file at `path` (`size` bytes) against the claims.
//   kInvalidArgument   the content does not match (message fit for a 400 body);
//   kUnavailable       qemu-img could not be run or timed out;
//   kInternal          the file could not be read.
[[nodiscard]] Result<FormatReport> verify_format(const std::string& path, uint64_t size,
                                                 std::string_view disk_format,
                                                 std::string_view container_format,
                                                 const QemuImgOptions& qemu);

// Runs `qemu-img info --output=json -f <format> <path>` under the limits and returns its JSON
// text. kInvalidArgument when qemu-img rejects the file, kUnavailable when it cannot run.
[[nodiscard]] Result<std::string> qemu_img_info(const std::string& path, std::string_view format,
                                                const QemuImgOptions& qemu);

}  // namespace concord::image

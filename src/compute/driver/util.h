#pragma once
// File, mount and process helpers shared by the drivers. All return Result; none throw.
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::compute::driver {

// Ids become directory names, runc container ids and QEMU names: only [A-Za-z0-9_-], 1..64.
[[nodiscard]] Status validate_id(std::string_view id);

[[nodiscard]] Result<std::string> read_file(const std::string& path);
// Writes to path.tmp then renames: readers see the old or the new content, never a mix.
[[nodiscard]] Status write_file_atomic(const std::string& path, std::string_view content);
[[nodiscard]] Status make_dirs(const std::string& path);
[[nodiscard]] Status remove_tree(const std::string& path);
bool path_exists(const std::string& path);
// Names of the subdirectories of `dir` (not recursive); empty when dir does not exist.
std::vector<std::string> list_subdirs(const std::string& dir);
// The last max_bytes of a file.
[[nodiscard]] Result<std::string> read_tail(const std::string& path, size_t max_bytes);

// Hex SHA-256 of a file's content.
[[nodiscard]] Result<std::string> sha256_file(const std::string& path);
std::string sha256_hex(std::string_view data);

// Whether `path` is a mount point in this process's mount namespace (/proc/self/mountinfo).
bool is_mount_point(const std::string& path);

// A process identity that survives pid reuse: pid + start time (field 22 of /proc/pid/stat).
struct ProcessId {
  pid_t pid = 0;
  unsigned long long start_time = 0;
};
std::optional<unsigned long long> process_start_time(pid_t pid);
// Alive and not a zombie.
bool process_alive(pid_t pid);
bool process_matches(const ProcessId& id);
// /proc/pid/cmdline with NULs replaced by spaces; empty when the process is gone.
std::string process_cmdline(pid_t pid);

}  // namespace concord::compute::driver

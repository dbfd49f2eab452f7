#include "compute/driver/database_volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "compute/driver/process.h"
#include "compute/driver/util.h"
#include "fmt/format.h"

namespace concord::compute::driver {

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// A format or a grow writes little (the inode tables are left to read as zeros, see below), but
// a loaded host's disk can be slow.
constexpr milliseconds kToolTimeout{120000};

Error sys_error(std::string_view what, const std::string& path) {
  return Error(Code::kInternal, fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

Result<int64_t> file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail(sys_error("stat", path));
  return static_cast<int64_t>(st.st_size);
}

// The file system's own size (block count x block size), from its superblock: an image grown
// by an agent killed before resize2fs is larger than its file system.
Result<int64_t> fs_size(const std::string& image) {
  CONCORD_ASSIGN_OR_RETURN(
      auto header, run_checked({"dumpe2fs", "-h", image}, RunOptions{.timeout = kToolTimeout}));
  auto field = [&](std::string_view name) -> int64_t {
    const size_t at = header.out.find(std::string(name) + ":");
    if (at == std::string::npos) return 0;
    return std::strtoll(header.out.c_str() + at + name.size() + 1, nullptr, 10);
  };
  const int64_t blocks = field("Block count"), block_size = field("Block size");
  if (blocks <= 0 || block_size <= 0) {
    return fail(Code::kInternal, fmt::format("dumpe2fs {}: no block count or size", image));
  }
  return blocks * block_size;
}

Status set_size(const std::string& path, int64_t bytes) {
  if (::truncate(path.c_str(), bytes) != 0) return fail(sys_error("truncate", path));
  return ok();
}

}  // namespace

Status ensure_volume(const std::string& image, const std::string& mount_point, int64_t bytes) {
  if (bytes <= 0) return fail(Code::kInvalidArgument, "a volume needs a positive size");
  const bool fresh = !path_exists(image);
  if (fresh) {
    CONCORD_RETURN_IF_ERROR(make_dirs(fs::path(image).parent_path().string()));
    const std::string tmp = image + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return fail(sys_error("create", tmp));
    ::close(fd);
    // Sparse: the host's disk holds only what the instance writes (and, mounted with discard,
    // gives back what it deletes).
    CONCORD_RETURN_IF_ERROR(set_size(tmp, bytes));
    // -m 0: no blocks kept for root (the engine runs as its own user; the driver keeps its
    // files outside the volume). Lazy inode tables and no discard pass keep the format at a few
    // ms whatever the size; the mount's noinit_itable then leaves them unwritten, which is safe
    // because an unwritten part of a sparse file reads as zeros.
    CONCORD_RETURN_IF_ERROR(run_checked({"mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                                         "lazy_itable_init=1,lazy_journal_init=1,nodiscard", tmp},
                                        RunOptions{.timeout = kToolTimeout}));
    if (::rename(tmp.c_str(), image.c_str()) != 0) return fail(sys_error("rename", tmp));
  }
  CONCORD_RETURN_IF_ERROR(make_dirs(mount_point));
  if (is_mount_point(mount_point)) return ok();
  CONCORD_RETURN_IF_ERROR(run_checked(
      {"mount", "-t", "ext4", "-o", "loop,noatime,discard,noinit_itable", image, mount_point},
      RunOptions{.timeout = kToolTimeout}));
  // The folder is the engine's, holding only its files; e2fsck makes one when it needs it.
  if (fresh) {
    std::error_code ec;
    fs::remove(mount_point + "/lost+found", ec);
  }
  return ok();
}

Status grow_volume(const std::string& image, const std::string& mount_point, int64_t bytes) {
  CONCORD_ASSIGN_OR_RETURN(const int64_t now, fs_size(image));
  if (now >= bytes) return ok();
  // Offline: growing a mounted ext4 needs CAP_SYS_RESOURCE, which an agent in a container may
  // lack, and the caller restarts the engine for a resize anyway.
  if (is_mount_point(mount_point)) {
    CONCORD_RETURN_IF_ERROR(run_checked(
        {"umount", mount_point}, RunOptions{.timeout = kToolTimeout}, Code::kFailedPrecondition));
  }
  CONCORD_ASSIGN_OR_RETURN(const int64_t size, file_size(image));
  if (size < bytes) CONCORD_RETURN_IF_ERROR(set_size(image, bytes));
  // resize2fs wants a file system just checked; -p repairs only what is safe (exit 1: it did).
  CONCORD_ASSIGN_OR_RETURN(auto check, run_process({"e2fsck", "-f", "-p", image},
                                                   RunOptions{.timeout = milliseconds(600000)}));
  if (check.timed_out || check.signal != 0 || check.exit_code > 1) {
    return fail(Code::kInternal, check.describe("e2fsck"));
  }
  // An agent killed anywhere from here is redone by the next resize: fs_size still says less.
  CONCORD_RETURN_IF_ERROR(
      run_checked({"resize2fs", image}, RunOptions{.timeout = milliseconds(600000)}));
  return ensure_volume(image, mount_point, bytes);
}

Status remove_volume(const std::string& image, const std::string& mount_point) {
  if (is_mount_point(mount_point)) {
    auto r = run_process({"umount", mount_point}, RunOptions{.timeout = kToolTimeout});
    if (!r || !r->ok()) {
      // Busy (a process of the instance not reaped yet, a shell in the folder): detached now,
      // released with its last user; the image's blocks go with it.
      CONCORD_RETURN_IF_ERROR(
          run_checked({"umount", "-l", mount_point}, RunOptions{.timeout = kToolTimeout}));
    }
  }
  std::error_code ec;
  fs::remove(image + ".tmp", ec);
  fs::remove(image, ec);
  if (ec) return fail(Code::kInternal, fmt::format("rm {}: {}", image, ec.message()));
  return ok();
}

Result<VolumeSpace> volume_space(const std::string& mount_point) {
  struct statvfs vfs {};
  if (::statvfs(mount_point.c_str(), &vfs) != 0) return fail(sys_error("statvfs", mount_point));
  return VolumeSpace{static_cast<int64_t>(vfs.f_blocks) * static_cast<int64_t>(vfs.f_frsize),
                     static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize)};
}

Status hold_reserve(const std::string& path, int64_t bytes) {
  (void)::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail(sys_error("creating", path));
  const int err = ::posix_fallocate(fd, 0, bytes);
  ::close(fd);
  if (err != 0) {
    (void)::unlink(path.c_str());
    return fail(Code::kResourceExhausted,
                fmt::format("allocating {} bytes to {}: {}", bytes, path, std::strerror(err)));
  }
  return ok();
}

}  // namespace concord::compute::driver

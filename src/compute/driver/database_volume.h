#pragma once
// A database instance's volume: an ext4 file system in a sparse image file, loop-mounted on a
// folder of the instance, so the volume size the tenant chose is a hard limit (a write beyond it
// fails with ENOSPC inside that instance) and not only a figure watched against the disk of a
// host that every tenant shares. docs/design/database.md, "Volumes".
//
// The programs are util-linux's and e2fsprogs' (mount, umount, mkfs.ext4, e2fsck, resize2fs,
// dumpe2fs; scripts/install-deps.sh names both packages): the loop and mount ioctls by hand would
// add nothing but code to keep. Every call needs root.
#include <cstdint>
#include <string>

#include "base/result.h"

namespace concord::compute::driver {

// Makes the image when missing (formatted under a temporary name, then renamed: an image that
// exists is complete) and mounts it on `mount_point` when it is not mounted there. Idempotent:
// after a host restart it only mounts. `bytes` is used only when the image is made.
[[nodiscard]] Status ensure_volume(const std::string& image, const std::string& mount_point,
                                   int64_t bytes);

// Grows the volume's image and file system to `bytes`, offline: the caller has stopped
// whatever uses it (it is unmounted and mounted again). A size the file system already has
// changes nothing: volumes never shrink (Trove refuses that too). Resumable: the file
// system's own size, not the image's, says whether a grow is still to be done.
[[nodiscard]] Status grow_volume(const std::string& image, const std::string& mount_point,
                                 int64_t bytes);

// Unmounts (detaching lazily when something still holds it open) and removes the image.
// Idempotent.
[[nodiscard]] Status remove_volume(const std::string& image, const std::string& mount_point);

// The mounted file system's size and the bytes still free for an unprivileged writer (what
// the engine user can use), from statvfs.
struct VolumeSpace {
  int64_t size = 0;
  int64_t free = 0;
};
[[nodiscard]] Result<VolumeSpace> volume_space(const std::string& mount_point);

// Allocates `bytes` of blocks to the file at `path` (root's, 0600), made anew: room held back
// on a volume that releasing gives to the engine. A failed allocation leaves no file.
[[nodiscard]] Status hold_reserve(const std::string& path, int64_t bytes);

}  // namespace concord::compute::driver

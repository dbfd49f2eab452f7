#pragma once
// What the compute capability needs from the image capability: the record of an image a
// project may boot, and where its bytes are on this machine. Compute depends on this interface
// only (ImageService implements it), so its tests can use a fake.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::image {

struct ImageRecord {
  std::string id;  // dashed UUID
  std::optional<std::string> name;
  std::string status;  // queued | saving | active | killed | deactivated
  std::optional<std::string> disk_format;
  std::optional<std::string> container_format;
  std::optional<int64_t> size;
  std::optional<int64_t> virtual_size;
  std::optional<std::string> checksum;       // MD5 hex of the data
  std::optional<std::string> os_hash_algo;   // "sha512" once data is uploaded
  std::optional<std::string> os_hash_value;  // SHA-512 hex of the data
  std::optional<std::string> sha256;         // blob key in the blob store
  std::string owner;                         // project id
  std::optional<std::string> publisher;      // reserved for partner publishing; null for now
  std::string visibility;                    // private | shared | community | public
  int64_t min_disk = 0;                      // GiB
  int64_t min_ram = 0;                       // MiB
  bool is_protected = false;
  bool os_hidden = false;
  std::vector<std::string> tags;
  // Extra properties (hypervisor_type, kernel_id, ramdisk_id, hw_*, ...), all strings.
  std::map<std::string, std::string> properties;
  std::string created_at;  // 2026-11-29T10:00:00Z
  std::string updated_at;
};

class ImageLookup {
 public:
  virtual ~ImageLookup() = default;
  // The image if `project_id` may use it: its own, public, community, or shared with an
  // accepted membership; any image when is_admin. kNotFound otherwise (also for ids that are
  // not UUIDs), so a caller cannot probe for other projects' images.
  [[nodiscard]] virtual Result<ImageRecord> get_for_project(std::string_view image_id,
                                                            std::string_view project_id,
                                                            bool is_admin) const = 0;
  // The local file holding an active (or deactivated) image's data; "" when it has none.
  virtual std::string blob_path(const ImageRecord& image) const = 0;
};

}  // namespace concord::image

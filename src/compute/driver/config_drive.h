#pragma once
// Internal: the config drive's file tree, shared by build_config_drive (ISO for VMs) and the
// container driver (bind-mounted read-only at /mnt/config in the container).
#include <string>

#include "base/result.h"
#include "compute/driver/driver.h"

namespace concord::compute::driver {

// Writes openstack/{latest,2012-08-10,2015-10-15}/... under `root` (created; replaced if
// present). An empty meta_data_json is filled with uuid/name/hostname from the spec, an empty
// network_data_json with an empty network description, so the guest always finds both.
[[nodiscard]] Status write_config_drive_tree(const std::string& root, const InstanceSpec& spec);

}  // namespace concord::compute::driver

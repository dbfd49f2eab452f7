#include "compute/driver/spec_json.h"

#include "base/encoding.h"
#include "base/json.h"
#include "compute/driver/util.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace concord::compute::driver {

std::string spec_to_json(const InstanceSpec& s) {
  Json j = {{"id", s.id},
            {"hostname", s.hostname},
            {"vcpus", s.vcpus},
            {"ram_mb", s.ram_mb},
            {"disk_gb", s.disk_gb},
            {"image_path", s.image_path},
            {"image_kind", s.image_kind},
            {"kernel_path", s.kernel_path},
            {"ramdisk_path", s.ramdisk_path},
            {"network", s.network},
            {"config_drive", s.config_drive},
            {"guest",
             {// Raw bytes (gzip user-data is common): base64url keeps them intact in JSON.
              {"user_data_b64", base64url_encode(s.guest.user_data)},
              {"meta_data_json", s.guest.meta_data_json},
              {"network_data_json", s.guest.network_data_json},
              {"vendor_data_json", s.guest.vendor_data_json}}}};
  return dump_json(j);
}

Result<InstanceSpec> spec_from_json(const std::string& text) {
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_json(text));
  InstanceSpec s;
  try {
    s.id = j.at("id").get<std::string>();
    s.hostname = j.value("hostname", "");
    s.vcpus = j.value("vcpus", 1);
    s.ram_mb = j.value("ram_mb", int64_t{64});
    s.disk_gb = j.value("disk_gb", int64_t{1});
    s.image_path = j.value("image_path", "");
    s.image_kind = j.value("image_kind", "");
    s.kernel_path = j.value("kernel_path", "");
    s.ramdisk_path = j.value("ramdisk_path", "");
    s.network = j.value("network", "none");
    s.config_drive = j.value("config_drive", true);
    if (j.contains("guest")) {
      const Json& g = j.at("guest");
      auto user_data = base64url_decode(g.value("user_data_b64", ""));
      if (!user_data) return fail(Code::kInternal, "corrupt spec.json: user_data_b64");
      s.guest.user_data = *user_data;
      s.guest.meta_data_json = g.value("meta_data_json", "");
      s.guest.network_data_json = g.value("network_data_json", "");
      s.guest.vendor_data_json = g.value("vendor_data_json", "{}");
    }
  } catch (const std::exception& e) {
    return fail(Code::kInternal, fmt::format("corrupt spec.json: {}", e.what()));
  }
  return s;
}

Result<InstanceSpec> load_spec(const std::string& dir) {
  auto text = read_file(dir + "/spec.json");
  if (!text) {
    if (text.error().code() == Code::kNotFound) {
      return fail(Code::kNotFound, fmt::format("no instance at {}", dir));
    }
    return fail(text.error());
  }
  return spec_from_json(*text);
}

Status save_spec(const std::string& dir, const InstanceSpec& spec) {
  return write_file_atomic(dir + "/spec.json", spec_to_json(spec));
}

}  // namespace concord::compute::driver

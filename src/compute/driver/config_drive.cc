#include "compute/driver/config_drive.h"

#include <filesystem>

#include "base/json.h"
#include "compute/driver/process.h"
#include "compute/driver/util.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace concord::compute::driver {

namespace {

std::string default_meta_data(const InstanceSpec& spec) {
  Json meta = {{"uuid", spec.id},
               {"name", spec.hostname},
               {"hostname", spec.hostname},
               {"launch_index", 0},
               {"availability_zone", "nova"},
               {"meta", Json::object()},
               {"public_keys", Json::object()}};
  return dump_json(meta);
}

}  // namespace

Status write_config_drive_tree(const std::string& root, const InstanceSpec& spec) {
  CONCORD_RETURN_IF_ERROR(remove_tree(root));
  std::string meta =
      spec.guest.meta_data_json.empty() ? default_meta_data(spec) : spec.guest.meta_data_json;
  std::string network = spec.guest.network_data_json.empty()
                            ? std::string(R"({"links": [], "networks": [], "services": []})")
                            : spec.guest.network_data_json;
  std::string vendor = spec.guest.vendor_data_json.empty() ? "{}" : spec.guest.vendor_data_json;
  // cloud-init reads "latest" first and falls back to dated versions it knows; 2012-08-10 is
  // the oldest (no network_data), 2015-10-15 the first with network_data.json.
  for (const char* version : {"latest", "2015-10-15", "2012-08-10"}) {
    std::string dir = fmt::format("{}/openstack/{}", root, version);
    CONCORD_RETURN_IF_ERROR(make_dirs(dir));
    CONCORD_RETURN_IF_ERROR(write_file_atomic(dir + "/meta_data.json", meta));
    // Nova writes user_data only when the server has some.
    if (!spec.guest.user_data.empty()) {
      CONCORD_RETURN_IF_ERROR(write_file_atomic(dir + "/user_data", spec.guest.user_data));
    }
    if (std::string_view(version) != "2012-08-10") {
      CONCORD_RETURN_IF_ERROR(write_file_atomic(dir + "/network_data.json", network));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(dir + "/vendor_data.json", vendor));
    }
  }
  return ok();
}

Result<std::string> build_config_drive(const std::string& dir, const InstanceSpec& spec) {
  CONCORD_RETURN_IF_ERROR(validate_id(spec.id));
  CONCORD_RETURN_IF_ERROR(make_dirs(dir));
  std::string stage = dir + "/.config-drive.stage";
  std::string tmp_iso = dir + "/.config.iso.tmp";
  std::string iso = dir + "/config.iso";
  CONCORD_RETURN_IF_ERROR(write_config_drive_tree(stage, spec));
  std::error_code ec;
  std::filesystem::remove(tmp_iso, ec);

  std::vector<std::string> argv;
  if (!find_program("xorriso").empty()) {
    argv = {"xorriso", "-as", "mkisofs"};
  } else if (!find_program("genisoimage").empty()) {
    argv = {"genisoimage"};
  } else {
    return fail(Code::kFailedPrecondition,
                "cannot build a config drive: neither xorriso nor genisoimage is installed");
  }
  // -V config-2 is how cloud-init finds the drive; Rock Ridge + Joliet keep file names intact.
  for (const char* a : {"-quiet", "-V", "config-2", "-J", "-R", "-input-charset", "utf-8", "-o"}) {
    argv.emplace_back(a);
  }
  argv.push_back(tmp_iso);
  argv.push_back(stage);
  RunOptions options;
  options.timeout = std::chrono::seconds(60);
  CONCORD_RETURN_IF_ERROR(run_checked(argv, options, Code::kInternal));
  std::filesystem::rename(tmp_iso, iso, ec);
  if (ec)
    return fail(Code::kInternal, fmt::format("rename {} -> {}: {}", tmp_iso, iso, ec.message()));
  CONCORD_RETURN_IF_ERROR(remove_tree(stage));
  return iso;
}

std::string_view power_state_name(PowerState state) {
  switch (state) {
    case PowerState::kNoState: return "NOSTATE";
    case PowerState::kRunning: return "RUNNING";
    case PowerState::kPaused: return "PAUSED";
    case PowerState::kShutdown: return "SHUTDOWN";
    case PowerState::kCrashed: return "CRASHED";
  }
  return "UNKNOWN";
}

}  // namespace concord::compute::driver

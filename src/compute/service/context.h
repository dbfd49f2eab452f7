#pragma once
// What every part of the compute service gets: the store, the clock, identity (tokens and
// policy), the image catalog and the options. Built once in src/cmd/app.cc.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "http/message.h"
#include "identity/auth_context.h"
#include "store/store.h"

namespace concord::identity {
class IdentityService;
}

namespace concord::compute {

// An image as compute needs it (a view of Glance's record; see src/image/image_lookup.h).
struct ImageInfo {
  std::string id;
  std::string name;
  std::string status;  // only "active" images boot
  std::string disk_format;
  std::string container_format;  // "docker": a rootfs tarball, runs as a container
  int64_t size = 0;
  std::string sha256;  // blob key, also the agent's cache key
  int64_t min_disk = 0;
  int64_t min_ram = 0;
  std::map<std::string, std::string> properties;  // hypervisor_type, kernel_id, ramdisk_id, ...
  // Filled by the calls Nova's image proxy uses (list/show/update_properties); "" otherwise.
  std::string owner;       // project id
  std::string visibility;  // private | shared | community | public
  std::string created_at;  // Glance's "2026-11-29T10:00:00Z"
  std::string updated_at;
};

// Who asks, for the calls that go through the image service's own API (Nova's image proxy):
// they run with the caller's token, so Glance's visibility and ownership rules apply unchanged,
// exactly as when Nova proxies to Glance with the user's token.
struct ImageAccess {
  const identity::AuthContext& caller;
  std::string_view token;
  std::string_view request_id;
};

// The image service as compute sees it; app.cc adapts image::ImageService to it (tests may
// use the real one too).
class ImageCatalog {
 public:
  virtual ~ImageCatalog() = default;
  // kNotFound when the image does not exist or `caller` may not see it.
  [[nodiscard]] virtual Result<ImageInfo> get(std::string_view id,
                                              const identity::AuthContext& caller) const = 0;
  // Any image by id regardless of visibility (agents fetching what a server was booted from).
  [[nodiscard]] virtual Result<ImageInfo> get_any(std::string_view id) const = 0;
  // An answer streaming the image's bytes (for GET /agent/v1/images/{id}/file).
  [[nodiscard]] virtual Result<http::Response> download(std::string_view id) const = 0;

  // The calls below serve Nova's image proxy (/v2.1/images). They are not pure so that
  // catalogs that only serve boots (test fakes) need not implement them; the defaults answer
  // kInternal, since a catalog wired into a server without them is a wiring bug.
  //
  // Every image Glance's default listing shows the caller (its own, public, shared with an
  // accepted membership; not community or hidden ones unless owned), newest first.
  [[nodiscard]] virtual Result<std::vector<ImageInfo>> list(const ImageAccess&) const {
    return not_offered("list");
  }
  // One image as Glance shows it to the caller (a member sees a shared image whatever its
  // membership status, as in Glance). kNotFound when it does not exist or is not visible.
  [[nodiscard]] virtual Result<ImageInfo> show(std::string_view, const ImageAccess&) const {
    return not_offered("show");
  }
  // Sets `set` and removes `remove` among the image's extra properties in one update.
  // kNotFound (not visible), kPermissionDenied (not the owner, or a core attribute),
  // kInvalidArgument (a bad name or value), kResourceExhausted (too many properties),
  // kFailedPrecondition (removing a property that is not there).
  [[nodiscard]] virtual Result<ImageInfo> update_properties(
      std::string_view, const ImageAccess&, const std::map<std::string, std::string>&,
      const std::vector<std::string>&) const {
    return not_offered("update_properties");
  }
  // Deletes the image. kNotFound, kPermissionDenied (not the owner, or protected).
  [[nodiscard]] virtual Status remove(std::string_view, const ImageAccess&) const {
    return not_offered("remove");
  }

 private:
  static std::unexpected<Error> not_offered(std::string_view what) {
    return fail(Code::kInternal, "this image catalog does not offer " + std::string(what));
  }
};

struct ComputeOptions {
  std::string region = "RegionOne";
  std::string default_availability_zone = "nova";
  // Scheduler (see src/compute/scheduler/scheduler.h).
  double cpu_allocation_ratio = 16.0;
  double ram_allocation_ratio = 1.5;
  double disk_allocation_ratio = 1.0;
  bool pack = false;  // false: spread (Nova's default)
  // Agents.
  std::chrono::milliseconds heartbeat_interval{2000};
  std::chrono::milliseconds down_after{10000};
  // Long-poll bound: a waiting poll holds a server thread and delays a graceful stop, and a
  // change wakes it at once anyway, so a short bound costs only an idle round trip.
  std::chrono::milliseconds assignments_wait{5000};
  // Long-polls allowed to wait at once (each holds an HTTP I/O thread); app.cc sizes it from
  // server.threads so that API requests always keep threads.
  int max_waiting_polls = 2;
  std::string agent_key;  // raw bytes of data_dir/agent-key
  // Deadlines for operations (then ERROR with a fault).
  std::chrono::milliseconds build_timeout{600000};
  std::chrono::milliseconds action_timeout{300000};
  size_t max_user_data_bytes = 65535;
  // Rendered server views kept for the list detail path (view_cache.h); 0: none.
  size_t view_cache_bytes = size_t{16} << 20;
};

struct RouteInfo {
  http::Method method;
  std::string pattern;  // "/v2.1/servers/{server_id}"
  std::string rule;     // policy rule checked by the frame
};

struct ComputeContext {
  store::Store& store;
  const Clock& clock;
  identity::IdentityService& identity;
  ImageCatalog& images;
  ComputeOptions options;
};

}  // namespace concord::compute

#pragma once
// The image capability (OpenStack Glance v2): image records and their lifecycle, members,
// tags, and image data kept in a content-addressed blob store. See docs/design/image.md.
//
// Wiring (main()):
//   store->migrate(image::migrations());
//   auto images = image::ImageService::create(*store, clock, *identity, options);
//   router.mount("/image", images->routes(), images->error_formatter());
//   server_options.streamed_body = images->streamed_body_hook("/image");  // uploads on disk
//
// Threading: every method is safe to call from any thread. Handlers block on the store and,
// for uploads, on disk I/O and a bounded qemu-img run.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "http/router.h"
#include "http/server.h"
#include "identity/identity_service.h"
#include "image/image_lookup.h"
#include "store/store.h"

namespace concord::image {

// Schema of component "image".
std::vector<store::Migration> migrations();

struct ImageOptions {
  // Folder of the image blob store (created when missing). Must be absolute.
  std::string blob_dir;
  // Largest image accepted by an upload (Glance's image_size_cap); larger uploads get 413.
  uint64_t max_image_bytes = 10ull << 30;
  // qemu-img binary (looked up in PATH when it has no '/'), used to inspect disk images.
  std::string qemu_img = "qemu-img";
  // Bound on one qemu-img run (wall time; CPU time and address space are limited too).
  std::chrono::milliseconds qemu_img_timeout{30'000};
};

using RouteInfo = identity::RouteInfo;

// Glance's error body: "<status line>\n\n<message>\n\n" as text/plain (what webob produces for
// clients that do not ask for JSON; Tempest accepts text/plain for errors).
http::Response glance_error(int status, std::string_view message);

class ImageService final : public ImageLookup {
 public:
  // Opens the blob store (removing unfinished uploads), puts images left in `saving` by a
  // crash back to `queued`, and removes blobs no image references.
  static Result<std::unique_ptr<ImageService>> create(store::Store& store, const Clock& clock,
                                                      identity::IdentityService& identity,
                                                      ImageOptions options);
  ~ImageService() override;
  ImageService(const ImageService&) = delete;
  ImageService& operator=(const ImageService&) = delete;

  // The Glance v2 API (versions document at "/" and "/versions", everything else under /v2).
  std::shared_ptr<http::RouteTable> routes() const;
  const std::vector<RouteInfo>& route_infos() const;
  http::ErrorFormatter error_formatter() const { return glance_error; }
  // For ServerOptions::streamed_body: image uploads (PUT <mount_prefix>/v2/images/{id}/file)
  // are spooled into the blob store's temp folder with max_image_bytes as their limit, instead
  // of being buffered in memory under max_body_bytes. (Chain it with other capabilities' hooks
  // if they get their own.)
  http::StreamedBodyHook streamed_body_hook(std::string mount_prefix = "/image") const;

  [[nodiscard]] Result<ImageRecord> get_for_project(std::string_view image_id,
                                                    std::string_view project_id,
                                                    bool is_admin) const override;
  std::string blob_path(const ImageRecord& image) const override;

  class Impl;

 private:
  explicit ImageService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::image

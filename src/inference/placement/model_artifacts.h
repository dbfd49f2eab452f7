#pragma once
// Model versions as images, for the agents only. An inference replica is a compute server whose
// "image" is the model version it serves; agents fetch images by id and sha256 from
// /agent/v1/images/{id}/file and cache them by digest. This ImageCatalog decorator answers the
// ids "model-<model id>-v<version>" from the model registry (the version's blob file, named by
// its sha256 in the content-addressed store) so that fetch path is reused unchanged, and hands
// every other id to the wrapped catalog (Glance's).
//
// Model artifacts are not images users see: get() (what a Nova boot resolves with the caller's
// rights) and the image proxy calls never answer them; only get_any() and download() do.
//
// Threading: const and stateless beyond its references; safe from any thread if the wrapped
// catalog and the version-file lookup are.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"
#include "compute/service/context.h"

namespace concord::inference::registry {
class ModelRegistry;
}

namespace concord::inference::placement {

// "model-<model id>-v<version>".
std::string artifact_id(std::string_view model_id, int64_t version);
// The model id and version of an artifact id; nullopt for any other id.
std::optional<std::pair<std::string, int64_t>> parse_artifact_id(std::string_view id);

// The file holding a version's bytes; kNotFound when the model or version does not exist.
using VersionFileFn = std::function<Result<std::string>(std::string_view model_id, int64_t)>;
VersionFileFn registry_version_files(const registry::ModelRegistry& registry);

class ModelArtifactCatalog final : public compute::ImageCatalog {
 public:
  ModelArtifactCatalog(compute::ImageCatalog& inner, VersionFileFn version_file);

  [[nodiscard]] Result<compute::ImageInfo> get(std::string_view id,
                                               const identity::AuthContext& caller) const override;
  [[nodiscard]] Result<compute::ImageInfo> get_any(std::string_view id) const override;
  [[nodiscard]] Result<http::Response> download(std::string_view id) const override;
  [[nodiscard]] Result<std::vector<compute::ImageInfo>> list(
      const compute::ImageAccess& access) const override;
  [[nodiscard]] Result<compute::ImageInfo> show(std::string_view id,
                                                const compute::ImageAccess& access) const override;
  [[nodiscard]] Result<compute::ImageInfo> update_properties(
      std::string_view id, const compute::ImageAccess& access,
      const std::map<std::string, std::string>& set,
      const std::vector<std::string>& remove) const override;
  [[nodiscard]] Status remove(std::string_view id,
                              const compute::ImageAccess& access) const override;

 private:
  // The version's file and its ImageInfo.
  Result<std::pair<std::string, compute::ImageInfo>> artifact(std::string_view id) const;

  compute::ImageCatalog& inner_;
  VersionFileFn version_file_;
};

}  // namespace concord::inference::placement

#include "inference/placement/model_artifacts.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "compute/driver/inference_keys.h"
#include "compute/driver/util.h"
#include "inference/registry/registry.h"

namespace concord::inference::placement {
namespace {

constexpr std::string_view kPrefix = "model-";
constexpr std::string_view kVersionSep = "-v";

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

std::string artifact_id(std::string_view model_id, int64_t version) {
  return std::string(kPrefix) + std::string(model_id) + std::string(kVersionSep) +
         std::to_string(version);
}

std::optional<std::pair<std::string, int64_t>> parse_artifact_id(std::string_view id) {
  if (!id.starts_with(kPrefix)) return std::nullopt;
  id.remove_prefix(kPrefix.size());
  size_t sep = id.rfind(kVersionSep);
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  std::string_view digits = id.substr(sep + kVersionSep.size());
  int64_t version = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), version);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || version < 1) {
    return std::nullopt;
  }
  return std::make_pair(std::string(id.substr(0, sep)), version);
}

VersionFileFn registry_version_files(const registry::ModelRegistry& registry) {
  return [&registry](std::string_view model_id, int64_t version) {
    return registry.version_file(model_id, version);
  };
}

ModelArtifactCatalog::ModelArtifactCatalog(compute::ImageCatalog& inner, VersionFileFn version_file)
    : inner_(inner), version_file_(std::move(version_file)) {}

Result<std::pair<std::string, compute::ImageInfo>> ModelArtifactCatalog::artifact(
    std::string_view id) const {
  auto parsed = parse_artifact_id(id);
  if (!parsed) return fail(Code::kNotFound, "not a model artifact: " + std::string(id));
  CONCORD_ASSIGN_OR_RETURN(std::string path, version_file_(parsed->first, parsed->second));
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) {
    return fail(Code::kNotFound,
                "model artifact " + std::string(id) + ": " + path + ": " + ec.message());
  }
  compute::ImageInfo info;
  info.id = std::string(id);
  info.name = "model " + parsed->first + " version " + std::to_string(parsed->second);
  info.status = "active";
  info.disk_format = std::string(compute::driver::inference_keys::kImageKind);
  info.container_format = "bare";
  info.size = static_cast<int64_t>(size);
  // The blob store names files by their digest; anything else is hashed (slow but correct).
  const std::string name = std::filesystem::path(path).filename().string();
  if (is_sha256_hex(name)) {
    info.sha256 = name;
  } else {
    CONCORD_ASSIGN_OR_RETURN(info.sha256, compute::driver::sha256_file(path));
  }
  info.properties["concord_model_id"] = parsed->first;
  info.properties["concord_model_version"] = std::to_string(parsed->second);
  return std::make_pair(std::move(path), std::move(info));
}

Result<compute::ImageInfo> ModelArtifactCatalog::get(std::string_view id,
                                                     const identity::AuthContext& caller) const {
  if (parse_artifact_id(id)) {
    return fail(Code::kNotFound, "Image " + std::string(id) + " could not be found.");
  }
  return inner_.get(id, caller);
}

Result<compute::ImageInfo> ModelArtifactCatalog::get_any(std::string_view id) const {
  if (!parse_artifact_id(id)) return inner_.get_any(id);
  CONCORD_ASSIGN_OR_RETURN(auto found, artifact(id));
  return std::move(found.second);
}

Result<http::Response> ModelArtifactCatalog::download(std::string_view id) const {
  if (!parse_artifact_id(id)) return inner_.download(id);
  CONCORD_ASSIGN_OR_RETURN(auto found, artifact(id));
  http::Response r;
  r.status = 200;
  r.set_header("content-type", "application/octet-stream");
  r.body_file = std::move(found.first);
  return r;
}

Result<std::vector<compute::ImageInfo>> ModelArtifactCatalog::list(
    const compute::ImageAccess& access) const {
  return inner_.list(access);
}

Result<compute::ImageInfo> ModelArtifactCatalog::show(std::string_view id,
                                                      const compute::ImageAccess& access) const {
  return inner_.show(id, access);
}

Result<compute::ImageInfo> ModelArtifactCatalog::update_properties(
    std::string_view id, const compute::ImageAccess& access,
    const std::map<std::string, std::string>& set, const std::vector<std::string>& remove) const {
  return inner_.update_properties(id, access, set, remove);
}

Status ModelArtifactCatalog::remove(std::string_view id, const compute::ImageAccess& access) const {
  return inner_.remove(id, access);
}

}  // namespace concord::inference::placement

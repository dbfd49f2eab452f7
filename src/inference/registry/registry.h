#pragma once
// The model registry of the inference capability (issue 5, item 1): Concord's own REST API
// under /inference/v1 (docs/api/inference-v1.yaml) for models owned by a project and their
// numbered versions, whose ONNX bytes live in a content-addressed blob store.
//
// Why the upload is ordered as it is: the body is spooled to disk (never held by the HTTP
// layer), moved into a blob-store temp file, CHECKED (ModelChecker: well-formed ONNX and
// loadable by the runtime, bounded in time), then committed as a blob, and only then is the
// version row inserted, in one transaction with its usage event. A kill -9 at any point leaves
// either nothing or a blob no row names (removed by the start-up gc); a version row always has
// its bytes. A rejected model leaves nothing at all.
//
// Data (component "inference_registry", SQLite and PostgreSQL):
//   inference_models          (id, project_id, name unique per project, description,
//                              publisher reserved NULL, created_at, updated_at, revision)
//   inference_model_versions  ((model_id, version), project_id, blob_sha256, size, format,
//                              runtime, status, metadata JSON, created_at, created_us)
//
// Wiring (main()):
//   store->migrate(inference::registry::migrations());
//   auto registry = ModelRegistry::create(*store, clock, *identity, options);
//   router.mount("/inference", registry->routes(), registry->error_formatter());
//   server_options.streamed_body = registry->streamed_body_hook("/inference");  // chained
//
// Threading: every method is safe to call from any thread. Handlers block on the store, on disk
// I/O and on the model check (at most RegistryOptions::check_timeout).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "http/router.h"
#include "http/server.h"
#include "identity/identity_service.h"
#include "inference/registry/model_check.h"
#include "store/store.h"

namespace concord::inference::registry {

// Schema of component "inference_registry".
std::vector<store::Migration> migrations();

struct RegistryOptions {
  // Folder of the model blob store (created when missing). Must be absolute.
  std::string blob_dir;
  // Largest model version accepted by an upload; larger uploads get 413.
  uint64_t max_model_bytes = uint64_t{256} << 20;
  // The runtime every version is checked with (and will be served by).
  std::string runtime = "opencv";
  // Bound on one runtime load at upload, and how many may run at once.
  std::chrono::milliseconds check_timeout{30'000};
  int max_concurrent_checks = 2;
  // Region written into usage events.
  std::string region;
  // Replaces the runtime load in tests (a slow or failing runtime); empty: runtime_loader().
  LoadFunction load;
};

// Asked inside the transaction that deletes a model (version = nullopt) or one version: the id
// of a resource still using it (an inference endpoint), or nullopt when none. Deleting then
// answers 409 naming it. Set by the endpoints service (see ModelRegistry::set_in_use).
using InUseCheck = std::function<Result<std::optional<std::string>>(
    store::Tx& tx, std::string_view model_id, std::optional<int64_t> version)>;

// The one error body of this API: {"error": {"code": <status>, "message": "..."}}.
http::Response registry_error(int status, std::string_view message);

class ModelRegistry {
 public:
  // Opens the blob store (dropping unfinished uploads) and removes blobs no version names (what
  // a crash between blob commit and row insert leaves). kInvalidArgument for bad options.
  [[nodiscard]] static Result<std::unique_ptr<ModelRegistry>> create(
      store::Store& store, const Clock& clock, identity::IdentityService& identity,
      RegistryOptions options);
  ~ModelRegistry();
  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  // Routes below the mount prefix: /v1/models...
  std::shared_ptr<http::RouteTable> routes() const;
  http::ErrorFormatter error_formatter() const { return registry_error; }
  // For ServerOptions::streamed_body: PUT <prefix>/v1/models/{id}/versions/{version} bodies go
  // to the blob store's temp folder, bounded by max_model_bytes (413 beyond).
  http::StreamedBodyHook streamed_body_hook(std::string mount_prefix = "/inference") const;

  // The file holding a version's bytes (for the serving layer), kNotFound when absent.
  [[nodiscard]] Result<std::string> version_file(std::string_view model_id, int64_t version) const;

  // Installs the veto consulted before a model or version is deleted. Call before serving
  // requests (not synchronised with running handlers).
  void set_in_use(InUseCheck check);

  class Impl;

 private:
  explicit ModelRegistry(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concord::inference::registry

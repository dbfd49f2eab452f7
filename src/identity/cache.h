#pragma once
// Read-through caches of identity data for the token hot path, invalidated by writes on this
// replica (right after their commit) and by the store's change feed for writes on others.
//
// Segments: users, projects (and domains), application credentials (by id); the roles table
// with implied rules (one snapshot); effective roles per (user, target); the catalog (one
// snapshot). Each segment has a generation; a fill remembers the generation before it reads
// the store and installs its result only if no invalidation happened meanwhile, so a fill that
// raced a write can never leave a stale entry behind.
//
// Thread-safe; lookups take a shared lock, fills and invalidations an exclusive one.
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/auth_context.h"
#include "identity/model.h"
#include "store/store.h"

namespace concord::identity {

template <typename T>
class IdCache {
 public:
  explicit IdCache(size_t max_entries) : max_entries_(max_entries) {}

  std::shared_ptr<const T> get(std::string_view id) const {
    std::shared_lock lock(mu_);
    auto it = map_.find(id);
    return it == map_.end() ? nullptr : it->second;
  }
  uint64_t generation() const {
    std::shared_lock lock(mu_);
    return gen_;
  }
  // Installs `value` unless the segment was invalidated since `gen` was read.
  void put_if(uint64_t gen, std::string_view id, std::shared_ptr<const T> value) {
    std::unique_lock lock(mu_);
    if (gen != gen_) return;
    if (map_.size() >= max_entries_) map_.clear();  // crude bound; refills are cheap
    map_.insert_or_assign(std::string(id), std::move(value));
  }
  void erase(std::string_view id) {
    std::unique_lock lock(mu_);
    ++gen_;
    auto it = map_.find(id);
    if (it != map_.end()) map_.erase(it);
  }
  void clear() {
    std::unique_lock lock(mu_);
    ++gen_;
    map_.clear();
  }

 private:
  const size_t max_entries_;
  mutable std::shared_mutex mu_;
  StringMap<std::shared_ptr<const T>> map_;  // guarded by mu_
  uint64_t gen_ = 0;                         // guarded by mu_
};

// All roles and implied-role rules.
struct RoleSnapshot {
  StringMap<Role> by_id;
  StringMap<std::vector<std::string>> implies;  // prior -> implied
  // Assigned role ids expanded through implied roles (transitively; cycles are harmless),
  // without domain-specific roles (Keystone never puts those in tokens), sorted by name, id.
  std::vector<RoleRef> effective(const std::vector<std::string>& assigned) const;
};

// Enabled services with their enabled endpoints, in a stable order.
struct CatalogSnapshot {
  struct Endpoint {
    std::string id;
    std::string interface;
    std::string region_id;
    std::string url;
  };
  struct Service {
    std::string id;
    std::string type;
    std::string name;
    std::vector<Endpoint> endpoints;
  };
  std::vector<Service> services;

  // Rendered catalogs by project id ("" without a project), filled by Core::catalog_text.
  // They live and die with this snapshot, so a catalog change drops them all.
  mutable std::mutex render_mu;
  mutable StringMap<std::string> rendered;  // guarded by render_mu
};

// A list response body cached until its segment changes (GET /v3/projects and friends).
struct CachedBody {
  uint64_t generation = 0;
  std::string body;
};

class Directory {
 public:
  explicit Directory(store::Store& store);

  // nullptr when the entity does not exist; errors only from the store.
  Result<std::shared_ptr<const Project>> project(std::string_view id);
  Result<std::shared_ptr<const User>> user(std::string_view id);
  Result<std::shared_ptr<const AppCred>> app_cred(std::string_view id);
  Result<std::shared_ptr<const RoleSnapshot>> roles();
  Result<std::shared_ptr<const CatalogSnapshot>> catalog();
  // Effective roles of a user on a target (see RoleSnapshot::effective).
  Result<std::shared_ptr<const std::vector<RoleRef>>> effective_roles(std::string_view user_id,
                                                                      TargetType type,
                                                                      std::string_view target_id);

  // Applies one change (from this replica's write or from the feed).
  void on_change(std::string_view kind, std::string_view id);
  // Drops everything (the feed fell behind, or after a restore).
  void clear_all();

  // A generation that moves whenever anything a listing of `kind` shows may have changed.
  uint64_t list_generation(std::string_view kind) const;
  std::optional<std::string> cached_list(const std::string& key, uint64_t generation) const;
  void put_list(const std::string& key, uint64_t generation, std::string body);

 private:
  store::Store& store_;
  IdCache<Project> projects_{100000};
  IdCache<User> users_{100000};
  IdCache<AppCred> app_creds_{100000};
  IdCache<std::vector<RoleRef>> effective_{200000};
  IdCache<RoleSnapshot> roles_{1};
  IdCache<CatalogSnapshot> catalog_{1};

  mutable std::shared_mutex lists_mu_;
  StringMap<CachedBody> lists_;  // guarded by lists_mu_
};

}  // namespace concord::identity

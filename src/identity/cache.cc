#include "identity/cache.h"

#include <algorithm>
#include <unordered_set>

#include "identity/repository.h"

namespace concord::identity {

std::vector<RoleRef> RoleSnapshot::effective(const std::vector<std::string>& assigned) const {
  std::unordered_set<std::string> seen;
  std::vector<std::string> stack(assigned.begin(), assigned.end());
  while (!stack.empty()) {
    std::string id = std::move(stack.back());
    stack.pop_back();
    if (!seen.insert(id).second) continue;
    auto it = implies.find(id);
    if (it == implies.end()) continue;
    for (const std::string& next : it->second) {
      if (!seen.contains(next)) stack.push_back(next);
    }
  }
  std::vector<RoleRef> out;
  for (const std::string& id : seen) {
    auto it = by_id.find(id);
    if (it == by_id.end() || !it->second.domain_id.empty()) continue;
    out.push_back({it->second.id, it->second.name});
  }
  std::sort(out.begin(), out.end(), [](const RoleRef& a, const RoleRef& b) {
    return a.name != b.name ? a.name < b.name : a.id < b.id;
  });
  return out;
}

Directory::Directory(store::Store& store) : store_(store) {}

namespace {

// Reads one entity through the cache.
template <typename T, typename Load>
Result<std::shared_ptr<const T>> read_through(store::Store& store, IdCache<T>& cache,
                                              std::string_view id, Load load) {
  if (auto hit = cache.get(id)) return hit;
  uint64_t gen = cache.generation();
  std::optional<T> found;
  CONCORD_RETURN_IF_ERROR(store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(found, load(tx, id));
    return ok();
  }));
  if (!found) return std::shared_ptr<const T>();
  auto value = std::make_shared<const T>(std::move(*found));
  cache.put_if(gen, id, value);
  return value;
}

}  // namespace

Result<std::shared_ptr<const Project>> Directory::project(std::string_view id) {
  return read_through<Project>(store_, projects_, id, repo::get_project);
}

Result<std::shared_ptr<const User>> Directory::user(std::string_view id) {
  return read_through<User>(store_, users_, id, repo::get_user);
}

Result<std::shared_ptr<const AppCred>> Directory::app_cred(std::string_view id) {
  return read_through<AppCred>(store_, app_creds_, id, repo::get_app_cred);
}

Result<std::shared_ptr<const RoleSnapshot>> Directory::roles() {
  if (auto hit = roles_.get("")) return hit;
  uint64_t gen = roles_.generation();
  auto snap = std::make_shared<RoleSnapshot>();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    snap->by_id.clear();
    snap->implies.clear();
    CONCORD_ASSIGN_OR_RETURN(std::vector<Role> roles, repo::list_all_roles(tx));
    CONCORD_ASSIGN_OR_RETURN(std::vector<ImpliedRule> rules, repo::list_implied_rules(tx));
    for (Role& r : roles) {
      std::string id = r.id;
      snap->by_id.emplace(std::move(id), std::move(r));
    }
    for (ImpliedRule& rule : rules) {
      snap->implies[rule.prior_role_id].push_back(std::move(rule.implied_role_id));
    }
    return ok();
  }));
  std::shared_ptr<const RoleSnapshot> value = std::move(snap);
  roles_.put_if(gen, "", value);
  return value;
}

Result<std::shared_ptr<const CatalogSnapshot>> Directory::catalog() {
  if (auto hit = catalog_.get("")) return hit;
  uint64_t gen = catalog_.generation();
  auto snap = std::make_shared<CatalogSnapshot>();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    snap->services.clear();
    CONCORD_ASSIGN_OR_RETURN(std::vector<Service> services, repo::list_services(tx, {}));
    CONCORD_ASSIGN_OR_RETURN(std::vector<Endpoint> endpoints, repo::list_endpoints(tx, {}));
    for (const Service& s : services) {
      if (!s.enabled) continue;
      CatalogSnapshot::Service out{s.id, s.type, s.name(), {}};
      for (const Endpoint& e : endpoints) {
        if (e.service_id != s.id || !e.enabled) continue;
        out.endpoints.push_back({e.id, e.interface, e.region_id, e.url});
      }
      std::sort(out.endpoints.begin(), out.endpoints.end(), [](const auto& a, const auto& b) {
        return std::tie(a.interface, a.region_id, a.id) < std::tie(b.interface, b.region_id, b.id);
      });
      snap->services.push_back(std::move(out));
    }
    std::sort(snap->services.begin(), snap->services.end(), [](const auto& a, const auto& b) {
      return std::tie(a.type, a.name, a.id) < std::tie(b.type, b.name, b.id);
    });
    return ok();
  }));
  std::shared_ptr<const CatalogSnapshot> value = std::move(snap);
  catalog_.put_if(gen, "", value);
  return value;
}

Result<std::shared_ptr<const std::vector<RoleRef>>> Directory::effective_roles(
    std::string_view user_id, TargetType type, std::string_view target_id) {
  std::string key;
  key.reserve(user_id.size() + target_id.size() + 10);
  key.append(user_id).push_back('\x1f');
  key.append(target_type_name(type)).push_back('\x1f');
  key.append(target_id);
  if (auto hit = effective_.get(key)) return hit;
  // Both generations are read before the store: a role rename or an assignment change
  // during the fill must prevent the install.
  uint64_t gen = effective_.generation();
  CONCORD_ASSIGN_OR_RETURN(std::shared_ptr<const RoleSnapshot> snap, roles());
  std::vector<std::string> assigned;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(assigned, repo::assigned_role_ids(tx, user_id, type, target_id));
    if (type == TargetType::kProject) {
      CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> inherited,
                               repo::inherited_role_ids(tx, user_id, target_id));
      assigned.insert(assigned.end(), inherited.begin(), inherited.end());
    }
    return ok();
  }));
  auto value = std::make_shared<const std::vector<RoleRef>>(snap->effective(assigned));
  effective_.put_if(gen, key, value);
  return std::shared_ptr<const std::vector<RoleRef>>(value);
}

void Directory::on_change(std::string_view kind, std::string_view id) {
  if (kind == kinds::kProject) {
    projects_.erase(id);
  } else if (kind == kinds::kUser) {
    users_.erase(id);
    effective_.clear();
  } else if (kind == kinds::kAppCred) {
    app_creds_.erase(id);
  } else if (kind == kinds::kRole || kind == kinds::kImpliedRole) {
    roles_.clear();
    effective_.clear();
  } else if (kind == kinds::kAssignment || kind == kinds::kMembership || kind == kinds::kGroup) {
    effective_.clear();
  } else if (kind == kinds::kRegion || kind == kinds::kService || kind == kinds::kEndpoint) {
    catalog_.clear();
  }
}

void Directory::clear_all() {
  projects_.clear();
  users_.clear();
  app_creds_.clear();
  effective_.clear();
  roles_.clear();
  catalog_.clear();
  std::unique_lock lock(lists_mu_);
  lists_.clear();
}

uint64_t Directory::list_generation(std::string_view kind) const {
  if (kind == kinds::kProject) return projects_.generation();
  if (kind == kinds::kUser) return users_.generation();
  if (kind == kinds::kRole) return roles_.generation();
  return catalog_.generation();
}

std::optional<std::string> Directory::cached_list(const std::string& key,
                                                  uint64_t generation) const {
  std::shared_lock lock(lists_mu_);
  auto it = lists_.find(key);
  if (it == lists_.end() || it->second.generation != generation) return std::nullopt;
  return it->second.body;
}

void Directory::put_list(const std::string& key, uint64_t generation, std::string body) {
  std::unique_lock lock(lists_mu_);
  if (lists_.size() >= 1024) lists_.clear();
  lists_.insert_or_assign(key, CachedBody{generation, std::move(body)});
}

}  // namespace concord::identity

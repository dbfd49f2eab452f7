#include "identity/identity_service.h"

#include <atomic>
#include <condition_variable>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/log.h"
#include "base/random.h"
#include "identity/api.h"
#include "identity/core.h"
#include "identity/repository.h"

namespace concord::identity {
namespace {

// How often the feed thread prunes old revocation events.
constexpr std::chrono::minutes kPruneEvery{10};
// How often it re-reads the Fernet key folder.
constexpr std::chrono::seconds kReloadKeysEvery{30};

// Makes sure `type`/`name` has public, internal and admin endpoints at `url` in `region`.
Status ensure_service_endpoint_tx(store::Tx& tx, WriteSet& ws, std::string_view type,
                                  std::string_view name, std::string_view url,
                                  std::string_view region, int64_t now_us, std::string* id_out) {
  CONCORD_ASSIGN_OR_RETURN(auto existing_region, repo::get_region(tx, region));
  if (!existing_region) {
    Region r;
    r.id = std::string(region);
    CONCORD_RETURN_IF_ERROR(repo::insert_region(tx, r, now_us));
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kRegion, r.id, "create"));
  }
  repo::ServiceFilter f;
  f.type = std::string(type);
  CONCORD_ASSIGN_OR_RETURN(std::vector<Service> services, repo::list_services(tx, f));
  std::optional<Service> service;
  for (const Service& s : services) {
    if (s.name() == name) service = s;
  }
  if (!service && !services.empty()) service = services.front();
  if (!service) {
    Service s;
    s.id = new_hex_id();
    s.type = std::string(type);
    s.enabled = true;
    s.extra = Json::object();
    s.extra["name"] = std::string(name);
    CONCORD_RETURN_IF_ERROR(repo::insert_service(tx, s, now_us));
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kService, s.id, "create"));
    service = s;
  }
  for (std::string_view interface : {"public", "internal", "admin"}) {
    repo::EndpointFilter ef;
    ef.service_id = service->id;
    ef.interface = std::string(interface);
    ef.region_id = std::string(region);
    CONCORD_ASSIGN_OR_RETURN(std::vector<Endpoint> eps, repo::list_endpoints(tx, ef));
    if (eps.empty()) {
      Endpoint e;
      e.id = new_hex_id();
      e.service_id = service->id;
      e.interface = std::string(interface);
      e.region_id = std::string(region);
      e.url = std::string(url);
      CONCORD_RETURN_IF_ERROR(repo::insert_endpoint(tx, e, now_us));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kEndpoint, e.id, "create"));
    } else if (eps.front().url != url || !eps.front().enabled) {
      Endpoint e = eps.front();
      e.url = std::string(url);
      e.enabled = true;
      CONCORD_RETURN_IF_ERROR(repo::update_endpoint(tx, e));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kEndpoint, e.id, "update"));
    }
  }
  if (id_out != nullptr) *id_out = service->id;
  return ok();
}

Status check_endpoint_url(std::string_view url) {
  if (url.find("://") == std::string_view::npos) {
    return fail(Code::kInvalidArgument,
                "endpoint URL '" + std::string(url) + "' must be absolute (scheme://host...)");
  }
  return ok();
}

}  // namespace

// Owns the engine, the HTTP API and the change-feed thread.
class IdentityService::Impl {
 public:
  Impl(store::Store& store, const Clock& clock, IdentityOptions options,
       std::shared_ptr<KeyRepository> keys)
      : core(store, clock, std::move(options), std::move(keys)), api(core) {}

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (feed_.joinable()) feed_.join();
  }

  void start_feed(int64_t from_seq) {
    feed_ = std::thread([this, from_seq] { follow(from_seq); });
  }

  Core core;
  Api api;

 private:
  // Applies writes of other replicas (and, harmlessly, our own) to the caches.
  void follow(int64_t seq) {
    auto log = logger("identity");
    auto last_prune = std::chrono::steady_clock::now();
    auto last_key_reload = last_prune;
    while (!stopping()) {
      auto seen = core.store.wait_for_changes(seq, core.options.feed_wait);
      if (stopping()) break;
      if (!seen) {
        log->warn("identity change feed: {}", seen.error().to_string());
        pause(std::chrono::milliseconds(500));
        continue;
      }
      while (*seen > seq && !stopping()) {
        auto changes = core.store.changes_since(seq, 1000);
        if (!changes) {
          log->warn("identity change feed: {}", changes.error().to_string());
          pause(std::chrono::milliseconds(500));
          break;
        }
        if (changes->empty()) break;
        bool retry = false;
        for (const store::Change& ch : *changes) {
          if (ch.kind == kinds::kRevocation) {
            if (auto s = core.load_revocation(ch.id); !s) {
              // Without the event this replica could accept a revoked token: stop here
              // (seq stays before this change) and read it again after a pause.
              log->error("identity change feed: loading revocation {}: {}", ch.id,
                         s.error().to_string());
              retry = true;
              break;
            }
          } else if (ch.kind.starts_with("identity.")) {
            core.dir.on_change(ch.kind, ch.id);
          }
          seq = ch.seq;
        }
        if (retry) {
          pause(std::chrono::milliseconds(500));
          break;
        }
      }
      if (std::chrono::steady_clock::now() - last_key_reload > kReloadKeysEvery) {
        // Another process (concord token-rotate, another replica sharing the folder) may
        // have rotated the keys.
        last_key_reload = std::chrono::steady_clock::now();
        if (auto s = core.keys->reload(); !s) {
          log->warn("reloading Fernet keys: {}", s.error().to_string());
        }
      }
      if (std::chrono::steady_clock::now() - last_prune > kPruneEvery) {
        last_prune = std::chrono::steady_clock::now();
        if (auto s = core.prune_revocations(); !s) {
          log->warn("pruning revocation events: {}", s.error().to_string());
        }
      }
    }
  }

  bool stopping() {
    std::lock_guard lock(mu_);
    return stop_;
  }
  void pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [this] { return stop_; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread feed_;
};

IdentityService::IdentityService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IdentityService::~IdentityService() = default;

Result<std::unique_ptr<IdentityService>> IdentityService::create(store::Store& store,
                                                                 const Clock& clock,
                                                                 IdentityOptions options) {
  if (options.key_dir.empty()) {
    return fail(Code::kInvalidArgument, "identity: the Fernet key directory is not configured");
  }
  if (options.token_ttl.count() <= 0) {
    return fail(Code::kInvalidArgument, "identity: token_ttl must be positive");
  }
  CONCORD_ASSIGN_OR_RETURN(std::unique_ptr<KeyRepository> keys,
                           KeyRepository::open(options.key_dir, options.max_active_keys));
  // Remember where the feed is before loading the revocations, so none falls in between.
  CONCORD_ASSIGN_OR_RETURN(int64_t seq, store.last_change_seq());
  auto impl = std::make_unique<Impl>(store, clock, std::move(options),
                                     std::shared_ptr<KeyRepository>(std::move(keys)));
  CONCORD_RETURN_IF_ERROR(impl->api.build());
  CONCORD_RETURN_IF_ERROR(impl->core.prune_revocations());
  CONCORD_RETURN_IF_ERROR(impl->core.load_all_revocations());
  impl->start_feed(seq);
  return std::unique_ptr<IdentityService>(new IdentityService(std::move(impl)));
}

Result<AuthContext> IdentityService::authenticate(std::string_view token) const {
  return impl_->core.validate(token);
}

std::shared_ptr<http::RouteTable> IdentityService::routes() const {
  return impl_->api.table();
}

const std::vector<RouteInfo>& IdentityService::route_infos() const {
  return impl_->api.infos();
}

Status IdentityService::rotate_keys() {
  return impl_->core.keys->rotate();
}

Status IdentityService::prune_revocations() {
  return impl_->core.prune_revocations();
}

Status IdentityService::ensure_service_endpoint(std::string_view type, std::string_view name,
                                                std::string_view url, std::string_view region) {
  Core& core = impl_->core;
  if (type.empty() || name.empty()) {
    return fail(Code::kInvalidArgument, "a catalog service needs a type and a name");
  }
  CONCORD_RETURN_IF_ERROR(check_endpoint_url(url));
  std::string region_id(region.empty() ? std::string_view(core.options.region) : region);
  return core.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    return ensure_service_endpoint_tx(tx, ws, type, name, url, region_id, core.now_us(), nullptr);
  });
}

Result<std::string> IdentityService::ensure_project(std::string_view name,
                                                    std::string_view description) {
  Core& core = impl_->core;
  std::string id;
  CONCORD_RETURN_IF_ERROR(core.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(auto domain, repo::get_project(tx, kDefaultDomainId));
    if (!domain) {
      return fail(Code::kFailedPrecondition,
                  "the Default domain does not exist yet: run `concord bootstrap` first");
    }
    CONCORD_ASSIGN_OR_RETURN(auto project, repo::find_project_by_name(tx, kDefaultDomainId, name));
    if (project) {
      id = project->id;
      return ok();
    }
    Project p;
    p.id = new_hex_id();
    p.name = std::string(name);
    p.domain_id = std::string(kDefaultDomainId);
    p.parent_id = std::string(kDefaultDomainId);
    p.description = std::string(description);
    p.enabled = true;
    CONCORD_RETURN_IF_ERROR(repo::insert_project(tx, p, core.now_us()));
    CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kProject, p.id, "create", p.id));
    id = p.id;
    return ok();
  }));
  return id;
}

Result<bool> IdentityService::project_exists(std::string_view project_id) const {
  std::optional<Project> project;
  CONCORD_RETURN_IF_ERROR(impl_->core.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(project, repo::get_project(tx, project_id));
    return ok();
  }));
  return project.has_value() && !project->is_domain;
}

Result<BootstrapResult> IdentityService::bootstrap(const BootstrapSpec& spec) {
  Core& core = impl_->core;
  if (spec.admin_password.empty()) {
    return fail(Code::kInvalidArgument, "bootstrap needs an admin password");
  }
  if (spec.admin_password.size() > kMaxPasswordBytes) {
    return fail(Code::kInvalidArgument, "the admin password is too long");
  }
  std::string public_url = spec.public_url;
  while (!public_url.empty() && public_url.back() == '/') public_url.pop_back();
  std::string identity_url = public_url + "/identity/v3";
  CONCORD_RETURN_IF_ERROR(check_endpoint_url(identity_url));
  std::string region = spec.region.empty() ? core.options.region : spec.region;

  // Password work happens outside the transaction: find out whether the stored hash still
  // matches, and hash only when it must change.
  std::optional<User> existing;
  CONCORD_RETURN_IF_ERROR(core.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(existing, repo::find_user_by_name(tx, kDefaultDomainId, "admin"));
    return ok();
  }));
  bool password_matches = existing && !existing->password_hash.empty() &&
                          verify_password(spec.admin_password, existing->password_hash);
  std::string new_hash;
  if (!password_matches) {
    CONCORD_ASSIGN_OR_RETURN(new_hash, core.hash_secret(spec.admin_password));
  }

  BootstrapResult out;
  CONCORD_RETURN_IF_ERROR(core.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    int64_t now = core.now_us();
    out = BootstrapResult();
    out.default_domain_id = std::string(kDefaultDomainId);
    out.region_id = region;

    CONCORD_ASSIGN_OR_RETURN(auto domain, repo::get_project(tx, kDefaultDomainId));
    if (!domain) {
      Project d;
      d.id = std::string(kDefaultDomainId);
      d.name = "Default";
      d.domain_id = std::string(kDomainRoot);
      d.is_domain = true;
      d.enabled = true;
      d.description = "The default domain";
      CONCORD_RETURN_IF_ERROR(repo::insert_project(tx, d, now));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kProject, d.id, "create", d.id));
    }

    std::string* role_ids[] = {&out.admin_role_id, &out.member_role_id, &out.reader_role_id};
    const char* role_names[] = {"admin", "member", "reader"};
    for (int i = 0; i < 3; ++i) {
      CONCORD_ASSIGN_OR_RETURN(auto role, repo::find_role_by_name(tx, "", role_names[i]));
      if (role) {
        *role_ids[i] = role->id;
        continue;
      }
      Role r;
      r.id = new_hex_id();
      r.name = role_names[i];
      CONCORD_RETURN_IF_ERROR(repo::insert_role(tx, r, now));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kRole, r.id, "create"));
      *role_ids[i] = r.id;
    }
    for (auto [prior, implied] : {std::pair{out.admin_role_id, out.member_role_id},
                                  std::pair{out.member_role_id, out.reader_role_id}}) {
      CONCORD_ASSIGN_OR_RETURN(bool has, repo::has_implied_rule(tx, prior, implied));
      if (has) continue;
      CONCORD_RETURN_IF_ERROR(repo::insert_implied_rule(tx, prior, implied));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kImpliedRole, prior, "update"));
    }

    CONCORD_ASSIGN_OR_RETURN(auto project,
                             repo::find_project_by_name(tx, kDefaultDomainId, "admin"));
    if (project) {
      out.admin_project_id = project->id;
    } else {
      Project p;
      p.id = new_hex_id();
      p.name = "admin";
      p.domain_id = std::string(kDefaultDomainId);
      p.parent_id = std::string(kDefaultDomainId);
      p.description = "Bootstrap project for initializing the cloud.";
      CONCORD_RETURN_IF_ERROR(repo::insert_project(tx, p, now));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kProject, p.id, "create", p.id));
      out.admin_project_id = p.id;
    }

    CONCORD_ASSIGN_OR_RETURN(auto user, repo::find_user_by_name(tx, kDefaultDomainId, "admin"));
    if (!user) {
      User u;
      u.id = new_hex_id();
      u.name = "admin";
      u.domain_id = std::string(kDefaultDomainId);
      u.enabled = true;
      u.password_hash = new_hash;
      CONCORD_RETURN_IF_ERROR(repo::insert_user(tx, u, now));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kUser, u.id, "create"));
      out.admin_user_id = u.id;
    } else {
      out.admin_user_id = user->id;
      bool changed = false;
      if (!new_hash.empty() && (!existing || existing->password_hash == user->password_hash)) {
        user->password_hash = new_hash;
        user->password_expires_at.reset();
        CONCORD_RETURN_IF_ERROR(ws.revoke(tx, RevocationKind::kUser, user->id, core.clock.now()));
        changed = true;
      }
      if (!user->enabled) {
        user->enabled = true;
        changed = true;
      }
      if (changed) {
        CONCORD_RETURN_IF_ERROR(repo::update_user(tx, *user));
        CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kUser, user->id, "update"));
      }
    }

    for (const Assignment& a :
         {Assignment{ActorType::kUser, out.admin_user_id, TargetType::kProject,
                     out.admin_project_id, out.admin_role_id},
          Assignment{ActorType::kUser, out.admin_user_id, TargetType::kSystem,
                     std::string(kSystemAll), out.admin_role_id}}) {
      CONCORD_ASSIGN_OR_RETURN(bool has, repo::has_assignment(tx, a));
      if (has) continue;
      CONCORD_RETURN_IF_ERROR(repo::insert_assignment(tx, a));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kAssignment, a.actor_id, "update"));
    }

    return ensure_service_endpoint_tx(tx, ws, "identity", "keystone", identity_url, region, now,
                                      &out.identity_service_id);
  }));
  logger("identity")
      ->info("bootstrap done: admin_user_id={} admin_project_id={} region={}", out.admin_user_id,
             out.admin_project_id, out.region_id);
  return out;
}

}  // namespace concord::identity

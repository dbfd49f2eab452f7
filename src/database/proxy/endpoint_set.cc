#include "database/proxy/endpoint_set.h"

#include <set>

#include "base/log.h"

namespace concord::database::proxy {

EndpointSet::EndpointSet(ProxyOptions defaults) : defaults_(std::move(defaults)) {}

EndpointSet::~EndpointSet() {
  std::lock_guard lock(mu_);
  for (auto& [id, r] : running_) r.proxy->stop();
}

std::vector<std::pair<std::string, Error>> EndpointSet::reconcile(
    const std::vector<EndpointSpec>& specs) {
  std::vector<std::pair<std::string, Error>> failed;
  std::lock_guard lock(mu_);
  std::set<std::string> wanted;
  for (const EndpointSpec& spec : specs) wanted.insert(spec.id);
  for (auto it = running_.begin(); it != running_.end();) {
    if (wanted.contains(it->first)) {
      ++it;
      continue;
    }
    it->second.proxy->stop();
    logger("database")
        ->info("endpoint {} stopped ({}:{})", it->first, it->second.spec.listen_host,
               it->second.spec.listen_port);
    it = running_.erase(it);
  }
  for (const EndpointSpec& spec : specs) {
    auto it = running_.find(spec.id);
    if (it != running_.end()) {
      Running& r = it->second;
      if (r.spec.listen_host == spec.listen_host && r.spec.listen_port == spec.listen_port &&
          r.spec.mode == spec.mode && r.spec.allowed_cidrs == spec.allowed_cidrs &&
          r.spec.proxy_protocol == spec.proxy_protocol) {
        if (r.spec.backend != spec.backend) {
          r.proxy->set_backend(spec.backend);
          logger("database")
              ->info("endpoint {} now routes to {}:{}", spec.id, spec.backend.host,
                     spec.backend.port);
        }
        if (r.spec.verifiers != spec.verifiers) r.proxy->set_verifiers(spec.verifiers);
        if (r.spec.pool_size != spec.pool_size) {
          r.proxy->set_pool_size(spec.pool_size > 0 ? spec.pool_size : defaults_.pool_size);
        }
        r.spec = spec;
        continue;
      }
      // Another listener, mode, access list or header: a new proxy (clients of the old one
      // reconnect, and a client the new list refuses is gone at once).
      r.proxy->stop();
      running_.erase(it);
    }
    ProxyOptions o = defaults_;
    o.listen_host = spec.listen_host;
    o.listen_port = spec.listen_port;
    o.backend = spec.backend;
    o.mode = spec.mode;
    o.verifiers = spec.verifiers;
    o.allowed_cidrs = spec.allowed_cidrs;
    o.proxy_protocol = spec.proxy_protocol;
    if (spec.pool_size > 0) o.pool_size = spec.pool_size;
    Result<std::unique_ptr<Proxy>> made = Proxy::create(std::move(o));
    if (made) {
      if (Status started = (*made)->start(); !started) made = std::unexpected(started.error());
    }
    if (!made) {
      failed.emplace_back(spec.id, made.error());
      continue;
    }
    logger("database")
        ->info("endpoint {} listening on {}:{} -> {}:{}", spec.id, spec.listen_host,
               spec.listen_port, spec.backend.host, spec.backend.port);
    running_.emplace(spec.id, Running{spec, std::move(*made)});
  }
  return failed;
}

std::optional<ProxyStats> EndpointSet::stats(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = running_.find(id);
  if (it == running_.end()) return std::nullopt;
  return it->second.proxy->stats();
}

std::optional<Endpoint> EndpointSet::backend(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = running_.find(id);
  if (it == running_.end()) return std::nullopt;
  return it->second.proxy->backend();
}

size_t EndpointSet::size() const {
  std::lock_guard lock(mu_);
  return running_.size();
}

}  // namespace concord::database::proxy

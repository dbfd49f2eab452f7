// The instances' stable endpoints (docs/design/database.md, "Endpoints"): one proxy listener per
// instance, in this process, on the address the tenant sees; the engine behind it listens on an
// address of its own. The rows say which engine serves each instance; the proxies follow them.
#include "database/engine/engine_common.h"
#include "database/service/api_internal.h"

namespace concord::database::service {

void DatabaseService::Impl::start_endpoints() {
  if (!options_.endpoints) return;
  proxy::ProxyOptions defaults;
  if (!options_.endpoint_tls_dir.empty()) {
    // One self-signed certificate for every pooling endpoint: clients that require TLS
    // (sslmode=require) get it; none of them can verify a per-address name anyway.
    engine::InstanceConfig cert_for;
    cert_for.id = "endpoints";
    cert_for.address = "127.0.0.1";
    auto root = engine::detail::lookup_os_user("root");
    Status made = root ? engine::detail::ensure_tls(options_.endpoint_tls_dir, cert_for, *root)
                       : Status(std::unexpected(root.error()));
    if (made) {
      defaults.tls_cert_file = options_.endpoint_tls_dir + "/server.crt";
      defaults.tls_key_file = options_.endpoint_tls_dir + "/server.key";
    } else {
      logger("database")
          ->warn("endpoints: no TLS certificate ({}); pooling endpoints refuse TLS",
                 made.error().to_string());
    }
  }
  endpoints_ = std::make_unique<proxy::EndpointSet>(std::move(defaults));
  endpoint_keeper_ = std::thread([this] {
    // Level-triggered: every second, and at once when a change pokes it, so a listener that
    // could not bind (its address still held) or a row written by another server is picked up.
    std::unique_lock lock(endpoints_mu_);
    while (!endpoints_stopping_) {
      endpoints_poked_ = false;
      lock.unlock();
      refresh_endpoints();
      lock.lock();
      endpoints_cv_.wait_for(lock, std::chrono::seconds(1),
                             [&] { return endpoints_stopping_ || endpoints_poked_; });
    }
  });
}

void DatabaseService::Impl::stop_endpoints() {
  {
    std::lock_guard lock(endpoints_mu_);
    endpoints_stopping_ = true;
  }
  endpoints_cv_.notify_all();
  if (endpoint_keeper_.joinable()) endpoint_keeper_.join();
  endpoints_.reset();
}

Status DatabaseService::Impl::parse_access(const Json& access, InstanceRow& inst) {
  if (!access.is_object()) {
    return fail(bad("'access' must be an object: {\"is_public\": ..., \"allowed_cidrs\": [...]}."));
  }
  for (const auto& [key, value] : access.items()) {
    if (key == "is_public") {
      if (!value.is_boolean()) return fail(bad("'access.is_public' must be true or false."));
      inst.is_public = value.get<bool>();
    } else if (key == "allowed_cidrs") {
      if (!value.is_array() || value.size() > 64) {
        return fail(bad("'access.allowed_cidrs' must be a list of at most 64 IPv4 CIDRs."));
      }
      std::vector<std::string> cidrs;
      for (const Json& c : value) {
        if (!c.is_string()) return fail(bad("'access.allowed_cidrs' holds CIDR strings."));
        if (auto parsed = proxy::parse_cidr(c.get<std::string>()); !parsed) {
          return fail(bad("'access.allowed_cidrs': " + parsed.error().message()));
        }
        cidrs.push_back(c.get<std::string>());
      }
      inst.allowed_cidrs = std::move(cidrs);
    } else {
      return fail(
          bad("'access." + sanitize_utf8(key) + "' is not known (is_public, allowed_cidrs)."));
    }
  }
  return ok();
}

void DatabaseService::Impl::poke_endpoints() {
  {
    std::lock_guard lock(endpoints_mu_);
    endpoints_poked_ = true;
  }
  endpoints_cv_.notify_all();
}

void DatabaseService::Impl::refresh_endpoints() {
  if (!endpoints_) return;
  std::vector<proxy::EndpointSpec> specs;
  Status read = store_.read([&](store::Tx& tx) -> Status {
    specs.clear();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string(kInstanceSelect) + "WHERE i.deleting = 0 AND i.engine_address <> ''"));
    for (const store::Row& r : rows) {
      InstanceRow inst = instance_from(r);
      proxy::EndpointSpec e;
      e.id = inst.id;
      e.listen_host = inst.address;
      e.listen_port = static_cast<uint16_t>(inst.port);
      e.backend = {engine_address_of(inst), static_cast<uint16_t>(inst.port)};
      e.allowed_cidrs = inst.allowed_cidrs;
      // MariaDB reads who the client is from it (EngineOptions::proxy_networks), so accounts
      // limited to hosts work through the endpoint. PostgreSQL has no such header.
      e.proxy_protocol = inst.engine == "mariadb";
      if (inst.endpoint_mode == "transaction" && inst.engine == "postgresql") {
        e.mode = proxy::PoolMode::kTransaction;
        e.pool_size = pool_size_of(inst);  // follows a resize of the flavor too
        // The logins the engine knows: the group's users (a replica's come from its primary)
        // and root when enabled.
        const std::string owner = inst.replica_of.empty() ? inst.id : inst.replica_of;
        CONCORD_ASSIGN_OR_RETURN(
            store::Rows users,
            tx.query("SELECT name, verifier FROM db_users WHERE instance_id = ?", {owner}));
        for (const store::Row& u : users) e.verifiers[u.text(0)] = u.text(1);
        CONCORD_ASSIGN_OR_RETURN(
            store::Rows root,
            tx.query("SELECT verifier FROM db_root WHERE instance_id = ? AND enabled = 1",
                     {owner}));
        if (!root.empty()) e.verifiers["root"] = root[0].text(0);
      }
      specs.push_back(std::move(e));
    }
    return ok();
  });
  if (!read) {
    logger("database")->warn("endpoints: reading instances: {}", read.error().to_string());
    return;
  }
  for (const auto& [id, why] : endpoints_->reconcile(specs)) {
    logger("database")->warn("endpoint {}: {} (retried)", id, why.to_string());
  }
}

}  // namespace concord::database::service

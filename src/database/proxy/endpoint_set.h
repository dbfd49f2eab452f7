#pragma once
// The stable endpoints of all managed database instances, as one declared set.
//
// The database service declares, for every instance, the address its tenants use and the engine
// that serves it now; EndpointSet converges the running proxies (proxy.h) to that list. It is
// level-triggered: the owner hands it the whole list after any change and periodically, and the
// set starts what is missing, re-points a backend that moved (Proxy::set_backend: how a
// failover or promotion keeps the address), refreshes verifiers and pool sizes, and stops what
// is no longer listed. A listener that cannot be bound (its address is still held, say) is
// reported and tried again at the next reconcile; the other endpoints converge regardless.
//
// Threading: reconcile() and stats() are safe from any thread (one mutex); each proxy runs its
// own I/O thread (proxy.h).
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "database/proxy/proxy.h"

namespace concord::database::proxy {

struct EndpointSpec {
  std::string id;  // the instance id
  std::string listen_host;
  uint16_t listen_port = 0;
  Endpoint backend;
  PoolMode mode = PoolMode::kSession;
  std::map<std::string, std::string> verifiers;  // transaction mode: user -> SCRAM verifier
  std::vector<std::string> allowed_cidrs;        // empty: any client address
  bool proxy_protocol = false;                   // session mode: ProxyOptions::proxy_protocol
  int pool_size = 0;  // transaction mode: server connections per pool (0: the defaults')
  bool operator==(const EndpointSpec&) const = default;
};

class EndpointSet {
 public:
  // `defaults` gives what every proxy shares (timeouts, pool size, TLS files); the listener,
  // backend, mode and verifiers come from each spec.
  explicit EndpointSet(ProxyOptions defaults = {});
  ~EndpointSet();  // stops every proxy
  EndpointSet(const EndpointSet&) = delete;
  EndpointSet& operator=(const EndpointSet&) = delete;

  // Converges to `specs` (ids unique). The endpoints that could not be started, with why.
  std::vector<std::pair<std::string, Error>> reconcile(const std::vector<EndpointSpec>& specs);
  // nullopt when `id` has no running proxy.
  std::optional<ProxyStats> stats(const std::string& id) const;
  std::optional<Endpoint> backend(const std::string& id) const;
  size_t size() const;

 private:
  struct Running {
    EndpointSpec spec;
    std::unique_ptr<Proxy> proxy;
  };
  const ProxyOptions defaults_;
  mutable std::mutex mu_;
  std::map<std::string, Running> running_;  // guarded by mu_
};

}  // namespace concord::database::proxy

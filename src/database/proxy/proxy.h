#pragma once
// The stable-endpoint proxy for PostgreSQL instances.
//
// A Proxy listens on one address and forwards to one backend (the engine currently serving the
// instance). The backend is a value the owner switches at run time (set_backend): that is how
// the endpoint stays put while the primary moves on failover. The proxy never decides routing
// itself.
//
// Two modes per listener:
//  - kSession: one backend connection per client connection, bytes spliced both ways without
//    parsing (TLS, cancel requests and every protocol feature pass through end to end).
//  - kTransaction: the proxy terminates the client side (optional TLS), authenticates the client
//    with SCRAM-SHA-256 against the user's verifier, and lends it a pooled server connection
//    per transaction. Session state pins the client to its server connection; named prepared
//    statements are tracked per client and re-prepared transparently on whichever server
//    connection the next transaction gets. docs/design/database.md ("Stable endpoint proxy")
//    gives the rules.
//
// Threading: all connection state lives on the proxy's own I/O thread (one io_context, run by
// start()); the public methods are safe from any thread and hand work to that thread.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace concord::database::proxy {

struct Endpoint {
  std::string host;  // numeric IPv4/IPv6 address
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};
// "127.0.0.1:5432" or "[::1]:5432"; kInvalidArgument otherwise.
[[nodiscard]] Result<Endpoint> parse_endpoint(std::string_view text);

enum class PoolMode { kSession, kTransaction };
[[nodiscard]] Result<PoolMode> parse_pool_mode(std::string_view text);

// The PROXY protocol v1 line (haproxy's proxy-protocol.txt, section 2.1) for a TCP connection
// from `client` to `local`: "PROXY TCP4 192.0.2.7 198.51.100.1 51000 3306\r\n" (TCP6 when
// either is IPv6, both written as IPv6 then); kInvalidArgument for non-numeric addresses.
[[nodiscard]] Result<std::string> proxy_v1_header(const Endpoint& client, const Endpoint& local);

// An IPv4 CIDR ("192.0.2.0/24"; a bare address is /32) as (network, mask), host order;
// kInvalidArgument otherwise.
[[nodiscard]] Result<std::pair<uint32_t, uint32_t>> parse_cidr(std::string_view text);

// The transaction-mode pool size Concord chooses for an engine with `vcpus` CPUs: 4 per CPU,
// 8 to 64. A backend per client queued costs the engine more than it gives once its CPUs are
// busy (on 2 CPUs, 8 backends served 64 pgbench clients faster than 20 did, and 64 direct
// connections slowest of all: docs/benchmarks.md), while a pool much smaller than that leaves
// CPUs idle whenever transactions wait on I/O or locks. PgBouncer's fixed default is 20.
[[nodiscard]] int default_pool_size(int64_t vcpus);

struct ProxyOptions {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;  // 0: any free port (port() tells which)
  Endpoint backend;
  PoolMode mode = PoolMode::kSession;
  // Transaction mode: server connections per (database, user, startup parameters), at least 1.
  int pool_size = 20;
  // Transaction mode: user -> "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". The
  // engine must hold the same verifier: the proxy logs in to it with the recovered ClientKey.
  std::map<std::string, std::string> verifiers;
  // Transaction mode: PEM files for TLS toward clients (both empty: TLS refused with 'N').
  std::string tls_cert_file;
  std::string tls_key_file;
  // Client addresses allowed to connect, as IPv4 CIDRs ("10.0.0.0/8"); empty: any. Others are
  // closed at once, before a byte is read (Trove's access.allowed_cidrs).
  std::vector<std::string> allowed_cidrs;
  // Session mode: begin each backend connection with a PROXY protocol v1 line naming the
  // client's address and the address it connected to, so an engine that reads it (MariaDB's
  // proxy_protocol_networks) sees the client, not the proxy: accounts limited to hosts
  // ('app'@'10.0.0.%') then work through the endpoint.
  bool proxy_protocol = false;
  std::chrono::milliseconds connect_timeout{5000};      // TCP connect + login to the backend
  std::chrono::milliseconds login_timeout{15000};       // client startup + authentication
  std::chrono::milliseconds query_wait_timeout{30000};  // waiting for a pooled connection
};

// Counters for tests and metrics; read from any thread.
struct ProxyStats {
  int64_t clients_accepted = 0;
  int64_t clients_active = 0;
  int64_t server_connections = 0;  // open now (idle + lent + pinned)
  int64_t server_connects = 0;     // opened since start
  int64_t transactions = 0;        // server connections returned to the pool
  int64_t pinned_clients = 0;      // clients that got pinned since start
  int64_t reprepares = 0;          // statements re-prepared on another server connection
  int64_t pool_waits = 0;          // acquisitions that had to queue
  int64_t wait_timeouts = 0;
  int64_t protocol_errors = 0;
  int64_t backend_switches = 0;
  int64_t clients_refused = 0;  // closed at accept: address not in allowed_cidrs
  int64_t pool_size = 0;        // transaction mode: server connections per pool, now
};

class Proxy {
 public:
  // Binds the listener (so port() is known) but serves only after start().
  [[nodiscard]] static Result<std::unique_ptr<Proxy>> create(ProxyOptions options);
  virtual ~Proxy() = default;

  virtual uint16_t port() const = 0;
  // Runs the I/O thread. kFailedPrecondition when already started.
  [[nodiscard]] virtual Status start() = 0;
  // Closes the listener and every connection, and joins the I/O thread. Idempotent.
  virtual void stop() = 0;
  // Routes new connections (session mode) and new transactions (transaction mode) to
  // `backend`. Session-mode connections to the old backend are closed now; in transaction mode
  // idle server connections to it are closed now, lent ones when their transaction ends, and a
  // pinned client whose server connection is on the old backend is disconnected (57P01) at its
  // next idle point: after a failover its session state is gone anyway.
  virtual void set_backend(Endpoint backend) = 0;
  virtual Endpoint backend() const = 0;
  // Replaces the user -> verifier map (new logins only).
  virtual void set_verifiers(std::map<std::string, std::string> verifiers) = 0;
  // Transaction mode: the new size of every pool (at least 1). Clients waiting for a connection
  // may open one at once when it grows; when it shrinks, idle connections beyond it close now
  // and lent ones when they come back.
  virtual void set_pool_size(int pool_size) = 0;
  virtual ProxyStats stats() const = 0;
};

}  // namespace concord::database::proxy

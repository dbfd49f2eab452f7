// concord-db-proxy: runs one stable-endpoint proxy listener in front of a PostgreSQL server.
//
//   concord-db-proxy --listen 127.0.0.1:6432 --backend 127.0.0.1:5432
//       --mode session|transaction [--pool-size N] [--users-file f] [--backend-file f]
//       [--tls-cert f --tls-key f]
//
// The users file holds one `user verifier` pair a line, each optionally double-quoted (so
// PgBouncer's userlist.txt with SCRAM verifiers is read as is); '#' starts a comment. SIGHUP
// re-reads the users file and, when given, the backend file (one `<address>:<port>` line): the
// way an operator or a test moves the endpoint to another server without dropping clients.
// It is a separate small binary rather than a `concord` subcommand so that it links only base,
// Asio and OpenSSL, and can run beside an engine on an agent host.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/log.h"
#include "database/proxy/proxy.h"

namespace {

using concord::Code;
using concord::fail;
using concord::Result;
using namespace concord::database::proxy;

std::string unquote(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

Result<std::map<std::string, std::string>> read_users(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(Code::kNotFound, "cannot read users file " + path);
  std::map<std::string, std::string> users;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string user, verifier, extra;
    if (!(fields >> user)) continue;
    if (!(fields >> verifier) || (fields >> extra)) {
      return fail(Code::kInvalidArgument,
                  path + ":" + std::to_string(n) + ": expected `user verifier`");
    }
    users[unquote(user)] = unquote(verifier);
  }
  return users;
}

Result<Endpoint> read_backend_file(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return fail(Code::kNotFound, "cannot read " + path);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  return parse_endpoint(line);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Concord stable-endpoint PostgreSQL proxy"};
  std::string listen = "127.0.0.1:6432", backend, mode = "session", users_file, backend_file,
              tls_cert, tls_key, log_level = "info";
  // As the endpoints size it for an engine's flavor, here for the CPUs of this host.
  int pool_size = default_pool_size(std::max(1u, std::thread::hardware_concurrency()));
  int wait_timeout_ms = 30000;
  app.add_option("--listen", listen, "Address:port to accept clients on");
  app.add_option("--backend", backend, "Address:port of the PostgreSQL server")->required();
  app.add_option("--mode", mode, "session (splice bytes) or transaction (pooling)");
  app.add_option("--pool-size", pool_size,
                 "Server connections per database/user (transaction; default 4 per CPU, 8-64)")
      ->check(CLI::Range(1, 10000));
  app.add_option("--users-file", users_file, "`user verifier` lines (transaction mode)");
  app.add_option("--backend-file", backend_file, "File re-read on SIGHUP for a new backend");
  app.add_option("--tls-cert", tls_cert, "PEM certificate for client TLS (transaction mode)");
  app.add_option("--tls-key", tls_key, "PEM key for client TLS (transaction mode)");
  app.add_option("--query-wait-timeout-ms", wait_timeout_ms, "Max wait for a pooled connection");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");
  CLI11_PARSE(app, argc, argv);
  concord::set_log_level(log_level);
  auto log = concord::logger("database.proxy");

  ProxyOptions options;
  auto l = parse_endpoint(listen);
  auto b = parse_endpoint(backend);
  auto m = parse_pool_mode(mode);
  for (const concord::Error* e :
       {l ? nullptr : &l.error(), b ? nullptr : &b.error(), m ? nullptr : &m.error()}) {
    if (e) {
      std::fprintf(stderr, "concord-db-proxy: %s\n", e->message().c_str());
      return 2;
    }
  }
  options.listen_host = l->host;
  options.listen_port = l->port;
  options.backend = *b;
  options.mode = *m;
  options.pool_size = pool_size;
  options.tls_cert_file = tls_cert;
  options.tls_key_file = tls_key;
  options.query_wait_timeout = std::chrono::milliseconds(wait_timeout_ms);
  if (!users_file.empty()) {
    auto users = read_users(users_file);
    if (!users) {
      std::fprintf(stderr, "concord-db-proxy: %s\n", users.error().message().c_str());
      return 2;
    }
    options.verifiers = std::move(*users);
  } else if (options.mode == PoolMode::kTransaction) {
    std::fprintf(stderr, "concord-db-proxy: transaction mode needs --users-file\n");
    return 2;
  }

  // Signals are taken synchronously by this thread; the proxy's thread never sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto proxy = Proxy::create(std::move(options));
  if (!proxy) {
    std::fprintf(stderr, "concord-db-proxy: %s\n", proxy.error().message().c_str());
    return 1;
  }
  if (auto st = (*proxy)->start(); !st) {
    std::fprintf(stderr, "concord-db-proxy: %s\n", st.error().message().c_str());
    return 1;
  }
  std::printf("listening on %s:%u\n", l->host.c_str(), unsigned((*proxy)->port()));
  std::fflush(stdout);
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) break;
    if (!users_file.empty()) {
      if (auto users = read_users(users_file)) {
        (*proxy)->set_verifiers(std::move(*users));
      } else {
        log->error("users file not reloaded: {}", users.error().message());
      }
    }
    if (!backend_file.empty()) {
      if (auto nb = read_backend_file(backend_file)) {
        (*proxy)->set_backend(*nb);
      } else {
        log->error("backend not switched: {}", nb.error().message());
      }
    }
  }
  (*proxy)->stop();
  return 0;
}

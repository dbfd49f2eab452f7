#include "cmd/app.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "http/metrics.h"
#include "http/router.h"
#include "http/server.h"
#include "identity/crypto/token.h"
#include "identity/identity_service.h"
#include "store/store.h"
#include "usage/usage_ledger.h"

namespace concord::cmd {
namespace {

namespace fs = std::filesystem;

std::string data_dir(const config::Config& c) {
  std::error_code ec;
  fs::path p = fs::absolute(c.str("data_dir"), ec);
  return ec ? c.str("data_dir") : p.lexically_normal().string();
}

Status ensure_data_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return fail(Code::kFailedPrecondition, "cannot create data_dir " + dir + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  return ok();
}

// Writes a file atomically (temp + rename) so readers never see half of it; `mode` applies.
Status write_file(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return fail(Code::kFailedPrecondition, "cannot write " + tmp);
    out << content;
    out.flush();
    if (!out) return fail(Code::kFailedPrecondition, "cannot write " + tmp);
  }
  ::chmod(tmp.c_str(), mode);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return fail(Code::kFailedPrecondition, "cannot rename " + tmp + ": " + ec.message());
  return ok();
}

std::vector<store::Migration> all_migrations() {
  std::vector<store::Migration> all = identity::migrations();
  for (auto& m : usage::migrations()) all.push_back(std::move(m));
  return all;
}

Result<std::unique_ptr<store::Store>> open_and_migrate(const config::Config& c) {
  std::string url = c.str("store.url");
  std::unique_ptr<store::Store> st;
  if (url.empty()) {
    store::SqliteOptions o;
    o.path = data_dir(c) + "/concord.db";
    o.reader_connections = static_cast<int>(c.integer("store.connections"));
    CONCORD_ASSIGN_OR_RETURN(st, store::open_sqlite(o));
  } else {
    CONCORD_ASSIGN_OR_RETURN(st, store::open_store(url));
  }
  auto migrations = all_migrations();
  CONCORD_RETURN_IF_ERROR(st->migrate(migrations));
  return st;
}

identity::IdentityOptions identity_options(const config::Config& c) {
  identity::IdentityOptions o;
  o.region = c.str("identity.region");
  o.token_ttl = std::chrono::seconds(c.millis("identity.token_ttl") / 1000);
  o.key_dir = data_dir(c) + "/fernet-keys";
  o.max_active_keys = static_cast<int>(c.integer("identity.max_active_keys"));
  o.lockout_failures = static_cast<int>(c.integer("identity.lockout_failures"));
  o.lockout_window = std::chrono::milliseconds(c.millis("identity.lockout_window"));
  return o;
}

// The admin password: the configured one, else the one generated on an earlier start, else
// a new random one (kept in data_dir/admin-password, mode 0600).
Result<std::string> admin_password(const config::Config& c) {
  std::string configured = c.str("bootstrap.admin_password");
  if (!configured.empty()) return configured;
  std::string path = data_dir(c) + "/admin-password";
  std::ifstream in(path);
  std::string existing;
  if (in && std::getline(in, existing) && !existing.empty()) return existing;
  std::string generated = random_token(18);
  CONCORD_RETURN_IF_ERROR(write_file(path, generated + "\n", 0600));
  return generated;
}

std::string public_url(const config::Config& c, uint16_t port) {
  std::string configured = c.str("server.public_url");
  if (!configured.empty()) {
    while (!configured.empty() && configured.back() == '/') configured.pop_back();
    return configured;
  }
  return "http://" + c.str("server.bind") + ":" + std::to_string(port);
}

// clouds.yaml and openrc for the admin, so the real `openstack` CLI works at once.
Status write_credentials(const config::Config& c, const std::string& url,
                         const std::string& password) {
  std::string dir = data_dir(c);
  std::string auth_url = url + "/identity/v3";
  std::string region = c.str("identity.region");
  // Values are quoted: the generated password is base64url, but a configured one may hold
  // YAML or shell metacharacters.
  auto yaml_quote = [](const std::string& s) { return dump_json(Json(s)); };
  auto shell_quote = [](const std::string& s) {
    std::string out = "'";
    for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return out + "'";
  };
  std::string clouds =
      "clouds:\n"
      "  concord-admin:\n"
      "    auth:\n"
      "      auth_url: " +
      yaml_quote(auth_url) +
      "\n"
      "      username: admin\n"
      "      password: " +
      yaml_quote(password) +
      "\n"
      "      project_name: admin\n"
      "      user_domain_name: Default\n"
      "      project_domain_name: Default\n"
      "    region_name: " +
      yaml_quote(region) +
      "\n"
      "    interface: public\n"
      "    identity_api_version: 3\n";
  CONCORD_RETURN_IF_ERROR(write_file(dir + "/clouds.yaml", clouds, 0600));
  std::string openrc =
      "# Admin credentials for the Concord all-in-one: `source` this file, then use `openstack`.\n"
      "export OS_AUTH_URL=" +
      shell_quote(auth_url) +
      "\n"
      "export OS_USERNAME=admin\n"
      "export OS_PASSWORD=" +
      shell_quote(password) +
      "\n"
      "export OS_PROJECT_NAME=admin\n"
      "export OS_USER_DOMAIN_NAME=Default\n"
      "export OS_PROJECT_DOMAIN_NAME=Default\n"
      "export OS_IDENTITY_API_VERSION=3\n"
      "export OS_REGION_NAME=" +
      shell_quote(region) +
      "\n"
      "export OS_INTERFACE=public\n";
  return write_file(dir + "/openrc", openrc, 0600);
}

Status bootstrap_identity(identity::IdentityService& ids, const config::Config& c,
                          const std::string& url) {
  CONCORD_ASSIGN_OR_RETURN(std::string password, admin_password(c));
  identity::IdentityService::BootstrapSpec spec;
  spec.admin_password = password;
  spec.public_url = url;
  spec.region = c.str("identity.region");
  CONCORD_RETURN_IF_ERROR(ids.bootstrap(spec));
  return write_credentials(c, url, password);
}

// Blocks SIGINT/SIGTERM in every thread (call before starting any) and waits for one.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

Status run_migrate(const config::Config& c) {
  CONCORD_RETURN_IF_ERROR(ensure_data_dir(data_dir(c)));
  CONCORD_ASSIGN_OR_RETURN(auto st, open_and_migrate(c));
  logger("cmd")->info("store migrated");
  return ok();
}

Status run_bootstrap(const config::Config& c) {
  CONCORD_RETURN_IF_ERROR(ensure_data_dir(data_dir(c)));
  CONCORD_ASSIGN_OR_RETURN(auto st, open_and_migrate(c));
  RealClock clock;
  CONCORD_ASSIGN_OR_RETURN(auto ids,
                           identity::IdentityService::create(*st, clock, identity_options(c)));
  std::string url = public_url(c, static_cast<uint16_t>(c.integer("server.port")));
  CONCORD_RETURN_IF_ERROR(bootstrap_identity(*ids, c, url));
  std::printf("bootstrapped; admin credentials in %s/clouds.yaml and %s/openrc\n",
              data_dir(c).c_str(), data_dir(c).c_str());
  return ok();
}

Status run_token_rotate(const config::Config& c) {
  CONCORD_ASSIGN_OR_RETURN(auto keys, identity::KeyRepository::open(
                                          data_dir(c) + "/fernet-keys",
                                          static_cast<int>(c.integer("identity.max_active_keys"))));
  CONCORD_RETURN_IF_ERROR(keys->rotate());
  std::printf("rotated the token keys in %s/fernet-keys\n", data_dir(c).c_str());
  return ok();
}

Status run_server(const config::Config& c, bool bootstrap) {
  auto log = logger("cmd");
  std::string dir = data_dir(c);
  CONCORD_RETURN_IF_ERROR(ensure_data_dir(dir));
  std::error_code ec;
  fs::remove(dir + "/server.json", ec);

  // Signals are blocked before any thread starts so that only sigwait() below sees them.
  sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  CONCORD_ASSIGN_OR_RETURN(auto st, open_and_migrate(c));
  RealClock clock;
  CONCORD_ASSIGN_OR_RETURN(auto ids,
                           identity::IdentityService::create(*st, clock, identity_options(c)));

  auto router = std::make_shared<http::Router>();
  auto identity_routes = ids->routes();
  router->mount("/identity", identity_routes, http::keystone_style_error);
  router->mount("", identity_routes, http::keystone_style_error);

  auto metrics = std::make_shared<http::Registry>();
  http::ServerOptions so;
  so.bind_address = c.str("server.bind");
  so.port = static_cast<uint16_t>(c.integer("server.port"));
  so.threads = static_cast<int>(c.integer("server.threads"));
  so.max_body_bytes = static_cast<size_t>(c.integer("server.max_body_bytes"));
  so.max_header_bytes = static_cast<size_t>(c.integer("server.max_header_bytes"));
  so.header_timeout = std::chrono::milliseconds(c.millis("server.header_timeout"));
  so.body_timeout = std::chrono::milliseconds(c.millis("server.body_timeout"));
  so.idle_timeout = std::chrono::milliseconds(c.millis("server.idle_timeout"));
  so.shutdown_grace = std::chrono::milliseconds(c.millis("server.shutdown_grace"));
  http::Server server(so, router, metrics);
  CONCORD_RETURN_IF_ERROR(server.start());

  std::string url = public_url(c, server.port());
  if (bootstrap) CONCORD_RETURN_IF_ERROR(bootstrap_identity(*ids, c, url));

  std::string local_url = "http://" + so.bind_address + ":" + std::to_string(server.port());
  Json ready = {{"url", local_url}, {"public_url", url}, {"pid", static_cast<int64_t>(::getpid())}};
  CONCORD_RETURN_IF_ERROR(write_file(dir + "/server.json", dump_json(ready) + "\n", 0644));
  log->info("serving on {} (identity at {}/identity/v3); data in {}", local_url, url, dir);
  if (bootstrap) {
    std::printf(
        "Concord is running at %s\n  admin credentials: %s/openrc and %s/clouds.yaml "
        "(cloud 'concord-admin')\n  try: source %s/openrc && openstack token issue\n",
        url.c_str(), dir.c_str(), dir.c_str(), dir.c_str());
    std::fflush(stdout);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  log->info("signal {} received, stopping", sig);
  fs::remove(dir + "/server.json", ec);
  server.stop();
  return ok();
}

}  // namespace concord::cmd

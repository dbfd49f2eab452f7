#include "cmd/app.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "agent/agent.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "compute/service/compute_service.h"
#include "compute/service/flavors.h"
#include "compute/service/model.h"
#include "database/service/database_service.h"
#include "http/metrics.h"
#include "http/router.h"
#include "http/server.h"
#include "identity/crypto/token.h"
#include "identity/identity_service.h"
#include "image/image_service.h"
#include "inference/endpoints/endpoint_service.h"
#include "inference/endpoints/replica_backend.h"
#include "inference/placement/compute_replicas.h"
#include "inference/placement/model_artifacts.h"
#include "inference/registry/registry.h"
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
  for (auto& m : image::migrations()) all.push_back(std::move(m));
  for (auto& m : compute::migrations()) all.push_back(std::move(m));
  for (auto& m : inference::registry::migrations()) all.push_back(std::move(m));
  for (auto& m : inference::endpoints::migrations()) all.push_back(std::move(m));
  for (auto& m : database::service::migrations()) all.push_back(std::move(m));
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

// The key agents' per-host credentials derive from (data_dir/agent-key, 0600, made once).
Result<std::string> agent_key(const config::Config& c) {
  std::string path = data_dir(c) + "/agent-key";
  std::ifstream in(path);
  std::string existing;
  if (in && std::getline(in, existing) && existing.size() >= 32) return existing;
  std::string generated = random_token(32);
  CONCORD_RETURN_IF_ERROR(write_file(path, generated + "\n", 0600));
  return generated;
}

Result<double> ratio(const config::Config& c, const std::string& key) {
  std::string text = c.str(key);
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0) || v > 1000) {
    return fail(Code::kInvalidArgument,
                key + " must be a number greater than 0 and at most 1000, not '" + text + "'");
  }
  return v;
}

Result<compute::ComputeOptions> compute_options(const config::Config& c) {
  compute::ComputeOptions o;
  o.region = c.str("identity.region");
  o.default_availability_zone = c.str("compute.availability_zone");
  CONCORD_ASSIGN_OR_RETURN(o.cpu_allocation_ratio, ratio(c, "compute.cpu_allocation_ratio"));
  CONCORD_ASSIGN_OR_RETURN(o.ram_allocation_ratio, ratio(c, "compute.ram_allocation_ratio"));
  CONCORD_ASSIGN_OR_RETURN(o.disk_allocation_ratio, ratio(c, "compute.disk_allocation_ratio"));
  o.pack = c.str("compute.weigher") == "pack";
  o.heartbeat_interval = std::chrono::milliseconds(c.millis("compute.heartbeat_interval"));
  o.down_after = std::chrono::milliseconds(c.millis("compute.down_after"));
  o.build_timeout = std::chrono::milliseconds(c.millis("compute.build_timeout"));
  o.action_timeout = std::chrono::milliseconds(c.millis("compute.action_timeout"));
  o.max_user_data_bytes = static_cast<size_t>(c.integer("compute.max_user_data_bytes"));
  o.view_cache_bytes = static_cast<size_t>(c.integer("compute.view_cache_mb")) << 20;
  o.max_waiting_polls = std::max<int>(1, static_cast<int>(c.integer("server.threads")) / 2);
  CONCORD_ASSIGN_OR_RETURN(o.agent_key, agent_key(c));
  return o;
}

std::string default_host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// The agent's options from the configuration; `server_url` and `credential` come from the
// caller (the all-in-one knows both; `concord agent` reads them from agent.*).
Result<agent::AgentOptions> agent_options(const config::Config& c, std::string server_url,
                                          std::string credential) {
  agent::AgentOptions o;
  o.server_url = std::move(server_url);
  o.host = c.str("agent.host").empty() ? default_host_name() : c.str("agent.host");
  o.credential = std::move(credential);
  o.availability_zone = c.str("agent.availability_zone");
  o.state_dir = c.str("agent.state_dir").empty() ? data_dir(c) + "/agent-" + o.host
                                                 : c.str("agent.state_dir");
  std::error_code ec;
  fs::path abs = fs::absolute(o.state_dir, ec);
  if (!ec) o.state_dir = abs.lexically_normal().string();
  o.drivers.clear();
  std::string list = c.str("agent.drivers");
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    std::string item = list.substr(start, comma == std::string::npos ? comma : comma - start);
    if (!item.empty()) {
      if (item != "container" && item != "vm" && item != "inference" && item != "database") {
        return fail(Code::kInvalidArgument, "agent.drivers: unknown driver '" + item +
                                                "' (container, vm, inference, database)");
      }
      o.drivers.push_back(item);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (o.drivers.empty()) return fail(Code::kInvalidArgument, "agent.drivers names no driver");
  if (c.integer("agent.vcpus") > 0) o.vcpus = c.integer("agent.vcpus");
  if (c.integer("agent.ram_mb") > 0) o.ram_mb = c.integer("agent.ram_mb");
  if (c.integer("agent.disk_gb") > 0) o.disk_gb = c.integer("agent.disk_gb");
  o.heartbeat_interval = std::chrono::milliseconds(c.millis("compute.heartbeat_interval"));
  o.driver_options.state_dir = o.state_dir;
  o.driver_options.bridge = c.str("agent.bridge");
  o.driver_options.subnet = c.str("agent.subnet");
  o.driver_options.accel = c.str("agent.vm_accel");
  o.driver_options.database_proxy_networks = c.str("agent.database_proxy_networks");
  o.driver_options.database_volumes = c.str("agent.database_volumes");
  return o;
}

// Compute sees images through compute::ImageCatalog; this adapts the image service to it.
//
// Boots (get/get_any/download) use the service's lookup interface. Nova's image proxy
// (list/show/update_properties/remove) goes through the image service's own Glance API, in
// process, with the caller's token: visibility, ownership, protection and property rules are
// then Glance's exactly, as when Nova proxies to Glance, and compute never reads image tables.
// The full record (extra properties apart from core fields) is then read through the lookup.
// Forwards to the replica backend attached once the service project exists (run_server). The
// endpoint controller, its only caller, starts after attach(); the API never calls it.
class DeferredReplicaBackend final : public inference::endpoints::ReplicaBackend {
 public:
  void attach(std::unique_ptr<inference::endpoints::ReplicaBackend> inner) {
    inner_ = std::move(inner);
  }
  Status ensure(const std::string& id, const inference::endpoints::ReplicaSpec& spec) override {
    if (!inner_) return not_yet();
    return inner_->ensure(id, spec);
  }
  Status destroy(std::string_view id) override {
    if (!inner_) return not_yet();
    return inner_->destroy(id);
  }
  Result<std::vector<inference::endpoints::ReplicaInfo>> list() override {
    if (!inner_) return not_yet();
    return inner_->list();
  }

 private:
  static std::unexpected<Error> not_yet() {
    return fail(Code::kUnavailable, "the replica backend is not attached yet (starting up)");
  }
  std::unique_ptr<inference::endpoints::ReplicaBackend> inner_;
};

class ImageCatalogAdapter final : public compute::ImageCatalog {
 public:
  explicit ImageCatalogAdapter(const image::ImageService& images) : images_(images) {
    glance_.mount("/image", images_.routes(), images_.error_formatter());
  }

  Result<std::vector<compute::ImageInfo>> list(const compute::ImageAccess& access) const override {
    std::vector<compute::ImageInfo> out;
    std::string marker;
    // Glance pages at most 1000 images per answer; follow the pages to the end.
    for (int page = 0; page < 100000; ++page) {
      std::string target = "/image/v2/images?limit=1000";
      if (!marker.empty()) target += "&marker=" + marker;
      CONCORD_ASSIGN_OR_RETURN(Json body, call_glance(http::Method::kGet, target, access));
      const Json& images = body.value("images", Json::array());
      if (!images.is_array()) return fail(Code::kInternal, "Glance list without an images array");
      for (const Json& j : images) {
        if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) continue;
        auto record = images_.get_for_project(j["id"].get<std::string>(), "", true);
        if (!record) {
          if (record.error().code() == Code::kNotFound) continue;  // deleted meanwhile
          return fail(record.error());
        }
        out.push_back(info(*record));
      }
      if (!body.contains("next") || images.empty()) return out;
      marker = images.back()["id"].get<std::string>();
    }
    return out;
  }
  Result<compute::ImageInfo> show(std::string_view id,
                                  const compute::ImageAccess& access) const override {
    CONCORD_RETURN_IF_ERROR(check_id(id));
    CONCORD_ASSIGN_OR_RETURN(
        Json body, call_glance(http::Method::kGet, "/image/v2/images/" + std::string(id), access));
    (void)body;
    return record_info(id);
  }
  Result<compute::ImageInfo> update_properties(
      std::string_view id, const compute::ImageAccess& access,
      const std::map<std::string, std::string>& set,
      const std::vector<std::string>& remove) const override {
    CONCORD_RETURN_IF_ERROR(check_id(id));
    Json patch = Json::array();
    auto pointer = [](const std::string& name) {
      std::string p = "/";
      for (char ch : name) {
        if (ch == '~')
          p += "~0";
        else if (ch == '/')
          p += "~1";
        else
          p += ch;
      }
      return p;
    };
    for (const std::string& k : remove) patch.push_back({{"op", "remove"}, {"path", pointer(k)}});
    for (const auto& [k, v] : set)
      patch.push_back({{"op", "add"}, {"path", pointer(k)}, {"value", v}});
    if (!patch.empty()) {
      CONCORD_ASSIGN_OR_RETURN(
          Json body, call_glance(http::Method::kPatch, "/image/v2/images/" + std::string(id),
                                 access, dump_json(patch)));
      (void)body;
    } else {
      return show(id, access);
    }
    return record_info(id);
  }
  Status remove(std::string_view id, const compute::ImageAccess& access) const override {
    CONCORD_RETURN_IF_ERROR(check_id(id));
    CONCORD_ASSIGN_OR_RETURN(Json body, call_glance(http::Method::kDelete,
                                                    "/image/v2/images/" + std::string(id), access));
    (void)body;
    return ok();
  }

  Result<compute::ImageInfo> get(std::string_view id,
                                 const identity::AuthContext& caller) const override {
    CONCORD_ASSIGN_OR_RETURN(image::ImageRecord r,
                             images_.get_for_project(id, caller.project_id, caller.is_admin()));
    return info(r);
  }
  Result<compute::ImageInfo> get_any(std::string_view id) const override {
    CONCORD_ASSIGN_OR_RETURN(image::ImageRecord r, images_.get_for_project(id, "", true));
    return info(r);
  }
  Result<http::Response> download(std::string_view id) const override {
    CONCORD_ASSIGN_OR_RETURN(image::ImageRecord r, images_.get_for_project(id, "", true));
    std::string path = images_.blob_path(r);
    if (path.empty()) return fail(Code::kNotFound, "image " + std::string(id) + " has no data");
    http::Response resp;
    resp.status = 200;
    resp.set_header("content-type", "application/octet-stream");
    if (r.sha256) resp.set_header("x-image-sha256", *r.sha256);
    resp.body_file = path;
    return resp;
  }

 private:
  // Ids become a path segment of an in-process request: only a UUID's characters may pass.
  static Status check_id(std::string_view id) {
    bool plain = !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
      return std::isxdigit(static_cast<unsigned char>(c)) || c == '-';
    });
    if (!plain) return fail(Code::kNotFound, "Image " + sanitize_utf8(id) + " could not be found.");
    return ok();
  }

  Result<compute::ImageInfo> record_info(std::string_view id) const {
    CONCORD_ASSIGN_OR_RETURN(image::ImageRecord r, images_.get_for_project(id, "", true));
    return info(r);
  }

  // One request to the Glance API in process; Glance's error statuses become codes.
  Result<Json> call_glance(http::Method method, const std::string& target,
                           const compute::ImageAccess& access, std::string body = {}) const {
    http::Request req;
    req.method = method;
    req.target = target;
    req.request_id = std::string(access.request_id);
    req.headers.push_back({"x-auth-token", std::string(access.token)});
    if (!body.empty()) {
      req.headers.push_back({"content-type", "application/openstack-images-v2.1-json-patch"});
      req.body = std::move(body);
    }
    std::string route;
    http::Response resp = glance_.dispatch(req, route);
    if (resp.status >= 200 && resp.status < 300) {
      if (resp.body.empty()) return Json();
      auto parsed = parse_json(resp.body);
      if (!parsed) return fail(Code::kInternal, "Glance answered unparsable JSON");
      return std::move(*parsed);
    }
    // Glance's text body is "<status line>\n\n<message>\n\n".
    std::string message = resp.body;
    if (size_t blank = message.find("\n\n"); blank != std::string::npos)
      message = message.substr(blank + 2);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    switch (resp.status) {
      case 400: return fail(Code::kInvalidArgument, message);
      case 401: return fail(Code::kUnauthenticated, message);
      case 403: return fail(Code::kPermissionDenied, message);
      case 404: return fail(Code::kNotFound, message);
      case 409: return fail(Code::kFailedPrecondition, message);
      case 413: return fail(Code::kResourceExhausted, message);
      case 503: return fail(Code::kUnavailable, message);
      default:
        return fail(Code::kInternal,
                    "Glance answered " + std::to_string(resp.status) + ": " + message);
    }
  }

  static compute::ImageInfo info(const image::ImageRecord& r) {
    compute::ImageInfo i;
    i.id = r.id;
    i.name = r.name.value_or("");
    i.status = r.status;
    i.disk_format = r.disk_format.value_or("");
    i.container_format = r.container_format.value_or("");
    i.size = r.size.value_or(0);
    i.sha256 = r.sha256.value_or("");
    i.min_disk = r.min_disk;
    i.min_ram = r.min_ram;
    i.properties = r.properties;
    i.owner = r.owner;
    i.visibility = r.visibility;
    i.created_at = r.created_at;
    i.updated_at = r.updated_at;
    return i;
  }
  const image::ImageService& images_;
  http::Router glance_;
};

Status bootstrap_identity(identity::IdentityService& ids, const config::Config& c,
                          const std::string& url) {
  CONCORD_ASSIGN_OR_RETURN(std::string password, admin_password(c));
  identity::IdentityService::BootstrapSpec spec;
  spec.admin_password = password;
  spec.public_url = url;
  spec.region = c.str("identity.region");
  CONCORD_RETURN_IF_ERROR(ids.bootstrap(spec));
  CONCORD_RETURN_IF_ERROR(ids.ensure_service_endpoint("compute", "nova", url + "/compute/v2.1"));
  CONCORD_RETURN_IF_ERROR(ids.ensure_service_endpoint("image", "glance", url + "/image"));
  CONCORD_RETURN_IF_ERROR(
      ids.ensure_service_endpoint("inference", "concord-inference", url + "/inference"));
  // troveclient appends /instances etc. to the catalog URL, so it carries the project.
  CONCORD_RETURN_IF_ERROR(
      ids.ensure_service_endpoint("database", "trove", url + "/database/v1.0/$(project_id)s"));
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

  image::ImageOptions image_options;
  image_options.blob_dir = dir + "/images";
  image_options.max_image_bytes = static_cast<uint64_t>(c.integer("image.max_image_bytes"));
  CONCORD_ASSIGN_OR_RETURN(auto images,
                           image::ImageService::create(*st, clock, *ids, image_options));
  inference::registry::RegistryOptions registry_options;
  registry_options.blob_dir = dir + "/models";
  registry_options.max_model_bytes = static_cast<uint64_t>(c.integer("inference.max_model_mb"))
                                     << 20;
  registry_options.check_timeout = std::chrono::milliseconds(c.millis("inference.check_timeout"));
  registry_options.region = c.str("identity.region");
  CONCORD_ASSIGN_OR_RETURN(auto models, inference::registry::ModelRegistry::create(
                                            *st, clock, *ids, std::move(registry_options)));

  ImageCatalogAdapter image_catalog(*images);
  // Agents fetch a replica's model version like an image, by an artifact id (model_artifacts.h).
  inference::placement::ModelArtifactCatalog compute_images(
      image_catalog, inference::placement::registry_version_files(*models));
  CONCORD_ASSIGN_OR_RETURN(compute::ComputeOptions compute_opts, compute_options(c));
  CONCORD_ASSIGN_OR_RETURN(auto compute, compute::ComputeService::create(
                                             {*st, clock, *ids, compute_images, compute_opts}));
  CONCORD_RETURN_IF_ERROR(compute::ensure_default_flavors(*st, clock));

  auto router = std::make_shared<http::Router>();
  auto identity_routes = ids->routes();
  router->mount("/identity", identity_routes, http::keystone_style_error);
  router->mount("", identity_routes, http::keystone_style_error);
  router->mount("/image", images->routes(), images->error_formatter());
  router->mount("/compute", compute->routes(), compute::ComputeService::error);
  router->mount("/agent", compute->agent_routes(), http::keystone_style_error);
  router->mount("/inference", models->routes(), models->error_formatter());

  database::service::DatabaseOptions database_options;
  database_options.address_pool = c.str("database.address_pool");
  database_options.port_postgresql = static_cast<int>(c.integer("database.port_postgresql"));
  database_options.port_mariadb = static_cast<int>(c.integer("database.port_mariadb"));
  database_options.max_volume_gb = c.integer("database.max_volume_gb");
  database_options.quota_instances = c.integer("database.quota_instances");
  database_options.quota_volumes_gb = c.integer("database.quota_volumes_gb");
  database_options.quota_backups = c.integer("database.quota_backups");
  database_options.quota_ram_mb = c.integer("database.quota_ram_mb");
  database_options.apply_wait = std::chrono::milliseconds(c.integer("database.apply_wait_ms"));
  database_options.region = c.str("identity.region");
  database_options.public_url = c.str("server.public_url");
  database_options.backup_dir = dir + "/database-backups";
  database_options.endpoints = c.boolean("database.endpoints");
  database_options.endpoint_tls_dir = dir + "/database-endpoints";
  database_options.ha_replace_after =
      std::chrono::milliseconds(c.millis("database.ha_replace_after"));
  CONCORD_ASSIGN_OR_RETURN(auto databases,
                           database::service::DatabaseService::create(
                               *st, clock, *ids, compute->context(), std::move(database_options)));
  router->mount("/database", databases->routes(), databases->errors());
  // Backup archives and archived logs from the hosts' agents (next to compute's /agent).
  router->mount("/agent/v1/database", databases->agent_routes(), http::keystone_style_error);

  auto metrics = std::make_shared<http::Registry>();
  databases->register_metrics(*metrics);
  // Endpoint replicas are compute servers of Concord's service project, which exists only
  // once identity is bootstrapped (after the server starts, in all-in-one): the backend is
  // attached then, before the controller's first pass.
  DeferredReplicaBackend replicas;
  inference::endpoints::EndpointOptions endpoint_options;
  endpoint_options.region = c.str("identity.region");
  endpoint_options.public_url = c.str("server.public_url");
  endpoint_options.max_in_flight =
      static_cast<size_t>(c.integer("inference.gateway_max_in_flight"));
  endpoint_options.gateway_threads = static_cast<int>(c.integer("inference.gateway_threads"));
  CONCORD_ASSIGN_OR_RETURN(auto endpoints, inference::endpoints::EndpointService::create(
                                               *st, clock, *ids, *models, replicas, metrics,
                                               std::move(endpoint_options)));
  models->set_in_use(endpoints->in_use_check());
  router->mount("/inference/v1/endpoints", endpoints->routes_api(), endpoints->api_errors());
  router->mount("/inference/v2/endpoints", endpoints->routes_gateway(),
                endpoints->gateway_errors());
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
  // Uploads (images, model versions) go to disk, not RAM.
  so.streamed_body = [image_hook = images->streamed_body_hook("/image"),
                      model_hook = models->streamed_body_hook("/inference"),
                      backup_hook = databases->agent_streamed_body_hook("/agent/v1/database")](
                         http::Method method,
                         std::string_view raw_path) -> std::optional<http::StreamedBody> {
    if (auto spooled = image_hook(method, raw_path)) return spooled;
    if (backup_hook) {
      if (auto spooled = backup_hook(method, raw_path)) return spooled;
    }
    return model_hook(method, raw_path);
  };
  http::Server server(so, router, metrics);
  CONCORD_RETURN_IF_ERROR(server.start());

  std::string url = public_url(c, server.port());
  if (bootstrap) CONCORD_RETURN_IF_ERROR(bootstrap_identity(*ids, c, url));

  CONCORD_RETURN_IF_ERROR(compute->start());
  std::string local_url = "http://" + so.bind_address + ":" + std::to_string(server.port());

  CONCORD_ASSIGN_OR_RETURN(
      std::string service_project,
      ids->ensure_project("service", "Concord's own resources (inference endpoint replicas)"));
  inference::placement::ComputeReplicaOptions replica_options;
  replica_options.service_project_id = service_project;
  replica_options.service_user_id = "concord-inference";  // a system actor, not a Keystone user
  replicas.attach(std::make_unique<inference::placement::ComputeReplicaBackend>(
      compute->context(), std::move(replica_options)));
  // Database instances are servers of the same project; a system actor, not a Keystone user.
  databases->attach_service_project(service_project, "concord-database");
  CONCORD_RETURN_IF_ERROR(endpoints->start());

  // all-in-one: one agent in-process, talking to this server over HTTP like any other host.
  std::unique_ptr<agent::Agent> local_agent;
  if (bootstrap && c.boolean("agent.enabled")) {
    CONCORD_ASSIGN_OR_RETURN(agent::AgentOptions ao, agent_options(c, local_url, ""));
    ao.credential = compute::agent_credential(compute_opts.agent_key, ao.host);
    CONCORD_ASSIGN_OR_RETURN(local_agent, agent::Agent::create(std::move(ao)));
    CONCORD_RETURN_IF_ERROR(local_agent->start());
  }

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
  if (local_agent) local_agent->stop();
  server.stop();
  endpoints->stop();
  compute->stop();
  return ok();
}

Status run_agent_credential(const config::Config& c, const std::string& host) {
  if (host.empty() || host.size() > 255) {
    return fail(Code::kInvalidArgument, "a host name of 1 to 255 characters is needed");
  }
  CONCORD_ASSIGN_OR_RETURN(std::string key, agent_key(c));
  std::printf("%s\n", compute::agent_credential(key, host).c_str());
  return ok();
}

Status run_agent(const config::Config& c) {
  if (c.str("agent.server_url").empty() || c.str("agent.credential").empty()) {
    return fail(Code::kInvalidArgument,
                "concord agent needs --agent.server_url and --agent.credential (from "
                "`concord agent-credential <host>` on the server)");
  }
  sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::string url = c.str("agent.server_url");
  while (!url.empty() && url.back() == '/') url.pop_back();
  CONCORD_ASSIGN_OR_RETURN(agent::AgentOptions ao,
                           agent_options(c, url, c.str("agent.credential")));
  std::string host = ao.host;
  CONCORD_ASSIGN_OR_RETURN(auto a, agent::Agent::create(std::move(ao)));
  CONCORD_RETURN_IF_ERROR(a->start());
  logger("cmd")->info("agent for host {} running against {}", host, url);
  int sig = 0;
  sigwait(&signals, &sig);
  logger("cmd")->info("signal {} received, stopping the agent (instances keep running)", sig);
  a->stop();
  return ok();
}

}  // namespace concord::cmd

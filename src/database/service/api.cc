// The Trove v1.0 API (/database/v1.0/{project_id}/...): the request frame (token, project
// check, policy, error format), the version documents and the route table. The handlers live
// in api_datastores.cc, api_instances.cc and api_access.cc. See database_service.h.
#include "database/service/api_internal.h"

namespace concord::database::service {

http::Response trove_error(int status, std::string_view message) {
  Json body = {
      {std::string(fault_name(status)), {{"message", sanitize_utf8(message)}, {"code", status}}}};
  return Response::json(status, dump_json(body));
}

void DatabaseService::Impl::add(Method method, const std::string& pattern, Handler handler,
                                std::string rule) {
  routes_->add(
      method, "/v1.0/{project_id}" + pattern,
      [this, handler, rule](Request& req) { return run(req, handler, rule); },
      "database:" + std::string(http::method_name(method)) + " /v1.0/{project_id}" + pattern);
}

void DatabaseService::Impl::add_applied(Method method, const std::string& pattern, Handler handler,
                                        std::string rule) {
  routes_->add_deferred(
      method, "/v1.0/{project_id}" + pattern,
      [this, handler, rule](Request& req, http::Responder respond) {
        std::pair<std::string, int64_t> changed;
        LateAnswer late;
        Response response = run(req, handler, rule, &changed, &late);
        if (response.status >= 300 || changed.first.empty() || options_.apply_wait.count() <= 0) {
          respond(std::move(response));
          return;
        }
        std::lock_guard lock(wait_mu_);
        if (stopping_) {
          respond(std::move(response));
          return;
        }
        pending_.push_back({changed.first, changed.second, std::move(response), std::move(late),
                            std::move(respond),
                            std::chrono::steady_clock::now() + options_.apply_wait});
        wait_cv_.notify_one();
      },
      "database:" + std::string(http::method_name(method)) + " /v1.0/{project_id}" + pattern);
}

void DatabaseService::Impl::watch_applies() {
  // Polls compute (one list of the service project's servers per round, for every waiting call)
  // instead of hooking into agent reports: the wait is a convenience for clients, bounded, and
  // rare (changes of users, databases and root), so 50 ms of latency and a cheap query beat a
  // coupling between compute's report path and this service.
  constexpr auto kInterval = std::chrono::milliseconds(50);
  std::unique_lock lock(wait_mu_);
  while (true) {
    wait_cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (stopping_) break;
    lock.unlock();
    auto live = servers();  // on a store error, only deadlines end waits this round
    lock.lock();
    const auto now = std::chrono::steady_clock::now();
    std::vector<PendingApply> done;
    for (auto it = pending_.begin(); it != pending_.end();) {
      bool finished = now >= it->deadline || (it->late.done && it->late.done());
      if (!finished && live) {
        auto s = live->find(it->instance_id);
        finished = s == live->end() || s->second.status == "ERROR" ||
                   (s->second.converged && state_revision_of(s->second) >= it->revision);
      }
      if (finished) {
        done.push_back(std::move(*it));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    for (PendingApply& p : done) p.respond(p.late.render ? p.late.render() : std::move(p.response));
    lock.lock();
    if (!pending_.empty()) wait_cv_.wait_for(lock, kInterval, [&] { return stopping_; });
  }
  // Shutting down: everyone waiting gets the answer the change already earned.
  std::vector<PendingApply> rest = std::move(pending_);
  pending_.clear();
  lock.unlock();
  for (PendingApply& p : rest) p.respond(p.late.render ? p.late.render() : std::move(p.response));
}

DatabaseService::Impl::~Impl() {
  {
    std::lock_guard lock(wait_mu_);
    stopping_ = true;
  }
  wait_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  stop_operations();
  stop_ha();
  stop_endpoints();
}

Response DatabaseService::Impl::error(const Request& req, const Error& e) {
  int status = status_of(e.code());
  if (status >= 500) {
    logger("database")
        ->error("{} {} failed: {} request_id={}", http::method_name(req.method),
                sanitize_utf8(req.path), e.to_string(), req.request_id);
  }
  return trove_error(status, e.message());
}

Response DatabaseService::Impl::run(Request& req, Handler handler, const std::string& rule,
                                    std::pair<std::string, int64_t>* changed, LateAnswer* late) {
  try {
    std::string_view token = req.header("x-auth-token");
    if (token.empty()) {
      return trove_error(401, "Authentication required: send a token in X-Auth-Token.");
    }
    auto caller = identity_.authenticate(token);
    if (!caller) {
      if (caller.error().code() != Code::kUnauthenticated) return error(req, caller.error());
      return trove_error(401, "The token is not valid: " + caller.error().message());
    }
    for (const std::string& p : req.params) {
      if (p.find('\0') != std::string::npos || sanitize_utf8(p) != p || p.size() > 255) {
        return trove_error(404, "The resource could not be found.");
      }
    }
    // Trove's tenant check: the path's project must be the token's.
    if (caller->project_id.empty() || req.params.at(0) != caller->project_id) {
      return trove_error(
          403, "User with tenant id " + caller->project_id + " cannot access this resource.");
    }
    identity::Target target;
    target.project_id = caller->project_id;
    if (auto allowed = identity_.authorize(*caller, rule, target); !allowed) {
      if (allowed.error().code() == Code::kPermissionDenied) {
        return trove_error(403, rule == "project_member"
                                    ? "The member role on the project is needed to change "
                                      "database instances."
                                    : "The reader role on the project is needed to read "
                                      "database instances.");
      }
      return error(req, allowed.error());
    }
    Call call{req, std::move(*caller)};
    auto response = (this->*handler)(call);
    if (!response) return error(req, response.error());
    if (changed) *changed = {call.changed_instance, call.changed_revision};
    if (late) *late = std::move(call.late);
    return std::move(*response);
  } catch (const std::exception& e) {
    logger("database")
        ->error("unexpected exception: {} {} request_id={} what={}", http::method_name(req.method),
                sanitize_utf8(req.path), req.request_id, e.what());
    return trove_error(500, "Internal error; the request id is " + req.request_id + ".");
  }
}

std::string DatabaseService::Impl::base(const Call& c) const {
  std::string origin = c.req.base_url;
  if (!options_.public_url.empty()) {
    origin = options_.public_url;
    while (origin.ends_with('/')) origin.pop_back();
    origin += options_.prefix;
  }
  return origin + "/v1.0/" + c.caller.project_id;
}

Json DatabaseService::Impl::links(const Call& c, const std::string& collection,
                                  const std::string& id) const {
  const std::string href = base(c) + "/" + collection + "/" + id;
  return Json::array({{{"href", href}, {"rel", "self"}}, {{"href", href}, {"rel", "bookmark"}}});
}

std::pair<std::string, std::string> DatabaseService::Impl::service_actor() {
  std::lock_guard lock(mu_);
  return {service_project_, service_user_};
}

Json DatabaseService::Impl::version_doc(const Request& req) const {
  return {{"id", "v1.0"},
          {"status", "CURRENT"},
          {"updated", "2012-08-01T00:00:00Z"},
          {"links", Json::array({{{"href", req.base_url + "/v1.0/"}, {"rel", "self"}}})}};
}

void DatabaseService::Impl::build_routes() {
  routes_->add(
      Method::kGet, "",
      [this](Request& req) {
        return Response::json(200, dump_json({{"versions", Json::array({version_doc(req)})}}));
      },
      "database:GET /");
  routes_->add(
      Method::kGet, "/v1.0",
      [this](Request& req) {
        Json v = version_doc(req);
        v["links"][0]["href"] = req.base_url + "/";
        return Response::json(200, dump_json({{"version", v}}));
      },
      "database:GET /v1.0");
  const std::string r = "project_reader", m = "project_member";
  add(Method::kGet, "/datastores", &Impl::list_datastores, r);
  add(Method::kGet, "/datastores/versions/{version_id}", &Impl::show_version_by_id, r);
  add(Method::kGet, "/datastores/{datastore}", &Impl::show_datastore, r);
  add(Method::kGet, "/datastores/{datastore}/versions", &Impl::list_versions, r);
  add(Method::kGet, "/datastores/{datastore}/versions/{version}", &Impl::show_version, r);
  add(Method::kDelete, "/datastores/{datastore}", &Impl::delete_datastore, "admin");
  add(Method::kGet, "/mgmt/datastore-versions", &Impl::mgmt_list_versions, "admin");
  add(Method::kPost, "/mgmt/datastore-versions", &Impl::mgmt_create_version, "admin");
  add(Method::kGet, "/mgmt/datastore-versions/{version_id}", &Impl::mgmt_show_version, "admin");
  add(Method::kPatch, "/mgmt/datastore-versions/{version_id}", &Impl::mgmt_update_version, "admin");
  add(Method::kDelete, "/mgmt/datastore-versions/{version_id}", &Impl::mgmt_delete_version,
      "admin");
  add(Method::kGet, "/flavors", &Impl::list_flavors, r);
  add(Method::kGet, "/flavors/{flavor_id}", &Impl::show_flavor, r);
  add(Method::kPost, "/instances", &Impl::create_instance, m);
  add(Method::kGet, "/instances", &Impl::list_instances, r);
  add(Method::kGet, "/instances/detail", &Impl::list_instances, r);
  add(Method::kGet, "/instances/{id}", &Impl::show_instance, r);
  add(Method::kGet, "/mgmt/instances", &Impl::mgmt_list_instances, "admin");
  add(Method::kGet, "/mgmt/instances/{id}", &Impl::mgmt_show_instance, "admin");
  add_applied(Method::kPatch, "/instances/{id}", &Impl::update_instance, m);
  add_applied(Method::kPut, "/instances/{id}", &Impl::update_instance, m);
  add(Method::kDelete, "/instances/{id}", &Impl::delete_instance, m);
  add(Method::kPost, "/instances/{id}/action", &Impl::action, m);
  add_applied(Method::kPost, "/instances/{id}/root", &Impl::enable_root, m);
  add(Method::kGet, "/instances/{id}/root", &Impl::show_root, r);
  add_applied(Method::kDelete, "/instances/{id}/root", &Impl::disable_root, m);
  add(Method::kGet, "/instances/{id}/databases", &Impl::list_databases, r);
  add_applied(Method::kPost, "/instances/{id}/databases", &Impl::create_databases, m);
  add_applied(Method::kDelete, "/instances/{id}/databases/{name}", &Impl::delete_database, m);
  add(Method::kGet, "/instances/{id}/users", &Impl::list_users, r);
  add_applied(Method::kPost, "/instances/{id}/users", &Impl::create_users, m);
  add_applied(Method::kPut, "/instances/{id}/users", &Impl::change_passwords, m);
  add(Method::kGet, "/instances/{id}/users/{user}", &Impl::show_user, r);
  add_applied(Method::kPut, "/instances/{id}/users/{user}", &Impl::update_user, m);
  add_applied(Method::kDelete, "/instances/{id}/users/{user}", &Impl::delete_user, m);
  add(Method::kGet, "/instances/{id}/users/{user}/databases", &Impl::list_access, r);
  add_applied(Method::kPut, "/instances/{id}/users/{user}/databases", &Impl::grant_access, m);
  add_applied(Method::kDelete, "/instances/{id}/users/{user}/databases/{name}",
              &Impl::revoke_access, m);
  add_configuration_routes();
  add_backup_routes();
  add_quota_routes();
  add_operations_routes();
  add_log_routes();
}

Result<std::unique_ptr<DatabaseService>> DatabaseService::create(
    store::Store& store, const Clock& clock, identity::IdentityService& identity,
    compute::ComputeContext& compute, DatabaseOptions options) {
  const std::string& pool = options.address_pool;
  size_t slash = pool.find('/');
  std::optional<uint32_t> net = parse_ip(std::string_view(pool).substr(0, slash));
  int bits = -1;
  if (slash != std::string::npos && slash + 1 < pool.size() && pool.size() - slash <= 3) {
    bits = 0;
    for (char ch : pool.substr(slash + 1)) {
      if (!std::isdigit(static_cast<unsigned char>(ch))) bits = -1;
      if (bits >= 0) bits = bits * 10 + (ch - '0');
    }
  }
  if (!net || bits < 8 || bits > 30) {
    return fail(Code::kInvalidArgument,
                "database.address_pool must be an IPv4 CIDR from /8 to "
                "/30, such as 127.77.0.0/16 (got '" +
                    sanitize_utf8(pool) + "')");
  }
  const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  const uint32_t first = (*net & mask) + 1;         // not the network address
  const uint32_t last = (*net & mask) + ~mask - 1;  // not the broadcast address
  for (int port : {options.port_postgresql, options.port_mariadb}) {
    if (port < 1 || port > 65535) {
      return fail(Code::kInvalidArgument, "database ports must be 1 to 65535");
    }
  }
  if (options.max_volume_gb < 1) {
    return fail(Code::kInvalidArgument, "database.max_volume_gb must be at least 1");
  }
  auto impl =
      std::make_unique<Impl>(store, clock, identity, compute, std::move(options), first, last);
  return std::unique_ptr<DatabaseService>(new DatabaseService(std::move(impl)));
}

DatabaseService::DatabaseService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DatabaseService::~DatabaseService() = default;

void DatabaseService::register_metrics(http::Registry& registry) {
  impl_->register_metrics(registry);
}

void DatabaseService::attach_service_project(std::string project_id, std::string user_id) {
  impl_->attach(std::move(project_id), std::move(user_id));
}

std::shared_ptr<http::RouteTable> DatabaseService::routes() const {
  return impl_->routes();
}

}  // namespace concord::database::service

#include "compute/service/compute_service.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/encoding.h"
#include "compute/service/agent_api.h"
#include "compute/service/api.h"

namespace concord::compute {

class ComputeService::Impl {
 public:
  explicit Impl(ComputeContext c) : ctx(std::move(c)), api(ctx), controller(ctx) {}
  ComputeContext ctx;
  NovaApi api;
  std::shared_ptr<http::RouteTable> agent;
  Controller controller;
};

Result<std::unique_ptr<ComputeService>> ComputeService::create(ComputeContext ctx) {
  auto impl = std::make_unique<Impl>(std::move(ctx));
  add_version_routes(impl->api);
  add_flavor_routes(impl->api);
  add_keypair_routes(impl->api);
  add_quota_routes(impl->api);
  add_misc_routes(impl->api);
  add_server_routes(impl->api);
  add_admin_routes(impl->api);
  add_proxy_routes(impl->api);
  impl->agent = make_agent_routes(impl->ctx);
  return std::unique_ptr<ComputeService>(new ComputeService(std::move(impl)));
}

ComputeService::ComputeService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ComputeService::~ComputeService() {
  stop();
}

std::shared_ptr<http::RouteTable> ComputeService::routes() const {
  return impl_->api.table();
}
http::Response ComputeService::error(int status, std::string_view message) {
  http::Response r = nova_error(status, message);
  add_version_headers(r, kMinVersion);
  return r;
}
const std::vector<RouteInfo>& ComputeService::route_infos() const {
  return impl_->api.infos();
}
std::shared_ptr<http::RouteTable> ComputeService::agent_routes() const {
  return impl_->agent;
}
Status ComputeService::start() {
  impl_->controller.start();
  return ok();
}
void ComputeService::stop() {
  impl_->controller.stop();
}
Status ComputeService::reconcile_once() {
  return impl_->controller.reconcile_once();
}
ComputeContext& ComputeService::context() {
  return impl_->ctx;
}

std::string agent_credential(std::string_view agent_key, std::string_view host) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), agent_key.data(), static_cast<int>(agent_key.size()),
       reinterpret_cast<const unsigned char*>(host.data()), host.size(), mac, &len);
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), len), false);
}

}  // namespace concord::compute

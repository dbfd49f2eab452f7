// Version discovery (GET /, GET /v2.1): public, as Nova's. openstacksdk discovers the
// microversion range with GET /v2.1; Tempest's test_versions checks both documents' shapes.
#include <nlohmann/json.hpp>

#include "compute/service/api.h"

namespace concord::compute {
namespace {

// The dates Nova publishes for its two API versions (clients only display them).
constexpr const char* kV20Updated = "2011-01-21T11:33:21Z";
constexpr const char* kV21Updated = "2013-07-23T11:33:21Z";

Json v21_summary(const NovaApi::Call& call) {
  return {{"id", "v2.1"},
          {"status", "CURRENT"},
          {"version", kMaxVersion.str()},
          {"min_version", kMinVersion.str()},
          {"updated", kV21Updated},
          {"links", Json::array({{{"rel", "self"}, {"href", call.req.base_url + "/v2.1/"}}})}};
}

}  // namespace

void add_version_routes(NovaApi& api) {
  api.add_public(http::Method::kGet, "/", [](NovaApi::Call& call) -> Result<http::Response> {
    Json v20 = {{"id", "v2.0"},
                {"status", "SUPPORTED"},
                {"version", ""},
                {"min_version", ""},
                {"updated", kV20Updated},
                {"links", Json::array({{{"rel", "self"}, {"href", call.req.base_url + "/v2/"}}})}};
    Json body = {{"versions", Json::array({v20, v21_summary(call)})}};
    return http::Response::json(200, dump_json(body));
  });
  // The router ignores one trailing slash, so this also serves "/v2.1/".
  api.add_public(http::Method::kGet, "/v2.1", [](NovaApi::Call& call) -> Result<http::Response> {
    Json v = v21_summary(call);
    v["links"].push_back(
        {{"rel", "describedby"}, {"type", "text/html"}, {"href", "http://docs.openstack.org/"}});
    v["media-types"] =
        Json::array({{{"base", "application/json"},
                      {"type", "application/vnd.openstack.compute+json;version=2.1"}}});
    return http::Response::json(200, dump_json(Json{{"version", v}}));
  });
}

}  // namespace concord::compute

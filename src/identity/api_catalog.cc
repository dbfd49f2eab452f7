// Regions, services and endpoints (the catalog's source).
#include <nlohmann/json.hpp>

#include "base/random.h"
#include "identity/api.h"
#include "identity/json_input.h"
#include "identity/repository.h"

namespace concord::identity {

using api::collection;
using api::conflict;
using api::json;
using api::not_found;
using http::Method;

namespace {

const input::StrRule kNullable{.nullable = true};
const input::StrRule kRegionId{.min_len = 1, .max_len = 255};
const input::StrRule kServiceType{.min_len = 1, .max_len = 255};
const input::StrRule kServiceName{.min_len = 1, .max_len = 255, .non_blank = true};

// Keystone's url parameter type: up to 225 characters matching ^[a-zA-Z0-9+.-]+:.+
Status check_url(const std::string& url) {
  size_t colon = url.find(':');
  bool scheme_ok = colon != std::string::npos && colon > 0 && colon + 1 < url.size();
  for (size_t i = 0; scheme_ok && i < colon; ++i) {
    char ch = url[i];
    scheme_ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '+' || ch == '.' || ch == '-';
  }
  if (!scheme_ok)
    return input::invalid(
        "url", "'" + sanitize_utf8(url.substr(0, 80)) + "' does not match '^[a-zA-Z0-9+.-]+:.+'");
  return ok();
}

Status check_interface(const std::string& i) {
  if (i == "public" || i == "internal" || i == "admin") return ok();
  return input::invalid("interface", "'" + sanitize_utf8(i.substr(0, 80)) +
                                         "' is not one of ['admin', 'internal', 'public']");
}

}  // namespace

void Api::add_catalog_routes() {
  add(Method::kGet, "/v3/regions", "identity:list_regions",
      [this](Call& c) { return list_regions(c); });
  add(Method::kPost, "/v3/regions", "identity:create_region",
      [this](Call& c) { return create_region(c); });
  add(Method::kGet, "/v3/regions/{region_id}", "identity:get_region",
      [this](Call& c) { return get_region(c); });
  add(Method::kPut, "/v3/regions/{region_id}", "identity:create_region",
      [this](Call& c) { return put_region(c); });
  add(Method::kPatch, "/v3/regions/{region_id}", "identity:update_region",
      [this](Call& c) { return update_region(c); });
  add(Method::kDelete, "/v3/regions/{region_id}", "identity:delete_region",
      [this](Call& c) { return delete_region(c); });

  add(Method::kGet, "/v3/services", "identity:list_services",
      [this](Call& c) { return list_services(c); });
  add(Method::kPost, "/v3/services", "identity:create_service",
      [this](Call& c) { return create_service(c); });
  add(Method::kGet, "/v3/services/{service_id}", "identity:get_service",
      [this](Call& c) { return get_service(c); });
  add(Method::kPatch, "/v3/services/{service_id}", "identity:update_service",
      [this](Call& c) { return update_service(c); });
  add(Method::kDelete, "/v3/services/{service_id}", "identity:delete_service",
      [this](Call& c) { return delete_service(c); });

  add(Method::kGet, "/v3/endpoints", "identity:list_endpoints",
      [this](Call& c) { return list_endpoints(c); });
  add(Method::kPost, "/v3/endpoints", "identity:create_endpoint",
      [this](Call& c) { return create_endpoint(c); });
  add(Method::kGet, "/v3/endpoints/{endpoint_id}", "identity:get_endpoint",
      [this](Call& c) { return get_endpoint(c); });
  add(Method::kPatch, "/v3/endpoints/{endpoint_id}", "identity:update_endpoint",
      [this](Call& c) { return update_endpoint(c); });
  add(Method::kDelete, "/v3/endpoints/{endpoint_id}", "identity:delete_endpoint",
      [this](Call& c) { return delete_endpoint(c); });
}

// ---------------------------------------------------------------------------------------------
// Regions

Result<http::Response> Api::list_regions(Call& c) {
  auto parent = c.req.query_param("parent_region_id");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Region> regions, repo::list_regions(tx, parent));
    items = Json::array();
    for (const Region& r : regions) items.push_back(api::render_region(r, c));
    return ok();
  }));
  return json(200, collection(c, "regions", std::move(items)));
}

Status Api::create_region_impl(store::Tx& tx, WriteSet& ws, Region& r) {
  CONCORD_ASSIGN_OR_RETURN(auto dup, repo::get_region(tx, r.id));
  if (dup) return conflict("region", "Duplicate ID, " + r.id);
  if (!r.parent_region_id.empty()) {
    CONCORD_ASSIGN_OR_RETURN(auto parent, repo::get_region(tx, r.parent_region_id));
    if (!parent) return not_found("region", r.parent_region_id);
  }
  CONCORD_RETURN_IF_ERROR(repo::insert_region(tx, r, core_.now_us()));
  return ws.change(tx, kinds::kRegion, r.id, "create");
}

namespace {

Result<Region> region_from_body(const Json& body) {
  Region r;
  CONCORD_ASSIGN_OR_RETURN(input::Str id, input::string_field(body, "id", kRegionId));
  if (id.has_value()) r.id = id.value;
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  if (desc.has_value()) r.description = desc.value;
  CONCORD_ASSIGN_OR_RETURN(input::Str parent,
                           input::string_field(body, "parent_region_id", kNullable));
  if (parent.has_value()) r.parent_region_id = parent.value;
  api::merge_extra(r.extra, body, {"description", "parent_region_id"});
  return r;
}

}  // namespace

Result<http::Response> Api::create_region(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "region"));
  CONCORD_ASSIGN_OR_RETURN(Region r, region_from_body(body));
  if (r.id.empty()) r.id = new_hex_id();
  CONCORD_RETURN_IF_ERROR(core_.write(
      [&](store::Tx& tx, WriteSet& ws) -> Status { return create_region_impl(tx, ws, r); }));
  return json(201, {{"region", api::render_region(r, c)}});
}

Result<http::Response> Api::put_region(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "region"));
  CONCORD_ASSIGN_OR_RETURN(Region r, region_from_body(body));
  std::string path_id(c.param(0));
  if (input::utf8_length(path_id) > 255) return input::invalid("id", "is too long");
  if (!r.id.empty() && r.id != path_id) {
    return fail(Code::kInvalidArgument, "Conflicting region IDs specified: \"" +
                                            sanitize_utf8(path_id) + "\" != \"" + r.id + "\"");
  }
  r.id = path_id;
  CONCORD_RETURN_IF_ERROR(core_.write(
      [&](store::Tx& tx, WriteSet& ws) -> Status { return create_region_impl(tx, ws, r); }));
  return json(201, {{"region", api::render_region(r, c)}});
}

Result<http::Response> Api::get_region(Call& c) {
  return api::get_stored<Region>(core_, c, "region", repo::get_region, api::render_region);
}

Result<http::Response> Api::update_region(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "region"));
  if (body.empty()) return input::invalid("region", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(input::Str id, input::string_field(body, "id", kRegionId));
  if (id.has_value() && id.value != c.param(0)) {
    return fail(Code::kInvalidArgument, "Cannot change the ID of a region.");
  }
  CONCORD_ASSIGN_OR_RETURN(input::Str desc, input::string_field(body, "description", kNullable));
  CONCORD_ASSIGN_OR_RETURN(input::Str parent,
                           input::string_field(body, "parent_region_id", kNullable));
  Region r;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Region> found, repo::get_region(tx, c.param(0)));
    if (!found) return not_found("region", c.param(0));
    r = std::move(*found);
    if (desc.present) r.description = desc.null ? std::string() : desc.value;
    if (parent.present) {
      std::string new_parent = parent.null ? std::string() : parent.value;
      // Walk up from the new parent: meeting this region would make a cycle.
      std::string cur = new_parent;
      for (int depth = 0; !cur.empty() && depth < 1000; ++depth) {
        if (cur == r.id) {
          return fail(Code::kInvalidArgument, "The specified parent region " + new_parent +
                                                  " would cause a circular region hierarchy.");
        }
        CONCORD_ASSIGN_OR_RETURN(auto up, repo::get_region(tx, cur));
        if (!up) {
          if (cur == new_parent) return not_found("region", new_parent);
          break;
        }
        cur = up->parent_region_id;
      }
      r.parent_region_id = new_parent;
    }
    api::merge_extra(r.extra, body, {"description", "parent_region_id"});
    CONCORD_RETURN_IF_ERROR(repo::update_region(tx, r));
    return ws.change(tx, kinds::kRegion, r.id, "update");
  }));
  return json(200, {{"region", api::render_region(r, c)}});
}

Result<http::Response> Api::delete_region(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Region> found, repo::get_region(tx, c.param(0)));
    if (!found) return not_found("region", c.param(0));
    // The region and its descendants go together, unless any of them has endpoints.
    std::vector<std::string> doomed = {found->id};
    CONCORD_ASSIGN_OR_RETURN(std::vector<Region> all, repo::list_regions(tx, std::nullopt));
    for (size_t i = 0; i < doomed.size(); ++i) {
      for (const Region& r : all) {
        if (r.parent_region_id == doomed[i]) doomed.push_back(r.id);
      }
    }
    for (const std::string& id : doomed) {
      repo::EndpointFilter f;
      f.region_id = id;
      CONCORD_ASSIGN_OR_RETURN(std::vector<Endpoint> eps, repo::list_endpoints(tx, f));
      if (!eps.empty()) {
        return fail(Code::kFailedPrecondition,
                    "Unable to delete region " + found->id +
                        " because it or its child regions have associated endpoints.");
      }
    }
    for (auto it = doomed.rbegin(); it != doomed.rend(); ++it) {
      CONCORD_RETURN_IF_ERROR(repo::delete_region(tx, *it));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kRegion, *it, "delete"));
    }
    return ok();
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// Services

Result<http::Response> Api::list_services(Call& c) {
  repo::ServiceFilter f;
  f.type = c.req.query_param("type");
  f.name = c.req.query_param("name");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Service> services, repo::list_services(tx, f));
    items = Json::array();
    for (const Service& s : services) items.push_back(api::render_service(s, c));
    return ok();
  }));
  return json(200, collection(c, "services", std::move(items)));
}

Result<http::Response> Api::create_service(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "service"));
  Service s;
  s.id = new_hex_id();
  CONCORD_ASSIGN_OR_RETURN(s.type, input::required_string(body, "type", kServiceType));
  CONCORD_ASSIGN_OR_RETURN(input::Str name, input::string_field(body, "name", kServiceName));
  (void)name;
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  s.enabled = enabled.value_or(true);
  api::merge_extra(s.extra, body, {"type", "enabled"});
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_RETURN_IF_ERROR(repo::insert_service(tx, s, core_.now_us()));
    return ws.change(tx, kinds::kService, s.id, "create");
  }));
  return json(201, {{"service", api::render_service(s, c)}});
}

Result<http::Response> Api::get_service(Call& c) {
  return api::get_stored<Service>(core_, c, "service", repo::get_service, api::render_service);
}

Result<http::Response> Api::update_service(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "service"));
  if (body.empty()) return input::invalid("service", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(input::Str type, input::string_field(body, "type", kServiceType));
  CONCORD_ASSIGN_OR_RETURN(input::Str name, input::string_field(body, "name", kServiceName));
  (void)name;
  CONCORD_ASSIGN_OR_RETURN(std::optional<bool> enabled, input::bool_field(body, "enabled"));
  CONCORD_ASSIGN_OR_RETURN(input::Str id, input::string_field(body, "id"));
  if (id.has_value() && id.value != c.param(0)) {
    return fail(Code::kInvalidArgument, "Cannot change the ID of a service.");
  }
  Service s;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Service> found, repo::get_service(tx, c.param(0)));
    if (!found) return not_found("service", c.param(0));
    s = std::move(*found);
    if (type.has_value()) s.type = type.value;
    if (enabled) s.enabled = *enabled;
    api::merge_extra(s.extra, body, {"type", "enabled"});
    CONCORD_RETURN_IF_ERROR(repo::update_service(tx, s));
    return ws.change(tx, kinds::kService, s.id, "update");
  }));
  return json(200, {{"service", api::render_service(s, c)}});
}

Result<http::Response> Api::delete_service(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_RETURN_IF_ERROR(repo::delete_service(tx, c.param(0)));
    return ws.change(tx, kinds::kService, c.param(0), "delete");
  }));
  return http::Response::empty(204);
}

// ---------------------------------------------------------------------------------------------
// Endpoints

Result<http::Response> Api::list_endpoints(Call& c) {
  repo::EndpointFilter f;
  f.service_id = c.req.query_param("service_id");
  f.interface = c.req.query_param("interface");
  f.region_id = c.req.query_param("region_id");
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Endpoint> eps, repo::list_endpoints(tx, f));
    items = Json::array();
    for (const Endpoint& e : eps) items.push_back(api::render_endpoint(e, c));
    return ok();
  }));
  return json(200, collection(c, "endpoints", std::move(items)));
}

namespace {

struct EndpointInput {
  input::Str interface, service_id, url, region_id, region;
  std::optional<bool> enabled;
};

Result<EndpointInput> endpoint_input(const Json& body) {
  EndpointInput in;
  CONCORD_ASSIGN_OR_RETURN(in.interface, input::string_field(body, "interface"));
  if (in.interface.present) CONCORD_RETURN_IF_ERROR(check_interface(in.interface.value));
  CONCORD_ASSIGN_OR_RETURN(in.service_id, input::string_field(body, "service_id"));
  CONCORD_ASSIGN_OR_RETURN(in.url, input::string_field(body, "url", {.max_len = 225}));
  if (in.url.present) CONCORD_RETURN_IF_ERROR(check_url(in.url.value));
  CONCORD_ASSIGN_OR_RETURN(in.region_id, input::string_field(body, "region_id", kNullable));
  CONCORD_ASSIGN_OR_RETURN(in.region, input::string_field(body, "region", kNullable));
  CONCORD_ASSIGN_OR_RETURN(in.enabled, input::bool_field(body, "enabled"));
  return in;
}

// Keystone: region_id must exist; the legacy `region` creates the region when missing.
Status resolve_endpoint_region(store::Tx& tx, WriteSet& ws, const EndpointInput& in, Endpoint& e,
                               int64_t now_us) {
  if (in.region_id.has_value()) {
    CONCORD_ASSIGN_OR_RETURN(auto r, repo::get_region(tx, in.region_id.value));
    if (!r) {
      return fail(Code::kInvalidArgument, "Expecting to find endpoint region_id in region table.");
    }
    e.region_id = in.region_id.value;
  } else if (in.region.has_value()) {
    CONCORD_ASSIGN_OR_RETURN(auto r, repo::get_region(tx, in.region.value));
    if (!r) {
      if (input::utf8_length(in.region.value) > 255) {
        return input::invalid("region", "is too long (at most 255 characters)");
      }
      Region created;
      created.id = in.region.value;
      CONCORD_RETURN_IF_ERROR(repo::insert_region(tx, created, now_us));
      CONCORD_RETURN_IF_ERROR(ws.change(tx, kinds::kRegion, created.id, "create"));
    }
    e.region_id = in.region.value;
  } else if (in.region_id.present || in.region.present) {
    e.region_id.clear();  // explicit null
  }
  return ok();
}

}  // namespace

Result<http::Response> Api::create_endpoint(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "endpoint"));
  CONCORD_ASSIGN_OR_RETURN(EndpointInput in, endpoint_input(body));
  if (!in.interface.has_value())
    return input::invalid("interface", "'interface' is a required property");
  if (!in.service_id.has_value()) {
    return input::invalid("service_id", "'service_id' is a required property");
  }
  if (!in.url.has_value()) return input::invalid("url", "'url' is a required property");
  Endpoint e;
  e.id = new_hex_id();
  e.interface = in.interface.value;
  e.service_id = in.service_id.value;
  e.url = in.url.value;
  e.enabled = in.enabled.value_or(true);
  api::merge_extra(
      e.extra, body,
      {"interface", "service_id", "url", "region_id", "region", "enabled", "legacy_endpoint_id"});
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_RETURN_IF_ERROR(resolve_endpoint_region(tx, ws, in, e, core_.now_us()));
    CONCORD_ASSIGN_OR_RETURN(auto service, repo::get_service(tx, e.service_id));
    if (!service) {
      return fail(Code::kInvalidArgument,
                  "Expecting to find endpoint service_id in service table.");
    }
    CONCORD_RETURN_IF_ERROR(repo::insert_endpoint(tx, e, core_.now_us()));
    return ws.change(tx, kinds::kEndpoint, e.id, "create");
  }));
  return json(201, {{"endpoint", api::render_endpoint(e, c)}});
}

Result<http::Response> Api::get_endpoint(Call& c) {
  return api::get_stored<Endpoint>(core_, c, "endpoint", repo::get_endpoint, api::render_endpoint);
}

Result<http::Response> Api::update_endpoint(Call& c) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, "endpoint"));
  if (body.empty()) return input::invalid("endpoint", "{} does not have enough properties");
  CONCORD_ASSIGN_OR_RETURN(EndpointInput in, endpoint_input(body));
  CONCORD_ASSIGN_OR_RETURN(input::Str id, input::string_field(body, "id"));
  if (id.has_value() && id.value != c.param(0)) {
    return fail(Code::kInvalidArgument, "Cannot change the ID of an endpoint.");
  }
  Endpoint e;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Endpoint> found, repo::get_endpoint(tx, c.param(0)));
    if (!found) return not_found("endpoint", c.param(0));
    e = std::move(*found);
    if (in.interface.has_value()) e.interface = in.interface.value;
    if (in.url.has_value()) e.url = in.url.value;
    if (in.enabled) e.enabled = *in.enabled;
    if (in.service_id.has_value()) {
      CONCORD_ASSIGN_OR_RETURN(auto service, repo::get_service(tx, in.service_id.value));
      if (!service) {
        return fail(Code::kInvalidArgument,
                    "Expecting to find endpoint service_id in service table.");
      }
      e.service_id = in.service_id.value;
    }
    CONCORD_RETURN_IF_ERROR(resolve_endpoint_region(tx, ws, in, e, core_.now_us()));
    api::merge_extra(
        e.extra, body,
        {"interface", "service_id", "url", "region_id", "region", "enabled", "legacy_endpoint_id"});
    CONCORD_RETURN_IF_ERROR(repo::update_endpoint(tx, e));
    return ws.change(tx, kinds::kEndpoint, e.id, "update");
  }));
  return json(200, {{"endpoint", api::render_endpoint(e, c)}});
}

Result<http::Response> Api::delete_endpoint(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_RETURN_IF_ERROR(repo::delete_endpoint(tx, c.param(0)));
    return ws.change(tx, kinds::kEndpoint, c.param(0), "delete");
  }));
  return http::Response::empty(204);
}

}  // namespace concord::identity

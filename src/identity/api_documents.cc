// Keystone resources that Concord stores whole and does not interpret: policy blobs
// (/v3/policies), generic credentials (/v3/credentials), OAuth1 consumers
// (/v3/OS-OAUTH1/consumers) and endpoint groups (/v3/OS-EP-FILTER/endpoint_groups). They share
// one table (identity_documents) and one set of handlers; a DocKind says what differs: the JSON
// keys, the URL, how a body is validated and how ids are made.
#include <openssl/evp.h>

#include <array>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/random.h"
#include "identity/api.h"
#include "identity/json_input.h"
#include "identity/repository.h"

namespace concord::identity {

using http::Method;
using namespace api;

namespace {

constexpr input::StrRule kShortString{.max_len = 255};
constexpr input::StrRule kNullableString{.nullable = true};

// Copies the string members named in `fields` from body to data (null removes the member).
Status copy_strings(const Json& body, Json& data, std::initializer_list<std::string_view> fields,
                    const input::StrRule& rule) {
  for (std::string_view f : fields) {
    CONCORD_ASSIGN_OR_RETURN(input::Str s, input::string_field(body, f, rule));
    if (!s.present) continue;
    if (s.null) {
      data.erase(std::string(f));
    } else {
      data[std::string(f)] = s.value;
    }
  }
  return ok();
}

void copy_unknown(const Json& body, Json& data, std::initializer_list<std::string_view> known) {
  for (auto it = body.begin(); it != body.end(); ++it) {
    bool skip = it.key() == "id" || it.key() == "links";
    for (std::string_view k : known) skip = skip || it.key() == k;
    if (!skip) data[it.key()] = it.value();
  }
}

std::string sha256_hex(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), digest.data(), &len, EVP_sha256(), nullptr) != 1) {
    return {};
  }
  return hex_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), len));
}

// ---- per-kind validation. `current` is nullptr on create. ----

Result<Json> policy_fields(const Json& body, const Json* current) {
  Json data = current != nullptr ? *current : Json::object();
  if (current == nullptr) {
    CONCORD_ASSIGN_OR_RETURN(std::string blob, input::required_string(body, "blob"));
    CONCORD_ASSIGN_OR_RETURN(std::string type, input::required_string(body, "type", kShortString));
    (void)blob;
    (void)type;
  }
  CONCORD_RETURN_IF_ERROR(copy_strings(body, data, {"blob"}, {}));
  CONCORD_RETURN_IF_ERROR(copy_strings(body, data, {"type"}, kShortString));
  copy_unknown(body, data, {"blob", "type"});
  return data;
}

Result<Json> credential_fields(const Json& body, const Json* current) {
  Json data = current != nullptr ? *current : Json::object();
  if (current == nullptr) {
    CONCORD_ASSIGN_OR_RETURN(std::string blob, input::required_string(body, "blob"));
    CONCORD_ASSIGN_OR_RETURN(std::string type, input::required_string(body, "type"));
    CONCORD_ASSIGN_OR_RETURN(std::string user, input::required_string(body, "user_id"));
    (void)blob;
    (void)user;
    if (type == "ec2" && !body.contains("project_id")) {
      return input::invalid("credential", "'project_id' is a required property");
    }
  }
  CONCORD_RETURN_IF_ERROR(copy_strings(body, data, {"blob", "type", "user_id"}, {}));
  CONCORD_RETURN_IF_ERROR(copy_strings(body, data, {"project_id"}, kNullableString));
  copy_unknown(body, data, {"blob", "type", "user_id", "project_id"});
  std::string type = data.value("type", "");
  if (type == "ec2") {
    // Keystone keys EC2 credentials by their access key, so the blob must name one.
    auto blob = parse_json(data.value("blob", ""));
    if (!blob || !blob->is_object() || blob->empty()) {
      return fail(Code::kInvalidArgument, "Invalid blob in credential");
    }
    auto access = blob->find("access");
    if (access == blob->end() || !access->is_string()) {
      return fail(Code::kInvalidArgument,
                  "Expecting to find access in credential. The server could not comply with the "
                  "request since it is either malformed or otherwise incorrect. The client is "
                  "assumed to be in error.");
    }
  }
  return data;
}

Result<Json> consumer_fields(const Json& body, const Json* current) {
  Json data = current != nullptr ? *current : Json::object();
  if (current != nullptr && body.contains("secret")) {
    return input::invalid("consumer", "Additional properties are not allowed ('secret')");
  }
  CONCORD_RETURN_IF_ERROR(copy_strings(body, data, {"description"}, kNullableString));
  copy_unknown(body, data, {"description", "secret"});
  if (!data.contains("description")) data["description"] = nullptr;
  return data;
}

Result<Json> endpoint_group_fields(const Json& body, const Json* current) {
  Json data = current != nullptr ? *current : Json::object();
  if (current == nullptr) {
    CONCORD_ASSIGN_OR_RETURN(std::string name, input::required_string(body, "name"));
    (void)name;
    if (!body.contains("filters")) return input::invalid("filters", "is a required property");
  }
  CONCORD_RETURN_IF_ERROR(copy_strings(body, data, {"name"}, {.min_len = 1, .max_len = 255}));
  CONCORD_RETURN_IF_ERROR(copy_strings(body, data, {"description"}, kNullableString));
  if (auto it = body.find("filters"); it != body.end()) {
    if (!it->is_object() || it->empty()) {
      return input::invalid("filters", "must be an object with at least one filter");
    }
    for (auto f = it->begin(); f != it->end(); ++f) {
      // Keystone's valid endpoint filters.
      if (f.key() != "interface" && f.key() != "service_id" && f.key() != "region_id") {
        return input::invalid("filters", "'" + sanitize_utf8(f.key()) +
                                             "' is not one of interface, service_id, region_id");
      }
      if (!f->is_string()) return input::invalid("filters", "values must be strings");
    }
    data["filters"] = *it;
  }
  copy_unknown(body, data, {"name", "description", "filters"});
  if (!data.contains("description")) data["description"] = nullptr;
  return data;
}

}  // namespace

struct Api::DocKind {
  std::string_view kind;        // documents::k*
  std::string_view key;         // the body's wrapper: "policy"
  std::string_view collection;  // the list's key: "policies"
  std::string_view path;        // below /v3/, for links
  std::string_view what;        // in "Could not find <what>: <id>."
  std::function<Result<Json>(const Json& body, const Json* current)> fields;
  // Query parameters a list filters on (exact match of a string member).
  std::vector<std::string_view> filters;
};

namespace {
const Api::DocKind& policy_kind() {
  static const Api::DocKind k{documents::kPolicy, "policy",      "policies", "policies",
                              "policy",           policy_fields, {"type"}};
  return k;
}
const Api::DocKind& credential_kind() {
  static const Api::DocKind k{documents::kCredential, "credential", "credentials",
                              "credentials",          "credential", credential_fields,
                              {"user_id", "type"}};
  return k;
}
const Api::DocKind& consumer_kind() {
  static const Api::DocKind k{
      documents::kConsumer, "consumer",      "consumers", "OS-OAUTH1/consumers",
      "consumer",           consumer_fields, {}};
  return k;
}
const Api::DocKind& endpoint_group_kind() {
  static const Api::DocKind k{documents::kEndpointGroup,
                              "endpoint_group",
                              "endpoint_groups",
                              "OS-EP-FILTER/endpoint_groups",
                              "endpoint group",
                              endpoint_group_fields,
                              {"name"}};
  return k;
}

Json render_document(const Api::DocKind& k, const Document& d, const Api::Call& c) {
  Json j = d.data.is_object() ? d.data : Json::object();
  j["id"] = d.id;
  j["links"] = {{"self", c.link(std::string(k.path) + "/" + d.id)}};
  return j;
}
}  // namespace

void Api::add_document_routes() {
  struct Family {
    const DocKind* kind;
    std::string base;
    std::string param;
    std::string rule_prefix;  // identity:<verb>_<noun>
    std::string noun;
    std::string nouns;
    bool head = false;
  };
  const std::vector<Family> families = {
      {&policy_kind(), "/v3/policies", "policy_id", "identity:", "policy", "policies"},
      {&credential_kind(), "/v3/credentials", "cred_id", "identity:", "credential", "credentials"},
      {&consumer_kind(), "/v3/OS-OAUTH1/consumers", "consumer_id", "identity:", "consumer",
       "consumers"},
      {&endpoint_group_kind(), "/v3/OS-EP-FILTER/endpoint_groups", "endpoint_group_id",
       "identity:", "endpoint_group", "endpoint_groups", true},
  };
  for (const Family& f : families) {
    const DocKind* k = f.kind;
    std::string item = f.base + "/{" + f.param + "}";
    add(Method::kGet, f.base, f.rule_prefix + "list_" + f.nouns,
        [this, k](Call& c) { return doc_list(c, *k); });
    add(Method::kPost, f.base, f.rule_prefix + "create_" + f.noun,
        [this, k](Call& c) { return doc_create(c, *k); });
    add(Method::kGet, item, f.rule_prefix + "get_" + f.noun,
        [this, k](Call& c) { return doc_get(c, *k, false); });
    if (f.head) {
      add(Method::kHead, item, f.rule_prefix + "get_" + f.noun,
          [this, k](Call& c) { return doc_get(c, *k, true); });
    }
    add(Method::kPatch, item, f.rule_prefix + "update_" + f.noun,
        [this, k](Call& c) { return doc_update(c, *k); });
    add(Method::kDelete, item, f.rule_prefix + "delete_" + f.noun,
        [this, k](Call& c) { return doc_delete(c, *k); });
  }
}

// OS-EP-FILTER: endpoint groups associated with projects. An association is a document
// (kind endpoint_group_project, id "<group>/<project>"); Concord does not filter the catalog
// by it (docs/design/identity.md).
void Api::add_endpoint_group_project_routes() {
  const std::string one =
      "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/projects/{project_id}";
  add(Method::kPut, one, "identity:add_endpoint_group_to_project",
      [this](Call& c) { return eg_project_put(c); });
  add(Method::kGet, one, "identity:get_endpoint_group_in_project",
      [this](Call& c) { return eg_project_get(c, false); });
  add(Method::kHead, one, "identity:get_endpoint_group_in_project",
      [this](Call& c) { return eg_project_get(c, true); });
  add(Method::kDelete, one, "identity:remove_endpoint_group_from_project",
      [this](Call& c) { return eg_project_delete(c); });
  add(Method::kGet, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/projects",
      "identity:list_projects_associated_with_endpoint_group",
      [this](Call& c) { return eg_projects(c); });
  add(Method::kGet, "/v3/OS-EP-FILTER/endpoint_groups/{endpoint_group_id}/endpoints",
      "identity:list_endpoints_associated_with_endpoint_group",
      [this](Call& c) { return eg_endpoints(c); });
  add(Method::kGet, "/v3/OS-EP-FILTER/projects/{project_id}/endpoint_groups",
      "identity:list_endpoint_groups_for_project",
      [this](Call& c) { return project_endpoint_groups(c); });
}

namespace {
std::string association_id(std::string_view group, std::string_view project) {
  return std::string(group) + "/" + std::string(project);
}
}  // namespace

// Loads the group and the project of an association route, or 404.
static Status check_eg_parts(store::Tx& tx, std::string_view group, std::string_view project) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<Document> g,
                           repo::get_document(tx, documents::kEndpointGroup, group));
  if (!g) return not_found("endpoint group", group);
  CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, repo::get_project(tx, project));
  if (!p || p->is_domain) return not_found("project", project);
  return ok();
}

Result<http::Response> Api::eg_project_put(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_RETURN_IF_ERROR(check_eg_parts(tx, c.param(0), c.param(1)));
    std::string id = association_id(c.param(0), c.param(1));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> cur,
                             repo::get_document(tx, documents::kEndpointGroupProject, id));
    if (cur) return ok();
    Document d{std::string(documents::kEndpointGroupProject), id,
               Json{{"endpoint_group_id", c.param(0)}, {"project_id", c.param(1)}}};
    CONCORD_RETURN_IF_ERROR(repo::insert_document(tx, d, core_.now_us()));
    return ws.change(tx, kinds::kDocument, "endpoint_group_project/" + id, "create");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::eg_project_get(Call& c, bool head) {
  std::optional<Project> project;
  bool found = false;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(check_eg_parts(tx, c.param(0), c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(project, repo::get_project(tx, c.param(1)));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> d,
                             repo::get_document(tx, documents::kEndpointGroupProject,
                                                association_id(c.param(0), c.param(1))));
    found = d.has_value();
    return ok();
  }));
  if (!found) {
    return fail(Code::kNotFound, "Could not find endpoint group " + sanitize_utf8(c.param(0)) +
                                     " associated with project " + sanitize_utf8(c.param(1)) + ".");
  }
  if (head) return http::Response::empty(200);
  return json(200, {{"project", render_project(*project, c)}});
}

Result<http::Response> Api::eg_project_delete(Call& c) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_RETURN_IF_ERROR(check_eg_parts(tx, c.param(0), c.param(1)));
    std::string id = association_id(c.param(0), c.param(1));
    CONCORD_ASSIGN_OR_RETURN(bool gone,
                             repo::delete_document(tx, documents::kEndpointGroupProject, id));
    if (!gone) {
      return fail(Code::kNotFound, "Could not find endpoint group " + sanitize_utf8(c.param(0)) +
                                       " associated with project " + sanitize_utf8(c.param(1)) +
                                       ".");
    }
    return ws.change(tx, kinds::kDocument, "endpoint_group_project/" + id, "delete");
  }));
  return http::Response::empty(204);
}

Result<http::Response> Api::eg_projects(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    items = Json::array();
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> g,
                             repo::get_document(tx, documents::kEndpointGroup, c.param(0)));
    if (!g) return not_found("endpoint group", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::vector<Document> links,
                             repo::list_documents(tx, documents::kEndpointGroupProject));
    for (const Document& d : links) {
      if (d.data.value("endpoint_group_id", "") != c.param(0)) continue;
      CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p,
                               repo::get_project(tx, d.data.value("project_id", "")));
      if (p) items.push_back(render_project(*p, c));
    }
    return ok();
  }));
  return json(200, collection(c, "projects", std::move(items)));
}

Result<http::Response> Api::eg_endpoints(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    items = Json::array();
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> g,
                             repo::get_document(tx, documents::kEndpointGroup, c.param(0)));
    if (!g) return not_found("endpoint group", c.param(0));
    repo::EndpointFilter f;
    const Json filters = g->data.value("filters", Json::object());
    if (filters.contains("service_id")) f.service_id = filters["service_id"].get<std::string>();
    if (filters.contains("interface")) f.interface = filters["interface"].get<std::string>();
    if (filters.contains("region_id")) f.region_id = filters["region_id"].get<std::string>();
    CONCORD_ASSIGN_OR_RETURN(std::vector<Endpoint> eps, repo::list_endpoints(tx, f));
    for (const Endpoint& e : eps) items.push_back(render_endpoint(e, c));
    return ok();
  }));
  return json(200, collection(c, "endpoints", std::move(items)));
}

Result<http::Response> Api::project_endpoint_groups(Call& c) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    items = Json::array();
    CONCORD_ASSIGN_OR_RETURN(std::optional<Project> p, repo::get_project(tx, c.param(0)));
    if (!p || p->is_domain) return not_found("project", c.param(0));
    CONCORD_ASSIGN_OR_RETURN(std::vector<Document> links,
                             repo::list_documents(tx, documents::kEndpointGroupProject));
    for (const Document& d : links) {
      if (d.data.value("project_id", "") != c.param(0)) continue;
      CONCORD_ASSIGN_OR_RETURN(
          std::optional<Document> g,
          repo::get_document(tx, documents::kEndpointGroup, d.data.value("endpoint_group_id", "")));
      if (g) items.push_back(render_document(endpoint_group_kind(), *g, c));
    }
    return ok();
  }));
  return json(200, collection(c, "endpoint_groups", std::move(items)));
}

Result<http::Response> Api::doc_list(Call& c, const DocKind& k) {
  Json items = Json::array();
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::vector<Document> docs, repo::list_documents(tx, k.kind));
    items = Json::array();
    for (const Document& d : docs) {
      bool match = true;
      for (std::string_view f : k.filters) {
        auto want = c.req.query_param(f);
        if (!want) continue;
        auto it = d.data.find(std::string(f));
        match = match && it != d.data.end() && it->is_string() && it->get<std::string>() == *want;
      }
      if (match) items.push_back(render_document(k, d, c));
    }
    return ok();
  }));
  return json(200, collection(c, k.collection, std::move(items)));
}

Result<http::Response> Api::doc_create(Call& c, const DocKind& k) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, k.key));
  Document d;
  d.kind = std::string(k.kind);
  CONCORD_ASSIGN_OR_RETURN(d.data, k.fields(body, nullptr));
  d.id = new_hex_id();
  std::optional<std::string> secret;
  if (k.kind == documents::kCredential && d.data.value("type", "") == "ec2") {
    // Keystone: an EC2 credential's id is the SHA-256 of its access key, in hex.
    auto blob = parse_json(d.data.value("blob", ""));
    if (blob && blob->is_object() && blob->contains("access") && (*blob)["access"].is_string()) {
      d.id = sha256_hex((*blob)["access"].get<std::string>());
    }
  }
  if (k.kind == documents::kConsumer) {
    // The secret is shown once and not kept: Concord does not run OAuth1 signing.
    secret = hex_encode(random_bytes(16));
  }
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> dup, repo::get_document(tx, k.kind, d.id));
    if (dup) return conflict(k.key, "Duplicate ID, " + d.id);
    CONCORD_RETURN_IF_ERROR(repo::insert_document(tx, d, core_.now_us()));
    return ws.change(tx, kinds::kDocument, std::string(k.kind) + "/" + d.id, "create");
  }));
  Json out = render_document(k, d, c);
  if (secret) out["secret"] = *secret;
  return json(201, {{std::string(k.key), std::move(out)}});
}

Result<http::Response> Api::doc_get(Call& c, const DocKind& k, bool head) {
  std::optional<Document> d;
  CONCORD_RETURN_IF_ERROR(core_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(d, repo::get_document(tx, k.kind, c.param(0)));
    return ok();
  }));
  if (!d) return not_found(k.what, c.param(0));
  if (head) return http::Response::empty(200);
  return json(200, {{std::string(k.key), render_document(k, *d, c)}});
}

Result<http::Response> Api::doc_update(Call& c, const DocKind& k) {
  CONCORD_ASSIGN_OR_RETURN(Json body, input::entity(c.req.body, k.key));
  if (auto id = body.find("id"); id != body.end() && *id != Json(std::string(c.param(0)))) {
    return fail(Code::kInvalidArgument, "Cannot change the ID of a " + std::string(k.what) + ".");
  }
  Document d;
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Document> cur,
                             repo::get_document(tx, k.kind, c.param(0)));
    if (!cur) return not_found(k.what, c.param(0));
    d = *cur;
    CONCORD_ASSIGN_OR_RETURN(d.data, k.fields(body, &cur->data));
    CONCORD_RETURN_IF_ERROR(repo::update_document(tx, d));
    return ws.change(tx, kinds::kDocument, std::string(k.kind) + "/" + d.id, "update");
  }));
  return json(200, {{std::string(k.key), render_document(k, d, c)}});
}

Result<http::Response> Api::doc_delete(Call& c, const DocKind& k) {
  CONCORD_RETURN_IF_ERROR(core_.write([&](store::Tx& tx, WriteSet& ws) -> Status {
    CONCORD_ASSIGN_OR_RETURN(bool deleted, repo::delete_document(tx, k.kind, c.param(0)));
    if (!deleted) return not_found(k.what, c.param(0));
    if (k.kind == documents::kEndpointGroup) {
      CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> gone,
                               repo::delete_documents_where(tx, documents::kEndpointGroupProject,
                                                            "endpoint_group_id", c.param(0)));
      for (const std::string& id : gone) {
        CONCORD_RETURN_IF_ERROR(
            ws.change(tx, kinds::kDocument, "endpoint_group_project/" + id, "delete"));
      }
    }
    return ws.change(tx, kinds::kDocument, std::string(k.kind) + "/" + std::string(c.param(0)),
                     "delete");
  }));
  return http::Response::empty(204);
}

}  // namespace concord::identity

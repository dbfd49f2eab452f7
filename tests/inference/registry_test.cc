// The model registry (/inference/v1) against a real store (SQLite in a temp dir, or PostgreSQL
// with CONCORD_INFERENCE_TEST_STORE=postgres), real identity tokens, the real blob store and the
// real OpenCV runtime, on the committed Fashion-MNIST model. Requests go through an http::Router
// exactly as the server dispatches them; the streamed-upload cases go through the server's own
// request parser (http::testing::handle_raw_request) with the registry's spooling hook.
#include "inference/registry/registry.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "blob/blob_store.h"
#include "fixtures.h"
#include "http/router.h"
#include "http/testing.h"
#include "identity/identity_service.h"
#include "identity_calls.h"
#include "postgres_server.h"
#include "proto_builder.h"
#include "store/store.h"
#include "temp_dir.h"
#include "test_stack.h"
#include "usage/usage_ledger.h"

#define ASSERT_OK(expr)                                                              \
  do {                                                                               \
    const auto& concord_test_r_ = (expr);                                            \
    ASSERT_TRUE(concord_test_r_.has_value()) << concord_test_r_.error().to_string(); \
  } while (false)

namespace concord::inference::registry {
namespace {

namespace fs = std::filesystem;
using ::concord::inference::testing::fashion_mnist_model;
using ::concord::inference::testing::ProtoBuilder;
using ::concord::inference::testing::read_file;
using ::concord::testing::TempDir;

// Stops the shared PostgreSQL server (if one was started) when the program ends.
const auto* const kPostgresEnv = ::testing::AddGlobalTestEnvironment(
    std::make_unique<test_support::PostgresEnvironment>().release());

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

struct Reply {
  int status = 0;
  Json body;  // null when empty or not JSON
  http::Response raw;
  std::string message() const {
    if (body.is_object() && body.contains("error") && body["error"].is_object())
      return body["error"].value("message", "");
    return {};
  }
  int error_code() const {
    if (body.is_object() && body.contains("error") && body["error"].is_object())
      return body["error"].value("code", 0);
    return 0;
  }
};

std::ostream& operator<<(std::ostream& os, const Reply& r) {
  return os << r.status << " " << r.raw.body.substr(0, 500);
}

// Counts regular files below a folder (blob store contents).
size_t files_under(const fs::path& dir) {
  size_t n = 0;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) ++n;
  }
  return n;
}

class RegistryTest : public ::testing::Test, public test_support::IdentityCalls {
 protected:
  void SetUp() override {
    set_log_level("warn");
    const char* engine = std::getenv("CONCORD_INFERENCE_TEST_STORE");
    auto stack = test_support::open_test_stack(
        dir_.path(), clock_, engine != nullptr && std::string_view(engine) == "postgres",
        {identity::migrations(), usage::migrations(), registry::migrations()});
    ASSERT_TRUE(stack.has_value()) << stack.error().to_string();
    store_ = std::move(stack->store);
    identity_ = std::move(stack->identity);
    pg_database_ = stack->pg_database;
    auto boot = identity_->bootstrap({"admin-secret", "http://localhost:5000", ""});
    ASSERT_TRUE(boot.has_value()) << boot.error().to_string();
    boot_ = *boot;
    attach_identity(*identity_);

    admin_ = token("admin", "admin-secret", "admin");
    use_identity_admin(admin_);
    p1_ = create_project("p1");
    p2_ = create_project("p2");
    std::string member1 = create_user("member1");
    std::string reader1 = create_user("reader1");
    std::string member2 = create_user("member2");
    grant(p1_, member1, boot_.member_role_id);
    grant(p1_, reader1, boot_.reader_role_id);
    grant(p2_, member2, boot_.member_role_id);
    member1_ = token("member1", "member1-pw", "p1");
    reader1_ = token("reader1", "reader1-pw", "p1");
    member2_ = token("member2", "member2-pw", "p2");

    fixture_ = read_file(fashion_mnist_model());
    ASSERT_GT(fixture_.size(), 1000u) << "missing " << fashion_mnist_model();
    start_registry(options());
  }

  void TearDown() override {
    registry_.reset();
    identity_.reset();
    store_.reset();
    if (!pg_database_.empty()) {
      auto server = test_support::PostgresServer::shared();
      if (server) {
        EXPECT_TRUE((*server)->drop_database(pg_database_).has_value());
      }
    }
  }

  RegistryOptions options() const {
    RegistryOptions o;
    o.blob_dir = blob_dir();
    o.region = "RegionOne";
    return o;
  }
  std::string blob_dir() const { return dir_.path() + "/models"; }

  void start_registry(RegistryOptions o) {
    registry_.reset();
    auto r = ModelRegistry::create(*store_, clock_, *identity_, std::move(o));
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    registry_ = std::move(*r);
    router_ = http::Router();
    router_.mount("/inference", registry_->routes(), registry_->error_formatter());
  }

  Reply dispatch(const http::Router& router, http::Request req) const {
    std::string route;
    Reply r;
    r.raw = router.dispatch(req, route);
    r.status = r.raw.status;
    if (!r.raw.body.empty()) {
      auto parsed = parse_json(r.raw.body);
      if (parsed) r.body = std::move(*parsed);
    }
    return r;
  }

  Reply call(http::Method method, const std::string& target, const std::string& token,
             const std::string& body = "",
             const std::string& content_type = "application/json") const {
    http::Request req;
    req.method = method;
    req.target = "/inference" + target;
    req.body = body;
    req.base_url = "http://localhost:5000";
    req.request_id = "req-test";
    if (!body.empty() || content_type != "application/json")
      req.headers.push_back({"content-type", content_type});
    if (!token.empty()) req.headers.push_back({"x-auth-token", token});
    return dispatch(router_, std::move(req));
  }
  Reply get(const std::string& target, const std::string& token) const {
    return call(http::Method::kGet, target, token);
  }
  Reply post(const std::string& target, const Json& body, const std::string& token) const {
    return call(http::Method::kPost, target, token, dump_json(body));
  }
  Reply patch(const std::string& target, const Json& body, const std::string& token) const {
    return call(http::Method::kPatch, target, token, dump_json(body));
  }
  Reply del(const std::string& target, const std::string& token) const {
    return call(http::Method::kDelete, target, token);
  }
  Reply upload(const std::string& model_id, const std::string& version, const std::string& bytes,
               const std::string& token) const {
    return call(http::Method::kPut, "/v1/models/" + model_id + "/versions/" + version, token, bytes,
                "application/octet-stream");
  }

  // Creates a model as member1 in p1 and returns its id.
  std::string make_model(const std::string& name = "fashion", const std::string& tok = "") {
    Reply r = post("/v1/models", {{"name", name}}, tok.empty() ? member1_ : tok);
    EXPECT_EQ(r.status, 201) << r;
    return r.body["model"]["id"].get<std::string>();
  }

  void expect_error(const Reply& r, int status, const std::string& message) const {
    EXPECT_EQ(r.status, status) << r;
    EXPECT_EQ(r.error_code(), status) << r;
    EXPECT_EQ(r.message(), message) << r;
    EXPECT_EQ(r.raw.header("content-type"), "application/json") << r;
  }

  size_t committed_blobs() const { return files_under(fs::path(blob_dir()) / "sha256"); }
  size_t temp_files() const { return files_under(fs::path(blob_dir()) / "tmp"); }

  std::vector<usage::StoredUsageEvent> usage_events() {
    std::vector<usage::StoredUsageEvent> out;
    EXPECT_TRUE(store_
                    ->read([&](store::Tx& tx) -> Status {
                      CONCORD_ASSIGN_OR_RETURN(out, usage::list(tx, {}));
                      return ok();
                    })
                    .has_value());
    return out;
  }

  TempDir dir_{"concord-registry"};
  FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<identity::IdentityService> identity_;
  identity::BootstrapResult boot_;
  std::unique_ptr<ModelRegistry> registry_;
  http::Router router_;
  std::string admin_, member1_, reader1_, member2_, p1_, p2_;
  std::string pg_database_;
  std::string fixture_;
};

// ---- models ---------------------------------------------------------------------------------

TEST_F(RegistryTest, CreateModelAnswersTheModel) {
  Reply r = post("/v1/models", {{"name", "fashion"}, {"description", "a CNN"}}, member1_);
  ASSERT_EQ(r.status, 201) << r;
  const Json& m = r.body["model"];
  EXPECT_EQ(m["name"], "fashion");
  EXPECT_EQ(m["description"], "a CNN");
  EXPECT_EQ(m["project_id"], p1_);
  EXPECT_TRUE(m["publisher"].is_null());
  EXPECT_EQ(m["versions"], Json::array());
  EXPECT_EQ(m["created_at"], "2027-01-15T08:00:00.000000Z");
  EXPECT_EQ(m["id"].get<std::string>().size(), 36u);

  Reply shown = get("/v1/models/" + m["id"].get<std::string>(), reader1_);
  ASSERT_EQ(shown.status, 200) << shown;
  EXPECT_EQ(shown.body["model"], m);
}

TEST_F(RegistryTest, CreateModelErrors) {
  make_model("fashion");
  expect_error(post("/v1/models", {{"name", "fashion"}}, member1_), 409,
               "a model named 'fashion' already exists in project " + p1_);
  // Names are unique per project only.
  EXPECT_EQ(post("/v1/models", {{"name", "fashion"}}, member2_).status, 201);
  expect_error(post("/v1/models", {{"description", "x"}}, member1_), 400, "'name' is required");
  expect_error(post("/v1/models", {{"name", ""}}, member1_), 400, "'name' must not be empty");
  expect_error(post("/v1/models", {{"name", 5}}, member1_), 400, "'name' must be a string");
  expect_error(post("/v1/models", {{"name", std::string(256, 'a')}}, member1_), 400,
               "'name' is longer than 255 bytes");
  expect_error(post("/v1/models", {{"name", "x"}, {"publisher", "p"}}, member1_), 400,
               "unknown field 'publisher' (name, description)");
  expect_error(post("/v1/models", Json::array(), member1_), 400,
               "the request body must be an object");
  expect_error(call(http::Method::kPost, "/v1/models", member1_, "{\"name\": \"x\"}", "text/plain"),
               400, "the request body must be application/json, not 'text/plain'");
  Reply bad_json = call(http::Method::kPost, "/v1/models", member1_, "{nope");
  EXPECT_EQ(bad_json.status, 400) << bad_json;
  EXPECT_FALSE(bad_json.message().empty());
  expect_error(post("/v1/models", {{"name", "x"}}, reader1_), 403,
               "the member role on the model's project is needed to change models");
  expect_error(post("/v1/models", {{"name", "x"}}, ""), 401,
               "authentication required: send a token in X-Auth-Token");
  Reply forged = post("/v1/models", {{"name", "x"}}, "not-a-token");
  EXPECT_EQ(forged.status, 401) << forged;
  EXPECT_TRUE(forged.message().starts_with("the token is not valid: ")) << forged;
}

TEST_F(RegistryTest, ListShowsOwnProjectAndAdminSeesAll) {
  std::string a = make_model("a");
  std::string b = make_model("b", member2_);
  Reply mine = get("/v1/models", reader1_);
  ASSERT_EQ(mine.status, 200) << mine;
  ASSERT_EQ(mine.body["models"].size(), 1u);
  EXPECT_EQ(mine.body["models"][0]["id"], a);
  Reply theirs = get("/v1/models", member2_);
  ASSERT_EQ(theirs.body["models"].size(), 1u);
  EXPECT_EQ(theirs.body["models"][0]["id"], b);
  // The admin's own project holds none; all_projects=1 shows both.
  EXPECT_EQ(get("/v1/models", admin_).body["models"].size(), 0u);
  Reply all = get("/v1/models?all_projects=1", admin_);
  ASSERT_EQ(all.status, 200) << all;
  EXPECT_EQ(all.body["models"].size(), 2u);
  expect_error(get("/v1/models?all_projects=1", member1_), 403,
               "only an administrator may list all projects' models");
  expect_error(get("/v1/models?all_projects=maybe", admin_), 400, "all_projects must be 1 or 0");
  expect_error(get("/v1/models", ""), 401, "authentication required: send a token in X-Auth-Token");
}

TEST_F(RegistryTest, OtherProjectsModelsAreNotFound) {
  std::string id = make_model();
  std::string nf = "model " + id + " not found";
  expect_error(get("/v1/models/" + id, member2_), 404, nf);
  expect_error(patch("/v1/models/" + id, {{"name", "mine"}}, member2_), 404, nf);
  expect_error(del("/v1/models/" + id, member2_), 404, nf);
  expect_error(get("/v1/models/" + id + "/versions", member2_), 404, nf);
  expect_error(upload(id, "1", fixture_, member2_), 404, nf);
  ASSERT_EQ(upload(id, "1", fixture_, member1_).status, 201);
  expect_error(get("/v1/models/" + id + "/versions/1", member2_), 404, nf);
  expect_error(get("/v1/models/" + id + "/versions/1/file", member2_), 404, nf);
  expect_error(del("/v1/models/" + id + "/versions/1", member2_), 404, nf);
  // The admin sees and reads it.
  EXPECT_EQ(get("/v1/models/" + id, admin_).status, 200);
  EXPECT_EQ(get("/v1/models/" + id + "/versions/1/file", admin_).status, 200);
  expect_error(get("/v1/models/no-such-id", member1_), 404, "model no-such-id not found");
}

TEST_F(RegistryTest, PatchRenamesAndDescribes) {
  std::string id = make_model("a");
  make_model("b");
  clock_.advance(std::chrono::seconds(5));
  Reply r = patch("/v1/models/" + id, {{"name", "c"}, {"description", "new"}}, member1_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["model"]["name"], "c");
  EXPECT_EQ(r.body["model"]["description"], "new");
  EXPECT_EQ(r.body["model"]["updated_at"], "2027-01-15T08:00:05.000000Z");
  EXPECT_EQ(r.body["model"]["created_at"], "2027-01-15T08:00:00.000000Z");
  expect_error(patch("/v1/models/" + id, {{"name", "b"}}, member1_), 409,
               "a model named 'b' already exists in project " + p1_);
  expect_error(patch("/v1/models/" + id, {{"project_id", p2_}}, member1_), 400,
               "unknown or read-only field 'project_id' (name, description may change)");
  expect_error(patch("/v1/models/" + id, {{"description", 1}}, member1_), 400,
               "'description' must be a string");
  expect_error(patch("/v1/models/" + id, {{"name", "z"}}, reader1_), 403,
               "the member role on the model's project is needed to change models");
  EXPECT_EQ(get("/v1/models/" + id, reader1_).body["model"]["name"], "c");
}

TEST_F(RegistryTest, DeleteModelRemovesItsVersionsAndBlobs) {
  std::string id = make_model();
  ASSERT_EQ(upload(id, "1", fixture_, member1_).status, 201);
  ASSERT_EQ(upload(id, "2", fixture_, member1_).status, 201);
  EXPECT_EQ(committed_blobs(), 1u);  // identical bytes: one blob
  expect_error(del("/v1/models/" + id, reader1_), 403,
               "the member role on the model's project is needed to change models");
  Reply r = del("/v1/models/" + id, member1_);
  EXPECT_EQ(r.status, 204) << r;
  expect_error(get("/v1/models/" + id, member1_), 404, "model " + id + " not found");
  EXPECT_EQ(committed_blobs(), 0u);
  // The name is free again.
  EXPECT_EQ(post("/v1/models", {{"name", "fashion"}}, member1_).status, 201);
  int deleted = 0;
  for (const auto& e : usage_events()) {
    if (e.event.event_id.ends_with(":deleted")) {
      ++deleted;
      EXPECT_EQ(e.event.kind, "inference.model_storage");
      EXPECT_EQ(e.event.quantity, std::to_string(fixture_.size()));
    }
  }
  EXPECT_EQ(deleted, 2);
}

// The endpoints service vetoes deleting what an endpoint serves: the veto runs inside the delete
// transaction, and a veto leaves the model, its versions and its blob in place.
TEST_F(RegistryTest, DeleteInUseIsRefusedWith409) {
  std::string id = make_model();
  ASSERT_EQ(upload(id, "1", fixture_, member1_).status, 201);
  ASSERT_EQ(upload(id, "2", fixture_, member1_).status, 201);
  std::vector<std::pair<std::string, std::optional<int64_t>>> asked;
  registry_->set_in_use([&](store::Tx& tx, std::string_view model_id,
                            std::optional<int64_t> version) -> Result<std::optional<std::string>> {
    // Inside a live transaction: the version rows are still there.
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT version FROM inference_model_versions WHERE model_id = ?",
                 {std::string(model_id)}));
    EXPECT_EQ(rows.size(), 2u);
    asked.emplace_back(std::string(model_id), version);
    if (!version || *version == 1) return std::optional<std::string>("ep-1");
    return std::optional<std::string>();
  });
  expect_error(del("/v1/models/" + id, member1_), 409,
               "model " + id + " is used by endpoint ep-1; delete the endpoint first");
  expect_error(del("/v1/models/" + id + "/versions/1", member1_), 409,
               "version 1 of model " + id + " is used by endpoint ep-1; delete the endpoint first");
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[0].first, id);
  EXPECT_FALSE(asked[0].second.has_value());
  EXPECT_EQ(asked[1].second, std::optional<int64_t>(1));
  EXPECT_EQ(get("/v1/models/" + id + "/versions/1", member1_).status, 200);
  EXPECT_EQ(committed_blobs(), 1u);
  // A version nobody uses goes.
  EXPECT_EQ(del("/v1/models/" + id + "/versions/2", member1_).status, 204);
  // An error from the check is the answer (not a silent delete).
  registry_->set_in_use([](store::Tx&, std::string_view,
                           std::optional<int64_t>) -> Result<std::optional<std::string>> {
    return fail(Code::kUnavailable, "endpoints store busy");
  });
  expect_error(del("/v1/models/" + id, member1_), 503, "endpoints store busy");
  registry_->set_in_use(nullptr);
  EXPECT_EQ(del("/v1/models/" + id, member1_).status, 204);
  EXPECT_EQ(committed_blobs(), 0u);
}

// ---- versions -------------------------------------------------------------------------------

TEST_F(RegistryTest, UploadFixtureReadsMetadataAndDownloadsTheSameBytes) {
  std::string id = make_model();
  Reply r = upload(id, "1", fixture_, member1_);
  ASSERT_EQ(r.status, 201) << r;
  const Json& v = r.body["version"];
  EXPECT_EQ(v["version"], 1);
  EXPECT_EQ(v["model_id"], id);
  EXPECT_EQ(v["sha256"], sha256_hex(fixture_));
  EXPECT_EQ(v["size"], fixture_.size());
  EXPECT_EQ(v["runtime"], "opencv");
  EXPECT_EQ(v["format"], "onnx");
  EXPECT_EQ(v["status"], "ready");
  EXPECT_EQ(v["created_at"], "2027-01-15T08:00:00.000000Z");
  EXPECT_EQ(v["inputs"],
            Json::parse(R"([{"name":"input","datatype":"FP32","shape":[-1,1,28,28]}])"));
  EXPECT_EQ(v["outputs"], Json::parse(R"([{"name":"logits","datatype":"FP32","shape":[-1,10]}])"));

  Reply file = get("/v1/models/" + id + "/versions/1/file", reader1_);
  ASSERT_EQ(file.status, 200) << file;
  EXPECT_EQ(file.raw.header("content-type"), "application/octet-stream");
  EXPECT_EQ(file.raw.header("x-model-sha256"), sha256_hex(fixture_));
  ASSERT_FALSE(file.raw.body_file.empty());
  EXPECT_EQ(read_file(file.raw.body_file), fixture_);
  auto path = registry_->version_file(id, 1);
  ASSERT_TRUE(path.has_value());
  EXPECT_EQ(*path, file.raw.body_file);

  Reply shown = get("/v1/models/" + id + "/versions/1", reader1_);
  ASSERT_EQ(shown.status, 200) << shown;
  EXPECT_EQ(shown.body["version"], v);
  Reply list = get("/v1/models/" + id + "/versions", reader1_);
  ASSERT_EQ(list.status, 200) << list;
  EXPECT_EQ(list.body["versions"], Json::array({v}));
  EXPECT_EQ(get("/v1/models/" + id, reader1_).body["model"]["versions"], Json::array({v}));

  // One usage event for the stored bytes, in the uploader's project.
  auto events = usage_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event.event_id, "inference.model_version:" + id + "/1:created");
  EXPECT_EQ(events[0].event.project_id, p1_);
  EXPECT_EQ(events[0].event.resource_type, "inference.model_version");
  EXPECT_EQ(events[0].event.kind, "inference.model_storage");
  EXPECT_EQ(events[0].event.quantity, std::to_string(fixture_.size()));
  EXPECT_EQ(events[0].event.unit, "B");
  EXPECT_EQ(temp_files(), 0u);
}

TEST_F(RegistryTest, VersionNumbersAndConflicts) {
  std::string id = make_model();
  ASSERT_EQ(upload(id, "3", fixture_, member1_).status, 201);
  expect_error(upload(id, "3", fixture_, member1_), 409,
               "version 3 of model " + id + " already exists; upload a new version number");
  for (std::string bad : {"0", "-1", "01", "abc", "1.5", "2147483648", "99999999999"}) {
    expect_error(upload(id, bad, fixture_, member1_), 400,
                 "version must be a positive integer from 1 to 2147483647, not '" + bad + "'");
    expect_error(get("/v1/models/" + id + "/versions/" + bad, member1_), 400,
                 "version must be a positive integer from 1 to 2147483647, not '" + bad + "'");
  }
  EXPECT_EQ(upload(id, "2147483647", fixture_, member1_).status, 201);
  expect_error(get("/v1/models/" + id + "/versions/4", member1_), 404,
               "version 4 of model " + id + " not found");
  expect_error(get("/v1/models/" + id + "/versions/4/file", member1_), 404,
               "version 4 of model " + id + " not found");
  expect_error(del("/v1/models/" + id + "/versions/4", member1_), 404,
               "version 4 of model " + id + " not found");
  Reply list = get("/v1/models/" + id + "/versions", member1_);
  ASSERT_EQ(list.body["versions"].size(), 2u);
  EXPECT_EQ(list.body["versions"][0]["version"], 3);
  EXPECT_EQ(list.body["versions"][1]["version"], 2147483647);
}

TEST_F(RegistryTest, UploadNeedsMemberRoleAndOctetStream) {
  std::string id = make_model();
  expect_error(upload(id, "1", fixture_, reader1_), 403,
               "the member role on the model's project is needed to change models");
  expect_error(call(http::Method::kPut, "/v1/models/" + id + "/versions/1", member1_, fixture_,
                    "application/json"),
               415,
               "a model version's body must be application/octet-stream (the ONNX file's "
               "bytes), not 'application/json'");
  expect_error(upload(id, "1", "", member1_), 400,
               "model rejected: the body is empty; send the ONNX file's bytes");
  EXPECT_EQ(get("/v1/models/" + id + "/versions", member1_).body["versions"], Json::array());
}

TEST_F(RegistryTest, BadModelsAreRejectedAndNothingIsStored) {
  std::string id = make_model();
  std::string random;
  for (int i = 0; i < 4096; ++i) random.push_back(static_cast<char>((i * 7919 + 13) % 251));
  // A TensorProto (dims, data_type, float_data): valid protobuf, not a model.
  ProtoBuilder tensor;
  tensor.varint(1, 2).varint(2, 1).bytes(8, "weights");
  struct Case {
    std::string name;
    std::string bytes;
    std::string message_prefix;
  };
  std::vector<Case> cases = {
      {"random", random, "model rejected: invalid ONNX model: "},
      {"truncated", fixture_.substr(0, fixture_.size() / 2),
       "model rejected: invalid ONNX model: "},
      {"tensor", tensor.str(), "model rejected: invalid ONNX model: "},
      // Well-formed ONNX the runtime cannot run: the runtime's reason is named.
      {"unknown op", testing::unary_model("NoSuchOperator"), "model rejected: "},
  };
  for (const Case& c : cases) {
    Reply r = upload(id, "1", c.bytes, member1_);
    EXPECT_EQ(r.status, 400) << c.name << ": " << r;
    EXPECT_EQ(r.error_code(), 400) << c.name;
    EXPECT_TRUE(r.message().starts_with(c.message_prefix)) << c.name << ": " << r.message();
    EXPECT_GT(r.message().size(), c.message_prefix.size() + 10) << c.name << ": " << r.message();
  }
  Reply unknown_op = upload(id, "1", testing::unary_model("NoSuchOperator"), member1_);
  EXPECT_NE(unknown_op.message().find("NoSuchOperator"), std::string::npos) << unknown_op;
  EXPECT_EQ(get("/v1/models/" + id + "/versions", member1_).body["versions"], Json::array());
  EXPECT_EQ(committed_blobs(), 0u);
  EXPECT_EQ(temp_files(), 0u);
  EXPECT_TRUE(usage_events().empty());
  // The version number is still free.
  EXPECT_EQ(upload(id, "1", fixture_, member1_).status, 201);
}

TEST_F(RegistryTest, OversizeUploadIs413) {
  RegistryOptions o = options();
  o.max_model_bytes = fixture_.size() - 1;
  start_registry(o);
  std::string id = make_model();
  expect_error(upload(id, "1", fixture_, member1_), 413,
               "the model is larger than the limit of " + std::to_string(fixture_.size() - 1) +
                   " bytes (inference.max_model_mb)");
  EXPECT_EQ(committed_blobs(), 0u);
  EXPECT_EQ(temp_files(), 0u);
  o.max_model_bytes = fixture_.size();
  start_registry(o);
  EXPECT_EQ(upload(id, "1", fixture_, member1_).status, 201);
}

// Through the server's own request parser: the body is spooled to the blob store's temp folder by
// the registry's hook, adopted by the upload, and bounded by max_model_bytes (413 before any
// handler runs).
TEST_F(RegistryTest, StreamedUploadThroughTheServerParser) {
  RegistryOptions o = options();
  o.max_model_bytes = fixture_.size();
  start_registry(o);
  std::string id = make_model();
  http::ServerOptions so;
  so.max_body_bytes = 1024;  // far below the model: only the streamed path can accept it
  so.streamed_body = registry_->streamed_body_hook("/inference");
  auto raw = [&](const std::string& version, const std::string& body) {
    std::string req = "PUT /inference/v1/models/" + id + "/versions/" + version +
                      " HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + member1_ +
                      "\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    return http::testing::handle_raw_request(router_, req, so);
  };
  http::Response ok_resp = raw("1", fixture_);
  ASSERT_EQ(ok_resp.status, 201) << ok_resp.body;
  auto body = parse_json(ok_resp.body);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ((*body)["version"]["sha256"], sha256_hex(fixture_));

  http::Response big = raw("2", fixture_ + "x");
  EXPECT_EQ(big.status, 413) << big.body;
  auto big_body = parse_json(big.body);
  ASSERT_TRUE(big_body.has_value()) << big.body;
  EXPECT_EQ((*big_body)["error"]["code"], 413);
  EXPECT_EQ(get("/v1/models/" + id + "/versions", member1_).body["versions"].size(), 1u);
  EXPECT_EQ(temp_files(), 0u);

  // The hook spools only version uploads.
  EXPECT_TRUE(so.streamed_body(http::Method::kPut, "/inference/v1/models/m/versions/1"));
  EXPECT_TRUE(so.streamed_body(http::Method::kPut, "/inference/v1/models/m/versions/1/"));
  EXPECT_FALSE(so.streamed_body(http::Method::kPost, "/inference/v1/models/m/versions/1"));
  EXPECT_FALSE(so.streamed_body(http::Method::kPut, "/inference/v1/models/m"));
  EXPECT_FALSE(so.streamed_body(http::Method::kPut, "/inference/v1/models/m/versions/1/file"));
  EXPECT_FALSE(so.streamed_body(http::Method::kPut, "/image/v2/images/m/file"));
}

TEST_F(RegistryTest, DeleteVersionKeepsSharedBlobs) {
  std::string a = make_model("a");
  std::string b = make_model("b");
  ASSERT_EQ(upload(a, "1", fixture_, member1_).status, 201);
  ASSERT_EQ(upload(b, "1", fixture_, member1_).status, 201);
  EXPECT_EQ(committed_blobs(), 1u);
  expect_error(del("/v1/models/" + a + "/versions/1", reader1_), 403,
               "the member role on the model's project is needed to change models");
  EXPECT_EQ(del("/v1/models/" + a + "/versions/1", member1_).status, 204);
  expect_error(get("/v1/models/" + a + "/versions/1", member1_), 404,
               "version 1 of model " + a + " not found");
  EXPECT_EQ(committed_blobs(), 1u);  // b still names it
  EXPECT_EQ(read_file(get("/v1/models/" + b + "/versions/1/file", member1_).raw.body_file),
            fixture_);
  EXPECT_EQ(del("/v1/models/" + b + "/versions/1", member1_).status, 204);
  EXPECT_EQ(committed_blobs(), 0u);
  // A deleted version's number may be uploaded again.
  EXPECT_EQ(upload(a, "1", fixture_, member1_).status, 201);
}

TEST_F(RegistryTest, ReaderReadsButCannotWrite) {
  std::string id = make_model();
  ASSERT_EQ(upload(id, "1", fixture_, member1_).status, 201);
  EXPECT_EQ(get("/v1/models", reader1_).status, 200);
  EXPECT_EQ(get("/v1/models/" + id, reader1_).status, 200);
  EXPECT_EQ(get("/v1/models/" + id + "/versions", reader1_).status, 200);
  EXPECT_EQ(get("/v1/models/" + id + "/versions/1", reader1_).status, 200);
  EXPECT_EQ(get("/v1/models/" + id + "/versions/1/file", reader1_).status, 200);
  expect_error(upload(id, "2", fixture_, reader1_), 403,
               "the member role on the model's project is needed to change models");
}

TEST_F(RegistryTest, UnknownRoutesUseTheErrorFormat) {
  Reply r = get("/v1/nothing", member1_);
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.error_code(), 404);
  Reply m = call(http::Method::kPost, "/v1/models/x", member1_, "{}");
  EXPECT_EQ(m.status, 405) << m;
  EXPECT_EQ(m.error_code(), 405);
}

// ---- the check's bounds ------------------------------------------------------------------------

// A runtime whose load blocks until the test lets it go.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

TEST_F(RegistryTest, ALoadThatOverrunsIsRejectedAndChecksAreBounded) {
  auto gate = std::make_shared<Gate>();
  RegistryOptions o = options();
  o.check_timeout = std::chrono::milliseconds(50);
  o.max_concurrent_checks = 1;
  o.load = [gate](std::string_view) -> Result<ModelMetadata> {
    std::unique_lock lock(gate->mu);
    gate->cv.wait(lock, [&] { return gate->open; });
    return fail(Code::kFailedPrecondition, "released");
  };
  start_registry(o);
  std::string id = make_model();
  expect_error(upload(id, "1", fixture_, member1_), 400,
               "model rejected: the runtime did not finish loading the model within 50 ms");
  // The abandoned load still runs: the next upload is refused with a retryable 503.
  expect_error(upload(id, "1", fixture_, member1_), 503,
               "the server is already checking 1 uploaded models; retry the upload later");
  gate->release();
  EXPECT_EQ(get("/v1/models/" + id + "/versions", member1_).body["versions"], Json::array());
  EXPECT_EQ(committed_blobs(), 0u);
  EXPECT_EQ(temp_files(), 0u);
}

TEST(ModelChecker, ParsesBeforeLoadingAndReportsTheRuntimesReason) {
  std::atomic<int> loads{0};
  ModelChecker checker(
      [&loads](std::string_view) -> Result<ModelMetadata> {
        loads++;
        return fail(Code::kFailedPrecondition, "cannot run it");
      },
      std::chrono::milliseconds(60'000), 2);
  auto bad = checker.check("not a model");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(loads.load(), 0);  // malformed bytes never reach the runtime
  auto refused = checker.check(read_file(fashion_mnist_model()));
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(refused.error().message(), "cannot run it");
  EXPECT_EQ(loads.load(), 1);

  ModelChecker real(runtime_loader("opencv"), std::chrono::milliseconds(60'000), 1);
  auto meta = real.check(read_file(fashion_mnist_model()));
  ASSERT_TRUE(meta.has_value()) << meta.error().to_string();
  EXPECT_EQ(meta->runtime, "opencv");
  ASSERT_EQ(meta->inputs.size(), 1u);
  EXPECT_EQ(meta->inputs[0].shape, (std::vector<int64_t>{-1, 1, 28, 28}));
  ModelChecker unknown(runtime_loader("nope"), std::chrono::milliseconds(60'000), 1);
  auto none = unknown.check(read_file(fashion_mnist_model()));
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), Code::kNotFound);
}

// A finished check frees its slot before its caller sees the result: back-to-back checks with
// one slot never find it taken (they did, now and then, when the slot was freed after the
// result was published).
TEST(ModelChecker, SequentialChecksNeverFindTheirSlotTaken) {
  ModelChecker checker([](std::string_view) -> Result<ModelMetadata> { return ModelMetadata{}; },
                       std::chrono::milliseconds(60'000), 1);
  std::string model = testing::unary_model("Relu");
  for (int i = 0; i < 500; ++i) {
    auto r = checker.check(model);
    ASSERT_TRUE(r.has_value()) << "check " << i << ": " << r.error().to_string();
  }
}

// ---- crash safety ------------------------------------------------------------------------------

// What a kill -9 between blob commit and row insert leaves (a blob no version names) and what
// one mid-spool leaves (a temp file) are both gone after a restart; versions keep their bytes.
TEST_F(RegistryTest, RestartRemovesOrphansAndKeepsVersions) {
  std::string id = make_model();
  ASSERT_EQ(upload(id, "1", fixture_, member1_).status, 201);
  registry_.reset();
  {
    auto blobs = blob::BlobStore::create(blob_dir());
    ASSERT_TRUE(blobs.has_value());
    auto w = (*blobs)->begin_write();
    ASSERT_TRUE(w.has_value());
    ASSERT_OK((*w)->write("orphan bytes"));
    ASSERT_OK((*w)->commit());
    auto unfinished = (*blobs)->begin_write();
    ASSERT_TRUE(unfinished.has_value());
    ASSERT_OK((*unfinished)->write("half an upload"));
    // Leak the temp file as a killed process would: move it aside before the writer cleans up.
    fs::copy_file((*unfinished)->temp_path(), blob_dir() + "/tmp/left-by-a-crash");
  }
  EXPECT_EQ(committed_blobs(), 2u);
  EXPECT_EQ(temp_files(), 1u);
  start_registry(options());
  EXPECT_EQ(committed_blobs(), 1u);
  EXPECT_EQ(temp_files(), 0u);
  Reply file = get("/v1/models/" + id + "/versions/1/file", member1_);
  ASSERT_EQ(file.status, 200) << file;
  EXPECT_EQ(read_file(file.raw.body_file), fixture_);
}

}  // namespace
}  // namespace concord::inference::registry

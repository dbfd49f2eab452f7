// Nova's image proxy (/images, image metadata), os-simple-tenant-usage, os-server-password and
// the legacy extensions list (src/compute/service/api_proxy.cc).
//
// The image proxy is driven against an in-memory catalog that applies Glance's visibility and
// ownership rules; the real adapter over the image service is exercised end to end by Tempest
// (tests/tempest, the compute profile).
#include <map>
#include <set>

#include "catalog_test_util.h"
#include "compute/service/report.h"

namespace concord::compute::testing {
namespace {

// An image catalog holding images in memory with Glance's rules: a project sees its own
// images, public and community ones, and shared ones it is a member of (listing only accepted
// memberships, and never community images of others); only the owner's members (or an admin)
// change or delete an image; protected images are not deleted.
class GlanceLikeImages final : public ImageCatalog {
 public:
  struct Stored {
    ImageInfo info;
    std::map<std::string, std::string> members;  // project -> accepted | pending | rejected
    bool is_protected = false;
  };

  Result<ImageInfo> get(std::string_view id, const identity::AuthContext& caller) const override {
    return show(id, ImageAccess{caller, "", ""});
  }
  Result<ImageInfo> get_any(std::string_view id) const override {
    auto it = images.find(std::string(id));
    if (it == images.end()) return fail(Code::kNotFound, "no image");
    return it->second.info;
  }
  Result<http::Response> download(std::string_view) const override {
    return fail(Code::kNotFound, "no data");
  }

  Result<std::vector<ImageInfo>> list(const ImageAccess& access) const override {
    last_token = std::string(access.token);
    std::vector<ImageInfo> out;
    for (const auto& [id, s] : images) {
      const ImageInfo& im = s.info;
      const std::string& me = access.caller.project_id;
      auto m = s.members.find(me);
      bool listed =
          im.owner == me || im.visibility == "public" ||
          (im.visibility == "shared" && m != s.members.end() && m->second == "accepted") ||
          (access.caller.is_admin() && im.visibility != "community");
      if (listed) out.push_back(im);
    }
    std::sort(out.begin(), out.end(), [](const ImageInfo& a, const ImageInfo& b) {
      return a.created_at != b.created_at ? a.created_at > b.created_at : a.id > b.id;
    });
    return out;
  }
  Result<ImageInfo> show(std::string_view id, const ImageAccess& access) const override {
    last_token = std::string(access.token);
    auto it = images.find(std::string(id));
    if (it == images.end() || !visible(it->second, access.caller))
      return fail(Code::kNotFound, "No image found with ID " + std::string(id));
    return it->second.info;
  }
  Result<ImageInfo> update_properties(std::string_view id, const ImageAccess& access,
                                      const std::map<std::string, std::string>& set,
                                      const std::vector<std::string>& remove) const override {
    last_token = std::string(access.token);
    auto it = images.find(std::string(id));
    if (it == images.end() || !visible(it->second, access.caller))
      return fail(Code::kNotFound, "No image found with ID " + std::string(id));
    if (!owner(it->second, access.caller))
      return fail(Code::kPermissionDenied, "You are not permitted to modify image " + it->first);
    ImageInfo& im = it->second.info;
    for (const std::string& k : remove) {
      if (im.properties.erase(k) == 0)
        return fail(Code::kFailedPrecondition, "Property " + k + " does not exist.");
    }
    for (const auto& [k, v] : set) im.properties[k] = v;
    return im;
  }
  Status remove(std::string_view id, const ImageAccess& access) const override {
    last_token = std::string(access.token);
    auto it = images.find(std::string(id));
    if (it == images.end() || !visible(it->second, access.caller))
      return fail(Code::kNotFound, "No image found with ID " + std::string(id));
    if (!owner(it->second, access.caller))
      return fail(Code::kPermissionDenied, "You are not permitted to delete image " + it->first);
    if (it->second.is_protected)
      return fail(Code::kPermissionDenied, "Image " + it->first + " is protected");
    images.erase(it);
    return ok();
  }

  // The catalog is logically const for the API; tests change it between calls.
  mutable std::map<std::string, Stored> images;
  mutable std::string last_token;

 private:
  static bool visible(const Stored& s, const identity::AuthContext& caller) {
    const ImageInfo& im = s.info;
    return caller.is_admin() || im.owner == caller.project_id || im.visibility == "public" ||
           im.visibility == "community" ||
           (im.visibility == "shared" && s.members.contains(caller.project_id));
  }
  static bool owner(const Stored& s, const identity::AuthContext& caller) {
    return caller.is_admin() || (s.info.owner == caller.project_id && (caller.has_role("member")));
  }
};

class ProxyTest : public CatalogTest {
 protected:
  void SetUp() override {
    CatalogTest::SetUp();
    if (HasFatalFailure()) return;
    // The same frame as the fixture's, with the proxy routes and an image catalog that has
    // images; the identity mount is kept for tokens.
    router_ = http::Router();
    router_.mount("/identity", identity_->routes(), http::keystone_style_error);
    proxy_ctx_ =
        std::make_unique<ComputeContext>(ComputeContext{*store_, clock_, *identity_, glance_, {}});
    proxy_api_ = std::make_unique<NovaApi>(*proxy_ctx_);
    add_quota_routes(*proxy_api_);
    add_proxy_routes(*proxy_api_);
    router_.mount("/compute", proxy_api_->table(), nova_error);
  }
  void TearDown() override {
    proxy_api_.reset();
    proxy_ctx_.reset();
    CatalogTest::TearDown();
  }

  // An image owned by `owner`; `created` orders listings (newest first).
  std::string add_image(const std::string& id, const std::string& owner,
                        const std::string& visibility, const std::string& created,
                        const std::string& status = "active") {
    GlanceLikeImages::Stored s;
    s.info.id = id;
    s.info.name = "image-" + id.substr(0, 4);
    s.info.status = status;
    s.info.owner = owner;
    s.info.visibility = visibility;
    s.info.created_at = created;
    s.info.updated_at = created;
    s.info.size = 1024;
    s.info.min_ram = 64;
    s.info.min_disk = 1;
    glance_.images[id] = s;
    return id;
  }
  GlanceLikeImages::Stored& stored(const std::string& id) { return glance_.images.at(id); }

  std::vector<std::string> ids_of(const Json& images) const {
    std::vector<std::string> ids;
    for (const Json& i : images) ids.push_back(i["id"].get<std::string>());
    return ids;
  }

  GlanceLikeImages glance_;
  std::unique_ptr<ComputeContext> proxy_ctx_;
  std::unique_ptr<NovaApi> proxy_api_;
};

const std::string kImgA = "aaaaaaaa-0000-4000-8000-000000000001";
const std::string kImgB = "bbbbbbbb-0000-4000-8000-000000000002";
const std::string kImgC = "cccccccc-0000-4000-8000-000000000003";
const std::string kImgD = "dddddddd-0000-4000-8000-000000000004";
const std::string kImgE = "eeeeeeee-0000-4000-8000-000000000005";
const std::string kImgF = "ffffffff-0000-4000-8000-000000000006";

// ---------------- image proxy ----------------

TEST_F(ProxyTest, ListShowsWhatGlanceListsForTheCaller) {
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:01Z");
  add_image(kImgB, p2_, "public", "2026-01-01T00:00:02Z");
  add_image(kImgC, p2_, "shared", "2026-01-01T00:00:03Z");
  stored(kImgC).members[p1_] = "accepted";
  add_image(kImgD, p2_, "shared", "2026-01-01T00:00:04Z");
  stored(kImgD).members[p1_] = "pending";
  add_image(kImgE, p2_, "private", "2026-01-01T00:00:05Z");
  add_image(kImgF, p2_, "community", "2026-01-01T00:00:06Z");

  Reply r = get("/v2.1/images", member1_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(ids_of(r.body["images"]), (std::vector<std::string>{kImgC, kImgB, kImgA}));
  EXPECT_EQ(keys_of(r.body["images"][0]), sorted({"id", "links", "name"}));
  EXPECT_FALSE(r.body.contains("images_links"));
  EXPECT_EQ(glance_.last_token, member1_) << "the proxy must act with the caller's token";

  Reply d = get("/v2.1/images/detail", member2_);
  ASSERT_EQ(d.status, 200) << d;
  EXPECT_EQ(ids_of(d.body["images"]),
            (std::vector<std::string>{kImgF, kImgE, kImgD, kImgC, kImgB}));
}

TEST_F(ProxyTest, DetailMapsGlanceRecordToNovaShape) {
  add_image(kImgA, p1_, "private", "2026-01-01T10:00:00Z");
  stored(kImgA).info.updated_at = "2026-01-02T11:30:00.123456Z";
  stored(kImgA).info.properties = {{"os_distro", "debian"}, {"instance_uuid", "srv-1"}};
  Reply r = get("/v2.1/images/" + kImgA, member1_);
  ASSERT_EQ(r.status, 200) << r;
  const Json& im = r.body["image"];
  EXPECT_EQ(keys_of(im),
            sorted({"id", "name", "minRam", "minDisk", "metadata", "created", "updated", "status",
                    "progress", "links", "server", "OS-EXT-IMG-SIZE:size"}));
  EXPECT_EQ(im["status"], "ACTIVE");
  EXPECT_EQ(im["progress"], 100);
  EXPECT_EQ(im["minRam"], 64);
  EXPECT_EQ(im["minDisk"], 1);
  EXPECT_EQ(im["OS-EXT-IMG-SIZE:size"], 1024);
  EXPECT_EQ(im["created"], "2026-01-01T10:00:00Z");
  EXPECT_EQ(im["updated"], "2026-01-02T11:30:00Z");
  EXPECT_EQ(im["metadata"], Json({{"os_distro", "debian"}, {"instance_uuid", "srv-1"}}));
  EXPECT_EQ(im["server"]["id"], "srv-1");
  EXPECT_EQ(im["server"]["links"][0]["href"], "http://localhost:8774/compute/v2.1/servers/srv-1");
  ASSERT_EQ(im["links"].size(), 3u);
  EXPECT_EQ(im["links"][0]["href"], "http://localhost:8774/compute/v2.1/images/" + kImgA);
  EXPECT_EQ(im["links"][1]["href"], "http://localhost:8774/compute/images/" + kImgA);
  EXPECT_EQ(im["links"][2]["rel"], "alternate");
  EXPECT_EQ(im["links"][2]["type"], "application/vnd.openstack.image");
  EXPECT_EQ(im["links"][2]["href"], "http://localhost:8774/image/images/" + kImgA);
}

TEST_F(ProxyTest, StatusAndProgressFollowNovasMap) {
  const std::vector<std::tuple<std::string, std::string, int>> cases = {
      {"queued", "SAVING", 25}, {"saving", "SAVING", 50},      {"active", "ACTIVE", 100},
      {"killed", "ERROR", 0},   {"deactivated", "UNKNOWN", 0}, {"pending_delete", "DELETED", 0}};
  for (const auto& [glance, nova, progress] : cases) {
    add_image(kImgA, p1_, "private", "2026-01-01T00:00:00Z", glance);
    Reply r = get("/v2.1/images/" + kImgA, member1_);
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.body["image"]["status"], nova) << glance;
    EXPECT_EQ(r.body["image"]["progress"], progress) << glance;
  }
}

TEST_F(ProxyTest, ShowOfMissingOrInvisibleImageIs404) {
  add_image(kImgE, p2_, "private", "2026-01-01T00:00:00Z");
  Reply r = get("/v2.1/images/" + kImgA, member1_);
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.fault(), "itemNotFound");
  EXPECT_EQ(r.message(), "Image not found.");
  EXPECT_EQ(get("/v2.1/images/" + kImgE, member1_).status, 404);
  EXPECT_EQ(get("/v2.1/images/" + kImgE, admin_).status, 200);
  EXPECT_EQ(get("/v2.1/images/" + kImgE, "").status, 401);
}

TEST_F(ProxyTest, ListFilters) {
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:01Z");
  add_image(kImgB, p1_, "private", "2026-01-03T00:00:00Z", "queued");
  add_image(kImgC, p1_, "private", "2026-01-02T00:00:00Z");
  stored(kImgA).info.name = "alpha";
  stored(kImgA).info.properties = {{"instance_uuid", "srv-9"}, {"image_type", "snapshot"}};
  stored(kImgB).info.min_ram = 512;
  stored(kImgC).info.min_disk = 20;
  stored(kImgC).info.properties = {{"hw_arch", "x86_64"}};
  auto ids = [&](const std::string& query) {
    Reply r = get("/v2.1/images/detail?" + query, member1_);
    EXPECT_EQ(r.status, 200) << query << " " << r;
    return ids_of(r.body["images"]);
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids("name=alpha"), V{kImgA});
  EXPECT_EQ(ids("status=ACTIVE"), (V{kImgC, kImgA}));
  EXPECT_EQ(ids("status=saving"), V{}) << "queued is SAVING in the view but not 'saving' in Glance";
  EXPECT_EQ(ids("changes-since=2026-01-02T00:00:00Z"), (V{kImgB, kImgC}));
  EXPECT_EQ(ids("server=http%3A%2F%2Fh%2Fcompute%2Fv2.1%2Fservers%2Fsrv-9"), V{kImgA});
  EXPECT_EQ(ids("server=srv-9"), V{kImgA});
  EXPECT_EQ(ids("type=snapshot"), V{kImgA});
  EXPECT_EQ(ids("minRam=100"), V{kImgB});
  EXPECT_EQ(ids("minDisk=10"), V{kImgC});
  EXPECT_EQ(ids("property-hw_arch=x86_64"), V{kImgC});
  EXPECT_EQ(ids("unknown=1"), (V{kImgB, kImgC, kImgA}));

  Reply bad_time = get("/v2.1/images?changes-since=yesterday", member1_);
  EXPECT_EQ(bad_time.status, 400) << bad_time;
  EXPECT_EQ(bad_time.fault(), "badRequest");
  EXPECT_EQ(get("/v2.1/images?minRam=-1", member1_).status, 400);
  EXPECT_EQ(get("/v2.1/images?minDisk=x", member1_).status, 400);
}

TEST_F(ProxyTest, ListPagesWithLimitAndMarker) {
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:01Z");
  add_image(kImgB, p1_, "private", "2026-01-01T00:00:02Z");
  add_image(kImgC, p1_, "private", "2026-01-01T00:00:03Z");
  Reply first = get("/v2.1/images?limit=2", member1_);
  ASSERT_EQ(first.status, 200) << first;
  EXPECT_EQ(ids_of(first.body["images"]), (std::vector<std::string>{kImgC, kImgB}));
  ASSERT_TRUE(first.body.contains("images_links")) << first;
  EXPECT_EQ(first.body["images_links"][0]["rel"], "next");
  EXPECT_EQ(first.body["images_links"][0]["href"],
            "http://localhost:8774/compute/v2.1/images?limit=2&marker=" + kImgB);

  Reply second = get("/v2.1/images?limit=2&marker=" + kImgB, member1_);
  ASSERT_EQ(second.status, 200) << second;
  EXPECT_EQ(ids_of(second.body["images"]), std::vector<std::string>{kImgA});
  EXPECT_FALSE(second.body.contains("images_links"));

  Reply unknown = get("/v2.1/images?marker=" + kImgF, member1_);
  EXPECT_EQ(unknown.status, 400) << unknown;
  EXPECT_EQ(unknown.message(), "marker [" + kImgF + "] not found");
  EXPECT_EQ(get("/v2.1/images?limit=-1", member1_).message(), "limit param must be positive");
  EXPECT_EQ(get("/v2.1/images?limit=two", member1_).message(), "limit param must be an integer");
}

TEST_F(ProxyTest, ProxyIsGoneFrom236AndMetadataFrom239) {
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:00Z");
  EXPECT_EQ(get("/v2.1/images", member1_, "2.35").status, 200);
  EXPECT_EQ(get("/v2.1/images/" + kImgA, member1_, "2.35").status, 200);
  for (const std::string& path :
       std::vector<std::string>{"/v2.1/images", "/v2.1/images/detail", "/v2.1/images/" + kImgA}) {
    Reply r = get(path, member1_, "2.36");
    EXPECT_EQ(r.status, 404) << path << " " << r;
    EXPECT_EQ(r.fault(), "itemNotFound");
  }
  EXPECT_EQ(del("/v2.1/images/" + kImgA, member1_, "2.36").status, 404);
  EXPECT_TRUE(glance_.images.contains(kImgA)) << "a 404 must not have deleted anything";
  EXPECT_EQ(get("/v2.1/images/" + kImgA + "/metadata", member1_, "2.38").status, 200);
  EXPECT_EQ(get("/v2.1/images/" + kImgA + "/metadata", member1_, "2.39").status, 404);
  EXPECT_EQ(put("/v2.1/images/" + kImgA + "/metadata/k", {{"meta", {{"k", "v"}}}}, member1_, "2.39")
                .status,
            404);
  EXPECT_TRUE(stored(kImgA).info.properties.empty());
}

TEST_F(ProxyTest, DeleteFollowsGlanceOwnershipAndProtection) {
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:00Z");
  add_image(kImgB, p2_, "public", "2026-01-01T00:00:00Z");
  add_image(kImgC, p1_, "private", "2026-01-01T00:00:00Z");
  stored(kImgC).is_protected = true;

  Reply other = del("/v2.1/images/" + kImgB, member1_);
  EXPECT_EQ(other.status, 403) << other;
  EXPECT_EQ(other.message(), "You are not allowed to delete the image.");
  EXPECT_EQ(del("/v2.1/images/" + kImgC, member1_).status, 403);
  EXPECT_EQ(del("/v2.1/images/" + kImgD, member1_).status, 404);
  EXPECT_EQ(del("/v2.1/images/" + kImgA, reader1_).status, 403);

  Reply gone = del("/v2.1/images/" + kImgA, member1_);
  EXPECT_EQ(gone.status, 204) << gone;
  EXPECT_EQ(get("/v2.1/images/" + kImgA, member1_).status, 404);
  EXPECT_TRUE(glance_.images.contains(kImgB));
  EXPECT_TRUE(glance_.images.contains(kImgC));
}

TEST_F(ProxyTest, ImageMetadataCrud) {
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:00Z");
  const std::string base = "/v2.1/images/" + kImgA + "/metadata";
  Reply set_all =
      put(base, {{"metadata", {{"os_version", "1"}, {"os_distro", "debian"}}}}, member1_);
  ASSERT_EQ(set_all.status, 200) << set_all;
  EXPECT_EQ(set_all.body, Json({{"metadata", {{"os_version", "1"}, {"os_distro", "debian"}}}}));

  Reply merged = post(base, {{"metadata", {{"os_version", "2"}, {"arch", "x86_64"}}}}, member1_);
  ASSERT_EQ(merged.status, 200) << merged;
  EXPECT_EQ(merged.body["metadata"],
            Json({{"os_version", "2"}, {"os_distro", "debian"}, {"arch", "x86_64"}}));

  Reply replaced = put(base, {{"metadata", {{"arch", "arm64"}}}}, member1_);
  ASSERT_EQ(replaced.status, 200) << replaced;
  EXPECT_EQ(get(base, member1_).body, Json({{"metadata", {{"arch", "arm64"}}}}));

  Reply item = put(base + "/os_type", {{"meta", {{"os_type", "linux"}}}}, member1_);
  ASSERT_EQ(item.status, 200) << item;
  EXPECT_EQ(item.body, Json({{"meta", {{"os_type", "linux"}}}}));
  EXPECT_EQ(get(base + "/os_type", member1_).body, Json({{"meta", {{"os_type", "linux"}}}}));

  Reply missing = get(base + "/nope", member1_);
  EXPECT_EQ(missing.status, 404) << missing;
  EXPECT_EQ(missing.fault(), "itemNotFound");

  EXPECT_EQ(del(base + "/os_type", member1_).status, 204);
  EXPECT_EQ(get(base, member1_).body, Json({{"metadata", {{"arch", "arm64"}}}}));
  EXPECT_EQ(del(base + "/os_type", member1_).status, 404);
}

TEST_F(ProxyTest, ImageMetadataRejectsBadBodies) {
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:00Z");
  const std::string base = "/v2.1/images/" + kImgA + "/metadata";
  Reply mismatch = put(base + "/a", {{"meta", {{"b", "1"}}}}, member1_);
  EXPECT_EQ(mismatch.status, 400) << mismatch;
  EXPECT_EQ(mismatch.message(), "Request body and URI mismatch");
  Reply many = put(base + "/a", {{"meta", {{"a", "1"}, {"b", "2"}}}}, member1_);
  EXPECT_EQ(many.status, 400) << many;
  EXPECT_EQ(many.message(), "Request body contains too many items");
  EXPECT_EQ(post(base, {{"metadata", {{"", "x"}}}}, member1_).status, 400);
  EXPECT_EQ(post(base, {{"metadata", {{std::string(256, 'k'), "x"}}}}, member1_).status, 400);
  EXPECT_EQ(post(base, {{"metadata", {{"k", 5}}}}, member1_).status, 400);
  EXPECT_EQ(post(base, {{"metadata", {{"k", "v"}}}, {"extra", 1}}, member1_).status, 400);
  Reply core = post(base, {{"metadata", {{"visibility", "public"}}}}, member1_);
  EXPECT_EQ(core.status, 400) << core;
  EXPECT_EQ(stored(kImgA).info.visibility, "private");
  EXPECT_TRUE(stored(kImgA).info.properties.empty());
}

TEST_F(ProxyTest, ImageMetadataErrorsFromGlanceAndQuota) {
  add_image(kImgB, p2_, "public", "2026-01-01T00:00:00Z");
  add_image(kImgA, p1_, "private", "2026-01-01T00:00:00Z");
  const std::string base = "/v2.1/images/" + kImgA + "/metadata";
  // Another project's public image: visible, not changeable.
  Reply not_owner =
      post("/v2.1/images/" + kImgB + "/metadata", {{"metadata", {{"k", "v"}}}}, member1_);
  EXPECT_EQ(not_owner.status, 403) << not_owner;
  EXPECT_EQ(
      post("/v2.1/images/" + kImgD + "/metadata", {{"metadata", {{"k", "v"}}}}, member1_).status,
      404);
  EXPECT_EQ(get("/v2.1/images/" + kImgD + "/metadata", member1_).status, 404);
  EXPECT_EQ(del("/v2.1/images/" + kImgD + "/metadata/k", member1_).status, 404);

  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    auto n = tx.exec(
        "INSERT INTO compute_quotas (project_id, resource, hard_limit) VALUES (?, "
        "'metadata_items', 2)",
        {p1_});
    if (!n) return fail(n.error());
    return ok();
  }));
  EXPECT_EQ(post(base, {{"metadata", {{"a", "1"}, {"b", "2"}}}}, member1_).status, 200);
  Reply over = put(base + "/c", {{"meta", {{"c", "3"}}}}, member1_);
  EXPECT_EQ(over.status, 403) << over;
  EXPECT_EQ(over.message(), "Image metadata limit exceeded");
  EXPECT_EQ(put(base + "/a", {{"meta", {{"a", "9"}}}}, member1_).status, 200)
      << "replacing an existing key does not add an item";
  EXPECT_EQ(stored(kImgA).info.properties,
            (std::map<std::string, std::string>{{"a", "9"}, {"b", "2"}}));
}

TEST_F(ProxyTest, CatalogWithoutProxySupportIsAnInternalError) {
  identity::AuthContext caller;
  NoImages none;
  auto listed = none.list(ImageAccess{caller, "", ""});
  ASSERT_FALSE(listed.has_value());
  EXPECT_EQ(listed.error().code(), Code::kInternal);
  EXPECT_EQ(none.remove(kImgA, ImageAccess{caller, "", ""}).error().code(), Code::kInternal);
}

// ---------------- os-simple-tenant-usage ----------------

class UsageTest : public ProxyTest {
 protected:
  // A server launched (and maybe terminated) at the given times, with a flavor snapshot.
  void launch(const std::string& id, const std::string& project, const std::string& launched,
              std::optional<std::string> terminated = std::nullopt, int64_t created_ms = 0) {
    ServerRow s;
    s.id = id;
    s.project_id = project;
    s.user_id = "u";
    s.name = "srv-" + id;
    s.image_id = "img";
    s.flavor_id = "42";
    FlavorSnapshot f;
    f.id = "42";
    f.name = "c1.nano";
    f.vcpus = 2;
    f.ram_mb = 512;
    f.disk_gb = 1;
    f.ephemeral_gb = 2;
    s.flavor_json = to_json(f);
    s.vcpus = 2;
    s.ram_mb = 512;
    s.disk_gb = 1;
    s.hostname = s.name;
    s.reservation_id = "r-1";
    s.vm_state = std::string(terminated ? vm::kDeleted : vm::kActive);
    s.driver = "container";
    s.launched_at = launched;
    s.terminated_at = terminated;
    s.deleted = terminated.has_value();
    s.created_at = s.updated_at = launched;
    s.created_ms = created_ms;
    ASSERT_OK(store_->write([&](store::Tx& tx) { return insert_server(tx, s); }));
  }
  const std::string window_ = "start=2026-01-01T00:00:00&end=2026-01-02T00:00:00";
};

TEST_F(UsageTest, AdminIndexSumsEachTenantOverTheWindow) {
  // p1: one server for the whole window (24 h), one launched at 12:00 and terminated 18:00
  // (6 h); p2: one launched before the window and still running (24 h).
  launch("s1", p1_, "2026-01-01T00:00:00.000000Z", std::nullopt, 1);
  launch("s2", p1_, "2026-01-01T12:00:00.000000Z", "2026-01-01T18:00:00.000000Z", 2);
  launch("s3", p2_, "2025-12-31T00:00:00.000000Z", std::nullopt, 3);
  // Outside the window: terminated before it, launched after it.
  launch("s4", p1_, "2025-12-01T00:00:00.000000Z", "2025-12-02T00:00:00.000000Z", 4);
  launch("s5", p1_, "2026-01-03T00:00:00.000000Z", std::nullopt, 5);

  Reply r = get("/v2.1/os-simple-tenant-usage?detailed=1&" + window_, admin_);
  ASSERT_EQ(r.status, 200) << r;
  ASSERT_EQ(r.body["tenant_usages"].size(), 2u) << r;
  const Json& t1 = r.body["tenant_usages"][0];
  EXPECT_EQ(t1.size(), 8u) << t1;
  EXPECT_EQ(t1["tenant_id"], p1_);
  EXPECT_EQ(t1["start"], "2026-01-01T00:00:00");
  EXPECT_EQ(t1["stop"], "2026-01-02T00:00:00");
  EXPECT_DOUBLE_EQ(t1["total_hours"].get<double>(), 30.0);
  EXPECT_DOUBLE_EQ(t1["total_vcpus_usage"].get<double>(), 60.0);
  EXPECT_DOUBLE_EQ(t1["total_memory_mb_usage"].get<double>(), 512.0 * 30);
  EXPECT_DOUBLE_EQ(t1["total_local_gb_usage"].get<double>(), 3.0 * 30);
  ASSERT_EQ(t1["server_usages"].size(), 2u);
  const Json& s2 = t1["server_usages"][1];
  EXPECT_EQ(keys_of(s2),
            sorted({"ended_at", "flavor", "hours", "instance_id", "local_gb", "memory_mb", "name",
                    "started_at", "state", "tenant_id", "uptime", "vcpus"}));
  EXPECT_EQ(s2["instance_id"], "s2");
  EXPECT_EQ(s2["state"], "terminated");
  EXPECT_EQ(s2["flavor"], "c1.nano");
  EXPECT_EQ(s2["local_gb"], 3);
  EXPECT_EQ(s2["started_at"], "2026-01-01T12:00:00");
  EXPECT_EQ(s2["ended_at"], "2026-01-01T18:00:00");
  EXPECT_EQ(s2["uptime"], 6 * 3600);
  EXPECT_DOUBLE_EQ(s2["hours"].get<double>(), 6.0);
  EXPECT_EQ(t1["server_usages"][0]["state"], "active");
  EXPECT_TRUE(t1["server_usages"][0]["ended_at"].is_null());

  const Json& t2 = r.body["tenant_usages"][1];
  EXPECT_EQ(t2["tenant_id"], p2_);
  EXPECT_DOUBLE_EQ(t2["total_hours"].get<double>(), 24.0);

  Reply brief = get("/v2.1/os-simple-tenant-usage?" + window_, admin_);
  ASSERT_EQ(brief.status, 200) << brief;
  EXPECT_EQ(brief.body["tenant_usages"][0].size(), 7u);
  EXPECT_FALSE(brief.body["tenant_usages"][0].contains("server_usages"));
}

TEST_F(UsageTest, ShowIsForTheProjectsReadersAndAdmins) {
  launch("s1", p1_, "2026-01-01T06:00:00.000000Z", std::nullopt, 1);
  Reply mine = get("/v2.1/os-simple-tenant-usage/" + p1_ + "?" + window_, reader1_);
  ASSERT_EQ(mine.status, 200) << mine;
  EXPECT_EQ(mine.body["tenant_usage"].size(), 8u);
  EXPECT_DOUBLE_EQ(mine.body["tenant_usage"]["total_hours"].get<double>(), 18.0);
  EXPECT_EQ(mine.body["tenant_usage"]["server_usages"].size(), 1u);

  Reply other = get("/v2.1/os-simple-tenant-usage/" + p1_ + "?" + window_, member2_);
  EXPECT_EQ(other.status, 403) << other;
  EXPECT_EQ(other.fault(), "forbidden");
  EXPECT_EQ(get("/v2.1/os-simple-tenant-usage/" + p1_ + "?" + window_, admin_).status, 200);

  Reply empty = get("/v2.1/os-simple-tenant-usage/" + p2_ + "?" + window_, member2_);
  ASSERT_EQ(empty.status, 200) << empty;
  EXPECT_EQ(empty.body, Json({{"tenant_usage", Json::object()}}));
}

TEST_F(UsageTest, WindowEndsNowAtTheLatest) {
  // The fixture's FakeClock stands at 2027-01-15T08:00:00.
  launch("s1", p1_, "2027-01-15T06:00:00.000000Z", std::nullopt, 1);
  Reply r = get(
      "/v2.1/os-simple-tenant-usage/" + p1_ + "?start=2027-01-15T00:00:00&end=2027-01-16T00:00:00",
      member1_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["tenant_usage"]["stop"], "2027-01-15T08:00:00");
  EXPECT_DOUBLE_EQ(r.body["tenant_usage"]["total_hours"].get<double>(), 2.0);
  EXPECT_EQ(r.body["tenant_usage"]["server_usages"][0]["uptime"], 2 * 3600);
}

TEST_F(UsageTest, BadRequestsAndPolicy) {
  Reply reversed =
      get("/v2.1/os-simple-tenant-usage?start=2026-01-02T00:00:00&end=2026-01-01T00:00:00", admin_);
  EXPECT_EQ(reversed.status, 400) << reversed;
  EXPECT_EQ(reversed.message(),
            "Invalid start time. The start time cannot occur after the end time.");
  Reply malformed = get("/v2.1/os-simple-tenant-usage/" + p1_ + "?start=monday", admin_);
  EXPECT_EQ(malformed.status, 400) << malformed;
  // Nova's clients also send a space separated form.
  EXPECT_EQ(get("/v2.1/os-simple-tenant-usage?start=2026-01-01%2000:00:00.5&end=2026-01-02%2000:"
                "00:00",
                admin_)
                .status,
            200);
  Reply member = get("/v2.1/os-simple-tenant-usage?" + window_, member1_);
  EXPECT_EQ(member.status, 403) << member;
  Reply empty_id = get("/v2.1/os-simple-tenant-usage/?" + window_, admin_);
  EXPECT_EQ(empty_id.status, 404) << empty_id;
  Reply extra = get("/v2.1/os-simple-tenant-usage?bogus=1&" + window_, admin_, "2.75");
  EXPECT_EQ(extra.status, 400) << extra;
  EXPECT_EQ(get("/v2.1/os-simple-tenant-usage?bogus=1&" + window_, admin_, "2.74").status, 200);
}

TEST_F(UsageTest, PagingFrom240) {
  launch("s1", p1_, "2026-01-01T00:00:00.000000Z", std::nullopt, 1);
  launch("s2", p2_, "2026-01-01T00:00:00.000000Z", std::nullopt, 2);
  launch("s3", p1_, "2026-01-01T00:00:00.000000Z", std::nullopt, 3);

  Reply old = get("/v2.1/os-simple-tenant-usage?limit=1&" + window_, admin_, "2.39");
  ASSERT_EQ(old.status, 200) << old;
  EXPECT_EQ(old.body["tenant_usages"].size(), 2u) << "limit means nothing before 2.40";
  EXPECT_FALSE(old.body.contains("tenant_usages_links"));

  Reply page1 = get("/v2.1/os-simple-tenant-usage?detailed=1&limit=2&" + window_, admin_, "2.40");
  ASSERT_EQ(page1.status, 200) << page1;
  ASSERT_EQ(page1.body["tenant_usages"].size(), 2u);
  EXPECT_EQ(page1.body["tenant_usages"][0]["server_usages"][0]["instance_id"], "s1");
  EXPECT_EQ(page1.body["tenant_usages"][1]["server_usages"][0]["instance_id"], "s2");
  ASSERT_TRUE(page1.body.contains("tenant_usages_links")) << page1;
  std::string href = page1.body["tenant_usages_links"][0]["href"];
  EXPECT_TRUE(href.ends_with("&marker=s2")) << href;
  EXPECT_TRUE(href.starts_with("http://localhost:8774/compute/v2.1/os-simple-tenant-usage?"))
      << href;

  Reply page2 =
      get("/v2.1/os-simple-tenant-usage?detailed=1&limit=2&marker=s2&" + window_, admin_, "2.40");
  ASSERT_EQ(page2.status, 200) << page2;
  ASSERT_EQ(page2.body["tenant_usages"].size(), 1u);
  EXPECT_EQ(page2.body["tenant_usages"][0]["server_usages"][0]["instance_id"], "s3");
  EXPECT_FALSE(page2.body.contains("tenant_usages_links"));

  Reply show = get("/v2.1/os-simple-tenant-usage/" + p1_ + "?limit=1&" + window_, admin_, "2.40");
  ASSERT_EQ(show.status, 200) << show;
  EXPECT_EQ(show.body["tenant_usage"]["server_usages"].size(), 1u);
  EXPECT_TRUE(show.body.contains("tenant_usage_links"));

  Reply bad_marker = get("/v2.1/os-simple-tenant-usage?marker=nope&" + window_, admin_, "2.40");
  EXPECT_EQ(bad_marker.status, 400) << bad_marker;
  EXPECT_EQ(bad_marker.message(), "Marker nope could not be found.");
  EXPECT_EQ(get("/v2.1/os-simple-tenant-usage?limit=-3&" + window_, admin_, "2.40").status, 400);
}

// ---------------- os-server-password ----------------

TEST_F(UsageTest, ServerPasswordShowAndClear) {
  launch("s1", p1_, "2026-01-01T00:00:00.000000Z");
  const std::string path = "/v2.1/servers/s1/os-server-password";
  Reply none = get(path, reader1_);
  ASSERT_EQ(none.status, 200) << none;
  EXPECT_EQ(none.body, Json({{"password", ""}}));

  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    auto n = tx.exec(
        "INSERT INTO compute_server_passwords (server_id, password, updated_at) VALUES ('s1', "
        "'c2VjcmV0', 'now')");
    if (!n) return fail(n.error());
    return ok();
  }));
  EXPECT_EQ(get(path, member1_).body, Json({{"password", "c2VjcmV0"}}));

  Reply reader = del(path, reader1_);
  EXPECT_EQ(reader.status, 403) << reader;
  EXPECT_EQ(get(path, member1_).body["password"], "c2VjcmV0");
  Reply other = del(path, member2_);
  EXPECT_EQ(other.status, 404) << other;
  EXPECT_EQ(get(path, member2_).status, 404);

  Reply cleared = del(path, member1_);
  EXPECT_EQ(cleared.status, 204) << cleared;
  EXPECT_EQ(get(path, member1_).body, Json({{"password", ""}}));
  EXPECT_EQ(del(path, member1_).status, 204) << "clearing twice is not an error";
  EXPECT_EQ(get("/v2.1/servers/nope/os-server-password", admin_).status, 404);
}

TEST_F(UsageTest, ServerPasswordOfDeletedServerIs404) {
  launch("s9", p1_, "2026-01-01T00:00:00.000000Z", "2026-01-01T01:00:00.000000Z");
  Reply r = get("/v2.1/servers/s9/os-server-password", member1_);
  EXPECT_EQ(r.status, 404) << r;
  EXPECT_EQ(r.fault(), "itemNotFound");
}

// ---------------- extensions ----------------

TEST_F(ProxyTest, ExtensionsListAndShow) {
  Reply r = get("/v2.1/extensions", member1_);
  ASSERT_EQ(r.status, 200) << r;
  std::set<std::string> names, aliases;
  for (const Json& e : r.body["extensions"]) {
    EXPECT_EQ(keys_of(e), sorted({"alias", "description", "links", "name", "namespace", "updated"}))
        << e;
    names.insert(e["name"].get<std::string>());
    aliases.insert(e["alias"].get<std::string>());
  }
  EXPECT_TRUE(names.contains("Hosts"));
  EXPECT_TRUE(aliases.contains("os-consoles"));
  EXPECT_TRUE(aliases.contains("os-server-password"));
  EXPECT_EQ(aliases.size(), r.body["extensions"].size()) << "aliases are unique";

  Reply one = get("/v2.1/extensions/os-consoles", member1_);
  ASSERT_EQ(one.status, 200) << one;
  EXPECT_EQ(one.body["extension"]["alias"], "os-consoles");
  EXPECT_EQ(one.body["extension"]["name"], "Consoles");
  Reply missing = get("/v2.1/extensions/os-nothing", member1_);
  EXPECT_EQ(missing.status, 404) << missing;
  EXPECT_EQ(missing.fault(), "itemNotFound");
  EXPECT_EQ(get("/v2.1/extensions", "").status, 401);
}

}  // namespace
}  // namespace concord::compute::testing

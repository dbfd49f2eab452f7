// Images API: discovery, schemas, create/show/update/list and their bad input.
#include <regex>

#include "image_test_util.h"

namespace concord::image::testing {
namespace {

using http::Method;

class ImageApiTest : public ImageTest {};

TEST_F(ImageApiTest, VersionsDocumentIsMultipleChoices) {
  for (std::string path : {"/", "/versions"}) {
    Reply r = iget(path, "");
    ASSERT_EQ(r.status, 300) << r;
    ASSERT_TRUE(r.body["versions"].is_array());
    bool current = false;
    for (const Json& v : r.body["versions"]) {
      EXPECT_TRUE(v.contains("id") && v.contains("status") && v.contains("links"));
      EXPECT_EQ(v["links"][0]["href"], "http://localhost:9292/image/v2/");
      if (v["status"] == "CURRENT") current = true;
    }
    EXPECT_TRUE(current);
    EXPECT_EQ(r.body["versions"].back()["id"], "v2.0");
  }
}

TEST_F(ImageApiTest, SchemasAreNamedAndTyped) {
  Reply image = iget("/v2/schemas/image", admin_token());
  ASSERT_EQ(image.status, 200) << image;
  EXPECT_EQ(image.body["name"], "image");
  EXPECT_EQ(image.body["additionalProperties"]["type"], "string");
  EXPECT_EQ(image.body["properties"]["visibility"]["enum"].size(), 4u);
  EXPECT_EQ(image.body["properties"]["min_ram"]["type"], "integer");
  EXPECT_TRUE(image.body["properties"]["status"]["readOnly"].get<bool>());
  Reply images = iget("/v2/schemas/images", admin_token());
  EXPECT_EQ(images.body["name"], "images");
  EXPECT_EQ(images.body["properties"]["images"]["items"]["name"], "image");
  EXPECT_EQ(iget("/v2/schemas/member", admin_token()).body["name"], "member");
  EXPECT_EQ(iget("/v2/schemas/members", admin_token()).body["name"], "members");
  EXPECT_EQ(iget("/v2/schemas/image", "").status, 401);
}

TEST_F(ImageApiTest, CreateReturnsQueuedImageInGlanceShape) {
  make_tenants();
  Reply r = ipost("/v2/images",
                  {{"name", "cirros"},
                   {"disk_format", "qcow2"},
                   {"container_format", "bare"},
                   {"ramdisk_id", "3b6b5bd0-9a9b-4e6a-8f0a-3f1d8d3d8a77"},
                   {"hw_disk_bus", "virtio"},
                   {"owner_specified.openstack.md5", ""},
                   {"owner_specified.openstack.object", "images/cirros"},
                   {"tags", {"a", "b", "a"}}},
                  alpha_);
  ASSERT_EQ(r.status, 201) << r;
  const Json& b = r.body;
  std::string id = b["id"];
  EXPECT_EQ(b["status"], "queued");
  EXPECT_EQ(b["visibility"], "shared");
  EXPECT_EQ(b["owner"], alpha_project_);
  EXPECT_EQ(b["protected"], false);
  EXPECT_EQ(b["os_hidden"], false);
  EXPECT_TRUE(b["size"].is_null());
  EXPECT_TRUE(b["virtual_size"].is_null());
  EXPECT_TRUE(b["checksum"].is_null());
  EXPECT_FALSE(b.contains("direct_url"));
  EXPECT_FALSE(b.contains("publisher"));
  EXPECT_EQ(b["min_disk"], 0);
  EXPECT_EQ(b["tags"], Json({"a", "b"}));
  EXPECT_EQ(b["self"], "/v2/images/" + id);
  EXPECT_EQ(b["file"], "/v2/images/" + id + "/file");
  EXPECT_EQ(b["schema"], "/v2/schemas/image");
  EXPECT_EQ(b["ramdisk_id"], "3b6b5bd0-9a9b-4e6a-8f0a-3f1d8d3d8a77");
  EXPECT_EQ(b["owner_specified.openstack.object"], "images/cirros");
  std::regex ts("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ");
  EXPECT_TRUE(std::regex_match(b["created_at"].get<std::string>(), ts)) << b["created_at"];
  EXPECT_EQ(b["created_at"], b["updated_at"]);

  Reply show = iget("/v2/images/" + id, alpha_);
  ASSERT_EQ(show.status, 200) << show;
  EXPECT_EQ(show.body, b);
  // The reader of the project sees it but cannot create.
  EXPECT_EQ(iget("/v2/images/" + id, alpha_reader_).status, 200);
  EXPECT_EQ(ipost("/v2/images", {{"name", "x"}}, alpha_reader_).status, 403);
}

TEST_F(ImageApiTest, CreateWithChosenIdAndDuplicate) {
  std::string id = "8c1d1f5e-5b3a-4e1e-9d5c-0e2f1a3b4c5d";
  Reply r = ipost("/v2/images", {{"id", id}, {"name", "x"}}, admin_token());
  ASSERT_EQ(r.status, 201) << r;
  EXPECT_EQ(r.body["id"], id);
  Reply dup = ipost("/v2/images", {{"id", id}}, admin_token());
  EXPECT_EQ(dup.status, 409) << dup;
}

TEST_F(ImageApiTest, CreateRejectsBadInputWithGlanceStatuses) {
  make_tenants();
  struct Case {
    Json body;
    int status;
  };
  std::vector<Case> cases = {
      {{{"status", "active"}}, 403},
      {{{"size", 5}}, 403},
      {{{"checksum", "x"}}, 403},
      {{{"os_hash_value", "x"}}, 403},
      {{{"created_at", "x"}}, 403},
      {{{"self", "x"}}, 403},
      {{{"locations", Json::array()}}, 403},
      {{{"publisher", "acme"}}, 403},
      {{{"os_glance_import_task", "x"}}, 403},
      {{{"deleted", true}}, 403},
      {{{"name", 5}}, 400},
      {{{"name", std::string(256, 'n')}}, 400},
      {{{"protected", "yes"}}, 400},
      {{{"os_hidden", 1}}, 400},
      {{{"min_disk", -1}}, 400},
      {{{"min_ram", "512"}}, 400},
      {{{"min_ram", 1.5}}, 400},
      {{{"visibility", "everyone"}}, 400},
      {{{"disk_format", "floppy"}}, 400},
      {{{"container_format", "zip"}}, 400},
      {{{"tags", "a,b"}}, 400},
      {{{"tags", {1, 2}}}, 400},
      {{{"tags", {""}}}, 400},
      {{{"hw_cpu_cores", 4}}, 400},
      {{{"id", "not-a-uuid"}}, 400},
      {{{"id", 7}}, 400},
      {{{"visibility", "public"}}, 403},
      {{{"owner", "someone-else"}}, 403},
  };
  for (const Case& c : cases) {
    Reply r = ipost("/v2/images", c.body, alpha_);
    EXPECT_EQ(r.status, c.status) << c.body.dump() << " -> " << r;
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=UTF-8");
  }
  EXPECT_EQ(icall(Method::kPost, "/v2/images", "{bad json", alpha_, "application/json").status,
            400);
  EXPECT_EQ(icall(Method::kPost, "/v2/images", "[1]", alpha_, "application/json").status, 400);
  Json many = Json::object();
  for (int i = 0; i < 129; ++i) many["p" + std::to_string(i)] = "v";
  EXPECT_EQ(ipost("/v2/images", many, alpha_).status, 413);
  // Admins may publicize and choose the owner.
  Reply pub =
      ipost("/v2/images", {{"visibility", "public"}, {"owner", beta_project_}}, admin_token());
  ASSERT_EQ(pub.status, 201) << pub;
  EXPECT_EQ(pub.body["owner"], beta_project_);
}

TEST_F(ImageApiTest, ErrorsUseGlanceTextFormat) {
  Reply r = iget("/v2/images/not-a-uuid", admin_token());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "text/plain; charset=UTF-8");
  EXPECT_TRUE(r.raw.body.starts_with("404 Not Found\n\n")) << r.raw.body;
  Reply missing = iget("/v2/images/8c1d1f5e-5b3a-4e1e-9d5c-0e2f1a3b4c5d", admin_token());
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.raw.body.find("No image found with ID"), std::string::npos);
  Reply unknown_route = iget("/v2/nothing", admin_token());
  EXPECT_EQ(unknown_route.status, 404);
  EXPECT_EQ(unknown_route.header("content-type"), "text/plain; charset=UTF-8");
  // Tempest's "null id" cases: GET and DELETE /v2/images/ are 404, not the list.
  EXPECT_EQ(iget("/v2/images/", admin_token()).status, 404);
  EXPECT_EQ(idel("/v2/images/", admin_token()).status, 404);
  EXPECT_EQ(iget("/v2/images/?limit=1", admin_token()).status, 404);
  EXPECT_EQ(idel("/v2/images", admin_token()).status, 405);
  Reply no_token = iget("/v2/images", "");
  EXPECT_EQ(no_token.status, 401);
  EXPECT_EQ(iget("/v2/images", "garbage-token").status, 401);
}

TEST_F(ImageApiTest, PatchAppliesOperations) {
  make_tenants();
  std::string id = create(alpha_, {{"kernel_id", "k1"}});
  Reply r = ipatch("/v2/images/" + id,
                   {{{"op", "replace"}, {"path", "/name"}, {"value", "renamed"}},
                    {{"op", "add"}, {"path", "/hw_scsi_model"}, {"value", "virtio-scsi"}},
                    {{"op", "add"}, {"path", "/kernel_id"}, {"value", "k2"}},
                    {{"op", "add"}, {"path", "/a~1b"}, {"value", "slash"}},
                    {{"op", "replace"}, {"path", "/min_ram"}, {"value", 512}},
                    {{"op", "replace"}, {"path", "/tags"}, {"value", {"x"}}},
                    {{"op", "replace"}, {"path", "/visibility"}, {"value", "private"}},
                    {{"op", "replace"}, {"path", "/protected"}, {"value", true}}},
                   alpha_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.body["name"], "renamed");
  EXPECT_EQ(r.body["hw_scsi_model"], "virtio-scsi");
  EXPECT_EQ(r.body["kernel_id"], "k2");
  EXPECT_EQ(r.body["a/b"], "slash");
  EXPECT_EQ(r.body["min_ram"], 512);
  EXPECT_EQ(r.body["tags"], Json({"x"}));
  EXPECT_EQ(r.body["visibility"], "private");
  EXPECT_EQ(r.body["protected"], true);
  Reply removed = ipatch("/v2/images/" + id, {{{"op", "remove"}, {"path", "/kernel_id"}}}, alpha_);
  ASSERT_EQ(removed.status, 200) << removed;
  EXPECT_FALSE(removed.body.contains("kernel_id"));
  EXPECT_EQ(iget("/v2/images/" + id, alpha_).body, removed.body);
  Reply null_name = ipatch("/v2/images/" + id,
                           {{{"op", "replace"}, {"path", "/name"}, {"value", nullptr}}}, alpha_);
  ASSERT_EQ(null_name.status, 200) << null_name;
  EXPECT_TRUE(null_name.body["name"].is_null());
  // The older v2.0 patch form (Tempest's images client sends it): the operation is the key.
  Reply old_form = ipatch(
      "/v2/images/" + id,
      {{{"replace", "/name"}, {"value", "v20"}}, {{"add", "/color"}, {"value", "red"}}}, alpha_);
  ASSERT_EQ(old_form.status, 200) << old_form;
  EXPECT_EQ(old_form.body["name"], "v20");
  EXPECT_EQ(old_form.body["color"], "red");
  Reply remove_old = ipatch("/v2/images/" + id, {{{"remove", "/color"}}}, alpha_);
  ASSERT_EQ(remove_old.status, 200) << remove_old;
  EXPECT_FALSE(remove_old.body.contains("color"));
}

TEST_F(ImageApiTest, PatchRejectsBadOperations) {
  make_tenants();
  std::string id = create_active(alpha_);
  std::string path = "/v2/images/" + id;
  struct Case {
    Json ops;
    int status;
  };
  std::vector<Case> cases = {
      {{{{"op", "replace"}, {"path", "/status"}, {"value", "queued"}}}, 403},
      {{{{"op", "replace"}, {"path", "/size"}, {"value", 1}}}, 403},
      {{{{"op", "replace"}, {"path", "/id"}, {"value", "x"}}}, 403},
      {{{{"op", "add"}, {"path", "/locations"}, {"value", "x"}}}, 403},
      {{{{"op", "add"}, {"path", "/os_glance_x"}, {"value", "x"}}}, 403},
      {{{{"op", "remove"}, {"path", "/name"}}}, 403},
      {{{{"op", "replace"}, {"path", "/visibility"}, {"value", "public"}}}, 403},
      {{{{"op", "replace"}, {"path", "/disk_format"}, {"value", "qcow2"}}}, 403},
      {{{{"op", "replace"}, {"path", "/nope"}, {"value", "x"}}}, 409},
      {{{{"op", "remove"}, {"path", "/nope"}}}, 409},
      {{{{"op", "move"}, {"path", "/name"}, {"from", "/x"}}}, 400},
      {{{{"op", "replace"}, {"path", "/name"}}}, 400},
      {{{{"op", "replace"}, {"value", "x"}}}, 400},
      {{{{"path", "/name"}, {"value", "x"}}}, 400},
      {{{{"replace", "/name"}, {"add", "/name"}, {"value", "x"}}}, 400},  // two v2.0 operations
      {{{{"replace", 5}, {"value", "x"}}}, 400},
      {{{{"op", "add"}, {"path", "/a/b"}, {"value", "x"}}}, 400},
      {{{{"op", "add"}, {"path", "name"}, {"value", "x"}}}, 400},
      {{{{"op", "add"}, {"path", "/x~2"}, {"value", "x"}}}, 400},
      {{{{"op", "add"}, {"path", "/extra"}, {"value", 5}}}, 400},
      {{{{"op", "replace"}, {"path", "/min_disk"}, {"value", "big"}}}, 400},
      {{{{"op", "replace"}, {"path", "/visibility"}, {"value", "nobody"}}}, 400},
      {{{{"op", "replace"}, {"path", "/tags"}, {"value", "t"}}}, 400},
      {{1}, 400},
      {Json::object(), 400},
      {"text", 400},
  };
  for (const Case& c : cases) {
    Reply r = ipatch(path, c.ops, alpha_);
    EXPECT_EQ(r.status, c.status) << c.ops.dump() << " -> " << r;
  }
  // A failed operation applies nothing, even after earlier good ones in the same request.
  Reply partial = ipatch(path,
                         {{{"op", "replace"}, {"path", "/name"}, {"value", "changed"}},
                          {{"op", "replace"}, {"path", "/status"}, {"value", "queued"}}},
                         alpha_);
  EXPECT_EQ(partial.status, 403);
  EXPECT_EQ(iget(path, alpha_).body["name"], "img");
  EXPECT_EQ(icall(Method::kPatch, path, "[]", alpha_, "application/json").status, 415);
  EXPECT_EQ(icall(Method::kPatch, path, "[", alpha_, "application/openstack-images-v2.1-json-patch")
                .status,
            400);
  EXPECT_EQ(ipatch("/v2/images/not-a-uuid", Json::array(), alpha_).status, 404);
  // Admins may publicize.
  Reply pub = ipatch(path, {{{"op", "replace"}, {"path", "/visibility"}, {"value", "public"}}},
                     admin_token());
  EXPECT_EQ(pub.status, 200) << pub;
}

TEST_F(ImageApiTest, TagsPutAndDelete) {
  make_tenants();
  std::string id = create(alpha_);
  EXPECT_EQ(icall(Method::kPut, "/v2/images/" + id + "/tags/blue", "", alpha_).status, 204);
  EXPECT_EQ(icall(Method::kPut, "/v2/images/" + id + "/tags/blue", "", alpha_).status, 204);
  EXPECT_EQ(iget("/v2/images/" + id, alpha_).body["tags"], Json({"blue"}));
  EXPECT_EQ(idel("/v2/images/" + id + "/tags/blue", alpha_).status, 204);
  EXPECT_EQ(idel("/v2/images/" + id + "/tags/blue", alpha_).status, 404);
  EXPECT_EQ(
      icall(Method::kPut, "/v2/images/" + id + "/tags/" + std::string(256, 't'), "", alpha_).status,
      400);
  EXPECT_EQ(icall(Method::kPut, "/v2/images/" + id + "/tags/x", "", beta_).status, 404);
  EXPECT_EQ(icall(Method::kPut, "/v2/images/" + id + "/tags/x", "", alpha_reader_).status, 403);
  for (int i = 0; i < 128; ++i) {
    ASSERT_EQ(
        icall(Method::kPut, "/v2/images/" + id + "/tags/t" + std::to_string(i), "", alpha_).status,
        204);
  }
  EXPECT_EQ(icall(Method::kPut, "/v2/images/" + id + "/tags/one-more", "", alpha_).status, 413);
}

TEST_F(ImageApiTest, ListFiltersSortsAndPages) {
  make_tenants();
  std::string a = create_active(alpha_, {{"name", "aaa"}, {"tags", {"red"}}, {"os_distro", "deb"}},
                                std::string(100, 'a'));
  clock_.advance(std::chrono::seconds(1));
  std::string b = create_active(alpha_, {{"name", "bbb"}, {"disk_format", "iso"}},
                                std::string(32768, '\0') + "\1CD001" + std::string(100, 'b'));
  clock_.advance(std::chrono::seconds(1));
  std::string c = create(alpha_, {{"name", "ccc"},
                                  {"container_format", "ami"},
                                  {"disk_format", "ami"},
                                  {"tags", {"red", "blue"}}});
  clock_.advance(std::chrono::seconds(1));
  std::string hidden = create(alpha_, {{"name", "hidden"}, {"os_hidden", true}});
  create(beta_, {{"name", "beta-private"}, {"visibility", "private"}});

  auto ids = [&](const std::string& query) {
    Reply r = iget("/v2/images" + query, alpha_);
    EXPECT_EQ(r.status, 200) << query << " " << r;
    std::vector<std::string> out;
    for (const Json& im : r.body["images"]) out.push_back(im["id"]);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(""), (V{c, b, a}));  // newest first; hidden and beta's private excluded
  EXPECT_EQ(ids("?os_hidden=true"), V{hidden});
  EXPECT_EQ(ids("?name=bbb"), V{b});
  EXPECT_EQ(ids("?status=queued"), V{c});
  EXPECT_EQ(ids("?disk_format=iso"), V{b});
  EXPECT_EQ(ids("?container_format=ami"), V{c});
  EXPECT_EQ(ids("?size_min=101"), V{b});
  EXPECT_EQ(ids("?size_max=100"), V{a});
  EXPECT_EQ(ids("?size=100"), V{a});
  EXPECT_EQ(ids("?size=101"), V{});
  EXPECT_EQ(ids("?tag=red"), (V{c, a}));
  EXPECT_EQ(ids("?tag=red&tag=blue"), V{c});
  EXPECT_EQ(ids("?os_distro=deb"), V{a});
  EXPECT_EQ(ids("?owner=" + beta_project_), V{});
  EXPECT_EQ(ids("?visibility=shared"), (V{c, b, a}));
  EXPECT_EQ(ids("?visibility=public"), V{});
  EXPECT_EQ(ids("?sort_key=name&sort_dir=asc"), (V{a, b, c}));
  EXPECT_EQ(ids("?sort=name:desc"), (V{c, b, a}));
  EXPECT_EQ(ids("?sort=status:asc,name:desc"), (V{b, a, c}));
  EXPECT_EQ(ids("?sort_key=size&sort_dir=desc&sort_key=name"), (V{b, a, c}));

  Reply page1 = iget("/v2/images?limit=2&sort_key=name&sort_dir=asc", alpha_);
  ASSERT_EQ(page1.status, 200);
  ASSERT_EQ(page1.body["images"].size(), 2u);
  EXPECT_EQ(page1.body["first"], "/v2/images");
  EXPECT_EQ(page1.body["schema"], "/v2/schemas/images");
  std::string next = page1.body["next"];
  EXPECT_NE(next.find("marker=" + b), std::string::npos) << next;
  EXPECT_NE(next.find("limit=2"), std::string::npos) << next;
  Reply page2 = iget(next.substr(std::string("/v2/images").size()).insert(0, "/v2/images"), alpha_);
  ASSERT_EQ(page2.status, 200) << page2;
  ASSERT_EQ(page2.body["images"].size(), 1u);
  EXPECT_EQ(page2.body["images"][0]["id"], c);
  EXPECT_FALSE(page2.body.contains("next"));

  for (std::string bad :
       {"?limit=-1", "?limit=x", "?marker=8c1d1f5e-5b3a-4e1e-9d5c-0e2f1a3b4c5d", "?sort_key=bogus",
        "?sort_dir=up", "?sort=name:up", "?sort=bogus", "?sort=name&sort_key=id",
        "?visibility=bogus", "?size_min=x", "?size=big", "?size_max=-5", "?member_status=maybe",
        "?os_hidden=perhaps", "?size_min=10&size_max=5", "?sort_dir=asc&sort_dir=desc"}) {
    Reply r = iget("/v2/images" + bad, alpha_);
    EXPECT_EQ(r.status, 400) << bad << " " << r;
  }
}

// created_at / updated_at take Glance's "[op:]ISO time" filters; a value that is not a time or
// names an unknown operator is a 400, not a silent "no match".
TEST_F(ImageApiTest, ListFiltersByCreatedAndUpdatedTime) {
  make_tenants();
  std::string a = create(alpha_, {{"name", "old"}});
  clock_.advance(std::chrono::seconds(10));
  std::string b = create(alpha_, {{"name", "new"}});
  Reply shown = iget("/v2/images/" + b, alpha_);
  ASSERT_EQ(shown.status, 200) << shown;
  const std::string b_time = shown.body["created_at"];
  shown = iget("/v2/images/" + a, alpha_);
  ASSERT_EQ(shown.status, 200) << shown;
  const std::string a_time = shown.body["created_at"];
  ASSERT_NE(a_time, b_time);

  auto ids = [&](const std::string& query) {
    Reply r = iget("/v2/images" + query, alpha_);
    EXPECT_EQ(r.status, 200) << query << " " << r;
    std::vector<std::string> out;
    for (const Json& im : r.body["images"]) out.push_back(im["id"]);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids("?created_at=" + b_time), V{b});
  EXPECT_EQ(ids("?created_at=eq:" + a_time), V{a});
  EXPECT_EQ(ids("?created_at=gt:" + a_time), V{b});
  EXPECT_EQ(ids("?created_at=gte:" + a_time), (V{b, a}));
  EXPECT_EQ(ids("?created_at=lt:" + b_time), V{a});
  EXPECT_EQ(ids("?created_at=lte:" + b_time), (V{b, a}));
  EXPECT_EQ(ids("?created_at=neq:" + b_time), V{a});
  EXPECT_EQ(ids("?updated_at=gt:" + a_time), V{b});
  EXPECT_EQ(ids("?created_at=gte:" + a_time + "&created_at=lt:" + b_time), V{a});

  const std::vector<std::string> bad_filters = {
      "?created_at=yesterday", "?created_at=gt:yesterday",    "?updated_at=",
      "?created_at=gt:",       "?created_at=about:" + a_time, "?updated_at=2026-13-45T99:00:00Z"};
  for (const std::string& bad : bad_filters) {
    Reply r = iget("/v2/images" + bad, alpha_);
    EXPECT_EQ(r.status, 400) << bad << " " << r;
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=UTF-8") << bad;
  }
}

}  // namespace
}  // namespace concord::image::testing

// Visibility and members across two projects: what a tenant can see and touch.
#include "image_test_util.h"

namespace concord::image::testing {
namespace {

using http::Method;

class ImageSharingTest : public ImageTest {
 protected:
  void SetUp() override {
    ImageTest::SetUp();
    if (HasFatalFailure()) return;
    make_tenants();
  }
  std::vector<std::string> list_ids(const std::string& token, const std::string& query = "") {
    Reply r = iget("/v2/images" + query, token);
    EXPECT_EQ(r.status, 200) << r;
    std::vector<std::string> out;
    for (const Json& im : r.body["images"]) out.push_back(im["id"]);
    return out;
  }
  static bool has(const std::vector<std::string>& v, const std::string& id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  }
  Reply member_status(const std::string& id, const std::string& member, const std::string& status,
                      const std::string& token) {
    return icall(Method::kPut, "/v2/images/" + id + "/members/" + member,
                 dump_json({{"status", status}}), token, "application/json");
  }
};

TEST_F(ImageSharingTest, PrivateImageIsInvisibleToOtherProjects) {
  std::string id = create_active(alpha_, {{"visibility", "private"}});
  std::string p = "/v2/images/" + id;
  EXPECT_EQ(iget(p, beta_).status, 404);
  EXPECT_EQ(iget(p + "/file", beta_).status, 404);
  EXPECT_EQ(ipatch(p, {{{"op", "replace"}, {"path", "/name"}, {"value", "x"}}}, beta_).status, 404);
  EXPECT_EQ(idel(p, beta_).status, 404);
  EXPECT_EQ(iget(p + "/members", beta_).status, 404);
  EXPECT_EQ(ipost(p + "/members", {{"member", beta_project_}}, beta_).status, 404);
  EXPECT_FALSE(has(list_ids(beta_), id));
  EXPECT_FALSE(has(list_ids(beta_, "?visibility=private"), id));
  EXPECT_TRUE(has(list_ids(alpha_), id));
  EXPECT_TRUE(has(list_ids(admin_token()), id));
  EXPECT_EQ(iget(p, admin_token()).status, 200);
  auto lookup = images_->get_for_project(id, beta_project_, false);
  ASSERT_FALSE(lookup.has_value());
  EXPECT_EQ(lookup.error().code(), Code::kNotFound);
  EXPECT_TRUE(images_->get_for_project(id, beta_project_, true).has_value());
  // Members only exist on shared images.
  EXPECT_EQ(ipost(p + "/members", {{"member", beta_project_}}, alpha_).status, 403);
}

TEST_F(ImageSharingTest, SharedImageMembershipLifecycle) {
  std::string id = create_active(alpha_);  // default visibility: shared
  std::string p = "/v2/images/" + id;
  EXPECT_EQ(iget(p, beta_).status, 404);

  Reply added = ipost(p + "/members", {{"member", beta_project_}}, alpha_);
  ASSERT_EQ(added.status, 200) << added;
  EXPECT_EQ(added.body["status"], "pending");
  EXPECT_EQ(added.body["member_id"], beta_project_);
  EXPECT_EQ(added.body["image_id"], id);
  EXPECT_EQ(added.body["schema"], "/v2/schemas/member");
  EXPECT_EQ(ipost(p + "/members", {{"member", beta_project_}}, alpha_).status, 409);
  EXPECT_EQ(ipost(p + "/members", {{"member", 5}}, alpha_).status, 400);
  EXPECT_EQ(ipost(p + "/members", {{"nobody", "x"}}, alpha_).status, 400);
  EXPECT_EQ(icall(Method::kPost, p + "/members", "{", alpha_, "application/json").status, 400);

  // Pending: the member can show the image but it is not in its default list.
  EXPECT_EQ(iget(p, beta_).status, 200);
  EXPECT_FALSE(has(list_ids(beta_), id));
  EXPECT_TRUE(has(list_ids(beta_, "?member_status=pending&visibility=shared"), id));
  EXPECT_FALSE(images_->get_for_project(id, beta_project_, false).has_value());

  // Only the member decides; the owner cannot accept for it.
  EXPECT_EQ(member_status(id, beta_project_, "accepted", alpha_).status, 403);
  EXPECT_EQ(member_status(id, beta_project_, "maybe", beta_).status, 400);
  Reply accepted = member_status(id, beta_project_, "accepted", beta_);
  ASSERT_EQ(accepted.status, 200) << accepted;
  EXPECT_EQ(accepted.body["status"], "accepted");
  EXPECT_TRUE(has(list_ids(beta_), id));
  auto lookup = images_->get_for_project(id, beta_project_, false);
  ASSERT_TRUE(lookup.has_value());
  EXPECT_EQ(lookup->owner, alpha_project_);
  EXPECT_EQ(downloaded(iget(p + "/file", beta_)), "some raw disk bytes");

  // The member cannot change the image, nor manage members.
  EXPECT_EQ(ipatch(p, {{{"op", "replace"}, {"path", "/name"}, {"value", "x"}}}, beta_).status, 403);
  EXPECT_EQ(idel(p, beta_).status, 403);
  EXPECT_EQ(icall(Method::kPut, p + "/tags/t", "", beta_).status, 403);
  EXPECT_EQ(ipost(p + "/members", {{"member", "third"}}, beta_).status, 403);
  EXPECT_EQ(idel(p + "/members/" + beta_project_, beta_).status, 403);

  // Member views: the owner sees all members; a member sees itself only.
  ASSERT_EQ(ipost(p + "/members", {{"member", "third-project"}}, alpha_).status, 200);
  Reply owner_view = iget(p + "/members", alpha_);
  ASSERT_EQ(owner_view.status, 200);
  EXPECT_EQ(owner_view.body["members"].size(), 2u);
  EXPECT_EQ(owner_view.body["schema"], "/v2/schemas/members");
  Reply member_view = iget(p + "/members", beta_);
  ASSERT_EQ(member_view.status, 200);
  ASSERT_EQ(member_view.body["members"].size(), 1u);
  EXPECT_EQ(member_view.body["members"][0]["member_id"], beta_project_);
  EXPECT_EQ(iget(p + "/members/third-project", beta_).status, 404);
  EXPECT_EQ(iget(p + "/members/" + beta_project_, beta_).status, 200);
  EXPECT_EQ(iget(p + "/members/unknown", alpha_).status, 404);

  // Rejected: visible by id, not listed.
  EXPECT_EQ(member_status(id, beta_project_, "rejected", beta_).status, 200);
  EXPECT_FALSE(has(list_ids(beta_), id));

  // The owner removes the member: the image disappears for it.
  EXPECT_EQ(idel(p + "/members/" + beta_project_, alpha_).status, 204);
  EXPECT_EQ(idel(p + "/members/" + beta_project_, alpha_).status, 404);
  EXPECT_EQ(iget(p, beta_).status, 404);
}

TEST_F(ImageSharingTest, SharedToPrivateHidesFromMembers) {
  std::string id = create_active(alpha_);
  std::string p = "/v2/images/" + id;
  ASSERT_EQ(ipost(p + "/members", {{"member", beta_project_}}, alpha_).status, 200);
  ASSERT_EQ(member_status(id, beta_project_, "accepted", beta_).status, 200);
  ASSERT_EQ(ipatch(p, {{{"op", "replace"}, {"path", "/visibility"}, {"value", "private"}}}, alpha_)
                .status,
            200);
  EXPECT_EQ(iget(p, beta_).status, 404);
  EXPECT_FALSE(has(list_ids(beta_), id));
  EXPECT_FALSE(images_->get_for_project(id, beta_project_, false).has_value());
}

TEST_F(ImageSharingTest, PublicAndCommunityImages) {
  std::string pub = create_active(admin_token(), {{"visibility", "public"}});
  std::string community = create_active(alpha_, {{"visibility", "community"}});
  // Public: everyone sees and downloads; only the owner's project changes it.
  EXPECT_EQ(iget("/v2/images/" + pub, beta_).status, 200);
  EXPECT_TRUE(has(list_ids(beta_), pub));
  EXPECT_EQ(iget("/v2/images/" + pub + "/file", beta_).status, 200);
  EXPECT_EQ(
      ipatch("/v2/images/" + pub, {{{"op", "replace"}, {"path", "/name"}, {"value", "x"}}}, beta_)
          .status,
      403);
  EXPECT_EQ(idel("/v2/images/" + pub, beta_).status, 403);
  // Community: visible by id, listed only when asked for.
  EXPECT_EQ(iget("/v2/images/" + community, beta_).status, 200);
  EXPECT_FALSE(has(list_ids(beta_), community));
  EXPECT_TRUE(has(list_ids(beta_, "?visibility=community"), community));
  EXPECT_TRUE(has(list_ids(beta_, "?visibility=all"), community));
  EXPECT_TRUE(has(list_ids(alpha_), community));  // the owner's own
  EXPECT_TRUE(images_->get_for_project(community, beta_project_, false).has_value());
  EXPECT_EQ(idel("/v2/images/" + community, beta_).status, 403);
  // A member may not publicize its own image.
  EXPECT_EQ(ipatch("/v2/images/" + community,
                   {{{"op", "replace"}, {"path", "/visibility"}, {"value", "public"}}}, alpha_)
                .status,
            403);
}

TEST_F(ImageSharingTest, LookupRejectsNonUuidAndUnknown) {
  auto bad = images_->get_for_project("cirros", alpha_project_, true);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kNotFound);
  auto unknown = images_->get_for_project("8c1d1f5e-5b3a-4e1e-9d5c-0e2f1a3b4c5d", "", true);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
  std::string queued = create(alpha_, {{"hw_disk_bus", "scsi"}, {"min_disk", 3}});
  auto rec = images_->get_for_project(queued, alpha_project_, false);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->properties.at("hw_disk_bus"), "scsi");
  EXPECT_EQ(rec->min_disk, 3);
  EXPECT_EQ(images_->blob_path(*rec), "");
}

}  // namespace
}  // namespace concord::image::testing

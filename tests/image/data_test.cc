// Image data: upload, format verification, download, the status machine, deletion, usage
// events and crash recovery.
#include <filesystem>

#include "image_test_util.h"

namespace concord::image::testing {
namespace {

using http::Method;
namespace fs = std::filesystem;

class ImageDataTest : public ImageTest {
 protected:
  ImageOptions image_options() override {
    ImageOptions o = ImageTest::image_options();
    o.max_image_bytes = 1 << 20;
    return o;
  }
  // Runs qemu-img (tests only; the service never goes through a shell).
  std::string make_qcow2(const std::string& name, const std::string& extra = "") {
    std::string path = dir_.path() + "/" + name;
    std::string cmd = "qemu-img create -q -f qcow2 " + extra + " " + path + " 16M";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return read_file(path);
  }
  size_t blob_files() {
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_.path() + "/blobs/sha256")) {
      n += e.is_regular_file() ? 1 : 0;
    }
    return n;
  }
  std::vector<usage::StoredUsageEvent> usage_events() {
    std::vector<usage::StoredUsageEvent> out;
    auto st = store_->read([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(out, usage::list(tx, {}));
      return ok();
    });
    EXPECT_TRUE(st.has_value());
    return out;
  }
};

TEST_F(ImageDataTest, UploadActivatesWithChecksumsAndDownloadReturnsBytes) {
  make_tenants();
  std::string id = create(alpha_);
  Reply queued = iget("/v2/images/" + id + "/file", alpha_);
  EXPECT_EQ(queued.status, 204) << queued;
  EXPECT_TRUE(queued.raw.body.empty());

  Reply up = upload(id, "abc", alpha_);
  ASSERT_EQ(up.status, 204) << up;
  Reply show = iget("/v2/images/" + id, alpha_);
  EXPECT_EQ(show.body["status"], "active");
  EXPECT_EQ(show.body["size"], 3);
  EXPECT_EQ(show.body["virtual_size"], 3);
  EXPECT_EQ(show.body["checksum"], "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(show.body["os_hash_algo"], "sha512");
  EXPECT_EQ(show.body["os_hash_value"],
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c"
            "23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");

  Reply down = iget("/v2/images/" + id + "/file", alpha_);
  ASSERT_EQ(down.status, 200) << down;
  EXPECT_EQ(downloaded(down), "abc");
  EXPECT_EQ(down.header("content-md5"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(down.header("content-type"), "application/octet-stream");

  Reply again = upload(id, "more", alpha_);
  EXPECT_EQ(again.status, 409) << again;

  // The compute-facing lookup sees the same record and the blob.
  auto rec = images_->get_for_project(id, alpha_project_, false);
  ASSERT_TRUE(rec.has_value()) << rec.error().to_string();
  EXPECT_EQ(rec->status, "active");
  EXPECT_EQ(read_file(images_->blob_path(*rec)), "abc");
  EXPECT_EQ(rec->sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(ImageDataTest, UploadRejectsWrongContentTypeAndMissingFormats) {
  make_tenants();
  std::string id = create(alpha_);
  Reply r = icall(Method::kPut, "/v2/images/" + id + "/file", "abc", alpha_, "application/json");
  EXPECT_EQ(r.status, 415) << r;
  Reply unformatted = ipost("/v2/images", {{"name", "n"}}, alpha_);
  ASSERT_EQ(unformatted.status, 201);
  Reply no_formats = upload(unformatted.body["id"], "abc", alpha_);
  EXPECT_EQ(no_formats.status, 400) << no_formats;
  EXPECT_EQ(status_of(unformatted.body["id"]), "queued");
  EXPECT_EQ(upload("not-a-uuid", "abc", alpha_).status, 404);
  EXPECT_EQ(upload(id, "abc", beta_).status, 404);
  EXPECT_EQ(upload(id, "abc", alpha_reader_).status, 403);
  EXPECT_EQ(status_of(id), "queued");
}

TEST_F(ImageDataTest, TooLargeUploadIs413AndImageStaysQueued) {
  make_tenants();
  std::string id = create(alpha_);
  Reply r = upload(id, std::string((1 << 20) + 1, 'x'), alpha_);
  EXPECT_EQ(r.status, 413) << r;
  EXPECT_EQ(status_of(id), "queued");
  EXPECT_EQ(fs::directory_iterator(dir_.path() + "/blobs/tmp") == fs::directory_iterator(), true);
  EXPECT_EQ(upload(id, "fits", alpha_).status, 204);
}

TEST_F(ImageDataTest, FormatLiesAreRejected) {
  make_tenants();
  // A text file claimed to be qcow2.
  std::string fake = create(alpha_, {{"disk_format", "qcow2"}});
  Reply r1 = upload(fake, "just some text, not a disk image", alpha_);
  EXPECT_EQ(r1.status, 400) << r1;
  EXPECT_EQ(status_of(fake), "queued");

  // A real qcow2 claimed to be raw: refused (its header could name a host file).
  std::string qcow2 = make_qcow2("disk.qcow2");
  std::string raw_claim = create(alpha_, {{"disk_format", "raw"}});
  Reply r2 = upload(raw_claim, qcow2, alpha_);
  EXPECT_EQ(r2.status, 400) << r2;
  EXPECT_NE(r2.raw.body.find("qcow2"), std::string::npos) << r2.raw.body;
  EXPECT_EQ(status_of(raw_claim), "queued");

  // The same qcow2 honestly claimed: accepted, with qemu-img's virtual size.
  std::string honest = create(alpha_, {{"disk_format", "qcow2"}});
  Reply r3 = upload(honest, qcow2, alpha_);
  ASSERT_EQ(r3.status, 204) << r3;
  Reply shown = iget("/v2/images/" + honest, alpha_);
  EXPECT_EQ(shown.body["virtual_size"], 16 * 1024 * 1024);
  EXPECT_EQ(shown.body["size"], qcow2.size());

  // A qcow2 with a backing file is refused even when claimed as qcow2.
  std::string base = dir_.path() + "/disk.qcow2";
  std::string backed = make_qcow2("backed.qcow2", "-F qcow2 -b " + base);
  std::string backed_id = create(alpha_, {{"disk_format", "qcow2"}});
  Reply r4 = upload(backed_id, backed, alpha_);
  EXPECT_EQ(r4.status, 400) << r4;
  EXPECT_NE(r4.raw.body.find("backing"), std::string::npos) << r4.raw.body;

  // qcow2 data claimed as vmdk, and an ISO claim without the ISO signature.
  std::string vmdk_claim = create(alpha_, {{"disk_format", "vmdk"}});
  EXPECT_EQ(upload(vmdk_claim, qcow2, alpha_).status, 400);
  std::string iso_claim = create(alpha_, {{"disk_format", "iso"}});
  EXPECT_EQ(upload(iso_claim, "no signature here", alpha_).status, 400);
  // Kernel images are opaque.
  std::string kernel = create(alpha_, {{"disk_format", "aki"}, {"container_format", "aki"}});
  EXPECT_EQ(upload(kernel,
                   "\x7f"
                   "ELF kernel bytes",
                   alpha_)
                .status,
            204);
}

TEST_F(ImageDataTest, DockerContainerMustBeATarball) {
  make_tenants();
  std::string src = dir_.path() + "/rootfs";
  fs::create_directories(src + "/etc");
  write_file(src + "/etc/hostname", "box\n");
  std::string tar = dir_.path() + "/rootfs.tar";
  ASSERT_EQ(std::system(("tar -C " + src + " -cf " + tar + " etc").c_str()), 0);
  ASSERT_EQ(std::system(("gzip -k " + tar).c_str()), 0);

  std::string plain = create(alpha_, {{"container_format", "docker"}});
  EXPECT_EQ(upload(plain, read_file(tar), alpha_).status, 204);
  std::string gz = create(alpha_, {{"container_format", "docker"}});
  EXPECT_EQ(upload(gz, read_file(tar + ".gz"), alpha_).status, 204);
  std::string not_tar = create(alpha_, {{"container_format", "docker"}});
  Reply r = upload(not_tar, std::string(2048, 'z'), alpha_);
  EXPECT_EQ(r.status, 400) << r;
  EXPECT_EQ(status_of(not_tar), "queued");
  std::string wrong_disk =
      create(alpha_, {{"container_format", "docker"}, {"disk_format", "qcow2"}});
  EXPECT_EQ(upload(wrong_disk, read_file(tar), alpha_).status, 400);
}

TEST_F(ImageDataTest, DeactivateAndReactivate) {
  make_tenants();
  std::string id = create_active(alpha_);
  std::string path = "/v2/images/" + id + "/actions/";
  // The owner's member and the admin may; another project's member may not see it.
  EXPECT_EQ(icall(Method::kPost, path + "deactivate", "", beta_).status, 404);
  EXPECT_EQ(icall(Method::kPost, path + "deactivate", "", alpha_).status, 204);
  EXPECT_EQ(icall(Method::kPost, path + "reactivate", "", alpha_).status, 204);
  EXPECT_EQ(icall(Method::kPost, path + "deactivate", "", admin_token()).status, 204);
  EXPECT_EQ(status_of(id), "deactivated");
  EXPECT_EQ(icall(Method::kPost, path + "deactivate", "", admin_token()).status, 204);
  EXPECT_EQ(iget("/v2/images/" + id + "/file", alpha_).status, 403);
  Reply admin_down = iget("/v2/images/" + id + "/file", admin_token());
  EXPECT_EQ(admin_down.status, 200);
  EXPECT_EQ(downloaded(admin_down), "some raw disk bytes");
  EXPECT_EQ(icall(Method::kPost, path + "reactivate", "", admin_token()).status, 204);
  EXPECT_EQ(status_of(id), "active");
  EXPECT_EQ(iget("/v2/images/" + id + "/file", alpha_).status, 200);

  std::string queued = create(alpha_);
  EXPECT_EQ(icall(Method::kPost, "/v2/images/" + queued + "/actions/deactivate", "", admin_token())
                .status,
            403);
  EXPECT_EQ(icall(Method::kPost, "/v2/images/" + queued + "/actions/reactivate", "", admin_token())
                .status,
            403);
  EXPECT_EQ(icall(Method::kPost, "/v2/images/nope/actions/reactivate", "", admin_token()).status,
            404);
}

TEST_F(ImageDataTest, DeleteHonoursProtectionAndSharedBlobs) {
  make_tenants();
  std::string one = create_active(alpha_, Json::object(), "identical");
  std::string two = create_active(alpha_, Json::object(), "identical");
  EXPECT_EQ(blob_files(), 1u);
  EXPECT_EQ(ipatch("/v2/images/" + one,
                   {{{"op", "replace"}, {"path", "/protected"}, {"value", true}}}, alpha_)
                .status,
            200);
  EXPECT_EQ(idel("/v2/images/" + one, alpha_).status, 403);
  EXPECT_EQ(idel("/v2/images/" + two, beta_).status, 404);
  EXPECT_EQ(idel("/v2/images/" + two, alpha_reader_).status, 403);
  EXPECT_EQ(idel("/v2/images/" + two, alpha_).status, 204);
  EXPECT_EQ(iget("/v2/images/" + two, alpha_).status, 404);
  EXPECT_EQ(idel("/v2/images/" + two, alpha_).status, 404);
  EXPECT_EQ(blob_files(), 1u);  // still used by `one`
  EXPECT_EQ(iget("/v2/images/" + one + "/file", alpha_).status, 200);
  EXPECT_EQ(ipatch("/v2/images/" + one,
                   {{{"op", "replace"}, {"path", "/protected"}, {"value", false}}}, alpha_)
                .status,
            200);
  EXPECT_EQ(idel("/v2/images/" + one, alpha_).status, 204);
  EXPECT_EQ(blob_files(), 0u);
  // A queued image without data deletes too.
  EXPECT_EQ(idel("/v2/images/" + create(alpha_), alpha_).status, 204);
}

TEST_F(ImageDataTest, UsageEventsOnActivationAndDeletion) {
  make_tenants();
  std::string id = create_active(alpha_, Json::object(), "12345");
  clock_.advance(std::chrono::minutes(30));  // within the token lifetime
  ASSERT_EQ(idel("/v2/images/" + id, alpha_).status, 204);
  auto events = usage_events();
  ASSERT_EQ(events.size(), 2u);
  const auto& active = events[0].event;
  EXPECT_EQ(active.event_id, "image:" + id + ":active");
  EXPECT_EQ(active.resource_type, "image");
  EXPECT_EQ(active.kind, "image.storage");
  EXPECT_EQ(active.quantity, "5");
  EXPECT_EQ(active.project_id, alpha_project_);
  const auto& deleted = events[1].event;
  EXPECT_EQ(deleted.event_id, "image:" + id + ":deleted");
  EXPECT_EQ(deleted.quantity, "5");
  EXPECT_EQ(deleted.end - deleted.start, std::chrono::minutes(30));
}

TEST_F(ImageDataTest, RestartRecoversInterruptedUploads) {
  make_tenants();
  std::string id = create(alpha_);
  std::string kept = create_active(alpha_, Json::object(), "kept data");
  // What a kill -9 during an upload leaves: the image in `saving`, a temp file, and perhaps a
  // committed blob that no image references yet.
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(
        tx.exec("UPDATE image_images SET status = 'saving' WHERE id = ?", {id}));
    return ok();
  }));
  write_file(dir_.path() + "/blobs/tmp/partial", "half");
  std::string orphan = dir_.path() + "/blobs/sha256/00/00/" + std::string(64, '0');
  fs::create_directories(fs::path(orphan).parent_path());
  write_file(orphan, "orphan");
  EXPECT_EQ(status_of(id), "saving");
  start_images();
  EXPECT_EQ(status_of(id), "queued");
  EXPECT_FALSE(fs::exists(dir_.path() + "/blobs/tmp/partial"));
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_EQ(downloaded(iget("/v2/images/" + kept + "/file", alpha_)), "kept data");
  EXPECT_EQ(upload(id, "retry", alpha_).status, 204);
}

TEST_F(ImageDataTest, UploadToAnImageAlreadySavingConflicts) {
  make_tenants();
  std::string id = create(alpha_);
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(
        tx.exec("UPDATE image_images SET status = 'saving' WHERE id = ?", {id}));
    return ok();
  }));
  // An upload to an image already saving is a conflict.
  EXPECT_EQ(upload(id, "x", alpha_).status, 409);
}

}  // namespace
}  // namespace concord::image::testing

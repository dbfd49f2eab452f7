#include <gtest/gtest.h>

#include <filesystem>

#include "compute/driver/driver.h"
#include "compute/driver/process.h"
#include "compute/driver/util.h"

namespace concord::compute::driver {
namespace {

class ConfigDriveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/config-drive-test-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Extracts the ISO with xorriso (an independent reader) into dir_/x.
  std::string extract(const std::string& iso) {
    auto r =
        run_process({"xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", dir_ + "/x"});
    EXPECT_TRUE(r.has_value() && r->ok()) << (r ? r->describe("xorriso") : r.error().to_string());
    return dir_ + "/x";
  }

  std::string dir_;
};

TEST_F(ConfigDriveTest, HoldsOpenStackLayoutWithLabelConfig2) {
  InstanceSpec spec;
  spec.id = "0e3c6b8e-6a43-4a43-9a8e-3f1c0e7f1a11";
  spec.hostname = "web-1";
  // Binary bytes (NUL, 0xff) must survive: gzip user data is common.
  spec.guest.user_data =
      std::string("#cloud-config\nbinary:") + std::string("\x01\xff\0", 3) + "end";
  spec.guest.meta_data_json =
      R"({"uuid": "0e3c6b8e-6a43-4a43-9a8e-3f1c0e7f1a11", "hostname": "web-1"})";
  spec.guest.network_data_json = R"({"links": [{"id": "tap0"}], "networks": [], "services": []})";
  auto iso = build_config_drive(dir_, spec);
  ASSERT_TRUE(iso.has_value()) << iso.error().to_string();
  EXPECT_EQ(*iso, dir_ + "/config.iso");

  auto info = run_process({"xorriso", "-indev", *iso, "-pvd_info"});
  ASSERT_TRUE(info.has_value());
  EXPECT_NE((info->out + info->err).find("config-2"), std::string::npos) << info->out << info->err;

  std::string x = extract(*iso);
  EXPECT_EQ(read_file(x + "/openstack/latest/meta_data.json").value(), spec.guest.meta_data_json);
  EXPECT_EQ(read_file(x + "/openstack/latest/user_data").value(), spec.guest.user_data);
  EXPECT_EQ(read_file(x + "/openstack/latest/network_data.json").value(),
            spec.guest.network_data_json);
  EXPECT_EQ(read_file(x + "/openstack/latest/vendor_data.json").value(), "{}");
  EXPECT_EQ(read_file(x + "/openstack/2012-08-10/meta_data.json").value(),
            spec.guest.meta_data_json);
  EXPECT_EQ(read_file(x + "/openstack/2012-08-10/user_data").value(), spec.guest.user_data);
  EXPECT_FALSE(path_exists(x + "/openstack/2012-08-10/network_data.json"));
  EXPECT_TRUE(path_exists(x + "/openstack/2015-10-15/network_data.json"));
  // No staging leftovers beside the ISO.
  EXPECT_FALSE(path_exists(dir_ + "/.config-drive.stage"));
  EXPECT_FALSE(path_exists(dir_ + "/.config.iso.tmp"));
}

TEST_F(ConfigDriveTest, FillsMetaDataAndOmitsEmptyUserData) {
  InstanceSpec spec;
  spec.id = "abc";
  spec.hostname = "h1";
  auto iso = build_config_drive(dir_, spec);
  ASSERT_TRUE(iso.has_value()) << iso.error().to_string();
  std::string x = extract(*iso);
  auto meta = read_file(x + "/openstack/latest/meta_data.json");
  ASSERT_TRUE(meta.has_value());
  EXPECT_NE(meta->find(R"("hostname":"h1")"), std::string::npos) << *meta;
  EXPECT_NE(meta->find(R"("uuid":"abc")"), std::string::npos) << *meta;
  EXPECT_FALSE(path_exists(x + "/openstack/latest/user_data"));
  // Rebuilding replaces the previous ISO in place.
  spec.hostname = "h2";
  ASSERT_TRUE(build_config_drive(dir_, spec).has_value());
  std::filesystem::remove_all(dir_ + "/x");
  x = extract(*iso);
  EXPECT_NE(read_file(x + "/openstack/latest/meta_data.json")->find("h2"), std::string::npos);
}

TEST_F(ConfigDriveTest, RejectsBadId) {
  InstanceSpec spec;
  spec.id = "../x";
  auto iso = build_config_drive(dir_, spec);
  ASSERT_FALSE(iso.has_value());
  EXPECT_EQ(iso.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace concord::compute::driver

// The VM driver against real QEMU (TCG here), as root, with the fixture disk image. Slow: each
// boot takes seconds under TCG, so these carry the `slow` label.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "base/random.h"
#include "compute/driver/driver.h"
#include "compute/driver/util.h"
#include "test_support.h"

namespace concord::compute::driver {
namespace {

using namespace std::chrono_literals;
using testing::count_of;
using testing::eventually;
using testing::image;
using testing::TempDir;

// Boots under TCG on a shared machine: generous, never a speed gate.
constexpr auto kBootWait = 120s;

// Pids of processes whose command line names `needle`.
std::vector<pid_t> processes_naming(const std::string& needle) {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    pid_t pid = std::atoi(name.c_str());
    if (process_alive(pid) && process_cmdline(pid).find(needle) != std::string::npos &&
        pid != ::getpid()) {
      pids.push_back(pid);
    }
  }
  return pids;
}

std::string tcp_read(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

class VmDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the VM tests run as root";
    ASSERT_TRUE(path_exists(image("vm-disk.raw")))
        << "fixture missing: run tests/fixtures/build-images.sh " << testing::images_dir();
    options_.state_dir = tmp_.path();
    auto d = make_vm_driver(options_);
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    driver_ = std::move(*d);
  }

  void TearDown() override {
    if (driver_ == nullptr) return;
    for (const auto& id : created_) (void)driver_->destroy(id);
  }

  InstanceSpec spec(const std::string& kind = "raw") {
    InstanceSpec s;
    s.id = new_uuid();
    s.hostname = "vm-" + s.id.substr(0, 8);
    s.image_path = image(kind == "raw" ? "vm-disk.raw" : "vm-disk.qcow2");
    s.image_kind = kind;
    s.ram_mb = 256;
    s.disk_gb = 1;
    created_.push_back(s.id);
    return s;
  }

  std::string console(const std::string& id) {
    auto log = driver_->console_log(id, 1 << 16);
    return log ? *log : std::string();
  }

  bool console_has(const std::string& id, const std::string& text, size_t times = 1) {
    return eventually([&] { return count_of(console(id), text) >= times; }, kBootWait);
  }

  PowerState power(const std::string& id) {
    auto s = driver_->status(id);
    return s ? s->power : PowerState::kNoState;
  }

  TempDir tmp_;
  DriverOptions options_;
  std::unique_ptr<Driver> driver_;
  std::vector<std::string> created_;
};

TEST_F(VmDriverTest, ProbeFallsBackToTcgUnlessKvmReallyRuns) {
  Capabilities caps = driver_->probe();
  ASSERT_TRUE(caps.usable) << caps.reason;
  EXPECT_FALSE(caps.reason.empty());
  if (caps.accel == "kvm") {
    EXPECT_TRUE(caps.kvm);
  } else {
    // The development machines: /dev/kvm exists but guests never run under it.
    EXPECT_EQ(caps.accel, "tcg") << caps.reason;
    EXPECT_FALSE(caps.kvm);
  }
  // Cached: the same answer again.
  Capabilities again = driver_->probe();
  EXPECT_EQ(again.accel, caps.accel);
  EXPECT_EQ(again.kvm, caps.kvm);
  EXPECT_EQ(again.reason, caps.reason);
}

TEST_F(VmDriverTest, LifecycleBootStopStartRebootAdoptDestroy) {
  InstanceSpec s = spec();
  s.network = "auto";
  std::string marker = "#marker-" + s.id.substr(0, 8);
  s.guest.user_data = marker + "\n";
  auto created = driver_->create(s);
  ASSERT_TRUE(created.has_value()) << created.error().to_string();
  auto boot_start = std::chrono::steady_clock::now();
  ASSERT_TRUE(console_has(s.id, "concord-guest: hello from the vm")) << console(s.id);
  auto boot_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - boot_start);
  std::cout << "[ info ] TCG boot to the known line: about " << boot_ms.count()
            << " ms after create() returned\n";
  // The config drive reached the guest.
  EXPECT_TRUE(console_has(s.id, "hostname=" + s.hostname)) << console(s.id);
  EXPECT_TRUE(console_has(s.id, "concord-guest: user-data: " + marker)) << console(s.id);

  auto st = driver_->status(s.id);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->power, PowerState::kRunning) << st->detail;
  ASSERT_EQ(st->addresses.size(), 1u);
  EXPECT_EQ(st->addresses[0].addr, "10.0.2.15");
  ASSERT_EQ(st->addresses[0].forwarded_ports.size(), 1u);
  int port = st->addresses[0].forwarded_ports[0].first;
  EXPECT_EQ(st->addresses[0].forwarded_ports[0].second, 22);
  std::string expected = "concord-guest: tcp hello from " + s.hostname;
  EXPECT_TRUE(
      eventually([&] { return tcp_read(port).find(expected) != std::string::npos; }, kBootWait))
      << console(s.id);
  std::string name = "concord-" + s.id;
  EXPECT_EQ(processes_naming(name).size(), 1u);

  // Adoption: a restarted agent sees the running VM.
  auto other = make_vm_driver(options_);
  ASSERT_TRUE(other.has_value());
  auto ids = (*other)->list();
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(*ids, std::vector<std::string>{s.id});
  auto adopted = (*other)->status(s.id);
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->power, PowerState::kRunning) << adopted->detail;

  // Graceful stop: ACPI power-down through QMP; the fixture guest powers off.
  ASSERT_TRUE(console_has(s.id, "concord-guest: ready")) << console(s.id);
  auto stopped = driver_->stop(s.id, 60s);
  ASSERT_TRUE(stopped.has_value()) << stopped.error().to_string();
  EXPECT_EQ(power(s.id), PowerState::kShutdown);
  EXPECT_TRUE(processes_naming(name).empty());
  EXPECT_NE(console(s.id).find("ACPI power button"), std::string::npos) << console(s.id);

  ASSERT_TRUE(driver_->start(s.id).has_value());
  EXPECT_EQ(power(s.id), PowerState::kRunning);
  EXPECT_TRUE(console_has(s.id, "concord-guest: hello from the vm", 2)) << console(s.id);
  // Same forwarded port after the restart.
  auto restarted = driver_->status(s.id);
  ASSERT_TRUE(restarted.has_value() && restarted->addresses.size() == 1);
  EXPECT_EQ(restarted->addresses[0].forwarded_ports[0].first, port);

  // Hard reboot: system_reset, same QEMU process.
  auto pids = processes_naming(name);
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_TRUE(console_has(s.id, "concord-guest: ready", 2)) << console(s.id);
  ASSERT_TRUE(driver_->reboot(s.id, true).has_value());
  EXPECT_TRUE(console_has(s.id, "concord-guest: hello from the vm", 3)) << console(s.id);
  EXPECT_EQ(processes_naming(name), pids);

  // Forced stop of a guest given no grace.
  ASSERT_TRUE(driver_->stop(s.id, 0ms).has_value());
  EXPECT_TRUE(processes_naming(name).empty());

  ASSERT_TRUE(driver_->start(s.id).has_value());
  ASSERT_TRUE(driver_->destroy(s.id).has_value());
  EXPECT_TRUE(processes_naming(name).empty());
  EXPECT_FALSE(path_exists(tmp_.path() + "/vm/" + s.id));
  EXPECT_TRUE(driver_->destroy(s.id).has_value());
  auto gone = driver_->status(s.id);
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->exists);
}

TEST_F(VmDriverTest, KilledQemuShowsShutdownAndStartsAgain) {
  InstanceSpec s = spec("qcow2");
  ASSERT_TRUE(driver_->create(s).has_value());
  ASSERT_TRUE(console_has(s.id, "concord-guest: hello from the vm")) << console(s.id);
  auto pids = processes_naming("concord-" + s.id);
  ASSERT_EQ(pids.size(), 1u);
  ::kill(pids[0], SIGKILL);
  EXPECT_TRUE(eventually([&] { return power(s.id) == PowerState::kShutdown; }, 30s));
  ASSERT_TRUE(driver_->create(s).has_value());  // the agent's retry converges
  EXPECT_EQ(power(s.id), PowerState::kRunning);
  EXPECT_TRUE(console_has(s.id, "concord-guest: hello from the vm", 2)) << console(s.id);
}

TEST_F(VmDriverTest, ResizeRestartsWithTheNewFlavorAndRebuildKeepsTheForward) {
  InstanceSpec s = spec();
  s.network = "auto";
  ASSERT_TRUE(driver_->create(s).has_value());
  ASSERT_TRUE(console_has(s.id, "concord-guest: ready")) << console(s.id);
  std::string name = "concord-" + s.id;

  InstanceSpec bigger = s;
  bigger.vcpus = 2;
  bigger.ram_mb = 384;
  bigger.disk_gb = 2;
  auto resized = driver_->resize(bigger);
  ASSERT_TRUE(resized.has_value()) << resized.error().to_string();
  auto pids = processes_naming(name);
  ASSERT_EQ(pids.size(), 1u);
  std::string cmdline = process_cmdline(pids[0]);
  EXPECT_NE(cmdline.find(" -smp 2 "), std::string::npos) << cmdline;
  EXPECT_NE(cmdline.find(" -m 384 "), std::string::npos) << cmdline;
  EXPECT_TRUE(console_has(s.id, "concord-guest: hello from the vm", 2)) << console(s.id);
  auto shrink = bigger;
  shrink.disk_gb = 1;
  EXPECT_EQ(driver_->resize(shrink).error().code(), Code::kInvalidArgument);

  auto before = driver_->status(s.id);
  ASSERT_TRUE(before.has_value() && before->addresses.size() == 1);
  InstanceSpec rebuilt = bigger;
  rebuilt.image_path = image("vm-disk.qcow2");
  rebuilt.image_kind = "qcow2";
  rebuilt.guest.user_data = "#rebuilt\n";
  auto r = driver_->rebuild(rebuilt);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(console_has(s.id, "concord-guest: user-data: #rebuilt")) << console(s.id);
  auto after = driver_->status(s.id);
  ASSERT_TRUE(after.has_value() && after->addresses.size() == 1);
  EXPECT_EQ(after->addresses[0].forwarded_ports, before->addresses[0].forwarded_ports);
  EXPECT_EQ(after->power, PowerState::kRunning);
}

TEST_F(VmDriverTest, DirectKernelBootWithoutNetworkOrConfigDrive) {
  InstanceSpec s = spec();
  s.kernel_path = image("vm-kernel");
  s.ramdisk_path = image("vm-initrd");
  s.config_drive = false;
  s.network = "none";
  ASSERT_TRUE(driver_->create(s).has_value());
  EXPECT_TRUE(console_has(s.id, "concord-guest: hello from the vm")) << console(s.id);
  EXPECT_TRUE(console_has(s.id, "concord-guest: no config drive")) << console(s.id);
  auto st = driver_->status(s.id);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->addresses.empty());
  EXPECT_FALSE(path_exists(tmp_.path() + "/vm/" + s.id + "/config.iso"));
}

TEST_F(VmDriverTest, RejectsBadSpecsWithSpecificCodes) {
  InstanceSpec s = spec();
  s.image_kind = "rootfs-tar";
  EXPECT_EQ(driver_->create(s).error().code(), Code::kInvalidArgument);
  s = spec();
  s.image_path = tmp_.path() + "/missing.raw";
  EXPECT_EQ(driver_->create(s).error().code(), Code::kFailedPrecondition);
  s = spec();
  s.id = "a/b";
  EXPECT_EQ(driver_->create(s).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(driver_->start("never-created").error().code(), Code::kNotFound);
  EXPECT_EQ(driver_->stop("never-created", 1s).error().code(), Code::kNotFound);
  EXPECT_EQ(driver_->console_log("never-created", 10).error().code(), Code::kNotFound);
  auto st = driver_->status("never-created");
  ASSERT_TRUE(st.has_value());
  EXPECT_FALSE(st->exists);
}

}  // namespace
}  // namespace concord::compute::driver

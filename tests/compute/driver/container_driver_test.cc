// The container driver against real runc, as root, with the busybox fixture image.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/random.h"
#include "compute/driver/driver.h"
#include "compute/driver/net.h"
#include "compute/driver/process.h"
#include "compute/driver/util.h"
#include "test_support.h"

namespace concord::compute::driver {
namespace {

using namespace std::chrono_literals;
using testing::count_of;
using testing::eventually;
using testing::image;
using testing::TempDir;

class ContainerDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the container driver needs root";
    ASSERT_TRUE(path_exists(image("busybox-rootfs.tar")))
        << "fixture missing: run tests/fixtures/build-images.sh " << testing::images_dir();
    options_.state_dir = tmp_.path();
    auto d = make_container_driver(options_);
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    driver_ = std::move(*d);
  }

  void TearDown() override {
    if (driver_ == nullptr) return;
    for (const auto& id : created_) (void)driver_->destroy(id);
  }

  InstanceSpec spec(const std::string& network = "none") {
    InstanceSpec s;
    s.id = new_uuid();
    s.hostname = "ct-" + s.id.substr(0, 8);
    s.image_path = image("busybox-rootfs.tar");
    s.image_kind = "rootfs-tar";
    s.network = network;
    s.ram_mb = 64;
    created_.push_back(s.id);
    return s;
  }

  std::string console(const std::string& id) {
    auto log = driver_->console_log(id, 1 << 16);
    return log ? *log : std::string();
  }

  bool console_has(const std::string& id, const std::string& text, size_t times = 1) {
    return eventually([&] { return count_of(console(id), text) >= times; });
  }

  PowerState power(const std::string& id) {
    auto s = driver_->status(id);
    return s ? s->power : PowerState::kNoState;
  }

  // The container's init pid, from runc.
  pid_t init_pid(const std::string& id) {
    auto r = run_process({"runc", "--root", tmp_.path() + "/runc", "state", "concord-" + id});
    if (!r || !r->ok()) return 0;
    auto pos = r->out.find("\"pid\":");
    return pos == std::string::npos ? 0 : std::atoi(r->out.c_str() + pos + 6);
  }

  std::string cgroup_dir(pid_t pid, const std::string& controller) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    for (std::string line; std::getline(in, line);) {
      // v1: "4:memory:/concord/..."
      auto first = line.find(':');
      auto second = line.find(':', first + 1);
      if (first == std::string::npos || second == std::string::npos) continue;
      std::string controllers = "," + line.substr(first + 1, second - first - 1) + ",";
      if (controllers.find("," + controller + ",") != std::string::npos) {
        return "/sys/fs/cgroup/" + controller + line.substr(second + 1);
      }
    }
    return {};
  }

  TempDir tmp_;
  DriverOptions options_;
  std::unique_ptr<Driver> driver_;
  std::vector<std::string> created_;
};

std::string read_trimmed(const std::string& path) {
  auto text = read_file(path);
  if (!text) return {};
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST_F(ContainerDriverTest, ProbeReportsRunc) {
  Capabilities caps = driver_->probe();
  EXPECT_TRUE(caps.usable) << caps.reason;
  EXPECT_EQ(caps.accel, "runc");
  EXPECT_EQ(driver_->kind(), "container");
}

TEST_F(ContainerDriverTest, CreateRunsInitThenStopAndStartKeepTheWritableLayer) {
  InstanceSpec s = spec();
  s.guest.user_data = "#cloud-config marker-" + s.id.substr(0, 8) + "\nsecond line\n";
  ASSERT_TRUE(driver_->create(s).has_value());
  EXPECT_EQ(power(s.id), PowerState::kRunning);
  EXPECT_TRUE(console_has(s.id, "concord-guest: hello from " + s.hostname)) << console(s.id);
  EXPECT_TRUE(console_has(s.id, "concord-guest: boot 1")) << console(s.id);
  // The config drive is bind-mounted at /mnt/config.
  EXPECT_TRUE(
      console_has(s.id, "concord-guest: user-data: #cloud-config marker-" + s.id.substr(0, 8)))
      << console(s.id);

  auto stopped = driver_->stop(s.id, 10s);
  ASSERT_TRUE(stopped.has_value()) << stopped.error().to_string();
  EXPECT_EQ(power(s.id), PowerState::kShutdown);
  // Graceful: the guest saw SIGTERM.
  EXPECT_TRUE(console_has(s.id, "concord-guest: SIGTERM, exiting")) << console(s.id);

  auto started = driver_->start(s.id);
  ASSERT_TRUE(started.has_value()) << started.error().to_string();
  EXPECT_EQ(power(s.id), PowerState::kRunning);
  // /var/boot-count lives in the overlay's upper layer, which survived the stop.
  EXPECT_TRUE(console_has(s.id, "concord-guest: boot 2")) << console(s.id);
}

TEST_F(ContainerDriverTest, SoftAndHardReboot) {
  InstanceSpec s = spec();
  ASSERT_TRUE(driver_->create(s).has_value());
  ASSERT_TRUE(console_has(s.id, "concord-guest: boot 1"));
  pid_t first = init_pid(s.id);
  ASSERT_GT(first, 0);

  ASSERT_TRUE(driver_->reboot(s.id, false).has_value());
  EXPECT_TRUE(console_has(s.id, "concord-guest: SIGTERM, exiting")) << console(s.id);
  EXPECT_TRUE(console_has(s.id, "concord-guest: boot 2")) << console(s.id);
  pid_t second = init_pid(s.id);
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);

  ASSERT_TRUE(driver_->reboot(s.id, true).has_value());
  EXPECT_TRUE(console_has(s.id, "concord-guest: boot 3")) << console(s.id);
  // Hard: no second graceful exit.
  EXPECT_EQ(count_of(console(s.id), "SIGTERM, exiting"), 1u) << console(s.id);
  EXPECT_EQ(power(s.id), PowerState::kRunning);
}

TEST_F(ContainerDriverTest, FlavorLimitsAndResizeUpdateTheCgroup) {
  InstanceSpec s = spec();
  s.vcpus = 1;
  s.ram_mb = 64;
  ASSERT_TRUE(driver_->create(s).has_value());
  pid_t pid = init_pid(s.id);
  ASSERT_GT(pid, 0);
  std::string mem = cgroup_dir(pid, "memory");
  std::string cpu = cgroup_dir(pid, "cpu");
  ASSERT_FALSE(mem.empty());
  ASSERT_FALSE(cpu.empty());
  EXPECT_EQ(read_trimmed(mem + "/memory.limit_in_bytes"), std::to_string(64ll << 20));
  EXPECT_EQ(read_trimmed(cpu + "/cpu.cfs_quota_us"), "100000");

  InstanceSpec bigger = s;
  bigger.vcpus = 2;
  bigger.ram_mb = 96;
  auto resized = driver_->resize(bigger);
  ASSERT_TRUE(resized.has_value()) << resized.error().to_string();
  // Updated in place: same init process.
  EXPECT_EQ(init_pid(s.id), pid);
  EXPECT_EQ(read_trimmed(mem + "/memory.limit_in_bytes"), std::to_string(96ll << 20));
  EXPECT_EQ(read_trimmed(cpu + "/cpu.cfs_quota_us"), "200000");

  // The new flavor also holds after a restart (config.json was rewritten).
  ASSERT_TRUE(driver_->reboot(s.id, true).has_value());
  pid_t after = init_pid(s.id);
  ASSERT_GT(after, 0);
  EXPECT_EQ(read_trimmed(cgroup_dir(after, "memory") + "/memory.limit_in_bytes"),
            std::to_string(96ll << 20));
}

TEST_F(ContainerDriverTest, NetworkNoneHasOnlyLoopback) {
  InstanceSpec s = spec("none");
  ASSERT_TRUE(driver_->create(s).has_value());
  pid_t pid = init_pid(s.id);
  ASSERT_GT(pid, 0);
  // Its own namespace: different from the host's.
  char host_ns[64] = {}, ct_ns[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/net", host_ns, sizeof host_ns - 1), 0);
  ASSERT_GT(
      ::readlink(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), ct_ns, sizeof ct_ns - 1), 0);
  EXPECT_STRNE(host_ns, ct_ns);
  auto dev = read_file("/proc/" + std::to_string(pid) + "/net/dev");
  ASSERT_TRUE(dev.has_value());
  std::istringstream lines(*dev);
  std::vector<std::string> ifaces;
  std::string line;
  std::getline(lines, line);
  std::getline(lines, line);  // two header lines
  while (std::getline(lines, line)) {
    auto colon = line.find(':');
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    ifaces.push_back(name);
  }
  EXPECT_EQ(ifaces, std::vector<std::string>{"lo"}) << *dev;
  auto st = driver_->status(s.id);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->addresses.empty());
}

// Connects to ip:port and reads what the guest sends.
std::string tcp_read(const std::string& ip, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST_F(ContainerDriverTest, NetworkAutoIsReachableFromTheHostAndSurvivesRebuild) {
  InstanceSpec s = spec("auto");
  auto created = driver_->create(s);
  ASSERT_TRUE(created.has_value()) << created.error().to_string();
  auto st = driver_->status(s.id);
  ASSERT_TRUE(st.has_value());
  ASSERT_EQ(st->addresses.size(), 1u);
  std::string ip = st->addresses[0].addr;
  EXPECT_EQ(ip.rfind("10.99.0.", 0), 0u) << ip;
  EXPECT_EQ(st->addresses[0].mac, BridgeNetwork::mac_for(s.id));
  EXPECT_TRUE(path_exists("/sys/class/net/concord0"));
  EXPECT_TRUE(path_exists("/sys/class/net/" + BridgeNetwork::host_veth_name(s.id)));

  std::string expected = "concord-guest: tcp hello from " + s.hostname;
  std::string got;
  EXPECT_TRUE(eventually([&] {
    got = tcp_read(ip, 7777);
    return got.find(expected) != std::string::npos;
  })) << "from "
      << ip << ": '" << got << "'; console: " << console(s.id);

  // Rebuild: fresh rootfs from the image (boot count restarts), same address.
  auto rebuilt = driver_->rebuild(s);
  ASSERT_TRUE(rebuilt.has_value()) << rebuilt.error().to_string();
  EXPECT_TRUE(console_has(s.id, "concord-guest: boot 1", 2)) << console(s.id);
  auto after = driver_->status(s.id);
  ASSERT_TRUE(after.has_value());
  ASSERT_EQ(after->addresses.size(), 1u);
  EXPECT_EQ(after->addresses[0].addr, ip);
  EXPECT_TRUE(eventually([&] { return tcp_read(ip, 7777).find(expected) != std::string::npos; }));
}

TEST_F(ContainerDriverTest, DestroyLeavesNothingBehindAndIsIdempotent) {
  InstanceSpec s = spec("auto");
  ASSERT_TRUE(driver_->create(s).has_value());
  std::string dir = tmp_.path() + "/container/" + s.id;
  ASSERT_TRUE(is_mount_point(dir + "/bundle/rootfs"));
  std::string veth = BridgeNetwork::host_veth_name(s.id);
  auto st = driver_->status(s.id);
  ASSERT_TRUE(st.has_value() && st->addresses.size() == 1);
  std::string lease = "/run/concord/ipam/concord0/" + st->addresses[0].addr;
  ASSERT_TRUE(path_exists(lease));
  pid_t pid = init_pid(s.id);
  ASSERT_GT(pid, 0);

  auto destroyed = driver_->destroy(s.id);
  ASSERT_TRUE(destroyed.has_value()) << destroyed.error().to_string();
  auto listed = run_process({"runc", "--root", tmp_.path() + "/runc", "list", "-q"});
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ(listed->out.find(s.id), std::string::npos) << listed->out;
  EXPECT_FALSE(is_mount_point(dir + "/bundle/rootfs"));
  auto mounts = read_file("/proc/self/mountinfo");
  EXPECT_EQ(mounts->find(s.id), std::string::npos);
  EXPECT_FALSE(path_exists("/sys/class/net/" + veth));
  EXPECT_FALSE(path_exists("/run/netns/concord-" + s.id));
  EXPECT_FALSE(path_exists(lease));
  EXPECT_FALSE(path_exists(dir));
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 10s));

  EXPECT_TRUE(driver_->destroy(s.id).has_value());
  auto gone = driver_->status(s.id);
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->exists);
  EXPECT_EQ(driver_->console_log(s.id, 100).error().code(), Code::kNotFound);
  EXPECT_EQ(driver_->start(s.id).error().code(), Code::kNotFound);
  EXPECT_EQ(driver_->stop(s.id, 1s).error().code(), Code::kNotFound);
}

TEST_F(ContainerDriverTest, CreateTwiceConvergesWithoutRestarting) {
  InstanceSpec s = spec();
  ASSERT_TRUE(driver_->create(s).has_value());
  pid_t pid = init_pid(s.id);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(driver_->create(s).has_value());
  EXPECT_EQ(init_pid(s.id), pid);
  // A stopped instance is started by a repeated create (the agent retrying after a crash).
  ASSERT_TRUE(driver_->stop(s.id, 0ms).has_value());
  ASSERT_TRUE(driver_->create(s).has_value());
  EXPECT_EQ(power(s.id), PowerState::kRunning);
}

TEST_F(ContainerDriverTest, ASecondDriverAdoptsRunningInstances) {
  InstanceSpec s = spec();
  ASSERT_TRUE(driver_->create(s).has_value());
  pid_t pid = init_pid(s.id);

  // A restarted agent: a new driver object over the same state dir.
  auto other = make_container_driver(options_);
  ASSERT_TRUE(other.has_value());
  auto ids = (*other)->list();
  ASSERT_TRUE(ids.has_value());
  EXPECT_NE(std::find(ids->begin(), ids->end(), s.id), ids->end());
  auto st = (*other)->status(s.id);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->exists);
  EXPECT_EQ(st->power, PowerState::kRunning);
  EXPECT_EQ(init_pid(s.id), pid);

  // Another agent on the same machine (its own state dir and runc root) sees none of it.
  TempDir elsewhere;
  DriverOptions theirs;
  theirs.state_dir = elsewhere.path();
  auto stranger = make_container_driver(theirs);
  ASSERT_TRUE(stranger.has_value());
  auto their_ids = (*stranger)->list();
  ASSERT_TRUE(their_ids.has_value());
  EXPECT_TRUE(their_ids->empty());
}

TEST_F(ContainerDriverTest, LostRuncStateKillsTheOrphanOnDestroy) {
  InstanceSpec s = spec();
  ASSERT_TRUE(driver_->create(s).has_value());
  pid_t pid = init_pid(s.id);
  ASSERT_GT(pid, 0);
  // runc's state directory vanishes (tmpfs wiped, operator error); the container lives on.
  std::filesystem::remove_all(tmp_.path() + "/runc");
  EXPECT_TRUE(process_alive(pid));
  EXPECT_EQ(power(s.id), PowerState::kShutdown);
  // start must not run a second copy beside the orphan: it kills the orphan first.
  ASSERT_TRUE(driver_->start(s.id).has_value());
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 10s));
  pid_t fresh = init_pid(s.id);
  EXPECT_GT(fresh, 0);
  EXPECT_NE(fresh, pid);
  ASSERT_TRUE(driver_->destroy(s.id).has_value());
  EXPECT_TRUE(eventually([&] { return !process_alive(fresh); }, 10s));
}

TEST_F(ContainerDriverTest, RejectsBadSpecsWithSpecificCodes) {
  InstanceSpec s = spec();
  s.image_kind = "qcow2";
  EXPECT_EQ(driver_->create(s).error().code(), Code::kInvalidArgument);
  s = spec();
  s.id = "../../etc";
  EXPECT_EQ(driver_->create(s).error().code(), Code::kInvalidArgument);
  s = spec();
  s.network = "bridged";
  EXPECT_EQ(driver_->create(s).error().code(), Code::kInvalidArgument);
  s = spec();
  s.image_path = tmp_.path() + "/no-such-image.tar";
  EXPECT_EQ(driver_->create(s).error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(driver_->start("never-created").error().code(), Code::kNotFound);
  EXPECT_EQ(driver_->reboot("never-created", true).error().code(), Code::kNotFound);
  InstanceSpec missing = spec();
  EXPECT_EQ(driver_->resize(missing).error().code(), Code::kNotFound);
  EXPECT_EQ(driver_->rebuild(missing).error().code(), Code::kNotFound);
}

TEST_F(ContainerDriverTest, ImageIsExtractedOncePerContentHash) {
  InstanceSpec a = spec();
  InstanceSpec b = spec();
  ASSERT_TRUE(driver_->create(a).has_value());
  ASSERT_TRUE(driver_->create(b).has_value());
  auto cached = list_subdirs(tmp_.path() + "/rootfs-cache");
  EXPECT_EQ(cached.size(), 1u);
  auto hash = sha256_file(image("busybox-rootfs.tar"));
  ASSERT_TRUE(hash.has_value());
  EXPECT_TRUE(path_exists(tmp_.path() + "/rootfs-cache/" + *hash + "/rootfs/init"));
  EXPECT_TRUE(console_has(a.id, "hello from " + a.hostname));
  EXPECT_TRUE(console_has(b.id, "hello from " + b.hostname));
}

TEST_F(ContainerDriverTest, FallsBackToACopyWhereOverlayfsCannotMount) {
  // A state dir that is itself on overlayfs: the kernel refuses an overlay upper dir there, as
  // on hosts whose agent runs inside an overlay root.
  std::string base = tmp_.path() + "/ovl";
  for (const char* d : {"/lower", "/upper", "/work", "/merged"}) {
    ASSERT_TRUE(make_dirs(base + d).has_value());
  }
  std::string data =
      "lowerdir=" + base + "/lower,upperdir=" + base + "/upper,workdir=" + base + "/work";
  ASSERT_EQ(::mount("overlay", (base + "/merged").c_str(), "overlay", 0, data.c_str()), 0)
      << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{base + "/merged"};

  DriverOptions options;
  options.state_dir = base + "/merged/state";
  auto d = make_container_driver(options);
  ASSERT_TRUE(d.has_value());
  auto& driver = *d;
  InstanceSpec s = spec();
  auto created = driver->create(s);
  ASSERT_TRUE(created.has_value()) << created.error().to_string();
  std::string dir = options.state_dir + "/container/" + s.id;
  EXPECT_EQ(read_file(dir + "/rootfs.mode").value_or(""), "copy");
  EXPECT_FALSE(is_mount_point(dir + "/bundle/rootfs"));
  auto log = [&] { return driver->console_log(s.id, 1 << 16).value_or(""); };
  EXPECT_TRUE(eventually([&] { return log().find("concord-guest: boot 1") != std::string::npos; }))
      << log();
  ASSERT_TRUE(driver->stop(s.id, 10s).has_value());
  ASSERT_TRUE(driver->start(s.id).has_value());
  EXPECT_TRUE(eventually([&] { return log().find("concord-guest: boot 2") != std::string::npos; }))
      << log();
  ASSERT_TRUE(driver->destroy(s.id).has_value());
  EXPECT_FALSE(path_exists(dir));
}

}  // namespace
}  // namespace concord::compute::driver

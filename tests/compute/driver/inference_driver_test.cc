// The inference driver running the real `concord inference-replica` on the committed
// Fashion-MNIST model: create, readiness over HTTP, stop/start, adoption by a new driver object,
// a replica killed behind the driver's back, cgroup limits, destroy, and spec errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "base/json.h"
#include "base/random.h"
#include "compute/driver/driver.h"
#include "compute/driver/inference_keys.h"
#include "compute/driver/util.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "test_support.h"

namespace concord::compute::driver {
namespace {

using testing::eventually;
using testing::TempDir;
namespace keys = inference_keys;

const std::string kModel = std::string(CONCORD_MODEL_FIXTURE_DIR) + "/fashion_mnist_cnn.onnx";
constexpr std::string_view kKey = "replica-secret-123";

std::vector<std::string> replica_command() {
  // CONCORD_TEST_REPLICA_COMMAND lets a developer point at another build; CI runs the binary
  // this build made.
  if (const char* env = std::getenv("CONCORD_TEST_REPLICA_COMMAND"); env != nullptr && *env) {
    return {env, "inference-replica"};
  }
  return {CONCORD_BINARY, "inference-replica"};
}

std::string meta_json(const Json& meta) {
  return dump_json(Json{{"uuid", "x"}, {"meta", meta}});
}

InstanceSpec replica_spec(const std::string& id) {
  InstanceSpec s;
  s.id = id;
  s.hostname = "replica";
  s.vcpus = 1;
  s.ram_mb = 512;
  s.disk_gb = 1;
  s.image_path = kModel;
  s.image_kind = "onnx";
  s.guest.meta_data_json = meta_json({{std::string(keys::kName), "fashion"},
                                      {std::string(keys::kVersion), "1"},
                                      {std::string(keys::kMaxBatchSize), "4"},
                                      {std::string(keys::kMaxQueueDelayUs), "1000"},
                                      {std::string(keys::kKey), std::string(kKey)}});
  return s;
}

class InferenceDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    options_.state_dir = dir_.path();
    options_.replica_command = replica_command();
    // A group of this test's own, so parallel runs never share one.
    options_.cgroup_parent = "concord-inference-test-" + new_hex_id().substr(0, 12);
    auto d = make_inference_driver(options_);
    ASSERT_TRUE(d) << d.error().to_string();
    driver_ = std::move(*d);
  }
  void TearDown() override {
    if (driver_) {
      auto ids = driver_->list();
      if (ids) {
        for (const auto& id : *ids) (void)driver_->destroy(id);
      }
    }
    for (const char* c : {"cpu", "memory"}) {
      std::error_code ec;
      std::filesystem::remove(options_.cgroup_root + "/" + c + "/" + options_.cgroup_parent, ec);
    }
  }

  // The replica's port once it listens (0 after the bound).
  int wait_port(const std::string& id) {
    int port = 0;
    eventually([&] {
      auto st = driver_->status(id);
      if (!st || st->addresses.empty() || st->addresses[0].forwarded_ports.empty()) return false;
      port = st->addresses[0].forwarded_ports[0].first;
      return true;
    });
    return port;
  }

  static int ready_status(int port, bool with_key = true) {
    auto client = http::HttpClient::create("http://127.0.0.1:" + std::to_string(port));
    if (!client) return -1;
    std::vector<std::pair<std::string, std::string>> headers;
    if (with_key) headers.emplace_back("x-concord-replica-key", std::string(kKey));
    auto reply = (*client)->request("GET", "/v2/health/ready", "", headers,
                                    std::chrono::milliseconds(10000));
    return reply ? reply->status : -1;
  }

  pid_t replica_pid(const std::string& id) {
    auto text = read_file(dir_.path() + "/inference/" + id + "/replica.pid");
    return text ? std::atoi(text->c_str()) : 0;
  }

  TempDir dir_;
  DriverOptions options_;
  std::unique_ptr<Driver> driver_;
};

TEST_F(InferenceDriverTest, ProbeNamesTheProgram) {
  Capabilities caps = driver_->probe();
  EXPECT_TRUE(caps.usable) << caps.reason;
  EXPECT_EQ(caps.accel, "process");
  EXPECT_NE(caps.reason.find(options_.replica_command[0]), std::string::npos) << caps.reason;

  DriverOptions missing = options_;
  missing.replica_command = {dir_.path() + "/no-such-program", "inference-replica"};
  auto d = make_inference_driver(missing);
  ASSERT_TRUE(d);
  Capabilities none = (*d)->probe();
  EXPECT_FALSE(none.usable);
  EXPECT_NE(none.reason.find("no-such-program"), std::string::npos) << none.reason;
}

TEST_F(InferenceDriverTest, LifecycleServesStopsStartsAndDestroys) {
  const std::string id = new_uuid();
  ASSERT_TRUE(driver_->create(replica_spec(id)));
  auto st = driver_->status(id);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->exists);
  EXPECT_EQ(st->power, PowerState::kRunning) << st->detail;

  int port = wait_port(id);
  ASSERT_GT(port, 0) << *driver_->console_log(id, 4096);
  st = driver_->status(id);
  ASSERT_TRUE(st);
  ASSERT_EQ(st->addresses.size(), 1u);
  EXPECT_EQ(st->addresses[0].network, keys::kAddressNetwork);
  EXPECT_EQ(st->addresses[0].addr, "127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(eventually([&] { return ready_status(port) == 200; }))
      << *driver_->console_log(id, 4096);
  // The key from the metadata reached the replica: without it the replica refuses.
  EXPECT_EQ(ready_status(port, false), 401);

  // The key travels by file (0600), never on the command line.
  const std::string key_file = dir_.path() + "/inference/" + id + "/key";
  struct stat sb {};
  ASSERT_EQ(::stat(key_file.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  EXPECT_EQ(process_cmdline(replica_pid(id)).find(kKey), std::string::npos);

  // Converging again is a no-op: same process.
  pid_t first = replica_pid(id);
  ASSERT_TRUE(driver_->create(replica_spec(id)));
  EXPECT_EQ(replica_pid(id), first);

  ASSERT_TRUE(driver_->stop(id, std::chrono::milliseconds(20000)));
  st = driver_->status(id);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->exists);
  EXPECT_EQ(st->power, PowerState::kShutdown);
  EXPECT_TRUE(st->addresses.empty());
  EXPECT_FALSE(process_alive(first));

  ASSERT_TRUE(driver_->start(id));
  int port2 = wait_port(id);
  ASSERT_GT(port2, 0);
  EXPECT_TRUE(eventually([&] { return ready_status(port2) == 200; }));

  ASSERT_TRUE(driver_->reboot(id, true));
  EXPECT_GT(wait_port(id), 0);
  EXPECT_EQ(driver_->status(id)->power, PowerState::kRunning);

  pid_t last = replica_pid(id);
  ASSERT_TRUE(driver_->destroy(id));
  st = driver_->status(id);
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->exists);
  EXPECT_FALSE(process_alive(last));
  EXPECT_TRUE(driver_->list()->empty());
  EXPECT_TRUE(driver_->destroy(id));  // gone is fine
  auto log = driver_->console_log(id, 100);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), Code::kNotFound);
}

TEST_F(InferenceDriverTest, NewDriverObjectAdoptsRunningReplica) {
  const std::string id = new_uuid();
  ASSERT_TRUE(driver_->create(replica_spec(id)));
  int port = wait_port(id);
  ASSERT_GT(port, 0);
  pid_t pid = replica_pid(id);

  // What an agent restart does: a fresh driver on the same state dir.
  auto again = make_inference_driver(options_);
  ASSERT_TRUE(again);
  auto ids = (*again)->list();
  ASSERT_TRUE(ids);
  ASSERT_EQ(*ids, std::vector<std::string>{id});
  auto st = (*again)->status(id);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->power, PowerState::kRunning);
  ASSERT_EQ(st->addresses.size(), 1u);
  EXPECT_EQ(st->addresses[0].forwarded_ports[0].first, port);
  ASSERT_TRUE((*again)->create(replica_spec(id)));
  EXPECT_EQ(replica_pid(id), pid);  // adopted, not restarted
  ASSERT_TRUE((*again)->destroy(id));
  EXPECT_FALSE(process_alive(pid));
}

TEST_F(InferenceDriverTest, KilledReplicaIsReportedOff) {
  const std::string id = new_uuid();
  ASSERT_TRUE(driver_->create(replica_spec(id)));
  ASSERT_GT(wait_port(id), 0);
  pid_t pid = replica_pid(id);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_TRUE(eventually([&] {
    auto st = driver_->status(id);
    return st && st->exists && st->power == PowerState::kShutdown && st->addresses.empty();
  }));
  // A pid reused by another process is not taken for the replica.
  ASSERT_TRUE(write_file_atomic(dir_.path() + "/inference/" + id + "/replica.pid",
                                std::to_string(::getpid())));
  EXPECT_EQ(driver_->status(id)->power, PowerState::kShutdown);
  // Started again on demand.
  ASSERT_TRUE(driver_->start(id));
  EXPECT_GT(wait_port(id), 0);
}

TEST_F(InferenceDriverTest, CgroupLimitsFollowTheFlavor) {
  Capabilities caps = driver_->probe();
  if (caps.reason.find("WITHOUT cgroup") != std::string::npos) {
    GTEST_SKIP() << caps.reason;
  }
  const std::string id = new_uuid();
  InstanceSpec spec = replica_spec(id);
  spec.vcpus = 2;
  spec.ram_mb = 768;
  ASSERT_TRUE(driver_->create(spec));
  ASSERT_GT(wait_port(id), 0);
  const std::string cpu = options_.cgroup_root + "/cpu/" + options_.cgroup_parent + "/" + id;
  const std::string mem = options_.cgroup_root + "/memory/" + options_.cgroup_parent + "/" + id;
  EXPECT_EQ(*read_file(cpu + "/cpu.cfs_quota_us"), "200000\n");
  EXPECT_EQ(*read_file(mem + "/memory.limit_in_bytes"), std::to_string(768LL << 20) + "\n");
  std::string pid = std::to_string(replica_pid(id));
  EXPECT_NE(("\n" + *read_file(cpu + "/cgroup.procs")).find("\n" + pid + "\n"), std::string::npos);
  EXPECT_NE(("\n" + *read_file(mem + "/cgroup.procs")).find("\n" + pid + "\n"), std::string::npos);

  spec.vcpus = 1;
  ASSERT_TRUE(driver_->resize(spec));
  EXPECT_EQ(*read_file(cpu + "/cpu.cfs_quota_us"), "100000\n");

  ASSERT_TRUE(driver_->destroy(id));
  EXPECT_FALSE(std::filesystem::exists(cpu));
  EXPECT_FALSE(std::filesystem::exists(mem));
}

TEST_F(InferenceDriverTest, ReplicaThatCannotLoadIsReportedOff) {
  const std::string id = new_uuid();
  InstanceSpec spec = replica_spec(id);
  std::string bad = dir_.path() + "/not-a-model.onnx";
  std::ofstream(bad) << "this is not onnx";
  spec.image_path = bad;
  ASSERT_TRUE(driver_->create(spec));
  EXPECT_TRUE(eventually([&] { return driver_->status(id)->power == PowerState::kShutdown; }));
  EXPECT_TRUE(driver_->status(id)->addresses.empty());
}

TEST_F(InferenceDriverTest, BadSpecsAreInvalidArgumentAndLeaveNothing) {
  auto expect_invalid = [&](InstanceSpec spec, const std::string& what) {
    Status st = driver_->create(spec);
    ASSERT_FALSE(st) << what;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument) << what << ": " << st.error().message();
  };
  InstanceSpec wrong_kind = replica_spec(new_uuid());
  wrong_kind.image_kind = "qcow2";
  expect_invalid(wrong_kind, "image kind");

  InstanceSpec no_name = replica_spec(new_uuid());
  no_name.guest.meta_data_json = meta_json({{std::string(keys::kVersion), "1"}});
  expect_invalid(no_name, "missing name");

  InstanceSpec bad_batch = replica_spec(new_uuid());
  bad_batch.guest.meta_data_json =
      meta_json({{std::string(keys::kName), "m"}, {std::string(keys::kMaxBatchSize), "eight"}});
  expect_invalid(bad_batch, "batch size");

  InstanceSpec bad_split = replica_spec(new_uuid());
  bad_split.guest.meta_data_json =
      meta_json({{std::string(keys::kName), "m"}, {std::string(keys::kSplit), "yes"}});
  expect_invalid(bad_split, "split");

  InstanceSpec bad_id = replica_spec("../escape");
  expect_invalid(bad_id, "id");

  InstanceSpec tiny = replica_spec(new_uuid());
  tiny.vcpus = 0;
  expect_invalid(tiny, "flavor");

  EXPECT_TRUE(driver_->list()->empty());

  InstanceSpec missing_file = replica_spec(new_uuid());
  missing_file.image_path = dir_.path() + "/absent.onnx";
  Status st = driver_->create(missing_file);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);

  DriverOptions wildcard = options_;
  wildcard.inference_bind = "0.0.0.0";
  auto made = make_inference_driver(wildcard);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code(), Code::kInvalidArgument);

  Status stop = driver_->stop(new_uuid(), std::chrono::milliseconds(10));
  ASSERT_FALSE(stop);
  EXPECT_EQ(stop.error().code(), Code::kNotFound);
  Status start = driver_->start(new_uuid());
  ASSERT_FALSE(start);
  EXPECT_EQ(start.error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace concord::compute::driver

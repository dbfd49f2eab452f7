// The compute "database" driver over the real PostgreSQL engine: what the agent calls, with the
// desired state in the spec's metadata as the database service writes it.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "base/json.h"
#include "compute/driver/database_keys.h"
#include "compute/driver/driver.h"
#include "compute/driver/util.h"
#include "database/engine/credentials.h"
#include "database/engine/desired_state.h"
#include "engine_test_util.h"
#include "http/router.h"
#include "http/server.h"
#include "nlohmann/json.hpp"

namespace concord::database::engine::testing {
namespace {

namespace drv = compute::driver;
namespace keys = compute::driver::database_keys;

class DatabaseDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = engine_skip_reason(
        {"/usr/lib/postgresql/15/bin/postgres", "/usr/bin/psql", "/usr/bin/openssl"});
    if (!why.empty()) GTEST_SKIP() << why;
    drv::DriverOptions o;
    o.state_dir = tmp_.path() + "/agent";
    o.database_dir = tmp_.path() + "/agent/database";  // tmp_ is traversable by the engine user
    auto d = drv::make_database_driver(o);
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    driver_ = std::move(*d);
    address_ = unique_address();
    port_ = free_port(address_);
    id_ = "db" + std::to_string(::getpid());
  }
  void TearDown() override {
    if (driver_) (void)driver_->destroy(id_);
  }

  // Revision 1: database shop, its user app (password pw1), PostgreSQL's verifier.
  static DesiredState shop_state() {
    DesiredState s;
    s.revision = 1;
    s.databases = {{"shop", "", ""}};
    s.users = {{"app", "%", postgres_scram_verifier("pw1"), {"shop"}}};
    return s;
  }

  // A PostgreSQL instance with database shop, root (password root-pw) and archiving on, a table
  // written and its WAL segment closed (pg_switch_wal), so the segment is archived.
  void create_postgres_and_close_a_segment() {
    DesiredState s;
    s.revision = 1;
    s.databases = {{"shop", "", ""}};
    s.root = RootSpec{postgres_scram_verifier("root-pw")};
    ASSERT_TRUE(s.archive_logs);
    auto st = driver_->create(spec(s));
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    auto r = psql(address_, port_, "root", "root-pw", "postgres",
                  "CREATE TABLE t AS SELECT generate_series(1, 1000) AS x; SELECT pg_switch_wal()");
    ASSERT_TRUE(r.ok()) << r.err;
  }

  drv::InstanceSpec spec(const DesiredState& state, const std::string& engine = "postgresql") {
    return spec_of(id_, address_, port_, state, engine);
  }
  static drv::InstanceSpec spec_of(const std::string& id, const std::string& address, int port,
                                   const DesiredState& state, const std::string& engine) {
    drv::InstanceSpec s;
    s.id = id;
    s.vcpus = 1;
    s.ram_mb = 256;
    s.disk_gb = 1;
    Json meta = {{std::string(keys::kEngine), engine},
                 {std::string(keys::kVersion), engine == "mariadb" ? "10.11" : "15"},
                 {std::string(keys::kAddress), address},
                 {std::string(keys::kPort), std::to_string(port)},
                 {std::string(keys::kVolumeGb), "1"},
                 {std::string(keys::kInstance), id},
                 {std::string(keys::kState), to_json(state)}};
    s.guest.meta_data_json = dump_json(Json{{"uuid", id}, {"meta", meta}});
    return s;
  }

  // Destroys a test's second instance however the test ends.
  struct DestroyOnExit {
    drv::Driver* d;
    std::string id;
    ~DestroyOnExit() { (void)d->destroy(id); }
  };

  EngineTempDir tmp_;
  std::unique_ptr<drv::Driver> driver_;
  std::string address_, id_;
  int port_ = 0;
};

TEST_F(DatabaseDriverTest, CreateStatusConfigureStopStartDestroy) {
  auto caps = driver_->probe();
  EXPECT_TRUE(caps.usable) << caps.reason;
  EXPECT_NE(caps.reason.find("postgresql 15"), std::string::npos) << caps.reason;

  const DesiredState s1 = shop_state();
  auto st = driver_->create(spec(s1));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();

  auto status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->exists);
  EXPECT_EQ(status->power, drv::PowerState::kRunning) << status->detail;
  EXPECT_NE(status->detail.find("state_revision=1"), std::string::npos) << status->detail;
  ASSERT_EQ(status->addresses.size(), 1u);
  EXPECT_EQ(status->addresses[0].network, keys::kAddressNetwork);
  EXPECT_EQ(status->addresses[0].addr, address_);
  auto r = psql(address_, port_, "app", "pw1", "shop", "CREATE TABLE t(x int); SELECT 7");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "7\n");

  auto ids = driver_->list();
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(*ids, std::vector<std::string>{id_});
  auto log = driver_->console_log(id_, 4096);
  ASSERT_TRUE(log.has_value());
  EXPECT_NE(log->find("database system is ready"), std::string::npos) << *log;

  // create again converges (the agent repeats it after a crash).
  st = driver_->create(spec(s1));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();

  // configure: a new user, the old one's password changed.
  DesiredState s2 = s1;
  s2.revision = 2;
  s2.users = {{"app", "%", postgres_scram_verifier("pw2"), {"shop"}},
              {"rep", "%", postgres_scram_verifier("pw3"), {"shop"}}};
  st = driver_->configure(spec(s2));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(status->detail.find("state_revision=2"), std::string::npos) << status->detail;
  EXPECT_FALSE(psql(address_, port_, "app", "pw1", "shop", "SELECT 1").ok());
  EXPECT_TRUE(psql(address_, port_, "rep", "pw3", "shop", "SELECT 1").ok());

  // Stopped: reported off; a configure while stopped is applied at the next start.
  st = driver_->stop(id_, std::chrono::milliseconds(10000));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->power, drv::PowerState::kShutdown);
  DesiredState s3 = s2;
  s3.revision = 3;
  s3.users.pop_back();
  st = driver_->configure(spec(s3));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  st = driver_->start(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->power, drv::PowerState::kRunning);
  EXPECT_NE(status->detail.find("state_revision=3"), std::string::npos) << status->detail;
  EXPECT_FALSE(psql(address_, port_, "rep", "pw3", "shop", "SELECT 1").ok());
  EXPECT_TRUE(psql(address_, port_, "app", "pw2", "shop", "SELECT count(*) FROM t").ok());

  // An agent killed mid-create: instance.json and a half-made folder, no data yet. The agent
  // then starts what it sees; start finishes the folder and applies the desired state.
  st = driver_->stop(id_, std::chrono::milliseconds(10000));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  const std::string dir = tmp_.path() + "/agent/database/" + id_ + "/v";
  std::filesystem::remove_all(dir + "/data");
  std::filesystem::create_directories(dir + "/data.tmp/base");
  st = driver_->start(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->power, drv::PowerState::kRunning);
  EXPECT_NE(status->detail.find("state_revision=3"), std::string::npos) << status->detail;
  r = psql(address_, port_, "app", "pw2", "shop", "CREATE TABLE t(x int); SELECT 1");
  ASSERT_TRUE(r.ok()) << r.err;

  // Resize restarts with the new memory; the data stays.
  auto bigger = spec(s3);
  bigger.ram_mb = 512;
  st = driver_->resize(bigger);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  r = psql(address_, port_, "app", "pw2", "shop", "SHOW shared_buffers");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "128MB\n");

  st = driver_->reboot(id_, /*hard=*/true);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(psql(address_, port_, "app", "pw2", "shop", "SELECT 1").ok());

  st = driver_->destroy(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(status->exists);
  EXPECT_FALSE(std::filesystem::exists(tmp_.path() + "/agent/database/" + id_));
  EXPECT_TRUE(pid_gone_for(tmp_.path() + "/agent/database/" + id_));
  auto missing = driver_->start(id_);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  auto no_log = driver_->console_log(id_, 100);
  ASSERT_FALSE(no_log.has_value());
  EXPECT_EQ(no_log.error().code(), Code::kNotFound);
}

// The volume size is a hard limit: the engine's folder is a file system of that size, so a write
// beyond it fails in that instance (not on the host's disk, which every tenant shares); a full
// volume turns the instance read-only and gives it the room the volume held back (the storage
// guard), until room is made; a resize grows it; after a host restart (the volume unmounted
// under a stopped engine) the instance is reported stopped and its start mounts it again; a
// destroy leaves no mount and no image.
TEST_F(DatabaseDriverTest, TheVolumeIsAFileSystemOfItsSize) {
  const DesiredState s1 = shop_state();
  auto st = driver_->create(spec(s1));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  const std::string dir = tmp_.path() + "/agent/database/" + id_;
  const std::string volume = dir + "/v";
  const std::string image = tmp_.path() + "/agent/database/.volumes/" + id_ + ".ext4";
  ASSERT_TRUE(drv::is_mount_point(volume));
  struct stat folder {};
  ASSERT_EQ(::stat(dir.c_str(), &folder), 0);
  EXPECT_EQ(folder.st_uid, 0u) << "the desired state (verifiers) is root's";
  EXPECT_EQ(folder.st_mode & 07777, 0710u) << "the engine user's group only traverses it";
  auto fs_bytes = [&](bool free) {
    struct statvfs v {};
    EXPECT_EQ(::statvfs(volume.c_str(), &v), 0);
    return static_cast<int64_t>(free ? v.f_bavail : v.f_blocks) * static_cast<int64_t>(v.f_frsize);
  };
  EXPECT_GT(fs_bytes(false), int64_t{900} << 20);
  EXPECT_LE(fs_bytes(false), int64_t{1} << 30);
  struct stat img {};
  ASSERT_EQ(::stat(image.c_str(), &img), 0);
  EXPECT_EQ(img.st_size, int64_t{1} << 30);
  EXPECT_LT(static_cast<int64_t>(img.st_blocks) * 512, int64_t{300} << 20)
      << "sparse: the host holds what was written, not the size";

  // PostgreSQL's WAL between checkpoints fits the volume (an eighth of it).
  auto r = psql(address_, port_, "app", "pw1", "shop", "SHOW max_wal_size");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "128MB\n");

  // The storage guard holds back room on the volume: a reserve (a 32nd, at least 32 MiB) and a
  // recovery reserve (32 MiB).
  const std::string reserve = volume + "/concord_reserve";
  const std::string recovery_reserve = volume + "/concord_reserve_recovery";
  const std::string full_marker = dir + "/storage_full";
  auto eventually = [](const std::function<bool()>& done) {
    for (int i = 0; i < 100 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return done();
  };
  ASSERT_TRUE(eventually([&] {
    return std::filesystem::exists(reserve) && std::filesystem::exists(recovery_reserve);
  }));
  for (const std::string& path : {reserve, recovery_reserve}) {
    struct stat held {};
    ASSERT_EQ(::stat(path.c_str(), &held), 0);
    EXPECT_EQ(static_cast<int64_t>(held.st_blocks) * 512, int64_t{32} << 20) << path;
  }
  r = psql(address_, port_, "app", "pw1", "shop", "CREATE TABLE small (x int)");
  ASSERT_TRUE(r.ok()) << r.err;

  // Filled to within 8 MiB: the guard releases the reserve and the instance turns read-only,
  // except for a transaction that asks to write (BEGIN READ WRITE, to delete data); a 64 MiB
  // write still fails.
  const std::string filler = volume + "/filler";
  {
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(::posix_fallocate(fd, 0, fs_bytes(true) - (8 << 20)), 0);
    ::close(fd);
  }
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(full_marker); }));
  EXPECT_FALSE(std::filesystem::exists(reserve));
  EXPECT_GE(fs_bytes(true), int64_t{32} << 20) << "the reserve's room is the engine's now";
  auto status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(status->detail.find("storage_full=1"), std::string::npos) << status->detail;
  ASSERT_TRUE(eventually([&] {
    return psql(address_, port_, "app", "pw1", "shop", "SHOW default_transaction_read_only").out ==
           "on\n";
  }));
  r = psql(address_, port_, "app", "pw1", "shop", "INSERT INTO small VALUES (1)");
  EXPECT_NE(r.err.find("read-only transaction"), std::string::npos) << r.err;
  r = psql(address_, port_, "app", "pw1", "shop",
           "BEGIN READ WRITE; INSERT INTO small VALUES (2); COMMIT");
  EXPECT_TRUE(r.ok()) << r.err;

  // The released room eaten too, and the engine killed (as by a PANIC when its WAL could not
  // grow): its start gets the recovery reserve, so it recovers and runs, still read-only.
  EXPECT_TRUE(std::filesystem::exists(recovery_reserve));
  const std::string filler2 = volume + "/filler2";
  {
    int fd = ::open(filler2.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(::posix_fallocate(fd, 0, fs_bytes(true) - (1 << 20)), 0);
    ::close(fd);
  }
  auto engine_pid = detail::read_file(volume + "/engine.pid");
  ASSERT_TRUE(engine_pid.has_value());
  ASSERT_EQ(::kill(std::atoi(engine_pid->c_str()), SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    auto down = driver_->status(id_);
    return down && down->power == drv::PowerState::kShutdown;
  }));
  st = driver_->start(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(recovery_reserve));
  r = psql(address_, port_, "app", "pw1", "shop", "SELECT x FROM small");
  EXPECT_EQ(r.out, "2\n") << r.err;
  r = psql(address_, port_, "app", "pw1", "shop", "INSERT INTO small VALUES (3)");
  EXPECT_NE(r.err.find("read-only transaction"), std::string::npos) << r.err;

  // A 64 MiB write that asks to write fails for want of room, inside the instance.
  const std::string fill =
      "CREATE TABLE big AS SELECT repeat('x', 1000) AS v FROM generate_series(1, 65536); "
      "SELECT count(*) FROM big";
  r = psql(address_, port_, "app", "pw1", "shop", "BEGIN READ WRITE; " + fill + "; COMMIT");
  EXPECT_FALSE(r.ok()) << r.out;
  auto log = driver_->console_log(id_, 1 << 16);
  ASSERT_TRUE(log.has_value());
  EXPECT_NE(log->find("No space left on device"), std::string::npos) << *log;

  // Room again: both reserves are taken back and writes are allowed.
  std::filesystem::remove(filler);
  std::filesystem::remove(filler2);
  ASSERT_TRUE(eventually([&] { return !std::filesystem::exists(full_marker); }));
  EXPECT_TRUE(std::filesystem::exists(reserve));
  EXPECT_TRUE(std::filesystem::exists(recovery_reserve));
  ASSERT_TRUE(eventually([&] {
    return psql(address_, port_, "app", "pw1", "shop", "INSERT INTO small VALUES (4)").ok();
  }));

  // A volume of 2 GB: grown by the resize (while it restarts the engine).
  auto bigger = spec(s1);
  Json meta_data = *parse_json(bigger.guest.meta_data_json);
  meta_data["meta"][std::string(keys::kVolumeGb)] = "2";
  bigger.guest.meta_data_json = dump_json(meta_data);
  st = driver_->resize(bigger);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_GT(fs_bytes(false), int64_t{1900} << 20);
  st = driver_->start(id_);  // in case the full volume had stopped PostgreSQL
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  r = psql(address_, port_, "app", "pw1", "shop", fill);
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "65536\n");
  r = psql(address_, port_, "app", "pw1", "shop", "SHOW max_wal_size");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "256MB\n") << "sized again with the volume";

  // A host restart: the engine stopped and its volume no longer mounted.
  ASSERT_TRUE(driver_->stop(id_, std::chrono::milliseconds(10000)).has_value());
  ASSERT_EQ(std::system(("umount " + volume).c_str()), 0);
  ASSERT_FALSE(drv::is_mount_point(volume));
  status = driver_->status(id_);
  ASSERT_TRUE(status.has_value()) << status.error().to_string();
  EXPECT_TRUE(status->exists);
  EXPECT_EQ(status->power, drv::PowerState::kShutdown);
  st = driver_->start(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(drv::is_mount_point(volume));
  r = psql(address_, port_, "app", "pw1", "shop", "SELECT count(*) FROM big");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "65536\n");

  // A stopped engine's volume grown through configure: the service writes the size into the
  // metadata after the server's size, so the agent's resize step can see the old one and the
  // growth comes with the metadata. The engine stays stopped until it is started.
  ASSERT_TRUE(driver_->stop(id_, std::chrono::milliseconds(10000)).has_value());
  DesiredState s2 = s1;
  s2.revision = s1.revision + 1;
  auto grown = spec(s2);
  meta_data = *parse_json(grown.guest.meta_data_json);
  meta_data["meta"][std::string(keys::kVolumeGb)] = "3";
  grown.guest.meta_data_json = dump_json(meta_data);
  st = driver_->configure(grown);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_GT(fs_bytes(false), int64_t{2900} << 20);
  status = driver_->status(id_);
  ASSERT_TRUE(status.has_value()) << status.error().to_string();
  EXPECT_EQ(status->power, drv::PowerState::kShutdown);
  st = driver_->start(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  r = psql(address_, port_, "app", "pw1", "shop", "SELECT count(*) FROM big");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "65536\n");

  st = driver_->destroy(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(drv::is_mount_point(volume));
  EXPECT_FALSE(std::filesystem::exists(image));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST_F(DatabaseDriverTest, MariadbInstanceThroughTheDriver) {
  if (::access("/usr/sbin/mariadbd", X_OK) != 0) GTEST_SKIP() << "mariadbd missing";
  DesiredState s1;
  s1.revision = 4;
  s1.databases = {{"shop", "", ""}};
  s1.users = {{"app", "%", mariadb_native_verifier("pw1"), {"shop"}}};
  auto st = driver_->create(spec(s1, "mariadb"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto status = driver_->status(id_);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->power, drv::PowerState::kRunning) << status->detail;
  EXPECT_NE(status->detail.find("state_revision=4"), std::string::npos) << status->detail;
  EXPECT_NE(status->detail.find("mariadb 10.11"), std::string::npos) << status->detail;
  auto r = mariadb_cli(address_, port_, "app", "pw1", "shop", "CREATE TABLE t(x int); SELECT 7");
  ASSERT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "7\n");
  DesiredState s2 = s1;
  s2.revision = 5;
  s2.users[0].verifier = mariadb_native_verifier("pw2");
  ASSERT_TRUE(driver_->configure(spec(s2, "mariadb")).has_value());
  EXPECT_FALSE(mariadb_cli(address_, port_, "app", "pw1", "shop", "SELECT 1").ok());
  EXPECT_TRUE(mariadb_cli(address_, port_, "app", "pw2", "shop", "SELECT 1").ok());
  st = driver_->destroy(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(tmp_.path() + "/agent/database/" + id_));
  EXPECT_TRUE(pid_gone_for(tmp_.path() + "/agent/database/" + id_));
}

// The agent's maintenance round rebuilds a replica that cannot go on from its upstream (here:
// its position purged from the primary's binlogs while it was stopped), with no new desired
// state; and it finishes a rebuild a killed agent left marked.
TEST_F(DatabaseDriverTest, AMariadbReplicaThatCannotGoOnIsRebuiltByTheAgent) {
  if (::access("/usr/sbin/mariadbd", X_OK) != 0) GTEST_SKIP() << "mariadbd missing";
  drv::DriverOptions o;
  o.state_dir = tmp_.path() + "/agent";
  o.database_dir = tmp_.path() + "/agent/database";
  o.database_ship_interval = std::chrono::milliseconds(200);
  auto d = drv::make_database_driver(o);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  driver_ = std::move(*d);
  const std::string rid = id_ + "r";
  const std::string raddr = unique_address();
  const int rport = free_port(raddr);
  DestroyOnExit cleanup{driver_.get(), rid};

  DesiredState group;
  group.revision = 1;
  group.databases = {{"shop", "", ""}};
  group.users = {{"app", "%", mariadb_native_verifier("pw"), {"shop"}}};
  group.root = RootSpec{mariadb_native_verifier("root-pw")};
  DesiredState ps = group;
  ps.replication = ReplicationSpec{};
  ps.replication->role = ReplicationSpec::Role::kPrimary;
  ps.replication->secret = "repl-secret";
  ps.replication->replicas = {rid};
  DesiredState rs = group;
  rs.replication = ReplicationSpec{};
  rs.replication->role = ReplicationSpec::Role::kReplica;
  rs.replication->secret = "repl-secret";
  rs.replication->upstream_instance = id_;
  rs.replication->upstream_address = address_;
  rs.replication->upstream_port = port_;
  auto st = driver_->create(spec(ps, "mariadb"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto on_primary = [&](const std::string& sql) {
    return mariadb_cli(address_, port_, "root", "root-pw", "shop", sql);
  };
  ASSERT_TRUE(on_primary("CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)").ok());
  st = driver_->create(spec_of(rid, raddr, rport, rs, "mariadb"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto rows = [&] {
    auto r = mariadb_cli(raddr, rport, "app", "pw", "shop", "SELECT COUNT(*) FROM t");
    return r.ok() ? r.out : r.err;
  };
  auto streaming = [&] {
    auto s = driver_->status(rid);
    return s && s->power == drv::PowerState::kRunning &&
           s->detail.find("streaming=1") != std::string::npos;
  };
  auto eventually = [](const std::function<bool()>& done) {
    for (int i = 0; i < 900 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return done();
  };
  ASSERT_TRUE(eventually([&] { return streaming() && rows() == "1\n"; })) << rows();

  // Stopped while the primary writes on and purges its binlogs: started again it cannot
  // resume, and the agent makes it anew with the same desired state.
  ASSERT_TRUE(driver_->stop(rid, std::chrono::milliseconds(30000)).has_value());
  for (int id = 2; id <= 4; ++id) {
    ASSERT_TRUE(on_primary("INSERT INTO t VALUES (" + std::to_string(id) + ")").ok());
    ASSERT_TRUE(on_primary("FLUSH BINARY LOGS").ok());
  }
  ASSERT_TRUE(on_primary("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY").ok());
  st = driver_->start(rid);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(eventually([&] { return streaming() && rows() == "4\n"; }))
      << rows() << " " << driver_->status(rid)->detail;

  // A rebuild a killed agent left half-way (engine stopped, data folder removed, marked):
  // reported as no power state, never a shutdown, while the next round finishes it.
  const std::string dir = tmp_.path() + "/agent/database/" + rid + "/v";
  const std::string marker = tmp_.path() + "/agent/database/" + rid + "/rebuilding";
  ASSERT_TRUE(driver_->stop(rid, std::chrono::milliseconds(30000)).has_value());
  ASSERT_TRUE(detail::remove_tree(dir + "/data").has_value());
  ASSERT_TRUE(detail::write_file_atomic(marker, "left by a killed agent").has_value());
  int shutdowns = 0;
  EXPECT_TRUE(eventually([&] {
    auto s = driver_->status(rid);
    if (s && s->power == drv::PowerState::kShutdown) ++shutdowns;
    return !detail::path_exists(marker);
  }));
  EXPECT_EQ(shutdowns, 0) << "a rebuild looked like a shutdown the server would act on";
  EXPECT_TRUE(eventually([&] { return streaming() && rows() == "4\n"; }))
      << rows() << " " << driver_->status(rid)->detail;
  ASSERT_TRUE(on_primary("INSERT INTO t VALUES (5)").ok());
  EXPECT_TRUE(eventually([&] { return rows() == "5\n"; })) << rows();

  // Stopped (the stop drops the marker: the round does not start it again) while half-way
  // through a rebuild: the next start finishes it, since no revision counts as applied.
  ASSERT_TRUE(detail::write_file_atomic(marker, "left by a killed agent").has_value());
  ASSERT_TRUE(driver_->stop(rid, std::chrono::milliseconds(30000)).has_value());
  EXPECT_FALSE(detail::path_exists(marker));
  ASSERT_TRUE(detail::remove_tree(dir + "/data").has_value());
  ASSERT_TRUE(detail::remove_tree(dir + "/applied_revision").has_value());
  st = driver_->start(rid);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(eventually([&] { return streaming() && rows() == "5\n"; }))
      << rows() << " " << driver_->status(rid)->detail;
}

// Trove's switchover through the driver, as the agent drives it, there and back: the demoted
// primary's configure makes it a standby of its replica in place and reports the fencing
// acknowledgement (fenced_revision in the status) before the replica is promoted; it then
// streams from the promoted replica, its folder kept, also across an agent's stop and start in
// between. Going back, the member that was a replica before is demoted the same way; and after
// a failover while it was down, the old primary's start rejoins it in place too.
TEST_F(DatabaseDriverTest, ASwitchoverDemotesTheOldPrimaryInPlaceBothWays) {
  const std::string rid = id_ + "r";
  const std::string raddr = unique_address();
  const int rport = free_port(raddr);
  DestroyOnExit cleanup{driver_.get(), rid};
  int64_t revision = 0;
  auto group = [&](ReplicationSpec r) {
    DesiredState s;
    s.revision = ++revision;
    s.databases = {{"shop", "", ""}};
    s.root = RootSpec{postgres_scram_verifier("root-pw")};
    r.secret = "repl-secret";
    s.replication = std::move(r);
    return s;
  };
  auto primary_of = [&](const std::string& replica) {
    ReplicationSpec r;
    r.role = ReplicationSpec::Role::kPrimary;
    r.replicas = {replica};
    return group(r);
  };
  auto replica_of = [&](const std::string& id, const std::string& address, int port) {
    ReplicationSpec r;
    r.role = ReplicationSpec::Role::kReplica;
    r.upstream_instance = id;
    r.upstream_address = address;
    r.upstream_port = port;
    return group(r);
  };
  auto count = [](const std::string& address, int port) {
    auto r = psql(address, port, "root", "root-pw", "shop", "SELECT count(*) FROM t");
    return r.ok() ? r.out : r.err;
  };
  auto eventually = [](const std::function<bool()>& done) {
    for (int i = 0; i < 600 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return done();
  };
  auto fenced_at = [&](const std::string& id) {
    auto s = driver_->status(id);
    if (!s) return std::string("status: ") + s.error().to_string();
    const size_t at = s->detail.find("fenced_revision=");
    return at == std::string::npos ? std::string("none") : s->detail.substr(at);
  };
  const std::string root = tmp_.path() + "/agent/database/";

  auto st = driver_->create(spec(primary_of(rid)));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  auto w = psql(address_, port_, "root", "root-pw", "shop",
                "CREATE TABLE t(id int); INSERT INTO t VALUES (1)");
  ASSERT_TRUE(w.ok()) << w.err;
  st = driver_->create(spec_of(rid, raddr, rport, replica_of(id_, address_, port_), "postgresql"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  ASSERT_TRUE(eventually([&] { return count(raddr, rport) == "1\n"; })) << count(raddr, rport);
  EXPECT_EQ(fenced_at(id_), "none");
  ASSERT_TRUE(detail::write_file_atomic(root + id_ + "/v/data/concord_marker_p", "x"));

  // There: the primary is told first and acknowledges before any promotion.
  DesiredState demoted = replica_of(rid, raddr, rport);
  st = driver_->configure(spec(demoted));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(fenced_at(id_), "fenced_revision=" + std::to_string(demoted.revision));
  w = psql(address_, port_, "root", "root-pw", "shop", "INSERT INTO t VALUES (99)");
  EXPECT_FALSE(w.ok()) << "fenced: it takes no writes";
  // The agent restarted in between: its stop and start keep it a standby.
  ASSERT_TRUE(driver_->stop(id_, std::chrono::milliseconds(10000)).has_value());
  st = driver_->start(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  w = psql(address_, port_, "root", "root-pw", "shop", "INSERT INTO t VALUES (99)");
  EXPECT_FALSE(w.ok()) << "fenced: it takes no writes";
  st = driver_->configure(spec_of(rid, raddr, rport, primary_of(id_), "postgresql"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  w = psql(raddr, rport, "root", "root-pw", "shop", "INSERT INTO t VALUES (2)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(eventually([&] { return count(address_, port_) == "2\n"; }))
      << count(address_, port_);
  EXPECT_TRUE(detail::path_exists(root + id_ + "/v/data/concord_marker_p")) << "not copied";

  // And back.
  ASSERT_TRUE(detail::write_file_atomic(root + rid + "/v/data/concord_marker_r", "x"));
  DesiredState back = replica_of(id_, address_, port_);
  st = driver_->configure(spec_of(rid, raddr, rport, back, "postgresql"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(fenced_at(rid), "fenced_revision=" + std::to_string(back.revision));
  st = driver_->configure(spec(primary_of(rid)));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_EQ(fenced_at(id_), "none") << "a primary again";
  w = psql(address_, port_, "root", "root-pw", "shop", "INSERT INTO t VALUES (3)");
  ASSERT_TRUE(w.ok()) << w.err;
  EXPECT_TRUE(eventually([&] { return count(raddr, rport) == "3\n"; })) << count(raddr, rport);
  EXPECT_TRUE(detail::path_exists(root + rid + "/v/data/concord_marker_r")) << "not copied";
  EXPECT_FALSE(detail::path_exists(root + rid + "/v/data.old"));

  // A failover while the primary is down: the replica is promoted, and the old primary is told
  // while stopped. Its start runs it as a standby (started as a primary, its own checkpoints
  // would fork it from the new primary) and it follows in place.
  ASSERT_TRUE(detail::write_file_atomic(root + id_ + "/v/data/concord_own_marker", "x"));
  ASSERT_TRUE(driver_->stop(id_, std::chrono::milliseconds(10000)).has_value());
  st = driver_->configure(spec_of(rid, raddr, rport, primary_of(id_), "postgresql"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  w = psql(raddr, rport, "root", "root-pw", "shop", "INSERT INTO t VALUES (4)");
  ASSERT_TRUE(w.ok()) << w.err;
  st = driver_->configure(spec(replica_of(rid, raddr, rport)));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();  // kept for its start
  st = driver_->start(id_);
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  EXPECT_TRUE(eventually([&] { return count(address_, port_) == "4\n"; }))
      << count(address_, port_);
  EXPECT_TRUE(detail::path_exists(root + id_ + "/v/data/concord_own_marker")) << "not copied";
  w = psql(address_, port_, "root", "root-pw", "shop", "INSERT INTO t VALUES (99)");
  EXPECT_FALSE(w.ok()) << "a replica now";
}

// A replica whose desired state says a backup is being taken to seed it makes no copy before
// the deadline (kUnavailable: the agent retries), and past it copies over the network.
TEST_F(DatabaseDriverTest, AReplicaWaitsForItsSeedBackupUntilTheDeadline) {
  if (::access("/usr/sbin/mariadbd", X_OK) != 0) GTEST_SKIP() << "mariadbd missing";
  drv::DriverOptions o;
  o.state_dir = tmp_.path() + "/agent";
  o.database_dir = tmp_.path() + "/agent/database";
  o.server_url = "http://127.0.0.1:1";  // a transport: seeds could be fetched
  o.agent_header = "host:credential";
  auto d = drv::make_database_driver(o);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  driver_ = std::move(*d);

  DesiredState rs;
  rs.revision = 1;
  rs.replication = ReplicationSpec{};
  rs.replication->role = ReplicationSpec::Role::kReplica;
  rs.replication->secret = "repl-secret";
  rs.replication->upstream_instance = "the-primary";
  rs.replication->upstream_address = address_;
  rs.replication->upstream_port = free_port(address_);  // nothing listens: a copy would fail
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  rs.replication->seed_wait_until_us = now_us + 600'000'000;
  auto st = driver_->create(spec(rs, "mariadb"));
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable);
  EXPECT_NE(st.error().message().find("waiting for the backup of the-primary"), std::string::npos)
      << st.error().to_string();
  const std::string dir = o.database_dir + "/" + id_ + "/v";
  EXPECT_FALSE(std::filesystem::exists(dir + "/data")) << "no copy was begun";

  // Past the deadline the copy goes over the network (which fails here: nothing listens).
  rs.replication->seed_wait_until_us = now_us - 1;
  st = driver_->create(spec(rs, "mariadb"));
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().message().find("waiting for the backup"), std::string::npos)
      << st.error().to_string();
  EXPECT_NE(st.error().message().find("the-primary"), std::string::npos) << st.error().to_string();
  (void)driver_->destroy(id_);
}

// Archived logs that cannot reach the server (nothing listens at its address) are reported as
// stalled once that has lasted database_archive_stall_after, and no longer once shipping works
// again (here: nothing left to ship). The marker survives a new driver (an agent restart).
TEST_F(DatabaseDriverTest, ShippingThatKeepsFailingIsReportedAsStalled) {
  drv::DriverOptions o;
  o.state_dir = tmp_.path() + "/agent";
  o.database_dir = tmp_.path() + "/agent/database";
  o.server_url = "http://127.0.0.1:1";
  o.agent_header = "host:credential";
  o.database_ship_interval = std::chrono::milliseconds(100);
  o.database_archive_stall_after = std::chrono::milliseconds(1000);
  auto d = drv::make_database_driver(o);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  driver_ = std::move(*d);

  ASSERT_NO_FATAL_FAILURE(create_postgres_and_close_a_segment());

  const std::string dir = o.database_dir + "/" + id_;
  const std::string engine_dir = dir + "/v";
  auto detail = [&] {
    auto status = driver_->status(id_);
    EXPECT_TRUE(status.has_value());
    return status ? status->detail : std::string();
  };
  auto wait_for = [&](auto done, const char* what) {
    for (int i = 0; i < 300 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(done()) << what << "; detail: " << detail();
  };
  wait_for([&] { return std::filesystem::exists(dir + "/ship_failing"); },
           "a failed shipping is recorded");
  EXPECT_EQ(detail().find("archive_stalled"), std::string::npos)
      << "not reported before database_archive_stall_after";
  wait_for([&] { return detail().find("; archive_stalled_since=") != std::string::npos; },
           "reported once it lasts");

  // An agent restart keeps the episode (and its start).
  o.database_ship_interval = std::chrono::milliseconds(0);
  d = drv::make_database_driver(o);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  driver_ = std::move(*d);
  EXPECT_NE(detail().find("; archive_stalled_since="), std::string::npos);

  // Logs waiting to be shipped count as the instance's disk use (they pile up while shipping
  // stalls); *.tmp is one being archived, which the shipping leaves alone.
  auto disk_used = [&] {
    const std::string d = detail();
    const size_t at = d.find("disk_used_bytes=");
    return at == std::string::npos ? int64_t{-1} : std::atoll(d.c_str() + at + 16);
  };
  const int64_t before = disk_used();
  ASSERT_GT(before, 0) << detail();
  {
    std::ofstream waiting(engine_dir + "/wal_archive/000000010000000000000099.tmp",
                          std::ios::binary);
    waiting << std::string(8 << 20, 'w');
  }
  EXPECT_GE(disk_used(), before + (8 << 20) - (64 << 10)) << detail();

  // Nothing waits to be shipped any more: the next round ships nothing, successfully.
  o.database_ship_interval = std::chrono::milliseconds(100);
  d = drv::make_database_driver(o);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  driver_ = std::move(*d);
  for (const auto& f : std::filesystem::directory_iterator(engine_dir + "/wal_archive")) {
    std::filesystem::remove_all(f.path());
  }
  wait_for([&] { return !std::filesystem::exists(dir + "/ship_failing"); },
           "a shipping that works ends it");
  EXPECT_EQ(detail().find("archive_stalled"), std::string::npos);
}

// The server's route that receives shipped logs, as far as the driver's shipping uses it: takes
// every upload and records its name and when it came.
class LogReceiver {
 public:
  LogReceiver() {
    auto table = std::make_shared<http::RouteTable>();
    table->add(http::Method::kPut, "/instances/{id}/logs/{name}", [this](http::Request& req) {
      std::lock_guard lock(mu_);
      received_.emplace_back(req.params.at(1), std::chrono::steady_clock::now());
      return http::Response::json(201, "{}");
    });
    auto router = std::make_shared<http::Router>();
    router->mount("/agent/v1/database", table, http::keystone_style_error);
    http::ServerOptions so;
    so.threads = 1;
    so.max_body_bytes = size_t{256} << 20;
    server_ = std::make_unique<http::Server>(so, router, std::make_shared<http::Registry>());
  }
  ~LogReceiver() { server_->stop(); }
  Status start() { return server_->start(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }
  // When the first log whose name passes `wanted` came (nullopt: none yet).
  std::optional<std::chrono::steady_clock::time_point> first(
      const std::function<bool(const std::string&)>& wanted) const {
    std::lock_guard lock(mu_);
    for (const auto& [name, at] : received_) {
      if (wanted(name)) return at;
    }
    return std::nullopt;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> received_;
  std::unique_ptr<http::Server> server_;
};

// With a shipping round only every minute, a completed log still reaches the server within
// seconds: the driver looks for waiting logs every second. For each engine: PostgreSQL's WAL
// segment closed by pg_switch_wal, MariaDB's binlog closed because it reached max_binlog_size
// (sized to the volume: 64 MB for this 1 GB one; the default 1 GB would never close here).
TEST_F(DatabaseDriverTest, CompletedLogsShipWithinSecondsNotAtTheNextRound) {
  LogReceiver server;
  ASSERT_TRUE(server.start().has_value());
  drv::DriverOptions o;
  o.state_dir = tmp_.path() + "/agent";
  o.database_dir = tmp_.path() + "/agent/database";
  o.server_url = server.url();
  o.agent_header = "host:credential";
  o.database_ship_interval = std::chrono::milliseconds(60000);
  auto d = drv::make_database_driver(o);
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  driver_ = std::move(*d);
  using Clock = std::chrono::steady_clock;
  auto received_within = [&](const std::function<bool(const std::string&)>& wanted,
                             Clock::time_point since, std::chrono::seconds limit) {
    const Clock::time_point deadline = since + limit;
    while (!server.first(wanted) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return server.first(wanted).has_value();
  };
  // Within 15 s of the log's completion, where the round would take 60 s.
  constexpr std::chrono::seconds kLimit{15};

  ASSERT_NO_FATAL_FAILURE(create_postgres_and_close_a_segment());
  const Clock::time_point switched = Clock::now();
  auto is_segment = [](const std::string& name) {
    return name.size() == 24 && name.find_first_not_of("0123456789ABCDEF") == std::string::npos;
  };
  EXPECT_TRUE(received_within(is_segment, switched, kLimit))
      << "no WAL segment shipped within " << kLimit.count() << " s of pg_switch_wal";
  ASSERT_TRUE(driver_->destroy(id_).has_value());

  if (::access("/usr/sbin/mariadbd", X_OK) != 0) GTEST_SKIP() << "mariadbd missing";
  DesiredState s;
  s.revision = 1;
  s.databases = {{"shop", "", ""}};
  s.root = RootSpec{mariadb_native_verifier("root-pw")};
  auto st = driver_->create(spec(s, "mariadb"));
  ASSERT_TRUE(st.has_value()) << st.error().to_string();
  // 80 rows of 1 MB: about 80 MB of row-format binlog, past max_binlog_size once.
  auto r = mariadb_cli(address_, port_, "root", "root-pw", "shop",
                       "CREATE TABLE t (b LONGTEXT); "
                       "INSERT INTO t SELECT REPEAT('x', 1048576) FROM seq_1_to_80");
  ASSERT_TRUE(r.ok()) << r.err;
  const Clock::time_point written = Clock::now();
  auto is_binlog = [](const std::string& name) { return name.starts_with("mariadb-bin"); };
  EXPECT_TRUE(received_within(is_binlog, written, kLimit))
      << "no binlog shipped within " << kLimit.count() << " s of filling one";
}

TEST_F(DatabaseDriverTest, BadMetadataIsInvalidArgumentAndCreatesNothing) {
  DesiredState s;
  s.revision = 1;
  auto bad_engine = spec(s, "oracle");
  auto st = driver_->create(bad_engine);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  auto bad_address = spec(s);
  auto md = parse_json(bad_address.guest.meta_data_json);
  ASSERT_TRUE(md.has_value());
  (*md)["meta"][std::string(keys::kAddress)] = "300.1.2.3";
  bad_address.guest.meta_data_json = dump_json(*md);
  st = driver_->create(bad_address);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  auto bad_state = spec(s);
  md = parse_json(bad_state.guest.meta_data_json);
  (*md)["meta"][std::string(keys::kState)] = "{not json";
  bad_state.guest.meta_data_json = dump_json(*md);
  st = driver_->create(bad_state);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);

  auto listed = driver_->list();
  ASSERT_TRUE(listed.has_value());
  EXPECT_TRUE(listed->empty());
}

}  // namespace
}  // namespace concord::database::engine::testing

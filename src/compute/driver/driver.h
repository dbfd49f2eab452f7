#pragma once
// The compute driver seam: what a host agent calls to turn desired state (an InstanceSpec) into
// running guests on this host, and to read back what actually exists.
//
// Design:
// - Every method is idempotent and safe to call again after the agent crashed at any point
//   (mid-create included). Drivers keep no authoritative state in memory: status() and list()
//   are derived from what is on disk under DriverOptions.state_dir plus the live processes
//   (runc state / QEMU pidfile + /proc + QMP socket), so a restarted agent adopts running
//   instances.
// - Guests outlive the agent: runc containers and QEMU processes are started detached in their
//   own session.
// - One driver object per kind per agent. Methods on one object may be called from several
//   threads for different ids; calls for the same id must be serialised by the caller (the
//   agent's per-instance reconcile loop does that).
// - Errors: kNotFound for an unknown id (except destroy, which succeeds), kInvalidArgument for a
//   malformed spec, kFailedPrecondition when the host cannot do it (runc missing, bad image),
//   kUnavailable for transient failures worth retrying, kDeadlineExceeded when a bounded wait
//   expired, kInternal for broken invariants.
//
// See docs/design/drivers.md.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace concord::compute::driver {

// Nova's power_state integers, so the API layer can report them unchanged.
enum class PowerState : int {
  kNoState = 0,
  kRunning = 1,
  kPaused = 3,
  kShutdown = 4,
  kCrashed = 6,
};

std::string_view power_state_name(PowerState state);

struct Address {
  std::string network;
  std::string addr;
  int version = 4;
  std::string mac;
  std::string type = "fixed";
  // For VMs with user-mode networking: host port -> guest port forwards (host side on
  // 127.0.0.1).
  std::vector<std::pair<int, int>> forwarded_ports;
};

// What cloud-init reads from the config drive.
struct GuestData {
  std::string user_data;          // raw bytes (already base64-decoded by the API)
  std::string meta_data_json;     // openstack/latest/meta_data.json
  std::string network_data_json;  // openstack/latest/network_data.json
  std::string vendor_data_json = "{}";
};

struct InstanceSpec {
  std::string id;  // server uuid; also names the runc container / qemu process ("concord-<id>")
  std::string hostname;
  int vcpus = 1;
  int64_t ram_mb = 64;
  int64_t disk_gb = 1;
  std::string image_path;        // local path of the image blob
  std::string image_kind;        // "rootfs-tar" (container driver), "raw" or "qcow2" (vm driver)
  std::string kernel_path;       // optional, VM direct kernel boot (Glance kernel_id)
  std::string ramdisk_path;      // optional, VM direct kernel boot (Glance ramdisk_id)
  std::string network = "none";  // "none" | "auto"
  bool config_drive = true;
  GuestData guest;
};

struct InstanceStatus {
  bool exists = false;
  PowerState power = PowerState::kNoState;
  std::vector<Address> addresses;
  std::string detail;
  // Checked again every heartbeat instead of every resync: its detail says something the server
  // must hear of within seconds (a synchronous standby that stopped streaming holds the
  // primary's commits until the server stops waiting for it).
  bool watch = false;
};

struct Capabilities {
  bool usable = false;
  bool kvm = false;
  std::string accel;   // vm: "kvm" | "tcg"; container: "runc"
  std::string reason;  // why not usable, or what was chosen and why
};

class Driver {
 public:
  virtual ~Driver() = default;

  // "container" | "vm" | "inference" | "database"
  virtual std::string_view kind() const = 0;
  // Bounded in time; the caller caches the answer.
  virtual Capabilities probe() = 0;
  // Prepares disk/bundle + config drive + network, and powers the instance on. Calling it again
  // for an existing id converges (finishes a half-done create, starts a stopped instance).
  [[nodiscard]] virtual Status create(const InstanceSpec& spec) = 0;
  [[nodiscard]] virtual Status start(std::string_view id) = 0;
  // Graceful (SIGTERM / QMP system_powerdown), then forced after `grace`.
  [[nodiscard]] virtual Status stop(std::string_view id, std::chrono::milliseconds grace) = 0;
  [[nodiscard]] virtual Status reboot(std::string_view id, bool hard) = 0;
  // New vcpus/ram (container: cgroup update in place; vm: restart with the new flavor).
  [[nodiscard]] virtual Status resize(const InstanceSpec& new_spec) = 0;
  // New image: new disk/bundle from the image, same id and addresses.
  [[nodiscard]] virtual Status rebuild(const InstanceSpec& new_spec) = 0;
  // Converges a running instance to a changed desired configuration carried by the spec's
  // metadata (the agent calls it when meta_data_json differs from what it last applied; the
  // database driver applies databases, users and parameters). Drivers whose instances take no
  // live configuration keep this default.
  [[nodiscard]] virtual Status configure(const InstanceSpec& spec) {
    (void)spec;
    return ok();
  }
  // Stops hard and removes everything (bundle, disk, logs, netns, veth, process); ok if gone.
  [[nodiscard]] virtual Status destroy(std::string_view id) = 0;
  // exists=false (not an error) for an unknown id.
  [[nodiscard]] virtual Result<InstanceStatus> status(std::string_view id) = 0;
  // Ids of instances this driver has on this host (running or not): adoption, orphan cleanup.
  [[nodiscard]] virtual Result<std::vector<std::string>> list() = 0;
  // Tail (at most max_bytes) of the console log. kNotFound for an unknown id.
  [[nodiscard]] virtual Result<std::string> console_log(std::string_view id, size_t max_bytes) = 0;
};

struct DriverOptions {
  // Per agent: instances live under state_dir/<kind>/<id>.
  std::string state_dir;
  std::string runc = "runc";
  std::string qemu = "qemu-system-x86_64";
  std::string qemu_img = "qemu-img";
  std::string bridge = "concord0";
  std::string subnet = "10.99.0.0/24";  // container addresses; the bridge takes the first
  // --root for runc; per agent so several agents on one machine do not see each other's
  // containers. Empty: state_dir/runc.
  std::string runc_root;
  int vm_host_port_base = 0;  // 0: pick free ports
  std::chrono::milliseconds kvm_probe_timeout{3000};
  // "auto": use KVM if the probe guest runs under it, else TCG. "tcg": never probe KVM. The
  // default is tcg because on the development machines the one-sector probe guest sometimes
  // runs under KVM while Linux guests then hang (docs/design/drivers.md, FACTS.md).
  std::string accel = "tcg";
  // Inference driver: the argv prefix that starts one replica (`concord inference-replica`
  // options follow, see src/inference/serving/replica.h). Empty: {"<this executable>",
  // "inference-replica"}.
  std::vector<std::string> replica_command;
  // The address replicas bind and report (the agent's host address; loopback by default). One
  // concrete address: it is what the gateway calls, so not 0.0.0.0.
  std::string inference_bind = "127.0.0.1";
  // cgroup v1 mount root and the group replicas' groups are created under (cpu and memory
  // controllers: <root>/cpu/<parent>/<id>, <root>/memory/<parent>/<id>). Best effort: when they
  // cannot be used, replicas run without limits and probe() says why.
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string cgroup_parent = "concord-inference";
  std::chrono::milliseconds cpu_period{100};
  // Database driver: the unprivileged user engines run as, where their binaries are (empty:
  // Debian's locations), their cgroup v1 parent (under cgroup_root) and the bound on an engine
  // start (create, start, reboot and resize wait until the engine answers an admin query).
  // Where database instance folders live; empty: /var/lib/concord/database/<digest of
  // state_dir> (database_root()). Not under state_dir: see database_driver.cc.
  std::string database_dir;
  std::string database_os_user = "concord-db";
  std::string database_bin_dir;
  std::string database_cgroup_parent = "concord-database";
  std::chrono::milliseconds database_start_timeout{60000};
  // "loop": each database instance's engine folder is a file system of the instance's volume
  // size (a sparse image, loop-mounted; database_volume.h), so the size is a hard limit.
  // "directory": a plain folder on the host's disk, its use only watched against the size.
  std::string database_volumes = "loop";
  // MariaDB's proxy_protocol_networks (engine::EngineOptions::proxy_networks).
  std::string database_proxy_networks = "*";
  // The server the agent talks to ("http://host:port") and its X-Concord-Agent value
  // ("<host>:<credential>"): the database driver uploads backups and archived logs there and
  // fetches them for restores. Empty server_url: no backups, restores or log shipping.
  std::string server_url;
  std::string agent_header;
  // How often the database driver ships archived logs of its instances and looks for replicas
  // that cannot go on from their upstream (0: never; also no shipping between rounds, which
  // otherwise takes completed logs waiting on a volume within about a second).
  std::chrono::milliseconds database_ship_interval{10000};
  // Shipping that has failed this long is reported (archive_stalled_since=<unix seconds> in
  // the status detail; the instance's archiving.stalled event).
  std::chrono::milliseconds database_archive_stall_after{600000};
};

[[nodiscard]] Result<std::unique_ptr<Driver>> make_container_driver(const DriverOptions& options);
[[nodiscard]] Result<std::unique_ptr<Driver>> make_vm_driver(const DriverOptions& options);
// Runs inference replicas as detached processes (image kind "onnx"); see inference_driver.cc.
[[nodiscard]] Result<std::unique_ptr<Driver>> make_inference_driver(const DriverOptions& options);
// Runs managed database engines (PostgreSQL, MariaDB) from the desired state in the spec's
// metadata (database_keys.h); no image. See database_driver.cc and docs/design/database.md.
[[nodiscard]] Result<std::unique_ptr<Driver>> make_database_driver(const DriverOptions& options);
// The folder the database driver keeps its instances in for these options.
std::string database_root(const DriverOptions& options);

// Writes an ISO 9660 image labelled "config-2" in OpenStack's layout
// (openstack/{latest,2012-08-10}/{meta_data.json,user_data,network_data.json,vendor_data.json})
// into `dir` with xorriso, atomically (temp + rename). Returns the ISO path.
[[nodiscard]] Result<std::string> build_config_drive(const std::string& dir,
                                                     const InstanceSpec& spec);

}  // namespace concord::compute::driver

// Container driver on runc.
//
// Per instance, state_dir/container/<id>/ holds:
//   spec.json        the InstanceSpec last applied (start/reboot/adoption read it)
//   image.sha256     which cached rootfs is the lower layer
//   upper/ work/     overlayfs upper and work dirs: the instance's own writes
//   bundle/config.json, bundle/rootfs/   the OCI bundle; rootfs is the overlay mount (or, where
//                    overlayfs cannot be mounted, a full copy; rootfs.mode says which)
//   config-drive/    the config drive tree, bind-mounted read-only at /mnt/config
//   net.json         the address lease (network auto)
//   console.log      the container's stdout/stderr, appended across restarts
//   runc.log         runc's own log
//   init.pid         "<pid> <start time>" of the container's init, to find an orphan when
//                    runc's state directory was lost
// Rootfs tarballs are extracted once per content hash into state_dir/images/<sha256>/rootfs
// (temp dir + rename, so a crash never leaves a half-extracted cache entry).
//
// Truth comes from runc (`runc --root <per-agent root> state`) and the directory; nothing is
// kept in memory, so a new driver object (a restarted agent) sees running containers as they
// are. The container runs in its own session (runc run --detach, setsid), so it outlives the
// agent.
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "compute/driver/config_drive.h"
#include "compute/driver/driver.h"
#include "compute/driver/net.h"
#include "compute/driver/process.h"
#include "compute/driver/spec_json.h"
#include "compute/driver/util.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace concord::compute::driver {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kRuncTimeout{60000};
constexpr milliseconds kKillWait{10000};
constexpr milliseconds kSoftRebootGrace{30000};
constexpr int64_t kCpuPeriod = 100000;

struct Paths {
  explicit Paths(const std::string& d)
      : dir(d),
        bundle(d + "/bundle"),
        rootfs(d + "/bundle/rootfs"),
        config(d + "/bundle/config.json"),
        upper(d + "/upper"),
        work(d + "/work"),
        mode(d + "/rootfs.mode"),
        image_hash(d + "/image.sha256"),
        config_drive(d + "/config-drive"),
        net(d + "/net.json"),
        console(d + "/console.log"),
        runc_log(d + "/runc.log"),
        init_pid(d + "/init.pid") {}
  std::string dir, bundle, rootfs, config, upper, work, mode, image_hash, config_drive, net,
      console, runc_log, init_pid;
};

struct RuncState {
  bool known = false;
  std::string status;  // creating | created | running | paused | stopped
  pid_t pid = 0;
};

Json lease_to_json(const Lease& l) {
  return {{"ip", l.ip},   {"prefix", l.prefix},       {"gateway", l.gateway},
          {"mac", l.mac}, {"host_veth", l.host_veth}, {"netns", l.netns}};
}

Result<Lease> lease_from_json(const std::string& text) {
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_json(text));
  Lease l;
  try {
    l.ip = j.at("ip").get<std::string>();
    l.prefix = j.at("prefix").get<int>();
    l.gateway = j.at("gateway").get<std::string>();
    l.mac = j.at("mac").get<std::string>();
    l.host_veth = j.at("host_veth").get<std::string>();
    l.netns = j.at("netns").get<std::string>();
  } catch (const std::exception& e) {
    return fail(Code::kInternal, fmt::format("corrupt net.json: {}", e.what()));
  }
  return l;
}

class ContainerDriver final : public Driver {
 public:
  ContainerDriver(DriverOptions options, Subnet subnet)
      : options_(std::move(options)),
        runc_root_(options_.runc_root.empty() ? options_.state_dir + "/runc" : options_.runc_root),
        net_(options_.bridge, subnet, "/run/concord/ipam/" + options_.bridge),
        log_(logger("compute.driver")) {}

  std::string_view kind() const override { return "container"; }

  Capabilities probe() override {
    Capabilities caps;
    caps.accel = "runc";
    if (::geteuid() != 0) {
      caps.reason = "the container driver needs root (runc, mounts, network namespaces)";
      return caps;
    }
    auto version =
        run_process({options_.runc, "--version"}, RunOptions{.timeout = milliseconds(10000)});
    if (!version) {
      caps.reason = version.error().message();
      return caps;
    }
    if (!version->ok()) {
      caps.reason = version->describe(options_.runc);
      return caps;
    }
    if (!path_exists("/sys/fs/cgroup/memory") &&
        !path_exists("/sys/fs/cgroup/cgroup.controllers")) {
      caps.reason = "no memory cgroup controller mounted under /sys/fs/cgroup";
      return caps;
    }
    caps.usable = true;
    std::string first_line = version->out.substr(0, version->out.find('\n'));
    caps.reason = first_line;
    return caps;
  }

  Status create(const InstanceSpec& spec) override {
    CONCORD_RETURN_IF_ERROR(validate_spec(spec));
    Paths p(dir_for(spec.id));
    CONCORD_RETURN_IF_ERROR(make_dirs(p.dir));
    CONCORD_RETURN_IF_ERROR(save_spec(p.dir, spec));
    CONCORD_RETURN_IF_ERROR(prepare(p, spec));
    CONCORD_RETURN_IF_ERROR(run_container(p, spec.id));
    log_->info("container created id={} network={}", spec.id, spec.network);
    return ok();
  }

  Status start(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    Paths p(dir_for(id));
    CONCORD_ASSIGN_OR_RETURN(InstanceSpec spec, load_spec(p.dir));
    CONCORD_RETURN_IF_ERROR(prepare(p, spec));
    return run_container(p, id);
  }

  Status stop(std::string_view id, milliseconds grace) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    Paths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no container {}", id));
    return stop_container(p, id, grace);
  }

  Status reboot(std::string_view id, bool hard) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    Paths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no container {}", id));
    CONCORD_RETURN_IF_ERROR(stop_container(p, id, hard ? milliseconds(0) : kSoftRebootGrace));
    return start(id);
  }

  Status resize(const InstanceSpec& new_spec) override {
    CONCORD_RETURN_IF_ERROR(validate_spec(new_spec));
    Paths p(dir_for(new_spec.id));
    CONCORD_ASSIGN_OR_RETURN(InstanceSpec spec, load_spec(p.dir));
    spec.vcpus = new_spec.vcpus;
    spec.ram_mb = new_spec.ram_mb;
    spec.disk_gb = new_spec.disk_gb;
    CONCORD_RETURN_IF_ERROR(save_spec(p.dir, spec));
    CONCORD_ASSIGN_OR_RETURN(std::optional<Lease> lease, read_lease(p));
    CONCORD_RETURN_IF_ERROR(write_bundle_config(p, spec, lease));
    CONCORD_ASSIGN_OR_RETURN(RuncState st, runc_state(spec.id));
    if (!st.known || st.status != "running") return ok();  // config.json applies at next start
    auto updated = run_checked(
        runc({"update", "--memory", std::to_string(spec.ram_mb * 1024 * 1024), "--cpu-period",
              std::to_string(kCpuPeriod), "--cpu-quota",
              std::to_string(static_cast<int64_t>(spec.vcpus) * kCpuPeriod), runc_id(spec.id)}),
        RunOptions{.timeout = kRuncTimeout}, Code::kFailedPrecondition);
    if (updated) return ok();
    // The kernel refuses to shrink a memory limit below current usage; a restart applies the
    // new config.json from scratch.
    log_->warn("container resize id={}: runc update failed ({}), restarting", spec.id,
               updated.error().message());
    CONCORD_RETURN_IF_ERROR(stop_container(p, spec.id, kSoftRebootGrace));
    return run_container(p, spec.id);
  }

  Status rebuild(const InstanceSpec& new_spec) override {
    CONCORD_RETURN_IF_ERROR(validate_spec(new_spec));
    Paths p(dir_for(new_spec.id));
    if (!path_exists(p.dir)) {
      return fail(Code::kNotFound, fmt::format("no container {} to rebuild", new_spec.id));
    }
    CONCORD_RETURN_IF_ERROR(stop_container(p, new_spec.id, milliseconds(0)));
    CONCORD_RETURN_IF_ERROR(drop_rootfs(p));
    // net.json stays: the rebuilt instance keeps its address.
    CONCORD_RETURN_IF_ERROR(save_spec(p.dir, new_spec));
    CONCORD_RETURN_IF_ERROR(prepare(p, new_spec));
    return run_container(p, new_spec.id);
  }

  Status destroy(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    Paths p(dir_for(id));
    CONCORD_RETURN_IF_ERROR(kill_and_delete(p, id));
    CONCORD_RETURN_IF_ERROR(unmount_rootfs(p));
    // The lease as recorded, or the names derived from the id when the agent died before
    // recording it.
    Lease lease;
    lease.netns = BridgeNetwork::netns_name(id);
    lease.host_veth = BridgeNetwork::host_veth_name(id);
    if (auto text = read_file(p.net)) {
      if (auto recorded = lease_from_json(*text)) lease = *recorded;
    }
    CONCORD_RETURN_IF_ERROR(net_.teardown(lease));
    if (!lease.ip.empty()) CONCORD_RETURN_IF_ERROR(net_.release(lease, p.dir));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.dir));
    log_->info("container destroyed id={}", id);
    return ok();
  }

  Result<InstanceStatus> status(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    Paths p(dir_for(id));
    InstanceStatus s;
    CONCORD_ASSIGN_OR_RETURN(RuncState st, runc_state(id));
    bool has_dir = path_exists(p.dir);
    s.exists = has_dir || st.known;
    if (!s.exists) return s;
    if (!st.known) {
      s.power = PowerState::kShutdown;
      s.detail = "not running";
    } else if (st.status == "running") {
      s.power = PowerState::kRunning;
      s.detail = fmt::format("running, init pid {}", st.pid);
    } else if (st.status == "paused") {
      s.power = PowerState::kPaused;
      s.detail = "paused";
    } else {
      s.power = PowerState::kShutdown;
      s.detail = st.status == "stopped" ? "exited on its own" : st.status;
    }
    if (!has_dir) s.detail += "; instance directory missing (orphan runc container)";
    CONCORD_ASSIGN_OR_RETURN(std::optional<Lease> lease, read_lease(p));
    if (lease) {
      Address a;
      a.network = options_.bridge;
      a.addr = lease->ip;
      a.mac = lease->mac;
      s.addresses.push_back(std::move(a));
    }
    return s;
  }

  Result<std::vector<std::string>> list() override {
    std::set<std::string> ids;
    for (auto& name : list_subdirs(options_.state_dir + "/container")) {
      if (!name.empty() && name[0] != '.') ids.insert(name);
    }
    CONCORD_ASSIGN_OR_RETURN(ProcessResult r,
                             run_checked(runc({"list", "--format", "json"}),
                                         RunOptions{.timeout = kRuncTimeout}, Code::kUnavailable));
    auto parsed = parse_json(r.out.empty() ? "null" : r.out);
    if (!parsed) {
      return fail(Code::kInternal, fmt::format("runc list: {}", parsed.error().message()));
    }
    if (parsed->is_array()) {
      for (const auto& c : *parsed) {
        std::string rid = c.value("id", "");
        if (rid.starts_with(kPrefix)) ids.insert(rid.substr(kPrefix.size()));
      }
    }
    return std::vector<std::string>(ids.begin(), ids.end());
  }

  Result<std::string> console_log(std::string_view id, size_t max_bytes) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    Paths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no container {}", id));
    auto tail = read_tail(p.console, max_bytes);
    if (!tail && tail.error().code() == Code::kNotFound) return std::string();
    return tail;
  }

 private:
  static constexpr std::string_view kPrefix = "concord-";

  std::string dir_for(std::string_view id) const {
    return fmt::format("{}/container/{}", options_.state_dir, id);
  }
  static std::string runc_id(std::string_view id) { return fmt::format("{}{}", kPrefix, id); }

  std::vector<std::string> runc(std::vector<std::string> args) const {
    std::vector<std::string> argv{options_.runc, "--root", runc_root_};
    argv.insert(argv.end(), std::make_move_iterator(args.begin()),
                std::make_move_iterator(args.end()));
    return argv;
  }

  Status validate_spec(const InstanceSpec& spec) const {
    CONCORD_RETURN_IF_ERROR(validate_id(spec.id));
    if (spec.image_kind != "rootfs-tar") {
      return fail(
          Code::kInvalidArgument,
          fmt::format("container driver runs 'rootfs-tar' images, not '{}'", spec.image_kind));
    }
    if (spec.vcpus < 1 || spec.ram_mb < 4) {
      return fail(Code::kInvalidArgument,
                  fmt::format("flavor too small: vcpus={} ram_mb={} (need >= 1 and >= 4)",
                              spec.vcpus, spec.ram_mb));
    }
    if (spec.network != "none" && spec.network != "auto") {
      return fail(Code::kInvalidArgument,
                  fmt::format("network must be 'none' or 'auto', got '{}'", spec.network));
    }
    return ok();
  }

  Result<RuncState> runc_state(std::string_view id) const {
    RuncState st;
    CONCORD_ASSIGN_OR_RETURN(ProcessResult r, run_process(runc({"state", runc_id(id)}),
                                                          RunOptions{.timeout = kRuncTimeout}));
    if (r.timed_out) return fail(Code::kUnavailable, r.describe("runc state"));
    if (!r.ok()) {
      if (r.err.find("does not exist") != std::string::npos ||
          r.err.find("not exist") != std::string::npos) {
        return st;
      }
      return fail(Code::kUnavailable, r.describe("runc state"));
    }
    auto j = parse_json(r.out);
    if (!j) return fail(Code::kInternal, fmt::format("runc state: {}", j.error().message()));
    st.known = true;
    st.status = j->value("status", "");
    st.pid = j->value("pid", 0);
    return st;
  }

  // Extracts the image once per content hash; returns the cached rootfs directory.
  Result<std::string> ensure_image(const Paths& p, const InstanceSpec& spec) {
    std::string hash;
    if (auto recorded = read_file(p.image_hash); recorded && !recorded->empty()) {
      hash = *recorded;
    } else {
      if (!path_exists(spec.image_path)) {
        return fail(Code::kFailedPrecondition,
                    fmt::format("image {} is not on this host", spec.image_path));
      }
      CONCORD_ASSIGN_OR_RETURN(hash, sha256_file(spec.image_path));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(p.image_hash, hash));
    }
    std::string images = options_.state_dir + "/rootfs-cache";
    std::string cached = fmt::format("{}/{}", images, hash);
    if (path_exists(cached + "/rootfs")) return cached + "/rootfs";
    if (!path_exists(spec.image_path)) {
      return fail(
          Code::kFailedPrecondition,
          fmt::format("image {} is not on this host and {} is not cached", spec.image_path, hash));
    }
    std::string tmp = fmt::format("{}/.tmp-{}-{}", images, hash.substr(0, 12), new_hex_id());
    CONCORD_RETURN_IF_ERROR(make_dirs(tmp + "/rootfs"));
    auto extracted =
        run_checked({"tar", "--numeric-owner", "-xf", spec.image_path, "-C", tmp + "/rootfs"},
                    RunOptions{.timeout = milliseconds(600000)}, Code::kFailedPrecondition);
    if (!extracted) {
      (void)remove_tree(tmp);
      return fail(Code::kFailedPrecondition,
                  fmt::format("image {} is not a usable rootfs tarball: {}", spec.image_path,
                              extracted.error().message()));
    }
    std::error_code ec;
    std::filesystem::rename(tmp, cached, ec);
    if (ec) {
      // Another create extracted the same image meanwhile; theirs is as good as ours.
      (void)remove_tree(tmp);
      if (!path_exists(cached + "/rootfs")) {
        return fail(Code::kInternal, fmt::format("rename {} -> {}: {}", tmp, cached, ec.message()));
      }
    }
    return cached + "/rootfs";
  }

  Status ensure_rootfs(const Paths& p, const std::string& lower) {
    auto mode = read_file(p.mode);
    if (mode && *mode == "copy") return ok();
    if (is_mount_point(p.rootfs)) return ok();
    CONCORD_RETURN_IF_ERROR(make_dirs(p.rootfs));
    CONCORD_RETURN_IF_ERROR(make_dirs(p.upper));
    CONCORD_RETURN_IF_ERROR(make_dirs(p.work));
    std::string data = fmt::format("lowerdir={},upperdir={},workdir={}", lower, p.upper, p.work);
    if (::mount("overlay", p.rootfs.c_str(), "overlay", 0, data.c_str()) == 0) {
      return write_file_atomic(p.mode, "overlay");
    }
    int err = errno;
    if (mode && *mode == "overlay") {
      return fail(Code::kUnavailable, fmt::format("cannot remount overlay rootfs {}: {}", p.rootfs,
                                                  std::strerror(err)));
    }
    // No overlayfs here (e.g. the state dir is itself on overlayfs or the kernel lacks it):
    // a private copy costs disk but behaves the same.
    log_->warn("overlay mount failed on {} ({}), copying the rootfs instead", p.rootfs,
               std::strerror(err));
    CONCORD_RETURN_IF_ERROR(run_checked({"cp", "-a", "--reflink=auto", lower + "/.", p.rootfs},
                                        RunOptions{.timeout = milliseconds(600000)}));
    return write_file_atomic(p.mode, "copy");
  }

  Status unmount_rootfs(const Paths& p) {
    while (is_mount_point(p.rootfs)) {
      if (::umount2(p.rootfs.c_str(), MNT_DETACH) != 0) {
        return fail(Code::kUnavailable,
                    fmt::format("umount {}: {}", p.rootfs, std::strerror(errno)));
      }
    }
    return ok();
  }

  Status drop_rootfs(const Paths& p) {
    CONCORD_RETURN_IF_ERROR(unmount_rootfs(p));
    for (const std::string& d : {p.rootfs, p.upper, p.work, p.mode, p.image_hash}) {
      CONCORD_RETURN_IF_ERROR(remove_tree(d));
    }
    return ok();
  }

  Result<std::optional<Lease>> read_lease(const Paths& p) {
    auto text = read_file(p.net);
    if (!text) {
      if (text.error().code() == Code::kNotFound) return std::optional<Lease>();
      return fail(text.error());
    }
    CONCORD_ASSIGN_OR_RETURN(Lease lease, lease_from_json(*text));
    return std::optional<Lease>(std::move(lease));
  }

  Result<std::optional<Lease>> ensure_network(const Paths& p, const InstanceSpec& spec) {
    CONCORD_ASSIGN_OR_RETURN(std::optional<Lease> lease, read_lease(p));
    if (spec.network == "none") {
      if (lease) {  // rebuilt from auto to none
        CONCORD_RETURN_IF_ERROR(net_.teardown(*lease));
        CONCORD_RETURN_IF_ERROR(net_.release(*lease, p.dir));
        CONCORD_RETURN_IF_ERROR(remove_tree(p.net));
      }
      return std::optional<Lease>();
    }
    if (!lease) {
      CONCORD_ASSIGN_OR_RETURN(Lease fresh, net_.allocate(spec.id, p.dir));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(p.net, dump_json(lease_to_json(fresh))));
      lease = fresh;
    } else {
      CONCORD_RETURN_IF_ERROR(net_.reclaim(*lease, p.dir));
    }
    CONCORD_RETURN_IF_ERROR(net_.ensure_bridge());
    CONCORD_RETURN_IF_ERROR(net_.setup(*lease));
    return lease;
  }

  Status write_bundle_config(const Paths& p, const InstanceSpec& spec,
                             const std::optional<Lease>& lease) {
    std::vector<std::string> args;
    if (path_exists(p.rootfs + "/init")) {
      args = {"/init"};
    } else if (path_exists(p.rootfs + "/sbin/init")) {
      args = {"/sbin/init"};
    } else {
      args = {"/bin/sh"};
    }
    Json caps = Json::array();
    for (const char* c :
         {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
          "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
          "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}) {
      caps.push_back(c);
    }
    Json net_ns = {{"type", "network"}};
    if (lease) net_ns["path"] = "/run/netns/" + lease->netns;
    Json mounts = Json::array({
        {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
        {{"destination", "/dev"},
         {"type", "tmpfs"},
         {"source", "tmpfs"},
         {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
        {{"destination", "/dev/pts"},
         {"type", "devpts"},
         {"source", "devpts"},
         {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}}},
        {{"destination", "/dev/shm"},
         {"type", "tmpfs"},
         {"source", "shm"},
         {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
        {{"destination", "/dev/mqueue"},
         {"type", "mqueue"},
         {"source", "mqueue"},
         {"options", {"nosuid", "noexec", "nodev"}}},
        {{"destination", "/sys"},
         {"type", "sysfs"},
         {"source", "sysfs"},
         {"options", {"nosuid", "noexec", "nodev", "ro"}}},
    });
    if (spec.config_drive && path_exists(p.config_drive)) {
      mounts.push_back({{"destination", "/mnt/config"},
                        {"type", "bind"},
                        {"source", p.config_drive},
                        {"options", {"rbind", "ro", "nosuid", "nodev", "noexec"}}});
    }
    Json config = {
        {"ociVersion", "1.0.2"},
        {"process",
         {{"terminal", false},
          {"user", {{"uid", 0}, {"gid", 0}}},
          {"args", args},
          {"env",
           {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=" + spec.hostname}},
          {"cwd", "/"},
          {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
          {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
          {"noNewPrivileges", true}}},
        {"root", {{"path", "rootfs"}, {"readonly", false}}},
        {"hostname", spec.hostname.empty() ? spec.id : spec.hostname},
        {"mounts", mounts},
        {"linux",
         {{"cgroupsPath",
           fmt::format("/concord/{}-{}", runc_id(spec.id), sha256_hex(runc_root_).substr(0, 8))},
          {"resources",
           {{"devices", {{{"allow", false}, {"access", "rwm"}}}},
            {"memory", {{"limit", spec.ram_mb * 1024 * 1024}}},
            {"cpu",
             {{"period", kCpuPeriod}, {"quota", static_cast<int64_t>(spec.vcpus) * kCpuPeriod}}}}},
          {"namespaces",
           {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}, net_ns}},
          {"maskedPaths",
           {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
            "/proc/scsi"}},
          {"readonlyPaths",
           {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
    return write_file_atomic(p.config, dump_json(config));
  }

  // Everything a container needs before `runc run`, each step convergent.
  Status prepare(const Paths& p, const InstanceSpec& spec) {
    CONCORD_ASSIGN_OR_RETURN(std::string lower, ensure_image(p, spec));
    CONCORD_RETURN_IF_ERROR(make_dirs(p.bundle));
    CONCORD_RETURN_IF_ERROR(ensure_rootfs(p, lower));
    if (spec.config_drive) {
      CONCORD_RETURN_IF_ERROR(write_config_drive_tree(p.config_drive, spec));
    } else {
      CONCORD_RETURN_IF_ERROR(remove_tree(p.config_drive));
    }
    CONCORD_ASSIGN_OR_RETURN(std::optional<Lease> lease, ensure_network(p, spec));
    return write_bundle_config(p, spec, lease);
  }

  // Kills an init process runc no longer knows about (its state dir was lost): without this a
  // restart would run a second copy beside the first.
  void kill_orphan(const Paths& p) {
    auto text = read_file(p.init_pid);
    if (!text) return;
    ProcessId pid;
    if (std::sscanf(text->c_str(), "%d %llu", &pid.pid, &pid.start_time) != 2) return;
    if (!process_matches(pid)) return;
    log_->warn("killing orphan container init pid={} ({})", pid.pid, p.dir);
    ::kill(pid.pid, SIGKILL);
    auto deadline = std::chrono::steady_clock::now() + kKillWait;
    while (process_matches(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

  Status run_container(const Paths& p, std::string_view id) {
    CONCORD_ASSIGN_OR_RETURN(RuncState st, runc_state(id));
    if (st.known && st.status == "running") return ok();
    if (st.known && st.status == "paused") {
      CONCORD_RETURN_IF_ERROR(
          run_checked(runc({"resume", runc_id(id)}), RunOptions{.timeout = kRuncTimeout}));
      return ok();
    }
    if (st.known) {
      CONCORD_RETURN_IF_ERROR(run_checked(runc({"delete", "--force", runc_id(id)}),
                                          RunOptions{.timeout = kRuncTimeout}, Code::kUnavailable));
    } else {
      kill_orphan(p);
    }
    // Detached, stdio to the console log: runc hands its stdio to the container, which keeps it
    // after runc exits. setsid keeps the container out of the agent's session.
    RunOptions options;
    options.timeout = kRuncTimeout;
    options.output_file = p.console;
    options.detach = true;
    CONCORD_ASSIGN_OR_RETURN(ProcessResult r,
                             run_process(runc({"--log", p.runc_log, "run", "--detach", "--bundle",
                                               p.bundle, runc_id(id)}),
                                         options));
    if (!r.ok()) {
      std::string detail = read_tail(p.runc_log, 800).value_or("");
      return fail(
          r.timed_out ? Code::kDeadlineExceeded : Code::kInternal,
          fmt::format("{} for container {}; runc log: {}", r.describe("runc run"), id, detail));
    }
    CONCORD_ASSIGN_OR_RETURN(RuncState after, runc_state(id));
    if (after.pid > 0) {
      if (auto start = process_start_time(after.pid)) {
        CONCORD_RETURN_IF_ERROR(
            write_file_atomic(p.init_pid, fmt::format("{} {}", after.pid, *start)));
      }
    }
    return ok();
  }

  Status wait_not_running(std::string_view id, milliseconds limit, bool* stopped) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
      CONCORD_ASSIGN_OR_RETURN(RuncState st, runc_state(id));
      if (!st.known || (st.status != "running" && st.status != "paused")) {
        *stopped = true;
        return ok();
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        *stopped = false;
        return ok();
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  Status stop_container(const Paths& p, std::string_view id, milliseconds grace) {
    CONCORD_ASSIGN_OR_RETURN(RuncState st, runc_state(id));
    if (!st.known) {
      kill_orphan(p);
      return ok();
    }
    if (st.status == "paused") {
      // A frozen init cannot act on SIGTERM.
      (void)run_process(runc({"resume", runc_id(id)}), RunOptions{.timeout = kRuncTimeout});
    }
    bool stopped = st.status != "running" && st.status != "paused";
    if (!stopped && grace.count() > 0) {
      (void)run_process(runc({"kill", runc_id(id), "TERM"}), RunOptions{.timeout = kRuncTimeout});
      CONCORD_RETURN_IF_ERROR(wait_not_running(id, grace, &stopped));
    }
    if (!stopped) {
      (void)run_process(runc({"kill", runc_id(id), "KILL"}), RunOptions{.timeout = kRuncTimeout});
      CONCORD_RETURN_IF_ERROR(wait_not_running(id, kKillWait, &stopped));
      if (!stopped) {
        return fail(
            Code::kDeadlineExceeded,
            fmt::format("container {} still running {} ms after SIGKILL", id, kKillWait.count()));
      }
    }
    CONCORD_RETURN_IF_ERROR(run_checked(runc({"delete", "--force", runc_id(id)}),
                                        RunOptions{.timeout = kRuncTimeout}, Code::kUnavailable));
    return ok();
  }

  Status kill_and_delete(const Paths& p, std::string_view id) {
    CONCORD_ASSIGN_OR_RETURN(RuncState st, runc_state(id));
    if (st.known) {
      CONCORD_RETURN_IF_ERROR(run_checked(runc({"delete", "--force", runc_id(id)}),
                                          RunOptions{.timeout = kRuncTimeout}, Code::kUnavailable));
    }
    kill_orphan(p);
    return ok();
  }

  DriverOptions options_;
  std::string runc_root_;
  BridgeNetwork net_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

Result<std::unique_ptr<Driver>> make_container_driver(const DriverOptions& options) {
  if (options.state_dir.empty()) {
    return fail(Code::kInvalidArgument, "container driver: state_dir is required");
  }
  CONCORD_ASSIGN_OR_RETURN(Subnet subnet, parse_subnet(options.subnet));
  if (options.bridge.empty() || options.bridge.size() > 15) {
    return fail(Code::kInvalidArgument,
                fmt::format("bridge name '{}' must be 1..15 characters", options.bridge));
  }
  CONCORD_RETURN_IF_ERROR(make_dirs(options.state_dir + "/container"));
  CONCORD_RETURN_IF_ERROR(make_dirs(options.state_dir + "/rootfs-cache"));
  // Half-extracted images of an agent killed mid-create: nothing else of this agent is running
  // yet, so nobody is writing them.
  for (const auto& name : list_subdirs(options.state_dir + "/rootfs-cache")) {
    if (name.starts_with(".tmp-")) (void)remove_tree(options.state_dir + "/rootfs-cache/" + name);
  }
  return std::unique_ptr<Driver>(std::make_unique<ContainerDriver>(options, subnet));
}

}  // namespace concord::compute::driver

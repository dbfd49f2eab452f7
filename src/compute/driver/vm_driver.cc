// VM driver on QEMU.
//
// Per instance, state_dir/vm/<id>/ holds:
//   spec.json     the InstanceSpec last applied
//   disk.qcow2    copy-on-write overlay on the image blob (which must stay on the host)
//   config.iso    the config drive (ISO 9660, label config-2), attached as a read-only virtio disk
//   console.log   the serial console (QEMU appends across restarts)
//   qemu.pid      written by QEMU (-pidfile); the process is found through it
//   qmp.sock      QMP control socket (under /run/concord/qmp/ when the path would be too long
//                 for a unix socket)
//   ports.json    the host port forwarded to guest port 22 (network auto), kept across restarts
//
// QEMU runs daemonized in its own session, so it outlives the agent. A process counts as this
// instance's only if its /proc/<pid>/cmdline names "concord-<id>", which guards against pid
// reuse after a host reboot. Power state comes from the process and QMP query-status, never
// from memory.
//
// The accelerator is probed by booting a 512-byte guest that writes to QEMU's isa-debug-exit
// port: KVM is used only if that guest really ran under KVM within kvm_probe_timeout (on the
// development machines /dev/kvm opens but guests never run), otherwise TCG.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "compute/driver/driver.h"
#include "compute/driver/process.h"
#include "compute/driver/qmp.h"
#include "compute/driver/spec_json.h"
#include "compute/driver/util.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace concord::compute::driver {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kQemuStartTimeout{60000};
constexpr milliseconds kQmpTimeout{5000};
constexpr milliseconds kQuitWait{5000};
constexpr milliseconds kKillWait{10000};
// How often a wait for QEMU to exit looks again.
constexpr milliseconds kExitPoll{50};
constexpr milliseconds kSoftRebootGrace{30000};
constexpr milliseconds kTcgProbeTimeout{30000};
constexpr int kGuestSshPort = 22;
constexpr std::string_view kGuestAddress = "10.0.2.15";  // QEMU user-mode networking's guest

struct VmPaths {
  explicit VmPaths(const std::string& d)
      : dir(d),
        disk(d + "/disk.qcow2"),
        iso(d + "/config.iso"),
        console(d + "/console.log"),
        pidfile(d + "/qemu.pid"),
        ports(d + "/ports.json"),
        qmp(d + "/qmp.sock") {
    // sun_path holds 108 bytes; deep state dirs get a socket under /run named by the dir.
    if (qmp.size() >= 100) qmp = "/run/concord/qmp/" + sha256_hex(d).substr(0, 24) + ".sock";
  }
  std::string dir, disk, iso, console, pidfile, ports, qmp;
};

// QEMU option values separate with ','; a literal comma is doubled.
std::string qemu_escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

std::string guest_mac(std::string_view id) {
  std::string h = sha256_hex(std::string("vm-mac:") + std::string(id));
  return fmt::format("52:54:00:{}:{}:{}", h.substr(0, 2), h.substr(2, 2), h.substr(4, 2));
}

bool port_free(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

Result<int> pick_port(int base) {
  if (base > 0) {
    for (int port = base; port < base + 1000 && port < 65536; ++port) {
      if (port_free(port)) return port;
    }
    return fail(Code::kResourceExhausted,
                fmt::format("no free host port in {}..{}", base, base + 999));
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(Code::kInternal, fmt::format("socket: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  if (port <= 0) return fail(Code::kInternal, "cannot pick a free loopback port");
  return port;
}

class VmDriver final : public Driver {
 public:
  explicit VmDriver(DriverOptions options)
      : options_(std::move(options)), log_(logger("compute.driver")) {}

  std::string_view kind() const override { return "vm"; }

  Capabilities probe() override {
    std::lock_guard<std::mutex> lock(probe_mutex_);
    if (!caps_) caps_ = run_probe();
    return *caps_;
  }

  Status create(const InstanceSpec& spec) override {
    CONCORD_RETURN_IF_ERROR(validate_spec(spec));
    VmPaths p(dir_for(spec.id));
    CONCORD_RETURN_IF_ERROR(make_dirs(p.dir));
    CONCORD_RETURN_IF_ERROR(save_spec(p.dir, spec));
    CONCORD_RETURN_IF_ERROR(prepare(p, spec));
    CONCORD_RETURN_IF_ERROR(launch(p, spec));
    log_->info("vm created id={} network={}", spec.id, spec.network);
    return ok();
  }

  Status start(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    VmPaths p(dir_for(id));
    CONCORD_ASSIGN_OR_RETURN(InstanceSpec spec, load_spec(p.dir));
    CONCORD_RETURN_IF_ERROR(prepare(p, spec));
    return launch(p, spec);
  }

  Status stop(std::string_view id, milliseconds grace) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    VmPaths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no vm {}", id));
    return stop_vm(p, id, grace);
  }

  Status reboot(std::string_view id, bool hard) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    VmPaths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no vm {}", id));
    if (!hard) {
      // Nova's soft reboot: ACPI shutdown, then power on again.
      CONCORD_RETURN_IF_ERROR(stop_vm(p, id, kSoftRebootGrace));
      return start(id);
    }
    if (live_pid(p, id) == 0) return start(id);
    auto qmp = QmpClient::connect(p.qmp, kQmpTimeout);
    if (qmp) {
      auto reset = qmp->execute("system_reset");
      if (reset) return ok();
    }
    // QMP unusable: a hard reboot may be as hard as it likes.
    CONCORD_RETURN_IF_ERROR(stop_vm(p, id, milliseconds(0)));
    return start(id);
  }

  Status resize(const InstanceSpec& new_spec) override {
    CONCORD_RETURN_IF_ERROR(validate_id(new_spec.id));
    VmPaths p(dir_for(new_spec.id));
    CONCORD_ASSIGN_OR_RETURN(InstanceSpec spec, load_spec(p.dir));
    if (new_spec.vcpus < 1 || new_spec.ram_mb < 16) {
      return fail(Code::kInvalidArgument, fmt::format("flavor too small: vcpus={} ram_mb={}",
                                                      new_spec.vcpus, new_spec.ram_mb));
    }
    if (new_spec.disk_gb < spec.disk_gb) {
      return fail(Code::kInvalidArgument, fmt::format("disk cannot shrink from {} GB to {} GB",
                                                      spec.disk_gb, new_spec.disk_gb));
    }
    bool running = live_pid(p, spec.id) != 0;
    if (running) CONCORD_RETURN_IF_ERROR(stop_vm(p, spec.id, kSoftRebootGrace));
    if (new_spec.disk_gb > spec.disk_gb && path_exists(p.disk)) {
      CONCORD_RETURN_IF_ERROR(run_checked({options_.qemu_img, "resize", "-f", "qcow2", p.disk,
                                           fmt::format("{}G", new_spec.disk_gb)},
                                          RunOptions{.timeout = milliseconds(60000)}));
    }
    spec.vcpus = new_spec.vcpus;
    spec.ram_mb = new_spec.ram_mb;
    spec.disk_gb = new_spec.disk_gb;
    CONCORD_RETURN_IF_ERROR(save_spec(p.dir, spec));
    if (running) return launch(p, spec);
    return ok();
  }

  Status rebuild(const InstanceSpec& new_spec) override {
    CONCORD_RETURN_IF_ERROR(validate_spec(new_spec));
    VmPaths p(dir_for(new_spec.id));
    if (!path_exists(p.dir)) {
      return fail(Code::kNotFound, fmt::format("no vm {} to rebuild", new_spec.id));
    }
    CONCORD_RETURN_IF_ERROR(stop_vm(p, new_spec.id, milliseconds(0)));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.disk));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.iso));
    // ports.json stays: the rebuilt server keeps its addresses.
    CONCORD_RETURN_IF_ERROR(save_spec(p.dir, new_spec));
    CONCORD_RETURN_IF_ERROR(prepare(p, new_spec));
    return launch(p, new_spec);
  }

  Status destroy(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    VmPaths p(dir_for(id));
    if (pid_t pid = live_pid(p, id); pid != 0) {
      if (!kill_and_wait(pid, /*group=*/false, kKillWait, kExitPoll)) {
        return fail(Code::kDeadlineExceeded,
                    fmt::format("qemu pid {} of vm {} survived SIGKILL", pid, id));
      }
    }
    CONCORD_RETURN_IF_ERROR(remove_tree(p.qmp));
    CONCORD_RETURN_IF_ERROR(remove_tree(p.dir));
    log_->info("vm destroyed id={}", id);
    return ok();
  }

  Result<InstanceStatus> status(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    VmPaths p(dir_for(id));
    InstanceStatus s;
    if (!path_exists(p.dir)) return s;
    s.exists = true;
    pid_t pid = live_pid(p, id);
    if (pid == 0) {
      s.power = PowerState::kShutdown;
      s.detail = "no qemu process";
    } else {
      s.power = PowerState::kRunning;
      s.detail = fmt::format("qemu pid {}", pid);
      auto qmp = QmpClient::connect(p.qmp, kQmpTimeout);
      Result<Json> q = qmp ? qmp->execute("query-status") : Result<Json>(fail(qmp.error()));
      if (!q) {
        s.detail += "; QMP unreachable: " + q.error().message();
      } else {
        std::string st = q->value("status", "");
        s.detail += "; " + st;
        if (st == "paused" || st == "suspended" || st == "prelaunch" || st == "inmigrate" ||
            st == "postmigrate" || st == "finish-migrate" || st == "save-vm" ||
            st == "restore-vm" || st == "debug" || st == "watchdog") {
          s.power = PowerState::kPaused;
        } else if (st == "shutdown") {
          s.power = PowerState::kShutdown;
        } else if (st == "guest-panicked" || st == "internal-error" || st == "io-error") {
          s.power = PowerState::kCrashed;
        }
      }
    }
    auto spec = load_spec(p.dir);
    if (spec && spec->network == "auto") {
      Address a;
      a.network = "user";
      a.addr = std::string(kGuestAddress);
      a.mac = guest_mac(id);
      if (auto port = read_port(p)) a.forwarded_ports.emplace_back(*port, kGuestSshPort);
      s.addresses.push_back(std::move(a));
    }
    return s;
  }

  Result<std::vector<std::string>> list() override {
    return list_instance_ids(options_.state_dir + "/vm");
  }

  Result<std::string> console_log(std::string_view id, size_t max_bytes) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    VmPaths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no vm {}", id));
    return read_log_tail(p.console, max_bytes);
  }

 private:
  std::string dir_for(std::string_view id) const {
    return fmt::format("{}/vm/{}", options_.state_dir, id);
  }
  static std::string qemu_name(std::string_view id) { return fmt::format("concord-{}", id); }

  Status validate_spec(const InstanceSpec& spec) const {
    CONCORD_RETURN_IF_ERROR(validate_id(spec.id));
    if (spec.image_kind != "raw" && spec.image_kind != "qcow2") {
      return fail(
          Code::kInvalidArgument,
          fmt::format("vm driver boots 'raw' or 'qcow2' images, not '{}'", spec.image_kind));
    }
    if (spec.vcpus < 1 || spec.ram_mb < 16 || spec.disk_gb < 1) {
      return fail(Code::kInvalidArgument,
                  fmt::format("flavor too small: vcpus={} ram_mb={} disk_gb={}", spec.vcpus,
                              spec.ram_mb, spec.disk_gb));
    }
    if (spec.network != "none" && spec.network != "auto") {
      return fail(Code::kInvalidArgument,
                  fmt::format("network must be 'none' or 'auto', got '{}'", spec.network));
    }
    return ok();
  }

  Capabilities run_probe() {
    Capabilities caps;
    auto version =
        run_process({options_.qemu, "--version"}, RunOptions{.timeout = milliseconds(10000)});
    if (!version || !version->ok()) {
      caps.reason = version ? version->describe(options_.qemu) : version.error().message();
      return caps;
    }
    auto img =
        run_process({options_.qemu_img, "--version"}, RunOptions{.timeout = milliseconds(10000)});
    if (!img || !img->ok()) {
      caps.reason = img ? img->describe(options_.qemu_img) : img.error().message();
      return caps;
    }
    std::string kvm_note;
    int fd = options_.accel == "tcg" ? -1 : ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (options_.accel == "tcg") {
      kvm_note = "accelerator tcg by configuration (auto probes KVM)";
    } else if (fd < 0) {
      kvm_note = fmt::format("/dev/kvm: {}", std::strerror(errno));
    } else {
      ::close(fd);
      auto ran = guest_runs("kvm", options_.kvm_probe_timeout);
      if (ran && *ran) {
        caps.usable = caps.kvm = true;
        caps.accel = "kvm";
        caps.reason = "a probe guest ran under KVM";
        return caps;
      }
      kvm_note = ran ? fmt::format(
                           "/dev/kvm opens but a probe guest did not run under KVM "
                           "within {} ms",
                           options_.kvm_probe_timeout.count())
                     : ran.error().message();
    }
    auto tcg = guest_runs("tcg", kTcgProbeTimeout);
    if (!tcg || !*tcg) {
      caps.reason = fmt::format("{}; and a probe guest did not run under TCG either: {}", kvm_note,
                                tcg ? "timed out" : tcg.error().message());
      return caps;
    }
    caps.usable = true;
    caps.accel = "tcg";
    caps.reason = kvm_note + "; using TCG";
    return caps;
  }

  // Boots a one-sector guest that exits QEMU through isa-debug-exit: QEMU's exit status
  // 33 (= 0x10 << 1 | 1) proves guest code ran under `accel`.
  Result<bool> guest_runs(const std::string& accel, milliseconds timeout) {
    std::string dir = fmt::format("{}/vm/.probe-{}", options_.state_dir, new_hex_id());
    CONCORD_RETURN_IF_ERROR(make_dirs(dir));
    std::string sector(512, '\0');
    const unsigned char code[] = {
        0xB0, 'K',         // mov al, 'K'
        0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
        0xEE,              // out dx, al      (serial, for a human reading the log)
        0xB0, 0x10,        // mov al, 0x10
        0xE6, 0xF4,        // out 0xf4, al    (isa-debug-exit)
        0xF4,              // hlt
        0xEB, 0xFD,        // jmp hlt
    };
    std::memcpy(sector.data(), code, sizeof code);
    sector[510] = static_cast<char>(0x55);
    sector[511] = static_cast<char>(0xAA);
    std::string image = dir + "/probe.img";
    auto written = write_file_atomic(image, sector);
    Result<ProcessResult> r =
        written ? run_process({options_.qemu, "-nodefaults", "-no-user-config", "-display", "none",
                               "-machine", "pc,accel=" + accel, "-m", "16", "-drive",
                               "file=" + qemu_escape(image) + ",format=raw,if=ide", "-device",
                               "isa-debug-exit,iobase=0xf4,iosize=0x04"},
                              RunOptions{.timeout = timeout})
                : Result<ProcessResult>(fail(written.error()));
    (void)remove_tree(dir);
    if (!r) return fail(r.error());
    if (r->timed_out) return false;
    if (r->signal == 0 && r->exit_code == 33) return true;
    return fail(Code::kFailedPrecondition,
                fmt::format("{} probe: {}", accel, r->describe(options_.qemu)));
  }

  std::string accel() {
    Capabilities caps = probe();
    return caps.accel.empty() ? "tcg" : caps.accel;
  }

  std::optional<int> read_port(const VmPaths& p) const {
    auto text = read_file(p.ports);
    if (!text) return std::nullopt;
    auto j = parse_json(*text);
    if (!j || !j->contains("ssh") || !(*j)["ssh"].is_number_integer()) return std::nullopt;
    return (*j)["ssh"].get<int>();
  }

  Status prepare(const VmPaths& p, const InstanceSpec& spec) {
    if (!path_exists(p.disk)) {
      if (!path_exists(spec.image_path)) {
        return fail(Code::kFailedPrecondition,
                    fmt::format("image {} is not on this host", spec.image_path));
      }
      std::string image = std::filesystem::absolute(spec.image_path).string();
      CONCORD_ASSIGN_OR_RETURN(
          ProcessResult info,
          run_checked({options_.qemu_img, "info", "--output=json", "-f", spec.image_kind, image},
                      RunOptions{.timeout = milliseconds(60000)}, Code::kFailedPrecondition));
      auto j = parse_json(info.out);
      int64_t virtual_size = j ? j->value("virtual-size", int64_t{0}) : 0;
      if (virtual_size > spec.disk_gb * (int64_t{1} << 30)) {
        return fail(Code::kInvalidArgument,
                    fmt::format("image {} ({} bytes) does not fit a {} GB disk", image,
                                virtual_size, spec.disk_gb));
      }
      std::string tmp = p.disk + ".tmp";
      (void)remove_tree(tmp);
      CONCORD_RETURN_IF_ERROR(
          run_checked({options_.qemu_img, "create", "-q", "-f", "qcow2", "-F", spec.image_kind,
                       "-b", image, tmp, fmt::format("{}G", spec.disk_gb)},
                      RunOptions{.timeout = milliseconds(60000)}, Code::kFailedPrecondition));
      std::error_code ec;
      std::filesystem::rename(tmp, p.disk, ec);
      if (ec) return fail(Code::kInternal, fmt::format("rename {}: {}", tmp, ec.message()));
    }
    if (spec.config_drive) {
      CONCORD_RETURN_IF_ERROR(build_config_drive(p.dir, spec));
    } else {
      CONCORD_RETURN_IF_ERROR(remove_tree(p.iso));
    }
    if (spec.network == "auto" && !read_port(p)) {
      CONCORD_ASSIGN_OR_RETURN(int port, pick_port(options_.vm_host_port_base));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(p.ports, dump_json(Json{{"ssh", port}})));
    }
    return ok();
  }

  // The pid of this instance's QEMU, or 0.
  pid_t live_pid(const VmPaths& p, std::string_view id) const {
    pid_t pid = read_live_pid(p.pidfile);
    if (pid == 0) return 0;
    // A reused pid belongs to some other process: the cmdline must name this instance.
    std::string cmdline = process_cmdline(pid);
    if (cmdline.find(" " + qemu_name(id) + " ") == std::string::npos) return 0;
    return pid;
  }

  std::vector<std::string> qemu_argv(const VmPaths& p, const InstanceSpec& spec,
                                     std::optional<int> port) {
    std::vector<std::string> argv{options_.qemu,
                                  "-name",
                                  qemu_name(spec.id),
                                  "-nodefaults",
                                  "-no-user-config",
                                  "-machine",
                                  "pc,accel=" + accel(),
                                  "-smp",
                                  std::to_string(spec.vcpus),
                                  "-m",
                                  std::to_string(spec.ram_mb),
                                  "-display",
                                  "none",
                                  "-drive",
                                  "file=" + qemu_escape(p.disk) + ",if=virtio,format=qcow2"};
    if (spec.config_drive) {
      argv.insert(argv.end(),
                  {"-drive", "file=" + qemu_escape(p.iso) + ",if=virtio,format=raw,readonly=on"});
    }
    if (!spec.kernel_path.empty()) {
      argv.insert(argv.end(), {"-kernel", spec.kernel_path});
      if (!spec.ramdisk_path.empty()) argv.insert(argv.end(), {"-initrd", spec.ramdisk_path});
      argv.insert(argv.end(), {"-append", "console=ttyS0 root=/dev/vda"});
    }
    argv.insert(
        argv.end(),
        {"-chardev", "file,id=serial0,path=" + qemu_escape(p.console) + ",append=on", "-serial",
         "chardev:serial0", "-qmp", "unix:" + qemu_escape(p.qmp) + ",server=on,wait=off"});
    if (port) {
      argv.insert(
          argv.end(),
          {"-netdev", fmt::format("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:{}", *port, kGuestSshPort),
           "-device", "virtio-net-pci,netdev=n0,mac=" + guest_mac(spec.id)});
    } else {
      argv.insert(argv.end(), {"-nic", "none"});
    }
    argv.insert(argv.end(), {"-pidfile", p.pidfile, "-daemonize"});
    return argv;
  }

  Status launch(const VmPaths& p, const InstanceSpec& spec) {
    if (live_pid(p, spec.id) != 0) return ok();
    (void)remove_tree(p.pidfile);
    if (p.qmp.starts_with("/run/")) {
      CONCORD_RETURN_IF_ERROR(make_dirs(std::filesystem::path(p.qmp).parent_path().string()));
    }
    (void)remove_tree(p.qmp);
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::optional<int> port;
      if (spec.network == "auto") port = read_port(p);
      RunOptions options;
      options.timeout = kQemuStartTimeout;
      options.detach = true;
      CONCORD_ASSIGN_OR_RETURN(ProcessResult r, run_process(qemu_argv(p, spec, port), options));
      if (r.ok()) break;
      bool port_taken = port && (r.err.find("hostfwd") != std::string::npos ||
                                 r.err.find("host forwarding") != std::string::npos);
      if (port_taken && attempt == 0) {
        // Another process took the recorded port while the VM was off: move the forward.
        CONCORD_ASSIGN_OR_RETURN(int fresh, pick_port(options_.vm_host_port_base));
        CONCORD_RETURN_IF_ERROR(write_file_atomic(p.ports, dump_json(Json{{"ssh", fresh}})));
        continue;
      }
      return fail(r.timed_out ? Code::kDeadlineExceeded : Code::kFailedPrecondition,
                  fmt::format("starting vm {}: {}", spec.id, r.describe(options_.qemu)));
    }
    if (live_pid(p, spec.id) == 0) {
      return fail(Code::kInternal,
                  fmt::format("qemu for vm {} daemonized but {} names no live process", spec.id,
                              p.pidfile));
    }
    return ok();
  }

  Status stop_vm(const VmPaths& p, std::string_view id, milliseconds grace) {
    pid_t pid = live_pid(p, id);
    if (pid == 0) {
      (void)remove_tree(p.pidfile);
      return ok();
    }
    if (grace.count() > 0) {
      if (auto qmp = QmpClient::connect(p.qmp, kQmpTimeout)) {
        (void)qmp->execute("system_powerdown");
      }
      if (wait_gone(pid, grace, kExitPoll)) {
        (void)remove_tree(p.pidfile);
        return ok();
      }
      log_->info("vm {} ignored ACPI power-down for {} ms, forcing", id, grace.count());
    }
    if (auto qmp = QmpClient::connect(p.qmp, kQmpTimeout)) {
      (void)qmp->execute("quit");  // the reply may be lost as QEMU exits; the wait decides
    }
    if (!wait_gone(pid, kQuitWait, kExitPoll)) {
      if (!kill_and_wait(pid, /*group=*/false, kKillWait, kExitPoll)) {
        return fail(Code::kDeadlineExceeded,
                    fmt::format("qemu pid {} of vm {} survived SIGKILL", pid, id));
      }
    }
    (void)remove_tree(p.pidfile);
    return ok();
  }

  DriverOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::mutex probe_mutex_;
  std::optional<Capabilities> caps_;  // guarded by probe_mutex_
};

}  // namespace

Result<std::unique_ptr<Driver>> make_vm_driver(const DriverOptions& options) {
  if (options.state_dir.empty()) {
    return fail(Code::kInvalidArgument, "vm driver: state_dir is required");
  }
  if (options.kvm_probe_timeout.count() <= 0) {
    return fail(Code::kInvalidArgument, "vm driver: kvm_probe_timeout must be positive");
  }
  CONCORD_RETURN_IF_ERROR(make_dirs(options.state_dir + "/vm"));
  // Probe guests' scratch dirs left by an agent killed mid-probe.
  for (const auto& name : list_subdirs(options.state_dir + "/vm")) {
    if (name.starts_with(".probe-")) (void)remove_tree(options.state_dir + "/vm/" + name);
  }
  return std::unique_ptr<Driver>(std::make_unique<VmDriver>(options));
}

}  // namespace concord::compute::driver

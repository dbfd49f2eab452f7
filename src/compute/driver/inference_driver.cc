// Inference driver: one inference replica (`concord inference-replica`) per instance, run as a
// plain detached process on the host.
//
// Per instance, state_dir/inference/<id>/ holds:
//   spec.json     the InstanceSpec last applied, without the guest data (it holds the key)
//   args.json     the replica's argv, built once from the spec's metadata at create/rebuild
//   key           the replica key (0600), passed by path so it never shows in `ps`
//   port          written by the replica (temp + rename) once it accepts connections
//   replica.pid   written by the driver after the launch
//   replica.log   stdout and stderr of the replica (appended across restarts)
//
// The replica runs in its own session, reparented to init by a double fork, so it outlives the
// agent, and the agent never has to reap it. A pid counts as this instance's only if its
// /proc/<pid>/cmdline names this instance's port file (which holds the id): pids are reused.
//
// Limits: cgroup v1 (this project's hosts are hybrid: v1 cpu and memory controllers, as runc
// uses them). The group <root>/{cpu,memory}/<parent>/<id> gets cfs_quota = vcpus * period and
// memory.limit_in_bytes = ram; the child joins both groups before exec, so the model load is
// already limited. When the controllers cannot be used (no v1 mount, no permission) the
// replica runs unlimited: probe() and status().detail say so; an instance never fails for it.
//
// A replica that exits on its own is reported powered off, like a guest that shut down; the
// server then stops the server (Nova's power sync) and the replica backend replaces it.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "base/json.h"
#include "base/log.h"
#include "compute/driver/driver.h"
#include "compute/driver/inference_keys.h"
#include "compute/driver/process.h"
#include "compute/driver/spec_json.h"
#include "compute/driver/util.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace concord::compute::driver {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kKillWait{10000};
constexpr milliseconds kSoftRebootGrace{10000};
constexpr milliseconds kCgroupReleaseWait{5000};
// How often a wait for a replica to exit looks again.
constexpr milliseconds kExitPoll{20};
namespace keys = inference_keys;

struct ReplicaPaths {
  explicit ReplicaPaths(const std::string& d)
      : dir(d),
        args(d + "/args.json"),
        key(d + "/key"),
        port(d + "/port"),
        pidfile(d + "/replica.pid"),
        log(d + "/replica.log") {}
  std::string dir, args, key, port, pidfile, log;
};

// Metadata values are strings; numbers must be plain non-negative decimals.
Result<std::optional<int64_t>> meta_int(const Json& meta, std::string_view key, int64_t min,
                                        int64_t max) {
  auto it = meta.find(std::string(key));
  if (it == meta.end() || it->is_null()) return std::optional<int64_t>();
  std::string text = it->is_string() ? it->get<std::string>() : it->dump();
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return fail(Code::kInvalidArgument,
                fmt::format("inference metadata {} must be an integer in [{}, {}], got '{}'", key,
                            min, max, text));
  }
  return std::optional<int64_t>(v);
}

std::string meta_string(const Json& meta, std::string_view key) {
  auto it = meta.find(std::string(key));
  if (it == meta.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::string self_executable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

class InferenceDriver final : public Driver {
 public:
  explicit InferenceDriver(DriverOptions options)
      : options_(std::move(options)), log_(logger("compute.driver")) {
    if (options_.replica_command.empty()) {
      options_.replica_command = {self_executable(), "inference-replica"};
    }
  }

  std::string_view kind() const override { return "inference"; }

  Capabilities probe() override {
    std::lock_guard<std::mutex> lock(probe_mutex_);
    if (!caps_) caps_ = run_probe();
    return *caps_;
  }

  Status create(const InstanceSpec& spec) override {
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> argv, replica_argv(spec));
    ReplicaPaths p(dir_for(spec.id));
    CONCORD_RETURN_IF_ERROR(prepare(p, spec, argv));
    CONCORD_RETURN_IF_ERROR(launch(p, spec));
    log_->info("inference replica created id={} model={}", spec.id, spec.image_path);
    return ok();
  }

  Status start(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    ReplicaPaths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no replica {}", id));
    CONCORD_ASSIGN_OR_RETURN(InstanceSpec spec, load_spec(p.dir));
    return launch(p, spec);
  }

  Status stop(std::string_view id, milliseconds grace) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    ReplicaPaths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no replica {}", id));
    return stop_replica(p, id, grace);
  }

  Status reboot(std::string_view id, bool hard) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    ReplicaPaths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no replica {}", id));
    CONCORD_RETURN_IF_ERROR(stop_replica(p, id, hard ? milliseconds(0) : kSoftRebootGrace));
    return start(id);
  }

  Status resize(const InstanceSpec& new_spec) override {
    CONCORD_RETURN_IF_ERROR(validate_id(new_spec.id));
    CONCORD_RETURN_IF_ERROR(validate_flavor(new_spec));
    ReplicaPaths p(dir_for(new_spec.id));
    CONCORD_ASSIGN_OR_RETURN(InstanceSpec spec, load_spec(p.dir));
    spec.vcpus = new_spec.vcpus;
    spec.ram_mb = new_spec.ram_mb;
    spec.disk_gb = new_spec.disk_gb;
    CONCORD_RETURN_IF_ERROR(save_spec(p.dir, spec));
    // Limits change in place; the running process keeps its model and port.
    (void)apply_limits(spec);
    return ok();
  }

  Status rebuild(const InstanceSpec& new_spec) override {
    CONCORD_ASSIGN_OR_RETURN(std::vector<std::string> argv, replica_argv(new_spec));
    ReplicaPaths p(dir_for(new_spec.id));
    if (!path_exists(p.dir)) {
      return fail(Code::kNotFound, fmt::format("no replica {} to rebuild", new_spec.id));
    }
    CONCORD_RETURN_IF_ERROR(stop_replica(p, new_spec.id, milliseconds(0)));
    CONCORD_RETURN_IF_ERROR(prepare(p, new_spec, argv));
    return launch(p, new_spec);
  }

  Status destroy(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    ReplicaPaths p(dir_for(id));
    if (pid_t pid = live_pid(p, id); pid != 0) {
      if (!kill_and_wait(pid, /*group=*/true, kKillWait, kExitPoll)) {
        return fail(Code::kDeadlineExceeded,
                    fmt::format("replica pid {} of instance {} survived SIGKILL", pid, id));
      }
    }
    remove_cgroups(id);
    CONCORD_RETURN_IF_ERROR(remove_tree(p.dir));
    log_->info("inference replica destroyed id={}", id);
    return ok();
  }

  Result<InstanceStatus> status(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    ReplicaPaths p(dir_for(id));
    InstanceStatus s;
    if (!path_exists(p.dir)) return s;
    s.exists = true;
    pid_t pid = live_pid(p, id);
    if (pid == 0) {
      s.power = PowerState::kShutdown;
      s.detail = "no replica process";
      return s;
    }
    s.power = PowerState::kRunning;
    s.detail = fmt::format("replica pid {}", pid);
    {
      std::lock_guard<std::mutex> lock(probe_mutex_);
      if (!limits_note_.empty()) s.detail += "; " + limits_note_;
    }
    if (auto port = read_port(p)) {
      Address a;
      a.network = std::string(keys::kAddressNetwork);
      a.addr = fmt::format("{}:{}", options_.inference_bind, *port);
      a.forwarded_ports.emplace_back(*port, *port);
      s.addresses.push_back(std::move(a));
    } else {
      s.detail += "; not listening yet";
    }
    return s;
  }

  Result<std::vector<std::string>> list() override {
    return list_instance_ids(options_.state_dir + "/inference");
  }

  Result<std::string> console_log(std::string_view id, size_t max_bytes) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    ReplicaPaths p(dir_for(id));
    if (!path_exists(p.dir)) return fail(Code::kNotFound, fmt::format("no replica {}", id));
    return read_log_tail(p.log, max_bytes);
  }

 private:
  std::string dir_for(std::string_view id) const {
    return fmt::format("{}/inference/{}", options_.state_dir, id);
  }
  std::string cgroup_dir(std::string_view controller, std::string_view id) const {
    return fmt::format("{}/{}/{}/{}", options_.cgroup_root, controller, options_.cgroup_parent, id);
  }

  static Status validate_flavor(const InstanceSpec& spec) {
    if (spec.vcpus < 1 || spec.ram_mb < 16) {
      return fail(Code::kInvalidArgument,
                  fmt::format("flavor too small: vcpus={} ram_mb={}", spec.vcpus, spec.ram_mb));
    }
    return ok();
  }

  // The replica's command line from the spec; every spec error is found here, before any
  // file is written.
  Result<std::vector<std::string>> replica_argv(const InstanceSpec& spec) const {
    CONCORD_RETURN_IF_ERROR(validate_id(spec.id));
    CONCORD_RETURN_IF_ERROR(validate_flavor(spec));
    if (spec.image_kind != keys::kImageKind) {
      return fail(Code::kInvalidArgument,
                  fmt::format("inference driver serves '{}' model images, not '{}'",
                              keys::kImageKind, spec.image_kind));
    }
    if (spec.image_path.empty()) {
      return fail(Code::kInvalidArgument, "inference driver: the spec names no model file");
    }
    auto md = parse_json(spec.guest.meta_data_json.empty() ? "{}" : spec.guest.meta_data_json);
    if (!md || !md->is_object()) {
      return fail(Code::kInvalidArgument, "inference driver: meta_data_json is not an object");
    }
    Json meta = md->value("meta", Json::object());
    if (!meta.is_object()) {
      return fail(Code::kInvalidArgument, "inference driver: meta_data_json 'meta' not an object");
    }
    const std::string name = meta_string(meta, keys::kName);
    if (name.empty()) {
      return fail(Code::kInvalidArgument,
                  fmt::format("inference driver: metadata {} (the served model name) is missing",
                              keys::kName));
    }
    CONCORD_ASSIGN_OR_RETURN(auto version, meta_int(meta, keys::kVersion, 1, int64_t{1} << 40));
    CONCORD_ASSIGN_OR_RETURN(auto batch, meta_int(meta, keys::kMaxBatchSize, 1, 4096));
    CONCORD_ASSIGN_OR_RETURN(auto delay, meta_int(meta, keys::kMaxQueueDelayUs, 0, 10'000'000));
    CONCORD_ASSIGN_OR_RETURN(auto queue, meta_int(meta, keys::kMaxQueue, 1, 1'000'000));
    const std::string split = meta_string(meta, keys::kSplit);
    if (!split.empty() && split != "true" && split != "false") {
      return fail(Code::kInvalidArgument,
                  fmt::format("inference metadata {} must be 'true' or 'false', got '{}'",
                              keys::kSplit, split));
    }
    ReplicaPaths p(dir_for(spec.id));
    std::vector<std::string> argv = options_.replica_command;
    argv.insert(argv.end(),
                {"--model", std::filesystem::absolute(spec.image_path).string(), "--name", name,
                 "--version", std::to_string(version.value_or(1)), "--bind",
                 options_.inference_bind, "--port", "0", "--port-file", p.port});
    if (batch) argv.insert(argv.end(), {"--max-batch-size", std::to_string(*batch)});
    if (delay) argv.insert(argv.end(), {"--max-queue-delay-us", std::to_string(*delay)});
    if (queue) argv.insert(argv.end(), {"--max-queue", std::to_string(*queue)});
    if (!meta_string(meta, keys::kKey).empty()) argv.insert(argv.end(), {"--key-file", p.key});
    if (split == "true") argv.push_back("--split");
    return argv;
  }

  Status prepare(const ReplicaPaths& p, const InstanceSpec& spec,
                 const std::vector<std::string>& argv) {
    if (!path_exists(spec.image_path)) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("model file {} is not on this host", spec.image_path));
    }
    CONCORD_RETURN_IF_ERROR(make_dirs(p.dir));
    auto md = parse_json(spec.guest.meta_data_json.empty() ? "{}" : spec.guest.meta_data_json);
    std::string key = md ? meta_string(md->value("meta", Json::object()), keys::kKey) : "";
    if (!key.empty()) {
      // Created 0600 before the content goes in: the key is never readable by others.
      std::string tmp = p.key + ".tmp";
      int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) {
        return fail(Code::kInternal, fmt::format("open {}: {}", tmp, std::strerror(errno)));
      }
      bool written = ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size());
      ::close(fd);
      if (!written || ::rename(tmp.c_str(), p.key.c_str()) != 0) {
        return fail(Code::kInternal, fmt::format("writing {}: {}", p.key, std::strerror(errno)));
      }
    } else {
      CONCORD_RETURN_IF_ERROR(remove_tree(p.key));
    }
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.args, dump_json(Json(argv))));
    InstanceSpec stored = spec;
    stored.guest = GuestData{};  // the key stays in its own file
    return save_spec(p.dir, stored);
  }

  std::optional<int> read_port(const ReplicaPaths& p) const {
    auto text = read_file(p.port);
    if (!text) return std::nullopt;
    int port = 0;
    std::string t = *text;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), port);
    if (ec != std::errc() || end != t.data() + t.size() || port <= 0 || port > 65535) {
      return std::nullopt;
    }
    return port;
  }

  // The pid of this instance's replica, or 0.
  pid_t live_pid(const ReplicaPaths& p, std::string_view id) const {
    pid_t pid = read_live_pid(p.pidfile);
    if (pid == 0) return 0;
    // A reused pid belongs to some other process: the cmdline must name this instance's port
    // file, whose path holds the id.
    std::string cmdline = process_cmdline(pid);
    if (cmdline.find(p.port) == std::string::npos ||
        cmdline.find(std::string(id)) == std::string::npos) {
      return 0;
    }
    return pid;
  }

  // Creates the groups and writes the limits; "" on success, else why not.
  std::string apply_limits(const InstanceSpec& spec) {
    const int64_t period_us =
        std::chrono::duration_cast<std::chrono::microseconds>(options_.cpu_period).count();
    const std::string cpu = cgroup_dir("cpu", spec.id);
    const std::string mem = cgroup_dir("memory", spec.id);
    std::error_code ec;
    for (const std::string& d : {cpu, mem}) {
      std::filesystem::create_directories(d, ec);
      if (ec) return fmt::format("cgroup {}: {}", d, ec.message());
    }
    auto put = [](const std::string& file, const std::string& value) -> std::string {
      int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return fmt::format("{}: {}", file, std::strerror(errno));
      bool okay = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
      int e = errno;
      ::close(fd);
      return okay ? std::string() : fmt::format("{}: {}", file, std::strerror(e));
    };
    std::string why = put(cpu + "/cpu.cfs_period_us", std::to_string(period_us));
    if (why.empty()) {
      why = put(cpu + "/cpu.cfs_quota_us", std::to_string(period_us * spec.vcpus));
    }
    if (why.empty()) {
      why = put(mem + "/memory.limit_in_bytes", std::to_string(spec.ram_mb * (int64_t{1} << 20)));
    }
    return why;
  }

  void remove_cgroups(std::string_view id) {
    for (const char* controller : {"cpu", "memory"}) {
      std::string d = cgroup_dir(controller, id);
      // A killed replica leaves its group only when its parent (init) has reaped it.
      auto deadline = std::chrono::steady_clock::now() + kCgroupReleaseWait;
      while (path_exists(d) && ::rmdir(d.c_str()) != 0 && errno == EBUSY &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(milliseconds(20));
      }
      if (path_exists(d) && ::rmdir(d.c_str()) != 0) {
        log_->warn("inference replica {}: cannot remove cgroup {}: {}", id, d,
                   std::strerror(errno));
      }
    }
  }

  Status launch(const ReplicaPaths& p, const InstanceSpec& spec) {
    if (live_pid(p, spec.id) != 0) return ok();
    CONCORD_ASSIGN_OR_RETURN(std::string args_text, read_file(p.args));
    auto args = parse_json(args_text);
    if (!args || !args->is_array() || args->empty()) {
      return fail(Code::kInternal, fmt::format("{} is not an argv list", p.args));
    }
    std::vector<std::string> argv;
    for (const Json& a : *args) {
      if (!a.is_string()) return fail(Code::kInternal, fmt::format("{}: non-string", p.args));
      argv.push_back(a.get<std::string>());
    }
    const std::string program = find_program(argv[0]);
    if (program.empty()) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("replica program '{}' not found or not executable", argv[0]));
    }
    (void)remove_tree(p.port);
    (void)remove_tree(p.pidfile);

    std::string why_unlimited = apply_limits(spec);
    std::vector<std::string> procs;
    if (why_unlimited.empty()) {
      procs = {cgroup_dir("cpu", spec.id) + "/cgroup.procs",
               cgroup_dir("memory", spec.id) + "/cgroup.procs"};
    } else {
      log_->warn("inference replica {} runs without cgroup limits: {}", spec.id, why_unlimited);
    }
    {
      std::lock_guard<std::mutex> lock(probe_mutex_);
      limits_note_ = why_unlimited.empty() ? "" : "no cgroup limits: " + why_unlimited;
    }
    DetachedSpawn spawn;  // it outlives the agent: see the file comment
    spawn.argv = std::move(argv);
    spawn.argv.front() = program;
    spawn.log_path = p.log;
    spawn.cgroup_procs = procs;
    CONCORD_ASSIGN_OR_RETURN(pid_t pid, spawn_detached(spawn));
    CONCORD_RETURN_IF_ERROR(write_file_atomic(p.pidfile, std::to_string(pid)));
    log_->info("inference replica {} started pid={}", spec.id, pid);
    return ok();
  }

  Status stop_replica(const ReplicaPaths& p, std::string_view id, milliseconds grace) {
    pid_t pid = live_pid(p, id);
    if (pid == 0) {
      (void)remove_tree(p.pidfile);
      (void)remove_tree(p.port);
      return ok();
    }
    if (grace.count() > 0) {
      ::kill(pid, SIGTERM);  // the replica drains and exits 0
      if (!wait_gone(pid, grace, kExitPoll)) {
        log_->info("inference replica {} did not stop within {} ms, killing", id, grace.count());
      }
    }
    if (process_alive(pid)) {
      if (!kill_and_wait(pid, /*group=*/true, kKillWait, kExitPoll)) {
        return fail(Code::kDeadlineExceeded,
                    fmt::format("replica pid {} of instance {} survived SIGKILL", pid, id));
      }
    }
    (void)remove_tree(p.pidfile);
    (void)remove_tree(p.port);
    return ok();
  }

  Capabilities run_probe() {
    Capabilities caps;
    const std::string program = options_.replica_command.empty()
                                    ? std::string()
                                    : find_program(options_.replica_command[0]);
    if (program.empty()) {
      caps.reason = fmt::format(
          "replica program '{}' not found or not executable",
          options_.replica_command.empty() ? std::string() : options_.replica_command[0]);
      return caps;
    }
    caps.usable = true;
    caps.accel = "process";
    std::vector<std::string> missing;
    for (const char* controller : {"cpu", "memory"}) {
      std::string parent =
          fmt::format("{}/{}/{}", options_.cgroup_root, controller, options_.cgroup_parent);
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      if (ec || ::access(parent.c_str(), W_OK) != 0) {
        missing.push_back(fmt::format("{} ({})", parent, ec ? ec.message() : "not writable"));
      }
    }
    caps.reason = missing.empty()
                      ? fmt::format(
                            "replicas run as '{}' with cgroup v1 cpu and memory limits "
                            "under {}",
                            program, options_.cgroup_parent)
                      : fmt::format("replicas run as '{}' WITHOUT cgroup limits: cannot use {}",
                                    program, fmt::join(missing, ", "));
    return caps;
  }

  DriverOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::mutex probe_mutex_;
  std::optional<Capabilities> caps_;  // guarded by probe_mutex_
  std::string limits_note_;           // guarded by probe_mutex_ (last launch's limits problem)
};

}  // namespace

Result<std::unique_ptr<Driver>> make_inference_driver(const DriverOptions& options) {
  if (options.state_dir.empty()) {
    return fail(Code::kInvalidArgument, "inference driver: state_dir is required");
  }
  if (options.cpu_period.count() < 1) {
    return fail(Code::kInvalidArgument, "inference driver: cpu_period must be at least 1 ms");
  }
  if (options.inference_bind.empty() || options.inference_bind == "0.0.0.0" ||
      options.inference_bind == "::") {
    // The bind address is also the address the gateway is told to call.
    return fail(Code::kInvalidArgument,
                "inference driver: inference_bind must be one concrete address the gateway can "
                "reach, got '" +
                    options.inference_bind + "'");
  }
  if (!options.replica_command.empty() && options.replica_command[0].empty()) {
    return fail(Code::kInvalidArgument, "inference driver: replica_command names no program");
  }
  CONCORD_RETURN_IF_ERROR(make_dirs(options.state_dir + "/inference"));
  return std::unique_ptr<Driver>(std::make_unique<InferenceDriver>(options));
}

}  // namespace concord::compute::driver

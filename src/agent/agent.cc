#include "agent/agent.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "agent/protocol.h"
#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "base/random.h"
#include "http/client.h"

namespace concord::agent {

using http::HttpClient;
using http::HttpReply;

namespace driver = compute::driver;
namespace fs = std::filesystem;

namespace {

constexpr size_t kConsoleBytes = 64 * 1024;
constexpr std::chrono::milliseconds kRequestTimeout{15000};
constexpr std::chrono::milliseconds kDownloadTimeout{600000};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
constexpr int kMaxStepsInRow = 20;
// Reports and long-polls carry only changes; these bound how long a missed change (a lost
// report, a change the feed did not wake us for) can go unnoticed.
constexpr std::chrono::seconds kFullReportInterval{60};
constexpr std::chrono::seconds kFullSetInterval{60};

std::shared_ptr<spdlog::logger> log() {
  return logger("agent");
}

bool valid_sha256(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Ids go into file names and URL paths: only what a UUID (or a hex id) can hold.
bool safe_id(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

int64_t detect_ram_mb() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemTotal:") return kb / 1024;
  }
  return 0;
}

int64_t detect_disk_gb(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(static_cast<unsigned long long>(st.f_bavail) * st.f_frsize >> 30);
}

}  // namespace

// Everything the threads share. Lock order: mu only (no nested locks); driver calls and HTTP
// calls never run under mu.
class Agent::Impl {
 public:
  struct Instance {
    std::optional<Spec> spec;  // from the last assignment set; nullopt: orphan
    std::string kind;          // driver that holds it locally ("" until known)
    Applied applied;
    bool status_known = false;
    bool exists = false;
    int power = 0;
    std::vector<driver::Address> addresses;
    std::optional<std::pair<int64_t, std::string>> error;  // failed generation
    bool transient = false;     // last step failed transiently: retried on the next heartbeat
    std::string transient_why;  // its message: logged as a warning once, then while it repeats
                                // at debug (a replica waiting minutes for its seed backup)
    std::optional<std::string> console;  // to send with the next report
    size_t console_hash = 0;
    std::string reported;  // the observation the server last acknowledged (without console)
    std::string detail;    // the driver's status detail (InstanceStatus::detail)
    bool watched = false;  // InstanceStatus::watch: checked every heartbeat
    bool queued = false, busy = false, again = false;
    int steps_in_row = 0;  // driver actions since the last convergence (loop guard)
  };

  // What one step decided, written back under the lock.
  struct Work {
    std::string id;
    std::optional<Spec> spec;
    std::string kind;
    Applied applied;
    std::optional<std::pair<int64_t, std::string>> error;
    size_t console_hash = 0;
    // Results.
    bool status_known = false, exists = false;
    int power = 0;
    std::vector<driver::Address> addresses;
    bool transient = false;
    std::string transient_why;  // Instance::transient_why, in and out
    bool stepped = false;       // a driver action ran: look again
    bool drop = false;          // forget the instance (destroyed orphan / finished delete)
    bool reportable = false;    // something the server should hear about changed
    std::optional<std::string> console;
    std::string detail;
    bool watched = false;
  };

  explicit Impl(AgentOptions o) : opts(std::move(o)) {}

  // ---- setup ----

  Status init() {
    if (opts.server_url.empty()) return fail(Code::kInvalidArgument, "agent: server_url is empty");
    if (!safe_id(opts.host)) {
      return fail(Code::kInvalidArgument,
                  "agent: host name must be letters, digits, '-' or '_' (got '" + opts.host + "')");
    }
    if (opts.credential.empty()) return fail(Code::kInvalidArgument, "agent: credential is empty");
    if (opts.state_dir.empty()) return fail(Code::kInvalidArgument, "agent: state_dir is empty");
    if (opts.workers < 1) opts.workers = 1;
    std::error_code ec;
    for (const char* sub : {"", "/instances", "/blobs"}) {
      fs::create_directories(opts.state_dir + sub, ec);
      if (ec) {
        return fail(Code::kFailedPrecondition,
                    "agent: cannot create " + opts.state_dir + sub + ": " + ec.message());
      }
    }
    // Partial downloads of an agent killed mid-fetch (one agent per state_dir).
    for (const auto& entry : fs::directory_iterator(opts.state_dir + "/blobs", ec)) {
      if (entry.path().filename().string().find(".part-") != std::string::npos) {
        std::error_code rm;
        fs::remove(entry.path(), rm);
      }
    }
    // The drivers share the folder: they use <kind>/, images/ (their extraction cache) and
    // runc/; the agent uses instances/ and blobs/.
    if (opts.driver_options.state_dir.empty()) opts.driver_options.state_dir = opts.state_dir;
    // The database driver moves backups and archived logs to and from the server itself.
    if (opts.driver_options.server_url.empty()) opts.driver_options.server_url = opts.server_url;
    if (opts.driver_options.agent_header.empty()) {
      opts.driver_options.agent_header = opts.host + ":" + opts.credential;
    }
    for (auto& d : opts.injected_drivers) drivers[std::string(d->kind())] = d;
    if (opts.injected_drivers.empty()) {
      for (const std::string& kind : opts.drivers) {
        Result<std::unique_ptr<driver::Driver>> made =
            kind == "container"   ? driver::make_container_driver(opts.driver_options)
            : kind == "vm"        ? driver::make_vm_driver(opts.driver_options)
            : kind == "inference" ? driver::make_inference_driver(opts.driver_options)
            : kind == "database"
                ? driver::make_database_driver(opts.driver_options)
                : fail(Code::kInvalidArgument,
                       "agent: unknown driver '" + kind + "' (container, vm, inference, database)");
        if (!made) return fail(made.error());
        drivers[kind] = std::shared_ptr<driver::Driver>(std::move(*made));
      }
    }
    if (drivers.empty()) return fail(Code::kInvalidArgument, "agent: no driver enabled");
    CONCORD_ASSIGN_OR_RETURN(poll_client, HttpClient::create(opts.server_url));
    CONCORD_ASSIGN_OR_RETURN(report_client, HttpClient::create(opts.server_url));
    auth = {{"X-Concord-Agent", opts.host + ":" + opts.credential}};
    return ok();
  }

  std::string applied_path(const std::string& id) const {
    return opts.state_dir + "/instances/" + id + ".json";
  }

  // Instances the drivers already have (a restarted agent): known, not yet judged.
  void adopt() {
    for (auto& [kind, d] : drivers) {
      Result<std::vector<std::string>> ids = d->list();
      if (!ids) {
        log()->warn("agent host={} adopt: {} list failed: {}", opts.host, kind,
                    ids.error().to_string());
        continue;
      }
      for (const std::string& id : *ids) {
        if (!safe_id(id)) continue;
        Instance inst;
        inst.kind = kind;
        std::ifstream in(applied_path(id));
        if (in) {
          std::stringstream text;
          text << in.rdbuf();
          if (auto a = applied_from_json(text.str())) inst.applied = *a;
        }
        if (auto st = d->status(id)) {
          inst.status_known = true;
          inst.exists = st->exists;
          inst.power = static_cast<int>(st->power);
          inst.addresses = st->addresses;
        }
        std::lock_guard lock(mu);
        instances[id] = std::move(inst);
        log()->info("agent host={} adopted instance={} driver={} generation={}", opts.host, id,
                    kind, instances[id].applied.generation);
      }
    }
  }

  // ---- the work queue ----

  void enqueue_locked(const std::string& id) {
    auto it = instances.find(id);
    if (it == instances.end()) return;
    Instance& inst = it->second;
    if (inst.busy) {
      inst.again = true;
    } else if (!inst.queued) {
      inst.queued = true;
      queue.push_back(id);
      work_cv.notify_one();
    }
  }

  void request_report_locked() {
    report_now = true;
    report_cv.notify_all();
  }

  void worker_loop() {
    std::unique_lock lock(mu);
    while (true) {
      work_cv.wait(lock, [&] { return stopping || !queue.empty(); });
      if (stopping) return;
      std::string id = queue.front();
      queue.pop_front();
      auto it = instances.find(id);
      if (it == instances.end()) continue;
      Instance& inst = it->second;
      inst.queued = false;
      inst.busy = true;
      Work w;
      w.id = id;
      w.spec = inst.spec;
      w.kind = inst.kind;
      w.applied = inst.applied;
      w.error = inst.error;
      w.console_hash = inst.console_hash;
      w.transient_why = inst.transient_why;
      lock.unlock();
      step(w);
      lock.lock();
      ++steps_total;
      it = instances.find(id);
      if (it == instances.end()) continue;
      Instance& after = it->second;
      after.busy = false;
      after.kind = w.kind;
      after.applied = w.applied;
      after.error = w.error;
      after.transient = w.transient;
      after.transient_why = w.transient ? std::move(w.transient_why) : std::string();
      if (w.status_known) {
        after.status_known = true;
        after.exists = w.exists;
        after.power = w.power;
        after.addresses = std::move(w.addresses);
        after.detail = std::move(w.detail);
        after.watched = w.watched;
      }
      if (w.console) {
        after.console = std::move(w.console);
        after.console_hash = w.console_hash;
      }
      after.steps_in_row = w.stepped ? after.steps_in_row + 1 : 0;
      if (after.steps_in_row > kMaxStepsInRow && after.spec && !after.spec->deleted) {
        // Every step "succeeds" yet the instance never settles (e.g. a guest that exits at once
        // after each start): fail the generation instead of spinning.
        after.error = std::make_pair(after.spec->generation,
                                     "instance does not stay in the desired state after " +
                                         std::to_string(kMaxStepsInRow) + " steps");
        after.steps_in_row = 0;
        w.stepped = false;
        w.reportable = true;
      }
      const bool again = after.again || (w.stepped && !stopping);
      after.again = false;
      if (w.drop && !after.spec) {
        instances.erase(it);
      } else if (again) {
        enqueue_locked(id);
      }
      if (w.reportable || w.stepped) request_report_locked();
    }
  }

  // ---- one convergence step ----

  void set_error(Work& w, const Spec& spec, const Error& e) {
    if (e.code() == Code::kUnavailable) {
      w.transient = true;
      const bool again = e.message() == w.transient_why;
      log()->log(again ? spdlog::level::debug : spdlog::level::warn,
                 "agent host={} instance={} transient failure (will retry): {}", opts.host, w.id,
                 e.message());
      w.transient_why = e.message();
      return;
    }
    w.error = std::make_pair(spec.generation, e.message());
    w.reportable = true;
    log()->error("agent host={} instance={} generation={} failed: {}", opts.host, w.id,
                 spec.generation, e.to_string());
  }

  void save_applied(Work& w) {
    if (auto st = write_file_atomic(applied_path(w.id), to_json(w.applied)); !st) {
      log()->error("agent host={} instance={}: {}", opts.host, w.id, st.error().to_string());
    }
  }

  void record_flavor(Applied& a, const Spec& s) {
    a.vcpus = s.vcpus;
    a.ram_mb = s.ram_mb;
    a.disk_gb = s.disk_gb;
  }

  void step(Work& w) {
    std::string kind = w.spec && !w.spec->deleted ? w.spec->driver : w.kind;
    if (kind.empty() && w.spec) kind = w.spec->driver;
    if (kind.empty()) kind = w.applied.driver;
    auto dit = drivers.find(kind);
    if (dit == drivers.end()) {
      if (w.spec && !w.spec->deleted) {
        set_error(w, *w.spec,
                  Error(Code::kFailedPrecondition,
                        "driver '" + kind + "' is not enabled on host " + opts.host));
      } else {
        w.drop = true;
      }
      return;
    }
    driver::Driver& d = *dit->second;
    w.kind = kind;
    Result<driver::InstanceStatus> status = d.status(w.id);
    if (!status) {
      w.transient = true;
      log()->warn("agent host={} instance={} status failed: {}", opts.host, w.id,
                  status.error().to_string());
      return;
    }
    w.status_known = true;
    w.exists = status->exists;
    w.power = static_cast<int>(status->power);
    w.addresses = status->addresses;
    w.detail = status->detail;
    w.watched = status->watch;
    const bool running = status->power == driver::PowerState::kRunning;
    if (status->exists) collect_console(w, d);

    // Tear down: a deleted spec, or an orphan (no desired row).
    if (!w.spec || w.spec->deleted) {
      if (status->exists) {
        if (!w.spec) {
          log()->info("agent host={} destroying orphan instance={}", opts.host, w.id);
          ++orphans_destroyed;
        }
        if (auto st = d.destroy(w.id); !st) {
          w.transient = true;  // the server's deadline ends a delete that never succeeds
          log()->warn("agent host={} instance={} destroy failed: {}", opts.host, w.id,
                      st.error().to_string());
          return;
        }
        w.stepped = true;
        return;
      }
      std::error_code ec;
      fs::remove(applied_path(w.id), ec);
      w.drop = true;
      w.reportable = true;
      return;
    }

    const Spec& spec = *w.spec;
    // A generation that failed stays failed until the desired state changes.
    if (w.error && w.error->first == spec.generation) return;
    if (w.error && w.error->first != spec.generation) w.error.reset();

    auto act = [&](const Status& st, const char* what) {
      if (!st) {
        set_error(w, spec,
                  Error(st.error().code(), std::string(what) + " failed: " + st.error().message()));
        return false;
      }
      w.stepped = true;
      return true;
    };

    if (!status->exists) {
      Result<driver::InstanceSpec> ispec = instance_spec(spec);
      if (!ispec) return set_error(w, spec, ispec.error());
      if (!act(d.create(*ispec), "create")) return;
      // A fresh instance is as new as any reboot or rebuild asked so far.
      w.applied.driver = kind;
      w.applied.reboot_seq = spec.reboot_seq;
      w.applied.rebuild_seq = spec.rebuild_seq;
      w.applied.image_sha256 = spec.image.sha256;
      w.applied.meta_digest = meta_digest(spec.meta_data_json);
      record_flavor(w.applied, spec);
      save_applied(w);
      return;
    }
    if (spec.rebuild_seq > w.applied.rebuild_seq) {
      Result<driver::InstanceSpec> ispec = instance_spec(spec);
      if (!ispec) return set_error(w, spec, ispec.error());
      if (!act(d.rebuild(*ispec), "rebuild")) return;
      w.applied.rebuild_seq = spec.rebuild_seq;
      w.applied.image_sha256 = spec.image.sha256;
      w.applied.meta_digest = meta_digest(spec.meta_data_json);
      record_flavor(w.applied, spec);
      save_applied(w);
      return;
    }
    if (w.applied.vcpus != spec.vcpus || w.applied.ram_mb != spec.ram_mb ||
        w.applied.disk_gb != spec.disk_gb) {
      if (w.applied.vcpus == 0 && w.applied.ram_mb == 0) {
        // Adopted without a record (state file lost): trust what runs.
        record_flavor(w.applied, spec);
        w.applied.driver = kind;
        save_applied(w);
      } else {
        Result<driver::InstanceSpec> ispec = instance_spec(spec);
        if (!ispec) return set_error(w, spec, ispec.error());
        if (!act(d.resize(*ispec), "resize")) return;
        record_flavor(w.applied, spec);
        save_applied(w);
        return;
      }
    }
    if (spec.reboot_seq > w.applied.reboot_seq) {
      Status st = running ? d.reboot(w.id, spec.reboot_hard) : d.start(w.id);
      if (!act(st, "reboot")) return;
      w.applied.reboot_seq = spec.reboot_seq;
      save_applied(w);
      return;
    }
    // Live configuration carried by the metadata (a database's users and databases). Drivers
    // without any keep the default no-op, so this costs them one digest per record; it is not
    // a step of its own, the power checks below still run now.
    if (const std::string digest = meta_digest(spec.meta_data_json);
        digest != w.applied.meta_digest) {
      Result<driver::InstanceSpec> ispec = instance_spec(spec, /*with_images=*/false);
      if (!ispec) return set_error(w, spec, ispec.error());
      if (Status st = d.configure(*ispec); !st) {
        // A configure that waits may have got part of the way, and the server may be waiting
        // for that part (a demoted database primary reports it stopped taking writes while it
        // waits for the new primary to copy from): its status is read again and reported now.
        if (st.error().code() == Code::kUnavailable) refresh_status(w, d);
        return set_error(w, spec,
                         Error(st.error().code(), "configure failed: " + st.error().message()));
      }
      w.applied.meta_digest = digest;
      save_applied(w);
      w.reportable = true;
    }
    if (spec.desired_power == "running" && !running) {
      // Converged earlier and found off since: the guest shut itself down. Report it (the server
      // stops the server, as Nova's power sync) instead of restarting it behind the user's back.
      if (w.applied.generation == spec.generation) return;
      act(d.start(w.id), "start");
      return;
    }
    if (spec.desired_power == "stopped" && running) {
      act(d.stop(w.id, opts.stop_grace), "stop");
      return;
    }
    if (w.applied.generation != spec.generation) {
      w.applied.generation = spec.generation;
      w.applied.driver = kind;
      save_applied(w);
      w.reportable = true;
    }
  }

  // The driver's status after a step, when it differs from the one read before it.
  void refresh_status(Work& w, driver::Driver& d) {
    Result<driver::InstanceStatus> status = d.status(w.id);
    if (!status) return;
    w.watched = status->watch;
    if (status->detail == w.detail && static_cast<int>(status->power) == w.power) return;
    w.exists = status->exists;
    w.power = static_cast<int>(status->power);
    w.addresses = status->addresses;
    w.detail = status->detail;
    w.reportable = true;
  }

  void collect_console(Work& w, driver::Driver& d) {
    Result<std::string> text = d.console_log(w.id, kConsoleBytes);
    if (!text) return;
    size_t h = std::hash<std::string>{}(*text);
    if (h == w.console_hash) return;
    w.console_hash = h;
    w.console = std::move(*text);
    w.reportable = true;
  }

  // with_images=false: the spec without fetching images (configure needs only the metadata).
  // A spec without an image is the database driver's (its engines are the host's binaries).
  Result<driver::InstanceSpec> instance_spec(const Spec& spec, bool with_images = true) {
    driver::InstanceSpec out;
    out.id = spec.id;
    out.hostname = spec.hostname.empty() ? spec.name : spec.hostname;
    out.vcpus = static_cast<int>(spec.vcpus);
    out.ram_mb = spec.ram_mb;
    out.disk_gb = spec.disk_gb;
    out.network = spec.network;
    out.config_drive = spec.config_drive;
    const bool imageless = spec.image.id.empty() && spec.driver == "database";
    if (with_images && !imageless) {
      CONCORD_ASSIGN_OR_RETURN(out.image_path, fetch_image(spec.image));
      out.image_kind = image_kind(spec.image);
      if (!spec.kernel.id.empty()) {
        CONCORD_ASSIGN_OR_RETURN(out.kernel_path, fetch_image(spec.kernel));
      }
      if (!spec.ramdisk.id.empty()) {
        CONCORD_ASSIGN_OR_RETURN(out.ramdisk_path, fetch_image(spec.ramdisk));
      }
    }
    if (!spec.user_data_b64.empty()) {
      CONCORD_ASSIGN_OR_RETURN(out.guest.user_data, base64_decode_standard(spec.user_data_b64));
    }
    out.guest.meta_data_json = spec.meta_data_json;
    out.guest.network_data_json = spec.network_data_json;
    return out;
  }

  // state_dir/blobs/<sha256>, downloaded once (per-digest lock) and verified.
  Result<std::string> fetch_image(const ImageRef& ref) {
    if (ref.sha256.empty()) {
      return fail(Code::kFailedPrecondition,
                  "image " + ref.id + " has no data on the server (deleted or never uploaded)");
    }
    if (!valid_sha256(ref.sha256) || !safe_id(ref.id)) {
      return fail(Code::kInvalidArgument, "image " + ref.id + " has a malformed id or sha256");
    }
    const std::string path = opts.state_dir + "/blobs/" + ref.sha256;
    std::shared_ptr<std::mutex> lock_for_digest;
    {
      std::lock_guard lock(mu);
      auto& slot = image_locks[ref.sha256];
      if (!slot) slot = std::make_shared<std::mutex>();
      lock_for_digest = slot;
    }
    std::lock_guard digest_lock(*lock_for_digest);
    std::error_code ec;
    if (fs::exists(path, ec)) return path;
    const std::string tmp = path + ".part-" + random_token(6);
    CONCORD_ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> client,
                             HttpClient::create(opts.server_url));
    {
      // stop() cancels downloads in flight rather than waiting for them.
      std::lock_guard lock(mu);
      if (stopping) return fail(Code::kUnavailable, "agent stopping");
      downloads.insert(client.get());
    }
    Result<HttpReply> downloaded =
        client->download("/agent/v1/images/" + ref.id + "/file", auth, tmp, kDownloadTimeout);
    {
      std::lock_guard lock(mu);
      downloads.erase(client.get());
    }
    CONCORD_ASSIGN_OR_RETURN(HttpReply reply, std::move(downloaded));
    if (reply.status != 200) {
      Code code = reply.status >= 500 ? Code::kUnavailable : Code::kFailedPrecondition;
      return fail(code, "image " + ref.id + " download: HTTP " + std::to_string(reply.status) +
                            " " + reply.body.substr(0, 300));
    }
    Result<std::string> digest = sha256_file(tmp);
    if (!digest || *digest != ref.sha256) {
      fs::remove(tmp, ec);
      return fail(Code::kFailedPrecondition,
                  "image " + ref.id + " failed verification: expected sha256 " + ref.sha256 +
                      ", got " + (digest ? *digest : digest.error().message()));
    }
    fs::rename(tmp, path, ec);
    if (ec) {
      fs::remove(tmp, ec);
      return fail(Code::kFailedPrecondition, "cannot store image " + path + ": " + ec.message());
    }
    log()->info("agent host={} fetched image={} sha256={} into {}", opts.host, ref.id, ref.sha256,
                path);
    return path;
  }

  // ---- the long-poll ----

  void apply_assignments(const Json& list) {
    std::map<std::string, Spec> desired;
    for (const Json& j : list) {
      Result<Spec> s = parse_spec(j);
      if (!s) {
        log()->error("agent host={} ignoring bad spec: {}", opts.host, s.error().to_string());
        continue;
      }
      if (!safe_id(s->id)) continue;
      desired.emplace(s->id, std::move(*s));
    }
    // The digest of the set as received, sent with every poll so the server can answer
    // "unchanged" instead of the whole set (docs/design/compute.md, "Agent protocol"). A spec
    // dropped above leaves the digest different from the server's: the agent then keeps
    // getting the whole set, as before.
    RevisionSetDigest digest;
    for (const auto& [id, spec] : desired) digest.add(id, spec.revision);
    std::lock_guard lock(mu);
    set_digest = digest.hex();
    for (auto& [id, spec] : desired) {
      auto [it, inserted] = instances.try_emplace(id);
      Instance& inst = it->second;
      const bool changed = inserted || !inst.spec || inst.spec->generation != spec.generation ||
                           inst.spec->deleted != spec.deleted;
      inst.spec = std::move(spec);
      if (inst.kind.empty()) inst.kind = inst.spec->driver;
      if (changed) enqueue_locked(id);
    }
    for (auto& [id, inst] : instances) {
      if (desired.contains(id)) continue;
      // Not desired: a finished delete, or an orphan. Either way the worker makes it gone.
      inst.spec.reset();
      enqueue_locked(id);
    }
    fetched_once = true;
  }

  void poll_loop() {
    int64_t seq = 0;
    std::chrono::milliseconds backoff{200};
    auto next_full_set = std::chrono::steady_clock::now() + kFullSetInterval;
    while (!is_stopping()) {
      if (std::chrono::steady_clock::now() >= next_full_set) {
        next_full_set = std::chrono::steady_clock::now() + kFullSetInterval;
        seq = 0;  // the server answers after=0 at once with the whole set
      }
      std::string target = "/agent/v1/hosts/" + opts.host +
                           "/assignments?after=" + std::to_string(seq) +
                           "&wait_ms=" + std::to_string(opts.poll_wait.count());
      {
        std::lock_guard lock(mu);
        if (fetched_once && !set_digest.empty()) target += "&digest=" + set_digest;
      }
      Result<HttpReply> r =
          poll_client->request("GET", target, "", auth, opts.poll_wait + kRequestTimeout);
      if (is_stopping()) return;
      std::optional<Json> body;
      if (r && r->status == 200) {
        if (auto parsed = parse_json(r->body); parsed && parsed->is_object()) body = *parsed;
      }
      const bool unchanged = body && body->value("unchanged", false);
      if (!body ||
          (!unchanged && (!body->contains("instances") || !(*body)["instances"].is_array()))) {
        log()->warn("agent host={} assignments failed: {}", opts.host,
                    r ? "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 200)
                      : r.error().to_string());
        sleep_for(backoff);
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      backoff = std::chrono::milliseconds(200);
      if (!unchanged) apply_assignments((*body)["instances"]);
      seq = body->value("seq", seq);
      // The server had no room for one more waiting poll: come back a little later.
      if (int64_t retry = body->value("retry_after_ms", int64_t{0}); retry > 0) {
        sleep_for(std::min(std::chrono::milliseconds(retry), kMaxBackoff));
      }
      std::lock_guard lock(mu);
      ++fetches;
      if (unchanged) ++unchanged_polls;
      assignments_seq = seq;
    }
  }

  // ---- registration and reports ----

  Json registration() {
    Json drv = Json::array();
    bool kvm = false;
    std::string accel;
    for (auto& [kind, d] : drivers) {
      driver::Capabilities cap = d->probe();
      log()->info("agent host={} driver={} usable={} accel={} ({})", opts.host, kind, cap.usable,
                  cap.accel, cap.reason);
      if (!cap.usable) continue;
      drv.push_back(kind);
      if (kind == "vm") {
        kvm = cap.kvm;
        accel = cap.accel;
      } else if (accel.empty()) {
        accel = cap.accel;
      }
    }
    const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    Json capacity = {{"vcpus", opts.vcpus.value_or(cpus > 0 ? cpus : 1)},
                     {"ram_mb", opts.ram_mb.value_or(detect_ram_mb())},
                     {"disk_gb", opts.disk_gb.value_or(detect_disk_gb(opts.state_dir))}};
    return Json{{"availability_zone", opts.availability_zone},
                {"capacity", capacity},
                {"drivers", drv},
                {"kvm", kvm},
                {"accel", accel},
                {"traits", Json::object()},
                {"version", "concord-agent/1"}};
  }

  bool register_host() {
    if (!registration_body) registration_body = dump_json(registration());
    Result<HttpReply> r = report_client->request("PUT", "/agent/v1/hosts/" + opts.host,
                                                 *registration_body, auth, kRequestTimeout);
    if (!r || r->status != 200) {
      log()->warn("agent host={} registration failed: {}", opts.host,
                  r ? "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 200)
                    : r.error().to_string());
      return false;
    }
    if (auto body = parse_json(r->body); body && body->is_object()) {
      int64_t hb = body->value("heartbeat_interval_ms", int64_t{0});
      if (hb > 0) heartbeat = std::chrono::milliseconds(hb);
    }
    log()->info("agent host={} registered with {} (heartbeat {} ms)", opts.host, opts.server_url,
                heartbeat.count());
    std::lock_guard lock(mu);
    registered = true;
    return true;
  }

  // One report: its body and the observations it carries, recorded as acknowledged when the
  // server answers 200.
  struct Report {
    std::string body;
    std::vector<std::pair<std::string, std::string>> observed;  // id -> observation text
    size_t instances = 0;
  };

  // The report body, taking pending consoles out. Only instances whose observation differs from
  // what the server last acknowledged go in, unless `full`: at 1,000 instances per host a full
  // report every heartbeat was most of the server's write load while nothing changed.
  Report build_report(bool full) {
    Report out;
    Json list = Json::array();
    std::lock_guard lock(mu);
    for (auto& [id, inst] : instances) {
      if (!inst.spec || !inst.status_known) continue;
      Json o = {{"id", id},
                {"state", inst.exists ? "present" : "absent"},
                {"power_state", inst.exists ? inst.power : 0},
                {"reboot_seq", inst.applied.reboot_seq},
                {"rebuild_seq", inst.applied.rebuild_seq},
                {"addresses", addresses_json(inst.addresses)}};
      // Part of the observation: a changed detail (the database driver's storage figures,
      // replication role) is reported like any other change, an unchanged one is not.
      if (inst.exists && !inst.detail.empty()) o["detail"] = inst.detail;
      if (inst.error && inst.error->first == inst.spec->generation) {
        o["generation"] = inst.error->first;
        o["error"] = inst.error->second;
      } else {
        o["generation"] = inst.applied.generation;
      }
      std::string text = dump_json(o);
      if (!full && !inst.console && text == inst.reported) continue;
      if (inst.console) {
        o["console"] = std::move(*inst.console);
        inst.console.reset();
      }
      out.observed.emplace_back(id, std::move(text));
      list.push_back(std::move(o));
    }
    out.instances = out.observed.size();
    out.body = dump_json(Json{{"instances", std::move(list)}});
    return out;
  }

  void report_loop() {
    std::chrono::milliseconds backoff{200};
    while (!is_stopping() && !register_host()) {
      sleep_for(backoff);
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
    auto next_heartbeat = std::chrono::steady_clock::now();
    auto next_resync = std::chrono::steady_clock::now() + opts.resync_interval;
    // A full report after registering, when the server asks, and now and then as a safety net.
    bool full = true;
    auto next_full = std::chrono::steady_clock::now() + kFullReportInterval;
    while (!is_stopping()) {
      {
        std::unique_lock lock(mu);
        report_cv.wait_until(lock, next_heartbeat, [&] { return stopping || report_now; });
        if (stopping) return;
        report_now = false;
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_heartbeat) {
          next_heartbeat = now + heartbeat;
          const bool resync = now >= next_resync;
          if (resync) next_resync = now + opts.resync_interval;
          if (now >= next_full) full = true;
          if (fetched_once) {
            for (auto& [id, inst] : instances) {
              // Transient failures are retried, watched instances checked again; a resync
              // re-checks every instance.
              const bool unconverged =
                  inst.spec && !inst.error && inst.applied.generation != inst.spec->generation;
              if (resync || inst.transient || unconverged || inst.watched) enqueue_locked(id);
            }
          }
        }
      }
      Report report = build_report(full);
      Result<HttpReply> r = report_client->request(
          "POST", "/agent/v1/hosts/" + opts.host + "/report", report.body, auth, kRequestTimeout);
      if (r && r->status == 200) {
        if (full) next_full = std::chrono::steady_clock::now() + kFullReportInterval;
        full = false;
        if (auto body = parse_json(r->body); body && body->is_object()) {
          full = body->value("full_report", false);
        }
        std::lock_guard lock(mu);
        ++reports;
        observations += static_cast<int64_t>(report.instances);
        for (auto& [id, text] : report.observed) {
          if (auto it = instances.find(id); it != instances.end())
            it->second.reported = std::move(text);
        }
        if (full) report_now = true;
        continue;
      }
      log()->warn("agent host={} report failed: {}", opts.host,
                  r ? "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 200)
                    : r.error().to_string());
      {
        // Consoles taken out of a failed report are sent again later.
        std::lock_guard lock(mu);
        for (auto& [id, inst] : instances) inst.console_hash = 0;
      }
      if (r && r->status == 404) {
        // The server lost the host (new database): register again, then tell it everything.
        std::lock_guard lock(mu);
        registered = false;
        full = true;
      }
      if (r && r->status == 404 && !register_host()) sleep_for(backoff);
      if (!r) sleep_for(backoff);
    }
  }

  // ---- lifecycle ----

  bool is_stopping() {
    std::lock_guard lock(mu);
    return stopping;
  }

  void sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu);
    stop_cv.wait_for(lock, d, [&] { return stopping; });
  }

  Status start() {
    {
      std::lock_guard lock(mu);
      if (started) return ok();
      started = true;
      stopping = false;
    }
    adopt();
    for (int i = 0; i < opts.workers; ++i) threads.emplace_back([this] { worker_loop(); });
    threads.emplace_back([this] { report_loop(); });
    threads.emplace_back([this] { poll_loop(); });
    return ok();
  }

  void stop() {
    {
      std::lock_guard lock(mu);
      if (!started) return;
      stopping = true;
    }
    work_cv.notify_all();
    report_cv.notify_all();
    stop_cv.notify_all();
    poll_client->cancel();
    {
      std::lock_guard lock(mu);
      for (HttpClient* c : downloads) c->cancel();
    }
    report_client->cancel();
    for (auto& t : threads) t.join();
    threads.clear();
  }

  AgentOptions opts;
  std::map<std::string, std::shared_ptr<driver::Driver>> drivers;  // fixed after init
  std::unique_ptr<HttpClient> poll_client;                         // poll thread only
  std::unique_ptr<HttpClient> report_client;                       // report thread only
  std::vector<std::pair<std::string, std::string>> auth;
  std::optional<std::string> registration_body;  // report thread only
  std::chrono::milliseconds heartbeat{2000};     // report thread only
  std::vector<std::thread> threads;

  mutable std::mutex mu;
  std::condition_variable work_cv, report_cv, stop_cv;
  // Guarded by mu:
  std::map<std::string, Instance> instances;
  std::deque<std::string> queue;
  std::map<std::string, std::shared_ptr<std::mutex>> image_locks;
  std::set<HttpClient*> downloads;  // in flight, cancelled by stop()
  bool started = false, stopping = false, report_now = false, fetched_once = false;
  std::string set_digest;  // of the last assignment set received (apply_assignments)
  bool registered = false;
  int64_t fetches = 0, reports = 0, steps_total = 0, assignments_seq = 0, observations = 0,
          unchanged_polls = 0;
  std::atomic<int64_t> orphans_destroyed{0};
};

Result<std::unique_ptr<Agent>> Agent::create(AgentOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  impl->heartbeat = impl->opts.heartbeat_interval;
  CONCORD_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Agent::~Agent() {
  stop();
}

Status Agent::start() {
  return impl_->start();
}
void Agent::stop() {
  impl_->stop();
}

Agent::Stats Agent::stats() const {
  std::lock_guard lock(impl_->mu);
  Stats s;
  s.registered = impl_->registered;
  s.assignments_seq = impl_->assignments_seq;
  s.fetches = impl_->fetches;
  s.reports = impl_->reports;
  s.observations = impl_->observations;
  s.unchanged_polls = impl_->unchanged_polls;
  s.steps = impl_->steps_total;
  s.instances = static_cast<int64_t>(impl_->instances.size());
  s.orphans_destroyed = impl_->orphans_destroyed.load();
  return s;
}

}  // namespace concord::agent

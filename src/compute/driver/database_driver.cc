// Database driver: one managed database engine (database/engine: PostgreSQL, MariaDB) per
// instance, converged to the desired state the database service writes into the server's
// metadata (database_keys.h). There is no image: the engine binaries are the host's.
//
// Per instance, <root>/<id>/ holds what this driver keeps as root, and the engine's folder:
// <root>/<id>/v, the instance's own volume (a file system of its size, mounted there from
// <root>/.volumes/<id>.ext4: database_volume.h), or, for an instance made before volumes or
// with database_volumes "directory", <root>/<id>/ itself (then owned by the engine user). The
// driver's files:
//   instance.json  engine, version, address, port and flavor, written before anything else so
//                  calls by id (start, stop, destroy after an agent restart) know the engine
//   desired.json   the last desired state received; start() re-applies it when the engine's
//                  applied revision is behind (a configure that arrived while it was stopped)
//   restored       the instance's data folder was made from its RestoreSpec (a create or start
//                  without it restores first; a half-made restore is redone)
//   cloned         a replica's data folder was made by Engine::clone_from once, with the seed
//                  (every start of a replica calls clone_from, which copies when no folder is
//                  there and otherwise keeps it, starting a former primary's as a replica's)
//   backups-done/<backup id>  the backup requests finished here (uploaded or reported failed),
//                  so a restarted agent does not redo them; one killed midway is redone
//   backup-<id>.part          a backup being written (removed when done, redone when found)
//   logs-published/<request id>  the guest-log publish requests finished here
//   log-<request id>.part        a log's end being uploaded
//   work/          with a volume, the engine's own copies (InstanceConfig::work_dir: a backup's
//                  working copy, log shipping's staging and shipped-log cache), off the volume
//   rebuilding     a replica that cannot go on from its upstream is being made anew (why);
//                  status() reports no power state and rebuild=running meanwhile (and
//                  rebuild=needed for a replica seen broken), a next agent finishes it
//
// Backups, restores and archived logs travel over the agent protocol to the database service's
// agent routes (/agent/v1/database, HttpTransport below). A configure() carrying a backup
// request runs it after applying the state; a create() (or a start() after an agent died
// mid-create) carrying a restore source restores instead of copying the template. A background
// thread, every database_ship_interval, ships each instance's completed log files and rebuilds
// a replica whose engine says it cannot go on from its upstream (Health::replication_broken:
// its position was purged there, or its replay failed), with no new desired state needed; in
// between, every second, it ships the logs that wait on a volume (Engine::logs_waiting).
// Shipping that keeps failing is recorded in the instance folder (`ship_failing`: since when,
// kept across agent restarts, removed by the next shipping that succeeds); from
// database_archive_stall_after on, status() reports archive_stalled_since=<unix seconds> (a
// text that stays the same while the episode lasts, so it is not written again every report),
// which the service turns into the instance's archiving.stalled / archiving.resumed events.
// The engine keeps the rest (data, socket, certificate, engine.log, applied_revision).
//
// Power: running only when the engine answers a real query over its admin socket; a live
// process that does not answer is kNoState (the agent neither restarts it nor calls it off), a
// dead one is kShutdown, which the server turns into SHUTOFF like a guest that shut down.
//
// The root is DriverOptions.database_dir, by default /var/lib/concord/database/<digest of the
// agent's state_dir>: outside the agent's state_dir because that lives in the server's data_dir,
// which is 0700 (it holds the store and keys) and must stay so, while the engine user has to
// traverse to its folder. One root per agent, so agents sharing a machine (tests, benchmarks)
// never take each other's instances for orphans. The driver makes the root 0711 (traversal
// only, no listing); probe() names any ancestor that still blocks it. The engines' data-folder
// templates (and their spare copies) are per host, in /var/lib/concord/database/templates;
// with an explicit database_dir they stay inside it, in .templates.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "compute/driver/database_keys.h"
#include "compute/driver/database_volume.h"
#include "compute/driver/driver.h"
#include "compute/driver/util.h"
#include "database/engine/desired_state.h"
#include "database/engine/engine.h"
#include "database/engine/engine_common.h"  // lookup_os_user, file_tail
#include "database/engine/guest_logs.h"
#include "fmt/format.h"
#include "http/client.h"
#include "nlohmann/json.hpp"

namespace concord::compute::driver {
namespace {

namespace keys = database_keys;
namespace engine = database::engine;
using std::chrono::milliseconds;
constexpr milliseconds kRebootGrace{30000};
constexpr milliseconds kResizeGrace{30000};

struct Stored {
  std::string engine, version, address;
  int port = 0;
  int vcpus = 1;
  int64_t ram_mb = 512, volume_gb = 1;
  // The engine's folder is v/, the instance's own file system (database_volume.h);
  // false for an instance made before volumes existed, or with database_volumes "directory".
  bool volume = false;
};

Json stored_json(const Stored& s) {
  Json j = {{"engine", s.engine},      {"version", s.version}, {"address", s.address},
            {"port", s.port},          {"vcpus", s.vcpus},     {"ram_mb", s.ram_mb},
            {"volume_gb", s.volume_gb}};
  if (s.volume) j["volume"] = "loop";
  return j;
}

std::string meta_string(const Json& meta, std::string_view key) {
  auto it = meta.find(std::string(key));
  if (it == meta.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

Result<int64_t> meta_int(const Json& meta, std::string_view key, int64_t dflt, int64_t min,
                         int64_t max) {
  std::string text = meta_string(meta, key);
  if (text.empty()) return dflt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return fail(Code::kInvalidArgument,
                fmt::format("database metadata {} must be an integer in [{}, {}], got '{}'", key,
                            min, max, text));
  }
  return v;
}

bool valid_ipv4(const std::string& a) {
  int parts = 0;
  size_t i = 0;
  while (i <= a.size()) {
    size_t dot = a.find('.', i);
    if (dot == std::string::npos) dot = a.size();
    std::string part = a.substr(i, dot - i);
    int v = -1;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || part.size() > 3 || ec != std::errc() || end != part.data() + part.size() ||
        v < 0 || v > 255) {
      return false;
    }
    ++parts;
    i = dot + 1;
    if (dot == a.size()) break;
  }
  return parts == 4;
}

// The engines' Transport over the agent protocol: the database service's routes under
// /agent/v1/database, authenticated with the agent's X-Concord-Agent value. A client per call:
// calls come from the agent's workers and the shipping thread, and HttpClient is one-thread.
// Errors: kUnavailable when the server cannot be reached or answers 5xx (retry), the HTTP
// status's meaning otherwise, kInternal "checksum mismatch" for a download that does not match.
class HttpTransport final : public engine::Transport {
 public:
  static constexpr std::string_view kPrefix = "/agent/v1/database";
  static constexpr milliseconds kTimeout{600000};

  HttpTransport(std::string server_url, std::string agent_header)
      : server_url_(std::move(server_url)), agent_header_(std::move(agent_header)) {}

  Status put_backup(const std::string& backup_id, const std::string& path,
                    const std::string& sha256) override {
    return put_backup_with_info(backup_id, path, sha256, std::nullopt);
  }

  // The upload that also completes the backup with the engine's BackupInfo.
  Status put_backup_with_info(const std::string& backup_id, const std::string& path,
                              const std::string& sha256,
                              const std::optional<engine::BackupInfo>& info) {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"X-Concord-SHA256", sha256}, {"Content-Type", "application/octet-stream"}};
    if (info) {
      Json j = {{"kind", info->kind},
                {"consistent_at_us", info->consistent_at_us},
                {"meta_json", info->meta_json}};
      headers.emplace_back("X-Concord-Backup-Info", base64url_encode(dump_json(j), false));
    }
    return expect_ok(
        send_file("PUT", fmt::format("{}/backups/{}/data", kPrefix, backup_id), path, headers));
  }

  Status get_backup(const std::string& backup_id, const std::string& sha256,
                    const std::string& path) override {
    return download(fmt::format("{}/backups/{}/data", kPrefix, backup_id), sha256, path);
  }

  Status put_log(const std::string& instance_id, const engine::LogFile& log,
                 const std::string& path) override {
    CONCORD_ASSIGN_OR_RETURN(std::string sha, sha256_file(path));
    if (!log.sha256.empty() && log.sha256 != sha) {
      return fail(Code::kInternal, fmt::format("log file {} changed while shipping it ({} != {})",
                                               path, sha, log.sha256));
    }
    return expect_ok(send_file(
        "PUT", fmt::format("{}/instances/{}/logs/{}", kPrefix, instance_id, url_encode(log.name)),
        path,
        {{"X-Concord-SHA256", sha},
         {"X-Concord-Log-First-Us", std::to_string(log.first_time_us)},
         {"X-Concord-Log-Last-Us", std::to_string(log.last_time_us)},
         {"Content-Type", "application/octet-stream"}}));
  }

  Result<std::vector<engine::LogFile>> list_logs(const std::string& instance_id) override {
    auto reply = call("GET", fmt::format("{}/instances/{}/logs", kPrefix, instance_id), "", {});
    CONCORD_RETURN_IF_ERROR(expect_ok(reply));
    auto j = parse_json(reply->body);
    if (!j || !j->is_object() || !j->contains("logs") || !(*j)["logs"].is_array()) {
      return fail(Code::kInternal, "the server's list of archived logs is malformed");
    }
    std::vector<engine::LogFile> out;
    for (const Json& l : (*j)["logs"]) {
      if (!l.is_object()) continue;
      engine::LogFile f;
      f.name = l.value("name", std::string());
      f.sha256 = l.value("sha256", std::string());
      f.size_bytes = l.value("size_bytes", int64_t{0});
      f.first_time_us = l.value("first_time_us", int64_t{0});
      f.last_time_us = l.value("last_time_us", int64_t{0});
      out.push_back(std::move(f));
    }
    return out;
  }

  Status get_log(const std::string& instance_id, const engine::LogFile& log,
                 const std::string& path) override {
    return download(
        fmt::format("{}/instances/{}/logs/{}", kPrefix, instance_id, url_encode(log.name)),
        log.sha256, path);
  }

  // A published guest log: the end of the file (`path`), for request `request_id`, and the
  // whole file's size then.
  Status put_guest_log(const std::string& instance_id, const std::string& name,
                       const std::string& request_id, const std::string& path, int64_t file_bytes) {
    CONCORD_ASSIGN_OR_RETURN(std::string sha, sha256_file(path));
    return expect_ok(send_file(
        "PUT", fmt::format("{}/instances/{}/guest-logs/{}", kPrefix, instance_id, name), path,
        {{"X-Concord-SHA256", sha},
         {"X-Concord-Log-Request", request_id},
         {"X-Concord-Log-File-Bytes", std::to_string(file_bytes)},
         {"Content-Type", "text/plain"}}));
  }

  // Progress and failure reports of a backup request.
  Status progress(const std::string& backup_id, std::string_view status) {
    return expect_ok(call("POST", fmt::format("{}/backups/{}/progress", kPrefix, backup_id),
                          dump_json(Json{{"status", status}}),
                          {{"Content-Type", "application/json"}}));
  }
  Status failed(const std::string& backup_id, const std::string& reason) {
    return expect_ok(call("POST", fmt::format("{}/backups/{}/failed", kPrefix, backup_id),
                          dump_json(Json{{"reason", sanitize_utf8(reason)}}),
                          {{"Content-Type", "application/json"}}));
  }

 private:
  // Uploads stream from the file: an archive never has to fit in the agent's memory.
  Result<http::HttpReply> send_file(std::string_view method, const std::string& target,
                                    const std::string& path,
                                    std::vector<std::pair<std::string, std::string>> headers) {
    CONCORD_ASSIGN_OR_RETURN(auto client, http::HttpClient::create(server_url_));
    headers.emplace_back("X-Concord-Agent", agent_header_);
    auto reply = client->upload(method, target, path, headers, kTimeout);
    if (!reply) {
      return fail(reply.error().code(),
                  fmt::format("{} {}: {}", method, target, reply.error().message()));
    }
    return reply;
  }

  Result<http::HttpReply> call(std::string_view method, const std::string& target,
                               std::string_view body,
                               std::vector<std::pair<std::string, std::string>> headers) {
    CONCORD_ASSIGN_OR_RETURN(auto client, http::HttpClient::create(server_url_));
    headers.emplace_back("X-Concord-Agent", agent_header_);
    auto reply = client->request(method, target, body, headers, kTimeout);
    if (!reply) {
      return fail(reply.error().code(),
                  fmt::format("{} {}: {}", method, target, reply.error().message()));
    }
    return reply;
  }

  static Status expect_ok(const Result<http::HttpReply>& reply) {
    if (!reply) return fail(reply.error());
    const int status = reply->status;
    if (status >= 200 && status < 300) return ok();
    std::string message = reply->body.substr(0, 512);
    if (auto j = parse_json(reply->body);
        j && j->is_object() && j->contains("error") && (*j)["error"].is_object()) {
      message = (*j)["error"].value("message", message);
    }
    message = fmt::format("the server answered {}: {}", status, message);
    const Code code = status == 400   ? Code::kInvalidArgument
                      : status == 401 ? Code::kUnauthenticated
                      : status == 403 ? Code::kPermissionDenied
                      : status == 404 ? Code::kNotFound
                      : status == 409 ? Code::kAlreadyExists
                      : status == 422 ? Code::kFailedPrecondition
                      : status >= 500 ? Code::kUnavailable
                                      : Code::kInternal;
    return fail(code, message);
  }

  Status download(const std::string& target, const std::string& sha256, const std::string& path) {
    CONCORD_ASSIGN_OR_RETURN(auto client, http::HttpClient::create(server_url_));
    auto reply = client->download(target, {{"X-Concord-Agent", agent_header_}}, path, kTimeout);
    if (!reply) {
      reply =
          fail(reply.error().code(), fmt::format("GET {}: {}", target, reply.error().message()));
    }
    if (Status st = expect_ok(reply); !st) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
      return st;
    }
    CONCORD_ASSIGN_OR_RETURN(std::string got, sha256_file(path));
    if (!sha256.empty() && got != sha256) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
      return fail(Code::kInternal, fmt::format("checksum mismatch: {} has SHA-256 {}, expected {}",
                                               target, got, sha256));
    }
    return ok();
  }

  const std::string server_url_;
  const std::string agent_header_;
};

class DatabaseDriver final : public Driver {
 public:
  DatabaseDriver(DriverOptions options,
                 std::map<std::string, std::unique_ptr<engine::Engine>> engines,
                 std::vector<std::string> unbuilt)
      : options_(std::move(options)),
        engines_(std::move(engines)),
        unbuilt_(std::move(unbuilt)),
        log_(logger("compute.driver")) {
    if (!options_.server_url.empty()) {
      transport_ = std::make_unique<HttpTransport>(options_.server_url, options_.agent_header);
    }
    if (options_.database_ship_interval.count() > 0) {
      maintainer_ = std::thread([this] { maintenance_loop(); });
    }
  }

  ~DatabaseDriver() override {
    {
      std::lock_guard lock(maintenance_mu_);
      stopping_ = true;
    }
    maintenance_cv_.notify_all();
    if (maintainer_.joinable()) maintainer_.join();
  }

  std::string_view kind() const override { return "database"; }

  Capabilities probe() override {
    std::lock_guard<std::mutex> lock(probe_mutex_);
    if (caps_) return *caps_;
    Capabilities caps;
    caps.accel = "process";
    std::vector<std::string> good, bad = unbuilt_;
    for (auto& [name, e] : engines_) {
      auto st = e->probe(default_version(name));
      if (st) {
        good.push_back(fmt::format("{} {}", name, default_version(name)));
      } else {
        bad.push_back(fmt::format("{}: {}", name, st.error().message()));
      }
    }
    caps.usable = !good.empty();
    caps.reason =
        good.empty() ? "no database engine can run here: " + fmt::format("{}", fmt::join(bad, "; "))
                     : fmt::format("engines: {}", fmt::join(good, ", "));
    if (!good.empty() && !bad.empty()) {
      caps.reason += fmt::format(" (unavailable: {})", fmt::join(bad, "; "));
    }
    if (std::string blocked = blocked_ancestor(); !blocked.empty()) {
      caps.usable = false;
      caps.reason = fmt::format("the engine user cannot reach {} (no o+x on {})", root(), blocked);
    }
    if (caps.usable && options_.database_volumes == "loop") {
      // A real one, made, mounted and removed: a host without loop devices (some containers)
      // or an agent without root is told here, not at its first create.
      const std::string image = image_for(".probe"), mount_point = root() + "/.probe-volume";
      Status v = ensure_volume(image, mount_point, int64_t{16} << 20);
      Status gone = remove_volume(image, mount_point);
      if (v && gone) gone = remove_tree(mount_point);
      if (!v || !gone) {
        caps.usable = false;
        caps.reason = fmt::format(
            "database volumes cannot be made here ({}); agent.database_volumes=directory keeps "
            "instances in plain folders",
            (!v ? v : gone).error().message());
      }
    }
    caps_ = caps;
    return caps;
  }

  Status create(const InstanceSpec& spec) override {
    CONCORD_RETURN_IF_ERROR(validate_id(spec.id));
    CONCORD_ASSIGN_OR_RETURN(Stored s, from_spec(spec));
    CONCORD_ASSIGN_OR_RETURN(auto state, state_from_spec(spec));
    CONCORD_ASSIGN_OR_RETURN(engine::Engine * e, engine_for(s.engine));
    const std::string dir = dir_for(spec.id);
    CONCORD_RETURN_IF_ERROR(make_dirs(dir));
    auto old = load(spec.id);
    if (old && (old->engine != s.engine || old->port != s.port || old->address != s.address)) {
      // A half-made create of another shape (never happens for one server id in practice):
      // the folder cannot be trusted.
      return fail(Code::kFailedPrecondition,
                  fmt::format("database instance {} already exists here as {} on {}:{}", spec.id,
                              old->engine, old->address, old->port));
    }
    // A create redone after an agent died keeps the layout it began with.
    s.volume = old ? old->volume : options_.database_volumes == "loop";
    if (s.volume) CONCORD_RETURN_IF_ERROR(restrict_folder(dir));
    CONCORD_RETURN_IF_ERROR(write_file_atomic(dir + "/instance.json", dump_json(stored_json(s))));
    CONCORD_RETURN_IF_ERROR(write_file_atomic(dir + "/desired.json", engine::to_json(state)));
    engine::InstanceConfig cfg = config_of(spec.id, s);
    std::lock_guard busy(*lock_for(spec.id));
    CONCORD_RETURN_IF_ERROR(ensure_mounted(spec.id, s));
    CONCORD_RETURN_IF_ERROR(ensure_restored(spec.id, *e, cfg, state));
    CONCORD_RETURN_IF_ERROR(e->prepare(cfg));
    CONCORD_RETURN_IF_ERROR(e->start(cfg));
    CONCORD_RETURN_IF_ERROR(e->apply(cfg, state));
    log_->info("database instance {} created: {} {} on {}:{} revision {}", spec.id, s.engine,
               s.version, s.address, s.port, state.revision);
    return ok();
  }

  Status start(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    CONCORD_ASSIGN_OR_RETURN(Stored s, load_known(id));
    CONCORD_ASSIGN_OR_RETURN(engine::Engine * e, engine_for(s.engine));
    engine::InstanceConfig cfg = config_of(id, s);
    // An agent killed mid-create leaves instance.json with a half-made folder, and the agent
    // then starts (not creates) what it sees: prepare finishes it (a no-op when complete),
    // after the restore it was made for.
    std::lock_guard busy(*lock_for(id));
    CONCORD_RETURN_IF_ERROR(ensure_mounted(id, s));
    if (auto text = read_file(dir_for(id) + "/desired.json")) {
      if (auto state = engine::desired_state_from_json(*text)) {
        CONCORD_RETURN_IF_ERROR(ensure_restored(id, *e, cfg, *state));
      }
    }
    CONCORD_RETURN_IF_ERROR(e->prepare(cfg));
    CONCORD_RETURN_IF_ERROR(e->start(cfg));
    return catch_up(id, *e, cfg);
  }

  Status stop(std::string_view id, milliseconds grace) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    CONCORD_ASSIGN_OR_RETURN(Stored s, load_known(id));
    CONCORD_ASSIGN_OR_RETURN(engine::Engine * e, engine_for(s.engine));
    std::lock_guard busy(*lock_for(id));  // not in the middle of a replica's rebuild
    CONCORD_RETURN_IF_ERROR(e->stop(config_of(id, s), grace));
    // Stopped on purpose: a rebuild left unfinished is not resumed by the maintenance round
    // (that would start it again); start() finishes it (prepare, start, apply rebuild).
    return remove_tree(dir_for(id) + "/rebuilding");
  }

  Status reboot(std::string_view id, bool hard) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    CONCORD_ASSIGN_OR_RETURN(Stored s, load_known(id));
    CONCORD_ASSIGN_OR_RETURN(engine::Engine * e, engine_for(s.engine));
    engine::InstanceConfig cfg = config_of(id, s);
    std::lock_guard busy(*lock_for(id));
    CONCORD_RETURN_IF_ERROR(ensure_mounted(id, s));
    CONCORD_RETURN_IF_ERROR(e->stop(cfg, hard ? milliseconds(0) : kRebootGrace));
    CONCORD_RETURN_IF_ERROR(e->prepare(cfg));
    CONCORD_RETURN_IF_ERROR(e->start(cfg));
    return catch_up(id, *e, cfg);
  }

  Status resize(const InstanceSpec& new_spec) override {
    CONCORD_RETURN_IF_ERROR(validate_id(new_spec.id));
    CONCORD_RETURN_IF_ERROR(validate_flavor(new_spec));
    CONCORD_ASSIGN_OR_RETURN(Stored s, load_known(new_spec.id));
    CONCORD_ASSIGN_OR_RETURN(engine::Engine * e, engine_for(s.engine));
    s.vcpus = new_spec.vcpus;
    s.ram_mb = new_spec.ram_mb;
    auto md = meta_of(new_spec);
    if (md) {
      CONCORD_ASSIGN_OR_RETURN(s.volume_gb,
                               meta_int(*md, keys::kVolumeGb, s.volume_gb, 1, 1 << 20));
    }
    std::lock_guard busy(*lock_for(new_spec.id));
    CONCORD_RETURN_IF_ERROR(ensure_mounted(new_spec.id, s));
    CONCORD_RETURN_IF_ERROR(
        write_file_atomic(dir_for(new_spec.id) + "/instance.json", dump_json(stored_json(s))));
    engine::InstanceConfig cfg = config_of(new_spec.id, s);
    CONCORD_ASSIGN_OR_RETURN(engine::Health h, e->health(cfg));
    // New memory settings and cgroup limits take effect with a restart.
    CONCORD_RETURN_IF_ERROR(e->stop(cfg, kResizeGrace));
    if (s.volume) {
      // While the engine is stopped; a smaller size leaves the volume as it is (the service
      // refuses a shrink before it gets here).
      CONCORD_RETURN_IF_ERROR(
          grow_volume(image_for(new_spec.id), volume_dir(new_spec.id), s.volume_gb << 30));
    }
    CONCORD_RETURN_IF_ERROR(e->prepare(cfg));
    if (!h.running) return ok();
    CONCORD_RETURN_IF_ERROR(e->start(cfg));
    return catch_up(new_spec.id, *e, cfg);
  }

  Status rebuild(const InstanceSpec& new_spec) override {
    return fail(Code::kFailedPrecondition,
                fmt::format("database instance {} cannot be rebuilt from an image", new_spec.id));
  }

  Status configure(const InstanceSpec& spec) override {
    CONCORD_RETURN_IF_ERROR(validate_id(spec.id));
    CONCORD_ASSIGN_OR_RETURN(Stored s, load_known(spec.id));
    // The service grows a volume in two writes, the server's size and then the metadata that
    // carries the volume size: when the agent's resize step saw the first alone, it kept the
    // old size, and the growth happens here (also for a stopped engine, which stays stopped).
    if (auto md = meta_of(spec)) {
      CONCORD_ASSIGN_OR_RETURN(int64_t want,
                               meta_int(*md, keys::kVolumeGb, s.volume_gb, 1, 1 << 20));
      if (want > s.volume_gb) {
        CONCORD_RETURN_IF_ERROR(resize(spec));
        CONCORD_ASSIGN_OR_RETURN(s, load_known(spec.id));
      }
    }
    CONCORD_ASSIGN_OR_RETURN(auto state, state_from_spec(spec));
    CONCORD_ASSIGN_OR_RETURN(engine::Engine * e, engine_for(s.engine));
    CONCORD_RETURN_IF_ERROR(
        write_file_atomic(dir_for(spec.id) + "/desired.json", engine::to_json(state)));
    engine::InstanceConfig cfg = config_of(spec.id, s);
    CONCORD_ASSIGN_OR_RETURN(engine::Health h, e->health(cfg));
    if (!h.running) {
      // Kept in desired.json; start() applies it. Its logs are there all the same (and say
      // why it stopped, when it died).
      log_->info("database instance {} is stopped; revision {} applies at its next start", spec.id,
                 state.revision);
      return publish_logs(spec.id, s.engine, cfg, state.log_publish);
    }
    std::lock_guard busy(*lock_for(spec.id));
    CONCORD_RETURN_IF_ERROR(e->apply(cfg, state));
    log_->info("database instance {} configured to revision {}", spec.id, state.revision);
    CONCORD_RETURN_IF_ERROR(publish_logs(spec.id, s.engine, cfg, state.log_publish));
    if (state.backup) CONCORD_RETURN_IF_ERROR(run_backup(spec.id, *e, cfg, *state.backup));
    return ok();
  }

  Status destroy(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    const std::string dir = dir_for(id);
    // An image whose folder is gone: a destroy killed between the two.
    if (!path_exists(dir)) return remove_volume(image_for(id), volume_dir(id));
    std::lock_guard busy(*lock_for(id));
    auto s = load(id);
    if (s) {
      if (auto e = engine_for(s->engine); e) {
        CONCORD_RETURN_IF_ERROR((*e)->destroy(config_of(id, *s)));
      }
    } else {
      // No instance.json: created by a create() that died before writing it, so no engine was
      // ever started from here; whatever engine the folder names gets destroyed by each engine.
      for (auto& [name, e] : engines_) {
        Stored any;
        any.engine = name;
        any.address = "127.0.0.1";
        any.port = 1;
        (void)e->destroy(config_of(id, any));
      }
    }
    // The folder goes only after its volume: a destroy killed in between is redone in full.
    CONCORD_RETURN_IF_ERROR(remove_volume(image_for(id), volume_dir(id)));
    CONCORD_RETURN_IF_ERROR(remove_tree(dir));
    log_->info("database instance {} destroyed", id);
    return ok();
  }

  Result<InstanceStatus> status(std::string_view id) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    InstanceStatus st;
    if (!path_exists(dir_for(id))) return st;
    auto s = load(id);
    if (!s) return st;  // create never got far: not an instance yet (create converges it)
    st.exists = true;
    CONCORD_ASSIGN_OR_RETURN(engine::Engine * e, engine_for(s->engine));
    // An unmounted volume (after a host restart) is not mounted from here: a status may run
    // beside a destroy that has just unmounted it. Its engine is not running, so it reports a
    // shutdown, as any engine that stopped; start() mounts it.
    engine::InstanceConfig cfg = config_of(id, *s);
    CONCORD_ASSIGN_OR_RETURN(engine::Health h, e->health(cfg));
    const auto rebuilding = read_file(dir_for(id) + "/rebuilding");
    // Stopped on purpose while a replica is made anew: not a shutdown the server would act on.
    st.power = h.healthy                 ? PowerState::kRunning
               : h.running || rebuilding ? PowerState::kNoState
                                         : PowerState::kShutdown;
    st.detail = fmt::format("state_revision={}; {} {}; disk_used_bytes={}; {}", h.applied_revision,
                            s->engine, s->version, h.disk_used_bytes, h.detail);
    if (!h.role.empty()) {
      st.detail += fmt::format("; role={}; streaming={}; lag_seconds={}", h.role,
                               h.replication_streaming ? 1 : 0, h.replication_lag_seconds);
      // A replica that stops streaming is seen within a heartbeat: as a synchronous standby, the
      // primary's commits wait for it until the server stops waiting (api_ha.cc).
      st.watch = h.role == "replica";
    }
    if (h.disk_used_bytes > s->volume_gb * (int64_t{1} << 30) * 9 / 10) {
      st.detail += "; storage low";
    }
    if (path_exists(storage_full_marker(id))) st.detail += "; storage_full=1";
    if (h.fenced_revision > 0) st.detail += fmt::format("; fenced_revision={}", h.fenced_revision);
    if (auto since = shipping_failing_since(std::string(id));
        since && wall_us() - *since >= options_.database_archive_stall_after.count() * 1000) {
      st.detail += fmt::format("; archive_stalled_since={}", *since / 1'000'000);
    }
    if (rebuilding) {
      st.detail += "; rebuild=running";
    } else if (!h.replication_broken.empty()) {
      st.detail += "; rebuild=needed";
    }
    Address a;
    a.network = std::string(keys::kAddressNetwork);
    a.addr = s->address;  // the port is the engine's standard one (Trove shows it)
    st.addresses.push_back(std::move(a));
    return st;
  }

  Result<std::vector<std::string>> list() override { return list_instance_ids(root()); }

  Result<std::string> console_log(std::string_view id, size_t max_bytes) override {
    CONCORD_RETURN_IF_ERROR(validate_id(id));
    if (!path_exists(dir_for(id))) {
      return fail(Code::kNotFound, fmt::format("no database instance {}", id));
    }
    auto s = load(id);
    return read_log_tail((s ? engine_dir(id, *s) : dir_for(id)) + "/engine.log", max_bytes);
  }

 private:
  std::string root() const { return database_root(options_); }
  std::string dir_for(std::string_view id) const { return fmt::format("{}/{}", root(), id); }
  // The instance's volume (database_volume.h): the image, kept in the root's dot folder (not an
  // instance id), and where it is mounted.
  std::string image_for(std::string_view id) const {
    return fmt::format("{}/.volumes/{}.ext4", root(), id);
  }
  // One letter: the engines' sockets are in their folder (PostgreSQL's
  // <root>/<uuid>/v/run/.s.PGSQL.<port>, MariaDB's point-in-time replay server's
  // v/restore.tmp/replay.sock), and a Unix socket path has at most 107 bytes.
  std::string volume_dir(std::string_view id) const { return dir_for(id) + "/v"; }
  std::string volume_file(std::string_view id, std::string_view name) const {
    return volume_dir(id) + "/" + std::string(name);
  }
  // Present while the storage guard finds the instance's volume full (guard_storage).
  std::string storage_full_marker(std::string_view id) const {
    return dir_for(id) + "/storage_full";
  }
  std::string engine_dir(std::string_view id, const Stored& s) const {
    return s.volume ? volume_dir(id) : dir_for(id);
  }
  // Mounts the instance's volume if it is not (after a host restart), making it first if a
  // create died before it did. Called by the calls that start the engine (create, start,
  // reboot, resize), with the instance's lock held.
  // A volume the storage guard found full also gives up its recovery reserve here: the engine
  // about to start may need room for its crash recovery (guard_storage).
  Status ensure_mounted(std::string_view id, const Stored& s) const {
    if (!s.volume) return ok();
    CONCORD_RETURN_IF_ERROR(ensure_volume(image_for(id), volume_dir(id), s.volume_gb << 30));
    if (path_exists(storage_full_marker(id))) {
      CONCORD_RETURN_IF_ERROR(remove_tree(volume_file(id, kRecoveryReserve)));
    }
    return ok();
  }

  static std::string default_version(std::string_view engine) {
    return engine == "mariadb" ? "10.11" : "15";
  }
  static int default_port(std::string_view engine) { return engine == "mariadb" ? 3306 : 5432; }

  // An instance folder whose engine folder is on its volume is root's, not the engine user's
  // (which owns the whole folder otherwise): it holds the desired state, user verifiers
  // included. The engine user's group may only traverse it, to reach v/.
  Status restrict_folder(const std::string& dir) const {
    CONCORD_ASSIGN_OR_RETURN(const engine::detail::OsUser user,
                             engine::detail::lookup_os_user(options_.database_os_user));
    if (::chown(dir.c_str(), 0, user.gid) != 0 || ::chmod(dir.c_str(), 0710) != 0) {
      return fail(Code::kInternal, fmt::format("chown/chmod {}: {}", dir, std::strerror(errno)));
    }
    return ok();
  }

  // The first ancestor of root() the engine user cannot traverse, or "".
  std::string blocked_ancestor() const {
    std::string path = root();
    while (!path.empty() && path != "/") {
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0) return path;
      auto slash = path.rfind('/');
      if (slash == std::string::npos || slash == 0) break;
      path.resize(slash);
    }
    return "";
  }

  static Status validate_flavor(const InstanceSpec& spec) {
    if (spec.vcpus < 1 || spec.ram_mb < 128) {
      return fail(Code::kInvalidArgument,
                  fmt::format("flavor too small for a database: vcpus={} ram_mb={} (at least 1 "
                              "and 128)",
                              spec.vcpus, spec.ram_mb));
    }
    return ok();
  }

  static Result<Json> meta_of(const InstanceSpec& spec) {
    auto md = parse_json(spec.guest.meta_data_json.empty() ? "{}" : spec.guest.meta_data_json);
    if (!md || !md->is_object()) {
      return fail(Code::kInvalidArgument, "database driver: meta_data_json is not an object");
    }
    Json meta = md->value("meta", Json::object());
    if (!meta.is_object()) {
      return fail(Code::kInvalidArgument, "database driver: meta_data_json 'meta' not an object");
    }
    return meta;
  }

  Result<Stored> from_spec(const InstanceSpec& spec) const {
    CONCORD_RETURN_IF_ERROR(validate_flavor(spec));
    CONCORD_ASSIGN_OR_RETURN(Json meta, meta_of(spec));
    Stored s;
    s.engine = meta_string(meta, keys::kEngine);
    if (s.engine.empty()) {
      return fail(
          Code::kInvalidArgument,
          fmt::format("database driver: metadata {} (the engine) is missing", keys::kEngine));
    }
    if (!engines_.contains(s.engine)) {
      return fail(Code::kInvalidArgument,
                  fmt::format("database driver: unknown engine '{}'", s.engine));
    }
    s.version = meta_string(meta, keys::kVersion);
    if (s.version.empty()) s.version = default_version(s.engine);
    for (char c : s.version) {
      if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.') {
        return fail(
            Code::kInvalidArgument,
            fmt::format("database driver: version '{}' is not a version number", s.version));
      }
    }
    s.address = meta_string(meta, keys::kAddress);
    if (!valid_ipv4(s.address)) {
      return fail(Code::kInvalidArgument,
                  fmt::format("database driver: metadata {} must be an IPv4 address, got '{}'",
                              keys::kAddress, s.address));
    }
    CONCORD_ASSIGN_OR_RETURN(int64_t port,
                             meta_int(meta, keys::kPort, default_port(s.engine), 1, 65535));
    s.port = static_cast<int>(port);
    CONCORD_ASSIGN_OR_RETURN(s.volume_gb, meta_int(meta, keys::kVolumeGb,
                                                   std::max<int64_t>(1, spec.disk_gb), 1, 1 << 20));
    s.vcpus = spec.vcpus;
    s.ram_mb = spec.ram_mb;
    return s;
  }

  static Result<engine::DesiredState> state_from_spec(const InstanceSpec& spec) {
    CONCORD_ASSIGN_OR_RETURN(Json meta, meta_of(spec));
    std::string text = meta_string(meta, keys::kState);
    if (text.empty()) return engine::DesiredState{};
    auto st = engine::desired_state_from_json(text);
    if (!st) {
      return fail(Code::kInvalidArgument, fmt::format("database driver: metadata {}: {}",
                                                      keys::kState, st.error().message()));
    }
    return *st;
  }

  Result<engine::Engine*> engine_for(const std::string& name) {
    auto it = engines_.find(name);
    if (it == engines_.end()) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("database engine '{}' is not available on this host", name));
    }
    return it->second.get();
  }

  engine::InstanceConfig config_of(std::string_view id, const Stored& s) const {
    engine::InstanceConfig c;
    c.id = std::string(id);
    c.dir = engine_dir(id, s);
    // Concord's working copies stay off the tenant's volume (InstanceConfig::work_dir).
    if (s.volume) c.work_dir = dir_for(id) + "/work";
    c.version = s.version;
    c.address = s.address;
    c.port = s.port;
    c.vcpus = s.vcpus;
    c.ram_mb = s.ram_mb;
    c.volume_gb = s.volume_gb;
    return c;
  }

  std::optional<Stored> load(std::string_view id) const {
    auto text = read_file(dir_for(id) + "/instance.json");
    if (!text) return std::nullopt;
    auto j = parse_json(*text);
    if (!j || !j->is_object()) return std::nullopt;
    Stored s;
    s.engine = j->value("engine", std::string());
    s.version = j->value("version", std::string());
    s.address = j->value("address", std::string());
    s.port = j->value("port", 0);
    s.vcpus = j->value("vcpus", 1);
    s.ram_mb = j->value("ram_mb", int64_t{512});
    s.volume_gb = j->value("volume_gb", int64_t{1});
    s.volume = j->value("volume", std::string()) == "loop";
    if (s.engine.empty() || s.port <= 0) return std::nullopt;
    return s;
  }

  Result<Stored> load_known(std::string_view id) const {
    auto s = load(id);
    if (!s) return fail(Code::kNotFound, fmt::format("no database instance {}", id));
    return *s;
  }

  // Applies the stored desired state when the engine is behind it.
  Status catch_up(std::string_view id, engine::Engine& e, const engine::InstanceConfig& cfg) {
    auto text = read_file(dir_for(id) + "/desired.json");
    if (!text) return ok();
    auto state = engine::desired_state_from_json(*text);
    if (!state) return ok();
    CONCORD_ASSIGN_OR_RETURN(engine::Health h, e.health(cfg));
    if (h.applied_revision >= state->revision && h.applied_revision != 0) return ok();
    return e.apply(cfg, *state);
  }

  // One lock per instance: the agent serialises its calls per id, the shipping thread is the
  // only other caller.
  std::shared_ptr<std::mutex> lock_for(std::string_view id) {
    std::lock_guard lock(locks_mu_);
    auto& m = locks_[std::string(id)];
    if (!m) m = std::make_shared<std::mutex>();
    return m;
  }

  // Makes the data folder from the desired state's restore source or, for a replica, as a copy
  // of its upstream (from the group's backups when the spec carries a seed and this agent has a
  // server to fetch them from), once.
  Status ensure_restored(std::string_view id, engine::Engine& e, const engine::InstanceConfig& cfg,
                         const engine::DesiredState& state) {
    if (state.replication && state.replication->role == engine::ReplicationSpec::Role::kReplica &&
        !state.restore) {
      const std::string cloned = dir_for(id) + "/cloned";
      if (path_exists(cloned)) {
        // Copied before: clone_from keeps the folder there is (a former primary's starts as a
        // replica's, never writable) and copies again, over the network, only when none is
        // there (a rebuild cut short, a demoted primary's folder set aside); a template copy
        // started in its place would be nobody's copy.
        return e.clone_from(cfg, *state.replication, nullptr);
      }
      if (const int64_t until = state.replication->seed_wait_until_us;
          !state.replication->seed && until > 0 && transport_ && wall_us() < until) {
        // A backup of the upstream is being taken to seed this copy: the server pushes a new
        // desired state when it ends; past the deadline the copy goes over the network.
        return fail(Code::kUnavailable,
                    fmt::format("database instance {}: waiting for the backup of {} that will "
                                "seed its copy (until {} us)",
                                id, state.replication->upstream_instance, until));
      }
      log_->info(
          "database instance {}: a replica of {} ({}:{}); its data copied from there "
          "unless its folder holds the group's{}",
          id, state.replication->upstream_instance, state.replication->upstream_address,
          state.replication->upstream_port,
          state.replication->seed && transport_ ? ", seeded from its backup" : "");
      CONCORD_RETURN_IF_ERROR(e.clone_from(cfg, *state.replication, transport_.get()));
      return write_file_atomic(cloned,
                               dump_json(Json{{"upstream", state.replication->upstream_instance}}));
    }
    if (!state.restore) return ok();
    const std::string marker = dir_for(id) + "/restored";
    if (path_exists(marker)) return ok();
    if (!transport_) {
      return fail(Code::kFailedPrecondition,
                  fmt::format("database instance {} is to be restored from a backup, but this "
                              "agent has no server to fetch it from",
                              id));
    }
    const engine::RestoreSpec& r = *state.restore;
    log_->info("database instance {}: restoring from {} archive(s){}", id, r.chain.size(),
               r.target_time_us > 0 ? fmt::format(" and the logs of {} up to {} us",
                                                  r.log_source_instance, r.target_time_us)
                                    : std::string());
    CONCORD_RETURN_IF_ERROR(e.restore(cfg, r, *transport_));
    return write_file_atomic(
        marker, dump_json(Json{{"backup", r.chain.empty() ? "" : r.chain.back().backup_id},
                               {"target_time_us", r.target_time_us}}));
  }

  // Publishes the guest logs asked for (guest_logs.h): the end of each log's file, at most
  // kGuestLogPublishBytes and from the start of a line, uploaded once per request id (recorded
  // in logs-published/). A log whose file does not exist yet publishes as empty. The server
  // unreachable is kUnavailable (the configure is retried); a refused upload is logged and
  // recorded as done, so a request the server no longer wants is not retried forever.
  Status publish_logs(std::string_view id, const std::string& engine_name,
                      const engine::InstanceConfig& cfg,
                      const std::vector<engine::LogPublishRequest>& requests) {
    if (requests.empty()) return ok();
    if (!transport_) {
      log_->warn("database instance {}: logs asked, but this agent has no server to upload to", id);
      return ok();
    }
    const std::string done_dir = dir_for(id) + "/logs-published";
    for (const engine::LogPublishRequest& req : requests) {
      // A request this driver cannot serve is skipped, not failed: a failed configure would
      // put the instance in ERROR for the sake of a log.
      const engine::GuestLogSpec* spec = engine::find_guest_log(engine_name, req.name);
      if (!validate_id(req.id) || spec == nullptr) {
        log_->warn("database instance {}: cannot publish log '{}' (request '{}') of a {} engine",
                   id, req.name, req.id, engine_name);
        continue;
      }
      const std::string marker = done_dir + "/" + req.id;
      if (path_exists(marker)) continue;
      const std::string file = cfg.dir + "/" + std::string(spec->file);
      std::error_code ec;
      const auto size = std::filesystem::file_size(file, ec);
      const int64_t file_bytes = ec ? 0 : static_cast<int64_t>(size);
      std::string text = engine::detail::file_tail(file, engine::kGuestLogPublishBytes);
      if (file_bytes > static_cast<int64_t>(text.size())) {
        const size_t line = text.find('\n');  // a partial first line goes
        text.erase(0, line == std::string::npos ? text.size() : line + 1);
      }
      const std::string part = fmt::format("{}/log-{}.part", dir_for(id), req.id);
      CONCORD_RETURN_IF_ERROR(write_file_atomic(part, text));
      Status put = transport_->put_guest_log(std::string(id), req.name, req.id, part, file_bytes);
      std::filesystem::remove(part, ec);
      if (!put && put.error().code() == Code::kUnavailable) return put;
      if (!put) {
        log_->warn("database instance {}: publishing log {}: {}", id, req.name,
                   put.error().to_string());
      } else {
        log_->info("database instance {}: log {} published ({} of {} bytes)", id, req.name,
                   text.size(), file_bytes);
      }
      CONCORD_RETURN_IF_ERROR(make_dirs(done_dir));
      CONCORD_RETURN_IF_ERROR(write_file_atomic(marker, put ? "published" : "refused"));
    }
    return ok();
  }

  // Runs one backup request (see the file comment). Transient trouble (the server unreachable,
  // the engine not answering yet) is kUnavailable, which the agent retries; anything else is
  // reported as the backup's failure, and the instance stays as it was.
  Status run_backup(std::string_view id, engine::Engine& e, const engine::InstanceConfig& cfg,
                    const engine::BackupRequest& req) {
    if (!transport_) {
      log_->warn(
          "database instance {}: backup {} asked, but this agent has no server to upload "
          "to",
          id, req.id);
      return ok();
    }
    CONCORD_RETURN_IF_ERROR(validate_id(req.id));
    const std::string done_dir = dir_for(id) + "/backups-done";
    const std::string marker = done_dir + "/" + req.id;
    if (path_exists(marker)) return ok();
    const std::string out = fmt::format("{}/backup-{}.part", dir_for(id), req.id);
    std::error_code ec;
    std::filesystem::remove(out, ec);
    auto finish = [&](std::string outcome) -> Status {
      std::filesystem::remove(out, ec);
      CONCORD_RETURN_IF_ERROR(make_dirs(done_dir));
      return write_file_atomic(marker, outcome);
    };
    auto report_failure = [&](const Error& why) -> Status {
      log_->warn("database instance {}: backup {} failed: {}", id, req.id, why.to_string());
      if (Status st = transport_->failed(req.id, why.message()); !st) {
        if (st.error().code() == Code::kUnavailable) return st;
        log_->warn("database instance {}: reporting backup {}'s failure: {}", id, req.id,
                   st.error().to_string());
      }
      return finish("failed: " + why.message());
    };
    (void)transport_->progress(req.id, "BUILDING");
    log_->info("database instance {}: backup {} ({}) starting", id, req.id,
               req.parent_id.empty() ? "full" : "incremental on " + req.parent_id);
    auto info = e.backup(cfg, req, out);
    if (!info) {
      if (info.error().code() == Code::kUnavailable) return fail(info.error());
      return report_failure(info.error());
    }
    (void)transport_->progress(req.id, "SAVING");
    auto sha = sha256_file(out);
    if (!sha) return report_failure(sha.error());
    Status put = transport_->put_backup_with_info(req.id, out, *sha, *info);
    if (!put) {
      if (put.error().code() == Code::kUnavailable) return put;  // redone at the next try
      return report_failure(put.error());
    }
    log_->info("database instance {}: backup {} uploaded ({} bytes of {})", id, req.id,
               std::filesystem::file_size(out, ec), info->kind);
    return finish("completed " + *sha);
  }

  // How often the maintenance thread looks, between its rounds, for completed logs waiting on
  // an instance's volume (Engine::logs_waiting: a directory listing), and ships them.
  static constexpr milliseconds kLogPoll{1000};
  // The storage guard's files on a volume (guard_storage).
  static constexpr std::string_view kReserve = "concord_reserve";
  static constexpr std::string_view kRecoveryReserve = "concord_reserve_recovery";
  static constexpr int64_t kRecoveryReserveBytes = int64_t{32} << 20;

  // Every database_ship_interval a round: ship each instance's completed log files (when its
  // desired state asks for archiving) and rebuild the replicas that cannot go on. In between,
  // every kLogPoll, ship the logs that wait: a write burst completes a 16 MB WAL segment every
  // fraction of a second, and waiting for the round let them fill a small volume (seen: 380 MB
  // on a 1 GB volume, and the tenant's write failed with "No space left on device").
  void maintenance_loop() {
    using Clock = std::chrono::steady_clock;
    std::unique_lock lock(maintenance_mu_);
    Clock::time_point next_round = Clock::now() + options_.database_ship_interval;
    while (!stopping_) {
      const Clock::time_point wake = std::min(next_round, Clock::now() + kLogPoll);
      maintenance_cv_.wait_until(lock, wake, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      const bool round = Clock::now() >= next_round;
      maintain_all(round);
      if (round) next_round = Clock::now() + options_.database_ship_interval;
      lock.lock();
    }
  }

  // round: ship and heal every instance; else ship only the instances whose logs wait, and not
  // those whose shipping is failing (their retries stay at the rounds' pace).
  void maintain_all(bool round) {
    const std::vector<std::string> ids = list_instance_ids(root());
    if (round) {
      std::erase_if(broken_seen_, [&](const std::string& id) {
        return std::find(ids.begin(), ids.end(), id) == ids.end();
      });
    }
    for (const std::string& id : ids) {
      {
        std::lock_guard lock(maintenance_mu_);
        if (stopping_) return;
      }
      auto s = load(id);
      if (!s) continue;
      auto e = engine_for(s->engine);
      if (!e) continue;
      const engine::InstanceConfig cfg = config_of(id, *s);
      const bool ship =
          transport_ &&
          (round || (!path_exists(dir_for(id) + "/ship_failing") && (*e)->logs_waiting(cfg)));
      if (!round && !ship && !s->volume) continue;
      std::unique_lock busy(*lock_for(id), std::try_to_lock);
      if (!busy.owns_lock()) continue;  // a create, backup or destroy is running: next time
      if (!path_exists(dir_for(id) + "/instance.json")) continue;
      // Not mounted (after a host restart, until start() mounts it): nothing to guard, ship or
      // heal.
      if (s->volume && !is_mount_point(volume_dir(id))) continue;
      if (s->volume) {
        guard_storage(id, **e, cfg);
      } else if (round) {
        // No guard without a volume; a data folder restored from a guarded instance's backup
        // brings its read-only switch, which goes here.
        if (auto changed = (*e)->set_read_only(cfg, false); changed && *changed) {
          log_->info("database instance {}: writable (a restored folder's guard removed)", id);
        }
      }
      if (!round && !ship) continue;
      auto text = read_file(dir_for(id) + "/desired.json");
      if (!text) continue;
      auto state = engine::desired_state_from_json(*text);
      if (!state) continue;
      if (ship && state->archive_logs) note_shipping(id, (*e)->ship_logs(cfg, *transport_));
      if (round) heal_replica(id, **e, cfg, *state);
    }
  }

  // The storage guard, every second for each instance on a volume (docs/design/database.md,
  // "Volumes"). A PostgreSQL whose WAL cannot grow PANICs, and its crash recovery then fails for
  // want of room too, so a full volume used to leave the instance down for good. The volume
  // holds back two root files of allocated room: concord_reserve (a 32nd of it, 32-256 MB) and
  // concord_reserve_recovery (32 MB, two WAL segments). When the free room drops below the
  // reserve's size, the guard turns on (storage_full in the instance folder): the reserve is
  // released, which gives the engine room to finish and to delete, and the instance turns
  // read-only (Engine::set_read_only) so that room is not written full too. The recovery
  // reserve is released only when the engine is started while the guard is on
  // (ensure_mounted): a transaction already running may eat the first, and the start after a
  // PANIC then still finds room for recovery. The guard turns off once three reserves and a
  // recovery reserve are free (data dropped or truncated, or the volume resized): both are
  // taken again and writes are allowed.
  void guard_storage(const std::string& id, engine::Engine& e, const engine::InstanceConfig& cfg) {
    auto space = volume_space(volume_dir(id));
    if (!space) return;
    const int64_t reserve =
        std::clamp<int64_t>(space->size / 32, int64_t{32} << 20, int64_t{256} << 20);
    const std::string marker = storage_full_marker(id);
    const std::string main_reserve = volume_file(id, kReserve);
    const std::string recovery_reserve = volume_file(id, kRecoveryReserve);
    // Takes back what is missing of the two, while `need` stays free beside them.
    auto take = [&](int64_t need) {
      int64_t free = space->free;
      for (const auto& [path, bytes] :
           {std::pair{recovery_reserve, kRecoveryReserveBytes}, std::pair{main_reserve, reserve}}) {
        if (path_exists(path) || free < need + bytes) continue;
        if (Status r = hold_reserve(path, bytes); !r) {
          log_->warn("database instance {}: {}", id, r.error().to_string());
          return false;
        }
        free -= bytes;
      }
      return true;
    };
    bool full = path_exists(marker);
    if (!full && space->free < reserve) {
      if (Status w = write_file_atomic(marker, std::to_string(wall_us()) + "\n"); !w) {
        log_->warn("database instance {}: {}", id, w.error().to_string());
        return;
      }
      (void)remove_tree(main_reserve);
      full = true;
      log_->warn(
          "database instance {}: its volume is full ({} bytes free): reserve released, "
          "writes refused until room is made",
          id, space->free);
    } else if (full && space->free >= 3 * reserve + kRecoveryReserveBytes) {
      if (!take(0)) return;
      (void)remove_tree(marker);
      full = false;
      log_->info("database instance {}: its volume has room again ({} bytes free): writes allowed",
                 id, space->free);
    } else if (!full) {
      take(2 * reserve);  // a new volume, or one made before the guard
    }
    auto changed = e.set_read_only(cfg, full);
    if (!changed) {
      log_->warn("database instance {}: {}", id, changed.error().to_string());
    } else if (*changed) {
      log_->info("database instance {}: {}", id, full ? "read-only" : "writable again");
    }
  }

  // kFailedPrecondition (the engine is not running, or logs nothing to archive) says nothing
  // about the way to the server, so it neither starts nor ends a failing episode.
  void note_shipping(const std::string& id, const Status& st) {
    const std::string marker = dir_for(id) + "/ship_failing";
    if (!st && st.error().code() == Code::kFailedPrecondition) return;
    if (st) {
      if (auto since = read_file(marker)) {
        log_->info("database instance {}: archived logs are shipped again (failing since {} us)",
                   id, since->substr(0, since->find('\n')));
        (void)remove_tree(marker);
      }
      return;
    }
    log_->warn("database instance {}: shipping archived logs: {}", id, st.error().to_string());
    if (!path_exists(marker)) {
      if (Status w = write_file_atomic(marker, std::to_string(wall_us()) + "\n"); !w) {
        log_->warn("database instance {}: {}", id, w.error().to_string());
      }
    }
  }

  // Since when (unix us) archived logs have failed to ship, from ship_failing (nullopt: they
  // have not).
  std::optional<int64_t> shipping_failing_since(const std::string& id) const {
    auto text = read_file(dir_for(id) + "/ship_failing");
    if (!text) return std::nullopt;
    int64_t since = 0;
    const char* end = text->data() + text->size();
    if (std::from_chars(text->data(), end, since).ec != std::errc{}) return std::nullopt;
    return since;
  }

  static int64_t wall_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // A replica its engine says cannot go on (Health::replication_broken, in two rounds in a row:
  // not on a glimpse of a change under way) is made anew by applying its desired state again,
  // which rebuilds it from its upstream. The `rebuilding` file holds the reason while that
  // runs: status() reports no power state instead of a shutdown, and after a killed agent the
  // next round finishes it (prepare makes a half-rebuilt folder a template copy, which apply
  // rebuilds as it does a former primary).
  void heal_replica(const std::string& id, engine::Engine& e, const engine::InstanceConfig& cfg,
                    const engine::DesiredState& state) {
    const std::string marker = dir_for(id) + "/rebuilding";
    std::string why;
    if (auto resumed = read_file(marker)) {
      why = *resumed;
    } else {
      if (state.replication && state.replication->role == engine::ReplicationSpec::Role::kReplica) {
        if (auto h = e.health(cfg); h && h->running) why = h->replication_broken;
      }
      if (why.empty()) {
        broken_seen_.erase(id);
        return;
      }
      if (broken_seen_.insert(id).second) return;  // again next round
      if (Status w = write_file_atomic(marker, why); !w) {
        log_->warn("database instance {}: {}", id, w.error().to_string());
        return;
      }
    }
    log_->warn("database instance {}: rebuilding the replica from {}: {}", id,
               state.replication ? state.replication->upstream_instance : "its upstream", why);
    Status st = e.prepare(cfg);
    if (st) st = e.start(cfg);
    if (st) st = e.apply(cfg, state);
    if (!st) {
      log_->warn("database instance {}: rebuilding the replica: {} (again next round)", id,
                 st.error().to_string());
      return;
    }
    broken_seen_.erase(id);
    if (Status r = remove_tree(marker); !r) log_->warn("{}", r.error().to_string());
    log_->info("database instance {}: replica rebuilt at revision {}", id, state.revision);
  }

  DriverOptions options_;
  std::unique_ptr<HttpTransport> transport_;  // null without a server_url
  std::mutex locks_mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_;  // guarded by locks_mu_
  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;
  bool stopping_ = false;   // guarded by maintenance_mu_
  std::thread maintainer_;  // joined by the destructor before any member goes
  // Replicas seen broken in the last maintenance round (the maintenance thread's own).
  std::set<std::string> broken_seen_;
  std::map<std::string, std::unique_ptr<engine::Engine>> engines_;
  std::vector<std::string> unbuilt_;  // engines whose factory failed, with the reason
  std::shared_ptr<spdlog::logger> log_;
  std::mutex probe_mutex_;
  std::optional<Capabilities> caps_;  // guarded by probe_mutex_
};

}  // namespace

std::string database_root(const DriverOptions& options) {
  if (!options.database_dir.empty()) return options.database_dir;
  std::error_code ec;
  std::string state = std::filesystem::absolute(options.state_dir, ec).lexically_normal().string();
  if (ec) state = options.state_dir;
  return fmt::format("/var/lib/concord/database/{:016x}", fnv1a64(state));
}

Result<std::unique_ptr<Driver>> make_database_driver(const DriverOptions& options) {
  if (options.state_dir.empty()) {
    return fail(Code::kInvalidArgument, "database driver: state_dir is required");
  }
  engine::EngineOptions eo;
  eo.os_user = options.database_os_user;
  eo.bin_dir = options.database_bin_dir;
  eo.cgroup_root = options.cgroup_root;
  eo.cgroup_parent = options.database_cgroup_parent;
  eo.start_timeout = options.database_start_timeout;
  eo.proxy_networks = options.database_proxy_networks;
  // Data-folder templates are per host, not per agent: in the default layout every agent's
  // root sits in /var/lib/concord/database, so they share one template per engine and version
  // (built once under a lock). An explicit database_dir keeps them inside it (tests).
  // A spare copy per template is kept there too, which a create claims with a rename when the
  // instance folder is on the same file system (database_volumes "directory"); an instance on
  // its own volume copies the template instead.
  if (options.database_dir.empty()) {
    eo.template_dir = "/var/lib/concord/database/templates";
    eo.spare_copies = options.database_volumes == "directory";
  } else {
    // Named, not derived from an instance folder: with volumes that is <id>/v, whose parent
    // is not the root.
    eo.template_dir = options.database_dir + "/.templates";
  }
  if (options.database_volumes != "loop" && options.database_volumes != "directory") {
    return fail(Code::kInvalidArgument,
                fmt::format("database driver: database_volumes is \"loop\" or \"directory\", not "
                            "\"{}\"",
                            options.database_volumes));
  }
  std::map<std::string, std::unique_ptr<engine::Engine>> engines;
  std::vector<std::string> unbuilt;
  for (const std::string& name : engine::engine_names()) {
    auto made = name == "postgresql" ? engine::make_postgres_engine(eo)
                : name == "mariadb"  ? engine::make_mariadb_engine(eo)
                                     : fail(Code::kInternal, "no factory for engine " + name);
    if (!made) {
      // One engine that cannot be built here does not take the others down; probe() says why.
      unbuilt.push_back(fmt::format("{}: {}", name, made.error().message()));
      continue;
    }
    engines[name] = std::move(*made);
  }
  const std::string root = database_root(options);
  CONCORD_RETURN_IF_ERROR(make_dirs(root));
  ::chmod(root.c_str(), 0711);  // the engine user traverses to its own folder (no listing)
  // Engine cgroups left by instances no agent here has any more (an agent killed for good, a
  // folder removed by hand), at each agent start; ten minutes old at least, so a group just
  // made for an instance that is starting under another agent stays.
  const std::vector<std::string> ids = list_instance_ids(root);
  if (int n = engine::detail::sweep_cgroups(eo, std::set<std::string>(ids.begin(), ids.end()),
                                            std::chrono::minutes(10));
      n > 0) {
    logger("compute.driver")->info("database driver: removed {} empty engine cgroups", n);
  }
  return std::unique_ptr<Driver>(
      std::make_unique<DatabaseDriver>(options, std::move(engines), std::move(unbuilt)));
}

}  // namespace concord::compute::driver

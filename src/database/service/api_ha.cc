// High availability (docs/design/database.md, "High availability"): an instance of two
// members, a primary and a synchronous standby (PostgreSQL synchronous replication, MariaDB
// semi-synchronous AFTER_SYNC without timeout), each a service server on a host of its own. The
// instance's endpoint (api_endpoints.cc) routes to the primary member's engine; the controller
// thread here probes the members and fails over.
//
// Why no acknowledged commit is lost: the primary names the standby in its synchronous standby
// list only once the standby streams, and the controller marks it "active" (a legal failover
// target) only after the primary applied that list. From then on every commit the primary
// acknowledges is on the standby's disk. A failover promotes only an active standby. When the
// standby stops answering, or answers but its agent reports it not streaming, the controller
// first marks it not active in the store and only then tells the primary to stop waiting for it, so
// the store never calls a standby safe while the primary acknowledges commits it lacks.
//
// Why there are never two writable primaries: the old primary leaves the endpoint at once
// (session connections to it are closed), and while it runs it cannot acknowledge a commit, since
// its synchronous standby (now the new primary) no longer confirms anything. Its desired state
// makes it a replica of the new primary; its engine then follows it in place, or rebuilds from
// it when its history holds commits the new primary never received (engine.h). A paused or
// cut-off old primary that comes back is in the same position.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>

#include "base/random.h"
#include "database/service/api_internal.h"

namespace concord::database::service {
namespace {

constexpr auto kRound = std::chrono::milliseconds(250);
constexpr auto kProbeTimeout = std::chrono::milliseconds(200);
// Consecutive failed probes of the primary before a failover: about one second.
constexpr int kFailuresBeforeFailover = 4;
// How long an active standby may not answer before the primary stops waiting for it.
constexpr auto kStandbyGrace = std::chrono::seconds(5);
// How long an active standby may answer without streaming (its agent says so: cut off from the
// primary, its replication stopped) before the primary stops waiting for it, holding commits
// meanwhile. Its agent checks a replica every heartbeat (2 s; InstanceStatus::watch), so about
// three reports in a row must say so: one seen during a reconnect does not do it.
constexpr auto kStalledStandbyGrace = std::chrono::seconds(6);
// Between two restarts of a stopped standby member.
constexpr auto kRestartEvery = std::chrono::seconds(15);
// Between two repairs of a member whose desired state is behind (a push that keeps failing, for
// a standby no host can take, is not retried every round).
constexpr auto kPushEvery = std::chrono::seconds(5);

// Whether the engine at address:port answers, within kProbeTimeout. A paused (SIGSTOP) or
// cut-off engine is taken for dead although the kernel alone still accepts its TCP connections,
// so the probe needs an answer from the engine process itself:
// - PostgreSQL: a CancelRequest with a key no backend has makes the postmaster fork, read it and
//   close the connection without a reply or a log line (below DEBUG2); alive = closed in time.
// - MariaDB: the server greets every connection first; alive = a greeting byte in time. A client
//   that leaves before authenticating is not counted against max_connect_errors (300 such probes
//   in a row left logins from the same address working, tried on 10.11).
bool probe_engine(const std::string& engine, const std::string& address, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1) {
    ::close(fd);
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + kProbeTimeout;
  auto left_ms = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now())
               .count()));
  };
  bool alive = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 || errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, left_ms()) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
        err == 0) {
      pollfd r{fd, POLLIN, 0};
      char byte = 0;
      if (engine == "mariadb") {
        alive = ::poll(&r, 1, left_ms()) == 1 && ::recv(fd, &byte, 1, 0) == 1;
      } else {
        // Length 16, code 80877102, a process id and key no backend has.
        const unsigned char cancel[16] = {0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e,
                                          0, 0, 0, 0,  0,    0,    0,    0};
        alive = ::send(fd, cancel, sizeof cancel, MSG_NOSIGNAL) ==
                    static_cast<ssize_t>(sizeof cancel) &&
                ::poll(&r, 1, left_ms()) == 1 && ::recv(fd, &byte, 1, 0) <= 0;
      }
    }
  }
  ::close(fd);
  return alive;
}

bool has_token(const std::string& detail, std::string_view token) {
  return detail.find(token) != std::string::npos;
}

}  // namespace

Result<std::vector<DatabaseService::Impl::Member>> DatabaseService::Impl::members_of(
    store::Tx& tx, const std::string& instance_id) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT member_id, engine_address, role, sync FROM db_members WHERE instance_id = ? "
               "ORDER BY created, member_id",
               {instance_id}));
  std::vector<Member> out;
  for (const store::Row& r : rows) out.push_back({r.text(0), r.text(1), r.text(2), r.text(3)});
  return out;
}

Status DatabaseService::Impl::parse_create_ha(const Json& in, InstanceRow& inst) {
  auto h = in.find("high_availability");
  if (h == in.end() || h->is_null()) return ok();
  if (!h->is_boolean()) return fail(bad("'high_availability' must be true or false."));
  if (!h->get<bool>()) return ok();
  if (!options_.endpoints) {
    return fail(
        bad("High availability needs the database endpoints, which this cloud does not "
            "run."));
  }
  if (!inst.replica_of.empty()) return fail(bad("A read replica cannot be highly available."));
  inst.ha = true;
  if (inst.replication_secret.empty()) inst.replication_secret = random_token(24);
  return ok();
}

Status DatabaseService::Impl::insert_members(store::Tx& tx, const InstanceRow& inst,
                                             const std::string& standby_address) {
  const std::pair<std::string, std::string> rows[] = {{inst.id, inst.engine_address},
                                                      {inst.id + "-m1", standby_address}};
  for (const auto& [id, address] : rows) {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO db_members (member_id, instance_id, engine_address, role, "
                           "sync, created) VALUES (?, ?, ?, ?, 'none', ?)",
                           {id, inst.id, address, id == inst.id ? "primary" : "standby",
                            inst.created + (id == inst.id ? ".0" : ".1")}));
    (void)n;
  }
  return ok();
}

Result<DatabaseService::Impl::ServerTargets> DatabaseService::Impl::server_targets(
    store::Tx& tx, const InstanceRow& inst) {
  CONCORD_ASSIGN_OR_RETURN(engine::DesiredState base, desired_state(tx, inst));
  if (!inst.ha) return ServerTargets{{inst.id, server_metadata(inst, base)}};
  CONCORD_ASSIGN_OR_RETURN(std::vector<Member> members, members_of(tx, inst.id));
  const Member* primary = nullptr;
  for (const Member& m : members) {
    if (m.role == "primary") primary = &m;
  }
  if (!primary) return fail(Code::kInternal, "instance " + inst.id + " has no primary member");
  // A standby's first copy may come from the group's backups (a standby made anew after a
  // failover copies the same way; a member rebuilt by its apply copies over the network).
  // It never waits for a backup (backup_seed, not replica_seed): a standby made after a failover
  // is wanted at once.
  CONCORD_ASSIGN_OR_RETURN(std::optional<engine::RestoreSpec> seed, backup_seed(tx, inst));
  ServerTargets out;
  // The primary first: after a failover its promotion is what clients wait for.
  std::vector<const Member*> order = {primary};
  for (const Member& m : members) {
    if (&m != primary) order.push_back(&m);
  }
  for (const Member* m : order) {
    engine::DesiredState st = base;
    engine::ReplicationSpec r;
    r.secret = inst.replication_secret;
    if (m == primary) {
      r.role = engine::ReplicationSpec::Role::kPrimary;
      if (base.replication) r.replicas = base.replication->replicas;  // read replicas
      for (const Member& o : members) {
        if (&o == primary) continue;
        r.replicas.push_back(o.id);
        if (o.sync != "none") r.synchronous_standbys.push_back(o.id);
      }
    } else {
      r.role = engine::ReplicationSpec::Role::kReplica;
      r.upstream_instance = primary->id;
      r.upstream_address = primary->engine_address;
      r.upstream_port = static_cast<int>(inst.port);
      r.seed = seed;
      // MariaDB's semi-synchronous replication takes an acknowledgement from any replica with
      // it on: a replica turns it on when it finds itself in this list.
      for (const Member& o : members) {
        if (&o != primary && o.sync != "none") r.synchronous_standbys.push_back(o.id);
      }
      st.backup.reset();        // backups run on the primary
      st.log_publish.clear();   // the instance's logs are its primary's
      st.archive_logs = false;  // the primary ships the logs
    }
    // Only the first member's folder is ever made from a backup; the others copy a member.
    if (m->id != inst.id) st.restore.reset();
    st.replication = std::move(r);
    InstanceRow as_member = inst;
    as_member.engine_address = m->engine_address;
    out.emplace_back(m->id, server_metadata(as_member, st));
  }
  return out;
}

Result<std::vector<std::string>> DatabaseService::Impl::member_servers(const InstanceRow& inst) {
  if (!inst.ha) return std::vector<std::string>{inst.id};
  std::vector<std::string> out;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    out.clear();
    CONCORD_ASSIGN_OR_RETURN(std::vector<Member> members, members_of(tx, inst.id));
    for (const Member& m : members) out.push_back(m.id);
    return ok();
  }));
  return out;
}

void DatabaseService::Impl::add_ha_view(const InstanceRow& inst, Json& out) {
  if (!inst.ha) return;
  std::map<std::string, compute::ServiceServer> live;
  if (auto l = servers()) live = std::move(*l);
  std::vector<Member> members;
  Status read = store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(members, members_of(tx, inst.id));
    return ok();
  });
  Json list = Json::array();
  for (const Member& m : members) {
    auto s = live.find(m.id);
    std::string role = m.role;
    // A standby not (yet) streaming is being made or catching up.
    if (role == "standby" && (s == live.end() || !has_token(s->second.detail, "streaming=1"))) {
      role = "rebuilding";
    }
    list.push_back({{"id", m.id},
                    {"role", role},
                    {"synchronous", m.sync == "active"},
                    {"host", s == live.end() ? "" : s->second.host},
                    {"address", m.engine_address}});
  }
  out["high_availability"] = {
      {"enabled", true}, {"members", std::move(list)}, {"failovers", inst.failovers}};
  if (!read) out["high_availability"]["error"] = read.error().message();
}

void DatabaseService::Impl::start_ha() {
  if (!options_.endpoints) return;
  ha_controller_ = std::thread([this] {
    std::unique_lock lock(ha_mu_);
    while (!ha_stopping_) {
      lock.unlock();
      ha_round();
      lock.lock();
      ha_cv_.wait_for(lock, kRound, [&] { return ha_stopping_; });
    }
  });
}

void DatabaseService::Impl::stop_ha() {
  {
    std::lock_guard lock(ha_mu_);
    ha_stopping_ = true;
  }
  ha_cv_.notify_all();
  if (ha_controller_.joinable()) ha_controller_.join();
}

void DatabaseService::Impl::ha_round() {
  std::vector<std::pair<InstanceRow, std::vector<Member>>> instances;
  Status read = store_.read([&](store::Tx& tx) -> Status {
    instances.clear();
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query(std::string(kInstanceSelect) +
                                                        "WHERE i.ha = 1 AND i.deleting = 0"));
    for (const store::Row& r : rows) {
      InstanceRow inst = instance_from(r);
      CONCORD_ASSIGN_OR_RETURN(std::vector<Member> members, members_of(tx, inst.id));
      instances.emplace_back(std::move(inst), std::move(members));
    }
    return ok();
  });
  if (!read || instances.empty()) {
    if (instances.empty()) probes_.clear();
    return;
  }
  auto live = servers();
  if (!live) return;
  const auto now = std::chrono::steady_clock::now();
  for (auto& [inst, members] : instances) {
    const Member* primary = nullptr;
    const Member* standby = nullptr;
    for (const Member& m : members) {
      if (m.role == "primary") {
        primary = &m;
      } else if (!standby) {
        standby = &m;
      }
    }
    if (!primary) continue;
    Probes& pr = probes_[inst.id];
    // Level-triggered repair: a server killed between a failover's (or any change's) write and
    // its pushes left a member's desired state behind the row; push it again.
    const bool behind = std::any_of(members.begin(), members.end(), [&](const Member& m) {
      auto s = live->find(m.id);
      return s == live->end() || state_revision_of(s->second) < inst.state_revision;
    });
    if (behind && now - pr.last_push >= kPushEvery) {
      pr.last_push = now;
      sync_servers({inst.id});
    }
    auto ps = live->find(primary->id);
    // A primary still being built is not failing, nor is one in a planned restart (the restart
    // action) on a host that is up; a reboot that never ends goes to ERROR (compute's action
    // timeout) and is failed over then.
    if (ps == live->end() || ps->second.status == "BUILD") continue;
    if ((ps->second.status == "REBOOT" || ps->second.status == "HARD_REBOOT") &&
        ps->second.host_status == "UP") {
      pr.primary_failures = 0;
      continue;
    }
    if (probe_engine(inst.engine, primary->engine_address, static_cast<int>(inst.port))) {
      pr.primary_failures = 0;
    } else if (++pr.primary_failures >= kFailuresBeforeFailover) {
      if (standby && standby->sync == "active" &&
          probe_engine(inst.engine, standby->engine_address, static_cast<int>(inst.port))) {
        if (fail_over(inst.id, fmt::format("the primary member {} did not answer for {} probes",
                                           primary->id, pr.primary_failures))) {
          pr = Probes{};
        }
      } else if (pr.primary_failures == kFailuresBeforeFailover) {
        logger("database")
            ->warn(
                "instance {}: primary member {} does not answer and no synchronized standby "
                "can take over",
                inst.id, primary->id);
      }
      continue;
    }
    if (!standby) continue;
    auto ss = live->find(standby->id);
    // A standby whose host stays down is replaced by a new member elsewhere (once the primary
    // no longer waits for it: its sync went to "none" after kStandbyGrace).
    const bool host_lost =
        ss != live->end() && !ss->second.host.empty() && ss->second.host_status != "UP";
    if (!host_lost) {
      pr.standby_lost_since = {};
    } else if (pr.standby_lost_since == std::chrono::steady_clock::time_point{}) {
      pr.standby_lost_since = now;
    } else if (standby->sync == "none" &&
               now - pr.standby_lost_since >= options_.ha_replace_after) {
      if (replace_standby(
              inst, *standby, *live,
              fmt::format(
                  "its host {} has been {} for {} s", ss->second.host, ss->second.host_status,
                  std::chrono::duration_cast<std::chrono::seconds>(now - pr.standby_lost_since)
                      .count()))) {
        pr.standby_lost_since = {};
        pr.standby_down_since = {};
        continue;
      }
      pr.standby_lost_since = now;  // not replaced (raced, no address left): again in a period
    }
    const bool standby_answers =
        probe_engine(inst.engine, standby->engine_address, static_cast<int>(inst.port));
    if (standby_answers) {
      pr.standby_down_since = {};
    } else if (pr.standby_down_since == std::chrono::steady_clock::time_point{}) {
      pr.standby_down_since = now;
    }
    const bool streaming = ss != live->end() && has_token(ss->second.detail, "streaming=1");
    if (streaming || !standby_answers) {
      pr.standby_stalled_since = {};
    } else if (pr.standby_stalled_since == std::chrono::steady_clock::time_point{}) {
      pr.standby_stalled_since = now;
    }
    const bool stalled = pr.standby_stalled_since != std::chrono::steady_clock::time_point{} &&
                         now - pr.standby_stalled_since >= kStalledStandbyGrace;
    std::string next_sync = standby->sync;
    if (standby->sync == "none" && standby_answers && streaming) {
      next_sync = "requested";  // the primary will wait for it
    } else if (standby->sync == "requested" && streaming && ps->second.converged &&
               state_revision_of(ps->second) >= inst.state_revision) {
      next_sync = "active";  // the primary applied it: a failover target from now on
    } else if (standby->sync != "none" &&
               ((!standby_answers && now - pr.standby_down_since >= kStandbyGrace) || stalled)) {
      next_sync = "none";  // stop waiting for it (marked here before the primary is told)
    }
    if (next_sync != standby->sync) {
      const bool changes_primary = (standby->sync == "none") != (next_sync == "none");
      Status wrote = store_.write([&](store::Tx& tx) -> Status {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec("UPDATE db_members SET sync = ? WHERE member_id = ? AND sync = ?",
                               {next_sync, standby->id, standby->sync}));
        if (n == 0 || !changes_primary) return ok();
        return bump_revisions(tx, {inst.id}, trove_time(clock_.now()));
      });
      if (!wrote) {
        logger("database")
            ->warn("instance {}: standby {}: {}", inst.id, standby->id, wrote.error().to_string());
        continue;
      }
      logger("database")
          ->info("instance {}: standby {} synchronous replication {} -> {}{}", inst.id, standby->id,
                 standby->sync, next_sync,
                 next_sync != "none" ? std::string()
                 : stalled           ? fmt::format(" (it answers but has not streamed for {} s)",
                                                   kStalledStandbyGrace.count())
                           : fmt::format(" (it has not answered for {} s)", kStandbyGrace.count()));
      if (changes_primary) sync_servers({inst.id});
    }
    // A standby member whose server stopped or failed (the old primary after a failover, say)
    // is started again: its desired state makes it a replica of the primary.
    if (ss != live->end() && (ss->second.status == "SHUTOFF" || ss->second.status == "ERROR") &&
        ss->second.host_status == "UP" && !ss->second.task_state &&
        now - pr.last_restart >= kRestartEvery) {
      pr.last_restart = now;
      if (Status r = compute::reboot_service_server(compute_, standby->id); !r) {
        logger("database")
            ->warn("instance {}: restarting standby {}: {}", inst.id, standby->id,
                   r.error().to_string());
      }
    }
  }
  for (auto it = probes_.begin(); it != probes_.end();) {
    bool known = std::any_of(instances.begin(), instances.end(),
                             [&](const auto& i) { return i.first.id == it->first; });
    it = known ? std::next(it) : probes_.erase(it);
  }
}

bool DatabaseService::Impl::fail_over(const std::string& instance_id, const std::string& reason) {
  std::string old_primary, new_primary;
  std::vector<std::string> read_replicas;
  Status wrote = store_.write([&](store::Tx& tx) -> Status {
    old_primary.clear();
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows, tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {instance_id}));
    if (rows.empty()) return ok();
    InstanceRow inst = instance_from(rows[0]);
    if (inst.deleting || !inst.ha) return ok();
    CONCORD_ASSIGN_OR_RETURN(std::vector<Member> members, members_of(tx, inst.id));
    const Member* p = nullptr;
    const Member* s = nullptr;
    for (const Member& m : members) {
      if (m.role == "primary") p = &m;
      if (m.role == "standby" && m.sync == "active" && !s) s = &m;
    }
    if (!p || !s) return ok();  // raced with another server's failover, or nothing safe
    old_primary = p->id;
    new_primary = s->id;
    for (const auto& [id, role] : {std::pair{p->id, "standby"}, std::pair{s->id, "primary"}}) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n,
          tx.exec("UPDATE db_members SET role = ?, sync = 'none' WHERE member_id = ?", {role, id}));
      (void)n;
    }
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("UPDATE db_instances SET primary_member = ?, engine_address = ?, failovers = "
                "failovers + 1, state_revision = state_revision + 1, updated = ? WHERE id = ?",
                {s->id == inst.id ? std::string() : s->id, s->engine_address,
                 trove_time(clock_.now()), inst.id}));
    (void)n;
    CONCORD_ASSIGN_OR_RETURN(store::Rows reps,
                             tx.query("SELECT id FROM db_instances WHERE replica_of = ? AND "
                                      "deleting = 0",
                                      {inst.id}));
    read_replicas.clear();
    for (const store::Row& r : reps) read_replicas.push_back(r.text(0));
    CONCORD_RETURN_IF_ERROR(bump_revisions(tx, read_replicas, trove_time(clock_.now())));
    return record_event(tx, inst, "failover",
                        "Failed over to the standby member " + s->id + ": " + reason,
                        Json{{"from", p->id}, {"to", s->id}});
  });
  if (!wrote) {
    logger("database")
        ->error("instance {}: failover not recorded: {}", instance_id, wrote.error().to_string());
    return false;
  }
  if (old_primary.empty()) return false;
  logger("database")
      ->warn("instance {}: failover from {} to {} ({})", instance_id, old_primary, new_primary,
             reason);
  refresh_endpoints();  // the endpoint leaves the old primary now
  sync_servers({instance_id});
  sync_servers(read_replicas);
  return true;
}

bool DatabaseService::Impl::replace_standby(
    const InstanceRow& inst, const Member& old,
    const std::map<std::string, compute::ServiceServer>& live, const std::string& reason) {
  const std::set<uint32_t> held = held_addresses(live);
  std::string new_id, new_address;
  Status wrote = store_.write([&](store::Tx& tx) -> Status {
    new_id.clear();
    CONCORD_RETURN_IF_ERROR(tx.serialize());  // the address and the member id stay ours
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query(std::string(kInstanceSelect) + "WHERE i.id = ?", {inst.id}));
    if (rows.empty()) return ok();
    InstanceRow now_inst = instance_from(rows[0]);
    if (now_inst.deleting || !now_inst.ha) return ok();
    CONCORD_ASSIGN_OR_RETURN(std::vector<Member> members, members_of(tx, inst.id));
    bool still = false;
    // Member ids only grow (the newest member is never removed except by this, which adds a
    // newer one), so "<id>-mN" is never the id of an earlier, deleted server.
    int64_t next = 1;
    const std::string prefix = inst.id + "-m";
    for (const Member& m : members) {
      if (m.id == old.id && m.role == "standby" && m.sync == "none") still = true;
      if (m.id.starts_with(prefix)) {
        int64_t n = 0;
        const std::string_view digits = std::string_view(m.id).substr(prefix.size());
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
        if (ec == std::errc() && end == digits.data() + digits.size()) {
          next = std::max(next, n + 1);
        }
      }
    }
    if (!still) return ok();
    CONCORD_ASSIGN_OR_RETURN(std::vector<uint32_t> free, free_addresses(tx, held, 1));
    new_id = prefix + std::to_string(next);
    new_address = ip_text(free[0]);
    const std::string t = trove_time(clock_.now());
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("DELETE FROM db_members WHERE member_id = ?", {old.id}));
    CONCORD_ASSIGN_OR_RETURN(
        n, tx.exec("INSERT INTO db_members (member_id, instance_id, engine_address, role, sync, "
                   "created) VALUES (?, ?, ?, 'standby', 'none', ?)",
                   {new_id, inst.id, new_address, t}));
    (void)n;
    CONCORD_RETURN_IF_ERROR(bump_revisions(tx, {inst.id}, t));
    return record_event(tx, now_inst, "standby.replaced",
                        "Replaced the standby member " + old.id + " by " + new_id + ": " + reason,
                        Json{{"from", old.id}, {"to", new_id}});
  });
  if (!wrote) {
    logger("database")
        ->warn("instance {}: replacing standby {}: {}", inst.id, old.id, wrote.error().to_string());
    return false;
  }
  if (new_id.empty()) return false;
  logger("database")
      ->warn("instance {}: standby {} replaced by {} at {} ({})", inst.id, old.id, new_id,
             new_address, reason);
  // Its host is down, so the server goes at once; an agent that comes back tears it down.
  if (Status gone = compute::delete_service_server(compute_, old.id); !gone) {
    logger("database")
        ->warn("instance {}: deleting the replaced standby's server {}: {}", inst.id, old.id,
               gone.error().to_string());
  }
  sync_servers({inst.id});  // the primary drops the old slot; the new member's server is made
  return true;
}

}  // namespace concord::database::service

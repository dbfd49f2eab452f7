// The endpoint controller: one level-triggered pass converges every endpoint's replicas to what
// its row asks for (see endpoint_service.h for the rules), and meters them.
//
// Order of effects, and why it is crash-safe:
//   * a replica row is inserted (state active) before ReplicaBackend::ensure(id): a crash in
//     between leaves a row whose replica the backend does not know (kGone, never started), and
//     the next pass calls ensure again with the same id;
//   * a replica is removed by marking its row `deleting`, then destroy(id), then deleting the
//     row with its last replica_seconds interval in one transaction: a crash in between leaves
//     a `deleting` row that the next pass finishes;
//   * a replica the backend runs that no row names (a crash after destroy failed, or a row
//     removed by hand) is destroyed as an orphan.
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "base/log.h"
#include "base/random.h"
#include "base/time_format.h"
#include "inference/endpoints/service_impl.h"
#include "usage/usage_ledger.h"

namespace concord::inference::endpoints {
namespace {

constexpr std::string_view kEndpointKind = "inference.endpoint";

int64_t to_ms(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Milliseconds as exact decimal seconds ("12.345").
std::string seconds_text(int64_t ms) {
  std::string frac = std::to_string(ms % 1000);
  frac.insert(0, 3 - frac.size(), '0');
  return std::to_string(ms / 1000) + "." + frac;
}

double p99(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(v.size()))) - 1;
  return v[std::min(idx, v.size() - 1)];
}

}  // namespace

struct EndpointService::Impl::Pass {
  SystemTime now;
  int64_t now_ms = 0;
  std::map<std::string, ReplicaInfo> backend;  // by replica id
  std::map<std::string, std::string> model_names;
  ReconcileReport report;
};

ReplicaSpec EndpointService::Impl::spec_for(const Pass& pass, const EndpointRow& e,
                                            const ReplicaRow& r) const {
  ReplicaSpec s;
  s.endpoint_id = e.id;
  s.project_id = e.project_id;
  s.name = e.name + "-" + std::to_string(r.ordinal);
  s.model_id = e.model_id;
  s.model_version = e.model_version;
  auto name = pass.model_names.find(e.model_id);
  s.model_name = name != pass.model_names.end() ? name->second : e.model_id;
  s.vcpus = static_cast<int>(e.vcpus);
  s.memory_mb = e.memory_mb;
  s.batching.max_batch_size = static_cast<int>(e.max_batch_size);
  s.batching.max_queue_delay = std::chrono::microseconds(e.max_queue_delay_us);
  s.split = e.split;
  s.replica_key = e.replica_key;
  return s;
}

bool EndpointService::Impl::probe_ready(const std::string& url, const std::string& key) const {
  auto client = http::HttpClient::create(url);
  if (!client) return false;
  auto reply = (*client)->request("GET", "/v2/health/ready", "", {{"x-concord-replica-key", key}},
                                  options_.probe_timeout);
  return reply && reply->status == 200;
}

Result<bool> EndpointService::Impl::append_replica_seconds(store::Tx& tx, const EndpointRow& e,
                                                           ReplicaRow& r, int64_t until_ms) {
  if (r.started_ms == 0 || until_ms <= r.last_metered_ms) return false;
  usage::UsageEvent ev{
      .event_id = "inference.replica:" + r.id + ":" + std::to_string(r.last_metered_ms),
      .project_id = e.project_id,
      .resource_id = e.id,
      .resource_type = std::string(kEndpointKind),
      .kind = "inference.replica_seconds",
      .quantity = seconds_text(until_ms - r.last_metered_ms),
      .unit = "s",
      .start = SystemTime(std::chrono::milliseconds(r.last_metered_ms)),
      .end = SystemTime(std::chrono::milliseconds(until_ms)),
      .publisher_id = "",
      .region = options_.region};
  CONCORD_RETURN_IF_ERROR(usage::append(tx, ev));
  r.last_metered_ms = until_ms;
  return true;
}

Status EndpointService::Impl::flush_requests(const EndpointRow& e, store::Tx& tx, int64_t count) {
  if (count <= 0) return ok();
  // Only called under pass_mu_.
  SystemTime end = clock_.now();
  auto it = requests_flushed_at_.find(e.id);
  SystemTime start = it != requests_flushed_at_.end() ? std::min(it->second, end) : end;
  usage::UsageEvent ev{.event_id = "inference.requests:" + e.id + ":" + new_uuid(),
                       .project_id = e.project_id,
                       .resource_id = e.id,
                       .resource_type = std::string(kEndpointKind),
                       .kind = "inference.requests",
                       .quantity = std::to_string(count),
                       .unit = "request",
                       .start = start,
                       .end = end,
                       .publisher_id = "",
                       .region = options_.region};
  CONCORD_RETURN_IF_ERROR(usage::append(tx, ev));
  return ok();
}

Status EndpointService::Impl::remove_replica(Pass& pass, const EndpointRow& e, ReplicaRow r) {
  if (r.state != "deleting") {
    r.state = "deleting";
    CONCORD_RETURN_IF_ERROR(
        store_.write([&](store::Tx& tx) -> Status { return update_replica(tx, r); }));
  }
  unpublish(e.id, r.id);
  CONCORD_RETURN_IF_ERROR(backend_.destroy(r.id));
  unready_since_.erase(r.id);
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    ReplicaRow copy = r;
    CONCORD_RETURN_IF_ERROR(append_replica_seconds(tx, e, copy, pass.now_ms));
    return delete_replica(tx, r.id);
  }));
  ++pass.report.replicas_destroyed;
  return ok();
}

Status EndpointService::Impl::create_replica(Pass& pass, const EndpointRow& e, int64_t ordinal) {
  ReplicaRow r;
  r.id = new_uuid();
  r.endpoint_id = e.id;
  r.ordinal = ordinal;
  r.spec_revision = e.spec_revision;
  r.created_at = format_keystone_time(pass.now);
  r.created_us = pass.now_ms * 1000;
  CONCORD_RETURN_IF_ERROR(
      store_.write([&](store::Tx& tx) -> Status { return insert_replica(tx, r); }));
  ++pass.report.replicas_created;
  if (auto st = backend_.ensure(r.id, spec_for(pass, e, r)); !st) {
    // The row stays: the next pass calls ensure again (kResourceExhausted: no host now).
    logger("inference")
        ->warn("endpoint {} replica {}: ensure failed: {}", e.id, r.id, st.error().to_string());
  }
  return ok();
}

Status EndpointService::Impl::remove_endpoint(Pass& pass, const EndpointRow& e,
                                              std::vector<ReplicaRow> replicas) {
  for (ReplicaRow& r : replicas) CONCORD_RETURN_IF_ERROR(remove_replica(pass, e, std::move(r)));
  std::shared_ptr<EndpointRuntime> rt = find_runtime(e.id);
  int64_t unbilled = rt ? rt->load.take_requests() : 0;
  auto st = store_.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(flush_requests(e, tx, unbilled));
    CONCORD_RETURN_IF_ERROR(
        tx.exec("DELETE FROM inference_endpoints WHERE id = ? AND status = 'deleting'", {e.id}));
    return tx.record_change({.kind = std::string(kEndpointKind),
                             .id = e.id,
                             .project_id = e.project_id,
                             .op = "delete",
                             .revision = 0});
  });
  if (!st) {
    if (rt) rt->load.give_back_requests(unbilled);
    return st;
  }
  {
    std::lock_guard lock(runtimes_mu_);
    runtimes_.erase(e.id);
  }
  below_since_.erase(e.id);
  requests_flushed_at_.erase(e.id);
  ++pass.report.endpoints_removed;
  return ok();
}

void EndpointService::Impl::unpublish(const std::string& endpoint_id,
                                      const std::string& replica_id) {
  std::shared_ptr<EndpointRuntime> rt = find_runtime(endpoint_id);
  if (!rt) return;
  std::lock_guard lock(rt->mu);
  std::erase_if(rt->ready, [&](const auto& t) { return t->id() == replica_id; });
}

void EndpointService::Impl::publish(const EndpointRow& e, const std::vector<ReplicaRow>& replicas) {
  std::shared_ptr<EndpointRuntime> rt = runtime_for(e);
  std::lock_guard lock(rt->mu);
  std::vector<std::shared_ptr<ReplicaTarget>> next;
  for (const ReplicaRow& r : replicas) {
    if (r.status != "ready" || r.state != "active") continue;
    std::shared_ptr<ReplicaTarget> t;
    for (const auto& old : rt->ready) {
      if (old->id() == r.id && old->url() == r.url) t = old;
    }
    if (!t) t = std::make_shared<ReplicaTarget>(r.id, r.url);
    t->healthy = true;  // the probe just answered
    next.push_back(std::move(t));
  }
  rt->ready = std::move(next);
}

Status EndpointService::Impl::reconcile_endpoint(Pass& pass, EndpointRow e,
                                                 std::vector<ReplicaRow> replicas) {
  if (e.status == "deleting") return remove_endpoint(pass, e, std::move(replicas));

  // 1. Observe each replica; replace the failed and the killed.
  std::vector<ReplicaRow> live;
  bool failures = false;
  for (ReplicaRow& r : replicas) {
    if (r.state == "deleting") {
      CONCORD_RETURN_IF_ERROR(remove_replica(pass, e, std::move(r)));
      continue;
    }
    auto found = pass.backend.find(r.id);
    ReplicaPhase phase = found == pass.backend.end() ? ReplicaPhase::kGone : found->second.phase;
    bool ever_ran = r.started_ms > 0;
    if (phase == ReplicaPhase::kFailed || (phase == ReplicaPhase::kGone && ever_ran)) {
      logger("inference")
          ->warn("endpoint {} replica {} {}; replacing it", e.id, r.id,
                 phase == ReplicaPhase::kFailed ? "failed: " + found->second.fault
                                                : std::string("is gone"));
      failures = true;
      CONCORD_RETURN_IF_ERROR(remove_replica(pass, e, std::move(r)));
      continue;
    }
    ReplicaRow before = r;
    if (phase == ReplicaPhase::kGone) {
      // Recorded but never started (a crash before ensure, or ensure failed): ask again.
      if (auto st = backend_.ensure(r.id, spec_for(pass, e, r)); !st) {
        logger("inference")
            ->warn("endpoint {} replica {}: ensure failed: {}", e.id, r.id, st.error().to_string());
      }
      r.status = "pending";
    } else if (phase == ReplicaPhase::kPending) {
      r.status = "pending";
      r.host = found->second.host;
    } else {
      r.host = found->second.host;
      r.url = found->second.url;
      r.status = probe_ready(r.url, e.replica_key) ? "ready" : "running";
      if (r.started_ms == 0) r.started_ms = r.last_metered_ms = pass.now_ms;
      if (r.status == "ready") {
        unready_since_.erase(r.id);
      } else {
        auto [since, fresh] = unready_since_.try_emplace(r.id, pass.now);
        if (!fresh && pass.now - since->second >= options_.unready_grace) {
          logger("inference")
              ->warn("endpoint {} replica {} has not been ready for {} s; replacing it", e.id, r.id,
                     options_.unready_grace.count());
          unready_since_.erase(since);
          failures = true;
          CONCORD_RETURN_IF_ERROR(remove_replica(pass, e, std::move(r)));
          continue;
        }
      }
    }
    r.fault.clear();
    bool meter_due =
        r.started_ms > 0 &&
        pass.now_ms - r.last_metered_ms >=
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.meter_interval).count();
    if (meter_due || r.status != before.status || r.host != before.host || r.url != before.url ||
        r.started_ms != before.started_ms || r.fault != before.fault) {
      // `r` changes only once the transaction committed: a retried transaction starts over.
      ReplicaRow written;
      CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
        written = r;
        if (meter_due) CONCORD_RETURN_IF_ERROR(append_replica_seconds(tx, e, written, pass.now_ms));
        return update_replica(tx, written);
      }));
      r = std::move(written);
    }
    live.push_back(std::move(r));
  }

  // 2. Decide how many replicas the load needs.
  int64_t ready_all = 0;
  int64_t ready_current = 0;
  int64_t current = 0;
  for (const ReplicaRow& r : live) {
    bool same_spec = r.spec_revision == e.spec_revision;
    if (same_spec) ++current;
    if (r.status == "ready") {
      ++ready_all;
      if (same_spec) ++ready_current;
    }
  }
  std::shared_ptr<EndpointRuntime> rt = runtime_for(e);
  EndpointLoad::Window w = rt->load.take_window();
  double observed = 0;
  if (e.scale_metric == "p99_latency_ms") {
    observed = p99(w.latencies_ms);
  } else if (ready_all > 0) {
    double in_flight =
        w.arrivals > 0 ? w.mean_in_flight_at_arrival : static_cast<double>(w.in_flight_now);
    observed = in_flight / static_cast<double>(ready_all);
  }
  const int64_t base = ready_all > 0 ? ready_all : std::max<int64_t>(e.desired_replicas, 1);
  int64_t computed =
      static_cast<int64_t>(std::ceil(static_cast<double>(base) * observed / e.scale_target - 1e-9));
  computed = std::clamp(computed, e.min_replicas, e.max_replicas);
  int64_t desired = std::clamp(e.desired_replicas, e.min_replicas, e.max_replicas);
  if (ready_all == 0 && e.scale_metric == "queue_length") {
    // Nothing serves yet, so nothing was observed: neither grow nor start a scale-down delay.
    below_since_.erase(e.id);
  } else if (computed > desired) {
    desired = computed;
    below_since_.erase(e.id);
  } else if (computed < desired) {
    auto [it, fresh] = below_since_.try_emplace(e.id, pass.now);
    if (!fresh && pass.now - it->second >= std::chrono::seconds(e.scale_down_delay_s)) {
      desired = computed;
      below_since_.erase(it);
    } else if (fresh && e.scale_down_delay_s == 0) {
      desired = computed;
      below_since_.erase(it);
    }
  } else {
    below_since_.erase(e.id);
  }

  // 3. Converge: add replicas of the current spec, remove surplus, retire old specs once enough
  //    new ones are ready.
  int64_t next_ordinal = 0;
  for (const ReplicaRow& r : live) next_ordinal = std::max(next_ordinal, r.ordinal + 1);
  for (int64_t n = current; n < desired; ++n) {
    CONCORD_RETURN_IF_ERROR(create_replica(pass, e, next_ordinal++));
  }
  std::vector<ReplicaRow> kept;
  std::vector<ReplicaRow> same;
  for (ReplicaRow& r : live) {
    if (r.spec_revision == e.spec_revision) {
      same.push_back(std::move(r));
    } else if (ready_current >= desired) {
      CONCORD_RETURN_IF_ERROR(remove_replica(pass, e, std::move(r)));
    } else {
      kept.push_back(std::move(r));
    }
  }
  if (static_cast<int64_t>(same.size()) > desired) {
    // Remove the not-ready first, then the newest.
    std::stable_sort(same.begin(), same.end(), [](const ReplicaRow& a, const ReplicaRow& b) {
      bool ar = a.status == "ready", br = b.status == "ready";
      if (ar != br) return ar;
      return a.ordinal < b.ordinal;
    });
    while (static_cast<int64_t>(same.size()) > desired) {
      ReplicaRow victim = std::move(same.back());
      same.pop_back();
      CONCORD_RETURN_IF_ERROR(remove_replica(pass, e, std::move(victim)));
    }
  }
  for (ReplicaRow& r : same) kept.push_back(std::move(r));

  // 4. Publish the ready set, record status, desired count and request usage.
  publish(e, kept);
  int64_t ready = 0;
  for (const ReplicaRow& r : kept) ready += r.status == "ready" ? 1 : 0;
  pass.report.ready += static_cast<int>(ready);
  pass.report.not_ready += static_cast<int>(kept.size()) - static_cast<int>(ready);
  std::string status;
  if (ready >= e.min_replicas) {
    status = "ready";
  } else if (ready > 0) {
    status = "degraded";
  } else if (e.status == "ready" || e.status == "degraded") {
    status = "degraded";
  } else {
    status = failures ? "error" : (e.status == "error" ? "error" : "creating");
  }
  int64_t unbilled = rt->load.take_requests();
  EndpointRow updated = e;
  updated.status = status;
  updated.desired_replicas = desired;
  bool changed = updated.status != e.status || updated.desired_replicas != e.desired_replicas;
  if (changed) updated.updated_at = format_keystone_time(pass.now);
  auto st = store_.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(flush_requests(e, tx, unbilled));
    if (!changed) return ok();
    EndpointRow copy = updated;
    CONCORD_RETURN_IF_ERROR(update_endpoint(tx, copy));
    return tx.record_change({.kind = std::string(kEndpointKind),
                             .id = e.id,
                             .project_id = e.project_id,
                             .op = "update",
                             .revision = copy.revision});
  });
  if (!st) {
    rt->load.give_back_requests(unbilled);
    // kAborted: the API changed the endpoint meanwhile; the next pass starts from its row.
    if (st.error().code() != Code::kAborted) return st;
  } else if (unbilled > 0) {
    requests_flushed_at_[e.id] = pass.now;
  }
  if (!requests_flushed_at_.contains(e.id)) requests_flushed_at_[e.id] = pass.now;
  return ok();
}

Result<ReconcileReport> EndpointService::Impl::reconcile_once() {
  std::lock_guard pass_lock(pass_mu_);
  Pass pass;
  pass.now = clock_.now();
  pass.now_ms = to_ms(pass.now);
  std::vector<EndpointRow> eps;
  std::vector<ReplicaRow> reps;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(eps, load_endpoints(tx, std::nullopt));
    CONCORD_ASSIGN_OR_RETURN(reps, load_replicas(tx, ""));
    CONCORD_ASSIGN_OR_RETURN(store::Rows names,
                             tx.query("SELECT m.id, m.name FROM inference_models m WHERE m.id IN "
                                      "(SELECT model_id FROM inference_endpoints)"));
    pass.model_names.clear();
    for (const store::Row& r : names) pass.model_names[r.text(0)] = r.text(1);
    return ok();
  }));
  // The backend's list is read after the rows: a replica this pass creates is always in both.
  CONCORD_ASSIGN_OR_RETURN(std::vector<ReplicaInfo> running, backend_.list());
  std::set<std::string> row_ids;
  for (const ReplicaRow& r : reps) row_ids.insert(r.id);
  for (ReplicaInfo& info : running) {
    if (!row_ids.contains(info.id)) {
      logger("inference")
          ->info("destroying orphan replica {} of endpoint {}", info.id, info.endpoint_id);
      if (auto st = backend_.destroy(info.id); !st) {
        logger("inference")->warn("orphan replica {}: {}", info.id, st.error().to_string());
      } else {
        ++pass.report.orphans_destroyed;
      }
      continue;
    }
    std::string id = info.id;
    pass.backend.emplace(std::move(id), std::move(info));
  }
  std::map<std::string, std::vector<ReplicaRow>> by_endpoint;
  for (ReplicaRow& r : reps) by_endpoint[r.endpoint_id].push_back(std::move(r));
  std::set<std::string> endpoint_ids;
  Status first_error = ok();
  for (EndpointRow& e : eps) {
    endpoint_ids.insert(e.id);
    ++pass.report.endpoints;
    std::string id = e.id;
    if (auto st = reconcile_endpoint(pass, std::move(e), std::move(by_endpoint[id])); !st) {
      logger("inference")->warn("endpoint {}: reconcile failed: {}", id, st.error().to_string());
      if (first_error) first_error = st;
    }
    by_endpoint.erase(id);
  }
  // Rows of endpoints that no longer exist (a crash between removing replicas and the row).
  for (auto& [endpoint_id, rows] : by_endpoint) {
    for (ReplicaRow& r : rows) {
      if (auto st = backend_.destroy(r.id); !st) continue;
      auto st = store_.write([&](store::Tx& tx) -> Status { return delete_replica(tx, r.id); });
      if (st) ++pass.report.replicas_destroyed;
    }
  }
  {
    std::lock_guard lock(runtimes_mu_);
    std::erase_if(runtimes_, [&](const auto& kv) { return !endpoint_ids.contains(kv.first); });
  }
  if (!first_error) return std::unexpected(first_error.error());
  return pass.report;
}

// ---- the loop ----------------------------------------------------------------------------------

void EndpointService::Impl::wake() {
  std::lock_guard lock(loop_mu_);
  woken_ = true;
  loop_cv_.notify_all();
}

Status EndpointService::Impl::start() {
  std::lock_guard lock(loop_mu_);
  if (thread_.joinable()) {
    return fail(Code::kFailedPrecondition, "the endpoint controller is already running");
  }
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
  return ok();
}

void EndpointService::Impl::stop() {
  {
    std::lock_guard lock(loop_mu_);
    stopping_ = true;
    loop_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void EndpointService::Impl::loop() {
  // While replicas are starting the next pass comes sooner, so an endpoint turns ready soon
  // after its replicas do rather than a whole interval later.
  constexpr std::chrono::milliseconds kConverging{200};
  std::chrono::milliseconds wait = options_.reconcile_interval;
  for (;;) {
    {
      std::unique_lock lock(loop_mu_);
      loop_cv_.wait_for(lock, wait, [&] { return stopping_ || woken_; });
      if (stopping_) return;
      woken_ = false;
    }
    wait = options_.reconcile_interval;
    auto r = reconcile_once();
    if (!r) {
      logger("inference")->warn("endpoint controller pass failed: {}", r.error().to_string());
    } else if (r->not_ready > 0 || r->replicas_created > 0) {
      wait = std::min(wait, kConverging);
    }
  }
}

}  // namespace concord::inference::endpoints

#include "compute/service/placement.h"

#include <nlohmann/json.hpp>

#include "base/json.h"
#include "compute/service/model.h"

namespace concord::compute {

namespace {

// The agent stores the list as a JSON array (agent_api.cc); a comma list is accepted too.
std::vector<std::string> split_drivers(const std::string& text) {
  std::vector<std::string> out;
  if (!text.empty() && text.front() == '[') {
    auto parsed = parse_json(text);
    if (parsed && parsed->is_array()) {
      for (const auto& d : *parsed) {
        if (d.is_string()) out.push_back(d.get<std::string>());
      }
    }
    return out;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(std::move(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// Traits are reported by agents as a flat object; non-string values are rendered as JSON text
// so "kvm": true still compares equal to a required trait "true".
std::map<std::string, std::string> parse_traits(const std::string& text) {
  std::map<std::string, std::string> out;
  auto parsed = parse_json(text);
  if (!parsed || !parsed->is_object()) return out;
  for (auto& [k, v] : parsed->items()) out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

}  // namespace

Result<std::vector<scheduler::HostState>> load_hosts(store::Tx& tx, int64_t now_ms,
                                                     int64_t down_after_ms) {
  CONCORD_RETURN_IF_ERROR(tx.serialize());
  // One query: the hosts and the sum of their claims (CAST: SUM is NUMERIC on PostgreSQL).
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query(std::string("SELECT h.name, ") + kHostZoneSql +
                   ", h.vcpus, h.ram_mb, h.disk_gb, h.drivers, "
                   "h.kvm, h.traits_json, h.state, h.disabled, h.last_heartbeat_ms, "
                   "CAST(COALESCE(a.vcpus, 0) AS BIGINT), CAST(COALESCE(a.ram_mb, 0) AS BIGINT), "
                   "CAST(COALESCE(a.disk_gb, 0) AS BIGINT), CAST(COALESCE(a.n, 0) AS BIGINT) "
                   "FROM compute_hosts h LEFT JOIN (SELECT host, SUM(vcpus) AS vcpus, "
                   "SUM(ram_mb) AS ram_mb, SUM(disk_gb) AS disk_gb, COUNT(DISTINCT server_id) AS n "
                   "FROM compute_allocations GROUP BY host) a ON a.host = h.name ORDER BY h.name",
               {}));
  std::vector<scheduler::HostState> hosts;
  hosts.reserve(rows.size());
  for (const store::Row& r : rows) {
    scheduler::HostState h;
    h.name = r.text(0);
    h.availability_zone = r.text(1);
    h.total = {r.integer(2), r.integer(3), r.integer(4)};
    h.drivers = split_drivers(r.text(5));
    h.kvm = r.integer(6) != 0;
    h.traits = parse_traits(r.text(7));
    const bool marked_down = r.text(8) == "down";
    h.disabled = r.integer(9) != 0;
    h.up = !marked_down && now_ms - r.integer(10) <= down_after_ms;
    h.used = {r.integer(11), r.integer(12), r.integer(13)};
    h.instances = r.integer(14);
    hosts.push_back(std::move(h));
  }
  return hosts;
}

Status claim(store::Tx& tx, std::string_view server_id, std::string_view purpose,
             std::string_view host, const scheduler::Resources& r) {
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n,
      tx.exec("INSERT INTO compute_allocations (server_id, purpose, host, vcpus, ram_mb, disk_gb) "
              "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (server_id, purpose) DO UPDATE SET "
              "host = excluded.host, vcpus = excluded.vcpus, ram_mb = excluded.ram_mb, "
              "disk_gb = excluded.disk_gb",
              {std::string(server_id), std::string(purpose), std::string(host), r.vcpus, r.ram_mb,
               r.disk_gb}));
  (void)n;
  return ok();
}

Status release(store::Tx& tx, std::string_view server_id, std::string_view purpose) {
  if (purpose.empty()) {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("DELETE FROM compute_allocations WHERE server_id = ?", {std::string(server_id)}));
    (void)n;
    return ok();
  }
  CONCORD_ASSIGN_OR_RETURN(
      int64_t n, tx.exec("DELETE FROM compute_allocations WHERE server_id = ? AND purpose = ?",
                         {std::string(server_id), std::string(purpose)}));
  (void)n;
  return ok();
}

scheduler::Options scheduler_options(const ComputeOptions& o) {
  scheduler::Options s;
  s.cpu_allocation_ratio = o.cpu_allocation_ratio;
  s.ram_allocation_ratio = o.ram_allocation_ratio;
  s.disk_allocation_ratio = o.disk_allocation_ratio;
  s.weigher = o.pack ? scheduler::Options::Weigher::kPack : scheduler::Options::Weigher::kSpread;
  return s;
}

}  // namespace concord::compute

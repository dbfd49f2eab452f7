#include "compute/service/metering.h"

#include <chrono>

#include "usage/usage_ledger.h"

namespace concord::compute {

std::string seconds_text(int64_t ms) {
  if (ms < 0) ms = 0;
  std::string out = std::to_string(ms / 1000);
  int64_t frac = ms % 1000;
  if (frac != 0) {
    std::string f = std::to_string(frac);
    f.insert(0, 3 - f.size(), '0');
    while (!f.empty() && f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out;
}

Status meter_instance(store::Tx& tx, ServerRow& s, int64_t now_ms, const std::string& region) {
  const bool running = s.vm_state == vm::kActive || s.vm_state == vm::kResized;
  if (running && s.last_metered_ms > 0 && now_ms > s.last_metered_ms) {
    std::string flavor_name = s.flavor_id;
    if (auto f = flavor_from_json(s.flavor_json)) flavor_name = f->name;
    usage::UsageEvent e;
    e.event_id = s.id + ":instance-seconds:" + std::to_string(s.revision);
    e.project_id = s.project_id;
    e.resource_id = s.id;
    e.resource_type = "compute.server";
    e.kind = "instance-seconds:" + flavor_name;
    e.quantity = seconds_text(now_ms - s.last_metered_ms);
    e.unit = "s";
    e.start = SystemTime(std::chrono::milliseconds(s.last_metered_ms));
    e.end = SystemTime(std::chrono::milliseconds(now_ms));
    e.region = region;
    CONCORD_ASSIGN_OR_RETURN(bool fresh, usage::append(tx, e));
    (void)fresh;
  }
  if (now_ms > s.last_metered_ms) s.last_metered_ms = now_ms;
  return ok();
}

}  // namespace concord::compute

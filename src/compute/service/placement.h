#pragma once
// Scheduling inside the caller's write transaction (placement.cc): loads the snapshot of hosts
// and their claims, asks the pure scheduler, and records the claims, so concurrent creates
// (serialised by the store) never over-commit a host.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "compute/scheduler/scheduler.h"
#include "compute/service/context.h"
#include "store/store.h"

namespace concord::compute {

// Every host with its used resources (sum of claims) and up/down derived from its last
// heartbeat (`now_ms - last_heartbeat_ms > down_after_ms` is down). Serializes the write
// transaction first (store::Tx::serialize): the caller places and claims on what it read, and
// another server must not claim the same room in between. Only inside write().
[[nodiscard]] Result<std::vector<scheduler::HostState>> load_hosts(store::Tx& tx, int64_t now_ms,
                                                                   int64_t down_after_ms);

// Records a claim (server, purpose "instance" | "resize") on a host. Idempotent per key.
[[nodiscard]] Status claim(store::Tx& tx, std::string_view server_id, std::string_view purpose,
                           std::string_view host, const scheduler::Resources& r);
// Drops claims of a server (all purposes when `purpose` is empty).
[[nodiscard]] Status release(store::Tx& tx, std::string_view server_id,
                             std::string_view purpose = {});

scheduler::Options scheduler_options(const ComputeOptions& o);

}  // namespace concord::compute

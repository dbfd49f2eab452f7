#pragma once
// Instance-seconds metering, shared by the servers API (deletes that finish at once, resizes)
// and the agent report handler (state transitions). Convention: call meter_instance() with the
// row as it was BEFORE the transition, then write the row (update_server) with the new
// last_metered_ms; the interval since the previous metering is billed to the state the server
// was in, under the flavor it had.
#include <cstdint>
#include <string>

#include "base/result.h"
#include "compute/service/model.h"
#include "store/store.h"

namespace concord::compute {

// If the server was running (vm_state active or resized) and time passed since
// last_metered_ms (> 0), appends usage event "<server>:instance-seconds:<revision>" of kind
// "instance-seconds:<flavor name>" (unit "s", quantity with millisecond precision) via
// usage::append in `tx` (idempotent per event id). Always sets s.last_metered_ms = now_ms
// (when now_ms is later); the caller writes the row.
[[nodiscard]] Status meter_instance(store::Tx& tx, ServerRow& s, int64_t now_ms,
                                    const std::string& region);

// The decimal text of a millisecond duration in seconds: 1500 -> "1.5", 2000 -> "2".
std::string seconds_text(int64_t ms);

}  // namespace concord::compute

#pragma once
// The usage ledger: one append-only table that every capability writes a usage event into
// whenever something billable starts, changes or stops (instance-seconds by flavor, storage
// GB-hours, inference requests, ...). Billing (rating, invoices) reads it later, so no
// service needs a migration when billing lands.
//
// Events are appended inside the caller's own store transaction (`append(tx, event)`), so a
// lifecycle change and its usage event commit together or not at all. `event_id` makes
// ingestion idempotent: appending the same id twice is a no-op, so a controller that retries
// a step after a crash never double-counts.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "store/store.h"

namespace concord::usage {

struct UsageEvent {
  std::string event_id;     // idempotency key chosen by the producer (e.g. "<resource>:<op>:<rev>")
  std::string project_id;   // the project billed
  std::string resource_id;  // e.g. a server id
  std::string resource_type;  // e.g. "compute.server"
  std::string kind;           // what is measured, e.g. "instance-seconds:m1.small"
  // Exact decimal quantity as text ("3600", "0.25"): money and usage are never binary floats.
  std::string quantity;
  std::string unit;  // e.g. "s", "GB-h", "request"
  SystemTime start;
  SystemTime end;
  std::string publisher_id;  // partner whose offering was used ("" when none)
  std::string region;
};

// The component "usage" schema.
std::vector<store::Migration> migrations();

// Validates and appends inside `tx`. kInvalidArgument for a malformed event (empty ids,
// quantity that is not a non-negative decimal, end before start). Returns true if the event
// was new, false if an event with the same id was already recorded.
[[nodiscard]] Result<bool> append(store::Tx& tx, const UsageEvent& event);

struct UsageFilter {
  std::optional<std::string> project_id;
  std::optional<SystemTime> from;  // events ending at or after
  std::optional<SystemTime> to;    // events starting before
  int64_t after_seq = 0;           // paging: events with seq > after_seq
  int limit = 1000;
};

struct StoredUsageEvent {
  int64_t seq = 0;
  UsageEvent event;
  std::string recorded_at;
};

[[nodiscard]] Result<std::vector<StoredUsageEvent>> list(store::Tx& tx, const UsageFilter& filter);

// True if `text` is a non-negative decimal: digits, optionally '.' and more digits.
bool is_decimal(std::string_view text);

}  // namespace concord::usage

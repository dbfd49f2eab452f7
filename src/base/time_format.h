#pragma once
// Timestamps in the formats OpenStack clients parse.
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"

namespace concord {

// Keystone token format: 2026-01-01T12:00:00.000000Z (microseconds, always 'Z').
std::string format_keystone_time(SystemTime t);
// Python datetime.isoformat() of a naive UTC time: 2026-01-01T12:00:00.123456, or without the
// fraction when it is zero (that is what Keystone returns for expires_at of app credentials).
std::string format_iso_naive(SystemTime t);
// Parses ISO 8601 forms clients send: YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+00:00]. UTC only.
std::optional<SystemTime> parse_iso_time(std::string_view text);

}  // namespace concord

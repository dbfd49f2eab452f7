#pragma once
// The names and passwords the Trove API accepts, per engine (docs/design/database.md: names are
// validated here against the engine's identifier rules and quoted again by the driver).
#include <string_view>

#include "base/result.h"

namespace concord::database::service {

enum class NameKind { kDatabase, kUser };

// kInvalidArgument with a message for the tenant when `name` is not ^[A-Za-z_][A-Za-z0-9_]*$,
// is longer than the engine allows (PostgreSQL 63; MariaDB 64 for databases, 80 for users) or
// is reserved (the engines' own databases and roles, "root", the admin role "concord-db").
[[nodiscard]] Status check_name(std::string_view engine, NameKind kind, std::string_view name);

// 1..128 bytes of valid UTF-8 without NUL.
[[nodiscard]] Status check_password(std::string_view password);

// The instance name: 1..255 bytes of valid UTF-8 without control characters.
[[nodiscard]] Status check_instance_name(std::string_view name);

}  // namespace concord::database::service

#pragma once
// The desired state of one managed database instance, as the database service writes it and
// the engine driver on the host converges to it (docs/design/database.md, "Desired state").
// The JSON form travels in the server metadata key database_keys::kState.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::database::engine {

struct DatabaseSpec {
  std::string name;
  std::string character_set;  // empty: the engine's default
  std::string collate;        // empty: the engine's default
  bool operator==(const DatabaseSpec&) const = default;
};

struct UserSpec {
  std::string name;
  std::string host = "%";  // MariaDB's host part; PostgreSQL ignores it
  // The engine's own password verifier (credentials.h), never the password.
  std::string verifier;
  std::vector<std::string> databases;  // full access to each of these databases
  bool operator==(const UserSpec&) const = default;
};

struct RootSpec {
  std::string verifier;  // remote superuser "root" with this verifier
  bool operator==(const RootSpec&) const = default;
};

struct DesiredState {
  int64_t revision = 0;  // increases with every change
  std::vector<DatabaseSpec> databases;
  std::vector<UserSpec> users;
  std::optional<RootSpec> root;                   // absent: no remote root
  std::map<std::string, std::string> parameters;  // engine parameters, values as text
  bool operator==(const DesiredState&) const = default;
};

std::string to_json(const DesiredState& state);
// kInvalidArgument for malformed JSON, wrong types or a missing revision.
[[nodiscard]] Result<DesiredState> desired_state_from_json(std::string_view text);

}  // namespace concord::database::engine

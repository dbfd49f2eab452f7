#pragma once
// The engine parameters a tenant may set through a configuration group, per engine and version
// (docs/design/database.md, "Configuration groups"). One curated list per engine: only
// parameters that cannot break what Concord itself relies on (addresses, ports, TLS, sockets,
// replication and archiving stay Concord's).
//
// The same checks run twice: the API refuses a bad value before anything is stored, and the
// engine refuses a desired state holding one before anything reaches a configuration file
// (defence in depth: the desired state travels through the agent protocol). Values are text in
// the desired state, in the normal form normalize_parameter() gives; a value in normal form never
// holds a quote, a backslash, a newline or any other character that could end a line or a
// quoted string in a configuration file.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord::database::engine {

enum class ParameterType { kInteger, kFloat, kString, kBoolean };

// Trove's type names: "integer", "float", "string", "boolean".
std::string_view parameter_type_name(ParameterType type);

struct ParameterSpec {
  std::string_view name;
  ParameterType type;
  // Inclusive bounds for kInteger and kFloat (in the engine's own base unit, see `unit`).
  double min = 0;
  double max = 0;
  std::string_view unit;  // "kB", "8kB", "ms", "s", "bytes", ... ("" for none)
  bool restart_required = false;
  // kString only: the accepted values, separated by '|'; with `multi`, the value is a
  // comma-separated list of them (MariaDB's sql_mode). Compared case-insensitively and
  // normalised to the spelling listed here.
  std::string_view choices;
  bool multi = false;
  std::string_view description;
};

// The catalog of `engine` ("postgresql", "mariadb") at `version`; versions without a list of
// their own use their engine's list. Empty for an engine Concord has no catalog for (then no
// parameter may be set).
std::span<const ParameterSpec> parameter_catalog(std::string_view engine, std::string_view version);

// nullptr when `name` is not settable on that engine and version.
const ParameterSpec* find_parameter(std::string_view engine, std::string_view version,
                                    std::string_view name);

// Checks `value` against the spec and returns its normal form: integers in decimal, floats in
// shortest round-trip form, booleans "on"/"off" (from on/off/true/false/yes/no/1/0), strings in
// the listed spelling. kInvalidArgument naming the parameter otherwise.
[[nodiscard]] Result<std::string> normalize_parameter(const ParameterSpec& spec,
                                                      std::string_view value);

// Every name known to the catalog and every value valid and already in normal form.
// kInvalidArgument naming the first offending parameter.
[[nodiscard]] Status validate_parameters(std::string_view engine, std::string_view version,
                                         const std::map<std::string, std::string>& values);

// The memory an engine takes at start for its buffer cache (PostgreSQL shared_buffers,
// MariaDB innodb_buffer_pool_size) must leave room in the instance's memory (its flavor's RAM,
// which is also its cgroup limit): at most 75% of `ram_mb`. A larger value would make the engine
// fail to start, or be killed, at its next restart. kInvalidArgument naming the parameter.
[[nodiscard]] Status check_parameters_fit(std::string_view engine,
                                          const std::map<std::string, std::string>& values,
                                          int64_t ram_mb);

// What Concord itself sets in the engine's configuration for an instance of `ram_mb` of memory
// and a volume of `volume_gb` (a configuration group's values go over these), in the catalog's
// base units and normal form: the engines write their configuration files from it, and Trove's
// `GET /instances/{id}/configuration` (the instance's default configuration) shows it.
// PostgreSQL: max_connections, shared_buffers (a quarter of the memory), max_wal_size and
// min_wal_size (sized to the volume); MariaDB: max_connections, innodb_buffer_pool_size (a
// quarter of the memory), max_binlog_size (sized to the volume; not settable), character set
// and collation. Empty for another engine.
std::map<std::string, std::string> default_parameters(std::string_view engine, int64_t ram_mb,
                                                      int64_t volume_gb);

// The WAL a PostgreSQL instance on a volume of `volume_gb` is given, in MB: an eighth of the
// volume, 64 MB to 1 GB. Its default max_wal_size (PostgreSQL's own, 1 GB, alone fills a 1 GB
// volume), and what a member of a replication group keeps past its checkpoints for pg_rewind.
int64_t pg_wal_budget_mb(int64_t volume_gb);

}  // namespace concord::database::engine

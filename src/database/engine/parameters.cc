// The parameter catalogs (parameters.h). Bounds are the engines' own limits, narrowed where a
// value at the edge would only hurt the instance; units are the engines' base units (what
// pg_settings.unit and MariaDB's variables report), so a value needs no unit suffix and is
// compared with the live setting as is.
#include "database/engine/parameters.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "fmt/format.h"

namespace concord::database::engine {
namespace {

constexpr ParameterSpec integer(std::string_view name, double min, double max,
                                std::string_view unit, bool restart, std::string_view what) {
  return {name, ParameterType::kInteger, min, max, unit, restart, "", false, what};
}
constexpr ParameterSpec real(std::string_view name, double min, double max, std::string_view unit,
                             std::string_view what) {
  return {name, ParameterType::kFloat, min, max, unit, false, "", false, what};
}
constexpr ParameterSpec boolean(std::string_view name, bool restart, std::string_view what) {
  return {name, ParameterType::kBoolean, 0, 1, "", restart, "", false, what};
}
constexpr ParameterSpec choice(std::string_view name, std::string_view choices, bool multi,
                               std::string_view what) {
  return {name, ParameterType::kString, 0, 0, "", false, choices, multi, what};
}

constexpr double kInt32Max = 2147483647;

// PostgreSQL 15. Left out on purpose: listen_addresses, port, ssl*, *_file, unix_socket_*,
// wal_level, archive_*, synchronous_* and other replication settings (Concord's), and anything
// that loads code (shared_preload_libraries, ...).
constexpr ParameterSpec kPostgres15[] = {
    integer("max_connections", 10, 10000, "", true, "Maximum number of concurrent connections."),
    integer("shared_buffers", 16, 4194304, "8kB", true, "Memory for the shared buffer cache."),
    integer("work_mem", 64, 2097151, "kB", false,
            "Memory for each sort or hash before spilling to disk."),
    integer("maintenance_work_mem", 1024, 2097151, "kB", false,
            "Memory for VACUUM, CREATE INDEX and similar."),
    integer("effective_cache_size", 1, kInt32Max, "8kB", false,
            "The planner's assumption about the size of the disk cache."),
    integer("temp_buffers", 100, 1073741823, "8kB", false,
            "Memory for temporary tables in each session."),
    integer("statement_timeout", 0, kInt32Max, "ms", false,
            "Aborts statements running longer (0: no limit)."),
    integer("lock_timeout", 0, kInt32Max, "ms", false,
            "Aborts statements waiting longer for a lock (0: no limit)."),
    integer("idle_in_transaction_session_timeout", 0, kInt32Max, "ms", false,
            "Ends sessions idle in a transaction for longer (0: no limit)."),
    integer("log_min_duration_statement", -1, kInt32Max, "ms", false,
            "Logs statements running at least this long (-1: off)."),
    real("random_page_cost", 0, 1e6, "", "The planner's cost of a non-sequential page fetch."),
    real("seq_page_cost", 0, 1e6, "", "The planner's cost of a sequential page fetch."),
    real("cpu_tuple_cost", 0, 1e6, "", "The planner's cost of processing each row."),
    integer("default_statistics_target", 1, 10000, "", false,
            "Default statistics target for table columns."),
    integer("effective_io_concurrency", 0, 1000, "", false,
            "Concurrent disk requests the planner may assume."),
    integer("max_parallel_workers_per_gather", 0, 1024, "", false,
            "Parallel workers one Gather node may use."),
    integer("max_parallel_workers", 0, 1024, "", false, "Parallel workers active at once."),
    integer("max_worker_processes", 0, 262143, "", true, "Background worker processes."),
    integer("max_locks_per_transaction", 10, kInt32Max, "", true,
            "Average number of object locks per transaction."),
    integer("max_prepared_transactions", 0, 262143, "", true,
            "Transactions that can be prepared at once (two-phase commit)."),
    integer("checkpoint_timeout", 30, 86400, "s", false,
            "Maximum time between automatic checkpoints."),
    integer("max_wal_size", 2, kInt32Max, "MB", false, "WAL size that triggers a checkpoint."),
    integer("min_wal_size", 32, kInt32Max, "MB", false, "WAL size kept for recycling."),
    boolean("wal_compression", false, "Compresses full-page writes in the WAL."),
    boolean("autovacuum", false, "Runs the autovacuum launcher."),
    integer("autovacuum_naptime", 1, 2147483, "s", false, "Time between autovacuum runs."),
    integer("autovacuum_max_workers", 1, 262143, "", true, "Autovacuum workers at once."),
    boolean("log_connections", false, "Logs each connection."),
    boolean("log_disconnections", false, "Logs the end of each session."),
    boolean("log_lock_waits", false, "Logs long lock waits."),
    choice("log_statement", "none|ddl|mod|all", false, "Which statements are logged."),
    boolean("track_io_timing", false, "Collects timing statistics for I/O."),
    boolean("jit", false, "Allows JIT compilation."),
    choice("default_transaction_isolation",
           "serializable|repeatable read|read committed|read uncommitted", false,
           "Isolation level of each new transaction."),
};

// MariaDB 10.11. Left out on purpose: bind-address, port, socket, datadir, ssl*, log_bin and
// replication settings (Concord's), and sql_mode flags that change how string literals and
// quotes parse (NO_BACKSLASH_ESCAPES, ANSI_QUOTES, ANSI): Concord's own administration SQL
// relies on the default quoting.
constexpr ParameterSpec kMariadb1011[] = {
    integer("max_connections", 10, 100000, "", false, "Maximum number of concurrent clients."),
    integer("innodb_buffer_pool_size", 33554432, 68719476736.0, "bytes", false,
            "Memory for InnoDB's data and index cache."),
    integer("innodb_log_file_size", 4194304, 549755813888.0, "bytes", true,
            "Size of InnoDB's redo log."),
    integer("wait_timeout", 1, 31536000, "s", false,
            "Seconds an idle non-interactive connection is kept."),
    integer("interactive_timeout", 1, 31536000, "s", false,
            "Seconds an idle interactive connection is kept."),
    integer("max_allowed_packet", 1024, 1073741824, "bytes", false,
            "Largest packet or generated string."),
    integer("net_read_timeout", 1, 31536000, "s", false, "Seconds to wait for more data."),
    integer("net_write_timeout", 1, 31536000, "s", false, "Seconds to wait for a block write."),
    real("long_query_time", 0, 31536000, "s", "Queries slower than this are slow queries."),
    boolean("slow_query_log", false, "Logs slow queries."),
    boolean("general_log", false, "Logs every statement received (the general query log)."),
    choice("character_set_server", "utf8mb4|utf8mb3|latin1|ascii", false,
           "The server's default character set (with its default collation)."),
    choice("sql_mode",
           "STRICT_TRANS_TABLES|STRICT_ALL_TABLES|ERROR_FOR_DIVISION_BY_ZERO|NO_AUTO_CREATE_USER|"
           "NO_ENGINE_SUBSTITUTION|NO_ZERO_DATE|NO_ZERO_IN_DATE|ONLY_FULL_GROUP_BY|"
           "PIPES_AS_CONCAT|IGNORE_SPACE|NO_UNSIGNED_SUBTRACTION|HIGH_NOT_PRECEDENCE|"
           "SIMULTANEOUS_ASSIGNMENT|TIME_ROUND_FRACTIONAL|TRADITIONAL|NO_AUTO_VALUE_ON_ZERO|"
           "NO_DIR_IN_CREATE|PAD_CHAR_TO_FULL_LENGTH|REAL_AS_FLOAT",
           true, "SQL modes, comma-separated."),
    integer("innodb_lock_wait_timeout", 1, 1073741824, "s", false,
            "Seconds a transaction waits for a row lock."),
    integer("innodb_flush_log_at_trx_commit", 0, 3, "", false,
            "When the redo log is written and flushed at commit."),
    integer("table_open_cache", 1, 1048576, "", false, "Open tables cached for all threads."),
    integer("thread_cache_size", 0, 16384, "", false, "Threads kept for reuse."),
    integer("tmp_table_size", 1024, 68719476736.0, "bytes", false,
            "Largest in-memory internal temporary table."),
    integer("max_heap_table_size", 16384, 68719476736.0, "bytes", false,
            "Largest user-created MEMORY table."),
    integer("sort_buffer_size", 32768, 4294967295.0, "bytes", false, "Buffer each sort allocates."),
    integer("join_buffer_size", 128, 4294967295.0, "bytes", false,
            "Buffer for joins without indexes."),
    integer("max_connect_errors", 1, 4294967295.0, "", false,
            "Failed connects after which a host is blocked."),
    boolean("performance_schema", true, "Enables the Performance Schema."),
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    out.push_back(
        s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// For error messages: the value as the user sent it, cut short and without control characters.
std::string shown(std::string_view v) {
  std::string out;
  for (char c : v.substr(0, 64)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  if (v.size() > 64) out += "...";
  return out;
}

Error invalid(const ParameterSpec& spec, std::string_view value, std::string_view why) {
  return Error(Code::kInvalidArgument, fmt::format("The value '{}' for configuration parameter "
                                                   "'{}' is invalid: {}.",
                                                   shown(value), spec.name, why));
}

std::string range_text(const ParameterSpec& spec) {
  if (spec.type == ParameterType::kInteger) {
    return fmt::format("an integer from {} to {}{}", static_cast<int64_t>(spec.min),
                       static_cast<int64_t>(spec.max),
                       spec.unit.empty() ? "" : fmt::format(" (unit {})", spec.unit));
  }
  return fmt::format("a number from {} to {}{}", spec.min, spec.max,
                     spec.unit.empty() ? "" : fmt::format(" (unit {})", spec.unit));
}

}  // namespace

std::string_view parameter_type_name(ParameterType type) {
  switch (type) {
    case ParameterType::kInteger: return "integer";
    case ParameterType::kFloat: return "float";
    case ParameterType::kString: return "string";
    case ParameterType::kBoolean: return "boolean";
  }
  return "string";
}

std::span<const ParameterSpec> parameter_catalog(std::string_view engine,
                                                 std::string_view version) {
  (void)version;  // one list per engine so far: 15 and 10.11 are the versions offered
  if (engine == "postgresql") return kPostgres15;
  if (engine == "mariadb") return kMariadb1011;
  return {};
}

const ParameterSpec* find_parameter(std::string_view engine, std::string_view version,
                                    std::string_view name) {
  for (const ParameterSpec& p : parameter_catalog(engine, version)) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Result<std::string> normalize_parameter(const ParameterSpec& spec, std::string_view value) {
  if (value.size() > 1024) return fail(invalid(spec, value, "it is too long"));
  switch (spec.type) {
    case ParameterType::kInteger: {
      std::string_view digits = value;
      if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
      if (digits.empty() || digits.size() > 18 ||
          !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return fail(invalid(spec, value, "it must be " + range_text(spec)));
      }
      int64_t n = std::strtoll(std::string(value).c_str(), nullptr, 10);
      if (static_cast<double>(n) < spec.min || static_cast<double>(n) > spec.max) {
        return fail(invalid(spec, value, "it must be " + range_text(spec)));
      }
      return std::to_string(n);
    }
    case ParameterType::kFloat: {
      if (value.empty() || !std::all_of(value.begin(), value.end(), [](char c) {
            return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' ||
                   c == '+';
          })) {
        return fail(invalid(spec, value, "it must be " + range_text(spec)));
      }
      const std::string text(value);
      char* end = nullptr;
      double d = std::strtod(text.c_str(), &end);
      if (end != text.c_str() + text.size() || !std::isfinite(d) || d < spec.min || d > spec.max) {
        return fail(invalid(spec, value, "it must be " + range_text(spec)));
      }
      return fmt::format("{}", d);
    }
    case ParameterType::kBoolean: {
      const std::string l = lower(value);
      if (l == "on" || l == "true" || l == "yes" || l == "1") return std::string("on");
      if (l == "off" || l == "false" || l == "no" || l == "0") return std::string("off");
      return fail(invalid(spec, value, "it must be a boolean (true or false)"));
    }
    case ParameterType::kString: {
      const std::vector<std::string_view> choices = split(spec.choices, '|');
      auto pick = [&](std::string_view v) -> std::string_view {
        for (std::string_view c : choices) {
          if (lower(c) == lower(v)) return c;
        }
        return {};
      };
      const std::string allowed = fmt::format("{}", fmt::join(choices, ", "));
      if (!spec.multi) {
        std::string_view c = pick(value);
        if (c.empty()) return fail(invalid(spec, value, "it must be one of " + allowed));
        return std::string(c);
      }
      std::vector<std::string_view> picked;
      if (!trim(value).empty()) {
        for (std::string_view part : split(value, ',')) {
          std::string_view c = pick(trim(part));
          if (c.empty()) {
            return fail(invalid(spec, value, "it must be a comma-separated list of " + allowed));
          }
          if (std::find(picked.begin(), picked.end(), c) == picked.end()) picked.push_back(c);
        }
      }
      return fmt::format("{}", fmt::join(picked, ","));
    }
  }
  return fail(invalid(spec, value, "unknown type"));
}

Status validate_parameters(std::string_view engine, std::string_view version,
                           const std::map<std::string, std::string>& values) {
  for (const auto& [name, value] : values) {
    const ParameterSpec* spec = find_parameter(engine, version, name);
    if (spec == nullptr) {
      return fail(Code::kInvalidArgument,
                  fmt::format("The configuration parameter '{}' is not supported by {} {}.",
                              shown(name), engine, version));
    }
    CONCORD_ASSIGN_OR_RETURN(std::string normal, normalize_parameter(*spec, value));
    if (normal != value) {
      return fail(Code::kInvalidArgument,
                  fmt::format("The value '{}' for configuration parameter '{}' is not in normal "
                              "form (expected '{}').",
                              shown(value), name, normal));
    }
  }
  return ok();
}

Status check_parameters_fit(std::string_view engine,
                            const std::map<std::string, std::string>& values, int64_t ram_mb) {
  std::string_view name;
  int64_t unit_bytes = 0;
  if (engine == "postgresql") {
    name = "shared_buffers";
    unit_bytes = 8192;
  } else if (engine == "mariadb") {
    name = "innodb_buffer_pool_size";
    unit_bytes = 1;
  } else {
    return ok();
  }
  auto it = values.find(std::string(name));
  if (it == values.end()) return ok();
  const int64_t n = std::strtoll(it->second.c_str(), nullptr, 10);
  const int64_t limit = ram_mb * 1024 * 1024 / 4 * 3;
  if (ram_mb > 0 && n > limit / unit_bytes) {
    return fail(Code::kInvalidArgument,
                fmt::format("The value '{}' for configuration parameter '{}' is invalid: it "
                            "must leave room in the instance's {} MB of memory (at most {}{}).",
                            shown(it->second), name, ram_mb, limit / unit_bytes,
                            unit_bytes == 1 ? " bytes" : " 8kB pages"));
  }
  return ok();
}

int64_t pg_wal_budget_mb(int64_t volume_gb) {
  // PostgreSQL's default max_wal_size (1 GB) fills a 1 GB volume with WAL alone (seen: a 1 GB
  // load left 500 MB in pg_wal and 290 MB more archived, not shipped yet, beside 145 MB of
  // table); more frequent checkpoints are the price of less.
  return std::clamp<int64_t>(volume_gb * 1024 / 8, 64, 1024);
}

std::map<std::string, std::string> default_parameters(std::string_view engine, int64_t ram_mb,
                                                      int64_t volume_gb) {
  constexpr int64_t kMiB = 1024 * 1024;
  if (engine == "postgresql") {
    const int64_t shared_mb = std::max<int64_t>(16, ram_mb / 4);
    const int64_t max_wal_mb = pg_wal_budget_mb(volume_gb);
    return {{"max_connections", "100"},
            {"shared_buffers", std::to_string(shared_mb * kMiB / 8192)},  // 8kB pages
            {"max_wal_size", std::to_string(max_wal_mb)},
            {"min_wal_size", std::to_string(std::min<int64_t>(80, max_wal_mb / 2))}};
  }
  if (engine == "mariadb") {
    // Binlogs are sized to the volume: only a completed one is shipped and purged, and the
    // default (1 GB) lets the current one alone fill a 1 GB volume. A sixteenth, 16 MB to 1 GB
    // (a transaction is never split, so a bigger one still makes a bigger file).
    const int64_t binlog_mb = std::clamp<int64_t>(volume_gb * 1024 / 16, 16, 1024);
    return {{"max_connections", "100"},
            {"innodb_buffer_pool_size", std::to_string(std::max<int64_t>(32, ram_mb / 4) * kMiB)},
            {"max_binlog_size", std::to_string(binlog_mb * kMiB)},
            {"character_set_server", "utf8mb4"},
            {"collation_server", "utf8mb4_general_ci"}};
  }
  return {};
}

}  // namespace concord::database::engine

// The guest-log lists (guest_logs.h). The files are the ones the engines write: PostgreSQL's
// stderr (logging_collector off, postgres_engine.cc), MariaDB's log-error, general_log_file and
// slow_query_log_file (my.cnf, mariadb_engine.cc).
#include "database/engine/guest_logs.h"

namespace concord::database::engine {
namespace {

constexpr GuestLogSpec kPostgres[] = {
    {"general", "engine.log", "",
     "The server log: errors and warnings, and what the logging parameters ask for "
     "(log_statement, log_min_duration_statement, log_connections, log_lock_waits, ...)."},
};

constexpr GuestLogSpec kMariadb[] = {
    {"error", "engine.log", "", "The error log: start, stop, crashes, warnings."},
    {"general", "general.log", "general_log", "Every statement received (general_log)."},
    {"slow_query", "slow.log", "slow_query_log",
     "Statements slower than long_query_time (slow_query_log)."},
};

}  // namespace

std::span<const GuestLogSpec> guest_log_catalog(std::string_view engine) {
  if (engine == "postgresql") return kPostgres;
  if (engine == "mariadb") return kMariadb;
  return {};
}

const GuestLogSpec* find_guest_log(std::string_view engine, std::string_view name) {
  for (const GuestLogSpec& s : guest_log_catalog(engine)) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace concord::database::engine

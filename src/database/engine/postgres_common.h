#pragma once
// What the PostgreSQL engine's files (postgres_engine.cc, postgres_backup.cc,
// postgres_replication.cc) share.
#include <string>
#include <string_view>

namespace concord::database::engine::detail {

// `v` as a string value in postgresql.conf (and the files it includes): single-quoted, a quote
// doubled and a backslash escaped, so the parameter reader gives back exactly `v`.
std::string pg_conf_quote(std::string_view v);

}  // namespace concord::database::engine::detail

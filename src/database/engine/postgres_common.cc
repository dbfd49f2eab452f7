#include "database/engine/postgres_common.h"

namespace concord::database::engine::detail {

std::string pg_conf_quote(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'')
      out += "''";
    else if (c == '\\')
      out += "\\\\";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace concord::database::engine::detail

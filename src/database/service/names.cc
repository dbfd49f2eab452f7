#include "database/service/names.h"

#include <algorithm>
#include <array>
#include <string>

#include "base/json.h"

namespace concord::database::service {
namespace {

bool identifier_chars(std::string_view name) {
  if (name.empty()) return false;
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!letter(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Status check_name(std::string_view engine, NameKind kind, std::string_view name) {
  const char* what = kind == NameKind::kDatabase ? "database" : "user";
  if (!identifier_chars(name)) {
    return fail(Code::kInvalidArgument,
                std::string("'") + sanitize_utf8(name) + "' is not a valid " + what +
                    " name: use letters, digits and '_', starting with a letter or '_'");
  }
  size_t limit = 63;
  if (engine == "mariadb") limit = kind == NameKind::kDatabase ? 64 : 80;
  if (name.size() > limit) {
    return fail(Code::kInvalidArgument, std::string(what) + " name '" + std::string(name) +
                                            "' is longer than " + std::to_string(limit) +
                                            " characters");
  }
  static constexpr std::array<std::string_view, 11> kReserved = {
      "postgres",           "template0",          "template1",  "mysql",
      "information_schema", "performance_schema", "sys",        "root",
      "concord-db",         "concord_db",         "mariadb.sys"};
  const std::string l = lower(name);
  if (std::find(kReserved.begin(), kReserved.end(), l) != kReserved.end() || l.starts_with("pg_")) {
    return fail(Code::kInvalidArgument,
                std::string(what) + " name '" + std::string(name) + "' is reserved");
  }
  return ok();
}

Status check_password(std::string_view password) {
  if (password.empty() || password.size() > 128) {
    return fail(Code::kInvalidArgument, "password must be 1 to 128 characters");
  }
  if (password.find('\0') != std::string_view::npos || sanitize_utf8(password) != password) {
    return fail(Code::kInvalidArgument, "password must be valid UTF-8 without NUL characters");
  }
  return ok();
}

Status check_instance_name(std::string_view name) {
  if (name.empty() || name.size() > 255) {
    return fail(Code::kInvalidArgument, "instance name must be 1 to 255 characters");
  }
  if (sanitize_utf8(name) != name || std::any_of(name.begin(), name.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
      })) {
    return fail(Code::kInvalidArgument,
                "instance name must be valid UTF-8 without control characters");
  }
  return ok();
}

}  // namespace concord::database::service

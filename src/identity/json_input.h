#pragma once
// Validation of request bodies the way Keystone's JSON schemas do it: types are strict (no
// "yes" for a boolean, no 5 for a name), lengths count characters, and every failure is
// kInvalidArgument with a message naming the field ("Invalid input for field 'name': ...").
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/result.h"

namespace concord::identity::input {

// Characters (code points) in valid UTF-8 text.
size_t utf8_length(std::string_view s);

// Keystone's id_string: 1..64 characters of [A-Za-z0-9-].
bool is_id_string(std::string_view s);

struct StrRule {
  size_t min_len = 0;
  size_t max_len = std::numeric_limits<size_t>::max();
  bool nullable = false;
  bool non_blank = false;  // at least one non-whitespace character (Keystone's [\S]+)
  bool id_chars = false;   // is_id_string
};

// A string member: absent, JSON null (only when nullable), or a value.
struct Str {
  bool present = false;
  bool null = false;
  std::string value;
  bool has_value() const { return present && !null; }
};

// Parses a body that must be a JSON object.
Result<Json> parse_object(std::string_view body);
// Parses {"<key>": {...}} and returns the inner object.
Result<Json> entity(std::string_view body, std::string_view key);

Result<Str> string_field(const Json& obj, std::string_view key, const StrRule& rule = {});
Result<std::optional<bool>> bool_field(const Json& obj, std::string_view key);
// nullptr when absent; error when present but not an object.
Result<const Json*> object_field(const Json& obj, std::string_view key);
// Requires a present, non-null string.
Result<std::string> required_string(const Json& obj, std::string_view key,
                                    const StrRule& rule = {});
// An error naming the field, in Keystone's schema-error words.
std::unexpected<Error> invalid(std::string_view field, std::string_view why);

}  // namespace concord::identity::input

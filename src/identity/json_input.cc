#include "identity/json_input.h"

#include <nlohmann/json.hpp>

namespace concord::identity::input {
namespace {

std::string type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::string: return "string";
    case Json::value_t::array: return "array";
    case Json::value_t::object: return "object";
    default: return "number";
  }
}

// Short rendering of an offending value for messages (never the whole of a huge string).
std::string preview(const Json& j) {
  std::string s = dump_json(j);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return sanitize_utf8(s);
}

}  // namespace

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

bool is_id_string(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::unexpected<Error> invalid(std::string_view field, std::string_view why) {
  return fail(Code::kInvalidArgument,
              "Invalid input for field '" + std::string(field) + "': " + std::string(why));
}

Result<Json> parse_object(std::string_view body) {
  if (body.empty()) {
    return fail(Code::kInvalidArgument, "The request body is empty; a JSON object is required.");
  }
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_json(body));
  if (!j.is_object()) {
    return fail(Code::kInvalidArgument,
                "The request body must be a JSON object, not " + type_name(j) + ".");
  }
  return j;
}

Result<Json> entity(std::string_view body, std::string_view key) {
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_object(body));
  auto it = j.find(key);
  if (it == j.end()) {
    return fail(Code::kInvalidArgument,
                "Expecting to find " + std::string(key) + " in request body.");
  }
  if (!it->is_object()) return invalid(key, preview(*it) + " is not of type 'object'");
  return std::move(*it);
}

Result<Str> string_field(const Json& obj, std::string_view key, const StrRule& rule) {
  Str out;
  auto it = obj.find(key);
  if (it == obj.end()) return out;
  out.present = true;
  if (it->is_null()) {
    if (!rule.nullable) return invalid(key, "None is not of type 'string'");
    out.null = true;
    return out;
  }
  if (!it->is_string()) return invalid(key, preview(*it) + " is not of type 'string'");
  out.value = it->get<std::string>();
  if (out.value.find('\0') != std::string::npos) {
    return invalid(key, "must not contain NUL characters");
  }
  size_t len = utf8_length(out.value);
  if (len < rule.min_len) {
    return invalid(key, rule.min_len == 1 ? "'' is too short" : "'" + out.value + "' is too short");
  }
  if (len > rule.max_len) {
    return invalid(key, preview(*it) + " is too long (at most " + std::to_string(rule.max_len) +
                            " characters)");
  }
  if (rule.non_blank && out.value.find_first_not_of(" \t\n\r\f\v") == std::string::npos) {
    return invalid(key, preview(*it) + " does not match '[\\S]+'");
  }
  if (rule.id_chars && !is_id_string(out.value)) {
    return invalid(key, preview(*it) + " does not match '^[a-zA-Z0-9-]+$'");
  }
  return out;
}

Result<std::optional<bool>> bool_field(const Json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end()) return std::optional<bool>();
  if (!it->is_boolean()) return invalid(key, preview(*it) + " is not of type 'boolean'");
  return std::optional<bool>(it->get<bool>());
}

Result<const Json*> object_field(const Json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end()) return static_cast<const Json*>(nullptr);
  if (!it->is_object()) return invalid(key, preview(*it) + " is not of type 'object'");
  return &*it;
}

Result<std::string> required_string(const Json& obj, std::string_view key, const StrRule& rule) {
  CONCORD_ASSIGN_OR_RETURN(Str s, string_field(obj, key, rule));
  if (!s.present) return invalid(key, "'" + std::string(key) + "' is a required property");
  if (s.null) return invalid(key, "None is not of type 'string'");
  return std::move(s.value);
}

}  // namespace concord::identity::input

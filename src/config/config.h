#pragma once
// Configuration, declared once. Every option has a name ("section.key"), a type, a default,
// bounds, a description and whether changing it needs a restart. The same table drives the
// config file parser (INI-style, `[section]` then `key = value`), the command-line flags
// (`--section.key=value`, which win over the file), `concord config` output and validation
// at start, which rejects unknown keys, bad types and out-of-range values with a message
// naming the key and the accepted range.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace concord::config {

enum class Type { kString, kInt, kBool, kDuration };

struct Option {
  std::string name;  // "section.key"
  Type type;
  std::string default_value;
  std::string description;
  int64_t min = 0;  // for kInt (value) and kDuration (milliseconds)
  int64_t max = 0;
  bool restart = true;                    // whether a change needs a restart
  std::vector<std::string> choices = {};  // for kString: allowed values; empty = any
};

// The whole declaration, in display order.
const std::vector<Option>& options();

class Config {
 public:
  // Defaults only.
  Config();

  // Reads an INI file; unknown sections/keys and bad values are errors with file:line.
  [[nodiscard]] Status load_file(const std::string& path);
  // Applies one "name=value" override (from --name=value flags).
  [[nodiscard]] Status set(std::string_view name, std::string_view value);

  std::string str(std::string_view name) const;
  int64_t integer(std::string_view name) const;
  bool boolean(std::string_view name) const;
  int64_t millis(std::string_view name) const;  // kDuration, in milliseconds

  // "name = value" lines for every option (what is in force).
  std::string dump() const;
  // Human-readable reference: name, type, default, bounds, restart, description.
  static std::string reference();

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// Parses durations such as "500ms", "10s", "5m", "1h", "2d" or a bare number of seconds.
Result<int64_t> parse_duration_ms(std::string_view text);

}  // namespace concord::config

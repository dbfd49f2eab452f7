#pragma once
// JSON at the edges. nlohmann::json throws; these wrappers do not, and they bound what a
// hostile client can make the parser do (nesting depth) and what a reply can contain
// (invalid UTF-8 is replaced, never thrown on).
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord {

using Json = nlohmann::json;

inline constexpr int kMaxJsonDepth = 64;

// Parses a request body. Errors are kInvalidArgument with a message fit for a client:
// malformed text, nesting deeper than kMaxJsonDepth, invalid UTF-8 or lone surrogates.
Result<Json> parse_json(std::string_view text, int max_depth = kMaxJsonDepth);

// Serialises without throwing; invalid UTF-8 in strings is replaced by U+FFFD.
std::string dump_json(const Json& value);

// Replaces invalid UTF-8 sequences in arbitrary bytes (paths, headers) so they can be echoed.
std::string sanitize_utf8(std::string_view bytes);

}  // namespace concord

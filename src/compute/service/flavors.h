#pragma once
// Flavor lookups for other parts of compute (api_flavors.cc).
#include <string_view>

#include "base/result.h"
#include "compute/service/model.h"
#include "store/store.h"

namespace concord::compute {

// The flavor `id` as a snapshot (with extra specs), if `project_id` may use it (public, or
// private with access, or the caller is admin). kNotFound otherwise, with Nova's message
// "Flavor <id> could not be found.".
[[nodiscard]] Result<FlavorSnapshot> load_flavor(store::Tx& tx, std::string_view id,
                                                 std::string_view project_id, bool is_admin);

// Creates the default flavors (m1.tiny .. m1.xlarge with ids 1..5, plus c1.nano id 42 and
// c1.micro id 84 small enough for containers) when no flavor exists yet. Idempotent.
[[nodiscard]] Status ensure_default_flavors(store::Store& store, const Clock& clock);

}  // namespace concord::compute

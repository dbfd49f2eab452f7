// Trove API: configuration groups and the per-engine parameter catalog (stage 2; see
// docs/design/database.md, "Configuration groups").
#include "database/service/api_internal.h"

namespace concord::database::service {

void DatabaseService::Impl::add_configuration_routes() {}

Status DatabaseService::Impl::parse_create_configuration(const Call& c, const Json& in,
                                                         InstanceRow& inst) {
  (void)c;
  (void)inst;
  if (auto u = in.find("configuration"); u != in.end() && !u->is_null()) {
    return fail(bad("'configuration' is not supported by this cloud yet."));
  }
  return ok();
}

Status DatabaseService::Impl::add_configuration_state(store::Tx& tx, const InstanceRow& inst,
                                                      engine::DesiredState& st) {
  (void)tx;
  (void)inst;
  (void)st;
  return ok();
}

}  // namespace concord::database::service
